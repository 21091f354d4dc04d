//! App connections, gateways and relays (`org_resources`): per organization, never inherited.
//! A gateway may name a relay of its own organization.

use std::collections::{BTreeMap, HashMap, HashSet};

use sqlx::{AnyConnection, Row};

use super::organizations::Orgs;
use crate::store::desired::DesiredResource;
use crate::store::plan::{
    ApplyOptions, Change, Op, PlanError, Sourced, Table, by_source, keep_ids, new_id, plan_each,
    removal, row_for, sourced, wanted,
};

sourced!(ResourceRow);

pub(crate) struct ResourceRow {
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

pub(crate) async fn load(conn: &mut AnyConnection) -> Result<Vec<ResourceRow>, sqlx::Error> {
    Ok(sqlx::query(
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
    .collect())
}

/// Plans the desired resources; returns the row id of each by source.
pub(crate) fn plan(
    rows: &[ResourceRow],
    desired: &[DesiredResource],
    kept: &BTreeMap<String, Option<&'static str>>,
    orgs: &Orgs<'_>,
    options: ApplyOptions,
    changes: &mut Vec<Change>,
) -> Result<HashMap<String, String>, PlanError> {
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
    let wanted = wanted(desired.iter().map(|r| r.source_uid.as_str()), kept);
    let mut ids: HashMap<String, String> = HashMap::new();
    plan_each(desired, |r| {
        let (org_id, root_id) = orgs.find(&r.organization, &r.name, &r.source_uid)?;
        let target = format!("{} {} in {}", r.kind, r.name, orgs.name(&org_id));
        // Relays come first in the desired state, so a gateway's relay has its id by now.
        let relay_id = r.relay.as_ref().and_then(|uid| ids.get(uid).cloned());
        let key = (org_id.as_str(), r.kind, r.name.as_str());
        match row_for(&owners, &by_name, &r.source_uid, &key, &wanted) {
            Some(row) => {
                let change = update(row, r, org_id, relay_id, target, options)?;
                ids.insert(r.source_uid.clone(), row.id.clone());
                changes.extend(change);
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
        Ok(())
    })?;
    keep_ids(
        Table::Resources,
        rows,
        kept,
        &mut ids,
        |r| orgs.stays(&r.organization_id),
        |r| format!("{} {} in {}", r.kind, r.name, orgs.name(&r.organization_id)),
        changes,
    );
    Ok(ids)
}

/// The update of the stored `row` that `r` writes to, if anything changes.
fn update(
    row: &ResourceRow,
    r: &DesiredResource,
    org_id: String,
    relay_id: Option<String>,
    target: String,
    options: ApplyOptions,
) -> Result<Option<Change>, PlanError> {
    row.writable_by(&r.source_uid, options, &target)?;
    if row.organization_id != org_id || row.kind != r.kind {
        return Err(PlanError::Conflict(
            Some(r.source_uid.clone()),
            format!(
                "{target}: its row in the store belongs to another organization; app connections, gateways and relays stay with the organization that created them, so delete the old object first"
            ),
        ));
    }
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
    Ok(Change::update(
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
    ))
}

/// Plans the removal (or orphaning) of managed resources no longer desired: connections and
/// gateways before the relays gateways use.
pub(crate) fn prune(
    rows: &[ResourceRow],
    kept: &HashSet<String>,
    orgs: &Orgs<'_>,
    changes: &mut Vec<Change>,
) {
    for kind in ["AppConnection", "Gateway", "Relay"] {
        for r in rows
            .iter()
            .filter(|r| r.kind == kind && r.managed && !kept.contains(&r.id))
        {
            changes.push(removal(
                Table::Resources,
                &r.id,
                &r.source_uid,
                &r.deletion_policy,
                format!("{} {} in {}", r.kind, r.name, orgs.name(&r.organization_id)),
            ));
        }
    }
}

/// The three columns of a same-organization reference (`relay_*`, `gateway_*`), all set or
/// all NULL.
pub(crate) fn same_org_ref(
    id: &Option<String>,
    org_id: &str,
    kind: &'static str,
) -> (Option<String>, Option<String>, Option<&'static str>) {
    match id {
        Some(id) => (Some(id.clone()), Some(org_id.to_owned()), Some(kind)),
        None => (None, None, None),
    }
}

/// Carries out the creation or update of a resource.
pub(crate) async fn execute(
    conn: &mut AnyConnection,
    op: &Op,
    now: i64,
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
        _ => unreachable!("only resource operations are executed here"),
    }
    Ok(())
}
