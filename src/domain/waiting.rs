//! What an object held back by another object's problem waits for (rule 9: the objects that
//! depended on a revoked access say why).
//!
//! The rules report a problem on the object that breaks a rule, never again on the objects that
//! depend on it: a sub-organization membership whose root membership is refused is held back
//! quietly. This names, for each such object, the first object it depends on that is not
//! accepted, so its status can point there instead of saying "something". It runs after
//! [`super::check`], over the objects that are neither accepted nor in error, which are few; the
//! decision stays with the rules, and this only explains it.

use std::collections::{HashMap, HashSet};

use super::model::{self, ObjectSet, Outcome, ns_name, subject_id, subject_id_of};
use super::problem::ObjectKey;
use crate::api::{LocalObjectRef, OrganizationKind, OrganizationRef, SubjectKind};

/// For each object held back by another's problem: what it waits for, as a sentence.
pub fn waiting(set: &ObjectSet, outcome: &Outcome) -> HashMap<ObjectKey, String> {
    let a = Accepted::new(outcome);
    let in_error: HashSet<&ObjectKey> = outcome
        .problems
        .iter()
        .filter(|p| p.is_error())
        .filter_map(|p| p.object.as_ref())
        .collect();
    // Built on the first object held back: most syncs have none.
    let index = std::cell::OnceCell::new();
    let accepted = || index.get_or_init(|| Index::new(set, &a));
    let mut out = HashMap::new();
    let mut hold = |key: ObjectKey, why: &dyn Fn() -> Option<String>| {
        if !in_error.contains(&key)
            && !set.rejected.contains(&key)
            && let Some(why) = why()
        {
            out.insert(key, why);
        }
    };
    for (i, s) in set.sub_organizations.iter().enumerate() {
        if !a.sub_organizations.contains(&i) {
            hold(model::sub_organization_key(s), &|| {
                accepted().organization(&s.spec.organization_ref)
            });
        }
    }
    for (i, m) in set.memberships.iter().enumerate() {
        if !a.memberships.contains(&i) {
            hold(model::membership_key(m), &|| {
                let r = &m.spec.organization_ref;
                let index = accepted();
                index.organization(r).or_else(|| match subject_id(m) {
                    // In a sub-organization, a user's root membership.
                    (SubjectKind::User, email) => index.membership(index.root_of(r)?, &email),
                    // The group or identity itself, refused on its own.
                    (kind, id) => index.owned(kind, &id),
                })
            });
        }
    }
    for (i, g) in set.groups.iter().enumerate() {
        if !a.groups.contains(&i) {
            hold(model::group_key(g), &|| {
                accepted().organization(&g.spec.organization_ref)
            });
        }
    }
    for (i, m) in set.identities.iter().enumerate() {
        if !a.identities.contains(&i) {
            hold(model::identity_key(m), &|| {
                accepted().organization(&m.spec.organization_ref)
            });
        }
    }
    // App connections, gateways and relays wait for their organization; a gateway for its
    // relay too.
    for (i, c) in set.connections.iter().enumerate() {
        if !a.connections.contains(&i) {
            hold(model::namespaced_key(c), &|| {
                accepted().organization(&c.spec.organization_ref)
            });
        }
    }
    for (i, g) in set.gateways.iter().enumerate() {
        if !a.gateways.contains(&i) {
            hold(model::namespaced_key(g), &|| {
                let index = accepted();
                let (ns, _) = ns_name(g);
                index
                    .organization(&g.spec.organization_ref)
                    .or_else(|| index.resource("Relay", ns, g.spec.relay_ref.as_ref()?))
            });
        }
    }
    for (i, r) in set.relays.iter().enumerate() {
        if !a.relays.contains(&i) {
            hold(model::namespaced_key(r), &|| {
                accepted().organization(&r.spec.organization_ref)
            });
        }
    }
    for (i, p) in set.projects.iter().enumerate() {
        if !a.projects.contains(&i) {
            hold(model::project_key(p), &|| {
                let index = accepted();
                let (ns, _) = ns_name(p);
                index.organization(&p.spec.organization_ref).or_else(|| {
                    p.spec
                        .app_connections
                        .iter()
                        .find_map(|c| index.resource("AppConnection", ns, c))
                        .or_else(|| index.resource("Gateway", ns, p.spec.gateway_ref.as_ref()?))
                })
            });
        }
    }
    for (i, m) in set.project_memberships.iter().enumerate() {
        if !a.project_memberships.contains(&i) {
            hold(model::project_membership_key(m), &|| {
                let index = accepted();
                let (ns, _) = ns_name(m);
                let pns = m.spec.project_ref.namespace.as_deref().unwrap_or(ns);
                let pname = m.spec.project_ref.name.as_str();
                let waits = || {
                    format!("waits for Project {pns}/{pname}, which is not ready: see its status")
                };
                let Some(found) = index.projects.get(&(pns, pname)) else {
                    let key = ObjectKey::namespaced("Project", pns, pname);
                    return index.rejected.contains(&key).then(waits);
                };
                match found {
                    (false, _) => Some(waits()),
                    (true, r) => match subject_id_of(&m.spec.subject, ns) {
                        // An invite waits for the user's root membership too, when there is
                        // one (and it is refused): the invite provisions no one then.
                        (SubjectKind::User, email) => index.membership(r.name.as_str(), &email),
                        (kind, id) => index.owned(kind, &id),
                    },
                }
            });
        }
    }
    out
}

/// The accepted objects of each kind, by index into the set.
struct Accepted {
    sub_organizations: Mask,
    memberships: Mask,
    groups: Mask,
    identities: Mask,
    organizations: Mask,
    connections: Mask,
    gateways: Mask,
    relays: Mask,
    projects: Mask,
    project_memberships: Mask,
}

impl Accepted {
    fn new(outcome: &Outcome) -> Self {
        let a = &outcome.accepted;
        Accepted {
            sub_organizations: Mask::of(&a.sub_organizations),
            memberships: Mask::of(&a.memberships),
            groups: Mask::of(&a.groups),
            identities: Mask::of(&a.identities),
            organizations: Mask::of(&a.organizations),
            connections: Mask::of(&a.connections),
            gateways: Mask::of(&a.gateways),
            relays: Mask::of(&a.relays),
            projects: Mask::of(&a.projects),
            project_memberships: Mask::of(&a.project_memberships),
        }
    }
}

/// Which indexes of one kind's list are accepted: a flag each, as cheap to build each sync as
/// the list it comes from (no hashing).
struct Mask(Vec<bool>);

impl Mask {
    fn of(accepted: &[usize]) -> Self {
        let mut flags = vec![false; accepted.iter().max().map_or(0, |m| m + 1)];
        for &i in accepted {
            flags[i] = true;
        }
        Mask(flags)
    }

    fn contains(&self, i: &usize) -> bool {
        self.0.get(*i).copied().unwrap_or(false)
    }
}

/// Which objects the rules accepted, by what other objects name them by.
struct Index<'a> {
    roots: HashMap<&'a str, bool>,
    /// Sub-organizations: accepted, and the name of their root.
    subs: HashMap<&'a str, (bool, &'a str)>,
    /// Memberships of users by (organization name, email): accepted, and `namespace/name`.
    memberships: HashMap<(&'a str, String), (bool, String)>,
    /// Groups and identities by kind and `namespace/name`: accepted.
    owned: HashMap<(SubjectKind, String), bool>,
    /// App connections, gateways and relays by kind, namespace and name: accepted.
    resources: HashMap<(&'static str, &'a str, &'a str), bool>,
    /// Projects by namespace and name: accepted, and their organization.
    projects: HashMap<(&'a str, &'a str), (bool, &'a OrganizationRef)>,
    /// Objects refused before the rules ran (by the schema, or left out for their rows): not
    /// in the lists above, and not ready either.
    rejected: &'a HashSet<ObjectKey>,
}

impl<'a> Index<'a> {
    fn new(set: &'a ObjectSet, a: &Accepted) -> Self {
        let name = |m: &'a kube::api::ObjectMeta| m.name.as_deref().unwrap_or_default();
        let roots = set
            .organizations
            .iter()
            .enumerate()
            .map(|(i, o)| (name(&o.metadata), a.organizations.contains(&i)))
            .collect();
        let subs = set
            .sub_organizations
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let ok = a.sub_organizations.contains(&i);
                (
                    name(&s.metadata),
                    (ok, s.spec.organization_ref.name.as_str()),
                )
            })
            .collect();
        let mut memberships = HashMap::new();
        for (i, m) in set.memberships.iter().enumerate() {
            if let (SubjectKind::User, email) = subject_id(m) {
                let (ns, n) = ns_name(m);
                let ok = a.memberships.contains(&i);
                let entry = memberships
                    .entry((m.spec.organization_ref.name.as_str(), email))
                    .or_insert((ok, format!("{ns}/{n}")));
                entry.0 |= ok;
            }
        }
        let mut owned = HashMap::new();
        for (i, g) in set.groups.iter().enumerate() {
            let (ns, n) = ns_name(g);
            owned.insert(
                (SubjectKind::Group, format!("{ns}/{n}")),
                a.groups.contains(&i),
            );
        }
        for (i, m) in set.identities.iter().enumerate() {
            let (ns, n) = ns_name(m);
            let ok = a.identities.contains(&i);
            owned.insert((SubjectKind::MachineIdentity, format!("{ns}/{n}")), ok);
        }
        let mut resources = HashMap::new();
        for (i, c) in set.connections.iter().enumerate() {
            let (ns, n) = ns_name(c);
            resources.insert(("AppConnection", ns, n), a.connections.contains(&i));
        }
        for (i, g) in set.gateways.iter().enumerate() {
            let (ns, n) = ns_name(g);
            resources.insert(("Gateway", ns, n), a.gateways.contains(&i));
        }
        for (i, r) in set.relays.iter().enumerate() {
            let (ns, n) = ns_name(r);
            resources.insert(("Relay", ns, n), a.relays.contains(&i));
        }
        let projects = set
            .projects
            .iter()
            .enumerate()
            .map(|(i, p)| {
                (
                    ns_name(p),
                    (a.projects.contains(&i), &p.spec.organization_ref),
                )
            })
            .collect();
        Index {
            roots,
            subs,
            memberships,
            owned,
            resources,
            projects,
            rejected: &set.rejected,
        }
    }

    /// Why an object in the organization `r` waits for it, if it is declared and not accepted.
    fn organization(&self, r: &OrganizationRef) -> Option<String> {
        let declared = match r.kind {
            OrganizationKind::Organization => self.roots.get(r.name.as_str()).copied(),
            OrganizationKind::SubOrganization => self.subs.get(r.name.as_str()).map(|s| s.0),
        };
        let ok = match declared {
            Some(ok) => ok,
            None if self
                .rejected
                .contains(&ObjectKey::cluster(&r.kind.to_string(), &r.name)) =>
            {
                false
            }
            None => return None,
        };
        (!ok).then(|| {
            format!(
                "waits for its organization, {} {:?}, which is not ready: see its status",
                r.kind, r.name
            )
        })
    }

    /// The root of the sub-organization `r`; `None` for a root.
    fn root_of(&self, r: &OrganizationRef) -> Option<&'a str> {
        match r.kind {
            OrganizationKind::Organization => None,
            OrganizationKind::SubOrganization => {
                self.subs.get(r.name.as_str()).map(|(_, root)| *root)
            }
        }
    }

    /// Why something of `email` in `organization` waits for their membership there.
    fn membership(&self, organization: &str, email: &str) -> Option<String> {
        let (ok, object) = self.memberships.get(&(organization, email.to_owned()))?;
        (!ok).then(|| {
            format!(
                "waits for the membership of {email:?} in {organization:?} (OrgMembership {object}), which is not ready: see its status; access follows it"
            )
        })
    }

    /// Why something waits for the group or identity `id`.
    fn owned(&self, kind: SubjectKind, id: &str) -> Option<String> {
        let ok = match self.owned.get(&(kind, id.to_owned())) {
            Some(ok) => *ok,
            None => {
                let (ns, name) = id.split_once('/').unwrap_or_default();
                let key = ObjectKey::namespaced(&format!("{kind:?}"), ns, name);
                if !self.rejected.contains(&key) {
                    return None;
                }
                false
            }
        };
        (!ok).then(|| format!("waits for {kind:?} {id}, which is not ready: see its status"))
    }

    /// Why a project waits for the app connection or gateway `r` (a gateway for the relay
    /// `r`), named from `ns`.
    fn resource(&self, kind: &'static str, ns: &str, r: &LocalObjectRef) -> Option<String> {
        let rns = r.namespace.as_deref().unwrap_or(ns);
        let ok = match self.resources.get(&(kind, rns, r.name.as_str())) {
            Some(ok) => *ok,
            None if self
                .rejected
                .contains(&ObjectKey::namespaced(kind, rns, &r.name)) =>
            {
                false
            }
            None => return None,
        };
        (!ok).then(|| {
            format!(
                "waits for {kind} {rns}/{}, which is not ready: see its status",
                r.name
            )
        })
    }
}
