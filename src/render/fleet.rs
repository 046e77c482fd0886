//! The fleet index: every Microservice known, by name, by callee and by claimed host, kept
//! change by change from the watch.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use super::hosts;
use crate::api::Microservice;

/// Every Microservice known, looked up by name and by callee. Cloning shares it; the operator
/// keeps one up to date from its watch (one change costs the changed service's dependencies,
/// not the fleet), so a reconcile finds its callers and callees without a pass over every
/// service.
#[derive(Clone, Debug, Default)]
pub struct Fleet(Arc<std::sync::RwLock<Index>>);

/// Namespace and name.
type Key = (String, String);

#[derive(Debug, Default)]
struct Index {
    by_name: HashMap<Key, Arc<Microservice>>,
    /// Callers of each namespace/name, by the caller's namespace/name, with the port it asked for.
    callers: HashMap<Key, BTreeMap<Key, Option<String>>>,
    /// The services that claim each host (lowercase), being deleted or not: a host is held
    /// until its holder is gone.
    hosts: HashMap<String, BTreeSet<Key>>,
}

impl Index {
    /// The callees `ms` counts as a caller of (none while it is being deleted), each with the
    /// port of the first dependency on it.
    fn calls(ms: &Microservice) -> Vec<(Key, Option<String>)> {
        let (Some(ns), Some(name)) = (ms.metadata.namespace.as_deref(), ms.metadata.name.as_deref()) else {
            return Vec::new();
        };
        if ms.metadata.deletion_timestamp.is_some() {
            return Vec::new();
        }
        let mut called = HashSet::new();
        let mut out = Vec::new();
        for d in ms.spec.dependencies.iter().flatten() {
            // A caller's first dependency on a callee is the one that counts.
            if let Some(target) = d.target(ns).filter(|t| *t != (ns, name) && called.insert(*t)) {
                out.push(((target.0.to_string(), target.1.to_string()), d.port.clone()));
            }
        }
        out
    }

    fn key(ms: &Microservice) -> Option<Key> {
        Some((ms.metadata.namespace.clone()?, ms.metadata.name.clone()?))
    }

    fn unlink(&mut self, caller: &Key, ms: &Microservice) {
        for (callee, _) in Self::calls(ms) {
            if let Some(callers) = self.callers.get_mut(&callee) {
                callers.remove(caller);
                if callers.is_empty() {
                    self.callers.remove(&callee);
                }
            }
        }
    }

    fn unclaim(&mut self, key: &Key, ms: &Microservice) {
        if let Some(host) = hosts::claimed_host(ms)
            && let Some(claimers) = self.hosts.get_mut(&host)
        {
            claimers.remove(key);
            if claimers.is_empty() {
                self.hosts.remove(&host);
            }
        }
    }

    fn insert(&mut self, ms: Arc<Microservice>) {
        let Some(key) = Self::key(&ms) else { return };
        if let Some(old) = self.by_name.remove(&key) {
            self.unlink(&key, &old);
            self.unclaim(&key, &old);
        }
        for (callee, port) in Self::calls(&ms) {
            self.callers.entry(callee).or_default().insert(key.clone(), port);
        }
        if let Some(host) = hosts::claimed_host(&ms) {
            self.hosts.entry(host).or_default().insert(key.clone());
        }
        self.by_name.insert(key, ms);
    }

    fn remove(&mut self, namespace: &str, name: &str) {
        let key = (namespace.to_string(), name.to_string());
        if let Some(old) = self.by_name.remove(&key) {
            self.unlink(&key, &old);
            self.unclaim(&key, &old);
        }
    }
}

impl Fleet {
    /// A fleet of `items`; of two objects with the same namespace and name, the first stays.
    pub fn of(items: impl IntoIterator<Item = Arc<Microservice>>) -> Fleet {
        let mut index = Index::default();
        for ms in items {
            if Index::key(&ms).is_some_and(|k| !index.by_name.contains_key(&k)) {
                index.insert(ms);
            }
        }
        Fleet(Arc::new(std::sync::RwLock::new(index)))
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Index> {
        self.0.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Index> {
        self.0.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds `ms`, or replaces the object of its namespace and name.
    pub fn apply(&self, ms: Arc<Microservice>) {
        self.write().insert(ms);
    }

    /// Forgets the Microservice `namespace/name`.
    pub fn remove(&self, namespace: &str, name: &str) {
        self.write().remove(namespace, name);
    }

    /// Replaces everything with `items` (after a watch's relist).
    pub fn replace(&self, items: impl IntoIterator<Item = Arc<Microservice>>) {
        let fresh = Fleet::of(items);
        let index = std::mem::take(&mut *fresh.write());
        *self.write() = index;
    }

    /// How many Microservices are known.
    pub fn len(&self) -> usize {
        self.read().by_name.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The Microservice `namespace/name`, if known.
    pub fn find(&self, namespace: &str, name: &str) -> Option<Arc<Microservice>> {
        self.read().by_name.get(&(namespace.to_string(), name.to_string())).cloned()
    }

    /// Services that list `namespace/name` as a dependency, with the port name they asked for,
    /// sorted by namespace and name so rendering is deterministic.
    pub fn callers_of(&self, namespace: &str, name: &str) -> Vec<Caller> {
        let index = self.read();
        let Some(callers) = index.callers.get(&(namespace.to_string(), name.to_string())) else {
            return Vec::new();
        };
        callers
            .iter()
            .map(|((namespace, name), port)| Caller {
                namespace: namespace.clone(),
                name: name.clone(),
                port: port.clone(),
            })
            .collect()
    }
}

impl Fleet {
    /// The services that claim `host` (lowercase) in `expose.ingress`.
    pub fn claimers_of(&self, host: &str) -> Vec<Arc<Microservice>> {
        let index = self.read();
        let Some(keys) = index.hosts.get(host) else { return Vec::new() };
        keys.iter().filter_map(|k| index.by_name.get(k).cloned()).collect()
    }
}

impl From<Vec<Arc<Microservice>>> for Fleet {
    fn from(items: Vec<Arc<Microservice>>) -> Fleet {
        Fleet::of(items)
    }
}

impl FromIterator<Arc<Microservice>> for Fleet {
    fn from_iter<I: IntoIterator<Item = Arc<Microservice>>>(items: I) -> Fleet {
        Fleet::of(items)
    }
}

/// A service that calls the one being rendered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    pub namespace: String,
    pub name: String,
    /// The callee port it asked for; the callee's first port when absent.
    pub port: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(ns: &str, name: &str, calls: &[(&str, Option<&str>)]) -> Arc<Microservice> {
        let mut ms = Microservice::new(name, Default::default());
        ms.metadata.namespace = Some(ns.into());
        ms.spec.dependencies = Some(
            calls
                .iter()
                .map(|(svc, port)| crate::api::Dependency {
                    service: Some(svc.to_string()),
                    port: port.map(String::from),
                    ..Default::default()
                })
                .collect(),
        );
        Arc::new(ms)
    }

    fn callers(fleet: &Fleet, ns: &str, name: &str) -> Vec<String> {
        fleet.callers_of(ns, name).iter().map(|c| format!("{}/{}:{:?}", c.namespace, c.name, c.port)).collect()
    }

    #[test]
    fn a_fleet_kept_change_by_change_answers_as_one_built_from_the_final_list() {
        let fleet = Fleet::default();
        fleet.apply(service("shop", "web", &[("api", None), ("cart", None)]));
        fleet.apply(service("shop", "cart", &[("api", Some("grpc"))]));
        fleet.apply(service("shop", "api", &[("db", None)]));
        assert_eq!(callers(&fleet, "shop", "api"), ["shop/cart:Some(\"grpc\")", "shop/web:None"]);
        // `web` stops calling `api`; `cart` calls it twice (the first dependency counts), and itself.
        fleet.apply(service("shop", "web", &[("cart", None)]));
        fleet.apply(service("shop", "cart", &[("api", None), ("api", Some("grpc")), ("cart", None)]));
        let mut deleting = (*service("shop", "api", &[("db", None)])).clone();
        deleting.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH));
        // A service being deleted is still found, and calls no one any more.
        fleet.apply(Arc::new(deleting.clone()));
        fleet.apply(service("shop", "db", &[]));
        fleet.remove("shop", "gone");
        let rebuilt = Fleet::of([
            service("shop", "web", &[("cart", None)]),
            service("shop", "cart", &[("api", None), ("api", Some("grpc")), ("cart", None)]),
            Arc::new(deleting),
            service("shop", "db", &[]),
        ]);
        for name in ["web", "cart", "api", "db"] {
            assert_eq!(callers(&fleet, "shop", name), callers(&rebuilt, "shop", name), "callers of {name}");
            assert_eq!(fleet.find("shop", name).is_some(), rebuilt.find("shop", name).is_some());
        }
        assert_eq!(callers(&fleet, "shop", "api"), ["shop/cart:None"]);
        assert!(callers(&fleet, "shop", "db").is_empty(), "the deleting api calls no one");
        assert!(fleet.find("shop", "api").is_some());
        // Gone: found no more, and its calls with it.
        fleet.remove("shop", "cart");
        assert!(callers(&fleet, "shop", "api").is_empty());
        assert!(fleet.find("shop", "cart").is_none());
        // A relist replaces everything.
        fleet.replace([service("ops", "probe", &[("web", None)])]);
        assert_eq!(fleet.len(), 1);
        assert_eq!(callers(&fleet, "ops", "web"), ["ops/probe:None"]);
        assert!(fleet.find("shop", "web").is_none());
    }
}
