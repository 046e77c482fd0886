//! Pure rendering: one Microservice plus the world around it becomes its child objects.
//!
//! Nothing here performs I/O; the same input always gives byte-identical output, so the
//! controller, `flotilla render` and the golden-file tests all share this code.

pub mod database;
pub mod deployment;
pub mod hosts;
mod hpa;
mod ingress;
mod network_policy;
mod pdb;
mod service;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

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
use crate::policy::{POLICY_DENIED, Policy};
use crate::validate::{FieldError, Invalid, validate};
use database::{ClassProblem, DatabaseChildren};

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

/// Everything rendering needs beyond the object itself.
#[derive(Clone, Debug, Default)]
pub struct World {
    /// Every Microservice known: callers of the one rendered, and the services it calls.
    pub microservices: Fleet,
    /// Every DatabaseClass known.
    pub database_classes: Vec<Arc<DatabaseClass>>,
    /// Operator settings.
    pub settings: Settings,
    /// Ingresses Flotilla did not make that claim the host of the service rendered.
    pub foreign_ingresses: Vec<hosts::HostClaim>,
}

/// Every Microservice known, looked up by name and by callee. Cloning shares it; the operator
/// keeps one up to date from its watch (one change costs the changed service's dependencies,
/// not the fleet), so a reconcile finds its callers and callees without a pass over every
/// service.
#[derive(Clone, Debug, Default)]
pub struct Fleet(Arc<std::sync::RwLock<Index>>);

/// Namespace and name.
type Key = (String, String);

#[derive(Debug, Default)]
struct Index {
    by_name: HashMap<Key, Arc<Microservice>>,
    /// Callers of each namespace/name, by the caller's namespace/name, with the port it asked for.
    callers: HashMap<Key, BTreeMap<Key, Option<String>>>,
    /// The services that claim each host (lowercase), being deleted or not: a host is held
    /// until its holder is gone.
    hosts: HashMap<String, BTreeSet<Key>>,
}

impl Index {
    /// The callees `ms` counts as a caller of (none while it is being deleted), each with the
    /// port of the first dependency on it.
    fn calls(ms: &Microservice) -> Vec<(Key, Option<String>)> {
        let (Some(ns), Some(name)) = (ms.metadata.namespace.as_deref(), ms.metadata.name.as_deref()) else {
            return Vec::new();
        };
        if ms.metadata.deletion_timestamp.is_some() {
            return Vec::new();
        }
        let mut called = HashSet::new();
        let mut out = Vec::new();
        for d in ms.spec.dependencies.iter().flatten() {
            // A caller's first dependency on a callee is the one that counts.
            if let Some(target) = d.target(ns).filter(|t| *t != (ns, name) && called.insert(*t)) {
                out.push(((target.0.to_string(), target.1.to_string()), d.port.clone()));
            }
        }
        out
    }

    fn key(ms: &Microservice) -> Option<Key> {
        Some((ms.metadata.namespace.clone()?, ms.metadata.name.clone()?))
    }

    fn unlink(&mut self, caller: &Key, ms: &Microservice) {
        for (callee, _) in Self::calls(ms) {
            if let Some(callers) = self.callers.get_mut(&callee) {
                callers.remove(caller);
                if callers.is_empty() {
                    self.callers.remove(&callee);
                }
            }
        }
    }

    fn unclaim(&mut self, key: &Key, ms: &Microservice) {
        if let Some(host) = hosts::claimed_host(ms)
            && let Some(claimers) = self.hosts.get_mut(&host)
        {
            claimers.remove(key);
            if claimers.is_empty() {
                self.hosts.remove(&host);
            }
        }
    }

    fn insert(&mut self, ms: Arc<Microservice>) {
        let Some(key) = Self::key(&ms) else { return };
        if let Some(old) = self.by_name.remove(&key) {
            self.unlink(&key, &old);
            self.unclaim(&key, &old);
        }
        for (callee, port) in Self::calls(&ms) {
            self.callers.entry(callee).or_default().insert(key.clone(), port);
        }
        if let Some(host) = hosts::claimed_host(&ms) {
            self.hosts.entry(host).or_default().insert(key.clone());
        }
        self.by_name.insert(key, ms);
    }

    fn remove(&mut self, namespace: &str, name: &str) {
        let key = (namespace.to_string(), name.to_string());
        if let Some(old) = self.by_name.remove(&key) {
            self.unlink(&key, &old);
            self.unclaim(&key, &old);
        }
    }
}

impl Fleet {
    /// A fleet of `items`; of two objects with the same namespace and name, the first stays.
    pub fn of(items: impl IntoIterator<Item = Arc<Microservice>>) -> Fleet {
        let mut index = Index::default();
        for ms in items {
            if Index::key(&ms).is_some_and(|k| !index.by_name.contains_key(&k)) {
                index.insert(ms);
            }
        }
        Fleet(Arc::new(std::sync::RwLock::new(index)))
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Index> {
        self.0.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Index> {
        self.0.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds `ms`, or replaces the object of its namespace and name.
    pub fn apply(&self, ms: Arc<Microservice>) {
        self.write().insert(ms);
    }

    /// Forgets the Microservice `namespace/name`.
    pub fn remove(&self, namespace: &str, name: &str) {
        self.write().remove(namespace, name);
    }

    /// Replaces everything with `items` (after a watch's relist).
    pub fn replace(&self, items: impl IntoIterator<Item = Arc<Microservice>>) {
        let fresh = Fleet::of(items);
        let index = std::mem::take(&mut *fresh.write());
        *self.write() = index;
    }

    /// How many Microservices are known.
    pub fn len(&self) -> usize {
        self.read().by_name.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The Microservice `namespace/name`, if known.
    pub fn find(&self, namespace: &str, name: &str) -> Option<Arc<Microservice>> {
        self.read().by_name.get(&(namespace.to_string(), name.to_string())).cloned()
    }

    /// Services that list `namespace/name` as a dependency, with the port name they asked for,
    /// sorted by namespace and name so rendering is deterministic.
    pub fn callers_of(&self, namespace: &str, name: &str) -> Vec<Caller> {
        let index = self.read();
        let Some(callers) = index.callers.get(&(namespace.to_string(), name.to_string())) else {
            return Vec::new();
        };
        callers
            .iter()
            .map(|((namespace, name), port)| Caller {
                namespace: namespace.clone(),
                name: name.clone(),
                port: port.clone(),
            })
            .collect()
    }
}

impl Fleet {
    /// The services that claim `host` (lowercase) in `expose.ingress`.
    pub fn claimers_of(&self, host: &str) -> Vec<Arc<Microservice>> {
        let index = self.read();
        let Some(keys) = index.hosts.get(host) else { return Vec::new() };
        keys.iter().filter_map(|k| index.by_name.get(k).cloned()).collect()
    }
}

impl From<Vec<Arc<Microservice>>> for Fleet {
    fn from(items: Vec<Arc<Microservice>>) -> Fleet {
        Fleet::of(items)
    }
}

impl FromIterator<Arc<Microservice>> for Fleet {
    fn from_iter<I: IntoIterator<Item = Arc<Microservice>>>(items: I) -> Fleet {
        Fleet::of(items)
    }
}

impl World {
    /// The Microservice `namespace/name`, if known.
    pub fn find(&self, namespace: &str, name: &str) -> Option<Arc<Microservice>> {
        self.microservices.find(namespace, name)
    }

    /// See [`Fleet::callers_of`].
    pub fn callers_of(&self, namespace: &str, name: &str) -> Vec<Caller> {
        self.microservices.callers_of(namespace, name)
    }

    /// Whether `callee` admits the pods of `caller` on its side: always within one namespace or
    /// tenant; across tenants only when the callee's own `expose.allowFrom` says so. A caller's
    /// word alone never opens another team's service.
    pub fn admits(&self, callee: &Microservice, caller: &Microservice) -> bool {
        let (callee_ns, caller_ns) = (callee.ns(), caller.ns());
        if self.settings.policy.same_tenant(callee_ns, caller_ns) {
            return true;
        }
        let name = caller.metadata.name.as_deref().unwrap_or_default();
        let labels = pod_labels(caller);
        callee.spec.expose.iter().flat_map(|e| e.allow_from.iter().flatten()).any(|a| {
            a.namespace == caller_ns
                && a.services.as_ref().is_none_or(|s| s.iter().any(|s| s == name))
                && a.pod_selector.as_ref().is_none_or(|sel| selector_matches(sel, &labels))
        })
    }

    /// The services `ms` depends on that exist and do not admit it (`namespace/name`).
    pub fn not_admitting(&self, ms: &Microservice) -> Vec<String> {
        let own = ms.ns();
        let mut out = Vec::new();
        for (ns, svc) in ms.spec.dependencies.iter().flatten().filter_map(|d| d.target(own)) {
            if let Some(callee) = self.find(ns, svc)
                && !self.admits(&callee, ms)
                && !out.contains(&format!("{ns}/{svc}"))
            {
                out.push(format!("{ns}/{svc}"));
            }
        }
        out
    }

    /// Problems only the world shows: children of `ms` that would carry the same name as another
    /// Microservice's. A Microservice `x` with a database names its database's Service and
    /// NetworkPolicy `x-db`, as a Microservice `x-db` names its own. The one created first (by
    /// creation time, then name) keeps the names, until it is gone; the other is refused, naming
    /// both, so that it writes nothing: no pod of either runs without its NetworkPolicy.
    pub fn clashes(&self, ms: &Microservice) -> Vec<FieldError> {
        let (Some(namespace), Some(name)) = (ms.metadata.namespace.as_deref(), ms.metadata.name.as_deref()) else {
            return Vec::new();
        };
        let first = |other: &Microservice| {
            let key = |m: &Microservice| (m.metadata.creation_timestamp.clone(), m.metadata.name.clone());
            key(other) < key(ms)
        };
        let mut errs = Vec::new();
        if ms.spec.database.is_some()
            && let Some(other) = self.find(namespace, &database::object_name(name)).filter(|o| first(o))
        {
            errs.push(FieldError::new(
                "spec.database",
                format!(
                    "the database's Service and NetworkPolicy would be named {:?}, which Microservice {:?} in this \
                     namespace (created first) uses for its own; rename one of the two or remove spec.database",
                    database::object_name(name),
                    other.metadata.name.as_deref().unwrap_or_default()
                ),
            ));
        }
        if let Some(owner) = name.strip_suffix(database::OBJECT_SUFFIX)
            && let Some(other) = self.find(namespace, owner).filter(|o| o.spec.database.is_some() && first(o))
        {
            errs.push(FieldError::new(
                "metadata.name",
                format!(
                    "{name:?} is the name of the Service and NetworkPolicy of the database of Microservice {:?} in \
                     this namespace (created first); rename this service",
                    other.metadata.name.as_deref().unwrap_or_default()
                ),
            ));
        }
        errs
    }
}

/// A service that calls the one being rendered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    pub namespace: String,
    pub name: String,
    /// The callee port it asked for; the callee's first port when absent.
    pub port: Option<String>,
}

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

/// What `flotilla render` prints for `ms`: its children plus, with a database, the Secrets the
/// operator makes at run time, with placeholders instead of credentials.
pub fn preview(ms: &Microservice, world: &World) -> Result<Vec<serde_json::Value>, Invalid> {
    let checked = check(ms, world)?;
    let input = checked.input();
    let children = children(&checked);
    let mut values = children.to_values().unwrap_or_default();
    if let Some(Ok(db)) = &children.database {
        let credentials = database::credentials_secret(input, db.engine, database::PLACEHOLDER);
        let embedded =
            db.stateful_set.as_ref().and_then(|_| database::embedded_connection(input, db.engine, &credentials));
        let placeholder = if let Some(mut conn) = embedded {
            // The URI as the operator writes it, with the placeholder readable.
            conn.uri = Some(database::readable_uri(&conn, db.engine));
            conn
        } else {
            database::Connection {
                host: PLACEHOLDER_OR_HOST.into(),
                port: PLACEHOLDER_OR_HOST.into(),
                username: PLACEHOLDER_OR_HOST.into(),
                password: PLACEHOLDER_OR_HOST.into(),
                database: PLACEHOLDER_OR_HOST.into(),
                uri: Some(PLACEHOLDER_OR_HOST.into()),
            }
        };
        let mut secrets = Vec::new();
        if db.stateful_set.is_some() {
            secrets.push(credentials);
        }
        secrets.push(database::binding_secret(input, db.engine, &database::provider(db), &placeholder));
        for mut s in secrets {
            // Show the placeholders readably rather than base64-encoded.
            s.string_data = s
                .data
                .take()
                .map(|d| d.into_iter().map(|(k, v)| (k, String::from_utf8_lossy(&v.0).into_owned())).collect());
            if let Ok(v) = serde_json::to_value(&s) {
                values.push(v);
            }
        }
    }
    Ok(values)
}

const PLACEHOLDER_OR_HOST: &str = "<from the provisioner>";

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

/// Serializes children as a multi-document YAML stream.
pub fn to_yaml(values: &[serde_json::Value]) -> Result<String, serde_yaml_ng::Error> {
    let mut out = String::new();
    for v in values {
        out.push_str("---\n");
        out.push_str(&yaml_for_kubectl(v)?);
    }
    Ok(out)
}

/// `v` as YAML that YAML 1.1 readers take as `v` too. serde_yaml_ng writes YAML 1.2, where `yes`,
/// `on`, `1_000` or `2024-01-01` are plain strings; kubectl, Argo CD and Flux read YAML 1.1
/// (sigs.k8s.io/yaml), where they are a boolean, a number and a timestamp, so `flotilla render
/// | kubectl apply -f -` would fail on `MYSQL_RANDOM_ROOT_PASSWORD: yes`. Such strings are
/// written quoted: each is swapped for a unique plain token, and the token for the quoted string.
pub fn yaml_for_kubectl(v: &serde_json::Value) -> Result<String, serde_yaml_ng::Error> {
    const TOKEN: &str = "flotillaquotedscalar";
    fn swap(v: &mut serde_json::Value, found: &mut Vec<String>) {
        match v {
            serde_json::Value::String(s) if ambiguous_in_yaml_1_1(s) => {
                let token = format!("{TOKEN}{}x", found.len());
                found.push(std::mem::replace(s, token));
            }
            serde_json::Value::Array(xs) => xs.iter_mut().for_each(|x| swap(x, found)),
            serde_json::Value::Object(m) => m.values_mut().for_each(|x| swap(x, found)),
            _ => {}
        }
    }
    let mut found = Vec::new();
    let mut v = v.clone();
    let text = serde_json::to_string(&v).unwrap_or_default();
    if !text.contains(TOKEN) {
        swap(&mut v, &mut found);
    }
    let mut out = serde_yaml_ng::to_string(&v)?;
    // Last first, so that token 1 is not replaced inside token 10.
    for (i, s) in found.iter().enumerate().rev() {
        out = out.replace(&format!("{TOKEN}{i}x"), &format!("'{s}'"));
    }
    Ok(out)
}

/// Whether a YAML 1.1 reader would take the plain scalar `s` for something other than a string
/// (a boolean, null, a number with `_` or a base prefix, a sexagesimal number, a timestamp, a
/// merge or value key). Errs on the side of quoting: a quoted string is always read as one.
fn ambiguous_in_yaml_1_1(s: &str) -> bool {
    const WORDS: [&str; 14] = ["y", "yes", "n", "no", "on", "off", "true", "false", "null", "~", "=", "<<", "", ".inf"];
    let lower = s.to_ascii_lowercase();
    if WORDS.contains(&lower.as_str()) || lower == ".nan" || lower == "-.inf" || lower == "+.inf" {
        return true;
    }
    let numeric_start = s.trim_start_matches(['-', '+', '.']).starts_with(|c: char| c.is_ascii_digit());
    numeric_start && s.chars().all(|c| c.is_ascii_hexdigit() || "+-._:xXoO tTzZ".contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(ns: &str, name: &str, calls: &[(&str, Option<&str>)]) -> Arc<Microservice> {
        let mut ms = Microservice::new(name, Default::default());
        ms.metadata.namespace = Some(ns.into());
        ms.spec.dependencies = Some(
            calls
                .iter()
                .map(|(svc, port)| crate::api::Dependency {
                    service: Some(svc.to_string()),
                    port: port.map(String::from),
                    ..Default::default()
                })
                .collect(),
        );
        Arc::new(ms)
    }

    fn callers(fleet: &Fleet, ns: &str, name: &str) -> Vec<String> {
        fleet.callers_of(ns, name).iter().map(|c| format!("{}/{}:{:?}", c.namespace, c.name, c.port)).collect()
    }

    #[test]
    fn a_fleet_kept_change_by_change_answers_as_one_built_from_the_final_list() {
        let fleet = Fleet::default();
        fleet.apply(service("shop", "web", &[("api", None), ("cart", None)]));
        fleet.apply(service("shop", "cart", &[("api", Some("grpc"))]));
        fleet.apply(service("shop", "api", &[("db", None)]));
        assert_eq!(callers(&fleet, "shop", "api"), ["shop/cart:Some(\"grpc\")", "shop/web:None"]);
        // `web` stops calling `api`; `cart` calls it twice (the first dependency counts), and itself.
        fleet.apply(service("shop", "web", &[("cart", None)]));
        fleet.apply(service("shop", "cart", &[("api", None), ("api", Some("grpc")), ("cart", None)]));
        let mut deleting = (*service("shop", "api", &[("db", None)])).clone();
        deleting.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH));
        // A service being deleted is still found, and calls no one any more.
        fleet.apply(Arc::new(deleting.clone()));
        fleet.apply(service("shop", "db", &[]));
        fleet.remove("shop", "gone");
        let rebuilt = Fleet::of([
            service("shop", "web", &[("cart", None)]),
            service("shop", "cart", &[("api", None), ("api", Some("grpc")), ("cart", None)]),
            Arc::new(deleting),
            service("shop", "db", &[]),
        ]);
        for name in ["web", "cart", "api", "db"] {
            assert_eq!(callers(&fleet, "shop", name), callers(&rebuilt, "shop", name), "callers of {name}");
            assert_eq!(fleet.find("shop", name).is_some(), rebuilt.find("shop", name).is_some());
        }
        assert_eq!(callers(&fleet, "shop", "api"), ["shop/cart:None"]);
        assert!(callers(&fleet, "shop", "db").is_empty(), "the deleting api calls no one");
        assert!(fleet.find("shop", "api").is_some());
        // Gone: found no more, and its calls with it.
        fleet.remove("shop", "cart");
        assert!(callers(&fleet, "shop", "api").is_empty());
        assert!(fleet.find("shop", "cart").is_none());
        // A relist replaces everything.
        fleet.replace([service("ops", "probe", &[("web", None)])]);
        assert_eq!(fleet.len(), 1);
        assert_eq!(callers(&fleet, "ops", "web"), ["ops/probe:None"]);
        assert!(fleet.find("shop", "web").is_none());
    }

    #[test]
    fn strings_yaml_1_1_reads_otherwise_are_quoted() {
        for s in [
            "yes",
            "No",
            "ON",
            "off",
            "y",
            "N",
            "~",
            "null",
            "1_000",
            "0777",
            "0x1F",
            "2024-01-01",
            "12:30",
            "1e3",
            "<<",
        ] {
            let out = yaml_for_kubectl(&serde_json::json!({"k": s})).unwrap();
            assert!(out == format!("k: '{s}'\n") || out == format!("k: \"{s}\"\n"), "{s:?} written as {out:?}");
        }
        for s in ["128Mi", "100m", "postgres:17", "/healthz", "RuntimeDefault", "yesterday", "2Gi"] {
            assert_eq!(yaml_for_kubectl(&serde_json::json!({"k": s})).unwrap(), format!("k: {s}\n"));
        }
        // Tokens are replaced whole: the eleventh does not take the second's place.
        let many: Vec<&str> = std::iter::repeat_n("on", 12).collect();
        let out = yaml_for_kubectl(&serde_json::json!(many)).unwrap();
        assert_eq!(out.matches("- 'on'").count(), 12, "{out}");
    }
}
