//! Installing Flotilla as platform teams install operators: the Helm chart in `charts/flotilla`
//! renders what `kubectl kustomize config/default` does (and, with `watchNamespaces`, grants the
//! operator's rights in those namespaces only), `helm install`, `upgrade` and `uninstall` do what
//! they say on the local cluster, and so does `kubectl apply --server-side -k config/default`.
//! With `metrics.serviceMonitor.enabled` and `metrics.prometheusRule.enabled` it also renders what
//! `kubectl kustomize config/prometheus` does, which the Prometheus Operator's CRDs take.
//!
//! Helm is built from its Go module (the version `tests/install/helm/go.mod` pins) by
//! `tests/install/helm.sh`, once, into the cache outside the work tree; kubectl is the local
//! cluster's (`target/cluster/bin`), so the rendering tests run, and skip, with the cluster tests.

mod operator;
mod support;
#[path = "support/tool.rs"]
mod tool;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, ObjectMeta, PostParams};
use kube::core::GroupVersionKind;
use kube::discovery::pinned_kind;
use kube::{Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use support::{Cleanup, TestNamespace, wait_for};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const CHART: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/charts/flotilla");
const CRDS: [&str; 2] = ["microservices.flotilla.dev", "databaseclasses.flotilla.dev"];
/// The labels Helm charts put on every object (`helm create`'s set). A rendered object may carry
/// these beyond kustomize's labels, and nothing else; one kustomize has must be equal.
const HELM_LABELS: [&str; 5] = [
    "helm.sh/chart",
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/version",
    "app.kubernetes.io/managed-by",
];
/// The label by which the chart's selectors also name the release, so that two releases in one
/// namespace select their own pods; kustomize's select the app alone.
const INSTANCE: &str = "app.kubernetes.io/instance";
/// The values that turn on the chart's monitoring objects (config/prometheus's).
const MONITORING: [&str; 4] =
    ["--set", "metrics.serviceMonitor.enabled=true", "--set", "metrics.prometheusRule.enabled=true"];
/// The kinds of `kubectl kustomize config/prometheus`, sorted.
const MONITORING_KINDS: [&str; 3] = ["PrometheusRule", "Service", "ServiceMonitor"];
/// Stands for the policy ConfigMap's name, which kustomize suffixes with a hash and the chart
/// does not.
const POLICY: &str = "<policy ConfigMap>";
/// A rollout on a busy 2-core machine with the cluster's controllers and kwok's pods.
const ROLLOUT: Duration = Duration::from_secs(180);

fn helm() -> &'static Path {
    static BIN: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    match BIN.get_or_init(|| tool::build("tests/install/helm.sh", "Helm")) {
        Ok(p) => p,
        Err(e) => panic!("{e}"),
    }
}

fn kubectl() -> PathBuf {
    PathBuf::from(ROOT).join("target/cluster/bin/kubectl")
}

/// `program` with the test cluster's kubeconfig and a Helm home of the tests' own (no user's
/// repositories or plugins).
fn command(program: &Path, args: &[&str]) -> tokio::process::Command {
    let home = PathBuf::from(ROOT).join("target/test-logs/helm-home");
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .current_dir(ROOT)
        .env("KUBECONFIG", support::kubeconfig_path())
        .env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_DATA_HOME", home.join("data"))
        .stdin(std::process::Stdio::null());
    cmd
}

/// Runs [`command`]: its stdout, or a panic with its stderr.
async fn run(program: &Path, args: &[&str]) -> String {
    let out = command(program, args).output().await.unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{} {} failed ({}):\n{stderr}", program.display(), args.join(" "), out.status);
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

/// Every object of a multi-document YAML stream.
fn objects(yaml: &str) -> Vec<Value> {
    use serde::Deserialize;
    serde_yaml_ng::Deserializer::from_str(yaml)
        .map(|doc| Value::deserialize(doc).expect("valid YAML"))
        .filter(|v| !v.is_null())
        .collect()
}

/// `kubectl kustomize config/default`.
async fn kustomize() -> Vec<Value> {
    objects(&run(&kubectl(), &["kustomize", "config/default"]).await)
}

/// `kubectl kustomize config/prometheus`.
async fn kustomize_prometheus() -> Vec<Value> {
    objects(&run(&kubectl(), &["kustomize", "config/prometheus"]).await)
}

/// `helm template flotilla charts/flotilla -n flotilla-system --include-crds` with `args`.
async fn helm_template(args: &[&str]) -> Vec<Value> {
    render("flotilla", "flotilla-system", args).await
}

/// `helm template <release> charts/flotilla -n <namespace> --include-crds` with `args`.
async fn render(release: &str, namespace: &str, args: &[&str]) -> Vec<Value> {
    let mut all = vec!["template", release, CHART, "-n", namespace, "--include-crds"];
    all.extend_from_slice(args);
    objects(&run(helm(), &all).await)
}

fn str_at<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or_default()
}

/// `kind/namespace/name`, the key objects are compared by.
fn key(obj: &Value) -> String {
    format!("{}/{}/{}", str_at(obj, "/kind"), str_at(obj, "/metadata/namespace"), str_at(obj, "/metadata/name"))
}

fn only<'a>(objs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    let found: Vec<&Value> =
        objs.iter().filter(|o| str_at(o, "/kind") == kind && str_at(o, "/metadata/name") == name).collect();
    assert_eq!(found.len(), 1, "one {kind} {name} in {:?}", objs.iter().map(key).collect::<Vec<_>>());
    found[0]
}

fn sha256(text: &str) -> String {
    use std::io::Write;
    let mut child = std::process::Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("sha256sum");
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout).split_whitespace().next().unwrap_or_default().to_string()
}

/// Puts [`POLICY`] for the policy ConfigMap's name (`name`), in the ConfigMap and in the
/// Deployment's volume.
fn rename_policy(objs: &mut [Value], name: &str) {
    for obj in objs.iter_mut() {
        if str_at(obj, "/kind") == "ConfigMap" && str_at(obj, "/metadata/name") == name {
            obj["metadata"]["name"] = json!(POLICY);
        }
        if let Some(volumes) = obj.pointer_mut("/spec/template/spec/volumes").and_then(Value::as_array_mut) {
            for v in volumes.iter_mut().filter(|v| str_at(v, "/configMap/name") == name) {
                v["configMap"]["name"] = json!(POLICY);
            }
        }
    }
}

/// Drops from `chart`'s label set at `pointer` the [`HELM_LABELS`] that `kustomize`'s lacks,
/// and the set itself when that leaves it empty.
fn drop_helm_labels(chart: &mut Value, kustomize: &Value, pointer: &str) {
    let theirs = kustomize.pointer(pointer).and_then(Value::as_object).cloned().unwrap_or_default();
    let Some(labels) = chart.pointer_mut(pointer).and_then(Value::as_object_mut) else { return };
    labels.retain(|k, _| !HELM_LABELS.contains(&k.as_str()) || theirs.contains_key(k));
    if labels.is_empty() {
        let (parent, field) = pointer.rsplit_once('/').unwrap();
        chart.pointer_mut(parent).and_then(Value::as_object_mut).unwrap().remove(field);
    }
}

/// Drops [`INSTANCE`] from the chart's selector at `pointer` when kustomize's lacks it, after
/// checking that it names `release`; any other difference stays.
fn drop_instance(chart: &mut Value, kustomize: &Value, pointer: &str, release: &str) {
    let theirs = kustomize.pointer(pointer).and_then(Value::as_object).expect("kustomize's selector");
    if theirs.contains_key(INSTANCE) {
        return;
    }
    let ours = chart.pointer_mut(pointer).and_then(Value::as_object_mut).expect("the chart's selector");
    assert_eq!(ours.remove(INSTANCE), Some(json!(release)), "the selector at {pointer} names the release");
}

/// The chart's object made comparable to kustomize's: Helm's labels (see [`HELM_LABELS`]) and
/// the pod template's `checksum/policy` annotation (checked to be the policy's sha256) removed.
fn normalised(chart: &Value, kustomize: &Value, policy: &str) -> Value {
    let mut chart = chart.clone();
    for pointer in ["/metadata/labels", "/spec/selector/matchLabels", "/spec/template/metadata/labels"] {
        drop_helm_labels(&mut chart, kustomize, pointer);
    }
    if let Some(annotations) = chart.pointer_mut("/spec/template/metadata/annotations").and_then(Value::as_object_mut) {
        let checksum = annotations.remove("checksum/policy").expect("the pod template's checksum/policy annotation");
        assert_eq!(checksum, json!(sha256(policy)), "checksum/policy is the sha256 of the policy the pods mount");
        if annotations.is_empty() {
            chart["spec"]["template"]["metadata"].as_object_mut().unwrap().remove("annotations");
        }
    }
    chart
}

/// The rendering tests need kubectl, built with the local cluster: they run where it does.
async fn with_cluster() -> bool {
    support::client().await.is_some()
}

/// The chart's default release "flotilla" in "flotilla-system" is the kustomize install: the same
/// CRDs, ServiceAccount, RBAC, policy and Deployment, object for object, except the Namespace
/// (the release's is the user's, `--create-namespace`), the policy ConfigMap's name (fixed, with a
/// `checksum/policy` pod annotation instead of a hash suffix) and Helm's labels.
#[tokio::test]
async fn helm_template_renders_what_kustomize_does() {
    if !with_cluster().await {
        return;
    }
    for (copy, source, fix) in [
        (
            "charts/flotilla/crds/flotilla.dev.yaml",
            "crds/flotilla.dev.yaml",
            "cp crds/flotilla.dev.yaml charts/flotilla/crds/",
        ),
        (
            "charts/flotilla/files/policy.yaml",
            "config/manager/policy.yaml",
            "cp config/manager/policy.yaml charts/flotilla/files/",
        ),
        (
            "charts/flotilla/files/prometheusrule.yaml",
            "config/prometheus/prometheusrule.yaml",
            "cp config/prometheus/prometheusrule.yaml charts/flotilla/files/",
        ),
    ] {
        let read = |p: &str| std::fs::read(Path::new(ROOT).join(p)).unwrap_or_else(|e| panic!("read {p}: {e}"));
        assert!(read(copy) == read(source), "{copy} is not {source}: `{fix}`");
    }
    let mut kustomized = kustomize().await;
    let mut rendered = helm_template(&[]).await;
    let cm = |objs: &[Value]| {
        let names: Vec<String> = objs
            .iter()
            .filter(|o| str_at(o, "/kind") == "ConfigMap")
            .map(|o| str_at(o, "/metadata/name").to_string())
            .collect();
        assert_eq!(names.len(), 1, "one ConfigMap, the policy's: {names:?}");
        names[0].clone()
    };
    let (k_policy, h_policy) = (cm(&kustomized), cm(&rendered));
    assert!(k_policy.starts_with("flotilla-policy-"), "kustomize's name carries the hash: {k_policy}");
    assert_eq!(h_policy, "flotilla-policy", "the chart's is fixed");
    rename_policy(&mut kustomized, &k_policy);
    rename_policy(&mut rendered, &h_policy);
    let policy = str_at(only(&rendered, "ConfigMap", POLICY), "/data/policy.yaml").to_string();

    let kustomized: BTreeMap<String, Value> = kustomized.into_iter().map(|o| (key(&o), o)).collect();
    let rendered: BTreeMap<String, Value> = rendered.into_iter().map(|o| (key(&o), o)).collect();
    let only_kustomize: Vec<&String> = kustomized.keys().filter(|k| !rendered.contains_key(*k)).collect();
    let only_chart: Vec<&String> = rendered.keys().filter(|k| !kustomized.contains_key(*k)).collect();
    assert_eq!(only_kustomize, ["Namespace//flotilla-system"], "objects kustomize makes and the chart does not");
    assert!(only_chart.is_empty(), "objects the chart makes and kustomize does not: {only_chart:?}");
    for (k, chart) in &rendered {
        let theirs = &kustomized[k];
        let ours = normalised(chart, theirs, &policy);
        let differing = paths_differing(k, theirs, &ours);
        assert!(differing.is_empty(), "the chart's {k} (normalised) differs from kustomize's at {differing:#?}");
    }
}

/// With `metrics.serviceMonitor.enabled` and `metrics.prometheusRule.enabled`, release "flotilla"
/// adds to its default objects exactly those of `kubectl kustomize config/prometheus`: the metrics
/// Service, the ServiceMonitor and the PrometheusRule (its spec read from the chart's copy of the
/// file, Prometheus's `{{ $labels.* }}` untouched by Helm), equal but for Helm's labels and the
/// release's [`INSTANCE`] label in the Service's and the ServiceMonitor's selectors. Its other
/// objects do not change.
#[tokio::test]
async fn helm_template_with_monitoring_renders_what_config_prometheus_does() {
    if !with_cluster().await {
        return;
    }
    let by_key = |objs: Vec<Value>| -> BTreeMap<String, Value> { objs.into_iter().map(|o| (key(&o), o)).collect() };
    let kustomized = by_key(kustomize_prometheus().await);
    let plain = by_key(helm_template(&[]).await);
    let monitored = by_key(helm_template(&MONITORING).await);
    for (k, obj) in &plain {
        assert_eq!(monitored.get(k), Some(obj), "{k} changes with the monitoring values");
    }
    let added: BTreeMap<&String, &Value> = monitored.iter().filter(|(k, _)| !plain.contains_key(*k)).collect();
    assert_eq!(
        added.keys().copied().collect::<Vec<_>>(),
        kustomized.keys().collect::<Vec<_>>(),
        "the objects the monitoring values add are config/prometheus's"
    );
    let mut kinds: Vec<&str> = added.values().map(|o| str_at(o, "/kind")).collect();
    kinds.sort();
    assert_eq!(kinds, MONITORING_KINDS);
    for (k, chart) in added {
        let theirs = &kustomized[k];
        let mut ours = chart.clone();
        drop_helm_labels(&mut ours, theirs, "/metadata/labels");
        match str_at(chart, "/kind") {
            "Service" => drop_instance(&mut ours, theirs, "/spec/selector", "flotilla"),
            "ServiceMonitor" => drop_instance(&mut ours, theirs, "/spec/selector/matchLabels", "flotilla"),
            _ => {}
        }
        let differing = paths_differing(k, theirs, &ours);
        assert!(
            differing.is_empty(),
            "the chart's {k} (normalised) differs from config/prometheus's at {differing:#?}"
        );
    }
    let rule = serde_json::to_string(only(&monitored.into_values().collect::<Vec<_>>(), "PrometheusRule", "flotilla"))
        .unwrap();
    assert!(rule.contains("{{ $labels.namespace }}"), "Prometheus's templates reach the rule as written");
}

/// `labels` (an object) has every pair of `selector` (an object).
fn selects(selector: &Value, labels: &Value) -> bool {
    let labels = labels.as_object().expect("labels");
    selector.as_object().expect("a selector").iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// The monitoring objects of any release find its operator, and its alone: the Service selects
/// the Deployment's pods by the release's [`INSTANCE`] label too, the ServiceMonitor selects the
/// Service and scrapes its port, and the series get job="flotilla" (the Service's label that the
/// ServiceMonitor's jobLabel names), which the alerts select. The values land where they say:
/// the metrics port, the scrape interval, an empty scrapeTimeout left out, and the extra labels
/// on the ServiceMonitor and the PrometheusRule only.
#[tokio::test]
async fn the_monitoring_objects_of_a_release_select_its_operator() {
    if !with_cluster().await {
        return;
    }
    for (release, full) in [("flotilla", "flotilla"), ("team-a", "team-a-flotilla")] {
        let mut args = MONITORING.to_vec();
        args.extend([
            "--set",
            "metrics.port=9090",
            "--set",
            "metrics.serviceMonitor.interval=1m",
            "--set",
            "metrics.serviceMonitor.scrapeTimeout=",
            "--set",
            "metrics.serviceMonitor.labels.release=kube-prometheus-stack",
            "--set",
            "metrics.prometheusRule.labels.release=kube-prometheus-stack",
            "--set",
            "metrics.prometheusRule.labels.team=platform",
        ]);
        let objs = render(release, "monitoring", &args).await;
        let deployment = only(&objs, "Deployment", full);
        let service = only(&objs, "Service", &format!("{full}-metrics"));
        let monitor = only(&objs, "ServiceMonitor", full);
        let rule = only(&objs, "PrometheusRule", full);
        for obj in [service, monitor, rule] {
            assert_eq!(str_at(obj, "/metadata/namespace"), "monitoring", "{} in the release's namespace", key(obj));
        }
        let selector = &service["spec"]["selector"];
        assert!(selects(selector, &deployment["spec"]["template"]["metadata"]["labels"]), "{release}: {selector}");
        assert_eq!(selector[INSTANCE], json!(release), "the Service selects this release's pods only");
        let matching = &monitor["spec"]["selector"]["matchLabels"];
        assert!(selects(matching, &service["metadata"]["labels"]), "{release}: {matching}");
        assert_eq!(matching[INSTANCE], json!(release), "the ServiceMonitor selects this release's Service only");
        let job = str_at(monitor, "/spec/jobLabel");
        assert_eq!(service["metadata"]["labels"][job], json!("flotilla"), "the series get job=\"flotilla\"");
        assert_eq!(
            service["spec"]["ports"],
            json!([{"name": "metrics", "port": 9090, "targetPort": "metrics", "protocol": "TCP"}])
        );
        assert_eq!(
            deployment.pointer("/spec/template/spec/containers/0/ports"),
            Some(&json!([{"name": "metrics", "containerPort": 9090}])),
            "targetPort metrics is the operator's metrics port"
        );
        assert_eq!(monitor["spec"]["endpoints"], json!([{"port": "metrics", "path": "/metrics", "interval": "1m"}]));
        assert_eq!(monitor["metadata"]["labels"]["release"], json!("kube-prometheus-stack"));
        assert_eq!(rule["metadata"]["labels"]["release"], json!("kube-prometheus-stack"));
        assert_eq!(rule["metadata"]["labels"]["team"], json!("platform"));
        assert_eq!(service["metadata"]["labels"].get("release"), None, "the Service keeps its labels");
    }
    // The series must get job="flotilla": a nameOverride, which would change it, is refused.
    let mut args = vec!["template", "flotilla", CHART, "--set", "nameOverride=fleet"];
    args.extend_from_slice(&MONITORING);
    let out = command(helm(), &args).output().await.expect("helm runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("job=\"fleet\""), "nameOverride is refused: {stderr}");
}

/// The CRDs' paths that `tests/cluster/monitoring-crds.sh` prints (it downloads them once into
/// Go's module cache), as tests/cluster_monitoring.rs uses them. Panics when they cannot be had.
async fn prometheus_operator_crds() -> Vec<PathBuf> {
    let script = PathBuf::from(ROOT).join("tests/cluster/monitoring-crds.sh");
    let out = tokio::process::Command::new("bash")
        .arg(&script)
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{} failed ({}); this test needs the Go toolchain and the Go module proxy (or Go's module cache) for the \
         Prometheus Operator's CRDs:\n{stderr}",
        script.display(),
        out.status
    );
    eprint!("{stderr}");
    String::from_utf8_lossy(&out.stdout).lines().map(PathBuf::from).collect()
}

/// The API server takes a release's Service, ServiceMonitor and PrometheusRule, the last two
/// judged by the Prometheus Operator's own CRDs (`tests/cluster/monitoring-crds.sh`'s, applied as
/// tests/cluster_monitoring.rs does), in server-side dry-run creates in a namespace of the test's.
#[tokio::test]
async fn the_prometheus_operators_crds_take_the_charts_monitoring_objects() {
    let Some(client) = support::client().await else { return };
    let crds = prometheus_operator_crds().await;
    assert_eq!(crds.len(), 2, "{crds:?}");
    for crd in &crds {
        operator::apply_file(&client, crd).await;
    }
    operator::crds_established(
        &client,
        &["servicemonitors.monitoring.coreos.com", "prometheusrules.monitoring.coreos.com"],
    )
    .await;
    let ns = TestNamespace::new(&client, "helm-monitoring").await;
    let mut args = MONITORING.to_vec();
    args.extend(["--set", "metrics.serviceMonitor.labels.release=kube-prometheus-stack"]);
    let objs = render("mon", ns.name(), &args).await;
    let mut kinds = Vec::new();
    for obj in objs.into_iter().filter(|o| MONITORING_KINDS.contains(&str_at(o, "/kind"))) {
        let obj: DynamicObject = serde_json::from_value(obj).expect("an object");
        let types = obj.types.clone().expect("apiVersion and kind");
        let gvk = GroupVersionKind::try_from(&types).expect("valid apiVersion");
        let (ar, _) = pinned_kind(&client, &gvk).await.unwrap_or_else(|e| panic!("discover {gvk:?}: {e}"));
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns.name(), &ar);
        api.create(&PostParams { dry_run: true, field_manager: None }, &obj)
            .await
            .unwrap_or_else(|e| panic!("the API server refuses {} {}: {e}", types.kind, obj.name_any()));
        kinds.push(types.kind);
    }
    kinds.sort();
    assert_eq!(kinds, MONITORING_KINDS);
    ns.cleanup().await;
}

/// The rules of role.yaml that a RoleBinding grants in a namespace: all but reading
/// DatabaseClasses and CRDs (cluster-scoped).
fn namespaced_rules(rules: &Value) -> Value {
    let mut out = Vec::new();
    for rule in rules.as_array().expect("rules") {
        let mut rule = rule.clone();
        rule["resources"]
            .as_array_mut()
            .unwrap()
            .retain(|r| r != "databaseclasses" && r != "customresourcedefinitions");
        if !rule["resources"].as_array().unwrap().is_empty() {
            out.push(rule);
        }
    }
    Value::Array(out)
}

/// `watchNamespaces`: the operator is told the namespaces, and its rights on Microservices and
/// their children (Secrets included) are bound in each of them and nowhere else; only reading
/// DatabaseClasses is bound cluster-wide. Leader election stays in the release's namespace.
#[tokio::test]
async fn watch_namespaces_bind_the_rules_in_those_namespaces_only() {
    if !with_cluster().await {
        return;
    }
    let kustomized = kustomize().await;
    let role = only(&kustomized, "ClusterRole", "flotilla");
    let objs = helm_template(&["--set", "watchNamespaces={team-a,team-b}"]).await;

    let deployment = only(&objs, "Deployment", "flotilla");
    let args: Vec<&str> = deployment
        .pointer("/spec/template/spec/containers/0/args")
        .and_then(Value::as_array)
        .expect("args")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(args, ["run", "--log-format=json", "--policy=/etc/flotilla/policy.yaml", "--namespace=team-a,team-b"]);

    let subject = json!([{"kind": "ServiceAccount", "name": "flotilla", "namespace": "flotilla-system"}]);
    let bindings = |kind: &str| -> Vec<&Value> { objs.iter().filter(|o| str_at(o, "/kind") == kind).collect() };
    // The operator's rules: a ClusterRole, bound only by RoleBindings in the watched namespaces.
    let namespaced = only(&objs, "ClusterRole", "flotilla");
    assert_eq!(namespaced["rules"], namespaced_rules(&role["rules"]), "role.yaml's rules but DatabaseClasses");
    let mut bound_in: Vec<&str> = Vec::new();
    for rb in bindings("RoleBinding") {
        assert_eq!(rb["subjects"], subject, "{}", key(rb));
        match (str_at(rb, "/roleRef/kind"), str_at(rb, "/roleRef/name")) {
            ("ClusterRole", "flotilla") => bound_in.push(str_at(rb, "/metadata/namespace")),
            ("Role", "flotilla-leader-election") => {
                assert_eq!(str_at(rb, "/metadata/namespace"), "flotilla-system", "the Lease's namespace")
            }
            other => panic!("unexpected RoleBinding {} to {other:?}", key(rb)),
        }
    }
    bound_in.sort();
    assert_eq!(bound_in, ["team-a", "team-b"], "the rules are bound in the watched namespaces only");
    // Cluster-wide: reading DatabaseClasses and CRDs, nothing else.
    let crbs = bindings("ClusterRoleBinding");
    assert_eq!(crbs.len(), 1, "one ClusterRoleBinding: {:?}", crbs.iter().map(|o| key(o)).collect::<Vec<_>>());
    assert_eq!(
        crbs[0]["roleRef"],
        json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "flotilla-databaseclasses"})
    );
    assert_eq!(crbs[0]["subjects"], subject);
    assert_eq!(
        only(&objs, "ClusterRole", "flotilla-databaseclasses")["rules"],
        json!([
            {"apiGroups": ["flotilla.dev"], "resources": ["databaseclasses"], "verbs": ["get", "list", "watch"]},
            {"apiGroups": ["apiextensions.k8s.io"], "resources": ["customresourcedefinitions"], "verbs": ["get", "list", "watch"]}
        ])
    );
    // Leader election as config/rbac/leader_election.yaml.
    for kind in ["Role", "RoleBinding"] {
        let ours = only(&objs, kind, "flotilla-leader-election");
        let theirs = only(&kustomized, kind, "flotilla-leader-election");
        assert_eq!(normalised(ours, theirs, ""), *theirs, "{kind} flotilla-leader-election");
    }
}

/// `helm lint --strict` finds nothing to warn about, in either RBAC mode, nor with the monitoring
/// objects.
#[tokio::test]
async fn helm_lint_strict_is_clean() {
    if !with_cluster().await {
        return;
    }
    let monitoring = [
        &MONITORING[..],
        &["--set", "metrics.serviceMonitor.labels.release=kps", "--set", "metrics.prometheusRule.labels.release=kps"],
    ]
    .concat();
    for extra in [&[][..], &["--set", "watchNamespaces={team-a}", "--set", "logFormat=text"][..], &monitoring[..]] {
        let mut args = vec!["lint", "--strict", CHART];
        args.extend_from_slice(extra);
        let out = run(helm(), &args).await;
        assert!(out.contains("0 chart(s) failed"), "helm lint {extra:?}:\n{out}");
        assert!(!out.contains("[WARNING]") && !out.contains("[ERROR]"), "helm lint {extra:?}:\n{out}");
    }
}

/// Object `name` of `api` as the tests compare it, keyed by `kind/name`: its name, labels and
/// annotations (but the Deployment's revision, which counts rollouts) and its content, without
/// status.
async fn snapshot<K>(api: Api<K>, name: &str) -> (String, Value)
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Serialize + std::fmt::Debug,
{
    let mut v = serde_json::to_value(get(&api, name).await).expect("serialisable");
    let meta = v["metadata"].take();
    let mut annotations = meta["annotations"].clone();
    if let Some(a) = annotations.as_object_mut() {
        a.remove("deployment.kubernetes.io/revision");
    }
    v.as_object_mut().unwrap().remove("status");
    v["metadata"] = json!({"name": meta["name"], "namespace": meta["namespace"], "labels": meta["labels"], "annotations": annotations});
    (format!("{}/{name}", K::kind(&())), v)
}

async fn get<K>(api: &Api<K>, name: &str) -> K
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    api.get(name).await.unwrap_or_else(|e| panic!("get {name}: {e}"))
}

/// Every object of release `release` in `ns` (named after the release: it contains "flotilla"),
/// read from the cluster, keyed by `kind/name`.
async fn release_objects(client: &Client, ns: &str, release: &str) -> BTreeMap<String, Value> {
    let (c, le, policy) = (client, format!("{release}-leader-election"), format!("{release}-policy"));
    BTreeMap::from([
        snapshot(Api::<ServiceAccount>::namespaced(c.clone(), ns), release).await,
        snapshot(Api::<ConfigMap>::namespaced(c.clone(), ns), &policy).await,
        snapshot(Api::<ClusterRole>::all(c.clone()), release).await,
        snapshot(Api::<ClusterRoleBinding>::all(c.clone()), release).await,
        snapshot(Api::<Role>::namespaced(c.clone(), ns), &le).await,
        snapshot(Api::<RoleBinding>::namespaced(c.clone(), ns), &le).await,
        snapshot(Api::<Deployment>::namespaced(c.clone(), ns), release).await,
    ])
}

/// The paths (`prefix/field/...`) at which two values differ.
fn paths_differing(prefix: &str, a: &Value, b: &Value) -> Vec<String> {
    fn walk(path: String, a: &Value, b: &Value, out: &mut Vec<String>) {
        match (a, b) {
            (Value::Object(x), Value::Object(y)) => {
                for k in x.keys().chain(y.keys()).collect::<BTreeSet<_>>() {
                    walk(
                        format!("{path}/{k}"),
                        x.get(k).unwrap_or(&Value::Null),
                        y.get(k).unwrap_or(&Value::Null),
                        out,
                    );
                }
            }
            (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
                for (i, (a, b)) in x.iter().zip(y).enumerate() {
                    walk(format!("{path}/{i}"), a, b, out);
                }
            }
            // kustomize writes a CRD's `65535.0` as `65535`: numbers compare by value.
            (Value::Number(x), Value::Number(y)) if x.as_f64() == y.as_f64() => {}
            _ if a != b => out.push(path),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(prefix.to_string(), a, b, &mut out);
    out
}

/// The paths (`kind/name/field/...`) at which two snapshots differ.
fn differences(before: &BTreeMap<String, Value>, after: &BTreeMap<String, Value>) -> Vec<String> {
    let keys: BTreeSet<&String> = before.keys().chain(after.keys()).collect();
    keys.into_iter()
        .flat_map(|k| paths_differing(k, before.get(k).unwrap_or(&Value::Null), after.get(k).unwrap_or(&Value::Null)))
        .collect()
}

/// Waits until Deployment `ns/name` has rolled out its current spec: every replica updated and
/// available (kwok runs the pods), as `kubectl rollout status` judges.
async fn rolled_out(client: &Client, ns: &str, name: &str) {
    let api: Api<Deployment> = Api::namespaced(client.clone(), ns);
    wait_for(&format!("Deployment {ns}/{name} rolled out"), ROLLOUT, || async {
        let d = api.get(name).await.map_err(|e| e.to_string())?;
        let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
        let st = d.status.clone().unwrap_or_default();
        let done = st.observed_generation == d.metadata.generation
            && st.updated_replicas == Some(want)
            && st.available_replicas == Some(want)
            && st.replicas == Some(want);
        if done { Ok(true) } else { Err(format!("generation {:?}, status {st:?}", d.metadata.generation)) }
    })
    .await;
}

/// Waits until `name` is gone from `api`.
async fn gone<K>(api: &Api<K>, what: &str, name: &str)
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    wait_for(&format!("{what} {name} deleted"), ROLLOUT, || async {
        api.get_opt(name).await.map(|o| o.is_none()).map_err(|e| e.to_string())
    })
    .await;
}

fn crd_uids(crds: &[CustomResourceDefinition]) -> Vec<Option<String>> {
    crds.iter().map(|c| c.metadata.uid.clone()).collect()
}

async fn get_crds(client: &Client) -> Vec<CustomResourceDefinition> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let mut out = Vec::new();
    for name in CRDS {
        out.push(get(&api, name).await);
    }
    out
}

/// A release of its own namespace: `helm install` makes the ServiceAccount, RBAC, policy and
/// Deployment (which kwok's pods make available); `helm upgrade` with one value changed changes
/// exactly what that value names (a new policy also rolls the pods); `helm uninstall` removes
/// every object of the release and keeps the CRDs, the Microservices and retained database data.
#[tokio::test]
async fn helm_install_upgrade_and_uninstall_a_release() {
    let Some(client) = support::client().await else { return };
    // The CRDs exist (Helm 4 applies the chart's over them: the same, so nothing changes).
    operator::install(&client).await;
    let ns = TestNamespace::new(&client, "helm-release").await;
    let data = TestNamespace::new(&client, "helm-data").await;
    // Not "flotilla": the harness's RBAC holds the cluster-scoped names of release "flotilla".
    let release = format!("flotilla-{}", ns.name().rsplit('-').next().unwrap());
    let _cleanup = {
        let (release, ns) = (release.clone(), ns.name().to_string());
        Cleanup::new(move |client| async move {
            let _ = command(helm(), &["uninstall", &release, "-n", &ns, "--ignore-not-found"]).output().await;
            let dp = DeleteParams::default();
            let _ = Api::<ClusterRoleBinding>::all(client.clone()).delete(&release, &dp).await;
            let _ = Api::<ClusterRole>::all(client).delete(&release, &dp).await;
        })
    };
    let crds_before = get_crds(&client).await;

    run(helm(), &["install", &release, CHART, "-n", ns.name()]).await;
    let installed = release_objects(&client, ns.name(), &release).await;
    let manifest = objects(&run(helm(), &["get", "manifest", &release, "-n", ns.name()]).await);
    let in_release: BTreeSet<String> =
        manifest.iter().map(|o| format!("{}/{}", str_at(o, "/kind"), str_at(o, "/metadata/name"))).collect();
    assert_eq!(in_release, installed.keys().cloned().collect(), "the objects the test follows are the release's");
    let kustomized = kustomize().await;
    let sa = json!([{"kind": "ServiceAccount", "name": release, "namespace": ns.name()}]);
    let cr = &installed[&format!("ClusterRole/{release}")];
    assert_eq!(cr["rules"], only(&kustomized, "ClusterRole", "flotilla")["rules"], "config/rbac/role.yaml's rules");
    let crb = &installed[&format!("ClusterRoleBinding/{release}")];
    assert_eq!((&crb["roleRef"]["name"], &crb["subjects"]), (&json!(release), &sa));
    let rb = &installed[&format!("RoleBinding/{release}-leader-election")];
    assert_eq!((&rb["roleRef"]["name"], &rb["subjects"]), (&json!(format!("{release}-leader-election")), &sa));
    let policy = std::fs::read_to_string(Path::new(ROOT).join("config/manager/policy.yaml")).unwrap();
    assert_eq!(installed[&format!("ConfigMap/{release}-policy")]["data"], json!({"policy.yaml": policy}));
    let deployment = &installed[&format!("Deployment/{release}")];
    assert_eq!(deployment.pointer("/spec/replicas"), Some(&json!(2)));
    assert_eq!(str_at(deployment, "/spec/template/spec/serviceAccountName"), release);
    rolled_out(&client, ns.name(), &release).await;

    // One value: only the operator's flag changes.
    run(helm(), &["upgrade", &release, CHART, "-n", ns.name(), "--set", "logFormat=text"]).await;
    let upgraded = release_objects(&client, ns.name(), &release).await;
    let args = format!("Deployment/{release}/spec/template/spec/containers/0/args/1");
    assert_eq!(differences(&installed, &upgraded), [args]);
    let container = &upgraded[&format!("Deployment/{release}")]["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["args"][1], json!("--log-format=text"));
    rolled_out(&client, ns.name(), &release).await;

    // A new policy: the ConfigMap's content and the pods' checksum, so the pods roll.
    let file = PathBuf::from(ROOT).join(format!("target/test-logs/policy-{release}.yaml"));
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    let new_policy = "# The install test's policy.\nceilings:\n  replicas: 10\n";
    std::fs::write(&file, new_policy).unwrap();
    let set_file = format!("policy={}", file.display());
    run(helm(), &["upgrade", &release, CHART, "-n", ns.name(), "--set", "logFormat=text", "--set-file", &set_file])
        .await;
    std::fs::remove_file(&file).unwrap();
    let repoliced = release_objects(&client, ns.name(), &release).await;
    assert_eq!(
        differences(&upgraded, &repoliced),
        [
            format!("ConfigMap/{release}-policy/data/policy.yaml"),
            format!("Deployment/{release}/spec/template/metadata/annotations/checksum/policy"),
        ]
    );
    assert_eq!(repoliced[&format!("ConfigMap/{release}-policy")]["data"]["policy.yaml"], json!(new_policy));
    let checksum =
        &repoliced[&format!("Deployment/{release}")]["spec"]["template"]["metadata"]["annotations"]["checksum/policy"];
    assert_eq!(checksum, &json!(sha256(new_policy)));
    rolled_out(&client, ns.name(), &release).await;

    // Data that outlives any release: a Microservice and a retained database's Secret.
    let ms_api = data.api::<flotilla::api::Microservice>();
    operator::apply_ms(&ms_api, "shop", json!({"image": "registry.example/shop:1"})).await.expect("a Microservice");
    let secrets: Api<Secret> = data.api();
    let retained = Secret {
        metadata: ObjectMeta {
            name: Some("shop-db".into()),
            labels: Some(BTreeMap::from([
                ("app.kubernetes.io/managed-by".into(), "flotilla".into()),
                ("app.kubernetes.io/name".into(), "shop-db".into()),
                ("flotilla.dev/microservice".into(), "shop".into()),
                ("flotilla.dev/database".into(), "shop".into()),
            ])),
            annotations: Some(BTreeMap::from([("flotilla.dev/retained-from".into(), format!("{}/shop", data.name()))])),
            ..Default::default()
        },
        string_data: Some(BTreeMap::from([("password".into(), "kept".into())])),
        ..Default::default()
    };
    secrets.create(&PostParams::default(), &retained).await.expect("the retained Secret");

    run(helm(), &["uninstall", &release, "-n", ns.name()]).await;
    let dp: Api<Deployment> = ns.api();
    gone(&dp, "Deployment", &release).await;
    gone(&ns.api::<ConfigMap>(), "ConfigMap", &format!("{release}-policy")).await;
    gone(&ns.api::<ServiceAccount>(), "ServiceAccount", &release).await;
    gone(&ns.api::<Role>(), "Role", &format!("{release}-leader-election")).await;
    gone(&ns.api::<RoleBinding>(), "RoleBinding", &format!("{release}-leader-election")).await;
    gone(&Api::<ClusterRole>::all(client.clone()), "ClusterRole", &release).await;
    gone(&Api::<ClusterRoleBinding>::all(client.clone()), "ClusterRoleBinding", &release).await;
    let lp = ListParams::default().labels(&format!("owner=helm,name={release}"));
    let history = ns.api::<Secret>().list_metadata(&lp).await.expect("list the release's records");
    assert!(history.items.is_empty(), "Helm's records of the release are gone: {:?}", history.items);
    assert_eq!(crd_uids(&get_crds(&client).await), crd_uids(&crds_before), "the CRDs are kept, not recreated");
    assert!(ms_api.get_opt("shop").await.unwrap().is_some(), "the Microservice is kept");
    let kept = secrets.get("shop-db").await.expect("the retained Secret is kept");
    assert_eq!(kept.metadata.annotations, retained.metadata.annotations);

    data.cleanup().await;
    ns.cleanup().await;
}

/// The README's install: `kubectl apply --server-side -k config/default` makes namespace
/// flotilla-system, its ServiceAccount and RBAC, the policy ConfigMap (hash-suffixed) and the
/// Deployment `flotilla`, which kwok's pods make available. Afterwards the test deletes the
/// Deployment and the ConfigMap, which the other tests do not have; the CRDs, namespace and RBAC
/// are the harness's too and stay.
#[tokio::test]
async fn kubectl_apply_k_config_default_installs_the_operator() {
    let Some(client) = support::client().await else { return };
    operator::install(&client).await;
    let kustomized = kustomize().await;
    let cm_name = kustomized
        .iter()
        .find(|o| str_at(o, "/kind") == "ConfigMap")
        .map(|o| str_at(o, "/metadata/name").to_string())
        .expect("the policy ConfigMap");
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "flotilla-system");
    let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), "flotilla-system");
    assert!(
        deployments.get_opt("flotilla").await.unwrap().is_none(),
        "Deployment flotilla-system/flotilla exists already (an installed operator?): this test installs and \
         deletes its own; remove it first"
    );
    let _cleanup = {
        let cm_name = cm_name.clone();
        Cleanup::new(move |client| async move {
            let dp = DeleteParams::default();
            let _ = Api::<Deployment>::namespaced(client.clone(), "flotilla-system").delete("flotilla", &dp).await;
            let _ = Api::<ConfigMap>::namespaced(client, "flotilla-system").delete(&cm_name, &dp).await;
        })
    };

    run(&kubectl(), &["apply", "--server-side", "-k", "config/default"]).await;
    let ns = get(&Api::<Namespace>::all(client.clone()), "flotilla-system").await;
    let restricted = ns.metadata.labels.unwrap_or_default().get("pod-security.kubernetes.io/enforce").cloned();
    assert_eq!(restricted.as_deref(), Some("restricted"));
    get(&Api::<ServiceAccount>::namespaced(client.clone(), "flotilla-system"), "flotilla").await;
    let cr = get(&Api::<ClusterRole>::all(client.clone()), "flotilla").await;
    assert_eq!(serde_json::to_value(&cr.rules).unwrap(), only(&kustomized, "ClusterRole", "flotilla")["rules"]);
    get(&Api::<ClusterRoleBinding>::all(client.clone()), "flotilla").await;
    get(&Api::<Role>::namespaced(client.clone(), "flotilla-system"), "flotilla-leader-election").await;
    get(&Api::<RoleBinding>::namespaced(client.clone(), "flotilla-system"), "flotilla-leader-election").await;
    let cm = get(&configmaps, &cm_name).await;
    let policy = std::fs::read_to_string(Path::new(ROOT).join("config/manager/policy.yaml")).unwrap();
    assert_eq!(cm.data.unwrap_or_default().get("policy.yaml"), Some(&policy));
    let d = get(&deployments, "flotilla").await;
    let volume = serde_json::to_value(&d.spec.as_ref().unwrap().template.spec.as_ref().unwrap().volumes).unwrap();
    assert_eq!(volume.pointer("/0/configMap/name"), Some(&json!(cm_name)), "the pods mount the hashed ConfigMap");
    rolled_out(&client, "flotilla-system", "flotilla").await;

    deployments.delete("flotilla", &DeleteParams::default()).await.expect("delete the Deployment");
    configmaps.delete(&cm_name, &DeleteParams::default()).await.expect("delete the ConfigMap");
    gone(&deployments, "Deployment", "flotilla").await;
    gone(&configmaps, "ConfigMap", &cm_name).await;
    for crd in CRDS {
        get(&Api::<CustomResourceDefinition>::all(client.clone()), crd).await;
    }
}

/// A release for a list of namespaces, run as its pod would run: the chart's own ServiceAccount
/// and RBAC (rendered by `helm template`, applied as they are), a token the API server issues for
/// that account at the in-cluster path, and the `--namespace` its Deployment passes. Services in
/// the listed namespaces become Ready, one elsewhere is never touched, and no request is refused.
#[tokio::test]
async fn a_namespace_scoped_release_reconciles_from_a_pod_with_the_charts_rbac_alone() {
    use flotilla::api::Microservice;
    use operator::{Operator, OperatorOptions, apply_ms, apply_yaml, pod_account_files};
    let Some(client) = support::client().await else { return };
    operator::install(&client).await;
    let home = TestNamespace::new(&client, "helm-pod").await;
    let a = TestNamespace::new(&client, "helm-pod-a").await;
    let b = TestNamespace::new(&client, "helm-pod-b").await;
    let elsewhere = TestNamespace::new(&client, "helm-pod-c").await;
    let (h, na, nb) = (home.name().to_string(), a.name().to_string(), b.name().to_string());
    let release = format!("flotilla-{}", &h[h.len() - 6..]);
    let watch = format!("watchNamespaces={{{na},{nb}}}");
    let objs = render(&release, &h, &["--set", &watch]).await;

    let rbac_kinds = ["ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"];
    let rbac: Vec<&Value> = objs.iter().filter(|o| rbac_kinds.contains(&str_at(o, "/kind"))).collect();
    let cluster_scoped: Vec<(String, String)> = rbac
        .iter()
        .filter(|o| str_at(o, "/kind").starts_with("Cluster"))
        .map(|o| (str_at(o, "/kind").to_string(), str_at(o, "/metadata/name").to_string()))
        .collect();
    assert_eq!(
        cluster_scoped.len(),
        3,
        "the namespaced rules, reading DatabaseClasses and its binding: {cluster_scoped:?}"
    );
    let _cleanup = Cleanup::new(move |client| async move {
        for (kind, name) in cluster_scoped {
            if kind == "ClusterRole" {
                let _ = Api::<ClusterRole>::all(client.clone()).delete(&name, &DeleteParams::default()).await;
            } else {
                let _ = Api::<ClusterRoleBinding>::all(client.clone()).delete(&name, &DeleteParams::default()).await;
            }
        }
    });
    let yaml: Vec<String> = rbac.iter().map(|o| serde_yaml_ng::to_string(o).unwrap()).collect();
    apply_yaml(&client, &yaml.join("---\n"), None).await;

    let account = str_at(only(&objs, "ServiceAccount", &release), "/metadata/name").to_string();
    let deployment = only(&objs, "Deployment", &release);
    let namespace_arg = deployment
        .pointer("/spec/template/spec/containers/0/args")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .find(|a| a.starts_with("--namespace="))
        .expect("the Deployment passes --namespace")
        .to_string();
    assert_eq!(namespace_arg, format!("--namespace={na},{nb}"));
    let files = pod_account_files(&client, &h, &account).await;
    let lease = format!("{release}-leader");
    let opts = OperatorOptions { namespace: None, lease: &lease, tag: "helm-pod" };
    let mut op = Operator::start_in_pod(&opts, &[namespace_arg], &[("POD_NAMESPACE", h.as_str())], &files);
    op.wait_ready().await;
    op.wait_leading(&client).await;

    let (in_a, in_b, in_c): (Api<Microservice>, Api<Microservice>, Api<Microservice>) =
        (a.api(), b.api(), elsewhere.api());
    apply_ms(&in_c, "ignored", json!({"image": "registry.example/ignored:1"})).await.unwrap();
    apply_ms(
        &in_a,
        "web",
        json!({"image": "registry.example/web:1", "replicas": 2,
        "expose": {"ingress": {"host": format!("{na}.example.com")}}}),
    )
    .await
    .unwrap();
    apply_ms(
        &in_b,
        "api",
        json!({"image": "registry.example/api:1", "dependencies": [{"service": "web", "namespace": na}]}),
    )
    .await
    .unwrap();
    for (api, name) in [(&in_a, "web"), (&in_b, "api")] {
        wait_for(&format!("{name} reconciled for its generation"), ROLLOUT, || async {
            let ms = api.get(name).await?;
            let st = ms.status.clone().unwrap_or_default();
            let ready = st.conditions.iter().find(|c| c.type_ == "Ready");
            anyhow::Ok(st.observed_generation == ms.metadata.generation && ready.is_some())
        })
        .await;
    }
    // The caller in the other namespace sees its callee across the watched namespaces (one merged
    // watch): it is told the callee has not admitted it, not that there is none.
    let api = in_b.get("api").await.unwrap();
    let deps = api.status.unwrap().conditions.into_iter().find(|c| c.type_ == "DependenciesReady").unwrap();
    assert_eq!(deps.reason, "NotAdmitted", "{deps:?}");
    let web = in_a.get("web").await.unwrap();
    let ready = web.status.unwrap().conditions.into_iter().find(|c| c.type_ == "Ready").unwrap();
    assert_eq!(ready.status, "True", "{ready:?}");
    let ignored = in_c.get("ignored").await.unwrap();
    let touched = ignored.status.as_ref().is_some_and(|st| !st.conditions.is_empty())
        || ignored.metadata.managed_fields.iter().flatten().any(|m| m.manager.as_deref() == Some("flotilla"));
    assert!(!touched, "a namespace not listed was reconciled: {:?}", ignored.metadata);
    assert_eq!(op.services_reconciled(), 2, "only the listed namespaces' services");
    let logs = op.logs();
    assert!(!logs.contains("forbidden") && !logs.contains("Forbidden"), "a request was refused:\n{}", op.log_tail());
    op.kill();
    for ns in [a, b, elsewhere, home] {
        ns.cleanup().await;
    }
}
