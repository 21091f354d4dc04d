//! Groups (with their members, `group_members`) and machine identities: the rows an
//! organization owns and its members can be given access through. Both tables have the same
//! shape and are planned by the same code; only groups have members.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use sqlx::{AnyConnection, Row};

use super::organizations::Orgs;
use crate::store::desired::{Desired, DesiredGroupMember, DesiredOwned};
use crate::store::dsn::Backend;
use crate::store::plan::{
    ApplyOptions, Change, MemberRef, Op, PlanError, Sourced, Table, by_source, fetch_all,
    keep_rows, new_id, placeholders, plan_each, removal, row_for, sourced, wanted,
};

sourced!(OwnedRow);

pub(crate) struct OwnedRow {
    id: String,
    source_uid: Option<String>,
    managed: bool,
    organization_id: String,
    name: String,
    display_name: String,
    deletion_policy: String,
}

/// What the store holds of groups and identities.
pub(crate) struct Existing {
    groups: Vec<OwnedRow>,
    identities: Vec<OwnedRow>,
    members: HashMap<String, BTreeSet<MemberRef>>,
}

impl Existing {
    /// See [`crate::store::plan::follow_policies`].
    pub(crate) fn follow_policies(&mut self, deleting: &HashMap<String, &'static str>) {
        crate::store::plan::follow_policies(&mut self.groups, deleting);
        crate::store::plan::follow_policies(&mut self.identities, deleting);
    }

    /// The `namespace/name` of each group and identity row, by row id.
    pub(crate) fn names(&self) -> HashMap<&str, &str> {
        self.groups
            .iter()
            .chain(&self.identities)
            .map(|r| (r.id.as_str(), r.name.as_str()))
            .collect()
    }
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

pub(crate) async fn load(
    conn: &mut AnyConnection,
    backend: Backend,
) -> Result<Existing, sqlx::Error> {
    let groups = owned_rows(conn, Table::Groups).await?;
    let identities = owned_rows(conn, Table::Identities).await?;
    // The edges can number hundreds of thousands.
    let edges: Vec<(String, Option<String>, Option<String>)> = fetch_all(
        conn,
        backend,
        "gm.group_id, u.email, gm.member_group_id",
        "FROM group_members gm LEFT JOIN users u ON u.id = gm.user_id",
    )
    .await?;
    let mut members: HashMap<String, BTreeSet<MemberRef>> = HashMap::new();
    for (group, email, nested) in edges {
        let member = match (email, nested) {
            (Some(e), _) => MemberRef::User(e),
            (None, Some(g)) => MemberRef::Group(g),
            (None, None) => continue,
        };
        members.entry(group).or_default().insert(member);
    }
    Ok(Existing {
        groups,
        identities,
        members,
    })
}

/// Row ids the plan keeps; pruning removes the rest.
pub(crate) struct Kept {
    groups: HashSet<String>,
    identities: HashSet<String>,
    /// Row ids of the desired groups by source.
    pub(crate) group_ids: HashMap<String, String>,
    /// Row ids of the desired identities by source.
    pub(crate) identity_ids: HashMap<String, String>,
}

/// Plans the desired groups, then identities.
pub(crate) fn plan(
    existing: &Existing,
    desired: &Desired,
    orgs: &Orgs<'_>,
    options: ApplyOptions,
    changes: &mut Vec<Change>,
) -> Result<Kept, PlanError> {
    let groups: Vec<(&DesiredOwned, &[DesiredGroupMember])> = desired
        .groups
        .iter()
        .map(|g| (&g.group, g.members.as_slice()))
        .collect();
    let group_ids = plan_table(
        Table::Groups,
        &existing.groups,
        &groups,
        &existing.members,
        &desired.kept,
        orgs,
        options,
        changes,
    )?;
    let identities: Vec<(&DesiredOwned, &[DesiredGroupMember])> =
        desired.identities.iter().map(|i| (i, &[][..])).collect();
    let identity_ids = plan_table(
        Table::Identities,
        &existing.identities,
        &identities,
        &HashMap::new(),
        &desired.kept,
        orgs,
        options,
        changes,
    )?;
    Ok(Kept {
        groups: group_ids.values().cloned().collect(),
        identities: identity_ids.values().cloned().collect(),
        group_ids,
        identity_ids,
    })
}

/// Plans groups or identities; returns the row id of each desired or kept source.
#[allow(clippy::too_many_arguments)]
fn plan_table(
    table: Table,
    rows: &[OwnedRow],
    desired: &[(&DesiredOwned, &[DesiredGroupMember])],
    existing_members: &HashMap<String, BTreeSet<MemberRef>>,
    kept: &BTreeMap<String, Option<&'static str>>,
    orgs: &Orgs<'_>,
    options: ApplyOptions,
    changes: &mut Vec<Change>,
) -> Result<HashMap<String, String>, PlanError> {
    let owners = by_source(rows);
    let by_name: HashMap<(&str, &str), &OwnedRow> = rows
        .iter()
        .map(|r| ((r.organization_id.as_str(), r.name.as_str()), r))
        .collect();
    let wanted = wanted(desired.iter().map(|(o, _)| o.source_uid.as_str()), kept);
    let mut ids: HashMap<String, String> = HashMap::new();
    plan_each(desired, |&(o, members)| {
        let (org_id, root_id) = orgs.find(&o.organization, &o.name, &o.source_uid)?;
        let target = format!("{} in {}", o.name, orgs.name(&org_id));
        let depth = i64::from(org_id != root_id);
        // Nested groups come first in the desired state, so they have their row id by now.
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
                let current = existing_members.get(&row.id);
                let change = update(table, row, o, org_id, depth, refs, current, target, options)?;
                ids.insert(o.source_uid.clone(), row.id.clone());
                changes.extend(change);
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
                        owned: o.clone(),
                        members: refs.into_iter().collect(),
                    },
                ));
            }
        }
        Ok(())
    })?;
    let target = |r: &OwnedRow| format!("{} in {}", r.name, orgs.name(&r.organization_id));
    let found = keep_rows(
        table,
        rows,
        kept,
        |s| ids.contains_key(s),
        |r| orgs.stays(&r.organization_id),
        target,
        changes,
    );
    for (source, r) in found {
        ids.insert(source.to_owned(), r.id.clone());
        // A group kept while refused keeps its row, not its members: access follows only
        // what is accepted.
        if existing_members.get(&r.id).is_some_and(|m| !m.is_empty()) {
            changes.extend(Change::update(
                table.kind(),
                target(r),
                vec!["members"],
                source,
                || Op::ClearMembers { id: r.id.clone() },
            ));
        }
    }
    Ok(ids)
}

/// The update of the stored `row` that `o` writes to, if anything changes: its values, and
/// the members `refs` where they differ from the `current` ones.
#[allow(clippy::too_many_arguments)]
fn update(
    table: Table,
    row: &OwnedRow,
    o: &DesiredOwned,
    org_id: String,
    depth: i64,
    refs: BTreeSet<MemberRef>,
    current: Option<&BTreeSet<MemberRef>>,
    target: String,
    options: ApplyOptions,
) -> Result<Option<Change>, PlanError> {
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
    let none = BTreeSet::new();
    let current = current.unwrap_or(&none);
    let add: Vec<MemberRef> = refs.difference(current).cloned().collect();
    let remove: Vec<MemberRef> = current.difference(&refs).cloned().collect();
    let fields = row.changed_fields(
        &o.source_uid,
        &[
            ("displayName", row.display_name != o.display_name),
            ("deletionPolicy", row.deletion_policy != o.deletion_policy),
            ("members", !add.is_empty() || !remove.is_empty()),
        ],
    );
    Ok(Change::update(
        table.kind(),
        target,
        fields,
        &o.source_uid,
        || Op::UpdateOwned {
            table,
            id: row.id.clone(),
            org_id,
            org_depth: depth,
            owned: o.clone(),
            add,
            remove,
        },
    ))
}

/// Plans the removal (or orphaning) of managed groups and identities no longer desired.
pub(crate) fn prune(existing: &Existing, kept: &Kept, orgs: &Orgs<'_>, changes: &mut Vec<Change>) {
    for (table, rows, keep) in [
        (Table::Groups, &existing.groups, &kept.groups),
        (Table::Identities, &existing.identities, &kept.identities),
    ] {
        for r in rows.iter().filter(|r| r.managed && !keep.contains(&r.id)) {
            let target = format!("{} in {}", r.name, orgs.name(&r.organization_id));
            changes.push(removal(
                table,
                &r.id,
                &r.source_uid,
                &r.deletion_policy,
                target,
            ));
        }
    }
}

/// Carries out the creation or update of a group or identity, with its members.
pub(crate) async fn execute(
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
            insert_members(conn, backend, id, org_id, *org_depth, members, users).await
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
            remove_members(conn, id, remove).await?;
            insert_members(conn, backend, id, org_id, *org_depth, add, users).await
        }
        _ => unreachable!("only group and identity operations are executed here"),
    }
}

/// Removes every member of the group `id` ([`Op::ClearMembers`]): no user is looked up.
pub(crate) async fn clear_members(conn: &mut AnyConnection, id: &str) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM group_members WHERE group_id = $1")
        .bind(id)
        .execute(&mut *conn)
        .await?;
    Ok(())
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
            let (kind, user, nested) = match m {
                MemberRef::User(email) => ("User", users.get(email).cloned(), None),
                MemberRef::Group(id) => ("Group", None, Some(id.clone())),
            };
            q = q
                .bind(group_id.to_owned())
                .bind(org_id.to_owned())
                .bind(org_depth)
                .bind(kind)
                .bind(user)
                .bind(nested);
        }
        q.execute(&mut *conn).await?;
    }
    Ok(())
}

async fn remove_members(
    conn: &mut AnyConnection,
    group_id: &str,
    members: &[MemberRef],
) -> Result<(), sqlx::Error> {
    for m in members {
        match m {
            MemberRef::User(email) => {
                sqlx::query("DELETE FROM group_members WHERE group_id = $1 AND user_id IN (SELECT id FROM users WHERE email = $2)")
                    .bind(group_id)
                    .bind(email)
                    .execute(&mut *conn)
                    .await?;
            }
            MemberRef::Group(g) => {
                sqlx::query(
                    "DELETE FROM group_members WHERE group_id = $1 AND member_group_id = $2",
                )
                .bind(group_id)
                .bind(g)
                .execute(&mut *conn)
                .await?;
            }
        }
    }
    Ok(())
}
