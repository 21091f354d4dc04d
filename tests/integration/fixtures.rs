//! Builders for test objects.

use std::collections::BTreeMap;

use suborg::api::*;

pub fn org(name: &str) -> Organization {
    Organization::new(
        name,
        OrganizationSpec {
            display_name: None,
            slug: None,
            authentication: None,
            member_namespaces: None,
            deletion_policy: DeletionPolicy::Delete,
        },
    )
}

pub fn suborg(name: &str, parent: &str, admins: &[&str]) -> SubOrganization {
    SubOrganization::new(
        name,
        SubOrganizationSpec {
            organization_ref: OrganizationRef {
                kind: OrganizationKind::Organization,
                name: parent.into(),
            },
            display_name: None,
            slug: None,
            admins: admins.iter().map(|a| a.to_string()).collect(),
            member_namespaces: None,
            deletion_policy: DeletionPolicy::Delete,
            authentication: None,
        },
    )
}

pub fn role(role: &str) -> RoleBinding {
    RoleBinding {
        role: role.into(),
        temporary: None,
    }
}

pub fn temporary(
    role: &str,
    start: Option<&str>,
    end: Option<&str>,
    duration: Option<&str>,
) -> RoleBinding {
    RoleBinding {
        role: role.into(),
        temporary: Some(TemporaryAccess {
            start: start.map(Into::into),
            end: end.map(Into::into),
            duration: duration.map(Into::into),
        }),
    }
}

pub fn user_in(
    namespace: &str,
    name: &str,
    kind: OrganizationKind,
    target: &str,
    email: &str,
    roles: Vec<RoleBinding>,
) -> OrgMembership {
    let mut m = OrgMembership::new(
        name,
        OrgMembershipSpec {
            organization_ref: OrganizationRef {
                kind,
                name: target.into(),
            },
            subject: Subject {
                kind: SubjectKind::User,
                email: Some(email.into()),
                name: None,
                namespace: None,
            },
            roles,
            deletion_policy: DeletionPolicy::Delete,
        },
    );
    m.metadata.namespace = Some(namespace.into());
    m
}

pub fn root_member(namespace: &str, org: &str, email: &str) -> OrgMembership {
    let name = email.split('@').next().unwrap().to_lowercase();
    user_in(
        namespace,
        &format!("{org}-{name}"),
        OrganizationKind::Organization,
        org,
        email,
        vec![role("member")],
    )
}

pub fn sub_member(namespace: &str, sub: &str, email: &str) -> OrgMembership {
    let name = email.split('@').next().unwrap().to_lowercase();
    user_in(
        namespace,
        &format!("{sub}-{name}"),
        OrganizationKind::SubOrganization,
        sub,
        email,
        vec![role("member")],
    )
}

pub fn labels(org: &str) -> BTreeMap<String, String> {
    [("suborg.io/organization".to_string(), org.to_string())].into()
}

/// A membership of a group or machine identity (`kind`) named `subject` (in the membership's
/// namespace unless `subject_ns` says otherwise) in a sub-organization or root.
pub fn subject_in(
    namespace: &str,
    name: &str,
    target_kind: OrganizationKind,
    target: &str,
    kind: SubjectKind,
    subject: &str,
    subject_ns: Option<&str>,
) -> OrgMembership {
    let mut m = user_in(
        namespace,
        name,
        target_kind,
        target,
        "x@x.example",
        vec![role("member")],
    );
    m.spec.subject = Subject {
        kind,
        email: None,
        name: Some(subject.into()),
        namespace: subject_ns.map(Into::into),
    };
    m
}

pub fn user(email: &str) -> GroupMember {
    GroupMember {
        kind: GroupMemberKind::User,
        email: Some(email.into()),
        name: None,
        namespace: None,
    }
}

pub fn nested(name: &str) -> GroupMember {
    GroupMember {
        kind: GroupMemberKind::Group,
        email: None,
        name: Some(name.into()),
        namespace: None,
    }
}

pub fn group(
    namespace: &str,
    name: &str,
    kind: OrganizationKind,
    owner: &str,
    members: Vec<GroupMember>,
) -> Group {
    let mut g = Group::new(
        name,
        GroupSpec {
            organization_ref: OrganizationRef {
                kind,
                name: owner.into(),
            },
            display_name: None,
            members,
            deletion_policy: DeletionPolicy::Delete,
        },
    );
    g.metadata.namespace = Some(namespace.into());
    g
}

pub fn identity(
    namespace: &str,
    name: &str,
    kind: OrganizationKind,
    owner: &str,
) -> MachineIdentity {
    let mut i = MachineIdentity::new(
        name,
        MachineIdentitySpec {
            organization_ref: OrganizationRef {
                kind,
                name: owner.into(),
            },
            display_name: None,
            deletion_policy: DeletionPolicy::Delete,
        },
    );
    i.metadata.namespace = Some(namespace.into());
    i
}

fn owner(kind: OrganizationKind, name: &str) -> OrganizationRef {
    OrganizationRef {
        kind,
        name: name.into(),
    }
}

pub fn local(name: &str) -> LocalObjectRef {
    LocalObjectRef {
        name: name.into(),
        namespace: None,
    }
}

pub fn project(namespace: &str, name: &str, kind: OrganizationKind, org: &str) -> Project {
    let mut p = Project::new(
        name,
        ProjectSpec {
            organization_ref: owner(kind, org),
            slug: None,
            display_name: None,
            description: None,
            app_connections: vec![],
            gateway_ref: None,
            deletion_policy: DeletionPolicy::Delete,
        },
    );
    p.metadata.namespace = Some(namespace.into());
    p
}

pub fn connection(namespace: &str, name: &str, kind: OrganizationKind, org: &str) -> AppConnection {
    let mut c = AppConnection::new(
        name,
        AppConnectionSpec {
            organization_ref: owner(kind, org),
            app: "aws".into(),
            display_name: None,
            config: [("region".to_string(), "eu-west-1".to_string())].into(),
            credentials_ref: Some(CredentialsRef {
                name: format!("{name}-credentials"),
                namespace: None,
            }),
            deletion_policy: DeletionPolicy::Delete,
        },
    );
    c.metadata.namespace = Some(namespace.into());
    c
}

pub fn gateway(
    namespace: &str,
    name: &str,
    kind: OrganizationKind,
    org: &str,
    relay: Option<LocalObjectRef>,
) -> Gateway {
    let mut g = Gateway::new(
        name,
        GatewaySpec {
            organization_ref: owner(kind, org),
            display_name: None,
            relay_ref: relay,
            config: Default::default(),
            credentials_ref: None,
            deletion_policy: DeletionPolicy::Delete,
        },
    );
    g.metadata.namespace = Some(namespace.into());
    g
}

pub fn relay(namespace: &str, name: &str, kind: OrganizationKind, org: &str) -> Relay {
    let mut r = Relay::new(
        name,
        RelaySpec {
            organization_ref: owner(kind, org),
            display_name: None,
            config: Default::default(),
            credentials_ref: None,
            deletion_policy: DeletionPolicy::Delete,
        },
    );
    r.metadata.namespace = Some(namespace.into());
    r
}

/// A project membership of a user.
pub fn project_user(namespace: &str, name: &str, project: &str, email: &str) -> ProjectMembership {
    let mut m = ProjectMembership::new(
        name,
        ProjectMembershipSpec {
            project_ref: local(project),
            subject: Subject {
                kind: SubjectKind::User,
                email: Some(email.into()),
                name: None,
                namespace: None,
            },
            roles: vec![role("member")],
            invite: None,
            deletion_policy: DeletionPolicy::Delete,
        },
    );
    m.metadata.namespace = Some(namespace.into());
    m
}

/// A project membership of a group or machine identity.
pub fn project_subject(
    namespace: &str,
    name: &str,
    project: &str,
    kind: SubjectKind,
    subject: &str,
    subject_ns: Option<&str>,
) -> ProjectMembership {
    let mut m = project_user(namespace, name, project, "x@x.example");
    m.spec.subject = Subject {
        kind,
        email: None,
        name: Some(subject.into()),
        namespace: subject_ns.map(Into::into),
    };
    m
}

/// The problems a check found on the object named `name`.
pub fn problems_on<'o>(
    o: &'o suborg::domain::model::Outcome,
    name: &str,
) -> Vec<&'o suborg::domain::Problem> {
    o.problems
        .iter()
        .filter(|p| p.object.as_ref().is_some_and(|k| k.name == name))
        .collect()
}
