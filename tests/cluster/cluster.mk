# Local Kubernetes cluster (real control plane built from Go modules + kwok).
# Included by the top-level Makefile; paths are relative to the repo root.
#
#   make cluster-build   build/cached binaries (no-op when cached)
#   make cluster-up      start or reuse the cluster; kubeconfig in $(CLUSTER_KUBECONFIG)
#   make cluster-down    stop every cluster process, remove $(CLUSTER_DIR)
#   make cluster-status  nodes, pods and metrics of the running cluster
#   make cluster-smoke   pod -> Running, PVC -> Bound, kubectl top, RSS figures
#
# Other targets can use $(CLUSTER_ENV) to run commands with the built kubectl
# on PATH and KUBECONFIG set, e.g.  $(CLUSTER_ENV) kubectl get pods -A

CLUSTER_DIR ?= target/cluster
CLUSTER_KUBECONFIG := $(CLUSTER_DIR)/kubeconfig
# Cache dir of the built binaries (kubectl, kube-*, etcd, kwok, kwokctl, metrics-server).
CLUSTER_BIN_DIR = $(shell tests/cluster/build.sh --print)
CLUSTER_ENV = PATH="$(CLUSTER_BIN_DIR):$$PATH" KUBECONFIG="$(abspath $(CLUSTER_KUBECONFIG))"

.PHONY: cluster-build cluster-up cluster-down cluster-status cluster-smoke

cluster-build:
	@tests/cluster/build.sh

cluster-up:
	@CLUSTER_DIR="$(CLUSTER_DIR)" tests/cluster/up.sh

cluster-down:
	@CLUSTER_DIR="$(CLUSTER_DIR)" tests/cluster/down.sh

cluster-status:
	@$(CLUSTER_ENV) kubectl get nodes -o wide
	@$(CLUSTER_ENV) kubectl get pods -A
	@$(CLUSTER_ENV) kubectl top nodes || true

cluster-smoke:
	@CLUSTER_DIR="$(CLUSTER_DIR)" tests/cluster/smoke.sh
