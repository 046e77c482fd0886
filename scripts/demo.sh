#!/usr/bin/env bash
# make demo: the local cluster, the CRDs and RBAC, the operator (running as its own
# ServiceAccount, with exactly config/rbac), and the shop from examples/shop, until every
# Microservice is Ready.   make demo-gitops: the same shop delivered by a real Argo CD from a
# Git repository on 127.0.0.1.   make demo-down: stop everything.
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

# start_bg NAME COMMAND...: run COMMAND in the background, its pid in $DEMO_DIR/NAME.pid and its
# output in $DEMO_DIR/NAME.log, unless it already runs.
start_bg() {
  local name="$1"; shift
  if [ -f "$DEMO_DIR/$name.pid" ] && kill -0 "$(cat "$DEMO_DIR/$name.pid")" 2>/dev/null; then
    echo "$name already running (pid $(cat "$DEMO_DIR/$name.pid"))"; return
  fi
  nohup "$@" > "$DEMO_DIR/$name.log" 2>&1 &
  echo $! > "$DEMO_DIR/$name.pid"
  echo "$name: pid $!, log $DEMO_DIR/$name.log"
}

# app_synced_healthy: the Argo CD Application shop is Synced and Healthy.
app_synced_healthy() {
  [ "$("$KUBECTL" -n argocd get application shop -o jsonpath='{.status.sync.status}/{.status.health.status}' 2>/dev/null)" = Synced/Healthy ]
}

MODE="${1:-up}"
case "$MODE" in
up|gitops)
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
      --metrics-addr 127.0.0.1:18080 --leader-elect-namespace flotilla-system --policy "$ROOT/config/manager/policy.yaml" \
      > "$DEMO_DIR/operator.log" 2>&1 &
    echo $! > "$DEMO_DIR/operator.pid"
    operator_ready() {
      kill -0 "$(cat "$DEMO_DIR/operator.pid")" 2>/dev/null || { tail -20 "$DEMO_DIR/operator.log" >&2; die "the operator exited"; }
      curl -fsS http://127.0.0.1:18080/readyz >/dev/null 2>&1
    }
    until_true 90 "the operator's /readyz (log: $DEMO_DIR/operator.log)" operator_ready
    echo "pid $(cat "$DEMO_DIR/operator.pid"), log $DEMO_DIR/operator.log"
  fi

  if [ "$MODE" = gitops ]; then
    say "Argo CD (built from its Go module on first use: several minutes), Redis, a Git server"
    ARGOCD="$("$ROOT/tests/gitops/build.sh" argocd)"
    GITHTTP="$("$ROOT/tests/githttp/build.sh")"
    REDIS="$("$ROOT/tests/gitops/redis.sh")"
    "$KUBECTL" apply --server-side -f "$ARGOCD/crds/argocd/application-crd.yaml" -f "$ARGOCD/crds/argocd/appproject-crd.yaml"
    until_true 60 "the Argo CD CRDs to be Established" crds_established applications.argoproj.io appprojects.argoproj.io
    "$KUBECTL" create namespace argocd --dry-run=client -o yaml | "$KUBECTL" apply -f -
    "$KUBECTL" -n argocd apply -f - <<'YAML'
apiVersion: v1
kind: ConfigMap
metadata: {name: argocd-cm, labels: {app.kubernetes.io/part-of: argocd}}
data: {timeout.reconciliation: 30s}
---
apiVersion: v1
kind: Secret
metadata: {name: argocd-secret, labels: {app.kubernetes.io/part-of: argocd}}
stringData: {server.secretkey: flotilla-demo-not-a-secret}
---
apiVersion: argoproj.io/v1alpha1
kind: AppProject
metadata: {name: default}
spec:
  sourceRepos: ['*']
  destinations: [{server: '*', namespace: '*'}]
  clusterResourceWhitelist: [{group: '*', kind: '*'}]
YAML
    # The health check, installed as config/argocd/README.md says.
    "$KUBECTL" -n argocd patch configmap argocd-cm --type merge --patch-file "$ROOT/config/argocd/argocd-cm-patch.yaml"
    mkdir -p "$DEMO_DIR/repo-server-tmp" "$DEMO_DIR/git"
    start_bg redis "$REDIS" --bind 127.0.0.1 --port 16379 --save '' --appendonly no --dir "$DEMO_DIR"
    PATH="$ARGOCD/bin:$PATH" TMPDIR="$DEMO_DIR/repo-server-tmp" ARGOCD_GPG_ENABLED=false \
      ARGOCD_ASK_PASS_SOCK="$DEMO_DIR/askpass.sock" ARGOCD_BINARY_NAME=argocd-repo-server \
      start_bg argocd-repo-server "$ARGOCD/bin/argocd" --address 127.0.0.1 --port 18081 \
      --metrics-address 127.0.0.1 --metrics-port 18084 --redis 127.0.0.1:16379
    PATH="$ARGOCD/bin:$PATH" ARGOCD_FAKE_IN_CLUSTER=true ARGOCD_BINARY_NAME=argocd-application-controller \
      start_bg argocd-application-controller "$ARGOCD/bin/argocd" --namespace argocd \
      --redis 127.0.0.1:16379 --repo-server 127.0.0.1:18081 --metrics-port 18082 --persist-resource-health
    start_bg githttp "$GITHTTP" -root "$DEMO_DIR/git" -addr 127.0.0.1:18090

    say "the shop in Git (target/demo/shop), delivered by Argo CD"
    if [ ! -d "$DEMO_DIR/git/shop.git" ]; then
      git init -q --bare -b main "$DEMO_DIR/git/shop.git"
      git -C "$DEMO_DIR/git/shop.git" config http.receivepack true
      rm -rf "$DEMO_DIR/shop" && mkdir -p "$DEMO_DIR/shop"
      # The plain manifests: Argo CD would build kustomization.yaml with a kustomize binary.
      find "$ROOT/examples/shop" -name '*.yaml' ! -name kustomization.yaml -exec cp {} "$DEMO_DIR/shop/" \;
      git -C "$DEMO_DIR/shop" init -q -b main
      git -C "$DEMO_DIR/shop" config user.name "flotilla demo"
      git -C "$DEMO_DIR/shop" config user.email demo@flotilla.dev
      git -C "$DEMO_DIR/shop" add -A
      git -C "$DEMO_DIR/shop" commit -q -m "the shop"
      git -C "$DEMO_DIR/shop" remote add origin http://127.0.0.1:18090/shop.git
    fi
    until_true 30 "the Git server" git -C "$DEMO_DIR/shop" push -q origin main
    "$KUBECTL" -n argocd apply -f - <<'YAML'
apiVersion: argoproj.io/v1alpha1
kind: Application
metadata: {name: shop}
spec:
  project: default
  source: {repoURL: 'http://127.0.0.1:18090/shop.git', targetRevision: main, path: .}
  destination: {server: 'https://kubernetes.default.svc', namespace: shop}
  syncPolicy: {automated: {prune: true, selfHeal: true}}
YAML
    start=$(date +%s)
    until_true 300 "the Application shop to be Synced and Healthy (logs: $DEMO_DIR/argocd-*.log)" app_synced_healthy
    echo "Application shop Synced and Healthy in $(( $(date +%s) - start ))s"
  else
    say "the shop (examples/shop)"
    "$KUBECTL" apply -k "$ROOT/examples/shop"
  fi
  start=$(date +%s)
  until_true 300 "every Microservice in namespace shop to be Ready" all_ready shop
  echo "every Microservice Ready in $(( $(date +%s) - start ))s"
  rss="$(awk '/^VmRSS/ {printf "%.0f MiB", $2 / 1024}' "/proc/$(cat "$DEMO_DIR/operator.pid")/status" 2>/dev/null)"
  echo "operator memory (RSS) running the shop: ${rss:-unknown} (commit $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null))"
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
  if [ "$MODE" = gitops ]; then
    cat <<TXT

Delivered by Argo CD from Git: push a change and watch it roll out
  cd target/demo/shop && sed -i 's/catalog:1.9.4/catalog:1.9.5/' catalog.yaml \\
    && git commit -qam 'catalog 1.9.5' && git push -q origin main && cd -
  kubectl -n argocd annotate application shop argocd.argoproj.io/refresh=normal --overwrite
                                               # or wait for Argo CD's next poll (30 s)
  kubectl -n argocd get application shop -w    # OutOfSync, Synced/Progressing, Synced/Healthy
TXT
  fi
  ;;
down)
  for name in argocd-application-controller argocd-repo-server redis githttp operator; do
    if [ -f "$DEMO_DIR/$name.pid" ]; then
      kill "$(cat "$DEMO_DIR/$name.pid")" 2>/dev/null || true
      rm -f "$DEMO_DIR/$name.pid"
      echo "$name stopped"
    fi
  done
  rm -rf "$DEMO_DIR/git" "$DEMO_DIR/shop"
  make -C "$ROOT" --no-print-directory cluster-down
  ;;
*) echo "usage: $0 [up|gitops|down]" >&2; exit 2 ;;
esac
