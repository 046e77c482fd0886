//! The CLI, the CRD and the children against the real API server, case by case.
//!
//! Generated Microservices (a valid service with one to three of its fields mutated, seeded,
//! covering every field class whose children the API server checks) are each judged three ways:
//! (a) the API server: a server-side dry-run apply of the Microservice (OpenAPI and CEL of the
//!     CRD, as `kubectl apply` and Argo CD meet them);
//! (b) `flotilla render`'s path: strict parse, `validate`, render;
//! (c) the API server again: a server-side dry-run apply of every child (b) rendered.
//!
//! The test fails on any case that (a) and (b) accept and (c) refuses (a service that would be
//! accepted and never run), on any case (a) refuses and (b) accepts (the CLI must be no laxer than
//! the CRD), and on any refusal by (b) whose message does not name a field the case changed. It
//! prints the counts by field class. `validate_only_refusals_stall_within_seconds` then applies one
//! refused-only-by-`validate` case of each class for real and times the operator's `Stalled`.
//!
//! `FLOTILLA_DIFF_CASES` (default 600) and `FLOTILLA_DIFF_SEED` (default 9) choose the cases.

mod operator;
mod support;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::{Duration, Instant};

use flotilla::api::Microservice;
use flotilla::manifest::{Manifests, load_str};
use flotilla::render::preview;
use futures::StreamExt;
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams};
use kube::core::GroupVersionKind;
use kube::discovery::pinned_kind;
use kube::{Client, ResourceExt};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use support::{TestNamespace, client, wait_for};
use tokio::sync::Mutex;

/// One change to the base spec: its field class, the path under `spec` and the value put there.
#[derive(Clone, Debug)]
struct Mutation {
    class: &'static str,
    path: &'static str,
    value: Value,
    /// A second field set with it, for rules about two fields.
    also: Option<(&'static str, Value)>,
}

fn m(class: &'static str, path: &'static str, value: Value) -> Mutation {
    Mutation { class, path, value, also: None }
}

/// A valid service that uses every field the mutations touch.
fn base() -> Value {
    json!({
        "image": "registry.example/app:1.0",
        "ports": [{"name": "http", "port": 8080}, {"name": "admin", "port": 9090}],
        "env": [{"name": "LOG_LEVEL", "value": "info"}],
        "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"memory": "128Mi"}},
        "healthCheck": {"path": "/healthz"},
        "autoscaling": {"minReplicas": 2, "maxReplicas": 5, "cpu": 70},
        "dependencies": [{"service": "peer"}, {"external": {"cidr": "203.0.113.0/24", "ports": [443]}}],
        "expose": {"ingress": {"host": "app.example.com", "path": "/"}, "allowFrom": [{"namespace": "monitoring"}]},
        "rollout": {"maxSurge": "25%", "maxUnavailable": 0},
        "disruption": {"maxUnavailable": 1},
        "pod": {"labels": {"team": "a"}, "annotations": {"example.com/owner": "team-a"}}
    })
}

/// The field classes the API server checks in a child, each with values it refuses and values it
/// takes (so that both directions of a disagreement can show).
fn catalogue() -> Vec<Mutation> {
    let long = "a".repeat(64);
    let big = "x".repeat(300 * 1024);
    vec![
        // pod.annotations
        m("pod.annotations", "pod.annotations", json!({"bad key": "v"})),
        m("pod.annotations", "pod.annotations", json!({format!("example.com/{long}"): "v"})),
        m("pod.annotations", "pod.annotations", json!({"example.com/big": big})),
        m("pod.annotations", "pod.annotations", json!({"": "v"})),
        m("pod.annotations", "pod.annotations", json!({"example.com/fine": "v", "plain": "w"})),
        // pod.nodeSelector
        m("pod.nodeSelector", "pod.nodeSelector", json!({"bad key": "v"})),
        m("pod.nodeSelector", "pod.nodeSelector", json!({"disk": "not ok!"})),
        m("pod.nodeSelector", "pod.nodeSelector", json!({"disk": long.clone()})),
        m("pod.nodeSelector", "pod.nodeSelector", json!({"kubernetes.io/os": "linux", "disk": ""})),
        // pod.tolerations
        m("pod.tolerations", "pod.tolerations", json!([{"key": "k", "operator": "Maybe", "value": "v"}])),
        m("pod.tolerations", "pod.tolerations", json!([{"key": "k", "effect": "Sometimes"}])),
        m("pod.tolerations", "pod.tolerations", json!([{"key": "k", "operator": "Exists", "value": "v"}])),
        m("pod.tolerations", "pod.tolerations", json!([{"key": "k", "effect": "NoSchedule", "tolerationSeconds": 5}])),
        m("pod.tolerations", "pod.tolerations", json!([{"key": "bad key", "operator": "Exists"}])),
        m(
            "pod.tolerations",
            "pod.tolerations",
            json!([{"operator": "Exists"}, {"key": "k", "value": "v", "effect": "NoExecute", "tolerationSeconds": 30}]),
        ),
        // pod.affinity
        m(
            "pod.affinity",
            "pod.affinity",
            json!({"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [{"labelSelector": {"matchLabels": {"a": "b"}}, "topologyKey": ""}]}}),
        ),
        m(
            "pod.affinity",
            "pod.affinity",
            json!({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": []}}}),
        ),
        m(
            "pod.affinity",
            "pod.affinity",
            json!({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchExpressions": [{"key": "zone", "operator": "Near", "values": ["a"]}]}]}}}),
        ),
        m(
            "pod.affinity",
            "pod.affinity",
            json!({"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 0, "preference": {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}}]}}),
        ),
        m(
            "pod.affinity",
            "pod.affinity",
            json!({"podAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 10, "podAffinityTerm": {"labelSelector": {"matchExpressions": [{"key": "a", "operator": "In", "values": []}]}, "topologyKey": "zone"}}]}}),
        ),
        m(
            "pod.affinity",
            "pod.affinity",
            json!({"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 50, "podAffinityTerm": {"labelSelector": {"matchLabels": {"app.kubernetes.io/instance": "app"}}, "topologyKey": "kubernetes.io/hostname"}}]}}),
        ),
        // pod.topologySpreadConstraints
        m(
            "pod.topologySpreadConstraints",
            "pod.topologySpreadConstraints",
            json!([
            {"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule"},
            {"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule"}]),
        ),
        m(
            "pod.topologySpreadConstraints",
            "pod.topologySpreadConstraints",
            json!([{"maxSkew": 0, "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule"}]),
        ),
        m(
            "pod.topologySpreadConstraints",
            "pod.topologySpreadConstraints",
            json!([{"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "Maybe"}]),
        ),
        m(
            "pod.topologySpreadConstraints",
            "pod.topologySpreadConstraints",
            json!([{"maxSkew": 1, "topologyKey": "", "whenUnsatisfiable": "ScheduleAnyway"}]),
        ),
        m(
            "pod.topologySpreadConstraints",
            "pod.topologySpreadConstraints",
            json!([{"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "ScheduleAnyway", "minDomains": 2}]),
        ),
        m(
            "pod.topologySpreadConstraints",
            "pod.topologySpreadConstraints",
            json!([{"maxSkew": 2, "topologyKey": "kubernetes.io/hostname", "whenUnsatisfiable": "ScheduleAnyway"}]),
        ),
        // pod.spread, pod.securityContext, pod.tmpSizeLimit, healthCheck.livenessPath
        m("pod.spread", "pod.spread", json!("Disabled")),
        m("pod.spread", "pod.spread", json!("Sometimes")),
        m("pod.securityContext", "pod.securityContext", json!({"runAsUser": 0})),
        m("pod.securityContext", "pod.securityContext", json!({"runAsUser": 10001, "runAsGroup": 0, "fsGroup": 10001})),
        m("pod.securityContext", "pod.securityContext", json!({"runAsGroup": -1})),
        m("pod.securityContext", "pod.securityContext", json!({"fsGroup": 4294967296u64})),
        m("pod.tmpSizeLimit", "pod.tmpSizeLimit", json!("64Mi")),
        m("pod.tmpSizeLimit", "pod.tmpSizeLimit", json!("0")),
        m("pod.tmpSizeLimit", "pod.tmpSizeLimit", json!("lots")),
        m("pod.tmpSizeLimit", "pod.tmpSizeLimit", json!("4Gi")),
        m("healthCheck", "healthCheck", json!({"path": "/ready", "livenessPath": "/livez"})),
        m("healthCheck", "healthCheck", json!({"path": "/ready", "livenessPath": "livez"})),
        m("healthCheck", "healthCheck", json!({"path": "/ready", "port": "admin", "livenessPath": "/livez"})),
        // env
        m("env", "env", json!([{"name": "A=B", "value": "v"}])),
        m("env", "env", json!([{"name": "", "value": "v"}])),
        m("env", "env", json!([{"name": "TAB\tNAME", "value": "v"}])),
        m(
            "env",
            "env",
            json!([{"name": "X", "value": "v", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]),
        ),
        m("env", "env", json!([{"name": "X", "value": "1"}, {"name": "X", "value": "2"}])),
        m("env", "env", json!([{"name": "X", "valueFrom": {"fieldRef": {"fieldPath": "spec.bogus"}}}])),
        m("env", "env", json!([{"name": "X", "valueFrom": {"secretKeyRef": {"name": "s", "key": "bad key!"}}}])),
        m(
            "env",
            "env",
            json!([{"name": "my.var-1", "value": "v"}, {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]),
        ),
        m("env", "database", json!({"class": "diff-pg"})),
        Mutation {
            also: Some(("database", json!({"class": "diff-pg"}))),
            ..m("env", "env", json!([{"name": "DATABASE_URL", "value": "x"}]))
        },
        Mutation {
            also: Some(("database", json!({"class": "diff-pg"}))),
            ..m("env", "env", json!([{"name": "DB_HOST", "value": "x"}]))
        },
        // envFrom
        m("envFrom", "envFrom", json!([{"configMapRef": {"name": "Bad_Name"}}])),
        m("envFrom", "envFrom", json!([{"prefix": "A=", "configMapRef": {"name": "cm"}}])),
        m("envFrom", "envFrom", json!([{"configMapRef": {"name": "cm"}, "secretRef": {"name": "s"}}])),
        m("envFrom", "envFrom", json!([{"prefix": "P_"}])),
        m(
            "envFrom",
            "envFrom",
            json!([{"prefix": "P_", "configMapRef": {"name": "cm", "optional": true}}, {"secretRef": {"name": "s"}}]),
        ),
        // resources
        m("resources", "resources", json!({"requests": {"gpu": "1"}})),
        m("resources", "resources", json!({"requests": {"cpu": "2"}, "limits": {"cpu": "1"}})),
        m("resources", "resources", json!({"requests": {"cpu": "-1"}})),
        m("resources", "resources", json!({"requests": {"memory": "1.2.3"}})),
        m("resources", "resources", json!({"limits": {"memory": "12Qi"}})),
        m("resources", "resources", json!({"requests": {"example.com/widget": "1.5"}})),
        m(
            "resources",
            "resources",
            json!({"requests": {"example.com/widget": "2"}, "limits": {"example.com/widget": "2", "cpu": "500m", "ephemeral-storage": "1Gi"}}),
        ),
        // probes
        m("probes", "probes", json!({"readiness": {}})),
        m(
            "probes",
            "probes",
            json!({"readiness": {"httpGet": {"path": "/", "port": 8080}, "tcpSocket": {"port": 8080}}}),
        ),
        m("probes", "probes", json!({"liveness": {"tcpSocket": {"port": 8080}, "successThreshold": 2}})),
        m("probes", "probes", json!({"readiness": {"tcpSocket": {"port": 0}}})),
        m("probes", "probes", json!({"readiness": {"httpGet": {"path": "/", "port": 8080, "scheme": "FTP"}}})),
        m(
            "probes",
            "probes",
            json!({"readiness": {"httpGet": {"path": "/", "port": 8080, "httpHeaders": [{"name": "bad header", "value": "v"}]}}}),
        ),
        m("probes", "probes", json!({"startup": {"exec": {"command": ["true"]}, "periodSeconds": 0}})),
        m("probes", "probes", json!({"readiness": {"tcpSocket": {"port": 8080}, "terminationGracePeriodSeconds": 5}})),
        m("probes", "probes", json!({"liveness": {"tcpSocket": {"port": 8080}, "terminationGracePeriodSeconds": 5}})),
        m(
            "probes",
            "probes",
            json!({"readiness": {"httpGet": {"path": "/ready", "port": "http"}, "successThreshold": 2}, "liveness": {"tcpSocket": {"port": "http"}}}),
        ),
        // autoscaling.metrics
        m("autoscaling.metrics", "autoscaling.metrics", json!([{"type": "Bogus"}])),
        m("autoscaling.metrics", "autoscaling.metrics", json!([{"type": "Resource"}])),
        m(
            "autoscaling.metrics",
            "autoscaling.metrics",
            json!([{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 0}}}]),
        ),
        m(
            "autoscaling.metrics",
            "autoscaling.metrics",
            json!([{"type": "Pods", "pods": {"metric": {"name": ""}, "target": {"type": "AverageValue", "averageValue": "1"}}}]),
        ),
        m(
            "autoscaling.metrics",
            "autoscaling.metrics",
            json!([{"type": "Resource", "resource": {"name": "memory", "target": {"type": "AverageValue", "averageValue": "100Mi"}}}]),
        ),
        // autoscaling.behavior
        m("autoscaling.behavior", "autoscaling.behavior", json!({"scaleDown": {"stabilizationWindowSeconds": 4000}})),
        m(
            "autoscaling.behavior",
            "autoscaling.behavior",
            json!({"scaleUp": {"policies": [{"type": "Pods", "value": 0, "periodSeconds": 60}]}}),
        ),
        m(
            "autoscaling.behavior",
            "autoscaling.behavior",
            json!({"scaleUp": {"policies": [{"type": "Pods", "value": 1, "periodSeconds": 0}]}}),
        ),
        m("autoscaling.behavior", "autoscaling.behavior", json!({"scaleUp": {"selectPolicy": "Bogus"}})),
        m(
            "autoscaling.behavior",
            "autoscaling.behavior",
            json!({"scaleUp": {"policies": [{"type": "Bogus", "value": 1, "periodSeconds": 60}]}}),
        ),
        m(
            "autoscaling.behavior",
            "autoscaling.behavior",
            json!({"scaleDown": {"stabilizationWindowSeconds": 300, "policies": [{"type": "Percent", "value": 50, "periodSeconds": 60}], "selectPolicy": "Min"}}),
        ),
        // expose.allowFrom[].podSelector
        m(
            "expose.allowFrom",
            "expose.allowFrom",
            json!([{"namespace": "edge", "podSelector": {"matchExpressions": [{"key": "a", "operator": "Near", "values": ["x"]}]}}]),
        ),
        m(
            "expose.allowFrom",
            "expose.allowFrom",
            json!([{"namespace": "edge", "podSelector": {"matchExpressions": [{"key": "a", "operator": "In"}]}}]),
        ),
        m(
            "expose.allowFrom",
            "expose.allowFrom",
            json!([{"namespace": "edge", "podSelector": {"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]}}]),
        ),
        m(
            "expose.allowFrom",
            "expose.allowFrom",
            json!([{"namespace": "edge", "podSelector": {"matchLabels": {"bad key": "x"}}}]),
        ),
        m(
            "expose.allowFrom",
            "expose.allowFrom",
            json!([{"namespace": "edge", "podSelector": {"matchLabels": {"role": "not ok!"}}}]),
        ),
        m(
            "expose.allowFrom",
            "expose.allowFrom",
            json!([{"namespace": "edge", "podSelector": {"matchLabels": {"role": "gateway"}, "matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["x"]}]}}]),
        ),
        // expose.ingress
        m("expose.ingress", "expose.ingress.className", json!("Bad_Class")),
        m("expose.ingress", "expose.ingress.host", json!("10.0.0.1")),
        m("expose.ingress", "expose.ingress.host", json!("*.example.com")),
        m("expose.ingress", "expose.ingress.path", json!("//")),
        m("expose.ingress", "expose.ingress.path", json!("/a/..")),
        m("expose.ingress", "expose.ingress.path", json!("/a/./b")),
        m("expose.ingress", "expose.ingress.path", json!("/api/v1")),
        m("expose.ingress", "expose.ingress.tlsSecret", json!("Bad_Secret")),
        m("expose.ingress", "expose.ingress.className", json!("nginx")),
        // ports[].appProtocol
        m("ports.appProtocol", "ports.0.appProtocol", json!("bad proto!")),
        m("ports.appProtocol", "ports.0.appProtocol", json!("example.com/x y")),
        m("ports.appProtocol", "ports.0.appProtocol", json!("http")),
        m("ports.appProtocol", "ports.0.appProtocol", json!("kubernetes.io/h2c")),
        // dependencies[].external.cidr
        m("external.cidr", "dependencies.1.external.cidr", json!("10.0.0.1/24")),
        m("external.cidr", "dependencies.1.external.cidr", json!("10.0.0.0/33")),
        m("external.cidr", "dependencies.1.external.cidr", json!("fe80::1/64")),
        m("external.cidr", "dependencies.1.external.cidr", json!("2001:db8::/32")),
        m("external.cidr", "dependencies.1.external.ports", json!([0])),
        m("external.cidr", "dependencies.1.external.ports", json!([53, 65535])),
        // percentages and their integers
        m("percent", "rollout.maxSurge", json!("+5%")),
        m("percent", "rollout.maxSurge", json!("5")),
        m("percent", "rollout.maxSurge", json!("abc")),
        m("percent", "rollout.maxUnavailable", json!("-5%")),
        m("percent", "disruption.maxUnavailable", json!("150%")),
        m("percent", "rollout.maxSurge", json!("50%")),
        // pod labels and service account
        m("pod.labels", "pod.labels", json!({"bad key": "v"})),
        m("pod.labels", "pod.labels", json!({"team": "not ok!"})),
        m("pod.labels", "pod.labels", json!({"example.com/tier": "web"})),
        m("pod.labels", "pod.serviceAccountName", json!("Bad_Account")),
        // commands, images, ports
        m("container", "image", json!("bad image name ")),
        m("container", "command", json!(["/bin/app", "--flag"])),
        m("container", "ports.1.port", json!(0)),
        m("container", "ports.1.name", json!("Admin_Port")),
        m("container", "ports.1.protocol", json!("UDP")),
        m("container", "healthCheck.port", json!(70000)),
        m("container", "healthCheck.path", json!("no-slash")),
        m("container", "healthCheck.port", json!("admin")),
    ]
}

/// Sets `value` at the dotted `path` under `spec` (numbers index arrays; missing objects are made).
fn set(spec: &mut Value, path: &str, value: Value) {
    let parts: Vec<&str> = path.split('.').collect();
    let mut at = spec;
    for (i, part) in parts.iter().enumerate() {
        let last = i + 1 == parts.len();
        let next = if let Ok(n) = part.parse::<usize>() {
            let arr = at.as_array_mut().expect("an array on the path");
            &mut arr[n]
        } else {
            if !at.is_object() {
                *at = json!({});
            }
            at.as_object_mut().unwrap().entry(part.to_string()).or_insert(Value::Null)
        };
        if last {
            *next = value;
            return;
        }
        at = next;
    }
}

/// The user-facing field path a mutation touches: `pod.annotations`, `ports[0].appProtocol`.
fn field(path: &str) -> String {
    let mut out = String::from("spec");
    for part in path.split('.') {
        if part.chars().all(|c| c.is_ascii_digit()) {
            out.push_str(&format!("[{part}]"));
        } else {
            out.push('.');
            out.push_str(part);
        }
    }
    out
}

#[derive(Clone, Debug)]
struct Case {
    id: usize,
    mutations: Vec<Mutation>,
    spec: Value,
}

fn cases(n: usize, seed: u64) -> Vec<Case> {
    let all = catalogue();
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n)
        .map(|id| {
            // The base alone, then every mutation once, alone; then random combinations of one
            // to three.
            let mutations: Vec<Mutation> = if id == 0 {
                Vec::new()
            } else if id <= all.len() {
                vec![all[id - 1].clone()]
            } else {
                let k = rng.random_range(1..=3);
                (0..k).map(|_| all[rng.random_range(0..all.len())].clone()).collect()
            };
            let mut spec = base();
            for mu in &mutations {
                set(&mut spec, mu.path, mu.value.clone());
                if let Some((path, value)) = &mu.also {
                    set(&mut spec, path, value.clone());
                }
            }
            Case { id, mutations, spec }
        })
        .collect()
}

const CLASS: &str = r#"
apiVersion: flotilla.dev/v1alpha1
kind: DatabaseClass
metadata: {name: diff-pg}
spec: {engine: postgres, provisioner: embedded, embedded: {image: "postgres:17"}}
"#;

/// What the CLI's path says: `Ok(children)` or every problem as `path: message`.
fn cli(namespace: &str, name: &str, spec: &Value) -> Result<Vec<Value>, Vec<(String, String)>> {
    let doc = json!({"apiVersion": "flotilla.dev/v1alpha1", "kind": "Microservice",
        "metadata": {"name": name, "namespace": namespace}, "spec": spec});
    let peer = json!({"apiVersion": "flotilla.dev/v1alpha1", "kind": "Microservice",
        "metadata": {"name": "peer", "namespace": namespace},
        "spec": {"image": "registry.example/peer:1", "ports": [{"name": "http", "port": 8080}]}});
    let mut out = Manifests::default();
    let mut errors = Vec::new();
    let text = format!("{CLASS}\n---\n{peer}\n---\n{doc}\n");
    load_str(&text, Path::new("case.yaml"), None, &mut out, &mut errors);
    if !errors.is_empty() {
        return Err(errors.into_iter().map(|e| (e.error.path, e.error.message)).collect());
    }
    // As the test's operator renders it (tests/operator/mod.rs): the policy's refusals are not
    // what this test compares.
    let mut world = out.world();
    world.settings.policy = operator::open_policy();
    let ms: &Microservice =
        out.microservices.iter().find(|m| m.metadata.name.as_deref() == Some(name)).expect("the case is loaded");
    preview(ms, &world).map_err(|e| e.0.into_iter().map(|f| (f.path, f.message)).collect())
}

/// Resolves and caches the API resource of each kind the children use.
struct Kinds {
    client: Client,
    known: Mutex<HashMap<String, ApiResource>>,
}

impl Kinds {
    async fn api(&self, namespace: &str, value: &Value) -> Api<DynamicObject> {
        let api_version = value["apiVersion"].as_str().expect("apiVersion");
        let kind = value["kind"].as_str().expect("kind");
        let key = format!("{api_version}/{kind}");
        let mut known = self.known.lock().await;
        if !known.contains_key(&key) {
            let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
            let gvk = GroupVersionKind::gvk(group, version, kind);
            let (ar, _) = pinned_kind(&self.client, &gvk).await.unwrap_or_else(|e| panic!("discover {key}: {e}"));
            known.insert(key.clone(), ar);
        }
        Api::namespaced_with(self.client.clone(), namespace, &known[&key])
    }
}

/// A server-side dry-run apply, as `kubectl apply --server-side --dry-run=server` (and, without
/// the dry run, the operator) sends it. Retries only what says nothing about the object.
async fn dry_run(api: &Api<DynamicObject>, value: &Value) -> Result<(), String> {
    let obj: DynamicObject = serde_json::from_value(value.clone()).map_err(|e| format!("not an object: {e}"))?;
    let params = PatchParams::apply("flotilla-diff").force().dry_run();
    let mut last = String::new();
    for _ in 0..5 {
        match api.patch(&obj.name_any(), &params, &Patch::Apply(&obj)).await {
            Ok(_) => return Ok(()),
            // Rate limits and an overloaded server are no verdict.
            Err(kube::Error::Api(s)) if s.code == 429 || s.code == 503 || s.code == 504 => {
                last = s.message;
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(kube::Error::Api(s)) => return Err(format!("{} {}: {}", s.code, s.reason, s.message)),
            Err(e) => {
                last = e.to_string();
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
    panic!("the API server gave no verdict after 5 tries: {last}");
}

#[derive(Debug)]
struct Verdict {
    case: Case,
    api: Result<(), String>,
    cli: Result<usize, Vec<(String, String)>>,
    /// Each child the API server refused: `Kind/name: message`.
    refused_children: Vec<String>,
}

async fn judge(kinds: &Kinds, namespace: &str, case: Case) -> Verdict {
    let name = format!("diff-{}", case.id);
    let body = json!({"apiVersion": "flotilla.dev/v1alpha1", "kind": "Microservice",
        "metadata": {"name": name, "namespace": namespace}, "spec": case.spec});
    let api = dry_run(&kinds.api(namespace, &body).await, &body).await;
    let mut refused_children = Vec::new();
    let cli = match cli(namespace, &name, &case.spec) {
        Ok(children) => {
            for child in &children {
                if let Err(e) = dry_run(&kinds.api(namespace, child).await, child).await {
                    refused_children.push(format!(
                        "{}/{}: {e}",
                        child["kind"].as_str().unwrap_or("?"),
                        child["metadata"]["name"]
                    ));
                }
            }
            Ok(children.len())
        }
        Err(errs) => Err(errs),
    };
    Verdict { case, api, cli, refused_children }
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Judges every case; returns the verdicts in case order.
async fn judge_all(client: &Client, namespace: &str, cases: Vec<Case>) -> Vec<Verdict> {
    let kinds = Kinds { client: client.clone(), known: Mutex::new(HashMap::new()) };
    let kinds = &kinds;
    let mut verdicts: Vec<Verdict> = futures::stream::iter(cases)
        .map(|case| async move { judge(kinds, namespace, case).await })
        .buffer_unordered(8)
        .collect()
        .await;
    verdicts.sort_by_key(|v| v.case.id);
    verdicts
}

fn describe(case: &Case) -> String {
    case.mutations
        .iter()
        .map(|m| format!("{}={}", field(m.path), short(&m.value.to_string())))
        .collect::<Vec<_>>()
        .join(", ")
}

fn short(s: &str) -> String {
    if s.len() > 120 { format!("{}… ({} bytes)", &s[..120], s.len()) } else { s.to_string() }
}

#[tokio::test]
async fn the_cli_the_crd_and_the_children_agree() {
    let Some(client) = client().await else { return };
    operator::install(&client).await;
    let ns = TestNamespace::new(&client, "differential").await;
    let n = env_or("FLOTILLA_DIFF_CASES", 600usize).max(catalogue().len() + 1);
    let seed = env_or("FLOTILLA_DIFF_SEED", 9u64);
    let started = Instant::now();
    let verdicts = judge_all(&client, ns.name(), cases(n, seed)).await;
    let elapsed = started.elapsed();

    // Counts per field class: (both accept, children all accepted), refused at apply, refused by
    // validate only, and the three kinds of failure.
    #[derive(Default)]
    struct Row {
        cases: usize,
        all_accept: usize,
        crd_refuses: usize,
        validate_only: usize,
        child_refused: usize,
        cli_laxer: usize,
        unnamed: usize,
    }
    let mut rows: BTreeMap<&str, Row> = BTreeMap::new();
    let mut failures = Vec::new();
    let mut children = 0;
    for v in &verdicts {
        let mut classes: Vec<&str> = v.case.mutations.iter().map(|m| m.class).collect();
        classes.dedup();
        let mut bump = |f: &dyn Fn(&mut Row)| {
            for c in &classes {
                f(rows.entry(c).or_default());
            }
        };
        bump(&|r| r.cases += 1);
        match (&v.api, &v.cli) {
            (Ok(()), Ok(k)) => {
                children += k;
                if v.refused_children.is_empty() {
                    bump(&|r| r.all_accept += 1);
                } else {
                    bump(&|r| r.child_refused += 1);
                    failures.push(format!(
                        "case {} ({}): accepted by the API server and by render, then a child was refused: {}",
                        v.case.id,
                        describe(&v.case),
                        v.refused_children.join("; ")
                    ));
                }
            }
            (Err(e), Ok(_)) => {
                bump(&|r| r.cli_laxer += 1);
                failures.push(format!(
                    "case {} ({}): refused by the API server, accepted by render: {}",
                    v.case.id,
                    describe(&v.case),
                    short(e)
                ));
            }
            (api, Err(errs)) => {
                if api.is_err() {
                    bump(&|r| r.crd_refuses += 1);
                } else {
                    bump(&|r| r.validate_only += 1);
                }
                // Every refusal by render names a field the case changed.
                let fields: Vec<String> = v.case.mutations.iter().map(|m| field(m.path)).collect();
                let named = errs.iter().any(|(path, _)| {
                    fields.iter().any(|f| path.starts_with(f.as_str()) || f.starts_with(path.as_str()))
                });
                if !named {
                    bump(&|r| r.unnamed += 1);
                    failures.push(format!(
                        "case {} ({}): render refused it without naming a changed field: {errs:?}",
                        v.case.id,
                        describe(&v.case)
                    ));
                }
            }
        }
    }
    println!("{} cases (seed {seed}), {children} children dry-run, in {:.1}s", verdicts.len(), elapsed.as_secs_f64());
    println!(
        "| field class | cases | all accepted | refused at apply (CRD) | refused by validate only (Stalled) | child refused after both accepted | CRD refuses, render accepts | refusal not naming the field |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    let mut total = Row::default();
    for (class, r) in &rows {
        println!(
            "| {class} | {} | {} | {} | {} | {} | {} | {} |",
            r.cases, r.all_accept, r.crd_refuses, r.validate_only, r.child_refused, r.cli_laxer, r.unnamed
        );
    }
    for v in &verdicts {
        total.cases += 1;
        match (&v.api, &v.cli) {
            (Ok(()), Ok(_)) if v.refused_children.is_empty() => total.all_accept += 1,
            (Ok(()), Ok(_)) => total.child_refused += 1,
            (Err(_), Ok(_)) => total.cli_laxer += 1,
            (Err(_), Err(_)) => total.crd_refuses += 1,
            (Ok(()), Err(_)) => total.validate_only += 1,
        }
    }
    println!(
        "| all (by case) | {} | {} | {} | {} | {} | {} | |",
        total.cases, total.all_accept, total.crd_refuses, total.validate_only, total.child_refused, total.cli_laxer
    );
    // A base that some check refuses would prove nothing.
    let base = &verdicts[0];
    assert!(
        base.case.mutations.is_empty() && base.api.is_ok() && base.cli.is_ok() && base.refused_children.is_empty(),
        "the unchanged base is not accepted everywhere: {base:?}"
    );
    assert!(total.all_accept * 20 >= total.cases, "fewer than 5% of the cases were accepted everywhere");
    assert!(failures.is_empty(), "{} disagreements:\n{}", failures.len(), failures.join("\n"));
    ns.cleanup().await;
}

/// One case of each field class that only `validate` refuses, applied for real: each is accepted
/// Whether the API server takes a Microservice with `spec` (a server-side dry run).
async fn accepted_by_api_server(api: &Api<Microservice>, spec: &Value) -> bool {
    let body = json!({"apiVersion": "flotilla.dev/v1alpha1", "kind": "Microservice",
        "metadata": {"name": "dry-run-probe"}, "spec": spec});
    let params = PatchParams::apply("kubectl").force().dry_run();
    api.patch("dry-run-probe", &params, &Patch::Apply(&body)).await.is_ok()
}

/// by `kubectl apply`, and the operator reports it `Stalled` with the field within seconds, and
/// writes no child.
#[tokio::test]
async fn validate_only_refusals_stall_within_seconds() {
    let Some(s) = operator::setup("stall").await else { return };
    let all = catalogue();
    let single: Vec<Case> = cases(all.len() + 1, 0);
    let mut picked: BTreeMap<&str, (String, Case)> = BTreeMap::new();
    for case in single.into_iter().skip(1) {
        let mu = &case.mutations[0];
        if picked.contains_key(mu.class) {
            continue;
        }
        if let Err(errs) = cli(s.ns.name(), "probe", &case.spec) {
            let f = field(mu.path);
            // Only what the API server takes: a case it refuses at `kubectl apply` never reaches
            // the operator, and proves nothing about it.
            if errs.iter().any(|(p, _)| p.starts_with(&f)) && accepted_by_api_server(&s.api, &case.spec).await {
                picked.insert(mu.class, (f, case));
            }
        }
    }
    let mut worst = Duration::ZERO;
    for (class, (f, case)) in &picked {
        let name = format!("stall-{}", case.id);
        let started = Instant::now();
        operator::apply_ms(&s.api, &name, case.spec.clone())
            .await
            .unwrap_or_else(|e| panic!("{name} ({class}): the API server took it in a dry run, then refused it: {e}"));
        let api = s.api.clone();
        wait_for(&format!("{name} ({class}) Stalled naming {f}"), Duration::from_secs(60), || async {
            let ms = api.get(&name).await?;
            let stalled = ms.status.as_ref().and_then(|st| st.conditions.iter().find(|c| c.type_ == "Stalled"));
            anyhow::Ok(
                stalled
                    .is_some_and(|c| c.status == "True" && c.reason == "InvalidSpec" && c.message.contains(f.as_str())),
            )
        })
        .await;
        // From the apply, not from the start of the wait.
        let took = started.elapsed();
        println!("{class}: {f} -> Stalled in {:.2}s", took.as_secs_f64());
        worst = worst.max(took);
        let deployments: Api<k8s_openapi::api::apps::v1::Deployment> = s.ns.api();
        assert!(deployments.get_opt(&name).await.unwrap().is_none(), "{name}: a child was written for an invalid spec");
    }
    assert!(picked.len() >= 10, "only {} field classes have a validate-only case: {:?}", picked.len(), picked.keys());
    println!("{} field classes, slowest Stalled {:.2}s", picked.len(), worst.as_secs_f64());
    assert!(worst < support::ABOUT_A_SECOND, "README: Stalled naming the field in under a second; slowest {worst:?}");
    s.ns.cleanup().await;
}
