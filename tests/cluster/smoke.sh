#!/usr/bin/env bash
# Smoke check + figures for a running local cluster (make cluster-up first):
# pod created -> Running, PVC created -> Bound, first pod metrics, and the
# resident memory of every control-plane process. Cleans up after itself.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
[ -f "$KUBECONFIG_OUT" ] || die "no cluster: run 'make cluster-up' first"
k() { "$BIN_DIR/kubectl" --kubeconfig "$KUBECONFIG_OUT" --request-timeout=20s "$@"; }
now() { date +%s%N; }
ms() { echo "$(( ($(now) - $1) / 1000000 ))ms"; }
until_ok() { # until_ok <seconds> <what> <cmd...>
  local deadline=$(( $(date +%s) + $1 )) what="$2"; shift 2
  until "$@" >/dev/null 2>&1; do
    [ "$(date +%s)" -lt "$deadline" ] || die "timed out waiting for $what"
    sleep 0.1
  done
}

NS="smoke-$(date +%s)-$$"
k create namespace "$NS" >/dev/null
trap 'k delete namespace "$NS" --wait=false >/dev/null 2>&1 || true' EXIT

t=$(now)
k -n "$NS" run smoke --image=registry.invalid/fake:1 --restart=Never \
  --annotations=kwok.x-k8s.io/usage-cpu=250m --annotations=kwok.x-k8s.io/usage-memory=100Mi >/dev/null
running() { [ "$(k -n "$NS" get pod smoke -o jsonpath='{.status.phase}')" = Running ]; }
until_ok 60 "pod Running" running
echo "pod created -> Running:        $(ms "$t") (node $(k -n "$NS" get pod smoke -o jsonpath='{.spec.nodeName}'))"

t=$(now)
k -n "$NS" apply -f - >/dev/null <<'EOF'
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: smoke}
spec:
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 1Gi}}
EOF
bound() { [ "$(k -n "$NS" get pvc smoke -o jsonpath='{.status.phase}')" = Bound ]; }
until_ok 60 "PVC Bound" bound
echo "PVC created -> Bound:          $(ms "$t") (storageClass $(k -n "$NS" get pvc smoke -o jsonpath='{.spec.storageClassName}'), PV $(k -n "$NS" get pvc smoke -o jsonpath='{.spec.volumeName}'))"

t=$(now)
top_ok() { k -n "$NS" top pod smoke --no-headers | grep -q smoke; }
until_ok 90 "pod metrics (kubectl top)" top_ok
echo "pod Running -> kubectl top:    $(ms "$t") ($(k -n "$NS" top pod smoke --no-headers | awk '{print "cpu " $2 ", memory " $3}'))"

total=0
for f in "$KWOK_CLUSTER_DIR"/pids/*.pid; do
  rss=$(awk '/VmRSS/{print $2}' "/proc/$(cat "$f")/status")
  total=$((total + rss))
  printf 'RSS %-24s %5d MiB\n' "$(basename "$f" .pid)" $((rss / 1024))
done
printf 'RSS %-24s %5d MiB\n' total $((total / 1024))
