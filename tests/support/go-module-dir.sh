#!/usr/bin/env bash
# Downloads one Go module at a pinned version through the Go module proxy (a module zip holds
# every file of the repository at the tag) and prints the absolute path of its directory in Go's
# module cache (`go env GOMODCACHE`; no GOMODCACHE of our own), so a second run reads the cache
# and needs no network. The module's hash is checked against SUM on top of the checksum
# database's check. For the scripts that take a pinned file (a CRD) from a project's module:
# ../cluster/claim-crds.sh, ../cluster/monitoring-crds.sh.
#
#   go-module-dir.sh MODULE VERSION SUM WHAT
#
# WHAT says, in an error, what the module is needed for. Errors go to stderr with a non-zero exit.
set -euo pipefail
MODULE="$1" VERSION="$2" SUM="$3" WHAT="$4"

die() { echo "go-module-dir: error: $*" >&2; exit 1; }

command -v go >/dev/null 2>&1 \
  || die "go not found on PATH: the Go toolchain is needed to download $MODULE@$VERSION ($WHAT)"

export GOTOOLCHAIN=local GO111MODULE=on GOFLAGS="-mod=readonly -buildvcs=false"
# Outside any module, so no go.mod or go.sum of the caller's is read or written.
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"

start=$(date +%s%N)
status=0
out="$(go mod download -json "$MODULE@$VERSION" 2>"$WORK/stderr")" || status=$?
field() { printf '%s\n' "$out" | sed -n "s/^[[:space:]]*\"$1\": \"\(.*\)\",\{0,1\}\$/\1/p" | head -n 1; }
err="$(field Error | sed 's/\\[nt]/ /g; s/  */ /g')"
if [ "$status" -ne 0 ] || [ -n "$err" ]; then
  cat "$WORK/stderr" >&2
  die "go mod download $MODULE@$VERSION failed (exit $status)${err:+: $err}"
fi
dir="$(field Dir)"
sum="$(field Sum)"
[ -n "$dir" ] || die "go mod download printed no module directory:"$'\n'"$out"
[ "$sum" = "$SUM" ] || die "$MODULE@$VERSION has hash ${sum:-none}, pinned $SUM"
ms=$(( ($(date +%s%N) - start) / 1000000 ))
[ "$ms" -lt 1000 ] || echo "go-module-dir: $MODULE@$VERSION downloaded in ${ms} ms" >&2
echo "$dir"
