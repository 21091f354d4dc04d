//! The rows the store is asked to hold: a [`Desired`] state is the input of a plan. Plain
//! values (slugs, lowercased emails, roles as JSON, references by source key): the store never
//! sees a Kubernetes object. `crate::rows` builds them from the objects the rules accepted;
//! tests and benchmarks build them by hand.

use std::collections::{BTreeMap, HashMap, HashSet};

/// An organization as the store should hold it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredOrg {
    /// Key of the source object: its uid, or `Kind/name` when it has none (offline).
    pub source_uid: String,
    /// `metadata.name` of the source object.
    pub source_name: String,
    /// `source_uid` of the parent, for a sub-organization.
    pub parent: Option<String>,
    /// Slug.
    pub slug: String,
    /// Display name.
    pub display_name: String,
    /// Authentication settings as JSON (Secret references, never secrets), roots only.
    pub auth: Option<String>,
    /// Delegation settings as JSON.
    pub member_namespaces: Option<String>,
    /// `Delete` or `Orphan`.
    pub deletion_policy: &'static str,
}

/// A membership as the store should hold it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredMembership {
    /// Key of the source object (for an admin named by a SubOrganization, derived from it).
    pub source_uid: String,
    /// `metadata.name` of the source object.
    pub source_name: String,
    /// `source_uid` of the organization.
    pub organization: String,
    /// The user's email, lowercased.
    pub email: String,
    /// The roles as JSON.
    pub roles: String,
    /// `Delete` or `Orphan`.
    pub deletion_policy: &'static str,
}

/// A group or machine identity as the store should hold it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredOwned {
    /// Key of the source object.
    pub source_uid: String,
    /// `metadata.name` of the source object.
    pub source_name: String,
    /// `source_uid` of the owning organization.
    pub organization: String,
    /// `namespace/name` of the source object.
    pub name: String,
    /// Display name.
    pub display_name: String,
    /// `Delete` or `Orphan`.
    pub deletion_policy: &'static str,
}

/// A member of a group.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DesiredGroupMember {
    /// A user, by lowercased email.
    User(String),
    /// A nested group, by its `source_uid`.
    Group(String),
}

/// A group with its members.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredGroup {
    /// The group itself.
    pub group: DesiredOwned,
    /// Its members, sorted.
    pub members: Vec<DesiredGroupMember>,
}

/// A root's group or machine identity added to a sub-organization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredSubjectMembership {
    /// Key of the source OrgMembership.
    pub source_uid: String,
    /// `metadata.name` of the source object.
    pub source_name: String,
    /// `source_uid` of the sub-organization.
    pub organization: String,
    /// `Group` or `MachineIdentity`.
    pub kind: &'static str,
    /// `source_uid` of the group or identity.
    pub subject: String,
    /// `namespace/name` of the group or identity, for people.
    pub subject_name: String,
    /// The roles as JSON.
    pub roles: String,
    /// `Delete` or `Orphan`.
    pub deletion_policy: &'static str,
}

/// An app connection, gateway or relay as the store should hold it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredResource {
    /// Key of the source object.
    pub source_uid: String,
    /// `metadata.name` of the source object.
    pub source_name: String,
    /// `source_uid` of the owning organization.
    pub organization: String,
    /// `AppConnection`, `Gateway` or `Relay`.
    pub kind: &'static str,
    /// `namespace/name` of the source object.
    pub name: String,
    /// Display name.
    pub display_name: String,
    /// The app of a connection.
    pub app: Option<String>,
    /// Non-secret settings as JSON.
    pub config: String,
    /// The credentials Secret as JSON (`namespace` and `name`: a reference, never its data).
    pub credentials: Option<String>,
    /// `source_uid` of a gateway's relay.
    pub relay: Option<String>,
    /// `Delete` or `Orphan`.
    pub deletion_policy: &'static str,
}

/// A project as the store should hold it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredProject {
    /// Key of the source object.
    pub source_uid: String,
    /// `metadata.name` of the source object.
    pub source_name: String,
    /// `source_uid` of the owning organization.
    pub organization: String,
    /// `namespace/name` of the source object.
    pub name: String,
    /// Slug, unique in the organization.
    pub slug: String,
    /// Display name.
    pub display_name: String,
    /// Description.
    pub description: Option<String>,
    /// `source_uid` of the gateway.
    pub gateway: Option<String>,
    /// `source_uid`s of the app connections, sorted.
    pub connections: Vec<String>,
    /// `Delete` or `Orphan`.
    pub deletion_policy: &'static str,
}

/// Who a project membership is for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ProjectSubject {
    /// A user, by lowercased email.
    User(String),
    /// A group or identity of the project's organization (`kind`, `source_uid`).
    Own(&'static str, String),
    /// A root's group or identity added to the project's sub-organization.
    Shared(&'static str, String),
}

/// A project membership as the store should hold it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredProjectMembership {
    /// Key of the source object.
    pub source_uid: String,
    /// `metadata.name` of the source object.
    pub source_name: String,
    /// `source_uid` of the project.
    pub project: String,
    /// `source_uid` of the project's organization.
    pub organization: String,
    /// The subject.
    pub subject: ProjectSubject,
    /// The subject for people: an email or `namespace/name`.
    pub subject_name: String,
    /// The roles as JSON.
    pub roles: String,
    /// `Delete` or `Orphan`.
    pub deletion_policy: &'static str,
}

/// Everything the store should hold: roots before sub-organizations, root memberships before
/// sub-organization memberships, nested groups before the groups that contain them, so each
/// row's references exist when it is written.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Desired {
    /// Organizations.
    pub organizations: Vec<DesiredOrg>,
    /// Memberships of users.
    pub memberships: Vec<DesiredMembership>,
    /// Groups.
    pub groups: Vec<DesiredGroup>,
    /// Machine identities.
    pub identities: Vec<DesiredOwned>,
    /// Groups and machine identities added to sub-organizations.
    pub subject_memberships: Vec<DesiredSubjectMembership>,
    /// App connections, gateways and relays: relays before the gateways that use them.
    pub resources: Vec<DesiredResource>,
    /// Projects.
    pub projects: Vec<DesiredProject>,
    /// Project memberships.
    pub project_memberships: Vec<DesiredProjectMembership>,
    /// Sources of organizations, groups, identities, app connections, gateways, relays and
    /// projects whose stored rows stay as they are, though no row above asks for them: objects
    /// that still exist but were refused. Their rows are not pruned, and no other source takes
    /// them over; they still go with their organization's row. Only their deletion policy is
    /// written (the value here, when the object could be read), so that deleting the object
    /// does what it says. Memberships are never kept: access follows only what is accepted.
    pub kept: BTreeMap<String, Option<&'static str>>,
    /// Keys of every object that exists and is not being deleted, accepted or not. A row of
    /// one of them that no longer stays is deleted whatever its deletion policy: `Orphan`
    /// applies when the object is deleted, and a grant its object no longer makes (a refused
    /// membership, an admin taken off a list) must not stay behind as access.
    pub live: HashSet<String>,
    /// Keys of the objects being deleted, with the deletion policy each has now. Their rows go
    /// as this says, not as last written: a policy changed to `Orphan` just before the
    /// deletion, before any sync wrote it, still keeps the rows.
    pub deleting: HashMap<String, &'static str>,
}

/// Every row one source wants, table by table: two desired states are compared by it, one
/// source at a time.
#[derive(Debug, PartialEq, Eq)]
pub struct SourceRows<'a> {
    organizations: Vec<&'a DesiredOrg>,
    memberships: Vec<&'a DesiredMembership>,
    groups: Vec<&'a DesiredGroup>,
    identities: Vec<&'a DesiredOwned>,
    subject_memberships: Vec<&'a DesiredSubjectMembership>,
    resources: Vec<&'a DesiredResource>,
    projects: Vec<&'a DesiredProject>,
    project_memberships: Vec<&'a DesiredProjectMembership>,
}

impl SourceRows<'_> {
    /// Whether the source wants no row at all: gone, refused or kept as it is.
    pub fn is_empty(&self) -> bool {
        self.organizations.is_empty()
            && self.memberships.is_empty()
            && self.groups.is_empty()
            && self.identities.is_empty()
            && self.subject_memberships.is_empty()
            && self.resources.is_empty()
            && self.projects.is_empty()
            && self.project_memberships.is_empty()
    }
}

impl Desired {
    /// The rows `source` wants. A scan of every table: for a few sources at a time.
    pub fn rows_of(&self, source: &str) -> SourceRows<'_> {
        fn of<'a, T>(rows: &'a [T], source: &str, key: impl Fn(&T) -> &str) -> Vec<&'a T> {
            rows.iter().filter(|r| key(r) == source).collect()
        }
        SourceRows {
            organizations: of(&self.organizations, source, |r| &r.source_uid),
            memberships: of(&self.memberships, source, |r| &r.source_uid),
            groups: of(&self.groups, source, |r| &r.group.source_uid),
            identities: of(&self.identities, source, |r| &r.source_uid),
            subject_memberships: of(&self.subject_memberships, source, |r| &r.source_uid),
            resources: of(&self.resources, source, |r| &r.source_uid),
            projects: of(&self.projects, source, |r| &r.source_uid),
            project_memberships: of(&self.project_memberships, source, |r| &r.source_uid),
        }
    }
}

/// The key of the object a store source belongs to: an admin membership that a
/// SubOrganization names is keyed `<uid>#admin:<email>`.
pub fn source_object(source: &str) -> &str {
    source.split_once('#').map_or(source, |(uid, _)| uid)
}

/// What follows the object's key in the source of a membership a SubOrganization makes for
/// an admin it names (`<uid>#admin:<email>`).
pub(crate) const ADMIN_SOURCE: &str = "#admin:";
/// What follows the object's key in the source of a root membership a project invite makes
/// (`<uid>#invite:<email>`).
pub(crate) const INVITE_SOURCE: &str = "#invite:";
