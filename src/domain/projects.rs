//! Projects and their members (the seed's "Project Visibility" and "Working with Users").
//!
//! - A project belongs to the organization that creates it and is visible there alone: a root
//!   sees its own projects, a sub-organization its own. Its slug is unique there. It uses its
//!   own organization's app connections and gateway (see [`super::resources`]).
//! - A project's members are what its organization can see. In a root: any root member, the
//!   root's groups and identities, or a new user provisioned by a project invite. In a
//!   sub-organization: users added to it (or named its admins), its own groups and identities,
//!   and the root's groups and identities once added to it.
//!
//! [`super::check`] runs these as three phases: the projects (phase 4), the invites that
//! provision a root user (phase 6, before sub-organization memberships, which may name that
//! user), and every other project membership once organization memberships are decided
//! (phase 10).
//!
//! A project member whose organization membership is rejected or gone is held back quietly
//! (that membership says why), so removing someone from an organization revokes their project
//! access in the same sync.

use std::collections::{HashMap, HashSet};

use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;

use super::lookup::{Members, Organizations, Presence, Projects, UserMembers, invited_to_root};
use super::memberships::refuses_email;
use super::model::{
    ObjectSet, Outcome, by_precedence, describe_org, namespaced_key, ns_name, subject_id_of,
};
use super::placement::{
    Admission, Resolved, Target, across, admission, place, presence_of, refused_anyway, resolve,
    unusable_elsewhere,
};
use super::problem::{ObjectKey, Problem, Reason};
use super::resources::Found;
use super::resources::{Resources, reference, settle};
use super::slug::{effective_slug, normalize_email, slug_field};
use super::temporary::check_roles;
use crate::api::{OrganizationKind, Project, ProjectMembership, SubjectKind};

/// Phase 4: projects, given the app connections and gateways they use. The oldest keeps a
/// contested slug.
pub(super) fn check_projects<'a>(
    orgs: &Organizations<'a>,
    resources: &Resources<'a>,
    out: &mut Outcome,
) -> Projects<'a> {
    let set = orgs.set;
    let mut slugs: HashMap<(OrganizationKind, &str, &str), &Project> = HashMap::new();
    let mut projects = HashMap::with_capacity(set.projects.len());
    for i in by_precedence(&set.projects, &set.stored) {
        let p = &set.projects[i];
        let key = namespaced_key(p);
        let (ns, name) = ns_name(p);
        let owner = &p.spec.organization_ref;
        let placed = place(orgs, owner, &key, "projects", out);
        let mut ok = placed.is_ok();
        if ok {
            let slug = effective_slug(name, p.spec.slug.as_deref());
            match slugs.get(&(owner.kind, owner.name.as_str(), slug)) {
                Some(first) => {
                    out.problems.push(Problem::error(
                        Reason::SlugConflict,
                        &key,
                        slug_field(p.spec.slug.as_deref()),
                        format!(
                            "project slug {slug:?} is already taken in {} by Project {}/{}: project slugs are unique within an organization",
                            describe_org(owner),
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
        // A wrong reference is reported (an error), and left out of the project's rows, but it
        // does not take the project out of the store: deleting an app connection must not
        // delete every project that uses it, with their members.
        check_references(set, resources, p, &key, out);
        if ok {
            out.accepted.projects.push(i);
        }
        projects.insert((ns, name), (presence_of(&placed, ok), p));
    }
    out.accepted.projects.sort_unstable();
    projects
}

/// Reports what is wrong with the app connections and gateway project `p` uses (not its
/// organization's own, listed twice, missing), and names one that is not ready in a warning.
/// None of it rejects the project: the rows leave such a reference out.
fn check_references(
    set: &ObjectSet,
    resources: &Resources<'_>,
    p: &Project,
    key: &ObjectKey,
    out: &mut Outcome,
) {
    let (ns, _) = ns_name(p);
    let owner = &p.spec.organization_ref;
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (j, r) in p.spec.app_connections.iter().enumerate() {
        let field = format!("spec.appConnections[{j}]");
        if let Some(first) = seen.insert(r.qualified(ns), j) {
            out.problems.push(Problem::error(
                Reason::DuplicateReference,
                key,
                field,
                format!(
                    "AppConnection {:?} is already listed as spec.appConnections[{first}]: list each connection once",
                    r.qualified(ns)
                ),
            ));
            continue;
        }
        let connections = &resources.connections;
        let found = reference(set, connections, "AppConnection", r, ns, owner, key, &field);
        settle(
            not_ready_named(found, "AppConnection", r, ns, key, &field),
            out,
        );
    }
    if let Some(r) = &p.spec.gateway_ref {
        let gateways = &resources.gateways;
        let found = reference(
            set,
            gateways,
            "Gateway",
            r,
            ns,
            owner,
            key,
            "spec.gatewayRef",
        );
        settle(
            not_ready_named(found, "Gateway", r, ns, key, "spec.gatewayRef"),
            out,
        );
    }
}

/// A reference to an object refused on its own, as a warning on the project that uses it: the
/// project stays, without it, until it is ready.
fn not_ready_named(
    found: Found,
    kind: &str,
    r: &crate::api::LocalObjectRef,
    ns: &str,
    key: &ObjectKey,
    field: &str,
) -> Found {
    match found {
        Found::Quiet => Found::Problem(Problem::warning(
            Reason::ReferenceNotFound,
            key,
            field,
            format!(
                "{kind} {:?} is not ready (see its status), so the project does not use it until it is ready",
                r.qualified(ns)
            ),
        )),
        other => other,
    }
}

/// The first accepted membership of each subject in each project: by (project
/// `namespace/name`, subject kind, subject id).
type Holders = HashMap<(String, SubjectKind, String), ObjectKey>;

/// What phase 6 decided, for phase 10 to go on from.
#[derive(Default)]
pub(super) struct Invites<'a> {
    /// The project memberships already decided.
    done: HashSet<usize>,
    holders: Holders,
    /// Users a root project's invite provisions, by (root, email): root users from then on,
    /// who can be added to sub-organizations and groups like any other.
    invited: HashMap<(&'a str, String), Presence>,
}

impl<'a> Invites<'a> {
    /// Counts the invited users as members of their root: the seed's user provisioned through
    /// a project invite is a root user like any other.
    pub(super) fn provision(&self, root_members: &mut UserMembers<'a>) {
        for (user, presence) in &self.invited {
            root_members.entry(user.clone()).or_insert(*presence);
        }
    }
}

/// Phase 6: the project invites of users who have no root membership, given the roots'
/// members. They come before sub-organization memberships, since the user they provision is
/// a root user.
pub(super) fn check_invites<'a>(
    orgs: &Organizations<'a>,
    projects: &Projects<'a>,
    root_members: &UserMembers<'a>,
    now: Timestamp,
    out: &mut Outcome,
) -> Invites<'a> {
    let set = orgs.set;
    let mut invites = Invites::default();
    let mut first_role = HashMap::new();
    for i in by_precedence(&set.project_memberships, &set.stored) {
        let m = &set.project_memberships[i];
        let Some(user) = provisions_root_user(m, projects, root_members) else {
            continue;
        };
        invites.done.insert(i);
        let placed = place_membership(orgs, projects, m, out);
        // Refused for its namespace: it takes no part, not even as what others wait for.
        if matches!(placed, Place::Refused) {
            continue;
        }
        // Rejected until it passes every check, so what depends on it stays quiet.
        invites.invited.entry(user).or_insert(Presence::Rejected);
        let Place::Placed(mut placed) = placed else {
            continue;
        };
        let refused = refuses_email(
            &placed.target,
            &placed.subject,
            &placed.key,
            "cannot be invited: it ",
        );
        placed.errors.extend(refused);
        let key = placed.key.clone();
        if conclude(m, i, &mut placed, &mut invites.holders, now, out) {
            let user = (placed.target.root, placed.subject);
            // The first invite makes the root membership; another with another organization
            // role changes nothing, and says so.
            let role = m.spec.invite.as_ref().map(|v| v.organization_role.as_str());
            match first_role.get(&user) {
                Some((first, by)) if Some(*first) != role => {
                    out.problems.push(Problem::warning(
                        Reason::ConflictingRoles,
                        &key,
                        "spec.invite.organizationRole",
                        format!(
                            "{:?} is not used: ProjectMembership {by} invites this user first, with organization role {first:?}, and the first invite makes the root membership; give both the same role, or an OrgMembership at the root",
                            role.unwrap_or_default()
                        ),
                    ));
                }
                Some(_) => {}
                None => {
                    if let Some(role) = role {
                        first_role.insert(
                            user.clone(),
                            (
                                role,
                                format!(
                                    "{}/{}",
                                    key.namespace.as_deref().unwrap_or_default(),
                                    key.name
                                ),
                            ),
                        );
                    }
                }
            }
            invites.invited.insert(user, Presence::Accepted);
        }
    }
    invites
}

/// Phase 10: every project membership phase 6 left, given who and what each organization
/// holds.
pub(super) fn check_members<'a>(
    orgs: &Organizations<'a>,
    projects: &Projects<'a>,
    members: &Members<'a>,
    mut invites: Invites<'a>,
    now: Timestamp,
    out: &mut Outcome,
) {
    let set = orgs.set;
    for i in by_precedence(&set.project_memberships, &set.stored) {
        if invites.done.contains(&i) {
            continue;
        }
        let m = &set.project_memberships[i];
        let Place::Placed(mut placed) = place_membership(orgs, projects, m, out) else {
            continue;
        };
        let heard = match (placed.kind, placed.target.kind) {
            (SubjectKind::User, OrganizationKind::Organization) => placed.root_user(members),
            (SubjectKind::User, OrganizationKind::SubOrganization) => {
                placed.sub_user(members, m.spec.invite.is_some())
            }
            _ => placed.group_or_identity(set, members),
        };
        if heard {
            conclude(m, i, &mut placed, &mut invites.holders, now, out);
        }
    }
    out.accepted.project_memberships.sort_unstable();
}

/// A project membership whose project and organization stand, while its subject is checked.
struct Placed<'a> {
    key: ObjectKey,
    /// The project's organization.
    target: Target<'a>,
    /// The project's `namespace/name`.
    project: String,
    kind: SubjectKind,
    /// The subject's id (see [`subject_id_of`]).
    subject: String,
    /// What is wrong so far.
    errors: Vec<Problem>,
}

/// Where a project membership got to.
// Returned and matched at once, never stored: boxing would cost an allocation per membership.
#[allow(clippy::large_enum_variant)]
enum Place<'a> {
    /// Its project and organization stand, and its namespace may speak for them.
    Placed(Placed<'a>),
    /// Its namespace may not speak for the project's organization (reported): it takes no
    /// part in what that organization's own memberships decide (whose place a subject's
    /// oldest membership holds, whom an invite provisions).
    Refused,
    /// It goes no further (reported, or held back quietly).
    Stop,
}

/// Finds `m`'s project and its organization, and checks that `m`'s namespace may speak for
/// that organization.
fn place_membership<'a>(
    orgs: &Organizations<'a>,
    projects: &Projects<'a>,
    m: &'a ProjectMembership,
    out: &mut Outcome,
) -> Place<'a> {
    let key = namespaced_key(m);
    let (ns, _) = ns_name(m);
    let r = &m.spec.project_ref;
    let project_name = r.qualified(ns);
    let pns = r.namespace.as_deref().unwrap_or(ns);
    let found = projects.get(&(pns, r.name.as_str()));
    // Named in another namespace, a project whose organization does not admit this one (or
    // that does not exist, or is refused for its own namespace) gets one answer, which names
    // no organization; and the membership takes no part, as one refused for its namespace.
    if across(&key, pns) && !usable_across(orgs, found, &key) {
        out.problems.push(unusable_elsewhere(
            Reason::ReferenceNotFound,
            &key,
            "spec.projectRef",
            "Project",
            &project_name,
            &format!("a ProjectMembership in namespace {ns:?}"),
            "create the membership in a namespace the project's organization admits (its spec.memberNamespaces), or fix spec.projectRef",
        ));
        return Place::Refused;
    }
    let project = match found {
        Some((Presence::Accepted, p)) => *p,
        Some((_, p)) => {
            // The project is refused (it says why). A namespace its organization does not
            // admit is the membership's own fault whatever becomes of the project, so it is
            // told now rather than once the project is fixed.
            let target = match resolve(orgs, &p.spec.organization_ref, &key) {
                Resolved::Found(t) => Some(t),
                Resolved::Rejected(t) => t,
                Resolved::Missing(_) => None,
            };
            return if refused_anyway(orgs, target.as_ref(), &key, "project memberships", out) {
                Place::Refused
            } else {
                Place::Stop
            };
        }
        None if orgs
            .set
            .rejected
            .contains(&ObjectKey::namespaced("Project", pns, &r.name)) =>
        {
            return Place::Stop;
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
            return Place::Stop;
        }
    };
    // An accepted project's organization is accepted.
    let Resolved::Found(target) = resolve(orgs, &project.spec.organization_ref, &key) else {
        return Place::Stop;
    };
    match admission(orgs, &target, &key, "project memberships") {
        Admission::Admitted => {}
        Admission::Refused(p) => {
            out.problems.push(p);
            return Place::Refused;
        }
        Admission::Unknown(p) => out.problems.push(p),
        Admission::Quiet => return Place::Stop,
    }
    let (kind, subject) = subject_id_of(&m.spec.subject, ns);
    Place::Placed(Placed {
        key,
        target,
        project: project_name,
        kind,
        subject,
        errors: Vec::new(),
    })
}

/// Whether a project membership in the namespace of `key` may name `found`, a project in
/// another namespace: it exists, is not refused for its own namespace, and its organization
/// admits the membership's namespace.
fn usable_across(
    orgs: &Organizations<'_>,
    found: Option<&(Presence, &Project)>,
    key: &ObjectKey,
) -> bool {
    let Some((presence, project)) = found else {
        return false;
    };
    if *presence == Presence::Foreign {
        return false;
    }
    match resolve(orgs, &project.spec.organization_ref, key) {
        Resolved::Found(target) => matches!(
            admission(orgs, &target, key, "project memberships"),
            Admission::Admitted | Admission::Unknown(_)
        ),
        Resolved::Rejected(_) | Resolved::Missing(_) => false,
    }
}

/// The checks every project membership ends with: its roles, and one membership per subject.
/// Reports the errors, accepts the membership `i` when there are none, and says whether it did.
fn conclude(
    m: &ProjectMembership,
    i: usize,
    placed: &mut Placed<'_>,
    holders: &mut Holders,
    now: Timestamp,
    out: &mut Outcome,
) -> bool {
    let key = &placed.key;
    let mut errors = std::mem::take(&mut placed.errors);
    check_roles(
        &m.spec.roles,
        &m.metadata,
        key,
        now,
        &mut errors,
        &mut out.problems,
    );
    let (project_name, kind, subject) = (&placed.project, placed.kind, &placed.subject);
    let holder = (project_name.clone(), kind, subject.clone());
    if let Some(first) = holders.get(&holder) {
        errors.push(Problem::error(
            Reason::DuplicateMembership,
            key,
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
        holders.insert(holder, key.clone());
    }
    let ok = errors.is_empty();
    if ok {
        out.accepted.project_memberships.push(i);
    }
    out.problems.extend(errors);
    ok
}

impl Placed<'_> {
    /// How messages name the project: `Project "ns/name" of Organization "acme"`.
    fn in_project(&self) -> String {
        format!(
            "Project {:?} of {} {:?}",
            self.project, self.target.kind, self.target.name
        )
    }

    /// The error for a user whose membership the project's access builds on has no role in
    /// effect (`presence`, [`Presence::is_idle`]): it clears on its own when a role starts
    /// later.
    fn user_idle(&self, presence: Presence, message: String) -> Problem {
        Problem::error(
            Reason::SubjectNotInOrganization,
            &self.key,
            "spec.subject.email",
            message,
        )
        .clearing_on_its_own(presence == Presence::Pending)
    }

    /// A user in a root's project must be a root member. `false` when the membership is held
    /// back quietly (the root membership is rejected and says why).
    fn root_user(&mut self, members: &Members<'_>) -> bool {
        let (target, subject) = (&self.target, &self.subject);
        match members.root.get(&(target.name, subject.clone())) {
            Some(Presence::Accepted) => true,
            Some(p) if p.is_idle() => {
                let error = self.user_idle(
                    *p,
                    format!(
                        "user {subject:?}'s membership of root Organization {:?} has {}, so {} cannot give them access",
                        target.name,
                        super::memberships::IDLE,
                        self.in_project(),
                    ),
                );
                self.errors.push(error);
                true
            }
            Some(_) => false,
            None => {
                let error = Problem::error(
                    Reason::SubjectNotInOrganization,
                    &self.key,
                    "spec.subject.email",
                    format!(
                        "user {subject:?} is not a member of root Organization {:?}, so {} cannot add them: add an OrgMembership in {:?}, or set spec.invite to provision them through this project",
                        target.name,
                        self.in_project(),
                        target.name
                    ),
                );
                self.errors.push(error);
                true
            }
        }
    }

    /// A user in a sub-organization's project must have been added to it (or be named its
    /// admin), and cannot be invited. `false` when the membership is held back quietly.
    fn sub_user(&mut self, members: &Members<'_>, invite: bool) -> bool {
        let in_project = self.in_project();
        let (target, subject) = (&self.target, &self.subject);
        if invite {
            self.errors.push(Problem::error(
                Reason::InviteOutsideRoot,
                &self.key,
                "spec.invite",
                format!(
                    "{in_project} cannot invite: users are provisioned at the root; add {subject:?} to root Organization {:?} and then to SubOrganization {:?} with OrgMemberships, and drop spec.invite",
                    target.root, target.name
                ),
            ));
        }
        // Named its admin: one of its members once an accepted member of its root, as in
        // `organizations::check_admins_are_members`; until then, that says why.
        let admin = target.admins.iter().any(|a| normalize_email(a) == *subject);
        let in_root = members.root.get(&(target.root, subject.clone()));
        match members.sub.get(&(target.name, subject.clone())) {
            Some(Presence::Accepted) => true,
            _ if admin && in_root == Some(&Presence::Accepted) => true,
            _ if admin && in_root.is_some() => {
                if let Some(p) = in_root.filter(|p| p.is_idle()) {
                    let error = self.user_idle(
                        *p,
                        format!(
                            "user {subject:?} is named an admin of SubOrganization {:?}, but their membership of root Organization {:?} has {}, so {in_project} cannot give them access",
                            target.name,
                            target.root,
                            super::memberships::IDLE,
                        ),
                    );
                    self.errors.push(error);
                    return true;
                }
                // Their root membership is rejected and says why.
                false
            }
            Some(p) if p.is_idle() => {
                let error = self.user_idle(
                    *p,
                    format!(
                        "user {subject:?}'s membership of SubOrganization {:?} has {}, so {in_project} cannot give them access",
                        target.name,
                        super::memberships::IDLE,
                    ),
                );
                self.errors.push(error);
                true
            }
            Some(_) => false,
            // Named its admin, and so added to it, but not a member of its root (rule 9: they
            // left it): that root membership is what is missing, as the sub-organization's own
            // AdminNotInRoot says. An OrgMembership in the sub-organization would be refused too.
            None if admin => {
                self.errors.push(Problem::error(
                    Reason::SubjectNotInOrganization,
                    &self.key,
                    "spec.subject.email",
                    format!(
                        "user {subject:?} is named an admin of SubOrganization {:?} (its spec.admins) but is not a member of root Organization {:?}, so {in_project} cannot give them access: users exist at the root; add an OrgMembership for them in {:?}, and their place in {:?} follows",
                        target.name, target.root, target.root, target.name
                    ),
                ));
                true
            }
            None => {
                self.errors.push(Problem::error(
                    Reason::SubjectNotInOrganization,
                    &self.key,
                    "spec.subject.email",
                    format!(
                        "user {subject:?} has not been added to SubOrganization {:?}, so {in_project} cannot see them: users must be added to the sub-organization (an OrgMembership there, after one in root {:?}) before they can join its projects",
                        target.name, target.root
                    ),
                ));
                true
            }
        }
    }

    /// A group or identity in a project must be the project's organization's own, or a root's
    /// added to the sub-organization. `false` when the membership is held back quietly: the
    /// subject is refused on its own (by the rules, or before them: `set.rejected`), and says why.
    fn group_or_identity(&mut self, set: &ObjectSet, members: &Members<'_>) -> bool {
        let in_project = self.in_project();
        let (target, kind, subject) = (&self.target, self.kind, &self.subject);
        let error = |reason, field, message| Problem::error(reason, &self.key, field, message);
        // Named from another namespace, what the project cannot use gets one answer.
        let (subject_ns, subject_name) = subject.split_once('/').unwrap_or_default();
        let elsewhere = across(&self.key, subject_ns);
        let unusable = || {
            unusable_elsewhere(
                Reason::SubjectNotVisible,
                &self.key,
                "spec.subject",
                kind.as_str(),
                subject,
                &in_project,
                "use the organization's own, or for a sub-organization its root's once added to it",
            )
        };
        let found = members.owned.find(kind, subject);
        let problem = match found {
            _ if elsewhere && !target.may_use_across(found) => unusable(),
            None if set.rejected_on_its_own(kind.as_str(), subject_ns, subject_name) => {
                return false;
            }
            None => error(
                Reason::SubjectNotFound,
                "spec.subject.name",
                format!(
                    "{} {subject:?} does not exist: create it or fix spec.subject.name and spec.subject.namespace",
                    kind.as_str()
                ),
            ),
            Some((Presence::Accepted, o)) if o.kind == target.kind && o.name == target.name => {
                return true;
            }
            Some((Presence::Accepted, o))
                if target.kind == OrganizationKind::SubOrganization
                    && o.kind == OrganizationKind::Organization
                    && o.name == target.root =>
            {
                match members.added.get(&(target.name, kind, subject.clone())) {
                    Some(Presence::Accepted) => return true,
                    Some(p) if p.is_idle() => error(
                        Reason::SubjectNotInOrganization,
                        "spec.subject",
                        format!(
                            "{} {subject:?}'s membership of SubOrganization {:?} has {}, so {in_project} cannot give it access",
                            kind.as_str(),
                            target.name,
                            super::memberships::IDLE,
                        ),
                    )
                    .clearing_on_its_own(*p == Presence::Pending),
                    Some(_) => return false,
                    None => error(
                        Reason::SubjectNotInOrganization,
                        "spec.subject",
                        format!(
                            "{} {subject:?} belongs to root Organization {:?} and has not been added to SubOrganization {:?}, so {in_project} cannot see it: add it there with an OrgMembership first",
                            kind.as_str(),
                            target.root,
                            target.name
                        ),
                    ),
                }
            }
            Some((Presence::Accepted, o)) => error(
                Reason::SubjectNotVisible,
                "spec.subject",
                format!(
                    "{} {subject:?} belongs to {}, which {in_project} cannot see: what a sub-organization creates is visible there alone, and a sub-organization sees only its root's groups and identities once added",
                    kind.as_str(),
                    describe_org(o)
                ),
            ),
            Some(_) => return false,
        };
        self.errors.push(problem);
        true
    }
}

/// The root and user a project membership provisions by invite, when it is one that does: a
/// user without a root membership, invited to an accepted project of a root.
fn provisions_root_user<'a>(
    m: &'a ProjectMembership,
    projects: &Projects<'a>,
    root_members: &UserMembers<'a>,
) -> Option<(&'a str, String)> {
    let user = invited_to_root(m, |key| match projects.get(&key) {
        Some((Presence::Accepted, p)) => Some(&p.spec.organization_ref),
        _ => None,
    })?;
    (!root_members.contains_key(&user)).then_some(user)
}
