//! The claim provisioner: an object of a database operator's kind (found by discovery), its
//! readiness condition, and the binding made from the connection Secret it writes.

use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::api::{Api, DynamicObject};

use super::{DbState, Phase, adopt, claim_kind, note, publish_binding};
use crate::api::databaseclass::ClaimProvisioner;
use crate::controller::apply::{Cached, ensure_with};
use crate::controller::context::Context;
use crate::controller::error::Error;
use crate::render::Cx;
use crate::render::database::{Connection, DatabaseChildren, connection_secret_name, ready_condition};

pub(super) async fn converge(
    ctx: &Context,
    cx: &Cx<'_>,
    db: &DatabaseChildren,
    claim: &ClaimProvisioner,
) -> Result<DbState, Error> {
    let ms = cx.ms;
    let mut state = DbState { class: Some(db.class.clone()), ..Default::default() };
    let Some(object) = db.claim.clone() else {
        return Ok(DbState::waiting(state.class, Phase::Failed, "InvalidClass", "no claim object".into()));
    };
    let ar = match claim_kind(ctx, claim).await {
        Ok(ar) => ar,
        Err((true, why)) => return Ok(DbState::waiting(state.class, Phase::Failed, "InvalidClass", why)),
        Err((false, _)) => {
            return Ok(DbState::waiting(
                state.class,
                Phase::Pending,
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
    // One GET serves both the adoption and the apply, unless adopting changed the object.
    let known = match api.get_opt(&desired.name_any()).await.map_err(Error::kube("get claim"))? {
        Some(existing) if adopt(&api, &existing, ms).await? => {
            state.retained = true;
            Cached::Unknown
        }
        Some(existing) => Cached::Found(existing),
        None => Cached::Absent,
    };
    let (live, o) = ensure_with(&api, known, ms, desired, &claim.kind, |_, _| {}).await?;
    note(&mut state, &format!("database {}", claim.kind), o);
    let live_value = serde_json::to_value(&live).map_err(|source| Error::Serialize { what: "claim", source })?;
    let (condition, ready) = ready_condition(claim, &live_value);
    if !ready {
        return Ok(DbState {
            phase: Phase::Provisioning,
            reason: "ClaimNotReady".into(),
            message: format!("waiting for {} {} to report {condition}=True", claim.kind, live.name_any()),
            ..state
        });
    }
    let secret_name = match connection_secret_name(cx, claim) {
        Ok(n) => n,
        Err(m) => return Ok(DbState { phase: Phase::Failed, reason: "InvalidClass".into(), message: m, ..state }),
    };
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), cx.namespace);
    let Some(conn_secret) =
        secrets.get_opt(&secret_name).await.map_err(Error::kube(format!("get Secret {secret_name}")))?
    else {
        return Ok(DbState {
            phase: Phase::Provisioning,
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
            phase: Phase::Provisioning,
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
        phase: Phase::Ready,
        reason: "Ready".into(),
        message: format!("{} {} is ready", claim.kind, live.name_any()),
        ..state
    })
}
