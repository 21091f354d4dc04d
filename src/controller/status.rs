//! Status, computed purely from an object and the last sync: no client, no clock of its own.
//!
//! `Ready` is `False` with the first broken rule's reason when the rules reject the object, with
//! `StoreUnavailable` (or another store reason) when the store could not be written, with
//! `HasSubOrganizations` while a deleted root waits for its children, `DependencyNotReady` when
//! it is held back by another object's problem; `True` with `Synced` when
//! the object's rows are in the store. Beside a `Ready` that is not `True`, kstatus's
//! `Reconciling` (it waits: another object, the store) or `Stalled` (a change is needed: a broken
//! rule, a store conflict) is `True`, so kstatus-based tools (Flux, kpt, Config Sync) tell a
//! refused object from a synced one. `lastTransitionTime` moves only when the status does, so
//! an unchanged object computes an identical status and no write is made.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use kube::{Resource, ResourceExt};

use super::sync::SyncResult;
use crate::api::{
    CONDITION_READY, CONDITION_RECONCILING, CONDITION_STALLED, CommonStatus, Group, GroupStatus,
    MachineIdentity, MachineIdentityStatus, OrgMembership, OrgMembershipStatus, OrgResource,
    OrgResourceStatus, Organization, OrganizationStatus, Project, ProjectMembership,
    ProjectMembershipStatus, ProjectStatus, SubOrganization, SubOrganizationStatus,
};
use crate::domain::model;
use crate::domain::problem::{ObjectKey, Problem};
use crate::domain::temporary::{self, RoleState};
use crate::store::GroupEntry;

/// The Ready condition's status, reason and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// `True`, `False` or `Unknown`.
    pub status: &'static str,
    /// PascalCase reason.
    pub reason: String,
    /// What a person can act on.
    pub message: String,
    /// Whether a `Ready` that is not `True` waits for something that needs no change to the
    /// object (kstatus `Reconciling`, not `Stalled`): see [`is_waiting`], and a problem that
    /// [clears on its own](Problem::clears_on_its_own).
    pub waiting: bool,
}

fn describe(p: &Problem) -> String {
    if p.field.is_empty() {
        p.message.clone()
    } else {
        format!("{}: {}", p.field, p.message)
    }
}

/// Ready for the object `key` (uid `uid`), given whether and how its rows are in the store.
pub fn verdict(
    key: &ObjectKey,
    uid: Option<&str>,
    result: &SyncResult,
    in_store: Option<String>,
) -> Verdict {
    let problems = result.problems.get(key).map(Vec::as_slice).unwrap_or(&[]);
    let errors: Vec<&Problem> = problems.iter().filter(|p| p.is_error()).collect();
    // A refused container that was in the store: its rows stay there as last written.
    let kept = in_store.is_some() && uid.is_some_and(|u| result.kept.contains(u));
    let kept_note = |mut message: String| {
        if kept {
            // Memberships are never kept (`Desired::kept`): a group's own member rows go.
            message.push_str(if key.kind == "Group" {
                "; its row stays in the store as last synced, without its members (access follows only what is accepted), neither updated nor corrected if changed outside suborg, until this is resolved (delete the object to remove it)"
            } else {
                "; its rows stay in the store as last synced, neither updated nor corrected if changed outside suborg, until this is resolved (delete the object to remove them)"
            });
        }
        message
    };
    if let Some(first) = errors.first() {
        return Verdict {
            status: "False",
            waiting: errors.iter().all(|p| p.clears_on_its_own),
            reason: first.reason.as_str().to_owned(),
            message: kept_note(
                errors
                    .iter()
                    .map(|p| describe(p))
                    .collect::<Vec<_>>()
                    .join("; "),
            ),
        };
    }
    if let Some(f) = &result.failure {
        // Held back by another object's problem, which the store's return will not change:
        // that is what it waits for.
        if let Some(waits) = result.waiting.get(key) {
            return Verdict {
                status: "False",
                reason: "DependencyNotReady".to_owned(),
                waiting: true,
                message: format!("{waits}; meanwhile the store cannot be written"),
            };
        }
        return Verdict {
            status: "False",
            reason: f.reason.to_owned(),
            waiting: is_waiting(f.reason),
            message: format!("{}; retrying", f.message),
        };
    }
    if let Some(message) = uid.and_then(|u| result.conflicts.get(u)) {
        return Verdict {
            status: "False",
            reason: "StoreConflict".to_owned(),
            waiting: false,
            message: kept_note(message.clone()),
        };
    }
    if key.kind == "Organization"
        && let Some(children) = result.held.get(&key.name)
    {
        let going = children
            .iter()
            .all(|c| c.ends_with(super::caches::BEING_DELETED));
        return Verdict {
            status: "False",
            reason: HAS_SUB_ORGANIZATIONS.to_owned(),
            waiting: true,
            message: if going {
                format!(
                    "being deleted: it leaves the store as soon as its sub-organizations, being deleted too, are gone: {}",
                    children.join(", ")
                )
            } else {
                format!(
                    "being deleted, but kept in the store while sub-organizations remain: {}; delete them first",
                    children.join(", ")
                )
            },
        };
    }
    if kept {
        return Verdict {
            status: "False",
            reason: "DependencyNotReady".to_owned(),
            waiting: true,
            message: kept_note(waits_for(key, result).to_owned()),
        };
    }
    match in_store {
        Some(description) => {
            let warnings: Vec<String> = problems
                .iter()
                .filter(|p| !p.is_error())
                .map(|p| format!("warning: {} [{}]", describe(p), p.reason))
                .collect();
            let mut message = description;
            for w in warnings {
                message.push_str("; ");
                message.push_str(&w);
            }
            Verdict {
                status: "True",
                reason: "Synced".to_owned(),
                waiting: false,
                message,
            }
        }
        // Accepted by no rule's complaint of its own: something it depends on is not ready
        // (its organization, or for a sub-organization membership the root membership), which
        // the message names when the rules could tell which.
        None => Verdict {
            status: "False",
            reason: "DependencyNotReady".to_owned(),
            waiting: true,
            message: format!("not in the store: {}", waits_for(key, result)),
        },
    }
}

/// What the object `key` waits for, as the rules explained it, or in general terms when they
/// could not tell which object it is.
fn waits_for<'r>(key: &ObjectKey, result: &'r SyncResult) -> &'r str {
    result.waiting.get(key).map_or(
        "an object it depends on (its organization, or the subject's root membership) is not ready; see that object's status",
        String::as_str,
    )
}

/// Longest condition message written: the schema allows 32 KiB, and an object breaking many
/// rules at once must still get its status written.
pub const MAX_MESSAGE: usize = 4096;

/// The Ready reason of a root whose deletion waits for its sub-organizations: the order of a
/// deletion, not a fault (its Event is Normal).
pub const HAS_SUB_ORGANIZATIONS: &str = "HasSubOrganizations";

fn bounded(mut message: String) -> String {
    if message.len() > MAX_MESSAGE {
        let mut end = MAX_MESSAGE - 40;
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        let total = message.len();
        message.truncate(end);
        message.push_str(&format!(" … ({total} bytes in all)"));
    }
    message
}

/// The Ready condition for `verdict`, keeping the previous transition time when the status did
/// not change.
pub fn ready_condition(
    verdict: Verdict,
    generation: Option<i64>,
    previous: &[Condition],
    now: Timestamp,
) -> Condition {
    let since = previous
        .iter()
        .find(|c| c.type_ == CONDITION_READY && c.status == verdict.status)
        .map_or(Time(now), |c| c.last_transition_time.clone());
    Condition {
        type_: CONDITION_READY.to_owned(),
        status: verdict.status.to_owned(),
        reason: verdict.reason,
        message: bounded(verdict.message),
        last_transition_time: since,
        observed_generation: generation,
    }
}

/// Whether a `Ready` that is not `True` for `reason` waits for something that needs no change
/// to the object (another object, the store, a deletion's order): kstatus's `Reconciling`, not
/// `Stalled`. A broken rule's reason is not one, but the problem itself may say it clears on
/// its own ([`Verdict::waiting`]).
pub fn is_waiting(reason: &str) -> bool {
    matches!(
        reason,
        "DependencyNotReady" | "StoreUnavailable" | HAS_SUB_ORGANIZATIONS
    )
}

/// The kstatus condition that goes with a `Ready` that is not `True` (`Reconciling` or
/// `Stalled`, with its reason and message), keeping its transition time while it stays.
fn progress_condition(
    verdict: &Verdict,
    generation: Option<i64>,
    previous: &[Condition],
    now: Timestamp,
) -> Option<Condition> {
    if verdict.status == "True" {
        return None;
    }
    let type_ = if verdict.waiting {
        CONDITION_RECONCILING
    } else {
        CONDITION_STALLED
    };
    let since = previous
        .iter()
        .find(|c| c.type_ == type_ && c.status == "True")
        .map_or(Time(now), |c| c.last_transition_time.clone());
    Some(Condition {
        type_: type_.to_owned(),
        status: "True".to_owned(),
        reason: verdict.reason.clone(),
        message: bounded(verdict.message.clone()),
        last_transition_time: since,
        observed_generation: generation,
    })
}

fn common<K: Resource>(
    o: &K,
    verdict: Verdict,
    previous: Option<&CommonStatus>,
    id: Option<String>,
    now: Timestamp,
) -> CommonStatus {
    let previous = previous.map(|c| c.conditions.as_slice()).unwrap_or(&[]);
    let generation = o.meta().generation;
    let progress = progress_condition(&verdict, generation, previous, now);
    let mut conditions = vec![ready_condition(verdict, generation, previous, now)];
    conditions.extend(progress);
    CommonStatus {
        observed_generation: generation,
        conditions,
        id,
    }
}

/// The status an Organization should have after `result`.
pub fn organization(o: &Organization, result: &SyncResult, now: Timestamp) -> OrganizationStatus {
    let uid = o.uid();
    let entry = uid
        .as_deref()
        .and_then(|u| result.index.organizations.get(u));
    let v = verdict(
        &model::organization_key(o),
        uid.as_deref(),
        result,
        entry.map(|e| {
            format!(
                "in the store as {:?} with {} and {}",
                e.slug,
                counted(e.members, "member", "members"),
                counted(e.sub_organizations, "sub-organization", "sub-organizations")
            )
        }),
    );
    OrganizationStatus {
        common: common(
            o,
            v,
            o.status.as_ref().map(|s| &s.common),
            entry.map(|e| e.id.clone()),
            now,
        ),
        slug: entry.map(|e| e.slug.clone()),
        sub_organizations: entry.map(|e| e.sub_organizations),
        members: entry.map(|e| e.members),
    }
}

/// `n` and the noun, singular or plural as `n` asks: "1 member", "0 members".
fn counted<N: Into<i64>>(n: N, one: &str, many: &str) -> String {
    let n = n.into();
    format!("{n} {}", if n == 1 { one } else { many })
}

/// The status a SubOrganization should have after `result`.
pub fn sub_organization(
    s: &SubOrganization,
    result: &SyncResult,
    now: Timestamp,
) -> SubOrganizationStatus {
    let uid = s.uid();
    let entry = uid
        .as_deref()
        .and_then(|u| result.index.organizations.get(u));
    let v = verdict(
        &model::sub_organization_key(s),
        uid.as_deref(),
        result,
        entry.map(|e| {
            format!(
                "in the store as {:?} under {:?} with {}",
                e.slug,
                s.spec.organization_ref.name,
                counted(e.members, "member", "members")
            )
        }),
    );
    SubOrganizationStatus {
        common: common(
            s,
            v,
            s.status.as_ref().map(|s| &s.common),
            entry.map(|e| e.id.clone()),
            now,
        ),
        slug: entry.map(|e| e.slug.clone()),
        root_id: entry.map(|e| e.root_id.clone()),
        members: entry.map(|e| e.members),
    }
}

/// What a membership in the store grants: the roles in effect, and those still to start.
fn in_store(
    what: &str,
    active: &[String],
    roles: &[crate::api::RoleBinding],
    granted_at: Timestamp,
    now: Timestamp,
) -> String {
    let mut message = if active.is_empty() {
        "in the store with no role in effect".to_owned()
    } else {
        format!("in the store with {what} {}", active.join(", "))
    };
    for r in roles {
        if let Ok(RoleState::Pending { starts, ends }) = temporary::state(r, granted_at, now) {
            message.push_str(&format!("; {} from {starts} until {ends}", r.role));
        }
    }
    message
}

/// The status an OrgMembership should have after `result`.
pub fn membership(m: &OrgMembership, result: &SyncResult, now: Timestamp) -> OrgMembershipStatus {
    let uid = m.uid();
    let entry = uid.as_deref().and_then(|u| result.index.memberships.get(u));
    let granted_at = temporary::granted_at(&m.metadata, now);
    let times = RoleTimes::of(&m.spec.roles, granted_at, now);
    let v = verdict(
        &model::membership_key(m),
        uid.as_deref(),
        result,
        entry.map(|_| in_store("roles", &times.active, &m.spec.roles, granted_at, now)),
    );
    OrgMembershipStatus {
        common: common(
            m,
            v,
            m.status.as_ref().map(|s| &s.common),
            entry.map(|(id, _)| id.clone()),
            now,
        ),
        organization_id: entry.map(|(_, org)| org.clone()),
        active_roles: if entry.is_some() {
            times.active
        } else {
            vec![]
        },
        next_expiry: times.next_expiry.map(|t| t.to_string()),
        next_start: times.next_start.map(|t| t.to_string()),
    }
}

/// What a membership's roles are at `now`: those in effect, when the next of them expires, and
/// when the next still to come starts; for the status, where tools that read fields rather
/// than messages see when access changes.
struct RoleTimes {
    active: Vec<String>,
    next_expiry: Option<Timestamp>,
    next_start: Option<Timestamp>,
}

impl RoleTimes {
    fn of(roles: &[crate::api::RoleBinding], granted_at: Timestamp, now: Timestamp) -> Self {
        let earliest = |a: Option<Timestamp>, t: Timestamp| Some(a.map_or(t, |a| a.min(t)));
        let mut times = RoleTimes {
            active: Vec::new(),
            next_expiry: None,
            next_start: None,
        };
        for r in roles {
            match temporary::state(r, granted_at, now) {
                Ok(RoleState::Active { until }) => {
                    times.active.push(r.role.clone());
                    if let Some(t) = until {
                        times.next_expiry = earliest(times.next_expiry, t);
                    }
                }
                Ok(RoleState::Pending { starts, .. }) => {
                    times.next_start = earliest(times.next_start, starts);
                }
                _ => {}
            }
        }
        times
    }
}

/// The status a Group should have after `result`.
pub fn group(g: &Group, result: &SyncResult, now: Timestamp) -> GroupStatus {
    let uid = g.uid();
    let entry = uid.as_deref().and_then(|u| result.index.groups.get(u));
    let v = verdict(
        &model::group_key(g),
        uid.as_deref(),
        result,
        entry.map(|e| {
            format!(
                "in the store under {} {:?} with {} listed directly",
                g.spec.organization_ref.kind,
                g.spec.organization_ref.name,
                listed(e)
            )
        }),
    );
    GroupStatus {
        common: common(
            g,
            v,
            g.status.as_ref().map(|s| &s.common),
            entry.map(|e| e.id.clone()),
            now,
        ),
        members: entry.map(|e| e.users),
        nested_groups: entry.map(|e| e.nested),
    }
}

/// "2 users and 1 nested group": what a group's row lists.
fn listed(e: &GroupEntry) -> String {
    let users = counted(e.users, "user", "users");
    if e.nested == 0 {
        users
    } else {
        format!(
            "{users} and {}",
            counted(e.nested, "nested group", "nested groups")
        )
    }
}

/// The status a MachineIdentity should have after `result`.
pub fn identity(i: &MachineIdentity, result: &SyncResult, now: Timestamp) -> MachineIdentityStatus {
    let uid = i.uid();
    let entry = uid.as_deref().and_then(|u| result.index.identities.get(u));
    let v = verdict(
        &model::identity_key(i),
        uid.as_deref(),
        result,
        entry.map(|_| {
            format!(
                "in the store under {} {:?}",
                i.spec.organization_ref.kind, i.spec.organization_ref.name
            )
        }),
    );
    MachineIdentityStatus {
        common: common(
            i,
            v,
            i.status.as_ref().map(|s| &s.common),
            entry.cloned(),
            now,
        ),
    }
}

/// The status an AppConnection, Gateway or Relay should have after `result`.
pub fn resource<K: OrgResource>(o: &K, result: &SyncResult, now: Timestamp) -> OrgResourceStatus {
    let uid = o.uid();
    let entry = uid.as_deref().and_then(|u| result.index.resources.get(u));
    let r = o.organization_ref();
    let v = verdict(
        &model::namespaced_key(o),
        uid.as_deref(),
        result,
        entry.map(|_| format!("in the store under {} {:?}", r.kind, r.name)),
    );
    OrgResourceStatus {
        common: common(o, v, o.status_common(), entry.cloned(), now),
    }
}

/// The status a Project should have after `result`.
pub fn project(p: &Project, result: &SyncResult, now: Timestamp) -> ProjectStatus {
    let uid = p.uid();
    let entry = uid.as_deref().and_then(|u| result.index.projects.get(u));
    let r = &p.spec.organization_ref;
    let v = verdict(
        &model::project_key(p),
        uid.as_deref(),
        result,
        entry.map(|(_, slug, members)| {
            format!(
                "in the store as {slug:?} under {} {:?} with {}",
                r.kind,
                r.name,
                counted(*members, "member", "members")
            )
        }),
    );
    ProjectStatus {
        common: common(
            p,
            v,
            p.status.as_ref().map(|s| &s.common),
            entry.map(|(id, _, _)| id.clone()),
            now,
        ),
        slug: entry.map(|(_, slug, _)| slug.clone()),
        members: entry.map(|(_, _, m)| *m),
    }
}

/// The status a ProjectMembership should have after `result`.
pub fn project_membership(
    m: &ProjectMembership,
    result: &SyncResult,
    now: Timestamp,
) -> ProjectMembershipStatus {
    let uid = m.uid();
    let entry = uid
        .as_deref()
        .and_then(|u| result.index.project_memberships.get(u));
    let granted_at = temporary::granted_at(&m.metadata, now);
    let times = RoleTimes::of(&m.spec.roles, granted_at, now);
    let v = verdict(
        &model::project_membership_key(m),
        uid.as_deref(),
        result,
        entry.map(|_| {
            in_store(
                "project roles",
                &times.active,
                &m.spec.roles,
                granted_at,
                now,
            )
        }),
    );
    ProjectMembershipStatus {
        common: common(
            m,
            v,
            m.status.as_ref().map(|s| &s.common),
            entry.map(|(id, _)| id.clone()),
            now,
        ),
        project_id: entry.map(|(_, p)| p.clone()),
        active_roles: if entry.is_some() {
            times.active
        } else {
            vec![]
        },
        next_expiry: times.next_expiry.map(|t| t.to_string()),
        next_start: times.next_start.map(|t| t.to_string()),
    }
}
