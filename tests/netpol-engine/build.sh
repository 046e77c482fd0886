#!/usr/bin/env bash
# Builds the NetworkPolicy engine (main.go, cyclonus's matcher) into a cache directory outside
# the work tree, keyed by the content of its sources, and prints the binary's path on stdout.
# Rebuilds only when go.mod, go.sum, main.go or this script change. Modules come from the Go
# module proxy (or the local module cache); go.sum pins them.
#
#   tests/netpol-engine/build.sh          build if needed, print the binary's path
#   tests/netpol-engine/build.sh --print  only print the path (no build)
set -euo pipefail
SRC="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

die() { echo "netpol-engine: error: $*" >&2; exit 1; }

FLOTILLA_CACHE="${FLOTILLA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/flotilla}"
key="$(cd "$SRC" && cat go.mod go.sum main.go build.sh | sha256sum | cut -c1-12)"
BIN="$FLOTILLA_CACHE/netpol-engine-$key/netpol-engine"

if [ "${1:-}" = "--print" ]; then echo "$BIN"; exit 0; fi
if [ -x "$BIN" ]; then echo "$BIN"; exit 0; fi

command -v go >/dev/null 2>&1 \
  || die "go not found on PATH: the Go toolchain (>= 1.22) is needed to build the NetworkPolicy engine (tests/netpol-engine)"

export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS="-mod=readonly -buildvcs=false"
mkdir -p "$FLOTILLA_CACHE"
STAGE="$(mktemp -d "$FLOTILLA_CACHE/.netpol-engine.XXXXXX")"
trap 'rm -rf "$STAGE"' EXIT
start=$(date +%s)
if ! (cd "$SRC" && go build -p "${FLOTILLA_BUILD_P:-2}" -trimpath -ldflags "-s -w" -o "$STAGE/netpol-engine" .) >"$STAGE/build.log" 2>&1; then
  tail -n 30 "$STAGE/build.log" >&2
  die "go build failed in $SRC"
fi
chmod 755 "$STAGE"
rm -f "$STAGE/build.log"
# Another build may have finished first: keep whichever landed, both are the same program.
if ! mv -T "$STAGE" "$(dirname "$BIN")" 2>/dev/null; then
  [ -x "$BIN" ] || die "could not install $BIN"
else
  trap - EXIT
fi
echo "netpol-engine: built in $(( $(date +%s) - start ))s: $BIN" >&2
echo "$BIN"
