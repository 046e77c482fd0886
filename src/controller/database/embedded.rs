//! The embedded provisioner: credentials generated once, a StatefulSet with its Service,
//! NetworkPolicy and ServiceAccount, the volume claim grown as asked, and the binding.

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Secret, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::ResourceExt;
use kube::api::{Api, Patch, PostParams};
use serde_json::json;

use super::{DbState, adopt, note, read, write_binding};
use crate::api::defaults::parse_quantity;
use crate::controller::apply::{cached, check_ownership, ensure, ensure_with};
use crate::controller::context::Context;
use crate::controller::error::Error;
use crate::render::Input;
use crate::render::database::Reason;
use crate::render::database::{
    DatabaseChildren, credentials_secret, credentials_secret_name, embedded_connection, generate_password, object_name,
    volume_claim_name,
};

pub(super) async fn provision(ctx: &Context, input: &Input<'_>, db: &DatabaseChildren) -> Result<DbState, Error> {
    let ms = input.ms;
    let client = ctx.client.clone();
    let mut state = DbState::of(Some(db.class.clone()));

    // Credentials: generated once, never regenerated; a retained Secret is adopted as it is.
    let secrets: Api<Secret> = Api::namespaced(client.clone(), input.namespace);
    let creds_name = credentials_secret_name(input.name);
    let creds = match read(&secrets, &ctx.caches.secrets, &creds_name).await? {
        Some(existing) => {
            check_ownership(&existing, ms, "Secret")?;
            state.retained |= adopt(&secrets, &existing, ms).await?;
            existing
        }
        None => {
            let fresh = credentials_secret(input, db.engine, &generate_password());
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
            &Api::<NetworkPolicy>::namespaced(client.clone(), input.namespace),
            &ctx.caches.network_policies,
            ms,
            np,
        )
        .await?;
        note(&mut state, "database NetworkPolicy", o);
    }
    if let Some(svc) = db.service.clone() {
        let (_, o) =
            ensure(&Api::<Service>::namespaced(client.clone(), input.namespace), &ctx.caches.services, ms, svc).await?;
        note(&mut state, "database Service", o);
    }
    // Its ServiceAccount before the pods that run under it are created.
    if let Some(sa) = db.service_account.clone() {
        let (_, o) = ensure(
            &Api::<ServiceAccount>::namespaced(client.clone(), input.namespace),
            &ctx.caches.service_accounts,
            ms,
            sa,
        )
        .await?;
        note(&mut state, "database ServiceAccount", o);
    }
    // The StatefulSet keeps the volume claim template it was created with (the API server does
    // not allow changing it); a larger `storage` expands the claim itself below.
    let sts_api: Api<StatefulSet> = Api::namespaced(client.clone(), input.namespace);
    let mut live_sts = None;
    if let Some(sts) = db.stateful_set.clone() {
        let (live, o) = ensure_with(
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
        live_sts = Some(live);
    }

    let binding = match embedded_connection(input, db.engine, &creds) {
        Some(conn) => write_binding(ctx, input, db, &conn, &mut state).await?,
        None => {
            return Ok(state.at(
                Reason::CredentialsIncomplete,
                format!("Secret {creds_name} lacks username, password or database"),
            ));
        }
    };
    state.credentials_hash = Some(binding);

    // The volume claim: bound, and as large as asked.
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), input.namespace);
    let pvc_name = volume_claim_name(input.name);
    let Some(pvc) =
        pvcs.get_opt(&pvc_name).await.map_err(Error::kube(format!("get PersistentVolumeClaim {pvc_name}")))?
    else {
        return Ok(state.at(Reason::VolumePending, format!("waiting for volume claim {pvc_name} to be created")));
    };
    state.retained |= adopt(&pvcs, &pvc, ms).await?;
    if let Some(msg) = expand(&pvcs, &pvc, input).await? {
        state.changed.push(msg);
    }
    let phase = pvc.status.as_ref().and_then(|s| s.phase.clone()).unwrap_or_default();
    if phase != "Bound" {
        return Ok(state.at(
            Reason::VolumePending,
            format!(
                "volume claim {pvc_name} is {}; the database cannot start until it is bound",
                if phase.is_empty() { "Pending" } else { &phase }
            ),
        ));
    }
    // The StatefulSet as the apply left it (the watch cache's copy, or the server's answer).
    let ready = live_sts.and_then(|s| s.status).and_then(|s| s.ready_replicas).unwrap_or(0) >= 1;
    if !ready {
        return Ok(state.at(Reason::Starting, format!("database {} is starting", object_name(input.name))));
    }
    Ok(state.at(Reason::Ready, format!("{} database {} is ready", db.engine.binding_type(), object_name(input.name))))
}

/// Grows the claim to `database.storage`; never shrinks it.
async fn expand(
    pvcs: &Api<PersistentVolumeClaim>,
    pvc: &PersistentVolumeClaim,
    input: &Input<'_>,
) -> Result<Option<String>, Error> {
    let want = input.spec.database.clone().unwrap_or_default().storage().to_string();
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
        &crate::controller::apply::merge_params(),
        &Patch::Merge(json!({"spec": {"resources": {"requests": {"storage": want}}}})),
    )
    .await
    .map_err(Error::kube(format!("expand PersistentVolumeClaim {name}")))?;
    Ok(Some(format!("volume claim {name} expanded to {want}")))
}
