#!/usr/bin/env bash
# Stops every process of the local cluster and removes its state
# (target/cluster). Safe to run when nothing is running.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
export KWOK_WORKDIR="$KWOK_HOME"

# Processes started for this cluster: from kwokctl's pid files, plus any
# process started from this cluster's bin/ directory (a crashed kwokctl may
# have lost its pid files). Only these ids are signalled.
our_pids() {
  local f
  for f in "$KWOK_CLUSTER_DIR"/pids/*.pid; do
    [ -f "$f" ] && cat "$f" && echo
  done
  # only processes whose executable is one of this cluster's component binaries
  if command -v pgrep >/dev/null; then pgrep -f -- "^$KWOK_CLUSTER_DIR/bin/" || true; fi
}
alive() { local p; for p in "$@"; do kill -0 "$p" 2>/dev/null && echo "$p"; done; }

mapfile -t PIDS < <(our_pids | grep -E '^[0-9]+$' | sort -u)

# The directories of the volumes the hostPath provisioner made for this cluster: the provisioner
# removes one when its claim goes, but not when the whole cluster is stopped with claims in place.
VOLUME_DIRS=()
if [ -f "$KWOK_CLUSTER_DIR/kubeconfig.yaml" ] && [ -x "$BIN_DIR/kubectl" ]; then
  mapfile -t VOLUME_DIRS < <("$BIN_DIR/kubectl" --kubeconfig "$KWOK_CLUSTER_DIR/kubeconfig.yaml" --request-timeout=5s \
    get pv -o jsonpath='{range .items[*]}{.spec.hostPath.path}{"\n"}{end}' 2>/dev/null | grep -E '^/tmp/hostpath_pv/[0-9a-f-]+$' || true)
fi

if [ -d "$KWOK_CLUSTER_DIR" ] && [ -x "$BIN_DIR/kwokctl" ]; then
  # kwokctl wants a kubeconfig to remove its context from; give it a scratch one
  # (the user's ~/.kube/config is never touched).
  : > "$CLUSTER_DIR/kwokctl-scratch.kubeconfig"
  "$BIN_DIR/kwokctl" delete cluster --name "$CLUSTER_NAME" --kubeconfig "$CLUSTER_DIR/kwokctl-scratch.kubeconfig" \
      >"$CLUSTER_DIR/kwokctl-delete.log" 2>&1 \
    || { log "kwokctl delete cluster failed (continuing with pid files):"; tail -n 3 "$CLUSTER_DIR/kwokctl-delete.log" >&2; }
fi

if [ "${#PIDS[@]}" -gt 0 ]; then
  mapfile -t LEFT < <(alive "${PIDS[@]}")
  if [ "${#LEFT[@]}" -gt 0 ]; then
    kill -TERM "${LEFT[@]}" 2>/dev/null || true
    for _ in $(seq 1 50); do
      mapfile -t LEFT < <(alive "${LEFT[@]}")
      [ "${#LEFT[@]}" -eq 0 ] && break
      sleep 0.2
    done
    if [ "${#LEFT[@]}" -gt 0 ]; then kill -KILL "${LEFT[@]}" 2>/dev/null || true; fi
  fi
fi

mapfile -t LEFT < <(our_pids | grep -E '^[0-9]+$' | sort -u | while read -r p; do alive "$p"; done)
[ "${#LEFT[@]}" -eq 0 ] || die "processes still running after cluster-down: ${LEFT[*]}"

rm -rf "$CLUSTER_DIR"
[ "${#VOLUME_DIRS[@]}" -eq 0 ] || rm -rf "${VOLUME_DIRS[@]}"
log "cluster '$CLUSTER_NAME' stopped, state removed"
