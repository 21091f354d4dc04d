//! `OrgMembership`: a subject with roles in one Organization or SubOrganization.

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{
    CommonStatus, DATE_TIME_PATTERN, DNS_SUBDOMAIN_PATTERN, DURATION_PATTERN, DeletionPolicy,
    EMAIL_PATTERN, OrganizationRef, SLUG_PATTERN,
};

/// The built-in organization roles.
pub const BUILTIN_ROLES: [&str; 3] = ["admin", "member", "no-access"];

/// A subject's roles in one organization. A user joins a sub-organization only after a
/// membership in its root; removing the root membership revokes every sub-organization
/// membership of that user.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "suborg.io",
    version = "v1alpha1",
    kind = "OrgMembership",
    plural = "orgmemberships",
    shortname = "orgm",
    category = "suborg-all",
    namespaced,
    status = "OrgMembershipStatus",
    cel,
    doc = "A user (by email), group or machine identity with roles in one Organization or SubOrganization.",
    printcolumn = r#"{"name":"Kind","type":"string","jsonPath":".spec.organizationRef.kind"}"#,
    printcolumn = r#"{"name":"Organization","type":"string","jsonPath":".spec.organizationRef.name"}"#,
    printcolumn = r#"{"name":"Subject","type":"string","jsonPath":".spec.subject.kind"}"#,
    printcolumn = r#"{"name":"Email","type":"string","jsonPath":".spec.subject.email"}"#,
    printcolumn = r#"{"name":"Name","type":"string","jsonPath":".spec.subject.name"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","priority":1,"jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct OrgMembershipSpec {
    /// The Organization or SubOrganization the subject joins. Immutable.
    #[x_kube(validation = Rule::new("self == oldSelf").message("is immutable: create a new OrgMembership for another organization"))]
    pub organization_ref: OrganizationRef,
    /// Who joins. Immutable.
    #[x_kube(validation = Rule::new("self == oldSelf").message("is immutable: create a new OrgMembership for another subject (writing out the namespace it defaults to counts as a change too: leave the subject as it was created)"))]
    pub subject: Subject,
    /// Roles granted in the organization: `admin`, `member`, `no-access` or the slug of a custom
    /// role, each optionally temporary; 1 to 16 roles, each once. `no-access` cannot be combined
    /// with other roles.
    #[schemars(length(min = 1, max = 16), extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["role"]))]
    #[x_kube(
        validation = Rule::new("!self.exists(r, r.role == 'no-access') || self.size() == 1").message("no-access cannot be combined with other roles"),
        validation = Rule::new(super::DURATION_ADDED_RULE).message(super::DURATION_ADDED_MESSAGE)
    )]
    pub roles: Vec<RoleBinding>,
    /// `Delete` (default) removes the membership from the store when this object is deleted;
    /// `Orphan` keeps it.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
}

/// What kind of subject a membership names.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum SubjectKind {
    /// A person, identified by email. Users exist at the root organization.
    User,
    /// A group of users.
    Group,
    /// A machine identity (a service, CI/CD pipeline or automated process).
    MachineIdentity,
}

impl SubjectKind {
    /// The kind's name as it appears in manifests.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::User => "User",
            Self::Group => "Group",
            Self::MachineIdentity => "MachineIdentity",
        }
    }
}

/// The subject of a membership: a User by `email`, a Group or MachineIdentity by `name`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.kind == 'User' ? (has(self.email) && !has(self.name) && !has(self.__namespace__)) : (has(self.name) && !has(self.email))").message("a subject of kind User is named by email, a Group or MachineIdentity by name (and optionally namespace)"))]
pub struct Subject {
    /// `User`, `Group` or `MachineIdentity`.
    pub kind: SubjectKind,
    /// Email of the user (kind `User`). Compared case-insensitively.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 3, max = 320), regex(pattern = EMAIL_PATTERN))]
    pub email: Option<String>,
    /// Name of the group or machine identity (kind `Group` or `MachineIdentity`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253), regex(pattern = DNS_SUBDOMAIN_PATTERN))]
    pub name: Option<String>,
    /// Namespace of the group or machine identity; defaults to this membership's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63), regex(pattern = super::group::NAMESPACE_PATTERN))]
    pub namespace: Option<String>,
}

/// One role of a membership.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RoleBinding {
    /// `admin`, `member`, `no-access`, or the slug of a custom role (1–64 lowercase letters,
    /// digits and hyphens).
    #[schemars(length(min = 1, max = 64), regex(pattern = SLUG_PATTERN))]
    pub role: String,
    /// Makes the role temporary: it is granted from `start` and expires at `end`, or `duration`
    /// after `start` (by default, the object's creation). Omit for a permanent role.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temporary: Option<TemporaryAccess>,
}

/// On an update: a role given a `duration` without `start` must have had one before. A
/// `duration` counts from `start`, by default the object's creation, so a role given one later
/// would count from a moment already past: it could be expired on arrival.
pub const DURATION_ADDED_RULE: &str = "self.all(r, !has(r.temporary) || !has(r.temporary.duration) || has(r.temporary.start) || oldSelf.exists(o, o.role == r.role && has(o.temporary) && has(o.temporary.duration) && !has(o.temporary.start)))";
/// What [`DURATION_ADDED_RULE`] says when broken.
pub const DURATION_ADDED_MESSAGE: &str = "temporary.start is needed for a role given a duration after the object was created: without start, a duration counts from the object's creation (metadata.creationTimestamp), which has passed";

/// The CEL rule that keeps `start` plus `duration` within the year 9999 (its last
/// nanosecond is the last instant a timestamp holds). Written so that no step overflows: the
/// threshold is that instant less the longest duration (2562047h47m16.854775807s), so a start
/// before it plus any duration stays within 9999, and from it on, the time left until the end
/// of 9999 is itself a duration that fits.
pub const START_PLUS_DURATION_RULE: &str = "!has(self.start) || !has(self.duration) || self.start < timestamp('9707-09-22T00:12:43.145224192Z') || self.duration <= timestamp('9999-12-31T23:59:59.999999999Z') - self.start";

/// The window of a temporary role: `end`, or `duration` counted from `start`. `start`
/// defaults to the object's creation (`metadata.creationTimestamp`), which the store's row
/// records as its `start`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("has(self.end) != has(self.duration)").message("temporary needs exactly one of end or duration"),
    validation = Rule::new("!has(self.start) || !has(self.end) || self.end > self.start").message("temporary.end must be after temporary.start"),
    validation = Rule::new("!has(self.duration) || self.duration > duration('0s')").message("temporary.duration must be greater than zero and at most 2562047h (the longest duration Kubernetes can hold)"),
    validation = Rule::new(START_PLUS_DURATION_RULE).message("temporary.start plus temporary.duration is past the year 9999: give an earlier start or a shorter duration")
)]
pub struct TemporaryAccess {
    /// When the role starts (RFC 3339, e.g. `2026-01-01T09:00:00Z`). Defaults to the object's
    /// creation: a role added to an existing membership with a `duration` needs a `start`, or
    /// it counts from when the membership was created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DATE_TIME_PATTERN), extend("format" = "date-time"))]
    pub start: Option<String>,
    /// When the role expires (RFC 3339). Exclusive with `duration`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DATE_TIME_PATTERN), extend("format" = "date-time"))]
    pub end: Option<String>,
    /// How long the role lasts from `start`, as a Kubernetes duration (`90m`, `8h`, `168h`).
    /// Exclusive with `end`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 2, max = 64), regex(pattern = DURATION_PATTERN), extend("format" = "duration"))]
    pub duration: Option<String>,
}

impl TemporaryAccess {
    /// Whether the window counts from the object's creation: a `duration` without `start`.
    pub fn counts_from_creation(&self) -> bool {
        self.start.is_none() && self.duration.is_some()
    }
}

/// Observed state of an OrgMembership.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrgMembershipStatus {
    /// Generation, conditions and store id.
    #[serde(flatten)]
    pub common: CommonStatus,
    /// Store id of the organization the subject belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub organization_id: Option<String>,
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
