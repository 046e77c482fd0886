//! The operator on the real local cluster: create → Ready, update, drift, delete, scaling,
//! autoscaling under load, invalid input, zero writes when converged, leader election.
//! Every operator here runs with exactly the RBAC of config/rbac and watches only its test's
//! namespace. Needs `make cluster-up`; timings print with `-- --nocapture`.

mod operator;
mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::anyhow;
use flotilla::api::Microservice;
use flotilla::controller::is_subset;
use flotilla::render::{World, render};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Pod, Service, ServiceAccount};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use operator::{Operator, OperatorOptions, apply_ms, install, setup};
use serde_json::json;
use support::{TestNamespace, client, wait_for};

fn cond<'a>(ms: &'a Microservice, type_: &str) -> Option<&'a Condition> {
    ms.status.as_ref()?.conditions.iter().find(|c| c.type_ == type_)
}

/// Waits until condition `type_` has `status` for at least `generation`; returns the time taken.
async fn wait_condition(api: &Api<Microservice>, name: &str, type_: &str, status: &str, generation: i64) -> Duration {
    wait_for(&format!("{name} {type_}={status} at generation {generation}"), Duration::from_secs(120), || async {
        let ms = api.get(name).await?;
        let c = cond(&ms, type_);
        let fresh = ms.status.as_ref().and_then(|s| s.observed_generation).unwrap_or(0) >= generation
            && c.and_then(|c| c.observed_generation).unwrap_or(0) >= generation;
        if fresh && c.is_some_and(|c| c.status == status) {
            anyhow::Ok(true)
        } else {
            Err(anyhow!("status: {:?}", ms.status))
        }
    })
    .await
}

fn replicas(d: &Deployment) -> Option<i32> {
    d.spec.as_ref().and_then(|s| s.replicas)
}

fn image(d: &Deployment) -> String {
    d.spec.as_ref().unwrap().template.spec.as_ref().unwrap().containers[0].image.clone().unwrap_or_default()
}

#[tokio::test]
async fn create_update_drift_and_delete() {
    let Some(s) = setup("lifecycle").await else { return };
    let deployments = s.ns.api::<Deployment>();
    let services = s.ns.api::<Service>();

    let t0 = Instant::now();
    apply_ms(
        &s.api,
        "web",
        json!({"image": "registry.example/web:1", "replicas": 2, "healthCheck": {"path": "/healthz"},
               "expose": {"ingress": {"host": "web.example.com"}}}),
    )
    .await
    .expect("create");
    wait_condition(&s.api, "web", "Ready", "True", 1).await;
    println!("kubectl apply -> Ready (2 pods Running): {:.2}s", t0.elapsed().as_secs_f64());

    // Every child exists with the rendered content.
    let ms = s.api.get("web").await.unwrap();
    let world = World { microservices: vec![Arc::new(ms.clone())].into(), ..World::default() };
    let children = render(&ms, &world).expect("renders");
    let client = &s.client;
    for desired in children.to_values().unwrap() {
        let kind = desired["kind"].as_str().unwrap().to_string();
        let gvk = kube::core::GroupVersionKind::try_from(&kube::core::TypeMeta {
            api_version: desired["apiVersion"].as_str().unwrap().into(),
            kind: kind.clone(),
        })
        .unwrap();
        let (ar, _) = kube::discovery::pinned_kind(client, &gvk).await.unwrap();
        let api: Api<kube::api::DynamicObject> = Api::namespaced_with(client.clone(), s.ns.name(), &ar);
        let live = api.get("web").await.unwrap_or_else(|e| panic!("{kind} web missing: {e}"));
        let live = serde_json::to_value(&live).unwrap();
        assert!(is_subset(&desired, &live), "{kind} differs from the rendered one:\nwant {desired:#}\nlive {live:#}");
        assert_eq!(live["metadata"]["ownerReferences"][0]["uid"], json!(ms.uid().unwrap()), "{kind} owner");
    }
    let pods = s.ns.api::<Pod>().list(&ListParams::default().labels("flotilla.dev/microservice=web")).await.unwrap();
    let running = pods.items.iter().filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"));
    assert_eq!(running.count(), 2, "two pods Running");
    // The default spread reaches the pods, and the real scheduler puts them on two nodes, in two
    // zones (the local cluster's nodes are in zone-0, zone-1 and zone-2).
    let nodes: std::collections::BTreeSet<_> =
        pods.items.iter().filter_map(|p| p.spec.as_ref()?.node_name.clone()).collect();
    assert_eq!(nodes.len(), 2, "replicas on different nodes: {nodes:?}");
    let pod_spec = pods.items[0].spec.as_ref().unwrap();
    let spread = pod_spec.topology_spread_constraints.as_ref().expect("a topology spread constraint");
    assert_eq!(spread[0].topology_key, "kubernetes.io/hostname");
    assert!(pod_spec.affinity.as_ref().and_then(|a| a.pod_anti_affinity.as_ref()).is_some());
    let status = ms.status.clone().unwrap();
    assert_eq!(status.ready_replicas, Some(2));
    assert_eq!(status.selector.as_deref(), Some("flotilla.dev/microservice=web"));
    assert_eq!(status.url, Some(format!("http://web.{}.svc.cluster.local:8080", s.ns.name())));

    // Update the image: a rollout, then Ready again at the new generation.
    let t1 = Instant::now();
    apply_ms(
        &s.api,
        "web",
        json!({"image": "registry.example/web:2", "replicas": 2, "healthCheck": {"path": "/healthz"},
               "expose": {"ingress": {"host": "web.example.com"}}}),
    )
    .await
    .unwrap();
    wait_condition(&s.api, "web", "Ready", "True", 2).await;
    println!("image update -> Ready at generation 2: {:.2}s", t1.elapsed().as_secs_f64());
    assert_eq!(image(&deployments.get("web").await.unwrap()), "registry.example/web:2");

    // Remove the ingress: the Ingress is deleted.
    apply_ms(
        &s.api,
        "web",
        json!({"image": "registry.example/web:2", "replicas": 2, "healthCheck": {"path": "/healthz"}}),
    )
    .await
    .unwrap();
    let ingresses = s.ns.api::<k8s_openapi::api::networking::v1::Ingress>();
    wait_for("the Ingress to be deleted", Duration::from_secs(30), || async {
        anyhow::Ok(ingresses.get_opt("web").await?.is_none())
    })
    .await;

    // Someone edits the Deployment: the operator restores it.
    deployments
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Strategic(
                json!({"spec": {"template": {"spec": {"containers": [{"name": "web", "image": "evil:1"}]}}}}),
            ),
        )
        .await
        .unwrap();
    let restored = wait_for("the edited Deployment to be restored", Duration::from_secs(30), || async {
        anyhow::Ok(image(&deployments.get("web").await?) == "registry.example/web:2")
    })
    .await;
    println!("drift (image edited) -> restored: {:.2}s", restored.as_secs_f64());
    assert!(restored < support::ABOUT_A_SECOND, "README: drift is repaired within a second or so; took {restored:?}");

    // Someone deletes the Service: the operator recreates it.
    let old_uid = services.get("web").await.unwrap().uid();
    services.delete("web", &DeleteParams::default()).await.unwrap();
    wait_for("the deleted Service to be recreated", Duration::from_secs(30), || async {
        anyhow::Ok(services.get_opt("web").await?.is_some_and(|s| s.uid() != old_uid))
    })
    .await;

    // Delete the Microservice: the garbage collector removes the children.
    s.api.delete("web", &DeleteParams::default()).await.unwrap();
    wait_for("the children to be garbage-collected", Duration::from_secs(60), || async {
        anyhow::Ok(deployments.get_opt("web").await?.is_none() && services.get_opt("web").await?.is_none())
    })
    .await;
    s.ns.cleanup().await;
}

#[tokio::test]
async fn scale_subresource_and_autoscaling_on_and_off() {
    let Some(s) = setup("scaling").await else { return };
    let deployments = s.ns.api::<Deployment>();
    let hpas = s.ns.api::<HorizontalPodAutoscaler>();
    apply_ms(&s.api, "api", json!({"image": "registry.example/api:1", "replicas": 2})).await.unwrap();
    wait_condition(&s.api, "api", "Ready", "True", 1).await;
    assert!(s.ns.api::<PodDisruptionBudget>().get_opt("api").await.unwrap().is_some(), "PDB with 2 replicas");

    // kubectl scale ms/api --replicas=3
    s.api.patch_scale("api", &PatchParams::default(), &Patch::Merge(json!({"spec": {"replicas": 3}}))).await.unwrap();
    wait_for("the Deployment to follow the scale subresource", Duration::from_secs(30), || async {
        anyhow::Ok(replicas(&deployments.get("api").await?) == Some(3))
    })
    .await;
    let scale = s.api.get_scale("api").await.unwrap();
    assert_eq!(scale.spec.and_then(|s| s.replicas), Some(3));

    // Autoscaling on: the HPA owns replicas; the Deployment never dips to the default of 1,
    // neither before the hand-off, nor during it, nor in the seconds after it.
    let generation = s
        .api
        .patch(
            "api",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"spec": {"replicas": null, "autoscaling": {"minReplicas": 2, "maxReplicas": 5, "cpu": 50}}}),
            ),
        )
        .await
        .unwrap()
        .metadata
        .generation
        .unwrap();
    let owns_replicas = |d: &Deployment| {
        d.managed_fields().iter().any(|m| {
            m.manager.as_deref() == Some("flotilla")
                && m.fields_v1.as_ref().is_some_and(|f| f.0.pointer("/f:spec/f:replicas").is_some())
        })
    };
    let (started, mut lowest, mut handed_over) = (Instant::now(), i32::MAX, None::<Instant>);
    while handed_over.is_none_or(|t| t.elapsed() < Duration::from_secs(3)) {
        let d = deployments.get("api").await.unwrap();
        lowest = lowest.min(replicas(&d).unwrap_or(1));
        if handed_over.is_none() && !owns_replicas(&d) && hpas.get_opt("api").await.unwrap().is_some() {
            let observed = s.api.get("api").await.unwrap().status.and_then(|st| st.observed_generation);
            if observed >= Some(generation) {
                handed_over = Some(Instant::now());
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no hand-off to the HPA within 60s (HPA or release of spec.replicas missing)"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(lowest >= 2, "the Deployment dipped to {lowest} replicas when autoscaling was turned on");

    // The API server refuses a replica count next to autoscaling, with the CEL message.
    let err = s
        .api
        .patch_scale("api", &PatchParams::default(), &Patch::Merge(json!({"spec": {"replicas": 4}})))
        .await
        .expect_err("scale refused while autoscaling");
    assert!(err.to_string().contains(flotilla::api::rules::REPLICAS_WITH_AUTOSCALING), "{err}");

    // Autoscaling off with 4 replicas: the HPA goes, the Deployment has 4.
    s.api
        .patch("api", &PatchParams::default(), &Patch::Merge(json!({"spec": {"autoscaling": null, "replicas": 4}})))
        .await
        .unwrap();
    wait_for("the HPA to go and the Deployment to have 4 replicas", Duration::from_secs(30), || async {
        anyhow::Ok(hpas.get_opt("api").await?.is_none() && replicas(&deployments.get("api").await?) == Some(4))
    })
    .await;
    wait_condition(&s.api, "api", "Ready", "True", 4).await;
    wait_for("status.replicas to report 4", Duration::from_secs(30), || async {
        let status = s.api.get("api").await?.status.unwrap_or_default();
        if status.replicas == Some(4) { anyhow::Ok(true) } else { Err(anyhow!("status: {status:?}")) }
    })
    .await;
    s.ns.cleanup().await;
}

#[tokio::test]
async fn autoscaling_follows_simulated_cpu_load() {
    let Some(s) = setup("load").await else { return };
    let deployments = s.ns.api::<Deployment>();
    let spec = |usage: &str| {
        json!({
            "image": "registry.example/worker:1",
            "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}},
            "autoscaling": {"minReplicas": 1, "maxReplicas": 4, "cpu": 50, "behavior": {
                "scaleUp": {"stabilizationWindowSeconds": 0, "policies": [{"type": "Percent", "value": 400, "periodSeconds": 5}]},
                "scaleDown": {"stabilizationWindowSeconds": 5, "policies": [{"type": "Percent", "value": 100, "periodSeconds": 5}]}
            }},
            "pod": {"annotations": {"kwok.x-k8s.io/usage-cpu": usage}}
        })
    };
    apply_ms(&s.api, "worker", spec("10m")).await.unwrap();
    wait_condition(&s.api, "worker", "Ready", "True", 1).await;

    let t = Instant::now();
    apply_ms(&s.api, "worker", spec("200m")).await.unwrap();
    wait_for("load to scale the service out to >= 3 replicas", Duration::from_secs(240), || async {
        let ms = s.api.get("worker").await?;
        let d = deployments.get("worker").await?;
        let status_replicas = ms.status.and_then(|s| s.ready_replicas).unwrap_or(0);
        if replicas(&d).unwrap_or(0) >= 3 && status_replicas >= 3 {
            anyhow::Ok(true)
        } else {
            Err(anyhow!("deployment replicas {:?}, Microservice readyReplicas {status_replicas}", replicas(&d)))
        }
    })
    .await;
    println!("usage 200% of request -> >= 3 ready replicas in Microservice status: {:.2}s", t.elapsed().as_secs_f64());
    // An HPA that scales on its metrics says so on the Microservice.
    wait_condition(&s.api, "worker", "Autoscaling", "True", 2).await;

    let t = Instant::now();
    apply_ms(&s.api, "worker", spec("10m")).await.unwrap();
    wait_for("low load to scale the service back in to 1", Duration::from_secs(240), || async {
        let ms = s.api.get("worker").await?;
        let st = ms.status.unwrap_or_default();
        if st.replicas == Some(1) && replicas(&deployments.get("worker").await?) == Some(1) {
            anyhow::Ok(true)
        } else {
            Err(anyhow!("Microservice status replicas {:?}", st.replicas))
        }
    })
    .await;
    println!("usage back to 10% -> 1 replica: {:.2}s", t.elapsed().as_secs_f64());
    s.ns.cleanup().await;
}

#[tokio::test]
async fn an_autoscaler_that_cannot_scale_says_why_on_the_microservice() {
    let Some(s) = setup("hpa-why").await else { return };
    let hpas = s.ns.api::<HorizontalPodAutoscaler>();
    // A Pods metric needs a custom metrics API, which this cluster (like many) does not serve.
    apply_ms(
        &s.api,
        "rps",
        json!({"image": "registry.example/rps:1", "autoscaling": {"minReplicas": 1, "maxReplicas": 3, "metrics": [
            {"type": "Pods", "pods": {"metric": {"name": "requests_per_second"},
                                      "target": {"type": "AverageValue", "averageValue": "10"}}}]}}),
    )
    .await
    .unwrap();
    let t = Instant::now();
    let scaling_active = |hpa: HorizontalPodAutoscaler| {
        hpa.status.and_then(|s| s.conditions).unwrap_or_default().into_iter().find(|c| c.type_ == "ScalingActive")
    };
    wait_for("the HPA to report that it cannot read its metric", Duration::from_secs(120), || async {
        match scaling_active(hpas.get("rps").await?) {
            Some(c) if c.status == "False" => anyhow::Ok(true),
            other => Err(anyhow!("ScalingActive: {other:?}")),
        }
    })
    .await;
    wait_condition(&s.api, "rps", "Autoscaling", "False", 1).await;
    let ms = s.api.get("rps").await.unwrap();
    let c = cond(&ms, "Autoscaling").unwrap();
    let hpa_says = scaling_active(hpas.get("rps").await.unwrap()).unwrap();
    let (reason, message) = (hpa_says.reason.unwrap_or_default(), hpa_says.message.unwrap_or_default());
    assert_eq!(c.reason, reason, "the Microservice gives the HPA's reason");
    assert!(c.message.contains(&message), "the Microservice gives the HPA's message {message:?}: {:?}", c.message);
    println!("HPA ScalingActive=False ({reason}) -> Microservice Autoscaling=False: {:.2}s", t.elapsed().as_secs_f64());
    // The service itself runs: it is Ready at its current scale.
    wait_condition(&s.api, "rps", "Ready", "True", 1).await;

    // Turned to a metric the cluster serves, it scales, and says so.
    apply_ms(
        &s.api,
        "rps",
        json!({"image": "registry.example/rps:1", "autoscaling": {"minReplicas": 1, "maxReplicas": 3, "cpu": 80}}),
    )
    .await
    .unwrap();
    wait_condition(&s.api, "rps", "Autoscaling", "True", 2).await;
    s.ns.cleanup().await;
}

#[tokio::test]
async fn invalid_specs_are_refused_or_stalled() {
    let Some(s) = setup("invalid").await else { return };
    // Refused by the API server's CEL rules at the same path and in the same words as
    // `validate` (what `flotilla render` and the status say), both from `api::rules`.
    use flotilla::api::rules;
    let ports = json!([{"name": "http", "port": 80}, {"name": "http", "port": 81}]);
    let external = |extra: serde_json::Value| {
        let mut d = json!({"external": {"cidr": "10.0.0.0/8"}});
        d.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        json!({"image": "x", "dependencies": [d]})
    };
    for (spec, path, validate_path, words) in [
        (
            json!({"image": "x", "autoscaling": {"minReplicas": 5, "maxReplicas": 3}}),
            "spec.autoscaling.minReplicas",
            "spec.autoscaling.minReplicas",
            rules::MIN_ABOVE_MAX,
        ),
        (
            json!({"image": "x", "replicas": 2, "autoscaling": {"maxReplicas": 3}}),
            "spec.replicas",
            "spec.replicas",
            rules::REPLICAS_WITH_AUTOSCALING,
        ),
        (
            json!({"image": "x", "dependencies": [{}]}),
            "spec.dependencies[0]",
            "spec.dependencies[0]",
            rules::DEPENDENCY_TARGET,
        ),
        (
            external(json!({"namespace": "b"})),
            "spec.dependencies[0].namespace",
            "spec.dependencies[0].namespace",
            rules::NAMESPACE_ONLY_FOR_SERVICE,
        ),
        (
            external(json!({"port": "http"})),
            "spec.dependencies[0].port",
            "spec.dependencies[0].port",
            rules::PORT_ONLY_FOR_SERVICE,
        ),
        (json!({"image": "x", "ports": ports}), "spec.ports", "spec.ports[1].name", rules::PORT_NAMES_UNIQUE),
        (
            json!({"image": "x", "database": {"storage": "lots"}}),
            "spec.database.storage",
            "spec.database.storage",
            rules::STORAGE_POSITIVE,
        ),
        (
            json!({"image": "x", "disruption": {"minAvailable": 1, "maxUnavailable": 1}}),
            "spec.disruption",
            "spec.disruption",
            rules::DISRUPTION_ONE,
        ),
    ] {
        let err = apply_ms(&s.api, "bad", spec.clone()).await.expect_err("the API server refuses it").to_string();
        assert!(err.contains(&format!("{path}: Invalid value")) && err.contains(words), "{spec}: {err}");
        let ms: Microservice = serde_json::from_value(json!({
            "apiVersion": "flotilla.dev/v1alpha1", "kind": "Microservice",
            "metadata": {"name": "bad", "namespace": "ns"}, "spec": spec,
        }))
        .unwrap();
        let found = flotilla::validate::validate(&ms);
        assert!(
            found.iter().any(|e| e.path == validate_path && e.message.contains(words)),
            "{spec}: validate says {found:?}"
        );
    }
    let long = "a".repeat(46);
    let err = apply_ms(&s.api, &long, json!({"image": "x"})).await.expect_err("name too long");
    assert!(err.to_string().contains("at most 45 characters"), "{err}");

    // Past CEL, caught by the operator: a health check on a port that does not exist.
    apply_ms(&s.api, "odd", json!({"image": "x", "healthCheck": {"path": "/h", "port": "admin"}})).await.unwrap();
    wait_condition(&s.api, "odd", "Stalled", "True", 1).await;
    let ms = s.api.get("odd").await.unwrap();
    let stalled = cond(&ms, "Stalled").unwrap();
    assert_eq!(stalled.reason, "InvalidSpec");
    assert!(stalled.message.contains("spec.healthCheck.port"), "{}", stalled.message);
    assert_eq!(cond(&ms, "Ready").unwrap().status, "False");
    assert!(s.ns.api::<Deployment>().get_opt("odd").await.unwrap().is_none(), "nothing is written for an invalid spec");
    let events = s.ns.api::<Event>();
    wait_for("a Warning event InvalidSpec", Duration::from_secs(20), || async {
        let list = events.list(&ListParams::default()).await?;
        anyhow::Ok(
            list.items
                .iter()
                .any(|e| e.reason.as_deref() == Some("InvalidSpec") && e.type_.as_deref() == Some("Warning")),
        )
    })
    .await;

    // Past CEL and the operator's checks, refused by the API server when the Deployment is
    // written — here by a platform's admission policy, which no check of ours can know: reported
    // with the server's words, and not retried until the spec changes.
    let ns = s.ns.name().to_string();
    let policy = format!("{ns}-no-forbidden");
    operator::apply_yaml(
        &s.client,
        &format!(
            r#"
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata: {{name: {policy}}}
spec:
  failurePolicy: Fail
  matchConstraints:
    resourceRules: [{{apiGroups: [apps], apiVersions: [v1], operations: [CREATE, UPDATE], resources: [deployments]}}]
  validations:
  - expression: "!has(object.spec.template.metadata.annotations) || !('example.com/forbidden' in object.spec.template.metadata.annotations)"
    message: the platform forbids annotation example.com/forbidden
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata: {{name: {policy}}}
spec:
  policyName: {policy}
  validationActions: [Deny]
  matchResources:
    namespaceSelector: {{matchLabels: {{kubernetes.io/metadata.name: {ns}}}}}
"#
        ),
        None,
    )
    .await;
    let _cleanup = {
        let policy = policy.clone();
        support::Cleanup::new(move |client| async move {
            use k8s_openapi::api::admissionregistration::v1::{
                ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding,
            };
            let _ = Api::<ValidatingAdmissionPolicyBinding>::all(client.clone())
                .delete(&policy, &DeleteParams::default())
                .await;
            let _ = Api::<ValidatingAdmissionPolicy>::all(client).delete(&policy, &DeleteParams::default()).await;
        })
    };
    // The API server loads a new policy a moment later: wait until it refuses a probe.
    let probe: Deployment = serde_json::from_value(json!({"metadata": {"name": "probe"}, "spec": {
        "selector": {"matchLabels": {"a": "b"}},
        "template": {"metadata": {"labels": {"a": "b"}, "annotations": {"example.com/forbidden": "x"}},
                     "spec": {"containers": [{"name": "c", "image": "x"}]}}}}))
    .unwrap();
    let deployments = s.ns.api::<Deployment>();
    wait_for("the admission policy in force", Duration::from_secs(30), || async {
        let dry = PostParams { dry_run: true, ..Default::default() };
        matches!(deployments.create(&dry, &probe).await, Err(kube::Error::Api(e)) if e.message.contains("forbids"))
    })
    .await;
    let started = Instant::now();
    let pod = json!({"annotations": {"example.com/forbidden": "x"}});
    apply_ms(&s.api, "tolerant", json!({"image": "x", "pod": pod})).await.unwrap();
    wait_condition(&s.api, "tolerant", "Stalled", "True", 1).await;
    println!("a child the API server refuses -> Stalled: {:.2}s", started.elapsed().as_secs_f64());
    let ms = s.api.get("tolerant").await.unwrap();
    let stalled = cond(&ms, "Stalled").unwrap();
    assert_eq!(stalled.reason, "ApiRejected");
    assert!(stalled.message.contains("forbids annotation example.com/forbidden"), "{}", stalled.message);
    assert!(s.ns.api::<Deployment>().get_opt("tolerant").await.unwrap().is_none());

    // Fixing it makes it Ready; one bad object never stopped the others.
    apply_ms(&s.api, "odd", json!({"image": "x", "healthCheck": {"path": "/h"}})).await.unwrap();
    wait_condition(&s.api, "odd", "Ready", "True", 2).await;
    s.ns.cleanup().await;
}

#[tokio::test]
async fn converged_services_cause_no_writes_even_after_restart() {
    let Some(mut s) = setup("zero-writes").await else { return };
    let class = format!("pg-{}", s.ns.name());
    operator::apply_yaml(
        &s.client,
        &format!("apiVersion: flotilla.dev/v1alpha1\nkind: DatabaseClass\nmetadata: {{name: {class}}}\nspec: {{engine: postgres, provisioner: embedded, embedded: {{image: 'postgres:17'}}}}\n"),
        None,
    )
    .await;
    apply_ms(
        &s.api,
        "a",
        json!({"image": "registry.example/a:1", "replicas": 2, "dependencies": [{"service": "b"}], "database": {"class": class}}),
    )
    .await
    .unwrap();
    apply_ms(
        &s.api,
        "b",
        json!({"image": "registry.example/b:1", "autoscaling": {"minReplicas": 1, "maxReplicas": 3},
               "expose": {"ingress": {"host": "b.example.com"}}}),
    )
    .await
    .unwrap();
    wait_condition(&s.api, "a", "Ready", "True", 1).await;
    wait_condition(&s.api, "b", "Ready", "True", 1).await;
    // Converged includes the HPA: until it reads its metrics, its state (and so b's status) changes.
    wait_condition(&s.api, "b", "Autoscaling", "True", 1).await;

    // A metadata-only change triggers reconciles that must find nothing to write.
    let before = s.op.settled(Duration::from_secs(5)).await;
    let reconciles_before = s.op.reconciles_done();
    for name in ["a", "b"] {
        s.api
            .patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"annotations": {"touched": "yes"}}})),
            )
            .await
            .unwrap();
    }
    wait_for("the touch to trigger reconciles", Duration::from_secs(20), || async {
        s.op.reconciles_done() >= reconciles_before + 2
    })
    .await;
    let after = s.op.settled(Duration::from_secs(3)).await;
    assert_eq!(after, before, "reconciles of converged services wrote:\n{}", s.op.metrics());

    // A fresh operator process reconciles everything once and writes nothing.
    s.op.kill();
    let lease = format!("lease-{}", s.ns.name());
    let mut op =
        Operator::start(&OperatorOptions { namespace: Some(s.ns.name()), lease: &lease, tag: "zero-writes-2" });
    op.wait_ready().await;
    op.wait_leading(&s.client).await;
    wait_for("the restarted operator to reconcile both services", Duration::from_secs(30), || async {
        op.services_reconciled() >= 2
    })
    .await;
    let metrics = op.metrics();
    assert_eq!(op.settled(Duration::from_secs(3)).await, 0, "a restart wrote to converged services:\n{}", op.metrics());
    assert!(metrics.contains("verb=\"get\""), "requests are counted:\n{metrics}");
    let classes: Api<flotilla::api::DatabaseClass> = Api::all(s.client.clone());
    let _ = classes.delete(&class, &DeleteParams::default()).await;
    s.ns.cleanup().await;
}

#[tokio::test]
async fn one_leader_at_a_time_and_failover() {
    let Some(client) = client().await else { return };
    install(&client).await;
    let ns = TestNamespace::new(&client, "leader").await;
    let lease_name = format!("lease-{}", ns.name());
    let leases: Api<Lease> = Api::namespaced(client.clone(), "flotilla-system");
    let opts = |tag| OperatorOptions { namespace: Some(ns.name()), lease: &lease_name, tag };
    let mut first = Operator::start(&opts("leader-a"));
    first.wait_ready().await;
    wait_for("the first replica to hold the lease", Duration::from_secs(20), || async {
        let l = leases.get_opt(&lease_name).await?;
        anyhow::Ok(l.and_then(|l| l.spec?.holder_identity).is_some_and(|h| h.starts_with("leader-a")))
    })
    .await;
    let mut second = Operator::start(&opts("leader-b"));
    second.wait_ready().await;

    let api = ns.api::<Microservice>();
    apply_ms(&api, "svc", json!({"image": "registry.example/svc:1"})).await.unwrap();
    wait_condition(&api, "svc", "Ready", "True", 1).await;
    assert!(operator::counter(&first.metrics(), "flotilla_reconciles_total") > 0, "the leader reconciles");
    assert_eq!(operator::counter(&second.metrics(), "flotilla_reconciles_total"), 0, "the standby must not reconcile");

    // The leader dies without releasing the lease: the standby takes over when it expires.
    first.kill();
    let failover = wait_for("the standby to take the lease", Duration::from_secs(30), || async {
        let l = leases.get_opt(&lease_name).await?;
        anyhow::Ok(l.and_then(|l| l.spec?.holder_identity).is_some_and(|h| h.starts_with("leader-b")))
    })
    .await;
    println!("leader killed -> standby leads: {:.2}s (lease 6s)", failover.as_secs_f64());
    // --lease-seconds=6 is what the standby waits out: it leads within the lease and a retry
    // (2/15 of the lease, with jitter), plus the margin a busy machine needs.
    let bound = Duration::from_secs(6) + Duration::from_millis(1000) + support::ABOUT_A_SECOND;
    assert!(failover < bound, "the standby took {failover:?}, over lease + retry ({bound:?} with margin)");
    apply_ms(&api, "svc", json!({"image": "registry.example/svc:2"})).await.unwrap();
    wait_condition(&api, "svc", "Ready", "True", 2).await;
    assert!(operator::counter(&second.metrics(), "flotilla_reconciles_total") > 0);

    // SIGTERM: a graceful exit that hands the lease back at once.
    let status = second.terminate().expect("exits");
    assert!(status.success(), "graceful shutdown exits 0: {status:?}\n{}", second.logs());
    let l = leases.get(&lease_name).await.unwrap();
    assert_eq!(l.spec.and_then(|s| s.holder_identity), None, "the lease is released on shutdown");
    ns.cleanup().await;
}

#[tokio::test]
async fn children_of_others_are_never_taken_over() {
    let Some(s) = setup("conflict").await else { return };
    // A ServiceAccount of the same name that someone else made.
    let sas = s.ns.api::<ServiceAccount>();
    sas.create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": "taken"}})).unwrap())
        .await
        .unwrap();
    apply_ms(&s.api, "taken", json!({"image": "registry.example/x:1"})).await.unwrap();
    wait_condition(&s.api, "taken", "Stalled", "True", 1).await;
    let ms = s.api.get("taken").await.unwrap();
    assert_eq!(cond(&ms, "Stalled").unwrap().reason, "ChildConflict");
    assert!(cond(&ms, "Stalled").unwrap().message.contains("ServiceAccount taken"));
    let sa = sas.get("taken").await.unwrap();
    assert!(sa.owner_references().is_empty() && sa.labels().is_empty(), "the foreign object is untouched");
    let np = s.ns.api::<NetworkPolicy>().get_opt("taken").await.unwrap();
    assert!(np.is_none(), "nothing after the conflict was written");
    // Its deletion reaches no watch of Flotilla's (the object was never its own): the service is
    // looked at again every 20 s, and goes on without a change of its own.
    sas.delete("taken", &DeleteParams::default()).await.unwrap();
    let started = Instant::now();
    wait_condition(&s.api, "taken", "Ready", "True", 1).await;
    let took = started.elapsed();
    println!("the conflicting object deleted -> Ready (re-checked every 20s): {:.2}s", took.as_secs_f64());
    assert!(took < Duration::from_secs(20) + support::ABOUT_A_SECOND, "README: re-checked every 20 s; took {took:?}");
    s.ns.cleanup().await;
}

#[tokio::test]
async fn paused_services_are_left_alone_until_resumed() {
    let Some(s) = setup("paused").await else { return };
    let deployments = s.ns.api::<Deployment>();
    apply_ms(&s.api, "calm", json!({"image": "registry.example/calm:1"})).await.unwrap();
    wait_condition(&s.api, "calm", "Ready", "True", 1).await;

    apply_ms(&s.api, "calm", json!({"image": "registry.example/calm:2", "paused": true})).await.unwrap();
    wait_condition(&s.api, "calm", "Reconciling", "False", 2).await;
    let ms = s.api.get("calm").await.unwrap();
    assert_eq!(cond(&ms, "Ready").unwrap().reason, "Paused");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(image(&deployments.get("calm").await.unwrap()), "registry.example/calm:1", "paused: untouched");

    apply_ms(&s.api, "calm", json!({"image": "registry.example/calm:2"})).await.unwrap();
    wait_condition(&s.api, "calm", "Ready", "True", 3).await;
    assert_eq!(image(&deployments.get("calm").await.unwrap()), "registry.example/calm:2");
    s.ns.cleanup().await;
}
