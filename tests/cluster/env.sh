# shellcheck shell=bash
# Source this to use the local cluster from a shell:
#   source tests/cluster/env.sh
# Puts the built kubectl (and the other cluster binaries) on PATH and points
# KUBECONFIG at target/cluster/kubeconfig.
__flotilla_env() {
  local lib
  lib="$(dirname "${BASH_SOURCE[0]}")/lib.sh"
  # lib.sh defines helpers and variables; run it in a subshell and take BIN_DIR / KUBECONFIG_OUT.
  local out
  out="$(bash -c 'source "$1"; echo "$BIN_DIR"; echo "$KUBECONFIG_OUT"' _ "$lib")" || return 1
  FLOTILLA_BIN_DIR="$(sed -n 1p <<<"$out")"
  KUBECONFIG="$(sed -n 2p <<<"$out")"
  export FLOTILLA_BIN_DIR KUBECONFIG
  case ":$PATH:" in *":$FLOTILLA_BIN_DIR:"*) ;; *) PATH="$FLOTILLA_BIN_DIR:$PATH" ;; esac
  export PATH
}
__flotilla_env
unset -f __flotilla_env
