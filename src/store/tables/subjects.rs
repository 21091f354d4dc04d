//! Subject memberships: a root's group or machine identity added to one of its
//! sub-organizations, with roles there, before it can be used there.

use std::collections::{HashMap, HashSet};

use sqlx::{AnyConnection, Row};

use super::organizations::Orgs;
use super::owned;
use crate::store::desired::DesiredSubjectMembership;
use crate::store::plan::{
    ApplyOptions, Change, Op, PlanError, Sourced, Table, by_source, new_id, plan_each, removal,
    row_for, sourced,
};

sourced!(SubjectRow);

pub(crate) struct SubjectRow {
    id: String,
    source_uid: Option<String>,
    managed: bool,
    organization_id: String,
    subject_id: String,
    roles: String,
    deletion_policy: String,
    /// A group's row (else an identity's).
    is_group: bool,
}

pub(crate) async fn load(conn: &mut AnyConnection) -> Result<Vec<SubjectRow>, sqlx::Error> {
    Ok(sqlx::query(
        "SELECT id, source_uid, managed, organization_id, COALESCE(group_id, identity_id), roles, deletion_policy, CASE WHEN group_id IS NULL THEN 0 ELSE 1 END FROM subject_memberships",
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
        is_group: r.get::<i64, _>(7) == 1,
    })
    .collect())
}

/// Plans the desired subject memberships; returns the row ids kept.
pub(crate) fn plan(
    rows: &[SubjectRow],
    desired: &[DesiredSubjectMembership],
    orgs: &Orgs<'_>,
    owned: &owned::Kept,
    options: ApplyOptions,
    changes: &mut Vec<Change>,
) -> Result<HashSet<String>, PlanError> {
    let owners = by_source(rows);
    let by_pair: HashMap<(&str, &str), &SubjectRow> = rows
        .iter()
        .map(|r| ((r.organization_id.as_str(), r.subject_id.as_str()), r))
        .collect();
    let wanted: HashSet<&str> = desired.iter().map(|m| m.source_uid.as_str()).collect();
    let mut kept = HashSet::new();
    plan_each(desired, |m| {
        let (org_id, root_id) = orgs.find(&m.organization, &m.source_name, &m.source_uid)?;
        let subject_id = subject_id(m, owned)?;
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
        Ok(())
    })?;
    Ok(kept)
}

/// The row id of the group or identity `m` adds.
fn subject_id(m: &DesiredSubjectMembership, owned: &owned::Kept) -> Result<String, PlanError> {
    match m.kind {
        "Group" => owned.group_ids.get(&m.subject),
        _ => owned.identity_ids.get(&m.subject),
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
    })
}

/// Plans the removal (or orphaning) of managed subject memberships no longer desired.
pub(crate) fn prune(
    rows: &[SubjectRow],
    kept: &HashSet<String>,
    owned: &owned::Existing,
    orgs: &Orgs<'_>,
    changes: &mut Vec<Change>,
) {
    let names = owned.names();
    for r in rows.iter().filter(|r| r.managed && !kept.contains(&r.id)) {
        let target = format!(
            "{} {} in {}",
            if r.is_group {
                "Group"
            } else {
                "MachineIdentity"
            },
            names.get(r.subject_id.as_str()).unwrap_or(&"?"),
            orgs.name(&r.organization_id)
        );
        changes.push(removal(
            Table::SubjectMemberships,
            &r.id,
            &r.source_uid,
            &r.deletion_policy,
            target,
        ));
    }
}

/// Carries out the creation or update of a subject membership.
pub(crate) async fn execute(
    conn: &mut AnyConnection,
    op: &Op,
    now: i64,
) -> Result<(), sqlx::Error> {
    match op {
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
        _ => unreachable!("only subject membership operations are executed here"),
    }
    Ok(())
}
