//! A desired state carried into the store: every table's plan in the order their references
//! need (organizations, memberships, groups and identities, their subject memberships,
//! resources, projects, project memberships), pruning in the reverse order, and the plan's
//! execution in one transaction.

use std::collections::{HashMap, HashSet};

use sqlx::AnyConnection;

use super::desired::Desired;
use super::dsn::Backend;
use super::plan::{self, ApplyOptions, Change, Op, Plan, PlanError, Users, now_millis, refused};
use super::tables::{
    memberships, organizations, owned, project_members, projects, resources, subjects,
};

/// Compares the desired state with the store.
///
/// With `before`, what the last apply on this store wrote, the memberships (the most numerous
/// rows) are compared with it and only those that changed are read and planned: the others
/// are taken to be as written. Anything written around suborg since is corrected by the next
/// plan without `before`.
pub(crate) async fn compute(
    conn: &mut AnyConnection,
    desired: &Desired,
    before: Option<&Desired>,
    options: ApplyOptions,
    backend: Backend,
) -> Result<Plan, PlanError> {
    let changed =
        before.and_then(|b| memberships::Changed::between(&b.memberships, &desired.memberships));
    let mut stored = Stored::load(conn, backend, changed.as_ref()).await?;
    stored.follow_policies(&desired.deleting);
    let mut changes = Vec::new();
    let kept = plan_tables(&stored, desired, changed.as_ref(), options, &mut changes)?;
    if options.prune {
        prune(&stored, kept, &desired.live, &mut changes);
    }
    Ok(Plan { changes })
}

/// The rows of every table a plan compares the desired state with.
struct Stored {
    orgs: Vec<organizations::OrgRow>,
    memberships: Vec<memberships::MembershipRow>,
    owned: owned::Existing,
    subjects: Vec<subjects::SubjectRow>,
    resources: Vec<resources::ResourceRow>,
    projects: projects::Existing,
    members: Vec<project_members::MemberRow>,
}

impl Stored {
    async fn load(
        conn: &mut AnyConnection,
        backend: Backend,
        changed: Option<&memberships::Changed<'_>>,
    ) -> Result<Self, sqlx::Error> {
        let orgs = organizations::load(conn).await?;
        let memberships = match changed {
            Some(changed) => memberships::load_changed(conn, backend, changed).await?,
            None => memberships::load(conn, backend).await?,
        };
        Ok(Self {
            orgs,
            memberships,
            owned: owned::load(conn, backend).await?,
            subjects: subjects::load(conn).await?,
            resources: resources::load(conn).await?,
            projects: projects::load(conn).await?,
            members: project_members::load(conn).await?,
        })
    }

    /// See [`plan::follow_policies`].
    fn follow_policies(&mut self, deleting: &HashMap<String, &'static str>) {
        plan::follow_policies(&mut self.orgs, deleting);
        plan::follow_policies(&mut self.memberships, deleting);
        self.owned.follow_policies(deleting);
        plan::follow_policies(&mut self.subjects, deleting);
        plan::follow_policies(&mut self.resources, deleting);
        self.projects.follow_policies(deleting);
        plan::follow_policies(&mut self.members, deleting);
    }
}

/// What each table's plan keeps, by source or row id: pruning removes the rest.
struct Kept<'d> {
    orgs: organizations::Orgs<'d>,
    memberships: HashSet<&'d str>,
    owned: owned::Kept,
    subjects: HashSet<String>,
    resources: HashMap<String, String>,
    projects: HashMap<String, String>,
    members: HashSet<String>,
}

/// Plans every table, each after those its rows refer to.
fn plan_tables<'d>(
    stored: &Stored,
    desired: &'d Desired,
    changed: Option<&memberships::Changed<'_>>,
    options: ApplyOptions,
    changes: &mut Vec<Change>,
) -> Result<Kept<'d>, PlanError> {
    let orgs = organizations::plan(
        &stored.orgs,
        &desired.organizations,
        &desired.kept,
        options,
        changes,
    )?;
    let memberships = memberships::plan(
        &stored.memberships,
        &desired.memberships,
        changed,
        &orgs,
        options,
        changes,
    )?;
    let owned = owned::plan(&stored.owned, desired, &orgs, options, changes)?;
    let subjects = subjects::plan(
        &stored.subjects,
        &desired.subject_memberships,
        &orgs,
        &owned,
        options,
        changes,
    )?;
    let resources = resources::plan(
        &stored.resources,
        &desired.resources,
        &desired.kept,
        &orgs,
        options,
        changes,
    )?;
    let projects = projects::plan(
        &stored.projects,
        &desired.projects,
        &desired.kept,
        &orgs,
        &resources,
        options,
        changes,
    )?;
    let members = project_members::plan(
        &stored.members,
        &desired.project_memberships,
        &desired.projects,
        &projects,
        &owned,
        options,
        changes,
    )?;
    Ok(Kept {
        orgs,
        memberships,
        owned,
        subjects,
        resources,
        projects,
        members,
    })
}

/// Plans the removal of what is no longer desired, what uses a row before the row: the
/// database would refuse the row's removal otherwise. A row of a `live` object is deleted
/// whatever its policy (see [`Desired::live`]); organizations of live objects are desired or
/// kept, never pruned.
fn prune(stored: &Stored, kept: Kept<'_>, live: &HashSet<String>, changes: &mut Vec<Change>) {
    let first = changes.len();
    let orgs = &kept.orgs;
    project_members::prune(
        &stored.members,
        &kept.members,
        &stored.projects,
        &stored.owned,
        changes,
    );
    let projects = kept.projects.into_values().collect();
    projects::prune(&stored.projects, &projects, orgs, changes);
    let resources = kept.resources.into_values().collect();
    resources::prune(&stored.resources, &resources, orgs, changes);
    subjects::prune(
        &stored.subjects,
        &kept.subjects,
        &stored.owned,
        orgs,
        changes,
    );
    owned::prune(&stored.owned, &kept.owned, orgs, changes);
    let paths = organizations::paths(&stored.orgs);
    memberships::prune(&stored.memberships, &kept.memberships, &paths, changes);
    organizations::prune(&stored.orgs, orgs, &paths, changes);
    for c in &mut changes[first..] {
        if let Op::OrphanRow { table, .. } = &c.op
            && *table != plan::Table::Organizations
            && c.source
                .as_deref()
                .is_some_and(|s| live.contains(super::source_object(s)))
        {
            deleted_after_all(c);
        }
    }
}

/// Turns the orphaning of a row into its deletion, in the plan and as reported.
fn deleted_after_all(c: &mut Change) {
    if let Op::OrphanRow { table, id } = &c.op {
        c.op = Op::DeleteRow {
            table: *table,
            id: id.clone(),
        };
        c.action = plan::Action::Delete;
    }
}

/// Carries out a plan on a connection inside a transaction. A row the database refuses (a
/// constraint: a row written around suborg since the plan was made, or a rule the plan missed)
/// is a conflict of the object the row belongs to, not a store failure: the caller can leave
/// that object out and sync the rest.
pub(crate) async fn execute(
    conn: &mut AnyConnection,
    plan: &Plan,
    backend: Backend,
) -> Result<(), PlanError> {
    let now = now_millis();
    let changes = &plan.changes;
    let mut users = Users::default();
    let mut i = 0;
    while i < changes.len() {
        let change = &changes[i];
        if matches!(change.op, Op::CreateMembership { .. }) {
            let mut j = i;
            while j < changes.len()
                && j - i < memberships::batch_rows(backend)
                && matches!(changes[j].op, Op::CreateMembership { .. })
            {
                j += 1;
            }
            memberships::insert_batch(conn, &changes[i..j], &mut users, now, backend).await?;
            i = j;
            continue;
        }
        let op = &change.op;
        let done = match op {
            Op::CreateOrg { .. } | Op::UpdateOrg { .. } => {
                organizations::execute(conn, op, now).await
            }
            Op::CreateMembership { .. } => unreachable!("inserted in batches"),
            Op::UpdateMembership { .. } => memberships::execute(conn, op, now).await,
            Op::CreateOwned { .. } | Op::UpdateOwned { .. } => {
                let users = users.all(conn).await?;
                owned::execute(conn, op, now, backend, users).await
            }
            Op::ClearMembers { id } => owned::clear_members(conn, id).await,
            Op::CreateSubject { .. } | Op::UpdateSubject { .. } => {
                subjects::execute(conn, op, now).await
            }
            Op::CreateResource { .. } | Op::UpdateResource { .. } => {
                resources::execute(conn, op, now).await
            }
            Op::CreateProject { .. } | Op::UpdateProject { .. } => {
                projects::execute(conn, op, now).await
            }
            Op::CreateProjectMember { .. } | Op::UpdateProjectMember { .. } => {
                let users = users.all(conn).await?;
                project_members::execute(conn, op, now, users).await
            }
            Op::DeleteRow { table, id } => plan::delete(conn, *table, id).await,
            Op::OrphanRow { table, id } => plan::orphan(conn, *table, id, now).await,
            Op::SetPolicy { table, id, policy } => {
                plan::set_policy(conn, *table, id, policy, now).await
            }
        };
        done.map_err(|e| refused(PlanError::Query(e), change))?;
        i += 1;
    }
    // A user is kept only while a membership names it (an email is personal data): when rows
    // went, so do users left with none, in the same transaction.
    if changes.iter().any(|c| matches!(c.op, Op::DeleteRow { .. })) {
        sqlx::query(
            "DELETE FROM users WHERE NOT EXISTS (SELECT 1 FROM memberships m WHERE m.user_id = users.id)",
        )
        .execute(&mut *conn)
        .await
        .map_err(PlanError::Query)?;
    }
    Ok(())
}

/// After [`execute`], in its transaction: a row the plan left in place by an `Orphan` policy
/// but that the database removed by cascade in the same transaction (its user left the root
/// or the organization, its project or organization was deleted) is reported as deleted. An
/// `Orphaned` Event for a row that is gone would be false.
pub(crate) async fn settle_orphans(
    conn: &mut AnyConnection,
    plan: &mut Plan,
    backend: Backend,
) -> Result<(), sqlx::Error> {
    let mut by_table: HashMap<&'static str, Vec<String>> = HashMap::new();
    for c in &plan.changes {
        if let Op::OrphanRow { table, id } = &c.op {
            by_table.entry(table.name()).or_default().push(id.clone());
        }
    }
    let mut gone: HashSet<String> = HashSet::new();
    for (table, ids) in by_table {
        for chunk in ids.chunks(plan::VALUES_PER_LIST) {
            let sql = format!(
                "SELECT id FROM {table} WHERE id IN ({})",
                plan::parameters(backend, 1, chunk.len())
            );
            let mut q = sqlx::query_scalar::<_, String>(&sql);
            for id in chunk {
                q = q.bind(id);
            }
            let present: HashSet<String> = q.fetch_all(&mut *conn).await?.into_iter().collect();
            gone.extend(chunk.iter().filter(|id| !present.contains(*id)).cloned());
        }
    }
    for c in &mut plan.changes {
        if let Op::OrphanRow { id, .. } = &c.op
            && gone.contains(id)
        {
            deleted_after_all(c);
        }
    }
    Ok(())
}
