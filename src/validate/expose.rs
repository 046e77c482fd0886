//! `spec.expose`: the Ingress of the service, and who else may call it (`allowFrom`).

use super::names::{dns1035_label, dns1123_label, dns1123_subdomain, hostname, label_selector};
use crate::api::{AllowFrom, Expose, IngressExpose, MAX_NAME_LEN, PortSpec, rules};

/// `spec.expose.allowFrom`: not too many.
pub(super) fn allow_from_count(expose: Option<&Expose>, err: &mut impl FnMut(String, String)) {
    let len = expose.and_then(|e| e.allow_from.as_ref()).map_or(0, Vec::len);
    if let Some(why) = rules::too_many(len, rules::MAX_PEERS) {
        err("spec.expose.allowFrom".into(), why);
    }
}

/// `spec.expose`: its ingress (routed to one of `ports`, the effective ports), then each of
/// its allowFrom.
pub(super) fn expose(expose: &Expose, ports: &[PortSpec], err: &mut impl FnMut(String, String)) {
    if let Some(ing) = &expose.ingress {
        ingress(ing, ports, err);
    }
    for (i, a) in expose.allow_from.iter().flatten().enumerate() {
        allow_from(i, a, err);
    }
}

/// `spec.expose.ingress`: host, path, className, port and tlsSecret.
fn ingress(ing: &IngressExpose, ports: &[PortSpec], err: &mut impl FnMut(String, String)) {
    if let Some(why) = hostname(&ing.host) {
        err("spec.expose.ingress.host".into(), format!("{:?} {why}", ing.host));
    }
    if ing.host.parse::<std::net::IpAddr>().is_ok() {
        err("spec.expose.ingress.host".into(), format!("{:?} must be a host name, not an IP address", ing.host));
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
        && !ports.iter().any(|port| port.name == *p)
    {
        err("spec.expose.ingress.port".into(), format!("{p:?} is not the name of one of spec.ports"));
    }
    if let Some(s) = &ing.tls_secret
        && let Some(why) = dns1123_subdomain(s)
    {
        err("spec.expose.ingress.tlsSecret".into(), format!("{s:?} {why}"));
    }
}

/// `spec.expose.allowFrom[i]`: a namespace, a pod selector, and services by name.
fn allow_from(i: usize, a: &AllowFrom, err: &mut impl FnMut(String, String)) {
    if let Some(why) = dns1123_label(&a.namespace, 63) {
        err(format!("spec.expose.allowFrom[{i}].namespace"), format!("{:?} {why}", a.namespace));
    }
    if let Some(sel) = &a.pod_selector {
        label_selector(&format!("spec.expose.allowFrom[{i}].podSelector"), sel, err);
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
