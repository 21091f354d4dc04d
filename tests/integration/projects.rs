//! Projects: scoped to their organization, members only from what it can see, and app
//! connections, gateways and relays never shared across organizations.

use k8s_openapi::jiff::Timestamp;
use suborg::api::*;
use suborg::domain::Reason;
use suborg::domain::check;
use suborg::domain::model::{ObjectSet, Outcome};
use suborg::rows::desired_from;
use suborg::store::{ProjectSubject, Store};

use crate::fixtures::*;

use OrganizationKind::{Organization as Root, SubOrganization as Sub};

fn now() -> Timestamp {
    "2026-06-01T12:00:00Z".parse().unwrap()
}

/// acme (members alice, bob, carol, dave), sub-organizations eng (admin bob; carol added) and
/// ops (admin alice); a root group `admins` and identity `ci`, both added to eng; eng's own
/// group `oncall`; a project per organization.
fn base() -> ObjectSet {
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
            root_member("platform", "acme", "dave@x.io"),
            sub_member("team-eng", "eng", "carol@x.io"),
            subject_in(
                "team-eng",
                "eng-admins",
                Sub,
                "eng",
                SubjectKind::Group,
                "admins",
                Some("platform"),
            ),
            subject_in(
                "team-eng",
                "eng-ci",
                Sub,
                "eng",
                SubjectKind::MachineIdentity,
                "ci",
                Some("platform"),
            ),
        ],
        groups: vec![
            group("platform", "admins", Root, "acme", vec![user("alice@x.io")]),
            group("team-eng", "oncall", Sub, "eng", vec![user("carol@x.io")]),
            group("team-ops", "ops-team", Sub, "ops", vec![]),
        ],
        identities: vec![
            identity("platform", "ci", Root, "acme"),
            identity("team-ops", "ops-bot", Sub, "ops"),
        ],
        projects: vec![
            project("platform", "billing", Root, "acme"),
            project("team-eng", "api", Sub, "eng"),
            project("team-ops", "runbooks", Sub, "ops"),
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

fn message(o: &Outcome, reason: Reason) -> String {
    o.problems
        .iter()
        .find(|p| p.reason == reason)
        .unwrap_or_else(|| panic!("no {reason}: {:#?}", o.problems))
        .message
        .clone()
}

#[test]
fn each_organization_adds_what_it_can_see() {
    let mut set = base();
    set.project_memberships = vec![
        // Root project: any root member, the root's own group and identity.
        project_user("platform", "billing-dave", "billing", "dave@x.io"),
        project_subject(
            "platform",
            "billing-admins",
            "billing",
            SubjectKind::Group,
            "admins",
            None,
        ),
        project_subject(
            "platform",
            "billing-ci",
            "billing",
            SubjectKind::MachineIdentity,
            "ci",
            None,
        ),
        // Sub project: a member added there, its named admin, its own group, and the root's
        // group and identity once added.
        project_user("team-eng", "api-carol", "api", "carol@x.io"),
        project_user("team-eng", "api-bob", "api", "bob@x.io"),
        project_subject(
            "team-eng",
            "api-oncall",
            "api",
            SubjectKind::Group,
            "oncall",
            None,
        ),
        project_subject(
            "team-eng",
            "api-admins",
            "api",
            SubjectKind::Group,
            "admins",
            Some("platform"),
        ),
        project_subject(
            "team-eng",
            "api-ci",
            "api",
            SubjectKind::MachineIdentity,
            "ci",
            Some("platform"),
        ),
        // ops' own identity in ops' project.
        project_subject(
            "team-ops",
            "runbooks-bot",
            "runbooks",
            SubjectKind::MachineIdentity,
            "ops-bot",
            None,
        ),
    ];
    let o = check(&set, now());
    assert!(o.problems.is_empty(), "{:#?}", o.problems);
    assert_eq!(o.accepted.projects, [0, 1, 2]);
    assert_eq!(o.accepted.project_memberships, (0..9).collect::<Vec<_>>());

    let d = desired_from(&set, &o.accepted, now());
    assert_eq!(d.projects.len(), 3);
    let subjects: Vec<&ProjectSubject> = d.project_memberships.iter().map(|m| &m.subject).collect();
    // The root's group in eng's project is the shared one (added to eng); eng's own is its own.
    assert!(matches!(subjects[1], ProjectSubject::Own("Group", _)));
    assert!(matches!(subjects[5], ProjectSubject::Own("Group", _)));
    assert!(matches!(subjects[6], ProjectSubject::Shared("Group", _)));
    assert!(matches!(
        subjects[7],
        ProjectSubject::Shared("MachineIdentity", _)
    ));
}

#[test]
fn a_sub_organization_project_sees_only_users_added_to_it() {
    let mut set = base();
    // dave is a root member but was never added to eng.
    set.project_memberships = vec![project_user("team-eng", "api-dave", "api", "dave@x.io")];
    let o = check(&set, now());
    assert_eq!(
        problems(&o),
        [("api-dave".into(), Reason::SubjectNotInOrganization)]
    );
    let m = message(&o, Reason::SubjectNotInOrganization);
    assert!(
        m.contains("\"dave@x.io\" has not been added to SubOrganization \"eng\"")
            && m.contains("must be added to the sub-organization")
            && m.contains("Project \"team-eng/api\""),
        "{m}"
    );
    assert!(o.accepted.project_memberships.is_empty());
}

/// Rule 9 for a sub-organization's admin: bob is in eng through its `spec.admins`, with no
/// OrgMembership there. When he leaves the root, his project membership in eng says that the
/// root membership is missing, as the group that lists him does, not that he should be added to
/// eng (an OrgMembership there would be refused as well).
#[test]
fn an_admin_who_left_the_root_is_told_the_root_membership_is_missing() {
    let mut set = base();
    set.project_memberships = vec![project_user("team-eng", "api-bob", "api", "bob@x.io")];
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
    assert_eq!(
        problems(&o),
        [
            ("eng".into(), Reason::AdminNotInRoot),
            ("leads".into(), Reason::GroupMemberNotInOrganization),
            ("api-bob".into(), Reason::SubjectNotInOrganization),
        ]
    );
    let p = o
        .problems
        .iter()
        .find(|p| p.reason == Reason::SubjectNotInOrganization)
        .unwrap();
    assert_eq!(p.field, "spec.subject.email");
    assert!(
        p.message.contains(
            "user \"bob@x.io\" is named an admin of SubOrganization \"eng\" (its spec.admins) but is not a member of root Organization \"acme\""
        ) && p.message.contains("add an OrgMembership for them in \"acme\"")
            && p.message.contains("Project \"team-eng/api\""),
        "{}",
        p.message
    );
    assert!(
        !p.message.contains("has not been added"),
        "an OrgMembership in eng is not the fix: {}",
        p.message
    );
    assert!(o.accepted.project_memberships.is_empty());
}

#[test]
fn a_root_project_adds_root_members_or_invites_new_users() {
    let mut set = base();
    set.project_memberships = vec![project_user(
        "platform",
        "billing-erin",
        "billing",
        "erin@x.io",
    )];
    let o = check(&set, now());
    assert_eq!(
        problems(&o),
        [("billing-erin".into(), Reason::SubjectNotInOrganization)]
    );
    assert!(message(&o, Reason::SubjectNotInOrganization).contains("set spec.invite"));

    // The invite provisions her at the root: a root membership with the invite's role.
    set.project_memberships[0].spec.invite = Some(ProjectInvite {
        organization_role: "member".into(),
    });
    let o = check(&set, now());
    assert!(o.problems.is_empty(), "{:#?}", o.problems);
    let d = desired_from(&set, &o.accepted, now());
    let invited: Vec<_> = d
        .memberships
        .iter()
        .filter(|m| m.email == "erin@x.io")
        .collect();
    assert_eq!(invited.len(), 1);
    assert!(invited[0].source_uid.contains("#invite:erin@x.io"));
    assert!(invited[0].roles.contains("\"member\""));

    // A second invite of the same user provisions her once; an OrgMembership makes it moot.
    let mut again = project_user("platform", "billing-erin-2", "billing", "Erin@X.io");
    again.spec.invite = set.project_memberships[0].spec.invite.clone();
    set.projects
        .push(project("platform", "payroll", Root, "acme"));
    again.spec.project_ref = local("payroll");
    set.project_memberships.push(again);
    let o = check(&set, now());
    assert!(o.problems.is_empty(), "{:#?}", o.problems);
    let d = desired_from(&set, &o.accepted, now());
    assert_eq!(
        d.memberships
            .iter()
            .filter(|m| m.email == "erin@x.io")
            .count(),
        1
    );
    set.memberships
        .push(root_member("platform", "acme", "erin@x.io"));
    let o = check(&set, now());
    let d = desired_from(&set, &o.accepted, now());
    let erin: Vec<_> = d
        .memberships
        .iter()
        .filter(|m| m.email == "erin@x.io")
        .collect();
    assert_eq!(erin.len(), 1);
    assert!(!erin[0].source_uid.contains("#invite:"));
}

/// The seed: a user provisioned at the root through a project invite is a user of the root,
/// and can be added to sub-organizations and root groups, and named an admin, like any other.
#[test]
fn an_invited_user_is_a_root_user_everywhere() {
    let mut set = base();
    let mut invite = project_user("platform", "billing-erin", "billing", "erin@x.io");
    invite.spec.invite = Some(ProjectInvite {
        organization_role: "member".into(),
    });
    set.project_memberships = vec![invite];
    set.memberships
        .push(sub_member("team-eng", "eng", "erin@x.io"));
    set.groups[0].spec.members.push(user("erin@x.io"));
    set.sub_organizations
        .push(suborg("sales", "acme", &["erin@x.io"]));
    let o = check(&set, now());
    assert!(o.problems.is_empty(), "{:#?}", o.problems);
    assert_eq!(o.accepted.sub_organizations.len(), 3);

    // The store takes it: her sub-organization rows rest on the root membership the invite
    // made, and she is in the root group.
    let d = desired_from(&set, &o.accepted, now());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let dsn = format!("sqlite://{}", dir.path().join("invite.db").display());
    let routes = rt.block_on(async {
        let store = suborg::store::SqlStore::open(&dsn).await.unwrap();
        store
            .apply(&d, suborg::store::ApplyOptions::default())
            .await
            .expect("the store takes an invited user's sub-organization memberships");
        let routes = store.access("erin@x.io").await.unwrap().unwrap_or_default();
        store.close().await;
        routes
    });
    let orgs: Vec<&str> = routes.iter().map(|e| e.organization.as_str()).collect();
    for org in ["acme", "acme/eng", "acme/sales"] {
        assert!(orgs.contains(&org), "erin reaches {org}: {routes:?}");
    }
    assert!(
        routes.iter().any(|e| e.via.contains("platform/admins")),
        "erin is in the root group: {routes:?}"
    );

    // Without the invite she is nobody's: each place that needed her says so.
    set.project_memberships[0].spec.invite = None;
    let o = check(&set, now());
    let reasons: Vec<Reason> = o.problems.iter().map(|p| p.reason).collect();
    for r in [
        Reason::SubjectNotInOrganization,
        Reason::SubjectNotInRoot,
        Reason::AdminNotInRoot,
        Reason::GroupMemberNotInOrganization,
    ] {
        assert!(reasons.contains(&r), "{r:?} missing: {reasons:?}");
    }

    // An invite that is refused (a sub-organization project) provisions nobody.
    let mut set = base();
    let mut invite = project_user("team-eng", "api-erin", "api", "erin@x.io");
    invite.spec.invite = Some(ProjectInvite {
        organization_role: "member".into(),
    });
    set.project_memberships = vec![invite];
    set.memberships
        .push(sub_member("team-eng", "eng", "erin@x.io"));
    let o = check(&set, now());
    let reasons: Vec<Reason> = o.problems.iter().map(|p| p.reason).collect();
    assert!(reasons.contains(&Reason::SubjectNotInRoot), "{reasons:?}");
}

#[test]
fn invites_happen_at_the_root_and_respect_its_email_domains() {
    let mut set = base();
    let mut m = project_user("team-eng", "api-erin", "api", "erin@x.io");
    m.spec.invite = Some(ProjectInvite {
        organization_role: "member".into(),
    });
    set.project_memberships = vec![m];
    let o = check(&set, now());
    let reasons: Vec<Reason> = o.problems.iter().map(|p| p.reason).collect();
    assert!(reasons.contains(&Reason::InviteOutsideRoot), "{reasons:?}");
    assert!(message(&o, Reason::InviteOutsideRoot).contains("users are provisioned at the root"));

    let mut set = base();
    set.organizations[0].spec.authentication = Some(
        serde_json::from_value(serde_json::json!({
            "allowedEmailDomains": ["x.io"]
        }))
        .unwrap(),
    );
    let mut m = project_user("platform", "billing-eve", "billing", "eve@evil.example");
    m.spec.invite = Some(ProjectInvite {
        organization_role: "member".into(),
    });
    set.project_memberships = vec![m];
    let o = check(&set, now());
    assert_eq!(
        problems(&o),
        [("billing-eve".into(), Reason::EmailDomainNotAllowed)]
    );
}

#[test]
fn groups_and_identities_must_be_visible_in_the_project_organization() {
    let mut set = base();
    set.groups
        .push(group("platform", "auditors", Root, "acme", vec![]));
    set.project_memberships = vec![
        // A root group never added to eng.
        project_subject(
            "team-eng",
            "api-auditors",
            "api",
            SubjectKind::Group,
            "auditors",
            Some("platform"),
        ),
        // A sibling's group and identity.
        project_subject(
            "team-eng",
            "api-ops",
            "api",
            SubjectKind::Group,
            "ops-team",
            Some("team-ops"),
        ),
        project_subject(
            "team-eng",
            "api-ops-bot",
            "api",
            SubjectKind::MachineIdentity,
            "ops-bot",
            Some("team-ops"),
        ),
        // A sub-organization's group in a root project.
        project_subject(
            "platform",
            "billing-oncall",
            "billing",
            SubjectKind::Group,
            "oncall",
            Some("team-eng"),
        ),
        // Nothing by that name.
        project_subject(
            "platform",
            "billing-ghost",
            "billing",
            SubjectKind::Group,
            "ghost",
            None,
        ),
    ];
    let o = check(&set, now());
    assert_eq!(
        problems(&o),
        // By namespace and name: platform's, then team-eng's.
        [
            ("billing-ghost".into(), Reason::SubjectNotFound),
            ("billing-oncall".into(), Reason::SubjectNotVisible),
            ("api-auditors".into(), Reason::SubjectNotInOrganization),
            ("api-ops".into(), Reason::SubjectNotVisible),
            ("api-ops-bot".into(), Reason::SubjectNotVisible),
        ]
    );
    assert!(
        message(&o, Reason::SubjectNotInOrganization)
            .contains("has not been added to SubOrganization \"eng\"")
    );
    assert!(o.accepted.project_memberships.is_empty());
}

/// A group or identity in the project membership's own namespace that exists but was refused
/// before the rules ran (by the schema offline; unreadable, or left out for a store conflict,
/// in a cluster) is not missing: the membership waits for it, and says so, as a sub-organization
/// membership naming it does.
#[test]
fn a_project_member_refused_on_its_own_is_waited_for_not_said_missing() {
    let mut set = base();
    set.project_memberships = vec![project_subject(
        "platform",
        "billing-broken",
        "billing",
        SubjectKind::Group,
        "broken",
        None,
    )];
    let o = check(&set, now());
    assert_eq!(
        problems(&o),
        [("billing-broken".into(), Reason::SubjectNotFound)]
    );
    set.rejected.insert(suborg::domain::ObjectKey::namespaced(
        "Group", "platform", "broken",
    ));
    let o = check(&set, now());
    assert!(o.problems.is_empty(), "{:#?}", o.problems);
    assert!(o.accepted.project_memberships.is_empty());
    let waits = suborg::domain::waiting::waiting(&set, &o);
    let key =
        suborg::domain::ObjectKey::namespaced("ProjectMembership", "platform", "billing-broken");
    assert_eq!(
        waits.get(&key).map(String::as_str),
        Some("waits for Group platform/broken, which is not ready: see its status")
    );
}

/// The store rows follow: a group lists no user whose membership of its organization has no
/// role in effect, so no access flows to them through it; the membership row itself stays.
#[test]
fn a_group_stores_no_user_whose_membership_has_no_role_in_effect() {
    use suborg::store::DesiredGroupMember;
    let users = |set: &ObjectSet, group: &str| -> Vec<String> {
        let o = check(set, now());
        let d = desired_from(set, &o.accepted, now());
        d.groups
            .iter()
            .find(|g| g.group.source_name == group)
            .unwrap_or_else(|| panic!("no group {group}"))
            .members
            .iter()
            .filter_map(|m| match m {
                DesiredGroupMember::User(email) => Some(email.clone()),
                DesiredGroupMember::Group(_) => None,
            })
            .collect()
    };
    let set = base();
    assert_eq!(users(&set, "admins"), ["alice@x.io"]);
    assert_eq!(users(&set, "oncall"), ["carol@x.io"]);
    // alice's root role has ended: out of the root's group.
    let mut s = set.clone();
    with_roles(&mut s, "acme-alice", ended());
    assert!(users(&s, "admins").is_empty());
    // carol's eng role has not started: out of eng's group, while her rows stay.
    let mut s = set.clone();
    with_roles(&mut s, "eng-carol", pending());
    assert!(users(&s, "oncall").is_empty());
    let o = check(&s, now());
    let d = desired_from(&s, &o.accepted, now());
    assert!(d.memberships.iter().any(|m| m.source_name == "eng-carol"));
}

/// carol in eng's project `api`, and acme's group `admins` there (added to eng).
fn carol_and_admins_in_api() -> Vec<ProjectMembership> {
    vec![
        project_user("team-eng", "api-carol", "api", "carol@x.io"),
        project_subject(
            "team-eng",
            "api-admins",
            "api",
            SubjectKind::Group,
            "admins",
            Some("platform"),
        ),
    ]
}

#[test]
fn removing_a_membership_revokes_the_project_access_that_depended_on_it() {
    let mut set = base();
    set.project_memberships = carol_and_admins_in_api();
    assert_eq!(check(&set, now()).accepted.project_memberships, [0, 1]);

    // carol leaves the root: her eng membership is rejected (it says why) and her project
    // membership is held back quietly, in the same check.
    let mut gone = set.clone();
    gone.memberships
        .retain(|m| m.metadata.name.as_deref() != Some("acme-carol"));
    let o = check(&gone, now());
    assert_eq!(
        problems(&o),
        [
            ("eng-carol".into(), Reason::SubjectNotInRoot),
            ("oncall".into(), Reason::GroupMemberNotInOrganization)
        ],
        "the sub-organization membership reports, and the group that lists her warns"
    );
    assert!(!o.problems[1].is_error());
    assert_eq!(o.accepted.project_memberships, [1]);

    // The root group is taken out of eng: the project membership through it goes too.
    let mut gone = set.clone();
    gone.memberships
        .retain(|m| m.metadata.name.as_deref() != Some("eng-admins"));
    let o = check(&gone, now());
    assert_eq!(
        problems(&o),
        [("api-admins".into(), Reason::SubjectNotInOrganization)]
    );
    assert_eq!(o.accepted.project_memberships, [0]);
}

/// Gives the membership `name` of `set` the roles `roles`.
fn with_roles(set: &mut ObjectSet, name: &str, roles: Vec<RoleBinding>) {
    let m = set
        .memberships
        .iter_mut()
        .find(|m| m.metadata.name.as_deref() == Some(name))
        .unwrap_or_else(|| panic!("no membership {name}"));
    m.spec.roles = roles;
}

/// A role that ended an hour before [`now`], and one that starts an hour after it.
fn ended() -> Vec<RoleBinding> {
    vec![temporary(
        "member",
        None,
        Some("2026-06-01T11:00:00Z"),
        None,
    )]
}

fn pending() -> Vec<RoleBinding> {
    vec![temporary(
        "member",
        Some("2026-06-01T13:00:00Z"),
        None,
        Some("1h"),
    )]
}

/// Whose roles, which roles, what is reported, the reason whose message says the role is not
/// in effect, and the project memberships still accepted.
type Case = (
    &'static str,
    Vec<RoleBinding>,
    Vec<(&'static str, Reason)>,
    Reason,
    [usize; 3],
);

/// Rule 7: a temporary role expires on time, and what it let in goes with it. A membership
/// with no role in effect (expired, or not started) stays, warned about, but grants nothing:
/// what builds on it is refused and says why, as when the membership is removed (rule 9).
#[test]
fn a_membership_with_no_role_in_effect_lets_nothing_in() {
    let mut set = base();
    set.project_memberships = carol_and_admins_in_api();
    set.project_memberships.extend([
        project_user("platform", "billing-dave", "billing", "dave@x.io"),
        project_user("team-eng", "api-bob", "api", "bob@x.io"),
    ]);
    assert_eq!(
        check(&set, now()).accepted.project_memberships,
        [0, 1, 2, 3]
    );

    use Reason::*;
    let cases: [Case; 5] = [
        // carol's root role has ended: her eng membership, and through it her place in
        // eng's group and project, go.
        (
            "acme-carol",
            ended(),
            vec![
                ("acme-carol", RoleExpired),
                ("eng-carol", SubjectNotInRoot),
                ("oncall", GroupMemberNotInOrganization),
            ],
            SubjectNotInRoot,
            [1, 2, 3],
        ),
        // Her eng role has not started yet: the same one level down.
        (
            "eng-carol",
            pending(),
            vec![
                ("oncall", GroupMemberNotInOrganization),
                ("api-carol", SubjectNotInOrganization),
            ],
            SubjectNotInOrganization,
            [1, 2, 3],
        ),
        // The root group's membership of eng has ended: the project access through it goes.
        (
            "eng-admins",
            ended(),
            vec![
                ("eng-admins", RoleExpired),
                ("api-admins", SubjectNotInOrganization),
            ],
            SubjectNotInOrganization,
            [0, 2, 3],
        ),
        // dave's root role has ended: the root's project lets him go too.
        (
            "acme-dave",
            ended(),
            vec![
                ("acme-dave", RoleExpired),
                ("billing-dave", SubjectNotInOrganization),
            ],
            SubjectNotInOrganization,
            [0, 1, 3],
        ),
        // bob, eng's admin by name, whose root role has not started: not its admin yet, nor
        // in its project.
        (
            "acme-bob",
            pending(),
            vec![
                ("eng", AdminNotInRoot),
                ("api-bob", SubjectNotInOrganization),
            ],
            AdminNotInRoot,
            [0, 1, 2],
        ),
    ];
    for (name, roles, reported, said, accepted) in cases {
        let mut s = set.clone();
        with_roles(&mut s, name, roles);
        let o = check(&s, now());
        let expected: Vec<(String, Reason)> =
            reported.iter().map(|(n, r)| (n.to_string(), *r)).collect();
        assert_eq!(problems(&o), expected, "{name}");
        let m = message(&o, said);
        assert!(m.contains("no role in effect"), "{name}: {m}");
        assert_eq!(o.accepted.project_memberships, accepted, "{name}");
    }
}

#[test]
fn connections_and_gateways_are_never_shared_across_organizations() {
    let mut set = base();
    set.connections = vec![
        connection("platform", "aws-root", Root, "acme"),
        connection("team-ops", "aws-ops", Sub, "ops"),
        connection("team-eng", "aws-eng", Sub, "eng"),
    ];
    set.relays = vec![relay("platform", "relay-root", Root, "acme")];
    set.gateways = vec![
        gateway(
            "platform",
            "gw-root",
            Root,
            "acme",
            Some(local("relay-root")),
        ),
        // eng's gateway through the root's relay: not its own.
        gateway(
            "team-eng",
            "gw-eng",
            Sub,
            "eng",
            Some(LocalObjectRef {
                name: "relay-root".into(),
                namespace: Some("platform".into()),
            }),
        ),
    ];
    let sibling = LocalObjectRef {
        name: "aws-ops".into(),
        namespace: Some("team-ops".into()),
    };
    let root = LocalObjectRef {
        name: "aws-root".into(),
        namespace: Some("platform".into()),
    };
    set.projects[1].spec.app_connections = vec![local("aws-eng"), sibling];
    set.projects[2].spec.app_connections = vec![local("aws-ops"), root];
    set.projects[0].spec.gateway_ref = Some(local("gw-root"));
    set.projects[0].spec.app_connections = vec![local("aws-root")];
    let o = check(&set, now());
    assert_eq!(
        problems(&o),
        [
            ("gw-eng".into(), Reason::ResourceNotInOrganization),
            ("api".into(), Reason::ResourceNotInOrganization),
            ("runbooks".into(), Reason::ResourceNotInOrganization),
        ]
    );
    let api = o
        .problems
        .iter()
        .find(|p| p.object.as_ref().unwrap().name == "api")
        .unwrap();
    assert_eq!(api.field, "spec.appConnections[1]");
    // Named in another namespace: whose it is goes unsaid.
    assert!(
        api.message.contains(
            "AppConnection \"team-ops/aws-ops\" is not one Project \"api\" of SubOrganization \"eng\" can use"
        ) && !api.message.contains("\"ops\""),
        "{}",
        api.message
    );
    let runbooks = o
        .problems
        .iter()
        .find(|p| p.object.as_ref().unwrap().name == "runbooks")
        .unwrap();
    assert!(
        runbooks
            .message
            .contains("never shared between organizations"),
        "{}",
        runbooks.message
    );
    // The projects stay, without what is not theirs: deleting or moving a connection must not
    // take the projects that use it out of the store.
    assert_eq!(o.accepted.projects, [0, 1, 2]);
    assert_eq!(o.accepted.gateways, [0]);
    assert_eq!(o.accepted.connections, [0, 1, 2]);
    let d = suborg::rows::desired_from(&set, &o.accepted, now());
    let uses = |name: &str| {
        let p = d.projects.iter().find(|p| p.name.ends_with(name)).unwrap();
        (p.connections.len(), p.gateway.is_some())
    };
    assert_eq!(uses("/billing"), (1, true));
    assert_eq!(uses("/api"), (1, false), "aws-eng, not the sibling's");
    assert_eq!(uses("/runbooks"), (1, false), "aws-ops, not the root's");
}

#[test]
fn references_that_go_nowhere_or_twice_are_named() {
    let mut set = base();
    set.connections = vec![connection("platform", "aws", Root, "acme")];
    set.projects[0].spec.app_connections = vec![local("aws"), local("aws")];
    set.projects[0].spec.gateway_ref = Some(local("missing-gw"));
    set.project_memberships = vec![project_user(
        "platform",
        "x",
        "no-such-project",
        "dave@x.io",
    )];
    let o = check(&set, now());
    assert_eq!(
        problems(&o),
        [
            ("billing".into(), Reason::DuplicateReference),
            ("billing".into(), Reason::ReferenceNotFound),
            ("x".into(), Reason::ReferenceNotFound),
        ]
    );
    assert!(
        o.problems[1]
            .message
            .contains("Gateway \"platform/missing-gw\" does not exist")
    );
    assert!(
        o.problems[2]
            .message
            .contains("Project \"platform/no-such-project\" does not exist")
    );
    // billing stays, using aws once and no gateway.
    assert!(o.accepted.projects.contains(&0));
    let d = suborg::rows::desired_from(&set, &o.accepted, now());
    let billing = d
        .projects
        .iter()
        .find(|p| p.name.ends_with("/billing"))
        .unwrap();
    assert_eq!(
        (billing.connections.len(), billing.gateway.as_ref()),
        (1, None)
    );
}

#[test]
fn a_project_using_a_connection_that_is_not_ready_says_so_and_stays() {
    let mut set = base();
    // aws is refused on its own: its organization does not exist.
    set.connections = vec![connection("platform", "aws", Root, "nowhere")];
    set.projects[0].spec.app_connections = vec![local("aws")];
    let o = check(&set, now());
    let on_billing = problems_on(&o, "billing");
    assert_eq!(on_billing.len(), 1, "{:#?}", o.problems);
    assert!(!on_billing[0].is_error());
    assert_eq!(on_billing[0].field, "spec.appConnections[0]");
    assert!(
        on_billing[0]
            .message
            .contains("\"platform/aws\" is not ready"),
        "{}",
        on_billing[0].message
    );
    assert!(o.accepted.projects.contains(&0));
}

#[test]
fn credentials_stay_in_the_object_namespace() {
    let mut set = base();
    let mut c = connection("team-eng", "github", Sub, "eng");
    c.spec.credentials_ref = Some(CredentialsRef {
        name: "stolen".into(),
        namespace: Some("platform".into()),
    });
    set.connections = vec![c];
    let mut same = connection("team-eng", "aws", Sub, "eng");
    same.spec.credentials_ref = Some(CredentialsRef {
        name: "aws".into(),
        namespace: Some("team-eng".into()),
    });
    set.connections.push(same);
    let o = check(&set, now());
    assert_eq!(
        problems(&o),
        [("github".into(), Reason::SecretOutsideNamespace)]
    );
    assert_eq!(o.problems[0].field, "spec.credentialsRef.namespace");
    assert!(o.problems[0].message.contains("Secret platform/stolen"));
    assert_eq!(o.accepted.connections, [1]);
    // The store gets the reference, never more.
    let d = desired_from(&set, &o.accepted, now());
    assert_eq!(
        d.resources[0].credentials.as_deref(),
        Some(r#"{"name":"aws","namespace":"team-eng"}"#)
    );
}

#[test]
fn project_slugs_are_unique_within_an_organization_only() {
    let mut set = base();
    let mut dup = project("platform", "billing-2", Root, "acme");
    dup.spec.slug = Some("billing".into());
    set.projects.push(dup);
    // The same slug in a sub-organization is another scope.
    let mut eng = project("team-eng", "eng-billing", Sub, "eng");
    eng.spec.slug = Some("billing".into());
    set.projects.push(eng);
    let o = check(&set, now());
    assert_eq!(problems(&o), [("billing-2".into(), Reason::SlugConflict)]);
    assert!(message(&o, Reason::SlugConflict).contains("unique within an organization"));
}

#[test]
fn project_memberships_follow_delegation_and_are_unique() {
    let mut set = base();
    set.namespaces
        .insert("elsewhere".into(), Default::default());
    let mut m = project_user("elsewhere", "sneaky", "api", "carol@x.io");
    m.spec.project_ref.namespace = Some("team-eng".into());
    set.project_memberships = vec![
        m,
        project_user("team-eng", "api-carol", "api", "carol@x.io"),
        project_user("team-eng", "api-carol-again", "api", "Carol@x.io"),
    ];
    let o = check(&set, now());
    assert_eq!(
        problems(&o),
        [
            ("sneaky".into(), Reason::ReferenceNotFound),
            ("api-carol-again".into(), Reason::DuplicateMembership),
        ]
    );
    // Named from a namespace eng does not admit, eng's project gets the answer a missing one
    // gets: which organization it belongs to goes unsaid.
    let m = message(&o, Reason::ReferenceNotFound);
    assert!(
        m.contains("Project \"team-eng/api\" is not one a ProjectMembership in namespace \"elsewhere\" can use"),
        "{m}"
    );
    assert!(!m.contains("\"eng\""), "{m}");
    // From a namespace eng admits, the project in another namespace is usable.
    set.namespaces.insert("team-eng-2".into(), labels("eng"));
    set.project_memberships[0].metadata.namespace = Some("team-eng-2".into());
    let o = check(&set, now());
    // Usable: it is refused only as carol's second membership of the project (api-carol
    // comes first, by namespace and name).
    let told: Vec<Reason> = problems_on(&o, "sneaky").iter().map(|p| p.reason).collect();
    assert_eq!(told, [Reason::DuplicateMembership], "{:#?}", o.problems);
}

mod properties {
    use std::collections::HashSet;

    use proptest::prelude::*;
    use suborg::api::*;
    use suborg::domain::check;
    use suborg::domain::slug::normalize_email;
    use suborg::rows::desired_from;
    use suborg::store::{ApplyOptions, SqlStore, Store};

    use super::{base, now};
    use crate::fixtures::*;

    /// Where a random object lives and whom it belongs to: (namespace, kind, organization).
    const OWNERS: [(&str, OrganizationKind, &str); 3] = [
        ("platform", OrganizationKind::Organization, "acme"),
        ("team-eng", OrganizationKind::SubOrganization, "eng"),
        ("team-ops", OrganizationKind::SubOrganization, "ops"),
    ];
    const USERS: [&str; 5] = [
        "alice@x.io",
        "bob@x.io",
        "carol@x.io",
        "dave@x.io",
        "erin@x.io",
    ];
    /// Groups and identities of the base set, by (kind, namespace, name), and one that is not.
    const SUBJECTS: [(SubjectKind, &str, &str); 6] = [
        (SubjectKind::Group, "platform", "admins"),
        (SubjectKind::Group, "team-eng", "oncall"),
        (SubjectKind::Group, "team-ops", "ops-team"),
        (SubjectKind::MachineIdentity, "platform", "ci"),
        (SubjectKind::MachineIdentity, "team-ops", "ops-bot"),
        (SubjectKind::Group, "platform", "ghost"),
    ];

    /// A project membership: namespace choice, project, subject (a user, or one of
    /// SUBJECTS), invite, which user.
    type Pm = (usize, usize, Option<usize>, bool, usize);
    /// A project: its owner, and the connections it uses.
    type P = (usize, Vec<usize>);

    fn projects_and_members() -> impl Strategy<Value = (Vec<P>, Vec<usize>, Vec<Pm>)> {
        (
            // Projects: owner, and which connections they use.
            prop::collection::vec((0..3usize, prop::collection::vec(0..3usize, 0..3)), 1..5),
            // Connections: owner of connection i.
            prop::collection::vec(0..3usize, 3..4),
            // Project memberships: namespace, project, subject (a user, or one of SUBJECTS),
            // invite, which user.
            prop::collection::vec(
                (
                    0..3usize,
                    0..5usize,
                    prop::option::of(0..6usize),
                    any::<bool>(),
                    0..5usize,
                ),
                0..16,
            ),
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

        /// Whatever the rules accept satisfies visibility, and the store (whose keys hold the
        /// same rules) takes it without a constraint error.
        #[test]
        fn accepted_projects_satisfy_visibility_and_the_store_agrees(
            (projects, connections, members) in projects_and_members()
        ) {
            let mut set = base();
            set.connections = connections
                .iter()
                .enumerate()
                .map(|(i, &o)| {
                    let (ns, kind, org) = OWNERS[o];
                    connection(ns, &format!("conn-{i}"), kind, org)
                })
                .collect();
            set.projects = projects
                .iter()
                .enumerate()
                .map(|(i, (o, uses))| {
                    let (ns, kind, org) = OWNERS[*o];
                    let mut p = project(ns, &format!("p{i}"), kind, org);
                    p.spec.app_connections = uses
                        .iter()
                        .map(|&c| LocalObjectRef {
                            name: format!("conn-{c}"),
                            namespace: Some(OWNERS[connections[c]].0.into()),
                        })
                        .collect::<HashSet<_>>()
                        .into_iter()
                        .collect();
                    p
                })
                .collect();
            set.project_memberships = members
                .iter()
                .enumerate()
                .map(|(i, &(other_ns, p, subject, invite, user))| {
                    // Mostly in the project's own namespace; now and then in another one.
                    let p = p % set.projects.len();
                    let own = set.projects[p].metadata.namespace.clone().unwrap();
                    let ns = if other_ns == 0 && user == 0 { "team-ops" } else { own.as_str() };
                    let mut m = match subject {
                        None => project_user(ns, &format!("pm{i}"), &format!("p{p}"), USERS[user]),
                        Some(s) => {
                            let (kind, sns, name) = SUBJECTS[s];
                            project_subject(ns, &format!("pm{i}"), &format!("p{p}"), kind, name, Some(sns))
                        }
                    };
                    m.spec.project_ref.namespace = Some(own.clone());
                    if invite && subject.is_none() {
                        m.spec.invite = Some(ProjectInvite { organization_role: "member".into() });
                    }
                    m
                })
                .collect();
            let o = check(&set, now());

            let accepted_projects: HashSet<String> = o.accepted.projects.iter().map(|&i| set.projects[i].metadata.name.clone().unwrap()).collect();
            // A project names another organization's connection only with an error saying so,
            // and its rows leave that connection out (the store, below, would refuse it).
            for &i in &o.accepted.projects {
                let p = &set.projects[i];
                for (j, r) in p.spec.app_connections.iter().enumerate() {
                    let c = set.connections.iter().find(|c| c.metadata.name.as_deref() == Some(r.name.as_str())).unwrap();
                    if c.spec.organization_ref != p.spec.organization_ref {
                        let field = format!("spec.appConnections[{j}]");
                        prop_assert!(o.problems.iter().any(|x| x.reason == suborg::domain::Reason::ResourceNotInOrganization && x.field == field && x.object.as_ref().is_some_and(|k| Some(&k.name) == p.metadata.name.as_ref())), "{:?} {}", p.metadata.name, field);
                    }
                }
            }
            // The root's users: its members, and whoever an accepted project invite brought in
            // (an invited user is a user of the root, so other root projects may add them too).
            let mut root_members: HashSet<String> = ["alice@x.io", "bob@x.io", "carol@x.io", "dave@x.io"].iter().map(|e| e.to_string()).collect();
            root_members.extend(o.accepted.project_memberships.iter().map(|&i| &set.project_memberships[i]).filter(|m| m.spec.invite.is_some()).filter_map(|m| m.spec.subject.email.as_deref()).map(normalize_email));
            let eng_members: HashSet<&str> = ["carol@x.io", "bob@x.io"].into();
            let ops_members: HashSet<&str> = ["alice@x.io"].into();
            for &i in &o.accepted.project_memberships {
                let m = &set.project_memberships[i];
                prop_assert!(accepted_projects.contains(&m.spec.project_ref.name));
                let p = set.projects.iter().find(|p| p.metadata.name.as_deref() == Some(m.spec.project_ref.name.as_str())).unwrap();
                let owner = &p.spec.organization_ref;
                let s = &m.spec.subject;
                match (s.kind, owner.kind) {
                    (SubjectKind::User, OrganizationKind::Organization) => {
                        let email = normalize_email(s.email.as_deref().unwrap());
                        prop_assert!(root_members.contains(&email) || m.spec.invite.is_some());
                    }
                    (SubjectKind::User, _) => {
                        prop_assert!(m.spec.invite.is_none(), "no invites in a sub-organization");
                        let email = s.email.as_deref().unwrap();
                        let members = if owner.name == "eng" { &eng_members } else { &ops_members };
                        prop_assert!(members.contains(email), "{} not in {}", email, owner.name);
                    }
                    (kind, _) => {
                        let (_, sns, name) = SUBJECTS.iter().find(|(k, sns, n)| *k == kind && Some(*n) == s.name.as_deref() && Some(*sns) == s.namespace.as_deref()).copied().unwrap();
                        let own = OWNERS.iter().find(|(ns, _, _)| *ns == sns).unwrap();
                        let own_org = own.2 == owner.name;
                        // The root's admins group and ci identity are added to eng only.
                        let added = owner.name == "eng" && sns == "platform" && (name == "admins" || name == "ci");
                        prop_assert!(own_org || added, "{:?} {} is not visible in {}", kind, name, owner.name);
                    }
                }
            }

            let d = desired_from(&set, &o.accepted, now());
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            let dir = tempfile::tempdir().unwrap();
            let dsn = format!("sqlite://{}", dir.path().join("p.db").display());
            let (applied, access) = rt.block_on(async {
                let store = SqlStore::open(&dsn).await.unwrap();
                let r = store.apply(&d, ApplyOptions::default()).await;
                let mut access = Vec::new();
                for u in USERS {
                    access.push((u, store.access(u).await.unwrap().unwrap_or_default()));
                }
                store.close().await;
                (r, access)
            });
            prop_assert!(applied.is_ok(), "the store refused what the rules accepted: {:?}", applied.err());

            // The store's answer agrees: every accepted user project membership is a route,
            // and every project route is to an accepted project of the right organization.
            let path = |p: &Project| match p.spec.organization_ref.kind {
                OrganizationKind::Organization => p.spec.organization_ref.name.clone(),
                OrganizationKind::SubOrganization => format!("acme/{}", p.spec.organization_ref.name),
            };
            for &i in &o.accepted.project_memberships {
                let m = &set.project_memberships[i];
                let Some(email) = m.spec.subject.email.as_deref() else { continue };
                let p = set.projects.iter().find(|p| p.metadata.name.as_deref() == Some(m.spec.project_ref.name.as_str())).unwrap();
                let routes = &access.iter().find(|(u, _)| *u == email).unwrap().1;
                let via = format!("project membership {}", m.metadata.name.as_deref().unwrap());
                prop_assert!(
                    routes.iter().any(|e| e.project.as_deref() == Some(m.spec.project_ref.name.as_str()) && e.organization == path(p) && e.via == via),
                    "{} has no route through {}: {:?}", email, via, routes
                );
            }
            for (_, routes) in &access {
                for e in routes {
                    if let Some(slug) = &e.project {
                        prop_assert!(accepted_projects.contains(slug), "a route to an unaccepted project: {:?}", e);
                        let p = set.projects.iter().find(|p| p.metadata.name.as_deref() == Some(slug.as_str())).unwrap();
                        prop_assert_eq!(&e.organization, &path(p));
                    }
                }
            }
        }
    }
}
