//! Reading manifests: bytes → YAML documents → admitted objects, with every check the API server
//! would make on one object (the CRD's structural schema and its CEL rules), then the
//! cross-object rules of [`crate::domain`].
//!
//! Nothing here touches the file system: callers hand in bytes with a name. That keeps the
//! whole path from bytes to problems pure, so it is fuzzed and benchmarked as one piece.

mod admission;
pub mod cel;
pub mod cel_fields;
mod documents;
mod meta;
pub mod schema;
mod strict;

pub use admission::{admission_problems, cel_reason};

pub use strict::{MAX_DEPTH, budget_for};

use std::collections::HashMap;

use k8s_openapi::jiff::Timestamp;
use serde_json::Value;

use crate::domain::model::{Accepted, ObjectSet};
use crate::domain::problem::{ObjectKey, Problem, Reason};
use admission::{Item, admit_document};

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
                // A warning (about how the object would be applied) refuses nothing.
                if problems.iter().any(Problem::is_error) {
                    self.set.rejected.insert(key);
                }
                for p in problems {
                    self.push(source.clone(), p);
                }
                if let Some(typed) = typed {
                    typed.add_to(&mut self.set);
                }
            }
        }
    }

    /// Dates every object that has no `creationTimestamp`, as the API server would: offline,
    /// an object is created when its rows are first written to the store, so one whose source
    /// has rows (`first_written`, milliseconds by source key) was created then, and any other
    /// now. Durations of temporary roles count from it, as the store's readers count them, and
    /// the oldest object keeps a contested slug.
    pub fn date(&mut self, first_written: &HashMap<String, i64>, now: Timestamp) {
        fn date<K: kube::Resource<DynamicType = ()>>(
            list: &mut [K],
            first_written: &HashMap<String, i64>,
            now: Timestamp,
        ) {
            for o in list
                .iter_mut()
                .filter(|o| o.meta().creation_timestamp.is_none())
            {
                let at = first_written
                    .get(&crate::rows::source_key(o))
                    .and_then(|ms| Timestamp::from_millisecond(*ms).ok())
                    .unwrap_or(now);
                o.meta_mut().creation_timestamp =
                    Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(at));
            }
        }
        let set = &mut self.set;
        macro_rules! date_each {
            ($($kind:ident $field:ident,)*) => {
                $(date(&mut set.$field, first_written, now);)*
            };
        }
        crate::api::for_each_kind!(date_each);
    }

    /// Runs the cross-object rules: every problem found, the objects, and which were accepted.
    pub fn finish(mut self, now: Timestamp) -> (Report, ObjectSet, Accepted) {
        let outcome = crate::domain::check(&self.set, now);
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
