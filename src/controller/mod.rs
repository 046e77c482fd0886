//! The operator: watches Microservices and their children and keeps them converged.

mod apply;
mod context;
mod database;
mod error;
#[cfg(test)]
mod fake_api;
mod guard;
mod leader;
mod reconcile;
mod replicas;
mod status;

pub use apply::{FIELD_MANAGER, is_subset};
pub use error::Error;
pub use status::{AUTOSCALING, AVAILABLE, DATABASE_READY, DEPENDENCIES_READY, READY, RECONCILING, STALLED};

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{Secret, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::{Ingress, NetworkPolicy};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, ListParams};
use kube::client::ClientBuilder;
use kube::core::DeserializeGuard as Guarded;
use kube::runtime::controller::{Config as ControllerConfig, Controller};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::watcher;
use kube::runtime::{WatchStreamExt, reflector::reflector};
use kube::{Client, Resource, ResourceExt};
use tracing::{error, info, warn};

use crate::api::{DatabaseClass, Microservice};
use crate::metrics::Metrics;
use crate::render::Settings;
use crate::server::{self, Health};
use context::{Caches, Context};

/// How the operator runs.
#[derive(Clone, Debug)]
pub struct RunConfig {
    /// Watch only this namespace; all namespaces when None.
    pub namespace: Option<String>,
    pub metrics_addr: SocketAddr,
    pub concurrency: u16,
    pub leader_election: Option<LeaderElection>,
    pub settings: Settings,
}

#[derive(Clone, Debug)]
pub struct LeaderElection {
    pub namespace: String,
    pub lease_name: String,
    pub identity: String,
    pub lease_duration: Duration,
}

/// Failures that stop the operator.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot configure the Kubernetes client (in-cluster or KUBECONFIG): {0}")]
    Config(#[source] kube::Error),
    #[error("cannot reach the Kubernetes API or the Microservice CRD is missing (kubectl apply -f crds/): {0}")]
    Crd(#[source] kube::Error),
    #[error("cannot serve metrics on {addr}: {source}")]
    Serve {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("lost leadership; exiting so that only one replica acts")]
    LostLeadership,
}

/// Builds a client whose every request is counted in `metrics`.
pub async fn client(metrics: Arc<Metrics>) -> Result<Client, RunError> {
    let config = kube::Config::infer().await.map_err(|e| RunError::Config(kube::Error::InferConfig(e)))?;
    let count = tower::util::MapRequestLayer::new(move |req: http::Request<kube::client::Body>| {
        metrics.count_request(&req);
        req
    });
    let builder = ClientBuilder::try_from(config).map_err(RunError::Config)?;
    Ok(builder.with_layer(&count).build())
}

pub async fn run(config: RunConfig) -> Result<(), RunError> {
    let metrics = Arc::new(Metrics::default());
    let addr = config.metrics_addr;
    let listener = server::bind(addr).await.map_err(|source| RunError::Serve { addr, source })?;
    let client = client(metrics.clone()).await?;
    let ms_api: Api<Microservice> = match &config.namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };

    let ready = Arc::new(AtomicBool::new(false));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let health = Health { metrics: metrics.clone(), ready: ready.clone() };
    let server_stop = wait_true(stop_rx.clone());
    let server = tokio::spawn(async move { server::serve(listener, health, server_stop).await });
    tokio::spawn(async move {
        shutdown_signal().await;
        info!("shutdown requested");
        let _ = stop_tx.send(true);
    });
    tokio::select! {
        found = wait_for_crd(&ms_api) => found?,
        _ = wait_true(stop_rx.clone()) => return finish(server).await,
    }

    let elector = config.leader_election.as_ref().map(|le| {
        leader::LeaderElector::new(
            Api::namespaced(client.clone(), &le.namespace),
            &le.lease_name,
            &le.identity,
            le.lease_duration,
        )
    });
    let mut lost = None;
    if let Some(e) = &elector {
        // A standby is healthy and ready to take over.
        ready.store(true, Ordering::Relaxed);
        tokio::select! {
            _ = e.acquire() => {}
            _ = wait_true(stop_rx.clone()) => {
                return finish(server).await;
            }
        }
        ready.store(false, Ordering::Relaxed);
        lost = Some(e.keep());
    }

    let (controller, classes, caches) = build_controller(&client, &config);
    let store = controller.store();
    let ctx = Arc::new(Context::new(
        client.clone(),
        Recorder::new(client.clone(), Reporter { controller: "flotilla".into(), instance: None }),
        metrics.clone(),
        config.settings.clone(),
        store.clone(),
        classes,
        caches,
    ));
    {
        let ready = ready.clone();
        let store = store.clone();
        tokio::spawn(async move {
            // The store's readiness signal wakes only its most recent waiter, and the controller
            // waits on it too: poll with a timeout instead of parking on it for good.
            loop {
                match tokio::time::timeout(Duration::from_millis(250), store.wait_until_ready()).await {
                    Ok(Ok(())) => {
                        info!("caches synced");
                        ready.store(true, Ordering::Relaxed);
                        return;
                    }
                    Ok(Err(_)) => return,
                    Err(_) => {}
                }
            }
        });
    }

    let lost_flag = Arc::new(AtomicBool::new(false));
    let stop = {
        let lost_flag = lost_flag.clone();
        let mut stop_rx = stop_rx.clone();
        async move {
            match lost {
                Some(mut lost) => tokio::select! {
                    _ = stop_rx.wait_for(|s| *s) => {}
                    _ = lost.wait_for(|l| *l) => lost_flag.store(true, Ordering::Relaxed),
                },
                None => {
                    let _ = stop_rx.wait_for(|s| *s).await;
                }
            }
        }
    };
    controller
        .with_config(ControllerConfig::default().concurrency(config.concurrency).debounce(Duration::from_millis(500)))
        .graceful_shutdown_on(stop)
        .run(reconcile::reconcile, reconcile::error_policy, ctx)
        .for_each(|res| {
            if let Err(e) = res {
                // Reconcile errors were already counted and logged by the error policy.
                if !matches!(e, kube::runtime::controller::Error::ReconcilerFailed(..)) {
                    warn!(error = %e, "controller");
                }
            }
            futures::future::ready(())
        })
        .await;
    info!("controller stopped");

    if lost_flag.load(Ordering::Relaxed) {
        return Err(RunError::LostLeadership);
    }
    if let Some(e) = &elector {
        e.release().await;
    }
    finish(server).await
}

/// How long the operator waits at start for the Microservice API to answer. A GitOps sync
/// often applies the CRDs, the RBAC and the operator together: a CRD just created is served a
/// moment after it is established, and a new RoleBinding takes a moment to be authorized.
const STARTUP_WAIT: Duration = Duration::from_secs(60);

async fn wait_for_crd(ms_api: &Api<Microservice>) -> Result<(), RunError> {
    let deadline = tokio::time::Instant::now() + STARTUP_WAIT;
    let mut delay = Duration::from_millis(250);
    loop {
        match ms_api.list_metadata(&ListParams::default().limit(1)).await {
            Ok(_) => return Ok(()),
            Err(e) if tokio::time::Instant::now() + delay < deadline => {
                warn!(error = %e, retry_in = ?delay, "the Microservice API does not answer yet");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
            Err(e) => return Err(RunError::Crd(e)),
        }
    }
}

async fn finish(server: tokio::task::JoinHandle<std::io::Result<()>>) -> Result<(), RunError> {
    server.abort();
    Ok(())
}

fn build_controller(
    client: &Client,
    config: &RunConfig,
) -> (Controller<Microservice>, Store<Guarded<DatabaseClass>>, Caches) {
    fn api<K>(client: &Client, ns: &Option<String>) -> Api<K>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        K::DynamicType: Default,
    {
        match ns {
            Some(ns) => Api::namespaced(client.clone(), ns),
            None => Api::all(client.clone()),
        }
    }
    let ns = &config.namespace;
    // Each Microservice is read on its own, so one that cannot be read never stops the others.
    let (reader, writer) = reflector::store::<Microservice>();
    let last = reader.clone();
    let events =
        watcher::watcher(api::<guard::Read>(client, ns), watcher::Config::default()).filter_map(move |event| {
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
    let microservices = reflector(writer, events)
        .inspect_ok(move |event| {
            let changed = match event {
                watcher::Event::Apply(ms) | watcher::Event::InitApply(ms) => {
                    let generation = ms.metadata.generation;
                    (generations.insert(ObjectRef::from(ms), generation) != Some(generation)).then_some(ms)
                }
                watcher::Event::Delete(ms) => {
                    generations.remove(&ObjectRef::from(ms));
                    Some(ms)
                }
                watcher::Event::Init | watcher::Event::InitDone => None,
            };
            if let Some(ms) = changed {
                let _ = spec_changes.unbounded_send(ms.clone());
            }
        })
        .applied_objects();
    // Only children Flotilla made are watched.
    let children = watcher::Config::default().labels("app.kubernetes.io/managed-by=flotilla");
    // The children's watches fill the caches and trigger their owners' reconciles.
    fn owned<K>(
        api: Api<K>,
        config: watcher::Config,
    ) -> (Store<K>, impl futures::Stream<Item = Result<K, watcher::Error>>)
    where
        K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
        K::DynamicType: Default + Eq + std::hash::Hash + Clone,
    {
        let (reader, writer) = reflector::store::<K>();
        // The comparisons never read managedFields, which are a large share of each object.
        let events = watcher::watcher(api, config).modify(|obj| obj.managed_fields_mut().clear());
        (reader, reflector(writer, events).touched_objects())
    }
    let (deployments, deployment_events) = owned(api::<Deployment>(client, ns), children.clone());
    let (services, service_events) = owned(api::<Service>(client, ns), children.clone());
    let (service_accounts, service_account_events) = owned(api::<ServiceAccount>(client, ns), children.clone());
    let (hpas, hpa_events) = owned(api::<HorizontalPodAutoscaler>(client, ns), children.clone());
    let (network_policies, network_policy_events) = owned(api::<NetworkPolicy>(client, ns), children.clone());
    let (pdbs, pdb_events) = owned(api::<PodDisruptionBudget>(client, ns), children.clone());
    let (ingresses, ingress_events) = owned(api::<Ingress>(client, ns), children.clone());
    let (stateful_sets, stateful_set_events) = owned(api::<StatefulSet>(client, ns), children.clone());
    let (secrets, secret_events) = owned(api::<Secret>(client, ns), children.clone());
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
    };
    let controller = Controller::for_stream(microservices, reader)
        .owns_stream(deployment_events)
        .owns_stream(service_events)
        .owns_stream(service_account_events)
        .owns_stream(hpa_events)
        .owns_stream(network_policy_events)
        .owns_stream(pdb_events)
        .owns_stream(ingress_events)
        .owns_stream(stateful_set_events)
        .owns_stream(secret_events);
    let store = controller.store();
    let seen: Mutex<HashMap<ObjectRef<Microservice>, HashSet<ObjectRef<Microservice>>>> = Mutex::default();
    // One dependency list drives both sides: when a service changes, the services it calls
    // (before and after the change) and the services that call it are reconciled too.
    let controller =
        controller.watches_stream(spec_changed.map(Ok), move |ms: Microservice| related(&ms, &store, &seen));
    // DatabaseClasses are cached, and a change of one reconciles the services that use it (or
    // the default class), so a class created late or fixed is picked up at once.
    let (classes, class_writer) = reflector::store::<Guarded<DatabaseClass>>();
    let class_events = reflector(class_writer, watcher::watcher(Api::all(client.clone()), watcher::Config::default()))
        .touched_objects();
    let store = controller.store();
    let controller = controller.watches_stream(class_events, move |class: Guarded<DatabaseClass>| {
        let name = class.meta().name.clone().unwrap_or_default();
        if let Err(e) = &class.0 {
            warn!(class = name, error = %e, "cannot read a DatabaseClass; the services that name it see none");
        }
        users_of_class(&name, &store)
    });
    (controller, classes, caches)
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
    store: &Store<Microservice>,
    seen: &Mutex<HashMap<ObjectRef<Microservice>, HashSet<ObjectRef<Microservice>>>>,
) -> Vec<ObjectRef<Microservice>> {
    let me = ObjectRef::from(ms);
    let own_ns = ms.metadata.namespace.clone().unwrap_or_default();
    let callees: HashSet<ObjectRef<Microservice>> = ms
        .spec
        .dependencies
        .iter()
        .flatten()
        .filter_map(|d| d.target(&own_ns).map(|(ns, svc)| ObjectRef::new(svc).within(ns)))
        .collect();
    let previous = {
        let mut seen = seen.lock().unwrap_or_else(|p| p.into_inner());
        if ms.metadata.deletion_timestamp.is_some() {
            seen.remove(&me)
        } else {
            seen.insert(me.clone(), callees.clone())
        }
    };
    let name = ms.metadata.name.clone().unwrap_or_default();
    let callers = store.state().into_iter().filter(|other| {
        let other_ns = other.ns();
        other.spec.dependencies.iter().flatten().any(|d| d.target(other_ns) == Some((own_ns.as_str(), name.as_str())))
    });
    let mut out: HashSet<ObjectRef<Microservice>> = callees;
    out.extend(previous.unwrap_or_default());
    // The other side of a name clash (`x` with a database, and `x-db`): refused while this one
    // holds the names, it is looked at again when this one changes or goes.
    out.insert(ObjectRef::new(&crate::render::database::object_name(&name)).within(&own_ns));
    if let Some(owner) = name.strip_suffix(crate::render::database::OBJECT_SUFFIX) {
        out.insert(ObjectRef::new(owner).within(&own_ns));
    }
    out.extend(callers.map(|m| ObjectRef::from(m.as_ref())));
    out.remove(&me);
    out.into_iter().collect()
}

async fn wait_true(mut rx: tokio::sync::watch::Receiver<bool>) {
    let _ = rx.wait_for(|v| *v).await;
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(e) => {
                error!(error = %e, "cannot listen for SIGTERM");
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
