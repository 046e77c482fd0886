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
    /// Ingresses Flotilla did not make (any label but managed-by flotilla): the hosts they hold.
    pub foreign_ingresses: Store<Ingress>,
    /// The claims, one cache per kind a DatabaseClass names (see `dynamic`).
    pub claims: super::dynamic::DynamicKinds,
    /// Which custom kinds the API server serves (see `crds`).
    pub crds: super::crds::Crds,
    /// The namespaces watched: a list the caches cannot answer yet is made within them.
    pub scope: super::scope::Scope,
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
            foreign_ingresses: store().0,
            claims: Default::default(),
            crds: super::crds::Crds::none(),
            scope: super::scope::Scope::All,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::fake_api::FakeApi;

    fn ms(name: &str) -> Microservice {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "flotilla.dev/v1alpha1", "kind": "Microservice",
            "metadata": {"name": name, "namespace": "shop"}, "spec": {"image": "x:1"}
        }))
        .unwrap()
    }

    /// Whether `delay` is `base` seconds ±20 % (with a nanosecond of rounding either side).
    fn within(delay: Duration, base: f64) -> bool {
        let d = delay.as_secs_f64();
        d >= base * 0.8 - 1e-9 && d <= base * 1.2 + 1e-9
    }

    #[tokio::test]
    async fn backoff_doubles_from_one_second_to_five_minutes_with_jitter_per_object() {
        let ctx = Context::offline(FakeApi::default().client());
        let (orders, payments) = (ms("orders"), ms("payments"));
        let mut delays = Vec::new();
        for n in 1..=12u32 {
            let base = 2f64.powi(n as i32 - 1).min(300.0);
            let delay = ctx.next_backoff(&orders);
            assert!(within(delay, base), "failure {n}: {delay:?}, not {base} s ±20 %");
            delays.push(delay);
            if n == 5 {
                // Another object's failures count apart: it starts at 1 s, and does not move orders on.
                let other = ctx.next_backoff(&payments);
                assert!(within(other, 1.0), "payments' first failure: {other:?}");
            }
        }
        // Capped: never more than 5 min + 20 %.
        assert!(delays.iter().all(|d| *d <= Duration::from_secs(360)), "{delays:?}");
        assert!(delays[9..].iter().all(|d| within(*d, 300.0)), "{delays:?}");

        // payments went on from where it was, orders' 12 failures notwithstanding.
        let other = ctx.next_backoff(&payments);
        assert!(within(other, 2.0), "payments' second failure: {other:?}");

        // A success starts orders over at 1 s; payments keeps its count.
        ctx.reset_backoff(&orders);
        let again = ctx.next_backoff(&orders);
        assert!(within(again, 1.0), "after reset: {again:?}");
        let third = ctx.next_backoff(&payments);
        assert!(within(third, 4.0), "payments' third failure: {third:?}");
    }

    #[tokio::test]
    async fn backoff_jitter_spreads_retries_over_the_whole_band() {
        let ctx = Context::offline(FakeApi::default().client());
        let orders = ms("orders");
        let mut firsts = Vec::new();
        for _ in 0..200 {
            ctx.reset_backoff(&orders);
            firsts.push(ctx.next_backoff(&orders).as_secs_f64());
        }
        assert!(firsts.iter().all(|d| (0.8 - 1e-9..=1.2 + 1e-9).contains(d)), "{firsts:?}");
        // Not one fixed delay: some in the lowest tenth of the band, some in the highest.
        assert!(firsts.iter().any(|d| *d < 0.84), "none below 0.84 s: {firsts:?}");
        assert!(firsts.iter().any(|d| *d > 1.16), "none above 1.16 s: {firsts:?}");
    }
}
