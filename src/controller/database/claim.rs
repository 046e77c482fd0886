//! The claim provisioner: an object of a database operator's kind (served by a CRD), its
//! readiness condition, and the binding made from the connection Secret it writes.

use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::api::{Api, DynamicObject};

use super::{DbState, adopt, claim_resource, note, write_binding};
use crate::controller::apply::{Cached, cached, ensure_with};
use crate::controller::context::Context;
use crate::controller::error::Error;
use crate::render::Input;
use crate::render::database::Reason;
use crate::render::database::{
    Claim, Connection, DatabaseChildren, connection_secret_name, default_identity, ready_condition,
};

pub(super) async fn provision(
    ctx: &Context,
    input: &Input<'_>,
    db: &DatabaseChildren,
    Claim { object, provisioner: claim }: &Claim,
) -> Result<DbState, Error> {
    let ms = input.ms;
    let mut state = DbState::of(Some(db.class.clone()));
    let ar = match claim_resource(ctx, claim) {
        Ok(ar) => ar,
        Err(Err(why)) => return Ok(state.at(Reason::InvalidClass, why)),
        Err(Ok(why)) => return Ok(state.at(Reason::ClaimKindNotServed, why)),
    };
    let api: Api<DynamicObject> = Api::namespaced_with(ctx.client.clone(), input.namespace, &ar);
    let desired: DynamicObject =
        serde_json::from_value(object.clone()).map_err(|source| Error::Serialize { what: "claim", source })?;
    // The claim watch's copy when it has one; else one GET serves both the adoption and the
    // apply, unless adopting changed the object.
    let known = match cached(ctx.caches.claims.cache(&ar).as_ref(), &api, &desired.name_any()) {
        Cached::Found(existing) => Cached::Found(existing),
        Cached::Absent | Cached::Unknown => {
            match api.get_opt(&desired.name_any()).await.map_err(Error::kube("get claim"))? {
                Some(existing) if adopt(&api, &existing, ms).await? => {
                    state.retained = true;
                    Cached::Unknown
                }
                Some(existing) => Cached::Found(existing),
                None => Cached::Absent,
            }
        }
    };
    let (live, o) = ensure_with(&api, known, ms, desired, &claim.kind, |_, _| {}).await?;
    note(&mut state, &format!("database {}", claim.kind), o);
    let live_value = serde_json::to_value(&live).map_err(|source| Error::Serialize { what: "claim", source })?;
    let (condition, ready) = ready_condition(claim, &live_value);
    if !ready {
        return Ok(state.at(
            Reason::ClaimNotReady,
            format!("waiting for {} {} to report {condition}=True", claim.kind, live.name_any()),
        ));
    }
    let secret_name = match connection_secret_name(input, claim) {
        Ok(n) => n,
        Err(m) => return Ok(state.at(Reason::InvalidClass, m)),
    };
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), input.namespace);
    let Some(conn_secret) =
        secrets.get_opt(&secret_name).await.map_err(Error::kube(format!("get Secret {secret_name}")))?
    else {
        return Ok(state.at(Reason::ConnectionSecretMissing, format!("waiting for Secret {secret_name}")));
    };
    let keys = claim.connection_secret.keys.clone().unwrap_or_default();
    let get = |meaning: &str| {
        let key = keys.get(meaning).cloned().unwrap_or_else(|| meaning.to_string());
        conn_secret.data.as_ref()?.get(&key).and_then(|v| String::from_utf8(v.0.clone()).ok())
    };
    let missing: Vec<&str> =
        ["host", "port", "username", "password"].into_iter().filter(|m| get(m).is_none()).collect();
    if !missing.is_empty() {
        return Ok(
            state.at(Reason::ConnectionSecretIncomplete, format!("Secret {secret_name} lacks {}", missing.join(", ")))
        );
    }
    let conn = Connection {
        host: get("host").unwrap_or_default(),
        port: get("port").unwrap_or_default(),
        username: get("username").unwrap_or_default(),
        password: get("password").unwrap_or_default(),
        database: get("database").unwrap_or_else(|| default_identity(input.name, db.engine).1),
        uri: get("uri"),
    };
    state.credentials_hash = Some(write_binding(ctx, input, db, &conn, &mut state).await?);
    Ok(state.at(Reason::Ready, format!("{} {} is ready", claim.kind, live.name_any())))
}
