//! A service's database, by job: the state the status reports (here), the embedded provisioner
//! (`embedded.rs`), the claim provisioner (`claim.rs`), and keeping or deleting the data when
//! the service or its database section goes (`retention.rs`).

mod claim;
mod embedded;
mod retention;

pub use retention::{delete, detach, retain};

use std::fmt::Debug;

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ApiResource, Patch};
use kube::core::GroupVersionKind;
use kube::discovery::pinned_kind;
use kube::{Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde_json::json;
use tracing::info;

use super::apply::{Cached, Outcome, cached, controlled_by, ensure};
use super::cache::Cache;
use super::context::Context;
use super::crds::Unserved;
use super::error::Error;
use crate::api::Microservice;
use crate::api::databaseclass::ClaimProvisioner;
use crate::render::Input;
pub use crate::render::database::Phase;
use crate::render::database::{
    ClassProblem, Connection, DatabaseChildren, RETAINED_FROM, Reason, binding_hash, binding_secret,
    binding_secret_name, provider,
};

/// Where a service's database stands, for its status.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DbState {
    pub class: Option<String>,
    /// Why it is where it is; the phase follows from it.
    pub reason: Reason,
    pub message: String,
    /// Existing retained data was adopted.
    pub retained: bool,
    /// Hash of the binding, stamped on the pod template.
    pub credentials_hash: Option<String>,
    pub changed: Vec<String>,
}

impl DbState {
    fn of(class: Option<String>) -> Self {
        DbState { class, ..Default::default() }
    }

    /// This state, now at `reason`, told by `message`.
    fn at(self, reason: Reason, message: String) -> Self {
        DbState { reason, message, ..self }
    }

    pub fn phase(&self) -> Phase {
        self.reason.phase()
    }

    pub fn ready(&self) -> bool {
        self.reason == Reason::Ready
    }
}

/// Brings the database of `input`'s service to its desired state and reports where it stands.
pub async fn provision(
    ctx: &Context,
    input: &Input<'_>,
    rendered: &Result<DatabaseChildren, ClassProblem>,
) -> Result<DbState, Error> {
    let db = match rendered {
        Ok(db) => db,
        Err((reason, message)) => return Ok(DbState::of(None).at(*reason, message.clone())),
    };
    match &db.claim {
        None => embedded::provision(ctx, input, db).await,
        Some(claim) => claim::provision(ctx, input, db, claim).await,
    }
}

/// Writes the binding Secret (adopting a retained one) and returns the hash of its content.
async fn write_binding(
    ctx: &Context,
    input: &Input<'_>,
    db: &DatabaseChildren,
    conn: &Connection,
    state: &mut DbState,
) -> Result<String, Error> {
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), input.namespace);
    let desired = binding_secret(input, db.engine, &provider(db), conn);
    let hash = binding_hash(&desired);
    let name = binding_secret_name(input.name);
    if let Some(existing) = read(&secrets, &ctx.caches.secrets, &name).await? {
        state.retained |= adopt(&secrets, &existing, input.ms).await?;
    }
    let (_, o) = ensure(&secrets, &ctx.caches.secrets, input.ms, desired).await?;
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
    api.patch(&obj.name_any(), &crate::controller::apply::merge_params(), &Patch::Merge(&patch))
        .await
        .map_err(Error::kube(format!("adopt retained {}", obj.name_any())))?;
    info!(object = %obj.name_any(), "adopted retained database data");
    Ok(true)
}

/// The API resource of a claim class's kind, from the watched CRDs (no request): why not, when
/// the kind is not served yet (`Err(Ok(why))`) or malformed (`Err(Err(why))`).
fn claim_resource(ctx: &Context, claim: &ClaimProvisioner) -> Result<ApiResource, Result<String, String>> {
    let type_meta = kube::core::TypeMeta { api_version: claim.api_version.clone(), kind: claim.kind.clone() };
    GroupVersionKind::try_from(&type_meta).map_err(|e| Err(e.to_string()))?;
    ctx.caches.crds.resource(&claim.api_version, &claim.kind).map_err(|why| {
        Ok(match why {
            Unserved::NotKnownYet => "waiting for the operator's list of CRDs (it needs get, list and watch on \
                                      customresourcedefinitions)"
                .to_string(),
            Unserved::Missing(m) => format!("{m}; install the database operator's CRDs"),
        })
    })
}

/// The API resource of a claim class's kind, found by discovery (a request: for retention,
/// which reads the API server, never a cache): why not, when the kind is malformed
/// (`Err(true)`) or not served (`Err(false)`).
async fn claim_kind(ctx: &Context, claim: &ClaimProvisioner) -> Result<ApiResource, (bool, String)> {
    let type_meta = kube::core::TypeMeta { api_version: claim.api_version.clone(), kind: claim.kind.clone() };
    let gvk = GroupVersionKind::try_from(&type_meta).map_err(|e| (true, e.to_string()))?;
    let (ar, _) = pinned_kind(&ctx.client, &gvk).await.map_err(|e| (false, e.to_string()))?;
    Ok(ar)
}

/// Child `name`: the watch cache's copy when the cache has it, else the API server's (a name
/// missing from the cache may still be taken by an object Flotilla did not make).
async fn read<K>(api: &Api<K>, cache: &Cache<K>, name: &str) -> Result<Option<K>, Error>
where
    K: Resource + Clone + Debug + serde::Serialize + DeserializeOwned,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone,
{
    match cached(Some(cache), api, name) {
        Cached::Found(obj) => Ok(Some(obj)),
        Cached::Unknown | Cached::Absent => {
            let kind = K::kind(&K::DynamicType::default()).into_owned();
            api.get_opt(name).await.map_err(Error::kube(format!("get {kind} {name}")))
        }
    }
}
