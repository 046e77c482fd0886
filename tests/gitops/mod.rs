//! Real GitOps tools against the local cluster: a Git repository served over smart HTTP on
//! 127.0.0.1 (tests/githttp), and Flux's source-controller and kustomize-controller run as host
//! processes, built from their Go modules by tests/gitops/build.sh (cached outside the work
//! tree). Each test gets its own repository, server and controllers, watching only its own
//! namespace, so tests running at once never share a port, a file or an object.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use kube::Client;

/// A directory of its own under target/gitops/, for one test's repositories and controllers.
pub fn scratch(tag: &str) -> PathBuf {
    use rand::Rng;
    let n: u64 = rand::rng().random();
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("target/gitops/{tag}-{n:016x}"));
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
    dir
}

/// Runs a build script of the repository and returns the directory (or file) it printed.
fn built(script: &str, args: &[&str]) -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(script);
    let out = Command::new("bash")
        .arg(&path)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e}", path.display()));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{} {args:?} failed ({}):\n{stderr}", path.display(), out.status);
    eprint!("{stderr}");
    PathBuf::from(String::from_utf8_lossy(&out.stdout).lines().next().unwrap_or_default().trim())
}

/// A child process killed (and waited for) on drop.
pub struct Process {
    child: Child,
    pub log: PathBuf,
    name: String,
}

impl Process {
    fn spawn(name: &str, mut cmd: Command, log: PathBuf) -> Process {
        let file = std::fs::File::create(&log).unwrap_or_else(|e| panic!("create {}: {e}", log.display()));
        cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(file);
        let child = cmd.spawn().unwrap_or_else(|e| panic!("start {name}: {e}"));
        Process { child, log, name: name.to_string() }
    }

    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The end of its log and whether it still runs, for failure messages.
    pub fn diagnosis(&mut self) -> String {
        let state = match self.child.try_wait() {
            Ok(None) => "running".to_string(),
            Ok(Some(s)) => format!("exited with {s}"),
            Err(e) => format!("state unknown: {e}"),
        };
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        format!(
            "{} {state}; log {}:\n{}",
            self.name,
            self.log.display(),
            lines[lines.len().saturating_sub(30)..].join("\n")
        )
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The Git server: every bare repository under its root, at `http://ADDR/NAME.git`.
pub struct GitServer {
    root: PathBuf,
    addr: String,
    _process: Process,
}

impl GitServer {
    pub fn start(dir: &Path) -> GitServer {
        let bin = built("tests/githttp/build.sh", &[]);
        let root = dir.join("git");
        std::fs::create_dir_all(&root).unwrap();
        let mut cmd = Command::new(&bin);
        cmd.arg("-root").arg(&root).stdout(Stdio::piped()).stdin(Stdio::null());
        let log = dir.join("githttp.log");
        cmd.stderr(std::fs::File::create(&log).unwrap());
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("start githttp: {e}"));
        // It listens on a port of its own choosing and prints it: nothing to race for.
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("piped stdout"))
            .read_line(&mut line)
            .expect("githttp prints its address");
        let addr = line.trim().to_string();
        assert!(addr.starts_with("127.0.0.1:"), "githttp printed {addr:?}");
        GitServer { root, addr, _process: Process { child, log, name: "githttp".into() } }
    }

    /// A new repository `name` with branch `main`, and a work tree to commit from.
    pub fn repo(&self, name: &str) -> Repo {
        let bare = self.root.join(format!("{name}.git"));
        git(&self.root, &["init", "-q", "--bare", "-b", "main", bare.to_str().unwrap()]);
        let work = self.root.join(format!("{name}.work"));
        git(&self.root, &["init", "-q", "-b", "main", work.to_str().unwrap()]);
        Repo { work, bare, url: format!("http://{}/{name}.git", self.addr) }
    }
}

/// A repository a test pushes to, as a team's CI would.
pub struct Repo {
    work: PathBuf,
    bare: PathBuf,
    pub url: String,
}

impl Repo {
    /// Writes `files` (path, content; None removes the file), commits them and pushes to
    /// `main`. Returns the commit's hash.
    pub fn commit(&self, files: &[(&str, Option<&str>)], message: &str) -> String {
        for (path, content) in files {
            let p = self.work.join(path);
            match content {
                Some(c) => {
                    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
                    std::fs::write(&p, c).unwrap();
                }
                None => {
                    let _ = std::fs::remove_file(&p);
                }
            }
        }
        git(&self.work, &["add", "-A"]);
        git(
            &self.work,
            &["-c", "user.name=flotilla-tests", "-c", "user.email=tests@flotilla.dev", "commit", "-q", "-m", message],
        );
        git(&self.work, &["push", "-q", self.bare.to_str().unwrap(), "HEAD:main"]);
        git(&self.work, &["rev-parse", "HEAD"]).trim().to_string()
    }
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git").current_dir(dir).args(args).output().unwrap_or_else(|e| panic!("git {args:?}: {e}"));
    assert!(out.status.success(), "git {args:?} in {}: {}", dir.display(), String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A port free now, for a process that must be told its port (source-controller's artifact
/// server, whose address is advertised to kustomize-controller).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

/// Flux's source-controller and kustomize-controller, watching only `namespace`.
pub struct Flux {
    pub source: Process,
    pub kustomize: Process,
}

impl Flux {
    pub async fn start(client: &Client, namespace: &str, dir: &Path) -> Flux {
        let flux = built("tests/gitops/build.sh", &["flux"]);
        for entry in std::fs::read_dir(flux.join("crds/flux")).expect("Flux CRDs") {
            crate::operator::apply_file(client, &entry.unwrap().path()).await;
        }
        let kinds = ["gitrepositories.source.toolkit.fluxcd.io", "kustomizations.kustomize.toolkit.fluxcd.io"];
        crate::operator::crds_established(client, &kinds).await;
        let kubeconfig = crate::support::kubeconfig_path();
        let storage = dir.join("flux-storage");
        std::fs::create_dir_all(&storage).unwrap();
        let port = free_port();
        let common = |cmd: &mut Command| {
            cmd.env("KUBECONFIG", &kubeconfig)
                .env("RUNTIME_NAMESPACE", namespace)
                .arg("--watch-all-namespaces=false")
                .arg("--enable-leader-election=false")
                .arg("--metrics-addr=0")
                .arg("--health-addr=0")
                .arg("--log-level=debug");
        };
        let mut source = Command::new(flux.join("bin/source-controller"));
        common(&mut source);
        source
            .arg(format!("--storage-path={}", storage.display()))
            .arg(format!("--storage-addr=127.0.0.1:{port}"))
            .arg(format!("--storage-adv-addr=127.0.0.1:{port}"));
        let mut kustomize = Command::new(flux.join("bin/kustomize-controller"));
        common(&mut kustomize);
        kustomize.arg("--no-remote-bases=true");
        Flux {
            source: Process::spawn("source-controller", source, dir.join("source-controller.log")),
            kustomize: Process::spawn("kustomize-controller", kustomize, dir.join("kustomize-controller.log")),
        }
    }

    pub fn diagnosis(&mut self) -> String {
        format!("{}\n{}", self.source.diagnosis(), self.kustomize.diagnosis())
    }

    pub fn running(&mut self) -> bool {
        self.source.running() && self.kustomize.running()
    }
}

/// Server-side apply of one object of any kind (the Flux kinds among them), in `namespace`.
pub async fn apply(client: &Client, namespace: &str, value: serde_json::Value) -> kube::api::DynamicObject {
    use kube::ResourceExt;
    use kube::api::{Api, DynamicObject, Patch, PatchParams};
    let obj: DynamicObject = serde_json::from_value(value).expect("a Kubernetes object");
    let types = obj.types.clone().expect("apiVersion and kind");
    let gvk = kube::core::GroupVersionKind::try_from(&types).expect("valid apiVersion");
    let (ar, _) = kube::discovery::pinned_kind(client, &gvk).await.unwrap_or_else(|e| panic!("discover {gvk:?}: {e}"));
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, &ar);
    api.patch(&obj.name_any(), &PatchParams::apply("flotilla-tests").force(), &Patch::Apply(&obj))
        .await
        .unwrap_or_else(|e| panic!("apply {} {}: {e}", types.kind, obj.name_any()))
}

/// The API of a Flux kind in `namespace`.
pub async fn api(
    client: &Client,
    namespace: &str,
    api_version: &str,
    kind: &str,
) -> kube::api::Api<kube::api::DynamicObject> {
    let types = kube::core::TypeMeta { api_version: api_version.into(), kind: kind.into() };
    let gvk = kube::core::GroupVersionKind::try_from(&types).expect("valid apiVersion");
    let (ar, _) = kube::discovery::pinned_kind(client, &gvk).await.unwrap_or_else(|e| panic!("discover {gvk:?}: {e}"));
    kube::api::Api::namespaced_with(client.clone(), namespace, &ar)
}

/// (status, reason, message) of condition `type_` of any object.
pub fn condition(obj: &kube::api::DynamicObject, type_: &str) -> Option<(String, String, String)> {
    let conditions = obj.data.pointer("/status/conditions")?.as_array()?;
    let c = conditions.iter().find(|c| c["type"] == type_)?;
    let s = |k: &str| c[k].as_str().unwrap_or_default().to_string();
    Some((s("status"), s("reason"), s("message")))
}

/// Redis for Argo CD's cache: Debian's `redis-server` (tests/gitops/redis.sh installs it when
/// missing), on a port of its own, keeping nothing on disk.
pub struct Redis {
    pub addr: String,
    _process: Process,
}

impl Redis {
    pub fn start(dir: &Path) -> Redis {
        let bin = built("tests/gitops/redis.sh", &[]);
        let port = free_port();
        let mut cmd = Command::new(bin);
        cmd.args(["--bind", "127.0.0.1", "--port", &port.to_string(), "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(dir);
        Redis {
            addr: format!("127.0.0.1:{port}"),
            _process: Process::spawn("redis-server", cmd, dir.join("redis.log")),
        }
    }
}

/// Argo CD's repo-server and application-controller (with Redis), keeping their own objects in
/// `namespace`, syncing into the cluster through the admin kubeconfig.
pub struct ArgoCd {
    pub namespace: String,
    pub repo_server: Process,
    pub controller: Process,
    _redis: Redis,
}

impl ArgoCd {
    /// Installs the CRDs, the config (with the health check of config/argocd applied as a user
    /// would, by `kubectl patch` with argocd-cm-patch.yaml) and the default AppProject, then
    /// starts the components. `resync` is the controller's resync period.
    pub async fn start(client: &Client, namespace: &str, dir: &Path, resync: u32) -> ArgoCd {
        let argocd = built("tests/gitops/build.sh", &["argocd"]);
        for crd in ["application-crd.yaml", "appproject-crd.yaml"] {
            crate::operator::apply_file(client, &argocd.join("crds/argocd").join(crd)).await;
        }
        crate::operator::crds_established(client, &["applications.argoproj.io", "appprojects.argoproj.io"]).await;
        let labels = serde_json::json!({"app.kubernetes.io/part-of": "argocd"});
        apply(
            client,
            namespace,
            serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "argocd-cm", "labels": labels},
            "data": {"timeout.reconciliation": format!("{resync}s")}}),
        )
        .await;
        // As the README says to install it: a merge patch of argocd-cm in Argo CD's namespace.
        let patch_path = concat!(env!("CARGO_MANIFEST_DIR"), "/config/argocd/argocd-cm-patch.yaml");
        let patch: serde_json::Value =
            serde_yaml_ng::from_str(&std::fs::read_to_string(patch_path).unwrap()).expect("argocd-cm-patch.yaml");
        let cms: kube::api::Api<k8s_openapi::api::core::v1::ConfigMap> =
            kube::api::Api::namespaced(client.clone(), namespace);
        cms.patch("argocd-cm", &kube::api::PatchParams::default(), &kube::api::Patch::Merge(&patch))
            .await
            .expect("kubectl patch configmap argocd-cm --type merge --patch-file config/argocd/argocd-cm-patch.yaml");
        apply(
            client,
            namespace,
            serde_json::json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "argocd-secret", "labels": labels},
            "stringData": {"server.secretkey": "flotilla-tests-not-a-secret"}}),
        )
        .await;
        apply(
            client,
            namespace,
            serde_json::json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "AppProject",
            "metadata": {"name": "default"},
            "spec": {"sourceRepos": ["*"], "destinations": [{"server": "*", "namespace": "*"}],
                "clusterResourceWhitelist": [{"group": "*", "kind": "*"}]}}),
        )
        .await;

        let redis = Redis::start(dir);
        let bin = argocd.join("bin");
        let tmp = dir.join("repo-server-tmp");
        std::fs::create_dir_all(&tmp).unwrap();
        let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
        let (repo_port, repo_metrics, controller_metrics) = (free_port(), free_port(), free_port());
        let mut repo = Command::new(bin.join("argocd"));
        repo.env("ARGOCD_BINARY_NAME", "argocd-repo-server")
            .env("PATH", &path)
            .env("TMPDIR", &tmp)
            .env("ARGOCD_GPG_ENABLED", "false")
            .env("ARGOCD_ASK_PASS_SOCK", dir.join("askpass.sock"))
            .args(["--address", "127.0.0.1", "--port", &repo_port.to_string()])
            .args(["--metrics-address", "127.0.0.1", "--metrics-port", &repo_metrics.to_string()])
            .args(["--redis", &redis.addr, "--loglevel", "info"]);
        let mut controller = Command::new(bin.join("argocd"));
        controller
            .env("ARGOCD_BINARY_NAME", "argocd-application-controller")
            .env("ARGOCD_FAKE_IN_CLUSTER", "true")
            .env("KUBECONFIG", crate::support::kubeconfig_path())
            .env("PATH", &path)
            .args(["--namespace", namespace, "--redis", &redis.addr])
            .args(["--repo-server", &format!("127.0.0.1:{repo_port}")])
            .args(["--metrics-port", &controller_metrics.to_string(), "--persist-resource-health"])
            .args(["--app-resync", &resync.to_string(), "--self-heal-timeout-seconds", "1", "--loglevel", "info"]);
        ArgoCd {
            namespace: namespace.to_string(),
            repo_server: Process::spawn("argocd-repo-server", repo, dir.join("argocd-repo-server.log")),
            controller: Process::spawn(
                "argocd-application-controller",
                controller,
                dir.join("argocd-application-controller.log"),
            ),
            _redis: redis,
        }
    }

    pub fn diagnosis(&mut self) -> String {
        format!("{}\n{}", self.repo_server.diagnosis(), self.controller.diagnosis())
    }

    pub fn running(&mut self) -> bool {
        self.repo_server.running() && self.controller.running()
    }
}
