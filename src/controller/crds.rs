//! Which custom kinds the API server serves, from one watch of the CustomResourceDefinitions.
//!
//! A child of a custom kind (a database claim, an HTTPRoute) is then known to be absent without a
//! request per reconcile, and known to have come the moment its CRD is established: the services
//! that were waiting for it are reconciled at once, without a restart of the operator. Only the
//! names, scope and served versions of each CRD are kept (its schemas are most of its size).

use std::collections::BTreeSet;

use futures::{Stream, StreamExt};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Client;
use kube::api::Api;
use kube::core::{ApiResource, GroupVersionKind};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};

/// The served custom kinds, shared by clones.
#[derive(Clone)]
pub struct Crds {
    store: Store<CustomResourceDefinition>,
}

/// Why a custom kind cannot be used now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unserved {
    /// The watch of the CRDs has not listed them yet: ask again shortly.
    NotKnownYet,
    /// No established CRD serves it: what is missing, for a status message.
    Missing(String),
}

impl Crds {
    /// A set that knows no CRD and never learns one (offline tests).
    #[cfg(test)]
    pub fn none() -> Crds {
        let (store, mut writer) = reflector::store();
        writer.apply_watcher_event(&watcher::Event::Init);
        writer.apply_watcher_event(&watcher::Event::InitDone);
        Crds { store }
    }

    /// The API resource of `apiVersion`/`kind` if an established CRD serves that version.
    pub fn resource(&self, api_version: &str, kind: &str) -> Result<ApiResource, Unserved> {
        let (group, version) = match api_version.split_once('/') {
            Some((g, v)) => (g, v),
            None => ("", api_version),
        };
        if futures::FutureExt::now_or_never(self.store.wait_until_ready()).is_none() {
            return Err(Unserved::NotKnownYet);
        }
        let missing = || Unserved::Missing(format!("{api_version} {kind} is not served by the API server"));
        let crd = self
            .store
            .state()
            .into_iter()
            .find(|c| c.spec.group == group && c.spec.names.kind == kind)
            .ok_or_else(missing)?;
        if !established(&crd) {
            return Err(Unserved::Missing(format!(
                "the CRD {} of {api_version} {kind} is not established yet",
                crd.metadata.name.as_deref().unwrap_or_default()
            )));
        }
        if !crd.spec.versions.iter().any(|v| v.name == version && v.served) {
            return Err(Unserved::Missing(format!(
                "the CRD {} serves no version {version} of {kind}",
                crd.metadata.name.as_deref().unwrap_or_default()
            )));
        }
        let gvk = GroupVersionKind::gvk(group, version, kind);
        Ok(ApiResource::from_gvk_with_plural(&gvk, &crd.spec.names.plural))
    }
}

fn established(crd: &CustomResourceDefinition) -> bool {
    crd.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Established" && c.status == "True"))
}

/// What one CRD contributes to the set of served kinds: `group/version/kind` of each served
/// version, once established.
fn served(crd: &CustomResourceDefinition) -> impl Iterator<Item = String> + '_ {
    let ok = established(crd);
    crd.spec
        .versions
        .iter()
        .filter(move |v| ok && v.served)
        .map(|v| format!("{}/{}/{}", crd.spec.group, v.name, crd.spec.names.kind))
}

/// The CRD watch: the [`Crds`] it fills, and a stream that yields the groups whose served kinds
/// changed (a CRD established, a version served or no longer, a CRD deleted), after the first
/// listing. The stream must be polled for the set to stay current.
pub fn watch(
    client: &Client,
    relist: tokio::sync::watch::Receiver<u64>,
) -> (Crds, impl Stream<Item = BTreeSet<String>> + Send + 'static) {
    let (store, writer) = reflector::store::<CustomResourceDefinition>();
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let events = super::watches::relisting(api, watcher::Config::default().page_size(100), relist).modify(|crd| {
        // The schemas, conversion and printer columns are most of a CRD; only names, scope,
        // served versions and the Established condition are read.
        crd.metadata.managed_fields = None;
        crd.metadata.annotations = None;
        crd.spec.conversion = None;
        for v in &mut crd.spec.versions {
            v.schema = None;
            v.additional_printer_columns = None;
            v.subresources = None;
            v.selectable_fields = None;
        }
        if let Some(status) = crd.status.as_mut() {
            status.accepted_names = None;
            status.stored_versions = None;
        }
    });
    let crds = Crds { store: store.clone() };
    let mut known: Option<BTreeSet<String>> = None;
    let changes = reflector::reflector(writer, events)
        .filter_map(move |event| {
            let changed = match event {
                Ok(watcher::Event::Apply(_) | watcher::Event::Delete(_) | watcher::Event::InitDone) => {
                    let now: BTreeSet<String> =
                        store.state().iter().flat_map(|c| served(c).collect::<Vec<_>>()).collect();
                    let groups = match &known {
                        // The first listing changes nothing: every service is reconciled at start.
                        None => BTreeSet::new(),
                        Some(before) => before
                            .symmetric_difference(&now)
                            .filter_map(|k| k.split('/').next().map(String::from))
                            .collect(),
                    };
                    known = Some(now);
                    groups
                }
                _ => BTreeSet::new(),
            };
            futures::future::ready((!changed.is_empty()).then_some(changed))
        })
        .boxed();
    (crds, changes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn crd(
        group: &str,
        kind: &str,
        plural: &str,
        versions: &[(&str, bool)],
        established: bool,
    ) -> CustomResourceDefinition {
        serde_json::from_value(json!({
            "metadata": {"name": format!("{plural}.{group}")},
            "spec": {
                "group": group, "scope": "Namespaced",
                "names": {"kind": kind, "plural": plural},
                "versions": versions.iter().map(|(n, s)| json!({"name": n, "served": s, "storage": true})).collect::<Vec<_>>(),
            },
            "status": {"conditions": [{"type": "Established", "status": if established { "True" } else { "False" }}]},
        }))
        .unwrap()
    }

    fn crds(objects: Vec<CustomResourceDefinition>) -> Crds {
        let (store, mut writer) = reflector::store();
        writer.apply_watcher_event(&watcher::Event::Init);
        for o in objects {
            writer.apply_watcher_event(&watcher::Event::InitApply(o));
        }
        writer.apply_watcher_event(&watcher::Event::InitDone);
        Crds { store }
    }

    #[test]
    fn a_served_established_version_resolves_with_its_plural() {
        let set = crds(vec![crd("gateway.networking.k8s.io", "HTTPRoute", "httproutes", &[("v1", true)], true)]);
        let ar = set.resource("gateway.networking.k8s.io/v1", "HTTPRoute").unwrap();
        assert_eq!((ar.plural.as_str(), ar.version.as_str()), ("httproutes", "v1"));
    }

    #[test]
    fn missing_unestablished_and_unserved_say_what_is_missing() {
        let set = crds(vec![
            crd("a.example", "Thing", "things", &[("v1", true), ("v2", false)], true),
            crd("b.example", "Fresh", "freshes", &[("v1", true)], false),
        ]);
        let missing = |v: &str, k: &str| match set.resource(v, k) {
            Err(Unserved::Missing(m)) => m,
            other => panic!("{v} {k}: {other:?}"),
        };
        assert!(missing("gateway.networking.k8s.io/v1", "HTTPRoute").contains("is not served"));
        assert!(missing("b.example/v1", "Fresh").contains("not established"));
        assert!(missing("a.example/v2", "Thing").contains("serves no version v2"));
        assert!(set.resource("a.example/v1", "Thing").is_ok());
    }

    #[test]
    fn nothing_is_known_before_the_first_listing() {
        let (store, _writer) = reflector::store::<CustomResourceDefinition>();
        let set = Crds { store };
        assert_eq!(set.resource("a.example/v1", "Thing"), Err(Unserved::NotKnownYet));
    }
}
