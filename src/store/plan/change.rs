//! What a plan is: the changes it lists ([`Plan`], [`Change`], [`Action`]), the options it is
//! made with, and what can go wrong while making or carrying it out.

use std::collections::HashSet;
use std::fmt;

use super::op::Op;
use crate::store::dsn::Dsn;
use crate::store::error::{ObjectConflict, StoreError};

/// Options of an apply (`SqlStore::apply`).
#[derive(Debug, Clone, Copy, Default)]
pub struct ApplyOptions {
    /// Delete managed rows that are no longer desired.
    pub prune: bool,
    /// Take over rows with a desired slug that suborg did not create, instead of refusing.
    pub adopt: bool,
}

/// What happens to one row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Action {
    /// A new row.
    Create,
    /// A row whose values change.
    Update,
    /// A row removed (`--prune`, deletion policy `Delete`).
    Delete,
    /// A row left in place but no longer managed (`--prune`, deletion policy `Orphan`).
    Orphan,
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Create => "+",
            Self::Update => "~",
            Self::Delete => "-",
            Self::Orphan => "=",
        })
    }
}

impl Action {
    /// The verb, for messages: "create", "update", "delete", "orphan".
    pub fn verb(self) -> &'static str {
        match self {
            Self::Create => "create",
            Self::Update => "update",
            Self::Delete => "delete",
            Self::Orphan => "orphan",
        }
    }
}

/// One planned change.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Change {
    /// What happens.
    pub action: Action,
    /// What the row is: `organization`, `membership`, `group`, `project`… (see `Table::kind`).
    pub kind: &'static str,
    /// The row, for people: `acme/engineering`, or `alice@acme.example in acme/engineering`.
    pub target: String,
    /// For updates, the fields that change.
    pub fields: Vec<&'static str>,
    /// Why a row is left in place though its object's policy says `Delete`: `kept for the
    /// sub-organizations that remain in the store: marketing`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub why: Option<String>,
    /// The source the row belongs to (a Kubernetes object's uid), when known.
    #[serde(skip)]
    pub source: Option<String>,
    #[serde(skip)]
    pub(crate) op: Op,
}

impl Change {
    /// A new row for `source`.
    pub(crate) fn create(kind: &'static str, target: String, source: &str, op: Op) -> Self {
        Self::new(
            Action::Create,
            kind,
            target,
            vec![],
            Some(source.to_owned()),
            op,
        )
    }

    /// An update of the `fields` of `source`'s row, or nothing when none changed (the
    /// statement is only built then: a no-op plan of a large store builds none).
    pub(crate) fn update(
        kind: &'static str,
        target: String,
        fields: Vec<&'static str>,
        source: &str,
        op: impl FnOnce() -> Op,
    ) -> Option<Self> {
        (!fields.is_empty()).then(|| {
            Self::new(
                Action::Update,
                kind,
                target,
                fields,
                Some(source.to_owned()),
                op(),
            )
        })
    }

    pub(crate) fn new(
        action: Action,
        kind: &'static str,
        target: String,
        fields: Vec<&'static str>,
        source: Option<String>,
        op: Op,
    ) -> Self {
        Self {
            action,
            kind,
            target,
            fields,
            why: None,
            source,
            op,
        }
    }
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "  {} {} {}", self.action, self.kind, self.target)?;
        if !self.fields.is_empty() {
            write!(f, " ({})", self.fields.join(", "))?;
        }
        if let Some(why) = &self.why {
            write!(f, " ({why})")?;
        }
        Ok(())
    }
}

/// Everything applying a desired state changes. Empty when the store already matches.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Plan {
    /// Changes in the order they are carried out.
    pub changes: Vec<Change>,
}

impl Plan {
    /// How many changes of `action` the plan holds.
    pub fn count(&self, action: Action) -> usize {
        self.changes.iter().filter(|c| c.action == action).count()
    }

    /// Whether the plan changes nothing.
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }
}

/// A planning failure, before the DSN is attached.
pub(crate) enum PlanError {
    /// A conflict, with the source (object uid) it is about when there is one.
    Conflict(Option<String>, String),
    /// Every conflict of a table's plan, each about one object (see [`Conflicts`]).
    Conflicts(Vec<ObjectConflict>),
    Query(sqlx::Error),
}

impl From<sqlx::Error> for PlanError {
    fn from(e: sqlx::Error) -> Self {
        Self::Query(e)
    }
}

impl PlanError {
    pub(crate) fn with_dsn(self, dsn: &Dsn) -> StoreError {
        match self {
            Self::Conflict(None, m) => StoreError::Conflict(m),
            Self::Conflict(Some(uid), message) => StoreError::SourceConflicts {
                conflicts: vec![ObjectConflict { uid, message }],
            },
            Self::Conflicts(conflicts) => StoreError::SourceConflicts { conflicts },
            Self::Query(source) => StoreError::Query {
                dsn: dsn.to_string(),
                source,
            },
        }
    }
}

/// The conflicts a table's plan finds. A conflicting row's object is noted and the rest of the
/// table planned, so one pass names every object of the table at fault, and the caller leaves
/// them all out at once instead of one a pass. The plan stops after the table: later tables'
/// rows may refer to the rows left out.
#[derive(Default)]
pub(crate) struct Conflicts {
    found: Vec<ObjectConflict>,
    /// The objects noted, for rows that refer to them within the table.
    left_out: HashSet<String>,
}

impl Conflicts {
    /// Notes `planned`'s conflict when it is about one object; any other failure stops the plan.
    pub(crate) fn note(&mut self, planned: Result<(), PlanError>) -> Result<(), PlanError> {
        match planned {
            Err(PlanError::Conflict(Some(uid), message)) => {
                self.left_out.insert(uid.clone());
                self.found.push(ObjectConflict { uid, message });
                Ok(())
            }
            other => other,
        }
    }

    /// Whether `source` was left out of this table for a conflict, or for depending on one.
    pub(crate) fn left_out(&self, source: &str) -> bool {
        self.left_out.contains(source)
    }

    /// Leaves `source` out quietly: it depends on a row left out for a conflict, and the
    /// domain holds it back once that object is out.
    pub(crate) fn skip(&mut self, source: &str) {
        self.left_out.insert(source.to_owned());
    }

    /// The table's verdict: every conflict found, or none.
    pub(crate) fn into_result(self) -> Result<(), PlanError> {
        if self.found.is_empty() {
            Ok(())
        } else {
            Err(PlanError::Conflicts(self.found))
        }
    }
}

/// Plans each of `rows` with `plan_one`, noting the conflicts of their objects (see
/// [`Conflicts`]): every one of the table, or none.
pub(crate) fn plan_each<T>(
    rows: impl IntoIterator<Item = T>,
    mut plan_one: impl FnMut(T) -> Result<(), PlanError>,
) -> Result<(), PlanError> {
    let mut conflicts = Conflicts::default();
    for row in rows {
        conflicts.note(plan_one(row))?;
    }
    conflicts.into_result()
}

/// The database's own words when `e` is a constraint refusing a row.
pub(crate) fn constraint_message(e: &sqlx::Error) -> Option<String> {
    use sqlx::error::ErrorKind;
    let sqlx::Error::Database(d) = e else {
        return None;
    };
    let constraint = !matches!(d.kind(), ErrorKind::Other)
        // SQLite's triggers (migration 4) raise their own constraint errors.
        || d.message().contains("constraint failed");
    constraint.then(|| d.message().to_owned())
}

/// `e` as a conflict of `change`'s object when it is a constraint refusing its row: a row
/// written around suborg since the plan was made, or a rule the plan missed, holds back that
/// object alone, not the whole store.
pub(crate) fn refused(e: PlanError, change: &Change) -> PlanError {
    match e {
        PlanError::Query(q) => match (constraint_message(&q), &change.source) {
            (Some(message), Some(source)) => PlanError::Conflict(
                Some(source.clone()),
                format!(
                    "the store refused to {} {} {}: {message}",
                    change.action.verb(),
                    change.kind,
                    change.target
                ),
            ),
            _ => PlanError::Query(q),
        },
        other => other,
    }
}
