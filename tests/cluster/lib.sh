# shellcheck shell=bash disable=SC2034  # variables are used by the scripts that source this
# Shared settings for the local-cluster scripts. Sourced, not executed.
# All paths are absolute, derived from this file's location, so the scripts
# work from any current directory.

CLUSTER_SRC="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$CLUSTER_SRC/../.." && pwd)"

# Versions (must match the go.mod files under go/).
K8S_VERSION="v1.36.5"
ETCD_VERSION="v3.6.16"
KWOK_VERSION="v0.8.0"
METRICS_SERVER_VERSION="v0.9.0"

# Where the running cluster keeps its state (git-ignored).
CLUSTER_DIR="${CLUSTER_DIR:-$REPO_ROOT/target/cluster}"
case "$CLUSTER_DIR" in /*) ;; *) CLUSTER_DIR="$REPO_ROOT/$CLUSTER_DIR" ;; esac
CLUSTER_NAME="${CLUSTER_NAME:-flotilla}"
KUBECONFIG_OUT="$CLUSTER_DIR/kubeconfig"
KWOK_HOME="$CLUSTER_DIR/kwok"
KWOK_CLUSTER_DIR="$KWOK_HOME/clusters/$CLUSTER_NAME"
APISERVER_PORT="${FLOTILLA_APISERVER_PORT:-16443}"
NODE_COUNT="${FLOTILLA_NODE_COUNT:-3}"
# Build cache: keyed by the wrapper modules (go.mod, go.sum, main.go) and
# BUILD_REV, so a version bump lands in a new directory and rebuilds. Bump
# BUILD_REV when build.sh changes its flags.
BUILD_REV=1
cache_key() {
  { echo "rev=$BUILD_REV"; cd "$CLUSTER_SRC" && cat go/*/go.mod go/*/go.sum go/etcd/main.go; } | sha256sum | cut -c1-12
}
FLOTILLA_CACHE="${FLOTILLA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/flotilla}"
BIN_DIR="$FLOTILLA_CACHE/cluster-k8s-$K8S_VERSION-$(cache_key)/bin"
BINARIES=(kube-apiserver kube-controller-manager kube-scheduler kubectl etcd kwok kwokctl metrics-server)

die() { echo "cluster: error: $*" >&2; exit 1; }
log() { echo "cluster: $*" >&2; }

have_all_binaries() {
  local b
  for b in "${BINARIES[@]}"; do [ -x "$BIN_DIR/$b" ] || return 1; done
}
