//! Operator-wide settings that shape rendering: the cluster's DNS, the ingress controller's
//! namespace, and the platform's policy.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::policy::Policy;

/// Operator-wide settings that shape rendering.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// Cluster DNS domain used in service URLs.
    pub cluster_domain: String,
    /// Namespace of the cluster DNS pods.
    pub dns_namespace: String,
    /// Labels of the cluster DNS pods.
    pub dns_pod_labels: BTreeMap<String, String>,
    /// Address of a NodeLocal DNSCache, when the cluster runs one.
    pub node_local_dns: Option<String>,
    /// Namespace of the ingress controller, admitted to services with `expose.ingress`.
    pub ingress_namespace: String,
    /// The platform's policy: what tenants may set, and which namespaces are one tenant.
    pub policy: Arc<Policy>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            cluster_domain: "cluster.local".into(),
            dns_namespace: "kube-system".into(),
            dns_pod_labels: BTreeMap::from([("k8s-app".into(), "kube-dns".into())]),
            node_local_dns: None,
            ingress_namespace: "ingress-nginx".into(),
            policy: Arc::default(),
        }
    }
}
