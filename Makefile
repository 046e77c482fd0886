# Flotilla: `make demo` runs it on a local cluster, `make test` runs every test.

CARGO ?= cargo
RUNS ?= 5
LOAD ?= 2
include tests/cluster/cluster.mk

# Test targets that need no cluster, and those that do (tests/cluster_*.rs).
OFFLINE_TESTS := $(filter-out cluster_% chaos,$(basename $(notdir $(wildcard tests/*.rs))))
CLUSTER_TESTS := $(filter cluster_%,$(basename $(notdir $(wildcard tests/*.rs))))

.PHONY: all build test test-offline test-cluster cluster-tests lint crds golden

all: build

build:
	$(CARGO) build --release

## Every test: formatting, lints, unit and offline tests, then the cluster tests on the local
## cluster (started for the run and stopped afterwards when none was running), then the fault
## suite on a cluster of its own.
test: lint test-offline test-cluster chaos

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings

test-offline:
	$(CARGO) test --lib --bins $(addprefix --test ,$(OFFLINE_TESTS))

test-cluster:
	@was_running=0; \
	if [ -f $(CLUSTER_KUBECONFIG) ] && $(CLUSTER_ENV) kubectl --request-timeout=3s get --raw=/readyz >/dev/null 2>&1; then \
		was_running=1; echo "using the running local cluster ($(CLUSTER_KUBECONFIG))"; \
	fi; \
	$(MAKE) --no-print-directory cluster-up || { rc=$$?; [ $$was_running = 1 ] || $(MAKE) --no-print-directory cluster-down; exit $$rc; }; \
	$(MAKE) --no-print-directory cluster-tests; rc=$$?; \
	if [ $$was_running = 0 ]; then $(MAKE) --no-print-directory cluster-down; fi; \
	exit $$rc

cluster-tests:
	@tests/gitops/build.sh all >/dev/null
	FLOTILLA_REQUIRE_CLUSTER=1 FLOTILLA_KUBECONFIG="$(abspath $(CLUSTER_KUBECONFIG))" $(CARGO) test $(addprefix --test ,$(CLUSTER_TESTS))

## The operator's OCI image without a container engine: target/image/ (OCI layout) and
## target/image.oci.tar (see README, "The image").
.PHONY: image
image:
	@scripts/image.sh

## The fault suite (tests/chaos.rs): it kills kube-apiserver and etcd, so it runs on a local
## cluster of its own (target/chaos-cluster, port 16543), started for the run and stopped after it.
## CHAOS_SERVICES (default 150) is the size of the burst each fault meets.
CHAOS_DIR := target/chaos-cluster
CHAOS_SERVICES ?= 150
CHAOS_CLUSTER = CLUSTER_DIR="$(CHAOS_DIR)" CLUSTER_NAME=flotilla-chaos FLOTILLA_APISERVER_PORT=16543
.PHONY: chaos chaos-up chaos-down
chaos:
	@$(MAKE) --no-print-directory chaos-down >/dev/null 2>&1 || true
	@$(MAKE) --no-print-directory chaos-up || exit $$?; \
	FLOTILLA_REQUIRE_CLUSTER=1 FLOTILLA_KUBECONFIG="$(abspath $(CHAOS_DIR))/kubeconfig" \
	  FLOTILLA_CHAOS_CLUSTER_DIR="$(abspath $(CHAOS_DIR))/kwok/clusters/flotilla-chaos" \
	  FLOTILLA_CHAOS_SERVICES=$(CHAOS_SERVICES) $(CARGO) test --test chaos -- --nocapture; rc=$$?; \
	$(MAKE) --no-print-directory chaos-down; exit $$rc
chaos-up:
	@$(CHAOS_CLUSTER) tests/cluster/up.sh
chaos-down:
	@$(CHAOS_CLUSTER) tests/cluster/down.sh

## Regenerate the committed CRDs (also the Helm chart's copy) and golden files; review the diff before committing.
crds:
	$(CARGO) run -q -- crd > crds/flotilla.dev.yaml
	cp crds/flotilla.dev.yaml charts/flotilla/crds/flotilla.dev.yaml

golden:
	UPDATE_GOLDEN=1 $(CARGO) test --test golden --test crd

## The scale benchmark (release build): N services (default 200) over NAMESPACES namespaces
## (default 1), beside the floor (the same children applied by kubectl and by a parallel applier;
## FLOORS=kubectl,parallel|none) with the operator's CONCURRENCY (default 4); OPERATOR=0 runs the
## floors alone. Its table goes to BENCHMARKS.md.  e.g.  make bench N=10000 NAMESPACES=100
N ?= 200
NAMESPACES ?= 1
FLOORS ?= kubectl,parallel
CONCURRENCY ?= 4
OPERATOR ?= 1
.PHONY: bench
bench:
	@$(MAKE) --no-print-directory cluster-up >/dev/null
	FLOTILLA_BENCH_SERVICES=$(N) FLOTILLA_BENCH_NAMESPACES=$(NAMESPACES) FLOTILLA_BENCH_FLOORS=$(FLOORS) \
	  FLOTILLA_BENCH_CONCURRENCY=$(CONCURRENCY) FLOTILLA_BENCH_OPERATOR=$(OPERATOR) FLOTILLA_REQUIRE_CLUSTER=1 \
	  FLOTILLA_KUBECONFIG="$(abspath $(CLUSTER_KUBECONFIG))" \
	  $(CARGO) test --release --test cluster_scale -- --ignored --nocapture

## `flotilla render` of 1k to 8k services: CPU, wall time, peak RSS (a release build).
.PHONY: bench-render
bench-render: build
	@scripts/render-bench.sh

## Prove the suite steady: `make test` RUNS times (default 5) with LOAD busy processes (default 2)
## on the cores; prints passes and failures per test.
.PHONY: repeat
repeat:
	@RUNS=$(RUNS) LOAD=$(LOAD) scripts/repeat.sh

## Run Flotilla on the local cluster with the shop example; demo-down stops it all.
.PHONY: demo demo-gitops demo-down
demo:
	@scripts/demo.sh up

## The same shop delivered by Argo CD (built from its Go module on first use) from a local Git
## repository: it prints how to push a change and watch it roll out.
demo-gitops:
	@scripts/demo.sh gitops

demo-down:
	@scripts/demo.sh down

## The figures in the README, with the commit they were measured at: the cluster tests' timings,
## one test at a time (needs the local cluster), the CLI's and the NetworkPolicy engine's, then the
## cluster's own (pod start, claim binding, memory). Fails when a test fails.
.PHONY: figures
figures:
	@CLUSTER_TESTS="$(CLUSTER_TESTS)" CARGO="$(CARGO)" scripts/figures.sh
