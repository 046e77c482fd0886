#!/usr/bin/env bash
# Builds githttp (the Git smart-HTTP server the GitOps cluster tests push to) into the cache
# outside the work tree and prints the binary's path. Standard library only.
#
#   tests/githttp/build.sh          build if needed, print the binary's path
#   tests/githttp/build.sh --print  only print the path (no build)
set -euo pipefail
DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
exec "$DIR/../support/go-build-cached.sh" githttp "$DIR" . "$@"
