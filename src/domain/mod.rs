//! The rules of the domain as pure functions over plain data: no client, no async, no I/O.
//! The controller and the offline CLI both call them, so they cannot disagree.
//!
//! - [`slug`]: slugs and email identity (rule 6; display names are the schema's alone).
//! - [`temporary`]: temporary roles and their expiry (rule 7).
//! - [`delegation`]: which namespaces may speak for an organization (`memberNamespaces`).
//! - [`tree`]: every rule that needs more than one object — the parent is a root (rule 1),
//!   members of a sub-organization are members of its root (rules 3 and 9), groups and
//!   identities flow down only when added (rule 4), admins are root members (rule 8), slugs are
//!   unique under a parent (rule 6), one membership per subject.
//! - [`groups`]: groups and machine identities belong to their organization; a root's are
//!   usable in a sub-organization once added there (rule 4); group members belong to the
//!   group's organization; sub-organization groups nest their own groups, without cycles.
//! - [`projects`]: projects are scoped to the organization that creates them (rule 5); their
//!   members are what that organization can see; app connections, gateways and relays belong
//!   to one organization and are never inherited.
//! - [`problem`]: how a broken rule is reported.
//!
//! The rules one object can break by itself (rule 2, authentication only at the root; the
//! patterns of rule 6; the one-level nesting of rule 1 as far as the parent's kind) are in the
//! CRD schema, so the API server refuses them at admission; [`crate::manifest`] applies the same
//! schema offline.

pub mod delegation;
pub mod groups;
pub mod problem;
pub mod projects;
pub mod slug;
pub mod temporary;
pub mod tree;

pub use problem::{ObjectKey, Problem, Reason, Severity};
