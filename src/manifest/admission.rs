//! One document on its own, as the API server's admission sees it: type metadata, object
//! names, the kind's structural schema and its CEL rules. Nothing here needs another object.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use kube::core::cel::{ErrorKind, Validator};
use kube::{CustomResourceExt, Resource};
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::{cel, schema};
use crate::api::{
    self, AppConnection, Gateway, Group, MachineIdentity, OrgMembership, Organization, Project,
    ProjectMembership, Relay, SubOrganization,
};
use crate::domain::delegation::NAMESPACE_NAME_LABEL;
use crate::domain::model::ObjectSet;
use crate::domain::problem::{ObjectKey, Problem, Reason};
use crate::domain::slug::{is_dns_label, is_dns_subdomain};

/// Everything needed to admit one kind: its structural schema and its compiled CEL rules.
pub(super) struct KindSchema {
    namespaced: bool,
    structural: schema::Node,
    rules: Vec<cel::RuleSite>,
}

fn kind_schema<K: CustomResourceExt>() -> KindSchema {
    let crd = K::crd();
    let raw = serde_json::to_value(
        crd.spec.versions[0]
            .schema
            .as_ref()
            .and_then(|s| s.open_api_v3_schema.as_ref()),
    )
    .expect("a CRD schema serializes");
    KindSchema {
        namespaced: crd.spec.scope == "Namespaced",
        structural: schema::compile(&raw),
        rules: cel::rule_sites(&raw, false),
    }
}

macro_rules! kinds {
    ($($kind:ident $field:ident,)*) => {
        /// Each kind's schema and CEL rules, named as the kind's list in [`ObjectSet`].
        pub(super) struct Schemas {
            $($field: KindSchema,)*
            validator: Validator,
        }

        pub(super) fn schemas() -> &'static Schemas {
            static SCHEMAS: OnceLock<Schemas> = OnceLock::new();
            SCHEMAS.get_or_init(|| Schemas {
                $($field: kind_schema::<$kind>(),)*
                validator: Validator::new(),
            })
        }

        /// An admitted object.
        pub(super) enum Typed {
            $($kind($kind),)*
        }

        impl Typed {
            /// Adds the object to its kind's list in `set`.
            pub(super) fn add_to(self, set: &mut ObjectSet) {
                match self {
                    $(Typed::$kind(o) => set.$field.push(o),)*
                }
            }
        }

        /// Admits `value`, an object of `kind`, one of [`api::KINDS`].
        fn admit_kind(kind: &str, value: Value, default_namespace: &str) -> Item {
            let s = schemas();
            match kind {
                $(stringify!($kind) => admit::<$kind>(value, &s.$field, default_namespace, Typed::$kind),)*
                _ => unreachable!("{kind} is one of api::KINDS, checked by the caller"),
            }
        }
    };
}
api::for_each_kind!(kinds);

/// What one document turned into, before duplicates are looked for.
pub(super) enum Item {
    /// Another kind, not ours to check.
    Ignored,
    /// A problem that stops the document; `counted` when it is a suborg object nonetheless.
    Problem { counted: bool, problem: Problem },
    /// A Namespace and its labels.
    Namespace(String, BTreeMap<String, String>),
    /// A suborg object: its problems, and its typed form when it has none.
    Object {
        key: ObjectKey,
        problems: Vec<Problem>,
        typed: Option<Box<Typed>>,
    },
}

/// What the API server's admission finds in one document on its own: type metadata, the
/// structural schema and the CEL rules of its kind; nothing that needs another object. `None`
/// for a document of another kind (a Namespace, a Deployment), which is not suborg's to check.
pub fn admission_problems(value: Value, default_namespace: &str) -> Option<Vec<Problem>> {
    let mut items = Vec::new();
    admit_document(value, default_namespace, &mut items);
    let mut problems = Vec::new();
    let mut ours = false;
    for item in items {
        match item {
            Item::Ignored | Item::Namespace(..) => {}
            Item::Problem { problem, .. } => {
                ours = true;
                problems.push(problem);
            }
            Item::Object { problems: p, .. } => {
                ours = true;
                problems.extend(p);
            }
        }
    }
    ours.then_some(problems)
}

/// Routes one document by apiVersion and kind and admits it.
pub(super) fn admit_document(mut value: Value, default_namespace: &str, out: &mut Vec<Item>) {
    super::meta::empty_nulls(value.get_mut("metadata"));
    let detached = |reason, message: String| Item::Problem {
        counted: false,
        problem: Problem::detached(reason, message),
    };
    let Value::Object(map) = &value else {
        out.push(detached(
            Reason::MissingTypeMeta,
            format!(
                "document is {}, not a Kubernetes object (a mapping with apiVersion, kind and metadata)",
                json_type(&value)
            ),
        ));
        return;
    };
    let api_version = map.get("apiVersion").and_then(Value::as_str);
    let kind = map.get("kind").and_then(Value::as_str);
    let (Some(api_version), Some(kind)) = (api_version, kind) else {
        out.push(detached(
            Reason::MissingTypeMeta,
            "document has no apiVersion or kind: every object needs both (e.g. apiVersion: suborg.io/v1alpha1, kind: Organization)".into(),
        ));
        return;
    };
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    // kubectl flattens any list, `v1 List` or a kind's own (`OrgMembershipList`): its items
    // are the objects.
    if kind.ends_with("List")
        && let Some(Value::Array(items)) = map.get("items")
    {
        for item in items.clone() {
            admit_document(item, default_namespace, out);
        }
        return;
    }
    if kind == "List" && group.is_empty() {
        return;
    }
    if group.is_empty() && version == "v1" && kind == "Namespace" {
        out.extend(namespace(map));
        return;
    }
    if group != api::GROUP {
        out.push(Item::Ignored);
        return;
    }
    let name = map
        .get("metadata")
        .and_then(|m| m.get("name"))
        .and_then(Value::as_str)
        .unwrap_or("-");
    let unnamed = ObjectKey::cluster(kind, name);
    // The served kind's own name, which outlives `value`.
    let Some(kind) = api::KINDS.into_iter().find(|k| *k == kind) else {
        out.push(Item::Problem {
            counted: false,
            problem: Problem::error(
                Reason::UnknownKind,
                &unnamed,
                "kind",
                format!(
                    "suborg.io has no kind {kind:?}: the kinds are {}",
                    api::KINDS.join(", ")
                ),
            ),
        });
        return;
    };
    if version != api::VERSION {
        out.push(Item::Problem {
            counted: true,
            problem: Problem::error(
                Reason::UnsupportedApiVersion,
                &unnamed,
                "apiVersion",
                format!("{api_version:?} is not served: use {}", api::API_VERSION),
            ),
        });
        return;
    }
    out.push(admit_kind(kind, value, default_namespace));
}

fn namespace(map: &serde_json::Map<String, Value>) -> Vec<Item> {
    let meta = map.get("metadata");
    let Some(name) = meta.and_then(|m| m.get("name")).and_then(Value::as_str) else {
        return vec![Item::Problem {
            counted: false,
            problem: Problem::detached(Reason::MissingTypeMeta, "Namespace has no metadata.name"),
        }];
    };
    let mut labels: BTreeMap<String, String> = meta
        .and_then(|m| m.get("labels"))
        .and_then(Value::as_object)
        .map(|l| {
            l.iter()
                .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_owned())))
                .collect()
        })
        .unwrap_or_default();
    // A Namespace the API server would refuse decides no delegation.
    let key = ObjectKey::cluster("Namespace", name);
    let mut refused = super::meta::problems(meta, &key);
    refused.extend(bad_namespace_name(name, &key, "metadata.name"));
    let admitted = !refused.iter().any(Problem::is_error);
    labels.insert(NAMESPACE_NAME_LABEL.to_owned(), name.to_owned());
    refused
        .into_iter()
        .map(|problem| Item::Problem {
            counted: false,
            problem,
        })
        .chain(admitted.then(|| Item::Namespace(name.to_owned(), labels)))
        .collect()
}

/// Runs the structural schema and the CEL rules on one object, as the API server does, and
/// turns it into its typed form.
fn admit<K>(
    mut value: Value,
    ks: &KindSchema,
    default_namespace: &str,
    wrap: fn(K) -> Typed,
) -> Item
where
    K: Resource<DynamicType = ()> + DeserializeOwned,
{
    let kind = K::kind(&()).into_owned();
    ks.structural.drop_nulls(&mut value);
    let map = value.as_object_mut().expect("checked by the caller");
    let (key, mut problems) = metadata(map, &kind, ks.namespaced, default_namespace);
    let structural = schema_problems(map, ks, &kind, &key, &mut problems);
    // A rule reading a field of the wrong shape would only add noise, so rules are not run where
    // the structure is wrong: not at a place that holds a structural error, nor inside one, nor
    // above one (a root rule is skipped by any). The rest run, so one pass reports every
    // independent mistake of the object. Metadata problems (names) stop the rules, which read
    // metadata.name.
    if problems.len() == structural.len() {
        // status is written by the controller, never by users: the API server ignores it.
        map.remove("status");
        // The API server's rules see only metadata.name and metadata.generateName; the rest
        // (labels, annotations of any size) is not converted for them.
        let full = map
            .get_mut("metadata")
            .map(|m| std::mem::replace(m, rule_metadata(m)));
        let skip = |site: &str| structural.iter().any(|p| related(site, p));
        cel_problems(&value, ks, &key, &skip, &mut problems);
        if let Some(full) = full {
            value["metadata"] = full;
        }
    }
    // After the rules, which read no labels: a bad label hides none of their findings.
    problems.extend(super::meta::problems(value.get("metadata"), &key));
    let warning = super::meta::client_side_apply_warning(&value, &key);
    // Warnings (a repeated owner reference) refuse nothing.
    let typed = if !problems.iter().any(Problem::is_error) {
        match serde_json::from_value::<K>(value) {
            Ok(t) => Some(t),
            Err(e) => {
                problems.push(Problem::error(
                    Reason::SchemaViolation,
                    &key,
                    "",
                    e.to_string(),
                ));
                None
            }
        }
    } else {
        None
    };
    problems.extend(warning);
    Item::Object {
        key,
        problems,
        typed: typed.map(|t| Box::new(wrap(t))),
    }
}

/// The object's key and what is wrong with its metadata: the API server's own rules for names.
/// A namespaced object without a namespace gets `default_namespace`, as kubectl gives it.
fn metadata(
    map: &mut serde_json::Map<String, Value>,
    kind: &str,
    namespaced: bool,
    default_namespace: &str,
) -> (ObjectKey, Vec<Problem>) {
    let mut problems = Vec::new();
    let meta = map
        .entry("metadata")
        .or_insert_with(|| Value::Object(Default::default()));
    // kubectl reads an empty namespace as none given.
    if let Some(m) = meta.as_object_mut()
        && m.get("namespace").and_then(Value::as_str) == Some("")
    {
        m.remove("namespace");
    }
    let name = meta.get("name").and_then(Value::as_str).map(str::to_owned);
    if namespaced
        && let Some(m) = meta.as_object_mut()
        && !m.contains_key("namespace")
    {
        m.insert(
            "namespace".into(),
            Value::String(default_namespace.to_owned()),
        );
    }
    let namespace = meta
        .get("namespace")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let key = match (&namespace, namespaced) {
        (Some(ns), true) => ObjectKey::namespaced(kind, ns, name.as_deref().unwrap_or("-")),
        _ => ObjectKey::cluster(kind, name.as_deref().unwrap_or("-")),
    };
    match &name {
        None => problems.push(Problem::error(
            Reason::MissingTypeMeta,
            &key,
            "metadata.name",
            "is required (kubectl apply does not support generateName)",
        )),
        Some(n) if !is_dns_subdomain(n) => problems.push(Problem::error(
            Reason::SchemaViolation,
            &key,
            "metadata.name",
            format!("{n:?} is not a valid object name: at most 253 lowercase letters, digits, '-' and '.', starting and ending with a letter or digit"),
        )),
        Some(_) => {}
    }
    // `generateName` is a name's prefix: it may end in '-'.
    if let Some(prefix) = meta.get("generateName").and_then(Value::as_str)
        && !is_dns_subdomain(&match prefix.strip_suffix('-') {
            Some(head) => format!("{head}a"),
            None => prefix.to_owned(),
        })
    {
        problems.push(Problem::error(
            Reason::SchemaViolation,
            &key,
            "metadata.generateName",
            format!("{prefix:?} is not the start of a valid object name: lowercase letters, digits, '-' and '.'"),
        ));
    }
    if let Some(ns) = &namespace
        && namespaced
    {
        problems.extend(bad_namespace_name(ns, &key, "metadata.namespace"));
    }
    (key, problems)
}

/// The problem with `name` as a namespace's name, at `field` of `key`, when it is not one.
fn bad_namespace_name(name: &str, key: &ObjectKey, field: &str) -> Option<Problem> {
    (!is_dns_label(name)).then(|| {
        Problem::error(
            Reason::SchemaViolation,
            key,
            field,
            format!(
                "{name:?} is not a valid namespace name: at most 63 lowercase letters, digits and '-'"
            ),
        )
    })
}

/// Whether one of two field paths (`spec.roles[0]`, `""` for the root) holds the other.
fn related(a: &str, b: &str) -> bool {
    let within = |outer: &str, inner: &str| {
        outer.is_empty()
            || inner
                .strip_prefix(outer)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with(['.', '[']))
    };
    within(a, b) || within(b, a)
}

/// The structural schema, on everything but the fields the API server owns. Returns the paths
/// of the fields that break it.
fn schema_problems(
    map: &serde_json::Map<String, Value>,
    ks: &KindSchema,
    kind: &str,
    key: &ObjectKey,
    problems: &mut Vec<Problem>,
) -> Vec<String> {
    let mut errors = Vec::new();
    for (field, v) in map.iter() {
        if matches!(
            field.as_str(),
            "apiVersion" | "kind" | "metadata" | "status"
        ) {
            continue;
        }
        match ks.structural.property(field) {
            Some(node) => node.check(v, field, &mut errors),
            None => errors.push(schema::SchemaError {
                path: field.clone(),
                unknown_field: true,
                message: format!(
                    "unknown field: a {kind} has apiVersion, kind, metadata, spec and status"
                ),
            }),
        }
    }
    if !map.contains_key("spec") {
        errors.push(schema::SchemaError {
            path: "spec".into(),
            unknown_field: false,
            message: "is required".into(),
        });
    }
    let mut paths = Vec::with_capacity(errors.len());
    for e in errors {
        let reason = if e.unknown_field {
            Reason::UnknownField
        } else {
            Reason::SchemaViolation
        };
        paths.push(e.path.clone());
        problems.push(Problem::error(reason, key, e.path, e.message));
    }
    paths
}

/// The part of an object's metadata that its CEL rules can read.
fn rule_metadata(metadata: &Value) -> Value {
    let mut out = serde_json::Map::new();
    for field in ["name", "generateName"] {
        if let Some(v) = metadata.get(field) {
            out.insert(field.to_owned(), v.clone());
        }
    }
    Value::Object(out)
}

/// The kind's CEL rules, each failure named by its reason and field.
fn cel_problems(
    value: &Value,
    ks: &KindSchema,
    key: &ObjectKey,
    skip: &dyn Fn(&str) -> bool,
    problems: &mut Vec<Problem>,
) {
    for e in cel::evaluate(&schemas().validator, &ks.rules, value, skip).iter() {
        let reason = match e.kind {
            ErrorKind::ValidationFailure => cel_reason(&e.message),
            _ => Reason::RuleViolation,
        };
        let message = match e.kind {
            ErrorKind::ValidationFailure => e.message.clone(),
            _ => format!("rule {:?} could not be evaluated: {}", e.rule, e.message),
        };
        // Root-level rules have no field path; the slug rule is about the name.
        let field = match (reason, e.field_path.as_str()) {
            (Reason::InvalidSlug, "") => "metadata.name".to_owned(),
            (_, f) => f.to_owned(),
        };
        problems.push(Problem::error(reason, key, field, message));
    }
}

/// The reason of a failed CEL rule, from the rule's message. Every message the CRDs carry maps
/// to a specific reason (a test checks this), so conditions and metrics stay precise.
pub fn cel_reason(message: &str) -> Reason {
    let m = message;
    if m == api::NESTING_MESSAGE {
        Reason::NestingViolation
    } else if m == api::AUTHENTICATION_MESSAGE {
        Reason::AuthenticationNotAllowed
    } else if m.contains("is immutable") {
        Reason::ImmutableField
    } else if m.starts_with("temporary") {
        Reason::InvalidTemporaryAccess
    } else if m.contains("no-access cannot be combined") {
        Reason::ConflictingRoles
    } else if m.starts_with("a subject of kind User") || m.starts_with("a member of kind User") {
        Reason::InvalidSubject
    } else if m.starts_with("selector is only used")
        || m == api::SELECTOR_VALUES_NEEDED
        || m == api::SELECTOR_VALUES_UNWANTED
        || m.ends_with(api::LABEL_KEY_RULE)
        || m.ends_with(api::LABEL_VALUE_RULE)
    {
        Reason::InvalidSelector
    } else if m.starts_with("metadata.name is used as the slug") {
        Reason::InvalidSlug
    } else if m.starts_with("sso ") || m.starts_with("scim.") {
        Reason::InvalidAuthentication
    } else if m.starts_with("keys are at most") {
        Reason::SchemaViolation
    } else if m == api::CONFIG_NO_CREDENTIALS_MESSAGE
        || m == api::CONFIG_NO_URL_PASSWORD_MESSAGE
        || m == api::CONFIG_NO_SECRET_VALUE_MESSAGE
    {
        Reason::CredentialInConfig
    } else if m.starts_with("only users are invited") || m.starts_with("a project invite") {
        Reason::InvalidInvite
    } else {
        Reason::RuleViolation
    }
}

pub(super) fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "empty",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}
