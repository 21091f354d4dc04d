//! The tree's fingerprint, kept up to date watch event by watch event.
//!
//! A sync is needed only when something the rules read changed: an object's spec (its
//! generation), whether it is being deleted, which objects exist, a Namespace's labels. Each
//! cache is written through a [`Feed`], which records a hash of exactly that for every object
//! and keeps their sum, so "did anything change since the last sync?" costs a few additions,
//! however large the tree; the full snapshot is taken only when the answer is yes.
//!
//! An object that goes while it is being deleted changes nothing the rules read: the sync that
//! saw it deleting already left it out. Its hash stays in the sum, so releasing finalizers does
//! not set off a sync per release: a deletion of thousands of objects costs the syncs that saw
//! them marked, and then each release is one API call. Sub-organizations are the exception: a
//! root being deleted is held while any names it, deleting or not, so one's going is a change.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::Notify;

use k8s_openapi::api::core::v1::Namespace;
use kube::Resource;
use kube::core::{DeserializeGuard, PartialObjectMeta};
use kube::runtime::reflector::store::Writer;
use kube::runtime::reflector::{self, Store as Cache};
use kube::runtime::watcher;

/// What of an object the rules read, as a hash; keyed like the cache (namespace and name).
pub trait Printed {
    /// `namespace/name`, and the hash.
    fn print(&self) -> (String, u64);

    /// Whether the object is being deleted (it has a deletion timestamp).
    fn deleting(&self) -> bool {
        false
    }
}

fn key(meta: &kube::api::ObjectMeta) -> String {
    format!(
        "{}/{}",
        meta.namespace.as_deref().unwrap_or_default(),
        meta.name.as_deref().unwrap_or_default()
    )
}

impl<K: Resource<DynamicType = ()>> Printed for DeserializeGuard<K> {
    fn print(&self) -> (String, u64) {
        let mut h = DefaultHasher::new();
        K::kind(&()).hash(&mut h);
        let meta = match &self.0 {
            Ok(o) => {
                let meta = o.meta();
                meta.uid.hash(&mut h);
                meta.generation.hash(&mut h);
                meta.deletion_timestamp.is_some().hash(&mut h);
                meta
            }
            // An object that cannot be read is reported until a new version of it can be.
            Err(invalid) => {
                invalid.metadata.resource_version.hash(&mut h);
                &invalid.metadata
            }
        };
        let key = key(meta);
        key.hash(&mut h);
        (key, h.finish())
    }

    fn deleting(&self) -> bool {
        // A deleting sub-organization still holds its root (see the module doc): its going
        // counts, as for an object not being deleted.
        K::kind(&()) != "SubOrganization"
            && self
                .0
                .as_ref()
                .is_ok_and(|o| o.meta().deletion_timestamp.is_some())
    }
}

impl Printed for PartialObjectMeta<Namespace> {
    fn print(&self) -> (String, u64) {
        let mut h = DefaultHasher::new();
        "Namespace".hash(&mut h);
        let key = key(&self.metadata);
        key.hash(&mut h);
        self.metadata.labels.hash(&mut h);
        (key, h.finish())
    }
}

/// One cache's hashes and their sum.
#[derive(Default)]
struct Kind {
    /// Each object's hash, and whether it was being deleted.
    live: HashMap<String, (u64, bool)>,
    sum: u64,
    /// A relisting under way: its hashes replace `live` when it completes.
    relist: Option<HashMap<String, (u64, bool)>>,
}

impl Kind {
    fn apply<K: Printed>(&mut self, event: &watcher::Event<K>) {
        match event {
            watcher::Event::Apply(o) => {
                let (key, h) = o.print();
                if let Some((old, _)) = self.live.insert(key, (h, o.deleting())) {
                    self.sum = self.sum.wrapping_sub(old);
                }
                self.sum = self.sum.wrapping_add(h);
            }
            watcher::Event::Delete(o) => {
                let (key, _) = o.print();
                // Gone while being deleted: its hash stays in the sum (see the module doc).
                if let Some((old, false)) = self.live.remove(&key) {
                    self.sum = self.sum.wrapping_sub(old);
                }
            }
            watcher::Event::Init => self.relist = Some(HashMap::new()),
            watcher::Event::InitApply(o) => {
                let (key, h) = o.print();
                self.relist
                    .get_or_insert_default()
                    .insert(key, (h, o.deleting()));
            }
            // A relisting starts the sum afresh: one sync more, after a rare event.
            watcher::Event::InitDone => {
                self.live = self.relist.take().unwrap_or_default();
                self.sum = self
                    .live
                    .values()
                    .fold(0u64, |sum, (h, _)| sum.wrapping_add(*h));
            }
        }
    }
}

/// The fingerprint of every cache fed through a [`Feed`] made by [`Fingerprint::feed`], with a
/// count of the watch events applied and a signal for each, which wake the sync task.
#[derive(Clone, Default)]
pub struct Fingerprint {
    kinds: Arc<Mutex<Vec<Arc<Mutex<Kind>>>>>,
    events: Arc<Events>,
}

/// Watch events applied so far, and the signal of the next.
#[derive(Default)]
struct Events {
    count: AtomicU64,
    signal: Notify,
}

impl Fingerprint {
    /// Changes when anything the rules read changes in any cache.
    pub fn get(&self) -> u64 {
        let kinds = self.kinds.lock().unwrap_or_else(PoisonError::into_inner);
        kinds.iter().fold(0u64, |sum, k| {
            sum.wrapping_add(k.lock().unwrap_or_else(PoisonError::into_inner).sum)
        })
    }

    /// How many watch events the caches have taken. Read before the fingerprint, a count is
    /// covered by any sync whose snapshot follows that fingerprint.
    pub fn events(&self) -> u64 {
        self.events.count.load(Ordering::SeqCst)
    }

    /// Resolves at the next watch event (or at once when one came since the last call).
    pub async fn next_event(&self) {
        self.events.signal.notified().await;
    }

    /// Wakes whoever waits in [`Fingerprint::next_event`], as an event would.
    pub fn poke(&self) {
        self.events.signal.notify_one();
    }

    /// A new cache, and the feed that fills it and keeps its part of the fingerprint.
    pub fn feed<K>(&self) -> (Cache<K>, Feed<K>)
    where
        K: Resource<DynamicType = ()> + Printed + Clone + 'static,
    {
        let (reader, writer) = reflector::store();
        let kind = Arc::new(Mutex::new(Kind::default()));
        self.kinds
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(kind.clone());
        (
            reader,
            Feed {
                writer,
                kind,
                events: self.events.clone(),
            },
        )
    }
}

/// Writes watch events into a cache and then into the fingerprint, in that order: whoever reads
/// a fingerprint and then the cache sees at least what the fingerprint says.
pub struct Feed<K: Resource<DynamicType = ()> + Clone + 'static> {
    writer: Writer<K>,
    kind: Arc<Mutex<Kind>>,
    events: Arc<Events>,
}

impl<K> Feed<K>
where
    K: Resource<DynamicType = ()> + Printed + Clone + 'static,
{
    /// Applies one watch event.
    pub fn apply_watcher_event(&mut self, event: &watcher::Event<K>) {
        self.writer.apply_watcher_event(event);
        self.kind
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .apply(event);
        self.events.count.fetch_add(1, Ordering::SeqCst);
        self.events.signal.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{Organization, OrganizationSpec};

    fn org(name: &str, generation: i64) -> DeserializeGuard<Organization> {
        let spec: OrganizationSpec = serde_json::from_value(serde_json::json!({})).unwrap();
        let mut o = Organization::new(name, spec);
        o.metadata.uid = Some(format!("uid-{name}"));
        o.metadata.generation = Some(generation);
        DeserializeGuard(Ok(o))
    }

    #[test]
    fn the_fingerprint_follows_what_the_rules_read_and_nothing_else() {
        let fp = Fingerprint::default();
        let (cache, mut feed) = fp.feed::<DeserializeGuard<Organization>>();
        let empty = fp.get();
        feed.apply_watcher_event(&watcher::Event::Init);
        feed.apply_watcher_event(&watcher::Event::InitApply(org("a", 1)));
        assert_eq!(fp.get(), empty, "a relisting counts when it completes");
        feed.apply_watcher_event(&watcher::Event::InitDone);
        let one = fp.get();
        assert_ne!(one, empty);
        assert_eq!(cache.state().len(), 1);

        // A status or label change: same generation, same fingerprint.
        let mut relabelled = org("a", 1);
        if let Ok(o) = &mut relabelled.0 {
            o.metadata.labels = Some([("x".to_owned(), "y".to_owned())].into());
        }
        feed.apply_watcher_event(&watcher::Event::Apply(relabelled));
        assert_eq!(fp.get(), one);

        // A new generation, a deletion, a new object: each changes it.
        feed.apply_watcher_event(&watcher::Event::Apply(org("a", 2)));
        let two = fp.get();
        assert_ne!(two, one);
        let mut deleting = org("a", 2);
        if let Ok(o) = &mut deleting.0 {
            o.metadata.deletion_timestamp =
                Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                    k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
                ));
        }
        feed.apply_watcher_event(&watcher::Event::Apply(deleting));
        assert_ne!(fp.get(), two);
        feed.apply_watcher_event(&watcher::Event::Apply(org("a", 2)));
        assert_eq!(fp.get(), two, "the same state, the same fingerprint");
        feed.apply_watcher_event(&watcher::Event::Apply(org("b", 1)));
        let both = fp.get();
        assert_ne!(both, two);

        // Gone, by a Delete or by a relisting without it.
        feed.apply_watcher_event(&watcher::Event::Delete(org("b", 1)));
        assert_eq!(fp.get(), two);

        // Gone after being seen deleting: the sync that saw the deletion left it out already,
        // so its finalizer's release changes nothing. Not seen deleting, it does.
        let mut c = org("c", 1);
        if let Ok(o) = &mut c.0 {
            o.metadata.deletion_timestamp =
                Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                    k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
                ));
        }
        feed.apply_watcher_event(&watcher::Event::Apply(org("c", 1)));
        feed.apply_watcher_event(&watcher::Event::Apply(c.clone()));
        let marked = fp.get();
        assert_ne!(marked, two);
        feed.apply_watcher_event(&watcher::Event::Delete(c));
        assert_eq!(fp.get(), marked, "released after its deletion was seen");
        feed.apply_watcher_event(&watcher::Event::Apply(org("d", 1)));
        let with_d = fp.get();
        feed.apply_watcher_event(&watcher::Event::Delete(org("d", 1)));
        assert_ne!(fp.get(), with_d, "gone without its deletion seen");
        assert_eq!(fp.get(), marked);
        feed.apply_watcher_event(&watcher::Event::Apply(org("b", 1)));
        feed.apply_watcher_event(&watcher::Event::Init);
        feed.apply_watcher_event(&watcher::Event::InitApply(org("a", 2)));
        feed.apply_watcher_event(&watcher::Event::InitDone);
        assert_eq!(fp.get(), two);
        assert_eq!(cache.state().len(), 1);
    }
}
