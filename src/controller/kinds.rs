//! What the reconciler needs to know of each kind: its status type, its key, the status a sync
//! gives it, and its scope.

use std::fmt::Debug;

use k8s_openapi::jiff::Timestamp;
use kube::api::Api;
use kube::{Client, Resource};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::status;
use super::sync::SyncResult;
use crate::api::{
    AppConnection, CommonStatus, DeletionPolicy, Gateway, Group, MachineIdentity, OrgMembership,
    Organization, Project, ProjectMembership, Relay, SubOrganization,
};
use crate::domain::model;
use crate::domain::problem::ObjectKey;

/// What the reconciler needs to know of a kind.
pub trait Kind:
    Resource<DynamicType = ()> + Clone + Debug + Serialize + DeserializeOwned + Send + Sync + 'static
{
    /// The kind's status type.
    type Status: Serialize + PartialEq + Debug + Send + Sync;
    /// The kind's name, for metrics and logs.
    const KIND: &'static str;
    /// The object's key in problems.
    fn key(&self) -> ObjectKey;
    /// An Api for objects like this one.
    fn api(client: Client, namespace: Option<&str>) -> Api<Self>;
    /// The status the object has now.
    fn current(&self) -> Option<&Self::Status>;
    /// The status the object should have after `result`.
    fn desired(&self, result: &SyncResult, now: Timestamp) -> Self::Status;
    /// The common part of a status.
    fn common(status: &Self::Status) -> &CommonStatus;
    /// What becomes of the object's rows when it goes.
    fn deletion_policy(&self) -> DeletionPolicy;
}

/// Implements [`Kind`] for one of suborg's kinds: its status type, key function, status
/// function, and whether it is cluster-scoped or namespaced.
macro_rules! kind {
    ($kind:ty, $status:ty, $key:path, $desired:path, cluster) => {
        kind!(@impl $kind, $status, $key, $desired, |client, _namespace| Api::all(client));
    };
    ($kind:ty, $status:ty, $key:path, $desired:path, namespaced) => {
        kind!(@impl $kind, $status, $key, $desired, |client, namespace: Option<&str>| {
            Api::namespaced(client, namespace.unwrap_or("default"))
        });
    };
    (@impl $kind:ty, $status:ty, $key:path, $desired:path, $api:expr) => {
        impl Kind for $kind {
            type Status = $status;
            const KIND: &'static str = stringify!($kind);
            fn key(&self) -> ObjectKey {
                $key(self)
            }
            fn api(client: Client, namespace: Option<&str>) -> Api<Self> {
                let make: fn(Client, Option<&str>) -> Api<Self> = $api;
                make(client, namespace)
            }
            fn current(&self) -> Option<&Self::Status> {
                self.status.as_ref()
            }
            fn desired(&self, result: &SyncResult, now: Timestamp) -> Self::Status {
                $desired(self, result, now)
            }
            fn common(status: &Self::Status) -> &CommonStatus {
                &status.common
            }
            fn deletion_policy(&self) -> DeletionPolicy {
                self.spec.deletion_policy
            }
        }
    };
}

kind!(
    Organization,
    crate::api::OrganizationStatus,
    model::organization_key,
    status::organization,
    cluster
);
kind!(
    SubOrganization,
    crate::api::SubOrganizationStatus,
    model::sub_organization_key,
    status::sub_organization,
    cluster
);
kind!(
    OrgMembership,
    crate::api::OrgMembershipStatus,
    model::membership_key,
    status::membership,
    namespaced
);
kind!(
    Group,
    crate::api::GroupStatus,
    model::group_key,
    status::group,
    namespaced
);
kind!(
    MachineIdentity,
    crate::api::MachineIdentityStatus,
    model::identity_key,
    status::identity,
    namespaced
);
kind!(
    AppConnection,
    crate::api::OrgResourceStatus,
    model::namespaced_key,
    status::resource,
    namespaced
);
kind!(
    Gateway,
    crate::api::OrgResourceStatus,
    model::namespaced_key,
    status::resource,
    namespaced
);
kind!(
    Relay,
    crate::api::OrgResourceStatus,
    model::namespaced_key,
    status::resource,
    namespaced
);
kind!(
    Project,
    crate::api::ProjectStatus,
    model::project_key,
    status::project,
    namespaced
);
kind!(
    ProjectMembership,
    crate::api::ProjectMembershipStatus,
    model::project_membership_key,
    status::project_membership,
    namespaced
);

/// The status patch for server-side apply: only the fields suborg owns.
pub fn status_patch<K: Kind>(status: &K::Status) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": status,
    })
}
