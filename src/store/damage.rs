//! Rows that break an invariant the database could not enforce when they were written: rows
//! written around suborg on SQLite with foreign keys off (SQLite's per-connection default), or
//! slugs and display names the API would refuse, written before migration 4 made the database
//! check them (its checks guard new writes only, so an old store still upgrades). suborg never
//! writes such rows; `get` reports them so a damaged store does not pass for a valid one.
//! Slugs are checked against the API's own pattern: a copy here could drift from what
//! admission enforces.

use sqlx::Row;

use super::dsn::Backend;
use super::error::StoreError;
use super::sql_store::SqlStore;

/// Tables with a slug.
const SLUGGED: &[&str] = &["organizations", "projects"];
/// Tables with a display name.
const NAMED: &[&str] = &[
    "organizations",
    "groups",
    "machine_identities",
    "org_resources",
    "projects",
];

impl SqlStore {
    /// What is wrong with the store's rows, one line each (empty when nothing is).
    pub async fn damage(&self) -> Result<Vec<String>, StoreError> {
        let query = |source| StoreError::Query {
            dsn: self.dsn().to_string(),
            source,
        };
        let mut found = Vec::new();
        let backend = self.dsn().backend;
        if backend == Backend::Sqlite {
            // PostgreSQL always enforces its foreign keys; SQLite only on connections that ask.
            let rows = sqlx::query("PRAGMA foreign_key_check")
                .fetch_all(self.pool())
                .await
                .map_err(query)?;
            let mut counts: std::collections::BTreeMap<(String, String), usize> =
                std::collections::BTreeMap::new();
            for r in rows {
                let table: String = r.try_get(0).map_err(query)?;
                let parent: String = r.try_get(2).map_err(query)?;
                *counts.entry((table, parent)).or_default() += 1;
            }
            for ((table, parent), n) in counts {
                found.push(format!(
                    "{n} row(s) of {table} point at rows of {parent} that do not exist (written with foreign keys off)"
                ));
            }
        }
        for table in SLUGGED {
            let sql = match backend {
                Backend::Sqlite => format!(
                    "SELECT slug FROM {table} WHERE length(slug) NOT BETWEEN 1 AND 64 OR slug GLOB '*[^a-z0-9-]*' ORDER BY slug"
                ),
                // The API's own pattern; the length as the schema bounds it.
                Backend::Postgres => format!(
                    "SELECT slug FROM {table} WHERE length(slug) NOT BETWEEN 1 AND 64 OR slug !~ '{}' ORDER BY slug",
                    crate::api::SLUG_PATTERN
                ),
            };
            for slug in self.first_column(&sql).await? {
                found.push(format!(
                    "{table}: slug {slug:?} is not 1-64 lowercase letters, digits and '-'"
                ));
            }
        }
        // The schema's own keys, for a database whose constraints were dropped by hand.
        for slug in self
            .first_column(
                "SELECT o.slug FROM organizations o JOIN organizations p ON p.id = o.parent_id WHERE p.depth <> 0 OR p.parent_id IS NOT NULL ORDER BY o.slug",
            )
            .await?
        {
            found.push(format!(
                "organizations: {slug:?} has a sub-organization as its parent (one level of nesting only)"
            ));
        }
        for (table, parent) in [
            ("organizations", "parent_key"),
            ("projects", "organization_id"),
        ] {
            let sql = format!(
                "SELECT slug FROM {table} GROUP BY {parent}, slug HAVING count(*) > 1 ORDER BY slug"
            );
            for slug in self.first_column(&sql).await? {
                found.push(format!(
                    "{table}: slug {slug:?} is held by more than one row under one parent (slugs are unique there)"
                ));
            }
        }
        for table in NAMED {
            let sql = format!(
                "SELECT display_name FROM {table} WHERE display_name <> trim(display_name) ORDER BY display_name"
            );
            for name in self.first_column(&sql).await? {
                found.push(format!(
                    "{table}: display name {name:?} starts or ends with a space"
                ));
            }
        }
        Ok(found)
    }

    /// The first column of every row `sql` returns, as text.
    async fn first_column(&self, sql: &str) -> Result<Vec<String>, StoreError> {
        let query = |source| StoreError::Query {
            dsn: self.dsn().to_string(),
            source,
        };
        sqlx::query(sql)
            .fetch_all(self.pool())
            .await
            .map_err(query)?
            .iter()
            .map(|r| r.try_get(0).map_err(query))
            .collect()
    }
}
