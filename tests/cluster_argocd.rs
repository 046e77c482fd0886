//! Argo CD delivers examples/shop from Git: a real repo-server and application-controller
//! (tests/gitops) sync it from a repository served on 127.0.0.1, with the health check shipped in
//! config/argocd/ installed as the README says. One test, in steps, since the shop's namespace
//! and its default DatabaseClass are the example's own.

mod gitops;
mod operator;
mod support;

use std::time::{Duration, Instant};

use flotilla::api::Microservice;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, PersistentVolumeClaim, Secret};
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams};
use serde_json::{Value, json};

use operator::{Operator, OperatorOptions, install};

const SHOP: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/shop");
/// The controller's resync period (timeout.reconciliation), short so a test sees several.
const RESYNC: u32 = 10;

/// The example's files as a team keeps them in Git. Argo CD would build `kustomization.yaml`
/// with a `kustomize` binary; the plain manifests are the same objects.
fn shop_files() -> Vec<(String, String)> {
    let mut files: Vec<(String, String)> = std::fs::read_dir(SHOP)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().is_some_and(|n| n != "kustomization.yaml"))
        .map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read_to_string(&p).unwrap()))
        .collect();
    files.sort();
    files
}

struct App {
    api: Api<DynamicObject>,
}

impl App {
    async fn get(&self) -> Value {
        self.api.get("shop").await.expect("the Application").data
    }

    /// Asks for a refresh now (a webhook from the Git server would do the same).
    async fn refresh(&self, kind: &str) {
        let patch = json!({"metadata": {"annotations": {"argocd.argoproj.io/refresh": kind}}});
        self.api.patch("shop", &PatchParams::default(), &Patch::Merge(&patch)).await.expect("refresh");
    }
}

fn sync_status(app: &Value) -> &str {
    app.pointer("/status/sync/status").and_then(Value::as_str).unwrap_or_default()
}
fn health(app: &Value) -> &str {
    app.pointer("/status/health/status").and_then(Value::as_str).unwrap_or_default()
}
fn revision(app: &Value) -> &str {
    app.pointer("/status/sync/revision").and_then(Value::as_str).unwrap_or_default()
}
fn syncs(app: &Value) -> usize {
    app.pointer("/status/history").and_then(Value::as_array).map_or(0, Vec::len)
}
fn summary(app: &Value) -> String {
    format!(
        "sync={} health={} revision={} operation={} {}",
        sync_status(app),
        health(app),
        revision(app),
        app.pointer("/status/operationState/phase").and_then(Value::as_str).unwrap_or_default(),
        app.pointer("/status/operationState/message").and_then(Value::as_str).unwrap_or_default()
    )
}

/// Health Argo CD gives one resource of the Application: (status, message).
fn resource_health(app: &Value, kind: &str, name: &str) -> Option<(String, String)> {
    let resources = app.pointer("/status/resources")?.as_array()?;
    let r = resources.iter().find(|r| r["kind"] == kind && r["name"] == name)?;
    let s = |k: &str| r["health"][k].as_str().unwrap_or_default().to_string();
    Some((s("status"), s("message")))
}

async fn wait_app(
    app: &App,
    what: &str,
    timeout: Duration,
    argocd: &mut gitops::ArgoCd,
    ok: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + timeout;
    loop {
        let a = app.get().await;
        if ok(&a) {
            return a;
        }
        if Instant::now() > deadline || !argocd.running() {
            panic!("timed out waiting for {what}: {}\n{}", summary(&a), argocd.diagnosis());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn argo_cd_syncs_the_shop_keeps_it_synced_rolls_out_refuses_prunes_and_self_heals() {
    let Some(client) = support::client().await else { return };
    install(&client).await;
    let argo_ns = support::TestNamespace::new(&client, "argocd").await;
    let dir = gitops::scratch("argocd");
    let mut argocd = gitops::ArgoCd::start(&client, argo_ns.name(), &dir, RESYNC).await;
    let mut op =
        Operator::start(&OperatorOptions { namespace: Some("shop"), lease: "lease-argocd-shop", tag: "argocd" });
    op.wait_ready().await;
    // A shop left by an earlier run (or by `make demo`) would be another's: with the operator
    // running (its finalizer keeps a service with a database until its data is retained), wait
    // until it is gone.
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces.delete("shop", &DeleteParams::default()).await.ok();
    support::wait_for("no namespace shop", Duration::from_secs(180), || async {
        anyhow::Ok(namespaces.get_opt("shop").await?.is_none())
    })
    .await;

    let git = gitops::GitServer::start(&dir);
    let repo = git.repo("shop");
    let files = shop_files();
    let commit: Vec<(&str, Option<&str>)> = files.iter().map(|(n, c)| (n.as_str(), Some(c.as_str()))).collect();
    let first = repo.commit(&commit, "the shop");

    let pushed = Instant::now();
    let api = gitops::api(&client, argo_ns.name(), "argoproj.io/v1alpha1", "Application").await;
    gitops::apply(
        &client,
        argo_ns.name(),
        json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Application", "metadata": {"name": "shop"},
            "spec": {"project": "default",
                "source": {"repoURL": repo.url, "targetRevision": "main", "path": "."},
                "destination": {"server": "https://kubernetes.default.svc", "namespace": "shop"},
                "syncPolicy": {"automated": {"prune": true, "selfHeal": true},
                    "retry": {"limit": 1, "backoff": {"duration": "1s", "factor": 1, "maxDuration": "5s"}}}}}),
    )
    .await;
    let app = App { api };

    // 1. Synced and Healthy, each Microservice's health from the shipped check.
    let a = wait_app(&app, "Synced and Healthy", Duration::from_secs(240), &mut argocd, |a| {
        sync_status(a) == "Synced" && health(a) == "Healthy" && revision(a) == first
    })
    .await;
    println!("Argo CD: Application created -> Synced+Healthy: {:.1}s", pushed.elapsed().as_secs_f64());
    let shop: Api<Microservice> = Api::namespaced(client.clone(), "shop");
    for name in ["catalog", "frontend", "notifications", "orders", "payments"] {
        let ms = shop.get(name).await.unwrap();
        let ready = ms.status.unwrap().conditions.into_iter().find(|c| c.type_ == "Ready").unwrap();
        assert_eq!(
            resource_health(&a, "Microservice", name),
            Some(("Healthy".to_string(), ready.message)),
            "{name}: the health is the script's (Ready's message)"
        );
    }

    // 2. It stays Synced over more than one resync period, with hard refreshes, and no sync
    //    operation runs again.
    let synced_once = syncs(&a);
    let watch = Instant::now();
    let mut refreshed = Instant::now();
    app.refresh("hard").await;
    while watch.elapsed() < Duration::from_secs(u64::from(RESYNC) * 3 + 5) {
        let a = app.get().await;
        assert_eq!(sync_status(&a), "Synced", "went out of sync without a change: {}", summary(&a));
        assert_eq!(syncs(&a), synced_once, "a sync ran again without a change: {}", summary(&a));
        if refreshed.elapsed() > Duration::from_secs(8) {
            app.refresh("hard").await;
            refreshed = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // 3. A new image: Progressing, then Healthy.
    let catalog = files.iter().find(|(n, _)| n == "catalog.yaml").unwrap().1.replace("catalog:1.9.4", "catalog:1.9.5");
    let second = repo.commit(&[("catalog.yaml", Some(&catalog))], "catalog 1.9.5");
    let pushed = Instant::now();
    app.refresh("normal").await;
    let mut seen_progressing = false;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let a = app.get().await;
        let h = resource_health(&a, "Microservice", "catalog").map(|h| h.0);
        seen_progressing |= revision(&a) == second && h.as_deref() == Some("Progressing");
        if revision(&a) == second
            && sync_status(&a) == "Synced"
            && health(&a) == "Healthy"
            && h.as_deref() == Some("Healthy")
        {
            break;
        }
        assert!(Instant::now() < deadline, "the new image never rolled out: {}\n{}", summary(&a), argocd.diagnosis());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!("Argo CD: git push (new image) -> Synced+Healthy: {:.1}s", pushed.elapsed().as_secs_f64());
    assert!(seen_progressing, "catalog was never seen Progressing during its rollout");
    let deployment: Deployment = Api::namespaced(client.clone(), "shop").get("catalog").await.unwrap();
    let image = deployment.spec.unwrap().template.spec.unwrap().containers[0].image.clone();
    assert_eq!(image.as_deref(), Some("ghcr.io/acme/catalog:1.9.5"));

    // 4. An invalid spec: the sync fails with the API server's CEL message.
    let frontend =
        files.iter().find(|(n, _)| n == "frontend.yaml").unwrap().1.replace("minReplicas: 2", "minReplicas: 20");
    let third = repo.commit(&[("frontend.yaml", Some(&frontend))], "frontend: min above max");
    app.refresh("normal").await;
    let a = wait_app(&app, "the sync of an invalid spec to fail", Duration::from_secs(120), &mut argocd, |a| {
        a.pointer("/status/operationState/operation/sync/revision").and_then(Value::as_str) == Some(third.as_str())
            && a.pointer("/status/operationState/phase").and_then(Value::as_str) == Some("Failed")
    })
    .await;
    let message = a.pointer("/status/operationState/message").and_then(Value::as_str).unwrap_or_default();
    assert!(
        message.contains("spec.autoscaling.minReplicas: Invalid value")
            && message.contains(flotilla::api::rules::MIN_ABOVE_MAX),
        "the failed sync does not give the API server's message: {}",
        summary(&a)
    );
    assert_eq!(sync_status(&a), "OutOfSync");
    // Fixed in Git: synced again.
    let fourth =
        repo.commit(&[("frontend.yaml", Some(&files.iter().find(|(n, _)| n == "frontend.yaml").unwrap().1))], "revert");
    app.refresh("normal").await;
    wait_app(&app, "the fix to sync", Duration::from_secs(120), &mut argocd, |a| {
        revision(a) == fourth && sync_status(a) == "Synced" && health(a) == "Healthy"
    })
    .await;

    // 5. A service with a database removed from Git: pruned, its data kept.
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), "shop");
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "shop");
    let claim_uid = pvcs.get("data-orders-db-0").await.expect("the orders database's volume claim").metadata.uid;
    let password = secrets.get("orders-db-credentials").await.expect("the orders credentials").data;
    let fifth = repo.commit(&[("orders.yaml", None)], "orders goes");
    app.refresh("normal").await;
    wait_app(&app, "orders to be pruned", Duration::from_secs(120), &mut argocd, |a| {
        revision(a) == fifth && sync_status(a) == "Synced"
    })
    .await;
    support::wait_for("the orders Microservice to be gone", Duration::from_secs(60), || async {
        anyhow::Ok(shop.get_opt("orders").await?.is_none())
    })
    .await;
    assert_eq!(pvcs.get("data-orders-db-0").await.expect("the volume claim is kept").metadata.uid, claim_uid);
    assert_eq!(secrets.get("orders-db-credentials").await.expect("the credentials are kept").data, password);

    // 6. Hand edits: a child's is reverted by the operator, the Microservice's by selfHeal.
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "shop");
    let edit = json!({"spec": {"template": {"spec": {"containers": [{"name": "catalog", "image": "evil:1"}]}}}});
    deployments.patch("catalog", &PatchParams::default(), &Patch::Strategic(&edit)).await.unwrap();
    support::wait_for("the operator to revert the Deployment", Duration::from_secs(60), || async {
        let d = deployments.get("catalog").await?;
        anyhow::Ok(
            d.spec.unwrap().template.spec.unwrap().containers[0].image.as_deref() == Some("ghcr.io/acme/catalog:1.9.5"),
        )
    })
    .await;
    let edited = Instant::now();
    shop.patch("catalog", &PatchParams::default(), &Patch::Merge(&json!({"spec": {"replicas": 5}}))).await.unwrap();
    support::wait_for("selfHeal to revert the Microservice", Duration::from_secs(90), || async {
        anyhow::Ok(shop.get("catalog").await?.spec.replicas == Some(2))
    })
    .await;
    println!("Argo CD: hand edit of a Microservice -> reverted by selfHeal: {:.1}s", edited.elapsed().as_secs_f64());

    // Leave nothing behind: the shop's namespace and its default DatabaseClass are the example's.
    // The operator runs until the namespace is gone, so that its finalizers are honoured.
    app.api.delete("shop", &DeleteParams::default()).await.ok();
    drop(argocd);
    namespaces.delete("shop", &DeleteParams::default()).await.ok();
    support::wait_for("namespace shop to be gone", Duration::from_secs(180), || async {
        anyhow::Ok(namespaces.get_opt("shop").await?.is_none())
    })
    .await;
    drop(op);
    let classes: Api<flotilla::api::DatabaseClass> = Api::all(client.clone());
    classes.delete("postgres", &DeleteParams::default()).await.ok();
    argo_ns.cleanup().await;
}
