//! Groups and machine identities (the seed's "Working with Groups" and "Working with Machine
//! Identities"): each belongs to the organization that created it. A root's groups and
//! identities are usable in a sub-organization once a membership adds them there (see
//! [`super::memberships`]); a sub-organization's own are visible there alone. A group lists
//! users who are members of its organization and, in a sub-organization, groups of that same
//! sub-organization, without cycles.
//!
//! A listed user who is not (or no longer) a member of the group's organization is left out
//! of the group with a warning rather than rejecting the group: removing someone from an
//! organization revokes what they had through its groups at once, without taking the group
//! away from everyone else in it.
//!
//! Linear in objects plus group edges: nesting is resolved by a topological pass, never by
//! recursion, so a chain 10,000 groups deep is as cheap as 10,000 flat groups.

use std::collections::{HashMap, HashSet, VecDeque};

use kube::ResourceExt;

use super::lookup::{Organizations, Owned, Presence, UserMembers};
use super::model::{ObjectSet, Outcome, group_key, identity_key, ns_name};
use super::placement::{Target, place, presence_of};
use super::problem::{ObjectKey, Problem, Reason};
use super::slug::normalize_email;
use crate::api::{Group, GroupMember, GroupMemberKind, MachineIdentity, OrganizationKind};

/// Phase 8: every group and machine identity, given the users' memberships of roots
/// (`root_members`) and of sub-organizations (`sub_members`).
pub(super) fn check<'a>(
    orgs: &Organizations<'a>,
    root_members: &UserMembers<'_>,
    sub_members: &UserMembers<'_>,
    out: &mut Outcome,
) -> Owned<'a> {
    let identities = check_identities(orgs, out);
    let groups = check_groups(orgs, root_members, sub_members, out);
    Owned { groups, identities }
}

/// Identities by `(namespace, name)`: an identity needs only its organization.
fn check_identities<'a>(
    orgs: &Organizations<'a>,
    out: &mut Outcome,
) -> HashMap<(&'a str, &'a str), (Presence, &'a MachineIdentity)> {
    let set = orgs.set;
    let mut identities = HashMap::with_capacity(set.identities.len());
    for (i, m) in set.identities.iter().enumerate() {
        let key = identity_key(m);
        let placed = place(
            orgs,
            &m.spec.organization_ref,
            &key,
            "machine identities",
            out,
        );
        if placed.is_ok() {
            out.accepted.identities.push(i);
        }
        identities.insert(ns_name(m), (presence_of(&placed, true), m));
    }
    identities
}

/// Groups by `(namespace, name)`, given the users' memberships as for [`check`].
fn check_groups<'a>(
    orgs: &Organizations<'a>,
    root_members: &UserMembers<'_>,
    sub_members: &UserMembers<'_>,
    out: &mut Outcome,
) -> HashMap<(&'a str, &'a str), (Presence, &'a Group)> {
    let set = orgs.set;
    let n = set.groups.len();
    let index: HashMap<(&str, &str), usize> = set
        .groups
        .iter()
        .enumerate()
        .map(|(i, g)| (ns_name(g), i))
        .collect();
    // Per group: may it be accepted as far as it alone goes, and which groups it nests.
    let mut fine = vec![false; n];
    let mut nested: Vec<Vec<usize>> = vec![Vec::new(); n];
    // Every group placed before any nests another: whether one is refused for its namespace
    // decides what a group naming it from elsewhere is told.
    let placed: Vec<_> = set
        .groups
        .iter()
        .map(|g| place(orgs, &g.spec.organization_ref, &group_key(g), "groups", out))
        .collect();
    let foreign: Vec<bool> = placed
        .iter()
        .map(|p| matches!(p, Err(Presence::Foreign)))
        .collect();
    for (i, (g, placed)) in set.groups.iter().zip(placed).enumerate() {
        let key = group_key(g);
        let Ok(target) = placed else {
            continue;
        };
        let users = match target.kind {
            OrganizationKind::Organization => root_members,
            OrganizationKind::SubOrganization => sub_members,
        };
        let group = PlacedGroup {
            set,
            g,
            i,
            key,
            target,
            index: &index,
            foreign: &foreign,
            root_members,
        };
        fine[i] = group.check_members(users, &mut nested[i], out);
    }
    let decided = decide(&fine, &nested);
    name_cycles(set, &nested, &decided, out);
    left_out_nested(set, &nested, &decided, out);

    let mut groups = HashMap::with_capacity(n);
    for (i, g) in set.groups.iter().enumerate() {
        let accepted = decided[i] == Some(true);
        if accepted {
            out.accepted.groups.push(i);
        }
        let presence = if foreign[i] {
            Presence::Foreign
        } else {
            Presence::of(accepted)
        };
        groups.insert(ns_name(g), (presence, g));
    }
    groups
}

/// What a group listed as a member of another turned out to be.
enum Nested {
    /// A group that may be nested: its index.
    Group(usize),
    /// An error that rejects the listing group.
    Refused(Problem),
    /// The listed group does not exist, or is rejected on its own (and says why): a warning;
    /// or it is not one the listing group may nest (another organization's; or named in
    /// another namespace, missing or refused there too): an error, as for a project's wrong
    /// reference. Either way it is left out of the listing group, which stays, with the
    /// access everyone else has through it, as a user whose membership is missing or refused
    /// is left out: a namespace losing its delegation, or a group deleted there, does not
    /// take away everyone's access through the groups that nest it.
    LeftOut(Problem),
}

/// One placed group, while its members are checked.
struct PlacedGroup<'s, 'a> {
    set: &'a ObjectSet,
    g: &'a Group,
    /// Its index in the set.
    i: usize,
    key: ObjectKey,
    target: Target<'a>,
    /// Every group's index by `(namespace, name)`.
    index: &'s HashMap<(&'a str, &'a str), usize>,
    /// Whether each group is refused for its namespace, by index.
    foreign: &'s [bool],
    /// The roots' members: a sub-organization's admins are its members once they are theirs.
    root_members: &'s UserMembers<'s>,
}

impl PlacedGroup<'_, '_> {
    /// Checks each listed member once; collects the groups it nests into `nested`. Whether the
    /// group may be accepted as far as it alone goes.
    fn check_members(
        &self,
        users: &UserMembers<'_>,
        nested: &mut Vec<usize>,
        out: &mut Outcome,
    ) -> bool {
        let (ns, _) = ns_name(self.g);
        let mut ok = true;
        let mut seen: HashSet<(GroupMemberKind, String)> = HashSet::new();
        for (j, member) in self.g.spec.members.iter().enumerate() {
            let field = format!("spec.members[{j}]");
            let id = member_id(member, ns);
            if !seen.insert((member.kind, id.clone())) {
                // Reported, but it does not reject the group (the member is a member once): an
                // edit to the list must not take the group, and the access it gives, out of the
                // store.
                out.problems.push(Problem::error(
                    Reason::DuplicateGroupMember,
                    &self.key,
                    field,
                    format!("{id:?} is listed twice: list each member once"),
                ));
                continue;
            }
            match member.kind {
                GroupMemberKind::User => out.problems.extend(self.user(users, &id, &field)),
                GroupMemberKind::Group => match self.nested_group(&id, &field) {
                    Nested::Group(k) => nested.push(k),
                    Nested::Refused(p) => {
                        out.problems.push(p);
                        ok = false;
                    }
                    Nested::LeftOut(p) => out.problems.push(p),
                },
            }
        }
        ok
    }

    /// The warning about a listed user who is not a member of the group's organization. It
    /// never rejects the group.
    fn user(&self, users: &UserMembers<'_>, id: &str, field: &str) -> Option<Problem> {
        let target = &self.target;
        // A sub-organization's admin is one of its members once they are an accepted member of
        // its root (see `organizations::check_admins_are_members`).
        let named = target.admins.iter().any(|a| normalize_email(a) == id);
        let in_root = self.root_members.get(&(target.root, id.to_owned()));
        match users.get(&(target.name, id.to_owned())) {
            Some(Presence::Accepted) => None,
            _ if named && in_root == Some(&Presence::Accepted) => None,
            // An admin by name only, while not a member of the root: left out, and said so.
            _ if named => Some(Problem::warning(
                Reason::GroupMemberNotInOrganization,
                &self.key,
                format!("{field}.email"),
                format!(
                    "user {id:?} is named an admin of {} {:?} but is not an accepted member of root Organization {:?}, so they are left out of Group {:?} until they are",
                    target.kind,
                    target.name,
                    target.root,
                    self.g.name_any()
                ),
            )),
            Some(p) if p.is_idle() => Some(Problem::warning(
                Reason::GroupMemberNotInOrganization,
                &self.key,
                format!("{field}.email"),
                format!(
                    "user {id:?}'s membership of {} {:?} has {}, so they are left out of Group {:?} until one of its roles is in effect",
                    target.kind,
                    target.name,
                    super::memberships::IDLE,
                    self.g.name_any()
                ),
            )),
            // That membership is rejected and says why; the user is left out of the group
            // meanwhile, which the group says too (rule 9: what depended on it says why).
            Some(_) => Some(Problem::warning(
                Reason::GroupMemberNotInOrganization,
                &self.key,
                format!("{field}.email"),
                format!(
                    "user {id:?}'s membership of {} {:?} is not accepted (see that OrgMembership's status), so they are left out of Group {:?} until it is accepted",
                    target.kind,
                    target.name,
                    self.g.name_any()
                ),
            )),
            // Left out of the group (access is revoked, never granted through it), but the
            // group and everyone else in it stay.
            None => Some(Problem::warning(
                Reason::GroupMemberNotInOrganization,
                &self.key,
                format!("{field}.email"),
                format!(
                    "user {id:?} is not a member of {} {:?}, which owns Group {:?}, and is left out of the group: a group's users must be members of its organization; add an OrgMembership there first",
                    target.kind,
                    target.name,
                    self.g.name_any()
                ),
            )),
        }
    }

    /// The group `id` (`namespace/name`) as a nested member of this one.
    fn nested_group(&self, id: &str, field: &str) -> Nested {
        let (key, target) = (&self.key, &self.target);
        if target.kind == OrganizationKind::Organization {
            return Nested::Refused(Problem::error(
                Reason::NestedGroupNotAllowed,
                key,
                field,
                format!(
                    "Group {:?} belongs to root Organization {:?}: root groups list users only; nested groups are for sub-organization groups",
                    self.g.name_any(),
                    target.name
                ),
            ));
        }
        let (mns, mname) = id.split_once('/').unwrap_or_default();
        let found = self.index.get(&(mns, mname)).copied();
        let theirs = |k: usize| {
            let owner = &self.set.groups[k].spec.organization_ref;
            owner.kind == OrganizationKind::SubOrganization && owner.name == target.name
        };
        // Named in another namespace, a group that is not one this group may nest (absent,
        // refused for its own namespace, or another organization's) gets one answer: whose it
        // is, or whether it exists, goes unsaid.
        if super::placement::across(key, mns)
            && !found.is_some_and(|k| !self.foreign[k] && theirs(k))
        {
            return Nested::LeftOut(super::placement::unusable_elsewhere(
                Reason::NestedGroupOutsideOrganization,
                key,
                field,
                "Group",
                id,
                &format!(
                    "Group {:?} of SubOrganization {:?}",
                    self.g.name_any(),
                    target.name
                ),
                "a sub-organization's groups may nest only its own groups",
            ));
        }
        match found {
            Some(k) if k == self.i => Nested::Refused(Problem::error(
                Reason::GroupCycle,
                key,
                field,
                format!("Group {id:?} lists itself: a group cannot contain itself"),
            )),
            // Another organization's group is left out, with an error, and the group stays:
            // whoever may create a group in a namespace two organizations share must not be
            // able to take away everyone's access through this one by naming theirs here.
            Some(k) if !theirs(k) => {
                let owner = &self.set.groups[k].spec.organization_ref;
                Nested::LeftOut(Problem::error(
                    Reason::NestedGroupOutsideOrganization,
                    key,
                    field,
                    format!(
                        "Group {id:?} belongs to {} {:?}, not SubOrganization {:?}: a sub-organization's groups may nest only its own groups",
                        owner.kind, owner.name, target.name
                    ),
                ))
            }
            Some(k) => Nested::Group(k),
            None if self.set.rejected_on_its_own("Group", mns, mname) => {
                Nested::LeftOut(Problem::warning(
                    Reason::GroupMemberNotInOrganization,
                    key,
                    field,
                    format!(
                        "Group {id:?} is not accepted (see its status), so it and its members are left out of Group {:?} until it is accepted",
                        self.g.name_any()
                    ),
                ))
            }
            None => Nested::LeftOut(Problem::warning(
                Reason::SubjectNotFound,
                key,
                format!("{field}.name"),
                format!(
                    "Group {id:?} does not exist, so it is left out of Group {:?}: create it in SubOrganization {:?} or fix the name and namespace",
                    self.g.name_any(),
                    target.name
                ),
            )),
        }
    }
}

/// How a group member is identified: a normalized email, or `namespace/name` (the namespace
/// defaults to the group's, `ns`).
fn member_id(member: &GroupMember, ns: &str) -> String {
    match member.kind {
        GroupMemberKind::User => normalize_email(member.email.as_deref().unwrap_or_default()),
        GroupMemberKind::Group => format!(
            "{}/{}",
            member.namespace.as_deref().unwrap_or(ns),
            member.name.as_deref().unwrap_or_default()
        ),
    }
}

/// Decides groups from the leaves up: a group is accepted when it is `fine`, once every group
/// it nests is decided. A nested group refused on its own is left out of it (and said so: see
/// [`left_out_nested`]), as a user whose membership is refused is: one team's broken group must
/// not take away the access everyone else has through the group that lists it. Per group,
/// whether it is accepted; `None` for what is left undecided, which lies on a cycle or
/// contains one.
fn decide(fine: &[bool], nested: &[Vec<usize>]) -> Vec<Option<bool>> {
    let n = fine.len();
    let mut parents: Vec<Vec<usize>> = vec![Vec::new(); n];
    let mut pending: Vec<usize> = vec![0; n];
    for (i, kids) in nested.iter().enumerate() {
        pending[i] = kids.len();
        for &k in kids {
            parents[k].push(i);
        }
    }
    let mut decided: Vec<Option<bool>> = vec![None; n];
    let mut queue: VecDeque<usize> = (0..n).filter(|&i| pending[i] == 0).collect();
    while let Some(i) = queue.pop_front() {
        decided[i] = Some(fine[i]);
        for &p in &parents[i] {
            pending[p] -= 1;
            if pending[p] == 0 {
                queue.push_back(p);
            }
        }
    }
    decided
}

/// Warns on each accepted group about the groups it nests that were refused: they are left out
/// of it (with their members) until they are accepted.
fn left_out_nested(
    set: &ObjectSet,
    nested: &[Vec<usize>],
    decided: &[Option<bool>],
    out: &mut Outcome,
) {
    for (i, kids) in nested.iter().enumerate() {
        if decided[i] != Some(true) {
            continue;
        }
        let g = &set.groups[i];
        let ns = g.metadata.namespace.as_deref().unwrap_or_default();
        for &k in kids.iter().filter(|&&k| decided[k] != Some(true)) {
            let (kns, kname) = ns_name(&set.groups[k]);
            let id = format!("{kns}/{kname}");
            let j = g
                .spec
                .members
                .iter()
                .position(|m| m.kind == GroupMemberKind::Group && member_id(m, ns) == id)
                .unwrap_or_default();
            out.problems.push(Problem::warning(
                Reason::GroupMemberNotInOrganization,
                &group_key(g),
                format!("spec.members[{j}]"),
                format!(
                    "Group {id:?} is not accepted (see its status), so it and its members are left out of Group {:?} until it is accepted",
                    g.name_any()
                ),
            ));
        }
    }
}

/// Reports each cycle among the undecided groups once, on every group of it: walks from an
/// undecided group along undecided nested groups (each has one) until the walk meets itself.
fn name_cycles(
    set: &ObjectSet,
    nested: &[Vec<usize>],
    decided: &[Option<bool>],
    out: &mut Outcome,
) {
    let n = nested.len();
    let mut walked = vec![false; n];
    for start in 0..n {
        if decided[start].is_some() || walked[start] {
            continue;
        }
        let mut path: Vec<usize> = Vec::new();
        let mut position: HashMap<usize, usize> = HashMap::new();
        let mut at = start;
        loop {
            if let Some(&p) = position.get(&at) {
                let cycle = &path[p..];
                let description = describe_cycle(set, cycle);
                for &k in cycle {
                    out.problems.push(Problem::error(
                        Reason::GroupCycle,
                        &group_key(&set.groups[k]),
                        "spec.members",
                        format!(
                            "nested groups form a cycle: {description}; remove one of these memberships"
                        ),
                    ));
                }
                break;
            }
            if walked[at] {
                break;
            }
            walked[at] = true;
            position.insert(at, path.len());
            path.push(at);
            match nested[at].iter().find(|&&k| decided[k].is_none()) {
                Some(&k) => at = k,
                None => break,
            }
        }
    }
}

/// The groups of a cycle by name, back to the first. Long cycles are named by their ends: the
/// message stays readable and small.
fn describe_cycle(set: &ObjectSet, cycle: &[usize]) -> String {
    let named = |k: &usize| set.groups[*k].name_any();
    if cycle.len() <= 12 {
        cycle
            .iter()
            .chain(std::iter::once(&cycle[0]))
            .map(named)
            .collect::<Vec<_>>()
            .join(" → ")
    } else {
        let head: Vec<String> = cycle[..5].iter().map(named).collect();
        let tail: Vec<String> = cycle[cycle.len() - 2..].iter().map(named).collect();
        format!(
            "{} → … → {} → {} ({} groups)",
            head.join(" → "),
            tail.join(" → "),
            named(&cycle[0]),
            cycle.len()
        )
    }
}
