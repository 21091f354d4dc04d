//! Types shared by several kinds: references, delegation, deletion policy, status.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector};
use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The pattern of an organization slug: lowercase letters, digits and hyphens, 1–64 characters.
pub const SLUG_PATTERN: &str = "^[a-z0-9-]+$";
/// The pattern of a display name: 1–64 letters, digits, spaces, `-` and `_`, not starting or
/// ending with a space (the store keeps display names trimmed, and `" Eng"` beside `"Eng"` would
/// be two names that look alike). A letter may carry combining marks, as accented letters typed
/// in decomposed form do (`e` + U+0301); each mark counts as a character of the 64.
pub const DISPLAY_NAME_PATTERN: &str =
    r"^[\p{L}\p{N}_-]([\p{L}\p{M}\p{N} _-]*[\p{L}\p{M}\p{N}_-])?$";
/// The pattern of an email address. Deliberately loose (one `@`, a dot in the domain, no
/// whitespace): the identity provider is the authority on addresses, this only catches typos.
pub const EMAIL_PATTERN: &str = r"^[^@\s]+@[^@\s]+\.[^@\s]+$";
/// An email domain (`acme.example`): DNS labels, at least two.
pub const EMAIL_DOMAIN_PATTERN: &str =
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)+$";
/// An `https://` URL.
pub const HTTPS_URL_PATTERN: &str = r"^https://[^\s]+$";
/// A key of a Secret's data.
pub const SECRET_KEY_PATTERN: &str = r"^[-._a-zA-Z0-9]+$";
/// Kubernetes object names (RFC 1123 subdomain).
pub const DNS_SUBDOMAIN_PATTERN: &str =
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";
/// A Go-style duration as Kubernetes uses them (`90m`, `8h`, `1h30m`), in hours, minutes,
/// seconds and milliseconds: a role lasts no less. The smaller units are left out because
/// the CEL engines read them differently (the API server's takes `µs`, the offline one does
/// not), and a rule that one evaluates and the other cannot would split admission.
pub const DURATION_PATTERN: &str = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$";
/// An RFC 3339 time as both CEL engines and the API server's date-time format read it alike:
/// `T` and `Z` in upper case, seconds, at most nine digits of fraction after a `.`, an offset
/// within a day. The API server's format check alone lets through what its rules then cannot
/// read (`t`, `z`), or read as no other engine does (`,5`, `+25:00`, a 13-digit fraction),
/// and which it refuses depends on whether a rule reads the field.
pub const DATE_TIME_PATTERN: &str = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])$";

/// What each pattern of the schema asks for, in words: `suborg validate` says this rather than
/// quoting the regex. A test checks that every pattern of the CRDs is listed.
pub const PATTERN_RULES: &[(&str, &str)] = &[
    (
        SLUG_PATTERN,
        "a slug: lowercase letters, digits and hyphens",
    ),
    (
        DISPLAY_NAME_PATTERN,
        "a display name: letters, digits, spaces, '-' and '_', not starting or ending with a space",
    ),
    (
        EMAIL_PATTERN,
        "an email address: one '@', a dot in the domain, no whitespace",
    ),
    (
        DNS_SUBDOMAIN_PATTERN,
        "an object name: lowercase letters, digits, '-' and '.', starting and ending with a letter or digit",
    ),
    (DURATION_PATTERN, "a duration such as 90m, 8h or 1h30m"),
    (
        DATE_TIME_PATTERN,
        "an RFC 3339 time such as 2026-01-01T09:00:00Z: 'T' and 'Z' in upper case, seconds, at most 9 digits of fraction after a '.', an offset such as +02:00",
    ),
    (
        super::group::NAMESPACE_PATTERN,
        "a namespace name: lowercase letters, digits and '-', starting and ending with a letter or digit",
    ),
    (
        SECRET_KEY_PATTERN,
        "a Secret key: letters, digits, '-', '_' and '.'",
    ),
    (
        EMAIL_DOMAIN_PATTERN,
        "a domain name with at least one dot: lowercase letters, digits, '-' and '.'",
    ),
    (HTTPS_URL_PATTERN, "an https:// URL without whitespace"),
];

/// What `pattern` asks for, in words, when [`PATTERN_RULES`] lists it.
pub fn pattern_rule(pattern: &str) -> Option<&'static str> {
    PATTERN_RULES
        .iter()
        .find(|(p, _)| *p == pattern)
        .map(|(_, words)| *words)
}

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
    #[schemars(schema_with = "selector_schema")]
    pub selector: Option<LabelSelector>,
}

/// A label key: an optional DNS-subdomain prefix and `/`, then a name of at most 63 letters,
/// digits, `-`, `_` and `.`, alphanumeric at both ends.
const LABEL_KEY_PATTERN: &str = r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$";
/// What breaking [`LABEL_KEY_PATTERN`] means, in words.
pub const LABEL_KEY_RULE: &str = "must be a label key: an optional DNS subdomain and '/', then at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit";
/// A label value: empty, or at most 63 letters, digits, `-`, `_` and `.`, alphanumeric at both
/// ends.
const LABEL_VALUE_PATTERN: &str = r"^(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?$";
/// What breaking [`LABEL_VALUE_PATTERN`] means, in words.
pub const LABEL_VALUE_RULE: &str = "must be a label value: empty, or at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit";
/// What a selector requirement with `In` or `NotIn` and no values breaks.
pub const SELECTOR_VALUES_NEEDED: &str = "operators In and NotIn need at least one value";
/// What a selector requirement with `Exists` or `DoesNotExist` and values breaks.
pub const SELECTOR_VALUES_UNWANTED: &str = "operators Exists and DoesNotExist take no values";
/// How many terms a delegation selector may have. Bounds the cost of its CEL rules, which the API
/// server estimates before it accepts the CRD; a namespace selector with more is a mistake.
const SELECTOR_MAX_TERMS: u64 = 32;

/// The namespace selector's schema: Kubernetes' `LabelSelector`, with what Kubernetes checks on
/// its own selectors (operators, values per operator, label syntax) made part of the schema, so
/// a selector the controller could only refuse is refused by `kubectl apply` instead. Label
/// syntax is checked by CEL rules rather than `pattern`, so the message states the rule instead
/// of quoting a regex.
fn selector_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    // A regex inside a single-quoted CEL string: CEL reads `\\` as one backslash.
    let cel = |pattern: &str| pattern.replace('\\', "\\\\");
    let key_ok = |x: &str| format!("{x}.matches('{}')", cel(LABEL_KEY_PATTERN));
    let value_ok = |x: &str| format!("{x}.matches('{}')", cel(LABEL_VALUE_PATTERN));
    let rule =
        |rule: String, message: String| serde_json::json!({"rule": rule, "message": message});
    let labels_key = rule(
        format!("self.all(k, {})", key_ok("k")),
        format!("every key {LABEL_KEY_RULE}"),
    );
    let labels_value = rule(
        format!("self.all(k, {})", value_ok("self[k]")),
        format!("every value {LABEL_VALUE_RULE}"),
    );
    let key = rule(key_ok("self"), LABEL_KEY_RULE.to_owned());
    let values = rule(
        format!("self.all(v, {})", value_ok("v")),
        format!("every value {LABEL_VALUE_RULE}"),
    );
    let value = serde_json::json!({"type": "string", "maxLength": 63});
    schemars::json_schema!({
        "description": "Label selector for admitted namespaces when `from` is `Selector`. When omitted, it selects namespaces labelled `suborg.io/organization=<metadata.name of this organization>`. Its terms are ANDed; an empty selector admits every namespace.",
        "type": "object",
        "nullable": true,
        "properties": {
            "matchLabels": {
                "description": "Labels a namespace must have, each with exactly this value.",
                "type": "object",
                "maxProperties": SELECTOR_MAX_TERMS,
                "additionalProperties": value,
                "x-kubernetes-validations": [labels_key, labels_value],
            },
            "matchExpressions": {
                "description": "Requirements a namespace's labels must meet.",
                "type": "array",
                "maxItems": SELECTOR_MAX_TERMS,
                "items": {
                    "type": "object",
                    "required": ["key", "operator"],
                    "properties": {
                        "key": {
                            "description": "The label key the requirement applies to.",
                            "type": "string",
                            "maxLength": 317,
                            "x-kubernetes-validations": [key],
                        },
                        "operator": {
                            "description": "`In` and `NotIn` compare the label with `values`; `Exists` and `DoesNotExist` test whether the namespace has the label.",
                            "type": "string",
                            "enum": ["In", "NotIn", "Exists", "DoesNotExist"],
                        },
                        "values": {
                            "description": "Values for `In` and `NotIn` (at least one); none for `Exists` and `DoesNotExist`.",
                            "type": "array",
                            "maxItems": SELECTOR_MAX_TERMS,
                            "items": value,
                            "x-kubernetes-validations": [values],
                        },
                    },
                    "x-kubernetes-validations": [
                        {
                            "rule": "(self.operator != 'In' && self.operator != 'NotIn') || (has(self.values) && size(self.values) > 0)",
                            "message": SELECTOR_VALUES_NEEDED,
                        },
                        {
                            "rule": "(self.operator != 'Exists' && self.operator != 'DoesNotExist') || !has(self.values) || size(self.values) == 0",
                            "message": SELECTOR_VALUES_UNWANTED,
                        },
                    ],
                },
            },
        },
    })
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
        regex(pattern = super::group::NAMESPACE_PATTERN)
    )]
    pub namespace: String,
    /// Key within the Secret's data.
    #[schemars(length(min = 1, max = 253), regex(pattern = SECRET_KEY_PATTERN))]
    pub key: String,
}

/// Condition type every kind reports: the object is in the store and matches its spec.
pub const CONDITION_READY: &str = "Ready";

/// kstatus's condition for work still under way: set `True` beside a `Ready` that is `False`
/// while the object waits for another object or for the store, which needs no change to it.
/// Absent otherwise.
pub const CONDITION_RECONCILING: &str = "Reconciling";

/// kstatus's condition for work that cannot go on: set `True` beside a `Ready` that is `False`
/// because the object (or the objects it names) breaks a rule, or its rows conflict with the
/// store, which only a change to the manifests or the store mends. Absent otherwise.
pub const CONDITION_STALLED: &str = "Stalled";

/// The schema of `status.conditions`: a list-map keyed by `type`, as kstatus, Argo CD and Flux
/// expect, so server-side apply merges conditions by type.
pub fn conditions_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "description": "Conditions of the object (a list-map keyed by type). `Ready` says whether the object is synced into the store; its reason says why not. When it is not, `Reconciling` (waiting for another object or the store) or `Stalled` (a rule is broken or the store conflicts: a change is needed) is `True` beside it, with the same reason, as kstatus reads them.",
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

/// The URL query (or fragment) parameters that carry a credential, as a regular expression's
/// alternatives for the parameter's whole name: what an app connection's `config` and a SAML
/// metadata URL may not hold. A name is read as a key of `config` is, by its last word: one
/// that ends in a secret, token, password or credential, joined or not (`access_token`,
/// `db_password`, `sslpassword`, `authToken`, `X-Amz-Security-Token`); a signature, `auth`,
/// `pw`, `pass`, `otp`, `jwt`, `bearer`, `cookie`, `dsn` or a session id as its last word
/// (`sig`, `X-Amz-Signature`, `basic_auth`, `session_id`); a key, alone or after a word that
/// makes it a credential (`key`, `apiKey`, `x_api_key`), not any key (`sort_key`,
/// `partitionKey`); each with a number or an encoding after it as keys may (`password1`,
/// `token_b64`, `apikey_value`). A macro, so that the CEL rules built from it stay
/// `&'static str` constants (`concat!`).
#[macro_export]
#[doc(hidden)]
macro_rules! credential_url_params {
    () => {
        concat!(
            "(?:",
            $crate::credential_url_joined!(),
            "|",
            $crate::credential_url_worded!(),
            ")",
            $crate::credential_url_suffix!()
        )
    };
}

/// The first part of [`credential_url_params`]: names that end in a credential's word, joined
/// or not. Apart, so a rule over every value of a map can take each part alone within the API
/// server's cost budget.
#[macro_export]
#[doc(hidden)]
macro_rules! credential_url_joined {
    () => {
        "[^=&#;?/]*(?:secrets?|tokens?|passwords?|passwd|passphrase|passcode|pwd|credentials?)"
    };
}

/// The second part of [`credential_url_params`]: short words and keys, as the name's last
/// word.
#[macro_export]
#[doc(hidden)]
macro_rules! credential_url_worded {
    () => {
        "(?:[^=&#;?/]*[-_.])?(?:sig|signature|auth|pw|pass|otp|totp|jwt|bearer|cookies?|dsn|sas|session[-_.]?ids?)|(?:[^=&#;?/]*[-_.])?(?:api|access|secret|private|signing|client|auth|master|encryption|shared|session|ssh|sas)[-_.]?keys?|keys?"
    };
}

/// What may follow a credential's word in a parameter's name: a number or an encoding.
#[macro_export]
#[doc(hidden)]
macro_rules! credential_url_suffix {
    () => {
        "(?:[-_.]?(?:[0-9]+|values?|data|b64|base64|raw|plain|text|strings?))?"
    };
}
