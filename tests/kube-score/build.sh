#!/usr/bin/env bash
# Builds kube-score (the version go.mod pins, github.com/zegl/kube-score) into the cache outside
# the work tree and prints the binary's path; rebuilds only when go.mod or go.sum change.
#
#   tests/kube-score/build.sh          build if needed, print the binary's path
#   tests/kube-score/build.sh --print  only print the path (no build)
set -euo pipefail
DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
exec "$DIR/../support/go-build-cached.sh" kube-score "$DIR" github.com/zegl/kube-score/cmd/kube-score "$@"
