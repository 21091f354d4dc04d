//! Reads of the store for `suborg get` and for the controller's statuses: organizations,
//! members, groups and identities, and where each source's rows are. Plain queries on a pool,
//! outside any transaction; the answers about projects and reach are in `access`.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

use sqlx::{AnyPool, Row};

use super::dsn::Backend;
use super::plan::{VALUES_PER_LIST, parameters};

/// One root organization as [`super::Store::tree`] shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TreeRoot {
    /// Slug of the root.
    pub slug: String,
    /// Display name.
    pub display_name: String,
    /// Members of the root.
    pub members: i64,
    /// Sub-organizations, by slug.
    pub sub_organizations: Vec<TreeSub>,
}

/// One sub-organization in a [`TreeRoot`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TreeSub {
    /// Slug.
    pub slug: String,
    /// Display name.
    pub display_name: String,
    /// Members of the sub-organization (only those added to it).
    pub members: i64,
}

/// One organization as [`super::Store::organizations`] lists it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OrgInfo {
    /// Store id.
    pub id: String,
    /// Slug.
    pub slug: String,
    /// Display name.
    pub display_name: String,
    /// Slug of the parent, for a sub-organization.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    /// Members added to this organization.
    pub members: i64,
    /// Sub-organizations, for a root.
    pub sub_organizations: i64,
    /// Whether suborg manages the row.
    pub managed: bool,
}

/// One membership as [`super::Store::members`] lists it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MemberInfo {
    /// The user's email.
    pub email: String,
    /// The roles, with their temporary bounds.
    pub roles: serde_json::Value,
}

/// A group or machine identity as [`super::Store::owned`] lists it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OwnedInfo {
    /// `Group` or `MachineIdentity`.
    pub kind: &'static str,
    /// `namespace/name` of its Kubernetes object.
    pub name: String,
    /// Display name.
    pub display_name: String,
    /// Slug of the organization that owns it (`ROOT` or `ROOT/SUB`).
    pub owner: String,
    /// For a group: users listed directly.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub users: Option<i64>,
    /// For a group: groups nested directly.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nested_groups: Option<i64>,
}

/// A user with access to an organization, and through what.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EffectiveMember {
    /// The user's email.
    pub email: String,
    /// `membership`, or the groups (`namespace/name`) that bring the user in.
    pub via: Vec<String>,
}

/// A managed group's row and what it lists directly.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupEntry {
    /// The row's id.
    pub id: String,
    /// Users listed in the group itself.
    pub users: i64,
    /// Groups nested in the group itself.
    pub nested: i64,
}

/// Where each source's rows are, for status: what [`super::Store::index`] returns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoreIndex {
    /// Managed organizations by source uid.
    pub organizations: HashMap<String, OrgEntry>,
    /// Managed memberships (of users, and of groups and identities added to a
    /// sub-organization) by source uid: (row id, organization id).
    pub memberships: HashMap<String, (String, String)>,
    /// Managed groups by source uid.
    pub groups: HashMap<String, GroupEntry>,
    /// Managed machine identities by source uid: row id.
    pub identities: HashMap<String, String>,
    /// Managed app connections, gateways and relays by source uid: row id.
    pub resources: HashMap<String, String>,
    /// Managed projects by source uid: (row id, slug, project memberships).
    pub projects: HashMap<String, (String, String, i64)>,
    /// Managed project memberships by source uid: (row id, project id).
    pub project_memberships: HashMap<String, (String, String)>,
}

impl StoreIndex {
    /// Whether the object with `uid` has rows in the store, of whatever kind.
    pub fn holds(&self, uid: &str) -> bool {
        self.organizations.contains_key(uid)
            || self.memberships.contains_key(uid)
            || self.groups.contains_key(uid)
            || self.identities.contains_key(uid)
            || self.resources.contains_key(uid)
            || self.projects.contains_key(uid)
            || self.project_memberships.contains_key(uid)
    }
}

/// One organization row, as [`StoreIndex`] holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrgEntry {
    /// Row id.
    pub id: String,
    /// Slug in the store.
    pub slug: String,
    /// Id of the root (itself for a root).
    pub root_id: String,
    /// Members added to this organization.
    pub members: i64,
    /// Sub-organizations, for a root.
    pub sub_organizations: i64,
}

pub(super) async fn organizations(pool: &AnyPool) -> Result<Vec<OrgInfo>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT o.id, o.slug, o.display_name, p.slug, o.managed, \
         (SELECT COUNT(*) FROM memberships m WHERE m.organization_id = o.id), \
         (SELECT COUNT(*) FROM organizations c WHERE c.parent_id = o.id) \
         FROM organizations o LEFT JOIN organizations p ON p.id = o.parent_id \
         ORDER BY o.depth, p.slug, o.slug",
    )
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| OrgInfo {
            id: r.get(0),
            slug: r.get(1),
            display_name: r.get(2),
            parent: r.get(3),
            managed: r.get::<i64, _>(4) == 1,
            members: r.get(5),
            sub_organizations: r.get(6),
        })
        .collect())
}

pub(super) async fn tree(pool: &AnyPool) -> Result<Vec<TreeRoot>, sqlx::Error> {
    // Roots come first, and a root's slug is unique among roots, so it names the parent.
    let mut roots: Vec<TreeRoot> = Vec::new();
    let mut index: HashMap<String, usize> = Default::default();
    for o in organizations(pool).await? {
        match o.parent {
            None => {
                index.insert(o.slug.clone(), roots.len());
                roots.push(TreeRoot {
                    slug: o.slug,
                    display_name: o.display_name,
                    members: o.members,
                    sub_organizations: vec![],
                });
            }
            Some(parent) => {
                if let Some(&r) = index.get(&parent) {
                    roots[r].sub_organizations.push(TreeSub {
                        slug: o.slug,
                        display_name: o.display_name,
                        members: o.members,
                    });
                }
            }
        }
    }
    Ok(roots)
}

pub(super) async fn first_written(pool: &AnyPool) -> Result<HashMap<String, i64>, sqlx::Error> {
    let union = super::tables::MANAGED
        .iter()
        .map(|t| format!("SELECT source_uid, created_at FROM {t} WHERE source_uid IS NOT NULL"))
        .collect::<Vec<_>>()
        .join(" UNION ALL ");
    let rows = sqlx::query(&format!(
        "SELECT source_uid, MIN(created_at) FROM ({union}) AS rows_by_source GROUP BY source_uid"
    ))
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(|r| (r.get(0), r.get(1))).collect())
}

pub(super) async fn members(pool: &AnyPool, org_id: &str) -> Result<Vec<MemberInfo>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT u.email, m.roles, m.created_at FROM memberships m JOIN users u ON u.id = m.user_id \
         WHERE m.organization_id = $1 ORDER BY u.email",
    )
    .bind(org_id)
    .fetch_all(pool)
    .await?;
    let now = k8s_openapi::jiff::Timestamp::now();
    Ok(rows
        .into_iter()
        .map(|r| MemberInfo {
            email: r.get(0),
            roles: with_state(&r.get::<String, _>(1), r.get(2), now),
        })
        .collect())
}

/// A row's roles as stored, each temporary one with its `state` at `now` (`active`, `pending`
/// or `expired`) and the moment that state ends or began (`until`, `from`, `expiredAt`), timed
/// as the controller times it: a `duration` without `start` from the row's creation.
fn with_state(
    roles: &str,
    created_at_ms: i64,
    now: k8s_openapi::jiff::Timestamp,
) -> serde_json::Value {
    use crate::domain::temporary::{self, RoleState};
    let Ok(parsed) = serde_json::from_str::<Vec<crate::api::RoleBinding>>(roles) else {
        return serde_json::from_str(roles).unwrap_or(serde_json::Value::Null);
    };
    let granted_at = super::access::row_granted_at(created_at_ms, now);
    parsed
        .iter()
        .map(|role| {
            let mut v = serde_json::to_value(role).unwrap_or_default();
            if role.temporary.is_some()
                && let Ok(state) = temporary::state(role, granted_at, now)
                && let Some(o) = v.as_object_mut()
            {
                let (name, at, when) = match state {
                    RoleState::Active { until } => ("active", "until", until),
                    RoleState::Pending { starts, .. } => ("pending", "from", Some(starts)),
                    RoleState::Expired { at } => ("expired", "expiredAt", Some(at)),
                };
                o.insert("state".into(), name.into());
                if let Some(t) = when {
                    o.insert(at.into(), t.to_string().into());
                }
            }
            v
        })
        .collect()
}

pub(super) async fn owned(pool: &AnyPool, org_id: &str) -> Result<Vec<OwnedInfo>, sqlx::Error> {
    let owner = "CASE WHEN p.slug IS NULL THEN o.slug ELSE p.slug || '/' || o.slug END";
    let counts = "(SELECT COUNT(*) FROM group_members m WHERE m.group_id = g.id AND m.member_kind = 'User'), \
           (SELECT COUNT(*) FROM group_members m WHERE m.group_id = g.id AND m.member_kind = 'Group')";
    let owners = |t: &str| {
        format!(
            "JOIN organizations o ON o.id = {t}.organization_id LEFT JOIN organizations p ON p.id = o.parent_id"
        )
    };
    // The organization's own, and the root's added to it with the roles of the addition: one
    // whose roles have all expired (or not started) is not usable there, and is left out.
    let sql = format!(
        "SELECT 'Group', g.name, g.display_name, {owner}, {counts}, NULL, 0 \
         FROM groups g {own} WHERE g.organization_id = $1 \
         UNION ALL \
         SELECT 'Group', g.name, g.display_name, {owner}, {counts}, s.roles, s.created_at \
         FROM groups g {own} JOIN subject_memberships s ON s.group_id = g.id WHERE s.organization_id = $1 \
         UNION ALL \
         SELECT 'MachineIdentity', i.name, i.display_name, {owner}, NULL, NULL, NULL, 0 \
         FROM machine_identities i {owni} WHERE i.organization_id = $1 \
         UNION ALL \
         SELECT 'MachineIdentity', i.name, i.display_name, {owner}, NULL, NULL, s.roles, s.created_at \
         FROM machine_identities i {owni} JOIN subject_memberships s ON s.identity_id = i.id WHERE s.organization_id = $1",
        own = owners("g"),
        owni = owners("i"),
    );
    let rows = sqlx::query(&sql).bind(org_id).fetch_all(pool).await?;
    let now = k8s_openapi::jiff::Timestamp::now();
    let mut out: Vec<OwnedInfo> = rows
        .into_iter()
        .filter(|r| usable_here(r.get(6), r.get(7), now))
        .map(|r| OwnedInfo {
            kind: if r.get::<String, _>(0) == "Group" {
                "Group"
            } else {
                "MachineIdentity"
            },
            name: r.get(1),
            display_name: r.get(2),
            owner: r.get(3),
            users: r.get(4),
            nested_groups: r.get(5),
        })
        .collect();
    out.sort_by(|a, b| (a.kind, &a.name).cmp(&(b.kind, &b.name)));
    Ok(out)
}

/// Whether a group or identity read with an organization is usable there at `now`: its own
/// (`roles` `None`), or a root's added to it (`roles` of that addition, granted at
/// `created_at_ms`) with a role in effect: an addition whose roles have all expired or not yet
/// started lets no one in.
fn usable_here(
    roles: Option<String>,
    created_at_ms: i64,
    now: k8s_openapi::jiff::Timestamp,
) -> bool {
    roles.is_none_or(|r| super::access::in_effect(&r, created_at_ms, now).is_some())
}

/// The groups usable in an organization, and every edge below them.
struct GroupGraph {
    /// (row id, `namespace/name`).
    usable: Vec<(String, String)>,
    users_of: HashMap<String, Vec<String>>,
    nested_of: HashMap<String, Vec<String>>,
}

async fn group_graph(pool: &AnyPool, org_id: &str) -> Result<GroupGraph, sqlx::Error> {
    // The organization's own groups, and the root's groups added to it with a role in
    // effect there: an addition whose roles have all expired lets no one in.
    let rows = sqlx::query(
        "SELECT g.id, g.name, NULL, 0 FROM groups g WHERE g.organization_id = $1 \
         UNION ALL \
         SELECT g.id, g.name, s.roles, s.created_at FROM groups g \
         JOIN subject_memberships s ON s.group_id = g.id WHERE s.organization_id = $1",
    )
    .bind(org_id)
    .fetch_all(pool)
    .await?;
    let now = k8s_openapi::jiff::Timestamp::now();
    let usable = rows
        .into_iter()
        .filter(|r| usable_here(r.get(2), r.get(3), now))
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let edges = sqlx::query(
        "SELECT gm.group_id, u.email, gm.member_group_id FROM group_members gm \
         LEFT JOIN users u ON u.id = gm.user_id \
         WHERE gm.organization_id = $1 OR gm.group_id IN (SELECT group_id FROM subject_memberships WHERE organization_id = $1)",
    )
    .bind(org_id)
    .fetch_all(pool)
    .await?;
    let mut graph = GroupGraph {
        usable,
        users_of: HashMap::new(),
        nested_of: HashMap::new(),
    };
    for r in edges {
        let group: String = r.get(0);
        match (r.get::<Option<String>, _>(1), r.get::<Option<String>, _>(2)) {
            (Some(email), _) => graph.users_of.entry(group).or_default().push(email),
            (None, Some(nested)) => graph.nested_of.entry(group).or_default().push(nested),
            _ => {}
        }
    }
    Ok(graph)
}

pub(super) async fn effective_members(
    pool: &AnyPool,
    org_id: &str,
) -> Result<Vec<EffectiveMember>, sqlx::Error> {
    // Members with a role in effect: one whose roles have all expired, are still to start,
    // or are `no-access` has no access, as `get access` says.
    let now = k8s_openapi::jiff::Timestamp::now();
    let direct = sqlx::query(
        "SELECT u.email, m.roles, m.created_at FROM memberships m JOIN users u ON u.id = m.user_id \
         WHERE m.organization_id = $1",
    )
    .bind(org_id)
    .fetch_all(pool)
    .await?;
    let graph = group_graph(pool, org_id).await?;
    let mut via: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for r in direct {
        if super::access::in_effect(&r.get::<String, _>(1), r.get(2), now).is_some() {
            via.entry(r.get(0)).or_default().push("membership".into());
        }
    }
    // One walk from every usable group at once, each group and edge visited once: linear
    // in the edges however deep the nesting. A user is shown with the groups that list them.
    let names: HashMap<&str, &str> = graph
        .usable
        .iter()
        .map(|(id, name)| (id.as_str(), name.as_str()))
        .collect();
    let mut seen: HashSet<&str> = HashSet::new();
    let mut queue: VecDeque<&str> = graph.usable.iter().map(|(id, _)| id.as_str()).collect();
    while let Some(g) = queue.pop_front() {
        if !seen.insert(g) {
            continue;
        }
        let name = names.get(g).copied().unwrap_or(g);
        for email in graph.users_of.get(g).into_iter().flatten() {
            let list = via.entry(email.clone()).or_default();
            if !list.iter().any(|v| v == name) {
                list.push(name.to_owned());
            }
        }
        for n in graph.nested_of.get(g).into_iter().flatten() {
            queue.push_back(n);
        }
    }
    Ok(via
        .into_iter()
        .map(|(email, via)| EffectiveMember { email, via })
        .collect())
}

/// Where each source's rows are.
pub(super) async fn index(pool: &AnyPool) -> Result<StoreIndex, sqlx::Error> {
    let mut index = StoreIndex::default();
    index_organizations(pool, &mut index).await?;
    // Users' memberships and the groups and identities added to sub-organizations: both
    // come from OrgMembership objects.
    let rows = sqlx::query(
        "SELECT source_uid, id, organization_id FROM memberships WHERE source_uid IS NOT NULL \
         UNION ALL \
         SELECT source_uid, id, organization_id FROM subject_memberships WHERE source_uid IS NOT NULL",
    )
    .fetch_all(pool)
    .await?;
    for r in rows {
        index.memberships.insert(r.get(0), (r.get(1), r.get(2)));
    }
    index_groups(pool, &mut index).await?;
    index_ids(pool, &mut index).await?;
    index_projects(pool, &mut index).await?;
    index_project_memberships(pool, &mut index).await?;
    Ok(index)
}

async fn index_groups(pool: &AnyPool, index: &mut StoreIndex) -> Result<(), sqlx::Error> {
    let rows = sqlx::query(
        "SELECT g.source_uid, g.id, \
         (SELECT COUNT(*) FROM group_members m WHERE m.group_id = g.id AND m.member_kind = 'User'), \
         (SELECT COUNT(*) FROM group_members m WHERE m.group_id = g.id AND m.member_kind = 'Group') \
         FROM groups g WHERE g.source_uid IS NOT NULL",
    )
    .fetch_all(pool)
    .await?;
    for r in rows {
        index.groups.insert(
            r.get(0),
            GroupEntry {
                id: r.get(1),
                users: r.get(2),
                nested: r.get(3),
            },
        );
    }
    Ok(())
}

async fn index_organizations(pool: &AnyPool, index: &mut StoreIndex) -> Result<(), sqlx::Error> {
    let rows = sqlx::query(
        "SELECT o.source_uid, o.id, o.slug, o.root_id, \
         (SELECT COUNT(*) FROM memberships m WHERE m.organization_id = o.id), \
         (SELECT COUNT(*) FROM organizations c WHERE c.parent_id = o.id) \
         FROM organizations o WHERE o.source_uid IS NOT NULL",
    )
    .fetch_all(pool)
    .await?;
    for r in rows {
        index.organizations.insert(
            r.get(0),
            OrgEntry {
                id: r.get(1),
                slug: r.get(2),
                root_id: r.get(3),
                members: r.get(4),
                sub_organizations: r.get(5),
            },
        );
    }
    Ok(())
}

/// Identities and connections, gateways, relays: rows with nothing but an id to report.
async fn index_ids(pool: &AnyPool, index: &mut StoreIndex) -> Result<(), sqlx::Error> {
    let rows = sqlx::query(
        "SELECT 'identity', source_uid, id FROM machine_identities WHERE source_uid IS NOT NULL \
         UNION ALL \
         SELECT 'resource', source_uid, id FROM org_resources WHERE source_uid IS NOT NULL",
    )
    .fetch_all(pool)
    .await?;
    for r in rows {
        let map = if r.get::<String, _>(0) == "identity" {
            &mut index.identities
        } else {
            &mut index.resources
        };
        map.insert(r.get(1), r.get(2));
    }
    Ok(())
}

async fn index_projects(pool: &AnyPool, index: &mut StoreIndex) -> Result<(), sqlx::Error> {
    let rows = sqlx::query(
        "SELECT p.source_uid, p.id, p.slug, (SELECT COUNT(*) FROM project_memberships m WHERE m.project_id = p.id) \
         FROM projects p WHERE p.source_uid IS NOT NULL",
    )
    .fetch_all(pool)
    .await?;
    for r in rows {
        index
            .projects
            .insert(r.get(0), (r.get(1), r.get(2), r.get(3)));
    }
    Ok(())
}

async fn index_project_memberships(
    pool: &AnyPool,
    index: &mut StoreIndex,
) -> Result<(), sqlx::Error> {
    let rows = sqlx::query(
        "SELECT source_uid, id, project_id FROM project_memberships WHERE source_uid IS NOT NULL",
    )
    .fetch_all(pool)
    .await?;
    for r in rows {
        index
            .project_memberships
            .insert(r.get(0), (r.get(1), r.get(2)));
    }
    Ok(())
}

/// The index after a write, from the index before it and the sources whose rows the write
/// changed: the containers (organizations, groups, projects, with their counts, which any row
/// may change) are read again, and of the rows that come one per object (memberships,
/// identities, resources, project memberships) only those of `sources`. `None` when the
/// store holds a different number of those rows than the result says: something else
/// removed rows too (a cascade, another writer), and only a full [`index`] will do.
pub(super) async fn index_after(
    pool: &AnyPool,
    backend: Backend,
    before: &StoreIndex,
    sources: &HashSet<&str>,
) -> Result<Option<StoreIndex>, sqlx::Error> {
    let mut index = StoreIndex::default();
    index_organizations(pool, &mut index).await?;
    index_groups(pool, &mut index).await?;
    index_projects(pool, &mut index).await?;
    index.memberships = without(&before.memberships, sources);
    index.identities = without(&before.identities, sources);
    index.resources = without(&before.resources, sources);
    index.project_memberships = without(&before.project_memberships, sources);
    let sources: Vec<&str> = sources.iter().copied().collect();
    // Each table's list names the chunk again: SQLite's parameters are positional.
    const TABLES: usize = 5;
    for chunk in sources.chunks(VALUES_PER_LIST) {
        let list = |k: usize| parameters(backend, k * chunk.len() + 1, chunk.len());
        let sql = format!(
            "SELECT 'membership', source_uid, id, organization_id FROM memberships WHERE source_uid IN ({}) \
             UNION ALL \
             SELECT 'membership', source_uid, id, organization_id FROM subject_memberships WHERE source_uid IN ({}) \
             UNION ALL \
             SELECT 'identity', source_uid, id, NULL FROM machine_identities WHERE source_uid IN ({}) \
             UNION ALL \
             SELECT 'resource', source_uid, id, NULL FROM org_resources WHERE source_uid IN ({}) \
             UNION ALL \
             SELECT 'project membership', source_uid, id, project_id FROM project_memberships WHERE source_uid IN ({})",
            list(0),
            list(1),
            list(2),
            list(3),
            list(4),
        );
        let mut query = sqlx::query(&sql);
        for _ in 0..TABLES {
            for s in chunk {
                query = query.bind(*s);
            }
        }
        for r in query.fetch_all(pool).await? {
            let (table, source, id) = (r.get::<String, _>(0), r.get(1), r.get(2));
            match table.as_str() {
                "membership" => {
                    index.memberships.insert(source, (id, r.get(3)));
                }
                "identity" => {
                    index.identities.insert(source, id);
                }
                "resource" => {
                    index.resources.insert(source, id);
                }
                _ => {
                    index.project_memberships.insert(source, (id, r.get(3)));
                }
            }
        }
    }
    let counts = sqlx::query(
        "SELECT (SELECT COUNT(*) FROM memberships WHERE source_uid IS NOT NULL) \
         + (SELECT COUNT(*) FROM subject_memberships WHERE source_uid IS NOT NULL), \
         (SELECT COUNT(*) FROM machine_identities WHERE source_uid IS NOT NULL), \
         (SELECT COUNT(*) FROM org_resources WHERE source_uid IS NOT NULL), \
         (SELECT COUNT(*) FROM project_memberships WHERE source_uid IS NOT NULL)",
    )
    .fetch_one(pool)
    .await?;
    let held = [
        index.memberships.len(),
        index.identities.len(),
        index.resources.len(),
        index.project_memberships.len(),
    ];
    let agree = held
        .iter()
        .enumerate()
        .all(|(i, held)| i64::try_from(*held) == Ok(counts.get::<i64, _>(i)));
    Ok(agree.then_some(index))
}

/// `map` without the entries of `sources`.
fn without<V: Clone>(map: &HashMap<String, V>, sources: &HashSet<&str>) -> HashMap<String, V> {
    map.iter()
        .filter(|(k, _)| !sources.contains(k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}
