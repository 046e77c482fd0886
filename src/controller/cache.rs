//! The watch caches of the children Flotilla made. Each object is kept as its compact JSON rather
//! than as typed structs: a service's Deployment is about 3 KiB that way and 15 KiB as
//! k8s-openapi structs, and the operator holds every child of every service. A reconcile parses
//! the few it reads.

use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use futures::{Stream, TryStreamExt};
use kube::Resource;
use kube::runtime::{WatchStreamExt, watcher};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tracing::warn;

/// Namespace ("" for none) and name.
type Key = (String, String);

/// One kind's cache, shared by clones. Until its watch has listed everything once it is not
/// ready, and a read must go to the API server instead.
pub struct Cache<K> {
    inner: Arc<Inner>,
    kind: PhantomData<fn() -> K>,
}

#[derive(Default)]
struct Inner {
    objects: RwLock<HashMap<Key, Box<[u8]>>>,
    ready: AtomicBool,
}

impl<K> Clone for Cache<K> {
    fn clone(&self) -> Self {
        Self { inner: self.inner.clone(), kind: PhantomData }
    }
}

impl<K> Default for Cache<K> {
    /// A cache that is never filled, so it never becomes ready.
    fn default() -> Self {
        Self { inner: Arc::default(), kind: PhantomData }
    }
}

fn key<K: Resource>(obj: &K) -> Option<Key> {
    Some((obj.meta().namespace.clone().unwrap_or_default(), obj.meta().name.clone()?))
}

impl<K: Resource + Serialize + DeserializeOwned> Cache<K> {
    /// Whether the watch has listed every object once.
    pub fn is_ready(&self) -> bool {
        self.inner.ready.load(Ordering::Acquire)
    }

    /// The object `namespace/name`, parsed from the cache.
    pub fn get(&self, namespace: Option<&str>, name: &str) -> Option<K> {
        let objects = self.inner.objects.read().unwrap_or_else(|p| p.into_inner());
        let bytes = objects.get(&(namespace.unwrap_or_default().to_string(), name.to_string()))?;
        match serde_json::from_slice(bytes) {
            Ok(obj) => Some(obj),
            // It was written from the same type, so this does not happen; if it did, the caller
            // reads the object from the API server instead.
            Err(e) => {
                warn!(name, error = %e, "a cached child no longer parses");
                None
            }
        }
    }

    /// Whether the cache has synced and holds no object `namespace/name`, without parsing one.
    pub fn lacks(&self, namespace: Option<&str>, name: &str) -> bool {
        let objects = self.inner.objects.read().unwrap_or_else(|p| p.into_inner());
        self.is_ready() && !objects.contains_key(&(namespace.unwrap_or_default().to_string(), name.to_string()))
    }

    /// How many objects the cache holds.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.inner.objects.read().unwrap_or_else(|p| p.into_inner()).len()
    }

    fn pack(obj: &K) -> Option<(Key, Box<[u8]>)> {
        let bytes = serde_json::to_vec(obj).ok()?;
        Some((key(obj)?, bytes.into_boxed_slice()))
    }

    /// Applies one watch event. A relist is gathered in `relisted` and replaces the whole cache
    /// when it is complete, so objects deleted while the watch was down go too.
    fn apply(&self, event: &watcher::Event<K>, relisted: &mut HashMap<Key, Box<[u8]>>) {
        let objects = || self.inner.objects.write().unwrap_or_else(|p| p.into_inner());
        match event {
            watcher::Event::Apply(obj) => {
                if let Some((k, v)) = Self::pack(obj) {
                    objects().insert(k, v);
                }
            }
            watcher::Event::Delete(obj) => {
                if let Some(k) = key(obj) {
                    objects().remove(&k);
                }
            }
            watcher::Event::Init => relisted.clear(),
            watcher::Event::InitApply(obj) => {
                if let Some((k, v)) = Self::pack(obj) {
                    relisted.insert(k, v);
                }
            }
            watcher::Event::InitDone => {
                *objects() = std::mem::take(relisted);
                self.inner.ready.store(true, Ordering::Release);
            }
        }
    }

    /// Fills this cache from `events`, and passes on each object an event touched, as
    /// `reflector(..).touched_objects()` does.
    pub fn fill<S>(&self, events: S) -> impl Stream<Item = Result<K, watcher::Error>> + use<K, S>
    where
        S: Stream<Item = Result<watcher::Event<K>, watcher::Error>>,
        K: Clone,
    {
        let cache = self.clone();
        let mut relisted = HashMap::new();
        events
            .map_ok(move |event| {
                cache.apply(&event, &mut relisted);
                event
            })
            .touched_objects()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;
    use k8s_openapi::api::core::v1::Service;

    fn service(name: &str, port: i32) -> Service {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "namespace": "shop"},
            "spec": {"ports": [{"port": port}]},
        }))
        .unwrap()
    }

    #[tokio::test]
    async fn ready_after_the_first_list_and_a_relist_drops_what_went_meanwhile() {
        use watcher::Event::*;
        let cache = Cache::<Service>::default();
        let events = vec![Init, InitApply(service("a", 80)), InitApply(service("b", 81)), InitDone];
        let touched: Vec<_> = cache.fill(futures::stream::iter(events.into_iter().map(Ok))).collect().await;
        assert_eq!(touched.len(), 2, "each object passes on");
        assert!(cache.is_ready());
        assert_eq!(cache.get(Some("shop"), "b").unwrap().spec.unwrap().ports.unwrap()[0].port, 81);

        // `a` changes, then the watch relists without `b`: `b` is gone once the relist is done.
        let mut relisted = HashMap::new();
        for event in [Apply(service("a", 90)), Init, InitApply(service("a", 90))] {
            cache.apply(&event, &mut relisted);
        }
        assert!(cache.get(Some("shop"), "b").is_some(), "kept until the relist is complete");
        cache.apply(&InitDone, &mut relisted);
        assert!(cache.get(Some("shop"), "b").is_none());
        assert_eq!(cache.get(Some("shop"), "a").unwrap().spec.unwrap().ports.unwrap()[0].port, 90);
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn a_cache_never_filled_is_never_ready() {
        assert!(!Cache::<Service>::default().is_ready());
    }
}
