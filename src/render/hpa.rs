//! The HorizontalPodAutoscaler (autoscaling/v2), present only with `spec.autoscaling`.

use k8s_openapi::api::autoscaling::v2::{
    CrossVersionObjectReference, HorizontalPodAutoscaler, HorizontalPodAutoscalerSpec, MetricSpec, MetricTarget,
    ResourceMetricSource,
};

use super::Input;

/// CPU target used when `spec.autoscaling` names no metric at all.
pub const DEFAULT_CPU_TARGET: i32 = 80;

pub(super) fn hpa(input: &Input) -> Option<HorizontalPodAutoscaler> {
    let a = input.spec.autoscaling.as_ref()?;
    let resource = |name: &str, percent: i32| MetricSpec {
        type_: "Resource".into(),
        resource: Some(ResourceMetricSource {
            name: name.into(),
            target: MetricTarget {
                type_: "Utilization".into(),
                average_utilization: Some(percent),
                ..Default::default()
            },
        }),
        ..Default::default()
    };
    let extra = a.metrics.clone().unwrap_or_default();
    let mut metrics = Vec::new();
    let cpu = match (a.cpu, a.memory, extra.is_empty()) {
        (None, None, true) => Some(DEFAULT_CPU_TARGET),
        (cpu, ..) => cpu,
    };
    if let Some(cpu) = cpu {
        metrics.push(resource("cpu", cpu));
    }
    if let Some(mem) = a.memory {
        metrics.push(resource("memory", mem));
    }
    metrics.extend(extra);

    Some(HorizontalPodAutoscaler {
        metadata: input.meta(input.name),
        spec: Some(HorizontalPodAutoscalerSpec {
            scale_target_ref: CrossVersionObjectReference {
                api_version: Some("apps/v1".into()),
                kind: "Deployment".into(),
                name: input.name.into(),
            },
            min_replicas: Some(a.min()),
            max_replicas: a.max_replicas,
            metrics: Some(metrics),
            behavior: a.behavior.clone(),
        }),
        status: None,
    })
}
