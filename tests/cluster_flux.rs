//! Flux delivers Microservices from Git: a real source-controller and kustomize-controller
//! (tests/gitops) apply them from a repository served on 127.0.0.1, with `wait: true` and the
//! health checks shipped in config/flux/.

mod gitops;
mod operator;
mod support;

use std::time::{Duration, Instant};

use flotilla::api::Microservice;
use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, ListParams, Patch, PatchParams};
use serde_json::json;

use operator::setup;

const SERVICES: &str = r#"
apiVersion: flotilla.dev/v1alpha1
kind: Microservice
metadata: {name: api}
spec:
  image: registry.example/api:1
  replicas: 2
---
apiVersion: flotilla.dev/v1alpha1
kind: Microservice
metadata: {name: web}
spec:
  image: registry.example/web:1
  dependencies: [{service: api}]
"#;

/// The health checks a Flux user copies into a Kustomization, as shipped.
fn health_check_exprs() -> serde_json::Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/config/flux/health-check-exprs.yaml");
    serde_yaml_ng::from_str(&std::fs::read_to_string(path).expect("config/flux/health-check-exprs.yaml")).unwrap()
}

fn ready_at_generation(ms: &Microservice) -> bool {
    let generation = ms.metadata.generation;
    let status = ms.status.as_ref();
    status.is_some_and(|s| s.observed_generation == generation)
        && status
            .into_iter()
            .flat_map(|s| &s.conditions)
            .any(|c| c.type_ == "Ready" && c.status == "True" && c.observed_generation == generation)
}

/// Asks Flux to look at the repository and the Kustomization now, as `flux reconcile` does.
async fn reconcile_now(api: &Api<kube::api::DynamicObject>, name: &str) {
    let at = k8s_openapi::jiff::Timestamp::now().to_string();
    let patch = json!({"metadata": {"annotations": {"reconcile.fluxcd.io/requestedAt": at}}});
    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch)).await.expect("request a reconcile");
}

#[tokio::test]
async fn a_kustomization_with_wait_is_ready_only_once_every_microservice_is_and_names_the_one_that_fails() {
    let Some(mut s) = setup("flux").await else { return };
    let ns = s.ns.name().to_string();
    let dir = gitops::scratch("flux");
    let mut flux = gitops::Flux::start(&s.client, &ns, &dir).await;
    let git = gitops::GitServer::start(&dir);
    let repo = git.repo("shop");
    repo.commit(&[("services.yaml", Some(SERVICES))], "api and web");
    s.op.wait_ready().await;

    let pushed = Instant::now();
    gitops::apply(
        &s.client,
        &ns,
        json!({"apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "GitRepository",
            "metadata": {"name": "shop"},
            "spec": {"url": repo.url, "ref": {"branch": "main"}, "interval": "1m", "timeout": "20s"}}),
    )
    .await;
    gitops::apply(
        &s.client,
        &ns,
        json!({"apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization",
            "metadata": {"name": "shop"},
            "spec": {"sourceRef": {"kind": "GitRepository", "name": "shop"}, "path": "./", "prune": true,
                "interval": "1m", "retryInterval": "5s", "timeout": "3m", "wait": true,
                "targetNamespace": ns, "healthCheckExprs": health_check_exprs()}}),
    )
    .await;

    // The Kustomization goes Ready only when both services are Ready: seen at the first moment
    // it says Ready, every Microservice already is, for its current generation.
    let kustomizations = gitops::api(&s.client, &ns, "kustomize.toolkit.fluxcd.io/v1", "Kustomization").await;
    let mut seen_waiting = false;
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let k = kustomizations.get("shop").await.expect("the Kustomization");
        let ready = gitops::condition(&k, "Ready");
        if ready.as_ref().is_some_and(|(status, _, _)| status == "True") {
            break;
        }
        let microservices = s.api.list(&ListParams::default()).await.unwrap().items;
        if microservices.len() == 2 && !microservices.iter().all(ready_at_generation) {
            seen_waiting = true;
        }
        assert!(
            Instant::now() < deadline && flux.running(),
            "the Kustomization never went Ready: {ready:?}\n{}",
            flux.diagnosis()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let synced = pushed.elapsed();
    let microservices = s.api.list(&ListParams::default()).await.unwrap().items;
    let names: Vec<String> = microservices.iter().filter_map(|m| m.metadata.name.clone()).collect();
    assert_eq!(names, ["api", "web"]);
    for ms in &microservices {
        assert!(
            ready_at_generation(ms),
            "the Kustomization went Ready before {:?} was: {:?}",
            ms.metadata.name,
            ms.status
        );
    }
    assert!(seen_waiting, "the Kustomization was never seen waiting for a Microservice that was not Ready yet");
    println!(
        "Flux: GitRepository + Kustomization applied -> Kustomization Ready (wait: true): {:.1}s",
        synced.as_secs_f64()
    );

    // A service that cannot become Ready: its Service's name is taken by someone else's object,
    // so Flotilla stalls it. The Kustomization fails, naming it.
    let services: Api<Service> = s.ns.api();
    let foreign: Service =
        serde_json::from_value(json!({"metadata": {"name": "taken"}, "spec": {"ports": [{"port": 80}]}})).unwrap();
    services.create(&Default::default(), &foreign).await.expect("someone else's Service");
    let taken = "apiVersion: flotilla.dev/v1alpha1\nkind: Microservice\nmetadata: {name: taken}\nspec: {image: registry.example/taken:1}\n";
    repo.commit(&[("taken.yaml", Some(taken))], "a service whose name is taken");
    let sources = gitops::api(&s.client, &ns, "source.toolkit.fluxcd.io/v1", "GitRepository").await;
    reconcile_now(&sources, "shop").await;
    let failing = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let k = kustomizations.get("shop").await.expect("the Kustomization");
        let ready = gitops::condition(&k, "Ready");
        if let Some((status, _, message)) = &ready
            && status == "False"
            && message.contains("taken")
        {
            assert!(message.contains("Microservice"), "{message}");
            println!(
                "Flux: a stalled Microservice -> Kustomization Ready=False in {:.1}s: {message}",
                failing.elapsed().as_secs_f64()
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the Kustomization never named the failing service: {ready:?}\n{}",
            flux.diagnosis()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let taken: Microservice = s.api.get("taken").await.unwrap();
    let stalled = taken.status.unwrap().conditions.into_iter().find(|c| c.type_ == "Stalled").unwrap();
    assert_eq!((stalled.status.as_str(), stalled.reason.as_str()), ("True", "ChildConflict"));
    drop(flux);
    s.ns.cleanup().await;
}

/// The example Kustomization carries the shipped expressions, not a copy that drifted.
#[test]
fn the_example_kustomization_carries_the_shipped_health_checks() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/config/flux/kustomization-example.yaml");
    let example: serde_json::Value = serde_yaml_ng::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    assert_eq!(example["spec"]["healthCheckExprs"], health_check_exprs());
    assert_eq!(example["spec"]["wait"], true);
}
