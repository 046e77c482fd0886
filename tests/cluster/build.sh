#!/usr/bin/env bash
# Builds the local-cluster binaries from published Go modules into a cache
# directory outside the work tree (see lib.sh: BIN_DIR). Rebuilds only when a
# binary is missing. Prints the bin directory on stdout.
#
#   tests/cluster/build.sh          build if needed, print BIN_DIR
#   tests/cluster/build.sh --print  only print BIN_DIR (no build)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

if [ "${1:-}" = "--print" ]; then echo "$BIN_DIR"; exit 0; fi
if have_all_binaries; then echo "$BIN_DIR"; exit 0; fi

command -v go >/dev/null 2>&1 || die "go not found on PATH (Go >= 1.26 is needed to build the cluster binaries)"
gov="$(go env GOVERSION 2>/dev/null || true)"
case "$gov" in
  go1.2[6-9]*|go1.[3-9][0-9]*|go[2-9]*) ;;
  *) die "Go >= 1.26 needed to build the cluster binaries, found '${gov:-unknown}'" ;;
esac

export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS="-mod=readonly -buildvcs=false"
# Two cores: at most 2 packages at once; linking kube-apiserver alone takes ~1-2 GB.
PAR="${FLOTILLA_BUILD_P:-2}"
mkdir -p "$FLOTILLA_CACHE"
STAGE="$(mktemp -d "$FLOTILLA_CACHE/.build.XXXXXX")"
LOG="$FLOTILLA_CACHE/build.log"
: > "$LOG"
trap 'rm -rf "$STAGE"' EXIT

build() { # build <module dir> <ldflags> <packages...>
  local dir="$1" ldflags="$2"; shift 2
  log "building $* (log: $LOG)"
  if ! (cd "$CLUSTER_SRC/go/$dir" && go build -p "$PAR" -trimpath -ldflags "$ldflags" -o "$STAGE/" "$@") >>"$LOG" 2>&1; then
    tail -n 20 "$LOG" >&2
    die "build failed for $dir (full log: $LOG)"
  fi
}

start=$(date +%s)
minor="${K8S_VERSION#v1.}"; minor="${minor%%.*}"
CB=k8s.io/component-base/version
build k8s "-s -w -X $CB.gitVersion=$K8S_VERSION -X $CB.gitMajor=1 -X $CB.gitMinor=$minor -X $CB.gitTreeState=clean -X $CB.buildDate=1970-01-01T00:00:00Z" \
  k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
  k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl
build etcd "-s -w" .   # module flotilla.local/cluster/etcd -> binary "etcd"
build kwok "-s -w -X sigs.k8s.io/kwok/pkg/consts.Version=${KWOK_VERSION#v} -X sigs.k8s.io/kwok/pkg/consts.KubeVersion=${K8S_VERSION#v}" \
  sigs.k8s.io/kwok/cmd/kwok sigs.k8s.io/kwok/cmd/kwokctl
build metrics-server "-s -w -X k8s.io/client-go/pkg/version.gitVersion=$METRICS_SERVER_VERSION -X k8s.io/client-go/pkg/version.gitTreeState=clean" \
  sigs.k8s.io/metrics-server/cmd/metrics-server

for b in "${BINARIES[@]}"; do [ -x "$STAGE/$b" ] || die "build produced no $b (log: $LOG)"; done
mkdir -p "$(dirname "$BIN_DIR")"
rm -rf "$BIN_DIR"
chmod 755 "$STAGE"
mv "$STAGE" "$BIN_DIR"
trap - EXIT
log "built ${BINARIES[*]} in $(( $(date +%s) - start ))s into $BIN_DIR"
echo "$BIN_DIR"
