#!/usr/bin/env bash
# Builds promcheck (Prometheus's rule and PromQL parser, at the version go.mod pins) into the
# cache outside the work tree and prints the binary's path; rebuilds only when its files change.
#
#   tests/monitoring/promcheck/build.sh          build if needed, print the binary's path
#   tests/monitoring/promcheck/build.sh --print  only print the path (no build)
set -euo pipefail
DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
exec "$DIR/../../support/go-build-cached.sh" promcheck "$DIR" . "$@"
