//! What happens to the data when a service goes: kept (owner references and GitOps tracking
//! cut, marked with where it came from) or deleted, as its deletion policy says. These read
//! the API server directly, not the caches: a decision about data is taken on its freshest state.

use std::fmt::Debug;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Secret, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{Api, DeleteParams, DynamicObject, Patch};
use kube::{Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde_json::json;
use tracing::info;

use crate::api::databaseclass::Provisioner;
use crate::api::{DatabaseClass, Microservice};
use crate::controller::apply::controlled_by;
use crate::controller::context::Context;
use crate::controller::error::Error;
use crate::render::database::{
    self, RETAINED_FROM, TRACKING_ANNOTATION_PREFIXES, binding_secret_name, credentials_secret_name, is_tracking_label,
    object_name, volume_claim_name,
};

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
            .patch(&sts.name_any(), &crate::controller::apply::merge_params(), &Patch::Merge(&keep))
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
    // The class the database was made with, as the status recorded it; resolved as the render
    // would when the status never said.
    let class = match class_name {
        Some(n) => classes.iter().map(AsRef::as_ref).find(|c| c.metadata.name.as_deref() == Some(n.as_str()))?,
        None => database::resolve_class(ms, classes).ok()?,
    };
    let claim = class.spec.claim.as_ref().filter(|_| class.spec.provisioner == Provisioner::Claim)?;
    let ar = super::claim_kind(ctx, claim).await.ok()?;
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
    // Its own data objects carry no owner reference; the volume claim is the StatefulSet's.
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
        .filter(|k| TRACKING_ANNOTATION_PREFIXES.iter().any(|p| k.starts_with(p)))
        .map(|k| (k.clone(), serde_json::Value::Null))
        .collect();
    annotations.insert(RETAINED_FROM.into(), json!(format!("{}/{}", ms.ns(), ms.name_any())));
    let patch = json!({"metadata": {"ownerReferences": owners, "labels": labels, "annotations": annotations}});
    api.patch(name, &crate::controller::apply::merge_params(), &Patch::Merge(&patch))
        .await
        .map_err(Error::kube(format!("retain {name}")))?;
    Ok(())
}

async fn delete_owned<K>(api: &Api<K>, name: &str, ms: &Microservice) -> Result<(), Error>
where
    K: Resource + Clone + Debug + DeserializeOwned,
{
    let Some(obj) = api.get_opt(name).await.map_err(Error::kube(format!("get {name}")))? else { return Ok(()) };
    if !belongs_to(&obj, ms) {
        return Ok(());
    }
    ignore_missing(api.delete(name, &DeleteParams::background()).await.map(|_| ()), name)
}

/// `obj` is this Microservice's: controlled by it, or (the data objects, which carry no owner
/// reference) made by Flotilla for a service of its name and controlled by nothing else.
fn belongs_to<K: Resource>(obj: &K, ms: &Microservice) -> bool {
    use crate::api::contract::{MANAGED_BY_LABEL, MANAGER, SELECTOR_LABEL};
    controlled_by(obj, ms)
        || (obj.labels().get(MANAGED_BY_LABEL).map(String::as_str) == Some(MANAGER)
            && obj.labels().get(SELECTOR_LABEL) == ms.meta().name.as_ref()
            && !obj.owner_references().iter().any(|o| o.controller == Some(true)))
}

fn ignore_missing(r: Result<(), kube::Error>, name: &str) -> Result<(), Error> {
    match r {
        Ok(()) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(Error::kube(format!("delete {name}"))(e)),
    }
}
