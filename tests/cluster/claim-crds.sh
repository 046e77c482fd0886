#!/usr/bin/env bash
# Fetches CloudNativePG's own `clusters.postgresql.cnpg.io` CRD at a pinned version and prints
# the absolute path of the YAML on stdout, so the claim tests (tests/cluster_database.rs) have the
# API server judge Flotilla's rendered Cluster against CNPG's real schema, not a stand-in.
#
#   tests/cluster/claim-crds.sh     download if needed, print the CRD's path
#
# The CRD comes from CloudNativePG's Go module (its zip holds config/crd/bases), downloaded into
# Go's module cache and checked against the hash pinned below by ../support/go-module-dir.sh.
# Errors go to stderr with a non-zero exit.
set -euo pipefail

CNPG_MODULE="github.com/cloudnative-pg/cloudnative-pg"
# v1.29.2 (2026-06-29), the newest v1.29 the proxy serves (v1.29.3 is "not available" there).
CNPG_VERSION="v1.29.2"
CNPG_SUM="h1:QQHNhpYUIdIQdR6X+N9A1vACMcYWiUIYOfIyUGSpey4="
CRD="config/crd/bases/postgresql.cnpg.io_clusters.yaml"

die() { echo "claim-crds: error: $*" >&2; exit 1; }

dir="$("$(dirname "${BASH_SOURCE[0]}")/../support/go-module-dir.sh" "$CNPG_MODULE" "$CNPG_VERSION" "$CNPG_SUM" \
  "the CloudNativePG CRD")" || exit 1
[ -f "$dir/$CRD" ] || die "$CNPG_MODULE@$CNPG_VERSION has no $CRD (in $dir)"
echo "$dir/$CRD"
