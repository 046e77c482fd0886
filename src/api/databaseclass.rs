//! The `DatabaseClass` custom resource: how the platform team provisions databases.
// kube-derive's repeated `printcolumn(...)` and `derive = ...` keys trip this lint.
#![allow(clippy::duplicated_attributes)]

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ResourceRequirements;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::rules;

/// Annotation that marks the DatabaseClass used when a Microservice names none.
pub const DEFAULT_CLASS_ANNOTATION: &str = "flotilla.dev/is-default-class";

/// How databases of one kind are provisioned, like a StorageClass for databases.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "flotilla.dev",
    version = "v1alpha1",
    kind = "DatabaseClass",
    derive = "PartialEq",
    derive = "Default",
    category = "flotilla",
    doc = "How databases of one kind are provisioned, like a StorageClass for databases.",
    printcolumn(name = "Engine", type_ = "string", json_path = ".spec.engine"),
    printcolumn(name = "Provisioner", type_ = "string", json_path = ".spec.provisioner"),
    printcolumn(
        name = "Default",
        type_ = "string",
        json_path = ".metadata.annotations.flotilla\\.dev/is-default-class"
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[x_kube(validation = Rule::new("self.provisioner != 'embedded' || has(self.embedded)")
    .field_path(".embedded").message(rules::EMBEDDED_SECTION))]
#[x_kube(validation = Rule::new("self.provisioner != 'claim' || has(self.claim)")
    .field_path(".claim").message(rules::CLAIM_SECTION))]
#[serde(rename_all = "camelCase")]
pub struct DatabaseClassSpec {
    /// Database engine; shapes the connection secret and the embedded image's settings.
    pub engine: Engine,
    /// `embedded` runs the database as a StatefulSet next to the service; `claim` creates a claim
    /// object that another operator (CloudNativePG, Crossplane, a cloud provider) fulfils.
    pub provisioner: Provisioner,
    /// Settings of the embedded provisioner.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embedded: Option<EmbeddedProvisioner>,
    /// Settings of the claim provisioner.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claim: Option<ClaimProvisioner>,
}

/// Database engine.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Engine {
    #[default]
    Postgres,
    Mysql,
    Redis,
}

/// How a database is provisioned.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Provisioner {
    #[default]
    Embedded,
    Claim,
}

/// A one-replica StatefulSet of the engine's image with its own volume.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EmbeddedProvisioner {
    /// Image of the engine, for example `postgres:17`.
    #[schemars(length(min = 1))]
    pub image: String,
    /// StorageClass of the data volume; the cluster's default when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class_name: Option<String>,
    /// Compute resources of the database container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
}

/// A claim object fulfilled by another operator.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClaimProvisioner {
    /// apiVersion of the claim object, for example `postgresql.cnpg.io/v1`.
    #[schemars(length(min = 1))]
    pub api_version: String,
    /// Kind of the claim object, for example `Cluster`.
    #[schemars(length(min = 1))]
    pub kind: String,
    /// Template of the claim's spec; `${name}`, `${namespace}` and `${storage}` are substituted.
    #[schemars(schema_with = "preserve_unknown_object")]
    pub spec: serde_json::Value,
    /// Where the provisioner publishes the connection details.
    pub connection_secret: ConnectionSecret,
    /// Condition type on the claim that means the database is ready (default `Ready`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_condition: Option<String>,
    /// Labels of the database's pods in the service's namespace (`${name}` substituted), so the
    /// service's NetworkPolicy may reach them; for CloudNativePG `{cnpg.io/cluster: "${name}"}`.
    /// Without it the service's egress to the database host is not opened.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_selector: Option<BTreeMap<String, String>>,
    /// Port of the database, for the egress rule (every port of those pods when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = rules::MAX_PORT))]
    pub port: Option<i32>,
}

/// The Secret a claim provisioner writes, and which of its keys hold what.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConnectionSecret {
    /// Name of the Secret, with `${name}` substituted, for example `${name}-app`.
    #[schemars(length(min = 1))]
    pub name: String,
    /// Keys of that Secret by meaning: host, port, username, password, database, uri.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keys: Option<BTreeMap<String, String>>,
}

fn preserve_unknown_object(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true
    })
}
