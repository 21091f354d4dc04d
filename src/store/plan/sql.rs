//! SQL the tables share: multi-row placeholders, the one loader of large row sets, the users
//! by email, and removing or letting go of a row of any table.

use std::collections::HashMap;

use sqlx::{AnyConnection, Row};

use super::change::{Action, Change};
use super::op::{Op, Table};
use crate::store::dsn::Backend;

/// `($1, $2, …extra), ($n+1, …extra)` for `rows` rows of `width` parameters, each row ending
/// with the literal SQL `extra`. SQLite gets `?`: it binds `$N` by looking each name up, which
/// is quadratic in the number of parameters of a statement.
pub(crate) fn placeholders(backend: Backend, rows: usize, width: usize, extra: &str) -> String {
    (0..rows)
        .map(|r| format!("({}{extra})", parameters(backend, r * width + 1, width)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `$first, …` for `n` parameters, the first numbered `first` (`?, …` for SQLite, see
/// [`placeholders`]): an `IN (…)` list after `first - 1` other parameters of its statement.
pub(crate) fn parameters(backend: Backend, first: usize, n: usize) -> String {
    (first..first + n)
        .map(|i| match backend {
            Backend::Sqlite => "?".to_owned(),
            Backend::Postgres => format!("${i}"),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Every row of `SELECT {columns} {from}`, each as a tuple of its columns. From SQLite, one row:
/// a JSON array of arrays. The SQLite driver hands rows over one at a time, each a hop between
/// threads, which costs more than the query on a large store; one aggregated value is a single
/// hop (2x faster at 100,000 memberships). PostgreSQL streams rows cheaply and builds JSON
/// slowly, so it returns rows.
pub(crate) async fn fetch_all<T>(
    conn: &mut AnyConnection,
    backend: Backend,
    columns: &str,
    from: &str,
) -> Result<Vec<T>, sqlx::Error>
where
    T: serde::de::DeserializeOwned + for<'r> sqlx::FromRow<'r, sqlx::any::AnyRow> + Send + Unpin,
{
    match backend {
        Backend::Sqlite => {
            let json: String = sqlx::query(&format!(
                "SELECT json_group_array(json_array({columns})) {from}"
            ))
            .fetch_one(&mut *conn)
            .await?
            .get(0);
            serde_json::from_str(&json).map_err(|e| sqlx::Error::Decode(Box::new(e)))
        }
        Backend::Postgres => {
            sqlx::query_as(&format!("SELECT {columns} {from}"))
                .fetch_all(&mut *conn)
                .await
        }
    }
}

/// The users by email.
pub(crate) async fn load_users(
    conn: &mut AnyConnection,
) -> Result<HashMap<String, String>, sqlx::Error> {
    Ok(sqlx::query("SELECT email, id FROM users")
        .fetch_all(&mut *conn)
        .await?
        .into_iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect())
}

/// How many values one `IN (…)` list of a query names.
pub(crate) const VALUES_PER_LIST: usize = 500;

/// The users by email, read from the store as a plan's execution needs them: those a run of
/// new memberships names, or all of them the first time another change needs them. A plan of a
/// few new memberships then reads a few users, not the whole table.
#[derive(Default)]
pub(crate) struct Users {
    by_email: HashMap<String, String>,
    complete: bool,
}

impl Users {
    /// Every user.
    pub(crate) async fn all(
        &mut self,
        conn: &mut AnyConnection,
    ) -> Result<&mut HashMap<String, String>, sqlx::Error> {
        if !self.complete {
            self.reload(conn).await?;
        }
        Ok(&mut self.by_email)
    }

    /// At least the users of `emails` that exist.
    pub(crate) async fn some(
        &mut self,
        conn: &mut AnyConnection,
        backend: Backend,
        emails: impl IntoIterator<Item = &str>,
    ) -> Result<&mut HashMap<String, String>, sqlx::Error> {
        if !self.complete {
            let missing: Vec<&str> = emails
                .into_iter()
                .filter(|e| !self.by_email.contains_key(*e))
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect();
            for chunk in missing.chunks(VALUES_PER_LIST) {
                let sql = format!(
                    "SELECT email, id FROM users WHERE email IN ({})",
                    parameters(backend, 1, chunk.len())
                );
                let mut query = sqlx::query(&sql);
                for email in chunk {
                    query = query.bind(*email);
                }
                for r in query.fetch_all(&mut *conn).await? {
                    self.by_email.insert(r.get(0), r.get(1));
                }
            }
        }
        Ok(&mut self.by_email)
    }

    /// Reads every user again (what a rolled-back statement created is gone).
    pub(crate) async fn reload(&mut self, conn: &mut AnyConnection) -> Result<(), sqlx::Error> {
        self.by_email = load_users(conn).await?;
        self.complete = true;
        Ok(())
    }
}

/// The change that removes a managed row no longer desired, or only lets go of it when its
/// deletion policy is `Orphan`.
pub(crate) fn removal(
    table: Table,
    id: &str,
    source: &Option<String>,
    policy: &str,
    target: String,
) -> Change {
    let orphan = policy == "Orphan";
    let id = id.to_owned();
    Change::new(
        if orphan {
            Action::Orphan
        } else {
            Action::Delete
        },
        table.kind(),
        target,
        vec![],
        source.clone(),
        if orphan {
            Op::OrphanRow { table, id }
        } else {
            Op::DeleteRow { table, id }
        },
    )
}

/// Sets one row's deletion policy.
pub(crate) async fn set_policy(
    conn: &mut AnyConnection,
    table: Table,
    id: &str,
    policy: &str,
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(&format!(
        "UPDATE {} SET deletion_policy = $2, updated_at = $3 WHERE id = $1",
        table.name()
    ))
    .bind(id)
    .bind(policy)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Removes one row; the database cascades to what depends on it.
pub(crate) async fn delete(
    conn: &mut AnyConnection,
    table: Table,
    id: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(&format!("DELETE FROM {} WHERE id = $1", table.name()))
        .bind(id)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Leaves one row in place, no longer managed and belonging to no source; its policy says
/// `Orphan`, which is what left it.
pub(crate) async fn orphan(
    conn: &mut AnyConnection,
    table: Table,
    id: &str,
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(&format!(
        "UPDATE {} SET managed = 0, source_uid = NULL, deletion_policy = 'Orphan', updated_at = $2 WHERE id = $1",
        table.name()
    ))
    .bind(id)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    Ok(())
}
