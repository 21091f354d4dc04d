//! The watches: for every kind a cache filled by its watch, a controller that reconciles what
//! changed in a way worth a reconcile, and a queue through which a sync asks it to look at
//! objects again; the Namespaces' labels beside them.

use std::sync::Arc;

use futures::channel::mpsc;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::jiff::Timestamp;
use kube::api::Api;
use kube::core::DeserializeGuard;
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::{Controller, WatchStreamExt, watcher};
use kube::{Client, ResourceExt};

use super::context::{Context, Error, FINALIZER};
use super::kinds::Kind;
use super::scope::Scope;
use super::sync::{self, Caches, SyncResult};
use super::{prints, reconcile};
use crate::api::{
    AppConnection, Gateway, Group, MachineIdentity, OrgMembership, Organization, Project,
    ProjectMembership, Relay, SubOrganization,
};

pub(super) fn watcher_config(selector: Option<&str>) -> watcher::Config {
    let wc = watcher::Config::default();
    match selector {
        Some(s) => wc.labels(s),
        None => wc,
    }
}

type Trigger<K> = mpsc::UnboundedSender<ObjectRef<DeserializeGuard<K>>>;

/// Queues every object of kind `K` in `scope` whose status `result` would change.
fn fan_out<K: Kind>(
    cache: &reflector::Store<DeserializeGuard<K>>,
    trigger: &Trigger<K>,
    result: &SyncResult,
    scope: &Scope,
    now: Timestamp,
) {
    for guard in cache.state() {
        let Ok(o) = &guard.0 else { continue };
        if !scope.contains(o.meta().uid.as_deref(), || o.key()) {
            continue;
        }
        // An object being deleted is reconciled by its own events until its finalizer goes; a
        // status for it from here would race its cleanup. One exception: a root that waited
        // for its sub-organizations, once its rows are gone, is queued now to let its
        // finalizer go, not at its next look.
        let wanted = if o.meta().deletion_timestamp.is_some() {
            K::KIND == "Organization"
                && !result
                    .held
                    .contains_key(o.meta().name.as_deref().unwrap_or_default())
                && !o
                    .meta()
                    .uid
                    .as_deref()
                    .is_some_and(|u| result.index.holds(u))
                && o.current().is_some_and(|s| {
                    K::common(s).conditions.iter().any(|c| {
                        c.type_ == crate::api::CONDITION_READY
                            && c.reason == super::status::HAS_SUB_ORGANIZATIONS
                    })
                })
        } else {
            o.current() != Some(&o.desired(result, now))
        };
        if wanted {
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
/// `managedFields` and annotations, keeping the cache's part of `fingerprint`. Neither is ever
/// read, and they are the bulk of a small object: `kubectl apply` keeps a copy of the whole
/// object in an annotation. The stream marks the cache ready at its first complete listing,
/// and hands each object the watch says is gone, as it last was, to `gone`.
pub(super) fn watched<K>(
    api: Api<K>,
    wc: watcher::Config,
    fingerprint: &prints::Fingerprint,
    mark: sync::ReadyMark,
    mut gone: impl FnMut(&K) + Send + 'static,
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
        .modify(|o| {
            let meta = o.meta_mut();
            meta.managed_fields = None;
            meta.annotations = None;
        })
        .map_ok(move |event| {
            feed.apply_watcher_event(&event);
            if let watcher::Event::Delete(o) = &event {
                gone(o);
            }
            if !marked && matches!(event, watcher::Event::InitDone) {
                marked = true;
                mark.mark();
            }
            event
        })
        .applied_objects();
    (reader, stream)
}

/// Whether an object the watch says is gone has only left the watch's label selector: it still
/// carries suborg's finalizer, which an object the API server removed cannot (the finalizer
/// holds its removal), whether or not its deletion has begun.
fn left_the_selector<K: kube::Resource>(o: &K) -> bool {
    o.finalizers().iter().any(|f| f == FINALIZER)
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
pub(super) fn namespace_labels(ns: &kube::core::PartialObjectMeta<Namespace>) -> Option<u64> {
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
    let gone = {
        let (client, selector) = (client.clone(), wc.label_selector.clone());
        move |o: &DeserializeGuard<K>| {
            if let (Some(selector), Ok(o)) = (&selector, &o.0)
                && left_the_selector(o)
            {
                tokio::spawn(reconcile::let_go(
                    client.clone(),
                    o.clone(),
                    selector.clone(),
                ));
            }
        }
    };
    let (reader, stream) = watched(
        Api::<DeserializeGuard<K>>::all(client.clone()),
        wc.clone(),
        fingerprint,
        mark.clone(),
        gone,
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

    /// Runs the controller: its watch plus the objects a sync queued, until `stop`; then lets
    /// the reconciles under way finish, for [`SHUTDOWN_GRACE`] at most.
    async fn run(
        self,
        stop: impl Future<Output = ()> + Clone + Send + Sync + 'static,
        ctx: Arc<Context>,
    ) {
        let ready = ctx.syncer.caches().ready.clone();
        let running = self
            .controller
            .reconcile_on(self.queued)
            .graceful_shutdown_on(stop.clone())
            .run(reconcile::reconcile::<K>, reconcile::error_policy::<K>, ctx)
            .for_each(|r| log_result(K::KIND, r));
        tokio::pin!(running);
        tokio::select! {
            () = &mut running => return,
            () = stop => {}
        }
        // A controller holds its runner until its cache is filled, which after `stop` it never
        // will be (its watch is no longer read): nothing is under way then, and nothing to wait
        // for.
        if !ready.is_filled() {
            return;
        }
        if tokio::time::timeout(SHUTDOWN_GRACE, running).await.is_err() {
            tracing::warn!(
                kind = K::KIND,
                "reconciles still running at shutdown were dropped"
            );
        }
    }
}

/// How long reconciles under way may take to finish once the controller is asked to stop:
/// within the few seconds a rollout allows, and a store transaction dropped half-way is
/// rolled back.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(3);

macro_rules! lanes {
    ($($kind:ident $field:ident,)*) => {
        /// Every kind's [`Lane`].
        pub(super) struct Lanes {
            $($field: Lane<$kind>,)*
        }

        /// Every kind's queue, for the sync's fan-out.
        pub(super) struct Triggers {
            $($field: Trigger<$kind>,)*
        }

        impl Lanes {
            pub(super) fn new(
                client: &Client,
                wc: &watcher::Config,
                fingerprint: &prints::Fingerprint,
                mark: &sync::ReadyMark,
            ) -> Self {
                Self { $($field: Lane::new(client, wc, fingerprint, mark),)* }
            }

            /// The caches the controllers fill, with the Namespaces' beside them.
            pub(super) fn caches(
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

            pub(super) fn triggers(&self) -> Triggers {
                Triggers { $($field: self.$field.trigger.clone(),)* }
            }

            /// Runs every controller until `stop`.
            pub(super) async fn run(
                self,
                stop: impl Future<Output = ()> + Clone + Send + Sync + 'static,
                ctx: Arc<Context>,
            ) {
                futures::join!($(self.$field.run(stop.clone(), ctx.clone()),)*);
            }
        }

        impl Triggers {
            /// Queues every object whose status `result` would change.
            pub(super) fn fan_out(&self, caches: &Caches, result: &SyncResult, scope: &Scope, now: Timestamp) {
                $(fan_out(&caches.$field, &self.$field, result, scope, now);)*
            }
        }
    };
}
crate::api::for_each_kind!(lanes);

/// The kinds' caches plus the Namespaces'.
pub(super) const CACHES: usize = crate::api::KINDS.len() + 1;

/// Every watch of the controller: the kinds' lanes, the caches they fill, and the Namespaces'
/// label changes.
pub(super) struct Watches {
    pub(super) lanes: Lanes,
    pub(super) caches: Caches,
    namespaces: futures::stream::BoxStream<
        'static,
        Result<kube::core::PartialObjectMeta<Namespace>, watcher::Error>,
    >,
}

impl Watches {
    /// Sets up every watch (nothing runs until [`Watches::run`]); only objects matching
    /// `selector` are watched.
    pub(super) fn start(client: &Client, selector: Option<&str>) -> Self {
        let wc = watcher_config(selector);
        let (readiness, mark) = sync::Readiness::new(CACHES);
        let fingerprint = prints::Fingerprint::default();
        let lanes = Lanes::new(client, &wc, &fingerprint, &mark);
        let (ns_reader, namespaces) = watched(
            Api::<kube::core::PartialObjectMeta<Namespace>>::all(client.clone()),
            watcher::Config::default(),
            &fingerprint,
            mark,
            |_| {},
        );
        let namespaces = namespaces
            .predicate_filter(namespace_labels, kube::runtime::PredicateConfig::default())
            .boxed();
        let caches = lanes.caches(ns_reader, readiness, fingerprint);
        Self {
            lanes,
            caches,
            namespaces,
        }
    }

    /// Runs every controller, and follows the Namespaces, until `stop`.
    pub(super) async fn run(
        self,
        syncer: Arc<sync::Syncer>,
        stop: impl Future<Output = ()> + Clone + Send + Sync + 'static,
        ctx: Arc<Context>,
    ) {
        let namespaces = follow_namespaces(self.namespaces, stop.clone());
        futures::join!(
            self.lanes.run(stop.clone(), ctx),
            namespaces,
            syncer.run_task(stop)
        );
    }
}

/// Drives the Namespaces' watch, which fills their cache. A label change is a watch event like
/// any other: it wakes the sync task, whose fan-out reaches the memberships concerned.
async fn follow_namespaces(
    namespaces: futures::stream::BoxStream<
        'static,
        Result<kube::core::PartialObjectMeta<Namespace>, watcher::Error>,
    >,
    stop: impl Future<Output = ()> + Clone,
) {
    let mut events = namespaces;
    loop {
        tokio::select! {
            () = stop.clone() => break,
            event = events.next() => match event {
                Some(Ok(_)) => {}
                Some(Err(e)) => tracing::warn!(error = %e, "watching namespaces failed; retrying"),
                None => break,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::OrgMembership;
    use http::{Request, Response};
    use kube::client::Body;

    /// An OrgMembership as the API server lists it after `kubectl apply`.
    fn listed() -> serde_json::Value {
        serde_json::json!({
            "apiVersion": "suborg.io/v1alpha1",
            "kind": "OrgMembershipList",
            "metadata": {"resourceVersion": "7"},
            "items": [{
                "apiVersion": "suborg.io/v1alpha1",
                "kind": "OrgMembership",
                "metadata": {
                    "name": "alice", "namespace": "team", "uid": "uid-alice",
                    "resourceVersion": "7", "generation": 1,
                    "labels": {"team": "platform"},
                    "annotations": {
                        "kubectl.kubernetes.io/last-applied-configuration": "{\"kind\":\"OrgMembership\"}"
                    },
                    "managedFields": [{"manager": "kubectl", "operation": "Apply"}]
                },
                "spec": {
                    "organizationRef": {"kind": "Organization", "name": "acme"},
                    "subject": {"kind": "User", "email": "alice@acme.example"},
                    "roles": [{"role": "member"}]
                }
            }]
        })
    }

    #[tokio::test]
    async fn the_caches_keep_neither_managed_fields_nor_annotations() {
        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let client = Client::new(service, "default");
        let fingerprint = prints::Fingerprint::default();
        let (readiness, mark) = sync::Readiness::new(1);
        let (reader, stream) = watched(
            Api::<DeserializeGuard<OrgMembership>>::all(client),
            watcher::Config::default(),
            &fingerprint,
            mark,
            |_| {},
        );
        let server = tokio::spawn(async move {
            let (request, send) = handle.next_request().await.expect("a list");
            assert_eq!(request.method(), "GET");
            send.send_response(
                Response::builder()
                    .body(Body::from(serde_json::to_vec(&listed()).unwrap()))
                    .unwrap(),
            );
            // The watch that follows is left without an answer, open.
            let watch = handle.next_request().await;
            std::future::pending::<()>().await;
            drop(watch);
        });
        // What the stream hands on is what the reconciler gets.
        let (first_tx, first_rx) = tokio::sync::oneshot::channel();
        let consumer = tokio::spawn(async move {
            let mut stream = std::pin::pin!(stream);
            let _ = first_tx.send(stream.next().await);
            while stream.next().await.is_some() {}
        });
        let filled = tokio::time::timeout(std::time::Duration::from_secs(10), readiness.wait());
        assert_eq!(filled.await, Ok(true), "the listing fills the cache");
        let first = first_rx
            .await
            .unwrap()
            .expect("an object")
            .expect("no watch error");
        let cached = reader.state();
        assert_eq!(cached.len(), 1);
        for meta in [
            &first.0.as_ref().unwrap().metadata,
            &cached[0].0.as_ref().unwrap().metadata,
        ] {
            assert_eq!(meta.name.as_deref(), Some("alice"));
            assert_eq!(meta.managed_fields, None);
            assert_eq!(meta.annotations, None);
            // Labels stay: a selector reads them.
            assert_eq!(meta.labels.as_ref().unwrap()["team"], "platform");
        }
        server.abort();
        consumer.abort();
    }
}
