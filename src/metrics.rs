//! Prometheus metrics: reconciles, errors by bounded category, durations, and every API request
//! the operator makes, by verb and resource (which is how "a converged service causes no writes"
//! is checked).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use http::Request;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub category: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub verb: &'static str,
    pub resource: String,
}

/// Every metric the operator exports.
pub struct Metrics {
    registry: Registry,
    pub reconciles: Counter,
    pub failures: Family<ErrorLabels, Counter>,
    pub duration: Histogram,
    pub api_requests: Family<RequestLabels, Counter>,
    /// Distinct Microservices reconciled since the process started: after a restart, how much
    /// of the fleet it has looked at (repeats of one service do not count).
    pub reconciled_objects: Gauge,
    /// 1 while this process leads (or runs without leader election), else 0: a standby
    /// reconciles nothing by design, so "no reconciles" alerts ask the leader only.
    pub leader: Gauge,
    /// Hashes of `namespace/name` of [`Metrics::reconciled_objects`] (8 bytes a service).
    seen: Mutex<HashSet<u64>>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("flotilla");
        let reconciles = Counter::default();
        let failures = Family::<ErrorLabels, Counter>::default();
        let duration = Histogram::new(exponential_buckets(0.005, 2.0, 12));
        let api_requests = Family::<RequestLabels, Counter>::default();
        let reconciled_objects = Gauge::default();
        let leader = Gauge::default();
        registry.register("reconciles", "Reconciliations started", reconciles.clone());
        registry.register("reconcile_errors", "Failed reconciliations by error category", failures.clone());
        registry.register("reconcile_duration_seconds", "Duration of reconciliations", duration.clone());
        registry.register("api_requests", "Requests to the Kubernetes API by verb and resource", api_requests.clone());
        registry.register(
            "microservices_reconciled",
            "Distinct Microservices reconciled since the process started",
            reconciled_objects.clone(),
        );
        registry.register(
            "leader",
            "1 while this replica leads (or runs without leader election), else 0",
            leader.clone(),
        );
        Self {
            registry,
            reconciles,
            failures,
            duration,
            api_requests,
            reconciled_objects,
            leader,
            seen: Mutex::default(),
        }
    }
}

impl Metrics {
    /// The metrics in the Prometheus text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// Counts one reconcile; its duration is recorded when the guard drops.
    pub fn reconcile(self: &Arc<Self>) -> ReconcileGuard {
        self.reconciles.inc();
        ReconcileGuard { metrics: self.clone(), start: Instant::now() }
    }

    /// Notes that the Microservice `namespace/name` was reconciled.
    pub fn reconciled(&self, namespace: &str, name: &str) {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (namespace, name).hash(&mut h);
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if seen.insert(h.finish()) {
            self.reconciled_objects.set(seen.len() as i64);
        }
    }

    /// Counts a request about to be sent.
    pub fn count_request<B>(&self, req: &Request<B>) {
        let (verb, resource) = classify(req.method().as_str(), req.uri().path(), req.uri().query().unwrap_or(""));
        self.api_requests.get_or_create(&RequestLabels { verb, resource }).inc();
    }
}

/// Records a reconcile's duration on drop, whatever way it ends.
pub struct ReconcileGuard {
    metrics: Arc<Metrics>,
    start: Instant,
}

impl Drop for ReconcileGuard {
    fn drop(&mut self) {
        self.metrics.duration.observe(self.start.elapsed().as_secs_f64());
    }
}

/// Kubernetes verb and resource (`deployments`, `microservices/status`) of a request.
pub fn classify(method: &str, path: &str, query: &str) -> (&'static str, String) {
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    // /api/v1/... or /apis/group/version/...
    let rest: &[&str] = match segs.first() {
        Some(&"api") if segs.len() >= 2 => &segs[2..],
        Some(&"apis") if segs.len() >= 3 => &segs[3..],
        _ => return (verb(method, true, query), "other".into()),
    };
    let rest = match rest {
        ["namespaces", _ns, tail @ ..] if !tail.is_empty() => tail,
        r => r,
    };
    let (resource, collection) = match rest {
        [] => ("".to_string(), true),
        [r] => (r.to_string(), true),
        [r, _name] => (r.to_string(), false),
        [r, _name, sub, ..] => (format!("{r}/{sub}"), false),
    };
    (verb(method, collection, query), resource)
}

fn verb(method: &str, collection: bool, query: &str) -> &'static str {
    let watch = query.split('&').any(|kv| kv == "watch=true" || kv == "watch=1");
    match method {
        "GET" if watch => "watch",
        "GET" if collection => "list",
        "GET" => "get",
        "POST" => "create",
        "PUT" => "update",
        "PATCH" => "patch",
        "DELETE" => "delete",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::classify;

    #[test]
    fn classifies_requests() {
        let c = |m, p, q| classify(m, p, q);
        assert_eq!(c("GET", "/apis/apps/v1/namespaces/shop/deployments/orders", ""), ("get", "deployments".into()));
        assert_eq!(
            c("GET", "/apis/apps/v1/deployments", "watch=true&resourceVersion=1"),
            ("watch", "deployments".into())
        );
        assert_eq!(c("GET", "/apis/apps/v1/namespaces/shop/deployments", ""), ("list", "deployments".into()));
        assert_eq!(
            c(
                "PATCH",
                "/apis/flotilla.dev/v1alpha1/namespaces/shop/microservices/orders/status",
                "fieldManager=flotilla"
            ),
            ("patch", "microservices/status".into())
        );
        assert_eq!(c("POST", "/api/v1/namespaces/shop/events", ""), ("create", "events".into()));
        assert_eq!(c("DELETE", "/api/v1/namespaces/shop", ""), ("delete", "namespaces".into()));
        assert_eq!(
            c("PUT", "/apis/coordination.k8s.io/v1/namespaces/x/leases/flotilla", ""),
            ("update", "leases".into())
        );
        assert_eq!(c("GET", "/version", ""), ("list", "other".into()));
    }
}
