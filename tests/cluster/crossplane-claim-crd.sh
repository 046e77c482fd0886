#!/usr/bin/env bash
# Generates the claim CRD Crossplane would install for the test XRD
# (tests/fixtures/crossplane/xrd.yaml: postgresqlinstances.database.example.org) and prints the
# absolute path of the YAML on stdout, so the claim tests (tests/cluster_database.rs) have the
# API server judge Flotilla's rendered claim by Crossplane's real schema, not a stand-in.
#
#   tests/cluster/crossplane-claim-crd.sh [XRD.yaml]   generate if needed, print the CRD's path
#
# Crossplane has no static claim CRD: its "offered" controller generates one from each XRD at run
# time with xcrd.ForCompositeResourceClaim. Since Crossplane v2.4 that function lives in the
# public package github.com/crossplane/crossplane-runtime/v2/pkg/xcrd, so xcrd/main.go calls it
# from a small wrapper module (no copy of Crossplane's source). The version is Crossplane v2.4.0
# (2026-08-20; its go.mod requires crossplane-runtime/v2 v2.4.0, published 2026-08-19; v2.4.1
# and the v2.4.2 it needs are "not available" on the Go module proxy); xcrd/go.sum pins the
# hashes (crossplane-runtime/v2 v2.4.0 h1:m5iGVHbtEh9nZYz7w/wUWDsXVlpG2c8v5i0SZScwHh8=) and the
# build is -mod=readonly.
#
# The generator is built by ../support/go-build-cached.sh; the CRD lands in
# $FLOTILLA_CACHE/crossplane-claim-crd-<version>-<hash>/ (~/.cache/flotilla by default), <hash>
# covering the wrapper module, the XRD and this script, so a change to any of them regenerates.
# Cost, measured on 2 cores: cold (empty Go module, Go build and Flotilla caches: ~200 MB of
# modules from the proxy, then the build) 53 s, nearly all of it compiling (the same 53 s with
# the modules already in Go's module cache; 32 s when Go's build cache holds some of the shared
# k8s packages); warm (the CRD in the cache) 10 ms.
# Errors go to stderr with a non-zero exit.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
SRC="$HERE/xcrd"
BUILD="$HERE/../support/go-build-cached.sh"
XRD="$(realpath -e "${1:-$HERE/../fixtures/crossplane/xrd.yaml}" 2>/dev/null)" \
  || { echo "crossplane-claim-crd: error: no XRD at ${1:-$HERE/../fixtures/crossplane/xrd.yaml}" >&2; exit 1; }

die() { echo "crossplane-claim-crd: error: $*" >&2; exit 1; }

# One home for the version: the wrapper's go.mod.
VERSION="$(sed -n 's|^[[:space:]]*github.com/crossplane/crossplane-runtime/v2 \(v[^ ]*\)$|\1|p' "$SRC/go.mod")"
[ -n "$VERSION" ] || die "$SRC/go.mod requires no github.com/crossplane/crossplane-runtime/v2"

FLOTILLA_CACHE="${FLOTILLA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/flotilla}"
key="$(cat "$SRC/go.mod" "$SRC/go.sum" "$SRC"/*.go "$XRD" "${BASH_SOURCE[0]}" "$BUILD" | sha256sum | cut -c1-12)"
DIR="$FLOTILLA_CACHE/crossplane-claim-crd-$VERSION-$key"
OUT="$DIR/claim-crd.yaml"
if [ -s "$OUT" ]; then echo "$OUT"; exit 0; fi

bin="$("$BUILD" crossplane-xcrd "$SRC" .)" || die "could not build the claim CRD generator ($SRC); it needs Go and the Go module proxy (or Go's module cache)"
mkdir -p "$FLOTILLA_CACHE"
STAGE="$(mktemp -d "$FLOTILLA_CACHE/.crossplane-claim-crd.XXXXXX")"
trap 'rm -rf "$STAGE"' EXIT
"$bin" "$XRD" >"$STAGE/claim-crd.yaml" || die "$bin $XRD failed"
[ -s "$STAGE/claim-crd.yaml" ] || die "$bin $XRD printed nothing"
chmod 755 "$STAGE"
# Another run may have finished first: keep whichever landed, both are the same CRD.
if mv -T "$STAGE" "$DIR" 2>/dev/null; then trap - EXIT; fi
[ -s "$OUT" ] || die "could not install $OUT"
echo "$OUT"
