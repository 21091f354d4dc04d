//! Groups and machine identities, and the root's ones added to sub-organizations.

use std::collections::{HashMap, HashSet, VecDeque};

use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;

use super::orgs::OrgKeys;
use super::values::{live, ns_name, policy, roles_json, source_key};
use crate::api::{GroupMemberKind, OrganizationRef, SubjectKind};
use crate::domain::model::{Accepted, ObjectSet};
use crate::domain::slug::normalize_email;
use crate::store::{
    Desired, DesiredGroup, DesiredGroupMember, DesiredOwned, DesiredSubjectMembership,
};

/// The source keys of groups and identities by `namespace/name`.
pub(super) struct OwnedKeys {
    groups: HashMap<String, String>,
    identities: HashMap<String, String>,
}

/// Groups, nested ones before the groups that contain them, then identities.
pub(super) fn groups_and_identities(
    set: &ObjectSet,
    accepted: &Accepted,
    orgs: &OrgKeys<'_>,
    d: &mut Desired,
) -> OwnedKeys {
    let mut groups: HashMap<String, String> = HashMap::new();
    // Whose each accepted group is: a group nests only its own organization's groups (the
    // rules leave any other out, with an error), and the store holds it to that.
    let mut owners: HashMap<String, &OrganizationRef> = HashMap::new();
    for &i in &accepted.groups {
        let g = &set.groups[i];
        groups.insert(ns_name(&g.metadata), source_key(g));
        owners.insert(ns_name(&g.metadata), &g.spec.organization_ref);
    }
    for &i in &accepted.groups {
        let g = &set.groups[i];
        let Some(organization) = orgs.key(&g.spec.organization_ref) else {
            continue;
        };
        let ns = g.metadata.namespace.as_deref().unwrap_or_default();
        let mut members: Vec<DesiredGroupMember> = g
            .spec
            .members
            .iter()
            .filter_map(|m| match m.kind {
                GroupMemberKind::User => Some(DesiredGroupMember::User(normalize_email(
                    m.email.as_deref().unwrap_or_default(),
                ))),
                GroupMemberKind::Group => {
                    let id = format!(
                        "{}/{}",
                        m.namespace.as_deref().unwrap_or(ns),
                        m.name.as_deref().unwrap_or_default()
                    );
                    (owners.get(&id) == Some(&&g.spec.organization_ref))
                        .then(|| groups.get(&id).cloned())
                        .flatten()
                        .map(DesiredGroupMember::Group)
                }
            })
            .collect();
        members.sort();
        // A member listed twice (reported as DuplicateGroupMember) is a member once.
        members.dedup();
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
    let mut identities: HashMap<String, String> = HashMap::new();
    for &i in &accepted.identities {
        let m = &set.identities[i];
        let Some(organization) = orgs.key(&m.spec.organization_ref) else {
            continue;
        };
        identities.insert(ns_name(&m.metadata), source_key(m));
        d.identities.push(DesiredOwned {
            source_uid: source_key(m),
            source_name: m.name_any(),
            organization,
            name: ns_name(&m.metadata),
            display_name: m.spec.display_name.clone().unwrap_or_else(|| m.name_any()),
            deletion_policy: policy(m.spec.deletion_policy),
        });
    }
    OwnedKeys { groups, identities }
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
    let mut queue: VecDeque<usize> = (0..n).filter(|&i| pending[i] == 0).collect();
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
    let placed: HashSet<usize> = order.iter().copied().collect();
    order.extend((0..n).filter(|i| !placed.contains(i)));
    let mut slots: Vec<Option<DesiredGroup>> =
        std::mem::take(groups).into_iter().map(Some).collect();
    *groups = order.into_iter().filter_map(|i| slots[i].take()).collect();
}

/// OrgMemberships whose subject is a group or identity: the root's, added to a
/// sub-organization.
pub(super) fn subject_memberships(
    set: &ObjectSet,
    accepted: &Accepted,
    orgs: &OrgKeys<'_>,
    owned: &OwnedKeys,
    now: Timestamp,
    d: &mut Desired,
) {
    for &i in &accepted.memberships {
        let m = &set.memberships[i];
        let (kind, keys) = match m.spec.subject.kind {
            SubjectKind::User => continue,
            SubjectKind::Group => ("Group", &owned.groups),
            SubjectKind::MachineIdentity => ("MachineIdentity", &owned.identities),
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
            orgs.key(&m.spec.organization_ref),
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
            roles: roles_json(&live(&m.spec.roles, &m.metadata, now)),
            deletion_policy: policy(m.spec.deletion_policy),
        });
    }
}

/// A group's users are the members of its organization it lists, with a role in effect there
/// (not `idle`); the rules warned about the others, who are left out. Run last: a project
/// invite can make a member too.
pub(super) fn keep_members_of_owner(d: &mut Desired, idle: &super::orgs::Idle) {
    let members: HashSet<(&str, &str)> = d
        .memberships
        .iter()
        .enumerate()
        .filter(|(i, _)| !idle.contains(i))
        .map(|(_, m)| (m.organization.as_str(), m.email.as_str()))
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
}
