//! `spec.healthCheck` and `spec.probes`: how the kubelet checks the container.

use k8s_openapi::api::core::v1::Probe;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::names::port_name;
use crate::api::{HealthCheck, PortSpec, Probes, Protocol, rules};

/// `spec.healthCheck`: its paths, and a port of `ports` (the effective ports) that is TCP.
pub(super) fn health_check(hc: &HealthCheck, ports: &[PortSpec], err: &mut impl FnMut(String, String)) {
    let has_port_name = |n: &str| ports.iter().any(|p| p.name == n);
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

/// `spec.probes`: readiness, liveness and startup, in that order.
pub(super) fn probes(p: &Probes, err: &mut impl FnMut(String, String)) {
    for (field, probe) in [("readiness", &p.readiness), ("liveness", &p.liveness), ("startup", &p.startup)] {
        if let Some(probe) = probe {
            self::probe(&format!("spec.probes.{field}"), field, probe, err);
        }
    }
}

fn probe(path: &str, kind: &str, p: &Probe, err: &mut impl FnMut(String, String)) {
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
