//! The statuses this controller wrote that its caches may not show yet, and the Ready each
//! object had before a store outage replaced it.

use kube::ResourceExt;
use serde::Serialize;

use super::kinds::Kind;

/// The statuses written, by object uid: the object's resourceVersion when it was written and a
/// hash of what was written.
///
/// The cache lags the controller's own writes: an object queued again right after its status
/// was written (by its finalizer's echo, say) still shows the old status, and comparing with
/// that would write the same status twice. When the cached object is still the version the
/// last write was made on and the status wanted is the one written, the write is on its way.
#[derive(Default)]
pub struct Written {
    statuses: std::sync::Mutex<std::collections::HashMap<String, (String, u64)>>,
    before_outage: std::sync::Mutex<std::collections::HashMap<String, Option<Ready>>>,
}

/// A Ready condition's status and reason.
pub type Ready = (String, String);

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Written {
    /// A hash of `status` without its conditions' `lastTransitionTime`: a reconcile that reads
    /// the object before its last status write shows up computes the same status with a new
    /// transition time.
    fn hash<S: Serialize>(status: &S) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut value = serde_json::to_value(status).unwrap_or_default();
        if let Some(conditions) = value
            .get_mut("conditions")
            .and_then(serde_json::Value::as_array_mut)
        {
            for c in conditions
                .iter_mut()
                .filter_map(serde_json::Value::as_object_mut)
            {
                c.remove("lastTransitionTime");
            }
        }
        let mut h = std::hash::DefaultHasher::new();
        value.to_string().hash(&mut h);
        h.finish()
    }

    fn map(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, (String, u64)>> {
        lock(&self.statuses)
    }

    fn entry<K: Kind>(o: &K, desired: &K::Status) -> Option<(String, (String, u64))> {
        Some((o.uid()?, (o.resource_version()?, Self::hash(desired))))
    }

    /// Whether `desired` was written on the very version of `o` the cache still holds.
    pub(super) fn in_flight<K: Kind>(&self, o: &K, desired: &K::Status) -> bool {
        let Some((uid, seen)) = Self::entry(o, desired) else {
            return false;
        };
        self.map().get(&uid) == Some(&seen)
    }

    pub(super) fn record<K: Kind>(&self, o: &K, desired: &K::Status) {
        if let Some((uid, seen)) = Self::entry(o, desired) {
            self.map().insert(uid, seen);
        }
    }

    pub(super) fn forget<K: Kind>(&self, o: &K) {
        if let Some(uid) = o.uid() {
            self.map().remove(&uid);
            lock(&self.before_outage).remove(&uid);
        }
    }

    /// What Ready changed from, for an Event, when `o`'s Ready goes from `before` to `after`;
    /// `None` when there is nothing to tell. An outage replaces every object's Ready with a
    /// store-wide reason (`is_store_wide`) and its end puts them back: neither is news, but a
    /// change the outage hid is (a rule error fixed meanwhile). So the Ready an object had
    /// when an outage reached it is kept until the outage leaves it, and what it comes back to
    /// is compared with that. A controller started during an outage knows no Ready before it,
    /// and tells nothing when it ends.
    pub(super) fn changed_from<K: Kind>(
        &self,
        o: &K,
        before: Option<Ready>,
        after: &Option<Ready>,
        is_store_wide: impl Fn(&str) -> bool,
    ) -> Option<Option<Ready>> {
        let wide = |r: &Option<Ready>| r.as_ref().is_some_and(|(_, reason)| is_store_wide(reason));
        let uid = o.uid().unwrap_or_default();
        match (wide(&before), wide(after)) {
            (false, true) => {
                lock(&self.before_outage).insert(uid, before);
                None
            }
            (true, true) => None,
            (true, false) => lock(&self.before_outage)
                .remove(&uid)
                .filter(|b| b != after),
            (false, false) => Some(before).filter(|b| b != after),
        }
    }
}
