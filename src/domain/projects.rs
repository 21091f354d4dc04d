//! Projects and what they use (the seed's "Project Visibility", "Working with Users" and the
//! per-organization app connections, gateways and relays).
//!
//! - A project belongs to the organization that creates it and is visible there alone: a root
//!   sees its own projects, a sub-organization its own.
//! - App connections, gateways and relays belong to one organization and are never inherited:
//!   a project uses its own organization's, a gateway its own organization's relay. Their
//!   credentials stay in a Secret of the object's own namespace.
//! - A project's members are what its organization can see. In a root: any root member, the
//!   root's groups and identities, or a new user provisioned by a project invite. In a
//!   sub-organization: users added to it (or named its admins), its own groups and identities,
//!   and the root's groups and identities once added to it.
//!
//! A project member whose organization membership is rejected or gone is held back quietly
//! (that membership says why), so removing someone from an organization revokes their project
//! access in the same sync.

use std::collections::{HashMap, HashSet};

use kube::ResourceExt;

use super::groups::place;
use super::problem::{ObjectKey, Problem, Reason};
use super::slug::{effective_slug, normalize_email};
use super::tree::{
    Members, ObjectSet, Outcome, Presence, Resolved, RootMembers, Roots, Subs, admission,
    check_roles, namespaced_key, ns_name, precedence, resolve_target, subject_id_of,
};
use crate::api::{
    LocalObjectRef, OrgResource, OrganizationKind, OrganizationRef, Project, ProjectMembership,
    SubjectKind,
};
use k8s_openapi::jiff::Timestamp;

/// Checked objects of one kind by `(namespace, name)`: accepted or not, and their owner.
type Checked<'a> = HashMap<(&'a str, &'a str), (Presence, &'a OrganizationRef)>;

fn describe(r: &OrganizationRef) -> String {
    format!("{} {:?}", r.kind, r.name)
}

/// What a reference from `key` to a `kind` object resolved to.
enum Found {
    /// Accepted, and owned by the same organization.
    Same,
    /// Rejected on its own: hold the referrer back quietly.
    Quiet,
    Problem(Problem),
}

/// Whether a reference is fine; its problem, if any, is reported.
fn settle(found: Found, out: &mut Outcome) -> bool {
    match found {
        Found::Same => true,
        Found::Quiet => false,
        Found::Problem(p) => {
            out.problems.push(p);
            false
        }
    }
}

/// Resolves `r` (a reference from `key`, owned by `owner`, at `field`) among `checked`.
#[allow(clippy::too_many_arguments)]
fn reference(
    set: &ObjectSet,
    checked: &Checked<'_>,
    kind: &str,
    r: &LocalObjectRef,
    own_namespace: &str,
    owner: &OrganizationRef,
    key: &ObjectKey,
    field: &str,
) -> Found {
    let ns = r.namespace.as_deref().unwrap_or(own_namespace);
    let qualified = r.qualified(own_namespace);
    match checked.get(&(ns, r.name.as_str())) {
        Some((Presence::Accepted, o)) if *o == owner => Found::Same,
        Some((Presence::Accepted, o)) => Found::Problem(Problem::error(
            Reason::ResourceNotInOrganization,
            key,
            field,
            format!(
                "{kind} {qualified:?} belongs to {}, but {} {:?} belongs to {}: app connections, gateways and relays belong to one organization and are never shared (not with sub-organizations, not with the root, not with siblings); use one of {}'s own",
                describe(o),
                key.kind,
                key.name,
                describe(owner),
                describe(owner)
            ),
        )),
        Some(_) => Found::Quiet,
        None if set
            .rejected
            .contains(&ObjectKey::namespaced(kind, ns, &r.name)) =>
        {
            Found::Quiet
        }
        None => Found::Problem(Problem::error(
            Reason::ReferenceNotFound,
            key,
            field,
            format!(
                "{kind} {qualified:?} does not exist: create it in {} or fix {field}",
                describe(owner)
            ),
        )),
    }
}

/// Checks one per-organization kind: its owner, delegation, and that its credentials stay in
/// its own namespace. `relays` is given for gateways.
fn check_resources<'a, K: OrgResource>(
    set: &'a ObjectSet,
    list: &'a [K],
    roots: &Roots<'a>,
    subs: &Subs<'a>,
    relays: Option<&Checked<'a>>,
    what: &str,
    out: &mut Outcome,
) -> (Checked<'a>, Vec<usize>) {
    let mut checked = HashMap::with_capacity(list.len());
    let mut accepted = Vec::new();
    for (i, o) in list.iter().enumerate() {
        let key = namespaced_key(o);
        let (ns, _) = ns_name(o);
        let mut ok = place(set, roots, subs, o.organization_ref(), &key, what, out).is_some();
        if let Some(c) = o.credentials_ref()
            && let Some(other) = c.namespace.as_deref().filter(|n| *n != ns)
        {
            out.problems.push(Problem::error(
                Reason::SecretOutsideNamespace,
                &key,
                "spec.credentialsRef.namespace",
                format!(
                    "{} {:?} in namespace {ns:?} references Secret {other}/{}: credentials must be in the object's own namespace, so RBAC in one namespace never reaches another's Secrets; copy the Secret to {ns:?} or omit the namespace",
                    K::KIND,
                    o.name_any(),
                    c.name
                ),
            ));
            ok = false;
        }
        if ok && let (Some(relays), Some(r)) = (relays, o.relay_ref()) {
            let found = reference(
                set,
                relays,
                "Relay",
                r,
                ns,
                o.organization_ref(),
                &key,
                "spec.relayRef",
            );
            ok = settle(found, out);
        }
        if ok {
            accepted.push(i);
        }
        let presence = if ok {
            Presence::Accepted
        } else {
            Presence::Rejected
        };
        checked.insert(ns_name(o), (presence, o.organization_ref()));
    }
    (checked, accepted)
}

/// Projects by `(namespace, name)`, accepted or not.
pub(super) type Projects<'a> = HashMap<(&'a str, &'a str), (Presence, &'a Project)>;

/// Checks app connections, gateways, relays and projects: what needs no membership.
pub(super) fn check<'a>(
    set: &'a ObjectSet,
    roots: &Roots<'a>,
    subs: &Subs<'a>,
    out: &mut Outcome,
) -> Projects<'a> {
    let (relays, accepted) = check_resources(set, &set.relays, roots, subs, None, "relays", out);
    out.accepted.relays = accepted;
    let (gateways, accepted) = check_resources(
        set,
        &set.gateways,
        roots,
        subs,
        Some(&relays),
        "gateways",
        out,
    );
    out.accepted.gateways = accepted;
    let (connections, accepted) = check_resources(
        set,
        &set.connections,
        roots,
        subs,
        None,
        "app connections",
        out,
    );
    out.accepted.connections = accepted;
    check_projects(set, roots, subs, &connections, &gateways, out)
}

fn check_projects<'a>(
    set: &'a ObjectSet,
    roots: &Roots<'a>,
    subs: &Subs<'a>,
    connections: &Checked<'a>,
    gateways: &Checked<'a>,
    out: &mut Outcome,
) -> Projects<'a> {
    let mut order: Vec<usize> = (0..set.projects.len()).collect();
    order.sort_by_cached_key(|&i| precedence(&set.projects[i], i));
    let mut slugs: HashMap<(OrganizationKind, &str, &str), &Project> = HashMap::new();
    let mut projects = HashMap::with_capacity(set.projects.len());
    for i in order {
        let p = &set.projects[i];
        let key = namespaced_key(p);
        let (ns, name) = ns_name(p);
        let owner = &p.spec.organization_ref;
        let mut ok = place(set, roots, subs, owner, &key, "projects", out).is_some();
        if ok {
            let slug = effective_slug(name, p.spec.slug.as_deref());
            match slugs.get(&(owner.kind, owner.name.as_str(), slug)) {
                Some(first) => {
                    out.problems.push(Problem::error(
                        Reason::SlugConflict,
                        &key,
                        if p.spec.slug.is_some() {
                            "spec.slug"
                        } else {
                            "metadata.name"
                        },
                        format!(
                            "project slug {slug:?} is already taken in {} by Project {}/{}: project slugs are unique within an organization",
                            describe(owner),
                            first.namespace().unwrap_or_default(),
                            first.name_any()
                        ),
                    ));
                    ok = false;
                }
                None => {
                    slugs.insert((owner.kind, owner.name.as_str(), slug), p);
                }
            }
        }
        let mut seen: HashMap<String, usize> = HashMap::new();
        for (j, r) in p.spec.app_connections.iter().enumerate() {
            let field = format!("spec.appConnections[{j}]");
            if let Some(first) = seen.insert(r.qualified(ns), j) {
                out.problems.push(Problem::error(
                    Reason::DuplicateReference,
                    &key,
                    field,
                    format!(
                        "AppConnection {:?} is already listed as spec.appConnections[{first}]: list each connection once",
                        r.qualified(ns)
                    ),
                ));
                ok = false;
                continue;
            }
            if !settle(
                reference(
                    set,
                    connections,
                    "AppConnection",
                    r,
                    ns,
                    owner,
                    &key,
                    &field,
                ),
                out,
            ) {
                ok = false;
            }
        }
        if let Some(r) = &p.spec.gateway_ref
            && !settle(
                reference(
                    set,
                    gateways,
                    "Gateway",
                    r,
                    ns,
                    owner,
                    &key,
                    "spec.gatewayRef",
                ),
                out,
            )
        {
            ok = false;
        }
        if ok {
            out.accepted.projects.push(i);
        }
        let presence = if ok {
            Presence::Accepted
        } else {
            Presence::Rejected
        };
        projects.insert((ns, name), (presence, p));
    }
    out.accepted.projects.sort_unstable();
    projects
}

/// Project memberships already decided, and who holds each place in a project.
#[derive(Default)]
pub(super) struct Decided<'a> {
    done: HashSet<usize>,
    holders: HashMap<(String, SubjectKind, String), ObjectKey>,
    /// Users a root project's invite provisions, by (root, email): root users from then on,
    /// who can be added to sub-organizations and groups like any other.
    pub(super) invited: HashMap<(&'a str, String), Presence>,
}

/// Which project memberships a pass decides.
enum Pass<'m, 'a> {
    /// Invites of users who have no root membership: decided before the organizations'
    /// memberships, since the user they provision is a root user.
    Invites(&'m RootMembers<'a>),
    /// Every other project membership, once organization memberships are decided.
    Rest(&'m Members<'a>),
}

/// Decides the project invites that provision a root user (see [`Pass::Invites`]).
pub(super) fn check_invites<'a>(
    set: &'a ObjectSet,
    roots: &Roots<'a>,
    subs: &Subs<'a>,
    projects: &Projects<'a>,
    root_members: &RootMembers<'a>,
    now: Timestamp,
    out: &mut Outcome,
) -> Decided<'a> {
    let mut decided = Decided::default();
    let pass = Pass::Invites(root_members);
    check_project_memberships(set, roots, subs, projects, &pass, &mut decided, now, out);
    decided
}

/// Decides the project memberships the invite pass left.
#[allow(clippy::too_many_arguments)]
pub(super) fn check_memberships<'a>(
    set: &'a ObjectSet,
    roots: &Roots<'a>,
    subs: &Subs<'a>,
    projects: &Projects<'a>,
    members: &Members<'a>,
    mut decided: Decided<'a>,
    now: Timestamp,
    out: &mut Outcome,
) {
    let pass = Pass::Rest(members);
    check_project_memberships(set, roots, subs, projects, &pass, &mut decided, now, out);
    out.accepted.project_memberships.sort_unstable();
}

#[allow(clippy::too_many_arguments)]
fn check_project_memberships<'a>(
    set: &'a ObjectSet,
    roots: &Roots<'a>,
    subs: &Subs<'a>,
    projects: &Projects<'a>,
    pass: &Pass<'_, 'a>,
    decided: &mut Decided<'a>,
    now: Timestamp,
    out: &mut Outcome,
) {
    let mut order: Vec<usize> = (0..set.project_memberships.len()).collect();
    order.sort_by_cached_key(|&i| precedence(&set.project_memberships[i], i));
    for i in order {
        if decided.done.contains(&i) {
            continue;
        }
        let m = &set.project_memberships[i];
        if let Pass::Invites(root_members) = pass {
            let Some(user) = provisions_root_user(m, projects, root_members) else {
                continue;
            };
            // Rejected until it passes every check, so what depends on it stays quiet.
            decided.invited.entry(user).or_insert(Presence::Rejected);
        }
        decided.done.insert(i);
        let key = namespaced_key(m);
        let (ns, _) = ns_name(m);
        let r = &m.spec.project_ref;
        let project_name = r.qualified(ns);
        let pns = r.namespace.as_deref().unwrap_or(ns);
        let project = match projects.get(&(pns, r.name.as_str())) {
            Some((Presence::Accepted, p)) => *p,
            Some(_) => continue,
            None if set
                .rejected
                .contains(&ObjectKey::namespaced("Project", pns, &r.name)) =>
            {
                continue;
            }
            None => {
                out.problems.push(Problem::error(
                    Reason::ReferenceNotFound,
                    &key,
                    "spec.projectRef.name",
                    format!(
                        "Project {project_name:?} does not exist: create it or fix spec.projectRef"
                    ),
                ));
                continue;
            }
        };
        let owner = &project.spec.organization_ref;
        let target = match resolve_target(set, roots, subs, owner, &key) {
            Resolved::Found(t) => t,
            // An accepted project's organization is accepted.
            _ => continue,
        };
        let mut errors = Vec::new();
        match admission(set, &target, &key, "project memberships") {
            super::tree::Admission::Admitted => {}
            super::tree::Admission::Refused(p) => errors.push(p),
            super::tree::Admission::Unknown(p) => out.problems.push(p),
            super::tree::Admission::Quiet => continue,
        }
        let (kind, subject) = subject_id_of(&m.spec.subject, ns);
        let in_project = format!(
            "Project {project_name:?} of {} {:?}",
            target.kind, target.name
        );
        let members = match pass {
            Pass::Invites(_) => None,
            Pass::Rest(members) => Some(*members),
        };
        let quiet = match (members, kind, target.kind) {
            (None, _, _) => {
                errors.extend(target.refuses_email(&subject, &key, "cannot be invited: it "));
                false
            }
            (Some(members), SubjectKind::User, OrganizationKind::Organization) => {
                match members.root.get(&(target.name, subject.clone())) {
                    Some(Presence::Accepted) => false,
                    Some(_) => true,
                    None => {
                        errors.push(Problem::error(
                            Reason::SubjectNotInOrganization,
                            &key,
                            "spec.subject.email",
                            format!(
                                "user {subject:?} is not a member of root Organization {:?}, so {in_project} cannot add them: add an OrgMembership in {:?}, or set spec.invite to provision them through this project",
                                target.name, target.name
                            ),
                        ));
                        false
                    }
                }
            }
            (Some(members), SubjectKind::User, OrganizationKind::SubOrganization) => {
                if m.spec.invite.is_some() {
                    errors.push(Problem::error(
                        Reason::InviteOutsideRoot,
                        &key,
                        "spec.invite",
                        format!(
                            "{in_project} cannot invite: users are provisioned at the root; add {subject:?} to root Organization {:?} and then to SubOrganization {:?} with OrgMemberships, and drop spec.invite",
                            target.root, target.name
                        ),
                    ));
                }
                let admin = target.admins.iter().any(|a| normalize_email(a) == subject);
                match members.sub.get(&(target.name, subject.clone())) {
                    Some(Presence::Accepted) => false,
                    _ if admin => false,
                    Some(_) => true,
                    None => {
                        errors.push(Problem::error(
                            Reason::SubjectNotInOrganization,
                            &key,
                            "spec.subject.email",
                            format!(
                                "user {subject:?} has not been added to SubOrganization {:?}, so {in_project} cannot see them: users must be added to the sub-organization (an OrgMembership there, after one in root {:?}) before they can join its projects",
                                target.name, target.root
                            ),
                        ));
                        false
                    }
                }
            }
            (Some(members), kind, _) => match members.owned.find(kind, &subject) {
                None => {
                    errors.push(Problem::error(
                        Reason::SubjectNotFound,
                        &key,
                        "spec.subject.name",
                        format!(
                            "{} {subject:?} does not exist: create it or fix spec.subject.name and spec.subject.namespace",
                            kind.as_str()
                        ),
                    ));
                    false
                }
                Some((Presence::Accepted, o)) if o.kind == target.kind && o.name == target.name => {
                    false
                }
                Some((Presence::Accepted, o))
                    if target.kind == OrganizationKind::SubOrganization
                        && o.kind == OrganizationKind::Organization
                        && o.name == target.root =>
                {
                    match members.added.get(&(target.name, kind, subject.clone())) {
                        Some(Presence::Accepted) => false,
                        Some(_) => true,
                        None => {
                            errors.push(Problem::error(
                                Reason::SubjectNotInOrganization,
                                &key,
                                "spec.subject",
                                format!(
                                    "{} {subject:?} belongs to root Organization {:?} and has not been added to SubOrganization {:?}, so {in_project} cannot see it: add it there with an OrgMembership first",
                                    kind.as_str(),
                                    target.root,
                                    target.name
                                ),
                            ));
                            false
                        }
                    }
                }
                Some((Presence::Accepted, o)) => {
                    errors.push(Problem::error(
                        Reason::SubjectNotVisible,
                        &key,
                        "spec.subject",
                        format!(
                            "{} {subject:?} belongs to {}, which {in_project} cannot see: what a sub-organization creates is visible there alone, and a sub-organization sees only its root's groups and identities once added",
                            kind.as_str(),
                            describe(o)
                        ),
                    ));
                    false
                }
                Some(_) => true,
            },
        };
        if quiet {
            continue;
        }
        check_roles(
            &m.spec.roles,
            &m.metadata,
            &key,
            now,
            &mut errors,
            &mut out.problems,
        );
        let holder = (project_name.clone(), kind, subject.clone());
        if let Some(first) = decided.holders.get(&holder) {
            errors.push(Problem::error(
                Reason::DuplicateMembership,
                &key,
                "spec.subject",
                format!(
                    "{} {subject:?} already has a membership in Project {project_name:?} through ProjectMembership {}/{}: give one membership all the roles",
                    kind.as_str(),
                    first.namespace.as_deref().unwrap_or_default(),
                    first.name
                ),
            ));
        } else if errors.is_empty() {
            // A rejected membership does not take the subject's place from a good one.
            decided.holders.insert(holder, key.clone());
        }
        if errors.is_empty() {
            out.accepted.project_memberships.push(i);
            if members.is_none() {
                decided
                    .invited
                    .insert((target.root, subject), Presence::Accepted);
            }
        }
        out.problems.extend(errors);
    }
}

/// The root and user a project membership provisions by invite, when it is one that does: a
/// user without a root membership, invited to an accepted project of a root.
fn provisions_root_user<'a>(
    m: &'a ProjectMembership,
    projects: &Projects<'a>,
    root_members: &RootMembers<'a>,
) -> Option<(&'a str, String)> {
    let user = invited_to_root(m, |key| match projects.get(&key) {
        Some((Presence::Accepted, p)) => Some(&p.spec.organization_ref),
        _ => None,
    })?;
    (!root_members.contains_key(&user)).then_some(user)
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
