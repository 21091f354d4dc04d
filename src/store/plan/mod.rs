//! The plumbing every table's plan shares: what a plan is ([`Plan`], [`Change`], [`Action`]),
//! the statements behind a change ([`Op`]), how a desired row finds the stored row it writes
//! to, new row ids, and the SQL helpers the tables use. It knows no table's plan: the files of
//! `tables/` build on it, and `apply` puts them together.

mod change;
mod ids;
mod matching;
mod op;
mod sql;

pub use change::{Action, ApplyOptions, Change, Plan};
pub(crate) use change::{Conflicts, PlanError, constraint_message, plan_each, refused};
pub(crate) use ids::{new_id, now_millis};
pub(crate) use matching::{
    Sourced, by_source, follow_policies, held_by_another, keep_ids, keep_rows, row_for, sourced,
    wanted,
};
pub(crate) use op::{MemberRef, Op, Table};
pub(crate) use sql::{
    Users, VALUES_PER_LIST, delete, fetch_all, orphan, parameters, placeholders, removal,
    set_policy,
};
