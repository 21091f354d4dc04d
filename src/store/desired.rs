//! The desired state of the store, computed from the objects the rules accepted.

use std::collections::HashMap;

use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;

use crate::api::{DeletionPolicy, OrganizationKind, RoleBinding, SubjectKind};
use crate::domain::model::{Accepted, ObjectSet};
use crate::domain::slug::{effective_slug, normalize_email};
use crate::domain::temporary::{self, RoleState};

/// An organization as the store should hold it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredOrg {
    /// Key of the source object: its uid, or `Kind/name` when it has none (offline).
    pub source_uid: String,
    /// `metadata.name` of the source object.
    pub source_name: String,
    /// `source_uid` of the parent, for a sub-organization.
    pub parent: Option<String>,
    /// Slug.
    pub slug: String,
    /// Display name.
    pub display_name: String,
    /// Authentication settings as JSON (Secret references, never secrets), roots only.
    pub auth: Option<String>,
    /// Delegation settings as JSON.
    pub member_namespaces: Option<String>,
    /// `Delete` or `Orphan`.
    pub deletion_policy: &'static str,
}

/// A membership as the store should hold it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredMembership {
    /// Key of the source object (for an admin named by a SubOrganization, derived from it).
    pub source_uid: String,
    /// `metadata.name` of the source object.
    pub source_name: String,
    /// `source_uid` of the organization.
    pub organization: String,
    /// The user's email, lowercased.
    pub email: String,
    /// The roles as JSON.
    pub roles: String,
    /// `Delete` or `Orphan`.
    pub deletion_policy: &'static str,
}

/// A group or machine identity as the store should hold it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredOwned {
    /// Key of the source object.
    pub source_uid: String,
    /// `metadata.name` of the source object.
    pub source_name: String,
    /// `source_uid` of the owning organization.
    pub organization: String,
    /// `namespace/name` of the source object.
    pub name: String,
    /// Display name.
    pub display_name: String,
    /// `Delete` or `Orphan`.
    pub deletion_policy: &'static str,
}

/// A member of a group.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DesiredGroupMember {
    /// A user, by lowercased email.
    User(String),
    /// A nested group, by its `source_uid`.
    Group(String),
}

/// A group with its members.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredGroup {
    /// The group itself.
    pub group: DesiredOwned,
    /// Its members, sorted.
    pub members: Vec<DesiredGroupMember>,
}

/// A root's group or machine identity added to a sub-organization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredSubjectMembership {
    /// Key of the source OrgMembership.
    pub source_uid: String,
    /// `metadata.name` of the source object.
    pub source_name: String,
    /// `source_uid` of the sub-organization.
    pub organization: String,
    /// `Group` or `MachineIdentity`.
    pub kind: &'static str,
    /// `source_uid` of the group or identity.
    pub subject: String,
    /// `namespace/name` of the group or identity, for people.
    pub subject_name: String,
    /// The roles as JSON.
    pub roles: String,
    /// `Delete` or `Orphan`.
    pub deletion_policy: &'static str,
}

/// An app connection, gateway or relay as the store should hold it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredResource {
    /// Key of the source object.
    pub source_uid: String,
    /// `metadata.name` of the source object.
    pub source_name: String,
    /// `source_uid` of the owning organization.
    pub organization: String,
    /// `AppConnection`, `Gateway` or `Relay`.
    pub kind: &'static str,
    /// `namespace/name` of the source object.
    pub name: String,
    /// Display name.
    pub display_name: String,
    /// The app of a connection.
    pub app: Option<String>,
    /// Non-secret settings as JSON.
    pub config: String,
    /// The credentials Secret as JSON (`namespace` and `name`: a reference, never its data).
    pub credentials: Option<String>,
    /// `source_uid` of a gateway's relay.
    pub relay: Option<String>,
    /// `Delete` or `Orphan`.
    pub deletion_policy: &'static str,
}

/// A project as the store should hold it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredProject {
    /// Key of the source object.
    pub source_uid: String,
    /// `metadata.name` of the source object.
    pub source_name: String,
    /// `source_uid` of the owning organization.
    pub organization: String,
    /// `namespace/name` of the source object.
    pub name: String,
    /// Slug, unique in the organization.
    pub slug: String,
    /// Display name.
    pub display_name: String,
    /// Description.
    pub description: Option<String>,
    /// `source_uid` of the gateway.
    pub gateway: Option<String>,
    /// `source_uid`s of the app connections, sorted.
    pub connections: Vec<String>,
    /// `Delete` or `Orphan`.
    pub deletion_policy: &'static str,
}

/// Who a project membership is for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ProjectSubject {
    /// A user, by lowercased email.
    User(String),
    /// A group or identity of the project's organization (`kind`, `source_uid`).
    Own(&'static str, String),
    /// A root's group or identity added to the project's sub-organization.
    Shared(&'static str, String),
}

/// A project membership as the store should hold it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredProjectMembership {
    /// Key of the source object.
    pub source_uid: String,
    /// `metadata.name` of the source object.
    pub source_name: String,
    /// `source_uid` of the project.
    pub project: String,
    /// `source_uid` of the project's organization.
    pub organization: String,
    /// The subject.
    pub subject: ProjectSubject,
    /// The subject for people: an email or `namespace/name`.
    pub subject_name: String,
    /// The roles as JSON.
    pub roles: String,
    /// `Delete` or `Orphan`.
    pub deletion_policy: &'static str,
}

/// Everything the store should hold: roots before sub-organizations, root memberships before
/// sub-organization memberships, nested groups before the groups that contain them, so each
/// row's references exist when it is written.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Desired {
    /// Organizations.
    pub organizations: Vec<DesiredOrg>,
    /// Memberships of users.
    pub memberships: Vec<DesiredMembership>,
    /// Groups.
    pub groups: Vec<DesiredGroup>,
    /// Machine identities.
    pub identities: Vec<DesiredOwned>,
    /// Groups and machine identities added to sub-organizations.
    pub subject_memberships: Vec<DesiredSubjectMembership>,
    /// App connections, gateways and relays: relays before the gateways that use them.
    pub resources: Vec<DesiredResource>,
    /// Projects.
    pub projects: Vec<DesiredProject>,
    /// Project memberships.
    pub project_memberships: Vec<DesiredProjectMembership>,
}

fn source_key<K: kube::Resource<DynamicType = ()>>(o: &K) -> String {
    match &o.meta().uid {
        Some(uid) => uid.clone(),
        None => match &o.meta().namespace {
            Some(ns) => format!("{}/{ns}/{}", K::kind(&()), o.name_any()),
            None => format!("{}/{}", K::kind(&()), o.name_any()),
        },
    }
}

/// What follows the object's key in the source of a membership a SubOrganization makes for
/// an admin it names (`<uid>#admin:<email>`).
pub(crate) const ADMIN_SOURCE: &str = "#admin:";
/// What follows the object's key in the source of a root membership a project invite makes
/// (`<uid>#invite:<email>`).
pub(crate) const INVITE_SOURCE: &str = "#invite:";

/// `namespace/name` of an object, as the store names groups, identities, projects and
/// connections.
fn ns_name(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> String {
    format!(
        "{}/{}",
        meta.namespace.as_deref().unwrap_or_default(),
        meta.name.as_deref().unwrap_or_default()
    )
}

fn policy(p: DeletionPolicy) -> &'static str {
    match p {
        DeletionPolicy::Delete => "Delete",
        DeletionPolicy::Orphan => "Orphan",
    }
}

fn roles_json(roles: &[RoleBinding]) -> String {
    serde_json::to_string(roles).expect("roles serialize")
}

/// The roles that still grant or will grant access at `now`: an expired temporary role is
/// dropped from the row, which is how its access is revoked.
fn live_roles(m: &crate::api::OrgMembership, now: Timestamp) -> Vec<RoleBinding> {
    live(&m.spec.roles, &m.metadata, now)
}

fn live(
    roles: &[RoleBinding],
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    now: Timestamp,
) -> Vec<RoleBinding> {
    let granted_at = meta.creation_timestamp.as_ref().map_or(now, |t| t.0);
    roles
        .iter()
        .filter(|r| {
            !matches!(
                temporary::state(r, granted_at, now),
                Ok(RoleState::Expired { .. })
            )
        })
        .cloned()
        .collect()
}

/// Orders groups so that nested groups come before the groups that contain them (the rules
/// have rejected cycles), iteratively.
fn order_groups(groups: &mut Vec<DesiredGroup>) {
    let position: HashMap<String, usize> = groups
        .iter()
        .enumerate()
        .map(|(i, g)| (g.group.source_uid.clone(), i))
        .collect();
    let n = groups.len();
    let mut pending = vec![0usize; n];
    let mut parents: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (i, g) in groups.iter().enumerate() {
        for m in &g.members {
            if let DesiredGroupMember::Group(uid) = m
                && let Some(&k) = position.get(uid)
            {
                pending[i] += 1;
                parents[k].push(i);
            }
        }
    }
    let mut order = Vec::with_capacity(n);
    let mut queue: std::collections::VecDeque<usize> =
        (0..n).filter(|&i| pending[i] == 0).collect();
    while let Some(i) = queue.pop_front() {
        order.push(i);
        for &p in &parents[i] {
            pending[p] -= 1;
            if pending[p] == 0 {
                queue.push_back(p);
            }
        }
    }
    // Anything left (not expected) keeps its place at the end.
    let placed: std::collections::HashSet<usize> = order.iter().copied().collect();
    order.extend((0..n).filter(|i| !placed.contains(i)));
    let mut slots: Vec<Option<DesiredGroup>> =
        std::mem::take(groups).into_iter().map(Some).collect();
    *groups = order.into_iter().filter_map(|i| slots[i].take()).collect();
}

/// The desired state at `now` for the objects of `set` that `accepted` lists.
pub fn desired_from(set: &ObjectSet, accepted: &Accepted, now: Timestamp) -> Desired {
    let mut d = Desired::default();
    let mut roots: HashMap<&str, String> = HashMap::new();
    for &i in &accepted.organizations {
        let o = &set.organizations[i];
        let name = o.metadata.name.as_deref().unwrap_or_default();
        let slug = effective_slug(name, o.spec.slug.as_deref()).to_owned();
        let key = source_key(o);
        roots.insert(name, key.clone());
        d.organizations.push(DesiredOrg {
            source_uid: key,
            source_name: name.to_owned(),
            parent: None,
            display_name: o.spec.display_name.clone().unwrap_or_else(|| slug.clone()),
            slug,
            auth: o
                .spec
                .authentication
                .as_ref()
                .map(|a| serde_json::to_string(a).expect("serializes")),
            member_namespaces: o
                .spec
                .member_namespaces
                .as_ref()
                .map(|m| serde_json::to_string(m).expect("serializes")),
            deletion_policy: policy(o.spec.deletion_policy),
        });
    }
    let mut subs: HashMap<&str, String> = HashMap::new();
    for &i in &accepted.sub_organizations {
        let s = &set.sub_organizations[i];
        let name = s.metadata.name.as_deref().unwrap_or_default();
        let slug = effective_slug(name, s.spec.slug.as_deref()).to_owned();
        let key = source_key(s);
        subs.insert(name, key.clone());
        d.organizations.push(DesiredOrg {
            source_uid: key,
            source_name: name.to_owned(),
            parent: roots.get(s.spec.organization_ref.name.as_str()).cloned(),
            display_name: s.spec.display_name.clone().unwrap_or_else(|| slug.clone()),
            slug,
            auth: None,
            member_namespaces: s
                .spec
                .member_namespaces
                .as_ref()
                .map(|m| serde_json::to_string(m).expect("serializes")),
            deletion_policy: policy(s.spec.deletion_policy),
        });
    }
    let org_key = |r: &crate::api::OrganizationRef| match r.kind {
        OrganizationKind::Organization => roots.get(r.name.as_str()).cloned(),
        OrganizationKind::SubOrganization => subs.get(r.name.as_str()).cloned(),
    };
    let mut group_keys: HashMap<String, String> = HashMap::new();
    for &i in &accepted.groups {
        group_keys.insert(ns_name(&set.groups[i].metadata), source_key(&set.groups[i]));
    }
    for &i in &accepted.groups {
        let g = &set.groups[i];
        let Some(organization) = org_key(&g.spec.organization_ref) else {
            continue;
        };
        let ns = g.metadata.namespace.as_deref().unwrap_or_default();
        let mut members: Vec<DesiredGroupMember> = g
            .spec
            .members
            .iter()
            .filter_map(|m| match m.kind {
                crate::api::GroupMemberKind::User => Some(DesiredGroupMember::User(
                    normalize_email(m.email.as_deref().unwrap_or_default()),
                )),
                crate::api::GroupMemberKind::Group => group_keys
                    .get(&format!(
                        "{}/{}",
                        m.namespace.as_deref().unwrap_or(ns),
                        m.name.as_deref().unwrap_or_default()
                    ))
                    .cloned()
                    .map(DesiredGroupMember::Group),
            })
            .collect();
        members.sort();
        let name = ns_name(&g.metadata);
        d.groups.push(DesiredGroup {
            group: DesiredOwned {
                source_uid: source_key(g),
                source_name: g.name_any(),
                organization,
                display_name: g.spec.display_name.clone().unwrap_or_else(|| g.name_any()),
                name,
                deletion_policy: policy(g.spec.deletion_policy),
            },
            members,
        });
    }
    order_groups(&mut d.groups);
    let mut identity_keys: HashMap<String, String> = HashMap::new();
    for &i in &accepted.identities {
        let m = &set.identities[i];
        let Some(organization) = org_key(&m.spec.organization_ref) else {
            continue;
        };
        identity_keys.insert(ns_name(&m.metadata), source_key(m));
        d.identities.push(DesiredOwned {
            source_uid: source_key(m),
            source_name: m.name_any(),
            organization,
            name: ns_name(&m.metadata),
            display_name: m.spec.display_name.clone().unwrap_or_else(|| m.name_any()),
            deletion_policy: policy(m.spec.deletion_policy),
        });
    }
    for &i in &accepted.memberships {
        let m = &set.memberships[i];
        let (kind, keys) = match m.spec.subject.kind {
            SubjectKind::User => continue,
            SubjectKind::Group => ("Group", &group_keys),
            SubjectKind::MachineIdentity => ("MachineIdentity", &identity_keys),
        };
        let subject_name = format!(
            "{}/{}",
            m.spec
                .subject
                .namespace
                .as_deref()
                .or(m.metadata.namespace.as_deref())
                .unwrap_or_default(),
            m.spec.subject.name.as_deref().unwrap_or_default()
        );
        let (Some(organization), Some(subject)) = (
            org_key(&m.spec.organization_ref),
            keys.get(&subject_name).cloned(),
        ) else {
            continue;
        };
        d.subject_memberships.push(DesiredSubjectMembership {
            source_uid: source_key(m),
            source_name: m.name_any(),
            organization,
            kind,
            subject,
            subject_name,
            roles: roles_json(&live_roles(m, now)),
            deletion_policy: policy(m.spec.deletion_policy),
        });
    }
    let mut explicit: HashMap<(String, String), usize> = HashMap::new();
    let mut order: Vec<usize> = accepted.memberships.clone();
    order.sort_by_key(|&i| {
        set.memberships[i].spec.organization_ref.kind == OrganizationKind::SubOrganization
    });
    for i in order {
        let m = &set.memberships[i];
        if m.spec.subject.kind != SubjectKind::User {
            continue;
        }
        let r = &m.spec.organization_ref;
        let organization = match r.kind {
            OrganizationKind::Organization => roots.get(r.name.as_str()),
            OrganizationKind::SubOrganization => subs.get(r.name.as_str()),
        };
        let Some(organization) = organization.cloned() else {
            continue;
        };
        let email = normalize_email(m.spec.subject.email.as_deref().unwrap_or_default());
        explicit.insert((organization.clone(), email.clone()), d.memberships.len());
        d.memberships.push(DesiredMembership {
            source_uid: source_key(m),
            source_name: m.name_any(),
            organization,
            email,
            roles: roles_json(&live_roles(m, now)),
            deletion_policy: policy(m.spec.deletion_policy),
        });
    }
    // Admins named by a sub-organization hold `admin` there: added to their membership when
    // they have one, otherwise a membership of their own, owned by the sub-organization.
    for &i in &accepted.sub_organizations {
        let s = &set.sub_organizations[i];
        let key = source_key(s);
        for admin in &s.spec.admins {
            let email = normalize_email(admin);
            match explicit.get(&(key.clone(), email.clone())) {
                Some(&j) => {
                    let m = &mut d.memberships[j];
                    let mut roles: Vec<RoleBinding> =
                        serde_json::from_str(&m.roles).expect("written above");
                    if !roles
                        .iter()
                        .any(|r| r.role == "admin" && r.temporary.is_none())
                    {
                        roles.retain(|r| r.role != "admin");
                        roles.push(RoleBinding {
                            role: "admin".into(),
                            temporary: None,
                        });
                        m.roles = roles_json(&roles);
                    }
                }
                None => d.memberships.push(DesiredMembership {
                    source_uid: format!("{key}{ADMIN_SOURCE}{email}"),
                    source_name: s.name_any(),
                    organization: key.clone(),
                    email,
                    roles: roles_json(&[RoleBinding {
                        role: "admin".into(),
                        temporary: None,
                    }]),
                    deletion_policy: policy(s.spec.deletion_policy),
                }),
            }
        }
    }
    add_projects(set, accepted, now, &org_key, &explicit, &mut d);
    // A group's users are the members of its organization it lists; the rules warned about
    // the others, who are left out.
    let members: std::collections::HashSet<(&str, &str)> = d
        .memberships
        .iter()
        .map(|m| (m.organization.as_str(), m.email.as_str()))
        .collect();
    let kept: Vec<Vec<DesiredGroupMember>> = d
        .groups
        .iter()
        .map(|g| {
            g.members
                .iter()
                .filter(|m| match m {
                    DesiredGroupMember::User(email) => {
                        members.contains(&(g.group.organization.as_str(), email.as_str()))
                    }
                    DesiredGroupMember::Group(_) => true,
                })
                .cloned()
                .collect()
        })
        .collect();
    for (g, members) in d.groups.iter_mut().zip(kept) {
        g.members = members;
    }
    d
}

/// Connections, gateways, relays, projects, project memberships, and the root memberships of
/// users provisioned by a project invite.
fn add_projects(
    set: &ObjectSet,
    accepted: &Accepted,
    now: Timestamp,
    org_key: &dyn Fn(&crate::api::OrganizationRef) -> Option<String>,
    explicit: &HashMap<(String, String), usize>,
    d: &mut Desired,
) {
    use crate::api::OrgResource;
    fn resources<K: OrgResource>(
        list: &[K],
        indexes: &[usize],
        org_key: &dyn Fn(&crate::api::OrganizationRef) -> Option<String>,
        relays: &HashMap<String, String>,
        out: &mut Vec<DesiredResource>,
    ) -> HashMap<String, String> {
        let mut keys = HashMap::new();
        for &i in indexes {
            let o = &list[i];
            let Some(organization) = org_key(o.organization_ref()) else {
                continue;
            };
            let ns = o.meta().namespace.as_deref().unwrap_or_default();
            let name = ns_name(o.meta());
            keys.insert(name.clone(), source_key(o));
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
                    .and_then(|r| relays.get(&r.qualified(ns)).cloned()),
                name,
                deletion_policy: policy(o.deletion_policy()),
            });
        }
        keys
    }
    let none = HashMap::new();
    let relays = resources(
        &set.relays,
        &accepted.relays,
        org_key,
        &none,
        &mut d.resources,
    );
    let gateways = resources(
        &set.gateways,
        &accepted.gateways,
        org_key,
        &relays,
        &mut d.resources,
    );
    let connections = resources(
        &set.connections,
        &accepted.connections,
        org_key,
        &none,
        &mut d.resources,
    );

    let mut projects: HashMap<String, (String, String, bool)> = HashMap::new();
    for &i in &accepted.projects {
        let p = &set.projects[i];
        let Some(organization) = org_key(&p.spec.organization_ref) else {
            continue;
        };
        let ns = p.metadata.namespace.as_deref().unwrap_or_default();
        let name = ns_name(&p.metadata);
        let slug = effective_slug(&p.name_any(), p.spec.slug.as_deref()).to_owned();
        let mut uses: Vec<String> = p
            .spec
            .app_connections
            .iter()
            .filter_map(|r| connections.get(&r.qualified(ns)).cloned())
            .collect();
        uses.sort();
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
            gateway: p
                .spec
                .gateway_ref
                .as_ref()
                .and_then(|r| gateways.get(&r.qualified(ns)).cloned()),
            connections: uses,
            deletion_policy: policy(p.spec.deletion_policy),
        });
    }

    // Groups and identities by `namespace/name`: (source uid, owner's source uid), as the
    // desired state already holds them.
    let owned: HashMap<(SubjectKind, String), (String, String)> = d
        .groups
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
        .collect();
    let mut invited: HashMap<(String, String), usize> = HashMap::new();
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
                    // Provisioned by the invite: a root membership keyed by the first project
                    // membership that invites the user (another takes the row over when that
                    // one goes), so a conflict on it holds back that object alone.
                    invited.insert((organization.clone(), email.clone()), d.memberships.len());
                    d.memberships.push(DesiredMembership {
                        source_uid: format!("{}{INVITE_SOURCE}{email}", source_key(m)),
                        source_name: m.name_any(),
                        organization: organization.clone(),
                        email: email.clone(),
                        roles: roles_json(&[RoleBinding {
                            role: invite.organization_role.clone(),
                            temporary: None,
                        }]),
                        // An orphaned project membership keeps the root membership it needs.
                        deletion_policy: policy(m.spec.deletion_policy),
                    });
                }
                (ProjectSubject::User(email.clone()), email)
            }
            kind => {
                let name = format!(
                    "{}/{}",
                    s.namespace.as_deref().unwrap_or(ns),
                    s.name.as_deref().unwrap_or_default()
                );
                let Some((uid, owner)) = owned.get(&(kind, name.clone())) else {
                    continue;
                };
                let kind = if kind == SubjectKind::Group {
                    "Group"
                } else {
                    "MachineIdentity"
                };
                if *owner == organization {
                    (ProjectSubject::Own(kind, uid.clone()), name)
                } else {
                    (ProjectSubject::Shared(kind, uid.clone()), name)
                }
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
