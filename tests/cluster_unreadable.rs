//! A Microservice the operator cannot read (here: written through a CRD that knows a port
//! protocol this build does not, as after an operator rollback) never stops the watch for the
//! others: it is reported on its own status, its children are left alone, the others are
//! reconciled, the services it calls keep admitting it, one being deleted keeps its database
//! finalizer until it can be read, and a restarted operator still becomes ready and does the same. In its own test binary
//! because it changes the shared CRD for a moment. Needs `make cluster-up`.

mod operator;
mod support;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::anyhow;
use flotilla::api::Microservice;
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::ResourceExt;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use operator::{Operator, OperatorOptions, apply_file, apply_ms, setup};
use serde_json::json;
use support::wait_for;

const PROTOCOL_ENUM: &str =
    "/spec/versions/0/schema/openAPIV3Schema/properties/spec/properties/ports/items/properties/protocol/enum";

async fn wait_ready(api: &Api<Microservice>, name: &str) {
    wait_for(&format!("{name} Ready"), Duration::from_secs(60), || async {
        let ms = api.get(name).await?;
        let fresh = ms.status.as_ref().and_then(|s| s.observed_generation) == ms.metadata.generation;
        let ready = ms.status.iter().flat_map(|s| &s.conditions).any(|c| c.type_ == "Ready" && c.status == "True");
        if fresh && ready { anyhow::Ok(true) } else { Err(anyhow!("status: {:?}", ms.status)) }
    })
    .await;
}

fn admits(np: &NetworkPolicy, caller: &str) -> bool {
    np.spec.iter().flat_map(|s| s.ingress.iter().flatten()).flat_map(|r| r.from.iter().flatten()).any(|peer| {
        peer.pod_selector
            .as_ref()
            .and_then(|s| s.match_labels.as_ref())
            .is_some_and(|m| m.get("flotilla.dev/microservice").map(String::as_str) == Some(caller))
    })
}

/// Waits until `name` reports `InvalidObject` for its current generation, and returns it.
async fn wait_stalled_at_generation(dynamic: &Api<DynamicObject>, name: &str) -> DynamicObject {
    wait_for(&format!("{name} Stalled=True, InvalidObject, at its generation"), Duration::from_secs(30), || async {
        let obj = dynamic.get(name).await?;
        let generation = obj.metadata.generation;
        let conditions = obj.data.pointer("/status/conditions").cloned().unwrap_or_default();
        let observed = obj.data.pointer("/status/observedGeneration").and_then(|g| g.as_i64());
        let stalled = conditions
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["type"] == "Stalled" && c["status"] == "True" && c["reason"] == "InvalidObject");
        if stalled && observed.is_some() && observed == generation {
            anyhow::Ok(true)
        } else {
            Err(anyhow!("generation {generation:?}, observed {observed:?}, conditions {conditions}"))
        }
    })
    .await;
    dynamic.get(name).await.unwrap()
}

#[tokio::test]
async fn an_unreadable_microservice_never_stops_the_others() {
    let Some(mut s) = setup("unreadable").await else { return };
    let ns = s.ns.name().to_string();
    apply_ms(&s.api, "callee", json!({"image": "registry.example/callee:1"})).await.unwrap();
    apply_ms(&s.api, "caller", json!({"image": "registry.example/caller:1", "dependencies": [{"service": "callee"}]}))
        .await
        .unwrap();
    // A service with a database: its finalizer decides on the data when it is deleted.
    let class = format!("pg-{ns}");
    let _class = operator::embedded_postgres_class(&s.client, &class).await;
    let keeper = |protocol: &str| {
        json!({"image": "registry.example/keeper:1", "database": {"class": class},
            "ports": [{"name": "http", "port": 8080, "protocol": protocol}]})
    };
    apply_ms(&s.api, "keeper", keeper("TCP")).await.unwrap();
    wait_ready(&s.api, "callee").await;
    wait_ready(&s.api, "caller").await;
    wait_ready(&s.api, "keeper").await;
    let pvcs = s.ns.api::<PersistentVolumeClaim>();
    let pvc_uid = pvcs.get("data-keeper-db-0").await.unwrap().metadata.uid;
    let policies = s.ns.api::<NetworkPolicy>();
    assert!(admits(&policies.get("callee").await.unwrap(), "caller"));

    // A CRD that allows any protocol, as a newer build's might: the API server stores what
    // this build cannot read. The shipped CRD is put back at once.
    let crds: Api<CustomResourceDefinition> = Api::all(s.client.clone());
    let relax = json!([{"op": "remove", "path": PROTOCOL_ENUM}]);
    crds.patch(
        "microservices.flotilla.dev",
        &PatchParams::default(),
        &Patch::Json::<()>(serde_json::from_value(relax).unwrap()),
    )
    .await
    .unwrap();
    let unknown = json!({"image": "registry.example/caller:1", "dependencies": [{"service": "callee"}],
        "ports": [{"name": "http", "port": 8080, "protocol": "QUIC"}]});
    wait_for("the relaxed CRD to accept protocol QUIC", Duration::from_secs(30), || async {
        // The typed client cannot read the answer back either: only acceptance counts.
        match apply_ms(&s.api, "caller", unknown.clone()).await {
            Ok(_) | Err(kube::Error::SerdeError(_)) => Ok(true),
            Err(e) => Err(anyhow!("{e}")),
        }
    })
    .await;
    match apply_ms(&s.api, "keeper", keeper("QUIC")).await {
        Ok(_) | Err(kube::Error::SerdeError(_)) => {}
        Err(e) => panic!("the relaxed CRD refused keeper's protocol QUIC: {e}"),
    }
    apply_file(&s.client, &PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("crds/flotilla.dev.yaml")).await;
    let crd = serde_json::to_value(crds.get("microservices.flotilla.dev").await.unwrap()).unwrap();
    assert!(crd.pointer(PROTOCOL_ENUM).is_some(), "the shipped CRD is back");

    // Reported on its own status, naming the field, with an Event.
    let dynamic: Api<DynamicObject> =
        Api::namespaced_with(s.client.clone(), &ns, &ApiResource::erase::<Microservice>(&()));
    wait_for("caller Stalled=True with reason InvalidObject", Duration::from_secs(30), || async {
        let obj = dynamic.get("caller").await?;
        let conditions = obj.data.pointer("/status/conditions").cloned().unwrap_or_default();
        let stalled = conditions.as_array().into_iter().flatten().find(|c| c["type"] == "Stalled");
        match stalled {
            Some(c) if c["status"] == "True" && c["reason"] == "InvalidObject" => {
                let message = c["message"].as_str().unwrap_or_default();
                assert!(message.contains("spec.ports[0].protocol") && message.contains("QUIC"), "{message}");
                anyhow::Ok(true)
            }
            _ => Err(anyhow!("conditions: {conditions}")),
        }
    })
    .await;
    let events = s.ns.api::<Event>();
    wait_for("an InvalidObject Event", Duration::from_secs(30), || async {
        let list = events.list(&ListParams::default()).await?;
        anyhow::Ok(list.items.iter().any(|e| e.reason.as_deref() == Some("InvalidObject")))
    })
    .await;
    // An unreadable object being deleted keeps its finalizer: its data is not decided on blind.
    // The deletion is a new generation; its status, written for that generation, shows that the
    // operator has looked at it since.
    let before = wait_stalled_at_generation(&dynamic, "keeper").await;
    s.api.delete("keeper", &DeleteParams::default()).await.ok();
    let deleting = wait_stalled_at_generation(&dynamic, "keeper").await;
    assert!(deleting.metadata.deletion_timestamp.is_some());
    assert!(deleting.metadata.generation > before.metadata.generation, "the deletion is a new generation");
    assert!(deleting.finalizers().iter().any(|f| f == "flotilla.dev/database-retention"), "{:?}", deleting.metadata);
    assert_eq!(pvcs.get("data-keeper-db-0").await.unwrap().metadata.uid, pvc_uid);
    // Readable again, it is decided on as its policy says (Retain: the claim stays), and goes.
    match apply_ms(&s.api, "keeper", keeper("TCP")).await {
        Ok(_) | Err(kube::Error::SerdeError(_)) => {}
        Err(e) => panic!("keeper fixed while being deleted: {e}"),
    }
    wait_for("keeper, readable again, to go", Duration::from_secs(60), || async {
        anyhow::Ok(dynamic.get_opt("keeper").await?.is_none())
    })
    .await;
    let kept = pvcs.get("data-keeper-db-0").await.unwrap();
    assert_eq!(kept.metadata.uid, pvc_uid, "the volume claim is retained");
    assert!(kept.annotations().contains_key("flotilla.dev/retained-from"), "{:?}", kept.metadata.annotations);

    // Its children are left as they were.
    let deployment = s.ns.api::<k8s_openapi::api::apps::v1::Deployment>().get("caller").await.unwrap();
    assert!(deployment.metadata.deletion_timestamp.is_none());

    // The others go on: a new service is reconciled, and the callee, changed, still admits the
    // caller as last read.
    apply_ms(&s.api, "newcomer", json!({"image": "registry.example/newcomer:1"})).await.unwrap();
    wait_ready(&s.api, "newcomer").await;
    apply_ms(&s.api, "callee", json!({"image": "registry.example/callee:2"})).await.unwrap();
    wait_ready(&s.api, "callee").await;
    assert!(admits(&policies.get("callee").await.unwrap(), "caller"), "the callee still admits the caller");

    // A restarted operator lists the unreadable object first, and still becomes ready and works.
    s.op.kill();
    let lease = format!("lease-{ns}");
    let mut op = Operator::start(&OperatorOptions { namespace: Some(&ns), lease: &lease, tag: "unreadable-2" });
    op.wait_ready().await;
    op.wait_leading(&s.client).await;
    apply_ms(&s.api, "late", json!({"image": "registry.example/late:1"})).await.unwrap();
    wait_ready(&s.api, "late").await;
    // What of the caller can be read stands in for it: the callee still admits it.
    apply_ms(&s.api, "callee", json!({"image": "registry.example/callee:3"})).await.unwrap();
    wait_ready(&s.api, "callee").await;
    assert!(admits(&policies.get("callee").await.unwrap(), "caller"), "after a restart too");

    // Fixed, it is reconciled again.
    apply_ms(
        &s.api,
        "caller",
        json!({"image": "registry.example/caller:1", "dependencies": [{"service": "callee"}],
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]}),
    )
    .await
    .unwrap();
    wait_ready(&s.api, "caller").await;
    let caller = s.api.get("caller").await.unwrap();
    let stalled = caller.status.iter().flat_map(|s| &s.conditions).find(|c| c.type_ == "Stalled").unwrap();
    assert_eq!(stalled.status, "False");
    assert!(!op.logs().contains("panicked"), "{}", op.diagnosis());
    s.ns.cleanup().await;
}
