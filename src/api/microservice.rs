//! The `Microservice` custom resource: one object that declares a whole service.
// kube-derive's repeated `printcolumn(...)` and `derive = ...` keys trip this lint.
#![allow(clippy::duplicated_attributes)]

use std::collections::BTreeMap;

use k8s_openapi::api::autoscaling::v2::{HorizontalPodAutoscalerBehavior, MetricSpec};
use k8s_openapi::api::core::v1::{
    Affinity, EnvFromSource, EnvVar, Probe, ResourceRequirements, Toleration, TopologySpreadConstraint,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::rules;

/// Longest Microservice name accepted. Child objects add suffixes to it (the database
/// StatefulSet `<name>-db` carries a `controller-revision-hash` label `<name>-db-<hash>` that must
/// stay within 63 characters), so the name itself must leave room for them.
pub const MAX_NAME_LEN: usize = 45;

/// A microservice: its container image, ports, scaling, database and the services it calls.
/// Flotilla keeps its Deployment, Service, ServiceAccount, HorizontalPodAutoscaler,
/// NetworkPolicy, PodDisruptionBudget, Ingress and database correct in the cluster.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "flotilla.dev",
    version = "v1alpha1",
    kind = "Microservice",
    namespaced,
    status = "MicroserviceStatus",
    derive = "PartialEq",
    derive = "Default",
    shortname = "ms",
    category = "flotilla",
    doc = "A microservice: its container image, ports, scaling, database and the services it calls.",
    scale(
        spec_replicas_path = ".spec.replicas",
        status_replicas_path = ".status.replicas",
        label_selector_path = ".status.selector"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(name = "Replicas", type_ = "integer", json_path = ".status.replicas"),
    printcolumn(name = "URL", type_ = "string", json_path = ".status.url"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    validation = Rule::new(rules::name_rule()).message(kube::core::Message::Message(rules::name_message()))
)]
#[x_kube(validation = Rule::new("!(has(self.replicas) && has(self.autoscaling))")
    .field_path(".replicas").message(rules::REPLICAS_WITH_AUTOSCALING))]
#[serde(rename_all = "camelCase")]
pub struct MicroserviceSpec {
    /// Container image to run, for example `ghcr.io/acme/orders:1.4.2`.
    #[schemars(length(min = 1))]
    pub image: String,

    /// Entrypoint override (the image's ENTRYPOINT when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,

    /// Arguments to the entrypoint (the image's CMD when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args: Option<Vec<String>>,

    /// Ports the service listens on. Each becomes a container port and a Service port of the same
    /// number. Default: one port named `http`, 8080/TCP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = rules::MAX_PORTS))]
    #[x_kube(validation = Rule::new("self.all(p, self.filter(q, q.name == p.name).size() == 1)")
        .message(rules::PORT_NAMES_UNIQUE))]
    pub ports: Option<Vec<PortSpec>>,

    /// Environment variables of the container (core/v1 EnvVar).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<Vec<EnvVar>>,

    /// Sources of environment variables: ConfigMaps and Secrets (core/v1 EnvFromSource).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env_from: Option<Vec<EnvFromSource>>,

    /// Compute resources of the container. When absent Flotilla requests 100m CPU and 128Mi
    /// memory and limits memory to 256Mi.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,

    /// Shorthand for HTTP readiness, liveness and startup probes on one path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check: Option<HealthCheck>,

    /// Full core/v1 probes; each one given here replaces the one derived from `healthCheck`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probes: Option<Probes>,

    /// Fixed number of replicas (default 1). Used only when `autoscaling` is absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = rules::MAX_REPLICAS))]
    pub replicas: Option<i32>,

    /// Horizontal autoscaling; becomes an autoscaling/v2 HorizontalPodAutoscaler that owns the
    /// replica count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaling: Option<Autoscaling>,

    /// A database of the service's own, provisioned as its DatabaseClass describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<DatabaseSpec>,

    /// Services this one calls. Each gives the container a `<SERVICE>_URL` variable and an
    /// egress rule, and gives the callee an ingress rule admitting this service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = rules::MAX_PEERS))]
    pub dependencies: Option<Vec<Dependency>>,

    /// Who else may call this service: an Ingress and extra namespaces or pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expose: Option<Expose>,

    /// Rolling update settings of the Deployment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<Rollout>,

    /// PodDisruptionBudget. By default one pod may be unavailable when more than one replica runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disruption: Option<Disruption>,

    /// Pod-level settings: labels, annotations, service account, scheduling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<PodSettings>,

    /// When true Flotilla stops changing this service's children (they keep running as they are).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused: Option<bool>,
}

/// One port of the service.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PortSpec {
    /// Port name, an IANA service name: lowercase letters, digits and '-', at most 15 characters.
    #[schemars(length(min = 1, max = rules::MAX_PORT_NAME_LEN), regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"))]
    #[x_kube(validation = Rule::new("self.matches('[a-z]')").message(rules::PORT_NAME_LETTER))]
    pub name: String,
    /// Port number, used by both the container and the Service.
    #[schemars(range(min = 1, max = rules::MAX_PORT))]
    pub port: i32,
    /// TCP (default), UDP or SCTP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<Protocol>,
    /// Application protocol, for example `http`, `https`, `grpc` or `kubernetes.io/h2c`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_protocol: Option<String>,
}

/// Transport protocol of a port.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, schemars::JsonSchema)]
pub enum Protocol {
    TCP,
    UDP,
    SCTP,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::TCP => "TCP",
            Protocol::UDP => "UDP",
            Protocol::SCTP => "SCTP",
        }
    }
}

/// HTTP health check shorthand.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HealthCheck {
    /// HTTP path answered with 2xx/3xx when healthy, for example `/healthz`.
    #[schemars(length(min = 1), regex(pattern = "^/"))]
    pub path: String,
    /// Port name or number to probe; the first port when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<IntOrString>,
    /// HTTP path of a liveness check that does not follow the service's dependencies, for
    /// example `/livez`. When absent, liveness (and startup) only check that the port accepts
    /// TCP connections: an outage of something `path` checks makes pods unready, never restarts
    /// them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1), regex(pattern = "^/"))]
    pub liveness_path: Option<String>,
}

/// Full probes; each replaces the one derived from `healthCheck`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Probes {
    /// Readiness probe (core/v1 Probe).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub readiness: Option<Probe>,
    /// Liveness probe (core/v1 Probe).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub liveness: Option<Probe>,
    /// Startup probe (core/v1 Probe).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub startup: Option<Probe>,
}

/// Horizontal autoscaling settings.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[x_kube(validation = Rule::new("!has(self.minReplicas) || self.minReplicas <= self.maxReplicas")
    .field_path(".minReplicas").message(rules::MIN_ABOVE_MAX))]
#[serde(rename_all = "camelCase")]
pub struct Autoscaling {
    /// Fewest replicas (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = rules::MAX_REPLICAS))]
    pub min_replicas: Option<i32>,
    /// Most replicas.
    #[schemars(range(min = 1, max = rules::MAX_REPLICAS))]
    pub max_replicas: i32,
    /// Target average CPU utilization in percent of the CPU request. When no metric at all is
    /// given, 80 is used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = rules::MAX_UTILIZATION))]
    pub cpu: Option<i32>,
    /// Target average memory utilization in percent of the memory request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = rules::MAX_UTILIZATION))]
    pub memory: Option<i32>,
    /// Further autoscaling/v2 metrics (Pods, Object, External, ContainerResource), passed as they are.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<Vec<MetricSpec>>,
    /// Scaling behavior (autoscaling/v2 HorizontalPodAutoscalerBehavior).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub behavior: Option<HorizontalPodAutoscalerBehavior>,
}

/// The service's own database.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[x_kube(validation = Rule::new("(has(self.class) ? self.class : '') == (has(oldSelf.class) ? oldSelf.class : '')")
    .field_path(".class").message(rules::CLASS_IMMUTABLE))]
#[serde(rename_all = "camelCase")]
pub struct DatabaseSpec {
    /// Name of a DatabaseClass; the default class (annotation
    /// `flotilla.dev/is-default-class: "true"`) when absent. Cannot be changed later.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub class: Option<String>,
    /// Storage size, a quantity such as `10Gi` (default `1Gi`). It can grow, never shrink.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(
        validation = Rule::new("isQuantity(self) && quantity(self).isGreaterThan(quantity('0'))").message(rules::STORAGE_POSITIVE),
        validation = Rule::new("!isQuantity(self) || !isQuantity(oldSelf) || quantity(self).compareTo(quantity(oldSelf)) >= 0").message(rules::STORAGE_NO_SHRINK)
    )]
    #[schemars(length(max = 64))]
    pub storage: Option<String>,
    /// What happens to the data when the Microservice is deleted: `Retain` (default) keeps the
    /// volume or claim and the credentials, `Delete` removes them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion_policy: Option<DeletionPolicy>,
}

/// What happens to a database when its Microservice is deleted.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, schemars::JsonSchema)]
pub enum DeletionPolicy {
    /// Keep the data and credentials; a Microservice of the same name adopts them again.
    #[default]
    Retain,
    /// Delete the data with the Microservice.
    Delete,
}

/// A service this one calls: either another Microservice or an external network.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[x_kube(validation = Rule::new("has(self.service) != has(self.external)").message(rules::DEPENDENCY_TARGET))]
#[x_kube(validation = Rule::new("has(self.service) || !has(self.__namespace__)")
    .field_path(".namespace").message(rules::NAMESPACE_ONLY_FOR_SERVICE))]
#[x_kube(validation = Rule::new("has(self.service) || !has(self.port)")
    .field_path(".port").message(rules::PORT_ONLY_FOR_SERVICE))]
#[serde(rename_all = "camelCase")]
pub struct Dependency {
    /// Name of the Microservice called.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63), regex(pattern = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"))]
    pub service: Option<String>,
    /// Namespace of the Microservice called (this service's namespace when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63), regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"))]
    pub namespace: Option<String>,
    /// Name of the callee's port to use (its first port when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = rules::MAX_PORT_NAME_LEN))]
    pub port: Option<String>,
    /// A network outside the cluster that this service calls.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external: Option<ExternalDependency>,
}

impl Dependency {
    /// `(namespace, name)` of the Microservice called, for a caller in `own_namespace`; None for
    /// an external dependency.
    pub fn target<'a>(&'a self, own_namespace: &'a str) -> Option<(&'a str, &'a str)> {
        Some((self.namespace.as_deref().unwrap_or(own_namespace), self.service.as_deref()?))
    }
}

/// A network outside the cluster.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ExternalDependency {
    /// Destination network in CIDR notation, for example `203.0.113.0/24`.
    #[x_kube(
        validation = Rule::new("isCIDR(self)").message(rules::CIDR),
        validation = Rule::new("!isCIDR(self) || cidr(self) == cidr(self).masked()").message(rules::CIDR_NETWORK)
    )]
    #[schemars(length(min = 1, max = 64))]
    pub cidr: String,
    /// TCP ports allowed to that network; every TCP port when absent (never UDP or SCTP).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = rules::MAX_PORTS))]
    pub ports: Option<Vec<i32>>,
}

/// Who may call this service besides its declared dependents.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Expose {
    /// Publish the service through an Ingress.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress: Option<IngressExpose>,
    /// Namespaces (optionally narrowed to some pods) whose pods may call the service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = rules::MAX_PEERS))]
    pub allow_from: Option<Vec<AllowFrom>>,
}

/// An Ingress for the service.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IngressExpose {
    /// Host name, for example `shop.example.com`.
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
    )]
    pub host: String,
    /// Path prefix (default `/`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = "^/"))]
    pub path: Option<String>,
    /// IngressClass name; the cluster's default class when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class_name: Option<String>,
    /// Secret holding the TLS certificate for `host`; plain HTTP when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_secret: Option<String>,
    /// Name of the port to route to (the first port when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<String>,
}

/// Pods allowed to call the service.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AllowFrom {
    /// Namespace whose pods may call the service.
    #[schemars(length(min = 1, max = 63), regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"))]
    pub namespace: String,
    /// Only pods of that namespace matching this selector (all of its pods when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_selector: Option<LabelSelector>,
    /// Only the pods of these Microservices of that namespace (with `podSelector`, pods that
    /// match both). This is how a service consents to callers from another namespace: their
    /// dependency on it opens nothing on its side by itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = rules::MAX_PEERS))]
    pub services: Option<Vec<String>>,
}

/// Rolling update settings.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Rollout {
    /// Extra pods allowed during an update, a number or a percentage (default 25%).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_surge: Option<IntOrString>,
    /// Pods allowed to be unavailable during an update, a number or a percentage (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_unavailable: Option<IntOrString>,
    /// Seconds without progress before the rollout counts as failed and the service Stalled
    /// (default 600).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub progress_deadline_seconds: Option<i32>,
}

/// PodDisruptionBudget settings: at most one of minAvailable and maxUnavailable.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[x_kube(validation = Rule::new("!(has(self.minAvailable) && has(self.maxUnavailable))")
    .message(rules::DISRUPTION_ONE))]
#[serde(rename_all = "camelCase")]
pub struct Disruption {
    /// Pods that must stay available during voluntary disruptions (a number or a percentage).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_available: Option<IntOrString>,
    /// Pods that may be unavailable during voluntary disruptions (a number or a percentage).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_unavailable: Option<IntOrString>,
}

/// Pod-level settings.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PodSettings {
    /// Extra pod labels. Keys Flotilla sets itself (any `flotilla.dev/` key,
    /// `app.kubernetes.io/name`, `app.kubernetes.io/managed-by`) are not allowed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new(rules::reserved_labels_rule())
        .message(kube::core::Message::Message(rules::reserved_labels())))]
    pub labels: Option<BTreeMap<String, String>>,
    /// Extra pod annotations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    /// Run as this existing ServiceAccount instead of the one Flotilla creates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_name: Option<String>,
    /// Mount the ServiceAccount token into the pod (default false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub automount_service_account_token: Option<bool>,
    /// Node labels the pods must run on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_selector: Option<BTreeMap<String, String>>,
    /// Taints the pods tolerate (core/v1 Toleration).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tolerations: Option<Vec<Toleration>>,
    /// Scheduling affinity (core/v1 Affinity).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,
    /// How pods spread across topology domains (core/v1 TopologySpreadConstraint). When given
    /// (even empty) it replaces the default spread over nodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topology_spread_constraints: Option<Vec<TopologySpreadConstraint>>,
    /// `Preferred` (default): replicas prefer different nodes (a topology spread constraint on
    /// `kubernetes.io/hostname`, ScheduleAnyway) and different zones (a preferred pod
    /// anti-affinity on `topology.kubernetes.io/zone`, which has no effect where nodes lack
    /// the label). `Disabled`: neither is added.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spread: Option<Spread>,
    /// User and group IDs of the pod's processes and its volumes' group. The image's user when
    /// absent; the pod always runs as non-root.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security_context: Option<PodIdentity>,
    /// Size limit of the writable `/tmp` volume, a quantity such as `1Gi` (default `512Mi`, or
    /// the container's ephemeral-storage limit when that is lower).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64))]
    #[x_kube(validation = Rule::new("isQuantity(self) && quantity(self).isGreaterThan(quantity('0'))")
        .message(rules::TMP_SIZE_POSITIVE))]
    pub tmp_size_limit: Option<String>,
}

/// Whether Flotilla spreads a service's replicas over nodes and zones.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, schemars::JsonSchema)]
pub enum Spread {
    /// Prefer different nodes and zones; never refuse to schedule.
    #[default]
    Preferred,
    /// No spreading added by Flotilla.
    Disabled,
}

/// User and group IDs of a pod.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PodIdentity {
    /// User ID the containers run as; not 0 (the pod runs as non-root).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = rules::MAX_ID))]
    pub run_as_user: Option<i64>,
    /// Primary group ID of the containers' processes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = rules::MAX_ID))]
    pub run_as_group: Option<i64>,
    /// Group that owns the pod's volumes, added to the processes' groups.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = rules::MAX_ID))]
    pub fs_group: Option<i64>,
}

/// Observed state of a Microservice. Until the operator first writes it, the API server shows
/// `{observedGeneration: 0}`, the schema's default: kstatus then reads a new Microservice as
/// InProgress, not Current, so a "deploy and wait" waits for the operator.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("default" = {"observedGeneration": 0}))]
pub struct MicroserviceStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Ready, Reconciling, Stalled, Available, DatabaseReady, DependenciesReady.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = kube::core::ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
    /// Pods of the Deployment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i32>,
    /// Pods ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_replicas: Option<i32>,
    /// Pods running the current pod template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_replicas: Option<i32>,
    /// Pods available.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub available_replicas: Option<i32>,
    /// Label selector of the pods, for the scale subresource.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    /// In-cluster URL of the service's first port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The service's database.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<DatabaseStatus>,
}

/// Observed state of a service's database.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DatabaseStatus {
    /// DatabaseClass in use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class: Option<String>,
    /// Binding Secret (servicebinding.io shape).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_name: Option<String>,
    /// Pending, Provisioning, Ready or Failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// True when existing retained data was adopted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retained: Option<bool>,
}
