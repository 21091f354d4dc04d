//! `SubOrganization`: a child of one root organization, one level deep.

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{
    CommonStatus, DISPLAY_NAME_PATTERN, DeletionPolicy, EMAIL_PATTERN, MemberNamespaces,
    OrganizationRef, SLUG_KEPT_MESSAGE, SLUG_KEPT_RULE, SLUG_PATTERN,
};

/// Message of the rule that keeps nesting at one level.
pub const NESTING_MESSAGE: &str = "the parent must be a root Organization: sub-organizations cannot have children (one level of nesting)";
/// Message of the rule that keeps authentication at the root.
pub const AUTHENTICATION_MESSAGE: &str = "authentication is not allowed on a SubOrganization: SSO, SCIM and identity configuration happen at the root organization only, and sub-organizations share them";

/// A sub-organization: works like a regular organization with its own members, groups,
/// identities and projects, and shares authentication and billing with its root.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "suborg.io",
    version = "v1alpha1",
    kind = "SubOrganization",
    plural = "suborganizations",
    shortname = "suborg",
    category = "suborg-all",
    status = "SubOrganizationStatus",
    cel,
    doc = "A sub-organization: a child of one root Organization with its own members and projects, sharing the root's authentication.",
    printcolumn = r#"{"name":"Parent","type":"string","jsonPath":".spec.organizationRef.name"}"#,
    printcolumn = r#"{"name":"Slug","type":"string","jsonPath":".status.slug"}"#,
    printcolumn = r#"{"name":"Members","type":"integer","jsonPath":".status.members"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","priority":1,"jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    validation = Rule::new("has(self.spec.slug) || self.metadata.name.matches('^[a-z0-9-]{1,64}$')").message("metadata.name is used as the slug when spec.slug is unset, and a slug is 1-64 lowercase letters, digits and hyphens: set spec.slug"),
    validation = Rule::new(SLUG_KEPT_RULE).message(SLUG_KEPT_MESSAGE).field_path(".spec.slug")
)]
#[x_kube(validation = Rule::new("!has(self.authentication)").message(AUTHENTICATION_MESSAGE).field_path(".authentication"))]
#[serde(rename_all = "camelCase")]
pub struct SubOrganizationSpec {
    /// The parent, which must be a root `Organization`. Immutable: a sub-organization cannot
    /// move between roots.
    #[x_kube(
        validation = Rule::new("self.kind == 'Organization'").message(NESTING_MESSAGE).field_path(".kind"),
        validation = Rule::new("self == oldSelf").message("is immutable: a sub-organization cannot move to another root")
    )]
    pub organization_ref: OrganizationRef,
    /// Human-readable name: 1–64 letters, digits, spaces, `-` and `_`, with no space
    /// at either end. Defaults to the slug.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64), regex(pattern = DISPLAY_NAME_PATTERN))]
    pub display_name: Option<String>,
    /// Slug used in API calls: 1–64 lowercase letters, digits and hyphens, unique among the
    /// children of the root. Defaults to `metadata.name`. Immutable once set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64), regex(pattern = SLUG_PATTERN))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("is immutable: API clients address the sub-organization by it"))]
    pub slug: Option<String>,
    /// Emails of the people who are Admins of this sub-organization. Each must be a member of
    /// the root organization. (In a UI the creator becomes Admin; in GitOps the creator is a
    /// service account, so the admins are named.)
    #[schemars(length(min = 1, max = 100), inner(length(min = 3, max = 320), regex(pattern = EMAIL_PATTERN)), extend("x-kubernetes-list-type" = "set"))]
    pub admins: Vec<String>,
    /// Which namespaces may hold OrgMemberships (and later groups and projects) that target this
    /// sub-organization.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub member_namespaces: Option<MemberNamespaces>,
    /// `Delete` (default) removes the sub-organization's rows from the store when this object is
    /// deleted; `Orphan` keeps them.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
    /// Not allowed. Authentication (SSO, SCIM, identity configuration) is configured on the root
    /// Organization only; the field exists so that setting it is refused with that explanation
    /// instead of being silently pruned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "forbidden_object")]
    pub authentication: Option<serde_json::Value>,
}

fn forbidden_object(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "description": "Not allowed: authentication is configured on the root Organization only.",
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true
    })
}

/// Observed state of a SubOrganization.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SubOrganizationStatus {
    /// Generation, conditions and store id.
    #[serde(flatten)]
    pub common: CommonStatus,
    /// Slug the sub-organization has in the store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slug: Option<String>,
    /// Store id of the root organization.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root_id: Option<String>,
    /// Number of members of the sub-organization in the store, including any a deleted
    /// OrgMembership left there unmanaged (`deletionPolicy: Orphan`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub members: Option<i64>,
}
