#!/usr/bin/env bash
# make demo: the local cluster, the CRDs and RBAC, the operator (running as its own
# ServiceAccount, with exactly config/rbac), and the shop from examples/shop, until every
# Microservice is Ready.   make demo-down: stop the operator and the cluster.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEMO_DIR="$ROOT/target/demo"
KUBECONFIG="$ROOT/target/cluster/kubeconfig"
KUBECTL="$ROOT/target/cluster/bin/kubectl"
export KUBECONFIG
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
die() { echo "demo: $*" >&2; exit 1; }

# until_true SECONDS WHAT COMMAND...: run COMMAND every half second until it succeeds; fail
# naming WHAT after SECONDS. Polling reads the state as it is: unlike `kubectl wait`, it does not
# stop with an error when it reads an object whose status the API server has not written yet.
until_true() {
  local deadline=$(( $(date +%s) + $1 )) what="$2"; shift 2
  until "$@"; do
    [ "$(date +%s)" -lt "$deadline" ] || die "timed out waiting for $what"
    sleep 0.5
  done
}

# crds_established NAME...: every named CRD has condition Established=True.
crds_established() {
  local crd
  for crd in "$@"; do
    [ "$("$KUBECTL" get crd "$crd" -o jsonpath='{.status.conditions[?(@.type=="Established")].status}' 2>/dev/null)" = True ] || return 1
  done
}

# all_ready NAMESPACE: at least one Microservice, and every one has Ready=True for its current
# generation (observedGeneration equals generation, so a Ready left from an older spec does not count).
all_ready() {
  local lines
  lines="$("$KUBECTL" get microservices -n "$1" -o jsonpath='{range .items[*]}{.metadata.generation}/{.status.observedGeneration}/{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}' 2>/dev/null)" || return 1
  [ -n "$lines" ] || return 1
  ! grep -qvE '^([0-9]+)/\1/True$' <<<"$lines"
}

case "${1:-up}" in
up)
  say "local cluster"
  make -C "$ROOT" --no-print-directory cluster-up
  say "building flotilla"
  (cd "$ROOT" && cargo build --quiet)
  say "CRDs and RBAC"
  "$KUBECTL" apply --server-side -f "$ROOT/crds/flotilla.dev.yaml"
  until_true 60 "the CRDs to be Established" crds_established microservices.flotilla.dev databaseclasses.flotilla.dev
  "$KUBECTL" apply -k "$ROOT/config/rbac"

  say "operator (as system:serviceaccount:flotilla-system:flotilla)"
  mkdir -p "$DEMO_DIR"
  if [ -f "$DEMO_DIR/operator.pid" ] && kill -0 "$(cat "$DEMO_DIR/operator.pid")" 2>/dev/null; then
    echo "already running (pid $(cat "$DEMO_DIR/operator.pid"))"
  else
    "$KUBECTL" config view --raw --flatten > "$DEMO_DIR/kubeconfig"
    "$KUBECTL" --kubeconfig "$DEMO_DIR/kubeconfig" config set-credentials \
      "$("$KUBECTL" --kubeconfig "$DEMO_DIR/kubeconfig" config view -o jsonpath='{.users[0].name}')" \
      --as=system:serviceaccount:flotilla-system:flotilla >/dev/null
    KUBECONFIG="$DEMO_DIR/kubeconfig" nohup "$ROOT/target/debug/flotilla" run \
      --metrics-addr 127.0.0.1:18080 --leader-elect-namespace flotilla-system \
      > "$DEMO_DIR/operator.log" 2>&1 &
    echo $! > "$DEMO_DIR/operator.pid"
    operator_ready() {
      kill -0 "$(cat "$DEMO_DIR/operator.pid")" 2>/dev/null || { tail -20 "$DEMO_DIR/operator.log" >&2; die "the operator exited"; }
      curl -fsS http://127.0.0.1:18080/readyz >/dev/null 2>&1
    }
    until_true 90 "the operator's /readyz (log: $DEMO_DIR/operator.log)" operator_ready
    echo "pid $(cat "$DEMO_DIR/operator.pid"), log $DEMO_DIR/operator.log"
  fi

  say "the shop (examples/shop)"
  "$KUBECTL" apply -k "$ROOT/examples/shop"
  start=$(date +%s)
  until_true 300 "every Microservice in namespace shop to be Ready" all_ready shop
  echo "every Microservice Ready in $(( $(date +%s) - start ))s"
  say "kubectl get ms -A"
  "$KUBECTL" get ms -A
  cat <<TXT

Poke at it:
  source tests/cluster/env.sh                  # kubectl on PATH, KUBECONFIG set
  kubectl get ms,deploy,svc,hpa,netpol,pdb,ingress -n shop
  kubectl describe ms orders -n shop           # conditions and events
  kubectl scale ms catalog -n shop --replicas=3
  kubectl annotate pods -n shop -l flotilla.dev/microservice=frontend kwok.x-k8s.io/usage-cpu=500m --overwrite
                                               # simulated load: watch the HPA grow frontend
  curl -s 127.0.0.1:18080/metrics | grep flotilla_
  make demo-down                               # stop the operator and the cluster
TXT
  ;;
down)
  if [ -f "$DEMO_DIR/operator.pid" ]; then
    kill "$(cat "$DEMO_DIR/operator.pid")" 2>/dev/null || true
    rm -f "$DEMO_DIR/operator.pid"
    echo "operator stopped"
  fi
  make -C "$ROOT" --no-print-directory cluster-down
  ;;
*) echo "usage: $0 [up|down]" >&2; exit 2 ;;
esac
