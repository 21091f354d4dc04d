//! The check the API server's CEL compiler makes and an interpreter does not: every field a rule
//! selects is declared by the schema, under its escaped name.
//!
//! The API server compiles each rule against types built from the schema. A property whose name
//! is a CEL reserved word (`namespace`, `in`, `as`, `if`, …) or holds `_`, `.`, `-` or `/` is
//! declared there only under its escaped name (`__namespace__`, `a__dash__b`), so
//! `has(self.namespace)` is refused with `undefined field 'namespace'` when the CRD is created.
//! The offline interpreter only looks keys up at run time and cannot tell a misspelt field
//! from an absent one; this walk of each rule's syntax tree makes the same check the server's
//! type checker does, so such a CRD fails a test instead of `kubectl apply`.

use kube::core::cel::cel::common::ast::{EntryExpr, Expr, IdedExpr};
use kube::core::cel::cel::parser::Parser;
use serde_json::Value;

/// CEL's reserved words, which the API server escapes as `__word__` when they name a property.
const RESERVED: &[&str] = &[
    "true",
    "false",
    "null",
    "in",
    "as",
    "break",
    "const",
    "continue",
    "else",
    "for",
    "function",
    "if",
    "import",
    "let",
    "loop",
    "package",
    "namespace",
    "return",
    "var",
    "void",
    "while",
];

/// The name under which the API server's CEL sees the property `name`.
pub fn escape(name: &str) -> String {
    if RESERVED.contains(&name) {
        return format!("__{name}__");
    }
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        match c {
            '_' => out.push_str("__"),
            '.' => out.push_str("__dot__"),
            '-' => out.push_str("__dash__"),
            '/' => out.push_str("__slash__"),
            c => out.push(c),
        }
    }
    out
}

/// Every rule of `schema` (an `openAPIV3Schema`) that selects a field its schema does not
/// declare, or that does not parse: `path: rule "…": undefined field 'namespace'`.
pub fn undeclared_fields(schema: &Value) -> Vec<String> {
    // At the root the server declares what every object has; of `metadata`, rules see only
    // `name` and `generateName`.
    let mut root = schema.clone();
    if let Some(props) = root.get_mut("properties").and_then(Value::as_object_mut) {
        let string = serde_json::json!({"type": "string"});
        props.entry("apiVersion").or_insert_with(|| string.clone());
        props.entry("kind").or_insert_with(|| string.clone());
        props.insert(
            "metadata".into(),
            serde_json::json!({"type": "object", "properties": {"name": string, "generateName": string}}),
        );
    }
    let mut problems = Vec::new();
    walk_schema(&root, "", &mut problems);
    problems
}

fn walk_schema(node: &Value, path: &str, problems: &mut Vec<String>) {
    for rule in node
        .get("x-kubernetes-validations")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let Some(text) = rule.get("rule").and_then(Value::as_str) else {
            continue;
        };
        match Parser::new().parse(text) {
            Ok(expr) => {
                let mut found = Vec::new();
                let mut scope = vec![
                    ("self".to_owned(), Some(node)),
                    ("oldSelf".into(), Some(node)),
                ];
                check(&expr, &mut scope, &mut found);
                for f in found {
                    problems.push(format!("{path}: rule {text:?}: undefined field '{f}'"));
                }
            }
            Err(e) => problems.push(format!("{path}: rule {text:?} does not parse: {e}")),
        }
    }
    if let Some(props) = node.get("properties").and_then(Value::as_object) {
        for (k, child) in props {
            walk_schema(child, &format!("{path}.{k}"), problems);
        }
    }
    if let Some(items) = node.get("items") {
        walk_schema(items, &format!("{path}[]"), problems);
    }
    if let Some(extra) = node.get("additionalProperties").filter(|v| v.is_object()) {
        walk_schema(extra, &format!("{path}[*]"), problems);
    }
}

/// The schema of a value whose type is known, or `None` where the checker cannot tell (a
/// literal, a function's result, an accumulator).
type Scope<'s> = Vec<(String, Option<&'s Value>)>;

/// Walks `expr`, recording undeclared selections in `found`; returns the schema of its value.
fn check<'s>(expr: &IdedExpr, scope: &mut Scope<'s>, found: &mut Vec<String>) -> Option<&'s Value> {
    match &expr.expr {
        Expr::Ident(name) => scope
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .and_then(|(_, s)| *s),
        Expr::Select(select) => {
            let operand = check(&select.operand, scope, found)?;
            select_field(operand, &select.field, found)
        }
        Expr::Call(call) => {
            let target = call.target.as_deref().and_then(|t| check(t, scope, found));
            let args: Vec<_> = call.args.iter().map(|a| check(a, scope, found)).collect();
            match (call.func_name.as_str(), args.first()) {
                ("_[_]", Some(Some(container))) => element(container),
                _ => {
                    let _ = target;
                    None
                }
            }
        }
        Expr::Comprehension(c) => {
            let range = check(&c.iter_range, scope, found);
            let _ = check(&c.accu_init, scope, found);
            // Over a list the variable is an element; over a map or object, a key (a string).
            let var = range.and_then(|r| r.get("items"));
            scope.push((c.iter_var.clone(), var));
            if let Some(v2) = &c.iter_var2 {
                scope.push((v2.clone(), range.and_then(element)));
            }
            scope.push((c.accu_var.clone(), None));
            let _ = check(&c.loop_cond, scope, found);
            let _ = check(&c.loop_step, scope, found);
            let _ = check(&c.result, scope, found);
            scope.truncate(scope.len() - 2 - usize::from(c.iter_var2.is_some()));
            None
        }
        Expr::List(list) => {
            for e in &list.elements {
                let _ = check(e, scope, found);
            }
            None
        }
        Expr::Map(map) => {
            for entry in &map.entries {
                if let EntryExpr::MapEntry(e) = &entry.expr {
                    let _ = check(&e.key, scope, found);
                    let _ = check(&e.value, scope, found);
                }
            }
            None
        }
        Expr::Struct(s) => {
            for entry in &s.entries {
                if let EntryExpr::StructField(f) = &entry.expr {
                    let _ = check(&f.value, scope, found);
                }
            }
            None
        }
        Expr::Literal(_) | Expr::Unspecified => None,
    }
}

/// The schema of `node.field`, recording `field` when `node` is an object that does not
/// declare it. Maps (`additionalProperties`) take any key; an object with unknown fields
/// preserved, or without declared properties (as `metadata` is here), is not checked.
fn select_field<'s>(node: &'s Value, field: &str, found: &mut Vec<String>) -> Option<&'s Value> {
    if let Some(extra) = node.get("additionalProperties").filter(|v| !v.is_boolean()) {
        return Some(extra);
    }
    if node.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true)) {
        return None;
    }
    let props = node.get("properties").and_then(Value::as_object)?;
    match props.iter().find(|(k, _)| escape(k) == field) {
        Some((_, child)) => Some(child),
        None => {
            found.push(field.to_owned());
            None
        }
    }
}

/// The schema of an element: a list's items, a map's values.
fn element(node: &Value) -> Option<&Value> {
    node.get("items")
        .or_else(|| node.get("additionalProperties").filter(|v| v.is_object()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn subject() -> Value {
        json!({
            "type": "object",
            "properties": {
                "kind": {"type": "string"},
                "name": {"type": "string"},
                "namespace": {"type": "string"},
                "x-y": {"type": "string"},
                "roles": {"type": "array", "items": {"type": "object", "properties": {"role": {"type": "string"}}}},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
            },
        })
    }

    fn with_rule(rule: &str) -> Value {
        let mut s = subject();
        s["x-kubernetes-validations"] = json!([{"rule": rule}]);
        s
    }

    #[test]
    fn escaping_follows_the_api_server() {
        assert_eq!(escape("namespace"), "__namespace__");
        assert_eq!(escape("in"), "__in__");
        assert_eq!(escape("a-b_c.d/e"), "a__dash__b__c__dot__d__slash__e");
        assert_eq!(escape("default"), "default");
        assert_eq!(escape("organizationRef"), "organizationRef");
    }

    #[test]
    fn a_reserved_word_must_be_escaped() {
        let found = undeclared_fields(&with_rule("!has(self.namespace)"));
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(
            found[0].ends_with("undefined field 'namespace'"),
            "{found:?}"
        );
        assert!(undeclared_fields(&with_rule("!has(self.__namespace__)")).is_empty());
        assert!(undeclared_fields(&with_rule("self.x__dash__y == 'a'")).is_empty());
        assert_eq!(undeclared_fields(&with_rule("self.x-y == 'a'")).len(), 1);
    }

    #[test]
    fn misspelt_fields_are_found_through_lists_and_macros() {
        assert!(undeclared_fields(&with_rule("self.roles.all(r, r.role != 'x')")).is_empty());
        let found = undeclared_fields(&with_rule("self.roles.exists(r, r.rol == 'x')"));
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].ends_with("'rol'"));
        assert_eq!(
            undeclared_fields(&with_rule("self.roles[0].nope == 'x'")).len(),
            1
        );
        assert!(undeclared_fields(&with_rule("oldSelf.kind == self.kind")).is_empty());
    }

    #[test]
    fn map_keys_are_data_not_fields() {
        assert!(undeclared_fields(&with_rule("self.labels.anything == 'x'")).is_empty());
        assert!(
            undeclared_fields(&with_rule("self.labels.all(k, size(self.labels[k]) < 9)"))
                .is_empty()
        );
    }

    #[test]
    fn at_the_root_metadata_offers_name_and_generate_name_only() {
        let schema = json!({
            "type": "object",
            "properties": {"metadata": {"type": "object"}, "spec": {"type": "object"}},
            "x-kubernetes-validations": [{"rule": "self.metadata.name.size() < 9 && self.kind == 'A'"}],
        });
        assert!(undeclared_fields(&schema).is_empty());
        let mut labels = schema.clone();
        labels["x-kubernetes-validations"] = json!([{"rule": "has(self.metadata.labels)"}]);
        assert_eq!(undeclared_fields(&labels).len(), 1);
    }

    #[test]
    fn nested_rules_are_checked_at_their_own_node() {
        let schema = json!({
            "type": "object",
            "properties": {"spec": with_rule("has(self.namespaces)")},
        });
        let found = undeclared_fields(&schema);
        assert_eq!(found.len(), 1);
        assert!(found[0].starts_with(".spec: rule"), "{found:?}");
    }
}
