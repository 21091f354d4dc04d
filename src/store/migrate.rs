//! Schema migrations, embedded in the binary and applied in order, each once, in a transaction
//! under the write lock. A database whose schema is newer than the binary is refused: running
//! an old binary against it could write rows the newer schema does not expect.

use sqlx::{Acquire, AnyPool};

use super::dsn::{Backend, Dsn};
use super::error::StoreError;

/// The SQL of one migration: one text for both backends, or one each where their dialects
/// differ (SQLite cannot add a constraint to an existing table; PostgreSQL has no `RAISE` in a
/// trigger body).
enum Sql {
    Both(&'static str),
    Each {
        sqlite: &'static str,
        postgres: &'static str,
    },
}

impl Sql {
    fn for_backend(&self, backend: Backend) -> &'static str {
        match (self, backend) {
            (Sql::Both(sql), _) => sql,
            (Sql::Each { sqlite, .. }, Backend::Sqlite) => sqlite,
            (Sql::Each { postgres, .. }, Backend::Postgres) => postgres,
        }
    }
}

/// `(version, description, SQL)`, oldest first. Never edit one that has shipped: add another.
const MIGRATIONS: &[(i64, &str, Sql)] = &[
    (
        1,
        "organizations, users, memberships",
        Sql::Both(include_str!("migrations/0001_organizations.sql")),
    ),
    (
        2,
        "groups, machine identities, group members, subject memberships",
        Sql::Both(include_str!("migrations/0002_groups.sql")),
    ),
    (
        3,
        "app connections, gateways, relays, projects, project memberships",
        Sql::Both(include_str!("migrations/0003_projects.sql")),
    ),
    (
        4,
        "slug format and trimmed display names enforced by the database",
        Sql::Each {
            sqlite: include_str!("migrations/0004_field_rules.sqlite.sql"),
            postgres: include_str!("migrations/0004_field_rules.postgres.sql"),
        },
    ),
    (
        5,
        "users leave with their last membership",
        Sql::Both(include_str!("migrations/0005_users_index.sql")),
    ),
    (
        6,
        "one controller writes a store",
        Sql::Both(include_str!("migrations/0006_claim.sql")),
    ),
];

/// The newest schema version this binary knows.
pub fn latest() -> i64 {
    MIGRATIONS.last().map_or(0, |m| m.0)
}

/// The schema version of the store (0 for a database suborg never wrote), read without
/// writing.
pub async fn current(pool: &AnyPool, dsn: &Dsn) -> Result<i64, StoreError> {
    let version: Result<Option<i64>, sqlx::Error> =
        sqlx::query_scalar("SELECT MAX(version) FROM suborg_schema")
            .fetch_one(pool)
            .await;
    match version {
        Ok(v) => Ok(v.unwrap_or(0)),
        Err(sqlx::Error::Database(e)) if e.message().contains("suborg_schema") => Ok(0),
        Err(source) => Err(StoreError::Unavailable {
            dsn: dsn.to_string(),
            source,
        }),
    }
}

/// Brings the schema up to date.
pub async fn run(pool: &AnyPool, dsn: &Dsn) -> Result<(), StoreError> {
    let unavailable = |source| StoreError::Unavailable {
        dsn: dsn.to_string(),
        source,
    };
    // sqlx's transaction: dropped half-way, it is rolled back before the connection is used
    // again.
    let mut tx = pool
        .begin_with(dsn.backend.begin_write())
        .await
        .map_err(unavailable)?;
    let result = async {
        let conn = tx.acquire().await?;
        if dsn.backend == Backend::Postgres {
            sqlx::query("SELECT pg_advisory_xact_lock(7364016152)").execute(&mut *conn).await?;
        }
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS suborg_schema (version BIGINT PRIMARY KEY, description TEXT NOT NULL, applied_at BIGINT NOT NULL)",
        )
        .execute(&mut *conn)
        .await?;
        let current: Option<i64> =
            sqlx::query_scalar("SELECT MAX(version) FROM suborg_schema").fetch_one(&mut *conn).await?;
        let current = current.unwrap_or(0);
        if current > latest() {
            return Ok(Err(current));
        }
        // Collected first: an iterator adapter's closure held across an await makes the future
        // impossible to prove Send.
        let pending: Vec<usize> = (0..MIGRATIONS.len())
            .filter(|&i| MIGRATIONS[i].0 > current)
            .collect();
        for i in pending {
            let (version, description, ref sql) = MIGRATIONS[i];
            {
                use sqlx::Executor;
                (&mut *conn).execute(sqlx::raw_sql(sql.for_backend(dsn.backend))).await?;
            }
            sqlx::query("INSERT INTO suborg_schema (version, description, applied_at) VALUES ($1, $2, $3)")
                .bind(version)
                .bind(description)
                .bind(super::plan::now_millis())
                .execute(&mut *conn)
                .await?;
        }
        Ok::<_, sqlx::Error>(Ok(()))
    }
    .await;
    match result {
        Ok(Ok(())) => tx.commit().await.map_err(unavailable),
        Ok(Err(found)) => {
            let _ = tx.rollback().await;
            Err(StoreError::SchemaTooNew {
                dsn: dsn.to_string(),
                found,
                known: latest(),
            })
        }
        Err(source) => {
            let _ = tx.rollback().await;
            Err(unavailable(source))
        }
    }
}
