//! Who sets a Deployment's `spec.replicas`. The render decides whose it is: the rendered
//! Deployment carries the count when the service is not autoscaled, and leaves it out, with an
//! HPA beside it, when it is. Passing the field between Flotilla and the HPA without a dip to
//! the API server's default of one replica happens here, and nowhere else.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};

use super::apply::{Cached, FIELD_MANAGER, apply_child, cached};
use super::cache::Cache;
use super::context::Context;
use super::error::Error;
use crate::api::Microservice;

/// Field manager that holds `spec.replicas` while the HPA owns the count: its value is where
/// the HPA starts from, and the HPA then changes it freely.
pub const HANDOFF_MANAGER: &str = "flotilla-replicas-handoff";

/// Applies the rendered HPA (when there is one) and Deployment, in this order:
/// - autoscaling turned on: the current count passes to [`HANDOFF_MANAGER`] before Flotilla's
///   apply drops the field, and the HPA exists before that apply;
/// - a Deployment under an HPA below the HPA's `minReplicas` (a new one starts at one): raised
///   to it at once, rather than at the HPA's next sync;
/// - autoscaling turned off: the Deployment's forced apply takes the count back; the HPA is
///   deleted after that, by the prune stage.
pub async fn apply_scaled(
    ctx: &Context,
    ms: &Microservice,
    deployment: Deployment,
    hpa: Option<HorizontalPodAutoscaler>,
    changed: &mut Vec<String>,
) -> Result<(Deployment, Option<HorizontalPodAutoscaler>), Error> {
    let api: Api<Deployment> = Api::namespaced(ctx.client.clone(), ms.ns());
    let name = deployment.name_any();
    if hand_off(&api, &ctx.caches.deployments, &deployment).await? {
        changed.push(String::from("Deployment replicas (handed to the HPA)"));
    }
    let hpa = match hpa {
        Some(hpa) => Some(apply_child(ctx, &ctx.caches.hpas, ms, hpa, changed).await?),
        None => None,
    };
    let mut live = apply_child(ctx, &ctx.caches.deployments, ms, deployment, changed).await?;
    let min = hpa.as_ref().and_then(|h| h.spec.as_ref()).and_then(|s| s.min_replicas);
    if let Some(min) = min
        && live.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1) < min
    {
        set_by_handoff(&api, &name, min).await?;
        live = api.get(&name).await.map_err(Error::kube(format!("get Deployment {name}")))?;
        changed.push(String::from("Deployment replicas (raised to minReplicas)"));
    }
    Ok((live, hpa))
}

/// Before the Deployment is applied without `spec.replicas`, hands the field to
/// [`HANDOFF_MANAGER`] at its current value when Flotilla's last apply still set it; otherwise
/// dropping it from the apply would reset the Deployment to one replica until the HPA acts.
async fn hand_off(api: &Api<Deployment>, cache: &Cache<Deployment>, desired: &Deployment) -> Result<bool, Error> {
    if desired.spec.as_ref().and_then(|s| s.replicas).is_some() {
        return Ok(false);
    }
    let name = desired.name_any();
    // The cache keeps whether Flotilla's apply sets the count (see watches::replicas_owner): once
    // the HPA has the field, as in every later reconcile of an autoscaled service, the server
    // is not asked. The hand-off itself reads the count from the server: a stale one would
    // cause a dip.
    let applies_replicas = |live: &Deployment| {
        live.managed_fields().iter().any(|m| {
            m.manager.as_deref() == Some(FIELD_MANAGER)
                && m.operation.as_deref() == Some("Apply")
                && m.fields_v1.as_ref().is_some_and(|f| f.0.pointer("/f:spec/f:replicas").is_some())
        })
    };
    match cached(Some(cache), api, &name) {
        Cached::Found(live) if !applies_replicas(&live) => return Ok(false),
        Cached::Absent => return Ok(false),
        Cached::Found(_) | Cached::Unknown => {}
    }
    let Some(live) = api.get_opt(&name).await.map_err(Error::kube(format!("get Deployment {name}")))? else {
        return Ok(false);
    };
    let applies_replicas = applies_replicas(&live);
    let Some(replicas) = live.spec.as_ref().and_then(|s| s.replicas).filter(|_| applies_replicas) else {
        return Ok(false);
    };
    set_by_handoff(api, &name, replicas).await?;
    Ok(true)
}

/// Sets `spec.replicas` under [`HANDOFF_MANAGER`].
async fn set_by_handoff(api: &Api<Deployment>, name: &str, replicas: i32) -> Result<(), Error> {
    let body = serde_json::json!({
        "apiVersion": <Deployment as k8s_openapi::Resource>::API_VERSION,
        "kind": <Deployment as k8s_openapi::Resource>::KIND,
        "metadata": {"name": name},
        "spec": {"replicas": replicas},
    });
    api.patch(name, &PatchParams::apply(HANDOFF_MANAGER).force(), &Patch::Apply(&body))
        .await
        .map_err(Error::kube(format!("set replicas of Deployment {name}")))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use http::Method;
    use serde_json::Value;

    use super::*;
    use crate::api::Autoscaling;
    use crate::controller::fake_api::FakeApi;
    use crate::render::{self, World};

    const PATH: &str = "/apis/apps/v1/namespaces/shop/deployments/api";

    fn service(replicas: Option<i32>, autoscaling: Option<Autoscaling>) -> Microservice {
        let mut ms = Microservice::new("api", Default::default());
        ms.metadata.namespace = Some("shop".into());
        ms.metadata.uid = Some("uid-api".into());
        ms.spec.image = "api:1".into();
        ms.spec.replicas = replicas;
        ms.spec.autoscaling = autoscaling;
        ms
    }

    fn scaled(min: i32) -> Option<Autoscaling> {
        Some(Autoscaling { min_replicas: Some(min), max_replicas: 10, ..Default::default() })
    }

    /// One reconcile's apply of the HPA and Deployment, as `apply_children` calls it.
    async fn reconcile(ctx: &Context, ms: &Microservice) -> (Deployment, Vec<String>) {
        let world = World::default();
        let children = render::children(&render::check(ms, &world).expect("a valid spec"));
        let mut changed = Vec::new();
        let (live, _) = apply_scaled(ctx, ms, children.deployment, children.hpa, &mut changed).await.expect("applied");
        (live, changed)
    }

    fn replicas(api: &FakeApi) -> Option<i64> {
        api.get(PATH)?.pointer("/spec/replicas")?.as_i64()
    }

    fn owner_of_replicas(api: &FakeApi) -> Vec<String> {
        let deployment = api.get(PATH).expect("the Deployment exists");
        let managed = deployment.pointer("/metadata/managedFields").and_then(Value::as_array).cloned();
        managed
            .unwrap_or_default()
            .iter()
            .filter(|m| m.pointer("/fieldsV1/f:spec/f:replicas").is_some())
            .filter_map(|m| m["manager"].as_str().map(String::from))
            .collect()
    }

    fn writes(api: &FakeApi) -> Vec<String> {
        api.take_requests().into_iter().filter(|(m, _)| *m != Method::GET).map(|(m, p)| format!("{m} {p}")).collect()
    }

    #[tokio::test]
    async fn autoscaling_turned_on_keeps_the_count_and_turned_off_takes_it_back() {
        let api = FakeApi::default();
        let ctx = Context::offline(api.client());

        let fixed = service(Some(3), None);
        reconcile(&ctx, &fixed).await;
        assert_eq!((replicas(&api), owner_of_replicas(&api)), (Some(3), vec![FIELD_MANAGER.to_string()]));

        // On: Flotilla's apply stops declaring the count, which stays at 3 under the hand-off
        // manager; without the hand-off the field would go, and the API server would reset it to 1.
        let autoscaled = service(None, scaled(2));
        let (live, changed) = reconcile(&ctx, &autoscaled).await;
        assert!(changed.iter().any(|c| c.contains("handed to the HPA")), "{changed:?}");
        assert_eq!(live.spec.and_then(|s| s.replicas), Some(3));
        assert_eq!((replicas(&api), owner_of_replicas(&api)), (Some(3), vec![HANDOFF_MANAGER.to_string()]));
        assert!(api.get("/apis/autoscaling/v2/namespaces/shop/horizontalpodautoscalers/api").is_some());

        // The HPA scales to 5 (through the scale subresource, which the fake takes as a patch);
        // the next reconcile leaves that alone and writes nothing.
        let deployments: Api<Deployment> = Api::namespaced(ctx.client.clone(), "shop");
        let scale = serde_json::json!({"spec": {"replicas": 5}});
        deployments.patch("api", &PatchParams::default(), &Patch::Merge(&scale)).await.expect("scaled");
        api.take_requests();
        let (_, changed) = reconcile(&ctx, &autoscaled).await;
        assert_eq!(changed, Vec::<String>::new());
        assert_eq!(writes(&api), Vec::<String>::new());
        assert_eq!(replicas(&api), Some(5));

        // Off: the forced apply takes the count back, at the spec's value.
        let (live, _) = reconcile(&ctx, &service(Some(2), None)).await;
        assert_eq!(live.spec.and_then(|s| s.replicas), Some(2));
        assert_eq!((replicas(&api), owner_of_replicas(&api)), (Some(2), vec![FIELD_MANAGER.to_string()]));
    }

    #[tokio::test]
    async fn a_new_deployment_under_an_hpa_starts_at_its_minimum_and_is_then_left_alone() {
        let api = FakeApi::default();
        let ctx = Context::offline(api.client());
        let ms = service(None, scaled(3));
        let (live, changed) = reconcile(&ctx, &ms).await;
        assert!(changed.iter().any(|c| c.contains("raised to minReplicas")), "{changed:?}");
        assert_eq!(live.spec.and_then(|s| s.replicas), Some(3));
        assert_eq!(owner_of_replicas(&api), vec![HANDOFF_MANAGER.to_string()]);
        api.take_requests();
        let (_, changed) = reconcile(&ctx, &ms).await;
        assert_eq!((changed, writes(&api)), (Vec::<String>::new(), Vec::<String>::new()));
    }
}
