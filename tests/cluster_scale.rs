//! The scale benchmark (`make bench`, not part of `make test`): N Microservices, each calling the
//! next, applied at once to one namespace on the local cluster. It measures the time until all
//! are Ready, the operator's memory, its API requests while converging, that converged services
//! cause no writes, and how fast one change (a callee's port) reaches its caller. The figures go
//! to BENCHMARKS.md. `FLOTILLA_BENCH_SERVICES` sets N (default 200). Needs `make cluster-up`.

mod operator;
mod support;

use std::time::{Duration, Instant};

use flotilla::api::Microservice;
use kube::api::{Api, ListParams};
use operator::{apply_ms, setup};
use serde_json::json;

fn spec(i: usize, n: usize, port: u16) -> serde_json::Value {
    json!({
        "image": format!("registry.example/svc-{i}:1"),
        "ports": [{"name": "http", "port": port}],
        "dependencies": [{"service": format!("svc-{}", (i + 1) % n)}],
    })
}

async fn ready_count(api: &Api<Microservice>) -> usize {
    let Ok(list) = api.list(&ListParams::default()).await else { return 0 };
    list.items
        .iter()
        .filter(|ms| {
            ms.status.as_ref().is_some_and(|s| {
                s.observed_generation == ms.metadata.generation
                    && s.conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True")
            })
        })
        .count()
}

#[tokio::test]
#[ignore = "a benchmark: make bench"]
async fn scale() {
    let n: usize = std::env::var("FLOTILLA_BENCH_SERVICES").ok().and_then(|v| v.parse().ok()).unwrap_or(200);
    let Some(s) = setup("scale").await else { return };
    let build = if cfg!(debug_assertions) { "debug" } else { "release" };
    let (rss_idle, _) = s.op.memory_kib().expect("operator memory");

    let start = Instant::now();
    for i in 0..n {
        apply_ms(&s.api, &format!("svc-{i}"), spec(i, n, 8080)).await.unwrap();
    }
    let applied = start.elapsed();
    // The operator's own part ends when every Deployment exists; Ready also waits for the
    // cluster's controllers, scheduler and kubelets (kwok) to bring the pods up.
    let deployments = s.ns.api::<k8s_openapi::api::apps::v1::Deployment>();
    let (mut ready, mut created, mut all_created) = (0, 0, None);
    while ready < n {
        assert!(start.elapsed() < Duration::from_secs(600), "only {ready} of {n} Ready after 10 minutes");
        tokio::time::sleep(Duration::from_millis(250)).await;
        if all_created.is_none() {
            created = deployments.list_metadata(&ListParams::default()).await.map(|l| l.items.len()).unwrap_or(created);
            if created == n {
                all_created = Some(start.elapsed());
            }
        }
        ready = ready_count(&s.api).await;
    }
    let all_created = all_created.unwrap_or_else(|| start.elapsed());
    let all_ready = start.elapsed();
    let metrics = s.op.metrics();
    let reconciles = operator::counter(&metrics, "flotilla_reconciles_total");
    let writes = operator::writes(&metrics);
    let (gets, lists) = (operator::requests(&metrics, "get"), operator::requests(&metrics, "list"));
    let (rss, peak) = s.op.memory_kib().expect("operator memory");

    // Converged: nothing is written, whatever resync or watch traffic happens meanwhile. The
    // window starts once the last status write of the way to Ready has landed.
    let converged = s.op.settled(Duration::from_secs(3)).await;
    tokio::time::sleep(Duration::from_secs(15)).await;
    let quiet = operator::writes(&s.op.metrics()) - converged;
    assert_eq!(quiet, 0, "writes while converged");

    // One change that must reach another service: the last service's port, which the caller's
    // URL and egress rule follow.
    let changed = Instant::now();
    apply_ms(&s.api, &format!("svc-{}", n - 1), spec(n - 1, n, 9090)).await.unwrap();
    loop {
        let caller = deployments.get(&format!("svc-{}", n - 2)).await.unwrap();
        let env = caller.spec.and_then(|s| s.template.spec).map(|p| p.containers[0].env.clone().unwrap_or_default());
        if env.iter().flatten().any(|e| e.value.as_deref().is_some_and(|v| v.ends_with(":9090"))) {
            break;
        }
        assert!(changed.elapsed() < Duration::from_secs(60), "the caller never saw the new port");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let propagated = changed.elapsed();

    let mib = |kib: u64| kib as f64 / 1024.0;
    let rows = [
        format!("| services (each calling the next) | {n} |"),
        format!("| operator build | {build} |"),
        format!("| all applied (one server-side apply each) | {:.1} s |", applied.as_secs_f64()),
        format!("| first apply → every Deployment created | {:.1} s |", all_created.as_secs_f64()),
        format!(
            "| first apply → all Ready (pods up, as fast as the cluster allows) | {:.1} s |",
            all_ready.as_secs_f64()
        ),
        format!("| reconciles until all Ready | {reconciles} |"),
        format!("| API writes / gets / lists until all Ready | {writes} / {gets} / {lists} |"),
        format!("| writes in 15 s once converged | {quiet} |"),
        format!("| a callee's port changed → its caller's Deployment updated | {:.2} s |", propagated.as_secs_f64()),
        format!(
            "| operator memory (RSS): idle / all Ready / peak | {:.0} / {:.0} / {:.0} MiB |",
            mib(rss_idle),
            mib(rss),
            mib(peak)
        ),
    ];
    println!("\n| what | figure |\n| --- | --- |\n{}", rows.join("\n"));
    s.ns.cleanup().await;
}
