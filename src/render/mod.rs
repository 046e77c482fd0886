//! Pure rendering: one Microservice plus the world around it becomes its child objects.
//!
//! Nothing here performs I/O; the same input always gives byte-identical output, so the
//! controller, `flotilla render` and the golden-file tests all share this code.
//!
//! This file holds the pipeline (check, then children) and what every builder reads; the
//! settings, the world and its fleet index, the CLI's preview and its YAML have files of their
//! own, re-exported here.

pub mod database;
pub mod deployment;
mod fleet;
pub mod hosts;
mod hpa;
mod ingress;
mod network_policy;
mod pdb;
mod preview;
mod service;
mod settings;
mod world;
mod yaml;

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{Service, ServiceAccount};
use k8s_openapi::api::networking::v1::{Ingress, NetworkPolicy};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::Resource;
use serde::Serialize;

use crate::api::contract::{MANAGED_BY_LABEL, MANAGER, NAME_LABEL, SELECTOR_LABEL};
use crate::api::{DatabaseClass, Microservice, MicroserviceSpec, PortSpec};
use crate::policy::POLICY_DENIED;
use crate::validate::{FieldError, Invalid, validate};
use database::{ClassProblem, DatabaseChildren};
pub use fleet::{Caller, Fleet};
pub use preview::preview;
pub use settings::Settings;
pub use world::World;
pub use yaml::{to_yaml, yaml_for_kubectl};

/// The objects one Microservice becomes.
#[derive(Clone, Debug, PartialEq)]
pub struct Children {
    /// Absent when `spec.pod.serviceAccountName` names an existing account.
    pub service_account: Option<ServiceAccount>,
    pub deployment: Deployment,
    pub service: Service,
    /// Present only with `spec.autoscaling`.
    pub hpa: Option<HorizontalPodAutoscaler>,
    pub network_policy: NetworkPolicy,
    /// Present when more than one replica may run, or `spec.disruption` is set.
    pub pdb: Option<PodDisruptionBudget>,
    /// Present only with `spec.expose.ingress`.
    pub ingress: Option<Ingress>,
    /// With `spec.database`: its objects, or why its class cannot be used.
    pub database: Option<Result<DatabaseChildren, ClassProblem>>,
}

impl Children {
    /// Every child as JSON, in a fixed order.
    pub fn to_values(&self) -> Result<Vec<serde_json::Value>, serde_json::Error> {
        fn push<T: Serialize>(out: &mut Vec<serde_json::Value>, o: &Option<T>) -> Result<(), serde_json::Error> {
            if let Some(o) = o {
                out.push(serde_json::to_value(o)?);
            }
            Ok(())
        }
        let mut out = Vec::new();
        push(&mut out, &self.service_account)?;
        push(&mut out, &Some(&self.deployment))?;
        push(&mut out, &Some(&self.service))?;
        push(&mut out, &self.hpa)?;
        push(&mut out, &Some(&self.network_policy))?;
        push(&mut out, &self.pdb)?;
        push(&mut out, &self.ingress)?;
        if let Some(Ok(db)) = &self.database {
            push(&mut out, &db.service_account)?;
            push(&mut out, &db.stateful_set)?;
            push(&mut out, &db.service)?;
            push(&mut out, &db.network_policy)?;
            push(&mut out, &db.claim.as_ref().map(|c| c.object.clone()))?;
        }
        Ok(out)
    }
}

/// A Microservice that passed validation in its world, with every default resolved once (its
/// [`Input`]): the only input the builders take, so an invalid object never becomes children.
pub struct Checked<'a> {
    input: Input<'a>,
}

impl<'a> Checked<'a> {
    /// What the builders read.
    pub fn input(&self) -> &Input<'a> {
        &self.input
    }
}

/// Stage 1: validates `ms` and the names it would take in `world`, listing every problem.
pub fn check<'a>(ms: &'a Microservice, world: &'a World) -> Result<Checked<'a>, Invalid> {
    let mut errs = validate(ms);
    errs.extend(world.clashes(ms));
    errs.extend(world.settings.policy.check(ms));
    errs.extend(hosts::taken(ms, world));
    let input = Input::new(ms, world);
    // The default class, when the spec names none, is bounded by the policy as a named one is.
    if let Some(Ok(class)) = &input.class
        && ms.spec.database.as_ref().is_some_and(|d| d.class.is_none())
        && let Some(class_name) = class.metadata.name.as_deref()
        && !world.settings.policy.class_open_to(class_name, input.namespace)
    {
        errs.push(
            FieldError::new(
                "spec.database.class",
                format!(
                    "the default DatabaseClass {class_name:?} is not open to namespace {} (platform policy \
                     databaseClasses); name a class this namespace may use",
                    input.namespace
                ),
            )
            .because(POLICY_DENIED),
        );
    }
    if !errs.is_empty() {
        return Err(Invalid(errs));
    }
    Ok(Checked { input })
}

/// Stage 2: the children of a checked Microservice.
pub fn children(checked: &Checked) -> Children {
    let input = &checked.input;
    Children {
        service_account: service::service_account(input),
        deployment: deployment::deployment(input),
        service: service::service(input),
        hpa: hpa::hpa(input),
        network_policy: network_policy::network_policy(input),
        pdb: pdb::pdb(input),
        ingress: ingress::ingress(input),
        database: input.class.clone().map(|class| class.and_then(|class| database::objects(input, class))),
    }
}

/// [`check`] then [`children`]: the children of `ms`, or every problem that keeps it from having any.
pub fn render(ms: &Microservice, world: &World) -> Result<Children, Invalid> {
    Ok(children(&check(ms, world)?))
}

/// What every builder needs, computed once.
pub struct Input<'a> {
    pub ms: &'a Microservice,
    pub spec: &'a MicroserviceSpec,
    pub world: &'a World,
    pub name: &'a str,
    pub namespace: &'a str,
    pub ports: Vec<PortSpec>,
    /// The DatabaseClass of the service's database (resolved once), or why there is none;
    /// None without `spec.database`.
    pub class: Option<Result<&'a DatabaseClass, ClassProblem>>,
}

impl<'a> Input<'a> {
    pub fn new(ms: &'a Microservice, world: &'a World) -> Self {
        Self {
            ms,
            spec: &ms.spec,
            world,
            name: ms.metadata.name.as_deref().unwrap_or_default(),
            namespace: ms.ns(),
            ports: ms.spec.effective_ports(),
            class: ms.spec.database.as_ref().map(|_| database::resolve_class(ms, &world.database_classes)),
        }
    }

    /// Labels of every child.
    pub fn labels(&self) -> BTreeMap<String, String> {
        child_labels(self.name)
    }

    /// Metadata of a child named `name`, owned by the Microservice.
    pub fn meta(&self, name: &str) -> ObjectMeta {
        ObjectMeta {
            name: Some(name.to_string()),
            namespace: Some(self.namespace.to_string()),
            labels: Some(self.labels()),
            owner_references: owner_reference(self.ms).map(|o| vec![o]),
            ..ObjectMeta::default()
        }
    }

    /// Metadata of an object that holds a database's data or the means to reach it (the
    /// credentials and binding Secrets, a claim object): labelled as a child, but with no owner
    /// reference, so that the garbage collector never deletes it. A foreground deletion (Argo
    /// CD's prune, `kubectl delete --cascade=foreground`) deletes the owned objects before any
    /// finalizer has run; these are kept or deleted by the database finalizer alone, as
    /// `deletionPolicy` says.
    pub fn data_meta(&self, name: &str) -> ObjectMeta {
        ObjectMeta { owner_references: None, ..self.meta(name) }
    }

    /// The port `expose.ingress` routes to: the one it names, else the first.
    pub fn ingress_port(&self) -> Option<&PortSpec> {
        let ing = self.spec.expose.as_ref()?.ingress.as_ref()?;
        let named = ing.port.as_deref().and_then(|n| self.ports.iter().find(|p| p.name == n));
        named.or(self.ports.first())
    }

    /// True when more than one pod may run.
    pub fn may_run_several(&self) -> bool {
        match &self.spec.autoscaling {
            Some(a) => a.max_replicas > 1,
            None => self.spec.replicas() > 1,
        }
    }
}

/// The labels of the pods of `ms`: Flotilla's, then the spec's own (which cannot replace them).
pub fn pod_labels(ms: &Microservice) -> BTreeMap<String, String> {
    let mut labels = child_labels(ms.metadata.name.as_deref().unwrap_or_default());
    for (k, v) in ms.spec.pod.iter().flat_map(|p| p.labels.iter().flatten()) {
        labels.entry(k.clone()).or_insert_with(|| v.clone());
    }
    labels
}

/// Whether `labels` match `sel` (matchLabels and matchExpressions, as the API server reads them).
pub fn selector_matches(
    sel: &k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector,
    labels: &BTreeMap<String, String>,
) -> bool {
    let by_labels = sel.match_labels.iter().flatten().all(|(k, v)| labels.get(k) == Some(v));
    by_labels
        && sel.match_expressions.iter().flatten().all(|e| {
            let value = labels.get(&e.key);
            let values = e.values.as_deref().unwrap_or_default();
            match e.operator.as_str() {
                "In" => value.is_some_and(|v| values.contains(v)),
                "NotIn" => value.is_none_or(|v| !values.contains(v)),
                "Exists" => value.is_some(),
                "DoesNotExist" => value.is_none(),
                _ => false,
            }
        })
}

/// Labels of every child of the Microservice `name`.
fn child_labels(name: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (NAME_LABEL.to_string(), name.to_string()),
        (MANAGED_BY_LABEL.to_string(), MANAGER.to_string()),
        (SELECTOR_LABEL.to_string(), name.to_string()),
    ])
}

/// Selector of the pods of the Microservice `name`.
pub fn selector_labels(name: &str) -> BTreeMap<String, String> {
    BTreeMap::from([(SELECTOR_LABEL.to_string(), name.to_string())])
}

/// The controller owner reference to `ms`; None while it has no uid (offline rendering).
pub fn owner_reference(ms: &Microservice) -> Option<OwnerReference> {
    let uid = ms.metadata.uid.clone()?;
    Some(OwnerReference {
        api_version: Microservice::api_version(&()).into_owned(),
        kind: Microservice::kind(&()).into_owned(),
        name: ms.metadata.name.clone()?,
        uid,
        controller: Some(true),
        block_owner_deletion: Some(true),
    })
}

/// In-cluster URL of `port` of the Service `namespace/name`.
pub fn service_url(name: &str, namespace: &str, port: &PortSpec, settings: &Settings) -> String {
    let scheme = match port.app_protocol.as_deref() {
        Some("https") => "https",
        _ => "http",
    };
    format!("{scheme}://{name}.{namespace}.svc.{}:{}", settings.cluster_domain, port.port)
}

/// The port of `callee` that a dependency asking for `port_name` reaches: the named port, or the
/// first port when no name is given or the name is unknown. An unknown callee is assumed to have
/// the default ports until it appears.
pub fn callee_port(callee: Option<&MicroserviceSpec>, port_name: Option<&str>) -> PortSpec {
    let mut ports =
        callee.map_or_else(|| MicroserviceSpec::default().effective_ports(), MicroserviceSpec::effective_ports);
    let i = port_name.and_then(|n| ports.iter().position(|p| p.name == n)).unwrap_or(0);
    ports.swap_remove(i)
}
