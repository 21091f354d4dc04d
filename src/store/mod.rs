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
//!
//! The store's input is rows ([`Desired`]), never API objects: `crate::rows` makes them. Its
//! layers, each using only those below it:
//!
//! - `sql_store`, `read`, `access`, `damage`: the [`Store`] itself and its reads;
//! - `apply`: a whole plan, every table in the order their references need, and its execution;
//! - `tables/`: one file per table (or family written together) with its load, plan, prune
//!   and execute;
//! - `plan/`: what a plan is and the plumbing the tables share (matching stored rows to
//!   desired ones, ids, SQL helpers); `desired`, `dsn`, `migrate`.
//!
//! Two reads use the API's definitions, on purpose: `access` decodes stored roles as the API's
//! `RoleBinding` and asks `domain::temporary` which are in effect now, and `damage` checks
//! slugs against the API's pattern. Both are the definitions the controller applies; a copy
//! here could drift and let `suborg get` disagree with it.

mod access;
mod apply;
mod damage;
mod desired;
mod dsn;
mod migrate;
mod plan;
mod read;
mod sql_store;
mod tables;

pub use access::{AccessEntry, ProjectInfo, ResourceInfo};
pub(crate) use desired::{ADMIN_SOURCE, INVITE_SOURCE};
pub use desired::{
    Desired, DesiredGroup, DesiredGroupMember, DesiredMembership, DesiredOrg, DesiredOwned,
    DesiredProject, DesiredProjectMembership, DesiredResource, DesiredSubjectMembership,
    ProjectSubject,
};
pub use dsn::{Backend, Dsn};
pub use plan::{Action, Change, Plan};
pub use read::{
    EffectiveMember, MemberInfo, OrgEntry, OrgInfo, OwnedInfo, StoreIndex, TreeRoot, TreeSub,
};
pub use sql_store::SqlStore;

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
