//! `Group` and `MachineIdentity`: what an organization creates for access beyond single users.
//! Each belongs to the organization its `organizationRef` names. A root's groups and identities
//! can be added to its sub-organizations with an `OrgMembership` there; a sub-organization's
//! own are visible nowhere else.

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{
    CommonStatus, DISPLAY_NAME_PATTERN, DNS_SUBDOMAIN_PATTERN, DeletionPolicy, EMAIL_PATTERN,
    OrganizationRef,
};

/// Pattern of a namespace name (RFC 1123 label).
pub const NAMESPACE_PATTERN: &str = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$";

/// A group of users (and, in a sub-organization, of that sub-organization's groups), owned by
/// the organization that created it.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "suborg.io",
    version = "v1alpha1",
    kind = "Group",
    plural = "groups",
    shortname = "sgroup",
    category = "suborg-all",
    namespaced,
    status = "GroupStatus",
    cel,
    doc = "A group of users, owned by one Organization or SubOrganization. A root's groups can be added to its sub-organizations; a sub-organization's groups may also contain that sub-organization's groups.",
    printcolumn = r#"{"name":"Kind","type":"string","jsonPath":".spec.organizationRef.kind"}"#,
    printcolumn = r#"{"name":"Organization","type":"string","jsonPath":".spec.organizationRef.name"}"#,
    printcolumn = r#"{"name":"Members","type":"integer","jsonPath":".status.members"}"#,
    printcolumn = r#"{"name":"Nested","type":"integer","priority":1,"jsonPath":".status.nestedGroups"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","priority":1,"jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct GroupSpec {
    /// The Organization or SubOrganization that owns the group. Immutable.
    #[x_kube(validation = Rule::new("self == oldSelf").message("is immutable: a group stays with the organization that created it"))]
    pub organization_ref: OrganizationRef,
    /// Display name: 1–64 letters, digits, spaces, `-` and `_`, with no space
    /// at either end. Defaults to the name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64), regex(pattern = DISPLAY_NAME_PATTERN))]
    pub display_name: Option<String>,
    /// Members: users by email (members of the owning organization), and in a
    /// sub-organization, groups of that same sub-organization by name.
    #[serde(default)]
    #[schemars(length(max = 10000))]
    pub members: Vec<GroupMember>,
    /// `Delete` (default) removes the group from the store when this object is deleted;
    /// `Orphan` keeps it.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
}

/// What kind of member a group lists.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum GroupMemberKind {
    /// A user, by email.
    User,
    /// A nested group, by name (sub-organization groups only).
    Group,
}

/// One member of a group: a User by `email`, or a Group by `name` (and `namespace`, which
/// defaults to the group's own).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.kind == 'User' ? (has(self.email) && !has(self.name) && !has(self.__namespace__)) : (has(self.name) && !has(self.email))").message("a member of kind User is named by email, a Group by name (and optionally namespace)"))]
pub struct GroupMember {
    /// `User` or `Group`.
    pub kind: GroupMemberKind,
    /// Email of the user (kind `User`). Compared case-insensitively.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 3, max = 320), regex(pattern = EMAIL_PATTERN))]
    pub email: Option<String>,
    /// Name of the nested group (kind `Group`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253), regex(pattern = DNS_SUBDOMAIN_PATTERN))]
    pub name: Option<String>,
    /// Namespace of the nested group; defaults to this group's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63), regex(pattern = NAMESPACE_PATTERN))]
    pub namespace: Option<String>,
}

/// Observed state of a Group.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GroupStatus {
    /// Generation, conditions and store id.
    #[serde(flatten)]
    pub common: CommonStatus,
    /// Users listed in the group itself, as stored (the users of nested groups are not
    /// counted here).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub members: Option<i64>,
    /// Groups nested in the group itself, as stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nested_groups: Option<i64>,
}

/// A machine identity (a service, CI/CD pipeline or automated process), owned by the
/// organization that created it.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "suborg.io",
    version = "v1alpha1",
    kind = "MachineIdentity",
    plural = "machineidentities",
    shortname = "mid",
    category = "suborg-all",
    namespaced,
    status = "MachineIdentityStatus",
    cel,
    doc = "A machine identity owned by one Organization or SubOrganization. A root's identities can be added to its sub-organizations.",
    printcolumn = r#"{"name":"Kind","type":"string","jsonPath":".spec.organizationRef.kind"}"#,
    printcolumn = r#"{"name":"Organization","type":"string","jsonPath":".spec.organizationRef.name"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","priority":1,"jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct MachineIdentitySpec {
    /// The Organization or SubOrganization that owns the identity. Immutable.
    #[x_kube(validation = Rule::new("self == oldSelf").message("is immutable: an identity stays with the organization that created it"))]
    pub organization_ref: OrganizationRef,
    /// Display name: 1–64 letters, digits, spaces, `-` and `_`, with no space
    /// at either end. Defaults to the name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64), regex(pattern = DISPLAY_NAME_PATTERN))]
    pub display_name: Option<String>,
    /// `Delete` (default) removes the identity from the store when this object is deleted;
    /// `Orphan` keeps it.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
}

/// Observed state of a MachineIdentity.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MachineIdentityStatus {
    /// Generation, conditions and store id.
    #[serde(flatten)]
    pub common: CommonStatus,
}
