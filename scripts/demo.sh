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

case "${1:-up}" in
up)
  say "local cluster"
  make -C "$ROOT" --no-print-directory cluster-up
  say "building flotilla"
  (cd "$ROOT" && cargo build --quiet)
  say "CRDs and RBAC"
  "$KUBECTL" apply --server-side -f "$ROOT/crds/flotilla.dev.yaml"
  "$KUBECTL" wait --for=condition=Established crd/microservices.flotilla.dev crd/databaseclasses.flotilla.dev --timeout=30s
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
    for _ in $(seq 1 60); do
      curl -fsS http://127.0.0.1:18080/readyz >/dev/null 2>&1 && break
      kill -0 "$(cat "$DEMO_DIR/operator.pid")" 2>/dev/null || { tail -20 "$DEMO_DIR/operator.log"; echo "demo: the operator exited" >&2; exit 1; }
      sleep 0.5
    done
    echo "pid $(cat "$DEMO_DIR/operator.pid"), log $DEMO_DIR/operator.log"
  fi

  say "the shop (examples/shop)"
  "$KUBECTL" apply -k "$ROOT/examples/shop"
  start=$(date +%s)
  "$KUBECTL" wait --for=condition=Ready microservices --all -n shop --timeout=180s
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
