//! What the operator watches: every namespace, or a list of them (`--namespace a,b`).
//!
//! With a list, each kind is watched once per namespace, so the operator needs rights in those
//! namespaces only (a RoleBinding each), and the watches are merged into one stream that reads
//! as a single watch over all of them: one initial listing (`Init`, every namespace's objects,
//! then `InitDone` once every namespace has listed), then changes. A namespace that lists again
//! later (its watch expired) does not restart the others: its objects come as changes, and those
//! it no longer has as deletions, so the stores and caches built on the stream stay exact.

use std::collections::HashSet;
use std::pin::Pin;

use futures::stream::{BoxStream, SelectAll};
use futures::{Stream, StreamExt};
use kube::api::Api;
use kube::runtime::watcher::{self, Event};
use kube::{Client, Resource, ResourceExt};
use tracing::warn;

use super::watches::relisting;

/// What a watch sends.
type Events<K> = BoxStream<'static, Result<Event<K>, watcher::Error>>;
/// A namespace's watch, its events tagged with its place in the list.
type Tagged<K> = Pin<Box<dyn Stream<Item = (usize, Result<Event<K>, watcher::Error>)> + Send>>;

/// The namespaces watched.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    All,
    /// One or more namespaces, without repeats.
    Namespaces(Vec<String>),
}

impl Scope {
    /// Every namespace for an empty list.
    pub fn new(namespaces: Vec<String>) -> Scope {
        let mut seen = HashSet::new();
        let list: Vec<String> = namespaces.into_iter().filter(|n| seen.insert(n.clone())).collect();
        if list.is_empty() { Scope::All } else { Scope::Namespaces(list) }
    }

    /// An API for each namespace watched (one, cluster-wide, for all).
    pub fn apis<K>(&self, client: &Client) -> Vec<Api<K>>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        K::DynamicType: Default,
    {
        match self {
            Scope::All => vec![Api::all(client.clone())],
            Scope::Namespaces(list) => list.iter().map(|ns| Api::namespaced(client.clone(), ns)).collect(),
        }
    }

    /// A watch of `K` over the scope, as one stream; each namespace's watch backs off when it
    /// fails and starts over from a fresh list when `relist` changes (see
    /// [`super::watches::relisting`]).
    pub fn watch<K>(
        &self,
        client: &Client,
        config: watcher::Config,
        relist: tokio::sync::watch::Receiver<u64>,
    ) -> Events<K>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug
            + Send
            + 'static,
        K::DynamicType: Default,
    {
        let c = client.clone();
        let api = move |ns: Option<&str>| match ns {
            Some(ns) => Api::<K>::namespaced(c.clone(), ns),
            None => Api::<K>::all(c.clone()),
        };
        self.watch_with(api, K::DynamicType::default(), config, relist)
    }

    /// [`Scope::watch`] of any kind: `api` gives its API in a namespace (all of them for
    /// `None`), `dt` its API resource (`()` for a kind known at compile time).
    pub fn watch_with<K>(
        &self,
        api: impl Fn(Option<&str>) -> Api<K>,
        dt: K::DynamicType,
        config: watcher::Config,
        relist: tokio::sync::watch::Receiver<u64>,
    ) -> Events<K>
    where
        K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
        K::DynamicType: Send + 'static,
    {
        match self {
            Scope::All => relisting(api(None), config, relist).boxed(),
            Scope::Namespaces(list) if list.len() == 1 => relisting(api(Some(&list[0])), config, relist).boxed(),
            Scope::Namespaces(list) => merged(
                dt,
                list.iter()
                    .map(|ns| (ns.clone(), relisting(api(Some(ns)), config.clone(), relist.clone()).boxed()))
                    .collect(),
            )
            .boxed(),
        }
    }
}

/// Where one namespace's watch is.
#[derive(Default)]
struct Listing {
    /// Names the namespace holds, as far as the merged stream has told.
    known: HashSet<String>,
    /// Names seen since the namespace began listing again, until it is done.
    relisting: Option<HashSet<String>>,
    /// It has completed its first listing.
    synced: bool,
}

struct Merge<K: Resource> {
    /// The kind's API resource (`()` for a built-in kind), for the stand-ins of vanished objects.
    dt: K::DynamicType,
    namespaces: Vec<String>,
    streams: SelectAll<Tagged<K>>,
    listings: Vec<Listing>,
    /// Every namespace has listed once: the merged `InitDone` has been sent.
    started: bool,
    /// Changes from namespaces that have listed, held until every namespace has: a store takes
    /// the whole listing at `InitDone`, so a change sent before it would be overwritten.
    held: std::collections::VecDeque<Event<K>>,
    /// Events to send before reading more.
    out: std::collections::VecDeque<Result<Event<K>, watcher::Error>>,
}

/// Merges one watch per namespace into one (see the module's documentation).
fn merged<K>(
    dt: K::DynamicType,
    watches: Vec<(String, Events<K>)>,
) -> impl Stream<Item = Result<Event<K>, watcher::Error>> + Send + 'static
where
    K: Resource + Clone + serde::de::DeserializeOwned + Send + 'static,
    K::DynamicType: Send + 'static,
{
    let mut streams = SelectAll::new();
    let mut namespaces = Vec::new();
    for (i, (ns, w)) in watches.into_iter().enumerate() {
        let tagged: Tagged<K> = Box::pin(w.map(move |e| (i, e)));
        streams.push(tagged);
        namespaces.push(ns);
    }
    let count = namespaces.len();
    let state = Merge {
        dt,
        namespaces,
        streams,
        listings: (0..count).map(|_| Listing::default()).collect(),
        started: false,
        held: Default::default(),
        out: [Ok(Event::Init)].into_iter().collect(),
    };
    futures::stream::unfold(state, |mut s| async move {
        loop {
            if let Some(next) = s.out.pop_front() {
                return Some((next, s));
            }
            let (i, event) = s.streams.next().await?;
            match event {
                Err(e) => s.out.push_back(Err(e)),
                Ok(event) => s.take(i, event),
            }
        }
    })
}

impl<K> Merge<K>
where
    K: Resource + Clone + serde::de::DeserializeOwned,
{
    fn take(&mut self, i: usize, event: Event<K>) {
        let started = self.started;
        let listing = &mut self.listings[i];
        match event {
            Event::Init => listing.relisting = Some(HashSet::new()),
            Event::InitApply(obj) => {
                listing.relisting.get_or_insert_with(HashSet::new).insert(obj.name_any());
                // Before the start, part of the one initial listing; after, a change.
                self.out.push_back(Ok(if started { Event::Apply(obj) } else { Event::InitApply(obj) }));
            }
            Event::InitDone => {
                let now = listing.relisting.take().unwrap_or_default();
                let gone: Vec<String> = listing.known.difference(&now).cloned().collect();
                listing.known = now;
                listing.synced = true;
                if started {
                    for name in gone {
                        if let Some(obj) = stand_in::<K>(&self.dt, &self.namespaces[i], &name) {
                            self.out.push_back(Ok(Event::Delete(obj)));
                        }
                    }
                } else if self.listings.iter().all(|l| l.synced) {
                    self.started = true;
                    self.out.push_back(Ok(Event::InitDone));
                    self.out.extend(self.held.drain(..).map(Ok));
                }
            }
            Event::Apply(obj) => {
                listing.known.insert(obj.name_any());
                self.send_or_hold(Event::Apply(obj));
            }
            Event::Delete(obj) => {
                listing.known.remove(&obj.name_any());
                self.send_or_hold(Event::Delete(obj));
            }
        }
    }

    fn send_or_hold(&mut self, event: Event<K>) {
        if self.started { self.out.push_back(Ok(event)) } else { self.held.push_back(event) }
    }
}

/// An object that names `namespace/name` and nothing else, to say that it is gone.
fn stand_in<K>(dt: &K::DynamicType, namespace: &str, name: &str) -> Option<K>
where
    K: Resource + serde::de::DeserializeOwned,
{
    let value = serde_json::json!({
        "apiVersion": K::api_version(dt),
        "kind": K::kind(dt),
        "metadata": {"name": name, "namespace": namespace},
    });
    match serde_json::from_value(value) {
        Ok(obj) => Some(obj),
        Err(e) => {
            warn!(namespace, name, error = %e, "cannot mark a vanished object as deleted; it stays until the next listing");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::runtime::reflector::{self, ObjectRef};

    fn cm(ns: &str, name: &str) -> ConfigMap {
        serde_json::from_value(serde_json::json!({"metadata": {"namespace": ns, "name": name}})).unwrap()
    }

    fn watch(events: Vec<Event<ConfigMap>>) -> Events<ConfigMap> {
        futures::stream::iter(events.into_iter().map(Ok)).boxed()
    }

    fn label(e: &Event<ConfigMap>) -> String {
        match e {
            Event::Init => "Init".into(),
            Event::InitDone => "InitDone".into(),
            Event::InitApply(o) => format!("InitApply {}/{}", o.namespace().unwrap(), o.name_any()),
            Event::Apply(o) => format!("Apply {}/{}", o.namespace().unwrap(), o.name_any()),
            Event::Delete(o) => format!("Delete {}/{}", o.namespace().unwrap(), o.name_any()),
        }
    }

    /// The merged events, and the store they leave (names as `ns/name`, sorted).
    async fn run(watches: Vec<(&str, Vec<Event<ConfigMap>>)>) -> (Vec<String>, Vec<String>) {
        let merged = merged((), watches.into_iter().map(|(ns, events)| (ns.to_string(), watch(events))).collect());
        let events: Vec<Event<ConfigMap>> = merged.map(Result::unwrap).collect().await;
        let (reader, mut writer) = reflector::store::<ConfigMap>();
        for e in &events {
            writer.apply_watcher_event(e);
        }
        let mut held: Vec<String> =
            reader.state().iter().map(|o| format!("{}/{}", o.namespace().unwrap(), o.name_any())).collect();
        held.sort();
        (events.iter().map(label).collect(), held)
    }

    #[tokio::test]
    async fn namespaces_list_as_one_watch_and_changes_wait_for_every_listing() {
        let (events, held) = run(vec![
            ("a", vec![Event::Init, Event::InitApply(cm("a", "x")), Event::InitDone, Event::Apply(cm("a", "y"))]),
            ("b", vec![Event::Init, Event::InitApply(cm("b", "z")), Event::InitApply(cm("b", "w")), Event::InitDone]),
        ])
        .await;
        assert_eq!(events.iter().filter(|e| *e == "Init").count(), 1, "{events:?}");
        assert_eq!(events[0], "Init");
        let done = events.iter().position(|e| e == "InitDone").expect("one InitDone");
        assert_eq!(events.iter().filter(|e| *e == "InitDone").count(), 1);
        assert!(events[..done].iter().skip(1).all(|e| e.starts_with("InitApply")), "{events:?}");
        assert_eq!(events[done + 1..], ["Apply a/y"], "a change waits for every namespace's listing");
        assert_eq!(held, ["a/x", "a/y", "b/w", "b/z"]);
    }

    #[tokio::test]
    async fn a_namespace_that_lists_again_changes_only_itself() {
        let (events, held) = run(vec![
            (
                "a",
                vec![
                    Event::Init,
                    Event::InitApply(cm("a", "x")),
                    Event::InitApply(cm("a", "y")),
                    Event::InitDone,
                    // Its watch expired: listed again, y is gone and v is new.
                    Event::Init,
                    Event::InitApply(cm("a", "x")),
                    Event::InitApply(cm("a", "v")),
                    Event::InitDone,
                ],
            ),
            ("b", vec![Event::Init, Event::InitApply(cm("b", "z")), Event::InitDone]),
        ])
        .await;
        assert_eq!(events.iter().filter(|e| *e == "Init" || *e == "InitDone").count(), 2, "{events:?}");
        assert!(events.contains(&"Delete a/y".to_string()), "{events:?}");
        assert_eq!(held, ["a/v", "a/x", "b/z"], "{events:?}");
    }

    #[test]
    fn a_stand_in_names_the_object_and_nothing_else() {
        let gone: ConfigMap = stand_in(&(), "shop", "orders").unwrap();
        assert_eq!(ObjectRef::from(&gone), ObjectRef::new("orders").within("shop"));
        assert!(gone.data.is_none());
    }

    #[test]
    fn a_scope_is_every_namespace_or_a_list_without_repeats() {
        assert_eq!(Scope::new(vec![]), Scope::All);
        assert_eq!(
            Scope::new(vec!["a".into(), "b".into(), "a".into()]),
            Scope::Namespaces(vec!["a".into(), "b".into()])
        );
    }
}
