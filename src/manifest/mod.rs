//! Reading manifests: bytes → YAML documents → admitted objects, with every check the API server
//! would make on one object (the CRD's structural schema and its CEL rules), then the
//! cross-object rules of [`crate::domain`].
//!
//! Nothing here touches the file system: callers hand in bytes with a name. That keeps the
//! whole path from bytes to problems pure, so it is fuzzed and benchmarked as one piece.

pub mod cel;
pub mod schema;
mod strict;

use std::collections::{BTreeMap, HashMap};
use std::sync::OnceLock;

use k8s_openapi::jiff::Timestamp;
use kube::core::cel::{ErrorKind, Validator};
use kube::{CustomResourceExt, Resource};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::api::{self, OrgMembership, Organization, SubOrganization};
use crate::domain::delegation::NAMESPACE_NAME_LABEL;
use crate::domain::problem::{ObjectKey, Problem, Reason};
use crate::domain::tree::{self, ObjectSet};

/// Where a problem was found.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Source {
    /// File name as given (or `-` for standard input).
    pub file: String,
    /// 1-based index of the YAML document within the file (0 when the whole file is at fault).
    pub document: usize,
}

/// A problem and where it was found.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Finding {
    /// File and document, when known.
    #[serde(flatten)]
    pub source: Source,
    /// The problem.
    #[serde(flatten)]
    pub problem: Problem,
}

/// The result of checking a manifest set.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Report {
    /// Files read.
    pub files: usize,
    /// suborg objects read (Namespaces and foreign kinds not counted).
    pub objects: usize,
    /// Documents of other kinds, which suborg does not check.
    pub ignored: usize,
    /// Number of errors.
    pub errors: usize,
    /// Number of warnings.
    pub warnings: usize,
    /// Every problem, in file order.
    pub problems: Vec<Finding>,
}

/// Collects manifests and checks them.
pub struct Loader {
    default_namespace: String,
    set: ObjectSet,
    sources: HashMap<ObjectKey, Source>,
    report: Report,
}

/// Everything needed to admit one kind: its structural schema and its compiled CEL rules.
struct KindSchema {
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

struct Schemas {
    organization: KindSchema,
    sub_organization: KindSchema,
    membership: KindSchema,
    validator: Validator,
}

fn schemas() -> &'static Schemas {
    static SCHEMAS: OnceLock<Schemas> = OnceLock::new();
    SCHEMAS.get_or_init(|| Schemas {
        organization: kind_schema::<Organization>(),
        sub_organization: kind_schema::<SubOrganization>(),
        membership: kind_schema::<OrgMembership>(),
        validator: Validator::new(),
    })
}

/// The kinds of `suborg.io` this version serves.
const KINDS: [&str; 3] = ["Organization", "SubOrganization", "OrgMembership"];

impl Loader {
    /// A loader that puts namespaced objects without `metadata.namespace` into
    /// `default_namespace`, as `kubectl apply` does with the context's namespace.
    pub fn new(default_namespace: &str) -> Self {
        Self {
            default_namespace: default_namespace.to_owned(),
            set: ObjectSet::default(),
            sources: HashMap::new(),
            report: Report::default(),
        }
    }

    fn push(&mut self, source: Source, problem: Problem) {
        self.report.problems.push(Finding { source, problem });
    }

    /// Records a file-level problem (unreadable, too large).
    pub fn file_problem(&mut self, file: &str, reason: Reason, message: String) {
        self.report.files += 1;
        self.push(
            Source {
                file: file.to_owned(),
                document: 0,
            },
            Problem::detached(reason, message),
        );
    }

    /// Reads one file's bytes: UTF-8, multi-document YAML (or JSON, which is YAML).
    pub fn add_bytes(&mut self, file: &str, bytes: &[u8]) {
        self.report.files += 1;
        let whole = Source {
            file: file.to_owned(),
            document: 0,
        };
        let text = match std::str::from_utf8(bytes) {
            Ok(t) => t,
            Err(e) => {
                let line = bytes[..e.valid_up_to()]
                    .iter()
                    .filter(|&&b| b == b'\n')
                    .count()
                    + 1;
                self.push(
                    whole,
                    Problem::detached(
                        Reason::InvalidEncoding,
                        format!(
                            "is not UTF-8 text: invalid byte at offset {} (line {line})",
                            e.valid_up_to()
                        ),
                    ),
                );
                return;
            }
        };
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut documents = 0;
        for (i, doc) in serde_yaml::Deserializer::from_str(text).enumerate() {
            let source = Source {
                file: file.to_owned(),
                document: i + 1,
            };
            match strict::StrictValue::deserialize(doc) {
                Ok(strict::StrictValue(Value::Null)) => {}
                Ok(strict::StrictValue(value)) => {
                    documents += 1;
                    self.add_value(source, value);
                }
                Err(e) => {
                    documents += 1;
                    let at = e
                        .location()
                        .map(|l| format!(" at line {} column {}", l.line(), l.column()))
                        .unwrap_or_default();
                    let msg = e.to_string();
                    let msg = msg.split(" at line ").next().unwrap_or(&msg).to_owned();
                    self.push(
                        source,
                        Problem::detached(
                            Reason::InvalidYaml,
                            format!("is not valid YAML{at}: {msg}"),
                        ),
                    );
                    // The parser cannot resynchronise after a syntax error.
                    break;
                }
            }
        }
        if documents == 0 {
            self.push(
                whole,
                Problem::detached(
                    Reason::EmptyManifest,
                    "holds no Kubernetes objects (empty, or only comments and document separators)",
                ),
            );
        }
    }

    /// Admits one parsed document.
    pub fn add_value(&mut self, source: Source, value: Value) {
        let Value::Object(map) = &value else {
            self.push(
                source,
                Problem::detached(
                    Reason::MissingTypeMeta,
                    format!("document is {}, not a Kubernetes object (a mapping with apiVersion, kind and metadata)", json_type(&value)),
                ),
            );
            return;
        };
        let api_version = map.get("apiVersion").and_then(Value::as_str);
        let kind = map.get("kind").and_then(Value::as_str);
        let (Some(api_version), Some(kind)) = (api_version, kind) else {
            self.push(
                source,
                Problem::detached(
                    Reason::MissingTypeMeta,
                    "document has no apiVersion or kind: every object needs both (e.g. apiVersion: suborg.io/v1alpha1, kind: Organization)",
                ),
            );
            return;
        };
        let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
        if kind == "List" && group.is_empty() {
            if let Some(Value::Array(items)) = map.get("items") {
                for item in items.clone() {
                    self.add_value(source.clone(), item);
                }
            }
            return;
        }
        if group.is_empty() && version == "v1" && kind == "Namespace" {
            self.add_namespace(source, map);
            return;
        }
        if group != api::GROUP {
            self.report.ignored += 1;
            return;
        }
        let name = map
            .get("metadata")
            .and_then(|m| m.get("name"))
            .and_then(Value::as_str)
            .unwrap_or("-")
            .to_owned();
        let unnamed = ObjectKey::cluster(kind, &name);
        if !KINDS.contains(&kind) {
            self.push(
                source,
                Problem::error(
                    Reason::UnknownKind,
                    &unnamed,
                    "kind",
                    format!(
                        "suborg.io has no kind {kind:?}: the kinds are {}",
                        KINDS.join(", ")
                    ),
                ),
            );
            return;
        }
        self.report.objects += 1;
        if version != api::VERSION {
            self.push(
                source,
                Problem::error(
                    Reason::UnsupportedApiVersion,
                    &unnamed,
                    "apiVersion",
                    format!("{api_version:?} is not served: use {}", api::API_VERSION),
                ),
            );
            return;
        }
        let s = schemas();
        match kind {
            "Organization" => {
                if let Some(o) = self.admit::<Organization>(&source, value, &s.organization) {
                    self.set.organizations.push(o);
                }
            }
            "SubOrganization" => {
                if let Some(o) = self.admit::<SubOrganization>(&source, value, &s.sub_organization)
                {
                    self.set.sub_organizations.push(o);
                }
            }
            _ => {
                if let Some(o) = self.admit::<OrgMembership>(&source, value, &s.membership) {
                    self.set.memberships.push(o);
                }
            }
        }
    }

    fn add_namespace(&mut self, source: Source, map: &serde_json::Map<String, Value>) {
        let meta = map.get("metadata");
        let Some(name) = meta.and_then(|m| m.get("name")).and_then(Value::as_str) else {
            self.push(
                source,
                Problem::detached(Reason::MissingTypeMeta, "Namespace has no metadata.name"),
            );
            return;
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
        labels.insert(NAMESPACE_NAME_LABEL.to_owned(), name.to_owned());
        self.set.namespaces.insert(name.to_owned(), labels);
    }

    /// Runs the structural schema and the CEL rules on one object, as the API server does, and
    /// turns it into its typed form.
    fn admit<K>(&mut self, source: &Source, mut value: Value, ks: &KindSchema) -> Option<K>
    where
        K: Resource<DynamicType = ()> + DeserializeOwned,
    {
        let kind = K::kind(&()).into_owned();
        let namespaced = ks.namespaced;
        let map = value.as_object_mut().expect("checked by the caller");
        let mut problems = Vec::new();

        // metadata: the API server's own rules for names, and kubectl's default namespace.
        let meta = map
            .entry("metadata")
            .or_insert_with(|| Value::Object(Default::default()));
        let name = meta.get("name").and_then(Value::as_str).map(str::to_owned);
        if namespaced
            && let Some(m) = meta.as_object_mut()
            && !m.contains_key("namespace")
        {
            m.insert(
                "namespace".into(),
                Value::String(self.default_namespace.clone()),
            );
        }
        let namespace = meta
            .get("namespace")
            .and_then(Value::as_str)
            .map(str::to_owned);
        let key = match (&namespace, namespaced) {
            (Some(ns), true) => ObjectKey::namespaced(&kind, ns, name.as_deref().unwrap_or("-")),
            _ => ObjectKey::cluster(&kind, name.as_deref().unwrap_or("-")),
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
        if let Some(ns) = &namespace
            && namespaced
            && !is_dns_label(ns)
        {
            problems.push(Problem::error(
                Reason::SchemaViolation,
                &key,
                "metadata.namespace",
                format!("{ns:?} is not a valid namespace name: at most 63 lowercase letters, digits and '-'"),
            ));
        }

        // The structural schema, on everything but the fields the API server owns.
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
        for e in errors {
            let reason = if e.unknown_field {
                Reason::UnknownField
            } else {
                Reason::SchemaViolation
            };
            problems.push(Problem::error(reason, &key, e.path, e.message));
        }

        // CEL rules only make sense on a structurally valid object, as in the API server.
        if problems.is_empty() {
            // status is written by the controller, never by users: the API server ignores it.
            map.remove("status");
            {
                for e in cel::evaluate(&schemas().validator, &ks.rules, &value).iter() {
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
                    problems.push(Problem::error(reason, &key, field, message));
                }
            }
        }

        let typed = if problems.is_empty() {
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

        if let Some(first) = self.sources.get(&key) {
            let message = format!(
                "{} is declared twice: first in {} (document {}); each object must be declared once",
                key, first.file, first.document
            );
            self.push(
                source.clone(),
                Problem::error(Reason::DuplicateObject, &key, "metadata.name", message),
            );
            return None;
        }
        self.sources.insert(key.clone(), source.clone());
        if !problems.is_empty() {
            self.set.rejected.insert(key);
            for p in problems {
                self.push(source.clone(), p);
            }
        }
        typed
    }

    /// Runs the cross-object rules and returns every problem found.
    pub fn finish(mut self, now: Timestamp) -> (Report, ObjectSet) {
        let outcome = tree::check(&self.set, now);
        for p in outcome.problems {
            let source = p
                .object
                .as_ref()
                .and_then(|k| self.sources.get(k))
                .cloned()
                .unwrap_or(Source {
                    file: "-".into(),
                    document: 0,
                });
            self.report.problems.push(Finding { source, problem: p });
        }
        let r = &mut self.report;
        r.problems.sort_by(|a, b| {
            (&a.source.file, a.source.document).cmp(&(&b.source.file, b.source.document))
        });
        r.errors = r.problems.iter().filter(|f| f.problem.is_error()).count();
        r.warnings = r.problems.len() - r.errors;
        (self.report, self.set)
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
    } else if m.starts_with("a subject of kind User") {
        Reason::InvalidSubject
    } else if m.starts_with("selector is only used") {
        Reason::InvalidSelector
    } else if m.starts_with("metadata.name is used as the slug") {
        Reason::InvalidSlug
    } else if m.starts_with("sso ") || m.starts_with("scim.") {
        Reason::InvalidAuthentication
    } else {
        Reason::RuleViolation
    }
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "empty",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_dns_label)
}

/// Checks a whole manifest set held in memory: `(file name, bytes)` pairs.
pub fn check_sources<'a>(
    sources: impl IntoIterator<Item = (&'a str, &'a [u8])>,
    default_namespace: &str,
    now: Timestamp,
) -> Report {
    let mut loader = Loader::new(default_namespace);
    for (name, bytes) in sources {
        loader.add_bytes(name, bytes);
    }
    loader.finish(now).0
}
