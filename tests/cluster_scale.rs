//! The scale benchmark (`make bench`, not part of `make test`): a fleet of N Microservices, each
//! calling the next, spread over M namespaces, on the local cluster; and, in the same run, the
//! floor to compare it with: the very children Flotilla renders for that fleet (pre-rendered, as
//! `flotilla render` prints them), applied as fast as one client can, by `kubectl apply
//! --server-side` and by a parallel applier with the operator's concurrency.
//!
//! The floors run first, each in namespaces of its own, with no operator running; each is deleted
//! (and gone) before the next phase starts, so every phase starts from the same cluster. Then the
//! operator starts (release build, watching every namespace, with the shipped RBAC) and the
//! Microservices are applied. Measured for each: the time until every Deployment exists and until
//! everything is Ready; for the operator also its reconciles, API requests by verb, CPU seconds,
//! reconcile time (p50/p99, from its histogram), memory, writes per service, writes once converged
//! (asserted 0), a change of one callee reaching its caller, and a restart over the converged
//! fleet (ready, every service looked at, nothing written).
//!
//! Settings (environment): `FLOTILLA_BENCH_SERVICES` (N, default 200), `FLOTILLA_BENCH_NAMESPACES`
//! (M, default 1), `FLOTILLA_BENCH_FLOORS` (`kubectl,parallel` by default; `none` for none),
//! `FLOTILLA_BENCH_CONCURRENCY` (the operator's `--concurrency`, and the parallel floor's; default
//! 4, the operator's default), `FLOTILLA_BENCH_OPERATOR=0` for the floors alone. The table is
//! printed at the end; it goes to BENCHMARKS.md.

mod operator;
mod support;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use flotilla::api::Microservice;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, ObjectMeta, Patch, PatchParams, PostParams};
use kube::core::GroupVersionKind;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use operator::{Operator, OperatorOptions};
use serde_json::{Value, json};

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// A fleet: `n` services over `namespaces`, in contiguous blocks, so that most calls stay in
/// their namespace and the last service of each block calls into the next namespace.
struct Fleet {
    n: usize,
    namespaces: Vec<String>,
}

impl Fleet {
    fn new(n: usize, m: usize, phase: &str, run: &str) -> Fleet {
        Fleet { n, namespaces: (0..m.clamp(1, n)).map(|k| format!("bench-{run}-{phase}-{k:03}")).collect() }
    }

    fn namespace(&self, i: usize) -> &str {
        &self.namespaces[i * self.namespaces.len() / self.n]
    }

    fn spec(&self, i: usize, port: u16) -> Value {
        let next = (i + 1) % self.n;
        json!({
            "image": format!("registry.example/svc-{i}:1"),
            "ports": [{"name": "http", "port": port}],
            "dependencies": [{"service": format!("svc-{next}"), "namespace": self.namespace(next)}],
        })
    }

    fn manifest(&self, i: usize, port: u16) -> Value {
        json!({
            "apiVersion": "flotilla.dev/v1alpha1", "kind": "Microservice",
            "metadata": {"name": format!("svc-{i}"), "namespace": self.namespace(i)},
            "spec": self.spec(i, port),
        })
    }

    /// What `flotilla render` prints for each service: its children, in the order it applies them.
    fn rendered(&self) -> Vec<Vec<Value>> {
        let microservices: Vec<Arc<Microservice>> = (0..self.n)
            .map(|i| Arc::new(serde_json::from_value(self.manifest(i, 8080)).expect("a Microservice")))
            .collect();
        let world = flotilla::render::World { microservices: microservices.clone().into(), ..Default::default() };
        microservices.iter().map(|ms| flotilla::render::preview(ms, &world).expect("renders")).collect()
    }

    fn owns(&self, namespace: Option<&str>) -> bool {
        namespace.is_some_and(|ns| self.namespaces.iter().any(|n| n == ns))
    }

    async fn create(&self, client: &Client) {
        let api: Api<Namespace> = Api::all(client.clone());
        for name in &self.namespaces {
            let ns = Namespace {
                metadata: ObjectMeta {
                    name: Some(name.clone()),
                    labels: Some([("flotilla.dev/test".to_string(), "true".to_string())].into()),
                    ..Default::default()
                },
                ..Default::default()
            };
            api.create(&PostParams::default(), &ns).await.unwrap_or_else(|e| panic!("create namespace {name}: {e}"));
        }
    }

    /// Deletes the fleet's namespaces and waits until they are gone: the next phase starts from
    /// a cluster that no longer works on this one.
    async fn delete(&self, client: &Client) -> Duration {
        let start = Instant::now();
        let api: Api<Namespace> = Api::all(client.clone());
        for name in &self.namespaces {
            let _ = api.delete(name, &DeleteParams::background()).await;
        }
        for name in &self.namespaces {
            while api.get_opt(name).await.ok().flatten().is_some() {
                assert!(start.elapsed() < Duration::from_secs(1800), "namespace {name} still there after 30 min");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
        start.elapsed()
    }
}

/// A cache of every object of kind `K` labelled as Flotilla's, across namespaces: the benchmark
/// counts from a watch, not by listing thousands of objects again and again.
fn watch_all<K>(client: &Client) -> Store<K>
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone,
{
    let (reader, writer) = reflector::store::<K>();
    let config = watcher::Config::default().labels("app.kubernetes.io/managed-by=flotilla");
    let events = watcher::watcher(Api::<K>::all(client.clone()), config).modify(|o| o.managed_fields_mut().clear());
    tokio::spawn(reflector::reflector(writer, events).for_each(|_| futures::future::ready(())));
    reader
}

fn microservices_watch(client: &Client) -> Store<Microservice> {
    let (reader, writer) = reflector::store::<Microservice>();
    let events = watcher::watcher(Api::<Microservice>::all(client.clone()), watcher::Config::default())
        .modify(|o| o.managed_fields_mut().clear());
    tokio::spawn(reflector::reflector(writer, events).for_each(|_| futures::future::ready(())));
    reader
}

fn deployment_ready(d: &Deployment) -> bool {
    let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    d.status.as_ref().is_some_and(|s| {
        s.observed_generation == d.metadata.generation
            && s.ready_replicas.unwrap_or(0) >= want
            && s.updated_replicas.unwrap_or(0) >= want
    })
}

fn microservice_ready(ms: &Microservice) -> bool {
    ms.status.as_ref().is_some_and(|s| {
        s.observed_generation == ms.metadata.generation
            && s.conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True")
    })
}

/// Polls until `count()` reaches `n`, within `limit`; the elapsed time since `start`.
async fn until_count(what: &str, n: usize, start: Instant, limit: Duration, count: impl Fn() -> usize) -> Duration {
    loop {
        let c = count();
        if c >= n {
            return start.elapsed();
        }
        assert!(start.elapsed() < limit, "{what}: {c} of {n} after {limit:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// What one phase measured.
#[derive(Default)]
struct Phase {
    applied: Duration,
    created: Duration,
    ready: Duration,
}

/// The API resource of each kind the rendered children use, found once before any timing.
async fn resources(client: &Client, objects: &[Vec<Value>]) -> HashMap<(String, String), ApiResource> {
    let kinds: std::collections::BTreeSet<(String, String)> = objects
        .iter()
        .flatten()
        .map(|obj| (obj["apiVersion"].as_str().unwrap().to_string(), obj["kind"].as_str().unwrap().to_string()))
        .collect();
    let mut out = HashMap::new();
    for key in kinds {
        let (group, version) = key.0.split_once('/').unwrap_or(("", &key.0));
        let gvk = GroupVersionKind::gvk(group, version, &key.1);
        let (ar, _) = kube::discovery::pinned_kind(client, &gvk).await.expect("discover a child's kind");
        out.insert(key, ar);
    }
    out
}

async fn apply_value(client: &Client, resources: &HashMap<(String, String), ApiResource>, obj: &Value, manager: &str) {
    let key = (obj["apiVersion"].as_str().unwrap().to_string(), obj["kind"].as_str().unwrap().to_string());
    let (ns, name) = (obj["metadata"]["namespace"].as_str().unwrap(), obj["metadata"]["name"].as_str().unwrap());
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &resources[&key]);
    // Retried like any client would retry: a busy API server may time a request out.
    let mut tries = 0;
    while let Err(e) = api.patch(name, &PatchParams::apply(manager).force(), &Patch::Apply(obj)).await {
        tries += 1;
        assert!(tries < 10, "apply {} {ns}/{name}: {e}", key.1);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Applies each service's objects in order, `concurrency` services at a time.
async fn apply_parallel(client: &Client, objects: &[Vec<Value>], concurrency: usize, manager: &str) {
    let resources = resources(client, objects).await;
    futures::stream::iter(objects)
        .for_each_concurrent(concurrency, |objs| {
            let resources = &resources;
            async move {
                for obj in objs {
                    apply_value(client, resources, obj, manager).await;
                }
            }
        })
        .await;
}

/// Times one floor: its namespaces made, `apply` run, then every Deployment there and Ready.
async fn floor<F, Fut>(client: &Client, fleet: &Fleet, deployments: &Store<Deployment>, apply: F) -> Phase
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    fleet.create(client).await;
    let limit = Duration::from_secs(120 + fleet.n as u64 / 5);
    let start = Instant::now();
    apply().await;
    let applied = start.elapsed();
    let count = |ready: bool| {
        deployments
            .state()
            .iter()
            .filter(|d| fleet.owns(d.metadata.namespace.as_deref()) && (!ready || deployment_ready(d)))
            .count()
    };
    let created = until_count("floor: Deployments", fleet.n, start, limit, || count(false)).await;
    let ready = until_count("floor: Deployments ready", fleet.n, start, limit * 3, || count(true)).await;
    Phase { applied, created, ready }
}

#[derive(Default)]
struct Sample {
    writes: u64,
    reconciles: u64,
    cpu: f64,
    verbs: Vec<(String, u64)>,
}

fn sample(op: &Operator) -> Sample {
    let m = op.metrics();
    Sample {
        writes: operator::writes(&m),
        reconciles: operator::counter(&m, "flotilla_reconciles_total"),
        cpu: op.cpu_seconds().unwrap_or(0.0),
        verbs: operator::requests_by_verb(&m),
    }
}

fn start_operator(lease: &str, concurrency: usize) -> Operator {
    let opts = OperatorOptions { namespace: None, lease, tag: "scale" };
    let args = [format!("--concurrency={concurrency}")];
    Operator::start_with(&opts, &args, "info,kube=warn")
}

#[tokio::test]
#[ignore = "a benchmark: make bench"]
async fn scale() {
    let n: usize = env_or("FLOTILLA_BENCH_SERVICES", 200);
    let m: usize = env_or("FLOTILLA_BENCH_NAMESPACES", 1);
    let concurrency: usize = env_or("FLOTILLA_BENCH_CONCURRENCY", 4);
    let floors: String = env_or("FLOTILLA_BENCH_FLOORS", "kubectl,parallel".to_string());
    let floors: HashSet<&str> = floors.split(',').map(str::trim).collect();
    // Without the operator's phase, a floor's namespaces are left for `make cluster-down`: at
    // 10,000 services their deletion takes longer than the floor.
    let operator_phase = !std::env::var("FLOTILLA_BENCH_OPERATOR").is_ok_and(|v| v == "0");
    let Some(client) = support::client().await else { return };
    operator::install(&client).await;
    let build = if cfg!(debug_assertions) { "debug" } else { "release" };
    let run = format!("{:05x}", rand::random::<u32>() & 0xfffff);
    let deployments = watch_all::<Deployment>(&client);
    let microservices = microservices_watch(&client);
    let mut rows: Vec<(String, String)> = Vec::new();
    let mut row = |what: &str, figure: String| {
        // Each figure as soon as it is known, in case a later phase fails.
        eprintln!("{what}: {figure}");
        rows.push((what.to_string(), figure))
    };
    let secs = |d: Duration| format!("{:.1} s", d.as_secs_f64());
    row("commit measured, date", format!("{}, {}", support::commit(), support::today()));
    row("services (each calling the next) / namespaces", format!("{n} / {}", m.clamp(1, n)));
    row("operator build / concurrency", format!("{build} / {concurrency}"));

    // The floors: the same children, pre-rendered, applied by one client.
    let mut floor_created = Vec::new();
    let mut floor_ready = Vec::new();
    if floors.contains("kubectl") {
        let fleet = Fleet::new(n, m, "kubectl", &run);
        let objects = fleet.rendered();
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/bench");
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join(format!("floor-{run}.yaml"));
        let yaml = flotilla::render::to_yaml(&objects.concat()).expect("YAML");
        std::fs::write(&file, yaml).unwrap();
        let kubectl = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/cluster/bin/kubectl");
        let phase = floor(&client, &fleet, &deployments, || async {
            let status = tokio::process::Command::new(&kubectl)
                .arg("--kubeconfig")
                .arg(support::kubeconfig_path())
                .args(["apply", "--server-side", "--field-manager=floor", "-f"])
                .arg(&file)
                .stdout(std::process::Stdio::null())
                .status()
                .await
                .expect("run kubectl");
            assert!(status.success(), "kubectl apply --server-side of the rendered children failed");
        })
        .await;
        let gone = if operator_phase { fleet.delete(&client).await } else { Duration::ZERO };
        let _ = std::fs::remove_file(&file);
        row(
            "floor, `kubectl apply --server-side` of the rendered children: every Deployment created",
            secs(phase.created),
        );
        row("floor, `kubectl apply --server-side`: every Deployment Ready", secs(phase.ready));
        row("(floor's namespaces deleted and gone)", secs(gone));
        floor_created.push(("kubectl", phase.created));
        floor_ready.push(("kubectl", phase.ready));
    }
    if floors.contains("parallel") {
        let fleet = Fleet::new(n, m, "parallel", &run);
        let objects = fleet.rendered();
        let phase =
            floor(&client, &fleet, &deployments, || apply_parallel(&client, &objects, concurrency, "floor")).await;
        let gone = if operator_phase { fleet.delete(&client).await } else { Duration::ZERO };
        row(
            &format!("floor, parallel server-side apply ({concurrency} at a time): every Deployment created"),
            secs(phase.created),
        );
        row("floor, parallel server-side apply: every Deployment Ready", secs(phase.ready));
        row("(floor's namespaces deleted and gone)", secs(gone));
        floor_created.push(("parallel", phase.created));
        floor_ready.push(("parallel", phase.ready));
    }

    if !operator_phase {
        // Only the floors (at a size where a run with both takes too long).
        println!("\n| what | figure |\n| --- | --- |");
        for (what, figure) in &rows {
            println!("| {what} | {figure} |");
        }
        return;
    }

    // Flotilla: the operator watching every namespace, then the Microservices applied.
    let fleet = Fleet::new(n, m, "flotilla", &run);
    fleet.create(&client).await;
    let lease = format!("lease-bench-{run}");
    let mut op = start_operator(&lease, concurrency);
    op.wait_ready().await;
    op.wait_leading(&client).await;
    let (rss_idle, _) = op.memory_kib().expect("operator memory");
    let before = sample(&op);
    let manifests: Vec<Vec<Value>> = (0..n).map(|i| vec![fleet.manifest(i, 8080)]).collect();
    let start = Instant::now();
    apply_parallel(&client, &manifests, concurrency, "kubectl").await;
    let applied = start.elapsed();
    let limit = Duration::from_secs(120 + n as u64 / 5);
    let count_deployments =
        || deployments.state().iter().filter(|d| fleet.owns(d.metadata.namespace.as_deref())).count();
    let created = until_count("Flotilla: Deployments", n, start, limit, count_deployments).await;
    let count_ready = || {
        microservices
            .state()
            .iter()
            .filter(|ms| fleet.owns(ms.metadata.namespace.as_deref()) && microservice_ready(ms))
            .count()
    };
    let ready = until_count("Flotilla: Microservices Ready", n, start, limit * 3, count_ready).await;
    let phase = Phase { applied, created, ready };
    let at_ready = sample(&op);
    let (rss_ready, _) = op.memory_kib().expect("operator memory");
    let metrics = op.metrics();
    let (p50, p99) = (operator::reconcile_quantile(&metrics, 0.5), operator::reconcile_quantile(&metrics, 0.99));

    // Converged: nothing is written, whatever resync or watch traffic happens meanwhile. The
    // window starts once the last status write of the way to Ready has landed.
    let converged = op.settled(Duration::from_secs(3)).await;
    tokio::time::sleep(Duration::from_secs(15)).await;
    let quiet = operator::writes(&op.metrics()) - converged;
    assert_eq!(quiet, 0, "writes while converged");

    // One change that must reach another service: the last service's port, which its caller's
    // URL and egress rule follow.
    let last = n - 1;
    let ms_api: Api<Microservice> = Api::namespaced(client.clone(), fleet.namespace(last));
    let changed = Instant::now();
    let body = fleet.manifest(last, 9090);
    ms_api.patch(&format!("svc-{last}"), &PatchParams::apply("kubectl").force(), &Patch::Apply(&body)).await.unwrap();
    let caller = format!("svc-{}", n - 2);
    let caller_ns = fleet.namespace(n - 2).to_string();
    let propagated = loop {
        let sees_it = deployments.state().iter().any(|d| {
            d.metadata.name.as_deref() == Some(caller.as_str())
                && d.metadata.namespace.as_deref() == Some(caller_ns.as_str())
                && d.spec.as_ref().and_then(|s| s.template.spec.as_ref()).is_some_and(|p| {
                    p.containers[0]
                        .env
                        .iter()
                        .flatten()
                        .any(|e| e.value.as_deref().is_some_and(|v| v.ends_with(":9090")))
                })
        });
        if sees_it {
            break changed.elapsed();
        }
        assert!(changed.elapsed() < Duration::from_secs(60), "the caller never saw the new port");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let (_, peak) = op.memory_kib().expect("operator memory");
    let cpu_total = op.cpu_seconds().unwrap_or(0.0);

    // A restart over the converged fleet: SIGTERM (the Lease is released), a new process; timed
    // until it leads and has looked at every service once, with nothing written.
    op.settled(Duration::from_secs(3)).await;
    op.terminate();
    let restarted = Instant::now();
    let mut op = start_operator(&lease, concurrency);
    op.wait_ready().await;
    op.wait_leading(&client).await;
    let restart_limit = Duration::from_secs(300);
    until_count("restart: services looked at", n, restarted, restart_limit, || op.services_reconciled() as usize).await;
    let restart_settled = op.settled(Duration::from_secs(2)).await;
    let restart_ready = restarted.elapsed() - Duration::from_secs(2);
    let restart_writes = restart_settled;
    let (rss_restart, _) = op.memory_kib().expect("operator memory");
    assert_eq!(restart_writes, 0, "writes by the restarted operator over the converged fleet");

    let mib = |kib: u64| format!("{:.0}", kib as f64 / 1024.0);
    row(&format!("Flotilla: all {n} Microservices applied ({concurrency} at a time)"), secs(phase.applied));
    row("Flotilla: first apply → every Deployment created", secs(phase.created));
    row("Flotilla: first apply → every Microservice Ready", secs(phase.ready));
    for (name, floor) in &floor_created {
        row(
            &format!("ratio, every Deployment created: Flotilla / floor ({name})"),
            format!("{:.2}", phase.created.as_secs_f64() / floor.as_secs_f64()),
        );
    }
    for (name, floor) in &floor_ready {
        row(
            &format!("ratio, all Ready: Flotilla / floor ({name})"),
            format!("{:.2}", phase.ready.as_secs_f64() / floor.as_secs_f64()),
        );
    }
    let delta = |a: &Sample, b: &Sample| -> String {
        let before: BTreeMap<&str, u64> = b.verbs.iter().map(|(v, c)| (v.as_str(), *c)).collect();
        a.verbs
            .iter()
            .map(|(v, c)| format!("{v} {}", c - before.get(v.as_str()).copied().unwrap_or(0)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    row("reconciles until all Ready", (at_ready.reconciles - before.reconciles).to_string());
    row("API requests until all Ready, by verb", delta(&at_ready, &before));
    row(
        "writes per service (children and status) until all Ready",
        format!("{:.1}", (at_ready.writes - before.writes) as f64 / n as f64),
    );
    row("writes in 15 s once converged", quiet.to_string());
    let ms = |s: Option<f64>| s.map(|s| format!("{:.0} ms", s * 1000.0)).unwrap_or_else(|| "-".into());
    row("reconcile time p50 / p99 (histogram)", format!("{} / {}", ms(p50), ms(p99)));
    row("operator CPU until all Ready / in all", format!("{:.1} s / {:.1} s", at_ready.cpu - before.cpu, cpu_total));
    row(
        "operator memory (RSS): idle / all Ready / peak",
        format!("{} / {} / {} MiB", mib(rss_idle), mib(rss_ready), mib(peak)),
    );
    row("a callee's port changed → its caller's Deployment updated", format!("{:.2} s", propagated.as_secs_f64()));
    row(
        "restart over the converged fleet → leading, every service looked at, settled",
        format!("{} ({restart_writes} writes, RSS {} MiB)", secs(restart_ready), mib(rss_restart)),
    );
    println!("\n| what | figure |\n| --- | --- |");
    for (what, figure) in &rows {
        println!("| {what} | {figure} |");
    }
    let gone = fleet.delete_with_operator(&client).await;
    println!("| (then the fleet deleted, the operator finalizing) | {} |", secs(gone));
    drop(op);
}

impl Fleet {
    /// Deletes the Microservices (the operator, still running, removes their finalizers), then
    /// the namespaces.
    async fn delete_with_operator(&self, client: &Client) -> Duration {
        let start = Instant::now();
        let ar = ApiResource::erase::<Microservice>(&());
        for ns in &self.namespaces {
            let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &ar);
            let _ = api.delete_collection(&DeleteParams::background(), &Default::default()).await;
        }
        self.delete(client).await;
        start.elapsed()
    }
}
