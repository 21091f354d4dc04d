//! `AppConnection`, `Gateway` and `Relay`: what one organization (root or sub) configures for
//! itself to reach the outside world. Each belongs to the organization its `organizationRef`
//! names and is never inherited: a sub-organization does not see its root's, nor a root its
//! sub-organizations'.
//!
//! The store holds their non-secret configuration only. Credentials stay in a Kubernetes Secret
//! in the object's own namespace, named by `credentialsRef`; suborg records the reference and
//! never reads the Secret, so they reach neither the store, nor logs, nor status.

use std::collections::BTreeMap;

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{
    CommonStatus, DISPLAY_NAME_PATTERN, DNS_SUBDOMAIN_PATTERN, DeletionPolicy, OrganizationRef,
    SLUG_PATTERN,
};
use super::group::NAMESPACE_PATTERN;

/// The CEL rule that keeps credentials out of `config`, told by the key's last word (after
/// `-`, `_`, `.` or a camelCase capital, or the whole key): `secret`, `token`, `password`,
/// `pwd`, `auth`, `key`, `credentials`, `cookie`, `jwt`, `kubeconfig`, `dsn`, `bearer` and the
/// like, or a key ending in `connectionString` or `serviceAccountJson`; and a key written as
/// one word that ends in `secret`, `token`, `password`, `credentials`, or `apikey` and the like
/// (`clientsecret`, `APIKEY`, `authtoken`). `DB_PASSWORD`, `clientSecret`, `storageAccountKey`
/// are refused; `tokenUrl`, `secretName`, `passwordPolicy`
/// and `accessKeyId`, which name or point at something, are not, nor are keys that are not
/// secrets (`publicKey`, `partitionKey`, `routingKey`, `sortKey`, `primaryKey`, `kmsKey`).
pub const CONFIG_NO_CREDENTIALS_RULE: &str = r"self.all(k, !k.matches('(?:^|[-_.])(?i:secrets?|tokens?|pass|passwords?|passwd|passphrase|passcode|pwd|auth|authorization|credentials?|cookies?|jwt|kubeconfig|dsn|bearer|keys?)$|[a-z0-9](?:Secrets?|Tokens?|Pass|Passwords?|Passwd|Passphrase|Passcode|Pwd|Auth|Authorization|Credentials?|Cookies?|Jwt|JWT|Kubeconfig|Dsn|DSN|Bearer|Keys?)$|(?i:secrets?|tokens?|passwords?|passwd|passphrase|passcode|credentials?|kubeconfig|(?:api|access|secret|private|signing|client|auth|master|encryption|shared|session|ssh)[-_.]?keys?|connection[-_.]?strings?|service[-_.]?account[-_.]?json)$') || k.matches('(?i:(?:public|partition|routing|sort|primary|kms)[-_.]?keys?)$'))";
/// The CEL rule that keeps a password out of a URL in `config` (`postgres://app:pw@db/app`).
pub const CONFIG_NO_URL_PASSWORD_RULE: &str =
    r"self.all(k, !self[k].matches('[a-zA-Z][a-zA-Z0-9+.-]*://[^/@ :]*:[^/@ ]+@'))";
/// What [`CONFIG_NO_URL_PASSWORD_RULE`] says when broken.
pub const CONFIG_NO_URL_PASSWORD_MESSAGE: &str = "holds non-secret settings only: a URL with a password (scheme://user:password@host) belongs in the Secret named by credentialsRef; give the URL without it";
/// More keys that name a credential, which [`CONFIG_NO_CREDENTIALS_RULE`] does not: short
/// words as a key's own word (`pw`, `otp`, `sas`, `pass_phrase`, `privkey`, `sessionId`), and
/// credential words followed by a number or words for their encoding (`password1`,
/// `token_2`, `apikey_value`, `secretData`, `privateKeyB64`, `private_key_pem_b64`), and a
/// key in PEM, DER or JWK form (`tls_key_pem`, `keyPem`; not a public key's).
pub const CONFIG_NO_CREDENTIALS_MORE_RULE: &str = r"self.all(k, !k.matches('(?:^|[-_.])(?i:pw|otp|totp|sas|pass[-_.]phrase|privkeys?|session[-_.]?ids?)(?i:[-_.]?(?:[0-9]+|values?|data|b64|base64|raw|plain|text|strings?))?$|(?:^|[-_.])(?i:pwd|pass)(?i:[-_.]?(?:[0-9]+|values?|data|b64|base64|raw|plain|text|strings?))$|[a-z0-9](?:Pw|PW|Otp|OTP|Totp|Sas|SAS|PassPhrase|Privkey|PrivKey|SessionId|SessionID)(?:[-_.]?(?:[0-9]+|Values?|Data|B64|Base64|Raw|Plain|Text|Strings?))?$|[a-z0-9](?:Pwd|Pass)(?:[-_.]?(?:[0-9]+|Values?|Data|B64|Base64|Raw|Plain|Text|Strings?))$|(?i:secrets?|tokens?|passwords?|passwd|passphrase|credentials?|api[-_.]?keys?|priv(?:ate)?[-_.]?keys?)(?i:(?:[-_.]?(?:[0-9]+|values?|data|b64|base64|raw|plain|text|strings?|pem|der|jwk|json|contents?))+)$|(?:(?:^|[-_.])(?i:keys?)[-_.]?(?i:pem|der|jwk)|[a-z0-9]Keys?[-_.]?(?:Pem|PEM|Der|DER|Jwk|JWK)|^keys?(?:Pem|PEM|Der|DER|Jwk|JWK))(?i:[-_.]?(?:b64|base64))?$') || k.matches('(?i:(?:public|pub)[-_.]?keys?[-_.]?(?:pem|der|jwk))'))";
/// The CEL rule that keeps values that are credentials out of `config`, whatever their key: a
/// private key (`-----BEGIN … PRIVATE KEY-----`, a PGP `PRIVATE KEY BLOCK`), a password in a
/// connection string (`Server=db;Password=…`), or a credential in a URL's query or fragment
/// (`?access_token=…`, `&sig=…`, `&X-Amz-Signature=…`, `?key=…`, `;token=…`,
/// `#access_token=…`).
pub const CONFIG_NO_SECRET_VALUE_RULE: &str = concat!(
    r"self.all(k, !self[k].matches('-----BEGIN[A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----|(?:^|[; \t])[ \t]*(?i:password|pwd)[ \t]*=|[?&#;](?i:",
    "(?:",
    crate::credential_url_joined!(),
    ")",
    crate::credential_url_suffix!(),
    ")='))"
);
/// The rest of [`CONFIG_NO_SECRET_VALUE_RULE`]'s query parameters (short words and keys): a
/// rule of its own, as one over every value of `config` may cost only so much.
pub const CONFIG_NO_SECRET_PARAM_RULE: &str = concat!(
    r"self.all(k, !self[k].matches('[?&#;](?i:",
    "(?:",
    crate::credential_url_worded!(),
    ")",
    crate::credential_url_suffix!(),
    ")='))"
);
/// What [`CONFIG_NO_SECRET_VALUE_RULE`] says when broken.
pub const CONFIG_NO_SECRET_VALUE_MESSAGE: &str = "holds non-secret settings only: a private key, or a password or token in a connection string or a URL's query or fragment, belongs in the Secret named by credentialsRef";
/// What [`CONFIG_NO_CREDENTIALS_RULE`] says when broken.
pub const CONFIG_NO_CREDENTIALS_MESSAGE: &str = "holds non-secret settings only: a key that names a password, secret, token or key belongs in the Secret named by credentialsRef";

/// A reference to an object of a known kind, by name, in this object's namespace unless
/// `namespace` says otherwise.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LocalObjectRef {
    /// `metadata.name` of the referenced object.
    #[schemars(length(min = 1, max = 253), regex(pattern = DNS_SUBDOMAIN_PATTERN))]
    pub name: String,
    /// Its namespace; defaults to this object's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63), regex(pattern = NAMESPACE_PATTERN))]
    pub namespace: Option<String>,
}

impl LocalObjectRef {
    /// `namespace/name`, the namespace defaulting to `own`.
    pub fn qualified(&self, own: &str) -> String {
        format!("{}/{}", self.namespace.as_deref().unwrap_or(own), self.name)
    }
}

/// A Kubernetes Secret holding credentials. It must be in the referring object's namespace
/// (as with the Gateway API's references without a grant): RBAC in one namespace never reaches
/// another team's Secrets through suborg.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CredentialsRef {
    /// Name of the Secret.
    #[schemars(length(min = 1, max = 253), regex(pattern = DNS_SUBDOMAIN_PATTERN))]
    pub name: String,
    /// Namespace of the Secret: omit it, or give this object's own namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63), regex(pattern = NAMESPACE_PATTERN))]
    pub namespace: Option<String>,
}

/// An app connection: how one organization's projects reach an external service (a cloud
/// account, a code host, a database).
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "suborg.io",
    version = "v1alpha1",
    kind = "AppConnection",
    plural = "appconnections",
    shortname = "appconn",
    category = "suborg-all",
    namespaced,
    status = "OrgResourceStatus",
    cel,
    doc = "An app connection of one Organization or SubOrganization, usable by that organization's projects only. Credentials stay in the referenced Secret.",
    printcolumn = r#"{"name":"App","type":"string","jsonPath":".spec.app"}"#,
    printcolumn = r#"{"name":"Kind","type":"string","jsonPath":".spec.organizationRef.kind"}"#,
    printcolumn = r#"{"name":"Organization","type":"string","jsonPath":".spec.organizationRef.name"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","priority":1,"jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct AppConnectionSpec {
    /// The Organization or SubOrganization that owns the connection. Immutable.
    #[x_kube(validation = Rule::new("self == oldSelf").message("is immutable: a connection stays with the organization that created it"))]
    pub organization_ref: OrganizationRef,
    /// The service connected to (`aws`, `github`, `postgres`, ...): 1–64 lowercase letters,
    /// digits and hyphens.
    #[schemars(length(min = 1, max = 64), regex(pattern = SLUG_PATTERN))]
    pub app: String,
    /// Display name: 1–64 letters, digits, spaces, `-` and `_`, with no space
    /// at either end. Defaults to the name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64), regex(pattern = DISPLAY_NAME_PATTERN))]
    pub display_name: Option<String>,
    /// Non-secret settings (region, account id, host, ...), at most 64, each value at most
    /// 4096 characters. Credentials go in the Secret named by `credentialsRef`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 64, "additionalProperties" = {"type": "string", "maxLength": 4096}))]
    #[x_kube(
        validation = Rule::new(CONFIG_NO_CREDENTIALS_RULE).message(CONFIG_NO_CREDENTIALS_MESSAGE),
        validation = Rule::new(CONFIG_NO_CREDENTIALS_MORE_RULE).message(CONFIG_NO_CREDENTIALS_MESSAGE),
        validation = Rule::new(CONFIG_NO_URL_PASSWORD_RULE).message(CONFIG_NO_URL_PASSWORD_MESSAGE),
        validation = Rule::new(CONFIG_NO_SECRET_VALUE_RULE).message(CONFIG_NO_SECRET_VALUE_MESSAGE),
        validation = Rule::new(CONFIG_NO_SECRET_PARAM_RULE).message(CONFIG_NO_SECRET_VALUE_MESSAGE),
        validation = Rule::new("self.all(k, size(k) <= 253 && size(self[k]) <= 4096)").message("keys are at most 253 characters and values at most 4096")
    )]
    pub config: BTreeMap<String, String>,
    /// The Secret, in this namespace, that holds the connection's credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_ref: Option<CredentialsRef>,
    /// `Delete` (default) removes the connection from the store when this object is deleted;
    /// `Orphan` keeps it.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
}

/// A gateway: a network entry point into one organization's private infrastructure,
/// optionally reached through one of the same organization's relays.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "suborg.io",
    version = "v1alpha1",
    kind = "Gateway",
    plural = "gateways",
    shortname = "sgw",
    category = "suborg-all",
    namespaced,
    status = "OrgResourceStatus",
    cel,
    doc = "A gateway of one Organization or SubOrganization, usable by that organization's projects only.",
    printcolumn = r#"{"name":"Kind","type":"string","jsonPath":".spec.organizationRef.kind"}"#,
    printcolumn = r#"{"name":"Organization","type":"string","jsonPath":".spec.organizationRef.name"}"#,
    printcolumn = r#"{"name":"Relay","type":"string","jsonPath":".spec.relayRef.name"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","priority":1,"jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct GatewaySpec {
    /// The Organization or SubOrganization that owns the gateway. Immutable.
    #[x_kube(validation = Rule::new("self == oldSelf").message("is immutable: a gateway stays with the organization that created it"))]
    pub organization_ref: OrganizationRef,
    /// Display name: 1–64 letters, digits, spaces, `-` and `_`, with no space
    /// at either end. Defaults to the name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64), regex(pattern = DISPLAY_NAME_PATTERN))]
    pub display_name: Option<String>,
    /// A Relay of the same organization the gateway connects through.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relay_ref: Option<LocalObjectRef>,
    /// Non-secret settings, as for an AppConnection.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 64, "additionalProperties" = {"type": "string", "maxLength": 4096}))]
    #[x_kube(
        validation = Rule::new(CONFIG_NO_CREDENTIALS_RULE).message(CONFIG_NO_CREDENTIALS_MESSAGE),
        validation = Rule::new(CONFIG_NO_CREDENTIALS_MORE_RULE).message(CONFIG_NO_CREDENTIALS_MESSAGE),
        validation = Rule::new(CONFIG_NO_URL_PASSWORD_RULE).message(CONFIG_NO_URL_PASSWORD_MESSAGE),
        validation = Rule::new(CONFIG_NO_SECRET_VALUE_RULE).message(CONFIG_NO_SECRET_VALUE_MESSAGE),
        validation = Rule::new(CONFIG_NO_SECRET_PARAM_RULE).message(CONFIG_NO_SECRET_VALUE_MESSAGE),
        validation = Rule::new("self.all(k, size(k) <= 253 && size(self[k]) <= 4096)").message("keys are at most 253 characters and values at most 4096")
    )]
    pub config: BTreeMap<String, String>,
    /// The Secret, in this namespace, that holds the gateway's credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_ref: Option<CredentialsRef>,
    /// `Delete` (default) or `Orphan`, as for the other kinds.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
}

/// A relay: a server that gateways of one organization connect through.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "suborg.io",
    version = "v1alpha1",
    kind = "Relay",
    plural = "relays",
    shortname = "srelay",
    category = "suborg-all",
    namespaced,
    status = "OrgResourceStatus",
    cel,
    doc = "A relay of one Organization or SubOrganization, usable by that organization's gateways only.",
    printcolumn = r#"{"name":"Kind","type":"string","jsonPath":".spec.organizationRef.kind"}"#,
    printcolumn = r#"{"name":"Organization","type":"string","jsonPath":".spec.organizationRef.name"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","priority":1,"jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct RelaySpec {
    /// The Organization or SubOrganization that owns the relay. Immutable.
    #[x_kube(validation = Rule::new("self == oldSelf").message("is immutable: a relay stays with the organization that created it"))]
    pub organization_ref: OrganizationRef,
    /// Display name: 1–64 letters, digits, spaces, `-` and `_`, with no space
    /// at either end. Defaults to the name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64), regex(pattern = DISPLAY_NAME_PATTERN))]
    pub display_name: Option<String>,
    /// Non-secret settings, as for an AppConnection.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 64, "additionalProperties" = {"type": "string", "maxLength": 4096}))]
    #[x_kube(
        validation = Rule::new(CONFIG_NO_CREDENTIALS_RULE).message(CONFIG_NO_CREDENTIALS_MESSAGE),
        validation = Rule::new(CONFIG_NO_CREDENTIALS_MORE_RULE).message(CONFIG_NO_CREDENTIALS_MESSAGE),
        validation = Rule::new(CONFIG_NO_URL_PASSWORD_RULE).message(CONFIG_NO_URL_PASSWORD_MESSAGE),
        validation = Rule::new(CONFIG_NO_SECRET_VALUE_RULE).message(CONFIG_NO_SECRET_VALUE_MESSAGE),
        validation = Rule::new(CONFIG_NO_SECRET_PARAM_RULE).message(CONFIG_NO_SECRET_VALUE_MESSAGE),
        validation = Rule::new("self.all(k, size(k) <= 253 && size(self[k]) <= 4096)").message("keys are at most 253 characters and values at most 4096")
    )]
    pub config: BTreeMap<String, String>,
    /// The Secret, in this namespace, that holds the relay's credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_ref: Option<CredentialsRef>,
    /// `Delete` (default) or `Orphan`, as for the other kinds.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
}

/// Observed state of an AppConnection, Gateway or Relay.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrgResourceStatus {
    /// Generation, conditions and store id.
    #[serde(flatten)]
    pub common: CommonStatus,
}

/// What the rules and the store need of the three per-organization kinds.
pub trait OrgResource: kube::Resource<DynamicType = ()> {
    /// `AppConnection`, `Gateway` or `Relay`.
    const KIND: &'static str;
    /// The owner.
    fn organization_ref(&self) -> &OrganizationRef;
    /// Display name, if set.
    fn display_name(&self) -> Option<&str>;
    /// Non-secret settings.
    fn config(&self) -> &BTreeMap<String, String>;
    /// The Secret with the credentials.
    fn credentials_ref(&self) -> Option<&CredentialsRef>;
    /// The app of a connection.
    fn app(&self) -> Option<&str> {
        None
    }
    /// The relay of a gateway.
    fn relay_ref(&self) -> Option<&LocalObjectRef> {
        None
    }
    /// Deletion policy.
    fn deletion_policy(&self) -> DeletionPolicy;
    /// The common part of the current status.
    fn status_common(&self) -> Option<&CommonStatus>;
}

macro_rules! org_resource {
    ($kind:ident $(, $extra:item)*) => {
        impl OrgResource for $kind {
            const KIND: &'static str = stringify!($kind);
            fn organization_ref(&self) -> &OrganizationRef {
                &self.spec.organization_ref
            }
            fn display_name(&self) -> Option<&str> {
                self.spec.display_name.as_deref()
            }
            fn config(&self) -> &BTreeMap<String, String> {
                &self.spec.config
            }
            fn credentials_ref(&self) -> Option<&CredentialsRef> {
                self.spec.credentials_ref.as_ref()
            }
            fn deletion_policy(&self) -> DeletionPolicy {
                self.spec.deletion_policy
            }
            fn status_common(&self) -> Option<&CommonStatus> {
                self.status.as_ref().map(|s| &s.common)
            }
            $($extra)*
        }
    };
}

org_resource!(
    AppConnection,
    fn app(&self) -> Option<&str> {
        Some(&self.spec.app)
    }
);
org_resource!(
    Gateway,
    fn relay_ref(&self) -> Option<&LocalObjectRef> {
        self.spec.relay_ref.as_ref()
    }
);
org_resource!(Relay);
