//! README claims that need no cluster to show: `kubectl apply -k examples/shop` applies every
//! example, GitOps tracking labels never reach a child, a database without a default class says
//! `NoDefaultClass`, and `flotilla run --log-format json` logs JSON lines.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use flotilla::api::{DatabaseClass, Microservice};
use flotilla::render::database::{Phase, Reason};
use flotilla::render::{Input, World, preview, render};
use serde_json::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A fresh, empty directory of this test process.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("flotilla-claims-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

// ---------------------------------------------------------------------------------------------
// `kubectl apply -k examples/shop`

/// What keeps `kubectl apply -k dir` from applying exactly the YAML files of `dir`: a file the
/// kustomization does not list, a listed resource that does not exist, a resource listed twice.
fn kustomization_problems(dir: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(dir.join("kustomization.yaml")).expect("kustomization.yaml exists");
    let k: Value = serde_yaml_ng::from_str(&text).expect("kustomization.yaml is YAML");
    let mut problems = Vec::new();
    if k["kind"] != "Kustomization" {
        problems.push(format!("kind is {}, not Kustomization", k["kind"]));
    }
    let Some(resources) = k["resources"].as_array() else {
        problems.push("no resources list".into());
        return problems;
    };
    let mut listed = BTreeSet::new();
    for r in resources {
        let Some(r) = r.as_str() else {
            problems.push(format!("resource {r} is not a string"));
            continue;
        };
        if !listed.insert(r.to_string()) {
            problems.push(format!("{r} is listed twice"));
        }
        if !dir.join(r).is_file() {
            problems.push(format!("{r} is listed but does not exist"));
        }
    }
    let mut files: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| (n.ends_with(".yaml") || n.ends_with(".yml")) && n != "kustomization.yaml")
        .collect();
    files.sort();
    for f in files {
        if !listed.contains(&f) {
            problems.push(format!("{f} is not in kustomization.yaml resources"));
        }
    }
    problems
}

#[test]
fn kubectl_apply_k_examples_shop_applies_every_example_file() {
    let dir = root().join("examples/shop");
    let problems = kustomization_problems(&dir);
    assert!(problems.is_empty(), "examples/shop/kustomization.yaml: {problems:#?}");
    // It is the whole shop: the namespace, the default class and all five services.
    let text = std::fs::read_to_string(dir.join("kustomization.yaml")).unwrap();
    let k: Value = serde_yaml_ng::from_str(&text).unwrap();
    let m = flotilla::manifest::load(
        &k["resources"].as_array().unwrap().iter().map(|r| dir.join(r.as_str().unwrap())).collect::<Vec<_>>(),
        None,
    )
    .unwrap_or_else(|e| panic!("the listed resources load: {e:?}"));
    let mut names: Vec<&str> = m.microservices.iter().filter_map(|ms| ms.metadata.name.as_deref()).collect();
    names.sort();
    assert_eq!(names, ["catalog", "frontend", "notifications", "orders", "payments"]);
    assert_eq!(m.database_classes.len(), 1);

    // The check sees a file left out, a resource that is gone and one listed twice.
    let tmp = scratch("kustomization");
    for f in ["a.yaml", "b.yml", "c.yaml"] {
        std::fs::write(tmp.join(f), "apiVersion: v1\nkind: Namespace\nmetadata: {name: x}\n").unwrap();
    }
    std::fs::write(
        tmp.join("kustomization.yaml"),
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources: [a.yaml, gone.yaml, a.yaml, c.yaml]\n",
    )
    .unwrap();
    let found = kustomization_problems(&tmp);
    std::fs::remove_dir_all(&tmp).unwrap();
    assert_eq!(
        found,
        [
            "gone.yaml is listed but does not exist",
            "a.yaml is listed twice",
            "b.yml is not in kustomization.yaml resources",
        ],
    );
}

// ---------------------------------------------------------------------------------------------
// GitOps tracking labels

const TRACKING_LABELS: [&str; 4] = [
    "app.kubernetes.io/instance",
    "argocd.argoproj.io/instance",
    "kustomize.toolkit.fluxcd.io/name",
    "kustomize.toolkit.fluxcd.io/namespace",
];

/// The example's default class (postgres, embedded), as `flotilla render` reads it.
fn shop_class() -> DatabaseClass {
    let m = flotilla::manifest::load(&[root().join("examples/shop/database-class.yaml")], None)
        .unwrap_or_else(|e| panic!("database-class.yaml loads: {e:?}"));
    let [class] = <[DatabaseClass; 1]>::try_from(m.database_classes).expect("one DatabaseClass");
    class
}

/// Every `labels` map in `v` (object metadata, pod templates, volume claim templates), by JSON
/// path, with the tracking labels it carries.
fn tracking_labels_in(v: &Value, path: &str, out: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            for (k, child) in map {
                let here = format!("{path}.{k}");
                if k == "labels"
                    && let Some(labels) = child.as_object()
                {
                    for l in labels.keys().filter(|l| TRACKING_LABELS.contains(&l.as_str())) {
                        out.push(format!("{here}[{l}]"));
                    }
                }
                tracking_labels_in(child, &here, out);
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                tracking_labels_in(child, &format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

#[test]
fn gitops_tracking_labels_on_the_microservice_are_never_copied_onto_children() {
    let ms: Microservice = serde_yaml_ng::from_str(
        "apiVersion: flotilla.dev/v1alpha1
kind: Microservice
metadata:
  name: orders
  namespace: shop
  labels:
    app.kubernetes.io/instance: shop
    argocd.argoproj.io/instance: shop
    kustomize.toolkit.fluxcd.io/name: shop
    kustomize.toolkit.fluxcd.io/namespace: flux-system
    team: checkout
spec:
  image: ghcr.io/acme/orders:1.4.2
  autoscaling: {minReplicas: 2, maxReplicas: 5, cpu: 70}
  expose: {ingress: {host: orders.example.com}}
  database: {}
",
    )
    .unwrap();
    // The walk sees the labels where they are.
    let mut own = Vec::new();
    tracking_labels_in(&serde_json::to_value(&ms).unwrap(), "Microservice", &mut own);
    assert_eq!(own.len(), TRACKING_LABELS.len(), "{own:?}");

    let world = World {
        microservices: vec![Arc::new(ms.clone())].into(),
        database_classes: vec![Arc::new(shop_class())],
        ..World::default()
    };
    let children = preview(&ms, &world).unwrap_or_else(|e| panic!("{e}"));
    let kinds: BTreeSet<&str> = children.iter().filter_map(|c| c["kind"].as_str()).collect();
    for kind in [
        "ServiceAccount",
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
        "NetworkPolicy",
        "PodDisruptionBudget",
        "Ingress",
        "StatefulSet",
        "Secret",
    ] {
        assert!(kinds.contains(kind), "no {kind} among {kinds:?}");
    }
    // Both Secrets (credentials and binding) are among them.
    assert_eq!(children.iter().filter(|c| c["kind"] == "Secret").count(), 2, "{kinds:?}");
    let templates = children.iter().filter(|c| c.pointer("/spec/template/metadata/labels").is_some()).count();
    assert_eq!(templates, 2, "the Deployment's and the StatefulSet's pod templates carry labels");

    let mut found = Vec::new();
    for c in &children {
        let name = format!("{} {}", c["kind"].as_str().unwrap_or("?"), c["metadata"]["name"].as_str().unwrap_or("?"));
        tracking_labels_in(c, &name, &mut found);
    }
    assert!(found.is_empty(), "tracking labels copied onto children: {found:#?}");
}

// ---------------------------------------------------------------------------------------------
// NoDefaultClass

fn class(name: &str, default: Option<&str>) -> Arc<DatabaseClass> {
    let mut class = shop_class();
    class.metadata.name = Some(name.into());
    class.metadata.annotations =
        default.map(|d| [("flotilla.dev/is-default-class".to_string(), d.to_string())].into_iter().collect());
    Arc::new(class)
}

#[test]
fn a_database_with_no_default_class_reports_no_default_class() {
    let ms: Microservice = serde_yaml_ng::from_str(
        "apiVersion: flotilla.dev/v1alpha1\nkind: Microservice\nmetadata: {name: orders, namespace: shop}\nspec: {image: orders:1, database: {}}\n",
    )
    .unwrap();
    // Classes exist, but none says it is the default ("false" is not "true").
    let world = World {
        microservices: vec![Arc::new(ms.clone())].into(),
        database_classes: vec![class("postgres", None), class("mysql", Some("false"))],
        ..World::default()
    };
    let input = Input::new(&ms, &world);
    let (reason, message) = match input.class {
        Some(Err(problem)) => problem,
        Some(Ok(c)) => panic!("resolved to class {:?}", c.metadata.name),
        None => panic!("no database seen"),
    };
    assert_eq!(reason.as_str(), "NoDefaultClass");
    assert_eq!(reason, Reason::NoDefaultClass);
    // DatabaseReady=False with the service stalled: the phase that stalls it.
    assert_eq!(reason.phase(), Phase::Failed);
    // The message names both ways out: set the class, or mark one class default.
    assert!(message.contains("spec.database.class"), "{message}");
    assert!(message.contains("flotilla.dev/is-default-class: \"true\""), "{message}");

    // The service itself is valid and gets its own children; only its database waits.
    let children = render(&ms, &world).unwrap_or_else(|e| panic!("{e}"));
    match &children.database {
        Some(Err((r, m))) => assert_eq!((r.as_str(), m), ("NoDefaultClass", &message)),
        other => panic!("database: {other:?}"),
    }
    assert!(preview(&ms, &world).unwrap().iter().all(|c| c["kind"] != "StatefulSet" && c["kind"] != "Secret"));

    // Marking one class default resolves it.
    let fixed = World { database_classes: vec![class("postgres", None), class("mysql", Some("true"))], ..world };
    match Input::new(&ms, &fixed).class {
        Some(Ok(c)) => assert_eq!(c.metadata.name.as_deref(), Some("mysql")),
        Some(Err(p)) => panic!("{p:?}"),
        None => panic!("no database seen"),
    }
}

// ---------------------------------------------------------------------------------------------
// `flotilla run --log-format json`

#[test]
fn run_with_log_format_json_logs_json_lines() {
    let tmp = scratch("run-json");
    let kubeconfig = tmp.join("kubeconfig");
    // Nothing listens on port 1: the operator can only log that the API does not answer.
    std::fs::write(
        &kubeconfig,
        "apiVersion: v1
kind: Config
clusters:
- name: nowhere
  cluster: {server: \"https://127.0.0.1:1\", insecure-skip-tls-verify: true}
users:
- name: nobody
  user: {token: not-a-token}
contexts:
- name: nowhere
  context: {cluster: nowhere, user: nobody, namespace: default}
current-context: nowhere
",
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_flotilla"))
        .args(["run", "--log-format=json", "--metrics-addr=127.0.0.1:0"])
        .env("KUBECONFIG", &kubeconfig)
        .env_remove("RUST_LOG")
        .env_remove("FLOTILLA_LOG_FORMAT")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env_remove("KUBERNETES_SERVICE_PORT")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("flotilla runs");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut lines: Vec<String> = Vec::new();
    // Until it logs that the API server does not answer, or the deadline, or the end of the output.
    let about_the_api = |l: &str| l.contains("does not answer") || l.contains("cannot reach");
    while !lines.iter().any(|l| about_the_api(l)) {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(Ok(line)) if line.trim().is_empty() => {}
            Ok(Ok(line)) => lines.push(line),
            Ok(Err(e)) => panic!("reading stderr: {e}"),
            Err(_) => break,
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&tmp);

    assert!(!lines.is_empty(), "nothing logged within 10 s");
    for line in &lines {
        let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
        let o = v.as_object().unwrap_or_else(|| panic!("not a JSON object: {line}"));
        for key in ["timestamp", "level"] {
            assert!(o.contains_key(key), "no {key:?} in {line}");
        }
        // Events are flattened: the message is a top-level field.
        assert!(o.get("message").is_some_and(Value::is_string), "no message in {line}");
        assert!(["TRACE", "DEBUG", "INFO", "WARN", "ERROR"].contains(&o["level"].as_str().unwrap_or("")), "{line}");
    }
    // What it logged is that the API server does not answer.
    assert!(lines.iter().any(|l| about_the_api(l)), "{lines:#?}");
}
