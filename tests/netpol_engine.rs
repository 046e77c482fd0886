//! The rendered NetworkPolicies, judged by an independent engine against the intent of the specs.
//!
//! Each world (every example under `examples/`, plus seeded generated worlds) is rendered as
//! `flotilla render` renders it, under the world's platform policy. The intent is computed here
//! from the Microservice and DatabaseClass specs and the policy's tenants and denied networks
//! alone (DESIGN.md §1-2), never from the rendered policies. A service's pods reach the cluster
//! DNS, their own database, the pods of the services they depend on (on the port asked for; a
//! service not created yet on the default port) and their external networks less every denied
//! network (link-local 169.254.0.0/16, fe80::/10 and ::ffff:169.254.0.0/112, and the policy's
//! `egress.deniedCidrs`), nothing else; a service with an external network inside a denied one is
//! refused (PolicyDenied) and runs no pod. They are reached by their dependents of the same tenant
//! (the same namespace, or namespaces one tenant of the policy holds; on the port asked for), the
//! ingress controller's namespace (with `expose.ingress`, on its port) and the pods
//! `expose.allowFrom` names (of its namespace, matching its selector, of the services it lists; on
//! every declared port), nothing else: a dependent of another tenant is admitted only through the
//! callee's allowFrom, its own dependency opens nothing. An embedded database is reached only by
//! its owner on its engine's port and reaches nothing. A set of peers (every service's and
//! database's pods with the labels their rendered templates give them, pods of services not
//! created yet, DNS, the ingress controller, strangers, look-alike pods in other namespaces, pods
//! an allowFrom entry names, addresses inside and outside every external and denied network) is
//! then queried for every source × destination × port × protocol, and cyclonus's matcher
//! (`tests/netpol-engine`, a Go program built once into the cache by its `build.sh`) must agree
//! with the intent on every verdict, ingress and egress separately. Generated worlds also hold an
//! attacker namespace whose services depend on other teams' services (existing or not, with and
//! without a port), some of which consent by name or selector: no verdict may admit a caller of
//! another tenant without consent, and consented ones must be admitted.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, OnceLock};

use flotilla::api::databaseclass::{Engine, Provisioner};
use flotilla::api::{DatabaseClass, Microservice, Protocol};
use flotilla::manifest::{Manifests, load, load_str};
use flotilla::policy::{POLICY_DENIED, Policy};
use flotilla::render::{Settings, World, preview};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use serde_json::{Value, json};

#[path = "support/rng.rs"]
mod rng;
#[path = "support/tool.rs"]
mod tool;

use rng::Rng;

type Labels = BTreeMap<String, String>;

/// The label every pod of Microservice `x` carries, `x` (the API's contract).
const SERVICE_LABEL: &str = "flotilla.dev/microservice";

/// Networks no egress ever reaches whatever the platform's policy says (link-local, where clouds
/// serve instance credentials), besides the policy's `egress.deniedCidrs`.
const BUILT_IN_DENIED: [&str; 3] = ["169.254.0.0/16", "fe80::/10", "::ffff:169.254.0.0/112"];

// ---------------------------------------------------------------------------------------------
// The engine

/// The engine's binary, built (or found in the cache) once per test process.
fn engine() -> &'static Path {
    static BIN: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let bin = BIN.get_or_init(|| tool::build("tests/netpol-engine/build.sh", "the NetworkPolicy engine"));
    match bin {
        Ok(p) => p,
        Err(e) => panic!("{e}"),
    }
}

#[derive(Clone, Copy, Debug)]
struct Verdict {
    ingress: bool,
    egress: bool,
}

fn ask_engine(input: &Value) -> Vec<Verdict> {
    let mut child = Command::new(engine())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start netpol-engine");
    let bytes = serde_json::to_vec(input).unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || stdin.write_all(&bytes));
    let out = child.wait_with_output().expect("run netpol-engine");
    writer.join().unwrap().expect("write to netpol-engine");
    assert!(out.status.success(), "netpol-engine failed: {}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).expect("netpol-engine prints JSON");
    v["verdicts"]
        .as_array()
        .expect("verdicts")
        .iter()
        .map(|v| Verdict { ingress: v["ingress"].as_bool().unwrap(), egress: v["egress"].as_bool().unwrap() })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Addresses

#[derive(Clone, Copy, Debug)]
struct Cidr {
    net: u128,
    bits: u32,
    v6: bool,
}

impl Cidr {
    fn parse(s: &str) -> Cidr {
        let (ip, prefix) = s.split_once('/').expect("a CIDR");
        let prefix: u32 = prefix.parse().expect("a prefix");
        let c = match ip.parse::<IpAddr>().expect("an address") {
            IpAddr::V4(a) => Cidr { net: u32::from(a) as u128, bits: 32 - prefix, v6: false },
            IpAddr::V6(a) => Cidr { net: u128::from(a), bits: 128 - prefix, v6: true },
        };
        Cidr { net: c.net & !c.host_mask(), ..c }
    }

    fn host_mask(&self) -> u128 {
        if self.bits == 0 { 0 } else { u128::MAX >> (128 - self.bits) }
    }

    fn width(&self) -> u32 {
        if self.v6 { 128 } else { 32 }
    }

    fn last(&self) -> u128 {
        self.net | self.host_mask()
    }

    /// Whether every address of this network is in `outer`.
    fn within(&self, outer: &Cidr) -> bool {
        self.v6 == outer.v6 && self.bits <= outer.bits && (outer.net..=outer.last()).contains(&self.net)
    }

    fn contains(&self, ip: &str) -> bool {
        match ip.parse::<IpAddr>() {
            Ok(IpAddr::V4(a)) if !self.v6 => (self.net..=self.last()).contains(&(u32::from(a) as u128)),
            Ok(IpAddr::V6(a)) if self.v6 => (self.net..=self.last()).contains(&u128::from(a)),
            _ => false,
        }
    }

    fn format(&self, n: u128) -> String {
        if self.v6 { std::net::Ipv6Addr::from(n).to_string() } else { std::net::Ipv4Addr::from(n as u32).to_string() }
    }

    /// Addresses inside the network (its first, second and last) and just outside it.
    fn probes(&self) -> (Vec<String>, Vec<String>) {
        let max = if self.width() == 128 { u128::MAX } else { u32::MAX as u128 };
        let mut inside = vec![self.net, self.last()];
        if self.bits > 0 {
            inside.push(self.net + 1);
        }
        let mut outside = Vec::new();
        if self.net > 0 {
            outside.push(self.net - 1);
        }
        if self.last() < max {
            outside.push(self.last() + 1);
        }
        (inside.into_iter().map(|n| self.format(n)).collect(), outside.into_iter().map(|n| self.format(n)).collect())
    }
}

// ---------------------------------------------------------------------------------------------
// The intent, from the specs only

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Proto {
    Tcp,
    Udp,
    Sctp,
}

impl Proto {
    fn name(self) -> &'static str {
        match self {
            Proto::Tcp => "TCP",
            Proto::Udp => "UDP",
            Proto::Sctp => "SCTP",
        }
    }
}

#[derive(Clone, Debug)]
struct Port {
    name: String,
    number: i32,
    proto: Proto,
}

#[derive(Clone, Debug)]
enum Db {
    /// An embedded database: its own pod, reached on its engine's port over TCP.
    Embedded { port: i32 },
    /// A claim: pods of another operator with these labels, on this port (every port when absent).
    Claim { labels: Option<Labels>, port: Option<i32> },
}

#[derive(Clone, Debug)]
struct Svc {
    ns: String,
    name: String,
    ports: Vec<Port>,
    /// Service dependencies: namespace, name, port name asked for.
    deps: Vec<(String, String, Option<String>)>,
    externals: Vec<(String, Cidr, Option<Vec<i32>>)>,
    /// With `expose.ingress`: the port name it routes to, if any.
    ingress: Option<Option<String>>,
    allow_from: Vec<Allow>,
    db: Option<Db>,
    /// The denied network one of its external networks lies in: the policy refuses the service,
    /// which then runs no pod.
    refused: Option<String>,
}

/// An `expose.allowFrom` entry: pods of `ns` matching `selector` (if any) whose service label is
/// one of `services` (if any).
#[derive(Clone, Debug)]
struct Allow {
    ns: String,
    selector: Option<LabelSelector>,
    services: Option<Vec<String>>,
}

impl Allow {
    fn admits(&self, src: &Peer) -> bool {
        src.ns.as_deref() == Some(self.ns.as_str())
            && self.selector.as_ref().is_none_or(|s| selector_matches(s, &src.labels))
            && self.services.as_ref().is_none_or(|ss| src.labels.get(SERVICE_LABEL).is_some_and(|n| ss.contains(n)))
    }
}

impl Svc {
    /// The port a caller asking for `name` reaches: the named one, else the first (as documented
    /// on `Dependency.port`: "its first port when absent").
    fn port(&self, name: Option<&str>) -> &Port {
        name.and_then(|n| self.ports.iter().find(|p| p.name == n)).unwrap_or(&self.ports[0])
    }

    /// The ports of a service that declares none, whose first a caller of a service not created
    /// yet reaches.
    fn default_port() -> Port {
        Port { name: "http".into(), number: 8080, proto: Proto::Tcp }
    }

    fn declares(&self, number: i32, proto: Proto) -> bool {
        self.ports.iter().any(|p| p.number == number && p.proto == proto)
    }
}

fn engine_port(engine: Engine) -> i32 {
    match engine {
        Engine::Postgres => 5432,
        Engine::Mysql => 3306,
        Engine::Redis => 6379,
    }
}

fn intent_of(ms: &Microservice, classes: &[DatabaseClass], denied: &[(String, Cidr)]) -> Svc {
    let ns = ms.metadata.namespace.clone().unwrap_or_else(|| "default".into());
    let name = ms.metadata.name.clone().unwrap();
    let spec = &ms.spec;
    let proto = |p: Option<Protocol>| match p {
        None | Some(Protocol::TCP) => Proto::Tcp,
        Some(Protocol::UDP) => Proto::Udp,
        Some(Protocol::SCTP) => Proto::Sctp,
    };
    let mut ports: Vec<Port> = spec
        .ports
        .iter()
        .flatten()
        .map(|p| Port { name: p.name.clone(), number: p.port, proto: proto(p.protocol) })
        .collect();
    if ports.is_empty() {
        ports.push(Svc::default_port());
    }
    let mut deps = Vec::new();
    let mut externals = Vec::new();
    for d in spec.dependencies.iter().flatten() {
        if let Some(s) = &d.service {
            deps.push((d.namespace.clone().unwrap_or_else(|| ns.clone()), s.clone(), d.port.clone()));
        }
        if let Some(e) = &d.external {
            externals.push((e.cidr.clone(), Cidr::parse(&e.cidr), e.ports.clone()));
        }
    }
    let expose = spec.expose.clone().unwrap_or_default();
    let db = spec.database.as_ref().map(|d| {
        let class = match &d.class {
            Some(c) => classes.iter().find(|k| k.metadata.name.as_deref() == Some(c.as_str())),
            None => {
                let defaults: Vec<_> = classes
                    .iter()
                    .filter(|k| {
                        k.metadata.annotations.as_ref().and_then(|a| a.get("flotilla.dev/is-default-class"))
                            == Some(&"true".to_string())
                    })
                    .collect();
                (defaults.len() == 1).then(|| defaults[0])
            }
        };
        let class = class.unwrap_or_else(|| panic!("{ns}/{name}: the world has no usable class for its database"));
        match class.spec.provisioner {
            Provisioner::Embedded => Db::Embedded { port: engine_port(class.spec.engine) },
            Provisioner::Claim => {
                let c = class.spec.claim.as_ref().unwrap();
                let labels = c
                    .pod_selector
                    .as_ref()
                    .map(|l| l.iter().map(|(k, v)| (k.clone(), v.replace("${name}", &format!("{name}-db")))).collect());
                Db::Claim { labels, port: c.port }
            }
        }
    });
    let refused = externals
        .iter()
        .find_map(|(_, cidr, _)| denied.iter().find(|(_, d)| cidr.within(d)).map(|(text, _)| text.clone()));
    Svc {
        ns,
        name,
        ports,
        deps,
        externals,
        ingress: expose.ingress.map(|i| i.port),
        allow_from: expose
            .allow_from
            .into_iter()
            .flatten()
            .map(|a| Allow { ns: a.namespace, selector: a.pod_selector, services: a.services })
            .collect(),
        db,
        refused,
    }
}

fn selector_matches(sel: &LabelSelector, labels: &Labels) -> bool {
    let labels_ok = sel.match_labels.iter().flatten().all(|(k, v)| labels.get(k) == Some(v));
    let exprs_ok = sel.match_expressions.iter().flatten().all(|e| {
        let values = e.values.clone().unwrap_or_default();
        match e.operator.as_str() {
            "In" => labels.get(&e.key).is_some_and(|v| values.contains(v)),
            "NotIn" => labels.get(&e.key).is_none_or(|v| !values.contains(v)),
            "Exists" => labels.contains_key(&e.key),
            "DoesNotExist" => !labels.contains_key(&e.key),
            op => panic!("unknown selector operator {op}"),
        }
    });
    labels_ok && exprs_ok
}

/// Labels a pod needs to match `sel` (given the test's selectors: one value per key).
fn labels_matching(sel: &LabelSelector) -> Labels {
    let mut l: Labels = sel.match_labels.clone().unwrap_or_default();
    for e in sel.match_expressions.iter().flatten() {
        match e.operator.as_str() {
            "In" => {
                l.insert(e.key.clone(), e.values.as_ref().unwrap()[0].clone());
            }
            "Exists" => {
                l.insert(e.key.clone(), "yes".into());
            }
            _ => {}
        }
    }
    l
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    /// A pod of service `i`.
    Service(usize),
    /// The embedded database pod of service `i`.
    Database(usize),
    /// A database pod of service `i`'s claim (another operator's, no Flotilla policy on it).
    ClaimDb(usize),
    /// Any other pod: no Flotilla policy selects it.
    Pod,
    /// An address outside the cluster.
    External,
}

#[derive(Clone, Debug)]
struct Peer {
    id: String,
    ip: String,
    ns: Option<String>,
    labels: Labels,
    role: Role,
}

struct Intent<'a> {
    svcs: &'a [Svc],
    settings: &'a Settings,
    /// Every network no egress reaches: the built-in ones, then the policy's.
    denied: Vec<(String, Cidr)>,
}

/// The networks no egress reaches under `settings`' policy.
fn denied_networks(settings: &Settings) -> Vec<(String, Cidr)> {
    BUILT_IN_DENIED
        .iter()
        .map(|d| d.to_string())
        .chain(settings.policy.egress.denied_cidrs.iter().cloned())
        .map(|d| {
            let c = Cidr::parse(&d);
            (d, c)
        })
        .collect()
}

impl Intent<'_> {
    /// Whether namespaces `a` and `b` are one team's: the same, or both of one tenant.
    fn same_tenant(&self, a: &str, b: &str) -> bool {
        a == b
            || self
                .settings
                .policy
                .tenants
                .iter()
                .any(|t| t.namespaces.iter().any(|n| n == a) && t.namespaces.iter().any(|n| n == b))
    }

    fn find(&self, ns: &str, name: &str) -> Option<&Svc> {
        self.svcs.iter().find(|t| t.ns == ns && t.name == name)
    }

    /// The port a dependency on `ns/name` asking for `want` reaches: the callee's, or the default
    /// one while no such Microservice exists.
    fn callee_port(&self, ns: &str, name: &str, want: Option<&str>) -> Port {
        self.find(ns, name).map_or_else(Svc::default_port, |t| t.port(want).clone())
    }

    /// Whether `t`'s allowFrom admits the pod `src` (on its declared ports).
    fn consents(&self, t: &Svc, src: &Peer) -> bool {
        t.allow_from.iter().any(|a| a.admits(src))
    }

    /// For a pod of a service that depends on the service of `dst` from another tenant: whether
    /// `dst`'s service consents to it. None for any other pair.
    fn cross_tenant_dependent(&self, src: &Peer, dst: &Peer) -> Option<bool> {
        let (Role::Service(i), Role::Service(j)) = (src.role, dst.role) else { return None };
        let (s, t) = (&self.svcs[i], &self.svcs[j]);
        let depends = s.deps.iter().any(|(ns, name, _)| (ns, name) == (&t.ns, &t.name));
        (depends && !self.same_tenant(&s.ns, &t.ns)).then(|| self.consents(t, src))
    }

    /// Why `src` may send this traffic, or None when its policy must stop it.
    fn egress(&self, src: &Peer, dst: &Peer, port: i32, proto: Proto) -> Option<String> {
        let i = match src.role {
            Role::External | Role::Pod | Role::ClaimDb(_) => return Some("source not isolated".into()),
            Role::Database(_) => return None,
            Role::Service(i) => i,
        };
        let s = &self.svcs[i];
        let dns_proto = matches!(proto, Proto::Udp | Proto::Tcp) && port == 53;
        let st = self.settings;
        if dns_proto
            && dst.ns.as_deref() == Some(st.dns_namespace.as_str())
            && st.dns_pod_labels.iter().all(|(k, v)| dst.labels.get(k) == Some(v))
        {
            return Some("DNS".into());
        }
        if dns_proto && dst.role == Role::External && st.node_local_dns.as_deref() == Some(dst.ip.as_str()) {
            return Some("node-local DNS".into());
        }
        match (&s.db, dst.role) {
            (Some(Db::Embedded { port: p }), Role::Database(j)) if j == i && *p == port && proto == Proto::Tcp => {
                return Some("own database".into());
            }
            (Some(Db::Claim { port: p, .. }), Role::ClaimDb(j))
                if j == i && p.is_none_or(|p| p == port && proto == Proto::Tcp) =>
            {
                return Some("own claimed database".into());
            }
            _ => {}
        }
        // The pods of a service are those of its namespace with its service label: its own, or,
        // before it exists, those it will run.
        if let (Some(dst_ns), Some(dst_svc)) = (dst.ns.as_deref(), dst.labels.get(SERVICE_LABEL)) {
            for (ns, name, want) in &s.deps {
                let p = self.callee_port(ns, name, want.as_deref());
                if (ns.as_str(), name) == (dst_ns, dst_svc) && p.number == port && p.proto == proto {
                    return Some(format!("dependency on {ns}/{name} port {}", p.name));
                }
            }
        }
        if dst.role == Role::External && proto == Proto::Tcp {
            // Carved out of every external network that holds it.
            if self.denied.iter().any(|(_, d)| d.contains(&dst.ip)) {
                return None;
            }
            for (text, cidr, ports) in &s.externals {
                if cidr.contains(&dst.ip) && ports.as_ref().is_none_or(|ps| ps.contains(&port)) {
                    return Some(format!("external {text}"));
                }
            }
        }
        None
    }

    /// Why `dst` may receive this traffic, or None when its policy must stop it.
    fn ingress(&self, src: &Peer, dst: &Peer, port: i32, proto: Proto) -> Option<String> {
        let j = match dst.role {
            Role::External | Role::Pod | Role::ClaimDb(_) => return Some("destination not isolated".into()),
            Role::Database(i) => {
                let Some(Db::Embedded { port: p }) = &self.svcs[i].db else { unreachable!() };
                return (src.role == Role::Service(i) && port == *p && proto == Proto::Tcp)
                    .then(|| "the database's owner".into());
            }
            Role::Service(j) => j,
        };
        let t = &self.svcs[j];
        let src_ns = src.ns.as_deref()?;
        // Dependents of the same tenant: the pods of every Microservice of the world (running or
        // refused) that lists this one; one of another tenant only by allowFrom, below.
        if let Some(src_svc) = src.labels.get(SERVICE_LABEL) {
            for s in self.svcs.iter().filter(|s| s.ns == src_ns && &s.name == src_svc) {
                if !self.same_tenant(&s.ns, &t.ns) {
                    continue;
                }
                for (ns, name, want) in &s.deps {
                    let p = t.port(want.as_deref());
                    if (ns, name) == (&t.ns, &t.name) && p.number == port && p.proto == proto {
                        return Some(format!("dependent {}/{} on port {}", s.ns, s.name, p.name));
                    }
                }
            }
        }
        if let Some(want) = &t.ingress {
            let p = t.port(want.as_deref());
            if src_ns == self.settings.ingress_namespace && p.number == port && p.proto == proto {
                return Some("the ingress controller's namespace".into());
            }
        }
        for a in &t.allow_from {
            if a.admits(src) && t.declares(port, proto) {
                return Some(format!("allowFrom {a:?}"));
            }
        }
        None
    }
}

// ---------------------------------------------------------------------------------------------
// A world: render, peers, queries, comparison

struct Input {
    name: String,
    microservices: Vec<Microservice>,
    classes: Vec<DatabaseClass>,
    settings: Settings,
}

fn find_child<'a>(values: &'a [Value], kind: &str, ns: &str, name: &str) -> &'a Value {
    values
        .iter()
        .find(|v| v["kind"] == kind && v["metadata"]["namespace"] == ns && v["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {ns}/{name} rendered"))
}

fn template_labels(v: &Value) -> Labels {
    serde_json::from_value(v["spec"]["template"]["metadata"]["labels"].clone()).expect("pod template labels")
}

/// What one world (or several) showed.
#[derive(Debug, Default)]
struct Counts {
    verdicts: usize,
    /// Services the policy refused (an external network inside a denied one).
    refused: usize,
    /// Ingress verdicts from a pod of a dependent of another tenant without the callee's consent
    /// to a pod of the callee (every port), and how many of them the engine admitted.
    adversarial: usize,
    adversarial_admitted: usize,
    /// Those of them from an attacker namespace.
    from_attackers: usize,
    /// Ingress verdicts from a consented dependent of another tenant, on a port the callee
    /// declares, and how many of them the engine admitted.
    consented: usize,
    consented_admitted: usize,
    /// Ingress verdicts the engine admitted from a dependent in another namespace of its tenant,
    /// on the port it asked for.
    tenant_admitted: usize,
    /// Egress verdicts to an address of a denied network (not the node-local DNS cache) inside
    /// one of the source's external networks, on a port that network opens, and how many of them
    /// the engine allowed.
    carved: usize,
    carved_allowed: usize,
}

impl Counts {
    fn add(&mut self, o: &Counts) {
        self.verdicts += o.verdicts;
        self.refused += o.refused;
        self.adversarial += o.adversarial;
        self.adversarial_admitted += o.adversarial_admitted;
        self.from_attackers += o.from_attackers;
        self.consented += o.consented;
        self.consented_admitted += o.consented_admitted;
        self.tenant_admitted += o.tenant_admitted;
        self.carved += o.carved;
        self.carved_allowed += o.carved_allowed;
    }
}

/// Checks one world; returns what it showed.
fn check_world(input: &Input) -> Counts {
    let settings = &input.settings;
    let denied = denied_networks(settings);
    let svcs: Vec<Svc> = input.microservices.iter().map(|m| intent_of(m, &input.classes, &denied)).collect();

    // Render as `flotilla render` does; a service with an external network inside a denied one
    // is refused by the policy, naming that network, and writes nothing.
    let world = World {
        microservices: input.microservices.iter().cloned().map(Arc::new).collect(),
        database_classes: input.classes.iter().cloned().map(Arc::new).collect(),
        settings: settings.clone(),
        foreign_ingresses: Vec::new(),
    };
    let mut values = Vec::new();
    let mut counts = Counts::default();
    for (ms, s) in input.microservices.iter().zip(&svcs) {
        match (preview(ms, &world), &s.refused) {
            (Ok(v), None) => values.extend(v),
            (Err(e), None) => panic!("{}: {}/{}: {e}", input.name, s.ns, s.name),
            (Ok(_), Some(net)) => {
                panic!("{}: {}/{} has an external network inside {net}, yet it renders", input.name, s.ns, s.name)
            }
            (Err(e), Some(net)) => {
                assert!(
                    e.0.iter().all(|f| f.reason == Some(POLICY_DENIED))
                        && e.0.iter().any(|f| f.path.ends_with(".external.cidr") && f.message.contains(net.as_str())),
                    "{}: {}/{} must be refused by the policy for reaching into {net}, not: {e}",
                    input.name,
                    s.ns,
                    s.name
                );
                counts.refused += 1;
            }
        }
    }
    let policies: Vec<&Value> = values.iter().filter(|v| v["kind"] == "NetworkPolicy").collect();

    let intent = Intent { svcs: &svcs, settings, denied };

    // Peers.
    let mut peers: Vec<Peer> = Vec::new();
    let pod = |peers: &mut Vec<Peer>, ns: &str, name: &str, labels: Labels, role: Role| {
        let id = format!("{ns}/{name}");
        if peers.iter().any(|p| p.id == id) {
            return;
        }
        let n = peers.len() + 1;
        let ip = format!("10.244.{}.{}", n / 250, n % 250 + 1);
        peers.push(Peer { id, ip, ns: Some(ns.to_string()), labels, role });
    };
    for (i, s) in svcs.iter().enumerate().filter(|(_, s)| s.refused.is_none()) {
        let deployment = find_child(&values, "Deployment", &s.ns, &s.name);
        let labels = template_labels(deployment);
        assert_eq!(labels.get(SERVICE_LABEL), Some(&s.name), "{}: {}/{}'s pods", input.name, s.ns, s.name);
        pod(&mut peers, &s.ns, &s.name, labels, Role::Service(i));
        match &s.db {
            Some(Db::Embedded { .. }) => {
                let sts = find_child(&values, "StatefulSet", &s.ns, &format!("{}-db", s.name));
                pod(&mut peers, &s.ns, &format!("{}-db-0", s.name), template_labels(sts), Role::Database(i));
            }
            Some(Db::Claim { labels: Some(l), .. }) => {
                pod(&mut peers, &s.ns, &format!("{}-db-1", s.name), l.clone(), Role::ClaimDb(i));
            }
            _ => {}
        }
    }
    let elsewhere = "elsewhere";
    let mut namespaces: BTreeSet<String> = svcs.iter().map(|s| s.ns.clone()).collect();
    let allow_namespaces: BTreeSet<String> =
        svcs.iter().flat_map(|s| s.allow_from.iter().map(|a| a.ns.clone())).collect();
    namespaces.extend(allow_namespaces.iter().cloned());
    namespaces.extend([settings.dns_namespace.clone(), settings.ingress_namespace.clone(), elsewhere.into()]);
    pod(&mut peers, &settings.dns_namespace, "kube-dns", settings.dns_pod_labels.clone(), Role::Pod);
    pod(
        &mut peers,
        &settings.ingress_namespace,
        "controller",
        Labels::from([("app.kubernetes.io/name".into(), "ingress-nginx".into())]),
        Role::Pod,
    );
    for ns in &namespaces {
        pod(&mut peers, ns, "stranger", Labels::from([("app".into(), "stranger".into())]), Role::Pod);
    }
    // Pods of the services some service depends on that do not exist yet, as they will be labelled.
    for s in &svcs {
        for (ns, name, _) in &s.deps {
            if intent.find(ns, name).is_none() {
                let labels = Labels::from([(SERVICE_LABEL.into(), name.clone())]);
                pod(&mut peers, ns, &format!("{name}-pending"), labels, Role::Pod);
            }
        }
    }
    // Pods an allowFrom entry names (its selector's labels and a named service's label) where no
    // service of that name runs in that namespace (a pod with a running one's label is one of its
    // pods, which its policy selects).
    let mut k = 0;
    for t in &svcs {
        for a in &t.allow_from {
            for name in a.services.iter().flatten() {
                if svcs.iter().any(|u| u.refused.is_none() && u.ns == a.ns && &u.name == name) {
                    continue;
                }
                let mut labels = a.selector.as_ref().map(labels_matching).unwrap_or_default();
                labels.insert(SERVICE_LABEL.into(), name.clone());
                if !peers.iter().any(|p| p.ns.as_deref() == Some(a.ns.as_str()) && p.labels == labels) {
                    k += 1;
                    pod(&mut peers, &a.ns, &format!("named-{name}-{k}"), labels, Role::Pod);
                }
            }
        }
    }
    // Pods each allowFrom selector admits, in its namespace and in the others.
    let selectors: Vec<Labels> = svcs
        .iter()
        .flat_map(|s| s.allow_from.iter().filter_map(|a| a.selector.as_ref().map(labels_matching)))
        .chain([
            Labels::from([("team".into(), "red".into())]),
            Labels::from([("team".into(), "green".into()), ("tier".into(), "web".into())]),
        ])
        .collect();
    for ns in allow_namespaces.iter().map(String::as_str).chain([elsewhere]) {
        for (k, l) in selectors.iter().enumerate() {
            if !peers.iter().any(|p| p.ns.as_deref() == Some(ns) && &p.labels == l) {
                pod(&mut peers, ns, &format!("selected-{k}"), l.clone(), Role::Pod);
            }
        }
    }
    // Look-alikes in another namespace: a service's and a database's labels, not their namespace.
    for (i, s) in svcs.iter().enumerate().filter(|(_, s)| s.refused.is_none()) {
        let labels = peers.iter().find(|p| p.role == Role::Service(i)).unwrap().labels.clone();
        pod(&mut peers, elsewhere, &format!("like-{}", s.name), labels, Role::Pod);
        let db = peers.iter().find(|p| matches!(p.role, Role::Database(j) | Role::ClaimDb(j) if j == i));
        if let Some(db) = db {
            let labels = db.labels.clone();
            pod(&mut peers, elsewhere, &format!("like-{}-db", s.name), labels, Role::Pod);
        }
    }
    // Addresses outside the cluster: in and around every external and every denied network (the
    // IPv6 ones when some external network is IPv6), and the clouds' metadata service.
    let mut ips: BTreeSet<String> = BTreeSet::from(["8.8.8.8".to_string(), "169.254.169.254".to_string()]);
    let v6 = svcs.iter().any(|s| s.externals.iter().any(|(_, c, _)| c.v6));
    for s in &svcs {
        for (_, cidr, _) in &s.externals {
            let (inside, outside) = cidr.probes();
            ips.extend(inside);
            ips.extend(outside);
        }
    }
    for (text, cidr) in &intent.denied {
        // IPv4-mapped addresses are IPv4 addresses to the engine (Go's net.IP), which no IPv6
        // network holds: only the metadata service's is asked about, below.
        if (cidr.v6 && !v6) || text.starts_with("::ffff:") {
            continue;
        }
        let (inside, outside) = cidr.probes();
        ips.extend(inside);
        ips.extend(outside);
    }
    if v6 {
        ips.extend(["fe80::a9fe:a9fe".to_string(), "::ffff:169.254.169.254".to_string()]);
    }
    if let Some(ip) = &settings.node_local_dns {
        let c = Cidr::parse(&format!("{ip}/32"));
        ips.insert(ip.clone());
        ips.extend(c.probes().1);
    }
    for ip in ips {
        assert!(!ip.starts_with("10.244."), "{}: external address {ip} is in the pod network", input.name);
        peers.push(Peer { id: format!("ip:{ip}"), ip, ns: None, labels: Labels::new(), role: Role::External });
    }

    // Ports: every declared one, TCP and UDP (and SCTP where declared), plus one nobody declares.
    let mut numbers: BTreeSet<i32> = BTreeSet::from([53, Svc::default_port().number]);
    let mut sctp: BTreeSet<i32> = BTreeSet::new();
    for s in &svcs {
        for p in &s.ports {
            numbers.insert(p.number);
            if p.proto == Proto::Sctp {
                sctp.insert(p.number);
            }
        }
        match &s.db {
            Some(Db::Embedded { port }) | Some(Db::Claim { port: Some(port), .. }) => {
                numbers.insert(*port);
            }
            _ => {}
        }
        for (_, _, ports) in &s.externals {
            numbers.extend(ports.iter().flatten());
        }
    }
    let undeclared = (7777..).find(|n| !numbers.contains(n)).unwrap();
    numbers.insert(undeclared);
    let mut port_protos: Vec<(i32, Proto)> = Vec::new();
    for &n in &numbers {
        port_protos.push((n, Proto::Tcp));
        port_protos.push((n, Proto::Udp));
        if sctp.contains(&n) {
            port_protos.push((n, Proto::Sctp));
        }
    }

    // Queries.
    let mut queries = Vec::new();
    let mut keys = Vec::new();
    for (a, src) in peers.iter().enumerate() {
        for (b, dst) in peers.iter().enumerate() {
            // Between two peers that no Flotilla policy selects, everything is allowed on both
            // sides; a policy selecting one of them by mistake shows on its pairs with the others.
            let managed = |p: &Peer| matches!(p.role, Role::Service(_) | Role::Database(_));
            if a == b || !(managed(src) || managed(dst)) {
                continue;
            }
            for &(port, proto) in &port_protos {
                let port_name = match dst.role {
                    Role::Service(j) => svcs[j]
                        .ports
                        .iter()
                        .find(|p| p.number == port && p.proto == proto)
                        .map(|p| p.name.clone())
                        .unwrap_or_default(),
                    _ => String::new(),
                };
                queries.push(json!({"src": src.id, "dst": dst.id, "port": port, "portName": port_name, "protocol": proto.name()}));
                keys.push((a, b, port, proto));
            }
        }
    }
    let peer_json: serde_json::Map<String, Value> = peers
        .iter()
        .map(|p| {
            let v = match &p.ns {
                Some(ns) => json!({
                    "ip": p.ip,
                    "namespace": ns,
                    "namespaceLabels": {"kubernetes.io/metadata.name": ns},
                    "podLabels": p.labels,
                }),
                None => json!({"ip": p.ip}),
            };
            (p.id.clone(), v)
        })
        .collect();
    let verdicts = ask_engine(&json!({"policies": policies, "peers": peer_json, "queries": queries}));
    assert_eq!(verdicts.len(), keys.len(), "{}: one verdict per query", input.name);

    // Compare.
    let mut disagreements = Vec::new();
    let mut allowed = 0;
    for (&(a, b, port, proto), v) in keys.iter().zip(&verdicts) {
        let (src, dst) = (&peers[a], &peers[b]);
        let want_egress = intent.egress(src, dst, port, proto);
        let want_ingress = intent.ingress(src, dst, port, proto);
        if want_egress.is_some() && want_ingress.is_some() {
            allowed += 1;
        }
        match intent.cross_tenant_dependent(src, dst) {
            Some(false) => {
                counts.adversarial += 1;
                counts.adversarial_admitted += usize::from(v.ingress);
                if let Role::Service(i) = src.role
                    && svcs[i].ns.starts_with("attacker-")
                {
                    counts.from_attackers += 1;
                }
            }
            Some(true) => {
                let Role::Service(j) = dst.role else { unreachable!() };
                if svcs[j].declares(port, proto) {
                    counts.consented += 1;
                    counts.consented_admitted += usize::from(v.ingress);
                }
            }
            None => {}
        }
        if let (Role::Service(i), Role::Service(j)) = (src.role, dst.role) {
            let (s, t) = (&svcs[i], &svcs[j]);
            let asked = s.deps.iter().any(|(ns, name, want)| {
                let p = t.port(want.as_deref());
                (ns, name) == (&t.ns, &t.name) && p.number == port && p.proto == proto
            });
            if s.ns != t.ns && intent.same_tenant(&s.ns, &t.ns) && asked && v.ingress {
                counts.tenant_admitted += 1;
            }
        }
        if let Role::Service(i) = src.role
            && dst.role == Role::External
            && proto == Proto::Tcp
            && intent.denied.iter().any(|(_, d)| d.contains(&dst.ip))
            && settings.node_local_dns.as_deref() != Some(dst.ip.as_str())
            && svcs[i]
                .externals
                .iter()
                .any(|(_, c, ports)| c.contains(&dst.ip) && ports.as_ref().is_none_or(|ps| ps.contains(&port)))
        {
            counts.carved += 1;
            counts.carved_allowed += usize::from(v.egress);
        }
        for (direction, engine, want, side) in
            [("egress", v.egress, &want_egress, &src.id), ("ingress", v.ingress, &want_ingress, &dst.id)]
        {
            if engine != want.is_some() {
                let kind =
                    if engine { "HOLE (engine allows, intent denies)" } else { "BREAK (engine denies, intent allows)" };
                let why = want.as_ref().map(|w| format!(" because {w}")).unwrap_or_default();
                disagreements.push(format!(
                    "{kind}: {} -> {} {port}/{}, {direction} policy of {side}{why}",
                    src.id,
                    dst.id,
                    proto.name()
                ));
            }
        }
    }
    println!(
        "{}: {} verdicts compared ({} peers, {} port/protocols, {} NetworkPolicies; {allowed} allowed), {} disagreements",
        input.name,
        verdicts.len(),
        peers.len(),
        port_protos.len(),
        policies.len(),
        disagreements.len()
    );
    assert!(
        disagreements.is_empty(),
        "{}: the NetworkPolicy engine and the specs' intent disagree on {} verdicts:\n{}",
        input.name,
        disagreements.len(),
        disagreements.join("\n")
    );
    counts.verdicts = verdicts.len();
    counts
}

// ---------------------------------------------------------------------------------------------
// Worlds

fn example_worlds() -> Vec<Input> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&root)
        .expect("examples/")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    assert!(!dirs.is_empty(), "no examples under {}", root.display());
    dirs.into_iter()
        .map(|dir| {
            let m = load(std::slice::from_ref(&dir), None).unwrap_or_else(|e| panic!("{} loads: {e:?}", dir.display()));
            Input {
                name: format!("examples/{}", dir.file_name().unwrap().to_string_lossy()),
                microservices: m.microservices,
                classes: m.database_classes,
                settings: Settings::default(),
            }
        })
        .collect()
}

const CLASSES: &str = include_str!("fixtures/database-classes.yaml");

/// A service of the attacker namespace: its name, pod labels, dependencies, and the planned
/// services (indices) it depends on.
struct Attacker {
    name: &'static str,
    labels: serde_json::Map<String, Value>,
    deps: Vec<Value>,
    victims: Vec<usize>,
}

/// A generated world: several namespaces, services calling each other with and without ports,
/// allowFrom by namespace, pod selector and service names, external networks with and without
/// ports (some holding denied networks), databases of every provisioner, ingresses; a policy
/// whose tenants join some of the namespaces and that now and then denies more networks; an
/// attacker namespace whose services call other teams' services (existing or not, with and
/// without a port; one now and then reaching for the metadata service, which the policy refuses),
/// some of them consented to by name and selector; every third seed with a NodeLocal DNSCache and
/// another ingress namespace.
fn generated_world(seed: u64) -> Input {
    let mut rng = Rng(seed);
    let ns_pool = ["alpha", "beta", "gamma", "delta"];
    let name_pool =
        ["api", "web", "auth", "billing", "search", "cart", "ledger", "mailer", "queue", "cache", "report", "gateway"];
    let port_pool: [(&str, i32, &str); 9] = [
        ("http", 8080, "TCP"),
        ("grpc", 9000, "TCP"),
        ("metrics", 9090, "TCP"),
        ("admin", 8081, "TCP"),
        ("syslog", 5140, "UDP"),
        ("stats", 8125, "UDP"),
        ("signal", 3868, "SCTP"),
        ("web", 80, "TCP"),
        ("alt", 8080, "UDP"),
    ];
    // Neither in the pod network (10.244.0.0/16) nor inside a denied network; the last two hold
    // 169.254.0.0/16 and fe80::/10, and 100.64.0.0/10, 198.18.0.0/15 and ::/0 the networks some
    // worlds' policy denies, which they must not reach.
    let cidr_pool = [
        "203.0.113.0/24",
        "198.51.100.25/32",
        "192.0.2.128/25",
        "100.64.0.0/10",
        "172.16.0.0/12",
        "198.18.0.0/15",
        "2001:db8::/32",
        "128.0.0.0/1",
        "::/0",
    ];
    let selector_pool = [
        json!({"matchLabels": {"team": "red"}}),
        json!({"matchLabels": {"app.kubernetes.io/name": "prometheus"}}),
        json!({"matchExpressions": [{"key": "team", "operator": "In", "values": ["blue", "green"]}]}),
        json!({"matchExpressions": [{"key": "tier", "operator": "Exists"}]}),
        // NotIn with Exists on the same key: cyclonus v0.5.6 takes `NotIn` to fail on a pod without
        // the key, where Kubernetes (k8s.io/apimachinery/pkg/labels) takes it to match; with
        // Exists both agree, and the intent here keeps Kubernetes' meaning.
        json!({"matchLabels": {"team": "green"}, "matchExpressions": [
            {"key": "tier", "operator": "NotIn", "values": ["db"]},
            {"key": "tier", "operator": "Exists"},
        ]}),
        json!({"matchExpressions": [{"key": "team", "operator": "DoesNotExist"}]}),
        json!({}),
    ];
    let classes = [None, Some("mysql"), Some("redis"), Some("cnpg"), Some("pgo"), Some("xp")];
    let pod_labels = |rng: &mut Rng| {
        let mut labels = serde_json::Map::new();
        if rng.chance(70) {
            labels.insert("team".into(), json!(rng.pick(&["red", "blue", "green"])));
        }
        if rng.chance(30) {
            labels.insert("tier".into(), json!("web"));
        }
        labels
    };

    // Services and their ports first, so that callers can name a callee's port.
    let n_ns = 2 + rng.below(3);
    let mut nss: Vec<&str> = ns_pool.to_vec();
    rng.shuffle(&mut nss);
    nss.truncate(n_ns);
    nss.sort();
    // namespace, name, `spec.ports` (None: the default), the port names callers may ask for.
    type Planned = (String, String, Option<Vec<Value>>, Vec<String>);
    let mut services: Vec<Planned> = Vec::new();
    for ns in &nss {
        let mut names = name_pool.to_vec();
        rng.shuffle(&mut names);
        for name in names.iter().take(2 + rng.below(4)) {
            let ports = if rng.chance(30) {
                None
            } else {
                let mut pool = port_pool.to_vec();
                rng.shuffle(&mut pool);
                let mut chosen: Vec<(&str, i32, &str)> = Vec::new();
                for p in pool {
                    if chosen.len() < 1 + rng.below(3) && !chosen.iter().any(|c| c.1 == p.1 && c.2 == p.2) {
                        chosen.push(p);
                    }
                }
                Some(chosen)
            };
            let names: Vec<String> = match &ports {
                None => vec!["http".into()],
                Some(ps) => ps.iter().map(|p| p.0.to_string()).collect(),
            };
            let ports = ports.map(|ps| {
                ps.iter()
                    .map(|(n, p, proto)| {
                        if *proto == "TCP" && rng.chance(50) {
                            json!({"name": n, "port": p})
                        } else {
                            json!({"name": n, "port": p, "protocol": proto})
                        }
                    })
                    .collect()
            });
            services.push((ns.to_string(), name.to_string(), ports, names));
        }
    }

    // The platform's policy: tenants joining two of the namespaces (and one joining the attacker's
    // namespace with `edge`, which only allowFrom entries name), networks denied besides the
    // built-in ones.
    let attacker_ns = format!("attacker-{}", 1 + rng.below(9));
    let mut tenants = Vec::new();
    if rng.chance(60) {
        tenants.push(json!({"name": "team-a", "namespaces": [nss[0], nss[1], "team-a-tools"]}));
    }
    if nss.len() == 4 && rng.chance(50) {
        tenants.push(json!({"name": "team-b", "namespaces": [nss[2], nss[3]]}));
    }
    if rng.chance(30) {
        tenants.push(json!({"name": "outsiders", "namespaces": [attacker_ns, "edge"]}));
    }
    let platform_denied: Vec<&str> =
        if rng.chance(50) { vec!["100.100.100.200/32", "198.18.0.0/16", "fd00:ec2::254/128"] } else { Vec::new() };

    // The attackers: services of another tenant calling other teams' services, that exist or not
    // yet, with a port name, a wrong one or none.
    let mut attacker_names = ["probe", "scraper", "web", "api", "intruder"];
    rng.shuffle(&mut attacker_names);
    let mut attackers: Vec<Attacker> = Vec::new();
    for &name in attacker_names.iter().take(1 + rng.below(3)) {
        let labels = pod_labels(&mut rng);
        let mut deps = Vec::new();
        let mut victims = Vec::new();
        // Two dependencies on services of one name are refused (one environment variable).
        let mut called: BTreeSet<String> = BTreeSet::new();
        for _ in 0..1 + rng.below(4) {
            if rng.chance(75) {
                let j = rng.below(services.len());
                let (vns, vname, _, vports) = &services[j];
                if !called.insert(vname.clone()) {
                    continue;
                }
                let mut d = json!({"service": vname, "namespace": vns});
                match rng.below(10) {
                    0..4 => {}
                    4..9 => d["port"] = json!(rng.pick(vports)),
                    _ => d["port"] = json!("nope"),
                }
                deps.push(d);
                victims.push(j);
            } else {
                let vname = *rng.pick(&["vault", "ghost", "payroll"]);
                if !called.insert(vname.to_string()) {
                    continue;
                }
                let mut d = json!({"service": vname, "namespace": rng.pick(&nss)});
                if rng.chance(40) {
                    d["port"] = json!(rng.pick(&["grpc", "http"]));
                }
                deps.push(d);
            }
        }
        if rng.chance(30) {
            deps.push(json!({"external": {"cidr": rng.pick(&["128.0.0.0/1", "::/0"])}}));
        }
        attackers.push(Attacker { name, labels, deps, victims });
    }
    // One that asks for the metadata service (or a network the platform denies) as well: refused.
    if rng.chance(50) {
        let mut cidrs = vec!["169.254.169.254/32", "169.254.0.0/16", "fe80::/64"];
        cidrs.extend(&platform_denied);
        let j = rng.below(services.len());
        let deps = vec![
            json!({"external": {"cidr": rng.pick(&cidrs), "ports": [80]}}),
            json!({"service": services[j].1, "namespace": services[j].0}),
        ];
        attackers.push(Attacker { name: "imds", labels: serde_json::Map::new(), deps, victims: vec![j] });
    }

    let mut docs = vec![CLASSES.to_string()];
    for (i, (ns, name, ports, port_names)) in services.iter().enumerate() {
        let mut spec = json!({"image": format!("registry.example/{name}:1")});
        if let Some(ports) = ports {
            spec["ports"] = json!(ports);
        }
        let labels = pod_labels(&mut rng);
        if !labels.is_empty() {
            spec["pod"] = json!({"labels": labels});
        }
        if rng.chance(40) {
            let mut db = json!({"storage": "2Gi"});
            if let Some(c) = rng.pick(&classes) {
                db["class"] = json!(c);
            }
            spec["database"] = db;
        }
        let mut deps = Vec::new();
        let mut called: BTreeSet<&str> = BTreeSet::new();
        for _ in 0..rng.below(4) {
            let j = rng.below(services.len());
            let (cns, cname, _, cports) = &services[j];
            if j == i || !called.insert(cname.as_str()) {
                continue;
            }
            let mut d = json!({"service": cname});
            if cns != ns || rng.chance(30) {
                d["namespace"] = json!(cns);
            }
            match rng.below(10) {
                0..5 => {}
                5..9 => d["port"] = json!(rng.pick(cports)),
                _ => d["port"] = json!("nope"),
            }
            deps.push(d);
        }
        if rng.chance(15) && called.insert("ghost") {
            deps.push(json!({"service": "ghost", "namespace": rng.pick(&nss)}));
        }
        for _ in 0..rng.below(3) {
            let mut ext = json!({"cidr": rng.pick(&cidr_pool)});
            if rng.chance(60) {
                let mut ps = vec![*rng.pick(&[443, 587, 8443, 53, 5432])];
                if rng.chance(40) {
                    ps.push(*rng.pick(&[25, 9000, 443]));
                }
                ps.dedup();
                ext["ports"] = json!(ps);
            }
            deps.push(json!({"external": ext}));
        }
        if !deps.is_empty() {
            spec["dependencies"] = json!(deps);
        }
        let mut expose = serde_json::Map::new();
        if rng.chance(25) {
            let mut ing = json!({"host": format!("{name}.{ns}.example.com"), "className": "nginx"});
            if rng.chance(50) {
                ing["port"] = json!(rng.pick(port_names));
            }
            expose.insert("ingress".into(), ing);
        }
        let mut allow: Vec<Value> = (0..rng.below(3))
            .map(|_| {
                let ns_choices: Vec<&str> = nss.iter().copied().chain(["monitoring", "edge"]).collect();
                let from = *rng.pick(&ns_choices);
                let mut a = json!({"namespace": from});
                if rng.chance(70) {
                    a["podSelector"] = rng.pick(&selector_pool).clone();
                }
                if rng.chance(30) {
                    // Some services of that namespace, and some that do not exist.
                    let mut names: Vec<&str> = services
                        .iter()
                        .filter(|s| s.0 == from)
                        .map(|s| s.1.as_str())
                        .chain(["vault", "prometheus"])
                        .collect();
                    rng.shuffle(&mut names);
                    names.truncate(1 + rng.below(2));
                    a["services"] = json!(names);
                }
                a
            })
            .collect();
        // Consent to some of the attackers that call it, by name (with a selector now and then,
        // which their pods may not match), and now and then to one that does not call it.
        for at in attackers.iter().filter(|a| a.victims.contains(&i)) {
            if rng.chance(60) {
                let mut names = vec![at.name];
                if rng.chance(30) {
                    names.push("nobody");
                }
                let mut a = json!({"namespace": attacker_ns, "services": names});
                if rng.chance(35) {
                    a["podSelector"] = rng.pick(&selector_pool).clone();
                }
                allow.push(a);
            }
        }
        if rng.chance(10) {
            allow.push(json!({"namespace": attacker_ns, "services": [rng.pick(&attackers).name]}));
        }
        if !allow.is_empty() {
            expose.insert("allowFrom".into(), json!(allow));
        }
        if !expose.is_empty() {
            spec["expose"] = Value::Object(expose);
        }
        let ms = json!({
            "apiVersion": "flotilla.dev/v1alpha1",
            "kind": "Microservice",
            "metadata": {"name": name, "namespace": ns},
            "spec": spec,
        });
        docs.push(serde_yaml_ng::to_string(&ms).unwrap());
    }
    for at in &attackers {
        let mut spec = json!({"image": format!("registry.example/{}:1", at.name)});
        if !at.labels.is_empty() {
            spec["pod"] = json!({"labels": at.labels});
        }
        if !at.deps.is_empty() {
            spec["dependencies"] = json!(at.deps);
        }
        let ms = json!({
            "apiVersion": "flotilla.dev/v1alpha1",
            "kind": "Microservice",
            "metadata": {"name": at.name, "namespace": attacker_ns},
            "spec": spec,
        });
        docs.push(serde_yaml_ng::to_string(&ms).unwrap());
    }

    let text = docs.join("---\n");
    let name = format!("generated/seed-{seed}");
    let mut m = Manifests::default();
    let mut errors = Vec::new();
    load_str(&text, Path::new(&name), None, &mut m, &mut errors);
    assert!(errors.is_empty(), "{name} is not a valid world: {errors:#?}\n{text}");
    let policy = json!({"tenants": tenants, "egress": {"deniedCidrs": platform_denied}});
    let policy = Policy::from_yaml(&policy.to_string()).unwrap_or_else(|e| panic!("{name}: {e}"));
    let mut settings = if seed % 3 == 2 {
        Settings {
            node_local_dns: Some("169.254.20.10".into()),
            ingress_namespace: "ingress-public".into(),
            ..Settings::default()
        }
    } else {
        Settings::default()
    };
    settings.policy = Arc::new(policy);
    Input { name, microservices: m.microservices, classes: m.database_classes, settings }
}

// ---------------------------------------------------------------------------------------------
// Tests

#[test]
fn example_worlds_policies_match_their_intent() {
    let mut total = Counts::default();
    for world in example_worlds() {
        total.add(&check_world(&world));
    }
    println!("examples: {} verdicts compared", total.verdicts);
}

/// Every generated world agrees with its intent; over all of them, no dependent of another tenant
/// reaches a pod of a service that did not consent to it, while consented ones and dependents of
/// the same tenant in other namespaces are admitted, and the denied networks are carved out of the
/// external networks that hold them.
#[test]
fn generated_worlds_policies_match_their_intent() {
    let mut t = Counts::default();
    for seed in 1..=16 {
        t.add(&check_world(&generated_world(seed)));
    }
    println!("generated worlds: {} verdicts compared, {} services refused by the policy", t.verdicts, t.refused);
    println!(
        "adversarial callers (another tenant, no consent): {} of {} ingress verdicts admitted by the engine \
         ({} of them from attacker namespaces)",
        t.adversarial_admitted, t.adversarial, t.from_attackers
    );
    println!(
        "consented callers of another tenant: {} of {} ingress verdicts admitted",
        t.consented_admitted, t.consented
    );
    println!("dependents in another namespace of their tenant: {} ingress verdicts admitted", t.tenant_admitted);
    println!(
        "denied networks inside an external network: {} of {} egress verdicts allowed",
        t.carved_allowed, t.carved
    );
    assert_eq!(t.adversarial_admitted, 0, "a dependent of another tenant reached a service that did not consent");
    assert!(t.adversarial > 0 && t.from_attackers > 0, "no adversarial caller was asked about: {t:?}");
    assert!(t.consented_admitted > 0 && t.consented_admitted == t.consented, "consented callers: {t:?}");
    assert!(t.tenant_admitted > 0, "no dependent of the same tenant in another namespace was admitted: {t:?}");
    assert!(t.carved > 0 && t.carved_allowed == 0, "denied networks: {t:?}");
    assert!(t.refused > 0, "no world asked for a denied network: {t:?}");
}
