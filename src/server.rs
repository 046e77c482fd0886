//! The operations endpoint: `/metrics`, `/healthz`, `/readyz`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;

use crate::metrics::Metrics;

/// What the endpoints report.
#[derive(Clone)]
pub struct Health {
    pub metrics: Arc<Metrics>,
    /// Set once the caches have synced (and, with leader election, for the standby as well:
    /// a standby is ready to take over).
    pub ready: Arc<AtomicBool>,
    /// Cleared while a watch fails (the API server or etcd is down, or the network between),
    /// set again once the API server answers: a replica that cannot see the cluster is not ready.
    pub reachable: Arc<AtomicBool>,
}

/// Binds the endpoint's address first, so that a port in use stops the operator with a clear
/// error instead of leaving it running without health checks.
pub async fn bind(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    // With port 0 the system picks one: the log says which.
    tracing::info!(addr = %listener.local_addr()?, "serving /metrics, /healthz, /readyz");
    Ok(listener)
}

/// Serves until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    health: Health,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/metrics", get(|State(h): State<Health>| async move { h.metrics.encode() }))
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(|State(h): State<Health>| async move {
                if !h.ready.load(Ordering::Relaxed) {
                    (StatusCode::SERVICE_UNAVAILABLE, "caches not synced yet")
                } else if !h.reachable.load(Ordering::Relaxed) {
                    (StatusCode::SERVICE_UNAVAILABLE, "cannot reach the Kubernetes API: its watches fail")
                } else {
                    (StatusCode::OK, "ready")
                }
            }),
        )
        .with_state(health);
    axum::serve(listener, app).with_graceful_shutdown(shutdown).await
}
