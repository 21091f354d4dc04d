//! Leader election on a `coordination.k8s.io/v1` Lease (`kube-lease-manager`), so two replicas
//! never both write to the store.
//!
//! The Lease lasts `lease_duration` from its last renewal and the leader renews it every
//! `renew_every`, by server-side apply under a field manager of its own identity: of two
//! replicas racing for a free Lease, the API server takes one apply and refuses the other.
//!
//! A leader that cannot renew must stop before its Lease runs out, since another replica may
//! take it then. So besides renewing, the holder reads the Lease itself and gives up when it is
//! taken, or when the renewal it last saw leaves less than half of `lease_duration -
//! renew_every` (what is left of a Lease when a renewal is due): the renew deadline is shorter
//! than the Lease, whether the API server answers or not. A renewal is seen only through those
//! reads, so they come four times between the moment a renewal is due and that margin (every
//! 1.25 s by default): read once per `renew_every`, a read that just missed a renewal left the
//! next one due as the margin ran out, and a healthy leader stopped.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::{Api, Client};
use kube_lease_manager::{LeaseManager, LeaseManagerBuilder};
use tokio::time::Instant;

/// Where the Lease is and who this replica is.
#[derive(Debug, Clone)]
pub struct LeaderConfig {
    /// Namespace of the Lease (the controller's own).
    pub namespace: String,
    /// Name of the Lease.
    pub name: String,
    /// This replica's identity (its pod name).
    pub identity: String,
    /// How long a lease lasts without renewal.
    pub lease_duration: Duration,
    /// How often the leader renews.
    pub renew_every: Duration,
}

impl LeaderConfig {
    /// How long before expiry the leader renews: what is left of the Lease when a renewal is
    /// due (at least a second, the Lease's own resolution).
    fn grace(&self) -> Duration {
        self.lease_duration
            .saturating_sub(self.renew_every)
            .max(Duration::from_secs(1))
    }

    /// The least that may be left of the Lease: with less, the holder stops.
    pub fn margin(&self) -> Duration {
        self.grace() / 2
    }

    /// How often the holder reads its Lease: several reads fall between a renewal (due with
    /// `grace` left) and the moment the margin runs out.
    fn read_every(&self) -> Duration {
        ((self.grace() - self.margin()) / 4).max(Duration::from_millis(100))
    }
}

/// What the holder does after looking at its Lease.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Still the leader: go on.
    Hold,
    /// Another replica holds the Lease, or it runs out before it could be renewed: stop writing.
    Lost,
}

/// Whether to go on leading with `left` of the Lease (as of its last renewal seen) and at
/// least `margin` needed.
pub fn verdict(left: Duration, margin: Duration) -> Verdict {
    if left < margin {
        Verdict::Lost
    } else {
        Verdict::Hold
    }
}

/// How much is left of `lease` for `identity`, as of its last renewal; `None` when another
/// replica holds it (or nobody does).
pub fn held_until(lease: Option<&Lease>, identity: &str) -> Option<Duration> {
    let spec = lease?.spec.as_ref()?;
    if spec.holder_identity.as_deref() != Some(identity) {
        return None;
    }
    let renewed = spec.renew_time.as_ref().or(spec.acquire_time.as_ref())?.0;
    let lasts = SignedDuration::from_secs(i64::from(spec.lease_duration_seconds.unwrap_or(0)));
    let left = (renewed + lasts).duration_since(Timestamp::now());
    Some(Duration::try_from(left).unwrap_or(Duration::ZERO))
}

/// How long a shutdown waits for the API server to take the Lease back: an answer takes
/// milliseconds.
pub const RELEASE_WITHIN: Duration = Duration::from_secs(2);

/// The Lease this replica holds.
pub struct Leader {
    manager: Arc<LeaseManager>,
    /// The Lease's namespace, for reading it beside the manager's own renewals.
    leases: Api<Lease>,
    config: LeaderConfig,
}

async fn manager(
    client: Client,
    config: &LeaderConfig,
) -> kube_lease_manager::Result<LeaseManager> {
    LeaseManagerBuilder::new(client, config.name.clone())
        .with_namespace(config.namespace.clone())
        .with_identity(config.identity.clone())
        .with_duration(config.lease_duration.as_secs().max(1))
        .with_grace(config.grace().as_secs())
        .build()
        .await
}

/// The Lease as the API server has it (`Some(None)`: there is none), or `None` when it could
/// not be read within `renew_every`.
async fn look(leases: &Api<Lease>, config: &LeaderConfig) -> Option<Option<Lease>> {
    match tokio::time::timeout(config.renew_every, leases.get_opt(&config.name)).await {
        Ok(Ok(lease)) => Some(lease),
        _ => None,
    }
}

/// Whether `lease` names `identity` but too little of it is left to lead on: a Lease an earlier
/// run of this replica left behind.
fn run_out_own(lease: Option<&Lease>, identity: &str, margin: Duration) -> bool {
    held_until(lease, identity).is_some_and(|left| verdict(left, margin) == Verdict::Lost)
}

/// Whether nobody holds `lease` (handed back, run out, or not there).
fn is_free(lease: Option<&Lease>) -> bool {
    let Some(spec) = lease.and_then(|l| l.spec.as_ref()) else {
        return true;
    };
    match spec.holder_identity.as_deref() {
        None | Some("") => true,
        Some(holder) => held_until(lease, holder) == Some(Duration::ZERO),
    }
}

/// Waits until this replica holds the Lease (creating it the first time).
pub async fn acquire(client: Client, config: &LeaderConfig) -> Leader {
    let leases: Api<Lease> = Api::namespaced(client.clone(), &config.namespace);
    tracing::info!(lease = %config.name, identity = %config.identity, "waiting for the leader Lease");
    loop {
        let manager = match manager(client.clone(), config).await {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %e, lease = %config.name, "reading the leader Lease failed");
                tokio::time::sleep(config.renew_every).await;
                continue;
            }
        };
        if wait_for(&manager, &leases, config).await {
            // The manager takes a Lease that names this identity as it is, without renewing
            // it. Left by an earlier run of this replica (the same pod, its container
            // restarted) and run out, it would be given up at the first look: hand it back and
            // take it afresh.
            if let Some(lease) = look(&leases, config).await
                && run_out_own(lease.as_ref(), &config.identity, config.margin())
            {
                tracing::info!(lease = %config.name, identity = %config.identity, "the leader Lease names this replica from an earlier run and has run out: taking it afresh");
                if let Err(e) = manager.release().await {
                    tracing::warn!(error = %e, lease = %config.name, "handing back the leader Lease failed");
                    tokio::time::sleep(config.renew_every).await;
                }
                continue;
            }
            tracing::info!(lease = %config.name, identity = %config.identity, "became leader");
            return Leader {
                manager: Arc::new(manager),
                leases,
                config: config.clone(),
            };
        }
    }
}

/// Hands the Lease back if it names this replica, for a shutdown that came while
/// [`acquire`] waited: a take on its way then may have landed though its answer never came,
/// and the next leader should not wait the Lease out. Waits at most [`RELEASE_WITHIN`].
pub async fn release_if_named(client: Client, config: &LeaderConfig) {
    let leases: Api<Lease> = Api::namespaced(client.clone(), &config.namespace);
    let work = async {
        let Some(Some(lease)) = look(&leases, config).await else {
            return;
        };
        let holder = lease
            .spec
            .as_ref()
            .and_then(|s| s.holder_identity.as_deref());
        if holder != Some(config.identity.as_str()) {
            return;
        }
        tracing::info!(lease = %config.name, identity = %config.identity, "the leader Lease was taken as the shutdown came: handing it back");
        let released = match manager(client, config).await {
            Ok(m) => m.release().await,
            Err(e) => Err(e),
        };
        if let Err(e) = released {
            tracing::warn!(error = %e, "releasing the leader Lease failed");
        }
    };
    if tokio::time::timeout(RELEASE_WITHIN, work).await.is_err() {
        tracing::warn!(lease = %config.name, "the API server did not answer the release of the leader Lease; it runs out on its own");
    }
}

/// Waits until `manager` holds the Lease (`true`), or until the Lease is free while `manager`
/// still waits for it to run out (`false`: a fresh manager takes it at once). A leader that
/// stops hands its Lease back, and the standby should not wait out the rest of it.
async fn wait_for(manager: &LeaseManager, leases: &Api<Lease>, config: &LeaderConfig) -> bool {
    let mut attempt = Box::pin(manager.changed());
    let mut check = tokio::time::interval(config.renew_every);
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    check.tick().await;
    loop {
        tokio::select! {
            outcome = &mut attempt => {
                match outcome {
                    Ok(true) => return true,
                    Ok(false) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, lease = %config.name, "reading the leader Lease failed");
                        tokio::time::sleep(config.renew_every).await;
                    }
                }
                attempt = Box::pin(manager.changed());
            }
            _ = check.tick() => {
                if let Some(lease) = look(leases, config).await
                    && is_free(lease.as_ref())
                {
                    return false;
                }
            }
        }
    }
}

impl Leader {
    /// Keeps the Lease renewed; returns when it is lost (taken by another replica, or not
    /// renewed in time, see the module's doc): the caller must stop writing.
    pub async fn hold(&self) {
        type Renewal<'a> =
            std::pin::Pin<Box<dyn Future<Output = kube_lease_manager::Result<bool>> + Send + 'a>>;
        let config = &self.config;
        let leases = &self.leases;
        // Just taken: a whole Lease ahead. Whatever happens to the requests below, leadership
        // ends `margin` before this, so that stopping is done before the Lease runs out.
        let mut expires = Instant::now() + config.lease_duration;
        let mut renewing: Renewal = Box::pin(self.manager.changed());
        // Reads of the Lease run on their own, so a read the API server does not answer never
        // holds up the deadline.
        let (read_tx, mut reads) = tokio::sync::mpsc::channel(1);
        let mut check = tokio::time::interval(config.read_every());
        check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let give_up = expires.checked_sub(config.margin()).unwrap_or(expires);
            tokio::select! {
                outcome = &mut renewing => {
                    match outcome {
                        Ok(false) => {
                            tracing::error!(lease = %config.name, "the leader Lease was taken by another replica");
                            return;
                        }
                        Ok(true) => renewing = Box::pin(self.manager.changed()),
                        Err(e) => {
                            tracing::warn!(error = %e, lease = %config.name, "renewing the leader Lease failed");
                            renewing = Box::pin(async {
                                tokio::time::sleep(Duration::from_millis(500)).await;
                                self.manager.changed().await
                            });
                        }
                    }
                }
                _ = check.tick() => {
                    let (leases, name, tx) = (leases.clone(), config.name.clone(), read_tx.clone());
                    let within = config.renew_every;
                    tokio::spawn(async move {
                        let read = tokio::time::timeout(within, leases.get_opt(&name)).await;
                        // At most one read waits; a slow one is simply not counted.
                        let _ = tx.try_send((Instant::now(), read));
                    });
                }
                Some((at, read)) = reads.recv() => match read {
                    Ok(Ok(lease)) => match held_until(lease.as_ref(), &config.identity) {
                        Some(left) => expires = at + left,
                        None => {
                            tracing::error!(lease = %config.name, "the leader Lease was taken by another replica");
                            return;
                        }
                    },
                    Ok(Err(e)) => tracing::warn!(error = %e, lease = %config.name, "reading the leader Lease failed"),
                    Err(_) => tracing::warn!(lease = %config.name, "reading the leader Lease timed out"),
                },
                () = tokio::time::sleep_until(give_up) => {
                    let left = expires.saturating_duration_since(Instant::now());
                    if verdict(left, config.margin()) == Verdict::Lost {
                        tracing::error!(lease = %config.name, ?left, "could not renew the leader Lease in time");
                        return;
                    }
                }
            }
        }
    }

    /// Gives the Lease up on shutdown, so another replica takes over at once. Call it once
    /// [`Leader::hold`] is no longer running, or the Lease may be taken again.
    /// Waits at most [`RELEASE_WITHIN`]: a shutdown must not outlast the pod's grace period
    /// because the API server does not answer; the Lease then runs out on its own.
    pub async fn release(&self) {
        match tokio::time::timeout(RELEASE_WITHIN, self.manager.release()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "releasing the leader Lease failed"),
            Err(_) => tracing::warn!(
                lease = %self.config.name,
                runs_out_within = ?self.config.lease_duration,
                "the API server did not answer the release of the leader Lease; it runs out on its own"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(duration: u64, renew: u64) -> LeaderConfig {
        LeaderConfig {
            namespace: "suborg-system".into(),
            name: "suborg-leader".into(),
            identity: "pod-a".into(),
            lease_duration: Duration::from_secs(duration),
            renew_every: Duration::from_secs(renew),
        }
    }

    #[test]
    fn the_margin_is_less_than_what_is_left_when_a_renewal_is_due() {
        let c = config(15, 5);
        assert_eq!(c.grace(), Duration::from_secs(10));
        assert_eq!(c.margin(), Duration::from_secs(5));
        // Renewing as often as the Lease lasts still leaves a second to renew in.
        let c = config(10, 10);
        assert_eq!(c.grace(), Duration::from_secs(1));
        assert!(c.margin() < c.grace());
    }

    #[test]
    fn the_lease_is_read_several_times_between_a_renewal_and_the_margin() {
        for (duration, renew) in [(15, 5), (10, 10), (60, 20), (2, 1)] {
            let c = config(duration, renew);
            // A renewal is due with `grace` left; the holder stops with `margin` left.
            let window = c.grace() - c.margin();
            assert!(
                window >= c.read_every() * 3,
                "{duration}/{renew}: {window:?} for reads every {:?}",
                c.read_every()
            );
        }
    }

    #[test]
    fn leadership_ends_when_too_little_of_the_lease_is_left() {
        let margin = Duration::from_secs(5);
        assert_eq!(verdict(Duration::from_secs(14), margin), Verdict::Hold);
        assert_eq!(verdict(Duration::from_secs(5), margin), Verdict::Hold);
        assert_eq!(verdict(Duration::from_millis(4_999), margin), Verdict::Lost);
        assert_eq!(verdict(Duration::ZERO, margin), Verdict::Lost);
    }

    fn lease(holder: Option<&str>, renewed: Timestamp, seconds: i32) -> Lease {
        use k8s_openapi::api::coordination::v1::LeaseSpec;
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
        Lease {
            spec: Some(LeaseSpec {
                holder_identity: holder.map(str::to_owned),
                renew_time: Some(MicroTime(renewed)),
                lease_duration_seconds: Some(seconds),
                ..LeaseSpec::default()
            }),
            ..Lease::default()
        }
    }

    #[test]
    fn what_is_left_of_a_lease_is_read_from_its_last_renewal() {
        let now = Timestamp::now();
        let left = held_until(Some(&lease(Some("pod-a"), now, 15)), "pod-a").unwrap();
        assert!(left > Duration::from_secs(14) && left <= Duration::from_secs(15));
        let stale = now - SignedDuration::from_secs(20);
        assert_eq!(
            held_until(Some(&lease(Some("pod-a"), stale, 15)), "pod-a"),
            Some(Duration::ZERO)
        );
        assert_eq!(
            held_until(Some(&lease(Some("pod-b"), now, 15)), "pod-a"),
            None
        );
        assert_eq!(held_until(Some(&lease(None, now, 15)), "pod-a"), None);
        assert_eq!(held_until(None, "pod-a"), None);
        assert!(is_free(None));
        assert!(is_free(Some(&lease(None, now, 15))));
        assert!(is_free(Some(&lease(Some("pod-b"), stale, 15))));
        assert!(!is_free(Some(&lease(Some("pod-b"), now, 15))));
    }

    #[test]
    fn a_lease_an_earlier_run_left_is_taken_afresh_only_when_it_ran_out() {
        let (now, margin) = (Timestamp::now(), Duration::from_secs(5));
        let stale = now - SignedDuration::from_secs(20);
        let nearly = now - SignedDuration::from_secs(12);
        assert!(run_out_own(
            Some(&lease(Some("pod-a"), stale, 15)),
            "pod-a",
            margin
        ));
        assert!(run_out_own(
            Some(&lease(Some("pod-a"), nearly, 15)),
            "pod-a",
            margin
        ));
        assert!(!run_out_own(
            Some(&lease(Some("pod-a"), now, 15)),
            "pod-a",
            margin
        ));
        // Another replica's Lease, run out or not, is the manager's to take.
        assert!(!run_out_own(
            Some(&lease(Some("pod-b"), stale, 15)),
            "pod-a",
            margin
        ));
        assert!(!run_out_own(None, "pod-a", margin));
    }
}
