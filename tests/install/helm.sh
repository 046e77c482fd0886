#!/usr/bin/env bash
# Builds Helm (the version helm/go.mod pins) into the cache outside the work tree and prints the
# binary's path; rebuilds only when helm/go.mod or helm/go.sum change. tests/cluster_install.rs
# renders, lints and installs charts/flotilla with it.
#
#   tests/install/helm.sh          build if needed, print the binary's path
#   tests/install/helm.sh --print  only print the path (no build)
#
# helm.sh/helm/v4 v4.3.2 (2026-11-13), the newest the Go module proxy serves (Helm 3's newest
# there is v3.22.1). The chart (apiVersion v2) is one Helm 3 reads too; only Helm 4 is tested.
# A cold build (empty Go build cache, modules downloaded) took 10 min on the 2 busy cores
# (4.6 CPU-minutes). Built by plain `go build`, without the release's ldflags, `helm version`
# says "v4.3": go.mod is the record of the patch version.
set -euo pipefail
DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
exec "$DIR/../support/go-build-cached.sh" helm "$DIR/helm" helm.sh/helm/v4/cmd/helm "$@"
