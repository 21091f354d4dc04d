//! The `suborg` binary on bad input: a clear error and a non-zero exit, never a panic.

use std::io::Write;
use std::process::{Command, Output, Stdio};

fn suborg(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_suborg"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(bytes) = stdin {
        input.write_all(bytes).unwrap();
    }
    drop(input);
    child.wait_with_output().unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Validates `bytes` from stdin; asserts exit 1, no panic, and each needle in the output.
fn rejected(bytes: &[u8], needles: &[&str]) {
    let out = suborg(&["validate", "-f", "-"], Some(bytes));
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(!t.contains("panicked"), "{t}");
    for n in needles {
        assert!(t.contains(n), "expected {n:?} in:\n{t}");
    }
}

const ORG: &str =
    "apiVersion: suborg.io/v1alpha1\nkind: Organization\nmetadata:\n  name: acme\nspec: {}\n";

#[test]
fn valid_input_exits_zero() {
    let out = suborg(&["validate", "-f", "-"], Some(ORG.as_bytes()));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("1 object in 1 file: 0 errors, 0 warnings")
    );
}

#[test]
fn problems_print_as_file_kind_name_field_message() {
    let bad = ORG.replace("spec: {}", "spec:\n  slug: Acme");
    let out = suborg(&["validate", "-f", "-"], Some(bad.as_bytes()));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        stdout.trim_end(),
        r#"-: Organization/acme: spec.slug: "Acme" is not a slug: lowercase letters, digits and hyphens [SchemaViolation]"#
    );
}

#[test]
fn json_output() {
    let bad = ORG.replace("spec: {}", "spec:\n  slug: Acme");
    let out = suborg(&["validate", "-o", "json", "-f", "-"], Some(bad.as_bytes()));
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["errors"], 1);
    assert_eq!(v["objects"], 1);
    let p = &v["problems"][0];
    assert_eq!(p["file"], "-");
    assert_eq!(p["document"], 1);
    assert_eq!(p["line"], 1);
    assert_eq!(p["reason"], "SchemaViolation");
    assert_eq!(p["severity"], "error");
    assert_eq!(p["field"], "spec.slug");
    assert_eq!(p["object"]["kind"], "Organization");
    assert_eq!(p["object"]["name"], "acme");
}

#[test]
fn malformed_yaml() {
    rejected(
        b"apiVersion: suborg.io/v1alpha1\nkind: [Organization\n",
        &["is not valid YAML at line", "[InvalidYaml]"],
    );
    rejected(b"a: 1\na: 2\n", &["[InvalidYaml]", "duplicate"]);
    rejected(
        b"- just\n- a list\n",
        &["not a Kubernetes object", "[MissingTypeMeta]"],
    );
    rejected(b"\"a string\"\n", &["[MissingTypeMeta]"]);
    rejected(
        b"metadata: {name: x}\n",
        &["no apiVersion or kind", "[MissingTypeMeta]"],
    );
    // A billion laughs: aliases that expand exponentially.
    let mut bomb = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..12 {
        bomb.push_str(&format!(
            "{}: &{} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n",
            (b'a' + i as u8) as char,
            (b'a' + i as u8) as char,
            p = (b'a' + i as u8 - 1) as char
        ));
    }
    rejected(bomb.as_bytes(), &["[InvalidYaml]"]);
    // Deep nesting.
    rejected(&[b'['; 100_000], &["[InvalidYaml]"]);
}

#[test]
fn wrong_api_version_and_kind() {
    rejected(
        ORG.replace("v1alpha1", "v1beta1").as_bytes(),
        &["Organization/acme: apiVersion: \"suborg.io/v1beta1\" is not served"],
    );
    rejected(
        ORG.replace("kind: Organization", "kind: Organisation")
            .as_bytes(),
        &["suborg.io has no kind \"Organisation\""],
    );
}

#[test]
fn unknown_fields() {
    rejected(
        ORG.replace("spec: {}", "spec:\n  dispalyName: Acme")
            .as_bytes(),
        &["spec.dispalyName: unknown field", "displayName"],
    );
    rejected(
        format!("{ORG}specs: {{}}\n").as_bytes(),
        &["specs: unknown field"],
    );
}

/// A structural error does not hide the object's other mistakes, and no rule runs on a field of
/// the wrong shape (which would report the rule as broken, or as not evaluable).
#[test]
fn every_independent_mistake_of_an_object_is_reported() {
    let bad = ORG.replace(
        "spec: {}",
        r#"spec:
  displayName: " Acme"
  memberNamespaces:
    selector:
      matchLabels: {"bad key": x, t: "bad value!"}
      matchExpressions:
      - {key: a, operator: 5, values: [x]}
      - {key: b, operator: In}
      - {key: "-c", operator: Exists, values: [z]}
"#,
    );
    let out = suborg(&["validate", "-f", "-"], Some(bad.as_bytes()));
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    for needle in [
        "spec.displayName: \" Acme\" is not a display name: letters, digits, spaces",
        "matchExpressions[0].operator: must be a string, not the number 5 (quote the text to keep it as written) [SchemaViolation]",
        "matchExpressions[1]: operators In and NotIn need at least one value [InvalidSelector]",
        "matchExpressions[2]: operators Exists and DoesNotExist take no values [InvalidSelector]",
        "matchExpressions[2].key: must be a label key",
        "matchLabels: every key must be a label key",
        "matchLabels: every value must be a label value",
        "7 errors",
    ] {
        assert!(t.contains(needle), "expected {needle:?} in:\n{t}");
    }
    assert!(!t.contains("matchExpressions[0]:"), "{t}");
    assert!(!t.contains("could not be evaluated"), "{t}");
}

/// A Namespace the API server would refuse (a label key or a name it does not take) is
/// refused, and its labels delegate nothing: the membership in it cannot be placed.
#[test]
fn a_namespace_the_api_server_refuses_decides_no_delegation() {
    let set = format!(
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: platform\n  labels: {{suborg.io/organization: acme, \"bad key!\": x}}\n---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: Team_B\n---\n{ORG}---\napiVersion: suborg.io/v1alpha1\nkind: OrgMembership\nmetadata: {{name: bob, namespace: platform}}\nspec:\n  organizationRef: {{kind: Organization, name: acme}}\n  subject: {{kind: User, email: bob@x.io}}\n  roles: [{{role: member}}]\n"
    );
    rejected(
        set.as_bytes(),
        &[
            "Namespace/platform: metadata.labels: key \"bad key!\" must be a label key",
            "Namespace/Team_B: metadata.name: \"Team_B\" is not a valid namespace name",
            "OrgMembership/platform/bob: metadata.namespace: warning: the labels of namespace \"platform\" are unknown here (no Namespace manifest in the set, or a refused one)",
        ],
    );
}

/// Times of temporary roles in the one shape both CEL engines and the API server read alike;
/// the others the API server reads one way or another depending on which rule looks, so
/// they are refused outright, here as there.
#[test]
fn role_times_are_read_in_one_shape() {
    let with_end = |end: &str| {
        format!(
            "{ORG}---\napiVersion: suborg.io/v1alpha1\nkind: OrgMembership\nmetadata: {{name: m, namespace: platform}}\nspec:\n  organizationRef: {{kind: Organization, name: acme}}\n  subject: {{kind: User, email: a@x.io}}\n  roles: [{{role: admin, temporary: {{start: \"2026-01-01T00:00:00Z\", end: \"{end}\"}}}}]\n"
        )
    };
    for end in [
        "2027-01-01T00:00:00Z",
        "2027-01-01T00:00:00.123456789+23:59",
        "2027-01-01T00:00:00-00:00",
        "2028-02-29T12:00:00+05:30",
    ] {
        let out = suborg(&["validate", "-f", "-"], Some(with_end(end).as_bytes()));
        let t = text(&out);
        assert!(!t.contains("temporary.end"), "{end}: {t}");
    }
    for end in [
        "2027-01-01t00:00:00z",
        "2027-01-01 00:00:00Z",
        "2027-01-01T00:00:00,5Z",
        "2027-01-01T00:00:00.1234567890Z",
        "2027-01-01T00:00:00+25:00",
        "2027-01-01T00:00:00+01:60",
        "2027-01-01T00:00Z",
        "2027-01-01T00:00:00+0100",
    ] {
        rejected(
            with_end(end).as_bytes(),
            &[&format!(
                "spec.roles[0].temporary.end: {end:?} is not an RFC 3339 time such as 2026-01-01T09:00:00Z: 'T' and 'Z' in upper case"
            )],
        );
    }
}

/// A field set to null (`~`, or a Helm value that rendered empty) is absent, as the API
/// server reads it: defaults apply, optional fields are unset, and a rule that needs the field
/// refuses the object (a User subject whose email is null).
#[test]
fn null_fields_are_absent() {
    let set = r#"apiVersion: v1
kind: Namespace
metadata: {name: team, labels: {suborg.io/organization: acme, empty: ~}}
---
apiVersion: suborg.io/v1alpha1
kind: Organization
metadata: {name: acme, labels: {a: ~}, annotations: {b: ~}}
spec:
  deletionPolicy: ~
  memberNamespaces: {from: null}
---
apiVersion: suborg.io/v1alpha1
kind: OrgMembership
metadata: {name: bob, namespace: team}
spec:
  organizationRef: {kind: null, name: acme}
  subject: {kind: User, email: bob@x.io, name: null, namespace: null}
  roles: [{role: member, temporary: {start: "2031-01-01T00:00:00Z", duration: 1h, end: null}}]
---
apiVersion: suborg.io/v1alpha1
kind: AppConnection
metadata: {name: c, namespace: team}
spec:
  organizationRef: {kind: Organization, name: acme}
  app: aws
  config: {region: ~}
"#;
    let out = suborg(&["validate", "-f", "-"], Some(set.as_bytes()));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let nobody = format!(
        "{set}---\napiVersion: suborg.io/v1alpha1\nkind: OrgMembership\nmetadata: {{name: nobody, namespace: team}}\nspec:\n  organizationRef: {{kind: Organization, name: acme}}\n  subject: {{kind: User, email: null}}\n  roles: [{{role: member}}]\n"
    );
    rejected(
        nobody.as_bytes(),
        &["OrgMembership/team/nobody: spec.subject: a subject of kind User is named by email"],
    );
}

/// `generateName` is held to the API server's rule for a name's prefix, and an empty
/// namespace is none given, as kubectl reads it.
#[test]
fn generate_name_and_an_empty_namespace() {
    let with = |generate: &str| {
        format!(
            "apiVersion: suborg.io/v1alpha1\nkind: Organization\nmetadata: {{name: acme, generateName: \"{generate}\"}}\nspec: {{}}\n"
        )
    };
    let out = suborg(&["validate", "-f", "-"], Some(with("acme-").as_bytes()));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    rejected(
        with("Acme-").as_bytes(),
        &["metadata.generateName: \"Acme-\" is not the start of a valid object name"],
    );
    let m = "apiVersion: suborg.io/v1alpha1\nkind: OrgMembership\nmetadata: {name: m, namespace: \"\"}\nspec:\n  organizationRef: {kind: Organization, name: acme}\n  subject: {kind: User, email: a@x.io}\n  roles: [{role: member}]\n";
    let out = suborg(
        &["validate", "-f", "-"],
        Some(format!("{ORG}---\n{m}").as_bytes()),
    );
    let t = text(&out);
    assert!(t.contains("OrgMembership/default/m"), "{t}");
    assert!(!t.contains("is not a valid namespace name"), "{t}");
}

#[test]
fn duplicate_names() {
    rejected(
        format!("{ORG}---\n{ORG}").as_bytes(),
        &["Organization/acme is declared twice: first in - (document 1)"],
    );
}

#[test]
fn empty_input() {
    rejected(b"", &["holds no Kubernetes objects", "[EmptyManifest]"]);
    rejected(b"# only a comment\n---\n---\n", &["[EmptyManifest]"]);
}

#[test]
fn non_utf8() {
    rejected(
        b"apiVersion: v1\nkind: \xff\xfe\n",
        &["is not UTF-8 text", "(line 2)", "[InvalidEncoding]"],
    );
}

#[test]
fn files_larger_than_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.yaml");
    let mut big = ORG.to_string();
    big.push_str(&format!("# {}\n", "x".repeat(10 << 20)));
    std::fs::write(&path, &big).unwrap();
    let out = suborg(&["validate", "-f", path.to_str().unwrap()], None);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(
        t.contains("is larger than the 8 MiB limit: split it, or raise --max-file-size"),
        "{t}"
    );
    let out = suborg(
        &[
            "validate",
            "--max-file-size",
            "16Mi",
            "-f",
            path.to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
}

#[test]
fn missing_files_and_directories() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.yaml");
    rejected_path(&missing, &["cannot be read", "[UnreadableFile]"]);
    rejected_path(
        dir.path(),
        &["no *.yaml, *.yml or *.json files", "[EmptyManifest]"],
    );
}

fn rejected_path(path: &std::path::Path, needles: &[&str]) {
    let out = suborg(&["validate", "-f", path.to_str().unwrap()], None);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    for n in needles {
        assert!(t.contains(n), "expected {n:?} in:\n{t}");
    }
}

#[test]
fn directories_are_read_recursively_and_other_files_skipped() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("a/b")).unwrap();
    std::fs::write(dir.path().join("a/b/org.yaml"), ORG).unwrap();
    std::fs::write(dir.path().join("a/README.md"), "not yaml: [").unwrap();
    std::fs::create_dir_all(dir.path().join(".git")).unwrap();
    std::fs::write(dir.path().join(".git/x.yaml"), "bad: [").unwrap();
    std::fs::write(
        dir.path().join("sub.yml"),
        "apiVersion: suborg.io/v1alpha1\nkind: SubOrganization\nmetadata: {name: eng}\nspec:\n  organizationRef: {name: acme}\n  admins: [a@x.io]\n",
    )
    .unwrap();
    let out = suborg(&["validate", "-f", dir.path().to_str().unwrap()], None);
    let t = text(&out);
    // The one error proves both files were read: the admin is not a member of the root.
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(t.contains("SubOrganization/eng: spec.admins[0]"), "{t}");
    assert!(t.contains("2 objects in 2 files: 1 error"), "{t}");
}

#[test]
fn warnings_fail_only_with_strict() {
    let m = "apiVersion: suborg.io/v1alpha1\nkind: OrgMembership\nmetadata: {name: a, namespace: elsewhere}\nspec:\n  organizationRef: {name: acme}\n  subject: {kind: User, email: a@x.io}\n  roles: [{role: member}]\n";
    let set = format!("{ORG}---\n{m}");
    let out = suborg(&["validate", "-f", "-"], Some(set.as_bytes()));
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert!(
        t.contains("warning: the labels of namespace \"elsewhere\" are unknown"),
        "{t}"
    );
    let out = suborg(&["validate", "--strict", "-f", "-"], Some(set.as_bytes()));
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn crd_prints_every_crd() {
    let out = suborg(&["crd"], None);
    assert_eq!(out.status.code(), Some(0));
    let stdout = String::from_utf8(out.stdout).unwrap();
    let docs: Vec<serde_yaml::Value> = serde_yaml::Deserializer::from_str(&stdout)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .collect();
    let names: Vec<&str> = docs
        .iter()
        .map(|d| d["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "organizations.suborg.io",
            "suborganizations.suborg.io",
            "orgmemberships.suborg.io",
            "groups.suborg.io",
            "machineidentities.suborg.io",
            "appconnections.suborg.io",
            "relays.suborg.io",
            "gateways.suborg.io",
            "projects.suborg.io",
            "projectmemberships.suborg.io"
        ]
    );
}

#[test]
fn usage_errors_exit_two() {
    let out = suborg(&["validate"], None);
    assert_eq!(out.status.code(), Some(2));
    let out = suborg(&["validate", "-o", "xml", "-f", "-"], None);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn apply_then_get_on_a_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = format!("sqlite://{}", dir.path().join("s.db").display());
    let examples = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/acme");
    let out = suborg(
        &["apply", "-f", examples, "--store", &store, "--dry-run"],
        None,
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        text(&out).contains("Plan (dry run, nothing written): 38 to create"),
        "{}",
        text(&out)
    );
    let out = suborg(&["apply", "-f", examples, "--store", &store], None);
    assert!(
        text(&out).contains("Applied: 38 to create, 0 to update, 0 to delete, 0 to orphan."),
        "{}",
        text(&out)
    );
    let out = suborg(&["apply", "-f", examples, "--store", &store], None);
    assert_eq!(
        text(&out).trim(),
        "No changes: the store matches the manifests."
    );
    // Part of the set, without --prune: nothing to change in it, and the rest stays, as the
    // summary says.
    let part = |f: &str| format!("{examples}/{f}");
    let (namespaces, organization) = (part("00-namespaces.yaml"), part("10-organization.yaml"));
    let out = suborg(
        &[
            "apply",
            "-f",
            &namespaces,
            "-f",
            &organization,
            "--store",
            &store,
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let said = text(&out);
    assert!(
        said.starts_with("No changes to the objects in the manifests.\n"),
        "{said}"
    );
    assert!(
        said.contains(" managed rows in the store are not in these manifests and were left as they are (--prune removes them)."),
        "{said}"
    );
    let out = suborg(&["get", "tree", "--store", &store], None);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "acme (Acme Corporation): 8 members\n├── engineering (Engineering): 3 members\n├── marketing (Marketing): 2 members\n└── sales-emea (Sales): 2 members\n"
    );
    // A root's members are its own; what was added in a sub-organization stays there.
    let out = suborg(
        &[
            "get",
            "members",
            "--org",
            "acme/engineering",
            "--store",
            &store,
            "-o",
            "json",
        ],
        None,
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let emails: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["email"].as_str().unwrap())
        .collect();
    assert_eq!(
        emails,
        [
            "bob@acme.example",
            "carol@acme.example",
            "frank@acme.example"
        ]
    );
    let out = suborg(
        &[
            "get", "members", "--org", "acme", "--store", &store, "-o", "json",
        ],
        None,
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    // Seven OrgMemberships, and heidi, provisioned by a project invite.
    assert_eq!(v.as_array().unwrap().len(), 8);
    assert!(
        v.as_array()
            .unwrap()
            .iter()
            .all(|m| m["roles"][0]["role"] != "release-manager")
    );
    let out = suborg(
        &["get", "members", "--org", "globex", "--store", &store],
        None,
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).contains("no organization \"globex\" in the store"));
}

#[test]
fn projects_and_access_follow_visibility() {
    let dir = tempfile::tempdir().unwrap();
    let store = format!("sqlite://{}", dir.path().join("s.db").display());
    let examples = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/acme");
    let out = suborg(&["apply", "-f", examples, "--store", &store], None);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let slugs = |org: &str| -> Vec<String> {
        let out = suborg(
            &[
                "get", "projects", "--org", org, "--store", &store, "-o", "json",
            ],
            None,
        );
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v.as_array()
            .unwrap()
            .iter()
            .map(|p| p["slug"].as_str().unwrap().to_owned())
            .collect()
    };
    // A root sees only root projects; a sub-organization only its own.
    assert_eq!(slugs("acme"), ["billing"]);
    assert_eq!(slugs("acme/engineering"), ["api"]);
    assert!(slugs("acme/sales-emea").is_empty());

    let access = |email: &str| -> Vec<(String, String, String)> {
        let out = suborg(
            &[
                "get", "access", "--user", email, "--store", &store, "-o", "json",
            ],
            None,
        );
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v.as_array()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e["organization"].as_str().unwrap().to_owned(),
                    e["project"].as_str().unwrap_or("-").to_owned(),
                    e["via"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    };
    let heidi = access("Heidi@acme.example");
    assert_eq!(
        heidi,
        [
            (
                "acme".into(),
                "-".into(),
                "invite (ProjectMembership billing-heidi)".into()
            ),
            (
                "acme".into(),
                "billing".into(),
                "project membership billing-heidi".into()
            ),
        ]
    );
    // bob reaches engineering's api through backend, which nests backend-leads.
    assert!(
        access("bob@acme.example").contains(&(
            "acme/engineering".into(),
            "api".into(),
            "group team-engineering/backend (through team-engineering/backend-leads)".into()
        )),
        "{:?}",
        access("bob@acme.example")
    );
    let out = suborg(
        &[
            "get",
            "access",
            "--user",
            "nobody@acme.example",
            "--store",
            &store,
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).contains("no user \"nobody@acme.example\" in the store"));
    let out = suborg(&["get", "projects", "--store", &store], None);
    assert_eq!(out.status.code(), Some(2), "a usage error");
    assert!(text(&out).contains("get projects needs --org"));

    // Connections are per organization: engineering sees its own, not the root's.
    let names = |org: &str| -> Vec<String> {
        let out = suborg(
            &[
                "get",
                "connections",
                "--org",
                org,
                "--store",
                &store,
                "-o",
                "json",
            ],
            None,
        );
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v.as_array()
            .unwrap()
            .iter()
            .map(|r| {
                format!(
                    "{} {}",
                    r["kind"].as_str().unwrap(),
                    r["name"].as_str().unwrap()
                )
            })
            .collect()
    };
    assert_eq!(
        names("acme"),
        [
            "AppConnection platform/aws-shared",
            "Gateway platform/datacenter",
            "Relay platform/eu-relay"
        ]
    );
    assert_eq!(
        names("acme/engineering"),
        ["AppConnection team-engineering/github"]
    );
    assert!(names("acme/marketing").is_empty());
}

#[test]
fn an_invalid_set_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = format!("sqlite://{}", dir.path().join("s.db").display());
    let bad = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/invalid/subject-not-in-root"
    );
    let out = suborg(&["apply", "-f", bad, "--store", &store], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).contains("[SubjectNotInRoot]") && text(&out).contains("nothing was applied"),
        "{}",
        text(&out)
    );
    // Not even the store was created.
    let out = suborg(&["get", "orgs", "--store", &store], None);
    assert!(
        text(&out).contains("there is no store at"),
        "{}",
        text(&out)
    );
    assert!(!dir.path().join("s.db").exists());
}

#[test]
fn an_unreachable_store_names_it_without_the_password() {
    let out = suborg(
        &[
            "apply",
            "-f",
            "-",
            "--store",
            "postgres://suborg:hunter2@127.0.0.1:1/suborg",
        ],
        Some(ORG.as_bytes()),
    );
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(
        t.contains("cannot open store postgres://suborg:***@127.0.0.1:1/suborg"),
        "{t}"
    );
    assert!(t.contains("nothing was applied"), "{t}");
    assert!(!t.contains("hunter2"), "{t}");
}

/// Every form a DSN can carry a password in: none of them reaches the output.
#[test]
fn no_password_reaches_the_output_in_any_form() {
    for dsn in [
        "postgres://u@127.0.0.1:1/db?password=hunter2",
        "postgres://u@127.0.0.1:1/db?options=-c%20x%3Dy&password=hunter2",
        "postgres://u@127.0.0.1:1/db?password=hunter2&sslmode=bogus",
        "postgres://u:hunter2@127.0.0.1:99999/db",
        "postgres://u@127.0.0.1:1/db?options=-c%20password%3Dhunter2",
    ] {
        for command in [&["get", "tree"][..], &["apply", "-f", "-"][..]] {
            let mut args = command.to_vec();
            args.extend(["--store", dsn]);
            let out = suborg(&args, Some(ORG.as_bytes()));
            let t = text(&out);
            assert_ne!(out.status.code(), Some(0), "{t}");
            assert!(!t.contains("hunter2"), "{dsn}: {t}");
        }
    }
    // From the environment and the DSN at once: refused, naming where, never what.
    let out = Command::new(env!("CARGO_BIN_EXE_suborg"))
        .args([
            "get",
            "tree",
            "--store",
            "postgres://u:hunter2@127.0.0.1:1/db",
        ])
        .env("SUBORG_STORE_PASSWORD", "hunter3")
        .output()
        .unwrap();
    let t = text(&out);
    assert!(t.contains("given more than once"), "{t}");
    assert!(!t.contains("hunter2") && !t.contains("hunter3"), "{t}");
}

/// The README's main command on a machine where the default store's directory does not exist.
#[test]
fn the_default_store_is_created_where_none_exists() {
    let home = tempfile::tempdir().unwrap();
    let examples = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/acme");
    for args in [&["apply", "-f", examples][..], &["get", "tree"][..]] {
        let out = Command::new(env!("CARGO_BIN_EXE_suborg"))
            .args(args)
            .env("HOME", home.path())
            .env("XDG_DATA_HOME", "")
            .env_remove("SUBORG_STORE")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    }
    assert!(home.path().join(".local/share/suborg/store.db").exists());
}

#[test]
fn progress_shows_on_a_terminal_only() {
    let dir = tempfile::tempdir().unwrap();
    let store = format!("sqlite://{}", dir.path().join("s.db").display());
    let args = [
        "apply",
        "-f",
        "examples/acme",
        "--store",
        &store,
        "--dry-run",
    ];
    let piped = suborg(&args, None);
    assert!(piped.status.success(), "{}", text(&piped));
    assert!(
        !text(&piped).contains('\x1b'),
        "no terminal codes in a pipe"
    );
    // `script` runs the command on a pseudo-terminal (util-linux, on every Debian system).
    let command = format!("{} {}", env!("CARGO_BIN_EXE_suborg"), args.join(" "));
    let tty = Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .env_remove("SUBORG_NO_PROGRESS")
        .output()
        .expect("script(1) is installed");
    let t = String::from_utf8_lossy(&tty.stdout);
    assert!(tty.status.success(), "{t}");
    assert!(t.contains("reading manifests: 6 files"), "{t}");
    assert!(
        t.contains("planning 4 organizations and 15 memberships"),
        "{t}"
    );
    // The line is erased before the plan is printed.
    assert!(t.contains("\x1b[2K  + organization acme"), "{t:?}");
}

#[test]
fn get_shows_groups_identities_and_effective_members_by_visibility() {
    let dir = tempfile::tempdir().unwrap();
    let store = format!("sqlite://{}", dir.path().join("s.db").display());
    let examples = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/acme");
    let out = suborg(&["apply", "-f", examples, "--store", &store], None);
    assert!(out.status.success(), "{}", text(&out));
    let get = |args: &[&str]| {
        let mut all = vec!["get"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--store", &store, "-o", "json"]);
        let out = suborg(&all, None);
        assert!(out.status.success(), "{}", text(&out));
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let names = |v: &serde_json::Value| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|o| o["name"].as_str().unwrap().to_owned())
            .collect()
    };
    // The root sees its own group only; engineering its own and the one added from the root.
    assert_eq!(
        names(&get(&["groups", "--org", "acme"])),
        ["platform/security-reviewers"]
    );
    assert_eq!(
        names(&get(&["groups", "--org", "acme/engineering"])),
        [
            "platform/security-reviewers",
            "team-engineering/backend",
            "team-engineering/backend-leads"
        ]
    );
    assert!(
        get(&["groups", "--org", "acme/sales-emea"])
            .as_array()
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        names(&get(&["identities", "--org", "acme/engineering"])),
        ["platform/ci-pipeline"]
    );
    let effective = get(&["members", "--org", "acme/engineering", "--effective"]);
    let alice = effective
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["email"] == "alice@acme.example")
        .expect("alice has access to engineering through the root group added there");
    assert_eq!(
        alice["via"],
        serde_json::json!(["platform/security-reviewers"])
    );
    let plain = get(&["members", "--org", "acme/engineering"]);
    assert!(!plain.to_string().contains("alice@acme.example"));
}

fn membership_with_labels(labels: &str) -> String {
    format!(
        "apiVersion: suborg.io/v1alpha1\nkind: OrgMembership\nmetadata:\n  name: flat\n  namespace: platform\n  labels: {labels}\nspec:\n  organizationRef: {{kind: Organization, name: acme}}\n  subject: {{kind: User, email: a@acme.example}}\n  roles: [{{role: member}}]\n"
    )
}

/// Flow collections nested past any real object are refused before the YAML parser (whose
/// time grows with the square of the depth) sees them, naming the line and the limit.
#[test]
fn deep_nesting_is_refused_before_parsing() {
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let doc = format!(
        "{ORG}---\n# a comment with [[[ brackets\n{}",
        membership_with_labels(&deep)
    );
    rejected(
        doc.as_bytes(),
        &["more than 100 levels deep at line 13", "[InvalidYaml]"],
    );
    // Brackets inside quotes are text, and nesting within the limit is the parser's to read.
    let quoted = format!("{{a: \"{}\"}}", "[".repeat(500));
    let out = suborg(
        &["validate", "-f", "-"],
        Some(membership_with_labels(&quoted).as_bytes()),
    );
    assert!(!text(&out).contains("levels deep"), "{}", text(&out));
    let ninety = format!("{{a: {}x{}}}", "[".repeat(90), "]".repeat(90));
    let out = suborg(
        &["validate", "-f", "-"],
        Some(membership_with_labels(&ninety).as_bytes()),
    );
    assert!(!text(&out).contains("levels deep"), "{}", text(&out));
}

/// One anchor referenced over and over: refused once the values outgrow what the document's
/// size allows, not after filling memory.
#[test]
fn a_flat_alias_bomb_is_refused() {
    let anchor = vec!["r"; 10_000].join(", ");
    let refs = vec!["*a"; 10_000].join(", ");
    let labels = format!("{{x: &a [{anchor}], y: [{refs}]}}");
    rejected(
        membership_with_labels(&labels).as_bytes(),
        &["more values than its size allows", "[InvalidYaml]"],
    );
    // Anchors used as meant (a few reuses, merge keys) are fine.
    let reuse = "apiVersion: suborg.io/v1alpha1\nkind: Organization\nmetadata:\n  name: acme\n  labels: &l {team: platform}\n  annotations: *l\nspec: {}\n";
    let out = suborg(&["validate", "-f", "-"], Some(reuse.as_bytes()));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
}

/// A SQLite store in a directory of its own, holding the Organization `acme`: the directory,
/// the file and the DSN.
fn store_with_org() -> (tempfile::TempDir, std::path::PathBuf, String) {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("s.db");
    let dsn = format!("sqlite://{}", db.display());
    let out = suborg(&["apply", "-f", "-", "--store", &dsn], Some(ORG.as_bytes()));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    (dir, db, dsn)
}

/// `get` only reads: a store whose files are read-only is read, an old or missing one is named
/// with what to do, and nothing is created.
#[test]
fn get_opens_the_store_read_only() {
    use std::os::unix::fs::PermissionsExt;
    let (dir, db, dsn) = store_with_org();
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let p = entry.unwrap().path();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o444)).unwrap();
    }
    let before = std::fs::read(&db).unwrap();
    let out = suborg(&["get", "tree", "--store", &dsn], None);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("acme"), "{}", text(&out));
    assert_eq!(
        std::fs::read(&db).unwrap(),
        before,
        "the database file is untouched"
    );

    let missing = format!("sqlite://{}", dir.path().join("none.db").display());
    let out = suborg(&["get", "tree", "--store", &missing], None);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("there is no store at"),
        "{}",
        text(&out)
    );
    assert!(!dir.path().join("none.db").exists(), "get creates nothing");
}

/// Rows written around suborg that break what the API enforces (an uppercase slug, a padded
/// display name) or what SQLite enforces only when asked (foreign keys): `get` still shows the
/// store, and warns that it holds them.
#[test]
fn get_warns_about_rows_suborg_would_never_write() {
    let (_dir, db, dsn) = store_with_org();
    let clean = suborg(&["get", "tree", "--store", &dsn], None);
    assert!(!text(&clean).contains("warning"), "{}", text(&clean));

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        use sqlx::{ConnectOptions, Connection};
        let mut conn = format!("sqlite://{}", db.display())
            .parse::<sqlx::sqlite::SqliteConnectOptions>()
            .unwrap()
            .foreign_keys(false)
            .connect()
            .await
            .unwrap();
        // A writer that also removed the database's own guards on slugs and display names.
        let triggers: Vec<String> =
            sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'trigger'")
                .fetch_all(&mut conn)
                .await
                .unwrap();
        assert!(!triggers.is_empty(), "the store guards its fields");
        for t in triggers {
            sqlx::query(&format!("DROP TRIGGER {t}")).execute(&mut conn).await.unwrap();
        }
        for sql in [
            "INSERT INTO organizations (id, managed, depth, parent_key, root_id, slug, display_name, deletion_policy, created_at, updated_at) VALUES ('x1', 0, 0, '', 'x1', 'Engineering', ' Padded ', 'Delete', 0, 0)",
            "INSERT INTO memberships (id, managed, organization_id, root_id, subject_kind, user_id, roles, deletion_policy, created_at, updated_at) VALUES ('m1', 0, 'gone', 'gone', 'User', 'nobody', '[]', 'Delete', 0, 0)",
        ] {
            sqlx::query(sql).execute(&mut conn).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
        }
        conn.close().await.unwrap();
    });
    let out = suborg(&["get", "tree", "--store", &dsn], None);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert!(
        t.contains("slug \"Engineering\" is not 1-64 lowercase"),
        "{t}"
    );
    assert!(
        t.contains("display name \" Padded \" starts or ends with a space"),
        "{t}"
    );
    assert!(t.contains("row(s) of memberships point at rows of"), "{t}");
}

/// A reader that stops early (`suborg get … -o json | head`) is not a failure: no message,
/// exit 0, in every output format.
#[test]
fn a_closed_pipe_ends_quietly() {
    let (_dir, _path, dsn) = store_with_org();
    for format in ["json", "yaml", "table"] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_suborg"))
            .args(["get", "tree", "-o", format, "--store", &dsn])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{format}: {stderr}");
        assert!(!stderr.contains("Broken pipe"), "{format}: {stderr}");
    }
}

/// A view without the flag it needs is a usage error (exit 2), told before any store is read.
#[test]
fn get_without_the_flag_a_view_needs_is_a_usage_error() {
    for (what, needle) in [
        (
            "members",
            "suborg: get members needs --org ROOT or --org ROOT/SUB",
        ),
        ("connections", "suborg: get connections needs --org"),
        ("access", "suborg: get access needs --user EMAIL"),
    ] {
        let out = suborg(
            &["get", what, "--store", "sqlite:///nonexistent/s.db"],
            None,
        );
        let t = text(&out);
        assert_eq!(out.status.code(), Some(2), "{what}: {t}");
        assert!(t.contains(needle), "{what}: {t}");
    }
}

/// A `--store` that is no DSN suborg takes is a usage error (exit code 2) for `get` and
/// `apply` alike, and its message keeps any password out.
#[test]
fn a_store_that_is_no_dsn_is_a_usage_error() {
    for dsn in [
        "mysql://u:hunter2@db/x",
        "sqlite:relative.db",
        "/tmp/store.db",
        "postgres:/u:hunter2@db/x",
    ] {
        for args in [
            vec!["get", "tree", "--store", dsn],
            vec!["apply", "-f", "examples/acme", "--store", dsn],
        ] {
            let out = suborg(&args, None);
            let t = text(&out);
            assert_eq!(out.status.code(), Some(2), "{args:?}: {t}");
            assert!(t.contains("invalid store"), "{t}");
            assert!(!t.contains("hunter2"), "{t}");
        }
    }
}

/// Any list kubectl flattens is flattened: `v1 List`, a `v1` kind's own list
/// (`OrgMembershipList`) and `suborg.io`'s; its items are checked as objects.
#[test]
fn every_list_kind_is_flattened_as_kubectl_does() {
    let org = r#"{"apiVersion":"suborg.io/v1alpha1","kind":"Organization","metadata":{"name":"acme"},"spec":{"slug":"SLUG"}}"#;
    for (api_version, kind) in [
        ("v1", "List"),
        ("v1", "OrganizationList"),
        ("suborg.io/v1alpha1", "OrganizationList"),
    ] {
        let list = format!(r#"{{"apiVersion":"{api_version}","kind":"{kind}","items":[{org}]}}"#);
        rejected(
            list.as_bytes(),
            &["Organization/acme: spec.slug", "1 object"],
        );
        let fixed = list.replace("SLUG", "acme");
        let out = suborg(&["validate", "-f", "-"], Some(fixed.as_bytes()));
        assert_eq!(out.status.code(), Some(0), "{kind}: {}", text(&out));
        assert!(text(&out).contains("1 object in 1 file"), "{}", text(&out));
    }
}

/// A broken link in a directory is named and hides no other file; a link to a directory is
/// not followed, so a loop ends.
#[test]
fn a_broken_link_in_a_directory_is_named_and_hides_nothing() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("org.yaml"), ORG).unwrap();
    std::os::unix::fs::symlink("/nonexistent", dir.path().join("broken.yaml")).unwrap();
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    std::os::unix::fs::symlink("..", dir.path().join("sub").join("loop")).unwrap();
    let out = suborg(&["validate", "-f", dir.path().to_str().unwrap()], None);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    let broken = dir.path().join("broken.yaml");
    assert!(
        t.contains(&format!("{}: -: -: cannot be read", broken.display())),
        "{t}"
    );
    assert!(t.contains("1 object in"), "org.yaml is read: {t}");
    assert!(!t.contains("symbolic links"), "{t}");
}

/// Offline, an object is created when its rows are first written: a `duration` counts from
/// then on every later `apply`, as the store's readers count it, not from each run.
#[test]
fn offline_a_duration_counts_from_the_first_apply() {
    let dir = tempfile::tempdir().unwrap();
    let store = format!("sqlite://{}", dir.path().join("s.db").display());
    let manifests = dir.path().join("m.yaml");
    std::fs::write(
        &manifests,
        format!(
            "{ORG}---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: platform\n  labels:\n    suborg.io/organization: acme\n---\napiVersion: suborg.io/v1alpha1\nkind: OrgMembership\nmetadata:\n  name: alice\n  namespace: platform\nspec:\n  organizationRef:\n    name: acme\n  subject:\n    kind: User\n    email: alice@acme.example\n  roles:\n    - role: member\n    - role: admin\n      temporary:\n        duration: 2s\n"
        ),
    )
    .unwrap();
    let apply = || {
        suborg(
            &[
                "apply",
                "-f",
                manifests.to_str().unwrap(),
                "--store",
                &store,
            ],
            None,
        )
    };
    let members = || {
        text(&suborg(
            &["get", "members", "--org", "acme", "--store", &store],
            None,
        ))
    };
    let out = apply();
    assert!(out.status.success(), "{}", text(&out));
    assert!(members().contains("member, admin (until "), "{}", members());
    std::thread::sleep(std::time::Duration::from_millis(2500));
    // The store says it is over, and so does the next apply, which drops it from the row.
    assert!(members().contains("admin (expired "), "{}", members());
    let out = apply();
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(t.contains("[RoleExpired]"), "{t}");
    assert!(
        t.contains("~ membership alice@acme.example in acme (roles)"),
        "{t}"
    );
    let listed = members();
    assert!(
        listed.contains("alice@acme.example  member\n")
            || listed
                .lines()
                .any(|l| l.starts_with("alice@acme.example") && l.trim_end().ends_with("member")),
        "{listed}"
    );
    assert!(apply().status.success());
    assert!(
        text(&apply()).contains("No changes"),
        "a third apply changes nothing"
    );
}

/// After `suborg apply`, the SQLite file alone is the whole store: what a copy, a backup or a
/// read-only mount takes.
#[test]
fn after_apply_the_sqlite_file_alone_is_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    let store = format!("sqlite://{}", path.display());
    let out = suborg(&["apply", "-f", "examples/acme", "--store", &store], None);
    assert!(out.status.success(), "{}", text(&out));
    let copy = tempfile::tempdir().unwrap();
    std::fs::copy(&path, copy.path().join("s.db")).unwrap();
    let copied = format!("sqlite://{}", copy.path().join("s.db").display());
    let out = suborg(&["get", "tree", "--store", &copied], None);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("engineering (Engineering)"),
        "{}",
        text(&out)
    );
}

/// Two invites of one user with other organization roles: the first makes the root
/// membership, and the other is warned about rather than dropped without a word.
#[test]
fn a_second_invite_with_another_organization_role_is_warned_about() {
    let dir = tempfile::tempdir().unwrap();
    let extra = "apiVersion: suborg.io/v1alpha1\nkind: Project\nmetadata:\n  name: payroll\n  namespace: platform\nspec:\n  organizationRef:\n    kind: Organization\n    name: acme\n---\napiVersion: suborg.io/v1alpha1\nkind: ProjectMembership\nmetadata:\n  name: payroll-heidi\n  namespace: platform\nspec:\n  projectRef:\n    name: payroll\n  subject:\n    kind: User\n    email: Heidi@acme.example\n  roles:\n    - role: viewer\n  invite:\n    organizationRole: no-access\n";
    std::fs::write(dir.path().join("extra.yaml"), extra).unwrap();
    let out = suborg(
        &[
            "validate",
            "-f",
            "examples/acme",
            "-f",
            dir.path().to_str().unwrap(),
        ],
        None,
    );
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert!(
        t.contains("ProjectMembership/platform/payroll-heidi: spec.invite.organizationRole: warning: \"no-access\" is not used: ProjectMembership platform/billing-heidi invites this user first"),
        "{t}"
    );
}

/// An empty file, or one of comments, in a directory is passed by with a warning, as kubectl
/// and Argo CD pass it by; a file named on the command line must hold objects.
#[test]
fn an_empty_file_in_a_directory_is_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("org.yaml"), ORG).unwrap();
    std::fs::write(dir.path().join("placeholder.yaml"), "# nothing yet\n---\n").unwrap();
    let out = suborg(&["validate", "-f", dir.path().to_str().unwrap()], None);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert!(
        t.contains("placeholder.yaml: -: -: warning: holds no Kubernetes objects"),
        "{t}"
    );
    assert!(t.contains("0 errors, 1 warning"), "{t}");
    let empty = dir.path().join("placeholder.yaml");
    let out = suborg(&["validate", "-f", empty.to_str().unwrap()], None);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
}

/// A root group or identity added to a sub-organization is listed there only while the
/// addition has a role in effect: once its temporary roles have expired it is not usable
/// there, and `get groups|identities` leaves it out.
#[test]
fn get_leaves_out_root_subjects_whose_addition_has_expired() {
    let dir = tempfile::tempdir().unwrap();
    let manifests = dir.path().join("acme");
    std::fs::create_dir(&manifests).unwrap();
    let examples = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/acme");
    for entry in std::fs::read_dir(examples).unwrap() {
        let path = entry.unwrap().path();
        let mut text = std::fs::read_to_string(&path).unwrap();
        // The identity's addition to engineering expired long ago; the project membership
        // through it would be refused, so it goes.
        text = text.replace(
            "  roles:\n    - role: deployer\n---",
            "  roles:\n    - role: deployer\n      temporary:\n        start: \"2020-01-01T00:00:00Z\"\n        end: \"2020-01-02T00:00:00Z\"\n---",
        );
        let kept: Vec<&str> = text
            .split("\n---\n")
            .filter(|d| !d.contains("name: api-ci\n"))
            .collect();
        std::fs::write(
            manifests.join(path.file_name().unwrap()),
            kept.join("\n---\n"),
        )
        .unwrap();
    }
    let store = format!("sqlite://{}", dir.path().join("s.db").display());
    let out = suborg(
        &[
            "apply",
            "-f",
            manifests.to_str().unwrap(),
            "--store",
            &store,
        ],
        None,
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("RoleExpired"), "{}", text(&out));
    let get = |what: &str| {
        let out = suborg(
            &[
                "get",
                what,
                "--org",
                "acme/engineering",
                "--store",
                &store,
                "-o",
                "json",
            ],
            None,
        );
        assert!(out.status.success(), "{}", text(&out));
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    assert_eq!(get("identities"), serde_json::json!([]));
    // The group's addition, with no end, is still listed.
    assert!(
        get("groups")
            .to_string()
            .contains("platform/security-reviewers")
    );
}
