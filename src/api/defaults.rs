//! What a Microservice means where a field is left out: each default decided here, once, and
//! read by validation, rendering and status alike.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use super::{
    Autoscaling, DatabaseSpec, DeletionPolicy, Microservice, MicroserviceSpec, PodSettings, PortSpec, Protocol,
};

/// Namespace of an object that names none, as kubectl would apply it.
pub const DEFAULT_NAMESPACE: &str = "default";
/// `spec.autoscaling.minReplicas` when absent, as the HorizontalPodAutoscaler's own default.
pub const DEFAULT_MIN_REPLICAS: i32 = 1;

impl Microservice {
    /// The namespace the object lives in: the API server always sets it; files without one
    /// are read into [`DEFAULT_NAMESPACE`], as kubectl would apply them.
    pub fn ns(&self) -> &str {
        self.metadata.namespace.as_deref().unwrap_or(DEFAULT_NAMESPACE)
    }
}

impl MicroserviceSpec {
    /// `replicas`, 1 when absent (as a Deployment's own default).
    pub fn replicas(&self) -> i32 {
        self.replicas.unwrap_or(1)
    }

    /// Whether the pods get a ServiceAccount token: only when `pod.automountServiceAccountToken`
    /// asks for one.
    pub fn automount_token(&self) -> bool {
        self.pod.as_ref().and_then(|p: &PodSettings| p.automount_service_account_token).unwrap_or(false)
    }

    /// The ports, with the default `http` 8080/TCP when none are given.
    pub fn effective_ports(&self) -> Vec<PortSpec> {
        match &self.ports {
            Some(p) if !p.is_empty() => p.clone(),
            _ => vec![PortSpec {
                name: "http".into(),
                port: 8080,
                protocol: Some(Protocol::TCP),
                app_protocol: Some("http".into()),
            }],
        }
    }
}

/// `spec.database.storage` when absent.
pub const DEFAULT_STORAGE: &str = "1Gi";

impl DatabaseSpec {
    /// `storage`, or [`DEFAULT_STORAGE`].
    pub fn storage(&self) -> &str {
        self.storage.as_deref().unwrap_or(DEFAULT_STORAGE)
    }

    /// `deletionPolicy`, Retain when absent: data is never deleted unless asked.
    pub fn deletion_policy(&self) -> DeletionPolicy {
        self.deletion_policy.unwrap_or_default()
    }
}

impl PortSpec {
    /// The protocol, TCP when absent (as for a Service port).
    pub fn protocol(&self) -> Protocol {
        self.protocol.unwrap_or(Protocol::TCP)
    }
}

impl Autoscaling {
    /// `minReplicas`, or [`DEFAULT_MIN_REPLICAS`].
    pub fn min(&self) -> i32 {
        self.min_replicas.unwrap_or(DEFAULT_MIN_REPLICAS)
    }
}

/// Default size limit of the `/tmp` volume.
pub const DEFAULT_TMP_SIZE_LIMIT: &str = "512Mi";
/// Default ephemeral-storage request and limit of a service's container.
pub const DEFAULT_EPHEMERAL_STORAGE: (&str, &str) = ("128Mi", "1Gi");

/// Requests that let the scheduler and the HPA work, and a memory limit that keeps one leaking
/// pod from starving its node. No CPU limit: throttling hurts latency more than it protects.
pub fn default_resources() -> ResourceRequirements {
    ResourceRequirements {
        requests: Some(BTreeMap::from([
            ("cpu".into(), Quantity("100m".into())),
            ("memory".into(), Quantity("128Mi".into())),
        ])),
        limits: Some(BTreeMap::from([("memory".into(), Quantity("256Mi".into()))])),
        ..Default::default()
    }
}

/// The container's resources: the given ones or [`default_resources`], with an ephemeral-storage
/// request and limit added unless the given ones name ephemeral-storage, so that no pod can
/// fill its node's disk.
pub fn resources(given: Option<&ResourceRequirements>) -> ResourceRequirements {
    with_ephemeral_storage(given.cloned().unwrap_or_else(default_resources), DEFAULT_EPHEMERAL_STORAGE)
}

/// `r` with an ephemeral-storage `(request, limit)` added unless it names ephemeral-storage.
pub fn with_ephemeral_storage(mut r: ResourceRequirements, (request, limit): (&str, &str)) -> ResourceRequirements {
    let names = |m: &Option<BTreeMap<String, Quantity>>| m.as_ref().is_some_and(|m| m.contains_key(EPHEMERAL));
    if !names(&r.requests) && !names(&r.limits) {
        r.requests.get_or_insert_with(Default::default).insert(EPHEMERAL.into(), Quantity(request.into()));
        r.limits.get_or_insert_with(Default::default).insert(EPHEMERAL.into(), Quantity(limit.into()));
    }
    r
}

const EPHEMERAL: &str = "ephemeral-storage";

/// The ephemeral-storage limit of `r`, as written.
pub fn ephemeral_limit(r: &ResourceRequirements) -> Option<&str> {
    r.limits.as_ref()?.get(EPHEMERAL).map(|q| q.0.as_str())
}

/// `size`, or the container's ephemeral-storage limit when that is lower: the kubelet evicts a
/// pod whose volumes and logs pass the limit, so a larger `/tmp` would never be reached.
pub fn within_ephemeral_limit<'a>(size: &'a str, r: &'a ResourceRequirements) -> &'a str {
    match ephemeral_limit(r) {
        Some(limit) if parse_quantity(limit).zip(parse_quantity(size)).is_some_and(|(l, s)| l < s) => limit,
        _ => size,
    }
}

/// Parses a Kubernetes quantity (`10Gi`, `500M`, `1.5e3`) into a number of base units.
pub fn parse_quantity(s: &str) -> Option<f64> {
    const SUFFIXES: [(&str, f64); 13] = [
        ("Ki", 1024.0),
        ("Mi", 1048576.0),
        ("Gi", 1073741824.0),
        ("Ti", 1099511627776.0),
        ("Pi", 1125899906842624.0),
        ("Ei", 1152921504606846976.0),
        ("n", 1e-9),
        ("u", 1e-6),
        ("m", 1e-3),
        ("k", 1e3),
        ("M", 1e6),
        ("G", 1e9),
        ("T", 1e12),
    ];
    let s = s.strip_prefix('+').unwrap_or(s);
    let (num, mult) = SUFFIXES
        .iter()
        .find_map(|(suf, m)| s.strip_suffix(suf).map(|n| (n, *m)))
        .or_else(|| s.strip_suffix('P').map(|n| (n, 1e15)))
        .or_else(|| s.strip_suffix('E').filter(|n| !n.is_empty()).map(|n| (n, 1e18)))
        .unwrap_or((s, 1.0));
    let plain = |n: &str| {
        !n.is_empty()
            && n.chars().all(|c| c.is_ascii_digit() || c == '.')
            && n.chars().filter(|&c| c == '.').count() <= 1
            && n != "."
    };
    let value = match num.split_once(['e', 'E']) {
        Some((m, e)) if mult == 1.0 && plain(m) => {
            let e = e.strip_prefix('+').unwrap_or(e);
            let digits = e.strip_prefix('-').unwrap_or(e);
            if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_digit()) {
                return None;
            }
            m.parse::<f64>().ok()? * 10f64.powi(e.parse::<i32>().ok()?)
        }
        _ if plain(num) => num.parse::<f64>().ok()?,
        _ => return None,
    };
    Some(value * mult)
}
