//! The indexes the phases of [`super::check`] build and hand on, and the lookups through them.
//!
//! Each index is built once, by the phase that decides its objects, and records every object
//! as accepted or rejected: a later phase asks "is it there, and is it good?" with one hash
//! lookup, which keeps the whole check linear in the number of objects. A rejected object is
//! kept in the index, not left out, so what depends on it can stay quiet instead of reporting
//! it missing (its own problem says what to fix).

use std::collections::HashMap;

use super::model::{ObjectSet, ns_name};
use super::problem::ObjectKey;
use super::slug::normalize_email;
use crate::api::{
    Group, MachineIdentity, Organization, OrganizationKind, OrganizationRef, Project,
    ProjectMembership, SubOrganization, SubjectKind,
};

/// Whether an object is in the set: accepted, rejected, or absent.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Presence {
    Accepted,
    Rejected,
    Absent,
    /// A membership accepted with no role in effect now: its temporary roles have expired or
    /// not started. It grants nothing, so nothing may build on it (rule 7: a role expires on
    /// time, and with it what it let in).
    Idle,
    /// Refused for its namespace (`NamespaceNotAllowed`): the organization it names does not
    /// admit it, so it belongs to none. Named from another namespace it is as good as absent:
    /// what that namespace is told must not show that it exists.
    Foreign,
    /// Like [`Presence::Idle`], but one of its roles starts later: what builds on it waits
    /// for a time, not for a change to any object (kstatus `Reconciling`, not `Stalled`).
    Pending,
}

impl Presence {
    /// Whether it is accepted with no role in effect now ([`Presence::Idle`] or
    /// [`Presence::Pending`]).
    pub(super) fn is_idle(self) -> bool {
        matches!(self, Presence::Idle | Presence::Pending)
    }

    /// `Accepted` when a check found no error, else `Rejected`.
    pub(super) fn of(ok: bool) -> Self {
        if ok {
            Presence::Accepted
        } else {
            Presence::Rejected
        }
    }
}

/// Root organizations by name (phase 1).
pub(super) struct Roots<'a> {
    pub(super) by_name: HashMap<&'a str, (Presence, &'a Organization)>,
}

impl Roots<'_> {
    /// Whether the root `name` is accepted, rejected (here or by the schema), or absent.
    pub(super) fn presence(&self, set: &ObjectSet, name: &str) -> Presence {
        match self.by_name.get(name) {
            Some((p, _)) => *p,
            None if set
                .rejected
                .contains(&ObjectKey::cluster("Organization", name)) =>
            {
                Presence::Rejected
            }
            None => Presence::Absent,
        }
    }
}

/// Sub-organizations by name (phase 2).
pub(super) struct Subs<'a> {
    pub(super) by_name: HashMap<&'a str, (Presence, &'a SubOrganization)>,
}

/// The organization tree once decided, with the set it came from: what every object that
/// targets an organization is resolved against (see [`super::placement`]).
pub(super) struct Organizations<'a> {
    pub(super) set: &'a ObjectSet,
    pub(super) roots: Roots<'a>,
    pub(super) subs: Subs<'a>,
}

/// Users' memberships by (organization name, normalized email): accepted, or rejected (a
/// rejected membership is reported on its own; its dependants stay quiet). One map holds the
/// roots' members (phase 5, plus the users invited in phase 6), another the sub-organizations'
/// (phase 7).
pub(super) type UserMembers<'a> = HashMap<(&'a str, String), Presence>;

/// A root's groups and identities added to a sub-organization (phase 9): by (sub-organization
/// name, kind, `namespace/name`).
pub(super) type Added<'a> = HashMap<(&'a str, SubjectKind, String), Presence>;

/// Projects by `(namespace, name)`, accepted or not (phase 4).
pub(super) type Projects<'a> = HashMap<(&'a str, &'a str), (Presence, &'a Project)>;

/// Groups and identities as checked (phase 8): by `(namespace, name)`.
pub(super) struct Owned<'a> {
    pub(super) groups: HashMap<(&'a str, &'a str), (Presence, &'a Group)>,
    pub(super) identities: HashMap<(&'a str, &'a str), (Presence, &'a MachineIdentity)>,
}

impl<'a> Owned<'a> {
    /// The group or identity `namespace/name`, whether it was accepted, and its owner; `None`
    /// when it is not declared at all.
    pub(super) fn find(
        &self,
        kind: SubjectKind,
        subject: &str,
    ) -> Option<(Presence, &'a OrganizationRef)> {
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
}

/// Who and what each organization holds once its memberships are decided: what a project's
/// members are checked against (phase 10).
pub(super) struct Members<'a> {
    /// Users' root memberships, and the users project invites provision.
    pub(super) root: UserMembers<'a>,
    /// Users' sub-organization memberships.
    pub(super) sub: UserMembers<'a>,
    /// Groups and machine identities.
    pub(super) owned: Owned<'a>,
    /// A root's groups and identities added to its sub-organizations.
    pub(super) added: Added<'a>,
}

/// The root and user `m` invites, when it is a User invite into a project of a root;
/// `organization_of` finds a project's organization by its `(namespace, name)`.
pub(super) fn invited_to_root<'a>(
    m: &'a ProjectMembership,
    organization_of: impl FnOnce((&'a str, &'a str)) -> Option<&'a OrganizationRef>,
) -> Option<(&'a str, String)> {
    let s = &m.spec.subject;
    if m.spec.invite.is_none() || s.kind != SubjectKind::User {
        return None;
    }
    let (ns, _) = ns_name(m);
    let r = &m.spec.project_ref;
    let pns = r.namespace.as_deref().unwrap_or(ns);
    let owner = organization_of((pns, r.name.as_str()))?;
    (owner.kind == OrganizationKind::Organization).then(|| {
        (
            owner.name.as_str(),
            normalize_email(s.email.as_deref().unwrap_or_default()),
        )
    })
}
