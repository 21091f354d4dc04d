//! The rules that need more than one object: the organization tree, who belongs where, and
//! which namespaces may speak for which organization.
//!
//! [`check`] takes a whole set of objects and returns every problem plus which objects are
//! accepted. It runs in time linear in the number of objects: every lookup goes through an
//! index built once. Problems are reported on the object that breaks a rule, never again on the
//! objects that depend on it (a membership in a rejected sub-organization is held back quietly:
//! the sub-organization's own problem says what to fix).

use std::collections::{BTreeMap, HashMap, HashSet};

use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;

use super::delegation;
use super::problem::{ObjectKey, Problem, Reason};
use super::slug::{effective_slug, normalize_email};
use super::temporary::{self, RoleState};
use crate::api::{
    AppConnection, Gateway, Group, MachineIdentity, MemberNamespaces, OrgMembership, Organization,
    OrganizationKind, OrganizationRef, Project, ProjectMembership, Relay, RoleBinding,
    SubOrganization, SubjectKind,
};

/// The objects to check, as plain data.
#[derive(Debug, Default, Clone)]
pub struct ObjectSet {
    /// Root organizations.
    pub organizations: Vec<Organization>,
    /// Sub-organizations.
    pub sub_organizations: Vec<SubOrganization>,
    /// Memberships. Each must have `metadata.namespace` set.
    pub memberships: Vec<OrgMembership>,
    /// Groups. Each must have `metadata.namespace` set.
    pub groups: Vec<Group>,
    /// Machine identities. Each must have `metadata.namespace` set.
    pub identities: Vec<MachineIdentity>,
    /// App connections. Each must have `metadata.namespace` set.
    pub connections: Vec<AppConnection>,
    /// Gateways. Each must have `metadata.namespace` set.
    pub gateways: Vec<Gateway>,
    /// Relays. Each must have `metadata.namespace` set.
    pub relays: Vec<Relay>,
    /// Projects. Each must have `metadata.namespace` set.
    pub projects: Vec<Project>,
    /// Project memberships. Each must have `metadata.namespace` set.
    pub project_memberships: Vec<ProjectMembership>,
    /// Labels of the namespaces whose labels are known. A membership in a namespace missing
    /// here cannot be checked against `memberNamespaces` and gets a warning.
    pub namespaces: HashMap<String, BTreeMap<String, String>>,
    /// Objects that exist but were already rejected on their own (by the schema). References to
    /// them are neither "not found" nor accepted.
    pub rejected: HashSet<ObjectKey>,
}

/// Indexes into the [`ObjectSet`] of the objects every rule accepted.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Accepted {
    /// Indexes into `organizations`.
    pub organizations: Vec<usize>,
    /// Indexes into `sub_organizations`.
    pub sub_organizations: Vec<usize>,
    /// Indexes into `memberships`.
    pub memberships: Vec<usize>,
    /// Indexes into `groups`.
    pub groups: Vec<usize>,
    /// Indexes into `identities`.
    pub identities: Vec<usize>,
    /// Indexes into `connections`.
    pub connections: Vec<usize>,
    /// Indexes into `gateways`.
    pub gateways: Vec<usize>,
    /// Indexes into `relays`.
    pub relays: Vec<usize>,
    /// Indexes into `projects`.
    pub projects: Vec<usize>,
    /// Indexes into `project_memberships`.
    pub project_memberships: Vec<usize>,
}

/// What [`check`] found.
#[derive(Debug, Default, Clone)]
pub struct Outcome {
    /// Every problem, errors and warnings.
    pub problems: Vec<Problem>,
    /// The objects with no error.
    pub accepted: Accepted,
}

/// Key of an Organization object.
pub fn organization_key(o: &Organization) -> ObjectKey {
    ObjectKey::cluster("Organization", &o.name_any())
}

/// Key of a SubOrganization object.
pub fn sub_organization_key(o: &SubOrganization) -> ObjectKey {
    ObjectKey::cluster("SubOrganization", &o.name_any())
}

/// Key of an OrgMembership object.
pub fn membership_key(m: &OrgMembership) -> ObjectKey {
    namespaced_key(m)
}

/// Key of a Group object.
pub fn group_key(g: &Group) -> ObjectKey {
    namespaced_key(g)
}

/// Key of a MachineIdentity object.
pub fn identity_key(i: &MachineIdentity) -> ObjectKey {
    namespaced_key(i)
}

/// Key of any namespaced object of a suborg kind.
pub fn namespaced_key<K: kube::Resource<DynamicType = ()>>(o: &K) -> ObjectKey {
    ObjectKey::namespaced(
        &K::kind(&()),
        o.meta().namespace.as_deref().unwrap_or_default(),
        o.meta().name.as_deref().unwrap_or_default(),
    )
}

/// Key of a Project object.
pub fn project_key(p: &Project) -> ObjectKey {
    namespaced_key(p)
}

/// Key of a ProjectMembership object.
pub fn project_membership_key(m: &ProjectMembership) -> ObjectKey {
    namespaced_key(m)
}

/// How a subject is identified within one organization: kind plus normalized email, or
/// `namespace/name` for a group or machine identity (the namespace defaults to the
/// membership's).
pub(super) fn subject_id(m: &OrgMembership) -> (SubjectKind, String) {
    subject_id_of(
        &m.spec.subject,
        m.metadata.namespace.as_deref().unwrap_or_default(),
    )
}

/// How `s`, named by an object in namespace `own`, is identified: kind plus normalized email,
/// or `namespace/name`.
pub(super) fn subject_id_of(s: &crate::api::Subject, own: &str) -> (SubjectKind, String) {
    let id = match s.kind {
        SubjectKind::User => normalize_email(s.email.as_deref().unwrap_or_default()),
        _ => format!(
            "{}/{}",
            s.namespace.as_deref().unwrap_or(own),
            s.name.as_deref().unwrap_or_default()
        ),
    };
    (s.kind, id)
}

fn describe_subject(m: &OrgMembership) -> String {
    let (kind, id) = subject_id(m);
    format!("{} {id:?}", kind.as_str())
}

/// Among objects competing for one unique value, the one that keeps it: the oldest by
/// `creationTimestamp` (in a cluster), then the first in the set (offline, the first declared).
pub(super) fn precedence<K: kube::Resource>(o: &K, index: usize) -> (Option<Timestamp>, usize) {
    (o.meta().creation_timestamp.as_ref().map(|t| t.0), index)
}

/// Whether an organization is in the set: accepted, rejected, or absent.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Presence {
    Accepted,
    Rejected,
    Absent,
}

/// Runs every cross-object rule over `set`. `now` decides which temporary roles have expired.
pub fn check(set: &ObjectSet, now: Timestamp) -> Outcome {
    let mut out = Outcome::default();
    let roots = check_organizations(set, &mut out);
    let subs = check_sub_organizations(set, &roots, &mut out);
    let projects = super::projects::check(set, &roots, &subs, &mut out);
    let (members, invites) = check_memberships(set, &roots, &subs, &projects, now, &mut out);
    super::projects::check_memberships(
        set, &roots, &subs, &projects, &members, invites, now, &mut out,
    );
    out
}

/// Who and what each organization holds once memberships are decided, for the project rules.
pub(super) struct Members<'a> {
    /// Users' root memberships.
    pub(super) root: RootMembers<'a>,
    /// Users' sub-organization memberships.
    pub(super) sub: RootMembers<'a>,
    /// Groups and machine identities.
    pub(super) owned: super::groups::Owned<'a>,
    /// A root's groups and identities added to a sub-organization: by (sub-organization name,
    /// kind, `namespace/name`).
    pub(super) added: HashMap<(&'a str, SubjectKind, String), Presence>,
}

/// Accepted and rejected root organizations by name.
pub(super) struct Roots<'a> {
    by_name: HashMap<&'a str, (Presence, &'a Organization)>,
}

impl<'a> Roots<'a> {
    fn presence(&self, set: &ObjectSet, name: &str) -> Presence {
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

fn check_organizations<'a>(set: &'a ObjectSet, out: &mut Outcome) -> Roots<'a> {
    let mut by_name = HashMap::with_capacity(set.organizations.len());
    let mut order: Vec<usize> = (0..set.organizations.len()).collect();
    order.sort_by_cached_key(|&i| precedence(&set.organizations[i], i));
    let mut slugs: HashMap<&str, &Organization> = HashMap::new();
    for i in order {
        let o = &set.organizations[i];
        let key = organization_key(o);
        let name = o.metadata.name.as_deref().unwrap_or_default();
        let slug = effective_slug(name, o.spec.slug.as_deref());
        let mut ok = true;
        if let Some(selector) = o
            .spec
            .member_namespaces
            .as_ref()
            .and_then(|m| m.selector.as_ref())
            && let Err(e) = delegation::check_selector(selector)
        {
            out.problems.push(Problem::error(
                Reason::InvalidSelector,
                &key,
                format!("spec.memberNamespaces.selector.{}", e.field),
                e.message,
            ));
            ok = false;
        }
        if let Some(first) = slugs.get(slug) {
            out.problems.push(Problem::error(
                Reason::SlugConflict,
                &key,
                if o.spec.slug.is_some() { "spec.slug" } else { "metadata.name" },
                format!(
                    "slug {slug:?} is already taken by Organization {:?}: root organization slugs must be unique",
                    first.name_any()
                ),
            ));
            ok = false;
        } else {
            slugs.insert(slug, o);
        }
        let presence = if ok {
            Presence::Accepted
        } else {
            Presence::Rejected
        };
        if ok {
            out.accepted.organizations.push(i);
        }
        by_name.insert(name, (presence, o));
    }
    out.accepted.organizations.sort_unstable();
    Roots { by_name }
}

/// Accepted sub-organizations by name, with the name of their root.
pub(super) struct Subs<'a> {
    by_name: HashMap<&'a str, (Presence, &'a SubOrganization)>,
}

/// User memberships as they stand while memberships are checked, by (organization name,
/// email): accepted, or rejected (a rejected membership is reported on its own; its
/// dependants stay quiet).
pub(super) type RootMembers<'a> = HashMap<(&'a str, String), Presence>;

/// An object's `(namespace, name)`, empty where unset.
pub(super) fn ns_name<K: kube::Resource>(o: &K) -> (&str, &str) {
    (
        o.meta().namespace.as_deref().unwrap_or_default(),
        o.meta().name.as_deref().unwrap_or_default(),
    )
}

/// Every user with a root membership, accepted or not, for the admin check: an admin whose root
/// membership is rejected is reported there, not again on the sub-organization.
/// Users a root project invites count too: the invite provisions them at the root.
fn declared_root_members(set: &ObjectSet) -> HashSet<(&str, String)> {
    let mut members: HashSet<(&str, String)> = set
        .memberships
        .iter()
        .filter(|m| {
            m.spec.organization_ref.kind == OrganizationKind::Organization
                && m.spec.subject.kind == SubjectKind::User
        })
        .map(|m| (m.spec.organization_ref.name.as_str(), subject_id(m).1))
        .collect();
    let organizations: HashMap<(&str, &str), &OrganizationRef> = set
        .projects
        .iter()
        .map(|p| (ns_name(p), &p.spec.organization_ref))
        .collect();
    members.extend(set.project_memberships.iter().filter_map(|m| {
        super::projects::invited_to_root(m, |key| organizations.get(&key).copied())
    }));
    members
}

fn check_sub_organizations<'a>(
    set: &'a ObjectSet,
    roots: &Roots<'a>,
    out: &mut Outcome,
) -> Subs<'a> {
    let members = declared_root_members(set);
    let sub_names: HashSet<&str> = set
        .sub_organizations
        .iter()
        .filter_map(|o| o.metadata.name.as_deref())
        .collect();
    let mut by_name = HashMap::with_capacity(set.sub_organizations.len());
    let mut order: Vec<usize> = (0..set.sub_organizations.len()).collect();
    order.sort_by_cached_key(|&i| precedence(&set.sub_organizations[i], i));
    let mut slugs: HashMap<(&str, &str), &SubOrganization> = HashMap::new();
    for i in order {
        let s = &set.sub_organizations[i];
        let key = sub_organization_key(s);
        let name = s.metadata.name.as_deref().unwrap_or_default();
        let parent = s.spec.organization_ref.name.as_str();
        let mut ok = true;
        let mut report = |p: Problem, ok: &mut bool| {
            *ok = false;
            out.problems.push(p);
        };
        match roots.presence(set, parent) {
            Presence::Accepted => {}
            Presence::Rejected => ok = false,
            Presence::Absent => {
                let is_sub = sub_names.contains(parent);
                let message = if is_sub {
                    format!(
                        "SubOrganization {name:?} names parent {parent:?}, which is a SubOrganization: sub-organizations cannot have children (one level of nesting)"
                    )
                } else {
                    format!(
                        "SubOrganization {name:?} names parent Organization {parent:?}, which does not exist: create it or fix spec.organizationRef.name"
                    )
                };
                let reason = if is_sub {
                    Reason::NestingViolation
                } else {
                    Reason::ParentNotFound
                };
                report(
                    Problem::error(reason, &key, "spec.organizationRef.name", message),
                    &mut ok,
                );
            }
        }
        if let Some(selector) = s
            .spec
            .member_namespaces
            .as_ref()
            .and_then(|m| m.selector.as_ref())
            && let Err(e) = delegation::check_selector(selector)
        {
            report(
                Problem::error(
                    Reason::InvalidSelector,
                    &key,
                    format!("spec.memberNamespaces.selector.{}", e.field),
                    e.message,
                ),
                &mut ok,
            );
        }
        let slug = effective_slug(name, s.spec.slug.as_deref());
        if let Some(first) = slugs.get(&(parent, slug)) {
            report(
                Problem::error(
                    Reason::SlugConflict,
                    &key,
                    if s.spec.slug.is_some() {
                        "spec.slug"
                    } else {
                        "metadata.name"
                    },
                    format!(
                        "slug {slug:?} is already taken under Organization {parent:?} by SubOrganization {:?}: slugs must be unique among the children of a root",
                        first.name_any()
                    ),
                ),
                &mut ok,
            );
        } else {
            slugs.insert((parent, slug), s);
        }
        let mut seen_admins: HashMap<String, usize> = HashMap::new();
        for (j, admin) in s.spec.admins.iter().enumerate() {
            let email = normalize_email(admin);
            if let Some(prev) = seen_admins.insert(email.clone(), j) {
                report(
                    Problem::error(
                        Reason::DuplicateAdmin,
                        &key,
                        format!("spec.admins[{j}]"),
                        format!(
                            "{admin:?} is already listed as spec.admins[{prev}] (emails are compared case-insensitively)"
                        ),
                    ),
                    &mut ok,
                );
                continue;
            }
            if roots.presence(set, parent) == Presence::Accepted
                && !members.contains(&(parent, email))
            {
                report(
                    Problem::error(
                        Reason::AdminNotInRoot,
                        &key,
                        format!("spec.admins[{j}]"),
                        format!(
                            "admin {admin:?} is not a member of root Organization {parent:?}: users exist at the root, so add an OrgMembership for them in {parent:?} first"
                        ),
                    ),
                    &mut ok,
                );
            }
        }
        if ok {
            out.accepted.sub_organizations.push(i);
        }
        by_name.insert(
            name,
            (
                if ok {
                    Presence::Accepted
                } else {
                    Presence::Rejected
                },
                s,
            ),
        );
    }
    out.accepted.sub_organizations.sort_unstable();
    Subs { by_name }
}

/// The organization an object targets, once resolved.
pub(super) struct Target<'a> {
    pub(super) kind: OrganizationKind,
    pub(super) name: &'a str,
    /// Name of the root organization (itself, for a root).
    pub(super) root: &'a str,
    pub(super) policy: Option<&'a MemberNamespaces>,
    allowed_domains: &'a [String],
    /// The admins a sub-organization names (none for a root).
    pub(super) admins: &'a [String],
}

impl Target<'_> {
    /// The problem with `email` joining this organization's root, if its domain is not one
    /// the root allows. `what` prefixes the message (`"cannot be invited: "`).
    pub(super) fn refuses_email(
        &self,
        email: &str,
        key: &ObjectKey,
        what: &str,
    ) -> Option<Problem> {
        if self.allowed_domains.is_empty() {
            return None;
        }
        let domain = email.rsplit_once('@').map(|(_, d)| d).unwrap_or_default();
        if self
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
                self.root,
                self.allowed_domains.join(", ")
            ),
        ))
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
    set: &ObjectSet,
    target: &Target<'_>,
    key: &ObjectKey,
    what: &str,
) -> Admission {
    let namespace = key.namespace.as_deref().unwrap_or_default();
    match set.namespaces.get(namespace) {
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
        None if target.policy.map(|p| p.from) == Some(crate::api::NamespacesFrom::All) => {
            Admission::Admitted
        }
        None => Admission::Unknown(Problem::warning(
            Reason::NamespaceUnknown,
            key,
            "metadata.namespace",
            format!(
                "the labels of namespace {namespace:?} are unknown here (no Namespace manifest in the set), so delegation cannot be checked: {} {:?} admits {}",
                target.kind,
                target.name,
                delegation::describe(target.policy, target.name)
            ),
        )),
    }
}

fn check_memberships<'a>(
    set: &'a ObjectSet,
    roots: &Roots<'a>,
    subs: &Subs<'a>,
    projects: &super::projects::Projects<'a>,
    now: Timestamp,
    out: &mut Outcome,
) -> (Members<'a>, super::projects::Decided<'a>) {
    // Users' root memberships first, then the project invites that provision root users, so
    // sub-organization memberships can ask who is in the root; groups and machine identities
    // last, once their members' memberships are known.
    let mut order: Vec<usize> = (0..set.memberships.len()).collect();
    order.sort_by_cached_key(|&i| {
        let m = &set.memberships[i];
        (
            m.spec.subject.kind != SubjectKind::User,
            m.spec.organization_ref.kind == OrganizationKind::SubOrganization,
            precedence(m, i),
        )
    });
    let mut root_members: RootMembers<'a> = HashMap::new();
    let mut sub_members: RootMembers<'a> = HashMap::new();
    let mut added: HashMap<(&'a str, SubjectKind, String), Presence> = HashMap::new();
    let mut owned: Option<super::groups::Owned<'a>> = None;
    let mut holders: HashMap<(OrganizationKind, &str, SubjectKind, String), ObjectKey> =
        HashMap::new();
    let mut invites = None;
    for i in order {
        let m = &set.memberships[i];
        let key = membership_key(m);
        let r = &m.spec.organization_ref;
        let mut errors = Vec::new();
        let at_root =
            m.spec.subject.kind == SubjectKind::User && r.kind == OrganizationKind::Organization;
        if !at_root && invites.is_none() {
            invites = Some(invited_users(
                set,
                roots,
                subs,
                projects,
                &mut root_members,
                now,
                out,
            ));
        }
        if m.spec.subject.kind != SubjectKind::User && owned.is_none() {
            // Every user membership is decided: groups can be checked against them now.
            owned = Some(super::groups::check(
                set,
                roots,
                subs,
                &root_members,
                &sub_members,
                out,
            ));
        }
        let target = match resolve_target(set, roots, subs, &m.spec.organization_ref, &key) {
            Resolved::Found(t) => t,
            Resolved::Rejected => {
                // The target is rejected on its own; keep quiet but remember the subject as a
                // (rejected) member so what depends on that membership stays quiet too.
                if m.spec.subject.kind == SubjectKind::User {
                    let members = match r.kind {
                        OrganizationKind::Organization => &mut root_members,
                        OrganizationKind::SubOrganization => &mut sub_members,
                    };
                    members.insert((r.name.as_str(), subject_id(m).1), Presence::Rejected);
                } else if r.kind == OrganizationKind::SubOrganization {
                    let (kind, id) = subject_id(m);
                    added.insert((r.name.as_str(), kind, id), Presence::Rejected);
                }
                continue;
            }
            Resolved::Missing(p) => {
                out.problems.push(p);
                continue;
            }
        };

        // Delegation: the namespace must be one the target admits.
        match admission(set, &target, &key, "memberships") {
            Admission::Admitted => {}
            Admission::Refused(p) => errors.push(p),
            Admission::Unknown(p) => out.problems.push(p),
            Admission::Quiet => continue,
        }

        let (subject_kind, subject) = subject_id(m);
        match (subject_kind, target.kind) {
            (SubjectKind::User, OrganizationKind::Organization) => {
                errors.extend(target.refuses_email(&subject, &key, ""));
            }
            (SubjectKind::User, OrganizationKind::SubOrganization) => {
                // The sub-organization names them as an admin: a no-access membership there
                // would contradict it, and which one wins would be a guess.
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
                    Some(_) => continue, // the root membership is rejected; it says why
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
            }
            (kind, OrganizationKind::Organization) => {
                let owned = owned
                    .as_ref()
                    .expect("checked before the first group or identity");
                errors.push(owned.at_root(kind, &subject, &target, &key));
            }
            (kind, OrganizationKind::SubOrganization) => {
                let owned = owned
                    .as_ref()
                    .expect("checked before the first group or identity");
                match owned.visible_in(kind, &subject, &target, &key) {
                    super::groups::Visibility::Visible => {}
                    // The group or identity is rejected; it says why.
                    super::groups::Visibility::Quiet => {
                        added.insert((target.name, kind, subject.clone()), Presence::Rejected);
                        continue;
                    }
                    super::groups::Visibility::Refused(p) => errors.push(p),
                }
            }
        }

        check_roles(
            &m.spec.roles,
            &m.metadata,
            &key,
            now,
            &mut errors,
            &mut out.problems,
        );

        let holder = (target.kind, target.name, subject_kind, subject.clone());
        if let Some(first) = holders.get(&holder) {
            errors.push(Problem::error(
                Reason::DuplicateMembership,
                &key,
                "spec.subject",
                format!(
                    "{} already has a membership in {} {:?} through OrgMembership {}: give one membership all the roles",
                    describe_subject(m),
                    target.kind,
                    target.name,
                    first.namespace.as_deref().map(|ns| format!("{ns}/{}", first.name)).unwrap_or_default()
                ),
            ));
        } else {
            holders.insert(holder, key.clone());
        }

        let ok = errors.is_empty();
        out.problems.extend(errors);
        if subject_kind == SubjectKind::User {
            let presence = if ok {
                Presence::Accepted
            } else {
                Presence::Rejected
            };
            let members = match target.kind {
                OrganizationKind::Organization => &mut root_members,
                OrganizationKind::SubOrganization => &mut sub_members,
            };
            members.entry((target.name, subject)).or_insert(presence);
        } else if target.kind == OrganizationKind::SubOrganization {
            let presence = if ok {
                Presence::Accepted
            } else {
                Presence::Rejected
            };
            added
                .entry((target.name, subject_kind, subject))
                .or_insert(presence);
        }
        if ok {
            out.accepted.memberships.push(i);
        }
    }
    out.accepted.memberships.sort_unstable();
    let invites = match invites {
        Some(i) => i,
        None => invited_users(set, roots, subs, projects, &mut root_members, now, out),
    };
    let owned = match owned {
        Some(o) => o,
        None => super::groups::check(set, roots, subs, &root_members, &sub_members, out),
    };
    let members = Members {
        root: root_members,
        sub: sub_members,
        owned,
        added,
    };
    (members, invites)
}

/// Decides the project invites that provision root users, and counts those users as root
/// members: the seed's user provisioned through a project invite is a root user like any other.
fn invited_users<'a>(
    set: &'a ObjectSet,
    roots: &Roots<'a>,
    subs: &Subs<'a>,
    projects: &super::projects::Projects<'a>,
    root_members: &mut RootMembers<'a>,
    now: Timestamp,
    out: &mut Outcome,
) -> super::projects::Decided<'a> {
    let decided =
        super::projects::check_invites(set, roots, subs, projects, root_members, now, out);
    for (user, presence) in &decided.invited {
        root_members.entry(user.clone()).or_insert(*presence);
    }
    decided
}

/// What an object's target resolved to.
pub(super) enum Resolved<'a> {
    Found(Target<'a>),
    /// The target exists but is rejected on its own: stay quiet.
    Rejected,
    Missing(Problem),
}

/// Finds the organization `r` names for the object `key`.
pub(super) fn resolve_target<'a>(
    set: &'a ObjectSet,
    roots: &Roots<'a>,
    subs: &Subs<'a>,
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
    match r.kind {
        OrganizationKind::Organization => match roots.by_name.get(r.name.as_str()) {
            Some((Presence::Accepted, o)) => Resolved::Found(Target {
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
            }),
            Some(_) => Resolved::Rejected,
            None if roots.presence(set, &r.name) == Presence::Rejected => Resolved::Rejected,
            None if subs.by_name.contains_key(r.name.as_str()) => {
                Resolved::Missing(not_found(&format!(
                    ", but SubOrganization {:?} does: set spec.organizationRef.kind: SubOrganization",
                    r.name
                )))
            }
            None => Resolved::Missing(not_found(": create it or fix spec.organizationRef.name")),
        },
        OrganizationKind::SubOrganization => match subs.by_name.get(r.name.as_str()) {
            Some((Presence::Accepted, s)) => {
                let root = s.spec.organization_ref.name.as_str();
                let allowed_domains = roots
                    .by_name
                    .get(root)
                    .and_then(|(_, o)| o.spec.authentication.as_ref())
                    .map(|a| a.allowed_email_domains.as_slice())
                    .unwrap_or_default();
                Resolved::Found(Target {
                    kind: r.kind,
                    name: &r.name,
                    root,
                    policy: s.spec.member_namespaces.as_ref(),
                    allowed_domains,
                    admins: &s.spec.admins,
                })
            }
            Some(_) => Resolved::Rejected,
            None if set
                .rejected
                .contains(&ObjectKey::cluster("SubOrganization", &r.name)) =>
            {
                Resolved::Rejected
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

/// Temporary roles: the window must make sense; a role that has already expired grants nothing
/// and is worth a warning. Offline, a `duration` without `start` counts from now.
pub(super) fn check_roles(
    roles: &[RoleBinding],
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    key: &ObjectKey,
    now: Timestamp,
    errors: &mut Vec<Problem>,
    warnings: &mut Vec<Problem>,
) {
    let granted_at = meta.creation_timestamp.as_ref().map(|t| t.0).unwrap_or(now);
    for (j, role) in roles.iter().enumerate() {
        match temporary::state(role, granted_at, now) {
            Ok(RoleState::Expired { at }) => warnings.push(Problem::warning(
                Reason::RoleExpired,
                key,
                format!("spec.roles[{j}].temporary"),
                format!("role {:?} expired at {at} and grants nothing", role.role),
            )),
            Ok(_) => {}
            Err(e) => errors.push(Problem::error(
                Reason::InvalidTemporaryAccess,
                key,
                format!("spec.roles[{j}].temporary.{}", e.field),
                e.message,
            )),
        }
    }
}
