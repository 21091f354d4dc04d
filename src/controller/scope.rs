//! Which objects a sync's fan-out looks at: those whose part of the result changed.
//!
//! An object's status is a function of the object, the time (its temporary roles) and its own
//! entries in a [`SyncResult`]: its problems, what it waits for, its conflict, whether its rows
//! are kept, its rows in the index, whether it is held, and the store-wide failure. The
//! object's own changes reach its reconciler through its watch, and a temporary role's change
//! through the requeue at the object's next change; what is left for the fan-out is the
//! objects whose entries differ from one result to the next. So after a sync that changed one
//! membership, the fan-out computes a few statuses, not one per object of the tree.
//!
//! The fan-out looks at every object (the scope is [`Scope::All`]) after the first sync, after
//! a failure and on the periodic resync: a status written by someone else (which no watch
//! reports: status changes are filtered out) is put right then.

use std::collections::{HashMap, HashSet};
use std::hash::Hash;

use k8s_openapi::jiff::Timestamp;

use super::sync::SyncResult;
use crate::domain::problem::ObjectKey;

/// The objects whose status a new result may change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Every object.
    All,
    /// The objects with one of these uids or keys.
    Only {
        /// By uid: the store's entries are keyed by the uid of the object they come from.
        uids: HashSet<String>,
        /// By key: problems are keyed by object.
        keys: HashSet<ObjectKey>,
    },
}

impl Scope {
    /// The objects whose entries differ between `before` and `after`, plus those with a
    /// temporary role that started or ended between `before` and `now`. [`Scope::All`] when a
    /// store-wide failure or a held root is involved: those touch every object, or the roots'
    /// children, and are rare.
    pub fn between(before: &SyncResult, after: &SyncResult, now: Timestamp) -> Self {
        if before.failure.is_some() || after.failure.is_some() || before.held != after.held {
            return Scope::All;
        }
        let mut uids = HashSet::new();
        let mut keys = HashSet::new();
        differ(&before.problems, &after.problems, &mut keys);
        differ(&before.waiting, &after.waiting, &mut keys);
        differ(&before.conflicts, &after.conflicts, &mut uids);
        uids.extend(before.kept.symmetric_difference(&after.kept).cloned());
        let (b, a) = (&before.index, &after.index);
        differ(&b.organizations, &a.organizations, &mut uids);
        differ(&b.memberships, &a.memberships, &mut uids);
        differ(&b.groups, &a.groups, &mut uids);
        differ(&b.identities, &a.identities, &mut uids);
        differ(&b.resources, &a.resources, &mut uids);
        differ(&b.projects, &a.projects, &mut uids);
        differ(&b.project_memberships, &a.project_memberships, &mut uids);
        keys.extend(
            before
                .next_changes
                .iter()
                .filter(|(_, at)| **at <= now)
                .map(|(key, _)| key.clone()),
        );
        Scope::Only { uids, keys }
    }

    /// Whether the object `key` with `uid` is in scope; `key` is made only when asked for.
    pub fn contains(&self, uid: Option<&str>, key: impl FnOnce() -> ObjectKey) -> bool {
        match self {
            Scope::All => true,
            Scope::Only { uids, keys } => {
                uid.is_some_and(|u| uids.contains(u)) || (!keys.is_empty() && keys.contains(&key()))
            }
        }
    }
}

/// Adds to `out` every key whose value differs between `before` and `after`, or is in one only.
fn differ<K: Hash + Eq + Clone, V: PartialEq>(
    before: &HashMap<K, V>,
    after: &HashMap<K, V>,
    out: &mut HashSet<K>,
) {
    for (k, v) in before {
        if after.get(k) != Some(v) {
            out.insert(k.clone());
        }
    }
    for k in after.keys() {
        if !before.contains_key(k) {
            out.insert(k.clone());
        }
    }
}
