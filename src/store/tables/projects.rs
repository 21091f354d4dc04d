//! Projects, with the app connections they use (`project_connections`) and their gateway:
//! scoped to the organization that created them, never moved to another.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use sqlx::{AnyConnection, Row};

use super::organizations::Orgs;
use super::resources::same_org_ref;
use crate::store::desired::DesiredProject;
use crate::store::plan::{
    ApplyOptions, Change, Op, PlanError, Sourced, Table, by_source, held_by_another, keep_ids,
    new_id, plan_each, removal, row_for, sourced, wanted,
};

sourced!(ProjectRow);

pub(crate) struct ProjectRow {
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

/// What the store holds of projects.
pub(crate) struct Existing {
    projects: Vec<ProjectRow>,
    /// Project row id → the connections it uses, by row id.
    connections: HashMap<String, BTreeSet<String>>,
}

impl Existing {
    /// See [`crate::store::plan::follow_policies`].
    pub(crate) fn follow_policies(&mut self, deleting: &HashMap<String, &'static str>) {
        crate::store::plan::follow_policies(&mut self.projects, deleting);
    }

    /// The `namespace/name` of each project row, by row id.
    pub(crate) fn names(&self) -> HashMap<&str, &str> {
        self.projects
            .iter()
            .map(|p| (p.id.as_str(), p.name.as_str()))
            .collect()
    }
}

pub(crate) async fn load(conn: &mut AnyConnection) -> Result<Existing, sqlx::Error> {
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
    Ok(Existing {
        projects,
        connections,
    })
}

/// Plans the desired projects; returns the row id of each by source.
pub(crate) fn plan(
    existing: &Existing,
    desired: &[DesiredProject],
    kept: &BTreeMap<String, Option<&'static str>>,
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
    let wanted = wanted(desired.iter().map(|p| p.source_uid.as_str()), kept);
    let mut ids: HashMap<String, String> = HashMap::new();
    plan_each(desired, |p| {
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
        if !owners.contains_key(p.source_uid.as_str())
            && let Some(holder) =
                held_by_another(&by_slug, &key, &p.source_uid, &wanted, |r| r.name == p.name)
        {
            return Err(PlanError::Conflict(
                Some(p.source_uid.clone()),
                format!(
                    "project {target}: its slug is held in the store by Project {}, whose row does not pass to this one: delete that project (and wait for it to go) or choose another slug",
                    holder.name
                ),
            ));
        }
        match row_for(&owners, &by_slug, &p.source_uid, &key, &wanted) {
            Some(row) => {
                let used = existing.connections.get(&row.id);
                let planned = Planned {
                    org_id,
                    gateway_id,
                    uses,
                    target,
                };
                let change = update(row, p, planned, used, orgs, options)?;
                ids.insert(p.source_uid.clone(), row.id.clone());
                changes.extend(change);
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
        Ok(())
    })?;
    keep_ids(
        Table::Projects,
        rows,
        kept,
        &mut ids,
        |r| orgs.stays(&r.organization_id),
        |r| format!("{} in {}", r.slug, orgs.name(&r.organization_id)),
        changes,
    );
    Ok(ids)
}

/// What a desired project resolves to: its organization's row, its gateway's and connections'
/// rows, and its name for people.
struct Planned {
    org_id: String,
    gateway_id: Option<String>,
    uses: BTreeSet<String>,
    target: String,
}

/// The update of the stored `row` that `p` writes to, if anything changes; `used` are the
/// connections the row uses now.
fn update(
    row: &ProjectRow,
    p: &DesiredProject,
    planned: Planned,
    used: Option<&BTreeSet<String>>,
    orgs: &Orgs<'_>,
    options: ApplyOptions,
) -> Result<Option<Change>, PlanError> {
    let Planned {
        org_id,
        gateway_id,
        uses,
        target,
    } = planned;
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
    super::organizations::slug_kept("project", &target, &p.source_uid, &row.slug, &p.slug)?;
    let none = BTreeSet::new();
    let used = used.unwrap_or(&none);
    let add: Vec<String> = uses.difference(used).cloned().collect();
    let remove: Vec<String> = used.difference(&uses).cloned().collect();
    let fields = row.changed_fields(
        &p.source_uid,
        &[
            ("name", row.name != p.name),
            ("displayName", row.display_name != p.display_name),
            ("description", row.description != p.description),
            ("gatewayRef", row.gateway_id != gateway_id),
            ("appConnections", !add.is_empty() || !remove.is_empty()),
            ("deletionPolicy", row.deletion_policy != p.deletion_policy),
        ],
    );
    Ok(Change::update(
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
    ))
}

/// Plans the removal (or orphaning) of managed projects no longer desired.
pub(crate) fn prune(
    existing: &Existing,
    kept: &HashSet<String>,
    orgs: &Orgs<'_>,
    changes: &mut Vec<Change>,
) {
    for r in existing
        .projects
        .iter()
        .filter(|r| r.managed && !kept.contains(&r.id))
    {
        changes.push(removal(
            Table::Projects,
            &r.id,
            &r.source_uid,
            &r.deletion_policy,
            format!("{} in {}", r.slug, orgs.name(&r.organization_id)),
        ));
    }
}

/// Carries out the creation or update of a project, with the connections it uses.
pub(crate) async fn execute(
    conn: &mut AnyConnection,
    op: &Op,
    now: i64,
) -> Result<(), sqlx::Error> {
    match op {
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
            link_connections(conn, id, org_id, connections).await
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
            unlink_connections(conn, id, remove).await?;
            link_connections(conn, id, org_id, add).await
        }
        _ => unreachable!("only project operations are executed here"),
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

async fn unlink_connections(
    conn: &mut AnyConnection,
    project_id: &str,
    connections: &[String],
) -> Result<(), sqlx::Error> {
    for c in connections {
        sqlx::query("DELETE FROM project_connections WHERE project_id = $1 AND connection_id = $2")
            .bind(project_id)
            .bind(c)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}
