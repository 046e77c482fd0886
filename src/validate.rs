//! Pure validation of a Microservice: the second line of defence after the CRD's CEL rules.
//!
//! Every problem is reported with the path of the field at fault, so a user can find it in the
//! file they wrote. The checks never panic, whatever the input.

use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::api::contract::{DATABASE_ENV, dependency_env_name, is_reserved_label};
use crate::api::defaults::parse_quantity;
use crate::api::{MAX_NAME_LEN, Microservice, MicroserviceSpec, Protocol, rules};

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

fn validate_spec(spec: &MicroserviceSpec, name: &str, namespace: Option<&str>, errs: &mut Vec<FieldError>) {
    let mut err = |path: String, msg: String| errs.push(FieldError::new(path, msg));

    if spec.image.trim().is_empty() {
        err("spec.image".into(), "is required: the container image to run".into());
    } else if spec.image.chars().any(char::is_whitespace) {
        err("spec.image".into(), format!("{:?} must not contain whitespace", spec.image));
    }

    if let Some(why) = spec.replicas.and_then(|r| rules::out_of_range(r, 0, rules::MAX_REPLICAS)) {
        err("spec.replicas".into(), why);
    }
    if spec.replicas.is_some() && spec.autoscaling.is_some() {
        err("spec.replicas".into(), rules::REPLICAS_WITH_AUTOSCALING.into());
    }
    if let Some(a) = &spec.autoscaling {
        let min = a.min();
        if let Some(why) = rules::out_of_range(min, 1, rules::MAX_REPLICAS) {
            err("spec.autoscaling.minReplicas".into(), why);
        }
        if let Some(why) = rules::out_of_range(a.max_replicas, 1, rules::MAX_REPLICAS) {
            err("spec.autoscaling.maxReplicas".into(), why);
        }
        if min > a.max_replicas {
            err("spec.autoscaling.minReplicas".into(), format!("{min} {} ({})", rules::MIN_ABOVE_MAX, a.max_replicas));
        }
        if let Some(b) = &a.behavior {
            for (field, rules) in [("scaleUp", &b.scale_up), ("scaleDown", &b.scale_down)] {
                if let Some(r) = rules {
                    scaling_rules(&format!("spec.autoscaling.behavior.{field}"), r, &mut err);
                }
            }
        }
        for (i, m) in a.metrics.iter().flatten().enumerate() {
            let path = format!("spec.autoscaling.metrics[{i}]");
            let given = [
                ("Resource", m.resource.is_some()),
                ("Pods", m.pods.is_some()),
                ("Object", m.object.is_some()),
                ("External", m.external.is_some()),
                ("ContainerResource", m.container_resource.is_some()),
            ];
            match given.iter().find(|(t, _)| *t == m.type_) {
                None => err(
                    format!("{path}.type"),
                    format!("{:?} must be Resource, Pods, Object, External or ContainerResource", m.type_),
                ),
                Some((t, false)) => err(path.clone(), format!("type {t} needs its {} field", lower_first(t))),
                Some(_) => {}
            }
            if given.iter().filter(|(_, set)| *set).count() > 1 {
                err(path.clone(), "must set only the field its type names".into());
            }
            metric_targets(&path, m, &mut err);
        }
        for (field, v) in [("cpu", a.cpu), ("memory", a.memory)] {
            if let Some(why) = v.and_then(|v| rules::out_of_range(v, 1, rules::MAX_UTILIZATION)) {
                err(format!("spec.autoscaling.{field}"), format!("{why} (percent of the request)"));
            }
        }
    }

    // Ports.
    if let Some(ports) = &spec.ports {
        if ports.is_empty() {
            err("spec.ports".into(), "must list at least one port (leave it out for the default http 8080)".into());
        }
        if let Some(why) = rules::too_many(ports.len(), rules::MAX_PORTS) {
            err("spec.ports".into(), why);
        }
        let mut names = BTreeMap::new();
        let mut numbers = BTreeMap::new();
        for (i, p) in ports.iter().enumerate() {
            if let Some(why) = port_name(&p.name) {
                err(format!("spec.ports[{i}].name"), format!("{:?} {why}", p.name));
            }
            if let Some(first) = names.insert(p.name.as_str(), i) {
                err(
                    format!("spec.ports[{i}].name"),
                    format!("{:?}: {}; spec.ports[{first}] has it too", p.name, rules::PORT_NAMES_UNIQUE),
                );
            }
            if let Some(why) = rules::out_of_range(p.port, 1, rules::MAX_PORT) {
                err(format!("spec.ports[{i}].port"), why);
            }
            let proto = p.protocol().as_str();
            if let Some(first) = numbers.insert((p.port, proto), i) {
                err(
                    format!("spec.ports[{i}].port"),
                    format!("{}/{proto} is already used by spec.ports[{first}]", p.port),
                );
            }
        }
    }
    let ports = spec.effective_ports();
    let has_port_name = |n: &str| ports.iter().any(|p| p.name == n);

    if let Some(hc) = &spec.health_check {
        if !hc.path.starts_with('/') {
            err("spec.healthCheck.path".into(), format!("{:?} must start with '/'", hc.path));
        }
        match &hc.port {
            Some(IntOrString::String(n)) if !has_port_name(n) => {
                err("spec.healthCheck.port".into(), format!("{n:?} is not the name of one of spec.ports"));
            }
            Some(IntOrString::Int(n)) if let Some(why) = rules::out_of_range(*n, 1, rules::MAX_PORT) => {
                err("spec.healthCheck.port".into(), why);
            }
            _ => {}
        }
        // HTTP and TCP checks need a TCP port.
        let probed = match &hc.port {
            Some(IntOrString::String(n)) => ports.iter().find(|p| &p.name == n),
            Some(IntOrString::Int(_)) => None,
            None => ports.first(),
        };
        if let Some(p) = probed.filter(|p| p.protocol() != Protocol::TCP) {
            let field = if hc.port.is_some() { "spec.healthCheck.port" } else { "spec.healthCheck" };
            err(
                field.into(),
                format!(
                    "probes port {:?}, which is {}: HTTP and TCP checks need a TCP port (set spec.healthCheck.port)",
                    p.name,
                    p.protocol().as_str()
                ),
            );
        }
        if let Some(path) = &hc.liveness_path
            && !path.starts_with('/')
        {
            err("spec.healthCheck.livenessPath".into(), format!("{path:?} must start with '/'"));
        }
    }

    if let Some(db) = &spec.database {
        if let Some(class) = &db.class
            && let Some(why) = dns1123_subdomain(class)
        {
            err("spec.database.class".into(), format!("{class:?} {why}"));
        }
        if let Some(storage) = &db.storage {
            match parse_quantity(storage) {
                Some(v) if v > 0.0 => {}
                _ => err("spec.database.storage".into(), format!("{storage:?} {}", rules::STORAGE_POSITIVE)),
            }
        }
    }

    // Dependencies.
    for (path, len, max) in [
        ("spec.dependencies", spec.dependencies.as_ref().map_or(0, Vec::len), rules::MAX_PEERS),
        (
            "spec.expose.allowFrom",
            spec.expose.as_ref().and_then(|e| e.allow_from.as_ref()).map_or(0, Vec::len),
            rules::MAX_PEERS,
        ),
    ] {
        if let Some(why) = rules::too_many(len, max) {
            err(path.into(), why);
        }
    }
    if spec.dependencies.as_ref().is_some_and(|d| d.len() > 1000) {
        // Checking each entry of an absurd list costs time and memory for nothing: the count is
        // the error.
        return;
    }
    let mut env_names: BTreeMap<String, String> = BTreeMap::new();
    for (i, d) in spec.dependencies.iter().flatten().enumerate() {
        let path = format!("spec.dependencies[{i}]");
        match (&d.service, &d.external) {
            (Some(_), Some(_)) | (None, None) => {
                err(path.clone(), rules::DEPENDENCY_TARGET.into());
            }
            _ => {}
        }
        let external_ports = d.external.as_ref().and_then(|x| x.ports.as_ref()).map_or(0, Vec::len);
        if let Some(why) = rules::too_many(external_ports, rules::MAX_PORTS) {
            err(format!("{path}.external.ports"), why);
        }
        if let Some(svc) = &d.service {
            if let Some(why) = dns1035_label(svc, 63) {
                err(format!("{path}.service"), format!("{svc:?} {why}"));
            } else {
                let ns = d.namespace.as_deref().or(namespace);
                if svc == name && ns == namespace {
                    err(format!("{path}.service"), format!("{svc:?} is this service itself"));
                }
                let env = dependency_env_name(svc);
                if let Some(first) = env_names.insert(env.clone(), path.clone()) {
                    err(
                        format!("{path}.service"),
                        format!(
                            "{svc:?} would set {env}, which {first} already sets; two dependencies on services of the same name are not supported"
                        ),
                    );
                }
            }
            if let Some(ns) = &d.namespace
                && let Some(why) = dns1123_label(ns, 63)
            {
                err(format!("{path}.namespace"), format!("{ns:?} {why}"));
            }
            if let Some(p) = &d.port
                && let Some(why) = port_name(p)
            {
                err(format!("{path}.port"), format!("{p:?} {why}"));
            }
        } else {
            if d.namespace.is_some() {
                err(format!("{path}.namespace"), rules::NAMESPACE_ONLY_FOR_SERVICE.into());
            }
            if d.port.is_some() {
                err(format!("{path}.port"), rules::PORT_ONLY_FOR_SERVICE.into());
            }
        }
        if let Some(ext) = &d.external {
            if !is_cidr(&ext.cidr) {
                err(format!("{path}.external.cidr"), format!("{:?} {}", ext.cidr, rules::CIDR));
            } else if let Some(network) = cidr_host_bits(&ext.cidr) {
                err(
                    format!("{path}.external.cidr"),
                    format!("{:?} {}; the network is {network}", ext.cidr, rules::CIDR_NETWORK),
                );
            }
            for (j, p) in ext.ports.iter().flatten().enumerate() {
                if let Some(why) = rules::out_of_range(*p, 1, rules::MAX_PORT) {
                    err(format!("{path}.external.ports[{j}]"), why);
                }
            }
        }
    }
    if spec.database.is_some() {
        for name in DATABASE_ENV.iter().map(|(n, _)| *n).chain(["SERVICE_BINDING_ROOT"]) {
            env_names.insert(name.to_string(), "spec.database".to_string());
        }
    }
    let mut seen_env: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, e) in spec.env.iter().flatten().enumerate() {
        let path = format!("spec.env[{i}]");
        if let Some(dep) = env_names.get(&e.name) {
            err(format!("{path}.name"), format!("{} is set by {dep}; choose another name", e.name));
        } else if let Some(first) = seen_env.insert(e.name.as_str(), i) {
            err(format!("{path}.name"), format!("{:?} is already set by spec.env[{first}]", e.name));
        }
        if e.name.is_empty() || e.name.contains('=') || !e.name.chars().all(|c| c.is_ascii_graphic() || c == ' ') {
            err(format!("{path}.name"), format!("{:?} must be printable ASCII characters other than '='", e.name));
        }
        if e.value.as_deref().is_some_and(|v| !v.is_empty()) && e.value_from.is_some() {
            err(path.clone(), "set value or valueFrom, not both".into());
        }
        if let Some(from) = &e.value_from {
            env_source(&format!("{path}.valueFrom"), from, &mut err);
        }
    }
    for (i, e) in spec.env_from.iter().flatten().enumerate() {
        let path = format!("spec.envFrom[{i}]");
        let refs = [
            ("configMapRef", e.config_map_ref.as_ref().map(|r| &r.name)),
            ("secretRef", e.secret_ref.as_ref().map(|r| &r.name)),
        ];
        if refs.iter().filter(|(_, r)| r.is_some()).count() != 1 {
            err(path.clone(), "must set exactly one of configMapRef and secretRef".into());
        }
        for (field, name) in refs {
            if let Some(name) = name
                && let Some(why) = dns1123_subdomain(name)
            {
                err(format!("{path}.{field}.name"), format!("{name:?} {why}"));
            }
        }
        if let Some(p) = &e.prefix
            && (p.contains('=') || !p.chars().all(|c| c.is_ascii_graphic()))
        {
            err(format!("{path}.prefix"), format!("{p:?} must be printable ASCII characters other than '='"));
        }
    }

    // Expose.
    if let Some(expose) = &spec.expose {
        if let Some(ing) = &expose.ingress {
            if let Some(why) = hostname(&ing.host) {
                err("spec.expose.ingress.host".into(), format!("{:?} {why}", ing.host));
            }
            if ing.host.parse::<std::net::IpAddr>().is_ok() {
                err(
                    "spec.expose.ingress.host".into(),
                    format!("{:?} must be a host name, not an IP address", ing.host),
                );
            }
            if let Some(path) = &ing.path {
                if !path.starts_with('/') {
                    err("spec.expose.ingress.path".into(), format!("{path:?} must start with '/'"));
                } else if ["//", "/./", "/../", "%2f", "%2F"].iter().any(|s| path.contains(s))
                    || ["/..", "/."].iter().any(|s| path.ends_with(s))
                {
                    err(
                        "spec.expose.ingress.path".into(),
                        format!("{path:?} must not contain '//', '/./', '/../' or '%2f', nor end with '/.' or '/..'"),
                    );
                }
            }
            if let Some(c) = &ing.class_name
                && let Some(why) = dns1123_subdomain(c)
            {
                err("spec.expose.ingress.className".into(), format!("{c:?} {why}"));
            }
            if let Some(p) = &ing.port
                && !has_port_name(p)
            {
                err("spec.expose.ingress.port".into(), format!("{p:?} is not the name of one of spec.ports"));
            }
            if let Some(s) = &ing.tls_secret
                && let Some(why) = dns1123_subdomain(s)
            {
                err("spec.expose.ingress.tlsSecret".into(), format!("{s:?} {why}"));
            }
        }
        for (i, a) in expose.allow_from.iter().flatten().enumerate() {
            if let Some(why) = dns1123_label(&a.namespace, 63) {
                err(format!("spec.expose.allowFrom[{i}].namespace"), format!("{:?} {why}", a.namespace));
            }
            if let Some(sel) = &a.pod_selector {
                label_selector(&format!("spec.expose.allowFrom[{i}].podSelector"), sel, &mut err);
            }
            if let Some(why) = a.services.as_ref().and_then(|s| rules::too_many(s.len(), rules::MAX_PEERS)) {
                err(format!("spec.expose.allowFrom[{i}].services"), why);
            }
            for (j, svc) in a.services.iter().flatten().enumerate() {
                if let Some(why) = dns1035_label(svc, MAX_NAME_LEN) {
                    err(format!("spec.expose.allowFrom[{i}].services[{j}]"), format!("{svc:?} {why}"));
                }
            }
        }
    }

    if let Some(r) = &spec.rollout {
        for (field, v) in [("maxSurge", &r.max_surge), ("maxUnavailable", &r.max_unavailable)] {
            if let Some(v) = v
                && let Some(why) = int_or_percent(v)
            {
                err(format!("spec.rollout.{field}"), why);
            }
        }
        let zero = |v: &Option<IntOrString>| v.as_ref().is_some_and(is_zero);
        // maxUnavailable defaults to 0, so a zero surge alone already blocks every rollout.
        if zero(&r.max_surge) && (r.max_unavailable.is_none() || zero(&r.max_unavailable)) {
            err(
                "spec.rollout.maxSurge".into(),
                "must not be 0 while maxUnavailable is 0: no rollout could ever make progress".into(),
            );
        }
        if let Some(p) = r.progress_deadline_seconds
            && p < 1
        {
            err("spec.rollout.progressDeadlineSeconds".into(), format!("{p} must be at least 1"));
        }
    }

    if let Some(d) = &spec.disruption {
        if d.min_available.is_some() && d.max_unavailable.is_some() {
            err("spec.disruption".into(), rules::DISRUPTION_ONE.into());
        }
        for (field, v) in [("minAvailable", &d.min_available), ("maxUnavailable", &d.max_unavailable)] {
            if let Some(v) = v
                && let Some(why) = int_or_percent(v)
            {
                err(format!("spec.disruption.{field}"), why);
            }
        }
    }

    if let Some(pod) = &spec.pod {
        for (k, v) in pod.labels.iter().flatten() {
            let path = format!("spec.pod.labels[{k:?}]");
            if is_reserved_label(k) {
                err(path, format!("cannot be set here: {}", rules::reserved_labels()));
            } else if let Some(why) = label_key(k) {
                err(path, format!("key {why}"));
            } else if let Some(why) = label_value(v) {
                err(path, format!("value {v:?} {why}"));
            }
        }
        if let Some(sa) = &pod.service_account_name
            && let Some(why) = dns1123_subdomain(sa)
        {
            err("spec.pod.serviceAccountName".into(), format!("{sa:?} {why}"));
        }
        let mut annotation_bytes = 0;
        for k in pod.annotations.iter().flatten().map(|(k, v)| {
            annotation_bytes += k.len() + v.len();
            k
        }) {
            if let Some(why) = label_key(k) {
                err(format!("spec.pod.annotations[{k:?}]"), format!("key {why}"));
            }
        }
        if annotation_bytes > 256 * 1024 {
            err("spec.pod.annotations".into(), format!("total {annotation_bytes} bytes; at most 262144 are allowed"));
        }
        for (k, v) in pod.node_selector.iter().flatten() {
            let path = format!("spec.pod.nodeSelector[{k:?}]");
            if let Some(why) = label_key(k) {
                err(path, format!("key {why}"));
            } else if let Some(why) = label_value(v) {
                err(path, format!("value {v:?} {why}"));
            }
        }
        for (i, t) in pod.tolerations.iter().flatten().enumerate() {
            toleration(&format!("spec.pod.tolerations[{i}]"), t, &mut err);
        }
        if let Some(a) = &pod.affinity {
            affinity("spec.pod.affinity", a, &mut err);
        }
        if let Some(id) = &pod.security_context {
            for (field, value, min) in
                [("runAsUser", id.run_as_user, 1), ("runAsGroup", id.run_as_group, 0), ("fsGroup", id.fs_group, 0)]
            {
                match value {
                    Some(0) if min == 1 => err(
                        format!("spec.pod.securityContext.{field}"),
                        "0 is root, and the pod runs as non-root: choose a user ID above 0 (above 10000 keeps clear of the node's own users)".into(),
                    ),
                    Some(v) if !(min..=rules::MAX_ID).contains(&v) => err(
                        format!("spec.pod.securityContext.{field}"),
                        format!("{v} is out of range {min}..={}", rules::MAX_ID),
                    ),
                    _ => {}
                }
            }
        }
        if let Some(size) = &pod.tmp_size_limit {
            match parse_quantity(size) {
                Some(v) if v > 0.0 => {
                    if let Some((limit, l)) = ephemeral_limit(spec.resources.as_ref())
                        && v > l
                    {
                        err(
                            "spec.pod.tmpSizeLimit".into(),
                            format!(
                                "{size:?} is more than the container's ephemeral-storage limit {limit:?}: the pod would be evicted before /tmp is full"
                            ),
                        );
                    }
                }
                _ => err("spec.pod.tmpSizeLimit".into(), format!("{size:?} {}", rules::TMP_SIZE_POSITIVE)),
            }
        }
        let mut spreads = BTreeMap::new();
        for (i, c) in pod.topology_spread_constraints.iter().flatten().enumerate() {
            let path = format!("spec.pod.topologySpreadConstraints[{i}]");
            if c.max_skew < 1 {
                err(format!("{path}.maxSkew"), format!("{} must be at least 1", c.max_skew));
            }
            if let Some(why) = label_key(&c.topology_key) {
                err(format!("{path}.topologyKey"), format!("{:?} {why}", c.topology_key));
            }
            if !matches!(c.when_unsatisfiable.as_str(), "DoNotSchedule" | "ScheduleAnyway") {
                err(
                    format!("{path}.whenUnsatisfiable"),
                    format!("{:?} must be DoNotSchedule or ScheduleAnyway", c.when_unsatisfiable),
                );
            }
            if let Some(d) = c.min_domains {
                if d < 1 {
                    err(format!("{path}.minDomains"), format!("{d} must be at least 1"));
                } else if c.when_unsatisfiable != "DoNotSchedule" {
                    err(format!("{path}.minDomains"), "applies only with whenUnsatisfiable: DoNotSchedule".into());
                }
            }
            if let Some(first) = spreads.insert((c.topology_key.as_str(), c.when_unsatisfiable.as_str()), i) {
                err(
                    path,
                    format!(
                        "repeats spec.pod.topologySpreadConstraints[{first}] (same topologyKey and whenUnsatisfiable)"
                    ),
                );
            }
        }
    }

    if let Some(r) = &spec.resources {
        check_resources(r, &mut err);
    }
    if let Some(p) = &spec.probes {
        for (field, probe) in [("readiness", &p.readiness), ("liveness", &p.liveness), ("startup", &p.startup)] {
            if let Some(probe) = probe {
                self::probe(&format!("spec.probes.{field}"), field, probe, &mut err);
            }
        }
    }
    for (i, p) in spec.ports.iter().flatten().enumerate() {
        if let Some(a) = &p.app_protocol
            && let Some(why) = label_key(a)
        {
            err(
                format!("spec.ports[{i}].appProtocol"),
                format!("{a:?} is not an IANA service name or a domain-prefixed name: {why}"),
            );
        }
    }
}

fn lower_first(s: &str) -> String {
    let mut c = s.chars();
    c.next().map(|f| f.to_ascii_lowercase().to_string() + c.as_str()).unwrap_or_default()
}

fn scaling_rules(
    path: &str,
    r: &k8s_openapi::api::autoscaling::v2::HPAScalingRules,
    err: &mut impl FnMut(String, String),
) {
    if let Some(w) = r.stabilization_window_seconds
        && !(0..=3600).contains(&w)
    {
        err(format!("{path}.stabilizationWindowSeconds"), format!("{w} is out of range 0..=3600"));
    }
    if let Some(p) = &r.select_policy
        && !matches!(p.as_str(), "Max" | "Min" | "Disabled")
    {
        err(format!("{path}.selectPolicy"), format!("{p:?} must be Max, Min or Disabled"));
    }
    for (i, p) in r.policies.iter().flatten().enumerate() {
        let at = format!("{path}.policies[{i}]");
        if !matches!(p.type_.as_str(), "Pods" | "Percent") {
            err(format!("{at}.type"), format!("{:?} must be Pods or Percent", p.type_));
        }
        if p.value < 1 {
            err(format!("{at}.value"), format!("{} must be at least 1", p.value));
        }
        if !(1..=1800).contains(&p.period_seconds) {
            err(format!("{at}.periodSeconds"), format!("{} is out of range 1..=1800", p.period_seconds));
        }
    }
}

fn label_selector(
    path: &str,
    s: &k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector,
    err: &mut impl FnMut(String, String),
) {
    for (k, v) in s.match_labels.iter().flatten() {
        if let Some(why) = label_key(k) {
            err(format!("{path}.matchLabels[{k:?}]"), format!("key {why}"));
        } else if let Some(why) = label_value(v) {
            err(format!("{path}.matchLabels[{k:?}]"), format!("value {v:?} {why}"));
        }
    }
    for (i, e) in s.match_expressions.iter().flatten().enumerate() {
        let at = format!("{path}.matchExpressions[{i}]");
        if let Some(why) = label_key(&e.key) {
            err(format!("{at}.key"), format!("{:?} {why}", e.key));
        }
        let values = e.values.as_ref().map_or(0, Vec::len);
        match e.operator.as_str() {
            "In" | "NotIn" if values == 0 => {
                err(format!("{at}.values"), format!("must not be empty with operator {}", e.operator))
            }
            "Exists" | "DoesNotExist" if values > 0 => {
                err(format!("{at}.values"), format!("must be empty with operator {}", e.operator))
            }
            "In" | "NotIn" | "Exists" | "DoesNotExist" => {}
            op => err(format!("{at}.operator"), format!("{op:?} must be In, NotIn, Exists or DoesNotExist")),
        }
        for (j, v) in e.values.iter().flatten().enumerate() {
            if let Some(why) = label_value(v) {
                err(format!("{at}.values[{j}]"), format!("{v:?} {why}"));
            }
        }
    }
}

/// What the API server checks in a pod's affinity (ValidateAffinity in Kubernetes' validation).
fn affinity(path: &str, a: &k8s_openapi::api::core::v1::Affinity, err: &mut impl FnMut(String, String)) {
    use k8s_openapi::api::core::v1::{NodeSelectorRequirement, NodeSelectorTerm, PodAffinityTerm};
    fn weight(path: &str, w: i32, err: &mut impl FnMut(String, String)) {
        if !(1..=100).contains(&w) {
            err(format!("{path}.weight"), format!("{w} is out of range 1..=100"));
        }
    }
    fn requirement(path: &str, r: &NodeSelectorRequirement, field: bool, err: &mut impl FnMut(String, String)) {
        let values = r.values.as_deref().unwrap_or_default();
        if field {
            if r.key != "metadata.name" {
                err(
                    format!("{path}.key"),
                    format!("{:?}: the only field a node can be selected by is metadata.name", r.key),
                );
            }
            if !matches!(r.operator.as_str(), "In" | "NotIn") {
                err(format!("{path}.operator"), format!("{:?} must be In or NotIn for a field", r.operator));
            } else if values.len() != 1 {
                err(format!("{path}.values"), "must hold exactly one value for a field".into());
            }
            return;
        }
        if let Some(why) = label_key(&r.key) {
            err(format!("{path}.key"), format!("{:?} {why}", r.key));
        }
        match r.operator.as_str() {
            "In" | "NotIn" if values.is_empty() => {
                err(format!("{path}.values"), format!("must not be empty with operator {}", r.operator))
            }
            "Exists" | "DoesNotExist" if !values.is_empty() => {
                err(format!("{path}.values"), format!("must be empty with operator {}", r.operator))
            }
            "Gt" | "Lt" if values.len() != 1 || values[0].parse::<i64>().is_err() => {
                err(format!("{path}.values"), format!("must be one integer with operator {}", r.operator))
            }
            "In" | "NotIn" | "Exists" | "DoesNotExist" | "Gt" | "Lt" => {}
            op => err(format!("{path}.operator"), format!("{op:?} must be In, NotIn, Exists, DoesNotExist, Gt or Lt")),
        }
        for (j, v) in values.iter().enumerate() {
            if let Some(why) = label_value(v) {
                err(format!("{path}.values[{j}]"), format!("{v:?} {why}"));
            }
        }
    }
    fn term(path: &str, t: &NodeSelectorTerm, err: &mut impl FnMut(String, String)) {
        for (i, r) in t.match_expressions.iter().flatten().enumerate() {
            requirement(&format!("{path}.matchExpressions[{i}]"), r, false, err);
        }
        for (i, r) in t.match_fields.iter().flatten().enumerate() {
            requirement(&format!("{path}.matchFields[{i}]"), r, true, err);
        }
    }
    fn pod_term(path: &str, t: &PodAffinityTerm, err: &mut impl FnMut(String, String)) {
        if t.topology_key.is_empty() {
            err(format!("{path}.topologyKey"), "is required (a node label such as kubernetes.io/hostname)".into());
        } else if let Some(why) = label_key(&t.topology_key) {
            err(format!("{path}.topologyKey"), format!("{:?} {why}", t.topology_key));
        }
        if let Some(s) = &t.label_selector {
            label_selector(&format!("{path}.labelSelector"), s, err);
        }
        if let Some(s) = &t.namespace_selector {
            label_selector(&format!("{path}.namespaceSelector"), s, err);
        }
        for (i, n) in t.namespaces.iter().flatten().enumerate() {
            if let Some(why) = dns1123_label(n, 63) {
                err(format!("{path}.namespaces[{i}]"), format!("{n:?} {why}"));
            }
        }
        let (matching, mismatching) =
            (t.match_label_keys.as_deref().unwrap_or_default(), t.mismatch_label_keys.as_deref().unwrap_or_default());
        for (field, keys) in [("matchLabelKeys", matching), ("mismatchLabelKeys", mismatching)] {
            if !keys.is_empty() && t.label_selector.is_none() {
                err(format!("{path}.{field}"), "needs labelSelector".into());
            }
            for (i, k) in keys.iter().enumerate() {
                if let Some(why) = label_key(k) {
                    err(format!("{path}.{field}[{i}]"), format!("{k:?} {why}"));
                }
            }
        }
        for (i, k) in mismatching.iter().enumerate() {
            if matching.contains(k) {
                err(format!("{path}.mismatchLabelKeys[{i}]"), format!("{k:?} is in matchLabelKeys too"));
            }
        }
    }
    if let Some(n) = &a.node_affinity {
        let at = format!("{path}.nodeAffinity");
        if let Some(req) = &n.required_during_scheduling_ignored_during_execution {
            let at = format!("{at}.requiredDuringSchedulingIgnoredDuringExecution");
            if req.node_selector_terms.is_empty() {
                err(format!("{at}.nodeSelectorTerms"), "must hold at least one term".into());
            }
            for (i, t) in req.node_selector_terms.iter().enumerate() {
                term(&format!("{at}.nodeSelectorTerms[{i}]"), t, err);
            }
        }
        for (i, p) in n.preferred_during_scheduling_ignored_during_execution.iter().flatten().enumerate() {
            let at = format!("{at}.preferredDuringSchedulingIgnoredDuringExecution[{i}]");
            weight(&at, p.weight, err);
            term(&format!("{at}.preference"), &p.preference, err);
        }
    }
    for (field, terms) in [
        (
            "podAffinity",
            a.pod_affinity.as_ref().map(|p| {
                (
                    &p.required_during_scheduling_ignored_during_execution,
                    &p.preferred_during_scheduling_ignored_during_execution,
                )
            }),
        ),
        (
            "podAntiAffinity",
            a.pod_anti_affinity.as_ref().map(|p| {
                (
                    &p.required_during_scheduling_ignored_during_execution,
                    &p.preferred_during_scheduling_ignored_during_execution,
                )
            }),
        ),
    ] {
        let Some((required, preferred)) = terms else { continue };
        let at = format!("{path}.{field}");
        for (i, t) in required.iter().flatten().enumerate() {
            pod_term(&format!("{at}.requiredDuringSchedulingIgnoredDuringExecution[{i}]"), t, err);
        }
        for (i, w) in preferred.iter().flatten().enumerate() {
            let at = format!("{at}.preferredDuringSchedulingIgnoredDuringExecution[{i}]");
            weight(&at, w.weight, err);
            pod_term(&format!("{at}.podAffinityTerm"), &w.pod_affinity_term, err);
        }
    }
}

/// An env var's `valueFrom`, as the API server checks it in a container.
fn env_source(path: &str, from: &k8s_openapi::api::core::v1::EnvVarSource, err: &mut impl FnMut(String, String)) {
    let set = [
        from.field_ref.is_some(),
        from.resource_field_ref.is_some(),
        from.config_map_key_ref.is_some(),
        from.secret_key_ref.is_some(),
    ];
    if set.iter().filter(|s| **s).count() != 1 {
        err(
            path.to_string(),
            "must set exactly one of fieldRef, resourceFieldRef, configMapKeyRef and secretKeyRef".into(),
        );
    }
    if let Some(f) = &from.field_ref {
        let p = f.field_path.as_str();
        let subscripted = ["metadata.labels['", "metadata.annotations['"]
            .iter()
            .find_map(|pre| p.strip_prefix(pre).and_then(|rest| rest.strip_suffix("']")));
        let ok = matches!(
            p,
            "metadata.name"
                | "metadata.namespace"
                | "metadata.uid"
                | "metadata.labels"
                | "metadata.annotations"
                | "spec.nodeName"
                | "spec.serviceAccountName"
                | "status.hostIP"
                | "status.hostIPs"
                | "status.podIP"
                | "status.podIPs"
        ) || subscripted.is_some_and(|k| label_key(k).is_none());
        if !ok {
            err(
                format!("{path}.fieldRef.fieldPath"),
                format!(
                    "{p:?} is not a field a container can read: metadata.name, metadata.namespace, metadata.uid, metadata.labels['<key>'], metadata.annotations['<key>'], spec.nodeName, spec.serviceAccountName, status.hostIP(s), status.podIP(s)"
                ),
            );
        }
    }
    if let Some(r) = &from.resource_field_ref {
        let ok = matches!(
            r.resource.as_str(),
            "limits.cpu"
                | "limits.memory"
                | "limits.ephemeral-storage"
                | "requests.cpu"
                | "requests.memory"
                | "requests.ephemeral-storage"
        ) || r.resource.starts_with("limits.hugepages-")
            || r.resource.starts_with("requests.hugepages-");
        if !ok {
            err(
                format!("{path}.resourceFieldRef.resource"),
                format!("{:?} must be limits.<cpu|memory|ephemeral-storage> or requests.<…>", r.resource),
            );
        }
    }
    for (field, name, key) in [
        (
            "configMapKeyRef",
            from.config_map_key_ref.as_ref().map(|r| &r.name),
            from.config_map_key_ref.as_ref().map(|r| &r.key),
        ),
        ("secretKeyRef", from.secret_key_ref.as_ref().map(|r| &r.name), from.secret_key_ref.as_ref().map(|r| &r.key)),
    ] {
        let (Some(name), Some(key)) = (name, key) else { continue };
        if let Some(why) = dns1123_subdomain(name) {
            err(format!("{path}.{field}.name"), format!("{name:?} {why}"));
        }
        if key.is_empty()
            || key.len() > 253
            || key == "."
            || key == ".."
            || !key.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            err(
                format!("{path}.{field}.key"),
                format!("{key:?} must be 1 to 253 of the characters a-z, A-Z, 0-9, '-', '_' and '.'"),
            );
        }
    }
}

/// The targets of one HPA metric, as the API server checks them.
fn metric_targets(path: &str, m: &k8s_openapi::api::autoscaling::v2::MetricSpec, err: &mut impl FnMut(String, String)) {
    use k8s_openapi::api::autoscaling::v2::MetricTarget;
    fn target(path: &str, t: &MetricTarget, err: &mut impl FnMut(String, String)) {
        let path = format!("{path}.target");
        match t.type_.as_str() {
            "Utilization" | "Value" | "AverageValue" => {}
            other => err(format!("{path}.type"), format!("{other:?} must be Utilization, Value or AverageValue")),
        }
        if let Some(u) = t.average_utilization
            && u < 1
        {
            err(format!("{path}.averageUtilization"), format!("{u} must be at least 1"));
        }
        for (field, q) in [("value", &t.value), ("averageValue", &t.average_value)] {
            if let Some(q) = q
                && !parse_quantity(&q.0).is_some_and(|v| v > 0.0)
            {
                err(format!("{path}.{field}"), format!("{:?} must be a positive quantity", q.0));
            }
        }
        let wanted = match t.type_.as_str() {
            "Utilization" => Some(("averageUtilization", t.average_utilization.is_some())),
            "Value" => Some(("value", t.value.is_some())),
            "AverageValue" => Some(("averageValue", t.average_value.is_some())),
            _ => None,
        };
        if let Some((field, false)) = wanted {
            err(format!("{path}.{field}"), format!("is required with type {}", t.type_));
        }
    }
    fn metric_name(path: &str, name: &str, err: &mut impl FnMut(String, String)) {
        if name.is_empty() {
            err(format!("{path}.metric.name"), "is required".into());
        }
    }
    if let Some(r) = &m.resource {
        if r.name.is_empty() {
            err(format!("{path}.resource.name"), "is required".into());
        }
        target(&format!("{path}.resource"), &r.target, err);
    }
    if let Some(r) = &m.container_resource {
        target(&format!("{path}.containerResource"), &r.target, err);
    }
    if let Some(p) = &m.pods {
        metric_name(&format!("{path}.pods"), &p.metric.name, err);
        target(&format!("{path}.pods"), &p.target, err);
    }
    if let Some(o) = &m.object {
        metric_name(&format!("{path}.object"), &o.metric.name, err);
        target(&format!("{path}.object"), &o.target, err);
    }
    if let Some(e) = &m.external {
        metric_name(&format!("{path}.external"), &e.metric.name, err);
        target(&format!("{path}.external"), &e.target, err);
    }
}

fn toleration(path: &str, t: &k8s_openapi::api::core::v1::Toleration, err: &mut impl FnMut(String, String)) {
    let operator = t.operator.as_deref().unwrap_or("Equal");
    let effect = t.effect.as_deref().unwrap_or("");
    if !matches!(operator, "Equal" | "Exists") {
        err(format!("{path}.operator"), format!("{operator:?} must be Equal or Exists"));
    }
    if !matches!(effect, "" | "NoSchedule" | "PreferNoSchedule" | "NoExecute") {
        err(format!("{path}.effect"), format!("{effect:?} must be NoSchedule, PreferNoSchedule or NoExecute"));
    }
    match t.key.as_deref().unwrap_or("") {
        "" if operator != "Exists" => {
            err(format!("{path}.operator"), "must be Exists when key is empty (to tolerate every taint)".into())
        }
        "" => {}
        key => {
            if let Some(why) = label_key(key) {
                err(format!("{path}.key"), format!("{key:?} {why}"));
            }
        }
    }
    if operator == "Exists" && t.value.as_deref().is_some_and(|v| !v.is_empty()) {
        err(format!("{path}.value"), "must be empty when operator is Exists".into());
    }
    if t.toleration_seconds.is_some() && effect != "NoExecute" {
        err(format!("{path}.tolerationSeconds"), "applies only to effect NoExecute".into());
    }
}

/// The container's ephemeral-storage limit as written and in bytes: the given one, or the
/// default when `resources` does not name ephemeral-storage at all.
fn ephemeral_limit(r: Option<&k8s_openapi::api::core::v1::ResourceRequirements>) -> Option<(String, f64)> {
    let r = crate::api::defaults::resources(r);
    let limit = crate::api::defaults::ephemeral_limit(&r)?.to_string();
    let bytes = parse_quantity(&limit)?;
    Some((limit, bytes))
}

/// An extended resource (a domain-prefixed name outside kubernetes.io, such as nvidia.com/gpu)
/// cannot be overcommitted: whole numbers only, and a request needs an equal limit.
fn is_extended_resource(name: &str) -> bool {
    name.contains('/') && !name.contains("kubernetes.io/")
}

fn check_resources(r: &k8s_openapi::api::core::v1::ResourceRequirements, err: &mut impl FnMut(String, String)) {
    let mut parsed: BTreeMap<(&str, &str), f64> = BTreeMap::new();
    for (field, list) in [("limits", &r.limits), ("requests", &r.requests)] {
        for (name, q) in list.iter().flatten() {
            let path = format!("spec.resources.{field}[{name:?}]");
            let standard =
                matches!(name.as_str(), "cpu" | "memory" | "ephemeral-storage") || name.starts_with("hugepages-");
            if !standard && (!name.contains('/') || label_key(name).is_some()) {
                err(
                    path.clone(),
                    "is not a resource name: cpu, memory, ephemeral-storage, hugepages-<size>, or a domain-prefixed name such as nvidia.com/gpu".into(),
                );
            }
            match (q.0.strip_prefix('-').map(parse_quantity), parse_quantity(&q.0)) {
                (Some(Some(_)), _) => err(path, format!("{:?} must not be negative", q.0)),
                (None, Some(v)) if is_extended_resource(name) && v.fract() != 0.0 => {
                    err(path, format!("{:?} must be a whole number for an extended resource", q.0))
                }
                (None, Some(v)) => {
                    parsed.insert((field, name.as_str()), v);
                }
                _ => err(path, format!("{:?} is not a quantity such as 500m, 128Mi or 2", q.0)),
            }
        }
    }
    for (name, request) in parsed.iter().filter(|((f, _), _)| *f == "requests").map(|((_, n), v)| (*n, *v)) {
        if is_extended_resource(name) && parsed.get(&("limits", name)) != Some(&request) {
            err(
                format!("spec.resources.limits[{name:?}]"),
                format!(
                    "must be set and equal to spec.resources.requests[{name:?}] (an extended resource cannot be overcommitted)"
                ),
            );
            continue;
        }
        if let Some(limit) = parsed.get(&("limits", name))
            && request > *limit
        {
            err(
                format!("spec.resources.requests[{name:?}]"),
                format!("must not be greater than spec.resources.limits[{name:?}]"),
            );
        }
    }
}

fn probe(path: &str, kind: &str, p: &k8s_openapi::api::core::v1::Probe, err: &mut impl FnMut(String, String)) {
    let handlers = [p.exec.is_some(), p.http_get.is_some(), p.tcp_socket.is_some(), p.grpc.is_some()];
    match handlers.iter().filter(|h| **h).count() {
        0 => err(path.to_string(), "needs one of exec, httpGet, tcpSocket or grpc".into()),
        1 => {}
        _ => err(path.to_string(), "must have only one of exec, httpGet, tcpSocket and grpc".into()),
    }
    if kind != "readiness" && p.success_threshold.is_some_and(|s| s != 1) {
        err(format!("{path}.successThreshold"), format!("must be 1 for a {kind} probe"));
    }
    match p.termination_grace_period_seconds {
        Some(_) if kind == "readiness" => {
            err(format!("{path}.terminationGracePeriodSeconds"), "must not be set on a readiness probe".into())
        }
        Some(t) if t < 1 => err(format!("{path}.terminationGracePeriodSeconds"), format!("{t} must be at least 1")),
        _ => {}
    }
    for (field, v) in [
        ("initialDelaySeconds", p.initial_delay_seconds),
        ("periodSeconds", p.period_seconds),
        ("timeoutSeconds", p.timeout_seconds),
        ("successThreshold", p.success_threshold),
        ("failureThreshold", p.failure_threshold),
    ] {
        if v.is_some_and(|v| v < 0) {
            err(format!("{path}.{field}"), "must not be negative".into());
        }
    }
    let port = |field: &str, v: &IntOrString, err: &mut dyn FnMut(String, String)| match v {
        IntOrString::Int(n) if let Some(why) = rules::out_of_range(*n, 1, rules::MAX_PORT) => {
            err(format!("{path}.{field}.port"), why)
        }
        IntOrString::String(n) if port_name(n).is_some() => {
            err(format!("{path}.{field}.port"), format!("{n:?} is not a port name"))
        }
        _ => {}
    };
    // The kubelet runs probes from the node, outside every NetworkPolicy: a probe reaches this
    // service's own pod and nothing else.
    if let Some(host) = p.http_get.as_ref().and_then(|h| h.host.as_ref()) {
        err(format!("{path}.httpGet.host"), format!("{host:?}: {}", rules::PROBE_HOST));
    }
    if let Some(host) = p.tcp_socket.as_ref().and_then(|t| t.host.as_ref()) {
        err(format!("{path}.tcpSocket.host"), format!("{host:?}: {}", rules::PROBE_HOST));
    }
    if let Some(h) = &p.http_get {
        port("httpGet", &h.port, err);
        if let Some(scheme) = &h.scheme
            && !matches!(scheme.as_str(), "HTTP" | "HTTPS")
        {
            err(format!("{path}.httpGet.scheme"), format!("{scheme:?} must be HTTP or HTTPS"));
        }
        for (i, header) in h.http_headers.iter().flatten().enumerate() {
            let token = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
            if header.name.is_empty() || !header.name.chars().all(token) {
                err(
                    format!("{path}.httpGet.httpHeaders[{i}].name"),
                    format!("{:?} is not an HTTP header name", header.name),
                );
            }
        }
    }
    if let Some(t) = &p.tcp_socket {
        port("tcpSocket", &t.port, err);
    }
    if let Some(why) = p.grpc.as_ref().and_then(|g| rules::out_of_range(g.port, 1, rules::MAX_PORT)) {
        err(format!("{path}.grpc.port"), why);
    }
}

fn is_zero(v: &IntOrString) -> bool {
    match v {
        IntOrString::Int(i) => *i == 0,
        IntOrString::String(s) => s.trim_end_matches('%').parse::<i64>() == Ok(0),
    }
}

fn int_or_percent(v: &IntOrString) -> Option<String> {
    match v {
        IntOrString::Int(i) if *i < 0 => Some(format!("{i} must not be negative")),
        IntOrString::Int(_) => None,
        IntOrString::String(s) => match s.strip_suffix('%') {
            Some(p)
                if !p.is_empty()
                    && p.chars().all(|c| c.is_ascii_digit())
                    && p.parse::<u32>().is_ok_and(|p| p <= 100) =>
            {
                None
            }
            _ => Some(format!("{s:?} must be a number or a percentage from 0% to 100%")),
        },
    }
}

/// Why `s` is not a DNS-1035 label of at most `max` characters, or None when it is one.
pub fn dns1035_label(s: &str, max: usize) -> Option<String> {
    if let Some(why) = dns1123_label(s, max) {
        return Some(why);
    }
    if !s.starts_with(|c: char| c.is_ascii_lowercase()) {
        return Some("must start with a lowercase letter".into());
    }
    None
}

/// Why `s` is not a DNS-1123 label of at most `max` characters, or None when it is one.
pub fn dns1123_label(s: &str, max: usize) -> Option<String> {
    if s.is_empty() {
        return Some("must not be empty".into());
    }
    if s.len() > max {
        return Some(format!("is {} characters long; at most {max} are allowed", s.len()));
    }
    if !s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-') {
        return Some("may contain only lowercase letters, digits and '-'".into());
    }
    if s.starts_with('-') || s.ends_with('-') {
        return Some("must start and end with a letter or digit".into());
    }
    None
}

fn dns1123_subdomain(s: &str) -> Option<String> {
    if s.len() > 253 {
        return Some(format!("is {} characters long; at most 253 are allowed", s.len()));
    }
    s.split('.')
        .find_map(|part| dns1123_label(part, 63))
        .map(|why| format!("is not a DNS-1123 subdomain: each part {why}"))
}

fn hostname(s: &str) -> Option<String> {
    dns1123_subdomain(s.strip_prefix("*.").unwrap_or(s)).map(|why| why.replace("DNS-1123 subdomain", "host name"))
}

fn port_name(s: &str) -> Option<String> {
    if let Some(why) = dns1123_label(s, rules::MAX_PORT_NAME_LEN) {
        return Some(why);
    }
    if s.contains("--") {
        return Some("must not contain '--'".into());
    }
    if !s.chars().any(|c| c.is_ascii_lowercase()) {
        return Some(rules::PORT_NAME_LETTER.into());
    }
    None
}

fn label_key(k: &str) -> Option<String> {
    let (prefix, name) = match k.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, k),
    };
    if let Some(p) = prefix
        && let Some(why) = dns1123_subdomain(p)
    {
        return Some(format!("prefix {p:?} {why}"));
    }
    if name.is_empty() || name.len() > 63 {
        return Some(format!("name {name:?} must be 1 to 63 characters"));
    }
    label_value(name)
}

fn label_value(v: &str) -> Option<String> {
    if v.len() > 63 {
        return Some(format!("is {} characters long; at most 63 are allowed", v.len()));
    }
    let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    let edge_ok = |c: Option<char>| c.is_none_or(|c| c.is_ascii_alphanumeric());
    if !v.chars().all(ok_char) || !edge_ok(v.chars().next()) || !edge_ok(v.chars().last()) {
        return Some(
            "may contain only letters, digits, '-', '_' and '.', and must start and end with a letter or digit".into(),
        );
    }
    None
}

/// The network of a CIDR that has bits set after its prefix (`10.0.0.1/24` → `10.0.0.0/24`);
/// None for a CIDR that names its network (or no CIDR at all).
fn cidr_host_bits(s: &str) -> Option<String> {
    let (ip, prefix) = s.split_once('/')?;
    let prefix: u32 = prefix.parse().ok()?;
    match ip.parse::<std::net::IpAddr>().ok()? {
        std::net::IpAddr::V4(a) => {
            let network = u32::from(a) & u32::MAX.checked_shl(32 - prefix).unwrap_or(0);
            (network != u32::from(a)).then(|| format!("{}/{prefix}", std::net::Ipv4Addr::from(network)))
        }
        std::net::IpAddr::V6(a) => {
            let network = u128::from(a) & u128::MAX.checked_shl(128 - prefix).unwrap_or(0);
            (network != u128::from(a)).then(|| format!("{}/{prefix}", std::net::Ipv6Addr::from(network)))
        }
    }
}

fn is_cidr(s: &str) -> bool {
    let Some((ip, prefix)) = s.split_once('/') else {
        return false;
    };
    let Ok(prefix) = prefix.parse::<u8>() else {
        return false;
    };
    match ip.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(_)) => prefix <= 32,
        Ok(std::net::IpAddr::V6(_)) => prefix <= 128,
        Err(_) => false,
    }
}
