//! Plans for what organizations own: groups (with their members), machine identities, and the
//! root's groups and identities added to sub-organizations. Same rules as the rest of a plan:
//! rows are keyed by their source, a row suborg did not create is a conflict unless adopted,
//! and nothing is touched when nothing changed.

use std::collections::{BTreeSet, HashMap, HashSet};

use sqlx::{AnyConnection, Row};

use super::desired::{Desired, DesiredGroupMember, DesiredOwned, DesiredSubjectMembership};
use super::plan::{
    Action, Change, Op, PlanError, Sourced, by_source, new_id, placeholders, row_for, sourced,
};
use super::{ApplyOptions, Backend};

/// The tables of this module. Their names are fixed here, never taken from input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Table {
    Groups,
    Identities,
    SubjectMemberships,
    Resources,
    Projects,
    ProjectMemberships,
}

impl Table {
    pub(super) fn name(self) -> &'static str {
        match self {
            Self::Groups => "groups",
            Self::Identities => "machine_identities",
            Self::SubjectMemberships => "subject_memberships",
            Self::Resources => "org_resources",
            Self::Projects => "projects",
            Self::ProjectMemberships => "project_memberships",
        }
    }

    fn kind(self) -> &'static str {
        match self {
            Self::Groups => "group",
            Self::Identities => "machine identity",
            Self::SubjectMemberships => "subject membership",
            Self::Resources => "resource",
            Self::Projects => "project",
            Self::ProjectMemberships => "project membership",
        }
    }
}

/// The change that removes a managed row no longer desired, or only lets go of it when its
/// deletion policy is `Orphan`.
pub(super) fn removal(
    table: Table,
    id: &str,
    source: &Option<String>,
    policy: &str,
    target: String,
) -> Change {
    let orphan = policy == "Orphan";
    let id = id.to_owned();
    Change::new(
        if orphan {
            Action::Orphan
        } else {
            Action::Delete
        },
        if table == Table::SubjectMemberships {
            "membership"
        } else {
            table.kind()
        },
        target,
        vec![],
        source.clone(),
        if orphan {
            Op::OrphanRow { table, id }
        } else {
            Op::DeleteRow { table, id }
        },
    )
}

/// A member of a group row: a user by email, or a group by row id.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(super) enum MemberRef {
    User(String),
    Group(String),
}

sourced!(OwnedRow, SubjectRow);

pub(super) struct OwnedRow {
    id: String,
    source_uid: Option<String>,
    managed: bool,
    organization_id: String,
    name: String,
    display_name: String,
    deletion_policy: String,
}

pub(super) struct SubjectRow {
    id: String,
    source_uid: Option<String>,
    managed: bool,
    organization_id: String,
    subject_id: String,
    roles: String,
    deletion_policy: String,
}

/// What the store holds of this module's tables.
pub(super) struct Existing {
    groups: Vec<OwnedRow>,
    identities: Vec<OwnedRow>,
    members: HashMap<String, BTreeSet<MemberRef>>,
    subjects: Vec<SubjectRow>,
}

async fn owned_rows(conn: &mut AnyConnection, table: Table) -> Result<Vec<OwnedRow>, sqlx::Error> {
    let sql = format!(
        "SELECT id, source_uid, managed, organization_id, name, display_name, deletion_policy FROM {}",
        table.name()
    );
    Ok(sqlx::query(&sql)
        .fetch_all(&mut *conn)
        .await?
        .into_iter()
        .map(|r| OwnedRow {
            id: r.get(0),
            source_uid: r.get(1),
            managed: r.get::<i64, _>(2) == 1,
            organization_id: r.get(3),
            name: r.get(4),
            display_name: r.get(5),
            deletion_policy: r.get(6),
        })
        .collect())
}

pub(super) async fn load(
    conn: &mut AnyConnection,
    backend: Backend,
) -> Result<Existing, sqlx::Error> {
    let groups = owned_rows(conn, Table::Groups).await?;
    let identities = owned_rows(conn, Table::Identities).await?;
    let mut members: HashMap<String, BTreeSet<MemberRef>> = HashMap::new();
    // The edges can number hundreds of thousands: from SQLite, one aggregated JSON value
    // (its driver hands rows over one at a time, each a hop between threads).
    let columns = "gm.group_id, u.email, gm.member_group_id";
    let from = "FROM group_members gm LEFT JOIN users u ON u.id = gm.user_id";
    let edges: Vec<(String, Option<String>, Option<String>)> = match backend {
        Backend::Sqlite => {
            let json: String = sqlx::query(&format!(
                "SELECT json_group_array(json_array({columns})) {from}"
            ))
            .fetch_one(&mut *conn)
            .await?
            .get(0);
            serde_json::from_str(&json).map_err(|e| sqlx::Error::Decode(Box::new(e)))?
        }
        Backend::Postgres => sqlx::query(&format!("SELECT {columns} {from}"))
            .fetch_all(&mut *conn)
            .await?
            .into_iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect(),
    };
    for (group, email, nested) in edges {
        let member = match (email, nested) {
            (Some(e), _) => MemberRef::User(e),
            (None, Some(g)) => MemberRef::Group(g),
            (None, None) => continue,
        };
        members.entry(group).or_default().insert(member);
    }
    let subjects = sqlx::query(
        "SELECT id, source_uid, managed, organization_id, COALESCE(group_id, identity_id), roles, deletion_policy FROM subject_memberships",
    )
    .fetch_all(&mut *conn)
    .await?
    .into_iter()
    .map(|r| SubjectRow {
        id: r.get(0),
        source_uid: r.get(1),
        managed: r.get::<i64, _>(2) == 1,
        organization_id: r.get(3),
        subject_id: r.get(4),
        roles: r.get(5),
        deletion_policy: r.get(6),
    })
    .collect();
    Ok(Existing {
        groups,
        identities,
        members,
        subjects,
    })
}

/// Organization row ids by source: `(id, root id)`; and how to name an organization for people.
pub(super) struct Orgs<'a> {
    pub(super) ids: &'a HashMap<String, (String, String)>,
    pub(super) names: &'a HashMap<String, String>,
}

impl Orgs<'_> {
    pub(super) fn find(
        &self,
        source: &str,
        what: &str,
        key: &str,
    ) -> Result<(String, String), PlanError> {
        self.ids.get(source).cloned().ok_or_else(|| {
            PlanError::Conflict(
                Some(key.to_owned()),
                format!("{what}: its organization is not in the desired state"),
            )
        })
    }

    pub(super) fn name(&self, id: &str) -> &str {
        self.names.get(id).map(String::as_str).unwrap_or("?")
    }
}

/// Plans groups or identities; returns the row id of each desired source.
#[allow(clippy::too_many_arguments)]
fn plan_owned(
    table: Table,
    rows: &[OwnedRow],
    desired: &[(&DesiredOwned, Vec<DesiredGroupMember>)],
    existing_members: &HashMap<String, BTreeSet<MemberRef>>,
    orgs: &Orgs<'_>,
    options: ApplyOptions,
    changes: &mut Vec<Change>,
) -> Result<HashMap<String, String>, PlanError> {
    let owners = by_source(rows);
    let by_name: HashMap<(&str, &str), &OwnedRow> = rows
        .iter()
        .map(|r| ((r.organization_id.as_str(), r.name.as_str()), r))
        .collect();
    let wanted: HashSet<&str> = desired.iter().map(|(o, _)| o.source_uid.as_str()).collect();
    let mut ids: HashMap<String, String> = HashMap::new();
    for (o, members) in desired {
        let (org_id, root_id) = orgs.find(&o.organization, &o.name, &o.source_uid)?;
        let target = format!("{} in {}", o.name, orgs.name(&org_id));
        let depth = i64::from(org_id != root_id);
        let refs: BTreeSet<MemberRef> = members
            .iter()
            .filter_map(|m| match m {
                DesiredGroupMember::User(e) => Some(MemberRef::User(e.clone())),
                DesiredGroupMember::Group(uid) => ids.get(uid).cloned().map(MemberRef::Group),
            })
            .collect();
        let key = (org_id.as_str(), o.name.as_str());
        match row_for(&owners, &by_name, &o.source_uid, &key, &wanted) {
            Some(row) => {
                row.writable_by(
                    &o.source_uid,
                    options,
                    &format!("{} {target}", table.kind()),
                )?;
                if row.organization_id != org_id {
                    return Err(PlanError::Conflict(
                        Some(o.source_uid.clone()),
                        format!(
                            "{} {target} belongs to another organization in the store: it stays with the organization that created it; delete the old one first",
                            table.kind()
                        ),
                    ));
                }
                let current = existing_members.get(&row.id).cloned().unwrap_or_default();
                let add: Vec<MemberRef> = refs.difference(&current).cloned().collect();
                let remove: Vec<MemberRef> = current.difference(&refs).cloned().collect();
                let fields = row.changed_fields(
                    &o.source_uid,
                    &[
                        ("displayName", row.display_name != o.display_name),
                        ("deletionPolicy", row.deletion_policy != o.deletion_policy),
                        ("members", !add.is_empty() || !remove.is_empty()),
                    ],
                );
                ids.insert(o.source_uid.clone(), row.id.clone());
                changes.extend(Change::update(
                    table.kind(),
                    target,
                    fields,
                    &o.source_uid,
                    || Op::UpdateOwned {
                        table,
                        id: row.id.clone(),
                        org_id,
                        org_depth: depth,
                        owned: (*o).clone(),
                        add,
                        remove,
                    },
                ));
            }
            None => {
                let id = new_id();
                ids.insert(o.source_uid.clone(), id.clone());
                changes.push(Change::create(
                    table.kind(),
                    target,
                    &o.source_uid,
                    Op::CreateOwned {
                        table,
                        id,
                        org_id,
                        root_id,
                        org_depth: depth,
                        owned: (*o).clone(),
                        members: refs.into_iter().collect(),
                    },
                ));
            }
        }
    }
    Ok(ids)
}

/// Plans everything of this module that `desired` wants, before any pruning.
pub(super) fn compute(
    existing: &Existing,
    desired: &Desired,
    orgs: &Orgs<'_>,
    options: ApplyOptions,
    changes: &mut Vec<Change>,
) -> Result<Kept, PlanError> {
    let groups: Vec<(&DesiredOwned, Vec<DesiredGroupMember>)> = desired
        .groups
        .iter()
        .map(|g| (&g.group, g.members.clone()))
        .collect();
    let group_ids = plan_owned(
        Table::Groups,
        &existing.groups,
        &groups,
        &existing.members,
        orgs,
        options,
        changes,
    )?;
    let identities: Vec<(&DesiredOwned, Vec<DesiredGroupMember>)> =
        desired.identities.iter().map(|i| (i, vec![])).collect();
    let identity_ids = plan_owned(
        Table::Identities,
        &existing.identities,
        &identities,
        &HashMap::new(),
        orgs,
        options,
        changes,
    )?;
    let subject_ids = plan_subjects(
        existing,
        desired,
        orgs,
        &group_ids,
        &identity_ids,
        options,
        changes,
    )?;
    Ok(Kept {
        groups: group_ids.values().cloned().collect(),
        identities: identity_ids.values().cloned().collect(),
        subjects: subject_ids,
        group_ids,
        identity_ids,
    })
}

/// Row ids the plan keeps; pruning removes the rest.
pub(super) struct Kept {
    groups: HashSet<String>,
    identities: HashSet<String>,
    subjects: HashSet<String>,
    /// Row ids of the desired groups by source.
    pub(super) group_ids: HashMap<String, String>,
    /// Row ids of the desired identities by source.
    pub(super) identity_ids: HashMap<String, String>,
}

fn plan_subjects(
    existing: &Existing,
    desired: &Desired,
    orgs: &Orgs<'_>,
    group_ids: &HashMap<String, String>,
    identity_ids: &HashMap<String, String>,
    options: ApplyOptions,
    changes: &mut Vec<Change>,
) -> Result<HashSet<String>, PlanError> {
    let owners = by_source(&existing.subjects);
    let by_pair: HashMap<(&str, &str), &SubjectRow> = existing
        .subjects
        .iter()
        .map(|r| ((r.organization_id.as_str(), r.subject_id.as_str()), r))
        .collect();
    let wanted: HashSet<&str> = desired
        .subject_memberships
        .iter()
        .map(|m| m.source_uid.as_str())
        .collect();
    let mut kept = HashSet::new();
    for m in &desired.subject_memberships {
        let (org_id, root_id) = orgs.find(&m.organization, &m.source_name, &m.source_uid)?;
        let subject_id = match m.kind {
            "Group" => group_ids.get(&m.subject),
            _ => identity_ids.get(&m.subject),
        }
        .cloned()
        .ok_or_else(|| {
            PlanError::Conflict(
                Some(m.source_uid.clone()),
                format!(
                    "membership {}: its {} is not in the desired state",
                    m.source_name, m.kind
                ),
            )
        })?;
        let target = format!("{} {} in {}", m.kind, m.subject_name, orgs.name(&org_id));
        let key = (org_id.as_str(), subject_id.as_str());
        match row_for(&owners, &by_pair, &m.source_uid, &key, &wanted) {
            Some(row) => {
                row.writable_by(&m.source_uid, options, &target)?;
                if row.organization_id != org_id || row.subject_id != subject_id {
                    return Err(PlanError::Conflict(
                        Some(m.source_uid.clone()),
                        format!(
                            "membership {} names another organization or subject than its row in the store: both are immutable; delete the old membership first",
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
                    "membership",
                    target,
                    fields,
                    &m.source_uid,
                    || Op::UpdateSubject {
                        id: row.id.clone(),
                        m: m.clone(),
                    },
                ));
            }
            None => {
                let id = new_id();
                kept.insert(id.clone());
                changes.push(Change::create(
                    "membership",
                    target,
                    &m.source_uid,
                    Op::CreateSubject {
                        id,
                        org_id,
                        root_id,
                        subject_id,
                        m: m.clone(),
                    },
                ));
            }
        }
    }
    Ok(kept)
}

/// Plans the removal (or orphaning) of managed rows that are no longer desired: subject
/// memberships first, then groups and identities.
pub(super) fn prune(existing: &Existing, kept: &Kept, orgs: &Orgs<'_>, changes: &mut Vec<Change>) {
    let mut gone = |table: Table, id: &str, source: &Option<String>, policy: &str, target| {
        changes.push(removal(table, id, source, policy, target));
    };
    let names: HashMap<&str, &str> = existing
        .groups
        .iter()
        .chain(&existing.identities)
        .map(|r| (r.id.as_str(), r.name.as_str()))
        .collect();
    for r in existing
        .subjects
        .iter()
        .filter(|r| r.managed && !kept.subjects.contains(&r.id))
    {
        let target = format!(
            "{} in {}",
            names.get(r.subject_id.as_str()).unwrap_or(&"?"),
            orgs.name(&r.organization_id)
        );
        gone(
            Table::SubjectMemberships,
            &r.id,
            &r.source_uid,
            &r.deletion_policy,
            target,
        );
    }
    for (table, rows, keep) in [
        (Table::Groups, &existing.groups, &kept.groups),
        (Table::Identities, &existing.identities, &kept.identities),
    ] {
        for r in rows.iter().filter(|r| r.managed && !keep.contains(&r.id)) {
            let target = format!("{} in {}", r.name, orgs.name(&r.organization_id));
            gone(table, &r.id, &r.source_uid, &r.deletion_policy, target);
        }
    }
}

async fn insert_members(
    conn: &mut AnyConnection,
    backend: Backend,
    group_id: &str,
    org_id: &str,
    org_depth: i64,
    members: &[MemberRef],
    users: &HashMap<String, String>,
) -> Result<(), sqlx::Error> {
    for chunk in members.chunks(1000) {
        let sql = format!(
            "INSERT INTO group_members (group_id, organization_id, org_depth, member_kind, user_id, member_group_id) VALUES {}",
            placeholders(backend, chunk.len(), 6, "")
        );
        let mut q = sqlx::query(&sql);
        for m in chunk {
            let (kind, user, group) = match m {
                MemberRef::User(email) => ("User", users.get(email).cloned(), None),
                MemberRef::Group(id) => ("Group", None, Some(id.clone())),
            };
            q = q
                .bind(group_id.to_owned())
                .bind(org_id.to_owned())
                .bind(org_depth)
                .bind(kind)
                .bind(user)
                .bind(group);
        }
        q.execute(&mut *conn).await?;
    }
    Ok(())
}

/// Carries out one of this module's operations.
pub(super) async fn execute(
    conn: &mut AnyConnection,
    op: &Op,
    now: i64,
    backend: Backend,
    users: &HashMap<String, String>,
) -> Result<(), sqlx::Error> {
    match op {
        Op::CreateOwned {
            table,
            id,
            org_id,
            root_id,
            org_depth,
            owned,
            members,
        } => {
            let sql = format!(
                "INSERT INTO {} (id, source_uid, source_name, managed, organization_id, root_id, name, display_name, deletion_policy, created_at, updated_at) \
                 VALUES ($1, $2, $3, 1, $4, $5, $6, $7, $8, $9, $9)",
                table.name()
            );
            sqlx::query(&sql)
                .bind(id)
                .bind(&owned.source_uid)
                .bind(&owned.source_name)
                .bind(org_id)
                .bind(root_id)
                .bind(&owned.name)
                .bind(&owned.display_name)
                .bind(owned.deletion_policy)
                .bind(now)
                .execute(&mut *conn)
                .await?;
            insert_members(conn, backend, id, org_id, *org_depth, members, users).await?;
        }
        Op::UpdateOwned {
            table,
            id,
            org_id,
            org_depth,
            owned,
            add,
            remove,
        } => {
            let sql = format!(
                "UPDATE {} SET source_uid = $2, source_name = $3, managed = 1, display_name = $4, deletion_policy = $5, updated_at = $6 WHERE id = $1",
                table.name()
            );
            sqlx::query(&sql)
                .bind(id)
                .bind(&owned.source_uid)
                .bind(&owned.source_name)
                .bind(&owned.display_name)
                .bind(owned.deletion_policy)
                .bind(now)
                .execute(&mut *conn)
                .await?;
            for m in remove {
                match m {
                    MemberRef::User(email) => {
                        sqlx::query("DELETE FROM group_members WHERE group_id = $1 AND user_id IN (SELECT id FROM users WHERE email = $2)")
                            .bind(id)
                            .bind(email)
                            .execute(&mut *conn)
                            .await?;
                    }
                    MemberRef::Group(g) => {
                        sqlx::query("DELETE FROM group_members WHERE group_id = $1 AND member_group_id = $2")
                            .bind(id)
                            .bind(g)
                            .execute(&mut *conn)
                            .await?;
                    }
                }
            }
            insert_members(conn, backend, id, org_id, *org_depth, add, users).await?;
        }
        Op::CreateSubject {
            id,
            org_id,
            root_id,
            subject_id,
            m,
        } => {
            let (group, identity) = if m.kind == "Group" {
                (Some(subject_id.clone()), None)
            } else {
                (None, Some(subject_id.clone()))
            };
            sqlx::query(
                "INSERT INTO subject_memberships (id, source_uid, source_name, managed, organization_id, root_id, org_depth, subject_kind, group_id, identity_id, roles, deletion_policy, created_at, updated_at) \
                 VALUES ($1, $2, $3, 1, $4, $5, 1, $6, $7, $8, $9, $10, $11, $11)",
            )
            .bind(id)
            .bind(&m.source_uid)
            .bind(&m.source_name)
            .bind(org_id)
            .bind(root_id)
            .bind(m.kind)
            .bind(group)
            .bind(identity)
            .bind(&m.roles)
            .bind(m.deletion_policy)
            .bind(now)
            .execute(&mut *conn)
            .await?;
        }
        Op::UpdateSubject { id, m } => {
            sqlx::query(
                "UPDATE subject_memberships SET source_uid = $2, source_name = $3, managed = 1, roles = $4, deletion_policy = $5, updated_at = $6 WHERE id = $1",
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
        Op::DeleteRow { table, id } => {
            sqlx::query(&format!("DELETE FROM {} WHERE id = $1", table.name()))
                .bind(id)
                .execute(&mut *conn)
                .await?;
        }
        Op::OrphanRow { table, id } => {
            sqlx::query(&format!(
                "UPDATE {} SET managed = 0, source_uid = NULL, updated_at = $2 WHERE id = $1",
                table.name()
            ))
            .bind(id)
            .bind(now)
            .execute(&mut *conn)
            .await?;
        }
        _ => unreachable!("organizations and memberships are executed by the plan"),
    }
    Ok(())
}

/// A subject membership as desired, for the plan's operations.
pub(super) type Subject = DesiredSubjectMembership;
