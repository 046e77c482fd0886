#!/usr/bin/env bash
# Builds the NetworkPolicy engine (main.go, cyclonus's matcher) into the cache outside the work
# tree and prints the binary's path; rebuilds only when its sources change.
#
#   tests/netpol-engine/build.sh          build if needed, print the binary's path
#   tests/netpol-engine/build.sh --print  only print the path (no build)
set -euo pipefail
DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
exec "$DIR/../support/go-build-cached.sh" netpol-engine "$DIR" . "$@"
