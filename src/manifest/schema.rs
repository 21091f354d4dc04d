//! The structural checks the API server applies to a custom resource before its CEL rules:
//! types, required fields, unknown fields, enums, patterns, lengths, list types and formats.
//!
//! The schema is the CRD's own `openAPIV3Schema`, compiled once into a tree, so `suborg
//! validate` and the API server judge an object by the same definition.

use std::collections::{BTreeMap, HashSet};

use regex::Regex;
use serde_json::Value;

/// A field that breaks the schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaError {
    /// JSON path of the field (`spec.roles[0].role`).
    pub path: String,
    /// Whether the field is unknown to the schema (as opposed to present but wrong).
    pub unknown_field: bool,
    /// What is wrong.
    pub message: String,
}

/// One node of a compiled structural schema.
#[derive(Debug, Default)]
pub struct Node {
    ty: Option<String>,
    nullable: bool,
    properties: BTreeMap<String, Node>,
    required: Vec<String>,
    additional: Option<Box<Node>>,
    preserve_unknown: bool,
    items: Option<Box<Node>>,
    enumeration: Option<Vec<Value>>,
    pattern: Option<(String, Regex)>,
    min_length: Option<usize>,
    max_length: Option<usize>,
    min_items: Option<usize>,
    max_items: Option<usize>,
    max_properties: Option<usize>,
    format: Option<String>,
    list_type: Option<String>,
    list_map_keys: Vec<String>,
}

/// Compiles an `openAPIV3Schema`. Panics only on a regex the schema itself carries that does not
/// compile, which is a bug in the CRD types and caught by the tests.
pub fn compile(schema: &Value) -> Node {
    let get = |k: &str| schema.get(k);
    let usize_of = |k: &str| get(k).and_then(Value::as_u64).map(|n| n as usize);
    let str_of = |k: &str| get(k).and_then(Value::as_str).map(str::to_owned);
    Node {
        ty: str_of("type"),
        nullable: get("nullable").and_then(Value::as_bool).unwrap_or(false),
        properties: get("properties")
            .and_then(Value::as_object)
            .map(|p| p.iter().map(|(k, v)| (k.clone(), compile(v))).collect())
            .unwrap_or_default(),
        required: get("required")
            .and_then(Value::as_array)
            .map(|r| {
                r.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default(),
        additional: get("additionalProperties")
            .filter(|v| v.is_object())
            .map(|v| Box::new(compile(v))),
        preserve_unknown: get("x-kubernetes-preserve-unknown-fields")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        items: get("items").map(|v| Box::new(compile(v))),
        enumeration: get("enum").and_then(Value::as_array).cloned(),
        pattern: str_of("pattern").map(|p| {
            let re = Regex::new(&p).unwrap_or_else(|e| panic!("schema pattern {p:?}: {e}"));
            (p, re)
        }),
        min_length: usize_of("minLength"),
        max_length: usize_of("maxLength"),
        min_items: usize_of("minItems"),
        max_items: usize_of("maxItems"),
        max_properties: usize_of("maxProperties"),
        format: str_of("format"),
        list_type: str_of("x-kubernetes-list-type"),
        list_map_keys: get("x-kubernetes-list-map-keys")
            .and_then(Value::as_array)
            .map(|r| {
                r.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default(),
    }
}

impl Node {
    /// Removes the fields of `value` set to `null` (`~`, or a Helm template that rendered
    /// empty), in objects and maps at any depth, not in lists. The API server drops them where
    /// the schema allows no null, before it validates (so a default applies); where it allows
    /// one (an optional field), it keeps the null, but its rules read the field as absent
    /// (`has()` is false) and so does the typed object.
    pub fn drop_nulls(&self, value: &mut Value) {
        match value {
            Value::Object(map) => map.retain(|k, v| {
                let Some(node) = self.properties.get(k).or(self.additional.as_deref()) else {
                    return true;
                };
                if v.is_null() {
                    return false;
                }
                node.drop_nulls(v);
                true
            }),
            Value::Array(items) => {
                if let Some(node) = &self.items {
                    for item in items {
                        node.drop_nulls(item);
                    }
                }
            }
            _ => {}
        }
    }

    /// Checks `value` (found at `path`) against this node, appending every error.
    pub fn check(&self, value: &Value, path: &str, errors: &mut Vec<SchemaError>) {
        let err = |errors: &mut Vec<SchemaError>, message: String| {
            errors.push(SchemaError {
                path: path.to_owned(),
                unknown_field: false,
                message,
            })
        };
        if value.is_null() {
            if !self.nullable && self.ty.is_some() {
                err(
                    errors,
                    format!("must be {}, not null", article(self.ty.as_deref())),
                );
            }
            return;
        }
        let type_ok = match self.ty.as_deref() {
            None => true,
            Some("object") => value.is_object(),
            Some("array") => value.is_array(),
            Some("string") => value.is_string(),
            Some("boolean") => value.is_boolean(),
            Some("integer") => value.is_i64() || value.is_u64(),
            Some("number") => value.is_number(),
            Some(_) => true,
        };
        if !type_ok {
            // kubectl, Helm and Argo CD read YAML 1.1: a plain `no` or `0755` reaches the API
            // server as a boolean or a number.
            let hint = match (self.ty.as_deref(), value) {
                (Some("string"), Value::Bool(_)) => {
                    " (a plain yes, no, on, off, y or n is a boolean in YAML as kubectl reads it: quote the text)"
                }
                (Some("string"), Value::Number(_)) => " (quote the text to keep it as written)",
                _ => "",
            };
            err(
                errors,
                format!(
                    "must be {}, not {}{hint}",
                    article(self.ty.as_deref()),
                    describe(value)
                ),
            );
            return;
        }
        if let Some(allowed) = &self.enumeration
            && !allowed.contains(value)
        {
            let list: Vec<String> = allowed.iter().map(render).collect();
            err(
                errors,
                format!("{} is not one of {}", render(value), list.join(", ")),
            );
        }
        match value {
            Value::String(s) => self.check_string(s, path, errors),
            Value::Array(items) => self.check_array(items, path, errors),
            Value::Object(map) => self.check_object(map, path, errors),
            _ => {}
        }
    }

    fn check_object(
        &self,
        map: &serde_json::Map<String, Value>,
        path: &str,
        errors: &mut Vec<SchemaError>,
    ) {
        if let Some(max) = self.max_properties
            && map.len() > max
        {
            errors.push(SchemaError {
                path: path.to_owned(),
                unknown_field: false,
                message: format!("must have at most {max} entries, not {}", map.len()),
            });
        }
        for r in &self.required {
            if !map.contains_key(r) {
                errors.push(SchemaError {
                    path: join(path, r),
                    unknown_field: false,
                    message: "is required".to_owned(),
                });
            }
        }
        for (k, v) in map {
            let child = join(path, k);
            if let Some(node) = self.properties.get(k) {
                node.check(v, &child, errors);
            } else if let Some(node) = &self.additional {
                node.check(v, &child, errors);
            } else if !self.preserve_unknown {
                let mut known: Vec<&str> = self.properties.keys().map(String::as_str).collect();
                known.sort_unstable();
                errors.push(SchemaError {
                    path: child,
                    unknown_field: true,
                    message: if known.is_empty() {
                        "unknown field".to_owned()
                    } else {
                        format!("unknown field (known fields here: {})", known.join(", "))
                    },
                });
            }
        }
    }

    fn check_string(&self, s: &str, path: &str, errors: &mut Vec<SchemaError>) {
        let mut err = |message: String| {
            errors.push(SchemaError {
                path: path.to_owned(),
                unknown_field: false,
                message,
            })
        };
        // Lengths count characters, as the API server does.
        let n = if self.min_length.is_some() || self.max_length.is_some() {
            s.chars().count()
        } else {
            0
        };
        if let Some(min) = self.min_length
            && n < min
        {
            err(format!("must be at least {min} characters long"));
        }
        if let Some(max) = self.max_length
            && n > max
        {
            err(format!("must be at most {max} characters long, not {n}"));
        }
        if let Some((p, re)) = &self.pattern
            && !re.is_match(s)
        {
            // One message per field: a value that misses the pattern is not checked for format.
            return err(match crate::api::pattern_rule(p) {
                Some(rule) => format!("{} is not {rule}", render_str(s)),
                None => format!("{} does not match the pattern {p}", render_str(s)),
            });
        }
        match self.format.as_deref() {
            Some("date-time") if crate::domain::temporary::parse_time(s).is_none() => err(format!(
                "{} is not an RFC 3339 date-time such as 2026-01-01T09:00:00Z",
                render_str(s)
            )),
            Some("duration") if crate::domain::temporary::parse_duration(s).is_none() => {
                err(format!(
                    "{} is not a duration such as 90m, 8h or 1h30m, of at most 2562047h",
                    render_str(s)
                ))
            }
            _ => {}
        }
    }

    fn check_array(&self, items: &[Value], path: &str, errors: &mut Vec<SchemaError>) {
        if let Some(min) = self.min_items
            && items.len() < min
        {
            errors.push(SchemaError {
                path: path.to_owned(),
                unknown_field: false,
                message: format!(
                    "must have at least {min} item{}",
                    if min == 1 { "" } else { "s" }
                ),
            });
        }
        if let Some(max) = self.max_items
            && items.len() > max
        {
            errors.push(SchemaError {
                path: path.to_owned(),
                unknown_field: false,
                message: format!("must have at most {max} items, not {}", items.len()),
            });
        }
        if let Some(node) = &self.items {
            for (i, v) in items.iter().enumerate() {
                node.check(v, &format!("{path}[{i}]"), errors);
            }
        }
        match self.list_type.as_deref() {
            Some("set") => {
                let mut seen = HashSet::new();
                for (i, v) in items.iter().enumerate() {
                    if !seen.insert(v.to_string()) {
                        errors.push(SchemaError {
                            path: format!("{path}[{i}]"),
                            unknown_field: false,
                            message: format!("duplicate value {}", render(v)),
                        });
                    }
                }
            }
            Some("map") if !self.list_map_keys.is_empty() => {
                let mut seen = HashSet::new();
                for (i, v) in items.iter().enumerate() {
                    let key: Vec<String> = self
                        .list_map_keys
                        .iter()
                        .map(|k| v.get(k).map(Value::to_string).unwrap_or_default())
                        .collect();
                    if !seen.insert(key) {
                        let shown: Vec<String> = self
                            .list_map_keys
                            .iter()
                            .map(|k| format!("{k}={}", v.get(k).map(render).unwrap_or_default()))
                            .collect();
                        errors.push(SchemaError {
                            path: format!("{path}[{i}]"),
                            unknown_field: false,
                            message: format!("duplicate entry with {}", shown.join(", ")),
                        });
                    }
                }
            }
            _ => {}
        }
    }

    /// The node of a direct property.
    pub fn property(&self, name: &str) -> Option<&Node> {
        self.properties.get(name)
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

fn article(ty: Option<&str>) -> &'static str {
    match ty {
        Some("object") => "an object",
        Some("array") => "a list",
        Some("string") => "a string",
        Some("boolean") => "true or false",
        Some("integer") => "an integer",
        Some("number") => "a number",
        _ => "a value",
    }
}

fn describe(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => format!("the boolean {b}"),
        Value::Number(n) => format!("the number {n}"),
        Value::String(s) => format!("the string {}", render_str(s)),
        Value::Array(_) => "a list".into(),
        Value::Object(_) => "an object".into(),
    }
}

/// Renders a value for a message, cut short so a huge value cannot flood the output.
fn render(v: &Value) -> String {
    match v {
        Value::String(s) => render_str(s),
        other => cut(other.to_string()),
    }
}

fn render_str(s: &str) -> String {
    cut(format!("{s:?}"))
}

/// Cuts a rendered value to 80 characters.
fn cut(s: String) -> String {
    if s.chars().count() > 80 {
        let mut short: String = s.chars().take(77).collect();
        short.push('…');
        short
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn errors(schema: Value, value: Value) -> Vec<SchemaError> {
        let node = compile(&schema);
        let mut e = Vec::new();
        node.check(&value, "spec", &mut e);
        e
    }

    #[test]
    fn types_required_and_unknown_fields() {
        let schema = json!({
            "type": "object", "required": ["a"],
            "properties": {"a": {"type": "integer"}, "b": {"type": "string", "nullable": true}}
        });
        assert!(errors(schema.clone(), json!({"a": 1, "b": null})).is_empty());
        let e = errors(schema.clone(), json!({"b": "x", "c": 1}));
        assert_eq!(e.len(), 2);
        assert_eq!(e[0].path, "spec.a");
        assert_eq!(e[0].message, "is required");
        assert_eq!(e[1].path, "spec.c");
        assert!(e[1].unknown_field);
        assert!(e[1].message.contains("known fields here: a, b"));
        let e = errors(schema, json!({"a": 1.5}));
        assert_eq!(e[0].message, "must be an integer, not the number 1.5");
    }

    #[test]
    fn strings() {
        let schema =
            json!({"type": "string", "minLength": 2, "maxLength": 4, "pattern": "^[a-z]+$"});
        assert!(errors(schema.clone(), json!("abc")).is_empty());
        assert!(
            errors(schema.clone(), json!("äöü")).len() == 1,
            "counts characters, not bytes"
        );
        assert_eq!(
            errors(schema.clone(), json!("a"))[0].message,
            "must be at least 2 characters long"
        );
        assert!(
            errors(schema.clone(), json!("abcde"))[0]
                .message
                .contains("at most 4")
        );
        assert!(
            errors(schema, json!("AB"))[0]
                .message
                .contains("does not match the pattern")
        );
        let e = errors(json!({"type": "string", "enum": ["A", "B"]}), json!("C"));
        assert_eq!(e[0].message, r#""C" is not one of "A", "B""#);
        let e = errors(
            json!({"type": "string", "format": "date-time"}),
            json!("tomorrow"),
        );
        assert!(e[0].message.contains("RFC 3339"));
        assert!(
            errors(
                json!({"type": "string", "format": "date-time"}),
                json!("2026-01-01T00:00:00Z")
            )
            .is_empty()
        );
    }

    #[test]
    fn lists() {
        let set = json!({"type": "array", "maxItems": 3, "x-kubernetes-list-type": "set", "items": {"type": "string"}});
        assert!(errors(set.clone(), json!(["a", "b"])).is_empty());
        let e = errors(set.clone(), json!(["a", "a"]));
        assert_eq!(
            (e[0].path.as_str(), e[0].message.as_str()),
            ("spec[1]", r#"duplicate value "a""#)
        );
        assert!(
            errors(set, json!(["a", "b", "c", "d"]))[0]
                .message
                .contains("at most 3")
        );
        let map = json!({"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["role"],
            "items": {"type": "object", "properties": {"role": {"type": "string"}}}});
        let e = errors(map, json!([{"role": "a"}, {"role": "a"}]));
        assert_eq!(e[0].message, r#"duplicate entry with role="a""#);
    }

    #[test]
    fn maps_have_at_most_max_properties_entries() {
        let map = json!({"type": "object", "maxProperties": 2, "additionalProperties": {"type": "string"}});
        assert!(errors(map.clone(), json!({"a": "1", "b": "2"})).is_empty());
        let e = errors(map, json!({"a": "1", "b": "2", "c": "3"}));
        assert_eq!(
            (e[0].path.as_str(), e[0].message.as_str()),
            ("spec", "must have at most 2 entries, not 3")
        );
    }

    #[test]
    fn long_values_are_cut_short_in_messages() {
        let e = errors(
            json!({"type": "string", "pattern": "^a$"}),
            json!("b".repeat(10_000)),
        );
        assert!(e[0].message.len() < 200, "{}", e[0].message);
    }
}
