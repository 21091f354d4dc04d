//! Organizations and the memberships of users in them.

use std::collections::{HashMap, HashSet};

use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;

use super::values::{live, policy, roles_json, source_key};
use crate::api::{OrganizationKind, OrganizationRef, RoleBinding, SubjectKind};
use crate::domain::model::{Accepted, ObjectSet};
use crate::domain::slug::{effective_slug, normalize_email};
use crate::domain::temporary::any_in_effect;
use crate::store::{ADMIN_SOURCE, Desired, DesiredMembership, DesiredOrg};

/// The source keys of the accepted organizations, by `metadata.name`: how the other objects'
/// references become row references.
pub(super) struct OrgKeys<'s> {
    roots: HashMap<&'s str, String>,
    subs: HashMap<&'s str, String>,
}

impl OrgKeys<'_> {
    /// The source key of the organization `r` names, when it was accepted.
    pub(super) fn key(&self, r: &OrganizationRef) -> Option<String> {
        self.get(r).cloned()
    }

    fn get(&self, r: &OrganizationRef) -> Option<&String> {
        match r.kind {
            OrganizationKind::Organization => self.roots.get(r.name.as_str()),
            OrganizationKind::SubOrganization => self.subs.get(r.name.as_str()),
        }
    }
}

/// Memberships by (organization key, email): the index of each in `Desired::memberships`.
pub(super) type Explicit = HashMap<(String, String), usize>;

/// Users' memberships with no role in effect now (every role expired or still to start), by
/// index into [`Desired::memberships`]: their rows stay, but they let nothing in (see
/// `domain::lookup::Presence::Idle`), so no group lists them.
pub(super) type Idle = HashSet<usize>;

/// Roots, then sub-organizations.
pub(super) fn organizations<'s>(
    set: &'s ObjectSet,
    accepted: &Accepted,
    d: &mut Desired,
) -> OrgKeys<'s> {
    let mut keys = OrgKeys {
        roots: HashMap::new(),
        subs: HashMap::new(),
    };
    for &i in &accepted.organizations {
        let o = &set.organizations[i];
        let name = o.metadata.name.as_deref().unwrap_or_default();
        let slug = effective_slug(name, o.spec.slug.as_deref()).to_owned();
        let key = source_key(o);
        keys.roots.insert(name, key.clone());
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
    for &i in &accepted.sub_organizations {
        let s = &set.sub_organizations[i];
        let name = s.metadata.name.as_deref().unwrap_or_default();
        let slug = effective_slug(name, s.spec.slug.as_deref()).to_owned();
        let key = source_key(s);
        keys.subs.insert(name, key.clone());
        d.organizations.push(DesiredOrg {
            source_uid: key,
            source_name: name.to_owned(),
            parent: keys
                .roots
                .get(s.spec.organization_ref.name.as_str())
                .cloned(),
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
    keys
}

/// The memberships of users, roots' first so a sub-organization's member is already a member
/// of its root when the row is written; returns where each went.
pub(super) fn memberships(
    set: &ObjectSet,
    accepted: &Accepted,
    keys: &OrgKeys<'_>,
    now: Timestamp,
    d: &mut Desired,
) -> (Explicit, Idle) {
    let mut explicit = Explicit::new();
    let mut idle = Idle::new();
    let mut order: Vec<usize> = accepted.memberships.clone();
    order.sort_by_key(|&i| {
        set.memberships[i].spec.organization_ref.kind == OrganizationKind::SubOrganization
    });
    for i in order {
        let m = &set.memberships[i];
        if m.spec.subject.kind != SubjectKind::User {
            continue;
        }
        let Some(organization) = keys.key(&m.spec.organization_ref) else {
            continue;
        };
        let email = normalize_email(m.spec.subject.email.as_deref().unwrap_or_default());
        explicit.insert((organization.clone(), email.clone()), d.memberships.len());
        if !any_in_effect(&m.spec.roles, &m.metadata, now) {
            idle.insert(d.memberships.len());
        }
        d.memberships.push(DesiredMembership {
            source_uid: source_key(m),
            source_name: m.name_any(),
            organization,
            email,
            roles: roles_json(&live(&m.spec.roles, &m.metadata, now)),
            deletion_policy: policy(m.spec.deletion_policy),
        });
    }
    (explicit, idle)
}

/// Admins named by a sub-organization hold `admin` there, once they are members of its root:
/// added to their membership when they have one, otherwise a membership of their own, owned by
/// the sub-organization.
/// An admin's own membership is in effect from then on (`idle` forgets it).
pub(super) fn admins(
    set: &ObjectSet,
    accepted: &Accepted,
    explicit: &Explicit,
    idle: &mut Idle,
    d: &mut Desired,
) {
    for &(i, j) in &accepted.admins {
        let s = &set.sub_organizations[i];
        let key = source_key(s);
        let email = normalize_email(&s.spec.admins[j]);
        match explicit.get(&(key.clone(), email.clone())) {
            Some(&m) => {
                make_admin(&mut d.memberships[m]);
                idle.remove(&m);
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

/// Gives `m` a permanent `admin` role, in place of a temporary one.
fn make_admin(m: &mut DesiredMembership) {
    let mut roles: Vec<RoleBinding> = serde_json::from_str(&m.roles).expect("written above");
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
