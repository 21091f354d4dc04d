//! Memberships of users in organizations. The most numerous rows: new ones are inserted many
//! to a statement, and the stored ones are read in one aggregated value from SQLite.

use std::collections::{HashMap, HashSet};

use sqlx::AnyConnection;

use super::organizations::Orgs;
use crate::store::desired::DesiredMembership;
use crate::store::dsn::Backend;
use crate::store::plan::{
    ApplyOptions, Change, Op, PlanError, Sourced, Table, Users, by_source, constraint_message,
    fetch_all, new_id, parameters, placeholders, plan_each, refused, removal, row_for, sourced,
};

sourced!(MembershipRow);

pub(crate) struct MembershipRow {
    id: String,
    source_uid: Option<String>,
    managed: bool,
    organization_id: String,
    email: String,
    roles: String,
    deletion_policy: String,
}

/// The columns a membership row is read from, and where from.
const COLUMNS: &str =
    "m.id, m.source_uid, m.managed, m.organization_id, u.email, m.roles, m.deletion_policy";
const FROM: &str = "FROM memberships m JOIN users u ON u.id = m.user_id";

/// A row of [`COLUMNS`], as read.
type Cells = (String, Option<String>, i64, String, String, String, String);

impl From<Cells> for MembershipRow {
    fn from(
        (id, source_uid, managed, organization_id, email, roles, deletion_policy): Cells,
    ) -> Self {
        MembershipRow {
            id,
            source_uid,
            managed: managed == 1,
            organization_id,
            email,
            roles,
            deletion_policy,
        }
    }
}

/// Every membership with its user's email.
pub(crate) async fn load(
    conn: &mut AnyConnection,
    backend: Backend,
) -> Result<Vec<MembershipRow>, sqlx::Error> {
    let rows: Vec<Cells> = fetch_all(conn, backend, COLUMNS, FROM).await?;
    Ok(rows.into_iter().map(MembershipRow::from).collect())
}

/// How many sources and emails a plan of changed memberships may name before a full load is
/// the cheaper way.
const CHANGED_AT_MOST: usize = 1000;

/// The memberships that changed since the last apply, when a plan looks at those alone: the
/// sources of the desired memberships that are new or differ, and of those no longer desired,
/// and the emails they name (a row of another source may hold the same user in the same
/// organization).
pub(crate) struct Changed<'d> {
    sources: HashSet<&'d str>,
    emails: HashSet<&'d str>,
}

impl<'d> Changed<'d> {
    /// What changed from `before` (what the last apply wrote) to `after`; `None` when so much
    /// changed that reading every row is as quick.
    pub(crate) fn between(
        before: &'d [DesiredMembership],
        after: &'d [DesiredMembership],
    ) -> Option<Self> {
        let old: HashMap<&str, &DesiredMembership> =
            before.iter().map(|m| (m.source_uid.as_str(), m)).collect();
        let mut changed = Self {
            sources: HashSet::new(),
            emails: HashSet::new(),
        };
        let mut kept = HashSet::with_capacity(after.len());
        for m in after {
            kept.insert(m.source_uid.as_str());
            if old.get(m.source_uid.as_str()) != Some(&m) {
                changed.sources.insert(&m.source_uid);
                changed.emails.insert(&m.email);
            }
        }
        for m in before
            .iter()
            .filter(|m| !kept.contains(m.source_uid.as_str()))
        {
            changed.sources.insert(&m.source_uid);
        }
        (changed.sources.len() + changed.emails.len() <= CHANGED_AT_MOST).then_some(changed)
    }
}

/// The memberships of `changed`'s sources, and every membership of its emails.
pub(crate) async fn load_changed(
    conn: &mut AnyConnection,
    backend: Backend,
    changed: &Changed<'_>,
) -> Result<Vec<MembershipRow>, sqlx::Error> {
    let sources: Vec<&str> = changed.sources.iter().copied().collect();
    let emails: Vec<&str> = changed.emails.iter().copied().collect();
    let mut wheres = Vec::new();
    if !sources.is_empty() {
        let list = parameters(backend, 1, sources.len());
        wheres.push(format!("m.source_uid IN ({list})"));
    }
    if !emails.is_empty() {
        let list = parameters(backend, sources.len() + 1, emails.len());
        wheres.push(format!("u.email IN ({list})"));
    }
    if wheres.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!("SELECT {COLUMNS} {FROM} WHERE {}", wheres.join(" OR "));
    let mut query = sqlx::query_as::<_, Cells>(&sql);
    for value in sources.iter().chain(&emails) {
        query = query.bind(*value);
    }
    let rows = query.fetch_all(&mut *conn).await?;
    Ok(rows.into_iter().map(MembershipRow::from).collect())
}

/// Plans the desired memberships (of `changed` alone, when given: the others are as the last
/// apply wrote them); returns their sources, which pruning keeps.
pub(crate) fn plan<'d>(
    rows: &[MembershipRow],
    desired: &'d [DesiredMembership],
    changed: Option<&Changed<'_>>,
    orgs: &Orgs<'_>,
    options: ApplyOptions,
    changes: &mut Vec<Change>,
) -> Result<HashSet<&'d str>, PlanError> {
    let owners = by_source(rows);
    let by_pair: HashMap<(&str, &str), &MembershipRow> = rows
        .iter()
        .map(|m| ((m.organization_id.as_str(), m.email.as_str()), m))
        .collect();
    let wanted: HashSet<&str> = desired.iter().map(|m| m.source_uid.as_str()).collect();
    let to_plan = desired
        .iter()
        .filter(|m| changed.is_none_or(|c| c.sources.contains(m.source_uid.as_str())));
    plan_each(to_plan, |m| {
        let Some((org_id, root_id)) = orgs.ids(&m.organization) else {
            return Err(PlanError::Conflict(
                Some(m.source_uid.clone()),
                format!(
                    "membership {}: its organization is not in the desired state",
                    m.source_name
                ),
            ));
        };
        let target = || format!("{} in {}", m.email, orgs.path(&m.organization, org_id));
        let key = (org_id.as_str(), m.email.as_str());
        match row_for(&owners, &by_pair, &m.source_uid, &key, &wanted) {
            Some(row) => {
                row.writable_by(
                    &m.source_uid,
                    options,
                    &format!("membership of {}", target()),
                )?;
                if row.organization_id != *org_id || row.email != m.email {
                    return Err(PlanError::Conflict(
                        Some(m.source_uid.clone()),
                        format!(
                            "membership {} names another organization or subject than its row in the store: both are immutable; delete the old membership first",
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
                // The target is built only for a change: most rows of a re-apply have none.
                if !fields.is_empty() {
                    changes.extend(Change::update(
                        "membership",
                        target(),
                        fields,
                        &m.source_uid,
                        || Op::UpdateMembership {
                            id: row.id.clone(),
                            m: m.clone(),
                        },
                    ));
                }
            }
            None => changes.push(Change::create(
                "membership",
                target(),
                &m.source_uid,
                Op::CreateMembership {
                    id: new_id(),
                    org_id: org_id.clone(),
                    root_id: root_id.clone(),
                    m: m.clone(),
                },
            )),
        }
        Ok(())
    })?;
    Ok(wanted)
}

/// Plans the removal of managed memberships no longer desired, of those in `rows` (all of
/// them, or those a plan of changes loaded). A row a desired membership took over (an update
/// in `changes`) stays, whatever its former source.
pub(crate) fn prune(
    rows: &[MembershipRow],
    wanted: &HashSet<&str>,
    paths: &HashMap<&str, String>,
    changes: &mut Vec<Change>,
) {
    let kept: HashSet<String> = changes
        .iter()
        .filter_map(|c| match &c.op {
            Op::UpdateMembership { id, .. } => Some(id.clone()),
            _ => None,
        })
        .collect();
    // A row that rule 9 removes by cascade in the same transaction (its user left the root),
    // or whose object still exists, is reported deleted whatever its policy: see
    // `apply::settle_orphans` and `apply::prune`.
    for row in rows.iter().filter(|r| r.managed) {
        let desired = row
            .source_uid
            .as_deref()
            .is_some_and(|s| wanted.contains(s));
        if desired || kept.contains(&row.id) {
            continue;
        }
        let target = format!(
            "{} in {}",
            row.email,
            paths
                .get(row.organization_id.as_str())
                .map_or("?", String::as_str)
        );
        changes.push(removal(
            Table::Memberships,
            &row.id,
            &row.source_uid,
            &row.deletion_policy,
            target,
        ));
    }
}

/// Carries out the update of a membership (new ones go in batches: [`insert_batch`]).
pub(crate) async fn execute(
    conn: &mut AnyConnection,
    op: &Op,
    now: i64,
) -> Result<(), sqlx::Error> {
    let Op::UpdateMembership { id, m } = op else {
        unreachable!("only membership updates are executed here")
    };
    sqlx::query(
        "UPDATE memberships SET source_uid = $2, source_name = $3, managed = 1, roles = $4, deletion_policy = $5, updated_at = $6 WHERE id = $1",
    )
    .bind(id)
    .bind(&m.source_uid)
    .bind(&m.source_name)
    .bind(&m.roles)
    .bind(m.deletion_policy)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Rows per multi-row INSERT: bulk applies are bound by round trips, not by rows. SQLite
/// allows 32,766 parameters a statement, PostgreSQL 65,535; a membership row has 10.
pub(crate) fn batch_rows(backend: Backend) -> usize {
    match backend {
        Backend::Sqlite => 1000,
        Backend::Postgres => 5000,
    }
}

/// Inserts a run of new memberships in a few statements. When the database refuses the run,
/// it is rolled back to where it started and inserted row by row, to name the row refused.
pub(crate) async fn insert_batch(
    conn: &mut AnyConnection,
    batch: &[Change],
    users: &mut Users,
    now: i64,
    backend: Backend,
) -> Result<(), PlanError> {
    sqlx::query("SAVEPOINT membership_batch")
        .execute(&mut *conn)
        .await?;
    let emails = batch.iter().filter_map(|c| match &c.op {
        Op::CreateMembership { m, .. } => Some(m.email.as_str()),
        _ => None,
    });
    let known = users.some(conn, backend, emails).await?;
    match insert(conn, batch, known, now, backend).await {
        Ok(()) => {}
        Err(e) if constraint_message(&e).is_some() => {
            sqlx::query("ROLLBACK TO SAVEPOINT membership_batch")
                .execute(&mut *conn)
                .await?;
            // The users the run created went with it.
            users.reload(conn).await?;
            let users = users.all(conn).await?;
            for change in batch {
                insert(conn, std::slice::from_ref(change), users, now, backend)
                    .await
                    .map_err(|e| refused(PlanError::Query(e), change))?;
            }
        }
        Err(e) => return Err(e.into()),
    }
    sqlx::query("RELEASE SAVEPOINT membership_batch")
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Inserts a run of new memberships, and the users they need, a few statements in all.
async fn insert(
    conn: &mut AnyConnection,
    batch: &[Change],
    users: &mut HashMap<String, String>,
    now: i64,
    backend: Backend,
) -> Result<(), sqlx::Error> {
    let mut new_users: Vec<(String, &str)> = Vec::new();
    for c in batch {
        if let Op::CreateMembership { m, .. } = &c.op
            && !users.contains_key(&m.email)
        {
            let id = new_id();
            users.insert(m.email.clone(), id.clone());
            new_users.push((id, m.email.as_str()));
        }
    }
    if !new_users.is_empty() {
        let sql = format!(
            "INSERT INTO users (id, email, created_at) VALUES {}",
            placeholders(backend, new_users.len(), 3, "")
        );
        let mut q = sqlx::query(&sql);
        for (id, email) in &new_users {
            q = q.bind(id.clone()).bind(email.to_string()).bind(now);
        }
        q.execute(&mut *conn).await?;
    }
    let sql = format!(
        "INSERT INTO memberships (id, source_uid, source_name, organization_id, root_id, user_id, roles, deletion_policy, created_at, updated_at, managed, subject_kind) VALUES {}",
        placeholders(backend, batch.len(), 10, ", 1, 'User'")
    );
    let mut q = sqlx::query(&sql);
    for c in batch {
        if let Op::CreateMembership {
            id,
            org_id,
            root_id,
            m,
        } = &c.op
        {
            q = q
                .bind(id.clone())
                .bind(m.source_uid.clone())
                .bind(m.source_name.clone())
                .bind(org_id.clone())
                .bind(root_id.clone())
                .bind(users[&m.email].clone())
                .bind(m.roles.clone())
                .bind(m.deletion_policy)
                .bind(now)
                .bind(now);
        }
    }
    q.execute(&mut *conn).await?;
    Ok(())
}
