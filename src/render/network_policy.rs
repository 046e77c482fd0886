//! The NetworkPolicy: deny by default in both directions, then allow exactly what the spec and
//! the service's callers declare.

use std::collections::BTreeMap;

use k8s_openapi::api::networking::v1::{
    IPBlock, NetworkPolicy, NetworkPolicyEgressRule, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort,
    NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::database;
use super::{Input, callee_port, selector_labels};
use crate::api::contract::{NAMESPACE_NAME_LABEL, SELECTOR_LABEL};
use crate::api::databaseclass::Provisioner;
use crate::api::{AllowFrom, PortSpec};

pub(super) fn network_policy(input: &Input) -> NetworkPolicy {
    NetworkPolicy {
        metadata: input.meta(input.name),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(LabelSelector { match_labels: Some(selector_labels(input.name)), ..Default::default() }),
            policy_types: Some(vec!["Ingress".into(), "Egress".into()]),
            ingress: Some(ingress_rules(input)),
            egress: Some(egress_rules(input)),
        }),
    }
}

fn ingress_rules(input: &Input) -> Vec<NetworkPolicyIngressRule> {
    let all_ports: Vec<NetworkPolicyPort> = input.ports.iter().map(np_port).collect();
    let mut rules = Vec::new();

    // Dependents of the same team (namespace or tenant): each caller's pods, on the port it
    // calls. A caller from another team is admitted only by `expose.allowFrom`, below: its
    // dependency alone opens nothing here.
    let policy = &input.world.settings.policy;
    let callers = input.world.callers_of(input.namespace, input.name);
    for caller in callers.into_iter().filter(|c| policy.same_tenant(&c.namespace, input.namespace)) {
        let port = callee_port(Some(input.spec), caller.port.as_deref());
        rules.push(NetworkPolicyIngressRule {
            from: Some(vec![service_peer(&caller.name, &caller.namespace)]),
            ports: Some(vec![np_port(&port)]),
        });
    }

    if let Some(expose) = &input.spec.expose {
        if let Some(port) = input.ingress_port() {
            rules.push(NetworkPolicyIngressRule {
                from: Some(vec![NetworkPolicyPeer {
                    namespace_selector: Some(namespace_selector(&input.world.settings.ingress_namespace)),
                    ..Default::default()
                }]),
                ports: Some(vec![np_port(port)]),
            });
        }
        for a in expose.allow_from.iter().flatten() {
            rules.push(NetworkPolicyIngressRule {
                // Namespace and pod selector in one peer: pods matching both, not either.
                from: Some(vec![NetworkPolicyPeer {
                    namespace_selector: Some(namespace_selector(&a.namespace)),
                    pod_selector: allowed_pods(a),
                    ..Default::default()
                }]),
                ports: Some(all_ports.clone()),
            });
        }
    }
    rules
}

fn egress_rules(input: &Input) -> Vec<NetworkPolicyEgressRule> {
    let settings = &input.world.settings;
    let policy = &settings.policy;
    let dns_port = |protocol: &str| NetworkPolicyPort {
        protocol: Some(protocol.into()),
        port: Some(IntOrString::Int(53)),
        ..Default::default()
    };
    let mut dns_peers = vec![NetworkPolicyPeer {
        namespace_selector: Some(namespace_selector(&settings.dns_namespace)),
        pod_selector: Some(LabelSelector { match_labels: Some(settings.dns_pod_labels.clone()), ..Default::default() }),
        ..Default::default()
    }];
    if let Some(ip) = &settings.node_local_dns {
        dns_peers.push(NetworkPolicyPeer {
            ip_block: Some(IPBlock { cidr: format!("{ip}/32"), except: None }),
            ..Default::default()
        });
    }
    let mut rules =
        vec![NetworkPolicyEgressRule { to: Some(dns_peers), ports: Some(vec![dns_port("UDP"), dns_port("TCP")]) }];

    if let Some(rule) = database_egress(input) {
        rules.push(rule);
    }
    for d in input.spec.dependencies.iter().flatten() {
        if let Some((ns, svc)) = d.target(input.namespace) {
            let callee = input.world.find(ns, svc);
            let port = callee_port(callee.as_deref().map(|m| &m.spec), d.port.as_deref());
            rules.push(NetworkPolicyEgressRule {
                to: Some(vec![service_peer(svc, ns)]),
                ports: Some(vec![np_port(&port)]),
            });
        }
        if let Some(ext) = &d.external {
            rules.push(NetworkPolicyEgressRule {
                // The networks no service may reach are carved out (a dependency that lies
                // wholly inside one is refused by the policy before rendering).
                to: Some(vec![NetworkPolicyPeer {
                    ip_block: Some(IPBlock {
                        cidr: ext.cidr.clone(),
                        except: policy.egress_except(&ext.cidr).ok().filter(|e| !e.is_empty()),
                    }),
                    ..Default::default()
                }]),
                // TCP only, as documented: without `ports`, every TCP port (a rule with no
                // ports would open UDP and SCTP too).
                ports: Some(match ext.ports.as_deref() {
                    Some(ps) if !ps.is_empty() => ps
                        .iter()
                        .map(|p| NetworkPolicyPort {
                            protocol: Some("TCP".into()),
                            port: Some(IntOrString::Int(*p)),
                            ..Default::default()
                        })
                        .collect(),
                    _ => vec![NetworkPolicyPort { protocol: Some("TCP".into()), ..Default::default() }],
                }),
            });
        }
    }
    rules
}

/// The service may reach its own database: the embedded StatefulSet's pods, or the pods a claim
/// class names.
fn database_egress(input: &Input) -> Option<NetworkPolicyEgressRule> {
    let class = input.class.as_ref()?.as_ref().ok()?;
    let (labels, port) = match class.spec.provisioner {
        Provisioner::Embedded => (
            BTreeMap::from([(database::DATABASE_LABEL.to_string(), input.name.to_string())]),
            Some(class.spec.engine.port()),
        ),
        Provisioner::Claim => {
            let claim = class.spec.claim.as_ref()?;
            let name = database::object_name(input.name);
            let labels =
                claim.pod_selector.as_ref()?.iter().map(|(k, v)| (k.clone(), v.replace("${name}", &name))).collect();
            (labels, claim.port)
        }
    };
    Some(NetworkPolicyEgressRule {
        to: Some(vec![NetworkPolicyPeer {
            namespace_selector: Some(namespace_selector(input.namespace)),
            pod_selector: Some(LabelSelector { match_labels: Some(labels), ..Default::default() }),
            ..Default::default()
        }]),
        ports: port.map(|p| {
            vec![NetworkPolicyPort {
                protocol: Some("TCP".into()),
                port: Some(IntOrString::Int(p)),
                ..Default::default()
            }]
        }),
    })
}

/// The pods an `allowFrom` entry admits in its namespace: those its selector matches, of the
/// services it names (both, when it has both).
fn allowed_pods(a: &AllowFrom) -> Option<LabelSelector> {
    let Some(services) = &a.services else { return a.pod_selector.clone() };
    let mut sel = a.pod_selector.clone().unwrap_or_default();
    sel.match_expressions.get_or_insert_with(Vec::new).push(LabelSelectorRequirement {
        key: SELECTOR_LABEL.into(),
        operator: "In".into(),
        values: Some(services.clone()),
    });
    Some(sel)
}

/// The pods of Microservice `namespace/name`: pod and namespace selector in one peer (AND).
fn service_peer(name: &str, namespace: &str) -> NetworkPolicyPeer {
    NetworkPolicyPeer {
        namespace_selector: Some(namespace_selector(namespace)),
        pod_selector: Some(LabelSelector { match_labels: Some(selector_labels(name)), ..Default::default() }),
        ..Default::default()
    }
}

fn namespace_selector(namespace: &str) -> LabelSelector {
    LabelSelector {
        match_labels: Some(BTreeMap::from([(NAMESPACE_NAME_LABEL.to_string(), namespace.to_string())])),
        ..Default::default()
    }
}

fn np_port(p: &PortSpec) -> NetworkPolicyPort {
    NetworkPolicyPort {
        protocol: Some(p.protocol().as_str().into()),
        port: Some(IntOrString::Int(p.port)),
        ..Default::default()
    }
}
