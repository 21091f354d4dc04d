//! Groups and machine identities (the seed's "Working with Groups" and "Working with Machine
//! Identities"): each belongs to the organization that created it. A root's groups and
//! identities are usable in a sub-organization once a membership adds them there; a
//! sub-organization's own are visible there alone. A group lists users who are members of its
//! organization and, in a sub-organization, groups of that same sub-organization, without
//! cycles.
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

use super::problem::{ObjectKey, Problem, Reason};
use super::slug::normalize_email;
use super::tree::{
    Admission, ObjectSet, Outcome, Presence, Resolved, RootMembers, Roots, Subs, Target, admission,
    group_key, identity_key, ns_name, resolve_target,
};
use crate::api::{Group, GroupMemberKind, MachineIdentity, OrganizationKind, SubjectKind};

/// Groups and identities as checked: by `(namespace, name)`.
pub(super) struct Owned<'a> {
    groups: HashMap<(&'a str, &'a str), (Presence, &'a Group)>,
    identities: HashMap<(&'a str, &'a str), (Presence, &'a MachineIdentity)>,
    set: &'a ObjectSet,
}

/// Whether a group or identity may be added to a sub-organization.
pub(super) enum Visibility {
    Visible,
    /// It is rejected on its own and says why: stay quiet.
    Quiet,
    Refused(Problem),
}

impl<'a> Owned<'a> {
    /// The group or identity `namespace/name`, whether it was accepted, and its owner; `None`
    /// when it is not declared at all.
    pub(super) fn find(
        &self,
        kind: SubjectKind,
        subject: &str,
    ) -> Option<(Presence, &'a crate::api::OrganizationRef)> {
        let (ns, name) = subject.split_once('/').unwrap_or(("", subject));
        match kind {
            SubjectKind::Group => self
                .groups
                .get(&(ns, name))
                .map(|(p, g)| (*p, &g.spec.organization_ref)),
            _ => self
                .identities
                .get(&(ns, name))
                .map(|(p, i)| (*p, &i.spec.organization_ref)),
        }
    }

    /// Why the group or identity `subject` cannot be given a membership in the root `target`:
    /// a root's own are there already, and a sub-organization's are visible there alone.
    pub(super) fn at_root(
        &self,
        kind: SubjectKind,
        subject: &str,
        target: &Target<'_>,
        key: &ObjectKey,
    ) -> Problem {
        match self.find(kind, subject).map(|(_, owner)| owner) {
            Some(o) if o.kind == OrganizationKind::SubOrganization => Problem::error(
                Reason::SubjectNotVisible,
                key,
                "spec.subject",
                format!(
                    "{} {subject:?} belongs to SubOrganization {:?}: what a sub-organization creates is visible there alone, not in root Organization {:?}",
                    kind.as_str(),
                    o.name,
                    target.name
                ),
            ),
            _ => Problem::error(
                Reason::SubjectOwnedByTarget,
                key,
                "spec.organizationRef",
                format!(
                    "{} {subject:?} cannot be given a membership in root Organization {:?}: groups and machine identities belong to the organization that created them, so a root one is already there; add it to sub-organizations only",
                    kind.as_str(),
                    target.name
                ),
            ),
        }
    }

    /// Whether the group or identity `subject` (`namespace/name`) may be added to the
    /// sub-organization `target`.
    pub(super) fn visible_in(
        &self,
        kind: SubjectKind,
        subject: &str,
        target: &Target<'_>,
        key: &ObjectKey,
    ) -> Visibility {
        let (ns, name) = subject.split_once('/').unwrap_or(("", subject));
        let what = kind.as_str();
        let owner = match self.find(kind, subject) {
            Some((Presence::Accepted, owner)) => owner,
            Some(_) => return Visibility::Quiet,
            None if self
                .set
                .rejected
                .contains(&ObjectKey::namespaced(what, ns, name)) =>
            {
                return Visibility::Quiet;
            }
            None => {
                return Visibility::Refused(Problem::error(
                    Reason::SubjectNotFound,
                    key,
                    "spec.subject.name",
                    format!(
                        "{what} {subject:?} does not exist: create it in root Organization {:?} first, or fix spec.subject.name and spec.subject.namespace",
                        target.root
                    ),
                ));
            }
        };
        match owner.kind {
            OrganizationKind::Organization if owner.name == target.root => Visibility::Visible,
            OrganizationKind::SubOrganization if owner.name == target.name => {
                Visibility::Refused(Problem::error(
                    Reason::SubjectOwnedByTarget,
                    key,
                    "spec.subject",
                    format!(
                        "{what} {subject:?} already belongs to SubOrganization {:?}, which created it: it is usable there without a membership",
                        target.name
                    ),
                ))
            }
            _ => Visibility::Refused(Problem::error(
                Reason::SubjectNotVisible,
                key,
                "spec.subject",
                format!(
                    "{what} {subject:?} belongs to {} {:?}: only groups and machine identities of root Organization {:?} can be added to SubOrganization {:?}, and what a sub-organization creates stays there",
                    owner.kind, owner.name, target.root, target.name
                ),
            )),
        }
    }
}

/// Resolves an owner and checks delegation; `Err(None)` means rejected quietly.
pub(super) fn place<'a>(
    set: &'a ObjectSet,
    roots: &Roots<'a>,
    subs: &Subs<'a>,
    r: &'a crate::api::OrganizationRef,
    key: &ObjectKey,
    what: &str,
    out: &mut Outcome,
) -> Option<Target<'a>> {
    let target = match resolve_target(set, roots, subs, r, key) {
        Resolved::Found(t) => t,
        Resolved::Rejected => return None,
        Resolved::Missing(p) => {
            out.problems.push(p);
            return None;
        }
    };
    match admission(set, &target, key, what) {
        Admission::Admitted => Some(target),
        Admission::Unknown(p) => {
            out.problems.push(p);
            Some(target)
        }
        Admission::Refused(p) => {
            out.problems.push(p);
            None
        }
        Admission::Quiet => None,
    }
}

/// Checks every group and machine identity, given the user memberships already decided.
pub(super) fn check<'a>(
    set: &'a ObjectSet,
    roots: &Roots<'a>,
    subs: &Subs<'a>,
    root_members: &RootMembers<'_>,
    sub_members: &RootMembers<'_>,
    out: &mut Outcome,
) -> Owned<'a> {
    let mut identities = HashMap::with_capacity(set.identities.len());
    for (i, m) in set.identities.iter().enumerate() {
        let key = identity_key(m);
        let ok = place(
            set,
            roots,
            subs,
            &m.spec.organization_ref,
            &key,
            "machine identities",
            out,
        )
        .is_some();
        if ok {
            out.accepted.identities.push(i);
        }
        let presence = if ok {
            Presence::Accepted
        } else {
            Presence::Rejected
        };
        identities.insert(ns_name(m), (presence, m));
    }

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
    for (i, g) in set.groups.iter().enumerate() {
        let key = group_key(g);
        let Some(target) = place(
            set,
            roots,
            subs,
            &g.spec.organization_ref,
            &key,
            "groups",
            out,
        ) else {
            continue;
        };
        let (ns, _) = ns_name(g);
        let mut ok = true;
        let mut seen: HashSet<(GroupMemberKind, String)> = HashSet::new();
        for (j, member) in g.spec.members.iter().enumerate() {
            let field = format!("spec.members[{j}]");
            let id = match member.kind {
                GroupMemberKind::User => {
                    normalize_email(member.email.as_deref().unwrap_or_default())
                }
                GroupMemberKind::Group => format!(
                    "{}/{}",
                    member.namespace.as_deref().unwrap_or(ns),
                    member.name.as_deref().unwrap_or_default()
                ),
            };
            if !seen.insert((member.kind, id.clone())) {
                out.problems.push(Problem::error(
                    Reason::DuplicateGroupMember,
                    &key,
                    field,
                    format!("{id:?} is listed twice: list each member once"),
                ));
                ok = false;
                continue;
            }
            match member.kind {
                GroupMemberKind::User => {
                    let members = match target.kind {
                        OrganizationKind::Organization => root_members,
                        OrganizationKind::SubOrganization => sub_members,
                    };
                    let admin = target.admins.iter().any(|a| normalize_email(a) == id);
                    match members.get(&(target.name, id.clone())) {
                        Some(Presence::Accepted) => {}
                        _ if admin => {}
                        // That membership is rejected and says why; the user is left out of
                        // the group meanwhile.
                        Some(_) => {}
                        // Left out of the group (access is revoked, never granted through it),
                        // but the group and everyone else in it stay.
                        None => out.problems.push(Problem::warning(
                            Reason::GroupMemberNotInOrganization,
                            &key,
                            format!("{field}.email"),
                            format!(
                                "user {id:?} is not a member of {} {:?}, which owns Group {:?}, and is left out of the group: a group's users must be members of its organization; add an OrgMembership there first",
                                target.kind, target.name, g.name_any()
                            ),
                        )),
                    }
                }
                GroupMemberKind::Group => {
                    if target.kind == OrganizationKind::Organization {
                        out.problems.push(Problem::error(
                            Reason::NestedGroupNotAllowed,
                            &key,
                            field,
                            format!(
                                "Group {:?} belongs to root Organization {:?}: root groups list users only; nested groups are for sub-organization groups",
                                g.name_any(),
                                target.name
                            ),
                        ));
                        ok = false;
                        continue;
                    }
                    let (mns, mname) = id.split_once('/').unwrap_or_default();
                    match index.get(&(mns, mname)) {
                        Some(&k) if k == i => {
                            out.problems.push(Problem::error(
                                Reason::GroupCycle,
                                &key,
                                field,
                                format!("Group {id:?} lists itself: a group cannot contain itself"),
                            ));
                            ok = false;
                        }
                        Some(&k) => {
                            let owner = &set.groups[k].spec.organization_ref;
                            if owner.kind != OrganizationKind::SubOrganization
                                || owner.name != target.name
                            {
                                out.problems.push(Problem::error(
                                    Reason::NestedGroupOutsideOrganization,
                                    &key,
                                    field,
                                    format!(
                                        "Group {id:?} belongs to {} {:?}, not SubOrganization {:?}: a sub-organization's groups may nest only its own groups",
                                        owner.kind, owner.name, target.name
                                    ),
                                ));
                                ok = false;
                            } else {
                                nested[i].push(k);
                            }
                        }
                        None if set
                            .rejected
                            .contains(&ObjectKey::namespaced("Group", mns, mname)) =>
                        {
                            ok = false;
                        }
                        None => {
                            out.problems.push(Problem::error(
                                Reason::SubjectNotFound,
                                &key,
                                format!("{field}.name"),
                                format!(
                                    "Group {id:?} does not exist: create it in SubOrganization {:?} or fix the name and namespace",
                                    target.name
                                ),
                            ));
                            ok = false;
                        }
                    }
                }
            }
        }
        fine[i] = ok;
    }

    // Decide groups from the leaves up: a group is accepted when it is fine and every group it
    // nests is accepted. What is left undecided lies on a cycle or contains one.
    let mut parents: Vec<Vec<usize>> = vec![Vec::new(); n];
    let mut pending: Vec<usize> = vec![0; n];
    for (i, kids) in nested.iter().enumerate() {
        pending[i] = kids.len();
        for &k in kids {
            parents[k].push(i);
        }
    }
    let mut accepted = vec![false; n];
    let mut decided = vec![false; n];
    let mut queue: VecDeque<usize> = (0..n).filter(|&i| pending[i] == 0).collect();
    while let Some(i) = queue.pop_front() {
        decided[i] = true;
        accepted[i] = fine[i] && nested[i].iter().all(|&k| accepted[k]);
        for &p in &parents[i] {
            pending[p] -= 1;
            if pending[p] == 0 {
                queue.push_back(p);
            }
        }
    }
    // Name each cycle once: walk from an undecided group along undecided nested groups (each
    // has one) until the walk meets itself.
    let mut walked = vec![false; n];
    for start in 0..n {
        if decided[start] || walked[start] {
            continue;
        }
        let mut path: Vec<usize> = Vec::new();
        let mut position: HashMap<usize, usize> = HashMap::new();
        let mut at = start;
        loop {
            if let Some(&p) = position.get(&at) {
                let cycle = &path[p..];
                let named = |k: &usize| set.groups[*k].name_any();
                // Long cycles are named by their ends: the message stays readable and small.
                let description = if cycle.len() <= 12 {
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
                };
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
            match nested[at].iter().find(|&&k| !decided[k]) {
                Some(&k) => at = k,
                None => break,
            }
        }
    }

    let mut groups = HashMap::with_capacity(n);
    for (i, g) in set.groups.iter().enumerate() {
        if accepted[i] {
            out.accepted.groups.push(i);
        }
        let presence = if accepted[i] {
            Presence::Accepted
        } else {
            Presence::Rejected
        };
        groups.insert(ns_name(g), (presence, g));
    }
    Owned {
        groups,
        identities,
        set,
    }
}
