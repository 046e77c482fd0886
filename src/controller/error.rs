//! The controller's errors, each with a bounded category used as metric label and Event reason.

use crate::validate::Invalid;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The spec breaks a rule; retrying cannot help, a change of the object can.
    #[error("invalid spec: {0}")]
    Invalid(#[from] Invalid),

    /// A child of that name exists and belongs to something else: Flotilla never takes it over.
    #[error("{kind} {name} exists and is not managed by this Microservice; rename or delete it")]
    ChildConflict { kind: String, name: String },

    /// A call to the Kubernetes API failed.
    #[error("{action}: {source}")]
    Kube {
        action: String,
        #[source]
        source: kube::Error,
    },

    /// A reconcile took longer than the operator's `--reconcile-timeout-seconds` (a slow or
    /// stalled API server): given up and tried again after a backoff, so that it holds no
    /// worker for good.
    #[error("reconcile gave up after {0:?} (--reconcile-timeout-seconds): the Kubernetes API answers too slowly")]
    Timeout(std::time::Duration),

    #[error("cannot serialize {what}: {source}")]
    Serialize {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
}

impl Error {
    pub fn kube(action: impl Into<String>) -> impl FnOnce(kube::Error) -> Error {
        let action = action.into();
        move |source| Error::Kube { action, source }
    }

    /// A small fixed set of values, safe as a metric label.
    pub fn category(&self) -> &'static str {
        match self {
            Error::Invalid(invalid) => invalid.reason(),
            Error::ChildConflict { .. } => "ChildConflict",
            Error::Serialize { .. } => "Serialization",
            Error::Timeout(_) => "Timeout",
            Error::Kube { source, .. } => match source {
                kube::Error::Api(s) if s.code == 409 => "ApiConflict",
                kube::Error::Api(s) if s.code == 429 => "ApiThrottled",
                kube::Error::Api(s) if s.code == 403 => "ApiForbidden",
                kube::Error::Api(s) if s.code == 404 => "ApiNotFound",
                kube::Error::Api(s) if refused(s) => "ApiRejected",
                kube::Error::Api(_) => "ApiError",
                _ => "ApiUnreachable",
            },
        }
    }

    /// Errors that only a change of the Microservice (or of what is in the way) can fix.
    pub fn waits_for_change(&self) -> bool {
        match self {
            Error::Invalid(_) | Error::ChildConflict { .. } => true,
            // The API server refused what the spec renders to (a bad env entry, a probe it
            // rejects): retrying the same body cannot help.
            Error::Kube { source: kube::Error::Api(s), .. } => refused(s),
            _ => false,
        }
    }
}

/// Where the fields of a rendered child come from in the Microservice, for messages of the API
/// server about a child: the user reads the paths of the object they wrote. Longer prefixes
/// first. List indexes of env variables and HPA metrics are those of the rendered child (which
/// adds its own entries first), so those two keep a pointer to the rendered field.
const FIELD_ORIGINS: [(&str, &str); 14] = [
    ("spec.template.spec.containers[0].readinessProbe", "spec.probes.readiness (or spec.healthCheck)"),
    ("spec.template.spec.containers[0].livenessProbe", "spec.probes.liveness (or spec.healthCheck)"),
    ("spec.template.spec.containers[0].startupProbe", "spec.probes.startup"),
    ("spec.template.spec.containers[0].resources", "spec.resources"),
    ("spec.template.spec.containers[0].envFrom", "spec.envFrom"),
    ("spec.template.spec.containers[0].env", "spec.env (rendered as the container's env)"),
    ("spec.template.spec.containers[0].ports", "spec.ports"),
    ("spec.template.spec.tolerations", "spec.pod.tolerations"),
    ("spec.template.spec.affinity", "spec.pod.affinity"),
    ("spec.template.spec.nodeSelector", "spec.pod.nodeSelector"),
    ("spec.template.spec.topologySpreadConstraints", "spec.pod.topologySpreadConstraints"),
    ("spec.template.metadata.annotations", "spec.pod.annotations"),
    ("spec.template.metadata.labels", "spec.pod.labels"),
    ("spec.behavior", "spec.autoscaling.behavior"),
];

impl Error {
    /// The message for the Microservice's status and Events: a refusal of a child names the
    /// Microservice's fields where they are known.
    pub fn for_user(&self) -> String {
        let text = self.to_string();
        if !matches!(self, Error::Kube { source: kube::Error::Api(_), .. }) {
            return text;
        }
        FIELD_ORIGINS.iter().fold(text, |t, (child, origin)| t.replace(child, origin))
    }
}

/// The API server refused the body itself: invalid (422, 400), or a server-side apply it
/// cannot merge (500 naming duplicate entries of a list keyed by name, such as two env
/// variables or two identical topology spread constraints).
fn refused(s: &kube::core::Status) -> bool {
    ((s.code == 422 || s.code == 400) && !server_trouble(&s.message))
        || (s.code == 500 && (s.message.contains("duplicate entries") || s.message.contains("failed to create typed")))
}

/// A refusal that reports the API server's own trouble rather than the body's: its storage
/// unreachable, or an allocator that could not write (a Service created while etcd was down was
/// refused 422 `spec.clusterIPs: failed to allocate IP: rpc error: code = Unavailable`, and
/// waiting for a change of the Microservice left it unconverged for good). Retried.
fn server_trouble(message: &str) -> bool {
    message.contains("rpc error: code = ") || message.contains("etcdserver: ") || message.contains("failed to allocate")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(code: u16, message: &str) -> Error {
        Error::Kube {
            action: "apply Deployment api".into(),
            source: kube::Error::Api(kube::core::Status::failure(message, "").with_code(code).boxed()),
        }
    }

    #[test]
    fn a_body_the_api_server_cannot_take_waits_for_a_change() {
        let dup = ".spec.template.spec.containers[name=\"app\"].env: duplicate entries for key [name=\"A\"]";
        for e in [api(422, "invalid"), api(400, "bad request"), api(500, dup)] {
            assert!(e.waits_for_change(), "{e}");
            assert_eq!(e.category(), "ApiRejected");
        }
        // An API server in trouble is retried.
        let allocation = "Service \"svc-133\" is invalid: spec.clusterIPs: Invalid value: [\"\"]: failed to allocate IP: rpc error: code = Unavailable desc = error reading from server: EOF";
        for e in [
            api(500, "etcdserver: request timed out"),
            api(503, "unavailable"),
            api(429, "slow down"),
            api(422, allocation),
        ] {
            assert!(!e.waits_for_change(), "{e}");
        }
    }
}

#[cfg(test)]
mod messages {
    use super::*;

    #[test]
    fn a_refused_child_is_reported_at_the_microservice_field() {
        let message = "Deployment.apps \"tolerant\" is invalid: spec.template.spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions[0].values[0]: Invalid value: \"a\": must be an integer";
        let e = Error::Kube {
            action: "apply Deployment tolerant".into(),
            source: kube::Error::Api(kube::core::Status::failure(message, "Invalid").with_code(422).boxed()),
        };
        let text = e.for_user();
        assert!(text.contains("spec.pod.affinity.nodeAffinity.requiredDuringScheduling"), "{text}");
        assert!(!text.contains("spec.template"), "{text}");
    }
}
