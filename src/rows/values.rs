//! How an object's fields become row values, alike for every kind: its source key, its
//! `namespace/name`, its deletion policy, and its roles as JSON with expired temporary roles
//! dropped.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;

use crate::api::{DeletionPolicy, RoleBinding};
use crate::domain::temporary::{self, RoleState};

/// The key of an object's rows: its uid, or `Kind/name` (`Kind/namespace/name`) when it has
/// none (offline, before the API server assigned one).
pub fn source_key<K: kube::Resource<DynamicType = ()>>(o: &K) -> String {
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
pub(super) fn ns_name(meta: &ObjectMeta) -> String {
    format!(
        "{}/{}",
        meta.namespace.as_deref().unwrap_or_default(),
        meta.name.as_deref().unwrap_or_default()
    )
}

/// A deletion policy as the store writes it.
pub fn policy(p: DeletionPolicy) -> &'static str {
    match p {
        DeletionPolicy::Delete => "Delete",
        DeletionPolicy::Orphan => "Orphan",
    }
}

pub(super) fn roles_json(roles: &[RoleBinding]) -> String {
    serde_json::to_string(roles).expect("roles serialize")
}

/// The roles that still grant or will grant access at `now`: an expired temporary role is
/// dropped from the row, which is how its access is revoked. A `duration` without `start`
/// counts from the object's creation; the row says so with that `start`, so a reader of the
/// store times the role as the controller does. Offline (no uid: the creation time stands for
/// the row's first write, see `Loader::date`) it is left as written, and readers count from
/// the row's `created_at`, as `suborg apply` does.
pub(super) fn live(roles: &[RoleBinding], meta: &ObjectMeta, now: Timestamp) -> Vec<RoleBinding> {
    let granted_at = meta.creation_timestamp.as_ref().map_or(now, |t| t.0);
    let created = meta
        .creation_timestamp
        .as_ref()
        .filter(|_| meta.uid.is_some())
        .map(|t| t.0);
    roles
        .iter()
        .filter(|r| {
            !matches!(
                temporary::state(r, granted_at, now),
                Ok(RoleState::Expired { .. })
            )
        })
        .map(|r| {
            let mut r = r.clone();
            if let (Some(t), Some(created)) = (&mut r.temporary, created)
                && t.counts_from_creation()
            {
                t.start = Some(created.to_string());
            }
            r
        })
        .collect()
}
