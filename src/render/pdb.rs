//! The PodDisruptionBudget.

use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{Input, selector_labels};

/// Present when `spec.disruption` is set, or by default when more than one replica may run: then
/// one pod at a time may be evicted, which never blocks a node drain.
pub(super) fn pdb(input: &Input) -> Option<PodDisruptionBudget> {
    let (min_available, max_unavailable) = match &input.spec.disruption {
        Some(d) if d.min_available.is_some() || d.max_unavailable.is_some() => {
            (d.min_available.clone(), d.max_unavailable.clone())
        }
        _ if input.may_run_several() => (None, Some(IntOrString::Int(1))),
        _ => return None,
    };
    Some(PodDisruptionBudget {
        metadata: input.meta(input.name),
        spec: Some(PodDisruptionBudgetSpec {
            selector: Some(LabelSelector { match_labels: Some(selector_labels(input.name)), ..Default::default() }),
            min_available,
            max_unavailable,
            // Pods that are not healthy anyway must not block a drain.
            unhealthy_pod_eviction_policy: Some("AlwaysAllow".into()),
        }),
        status: None,
    })
}
