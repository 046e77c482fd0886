//! kube-score, the linter many platform teams run over manifests, judges what Flotilla renders:
//! every example under `examples/` and seeded generated worlds (services with and without ports,
//! health checks, replicas, autoscaling, resources, identities, scheduling settings, databases
//! of every embedded engine and a claim). Any finding fails the test unless
//! `tests/kube-score/allowed.tsv` allows it, with its reason, under a condition on the
//! Microservice it came from; an entry that nothing needs any more fails it too.
//!
//! kube-score is built from its Go module (the version `tests/kube-score/go.mod` pins) by
//! `tests/kube-score/build.sh`, once, into the cache outside the work tree.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use flotilla::api::{DatabaseClass, Microservice};
use flotilla::manifest::{Manifests, load, load_str};
use flotilla::render::{preview, to_yaml};
use serde_json::{Value, json};

#[path = "support/rng.rs"]
mod rng;
#[path = "support/tool.rs"]
mod tool;

use rng::Rng;

fn kube_score() -> &'static Path {
    static BIN: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    match BIN.get_or_init(|| tool::build("tests/kube-score/build.sh", "kube-score")) {
        Ok(p) => p,
        Err(e) => panic!("{e}"),
    }
}

/// One allowed finding, from `tests/kube-score/allowed.tsv`.
#[derive(Debug)]
struct Allowed {
    check: String,
    kind: String,
    summary: String,
    when: When,
    line: usize,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum When {
    Always,
    NoCpuLimitGiven,
    NoUserGiven,
    NoGroupGiven,
    SingleReplica,
    NoPortsDeclared,
    NoLivenessGiven,
}

fn allow_list() -> Vec<Allowed> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/kube-score/allowed.tsv");
    let text = std::fs::read_to_string(&path).expect("tests/kube-score/allowed.tsv");
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let cols: Vec<&str> = line.split('\t').collect();
        assert_eq!(cols.len(), 5, "allowed.tsv:{}: five tab-separated columns expected", i + 1);
        assert!(cols[4].len() > 20, "allowed.tsv:{}: say why the finding is allowed", i + 1);
        let when = match cols[3] {
            "always" => When::Always,
            "no-cpu-limit-given" => When::NoCpuLimitGiven,
            "no-user-given" => When::NoUserGiven,
            "no-group-given" => When::NoGroupGiven,
            "single-replica" => When::SingleReplica,
            "no-ports-declared" => When::NoPortsDeclared,
            "no-liveness-given" => When::NoLivenessGiven,
            other => panic!("allowed.tsv:{}: unknown condition {other:?}", i + 1),
        };
        out.push(Allowed { check: cols[0].into(), kind: cols[1].into(), summary: cols[2].into(), when, line: i + 1 });
    }
    out
}

/// Whether `when` holds for the object `kind`/`name` rendered from `ms` in `world`.
fn holds(when: When, kind: &str, ms: &Microservice, classes: &[DatabaseClass]) -> bool {
    let spec = &ms.spec;
    let identity = spec.pod.as_ref().and_then(|p| p.security_context.as_ref());
    match when {
        When::Always => true,
        When::NoCpuLimitGiven => {
            let given = if kind == "StatefulSet" {
                let db = spec.database.as_ref();
                let class = classes.iter().find(|c| match db.and_then(|d| d.class.as_deref()) {
                    Some(name) => c.metadata.name.as_deref() == Some(name),
                    None => {
                        c.metadata.annotations.as_ref().is_some_and(|a| a.contains_key("flotilla.dev/is-default-class"))
                    }
                });
                class.and_then(|c| c.spec.embedded.as_ref()).and_then(|e| e.resources.clone())
            } else {
                spec.resources.clone()
            };
            !given.and_then(|r| r.limits).is_some_and(|l| l.contains_key("cpu"))
        }
        When::NoUserGiven => identity.and_then(|i| i.run_as_user).is_none(),
        When::NoGroupGiven => identity.and_then(|i| i.run_as_group).is_none(),
        When::SingleReplica => spec.autoscaling.is_none() && spec.replicas.unwrap_or(1) <= 1,
        When::NoPortsDeclared => {
            spec.ports.is_none()
                && spec.health_check.is_none()
                && spec.probes.as_ref().and_then(|p| p.readiness.as_ref()).is_none()
        }
        When::NoLivenessGiven => {
            spec.health_check.is_none() && spec.probes.as_ref().and_then(|p| p.liveness.as_ref()).is_none()
        }
    }
}

/// A world to render: Microservices and classes, as `flotilla render` would read them.
struct Input {
    name: String,
    manifests: Manifests,
}

/// Renders `input`, runs kube-score over it, and returns each finding not allowed (as a line)
/// and marks the allow-list entries used.
fn judge(input: &Input, allowed: &[Allowed], used: &mut [usize]) -> Vec<String> {
    let m = &input.manifests;
    let world = m.world();
    let mut values = Vec::new();
    for ms in &m.microservices {
        values.extend(preview(ms, &world).unwrap_or_else(|e| panic!("{}: {e}", input.name)));
    }
    let yaml = to_yaml(&values).unwrap();

    let mut child = Command::new(kube_score())
        .args(["score", "--kubernetes-version", "v1.36", "--output-format", "json", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start kube-score");
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || stdin.write_all(yaml.as_bytes()));
    let out = child.wait_with_output().expect("run kube-score");
    writer.join().unwrap().expect("write to kube-score");
    // kube-score exits 1 when it finds something; only its JSON says what.
    let report: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!("{}: kube-score printed no JSON report ({e}): {}", input.name, String::from_utf8_lossy(&out.stderr))
    });
    let kinds_scored: usize = report.len();
    assert!(kinds_scored >= m.microservices.len(), "{}: kube-score scored {kinds_scored} objects", input.name);

    let mut bad = Vec::new();
    for object in &report {
        let kind = object["type_meta"]["kind"].as_str().unwrap_or_default();
        let name = object["object_meta"]["name"].as_str().unwrap_or_default();
        let namespace = object["object_meta"]["namespace"].as_str().unwrap_or_default();
        // The Microservice an object comes from: its own name, or `<name>-db` for a database.
        let owner = m.microservices.iter().find(|ms| {
            ms.metadata.namespace.as_deref() == Some(namespace)
                && (ms.metadata.name.as_deref() == Some(name)
                    || (ms.spec.database.is_some()
                        && Some(name) == ms.metadata.name.as_deref().map(|n| format!("{n}-db")).as_deref()))
        });
        for check in object["checks"].as_array().into_iter().flatten() {
            if check["skipped"] == json!(true) || check["grade"].as_i64().unwrap_or(0) >= 10 {
                continue;
            }
            let id = check["check"]["id"].as_str().unwrap_or_default();
            let comments: Vec<&Value> = check["comments"].as_array().into_iter().flatten().collect();
            let summaries: Vec<&str> = if comments.is_empty() {
                vec![""]
            } else {
                comments.iter().map(|c| c["summary"].as_str().unwrap_or_default()).collect()
            };
            for summary in summaries {
                let hit = allowed.iter().position(|a| {
                    a.check == id
                        && (a.kind == "*" || a.kind == kind)
                        && a.summary == summary
                        && owner.is_some_and(|ms| holds(a.when, kind, ms, &m.database_classes))
                });
                match hit {
                    Some(i) => used[i] += 1,
                    None => bad.push(format!("{}: {kind} {namespace}/{name}: {id}: {summary}", input.name)),
                }
            }
        }
    }
    bad
}

fn example_worlds() -> Vec<Input> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&root)
        .expect("examples/")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    dirs.into_iter()
        .map(|dir| Input {
            name: format!("examples/{}", dir.file_name().unwrap().to_string_lossy()),
            manifests: load(std::slice::from_ref(&dir), None).unwrap_or_else(|e| panic!("{}: {e:?}", dir.display())),
        })
        .collect()
}

const CLASSES: &str = include_str!("fixtures/database-classes.yaml");

/// A generated world: one or two namespaces of services that vary every field that shapes a
/// pod (and none in a way a linter would blame on the service team, such as a CPU limit of 0).
fn generated_world(seed: u64) -> Input {
    let mut rng = Rng(seed);
    let names = ["api", "web", "auth", "billing", "search", "cart", "ledger", "mailer"];
    let mut docs = vec![CLASSES.to_string()];
    for ns in ["alpha", "beta"].iter().take(1 + rng.below(2)) {
        let mut placed: Vec<&str> = Vec::new();
        for name in names.iter().take(2 + rng.below(5)) {
            let mut spec = json!({"image": format!("registry.example/{name}:1.{seed}")});
            let mut tcp_ports = vec!["http"];
            if rng.chance(70) {
                let mut ports = vec![json!({"name": "http", "port": 8080})];
                if rng.chance(40) {
                    ports.push(json!({"name": "grpc", "port": 9000, "appProtocol": "grpc"}));
                    tcp_ports.push("grpc");
                }
                if rng.chance(30) {
                    ports.push(json!({"name": "stats", "port": 8125, "protocol": "UDP"}));
                }
                if rng.chance(15) {
                    // A UDP port first: the default readiness check takes the first TCP port.
                    ports.rotate_right(1);
                    if ports[0]["protocol"] != "UDP" {
                        ports.rotate_left(1);
                    }
                }
                spec["ports"] = json!(ports);
            }
            if rng.chance(50) {
                let mut hc = json!({"path": "/healthz"});
                if rng.chance(40) {
                    hc["livenessPath"] = json!("/livez");
                }
                if rng.chance(30) {
                    hc["port"] = json!(rng.pick(&tcp_ports));
                } else if spec["ports"][0]["protocol"] == "UDP" {
                    hc["port"] = json!("http");
                }
                spec["healthCheck"] = hc;
            } else if rng.chance(15) {
                spec["probes"] = json!({
                    "readiness": {"httpGet": {"path": "/ready", "port": 8080}},
                    "liveness": {"tcpSocket": {"port": 8080}, "periodSeconds": 20},
                });
            }
            match rng.below(5) {
                0 => {}
                1 => spec["replicas"] = json!(1),
                2 => spec["replicas"] = json!(2 + rng.below(3)),
                _ => spec["autoscaling"] = json!({"minReplicas": 2, "maxReplicas": 4 + rng.below(6), "cpu": 70}),
            }
            match rng.below(6) {
                0 => {
                    spec["resources"] =
                        json!({"requests": {"cpu": "250m", "memory": "256Mi"}, "limits": {"memory": "512Mi"}})
                }
                1 => {
                    spec["resources"] =
                        json!({"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"cpu": "2", "memory": "1Gi"}})
                }
                2 => {
                    spec["resources"] = json!({
                        "requests": {"cpu": "100m", "memory": "128Mi", "ephemeral-storage": "1Gi"},
                        "limits": {"memory": "256Mi", "ephemeral-storage": "4Gi"},
                    })
                }
                3 => {
                    // An ephemeral-storage limit below the default /tmp size.
                    spec["resources"] = json!({
                        "requests": {"cpu": "100m", "memory": "128Mi", "ephemeral-storage": "64Mi"},
                        "limits": {"memory": "256Mi", "ephemeral-storage": "256Mi"},
                    })
                }
                _ => {}
            }
            let mut pod = serde_json::Map::new();
            match rng.below(4) {
                0 => pod.insert(
                    "securityContext".into(),
                    json!({"runAsUser": 10001, "runAsGroup": 10001, "fsGroup": 10001}),
                ),
                1 => pod.insert("securityContext".into(), json!({"runAsUser": 65532})),
                _ => None,
            };
            if rng.chance(20) {
                pod.insert("tmpSizeLimit".into(), json!("128Mi"));
            }
            if rng.chance(20) {
                pod.insert(
                    "affinity".into(),
                    json!({"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
                        {"weight": 50, "preference": {"matchExpressions": [{"key": "disk", "operator": "In", "values": ["ssd"]}]}}
                    ]}}),
                );
            }
            if rng.chance(15) {
                pod.insert(
                    "topologySpreadConstraints".into(),
                    json!([{"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "DoNotSchedule",
                            "labelSelector": {"matchLabels": {"flotilla.dev/microservice": name}}}]),
                );
            }
            if !pod.is_empty() {
                spec["pod"] = Value::Object(pod);
            }
            if rng.chance(45) {
                let class = *rng.pick(&[None, Some("mysql"), Some("redis"), Some("cnpg")]);
                spec["database"] = match class {
                    Some(c) => json!({"class": c, "storage": "2Gi"}),
                    None => json!({}),
                };
            }
            if !placed.is_empty() && rng.chance(60) {
                spec["dependencies"] = json!([{"service": rng.pick(&placed)}]);
            }
            if rng.chance(30) {
                // Strings a YAML 1.1 reader (kube-score, kubectl) takes for booleans and numbers
                // unless they are quoted.
                let value = rng.pick(&["on", "yes", "off", "y", "N", "1_000", "0777", "2024-01-01", "12:30", "0x1f"]);
                spec["env"] = json!([{"name": "FEATURE", "value": value}]);
            }
            if rng.chance(20) {
                spec["expose"] = json!({"ingress": {"host": format!("{name}.{ns}.example.com")}});
            }
            placed.push(name);
            let doc = json!({
                "apiVersion": "flotilla.dev/v1alpha1",
                "kind": "Microservice",
                "metadata": {"name": name, "namespace": ns},
                "spec": spec,
            });
            docs.push(serde_yaml_ng::to_string(&doc).unwrap());
        }
    }
    let text = docs.join("\n---\n");
    let mut manifests = Manifests::default();
    let mut errors = Vec::new();
    load_str(&text, Path::new("generated.yaml"), None, &mut manifests, &mut errors);
    assert!(errors.is_empty(), "generated world {seed} is invalid: {errors:?}\n{text}");
    Input { name: format!("generated world {seed}"), manifests }
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

#[test]
fn kube_score_finds_nothing_but_what_is_allowed() {
    let allowed = allow_list();
    let mut used = vec![0; allowed.len()];
    let worlds = env_or("FLOTILLA_KUBE_SCORE_WORLDS", 60u64);
    let mut inputs = example_worlds();
    assert!(!inputs.is_empty(), "no examples");
    inputs.extend((1..=worlds).map(generated_world));

    let mut bad = Vec::new();
    let mut services = 0;
    for input in &inputs {
        services += input.manifests.microservices.len();
        bad.extend(judge(input, &allowed, &mut used));
    }
    let mut per_entry = BTreeMap::new();
    for (a, n) in allowed.iter().zip(&used) {
        per_entry.insert(format!("allowed.tsv:{} {} ({})", a.line, a.check, a.summary), *n);
    }
    println!("{} worlds, {services} services; allowed findings per entry: {per_entry:#?}", inputs.len());
    assert!(bad.is_empty(), "{} findings kube-score reports that are not allowed:\n{}", bad.len(), bad.join("\n"));
    let stale: Vec<String> = per_entry.iter().filter(|(_, n)| **n == 0).map(|(k, _)| k.clone()).collect();
    assert!(stale.is_empty(), "allow-list entries no rendered object needs (remove them): {stale:?}");
}

/// The defaults kube-score does not see, rendered: spreading, /tmp size, probes.
#[test]
fn defaults_a_linter_does_not_check_are_rendered() {
    let input = generated_world(7);
    let m = &input.manifests;
    let world = m.world();
    for ms in &m.microservices {
        let values = preview(ms, &world).unwrap();
        let d = values.iter().find(|v| v["kind"] == "Deployment").unwrap();
        let pod = &d["spec"]["template"]["spec"];
        let tmp = pod["volumes"].as_array().unwrap().iter().find(|v| v["name"] == "tmp").unwrap();
        assert!(
            tmp["emptyDir"]["sizeLimit"].is_string(),
            "{}: /tmp has no sizeLimit",
            ms.metadata.name.as_deref().unwrap()
        );
        let c = &pod["containers"][0];
        assert!(c["resources"]["limits"]["ephemeral-storage"].is_string(), "no ephemeral-storage limit: {c}");
        if ms.spec.pod.as_ref().and_then(|p| p.topology_spread_constraints.as_ref()).is_none() {
            assert_eq!(pod["topologySpreadConstraints"][0]["topologyKey"], "kubernetes.io/hostname", "{pod}");
            assert_eq!(pod["topologySpreadConstraints"][0]["whenUnsatisfiable"], "ScheduleAnyway");
        }
        let zone = &pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"][0];
        assert_eq!(zone["podAffinityTerm"]["topologyKey"], "topology.kubernetes.io/zone", "{pod}");
        if ms.spec.ports.is_some() && ms.spec.health_check.is_none() && ms.spec.probes.is_none() {
            assert!(c["readinessProbe"]["tcpSocket"].is_object(), "declared ports, no TCP readiness: {c}");
        }
        if ms.spec.health_check.is_some() {
            assert_ne!(c["readinessProbe"], c["livenessProbe"], "readiness and liveness are the same: {c}");
        }
    }
}
