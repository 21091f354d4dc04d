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
//!   memberships a project invite provisions.

mod orgs;
mod owned;
mod projects;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;

use crate::api::{DeletionPolicy, RoleBinding};
use crate::domain::temporary::{self, RoleState};
use crate::domain::tree::{Accepted, ObjectSet};
use crate::store::Desired;

/// The desired state at `now` for the objects of `set` that `accepted` lists. Each step adds
/// rows that the later ones refer to, so the order below is the order the store writes them.
pub fn desired_from(set: &ObjectSet, accepted: &Accepted, now: Timestamp) -> Desired {
    let mut d = Desired::default();
    let keys = orgs::organizations(set, accepted, &mut d);
    let owned = owned::groups_and_identities(set, accepted, &keys, &mut d);
    owned::subject_memberships(set, accepted, &keys, &owned, now, &mut d);
    let explicit = orgs::memberships(set, accepted, &keys, now, &mut d);
    orgs::admins(set, accepted, &explicit, &mut d);
    projects::add(set, accepted, now, &keys, &explicit, &mut d);
    owned::keep_members_of_owner(&mut d);
    d
}

/// The key of an object's rows: its uid, or `Kind/name` (`Kind/namespace/name`) when it has
/// none (offline, before the API server assigned one).
fn source_key<K: kube::Resource<DynamicType = ()>>(o: &K) -> String {
    match &o.meta().uid {
        Some(uid) => uid.clone(),
        None => match &o.meta().namespace {
            Some(ns) => format!("{}/{ns}/{}", K::kind(&()), o.name_any()),
            None => format!("{}/{}", K::kind(&()), o.name_any()),
        },
    }
}

/// `namespace/name` of an object, as the store names groups, identities, projects and
/// connections.
fn ns_name(meta: &ObjectMeta) -> String {
    format!(
        "{}/{}",
        meta.namespace.as_deref().unwrap_or_default(),
        meta.name.as_deref().unwrap_or_default()
    )
}

fn policy(p: DeletionPolicy) -> &'static str {
    match p {
        DeletionPolicy::Delete => "Delete",
        DeletionPolicy::Orphan => "Orphan",
    }
}

fn roles_json(roles: &[RoleBinding]) -> String {
    serde_json::to_string(roles).expect("roles serialize")
}

/// The roles that still grant or will grant access at `now`: an expired temporary role is
/// dropped from the row, which is how its access is revoked.
fn live(roles: &[RoleBinding], meta: &ObjectMeta, now: Timestamp) -> Vec<RoleBinding> {
    let granted_at = meta.creation_timestamp.as_ref().map_or(now, |t| t.0);
    roles
        .iter()
        .filter(|r| {
            !matches!(
                temporary::state(r, granted_at, now),
                Ok(RoleState::Expired { .. })
            )
        })
        .cloned()
        .collect()
}
