//! Leader election on a coordination.k8s.io Lease, so that two replicas never both reconcile.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ObjectMeta, PostParams};
use tokio::sync::watch;
use tokio::task::AbortHandle;
use tracing::{info, warn};

#[derive(Clone)]
pub struct LeaderElector {
    api: Api<Lease>,
    name: String,
    identity: String,
    /// How long a lease holds without renewal.
    duration: Duration,
    /// How often the holder renews, and a candidate retries.
    retry: Duration,
    /// The renewal task of [`LeaderElector::keep`], stopped by [`LeaderElector::release`].
    renewing: Arc<Mutex<Option<AbortHandle>>>,
}

impl LeaderElector {
    pub fn new(api: Api<Lease>, name: &str, identity: &str, duration: Duration) -> Self {
        Self {
            api,
            name: name.into(),
            identity: identity.into(),
            duration,
            retry: duration / 3,
            renewing: Arc::default(),
        }
    }

    /// Waits until this process holds the lease.
    pub async fn acquire(&self) {
        let mut announced = false;
        loop {
            match self.try_acquire_or_renew().await {
                Ok(true) => {
                    info!(lease = %self.name, identity = %self.identity, "became leader");
                    return;
                }
                Ok(false) if !announced => {
                    info!(lease = %self.name, "another replica leads; standing by");
                    announced = true;
                }
                Ok(false) => {}
                Err(e) => warn!(error = %e, "cannot read or write the leader lease"),
            }
            tokio::time::sleep(self.retry).await;
        }
    }

    /// Renews the lease in the background. The receiver turns `true` once leadership is lost:
    /// the lease could not be renewed for longer than it lasts, or someone else took it. The
    /// renewals stop with [`LeaderElector::release`], so that none can take the lease back after
    /// it was given up.
    pub fn keep(&self) -> watch::Receiver<bool> {
        let (tx, rx) = watch::channel(false);
        let me = self.clone();
        let task = tokio::spawn(async move {
            let mut last_renewed = Instant::now();
            loop {
                tokio::time::sleep(me.retry).await;
                match me.try_acquire_or_renew().await {
                    Ok(true) => last_renewed = Instant::now(),
                    Ok(false) => {
                        warn!(lease = %me.name, "leadership taken by another replica");
                        let _ = tx.send(true);
                        return;
                    }
                    Err(e) => warn!(error = %e, "cannot renew the leader lease"),
                }
                // Stop before the lease can expire, so no other replica leads while we still act.
                if last_renewed.elapsed() > me.duration.mul_f64(2.0 / 3.0) {
                    warn!(lease = %me.name, "could not renew the leader lease in time");
                    let _ = tx.send(true);
                    return;
                }
            }
        });
        if let Ok(mut renewing) = self.renewing.lock() {
            *renewing = Some(task.abort_handle());
        }
        rx
    }

    /// Gives the lease up, so a standby takes over at once instead of after it expires.
    /// Stops the renewals first; a write that raced a renewal (409) is read and tried again.
    pub async fn release(&self) {
        if let Ok(mut renewing) = self.renewing.lock()
            && let Some(task) = renewing.take()
        {
            task.abort();
        }
        for _ in 0..3 {
            let Ok(Some(mut lease)) = self.api.get_opt(&self.name).await else { return };
            let Some(spec) = lease.spec.as_mut() else { return };
            if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
                return;
            }
            spec.holder_identity = None;
            spec.lease_duration_seconds = Some(1);
            match self.api.replace(&self.name, &PostParams::default(), &lease).await {
                Ok(_) => {
                    info!(lease = %self.name, "released leadership");
                    return;
                }
                Err(kube::Error::Api(s)) if s.code == 409 => continue,
                Err(e) => {
                    warn!(error = %e, "cannot release the leader lease");
                    return;
                }
            }
        }
    }

    async fn try_acquire_or_renew(&self) -> Result<bool, kube::Error> {
        let now = Timestamp::now();
        let seconds = i32::try_from(self.duration.as_secs()).unwrap_or(15);
        let Some(mut lease) = self.api.get_opt(&self.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta { name: Some(self.name.clone()), ..Default::default() },
                spec: Some(LeaseSpec {
                    holder_identity: Some(self.identity.clone()),
                    lease_duration_seconds: Some(seconds),
                    acquire_time: Some(MicroTime(now)),
                    renew_time: Some(MicroTime(now)),
                    lease_transitions: Some(0),
                    ..Default::default()
                }),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
                Err(e) => Err(e),
            };
        };
        let spec = lease.spec.get_or_insert_with(Default::default);
        let mine = spec.holder_identity.as_deref() == Some(self.identity.as_str());
        let expired = match (&spec.renew_time, spec.lease_duration_seconds) {
            (Some(t), Some(d)) => t.0.as_second() + i64::from(d) < now.as_second(),
            _ => true,
        };
        if !mine && spec.holder_identity.is_some() && !expired {
            return Ok(false);
        }
        if !mine {
            spec.acquire_time = Some(MicroTime(now));
            spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
        }
        spec.holder_identity = Some(self.identity.clone());
        spec.lease_duration_seconds = Some(seconds);
        spec.renew_time = Some(MicroTime(now));
        // `replace` carries the resourceVersion we read: a concurrent writer makes it fail with 409.
        match self.api.replace(&self.name, &PostParams::default(), &lease).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(e) => Err(e),
        }
    }
}
