//! `spec.replicas` and `spec.autoscaling`: how many pods run, fixed or by the HPA.

use k8s_openapi::api::autoscaling::v2::{HPAScalingRules, HorizontalPodAutoscalerBehavior, MetricSpec, MetricTarget};

use crate::api::defaults::parse_quantity;
use crate::api::{Autoscaling, MicroserviceSpec, rules};

/// `spec.replicas`: in range, and not together with `spec.autoscaling`.
pub(super) fn replicas(spec: &MicroserviceSpec, err: &mut impl FnMut(String, String)) {
    if let Some(why) = spec.replicas.and_then(|r| rules::out_of_range(r, 0, rules::MAX_REPLICAS)) {
        err("spec.replicas".into(), why);
    }
    if spec.replicas.is_some() && spec.autoscaling.is_some() {
        err("spec.replicas".into(), rules::REPLICAS_WITH_AUTOSCALING.into());
    }
}

/// `spec.autoscaling`: minReplicas, maxReplicas, behavior, metrics, cpu and memory.
pub(super) fn autoscaling(a: &Autoscaling, err: &mut impl FnMut(String, String)) {
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
        behavior(b, err);
    }
    for (i, m) in a.metrics.iter().flatten().enumerate() {
        metric(&format!("spec.autoscaling.metrics[{i}]"), m, err);
    }
    for (field, v) in [("cpu", a.cpu), ("memory", a.memory)] {
        if let Some(why) = v.and_then(|v| rules::out_of_range(v, 1, rules::MAX_UTILIZATION)) {
            err(format!("spec.autoscaling.{field}"), format!("{why} (percent of the request)"));
        }
    }
}

/// `spec.autoscaling.behavior`: its scaleUp and scaleDown rules.
fn behavior(b: &HorizontalPodAutoscalerBehavior, err: &mut impl FnMut(String, String)) {
    for (field, rules) in [("scaleUp", &b.scale_up), ("scaleDown", &b.scale_down)] {
        if let Some(r) = rules {
            scaling_rules(&format!("spec.autoscaling.behavior.{field}"), r, err);
        }
    }
}

fn scaling_rules(path: &str, r: &HPAScalingRules, err: &mut impl FnMut(String, String)) {
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

/// One of `spec.autoscaling.metrics`: a known type, the field its type names and no other, and
/// its targets.
fn metric(path: &str, m: &MetricSpec, err: &mut impl FnMut(String, String)) {
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
        Some((t, false)) => err(path.to_string(), format!("type {t} needs its {} field", lower_first(t))),
        Some(_) => {}
    }
    if given.iter().filter(|(_, set)| *set).count() > 1 {
        err(path.to_string(), "must set only the field its type names".into());
    }
    metric_targets(path, m, err);
}

fn lower_first(s: &str) -> String {
    let mut c = s.chars();
    c.next().map(|f| f.to_ascii_lowercase().to_string() + c.as_str()).unwrap_or_default()
}

/// The targets of one HPA metric, as the API server checks them.
fn metric_targets(path: &str, m: &MetricSpec, err: &mut impl FnMut(String, String)) {
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
