//! Pure validation of a Microservice: the second line of defence after the CRD's CEL rules.
//!
//! Every problem is reported with the path of the field at fault, so a user can find it in the
//! file they wrote. The checks never panic, whatever the input.
//!
//! The rules of each part of the spec live in the file named after it: `ports.rs` for
//! `spec.ports`, `pod.rs` for `spec.pod`, and so on; `names.rs` holds the name formats they share.
//! [`validate`] lists them in the order their problems are reported.

mod autoscaling;
mod container;
mod database;
mod dependencies;
mod expose;
mod names;
mod pod;
mod ports;
mod probes;
mod resources;
mod rollout;
mod scheduling;

use std::fmt;

use crate::api::{MAX_NAME_LEN, Microservice, MicroserviceSpec};

pub use names::{dns1035_label, dns1123_label};

/// One problem with one field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    /// Path of the field, for example `spec.autoscaling.minReplicas`.
    pub path: String,
    /// What is wrong, in words a user can act on.
    pub message: String,
    /// The reason a status and an Event give for it, when it is not a plain invalid spec (a
    /// host another namespace holds, a refusal by the platform's policy).
    pub reason: Option<&'static str>,
}

impl FieldError {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self { path: path.into(), message: message.into(), reason: None }
    }

    /// The same problem, reported with `reason`.
    pub fn because(self, reason: &'static str) -> Self {
        Self { reason: Some(reason), ..self }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// All problems found in one object.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
pub struct Invalid(pub Vec<FieldError>);

/// The reason of an invalid spec, when no problem carries one of its own.
pub const INVALID_SPEC: &str = "InvalidSpec";

impl Invalid {
    /// The reason to report: the first problem's (the spec's own rules are listed before a
    /// taken host or a refusal by the policy), [`INVALID_SPEC`] when it has none of its own.
    pub fn reason(&self) -> &'static str {
        self.0.first().and_then(|e| e.reason).unwrap_or(INVALID_SPEC)
    }
}

/// Checks a Microservice against every rule of the API. An empty result means it is valid.
pub fn validate(ms: &Microservice) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let name = ms.metadata.name.as_deref().unwrap_or_default();
    if name.is_empty() {
        errs.push(FieldError::new("metadata.name", "is required"));
    } else if let Some(why) = dns1035_label(name, MAX_NAME_LEN) {
        let hint = if name.len() > MAX_NAME_LEN { " (child objects add suffixes to the name)" } else { "" };
        errs.push(FieldError::new("metadata.name", format!("{name:?} {why}{hint}")));
    }
    if let Some(ns) = ms.metadata.namespace.as_deref()
        && let Some(why) = dns1123_label(ns, 63)
    {
        errs.push(FieldError::new("metadata.namespace", format!("{ns:?} {why}")));
    }
    validate_spec(&ms.spec, name, ms.metadata.namespace.as_deref(), &mut errs);
    errs
}

/// Every rule of the spec, one part after another. The order is the order in which problems
/// are reported (the first one gives a refusal its reason), so a new rule goes after those of
/// its field.
fn validate_spec(spec: &MicroserviceSpec, name: &str, namespace: Option<&str>, errs: &mut Vec<FieldError>) {
    let err = &mut |path: String, msg: String| errs.push(FieldError::new(path, msg));

    container::image(&spec.image, err);
    autoscaling::replicas(spec, err);
    if let Some(a) = &spec.autoscaling {
        autoscaling::autoscaling(a, err);
    }
    if let Some(ports) = &spec.ports {
        ports::ports(ports, err);
    }
    let ports = spec.effective_ports();
    if let Some(hc) = &spec.health_check {
        probes::health_check(hc, &ports, err);
    }
    if let Some(db) = &spec.database {
        database::database(db, err);
    }

    dependencies::count(spec.dependencies.as_deref(), err);
    expose::allow_from_count(spec.expose.as_ref(), err);
    if spec.dependencies.as_ref().is_some_and(|d| d.len() > 1000) {
        // Checking each entry of an absurd list costs time and memory for nothing: the count is
        // the error, and nothing after it is checked.
        return;
    }
    // The env names Flotilla sets, each with the field that sets it.
    let mut env_names =
        dependencies::dependencies(spec.dependencies.as_deref().unwrap_or_default(), name, namespace, err);
    if spec.database.is_some() {
        database::reserve_env_names(&mut env_names);
    }
    container::env(spec.env.as_deref().unwrap_or_default(), &env_names, err);
    container::env_from(spec.env_from.as_deref().unwrap_or_default(), err);

    if let Some(expose) = &spec.expose {
        expose::expose(expose, &ports, err);
    }
    if let Some(r) = &spec.rollout {
        rollout::rollout(r, err);
    }
    if let Some(d) = &spec.disruption {
        rollout::disruption(d, err);
    }
    if let Some(pod) = &spec.pod {
        pod::pod(pod, spec.resources.as_ref(), err);
    }
    if let Some(r) = &spec.resources {
        resources::resources(r, err);
    }
    if let Some(p) = &spec.probes {
        probes::probes(p, err);
    }
    ports::app_protocols(spec.ports.as_deref().unwrap_or_default(), err);
}
