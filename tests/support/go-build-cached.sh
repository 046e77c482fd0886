#!/usr/bin/env bash
# Builds one Go program of a test tool directory (go.mod, go.sum, any *.go) into a cache
# directory outside the work tree, keyed by the content of those files and of the caller's
# script, and prints the binary's path on stdout. Modules come from the Go module proxy (or the
# local module cache); go.sum pins them.
#
#   go-build-cached.sh NAME SRC_DIR PACKAGE [--print]
#
# NAME is the binary's name, SRC_DIR the directory holding go.mod, PACKAGE what to build there
# (`.` for the directory's own main package, or a tool's import path listed in go.mod).
# With --print it only prints the path (no build).
set -euo pipefail
NAME="$1" SRC="$(cd "$2" && pwd)" PKG="$3" MODE="${4:-}"

die() { echo "$NAME: error: $*" >&2; exit 1; }

FLOTILLA_CACHE="${FLOTILLA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/flotilla}"
key="$(cd "$SRC" && { cat go.mod go.sum ./*.go 2>/dev/null; cat "${BASH_SOURCE[0]}"; echo "$PKG"; } | sha256sum | cut -c1-12)"
BIN="$FLOTILLA_CACHE/$NAME-$key/$NAME"

if [ "$MODE" = "--print" ]; then echo "$BIN"; exit 0; fi
if [ -x "$BIN" ]; then echo "$BIN"; exit 0; fi

command -v go >/dev/null 2>&1 \
  || die "go not found on PATH: the Go toolchain (>= 1.24) is needed to build $NAME ($SRC)"

export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS="-mod=readonly -buildvcs=false"
mkdir -p "$FLOTILLA_CACHE"
STAGE="$(mktemp -d "$FLOTILLA_CACHE/.$NAME.XXXXXX")"
trap 'rm -rf "$STAGE"' EXIT
start=$(date +%s)
if ! (cd "$SRC" && go build -p "${FLOTILLA_BUILD_P:-2}" -trimpath -ldflags "-s -w" -o "$STAGE/$NAME" "$PKG") >"$STAGE/build.log" 2>&1; then
  tail -n 30 "$STAGE/build.log" >&2
  die "go build $PKG failed in $SRC"
fi
chmod 755 "$STAGE"
rm -f "$STAGE/build.log"
# Another build may have finished first: keep whichever landed, both are the same program.
if ! mv -T "$STAGE" "$(dirname "$BIN")" 2>/dev/null; then
  [ -x "$BIN" ] || die "could not install $BIN"
else
  trap - EXIT
fi
echo "$NAME: built in $(( $(date +%s) - start ))s: $BIN" >&2
echo "$BIN"
