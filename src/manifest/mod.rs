//! Reading manifests: bytes → YAML documents → admitted objects, with every check the API server
//! would make on one object (the CRD's structural schema and its CEL rules), then the
//! cross-object rules of [`crate::domain`].
//!
//! Nothing here touches the file system: callers hand in bytes with a name. That keeps the
//! whole path from bytes to problems pure, so it is fuzzed and benchmarked as one piece.

pub mod cel;
pub mod cel_fields;
pub mod schema;
mod strict;

pub use strict::{MAX_DEPTH, budget_for};

use std::collections::{BTreeMap, HashMap};
use std::sync::OnceLock;

use k8s_openapi::jiff::Timestamp;
use kube::core::cel::{ErrorKind, Validator};
use kube::{CustomResourceExt, Resource};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::api::{
    self, AppConnection, Gateway, Group, MachineIdentity, OrgMembership, Organization, Project,
    ProjectMembership, Relay, SubOrganization,
};
use crate::domain;
use crate::domain::delegation::NAMESPACE_NAME_LABEL;
use crate::domain::model::{Accepted, ObjectSet};
use crate::domain::problem::{ObjectKey, Problem, Reason};

/// Where a problem was found.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Source {
    /// File name as given (or `-` for standard input).
    pub file: String,
    /// 1-based index of the YAML document within the file (0 when the whole file is at fault).
    pub document: usize,
    /// 1-based line where the document starts (0 when the whole file is at fault).
    pub line: usize,
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
    group: KindSchema,
    identity: KindSchema,
    connection: KindSchema,
    gateway: KindSchema,
    relay: KindSchema,
    project: KindSchema,
    project_membership: KindSchema,
    validator: Validator,
}

fn schemas() -> &'static Schemas {
    static SCHEMAS: OnceLock<Schemas> = OnceLock::new();
    SCHEMAS.get_or_init(|| Schemas {
        organization: kind_schema::<Organization>(),
        sub_organization: kind_schema::<SubOrganization>(),
        membership: kind_schema::<OrgMembership>(),
        group: kind_schema::<Group>(),
        identity: kind_schema::<MachineIdentity>(),
        connection: kind_schema::<AppConnection>(),
        gateway: kind_schema::<Gateway>(),
        relay: kind_schema::<Relay>(),
        project: kind_schema::<Project>(),
        project_membership: kind_schema::<ProjectMembership>(),
        validator: Validator::new(),
    })
}

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
                line: 0,
            },
            Problem::detached(reason, message),
        );
    }

    /// Reads one file's bytes: UTF-8, multi-document YAML (or JSON, which is YAML).
    ///
    /// Documents are split at their `---` markers first (a marker line cannot occur inside a
    /// YAML scalar, so the split is exact). That lets a syntax error in one document leave the
    /// others readable, and lets large files be parsed and admitted on every core.
    pub fn add_bytes(&mut self, file: &str, bytes: &[u8]) {
        self.report.files += 1;
        let whole = Source {
            file: file.to_owned(),
            document: 0,
            line: 0,
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
        let chunks = split_documents(text);
        let mut lines = Vec::with_capacity(chunks.len());
        let mut line = 1;
        for c in &chunks {
            lines.push(line);
            line += c.bytes().filter(|&b| b == b'\n').count();
        }
        let ns = self.default_namespace.as_str();
        let work: Vec<(&str, usize)> = chunks.into_iter().zip(lines.iter().copied()).collect();
        let parsed: Vec<Vec<Option<Vec<Item>>>> = if work.len() < PARALLEL_THRESHOLD {
            work.iter().map(|&(c, l)| parse_chunk(c, l, ns)).collect()
        } else {
            let threads = std::thread::available_parallelism()
                .map_or(1, |n| n.get())
                .min(8);
            let per = work.len().div_ceil(threads);
            schemas(); // initialise once, before the threads share it
            std::thread::scope(|scope| {
                let handles: Vec<_> = work
                    .chunks(per)
                    .map(|part| {
                        scope.spawn(move || {
                            part.iter()
                                .map(|&(c, l)| parse_chunk(c, l, ns))
                                .collect::<Vec<_>>()
                        })
                    })
                    .collect();
                handles
                    .into_iter()
                    .flat_map(|h| h.join().expect("document parsing does not panic"))
                    .collect()
            })
        };
        let mut document = 0;
        let mut objects = 0;
        for (docs, line) in parsed.into_iter().zip(lines) {
            for items in docs {
                document += 1;
                let Some(items) = items else { continue };
                objects += 1;
                let source = Source {
                    file: file.to_owned(),
                    document,
                    line,
                };
                for item in items {
                    self.merge(&source, item);
                }
            }
        }
        if objects == 0 {
            self.push(
                whole,
                Problem::detached(
                    Reason::EmptyManifest,
                    "holds no Kubernetes objects (empty, or only comments and document separators)",
                ),
            );
        }
    }

    /// Admits one parsed document (a test and embedding entry point).
    pub fn add_value(&mut self, source: Source, value: Value) {
        let mut items = Vec::new();
        admit_document(value, &self.default_namespace, &mut items);
        for item in items {
            self.merge(&source, item);
        }
    }

    /// Adds what one document turned into, looking for objects declared twice.
    fn merge(&mut self, source: &Source, item: Item) {
        match item {
            Item::Ignored => self.report.ignored += 1,
            Item::Problem { counted, problem } => {
                self.report.objects += usize::from(counted);
                self.push(source.clone(), problem);
            }
            Item::Namespace(name, labels) => {
                self.set.namespaces.insert(name, labels);
            }
            Item::Object {
                key,
                problems,
                typed,
            } => {
                self.report.objects += 1;
                if let Some(first) = self.sources.get(&key) {
                    let message = format!(
                        "{key} is declared twice: first in {} (document {}); each object must be declared once",
                        first.file, first.document
                    );
                    let p = Problem::error(Reason::DuplicateObject, &key, "metadata.name", message);
                    self.push(source.clone(), p);
                    return;
                }
                self.sources.insert(key.clone(), source.clone());
                if !problems.is_empty() {
                    self.set.rejected.insert(key);
                    for p in problems {
                        self.push(source.clone(), p);
                    }
                }
                match typed.map(|t| *t) {
                    Some(Typed::Organization(o)) => self.set.organizations.push(o),
                    Some(Typed::SubOrganization(o)) => self.set.sub_organizations.push(o),
                    Some(Typed::OrgMembership(o)) => self.set.memberships.push(o),
                    Some(Typed::Group(o)) => self.set.groups.push(o),
                    Some(Typed::MachineIdentity(o)) => self.set.identities.push(o),
                    Some(Typed::AppConnection(o)) => self.set.connections.push(o),
                    Some(Typed::Gateway(o)) => self.set.gateways.push(o),
                    Some(Typed::Relay(o)) => self.set.relays.push(o),
                    Some(Typed::Project(o)) => self.set.projects.push(o),
                    Some(Typed::ProjectMembership(o)) => self.set.project_memberships.push(o),
                    None => {}
                }
            }
        }
    }

    /// Runs the cross-object rules: every problem found, the objects, and which were accepted.
    pub fn finish(mut self, now: Timestamp) -> (Report, ObjectSet, Accepted) {
        let outcome = domain::check(&self.set, now);
        for p in outcome.problems {
            let source = p
                .object
                .as_ref()
                .and_then(|k| self.sources.get(k))
                .cloned()
                .unwrap_or(Source {
                    file: "-".into(),
                    document: 0,
                    line: 0,
                });
            self.report.problems.push(Finding { source, problem: p });
        }
        let r = &mut self.report;
        r.problems.sort_by(|a, b| {
            (&a.source.file, a.source.document).cmp(&(&b.source.file, b.source.document))
        });
        r.errors = r.problems.iter().filter(|f| f.problem.is_error()).count();
        r.warnings = r.problems.len() - r.errors;
        (self.report, self.set, outcome.accepted)
    }
}

/// Files with at least this many documents are parsed on every core.
const PARALLEL_THRESHOLD: usize = 512;

/// What one document turned into, before duplicates are looked for.
enum Item {
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

/// An admitted object.
enum Typed {
    Organization(Organization),
    SubOrganization(SubOrganization),
    OrgMembership(OrgMembership),
    Group(Group),
    MachineIdentity(MachineIdentity),
    AppConnection(AppConnection),
    Gateway(Gateway),
    Relay(Relay),
    Project(Project),
    ProjectMembership(ProjectMembership),
}

/// Splits YAML text at lines that start a document (`---` then a blank or the line's end).
/// Each piece keeps its marker line.
fn split_documents(text: &str) -> Vec<&str> {
    let mut starts = vec![0];
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        if offset > 0
            && let Some(rest) = line.strip_prefix("---")
            && (rest.is_empty() || rest.starts_with([' ', '\t', '\r', '\n']))
        {
            starts.push(offset);
        }
        offset += line.len();
    }
    starts.push(text.len());
    starts.windows(2).map(|w| &text[w[0]..w[1]]).collect()
}

/// Parses one piece of a file: each document becomes its items, `None` for an empty document.
/// `line` is where the piece starts in its file.
fn parse_chunk(text: &str, line: usize, default_namespace: &str) -> Vec<Option<Vec<Item>>> {
    let mut out = Vec::new();
    let invalid = |message: String| {
        Some(vec![Item::Problem {
            counted: false,
            problem: Problem::detached(Reason::InvalidYaml, message),
        }])
    };
    if let Some(at) = strict::too_deep(text, strict::MAX_DEPTH) {
        out.push(invalid(format!(
            "nests flow collections ([ or {{) more than {} levels deep at line {}: refused before parsing (Kubernetes objects are not nested that deep)",
            strict::MAX_DEPTH,
            line + at - 1
        )));
        return out;
    }
    let budget = strict::budget_for(text.len());
    for doc in serde_yaml::Deserializer::from_str(text) {
        match strict::with_budget(budget, || strict::StrictValue::deserialize(doc)) {
            Ok(strict::StrictValue(Value::Null)) => out.push(None),
            Ok(strict::StrictValue(value)) => {
                let mut items = Vec::new();
                admit_document(value, default_namespace, &mut items);
                out.push(Some(items));
            }
            Err(e) => {
                let at = e
                    .location()
                    .map(|l| format!(" at line {} column {}", line + l.line() - 1, l.column()))
                    .unwrap_or_default();
                let msg = e.to_string();
                let msg = msg.split(" at line ").next().unwrap_or(&msg).to_owned();
                out.push(invalid(format!("is not valid YAML{at}: {msg}")));
                // The parser cannot resynchronise within a document; the next piece starts clean.
                break;
            }
        }
    }
    out
}

/// Routes one document by apiVersion and kind and admits it.
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

fn admit_document(value: Value, default_namespace: &str, out: &mut Vec<Item>) {
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
    if kind == "List" && group.is_empty() {
        if let Some(Value::Array(items)) = map.get("items") {
            for item in items.clone() {
                admit_document(item, default_namespace, out);
            }
        }
        return;
    }
    if group.is_empty() && version == "v1" && kind == "Namespace" {
        out.push(namespace(map));
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
    if !api::KINDS.contains(&kind) {
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
    }
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
    let s = schemas();
    out.push(match kind {
        "Organization" => admit::<Organization>(
            value,
            &s.organization,
            default_namespace,
            Typed::Organization,
        ),
        "SubOrganization" => admit::<SubOrganization>(
            value,
            &s.sub_organization,
            default_namespace,
            Typed::SubOrganization,
        ),
        "Group" => admit::<Group>(value, &s.group, default_namespace, Typed::Group),
        "MachineIdentity" => admit::<MachineIdentity>(
            value,
            &s.identity,
            default_namespace,
            Typed::MachineIdentity,
        ),
        "AppConnection" => admit::<AppConnection>(
            value,
            &s.connection,
            default_namespace,
            Typed::AppConnection,
        ),
        "Gateway" => admit::<Gateway>(value, &s.gateway, default_namespace, Typed::Gateway),
        "Relay" => admit::<Relay>(value, &s.relay, default_namespace, Typed::Relay),
        "Project" => admit::<Project>(value, &s.project, default_namespace, Typed::Project),
        "ProjectMembership" => admit::<ProjectMembership>(
            value,
            &s.project_membership,
            default_namespace,
            Typed::ProjectMembership,
        ),
        _ => admit::<OrgMembership>(
            value,
            &s.membership,
            default_namespace,
            Typed::OrgMembership,
        ),
    });
}

fn namespace(map: &serde_json::Map<String, Value>) -> Item {
    let meta = map.get("metadata");
    let Some(name) = meta.and_then(|m| m.get("name")).and_then(Value::as_str) else {
        return Item::Problem {
            counted: false,
            problem: Problem::detached(Reason::MissingTypeMeta, "Namespace has no metadata.name"),
        };
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
    Item::Namespace(name.to_owned(), labels)
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
            Value::String(default_namespace.to_owned()),
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
            format!(
                "{ns:?} is not a valid namespace name: at most 63 lowercase letters, digits and '-'"
            ),
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

    Item::Object {
        key,
        problems,
        typed: typed.map(|t| Box::new(wrap(t))),
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
    } else if m.starts_with("selector is only used") {
        Reason::InvalidSelector
    } else if m.starts_with("metadata.name is used as the slug") {
        Reason::InvalidSlug
    } else if m.starts_with("sso ") || m.starts_with("scim.") {
        Reason::InvalidAuthentication
    } else if m.starts_with("keys are at most") {
        Reason::SchemaViolation
    } else if m == api::CONFIG_NO_CREDENTIALS_MESSAGE {
        Reason::CredentialInConfig
    } else if m.starts_with("only users are invited") || m.starts_with("a project invite") {
        Reason::InvalidInvite
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

/// One part of a DNS name: lowercase letters, digits and '-', starting and ending with a letter
/// or digit.
fn is_dns_part(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// A namespace name (RFC 1123 label): one part of at most 63 characters.
fn is_dns_label(s: &str) -> bool {
    s.len() <= 63 && is_dns_part(s)
}

/// An object name as the API server checks it (`IsDNS1123Subdomain`): at most 253 characters
/// in all, with no limit on one dot-separated part.
fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_dns_part)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_split_at_marker_lines_only() {
        let text = "a: 1\n---\nb: |\n  ---\n  text\n--- {c: 1}\n---\t\n----\nd: 2\n";
        let parts = split_documents(text);
        assert_eq!(
            parts,
            [
                "a: 1\n",
                "---\nb: |\n  ---\n  text\n",
                "--- {c: 1}\n",
                "---\t\n----\nd: 2\n"
            ]
        );
        assert_eq!(parts.concat(), text);
        assert_eq!(split_documents(""), [""]);
        assert_eq!(split_documents("---\n"), ["---\n"]);
    }

    #[test]
    fn a_broken_document_leaves_the_others_readable() {
        let text = "apiVersion: suborg.io/v1alpha1\nkind: Organization\nmetadata: {name: a}\nspec: {}\n---\nkind: [\n---\napiVersion: suborg.io/v1alpha1\nkind: Organization\nmetadata: {name: b}\nspec: {}\n";
        let mut loader = Loader::new("default");
        loader.add_bytes("x.yaml", text.as_bytes());
        let (report, set, _) = loader.finish(Timestamp::UNIX_EPOCH);
        assert_eq!(set.organizations.len(), 2);
        assert_eq!(report.errors, 1);
        assert_eq!(report.problems[0].source.document, 2);
        assert_eq!(report.problems[0].source.line, 5);
        assert_eq!(report.problems[0].problem.reason, Reason::InvalidYaml);
        assert!(
            report.problems[0]
                .problem
                .message
                .starts_with("is not valid YAML at line 7 column 1"),
            "{}",
            report.problems[0].problem.message
        );
    }

    #[test]
    fn large_files_give_the_same_answer_in_parallel() {
        let mut text = String::new();
        for i in 0..PARALLEL_THRESHOLD + 10 {
            text.push_str(&format!(
                "---\napiVersion: suborg.io/v1alpha1\nkind: Organization\nmetadata: {{name: o{i}}}\nspec: {{slug: {}}}\n",
                if i == 300 { "o1".to_string() } else { format!("o{i}") }
            ));
        }
        let mut loader = Loader::new("default");
        loader.add_bytes("x.yaml", text.as_bytes());
        let (report, set, _) = loader.finish(Timestamp::UNIX_EPOCH);
        assert_eq!(set.organizations.len(), PARALLEL_THRESHOLD + 10);
        assert_eq!(report.objects, PARALLEL_THRESHOLD + 10);
        assert_eq!(report.errors, 1, "{:?}", report.problems);
        assert_eq!(report.problems[0].source.document, 301);
        assert_eq!(
            report.problems[0].problem.object.as_ref().unwrap().name,
            "o300"
        );
    }
}
