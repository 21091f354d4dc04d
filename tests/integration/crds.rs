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
            Some(&["suborg".to_string()][..])
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
    }
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

/// Every CEL rule's message maps to a specific reason, so conditions and metrics stay precise.
#[test]
fn every_cel_message_has_a_reason() {
    fn walk(v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(m) => {
                if let Some(rules) = m.get("x-kubernetes-validations").and_then(|r| r.as_array()) {
                    out.extend(
                        rules
                            .iter()
                            .map(|r| r["message"].as_str().unwrap().to_owned()),
                    );
                }
                m.values().for_each(|c| walk(c, out));
            }
            serde_json::Value::Array(a) => a.iter().for_each(|c| walk(c, out)),
            _ => {}
        }
    }
    let mut messages = Vec::new();
    for crd in api::crds() {
        walk(&serde_json::to_value(&crd).unwrap(), &mut messages);
    }
    assert!(messages.len() >= 12, "{messages:?}");
    for m in messages {
        assert_ne!(
            suborg::manifest::cel_reason(&m),
            suborg::domain::Reason::RuleViolation,
            "no specific reason for {m:?}"
        );
    }
}
