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

pub mod http;
pub mod leader;
pub mod metrics;
pub mod prints;
pub mod reconcile;
pub mod status;
pub mod sync;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::channel::mpsc;
use futures::{FutureExt, StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ListParams};
use kube::core::DeserializeGuard;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::{Controller, WatchStreamExt, watcher};
use kube::{Client, CustomResourceExt};

use crate::api::{
    AppConnection, Gateway, Group, MachineIdentity, OrgMembership, Organization, Project,
    ProjectMembership, Relay, SubOrganization,
};
use reconcile::Kind;
use sync::{Caches, SyncResult, Syncer};

/// The finalizer that removes an object's rows from the store before it goes.
pub const FINALIZER: &str = "suborg.io/store-cleanup";

/// The field manager of every write the controller makes.
pub const MANAGER: &str = "suborg";

/// What can go wrong in a reconcile. [`Error::category`] is the fixed, bounded name used as
/// metric label and Event reason.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A request to the API server failed.
    #[error("Kubernetes API request failed: {0}")]
    Kube(#[source] kube::Error),
    /// The store could not be written; `category` says how (`StoreUnavailable`, ...).
    #[error("{message}")]
    Store {
        /// Fixed category.
        category: &'static str,
        /// What happened, without secrets.
        message: String,
    },
    /// A deletion has to wait (a root with sub-organizations, rows still in the store).
    #[error("{0}")]
    DeletionBlocked(String),
    /// The CRDs are not installed.
    #[error("{0}")]
    CrdsMissing(String),
    /// Another replica took the leader Lease.
    #[error("lost the leader Lease; stopping so that only one replica writes to the store")]
    LeaseLost,
}

impl Error {
    /// The error's fixed category.
    pub fn category(&self) -> &'static str {
        match self {
            Self::Kube(_) => "KubeApiError",
            Self::Store { category, .. } => category,
            Self::DeletionBlocked(_) => "DeletionBlocked",
            Self::CrdsMissing(_) => "CrdsMissing",
            Self::LeaseLost => "LeaseLost",
        }
    }
}

/// Publishes `event` about `reference`. An Event that cannot be written is logged, except in a
/// namespace being deleted, where the API server refuses every new object and the object the
/// Event is about is going too.
pub async fn publish(
    recorder: &Recorder,
    event: &kube::runtime::events::Event,
    reference: &k8s_openapi::api::core::v1::ObjectReference,
) {
    match recorder.publish(event, reference).await {
        Ok(()) => {}
        Err(kube::Error::Api(e))
            if e.code == 403
                && e.details.as_ref().is_some_and(|d| {
                    d.causes.iter().any(|c| c.reason == "NamespaceTerminating")
                }) =>
        {
            tracing::debug!(error = %e, "no Event in a namespace being deleted");
        }
        Err(e) => tracing::warn!(error = %e, "publishing an Event failed"),
    }
}

/// `d` plus up to a tenth more, at random.
pub fn jitter(d: Duration) -> Duration {
    let r = uuid::Uuid::new_v4().as_u128() as u64 % 1000;
    d + d.mul_f64(r as f64 / 10_000.0)
}

/// Retry delays per object: 5 s doubling to 5 min, with jitter; reset by a success.
#[derive(Default)]
pub struct Backoff {
    failures: Mutex<HashMap<String, u32>>,
}

impl Backoff {
    /// The delay before retrying `key`, counting this failure.
    pub fn next(&self, key: &str) -> Duration {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let n = failures.entry(key.to_owned()).or_default();
        let delay = Duration::from_secs(5 * 2u64.pow((*n).min(6))).min(Duration::from_secs(300));
        *n = n.saturating_add(1);
        jitter(delay)
    }

    /// Forgets `key`'s failures.
    pub fn reset(&self, key: &str) {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        failures.remove(key);
    }
}

/// What every reconcile shares.
pub struct Context {
    /// The API client.
    pub client: Client,
    /// The shared sync.
    pub syncer: Arc<Syncer>,
    /// Publishes Events; `None` where no Events are wanted.
    pub recorder: Option<Recorder>,
    /// Health and metrics.
    pub health: Arc<http::Health>,
    /// Retry delays.
    pub backoff: Backoff,
    /// How often each object is looked at again when nothing happens.
    pub resync: Duration,
    /// The statuses this controller wrote and the caches may not show yet.
    pub written: reconcile::Written,
}

/// How the controller runs.
#[derive(Debug, Clone)]
pub struct Config {
    /// The store DSN.
    pub store: String,
    /// Resync period: drift in the store is corrected at least this often.
    pub resync: Duration,
    /// Where to serve `/metrics`, `/healthz` and `/readyz`.
    pub metrics_addr: Option<SocketAddr>,
    /// Leader election, when more than one replica may run.
    pub leader: Option<leader::LeaderConfig>,
    /// Only objects with these labels are managed (a label selector), for running several
    /// controllers on one cluster, each with its own store.
    pub selector: Option<String>,
    /// Take over store rows suborg did not create.
    pub adopt: bool,
}

/// Fails with a clear message when a CRD is missing.
pub async fn check_crds(client: &Client) -> Result<(), Error> {
    async fn one<K: Kind + CustomResourceExt>(client: &Client) -> Result<(), Error> {
        match Api::<K>::all(client.clone())
            .list_metadata(&ListParams::default().limit(1))
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(e)) if e.code == 404 => Err(Error::CrdsMissing(format!(
                "the CustomResourceDefinition {} is not installed: install the CRDs first (`suborg crd | kubectl apply --server-side -f -`, or the Helm chart)",
                K::crd_name()
            ))),
            Err(e) => Err(Error::Kube(e)),
        }
    }
    macro_rules! each {
        ($($kind:ident $field:ident,)*) => { $(one::<$kind>(client).await?;)* };
    }
    crate::api::for_each_kind!(each);
    Ok(())
}

fn watcher_config(selector: Option<&str>) -> watcher::Config {
    let wc = watcher::Config::default();
    match selector {
        Some(s) => wc.labels(s),
        None => wc,
    }
}

type Trigger<K> = mpsc::UnboundedSender<ObjectRef<DeserializeGuard<K>>>;

/// Queues every object of kind `K` whose status `result` would change.
fn fan_out<K: Kind>(
    cache: &reflector::Store<DeserializeGuard<K>>,
    trigger: &Trigger<K>,
    result: &SyncResult,
    now: Timestamp,
) {
    for guard in cache.state() {
        // An object being deleted is reconciled by its own events until its finalizer goes; a
        // status for it from here would race its cleanup.
        if let Ok(o) = &guard.0
            && o.meta().deletion_timestamp.is_none()
            && o.current() != Some(&o.desired(result, now))
        {
            let _ = trigger.unbounded_send(ObjectRef::from_obj(&*guard));
        }
    }
}

async fn log_result<T>(
    kind: &'static str,
    r: Result<T, kube::runtime::controller::Error<Error, watcher::Error>>,
) {
    // Reconcile failures are logged by the error policy; a failing watch (retried with
    // backoff) is worth a warning, the rest (an object gone before its turn) is routine.
    match r {
        Err(kube::runtime::controller::Error::QueueError(e)) => {
            tracing::warn!(kind, error = %e, "watch failed; retrying");
        }
        Err(e) => tracing::debug!(kind, error = %e, "controller event"),
        Ok(_) => {}
    }
}

/// A cache of `api`'s objects and the stream of watch events that fills it, without
/// `managedFields` (never read, and the bulk of a large object), keeping the cache's part of
/// `fingerprint`. The stream marks the cache ready at its first complete listing.
fn watched<K>(
    api: Api<K>,
    wc: watcher::Config,
    fingerprint: &prints::Fingerprint,
    mark: sync::ReadyMark,
) -> (
    reflector::Store<K>,
    impl futures::Stream<Item = Result<K, watcher::Error>> + Send + 'static,
)
where
    K: kube::Resource<DynamicType = ()>
        + prints::Printed
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    let (reader, mut feed) = fingerprint.feed();
    let mut marked = false;
    let stream = watcher(api, wc)
        .default_backoff()
        .modify(|o| o.meta_mut().managed_fields = None)
        .map_ok(move |event| {
            feed.apply_watcher_event(&event);
            if !marked && matches!(event, watcher::Event::InitDone) {
                marked = true;
                mark.mark();
            }
            event
        })
        .applied_objects();
    (reader, stream)
}

/// What of an object is a reason to reconcile it: its spec (the generation), its finalizers,
/// and whether it is being deleted. Its status, labels and annotations are not, so the
/// controller's own status writes do not come back as reconciles; a change another object
/// causes is queued by the sync that sees it, and the resync looks at everything anyway.
fn reconcile_worthy<K: kube::Resource>(o: &K) -> Option<u64> {
    let meta = o.meta();
    let mut h = std::hash::DefaultHasher::new();
    std::hash::Hash::hash(
        &(
            meta.generation,
            &meta.finalizers,
            meta.deletion_timestamp.is_some(),
        ),
        &mut h,
    );
    Some(std::hash::Hasher::finish(&h))
}

/// Of a Namespace only its labels matter: they decide which organizations may use it.
fn namespace_labels(ns: &kube::core::PartialObjectMeta<Namespace>) -> Option<u64> {
    let mut h = std::hash::DefaultHasher::new();
    std::hash::Hash::hash(&ns.metadata.labels, &mut h);
    Some(std::hash::Hasher::finish(&h))
}

/// One kind's controller, on a cache of its own (see [`watched`]).
fn controller<K: Kind>(
    client: &Client,
    wc: &watcher::Config,
    fingerprint: &prints::Fingerprint,
    mark: &sync::ReadyMark,
) -> Controller<DeserializeGuard<K>> {
    let (reader, stream) = watched(
        Api::<DeserializeGuard<K>>::all(client.clone()),
        wc.clone(),
        fingerprint,
        mark.clone(),
    );
    let stream = stream.predicate_filter(
        reconcile_worthy::<DeserializeGuard<K>>,
        kube::runtime::PredicateConfig::default(),
    );
    Controller::for_stream(stream, reader)
        .with_config(kube::runtime::Config::default().concurrency(RECONCILE_CONCURRENCY))
}

/// How many objects of one kind are reconciled at once. Unbounded, a controller started on ten
/// thousand objects opens a connection per reconcile and the API server refuses them; a few
/// dozen keep it as busy as it can usefully be.
const RECONCILE_CONCURRENCY: u16 = 32;

/// One kind's controller before it runs, and the queue through which a sync asks it to look at
/// objects again.
struct Lane<K: Kind> {
    controller: Controller<DeserializeGuard<K>>,
    trigger: Trigger<K>,
    queued: mpsc::UnboundedReceiver<ObjectRef<DeserializeGuard<K>>>,
}

impl<K: Kind> Lane<K> {
    fn new(
        client: &Client,
        wc: &watcher::Config,
        fingerprint: &prints::Fingerprint,
        mark: &sync::ReadyMark,
    ) -> Self {
        let (trigger, queued) = mpsc::unbounded();
        Self {
            controller: controller::<K>(client, wc, fingerprint, mark),
            trigger,
            queued,
        }
    }

    /// Runs the controller: its watch plus the objects a sync queued, until `stop`.
    async fn run(self, stop: impl Future<Output = ()> + Send + Sync + 'static, ctx: Arc<Context>) {
        self.controller
            .reconcile_on(self.queued)
            .graceful_shutdown_on(stop)
            .run(reconcile::reconcile::<K>, reconcile::error_policy::<K>, ctx)
            .for_each(|r| log_result(K::KIND, r))
            .await;
    }
}

macro_rules! lanes {
    ($($kind:ident $field:ident,)*) => {
        /// Every kind's [`Lane`].
        struct Lanes {
            $($field: Lane<$kind>,)*
        }

        /// Every kind's queue, for the sync's fan-out.
        struct Triggers {
            $($field: Trigger<$kind>,)*
        }

        impl Lanes {
            fn new(
                client: &Client,
                wc: &watcher::Config,
                fingerprint: &prints::Fingerprint,
                mark: &sync::ReadyMark,
            ) -> Self {
                Self { $($field: Lane::new(client, wc, fingerprint, mark),)* }
            }

            /// The caches the controllers fill, with the Namespaces' beside them.
            fn caches(
                &self,
                namespaces: reflector::Store<kube::core::PartialObjectMeta<Namespace>>,
                ready: sync::Readiness,
                fingerprint: prints::Fingerprint,
            ) -> Caches {
                Caches {
                    $($field: self.$field.controller.store(),)*
                    namespaces,
                    ready,
                    fingerprint,
                }
            }

            fn triggers(&self) -> Triggers {
                Triggers { $($field: self.$field.trigger.clone(),)* }
            }

            /// Runs every controller until `stop`.
            async fn run(
                self,
                stop: impl Future<Output = ()> + Clone + Send + Sync + 'static,
                ctx: Arc<Context>,
            ) {
                futures::join!($(self.$field.run(stop.clone(), ctx.clone()),)*);
            }
        }

        impl Triggers {
            /// Queues every object whose status `result` would change.
            fn fan_out(&self, caches: &Caches, result: &SyncResult, now: Timestamp) {
                $(fan_out(&caches.$field, &self.$field, result, now);)*
            }
        }
    };
}
crate::api::for_each_kind!(lanes);

/// The kinds' caches plus the Namespaces'.
const CACHES: usize = crate::api::KINDS.len() + 1;

/// Runs the controller until `shutdown` resolves (or leadership is lost).
pub async fn run(
    client: Client,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    check_crds(&client).await?;
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
    let lease = match &config.leader {
        Some(lc) => {
            health
                .ready
                .store(true, std::sync::atomic::Ordering::Relaxed);
            tokio::select! {
                api = leader::acquire(client.clone(), lc) => Some((api, lc.clone())),
                () = shutdown.clone() => return Ok(()),
            }
        }
        None => None,
    };
    health.metrics.set_leader(true);
    health
        .ready
        .store(false, std::sync::atomic::Ordering::Relaxed);
    let (lost_tx, lost_rx) = futures::channel::oneshot::channel::<()>();
    if let Some((api, lc)) = lease.clone() {
        tokio::spawn(async move {
            leader::hold(api, lc).await;
            let _ = lost_tx.send(());
        });
    }
    let lost = lost_rx.map(|r| r.is_ok()).shared();
    let stop = {
        let shutdown = shutdown.clone();
        let lost = lost.clone();
        async move {
            tokio::select! {
                () = shutdown => {},
                true = lost => {},
            }
        }
        .shared()
    };

    let wc = watcher_config(config.selector.as_deref());
    let (readiness, mark) = sync::Readiness::new(CACHES);
    let fingerprint = prints::Fingerprint::default();
    let lanes = Lanes::new(&client, &wc, &fingerprint, &mark);
    let (ns_reader, namespaces) = watched(
        Api::<kube::core::PartialObjectMeta<Namespace>>::all(client.clone()),
        watcher::Config::default(),
        &fingerprint,
        mark,
    );
    let namespaces =
        namespaces.predicate_filter(namespace_labels, kube::runtime::PredicateConfig::default());
    let caches = lanes.caches(ns_reader, readiness, fingerprint);
    let recorder = Some(Recorder::new(
        client.clone(),
        Reporter {
            controller: MANAGER.into(),
            instance: config.leader.as_ref().map(|l| l.identity.clone()),
        },
    ));
    let triggers = lanes.triggers();
    let fanout_caches = caches.clone();
    let syncer = Arc::new(
        Syncer::new(
            caches.clone(),
            config.store.clone(),
            config.resync,
            config.adopt,
            recorder.clone(),
            health.clone(),
        )
        .with_debounce(sync::Debounce {
            quiet: Duration::from_millis(500),
            // Objects arriving one after another at API speed are synced every two seconds
            // meanwhile, not held until the stream stops.
            max_wait: Duration::from_secs(2),
        })
        .with_fanout(Box::new(move |result| {
            triggers.fan_out(&fanout_caches, result, Timestamp::now());
        })),
    );
    let ctx = Arc::new(Context {
        client: client.clone(),
        syncer: syncer.clone(),
        recorder,
        health: health.clone(),
        backoff: Backoff::default(),
        resync: config.resync,
        written: reconcile::Written::default(),
    });

    // Namespace label changes re-check delegation: a sync, whose fan-out reaches the
    // memberships concerned.
    let ns_task = {
        let syncer = syncer.clone();
        let stop = stop.clone();
        async move {
            let mut events = std::pin::pin!(namespaces);
            let ready = tokio::time::sleep(Duration::ZERO);
            tokio::pin!(ready);
            let mut pending = false;
            loop {
                tokio::select! {
                    () = stop.clone() => break,
                    event = events.next() => match event {
                        Some(Ok(_)) => {
                            if !pending {
                                pending = true;
                                ready.as_mut().reset(tokio::time::Instant::now() + Duration::from_millis(500));
                            }
                        }
                        Some(Err(e)) => tracing::warn!(error = %e, "watching namespaces failed; retrying"),
                        None => break,
                    },
                    () = &mut ready, if pending => {
                        pending = false;
                        if syncer.caches().ready().await {
                            syncer.sync().await;
                        }
                    }
                }
            }
        }
    };

    // Ready once every cache is filled.
    {
        let caches = caches.clone();
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

    futures::join!(lanes.run(stop.clone(), ctx), ns_task);
    tracing::info!("controllers stopped");

    if let Some((api, lc)) = &lease {
        if lost.clone().now_or_never() == Some(true) {
            health.metrics.set_leader(false);
            return Err(Error::LeaseLost);
        }
        leader::release(api, lc).await;
    }
    Ok(())
}
