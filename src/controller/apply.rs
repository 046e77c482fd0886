//! Writing children: server-side apply under one field manager, only when something changed,
//! and deleting children the spec no longer asks for.

use std::fmt::Debug;
use std::hash::Hash;

use k8s_openapi::NamespaceResourceScope;
use kube::api::{Api, DeleteParams, GetParams, Patch, PatchParams};
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::cache::Cache;
use super::context::Context;
use super::error::Error;
use crate::api::Microservice;
use crate::api::contract::{MANAGED_BY_LABEL, MANAGER, SELECTOR_LABEL};
use crate::hash::fnv1a;

/// Field manager of every write.
pub const FIELD_MANAGER: &str = "flotilla";

/// Parameters of a merge patch (a finalizer, a retention mark): under Flotilla's field manager,
/// so that the object's managedFields say who wrote it.
pub fn merge_params() -> kube::api::PatchParams {
    kube::api::PatchParams { field_manager: Some(FIELD_MANAGER.into()), ..Default::default() }
}
/// Annotation holding a hash of what was last applied, so a change of the desired state is seen
/// even when it only removes fields.
pub const APPLIED_HASH: &str = "flotilla.dev/applied-hash";

/// What ensuring one child did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Unchanged,
    Applied,
}

/// Makes the live child match `desired`, writing only when it does not yet: when the live object
/// lacks a desired value, or when the desired state changed since the last apply.
pub async fn ensure<K>(api: &Api<K>, cache: &Cache<K>, owner: &Microservice, desired: K) -> Result<(K, Outcome), Error>
where
    K: Resource<Scope = NamespaceResourceScope> + Clone + Debug + Serialize + DeserializeOwned,
    K::DynamicType: Default + Eq + Hash + Clone,
{
    let kind = K::kind(&K::DynamicType::default()).into_owned();
    let known = cached(Some(cache), api, &desired.name_any());
    ensure_with(api, known, owner, desired, &kind, |_, _| {}).await
}

/// The watch cache's copy of child `name`, once the cache has synced.
pub fn cached<K>(cache: Option<&Cache<K>>, api: &Api<K>, name: &str) -> Cached<K>
where
    K: Resource + Serialize + DeserializeOwned,
{
    match cache {
        Some(cache) if cache.is_ready() => match cache.get(api.namespace(), name) {
            Some(obj) => Cached::Found(obj),
            None => Cached::Absent,
        },
        _ => Cached::Unknown,
    }
}

/// What a child's watch cache knows of it.
pub enum Cached<K> {
    /// The cache has not synced (or there is none): ask the API server.
    Unknown,
    /// No child of that name that Flotilla made; one that someone else made may still exist.
    Absent,
    Found(K),
}

/// [`ensure`] for any kind, with `adjust` to carry live values into the desired object before
/// it is compared and sent (for fields the API server will not let change). The hash that
/// detects a changed desired state is taken before `adjust`.
pub async fn ensure_with<K>(
    api: &Api<K>,
    known: Cached<K>,
    owner: &Microservice,
    mut desired: K,
    kind: &str,
    adjust: impl FnOnce(&K, &mut K),
) -> Result<(K, Outcome), Error>
where
    K: Resource + Clone + Debug + Serialize + DeserializeOwned,
{
    let name = desired.name_any();
    let rendered = serde_json::to_value(&desired).map_err(|source| Error::Serialize { what: "child", source })?;
    let hash = format!("{:016x}", fnv1a(rendered.to_string().as_bytes()));
    desired.annotations_mut().insert(APPLIED_HASH.into(), hash.clone());

    // A child missing from the cache is read from the server: someone else's object of that
    // name must be found, and never taken over. When the cache has synced and lacks it (a new
    // service), the API server's own watch cache answers whether the name is taken at all,
    // which costs it far less than a read from etcd; only a taken name is then read in full.
    let live = match known {
        Cached::Found(live) => Some(live),
        Cached::Absent => {
            let taken = api
                .get_metadata_opt_with(&name, &GetParams::any())
                .await
                .map_err(Error::kube(format!("get {kind} {name}")))?;
            match taken {
                Some(_) => api.get_opt(&name).await.map_err(Error::kube(format!("get {kind} {name}")))?,
                None => None,
            }
        }
        Cached::Unknown => api.get_opt(&name).await.map_err(Error::kube(format!("get {kind} {name}")))?,
    };
    if let Some(live) = &live {
        check_ownership(live, owner, kind)?;
        adjust(live, &mut desired);
        let desired_value =
            serde_json::to_value(&desired).map_err(|source| Error::Serialize { what: "child", source })?;
        let live_value = serde_json::to_value(live).map_err(|source| Error::Serialize { what: "child", source })?;
        if live.annotations().get(APPLIED_HASH) != Some(&hash) {
            tracing::debug!(kind, name, "desired state changed since the last apply");
        } else if let Some(path) = first_difference(&desired_value, &live_value, String::new()) {
            tracing::debug!(kind, name, %path, "live object differs");
        } else {
            return Ok((live.clone(), Outcome::Unchanged));
        }
    }
    let applied = api
        .patch(&name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&desired))
        .await
        .map_err(Error::kube(format!("apply {kind} {name}")))?;
    Ok((applied, Outcome::Applied))
}

/// Applies one child of `owner` through [`ensure`], noting its kind in `changed` when it was
/// written.
pub async fn apply_child<K>(
    ctx: &Context,
    cache: &Cache<K>,
    owner: &Microservice,
    desired: K,
    changed: &mut Vec<String>,
) -> Result<K, Error>
where
    K: Resource<Scope = NamespaceResourceScope> + Clone + Debug + Serialize + DeserializeOwned,
    K::DynamicType: Default + Eq + Hash + Clone,
{
    let api: Api<K> = Api::namespaced(ctx.client.clone(), owner.ns());
    let (live, outcome) = ensure(&api, cache, owner, desired).await?;
    if outcome == Outcome::Applied {
        changed.push(K::kind(&K::DynamicType::default()).into_owned());
    }
    Ok(live)
}

/// Deletes the child of `owner` of kind `K` (named as the service) when Flotilla made it.
pub async fn prune_child<K>(ctx: &Context, cache: &Cache<K>, owner: &Microservice) -> Result<bool, Error>
where
    K: Resource<Scope = NamespaceResourceScope> + Clone + Debug + Serialize + DeserializeOwned,
    K::DynamicType: Default + Eq + Hash + Clone,
{
    let api: Api<K> = Api::namespaced(ctx.client.clone(), owner.ns());
    prune(&api, cache, owner, &owner.name_any()).await
}

/// Deletes the child `name` when it exists and this Microservice controls it. Returns whether
/// something was deleted. Never deletes what belongs to anything else.
pub async fn prune<K>(api: &Api<K>, cache: &Cache<K>, owner: &Microservice, name: &str) -> Result<bool, Error>
where
    K: Resource<Scope = NamespaceResourceScope> + Clone + Debug + Serialize + DeserializeOwned,
    K::DynamicType: Default + Eq + Hash + Clone,
{
    let kind = K::kind(&K::DynamicType::default()).into_owned();
    // Only what Flotilla made is pruned, and all of that is in the cache once it has synced.
    let live = match cached(Some(cache), api, name) {
        Cached::Found(live) => Some(live),
        Cached::Absent => None,
        Cached::Unknown => api.get_opt(name).await.map_err(Error::kube(format!("get {kind} {name}")))?,
    };
    let Some(live) = live else {
        return Ok(false);
    };
    if !controlled_by(&live, owner) {
        return Ok(false);
    }
    match api.delete(name, &DeleteParams::background()).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(false),
        Err(e) => Err(Error::kube(format!("delete {kind} {name}"))(e)),
    }
}

/// True when `obj` carries a controller owner reference to `owner`.
pub fn controlled_by<K: Resource>(obj: &K, owner: &Microservice) -> bool {
    let uid = owner.meta().uid.as_deref();
    obj.owner_references().iter().any(|o| o.controller == Some(true) && Some(o.uid.as_str()) == uid)
}

/// A live child may be written when this Microservice controls it, or when it is an orphan that
/// Flotilla made for a Microservice of the same name (then it is adopted). Anything else is
/// someone else's object.
pub fn check_ownership<K: Resource>(live: &K, owner: &Microservice, kind: &str) -> Result<(), Error> {
    if controlled_by(live, owner) {
        return Ok(());
    }
    let ours = live.labels().get(MANAGED_BY_LABEL).map(String::as_str) == Some(MANAGER)
        && live.labels().get(SELECTOR_LABEL) == owner.meta().name.as_ref()
        && !live.owner_references().iter().any(|o| o.controller == Some(true));
    if ours { Ok(()) } else { Err(Error::ChildConflict { kind: kind.to_string(), name: live.name_any() }) }
}

/// True when every value in `desired` is present and equal in `live`. Lists must have the same
/// length; their items are compared in order, or, failing that, in any order (the API server
/// may reorder some lists, such as an HPA's metrics).
pub fn is_subset(desired: &serde_json::Value, live: &serde_json::Value) -> bool {
    use serde_json::Value;
    match (desired, live) {
        (Value::Object(d), Value::Object(l)) => d.iter().all(|(k, dv)| match l.get(k) {
            Some(lv) => is_subset(dv, lv),
            None => is_empty(dv),
        }),
        (Value::Array(d), Value::Array(l)) => {
            d.len() == l.len()
                && (d.iter().zip(l).all(|(a, b)| is_subset(a, b))
                    || d.iter().all(|a| l.iter().any(|b| is_subset(a, b))))
        }
        (Value::Number(a), Value::Number(b)) => a.as_f64() == b.as_f64(),
        (a, b) => a == b,
    }
}

/// The path of the first value of `desired` that `live` lacks; None when `desired ⊆ live`.
fn first_difference(desired: &serde_json::Value, live: &serde_json::Value, path: String) -> Option<String> {
    use serde_json::Value;
    match (desired, live) {
        (Value::Object(d), Value::Object(l)) => d.iter().find_map(|(k, dv)| match l.get(k) {
            Some(lv) => first_difference(dv, lv, format!("{path}.{k}")),
            None if is_empty(dv) => None,
            None => Some(format!("{path}.{k}")),
        }),
        (Value::Array(d), Value::Array(l)) if d.len() == l.len() => {
            if is_subset(desired, live) {
                None
            } else {
                d.iter().zip(l).enumerate().find_map(|(i, (a, b))| first_difference(a, b, format!("{path}[{i}]")))
            }
        }
        _ if is_subset(desired, live) => None,
        _ => Some(path),
    }
}

/// Values the API server drops when they are sent: null, empty maps and lists.
fn is_empty(v: &serde_json::Value) -> bool {
    match v {
        serde_json::Value::Null => true,
        serde_json::Value::Object(o) => o.values().all(is_empty),
        serde_json::Value::Array(a) => a.is_empty(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::is_subset;
    use serde_json::json;

    #[test]
    fn subset_ignores_server_defaults_but_not_changed_values() {
        let desired = json!({"spec": {"replicas": 2, "template": {"containers": [{"name": "a", "image": "x:1"}]}}});
        let live = json!({"spec": {"replicas": 2, "revisionHistoryLimit": 10,
            "template": {"containers": [{"name": "a", "image": "x:1", "imagePullPolicy": "IfNotPresent"}]}}});
        assert!(is_subset(&desired, &live));
        let changed = json!({"spec": {"replicas": 3, "template": {"containers": [{"name": "a", "image": "x:1"}]}}});
        assert!(!is_subset(&changed, &live));
        let extra_item = json!({"spec": {"replicas": 2, "template": {"containers": [{"name": "a", "image": "x:1"}, {"name": "b"}]}}});
        assert!(!is_subset(&extra_item, &live));
    }

    #[test]
    fn subset_accepts_reordered_lists_and_dropped_empties() {
        assert!(is_subset(&json!({"m": [{"a": 1}, {"b": 2}]}), &json!({"m": [{"b": 2}, {"a": 1}]})));
        assert!(is_subset(&json!({"emptyDir": {}, "x": null, "l": []}), &json!({})));
        assert!(!is_subset(&json!({"m": [{"a": 1}, {"a": 1}]}), &json!({"m": [{"a": 1}]})));
    }

    mod offline {
        use crate::controller::cache::Cache;
        use http::Method;
        use k8s_openapi::api::core::v1::Service;
        use kube::api::Api;
        use serde_json::json;

        use super::super::{Cached, ensure_with, prune};
        use crate::api::Microservice;
        use crate::controller::Error;
        use crate::controller::fake_api::FakeApi;
        use crate::render::{self, World};

        const PATH: &str = "/api/v1/namespaces/shop/services/api";

        fn owner() -> Microservice {
            let mut ms = Microservice::new("api", Default::default());
            ms.metadata.namespace = Some("shop".into());
            ms.metadata.uid = Some("uid-api".into());
            ms.spec.image = "api:1".into();
            ms
        }

        fn rendered(ms: &Microservice) -> Service {
            render::children(&render::check(ms, &World::default()).expect("a valid spec")).service
        }

        fn verbs(api: &FakeApi) -> Vec<Method> {
            api.take_requests().into_iter().map(|(m, _)| m).collect()
        }

        #[tokio::test]
        async fn someone_elses_object_is_never_written_nor_deleted() {
            let api = FakeApi::default();
            let services: Api<Service> = api.api("shop");
            let foreign = json!({"apiVersion": "v1", "kind": "Service",
                "metadata": {"name": "api", "namespace": "shop", "labels": {"team": "other"}},
                "spec": {"ports": [{"port": 80}]}});
            api.put(PATH, foreign.clone());
            let ms = owner();
            let result = ensure_with(&services, Cached::Unknown, &ms, rendered(&ms), "Service", |_, _| {}).await;
            assert!(matches!(result, Err(Error::ChildConflict { .. })), "{result:?}");
            assert_eq!(verbs(&api), vec![Method::GET], "read, never written");
            // Pruning (the spec no longer asks for it) leaves it too.
            assert!(!prune(&services, &Cache::default(), &ms, "api").await.expect("pruned"));
            assert_eq!(verbs(&api), vec![Method::GET]);
            assert_eq!(api.get(PATH).expect("still there")["metadata"]["labels"], foreign["metadata"]["labels"]);
        }

        #[tokio::test]
        async fn a_name_missing_from_a_synced_cache_is_still_checked_on_the_server() {
            let api = FakeApi::default();
            let services: Api<Service> = api.api("shop");
            let ms = owner();
            // Free: one cheap look, then the apply.
            let (_, outcome) =
                ensure_with(&services, Cached::Absent, &ms, rendered(&ms), "Service", |_, _| {}).await.unwrap();
            assert_eq!(outcome, super::super::Outcome::Applied);
            assert_eq!(verbs(&api), vec![Method::GET, Method::PATCH]);
            // Taken by someone else (not in Flotilla's cache, which holds only its own): refused,
            // and left as it was.
            let foreign = json!({"apiVersion": "v1", "kind": "Service",
                "metadata": {"name": "api", "namespace": "shop", "labels": {"team": "other"}},
                "spec": {"ports": [{"port": 80}]}});
            api.put(PATH, foreign.clone());
            let result = ensure_with(&services, Cached::Absent, &ms, rendered(&ms), "Service", |_, _| {}).await;
            assert!(matches!(result, Err(Error::ChildConflict { .. })), "{result:?}");
            assert_eq!(verbs(&api), vec![Method::GET, Method::GET], "looked at, read, never written");
            assert_eq!(api.get(PATH).expect("still there")["metadata"]["labels"], foreign["metadata"]["labels"]);
        }

        #[tokio::test]
        async fn an_orphan_flotilla_made_is_adopted_then_left_alone_then_pruned() {
            let api = FakeApi::default();
            let services: Api<Service> = api.api("shop");
            let ms = owner();
            // What Flotilla made for an earlier Microservice of this name (its owner is gone).
            let mut orphan = serde_json::to_value(rendered(&ms)).expect("serializable");
            orphan["metadata"]["ownerReferences"] = json!([]);
            api.put(PATH, orphan);
            let (live, outcome) = ensure_with(&services, Cached::Unknown, &ms, rendered(&ms), "Service", |_, _| {})
                .await
                .expect("adopted");
            assert_eq!(outcome, super::super::Outcome::Applied);
            assert!(super::super::controlled_by(&live, &ms), "now controlled by this Microservice");
            assert_eq!(verbs(&api), vec![Method::GET, Method::PATCH]);

            // Unchanged desired state, found in the cache: no request at all.
            let (_, outcome) =
                ensure_with(&services, Cached::Found(live), &ms, rendered(&ms), "Service", |_, _| {}).await.unwrap();
            assert_eq!(outcome, super::super::Outcome::Unchanged);
            assert_eq!(verbs(&api), Vec::<Method>::new());

            assert!(prune(&services, &Cache::default(), &ms, "api").await.expect("pruned"));
            assert_eq!(verbs(&api), vec![Method::GET, Method::DELETE]);
            assert!(api.get(PATH).is_none());
        }
    }
}
