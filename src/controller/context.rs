//! What every reconcile shares.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{Secret, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::{Ingress, NetworkPolicy};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::Client;
use kube::core::DeserializeGuard;
use kube::runtime::events::Recorder;
use kube::runtime::reflector::{ObjectRef, Store};

use super::cache::Cache;
use rand::Rng;

use crate::api::{DatabaseClass, Microservice};
use crate::metrics::Metrics;
use crate::render::{Fleet, Settings};

/// Watch caches of the children Flotilla made (those labelled managed-by flotilla), filled by the
/// same watches that trigger reconciles: reading a child from here costs no request.
#[derive(Clone)]
pub struct Caches {
    pub deployments: Cache<Deployment>,
    pub services: Cache<Service>,
    pub service_accounts: Cache<ServiceAccount>,
    pub hpas: Cache<HorizontalPodAutoscaler>,
    pub network_policies: Cache<NetworkPolicy>,
    pub pdbs: Cache<PodDisruptionBudget>,
    pub ingresses: Cache<Ingress>,
    pub stateful_sets: Cache<StatefulSet>,
    pub secrets: Cache<Secret>,
}

pub struct Context {
    pub client: Client,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    pub settings: Settings,
    /// Every Microservice the operator watches, kept from its watch: the world rendering sees.
    pub fleet: Fleet,
    /// Every DatabaseClass, as far as it can be read.
    pub classes: Store<DeserializeGuard<DatabaseClass>>,
    pub caches: Caches,
    /// Consecutive failures per object, for exponential backoff.
    failures: Mutex<HashMap<ObjectRef<Microservice>, u32>>,
}

impl Context {
    pub fn new(
        client: Client,
        recorder: Recorder,
        metrics: Arc<Metrics>,
        settings: Settings,
        fleet: Fleet,
        classes: Store<DeserializeGuard<DatabaseClass>>,
        caches: Caches,
    ) -> Self {
        Self { client, recorder, metrics, settings, fleet, classes, caches, failures: Mutex::default() }
    }

    /// 1 s, 2 s, 4 s ... up to 5 minutes, each ±20 % so retries of many objects spread out.
    pub fn next_backoff(&self, ms: &Microservice) -> Duration {
        self.next_backoff_up_to(ms, Duration::from_secs(300))
    }

    /// [`Context::next_backoff`], at most `max` (±20 %).
    pub fn next_backoff_up_to(&self, ms: &Microservice, max: Duration) -> Duration {
        let n = {
            let mut f = self.failures.lock().unwrap_or_else(|p| p.into_inner());
            let n = f.entry(ObjectRef::from(ms)).or_insert(0);
            *n = n.saturating_add(1);
            *n
        };
        let base = Duration::from_secs(1).saturating_mul(1u32 << (n - 1).min(9)).min(max);
        base.mul_f64(rand::rng().random_range(0.8..1.2))
    }

    pub fn reset_backoff(&self, ms: &Microservice) {
        self.failures.lock().unwrap_or_else(|p| p.into_inner()).remove(&ObjectRef::from(ms));
    }
}

#[cfg(test)]
impl Context {
    /// A context on `client` whose caches never sync, so every read goes to the API server:
    /// for offline tests against [`super::fake_api::FakeApi`].
    pub fn offline(client: Client) -> Self {
        use kube::runtime::events::Reporter;
        use kube::runtime::reflector::store;
        let caches = Caches {
            deployments: Cache::default(),
            services: Cache::default(),
            service_accounts: Cache::default(),
            hpas: Cache::default(),
            network_policies: Cache::default(),
            pdbs: Cache::default(),
            ingresses: Cache::default(),
            stateful_sets: Cache::default(),
            secrets: Cache::default(),
        };
        let reporter = Reporter { controller: crate::api::contract::MANAGER.into(), instance: None };
        let settings = crate::render::Settings::default();
        Self::new(
            client.clone(),
            Recorder::new(client, reporter),
            Arc::default(),
            settings,
            Fleet::default(),
            store().0,
            caches,
        )
    }
}
