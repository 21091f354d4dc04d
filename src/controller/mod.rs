//! The controller, `suborg run`: keeps the store in step with the objects in the cluster and
//! says in each object's status what it did or why it could not.
//!
//! The pipeline, a module a step:
//! - [`sync`]: dereference (a snapshot of every watched object from the caches) → the rules of
//!   [`crate::domain`], the same call `suborg validate` makes → the store, one plan in one
//!   transaction. Shared by every reconcile and coalesced, so a burst costs one transaction.
//! - [`status`]: pure: the status an object should have after a sync.
//! - [`reconcile`]: the reconcilers of the three kinds: finalizer, sync, status by server-side
//!   apply, Events; errors retried with backoff and jitter.
//! - [`leader`], [`http`], [`metrics`]: running it: one writer at a time, health and metrics.
//!
//! Relations need no hand-written mapping: after every sync that ran, each object whose status
//! would change (children of a changed parent, sub-org memberships of a removed root member,
//! memberships in a relabelled namespace, roles that expired) is queued for its reconciler.

pub mod caches;
mod context;
pub mod events;
pub mod http;
pub mod kinds;
pub mod leader;
pub mod metrics;
pub mod prints;
pub mod reconcile;
pub mod scope;
pub mod status;
pub mod sync;
mod watches;
pub mod written;

pub use context::{Backoff, Config, Context, Error, FINALIZER, MANAGER, jitter};
pub use events::publish;

use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ListParams};
use kube::runtime::events::Reporter;
use kube::{Client, CustomResourceExt};

use crate::api::{
    AppConnection, Gateway, Group, MachineIdentity, OrgMembership, Organization, Project,
    ProjectMembership, Relay, SubOrganization,
};
use kinds::Kind;
use sync::Syncer;

/// Fails with a clear message when a CRD is missing, or when `selector` (`--selector`) is not a
/// label selector: the API server is the judge, and a controller whose watches it refuses
/// would never become ready.
pub async fn check_crds(client: &Client, selector: Option<&str>) -> Result<(), Error> {
    async fn one<K: Kind + CustomResourceExt>(
        client: &Client,
        selector: Option<&str>,
    ) -> Result<(), Error> {
        let mut params = ListParams::default().limit(1);
        if let Some(s) = selector {
            params = params.labels(s);
        }
        match Api::<K>::all(client.clone()).list_metadata(&params).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(e)) if e.code == 400 && selector.is_some() => {
                Err(Error::InvalidSelector(format!(
                    "invalid --selector {:?}: {}",
                    selector.unwrap_or_default(),
                    e.message
                )))
            }
            Err(kube::Error::Api(e)) if e.code == 404 => Err(Error::CrdsMissing(format!(
                "the CustomResourceDefinition {} is not installed: install the CRDs first (`suborg crd | kubectl apply --server-side -f -`, or the Helm chart)",
                K::crd_name()
            ))),
            Err(e) => Err(Error::Kube(e)),
        }
    }
    macro_rules! each {
        ($($kind:ident $field:ident,)*) => { $(one::<$kind>(client, selector).await?;)* };
    }
    crate::api::for_each_kind!(each);
    Ok(())
}

/// What tells this cluster from another in the store's claim: the uid of its `kube-system`
/// namespace, which lives as long as the cluster. A cluster where it cannot be read is
/// named by a placeholder (and said so): two such clusters on one store are not told apart.
async fn cluster_id(client: &Client) -> String {
    use k8s_openapi::api::core::v1::Namespace;
    let params = kube::api::ListParams::default().fields("metadata.name=kube-system");
    match Api::<Namespace>::all(client.clone())
        .list_metadata(&params)
        .await
    {
        Ok(list) => {
            if let Some(uid) = list.items.into_iter().find_map(|n| n.metadata.uid) {
                return uid;
            }
            tracing::warn!(
                "the cluster has no kube-system namespace: its claim on the store names no cluster"
            );
        }
        Err(e) => {
            tracing::warn!(error = %e, "the kube-system namespace could not be read: the claim on the store names no cluster")
        }
    }
    "unknown".to_owned()
}

/// Runs the controller until `shutdown` resolves (or leadership is lost).
pub async fn run(
    client: Client,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    check_crds(&client, config.selector.as_deref()).await?;
    let health = Arc::new(http::Health::default());
    if let Some(addr) = config.metrics_addr {
        let health = health.clone();
        tokio::spawn(async move {
            if let Err(e) = http::serve(addr, health).await {
                tracing::error!(%addr, error = %e, "cannot serve metrics and health");
            }
        });
    }
    let shutdown = shutdown.shared();
    // Leadership first: a standby replica watches nothing and writes nothing.
    let Some(leadership) = lead(&client, &config, &health, shutdown.clone()).await else {
        return Ok(());
    };
    // Everything from here runs under the Lease, its startup too: a leader cut off from the
    // API server while it reads the cluster's id would otherwise wait on that read, unaware
    // that it no longer leads, and write once the network came back.
    let work = serve(
        client,
        config,
        shutdown,
        leadership.lost.clone(),
        health.clone(),
    );
    if while_leading(work, leadership.lost.clone()).await.is_none() {
        tracing::error!("the leader Lease is lost: stopping at once");
    }
    leadership.end(&health).await
}

/// Runs `work` until it ends or `lost` resolves to `true`, whichever comes first: `None` when
/// the Lease was lost. Dropped there, `work` stops at once, wherever it was waiting.
async fn while_leading<T>(
    work: impl Future<Output = T>,
    lost: impl Future<Output = bool>,
) -> Option<T> {
    tokio::select! {
        out = work => Some(out),
        true = lost => None,
    }
}

/// The leader's work: the watches, the sync and the reconcilers, until `shutdown` (or a lost
/// Lease) stops the controllers and the reconciles under way have finished.
async fn serve(
    client: Client,
    config: Config,
    shutdown: futures::future::Shared<impl Future<Output = ()> + Send + 'static>,
    lost: Lost,
    health: Arc<http::Health>,
) {
    let stop = async move {
        tokio::select! {
            () = shutdown => {},
            true = lost => {},
        }
    }
    .shared();
    let watches = watches::Watches::start(&client, config.selector.as_deref());
    let reporter = Reporter {
        controller: MANAGER.into(),
        instance: config.leader.as_ref().map(|l| l.identity.clone()),
    };
    let sink = events::EventSink::new(client.clone(), reporter);
    let recorder = Some(sink.clone());
    let writer = crate::store::Writer::controller(
        &cluster_id(&client).await,
        config.selector.as_deref(),
        config.take_over_store,
    );
    let syncer = Arc::new(syncer(
        &watches,
        &config,
        Some(sink),
        health.clone(),
        writer,
    ));
    let ctx = Arc::new(Context {
        client: client.clone(),
        syncer: syncer.clone(),
        recorder,
        health: health.clone(),
        backoff: Backoff::default(),
        resync: config.resync,
        written: written::Written::default(),
    });
    // Ready once every cache is filled.
    {
        let caches = watches.caches.clone();
        let health = health.clone();
        tokio::spawn(async move {
            if caches.ready().await {
                health
                    .ready
                    .store(true, std::sync::atomic::Ordering::Relaxed);
                tracing::info!("caches filled; reconciling");
            }
        });
    }
    watches.run(syncer, stop, ctx).await;
    tracing::info!("controllers stopped");
}

/// Whether this process leads, and how it learns that it no longer does.
struct Leadership {
    /// The Lease held, when there is leader election, and the task keeping it.
    lease: Option<(Arc<leader::Leader>, tokio::task::JoinHandle<()>)>,
    lost: Lost,
}

/// Resolves to `true` when the Lease was lost (and to `false` when it was handed back).
type Lost = futures::future::Shared<futures::future::BoxFuture<'static, bool>>;

impl Leadership {
    /// Hands the Lease back, or reports that it was lost.
    async fn end(self, health: &http::Health) -> Result<(), Error> {
        if let Some((leader, keeping)) = self.lease {
            if self.lost.clone().now_or_never() == Some(true) {
                health.metrics.set_leader(false);
                return Err(Error::LeaseLost);
            }
            // Renewing stops first: a renewal after the release would take the Lease again.
            keeping.abort();
            let _ = keeping.await;
            leader.release().await;
        }
        Ok(())
    }
}

/// Takes the Lease when there is leader election, and keeps it in the background; `None` when
/// `shutdown` came first. A standby replica is ready (it serves probes) while it waits.
async fn lead(
    client: &Client,
    config: &Config,
    health: &http::Health,
    shutdown: impl Future<Output = ()>,
) -> Option<Leadership> {
    let leader = match &config.leader {
        Some(lc) => {
            health
                .ready
                .store(true, std::sync::atomic::Ordering::Relaxed);
            tokio::select! {
                leader = leader::acquire(client.clone(), lc) => Some(Arc::new(leader)),
                () = shutdown => {
                    leader::release_if_named(client.clone(), lc).await;
                    return None;
                }
            }
        }
        None => None,
    };
    health.metrics.set_leader(true);
    health
        .ready
        .store(false, std::sync::atomic::Ordering::Relaxed);
    let (lost_tx, lost_rx) = futures::channel::oneshot::channel::<()>();
    let lease = leader.map(|leader| {
        let keeping = {
            let leader = leader.clone();
            tokio::spawn(async move {
                leader.hold().await;
                let _ = lost_tx.send(());
            })
        };
        (leader, keeping)
    });
    Some(Leadership {
        lease,
        lost: lost_rx.map(|r| r.is_ok()).boxed().shared(),
    })
}

/// The sync over `watches`' caches, whose results fan out to their queues.
fn syncer(
    watches: &watches::Watches,
    config: &Config,
    recorder: Option<events::EventSink>,
    health: Arc<http::Health>,
    writer: crate::store::Writer,
) -> Syncer {
    let triggers = watches.lanes.triggers();
    let caches = watches.caches.clone();
    Syncer::new(
        watches.caches.clone(),
        config.store.clone(),
        config.resync,
        config.adopt,
        recorder,
        health,
    )
    .with_writer(writer)
    .with_debounce(sync::Debounce {
        // `kubectl apply -f dir/`, Helm and Argo CD send a set's objects a few milliseconds
        // apart: this lets such a burst land whole without making a lone change wait long.
        quiet: Duration::from_millis(150),
        // Objects arriving one after another at API speed are synced twice a second meanwhile,
        // not held until the stream stops.
        max_wait: Duration::from_millis(500),
    })
    .with_fanout(Box::new(move |result, scope| {
        triggers.fan_out(&caches, result, scope, Timestamp::now());
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A leader whose work waits on an API server that never answers (its startup's reads
    /// included) stops when the Lease is lost, without that read ending.
    #[tokio::test]
    async fn work_stuck_on_the_api_server_stops_when_the_lease_is_lost() {
        let (lose, lost) = futures::channel::oneshot::channel::<()>();
        let lost = lost.map(|r| r.is_ok()).boxed().shared();
        let stuck = std::future::pending::<()>();
        let watching = tokio::spawn(while_leading(stuck, lost));
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(!watching.is_finished(), "stopped with the Lease still held");
        lose.send(()).unwrap();
        let outcome = tokio::time::timeout(Duration::from_secs(1), watching).await;
        assert_eq!(outcome.expect("stopped at once").unwrap(), None);
    }

    /// Work that ends on its own (a shutdown) is its outcome; a Lease handed back on the way
    /// out does not count as lost.
    #[tokio::test]
    async fn work_that_ends_is_its_outcome() {
        let (released, lost) = futures::channel::oneshot::channel::<()>();
        drop(released);
        let lost = lost.map(|r| r.is_ok()).boxed().shared();
        assert_eq!(while_leading(async { 7 }, lost.clone()).await, Some(7));
        assert_eq!(
            while_leading(tokio::time::sleep(Duration::from_millis(10)), lost).await,
            Some(())
        );
    }
}
