//! `spec.pod`: the pod's labels, annotations, service account, identity and /tmp; where it is
//! scheduled is in `scheduling.rs`.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ResourceRequirements;

use super::names::{dns1123_subdomain, label_key, label_value};
use super::resources::ephemeral_limit;
use super::scheduling;
use crate::api::contract::is_reserved_label;
use crate::api::defaults::parse_quantity;
use crate::api::{PodIdentity, PodSettings, rules};

/// `spec.pod`, field by field; `resources` (`spec.resources`) bounds `tmpSizeLimit`.
pub(super) fn pod(pod: &PodSettings, resources: Option<&ResourceRequirements>, err: &mut impl FnMut(String, String)) {
    labels(pod.labels.as_ref(), err);
    if let Some(sa) = &pod.service_account_name
        && let Some(why) = dns1123_subdomain(sa)
    {
        err("spec.pod.serviceAccountName".into(), format!("{sa:?} {why}"));
    }
    annotations(pod.annotations.as_ref(), err);
    scheduling::node_selector(pod.node_selector.as_ref(), err);
    for (i, t) in pod.tolerations.iter().flatten().enumerate() {
        scheduling::toleration(&format!("spec.pod.tolerations[{i}]"), t, err);
    }
    if let Some(a) = &pod.affinity {
        scheduling::affinity("spec.pod.affinity", a, err);
    }
    if let Some(id) = &pod.security_context {
        security_context(id, err);
    }
    if let Some(size) = &pod.tmp_size_limit {
        tmp_size_limit(size, resources, err);
    }
    scheduling::topology_spread_constraints(pod.topology_spread_constraints.as_deref().unwrap_or_default(), err);
}

/// `spec.pod.labels`: well-formed, and none of the labels Flotilla owns.
fn labels(labels: Option<&BTreeMap<String, String>>, err: &mut impl FnMut(String, String)) {
    for (k, v) in labels.into_iter().flatten() {
        let path = format!("spec.pod.labels[{k:?}]");
        if is_reserved_label(k) {
            err(path, format!("cannot be set here: {}", rules::reserved_labels()));
        } else if let Some(why) = label_key(k) {
            err(path, format!("key {why}"));
        } else if let Some(why) = label_value(v) {
            err(path, format!("value {v:?} {why}"));
        }
    }
}

/// `spec.pod.annotations`: well-formed keys, and at most 256 KiB in all.
fn annotations(annotations: Option<&BTreeMap<String, String>>, err: &mut impl FnMut(String, String)) {
    let mut annotation_bytes = 0;
    for k in annotations.into_iter().flatten().map(|(k, v)| {
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
}

/// `spec.pod.securityContext`: IDs in range, and no root user.
fn security_context(id: &PodIdentity, err: &mut impl FnMut(String, String)) {
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

/// `spec.pod.tmpSizeLimit`: positive, and within the container's ephemeral-storage limit.
fn tmp_size_limit(size: &str, resources: Option<&ResourceRequirements>, err: &mut impl FnMut(String, String)) {
    match parse_quantity(size) {
        Some(v) if v > 0.0 => {
            if let Some((limit, l)) = ephemeral_limit(resources)
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
