//! `spec.resources`: the container's requests and limits.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ResourceRequirements;

use super::names::label_key;
use crate::api::defaults::parse_quantity;

/// `spec.resources`: known resource names, quantities that are not negative (whole for an
/// extended resource), and no request above its limit.
pub(super) fn resources(r: &ResourceRequirements, err: &mut impl FnMut(String, String)) {
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

/// An extended resource (a domain-prefixed name outside kubernetes.io, such as nvidia.com/gpu)
/// cannot be overcommitted: whole numbers only, and a request needs an equal limit.
fn is_extended_resource(name: &str) -> bool {
    name.contains('/') && !name.contains("kubernetes.io/")
}

/// The container's ephemeral-storage limit as written and in bytes: the given one, or the
/// default when `resources` does not name ephemeral-storage at all.
pub(super) fn ephemeral_limit(r: Option<&ResourceRequirements>) -> Option<(String, f64)> {
    let r = crate::api::defaults::resources(r);
    let limit = crate::api::defaults::ephemeral_limit(&r)?.to_string();
    let bytes = parse_quantity(&limit)?;
    Some((limit, bytes))
}
