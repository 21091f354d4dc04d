//! Plans for projects and what they use: app connections, gateways and relays, the projects
//! with the connections they use, and project memberships. Same rules as the rest of a plan:
//! rows are keyed by their source, a row suborg did not create is a conflict unless adopted, an
//! object never moves its row to another organization or project, and nothing is touched when
//! nothing changed.

use std::collections::{BTreeSet, HashMap, HashSet};

use sqlx::{AnyConnection, Row};

use super::desired::{
    Desired, DesiredProject, DesiredProjectMembership, DesiredResource, ProjectSubject,
};
use super::owned::{self, Orgs, Table, removal};
use super::plan::{Change, Op, PlanError, Sourced, by_source, new_id, row_for, sourced};
use super::{ApplyOptions, Backend};

sourced!(ResourceRow, ProjectRow, MemberRow);

pub(super) struct ResourceRow {
    id: String,
    source_uid: Option<String>,
    managed: bool,
    organization_id: String,
    kind: String,
    name: String,
    display_name: String,
    app: Option<String>,
    config: String,
    credentials: Option<String>,
    relay_id: Option<String>,
    deletion_policy: String,
}

pub(super) struct ProjectRow {
    id: String,
    source_uid: Option<String>,
    managed: bool,
    organization_id: String,
    name: String,
    slug: String,
    display_name: String,
    description: Option<String>,
    gateway_id: Option<String>,
    deletion_policy: String,
}

pub(super) struct MemberRow {
    id: String,
    source_uid: Option<String>,
    managed: bool,
    project_id: String,
    /// The subject column that is set, and its value (for users, the email).
    subject: (String, String),
    roles: String,
    deletion_policy: String,
}

/// What the store holds of this module's tables.
pub(super) struct Existing {
    resources: Vec<ResourceRow>,
    projects: Vec<ProjectRow>,
    connections: HashMap<String, BTreeSet<String>>,
    members: Vec<MemberRow>,
}

/// The subject columns of `project_memberships`, fixed here, never taken from input.
const SUBJECT_COLUMNS: [&str; 5] = [
    "user_id",
    "group_id",
    "shared_group_id",
    "identity_id",
    "shared_identity_id",
];

/// The column of `project_memberships` that holds `s`.
fn subject_column(s: &ProjectSubject) -> &'static str {
    match s {
        ProjectSubject::User(_) => "user_id",
        ProjectSubject::Own("Group", _) => "group_id",
        ProjectSubject::Shared("Group", _) => "shared_group_id",
        ProjectSubject::Own(..) => "identity_id",
        ProjectSubject::Shared(..) => "shared_identity_id",
    }
}

fn subject_kind(column: &str) -> &'static str {
    match column {
        "user_id" => "User",
        "group_id" | "shared_group_id" => "Group",
        _ => "MachineIdentity",
    }
}

pub(super) async fn load(conn: &mut AnyConnection) -> Result<Existing, sqlx::Error> {
    let resources = sqlx::query(
        "SELECT id, source_uid, managed, organization_id, kind, name, display_name, app, config, credentials, relay_id, deletion_policy FROM org_resources",
    )
    .fetch_all(&mut *conn)
    .await?
    .into_iter()
    .map(|r| ResourceRow {
        id: r.get(0),
        source_uid: r.get(1),
        managed: r.get::<i64, _>(2) == 1,
        organization_id: r.get(3),
        kind: r.get(4),
        name: r.get(5),
        display_name: r.get(6),
        app: r.get(7),
        config: r.get(8),
        credentials: r.get(9),
        relay_id: r.get(10),
        deletion_policy: r.get(11),
    })
    .collect();
    let projects = sqlx::query(
        "SELECT id, source_uid, managed, organization_id, name, slug, display_name, description, gateway_id, deletion_policy FROM projects",
    )
    .fetch_all(&mut *conn)
    .await?
    .into_iter()
    .map(|r| ProjectRow {
        id: r.get(0),
        source_uid: r.get(1),
        managed: r.get::<i64, _>(2) == 1,
        organization_id: r.get(3),
        name: r.get(4),
        slug: r.get(5),
        display_name: r.get(6),
        description: r.get(7),
        gateway_id: r.get(8),
        deletion_policy: r.get(9),
    })
    .collect();
    let mut connections: HashMap<String, BTreeSet<String>> = HashMap::new();
    for r in sqlx::query("SELECT project_id, connection_id FROM project_connections")
        .fetch_all(&mut *conn)
        .await?
    {
        connections.entry(r.get(0)).or_default().insert(r.get(1));
    }
    let members = sqlx::query(
        "SELECT pm.id, pm.source_uid, pm.managed, pm.project_id, u.email, pm.group_id, pm.shared_group_id, pm.identity_id, pm.shared_identity_id, pm.roles, pm.deletion_policy \
         FROM project_memberships pm LEFT JOIN users u ON u.id = pm.user_id",
    )
    .fetch_all(&mut *conn)
    .await?
    .into_iter()
    .map(|r| {
        let subject = SUBJECT_COLUMNS
            .iter()
            .enumerate()
            .find_map(|(k, column)| {
                r.get::<Option<String>, _>(4 + k)
                    .map(|v| ((*column).to_owned(), v))
            })
            .unwrap_or_default();
        MemberRow {
            id: r.get(0),
            source_uid: r.get(1),
            managed: r.get::<i64, _>(2) == 1,
            project_id: r.get(3),
            subject,
            roles: r.get(9),
            deletion_policy: r.get(10),
        }
    })
    .collect();
    Ok(Existing {
        resources,
        projects,
        connections,
        members,
    })
}

/// Row ids the plan keeps; pruning removes the rest.
pub(super) struct Kept {
    resources: HashSet<String>,
    projects: HashSet<String>,
    members: HashSet<String>,
}

/// Plans everything of this module that `desired` wants, before any pruning.
pub(super) fn compute(
    existing: &Existing,
    desired: &Desired,
    orgs: &Orgs<'_>,
    owned: &owned::Kept,
    options: ApplyOptions,
    changes: &mut Vec<Change>,
) -> Result<Kept, PlanError> {
    let resource_ids = plan_resources(existing, &desired.resources, orgs, options, changes)?;
    let project_ids = plan_projects(
        existing,
        &desired.projects,
        orgs,
        &resource_ids,
        options,
        changes,
    )?;
    let members = plan_members(
        existing,
        &desired.project_memberships,
        &desired.projects,
        &project_ids,
        owned,
        options,
        changes,
    )?;
    Ok(Kept {
        resources: resource_ids.into_values().collect(),
        projects: project_ids.into_values().collect(),
        members,
    })
}

fn plan_resources(
    existing: &Existing,
    desired: &[DesiredResource],
    orgs: &Orgs<'_>,
    options: ApplyOptions,
    changes: &mut Vec<Change>,
) -> Result<HashMap<String, String>, PlanError> {
    let rows = &existing.resources;
    let owners = by_source(rows);
    let by_name: HashMap<(&str, &str, &str), &ResourceRow> = rows
        .iter()
        .map(|r| {
            (
                (r.organization_id.as_str(), r.kind.as_str(), r.name.as_str()),
                r,
            )
        })
        .collect();
    let wanted: HashSet<&str> = desired.iter().map(|r| r.source_uid.as_str()).collect();
    let mut ids: HashMap<String, String> = HashMap::new();
    for r in desired {
        let (org_id, root_id) = orgs.find(&r.organization, &r.name, &r.source_uid)?;
        let target = format!("{} {} in {}", r.kind, r.name, orgs.name(&org_id));
        // Relays come first in the desired state, so a gateway's relay has its id by now.
        let relay_id = r.relay.as_ref().and_then(|uid| ids.get(uid).cloned());
        let key = (org_id.as_str(), r.kind, r.name.as_str());
        match row_for(&owners, &by_name, &r.source_uid, &key, &wanted) {
            Some(row) => {
                row.writable_by(&r.source_uid, options, &target)?;
                if row.organization_id != org_id || row.kind != r.kind {
                    return Err(PlanError::Conflict(
                        Some(r.source_uid.clone()),
                        format!(
                            "{target}: its row in the store belongs to another organization; app connections, gateways and relays stay with the organization that created them, so delete the old object first"
                        ),
                    ));
                }
                ids.insert(r.source_uid.clone(), row.id.clone());
                let fields = row.changed_fields(
                    &r.source_uid,
                    &[
                        ("displayName", row.display_name != r.display_name),
                        ("app", row.app != r.app),
                        ("config", row.config != r.config),
                        ("credentialsRef", row.credentials != r.credentials),
                        ("relayRef", row.relay_id != relay_id),
                        ("deletionPolicy", row.deletion_policy != r.deletion_policy),
                    ],
                );
                changes.extend(Change::update(
                    "resource",
                    target,
                    fields,
                    &r.source_uid,
                    || Op::UpdateResource {
                        id: row.id.clone(),
                        org_id,
                        relay_id,
                        r: r.clone(),
                    },
                ));
            }
            None => {
                let id = new_id();
                ids.insert(r.source_uid.clone(), id.clone());
                changes.push(Change::create(
                    "resource",
                    target,
                    &r.source_uid,
                    Op::CreateResource {
                        id,
                        org_id,
                        root_id,
                        relay_id,
                        r: r.clone(),
                    },
                ));
            }
        }
    }
    Ok(ids)
}

fn plan_projects(
    existing: &Existing,
    desired: &[DesiredProject],
    orgs: &Orgs<'_>,
    resource_ids: &HashMap<String, String>,
    options: ApplyOptions,
    changes: &mut Vec<Change>,
) -> Result<HashMap<String, String>, PlanError> {
    let rows = &existing.projects;
    let owners = by_source(rows);
    let by_slug: HashMap<(&str, &str), &ProjectRow> = rows
        .iter()
        .map(|r| ((r.organization_id.as_str(), r.slug.as_str()), r))
        .collect();
    let wanted: HashSet<&str> = desired.iter().map(|p| p.source_uid.as_str()).collect();
    let mut ids: HashMap<String, String> = HashMap::new();
    for p in desired {
        let (org_id, root_id) = orgs.find(&p.organization, &p.name, &p.source_uid)?;
        let target = format!("{} in {}", p.slug, orgs.name(&org_id));
        let gateway_id = p
            .gateway
            .as_ref()
            .and_then(|uid| resource_ids.get(uid).cloned());
        let uses: BTreeSet<String> = p
            .connections
            .iter()
            .filter_map(|uid| resource_ids.get(uid).cloned())
            .collect();
        let key = (org_id.as_str(), p.slug.as_str());
        match row_for(&owners, &by_slug, &p.source_uid, &key, &wanted) {
            Some(row) => {
                row.writable_by(&p.source_uid, options, &format!("project {target}"))?;
                if row.organization_id != org_id {
                    return Err(PlanError::Conflict(
                        Some(p.source_uid.clone()),
                        format!(
                            "project {} is in {} in the store, not {}: a project stays in the organization that created it (spec.organizationRef is immutable); delete it and create a new Project in the other organization",
                            p.name,
                            orgs.name(&row.organization_id),
                            orgs.name(&org_id)
                        ),
                    ));
                }
                ids.insert(p.source_uid.clone(), row.id.clone());
                let current = existing
                    .connections
                    .get(&row.id)
                    .cloned()
                    .unwrap_or_default();
                let add: Vec<String> = uses.difference(&current).cloned().collect();
                let remove: Vec<String> = current.difference(&uses).cloned().collect();
                let fields = row.changed_fields(
                    &p.source_uid,
                    &[
                        ("name", row.name != p.name),
                        ("slug", row.slug != p.slug),
                        ("displayName", row.display_name != p.display_name),
                        ("description", row.description != p.description),
                        ("gatewayRef", row.gateway_id != gateway_id),
                        ("appConnections", !add.is_empty() || !remove.is_empty()),
                        ("deletionPolicy", row.deletion_policy != p.deletion_policy),
                    ],
                );
                changes.extend(Change::update(
                    "project",
                    target,
                    fields,
                    &p.source_uid,
                    || Op::UpdateProject {
                        id: row.id.clone(),
                        org_id,
                        gateway_id,
                        add,
                        remove,
                        p: p.clone(),
                    },
                ));
            }
            None => {
                let id = new_id();
                ids.insert(p.source_uid.clone(), id.clone());
                changes.push(Change::create(
                    "project",
                    target,
                    &p.source_uid,
                    Op::CreateProject {
                        id,
                        org_id,
                        root_id,
                        gateway_id,
                        connections: uses.into_iter().collect(),
                        p: p.clone(),
                    },
                ));
            }
        }
    }
    Ok(ids)
}

fn plan_members(
    existing: &Existing,
    desired: &[DesiredProjectMembership],
    projects: &[DesiredProject],
    project_ids: &HashMap<String, String>,
    owned: &owned::Kept,
    options: ApplyOptions,
    changes: &mut Vec<Change>,
) -> Result<HashSet<String>, PlanError> {
    let rows = &existing.members;
    let owners = by_source(rows);
    let by_subject: HashMap<(&str, &str, &str), &MemberRow> = rows
        .iter()
        .map(|r| {
            (
                (
                    r.project_id.as_str(),
                    r.subject.0.as_str(),
                    r.subject.1.as_str(),
                ),
                r,
            )
        })
        .collect();
    let project_names: HashMap<&str, &str> = projects
        .iter()
        .map(|p| (p.source_uid.as_str(), p.name.as_str()))
        .collect();
    let wanted: HashSet<&str> = desired.iter().map(|m| m.source_uid.as_str()).collect();
    let mut kept = HashSet::new();
    for m in desired {
        let missing = |what: &str| {
            PlanError::Conflict(
                Some(m.source_uid.clone()),
                format!(
                    "project membership {}: its {what} is not in the desired state",
                    m.source_name
                ),
            )
        };
        let project_id = project_ids
            .get(&m.project)
            .cloned()
            .ok_or_else(|| missing("project"))?;
        let column = subject_column(&m.subject);
        // Users are keyed by email (their row id may not exist yet); groups and identities by
        // row id.
        let value = match &m.subject {
            ProjectSubject::User(email) => email.clone(),
            ProjectSubject::Own("Group", uid) | ProjectSubject::Shared("Group", uid) => owned
                .group_ids
                .get(uid)
                .cloned()
                .ok_or_else(|| missing("group"))?,
            ProjectSubject::Own(_, uid) | ProjectSubject::Shared(_, uid) => owned
                .identity_ids
                .get(uid)
                .cloned()
                .ok_or_else(|| missing("machine identity"))?,
        };
        let target = format!(
            "{} {} in project {}",
            subject_kind(column),
            m.subject_name,
            project_names
                .get(m.project.as_str())
                .copied()
                .unwrap_or(m.project.as_str())
        );
        let key = (project_id.as_str(), column, value.as_str());
        match row_for(&owners, &by_subject, &m.source_uid, &key, &wanted) {
            Some(row) => {
                row.writable_by(&m.source_uid, options, &target)?;
                if row.project_id != project_id || row.subject != (column.to_owned(), value.clone())
                {
                    return Err(PlanError::Conflict(
                        Some(m.source_uid.clone()),
                        format!(
                            "project membership {} names another project or subject than its row in the store: both are immutable; delete the old membership first",
                            m.source_name
                        ),
                    ));
                }
                kept.insert(row.id.clone());
                let fields = row.changed_fields(
                    &m.source_uid,
                    &[
                        ("roles", row.roles != m.roles),
                        ("deletionPolicy", row.deletion_policy != m.deletion_policy),
                    ],
                );
                changes.extend(Change::update(
                    "project membership",
                    target,
                    fields,
                    &m.source_uid,
                    || Op::UpdateProjectMember {
                        id: row.id.clone(),
                        m: m.clone(),
                    },
                ));
            }
            None => {
                let id = new_id();
                kept.insert(id.clone());
                changes.push(Change::create(
                    "project membership",
                    target,
                    &m.source_uid,
                    Op::CreateProjectMember {
                        id,
                        project_id,
                        column,
                        value,
                        m: m.clone(),
                    },
                ));
            }
        }
    }
    Ok(kept)
}

/// Plans the removal (or orphaning) of managed rows no longer desired: project memberships,
/// then projects, then what projects use (gateways before their relays).
pub(super) fn prune(existing: &Existing, kept: &Kept, orgs: &Orgs<'_>, changes: &mut Vec<Change>) {
    let mut gone = |table: Table, id: &str, source: &Option<String>, policy: &str, target| {
        changes.push(removal(table, id, source, policy, target));
    };
    let project_names: HashMap<&str, &str> = existing
        .projects
        .iter()
        .map(|p| (p.id.as_str(), p.name.as_str()))
        .collect();
    for r in existing
        .members
        .iter()
        .filter(|r| r.managed && !kept.members.contains(&r.id))
    {
        gone(
            Table::ProjectMemberships,
            &r.id,
            &r.source_uid,
            &r.deletion_policy,
            format!(
                "{} in project {}",
                r.subject.1,
                project_names.get(r.project_id.as_str()).unwrap_or(&"?")
            ),
        );
    }
    for r in existing
        .projects
        .iter()
        .filter(|r| r.managed && !kept.projects.contains(&r.id))
    {
        gone(
            Table::Projects,
            &r.id,
            &r.source_uid,
            &r.deletion_policy,
            format!("{} in {}", r.slug, orgs.name(&r.organization_id)),
        );
    }
    for kind in ["AppConnection", "Gateway", "Relay"] {
        for r in existing
            .resources
            .iter()
            .filter(|r| r.kind == kind && r.managed && !kept.resources.contains(&r.id))
        {
            gone(
                Table::Resources,
                &r.id,
                &r.source_uid,
                &r.deletion_policy,
                format!("{} {} in {}", r.kind, r.name, orgs.name(&r.organization_id)),
            );
        }
    }
}

async fn link_connections(
    conn: &mut AnyConnection,
    project_id: &str,
    org_id: &str,
    connections: &[String],
) -> Result<(), sqlx::Error> {
    for c in connections {
        sqlx::query(
            "INSERT INTO project_connections (project_id, organization_id, connection_id, connection_kind) VALUES ($1, $2, $3, 'AppConnection')",
        )
        .bind(project_id)
        .bind(org_id)
        .bind(c)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// The three columns of a same-organization reference (`relay_*`, `gateway_*`), all set or
/// all NULL.
fn same_org_ref(
    id: &Option<String>,
    org_id: &str,
    kind: &'static str,
) -> (Option<String>, Option<String>, Option<&'static str>) {
    match id {
        Some(id) => (Some(id.clone()), Some(org_id.to_owned()), Some(kind)),
        None => (None, None, None),
    }
}

/// Carries out one of this module's operations.
pub(super) async fn execute(
    conn: &mut AnyConnection,
    op: &Op,
    now: i64,
    _backend: Backend,
    users: &HashMap<String, String>,
) -> Result<(), sqlx::Error> {
    match op {
        Op::CreateResource {
            id,
            org_id,
            root_id,
            relay_id,
            r,
        } => {
            let (relay, relay_org, relay_kind) = same_org_ref(relay_id, org_id, "Relay");
            sqlx::query(
                "INSERT INTO org_resources (id, source_uid, source_name, managed, organization_id, root_id, kind, name, display_name, app, config, credentials, relay_id, relay_org_id, relay_kind, deletion_policy, created_at, updated_at) \
                 VALUES ($1, $2, $3, 1, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $16)",
            )
            .bind(id)
            .bind(&r.source_uid)
            .bind(&r.source_name)
            .bind(org_id)
            .bind(root_id)
            .bind(r.kind)
            .bind(&r.name)
            .bind(&r.display_name)
            .bind(r.app.clone())
            .bind(&r.config)
            .bind(r.credentials.clone())
            .bind(relay)
            .bind(relay_org)
            .bind(relay_kind)
            .bind(r.deletion_policy)
            .bind(now)
            .execute(&mut *conn)
            .await?;
        }
        Op::UpdateResource {
            id,
            org_id,
            relay_id,
            r,
        } => {
            let (relay, relay_org, relay_kind) = same_org_ref(relay_id, org_id, "Relay");
            sqlx::query(
                "UPDATE org_resources SET source_uid = $2, source_name = $3, managed = 1, name = $4, display_name = $5, app = $6, config = $7, credentials = $8, relay_id = $9, relay_org_id = $10, relay_kind = $11, deletion_policy = $12, updated_at = $13 WHERE id = $1",
            )
            .bind(id)
            .bind(&r.source_uid)
            .bind(&r.source_name)
            .bind(&r.name)
            .bind(&r.display_name)
            .bind(r.app.clone())
            .bind(&r.config)
            .bind(r.credentials.clone())
            .bind(relay)
            .bind(relay_org)
            .bind(relay_kind)
            .bind(r.deletion_policy)
            .bind(now)
            .execute(&mut *conn)
            .await?;
        }
        Op::CreateProject {
            id,
            org_id,
            root_id,
            gateway_id,
            connections,
            p,
        } => {
            let (gateway, gateway_org, gateway_kind) = same_org_ref(gateway_id, org_id, "Gateway");
            sqlx::query(
                "INSERT INTO projects (id, source_uid, source_name, managed, organization_id, root_id, name, slug, display_name, description, gateway_id, gateway_org_id, gateway_kind, deletion_policy, created_at, updated_at) \
                 VALUES ($1, $2, $3, 1, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $14)",
            )
            .bind(id)
            .bind(&p.source_uid)
            .bind(&p.source_name)
            .bind(org_id)
            .bind(root_id)
            .bind(&p.name)
            .bind(&p.slug)
            .bind(&p.display_name)
            .bind(p.description.clone())
            .bind(gateway)
            .bind(gateway_org)
            .bind(gateway_kind)
            .bind(p.deletion_policy)
            .bind(now)
            .execute(&mut *conn)
            .await?;
            link_connections(conn, id, org_id, connections).await?;
        }
        Op::UpdateProject {
            id,
            org_id,
            gateway_id,
            add,
            remove,
            p,
        } => {
            let (gateway, gateway_org, gateway_kind) = same_org_ref(gateway_id, org_id, "Gateway");
            sqlx::query(
                "UPDATE projects SET source_uid = $2, source_name = $3, managed = 1, name = $4, slug = $5, display_name = $6, description = $7, gateway_id = $8, gateway_org_id = $9, gateway_kind = $10, deletion_policy = $11, updated_at = $12 WHERE id = $1",
            )
            .bind(id)
            .bind(&p.source_uid)
            .bind(&p.source_name)
            .bind(&p.name)
            .bind(&p.slug)
            .bind(&p.display_name)
            .bind(p.description.clone())
            .bind(gateway)
            .bind(gateway_org)
            .bind(gateway_kind)
            .bind(p.deletion_policy)
            .bind(now)
            .execute(&mut *conn)
            .await?;
            for c in remove {
                sqlx::query(
                    "DELETE FROM project_connections WHERE project_id = $1 AND connection_id = $2",
                )
                .bind(id)
                .bind(c)
                .execute(&mut *conn)
                .await?;
            }
            link_connections(conn, id, org_id, add).await?;
        }
        Op::CreateProjectMember {
            id,
            project_id,
            column,
            value,
            m,
        } => {
            let subject = if *column == "user_id" {
                users.get(value).cloned().unwrap_or_default()
            } else {
                value.clone()
            };
            // `column` is one of SUBJECT_COLUMNS, chosen by `subject_column`, never input.
            let sql = format!(
                "INSERT INTO project_memberships (id, source_uid, source_name, managed, project_id, organization_id, subject_kind, {column}, roles, deletion_policy, created_at, updated_at) \
                 SELECT $1, $2, $3, 1, p.id, p.organization_id, $4, $5, $6, $7, $8, $8 FROM projects p WHERE p.id = $9"
            );
            sqlx::query(&sql)
                .bind(id)
                .bind(&m.source_uid)
                .bind(&m.source_name)
                .bind(subject_kind(column))
                .bind(subject)
                .bind(&m.roles)
                .bind(m.deletion_policy)
                .bind(now)
                .bind(project_id)
                .execute(&mut *conn)
                .await?;
        }
        Op::UpdateProjectMember { id, m } => {
            sqlx::query(
                "UPDATE project_memberships SET source_uid = $2, source_name = $3, managed = 1, roles = $4, deletion_policy = $5, updated_at = $6 WHERE id = $1",
            )
            .bind(id)
            .bind(&m.source_uid)
            .bind(&m.source_name)
            .bind(&m.roles)
            .bind(m.deletion_policy)
            .bind(now)
            .execute(&mut *conn)
            .await?;
        }
        _ => unreachable!("only project operations are executed here"),
    }
    Ok(())
}
