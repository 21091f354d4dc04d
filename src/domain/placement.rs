//! Where an object lives: every object but a root names the organization it belongs to
//! (`spec.organizationRef`), which must exist, and lives in a namespace that organization's
//! `memberNamespaces` admits. Every kind's rules start here.

use super::delegation;
use super::lookup::{Organizations, Presence};
use super::model::Outcome;
use super::problem::{ObjectKey, Problem, Reason};
use crate::api::{MemberNamespaces, NamespacesFrom, OrganizationKind, OrganizationRef};

/// The organization an object targets, once resolved.
pub(super) struct Target<'a> {
    pub(super) kind: OrganizationKind,
    pub(super) name: &'a str,
    /// Name of the root organization (itself, for a root).
    pub(super) root: &'a str,
    pub(super) policy: Option<&'a MemberNamespaces>,
    /// The email domains the root allows (any, when empty).
    pub(super) allowed_domains: &'a [String],
    /// The admins a sub-organization names (none for a root).
    pub(super) admins: &'a [String],
}

impl Target<'_> {
    /// Whether something `owner` owns is the target's own or its root's: all the target can
    /// ever use (a root's once added to a sub-organization).
    pub(super) fn own_or_roots(&self, owner: &OrganizationRef) -> bool {
        (owner.kind == self.kind && owner.name == self.name)
            || (owner.kind == OrganizationKind::Organization && owner.name == self.root)
    }

    /// Whether `found`, a group or identity named from another namespace, is one the target
    /// could use: declared, not refused for its own namespace, and the target's own or its
    /// root's. Anything else gets [`unusable_elsewhere`]'s one answer.
    pub(super) fn may_use_across(&self, found: Option<(Presence, &OrganizationRef)>) -> bool {
        found.is_some_and(|(p, owner)| p != Presence::Foreign && self.own_or_roots(owner))
    }
}

/// What an object's target resolved to.
pub(super) enum Resolved<'a> {
    Found(Target<'a>),
    /// The target exists but is rejected on its own: stay quiet, but for what breaks a rule
    /// regardless (see [`refused_anyway`]). The target as it would be, when its object is
    /// there to say so (not when the schema refused it).
    Rejected(Option<Target<'a>>),
    Missing(Problem),
}

impl<'a> Resolved<'a> {
    /// `target`, found or rejected as its object's `presence` says.
    fn of(presence: Presence, target: Target<'a>) -> Self {
        if presence == Presence::Accepted {
            Resolved::Found(target)
        } else {
            Resolved::Rejected(Some(target))
        }
    }
}

/// Finds the organization `r` names for the object `key`.
pub(super) fn resolve<'a>(
    orgs: &Organizations<'a>,
    r: &'a OrganizationRef,
    key: &ObjectKey,
) -> Resolved<'a> {
    let not_found = |hint: &str| {
        Problem::error(
            Reason::TargetNotFound,
            key,
            "spec.organizationRef.name",
            format!("{} {:?} does not exist{hint}", r.kind, r.name),
        )
    };
    let (roots, subs) = (&orgs.roots, &orgs.subs);
    match r.kind {
        OrganizationKind::Organization => match roots.by_name.get(r.name.as_str()) {
            Some((presence, o)) => {
                let target = Target {
                    kind: r.kind,
                    name: &r.name,
                    root: &r.name,
                    policy: o.spec.member_namespaces.as_ref(),
                    allowed_domains: o
                        .spec
                        .authentication
                        .as_ref()
                        .map(|a| a.allowed_email_domains.as_slice())
                        .unwrap_or_default(),
                    admins: &[],
                };
                Resolved::of(*presence, target)
            }
            None if roots.presence(orgs.set, &r.name) == Presence::Rejected => {
                Resolved::Rejected(None)
            }
            None if subs.by_name.contains_key(r.name.as_str()) => {
                Resolved::Missing(not_found(&format!(
                    ", but SubOrganization {:?} does: set spec.organizationRef.kind: SubOrganization",
                    r.name
                )))
            }
            None => Resolved::Missing(not_found(": create it or fix spec.organizationRef.name")),
        },
        OrganizationKind::SubOrganization => match subs.by_name.get(r.name.as_str()) {
            Some((presence, s)) => {
                let root = s.spec.organization_ref.name.as_str();
                let allowed_domains = roots
                    .by_name
                    .get(root)
                    .and_then(|(_, o)| o.spec.authentication.as_ref())
                    .map(|a| a.allowed_email_domains.as_slice())
                    .unwrap_or_default();
                let target = Target {
                    kind: r.kind,
                    name: &r.name,
                    root,
                    policy: s.spec.member_namespaces.as_ref(),
                    allowed_domains,
                    admins: &s.spec.admins,
                };
                Resolved::of(*presence, target)
            }
            None if orgs
                .set
                .rejected
                .contains(&ObjectKey::cluster("SubOrganization", &r.name)) =>
            {
                Resolved::Rejected(None)
            }
            None if roots.by_name.contains_key(r.name.as_str()) => {
                Resolved::Missing(not_found(&format!(
                    ", but Organization {:?} does: set spec.organizationRef.kind: Organization",
                    r.name
                )))
            }
            None => Resolved::Missing(not_found(": create it or fix spec.organizationRef.name")),
        },
    }
}

/// Whether the object `key` may live in its namespace, given its target's delegation.
pub(super) enum Admission {
    Admitted,
    /// Not admitted: an error to report.
    Refused(Problem),
    /// The namespace's labels are unknown: a warning; the object goes on.
    Unknown(Problem),
    /// The target's selector is broken (reported on the target): stay quiet.
    Quiet,
}

/// Checks delegation for an object of which `what` (`memberships`, `groups`, ...) may live in
/// its namespace.
pub(super) fn admission(
    orgs: &Organizations<'_>,
    target: &Target<'_>,
    key: &ObjectKey,
    what: &str,
) -> Admission {
    let namespace = key.namespace.as_deref().unwrap_or_default();
    match orgs.set.namespaces.get(namespace) {
        Some(labels) => match delegation::admits(target.policy, target.name, labels) {
            Ok(true) => Admission::Admitted,
            Ok(false) => Admission::Refused(Problem::error(
                Reason::NamespaceNotAllowed,
                key,
                "metadata.namespace",
                format!(
                    "namespace {namespace:?} may not hold {what} of {} {:?}: its spec.memberNamespaces admits {}",
                    target.kind,
                    target.name,
                    delegation::describe(target.policy, target.name)
                ),
            )),
            Err(_) => Admission::Quiet,
        },
        None if target.policy.map(|p| p.from) == Some(NamespacesFrom::All) => Admission::Admitted,
        None => Admission::Unknown(Problem::warning(
            Reason::NamespaceUnknown,
            key,
            "metadata.namespace",
            format!(
                "the labels of namespace {namespace:?} are unknown here (no Namespace manifest in the set, or a refused one), so delegation cannot be checked: {} {:?} admits {}",
                target.kind,
                target.name,
                delegation::describe(target.policy, target.name)
            ),
        )),
    }
}

/// For an object whose organization `target` is rejected on its own (and stays quiet about
/// it): whether its namespace is refused, which it breaks whatever becomes of the
/// organization, reported in `out` so that fixing the organization does not reveal a second
/// problem only then.
pub(super) fn refused_anyway(
    orgs: &Organizations<'_>,
    target: Option<&Target<'_>>,
    key: &ObjectKey,
    what: &str,
    out: &mut Outcome,
) -> bool {
    let Some(target) = target else {
        return false;
    };
    match admission(orgs, target, key, what) {
        Admission::Refused(p) => {
            out.problems.push(p);
            true
        }
        _ => false,
    }
}

/// Resolves an owner and checks delegation, reporting what is wrong. When the object cannot
/// be placed (reported here, or quietly when its organization is rejected on its own), what
/// it is: [`Presence::Foreign`] when its namespace is refused, else [`Presence::Rejected`].
pub(super) fn place<'a>(
    orgs: &Organizations<'a>,
    r: &'a OrganizationRef,
    key: &ObjectKey,
    what: &str,
    out: &mut Outcome,
) -> Result<Target<'a>, Presence> {
    let target = match resolve(orgs, r, key) {
        Resolved::Found(t) => t,
        Resolved::Rejected(t) => {
            return Err(if refused_anyway(orgs, t.as_ref(), key, what, out) {
                Presence::Foreign
            } else {
                Presence::Rejected
            });
        }
        Resolved::Missing(p) => {
            out.problems.push(p);
            return Err(Presence::Rejected);
        }
    };
    match admission(orgs, &target, key, what) {
        Admission::Admitted => Ok(target),
        Admission::Unknown(p) => {
            out.problems.push(p);
            Ok(target)
        }
        Admission::Refused(p) => {
            out.problems.push(p);
            Err(Presence::Foreign)
        }
        Admission::Quiet => Err(Presence::Rejected),
    }
}

/// How an object that `place` placed (`placed`) and whose own checks came to `ok` is present.
pub(super) fn presence_of<T>(placed: &Result<T, Presence>, ok: bool) -> Presence {
    match placed {
        Err(p) => *p,
        Ok(_) => Presence::of(ok),
    }
}

/// Whether `key`, an object in its own namespace, names something in another namespace.
pub(super) fn across(key: &ObjectKey, namespace: &str) -> bool {
    key.namespace.as_deref() != Some(namespace)
}

/// The one answer for a reference from `key` to `what` `qualified` in another namespace that
/// `usable` (e.g. `SubOrganization "eng"`) cannot use, whether it does not exist, belongs to
/// another organization, or is refused there: what a delegated namespace is told must not
/// show what another namespace holds, which its RBAC may not let it read.
pub(super) fn unusable_elsewhere(
    reason: Reason,
    key: &ObjectKey,
    field: &str,
    what: &str,
    qualified: &str,
    usable: &str,
    hint: &str,
) -> Problem {
    Problem::error(
        reason,
        key,
        field,
        format!(
            "{what} {qualified:?} is not one {usable} can use: there is no such {what}, or it belongs to another organization (a name in another namespace gets this one answer either way); {hint}"
        ),
    )
}
