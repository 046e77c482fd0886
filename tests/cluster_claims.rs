//! README claims about the running operator that no other test showed: it never writes a
//! Microservice's spec; the disruption budget is pruned when one replica is left; `kubectl wait
//! --for=condition=Ready` right after an update waits for that update; the flags that shape what
//! it renders (`--ingress-namespace`, `--cluster-domain`, `--node-local-dns`, also as `FLOTILLA_*`
//! variables) reach the children. Needs `make cluster-up`.

mod operator;
mod support;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::anyhow;
use flotilla::api::Microservice;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::ClusterRoleBinding;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use operator::{Operator, OperatorOptions, apply_ms, install, setup};
use serde_json::json;
use support::{TestNamespace, client, kubeconfig_path, wait_for};

const WAIT: Duration = Duration::from_secs(60);

fn image(d: &Deployment) -> String {
    d.spec.as_ref().unwrap().template.spec.as_ref().unwrap().containers[0].image.clone().unwrap_or_default()
}

async fn ready_at(api: &Api<Microservice>, name: &str, generation: i64) {
    wait_for(&format!("{name} Ready at generation {generation}"), WAIT, || async {
        let ms = api.get(name).await?;
        let st = ms.status.unwrap_or_default();
        let ready = st.conditions.iter().find(|c| c.type_ == "Ready");
        anyhow::Ok(
            st.observed_generation == Some(generation)
                && ready.is_some_and(|c| c.status == "True" && c.observed_generation == Some(generation)),
        )
    })
    .await;
}

/// The Microservice's spec is the user's: every field entry of Flotilla's in its managedFields
/// is of the status subresource or of `metadata.finalizers`, never of the main resource's spec.
#[tokio::test]
async fn the_operator_never_writes_a_microservice_spec_and_prunes_the_disruption_budget() {
    let Some(s) = setup("claims-spec").await else { return };
    apply_ms(
        &s.api,
        "api",
        json!({"image": "registry.example/api:1", "replicas": 2,
               "database": {"deletionPolicy": "Delete"}}),
    )
    .await
    .unwrap();
    let pdbs: Api<PodDisruptionBudget> = s.ns.api();
    wait_for("a PodDisruptionBudget with 2 replicas", WAIT, || async {
        anyhow::Ok(pdbs.get_opt("api").await?.is_some())
    })
    .await;
    // One replica: nothing to keep available, so the budget goes.
    apply_ms(
        &s.api,
        "api",
        json!({"image": "registry.example/api:2", "replicas": 1, "database": {"deletionPolicy": "Delete"}}),
    )
    .await
    .unwrap();
    let took = wait_for("the PodDisruptionBudget pruned at 1 replica", WAIT, || async {
        anyhow::Ok(pdbs.get_opt("api").await?.is_none())
    })
    .await;
    println!("replicas 2 -> 1: PodDisruptionBudget pruned: {:.2}s", took.as_secs_f64());
    wait_for("the operator's status and finalizer entries", WAIT, || async {
        let ms = s.api.get("api").await?;
        let ours: Vec<_> =
            ms.metadata.managed_fields.iter().flatten().filter(|m| m.manager.as_deref() == Some("flotilla")).collect();
        anyhow::Ok(ours.iter().any(|m| m.subresource.as_deref() == Some("status")))
    })
    .await;
    let ms = s.api.get("api").await.unwrap();
    let mut seen_finalizer = false;
    for m in ms.metadata.managed_fields.iter().flatten().filter(|m| m.manager.as_deref() == Some("flotilla")) {
        let fields = m.fields_v1.as_ref().map(|f| f.0.clone()).unwrap_or_default();
        if m.subresource.as_deref() == Some("status") {
            continue;
        }
        let keys: Vec<&String> = fields.as_object().map(|o| o.keys().collect()).unwrap_or_default();
        assert_eq!(keys, ["f:metadata"], "flotilla wrote more than metadata on the main resource: {fields}");
        let meta: Vec<&String> = fields["f:metadata"].as_object().map(|o| o.keys().collect()).unwrap_or_default();
        assert!(meta.iter().all(|k| *k == "f:finalizers" || *k == "f:resourceVersion"), "metadata written: {fields}");
        seen_finalizer = true;
    }
    assert!(
        seen_finalizer,
        "the database finalizer is Flotilla's one write to the main resource: {:?}",
        ms.metadata.managed_fields
    );
    let spec_managers: Vec<String> = ms
        .metadata
        .managed_fields
        .iter()
        .flatten()
        .filter(|m| m.fields_v1.as_ref().is_some_and(|f| f.0.get("f:spec").is_some()))
        .filter_map(|m| m.manager.clone())
        .collect();
    assert_eq!(spec_managers, ["kubectl"], "only the user's apply owns the spec");
    s.ns.cleanup().await;
}

/// `kubectl wait --for=condition=Ready` straight after an update returns only once the update
/// has rolled out: the conditions carry their observedGeneration, which kubectl compares.
#[tokio::test]
async fn kubectl_wait_right_after_an_update_waits_for_it() {
    let Some(s) = setup("claims-wait").await else { return };
    let kubectl = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/cluster/bin/kubectl");
    apply_ms(&s.api, "web", json!({"image": "registry.example/web:1", "replicas": 2})).await.unwrap();
    ready_at(&s.api, "web", 1).await;
    let updated = apply_ms(&s.api, "web", json!({"image": "registry.example/web:2", "replicas": 2})).await.unwrap();
    let generation = updated.metadata.generation.unwrap();
    let started = Instant::now();
    let out = tokio::process::Command::new(&kubectl)
        .args(["wait", "--for=condition=Ready", "ms/web", "--timeout=60s", "-n", s.ns.name()])
        .env("KUBECONFIG", kubeconfig_path())
        .output()
        .await
        .expect("kubectl runs");
    assert!(out.status.success(), "kubectl wait: {}", String::from_utf8_lossy(&out.stderr));
    println!("update -> kubectl wait --for=condition=Ready returned: {:.2}s", started.elapsed().as_secs_f64());
    // What kubectl saw as Ready is the update: the status is of its generation, and the
    // Deployment runs the new image on every pod.
    let ms = s.api.get("web").await.unwrap();
    assert_eq!(ms.status.as_ref().and_then(|st| st.observed_generation), Some(generation));
    let d = s.ns.api::<Deployment>().get("web").await.unwrap();
    assert_eq!(image(&d), "registry.example/web:2");
    let st = d.status.unwrap();
    assert_eq!((st.updated_replicas, st.available_replicas), (Some(2), Some(2)), "rolled out when Ready");
    s.ns.cleanup().await;
}

/// The rendering flags reach the children: given as flags and as environment variables.
#[tokio::test]
async fn the_rendering_flags_reach_the_children() {
    let Some(client) = client().await else { return };
    install(&client).await;
    let ns = TestNamespace::new(&client, "claims-flags").await;
    let lease = format!("lease-{}", ns.name());
    let opts = OperatorOptions { namespace: Some(ns.name()), lease: &lease, tag: "claims-flags" };
    let args = ["--ingress-namespace=edge-gateways".to_string(), "--node-local-dns=169.254.20.10".to_string()];
    let mut op = Operator::start_with_env(&opts, &args, &[("FLOTILLA_CLUSTER_DOMAIN", "corp.internal")]);
    op.wait_ready().await;
    op.wait_leading(&client).await;
    let api: Api<Microservice> = ns.api();
    apply_ms(&api, "shop", json!({"image": "registry.example/shop:1", "expose": {"ingress": {"host": format!("{}.example.com", ns.name())}}}))
        .await
        .unwrap();
    let want_url = format!("http://shop.{}.svc.corp.internal:8080", ns.name());
    wait_for("status.url in the cluster domain given", WAIT, || async {
        let url = api.get("shop").await?.status.and_then(|s| s.url);
        if url.as_deref() == Some(want_url.as_str()) { anyhow::Ok(true) } else { Err(anyhow!("url {url:?}")) }
    })
    .await;
    let nps: Api<NetworkPolicy> = ns.api();
    wait_for("the NetworkPolicy", WAIT, || async { anyhow::Ok(nps.get_opt("shop").await?.is_some()) }).await;
    let np = serde_json::to_string(&nps.get("shop").await.unwrap()).unwrap();
    assert!(
        np.contains("\"kubernetes.io/metadata.name\":\"edge-gateways\""),
        "the ingress controller's namespace: {np}"
    );
    assert!(np.contains("\"cidr\":\"169.254.20.10/32\""), "NodeLocal DNS allowed: {np}");
    op.kill();
    ns.cleanup().await;
}

/// At start the operator waits up to 60 s for the Microservice API, so that the CRDs, the RBAC and
/// the operator can be applied in one GitOps sync: started under an account with no rights yet, it
/// waits, and goes on without a restart once the account is bound to Flotilla's ClusterRole.
#[tokio::test]
async fn the_operator_waits_for_its_rights_at_start() {
    let Some(client) = client().await else { return };
    install(&client).await;
    let ns = TestNamespace::new(&client, "claims-late-rbac").await;
    let account = format!("late-{}", ns.name());
    let user = format!("system:serviceaccount:flotilla-system:{account}");
    let lease = format!("lease-{}", ns.name());
    let opts = OperatorOptions { namespace: Some(ns.name()), lease: &lease, tag: "claims-late-rbac" };
    let mut op = Operator::start_as(&opts, &["--leader-elect=false".to_string()], &user);
    wait_for("the operator to say it waits for the Microservice API", WAIT, || async {
        anyhow::Ok(op.logs().contains("the Microservice API does not answer yet"))
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(op.alive(), "still waiting, not exited: {}", op.log_tail());
    let bindings: Api<ClusterRoleBinding> = Api::all(client.clone());
    let binding: ClusterRoleBinding = serde_json::from_value(json!({
        "metadata": {"name": account},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "flotilla"},
        "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": "flotilla-system"}],
    }))
    .unwrap();
    bindings.patch(&account, &PatchParams::apply("flotilla-tests").force(), &Patch::Apply(&binding)).await.unwrap();
    op.wait_ready().await;
    let api: Api<Microservice> = ns.api();
    apply_ms(&api, "late", json!({"image": "registry.example/late:1"})).await.unwrap();
    ready_at(&api, "late", 1).await;
    let _ = bindings.delete(&account, &DeleteParams::default()).await;
    op.kill();
    ns.cleanup().await;
}
