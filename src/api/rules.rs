//! The words of each rule the CRD checks with CEL, written once. The rule on the type reports
//! its message at the field's path (`fieldPath`), and `validate` reports the same message at the
//! same path, so `kubectl apply`, `flotilla render` and the status say the same thing.
//! Messages name no field of their own path: the path comes first when they are shown.
//! (The rule on `metadata.name` is the exception: CEL cannot point into metadata, so its message
//! names the field, and `validate` says in its own words which part of the name is wrong.)
//! Where CEL checks a whole list or map and `validate` names the item (`spec.ports`,
//! `spec.pod.labels`), `validate` reports the same words at the item's path.

use super::MAX_NAME_LEN;
use super::contract::{RESERVED_LABEL_PREFIX, RESERVED_LABELS};

/// Bounds the schema declares and `validate` checks, with the words of [`out_of_range`].
pub const MAX_REPLICAS: i32 = 1000;
/// `spec.autoscaling.cpu` and `.memory`, in percent of the request.
pub const MAX_UTILIZATION: i32 = 1000;
pub const MAX_PORT: i32 = 65535;
/// `spec.ports`, and a dependency's `external.ports`.
pub const MAX_PORTS: usize = 20;
/// `spec.dependencies` and `spec.expose.allowFrom`.
pub const MAX_PEERS: usize = 50;
/// A port name (IANA service name).
pub const MAX_PORT_NAME_LEN: usize = 15;
/// `spec.pod.securityContext` user and group IDs.
pub const MAX_ID: i64 = 2147483647;

/// A list longer than `max`.
pub fn too_many(len: usize, max: usize) -> Option<String> {
    (len > max).then(|| format!("has {len} entries; at most {max} are allowed"))
}

/// A number outside `min..=max`.
pub fn out_of_range(value: i32, min: i32, max: i32) -> Option<String> {
    (!(min..=max).contains(&value)).then(|| format!("{value} is out of range {min}..={max}"))
}

/// A probe's `host`.
pub const PROBE_HOST: &str = "must not be set: the kubelet would connect to that address from the node, outside \
    every NetworkPolicy; a probe checks this service's own pod (leave host out)";
/// `spec.replicas` beside `spec.autoscaling`.
pub const REPLICAS_WITH_AUTOSCALING: &str =
    "must not be set together with spec.autoscaling: the HorizontalPodAutoscaler owns the replica count";
/// `spec.autoscaling.minReplicas` above `maxReplicas`.
pub const MIN_ABOVE_MAX: &str = "must not be greater than maxReplicas";

/// `spec.ports`: two ports of one name.
pub const PORT_NAMES_UNIQUE: &str = "port names must be unique";
/// `spec.ports[*].name` (and a dependency's port) without a letter: it would read as a number.
pub const PORT_NAME_LETTER: &str = "must contain at least one letter";

/// `spec.database.storage`.
pub const STORAGE_POSITIVE: &str = "must be a positive quantity such as 10Gi";
/// `spec.database.storage` smaller than before (checked by the API server only: it needs the old object).
pub const STORAGE_NO_SHRINK: &str = "can grow but not shrink";
/// `spec.database.class` changed (checked by the API server only).
pub const CLASS_IMMUTABLE: &str =
    "cannot be changed: moving data between classes is not automatic; create a new service or migrate by hand";

/// `spec.dependencies[*]`.
pub const DEPENDENCY_TARGET: &str = "must set exactly one of service or external";
/// `spec.dependencies[*].namespace` on an external dependency.
pub const NAMESPACE_ONLY_FOR_SERVICE: &str = "applies only to a service dependency";
/// `spec.dependencies[*].port` on an external dependency.
pub const PORT_ONLY_FOR_SERVICE: &str = "applies only to a service dependency; use external.ports";
/// `spec.dependencies[*].external.cidr`.
pub const CIDR: &str = "must be a CIDR such as 203.0.113.0/24";
/// `spec.dependencies[*].external.cidr` with host bits.
pub const CIDR_NETWORK: &str = "must name a network: no bits set after the prefix (10.0.0.0/24, not 10.0.0.1/24)";

/// `spec.disruption`.
pub const DISRUPTION_ONE: &str = "set at most one of minAvailable and maxUnavailable";
/// The reserved label keys outside [`RESERVED_LABEL_PREFIX`], as `contract::is_reserved_label`
/// reads them.
fn reserved_outside_prefix() -> impl Iterator<Item = &'static str> {
    RESERVED_LABELS.into_iter().filter(|l| !l.starts_with(RESERVED_LABEL_PREFIX))
}

/// `spec.pod.labels`: the CEL rule.
pub fn reserved_labels_rule() -> String {
    let exact: String = reserved_outside_prefix().map(|l| format!(" && k != '{l}'")).collect();
    format!("self.all(k, !k.startsWith('{RESERVED_LABEL_PREFIX}'){exact})")
}

/// `spec.pod.labels`: what the rule says.
pub fn reserved_labels() -> String {
    let exact: Vec<&str> = reserved_outside_prefix().collect();
    format!("{RESERVED_LABEL_PREFIX} keys, {} are set by Flotilla itself", exact.join(" and "))
}

/// `metadata.name`: the CEL rule on the object (CEL cannot point into metadata, so the message
/// names the field).
pub fn name_rule() -> String {
    format!("self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$') && size(self.metadata.name) <= {MAX_NAME_LEN}")
}

/// `metadata.name`: what the rule says.
pub fn name_message() -> String {
    format!(
        "metadata.name must be a DNS-1035 label (lowercase letters, digits and '-', starting with a letter) of at most {MAX_NAME_LEN} characters, so that every child object's name fits"
    )
}
/// `spec.pod.tmpSizeLimit`.
pub const TMP_SIZE_POSITIVE: &str = "must be a positive quantity such as 512Mi";

/// A DatabaseClass's `embedded` section missing for provisioner embedded.
pub const EMBEDDED_SECTION: &str = "is required with provisioner embedded";
/// A DatabaseClass's `claim` section missing for provisioner claim.
pub const CLAIM_SECTION: &str = "is required with provisioner claim";
