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

use k8s_openapi::jiff::Timestamp;

use crate::domain::model::{Accepted, ObjectSet};
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
