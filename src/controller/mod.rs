//! The operator: watches Microservices and their children and keeps them converged.

mod apply;
mod cache;
mod context;
mod crds;
mod database;
mod dynamic;
mod error;
#[cfg(test)]
mod fake_api;
mod guard;
mod leader;
mod reconcile;
mod replicas;
pub mod scope;
pub use scope::Scope;
mod status;
mod watches;

pub use apply::{FIELD_MANAGER, is_subset};
pub use error::Error;
pub use status::{AUTOSCALING, AVAILABLE, DATABASE_READY, DEPENDENCIES_READY, READY, RECONCILING, STALLED};

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::StreamExt;
use kube::Client;
use kube::api::{Api, ListParams};
use kube::client::ClientBuilder;
use kube::runtime::controller::Config as ControllerConfig;
use kube::runtime::events::{Recorder, Reporter};
use tracing::{debug, error, info, warn};

use crate::api::Microservice;
use crate::metrics::Metrics;
use crate::render::Settings;
use crate::server::{self, Health};
use context::Context;

/// How the operator runs.
#[derive(Clone, Debug)]
pub struct RunConfig {
    /// The namespaces watched (all, or a list).
    pub scope: Scope,
    pub metrics_addr: SocketAddr,
    pub concurrency: u16,
    /// How long one reconcile may take before it is given up (see `reconcile::within`).
    pub reconcile_timeout: Duration,
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

/// Builds a client whose every request is counted in `metrics`, and whose writes go only while
/// `fence` is open (the Lease's own requests always go: they are how it opens again).
pub async fn client(metrics: Arc<Metrics>, fence: leader::Fence) -> Result<Client, RunError> {
    let config = kube::Config::infer().await.map_err(|e| RunError::Config(kube::Error::InferConfig(e)))?;
    let count = tower::util::MapRequestLayer::new(move |req: http::Request<kube::client::Body>| {
        metrics.count_request(&req);
        req
    });
    let fenced = tower::filter::FilterLayer::new(move |req: http::Request<kube::client::Body>| {
        let write = !matches!(req.method(), &http::Method::GET | &http::Method::HEAD);
        if write && !req.uri().path().starts_with("/apis/coordination.k8s.io/") && !fence.may_write() {
            return Err(tower::BoxError::from(NotLeading));
        }
        Ok(req)
    });
    let builder = ClientBuilder::try_from(config).map_err(RunError::Config)?;
    // Refused before it is counted: a write the fence stops is not sent.
    Ok(builder.with_layer(&count).with_layer(&fenced).build())
}

/// What a write refused by the fence fails with.
#[derive(Debug, thiserror::Error)]
#[error("not sent: this replica's leader Lease was not renewed within its renew deadline")]
pub struct NotLeading;

pub async fn run(config: RunConfig) -> Result<(), RunError> {
    let metrics = Arc::new(Metrics::default());
    let addr = config.metrics_addr;
    let listener = server::bind(addr).await.map_err(|source| RunError::Serve { addr, source })?;
    let fence = match &config.leader_election {
        Some(le) => leader::Fence::for_lease(le.lease_duration),
        None => leader::Fence::open(),
    };
    let client = client(metrics.clone(), fence.clone()).await?;
    // At start, the Microservice API answering in every namespace watched.
    let ms_apis: Vec<Api<Microservice>> = config.scope.apis(&client);

    let ready = Arc::new(AtomicBool::new(false));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let reachable = Arc::new(AtomicBool::new(true));
    let health = Health { metrics: metrics.clone(), ready: ready.clone(), reachable: reachable.clone() };
    let server_stop = wait_true(stop_rx.clone());
    let server = tokio::spawn(async move { server::serve(listener, health, server_stop).await });
    tokio::spawn(async move {
        shutdown_signal().await;
        info!("shutdown requested");
        let _ = stop_tx.send(true);
    });
    tokio::select! {
        found = wait_for_crd(&ms_apis) => found?,
        _ = wait_true(stop_rx.clone()) => return finish(server).await,
    }

    let elector = config.leader_election.as_ref().map(|le| {
        leader::LeaderElector::new(
            Api::namespaced(client.clone(), &le.namespace),
            &le.lease_name,
            &le.identity,
            le.lease_duration,
        )
        .with_fence(fence.clone())
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
    metrics.leader.set(1);

    let (relist, relisted) = tokio::sync::watch::channel(0u64);
    let (controller, fleet, classes, caches) = watches::build(&client, &config.scope, relisted);
    let store = controller.store();
    let ctx = Arc::new(Context::new(
        client.clone(),
        Recorder::new(client.clone(), Reporter { controller: crate::api::contract::MANAGER.into(), instance: None }),
        metrics.clone(),
        config.settings.clone(),
        fleet,
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

    tokio::spawn(follow_the_api(client.clone(), reachable.clone(), relist));

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
    let reconcile_timeout = config.reconcile_timeout;
    controller
        .with_config(ControllerConfig::default().concurrency(config.concurrency).debounce(Duration::from_millis(500)))
        .graceful_shutdown_on(stop)
        .run(move |ms, ctx| reconcile::within(reconcile_timeout, ms, ctx), reconcile::error_policy, ctx)
        .for_each(|res| {
            match res {
                // A watch failed: it retries on its own (see watches::WatchBackoff); until the
                // API server answers again this replica is not ready.
                Err(e @ kube::runtime::controller::Error::QueueError(_)) => {
                    if reachable.swap(false, Ordering::Relaxed) {
                        warn!(error = %e, "a watch fails: not ready until the Kubernetes API answers again");
                    } else {
                        debug!(error = %e, "a watch still fails");
                    }
                }
                // Reconcile errors were already counted and logged by the error policy.
                Err(kube::runtime::controller::Error::ReconcilerFailed(..)) | Ok(_) => {}
                // A neighbour asked for that does not exist (the other side of a possible name
                // clash, a callee not made yet): nothing to do.
                Err(e @ kube::runtime::controller::Error::ObjectNotFound(_)) => {
                    debug!(error = %e, "no such Microservice")
                }
                Err(e) => warn!(error = %e, "controller"),
            }
            futures::future::ready(())
        })
        .await;
    info!("controller stopped");
    metrics.leader.set(0);

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

async fn wait_for_crd(ms_apis: &[Api<Microservice>]) -> Result<(), RunError> {
    let deadline = tokio::time::Instant::now() + STARTUP_WAIT;
    let mut delay = Duration::from_millis(250);
    for ms_api in ms_apis {
        loop {
            match ms_api.list_metadata(&ListParams::default().limit(1)).await {
                Ok(_) => break,
                Err(e) if tokio::time::Instant::now() + delay < deadline => {
                    warn!(error = %e, retry_in = ?delay, "the Microservice API does not answer yet");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
                Err(e) => return Err(RunError::Crd(e)),
            }
        }
    }
    Ok(())
}

/// While a watch fails, asks the API server whether it is ready, once a second; when it says so,
/// every watch starts over from a fresh list (see `watches::relisting`) and the operator is ready
/// again. A watch that resumes where it was brings no event that could say the API is back,
/// hence the question.
async fn follow_the_api(client: kube::Client, reachable: Arc<AtomicBool>, relist: tokio::sync::watch::Sender<u64>) {
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        if reachable.load(Ordering::Relaxed) {
            continue;
        }
        let request = http::Request::get("/readyz").body(Vec::new()).expect("a constant request");
        if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_secs(3), client.request_text(request)).await {
            info!("the Kubernetes API answers again: every watch lists afresh; ready");
            relist.send_modify(|n| *n += 1);
            reachable.store(true, Ordering::Relaxed);
        }
    }
}

async fn finish(server: tokio::task::JoinHandle<std::io::Result<()>>) -> Result<(), RunError> {
    server.abort();
    Ok(())
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
