//! Children whose kind is known only at run time: the database claims, of whatever kind a
//! DatabaseClass names (a CloudNativePG Cluster, a Crossplane claim ...).
//!
//! Each such kind gets a watch of its own, started once a DatabaseClass names it and an
//! established CRD serves it, and stopped when neither holds any more. Like the built-in
//! children's, the watch fills a cache (no GET per reconcile) and reconciles the service a
//! changed object belongs to (no poll while a claim becomes ready). Claims carry no owner
//! reference (the garbage collector must never delete data): an object reaches its service
//! through Flotilla's labels.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures::StreamExt;
use kube::api::{Api, ApiResource, DynamicObject};
use kube::core::DeserializeGuard;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, ResourceExt};
use tracing::info;

use super::cache::Cache;
use super::crds::Crds;
use super::scope::Scope;
use crate::api::contract::{MANAGED_BY_LABEL, MANAGER, SELECTOR_LABEL};
use crate::api::databaseclass::Provisioner;
use crate::api::{DatabaseClass, Microservice};

/// `group/version/kind`, the key of a kind's watch.
fn key(ar: &ApiResource) -> String {
    format!("{}/{}", ar.api_version, ar.kind)
}

/// The caches of the run-time kinds being watched, shared by clones.
#[derive(Clone, Default)]
pub struct DynamicKinds {
    caches: Arc<RwLock<HashMap<String, Cache<DynamicObject>>>>,
}

impl DynamicKinds {
    /// The cache of `ar`'s objects, while that kind is watched (it may not have listed yet).
    pub fn cache(&self, ar: &ApiResource) -> Option<Cache<DynamicObject>> {
        self.caches.read().unwrap_or_else(|p| p.into_inner()).get(&key(ar)).cloned()
    }
}

/// How often the kinds wanted are compared with those watched: an in-memory look at the
/// DatabaseClasses and the CRDs, no request.
const CHECK: Duration = Duration::from_secs(1);

/// Keeps one watch per claim kind that a DatabaseClass names and the API server serves, for as
/// long as both hold. Each watch's objects reconcile their service through `wake`.
pub async fn keep_claim_watches(
    client: Client,
    scope: Scope,
    crds: Crds,
    classes: Store<DeserializeGuard<DatabaseClass>>,
    kinds: DynamicKinds,
    relist: tokio::sync::watch::Receiver<u64>,
    wake: futures::channel::mpsc::UnboundedSender<ObjectRef<Microservice>>,
) {
    let mut running: HashMap<String, tokio::task::JoinHandle<()>> = HashMap::new();
    loop {
        let wanted: HashMap<String, ApiResource> = classes
            .state()
            .iter()
            .filter_map(|c| c.0.as_ref().ok())
            .filter(|c| c.spec.provisioner == Provisioner::Claim)
            .filter_map(|c| c.spec.claim.as_ref())
            .filter_map(|claim| crds.resource(&claim.api_version, &claim.kind).ok())
            .map(|ar| (key(&ar), ar))
            .collect();
        running.retain(|k, task| {
            let keep = wanted.contains_key(k) && !task.is_finished();
            if !keep {
                task.abort();
                kinds.caches.write().unwrap_or_else(|p| p.into_inner()).remove(k);
                info!(kind = k, "claim kind no longer watched");
            }
            keep
        });
        for (k, ar) in wanted {
            if running.contains_key(&k) {
                continue;
            }
            let cache = Cache::<DynamicObject>::default();
            kinds.caches.write().unwrap_or_else(|p| p.into_inner()).insert(k.clone(), cache.clone());
            let (client, dt) = (client.clone(), ar.clone());
            let api = move |ns: Option<&str>| match ns {
                Some(ns) => Api::<DynamicObject>::namespaced_with(client.clone(), ns, &dt),
                None => Api::<DynamicObject>::all_with(client.clone(), &dt),
            };
            let config = kube::runtime::watcher::Config::default()
                .page_size(100)
                .labels(&format!("{MANAGED_BY_LABEL}={MANAGER}"));
            let events = scope.watch_with(api, ar.clone(), config, relist.clone());
            let wake = wake.clone();
            info!(kind = k, "watching claims of this kind");
            running.insert(
                k,
                tokio::spawn(async move {
                    let mut touched = std::pin::pin!(cache.fill(events));
                    while let Some(event) = touched.next().await {
                        // A failing watch retries on its own (see `WatchBackoff`).
                        let Ok(obj) = event else { continue };
                        if let (Some(service), Some(ns)) = (obj.labels().get(SELECTOR_LABEL), obj.namespace()) {
                            let _ = wake.unbounded_send(ObjectRef::new(service).within(&ns));
                        }
                    }
                }),
            );
        }
        tokio::time::sleep(CHECK).await;
    }
}
