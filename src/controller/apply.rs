//! Writing children: server-side apply under one field manager, only when something changed,
//! and deleting children the spec no longer asks for.

use std::fmt::Debug;
use std::hash::Hash;

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::error::Error;
use crate::api::Microservice;
use crate::api::contract::{MANAGED_BY_LABEL, MANAGER, SELECTOR_LABEL};
use crate::hash::fnv1a;

/// Field manager of every write.
pub const FIELD_MANAGER: &str = "flotilla";
/// Field manager that keeps `spec.replicas` while ownership passes to the HPA.
pub const HANDOFF_MANAGER: &str = "flotilla-replicas-handoff";
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
pub async fn ensure<K>(api: &Api<K>, cache: &Store<K>, owner: &Microservice, desired: K) -> Result<(K, Outcome), Error>
where
    K: Resource<Scope = NamespaceResourceScope> + Clone + Debug + Serialize + DeserializeOwned,
    K::DynamicType: Default + Eq + Hash + Clone,
{
    let kind = K::kind(&K::DynamicType::default()).into_owned();
    let known = cached(Some(cache), api, &desired.name_any());
    ensure_with(api, known, owner, desired, &kind, |_, _| {}).await
}

/// The watch cache's copy of child `name`, once the cache has synced.
pub fn cached<K>(cache: Option<&Store<K>>, api: &Api<K>, name: &str) -> Cached<K>
where
    K: Resource + Clone,
    K::DynamicType: Default + Eq + Hash + Clone,
{
    use futures::FutureExt;
    let Some(cache) = cache else { return Cached::Unknown };
    // Nothing else waits on these caches, so a single poll of their readiness steals no wake-up.
    if !matches!(cache.wait_until_ready().now_or_never(), Some(Ok(()))) {
        return Cached::Unknown;
    }
    let mut key = ObjectRef::new(name);
    if let Some(ns) = api.namespace() {
        key = key.within(ns);
    }
    match cache.get(&key) {
        Some(obj) => Cached::Found(obj.as_ref().clone()),
        None => Cached::Absent,
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
    // name must be found, and never taken over.
    let live = match known {
        Cached::Found(live) => Some(live),
        Cached::Unknown | Cached::Absent => {
            api.get_opt(&name).await.map_err(Error::kube(format!("get {kind} {name}")))?
        }
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

/// Before the Deployment is applied without `spec.replicas` (autoscaling turned on), hands the
/// field to a separate manager at its current value; otherwise dropping it from the apply would
/// reset the Deployment to one replica until the HPA acts.
pub async fn hand_off_replicas(api: &Api<Deployment>, desired: &Deployment) -> Result<bool, Error> {
    let wants_replicas = desired.spec.as_ref().and_then(|s| s.replicas).is_some();
    let name = desired.name_any();
    if wants_replicas {
        return Ok(false);
    }
    let Some(live) = api.get_opt(&name).await.map_err(Error::kube(format!("get Deployment {name}")))? else {
        return Ok(false);
    };
    let owns_replicas = live.managed_fields().iter().any(|m| {
        m.manager.as_deref() == Some(FIELD_MANAGER)
            && m.operation.as_deref() == Some("Apply")
            && m.fields_v1.as_ref().is_some_and(|f| f.0.pointer("/f:spec/f:replicas").is_some())
    });
    let Some(replicas) = live.spec.as_ref().and_then(|s| s.replicas).filter(|_| owns_replicas) else {
        return Ok(false);
    };
    set_replicas_by_handoff(api, &name, replicas).await?;
    Ok(true)
}

/// Sets `spec.replicas` under the hand-off manager, which the HPA may then change freely.
pub async fn set_replicas_by_handoff(api: &Api<Deployment>, name: &str, replicas: i32) -> Result<(), Error> {
    let body = serde_json::json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {"replicas": replicas},
    });
    api.patch(name, &PatchParams::apply(HANDOFF_MANAGER).force(), &Patch::Apply(&body))
        .await
        .map_err(Error::kube(format!("set replicas of Deployment {name}")))?;
    Ok(())
}

/// Deletes the child `name` when it exists and this Microservice controls it. Returns whether
/// something was deleted. Never deletes what belongs to anything else.
pub async fn prune<K>(api: &Api<K>, cache: &Store<K>, owner: &Microservice, name: &str) -> Result<bool, Error>
where
    K: Resource<Scope = NamespaceResourceScope> + Clone + Debug + DeserializeOwned,
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
}
