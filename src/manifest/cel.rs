//! The CRDs' CEL rules, evaluated offline with kube's CEL interpreter.
//!
//! The interpreter converts the value of every schema node it walks into CEL values, rules or
//! not, which makes whole-object validation cost grow with depth times size. Only a few nodes
//! carry rules, so the schema is cut into *rule sites* — one per node with rules, holding that
//! node's schema (formats and defaults intact, nested rules removed) — and each site is
//! evaluated on just its part of the object. The verdicts are the same; the conversions are not
//! repeated.

use kube::core::cel::{CompiledSchema, ValidationError, Validator, compile_schema};
use serde_json::Value;

/// A step from a node to a child.
#[derive(Debug, Clone)]
enum Step {
    Field(String),
    Items,
}

/// A schema node that carries CEL rules.
pub struct RuleSite {
    path: Vec<Step>,
    compiled: CompiledSchema,
}

/// Finds the rule sites of an `openAPIV3Schema`. Sites whose rules all compare with `oldSelf`
/// only apply to updates; `update` says whether to keep them.
pub fn rule_sites(schema: &Value, update: bool) -> Vec<RuleSite> {
    let mut out = Vec::new();
    collect(schema, &mut Vec::new(), update, &mut out);
    out
}

fn collect(node: &Value, path: &mut Vec<Step>, update: bool, out: &mut Vec<RuleSite>) {
    if let Some(rules) = node
        .get("x-kubernetes-validations")
        .and_then(Value::as_array)
    {
        let applies = update
            || rules
                .iter()
                .any(|r| !r["rule"].as_str().unwrap_or_default().contains("oldSelf"));
        if applies {
            let mut own = node.clone();
            if let Some(props) = own.get_mut("properties").and_then(Value::as_object_mut) {
                props.values_mut().for_each(strip_rules);
            }
            if let Some(items) = own.get_mut("items") {
                strip_rules(items);
            }
            out.push(RuleSite {
                path: path.clone(),
                compiled: compile_schema(&own),
            });
        }
    }
    if let Some(props) = node.get("properties").and_then(Value::as_object) {
        for (k, child) in props {
            path.push(Step::Field(k.clone()));
            collect(child, path, update, out);
            path.pop();
        }
    }
    if let Some(items) = node.get("items") {
        path.push(Step::Items);
        collect(items, path, update, out);
        path.pop();
    }
}

fn strip_rules(node: &mut Value) {
    if let Some(map) = node.as_object_mut() {
        map.remove("x-kubernetes-validations");
        map.values_mut().for_each(strip_rules);
    }
}

/// Evaluates every site on `object`; errors carry their full field path. A site whose place in
/// the object `skip` names (`spec.roles[0]`, `""` for the root) is not evaluated.
pub fn evaluate(
    validator: &Validator,
    sites: &[RuleSite],
    object: &Value,
    skip: &dyn Fn(&str) -> bool,
) -> Vec<ValidationError> {
    let mut errors = Vec::new();
    for site in sites {
        visit(
            &Visit {
                validator,
                site,
                skip,
            },
            &site.path,
            object,
            String::new(),
            &mut errors,
        );
    }
    errors
}

/// What stays the same while one site is walked down to its places in the object.
struct Visit<'a> {
    validator: &'a Validator,
    site: &'a RuleSite,
    skip: &'a dyn Fn(&str) -> bool,
}

fn visit(
    v: &Visit<'_>,
    rest: &[Step],
    value: &Value,
    path: String,
    errors: &mut Vec<ValidationError>,
) {
    match rest.split_first() {
        None if (v.skip)(&path) => {}
        None => {
            if let Err(errs) = v.validator.validate_compiled(&v.site.compiled, value, None) {
                for mut e in errs.into_iter() {
                    e.field_path = join(&path, &e.field_path);
                    errors.push(e);
                }
            }
        }
        Some((Step::Field(k), tail)) => {
            if let Some(child) = value.get(k).filter(|v| !v.is_null()) {
                visit(v, tail, child, join(&path, k), errors);
            }
        }
        Some((Step::Items, tail)) => {
            for (i, item) in value.as_array().into_iter().flatten().enumerate() {
                visit(v, tail, item, format!("{path}[{i}]"), errors);
            }
        }
    }
}

fn join(base: &str, rel: &str) -> String {
    let rel = rel.trim_start_matches('.');
    match (base.is_empty(), rel.is_empty()) {
        (_, true) => base.to_owned(),
        (true, false) => rel.to_owned(),
        (false, false) if rel.starts_with('[') => format!("{base}{rel}"),
        (false, false) => format!("{base}.{rel}"),
    }
}
