//! Converging a service's database, and keeping its data when the service goes.

use std::fmt::Debug;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Secret, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::GroupVersionKind;
use kube::discovery::pinned_kind;
use kube::{Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde_json::json;
use tracing::info;

use super::apply::{Cached, Outcome, cached, check_ownership, controlled_by, ensure, ensure_with};
use super::context::Context;
use super::error::Error;
use crate::api::databaseclass::{ClaimProvisioner, Provisioner};
use crate::api::defaults::parse_quantity;
use crate::api::{DatabaseClass, DeletionPolicy, Microservice};
use crate::render::Cx;
use crate::render::database::{
    self, ClassProblem, Connection, DatabaseChildren, RETAINED_FROM, binding_hash, binding_secret, binding_secret_name,
    connection_secret_name, credentials_secret, credentials_secret_name, embedded_connection, generate_password,
    is_tracking_label, object_name, ready_condition, volume_claim_name,
};

/// Where a service's database stands, for its status.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DbState {
    pub class: Option<String>,
    pub ready: bool,
    /// Pending, Provisioning, Ready or Failed.
    pub phase: &'static str,
    pub reason: String,
    pub message: String,
    /// Existing retained data was adopted.
    pub retained: bool,
    /// Hash of the binding, stamped on the pod template.
    pub credentials_hash: Option<String>,
    pub changed: Vec<String>,
}

impl DbState {
    fn waiting(class: Option<String>, phase: &'static str, reason: &str, message: String) -> Self {
        DbState { class, phase, reason: reason.into(), message, ..Default::default() }
    }
}

/// Brings the database of `cx`'s service to its desired state and reports where it stands.
pub async fn converge(
    ctx: &Context,
    cx: &Cx<'_>,
    rendered: &Result<DatabaseChildren, ClassProblem>,
    classes: &[std::sync::Arc<DatabaseClass>],
) -> Result<DbState, Error> {
    let db = match rendered {
        Ok(db) => db,
        Err((reason, message)) => return Ok(DbState::waiting(None, "Failed", reason, message.clone())),
    };
    let class = classes.iter().find(|c| c.metadata.name.as_deref() == Some(db.class.as_str()));
    match (db.provisioner, class.and_then(|c| c.spec.claim.as_ref())) {
        (Provisioner::Embedded, _) => embedded(ctx, cx, db).await,
        (Provisioner::Claim, Some(claim)) => claimed(ctx, cx, db, claim).await,
        (Provisioner::Claim, None) => Ok(DbState::waiting(
            Some(db.class.clone()),
            "Failed",
            "InvalidClass",
            format!("DatabaseClass {} has provisioner claim but no claim section", db.class),
        )),
    }
}

async fn embedded(ctx: &Context, cx: &Cx<'_>, db: &DatabaseChildren) -> Result<DbState, Error> {
    let ms = cx.ms;
    let client = ctx.client.clone();
    let mut state = DbState { class: Some(db.class.clone()), ..Default::default() };

    // Credentials: generated once, never regenerated; a retained Secret is adopted as it is.
    let secrets: Api<Secret> = Api::namespaced(client.clone(), cx.namespace);
    let creds_name = credentials_secret_name(cx.name);
    let creds = match secrets.get_opt(&creds_name).await.map_err(Error::kube(format!("get Secret {creds_name}")))? {
        Some(existing) => {
            check_ownership(&existing, ms, "Secret")?;
            state.retained |= adopt(&secrets, &existing, ms).await?;
            existing
        }
        None => {
            let fresh = credentials_secret(cx, db.engine, &generate_password());
            state.changed.push("database credentials (generated)".into());
            secrets
                .create(&PostParams::default(), &fresh)
                .await
                .map_err(Error::kube(format!("create Secret {creds_name}")))?
        }
    };

    // The NetworkPolicy before the pods it protects: a refused policy (another's object of
    // that name) stops here, before a database pod runs unprotected.
    if let Some(np) = db.network_policy.clone() {
        let (_, o) = ensure(
            &Api::<NetworkPolicy>::namespaced(client.clone(), cx.namespace),
            &ctx.caches.network_policies,
            ms,
            np,
        )
        .await?;
        note(&mut state, "database NetworkPolicy", o);
    }
    if let Some(svc) = db.service.clone() {
        let (_, o) =
            ensure(&Api::<Service>::namespaced(client.clone(), cx.namespace), &ctx.caches.services, ms, svc).await?;
        note(&mut state, "database Service", o);
    }
    // Its ServiceAccount before the pods that run under it are created.
    if let Some(sa) = db.service_account.clone() {
        let (_, o) = ensure(
            &Api::<ServiceAccount>::namespaced(client.clone(), cx.namespace),
            &ctx.caches.service_accounts,
            ms,
            sa,
        )
        .await?;
        note(&mut state, "database ServiceAccount", o);
    }
    // The StatefulSet keeps the volume claim template it was created with (the API server does
    // not allow changing it); a larger `storage` expands the claim itself below.
    let sts_api: Api<StatefulSet> = Api::namespaced(client.clone(), cx.namespace);
    if let Some(sts) = db.stateful_set.clone() {
        let (_, o) = ensure_with(
            &sts_api,
            cached(Some(&ctx.caches.stateful_sets), &sts_api, &sts.name_any()),
            ms,
            sts,
            "StatefulSet",
            |live, desired| {
                if let (Some(l), Some(d)) = (live.spec.as_ref(), desired.spec.as_mut()) {
                    d.volume_claim_templates = l.volume_claim_templates.clone();
                }
            },
        )
        .await?;
        note(&mut state, "database StatefulSet", o);
    }

    let binding = match embedded_connection(cx, db.engine, &creds) {
        Some(conn) => publish_binding(ctx, cx, db, "flotilla", &conn, &mut state).await?,
        None => {
            return Ok(DbState {
                phase: "Failed",
                reason: "CredentialsIncomplete".into(),
                message: format!("Secret {creds_name} lacks username, password or database"),
                ..state
            });
        }
    };
    state.credentials_hash = Some(binding);

    // The volume claim: bound, and as large as asked.
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), cx.namespace);
    let pvc_name = volume_claim_name(cx.name);
    let Some(pvc) =
        pvcs.get_opt(&pvc_name).await.map_err(Error::kube(format!("get PersistentVolumeClaim {pvc_name}")))?
    else {
        return Ok(DbState {
            phase: "Pending",
            reason: "VolumePending".into(),
            message: format!("waiting for volume claim {pvc_name} to be created"),
            ..state
        });
    };
    state.retained |= adopt(&pvcs, &pvc, ms).await?;
    if let Some(msg) = expand(&pvcs, &pvc, cx).await? {
        state.changed.push(msg);
    }
    let phase = pvc.status.as_ref().and_then(|s| s.phase.clone()).unwrap_or_default();
    if phase != "Bound" {
        return Ok(DbState {
            phase: "Pending",
            reason: "VolumePending".into(),
            message: format!(
                "volume claim {pvc_name} is {}; the database cannot start until it is bound",
                if phase.is_empty() { "Pending" } else { &phase }
            ),
            ..state
        });
    }
    let sts = sts_api.get_opt(&object_name(cx.name)).await.map_err(Error::kube("get database StatefulSet"))?;
    let ready = sts.and_then(|s| s.status).and_then(|s| s.ready_replicas).unwrap_or(0) >= 1;
    if !ready {
        return Ok(DbState {
            phase: "Provisioning",
            reason: "Starting".into(),
            message: format!("database {} is starting", object_name(cx.name)),
            ..state
        });
    }
    Ok(DbState {
        ready: true,
        phase: "Ready",
        reason: "Ready".into(),
        message: format!("{} database {} is ready", db.engine.binding_type(), object_name(cx.name)),
        ..state
    })
}

/// Grows the claim to `database.storage`; never shrinks it.
async fn expand(
    pvcs: &Api<PersistentVolumeClaim>,
    pvc: &PersistentVolumeClaim,
    cx: &Cx<'_>,
) -> Result<Option<String>, Error> {
    let want =
        cx.spec.database.as_ref().and_then(|d| d.storage.clone()).unwrap_or_else(|| database::DEFAULT_STORAGE.into());
    let have = pvc
        .spec
        .as_ref()
        .and_then(|s| s.resources.as_ref())
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get("storage"))
        .map(|q| q.0.clone());
    let (Some(w), Some(h)) = (parse_quantity(&want), have.as_deref().and_then(parse_quantity)) else { return Ok(None) };
    if w <= h {
        return Ok(None);
    }
    let name = pvc.name_any();
    pvcs.patch(
        &name,
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"resources": {"requests": {"storage": want}}}})),
    )
    .await
    .map_err(Error::kube(format!("expand PersistentVolumeClaim {name}")))?;
    Ok(Some(format!("volume claim {name} expanded to {want}")))
}

async fn claimed(
    ctx: &Context,
    cx: &Cx<'_>,
    db: &DatabaseChildren,
    claim: &ClaimProvisioner,
) -> Result<DbState, Error> {
    let ms = cx.ms;
    let mut state = DbState { class: Some(db.class.clone()), ..Default::default() };
    let Some(object) = db.claim.clone() else {
        return Ok(DbState::waiting(state.class, "Failed", "InvalidClass", "no claim object".into()));
    };
    let gvk = match GroupVersionKind::try_from(&kube::core::TypeMeta {
        api_version: claim.api_version.clone(),
        kind: claim.kind.clone(),
    }) {
        Ok(g) => g,
        Err(e) => return Ok(DbState::waiting(state.class, "Failed", "InvalidClass", e.to_string())),
    };
    let (ar, _) = match pinned_kind(&ctx.client, &gvk).await {
        Ok(found) => found,
        Err(_) => {
            return Ok(DbState::waiting(
                state.class,
                "Pending",
                "ClaimKindNotServed",
                format!(
                    "{}/{} is not served by the API server; install the database operator's CRDs",
                    claim.api_version, claim.kind
                ),
            ));
        }
    };
    let api: Api<DynamicObject> = Api::namespaced_with(ctx.client.clone(), cx.namespace, &ar);
    let desired: DynamicObject =
        serde_json::from_value(object).map_err(|source| Error::Serialize { what: "claim", source })?;
    if let Some(existing) = api.get_opt(&desired.name_any()).await.map_err(Error::kube("get claim"))? {
        state.retained |= adopt(&api, &existing, ms).await?;
    }
    let (live, o) = ensure_with(&api, Cached::Unknown, ms, desired, &claim.kind, |_, _| {}).await?;
    note(&mut state, &format!("database {}", claim.kind), o);
    let live_value = serde_json::to_value(&live).map_err(|source| Error::Serialize { what: "claim", source })?;
    let (condition, ready) = ready_condition(claim, &live_value);
    if !ready {
        return Ok(DbState {
            phase: "Provisioning",
            reason: "ClaimNotReady".into(),
            message: format!("waiting for {} {} to report {condition}=True", claim.kind, live.name_any()),
            ..state
        });
    }
    let secret_name = match connection_secret_name(cx, claim) {
        Ok(n) => n,
        Err(m) => return Ok(DbState { phase: "Failed", reason: "InvalidClass".into(), message: m, ..state }),
    };
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), cx.namespace);
    let Some(conn_secret) =
        secrets.get_opt(&secret_name).await.map_err(Error::kube(format!("get Secret {secret_name}")))?
    else {
        return Ok(DbState {
            phase: "Provisioning",
            reason: "ConnectionSecretMissing".into(),
            message: format!("waiting for Secret {secret_name}"),
            ..state
        });
    };
    let keys = claim.connection_secret.keys.clone().unwrap_or_default();
    let get = |meaning: &str| {
        let key = keys.get(meaning).cloned().unwrap_or_else(|| meaning.to_string());
        conn_secret.data.as_ref()?.get(&key).and_then(|v| String::from_utf8(v.0.clone()).ok())
    };
    let missing: Vec<&str> =
        ["host", "port", "username", "password"].into_iter().filter(|m| get(m).is_none()).collect();
    if !missing.is_empty() {
        return Ok(DbState {
            phase: "Provisioning",
            reason: "ConnectionSecretIncomplete".into(),
            message: format!("Secret {secret_name} lacks {}", missing.join(", ")),
            ..state
        });
    }
    let conn = Connection {
        host: get("host").unwrap_or_default(),
        port: get("port").unwrap_or_default(),
        username: get("username").unwrap_or_default(),
        password: get("password").unwrap_or_default(),
        database: get("database").unwrap_or_else(|| cx.name.replace('-', "_")),
        uri: get("uri"),
    };
    let provider = claim.api_version.split('/').next().unwrap_or("claim").to_string();
    state.credentials_hash = Some(publish_binding(ctx, cx, db, &provider, &conn, &mut state).await?);
    Ok(DbState {
        ready: true,
        phase: "Ready",
        reason: "Ready".into(),
        message: format!("{} {} is ready", claim.kind, live.name_any()),
        ..state
    })
}

/// Writes the binding Secret (adopting a retained one) and returns the hash of its content.
async fn publish_binding(
    ctx: &Context,
    cx: &Cx<'_>,
    db: &DatabaseChildren,
    provider: &str,
    conn: &Connection,
    state: &mut DbState,
) -> Result<String, Error> {
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), cx.namespace);
    let desired = binding_secret(cx, db.engine, provider, conn);
    let hash = binding_hash(&desired);
    let name = binding_secret_name(cx.name);
    if let Some(existing) = secrets.get_opt(&name).await.map_err(Error::kube(format!("get Secret {name}")))? {
        state.retained |= adopt(&secrets, &existing, cx.ms).await?;
    }
    let (_, o) = ensure(&secrets, &ctx.caches.secrets, cx.ms, desired).await?;
    note(state, "database binding Secret", o);
    Ok(hash)
}

fn note(state: &mut DbState, what: &str, o: Outcome) {
    if o == Outcome::Applied {
        state.changed.push(what.to_string());
    }
}

/// Takes back data retained from an earlier Microservice of the same name: drops the
/// retained-from mark (the next apply restores the owner reference). True when it adopted.
async fn adopt<K>(api: &Api<K>, obj: &K, ms: &Microservice) -> Result<bool, Error>
where
    K: Resource + Clone + Debug + DeserializeOwned,
{
    let Some(from) = obj.annotations().get(RETAINED_FROM) else { return Ok(false) };
    let me = format!("{}/{}", ms.ns(), ms.name_any());
    if *from != me || controlled_by(obj, ms) {
        return Ok(false);
    }
    let patch = json!({"metadata": {"annotations": {RETAINED_FROM: null}}});
    api.patch(&obj.name_any(), &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(Error::kube(format!("adopt retained {}", obj.name_any())))?;
    info!(object = %obj.name_any(), "adopted retained database data");
    Ok(true)
}

/// Keeps the data of `ms`'s database past its deletion: drops owner references and GitOps
/// tracking labels, marks each object with where it came from.
pub async fn retain(ctx: &Context, ms: &Microservice, classes: &[std::sync::Arc<DatabaseClass>]) -> Result<(), Error> {
    let ns = ms.ns();
    let name = ms.name_any();
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), ns);
    for s in [credentials_secret_name(&name), binding_secret_name(&name)] {
        orphan(&secrets, &s, ms, None).await?;
    }
    // The StatefulSet may have been created with `deletionPolicy: Delete`, which makes it the
    // owner of the claim: switch it to Retain and cut that link too, so that the garbage
    // collector removing the StatefulSet cannot take the data with it.
    let sts_api: Api<StatefulSet> = Api::namespaced(ctx.client.clone(), ns);
    let mut sts_uid = None;
    if let Some(sts) = sts_api.get_opt(&object_name(&name)).await.map_err(Error::kube("get database StatefulSet"))?
        && controlled_by(&sts, ms)
    {
        let keep = json!({"spec": {"persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Retain", "whenScaled": "Retain"}}});
        sts_api
            .patch(&sts.name_any(), &PatchParams::default(), &Patch::Merge(&keep))
            .await
            .map_err(Error::kube("retain the database StatefulSet's claim"))?;
        sts_uid = sts.uid();
    }
    let pvcs = Api::<PersistentVolumeClaim>::namespaced(ctx.client.clone(), ns);
    orphan(&pvcs, &volume_claim_name(&name), ms, sts_uid.as_deref()).await?;
    if let Some(api) = claim_api(ctx, ms, classes).await {
        orphan(&api, &object_name(&name), ms, None).await?;
    }
    info!(namespace = %ns, name = %name, "database retained");
    Ok(())
}

/// The `database` section was removed from a running service: keep the data as Retain does,
/// and stop the embedded database itself. Adding the section back adopts the data again.
pub async fn detach(ctx: &Context, ms: &Microservice, classes: &[std::sync::Arc<DatabaseClass>]) -> Result<(), Error> {
    retain(ctx, ms, classes).await?;
    let ns = ms.ns();
    let name = object_name(&ms.name_any());
    delete_owned(&Api::<StatefulSet>::namespaced(ctx.client.clone(), ns), &name, ms).await?;
    delete_owned(&Api::<Service>::namespaced(ctx.client.clone(), ns), &name, ms).await?;
    delete_owned(&Api::<NetworkPolicy>::namespaced(ctx.client.clone(), ns), &name, ms).await?;
    delete_owned(&Api::<ServiceAccount>::namespaced(ctx.client.clone(), ns), &name, ms).await?;
    Ok(())
}

/// Deletes the data of `ms`'s database, as `deletionPolicy: Delete` asks.
pub async fn delete(ctx: &Context, ms: &Microservice, classes: &[std::sync::Arc<DatabaseClass>]) -> Result<(), Error> {
    let ns = ms.ns();
    let name = ms.name_any();
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), ns);
    for s in [credentials_secret_name(&name), binding_secret_name(&name)] {
        delete_owned(&secrets, &s, ms).await?;
    }
    delete_owned(&Api::<StatefulSet>::namespaced(ctx.client.clone(), ns), &object_name(&name), ms).await?;
    // The claim belongs to the StatefulSet's template, not to the Microservice: delete it when
    // it carries this service's label.
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), ns);
    let pvc_name = volume_claim_name(&name);
    if let Some(pvc) = pvcs.get_opt(&pvc_name).await.map_err(Error::kube("get PersistentVolumeClaim"))?
        && pvc.labels().get(crate::api::contract::SELECTOR_LABEL) == Some(&name)
    {
        ignore_missing(pvcs.delete(&pvc_name, &DeleteParams::background()).await.map(|_| ()), &pvc_name)?;
    }
    if let Some(api) = claim_api(ctx, ms, classes).await {
        delete_owned(&api, &object_name(&name), ms).await?;
    }
    info!(namespace = %ns, name = %name, "database deleted");
    Ok(())
}

/// The claim kind's API, when the service's class is a claim class that still exists.
async fn claim_api(
    ctx: &Context,
    ms: &Microservice,
    classes: &[std::sync::Arc<DatabaseClass>],
) -> Option<Api<DynamicObject>> {
    let class_name = ms.status.as_ref().and_then(|s| s.database.as_ref()).and_then(|d| d.class.clone());
    let class = match class_name {
        Some(n) => classes.iter().find(|c| c.metadata.name.as_deref() == Some(n.as_str()))?,
        None => database::resolve_class(ms, classes)
            .ok()
            .and_then(|c| classes.iter().find(|x| x.metadata.name == c.metadata.name))?,
    };
    let claim = class.spec.claim.as_ref().filter(|_| class.spec.provisioner == Provisioner::Claim)?;
    let gvk = GroupVersionKind::try_from(&kube::core::TypeMeta {
        api_version: claim.api_version.clone(),
        kind: claim.kind.clone(),
    })
    .ok()?;
    let (ar, _) = pinned_kind(&ctx.client, &gvk).await.ok()?;
    Some(Api::namespaced_with(ctx.client.clone(), ms.ns(), &ar))
}

/// Drops `obj`'s owner references to `ms` (and to `also_owner`, a uid), its GitOps tracking
/// marks, and records where it came from.
async fn orphan<K>(api: &Api<K>, name: &str, ms: &Microservice, also_owner: Option<&str>) -> Result<(), Error>
where
    K: Resource + Clone + Debug + DeserializeOwned,
{
    let Some(obj) = api.get_opt(name).await.map_err(Error::kube(format!("get {name}")))? else { return Ok(()) };
    let uid = ms.uid();
    let ours =
        controlled_by(&obj, ms) || obj.labels().get(crate::api::contract::SELECTOR_LABEL) == ms.meta().name.as_ref();
    if !ours {
        return Ok(());
    }
    let owners: Vec<_> = obj
        .owner_references()
        .iter()
        .filter(|o| Some(&o.uid) != uid.as_ref() && Some(o.uid.as_str()) != also_owner)
        .cloned()
        .collect();
    let labels: serde_json::Map<String, serde_json::Value> =
        obj.labels().keys().filter(|k| is_tracking_label(k)).map(|k| (k.clone(), serde_json::Value::Null)).collect();
    let mut annotations: serde_json::Map<String, serde_json::Value> = obj
        .annotations()
        .keys()
        .filter(|k| k.starts_with("argocd.argoproj.io/") || k.starts_with("kustomize.toolkit.fluxcd.io/"))
        .map(|k| (k.clone(), serde_json::Value::Null))
        .collect();
    annotations.insert(RETAINED_FROM.into(), json!(format!("{}/{}", ms.ns(), ms.name_any())));
    let patch = json!({"metadata": {"ownerReferences": owners, "labels": labels, "annotations": annotations}});
    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(Error::kube(format!("retain {name}")))?;
    Ok(())
}

async fn delete_owned<K>(api: &Api<K>, name: &str, ms: &Microservice) -> Result<(), Error>
where
    K: Resource + Clone + Debug + DeserializeOwned,
{
    let Some(obj) = api.get_opt(name).await.map_err(Error::kube(format!("get {name}")))? else { return Ok(()) };
    if !controlled_by(&obj, ms) {
        return Ok(());
    }
    ignore_missing(api.delete(name, &DeleteParams::background()).await.map(|_| ()), name)
}

fn ignore_missing(r: Result<(), kube::Error>, name: &str) -> Result<(), Error> {
    match r {
        Ok(()) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(Error::kube(format!("delete {name}"))(e)),
    }
}

/// The policy that applies when `ms` goes: its spec's, Retain by default and when the
/// database section was removed.
pub fn policy(ms: &Microservice) -> DeletionPolicy {
    ms.spec.database.as_ref().and_then(|d| d.deletion_policy).unwrap_or_default()
}
