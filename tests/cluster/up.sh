#!/usr/bin/env bash
# Starts (or reuses) the local Kubernetes cluster on 127.0.0.1:
#   etcd, kube-apiserver, kube-controller-manager, kube-scheduler (all v1.36),
#   kwok managing fake nodes, metrics-server reading kwok's simulated usage,
#   a default StorageClass "standard" that provisions a hostPath volume for each claim.
# Orchestrated by `kwokctl create cluster --runtime binary` with every binary
# taken from the local build cache (build.sh). Kubeconfig: target/cluster/kubeconfig.
# Idempotent: a healthy running cluster is reused (only the add-ons are re-applied).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
T0=$(date +%s%N)
elapsed() { echo "$(( ($(date +%s%N) - T0) / 1000000 ))ms"; }

# --- binaries ---------------------------------------------------------------
if ! have_all_binaries; then
  log "binaries missing in $BIN_DIR: building them first (cold build: ~10 min on 2 cores)"
  "$CLUSTER_SRC/build.sh" >/dev/null || exit 1   # build.sh printed the reason
fi
export PATH="$BIN_DIR:$PATH"
export KWOK_WORKDIR="$KWOK_HOME"
KWOK_KUBECONFIG="$KWOK_CLUSTER_DIR/kubeconfig.yaml"
kc() { "$BIN_DIR/kubectl" --kubeconfig "$KWOK_KUBECONFIG" --request-timeout=20s "$@"; }

pids_alive() { # every process kwokctl started is still running
  local f n=0
  for f in "$KWOK_CLUSTER_DIR"/pids/*.pid; do
    [ -f "$f" ] || continue
    n=$((n + 1))
    kill -0 "$(cat "$f")" 2>/dev/null || return 1
  done
  [ "$n" -ge 6 ]   # etcd apiserver kcm scheduler kwok metrics-server
}

apiserver_ready() {
  "$BIN_DIR/kubectl" --kubeconfig "$KWOK_KUBECONFIG" --request-timeout=3s get --raw=/readyz >/dev/null 2>&1
}

port_in_use() { # port_in_use <port>
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

write_kubeconfig() {
  mkdir -p "$CLUSTER_DIR"
  kc config view --raw --flatten > "$KUBECONFIG_OUT.tmp"
  chmod 600 "$KUBECONFIG_OUT.tmp"
  mv "$KUBECONFIG_OUT.tmp" "$KUBECONFIG_OUT"
  ln -sfn "$BIN_DIR" "$CLUSTER_DIR/bin"   # target/cluster/bin/kubectl for scripts and the demo
}

# Room for the scale benchmark's fleet (10,000 services at 100m CPU each, with room to spare):
# kubelet's default of 110 pods and a real node's CPU would leave most of it Pending.
NODE_PODS=4000
NODE_CAPACITY="{\"cpu\": \"2000\", \"memory\": \"16Ti\", \"pods\": \"$NODE_PODS\", \"ephemeral-storage\": \"64Ti\"}"

apply_nodes() {
  local i out="$CLUSTER_DIR/nodes.yaml"
  : > "$out"
  for i in $(seq 0 $((NODE_COUNT - 1))); do
    cat >> "$out" <<EOF
---
apiVersion: v1
kind: Node
metadata:
  name: kwok-node-$i
  annotations:
    kwok.x-k8s.io/node: fake
    node.alpha.kubernetes.io/ttl: "0"
    # metrics-server scrapes kwok's simulated kubelet resource metrics here.
    metrics.k8s.io/resource-metrics-path: /metrics/nodes/kwok-node-$i/metrics/resource
  labels:
    kubernetes.io/arch: amd64
    kubernetes.io/hostname: kwok-node-$i
    kubernetes.io/os: linux
    node-role.kubernetes.io/agent: ""
    type: kwok
    topology.kubernetes.io/zone: zone-$((i % 3))
spec:
  podCIDR: 10.244.$i.0/24
  podCIDRs: [10.244.$i.0/24]
status:
  # 127.0.0.1 so that metrics-server's scrape (InternalIP:kwok port) stays on loopback.
  addresses:
  - {type: InternalIP, address: 127.0.0.1}
  - {type: Hostname, address: kwok-node-$i}
  allocatable: $NODE_CAPACITY
  capacity: $NODE_CAPACITY
  nodeInfo:
    architecture: amd64
    operatingSystem: linux
    kubeletVersion: $K8S_VERSION
EOF
  done
  # create only: re-applying would fight kwok over .status
  kc create -f "$out" 2>&1 | grep -v -e AlreadyExists -e " created$" >&2 || true
  # A node created by an older up.sh keeps its smaller capacity: raise it in place.
  for i in $(seq 0 $((NODE_COUNT - 1))); do
    [ "$(kc get node "kwok-node-$i" -o jsonpath='{.status.capacity.pods}')" = "$NODE_PODS" ] && continue
    kc patch node "kwok-node-$i" --subresource=status --type=merge \
      -p "{\"status\":{\"capacity\":$NODE_CAPACITY,\"allocatable\":$NODE_CAPACITY}}" >/dev/null
  done
}

ensure_addons() {
  kc apply -f "$CLUSTER_SRC/config/addons.yaml" >/dev/null
  apply_nodes
}

# Copies the components' logs and the cluster's view of the add-ons out of $CLUSTER_DIR, which
# `make cluster-down` (and `make demo-down`) remove: a failed start stays diagnosable.
save_diagnostics() {
  local dir
  dir="$REPO_ROOT/target/cluster-failures/$(date +%Y%m%d-%H%M%S)-$$"
  mkdir -p "$dir"
  cp -r "$KWOK_CLUSTER_DIR/logs" "$dir/" 2>/dev/null || true
  cp "$CLUSTER_DIR/kwokctl-create.log" "$dir/" 2>/dev/null || true
  kc get apiservice v1beta1.metrics.k8s.io -o yaml > "$dir/apiservice.yaml" 2>&1 || true
  kc -n kube-system get service,endpoints -o yaml > "$dir/kube-system.yaml" 2>&1 || true
  kc get nodes -o wide > "$dir/nodes.txt" 2>&1 || true
  echo "$dir"
}

wait_until() { # wait_until <seconds> <what> <command...>
  local deadline=$(( $(date +%s) + $1 )) what="$2"; shift 2
  until "$@" >/dev/null 2>&1; do
    [ "$(date +%s)" -lt "$deadline" ] || die "timed out waiting for $what (logs kept in $(save_diagnostics))"
    sleep 0.5
  done
}

# A component that exits while the cluster comes up (metrics-server was seen to give up when the
# API server, slow on a loaded machine, refused its first request) is not restarted by kwokctl:
# start the whole cluster again, once, rather than fail the run.
start_again_once() {
  [ -z "${FLOTILLA_CLUSTER_RETRIED:-}" ] || die "$1 (logs kept in $(save_diagnostics))"
  log "$1 (logs kept in $(save_diagnostics)); starting the cluster again, once"
  CLUSTER_DIR="$CLUSTER_DIR" "$(dirname "${BASH_SOURCE[0]}")/down.sh" >/dev/null
  FLOTILLA_CLUSTER_RETRIED=1 exec "${BASH_SOURCE[0]}"
}
metrics_api_available() {
  [ "$(kc get apiservice v1beta1.metrics.k8s.io -o jsonpath='{.status.conditions[?(@.type=="Available")].status}')" = True ]
}
nodes_ready() {
  local ready
  ready="$(kc get nodes -o jsonpath='{range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}' | grep -c '^True$')"
  [ "$ready" -ge "$NODE_COUNT" ]
}
default_sa_exists() { kc -n default get serviceaccount default; }

# --- reuse a running cluster ------------------------------------------------
if [ -f "$KWOK_CLUSTER_DIR/kwok.yaml" ]; then
  if pids_alive && apiserver_ready; then
    # Volumes come from the controller-manager's hostPath provisioner (see config/addons.yaml);
    # a cluster started without it cannot provision, and its StorageClass cannot be changed in place.
    grep -q enable-hostpath-provisioner "$CLUSTER_DIR/kwokctl.yaml" 2>/dev/null \
      && grep -q kube-api-qps "$CLUSTER_DIR/kwokctl.yaml" 2>/dev/null \
      || die "the running cluster was started by an older up.sh (no volume provisioner, or the controller-manager at its default client rate): run 'make cluster-down' first"
    ensure_addons
    write_kubeconfig
    log "cluster '$CLUSTER_NAME' already running, reused ($(elapsed)); kubeconfig: $KUBECONFIG_OUT"
    exit 0
  fi
  die "leftovers of an earlier run in $CLUSTER_DIR (cluster '$CLUSTER_NAME' exists but is not healthy): run 'make cluster-down' first"
fi
if [ -e "$KWOK_HOME" ]; then
  die "leftovers of an earlier run in $KWOK_HOME: run 'make cluster-down' first"
fi
if command -v pgrep >/dev/null && pgrep -f -- "^$KWOK_CLUSTER_DIR/bin/" >/dev/null; then
  die "leftover processes of an earlier run still use $KWOK_HOME: run 'make cluster-down' first"
fi
if port_in_use "$APISERVER_PORT"; then
  die "port 127.0.0.1:$APISERVER_PORT (kube-apiserver) is in use: stop whatever holds it or set FLOTILLA_APISERVER_PORT"
fi

# --- create -----------------------------------------------------------------
mkdir -p "$CLUSTER_DIR"
PKI="$KWOK_CLUSTER_DIR/pki"
CONF="$CLUSTER_DIR/kwokctl.yaml"
cat > "$CONF" <<EOF
# Generated by tests/cluster/up.sh
apiVersion: config.kwok.x-k8s.io/v1alpha1
kind: KwokctlConfiguration
options:
  runtime: binary
  bindAddress: 127.0.0.1
  kubeApiserverPort: $APISERVER_PORT
  kubeVersion: $K8S_VERSION
  securePort: true
  kubeAuthorization: true
  enableMetricsServer: true
  metricsServerManifests:
  - $CLUSTER_SRC/config/metrics-server
  cacheDir: $CLUSTER_DIR/kwok-cache
  kubeApiserverBinary: $BIN_DIR/kube-apiserver
  kubeControllerManagerBinary: $BIN_DIR/kube-controller-manager
  kubeSchedulerBinary: $BIN_DIR/kube-scheduler
  kubectlBinary: $BIN_DIR/kubectl
  etcdBinary: $BIN_DIR/etcd
  kwokControllerBinary: $BIN_DIR/kwok
  metricsServerBinary: $BIN_DIR/metrics-server
componentsPatches:
- name: etcd
  extraArgs:
  - {key: unsafe-no-fsync, value: "true"}
- name: kube-apiserver
  extraArgs:
  - {key: advertise-address, value: 127.0.0.1}
  - {key: endpoint-reconciler-type, value: none}
  - {key: service-cluster-ip-range, value: 10.96.0.0/16}
  # front-proxy / aggregation layer: kwokctl already passes
  # --proxy-client-{cert,key}-file; add the requestheader side so aggregated
  # APIs (metrics.k8s.io) see the real caller.
  - {key: requestheader-client-ca-file, value: $PKI/ca.crt}
  - {key: requestheader-allowed-names, value: kwok-admin}   # CN of kwokctl's proxy-client cert
  - {key: requestheader-username-headers, value: X-Remote-User}
  - {key: requestheader-group-headers, value: X-Remote-Group}
  - {key: requestheader-extra-headers-prefix, value: X-Remote-Extra-}
- name: kube-controller-manager
  extraArgs:
  - {key: controllers, value: "*"}
  # The default client rate (20/s) would make the controller-manager, not the operator, what
  # bounds how fast a large fleet's ReplicaSets and pods appear.
  - {key: kube-api-qps, value: "200"}
  - {key: kube-api-burst, value: "400"}
  - {key: concurrent-deployment-syncs, value: "10"}
  - {key: concurrent-replicaset-syncs, value: "10"}
  - {key: horizontal-pod-autoscaler-sync-period, value: 5s}
  - {key: horizontal-pod-autoscaler-downscale-stabilization, value: 15s}
  - {key: horizontal-pod-autoscaler-cpu-initialization-period, value: 10s}
  - {key: horizontal-pod-autoscaler-initial-readiness-delay, value: 5s}
  - {key: pvclaimbinder-sync-period, value: 5s}
  - {key: enable-hostpath-provisioner, value: "true"}
- name: metrics-server
  extraArgs:
  - {key: metric-resolution, value: 10s, override: true}
  - {key: kubelet-request-timeout, value: 5s}
EOF

log "creating cluster '$CLUSTER_NAME' (kube $K8S_VERSION) in $KWOK_CLUSTER_DIR"
if ! "$BIN_DIR/kwokctl" --config "$CONF" create cluster --name "$CLUSTER_NAME" \
      --runtime binary --kubeconfig "" --wait 2m > "$CLUSTER_DIR/kwokctl-create.log" 2>&1; then
  for f in "$KWOK_CLUSTER_DIR"/pids/*.pid; do
    [ -f "$f" ] || continue
    c="$(basename "$f" .pid)"
    if ! kill -0 "$(cat "$f")" 2>/dev/null; then
      log "$c exited: $(grep -v '^\s*$' "$KWOK_CLUSTER_DIR/logs/$c.log" 2>/dev/null | tail -n 1)"
    fi
  done
  grep -E '"level":"(ERROR)"' "$CLUSTER_DIR/kwokctl-create.log" | tail -n 3 >&2 || true
  start_again_once "kwokctl create cluster failed"
fi
wait_until 60 "kube-apiserver /readyz" apiserver_ready
write_kubeconfig
ensure_addons
wait_until 60 "$NODE_COUNT Ready nodes" nodes_ready
wait_until 60 "the default ServiceAccount" default_sa_exists
deadline=$(( $(date +%s) + 90 ))
until metrics_api_available >/dev/null 2>&1; do
  pids_alive || start_again_once "a component exited: $(for f in "$KWOK_CLUSTER_DIR"/pids/*.pid; do
    kill -0 "$(cat "$f")" 2>/dev/null || printf '%s ' "$(basename "$f" .pid)"; done)"
  [ "$(date +%s)" -lt "$deadline" ] || die "timed out waiting for the metrics.k8s.io APIService to become Available (logs kept in $(save_diagnostics))"
  sleep 0.5
done
log "cluster '$CLUSTER_NAME' up ($(elapsed)); kubeconfig: $KUBECONFIG_OUT; kubectl: $BIN_DIR/kubectl"
