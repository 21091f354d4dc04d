//! `Project` and `ProjectMembership`: where visibility is decided. A project belongs to the
//! organization that creates it (root or sub) and is visible there alone. Its members are the
//! users, groups and machine identities that organization can see: in a sub-organization,
//! only what was added to it (or created in it); in a root, any root member, or a new user
//! provisioned through a project invite.

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{
    CommonStatus, DISPLAY_NAME_PATTERN, DeletionPolicy, OrganizationRef, SLUG_KEPT_MESSAGE,
    SLUG_KEPT_RULE, SLUG_PATTERN,
};
use super::connection::LocalObjectRef;
use super::membership::{RoleBinding, Subject};

/// The built-in project roles.
pub const BUILTIN_PROJECT_ROLES: [&str; 4] = ["admin", "member", "viewer", "no-access"];

/// A project, scoped to the organization that creates it.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "suborg.io",
    version = "v1alpha1",
    kind = "Project",
    plural = "projects",
    shortname = "sproj",
    category = "suborg-all",
    namespaced,
    status = "ProjectStatus",
    cel,
    doc = "A project of one Organization or SubOrganization, visible in that organization only. It may use that organization's own app connections and gateway.",
    printcolumn = r#"{"name":"Kind","type":"string","jsonPath":".spec.organizationRef.kind"}"#,
    printcolumn = r#"{"name":"Organization","type":"string","jsonPath":".spec.organizationRef.name"}"#,
    printcolumn = r#"{"name":"Slug","type":"string","jsonPath":".status.slug"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","priority":1,"jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    validation = Rule::new("has(self.spec.slug) || self.metadata.name.matches('^[a-z0-9-]{1,64}$')").message("metadata.name is used as the slug when spec.slug is unset, and a slug is 1-64 lowercase letters, digits and hyphens: set spec.slug"),
    validation = Rule::new(SLUG_KEPT_RULE).message(SLUG_KEPT_MESSAGE).field_path(".spec.slug")
)]
#[serde(rename_all = "camelCase")]
pub struct ProjectSpec {
    /// The Organization or SubOrganization the project belongs to. Immutable: a project does
    /// not move between organizations.
    #[x_kube(validation = Rule::new("self == oldSelf").message("is immutable: a project stays in the organization that created it; create a new Project in the other organization"))]
    pub organization_ref: OrganizationRef,
    /// Slug: 1–64 lowercase letters, digits and hyphens, unique among the organization's
    /// projects. Defaults to `metadata.name`. Immutable once set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64), regex(pattern = SLUG_PATTERN))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("is immutable: API clients address the project by it"))]
    pub slug: Option<String>,
    /// Display name: 1–64 letters, digits, spaces, `-` and `_`, with no space
    /// at either end. Defaults to the slug.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64), regex(pattern = DISPLAY_NAME_PATTERN))]
    pub display_name: Option<String>,
    /// A short description, at most 256 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub description: Option<String>,
    /// AppConnections the project uses: each must belong to the project's own organization.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 100))]
    pub app_connections: Vec<LocalObjectRef>,
    /// The Gateway the project reaches private resources through: one of its own
    /// organization's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway_ref: Option<LocalObjectRef>,
    /// `Delete` (default) removes the project and its memberships from the store when this
    /// object is deleted; `Orphan` keeps them.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
}

/// Observed state of a Project.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProjectStatus {
    /// Generation, conditions and store id.
    #[serde(flatten)]
    pub common: CommonStatus,
    /// The slug in the store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slug: Option<String>,
    /// Members of the project in the store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub members: Option<i64>,
}

/// A user, group or machine identity with roles in one project.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "suborg.io",
    version = "v1alpha1",
    kind = "ProjectMembership",
    plural = "projectmemberships",
    shortname = "projm",
    category = "suborg-all",
    namespaced,
    status = "ProjectMembershipStatus",
    cel,
    doc = "A user (by email), group or machine identity with roles in one Project. In a sub-organization's project the subject must have been added to that sub-organization first.",
    printcolumn = r#"{"name":"Project","type":"string","jsonPath":".spec.projectRef.name"}"#,
    printcolumn = r#"{"name":"Subject","type":"string","jsonPath":".spec.subject.kind"}"#,
    printcolumn = r#"{"name":"Email","type":"string","jsonPath":".spec.subject.email"}"#,
    printcolumn = r#"{"name":"Name","type":"string","jsonPath":".spec.subject.name"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","priority":1,"jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[x_kube(validation = Rule::new("!has(self.invite) || self.subject.kind == 'User'").message("only users are invited: groups and machine identities are added to the organization first").field_path(".invite"))]
#[serde(rename_all = "camelCase")]
pub struct ProjectMembershipSpec {
    /// The Project, by name (and namespace, which defaults to this object's). Immutable.
    #[x_kube(validation = Rule::new("self == oldSelf").message("is immutable: create a new ProjectMembership for another project (writing out the namespace it defaults to counts as a change too: leave the reference as it was created)"))]
    pub project_ref: LocalObjectRef,
    /// Who joins. Immutable.
    #[x_kube(validation = Rule::new("self == oldSelf").message("is immutable: create a new ProjectMembership for another subject (writing out the namespace it defaults to counts as a change too: leave the subject as it was created)"))]
    pub subject: Subject,
    /// Project roles: `admin`, `member`, `viewer`, `no-access` or the slug of a custom
    /// project role, each optionally temporary; 1 to 16 roles, each once. `no-access` cannot be
    /// combined with others.
    #[schemars(length(min = 1, max = 16), extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["role"]))]
    #[x_kube(
        validation = Rule::new("!self.exists(r, r.role == 'no-access') || self.size() == 1").message("no-access cannot be combined with other roles"),
        validation = Rule::new(super::DURATION_ADDED_RULE).message(super::DURATION_ADDED_MESSAGE)
    )]
    pub roles: Vec<RoleBinding>,
    /// Provisions the user through this project invite when they are not yet a member of the
    /// root organization: they become a root member with `organizationRole`. Root projects
    /// only (users exist at the root; a sub-organization adds them from there). Removing the
    /// last invite of a user who has no OrgMembership removes them from the root again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invite: Option<ProjectInvite>,
    /// `Delete` (default) or `Orphan`, as for the other kinds.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
}

/// How an invited user joins the root organization.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProjectInvite {
    /// The role the user gets in the root organization: `member` (the default), `no-access`
    /// or a custom role's slug. Never `admin`: an organization admin is named by an
    /// OrgMembership, not provisioned by a project.
    #[serde(default = "default_invite_role")]
    #[schemars(length(min = 1, max = 64), regex(pattern = SLUG_PATTERN))]
    #[x_kube(validation = Rule::new("self != 'admin'").message("a project invite cannot make an organization admin: give the user an OrgMembership with role admin instead"))]
    pub organization_role: String,
}

fn default_invite_role() -> String {
    "member".into()
}

/// Observed state of a ProjectMembership.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProjectMembershipStatus {
    /// Generation, conditions and store id.
    #[serde(flatten)]
    pub common: CommonStatus,
    /// Store id of the project.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project_id: Option<String>,
    /// Roles currently in effect (temporary roles disappear when they expire).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub active_roles: Vec<String>,
    /// When the next temporary role in effect expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_expiry: Option<String>,
    /// When the next temporary role still to come starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_start: Option<String>,
}
