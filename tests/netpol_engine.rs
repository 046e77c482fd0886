//! The rendered NetworkPolicies, judged by an independent engine against the intent of the specs.
//!
//! Each world (every example under `examples/`, plus seeded generated worlds) is rendered as
//! `flotilla render` renders it. The intent is computed here from the Microservice and
//! DatabaseClass specs alone (DESIGN.md §1-2), never from the rendered policies: a service's pods
//! reach the cluster DNS, their own database, the services they depend on (on the port asked
//! for) and their external networks, nothing else; they are reached by their dependents (on that
//! port), the ingress controller's namespace (with `expose.ingress`, on its port) and the pods
//! `expose.allowFrom` names (on every declared port), nothing else; an embedded database is
//! reached only by its owner on its engine's port and reaches nothing. A set of peers (every
//! service's and database's pods with the labels their rendered templates give them, DNS, the
//! ingress controller, strangers, look-alike pods in other namespaces, addresses inside and
//! outside every CIDR) is then queried for every source × destination × port × protocol, and
//! cyclonus's matcher (`tests/netpol-engine`, a Go program built once into the cache by its
//! `build.sh`) must agree with the intent on every verdict, ingress and egress separately.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, OnceLock};

use flotilla::api::databaseclass::{Engine, Provisioner};
use flotilla::api::{DatabaseClass, Microservice, Protocol};
use flotilla::manifest::{Manifests, load, load_str};
use flotilla::render::{Settings, World, preview};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use serde_json::{Value, json};

#[path = "support/rng.rs"]
mod rng;
#[path = "support/tool.rs"]
mod tool;

use rng::Rng;

type Labels = BTreeMap<String, String>;

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
        match ip.parse::<IpAddr>().expect("an address") {
            IpAddr::V4(a) => Cidr { net: u32::from(a) as u128, bits: 32 - prefix, v6: false },
            IpAddr::V6(a) => Cidr { net: u128::from(a), bits: 128 - prefix, v6: true },
        }
    }

    fn width(&self) -> u32 {
        if self.v6 { 128 } else { 32 }
    }

    fn last(&self) -> u128 {
        if self.bits == 0 { self.net } else { self.net | (u128::MAX >> (128 - self.bits)) }
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
    allow_from: Vec<(String, Option<LabelSelector>)>,
    db: Option<Db>,
}

impl Svc {
    /// The port a caller asking for `name` reaches: the named one, else the first (as documented
    /// on `Dependency.port`: "its first port when absent").
    fn port(&self, name: Option<&str>) -> &Port {
        name.and_then(|n| self.ports.iter().find(|p| p.name == n)).unwrap_or(&self.ports[0])
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

fn intent_of(ms: &Microservice, classes: &[DatabaseClass]) -> Svc {
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
        ports.push(Port { name: "http".into(), number: 8080, proto: Proto::Tcp });
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
    Svc {
        ns,
        name,
        ports,
        deps,
        externals,
        ingress: expose.ingress.map(|i| i.port),
        allow_from: expose.allow_from.into_iter().flatten().map(|a| (a.namespace, a.pod_selector)).collect(),
        db,
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
}

impl Intent<'_> {
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
        if let Role::Service(j) = dst.role {
            let t = &self.svcs[j];
            for (ns, name, want) in &s.deps {
                let p = t.port(want.as_deref());
                if (ns, name) == (&t.ns, &t.name) && p.number == port && p.proto == proto {
                    return Some(format!("dependency on {ns}/{name} port {}", p.name));
                }
            }
        }
        if dst.role == Role::External && proto == Proto::Tcp {
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
        if let Role::Service(i) = src.role {
            let s = &self.svcs[i];
            for (ns, name, want) in &s.deps {
                let p = t.port(want.as_deref());
                if (ns, name) == (&t.ns, &t.name) && p.number == port && p.proto == proto {
                    return Some(format!("dependent {}/{} on port {}", s.ns, s.name, p.name));
                }
            }
        }
        let src_ns = src.ns.as_deref()?;
        if let Some(want) = &t.ingress {
            let p = t.port(want.as_deref());
            if src_ns == self.settings.ingress_namespace && p.number == port && p.proto == proto {
                return Some("the ingress controller's namespace".into());
            }
        }
        for (ns, sel) in &t.allow_from {
            if src_ns == ns && sel.as_ref().is_none_or(|s| selector_matches(s, &src.labels)) && t.declares(port, proto)
            {
                return Some(format!("allowFrom {ns} {sel:?}"));
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

/// Checks one world; returns the number of verdicts compared.
fn check_world(input: &Input) -> usize {
    // Render as `flotilla render` does.
    let world = World {
        microservices: input.microservices.iter().cloned().map(Arc::new).collect(),
        database_classes: input.classes.iter().cloned().map(Arc::new).collect(),
        settings: input.settings.clone(),
        foreign_ingresses: Vec::new(),
    };
    let mut values = Vec::new();
    for ms in &input.microservices {
        values.extend(preview(ms, &world).unwrap_or_else(|e| panic!("{}: {e}", input.name)));
    }
    let policies: Vec<&Value> = values.iter().filter(|v| v["kind"] == "NetworkPolicy").collect();

    let svcs: Vec<Svc> = input.microservices.iter().map(|m| intent_of(m, &input.classes)).collect();
    let settings = &input.settings;
    let intent = Intent { svcs: &svcs, settings };

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
    for (i, s) in svcs.iter().enumerate() {
        let deployment = find_child(&values, "Deployment", &s.ns, &s.name);
        pod(&mut peers, &s.ns, &s.name, template_labels(deployment), Role::Service(i));
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
        svcs.iter().flat_map(|s| s.allow_from.iter().map(|(ns, _)| ns.clone())).collect();
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
    // Pods each allowFrom selector admits, in its namespace and in the others.
    let selectors: Vec<Labels> = svcs
        .iter()
        .flat_map(|s| s.allow_from.iter().filter_map(|(_, sel)| sel.as_ref().map(labels_matching)))
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
    for (i, s) in svcs.iter().enumerate() {
        let labels = peers.iter().find(|p| p.role == Role::Service(i)).unwrap().labels.clone();
        pod(&mut peers, elsewhere, &format!("like-{}", s.name), labels, Role::Pod);
        let db = peers.iter().find(|p| matches!(p.role, Role::Database(j) | Role::ClaimDb(j) if j == i));
        if let Some(db) = db {
            let labels = db.labels.clone();
            pod(&mut peers, elsewhere, &format!("like-{}-db", s.name), labels, Role::Pod);
        }
    }
    // Addresses outside the cluster.
    let mut ips: BTreeSet<String> = BTreeSet::from(["8.8.8.8".to_string()]);
    for s in &svcs {
        for (_, cidr, _) in &s.externals {
            let (inside, outside) = cidr.probes();
            ips.extend(inside);
            ips.extend(outside);
        }
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
    let mut numbers: BTreeSet<i32> = BTreeSet::from([53]);
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
    verdicts.len()
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

/// A generated world: several namespaces, services calling each other with and without ports,
/// allowFrom by namespace and pod selector, external networks with and without ports, databases
/// of every provisioner, ingresses; every third seed with a NodeLocal DNSCache and another
/// ingress namespace.
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
    let cidr_pool = [
        "203.0.113.0/24",
        "198.51.100.25/32",
        "192.0.2.128/25",
        "100.64.0.0/10",
        "172.16.0.0/12",
        "198.18.0.0/15",
        "2001:db8::/32",
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

    let mut docs = vec![CLASSES.to_string()];
    for (i, (ns, name, ports, port_names)) in services.iter().enumerate() {
        let mut spec = json!({"image": format!("registry.example/{name}:1")});
        if let Some(ports) = ports {
            spec["ports"] = json!(ports);
        }
        let mut labels = serde_json::Map::new();
        if rng.chance(70) {
            labels.insert("team".into(), json!(rng.pick(&["red", "blue", "green"])));
        }
        if rng.chance(30) {
            labels.insert("tier".into(), json!("web"));
        }
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
        let allow: Vec<Value> = (0..rng.below(3))
            .map(|_| {
                let ns_choices: Vec<&str> = nss.iter().copied().chain(["monitoring", "edge"]).collect();
                let mut a = json!({"namespace": rng.pick(&ns_choices)});
                if rng.chance(70) {
                    a["podSelector"] = rng.pick(&selector_pool).clone();
                }
                a
            })
            .collect();
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

    let text = docs.join("---\n");
    let name = format!("generated/seed-{seed}");
    let mut m = Manifests::default();
    let mut errors = Vec::new();
    load_str(&text, Path::new(&name), None, &mut m, &mut errors);
    assert!(errors.is_empty(), "{name} is not a valid world: {errors:#?}\n{text}");
    let settings = if seed % 3 == 2 {
        Settings {
            node_local_dns: Some("169.254.20.10".into()),
            ingress_namespace: "ingress-public".into(),
            ..Settings::default()
        }
    } else {
        Settings::default()
    };
    Input { name, microservices: m.microservices, classes: m.database_classes, settings }
}

// ---------------------------------------------------------------------------------------------
// Tests

#[test]
fn example_worlds_policies_match_their_intent() {
    let mut total = 0;
    for world in example_worlds() {
        total += check_world(&world);
    }
    println!("examples: {total} verdicts compared");
}

#[test]
fn generated_worlds_policies_match_their_intent() {
    let mut total = 0;
    for seed in 1..=8 {
        total += check_world(&generated_world(seed));
    }
    println!("generated worlds: {total} verdicts compared");
}
