//! App connections, gateways and relays (DESIGN rule 5): each belongs to one organization and
//! is never inherited, not by a sub-organization, not by the root, not by a sibling. A gateway
//! uses its own organization's relay, a project (see [`super::projects`]) its own
//! organization's connections and gateway. Credentials stay in a Secret of the object's own
//! namespace, so RBAC in one namespace never reaches another's Secrets.
//!
//! Phase 3 of [`super::check`]: these need the organizations and nothing else.

use std::collections::HashMap;

use kube::ResourceExt;

use super::lookup::{Organizations, Presence};
use super::model::{ObjectSet, Outcome, describe_org, namespaced_key, ns_name};
use super::placement::{place, presence_of, unusable_elsewhere};
use super::problem::{ObjectKey, Problem, Reason};
use crate::api::{LocalObjectRef, OrgResource, OrganizationRef};

/// Checked objects of one kind by `(namespace, name)`: accepted or not, and their owner.
pub(super) type Checked<'a> = HashMap<(&'a str, &'a str), (Presence, &'a OrganizationRef)>;

/// What phase 3 hands on to the projects that use these.
pub(super) struct Resources<'a> {
    pub(super) connections: Checked<'a>,
    pub(super) gateways: Checked<'a>,
}

/// Phase 3: relays, then the gateways that use them, then app connections.
pub(super) fn check<'a>(orgs: &Organizations<'a>, out: &mut Outcome) -> Resources<'a> {
    let set = orgs.set;
    let (relays, accepted) = check_kind(orgs, &set.relays, None, "relays", out);
    out.accepted.relays = accepted;
    let (gateways, accepted) = check_kind(orgs, &set.gateways, Some(&relays), "gateways", out);
    out.accepted.gateways = accepted;
    let (connections, accepted) = check_kind(orgs, &set.connections, None, "app connections", out);
    out.accepted.connections = accepted;
    Resources {
        connections,
        gateways,
    }
}

/// Checks one per-organization kind: its owner, delegation, and that its credentials stay in
/// its own namespace. `relays` is given for gateways.
fn check_kind<'a, K: OrgResource>(
    orgs: &Organizations<'a>,
    list: &'a [K],
    relays: Option<&Checked<'a>>,
    what: &str,
    out: &mut Outcome,
) -> (Checked<'a>, Vec<usize>) {
    let mut checked = HashMap::with_capacity(list.len());
    let mut accepted = Vec::new();
    for (i, o) in list.iter().enumerate() {
        let key = namespaced_key(o);
        let (ns, _) = ns_name(o);
        let placed = place(orgs, o.organization_ref(), &key, what, out);
        let mut ok = placed.is_ok();
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
                orgs.set,
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
        checked.insert(ns_name(o), (presence_of(&placed, ok), o.organization_ref()));
    }
    (checked, accepted)
}

/// What a reference from `key` to a `kind` object resolved to.
pub(super) enum Found {
    /// Accepted, and owned by the same organization.
    Same,
    /// Rejected on its own: hold the referrer back quietly.
    Quiet,
    Problem(Problem),
}

/// Whether a reference is fine; its problem, if any, is reported.
pub(super) fn settle(found: Found, out: &mut Outcome) -> bool {
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
pub(super) fn reference(
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
    // Named in another namespace: one answer for all that the object cannot use.
    if ns != own_namespace
        && !matches!(
            checked.get(&(ns, r.name.as_str())),
            Some((p, o)) if *o == owner && *p != Presence::Foreign
        )
    {
        return Found::Problem(unusable_elsewhere(
            Reason::ResourceNotInOrganization,
            key,
            field,
            kind,
            &qualified,
            &format!("{} {:?} of {}", key.kind, key.name, describe_org(owner)),
            "app connections, gateways and relays are never shared between organizations: use one of its own",
        ));
    }
    match checked.get(&(ns, r.name.as_str())) {
        Some((Presence::Accepted, o)) if *o == owner => Found::Same,
        Some((Presence::Accepted, o)) => Found::Problem(Problem::error(
            Reason::ResourceNotInOrganization,
            key,
            field,
            format!(
                "{kind} {qualified:?} belongs to {}, but {} {:?} belongs to {}: app connections, gateways and relays belong to one organization and are never shared (not with sub-organizations, not with the root, not with siblings); use one of {}'s own",
                describe_org(o),
                key.kind,
                key.name,
                describe_org(owner),
                describe_org(owner)
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
                describe_org(owner)
            ),
        )),
    }
}
