//! The backing store: organizations, users and memberships, in SQLite (embedded, the default)
//! or PostgreSQL (production).
//!
//! Both backends share one schema and one set of migrations written in portable SQL, and one
//! implementation of [`Store`] on sqlx's `Any` driver: what differs is only how a connection is
//! opened and how a writer takes the write lock. Every domain invariant is also a constraint in
//! the schema (see `migrations/`), so a bug above the database cannot corrupt it.
//!
//! Writes are plans: [`SqlStore::plan`] compares the desired state with the rows suborg manages
//! and lists what to create, update and delete; [`SqlStore::apply`] carries the plan out in one
//! transaction under the write lock. A plan with nothing in it touches no row.

mod access;
mod damage;
mod desired;
mod dsn;
mod migrate;
mod owned;
mod plan;
mod projects;

pub use access::{AccessEntry, ProjectInfo, ResourceInfo};
pub use desired::{
    Desired, DesiredGroup, DesiredGroupMember, DesiredMembership, DesiredOrg, DesiredOwned,
    DesiredProject, DesiredProjectMembership, DesiredResource, DesiredSubjectMembership,
    ProjectSubject, desired_from,
};
pub use dsn::{Backend, Dsn};

pub use plan::{Action, Change, Plan};

use std::time::Duration;

use sqlx::any::AnyPoolOptions;
use sqlx::{AnyPool, Row};

/// What can go wrong with the store. Messages never carry a password.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The DSN could not be understood.
    #[error("invalid store {0}")]
    InvalidDsn(String),
    /// The database could not be reached or opened.
    #[error("cannot open store {dsn}: {source}")]
    Unavailable {
        /// The DSN, password removed.
        dsn: String,
        /// The driver's error.
        #[source]
        source: sqlx::Error,
    },
    /// The database holds a schema newer than this binary knows.
    #[error(
        "store {dsn} has schema version {found}, newer than the {known} this suborg knows: upgrade suborg"
    )]
    SchemaTooNew {
        /// The DSN, password removed.
        dsn: String,
        /// Version in the database.
        found: i64,
        /// Newest version this binary has.
        known: i64,
    },
    /// The desired state cannot be applied as a whole.
    #[error("{0}")]
    Conflict(String),
    /// One object's rows cannot be written: a row with its slug exists that suborg did not
    /// create, or the object would move a row to another parent.
    #[error("{message}")]
    SourceConflict {
        /// The source (Kubernetes object uid) at fault.
        uid: String,
        /// What is wrong and what to do.
        message: String,
    },
    /// The store did not answer in time (a database that stopped responding, a lock held
    /// elsewhere); whatever the transaction had written was rolled back.
    #[error(
        "store {dsn} did not answer within {}s; nothing was written, the transaction was rolled back",
        after.as_secs()
    )]
    TimedOut {
        /// The DSN, password removed.
        dsn: String,
        /// How long it was given.
        after: std::time::Duration,
    },
    /// A query failed.
    #[error("store {dsn}: {source}")]
    Query {
        /// The DSN, password removed.
        dsn: String,
        /// The driver's error.
        #[source]
        source: sqlx::Error,
    },
}

/// Options of [`SqlStore::apply`].
#[derive(Debug, Clone, Copy, Default)]
pub struct ApplyOptions {
    /// Delete managed rows that are no longer desired.
    pub prune: bool,
    /// Take over rows with a desired slug that suborg did not create, instead of refusing.
    pub adopt: bool,
}

/// One root organization as [`SqlStore::tree`] shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TreeRoot {
    /// Slug of the root.
    pub slug: String,
    /// Display name.
    pub display_name: String,
    /// Members of the root.
    pub members: i64,
    /// Sub-organizations, by slug.
    pub sub_organizations: Vec<TreeSub>,
}

/// One sub-organization in a [`TreeRoot`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TreeSub {
    /// Slug.
    pub slug: String,
    /// Display name.
    pub display_name: String,
    /// Members of the sub-organization (only those added to it).
    pub members: i64,
}

/// One organization as [`Store::organizations`] lists it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OrgInfo {
    /// Store id.
    pub id: String,
    /// Slug.
    pub slug: String,
    /// Display name.
    pub display_name: String,
    /// Slug of the parent, for a sub-organization.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    /// Members added to this organization.
    pub members: i64,
    /// Sub-organizations, for a root.
    pub sub_organizations: i64,
    /// Whether suborg manages the row.
    pub managed: bool,
}

/// One membership as [`Store::members`] lists it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MemberInfo {
    /// The user's email.
    pub email: String,
    /// The roles, with their temporary bounds.
    pub roles: serde_json::Value,
}

/// A group or machine identity as [`Store::owned`] lists it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OwnedInfo {
    /// `Group` or `MachineIdentity`.
    pub kind: &'static str,
    /// `namespace/name` of its Kubernetes object.
    pub name: String,
    /// Display name.
    pub display_name: String,
    /// Slug of the organization that owns it (`ROOT` or `ROOT/SUB`).
    pub owner: String,
    /// For a group: users listed directly.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub users: Option<i64>,
    /// For a group: groups nested directly.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nested_groups: Option<i64>,
}

/// A user with access to an organization, and through what.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EffectiveMember {
    /// The user's email.
    pub email: String,
    /// `membership`, or the groups (`namespace/name`) that bring the user in.
    pub via: Vec<String>,
}

/// Where each source's rows are, for status: what [`Store::index`] returns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoreIndex {
    /// Managed organizations by source uid.
    pub organizations: std::collections::HashMap<String, OrgEntry>,
    /// Managed memberships (of users, and of groups and identities added to a
    /// sub-organization) by source uid: (row id, organization id).
    pub memberships: std::collections::HashMap<String, (String, String)>,
    /// Managed groups by source uid: (row id, users listed directly).
    pub groups: std::collections::HashMap<String, (String, i64)>,
    /// Managed machine identities by source uid: row id.
    pub identities: std::collections::HashMap<String, String>,
    /// Managed app connections, gateways and relays by source uid: row id.
    pub resources: std::collections::HashMap<String, String>,
    /// Managed projects by source uid: (row id, slug, project memberships).
    pub projects: std::collections::HashMap<String, (String, String, i64)>,
    /// Managed project memberships by source uid: (row id, project id).
    pub project_memberships: std::collections::HashMap<String, (String, String)>,
}

/// One organization row, as [`StoreIndex`] holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrgEntry {
    /// Row id.
    pub id: String,
    /// Slug in the store.
    pub slug: String,
    /// Id of the root (itself for a root).
    pub root_id: String,
    /// Members added to this organization.
    pub members: i64,
    /// Sub-organizations, for a root.
    pub sub_organizations: i64,
}

/// The operations the controller and the CLI need from a store.
pub trait Store {
    /// What applying `desired` would change.
    fn plan(
        &self,
        desired: &Desired,
        options: ApplyOptions,
    ) -> impl Future<Output = Result<Plan, StoreError>> + Send;
    /// Makes the store match `desired` in one transaction and returns what changed.
    fn apply(
        &self,
        desired: &Desired,
        options: ApplyOptions,
    ) -> impl Future<Output = Result<Plan, StoreError>> + Send;
    /// Every root with its sub-organizations and member counts.
    fn tree(&self) -> impl Future<Output = Result<Vec<TreeRoot>, StoreError>> + Send;
    /// Every organization, roots first.
    fn organizations(&self) -> impl Future<Output = Result<Vec<OrgInfo>, StoreError>> + Send;
    /// The members added to one organization (for a root, its own members only: what was
    /// added inside a sub-organization is visible there alone).
    fn members(
        &self,
        org_id: &str,
    ) -> impl Future<Output = Result<Vec<MemberInfo>, StoreError>> + Send;
    /// The managed rows by source, with their ids and counts.
    fn index(&self) -> impl Future<Output = Result<StoreIndex, StoreError>> + Send;
    /// The groups and machine identities usable in one organization: its own, and for a
    /// sub-organization the root's that were added to it. A root's list leaves out what its
    /// sub-organizations created.
    fn owned(
        &self,
        org_id: &str,
    ) -> impl Future<Output = Result<Vec<OwnedInfo>, StoreError>> + Send;
    /// Every user with access to one organization: its members, and the users of the groups
    /// usable there (nested groups followed, each edge once).
    fn effective_members(
        &self,
        org_id: &str,
    ) -> impl Future<Output = Result<Vec<EffectiveMember>, StoreError>> + Send;
    /// The projects of one organization: its own only (a root does not see its
    /// sub-organizations' projects, nor they the root's).
    fn projects(
        &self,
        org_id: &str,
    ) -> impl Future<Output = Result<Vec<ProjectInfo>, StoreError>> + Send;
    /// The app connections, gateways and relays of one organization: its own only.
    fn resources(
        &self,
        org_id: &str,
    ) -> impl Future<Output = Result<Vec<ResourceInfo>, StoreError>> + Send;
    /// Every organization and project the user `email` can reach now, and through what;
    /// `None` when the store has no such user.
    fn access(
        &self,
        email: &str,
    ) -> impl Future<Output = Result<Option<Vec<AccessEntry>>, StoreError>> + Send;
}

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
}

impl SqlStore {
    /// Opens (creating a SQLite file when needed) and migrates the store at `dsn`.
    pub async fn open(dsn: &str) -> Result<Self, StoreError> {
        let store = Self::connect(Dsn::parse(dsn)?).await?;
        migrate::run(&store.pool, &store.dsn).await?;
        Ok(store)
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
        let store = Self::connect(dsn).await?;
        let version = migrate::current(&store.pool, &store.dsn).await?;
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
        })
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
        self.pool.close().await;
    }

    /// One apply: the write lock first, then the plan, so two writers never plan from the same
    /// state. The transaction is sqlx's: when this future is dropped half-way (the deadline,
    /// a cancelled caller), the connection rolls it back before it is used again, so no
    /// connection goes back to the pool inside a transaction or holding the advisory lock.
    async fn apply_now(
        &self,
        desired: &Desired,
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
        let result = async {
            let conn = tx.acquire().await?;
            let plan = plan::compute(conn, desired, options, self.dsn.backend).await?;
            plan::execute(conn, &plan, self.dsn.backend).await?;
            Ok::<_, plan::PlanError>(plan)
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
        plan::compute(&mut conn, desired, options, self.dsn.backend)
            .await
            .map_err(|e| e.with_dsn(&self.dsn))
    }

    async fn apply(&self, desired: &Desired, options: ApplyOptions) -> Result<Plan, StoreError> {
        self.within(self.apply_now(desired, options)).await
    }

    async fn organizations(&self) -> Result<Vec<OrgInfo>, StoreError> {
        let rows = sqlx::query(
            "SELECT o.id, o.slug, o.display_name, p.slug, o.managed, \
             (SELECT COUNT(*) FROM memberships m WHERE m.organization_id = o.id), \
             (SELECT COUNT(*) FROM organizations c WHERE c.parent_id = o.id) \
             FROM organizations o LEFT JOIN organizations p ON p.id = o.parent_id \
             ORDER BY o.depth, p.slug, o.slug",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(self.query_error())?;
        Ok(rows
            .into_iter()
            .map(|r| OrgInfo {
                id: r.get(0),
                slug: r.get(1),
                display_name: r.get(2),
                parent: r.get(3),
                managed: r.get::<i64, _>(4) == 1,
                members: r.get(5),
                sub_organizations: r.get(6),
            })
            .collect())
    }

    async fn index(&self) -> Result<StoreIndex, StoreError> {
        self.within(async {
            let mut index = StoreIndex::default();
            let rows = sqlx::query(
                "SELECT o.source_uid, o.id, o.slug, o.root_id, \
                 (SELECT COUNT(*) FROM memberships m WHERE m.organization_id = o.id), \
                 (SELECT COUNT(*) FROM organizations c WHERE c.parent_id = o.id) \
                 FROM organizations o WHERE o.source_uid IS NOT NULL",
            )
            .fetch_all(&self.pool)
            .await
            .map_err(self.query_error())?;
            for r in rows {
                index.organizations.insert(
                    r.get(0),
                    OrgEntry {
                        id: r.get(1),
                        slug: r.get(2),
                        root_id: r.get(3),
                        members: r.get(4),
                        sub_organizations: r.get(5),
                    },
                );
            }
            // Users' memberships and the groups and identities added to sub-organizations: both
            // come from OrgMembership objects.
            let rows = sqlx::query(
                "SELECT source_uid, id, organization_id FROM memberships WHERE source_uid IS NOT NULL \
                 UNION ALL \
                 SELECT source_uid, id, organization_id FROM subject_memberships WHERE source_uid IS NOT NULL",
            )
            .fetch_all(&self.pool)
            .await
            .map_err(self.query_error())?;
            for r in rows {
                index.memberships.insert(r.get(0), (r.get(1), r.get(2)));
            }
            let rows = sqlx::query(
                "SELECT g.source_uid, g.id, (SELECT COUNT(*) FROM group_members m WHERE m.group_id = g.id AND m.member_kind = 'User') \
                 FROM groups g WHERE g.source_uid IS NOT NULL",
            )
            .fetch_all(&self.pool)
            .await
            .map_err(self.query_error())?;
            for r in rows {
                index.groups.insert(r.get(0), (r.get(1), r.get(2)));
            }
            // Identities and connections, gateways, relays: rows with nothing but an id to report.
            let rows = sqlx::query(
                "SELECT 'identity', source_uid, id FROM machine_identities WHERE source_uid IS NOT NULL \
                 UNION ALL \
                 SELECT 'resource', source_uid, id FROM org_resources WHERE source_uid IS NOT NULL",
            )
            .fetch_all(&self.pool)
            .await
            .map_err(self.query_error())?;
            for r in rows {
                let map = if r.get::<String, _>(0) == "identity" {
                    &mut index.identities
                } else {
                    &mut index.resources
                };
                map.insert(r.get(1), r.get(2));
            }
            let rows = sqlx::query(
                "SELECT p.source_uid, p.id, p.slug, (SELECT COUNT(*) FROM project_memberships m WHERE m.project_id = p.id) \
                 FROM projects p WHERE p.source_uid IS NOT NULL",
            )
            .fetch_all(&self.pool)
            .await
            .map_err(self.query_error())?;
            for r in rows {
                index
                    .projects
                    .insert(r.get(0), (r.get(1), r.get(2), r.get(3)));
            }
            let rows = sqlx::query(
                "SELECT source_uid, id, project_id FROM project_memberships WHERE source_uid IS NOT NULL",
            )
            .fetch_all(&self.pool)
            .await
            .map_err(self.query_error())?;
            for r in rows {
                index
                    .project_memberships
                    .insert(r.get(0), (r.get(1), r.get(2)));
            }
            Ok(index)
        })
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
        let owner = "CASE WHEN p.slug IS NULL THEN o.slug ELSE p.slug || '/' || o.slug END";
        let sql = format!(
            "SELECT 'Group', g.name, g.display_name, {owner}, \
               (SELECT COUNT(*) FROM group_members m WHERE m.group_id = g.id AND m.member_kind = 'User'), \
               (SELECT COUNT(*) FROM group_members m WHERE m.group_id = g.id AND m.member_kind = 'Group') \
             FROM groups g JOIN organizations o ON o.id = g.organization_id LEFT JOIN organizations p ON p.id = o.parent_id \
             WHERE g.organization_id = $1 OR g.id IN (SELECT group_id FROM subject_memberships WHERE organization_id = $1) \
             UNION ALL \
             SELECT 'MachineIdentity', i.name, i.display_name, {owner}, NULL, NULL \
             FROM machine_identities i JOIN organizations o ON o.id = i.organization_id LEFT JOIN organizations p ON p.id = o.parent_id \
             WHERE i.organization_id = $1 OR i.id IN (SELECT identity_id FROM subject_memberships WHERE organization_id = $1)"
        );
        let rows = sqlx::query(&sql)
            .bind(org_id)
            .fetch_all(&self.pool)
            .await
            .map_err(self.query_error())?;
        let mut out: Vec<OwnedInfo> = rows
            .into_iter()
            .map(|r| OwnedInfo {
                kind: if r.get::<String, _>(0) == "Group" {
                    "Group"
                } else {
                    "MachineIdentity"
                },
                name: r.get(1),
                display_name: r.get(2),
                owner: r.get(3),
                users: r.get(4),
                nested_groups: r.get(5),
            })
            .collect();
        out.sort_by(|a, b| (a.kind, &a.name).cmp(&(b.kind, &b.name)));
        Ok(out)
    }

    async fn effective_members(&self, org_id: &str) -> Result<Vec<EffectiveMember>, StoreError> {
        use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
        let direct = self.members(org_id).await?;
        // The groups usable here and every edge below them.
        let rows = sqlx::query(
            "SELECT g.id, g.name FROM groups g WHERE g.organization_id = $1 \
             OR g.id IN (SELECT group_id FROM subject_memberships WHERE organization_id = $1)",
        )
        .bind(org_id)
        .fetch_all(&self.pool)
        .await
        .map_err(self.query_error())?;
        let usable: Vec<(String, String)> =
            rows.into_iter().map(|r| (r.get(0), r.get(1))).collect();
        let edges = sqlx::query(
            "SELECT gm.group_id, u.email, gm.member_group_id FROM group_members gm \
             LEFT JOIN users u ON u.id = gm.user_id \
             WHERE gm.organization_id = $1 OR gm.group_id IN (SELECT group_id FROM subject_memberships WHERE organization_id = $1)",
        )
        .bind(org_id)
        .fetch_all(&self.pool)
        .await
        .map_err(self.query_error())?;
        let mut users_of: HashMap<String, Vec<String>> = HashMap::new();
        let mut nested_of: HashMap<String, Vec<String>> = HashMap::new();
        for r in edges {
            let group: String = r.get(0);
            match (r.get::<Option<String>, _>(1), r.get::<Option<String>, _>(2)) {
                (Some(email), _) => users_of.entry(group).or_default().push(email),
                (None, Some(nested)) => nested_of.entry(group).or_default().push(nested),
                _ => {}
            }
        }
        let mut via: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for m in direct {
            via.entry(m.email).or_default().push("membership".into());
        }
        // One walk from every usable group at once, each group and edge visited once: linear
        // in the edges however deep the nesting. A user is shown with the groups that list them.
        let names: HashMap<&str, &str> = usable
            .iter()
            .map(|(id, name)| (id.as_str(), name.as_str()))
            .collect();
        let mut seen: HashSet<&str> = HashSet::new();
        let mut queue: VecDeque<&str> = usable.iter().map(|(id, _)| id.as_str()).collect();
        while let Some(g) = queue.pop_front() {
            if !seen.insert(g) {
                continue;
            }
            let name = names.get(g).copied().unwrap_or(g);
            for email in users_of.get(g).into_iter().flatten() {
                let list = via.entry(email.clone()).or_default();
                if !list.iter().any(|v| v == name) {
                    list.push(name.to_owned());
                }
            }
            for n in nested_of.get(g).into_iter().flatten() {
                queue.push_back(n);
            }
        }
        Ok(via
            .into_iter()
            .map(|(email, via)| EffectiveMember { email, via })
            .collect())
    }

    async fn members(&self, org_id: &str) -> Result<Vec<MemberInfo>, StoreError> {
        let rows = sqlx::query(
            "SELECT u.email, m.roles FROM memberships m JOIN users u ON u.id = m.user_id \
             WHERE m.organization_id = $1 ORDER BY u.email",
        )
        .bind(org_id)
        .fetch_all(&self.pool)
        .await
        .map_err(self.query_error())?;
        Ok(rows
            .into_iter()
            .map(|r| MemberInfo {
                email: r.get(0),
                roles: serde_json::from_str(&r.get::<String, _>(1))
                    .unwrap_or(serde_json::Value::Null),
            })
            .collect())
    }

    async fn tree(&self) -> Result<Vec<TreeRoot>, StoreError> {
        // Roots come first, and a root's slug is unique among roots, so it names the parent.
        let mut roots: Vec<TreeRoot> = Vec::new();
        let mut index: std::collections::HashMap<String, usize> = Default::default();
        for o in self.organizations().await? {
            match o.parent {
                None => {
                    index.insert(o.slug.clone(), roots.len());
                    roots.push(TreeRoot {
                        slug: o.slug,
                        display_name: o.display_name,
                        members: o.members,
                        sub_organizations: vec![],
                    });
                }
                Some(parent) => {
                    if let Some(&r) = index.get(&parent) {
                        roots[r].sub_organizations.push(TreeSub {
                            slug: o.slug,
                            display_name: o.display_name,
                            members: o.members,
                        });
                    }
                }
            }
        }
        Ok(roots)
    }
}
