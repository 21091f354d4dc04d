//! The organization tree (DESIGN rules 1, 6 and 8): a sub-organization's parent is an accepted
//! root; slugs are unique among roots and among the children of one root; a sub-organization's
//! admins are members of its root; a `memberNamespaces` selector can be evaluated.
//!
//! These are phases 1 and 2 of [`super::check`]: everything else hangs off an organization, so
//! the tree is decided first and handed on as `Roots` and `Subs`.

use std::collections::{HashMap, HashSet};

use kube::ResourceExt;

use super::delegation;
use super::lookup::{Presence, Roots, Subs, invited_to_root};
use super::model::{
    ObjectSet, Outcome, by_precedence, ns_name, organization_key, sub_organization_key, subject_id,
};
use super::problem::{ObjectKey, Problem, Reason};
use super::slug::{effective_slug, normalize_email, slug_field};
use crate::api::{
    MemberNamespaces, Organization, OrganizationKind, OrganizationRef, SubOrganization, SubjectKind,
};

/// Phase 1: root organizations. The oldest keeps a contested slug.
pub(super) fn check_roots<'a>(set: &'a ObjectSet, out: &mut Outcome) -> Roots<'a> {
    let mut by_name = HashMap::with_capacity(set.organizations.len());
    let mut slugs: HashMap<&str, &Organization> = HashMap::new();
    for i in by_precedence(&set.organizations) {
        let o = &set.organizations[i];
        let key = organization_key(o);
        let name = o.metadata.name.as_deref().unwrap_or_default();
        let slug = effective_slug(name, o.spec.slug.as_deref());
        let mut errors: Vec<Problem> = selector_problem(o.spec.member_namespaces.as_ref(), &key)
            .into_iter()
            .collect();
        if let Some(first) = slugs.get(slug) {
            errors.push(Problem::error(
                Reason::SlugConflict,
                &key,
                slug_field(o.spec.slug.as_deref()),
                format!(
                    "slug {slug:?} is already taken by Organization {:?}: root organization slugs must be unique",
                    first.name_any()
                ),
            ));
        } else {
            slugs.insert(slug, o);
        }
        let ok = errors.is_empty();
        out.problems.extend(errors);
        if ok {
            out.accepted.organizations.push(i);
        }
        by_name.insert(name, (Presence::of(ok), o));
    }
    out.accepted.organizations.sort_unstable();
    Roots { by_name }
}

/// Phase 2: sub-organizations, given the roots. The oldest keeps a contested slug.
pub(super) fn check_sub_organizations<'a>(
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
    let mut slugs: HashMap<(&str, &str), &SubOrganization> = HashMap::new();
    for i in by_precedence(&set.sub_organizations) {
        let s = &set.sub_organizations[i];
        let key = sub_organization_key(s);
        let name = s.metadata.name.as_deref().unwrap_or_default();
        let parent = s.spec.organization_ref.name.as_str();
        let mut errors = Vec::new();
        let parent_presence = roots.presence(set, parent);
        if parent_presence == Presence::Absent {
            errors.push(missing_parent(
                name,
                parent,
                sub_names.contains(parent),
                &key,
            ));
        }
        errors.extend(selector_problem(s.spec.member_namespaces.as_ref(), &key));
        let slug = effective_slug(name, s.spec.slug.as_deref());
        if let Some(first) = slugs.get(&(parent, slug)) {
            errors.push(Problem::error(
                Reason::SlugConflict,
                &key,
                slug_field(s.spec.slug.as_deref()),
                format!(
                    "slug {slug:?} is already taken under Organization {parent:?} by SubOrganization {:?}: slugs must be unique among the children of a root",
                    first.name_any()
                ),
            ));
        } else {
            slugs.insert((parent, slug), s);
        }
        // An admin is checked against the root's members only once the root stands: when it
        // is rejected, its own problem says what to fix first.
        let root_members = (parent_presence == Presence::Accepted).then_some(&members);
        check_admins(s, parent, root_members, &key, &mut errors);
        // A rejected parent rejects its children quietly.
        let ok = parent_presence == Presence::Accepted && errors.is_empty();
        out.problems.extend(errors);
        if ok {
            out.accepted.sub_organizations.push(i);
        }
        by_name.insert(name, (Presence::of(ok), s));
    }
    out.accepted.sub_organizations.sort_unstable();
    Subs { by_name }
}

/// The problem with a sub-organization whose parent is no root: another sub-organization
/// (nesting) or nothing at all.
fn missing_parent(name: &str, parent: &str, is_sub: bool, key: &ObjectKey) -> Problem {
    let (reason, message) = if is_sub {
        (
            Reason::NestingViolation,
            format!(
                "SubOrganization {name:?} names parent {parent:?}, which is a SubOrganization: sub-organizations cannot have children (one level of nesting)"
            ),
        )
    } else {
        (
            Reason::ParentNotFound,
            format!(
                "SubOrganization {name:?} names parent Organization {parent:?}, which does not exist: create it or fix spec.organizationRef.name"
            ),
        )
    };
    Problem::error(reason, key, "spec.organizationRef.name", message)
}

/// The problem with an organization's `memberNamespaces` selector, if it cannot be evaluated.
fn selector_problem(policy: Option<&MemberNamespaces>, key: &ObjectKey) -> Option<Problem> {
    let selector = policy.and_then(|m| m.selector.as_ref())?;
    let e = delegation::check_selector(selector).err()?;
    Some(Problem::error(
        Reason::InvalidSelector,
        key,
        format!("spec.memberNamespaces.selector.{}", e.field),
        e.message,
    ))
}

/// A sub-organization's admins: each listed once, and each a member of the root `parent`
/// (checked when `root_members` is given).
fn check_admins(
    s: &SubOrganization,
    parent: &str,
    root_members: Option<&HashSet<(&str, String)>>,
    key: &ObjectKey,
    errors: &mut Vec<Problem>,
) {
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (j, admin) in s.spec.admins.iter().enumerate() {
        let email = normalize_email(admin);
        if let Some(prev) = seen.insert(email.clone(), j) {
            errors.push(Problem::error(
                Reason::DuplicateAdmin,
                key,
                format!("spec.admins[{j}]"),
                format!(
                    "{admin:?} is already listed as spec.admins[{prev}] (emails are compared case-insensitively)"
                ),
            ));
            continue;
        }
        if root_members.is_some_and(|members| !members.contains(&(parent, email))) {
            errors.push(Problem::error(
                Reason::AdminNotInRoot,
                key,
                format!("spec.admins[{j}]"),
                format!(
                    "admin {admin:?} is not a member of root Organization {parent:?}: users exist at the root, so add an OrgMembership for them in {parent:?} first"
                ),
            ));
        }
    }
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
    members.extend(
        set.project_memberships
            .iter()
            .filter_map(|m| invited_to_root(m, |key| organizations.get(&key).copied())),
    );
    members
}
