//! A file's bytes into documents: checked to be UTF-8, split at document markers, each
//! document parsed within the limits of [`super::strict`] and handed to admission; large files
//! on every core.

use super::admission::{Item, admit_document, schemas};
use super::{Loader, Source, strict};
use crate::domain::problem::{Problem, Reason};

impl Loader {
    /// Reads one file's bytes: UTF-8, multi-document YAML (or JSON, which is YAML).
    ///
    /// Documents are split at their `---` markers first (a marker line cannot occur inside a
    /// YAML scalar, so the split is exact). That lets a syntax error in one document leave the
    /// others readable, and lets large files be parsed and admitted on every core.
    pub fn add_bytes(&mut self, file: &str, bytes: &[u8]) {
        self.add_file(file, bytes, true);
    }

    /// [`Self::add_bytes`] for a file found in a directory: one that holds no object (a
    /// placeholder, a file of comments) is a warning, as kubectl and Argo CD pass it by, not
    /// an error that stops the set.
    pub fn add_bytes_of_directory(&mut self, file: &str, bytes: &[u8]) {
        self.add_file(file, bytes, false);
    }

    fn add_file(&mut self, file: &str, bytes: &[u8], empty_is_error: bool) {
        self.report.files += 1;
        let whole = Source {
            file: file.to_owned(),
            document: 0,
            line: 0,
        };
        let text = match utf8(bytes) {
            Ok(t) => t,
            Err(message) => {
                self.push(whole, Problem::detached(Reason::InvalidEncoding, message));
                return;
            }
        };
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let chunks = json_stream(text).unwrap_or_else(|| split_documents(text));
        let mut lines = Vec::with_capacity(chunks.len());
        let mut line = 1;
        for c in &chunks {
            lines.push(line);
            line += c.bytes().filter(|&b| b == b'\n').count();
        }
        let ns = self.default_namespace.as_str();
        let work: Vec<(&str, usize)> = chunks.into_iter().zip(lines.iter().copied()).collect();
        let parsed = parse_all(&work, ns);
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
            let mut empty = Problem::detached(
                Reason::EmptyManifest,
                "holds no Kubernetes objects (empty, or only comments and document separators)",
            );
            if !empty_is_error {
                empty.severity = crate::domain::problem::Severity::Warning;
            }
            self.push(whole, empty);
        }
    }
}

/// The text of a file, or why it is not UTF-8 (with the offset and line of the first bad byte).
fn utf8(bytes: &[u8]) -> Result<&str, String> {
    std::str::from_utf8(bytes).map_err(|e| {
        let line = bytes[..e.valid_up_to()]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1;
        format!(
            "is not UTF-8 text: invalid byte at offset {} (line {line})",
            e.valid_up_to()
        )
    })
}

/// Parses and admits every piece of a file (text, first line): on one thread for a small file,
/// on every core (at most eight) for a large one, in order either way. The threads are the
/// reader's own, with a stack sized for the deepest document the limits let through, whatever
/// thread (a test's, an async runtime's) asked.
fn parse_all(work: &[(&str, usize)], ns: &str) -> Vec<Vec<Option<Vec<Item>>>> {
    let threads = if work.len() < PARALLEL_THRESHOLD {
        1
    } else {
        std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(8)
    };
    let per = work.len().div_ceil(threads).max(1);
    schemas(); // initialise once, before the threads share it
    std::thread::scope(|scope| {
        let read = move |part: &[(&str, usize)]| {
            part.iter()
                .map(|&(c, l)| parse_chunk(c, l, ns))
                .collect::<Vec<_>>()
        };
        // A system that will not give a thread its stack (a tight address-space limit) gets
        // its documents read on the calling thread instead.
        let handles: Vec<_> = work
            .chunks(per)
            .map(|part| {
                std::thread::Builder::new()
                    .name("suborg-yaml".into())
                    .stack_size(READER_STACK)
                    .spawn_scoped(scope, move || read(part))
                    .map_err(|_| part)
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| match h {
                Ok(thread) => thread.join().expect("document parsing does not panic"),
                Err(part) => read(part),
            })
            .collect()
    })
}

/// The stack of a reader thread. Reading and admitting recurse once per level of nesting; at
/// the depth limit an unoptimised build needs about 8 MiB. Only the pages touched are used.
const READER_STACK: usize = 64 << 20;

/// Files with at least this many documents are parsed on every core.
const PARALLEL_THRESHOLD: usize = 512;

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

/// Splits a stream of JSON objects written one after another (`{…}{…}` or one per line, as
/// kubectl reads them) into one piece per object; `None` when `text` is not such a stream (YAML,
/// a single object, or JSON with an error, which the YAML reader then reports with its line).
/// Each piece is read as YAML like any other document, with the same limits.
fn json_stream(text: &str) -> Option<Vec<&str>> {
    if !text.trim_start().starts_with('{') {
        return None;
    }
    let mut stream = serde_json::Deserializer::from_str(text).into_iter::<serde::de::IgnoredAny>();
    // Each object starts at its `{`: the whitespace before it ends the one before, so lines
    // are counted from where the object is.
    let mut starts = vec![0];
    while let Some(next) = stream.next() {
        next.ok()?;
        let end = stream.byte_offset();
        let rest = &text[end..];
        let next_start = end + (rest.len() - rest.trim_start().len());
        if next_start < text.len() {
            starts.push(next_start);
        }
    }
    if starts.len() < 2 {
        return None;
    }
    starts.push(text.len());
    Some(starts.windows(2).map(|w| &text[w[0]..w[1]]).collect())
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
    match strict::read_documents(text) {
        Ok(docs) => {
            // A document marker followed by nothing is an empty document, and still counts.
            if docs.is_empty() && text.starts_with("---") {
                out.push(None);
            }
            for value in docs {
                if value.is_null() {
                    out.push(None);
                    continue;
                }
                let mut items = Vec::new();
                admit_document(value, default_namespace, &mut items);
                out.push(Some(items));
            }
        }
        Err(e) => {
            let at =
                e.at.map(|(l, c)| format!(" at line {} column {c}", line as u64 + l - 1))
                    .unwrap_or_default();
            out.push(invalid(format!("is not valid YAML{at}: {}", e.message)));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use k8s_openapi::jiff::Timestamp;

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
    fn a_stream_of_json_objects_is_read_object_by_object() {
        let org = |n: &str| {
            format!(
                r#"{{"apiVersion": "suborg.io/v1alpha1", "kind": "Organization", "metadata": {{"name": "{n}"}}, "spec": {{}}}}"#
            )
        };
        let text = format!("{}{}\n{}\n\n{}\n", org("a"), org("b"), org("c"), org("Bad"));
        let parts = json_stream(&text).expect("a stream");
        assert_eq!(parts.len(), 4);
        assert_eq!(parts.concat(), text);
        let mut loader = Loader::new("default");
        loader.add_bytes("x.json", text.as_bytes());
        let (report, set, _) = loader.finish(Timestamp::UNIX_EPOCH);
        assert_eq!(set.organizations.len(), 3, "{:?}", report.problems);
        // The bad one is named by its own document and line.
        assert!(report.errors > 0);
        for p in &report.problems {
            assert_eq!((p.source.document, p.source.line), (4, 4), "{p:?}");
        }
        // One object, YAML, or broken JSON: not a stream.
        assert!(json_stream(&org("a")).is_none());
        assert!(json_stream("a: 1\n").is_none());
        assert!(json_stream(&format!("{}{{\"kind\": ", org("a"))).is_none());
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
                .starts_with("is not valid YAML at line 6 column 7: unclosed bracket"),
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

    /// Block mappings nested up to the reader's limit are read on the reader's own stack (this
    /// test's thread has 2 MiB), and past it refused by name.
    #[test]
    fn deep_block_nesting_is_read_or_refused_without_overflow() {
        let nested = |levels: usize| {
            let mut text = String::from(
                "apiVersion: suborg.io/v1alpha1\nkind: Organization\nmetadata: {name: a}\nspec:\n",
            );
            for level in 1..levels {
                text.push_str(&format!("{}a:\n", "  ".repeat(level)));
            }
            text.push_str(&format!("{}a: 1\n", "  ".repeat(levels)));
            text
        };
        let problems = |levels: usize| {
            let mut loader = Loader::new("default");
            loader.add_bytes("deep.yaml", nested(levels).as_bytes());
            let (report, _, _) = loader.finish(Timestamp::UNIX_EPOCH);
            report.problems
        };
        let within = problems(2 * strict::MAX_DEPTH - 2);
        assert!(
            within
                .iter()
                .all(|p| p.problem.reason != Reason::InvalidYaml),
            "{within:?}"
        );
        let past = problems(2 * strict::MAX_DEPTH + 5);
        assert_eq!(past.len(), 1, "{past:?}");
        assert_eq!(past[0].problem.reason, Reason::InvalidYaml);
        assert!(past[0].problem.message.contains("levels deep"), "{past:?}");
    }
}
