//! `crds/` is generated from the code; these tests fail when it drifts.

use std::path::Path;

use suborg::api;

#[test]
fn crds_directory_matches_the_code() {
    generated_dir_matches("crds");
}

/// The chart installs the same CRDs, byte for byte.
#[test]
fn chart_crds_match_the_code() {
    generated_dir_matches("charts/suborg/crds");
}

fn generated_dir_matches(rel: &str) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(rel);
    let mut expected: Vec<String> = Vec::new();
    for crd in api::crds() {
        let name = api::crd_file_name(&crd);
        let on_disk = std::fs::read_to_string(dir.join(&name)).unwrap_or_else(|e| {
            panic!("crds/{name} is missing ({e}): run `cargo run -- crd --out-dir crds`")
        });
        assert!(
            on_disk == api::crd_yaml(&crd),
            "{rel}/{name} differs from the code: run `cargo run -- crd --out-dir {rel}` and commit"
        );
        expected.push(name);
    }
    let mut present: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    present.sort();
    expected.sort();
    assert_eq!(
        present, expected,
        "crds/ holds files the code does not generate"
    );
}

#[test]
fn crds_carry_names_categories_and_printer_columns() {
    for crd in api::crds() {
        let names = &crd.spec.names;
        assert_eq!(crd.spec.group, "suborg.io");
        assert_eq!(
            names.categories.as_deref(),
            Some(&["suborg-all".to_string()][..])
        );
        assert!(
            names.short_names.as_ref().is_some_and(|s| !s.is_empty()),
            "{} has no short name",
            names.kind
        );
        let version = &crd.spec.versions[0];
        assert_eq!(version.name, "v1alpha1");
        assert!(
            version
                .subresources
                .as_ref()
                .and_then(|s| s.status.as_ref())
                .is_some()
        );
        let columns: Vec<&str> = version
            .additional_printer_columns
            .iter()
            .flatten()
            .map(|c| c.name.as_str())
            .collect();
        assert!(
            columns.contains(&"Ready") && columns.contains(&"Age"),
            "{}: {columns:?}",
            names.kind
        );
        // `kubectl get -o wide` says why an object is not Ready.
        let reason = version
            .additional_printer_columns
            .iter()
            .flatten()
            .find(|c| c.name == "Reason")
            .unwrap_or_else(|| panic!("{} has no Reason column", names.kind));
        assert_eq!(reason.priority, Some(1));
        assert!(
            reason.json_path.ends_with("].reason"),
            "{}",
            reason.json_path
        );
    }
    // The kinds the manifest reader and the metrics know are the kinds served.
    let mut served: Vec<String> = api::crds().into_iter().map(|c| c.spec.names.kind).collect();
    let mut known: Vec<String> = api::KINDS.iter().map(|k| k.to_string()).collect();
    served.sort();
    known.sort();
    assert_eq!(served, known);
    let scopes: Vec<(String, String)> = api::crds()
        .into_iter()
        .map(|c| (c.spec.names.kind, c.spec.scope))
        .collect();
    assert_eq!(
        scopes,
        [
            ("Organization".to_string(), "Cluster".to_string()),
            ("SubOrganization".to_string(), "Cluster".to_string()),
            ("OrgMembership".to_string(), "Namespaced".to_string()),
            ("Group".to_string(), "Namespaced".to_string()),
            ("MachineIdentity".to_string(), "Namespaced".to_string()),
            ("AppConnection".to_string(), "Namespaced".to_string()),
            ("Relay".to_string(), "Namespaced".to_string()),
            ("Gateway".to_string(), "Namespaced".to_string()),
            ("Project".to_string(), "Namespaced".to_string()),
            ("ProjectMembership".to_string(), "Namespaced".to_string()),
        ]
    );
}

/// `kubectl explain` shows descriptions: every property of every schema has one.
#[test]
fn every_field_is_documented() {
    fn walk(path: &str, v: &serde_json::Value, missing: &mut Vec<String>) {
        if let Some(props) = v.get("properties").and_then(|p| p.as_object()) {
            for (k, child) in props {
                let p = format!("{path}.{k}");
                if child.get("description").is_none() {
                    missing.push(p.clone());
                }
                walk(&p, child, missing);
            }
        }
        if let Some(items) = v.get("items") {
            walk(&format!("{path}[]"), items, missing);
        }
    }
    for crd in api::crds() {
        let schema = serde_json::to_value(&crd.spec.versions[0].schema).unwrap();
        let mut missing = Vec::new();
        walk(
            &crd.spec.names.kind,
            &schema["openAPIV3Schema"],
            &mut missing,
        );
        assert!(
            missing.is_empty(),
            "fields without a description: {missing:?}"
        );
    }
}

/// Calls `f` with every object node of every CRD, as JSON.
fn every_schema_node(mut f: impl FnMut(&serde_json::Map<String, serde_json::Value>)) {
    fn walk(v: &serde_json::Value, f: &mut dyn FnMut(&serde_json::Map<String, serde_json::Value>)) {
        match v {
            serde_json::Value::Object(m) => {
                f(m);
                m.values().for_each(|c| walk(c, f));
            }
            serde_json::Value::Array(a) => a.iter().for_each(|c| walk(c, f)),
            _ => {}
        }
    }
    for crd in api::crds() {
        walk(&serde_json::to_value(&crd).unwrap(), &mut f);
    }
}

/// Every pattern of the CRDs has words for `suborg validate` to say instead of the regex.
#[test]
fn every_pattern_is_said_in_words() {
    let mut patterns = Vec::new();
    every_schema_node(|m| {
        if let Some(p) = m.get("pattern").and_then(|p| p.as_str()) {
            patterns.push(p.to_owned());
        }
    });
    assert!(patterns.len() >= 20, "{patterns:?}");
    let unsaid: Vec<_> = patterns
        .iter()
        .filter(|p| api::pattern_rule(p).is_none())
        .collect();
    assert!(unsaid.is_empty(), "patterns without words: {unsaid:?}");
}

/// Every CEL rule's message maps to a specific reason, so conditions and metrics stay precise.
#[test]
fn every_cel_message_has_a_reason() {
    let mut messages = Vec::new();
    every_schema_node(|m| {
        if let Some(rules) = m.get("x-kubernetes-validations").and_then(|r| r.as_array()) {
            messages.extend(
                rules
                    .iter()
                    .map(|r| r["message"].as_str().unwrap().to_owned()),
            );
        }
    });
    assert!(messages.len() >= 12, "{messages:?}");
    for m in messages {
        assert_ne!(
            suborg::manifest::cel_reason(&m),
            suborg::domain::Reason::RuleViolation,
            "no specific reason for {m:?}"
        );
    }
}

/// What the API server checks when a CRD is created, so `kubectl apply -f crds/` cannot fail:
/// a structural schema (a type on every node), list-map keys that are required, defaults that
/// satisfy their own schema, CEL rules that compile, use only `self`/`oldSelf`, select only
/// declared fields by their escaped names, and stay within the cost budget.
#[test]
fn crds_are_what_the_api_server_accepts() {
    use kube::core::cel::{CompiledSchema, ScopeContext, analyze_rule, compile_schema};
    use serde_json::Value;

    fn walk(path: &str, node: &Value, compiled: &CompiledSchema, problems: &mut Vec<String>) {
        let preserve = node.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true));
        if node.get("type").is_none() && !preserve && !path.is_empty() {
            problems.push(format!("{path}: no type (not a structural schema)"));
        }
        if let Some(keys) = node
            .get("x-kubernetes-list-map-keys")
            .and_then(Value::as_array)
        {
            let required = node["items"]["required"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            for k in keys {
                let has_default = node["items"]["properties"][k.as_str().unwrap()]
                    .get("default")
                    .is_some();
                if !required.contains(k) && !has_default {
                    problems.push(format!(
                        "{path}: list-map key {k} is neither required nor defaulted"
                    ));
                }
            }
        }
        if let Some(default) = node.get("default") {
            let mut errors = Vec::new();
            suborg::manifest::schema::compile(node).check(default, path, &mut errors);
            problems.extend(
                errors
                    .into_iter()
                    .map(|e| format!("{path}: default {default}: {}", e.message)),
            );
        }
        for e in compiled.compilation_errors() {
            problems.push(format!("{path}: a CEL rule does not compile: {e:?}"));
        }
        for rule in node
            .get("x-kubernetes-validations")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let text = rule["rule"].as_str().unwrap();
            for w in analyze_rule(text, compiled, ScopeContext::CrdValidation) {
                // The scope analysis does not know macro-bound variables (`exists(r, …)`).
                let bound = ["exists", "all", "exists_one", "map", "filter"]
                    .iter()
                    .any(|m| {
                        w.message
                            .split('\'')
                            .nth(1)
                            .is_some_and(|var| text.contains(&format!(".{m}({var},")))
                    });
                if !bound {
                    problems.push(format!("{path}: rule {text:?}: {w:?}"));
                }
            }
            if rule.get("message").is_none() {
                problems.push(format!("{path}: rule {text:?} has no message"));
            }
        }
        if let Some(props) = node.get("properties").and_then(Value::as_object) {
            for (k, child) in props {
                let c = compiled.properties.get(k).expect("compiled alongside");
                walk(&format!("{path}.{k}"), child, c, problems);
            }
        }
        if let (Some(items), Some(c)) = (node.get("items"), compiled.items.as_deref()) {
            walk(&format!("{path}[]"), items, c, problems);
        }
    }

    for crd in api::crds() {
        let schema = serde_json::to_value(
            crd.spec.versions[0]
                .schema
                .as_ref()
                .unwrap()
                .open_api_v3_schema
                .as_ref()
                .unwrap(),
        )
        .unwrap();
        let compiled = compile_schema(&schema);
        let mut problems = Vec::new();
        walk("", &schema, &compiled, &mut problems);
        // The server's type check: a reserved word or a name with `-`, `.`, `/` or `_` is a
        // field only under its escaped name (`self.__namespace__`).
        problems.extend(suborg::manifest::cel_fields::undeclared_fields(&schema));
        assert!(
            problems.is_empty(),
            "{}: {problems:#?}",
            crd.spec.names.kind
        );
    }
}

#[test]
fn display_names_have_no_space_at_either_end() {
    let re = regex::Regex::new(suborg::api::DISPLAY_NAME_PATTERN).unwrap();
    // Accents typed composed or decomposed (`e` + U+0301, as macOS keyboards give them).
    for ok in [
        "A",
        "Acme",
        "R and D",
        "Équipe-1_b",
        "a  b",
        "Cafe\u{301}",
        "E\u{301}quipe",
    ] {
        assert!(re.is_match(ok), "{ok:?} is a display name");
    }
    // A mark alone, or first, is not a letter.
    for bad in [
        " Leading",
        "Trailing ",
        "   ",
        " ",
        "",
        "R&D",
        "tab\there",
        "\u{301}",
        "\u{301}a",
    ] {
        assert!(!re.is_match(bad), "{bad:?} is no display name");
    }
}
