#!/usr/bin/env bash
# Fetches the Prometheus Operator's own ServiceMonitor and PrometheusRule CRDs at a pinned version
# and prints their absolute paths on stdout, one a line, so tests/cluster_monitoring.rs has the
# API server judge config/prometheus by the Prometheus Operator's real schema, not a stand-in.
#
#   tests/cluster/monitoring-crds.sh     download if needed, print the CRDs' paths
#
# The CRDs come from the Prometheus Operator's Go module (its zip holds
# example/prometheus-operator-crd/, the CRDs its bundle.yaml and Helm chart install), downloaded
# into Go's module cache and checked against the hash pinned below by ../support/go-module-dir.sh.
# Errors go to stderr with a non-zero exit.
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

dir="$("$(dirname "${BASH_SOURCE[0]}")/../support/go-module-dir.sh" "$PO_MODULE" "$PO_VERSION" "$PO_SUM" \
  "the Prometheus Operator's CRDs")" || exit 1
for crd in "${CRDS[@]}"; do
  [ -f "$dir/$crd" ] || die "$PO_MODULE@$PO_VERSION has no $crd (in $dir)"
done
for crd in "${CRDS[@]}"; do echo "$dir/$crd"; done
