//! The caches of the watched objects, and the snapshot a sync takes of them: every kind's
//! objects as the rules take them, in a stable order, with the ones being deleted left out.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Namespace, ObjectReference};
use k8s_openapi::jiff::Timestamp;
use kube::core::{DeserializeGuard, PartialObjectMeta};
use kube::runtime::reflector::Store as Cache;
use kube::{Resource, ResourceExt};

use super::prints::{Feed, Fingerprint};
use crate::api::{
    AppConnection, Gateway, Group, MachineIdentity, OrgMembership, Organization, Project,
    ProjectMembership, Relay, SubOrganization,
};
use crate::domain::model::ObjectSet;
use crate::domain::problem::ObjectKey;

macro_rules! caches {
    ($($kind:ident $field:ident,)*) => {
        /// The caches the sync reads: one per watched kind, named as in [`ObjectSet`].
        #[derive(Clone)]
        pub struct Caches {
            $(
                #[doc = concat!("The ", stringify!($kind), " objects.")]
                pub $field: Cache<DeserializeGuard<$kind>>,
            )*
            /// Namespaces (metadata only: their labels decide delegation).
            pub namespaces: Cache<PartialObjectMeta<Namespace>>,
            /// When all of the above hold a full listing.
            pub ready: Readiness,
            /// What the rules read of all of the above, kept up to date by the feeds that fill them.
            pub fingerprint: Fingerprint,
        }

        impl Caches {
            /// Every object that could be read; the keys of those that could not are added to
            /// `set.rejected`.
            fn unguard_all(&self, set: &mut ObjectSet, unreadable: &mut Vec<(ObjectKey, String)>) {
                $(set.$field = unguard(&self.$field, stringify!($kind), set, unreadable);)*
            }

            /// The key and a reference (for Events) of each cached object whose uid is in
            /// `uids`, being deleted or not, by uid.
            pub fn references(&self, uids: &HashSet<&str>) -> HashMap<String, (ObjectKey, ObjectReference)> {
                let mut found = HashMap::new();
                if uids.is_empty() {
                    return found;
                }
                $(
                    for g in self.$field.state() {
                        if let Ok(o) = &g.0
                            && let Some(uid) = o.meta().uid.as_deref()
                            && uids.contains(uid)
                        {
                            found.insert(uid.to_owned(), (key_of(stringify!($kind), o.meta()), reference(o)));
                        }
                    }
                )*
                found
            }
        }

        /// The writing ends of caches made by [`Caches::by_hand`]: one per kind, named as in
        /// [`ObjectSet`], and the Namespaces'.
        pub struct Feeds {
            $(
                #[doc = concat!("Feeds the ", stringify!($kind), " cache.")]
                pub $field: Feed<DeserializeGuard<$kind>>,
            )*
            /// Feeds the Namespaces cache.
            pub namespaces: Feed<PartialObjectMeta<Namespace>>,
        }

        impl Caches {
            /// Caches filled by hand rather than by watches (tests, benchmarks): each takes
            /// watch events through its feed and keeps its part of the fingerprint. They count
            /// as filled from the start.
            pub fn by_hand() -> (Self, Feeds) {
                let fingerprint = Fingerprint::default();
                $(let $field = fingerprint.feed();)*
                let namespaces = fingerprint.feed();
                let caches = Caches {
                    $($field: $field.0,)*
                    namespaces: namespaces.0,
                    ready: Readiness::filled(),
                    fingerprint,
                };
                let feeds = Feeds {
                    $($field: $field.1,)*
                    namespaces: namespaces.1,
                };
                (caches, feeds)
            }
        }

        $(
            impl Bare for $kind {
                fn bare(&self) -> Self {
                    Self {
                        metadata: self.metadata.clone(),
                        spec: self.spec.clone(),
                        status: None,
                    }
                }
            }
        )*

        /// Leaves out every object being deleted, but the organizations in `held`. Returns the
        /// source key and current deletion policy of each object being deleted.
        fn tidy(set: &mut ObjectSet, held: &HashMap<String, Vec<String>>) -> HashMap<String, &'static str> {
            let mut gone = HashMap::new();
            $(
                for o in set.$field.iter().filter(|o| deleting(*o)) {
                    gone.insert(
                        crate::rows::source_key(o),
                        crate::rows::policy(o.spec.deletion_policy),
                    );
                }
                set.$field.retain(|o| !deleting(o) || is_held(o, held));
            )*
            gone
        }

        /// The generation of every object in the set that has a uid, by uid.
        pub(super) fn generations(set: &ObjectSet) -> HashMap<String, i64> {
            let mut seen = HashMap::new();
            $(
                for o in &set.$field {
                    let meta = o.meta();
                    if let Some(uid) = &meta.uid {
                        seen.insert(uid.clone(), meta.generation.unwrap_or_default());
                    }
                }
            )*
            seen
        }

        /// Calls `count` with every object's kind, key and uid.
        pub(super) fn each_object(set: &ObjectSet, mut count: impl FnMut(&'static str, ObjectKey, Option<String>)) {
            $(
                for o in &set.$field {
                    count(stringify!($kind), key_of(stringify!($kind), o.meta()), o.uid());
                }
            )*
        }

        /// Takes the object `key` out of the set's lists.
        pub(super) fn remove(set: &mut ObjectSet, key: &ObjectKey) {
            match key.kind.as_str() {
                $(stringify!($kind) => set.$field.retain(|o| key_of(stringify!($kind), o.meta()) != *key),)*
                _ => {}
            }
        }
    };
}
crate::api::for_each_kind!(caches);

/// A consistent view of the watched objects.
pub struct Snapshot {
    /// The objects, as the rules take them (deleted objects left out, except organizations
    /// held for their sub-organizations).
    pub set: ObjectSet,
    /// Organizations being deleted but held, by name, with the sub-organizations holding them.
    pub held: HashMap<String, Vec<String>>,
    /// Objects that exist but could not be read (they no longer match the types: a CRD newer
    /// than the binary, say), by key, with their uids. Not being deleted.
    pub unreadable: Vec<(ObjectKey, String)>,
    /// Objects being deleted, by source key, with their deletion policy
    /// ([`crate::store::Desired::deleting`]).
    pub deleting: HashMap<String, &'static str>,
}

/// What follows the name of a sub-organization that holds its root while it is itself being
/// deleted, in [`crate::controller::sync::SyncResult::held`].
pub const BEING_DELETED: &str = " (being deleted)";

/// An object as the rules read it: without its status, which they never look at and which is
/// most of what a Ready object's copy would cost.
trait Bare {
    fn bare(&self) -> Self;
}

fn deleting<K: Resource>(o: &K) -> bool {
    o.meta().deletion_timestamp.is_some()
}

/// Whether `o` is an Organization kept, while being deleted, for the sub-organizations in
/// `held`.
fn is_held<K: Resource<DynamicType = ()>>(o: &K, held: &HashMap<String, Vec<String>>) -> bool {
    K::kind(&()) == "Organization" && o.meta().name.as_ref().is_some_and(|n| held.contains_key(n))
}

/// The order the rules see objects in: by creation time, then namespace and name, the same on
/// every sync, so a tie between two claims on one slug always goes the same way.
fn order<K: Resource>(o: &K) -> (Option<Timestamp>, Option<&str>, Option<&str>) {
    let meta = o.meta();
    (
        meta.creation_timestamp.as_ref().map(|t| t.0),
        meta.namespace.as_deref(),
        meta.name.as_deref(),
    )
}

/// The key of an object of `kind` with metadata `meta`, as [`tree`]'s key functions make it.
fn key_of(
    kind: &str,
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
) -> ObjectKey {
    let name = meta.name.as_deref().unwrap_or_default();
    match &meta.namespace {
        Some(ns) => ObjectKey::namespaced(kind, ns, name),
        None => ObjectKey::cluster(kind, name),
    }
}

/// The objects of one cache that could be read; the keys of those that could not are added to
/// `set.rejected`, and with their uids to `unreadable` unless they are being deleted.
fn unguard<K: Resource<DynamicType = ()> + Clone + Bare>(
    cache: &Cache<DeserializeGuard<K>>,
    kind: &str,
    set: &mut ObjectSet,
    unreadable: &mut Vec<(ObjectKey, String)>,
) -> Vec<K> {
    let state = cache.state();
    let mut read = Vec::with_capacity(state.len());
    for g in &state {
        match &g.0 {
            Ok(o) => read.push(o),
            Err(invalid) => {
                let key = key_of(kind, &invalid.metadata);
                if let Some(uid) = &invalid.metadata.uid
                    && invalid.metadata.deletion_timestamp.is_none()
                {
                    unreadable.push((key.clone(), uid.clone()));
                }
                set.rejected.insert(key);
            }
        }
    }
    // Sorted before the copy: an object is a few hundred bytes, a reference eight.
    read.sort_by(|a, b| order(*a).cmp(&order(*b)));
    read.into_iter().map(Bare::bare).collect()
}

fn reference<K: Resource<DynamicType = ()>>(o: &K) -> ObjectReference {
    o.object_ref(&())
}

/// Whether every cache holds a full listing.
///
/// kube's `Store::wait_until_ready` keeps one waker: of several tasks waiting on one cache, only
/// the last to poll is woken, and the controller's own runner is already one of them. A reconcile
/// or the readiness probe waiting there could sleep forever. So each watch stream reports its
/// first complete listing here instead, where any number may wait.
#[derive(Clone, Debug)]
pub struct Readiness {
    rx: tokio::sync::watch::Receiver<usize>,
    expected: usize,
}

/// Held by a watch stream: marks its cache as filled, once.
#[derive(Clone, Debug)]
pub struct ReadyMark {
    tx: Arc<tokio::sync::watch::Sender<usize>>,
}

impl ReadyMark {
    /// One more cache holds a full listing.
    pub fn mark(&self) {
        self.tx.send_modify(|n| *n += 1);
    }
}

impl Readiness {
    /// Readiness of `expected` caches, and the mark their streams share. When every mark is
    /// dropped (the watches ended) before all are filled, waiting ends with `false`; once they
    /// were all filled, it stays `true`.
    pub fn new(expected: usize) -> (Self, ReadyMark) {
        let (tx, rx) = tokio::sync::watch::channel(0);
        (Self { rx, expected }, ReadyMark { tx: Arc::new(tx) })
    }

    /// Whether every cache is filled now.
    pub fn is_filled(&self) -> bool {
        *self.rx.borrow() >= self.expected
    }

    /// Caches that were filled before they were handed over (tests, tools).
    pub fn filled() -> Self {
        Self::new(0).0
    }

    /// Waits until every cache is filled; `false` if one never will be.
    pub async fn wait(&self) -> bool {
        let mut rx = self.rx.clone();
        let expected = self.expected;
        rx.wait_for(|n| *n >= expected).await.is_ok()
    }
}

impl Caches {
    /// Waits until every cache holds a full listing; `false` if one never will (its watch is
    /// gone). Nothing is synced before: pruning from a half-filled cache would delete rows.
    pub async fn ready(&self) -> bool {
        self.ready.wait().await
    }

    /// Takes a snapshot of the caches.
    pub fn snapshot(&self) -> Snapshot {
        self.snapshot_with(None)
    }

    /// A snapshot of the caches, given the uids of the organizations the store holds
    /// ([`ObjectSet::stored`]) when they are known (`None` before a sync has read the store).
    pub fn snapshot_with(&self, stored: Option<HashSet<String>>) -> Snapshot {
        let known = stored.is_some();
        let mut set = ObjectSet {
            stored: stored.unwrap_or_default(),
            ..ObjectSet::default()
        };
        let mut unreadable = Vec::new();
        self.unguard_all(&mut set, &mut unreadable);
        for ns in self.namespaces.state() {
            set.namespaces.insert(
                ns.name_any(),
                ns.metadata.labels.clone().unwrap_or_default(),
            );
        }
        // A root being deleted stays while sub-organizations (even deleting ones) name it, but
        // not for one created after its deletion began (refused by the rules).
        let mut children: HashMap<&str, Vec<&SubOrganization>> = HashMap::new();
        for s in &set.sub_organizations {
            children
                .entry(s.spec.organization_ref.name.as_str())
                .or_default()
                .push(s);
        }
        let mut held = HashMap::new();
        for o in set.organizations.iter().filter(|o| deleting(*o)) {
            // A root the store does not hold has no rows for its children's rows to need (it
            // was refused, say for its name or slug, or never written), so nothing holds it;
            // its children are refused with it. Before a sync has read the store, every root
            // is held as if it had rows.
            if known && !o.uid().is_some_and(|u| set.stored.contains(&u)) {
                continue;
            }
            let name = o.name_any();
            let mut kids: Vec<String> = children
                .get(name.as_str())
                .into_iter()
                .flatten()
                .filter(|s| !crate::domain::organizations::joins_late(s, o, &set.stored))
                .map(|s| {
                    if deleting(*s) {
                        format!("{}{BEING_DELETED}", s.name_any())
                    } else {
                        s.name_any()
                    }
                })
                .collect();
            if !kids.is_empty() {
                kids.sort();
                held.insert(name, kids);
            }
        }
        let deleting = tidy(&mut set, &held);
        Snapshot {
            set,
            held,
            unreadable,
            deleting,
        }
    }
}
