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

/// The fields of an entry of `metadata.ownerReferences`.
const OWNER_REFERENCE: &[&str] = &[
    "apiVersion",
    "blockOwnerDeletion",
    "controller",
    "kind",
    "name",
    "uid",
];

/// The annotation `kubectl apply` without `--server-side` writes: the whole object as applied.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

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

/// The problems of `metadata`'s labels, annotations, finalizers and owner references, on the
/// object `key`.
pub(super) fn problems(metadata: Option<&Value>, key: &ObjectKey) -> Vec<Problem> {
    let mut out = Vec::new();
    let Some(metadata) = metadata else {
        return out;
    };
    if let Value::Object(fields) = metadata {
        unknown_fields(fields, OBJECT_META, "metadata", key, &mut out);
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
    owner_references(metadata.get("ownerReferences"), key, &mut out);
    out
}

/// The problems of `metadata.ownerReferences`, as the API server finds them: each entry names
/// an owner by API version (with a version), kind, name and uid; an Event of the core group
/// owns nothing; and at most one entry is the object's controller.
fn owner_references(references: Option<&Value>, key: &ObjectKey, out: &mut Vec<Problem>) {
    let references = match references {
        None | Some(Value::Null) => return,
        Some(Value::Array(references)) => references,
        Some(other) => {
            out.push(Problem::error(
                Reason::SchemaViolation,
                key,
                "metadata.ownerReferences",
                format!(
                    "must be a list of owner references, not {}",
                    json_type(other)
                ),
            ));
            return;
        }
    };
    let mut controllers = Vec::new();
    let mut uids = std::collections::HashSet::new();
    for (i, entry) in references.iter().enumerate() {
        let at = format!("metadata.ownerReferences[{i}]");
        // The API server keeps the first of the entries with one uid, and checks what it kept.
        if let Some(uid) = entry
            .get("uid")
            .and_then(Value::as_str)
            .filter(|u| !u.is_empty())
            && !uids.insert(uid)
        {
            out.push(Problem::warning(
                Reason::SchemaViolation,
                key,
                at,
                format!(
                    "repeats uid {uid:?} of an earlier owner reference: the API server keeps the first and drops this one"
                ),
            ));
            continue;
        }
        let empty = serde_json::Map::new();
        let fields = match entry {
            Value::Object(fields) => fields,
            // A null entry is an owner reference with every field empty.
            Value::Null => &empty,
            other => {
                out.push(Problem::error(
                    Reason::SchemaViolation,
                    key,
                    at,
                    format!("must be an owner reference, not {}", json_type(other)),
                ));
                continue;
            }
        };
        unknown_fields(fields, OWNER_REFERENCE, &at, key, out);
        let mut bad = |reason: Reason, field: String, message: String| {
            out.push(Problem::error(reason, key, field, message));
        };
        let mut text = |field: &str| match fields.get(field) {
            None | Some(Value::Null) => Some(""),
            Some(Value::String(s)) => Some(s.as_str()),
            Some(other) => {
                bad(
                    Reason::SchemaViolation,
                    format!("{at}.{field}"),
                    format!("must be a string, not {}", json_type(other)),
                );
                None
            }
        };
        let (api_version, kind, name, uid) =
            (text("apiVersion"), text("kind"), text("name"), text("uid"));
        let mut flag = |field: &str| match fields.get(field) {
            None | Some(Value::Null) => Some(false),
            Some(Value::Bool(b)) => Some(*b),
            Some(other) => {
                bad(
                    Reason::SchemaViolation,
                    format!("{at}.{field}"),
                    format!("must be true or false, not {}", json_type(other)),
                );
                None
            }
        };
        let controller = flag("controller");
        flag("blockOwnerDeletion");
        let version = api_version.map(owner_version);
        if version.is_some_and(|(_, v)| v.is_empty()) {
            bad(
                Reason::SchemaViolation,
                format!("{at}.apiVersion"),
                format!(
                    "{:?} names no version: an owner's API version is `VERSION` or `GROUP/VERSION`",
                    api_version.unwrap_or_default()
                ),
            );
        }
        for (field, value) in [("kind", kind), ("name", name), ("uid", uid)] {
            if value == Some("") {
                bad(
                    Reason::SchemaViolation,
                    format!("{at}.{field}"),
                    format!("an owner reference must give the owner's {field}"),
                );
            }
        }
        if version == Some(("", "v1")) && kind == Some("Event") {
            bad(
                Reason::SchemaViolation,
                at,
                "an Event (v1) cannot be an owner".to_owned(),
            );
        }
        if controller == Some(true) {
            controllers.push(format!(
                "{}/{}",
                kind.unwrap_or_default(),
                name.unwrap_or_default()
            ));
        }
    }
    if controllers.len() > 1 {
        out.push(Problem::error(
            Reason::SchemaViolation,
            key,
            "metadata.ownerReferences",
            format!(
                "only one owner reference may have `controller: true`, not {} ({})",
                controllers.len(),
                controllers.join(", ")
            ),
        ));
    }
}

/// An `UnknownField` problem for each field of `fields` (at `at`) not in `known`, as kubectl's
/// strict decoding refuses them.
fn unknown_fields(
    fields: &serde_json::Map<String, Value>,
    known: &[&str],
    at: &str,
    key: &ObjectKey,
    out: &mut Vec<Problem>,
) {
    for k in fields.keys().filter(|k| !known.contains(&k.as_str())) {
        out.push(Problem::error(
            Reason::UnknownField,
            key,
            format!("{at}.{k}"),
            format!("unknown field (known fields here: {})", known.join(", ")),
        ));
    }
}

/// The group and version of an owner's `apiVersion`, read as the API server reads it: no `/`
/// is a version of the core group; one splits group from version; more, or none but `/`, give
/// no version.
fn owner_version(api_version: &str) -> (&str, &str) {
    if api_version == "/" {
        return ("", "");
    }
    match api_version.split_once('/') {
        None => ("", api_version),
        Some((_, version)) if version.contains('/') => ("", ""),
        Some(split) => split,
    }
}

/// A warning when the object's annotations fit the API server's limit but would not once
/// `kubectl apply` without `--server-side` (Argo CD's default too) copied the whole object into
/// `kubectl.kubernetes.io/last-applied-configuration`: such an apply fails, while a
/// server-side apply, Helm and `suborg apply` take the object.
pub(super) fn client_side_apply_warning(document: &Value, key: &ObjectKey) -> Option<Problem> {
    let annotations = document
        .get("metadata")
        .and_then(|m| m.get("annotations"))
        .and_then(Value::as_object);
    let own: usize = annotations.map_or(0, |a| {
        a.iter()
            .filter(|(k, _)| k.as_str() != LAST_APPLIED)
            .map(|(k, v)| k.len() + v.as_str().map_or(0, str::len))
            .sum()
    });
    if own > ANNOTATIONS_MAX_BYTES {
        return None;
    }
    // kubectl leaves an earlier copy out of the new one.
    let applied = match annotations {
        Some(a) if a.contains_key(LAST_APPLIED) => {
            let mut without = document.clone();
            without["metadata"]["annotations"]
                .as_object_mut()?
                .remove(LAST_APPLIED);
            go_json_len(&without)?
        }
        _ => go_json_len(document)?,
    };
    let total = own + LAST_APPLIED.len() + applied;
    (total > ANNOTATIONS_MAX_BYTES).then(|| {
        Problem::warning(
            Reason::SchemaViolation,
            key,
            "metadata.annotations",
            format!(
                "`kubectl apply` without `--server-side` (and Argo CD's default client-side \
                 apply) copies the whole object, {applied} bytes as JSON, into the annotation \
                 {LAST_APPLIED}: with its {own} bytes of other annotations that is about {total} \
                 bytes, over the API server's limit of {ANNOTATIONS_MAX_BYTES} on annotations, \
                 and that apply fails. Apply it with `--server-side` (Argo CD: \
                 `ServerSideApply=true`); Helm and `suborg apply` take it as it is"
            ),
        )
    })
}

/// The length of `value` as Go's `encoding/json` writes it (kubectl's copy of an object):
/// compact, with `<`, `>` and `&` written `\u003c`, `\u003e`, `\u0026`, and U+2028 and U+2029
/// written `\u2028`, `\u2029`, where serde_json writes the characters themselves.
fn go_json_len(value: &Value) -> Option<usize> {
    let json = serde_json::to_string(value).ok()?;
    let longer: usize = json
        .chars()
        .map(|c| match c {
            '<' | '>' | '&' => 5,
            '\u{2028}' | '\u{2029}' => 3,
            _ => 0,
        })
        .sum();
    Some(json.len() + longer)
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

    #[test]
    fn owner_references_as_the_api_server_checks_them() {
        // Each accepted by kube-apiserver v1.28.7 (`kubectl apply --dry-run=server`).
        for ok in [
            json!([{"apiVersion": "v1", "kind": "ConfigMap", "name": "x", "uid": "1"}]),
            json!([{"apiVersion": "events.k8s.io/v1", "kind": "Event", "name": "x", "uid": "1"}]),
            json!([{"apiVersion": "/v1", "kind": "A", "name": "a", "uid": "1"}]),
            json!([{"apiVersion": "V 1", "kind": "config map", "name": "X Y/z", "uid": "not a uid"}]),
            json!([
                {"apiVersion": "v1", "kind": "A", "name": "a", "uid": "1", "controller": false},
                {"apiVersion": "v1", "kind": "B", "name": "b", "uid": "2", "controller": true,
                 "blockOwnerDeletion": null},
            ]),
            json!(null),
        ] {
            let found = reasons(json!({"ownerReferences": ok}));
            assert!(found.is_empty(), "{ok}: {found:?}");
        }
        // Each refused by it, with the field it names.
        for (refs, expected) in [
            (
                json!([{"kind": "A", "name": "a", "uid": "1"}]),
                "metadata.ownerReferences[0].apiVersion: \"\" names no version",
            ),
            (
                json!([{"apiVersion": "a/b/c", "kind": "A", "name": "a", "uid": "1"}]),
                "metadata.ownerReferences[0].apiVersion: \"a/b/c\" names no version",
            ),
            (
                json!([{"apiVersion": "apps/", "kind": "A", "name": "a", "uid": "1"}]),
                "metadata.ownerReferences[0].apiVersion: \"apps/\" names no version",
            ),
            (
                json!([{"apiVersion": "/", "kind": "A", "name": "a", "uid": "1"}]),
                "metadata.ownerReferences[0].apiVersion: \"/\" names no version",
            ),
            (
                json!([{"apiVersion": "v1", "name": "a", "uid": "1"}]),
                "metadata.ownerReferences[0].kind: an owner reference must give the owner's kind",
            ),
            (
                json!([{"apiVersion": "v1", "kind": "A", "name": null, "uid": "1"}]),
                "metadata.ownerReferences[0].name: an owner reference must give the owner's name",
            ),
            (
                json!([{"apiVersion": "v1", "kind": "A", "name": "a", "uid": ""}]),
                "metadata.ownerReferences[0].uid: an owner reference must give the owner's uid",
            ),
            (
                json!([{"apiVersion": "/v1", "kind": "Event", "name": "a", "uid": "1"}]),
                "metadata.ownerReferences[0]: an Event (v1) cannot be an owner",
            ),
            (
                json!([
                    {"apiVersion": "v1", "kind": "A", "name": "a", "uid": "1", "controller": true},
                    {"apiVersion": "v1", "kind": "B", "name": "b", "uid": "2", "controller": true},
                ]),
                "metadata.ownerReferences: only one owner reference may have `controller: true`, not 2 (A/a, B/b)",
            ),
            (
                json!([{"apiVersion": "v1", "kind": "A", "name": "a", "uid": 1}]),
                "metadata.ownerReferences[0].uid: must be a string, not a number",
            ),
            (
                json!([{"apiVersion": "v1", "kind": "A", "name": "a", "uid": "1", "controller": "yes"}]),
                "metadata.ownerReferences[0].controller: must be true or false, not a string",
            ),
            (
                json!([{"apiVersion": "v1", "kind": "A", "name": "a", "uid": "1", "foo": 1}]),
                "metadata.ownerReferences[0].foo: unknown field",
            ),
            (
                json!(["x"]),
                "metadata.ownerReferences[0]: must be an owner reference, not a string",
            ),
            (
                json!({"apiVersion": "v1"}),
                "metadata.ownerReferences: must be a list of owner references",
            ),
        ] {
            let found = reasons(json!({"ownerReferences": refs}));
            assert_eq!(found.len(), 1, "{refs}: {found:?}");
            assert!(found[0].starts_with(expected), "{found:?} / {expected}");
        }
        // A null entry is an entry with every field empty: four problems.
        assert_eq!(reasons(json!({"ownerReferences": [null]})).len(), 4);
        // An entry repeating an earlier one's uid is dropped by the API server before it
        // counts controllers: a warning, not a second controller.
        let twice =
            json!({"apiVersion": "v1", "kind": "A", "name": "a", "uid": "1", "controller": true});
        let key = ObjectKey::cluster("Organization", "acme");
        let found = problems(Some(&json!({"ownerReferences": [twice, twice]})), &key);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(!found[0].is_error());
        assert_eq!(found[0].field, "metadata.ownerReferences[1]");
    }

    #[test]
    fn annotations_that_client_side_apply_doubles_past_the_limit_are_warned_of() {
        let key = ObjectKey::cluster("Organization", "acme");
        let object = |bytes: usize| {
            json!({
                "apiVersion": "suborg.io/v1alpha1",
                "kind": "Organization",
                "metadata": {"name": "or-big", "annotations": {"note": "x".repeat(bytes)}},
                "spec": {"displayName": "Probe"},
            })
        };
        // kube-apiserver v1.28.7 took `kubectl apply` of this object with 130,950 bytes in the
        // note and refused it with 131,000 (`--server-side` took both).
        assert!(client_side_apply_warning(&object(130_950), &key).is_none());
        let warning = client_side_apply_warning(&object(131_000), &key).expect("a warning");
        assert!(!warning.is_error());
        assert_eq!(warning.field, "metadata.annotations");
        assert!(
            warning.message.contains("--server-side"),
            "{}",
            warning.message
        );
        // An earlier copy in the object is replaced, not copied again.
        let mut applied_before = object(100_000);
        applied_before["metadata"]["annotations"][LAST_APPLIED] = json!("y".repeat(100_000));
        assert!(client_side_apply_warning(&applied_before, &key).is_none());
        // No annotations at all: a large spec alone doubles past the limit once copied.
        let mut big_spec = object(0);
        big_spec["metadata"]
            .as_object_mut()
            .unwrap()
            .remove("annotations");
        big_spec["spec"]["note"] = json!("x".repeat(262_100));
        assert!(client_side_apply_warning(&big_spec, &key).is_some());
        // Go writes `<`, `>` and `&` as six bytes each: 40,000 of them are 240,000 bytes in the
        // copy (kube-apiserver v1.28.7 refused this object's client-side apply).
        let mut escaped = object(0);
        escaped["metadata"]["annotations"]["note"] = json!("<".repeat(40_000));
        assert!(client_side_apply_warning(&escaped, &key).is_some());
        // Past the limit itself it is an error already, not a warning.
        assert!(client_side_apply_warning(&object(ANNOTATIONS_MAX_BYTES), &key).is_none());
    }
}
