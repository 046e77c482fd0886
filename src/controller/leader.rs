//! Leader election on a coordination.k8s.io Lease, so that two replicas never both reconcile.
//!
//! The semantics are client-go's (`tools/leaderelection`):
//! - A candidate never trusts the timestamps in the Lease: they come from the holder's clock. It
//!   notes, by its own monotonic clock, when it last saw the record change, and takes the Lease
//!   only once the record has stayed unchanged for `leaseDurationSeconds` since then. Clocks that
//!   disagree, by seconds or by hours, therefore do not matter; only their rates do.
//! - A lease with no holder (released) is taken at once.
//! - The holder renews every retry period and steps down when it could not renew within the
//!   renew deadline (two thirds of the lease), so it stops acting before anyone may take over.
//! - Candidates retry with jitter (client-go's factor 1.2), so standbys do not write in step.
//! - Every write carries the resourceVersion that was read: of two racing writers one gets 409.
//!
//! Why not a crate: `kube-lease-manager` 0.13 fits kube 5, but it judges expiry from the holder's
//! `renewTime` against the local wall clock, a standby sleeps until the holder's lease would run
//! out (a released lease waits a whole lease duration), and a holder that cannot renew is only
//! told so by errors, with no renew deadline.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ObjectMeta, PostParams};
use tokio::sync::watch;
use tokio::task::AbortHandle;
use tokio::time::Instant;
use tracing::{info, warn};

#[derive(Clone)]
pub struct LeaderElector {
    api: Api<Lease>,
    name: String,
    identity: String,
    /// How long a lease holds without renewal.
    duration: Duration,
    /// How long the holder keeps trying to renew before it steps down.
    renew_deadline: Duration,
    /// How often the holder renews, and (with jitter) how often a candidate retries.
    retry: Duration,
    /// The record last seen, and when.
    observed: Arc<Mutex<Observation>>,
    /// The renewal task of [`LeaderElector::keep`], stopped by [`LeaderElector::release`].
    renewing: Arc<Mutex<Option<AbortHandle>>>,
    /// Told of every renewal, so that the client writes only while the lease is fresh.
    fence: Fence,
}

/// Whether this replica may write now. A leader that stops renewing learns it from a timer; a
/// process that was paused (SIGSTOP, a frozen VM, a long stall) resumes with its reconciles in
/// flight, and those could write before that timer fires, while another replica already leads.
/// The client asks the fence before each write (see `controller::client`): the lease must have
/// been renewed within the renew deadline, by this process's monotonic clock.
#[derive(Clone, Debug)]
pub struct Fence {
    /// `None` without leader election: always open.
    state: Option<Arc<Mutex<Option<Instant>>>>,
    deadline: Duration,
}

impl Fence {
    /// No leader election: every write may go.
    pub fn open() -> Fence {
        Fence { state: None, deadline: Duration::ZERO }
    }

    /// Closed until the lease is taken; open for `renew_deadline` after each renewal.
    pub fn for_lease(lease_duration: Duration) -> Fence {
        Fence { state: Some(Arc::default()), deadline: renew_deadline(lease_duration) }
    }

    pub fn may_write(&self) -> bool {
        let Some(state) = &self.state else { return true };
        let renewed = *state.lock().unwrap_or_else(|p| p.into_inner());
        renewed.is_some_and(|at| at.elapsed() < self.deadline)
    }

    fn set(&self, renewed: Option<Instant>) {
        if let Some(state) = &self.state {
            *state.lock().unwrap_or_else(|p| p.into_inner()) = renewed;
        }
    }
}

fn renew_deadline(lease_duration: Duration) -> Duration {
    lease_duration.mul_f64(2.0 / 3.0)
}

impl LeaderElector {
    /// client-go's defaults are 15 s / 10 s / 2 s; the same ratios hold for any lease duration.
    pub fn new(api: Api<Lease>, name: &str, identity: &str, duration: Duration) -> Self {
        Self {
            api,
            name: name.into(),
            identity: identity.into(),
            duration,
            renew_deadline: renew_deadline(duration),
            retry: duration.mul_f64(2.0 / 15.0),
            observed: Arc::default(),
            renewing: Arc::default(),
            fence: Fence::for_lease(duration),
        }
    }

    /// Tells `fence` (made with [`Fence::for_lease`] for this lease) of every renewal.
    pub fn with_fence(mut self, fence: Fence) -> Self {
        self.fence = fence;
        self
    }

    /// Waits until this process holds the lease.
    pub async fn acquire(&self) {
        let mut announced = false;
        loop {
            // Bounded by the lease, not the retry: a candidate may be slow (a busy API server),
            // only a holder has a deadline.
            let started = Instant::now();
            match tokio::time::timeout(self.duration, self.try_acquire_or_renew()).await {
                Ok(Ok(true)) => {
                    self.fence.set(Some(started));
                    info!(lease = %self.name, identity = %self.identity, "became leader");
                    return;
                }
                Ok(Ok(false)) if !announced => {
                    info!(lease = %self.name, "another replica leads; standing by");
                    announced = true;
                }
                Ok(Ok(false)) => {}
                Ok(Err(e)) => warn!(error = %e, "cannot read or write the leader lease"),
                Err(_) => warn!(lease = %self.name, "the leader lease did not answer in time"),
            }
            tokio::time::sleep(self.retry.mul_f64(1.0 + JITTER * rand::random::<f64>())).await;
        }
    }

    /// Renews the lease in the background. The receiver turns `true` once leadership is lost:
    /// the lease could not be renewed within the renew deadline, or someone else took it. The
    /// renewals stop with [`LeaderElector::release`], so that none can take the lease back after
    /// it was given up.
    pub fn keep(&self) -> watch::Receiver<bool> {
        let (tx, rx) = watch::channel(false);
        let me = self.clone();
        let task = tokio::spawn(async move {
            // Others count the lease from when they see a write, which is after it was sent.
            let mut renewed_at = Instant::now();
            loop {
                tokio::time::sleep(me.retry).await;
                let started = Instant::now();
                let left = me.renew_deadline.saturating_sub(started - renewed_at);
                match tokio::time::timeout(left, me.try_acquire_or_renew()).await {
                    Ok(Ok(true)) => {
                        renewed_at = started;
                        me.fence.set(Some(started));
                    }
                    Ok(Ok(false)) => {
                        me.fence.set(None);
                        warn!(lease = %me.name, "leadership taken by another replica");
                        let _ = tx.send(true);
                        return;
                    }
                    Ok(Err(e)) => warn!(error = %e, "cannot renew the leader lease"),
                    Err(_) => warn!(lease = %me.name, "renewing the leader lease did not answer in time"),
                }
                // Stop before the lease can expire, so no other replica leads while we still act.
                if renewed_at.elapsed() >= me.renew_deadline {
                    me.fence.set(None);
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
        self.fence.set(None);
        for _ in 0..3 {
            let Ok(Some(mut lease)) = self.api.get_opt(&self.name).await else { return };
            let Some(spec) = lease.spec.as_mut() else { return };
            if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
                return;
            }
            let now = MicroTime(Timestamp::now());
            spec.holder_identity = None;
            spec.lease_duration_seconds = Some(1);
            spec.acquire_time = Some(now.clone());
            spec.renew_time = Some(now);
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
        let seconds = i32::try_from(self.duration.as_secs()).unwrap_or(15);
        let Some(mut lease) = self.api.get_opt(&self.name).await? else {
            let now = MicroTime(Timestamp::now());
            let lease = Lease {
                metadata: ObjectMeta { name: Some(self.name.clone()), ..Default::default() },
                spec: Some(LeaseSpec {
                    holder_identity: Some(self.identity.clone()),
                    lease_duration_seconds: Some(seconds),
                    acquire_time: Some(now.clone()),
                    renew_time: Some(now),
                    lease_transitions: Some(0),
                    ..Default::default()
                }),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(created) => {
                    self.see(&created);
                    Ok(true)
                }
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
                Err(e) => Err(e),
            };
        };
        let next = {
            let Ok(mut observed) = self.observed.lock() else { return Ok(false) };
            observed.see(lease.spec.clone().unwrap_or_default(), Instant::now());
            observed.next(&self.identity, seconds, Instant::now(), Timestamp::now())
        };
        let Some(next) = next else { return Ok(false) };
        lease.spec = Some(next);
        // `replace` carries the resourceVersion we read: a concurrent writer makes it fail with 409.
        match self.api.replace(&self.name, &PostParams::default(), &lease).await {
            Ok(written) => {
                self.see(&written);
                Ok(true)
            }
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn see(&self, lease: &Lease) {
        if let Ok(mut observed) = self.observed.lock() {
            observed.see(lease.spec.clone().unwrap_or_default(), Instant::now());
        }
    }
}

/// client-go's `JitterFactor`: a candidate waits between one and 2.2 retry periods.
const JITTER: f64 = 1.2;

/// The record a replica last saw and when it saw it change, by its own clock (client-go's
/// `observedRecord` and `observedTime`).
#[derive(Debug, Default)]
struct Observation {
    record: Option<LeaseSpec>,
    since: Option<Instant>,
}

impl Observation {
    fn see(&mut self, record: LeaseSpec, now: Instant) {
        if self.record.as_ref() != Some(&record) {
            self.record = Some(record);
            self.since = Some(now);
        }
    }

    /// The record to write to hold the lease, or `None` while another holder's lease runs.
    fn next(&self, me: &str, seconds: i32, now: Instant, wall: Timestamp) -> Option<LeaseSpec> {
        let record = self.record.clone().unwrap_or_default();
        let holder = record.holder_identity.as_deref().filter(|h| !h.is_empty());
        let mine = holder == Some(me);
        if holder.is_some() && !mine {
            let lasts = Duration::from_secs(u64::try_from(record.lease_duration_seconds.unwrap_or(0)).unwrap_or(0));
            let since = self.since.unwrap_or(now);
            if now < since + lasts {
                return None;
            }
        }
        let wall = MicroTime(wall);
        let transitions = record.lease_transitions.unwrap_or(0);
        Some(LeaseSpec {
            holder_identity: Some(me.into()),
            lease_duration_seconds: Some(seconds),
            renew_time: Some(wall.clone()),
            acquire_time: if mine { record.acquire_time.clone() } else { Some(wall) },
            lease_transitions: Some(if mine { transitions } else { transitions + 1 }),
            ..record
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::fake_api::FakeApi;

    fn held_by(holder: &str, renewed: Timestamp, seconds: i32, transitions: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(holder.into()),
            lease_duration_seconds: Some(seconds),
            renew_time: Some(MicroTime(renewed)),
            acquire_time: Some(MicroTime(renewed)),
            lease_transitions: Some(transitions),
            ..Default::default()
        }
    }

    fn secs(s: i64) -> k8s_openapi::jiff::SignedDuration {
        k8s_openapi::jiff::SignedDuration::from_secs(s)
    }

    #[test]
    fn another_holder_is_waited_for_from_when_its_record_was_seen_whatever_its_clock_says() {
        let t0 = Instant::now();
        let wall = Timestamp::now();
        // The holder's clock is an hour behind ours, then an hour ahead: neither changes anything.
        for skew in [secs(-3600), secs(3600)] {
            let mut o = Observation::default();
            o.see(held_by("b", wall + skew, 6, 3), t0);
            assert_eq!(o.next("a", 6, t0, wall), None, "skew {skew}: a fresh record is respected");
            assert_eq!(o.next("a", 6, t0 + Duration::from_millis(5999), wall), None, "skew {skew}");
            let taken = o.next("a", 6, t0 + Duration::from_secs(6), wall).expect("expired after 6 s unchanged");
            assert_eq!(taken.holder_identity.as_deref(), Some("a"));
            assert_eq!(taken.lease_transitions, Some(4), "a new holder is a transition");
            assert_eq!(taken.acquire_time, Some(MicroTime(wall)));
        }
    }

    #[test]
    fn a_renewed_record_restarts_the_wait_and_an_unchanged_one_does_not() {
        let t0 = Instant::now();
        let wall = Timestamp::now();
        let mut o = Observation::default();
        o.see(held_by("b", wall, 6, 0), t0);
        // Seen again unchanged at 4 s: the wait still counts from 0 s.
        o.see(held_by("b", wall, 6, 0), t0 + Duration::from_secs(4));
        assert!(o.next("a", 6, t0 + Duration::from_secs(6), wall).is_some());
        // Renewed at 5 s (a new renewTime): it holds until 11 s.
        o.see(held_by("b", wall + secs(5), 6, 0), t0 + Duration::from_secs(5));
        assert_eq!(o.next("a", 6, t0 + Duration::from_secs(10), wall), None);
        assert!(o.next("a", 6, t0 + Duration::from_secs(11), wall).is_some());
    }

    #[test]
    fn a_released_lease_is_taken_at_once_and_the_holder_renews_keeping_its_acquire_time() {
        let t0 = Instant::now();
        let wall = Timestamp::now();
        let mut o = Observation::default();
        o.see(LeaseSpec { holder_identity: None, lease_duration_seconds: Some(1), ..held_by("", wall, 1, 2) }, t0);
        let taken = o.next("a", 6, t0, wall).expect("no holder: take it now");
        assert_eq!(taken.lease_transitions, Some(3));
        o.see(taken.clone(), t0);
        let later = wall + secs(2);
        let renewed = o.next("a", 6, t0 + Duration::from_secs(2), later).expect("the holder always renews");
        assert_eq!(renewed.acquire_time, taken.acquire_time);
        assert_eq!(renewed.lease_transitions, Some(3), "a renewal is no transition");
        assert_eq!(renewed.renew_time, Some(MicroTime(later)));
    }

    fn elector(api: &FakeApi, identity: &str) -> LeaderElector {
        LeaderElector::new(api.api("flotilla-system"), "lease", identity, Duration::from_secs(6))
    }

    async fn holder(api: &FakeApi) -> Option<String> {
        let leases: Api<Lease> = api.api("flotilla-system");
        leases.get("lease").await.ok()?.spec?.holder_identity
    }

    /// Everything below runs against an in-memory API (resourceVersions, 409s, outages) on
    /// tokio's paused clock, so a minute of lease time takes milliseconds and is exact.
    #[tokio::test(start_paused = true)]
    async fn the_fence_opens_with_a_renewal_and_closes_at_the_renew_deadline_without_one() {
        assert!(Fence::open().may_write(), "without leader election every write goes");
        let fence = Fence::for_lease(Duration::from_secs(15));
        assert!(!fence.may_write(), "closed until the lease is taken");
        fence.set(Some(Instant::now()));
        tokio::time::advance(Duration::from_millis(9_900)).await;
        assert!(fence.may_write());
        // A process paused past its renew deadline finds the fence closed when it resumes,
        // before any timer of its own has fired.
        tokio::time::advance(Duration::from_millis(200)).await;
        assert!(!fence.may_write());
        fence.set(Some(Instant::now()));
        assert!(fence.may_write());
        fence.set(None);
        assert!(!fence.may_write(), "closed once the lease is lost or given up");
    }

    #[tokio::test(start_paused = true)]
    async fn one_holder_at_a_time_when_candidates_race_for_an_empty_lease() {
        let api = FakeApi::default();
        let (a, b) = (elector(&api, "a"), elector(&api, "b"));
        let winner = tokio::select! {
            _ = a.acquire() => "a",
            _ = b.acquire() => "b",
        };
        assert_eq!(holder(&api).await.as_deref(), Some(winner));
        let _keep = if winner == "a" { a.keep() } else { b.keep() };
        let loser = if winner == "a" { &b } else { &a };
        let waited = tokio::time::timeout(Duration::from_secs(60), loser.acquire()).await;
        assert!(waited.is_err(), "the other candidate must not lead while the holder renews");
        assert_eq!(holder(&api).await.as_deref(), Some(winner));
    }

    #[tokio::test(start_paused = true)]
    async fn a_holder_whose_clock_is_behind_keeps_its_lease() {
        let api = FakeApi::default();
        let leases: Api<Lease> = api.api("flotilla-system");
        let stale = Timestamp::now() - secs(3600);
        let lease = Lease {
            metadata: ObjectMeta { name: Some("lease".into()), ..Default::default() },
            spec: Some(held_by("b", stale, 6, 0)),
        };
        leases.create(&PostParams::default(), &lease).await.unwrap();
        // b renews every 2 s, stamping its own (late) clock.
        let renewer = {
            let leases = leases.clone();
            tokio::spawn(async move {
                for i in 1.. {
                    tokio::time::sleep(Duration::from_secs(2)).await;
                    let mut l = leases.get("lease").await.unwrap();
                    l.spec.as_mut().unwrap().renew_time = Some(MicroTime(stale + secs(2 * i)));
                    leases.replace("lease", &PostParams::default(), &l).await.unwrap();
                }
            })
        };
        let a = elector(&api, "a");
        let waited = tokio::time::timeout(Duration::from_secs(60), a.acquire()).await;
        assert!(waited.is_err(), "a renewed lease is never taken, however old its renewTime looks");
        // b dies: a takes over once the record has been unchanged for the lease duration.
        renewer.abort();
        let died = Instant::now();
        tokio::time::timeout(Duration::from_secs(20), a.acquire()).await.expect("a takes the expired lease");
        let took = died.elapsed();
        assert!(took >= Duration::from_secs(4), "taken {took:?} after b's last renewal");
        assert!(took <= Duration::from_secs(6) + Duration::from_secs_f64(0.8 * 2.2), "taken after {took:?}");
        assert_eq!(holder(&api).await.as_deref(), Some("a"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_released_lease_is_taken_within_a_jittered_retry() {
        let api = FakeApi::default();
        let (a, b) = (elector(&api, "a"), elector(&api, "b"));
        a.acquire().await;
        let _lost = a.keep();
        let standby = tokio::spawn(async move {
            b.acquire().await;
            Instant::now()
        });
        tokio::time::sleep(Duration::from_secs(30)).await;
        assert_eq!(holder(&api).await.as_deref(), Some("a"));
        let released = Instant::now();
        a.release().await;
        let took = standby.await.unwrap() - released;
        assert!(took <= Duration::from_secs_f64(0.8 * 2.2), "a released lease waited {took:?}");
        assert_eq!(holder(&api).await.as_deref(), Some("b"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_holder_that_cannot_renew_steps_down_before_its_lease_can_be_taken() {
        let api = FakeApi::default();
        let a = elector(&api, "a");
        a.acquire().await;
        let mut lost = a.keep();
        tokio::time::sleep(Duration::from_secs(20)).await;
        assert!(!*lost.borrow(), "renewing normally");
        // The API stops answering; the last renewal was at most one retry period ago.
        api.set_down(true);
        let down = Instant::now();
        lost.wait_for(|l| *l).await.unwrap();
        let after = down.elapsed();
        // Others may take it 6 s after they saw the last renewal, which is before `down`.
        assert!(after < Duration::from_secs(6) - Duration::from_secs_f64(0.8), "stepped down after {after:?}");
        assert!(after >= Duration::from_secs(4) - Duration::from_secs_f64(0.8), "stepped down too early: {after:?}");
    }
}
