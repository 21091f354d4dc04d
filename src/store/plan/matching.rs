//! Which stored row a desired row writes to. Rows are keyed by their source (the Kubernetes
//! object's uid); a desired row without one takes over the row with its natural key (slug,
//! subject, name) when that row predates suborg or its source is gone, and a row suborg did
//! not create is written only when adoption is asked for.

use std::collections::{BTreeMap, HashMap, HashSet};

use super::{Action, Change, Op, Table};

use super::change::{ApplyOptions, PlanError};

/// A stored row as a plan sees it: whether suborg manages it, and the source it came from.
pub(crate) trait Sourced {
    fn id(&self) -> &str;
    fn managed(&self) -> bool;
    fn source(&self) -> Option<&str>;
    fn deletion_policy(&self) -> &str;
    fn set_deletion_policy(&mut self, policy: &str);

    /// Whether a desired object keyed `uid` that matched this row by its natural key (slug,
    /// subject) takes it over: the row predates suborg, or its source is no longer wanted (a
    /// rename, or a delete-and-recreate).
    fn claimable(&self, wanted: &HashSet<&str>) -> bool {
        !self.managed() || self.source().is_some_and(|s| !wanted.contains(s))
    }

    /// Whether writing `uid` to this row changes its source or makes it managed.
    fn source_changes(&self, uid: &str) -> bool {
        self.source() != Some(uid) || !self.managed()
    }

    /// What writing `source` and the desired values changes: `source` when the row changes
    /// hands or becomes managed, then the name of each field whose value `differs`.
    fn changed_fields(&self, source: &str, differs: &[(&'static str, bool)]) -> Vec<&'static str> {
        std::iter::once(("source", self.source_changes(source)))
            .chain(differs.iter().copied())
            .filter(|(_, d)| *d)
            .map(|(f, _)| f)
            .collect()
    }

    /// Refuses to write `source` over a row suborg did not create, unless adoption is asked for.
    fn writable_by(
        &self,
        source: &str,
        options: ApplyOptions,
        what: &str,
    ) -> Result<(), PlanError> {
        if self.managed() || options.adopt {
            Ok(())
        } else {
            Err(PlanError::Conflict(
                Some(source.to_owned()),
                format!(
                    "{what} already exists in the store and suborg does not manage it (it was made outside suborg, or left in place by deletionPolicy: Orphan, its object's own or, for an organization, that of a sub-organization left in place under it): apply with --adopt (the chart's controller.adopt) to take it over"
                ),
            ))
        }
    }
}

/// Stored rows by the source they came from.
pub(crate) fn by_source<R: Sourced>(rows: &[R]) -> HashMap<&str, &R> {
    rows.iter()
        .filter_map(|r| r.source().map(|s| (s, r)))
        .collect()
}

/// The stored row the desired `source` writes to: the one it already owns, or the one with
/// its natural key `key` (slug, subject, name) that it may take over.
pub(crate) fn row_for<'r, R: Sourced, K: Eq + std::hash::Hash>(
    by_source: &HashMap<&str, &'r R>,
    by_key: &HashMap<K, &'r R>,
    source: &str,
    key: &K,
    wanted: &HashSet<&str>,
) -> Option<&'r R> {
    by_source
        .get(source)
        .copied()
        .or_else(|| by_key.get(key).copied().filter(|r| r.claimable(wanted)))
}

/// Another object's managed row holding the natural key `key` that `source` may not take
/// over: its object still wants or keeps it, or is gone but was not the same object (`same`
/// tells). A delete-and-recreate takes its row back; another object with the same slug does
/// not inherit a row, its id and what hangs off it.
pub(crate) fn held_by_another<'r, R: Sourced, K: Eq + std::hash::Hash>(
    by_key: &HashMap<K, &'r R>,
    key: &K,
    source: &str,
    wanted: &HashSet<&str>,
    same: impl Fn(&R) -> bool,
) -> Option<&'r R> {
    let r = by_key.get(key).copied()?;
    let theirs = r.managed() && r.source().is_some_and(|s| s != source);
    (theirs && (r.source().is_some_and(|s| wanted.contains(s)) || !same(r))).then_some(r)
}

/// The sources whose stored rows no other source may take over: those `desired` and those
/// `kept` as they are.
pub(crate) fn wanted<'a>(
    desired: impl Iterator<Item = &'a str>,
    kept: &'a BTreeMap<String, Option<&'static str>>,
) -> HashSet<&'a str> {
    desired.chain(kept.keys().map(String::as_str)).collect()
}

/// Keeps the managed rows of the `kept` sources that the plan did not write (`planned`), in
/// an organization that `stays`: the caller counts them as planned, so pruning passes them by.
/// Their values stay as last written but for one: the deletion policy their object has now,
/// so that deleting the object does what it says.
pub(crate) fn keep_rows<'r, R: Sourced>(
    table: Table,
    rows: &'r [R],
    kept: &BTreeMap<String, Option<&'static str>>,
    planned: impl Fn(&str) -> bool,
    stays: impl Fn(&R) -> bool,
    target: impl Fn(&R) -> String,
    changes: &mut Vec<Change>,
) -> Vec<(&'r str, &'r R)> {
    if kept.is_empty() {
        return Vec::new();
    }
    let mut out = Vec::new();
    for r in rows.iter().filter(|r| r.managed() && stays(r)) {
        let Some((source, &policy)) = r.source().and_then(|s| Some((s, kept.get(s)?))) else {
            continue;
        };
        if planned(source) {
            continue;
        }
        if let Some(policy) = policy
            && r.deletion_policy() != policy
        {
            changes.push(Change::new(
                Action::Update,
                table.kind(),
                target(r),
                vec!["deletionPolicy"],
                Some(source.to_owned()),
                Op::SetPolicy {
                    table,
                    id: r.id().to_owned(),
                    policy,
                },
            ));
        }
        out.push((source, r));
    }
    out
}

/// [`keep_rows`] for a table whose plan maps sources to row ids: the kept rows join `ids`.
pub(crate) fn keep_ids<R: Sourced>(
    table: Table,
    rows: &[R],
    kept: &BTreeMap<String, Option<&'static str>>,
    ids: &mut HashMap<String, String>,
    stays: impl Fn(&R) -> bool,
    target: impl Fn(&R) -> String,
    changes: &mut Vec<Change>,
) {
    let found = keep_rows(
        table,
        rows,
        kept,
        |s| ids.contains_key(s),
        stays,
        target,
        changes,
    );
    for (source, row) in found {
        ids.insert(source.to_owned(), row.id().to_owned());
    }
}

/// Gives the rows of objects being deleted the deletion policy their object has now
/// ([`crate::store::Desired::deleting`]), which the store has not seen when the policy was
/// changed just before the deletion.
pub(crate) fn follow_policies<R: Sourced>(
    rows: &mut [R],
    deleting: &HashMap<String, &'static str>,
) {
    if deleting.is_empty() {
        return;
    }
    for r in rows {
        let now = r
            .source()
            .and_then(|s| deleting.get(crate::store::source_object(s)));
        if let Some(policy) = now {
            r.set_deletion_policy(policy);
        }
    }
}

/// Implements [`Sourced`] for row types with `id`, `managed`, `source_uid` and
/// `deletion_policy` fields (where
/// `Sourced` is in scope).
macro_rules! sourced {
    ($($row:ty),*) => {$(
        impl Sourced for $row {
            fn id(&self) -> &str {
                &self.id
            }
            fn managed(&self) -> bool {
                self.managed
            }
            fn deletion_policy(&self) -> &str {
                &self.deletion_policy
            }
            fn set_deletion_policy(&mut self, policy: &str) {
                policy.clone_into(&mut self.deletion_policy);
            }
            fn source(&self) -> Option<&str> {
                self.source_uid.as_deref()
            }
        }
    )*};
}
pub(crate) use sourced;
