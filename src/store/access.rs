//! Answers about projects and reach: the projects of one organization, and everything one user
//! can reach and through what. Each is a handful of index lookups whatever the store's size: a
//! user's memberships through the (root, user) key of each root, their groups through the
//! (organization, user) key of each organization they are in, nested groups by one recursive
//! query, and their project memberships through indexes of that table. No index was added to
//! the tables bulk applies write most (memberships, group members): each would cost every
//! apply for a lookup the existing keys already serve.

use std::collections::{BTreeSet, HashMap, VecDeque};

use k8s_openapi::jiff::Timestamp;
use sqlx::{AnyConnection, AnyPool, Row};

use super::desired::{ADMIN_SOURCE, INVITE_SOURCE};
use super::dsn::Backend;
// The store's one use of the layers above it (with `damage`'s slug pattern): stored roles are
// the API's `RoleBinding` as JSON, and which are in effect now is the domain's rule, the same
// code the controller's statuses run, so `suborg get access` cannot disagree with them.
use crate::api::RoleBinding;
use crate::domain::temporary;

/// A project as [`super::Store::projects`] lists it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProjectInfo {
    /// Slug, unique in the organization.
    pub slug: String,
    /// Display name.
    pub display_name: String,
    /// `namespace/name` of the Kubernetes object.
    pub name: String,
    /// The gateway's `namespace/name`, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gateway: Option<String>,
    /// The app connections' `namespace/name`, sorted.
    pub app_connections: Vec<String>,
    /// Project memberships.
    pub members: i64,
}

/// An app connection, gateway or relay as [`super::Store::resources`] lists it: its
/// configuration and the Secret it names, never a credential.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceInfo {
    /// `AppConnection`, `Gateway` or `Relay`.
    pub kind: String,
    /// `namespace/name` of the Kubernetes object.
    pub name: String,
    /// Display name.
    pub display_name: String,
    /// The app of a connection.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app: Option<String>,
    /// A gateway's relay, `namespace/name`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub relay: Option<String>,
    /// The Secret holding the credentials, `namespace/name`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credentials_secret: Option<String>,
    /// Non-secret settings.
    pub config: serde_json::Value,
}

/// One place a user can reach, and how.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AccessEntry {
    /// `ROOT` or `ROOT/SUB`.
    pub organization: String,
    /// The project's slug, for project access.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    /// The roles in effect now.
    pub roles: Vec<String>,
    /// Through what: `membership NAME`, `invite NAME`, or `group NS/NAME` (with the chain of
    /// nested groups that leads to it).
    pub via: String,
}

const ORG_PATH: &str = "CASE WHEN p.slug IS NULL THEN o.slug ELSE p.slug || '/' || o.slug END";

/// The projects of one organization (its own only: a root's list leaves out what its
/// sub-organizations created).
pub(super) async fn projects(
    pool: &AnyPool,
    org_id: &str,
) -> Result<Vec<ProjectInfo>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT pr.id, pr.slug, pr.display_name, pr.name, g.name, \
           (SELECT COUNT(*) FROM project_memberships pm WHERE pm.project_id = pr.id) \
         FROM projects pr LEFT JOIN org_resources g ON g.id = pr.gateway_id \
         WHERE pr.organization_id = $1 ORDER BY pr.slug",
    )
    .bind(org_id)
    .fetch_all(pool)
    .await?;
    let mut uses: HashMap<String, Vec<String>> = HashMap::new();
    for r in sqlx::query(
        "SELECT pc.project_id, c.name FROM project_connections pc JOIN org_resources c ON c.id = pc.connection_id \
         WHERE pc.organization_id = $1",
    )
    .bind(org_id)
    .fetch_all(pool)
    .await?
    {
        uses.entry(r.get(0)).or_default().push(r.get(1));
    }
    Ok(rows
        .into_iter()
        .map(|r| {
            let id: String = r.get(0);
            let mut app_connections = uses.remove(&id).unwrap_or_default();
            app_connections.sort();
            ProjectInfo {
                slug: r.get(1),
                display_name: r.get(2),
                name: r.get(3),
                gateway: r.get(4),
                app_connections,
                members: r.get(5),
            }
        })
        .collect())
}

/// A subquery listing the strings of the JSON array bound as parameter `n`: the ids a lookup
/// already found go back in as one parameter, whatever their number.
fn json_list(backend: Backend, n: usize) -> String {
    match backend {
        Backend::Sqlite => format!("(SELECT value FROM json_each(${n}))"),
        Backend::Postgres => format!("(SELECT jsonb_array_elements_text(CAST(${n} AS jsonb)))"),
    }
}

/// The app connections, gateways and relays of one organization (its own: they are never
/// inherited).
pub(super) async fn resources(
    pool: &AnyPool,
    org_id: &str,
) -> Result<Vec<ResourceInfo>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT r.kind, r.name, r.display_name, r.app, relay.name, r.credentials, r.config \
         FROM org_resources r LEFT JOIN org_resources relay ON relay.id = r.relay_id \
         WHERE r.organization_id = $1 ORDER BY r.kind, r.name",
    )
    .bind(org_id)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| {
            let secret = r
                .get::<Option<String>, _>(5)
                .and_then(|c| serde_json::from_str::<serde_json::Value>(&c).ok())
                .map(|c| {
                    format!(
                        "{}/{}",
                        c["namespace"].as_str().unwrap_or_default(),
                        c["name"].as_str().unwrap_or_default()
                    )
                });
            ResourceInfo {
                kind: r.get(0),
                name: r.get(1),
                display_name: r.get(2),
                app: r.get(3),
                relay: r.get(4),
                credentials_secret: secret,
                config: serde_json::from_str(&r.get::<String, _>(6))
                    .unwrap_or(serde_json::Value::Null),
            }
        })
        .collect())
}

/// When a row's roles were granted, for a `duration` without `start`: the row's creation
/// (milliseconds), as the controller counts from its object's.
pub(super) fn row_granted_at(created_at_ms: i64, now: Timestamp) -> Timestamp {
    Timestamp::from_millisecond(created_at_ms).unwrap_or(now)
}

/// The roles of a row that are in effect at `now`; `None` when none grants access (all
/// pending, or `no-access`).
pub(super) fn in_effect(roles: &str, created_at_ms: i64, now: Timestamp) -> Option<Vec<String>> {
    let roles: Vec<RoleBinding> = serde_json::from_str(roles).ok()?;
    let active = temporary::active_roles(&roles, row_granted_at(created_at_ms, now), now);
    if active.is_empty() || active.iter().all(|r| r == "no-access") {
        None
    } else {
        Some(active)
    }
}

/// Everything the user `email` can reach at `now`: organizations through memberships (and a
/// root's groups added to a sub-organization), projects through project memberships of the
/// user or of any group that contains them (nested groups followed). `None` when the store
/// has no such user. Three statements whatever the store's size: the user with their
/// memberships; the groups that contain them with the edges that lead there; what those
/// groups and the user were given.
pub(super) async fn access(
    pool: &AnyPool,
    backend: Backend,
    email: &str,
    now: Timestamp,
) -> Result<Option<Vec<AccessEntry>>, sqlx::Error> {
    let email = crate::domain::slug::normalize_email(email);
    // One connection for the three statements: one health check instead of three, and the
    // statements stay prepared on it.
    let mut conn = pool.acquire().await?;
    let Some(user) = memberships(&mut conn, &email, now).await? else {
        return Ok(None);
    };
    let mut out = user.entries;
    let chain = groups(&mut conn, backend, &user.id, &user.organizations).await?;
    grants(&mut conn, backend, &user.id, &chain, now, &mut out).await?;
    // One line per route; the same route found twice (a group reached two ways) once.
    let unique: BTreeSet<AccessEntry> = out.into_iter().collect();
    let mut out: Vec<AccessEntry> = unique.into_iter().collect();
    out.sort_by(|a, b| {
        (&a.organization, &a.project, &a.via).cmp(&(&b.organization, &b.project, &b.via))
    });
    Ok(Some(out))
}

/// A user found by email, with what their memberships give.
struct User {
    id: String,
    /// The organizations they are a member of, as a JSON list of row ids.
    organizations: String,
    entries: Vec<AccessEntry>,
}

/// The user `email` and the organizations their memberships reach at `now`; `None` when the
/// store has no such user.
async fn memberships(
    conn: &mut AnyConnection,
    email: &str,
    now: Timestamp,
) -> Result<Option<User>, sqlx::Error> {
    let rows = sqlx::query(&format!(
        "SELECT u.id, {ORG_PATH}, m.roles, m.created_at, m.source_name, m.source_uid, m.organization_id \
         FROM users u LEFT JOIN memberships m ON m.user_id = u.id \
           AND m.root_id IN (SELECT id FROM organizations WHERE depth = 0) \
         LEFT JOIN organizations o ON o.id = m.organization_id \
         LEFT JOIN organizations p ON p.id = o.parent_id WHERE u.email = $1"
    ))
    .bind(email)
    .fetch_all(&mut *conn)
    .await?;
    let Some(first) = rows.first() else {
        return Ok(None);
    };
    let id: String = first.get(0);
    let mut entries = Vec::new();
    let via_membership = |source: Option<String>, uid: Option<String>| {
        let name = source.unwrap_or_else(|| "-".into());
        match uid {
            Some(u) if u.contains(INVITE_SOURCE) => format!("invite (ProjectMembership {name})"),
            Some(u) if u.contains(ADMIN_SOURCE) => format!("admin of SubOrganization {name}"),
            Some(_) => format!("membership {name}"),
            None => "membership (not managed by suborg)".into(),
        }
    };
    for r in &rows {
        let Some(roles) = r.get::<Option<String>, _>(2) else {
            continue; // a user row without memberships
        };
        if let Some(roles) = in_effect(&roles, r.get(3), now) {
            entries.push(AccessEntry {
                organization: r.get(1),
                project: None,
                roles,
                via: via_membership(r.get(4), r.get(5)),
            });
        }
    }
    let organizations: Vec<String> = rows
        .iter()
        .filter_map(|r| r.get::<Option<String>, _>(6))
        .collect();
    let organizations = serde_json::to_string(&organizations).expect("strings serialize");
    Ok(Some(User {
        id,
        organizations,
        entries,
    }))
}

/// Every group that contains the user, in the `organizations` they are a member of, and the
/// shortest chain that leads to each (`group NAME`, or `group NAME (through …)`), by row id.
async fn groups(
    conn: &mut AnyConnection,
    backend: Backend,
    user_id: &str,
    organizations: &str,
) -> Result<HashMap<String, String>, sqlx::Error> {
    // Directly (no `child`) or through a nested group (`child`, the group it contains on the
    // way).
    let reach = format!(
        "WITH RECURSIVE reach(id, child) AS ( \
           SELECT group_id, CAST(NULL AS TEXT) FROM group_members \
             WHERE organization_id IN {} AND user_id = $1 \
           UNION SELECT gm.group_id, gm.member_group_id FROM group_members gm \
             JOIN reach r ON gm.member_group_id = r.id)",
        json_list(backend, 2)
    );
    let mut names: HashMap<String, String> = HashMap::new();
    let mut direct: Vec<String> = Vec::new();
    let mut inside: HashMap<String, Vec<String>> = HashMap::new();
    for r in sqlx::query(&format!(
        "{reach} SELECT r.id, r.child, g.name FROM reach r JOIN groups g ON g.id = r.id"
    ))
    .bind(user_id)
    .bind(organizations)
    .fetch_all(&mut *conn)
    .await?
    {
        let id: String = r.get(0);
        match r.get::<Option<String>, _>(1) {
            None => direct.push(id.clone()),
            Some(child) => inside.entry(child).or_default().push(id.clone()),
        }
        names.insert(id, r.get(2));
    }
    Ok(chains(direct, &inside, &names))
}

/// The shortest chain to each group, from the groups that list the user (`direct`), up through
/// the groups each is `inside`.
fn chains(
    mut direct: Vec<String>,
    inside: &HashMap<String, Vec<String>>,
    names: &HashMap<String, String>,
) -> HashMap<String, String> {
    let mut chain: HashMap<String, String> = HashMap::new();
    direct.sort_by(|a, b| names[a].cmp(&names[b]));
    direct.dedup();
    let mut queue: VecDeque<String> = VecDeque::new();
    for g in direct {
        chain.insert(g.clone(), format!("group {}", names[&g]));
        queue.push_back(g);
    }
    while let Some(g) = queue.pop_front() {
        let mut parents = inside.get(&g).cloned().unwrap_or_default();
        parents.sort();
        for p in parents {
            if !chain.contains_key(&p)
                && let Some(name) = names.get(&p)
            {
                let via = format!(
                    "group {name} (through {})",
                    chain[&g].trim_start_matches("group ")
                );
                chain.insert(p.clone(), via);
                queue.push_back(p);
            }
        }
    }
    chain
}

/// What the groups of `chain` were given where they were added, and the projects of the user
/// and of those groups, in effect at `now`, added to `out`.
async fn grants(
    conn: &mut AnyConnection,
    backend: Backend,
    user_id: &str,
    chain: &HashMap<String, String>,
    now: Timestamp,
    out: &mut Vec<AccessEntry>,
) -> Result<(), sqlx::Error> {
    // The groups are known by now: they go in as one JSON list, which keeps the statement
    // simple for the planner (a recursive subquery here made PostgreSQL plan hash joins over
    // whole tables).
    let ids: Vec<&String> = chain.keys().collect();
    let ids = serde_json::to_string(&ids).expect("strings serialize");
    let groups = json_list(backend, 2);
    let projects = "SELECT {ORG_PATH}, pr.slug, pm.roles, pm.created_at, pm.source_name, pm.user_id, \
           COALESCE(pm.group_id, pm.shared_group_id) \
         FROM project_memberships pm JOIN projects pr ON pr.id = pm.project_id \
         JOIN organizations o ON o.id = pr.organization_id LEFT JOIN organizations p ON p.id = o.parent_id"
        .replace("{ORG_PATH}", ORG_PATH);
    let sql = if chain.is_empty() {
        format!("{projects} WHERE pm.user_id = $1")
    } else {
        format!(
            "SELECT {ORG_PATH}, CAST(NULL AS TEXT), s.roles, s.created_at, CAST(NULL AS TEXT), CAST(NULL AS TEXT), s.group_id \
             FROM subject_memberships s JOIN organizations o ON o.id = s.organization_id \
             LEFT JOIN organizations p ON p.id = o.parent_id WHERE s.group_id IN {groups} \
             UNION ALL {projects} WHERE pm.user_id = $1 \
             UNION ALL {projects} WHERE pm.group_id IN {groups} \
             UNION ALL {projects} WHERE pm.shared_group_id IN {groups}"
        )
    };
    let mut q = sqlx::query(&sql).bind(user_id);
    if !chain.is_empty() {
        q = q.bind(ids);
    }
    for r in q.fetch_all(&mut *conn).await? {
        let Some(roles) = in_effect(&r.get::<String, _>(2), r.get(3), now) else {
            continue;
        };
        let project: Option<String> = r.get(1);
        let via = match (r.get::<Option<String>, _>(5), r.get::<Option<String>, _>(6)) {
            (Some(_), _) => format!(
                "project membership {}",
                r.get::<Option<String>, _>(4).unwrap_or_else(|| "-".into())
            ),
            (None, Some(group)) => chain.get(&group).cloned().unwrap_or_default(),
            (None, None) => continue,
        };
        out.push(AccessEntry {
            organization: r.get(0),
            project,
            roles,
            via,
        });
    }
    Ok(())
}
