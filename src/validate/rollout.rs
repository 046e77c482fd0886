//! `spec.rollout` and `spec.disruption`: how many pods may be extra or missing while the service
//! changes or its nodes are drained.

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::api::{Disruption, Rollout, rules};

/// `spec.rollout`: maxSurge and maxUnavailable that let a rollout progress, and a positive
/// progressDeadlineSeconds.
pub(super) fn rollout(r: &Rollout, err: &mut impl FnMut(String, String)) {
    for (field, v) in [("maxSurge", &r.max_surge), ("maxUnavailable", &r.max_unavailable)] {
        if let Some(v) = v
            && let Some(why) = int_or_percent(v)
        {
            err(format!("spec.rollout.{field}"), why);
        }
    }
    let zero = |v: &Option<IntOrString>| v.as_ref().is_some_and(is_zero);
    // maxUnavailable defaults to 0, so a zero surge alone already blocks every rollout.
    if zero(&r.max_surge) && (r.max_unavailable.is_none() || zero(&r.max_unavailable)) {
        err(
            "spec.rollout.maxSurge".into(),
            "must not be 0 while maxUnavailable is 0: no rollout could ever make progress".into(),
        );
    }
    if let Some(p) = r.progress_deadline_seconds
        && p < 1
    {
        err("spec.rollout.progressDeadlineSeconds".into(), format!("{p} must be at least 1"));
    }
}

/// `spec.disruption`: at most one of minAvailable and maxUnavailable, each a number or a
/// percentage.
pub(super) fn disruption(d: &Disruption, err: &mut impl FnMut(String, String)) {
    if d.min_available.is_some() && d.max_unavailable.is_some() {
        err("spec.disruption".into(), rules::DISRUPTION_ONE.into());
    }
    for (field, v) in [("minAvailable", &d.min_available), ("maxUnavailable", &d.max_unavailable)] {
        if let Some(v) = v
            && let Some(why) = int_or_percent(v)
        {
            err(format!("spec.disruption.{field}"), why);
        }
    }
}

fn is_zero(v: &IntOrString) -> bool {
    match v {
        IntOrString::Int(i) => *i == 0,
        IntOrString::String(s) => s.trim_end_matches('%').parse::<i64>() == Ok(0),
    }
}

fn int_or_percent(v: &IntOrString) -> Option<String> {
    match v {
        IntOrString::Int(i) if *i < 0 => Some(format!("{i} must not be negative")),
        IntOrString::Int(_) => None,
        IntOrString::String(s) => match s.strip_suffix('%') {
            Some(p)
                if !p.is_empty()
                    && p.chars().all(|c| c.is_ascii_digit())
                    && p.parse::<u32>().is_ok_and(|p| p <= 100) =>
            {
                None
            }
            _ => Some(format!("{s:?} must be a number or a percentage from 0% to 100%")),
        },
    }
}
