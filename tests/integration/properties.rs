//! Property tests: arbitrary bytes and arbitrary object sets never panic the parser or the rules,
//! and what the rules accept always satisfies the invariants of the domain.

use std::collections::HashSet;

use k8s_openapi::jiff::Timestamp;
use proptest::prelude::*;
use suborg::api::*;
use suborg::domain::Reason;
use suborg::domain::check;
use suborg::domain::model::ObjectSet;
use suborg::domain::slug::{effective_slug, is_valid_slug, normalize_email};
use suborg::manifest::check_sources;

use crate::fixtures::*;

fn now() -> Timestamp {
    "2026-06-01T12:00:00Z".parse().unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let r = check_sources([("fuzz.yaml", bytes.as_slice())], "default", now());
        prop_assert!(r.errors + r.warnings == r.problems.len());
    }

    #[test]
    fn arbitrary_yaml_never_panics(doc in yaml_document()) {
        let r = check_sources([("fuzz.yaml", doc.as_bytes())], "default", now());
        prop_assert!(r.errors + r.warnings == r.problems.len());
    }

    /// Documents shaped to hurt a YAML reader (deep flow nesting, anchors referenced over and
    /// over, both inside an object): never a panic; past the depth limit, the anchor limit or
    /// the value budget, one InvalidYaml saying which.
    #[test]
    fn hostile_shapes_are_refused_by_their_limit(
        depth in 0usize..400,
        anchor in 1usize..300,
        refs in 0usize..300,
        closers in prop::bool::ANY,
    ) {
        let nest = format!("{}x{}", "[".repeat(depth), if closers { "]".repeat(depth) } else { String::new() });
        let items = vec!["r"; anchor].join(", ");
        let aliases = vec!["*a"; refs].join(", ");
        let doc = format!(
            "apiVersion: suborg.io/v1alpha1\nkind: Organization\nmetadata:\n  name: acme\n  labels: {{n: {nest}, x: &a [{items}], y: [{aliases}]}}\nspec: {{}}\n"
        );
        let r = check_sources([("hostile.yaml", doc.as_bytes())], "default", now());
        prop_assert!(r.errors + r.warnings == r.problems.len());
        let said = |words: &str| r.problems.iter().any(|p| p.problem.reason == Reason::InvalidYaml && p.problem.message.contains(words));
        // Every value the document holds, aliases expanded: the anchored list and each alias of
        // it, the nested lists and their scalar, and the seven values of the object around them.
        let values = (anchor + 1) * (refs + 1) + depth + 1 + 7;
        let budget = suborg::manifest::budget_for(doc.len());
        if !closers {
            // Unbalanced: broken YAML one way or another, and said so.
            prop_assert!(r.errors > 0);
        } else if depth + 1 > suborg::manifest::MAX_DEPTH {
            // `labels: {` is one level more.
            prop_assert!(said("levels deep"), "{:?}", r.problems);
        } else if (anchor + 2).abs_diff(budget / 4) <= 2 {
            // At the anchor's limit, give or take the list's own start and end: either verdict.
        } else if anchor + 2 > budget / 4 {
            // The parser's copy of the anchor is refused before the aliases expand it.
            prop_assert!(said("an anchor holds more than a quarter"), "{:?}", r.problems);
        } else if values > budget {
            prop_assert!(said("more values than its size allows"), "{:?}", r.problems);
        } else {
            prop_assert!(!said("levels deep") && !said("more values than its size allows"), "{:?}", r.problems);
        }
    }

    #[test]
    fn slug_rule_and_schema_pattern_agree(s in "[a-zA-Z0-9_. -]{0,70}") {
        let re = regex::Regex::new(SLUG_PATTERN).unwrap();
        let schema_says = re.is_match(&s) && (1..=64).contains(&s.chars().count());
        prop_assert_eq!(is_valid_slug(&s), schema_says);
    }

    #[test]
    fn accepted_objects_satisfy_the_invariants(set in object_set()) {
        let o = check(&set, now());
        let roots: HashSet<&str> = o.accepted.organizations.iter().map(|&i| set.organizations[i].metadata.name.as_deref().unwrap()).collect();
        let subs: Vec<&SubOrganization> = o.accepted.sub_organizations.iter().map(|&i| &set.sub_organizations[i]).collect();
        // One level of nesting: every accepted sub-organization hangs off an accepted root.
        for s in &subs {
            prop_assert!(roots.contains(s.spec.organization_ref.name.as_str()));
        }
        // Slugs unique under a parent.
        let mut slugs = HashSet::new();
        for s in &subs {
            let slug = effective_slug(s.metadata.name.as_deref().unwrap(), s.spec.slug.as_deref());
            prop_assert!(slugs.insert((s.spec.organization_ref.name.clone(), slug.to_owned())));
        }
        let members: Vec<&OrgMembership> = o.accepted.memberships.iter().map(|&i| &set.memberships[i]).collect();
        // Root members are those accepted with a role in effect: an expired role lets no one in.
        let root_members: HashSet<(String, String)> = members
            .iter()
            .filter(|m| m.spec.organization_ref.kind == OrganizationKind::Organization)
            .filter(|m| !suborg::domain::temporary::active_roles(&m.spec.roles, now(), now()).is_empty())
            .map(|m| (m.spec.organization_ref.name.clone(), normalize_email(m.spec.subject.email.as_deref().unwrap())))
            .collect();
        let sub_parent: std::collections::HashMap<&str, &str> = subs.iter().map(|s| (s.metadata.name.as_deref().unwrap(), s.spec.organization_ref.name.as_str())).collect();
        let mut seen = HashSet::new();
        for m in &members {
            let r = &m.spec.organization_ref;
            let email = normalize_email(m.spec.subject.email.as_deref().unwrap());
            prop_assert!(seen.insert((r.kind, r.name.clone(), email.clone())), "one membership per subject");
            match r.kind {
                OrganizationKind::Organization => prop_assert!(roots.contains(r.name.as_str())),
                OrganizationKind::SubOrganization => {
                    // Sub-organization members are members of its root.
                    let root = sub_parent.get(r.name.as_str());
                    prop_assert!(root.is_some(), "target accepted");
                    prop_assert!(root_members.contains(&(root.unwrap().to_string(), email)));
                }
            }
        }
        // Sub-organization admins are accepted root members; one who is not is reported on the
        // sub-organization, which stays.
        // An admin listed twice is an admin once (the second is reported as DuplicateAdmin).
        for (n, &i) in o.accepted.sub_organizations.iter().enumerate() {
            let s = &set.sub_organizations[i];
            let mut listed = HashSet::new();
            for (j, a) in s.spec.admins.iter().enumerate() {
                let pair = (s.spec.organization_ref.name.clone(), normalize_email(a));
                if !listed.insert(pair.1.clone()) {
                    prop_assert!(!o.accepted.admins.contains(&(i, j)));
                    let field = format!("spec.admins[{j}]");
                    prop_assert!(o.problems.iter().any(|p| p.reason == Reason::DuplicateAdmin && p.field == field));
                    continue;
                }
                let admin = o.accepted.admins.contains(&(i, j));
                prop_assert_eq!(admin, root_members.contains(&pair), "sub {} admin {}", n, a);
                let reported = o.problems.iter().any(|p| p.reason == Reason::AdminNotInRoot
                    && p.field == format!("spec.admins[{j}]")
                    && p.object.as_ref().is_some_and(|k| Some(&k.name) == s.metadata.name.as_ref()));
                prop_assert_eq!(reported, !admin);
            }
        }
        // Every error names an object of the set, and an object with an error is not accepted.
        // (Except an admin not in the root, or listed twice: those leave the sub-organization
        // in place.)
        let error_names: HashSet<(String, String)> = o.problems.iter().filter(|p| p.is_error() && !matches!(p.reason, Reason::AdminNotInRoot | Reason::DuplicateAdmin)).map(|p| {
            let k = p.object.as_ref().unwrap();
            (k.kind.clone(), k.name.clone())
        }).collect();
        for &i in &o.accepted.memberships {
            let name = set.memberships[i].metadata.name.clone().unwrap();
            prop_assert!(!error_names.contains(&("OrgMembership".to_string(), name)));
        }
        for &i in &o.accepted.sub_organizations {
            let name = set.sub_organizations[i].metadata.name.clone().unwrap();
            prop_assert!(!error_names.contains(&("SubOrganization".to_string(), name)));
        }
    }
}

/// The value budget leaves the densest real objects alone — a Group with its 10,000 members
/// (the schema's maximum) at their shortest, in block and flow style — and refuses, by name and
/// with the line, what is packed denser than any object: flow lists of one-character scalars,
/// block lists of empty entries.
#[test]
fn the_value_budget_takes_the_densest_objects_and_refuses_denser() {
    let group = "apiVersion: suborg.io/v1alpha1\nkind: Group\nmetadata: {name: g, namespace: n}\nspec:\n  organizationRef: {kind: Organization, name: o}\n  members:\n";
    let block = format!(
        "{group}{}",
        "  - kind: User\n    email: a@b.c\n".repeat(10_000)
    );
    let flow = format!("{group}{}", "  - {kind: Group, name: g}\n".repeat(10_000));
    for doc in [block, flow] {
        let r = check_sources([("dense.yaml", doc.as_bytes())], "default", now());
        assert!(
            r.problems
                .iter()
                .all(|p| p.problem.reason != Reason::InvalidYaml),
            "{:?}",
            r.problems.first()
        );
    }
    let head = "apiVersion: suborg.io/v1alpha1\nkind: Organization\nmetadata:\n  name: acme\n";
    let flow = format!("{head}  labels: {{x: [{}]}}\n", vec!["r"; 60_000].join(","));
    let block = format!("{head}  labels:\n    x:\n{}", "    -\n".repeat(60_000));
    let nulls = format!(
        "{head}  labels:\n    x: [{}]\n",
        vec!["~"; 60_000].join(",")
    );
    for doc in [flow, block, nulls] {
        let r = check_sources([("plain.yaml", doc.as_bytes())], "default", now());
        assert_eq!(r.problems.len(), 1, "{:?}", r.problems);
        let p = &r.problems[0].problem;
        assert_eq!(p.reason, Reason::InvalidYaml);
        assert!(
            p.message.contains("more values than its size allows"),
            "{}",
            p.message
        );
        assert!(p.message.contains(" at line "), "{}", p.message);
    }
}

/// Small pools of names so references often hit, and often miss.
fn name() -> impl Strategy<Value = String> {
    prop::sample::select(vec!["acme", "globex", "eng", "sales", "ops"]).prop_map(String::from)
}

fn email() -> impl Strategy<Value = String> {
    prop::sample::select(vec!["a@x.io", "A@X.io", "b@x.io", "c@y.io", "d@x.io"])
        .prop_map(String::from)
}

fn object_set() -> impl Strategy<Value = ObjectSet> {
    let orgs = prop::collection::vec((name(), prop::option::of(name())), 0..4);
    let subs = prop::collection::vec(
        (
            name(),
            name(),
            prop::option::of(name()),
            prop::collection::vec(email(), 1..3),
        ),
        0..6,
    );
    let members = prop::collection::vec(
        (
            any::<bool>(),
            name(),
            email(),
            prop::sample::select(vec!["platform", "team", "other"]),
            any::<u8>(),
        ),
        0..16,
    );
    (orgs, subs, members).prop_map(|(orgs, subs, members)| {
        let mut set = ObjectSet::default();
        let mut names = HashSet::new();
        for (n, slug) in orgs {
            // Names are unique per kind, as in a cluster.
            if !names.insert(("o", n.clone())) {
                continue;
            }
            let mut o = org(&n);
            o.spec.slug = slug;
            set.organizations.push(o);
        }
        for (n, parent, slug, admins) in subs {
            if !names.insert(("s", n.clone())) {
                continue;
            }
            let admins: Vec<&str> = admins.iter().map(String::as_str).collect();
            let mut s = suborg(&n, &parent, &admins);
            s.spec.slug = slug;
            set.sub_organizations.push(s);
        }
        for (i, (to_sub, target, email, ns, r)) in members.into_iter().enumerate() {
            let kind = if to_sub {
                OrganizationKind::SubOrganization
            } else {
                OrganizationKind::Organization
            };
            let roles = match r % 4 {
                0 => vec![role("member")],
                1 => vec![temporary("admin", None, Some("2026-01-01T00:00:00Z"), None)],
                2 => vec![temporary(
                    "admin",
                    Some("2026-07-01T00:00:00Z"),
                    Some("2026-06-01T00:00:00Z"),
                    None,
                )],
                _ => vec![role("admin"), temporary("viewer", None, None, Some("8h"))],
            };
            set.memberships
                .push(user_in(ns, &format!("m{i}"), kind, &target, &email, roles));
        }
        set.namespaces.insert("platform".into(), labels("acme"));
        set.namespaces.insert("team".into(), labels("eng"));
        set
    })
}

/// YAML documents built from fragments of real manifests, so the fuzzing reaches past the parser
/// into the schema and the rules.
fn yaml_document() -> impl Strategy<Value = String> {
    let fragments = prop::sample::select(vec![
        "apiVersion: suborg.io/v1alpha1\n",
        "apiVersion: v1\n",
        "kind: Organization\n",
        "kind: SubOrganization\n",
        "kind: OrgMembership\n",
        "kind: Namespace\n",
        "kind: List\n",
        "metadata:\n  name: acme\n",
        "metadata: {name: eng, namespace: team}\n",
        "metadata: 7\n",
        "spec: {}\n",
        "spec:\n  organizationRef: {name: acme}\n  admins: [a@x.io]\n",
        "spec:\n  subject: {kind: User, email: a@x.io}\n  roles: [{role: member}]\n  organizationRef: {kind: SubOrganization, name: eng}\n",
        "spec:\n  roles: [{role: admin, temporary: {duration: 1h, end: x}}]\n",
        "spec: [1, 2]\n",
        "items: [{apiVersion: suborg.io/v1alpha1, kind: Organization, metadata: {name: x}, spec: {}}]\n",
        "status: {id: 1}\n",
        "---\n",
        "x: &a [1]\ny: *a\n",
        "\t",
        "{",
        "'\n",
        ": :\n",
    ]);
    prop::collection::vec(fragments, 0..12).prop_map(|f| f.concat())
}
