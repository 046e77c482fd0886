//! The world a Microservice is rendered in: the fleet, the DatabaseClasses, the settings and the
//! Ingresses others made; who admits whom, and the names two services would both take.

use std::sync::Arc;

use super::{Caller, Fleet, Settings, database, hosts, pod_labels, selector_matches};
use crate::api::{DatabaseClass, Microservice};
use crate::validate::FieldError;

/// Everything rendering needs beyond the object itself.
#[derive(Clone, Debug, Default)]
pub struct World {
    /// Every Microservice known: callers of the one rendered, and the services it calls.
    pub microservices: Fleet,
    /// Every DatabaseClass known.
    pub database_classes: Vec<Arc<DatabaseClass>>,
    /// Operator settings.
    pub settings: Settings,
    /// Ingresses Flotilla did not make that claim the host of the service rendered.
    pub foreign_ingresses: Vec<hosts::HostClaim>,
}

impl World {
    /// The Microservice `namespace/name`, if known.
    pub fn find(&self, namespace: &str, name: &str) -> Option<Arc<Microservice>> {
        self.microservices.find(namespace, name)
    }

    /// See [`Fleet::callers_of`].
    pub fn callers_of(&self, namespace: &str, name: &str) -> Vec<Caller> {
        self.microservices.callers_of(namespace, name)
    }

    /// Whether `callee` admits the pods of `caller` on its side: always within one namespace or
    /// tenant; across tenants only when the callee's own `expose.allowFrom` says so. A caller's
    /// word alone never opens another team's service.
    pub fn admits(&self, callee: &Microservice, caller: &Microservice) -> bool {
        let (callee_ns, caller_ns) = (callee.ns(), caller.ns());
        if self.settings.policy.same_tenant(callee_ns, caller_ns) {
            return true;
        }
        let name = caller.metadata.name.as_deref().unwrap_or_default();
        let labels = pod_labels(caller);
        callee.spec.expose.iter().flat_map(|e| e.allow_from.iter().flatten()).any(|a| {
            a.namespace == caller_ns
                && a.services.as_ref().is_none_or(|s| s.iter().any(|s| s == name))
                && a.pod_selector.as_ref().is_none_or(|sel| selector_matches(sel, &labels))
        })
    }

    /// The services `ms` depends on that exist and do not admit it (`namespace/name`).
    pub fn not_admitting(&self, ms: &Microservice) -> Vec<String> {
        let own = ms.ns();
        let mut out = Vec::new();
        for (ns, svc) in ms.spec.dependencies.iter().flatten().filter_map(|d| d.target(own)) {
            if let Some(callee) = self.find(ns, svc)
                && !self.admits(&callee, ms)
                && !out.contains(&format!("{ns}/{svc}"))
            {
                out.push(format!("{ns}/{svc}"));
            }
        }
        out
    }

    /// Problems only the world shows: children of `ms` that would carry the same name as another
    /// Microservice's. A Microservice `x` with a database names its database's Service and
    /// NetworkPolicy `x-db`, as a Microservice `x-db` names its own. The one created first (by
    /// creation time, then name) keeps the names, until it is gone; the other is refused, naming
    /// both, so that it writes nothing: no pod of either runs without its NetworkPolicy.
    pub fn clashes(&self, ms: &Microservice) -> Vec<FieldError> {
        let (Some(namespace), Some(name)) = (ms.metadata.namespace.as_deref(), ms.metadata.name.as_deref()) else {
            return Vec::new();
        };
        let first = |other: &Microservice| {
            let key = |m: &Microservice| (m.metadata.creation_timestamp.clone(), m.metadata.name.clone());
            key(other) < key(ms)
        };
        let mut errs = Vec::new();
        if ms.spec.database.is_some()
            && let Some(other) = self.find(namespace, &database::object_name(name)).filter(|o| first(o))
        {
            errs.push(FieldError::new(
                "spec.database",
                format!(
                    "the database's Service and NetworkPolicy would be named {:?}, which Microservice {:?} in this \
                     namespace (created first) uses for its own; rename one of the two or remove spec.database",
                    database::object_name(name),
                    other.metadata.name.as_deref().unwrap_or_default()
                ),
            ));
        }
        if let Some(owner) = name.strip_suffix(database::OBJECT_SUFFIX)
            && let Some(other) = self.find(namespace, owner).filter(|o| o.spec.database.is_some() && first(o))
        {
            errs.push(FieldError::new(
                "metadata.name",
                format!(
                    "{name:?} is the name of the Service and NetworkPolicy of the database of Microservice {:?} in \
                     this namespace (created first); rename this service",
                    other.metadata.name.as_deref().unwrap_or_default()
                ),
            ));
        }
        errs
    }
}
