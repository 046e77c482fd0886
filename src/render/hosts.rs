//! A hostname is held once: a host published through `expose.ingress` belongs to the first
//! namespace (or tenant) that claims it, so no team can route a path of another team's host to
//! itself on an ingress controller that merges the rules of one host.

use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::World;
use crate::api::Microservice;
use crate::validate::FieldError;

/// The reason (status, Event, metric label) of a claim on a host someone else holds.
pub const HOST_TAKEN: &str = "HostTaken";

/// An Ingress Flotilla did not make, claiming `host`: the operator reads them from a watch of
/// Ingresses not labelled as Flotilla's, `flotilla render` from the files it is given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostClaim {
    pub namespace: String,
    pub name: String,
    /// Lowercase.
    pub host: String,
    /// None when unknown (a file): such a claim counts as the older one.
    pub created: Option<Time>,
}

/// The host `ms` claims, lowercase: the one of `expose.ingress`.
pub fn claimed_host(ms: &Microservice) -> Option<String> {
    Some(ms.spec.expose.as_ref()?.ingress.as_ref()?.host.to_ascii_lowercase())
}

/// The hosts an Ingress routes, lowercase.
pub fn ingress_hosts(ing: &Ingress) -> impl Iterator<Item = String> + '_ {
    let rules = ing.spec.iter().flat_map(|s| s.rules.iter().flatten());
    rules.filter_map(|r| r.host.as_deref()).map(str::to_ascii_lowercase)
}

fn path_of(ms: &Microservice) -> &str {
    ms.spec.expose.as_ref().and_then(|e| e.ingress.as_ref()).and_then(|i| i.path.as_deref()).unwrap_or("/")
}

/// Why `ms` may not have its host: another namespace's (or tenant's) Microservice or Ingress that
/// claimed it first, or a service of its own team that routes the same path of it.
pub fn taken(ms: &Microservice, world: &World) -> Vec<FieldError> {
    let Some(host) = claimed_host(ms) else { return Vec::new() };
    let (Some(namespace), Some(name)) = (ms.metadata.namespace.as_deref(), ms.metadata.name.as_deref()) else {
        return Vec::new();
    };
    let policy = &world.settings.policy;
    let order = |m: &Microservice| {
        (m.metadata.creation_timestamp.clone(), m.metadata.namespace.clone(), m.metadata.name.clone())
    };
    let mine = order(ms);
    let mut errs = Vec::new();
    let mut older: Vec<_> = world
        .microservices
        .claimers_of(&host)
        .into_iter()
        .filter(|o| (o.metadata.namespace.as_deref(), o.metadata.name.as_deref()) != (Some(namespace), Some(name)))
        .filter(|o| order(o) < mine)
        .collect();
    older.sort_by_key(|o| order(o));
    // The oldest claim holds the host for its team; the team's other services share it, each on
    // a path of its own.
    if let Some(holder) = older.first()
        && !policy.same_tenant(holder.ns(), namespace)
    {
        let (hns, hname) = (holder.ns(), holder.metadata.name.as_deref().unwrap_or_default());
        errs.push(
            FieldError::new(
                "spec.expose.ingress.host",
                format!(
                    "{host:?} is held by Microservice {hns}/{hname}, which claimed it first: a host is served by one \
                     namespace (its owners may give it up, or choose another host)"
                ),
            )
            .because(HOST_TAKEN),
        );
        return errs;
    }
    if let Some(same) = older.iter().find(|o| path_of(o) == path_of(ms)) {
        errs.push(
            FieldError::new(
                "spec.expose.ingress.path",
                format!(
                    "{host:?} path {:?} is routed to Microservice {}/{} already",
                    path_of(ms),
                    same.ns(),
                    same.metadata.name.as_deref().unwrap_or_default()
                ),
            )
            .because(HOST_TAKEN),
        );
        return errs;
    }
    let created = &ms.metadata.creation_timestamp;
    if let Some(ing) = world.foreign_ingresses.iter().find(|i| {
        i.host == host
            && !policy.same_tenant(&i.namespace, namespace)
            && (i.created.is_none() || created.is_none() || i.created <= *created)
    }) {
        errs.push(
            FieldError::new(
                "spec.expose.ingress.host",
                format!(
                    "{host:?} is held by Ingress {}/{} (not made by Flotilla), which claimed it first: a host is served by \
                     one namespace",
                    ing.namespace, ing.name
                ),
            )
            .because(HOST_TAKEN),
        );
    }
    errs
}
