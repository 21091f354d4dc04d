//! Project memberships: a user, or a group or machine identity (the project organization's
//! own, or a root's added to it), with roles in one project. Each row sets exactly one of the
//! subject columns.

use std::collections::{HashMap, HashSet};

use sqlx::{AnyConnection, Row};

use super::owned;
use super::projects;
use crate::store::desired::{DesiredProject, DesiredProjectMembership, ProjectSubject};
use crate::store::plan::{
    ApplyOptions, Change, Op, PlanError, Sourced, Table, by_source, new_id, plan_each, removal,
    row_for, sourced,
};

sourced!(MemberRow);

pub(crate) struct MemberRow {
    id: String,
    source_uid: Option<String>,
    managed: bool,
    project_id: String,
    /// The subject column that is set, and its value (for users, the email).
    subject: (String, String),
    roles: String,
    deletion_policy: String,
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

pub(crate) async fn load(conn: &mut AnyConnection) -> Result<Vec<MemberRow>, sqlx::Error> {
    Ok(sqlx::query(
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
    .collect())
}

/// Plans the desired project memberships; returns the row ids kept.
pub(crate) fn plan(
    rows: &[MemberRow],
    desired: &[DesiredProjectMembership],
    projects: &[DesiredProject],
    project_ids: &HashMap<String, String>,
    owned: &owned::Kept,
    options: ApplyOptions,
    changes: &mut Vec<Change>,
) -> Result<HashSet<String>, PlanError> {
    let owners = by_source(rows);
    let by_subject: HashMap<(&str, &str, &str), &MemberRow> = rows
        .iter()
        .map(|r| {
            let (column, value) = &r.subject;
            ((r.project_id.as_str(), column.as_str(), value.as_str()), r)
        })
        .collect();
    let project_names: HashMap<&str, &str> = projects
        .iter()
        .map(|p| (p.source_uid.as_str(), p.name.as_str()))
        .collect();
    let wanted: HashSet<&str> = desired.iter().map(|m| m.source_uid.as_str()).collect();
    let mut kept = HashSet::new();
    plan_each(desired, |m| {
        let (project_id, column, value) = resolve(m, project_ids, owned)?;
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
                let subject = (column, value.as_str());
                let change = update(row, m, &project_id, subject, target, options)?;
                kept.insert(row.id.clone());
                changes.extend(change);
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
        Ok(())
    })?;
    Ok(kept)
}

/// The update of the stored `row` that `m` (in `project_id`, for `subject`: its column and
/// value) writes to, if anything changes.
fn update(
    row: &MemberRow,
    m: &DesiredProjectMembership,
    project_id: &str,
    (column, value): (&str, &str),
    target: String,
    options: ApplyOptions,
) -> Result<Option<Change>, PlanError> {
    row.writable_by(&m.source_uid, options, &target)?;
    if row.project_id != project_id || row.subject.0 != column || row.subject.1 != value {
        return Err(PlanError::Conflict(
            Some(m.source_uid.clone()),
            format!(
                "project membership {} names another project or subject than its row in the store: both are immutable; delete the old membership first",
                m.source_name
            ),
        ));
    }
    let fields = row.changed_fields(
        &m.source_uid,
        &[
            ("roles", row.roles != m.roles),
            ("deletionPolicy", row.deletion_policy != m.deletion_policy),
        ],
    );
    Ok(Change::update(
        "project membership",
        target,
        fields,
        &m.source_uid,
        || Op::UpdateProjectMember {
            id: row.id.clone(),
            m: m.clone(),
        },
    ))
}

/// The project row of `m`, its subject column and the value there. Users are keyed by email
/// (their row id may not exist yet); groups and identities by row id.
fn resolve(
    m: &DesiredProjectMembership,
    project_ids: &HashMap<String, String>,
    owned: &owned::Kept,
) -> Result<(String, &'static str, String), PlanError> {
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
    Ok((project_id, subject_column(&m.subject), value))
}

/// Plans the removal (or orphaning) of managed project memberships no longer desired, each
/// named as its creation was: `Kind subject in project namespace/name`.
pub(crate) fn prune(
    rows: &[MemberRow],
    kept: &HashSet<String>,
    projects: &projects::Existing,
    owned: &owned::Existing,
    changes: &mut Vec<Change>,
) {
    let project_names = projects.names();
    let subject_names = owned.names();
    for r in rows.iter().filter(|r| r.managed && !kept.contains(&r.id)) {
        let (column, value) = &r.subject;
        // A user's row holds the email; a group's or identity's, the row id of its object.
        let subject = match column.as_str() {
            "user_id" => value.as_str(),
            _ => subject_names.get(value.as_str()).copied().unwrap_or("?"),
        };
        changes.push(removal(
            Table::ProjectMemberships,
            &r.id,
            &r.source_uid,
            &r.deletion_policy,
            format!(
                "{} {subject} in project {}",
                subject_kind(column),
                project_names.get(r.project_id.as_str()).unwrap_or(&"?")
            ),
        ));
    }
}

/// Carries out the creation or update of a project membership.
pub(crate) async fn execute(
    conn: &mut AnyConnection,
    op: &Op,
    now: i64,
    users: &HashMap<String, String>,
) -> Result<(), sqlx::Error> {
    match op {
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
        _ => unreachable!("only project membership operations are executed here"),
    }
    Ok(())
}
