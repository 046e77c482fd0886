//! Status as kstatus reads it: pure functions from what was observed to conditions.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

use super::database::DbState;
use crate::api::{DatabaseStatus, Microservice, MicroserviceStatus};
use crate::render::database::binding_secret_name;
use crate::render::{Settings, service_url};

pub const READY: &str = "Ready";
pub const RECONCILING: &str = "Reconciling";
pub const STALLED: &str = "Stalled";
pub const AVAILABLE: &str = "Available";
pub const DEPENDENCIES_READY: &str = "DependenciesReady";
pub const DATABASE_READY: &str = "DatabaseReady";
pub const AUTOSCALING: &str = "Autoscaling";
/// The reason of the conditions, Event and failure count of an object this build cannot read.
pub const INVALID_OBJECT: &str = "InvalidObject";

/// What the reconcile saw, as input to the status.
#[derive(Debug, Default)]
pub struct Observed<'a> {
    /// The Deployment after apply, when there is one.
    pub deployment: Option<&'a Deployment>,
    /// The HorizontalPodAutoscaler after apply, with `spec.autoscaling`.
    pub hpa: Option<&'a HorizontalPodAutoscaler>,
    /// Why the spec cannot be rendered or applied, when it cannot: (reason, message).
    pub blocked: Option<(&'static str, String)>,
    /// Dependencies that name no existing Microservice (`namespace/name`).
    pub missing_dependencies: Vec<String>,
    /// Dependencies in another team's namespace whose service does not admit this one.
    pub not_admitted: Vec<String>,
    /// The operator is told to leave the children alone.
    pub paused: bool,
    /// The service's database, when it has one.
    pub database: Option<DbState>,
}

/// Where a rollout stands.
#[derive(Debug, PartialEq, Eq)]
enum RolloutState {
    Complete,
    Progressing(String),
    Stalled(String),
}

/// `min_replicas`: under an HPA, the rollout is not complete below its minimum.
fn rollout(dep: &Deployment, min_replicas: i32) -> RolloutState {
    let Some(status) = &dep.status else { return RolloutState::Progressing("Deployment has no status yet".into()) };
    let generation = dep.metadata.generation.unwrap_or(0);
    if status.observed_generation.unwrap_or(0) < generation {
        return RolloutState::Progressing("waiting for the Deployment controller to see the update".into());
    }
    if let Some(c) = status.conditions.iter().flatten().find(|c| c.type_ == "Progressing")
        && c.reason.as_deref() == Some("ProgressDeadlineExceeded")
    {
        return RolloutState::Stalled(
            c.message.clone().unwrap_or_else(|| "rollout exceeded its progress deadline".into()),
        );
    }
    let desired = dep.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1).max(min_replicas);
    let updated = status.updated_replicas.unwrap_or(0);
    let replicas = status.replicas.unwrap_or(0);
    let available = status.available_replicas.unwrap_or(0);
    if updated < desired {
        RolloutState::Progressing(format!("{updated} of {desired} pods updated"))
    } else if replicas > updated {
        RolloutState::Progressing(format!("{} old pods are terminating", replicas - updated))
    } else if available < updated {
        RolloutState::Progressing(format!("{available} of {updated} updated pods available"))
    } else {
        RolloutState::Complete
    }
}

/// Whether the HorizontalPodAutoscaler can do its job, from its conditions: (status, reason,
/// message) of the `Autoscaling` condition. When it cannot scale (it cannot read or update the
/// Deployment's scale, or cannot read its metrics) the reason and message are the HPA's own, so
/// `kubectl describe ms` answers "why is it not scaling?". When it can, the message is fixed
/// (the HPA's changes with every scale), so a status is written only when the answer changes.
pub fn autoscaling(hpa: Option<&HorizontalPodAutoscaler>) -> (Option<bool>, String, String) {
    let conditions = hpa.and_then(|h| h.status.as_ref()).and_then(|s| s.conditions.as_ref());
    let Some(conditions) = conditions.filter(|c| !c.is_empty()) else {
        return (None, "NoAutoscalerStatus".into(), "the HorizontalPodAutoscaler reports no conditions yet".into());
    };
    let find = |type_: &str| conditions.iter().find(|c| c.type_ == type_);
    for type_ in ["AbleToScale", "ScalingActive"] {
        if let Some(c) = find(type_).filter(|c| c.status == "False") {
            let reason = c.reason.clone().unwrap_or_else(|| format!("{type_}False"));
            let detail = c.message.as_deref().unwrap_or("no message");
            return (
                Some(false),
                reason,
                format!("the HorizontalPodAutoscaler cannot scale ({type_}=False): {detail}"),
            );
        }
    }
    match find("ScalingLimited").filter(|c| c.status == "True") {
        Some(c) => (
            Some(true),
            c.reason.clone().unwrap_or_else(|| "ScalingLimited".into()),
            format!("scaling, held at a limit: {}", c.message.as_deref().unwrap_or("no message")),
        ),
        None => (Some(true), "ScalingActive".into(), "the HorizontalPodAutoscaler scales on its metrics".into()),
    }
}

/// The status `ms` should have now. Conditions keep their `lastTransitionTime` unless their
/// status changes, so an unchanged world gives an identical status and no write.
pub fn compute(ms: &Microservice, seen: &Observed, settings: &Settings, now: Timestamp) -> MicroserviceStatus {
    let generation = ms.metadata.generation;
    let old = ms.status.clone().unwrap_or_default();
    let cond = |type_: &str, ok: Option<bool>, reason: &str, message: String| Condition {
        type_: type_.into(),
        status: match ok {
            Some(true) => "True",
            Some(false) => "False",
            None => "Unknown",
        }
        .into(),
        reason: reason.into(),
        message,
        observed_generation: generation,
        last_transition_time: Time(now),
    };

    let mut conditions = Vec::new();
    let dep_status = seen.deployment.and_then(|d| d.status.as_ref());
    // Under an HPA the rollout is not complete below its minimum: read from the applied HPA,
    // which carries the default when the spec leaves it out.
    let min_replicas = seen.hpa.and_then(|h| h.spec.as_ref()).and_then(|s| s.min_replicas).unwrap_or(0);
    match (&seen.blocked, seen.deployment.map(|d| rollout(d, min_replicas))) {
        (Some((reason, message)), _) => {
            conditions.push(cond(READY, Some(false), reason, message.clone()));
            conditions.push(cond(RECONCILING, Some(false), reason, message.clone()));
            conditions.push(cond(STALLED, Some(true), reason, message.clone()));
        }
        (None, _) if seen.paused => {
            let m = "spec.paused is true: the children are left as they are".to_string();
            conditions.push(cond(READY, Some(false), "Paused", m.clone()));
            conditions.push(cond(RECONCILING, Some(false), "Paused", m.clone()));
            conditions.push(cond(STALLED, Some(false), "Paused", m));
        }
        (None, None) => {
            let m = "creating the children".to_string();
            conditions.push(cond(READY, Some(false), "Reconciling", m.clone()));
            conditions.push(cond(RECONCILING, Some(true), "Reconciling", m.clone()));
            conditions.push(cond(STALLED, Some(false), "Reconciling", m));
        }
        (None, Some(RolloutState::Stalled(m))) => {
            conditions.push(cond(READY, Some(false), "ProgressDeadlineExceeded", m.clone()));
            conditions.push(cond(RECONCILING, Some(false), "ProgressDeadlineExceeded", m.clone()));
            conditions.push(cond(STALLED, Some(true), "ProgressDeadlineExceeded", m));
        }
        (None, Some(RolloutState::Progressing(m))) => {
            conditions.push(cond(READY, Some(false), "RollingOut", m.clone()));
            conditions.push(cond(RECONCILING, Some(true), "RollingOut", m.clone()));
            conditions.push(cond(STALLED, Some(false), "RollingOut", m));
        }
        (None, Some(RolloutState::Complete)) => {
            let m = "all pods are updated and available".to_string();
            conditions.push(cond(READY, Some(true), "RolloutComplete", m.clone()));
            conditions.push(cond(RECONCILING, Some(false), "RolloutComplete", m.clone()));
            conditions.push(cond(STALLED, Some(false), "RolloutComplete", m));
        }
    }
    // The service is not Ready before its database is; a database that needs someone to act
    // (no class, a broken class) stalls it.
    if let (None, Some(db)) = (&seen.blocked, &seen.database)
        && !db.ready()
        && !seen.paused
    {
        let failed = db.phase() == super::database::Phase::Failed;
        let reason = if failed { db.reason.as_str() } else { "DatabaseNotReady" };
        let message = format!("database: {}", db.message);
        for c in conditions.iter_mut() {
            match c.type_.as_str() {
                READY if c.status == "True" || failed => {
                    c.status = "False".into();
                    c.reason = reason.into();
                    c.message = message.clone();
                }
                RECONCILING if !failed => {
                    c.status = "True".into();
                    c.reason = reason.into();
                    c.message = message.clone();
                }
                RECONCILING => {
                    c.status = "False".into();
                    c.reason = reason.into();
                    c.message = message.clone();
                }
                STALLED if failed => {
                    c.status = "True".into();
                    c.reason = reason.into();
                    c.message = message.clone();
                }
                _ => {}
            }
        }
    }
    let available = seen
        .deployment
        .and_then(|d| d.status.as_ref())
        .and_then(|s| s.conditions.iter().flatten().find(|c| c.type_ == "Available"));
    conditions.push(match available {
        Some(c) => cond(
            AVAILABLE,
            Some(c.status == "True"),
            c.reason.as_deref().unwrap_or("Unknown"),
            c.message.clone().unwrap_or_default(),
        ),
        None => cond(AVAILABLE, None, "NoDeploymentStatus", "the Deployment reports no availability yet".into()),
    });
    if ms.spec.dependencies.iter().flatten().any(|d| d.service.is_some()) {
        let name = ms.metadata.name.as_deref().unwrap_or_default();
        conditions.push(if !seen.missing_dependencies.is_empty() {
            cond(
                DEPENDENCIES_READY,
                Some(false),
                "DependencyNotFound",
                format!("no Microservice {}", seen.missing_dependencies.join(", ")),
            )
        } else if !seen.not_admitted.is_empty() {
            cond(
                DEPENDENCIES_READY,
                Some(false),
                "NotAdmitted",
                format!(
                    "{} in another team's namespace does not admit this service: its owners would add \
                     expose.allowFrom: [{{namespace: {}, services: [{name}]}}] to it (or the platform declare both \
                     namespaces one tenant); until then its NetworkPolicy refuses these calls",
                    seen.not_admitted.join(", "),
                    ms.ns()
                ),
            )
        } else {
            cond(DEPENDENCIES_READY, Some(true), "AllFound", "every service dependency exists".into())
        });
    }
    if ms.spec.autoscaling.is_some() && seen.blocked.is_none() && !seen.paused {
        let (ok, reason, message) = autoscaling(seen.hpa);
        conditions.push(cond(AUTOSCALING, ok, &reason, message));
    }
    if let Some(db) = &seen.database {
        conditions.push(cond(DATABASE_READY, Some(db.ready()), db.reason.as_str(), db.message.clone()));
    } else if ms.spec.database.is_some() && seen.blocked.is_none() && !seen.paused {
        conditions.push(cond(
            DATABASE_READY,
            None,
            crate::render::database::Reason::Pending.as_str(),
            "the database has not been looked at yet".into(),
        ));
    }
    // A condition whose status did not change keeps the time it last changed.
    for c in &mut conditions {
        if let Some(prev) = old.conditions.iter().find(|p| p.type_ == c.type_)
            && prev.status == c.status
        {
            c.last_transition_time = prev.last_transition_time.clone();
        }
    }

    let name = ms.metadata.name.as_deref().unwrap_or_default();
    let namespace = ms.ns();
    let ports = ms.spec.effective_ports();
    MicroserviceStatus {
        observed_generation: generation,
        conditions,
        replicas: dep_status.map(|s| s.replicas.unwrap_or(0)),
        ready_replicas: dep_status.map(|s| s.ready_replicas.unwrap_or(0)),
        updated_replicas: dep_status.map(|s| s.updated_replicas.unwrap_or(0)),
        available_replicas: dep_status.map(|s| s.available_replicas.unwrap_or(0)),
        selector: Some(format!("{}={name}", crate::api::contract::SELECTOR_LABEL)),
        url: Some(service_url(name, namespace, &ports[0], settings)),
        database: match (&seen.database, ms.spec.database.is_some()) {
            (Some(db), _) => Some(DatabaseStatus {
                class: db.class.clone(),
                secret_name: db.credentials_hash.as_ref().map(|_| binding_secret_name(name)),
                phase: Some(db.phase().as_str().into()),
                retained: Some(db.retained || old.database.as_ref().and_then(|d| d.retained).unwrap_or(false)),
            }),
            (None, true) => old.database,
            (None, false) => None,
        },
    }
}

/// The conditions of a Microservice that cannot be read (see `guard.rs`): stalled until it is
/// changed. The other conditions are kept, and a transition time moves only on a transition.
pub fn unreadable(old: &[Condition], generation: Option<i64>, message: &str, now: Timestamp) -> Vec<Condition> {
    let own = [(READY, "False"), (RECONCILING, "False"), (STALLED, "True")];
    let mut conditions: Vec<Condition> = own
        .iter()
        .map(|(type_, status)| Condition {
            type_: (*type_).into(),
            status: (*status).into(),
            reason: INVALID_OBJECT.into(),
            message: message.into(),
            observed_generation: generation,
            last_transition_time: old
                .iter()
                .find(|c| c.type_ == *type_ && c.status == *status)
                .map_or(Time(now), |c| c.last_transition_time.clone()),
        })
        .collect();
    conditions.extend(old.iter().filter(|c| !own.iter().any(|(t, _)| c.type_ == *t)).cloned());
    conditions
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::{DeploymentCondition, DeploymentSpec, DeploymentStatus};

    fn ms(generation: i64) -> Microservice {
        let mut ms = Microservice::new("orders", Default::default());
        ms.metadata.namespace = Some("shop".into());
        ms.metadata.generation = Some(generation);
        ms
    }

    fn dep(generation: i64, observed: i64, desired: i32, updated: i32, available: i32) -> Deployment {
        Deployment {
            metadata: kube::api::ObjectMeta { generation: Some(generation), ..Default::default() },
            spec: Some(DeploymentSpec { replicas: Some(desired), ..Default::default() }),
            status: Some(DeploymentStatus {
                observed_generation: Some(observed),
                replicas: Some(updated),
                updated_replicas: Some(updated),
                available_replicas: Some(available),
                ready_replicas: Some(available),
                ..Default::default()
            }),
        }
    }

    fn get<'a>(s: &'a MicroserviceStatus, t: &str) -> &'a Condition {
        s.conditions.iter().find(|c| c.type_ == t).unwrap()
    }

    fn hpa(conditions: &[(&str, &str, &str, &str)]) -> HorizontalPodAutoscaler {
        use k8s_openapi::api::autoscaling::v2::{HorizontalPodAutoscalerCondition, HorizontalPodAutoscalerStatus};
        HorizontalPodAutoscaler {
            status: Some(HorizontalPodAutoscalerStatus {
                conditions: Some(
                    conditions
                        .iter()
                        .map(|(t, s, r, m)| HorizontalPodAutoscalerCondition {
                            type_: t.to_string(),
                            status: s.to_string(),
                            reason: Some(r.to_string()),
                            message: Some(m.to_string()),
                            ..Default::default()
                        })
                        .collect(),
                ),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn autoscaling_condition_tells_why_the_hpa_cannot_scale() {
        let mut m = ms(1);
        m.spec.autoscaling = Some(crate::api::Autoscaling { max_replicas: 3, ..Default::default() });
        let d = dep(1, 1, 1, 1, 1);
        let at = |h: Option<&HorizontalPodAutoscaler>| {
            let seen = Observed { deployment: Some(&d), hpa: h, ..Default::default() };
            get(&compute(&m, &seen, &Settings::default(), Timestamp::UNIX_EPOCH), AUTOSCALING).clone()
        };
        let c = at(None);
        assert_eq!((c.status.as_str(), c.reason.as_str()), ("Unknown", "NoAutoscalerStatus"));

        let broken = hpa(&[
            (
                "AbleToScale",
                "True",
                "SucceededGetScale",
                "the HPA controller was able to get the target's current scale",
            ),
            (
                "ScalingActive",
                "False",
                "FailedGetPodsMetric",
                "unable to get metric requests_per_second: no custom metrics API",
            ),
        ]);
        let c = at(Some(&broken));
        assert_eq!((c.status.as_str(), c.reason.as_str()), ("False", "FailedGetPodsMetric"));
        assert!(
            c.message.ends_with("unable to get metric requests_per_second: no custom metrics API"),
            "{}",
            c.message
        );

        let no_scale = hpa(&[("AbleToScale", "False", "FailedGetScale", "deployments/scale \"api\" not found")]);
        assert_eq!(at(Some(&no_scale)).reason, "FailedGetScale");

        // Healthy: a fixed message, whatever the HPA says about its last scale.
        let scaled = |n: i32| {
            hpa(&[
                (
                    "AbleToScale",
                    "True",
                    "SucceededRescale",
                    &format!("the HPA controller was able to update the target scale to {n}"),
                ),
                (
                    "ScalingActive",
                    "True",
                    "ValidMetricFound",
                    "the HPA was able to successfully calculate a replica count",
                ),
                ("ScalingLimited", "False", "DesiredWithinRange", "the desired count is within the acceptable range"),
            ])
        };
        let (two, three) = (at(Some(&scaled(2))), at(Some(&scaled(3))));
        assert_eq!((two.status.as_str(), two.reason.as_str()), ("True", "ScalingActive"));
        assert_eq!(two, three, "a rescale alone changes the condition");

        let limited = hpa(&[
            ("ScalingActive", "True", "ValidMetricFound", "ok"),
            (
                "ScalingLimited",
                "True",
                "TooManyReplicas",
                "the desired replica count is more than the maximum replica count",
            ),
        ]);
        let c = at(Some(&limited));
        assert_eq!((c.status.as_str(), c.reason.as_str()), ("True", "TooManyReplicas"));

        // Without spec.autoscaling there is no such condition.
        m.spec.autoscaling = None;
        let seen = Observed { deployment: Some(&d), hpa: Some(&broken), ..Default::default() };
        let status = compute(&m, &seen, &Settings::default(), Timestamp::UNIX_EPOCH);
        assert!(status.conditions.iter().all(|c| c.type_ != AUTOSCALING));
    }

    #[test]
    fn ready_only_when_rollout_complete() {
        let t0 = Timestamp::from_second(1_000_000).unwrap();
        let s = compute(
            &ms(1),
            &Observed { deployment: Some(&dep(1, 1, 2, 2, 2)), ..Default::default() },
            &Settings::default(),
            t0,
        );
        assert_eq!(get(&s, READY).status, "True");
        assert_eq!(get(&s, RECONCILING).status, "False");
        assert_eq!(s.observed_generation, Some(1));
        assert_eq!(get(&s, READY).observed_generation, Some(1));
        assert_eq!(s.url.as_deref(), Some("http://orders.shop.svc.cluster.local:8080"));
        assert_eq!(s.selector.as_deref(), Some("flotilla.dev/microservice=orders"));

        let s = compute(
            &ms(2),
            &Observed { deployment: Some(&dep(2, 1, 2, 2, 2)), ..Default::default() },
            &Settings::default(),
            t0,
        );
        assert_eq!(get(&s, READY).status, "False");
        assert_eq!(get(&s, RECONCILING).status, "True");
        let s = compute(
            &ms(2),
            &Observed { deployment: Some(&dep(2, 2, 3, 2, 2)), ..Default::default() },
            &Settings::default(),
            t0,
        );
        assert_eq!(get(&s, READY).reason, "RollingOut");
    }

    #[test]
    fn under_an_hpa_ready_needs_min_replicas() {
        let t0 = Timestamp::from_second(1_000_000).unwrap();
        let mut m = ms(1);
        m.spec.autoscaling =
            Some(crate::api::Autoscaling { min_replicas: Some(2), max_replicas: 5, ..Default::default() });
        m.spec.image = "orders:1".into();
        // The minimum is read from the applied HPA, as the render wrote it.
        let rendered = crate::render::children(&crate::render::check(&m, &Default::default()).unwrap()).hpa.unwrap();
        assert_eq!(rendered.spec.as_ref().and_then(|s| s.min_replicas), Some(2));
        let one = dep(1, 1, 1, 1, 1);
        let seen = Observed { deployment: Some(&one), hpa: Some(&rendered), ..Default::default() };
        let s = compute(&m, &seen, &Settings::default(), t0);
        assert_eq!(get(&s, READY).status, "False");
        let two = dep(1, 1, 2, 2, 2);
        let seen = Observed { deployment: Some(&two), hpa: Some(&rendered), ..Default::default() };
        let s = compute(&m, &seen, &Settings::default(), t0);
        assert_eq!(get(&s, READY).status, "True");
    }

    #[test]
    fn stalled_on_deadline_or_invalid_spec() {
        let t0 = Timestamp::from_second(1_000_000).unwrap();
        let mut d = dep(1, 1, 2, 1, 1);
        d.status.as_mut().unwrap().conditions = Some(vec![DeploymentCondition {
            type_: "Progressing".into(),
            status: "False".into(),
            reason: Some("ProgressDeadlineExceeded".into()),
            message: Some("ReplicaSet \"orders-1\" has timed out progressing.".into()),
            ..Default::default()
        }]);
        let s = compute(&ms(1), &Observed { deployment: Some(&d), ..Default::default() }, &Settings::default(), t0);
        assert_eq!(get(&s, STALLED).status, "True");
        assert_eq!(get(&s, STALLED).reason, "ProgressDeadlineExceeded");
        let s = compute(
            &ms(1),
            &Observed { blocked: Some(("InvalidSpec", "spec.image: is required".into())), ..Default::default() },
            &Settings::default(),
            t0,
        );
        assert_eq!(get(&s, STALLED).status, "True");
        assert_eq!(get(&s, READY).message, "spec.image: is required");
    }

    /// kstatus ignores a condition's own observedGeneration: a Stalled=True left from an older
    /// generation under a newer `status.observedGeneration` would read as Failed. Every status
    /// written carries each condition at the generation the status claims.
    #[test]
    fn every_condition_is_at_the_generation_the_status_claims() {
        let t0 = Timestamp::from_second(1_000_000).unwrap();
        let mut m = ms(1);
        m.status = Some(compute(
            &m,
            &Observed { blocked: Some(("InvalidSpec", "spec.image: is required".into())), ..Default::default() },
            &Settings::default(),
            t0,
        ));
        m.metadata.generation = Some(2);
        let d = dep(2, 2, 2, 2, 2);
        let paused_ms = {
            let mut p = m.clone();
            p.spec.paused = Some(true);
            p
        };
        for (m, seen) in [
            (&m, Observed { deployment: Some(&d), ..Default::default() }),
            (&m, Observed { deployment: None, ..Default::default() }),
            (&paused_ms, Observed { deployment: Some(&d), paused: true, ..Default::default() }),
            (&m, Observed { blocked: Some(("ChildConflict", "Service orders exists".into())), ..Default::default() }),
        ] {
            let s = compute(m, &seen, &Settings::default(), t0);
            assert_eq!(s.observed_generation, Some(2));
            for c in &s.conditions {
                assert_eq!(c.observed_generation, Some(2), "{} behind the status", c.type_);
            }
        }
        let unreadable = unreadable(&m.status.clone().unwrap().conditions, Some(2), "bad", t0);
        for t in [READY, RECONCILING, STALLED] {
            assert_eq!(unreadable.iter().find(|c| c.type_ == t).unwrap().observed_generation, Some(2));
        }
    }

    #[test]
    fn transition_time_moves_only_on_a_real_transition() {
        let t0 = Timestamp::from_second(1_000_000).unwrap();
        let t1 = Timestamp::from_second(2_000_000).unwrap();
        let mut m = ms(1);
        let d = dep(1, 1, 2, 2, 2);
        let seen = Observed { deployment: Some(&d), ..Default::default() };
        m.status = Some(compute(&m, &seen, &Settings::default(), t0));
        let again = compute(&m, &seen, &Settings::default(), t1);
        assert_eq!(Some(&again), m.status.as_ref(), "same world, same status: no write");
        let d2 = dep(1, 1, 3, 2, 2);
        let changed = compute(&m, &Observed { deployment: Some(&d2), ..Default::default() }, &Settings::default(), t1);
        assert_eq!(get(&changed, READY).last_transition_time, Time(t1));
        assert_eq!(get(&changed, STALLED).last_transition_time, Time(t0), "Stalled stayed False");
    }

    #[test]
    fn an_unreadable_object_stalls_and_keeps_its_other_conditions() {
        let t0 = Timestamp::from_second(1_000_000).unwrap();
        let t1 = Timestamp::from_second(2_000_000).unwrap();
        let mut m = ms(1);
        let d = dep(1, 1, 2, 2, 2);
        let ready = compute(&m, &Observed { deployment: Some(&d), ..Default::default() }, &Settings::default(), t0);
        m.status = Some(ready.clone());
        let first = unreadable(&ready.conditions, Some(2), "cannot read this object: spec.x: bad", t1);
        let c = |t: &str| first.iter().find(|c| c.type_ == t).unwrap();
        assert_eq!((c(READY).status.as_str(), c(READY).reason.as_str()), ("False", "InvalidObject"));
        assert_eq!(c(STALLED).status, "True");
        assert_eq!(c(STALLED).last_transition_time, Time(t1));
        assert_eq!(c(RECONCILING).last_transition_time, Time(t0), "Reconciling stayed False");
        assert_eq!(c(AVAILABLE), get(&ready, AVAILABLE), "the Deployment's availability is kept");
        let again = unreadable(
            &first,
            Some(2),
            "cannot read this object: spec.x: bad",
            Timestamp::from_second(3_000_000).unwrap(),
        );
        assert_eq!(again, first, "reported once: the same problem writes nothing");
    }
}
