//! The monitoring Flotilla ships (`config/prometheus/`: a metrics Service, a ServiceMonitor and a
//! PrometheusRule; `config/grafana/flotilla-dashboard.json`), checked offline: every metric and
//! label their PromQL names is one the operator registers (src/metrics.rs, read from its registry
//! in this process: nothing is started), every alert has a severity, a summary, a description and
//! a runbook, the error categories the alerts split are the operator's, the Service and the
//! ServiceMonitor select the operator's pods and port, the dashboard is importable, and
//! Prometheus's own parser (tests/monitoring/promcheck, built from the Prometheus module that its
//! go.mod pins) accepts the rule file and every query. tests/cluster_monitoring.rs checks the same
//! names against a running operator's /metrics, and the objects against the Prometheus Operator's
//! CRDs.

#[path = "monitoring/promql.rs"]
mod promql;
#[path = "support/tool.rs"]
mod tool;

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Command, Stdio};

use flotilla::metrics::{ErrorLabels, Metrics, RequestLabels};
use promql::{names, read};
use serde_json::{Value, json};

/// The job the ServiceMonitor gives the series (the Service's `app.kubernetes.io/name`).
const JOB: &str = "flotilla";

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

#[test]
fn the_tokenizer_tells_metric_names_from_functions_keywords_labels_and_durations() {
    let cases: &[(&str, &[&str], &[&str])] = &[
        (
            r#"sum by (category) (rate(flotilla_reconcile_errors_total{job="flotilla", category!~"A|B"}[10m])) > 0"#,
            &["flotilla_reconcile_errors_total"],
            &["category", "job"],
        ),
        (
            "histogram_quantile(0.99, sum by (namespace, le) (rate(x_bucket[5m:30s] offset 1h30m)))",
            &["x_bucket"],
            &["namespace", "le"],
        ),
        (r#"absent(up{job="flotilla"} == 1)"#, &["up"], &["job"]),
        ("a > 0 and on (namespace, pod) b == 0 unless ignoring (le) c", &["a", "b", "c"], &["namespace", "pod", "le"]),
        ("sum(rate(a[5m])) by (pod) / on (pod) group_left (category) b", &["a", "b"], &["pod", "category"]),
        // Words inside strings, numbers in every notation, Grafana's variables, comments.
        (
            r#"label_replace(rate(a{pod=~"$pod"}[$__rate_interval]), "dst", "rate(b)", "src", "(.*)") * 1e-3 + 0x1F + .5 + Inf # c"#,
            &["a"],
            &["pod"],
        ),
        ("topk(5, count_values(\"v\", a)) @ start()", &["a"], &[]),
        ("sum without (instance) (a[[interval]])", &["a"], &["instance"]),
        ("a:rate5m + SUM BY (job) (b)", &["a:rate5m", "b"], &["job"]),
        (r#"{"my.metric", job="x"}"#, &["my.metric"], &["job"]),
    ];
    for (expr, metrics, labels) in cases {
        let n = names(expr).unwrap_or_else(|e| panic!("{expr}: {e}"));
        assert_eq!((n.metrics, n.labels), (set(metrics), set(labels)), "{expr}");
    }
    let functions = names("histogram_quantile(0.5, sum(rate(a[1m])))").unwrap().functions;
    assert_eq!(functions, set(&["histogram_quantile", "rate"]));
    for bad in ["rat(a[5m])", "sum(a", "a{job}", "a[5m", "a)"] {
        assert!(names(bad).is_err(), "{bad} is refused");
    }
}

/// The series the operator's registry serves, with one sample in each labelled family so that
/// their labels show; checked to cover every family the registry declares.
fn registered_series() -> BTreeMap<String, BTreeSet<String>> {
    let m = Metrics::default();
    m.reconciles.inc();
    m.failures.get_or_create(&ErrorLabels { category: "ApiError" }).inc();
    m.api_requests.get_or_create(&RequestLabels { verb: "update", resource: "leases".into() }).inc();
    m.duration.observe(0.1);
    m.reconciled("shop", "orders");
    let text = m.encode();
    let series = promql::exposition(&text);
    for line in text.lines().filter_map(|l| l.strip_prefix("# TYPE ")) {
        let (family, kind) = line.split_once(' ').expect("# TYPE name kind");
        let expected: Vec<String> = match kind {
            "counter" => vec![format!("{family}_total")],
            "histogram" => ["_bucket", "_sum", "_count"].iter().map(|s| format!("{family}{s}")).collect(),
            _ => vec![family.to_string()],
        };
        for s in expected {
            assert!(series.contains_key(&s), "{family} ({kind}) has no series {s}: give it a sample here\n{text}");
        }
    }
    series
}

#[test]
fn every_metric_and_label_of_the_alerts_and_the_dashboard_is_one_the_operator_registers() {
    let series = registered_series();
    let (problems, used) = promql::check(&promql::all_queries(), &promql::dashboard_variables(), &series);
    assert!(problems.is_empty(), "{}\nseries: {series:#?}", problems.join("\n"));
    // And the dashboard shows every metric the operator has.
    let (_, on_dashboard) = promql::check(&promql::dashboard_queries(), &[], &series);
    let families: BTreeSet<&str> = series
        .keys()
        .map(|s| s.trim_end_matches("_bucket").trim_end_matches("_sum").trim_end_matches("_count"))
        .collect();
    for family in families {
        assert!(
            on_dashboard.iter().any(|m| m.starts_with(family)),
            "the dashboard shows nothing of {family}; used: {on_dashboard:?}"
        );
    }
    println!("{} metrics named by the alerts and the dashboard: {used:?}", used.len());
}

/// Every error category the operator reports, and whether the error waits for a change of the
/// Microservice (the user's to fix) rather than being retried (the operator's or the cluster's).
fn categories() -> BTreeMap<&'static str, bool> {
    use flotilla::controller::Error;
    use flotilla::validate::{FieldError, Invalid};
    let api = |code: u16, message: &str| Error::Kube {
        action: "apply Deployment api".into(),
        source: kube::Error::Api(kube::core::Status::failure(message, "").with_code(code).boxed()),
    };
    let invalid = |reason: Option<&'static str>| {
        let e = FieldError::new("spec.image", "is required");
        Error::Invalid(Invalid(vec![match reason {
            Some(r) => e.because(r),
            None => e,
        }]))
    };
    let errors = [
        invalid(None),
        invalid(Some(flotilla::render::hosts::HOST_TAKEN)),
        invalid(Some(flotilla::policy::POLICY_DENIED)),
        Error::ChildConflict { kind: "ServiceAccount".into(), name: "api".into() },
        Error::Serialize { what: "Deployment", source: serde_json::from_str::<Value>("{").unwrap_err() },
        api(409, "conflict"),
        api(429, "slow down"),
        api(403, "forbidden"),
        api(404, "not found"),
        api(422, "invalid"),
        api(500, "etcdserver: request timed out"),
        Error::Kube { action: "list Deployments".into(), source: kube::Error::LinesCodecMaxLineLengthExceeded },
    ];
    errors.iter().map(|e| (e.category(), e.waits_for_change() || matches!(e, Error::ChildConflict { .. }))).collect()
}

/// The categories a rule's `category=~"..."` or `category!~"..."` names.
fn category_matcher(expr: &str, op: &str) -> Option<BTreeSet<String>> {
    let start = expr.find(&format!("category{op}\""))? + "category".len() + op.len() + 1;
    let end = start + expr[start..].find('"')?;
    Some(expr[start..end].split('|').map(String::from).collect())
}

#[test]
fn the_alerts_split_the_error_categories_as_the_operator_handles_them() {
    let categories = categories();
    let users: BTreeSet<String> = categories.iter().filter(|(_, user)| **user).map(|(c, _)| c.to_string()).collect();
    assert_eq!(
        users,
        set(&["ApiRejected", "ChildConflict", "HostTaken", "InvalidSpec", "PolicyDenied"]),
        "categories that a change of the Microservice fixes"
    );
    let rules: BTreeMap<String, Value> = promql::rules(&promql::prometheus_rule()).into_iter().collect();
    let expr = |alert: &str| rules[alert]["expr"].as_str().unwrap().to_string();
    // The operator's trouble pages a human; a tenant's refused spec only informs, and its status
    // says why. Both name exactly the categories a change of the object fixes, so a category the
    // operator adds later counts as the operator's trouble until it is listed.
    assert_eq!(category_matcher(&expr("FlotillaReconcileErrors"), "!~"), Some(users.clone()));
    assert_eq!(category_matcher(&expr("FlotillaMicroservicesRejected"), "=~"), Some(users));
    for (alert, rule) in &rules {
        let e = rule["expr"].as_str().unwrap();
        for op in ["=~", "!~", "=", "!="] {
            for c in category_matcher(e, op).into_iter().flatten() {
                assert!(categories.contains_key(c.as_str()), "{alert}: {c} is no category of the operator");
            }
        }
    }
}

#[test]
fn every_alert_has_a_severity_a_summary_a_description_and_a_runbook() {
    let rule = promql::prometheus_rule();
    assert_eq!(
        (rule["apiVersion"].as_str(), rule["kind"].as_str()),
        (Some("monitoring.coreos.com/v1"), Some("PrometheusRule"))
    );
    let runbook = read("config/prometheus/README.md");
    let sections: BTreeSet<String> =
        runbook.lines().filter_map(|l| l.strip_prefix("### ")).map(|s| s.trim().to_string()).collect();
    let mut alerts = BTreeSet::new();
    for (name, r) in promql::rules(&rule) {
        assert!(r["alert"].is_string(), "{name}: only alerts here");
        assert!(name.starts_with("Flotilla"), "{name}: alerts are named Flotilla*");
        let severity = r["labels"]["severity"].as_str().unwrap_or_default();
        assert!(["critical", "warning", "info"].contains(&severity), "{name}: severity {severity:?}");
        for key in ["summary", "description"] {
            let text = r["annotations"][key].as_str().unwrap_or_default();
            assert!(text.len() > 20, "{name}: annotation {key} missing or too short");
        }
        let description = r["annotations"]["description"].as_str().unwrap();
        assert!(
            description.contains(&format!("Runbook: {name} in Flotilla's config/prometheus/README.md")),
            "{name}: the description points to its runbook"
        );
        assert!(sections.contains(&name), "{name}: config/prometheus/README.md has no `### {name}` runbook section");
        // Every selector of the operator's series is of its job, as the ServiceMonitor names it.
        let expr = r["expr"].as_str().unwrap();
        assert_eq!(expr.matches('{').count(), expr.matches(&format!("{{job=\"{JOB}\"")).count(), "{name}: {expr}");
        assert!(alerts.insert(name.clone()), "{name} twice");
    }
    let orphans: Vec<&String> = sections.difference(&alerts).collect();
    assert!(orphans.is_empty(), "runbook sections of no alert: {orphans:?}");
}

fn yaml_docs(rel: &str) -> Vec<Value> {
    use serde::Deserialize;
    serde_yaml_ng::Deserializer::from_str(&read(rel)).map(|d| Value::deserialize(d).expect("YAML")).collect()
}

fn is_subset(small: &Value, big: &Value) -> bool {
    small.as_object().expect("a map").iter().all(|(k, v)| big.get(k) == Some(v))
}

#[test]
fn the_service_and_the_service_monitor_select_the_operators_pods_and_port() {
    let deployment = yaml_docs("config/manager/manager.yaml").into_iter().find(|d| d["kind"] == "Deployment").unwrap();
    let pod_labels = &deployment["spec"]["template"]["metadata"]["labels"];
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    let metrics_port = container["ports"].as_array().unwrap().iter().find(|p| p["name"] == "metrics").unwrap();
    assert_eq!(metrics_port["containerPort"], 8080);
    let namespace = &deployment["metadata"]["namespace"];

    let service = &yaml_docs("config/prometheus/service.yaml")[0];
    assert_eq!(&service["metadata"]["namespace"], namespace);
    assert!(is_subset(&service["spec"]["selector"], pod_labels), "the Service selects the operator's pods");
    assert_eq!(service["spec"]["selector"], json!({"app.kubernetes.io/name": "flotilla"}));
    let port = &service["spec"]["ports"][0];
    assert_eq!(
        (&port["name"], &port["port"], &port["targetPort"]),
        (&json!("metrics"), &json!(8080), &json!("metrics"))
    );

    let monitor = &yaml_docs("config/prometheus/servicemonitor.yaml")[0];
    assert_eq!(&monitor["metadata"]["namespace"], namespace);
    assert!(is_subset(&monitor["spec"]["selector"]["matchLabels"], &service["metadata"]["labels"]));
    let endpoints = monitor["spec"]["endpoints"].as_array().unwrap();
    assert!(endpoints.iter().all(|e| e["port"] == port["name"] && e["path"] == "/metrics"));
    let job_label = monitor["spec"]["jobLabel"].as_str().unwrap();
    assert_eq!(service["metadata"]["labels"][job_label], JOB, "the job the alerts and the dashboard select");
    let job_var =
        promql::dashboard()["templating"]["list"].as_array().unwrap().iter().find(|v| v["name"] == "job").cloned();
    assert_eq!(job_var.unwrap()["current"]["value"], JOB);

    let rule = &yaml_docs("config/prometheus/prometheusrule.yaml")[0];
    assert_eq!(&rule["metadata"]["namespace"], namespace);

    // The kustomization is every manifest here, and config/default stays without it (it needs
    // the Prometheus Operator's CRDs).
    let kustomization = &yaml_docs("config/prometheus/kustomization.yaml")[0];
    let listed: BTreeSet<String> =
        kustomization["resources"].as_array().unwrap().iter().map(|r| r.as_str().unwrap().to_string()).collect();
    let files: BTreeSet<String> = std::fs::read_dir(promql::root().join("config/prometheus"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|f| f.ends_with(".yaml") && f != "kustomization.yaml")
        .collect();
    assert_eq!(listed, files);
    assert!(!read("config/default/kustomization.yaml").contains("prometheus"));
}

#[test]
fn the_dashboard_is_importable() {
    let d = promql::dashboard();
    assert!(d["schemaVersion"].as_i64().unwrap() >= 39, "a schema of Grafana 11 or later");
    assert!(d["uid"].as_str().is_some_and(|u| !u.is_empty() && u.len() <= 40));
    assert!(d["id"].is_null(), "no database id: Grafana assigns one on import");
    let vars = d["templating"]["list"].as_array().unwrap();
    let ds = vars.iter().find(|v| v["type"] == "datasource").expect("a datasource variable");
    assert_eq!(ds["query"], "prometheus");
    let ds_ref = json!({"type": "prometheus", "uid": format!("${{{}}}", ds["name"].as_str().unwrap())});
    for v in vars.iter().filter(|v| v["type"] == "query") {
        assert_eq!(v["datasource"], ds_ref, "variable {}", v["name"]);
    }
    let mut ids = BTreeSet::new();
    let mut titles = BTreeSet::new();
    for p in promql::panels(&d) {
        let title = p["title"].as_str().unwrap().to_string();
        assert!(ids.insert(p["id"].as_i64().unwrap()), "panel id {} twice", p["id"]);
        assert!(titles.insert(title.clone()), "panel title {title:?} twice");
        let g = &p["gridPos"];
        assert!(g["x"].as_i64().unwrap() + g["w"].as_i64().unwrap() <= 24, "{title}: within the 24 columns");
        if p["type"] == "row" {
            continue;
        }
        assert!(p["description"].as_str().is_some_and(|s| !s.is_empty()), "{title}: a description");
        assert_eq!(p["datasource"], ds_ref, "{title}: the panel reads the chosen data source");
        for t in p["targets"].as_array().unwrap() {
            assert_eq!(t["datasource"], ds_ref, "{title}: the query reads the chosen data source");
        }
    }
}

/// Prometheus's `[$__rate_interval]`-style Grafana variables, as Prometheus would get them.
fn as_prometheus_gets_it(expr: &str) -> String {
    expr.replace("$__rate_interval", "2m").replace("$__range", "6h").replace("$__interval", "30s")
}

fn promcheck(args: &[&str], stdin: Option<String>) -> std::process::Output {
    static BIN: std::sync::OnceLock<Result<std::path::PathBuf, String>> = std::sync::OnceLock::new();
    let bin = match BIN
        .get_or_init(|| tool::build("tests/monitoring/promcheck/build.sh", "promcheck (Prometheus's parser)"))
    {
        Ok(p) => p,
        Err(e) => panic!("{e}"),
    };
    let mut child = Command::new(bin)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promcheck");
    {
        use std::io::Write;
        let mut input = child.stdin.take().unwrap();
        input.write_all(stdin.unwrap_or_default().as_bytes()).unwrap();
    }
    child.wait_with_output().unwrap()
}

#[test]
fn prometheus_parses_the_rules_and_every_query() {
    // The rule file Prometheus gets from the Prometheus Operator: the PrometheusRule's spec.
    let rule = promql::prometheus_rule();
    let file = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("flotilla-rules.yaml");
    std::fs::write(&file, serde_yaml_ng::to_string(&rule["spec"]).unwrap()).unwrap();
    let out = promcheck(&["rules", file.to_str().unwrap()], None);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "Prometheus refuses the rules:\n{stderr}");
    println!("{}", String::from_utf8_lossy(&out.stdout).trim());

    let exprs: Vec<String> = promql::all_queries().iter().map(|q| as_prometheus_gets_it(&q.expr)).collect();
    let out = promcheck(&["exprs"], Some(serde_json::to_string(&exprs).unwrap()));
    assert!(out.status.success(), "Prometheus refuses queries:\n{}", String::from_utf8_lossy(&out.stderr));
    println!("{}", String::from_utf8_lossy(&out.stdout).trim());

    // The parser is no rubber stamp: a range function of an instant vector, an unknown function.
    let bad = json!(["rate(flotilla_reconciles_total)", "rat(flotilla_reconciles_total[5m])"]).to_string();
    let out = promcheck(&["exprs"], Some(bad));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.lines().count() == 2, "both refused:\n{stderr}");
}
