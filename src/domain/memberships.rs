//! Organization memberships (DESIGN rules 3, 4, 8 and 9): who and what belongs to an
//! organization through an OrgMembership.
//!
//! - A user joins a root first (in a domain the root allows), and only then a
//!   sub-organization; removing the root membership takes the sub-organization ones with it.
//! - A root's groups and machine identities are added to its sub-organizations, never to the
//!   root (they are there already); a sub-organization's own stay there.
//! - One membership per subject and organization; a no-access role does not contradict the
//!   sub-organization's `spec.admins`.
//!
//! [`super::check`] runs these as three phases, each of which hands on what it decided: users'
//! root memberships (phase 5), users' sub-organization memberships (phase 7), and groups' and
//! identities' memberships (phase 9, after the groups themselves). A membership whose
//! organization is rejected is recorded as rejected, quietly, so what depends on it stays quiet
//! too.

use std::collections::HashMap;

use k8s_openapi::jiff::Timestamp;

use super::lookup::{Added, Organizations, Owned, Presence, UserMembers};
use super::model::{ObjectSet, Outcome, membership_key, precedence, subject_id};
use super::placement::{
    Admission, Resolved, Target, across, admission, refused_anyway, resolve, unusable_elsewhere,
};
use super::problem::{ObjectKey, Problem, Reason};
use super::slug::normalize_email;
use super::temporary::{any_in_effect, any_pending, check_roles};
use crate::api::{OrgMembership, OrganizationKind, SubjectKind};

/// Phase 5: users' memberships of root organizations.
pub(super) fn check_root_users<'a>(
    orgs: &Organizations<'a>,
    now: Timestamp,
    out: &mut Outcome,
) -> UserMembers<'a> {
    let set = orgs.set;
    let mut members = UserMembers::new();
    let mut holders = Holders::new();
    for i in in_order(set, |m| is_user(m) && !in_sub(m)) {
        let m = &set.memberships[i];
        let key = membership_key(m);
        let subject = subject_id(m).1;
        if refused_outside(set, &key) {
            members.insert((org_name(m), subject), Presence::Rejected);
            continue;
        }
        let (target, mut errors) = match start(orgs, m, &key, out) {
            Start::Placed(target) => (target, Vec::new()),
            Start::TargetRejected => {
                let root = m.spec.organization_ref.name.as_str();
                members.insert((root, subject), Presence::Rejected);
                continue;
            }
            Start::Done => continue,
        };
        errors.extend(refuses_email(&target, &subject, &key, ""));
        let ok = conclude(
            m,
            i,
            &key,
            &target,
            &subject,
            errors,
            &mut holders,
            now,
            out,
        );
        members
            .entry((target.name, subject))
            .or_insert(standing(ok, m, now));
    }
    members
}

/// Phase 7: users' memberships of sub-organizations, given the roots' members.
pub(super) fn check_sub_users<'a>(
    orgs: &Organizations<'a>,
    root_members: &UserMembers<'a>,
    now: Timestamp,
    out: &mut Outcome,
) -> UserMembers<'a> {
    let set = orgs.set;
    let mut members = UserMembers::new();
    let mut holders = Holders::new();
    for i in in_order(set, |m| is_user(m) && in_sub(m)) {
        let m = &set.memberships[i];
        let key = membership_key(m);
        let subject = subject_id(m).1;
        if refused_outside(set, &key) {
            members.insert((org_name(m), subject), Presence::Rejected);
            continue;
        }
        let (target, mut errors) = match start(orgs, m, &key, out) {
            Start::Placed(target) => (target, Vec::new()),
            Start::TargetRejected => {
                let sub = m.spec.organization_ref.name.as_str();
                members.insert((sub, subject), Presence::Rejected);
                continue;
            }
            Start::Done => continue,
        };
        // The sub-organization names them as an admin: a no-access membership there would
        // contradict it, and which one wins would be a guess.
        if m.spec.roles.iter().any(|r| r.role == "no-access")
            && target.admins.iter().any(|a| normalize_email(a) == subject)
        {
            errors.push(Problem::error(
                Reason::ConflictingRoles,
                &key,
                "spec.roles",
                format!(
                    "user {subject:?} is named in spec.admins of SubOrganization {:?}, so a no-access membership there contradicts it: remove one of the two",
                    target.name
                ),
            ));
        }
        match root_members.get(&(target.root, subject.clone())) {
            Some(Presence::Accepted) => {}
            Some(p) if p.is_idle() => errors.push(
                Problem::error(
                    Reason::SubjectNotInRoot,
                    &key,
                    "spec.subject.email",
                    format!(
                        "user {subject:?}'s membership of root Organization {:?} has {IDLE}, so they cannot be in SubOrganization {:?}: a sub-organization's members are members of its root",
                        target.root, target.name
                    ),
                )
                .clearing_on_its_own(*p == Presence::Pending),
            ),
            Some(_) => {
                // The root membership is rejected and says why; this one is held back, and
                // what depends on it (a group listing the user, a project) waits for it.
                members
                    .entry((target.name, subject))
                    .or_insert(Presence::Rejected);
                continue;
            }
            None => errors.push(Problem::error(
                Reason::SubjectNotInRoot,
                &key,
                "spec.subject.email",
                format!(
                    "user {subject:?} is not a member of root Organization {:?}: users exist at the root and must join it before SubOrganization {:?}; add an OrgMembership in {:?} first",
                    target.root, target.name, target.root
                ),
            )),
        }
        let ok = conclude(
            m,
            i,
            &key,
            &target,
            &subject,
            errors,
            &mut holders,
            now,
            out,
        );
        members
            .entry((target.name, subject))
            .or_insert(standing(ok, m, now));
    }
    members
}

/// Phase 9: groups' and machine identities' memberships, given the groups and identities.
/// What is returned is which of a root's were added to which sub-organization.
pub(super) fn check_groups_and_identities<'a>(
    orgs: &Organizations<'a>,
    owned: &Owned<'a>,
    now: Timestamp,
    out: &mut Outcome,
) -> Added<'a> {
    let set = orgs.set;
    let mut added = Added::new();
    let mut holders = Holders::new();
    for i in in_order(set, |m| !is_user(m)) {
        let m = &set.memberships[i];
        let key = membership_key(m);
        let (kind, subject) = subject_id(m);
        if refused_outside(set, &key) {
            if in_sub(m) {
                added.insert((org_name(m), kind, subject), Presence::Rejected);
            }
            continue;
        }
        let (target, mut errors) = match start(orgs, m, &key, out) {
            Start::Placed(target) => (target, Vec::new()),
            Start::TargetRejected => {
                if in_sub(m) {
                    let sub = m.spec.organization_ref.name.as_str();
                    added.insert((sub, kind, subject), Presence::Rejected);
                }
                continue;
            }
            Start::Done => continue,
        };
        match target.kind {
            OrganizationKind::Organization => {
                // None: the group or identity is refused on its own, and says why.
                let Some(p) = at_root(set, owned, kind, &subject, &target, &key) else {
                    continue;
                };
                errors.push(p);
            }
            OrganizationKind::SubOrganization => {
                match visible_in(set, owned, kind, &subject, &target, &key) {
                    Visibility::Visible => {}
                    // The group or identity is rejected; it says why.
                    Visibility::Quiet => {
                        added.insert((target.name, kind, subject), Presence::Rejected);
                        continue;
                    }
                    Visibility::Refused(p) => errors.push(p),
                }
            }
        }
        let ok = conclude(
            m,
            i,
            &key,
            &target,
            &subject,
            errors,
            &mut holders,
            now,
            out,
        );
        if target.kind == OrganizationKind::SubOrganization {
            added
                .entry((target.name, kind, subject))
                .or_insert(standing(ok, m, now));
        }
    }
    added
}

/// How a membership that `ok` says was accepted or not counts for what builds on it: an
/// accepted one with no role in effect at `now` is [`Presence::Pending`] when one starts
/// later, else [`Presence::Idle`].
fn standing(ok: bool, m: &OrgMembership, now: Timestamp) -> Presence {
    if ok && !any_in_effect(&m.spec.roles, &m.metadata, now) {
        if any_pending(&m.spec.roles, &m.metadata, now) {
            Presence::Pending
        } else {
            Presence::Idle
        }
    } else {
        Presence::of(ok)
    }
}

/// How messages say a membership is [`Presence::Idle`].
pub(super) const IDLE: &str = "no role in effect now (its temporary roles have expired or not started: see that OrgMembership's status)";

/// Whether the membership `key` is in the set but refused by something other than the rules
/// (its rows conflict with the store): it says why on its own, and what builds on it waits
/// for it, as for a membership the rules refused.
fn refused_outside(set: &ObjectSet, key: &ObjectKey) -> bool {
    set.rejected.contains(key)
}

fn org_name(m: &OrgMembership) -> &str {
    m.spec.organization_ref.name.as_str()
}

fn is_user(m: &OrgMembership) -> bool {
    m.spec.subject.kind == SubjectKind::User
}

fn in_sub(m: &OrgMembership) -> bool {
    m.spec.organization_ref.kind == OrganizationKind::SubOrganization
}

/// The memberships `which` selects: those in roots first, then in precedence order, so the
/// oldest membership holds a contested place.
fn in_order(set: &ObjectSet, which: impl Fn(&OrgMembership) -> bool) -> Vec<usize> {
    let mut order: Vec<usize> = (0..set.memberships.len())
        .filter(|&i| which(&set.memberships[i]))
        .collect();
    order.sort_by_cached_key(|&i| {
        let m = &set.memberships[i];
        (in_sub(m), precedence(m, i, &set.stored))
    });
    order
}

/// How a membership's organization and namespace turned out.
enum Start<'a> {
    /// The organization stands and the namespace may speak for it (or its labels are
    /// unknown): go on.
    Placed(Target<'a>),
    /// The organization is rejected on its own: the membership is held back quietly.
    TargetRejected,
    /// Nothing more to say: the organization is missing (reported), its selector is broken
    /// (reported on it), or the namespace may not speak for it (reported). A membership its
    /// namespace may not hold takes no part in what the organization's own memberships
    /// decide: it holds no subject's place (the oldest of a subject's memberships wins), and
    /// nothing waits for it, so a delegated namespace can neither lock a user out of another
    /// organization nor take their membership there away.
    Done,
}

/// Resolves `m`'s organization and checks that `m`'s namespace may speak for it.
fn start<'a>(
    orgs: &Organizations<'a>,
    m: &'a OrgMembership,
    key: &ObjectKey,
    out: &mut Outcome,
) -> Start<'a> {
    let target = match resolve(orgs, &m.spec.organization_ref, key) {
        Resolved::Found(t) => t,
        Resolved::Rejected(t) => {
            return if refused_anyway(orgs, t.as_ref(), key, "memberships", out) {
                Start::Done
            } else {
                Start::TargetRejected
            };
        }
        Resolved::Missing(p) => {
            out.problems.push(p);
            return Start::Done;
        }
    };
    match admission(orgs, &target, key, "memberships") {
        Admission::Admitted => {}
        Admission::Unknown(p) => out.problems.push(p),
        Admission::Refused(p) => {
            out.problems.push(p);
            return Start::Done;
        }
        Admission::Quiet => return Start::Done,
    }
    Start::Placed(target)
}

/// The first membership of each subject in each organization: by (organization kind,
/// organization name, subject kind, subject id).
type Holders<'a> = HashMap<(OrganizationKind, &'a str, SubjectKind, String), ObjectKey>;

/// The checks every membership ends with: its roles, and one membership per subject. Reports
/// `errors`, accepts the membership `i` when there are none, and says whether it did.
#[allow(clippy::too_many_arguments)]
fn conclude<'a>(
    m: &OrgMembership,
    i: usize,
    key: &ObjectKey,
    target: &Target<'a>,
    subject: &str,
    mut errors: Vec<Problem>,
    holders: &mut Holders<'a>,
    now: Timestamp,
    out: &mut Outcome,
) -> bool {
    check_roles(
        &m.spec.roles,
        &m.metadata,
        key,
        now,
        &mut errors,
        &mut out.problems,
    );
    let holder = (
        target.kind,
        target.name,
        m.spec.subject.kind,
        subject.to_owned(),
    );
    // A subject that is missing, or not one the target can see, has no place to hold: naming
    // another membership of it would tell what another namespace holds.
    let unresolved = errors.iter().any(|p| {
        matches!(
            p.reason,
            Reason::SubjectNotFound | Reason::SubjectNotVisible
        )
    });
    match holders.get(&holder) {
        _ if unresolved => {}
        Some(first) => errors.push(Problem::error(
            Reason::DuplicateMembership,
            key,
            "spec.subject",
            format!(
                "{} already has a membership in {} {:?} through OrgMembership {}: give one membership all the roles",
                describe_subject(m),
                target.kind,
                target.name,
                first.namespace.as_deref().map(|ns| format!("{ns}/{}", first.name)).unwrap_or_default()
            ),
        )),
        None => {
            holders.insert(holder, key.clone());
        }
    }
    let ok = errors.is_empty();
    out.problems.extend(errors);
    if ok {
        out.accepted.memberships.push(i);
    }
    ok
}

fn describe_subject(m: &OrgMembership) -> String {
    let (kind, id) = subject_id(m);
    format!("{} {id:?}", kind.as_str())
}

/// The problem with `email` joining `target`'s root, if its domain is not one the root allows.
/// `what` prefixes the message (`"cannot be invited: "`). Project invites join the root too.
pub(super) fn refuses_email(
    target: &Target<'_>,
    email: &str,
    key: &ObjectKey,
    what: &str,
) -> Option<Problem> {
    if target.allowed_domains.is_empty() {
        return None;
    }
    let domain = email.rsplit_once('@').map(|(_, d)| d).unwrap_or_default();
    if target
        .allowed_domains
        .iter()
        .any(|d| d.eq_ignore_ascii_case(domain))
    {
        return None;
    }
    Some(Problem::error(
        Reason::EmailDomainNotAllowed,
        key,
        "spec.subject.email",
        format!(
            "{email:?} {what}is not in a domain Organization {:?} allows (spec.authentication.allowedEmailDomains: {})",
            target.root,
            target.allowed_domains.join(", ")
        ),
    ))
}

/// Why the group or identity `subject` (`namespace/name`) cannot be given a membership in the
/// root `target`: a root's own are there already, and no other organization's can be added to
/// it. Named from another namespace, what the root cannot use gets [`unusable_elsewhere`]'s one
/// answer, whether it is missing or another organization's; named in the membership's own
/// namespace, the answer says which. `None` when it is refused on its own (it says why).
fn at_root(
    set: &ObjectSet,
    owned: &Owned<'_>,
    kind: SubjectKind,
    subject: &str,
    target: &Target<'_>,
    key: &ObjectKey,
) -> Option<Problem> {
    let (ns, name) = subject.split_once('/').unwrap_or(("", subject));
    let what = kind.as_str();
    let found = owned.find(kind, subject);
    if across(key, ns) {
        return Some(unusable_elsewhere(
            Reason::SubjectNotVisible,
            key,
            "spec.subject",
            what,
            subject,
            &format!("root Organization {:?}", target.name),
            "a root's own groups and identities are part of it without a membership, and no other organization's can be added to it",
        ));
    }
    Some(match found.map(|(_, owner)| owner) {
        Some(o) if o.kind == OrganizationKind::Organization && o.name == target.name => {
            Problem::error(
                Reason::SubjectOwnedByTarget,
                key,
                "spec.organizationRef",
                format!(
                    "{what} {subject:?} cannot be given a membership in root Organization {:?}: groups and machine identities belong to the organization that created them, so it is part of {:?} already; add it to sub-organizations only",
                    target.name, target.name
                ),
            )
        }
        Some(o) if o.kind == OrganizationKind::SubOrganization => Problem::error(
            Reason::SubjectNotVisible,
            key,
            "spec.subject",
            format!(
                "{what} {subject:?} belongs to SubOrganization {:?}: what a sub-organization creates is visible there alone, not in root Organization {:?}",
                o.name, target.name
            ),
        ),
        Some(o) => Problem::error(
            Reason::SubjectNotVisible,
            key,
            "spec.subject",
            format!(
                "{what} {subject:?} belongs to root Organization {:?}: groups and machine identities belong to the organization that created them and are never added to another root, such as {:?}",
                o.name, target.name
            ),
        ),
        // It exists but is refused on its own, and says why.
        None if set.rejected_on_its_own(what, ns, name) => {
            return None;
        }
        None => Problem::error(
            Reason::SubjectNotFound,
            key,
            "spec.subject.name",
            format!(
                "{what} {subject:?} does not exist: fix spec.subject.name and spec.subject.namespace (root Organization {:?} takes no membership for its own groups and identities, which are part of it already)",
                target.name
            ),
        ),
    })
}

/// Whether a group or identity may be added to a sub-organization.
enum Visibility {
    Visible,
    /// It is rejected on its own and says why: stay quiet.
    Quiet,
    Refused(Problem),
}

/// Whether the group or identity `subject` (`namespace/name`) may be added to the
/// sub-organization `target`.
fn visible_in(
    set: &ObjectSet,
    owned: &Owned<'_>,
    kind: SubjectKind,
    subject: &str,
    target: &Target<'_>,
    key: &ObjectKey,
) -> Visibility {
    let (ns, name) = subject.split_once('/').unwrap_or(("", subject));
    let what = kind.as_str();
    // Named from another namespace: one answer for all that the sub-organization cannot use.
    let elsewhere = || {
        Visibility::Refused(unusable_elsewhere(
            Reason::SubjectNotVisible,
            key,
            "spec.subject",
            what,
            subject,
            &format!("SubOrganization {:?}", target.name),
            "only its root Organization's groups and identities can be added to it",
        ))
    };
    let found = owned.find(kind, subject);
    if across(key, ns) && !target.may_use_across(found) {
        return elsewhere();
    }
    let owner = match found {
        Some((Presence::Accepted, owner)) => owner,
        Some(_) => return Visibility::Quiet,
        None if set.rejected_on_its_own(what, ns, name) => {
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
