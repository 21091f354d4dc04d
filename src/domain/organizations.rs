//! The organization tree (DESIGN rules 1, 6 and 8): a sub-organization's parent is an accepted
//! root; slugs are unique among roots and among the children of one root; a sub-organization's
//! admins are members of its root; a `memberNamespaces` selector can be evaluated.
//!
//! Roots and sub-organizations are phases 1 and 2 of [`super::check`]: everything else hangs
//! off an organization, so the tree is decided first and handed on as `Roots` and `Subs`. The
//! admins are checked once the roots' members are known ([`check_admins_are_members`]), and an
//! admin who is not one does not reject the sub-organization: rule 9 revokes a user's access
//! when they leave the root, and a sub-organization is more than its admin's access.

use std::collections::{HashMap, HashSet};

use kube::ResourceExt;
use kube::api::ObjectMeta;

use super::delegation;
use super::lookup::{Presence, Roots, Subs, UserMembers};
use super::model::{
    ObjectSet, Outcome, born, by_precedence, organization_key, sub_organization_key,
};
use super::problem::{ObjectKey, Problem, Reason};
use super::slug::{effective_slug, normalize_email, slug_field};
use crate::api::{MemberNamespaces, NamespacesFrom, Organization, SubOrganization};

/// Phase 1: root organizations. The oldest keeps a contested slug.
pub(super) fn check_roots<'a>(set: &'a ObjectSet, out: &mut Outcome) -> Roots<'a> {
    let mut by_name = HashMap::with_capacity(set.organizations.len());
    let mut slugs: HashMap<&str, &Organization> = HashMap::new();
    let subs: HashMap<&str, &SubOrganization> = set
        .sub_organizations
        .iter()
        .filter_map(|s| Some((s.metadata.name.as_deref()?, s)))
        .collect();
    for i in by_precedence(&set.organizations, &set.stored) {
        let o = &set.organizations[i];
        let key = organization_key(o);
        let name = o.metadata.name.as_deref().unwrap_or_default();
        let slug = effective_slug(name, o.spec.slug.as_deref());
        let mut errors: Vec<Problem> = selector_problem(o.spec.member_namespaces.as_ref(), &key)
            .into_iter()
            .collect();
        out.problems
            .extend(selector_warning(o.spec.member_namespaces.as_ref(), &key));
        if let Some(sub) = subs.get(name).copied().filter(|s| born(*s) < born(o)) {
            errors.push(name_conflict(&key, "Organization", "SubOrganization", sub));
        }
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
    let sub_names: HashSet<&str> = set
        .sub_organizations
        .iter()
        .filter_map(|o| o.metadata.name.as_deref())
        .collect();
    let mut by_name = HashMap::with_capacity(set.sub_organizations.len());
    let mut slugs: HashMap<(&str, &str), &SubOrganization> = HashMap::new();
    for i in by_precedence(&set.sub_organizations, &set.stored) {
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
        if let Some(root) = roots.by_name.get(parent).map(|(_, o)| *o)
            && joins_late(s, root, &set.stored)
        {
            // Created before the deletion began: it is late for want of rows.
            let new = if born(s) < root.metadata.deletion_timestamp.as_ref().map(|t| t.0) {
                "has no rows in the store, so it would be a new one"
            } else {
                "was created after its deletion began"
            };
            errors.push(Problem::error(
                Reason::ParentNotFound,
                &key,
                "spec.organizationRef.name",
                format!(
                    "Organization {parent:?} is being deleted (it stays only until its sub-organizations in the store are gone) and takes no new sub-organizations: {name:?} {new}; create it under another root"
                ),
            ));
        }
        if let Some((_, root)) = roots.by_name.get(name).filter(|(_, r)| born(*r) <= born(s)) {
            errors.push(name_conflict(
                &key,
                "SubOrganization",
                "Organization",
                *root,
            ));
        }
        errors.extend(selector_problem(s.spec.member_namespaces.as_ref(), &key));
        out.problems
            .extend(selector_warning(s.spec.member_namespaces.as_ref(), &key));
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
        // Reported, but it does not reject the sub-organization (the admin is one admin): an
        // edit to the list must not take the sub-organization and everything in it out of the
        // store.
        check_admins(s, &key, &mut out.problems);
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

/// Whether `s` joins its root `root` after the root began to be deleted, and so neither keeps
/// it in the store nor is accepted under it. A root being deleted is kept while its
/// sub-organizations in the store remain; one that joins since would keep it for good. That is
/// one created after the deletion began (timestamps have whole seconds: one created in that very
/// second came after it unless the store already holds it, as when a GitOps tool deletes a root
/// and creates a new child under it at once, against a script that creates then deletes), and
/// one whose rows the store does not hold while it holds the root's: refused before (for its
/// name, its slug, a store conflict), it was never a sub-organization in the store, and would be
/// a new one there. `stored` holds uids ([`ObjectSet::stored`]); it is empty before a sync has
/// read the store, and then only the creation time counts.
pub fn joins_late(s: &SubOrganization, root: &Organization, stored: &HashSet<String>) -> bool {
    let in_store = |meta: &ObjectMeta| meta.uid.as_ref().is_some_and(|u| stored.contains(u));
    match (
        &root.metadata.deletion_timestamp,
        &s.metadata.creation_timestamp,
    ) {
        (Some(deleted), Some(created)) => {
            created.0 > deleted.0
                || (!in_store(&s.metadata) && (created.0 == deleted.0 || in_store(&root.metadata)))
        }
        _ => false,
    }
}

/// An Organization and a SubOrganization of one name: the younger is refused (the root, when
/// neither is older). The label that delegates a namespace, `suborg.io/organization=<name>`,
/// names an organization by name alone: a namespace delegated to one would be delegated to the
/// other, so a team lead of a sub-organization could grant roles in a root of its name.
fn name_conflict<K: kube::Resource>(
    key: &ObjectKey,
    kind: &str,
    other_kind: &str,
    other: &K,
) -> Problem {
    let name = other.meta().name.as_deref().unwrap_or_default();
    Problem::error(
        Reason::NameConflict,
        key,
        "metadata.name",
        format!(
            "{kind} {name:?} has the name of {other_kind} {name:?}, which keeps it (the older of the two, or the root when neither is): organizations of both kinds need names of their own, because a namespace is delegated to an organization by its name alone (the label suborg.io/organization={name}); choose another name"
        ),
    )
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

/// The warning about an organization's `memberNamespaces` selector when it names a key or
/// value no label can have. Not an error: an edit to a selector must never take an
/// organization, and everything in it, out of the store.
fn selector_warning(policy: Option<&MemberNamespaces>, key: &ObjectKey) -> Option<Problem> {
    let from = policy.map(|p| p.from).unwrap_or_default();
    let Some(selector) = policy.and_then(|m| m.selector.as_ref()) else {
        // The default selector, by name: a label value has at most 63 characters, an object
        // name up to 253.
        return (from == NamespacesFrom::Selector && !delegation::label_name(&key.name)).then(|| {
            Problem::warning(
                Reason::InvalidSelector,
                key,
                "spec.memberNamespaces",
                format!(
                    "the default selector admits namespaces labelled {}=<this name>, but a label value has at most 63 characters and this name has {}, so no namespace can hold objects for it: set spec.memberNamespaces.selector to a label of your own (or use a shorter name)",
                    delegation::ORGANIZATION_LABEL,
                    key.name.len()
                ),
            )
        });
    };
    let e = delegation::unmatchable(selector)?;
    Some(Problem::warning(
        Reason::InvalidSelector,
        key,
        format!("spec.memberNamespaces.selector.{}", e.field),
        format!(
            "{}: no namespace has such a label, so this term admits none",
            e.message
        ),
    ))
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

/// A sub-organization's admins are each listed once (an error that keeps the sub-organization).
fn check_admins(s: &SubOrganization, key: &ObjectKey, errors: &mut Vec<Problem>) {
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (j, admin) in s.spec.admins.iter().enumerate() {
        if let Some(prev) = seen.insert(normalize_email(admin), j) {
            errors.push(Problem::error(
                Reason::DuplicateAdmin,
                key,
                format!("spec.admins[{j}]"),
                format!(
                    "{admin:?} is already listed as spec.admins[{prev}] (emails are compared case-insensitively)"
                ),
            ));
        }
    }
}

/// Phase 6b: each admin of an accepted sub-organization is an accepted member of its root
/// (users exist at the root, rule 3), and only then its admin. One who is not is an error on the
/// sub-organization, which stays in the store all the same, with its other admins and
/// everything in it: losing an admin's root membership revokes that admin's access (rule 9),
/// not the sub-organization.
pub(super) fn check_admins_are_members(
    set: &ObjectSet,
    root_members: &UserMembers<'_>,
    out: &mut Outcome,
) {
    for &i in &out.accepted.sub_organizations {
        let s = &set.sub_organizations[i];
        let key = sub_organization_key(s);
        let root = s.spec.organization_ref.name.as_str();
        let sub = s.name_any();
        let mut seen = HashSet::new();
        for (j, admin) in s.spec.admins.iter().enumerate() {
            if !seen.insert(normalize_email(admin)) {
                continue; // listed twice: reported as DuplicateAdmin, an admin once
            }
            let kept =
                format!("the sub-organization stays in the store, without {admin:?} as its admin");
            let standing = root_members.get(&(root, normalize_email(admin)));
            let message = match standing {
                Some(Presence::Accepted) => {
                    out.accepted.admins.push((i, j));
                    continue;
                }
                Some(p) if p.is_idle() => format!(
                    "admin {admin:?}'s membership of root Organization {root:?} has {}; {kept} until one of its roles is in effect",
                    super::memberships::IDLE
                ),
                Some(_) => format!(
                    "admin {admin:?}'s membership of root Organization {root:?} is not accepted (see that OrgMembership's status); {kept} until it is accepted"
                ),
                None => format!(
                    "admin {admin:?} is not a member of root Organization {root:?}: users exist at the root, so add an OrgMembership for them in {root:?} (or remove them from the admins of {sub:?}); {kept}"
                ),
            };
            out.problems.push(
                Problem::error(
                    Reason::AdminNotInRoot,
                    &key,
                    format!("spec.admins[{j}]"),
                    message,
                )
                .clearing_on_its_own(standing == Some(&Presence::Pending)),
            );
        }
    }
}
