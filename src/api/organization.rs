//! `Organization`: a root organization, the only place authentication is configured.

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{
    CommonStatus, DISPLAY_NAME_PATTERN, DeletionPolicy, EMAIL_DOMAIN_PATTERN, HTTPS_URL_PATTERN,
    MemberNamespaces, SLUG_KEPT_MESSAGE, SLUG_KEPT_RULE, SLUG_PATTERN, SecretKeyRef,
};

/// A root organization. Users, root groups and root machine identities live here; SSO, SCIM
/// and identity settings are configured here and shared by every sub-organization.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "suborg.io",
    version = "v1alpha1",
    kind = "Organization",
    plural = "organizations",
    shortname = "org",
    category = "suborg-all",
    status = "OrganizationStatus",
    cel,
    doc = "A root organization: users, authentication (SSO, SCIM) and billing live here, and sub-organizations hang below it.",
    printcolumn = r#"{"name":"Slug","type":"string","jsonPath":".status.slug"}"#,
    printcolumn = r#"{"name":"SubOrgs","type":"integer","jsonPath":".status.subOrganizations"}"#,
    printcolumn = r#"{"name":"Members","type":"integer","jsonPath":".status.members"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","priority":1,"jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    validation = Rule::new("has(self.spec.slug) || self.metadata.name.matches('^[a-z0-9-]{1,64}$')").message("metadata.name is used as the slug when spec.slug is unset, and a slug is 1-64 lowercase letters, digits and hyphens: set spec.slug"),
    validation = Rule::new(SLUG_KEPT_RULE).message(SLUG_KEPT_MESSAGE).field_path(".spec.slug")
)]
#[serde(rename_all = "camelCase")]
pub struct OrganizationSpec {
    /// Human-readable name: 1–64 letters, digits, spaces, `-` and `_`, with no space
    /// at either end. Defaults to the slug.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64), regex(pattern = DISPLAY_NAME_PATTERN))]
    pub display_name: Option<String>,
    /// Slug used in API calls: 1–64 lowercase letters, digits and hyphens, unique among root
    /// organizations. Defaults to `metadata.name`. Immutable once set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64), regex(pattern = SLUG_PATTERN))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("is immutable: API clients address the organization by it"))]
    pub slug: Option<String>,
    /// Authentication shared by the root and all its sub-organizations: SSO, SCIM and identity
    /// settings. Only root organizations carry it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authentication: Option<Authentication>,
    /// Which namespaces may hold OrgMemberships (and later groups and projects) that target this
    /// organization.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub member_namespaces: Option<MemberNamespaces>,
    /// `Delete` (default) removes the organization's rows from the store when this object is
    /// deleted; `Orphan` keeps them.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
}

/// Authentication of a root organization. Sub-organizations share it and cannot override it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Authentication {
    /// Single sign-on through an OIDC or SAML identity provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sso: Option<Sso>,
    /// SCIM provisioning of users and groups from the identity provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scim: Option<Scim>,
    /// When set, every user who joins the organization must have an email address in one of
    /// these domains (e.g. `example.com`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(
        length(max = 64),
        inner(
            length(min = 3, max = 253),
            regex(pattern = EMAIL_DOMAIN_PATTERN)
        )
    )]
    pub allowed_email_domains: Vec<String>,
}

/// Single sign-on settings: exactly one of `oidc` or `saml`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.oidc) != has(self.saml)").message("sso needs exactly one of oidc or saml"))]
pub struct Sso {
    /// OpenID Connect provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oidc: Option<Oidc>,
    /// SAML 2.0 provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub saml: Option<Saml>,
    /// When true, members must sign in through SSO (no password login).
    #[serde(default)]
    pub enforced: bool,
}

/// The CEL rule that keeps a user and password out of an authentication URL: the store keeps
/// the URL as written.
pub const URL_NO_USERINFO_RULE: &str = r"!self.matches('^[a-zA-Z][a-zA-Z0-9+.-]*://[^/?#]*@')";
/// What [`URL_NO_USERINFO_RULE`] says when broken.
pub const URL_NO_USERINFO_MESSAGE: &str = "sso URLs carry no user or password (https://user:password@host): the store keeps the URL as written, and credentials belong in a Secret; give the URL without them";

/// The CEL rule that keeps a credential out of a SAML metadata URL's query or fragment: those
/// an app connection's `config` may not hold in a URL, and `code`.
pub const METADATA_URL_NO_CREDENTIAL_RULE: &str = concat!(
    r"!self.matches('[?&#;](?i:",
    crate::credential_url_params!(),
    r"|code)=')"
);

/// OpenID Connect settings. The client secret stays in a Kubernetes Secret.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Oidc {
    /// Issuer URL of the provider (`https://…`, no user, password, query or fragment); its
    /// discovery document is read from there.
    #[schemars(length(min = 9, max = 2048), regex(pattern = HTTPS_URL_PATTERN))]
    #[x_kube(
        validation = Rule::new(URL_NO_USERINFO_RULE).message(URL_NO_USERINFO_MESSAGE),
        validation = Rule::new("!self.matches('[?#]')").message("sso issuerUrl has no query or fragment (OpenID Connect Discovery): give the issuer as the provider publishes it")
    )]
    pub issuer_url: String,
    /// OAuth client id registered with the provider.
    #[schemars(length(min = 1, max = 256))]
    pub client_id: String,
    /// Secret key holding the OAuth client secret.
    pub client_secret_ref: SecretKeyRef,
}

/// SAML 2.0 settings.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Saml {
    /// URL of the identity provider's metadata document (`https://…`, no user or password,
    /// and no credential in its query).
    #[schemars(length(min = 9, max = 2048), regex(pattern = HTTPS_URL_PATTERN))]
    #[x_kube(
        validation = Rule::new(URL_NO_USERINFO_RULE).message(URL_NO_USERINFO_MESSAGE),
        validation = Rule::new(METADATA_URL_NO_CREDENTIAL_RULE).message("sso metadataUrl carries no credential in its query or fragment (token, secret, password, key, signature): the store keeps the URL as written; give one the identity provider serves without it")
    )]
    pub metadata_url: String,
    /// Entity id of the service provider, as registered with the identity provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 1024))]
    pub entity_id: Option<String>,
}

/// SCIM provisioning settings.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!self.enabled || has(self.tokenSecretRef)").message("scim.enabled needs scim.tokenSecretRef: the bearer token the identity provider presents"))]
pub struct Scim {
    /// Accept SCIM provisioning from the identity provider.
    #[serde(default)]
    pub enabled: bool,
    /// Secret key holding the SCIM bearer token. Never copied into the store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_secret_ref: Option<SecretKeyRef>,
}

/// Observed state of an Organization.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrganizationStatus {
    /// Generation, conditions and store id.
    #[serde(flatten)]
    pub common: CommonStatus,
    /// Slug the organization has in the store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slug: Option<String>,
    /// Number of sub-organizations under this root in the store, including any a deleted
    /// SubOrganization left there unmanaged (`deletionPolicy: Orphan`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub_organizations: Option<i64>,
    /// Number of members of the root organization in the store, including any a deleted
    /// OrgMembership left there unmanaged (`deletionPolicy: Orphan`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub members: Option<i64>,
}
