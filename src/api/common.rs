//! Types shared by several kinds: references, delegation, deletion policy, status.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector};
use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The pattern of an organization slug: lowercase letters, digits and hyphens, 1–64 characters.
pub const SLUG_PATTERN: &str = "^[a-z0-9-]+$";
/// The pattern of a display name: 1–64 letters, digits, spaces, `-` and `_`, not starting or
/// ending with a space (the store keeps display names trimmed, and `" Eng"` beside `"Eng"` would
/// be two names that look alike).
pub const DISPLAY_NAME_PATTERN: &str = r"^[\p{L}\p{N}_-]([\p{L}\p{N} _-]*[\p{L}\p{N}_-])?$";
/// The pattern of an email address. Deliberately loose (one `@`, a dot in the domain, no
/// whitespace): the identity provider is the authority on addresses, this only catches typos.
pub const EMAIL_PATTERN: &str = r"^[^@\s]+@[^@\s]+\.[^@\s]+$";
/// Kubernetes object names (RFC 1123 subdomain).
pub const DNS_SUBDOMAIN_PATTERN: &str =
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";
/// A Go-style duration as Kubernetes uses them (`90m`, `8h`, `1h30m`).
pub const DURATION_PATTERN: &str = r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$";

/// The slug an object is addressed by (`spec.slug`, or `metadata.name` when it is unset) stays
/// what it was: a rule on the whole object, since adding or removing `spec.slug` changes it as
/// much as editing it does.
pub const SLUG_KEPT_RULE: &str = "(has(self.spec.slug) ? self.spec.slug : self.metadata.name) == (has(oldSelf.spec.slug) ? oldSelf.spec.slug : oldSelf.metadata.name)";
/// What [`SLUG_KEPT_RULE`] says when broken.
pub const SLUG_KEPT_MESSAGE: &str = "is immutable: the slug (spec.slug, or metadata.name while spec.slug is unset) is how API clients address the object; spec.slug may only be set to, or removed in favour of, the slug it already has";

/// The kind of organization an object points at.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema, Default)]
pub enum OrganizationKind {
    /// A root organization.
    #[default]
    Organization,
    /// A sub-organization, child of one root organization.
    SubOrganization,
}

impl OrganizationKind {
    /// The kind's name as it appears in manifests.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Organization => "Organization",
            Self::SubOrganization => "SubOrganization",
        }
    }
}

impl std::fmt::Display for OrganizationKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A reference to an Organization or a SubOrganization (both are cluster-scoped).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrganizationRef {
    /// Kind of the referenced organization: `Organization` (a root) or `SubOrganization`.
    #[serde(default)]
    pub kind: OrganizationKind,
    /// `metadata.name` of the referenced organization.
    #[schemars(length(min = 1, max = 253), regex(pattern = DNS_SUBDOMAIN_PATTERN))]
    pub name: String,
}

/// Where objects that target an organization may live.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema, Default)]
pub enum NamespacesFrom {
    /// Any namespace of the cluster.
    All,
    /// Namespaces matched by `selector` (by default, those labelled
    /// `suborg.io/organization=<name of the organization>`).
    #[default]
    Selector,
}

/// Which namespaces may hold objects (memberships, later groups and projects) that target this
/// organization. Follows the Gateway API's `allowedRoutes.namespaces`: a team lead with RBAC in
/// a selected namespace administers the organization without cluster-wide rights.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.from == 'Selector' || !has(self.selector)").message("selector is only used with from: Selector").field_path(".selector"))]
pub struct MemberNamespaces {
    /// `All` admits every namespace; `Selector` (the default) admits those matched by `selector`.
    #[serde(default)]
    pub from: NamespacesFrom,
    /// Label selector for admitted namespaces when `from` is `Selector`. When omitted, it selects
    /// namespaces labelled `suborg.io/organization=<metadata.name of this organization>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,
}

/// What happens to the store's rows when the Kubernetes object is deleted.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema, Default)]
pub enum DeletionPolicy {
    /// Remove the rows from the store (the default).
    #[default]
    Delete,
    /// Keep the rows in the store; only the Kubernetes object goes.
    Orphan,
}

/// A key of a Kubernetes Secret. Credentials stay in the Secret: suborg stores only the reference.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// Name of the Secret.
    #[schemars(length(min = 1, max = 253), regex(pattern = DNS_SUBDOMAIN_PATTERN))]
    pub name: String,
    /// Namespace of the Secret.
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub namespace: String,
    /// Key within the Secret's data.
    #[schemars(length(min = 1, max = 253), regex(pattern = r"^[-._a-zA-Z0-9]+$"))]
    pub key: String,
}

/// Condition type every kind reports: the object is in the store and matches its spec.
pub const CONDITION_READY: &str = "Ready";

/// The schema of `status.conditions`: a list-map keyed by `type`, as kstatus, Argo CD and Flux
/// expect, so server-side apply merges conditions by type.
pub fn conditions_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "description": "Conditions of the object (a list-map keyed by type). `Ready` says whether the object is synced into the store; its reason says why not.",
        "type": "array",
        "x-kubernetes-list-type": "map",
        "x-kubernetes-list-map-keys": ["type"],
        "items": {
            "type": "object",
            "required": ["type", "status", "lastTransitionTime", "reason", "message"],
            "properties": {
                "type": {"description": "Type of the condition, e.g. Ready.", "type": "string", "maxLength": 316},
                "status": {"description": "True, False or Unknown.", "type": "string", "enum": ["True", "False", "Unknown"]},
                "reason": {"description": "PascalCase reason for the last transition.", "type": "string", "maxLength": 1024},
                "message": {"description": "Human-readable explanation.", "type": "string", "maxLength": 32768},
                "lastTransitionTime": {"description": "When the status last changed.", "type": "string", "format": "date-time"},
                "observedGeneration": {"description": "metadata.generation the condition was computed from.", "type": "integer", "format": "int64"}
            }
        }
    })
}

/// Status fields common to every kind.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CommonStatus {
    /// The `metadata.generation` this status was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Conditions of the object; `Ready` at least.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Vec<Condition>,
    /// Identifier the store assigned to this object's row.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}
