//! Where the pod runs: `spec.pod.nodeSelector`, `tolerations`, `affinity` and
//! `topologySpreadConstraints`.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Affinity, Toleration, TopologySpreadConstraint};

use super::names::{dns1123_label, label_key, label_selector, label_value};

/// `spec.pod.nodeSelector`: well-formed label keys and values.
pub(super) fn node_selector(node_selector: Option<&BTreeMap<String, String>>, err: &mut impl FnMut(String, String)) {
    for (k, v) in node_selector.into_iter().flatten() {
        let path = format!("spec.pod.nodeSelector[{k:?}]");
        if let Some(why) = label_key(k) {
            err(path, format!("key {why}"));
        } else if let Some(why) = label_value(v) {
            err(path, format!("value {v:?} {why}"));
        }
    }
}

/// One of `spec.pod.tolerations`, at `path`.
pub(super) fn toleration(path: &str, t: &Toleration, err: &mut impl FnMut(String, String)) {
    let operator = t.operator.as_deref().unwrap_or("Equal");
    let effect = t.effect.as_deref().unwrap_or("");
    if !matches!(operator, "Equal" | "Exists") {
        err(format!("{path}.operator"), format!("{operator:?} must be Equal or Exists"));
    }
    if !matches!(effect, "" | "NoSchedule" | "PreferNoSchedule" | "NoExecute") {
        err(format!("{path}.effect"), format!("{effect:?} must be NoSchedule, PreferNoSchedule or NoExecute"));
    }
    match t.key.as_deref().unwrap_or("") {
        "" if operator != "Exists" => {
            err(format!("{path}.operator"), "must be Exists when key is empty (to tolerate every taint)".into())
        }
        "" => {}
        key => {
            if let Some(why) = label_key(key) {
                err(format!("{path}.key"), format!("{key:?} {why}"));
            }
        }
    }
    if operator == "Exists" && t.value.as_deref().is_some_and(|v| !v.is_empty()) {
        err(format!("{path}.value"), "must be empty when operator is Exists".into());
    }
    if t.toleration_seconds.is_some() && effect != "NoExecute" {
        err(format!("{path}.tolerationSeconds"), "applies only to effect NoExecute".into());
    }
}

/// What the API server checks in a pod's affinity (ValidateAffinity in Kubernetes' validation).
pub(super) fn affinity(path: &str, a: &Affinity, err: &mut impl FnMut(String, String)) {
    use k8s_openapi::api::core::v1::{NodeSelectorRequirement, NodeSelectorTerm, PodAffinityTerm};
    fn weight(path: &str, w: i32, err: &mut impl FnMut(String, String)) {
        if !(1..=100).contains(&w) {
            err(format!("{path}.weight"), format!("{w} is out of range 1..=100"));
        }
    }
    fn requirement(path: &str, r: &NodeSelectorRequirement, field: bool, err: &mut impl FnMut(String, String)) {
        let values = r.values.as_deref().unwrap_or_default();
        if field {
            if r.key != "metadata.name" {
                err(
                    format!("{path}.key"),
                    format!("{:?}: the only field a node can be selected by is metadata.name", r.key),
                );
            }
            if !matches!(r.operator.as_str(), "In" | "NotIn") {
                err(format!("{path}.operator"), format!("{:?} must be In or NotIn for a field", r.operator));
            } else if values.len() != 1 {
                err(format!("{path}.values"), "must hold exactly one value for a field".into());
            }
            return;
        }
        if let Some(why) = label_key(&r.key) {
            err(format!("{path}.key"), format!("{:?} {why}", r.key));
        }
        match r.operator.as_str() {
            "In" | "NotIn" if values.is_empty() => {
                err(format!("{path}.values"), format!("must not be empty with operator {}", r.operator))
            }
            "Exists" | "DoesNotExist" if !values.is_empty() => {
                err(format!("{path}.values"), format!("must be empty with operator {}", r.operator))
            }
            "Gt" | "Lt" if values.len() != 1 || values[0].parse::<i64>().is_err() => {
                err(format!("{path}.values"), format!("must be one integer with operator {}", r.operator))
            }
            "In" | "NotIn" | "Exists" | "DoesNotExist" | "Gt" | "Lt" => {}
            op => err(format!("{path}.operator"), format!("{op:?} must be In, NotIn, Exists, DoesNotExist, Gt or Lt")),
        }
        for (j, v) in values.iter().enumerate() {
            if let Some(why) = label_value(v) {
                err(format!("{path}.values[{j}]"), format!("{v:?} {why}"));
            }
        }
    }
    fn term(path: &str, t: &NodeSelectorTerm, err: &mut impl FnMut(String, String)) {
        for (i, r) in t.match_expressions.iter().flatten().enumerate() {
            requirement(&format!("{path}.matchExpressions[{i}]"), r, false, err);
        }
        for (i, r) in t.match_fields.iter().flatten().enumerate() {
            requirement(&format!("{path}.matchFields[{i}]"), r, true, err);
        }
    }
    fn pod_term(path: &str, t: &PodAffinityTerm, err: &mut impl FnMut(String, String)) {
        if t.topology_key.is_empty() {
            err(format!("{path}.topologyKey"), "is required (a node label such as kubernetes.io/hostname)".into());
        } else if let Some(why) = label_key(&t.topology_key) {
            err(format!("{path}.topologyKey"), format!("{:?} {why}", t.topology_key));
        }
        if let Some(s) = &t.label_selector {
            label_selector(&format!("{path}.labelSelector"), s, err);
        }
        if let Some(s) = &t.namespace_selector {
            label_selector(&format!("{path}.namespaceSelector"), s, err);
        }
        for (i, n) in t.namespaces.iter().flatten().enumerate() {
            if let Some(why) = dns1123_label(n, 63) {
                err(format!("{path}.namespaces[{i}]"), format!("{n:?} {why}"));
            }
        }
        let (matching, mismatching) =
            (t.match_label_keys.as_deref().unwrap_or_default(), t.mismatch_label_keys.as_deref().unwrap_or_default());
        for (field, keys) in [("matchLabelKeys", matching), ("mismatchLabelKeys", mismatching)] {
            if !keys.is_empty() && t.label_selector.is_none() {
                err(format!("{path}.{field}"), "needs labelSelector".into());
            }
            for (i, k) in keys.iter().enumerate() {
                if let Some(why) = label_key(k) {
                    err(format!("{path}.{field}[{i}]"), format!("{k:?} {why}"));
                }
            }
        }
        for (i, k) in mismatching.iter().enumerate() {
            if matching.contains(k) {
                err(format!("{path}.mismatchLabelKeys[{i}]"), format!("{k:?} is in matchLabelKeys too"));
            }
        }
    }
    if let Some(n) = &a.node_affinity {
        let at = format!("{path}.nodeAffinity");
        if let Some(req) = &n.required_during_scheduling_ignored_during_execution {
            let at = format!("{at}.requiredDuringSchedulingIgnoredDuringExecution");
            if req.node_selector_terms.is_empty() {
                err(format!("{at}.nodeSelectorTerms"), "must hold at least one term".into());
            }
            for (i, t) in req.node_selector_terms.iter().enumerate() {
                term(&format!("{at}.nodeSelectorTerms[{i}]"), t, err);
            }
        }
        for (i, p) in n.preferred_during_scheduling_ignored_during_execution.iter().flatten().enumerate() {
            let at = format!("{at}.preferredDuringSchedulingIgnoredDuringExecution[{i}]");
            weight(&at, p.weight, err);
            term(&format!("{at}.preference"), &p.preference, err);
        }
    }
    for (field, terms) in [
        (
            "podAffinity",
            a.pod_affinity.as_ref().map(|p| {
                (
                    &p.required_during_scheduling_ignored_during_execution,
                    &p.preferred_during_scheduling_ignored_during_execution,
                )
            }),
        ),
        (
            "podAntiAffinity",
            a.pod_anti_affinity.as_ref().map(|p| {
                (
                    &p.required_during_scheduling_ignored_during_execution,
                    &p.preferred_during_scheduling_ignored_during_execution,
                )
            }),
        ),
    ] {
        let Some((required, preferred)) = terms else { continue };
        let at = format!("{path}.{field}");
        for (i, t) in required.iter().flatten().enumerate() {
            pod_term(&format!("{at}.requiredDuringSchedulingIgnoredDuringExecution[{i}]"), t, err);
        }
        for (i, w) in preferred.iter().flatten().enumerate() {
            let at = format!("{at}.preferredDuringSchedulingIgnoredDuringExecution[{i}]");
            weight(&at, w.weight, err);
            pod_term(&format!("{at}.podAffinityTerm"), &w.pod_affinity_term, err);
        }
    }
}

/// `spec.pod.topologySpreadConstraints`: each well-formed, and no two with the same topologyKey
/// and whenUnsatisfiable.
pub(super) fn topology_spread_constraints(
    constraints: &[TopologySpreadConstraint],
    err: &mut impl FnMut(String, String),
) {
    let mut spreads = BTreeMap::new();
    for (i, c) in constraints.iter().enumerate() {
        let path = format!("spec.pod.topologySpreadConstraints[{i}]");
        if c.max_skew < 1 {
            err(format!("{path}.maxSkew"), format!("{} must be at least 1", c.max_skew));
        }
        if let Some(why) = label_key(&c.topology_key) {
            err(format!("{path}.topologyKey"), format!("{:?} {why}", c.topology_key));
        }
        if !matches!(c.when_unsatisfiable.as_str(), "DoNotSchedule" | "ScheduleAnyway") {
            err(
                format!("{path}.whenUnsatisfiable"),
                format!("{:?} must be DoNotSchedule or ScheduleAnyway", c.when_unsatisfiable),
            );
        }
        if let Some(d) = c.min_domains {
            if d < 1 {
                err(format!("{path}.minDomains"), format!("{d} must be at least 1"));
            } else if c.when_unsatisfiable != "DoNotSchedule" {
                err(format!("{path}.minDomains"), "applies only with whenUnsatisfiable: DoNotSchedule".into());
            }
        }
        if let Some(first) = spreads.insert((c.topology_key.as_str(), c.when_unsatisfiable.as_str()), i) {
            err(
                path,
                format!("repeats spec.pod.topologySpreadConstraints[{first}] (same topologyKey and whenUnsatisfiable)"),
            );
        }
    }
}
