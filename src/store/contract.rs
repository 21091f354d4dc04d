//! [`Store`]: the operations the controller and the CLI need from a store, whatever holds it.

use super::access::{AccessEntry, ProjectInfo, ResourceInfo};
use super::desired::Desired;
use super::error::StoreError;
use super::plan::{ApplyOptions, Plan};
use super::read::{EffectiveMember, MemberInfo, OrgInfo, OwnedInfo, StoreIndex, TreeRoot};

/// The operations the controller and the CLI need from a store.
pub trait Store {
    /// What applying `desired` would change.
    fn plan(
        &self,
        desired: &Desired,
        options: ApplyOptions,
    ) -> impl Future<Output = Result<Plan, StoreError>> + Send;
    /// Makes the store match `desired` in one transaction and returns what changed.
    fn apply(
        &self,
        desired: &Desired,
        options: ApplyOptions,
    ) -> impl Future<Output = Result<Plan, StoreError>> + Send;
    /// Every root with its sub-organizations and member counts.
    fn tree(&self) -> impl Future<Output = Result<Vec<TreeRoot>, StoreError>> + Send;
    /// Every organization, roots first.
    fn organizations(&self) -> impl Future<Output = Result<Vec<OrgInfo>, StoreError>> + Send;
    /// The members added to one organization (for a root, its own members only: what was
    /// added inside a sub-organization is visible there alone).
    fn members(
        &self,
        org_id: &str,
    ) -> impl Future<Output = Result<Vec<MemberInfo>, StoreError>> + Send;
    /// The managed rows by source, with their ids and counts.
    fn index(&self) -> impl Future<Output = Result<StoreIndex, StoreError>> + Send;
    /// The groups and machine identities usable in one organization: its own, and for a
    /// sub-organization the root's that were added to it. A root's list leaves out what its
    /// sub-organizations created.
    fn owned(
        &self,
        org_id: &str,
    ) -> impl Future<Output = Result<Vec<OwnedInfo>, StoreError>> + Send;
    /// Every user with access to one organization: its members with a role in effect (not
    /// `no-access`, not all expired or still to start), and the users of the groups usable
    /// there: its own, and the root's added with a role in effect (nested groups followed,
    /// each edge once).
    fn effective_members(
        &self,
        org_id: &str,
    ) -> impl Future<Output = Result<Vec<EffectiveMember>, StoreError>> + Send;
    /// The projects of one organization: its own only (a root does not see its
    /// sub-organizations' projects, nor they the root's).
    fn projects(
        &self,
        org_id: &str,
    ) -> impl Future<Output = Result<Vec<ProjectInfo>, StoreError>> + Send;
    /// The app connections, gateways and relays of one organization: its own only.
    fn resources(
        &self,
        org_id: &str,
    ) -> impl Future<Output = Result<Vec<ResourceInfo>, StoreError>> + Send;
    /// Every organization and project the user `email` can reach now, and through what;
    /// `None` when the store has no such user.
    fn access(
        &self,
        email: &str,
    ) -> impl Future<Output = Result<Option<Vec<AccessEntry>>, StoreError>> + Send;
}
