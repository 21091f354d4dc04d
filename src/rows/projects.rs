//! App connections, gateways, relays, projects and project memberships, and the root
//! memberships of users provisioned by a project invite.

use std::collections::HashMap;

use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;

use super::orgs::{Explicit, OrgKeys};
use super::values::{live, ns_name, policy, roles_json, source_key};
use crate::api::{
    OrgResource, OrganizationKind, ProjectMembership, RoleBinding, Subject, SubjectKind,
};
use crate::domain::model::{Accepted, ObjectSet};
use crate::domain::slug::{effective_slug, normalize_email};
use crate::store::{
    Desired, DesiredMembership, DesiredProject, DesiredProjectMembership, DesiredResource,
    INVITE_SOURCE, ProjectSubject,
};

/// A project by `namespace/name`: (source key, organization's source key, whether that is a
/// root).
type ProjectKeys = HashMap<String, (String, String, bool)>;

/// Everything project-related, relays before the gateways that use them.
pub(super) fn add(
    set: &ObjectSet,
    accepted: &Accepted,
    now: Timestamp,
    orgs: &OrgKeys<'_>,
    explicit: &Explicit,
    d: &mut Desired,
) {
    let none = HashMap::new();
    let out = &mut d.resources;
    let relays = resources(&set.relays, &accepted.relays, orgs, &none, out);
    let gateways = resources(&set.gateways, &accepted.gateways, orgs, &relays, out);
    let connections = resources(&set.connections, &accepted.connections, orgs, &none, out);
    let projects = projects(set, accepted, orgs, &gateways, &connections, d);
    project_memberships(set, accepted, now, &projects, explicit, d);
}

/// The resources of one kind; returns their source keys, and their organization's, by
/// `namespace/name`.
fn resources<K: OrgResource>(
    list: &[K],
    indexes: &[usize],
    orgs: &OrgKeys<'_>,
    relays: &HashMap<String, (String, String)>,
    out: &mut Vec<DesiredResource>,
) -> HashMap<String, (String, String)> {
    let mut keys = HashMap::new();
    for &i in indexes {
        let o = &list[i];
        let Some(organization) = orgs.key(o.organization_ref()) else {
            continue;
        };
        let ns = o.meta().namespace.as_deref().unwrap_or_default();
        let name = ns_name(o.meta());
        keys.insert(name.clone(), (source_key(o), organization.clone()));
        out.push(DesiredResource {
            source_uid: source_key(o),
            source_name: o.name_any(),
            organization,
            kind: K::KIND,
            display_name: o.display_name().map_or_else(|| o.name_any(), str::to_owned),
            app: o.app().map(str::to_owned),
            config: serde_json::to_string(o.config()).expect("a map of strings serializes"),
            credentials: o.credentials_ref().map(|c| {
                serde_json::json!({"namespace": c.namespace.as_deref().unwrap_or(ns), "name": c.name})
                    .to_string()
            }),
            relay: o
                .relay_ref()
                .and_then(|r| relays.get(&r.qualified(ns)))
                .map(|(key, _)| key.clone()),
            name,
            deletion_policy: policy(o.deletion_policy()),
        });
    }
    keys
}

fn projects(
    set: &ObjectSet,
    accepted: &Accepted,
    orgs: &OrgKeys<'_>,
    gateways: &HashMap<String, (String, String)>,
    connections: &HashMap<String, (String, String)>,
    d: &mut Desired,
) -> ProjectKeys {
    let mut projects = ProjectKeys::new();
    for &i in &accepted.projects {
        let p = &set.projects[i];
        let Some(organization) = orgs.key(&p.spec.organization_ref) else {
            continue;
        };
        let ns = p.metadata.namespace.as_deref().unwrap_or_default();
        let name = ns_name(&p.metadata);
        let slug = effective_slug(&p.name_any(), p.spec.slug.as_deref()).to_owned();
        // A project uses its own organization's connections and gateway only; a reference
        // the rules refused is left out, and the project kept.
        let own = |found: Option<&(String, String)>| {
            found
                .filter(|(_, org)| *org == organization)
                .map(|(key, _)| key.clone())
        };
        let mut uses: Vec<String> = p
            .spec
            .app_connections
            .iter()
            .filter_map(|r| own(connections.get(&r.qualified(ns))))
            .collect();
        uses.sort();
        uses.dedup();
        let gateway = p
            .spec
            .gateway_ref
            .as_ref()
            .and_then(|r| own(gateways.get(&r.qualified(ns))));
        projects.insert(
            name.clone(),
            (
                source_key(p),
                organization.clone(),
                p.spec.organization_ref.kind == OrganizationKind::Organization,
            ),
        );
        d.projects.push(DesiredProject {
            source_uid: source_key(p),
            source_name: p.name_any(),
            organization,
            name,
            display_name: p.spec.display_name.clone().unwrap_or_else(|| slug.clone()),
            slug,
            description: p.spec.description.clone(),
            gateway,
            connections: uses,
            deletion_policy: policy(p.spec.deletion_policy),
        });
    }
    projects
}

fn project_memberships(
    set: &ObjectSet,
    accepted: &Accepted,
    now: Timestamp,
    projects: &ProjectKeys,
    explicit: &Explicit,
    d: &mut Desired,
) {
    let owned = owned_by_name(d);
    let mut invited = Explicit::new();
    for &i in &accepted.project_memberships {
        let m = &set.project_memberships[i];
        let ns = m.metadata.namespace.as_deref().unwrap_or_default();
        let Some((project, organization, at_root)) =
            projects.get(&m.spec.project_ref.qualified(ns)).cloned()
        else {
            continue;
        };
        let s = &m.spec.subject;
        let (subject, subject_name) = match s.kind {
            SubjectKind::User => {
                let email = normalize_email(s.email.as_deref().unwrap_or_default());
                if at_root
                    && let Some(invite) = &m.spec.invite
                    && !explicit.contains_key(&(organization.clone(), email.clone()))
                    && !invited.contains_key(&(organization.clone(), email.clone()))
                {
                    invited.insert((organization.clone(), email.clone()), d.memberships.len());
                    d.memberships.push(invitation(
                        m,
                        &organization,
                        &email,
                        &invite.organization_role,
                    ));
                }
                (ProjectSubject::User(email.clone()), email)
            }
            kind => {
                let Some(subject) = owned_subject(&owned, kind, s, ns, &organization) else {
                    continue;
                };
                subject
            }
        };
        d.project_memberships.push(DesiredProjectMembership {
            source_uid: source_key(m),
            source_name: m.name_any(),
            project,
            organization,
            subject,
            subject_name,
            roles: roles_json(&live(&m.spec.roles, &m.metadata, now)),
            deletion_policy: policy(m.spec.deletion_policy),
        });
    }
}

/// Groups and identities by (kind, `namespace/name`): (source uid, owner's source uid), as
/// the desired state already holds them.
type OwnedByName = HashMap<(SubjectKind, String), (String, String)>;

fn owned_by_name(d: &Desired) -> OwnedByName {
    d.groups
        .iter()
        .map(|g| (SubjectKind::Group, &g.group))
        .chain(
            d.identities
                .iter()
                .map(|i| (SubjectKind::MachineIdentity, i)),
        )
        .map(|(kind, o)| {
            (
                (kind, o.name.clone()),
                (o.source_uid.clone(), o.organization.clone()),
            )
        })
        .collect()
}

/// The group or identity `s` of a project membership in namespace `ns`, with its
/// `namespace/name`: the project organization's own, or shared with it by the root.
fn owned_subject(
    owned: &OwnedByName,
    kind: SubjectKind,
    s: &Subject,
    ns: &str,
    organization: &str,
) -> Option<(ProjectSubject, String)> {
    let name = format!(
        "{}/{}",
        s.namespace.as_deref().unwrap_or(ns),
        s.name.as_deref().unwrap_or_default()
    );
    let (uid, owner) = owned.get(&(kind, name.clone()))?;
    let kind = if kind == SubjectKind::Group {
        "Group"
    } else {
        "MachineIdentity"
    };
    Some(if *owner == organization {
        (ProjectSubject::Own(kind, uid.clone()), name)
    } else {
        (ProjectSubject::Shared(kind, uid.clone()), name)
    })
}

/// The root membership a project invite provisions: keyed by the first project membership
/// that invites the user (another takes the row over when that one goes), so a conflict on it
/// holds back that object alone.
fn invitation(
    m: &ProjectMembership,
    organization: &str,
    email: &str,
    role: &str,
) -> DesiredMembership {
    DesiredMembership {
        source_uid: format!("{}{INVITE_SOURCE}{email}", source_key(m)),
        source_name: m.name_any(),
        organization: organization.to_owned(),
        email: email.to_owned(),
        roles: roles_json(&[RoleBinding {
            role: role.to_owned(),
            temporary: None,
        }]),
        // An orphaned project membership keeps the root membership it needs.
        deletion_policy: policy(m.spec.deletion_policy),
    }
}
