//! Rows: the objects the rules accepted, turned into the rows the store should hold
//! ([`crate::store::Desired`]). This is where Kubernetes objects end and the store begins: a
//! slug is the effective one, an email is lowercased, roles are JSON with expired temporary
//! roles dropped, and every reference is the source key of the row it points at. The
//! dependency points one way: this module uses the store's row types, and the store knows
//! nothing of API objects or of the rules.
//!
//! - `orgs`: organizations, sub-organizations, memberships of users and the admins a
//!   sub-organization names;
//! - `owned`: groups, machine identities and the root's ones added to sub-organizations;
//! - `projects`: app connections, gateways, relays, projects, project memberships and the root
//!   memberships a project invite provisions;
//! - `values`: what every kind shares (source keys, names, deletion policies, roles).

mod orgs;
mod owned;
mod projects;
mod values;

pub use values::{policy, source_key};

use std::collections::{BTreeMap, HashSet};

use k8s_openapi::jiff::Timestamp;

use crate::api::{
    AppConnection, DeletionPolicy, Gateway, Group, MachineIdentity, Organization, Project, Relay,
    SubOrganization,
};
use crate::domain::model::{Accepted, ObjectSet};
use crate::domain::problem::ObjectKey;
use crate::store::Desired;

/// The desired state at `now` for the objects of `set` that `accepted` lists. Each step adds
/// rows that the later ones refer to, so the order below is the order the store writes them.
pub fn desired_from(set: &ObjectSet, accepted: &Accepted, now: Timestamp) -> Desired {
    let mut d = Desired::default();
    let keys = orgs::organizations(set, accepted, &mut d);
    let owned = owned::groups_and_identities(set, accepted, &keys, &mut d);
    owned::subject_memberships(set, accepted, &keys, &owned, now, &mut d);
    let (explicit, mut idle) = orgs::memberships(set, accepted, &keys, now, &mut d);
    orgs::admins(set, accepted, &explicit, &mut idle, &mut d);
    projects::add(set, accepted, now, &keys, &explicit, &mut d);
    owned::keep_members_of_owner(&mut d, &idle);
    kept(set, accepted, &mut d);
    live(set, &mut d);
    d
}

/// Every object of `set`: they exist, so a row one of them no longer asks for is deleted, not
/// orphaned ([`Desired::live`]).
fn live(set: &ObjectSet, d: &mut Desired) {
    fn add<K: kube::Resource<DynamicType = ()>>(objects: &[K], live: &mut HashSet<String>) {
        live.extend(objects.iter().map(values::source_key));
    }
    let l = &mut d.live;
    add(&set.organizations, l);
    add(&set.sub_organizations, l);
    add(&set.memberships, l);
    add(&set.groups, l);
    add(&set.identities, l);
    add(&set.connections, l);
    add(&set.gateways, l);
    add(&set.relays, l);
    add(&set.projects, l);
    add(&set.project_memberships, l);
}

/// The containers of `set` (organizations, groups, identities, app connections, gateways,
/// relays, projects) that the rules refused: they still exist, so their rows stay in the store
/// as last written rather than go with what hangs off them. A namespace losing its delegation
/// label, or an organization refused for a while, must not delete a project and its secrets.
/// Their memberships are not kept: access follows only what is accepted.
fn kept(set: &ObjectSet, accepted: &Accepted, d: &mut Desired) {
    fn refused<K: Container>(
        objects: &[K],
        accepted: &[usize],
        kept: &mut BTreeMap<String, Option<&'static str>>,
    ) {
        let mut ok = vec![false; objects.len()];
        for &i in accepted {
            ok[i] = true;
        }
        kept.extend(objects.iter().zip(ok).filter(|(_, ok)| !ok).map(|(o, _)| {
            let (source, policy) = o.kept();
            (source, Some(policy))
        }));
    }
    let k = &mut d.kept;
    refused(&set.organizations, &accepted.organizations, k);
    refused(&set.sub_organizations, &accepted.sub_organizations, k);
    refused(&set.groups, &accepted.groups, k);
    refused(&set.identities, &accepted.identities, k);
    refused(&set.connections, &accepted.connections, k);
    refused(&set.gateways, &accepted.gateways, k);
    refused(&set.relays, &accepted.relays, k);
    refused(&set.projects, &accepted.projects, k);
}

/// The entry of [`Desired::kept`] for the container `key` of `set`: for one the caller leaves
/// out of the set (a store conflict), whose rows stay as a refused one's do. `None` for a
/// membership, whose access goes.
pub fn kept_entry(set: &ObjectSet, key: &ObjectKey) -> Option<(String, &'static str)> {
    fn find<K: Container>(objects: &[K], key: &ObjectKey) -> Option<(String, &'static str)> {
        objects
            .iter()
            .find(|o| {
                o.meta().name.as_deref() == Some(key.name.as_str())
                    && o.meta().namespace == key.namespace
            })
            .map(Container::kept)
    }
    match key.kind.as_str() {
        "Organization" => find(&set.organizations, key),
        "SubOrganization" => find(&set.sub_organizations, key),
        "Group" => find(&set.groups, key),
        "MachineIdentity" => find(&set.identities, key),
        "AppConnection" => find(&set.connections, key),
        "Gateway" => find(&set.gateways, key),
        "Relay" => find(&set.relays, key),
        "Project" => find(&set.projects, key),
        _ => None,
    }
}

/// Whether `kind` holds things (as opposed to granting access): kept while refused.
pub fn is_container(kind: &str) -> bool {
    matches!(
        kind,
        "Organization"
            | "SubOrganization"
            | "Group"
            | "MachineIdentity"
            | "AppConnection"
            | "Gateway"
            | "Relay"
            | "Project"
    )
}

/// A kind whose rows hold things (as opposed to grant access): kept while refused.
trait Container: kube::Resource<DynamicType = ()> + Sized {
    fn deletion_policy(&self) -> DeletionPolicy;

    /// Its entry of [`Desired::kept`].
    fn kept(&self) -> (String, &'static str) {
        (
            values::source_key(self),
            values::policy(self.deletion_policy()),
        )
    }
}

macro_rules! container {
    ($($kind:ty),*) => {$(
        impl Container for $kind {
            fn deletion_policy(&self) -> DeletionPolicy {
                self.spec.deletion_policy
            }
        }
    )*};
}
container!(
    Organization,
    SubOrganization,
    Group,
    MachineIdentity,
    AppConnection,
    Gateway,
    Relay,
    Project
);
