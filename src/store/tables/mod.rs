//! The tables suborg manages, one file per table or family of tables that are written
//! together. Each file holds the table's stored rows as a plan reads them (`load`), the
//! comparison with the desired rows (`plan`), what `--prune` removes (`prune`) and the
//! statements that carry its changes out (`execute`). A table's file may use the files of the
//! tables it references (every row belongs to an organization, a project membership to a
//! project); `apply` runs them in that order.

pub(crate) mod memberships;
pub(crate) mod organizations;
pub(crate) mod owned;
pub(crate) mod project_members;
pub(crate) mod projects;
pub(crate) mod resources;
pub(crate) mod subjects;

/// Every table whose rows suborg manages (a `managed` column, a source object), in the order
/// rows are written.
pub(crate) const MANAGED: [&str; 8] = [
    "organizations",
    "memberships",
    "groups",
    "machine_identities",
    "subject_memberships",
    "org_resources",
    "projects",
    "project_memberships",
];
