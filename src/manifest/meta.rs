//! What the API server's object-metadata validation refuses in labels, annotations and
//! finalizers, for every object it is sent: `validate` reads a Namespace's labels to decide
//! delegation, so a label the API server would refuse must not decide anything here either.

use serde_json::Value;

use super::admission::json_type;
use crate::api::LABEL_KEY_RULE;
use crate::domain::problem::{ObjectKey, Problem, Reason};
use crate::domain::slug::is_dns_subdomain;

/// The most bytes of annotations (keys and values) an object may carry.
const ANNOTATIONS_MAX_BYTES: usize = 256 * 1024;

/// The fields of an object's `metadata`: any other is refused by kubectl's strict decoding
/// (a misspelt `label` would otherwise be dropped without a word).
const OBJECT_META: &[&str] = &[
    "annotations",
    "creationTimestamp",
    "deletionGracePeriodSeconds",
    "deletionTimestamp",
    "finalizers",
    "generateName",
    "generation",
    "labels",
    "managedFields",
    "name",
    "namespace",
    "ownerReferences",
    "resourceVersion",
    "selfLink",
    "uid",
];

/// What a qualified name (an annotation key, a finalizer) is, in words.
const QUALIFIED_NAME: &str = "an optional DNS subdomain and '/', then at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit";

/// What a label value may be, in words.
const LABEL_VALUE_RULE: &str = "must be empty or at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit";

/// Labels and annotations set to `null` made empty, as the API server reads them: done to
/// every document first, so what reads labels sees no null.
pub(super) fn empty_nulls(metadata: Option<&mut Value>) {
    let Some(metadata) = metadata else { return };
    for field in ["labels", "annotations"] {
        if let Some(Value::Object(map)) = metadata.get_mut(field) {
            for v in map.values_mut().filter(|v| v.is_null()) {
                *v = Value::String(String::new());
            }
        }
    }
}

/// The problems of `metadata`'s labels, annotations and finalizers, on the object `key`.
pub(super) fn problems(metadata: Option<&Value>, key: &ObjectKey) -> Vec<Problem> {
    let mut out = Vec::new();
    let Some(metadata) = metadata else {
        return out;
    };
    if let Value::Object(fields) = metadata {
        for k in fields.keys().filter(|k| !OBJECT_META.contains(&k.as_str())) {
            out.push(Problem::error(
                Reason::UnknownField,
                key,
                format!("metadata.{k}"),
                format!(
                    "unknown field (known fields here: {})",
                    OBJECT_META.join(", ")
                ),
            ));
        }
    }
    let mut bad = |field: &str, message: String| {
        out.push(Problem::error(Reason::SchemaViolation, key, field, message));
    };
    for (k, v) in strings(metadata, "labels", "label", &mut bad) {
        if !is_qualified_name(k) {
            bad("metadata.labels", format!("key {k:?} {LABEL_KEY_RULE}"));
        }
        if !is_label_value(v) {
            bad(
                "metadata.labels",
                format!("the value of label {k:?}, {v:?}, {LABEL_VALUE_RULE}"),
            );
        }
    }
    let mut bytes = 0;
    for (k, v) in strings(metadata, "annotations", "annotation", &mut bad) {
        // The API server reads annotation keys in lower case.
        if !is_qualified_name(&k.to_ascii_lowercase()) {
            bad(
                "metadata.annotations",
                format!("key {k:?} must be an annotation key: {QUALIFIED_NAME}"),
            );
        }
        bytes += k.len() + v.len();
    }
    if bytes > ANNOTATIONS_MAX_BYTES {
        bad(
            "metadata.annotations",
            format!(
                "may hold at most {ANNOTATIONS_MAX_BYTES} bytes of keys and values, not {bytes}"
            ),
        );
    }
    match metadata.get("finalizers") {
        None | Some(Value::Null) => {}
        Some(Value::Array(finalizers)) => {
            for (i, f) in finalizers.iter().enumerate() {
                match f {
                    Value::String(f) if is_qualified_name(f) => {}
                    Value::String(f) => bad(
                        &format!("metadata.finalizers[{i}]"),
                        format!("{f:?} is not a finalizer name: {QUALIFIED_NAME}"),
                    ),
                    other => bad(
                        &format!("metadata.finalizers[{i}]"),
                        format!("must be a string, not {}", json_type(other)),
                    ),
                }
            }
        }
        Some(other) => bad(
            "metadata.finalizers",
            format!("must be a list of strings, not {}", json_type(other)),
        ),
    }
    out
}

/// The string entries of the mapping `metadata.<field>` (labels, annotations); a field that is
/// not a mapping, and each value that is not a string, is reported through `bad`.
fn strings<'a>(
    metadata: &'a Value,
    field: &str,
    what: &str,
    bad: &mut impl FnMut(&str, String),
) -> Vec<(&'a String, &'a str)> {
    let path = format!("metadata.{field}");
    match metadata.get(field) {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Object(map)) => map
            .iter()
            .filter_map(|(k, v)| match v {
                Value::String(v) => Some((k, v.as_str())),
                other => {
                    bad(
                        &path,
                        format!(
                            "the value of {what} {k:?} must be a string, not {}",
                            json_type(other)
                        ),
                    );
                    None
                }
            })
            .collect(),
        Some(other) => {
            bad(
                &path,
                format!("must be a mapping of strings, not {}", json_type(other)),
            );
            Vec::new()
        }
    }
}

/// A qualified name as the API server checks it (`IsQualifiedName`): an optional prefix that is
/// a DNS subdomain and a `/`, then a name of at most 63 characters.
fn is_qualified_name(s: &str) -> bool {
    match s.split_once('/') {
        Some((prefix, name)) => {
            !prefix.is_empty() && is_dns_subdomain(prefix) && is_name_part(name)
        }
        None => is_name_part(s),
    }
}

/// The name part of a qualified name, and a non-empty label value: at most 63 letters, digits,
/// `-`, `_` and `.`, starting and ending with a letter or digit.
fn is_name_part(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

fn is_label_value(s: &str) -> bool {
    s.is_empty() || is_name_part(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn reasons(metadata: Value) -> Vec<String> {
        let key = ObjectKey::cluster("Organization", "acme");
        problems(Some(&metadata), &key)
            .into_iter()
            .map(|p| format!("{}: {}", p.field, p.message))
            .collect()
    }

    #[test]
    fn names_as_the_api_server_checks_them() {
        for ok in [
            "a",
            "suborg.io/organization",
            "app.kubernetes.io/name",
            "A_b.c-D",
            &"a".repeat(63),
            &format!("{}/x", "a".repeat(253)),
        ] {
            assert!(is_qualified_name(ok), "{ok}");
        }
        for bad in [
            "",
            "bad key!",
            "Bad_Prefix/k",
            "/k",
            "a/",
            "a/b/c",
            "-a",
            "a-",
            &"a".repeat(64),
            &format!("{}/x", "a".repeat(254)),
            "é",
        ] {
            assert!(!is_qualified_name(bad), "{bad}");
        }
        assert!(is_label_value(""));
        assert!(!is_label_value("a b"));
        assert!(!is_label_value(&"a".repeat(64)));
    }

    #[test]
    fn labels_annotations_and_finalizers_are_checked() {
        assert!(
            reasons(json!({
                "name": "acme",
                "labels": {"suborg.io/organization": "acme", "empty": ""},
                "annotations": {"Example.com/Note": "anything at all: spaces, 'quotes'"},
                "finalizers": ["suborg.io/store-cleanup", "kubernetes"],
            }))
            .is_empty()
        );
        let found = reasons(json!({
            "labels": {"bad key!": "x", "k": "a b", "n": 1},
            "annotations": {"bad key": "x", "big": "x".repeat(ANNOTATIONS_MAX_BYTES)},
            "finalizers": ["not a valid finalizer!"],
        }));
        let expected = [
            "metadata.labels: the value of label \"n\" must be a string, not a number",
            "metadata.labels: key \"bad key!\" must be a label key",
            "metadata.labels: the value of label \"k\", \"a b\", must be empty",
            "metadata.annotations: key \"bad key\" must be an annotation key",
            "metadata.annotations: may hold at most 262144 bytes",
            "metadata.finalizers[0]: \"not a valid finalizer!\" is not a finalizer name",
        ];
        assert_eq!(found.len(), expected.len(), "{found:#?}");
        for (f, e) in found.iter().zip(expected) {
            assert!(f.starts_with(e), "{f} / {e}");
        }
        assert_eq!(
            reasons(json!({"labels": ["a"]})),
            ["metadata.labels: must be a mapping of strings, not a list"]
        );
        let typo = reasons(json!({"label": {"a": "b"}}));
        assert_eq!(typo.len(), 1, "{typo:?}");
        assert!(
            typo[0].starts_with("metadata.label: unknown field (known fields here: annotations,"),
            "{typo:?}"
        );
    }
}
