//! Which controller writes a store. A controller's sync prunes every managed row that none of
//! its objects asks for, so two controllers that see different objects (another `--selector`,
//! another cluster) on one database would delete each other's rows on every sync. The first
//! controller to write claims the store; another is refused, with both named, until it takes
//! the store over on purpose (`suborg run --take-over-store`). Replicas of one controller share
//! its claim. The offline `suborg apply` never claims, and is refused on a store a controller
//! claimed: its `--prune` would delete that controller's rows.

use sqlx::{AnyConnection, Row};

use super::error::StoreError;

/// Who writes through a [`super::SqlStore`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Writer {
    /// A controller, by what decides the objects it sees (its cluster and `--selector`).
    Controller {
        /// How the claim names it, e.g. `cluster 1b4e… selector "team=a"`.
        id: String,
        /// Take a store another controller claimed.
        take_over: bool,
    },
    /// `suborg apply`: writes only where no controller claimed the store.
    Offline,
}

impl Writer {
    /// The claim of a controller in the cluster `cluster` (its `kube-system` namespace's uid)
    /// that sees the objects `selector` matches (all of them when `None`).
    pub fn controller(cluster: &str, selector: Option<&str>, take_over: bool) -> Self {
        let selector = match selector.map(str::trim).filter(|s| !s.is_empty()) {
            Some(s) => format!("selector {s:?}"),
            None => "no selector".to_owned(),
        };
        Writer::Controller {
            id: format!("cluster {cluster}, {selector}"),
            take_over,
        }
    }
}

/// Checks, inside the write transaction on `conn` (under the write lock), that `writer` may
/// write the store, claiming it for a controller that finds it unclaimed (or takes it over).
pub(super) async fn check(
    conn: &mut AnyConnection,
    writer: &Writer,
    now_ms: i64,
) -> Result<(), ClaimError> {
    let claimed: Option<String> = sqlx::query("SELECT writer FROM suborg_claim WHERE id = 1")
        .fetch_optional(&mut *conn)
        .await?
        .map(|r| r.try_get(0))
        .transpose()?;
    match (writer, claimed) {
        (Writer::Offline, None) => Ok(()),
        (Writer::Offline, Some(by)) => Err(ClaimError::Refused(format!(
            "the store is written by a controller ({by}): `suborg apply` would undo its work (and `--prune` delete its rows); change the objects through the API server, or point `apply` at a store of its own"
        ))),
        (Writer::Controller { id, .. }, Some(by)) if *id == by => Ok(()),
        (Writer::Controller { id, take_over }, claimed) => {
            if let Some(by) = &claimed {
                if !take_over {
                    return Err(ClaimError::Refused(format!(
                        "the store is written by another controller ({by}), not this one ({id}): a controller removes the rows of every object it does not see, so two would delete each other's; give each its own database, or, if that controller is gone for good (its selector changed, say), start this one once with --take-over-store"
                    )));
                }
                tracing::warn!(from = %by, to = %id, "taking the store over from another controller");
            }
            let sql = "INSERT INTO suborg_claim (id, writer, claimed_at) VALUES (1, $1, $2) ON CONFLICT (id) DO UPDATE SET writer = excluded.writer, claimed_at = excluded.claimed_at";
            sqlx::query(sql)
                .bind(id.as_str())
                .bind(now_ms)
                .execute(&mut *conn)
                .await?;
            if claimed.is_none() {
                tracing::info!(writer = %id, "the store is claimed for this controller");
            }
            Ok(())
        }
    }
}

/// Why a write was not made.
#[derive(Debug)]
pub(super) enum ClaimError {
    /// Another writer holds the store.
    Refused(String),
    /// Reading or writing the claim failed.
    Query(sqlx::Error),
}

impl From<sqlx::Error> for ClaimError {
    fn from(e: sqlx::Error) -> Self {
        ClaimError::Query(e)
    }
}

impl ClaimError {
    pub(super) fn into_store_error(self, query: impl Fn(sqlx::Error) -> StoreError) -> StoreError {
        match self {
            ClaimError::Refused(message) => StoreError::Claimed(message),
            ClaimError::Query(e) => query(e),
        }
    }
}
