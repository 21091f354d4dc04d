//! [`SqlStore`]: the [`Store`] on sqlx's `Any` driver, for SQLite and PostgreSQL alike. Opening
//! (a probe connection first, then the pool), the write lock and the transaction of an apply,
//! and the client-side deadline every apply and index read runs within.

use std::time::Duration;

use sqlx::AnyPool;
use sqlx::any::AnyPoolOptions;

use super::access::{AccessEntry, ProjectInfo, ResourceInfo};
use super::claim::Writer;
use super::contract::Store;
use super::desired::Desired;
use super::dsn::{Backend, Dsn};
use super::error::StoreError;
use super::plan::{ApplyOptions, Plan, PlanError};
use super::read::{EffectiveMember, MemberInfo, OrgInfo, OwnedInfo, StoreIndex, TreeRoot};
use super::{access, apply, migrate, read};

/// Runs a backend's per-connection setup statements.
async fn set_up(conn: &mut sqlx::AnyConnection, setup: &str) -> Result<(), sqlx::Error> {
    use sqlx::Executor;
    for statement in setup.split(';').map(str::trim).filter(|s| !s.is_empty()) {
        conn.execute(statement).await?;
    }
    Ok(())
}

/// Changes in one apply from which the planner's statistics are refreshed.
const ANALYZE_AFTER: usize = 1000;

/// How long opening a connection may take: a database that does not answer at all (packets
/// dropped) would otherwise hold the caller for the operating system's TCP timeout, minutes.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long one apply or index read may take, client side, by default: server-side timeouts
/// (PostgreSQL's `statement_timeout`, `lock_timeout`) cannot fire when the server is gone.
const DEADLINE: Duration = Duration::from_secs(120);

/// The [`Store`] on SQLite or PostgreSQL.
pub struct SqlStore {
    pool: AnyPool,
    dsn: Dsn,
    deadline: Duration,
    /// Who writes, checked against the store's claim on every apply ([`super::claim`]);
    /// `None` checks nothing.
    writer: Option<Writer>,
    /// The SQLite file opened, to tell when its path no longer leads to it.
    file: Option<FileId>,
}

/// A file as the operating system knows it (device and inode): the same path may lead to
/// another file once the first is removed or replaced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct FileId {
    device: u64,
    inode: u64,
}

impl FileId {
    /// The file at `path` now; `None` when there is none (or no way to tell files apart).
    fn at(path: &str) -> Option<FileId> {
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            std::fs::metadata(path).ok().map(|m| FileId {
                device: m.dev(),
                inode: m.ino(),
            })
        }
        #[cfg(not(unix))]
        {
            let _ = path;
            None
        }
    }
}

impl SqlStore {
    /// Opens (creating a SQLite file when needed) and migrates the store at `dsn`.
    pub async fn open(dsn: &str) -> Result<Self, StoreError> {
        let mut store = Self::connect(Dsn::parse(dsn)?).await?;
        migrate::run(&store.pool, &store.dsn).await?;
        store.file = store.dsn.sqlite_path().and_then(FileId::at);
        Ok(store)
    }

    /// How the SQLite file this store opened left its path, when it did: removed, or replaced
    /// by another file (a backup moved into place). The connections open still write the file
    /// they opened, which no one else reads any more: the store must be opened again.
    pub fn file_left(&self) -> Option<String> {
        let (opened, path) = (self.file?, self.dsn.sqlite_path()?);
        match FileId::at(path) {
            Some(now) if now == opened => None,
            Some(_) => Some(format!("{path} was replaced by another file")),
            None => Some(format!("{path} was removed")),
        }
    }

    /// Opens the store at `dsn` for reading only: nothing is created or migrated, and the
    /// connections refuse writes, so a read-only file or a replica is enough. A store whose
    /// schema is not this binary's is refused with what to do.
    pub async fn open_read_only(dsn: &str) -> Result<Self, StoreError> {
        let dsn = Dsn::parse(dsn)?.read_only();
        if let Some(path) = dsn.sqlite_path()
            && !std::path::Path::new(path).exists()
        {
            return Err(StoreError::InvalidDsn(format!(
                "{dsn}: there is no store at {path} (suborg apply creates one)"
            )));
        }
        let fallback = dsn.immutable();
        let opened = async |dsn: Dsn| -> Result<(Self, i64), StoreError> {
            let store = Self::connect(dsn).await?;
            let version = migrate::current(&store.pool, &store.dsn).await?;
            Ok((store, version))
        };
        let (store, version) = match (opened(dsn).await, fallback) {
            (Ok(opened), _) => opened,
            // A store in a read-only directory (a backup, a read-only volume): SQLite cannot
            // make the shared-memory file of a WAL database there. Read it as it is.
            (Err(e), Some(immutable)) if e.to_string().contains("readonly") => {
                opened(immutable).await.map_err(|_| e)?
            }
            (Err(e), _) => return Err(e),
        };
        if version > migrate::latest() {
            return Err(StoreError::SchemaTooNew {
                dsn: store.dsn.to_string(),
                found: version,
                known: migrate::latest(),
            });
        }
        if version < migrate::latest() {
            return Err(StoreError::InvalidDsn(format!(
                "{}: the store's schema is version {version}, older than this suborg's {}: a writing command (suborg apply, or the controller) migrates it first",
                store.dsn,
                migrate::latest()
            )));
        }
        Ok(store)
    }

    async fn connect(dsn: Dsn) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        // One direct connection first, set up as the pool's will be: a refused, wrong or
        // corrupt database fails now, with the driver's reason, instead of after the pool's
        // retries time out.
        let setup = dsn.connection_setup();
        let unavailable = |source| StoreError::Unavailable {
            dsn: dsn.to_string(),
            source,
        };
        let probe = async {
            use sqlx::Connection;
            let mut probe = sqlx::AnyConnection::connect(dsn.connect_url()).await?;
            set_up(&mut probe, setup).await?;
            let _ = probe.close().await;
            Ok(())
        };
        match tokio::time::timeout(CONNECT_TIMEOUT, probe).await {
            Ok(r) => r.map_err(unavailable)?,
            Err(_) => {
                return Err(unavailable(sqlx::Error::Io(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("no answer within {}s", CONNECT_TIMEOUT.as_secs()),
                ))));
            }
        }
        let pool = AnyPoolOptions::new()
            .max_connections(dsn.max_connections())
            .acquire_timeout(CONNECT_TIMEOUT)
            .after_connect(move |conn, _| Box::pin(set_up(conn, setup)))
            .connect(dsn.connect_url())
            .await
            .map_err(|source| StoreError::Unavailable {
                dsn: dsn.to_string(),
                source,
            })?;
        Ok(Self {
            pool,
            dsn,
            deadline: DEADLINE,
            writer: None,
            file: None,
        })
    }

    /// Writes as `writer`: every apply first checks (and for a controller, takes) the
    /// store's claim, so two controllers never prune each other's rows.
    pub fn writing_as(mut self, writer: Writer) -> Self {
        self.writer = Some(writer);
        self
    }

    /// Gives each apply and index read at most `deadline` (120 s unless set), after which it
    /// fails with [`StoreError::TimedOut`] and its transaction is rolled back.
    pub fn with_deadline(mut self, deadline: Duration) -> Self {
        self.deadline = deadline;
        self
    }

    /// Runs `f` within the deadline.
    async fn within<T>(
        &self,
        f: impl std::future::Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        tokio::time::timeout(self.deadline, f)
            .await
            .unwrap_or_else(|_| {
                Err(StoreError::TimedOut {
                    dsn: self.dsn.to_string(),
                    after: self.deadline,
                })
            })
    }

    /// The pool, for tests that must write around the Rust API.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// The DSN, password removed.
    pub fn dsn(&self) -> &Dsn {
        &self.dsn
    }

    /// Closes every connection.
    pub async fn close(self) {
        self.close_shared().await;
    }

    /// [`SqlStore::close`] for a store others may still hold: what they run afterwards fails
    /// as on a closed pool.
    pub async fn close_shared(&self) {
        // SQLite: everything in the write-ahead log goes into the database file, so the file
        // alone is the whole store (a copy, a backup, a read-only mount). Best effort: a
        // reader, or a writer another process keeps busy, leaves it to the next.
        if self.dsn.backend == Backend::Sqlite && !self.dsn.is_read_only() {
            let _ = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
                .execute(&self.pool)
                .await;
        }
        self.pool.close().await;
    }

    /// One apply: the write lock first, then the plan, so two writers never plan from the same
    /// state. The transaction is sqlx's: when this future is dropped half-way (the deadline,
    /// a cancelled caller), the connection rolls it back before it is used again, so no
    /// connection goes back to the pool inside a transaction or holding the advisory lock.
    async fn apply_now(
        &self,
        desired: &Desired,
        before: Option<&Desired>,
        options: ApplyOptions,
    ) -> Result<Plan, StoreError> {
        use sqlx::Acquire;
        let mut tx = self
            .pool
            .begin_with(self.dsn.backend.begin_write())
            .await
            .map_err(self.query_error())?;
        if self.dsn.backend == Backend::Postgres {
            sqlx::query("SELECT pg_advisory_xact_lock(7364016153)")
                .execute(&mut *tx)
                .await
                .map_err(self.query_error())?;
        }
        if let Some(writer) = &self.writer {
            let now = k8s_openapi::jiff::Timestamp::now().as_millisecond();
            let conn = tx.acquire().await.map_err(self.query_error())?;
            if let Err(e) = super::claim::check(conn, writer, now, self.query_error()).await {
                let _ = tx.rollback().await;
                return Err(e);
            }
        }
        let result = async {
            let conn = tx.acquire().await?;
            let mut plan = apply::compute(conn, desired, before, options, self.dsn.backend).await?;
            apply::execute(conn, &plan, self.dsn.backend).await?;
            apply::settle_orphans(conn, &mut plan, self.dsn.backend).await?;
            Ok::<_, PlanError>(plan)
        }
        .await;
        let plan = match result {
            Ok(plan) => plan,
            Err(e) => {
                // Nothing half-written: the transaction goes, whatever failed.
                let _ = tx.rollback().await;
                return Err(e.with_dsn(&self.dsn));
            }
        };
        tx.commit().await.map_err(self.query_error())?;
        // After a bulk change the planner's statistics describe another store: refresh them,
        // or lookups by user may scan whole tables until autovacuum (PostgreSQL) or never
        // (SQLite) catches up. Best effort: the data is committed either way.
        if plan.changes.len() >= ANALYZE_AFTER
            && let Err(e) = sqlx::query("ANALYZE").execute(&self.pool).await
        {
            tracing::warn!(error = %e, "refreshing the planner's statistics failed");
        }
        Ok(plan)
    }

    /// [`Store::apply`], given `before`, the desired state the last apply on this store
    /// wrote: only the memberships that changed since are read and planned (see
    /// [`apply::compute`]). For a writer that is the store's only one; a plan without `before`
    /// now and then corrects what was written around it.
    pub async fn apply_after(
        &self,
        desired: &Desired,
        before: Option<&Desired>,
        options: ApplyOptions,
    ) -> Result<Plan, StoreError> {
        self.within(self.apply_now(desired, before, options)).await
    }

    /// When each managed source's rows were first written (its earliest row's `created_at`,
    /// in milliseconds), by source key: offline, what stands for an object's creation time.
    pub async fn first_written(
        &self,
    ) -> Result<std::collections::HashMap<String, i64>, StoreError> {
        read::first_written(&self.pool)
            .await
            .map_err(self.query_error())
    }

    /// The index after a write that changed the rows of `sources`, from the index `before` it:
    /// what [`Store::index`] would return, reading again only the organizations, groups and
    /// projects and the rows of `sources`; no read at all when nothing changed. `None` when the
    /// store holds fewer rows than that accounts for: rows went around the write (another
    /// writer), and only [`Store::index`] will do.
    pub async fn index_after(
        &self,
        before: &StoreIndex,
        sources: &std::collections::HashSet<&str>,
    ) -> Result<Option<StoreIndex>, StoreError> {
        if sources.is_empty() {
            return Ok(Some(before.clone()));
        }
        self.within(async {
            read::index_after(&self.pool, self.dsn.backend, before, sources)
                .await
                .map_err(self.query_error())
        })
        .await
    }

    fn query_error(&self) -> impl Fn(sqlx::Error) -> StoreError + '_ {
        |source| StoreError::Query {
            dsn: self.dsn.to_string(),
            source,
        }
    }
}

impl Store for SqlStore {
    async fn plan(&self, desired: &Desired, options: ApplyOptions) -> Result<Plan, StoreError> {
        let mut conn = self.pool.acquire().await.map_err(self.query_error())?;
        apply::compute(&mut conn, desired, None, options, self.dsn.backend)
            .await
            .map_err(|e| e.with_dsn(&self.dsn))
    }

    async fn apply(&self, desired: &Desired, options: ApplyOptions) -> Result<Plan, StoreError> {
        self.within(self.apply_now(desired, None, options)).await
    }

    async fn organizations(&self) -> Result<Vec<OrgInfo>, StoreError> {
        read::organizations(&self.pool)
            .await
            .map_err(self.query_error())
    }

    async fn index(&self) -> Result<StoreIndex, StoreError> {
        self.within(async { read::index(&self.pool).await.map_err(self.query_error()) })
            .await
    }

    async fn projects(&self, org_id: &str) -> Result<Vec<ProjectInfo>, StoreError> {
        access::projects(&self.pool, org_id)
            .await
            .map_err(self.query_error())
    }

    async fn resources(&self, org_id: &str) -> Result<Vec<ResourceInfo>, StoreError> {
        access::resources(&self.pool, org_id)
            .await
            .map_err(self.query_error())
    }

    async fn access(&self, email: &str) -> Result<Option<Vec<AccessEntry>>, StoreError> {
        access::access(
            &self.pool,
            self.dsn.backend,
            email,
            k8s_openapi::jiff::Timestamp::now(),
        )
        .await
        .map_err(self.query_error())
    }

    async fn owned(&self, org_id: &str) -> Result<Vec<OwnedInfo>, StoreError> {
        read::owned(&self.pool, org_id)
            .await
            .map_err(self.query_error())
    }

    async fn effective_members(&self, org_id: &str) -> Result<Vec<EffectiveMember>, StoreError> {
        read::effective_members(&self.pool, org_id)
            .await
            .map_err(self.query_error())
    }

    async fn members(&self, org_id: &str) -> Result<Vec<MemberInfo>, StoreError> {
        read::members(&self.pool, org_id)
            .await
            .map_err(self.query_error())
    }

    async fn tree(&self) -> Result<Vec<TreeRoot>, StoreError> {
        read::tree(&self.pool).await.map_err(self.query_error())
    }
}
