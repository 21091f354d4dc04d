//! The cross-object rules over typed objects, as the controller will call them.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, Time};
use k8s_openapi::jiff::Timestamp;
use suborg::api::*;
use suborg::domain::check;
use suborg::domain::model::{ObjectSet, Outcome};
use suborg::domain::{ObjectKey, Reason, Severity};

use crate::fixtures::*;

fn now() -> Timestamp {
    "2026-06-01T12:00:00Z".parse().unwrap()
}

/// acme with members alice and bob, sub-organization eng (admin bob), namespaces labelled for
/// their organization.
fn base() -> ObjectSet {
    ObjectSet {
        organizations: vec![org("acme")],
        sub_organizations: vec![suborg("eng", "acme", &["bob@x.io"])],
        memberships: vec![
            root_member("platform", "acme", "alice@x.io"),
            root_member("platform", "acme", "bob@x.io"),
        ],
        namespaces: [
            ("platform".to_string(), labels("acme")),
            ("team-eng".to_string(), labels("eng")),
        ]
        .into(),
        ..Default::default()
    }
}

/// Adds the root's project `platform/billing` with `name`, an invite of `email` into it.
fn with_invite(set: &mut ObjectSet, name: &str, email: &str) {
    set.projects.push(project(
        "platform",
        "billing",
        OrganizationKind::Organization,
        "acme",
    ));
    let mut invite = project_user("platform", name, "billing", email);
    invite.spec.invite = Some(ProjectInvite {
        organization_role: "member".into(),
    });
    set.project_memberships.push(invite);
}

/// Makes `m` refused on its own (`InvalidTemporaryAccess`: a role that ends before it starts).
fn refuse(m: &mut OrgMembership) {
    m.spec.roles = vec![temporary(
        "member",
        Some("2026-02-01T00:00:00Z"),
        Some("2026-01-01T00:00:00Z"),
        None,
    )];
}

fn reasons(o: &Outcome) -> Vec<(String, Reason)> {
    o.problems
        .iter()
        .map(|p| (p.object.as_ref().unwrap().name.clone(), p.reason))
        .collect()
}

#[test]
fn base_is_accepted_whole() {
    let set = base();
    let o = check(&set, now());
    assert!(o.problems.is_empty(), "{:#?}", o.problems);
    assert_eq!(o.accepted.organizations, [0]);
    assert_eq!(o.accepted.sub_organizations, [0]);
    assert_eq!(o.accepted.memberships, [0, 1]);
}

#[test]
fn removing_the_root_membership_revokes_sub_organization_access() {
    let mut set = base();
    set.memberships
        .push(sub_member("team-eng", "eng", "alice@x.io"));
    assert_eq!(check(&set, now()).accepted.memberships, [0, 1, 2]);
    // alice leaves the root: her sub-organization membership loses its standing at once.
    set.memberships.remove(0);
    let o = check(&set, now());
    assert_eq!(
        reasons(&o),
        [("eng-alice".to_string(), Reason::SubjectNotInRoot)]
    );
    assert_eq!(
        o.accepted.memberships,
        [0],
        "only bob's root membership stays"
    );
}

#[test]
fn emails_compare_case_insensitively() {
    let mut set = base();
    set.memberships
        .push(sub_member("team-eng", "eng", "ALICE@X.IO"));
    assert!(check(&set, now()).problems.is_empty());
}

#[test]
fn dependants_of_a_rejected_object_stay_quiet_and_are_not_accepted() {
    let mut set = base();
    set.sub_organizations[0].spec.organization_ref.name = "globex".into();
    set.memberships
        .push(sub_member("team-eng", "eng", "alice@x.io"));
    let o = check(&set, now());
    assert_eq!(reasons(&o), [("eng".to_string(), Reason::ParentNotFound)]);
    assert_eq!(
        o.accepted.memberships,
        [0, 1],
        "the membership in the rejected eng is held back"
    );
}

#[test]
fn a_rejected_root_membership_holds_back_its_sub_organization_memberships() {
    let mut set = base();
    set.organizations[0].spec.authentication = Some(Authentication {
        allowed_email_domains: vec!["x.io".into()],
        ..Default::default()
    });
    set.memberships
        .push(root_member("platform", "acme", "eve@evil.io"));
    set.memberships
        .push(sub_member("team-eng", "eng", "eve@evil.io"));
    let o = check(&set, now());
    assert_eq!(
        reasons(&o),
        [("acme-eve".to_string(), Reason::EmailDomainNotAllowed)]
    );
    assert_eq!(o.accepted.memberships, [0, 1]);
}

#[test]
fn the_oldest_object_keeps_a_contested_slug() {
    let mut set = base();
    let mut newer = suborg("eng-b", "acme", &["bob@x.io"]);
    newer.spec.slug = Some("eng".into());
    // Declared first, but created later: creation time decides in a cluster.
    newer.metadata.creation_timestamp = Some(Time("2026-02-01T00:00:00Z".parse().unwrap()));
    set.sub_organizations[0].metadata.creation_timestamp =
        Some(Time("2026-01-01T00:00:00Z".parse().unwrap()));
    set.sub_organizations.insert(0, newer);
    let o = check(&set, now());
    assert_eq!(reasons(&o), [("eng-b".to_string(), Reason::SlugConflict)]);
    assert_eq!(o.accepted.sub_organizations, [1]);
}

/// Created in one second, as `kubectl apply -f` creates a set, or not yet created (offline):
/// the first by namespace and name keeps a contested slug or subject, whatever order the
/// objects are declared in, so `validate` names the object the controller refuses.
#[test]
fn a_tie_in_age_goes_to_the_first_by_name_not_the_first_declared() {
    for stamp in [None, Some(Time("2026-01-01T00:00:00Z".parse().unwrap()))] {
        let mut set = base();
        let mut zz = suborg("zz", "acme", &["bob@x.io"]);
        zz.spec.slug = Some("same".into());
        let mut aa = suborg("aa", "acme", &["bob@x.io"]);
        aa.spec.slug = Some("same".into());
        set.sub_organizations = vec![zz, aa];
        for name in ["zed", "amy"] {
            set.memberships.push(user_in(
                "platform",
                name,
                OrganizationKind::Organization,
                "acme",
                "carol@x.io",
                vec![role("member")],
            ));
        }
        for o in set.sub_organizations.iter_mut() {
            o.metadata.creation_timestamp = stamp.clone();
        }
        for m in set.memberships.iter_mut() {
            m.metadata.creation_timestamp = stamp.clone();
        }
        let o = check(&set, now());
        assert_eq!(
            reasons(&o),
            [
                ("zz".to_string(), Reason::SlugConflict),
                ("zed".to_string(), Reason::DuplicateMembership),
            ],
            "{stamp:?}"
        );
    }
    // One that already holds the slug in the store (synced a moment earlier, in the same
    // second) keeps it: a newcomer of that second does not take it, whatever its name.
    let stamp = Some(Time("2026-01-01T00:00:00Z".parse().unwrap()));
    let mut set = base();
    let mut zz = suborg("zz", "acme", &["bob@x.io"]);
    zz.spec.slug = Some("same".into());
    zz.metadata.uid = Some("uid-zz".into());
    let mut aa = suborg("aa", "acme", &["bob@x.io"]);
    aa.spec.slug = Some("same".into());
    aa.metadata.uid = Some("uid-aa".into());
    for o in [&mut zz, &mut aa] {
        o.metadata.creation_timestamp = stamp.clone();
    }
    set.sub_organizations = vec![aa, zz];
    set.stored.insert("uid-zz".into());
    let o = check(&set, now());
    assert_eq!(reasons(&o), [("aa".to_string(), Reason::SlugConflict)]);
    // Not when it is older than the other: age comes first.
    set.sub_organizations[0].metadata.creation_timestamp =
        Some(Time("2025-12-31T23:59:59Z".parse().unwrap()));
    let o = check(&set, now());
    assert_eq!(reasons(&o), [("zz".to_string(), Reason::SlugConflict)]);
}

/// A namespace labelled `suborg.io/organization=eng` is delegated to whatever organization is
/// called eng: a root created later under that name would take the team's namespace, so the
/// younger of the two is refused, whichever kind it is, and the root when neither is older.
#[test]
fn an_organization_and_a_sub_organization_never_share_a_name() {
    let at = |t: &str| Some(Time(t.parse().unwrap()));
    let mut set = base();
    set.sub_organizations[0].metadata.creation_timestamp = at("2026-01-01T00:00:00Z");
    let mut other = org("eng");
    other.metadata.creation_timestamp = at("2026-02-01T00:00:00Z");
    set.organizations.push(other);
    // Someone in eng's namespace asks for admin of the root eng.
    let mut grab = root_member("team-eng", "eng", "mallory@x.io");
    grab.spec.roles = vec![role("admin")];
    set.memberships.push(grab);
    let o = check(&set, now());
    assert_eq!(reasons(&o), [("eng".to_string(), Reason::NameConflict)]);
    let p = &o.problems[0];
    assert_eq!(p.object.as_ref().unwrap().kind, "Organization");
    assert_eq!(p.field, "metadata.name");
    assert!(p.message.contains("which keeps it"), "{}", p.message);
    assert_eq!(o.accepted.organizations, [0]);
    assert_eq!(o.accepted.sub_organizations, [0]);
    assert_eq!(
        o.accepted.memberships,
        [0, 1],
        "mallory's membership is not accepted"
    );

    // The root is older: the sub-organization is refused, and so is the same name offline.
    for root_born in [at("2025-12-01T00:00:00Z"), None] {
        let mut set = base();
        set.sub_organizations[0].metadata.creation_timestamp = root_born
            .as_ref()
            .map(|_| Time("2026-01-01T00:00:00Z".parse().unwrap()));
        let mut other = org("eng");
        other.metadata.creation_timestamp = root_born;
        set.organizations.push(other);
        let o = check(&set, now());
        assert_eq!(reasons(&o), [("eng".to_string(), Reason::NameConflict)]);
        assert_eq!(
            o.problems[0].object.as_ref().unwrap().kind,
            "SubOrganization"
        );
        assert_eq!(o.accepted.organizations, [0, 1]);
        assert!(o.accepted.sub_organizations.is_empty());
    }
}

#[test]
fn slugs_are_unique_per_root_not_globally() {
    let mut set = base();
    set.organizations.push(org("globex"));
    set.memberships
        .push(root_member("platform", "globex", "bob@x.io"));
    set.namespaces
        .get_mut("platform")
        .unwrap()
        .insert("suborg.io/organization".into(), "acme".into());
    let mut other = suborg("globex-eng", "globex", &["bob@x.io"]);
    other.spec.slug = Some("eng".into());
    set.sub_organizations.push(other);
    set.organizations[1].spec.member_namespaces = Some(MemberNamespaces {
        from: NamespacesFrom::All,
        selector: None,
    });
    let o = check(&set, now());
    assert!(o.problems.is_empty(), "{:#?}", o.problems);
}

#[test]
fn siblings_do_not_share_members() {
    // Membership in one sub-organization does not make a user a member of a sibling, and a
    // sub-organization membership does not make anyone a root member.
    let mut set = base();
    set.sub_organizations
        .push(suborg("sales", "acme", &["alice@x.io"]));
    set.namespaces.insert("team-sales".into(), labels("sales"));
    set.memberships
        .push(sub_member("team-eng", "eng", "carol@x.io"));
    set.memberships
        .push(sub_member("team-sales", "sales", "bob@x.io"));
    let o = check(&set, now());
    assert_eq!(
        reasons(&o),
        [("eng-carol".to_string(), Reason::SubjectNotInRoot)]
    );
}

#[test]
fn delegation_follows_the_selector() {
    let mut set = base();
    set.sub_organizations[0].spec.member_namespaces = Some(MemberNamespaces {
        from: NamespacesFrom::Selector,
        selector: Some(LabelSelector {
            match_labels: Some([("team".to_string(), "eng".to_string())].into()),
            match_expressions: None,
        }),
    });
    set.memberships
        .push(sub_member("team-eng", "eng", "alice@x.io"));
    let o = check(&set, now());
    assert_eq!(
        reasons(&o),
        [("eng-alice".to_string(), Reason::NamespaceNotAllowed)]
    );
    assert!(
        o.problems[0]
            .message
            .contains("namespaces matching team=eng"),
        "{}",
        o.problems[0].message
    );
    set.namespaces
        .get_mut("team-eng")
        .unwrap()
        .insert("team".into(), "eng".into());
    assert!(check(&set, now()).problems.is_empty());
}

#[test]
fn expired_roles_warn_and_future_ones_do_not() {
    let mut set = base();
    set.memberships[0].spec.roles = vec![
        temporary("admin", None, Some("2026-05-01T00:00:00Z"), None),
        temporary("member", Some("2026-07-01T00:00:00Z"), None, Some("24h")),
    ];
    let o = check(&set, now());
    assert_eq!(o.problems.len(), 1, "{:#?}", o.problems);
    assert_eq!(o.problems[0].severity, Severity::Warning);
    assert_eq!(o.problems[0].reason, Reason::RoleExpired);
    assert_eq!(o.problems[0].field, "spec.roles[0].temporary");
    assert_eq!(
        o.accepted.memberships,
        [0, 1],
        "an expired role is a warning, not a rejection"
    );
}

#[test]
fn duration_counts_from_creation_in_a_cluster() {
    let mut set = base();
    set.memberships[0].metadata.creation_timestamp =
        Some(Time("2026-06-01T00:00:00Z".parse().unwrap()));
    set.memberships[0].spec.roles = vec![temporary("admin", None, None, Some("8h"))];
    let o = check(&set, now());
    assert_eq!(o.problems.len(), 1);
    assert!(
        o.problems[0]
            .message
            .contains("expired at 2026-06-01T08:00:00Z"),
        "{}",
        o.problems[0].message
    );
    // It says where the duration counted from, and how to count from elsewhere.
    assert!(
        o.problems[0].message.ends_with(
            "its duration counts from the object's creation (2026-06-01T00:00:00Z); set temporary.start to count from another time"
        ),
        "{}",
        o.problems[0].message
    );
}

#[test]
fn admins_must_be_root_members() {
    let mut set = base();
    set.sub_organizations[0].spec.admins = vec!["bob@x.io".into(), "zed@x.io".into()];
    let o = check(&set, now());
    assert_eq!(reasons(&o), [("eng".to_string(), Reason::AdminNotInRoot)]);
    assert_eq!(o.problems[0].field, "spec.admins[1]");
    // bob is an admin; zed is not, and eng stays.
    assert_eq!(o.accepted.sub_organizations, [0]);
    assert_eq!(o.accepted.admins, [(0, 0)]);
}

#[test]
fn an_admin_leaving_the_root_loses_admin_access_and_the_sub_organization_stays() {
    let mut set = base();
    set.memberships
        .push(sub_member("team-eng", "eng", "alice@x.io"));
    assert_eq!(check(&set, now()).accepted.admins, [(0, 0)]);
    // bob, eng's only admin, leaves the root.
    set.memberships.remove(1);
    let o = check(&set, now());
    assert_eq!(reasons(&o), [("eng".to_string(), Reason::AdminNotInRoot)]);
    assert!(o.problems[0].is_error());
    assert!(
        o.problems[0]
            .message
            .contains("stays in the store, without \"bob@x.io\" as its admin"),
        "{}",
        o.problems[0].message
    );
    assert_eq!(o.accepted.sub_organizations, [0], "eng stays");
    assert!(o.accepted.admins.is_empty(), "bob is no admin of eng");
    assert_eq!(
        o.accepted.memberships,
        [0, 1],
        "alice stays in acme and eng"
    );
}

#[test]
fn an_admin_whose_root_membership_is_rejected_is_reported() {
    let mut set = base();
    // bob's root membership is refused on its own.
    refuse(&mut set.memberships[1]);
    let o = check(&set, now());
    let on_eng = problems_on(&o, "eng");
    assert_eq!(on_eng.len(), 1, "{:#?}", o.problems);
    assert_eq!(on_eng[0].reason, Reason::AdminNotInRoot);
    assert_eq!(on_eng[0].field, "spec.admins[0]");
    assert!(
        on_eng[0].message.contains("is not accepted"),
        "{}",
        on_eng[0].message
    );
    assert_eq!(o.accepted.sub_organizations, [0]);
    assert!(o.accepted.admins.is_empty());
}

#[test]
fn what_waits_for_a_refused_object_says_which() {
    use suborg::domain::waiting::waiting;
    let mut set = base();
    set.memberships
        .push(sub_member("team-eng", "eng", "alice@x.io"));
    set.projects.push(project(
        "team-eng",
        "api",
        OrganizationKind::SubOrganization,
        "eng",
    ));
    set.project_memberships
        .push(project_user("team-eng", "api-alice", "api", "alice@x.io"));
    let o = check(&set, now());
    assert!(o.problems.is_empty(), "{:#?}", o.problems);
    assert!(waiting(&set, &o).is_empty(), "nothing waits");
    // alice's root membership is refused on its own: her access to eng and to its project
    // waits for it, and says so.
    refuse(&mut set.memberships[0]);
    let o = check(&set, now());
    assert_eq!(
        reasons(&o),
        [("acme-alice".to_string(), Reason::InvalidTemporaryAccess)]
    );
    let w = waiting(&set, &o);
    let eng_alice = &w[&ObjectKey::namespaced("OrgMembership", "team-eng", "eng-alice")];
    assert!(
        eng_alice.contains("\"alice@x.io\" in \"acme\" (OrgMembership platform/acme-alice)"),
        "{eng_alice}"
    );
    let api_alice = &w[&ObjectKey::namespaced("ProjectMembership", "team-eng", "api-alice")];
    assert!(
        api_alice.contains("\"alice@x.io\" in \"eng\" (OrgMembership team-eng/eng-alice)"),
        "{api_alice}"
    );
    assert_eq!(w.len(), 2, "{w:#?}");
    // eng is refused (its parent does not exist): everything in it waits for eng.
    let mut set = base();
    set.sub_organizations[0].spec.organization_ref.name = "nowhere".into();
    set.projects.push(project(
        "team-eng",
        "api",
        OrganizationKind::SubOrganization,
        "eng",
    ));
    let o = check(&set, now());
    let w = waiting(&set, &o);
    let api = &w[&ObjectKey::namespaced("Project", "team-eng", "api")];
    assert!(
        api.contains("its organization, SubOrganization \"eng\""),
        "{api}"
    );
    assert!(
        !w.contains_key(&ObjectKey::cluster("SubOrganization", "eng")),
        "eng's own problem says why"
    );

    // eng's app connection, relay and gateway wait for eng; a root gateway whose relay is
    // refused for its namespace (one acme does not admit) does not wait for it: from another
    // namespace that relay is as good as absent, and the gateway is told so.
    set.connections.push(connection(
        "team-eng",
        "github",
        OrganizationKind::SubOrganization,
        "eng",
    ));
    set.relays.push(relay(
        "team-eng",
        "eng-relay",
        OrganizationKind::SubOrganization,
        "eng",
    ));
    set.gateways.push(gateway(
        "team-eng",
        "eng-gw",
        OrganizationKind::SubOrganization,
        "eng",
        Some(local("eng-relay")),
    ));
    set.relays.push(relay(
        "team-eng",
        "root-relay",
        OrganizationKind::Organization,
        "acme",
    ));
    set.gateways.push(gateway(
        "platform",
        "root-gw",
        OrganizationKind::Organization,
        "acme",
        Some(LocalObjectRef {
            name: "root-relay".into(),
            namespace: Some("team-eng".into()),
        }),
    ));
    let o = check(&set, now());
    let w = waiting(&set, &o);
    for (kind, name) in [
        ("AppConnection", "github"),
        ("Relay", "eng-relay"),
        ("Gateway", "eng-gw"),
    ] {
        let why = &w[&ObjectKey::namespaced(kind, "team-eng", name)];
        assert!(
            why.contains("its organization, SubOrganization \"eng\""),
            "{kind} {name}: {why}"
        );
    }
    assert!(!w.contains_key(&ObjectKey::namespaced("Gateway", "platform", "root-gw")));
    let told = problems_on(&o, "root-gw");
    assert_eq!(told.len(), 1, "{told:#?}");
    assert_eq!(told[0].reason, Reason::ResourceNotInOrganization);
    assert!(
        told[0]
            .message
            .contains("Relay \"team-eng/root-relay\" is not one Gateway \"root-gw\""),
        "{}",
        told[0].message
    );
}

#[test]
fn a_group_says_which_listed_user_it_leaves_out_while_their_membership_is_refused() {
    let mut set = base();
    set.groups.push(group(
        "platform",
        "admins",
        OrganizationKind::Organization,
        "acme",
        vec![user("alice@x.io"), user("bob@x.io")],
    ));
    assert!(check(&set, now()).problems.is_empty());
    refuse(&mut set.memberships[0]);
    let o = check(&set, now());
    let on_group = problems_on(&o, "admins");
    assert_eq!(on_group.len(), 1, "{:#?}", o.problems);
    assert_eq!(on_group[0].reason, Reason::GroupMemberNotInOrganization);
    assert_eq!(on_group[0].severity, Severity::Warning);
    assert_eq!(on_group[0].field, "spec.members[0].email");
    assert!(
        on_group[0].message.contains("is not accepted"),
        "{}",
        on_group[0].message
    );
    assert_eq!(o.accepted.groups, [0], "the group stays, with bob");
}

#[test]
fn a_selector_naming_a_key_no_label_can_have_is_a_warning_that_keeps_the_organization() {
    let mut set = base();
    set.sub_organizations[0].spec.member_namespaces = Some(MemberNamespaces {
        from: NamespacesFrom::Selector,
        selector: Some(LabelSelector {
            match_labels: Some([("bad key!".to_string(), "eng".to_string())].into()),
            match_expressions: None,
        }),
    });
    let o = check(&set, now());
    assert_eq!(reasons(&o), [("eng".to_string(), Reason::InvalidSelector)]);
    assert_eq!(o.problems[0].severity, Severity::Warning);
    assert_eq!(
        o.problems[0].field,
        "spec.memberNamespaces.selector.matchLabels[\"bad key!\"]"
    );
    assert!(
        o.problems[0].message.contains("admits none"),
        "{}",
        o.problems[0].message
    );
    assert_eq!(o.accepted.sub_organizations, [0], "eng stays");
}

#[test]
fn an_admin_listed_twice_is_reported_and_the_sub_organization_stays() {
    let mut set = base();
    set.sub_organizations[0].spec.admins = vec!["bob@x.io".into(), "Bob@X.io".into()];
    let o = check(&set, now());
    assert_eq!(reasons(&o), [("eng".to_string(), Reason::DuplicateAdmin)]);
    assert!(o.problems[0].is_error());
    assert_eq!(o.problems[0].field, "spec.admins[1]");
    assert_eq!(o.accepted.sub_organizations, [0], "eng stays");
    assert_eq!(o.accepted.admins, [(0, 0)], "bob is an admin once");
}

#[test]
fn what_waits_for_an_object_refused_before_the_rules_names_it() {
    use suborg::domain::waiting::waiting;
    let mut set = base();
    // api was refused on its own before the rules ran (by the schema, or left out of a sync
    // for its rows): it is not in the set, only named as refused.
    set.rejected
        .insert(ObjectKey::namespaced("Project", "team-eng", "api"));
    set.project_memberships
        .push(project_user("team-eng", "api-alice", "api", "alice@x.io"));
    let o = check(&set, now());
    assert!(o.accepted.project_memberships.is_empty());
    assert!(
        !o.problems.iter().any(|p| p.is_error()),
        "{:#?}",
        o.problems
    );
    let w = waiting(&set, &o);
    let why = &w[&ObjectKey::namespaced("ProjectMembership", "team-eng", "api-alice")];
    assert!(why.contains("waits for Project team-eng/api"), "{why}");
}

/// The default selector is the label `suborg.io/organization=<name>`, and a label value has at
/// most 63 characters: an organization with a longer name admits no namespace unless it names
/// a selector of its own, and is told so.
#[test]
fn a_name_no_label_value_can_hold_needs_a_selector_of_its_own() {
    let long = "e".repeat(70);
    let mut set = base();
    let mut sub = suborg(&long, "acme", &["bob@x.io"]);
    sub.spec.slug = Some("long".into());
    set.sub_organizations.push(sub);
    let o = check(&set, now());
    assert_eq!(reasons(&o), [(long.clone(), Reason::InvalidSelector)]);
    let p = &o.problems[0];
    assert_eq!(p.severity, Severity::Warning);
    assert_eq!(p.field, "spec.memberNamespaces");
    assert!(
        p.message
            .contains("at most 63 characters and this name has 70"),
        "{}",
        p.message
    );
    assert_eq!(o.accepted.sub_organizations, [0, 1], "it stays");

    // A selector of its own, or all namespaces: nothing to say.
    for policy in [
        MemberNamespaces {
            from: NamespacesFrom::All,
            selector: None,
        },
        MemberNamespaces {
            from: NamespacesFrom::Selector,
            selector: Some(LabelSelector {
                match_labels: Some([("team".to_string(), "long".to_string())].into()),
                match_expressions: None,
            }),
        },
    ] {
        set.sub_organizations[1].spec.member_namespaces = Some(policy);
        assert!(check(&set, now()).problems.is_empty());
    }
    // A root alike.
    let mut set = base();
    set.organizations.push(org(&long));
    assert_eq!(
        reasons(&check(&set, now())),
        [(long, Reason::InvalidSelector)]
    );
}

/// `no-access` is a role in effect with no permission in the organization itself: the member
/// is still a member, so what builds on the membership (a sub-organization's membership, a
/// root group's place there, project roles) is accepted, which is what the role is for:
/// access given through project roles only. Not so a membership with no role in effect.
#[test]
fn a_no_access_member_is_still_a_member_that_project_roles_build_on() {
    let mut set = base();
    set.memberships[0].spec.roles = vec![role("no-access")]; // alice at the root
    let mut in_eng = sub_member("team-eng", "eng", "alice@x.io");
    in_eng.spec.roles = vec![role("no-access")];
    set.memberships.push(in_eng);
    set.projects.push(project(
        "team-eng",
        "api",
        OrganizationKind::SubOrganization,
        "eng",
    ));
    let mut admin = project_user("team-eng", "api-alice", "api", "alice@x.io");
    admin.spec.roles = vec![role("admin")];
    set.project_memberships.push(admin);
    // A root group with alice, added to eng with no-access, and given a project role there.
    set.groups.push(group(
        "platform",
        "ops",
        OrganizationKind::Organization,
        "acme",
        vec![user("alice@x.io")],
    ));
    let mut ops_in_eng = subject_in(
        "team-eng",
        "ops-in-eng",
        OrganizationKind::SubOrganization,
        "eng",
        SubjectKind::Group,
        "ops",
        Some("platform"),
    );
    ops_in_eng.spec.roles = vec![role("no-access")];
    set.memberships.push(ops_in_eng);
    set.project_memberships.push(project_subject(
        "team-eng",
        "api-ops",
        "api",
        SubjectKind::Group,
        "ops",
        Some("platform"),
    ));
    let o = check(&set, now());
    assert_eq!(reasons(&o), [], "{:?}", o.problems);
    assert_eq!(o.accepted.memberships, [0, 1, 2, 3]);
    assert_eq!(o.accepted.project_memberships, [0, 1]);

    // The same with alice's root role expired: nothing builds on it.
    set.memberships[0].spec.roles = vec![temporary(
        "member",
        None,
        Some("2026-01-01T00:00:00Z"),
        None,
    )];
    let o = check(&set, now());
    assert!(!o.accepted.memberships.contains(&2), "{:?}", o.problems);
}

/// Timestamps have whole seconds: a sub-organization created in the second its root's
/// deletion began came after it, unless the store already holds it (a script that creates,
/// then deletes, within a second).
#[test]
fn a_sub_organization_of_the_second_a_deletion_began_is_late_unless_stored() {
    let at = Some(Time("2026-06-01T11:00:00Z".parse().unwrap()));
    let mut set = base();
    set.organizations[0].metadata.deletion_timestamp = at.clone();
    set.sub_organizations[0].metadata.creation_timestamp = at;
    set.sub_organizations[0].metadata.uid = Some("uid-eng".into());
    let o = check(&set, now());
    assert_eq!(reasons(&o), [("eng".to_string(), Reason::ParentNotFound)]);
    set.stored.insert("uid-eng".into());
    let o = check(&set, now());
    assert_eq!(reasons(&o), [], "{:?}", o.problems);
}

/// While its root's rows are in the store and its root is being deleted, a sub-organization
/// whose rows the store does not hold (refused before it had any, say for a slug taken) joins
/// late, whenever it was created: it would be a new sub-organization in the store, and would
/// keep the root there for good ([`suborg::domain::organizations::joins_late`], which the
/// controller asks too, to decide which children hold the root). One with rows does not; and
/// before a sync has read the store (nothing in `stored`), only the creation time counts.
#[test]
fn a_sub_organization_without_rows_joins_a_root_being_deleted_late() {
    use suborg::domain::organizations::joins_late;
    let created = Some(Time("2026-01-01T00:00:00Z".parse().unwrap()));
    let mut set = base();
    set.organizations[0].metadata.uid = Some("uid-acme".into());
    set.organizations[0].metadata.creation_timestamp = created.clone();
    let mut twin = suborg("twin", "acme", &["bob@x.io"]);
    twin.spec.slug = Some("eng".into());
    set.sub_organizations.push(twin);
    for (s, uid) in set
        .sub_organizations
        .iter_mut()
        .zip(["uid-eng", "uid-twin"])
    {
        s.metadata.uid = Some(uid.into());
        s.metadata.creation_timestamp = created.clone();
    }
    set.stored = ["uid-acme", "uid-eng"].map(String::from).into();
    let o = check(&set, now());
    assert_eq!(reasons(&o), [("twin".to_string(), Reason::SlugConflict)]);

    set.organizations[0].metadata.deletion_timestamp =
        Some(Time("2026-06-01T11:00:00Z".parse().unwrap()));
    let (root, eng, twin) = (
        &set.organizations[0],
        &set.sub_organizations[0],
        &set.sub_organizations[1],
    );
    assert!(!joins_late(eng, root, &set.stored), "eng has rows");
    assert!(joins_late(twin, root, &set.stored), "twin never had any");
    assert!(
        !joins_late(twin, root, &Default::default()),
        "the store not read yet"
    );
    let o = check(&set, now());
    assert_eq!(
        reasons(&o),
        [
            ("twin".to_string(), Reason::ParentNotFound),
            ("twin".to_string(), Reason::SlugConflict)
        ]
    );
    let late = &o.problems[0].message;
    assert!(
        late.contains("is being deleted") && late.contains("\"twin\" has no rows in the store"),
        "{late}"
    );
    assert_eq!(o.accepted.sub_organizations, [0]);
}

/// A membership its namespace may not hold takes no part in what another organization's own
/// memberships decide: older or not, it holds no user's place there, so a team lead's
/// namespace can neither lock a user out of the root or a sibling, nor take a re-created
/// membership away, nor hold back a root project's invite.
#[test]
fn a_membership_refused_for_its_namespace_holds_no_place() {
    let at = |t: &str| Some(Time(t.parse().unwrap()));
    let mut set = base();
    set.sub_organizations
        .push(suborg("sales", "acme", &["bob@x.io"]));
    set.namespaces.insert("team-sales".into(), labels("sales"));
    let squat = |name: &str, kind: OrganizationKind, org: &str, email: &str| {
        let mut m = user_in("team-eng", name, kind, org, email, vec![role("admin")]);
        m.metadata.creation_timestamp = at("2026-01-01T00:00:00Z");
        m
    };
    let legit = |mut m: OrgMembership| {
        m.metadata.creation_timestamp = at("2026-03-01T00:00:00Z");
        m
    };
    set.memberships.extend([
        // Older than the root's own memberships of mallory and alice (re-created).
        squat(
            "x-mallory",
            OrganizationKind::Organization,
            "acme",
            "mallory@x.io",
        ),
        squat(
            "x-alice",
            OrganizationKind::Organization,
            "acme",
            "alice@x.io",
        ),
        // Older than sales' own membership of bob.
        squat(
            "x-bob",
            OrganizationKind::SubOrganization,
            "sales",
            "bob@x.io",
        ),
        // A root membership for ivan, whom a root project invites.
        squat(
            "x-ivan",
            OrganizationKind::Organization,
            "acme",
            "ivan@x.io",
        ),
        legit(root_member("platform", "acme", "mallory@x.io")),
        legit(sub_member("team-sales", "sales", "bob@x.io")),
    ]);
    set.memberships[0] = legit(set.memberships[0].clone()); // alice, re-created
    with_invite(&mut set, "billing-ivan", "ivan@x.io");
    // And an invite of ivan into the root's project from the team lead's namespace.
    let mut invite = project_user("team-eng", "x-invite", "billing", "ivan@x.io");
    invite.spec.project_ref.namespace = Some("platform".into());
    invite.spec.invite = Some(ProjectInvite {
        organization_role: "admin".into(),
    });
    set.project_memberships.push(invite);
    let o = check(&set, now());
    let mut got = reasons(&o);
    got.sort();
    // The invite names a project in another namespace whose organization does not admit its
    // own: the one answer for a name it cannot use, which does not name the organization.
    let mut want = ["x-alice", "x-bob", "x-ivan", "x-mallory"]
        .map(|n| (n.to_string(), Reason::NamespaceNotAllowed))
        .to_vec();
    want.insert(2, ("x-invite".to_string(), Reason::ReferenceNotFound));
    assert_eq!(got, want);
    let accepted: Vec<&str> = o
        .accepted
        .memberships
        .iter()
        .map(|&i| set.memberships[i].metadata.name.as_deref().unwrap())
        .collect();
    for name in ["acme-alice", "acme-bob", "acme-mallory", "sales-bob"] {
        assert!(accepted.contains(&name), "{name} in {accepted:?}");
    }
    assert_eq!(
        o.accepted.project_memberships,
        [0],
        "the invite provisions ivan"
    );
}

/// A root project's invite of a user whose root membership is refused on its own provisions no
/// one, and says which membership it waits for.
#[test]
fn an_invite_held_back_by_a_refused_root_membership_names_it() {
    use suborg::domain::waiting::waiting;
    let mut set = base();
    refuse(&mut set.memberships[0]);
    with_invite(&mut set, "billing-alice", "alice@x.io");
    let o = check(&set, now());
    assert!(o.accepted.project_memberships.is_empty());
    let w = waiting(&set, &o);
    let why = &w[&ObjectKey::namespaced("ProjectMembership", "platform", "billing-alice")];
    assert!(why.contains("(OrgMembership platform/acme-alice)"), "{why}");
}

/// What a namespace is told about a name in another namespace that it cannot use does not
/// depend on what is there: nothing, another organization's object, or one that claims its
/// own organization but is refused for its namespace. Each reference from a delegated
/// namespace gets the same problems, word for word, in all three cases.
#[test]
fn a_name_in_another_namespace_gets_one_answer_whatever_is_there() {
    use OrganizationKind::{Organization as Root, SubOrganization as Sub};
    // The groups tests' tree (acme; eng in team-eng, ops in team-ops), with a project of eng.
    let base = || {
        let mut set = crate::groups::base();
        set.projects.push(project("team-eng", "api", Sub, "eng"));
        set
    };
    let mut nests = group("team-eng", "all", Sub, "eng", vec![]);
    nests.spec.members = vec![GroupMember {
        namespace: Some("team-ops".into()),
        ..nested("x")
    }];
    let mut uses = project("team-eng", "web", Sub, "eng");
    uses.spec.app_connections = vec![LocalObjectRef {
        name: "x".into(),
        namespace: Some("team-ops".into()),
    }];
    let mut joins = project_user("team-eng", "joins", "x", "bob@x.io");
    joins.spec.project_ref.namespace = Some("team-ops".into());
    // Each case: the referrer's name, how to add it, how to add what it names (as owned by
    // whom), and the owner that what it names claims when it is refused for its namespace.
    type Add = fn(&mut ObjectSet, Option<(OrganizationKind, &str)>);
    type Referrer = Box<dyn Fn(&mut ObjectSet)>;
    let group_there: Add = |set, owner| {
        if let Some((kind, name)) = owner {
            set.groups.push(group("team-ops", "x", kind, name, vec![]));
        }
    };
    let identity_there: Add = |set, owner| {
        if let Some((kind, name)) = owner {
            set.identities.push(identity("team-ops", "x", kind, name));
        }
    };
    let connection_there: Add = |set, owner| {
        if let Some((kind, name)) = owner {
            set.connections
                .push(connection("team-ops", "x", kind, name));
        }
    };
    let project_there: Add = |set, owner| {
        if let Some((kind, name)) = owner {
            set.projects.push(project("team-ops", "x", kind, name));
        }
    };
    let cases: Vec<(&str, Referrer, Add, (OrganizationKind, &str))> = vec![
        (
            "add-group",
            Box::new(|s: &mut ObjectSet| {
                s.memberships.push(subject_in(
                    "team-eng",
                    "add-group",
                    Sub,
                    "eng",
                    SubjectKind::Group,
                    "x",
                    Some("team-ops"),
                ))
            }),
            group_there,
            (Root, "acme"),
        ),
        (
            "add-identity",
            Box::new(|s: &mut ObjectSet| {
                s.memberships.push(subject_in(
                    "team-eng",
                    "add-identity",
                    Sub,
                    "eng",
                    SubjectKind::MachineIdentity,
                    "x",
                    Some("team-ops"),
                ))
            }),
            identity_there,
            (Root, "acme"),
        ),
        (
            "all",
            Box::new(move |s: &mut ObjectSet| s.groups.push(nests.clone())),
            group_there,
            (Sub, "eng"),
        ),
        (
            "web",
            Box::new(move |s: &mut ObjectSet| s.projects.push(uses.clone())),
            connection_there,
            (Sub, "eng"),
        ),
        (
            "joins",
            Box::new(move |s: &mut ObjectSet| s.project_memberships.push(joins.clone())),
            project_there,
            (Sub, "eng"),
        ),
        (
            "in-api",
            Box::new(|s: &mut ObjectSet| {
                s.project_memberships.push(project_subject(
                    "team-eng",
                    "in-api",
                    "api",
                    SubjectKind::Group,
                    "x",
                    Some("team-ops"),
                ))
            }),
            group_there,
            (Root, "acme"),
        ),
    ];
    for (name, add_referrer, add_target, claimed) in &cases {
        let answers: Vec<Vec<(Reason, String, String)>> = [
            None,
            Some((Sub, "ops")),
            // Claims what the referrer could use, from a namespace that does not admit it.
            Some(*claimed),
        ]
        .into_iter()
        .map(|there| {
            let mut set = base();
            add_referrer(&mut set);
            add_target(&mut set, there);
            let o = check(&set, now());
            problems_on(&o, name)
                .into_iter()
                .map(|p| (p.reason, p.field.clone(), p.message.clone()))
                .collect()
        })
        .collect();
        assert!(
            answers[0]
                .iter()
                .any(|(_, _, m)| m.contains("is not one") && m.contains("there is no such")),
            "{name}: {:#?}",
            answers[0]
        );
        assert_eq!(
            answers[0], answers[1],
            "{name}: missing vs another organization's"
        );
        assert_eq!(
            answers[0], answers[2],
            "{name}: missing vs refused for its namespace"
        );
    }
}

/// An object in a namespace its organization does not admit is told so even while that
/// organization is refused on its own (here for its slug): fixing the organization must not
/// be what reveals the object's own problem. In an admitted namespace it waits quietly.
#[test]
fn a_namespace_refusal_is_told_while_the_organization_is_refused_too() {
    use OrganizationKind::Organization as Root;
    let mut set = base();
    let mut twin = org("twin");
    twin.spec.slug = Some("acme".into());
    twin.metadata.creation_timestamp = Some(Time("2030-01-01T00:00:00Z".parse().unwrap()));
    set.organizations.push(twin);
    set.namespaces.insert("stray".into(), Default::default());
    set.namespaces.insert("team-twin".into(), labels("twin"));
    set.memberships.push(user_in(
        "stray",
        "zed",
        Root,
        "twin",
        "zed@x.io",
        vec![role("member")],
    ));
    set.groups.push(group("stray", "g", Root, "twin", vec![]));
    set.memberships.push(user_in(
        "team-twin",
        "quiet",
        Root,
        "twin",
        "zed@x.io",
        vec![role("member")],
    ));
    // A project in a namespace neither organization admits, and a membership beside it:
    // both are told, whether the project's organization is refused on its own or not.
    set.projects.push(project("stray", "p-twin", Root, "twin"));
    set.projects.push(project("stray", "p-acme", Root, "acme"));
    set.project_memberships
        .push(project_user("stray", "pm-twin", "p-twin", "zed@x.io"));
    set.project_memberships
        .push(project_user("stray", "pm-acme", "p-acme", "alice@x.io"));
    let o = check(&set, now());
    assert_eq!(problems_on(&o, "twin")[0].reason, Reason::SlugConflict);
    for name in ["zed", "g", "p-twin", "pm-twin", "p-acme", "pm-acme"] {
        let told = problems_on(&o, name);
        assert_eq!(told.len(), 1, "{name}: {told:#?}");
        assert_eq!(told[0].reason, Reason::NamespaceNotAllowed, "{name}");
    }
    assert!(problems_on(&o, "quiet").is_empty(), "{:#?}", o.problems);
}
