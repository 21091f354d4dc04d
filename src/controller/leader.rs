//! Leader election on a `coordination.k8s.io/v1` Lease, so two replicas never both write.
//!
//! A replica takes the Lease when it is free, expired, or already its own, with an update that
//! carries the Lease's `resourceVersion`: of two replicas racing, the API server accepts one
//! and refuses the other with a conflict. The leader renews well within the lease duration; if
//! it cannot renew before the lease would expire it stops, since another replica may take over.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::Client;
use kube::api::{Api, PostParams};

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

/// Whether `lease` may be taken by `identity` at `now`.
pub fn can_take(lease: &Lease, identity: &str, now: Timestamp) -> bool {
    let Some(spec) = &lease.spec else {
        return true;
    };
    match spec.holder_identity.as_deref() {
        None | Some("") => true,
        Some(holder) if holder == identity => true,
        Some(_) => {
            let duration =
                SignedDuration::from_secs(i64::from(spec.lease_duration_seconds.unwrap_or(15)));
            match spec.renew_time.as_ref().or(spec.acquire_time.as_ref()) {
                Some(t) => t.0 + duration < now,
                None => true,
            }
        }
    }
}

/// The Lease as `identity` holds it from `now`.
pub fn taken(lease: Option<&Lease>, config: &LeaderConfig, now: Timestamp) -> Lease {
    let previous = lease.and_then(|l| l.spec.clone()).unwrap_or_default();
    let same_holder = previous.holder_identity.as_deref() == Some(config.identity.as_str());
    Lease {
        metadata: ObjectMeta {
            name: Some(config.name.clone()),
            namespace: Some(config.namespace.clone()),
            resource_version: lease.and_then(|l| l.metadata.resource_version.clone()),
            ..lease.map(|l| l.metadata.clone()).unwrap_or_default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some(config.identity.clone()),
            lease_duration_seconds: Some(config.lease_duration.as_secs().max(1) as i32),
            acquire_time: if same_holder {
                previous.acquire_time.clone()
            } else {
                Some(MicroTime(now))
            },
            renew_time: Some(MicroTime(now)),
            lease_transitions: Some(
                previous.lease_transitions.unwrap_or(0)
                    + i32::from(!same_holder && lease.is_some()),
            ),
            ..previous
        }),
    }
}

/// Tries once to take or renew the Lease. `Ok(true)` when this replica holds it.
pub async fn try_acquire(api: &Api<Lease>, config: &LeaderConfig) -> Result<bool, kube::Error> {
    let now = Timestamp::now();
    let current = api.get_opt(&config.name).await?;
    if let Some(l) = &current
        && !can_take(l, &config.identity, now)
    {
        return Ok(false);
    }
    let lease = taken(current.as_ref(), config, now);
    let written = match &current {
        None => api.create(&PostParams::default(), &lease).await,
        Some(_) => {
            api.replace(&config.name, &PostParams::default(), &lease)
                .await
        }
    };
    match written {
        Ok(_) => Ok(true),
        // Another replica wrote first.
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
        Err(e) => Err(e),
    }
}

/// Waits until this replica holds the Lease.
pub async fn acquire(client: Client, config: &LeaderConfig) -> Api<Lease> {
    let api: Api<Lease> = Api::namespaced(client, &config.namespace);
    let mut announced = false;
    loop {
        match try_acquire(&api, config).await {
            Ok(true) => {
                tracing::info!(lease = %config.name, identity = %config.identity, "became leader");
                return api;
            }
            Ok(false) => {
                if !announced {
                    tracing::info!(lease = %config.name, "another replica leads; standing by");
                    announced = true;
                }
            }
            Err(e) => tracing::warn!(error = %e, "reading the leader Lease failed"),
        }
        tokio::time::sleep(config.renew_every).await;
    }
}

/// Renews the Lease until renewal fails for longer than the lease lasts, then returns: the
/// caller must stop writing.
pub async fn hold(api: Api<Lease>, config: LeaderConfig) {
    let mut last_renewed = tokio::time::Instant::now();
    loop {
        tokio::time::sleep(config.renew_every).await;
        match try_acquire(&api, &config).await {
            Ok(true) => last_renewed = tokio::time::Instant::now(),
            Ok(false) => {
                tracing::error!(lease = %config.name, "the leader Lease was taken by another replica");
                return;
            }
            Err(e) => tracing::warn!(error = %e, "renewing the leader Lease failed"),
        }
        if last_renewed.elapsed() >= config.lease_duration {
            tracing::error!(lease = %config.name, "could not renew the leader Lease in time");
            return;
        }
    }
}

/// Gives the Lease up on shutdown, so another replica takes over at once.
pub async fn release(api: &Api<Lease>, config: &LeaderConfig) {
    if let Ok(Some(mut lease)) = api.get_opt(&config.name).await
        && let Some(spec) = lease.spec.as_mut()
        && spec.holder_identity.as_deref() == Some(config.identity.as_str())
    {
        spec.holder_identity = None;
        spec.renew_time = None;
        if let Err(e) = api
            .replace(&config.name, &PostParams::default(), &lease)
            .await
        {
            tracing::warn!(error = %e, "releasing the leader Lease failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(identity: &str) -> LeaderConfig {
        LeaderConfig {
            namespace: "suborg-system".into(),
            name: "suborg-leader".into(),
            identity: identity.into(),
            lease_duration: Duration::from_secs(15),
            renew_every: Duration::from_secs(5),
        }
    }

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn a_held_lease_is_taken_only_once_expired() {
        let now = ts("2026-01-01T00:00:00Z");
        let lease = taken(None, &config("a"), now);
        assert!(can_take(&lease, "a", now));
        assert!(!can_take(&lease, "b", ts("2026-01-01T00:00:10Z")));
        assert!(can_take(&lease, "b", ts("2026-01-01T00:00:16Z")));
        let mut released = lease.clone();
        released.spec.as_mut().unwrap().holder_identity = None;
        assert!(can_take(&released, "b", now));
    }

    #[test]
    fn taking_over_counts_a_transition_and_renewing_does_not() {
        let t0 = ts("2026-01-01T00:00:00Z");
        let first = taken(None, &config("a"), t0);
        assert_eq!(first.spec.as_ref().unwrap().lease_transitions, Some(0));
        let renewed = taken(Some(&first), &config("a"), ts("2026-01-01T00:00:05Z"));
        let spec = renewed.spec.as_ref().unwrap();
        assert_eq!(spec.lease_transitions, Some(0));
        assert_eq!(spec.acquire_time, Some(MicroTime(t0)));
        let other = taken(Some(&renewed), &config("b"), ts("2026-01-01T00:01:00Z"));
        let spec = other.spec.as_ref().unwrap();
        assert_eq!(spec.holder_identity.as_deref(), Some("b"));
        assert_eq!(spec.lease_transitions, Some(1));
        assert_eq!(
            spec.acquire_time,
            Some(MicroTime(ts("2026-01-01T00:01:00Z")))
        );
    }
}
