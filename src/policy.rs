//! The platform's policy: what a tenant may set through a Microservice, beyond the API's own
//! rules, and which namespaces are one tenant.
//!
//! One Flotilla serves every team of a cluster with cluster-wide rights, so what it writes on a
//! tenant's word must stay within what the platform allows that tenant. The policy is written by
//! the platform team, never by a tenant: it is a file the operator reads when it starts
//! (`flotilla run --policy`, a ConfigMap beside the operator's Deployment), and `flotilla render
//! --policy` reads the same file, so the preview and the operator agree. Every field has a safe
//! default; an absent file means the defaults. Every refusal names the field of the Microservice
//! and the policy entry that refused it.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::api::Microservice;
use crate::api::defaults::parse_quantity;
use crate::validate::FieldError;

/// The reason (status, Event, metric label) of a refusal by the policy.
pub const POLICY_DENIED: &str = "PolicyDenied";

/// Networks no Microservice's egress ever reaches, whatever the policy adds: link-local, where
/// clouds serve instance metadata and credentials (169.254.169.254, fd00:ec2::254 is added by
/// platforms on AWS), in IPv4, IPv6 and IPv4-mapped IPv6.
pub const ALWAYS_DENIED_CIDRS: [&str; 3] = ["169.254.0.0/16", "fe80::/10", "::ffff:169.254.0.0/112"];

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Policy {
    /// Groups of namespaces that belong to one team. Within one tenant, as within one
    /// namespace, a dependency admits its caller on the callee's side, and a host may be shared.
    pub tenants: Vec<Tenant>,
    pub egress: EgressPolicy,
    pub ingress: IngressPolicy,
    pub scheduling: SchedulingPolicy,
    pub pod: PodPolicy,
    pub ceilings: Ceilings,
    /// DatabaseClasses open only to some namespaces; a class not listed is open to every namespace.
    pub database_classes: Vec<ClassGrant>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Tenant {
    pub name: String,
    pub namespaces: Vec<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct EgressPolicy {
    /// Networks no external dependency may reach, besides [`ALWAYS_DENIED_CIDRS`]: each becomes
    /// an `except` of every external rule that contains it, and a dependency inside one is refused.
    pub denied_cidrs: Vec<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct IngressPolicy {
    /// Hosts a namespace may publish: `shop.example.com` exactly, or `*.{namespace}.apps.example.com`
    /// (one or more labels before the rest; `{namespace}` is the Microservice's). Any host when
    /// empty; either way a host is held by one namespace (or tenant) at a time.
    pub hosts: Vec<String>,
    /// Whether a Microservice may claim a wildcard host (`*.example.com`), which spans hosts
    /// other teams may claim. Default false.
    pub wildcard_hosts: bool,
    /// IngressClasses a Microservice may name; any when empty.
    pub classes: Vec<String>,
    /// The IngressClass used when a Microservice names none (the cluster's default when absent).
    pub default_class: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct SchedulingPolicy {
    /// Node label keys a tenant may select on (`spec.pod.nodeSelector`, node affinity terms;
    /// `metadata.name` for a term's `matchFields`), the first entry that matches deciding: an
    /// entry ending in `*` is a prefix (`*` alone every key), one starting with `!` refuses.
    /// By default every key but the control plane's role and a node's own name.
    pub node_selector_keys: Vec<String>,
    /// Taint keys a tenant may tolerate (`spec.pod.tolerations`), same patterns. A toleration
    /// without a key tolerates every taint, and only `*` allows it. By default only the taints
    /// Kubernetes sets on a node in trouble, which pods tolerate for a while anyway: the taints
    /// that keep pods off the control plane and off other teams' dedicated nodes hold.
    pub toleration_keys: Vec<String>,
}

impl Default for SchedulingPolicy {
    fn default() -> Self {
        Self {
            node_selector_keys: ["!node-role.kubernetes.io/*", "!kubernetes.io/hostname", "!metadata.name", "*"]
                .map(String::from)
                .to_vec(),
            toleration_keys: vec!["node.kubernetes.io/*".into()],
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct PodPolicy {
    /// Prefixed annotation keys a tenant may set on its pods (`spec.pod.annotations`): an entry
    /// ending in `/` allows every key with that prefix, any other entry that key alone, `*`
    /// every key. Keys without a prefix (no `/`) are the user's own and always allowed. Prefixed
    /// keys are read by the platform's controllers (AppArmor, a service mesh's injection, a
    /// backup tool), so they are the platform's to hand out.
    pub annotation_prefixes: Vec<String>,
}

impl Default for PodPolicy {
    fn default() -> Self {
        Self { annotation_prefixes: vec!["prometheus.io/".into(), "kubectl.kubernetes.io/default-container".into()] }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Ceilings {
    /// Most replicas one Microservice may run (`spec.replicas`, `spec.autoscaling.maxReplicas`).
    pub replicas: i32,
    /// Most CPU a pod may request or be limited to (`spec.resources`), a quantity.
    pub cpu: String,
    /// Most memory a pod may request or be limited to, a quantity.
    pub memory: String,
    /// Largest database volume (`spec.database.storage`), a quantity.
    pub storage: String,
}

impl Default for Ceilings {
    fn default() -> Self {
        Self { replicas: 50, cpu: "8".into(), memory: "32Gi".into(), storage: "200Gi".into() }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClassGrant {
    /// The DatabaseClass.
    pub class: String,
    /// Namespaces that may use it; nobody else can.
    pub namespaces: Vec<String>,
}

/// A policy file that cannot be used, with the entry at fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyError(pub String);

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "platform policy: {}", self.0)
    }
}

impl std::error::Error for PolicyError {}

impl Policy {
    /// Reads a policy from YAML, refusing unknown fields and entries that cannot be used.
    pub fn from_yaml(text: &str) -> Result<Policy, PolicyError> {
        let policy: Policy = if text.trim().is_empty() {
            Policy::default()
        } else {
            serde_yaml_ng::from_str(text).map_err(|e| PolicyError(e.to_string()))?
        };
        policy.check_itself()?;
        Ok(policy)
    }

    /// Reads the policy file at `path`.
    pub fn load(path: &std::path::Path) -> Result<Policy, PolicyError> {
        let text =
            std::fs::read_to_string(path).map_err(|e| PolicyError(format!("cannot read {}: {e}", path.display())))?;
        Policy::from_yaml(&text).map_err(|e| PolicyError(format!("{}: {}", path.display(), e.0)))
    }

    fn check_itself(&self) -> Result<(), PolicyError> {
        for (i, c) in self.egress.denied_cidrs.iter().enumerate() {
            if Cidr::parse(c).is_none() {
                return Err(PolicyError(format!("egress.deniedCidrs[{i}]: {c:?} is not a CIDR")));
            }
        }
        if self.ceilings.replicas < 1 {
            return Err(PolicyError(format!("ceilings.replicas: {} must be at least 1", self.ceilings.replicas)));
        }
        for (field, q) in
            [("cpu", &self.ceilings.cpu), ("memory", &self.ceilings.memory), ("storage", &self.ceilings.storage)]
        {
            if parse_quantity(q).is_none() {
                return Err(PolicyError(format!("ceilings.{field}: {q:?} is not a quantity")));
            }
        }
        let mut seen = BTreeMap::new();
        for t in &self.tenants {
            for ns in &t.namespaces {
                if let Some(other) = seen.insert(ns.as_str(), t.name.as_str()) {
                    return Err(PolicyError(format!(
                        "tenants: namespace {ns:?} is in tenant {other:?} and in tenant {:?}; a namespace belongs to one tenant",
                        t.name
                    )));
                }
            }
        }
        Ok(())
    }

    /// Whether namespaces `a` and `b` are one team's: the same namespace, or one tenant's.
    pub fn same_tenant(&self, a: &str, b: &str) -> bool {
        a == b
            || self.tenants.iter().any(|t| t.namespaces.iter().any(|n| n == a) && t.namespaces.iter().any(|n| n == b))
    }

    /// Every network no egress may reach: [`ALWAYS_DENIED_CIDRS`] and the platform's.
    pub fn denied_cidrs(&self) -> impl Iterator<Item = &str> {
        ALWAYS_DENIED_CIDRS.iter().copied().chain(self.egress.denied_cidrs.iter().map(String::as_str))
    }

    /// The networks to carve out of an egress rule to `cidr` (each inside it), or the denied
    /// network that holds all of `cidr`.
    pub fn egress_except(&self, cidr: &str) -> Result<Vec<String>, String> {
        let Some(net) = Cidr::parse(cidr) else { return Ok(Vec::new()) };
        let mut except = Vec::new();
        for denied in self.denied_cidrs() {
            let Some(d) = Cidr::parse(denied) else { continue };
            if d.contains(&net) {
                return Err(denied.to_string());
            }
            if net.contains(&d) && !except.contains(&d.to_string()) {
                except.push(d.to_string());
            }
        }
        Ok(except)
    }

    /// The IngressClass of an Ingress that names `class` (or none).
    pub fn ingress_class(&self, class: Option<&str>) -> Option<String> {
        class.map(String::from).or_else(|| self.ingress.default_class.clone())
    }

    /// What this policy refuses in `ms`, each naming the field and the policy entry.
    pub fn check(&self, ms: &Microservice) -> Vec<FieldError> {
        let mut errs = Vec::new();
        let namespace = ms.metadata.namespace.as_deref().unwrap_or(crate::api::defaults::DEFAULT_NAMESPACE);
        let mut deny = |path: String, message: String| errs.push(FieldError::new(path, message).because(POLICY_DENIED));
        let spec = &ms.spec;

        // Egress: never into the denied networks.
        for (i, d) in spec.dependencies.iter().flatten().enumerate() {
            if let Some(ext) = &d.external
                && let Err(denied) = self.egress_except(&ext.cidr)
            {
                deny(
                    format!("spec.dependencies[{i}].external.cidr"),
                    format!(
                        "{:?} lies inside {denied}, which no service may reach (platform policy {})",
                        ext.cidr,
                        if ALWAYS_DENIED_CIDRS.contains(&denied.as_str()) {
                            "built-in: link-local, where clouds serve instance credentials".to_string()
                        } else {
                            "egress.deniedCidrs".to_string()
                        }
                    ),
                );
            }
        }

        // Exposure: hosts and classes the platform hands out.
        if let Some(ing) = spec.expose.as_ref().and_then(|e| e.ingress.as_ref()) {
            let host = ing.host.to_ascii_lowercase();
            if host.starts_with("*.") && !self.ingress.wildcard_hosts {
                deny(
                    "spec.expose.ingress.host".into(),
                    format!(
                        "{host:?} is a wildcard, which would take every unclaimed host under it from other teams \
                         (platform policy ingress.wildcardHosts is false)"
                    ),
                );
            } else if !self.ingress.hosts.is_empty()
                && !self.ingress.hosts.iter().any(|p| host_matches(p, &host, namespace))
            {
                deny(
                    "spec.expose.ingress.host".into(),
                    format!(
                        "{host:?} is not a host namespace {namespace} may publish (platform policy ingress.hosts: {})",
                        self.ingress
                            .hosts
                            .iter()
                            .map(|p| p.replace("{namespace}", namespace))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                );
            }
            if let Some(class) = &ing.class_name
                && !self.ingress.classes.is_empty()
                && !self.ingress.classes.contains(class)
            {
                deny(
                    "spec.expose.ingress.className".into(),
                    format!(
                        "{class:?} is not allowed (platform policy ingress.classes: {})",
                        self.ingress.classes.join(", ")
                    ),
                );
            }
        }

        // Scheduling: which nodes a tenant may ask for or tolerate.
        if let Some(pod) = &spec.pod {
            let keys = &self.scheduling.node_selector_keys;
            for k in pod.node_selector.iter().flatten().map(|(k, _)| k) {
                if !key_allowed(keys, k) {
                    deny(
                        format!("spec.pod.nodeSelector[{k:?}]"),
                        not_allowed("node label key", k, "scheduling.nodeSelectorKeys", keys),
                    );
                }
            }
            let node_affinity = pod.affinity.as_ref().and_then(|a| a.node_affinity.as_ref());
            let required = node_affinity
                .and_then(|n| n.required_during_scheduling_ignored_during_execution.as_ref())
                .map(|r| r.node_selector_terms.iter().enumerate().map(|(i, t)| (format!("spec.pod.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[{i}]"), t)).collect::<Vec<_>>())
                .unwrap_or_default();
            let preferred = node_affinity
                .and_then(|n| n.preferred_during_scheduling_ignored_during_execution.as_ref())
                .map(|p| p.iter().enumerate().map(|(i, t)| (format!("spec.pod.affinity.nodeAffinity.preferredDuringSchedulingIgnoredDuringExecution[{i}].preference"), &t.preference)).collect::<Vec<_>>())
                .unwrap_or_default();
            for (path, term) in required.into_iter().chain(preferred) {
                for (j, e) in term.match_expressions.iter().flatten().enumerate() {
                    if !key_allowed(keys, &e.key) {
                        deny(
                            format!("{path}.matchExpressions[{j}].key"),
                            not_allowed("node label key", &e.key, "scheduling.nodeSelectorKeys", keys),
                        );
                    }
                }
                for (j, f) in term.match_fields.iter().flatten().enumerate() {
                    if !key_allowed(keys, &f.key) {
                        deny(
                            format!("{path}.matchFields[{j}].key"),
                            not_allowed("node field", &f.key, "scheduling.nodeSelectorKeys", keys),
                        );
                    }
                }
            }
            let tolerations = &self.scheduling.toleration_keys;
            for (i, t) in pod.tolerations.iter().flatten().enumerate() {
                match t.key.as_deref().filter(|k| !k.is_empty()) {
                    None if !key_allowed(tolerations, "") => deny(
                        format!("spec.pod.tolerations[{i}]"),
                        "has no key, so it tolerates every taint, the control plane's and other teams' dedicated nodes' too \
                         (platform policy scheduling.tolerationKeys is not \"*\")"
                            .into(),
                    ),
                    Some(k) if !key_allowed(tolerations, k) => deny(
                        format!("spec.pod.tolerations[{i}].key"),
                        not_allowed("taint key", k, "scheduling.tolerationKeys", tolerations),
                    ),
                    _ => {}
                }
            }
            let prefixes = &self.pod.annotation_prefixes;
            for k in pod.annotations.iter().flatten().map(|(k, _)| k) {
                if k.contains('/') && !annotation_allowed(prefixes, k) {
                    deny(
                        format!("spec.pod.annotations[{k:?}]"),
                        not_allowed("annotation", k, "pod.annotationPrefixes", prefixes),
                    );
                }
            }
        }

        // Ceilings.
        let ceiling = self.ceilings.replicas;
        if let Some(r) = spec.replicas.filter(|r| *r > ceiling) {
            deny(
                "spec.replicas".into(),
                format!("{r} is above the platform's ceiling of {ceiling} (platform policy ceilings.replicas)"),
            );
        }
        if let Some(a) = spec.autoscaling.as_ref().filter(|a| a.max_replicas > ceiling) {
            deny(
                "spec.autoscaling.maxReplicas".into(),
                format!(
                    "{} is above the platform's ceiling of {ceiling} (platform policy ceilings.replicas)",
                    a.max_replicas
                ),
            );
        }
        if let Some(r) = &spec.resources {
            for (section, values) in [("requests", &r.requests), ("limits", &r.limits)] {
                for (name, max) in [("cpu", &self.ceilings.cpu), ("memory", &self.ceilings.memory)] {
                    let Some(q) = values.as_ref().and_then(|v| v.get(name)) else { continue };
                    if parse_quantity(&q.0).zip(parse_quantity(max)).is_some_and(|(v, m)| v > m) {
                        deny(
                            format!("spec.resources.{section}[{name:?}]"),
                            format!(
                                "{} is above the platform's ceiling of {max} per pod (platform policy ceilings.{name})",
                                q.0
                            ),
                        );
                    }
                }
            }
        }
        if let Some(db) = &spec.database {
            let max = &self.ceilings.storage;
            if let Some(storage) = &db.storage
                && parse_quantity(storage).zip(parse_quantity(max)).is_some_and(|(v, m)| v > m)
            {
                deny(
                    "spec.database.storage".into(),
                    format!("{storage} is above the platform's ceiling of {max} (platform policy ceilings.storage)"),
                );
            }
            if let Some(class) = &db.class
                && let Some(grant) = self.database_classes.iter().find(|g| &g.class == class)
                && !grant.namespaces.iter().any(|n| n == namespace)
            {
                deny(
                    "spec.database.class".into(),
                    format!(
                        "DatabaseClass {class:?} is not open to namespace {namespace} (platform policy databaseClasses: {} may use it)",
                        grant.namespaces.join(", ")
                    ),
                );
            }
        }
        errs
    }

    /// Whether a service without a class named may use the default class `class`.
    pub fn class_open_to(&self, class: &str, namespace: &str) -> bool {
        self.database_classes
            .iter()
            .find(|g| g.class == class)
            .is_none_or(|g| g.namespaces.iter().any(|n| n == namespace))
    }
}

fn not_allowed(what: &str, key: &str, entry: &str, allowed: &[String]) -> String {
    let list = if allowed.is_empty() { "none".to_string() } else { allowed.join(", ") };
    format!("{what} {key:?} is not allowed (platform policy {entry}: {list})")
}

/// `key` against patterns, the first that matches deciding: a trailing `*` makes a prefix (`*`
/// alone is every key), a leading `!` refuses what the rest matches. No match: refused.
fn key_allowed(patterns: &[String], key: &str) -> bool {
    for p in patterns {
        let (allow, pattern) = match p.strip_prefix('!') {
            Some(rest) => (false, rest),
            None => (true, p.as_str()),
        };
        let matches = match pattern.strip_suffix('*') {
            Some(prefix) => key.starts_with(prefix),
            None => pattern == key,
        };
        if matches {
            return allow;
        }
    }
    false
}

fn annotation_allowed(prefixes: &[String], key: &str) -> bool {
    prefixes.iter().any(|p| p == "*" || p == key || (p.ends_with('/') && key.starts_with(p.as_str())))
}

/// `host` against a pattern of `ingress.hosts` for `namespace`.
fn host_matches(pattern: &str, host: &str, namespace: &str) -> bool {
    let pattern = pattern.replace("{namespace}", namespace).to_ascii_lowercase();
    match pattern.strip_prefix('*') {
        // `*.apps.example.com`: one or more labels, then the rest.
        Some(rest) if rest.starts_with('.') => {
            host.len() > rest.len() && host.ends_with(rest) && !host.starts_with('*')
        }
        _ => host == pattern,
    }
}

/// An IPv4 or IPv6 network.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    v6: bool,
    addr: u128,
    prefix: u32,
}

impl Cidr {
    pub fn parse(s: &str) -> Option<Cidr> {
        let (ip, prefix) = s.split_once('/')?;
        let prefix: u32 = prefix.parse().ok()?;
        match ip.parse::<IpAddr>().ok()? {
            IpAddr::V4(a) if prefix <= 32 => Some(Cidr { v6: false, addr: u128::from(u32::from(a)), prefix }),
            IpAddr::V6(a) if prefix <= 128 => Some(Cidr { v6: true, addr: u128::from(a), prefix }),
            _ => None,
        }
    }

    fn bits(&self) -> u32 {
        if self.v6 { 128 } else { 32 }
    }

    fn network(&self) -> u128 {
        let host_bits = self.bits() - self.prefix;
        if host_bits >= 128 { 0 } else { self.addr >> host_bits << host_bits }
    }

    /// Whether every address of `other` is in `self`.
    pub fn contains(&self, other: &Cidr) -> bool {
        if self.v6 != other.v6 || other.prefix < self.prefix {
            return false;
        }
        let host_bits = self.bits() - self.prefix;
        host_bits >= 128 || (other.addr >> host_bits) == (self.addr >> host_bits)
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.v6 {
            write!(f, "{}/{}", std::net::Ipv6Addr::from(self.network()), self.prefix)
        } else {
            write!(f, "{}/{}", std::net::Ipv4Addr::from(self.network() as u32), self.prefix)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(namespace: &str, spec: serde_json::Value) -> Microservice {
        let mut m: Microservice = serde_json::from_value(serde_json::json!({
            "apiVersion": "flotilla.dev/v1alpha1", "kind": "Microservice",
            "metadata": {"name": "probe", "namespace": namespace}, "spec": spec,
        }))
        .unwrap();
        m.metadata.namespace = Some(namespace.into());
        m
    }

    fn refusals(policy: &Policy, m: &Microservice) -> Vec<String> {
        policy.check(m).iter().map(ToString::to_string).collect()
    }

    #[test]
    fn egress_never_reaches_link_local_nor_what_the_platform_adds() {
        let p = Policy::from_yaml("egress: {deniedCidrs: [10.96.0.0/12, 'fd00:ec2::254/128']}").unwrap();
        assert_eq!(p.egress_except("0.0.0.0/0").unwrap(), ["169.254.0.0/16", "10.96.0.0/12"]);
        assert_eq!(p.egress_except("::/0").unwrap(), ["fe80::/10", "::ffff:169.254.0.0/112", "fd00:ec2::254/128"]);
        assert_eq!(p.egress_except("203.0.113.0/24").unwrap(), Vec::<String>::new());
        assert_eq!(p.egress_except("169.254.169.254/32").unwrap_err(), "169.254.0.0/16");
        assert_eq!(p.egress_except("10.100.0.0/16").unwrap_err(), "10.96.0.0/12");
        let m = ms(
            "attacker",
            serde_json::json!({"image": "x", "dependencies": [{"external": {"cidr": "169.254.169.254/32"}}]}),
        );
        let errs = refusals(&p, &m);
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(
            errs[0].starts_with("spec.dependencies[0].external.cidr:") && errs[0].contains("169.254.0.0/16"),
            "{errs:?}"
        );
    }

    #[test]
    fn scheduling_annotations_and_ceilings_are_bounded_with_the_entry_named() {
        let p = Policy::default();
        let m = ms(
            "attacker",
            serde_json::json!({"image": "x", "autoscaling": {"maxReplicas": 1000},
                "resources": {"limits": {"cpu": "64", "memory": "512Gi"}},
                "database": {"storage": "10Ti"},
                "pod": {"nodeSelector": {"node-role.kubernetes.io/control-plane": ""},
                        "tolerations": [{"operator": "Exists"}, {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "tolerationSeconds": 30}],
                        "annotations": {"container.apparmor.security.beta.kubernetes.io/app": "unconfined", "prometheus.io/scrape": "true", "team": "a"}}}),
        );
        let errs = refusals(&p, &m).join("\n");
        for want in [
            "spec.pod.nodeSelector[\"node-role.kubernetes.io/control-plane\"]: node label key",
            "scheduling.nodeSelectorKeys",
            "spec.pod.tolerations[0]: has no key",
            "spec.pod.annotations[\"container.apparmor.security.beta.kubernetes.io/app\"]",
            "pod.annotationPrefixes",
            "spec.autoscaling.maxReplicas: 1000 is above the platform's ceiling of 50 (platform policy ceilings.replicas)",
            "spec.resources.limits[\"cpu\"]",
            "spec.resources.limits[\"memory\"]",
            "spec.database.storage: 10Ti",
        ] {
            assert!(errs.contains(want), "missing {want:?} in\n{errs}");
        }
        assert_eq!(errs.lines().count(), 7, "the allowed toleration and annotations pass:\n{errs}");
        assert!(p.check(&m).iter().all(|e| e.reason == Some(POLICY_DENIED)));
    }

    #[test]
    fn hosts_classes_and_database_classes_follow_the_platform() {
        let p = Policy::from_yaml(
            "ingress: {hosts: ['*.{namespace}.apps.example.com', 'www.example.com'], classes: [public], defaultClass: public}\n\
             databaseClasses: [{class: prod-pg, namespaces: [shop]}]",
        )
        .unwrap();
        let with = |ns: &str, host: &str, class: Option<&str>| {
            let mut ing = serde_json::json!({"host": host});
            if let Some(c) = class {
                ing["className"] = c.into();
            }
            refusals(
                &p,
                &ms(
                    ns,
                    serde_json::json!({"image": "x", "expose": {"ingress": ing}, "database": {"class": "prod-pg"}}),
                ),
            )
        };
        assert_eq!(with("shop", "web.shop.apps.example.com", None), Vec::<String>::new());
        assert_eq!(with("shop", "www.example.com", Some("public")), Vec::<String>::new());
        let errs = with("attacker", "login.shop.apps.example.com", Some("internal")).join("\n");
        assert!(errs.contains("not a host namespace attacker may publish"), "{errs}");
        assert!(errs.contains("*.attacker.apps.example.com"), "{errs}");
        assert!(errs.contains("spec.expose.ingress.className: \"internal\""), "{errs}");
        assert!(
            errs.contains("spec.database.class: DatabaseClass \"prod-pg\" is not open to namespace attacker"),
            "{errs}"
        );
        assert!(with("shop", "*.shop.apps.example.com", None).join("").contains("wildcard"));
        assert_eq!(p.ingress_class(None).as_deref(), Some("public"));
    }

    #[test]
    fn tenants_join_namespaces_and_a_bad_policy_is_refused_naming_the_entry() {
        let p = Policy::from_yaml("tenants: [{name: shop, namespaces: [shop, shop-admin]}]").unwrap();
        assert!(p.same_tenant("shop", "shop-admin") && p.same_tenant("x", "x") && !p.same_tenant("shop", "attacker"));
        for (text, want) in [
            ("egress: {deniedCidrs: [nope]}", "egress.deniedCidrs[0]"),
            ("ceilings: {memory: lots}", "ceilings.memory"),
            ("tenants: [{name: a, namespaces: [x]}, {name: b, namespaces: [x]}]", "namespace \"x\" is in tenant \"a\""),
            ("unknown: 1", "unknown field"),
        ] {
            let e = Policy::from_yaml(text).unwrap_err().to_string();
            assert!(e.contains(want), "{text}: {e}");
        }
        assert_eq!(Policy::from_yaml("").unwrap(), Policy::default());
    }
}
