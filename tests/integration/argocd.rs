//! The Argo CD health script (`docs/argocd-health.lua`), run by a real Lua 5.4 interpreter
//! against sample statuses and against statuses the controller computes.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::Resource;
use mlua::{Lua, LuaSerdeExt, SerializeOptions, Table};
use serde_json::{Value, json};
use suborg::controller::status;
use suborg::controller::sync::{Failure, SyncResult};
use suborg::store::{OrgEntry, StoreIndex};

const SCRIPT: &str = include_str!("../../docs/argocd-health.lua");

/// What Argo CD would show for `obj`: (status, message).
fn health(obj: &Value) -> (String, String) {
    let lua = Lua::new();
    let options = SerializeOptions::new()
        .serialize_none_to_null(false)
        .serialize_unit_to_null(false);
    let value = lua.to_value_with(obj, options).unwrap();
    lua.globals().set("obj", value).unwrap();
    let hs: Table = lua.load(SCRIPT).eval().expect("the script runs");
    (hs.get("status").unwrap(), hs.get("message").unwrap())
}

fn with_ready(generation: i64, observed: i64, status: &str, reason: &str) -> Value {
    json!({
        "metadata": {"name": "eng", "generation": generation},
        "status": {
            "observedGeneration": observed,
            "conditions": [
                {"type": "Other", "status": "False", "reason": "X", "message": "ignored"},
                {"type": "Ready", "status": status, "reason": reason, "message": "details here"}
            ]
        }
    })
}

#[test]
fn conditions_map_to_argo_cd_health() {
    let cases = [
        (
            json!({"metadata": {"name": "x", "generation": 1}}),
            "Progressing",
        ),
        (
            json!({"metadata": {"name": "x", "generation": 1}, "status": {}}),
            "Progressing",
        ),
        (
            json!({"metadata": {"name": "x", "generation": 1}, "status": {"conditions": []}}),
            "Progressing",
        ),
        (with_ready(2, 1, "True", "Synced"), "Progressing"),
        (with_ready(2, 2, "True", "Synced"), "Healthy"),
        (with_ready(1, 1, "False", "ParentNotFound"), "Degraded"),
        (with_ready(1, 1, "False", "SubjectNotInRoot"), "Degraded"),
        (with_ready(1, 1, "False", "StoreUnavailable"), "Degraded"),
        (
            with_ready(1, 1, "False", "DependencyNotReady"),
            "Progressing",
        ),
        (
            with_ready(1, 1, "False", "HasSubOrganizations"),
            "Progressing",
        ),
        (with_ready(1, 1, "Unknown", "Pending"), "Progressing"),
        // Outside the controller's selector: nothing will sync it until someone acts.
        (with_ready(1, 1, "Unknown", "NotManaged"), "Degraded"),
    ];
    for (obj, expected) in cases {
        let (got, message) = health(&obj);
        assert_eq!(got, expected, "{obj}: {message}");
    }
    let (_, message) = health(&with_ready(1, 1, "False", "ParentNotFound"));
    assert_eq!(message, "ParentNotFound: details here");
}

#[test]
fn statuses_the_controller_writes_read_as_intended() {
    let mut org = super::fixtures::org("acme");
    org.meta_mut().uid = Some("uid-acme".into());
    org.meta_mut().generation = Some(3);
    org.meta_mut().creation_timestamp = Some(Time("2026-01-01T00:00:00Z".parse().unwrap()));
    let now = k8s_openapi::jiff::Timestamp::now();
    let mut index = StoreIndex::default();
    index.organizations.insert(
        "uid-acme".into(),
        OrgEntry {
            id: "id-1".into(),
            slug: "acme".into(),
            root_id: "id-1".into(),
            members: 4,
            sub_organizations: 1,
        },
    );
    let synced = SyncResult {
        index,
        ..SyncResult::default()
    };
    org.status = Some(status::organization(&org, &synced, now));
    assert_eq!(health(&serde_json::to_value(&org).unwrap()).0, "Healthy");
    let down = SyncResult {
        failure: Some(Failure {
            reason: "StoreUnavailable",
            message: "cannot open store postgres://suborg:***@db/suborg".into(),
        }),
        ..SyncResult::default()
    };
    org.status = Some(status::organization(&org, &down, now));
    let (h, message) = health(&serde_json::to_value(&org).unwrap());
    assert_eq!(h, "Degraded");
    assert!(message.starts_with("StoreUnavailable: "), "{message}");
}

#[test]
fn the_documented_configuration_carries_the_tested_script_for_each_kind() {
    let doc = std::fs::read_to_string("docs/argocd.md").unwrap();
    let indented: String = SCRIPT
        .lines()
        .map(|l| {
            if l.is_empty() {
                "\n".to_owned()
            } else {
                format!("    {l}\n")
            }
        })
        .collect();
    for kind in [
        "Organization",
        "SubOrganization",
        "OrgMembership",
        "Group",
        "MachineIdentity",
        "AppConnection",
        "Gateway",
        "Relay",
        "Project",
        "ProjectMembership",
    ] {
        let key = format!("  resource.customizations.health.suborg.io_{kind}: |\n");
        let at = doc
            .find(&key)
            .unwrap_or_else(|| panic!("no health entry for {kind}"));
        assert!(
            doc[at + key.len()..].starts_with(&indented),
            "the script for {kind} differs from docs/argocd-health.lua"
        );
    }
}
