//! The PodDisruptionBudget.

use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{Cx, selector_labels};

/// Present when `spec.disruption` is set, or by default when more than one replica may run: then
/// one pod at a time may be evicted, which never blocks a node drain.
pub(super) fn pdb(cx: &Cx) -> Option<PodDisruptionBudget> {
    let (min_available, max_unavailable) = match &cx.spec.disruption {
        Some(d) if d.min_available.is_some() || d.max_unavailable.is_some() => {
            (d.min_available.clone(), d.max_unavailable.clone())
        }
        _ if cx.may_run_several() => (None, Some(IntOrString::Int(1))),
        _ => return None,
    };
    Some(PodDisruptionBudget {
        metadata: cx.meta(cx.name),
        spec: Some(PodDisruptionBudgetSpec {
            selector: Some(LabelSelector { match_labels: Some(selector_labels(cx.name)), ..Default::default() }),
            min_available,
            max_unavailable,
            // Pods that are not healthy anyway must not block a drain.
            unhealthy_pod_eviction_policy: Some("AlwaysAllow".into()),
        }),
        status: None,
    })
}
