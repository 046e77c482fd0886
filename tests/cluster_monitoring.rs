//! The monitoring Flotilla ships (`config/prometheus/`, `config/grafana/`) against the local
//! cluster: every series the alerts and the dashboard name is among those Prometheus reads from a
//! running operator's /metrics once it has reconciled a Microservice (read by Prometheus's own
//! parser for the Content-Type served, tests/monitoring/promcheck), with the labels they use;
//! `flotilla_leader` is 1 on the leader and 0 on a standby, which is how the alerts tell them
//! apart (and only the leader renews its Lease); and the API server judges the Service, the
//! ServiceMonitor and the PrometheusRule (as `kubectl kustomize config/prometheus` builds them) by
//! the Prometheus Operator's own CRDs, at the version `tests/cluster/monitoring-crds.sh` pins, in
//! server-side dry runs. tests/monitoring.rs checks the same offline. Needs `make cluster-up`.

mod operator;
#[path = "monitoring/promql.rs"]
mod promql;
mod support;
#[path = "support/tool.rs"]
mod tool;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::{Api, DynamicObject, PostParams};
use kube::core::GroupVersionKind;
use kube::discovery::pinned_kind;
use kube::{Client, ResourceExt};
use operator::{Operator, OperatorOptions, apply_file, apply_ms, counter, crds_established, install, setup};
use serde_json::json;
use support::{client, wait_for};

const WAIT: Duration = Duration::from_secs(60);
const LEASE_RENEWALS: &str = "flotilla_api_requests_total{verb=\"update\",resource=\"leases\"}";
const LEASE_READS: &str = "flotilla_api_requests_total{verb=\"get\",resource=\"leases\"}";
/// A gauge: no `_total`, no labels.
const LEADER: &str = "flotilla_leader";

/// The value of the unlabelled series `name` on a /metrics text; panics when it is not there (a
/// missing series must not read as 0).
fn gauge(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no series {name}:\n{metrics}"))
}

/// A GET of /metrics as a scrape sees it: the Content-Type and the body.
fn scrape(port: u16) -> (String, String) {
    let mut s = TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(2)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(s, "GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n").unwrap();
    let mut buf = String::new();
    s.read_to_string(&mut buf).unwrap();
    let (head, body) = buf.split_once("\r\n\r\n").expect("an HTTP response");
    let content_type = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-type").then(|| v.trim().to_string())
        })
        .unwrap_or_default();
    (content_type, body.to_string())
}

/// The series Prometheus reads from a scrape's body with that Content-Type, each with its label
/// names: Prometheus's own parser (`promcheck scrape`, no fallback protocol, as Prometheus 3 has
/// by default). Panics when Prometheus would fail the scrape.
fn prometheus_reads(content_type: &str, body: &str) -> BTreeMap<String, BTreeSet<String>> {
    let bin = tool::build("tests/monitoring/promcheck/build.sh", "promcheck (Prometheus's parser)")
        .unwrap_or_else(|e| panic!("{e}"));
    let mut child = Command::new(bin)
        .args(["scrape", content_type])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promcheck");
    child.stdin.take().unwrap().write_all(body.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "Prometheus would fail the scrape (Content-Type {content_type:?}): {stderr}\n{body}");
    assert!(stderr.trim().is_empty(), "Prometheus warns about the scrape: {stderr}");
    let mut series: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in String::from_utf8(out.stdout).unwrap().lines() {
        let labels: BTreeMap<String, String> = serde_json::from_str(line).expect("a JSON object of labels");
        let name = labels["__name__"].clone();
        series.entry(name).or_default().extend(labels.into_keys().filter(|k| k != "__name__"));
    }
    series
}

/// One Microservice whose ServiceAccount name someone else holds: it is reconciled (the
/// histogram, the Microservice count, API requests by verb and resource) and fails with
/// ChildConflict every 20 s, so the error family has a labelled series too. Then a standby on the
/// same Lease: its `flotilla_leader` is 0 while the leader's is 1; it reads the Lease and never
/// renews it, while the leader renews it.
#[tokio::test]
async fn every_series_the_alerts_and_the_dashboard_name_is_on_a_running_operator() {
    let Some(s) = setup("monitoring").await else { return };
    let sas = s.ns.api::<ServiceAccount>();
    sas.create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": "taken"}})).unwrap())
        .await
        .unwrap();
    apply_ms(&s.api, "taken", json!({"image": "registry.example/x:1"})).await.unwrap();
    let took = wait_for("the labelled series of a reconciled, conflicting Microservice", WAIT, || async {
        let m = s.op.metrics();
        let ready = counter(&m, "flotilla_reconcile_errors_total{category=\"ChildConflict\"}") > 0
            && counter(&m, "flotilla_microservices_reconciled") == 1
            && counter(&m, LEASE_RENEWALS) > 0
            && counter(&m, LEADER) == 1;
        if ready { Ok(true) } else { Err(m) }
    })
    .await;
    println!("a Microservice applied -> its series on /metrics: {:.2}s", took.as_secs_f64());

    let (content_type, text) = scrape(s.op.metrics_port);
    let series = prometheus_reads(&content_type, &text);
    assert_eq!(
        series.keys().collect::<Vec<_>>(),
        promql::exposition(&text).keys().collect::<Vec<_>>(),
        "Prometheus reads the series the text has"
    );
    println!("/metrics Content-Type {content_type:?}: Prometheus reads {} series names", series.len());
    let queries = promql::all_queries();
    let (problems, used) = promql::check(&queries, &promql::dashboard_variables(), &series);
    assert!(problems.is_empty(), "{}\n/metrics:\n{text}", problems.join("\n"));
    // Histograms as _bucket/_sum/_count, counters as _total: as Prometheus stores them.
    for line in text.lines().filter_map(|l| l.strip_prefix("# TYPE ")) {
        let (family, kind) = line.split_once(' ').unwrap();
        let suffixes: &[&str] = match kind {
            "histogram" => &["_bucket", "_sum", "_count"],
            "counter" => &["_total"],
            _ => &[""],
        };
        for suffix in suffixes {
            assert!(series.contains_key(&format!("{family}{suffix}")), "{family} ({kind}) has no {family}{suffix}");
        }
    }
    let external: Vec<&str> = promql::EXTERNAL_METRICS.iter().map(|(m, _)| *m).collect();
    let served: Vec<&String> = used.iter().filter(|m| !external.contains(&m.as_str())).collect();
    println!("{} queries name {} of the operator's series, all served: {served:?}", queries.len(), served.len());

    // A standby on the same Lease: ready, not leading, polling the Lease, never renewing it,
    // reconciling nothing.
    let mut standby = Operator::start(&OperatorOptions {
        namespace: Some(s.ns.name()),
        lease: &s.op.lease,
        tag: "monitoring-standby",
    });
    standby.wait_ready().await;
    let before = (counter(&s.op.metrics(), LEASE_RENEWALS), counter(&standby.metrics(), LEASE_READS));
    // --lease-seconds=6: the leader renews every 0.8 s, a standby retries every 0.8 to 1.8 s.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (leader, waiting) = (s.op.metrics(), standby.metrics());
    let after = (counter(&leader, LEASE_RENEWALS), counter(&waiting, LEASE_READS));
    assert!(after.0 >= before.0 + 2, "the leader renews its Lease: {before:?} -> {after:?}");
    assert!(after.1 > before.1, "the standby reads the Lease: {before:?} -> {after:?}\n{}", standby.log_tail());
    assert_eq!(counter(&waiting, LEASE_RENEWALS), 0, "a standby never renews the Lease:\n{waiting}");
    assert_eq!(counter(&waiting, "flotilla_reconciles_total"), 0, "a standby reconciles nothing");
    assert_eq!(counter(&waiting, "flotilla_microservices_reconciled"), 0);
    assert_eq!(gauge(&leader, LEADER), 1.0, "flotilla_leader is 1 on the leader:\n{leader}");
    assert_eq!(gauge(&waiting, LEADER), 0.0, "flotilla_leader is 0 on a standby:\n{waiting}");
    println!(
        "flotilla_leader 1 on the leader, 0 on the standby; over 5 s the leader renewed its Lease {} times, the \
         standby read it {} times and renewed it 0 times",
        after.0 - before.0,
        after.1 - before.1
    );
    standby.kill();
    s.ns.cleanup().await;
}

/// The CRDs' paths that `tests/cluster/monitoring-crds.sh` prints (it downloads them once into
/// Go's module cache). Panics when they cannot be had: with a cluster at hand this test must not
/// pass on a stand-in that takes anything.
async fn prometheus_operator_crds() -> Vec<PathBuf> {
    tokio::task::spawn_blocking(|| {
        tool::printed_files("tests/cluster/monitoring-crds.sh", "the Prometheus Operator's CRDs")
            .unwrap_or_else(|e| panic!("{e}"))
    })
    .await
    .unwrap()
}

/// A server-side dry-run create of `obj`: what the API server says of it as a new object.
async fn dry_run_create(client: &Client, obj: &DynamicObject) -> Result<(), kube::Error> {
    let types = obj.types.clone().expect("apiVersion and kind");
    let gvk = GroupVersionKind::try_from(&types).expect("valid apiVersion");
    let (ar, _) = pinned_kind(client, &gvk).await?;
    let ns = obj.namespace().expect("every object of config/prometheus names its namespace");
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns, &ar);
    api.create(&PostParams { dry_run: true, field_manager: None }, obj).await.map(drop)
}

#[tokio::test]
async fn the_prometheus_operators_crds_take_the_service_the_service_monitor_and_the_rule() {
    let Some(client) = client().await else { return };
    // The namespace flotilla-system (config/rbac) and the Microservice CRD.
    install(&client).await;
    let crds = prometheus_operator_crds().await;
    assert_eq!(crds.len(), 2, "{crds:?}");
    for crd in &crds {
        apply_file(&client, crd).await;
    }
    crds_established(&client, &["servicemonitors.monitoring.coreos.com", "prometheusrules.monitoring.coreos.com"])
        .await;

    let kubectl = promql::root().join("target/cluster/bin/kubectl");
    let out = tokio::process::Command::new(&kubectl)
        .args(["kustomize", "config/prometheus"])
        .current_dir(promql::root())
        .output()
        .await
        .expect("kubectl runs");
    assert!(out.status.success(), "kubectl kustomize config/prometheus: {}", String::from_utf8_lossy(&out.stderr));
    let built = String::from_utf8(out.stdout).unwrap();
    let mut kinds = Vec::new();
    for doc in serde_yaml_ng::Deserializer::from_str(&built) {
        use serde::Deserialize;
        let obj: DynamicObject = serde_json::from_value(serde_json::Value::deserialize(doc).unwrap()).unwrap();
        let kind = obj.types.as_ref().unwrap().kind.clone();
        dry_run_create(&client, &obj)
            .await
            .unwrap_or_else(|e| panic!("the API server refuses {kind} {}: {e}", obj.name_any()));
        kinds.push(kind);
    }
    kinds.sort();
    assert_eq!(kinds, ["PrometheusRule", "Service", "ServiceMonitor"]);

    // The schema is the real one, not one that takes anything: it refuses a numeric port name
    // and a `for` that is no Prometheus duration.
    let refused = [
        json!({"apiVersion": "monitoring.coreos.com/v1", "kind": "ServiceMonitor",
               "metadata": {"name": "bad", "namespace": "flotilla-system"},
               "spec": {"selector": {}, "endpoints": [{"port": 8080}]}}),
        json!({"apiVersion": "monitoring.coreos.com/v1", "kind": "PrometheusRule",
               "metadata": {"name": "bad", "namespace": "flotilla-system"},
               "spec": {"groups": [{"name": "g", "rules": [{"alert": "A", "expr": "up == 0", "for": "5 minutes"}]}]}}),
    ];
    for bad in refused {
        let obj: DynamicObject = serde_json::from_value(bad).unwrap();
        match dry_run_create(&client, &obj).await {
            Err(kube::Error::Api(s)) if s.code == 422 => println!("refused as it should be: {}", s.message),
            other => panic!("{} should be refused by the CRD's schema: {other:?}", obj.types.unwrap().kind),
        }
    }
}
