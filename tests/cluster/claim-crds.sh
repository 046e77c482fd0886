#!/usr/bin/env bash
# Fetches CloudNativePG's own `clusters.postgresql.cnpg.io` CRD at a pinned version and prints
# the absolute path of the YAML on stdout, so the claim tests (tests/cluster_database.rs) have the
# API server judge Flotilla's rendered Cluster against CNPG's real schema, not a stand-in.
#
#   tests/cluster/claim-crds.sh     download if needed, print the CRD's path
#
# The CRD comes from CloudNativePG's Go module through the Go module proxy: a module zip holds
# every file of the repository at the tag, config/crd/bases included. It lands in Go's module
# cache (`go env GOMODCACHE`; no GOMODCACHE of our own, as in build.sh and
# ../support/go-build-cached.sh), so a second run reads the cache and needs no network. The
# module's hash is pinned below as well, on top of the checksum database's check.
# Errors go to stderr with a non-zero exit.
set -euo pipefail

CNPG_MODULE="github.com/cloudnative-pg/cloudnative-pg"
# v1.29.2 (2026-06-29), the newest v1.29 the proxy serves (v1.29.3 is "not available" there).
CNPG_VERSION="v1.29.2"
CNPG_SUM="h1:QQHNhpYUIdIQdR6X+N9A1vACMcYWiUIYOfIyUGSpey4="
CRD="config/crd/bases/postgresql.cnpg.io_clusters.yaml"

die() { echo "claim-crds: error: $*" >&2; exit 1; }

command -v go >/dev/null 2>&1 \
  || die "go not found on PATH: the Go toolchain is needed to download $CNPG_MODULE@$CNPG_VERSION (the CloudNativePG CRD)"

export GOTOOLCHAIN=local GO111MODULE=on GOFLAGS="-mod=readonly -buildvcs=false"
# Outside any module, so no go.mod or go.sum of the caller's is read or written.
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"

start=$(date +%s%N)
status=0
out="$(go mod download -json "$CNPG_MODULE@$CNPG_VERSION" 2>"$WORK/stderr")" || status=$?
field() { printf '%s\n' "$out" | sed -n "s/^[[:space:]]*\"$1\": \"\(.*\)\",\{0,1\}\$/\1/p" | head -n 1; }
err="$(field Error | sed 's/\\[nt]/ /g; s/  */ /g')"
if [ "$status" -ne 0 ] || [ -n "$err" ]; then
  cat "$WORK/stderr" >&2
  die "go mod download $CNPG_MODULE@$CNPG_VERSION failed (exit $status)${err:+: $err}"
fi
dir="$(field Dir)"
sum="$(field Sum)"
[ -n "$dir" ] || die "go mod download printed no module directory:"$'\n'"$out"
[ "$sum" = "$CNPG_SUM" ] || die "$CNPG_MODULE@$CNPG_VERSION has hash ${sum:-none}, pinned $CNPG_SUM"
[ -f "$dir/$CRD" ] || die "$CNPG_MODULE@$CNPG_VERSION has no $CRD (in $dir)"
ms=$(( ($(date +%s%N) - start) / 1000000 ))
[ "$ms" -lt 1000 ] || echo "claim-crds: $CNPG_MODULE@$CNPG_VERSION downloaded in ${ms} ms" >&2
echo "$dir/$CRD"
