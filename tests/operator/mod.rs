//! Running the real operator binary against the local cluster, with exactly the RBAC shipped in
//! `config/rbac/` (it impersonates the `flotilla` ServiceAccount), and reading its /metrics.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::core::GroupVersionKind;
use kube::discovery::pinned_kind;
use kube::{Client, ResourceExt};
use tokio::sync::OnceCell;

use crate::support::{kubeconfig_path, wait_for};

/// The identity the operator runs as, bound by config/rbac.
pub const OPERATOR_USER: &str = "system:serviceaccount:flotilla-system:flotilla";

static INSTALLED: OnceCell<()> = OnceCell::const_new();

/// Applies every YAML document of `path` with server-side apply, as an administrator would.
pub async fn apply_file(client: &Client, path: &Path) {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    apply_yaml(client, &text, None).await;
}

/// Applies YAML documents; namespaced objects without a namespace go to `namespace`.
pub async fn apply_yaml(client: &Client, text: &str, namespace: Option<&str>) {
    use serde::Deserialize;
    for doc in serde_yaml_ng::Deserializer::from_str(text) {
        let value = serde_json::Value::deserialize(doc).expect("valid YAML");
        if value.is_null() || value.get("kind").and_then(|k| k.as_str()) == Some("Kustomization") {
            continue;
        }
        let obj: DynamicObject = serde_json::from_value(value).expect("a Kubernetes object");
        let types = obj.types.clone().expect("apiVersion and kind");
        let gvk = GroupVersionKind::try_from(&types).expect("valid apiVersion");
        let (ar, caps) = pinned_kind(client, &gvk).await.unwrap_or_else(|e| panic!("discover {gvk:?}: {e}"));
        let api: Api<DynamicObject> = if caps.scope == kube::discovery::Scope::Namespaced {
            let ns = obj.namespace().or(namespace.map(String::from)).unwrap_or_else(|| "default".into());
            Api::namespaced_with(client.clone(), &ns, &ar)
        } else {
            Api::all_with(client.clone(), &ar)
        };
        api.patch(&obj.name_any(), &PatchParams::apply("flotilla-tests").force(), &Patch::Apply(&obj))
            .await
            .unwrap_or_else(|e| panic!("apply {} {}: {e}", types.kind, obj.name_any()));
    }
}

/// `kubectl apply --server-side` of a Microservice named `name` with `spec`.
pub async fn apply_ms(
    api: &Api<flotilla::api::Microservice>,
    name: &str,
    spec: serde_json::Value,
) -> Result<flotilla::api::Microservice, kube::Error> {
    let body = serde_json::json!({"apiVersion": "flotilla.dev/v1alpha1", "kind": "Microservice", "metadata": {"name": name}, "spec": spec});
    api.patch(name, &PatchParams::apply("kubectl").force(), &Patch::Apply(&body)).await
}

/// A test namespace with its own operator (watching only that namespace, with its own Lease).
pub struct Setup {
    pub client: Client,
    pub ns: crate::support::TestNamespace,
    pub op: Operator,
    pub api: Api<flotilla::api::Microservice>,
}

/// `None` when there is no local cluster and none is required (see [`crate::support::client`]).
pub async fn setup(tag: &str) -> Option<Setup> {
    let client = crate::support::client().await?;
    install(&client).await;
    let ns = crate::support::TestNamespace::new(&client, tag).await;
    let lease = format!("lease-{}", ns.name());
    let mut op = Operator::start(&OperatorOptions { namespace: Some(ns.name()), lease: &lease, tag });
    op.wait_ready().await;
    op.wait_leading(&client).await;
    let api = ns.api::<flotilla::api::Microservice>();
    Some(Setup { client, ns, op, api })
}

/// Installs the CRDs and the shipped RBAC once per test binary.
pub async fn install(client: &Client) {
    INSTALLED
        .get_or_init(|| async {
            let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
            apply_file(client, &root.join("crds/flotilla.dev.yaml")).await;
            for f in ["namespace.yaml", "service_account.yaml", "role.yaml", "leader_election.yaml"] {
                apply_file(client, &root.join("config/rbac").join(f)).await;
            }
            crds_established(client, &["microservices.flotilla.dev", "databaseclasses.flotilla.dev"]).await;
            no_other_operator(client).await;
        })
        .await;
}

/// Fails when an operator with the default Lease (as `make demo` starts, or an installed one)
/// is running: it watches every namespace, would reconcile the tests' objects too, and the two
/// would fight over them. The tests' own operators each use a Lease of their own.
async fn no_other_operator(client: &Client) {
    let leases: Api<Lease> = Api::namespaced(client.clone(), "flotilla-system");
    let Ok(Some(lease)) = leases.get_opt("flotilla-leader").await else { return };
    let Some(spec) = lease.spec else { return };
    let (Some(renewed), Some(seconds)) = (spec.renew_time, spec.lease_duration_seconds) else { return };
    let age = k8s_openapi::jiff::Timestamp::now().as_second() - renewed.0.as_second();
    if age < i64::from(seconds) {
        panic!(
            "an operator holds Lease flotilla-system/flotilla-leader (holder {:?}, renewed {}s ago): it watches every \
             namespace and would act on the tests' objects too; stop it first (`make demo-down` for the demo's)",
            spec.holder_identity, age
        );
    }
}

/// Waits until each named CRD is Established (served), so its kind can be used at once.
pub async fn crds_established(client: &Client, names: &[&str]) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for name in names {
        wait_for(&format!("CRD {name} established"), Duration::from_secs(30), || async {
            let Ok(crd) = crds.get(name).await else { return false };
            crd.status
                .and_then(|s| s.conditions)
                .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Established" && c.status == "True"))
        })
        .await;
    }
}

/// A kubeconfig for the operator: the test cluster's, impersonating the operator's account, so
/// every permission it uses must come from config/rbac. Each operator gets a file of its own
/// (`name` is unique in the run), written to a temporary name and renamed into place, so an
/// operator never reads a file that another test is writing.
fn operator_kubeconfig(dir: &Path, name: &str, user: &str) -> PathBuf {
    operator_kubeconfig_to(dir, name, user, None)
}

/// The operator's kubeconfig with its requests sent to `server` (`https://127.0.0.1:PORT`, a
/// proxy in front of the API server) instead of the API server itself; pass it as `KUBECONFIG`
/// to [`Operator::start_with_env`].
pub fn kubeconfig_through(server: &str, tag: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/test-logs");
    std::fs::create_dir_all(&dir).unwrap();
    operator_kubeconfig_to(&dir, &format!("{tag}-{}-via-proxy", unique()), OPERATOR_USER, Some(server))
}

fn operator_kubeconfig_to(dir: &Path, name: &str, user: &str, server: Option<&str>) -> PathBuf {
    let text = std::fs::read_to_string(kubeconfig_path()).expect("kubeconfig");
    let mut cfg: serde_json::Value = serde_yaml_ng::from_str(&text).expect("kubeconfig YAML");
    let user_name = user;
    for user in cfg["users"].as_array_mut().expect("users") {
        user["user"]["as"] = serde_json::Value::String(user_name.into());
    }
    if let Some(server) = server {
        for cluster in cfg["clusters"].as_array_mut().expect("clusters") {
            cluster["cluster"]["server"] = serde_json::Value::String(server.into());
        }
    }
    let path = dir.join(format!("operator-{name}.kubeconfig"));
    let tmp = dir.join(format!(".operator-{name}.kubeconfig.tmp"));
    std::fs::write(&tmp, serde_yaml_ng::to_string(&cfg).unwrap()).unwrap();
    std::fs::rename(&tmp, &path).unwrap();
    path
}

/// The YAML of an embedded Postgres DatabaseClass named `name`.
pub fn embedded_postgres_class_yaml(name: &str) -> String {
    format!(
        "apiVersion: flotilla.dev/v1alpha1\nkind: DatabaseClass\nmetadata: {{name: {name}}}\n\
         spec: {{engine: postgres, provisioner: embedded, embedded: {{image: 'postgres:17', storageClassName: standard}}}}\n"
    )
}

/// An embedded Postgres DatabaseClass named `name` (cluster-scoped), deleted when the returned
/// guard drops, also when the test fails.
pub async fn embedded_postgres_class(client: &Client, name: &str) -> crate::support::Cleanup {
    apply_yaml(client, &embedded_postgres_class_yaml(name), None).await;
    let name = name.to_string();
    crate::support::Cleanup::new(move |client| async move {
        let api: Api<flotilla::api::DatabaseClass> = Api::all(client);
        let _ = api.delete(&name, &kube::api::DeleteParams::default()).await;
    })
}

/// The API server's host and port, from the tests' kubeconfig.
pub fn api_server_address() -> (String, u16) {
    let text = std::fs::read_to_string(kubeconfig_path()).expect("kubeconfig");
    let cfg: serde_json::Value = serde_yaml_ng::from_str(&text).expect("kubeconfig YAML");
    let server = cfg["clusters"][0]["cluster"]["server"].as_str().expect("a server in the kubeconfig");
    let host_port = server.trim_start_matches("https://").trim_end_matches('/');
    let (host, port) = host_port.rsplit_once(':').expect("server as https://host:port");
    (host.to_string(), port.parse().expect("a port"))
}

/// The files a pod of ServiceAccount `namespace/account` finds at
/// `/var/run/secrets/kubernetes.io/serviceaccount`: a token the API server issues for it
/// (TokenRequest, one hour), the cluster's CA and the namespace; in a directory of their own.
pub async fn pod_account_files(client: &Client, namespace: &str, account: &str) -> PathBuf {
    use k8s_openapi::api::authentication::v1::TokenRequest;
    use k8s_openapi::api::core::v1::ServiceAccount;
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), namespace);
    let request: TokenRequest =
        serde_json::from_value(serde_json::json!({"spec": {"audiences": [], "expirationSeconds": 3600}})).unwrap();
    let issued: TokenRequest = accounts
        .create_subresource("token", account, &kube::api::PostParams::default(), &request)
        .await
        .unwrap_or_else(|e| panic!("a token for {namespace}/{account}: {e}"));
    let token = issued.status.expect("a token").token;
    let text = std::fs::read_to_string(kubeconfig_path()).expect("kubeconfig");
    let cfg: serde_json::Value = serde_yaml_ng::from_str(&text).expect("kubeconfig YAML");
    let ca = match cfg["clusters"][0]["cluster"]["certificate-authority-data"].as_str() {
        // ByteString reads base64, as the kubeconfig holds it.
        Some(data) => serde_json::from_value::<k8s_openapi::ByteString>(data.into()).expect("CA data").0,
        None => std::fs::read(cfg["clusters"][0]["cluster"]["certificate-authority"].as_str().expect("a CA"))
            .expect("the CA file"),
    };
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("target/test-logs")
        .join(format!("account-{namespace}-{account}-{}", unique()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("token"), token).unwrap();
    std::fs::write(dir.join("ca.crt"), ca).unwrap();
    std::fs::write(dir.join("namespace"), namespace).unwrap();
    dir
}

/// The policy the tests' operators run with unless a test gives its own: it leaves open what a
/// platform may open, so that tests of other features meet no refusal of the shipped defaults
/// (tests/cluster_tenants.rs runs with those).
pub fn open_policy_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/policy-open.yaml")
}

/// [`open_policy_path`], read.
pub fn open_policy() -> std::sync::Arc<flotilla::policy::Policy> {
    std::sync::Arc::new(flotilla::policy::Policy::load(&open_policy_path()).expect("the open test policy"))
}

/// A running `flotilla run` process, killed on drop.
pub struct Operator {
    child: Option<Child>,
    /// The Lease it competes for (in `lease_namespace`, `flotilla-system` unless the test chose
    /// another), and the identity it holds it under.
    pub lease: String,
    pub lease_namespace: String,
    pub identity: String,
    pub metrics_port: u16,
    pub log: PathBuf,
    pub started: Instant,
}

pub struct OperatorOptions<'a> {
    /// Watch only this namespace.
    pub namespace: Option<&'a str>,
    /// Leader Lease name, unique per test so tests do not contend.
    pub lease: &'a str,
    pub tag: &'a str,
}

impl Operator {
    pub fn start(opts: &OperatorOptions) -> Operator {
        Self::start_with(opts, &[], "info,flotilla=debug,kube=warn")
    }

    /// [`Operator::start`] with more flags of `flotilla run` and its own `RUST_LOG` (the scale
    /// benchmark logs at `info`: debug lines for thousands of services would be what it measures).
    pub fn start_with(opts: &OperatorOptions, args: &[String], rust_log: &str) -> Operator {
        Self::start_full(opts, args, &[], rust_log, OPERATOR_USER)
    }

    /// [`Operator::start_with`] with environment variables (`FLOTILLA_*`) for the process.
    pub fn start_with_env(opts: &OperatorOptions, args: &[String], env: &[(&str, &str)]) -> Operator {
        Self::start_full(opts, args, env, "info,flotilla=debug,kube=warn", OPERATOR_USER)
    }

    /// [`Operator::start_with`] as another identity than the operator's account.
    pub fn start_as(opts: &OperatorOptions, args: &[String], user: &str) -> Operator {
        Self::start_full(opts, args, &[], "info,flotilla=debug,kube=warn", user)
    }

    fn start_full(
        opts: &OperatorOptions,
        args: &[String],
        env: &[(&str, &str)],
        rust_log: &str,
        user: &str,
    ) -> Operator {
        Self::spawn(opts, args, env, rust_log, Some(user), None)
    }

    /// Starts the operator as a pod sees the API: no kubeconfig, `KUBERNETES_SERVICE_HOST` and
    /// `_PORT` in its environment, and the ServiceAccount's token, the cluster's CA and the
    /// namespace (the files of `account_dir`) at the standard path
    /// `/var/run/secrets/kubernetes.io/serviceaccount`, mounted for this process alone (a mount
    /// namespace of its own, as root), so concurrent tests never share the path.
    pub fn start_in_pod(opts: &OperatorOptions, args: &[String], env: &[(&str, &str)], account_dir: &Path) -> Operator {
        Self::spawn(opts, args, env, "info,flotilla=debug,kube=warn", None, Some(account_dir))
    }

    fn spawn(
        opts: &OperatorOptions,
        args: &[String],
        env: &[(&str, &str)],
        rust_log: &str,
        user: Option<&str>,
        account_dir: Option<&Path>,
    ) -> Operator {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/test-logs");
        std::fs::create_dir_all(&dir).unwrap();
        let name = format!("{}-{}", opts.tag, unique());
        let log = dir.join(format!("operator-{name}.log"));
        let identity = format!("{}-{}", opts.tag, unique());
        let file = std::fs::File::create(&log).unwrap();
        let mut cmd = match account_dir {
            None => {
                let mut cmd = Command::new(env!("CARGO_BIN_EXE_flotilla"));
                cmd.env("KUBECONFIG", operator_kubeconfig(&dir, &name, user.unwrap_or(OPERATOR_USER)));
                cmd
            }
            Some(account) => {
                let server = api_server_address();
                let home = dir.join(format!("home-{name}"));
                std::fs::create_dir_all(&home).unwrap();
                let mut cmd = Command::new("unshare");
                cmd.args(["--mount", "--propagation", "private", "sh", "-c"])
                    .arg(
                        "set -e; mount -t tmpfs none /run; d=/var/run/secrets/kubernetes.io/serviceaccount; \
                         mkdir -p $d; cp \"$ACCOUNT_DIR\"/* $d/; exec \"$@\"",
                    )
                    .arg("sh")
                    .arg(env!("CARGO_BIN_EXE_flotilla"))
                    .env_clear()
                    .env("PATH", std::env::var("PATH").unwrap_or_default())
                    // No kubeconfig to find: the in-cluster configuration is what is left.
                    .env("HOME", &home)
                    .env("ACCOUNT_DIR", account)
                    .env("KUBERNETES_SERVICE_HOST", server.0)
                    .env("KUBERNETES_SERVICE_PORT", server.1.to_string());
                cmd
            }
        };
        // Port 0: the operator binds a free port and logs it, so parallel tests never race for one.
        // The Lease's namespace: a test's own flag or POD_NAMESPACE (as a pod has it), else
        // flotilla-system.
        let lease_namespace = args
            .iter()
            .find_map(|a| a.strip_prefix("--leader-elect-namespace="))
            .or_else(|| env.iter().find(|(k, _)| *k == "POD_NAMESPACE").map(|(_, v)| *v))
            .unwrap_or("flotilla-system")
            .to_string();
        cmd.arg("run")
            .arg("--metrics-addr=127.0.0.1:0")
            .arg(format!("--leader-elect-lease={}", opts.lease))
            .arg(format!("--identity={identity}"))
            .args(args)
            .envs(env.iter().copied())
            .env("RUST_LOG", rust_log)
            .stdout(Stdio::null())
            .stderr(file);
        if let Some(ns) = opts.namespace {
            cmd.arg(format!("--namespace={ns}"));
        }
        if !args.iter().any(|a| a.starts_with("--leader-elect-namespace")) {
            cmd.env("POD_NAMESPACE", &lease_namespace);
        }
        if !args.iter().any(|a| a.starts_with("--policy")) {
            cmd.arg(format!("--policy={}", open_policy_path().display()));
        }
        // A short Lease, so that a test's takeover is quick, unless the test asks for another.
        if !args.iter().any(|a| a.starts_with("--lease-seconds")) {
            cmd.arg("--lease-seconds=6");
        }
        let child = cmd.spawn().expect("start flotilla run");
        let mut op = Operator {
            child: Some(child),
            lease: opts.lease.to_string(),
            lease_namespace,
            identity,
            metrics_port: 0,
            log,
            started: Instant::now(),
        };
        op.metrics_port = op.bound_port();
        op
    }

    /// The port the operator logged that it serves on.
    fn bound_port(&mut self) -> u16 {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let logs = self.logs();
            // Only complete lines: the log may be read while the operator is writing one.
            let port = logs
                .split_inclusive('\n')
                .filter(|l| l.ends_with('\n'))
                .find(|l| l.contains("serving /metrics"))
                .and_then(|l| l.split("addr=127.0.0.1:").nth(1))
                .and_then(|rest| rest.split_whitespace().next()?.parse().ok());
            if let Some(port) = port {
                return port;
            }
            if !self.is_running() || Instant::now() > deadline {
                panic!("the operator did not start serving /metrics; {}", self.diagnosis());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Whether the process still runs, and the end of its log: for failure messages.
    pub fn diagnosis(&mut self) -> String {
        let state = match self.child.as_mut().map(|c| c.try_wait()) {
            Some(Ok(None)) => "still running".to_string(),
            Some(Ok(Some(status))) => format!("exited with {status}"),
            Some(Err(e)) => format!("state unknown: {e}"),
            None => "stopped by the test".to_string(),
        };
        format!("operator {state}; log {}:\n{}", self.log.display(), self.log_tail())
    }

    /// Waits until /readyz answers 200 (caches synced, or standing by); on a timeout the failure
    /// says whether the process still runs and shows the end of its log.
    pub async fn wait_ready(&mut self) {
        let port = self.metrics_port;
        let deadline = Instant::now() + Duration::from_secs(30);
        while http_get(port, "/readyz").is_none_or(|(code, _)| code != 200) {
            if Instant::now() > deadline || !self.is_running() {
                panic!("operator /readyz on :{port} did not answer 200 within 30s; {}", self.diagnosis());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until this operator holds its Lease: /readyz also answers 200 while it stands by,
    /// and a test that counts what the operator does must not count the time it did not lead.
    pub async fn wait_leading(&mut self, client: &Client) {
        let leases: Api<Lease> = Api::namespaced(client.clone(), &self.lease_namespace);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let holder = leases.get_opt(&self.lease).await.ok().flatten().and_then(|l| l.spec?.holder_identity);
            if holder.as_deref() == Some(self.identity.as_str()) {
                return;
            }
            if Instant::now() > deadline || !self.is_running() {
                let diagnosis = self.diagnosis();
                panic!(
                    "operator {} did not take Lease {} within 60s (holder: {holder:?}); {diagnosis}",
                    self.identity, self.lease
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until the operator has written nothing for `quiet` and no reconcile is running,
    /// and returns its write count then: the baseline for "nothing more is written". A write
    /// still in flight when a test takes its baseline would otherwise count against the test.
    pub async fn settled(&self, quiet: Duration) -> u64 {
        let sample = || {
            // A dead operator writes nothing: that is no proof of anything.
            assert!(self.alive(), "the operator is not running; log {}:\n{}", self.log.display(), self.log_tail());
            let m = self.metrics();
            let started = counter(&m, "flotilla_reconciles_total");
            let finished = counter(&m, "flotilla_reconcile_duration_seconds_count");
            (writes(&m), started == finished)
        };
        let deadline = Instant::now() + Duration::from_secs(120);
        let (mut last, mut since) = (sample().0, Instant::now());
        loop {
            tokio::time::sleep(Duration::from_millis(250)).await;
            let (now, idle) = sample();
            if now != last {
                (last, since) = (now, Instant::now());
            } else if idle && since.elapsed() >= quiet {
                return now;
            }
            assert!(Instant::now() < deadline, "the operator kept writing for 120s:\n{}", self.metrics());
        }
    }

    /// Reconciles finished so far (the histogram's count: a reconcile counts once it is done).
    pub fn reconciles_done(&self) -> u64 {
        counter(&self.metrics(), "flotilla_reconcile_duration_seconds_count")
    }

    /// Distinct Microservices reconciled since the process started.
    pub fn services_reconciled(&self) -> u64 {
        counter(&self.metrics(), "flotilla_microservices_reconciled")
    }

    /// The /metrics text. An operator that cannot be read fails the test with its log's end,
    /// rather than reading as one that did nothing (a busy machine gets three tries).
    pub fn metrics(&self) -> String {
        for _ in 0..3 {
            if let Some((200, body)) = http_get(self.metrics_port, "/metrics") {
                return body;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        panic!(
            "cannot read /metrics on :{} (operator {}); log {}:\n{}",
            self.metrics_port,
            if self.alive() { "running" } else { "not running" },
            self.log.display(),
            self.log_tail()
        );
    }

    /// Whether the process runs (not exited, not a zombie), without waiting on it.
    pub fn alive(&self) -> bool {
        let Some(pid) = self.child.as_ref().map(Child::id) else { return false };
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        stat.rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X")
    }

    /// The last 40 lines of the log.
    pub fn log_tail(&self) -> String {
        let logs = self.logs();
        let lines: Vec<&str> = logs.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// Sum of `flotilla_api_requests_total` over write verbs, except the leader Lease and Events
    /// (which are not writes to Microservices or their children).
    pub fn child_writes(&self) -> u64 {
        writes(&self.metrics())
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, then wait for a graceful exit.
    pub fn terminate(&mut self) -> Option<std::process::ExitStatus> {
        let mut c = self.child.take()?;
        let _ = Command::new("kill").arg("-TERM").arg(c.id().to_string()).status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = c.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = c.kill();
        c.wait().ok()
    }

    /// The process's resident memory now and at its peak, in KiB (from /proc).
    pub fn memory_kib(&self) -> Option<(u64, u64)> {
        let pid = self.child.as_ref()?.id();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let field =
            |name: &str| status.lines().find(|l| l.starts_with(name))?.split_whitespace().nth(1)?.parse::<u64>().ok();
        Some((field("VmRSS:")?, field("VmHWM:")?))
    }

    /// CPU time the process has used so far (user plus system), from /proc.
    pub fn cpu_seconds(&self) -> Option<f64> {
        let pid = self.child.as_ref()?.id();
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // The fields after the command name, which is in parentheses and may hold spaces.
        let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
        let ticks = |i: usize| fields.get(i)?.parse::<u64>().ok();
        // utime and stime are fields 14 and 15 of stat(5), 12 and 13 after the name; 100 ticks/s.
        Some((ticks(11)? + ticks(12)?) as f64 / 100.0)
    }

    /// Sends `signal` (a name `kill` takes: STOP, CONT, KILL ...) to the process.
    pub fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().expect("the operator runs").id();
        let ok = Command::new("kill").arg(format!("-{signal}")).arg(pid.to_string()).status();
        assert!(ok.is_ok_and(|s| s.success()), "kill -{signal} {pid}");
    }

    /// Waits up to `limit` for the process to exit on its own: its exit status, or `None`.
    pub fn exited_within(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    /// Waits up to `limit` for the process to exit on its own, and returns how it exited.
    pub async fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                return Some(status);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        None
    }

    pub fn is_running(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Write requests in a /metrics text, except leases and events.
pub fn writes(metrics: &str) -> u64 {
    metrics
        .lines()
        .filter(|l| l.starts_with("flotilla_api_requests_total{"))
        .filter(|l| ["create", "update", "patch", "delete"].iter().any(|v| l.contains(&format!("verb=\"{v}\""))))
        .filter(|l| !l.contains("resource=\"leases\"") && !l.contains("resource=\"events\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// Sum of `flotilla_api_requests_total` over every resource, for one verb.
pub fn requests(metrics: &str, verb: &str) -> u64 {
    metrics
        .lines()
        .filter(|l| l.starts_with("flotilla_api_requests_total{") && l.contains(&format!("verb=\"{verb}\"")))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// Every verb's sum of `flotilla_api_requests_total`, over every resource, sorted by verb.
pub fn requests_by_verb(metrics: &str) -> Vec<(String, u64)> {
    let mut out: std::collections::BTreeMap<String, u64> = Default::default();
    for l in metrics.lines().filter(|l| l.starts_with("flotilla_api_requests_total{")) {
        let verb = l.split("verb=\"").nth(1).and_then(|r| r.split('"').next()).unwrap_or("?");
        *out.entry(verb.to_string()).or_default() += l.rsplit(' ').next().and_then(|v| v.parse().ok()).unwrap_or(0);
    }
    out.into_iter().collect()
}

/// The `q` quantile (0..1) of the reconcile duration histogram, in seconds, interpolated within
/// its bucket as Prometheus's `histogram_quantile` does. `None` before any reconcile.
pub fn reconcile_quantile(metrics: &str, q: f64) -> Option<f64> {
    let mut buckets: Vec<(f64, f64)> = metrics
        .lines()
        .filter(|l| l.starts_with("flotilla_reconcile_duration_seconds_bucket{"))
        .filter_map(|l| {
            let le = l.split("le=\"").nth(1)?.split('"').next()?;
            let le = if le == "+Inf" { f64::INFINITY } else { le.parse().ok()? };
            Some((le, l.rsplit(' ').next()?.parse().ok()?))
        })
        .collect();
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    let total = buckets.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let rank = q * total;
    let (mut lower, mut below) = (0.0, 0.0);
    for (le, count) in buckets {
        if count >= rank {
            if le.is_infinite() {
                return Some(lower);
            }
            let share = if count > below { (rank - below) / (count - below) } else { 1.0 };
            return Some(lower + (le - lower) * share);
        }
        (lower, below) = (le, count);
    }
    None
}

/// Value of one counter line, by its exact label set text.
pub fn counter(metrics: &str, name_and_labels: &str) -> u64 {
    metrics
        .lines()
        .find(|l| l.starts_with(name_and_labels))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0)
}

/// A suffix unique within this test run, for log file names and identities.
fn unique() -> String {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    format!("{}-{}", std::process::id(), NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed))
}

/// A tiny HTTP/1.0 GET: (status code, body).
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    let code = buf.split_whitespace().nth(1)?.parse().ok()?;
    let body = buf.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    Some((code, body))
}
