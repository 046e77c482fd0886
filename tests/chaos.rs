//! Faults a real cluster has, each injected while a burst of work is in flight, each followed by
//! the same check.
//!
//! The burst: `FLOTILLA_CHAOS_SERVICES` (default 150) Microservices, each calling the next, a third
//! autoscaled, a tenth with a database, applied at once; then a seventh of them changed and an
//! eleventh deleted. Besides the burst, four services with a database made (and their data
//! noted) before it: one is changed, one left alone, one deleted under `Retain` and one under
//! `Delete` while the fault lasts.
//!
//! The check, after every fault: every Microservice converges (Ready for its generation, none
//! Stalled or without status); each child exists exactly once and holds what `flotilla render`
//! renders for it; the retained data (volume claim, credentials Secrets) is the same object with
//! the same password, and the data of the `Delete` service is gone. Each scenario prints its
//! recovery time and the operator's requests by verb.
//!
//! These tests kill the control plane's processes, so they run against a local cluster of their
//! own (`make chaos`; `make test` runs them after the other cluster tests): the kwok cluster
//! directory in `FLOTILLA_CHAOS_CLUSTER_DIR`, its kubeconfig in `FLOTILLA_KUBECONFIG`. One
//! scenario runs at a time.

mod operator;
mod support;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use flotilla::api::{DatabaseClass, Microservice};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Secret, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, ListParams};
use kube::{Client, ResourceExt};
use operator::{Operator, OperatorOptions, apply_yaml, http_get, install, requests_by_verb};
use serde_json::{Value, json};
use support::TestNamespace;

/// One scenario at a time: a fault of the control plane is a fault for every test running.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const CLASS: &str = "chaos-pg";
const MANAGED: &str = "app.kubernetes.io/managed-by=flotilla";
/// How long a fault keeps a component down.
const DOWN: Duration = Duration::from_secs(5);
/// How long the garbage collector may take to remove the children of deleted services.
const GARBAGE_COLLECTED: Duration = Duration::from_secs(120);
/// How long a burst may take to converge after its fault.
const CONVERGE: Duration = Duration::from_secs(300);
/// How long a burst may take to converge once the API server is back after a control-plane
/// fault (measured: 4 to 19 s; a loaded CI machine gets the rest).
const RECOVERY: Duration = Duration::from_secs(90);

fn services() -> usize {
    std::env::var("FLOTILLA_CHAOS_SERVICES").ok().and_then(|v| v.parse().ok()).unwrap_or(150)
}

// --- the control plane's processes -------------------------------------------------------------

/// The processes of the chaos cluster, as kwokctl started them: each can be killed and started
/// again with the same command line, working directory and log.
struct ControlPlane {
    dir: PathBuf,
    /// Processes this test started (so they are reaped when killed again).
    spawned: std::sync::Mutex<HashMap<String, Child>>,
}

impl ControlPlane {
    /// `None` when no chaos cluster is given and none is required.
    fn get() -> Option<Arc<ControlPlane>> {
        match std::env::var_os("FLOTILLA_CHAOS_CLUSTER_DIR") {
            Some(d) if !d.is_empty() => Some(Arc::new(ControlPlane { dir: d.into(), spawned: Default::default() })),
            _ if std::env::var("FLOTILLA_REQUIRE_CLUSTER").is_ok_and(|v| !v.is_empty() && v != "0") => {
                panic!("FLOTILLA_CHAOS_CLUSTER_DIR is not set: run the fault suite with `make chaos`")
            }
            _ => {
                eprintln!("skipping the fault suite: it needs a cluster of its own (`make chaos`)");
                None
            }
        }
    }

    fn pid(&self, component: &str) -> u32 {
        let file = self.dir.join("pids").join(format!("{component}.pid"));
        let text = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        text.trim().parse().unwrap_or_else(|_| panic!("{}: not a pid: {text:?}", file.display()))
    }

    fn saved(&self, component: &str) -> PathBuf {
        self.dir.join(format!("chaos-{component}.json"))
    }

    /// SIGKILL, as the kernel's OOM killer or a node failure would; the command line is kept
    /// first, for [`ControlPlane::start`].
    fn kill(&self, component: &str) {
        let pid = self.pid(component);
        let argv = std::fs::read(format!("/proc/{pid}/cmdline")).expect("the component runs");
        let args: Vec<String> =
            argv.split(|b| *b == 0).filter(|a| !a.is_empty()).map(|a| String::from_utf8_lossy(a).into()).collect();
        let cwd = std::fs::read_link(format!("/proc/{pid}/cwd")).expect("its working directory");
        std::fs::write(self.saved(component), json!({"args": args, "cwd": cwd}).to_string()).unwrap();
        let ok = Command::new("kill").arg("-KILL").arg(pid.to_string()).status();
        assert!(ok.is_ok_and(|s| s.success()), "kill -KILL {component} ({pid})");
        if let Some(mut child) = self.spawned.lock().unwrap().remove(component) {
            let _ = child.wait();
        }
        // Gone once every thread has exited (its files and ports are free then): the main thread
        // shows as a zombie while the others, and the sockets, are still being torn down.
        let deadline = Instant::now() + Duration::from_secs(10);
        while threads_running(pid) {
            assert!(Instant::now() < deadline, "{component} ({pid}) still runs 10 s after SIGKILL");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts the component again as it was started, appending to its log; its pid file is
    /// updated, so `make chaos-down` stops it.
    fn start(&self, component: &str) {
        let saved: Value = serde_json::from_slice(&std::fs::read(self.saved(component)).unwrap()).unwrap();
        let args: Vec<&str> = saved["args"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
        let log = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(self.dir.join("logs").join(format!("{component}.log")))
            .unwrap();
        use std::os::unix::process::CommandExt;
        // A port the killed process held may take a moment to be free: a start that exits at once
        // is tried again.
        for attempt in 1.. {
            let mut child = Command::new(args[0])
                .args(&args[1..])
                .current_dir(saved["cwd"].as_str().unwrap())
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log.try_clone().unwrap())
                // Its own process group: an interrupt of the test run does not stop the cluster.
                .process_group(0)
                .spawn()
                .unwrap_or_else(|e| panic!("start {component} again: {e}"));
            std::thread::sleep(Duration::from_secs(1));
            if let Ok(Some(status)) = child.try_wait() {
                assert!(attempt < 10, "{component} exits at once when started again ({status}); see its log");
                continue;
            }
            std::fs::write(self.dir.join("pids").join(format!("{component}.pid")), child.id().to_string()).unwrap();
            self.spawned.lock().unwrap().insert(component.into(), child);
            return;
        }
    }

    /// The etcd client URL, from the saved or running command line.
    fn etcd_url(&self) -> String {
        let pid = self.pid("etcd");
        let argv = String::from_utf8_lossy(&std::fs::read(format!("/proc/{pid}/cmdline")).unwrap()).to_string();
        argv.split('\0')
            .find_map(|a| a.strip_prefix("--listen-client-urls="))
            .expect("etcd's --listen-client-urls")
            .split(',')
            .next()
            .unwrap()
            .to_string()
    }
}

/// Whether any thread of process `pid` has not exited yet.
fn threads_running(pid: u32) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return false };
    tasks.flatten().any(|t| {
        std::fs::read_to_string(t.path().join("stat"))
            .is_ok_and(|stat| stat.rsplit_once(')').is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z')))
    })
}

/// Waits until the API server says it is ready (a new client each time: the old connections
/// went with the process).
async fn api_ready(limit: Duration) -> Duration {
    let start = Instant::now();
    loop {
        if let Some(client) = support::client().await {
            let req = http::Request::get("/readyz").body(Vec::new()).unwrap();
            if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_secs(3), client.request_text(req)).await {
                return start.elapsed();
            }
        }
        assert!(start.elapsed() < limit, "the API server is not ready {limit:?} after it was started again");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A compaction of etcd at its current revision (etcd's JSON gateway on its client port):
/// every watch resumed from an older resourceVersion is answered 410 Gone.
fn compact(etcd: &str) -> u64 {
    let http = |path: &str, body: Value| {
        let out = Command::new("curl")
            .args(["-sf", "-X", "POST", &format!("{etcd}{path}"), "-d", &body.to_string()])
            .output()
            .expect("curl");
        assert!(out.status.success(), "etcd {path}: {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice::<Value>(&out.stdout).expect("etcd's JSON")
    };
    let revision: u64 = http("/v3/kv/range", json!({"key": "AA=="}))["header"]["revision"]
        .as_str()
        .and_then(|r| r.parse().ok())
        .expect("etcd's revision");
    http("/v3/kv/compaction", json!({"revision": revision.to_string(), "physical": true}));
    revision
}

// --- the work in flight ------------------------------------------------------------------------

fn spec(i: usize, n: usize, port: u16) -> Value {
    let mut spec = json!({
        "image": "registry.example/svc:1",
        "ports": [{"name": "http", "port": port}],
        "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}},
        "dependencies": [{"service": format!("svc-{:03}", (i + 1) % n)}],
    });
    if i.is_multiple_of(3) {
        spec["autoscaling"] = json!({"minReplicas": 1, "maxReplicas": 3, "cpu": 80});
    }
    if i % 10 == 5 {
        spec["database"] = json!({"class": CLASS});
    }
    spec
}

enum Op {
    Apply(String, Value),
    Delete(String),
}

/// The burst: every service created, then a seventh changed and an eleventh deleted.
fn burst(n: usize) -> (Vec<Op>, Vec<Op>) {
    let creates = (0..n).map(|i| Op::Apply(format!("svc-{i:03}"), spec(i, n, 8080))).collect();
    let mut later: Vec<Op> =
        (0..n).filter(|i| i % 7 == 3).map(|i| Op::Apply(format!("svc-{i:03}"), spec(i, n, 8081))).collect();
    later.extend((0..n).filter(|i| i % 11 == 4).map(|i| Op::Delete(format!("svc-{i:03}"))));
    later.push(Op::Apply("data-changed".into(), keeper_spec("data-changed", "registry.example/app:2")));
    (creates, later)
}

/// Carries one operation out, as a client would: retried until the API server takes it.
async fn run_op(api: &Api<Microservice>, op: &Op) {
    let deadline = Instant::now() + CONVERGE;
    loop {
        let outcome = match op {
            Op::Apply(name, spec) => operator::apply_ms(api, name, spec.clone()).await.map(|_| ()),
            Op::Delete(name) => match api.delete(name, &DeleteParams::default()).await {
                Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
                other => other.map(|_| ()),
            },
        };
        match outcome {
            Ok(()) => return,
            Err(e) => {
                assert!(Instant::now() < deadline, "the burst's client gave up: {e}");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

/// Starts the burst in the background; `done` counts the operations carried out.
fn start_burst(api: Api<Microservice>, n: usize, done: Arc<AtomicUsize>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let (creates, later) = burst(n);
        for phase in [creates, later] {
            futures::stream::iter(phase)
                .for_each_concurrent(8, |op| {
                    let (api, done) = (&api, &done);
                    async move {
                        run_op(api, &op).await;
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                })
                .await;
        }
    })
}

/// The services whose data is watched: made and Ready before the burst.
const KEEPERS: [&str; 4] = ["data-changed", "data-kept", "data-retained", "data-deleted"];

fn keeper_spec(name: &str, image: &str) -> Value {
    let policy = if name == "data-deleted" { "Delete" } else { "Retain" };
    json!({"image": image, "ports": [{"name": "http", "port": 8080}],
           "database": {"class": CLASS, "deletionPolicy": policy}})
}

/// What identifies a service's data: the claim's uid, and each credentials Secret's uid and
/// password.
#[derive(Debug, PartialEq, Eq, Clone)]
struct Data {
    claim: Option<String>,
    secrets: BTreeMap<String, (Option<String>, Option<Vec<u8>>)>,
}

async fn data_of(client: &Client, ns: &str, name: &str) -> Data {
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), ns);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    let claim = pvcs.get_opt(&format!("data-{name}-db-0")).await.expect("read a claim").and_then(|p| p.uid());
    let mut out = BTreeMap::new();
    for s in [format!("{name}-db"), format!("{name}-db-credentials")] {
        let secret = secrets.get_opt(&s).await.expect("read a Secret");
        let password = secret.as_ref().and_then(|s| Some(s.data.as_ref()?.get("password")?.0.clone()));
        out.insert(s, (secret.and_then(|s| s.uid()), password));
    }
    Data { claim, secrets: out }
}

/// The cluster-wide part, once per run: the CRDs, the RBAC, the embedded DatabaseClass.
async fn prepare(client: &Client) {
    install(client).await;
    // Kept for the whole run (its cluster goes with it), so not the helper's dropping guard.
    apply_yaml(client, &operator::embedded_postgres_class_yaml(CLASS), None).await;
}

/// One scenario's namespace, keepers and notes.
struct Scene {
    client: Client,
    ns: TestNamespace,
    api: Api<Microservice>,
    n: usize,
    before: HashMap<String, Data>,
    started: Instant,
}

impl Scene {
    /// The namespace (the keepers are made by [`Scene::keepers`], once an operator leads).
    async fn new(client: &Client, tag: &str) -> Scene {
        prepare(client).await;
        unthrottle(client).await;
        let ns = TestNamespace::new(client, tag).await;
        let api = ns.api::<Microservice>();
        Scene { client: client.clone(), api, ns, n: services(), before: HashMap::new(), started: Instant::now() }
    }

    fn name(&self) -> String {
        self.ns.name().to_string()
    }

    async fn keepers(&mut self) {
        for k in KEEPERS {
            operator::apply_ms(&self.api, k, keeper_spec(k, "registry.example/app:1")).await.unwrap();
        }
        self.converged(&KEEPERS.iter().map(|k| k.to_string()).collect(), Duration::from_secs(120), None).await;
        for k in KEEPERS {
            let data = data_of(&self.client, &self.name(), k).await;
            assert!(
                data.claim.is_some() && data.secrets.values().all(|(uid, pw)| uid.is_some() && pw.is_some()),
                "{k} has its data before the burst: {data:?}"
            );
            self.before.insert(k.to_string(), data);
        }
    }

    fn start_burst(&mut self, done: Arc<AtomicUsize>) -> tokio::task::JoinHandle<()> {
        self.started = Instant::now();
        start_burst(self.api.clone(), self.n, done)
    }

    /// The services there should be once the burst is done (the deleted keepers aside).
    fn expected(&self) -> BTreeSet<String> {
        let mut names: BTreeSet<String> = (0..self.n).filter(|i| i % 11 != 4).map(|i| format!("svc-{i:03}")).collect();
        names.extend(["data-changed", "data-kept"].map(String::from));
        names
    }

    /// Deletes the two keepers whose data the fault must not lose or keep by mistake.
    async fn delete_keepers(&self) {
        for k in ["data-retained", "data-deleted"] {
            run_op(&self.api, &Op::Delete(k.into())).await;
        }
    }

    /// Waits until exactly `names` exist and each is Ready for its generation; the time it took.
    /// On a timeout: the services that are not, with their conditions, and the operator's log.
    async fn converged(&self, names: &BTreeSet<String>, limit: Duration, op: Option<&mut Operator>) -> Duration {
        let start = Instant::now();
        let mut last = String::new();
        while start.elapsed() < limit {
            match self.api.list(&ListParams::default()).await {
                Ok(list) => {
                    let live: BTreeSet<String> = list.items.iter().map(|m| m.name_any()).collect();
                    let waiting: Vec<String> = list
                        .items
                        .iter()
                        .filter(|m| !ready(m))
                        .map(|m| format!("{} {}", m.name_any(), conditions(m)))
                        .collect();
                    if &live == names && waiting.is_empty() {
                        return start.elapsed();
                    }
                    let missing: Vec<&String> = names.difference(&live).collect();
                    let extra: Vec<&String> = live.difference(names).collect();
                    last = format!(
                        "{} not Ready (first: {:?}), missing {missing:?}, still there {extra:?}",
                        waiting.len(),
                        waiting.iter().take(3).collect::<Vec<_>>()
                    );
                }
                Err(e) => last = format!("cannot list: {e}"),
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let pods = self.pods_of_unready().await;
        let diagnosis = op.map(|o| o.diagnosis()).unwrap_or_default();
        panic!("not converged within {limit:?}: {last}; their pods: {pods}; {diagnosis}");
    }

    /// The pods of the services that are not Ready (at most three), as the cluster's own
    /// controllers left them: phase, node, conditions, and who made them. A service whose
    /// children are right but whose pods never become available points at the cluster.
    async fn pods_of_unready(&self) -> String {
        use k8s_openapi::api::core::v1::Pod;
        let Ok(list) = self.api.list(&ListParams::default()).await else { return "cannot list".into() };
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &self.name());
        let mut out = Vec::new();
        for ms in list.items.iter().filter(|m| !ready(m)).take(3) {
            let selector = format!("flotilla.dev/microservice={}", ms.name_any());
            let found = match pods.list(&ListParams::default().labels(&selector)).await {
                Ok(l) => l
                    .items
                    .iter()
                    .map(|p| {
                        let status = p.status.clone().unwrap_or_default();
                        let conditions: Vec<String> = status
                            .conditions
                            .unwrap_or_default()
                            .iter()
                            .map(|c| format!("{}={}", c.type_, c.status))
                            .collect();
                        format!(
                            "{} phase={:?} node={:?} created={:?} owner={:?} [{}]",
                            p.name_any(),
                            status.phase,
                            p.spec.as_ref().and_then(|s| s.node_name.clone()),
                            p.metadata.creation_timestamp.as_ref().map(|t| t.0.to_string()),
                            p.owner_references().first().map(|o| o.name.clone()),
                            conditions.join(",")
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("; "),
                Err(e) => format!("cannot list: {e}"),
            };
            out.push(format!("{}: {}", ms.name_any(), if found.is_empty() { "no pods".into() } else { found }));
        }
        out.join(" | ")
    }

    /// The check after a fault: converged, children as rendered and each once, data kept.
    async fn check(&self, op: &mut Operator) -> Duration {
        let took = self.converged(&self.expected(), CONVERGE, Some(op)).await;
        let list = self.api.list(&ListParams::default()).await.unwrap();
        for ms in &list.items {
            let status = ms.status.as_ref().expect("a status");
            assert!(
                !status.conditions.iter().any(|c| c.type_ == "Stalled" && c.status == "True"),
                "{} is Stalled: {}",
                ms.name_any(),
                conditions(ms)
            );
        }
        children_as_rendered(&self.client, &self.name(), &list.items).await;
        self.data_kept().await;
        took
    }

    async fn data_kept(&self) {
        let ns = self.name();
        for k in ["data-changed", "data-kept", "data-retained"] {
            let now = data_of(&self.client, &ns, k).await;
            assert_eq!(&now, &self.before[k], "the data of {k} is the same claim and the same credentials");
        }
        // Retained: the claim says where it came from.
        let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(self.client.clone(), &ns);
        let claim = pvcs.get("data-data-retained-db-0").await.unwrap();
        assert_eq!(claim.annotations().get("flotilla.dev/retained-from"), Some(&format!("{ns}/data-retained")));
        // Delete: the data goes with the service (a claim may take a moment to be removed).
        support::wait_for("the data of data-deleted to go", Duration::from_secs(60), || async {
            let d = data_of(&self.client, &ns, "data-deleted").await;
            d.claim.is_none() && d.secrets.values().all(|(uid, _)| uid.is_none())
        })
        .await;
    }
}

fn ready(ms: &Microservice) -> bool {
    ms.status.as_ref().is_some_and(|s| {
        s.observed_generation == ms.metadata.generation
            && s.conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True")
    })
}

fn conditions(ms: &Microservice) -> String {
    match &ms.status {
        None => "(no status)".into(),
        Some(s) => s
            .conditions
            .iter()
            .map(|c| format!("{}={} {}: {}", c.type_, c.status, c.reason, c.message))
            .collect::<Vec<_>>()
            .join("; "),
    }
}

/// Every child of every service exists, once (no child of a kind Flotilla makes is there that
/// the render has not), and holds every field the render sets (the API server adds defaults,
/// and an autoscaled Deployment's replicas belong to its HPA).
async fn children_as_rendered(client: &Client, ns: &str, fleet: &[Microservice]) {
    let classes: Api<DatabaseClass> = Api::all(client.clone());
    let world = flotilla::render::World {
        microservices: fleet.iter().cloned().map(Arc::new).collect::<Vec<_>>().into(),
        database_classes: classes.list(&ListParams::default()).await.unwrap().items.into_iter().map(Arc::new).collect(),
        ..Default::default()
    };
    let mut rendered: BTreeMap<String, BTreeMap<String, Value>> = BTreeMap::new();
    for ms in fleet {
        for child in flotilla::render::preview(ms, &world).expect("renders") {
            let kind = child["kind"].as_str().unwrap().to_string();
            let name = child["metadata"]["name"].as_str().unwrap().to_string();
            let previous = rendered.entry(kind.clone()).or_default().insert(name.clone(), child);
            assert!(previous.is_none(), "two services render {kind} {name}");
        }
    }
    let kinds = [
        ApiResource::erase::<Deployment>(&()),
        ApiResource::erase::<Service>(&()),
        ApiResource::erase::<ServiceAccount>(&()),
        ApiResource::erase::<NetworkPolicy>(&()),
        ApiResource::erase::<HorizontalPodAutoscaler>(&()),
        ApiResource::erase::<PodDisruptionBudget>(&()),
        ApiResource::erase::<StatefulSet>(&()),
    ];
    let mut compared = 0;
    let start = Instant::now();
    for ar in kinds {
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &ar);
        let want = rendered.remove(&ar.kind).unwrap_or_default();
        let want_names: BTreeSet<String> = want.keys().cloned().collect();
        // The children of a deleted service are the garbage collector's (kube-controller-manager)
        // to remove, by their owner reference: it may lag a fault of its own, for a while.
        let live = loop {
            let live = api.list(&ListParams::default().labels(MANAGED)).await.unwrap();
            let live_names: BTreeSet<String> = live.items.iter().map(|o| o.name_any()).collect();
            if live_names == want_names {
                break live;
            }
            if start.elapsed() > GARBAGE_COLLECTED {
                assert_eq!(live_names, want_names, "{}s in {ns}: what is there and what is rendered", ar.kind);
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        };
        for obj in live.items {
            let mut live = serde_json::to_value(&obj).unwrap();
            let mut want = want[&obj.name_any()].clone();
            // The items of a list carry no kind of their own.
            for key in ["apiVersion", "kind"] {
                want.as_object_mut().unwrap().remove(key);
            }
            if ar.kind == "Deployment" {
                for v in [&mut live, &mut want] {
                    if let Some(spec) = v["spec"].as_object_mut() {
                        spec.remove("replicas");
                    }
                }
            }
            if let Some(path) = differs(&want, &live, String::new()) {
                panic!("{} {ns}/{} differs from its render at {path}", ar.kind, obj.name_any());
            }
            compared += 1;
        }
    }
    eprintln!(
        "chaos: {compared} children each once and as rendered ({:.1}s for those of deleted services to go)",
        start.elapsed().as_secs_f64()
    );
}

/// The first path at which `want` holds something `live` does not (objects: every key of
/// `want`; lists: the same length, item by item; scalars: equal; an empty list or map may be
/// absent).
fn differs(want: &Value, live: &Value, at: String) -> Option<String> {
    match (want, live) {
        (Value::Object(w), Value::Object(l)) => {
            w.iter().find_map(|(k, v)| differs(v, l.get(k).unwrap_or(&Value::Null), format!("{at}.{k}")))
        }
        (Value::Array(w), Value::Array(l)) if w.len() == l.len() => {
            w.iter().zip(l).enumerate().find_map(|(i, (w, l))| differs(w, l, format!("{at}[{i}]")))
        }
        (w, l) if w == l => None,
        // The API server leaves empty lists and maps out.
        (Value::Array(w), Value::Null) if w.is_empty() => None,
        (Value::Object(w), Value::Null) if w.is_empty() => None,
        (w, l) => Some(format!("{at}: rendered {w}, found {l}")),
    }
}

/// Deployments Flotilla has made in `ns` (errors while the API is down count as no news).
async fn deployments(client: &Client, ns: &str) -> Option<usize> {
    let api: Api<Deployment> = Api::namespaced(client.clone(), ns);
    api.list_metadata(&ListParams::default().labels(MANAGED)).await.ok().map(|l| l.items.len())
}

async fn until_deployments(client: &Client, ns: &str, n: usize) {
    let start = Instant::now();
    while deployments(client, ns).await.is_none_or(|d| d < n) {
        assert!(start.elapsed() < CONVERGE, "fewer than {n} Deployments after {CONVERGE:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn report(scenario: &str, lines: &[(&str, String)]) {
    let text: Vec<String> = lines.iter().map(|(k, v)| format!("{k}: {v}")).collect();
    eprintln!("chaos: {scenario}: {}", text.join("; "));
}

fn verbs(metrics: &str) -> String {
    requests_by_verb(metrics).iter().map(|(v, n)| format!("{v} {n}")).collect::<Vec<_>>().join(", ")
}

fn start_operator(lease: &str, tag: &str, args: &[String]) -> Operator {
    let log = std::env::var("FLOTILLA_CHAOS_LOG").unwrap_or("info,kube=warn".into());
    Operator::start_with(&OperatorOptions { namespace: None, lease, tag }, args, &log)
}

// --- the scenarios -----------------------------------------------------------------------------

/// SIGKILL of the operator three times while the burst is created; each time a new process is
/// started at once (and waits out the dead one's Lease). Two keepers are deleted while it is down.
#[tokio::test]
async fn operator_killed_three_times_mid_burst() {
    let Some(_plane) = ControlPlane::get() else { return };
    let _serial = SERIAL.lock().await;
    let Some(client) = support::client().await else { return };
    let mut scene = Scene::new(&client, "chaos-operator").await;
    let (lease, ns) = (format!("lease-{}", scene.name()), scene.name());
    let opts = OperatorOptions { namespace: Some(&ns), lease: &lease, tag: "chaos-op" };
    let mut op = Operator::start(&opts);
    op.wait_leading(&client).await;
    scene.keepers().await;
    let done = Arc::new(AtomicUsize::new(0));
    let burst = scene.start_burst(done.clone());
    let mut kills = Vec::new();
    for k in 1..=3 {
        until_deployments(&client, &scene.name(), scene.n * k / 4).await;
        op.kill();
        kills.push(format!("{} at {:.1}s", scene.n * k / 4, scene.started.elapsed().as_secs_f64()));
        if k == 1 {
            scene.delete_keepers().await;
        }
        op = Operator::start(&opts);
    }
    let restarted = Instant::now();
    op.wait_leading(&client).await;
    let leading = restarted.elapsed();
    burst.await.unwrap();
    scene.check(&mut op).await;
    report(
        "operator SIGKILLed 3 times",
        &[
            ("services", scene.n.to_string()),
            ("killed with Deployments", kills.join(", ")),
            ("last start to leading", format!("{:.1}s", leading.as_secs_f64())),
            ("last start to converged", format!("{:.1}s", restarted.elapsed().as_secs_f64())),
            ("burst start to converged", format!("{:.1}s", scene.started.elapsed().as_secs_f64())),
            ("last process's requests", verbs(&op.metrics())),
        ],
    );
    scene.ns.cleanup().await;
}

/// kube-apiserver SIGKILLed mid-burst and started again 5 s later: the same operator process
/// recovers its watches, says it is not ready while it cannot reach the API, and converges.
/// Two keepers are deleted just before the API server goes.
#[tokio::test]
async fn api_server_killed_mid_burst() {
    let Some(plane) = ControlPlane::get() else { return };
    let _serial = SERIAL.lock().await;
    let Some(client) = support::client().await else { return };
    control_plane_fault(plane, &client, "chaos-apiserver", true, false, |plane| {
        plane.kill("kube-apiserver");
        std::thread::sleep(DOWN);
        plane.start("kube-apiserver");
    })
    .await;
}

/// etcd SIGKILLed mid-burst and started again 5 s later: the API server stays up, its writes
/// fail until etcd is back. When that outlasts the renew deadline the operator steps down and
/// exits, as client-go's leaders do, and is started again, as the kubelet would.
#[tokio::test]
async fn etcd_killed_mid_burst() {
    let Some(plane) = ControlPlane::get() else { return };
    let _serial = SERIAL.lock().await;
    let Some(client) = support::client().await else { return };
    control_plane_fault(plane, &client, "chaos-etcd", false, true, |plane| {
        plane.kill("etcd");
        std::thread::sleep(DOWN);
        plane.start("etcd");
    })
    .await;
}

/// etcd compacted at its current revision and the API server restarted: every watch the
/// operator resumes is answered 410 Gone (too old resource version), and it lists again.
#[tokio::test]
async fn watches_expired_by_compaction_mid_burst() {
    let Some(plane) = ControlPlane::get() else { return };
    let _serial = SERIAL.lock().await;
    let Some(client) = support::client().await else { return };
    let etcd = plane.etcd_url();
    control_plane_fault(plane, &client, "chaos-compaction", true, false, move |plane| {
        let revision = compact(&etcd);
        eprintln!("chaos: etcd compacted at revision {revision}");
        plane.kill("kube-apiserver");
        plane.start("kube-apiserver");
    })
    .await;
}

/// The shape of the control-plane faults: an operator with a 30 s Lease (renew deadline 20 s), so
/// that it rides out the outage as client-go's leaders do an outage shorter than their renew
/// deadline: 5 s down plus the API server's start, which took over 5 s on a loaded CI machine and
/// made a 15 s Lease's leader step down. Then the keepers, the burst, and at a third of the
/// Deployments: the two keepers deleted, then `fault`.
async fn control_plane_fault(
    plane: Arc<ControlPlane>,
    client: &Client,
    tag: &str,
    api_goes: bool,
    may_step_down: bool,
    fault: impl FnOnce(&ControlPlane) + Send + 'static,
) {
    let mut scene = Scene::new(client, tag).await;
    let lease = format!("lease-{}", scene.name());
    let ns_flag = format!("--namespace={}", scene.name());
    let args = [ns_flag, "--lease-seconds=30".into()];
    let mut op = start_operator(&lease, tag, &args);
    op.wait_ready().await;
    op.wait_leading(client).await;
    scene.keepers().await;
    let done = Arc::new(AtomicUsize::new(0));
    let burst = scene.start_burst(done.clone());
    until_deployments(client, &scene.name(), scene.n / 3).await;
    scene.delete_keepers().await;
    let before = op.metrics();
    let port = op.metrics_port;
    // Watches /readyz through the fault: when it first says 503.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let probe = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let start = Instant::now();
            while !stop.load(Ordering::Relaxed) {
                if http_get(port, "/readyz").is_some_and(|(code, _)| code == 503) {
                    return Some(start.elapsed());
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            None
        })
    };
    let fault_at = Instant::now();
    let synced = Arc::new(AtomicUsize::new(0));
    let kubelet = kubelet_sync(client.clone(), scene.name(), synced.clone());
    tokio::task::spawn_blocking(move || fault(&plane)).await.unwrap();
    let back = api_ready(Duration::from_secs(120)).await;
    let restored = Instant::now();
    stop.store(true, Ordering::Relaxed);
    let unready = probe.join().unwrap();
    // With etcd down the API server still serves the watches from its cache: the operator sees
    // failed writes, not failed watches, and may stay ready.
    if api_goes {
        assert!(unready.is_some(), "/readyz never said 503 while the API server could not be reached");
    }
    // Ready again, or stepped down: an outage of etcd can outlast the renew deadline (10 s),
    // since the API server's own etcd client takes seconds to reconnect.
    let deadline = Instant::now() + Duration::from_secs(15);
    while op.is_running() && http_get(port, "/readyz").is_none_or(|(code, _)| code != 200) {
        assert!(Instant::now() < deadline, "/readyz did not say 200 within 15 s of the API server's return");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let ready_again = restored.elapsed();
    let mut stepped_down = false;
    if !op.is_running() {
        assert!(
            may_step_down && op.logs().contains("lost leadership"),
            "the operator exited during the fault; {}",
            op.diagnosis()
        );
        // As the kubelet would: the same flags, a new process.
        op = start_operator(&lease, tag, &args);
        op.wait_leading(client).await;
        stepped_down = true;
    }
    burst.await.unwrap();
    let took = scene.check(&mut op).await;
    kubelet.abort();
    assert!(op.is_running(), "the operator keeps running; {}", op.diagnosis());
    // Once the API is back, converging takes seconds (4 to 19 s measured). While kube's joint
    // backoff over all watches froze the caches it took 70 to 176 s, which CONVERGE let pass.
    assert!(
        took < RECOVERY,
        "converged {:.1}s after the API was back, more than {RECOVERY:?}; {}",
        took.as_secs_f64(),
        op.diagnosis()
    );
    let after = op.metrics();
    let lists = operator::requests(&after, "list") - operator::requests(&before, "list");
    let watches = operator::requests(&after, "watch") - operator::requests(&before, "watch");
    report(
        tag,
        &[
            ("services", scene.n.to_string()),
            ("fault at", format!("{:.1}s into the burst", (fault_at - scene.started).as_secs_f64())),
            ("/readyz 503 after", unready.map_or("never".into(), |u| format!("{:.1}s", u.as_secs_f64()))),
            ("/readyz 200 after the API", format!("{:.1}s", ready_again.as_secs_f64())),
            ("stepped down (renew deadline passed) and started again", stepped_down.to_string()),
            (
                "API ready again after",
                format!("{:.1}s ({:.1}s after the start)", (restored - fault_at).as_secs_f64(), back.as_secs_f64()),
            ),
            ("API back to converged", format!("{:.1}s", took.as_secs_f64())),
            ("relists, rewatches during the fault and recovery", format!("{lists}, {watches}")),
            ("pods whose status the kubelet stand-in wrote again", synced.load(Ordering::Relaxed).to_string()),
            ("requests", verbs(&after)),
        ],
    );
    scene.ns.cleanup().await;
}

/// What a kubelet does and kwok does not: write a pod's status again when the write failed.
/// kwok retries a refused status patch only on a refused connection, a timeout, a 503 or a 429
/// (kwok v0.8.0, `pkg/kwok/controllers/utils.go`, `shouldRetry`); the 500 an API server answers
/// while etcd is down drops it, and the pod stays scheduled and never Ready until something
/// else changes it (a run saw two services wait 300 s on "0 of 1 updated pods available"). A
/// kubelet writes its pods' status again at its next sync, seconds later. So while a
/// control-plane fault and its recovery last, every 10 s, each pod of the scene that is bound
/// to a node and not Ready 20 s after it was made gets an annotation changed, which makes kwok
/// play its stage again. It touches only pods (never a Microservice or a child Flotilla writes),
/// and counts how many it had to.
fn kubelet_sync(client: Client, ns: String, synced: Arc<AtomicUsize>) -> tokio::task::JoinHandle<()> {
    use k8s_openapi::api::core::v1::Pod;
    tokio::spawn(async move {
        let pods: Api<Pod> = Api::namespaced(client, &ns);
        let mut round = 0u64;
        loop {
            tokio::time::sleep(Duration::from_secs(10)).await;
            round += 1;
            let Ok(list) = pods.list(&ListParams::default()).await else { continue };
            let now = k8s_openapi::jiff::Timestamp::now();
            for pod in list.items {
                let bound = pod.spec.as_ref().is_some_and(|s| s.node_name.is_some());
                let ready = pod
                    .status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
                let old =
                    pod.metadata.creation_timestamp.as_ref().is_some_and(|t| now.duration_since(t.0).as_secs() >= 20);
                if !bound || ready || !old || pod.metadata.deletion_timestamp.is_some() {
                    continue;
                }
                let patch =
                    json!({"metadata": {"annotations": {"chaos.flotilla.dev/kubelet-sync": round.to_string()}}});
                if pods
                    .patch(&pod.name_any(), &kube::api::PatchParams::default(), &kube::api::Patch::Merge(&patch))
                    .await
                    .is_ok()
                {
                    synced.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    })
}

/// The leader paused (SIGSTOP: a frozen VM, a stalled process) mid-burst with a standby running:
/// the standby takes over within the Lease and a retry; the old leader, resumed, sends no write
/// (its fence is closed before any of its timers fires) and exits; the standby converges. The two
/// keepers are deleted while no one acts.
#[tokio::test]
async fn leader_paused_mid_burst_standby_takes_over() {
    let Some(_plane) = ControlPlane::get() else { return };
    let _serial = SERIAL.lock().await;
    let Some(client) = support::client().await else { return };
    let mut scene = Scene::new(&client, "chaos-leader").await;
    let (lease, ns) = (format!("lease-{}", scene.name()), scene.name());
    let mut a = Operator::start(&OperatorOptions { namespace: Some(&ns), lease: &lease, tag: "chaos-leader-a" });
    a.wait_leading(&client).await;
    let mut b = Operator::start(&OperatorOptions { namespace: Some(&ns), lease: &lease, tag: "chaos-leader-b" });
    b.wait_ready().await;
    scene.keepers().await;
    let done = Arc::new(AtomicUsize::new(0));
    let burst = scene.start_burst(done.clone());
    until_deployments(&client, &ns, scene.n / 3).await;
    let before = operator::writes(&a.metrics());
    a.signal("STOP");
    let paused = Instant::now();
    // Deleted while the leader cannot act and before the standby leads.
    scene.delete_keepers().await;
    b.wait_leading(&client).await;
    let takeover = paused.elapsed();
    // The Lease is 6 s (retry 0.8 s, with jitter up to 0.96 s); 3 s more for a busy machine.
    assert!(takeover < Duration::from_secs(10), "the standby took over after {takeover:?}");
    a.signal("CONT");
    let resumed = Instant::now();
    // Its writes while it still runs, read as often as it answers.
    let mut after = before;
    while a.exited_within(Duration::from_millis(20)).is_none() {
        assert!(resumed.elapsed() < Duration::from_secs(30), "the old leader still runs 30 s after it resumed");
        if let Some((200, text)) = http_get(a.metrics_port, "/metrics") {
            after = operator::writes(&text);
        }
    }
    let refused = a.logs().matches("not sent: this replica's leader Lease").count();
    assert_eq!(after, before, "the old leader wrote after it lost the Lease");
    burst.await.unwrap();
    scene.check(&mut b).await;
    let converged = paused.elapsed();
    report(
        "leader paused (SIGSTOP), standby running",
        &[
            ("services", scene.n.to_string()),
            ("standby leading after", format!("{:.1}s (Lease 6 s)", takeover.as_secs_f64())),
            ("old leader's writes after it resumed", format!("{} ({refused} refused by its fence)", after - before)),
            ("old leader exited after", format!("{:.2}s", resumed.elapsed().as_secs_f64())),
            ("paused to converged", format!("{:.1}s", converged.as_secs_f64())),
            ("new leader's requests", verbs(&b.metrics())),
        ],
    );
    scene.ns.cleanup().await;
}

// --- throttling and a second writer ------------------------------------------------------------

/// The FlowSchema and PriorityLevelConfiguration that throttle the operator's account: three
/// seats of the API server's 600 (1 share of 246), nothing borrowed, a request beyond them
/// answered 429 at once. Every API group the operator works in, but not its Lease's
/// (coordination.k8s.io), as a platform throttling an operator leaves its leader election alone:
/// a Lease refused past the renew deadline makes the leader step down and exit (seen once on a
/// loaded machine, with the Lease throttled too).
const THROTTLE: &str = "flotilla-chaos-throttle";

fn throttle_yaml() -> String {
    format!(
        "apiVersion: flowcontrol.apiserver.k8s.io/v1\nkind: PriorityLevelConfiguration\nmetadata: {{name: {THROTTLE}}}\n\
         spec:\n  type: Limited\n  limited:\n    nominalConcurrencyShares: 1\n    lendablePercent: 0\n    borrowingLimitPercent: 0\n    limitResponse: {{type: Reject}}\n\
         ---\n\
         apiVersion: flowcontrol.apiserver.k8s.io/v1\nkind: FlowSchema\nmetadata: {{name: {THROTTLE}}}\n\
         spec:\n  priorityLevelConfiguration: {{name: {THROTTLE}}}\n  matchingPrecedence: 500\n  distinguisherMethod: {{type: ByUser}}\n  rules:\n  \
         - subjects: [{{kind: User, user: {{name: '{}'}}}}]\n    resourceRules: [{{verbs: ['*'], apiGroups: ['', apps, autoscaling, networking.k8s.io, policy, flotilla.dev, events.k8s.io, apiextensions.k8s.io], resources: ['*'], namespaces: ['*'], clusterScope: true}}]\n    \
         nonResourceRules: [{{verbs: ['*'], nonResourceURLs: ['*']}}]\n",
        operator::OPERATOR_USER
    )
}

fn flowcontrol(client: &Client, kind: &str) -> Api<DynamicObject> {
    let gvk = kube::api::GroupVersionKind::gvk("flowcontrol.apiserver.k8s.io", "v1", kind);
    Api::all_with(client.clone(), &ApiResource::from_gvk(&gvk))
}

/// Lifts the throttle (also before every scenario: one that failed may have left it).
async fn unthrottle(client: &Client) {
    for kind in ["FlowSchema", "PriorityLevelConfiguration"] {
        match flowcontrol(client, kind).delete(THROTTLE, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => panic!("delete {kind} {THROTTLE}: {e}"),
        }
    }
}

/// Requests of the operator's account the API server refused (429) so far, from its /metrics.
async fn rejected(client: &Client) -> u64 {
    let req = http::Request::get("/metrics").body(Vec::new()).unwrap();
    let text = client.request_text(req).await.expect("the API server's /metrics");
    text.lines()
        .filter(|l| l.starts_with("apiserver_flowcontrol_rejected_requests_total{"))
        .filter(|l| l.contains(&format!("priority_level=\"{THROTTLE}\"")))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// What the second writer did.
#[derive(Default)]
struct Writes {
    microservices: AtomicUsize,
    deployments: AtomicUsize,
}

/// Another writer on the same objects, as a second controller or a person with kubectl would be,
/// five times a second until `stop`: an annotation written on four Microservices (each such
/// write makes a write of the operator that carries the resourceVersion it read fail with 409),
/// and the image of two Deployments taken with a forced apply under another field manager (the
/// operator must take it back, once per such write, not in a loop).
fn start_second_writer(
    client: Client,
    ns: String,
    stop: Arc<std::sync::atomic::AtomicBool>,
    writes: Arc<Writes>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mss: Api<Microservice> = Api::namespaced(client.clone(), &ns);
        let deps: Api<Deployment> = Api::namespaced(client.clone(), &ns);
        let mut tick = 0usize;
        while !stop.load(Ordering::Relaxed) {
            tick += 1;
            if let Ok(list) = mss.list_metadata(&ListParams::default()).await {
                let n = list.items.len().max(1);
                for k in 0..4 {
                    let name = list.items.get((tick * 4 + k) % n).map(|m| m.name_any());
                    let Some(name) = name else { break };
                    let patch = json!({"metadata": {"annotations": {"chaos.flotilla.dev/touched": tick.to_string()}}});
                    if mss
                        .patch(&name, &kube::api::PatchParams::default(), &kube::api::Patch::Merge(&patch))
                        .await
                        .is_ok()
                    {
                        writes.microservices.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            if let Ok(list) = deps.list_metadata(&ListParams::default().labels(MANAGED)).await {
                let n = list.items.len().max(1);
                for k in 0..2 {
                    let Some(name) = list.items.get((tick * 2 + k) % n).map(|d| d.name_any()) else { break };
                    let body = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
                        "spec": {"template": {"spec": {"containers": [{"name": name, "image": "registry.example/intruder:1"}]}}}});
                    let params = kube::api::PatchParams::apply("chaos-second-writer").force();
                    if deps.patch(&name, &params, &kube::api::Patch::Apply(&body)).await.is_ok() {
                        writes.deployments.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
}

/// The operator's account throttled by API Priority and Fairness (429s beyond three requests at
/// once) through the burst, while a second writer changes the same Microservices (409s for the
/// operator's writes that carry a resourceVersion) and takes fields of their Deployments. Then
/// the throttle is lifted and the writer stops: the fleet converges, the operator backed off
/// (its requests per second stay bounded while it was refused) and once converged writes nothing.
#[tokio::test]
async fn throttled_and_contended_mid_burst() {
    let Some(_plane) = ControlPlane::get() else { return };
    let _serial = SERIAL.lock().await;
    let Some(client) = support::client().await else { return };
    let mut scene = Scene::new(&client, "chaos-throttle").await;
    let lease = format!("lease-{}", scene.name());
    let args = [format!("--namespace={}", scene.name()), "--lease-seconds=15".into()];
    let mut op = start_operator(&lease, "chaos-throttle", &args);
    op.wait_leading(&client).await;
    scene.keepers().await;
    apply_yaml(&client, &throttle_yaml(), None).await;
    // In force once the API server refuses something of the operator's (its watches and Lease
    // keep it asking): at most 30 s for the API server to take the new configuration.
    let rejected_before = rejected(&client).await;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let foreign = Arc::new(Writes::default());
    let writer = start_second_writer(client.clone(), scene.name(), stop.clone(), foreign.clone());
    let before = op.metrics();
    let done = Arc::new(AtomicUsize::new(0));
    let burst = scene.start_burst(done.clone());
    scene.delete_keepers().await;
    burst.await.unwrap();
    // Throttled a while longer than the burst took to send: the operator's retries meet it too.
    tokio::time::sleep(Duration::from_secs(15)).await;
    let throttled_for = scene.started.elapsed();
    let refused = rejected(&client).await - rejected_before;
    let during = op.metrics();
    stop.store(true, Ordering::Relaxed);
    writer.await.unwrap();
    unthrottle(&client).await;
    let lifted = Instant::now();
    let took = scene.check(&mut op).await;
    let quiet = op.settled(Duration::from_secs(10)).await;
    let after = op.metrics();
    let sent = |from: &str, to: &str| {
        requests_by_verb(to).iter().map(|(_, n)| n).sum::<u64>()
            - requests_by_verb(from).iter().map(|(_, n)| n).sum::<u64>()
    };
    let conflicts = operator::counter(&after, "flotilla_reconcile_failures_total{category=\"ApiConflict\"}");
    let rate = sent(&before, &during) as f64 / throttled_for.as_secs_f64();
    // No hot loop: each refused request waits for its reconcile's backoff (39 to 94 a second
    // measured, from 4 workers and the watches). A retry at once would be thousands.
    assert!(rate < 300.0, "the operator sent {rate:.0} requests/s while throttled");
    report(
        "throttled (APF, 3 seats) and a second writer",
        &[
            ("services", scene.n.to_string()),
            ("throttled for", format!("{:.1}s", throttled_for.as_secs_f64())),
            ("operator's requests refused 429", refused.to_string()),
            ("operator's requests/s while throttled", format!("{rate:.1}")),
            ("reconciles failed with 409", conflicts.to_string()),
            (
                "second writer's writes (Microservices, Deployments)",
                format!(
                    "{}, {}",
                    foreign.microservices.load(Ordering::Relaxed),
                    foreign.deployments.load(Ordering::Relaxed)
                ),
            ),
            ("lifted to converged", format!("{:.1}s", took.as_secs_f64())),
            ("lifted to quiet (10 s without a write)", format!("{:.1}s", lifted.elapsed().as_secs_f64())),
            ("writes", quiet.to_string()),
            ("requests", verbs(&after)),
        ],
    );
    assert!(refused > 0, "the API server refused none of the operator's requests: the throttle was not in force");
    scene.ns.cleanup().await;
}

// --- a slow API server ---------------------------------------------------------------------------

/// A TCP proxy on 127.0.0.1 in front of the API server, on a thread and runtime of its own (so
/// that the test's own work never delays it). Each chunk the operator sends is held `delay`
/// before it goes on, so every request (and each flight of a TLS handshake) waits that long;
/// while stalled, nothing the operator sends goes on at all, as over an API server that stops
/// answering. The API server's answers pass at once: watches keep flowing. It counts the
/// connections open at once, which are the operator's requests in flight, its watches and the
/// idle connections its pool keeps.
struct SlowProxy {
    port: u16,
    stalled: Arc<std::sync::atomic::AtomicBool>,
    most: Arc<AtomicUsize>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl SlowProxy {
    fn start(delay: Duration) -> SlowProxy {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (host, port) = operator::api_server_address();
        let upstream = format!("{host}:{port}");
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a port for the proxy");
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let stalled = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (open, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (s, o, m) = (stalled.clone(), open.clone(), most.clone());
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                let accept = async {
                    loop {
                        let Ok((client, _)) = listener.accept().await else { continue };
                        let (upstream, stalled, open, most) = (upstream.clone(), s.clone(), o.clone(), m.clone());
                        tokio::spawn(async move {
                            let Ok(server) = tokio::net::TcpStream::connect(&upstream).await else { return };
                            let now = open.fetch_add(1, Ordering::SeqCst) + 1;
                            most.fetch_max(now, Ordering::SeqCst);
                            let (mut from_client, mut to_client) = client.into_split();
                            let (mut from_server, mut to_server) = server.into_split();
                            // The operator's bytes: stamped when read, sent on `delay` later
                            // (and not while stalled), in order.
                            let (held, mut release) = tokio::sync::mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
                            let read = async move {
                                let mut buf = vec![0u8; 64 * 1024];
                                while let Ok(n @ 1..) = from_client.read(&mut buf).await {
                                    if held.send((Instant::now(), buf[..n].to_vec())).is_err() {
                                        break;
                                    }
                                }
                            };
                            let write = async move {
                                while let Some((at, bytes)) = release.recv().await {
                                    tokio::time::sleep_until((at + delay).into()).await;
                                    while stalled.load(Ordering::Relaxed) {
                                        tokio::time::sleep(Duration::from_millis(20)).await;
                                    }
                                    if to_server.write_all(&bytes).await.is_err() {
                                        break;
                                    }
                                }
                                let _ = to_server.shutdown().await;
                            };
                            let back = async move {
                                let _ = tokio::io::copy(&mut from_server, &mut to_client).await;
                                let _ = to_client.shutdown().await;
                            };
                            // A connection is done when the API server's side is: a request's
                            // connection closed by the operator ends both ways.
                            tokio::join!(async { tokio::join!(read, write) }, back);
                            open.fetch_sub(1, Ordering::SeqCst);
                        });
                    }
                };
                tokio::select! {
                    _ = accept => {}
                    _ = stopped => {}
                }
            });
        });
        SlowProxy { port, stalled, most, stop: Some(stop), thread: Some(thread) }
    }

    fn server(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    fn stall(&self, stalled: bool) {
        self.stalled.store(stalled, Ordering::Relaxed);
    }

    fn most_open(&self) -> usize {
        self.most.load(Ordering::SeqCst)
    }
}

impl Drop for SlowProxy {
    fn drop(&mut self) {
        self.stall(false);
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        // The runtime's connections end with it.
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// What each request of the operator waits in the proxy for the whole scenario.
const SLOW: Duration = Duration::from_millis(100);
/// How long the proxy holds everything the operator sends, mid-burst: shorter than the 30 s
/// Lease's renew deadline (20 s), longer than the reconcile timeout the operator runs with.
const STALL: Duration = Duration::from_secs(12);
/// The operator's `--reconcile-timeout-seconds` here.
const RECONCILE_TIMEOUT_S: u64 = 8;

/// The API server slow for the whole burst (each request of the operator 100 ms late), and mid-
/// burst stalled for 12 s. The reconciles in flight when it stalls, and those started during
/// it, are given up after the reconcile timeout instead of holding the workers until the
/// client's read timeout (295 s); the connections open at once stay bounded (no pile-up of
/// requests), and so does memory. Then the usual check. The two keepers are deleted through the
/// slow API.
#[tokio::test]
async fn slow_and_stalled_api_mid_burst() {
    let Some(_plane) = ControlPlane::get() else { return };
    let _serial = SERIAL.lock().await;
    let Some(client) = support::client().await else { return };
    let tag = "chaos-slow";
    let mut scene = Scene::new(&client, tag).await;
    let proxy = SlowProxy::start(SLOW);
    let kubeconfig = operator::kubeconfig_through(&proxy.server(), tag);
    let lease = format!("lease-{}", scene.name());
    let args = [
        format!("--namespace={}", scene.name()),
        "--lease-seconds=30".into(),
        format!("--reconcile-timeout-seconds={RECONCILE_TIMEOUT_S}"),
    ];
    let opts = OperatorOptions { namespace: None, lease: &lease, tag };
    let mut op = Operator::start_with_env(&opts, &args, &[("KUBECONFIG", kubeconfig.to_str().unwrap())]);
    op.wait_ready().await;
    op.wait_leading(&client).await;
    scene.keepers().await;
    let done = Arc::new(AtomicUsize::new(0));
    let burst = scene.start_burst(done.clone());
    until_deployments(&client, &scene.name(), scene.n / 3).await;
    scene.delete_keepers().await;
    let before = op.metrics();
    let stalled_at = scene.started.elapsed();
    proxy.stall(true);
    tokio::time::sleep(STALL).await;
    proxy.stall(false);
    let lifted = Instant::now();
    burst.await.unwrap();
    let took = scene.check(&mut op).await;
    let since_lifted = lifted.elapsed();
    assert!(op.is_running(), "the operator keeps running; {}", op.diagnosis());
    let after = op.metrics();
    let timeouts = operator::counter(&after, "flotilla_reconcile_errors_total{category=\"Timeout\"}")
        - operator::counter(&before, "flotilla_reconcile_errors_total{category=\"Timeout\"}");
    assert!(timeouts > 0, "no reconcile was given up while the API server stalled for {STALL:?}; {}", op.diagnosis());
    // Twelve watches, four reconciles' requests, the Lease, /readyz probes and Events, and the
    // idle connections the client keeps: a few dozen. A pile-up (a request per retry left
    // hanging) would grow with every retry of 150 services.
    let most = proxy.most_open();
    assert!(most <= 40, "{most} connections open at once through the proxy");
    let (rss, peak) = op.memory_kib().expect("the operator's memory");
    assert!(peak < 200 * 1024, "the operator's memory peaked at {} MiB", peak / 1024);
    report(
        tag,
        &[
            ("services", scene.n.to_string()),
            ("each request delayed", format!("{} ms", SLOW.as_millis())),
            ("stalled", format!("{:.0}s from {:.1}s into the burst", STALL.as_secs_f64(), stalled_at.as_secs_f64())),
            ("reconciles given up (timeout)", format!("{timeouts} (limit {RECONCILE_TIMEOUT_S} s)")),
            ("stall lifted to converged", format!("{:.1}s", since_lifted.as_secs_f64())),
            ("burst done to converged", format!("{:.1}s", took.as_secs_f64())),
            ("connections open at once, at most", most.to_string()),
            ("memory", format!("{} MiB, peak {} MiB", rss / 1024, peak / 1024)),
            ("requests", verbs(&after)),
        ],
    );
    scene.ns.cleanup().await;
}
