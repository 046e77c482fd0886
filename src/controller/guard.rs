//! Reading Microservices so that one the operator cannot read never stops the watch for the
//! others.
//!
//! The API server checks every object against the CRD's schema, yet an object can still be one
//! this build cannot read: written through a newer CRD than this operator knows (a port protocol
//! or deletion policy it has no name for, as after an operator rollback). A plain watch fails its
//! whole list on such an object, and then no Microservice is reconciled at all. Here each object
//! is read on its own. An unreadable one enters the store as a *stand-in*: its last readable
//! version if the store has one, or else what of it can be read (the fields that cannot are
//! left out), marked with the in-memory annotation [`UNREADABLE`]. The reconciler only reports a
//! stand-in on its status (`Stalled=True`, reason `InvalidObject`, naming the field) and never
//! touches its children, while the services it calls keep admitting it.

use std::borrow::Cow;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, ObjectMeta};
use kube::Resource;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher::Event;
use serde::{Deserialize, Deserializer};
use serde_path_to_error::Segment;
use tracing::warn;

use crate::api::{Microservice, MicroserviceStatus};

/// Marks a stand-in in the store, with what cannot be read. Never written to the cluster.
pub const UNREADABLE: &str = "flotilla.dev/unreadable";

/// What cannot be read of a Microservice in the store, if it is a stand-in.
pub fn problem(ms: &Microservice) -> Option<&str> {
    ms.metadata.annotations.as_ref()?.get(UNREADABLE).map(String::as_str)
}

/// A Microservice as the API server sent it: readable, or why not.
#[derive(Clone, Debug)]
pub struct Read(pub Result<Microservice, Box<Unreadable>>);

/// A Microservice that cannot be read.
#[derive(Clone, Debug)]
pub struct Unreadable {
    pub metadata: ObjectMeta,
    /// `field.path: what is wrong`.
    pub problem: String,
    /// The object without the fields that cannot be read, if that much can be read.
    pub readable_part: Option<Microservice>,
    /// The conditions on its status, when those at least can be read.
    pub conditions: Vec<Condition>,
    pub observed_generation: Option<i64>,
}

impl<'de> Deserialize<'de> for Read {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = serde_json::Value::deserialize(deserializer)?;
        match serde_path_to_error::deserialize::<_, Microservice>(&value) {
            Ok(ms) => Ok(Read(Ok(ms))),
            Err(e) => {
                // Without readable metadata there is nothing to report on; that fails the list,
                // as the API server never sends such an object.
                let metadata = ObjectMeta::deserialize(&value["metadata"]).map_err(serde::de::Error::custom)?;
                let status = &value["status"];
                Ok(Read(Err(Box::new(Unreadable {
                    metadata,
                    problem: format!("{}: {}", e.path(), e.inner()),
                    conditions: Vec::<Condition>::deserialize(&status["conditions"]).unwrap_or_default(),
                    observed_generation: status["observedGeneration"].as_i64(),
                    readable_part: readable_part(value, e.path()),
                }))))
            }
        }
    }
}

/// Leaves out, one by one, the fields that cannot be read, until the rest can.
fn readable_part(mut value: serde_json::Value, first: &serde_path_to_error::Path) -> Option<Microservice> {
    let mut path: Vec<Segment> = first.iter().cloned().collect();
    for _ in 0..32 {
        if !remove(&mut value, &path) {
            return None;
        }
        match serde_path_to_error::deserialize::<_, Microservice>(&value) {
            Ok(ms) => return Some(ms),
            Err(e) => path = e.path().iter().cloned().collect(),
        }
    }
    None
}

/// Removes the value at `path`; false when there is none, or it is the object or its metadata.
fn remove(value: &mut serde_json::Value, path: &[Segment]) -> bool {
    let Some((last, parents)) = path.split_last() else { return false };
    if matches!(path.first(), Some(Segment::Map { key }) if key == "metadata" || key == "apiVersion" || key == "kind") {
        return false;
    }
    let mut at = value;
    for segment in parents {
        at = match (segment, at) {
            (Segment::Map { key }, serde_json::Value::Object(map)) => match map.get_mut(key) {
                Some(v) => v,
                None => return false,
            },
            (Segment::Seq { index }, serde_json::Value::Array(items)) => match items.get_mut(*index) {
                Some(v) => v,
                None => return false,
            },
            _ => return false,
        };
    }
    match (last, at) {
        (Segment::Map { key }, serde_json::Value::Object(map)) => map.remove(key).is_some(),
        (Segment::Seq { index }, serde_json::Value::Array(items)) if *index < items.len() => {
            items.remove(*index);
            true
        }
        _ => false,
    }
}

impl Unreadable {
    /// What stands in the store for this object: the last readable version, else its readable
    /// part, with the current metadata, conditions and the [`UNREADABLE`] mark.
    fn stand_in(self, last: &Store<Microservice>) -> Option<Microservice> {
        let name = self.metadata.name.clone().unwrap_or_default();
        let key = ObjectRef::<Microservice>::new(&name).within(self.metadata.namespace.as_deref().unwrap_or_default());
        let mut ms = match last.get(&key) {
            Some(previous) => (*previous).clone(),
            None => self.readable_part?,
        };
        ms.metadata = self.metadata;
        ms.metadata.annotations.get_or_insert_with(Default::default).insert(UNREADABLE.into(), self.problem);
        let status = ms.status.get_or_insert_with(MicroserviceStatus::default);
        status.conditions = self.conditions;
        status.observed_generation = self.observed_generation;
        Some(ms)
    }
}

impl Resource for Read {
    type DynamicType = ();
    type Scope = k8s_openapi::NamespaceResourceScope;

    fn kind(dt: &()) -> Cow<'_, str> {
        Microservice::kind(dt)
    }
    fn group(dt: &()) -> Cow<'_, str> {
        Microservice::group(dt)
    }
    fn version(dt: &()) -> Cow<'_, str> {
        Microservice::version(dt)
    }
    fn plural(dt: &()) -> Cow<'_, str> {
        Microservice::plural(dt)
    }
    fn meta(&self) -> &ObjectMeta {
        match &self.0 {
            Ok(ms) => &ms.metadata,
            Err(u) => &u.metadata,
        }
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        match &mut self.0 {
            Ok(ms) => &mut ms.metadata,
            Err(u) => &mut u.metadata,
        }
    }
}

/// What kubectl's client-side apply keeps on an object.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Turns a watch event into one about Microservices, with stand-ins for unreadable objects.
pub fn readable(event: Event<Read>, last: &Store<Microservice>) -> Option<Event<Microservice>> {
    let known = |read: Read| match read.0 {
        // The mark is the store's own: one set on the object in the cluster means nothing.
        Ok(mut ms) => {
            if let Some(annotations) = ms.metadata.annotations.as_mut() {
                annotations.remove(UNREADABLE);
                // What kubectl's client-side apply keeps: a second copy of the spec, unused here.
                annotations.remove(LAST_APPLIED);
            }
            // Nothing reads a Microservice's field owners; they are a large share of the object,
            // and the store holds every Microservice.
            ms.metadata.managed_fields = None;
            Some(ms)
        }
        Err(u) => {
            let (namespace, name) = (u.metadata.namespace.clone(), u.metadata.name.clone());
            let problem = u.problem.clone();
            let stand_in = u.stand_in(last);
            if stand_in.is_none() {
                warn!(?namespace, ?name, %problem, "cannot read a Microservice at all; it is left out");
            }
            stand_in
        }
    };
    match event {
        Event::Init => Some(Event::Init),
        Event::InitDone => Some(Event::InitDone),
        Event::Apply(read) => known(read).map(Event::Apply),
        Event::InitApply(read) => known(read).map(Event::InitApply),
        Event::Delete(read) => known(read).map(Event::Delete),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::runtime::reflector;
    use serde_json::json;

    fn object(name: &str, spec: serde_json::Value) -> serde_json::Value {
        json!({
            "apiVersion": "flotilla.dev/v1alpha1", "kind": "Microservice",
            "metadata": {"name": name, "namespace": "shop", "generation": 3},
            "spec": spec,
            "status": {"observedGeneration": 2, "conditions": [{
                "type": "Ready", "status": "True", "reason": "RolloutComplete", "message": "",
                "lastTransitionTime": "2026-01-01T00:00:00Z"
            }]}
        })
    }

    #[test]
    fn an_unreadable_object_names_its_field_and_keeps_what_can_be_read() {
        let bad = object(
            "orders",
            json!({"image": "x", "ports": [{"name": "http", "port": 80, "protocol": "QUIC"}],
            "dependencies": [{"service": "payments"}]}),
        );
        let Read(Err(u)) = serde_json::from_value(bad).unwrap() else { panic!("should not be readable") };
        assert_eq!(u.metadata.name.as_deref(), Some("orders"));
        assert!(u.problem.starts_with("spec.ports[0].protocol: unknown variant `QUIC`"), "{}", u.problem);
        assert_eq!(u.conditions.len(), 1);
        assert_eq!(u.observed_generation, Some(2));
        let part = u.readable_part.expect("the rest can be read");
        assert_eq!(part.spec.ports.as_ref().unwrap()[0].port, 80);
        assert_eq!(part.spec.ports.as_ref().unwrap()[0].protocol, None, "only the unreadable field is left out");
        assert_eq!(part.spec.dependencies.as_ref().unwrap().len(), 1);
        let good: Read = serde_json::from_value(object("orders", json!({"image": "x"}))).unwrap();
        assert!(good.0.is_ok());
    }

    #[test]
    fn without_a_required_field_nothing_can_be_read() {
        let Read(Err(u)) = serde_json::from_value(object("orders", json!({"image": 5}))).unwrap() else {
            panic!("should not be readable")
        };
        assert!(u.problem.starts_with("spec.image: "), "{}", u.problem);
        assert!(u.readable_part.is_none());
    }

    #[test]
    fn a_list_with_an_unreadable_object_still_reads_the_others() {
        let list = json!([
            object("a", json!({"image": "x"})),
            object("b", json!({"image": "x", "replicas": "three"})),
            object("c", json!({"image": "x"})),
        ]);
        let read: Vec<Read> = serde_json::from_value(list).unwrap();
        assert_eq!(read.iter().filter(|r| r.0.is_ok()).count(), 2);
    }

    #[test]
    fn the_stand_in_is_the_last_readable_version_marked_unreadable() {
        let (reader, mut writer) = reflector::store::<Microservice>();
        let bad = || serde_json::from_value::<Read>(object("b", json!({"image": "x:2", "replicas": "three"}))).unwrap();

        // Nothing known yet: the readable part stands in.
        let Some(Event::InitApply(first)) = readable(Event::InitApply(bad()), &reader) else { panic!("a stand-in") };
        assert_eq!(first.spec.image, "x:2");
        assert!(problem(&first).is_some_and(|p| p.starts_with("spec.replicas: ")), "{first:?}");

        let good: Microservice = serde_json::from_value(object("b", json!({"image": "x:1", "replicas": 2}))).unwrap();
        writer.apply_watcher_event(&Event::Apply(good.clone()));
        assert_eq!(problem(&good), None);
        let Some(Event::Apply(kept)) = readable(Event::Apply(bad()), &reader) else { panic!("a stand-in") };
        assert_eq!((kept.spec.image.as_str(), kept.spec.replicas), ("x:1", Some(2)), "the last readable spec");
        assert!(problem(&kept).is_some());
        assert_eq!(kept.status.as_ref().unwrap().observed_generation, Some(2), "the current status");
        assert!(matches!(readable(Event::Delete(bad()), &reader), Some(Event::Delete(_))));
    }

    #[test]
    fn the_mark_set_in_the_cluster_is_ignored() {
        let (reader, _writer) = reflector::store::<Microservice>();
        let mut marked = object("a", json!({"image": "x"}));
        marked["metadata"]["annotations"] = json!({UNREADABLE: "no"});
        let Some(Event::Apply(ms)) = readable(Event::Apply(serde_json::from_value(marked).unwrap()), &reader) else {
            panic!("readable")
        };
        assert_eq!(problem(&ms), None);
    }
}
