//! One reconcile: fetch inputs → validate → render → apply → prune → status.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{ObjectReference, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::{Ingress, NetworkPolicy};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use kube::runtime::reflector::Store;
use kube::{Resource, ResourceExt};
use tracing::{info, warn};

use super::apply::{FIELD_MANAGER, Outcome, ensure, hand_off_replicas, prune, set_replicas_by_handoff};
use super::context::Context;
use super::database::{self as db, DbState};
use super::error::Error;
use super::guard::{self, Read};
use super::status::{Observed, compute, unreadable};
use crate::api::{DatabaseClass, DeletionPolicy, Microservice};
use crate::render::database;
use crate::render::{Cx, World, render};

/// How often a converged Microservice is looked at again, to repair what no watch reported.
const RESYNC: Duration = Duration::from_secs(300);
/// How often a Microservice whose child's name is taken by someone else's object is looked at.
const CONFLICT_RECHECK: Duration = Duration::from_secs(20);
/// How often a database that is not ready yet is looked at.
const DATABASE_POLL: Duration = Duration::from_secs(3);

#[tracing::instrument(skip_all, fields(namespace = ms.ns(), name = ms.name_any()))]
pub async fn reconcile(ms: Arc<Microservice>, ctx: Arc<Context>) -> Result<Action, Error> {
    let _timer = ctx.metrics.reconcile();
    if let Some(problem) = guard::problem(&ms) {
        // A stand-in for an object this build cannot read: report it, touch nothing else.
        report_unreadable(&ctx, &ms, problem).await?;
        return Ok(Action::await_change());
    }
    let has_finalizer = ms.finalizers().iter().any(|f| f == database::FINALIZER);
    if ms.meta().deletion_timestamp.is_some() {
        // Owner references let the garbage collector remove the children; the finalizer is
        // there so that a database's data is kept (or deleted) as its policy says first.
        if has_finalizer {
            let classes = database_classes(&ctx).await?;
            match db::policy(&ms) {
                DeletionPolicy::Retain => db::retain(&ctx, &ms, &classes).await?,
                DeletionPolicy::Delete => db::delete(&ctx, &ms, &classes).await?,
            }
            set_finalizer(&ctx, &ms, false).await?;
        }
        return Ok(Action::await_change());
    }
    if ms.spec.database.is_some() && !has_finalizer {
        set_finalizer(&ctx, &ms, true).await?;
    } else if ms.spec.database.is_none() && has_finalizer {
        // The database section was removed: nothing said to delete the data, so it is kept,
        // and the embedded database stops.
        let classes = database_classes(&ctx).await?;
        db::detach(&ctx, &ms, &classes).await?;
        set_finalizer(&ctx, &ms, false).await?;
    }
    let result = converge(&ms, &ctx).await;
    let seen_deployment;
    let mut observed = Observed { missing_dependencies: missing_dependencies(&ms, &ctx), ..Default::default() };
    let mut db_pending = false;
    match &result {
        Ok(Converged { deployment, paused, database }) => {
            seen_deployment = deployment.clone();
            observed.deployment = seen_deployment.as_ref();
            observed.paused = *paused;
            observed.database = database.clone();
            // A class problem waits for the class (watched); a database coming up is polled.
            db_pending = database.as_ref().is_some_and(|d| !d.ready && d.phase != "Failed");
        }
        Err(e) if e.waits_for_change() => {
            let message = e.for_user();
            publish(&ctx, &ms, EventType::Warning, e.category(), &message).await;
            observed.blocked = Some((e.category(), message));
        }
        // Transient: keep the last status; the error policy retries.
        Err(_) => {}
    }
    if result.is_ok() || observed.blocked.is_some() {
        update_status(&ms, &ctx, &observed).await?;
    }
    result?;
    ctx.reset_backoff(&ms);
    // Volume claims and claim objects are not watched: look again soon while the database comes up.
    Ok(Action::requeue(if db_pending { DATABASE_POLL } else { RESYNC }))
}

struct Converged {
    deployment: Option<Deployment>,
    paused: bool,
    database: Option<DbState>,
}

async fn converge(ms: &Microservice, ctx: &Context) -> Result<Converged, Error> {
    let ns = ms.ns().to_string();
    let name = ms.name_any();
    let client = ctx.client.clone();
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);

    if ms.spec.paused == Some(true) {
        let deployment = deployments.get_opt(&name).await.map_err(Error::kube(format!("get Deployment {name}")))?;
        return Ok(Converged { deployment, paused: true, database: None });
    }

    let database_classes = if ms.spec.database.is_some() { database_classes(ctx).await? } else { Vec::new() };
    let world = World {
        microservices: ctx.store.state(),
        database_classes,
        settings: ctx.settings.clone(),
        ..World::default()
    };
    let mut children = render(ms, &world)?;

    let mut changed: Vec<String> = Vec::new();
    fn note(changed: &mut Vec<String>, kind: &str, o: Outcome) {
        if o == Outcome::Applied {
            changed.push(kind.to_string());
        }
    }

    // ServiceAccount first: the pods need it to be admitted.
    let sa_api: Api<ServiceAccount> = Api::namespaced(client.clone(), &ns);
    ensure_or_prune(&sa_api, &ctx.caches.service_accounts, ms, &name, children.service_account, &mut changed).await?;
    let np_api: Api<NetworkPolicy> = Api::namespaced(client.clone(), &ns);
    note(
        &mut changed,
        "NetworkPolicy",
        ensure(&np_api, &ctx.caches.network_policies, ms, children.network_policy).await?.1,
    );
    let svc_api: Api<Service> = Api::namespaced(client.clone(), &ns);
    note(&mut changed, "Service", ensure(&svc_api, &ctx.caches.services, ms, children.service).await?.1);

    // The database first: the pods read its binding, and roll when the credentials change.
    let mut db_state = None;
    if let Some(rendered) = &children.database {
        let cx = Cx::new(ms, &world);
        let state = db::converge(ctx, &cx, rendered, &world.database_classes).await?;
        changed.extend(state.changed.iter().cloned());
        if let Some(hash) = &state.credentials_hash
            && let Some(tmpl) = children.deployment.spec.as_mut().map(|s| &mut s.template)
        {
            tmpl.metadata
                .get_or_insert_with(Default::default)
                .annotations
                .get_or_insert_with(Default::default)
                .insert(crate::render::database::CREDENTIALS_HASH.into(), hash.clone());
        }
        db_state = Some(state);
    }

    if hand_off_replicas(&deployments, &children.deployment).await? {
        changed.push(String::from("Deployment replicas (handed to the HPA)"));
    }
    // The HPA exists before the Deployment stops declaring replicas.
    let hpa_api: Api<HorizontalPodAutoscaler> = Api::namespaced(client.clone(), &ns);
    if let Some(hpa) = children.hpa.clone() {
        note(&mut changed, "HorizontalPodAutoscaler", ensure(&hpa_api, &ctx.caches.hpas, ms, hpa).await?.1);
    }
    let (mut deployment, outcome) = ensure(&deployments, &ctx.caches.deployments, ms, children.deployment).await?;
    note(&mut changed, "Deployment", outcome);
    // A new Deployment under an HPA starts at one replica; start it at minReplicas instead
    // of waiting for the HPA's next sync.
    if let Some(min) = ms.spec.autoscaling.as_ref().map(|a| a.min())
        && deployment.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1) < min
    {
        set_replicas_by_handoff(&deployments, &name, min).await?;
        deployment = deployments.get(&name).await.map_err(Error::kube(format!("get Deployment {name}")))?;
        changed.push(String::from("Deployment replicas (raised to minReplicas)"));
    }
    // ...and is removed only after the Deployment declares replicas again.
    if children.hpa.is_none() && prune(&hpa_api, &ctx.caches.hpas, ms, &name).await? {
        changed.push(String::from("HorizontalPodAutoscaler (deleted)"));
    }

    let pdb_api: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), &ns);
    ensure_or_prune(&pdb_api, &ctx.caches.pdbs, ms, &name, children.pdb, &mut changed).await?;
    let ing_api: Api<Ingress> = Api::namespaced(client.clone(), &ns);
    ensure_or_prune(&ing_api, &ctx.caches.ingresses, ms, &name, children.ingress, &mut changed).await?;

    if !changed.is_empty() {
        info!(changed = ?changed, "children updated");
        publish(ctx, ms, EventType::Normal, "ChildrenUpdated", &format!("updated {}", changed.join(", "))).await;
    }
    Ok(Converged { deployment: Some(deployment), paused: false, database: db_state })
}

fn missing_dependencies(ms: &Microservice, ctx: &Context) -> Vec<String> {
    let own_ns = ms.ns().to_string();
    let all = ctx.store.state();
    ms.spec
        .dependencies
        .iter()
        .flatten()
        .filter_map(|d| {
            let (ns, svc) = d.target(&own_ns)?;
            let found = all
                .iter()
                .any(|m| m.metadata.name.as_deref() == Some(svc) && m.metadata.namespace.as_deref() == Some(ns));
            (!found).then(|| format!("{ns}/{svc}"))
        })
        .collect()
}

/// Patches the status only when it differs from what is stored.
async fn update_status(ms: &Microservice, ctx: &Context, observed: &Observed<'_>) -> Result<(), Error> {
    let status = compute(ms, observed, &ctx.settings, Timestamp::now());
    if ms.status.as_ref() == Some(&status) {
        return Ok(());
    }
    let api: Api<Microservice> = Api::namespaced(ctx.client.clone(), ms.ns());
    let body = serde_json::json!({
        "apiVersion": "flotilla.dev/v1alpha1",
        "kind": "Microservice",
        "status": status,
    });
    api.patch_status(&ms.name_any(), &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&body))
        .await
        .map_err(Error::kube("update status"))?;
    Ok(())
}

async fn publish(ctx: &Context, ms: &Microservice, type_: EventType, reason: &str, note: &str) {
    publish_on(ctx, &ms.object_ref(&()), type_, reason, note).await;
}

/// Reports a Microservice that cannot be read on its own status and in an Event, once per
/// change of the object; its children are left as they are.
async fn report_unreadable(ctx: &Context, ms: &Microservice, problem: &str) -> Result<(), Error> {
    let namespace = ms.ns();
    let name = ms.name_any();
    let message = format!("cannot read this object: {problem}");
    let old = ms.status.clone().unwrap_or_default();
    let conditions = unreadable(&old.conditions, ms.metadata.generation, &message, Timestamp::now());
    if conditions == old.conditions && old.observed_generation == ms.metadata.generation {
        return Ok(());
    }
    ctx.metrics.failures.get_or_create(&crate::metrics::ErrorLabels { category: "InvalidObject" }).inc();
    warn!(namespace, name, problem, "cannot read a Microservice; its children are left as they are");
    // A merge patch of the conditions alone, read back through the guard: the rest of the
    // object may be what cannot be read.
    let api: Api<Read> = Api::namespaced(ctx.client.clone(), namespace);
    let body = serde_json::json!({"status": {"observedGeneration": ms.metadata.generation, "conditions": conditions}});
    let params = PatchParams { field_manager: Some(FIELD_MANAGER.into()), ..Default::default() };
    api.patch_status(&name, &params, &Patch::Merge(&body)).await.map_err(Error::kube("report unreadable object"))?;
    publish(ctx, ms, EventType::Warning, "InvalidObject", &message).await;
    Ok(())
}

async fn publish_on(ctx: &Context, reference: &ObjectReference, type_: EventType, reason: &str, note: &str) {
    let ev = Event {
        type_,
        reason: reason.into(),
        note: Some(note.chars().take(1000).collect()),
        action: "Reconcile".into(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&ev, reference).await {
        warn!(error = %e, "cannot publish event");
    }
}

/// Invalid objects wait for a change; a child in the way (someone else's object) is looked at
/// again now and then, since its deletion reaches no watch of ours; everything else retries
/// with per-object exponential backoff and jitter.
pub fn error_policy(ms: Arc<Microservice>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics.failures.get_or_create(&crate::metrics::ErrorLabels { category: error.category() }).inc();
    if let Error::ChildConflict { .. } = error {
        warn!(namespace = ms.namespace(), name = ms.name_any(), %error, retry_in = ?CONFLICT_RECHECK, "a child is in the way");
        return Action::requeue(CONFLICT_RECHECK);
    }
    if error.waits_for_change() {
        warn!(namespace = ms.namespace(), name = ms.name_any(), %error, "waiting for a change");
        return Action::await_change();
    }
    let delay = ctx.next_backoff(&ms);
    warn!(namespace = ms.namespace(), name = ms.name_any(), %error, retry_in = ?delay, "reconcile failed");
    Action::requeue(delay)
}

/// Applies an optional child, or deletes it when the spec no longer asks for it.
async fn ensure_or_prune<K>(
    api: &Api<K>,
    cache: &Store<K>,
    ms: &Microservice,
    name: &str,
    desired: Option<K>,
    changed: &mut Vec<String>,
) -> Result<(), Error>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + std::fmt::Debug
        + serde::Serialize
        + serde::de::DeserializeOwned,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone,
{
    let kind = K::kind(&K::DynamicType::default()).into_owned();
    match desired {
        Some(obj) => {
            if ensure(api, cache, ms, obj).await?.1 == Outcome::Applied {
                changed.push(kind);
            }
        }
        None => {
            if prune(api, cache, ms, name).await? {
                changed.push(format!("{kind} (deleted)"));
            }
        }
    }
    Ok(())
}

/// Every readable DatabaseClass: from the watched cache once it has synced (no request), listed
/// before that.
async fn database_classes(ctx: &Context) -> Result<Vec<Arc<DatabaseClass>>, Error> {
    use futures::FutureExt;
    use kube::core::DeserializeGuard;
    // Nothing else waits on this cache, so a single poll of its readiness steals no wake-up.
    let classes: Vec<Arc<DeserializeGuard<DatabaseClass>>> = match ctx.classes.wait_until_ready().now_or_never() {
        Some(Ok(())) => ctx.classes.state(),
        _ => {
            let api: Api<DeserializeGuard<DatabaseClass>> = Api::all(ctx.client.clone());
            let list = api.list(&Default::default()).await.map_err(Error::kube("list DatabaseClasses"))?;
            list.items.into_iter().map(Arc::new).collect()
        }
    };
    Ok(classes.iter().filter_map(|c| c.0.as_ref().ok().cloned().map(Arc::new)).collect())
}

/// Adds or removes the database finalizer, guarded by the resourceVersion read.
async fn set_finalizer(ctx: &Context, ms: &Microservice, present: bool) -> Result<(), Error> {
    let mut finalizers: Vec<String> = ms.finalizers().iter().filter(|f| *f != database::FINALIZER).cloned().collect();
    if present {
        finalizers.push(database::FINALIZER.into());
    }
    let api: Api<Microservice> = Api::namespaced(ctx.client.clone(), ms.ns());
    let patch = serde_json::json!({"metadata": {"finalizers": finalizers, "resourceVersion": ms.resource_version()}});
    api.patch(&ms.name_any(), &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(Error::kube(if present { "add finalizer" } else { "remove finalizer" }))?;
    Ok(())
}
