//! The watches: Microservices (each read on its own, so one that cannot be read stops no other),
//! the children Flotilla made (their caches, and their owners' reconciles), DatabaseClasses, and
//! the neighbours a change concerns (callers, callees, the other side of a name clash).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{Secret, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::{Ingress, NetworkPolicy};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::Api;
use kube::core::DeserializeGuard as Guarded;
use kube::runtime::controller::Controller;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::watcher;
use kube::runtime::{WatchStreamExt, reflector::reflector};
use kube::{Client, Resource, ResourceExt};
use tracing::warn;

use super::cache::Cache;
use super::context::Caches;
use super::guard;
use super::scope::Scope;
use crate::api::contract::{MANAGED_BY_LABEL, MANAGER, SELECTOR_LABEL};
use crate::api::{DatabaseClass, Microservice};
use crate::render::{Fleet, database};

pub fn build(
    client: &Client,
    scope: &Scope,
    relist: tokio::sync::watch::Receiver<u64>,
) -> (Controller<Microservice>, Fleet, Store<Guarded<DatabaseClass>>, Caches) {
    // Each Microservice is read on its own, so one that cannot be read never stops the others.
    let (reader, writer) = reflector::store::<Microservice>();
    let last = reader.clone();
    let events = scope.watch::<guard::Read>(client, list_pages(), relist.clone()).filter_map(move |event| {
        futures::future::ready(match event {
            Ok(event) => guard::readable(event, &last).map(Ok),
            Err(e) => Some(Err(e)),
        })
    });
    // A change of a spec, or a deletion, also reconciles the service's callers and callees (see
    // below). It is taken from this same watch once the store holds it; status updates, most of
    // the traffic while services come up, concern no one else.
    let (spec_changes, spec_changed) = futures::channel::mpsc::unbounded::<Microservice>();
    let mut generations: HashMap<ObjectRef<Microservice>, Option<i64>> = HashMap::new();
    // The fleet that rendering sees follows the store, change by change, sharing its objects;
    // a relist replaces it whole once the store has taken it, as the store does.
    let fleet = Fleet::default();
    let (updated, store) = (fleet.clone(), reader.clone());
    let microservices = reflector(writer, events)
        .inspect_ok(move |event| {
            let changed = match event {
                watcher::Event::Apply(ms) | watcher::Event::InitApply(ms) => {
                    if matches!(event, watcher::Event::Apply(_)) {
                        updated.apply(store.get(&ObjectRef::from(ms)).unwrap_or_else(|| Arc::new(ms.clone())));
                    }
                    let generation = ms.metadata.generation;
                    (generations.insert(ObjectRef::from(ms), generation) != Some(generation)).then_some(ms)
                }
                watcher::Event::Delete(ms) => {
                    updated.remove(ms.ns(), &ms.name_any());
                    generations.remove(&ObjectRef::from(ms));
                    Some(ms)
                }
                watcher::Event::Init => None,
                watcher::Event::InitDone => {
                    updated.replace(store.state());
                    None
                }
            };
            if let Some(ms) = changed {
                let _ = spec_changes.unbounded_send(ms.clone());
            }
        })
        .applied_objects()
        // A Microservice's own status write (most of its events while it comes up) asks for no
        // reconcile: the children's watches bring what the status follows.
        .predicate_filter(reconcile_worthy, Default::default());
    // Only children Flotilla made are watched.
    let children = list_pages().labels(&format!("{MANAGED_BY_LABEL}={MANAGER}"));
    // The children's watches fill the caches and trigger their owners' reconciles.
    fn owned<K>(
        events: impl futures::Stream<Item = Result<watcher::Event<K>, watcher::Error>>,
    ) -> (Cache<K>, impl futures::Stream<Item = Result<K, watcher::Error>>)
    where
        K: Resource + Clone + serde::Serialize + serde::de::DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
        K::DynamicType: Default + Eq + std::hash::Hash + Clone,
    {
        let cache = Cache::default();
        // The comparisons never read managedFields, which are a large share of each object;
        // of a Deployment's, only what the replica hand-off asks is kept (see `replicas_owner`).
        let events = events.modify(|obj| {
            let kept = replicas_owner(obj.managed_fields());
            *obj.managed_fields_mut() = kept;
        });
        let touched = cache.fill(events);
        (cache, touched)
    }
    let (deployments, deployment_events) = owned(scope.watch::<Deployment>(client, children.clone(), relist.clone()));
    let (services, service_events) = owned(scope.watch::<Service>(client, children.clone(), relist.clone()));
    let (service_accounts, service_account_events) =
        owned(scope.watch::<ServiceAccount>(client, children.clone(), relist.clone()));
    let (hpas, hpa_events) = owned(scope.watch::<HorizontalPodAutoscaler>(client, children.clone(), relist.clone()));
    let (network_policies, network_policy_events) =
        owned(scope.watch::<NetworkPolicy>(client, children.clone(), relist.clone()));
    let (pdbs, pdb_events) = owned(scope.watch::<PodDisruptionBudget>(client, children.clone(), relist.clone()));
    let (ingresses, ingress_events) = owned(scope.watch::<Ingress>(client, children.clone(), relist.clone()));
    let (stateful_sets, stateful_set_events) =
        owned(scope.watch::<StatefulSet>(client, children.clone(), relist.clone()));
    let (secrets, secret_events) = owned(scope.watch::<Secret>(client, children.clone(), relist.clone()));
    // Ingresses Flotilla did not make hold their hosts too: a change of one reconciles the
    // services that claim one of its hosts. Only their hosts and age are kept.
    let (foreign_ingresses, foreign_writer) = reflector::store::<Ingress>();
    let foreign = scope
        .watch::<Ingress>(client, list_pages().labels(&format!("{MANAGED_BY_LABEL}!={MANAGER}")), relist.clone())
        .modify(|ing| {
            ing.metadata.managed_fields = None;
            ing.metadata.annotations = None;
            ing.status = None;
        });
    let foreign_events = reflector(foreign_writer, foreign).touched_objects();
    // Which custom kinds are served; the claim kinds' watches follow it and the classes.
    let (crds, crd_changes) = super::crds::watch(client, relist.clone());
    let claims = super::dynamic::DynamicKinds::default();
    let caches = Caches {
        deployments,
        services,
        service_accounts,
        hpas,
        network_policies,
        pdbs,
        ingresses,
        stateful_sets,
        secrets,
        foreign_ingresses,
        claims: claims.clone(),
        crds: crds.clone(),
        scope: scope.clone(),
    };
    // Each watch retries on its own (`WatchBackoff`); kube's Controller would also pause all of
    // them together after any one fails, by up to 30 s, and only forget after 2 minutes without
    // a failure: see `NoJointBackoff`.
    let controller = Controller::for_stream(microservices, reader)
        .trigger_backoff(NoJointBackoff)
        .owns_stream(deployment_events)
        .owns_stream(service_events)
        .owns_stream(service_account_events)
        .owns_stream(hpa_events)
        .owns_stream(network_policy_events)
        .owns_stream(pdb_events)
        .owns_stream(ingress_events)
        .owns_stream(stateful_set_events);
    // The database's Secrets carry no owner reference (see render::Input::data_meta): a change
    // reaches the service they are labelled for.
    let controller = controller.watches_stream(secret_events, |secret: Secret| {
        let service = secret.labels().get(SELECTOR_LABEL)?.clone();
        Some(ObjectRef::new(&service).within(secret.namespace()?.as_str()))
    });
    let claimers = fleet.clone();
    let controller = controller.watches_stream(foreign_events, move |ing: Ingress| {
        let hosts = crate::render::hosts::ingress_hosts(&ing);
        hosts.flat_map(|h| claimers.claimers_of(&h)).map(|ms| ObjectRef::from(ms.as_ref())).collect::<Vec<_>>()
    });
    let seen: Mutex<HashMap<ObjectRef<Microservice>, HashSet<ObjectRef<Microservice>>>> = Mutex::default();
    // One dependency list drives both sides: when a service changes, the services it calls
    // (before and after the change) and the services that call it are reconciled too.
    let callers = fleet.clone();
    let controller =
        controller.watches_stream(spec_changed.map(Ok), move |ms: Microservice| related(&ms, &callers, &seen));
    // DatabaseClasses are cached, and a change of one reconciles the services that use it (or
    // the default class), so a class created late or fixed is picked up at once.
    let (classes, class_writer) = reflector::store::<Guarded<DatabaseClass>>();
    let class_events =
        reflector(class_writer, relisting(Api::all(client.clone()), watcher::Config::default(), relist.clone()))
            .touched_objects();
    let store = controller.store();
    let controller = controller.watches_stream(class_events, move |class: Guarded<DatabaseClass>| {
        let name = class.meta().name.clone().unwrap_or_default();
        if let Err(e) = &class.0 {
            warn!(class = name, error = %e, "cannot read a DatabaseClass; the services that name it see none");
        }
        users_of_class(&name, &store)
    });
    // A claim's watch reconciles its service (claims carry no owner reference).
    let (wake, woken) = futures::channel::mpsc::unbounded();
    tokio::spawn(super::dynamic::keep_claim_watches(
        client.clone(),
        scope.clone(),
        crds,
        classes.clone(),
        claims,
        relist,
        wake,
    ));
    let controller = controller.reconcile_on(woken);
    // A custom kind in use that comes (or goes) reconciles every service: services waiting for
    // it go on without a restart. Only a change of what is served counts, and only in a group a
    // DatabaseClass names: another operator's CRDs being installed costs nothing.
    let in_use = classes.clone();
    let controller = controller.reconcile_all_on(crd_changes.filter_map(move |groups| {
        let used = in_use.state().iter().any(|c| {
            let claim = c.0.as_ref().ok().and_then(|c| c.spec.claim.as_ref());
            claim.and_then(|claim| claim.api_version.split_once('/')).is_some_and(|(group, _)| groups.contains(group))
        });
        if used {
            tracing::info!(?groups, "custom kinds in use changed: every service is reconciled");
        }
        futures::future::ready(used.then_some(()))
    }));
    (controller, fleet, classes, caches)
}

/// A watch (with [`WatchBackoff`]) that starts over, from a fresh list, each time `relist`
/// changes: the operator says so when the API server answers again after its watches failed.
/// A watch resumed from its last resourceVersion on an API server that was restarted may stay
/// silent for minutes before it is told 410 Gone (measured by the fault suite: the Microservice
/// cache was two minutes stale, every write over it refused as a conflict); a fresh list is
/// current at once. The caches and the store take the new list as a relist.
pub(super) fn relisting<K>(
    api: Api<K>,
    config: watcher::Config,
    relist: tokio::sync::watch::Receiver<u64>,
) -> impl futures::Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    let start = move || watcher::watcher(api.clone(), config.clone()).backoff(WatchBackoff::default()).boxed();
    let current = start();
    futures::stream::unfold((current, relist, start), |(mut current, mut relist, start)| async move {
        loop {
            tokio::select! {
                item = current.next() => return item.map(|item| (item, (current, relist, start))),
                changed = relist.changed() => {
                    if changed.is_err() {
                        // No one can ask for a relist any more: this watch goes on as it is.
                        let item = current.next().await?;
                        return Some((item, (current, relist, start)));
                    }
                    current = start();
                }
            }
        }
    })
}

/// The Controller's backoff over all its watches together: none. By default kube's Controller
/// stops reading every watch, and so every cache and the Microservice store, for up to 30 s each
/// time any one of them fails, and lets that pause grow until two minutes pass without a
/// failure. After an API server restart ten watches fail in turn (410 Gone, 403 while its
/// authorizer warms up), and the fault suite saw the caches frozen for two minutes, every write
/// over them refused as a conflict. Each watch already retries with its own [`WatchBackoff`].
#[derive(Debug, Clone, Copy)]
pub struct NoJointBackoff;

impl Iterator for NoJointBackoff {
    type Item = std::time::Duration;
    fn next(&mut self) -> Option<std::time::Duration> {
        Some(std::time::Duration::ZERO)
    }
}

impl kube::runtime::utils::Backoff for NoJointBackoff {
    fn reset(&mut self) {}
}

/// How a failing watch retries: after 250 ms, doubling to at most 5 s, back to 250 ms once it
/// yields again. Without it a watch whose API server is gone retries at once, over and over
/// (ten watches, thousands of connection attempts and log lines a second); with kube's default
/// (up to 30 s) a short outage of the API server would leave the caches stale for half a minute
/// after it is back.
#[derive(Debug, Clone, Copy)]
pub struct WatchBackoff {
    next: std::time::Duration,
}

impl WatchBackoff {
    const FIRST: std::time::Duration = std::time::Duration::from_millis(250);
    const MAX: std::time::Duration = std::time::Duration::from_secs(5);
}

impl Default for WatchBackoff {
    fn default() -> Self {
        WatchBackoff { next: Self::FIRST }
    }
}

impl Iterator for WatchBackoff {
    type Item = std::time::Duration;

    fn next(&mut self) -> Option<std::time::Duration> {
        let delay = self.next;
        self.next = (self.next * 2).min(Self::MAX);
        Some(delay)
    }
}

impl kube::runtime::utils::Backoff for WatchBackoff {
    fn reset(&mut self) {
        self.next = Self::FIRST;
    }
}

/// The watches list in pages of 100 objects rather than the default 500: at a start over a
/// large fleet, ten watches list at once, and what their pages hold while being parsed is most
/// of the operator's peak memory.
fn list_pages() -> watcher::Config {
    watcher::Config::default().page_size(100)
}

/// Of an object's field owners, only Flotilla's own apply entry, reduced to whether it sets
/// `spec.replicas`: all that [`super::replicas`] reads of a cached Deployment's (other kinds have
/// no such field, so theirs are dropped whole).
fn replicas_owner(
    fields: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry],
) -> Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry> {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{FieldsV1, ManagedFieldsEntry};
    fields
        .iter()
        .filter(|m| {
            m.manager.as_deref() == Some(super::apply::FIELD_MANAGER) && m.operation.as_deref() == Some("Apply")
        })
        .filter(|m| m.fields_v1.as_ref().is_some_and(|f| f.0.pointer("/f:spec/f:replicas").is_some()))
        .map(|m| ManagedFieldsEntry {
            manager: m.manager.clone(),
            operation: m.operation.clone(),
            fields_v1: Some(FieldsV1(serde_json::json!({"f:spec": {"f:replicas": {}}}))),
            ..Default::default()
        })
        .collect()
}

/// What a reconcile of a Microservice depends on, besides its children: everything but its
/// status (and resourceVersion and field owners). A change of the spec bumps the generation,
/// and so does the deletion of an object with finalizers.
fn reconcile_worthy(ms: &Microservice) -> Option<u64> {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    let meta = &ms.metadata;
    (&meta.uid, meta.generation, meta.deletion_timestamp.is_some()).hash(&mut h);
    (&meta.labels, &meta.annotations, &meta.finalizers).hash(&mut h);
    Some(h.finish())
}

/// The services whose database uses the class `name`, or the default class (any class may have
/// become, or stopped being, the default).
fn users_of_class(name: &str, store: &Store<Microservice>) -> Vec<ObjectRef<Microservice>> {
    store
        .state()
        .iter()
        .filter(|ms| ms.spec.database.as_ref().is_some_and(|db| db.class.as_deref().is_none_or(|class| class == name)))
        .map(|ms| ObjectRef::from(ms.as_ref()))
        .collect()
}

fn related(
    ms: &Microservice,
    fleet: &Fleet,
    seen: &Mutex<HashMap<ObjectRef<Microservice>, HashSet<ObjectRef<Microservice>>>>,
) -> Vec<ObjectRef<Microservice>> {
    let me = ObjectRef::from(ms);
    let own_ns = ms.ns().to_string();
    // Its callees, and the other claimers of its host (one of them may hold it, or take it
    // over when this one goes): remembered, so that those of before a change are told too.
    let mut callees: HashSet<ObjectRef<Microservice>> = ms
        .spec
        .dependencies
        .iter()
        .flatten()
        .filter_map(|d| d.target(&own_ns).map(|(ns, svc)| ObjectRef::new(svc).within(ns)))
        .collect();
    if let Some(host) = crate::render::hosts::claimed_host(ms) {
        callees.extend(fleet.claimers_of(&host).iter().map(|o| ObjectRef::from(o.as_ref())));
    }
    let previous = {
        let mut seen = seen.lock().unwrap_or_else(|p| p.into_inner());
        if ms.metadata.deletion_timestamp.is_some() {
            seen.remove(&me)
        } else {
            seen.insert(me.clone(), callees.clone())
        }
    };
    let name = ms.metadata.name.clone().unwrap_or_default();
    let mut out: HashSet<ObjectRef<Microservice>> = callees;
    out.extend(previous.unwrap_or_default());
    // The other side of a name clash (`x` with a database, and `x-db`): refused while this one
    // holds the names, it is looked at again when this one changes or goes.
    out.insert(ObjectRef::new(&database::object_name(&name)).within(&own_ns));
    if let Some(owner) = name.strip_suffix(database::OBJECT_SUFFIX) {
        out.insert(ObjectRef::new(owner).within(&own_ns));
    }
    out.extend(fleet.callers_of(&own_ns, &name).into_iter().map(|c| ObjectRef::new(&c.name).within(&c.namespace)));
    out.remove(&me);
    out.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::Dependency;

    fn ms(ns: &str, name: &str, calls: &[&str]) -> Microservice {
        let mut ms = Microservice::new(name, Default::default());
        ms.metadata.namespace = Some(ns.into());
        let dependency = |c: &&str| match c.split_once('/') {
            Some((ns, svc)) => {
                Dependency { namespace: Some(ns.into()), service: Some(svc.into()), ..Default::default() }
            }
            None => Dependency { service: Some(c.to_string()), ..Default::default() },
        };
        ms.spec.dependencies = Some(calls.iter().map(dependency).collect());
        ms
    }

    fn names(mut refs: Vec<ObjectRef<Microservice>>) -> Vec<String> {
        refs.sort_by_key(|r| (r.namespace.clone(), r.name.clone()));
        refs.iter().map(|r| format!("{}/{}", r.namespace.as_deref().unwrap_or_default(), r.name)).collect()
    }

    #[test]
    fn a_failing_watch_waits_longer_each_time_up_to_five_seconds_and_starts_over_once_it_works() {
        use kube::runtime::utils::Backoff;
        let mut b = WatchBackoff::default();
        let ms: Vec<u128> = b.by_ref().take(7).map(|d| d.as_millis()).collect();
        assert_eq!(ms, [250, 500, 1000, 2000, 4000, 5000, 5000]);
        b.reset();
        assert_eq!(b.next().map(|d| d.as_millis()), Some(250));
    }

    #[test]
    fn a_change_concerns_callers_callees_old_and_new_and_the_other_side_of_a_name_clash() {
        let store: Fleet = [ms("shop", "web", &["api"]), ms("ops", "probe", &["shop/api"]), ms("shop", "api", &["db"])]
            .into_iter()
            .map(Arc::new)
            .collect();
        let seen = Mutex::default();
        assert_eq!(
            names(related(&ms("shop", "api", &["db"]), &store, &seen)),
            ["ops/probe", "shop/api-db", "shop/db", "shop/web"]
        );
        // `api` stops calling `db` and calls `cache`: both are told.
        assert_eq!(
            names(related(&ms("shop", "api", &["cache"]), &store, &seen)),
            ["ops/probe", "shop/api-db", "shop/cache", "shop/db", "shop/web"]
        );
        assert_eq!(names(related(&ms("shop", "api-db", &[]), &store, &seen)), ["shop/api", "shop/api-db-db"]);
    }
}
