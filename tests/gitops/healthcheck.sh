#!/usr/bin/env bash
# Builds healthcheck (go/argocd/healthcheck: a health script run in Argo CD's own Lua engine,
# util/lua) into the cache outside the work tree and prints the binary's path. It shares Argo CD's
# wrapper module, toolchain and Go build cache, so after `build.sh argocd` it only links.
#
#   tests/gitops/healthcheck.sh          build if needed, print the binary's path
#   tests/gitops/healthcheck.sh --print  only print the path (no build)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
SRC="$GITOPS_SRC/go/argocd"
key="$({ echo "toolchain=$ARGOCD_GOTOOLCHAIN"; cat "$SRC/go.mod" "$SRC/go.sum" "$SRC/healthcheck/main.go" "${BASH_SOURCE[0]}"; } | sha256sum | cut -c1-12)"
BIN="$FLOTILLA_CACHE/argocd-healthcheck-$key/healthcheck"
if [ "${1:-}" = --print ] || [ -x "$BIN" ]; then echo "$BIN"; exit 0; fi
command -v go >/dev/null 2>&1 || die "go not found on PATH (needed to build Argo CD's Lua engine for the health check test)"
mkdir -p "$FLOTILLA_CACHE"
STAGE="$(mktemp -d "$FLOTILLA_CACHE/.argocd-healthcheck.XXXXXX")"
trap 'rm -rf "$STAGE"' EXIT
log "building Argo CD's Lua engine for the health check (first time: a few minutes)"
if ! (cd "$SRC" && GOTOOLCHAIN="$ARGOCD_GOTOOLCHAIN" CGO_ENABLED=0 GOFLAGS="-mod=readonly -buildvcs=false" \
      go build -p "${FLOTILLA_BUILD_P:-2}" -trimpath -ldflags "-s -w" -o "$STAGE/healthcheck" ./healthcheck) >"$STAGE/build.log" 2>&1; then
  tail -n 30 "$STAGE/build.log" >&2
  die "go build ./healthcheck failed in $SRC"
fi
rm -f "$STAGE/build.log"
chmod 755 "$STAGE"
mv -T "$STAGE" "$(dirname "$BIN")" 2>/dev/null || [ -x "$BIN" ] || die "could not install $BIN"
trap - EXIT
echo "$BIN"
