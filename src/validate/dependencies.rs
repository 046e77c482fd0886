//! `spec.dependencies`: the services and external networks the service calls.

use std::collections::BTreeMap;

use super::names::{dns1035_label, dns1123_label, port_name};
use crate::api::contract::dependency_env_name;
use crate::api::{Dependency, ExternalDependency, rules};

/// `spec.dependencies`: not too many.
pub(super) fn count(dependencies: Option<&[Dependency]>, err: &mut impl FnMut(String, String)) {
    if let Some(why) = rules::too_many(dependencies.map_or(0, <[Dependency]>::len), rules::MAX_PEERS) {
        err("spec.dependencies".into(), why);
    }
}

/// Each of `spec.dependencies` (of the Microservice `name` in `namespace`): one target, a
/// service other than this one, or an external network. Returns the env names the dependencies
/// set, each with the dependency that sets it.
pub(super) fn dependencies(
    dependencies: &[Dependency],
    name: &str,
    namespace: Option<&str>,
    err: &mut impl FnMut(String, String),
) -> BTreeMap<String, String> {
    let mut env_names: BTreeMap<String, String> = BTreeMap::new();
    for (i, d) in dependencies.iter().enumerate() {
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
            external(&path, ext, err);
        }
    }
    env_names
}

/// `spec.dependencies[].external`: a CIDR that names its network, and ports in range.
fn external(path: &str, ext: &ExternalDependency, err: &mut impl FnMut(String, String)) {
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
