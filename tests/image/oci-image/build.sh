#!/usr/bin/env bash
# Builds oci-image (main.go: an OCI image layout from layer tarballs, with go-containerregistry at
# the version go.mod pins) into the cache outside the work tree and prints the binary's path;
# rebuilds only when its sources change. Used by scripts/image.sh.
#
#   tests/image/oci-image/build.sh          build if needed, print the binary's path
#   tests/image/oci-image/build.sh --print  only print the path (no build)
set -euo pipefail
DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
exec "$DIR/../../support/go-build-cached.sh" oci-image "$DIR" . "$@"
