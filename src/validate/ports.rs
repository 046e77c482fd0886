//! `spec.ports`: the ports the container listens on.

use std::collections::BTreeMap;

use super::names::{label_key, port_name};
use crate::api::{PortSpec, rules};

/// `spec.ports` as written: not empty, not too many, each name and number well-formed and used
/// once.
pub(super) fn ports(ports: &[PortSpec], err: &mut impl FnMut(String, String)) {
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
            err(format!("spec.ports[{i}].port"), format!("{}/{proto} is already used by spec.ports[{first}]", p.port));
        }
    }
}

/// `spec.ports[].appProtocol`: an IANA service name or a domain-prefixed name. Checked after
/// every other part of the spec.
pub(super) fn app_protocols(ports: &[PortSpec], err: &mut impl FnMut(String, String)) {
    for (i, p) in ports.iter().enumerate() {
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
