#!/usr/bin/env bash
# Fetches the Prometheus Operator's own ServiceMonitor and PrometheusRule CRDs at a pinned version
# and prints their absolute paths on stdout, one a line, so tests/cluster_monitoring.rs has the
# API server judge config/prometheus by the Prometheus Operator's real schema, not a stand-in.
#
#   tests/cluster/monitoring-crds.sh     download if needed, print the CRDs' paths
#
# The CRDs come from the Prometheus Operator's Go module through the Go module proxy: the module
# zip holds the repository's files at the tag, example/prometheus-operator-crd/ included (the CRDs
# its bundle.yaml and Helm chart install). It lands in Go's module cache (`go env GOMODCACHE`), so
# a second run reads the cache and needs no network. The module's hash is pinned below as well,
# on top of the checksum database's check. Errors go to stderr with a non-zero exit.
set -euo pipefail

PO_MODULE="github.com/prometheus-operator/prometheus-operator"
# v0.89.0 (2026-02-06), the newest the proxy serves (v0.90.0 is "not available" there).
PO_VERSION="v0.89.0"
PO_SUM="h1:2HA351OwWBa10H6TDhjeSdHOA7wiY71sEivg+z2cykk="
CRDS=(
  example/prometheus-operator-crd/monitoring.coreos.com_servicemonitors.yaml
  example/prometheus-operator-crd/monitoring.coreos.com_prometheusrules.yaml
)

die() { echo "monitoring-crds: error: $*" >&2; exit 1; }

command -v go >/dev/null 2>&1 \
  || die "go not found on PATH: the Go toolchain is needed to download $PO_MODULE@$PO_VERSION (the Prometheus Operator's CRDs)"

export GOTOOLCHAIN=local GO111MODULE=on GOFLAGS="-mod=readonly -buildvcs=false"
# Outside any module, so no go.mod or go.sum of the caller's is read or written.
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"

start=$(date +%s%N)
status=0
out="$(go mod download -json "$PO_MODULE@$PO_VERSION" 2>"$WORK/stderr")" || status=$?
field() { printf '%s\n' "$out" | sed -n "s/^[[:space:]]*\"$1\": \"\(.*\)\",\{0,1\}\$/\1/p" | head -n 1; }
err="$(field Error | sed 's/\\[nt]/ /g; s/  */ /g')"
if [ "$status" -ne 0 ] || [ -n "$err" ]; then
  cat "$WORK/stderr" >&2
  die "go mod download $PO_MODULE@$PO_VERSION failed (exit $status)${err:+: $err}"
fi
dir="$(field Dir)"
sum="$(field Sum)"
[ -n "$dir" ] || die "go mod download printed no module directory:"$'\n'"$out"
[ "$sum" = "$PO_SUM" ] || die "$PO_MODULE@$PO_VERSION has hash ${sum:-none}, pinned $PO_SUM"
for crd in "${CRDS[@]}"; do
  [ -f "$dir/$crd" ] || die "$PO_MODULE@$PO_VERSION has no $crd (in $dir)"
done
ms=$(( ($(date +%s%N) - start) / 1000000 ))
[ "$ms" -lt 1000 ] || echo "monitoring-crds: $PO_MODULE@$PO_VERSION downloaded in ${ms} ms" >&2
for crd in "${CRDS[@]}"; do echo "$dir/$crd"; done
