//! README claims about the running operator that no other test showed: it never writes a
//! Microservice's spec; the disruption budget is pruned when one replica is left; `kubectl wait
//! --for=condition=Ready` right after an update waits for that update; the flags that shape what
//! it renders (`--ingress-namespace`, `--cluster-domain`, `--node-local-dns`, also as `FLOTILLA_*`
//! variables) reach the children; `--concurrency` and the Lease's namespace reach a running
//! operator; it waits up to 60 s for its API at start, and no longer; an upgrade rolls pods once
//! and keeps a StatefulSet's claim template. Needs `make cluster-up`.

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
        if st.observed_generation == Some(generation)
            && ready.is_some_and(|c| c.status == "True" && c.observed_generation == Some(generation))
        {
            anyhow::Ok(true)
        } else {
            Err(anyhow!("status: {:?}", st.conditions))
        }
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

/// Without its API the operator does not wait for ever: started under an account that is never
/// granted anything, it gives up after the 60 s the README states, exits with a failure, and
/// its log names what it could not do.
#[tokio::test]
async fn the_operator_gives_up_on_its_api_after_60_s() {
    let Some(client) = client().await else { return };
    install(&client).await;
    let ns = TestNamespace::new(&client, "claims-no-rbac").await;
    let user = format!("system:serviceaccount:flotilla-system:nobody-{}", ns.name());
    let lease = format!("lease-{}", ns.name());
    let opts = OperatorOptions { namespace: Some(ns.name()), lease: &lease, tag: "claims-no-rbac" };
    let mut op = Operator::start_as(&opts, &["--leader-elect=false".to_string()], &user);
    let status = op.wait_exit(Duration::from_secs(120)).await;
    let waited = op.started.elapsed();
    println!("no rights at start -> the operator exits: {:.1}s", waited.as_secs_f64());
    let status = status.unwrap_or_else(|| panic!("still running after 120 s; {}", op.diagnosis()));
    assert!(!status.success(), "a failure exit: {status}");
    // The last retry comes at most 5 s before the 60 s are up; 15 s of margin for a busy machine.
    assert!(
        (54.0..75.0).contains(&waited.as_secs_f64()),
        "gave up after {:.1}s, not about 60 s: {}",
        waited.as_secs_f64(),
        op.log_tail()
    );
    let logs = op.logs();
    assert!(
        logs.contains("cannot reach the Kubernetes API or the Microservice CRD is missing")
            && logs.contains("forbidden"),
        "the log says why: {}",
        op.log_tail()
    );
    ns.cleanup().await;
}

/// `--concurrency` bounds the reconciles running at once, and the Lease lives in the namespace
/// `POD_NAMESPACE` names (the pod's namespace, as the Deployment passes it), under the shipped
/// leader-election Role bound there.
#[tokio::test]
async fn concurrency_and_the_lease_namespace_reach_a_running_operator() {
    let Some(client) = client().await else { return };
    install(&client).await;
    let ns = TestNamespace::new(&client, "claims-concurrency").await;
    let n = ns.name().to_string();
    let role =
        std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("config/rbac/leader_election.yaml"))
            .unwrap()
            .replace("namespace: flotilla-system\nrules", &format!("namespace: {n}\nrules"))
            .replace("  namespace: flotilla-system\nroleRef", &format!("  namespace: {n}\nroleRef"));
    assert_eq!(role.matches(&format!("namespace: {n}")).count(), 2, "the Role and its binding moved: {role}");
    operator::apply_yaml(&client, &role, None).await;
    let lease = format!("lease-{n}");
    let opts = OperatorOptions { namespace: Some(&n), lease: &lease, tag: "claims-concurrency" };
    let mut op = Operator::start_with_env(&opts, &["--concurrency=1".to_string()], &[("POD_NAMESPACE", n.as_str())]);
    op.wait_ready().await;
    op.wait_leading(&client).await; // in `n`, where POD_NAMESPACE put it
    let in_system: Api<k8s_openapi::api::coordination::v1::Lease> = Api::namespaced(client.clone(), "flotilla-system");
    assert!(in_system.get_opt(&lease).await.unwrap().is_none(), "no Lease in flotilla-system");

    let api: Api<Microservice> = ns.api();
    let names: Vec<String> = (0..24).map(|i| format!("svc-{i}")).collect();
    let applies = names.iter().map(|name| apply_ms(&api, name, json!({"image": "registry.example/app:1"})));
    for r in futures::future::join_all(applies).await {
        r.unwrap();
    }
    // Reconciles started minus finished, sampled while the burst is worked off: the counters
    // are read in that order, so a sample never counts more than ran at once.
    let mut most = 0;
    let mut samples = 0;
    let deadline = Instant::now() + WAIT;
    while op.services_reconciled() < names.len() as u64 || samples < 20 {
        let m = op.metrics();
        let started = operator::counter(&m, "flotilla_reconciles_total");
        let finished = operator::counter(&m, "flotilla_reconcile_duration_seconds_count");
        most = most.max(started.saturating_sub(finished));
        samples += 1;
        assert!(Instant::now() < deadline, "{} of {} reconciled", op.services_reconciled(), names.len());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    println!("--concurrency=1: at most {most} reconcile(s) at once in {samples} samples");
    assert!(most <= 1, "{most} reconciles ran at once with --concurrency=1");
    for name in &names {
        ready_at(&api, name, 1).await;
    }
    op.kill();
    ns.cleanup().await;
}

/// The live object as an older release of Flotilla would have written it: without the fields
/// the server sets, and without the pods' seccomp profile (`pod` points at the pod spec).
fn as_an_older_release(live: serde_json::Value, pod: &str) -> serde_json::Value {
    let mut old = live;
    let meta = old["metadata"].as_object_mut().unwrap();
    for field in ["managedFields", "resourceVersion", "uid", "creationTimestamp", "generation"] {
        meta.remove(field);
    }
    old.as_object_mut().unwrap().remove("status");
    let removed =
        old.pointer_mut(&format!("{pod}/securityContext")).unwrap().as_object_mut().unwrap().remove("seccompProfile");
    assert!(removed.is_some(), "the rendered pods have a seccomp profile");
    old
}

fn seccomp(obj: &serde_json::Value) -> Option<&serde_json::Value> {
    obj.pointer("/spec/template/spec/securityContext/seccompProfile")
}

/// An upgrade to a release whose defaults differ rolls each service's pods, and each database
/// pod, once, and keeps the claim template of an existing StatefulSet (the API server refuses
/// a change to it); the data and credentials are untouched. The older release is played by
/// rewriting the children as Flotilla's field manager while no operator runs: pods without a
/// seccomp profile, and a StatefulSet (made again, orphaning its pods and volume claim) whose
/// claim template lacks the selector label that today's release adds.
#[tokio::test]
async fn an_upgrade_rolls_pods_once_and_keeps_the_claim_template() {
    let Some(mut s) = setup("claims-upgrade").await else { return };
    let class = format!("pg-{}", s.ns.name());
    let _class = operator::embedded_postgres_class(&s.client, &class).await;
    apply_ms(&s.api, "db", json!({"image": "registry.example/db-app:1", "database": {"class": class}})).await.unwrap();
    ready_at(&s.api, "db", 1).await;
    s.op.kill();
    let deployments: Api<Deployment> = s.ns.api();
    let sets: Api<k8s_openapi::api::apps::v1::StatefulSet> = s.ns.api();
    let pvcs: Api<k8s_openapi::api::core::v1::PersistentVolumeClaim> = s.ns.api();
    let secrets: Api<k8s_openapi::api::core::v1::Secret> = s.ns.api();
    let pvc_uid = pvcs.get("data-db-db-0").await.unwrap().metadata.uid;
    let password = secrets.get("db-db-credentials").await.unwrap().data.unwrap()["password"].clone();
    let as_flotilla = PatchParams::apply("flotilla").force();

    let live = serde_json::to_value(deployments.get("db").await.unwrap()).unwrap();
    let old = as_an_older_release(live, "/spec/template/spec");
    let old_deployment = deployments.patch("db", &as_flotilla, &Patch::Apply(&old)).await.unwrap();
    assert!(seccomp(&serde_json::to_value(&old_deployment).unwrap()).is_none(), "the older release's Deployment");
    let deployment_generation = old_deployment.metadata.generation.unwrap();

    let live = serde_json::to_value(sets.get("db-db").await.unwrap()).unwrap();
    let mut old = as_an_older_release(live, "/spec/template/spec");
    let claim_labels =
        old.pointer_mut("/spec/volumeClaimTemplates/0/metadata/labels").unwrap().as_object_mut().unwrap();
    assert!(claim_labels.remove("flotilla.dev/microservice").is_some(), "today's claim template: {claim_labels:?}");
    let old_claim_template = old["spec"]["volumeClaimTemplates"].clone();
    sets.delete("db-db", &DeleteParams::orphan()).await.unwrap();
    wait_for("the StatefulSet gone, its pods and claim left", WAIT, || async {
        anyhow::Ok(sets.get_opt("db-db").await?.is_none())
    })
    .await;
    sets.patch("db-db", &as_flotilla, &Patch::Apply(&old)).await.unwrap();

    // The upgrade: a new operator.
    let lease = format!("lease-{}-2", s.ns.name());
    let opts = OperatorOptions { namespace: Some(s.ns.name()), lease: &lease, tag: "claims-upgrade-2" };
    let mut op = Operator::start(&opts);
    op.wait_ready().await;
    op.wait_leading(&s.client).await;
    wait_for("the Deployment and StatefulSet at today's defaults", WAIT, || async {
        let d = serde_json::to_value(deployments.get("db").await?)?;
        let st = serde_json::to_value(sets.get("db-db").await?)?;
        anyhow::Ok(seccomp(&d).is_some() && seccomp(&st).is_some())
    })
    .await;
    ready_at(&s.api, "db", 1).await;
    op.settled(Duration::from_secs(3)).await;
    // Once: one more generation each, and no more after the operator has settled.
    let d = deployments.get("db").await.unwrap();
    assert_eq!(d.metadata.generation, Some(deployment_generation + 1), "the Deployment's pods rolled once");
    let st = sets.get("db-db").await.unwrap();
    assert_eq!(st.metadata.generation, Some(2), "the StatefulSet's pods rolled once");
    let claim_template = serde_json::to_value(&st.spec.as_ref().unwrap().volume_claim_templates).unwrap();
    assert_eq!(claim_template, old_claim_template, "the existing claim template is kept");
    assert_eq!(pvcs.get("data-db-db-0").await.unwrap().metadata.uid, pvc_uid, "the same volume claim");
    let now = secrets.get("db-db-credentials").await.unwrap().data.unwrap()["password"].clone();
    assert_eq!(now, password, "the same credentials");
    let ms = s.api.get("db").await.unwrap();
    let stalled = ms.status.iter().flat_map(|st| &st.conditions).find(|c| c.type_ == "Stalled").cloned();
    assert_eq!(stalled.map(|c| c.status).as_deref(), Some("False"));
    op.kill();
    s.ns.cleanup().await;
}
