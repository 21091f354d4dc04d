//! A desired state carried into the store: every table's plan in the order their references
//! need (organizations, memberships, groups and identities, their subject memberships,
//! resources, projects, project memberships), pruning in the reverse order, and the plan's
//! execution in one transaction.

use sqlx::AnyConnection;

use super::desired::Desired;
use super::plan::{self, Op, Plan, PlanError, loaded, now_millis, refused};
use super::tables::{
    memberships, organizations, owned, project_members, projects, resources, subjects,
};
use super::{ApplyOptions, Backend};

/// Compares the desired state with the store.
pub(crate) async fn compute(
    conn: &mut AnyConnection,
    desired: &Desired,
    options: ApplyOptions,
    backend: Backend,
) -> Result<Plan, PlanError> {
    let org_rows = organizations::load(conn).await?;
    let membership_rows = memberships::load(conn, backend).await?;
    let owned_rows = owned::load(conn, backend).await?;
    let subject_rows = subjects::load(conn).await?;
    let resource_rows = resources::load(conn).await?;
    let project_rows = projects::load(conn).await?;
    let member_rows = project_members::load(conn).await?;

    let mut changes = Vec::new();
    let orgs = organizations::plan(&org_rows, &desired.organizations, options, &mut changes)?;
    let wanted_memberships = memberships::plan(
        &membership_rows,
        &desired.memberships,
        &orgs,
        options,
        &mut changes,
    )?;
    let kept_owned = owned::plan(&owned_rows, desired, &orgs, options, &mut changes)?;
    let kept_subjects = subjects::plan(
        &subject_rows,
        &desired.subject_memberships,
        &orgs,
        &kept_owned,
        options,
        &mut changes,
    )?;
    let resource_ids = resources::plan(
        &resource_rows,
        &desired.resources,
        &orgs,
        options,
        &mut changes,
    )?;
    let project_ids = projects::plan(
        &project_rows,
        &desired.projects,
        &orgs,
        &resource_ids,
        options,
        &mut changes,
    )?;
    let kept_members = project_members::plan(
        &member_rows,
        &desired.project_memberships,
        &desired.projects,
        &project_ids,
        &kept_owned,
        options,
        &mut changes,
    )?;

    // What uses a row goes before it: the database would refuse the row's removal otherwise.
    if options.prune {
        project_members::prune(&member_rows, &kept_members, &project_rows, &mut changes);
        let kept = project_ids.into_values().collect();
        projects::prune(&project_rows, &kept, &orgs, &mut changes);
        let kept = resource_ids.into_values().collect();
        resources::prune(&resource_rows, &kept, &orgs, &mut changes);
        subjects::prune(
            &subject_rows,
            &kept_subjects,
            &owned_rows,
            &orgs,
            &mut changes,
        );
        owned::prune(&owned_rows, &kept_owned, &orgs, &mut changes);
        let slug_by_id = organizations::slugs(&org_rows);
        memberships::prune(
            &membership_rows,
            &wanted_memberships,
            &slug_by_id,
            &mut changes,
        );
        organizations::prune(&org_rows, &orgs, &slug_by_id, &mut changes);
    }
    Ok(Plan { changes })
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
    let mut users = None;
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
            let users = loaded(conn, &mut users).await?;
            memberships::insert_batch(conn, &changes[i..j], users, now, backend).await?;
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
                let users = loaded(conn, &mut users).await?;
                owned::execute(conn, op, now, backend, users).await
            }
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
                let users = loaded(conn, &mut users).await?;
                project_members::execute(conn, op, now, users).await
            }
            Op::DeleteRow { table, id } => plan::delete(conn, *table, id).await,
            Op::OrphanRow { table, id } => plan::orphan(conn, *table, id, now).await,
        };
        done.map_err(|e| refused(PlanError::Query(e), change))?;
        i += 1;
    }
    Ok(())
}
