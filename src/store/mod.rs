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
//! - `contract` (the [`Store`] trait), `sql_store` (it on SQL), `read`, `access`, `damage`:
//!   the store its callers see, and its reads;
//! - `apply`: a whole plan, every table in the order their references need, and its execution;
//! - `tables/`: one file per table (or family written together) with its load, plan, prune
//!   and execute;
//! - `plan/`: what a plan is and the plumbing the tables share (matching stored rows to
//!   desired ones, ids, SQL helpers); `desired`, `dsn`, `migrate`, `error`.
//!
//! This file only declares and re-exports: every module names the module an item is defined
//! in, never this one, so no import leads back up.
//!
//! Two reads use the API's definitions, on purpose: `access` decodes stored roles as the API's
//! `RoleBinding` and asks `domain::temporary` which are in effect now, and `damage` checks
//! slugs against the API's pattern. Both are the definitions the controller applies; a copy
//! here could drift and let `suborg get` disagree with it.

mod access;
mod apply;
mod claim;
mod contract;
mod damage;
mod desired;
mod dsn;
mod error;
mod migrate;
pub(crate) mod plan;
mod read;
mod sql_store;
mod tables;

pub use access::{AccessEntry, ProjectInfo, ResourceInfo};
pub use claim::Writer;
pub use contract::Store;
pub(crate) use desired::{ADMIN_SOURCE, INVITE_SOURCE};
pub use desired::{
    Desired, DesiredGroup, DesiredGroupMember, DesiredMembership, DesiredOrg, DesiredOwned,
    DesiredProject, DesiredProjectMembership, DesiredResource, DesiredSubjectMembership,
    ProjectSubject, SourceRows, source_object,
};
pub use dsn::{Backend, Dsn};
pub use error::{ObjectConflict, StoreError};
pub use plan::{Action, ApplyOptions, Change, Plan};
pub use read::{
    EffectiveMember, GroupEntry, MemberInfo, OrgEntry, OrgInfo, OwnedInfo, StoreIndex, TreeRoot,
    TreeSub,
};
pub use sql_store::SqlStore;
