//! One reconcile: guard → lifecycle → world → check → children → apply → prune → status
//! (ARCHITECTURE.md draws it).

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{Service, ServiceAccount};
use k8s_openapi::api::networking::v1::{Ingress, NetworkPolicy};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use kube::{Resource, ResourceExt};
use tracing::{info, warn};

use super::apply::{FIELD_MANAGER, apply_child, prune_child};
use super::context::{Caches, Context};
use super::database::{self, DbState, Phase};
use super::error::Error;
use super::guard::{self, Read};
use super::replicas;
use super::status::{INVALID_OBJECT, Observed, compute, unreadable};
use crate::api::{DatabaseClass, DeletionPolicy, Microservice};
use crate::render::database::{CREDENTIALS_HASH, FINALIZER, Reason};
use crate::render::{self, Checked, Children, World};

/// How often a converged Microservice is looked at again, to repair what no watch reported.
const RESYNC: Duration = Duration::from_secs(300);
/// How often a Microservice whose child's name is taken by someone else's object is looked at.
const CONFLICT_RECHECK: Duration = Duration::from_secs(20);
/// How often a database that is not ready yet is looked at.
const DATABASE_POLL: Duration = Duration::from_secs(3);
/// After creating a Deployment, the latest the status is written (see `reconcile`).
const FIRST_STATUS: Duration = Duration::from_secs(5);

/// [`reconcile`], given up after `limit`. A request to an API server that stalls can hang far
/// longer (the client's read timeout is 295 s), holding one of the few workers; given up, the
/// service is tried again after a backoff like any failure. Each write is whole or not made, so
/// a reconcile stopped between two writes leaves nothing the next one does not finish.
pub async fn within(limit: Duration, ms: Arc<Microservice>, ctx: Arc<Context>) -> Result<Action, Error> {
    match tokio::time::timeout(limit, reconcile(ms, ctx)).await {
        Ok(result) => result,
        Err(_) => Err(Error::Timeout(limit)),
    }
}

#[tracing::instrument(skip_all, fields(namespace = ms.ns(), name = ms.name_any()))]
pub async fn reconcile(ms: Arc<Microservice>, ctx: Arc<Context>) -> Result<Action, Error> {
    let _timer = ctx.metrics.reconcile();
    ctx.metrics.reconciled(ms.ns(), &ms.name_any());
    if let Some(problem) = guard::problem(&ms) {
        // A stand-in for an object this build cannot read: report it, touch nothing else.
        report_unreadable(&ctx, &ms, problem).await?;
        return Ok(Action::await_change());
    }
    let has_finalizer = ms.finalizers().iter().any(|f| f == FINALIZER);
    if ms.meta().deletion_timestamp.is_some() {
        // Owner references let the garbage collector remove the children; the finalizer is
        // there so that a database's data is kept (or deleted) as its policy says first.
        if has_finalizer {
            let classes = database_classes(&ctx).await?;
            match ms.spec.database.clone().unwrap_or_default().deletion_policy() {
                DeletionPolicy::Retain => database::retain(&ctx, &ms, &classes).await?,
                DeletionPolicy::Delete => database::delete(&ctx, &ms, &classes).await?,
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
        database::detach(&ctx, &ms, &classes).await?;
        set_finalizer(&ctx, &ms, false).await?;
    }
    // One snapshot of the world serves the render and the status.
    let world = world_of(&ms, &ctx).await?;
    let result = converge(&ms, &ctx, &world).await;
    let mut observed = Observed {
        missing_dependencies: missing_dependencies(&ms, &world),
        not_admitted: world.not_admitting(&ms),
        ..Default::default()
    };
    let mut db_pending = false;
    match &result {
        Ok(Converged { deployment, hpa, paused, database, .. }) => {
            observed.deployment = deployment.as_ref();
            observed.hpa = hpa.as_ref();
            observed.paused = *paused;
            observed.database = database.clone();
            // A class problem waits for the class, a claim for its watch, a claim kind for its
            // CRD (all watched); the rest of a database coming up is polled (a volume claim, an
            // operator's connection Secret).
            db_pending = database.as_ref().is_some_and(|d| {
                !d.ready()
                    && d.phase() != Phase::Failed
                    && !matches!(d.reason, Reason::ClaimNotReady | Reason::ClaimKindNotServed)
            });
        }
        Err(e) if e.waits_for_change() => {
            let message = e.for_user();
            record_event(&ctx, &ms, EventType::Warning, e.category(), &message).await;
            observed.blocked = Some((e.category(), message));
        }
        // Transient: keep the last status; the error policy retries.
        Err(_) => {}
    }
    // A Deployment this reconcile created is not ready yet by construction, and the first status
    // the controller-manager gives it brings the next reconcile within moments: that one writes
    // the status, so a new service costs one status write, not two. The requeue is the bound
    // should that update not come. Not with a database: what its first reconcile found (data
    // retained from an earlier service, and adopted) is said only by the status it writes.
    let created = matches!(&result, Ok(c) if c.created && c.database.is_none());
    if (result.is_ok() && !created) || observed.blocked.is_some() {
        update_status(&ms, &ctx, &observed).await?;
    }
    result?;
    if created {
        return Ok(Action::requeue(if db_pending { DATABASE_POLL } else { FIRST_STATUS }));
    }
    ctx.reset_backoff(&ms);
    // Volume claims and connection Secrets are not watched: look again soon while the database
    // comes up.
    Ok(Action::requeue(if db_pending { DATABASE_POLL } else { RESYNC }))
}

struct Converged {
    /// Whether this reconcile created the Deployment.
    created: bool,
    deployment: Option<Deployment>,
    hpa: Option<HorizontalPodAutoscaler>,
    paused: bool,
    database: Option<DbState>,
}

/// The stages of one reconcile of a live Microservice, top to bottom; each stage's output is the
/// next one's input, so they cannot run out of order.
async fn converge(ms: &Microservice, ctx: &Context, world: &World) -> Result<Converged, Error> {
    if ms.spec.paused == Some(true) {
        let deployments: Api<Deployment> = Api::namespaced(ctx.client.clone(), ms.ns());
        let name = ms.name_any();
        let deployment = deployments.get_opt(&name).await.map_err(Error::kube(format!("get Deployment {name}")))?;
        return Ok(Converged { created: false, deployment, hpa: None, paused: true, database: None });
    }
    let checked = render::check(ms, world)?;
    let children = render::children(&checked);
    let mut applied = apply_children(ctx, &checked, children).await?;
    prune_children(ctx, ms, &applied.wanted, &mut applied.changed).await?;
    if !applied.changed.is_empty() {
        info!(changed = ?applied.changed, "children updated");
        let note = format!("updated {}", applied.changed.join(", "));
        record_event(ctx, ms, EventType::Normal, "ChildrenUpdated", &note).await;
    }
    Ok(Converged {
        created: applied.created,
        deployment: Some(applied.deployment),
        hpa: applied.hpa,
        paused: false,
        database: applied.database,
    })
}

/// What rendering reads besides the object: every Microservice (from the watch cache), the
/// DatabaseClasses when the service has a database, and the operator's settings.
async fn world_of(ms: &Microservice, ctx: &Context) -> Result<World, Error> {
    let database_classes = if ms.spec.database.is_some() { database_classes(ctx).await? } else { Vec::new() };
    let foreign_ingresses = match render::hosts::claimed_host(ms) {
        Some(host) => foreign_claims(ctx, &host).await?,
        None => Vec::new(),
    };
    Ok(World { microservices: ctx.fleet.clone(), database_classes, settings: ctx.settings.clone(), foreign_ingresses })
}

/// The Ingresses Flotilla did not make that claim `host`: from their watch once it has synced,
/// listed before that.
async fn foreign_claims(ctx: &Context, host: &str) -> Result<Vec<render::hosts::HostClaim>, Error> {
    use futures::FutureExt;
    use k8s_openapi::api::networking::v1::Ingress;
    let store = &ctx.caches.foreign_ingresses;
    let ingresses: Vec<Arc<Ingress>> = match store.wait_until_ready().now_or_never() {
        Some(Ok(())) => store.state(),
        _ => {
            // Within the namespaces watched: the operator may have no rights elsewhere.
            let selector = format!("{}!={}", crate::api::contract::MANAGED_BY_LABEL, crate::api::contract::MANAGER);
            let mut found = Vec::new();
            for api in ctx.caches.scope.apis::<Ingress>(&ctx.client) {
                let list = api
                    .list(&kube::api::ListParams::default().labels(&selector))
                    .await
                    .map_err(Error::kube("list Ingresses"))?;
                found.extend(list.items.into_iter().map(Arc::new));
            }
            found
        }
    };
    Ok(ingresses
        .iter()
        .flat_map(|ing| {
            render::hosts::ingress_hosts(ing).filter(|h| h == host).map(|host| render::hosts::HostClaim {
                namespace: ing.namespace().unwrap_or_default(),
                name: ing.name_any(),
                host,
                created: ing.metadata.creation_timestamp.clone(),
            })
        })
        .collect())
}

/// The children after they were applied.
struct Applied {
    /// Whether the Deployment was created (it was in no cache, and the server had none).
    created: bool,
    deployment: Deployment,
    hpa: Option<HorizontalPodAutoscaler>,
    database: Option<DbState>,
    /// The kinds of child the render asked for under the service's name: the prune stage
    /// deletes the service's children of every other kind.
    wanted: Wanted,
    /// What was written, for the log and the ChildrenUpdated Event.
    changed: Vec<String>,
}

/// Kinds of child asked for (by `Resource::kind`).
type Wanted = std::collections::HashSet<String>;

/// Notes that the render asks for a child of `K`.
fn want<K: kube::Resource>(wanted: &mut Wanted, dt: &K::DynamicType) {
    wanted.insert(K::kind(dt).into_owned());
}

/// Stage 3: applies every child, in the order the pods need them, and hands the replica count
/// between the Deployment and the HPA. The destructuring is exhaustive: a new child kind does
/// not compile until it is applied here (and, when optional, pruned).
async fn apply_children(ctx: &Context, checked: &Checked<'_>, children: Children) -> Result<Applied, Error> {
    let Children { service_account, mut deployment, service, hpa, network_policy, pdb, ingress, database } = children;
    let input = checked.input();
    let (ms, caches) = (input.ms, &ctx.caches);
    let mut wanted = Wanted::new();
    let mut changed = Vec::new();

    // One after another, so that a child refused (a name someone else holds) stops the rest:
    // nothing after a conflict is written. The ServiceAccount first: the pods need it to be
    // admitted.
    if let Some(sa) = service_account {
        want::<ServiceAccount>(&mut wanted, &());
        apply_child(ctx, &caches.service_accounts, ms, sa, &mut changed).await?;
    }
    // The NetworkPolicy before any pod of this render runs.
    want::<NetworkPolicy>(&mut wanted, &());
    apply_child(ctx, &caches.network_policies, ms, network_policy, &mut changed).await?;
    want::<Service>(&mut wanted, &());
    apply_child(ctx, &caches.services, ms, service, &mut changed).await?;

    // The database before the Deployment: the pods read its binding, and roll when the
    // credentials change.
    let database = match &database {
        Some(rendered) => {
            let state = database::provision(ctx, input, rendered).await?;
            changed.extend(state.changed.iter().cloned());
            if let Some(hash) = &state.credentials_hash
                && let Some(tmpl) = deployment.spec.as_mut().map(|s| &mut s.template)
            {
                tmpl.metadata
                    .get_or_insert_with(Default::default)
                    .annotations
                    .get_or_insert_with(Default::default)
                    .insert(CREDENTIALS_HASH.into(), hash.clone());
            }
            Some(state)
        }
        None => None,
    };

    // The HPA and the Deployment together: they share `spec.replicas`.
    let new = caches.deployments.lacks(Some(ms.ns()), &ms.name_any());
    let (deployment, hpa) = replicas::apply_scaled(ctx, ms, deployment, hpa, &mut changed).await?;
    // Absent from the synced cache, and now there: made just now (the apply refuses a name
    // someone else holds).
    let created = new && changed.iter().any(|c| c == "Deployment");
    want::<Deployment>(&mut wanted, &());
    if hpa.is_some() {
        want::<HorizontalPodAutoscaler>(&mut wanted, &());
    }

    if let Some(pdb) = pdb {
        want::<PodDisruptionBudget>(&mut wanted, &());
        apply_child(ctx, &caches.pdbs, ms, pdb, &mut changed).await?;
    }
    if let Some(ingress) = ingress {
        want::<Ingress>(&mut wanted, &());
        apply_child(ctx, &caches.ingresses, ms, ingress, &mut changed).await?;
    }
    Ok(Applied { created, deployment, hpa, database, wanted, changed })
}

/// Stage 4: deletes the service's children (Flotilla's own, found through their watch caches)
/// of every kind the render did not ask for, once everything it does ask for is applied. The
/// caches are destructured without `..`: a new kind of child does not compile until it is
/// pruned here, or said to be someone else's to delete.
async fn prune_children(
    ctx: &Context,
    ms: &Microservice,
    wanted: &Wanted,
    changed: &mut Vec<String>,
) -> Result<(), Error> {
    let Caches {
        deployments,
        services,
        service_accounts,
        hpas,
        network_policies,
        pdbs,
        ingresses,
        // The database's children and data: its retention decides (database::retention).
        stateful_sets: _,
        secrets: _,
        claims: _,
        // Not children.
        foreign_ingresses: _,
        crds: _,
        scope: _,
    } = &ctx.caches;
    prune_unwanted(ctx, ms, wanted, deployments, changed).await?;
    prune_unwanted(ctx, ms, wanted, services, changed).await?;
    prune_unwanted(ctx, ms, wanted, service_accounts, changed).await?;
    prune_unwanted(ctx, ms, wanted, hpas, changed).await?;
    prune_unwanted(ctx, ms, wanted, network_policies, changed).await?;
    prune_unwanted(ctx, ms, wanted, pdbs, changed).await?;
    prune_unwanted(ctx, ms, wanted, ingresses, changed).await?;
    Ok(())
}

/// Deletes the service's child of kind `K` unless the render asked for one.
async fn prune_unwanted<K>(
    ctx: &Context,
    ms: &Microservice,
    wanted: &Wanted,
    cache: &crate::controller::cache::Cache<K>,
    changed: &mut Vec<String>,
) -> Result<(), Error>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + std::fmt::Debug
        + serde::Serialize
        + serde::de::DeserializeOwned,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone,
{
    let kind = K::kind(&K::DynamicType::default()).into_owned();
    if wanted.contains(&kind) {
        return Ok(());
    }
    if prune_child(ctx, cache, ms).await? {
        changed.push(format!("{kind} (deleted)"));
    }
    Ok(())
}

fn missing_dependencies(ms: &Microservice, world: &World) -> Vec<String> {
    let own_ns = ms.ns();
    let targets = ms.spec.dependencies.iter().flatten().filter_map(|d| d.target(own_ns));
    targets.filter(|(ns, svc)| world.find(ns, svc).is_none()).map(|(ns, svc)| format!("{ns}/{svc}")).collect()
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
    ctx.metrics.failures.get_or_create(&crate::metrics::ErrorLabels { category: INVALID_OBJECT }).inc();
    warn!(namespace, name, problem, "cannot read a Microservice; its children are left as they are");
    // A merge patch of the conditions alone, read back through the guard: the rest of the
    // object may be what cannot be read.
    let api: Api<Read> = Api::namespaced(ctx.client.clone(), namespace);
    let body = serde_json::json!({"status": {"observedGeneration": ms.metadata.generation, "conditions": conditions}});
    let params = PatchParams { field_manager: Some(FIELD_MANAGER.into()), ..Default::default() };
    api.patch_status(&name, &params, &Patch::Merge(&body)).await.map_err(Error::kube("report unreadable object"))?;
    record_event(ctx, ms, EventType::Warning, INVALID_OBJECT, &message).await;
    Ok(())
}

/// Records an Event on `ms`; a failure to record one is logged, never fatal.
async fn record_event(ctx: &Context, ms: &Microservice, type_: EventType, reason: &str, note: &str) {
    let ev = Event {
        type_,
        reason: reason.into(),
        note: Some(note.chars().take(1000).collect()),
        action: "Reconcile".into(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&ev, &ms.object_ref(&())).await {
        warn!(error = %e, "cannot publish event");
    }
}

/// The longest wait before a write refused as a conflict (409) is tried again.
const CONFLICT_RETRY_MAX: Duration = Duration::from_secs(4);

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
    // A write over a stale read (409) is tried again soon: the watch brings the newer object in
    // moments. After an API server restart the cache can lag for seconds, and a backoff that grew
    // through those conflicts left services waiting minutes once all was well (the fault suite).
    let delay = match error.category() {
        "ApiConflict" => ctx.next_backoff_up_to(&ms, CONFLICT_RETRY_MAX),
        _ => ctx.next_backoff(&ms),
    };
    warn!(namespace = ms.namespace(), name = ms.name_any(), %error, retry_in = ?delay, "reconcile failed");
    Action::requeue(delay)
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
    let mut finalizers: Vec<String> = ms.finalizers().iter().filter(|f| *f != FINALIZER).cloned().collect();
    if present {
        finalizers.push(FINALIZER.into());
    }
    let api: Api<Microservice> = Api::namespaced(ctx.client.clone(), ms.ns());
    let patch = serde_json::json!({"metadata": {"finalizers": finalizers, "resourceVersion": ms.resource_version()}});
    api.patch(&ms.name_any(), &super::apply::merge_params(), &Patch::Merge(&patch))
        .await
        .map_err(Error::kube(if present { "add finalizer" } else { "remove finalizer" }))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::controller::fake_api::FakeApi;

    #[tokio::test]
    async fn a_write_over_a_stale_read_is_refused_and_retried_not_waited_on() {
        let api = FakeApi::default();
        let ctx = Arc::new(Context::offline(api.client()));
        let path = "/apis/flotilla.dev/v1alpha1/namespaces/shop/microservices/api";
        api.put(
            path,
            json!({"apiVersion": "flotilla.dev/v1alpha1", "kind": "Microservice",
            "metadata": {"name": "api", "namespace": "shop"}, "spec": {"image": "api:1"}}),
        );
        let fresh: Microservice = serde_json::from_value(api.get(path).unwrap()).unwrap();
        // Someone else writes after our read.
        api.put(path, api.get(path).unwrap());
        let error = set_finalizer(&ctx, &fresh, true).await.expect_err("a stale resourceVersion");
        assert_eq!(error.category(), "ApiConflict");
        assert!(!error.waits_for_change());
        assert!(api.get(path).unwrap().pointer("/metadata/finalizers").is_none(), "nothing written");
        assert_ne!(error_policy(Arc::new(fresh.clone()), &error, ctx.clone()), Action::await_change());
        // Conflict after conflict, the retry stays within seconds.
        for _ in 0..8 {
            error_policy(Arc::new(fresh.clone()), &error, ctx.clone());
        }
        assert!(ctx.next_backoff_up_to(&fresh, CONFLICT_RETRY_MAX) <= CONFLICT_RETRY_MAX.mul_f64(1.2));

        // Read again, the same write goes through.
        let again: Microservice = serde_json::from_value(api.get(path).unwrap()).unwrap();
        set_finalizer(&ctx, &again, true).await.expect("a fresh resourceVersion");
        assert_eq!(api.get(path).unwrap()["metadata"]["finalizers"], json!([FINALIZER]));
    }
}
