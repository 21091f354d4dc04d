//! The statements behind a change, as data: the plan of each table builds them and the same
//! table's file carries them out (`tables/`). They are listed here, below the tables, so a
//! [`super::Change`] can hold any of them without the plumbing knowing how a table is planned.

use crate::store::desired::{
    DesiredMembership, DesiredOrg, DesiredOwned, DesiredProject, DesiredProjectMembership,
    DesiredResource, DesiredSubjectMembership,
};

/// The tables suborg manages rows of. Their names are fixed here, never taken from input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Table {
    Organizations,
    Memberships,
    Groups,
    Identities,
    SubjectMemberships,
    Resources,
    Projects,
    ProjectMemberships,
}

impl Table {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Organizations => "organizations",
            Self::Memberships => "memberships",
            Self::Groups => "groups",
            Self::Identities => "machine_identities",
            Self::SubjectMemberships => "subject_memberships",
            Self::Resources => "org_resources",
            Self::Projects => "projects",
            Self::ProjectMemberships => "project_memberships",
        }
    }

    /// What a change of one of its rows is called, for people. A group or identity added to
    /// a sub-organization is a membership there, as a user's is.
    pub(crate) fn kind(self) -> &'static str {
        match self {
            Self::Organizations => "organization",
            Self::Memberships | Self::SubjectMemberships => "membership",
            Self::Groups => "group",
            Self::Identities => "machine identity",
            Self::Resources => "resource",
            Self::Projects => "project",
            Self::ProjectMemberships => "project membership",
        }
    }
}

/// A member of a group row: a user by email, or a group by row id.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum MemberRef {
    User(String),
    Group(String),
}

/// The statements behind a change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Op {
    CreateOrg {
        id: String,
        parent_id: Option<String>,
        org: DesiredOrg,
    },
    UpdateOrg {
        id: String,
        org: DesiredOrg,
    },
    CreateMembership {
        id: String,
        org_id: String,
        root_id: String,
        m: DesiredMembership,
    },
    UpdateMembership {
        id: String,
        m: DesiredMembership,
    },
    CreateOwned {
        table: Table,
        id: String,
        org_id: String,
        root_id: String,
        org_depth: i64,
        owned: DesiredOwned,
        members: Vec<MemberRef>,
    },
    UpdateOwned {
        table: Table,
        id: String,
        org_id: String,
        org_depth: i64,
        owned: DesiredOwned,
        add: Vec<MemberRef>,
        remove: Vec<MemberRef>,
    },
    /// Removes every member of the group `id`, whose row is kept while its object is refused:
    /// access follows only what is accepted.
    ClearMembers {
        id: String,
    },
    CreateSubject {
        id: String,
        org_id: String,
        root_id: String,
        subject_id: String,
        m: DesiredSubjectMembership,
    },
    UpdateSubject {
        id: String,
        m: DesiredSubjectMembership,
    },
    CreateResource {
        id: String,
        org_id: String,
        root_id: String,
        relay_id: Option<String>,
        r: DesiredResource,
    },
    UpdateResource {
        id: String,
        org_id: String,
        relay_id: Option<String>,
        r: DesiredResource,
    },
    CreateProject {
        id: String,
        org_id: String,
        root_id: String,
        gateway_id: Option<String>,
        connections: Vec<String>,
        p: DesiredProject,
    },
    UpdateProject {
        id: String,
        org_id: String,
        gateway_id: Option<String>,
        add: Vec<String>,
        remove: Vec<String>,
        p: DesiredProject,
    },
    CreateProjectMember {
        id: String,
        project_id: String,
        /// The subject column (one of a fixed list) and its value: an email for a user.
        column: &'static str,
        value: String,
        m: DesiredProjectMembership,
    },
    UpdateProjectMember {
        id: String,
        m: DesiredProjectMembership,
    },
    /// Any table's row removed: one statement for all of them.
    DeleteRow {
        table: Table,
        id: String,
    },
    /// Any table's row let go of: left in place, no longer managed.
    OrphanRow {
        table: Table,
        id: String,
    },
    /// The deletion policy of a kept row (one whose object is refused): the only value of it
    /// that is written.
    SetPolicy {
        table: Table,
        id: String,
        policy: &'static str,
    },
}
