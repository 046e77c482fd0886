//! What Flotilla promises the objects and pods it makes: the labels it owns and the names of the
//! environment variables a service reads. Validation refuses specs that would collide with them;
//! rendering writes them.

/// Selector label every child and pod carries.
pub const SELECTOR_LABEL: &str = "flotilla.dev/microservice";
/// Name label of the Kubernetes recommended label set.
pub const NAME_LABEL: &str = "app.kubernetes.io/name";
/// Manager label of the Kubernetes recommended label set.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// Value of [`MANAGED_BY_LABEL`].
pub const MANAGER: &str = "flotilla";
/// Labels Flotilla owns on pods; `spec.pod.labels` may not set them, nor any key under
/// [`RESERVED_LABEL_PREFIX`] (a pod labelled `flotilla.dev/database: x` would be taken for the
/// database of `x` by its Service and NetworkPolicies).
pub const RESERVED_LABELS: [&str; 3] = [SELECTOR_LABEL, NAME_LABEL, MANAGED_BY_LABEL];
/// Prefix of every label key Flotilla owns.
pub const RESERVED_LABEL_PREFIX: &str = "flotilla.dev/";

/// Whether `key` is a label Flotilla sets itself.
pub fn is_reserved_label(key: &str) -> bool {
    key.starts_with(RESERVED_LABEL_PREFIX) || RESERVED_LABELS.contains(&key)
}
/// Label the API server sets on every namespace; peers in NetworkPolicies select by it.
pub const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// Name of the environment variable that carries the URL of dependency `service`.
pub fn dependency_env_name(service: &str) -> String {
    format!("{}_URL", service.to_ascii_uppercase().replace(['-', '.'], "_"))
}

/// The variables a service with a database gets from its binding Secret (name, key), besides
/// `SERVICE_BINDING_ROOT`.
pub const DATABASE_ENV: [(&str, &str); 6] = [
    ("DATABASE_URL", "uri"),
    ("DB_HOST", "host"),
    ("DB_PORT", "port"),
    ("DB_USER", "username"),
    ("DB_PASSWORD", "password"),
    ("DB_NAME", "database"),
];
