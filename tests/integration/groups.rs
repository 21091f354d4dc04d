//! Groups and machine identities: ownership, flowing down from the root, members, nesting.

use k8s_openapi::jiff::Timestamp;
use suborg::api::*;
use suborg::domain::check;
use suborg::domain::model::{ObjectSet, Outcome};
use suborg::domain::{Reason, Severity};

use crate::fixtures::*;

use OrganizationKind::{Organization as Root, SubOrganization as Sub};

fn now() -> Timestamp {
    "2026-06-01T12:00:00Z".parse().unwrap()
}

/// acme (members alice, bob, carol), sub-organizations eng (admin bob; carol added) and ops
/// (admin alice); namespace `platform` for acme, `team-eng` for eng, `team-ops` for ops.
pub(crate) fn base() -> ObjectSet {
    ObjectSet {
        organizations: vec![org("acme")],
        sub_organizations: vec![
            suborg("eng", "acme", &["bob@x.io"]),
            suborg("ops", "acme", &["alice@x.io"]),
        ],
        memberships: vec![
            root_member("platform", "acme", "alice@x.io"),
            root_member("platform", "acme", "bob@x.io"),
            root_member("platform", "acme", "carol@x.io"),
            sub_member("team-eng", "eng", "carol@x.io"),
        ],
        namespaces: [
            ("platform".to_string(), labels("acme")),
            ("team-eng".to_string(), labels("eng")),
            ("team-ops".to_string(), labels("ops")),
        ]
        .into(),
        ..Default::default()
    }
}

fn problems(o: &Outcome) -> Vec<(String, Reason)> {
    o.problems
        .iter()
        .map(|p| (p.object.as_ref().unwrap().name.clone(), p.reason))
        .collect()
}

/// The reason, field and message of the first problem on the object `name`.
fn said(o: &Outcome, name: &str) -> (Reason, String, String) {
    let p = o
        .problems
        .iter()
        .find(|p| p.object.as_ref().unwrap().name == name)
        .unwrap_or_else(|| panic!("nothing on {name}: {:#?}", o.problems));
    (p.reason, p.field.clone(), p.message.clone())
}

fn message(o: &Outcome, reason: Reason) -> String {
    o.problems
        .iter()
        .find(|p| p.reason == reason)
        .unwrap_or_else(|| panic!("no {reason}: {:#?}", o.problems))
        .message
        .clone()
}

#[test]
fn root_groups_and_identities_flow_down_once_added() {
    let mut set = base();
    set.groups.push(group(
        "platform",
        "admins",
        Root,
        "acme",
        vec![user("alice@x.io"), user("bob@x.io")],
    ));
    set.identities
        .push(identity("platform", "ci", Root, "acme"));
    set.memberships.push(subject_in(
        "team-eng",
        "eng-admins",
        Sub,
        "eng",
        SubjectKind::Group,
        "admins",
        Some("platform"),
    ));
    set.memberships.push(subject_in(
        "team-eng",
        "eng-ci",
        Sub,
        "eng",
        SubjectKind::MachineIdentity,
        "ci",
        Some("platform"),
    ));
    let o = check(&set, now());
    assert!(o.problems.is_empty(), "{:#?}", o.problems);
    assert_eq!(o.accepted.groups, [0]);
    assert_eq!(o.accepted.identities, [0]);
    assert_eq!(o.accepted.memberships.len(), 6);
}

#[test]
fn a_root_group_or_identity_needs_no_membership_at_the_root() {
    let mut set = base();
    set.groups
        .push(group("platform", "admins", Root, "acme", vec![]));
    set.memberships.push(subject_in(
        "platform",
        "acme-admins",
        Root,
        "acme",
        SubjectKind::Group,
        "admins",
        None,
    ));
    let o = check(&set, now());
    assert_eq!(
        problems(&o),
        [("acme-admins".into(), Reason::SubjectOwnedByTarget)]
    );
}

#[test]
fn what_a_sub_organization_creates_stays_there() {
    let mut set = base();
    set.groups.push(group(
        "team-eng",
        "oncall",
        Sub,
        "eng",
        vec![user("carol@x.io")],
    ));
    set.identities
        .push(identity("team-eng", "deployer", Sub, "eng"));
    // Added to its own sub-organization: it is already there.
    set.memberships.push(subject_in(
        "team-eng",
        "again",
        Sub,
        "eng",
        SubjectKind::Group,
        "oncall",
        None,
    ));
    // Added to a sibling: not visible there.
    set.memberships.push(subject_in(
        "team-ops",
        "borrowed",
        Sub,
        "ops",
        SubjectKind::MachineIdentity,
        "deployer",
        Some("team-eng"),
    ));
    let o = check(&set, now());
    let mut got = problems(&o);
    got.sort();
    assert_eq!(
        got,
        [
            ("again".into(), Reason::SubjectOwnedByTarget),
            ("borrowed".into(), Reason::SubjectNotVisible)
        ]
    );
    // Named from another namespace: nothing is said of whose it is.
    let m = message(&o, Reason::SubjectNotVisible);
    assert!(
        m.contains("is not one SubOrganization \"ops\" can use"),
        "{m}"
    );
    assert!(!m.contains("SubOrganization \"eng\""), "{m}");
    assert_eq!(o.accepted.groups, [0]);
    assert_eq!(o.accepted.identities, [0]);
}

#[test]
fn unknown_groups_and_identities_are_named() {
    let mut set = base();
    set.memberships.push(subject_in(
        "team-eng",
        "ghost",
        Sub,
        "eng",
        SubjectKind::Group,
        "nobody",
        Some("platform"),
    ));
    let o = check(&set, now());
    // In another namespace: the same answer as for another organization's group.
    assert_eq!(problems(&o), [("ghost".into(), Reason::SubjectNotVisible)]);
    assert!(message(&o, Reason::SubjectNotVisible).contains("\"platform/nobody\""));
    // In its own namespace, missing is missing.
    set.memberships.last_mut().unwrap().spec.subject.namespace = None;
    let o = check(&set, now());
    assert_eq!(problems(&o), [("ghost".into(), Reason::SubjectNotFound)]);
    assert!(message(&o, Reason::SubjectNotFound).contains("\"team-eng/nobody\""));
}

#[test]
fn a_group_added_twice_to_one_sub_organization_is_refused() {
    let mut set = base();
    set.groups
        .push(group("platform", "admins", Root, "acme", vec![]));
    for name in ["first", "second"] {
        set.memberships.push(subject_in(
            "team-eng",
            name,
            Sub,
            "eng",
            SubjectKind::Group,
            "admins",
            Some("platform"),
        ));
    }
    let o = check(&set, now());
    assert_eq!(
        problems(&o),
        [("second".into(), Reason::DuplicateMembership)]
    );
}

#[test]
fn group_members_must_belong_to_the_group_organization() {
    let mut set = base();
    set.groups.push(group(
        "platform",
        "root-group",
        Root,
        "acme",
        vec![user("dave@x.io")],
    ));
    // alice is a root member but not in eng; bob is eng's admin; carol was added to eng.
    set.groups.push(group(
        "team-eng",
        "eng-group",
        Sub,
        "eng",
        vec![user("alice@x.io"), user("bob@x.io"), user("CAROL@x.io")],
    ));
    let o = check(&set, now());
    let mut got = problems(&o);
    got.sort();
    assert_eq!(
        got,
        [
            ("eng-group".into(), Reason::GroupMemberNotInOrganization),
            ("root-group".into(), Reason::GroupMemberNotInOrganization)
        ]
    );
    // Warnings: the groups stay, without those users.
    assert!(o.problems.iter().all(|p| !p.is_error()));
    assert_eq!(o.accepted.groups, [0, 1]);
    assert!(message(&o, Reason::GroupMemberNotInOrganization).contains("left out"));
}

#[test]
fn removing_a_root_member_takes_them_out_of_what_depended_on_it() {
    let mut set = base();
    set.groups.push(group(
        "team-eng",
        "eng-group",
        Sub,
        "eng",
        vec![user("carol@x.io")],
    ));
    assert!(check(&set, now()).problems.is_empty());
    set.memberships.retain(|m| {
        m.spec.subject.email.as_deref() != Some("carol@x.io") || m.spec.organization_ref.kind == Sub
    });
    let o = check(&set, now());
    // carol's eng membership says why; the group stays, says it leaves her out (a warning),
    // and the store's copy leaves her out.
    assert_eq!(
        problems(&o),
        [
            ("eng-carol".into(), Reason::SubjectNotInRoot),
            ("eng-group".into(), Reason::GroupMemberNotInOrganization)
        ]
    );
    assert_eq!(o.accepted.groups, [0]);
    let d = suborg::rows::desired_from(&set, &o.accepted, now());
    assert_eq!(d.groups.len(), 1);
    assert!(d.groups[0].members.is_empty(), "{:?}", d.groups[0].members);
}

#[test]
fn removing_a_root_group_revokes_its_sub_organization_memberships() {
    let mut set = base();
    set.groups
        .push(group("platform", "admins", Root, "acme", vec![]));
    set.memberships.push(subject_in(
        "team-eng",
        "eng-admins",
        Sub,
        "eng",
        SubjectKind::Group,
        "admins",
        Some("platform"),
    ));
    assert!(check(&set, now()).problems.is_empty());
    set.groups.clear();
    let o = check(&set, now());
    // Named from another namespace: the answer does not tell a missing group from another
    // organization's.
    assert_eq!(
        problems(&o),
        [("eng-admins".into(), Reason::SubjectNotVisible)]
    );
    assert!(
        o.problems[0]
            .message
            .contains("there is no such Group, or it belongs to another organization"),
        "{}",
        o.problems[0].message
    );
}

#[test]
fn nesting_is_for_a_sub_organization_own_groups() {
    let mut set = base();
    set.groups
        .push(group("platform", "root-a", Root, "acme", vec![]));
    set.groups.push(group(
        "platform",
        "root-b",
        Root,
        "acme",
        vec![nested("root-a")],
    ));
    set.groups
        .push(group("team-ops", "ops-group", Sub, "ops", vec![]));
    let mut crossing = nested("ops-group");
    crossing.namespace = Some("team-ops".into());
    set.groups.push(group(
        "team-eng",
        "leads",
        Sub,
        "eng",
        vec![user("carol@x.io")],
    ));
    set.groups.push(group(
        "team-eng",
        "all",
        Sub,
        "eng",
        vec![nested("leads"), crossing],
    ));
    let o = check(&set, now());
    let mut got = problems(&o);
    got.sort();
    assert_eq!(
        got,
        [
            ("all".into(), Reason::NestedGroupOutsideOrganization),
            ("root-b".into(), Reason::NestedGroupNotAllowed)
        ]
    );
    // In another namespace: whose the group is goes unsaid.
    let m = message(&o, Reason::NestedGroupOutsideOrganization);
    assert!(
        m.contains("is not one Group \"all\" of SubOrganization \"eng\" can use"),
        "{m}"
    );
    assert!(!m.contains("\"ops\""), "{m}");
    // all stays, without what it may not nest; root-b nests at all and is refused.
    assert_eq!(o.accepted.groups, [0, 2, 3, 4]);
}

/// A group that names another organization's group, from another namespace or its own,
/// stays, without it: its rows nest only its own organization's groups, and the store takes
/// them. Whoever may create a group in a namespace two organizations share cannot take away
/// the access others have through this one by making it name theirs.
#[test]
fn a_group_naming_another_organizations_group_is_stored_without_it() {
    use suborg::store::{DesiredGroupMember, Store};
    let mut set = base();
    set.groups
        .push(group("team-ops", "ops-group", Sub, "ops", vec![]));
    set.groups
        .push(group("platform", "root-group", Root, "acme", vec![]));
    // ops may hold groups in team-eng too (a namespace both admit).
    set.sub_organizations[1].spec.member_namespaces = Some(MemberNamespaces {
        from: NamespacesFrom::All,
        selector: None,
    });
    set.groups
        .push(group("team-eng", "ops-here", Sub, "ops", vec![]));
    let elsewhere = |ns: &str, name: &str| GroupMember {
        namespace: Some(ns.into()),
        ..nested(name)
    };
    set.groups.push(group(
        "team-eng",
        "all",
        Sub,
        "eng",
        vec![
            user("carol@x.io"),
            elsewhere("team-ops", "ops-group"),
            elsewhere("platform", "root-group"),
            nested("ops-here"),
        ],
    ));
    let o = check(&set, now());
    assert_eq!(o.accepted.groups, [0, 1, 2, 3], "all stays");
    let on_all = problems_on(&o, "all");
    assert_eq!(on_all.len(), 3, "{on_all:#?}");
    // In its own namespace, whose the group is can be said.
    assert!(
        on_all[2]
            .message
            .contains("belongs to SubOrganization \"ops\""),
        "{}",
        on_all[2].message
    );
    assert!(
        on_all
            .iter()
            .all(|p| p.reason == Reason::NestedGroupOutsideOrganization)
    );
    let d = suborg::rows::desired_from(&set, &o.accepted, now());
    let all = d
        .groups
        .iter()
        .find(|g| g.group.source_name == "all")
        .unwrap();
    assert_eq!(all.members, [DesiredGroupMember::User("carol@x.io".into())]);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let dsn = format!("sqlite://{}", dir.path().join("store.db").display());
    rt.block_on(async {
        let store = suborg::store::SqlStore::open(&dsn).await.unwrap();
        store
            .apply(&d, suborg::store::ApplyOptions::default())
            .await
            .expect("the store takes the group");
        store.close().await;
    });
}

/// A nested group refused on its own (here: its namespace lost its delegation) is left out of
/// the group that lists it, like a user whose membership is refused: the outer group, and
/// everyone's access through it, stays. Named from another namespace, it gets the one answer
/// for what that namespace cannot use (an error on the outer group, which stays all the same).
#[test]
fn a_refused_nested_group_is_left_out_and_the_group_stays() {
    let mut set = base();
    set.namespaces
        .insert("team-eng-2".into(), Default::default());
    set.groups.push(group(
        "team-eng-2",
        "leads",
        Sub,
        "eng",
        vec![user("carol@x.io")],
    ));
    let mut leads = nested("leads");
    leads.namespace = Some("team-eng-2".into());
    set.groups.push(group(
        "team-eng",
        "all",
        Sub,
        "eng",
        vec![user("carol@x.io"), leads],
    ));
    let o = check(&set, now());
    let mut got = problems(&o);
    got.sort();
    assert_eq!(
        got,
        [
            ("all".into(), Reason::NestedGroupOutsideOrganization),
            ("leads".into(), Reason::NamespaceNotAllowed)
        ]
    );
    assert_eq!(o.accepted.groups, [1], "all stays, leads is refused");
    let told = |o: &Outcome| {
        let p = problems_on(o, "all");
        assert_eq!(p.len(), 1, "{p:#?}");
        (p[0].severity, p[0].field.clone(), p[0].message.clone())
    };
    let refused = told(&o);
    assert_eq!(refused.0, Severity::Error);
    assert_eq!(refused.1, "spec.members[1]");
    assert!(
        refused.2.contains(
            "\"team-eng-2/leads\" is not one Group \"all\" of SubOrganization \"eng\" can use"
        ),
        "{}",
        refused.2
    );

    // Deleted: the same answer, word for word, and all stays.
    set.groups.remove(0);
    let o = check(&set, now());
    assert_eq!(told(&o), refused);
    assert_eq!(o.accepted.groups, [0], "all stays");

    // In the group's own namespace, a missing group is only left out, with a warning.
    set.groups[0].spec.members[1].namespace = None;
    let o = check(&set, now());
    assert_eq!(problems(&o), [("all".into(), Reason::SubjectNotFound)]);
    assert!(o.problems.iter().all(|p| !p.is_error()), "{:?}", o.problems);
    assert_eq!(o.accepted.groups, [0], "all stays");
}

#[test]
fn cycles_are_named_and_self_membership_refused() {
    let mut set = base();
    set.groups
        .push(group("team-eng", "a", Sub, "eng", vec![nested("b")]));
    set.groups
        .push(group("team-eng", "b", Sub, "eng", vec![nested("c")]));
    set.groups
        .push(group("team-eng", "c", Sub, "eng", vec![nested("a")]));
    set.groups
        .push(group("team-eng", "outer", Sub, "eng", vec![nested("a")]));
    set.groups
        .push(group("team-eng", "me", Sub, "eng", vec![nested("me")]));
    set.groups
        .push(group("team-eng", "fine", Sub, "eng", vec![]));
    let o = check(&set, now());
    let cycles: Vec<&str> = o
        .problems
        .iter()
        .filter(|p| p.reason == Reason::GroupCycle)
        .map(|p| p.object.as_ref().unwrap().name.as_str())
        .collect();
    assert_eq!(cycles.len(), 4, "{:#?}", o.problems);
    for g in ["a", "b", "c", "me"] {
        assert!(cycles.contains(&g), "{g} not reported: {cycles:?}");
    }
    let m = message(&o, Reason::GroupCycle);
    assert!(m.contains("a → b → c → a") || m.contains("me"), "{m}");
    // A group containing a cycle is held back quietly; an unrelated one is accepted.
    assert!(
        !o.problems
            .iter()
            .any(|p| p.object.as_ref().unwrap().name == "outer")
    );
    assert_eq!(o.accepted.groups, [5]);
}

#[test]
fn a_ten_thousand_deep_chain_is_resolved_without_recursion() {
    let mut set = base();
    let n = 10_000;
    for i in 0..n {
        let members = if i + 1 < n {
            vec![nested(&format!("g{}", i + 1))]
        } else {
            vec![user("carol@x.io")]
        };
        set.groups
            .push(group("team-eng", &format!("g{i}"), Sub, "eng", members));
    }
    let o = check(&set, now());
    assert!(
        o.problems.is_empty(),
        "{:?}",
        &o.problems[..o.problems.len().min(3)]
    );
    assert_eq!(o.accepted.groups.len(), n);
    // Close the chain into a cycle: every group is on it, and it is named once per group.
    set.groups[n - 1].spec.members.push(nested("g0"));
    let o = check(&set, now());
    assert_eq!(o.problems.len(), n);
    assert!(o.problems.iter().all(|p| p.reason == Reason::GroupCycle));
    assert!(
        o.problems[0].message.contains("(10000 groups)"),
        "{}",
        o.problems[0].message
    );
    assert!(o.problems[0].message.len() < 300);
    assert!(o.accepted.groups.is_empty());
}

#[test]
fn duplicate_members_and_foreign_namespaces_are_refused() {
    let mut set = base();
    set.groups.push(group(
        "platform",
        "twice",
        Root,
        "acme",
        vec![user("alice@x.io"), user("Alice@x.io")],
    ));
    set.groups
        .push(group("team-ops", "misplaced", Root, "acme", vec![]));
    set.identities
        .push(identity("team-ops", "bot", Root, "acme"));
    let o = check(&set, now());
    let mut got = problems(&o);
    got.sort();
    assert_eq!(
        got,
        [
            ("bot".into(), Reason::NamespaceNotAllowed),
            ("misplaced".into(), Reason::NamespaceNotAllowed),
            ("twice".into(), Reason::DuplicateGroupMember)
        ]
    );
}

#[test]
fn a_sub_organization_group_is_not_visible_at_the_root() {
    let mut set = base();
    set.groups
        .push(group("team-eng", "oncall", Sub, "eng", vec![]));
    set.memberships.push(subject_in(
        "platform",
        "up",
        Root,
        "acme",
        SubjectKind::Group,
        "oncall",
        Some("team-eng"),
    ));
    let o = check(&set, now());
    assert_eq!(problems(&o), [("up".into(), Reason::SubjectNotVisible)]);
    // Named from another namespace: whose it is goes unsaid.
    let m = message(&o, Reason::SubjectNotVisible);
    assert!(
        m.contains("is not one root Organization \"acme\" can use"),
        "{m}"
    );
    assert!(!m.contains("\"eng\""), "{m}");
    // In the membership's own namespace (one eng admits too), it says whose it is.
    set.sub_organizations[0].spec.member_namespaces = Some(MemberNamespaces {
        from: NamespacesFrom::All,
        selector: None,
    });
    set.groups[0].metadata.namespace = Some("platform".into());
    set.memberships.last_mut().unwrap().spec.subject.namespace = None;
    let o = check(&set, now());
    assert_eq!(problems(&o), [("up".into(), Reason::SubjectNotVisible)]);
    assert!(message(&o, Reason::SubjectNotVisible).contains("visible there alone"));
}

/// A group or identity given a membership in a root: named from another namespace, one answer
/// whether it is missing or a sub-organization's (the README's "What another namespace holds
/// is not told"); named in the membership's own namespace, a missing one is missing, never "a
/// root one", and another root's is said to be another root's.
#[test]
fn a_root_membership_of_a_group_or_identity_tells_nothing_of_another_namespace() {
    let mut set = base();
    set.identities
        .push(identity("team-eng", "deployer", Sub, "eng"));
    let at_acme = |name: &str, kind, subject: &str, namespace: Option<&str>| {
        subject_in("platform", name, Root, "acme", kind, subject, namespace)
    };
    set.memberships.push(at_acme(
        "theirs",
        SubjectKind::MachineIdentity,
        "deployer",
        Some("team-eng"),
    ));
    set.memberships.push(at_acme(
        "missing",
        SubjectKind::MachineIdentity,
        "nobody",
        Some("team-eng"),
    ));
    let o = check(&set, now());
    let (theirs, missing) = (said(&o, "theirs"), said(&o, "missing"));
    assert_eq!(theirs.0, Reason::SubjectNotVisible);
    assert_eq!(
        (
            theirs.0,
            theirs.1.as_str(),
            theirs.2.replace("deployer", "nobody")
        ),
        (missing.0, missing.1.as_str(), missing.2.clone()),
        "the same answer, whether it exists or not"
    );
    assert!(
        theirs.2.contains(
            "MachineIdentity \"team-eng/deployer\" is not one root Organization \"acme\" can use"
        ),
        "{}",
        theirs.2
    );
    assert!(!theirs.2.contains("\"eng\""), "{}", theirs.2);

    // The root's own identity, named from another namespace the root admits: the same one
    // answer as for a missing one there, not that it exists and is the root's.
    let mut set = base();
    set.namespaces.insert(
        "platform-2".into(),
        [("suborg.io/organization".to_owned(), "acme".to_owned())].into(),
    );
    set.identities
        .push(identity("platform", "ci", Root, "acme"));
    for (name, subject) in [("own", "ci"), ("absent", "nobody")] {
        set.memberships.push(subject_in(
            "platform-2",
            name,
            Root,
            "acme",
            SubjectKind::MachineIdentity,
            subject,
            Some("platform"),
        ));
    }
    let o = check(&set, now());
    let said = |name: &str| {
        let (reason, field, message) = said(&o, name);
        (
            reason,
            field,
            message.replace("\"platform/ci\"", "\"platform/nobody\""),
        )
    };
    assert_eq!(
        said("own"),
        said("absent"),
        "the same answer, whether it exists or not"
    );
    assert_eq!(said("own").0, Reason::SubjectNotVisible);
    // A membership of the same missing identity in its own namespace holds no place that
    // the one from another namespace would be told about.
    set.memberships.push(subject_in(
        "platform",
        "absent-here",
        Root,
        "acme",
        SubjectKind::MachineIdentity,
        "nobody",
        None,
    ));
    let o = check(&set, now());
    let on_absent: Vec<_> = o
        .problems
        .iter()
        .filter(|p| p.object.as_ref().unwrap().name == "absent")
        .map(|p| (p.reason, p.message.clone()))
        .collect();
    assert_eq!(on_absent.len(), 1, "{on_absent:#?}");
    assert!(!on_absent[0].1.contains("absent-here"), "{on_absent:#?}");

    // In its own namespace: a missing group is missing.
    let mut set = base();
    set.memberships
        .push(at_acme("ghost", SubjectKind::Group, "nobody", None));
    let o = check(&set, now());
    assert_eq!(problems(&o), [("ghost".into(), Reason::SubjectNotFound)]);
    assert_eq!(o.problems[0].field, "spec.subject.name");
    let m = &o.problems[0].message;
    assert!(
        m.contains("Group \"platform/nobody\" does not exist") && !m.contains("already there"),
        "{m}"
    );
    // One that exists but was refused on its own (by the schema, say) is not missing: the
    // membership waits for it, and says so.
    set.rejected.insert(suborg::domain::ObjectKey::namespaced(
        "Group", "platform", "nobody",
    ));
    let o = check(&set, now());
    assert!(o.problems.is_empty(), "{:#?}", o.problems);
    let waits = suborg::domain::waiting::waiting(&set, &o);
    let ghost = suborg::domain::ObjectKey::namespaced("OrgMembership", "platform", "ghost");
    assert_eq!(
        waits.get(&ghost).map(String::as_str),
        Some("waits for Group platform/nobody, which is not ready: see its status")
    );

    // Another root's group, in the membership's own namespace: it is that root's.
    let mut set = base();
    set.organizations.push(org("globex"));
    set.organizations[1].spec.member_namespaces = Some(MemberNamespaces {
        from: NamespacesFrom::All,
        selector: None,
    });
    set.groups
        .push(group("platform", "reviewers", Root, "globex", vec![]));
    set.memberships
        .push(at_acme("borrowed", SubjectKind::Group, "reviewers", None));
    let o = check(&set, now());
    assert_eq!(
        problems(&o),
        [("borrowed".into(), Reason::SubjectNotVisible)]
    );
    let m = message(&o, Reason::SubjectNotVisible);
    assert!(
        m.contains("belongs to root Organization \"globex\"") && !m.contains("already there"),
        "{m}"
    );
}

#[test]
fn a_member_listed_twice_is_reported_and_the_group_stays_with_them_once() {
    let mut set = base();
    set.groups.push(group(
        "platform",
        "admins",
        Root,
        "acme",
        vec![user("alice@x.io"), user("Alice@X.io")],
    ));
    let o = check(&set, now());
    assert_eq!(
        problems(&o),
        [("admins".into(), Reason::DuplicateGroupMember)]
    );
    assert_eq!(o.accepted.groups, [0], "the group stays");
    let d = suborg::rows::desired_from(&set, &o.accepted, now());
    assert_eq!(d.groups[0].members.len(), 1, "{:?}", d.groups[0].members);
}

#[test]
fn an_admin_by_name_only_is_left_out_of_a_group_once_they_leave_the_root() {
    let mut set = base();
    // bob is in eng as its admin only (no OrgMembership there).
    set.groups.push(group(
        "team-eng",
        "leads",
        Sub,
        "eng",
        vec![user("bob@x.io")],
    ));
    assert!(check(&set, now()).problems.is_empty());
    set.memberships
        .retain(|m| m.metadata.name.as_deref() != Some("acme-bob"));
    let o = check(&set, now());
    let on_group = problems_on(&o, "leads");
    assert_eq!(on_group.len(), 1, "{:#?}", o.problems);
    assert_eq!(on_group[0].reason, Reason::GroupMemberNotInOrganization);
    assert!(
        on_group[0]
            .message
            .contains("named an admin of SubOrganization \"eng\""),
        "{}",
        on_group[0].message
    );
    let d = suborg::rows::desired_from(&set, &o.accepted, now());
    assert!(d.groups[0].members.is_empty());
}

#[test]
fn a_user_whose_sub_organization_membership_is_held_back_is_named_as_such_by_a_group() {
    let mut set = base();
    set.groups.push(group(
        "team-eng",
        "backend",
        Sub,
        "eng",
        vec![user("carol@x.io")],
    ));
    assert!(check(&set, now()).problems.is_empty());
    // carol's root membership is refused (its namespace may not speak for acme): her eng
    // membership is held back, and the group says which membership it waits for.
    let root_carol = set
        .memberships
        .iter_mut()
        .find(|m| m.metadata.name.as_deref() == Some("acme-carol"))
        .unwrap();
    root_carol.metadata.namespace = Some("team-ops".into());
    let o = check(&set, now());
    let on_group = problems_on(&o, "backend");
    assert_eq!(on_group.len(), 1, "{:#?}", o.problems);
    assert!(
        on_group[0]
            .message
            .contains("membership of SubOrganization \"eng\" is not accepted"),
        "{}",
        on_group[0].message
    );
}
