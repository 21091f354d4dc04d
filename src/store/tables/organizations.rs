//! Organizations: roots and their sub-organizations. A sub-organization never moves to another
//! root, and a root keeps its row while any of its sub-organizations stays in the store.

use std::collections::{BTreeMap, HashMap, HashSet};

use sqlx::{AnyConnection, Row};

use crate::store::desired::DesiredOrg;
use crate::store::plan::{
    ApplyOptions, Change, Conflicts, Op, PlanError, Sourced, Table, by_source, held_by_another,
    keep_rows, new_id, removal, row_for, sourced, wanted,
};

sourced!(OrgRow);

pub(crate) struct OrgRow {
    id: String,
    source_uid: Option<String>,
    source_name: Option<String>,
    managed: bool,
    parent_id: Option<String>,
    root_id: String,
    slug: String,
    display_name: String,
    auth: Option<String>,
    member_namespaces: Option<String>,
    deletion_policy: String,
}

pub(crate) async fn load(conn: &mut AnyConnection) -> Result<Vec<OrgRow>, sqlx::Error> {
    Ok(sqlx::query(
        "SELECT id, source_uid, managed, parent_id, root_id, slug, display_name, auth, member_namespaces, deletion_policy, source_name FROM organizations",
    )
    .fetch_all(&mut *conn)
    .await?
    .into_iter()
    .map(|r| OrgRow {
        id: r.get(0),
        source_uid: r.get(1),
        managed: r.get::<i64, _>(2) == 1,
        parent_id: r.get(3),
        root_id: r.get(4),
        slug: r.get(5),
        display_name: r.get(6),
        auth: r.get(7),
        member_namespaces: r.get(8),
        deletion_policy: r.get(9),
        source_name: r.get(10),
    })
    .collect())
}

/// What the rows of every other table need of the organizations' plan: which row each desired
/// organization writes to, and how to name an organization for people.
pub(crate) struct Orgs<'d> {
    /// Source → (row id, root id), for existing rows and rows this plan creates.
    ids: HashMap<String, (String, String)>,
    /// Row id → the organization's name for people, `ROOT` or `ROOT/SUB`.
    names: HashMap<String, String>,
    desired: HashMap<&'d str, &'d DesiredOrg>,
    /// Row ids of the organizations that stay managed: written by this plan or kept as they
    /// are.
    staying: HashSet<String>,
    /// Row ids of the organizations this plan deletes. The others stay in the store, managed
    /// or, orphaned, not.
    leaving: HashSet<String>,
}

impl Orgs<'_> {
    /// The (row id, root id) of the organization `source`; a conflict of the object `key`,
    /// named `what`, when it is not desired.
    pub(crate) fn find(
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

    /// (row id, root id) of the organization `source`, if desired.
    pub(crate) fn ids(&self, source: &str) -> Option<&(String, String)> {
        self.ids.get(source)
    }

    /// Whether the organization row `id` stays after this plan, managed or orphaned: the rows
    /// of a kept source stay only while their organization does.
    pub(crate) fn stays(&self, id: &str) -> bool {
        !self.leaving.contains(id)
    }

    /// The name for people (`ROOT` or `ROOT/SUB`) of the row `id`, `?` when there is none.
    pub(crate) fn name(&self, id: &str) -> &str {
        self.names.get(id).map(String::as_str).unwrap_or("?")
    }

    /// The organization `source` (row `id`) for people: `ROOT` or `ROOT/SUB` as desired, else
    /// as stored.
    pub(crate) fn path(&self, source: &str, id: &str) -> String {
        self.desired
            .get(source)
            .map(|o| path(o, self.parent(o)))
            .or_else(|| self.names.get(id).cloned())
            .unwrap_or_default()
    }

    fn parent(&self, o: &DesiredOrg) -> Option<&DesiredOrg> {
        o.parent
            .as_deref()
            .and_then(|p| self.desired.get(p).copied())
    }
}

/// `ROOT` or `ROOT/SUB`.
fn path(o: &DesiredOrg, parent: Option<&DesiredOrg>) -> String {
    match parent {
        Some(p) => format!("{}/{}", p.slug, o.slug),
        None => o.slug.clone(),
    }
}

/// Plans the desired organizations, roots first so a sub-organization finds its parent's row.
pub(crate) fn plan<'d>(
    rows: &[OrgRow],
    desired: &'d [DesiredOrg],
    kept: &BTreeMap<String, Option<&'static str>>,
    options: ApplyOptions,
    changes: &mut Vec<Change>,
) -> Result<Orgs<'d>, PlanError> {
    let owners = by_source(rows);
    let by_slug: HashMap<(Option<&str>, &str), &OrgRow> = rows
        .iter()
        .map(|o| ((o.parent_id.as_deref(), o.slug.as_str()), o))
        .collect();
    let wanted = wanted(desired.iter().map(|o| o.source_uid.as_str()), kept);
    let mut orgs = Orgs {
        ids: HashMap::new(),
        names: HashMap::new(),
        desired: desired.iter().map(|o| (o.source_uid.as_str(), o)).collect(),
        staying: HashSet::new(),
        leaving: HashSet::new(),
    };
    let mut conflicts = Conflicts::default();
    for o in desired {
        if o.parent.as_deref().is_some_and(|p| conflicts.left_out(p)) {
            conflicts.skip(&o.source_uid);
            continue;
        }
        let planned = plan_one(o, &owners, &by_slug, &wanted, &mut orgs, options, changes);
        conflicts.note(planned)?;
    }
    conflicts.into_result()?;
    let paths = paths(rows);
    let kept = keep_rows(
        Table::Organizations,
        rows,
        kept,
        |s| orgs.ids.contains_key(s),
        |_| true,
        |r| target(r, &paths),
        changes,
    );
    for (source, row) in kept {
        orgs.ids
            .insert(source.to_owned(), (row.id.clone(), row.root_id.clone()));
    }
    orgs.staying = orgs.ids.values().map(|(id, _)| id.clone()).collect();
    orgs.leaving = removals(rows, &orgs.staying)
        .into_iter()
        .filter(|(_, policy)| *policy != "Orphan")
        .map(|(row, _)| row.id.clone())
        .collect();
    orgs.names = paths
        .into_iter()
        .map(|(id, path)| (id.to_owned(), path))
        .chain(changes.iter().filter_map(|c| match &c.op {
            Op::CreateOrg { id, .. } => Some((id.clone(), c.target.clone())),
            _ => None,
        }))
        .collect();
    Ok(orgs)
}

/// Plans one desired organization, its parent (if any) planned before it.
fn plan_one<'d>(
    o: &'d DesiredOrg,
    owners: &HashMap<&str, &OrgRow>,
    by_slug: &HashMap<(Option<&str>, &str), &OrgRow>,
    wanted: &HashSet<&str>,
    orgs: &mut Orgs<'d>,
    options: ApplyOptions,
    changes: &mut Vec<Change>,
) -> Result<(), PlanError> {
    let target = path(o, orgs.parent(o));
    let parent_id = match &o.parent {
        Some(p) => Some(orgs.ids.get(p).map(|(id, _)| id.clone()).ok_or_else(|| {
            PlanError::Conflict(
                Some(o.source_uid.clone()),
                format!("organization {target}: its parent is not in the desired state"),
            )
        })?),
        None => None,
    };
    // Else the same slug under the same parent: the object was renamed (a new source) or the
    // row predates suborg.
    let key = (parent_id.as_deref(), o.slug.as_str());
    if !owners.contains_key(o.source_uid.as_str())
        && let Some(holder) = held_by_another(by_slug, &key, &o.source_uid, wanted, |r| {
            r.source_name.as_deref() == Some(o.source_name.as_str())
        })
    {
        let kind = kind_of(holder.parent_id.is_some());
        let holder_name = holder.source_name.as_deref().unwrap_or("?");
        // A rename pruned in the same apply: the old row goes only when this apply commits,
        // and a row never passes from one object to another.
        let pruned_now = options.prune
            && holder.deletion_policy == "Delete"
            && holder.source().is_some_and(|s| !wanted.contains(s));
        let fix = if pruned_now {
            format!(
                "this apply would prune that row, but not before writing this one: apply once without {} {} (its rows go), then again with it; the controller does the same by itself, in two syncs",
                kind_of(o.parent.is_some()),
                o.source_name
            )
        } else {
            "delete that object (and wait for it to go) or choose another slug".to_owned()
        };
        return Err(PlanError::Conflict(
            Some(o.source_uid.clone()),
            format!(
                "organization {target}: its slug is held in the store by {kind} {holder_name}, whose row does not pass to this one: {fix}"
            ),
        ));
    }
    match row_for(owners, by_slug, &o.source_uid, &key, wanted) {
        Some(row) => {
            let change = update(row, o, parent_id, target, options)?;
            orgs.ids
                .insert(o.source_uid.clone(), (row.id.clone(), row.root_id.clone()));
            changes.extend(change);
        }
        None => {
            let id = new_id();
            let root = parent_id.clone().unwrap_or_else(|| id.clone());
            orgs.ids.insert(o.source_uid.clone(), (id.clone(), root));
            changes.push(Change::create(
                "organization",
                target,
                &o.source_uid,
                Op::CreateOrg {
                    id,
                    parent_id,
                    org: o.clone(),
                },
            ));
        }
    }
    Ok(())
}

/// The update of the stored `row` that `o` writes to, if anything changes.
fn update(
    row: &OrgRow,
    o: &DesiredOrg,
    parent_id: Option<String>,
    target: String,
    options: ApplyOptions,
) -> Result<Option<Change>, PlanError> {
    row.writable_by(&o.source_uid, options, &format!("organization {target}"))?;
    if row.parent_id != parent_id {
        return Err(PlanError::Conflict(
            Some(o.source_uid.clone()),
            format!(
                "organization {target} has another parent in the store: sub-organizations cannot move between roots; delete the old one first"
            ),
        ));
    }
    slug_kept("organization", &target, &o.source_uid, &row.slug, &o.slug)?;
    let fields = row.changed_fields(
        &o.source_uid,
        &[
            ("displayName", row.display_name != o.display_name),
            ("authentication", row.auth != o.auth),
            (
                "memberNamespaces",
                row.member_namespaces != o.member_namespaces,
            ),
            ("deletionPolicy", row.deletion_policy != o.deletion_policy),
        ],
    );
    Ok(Change::update(
        "organization",
        target,
        fields,
        &o.source_uid,
        || Op::UpdateOrg {
            id: row.id.clone(),
            org: o.clone(),
        },
    ))
}

/// Each stored organization's name for people, by row id: `ROOT` or `ROOT/SUB`.
pub(crate) fn paths(rows: &[OrgRow]) -> HashMap<&str, String> {
    let slugs: HashMap<&str, &str> = rows
        .iter()
        .map(|o| (o.id.as_str(), o.slug.as_str()))
        .collect();
    rows.iter()
        .map(|o| {
            let path = match o.parent_id.as_deref() {
                Some(p) => format!("{}/{}", slugs.get(p).unwrap_or(&"?"), o.slug),
                None => o.slug.clone(),
            };
            (o.id.as_str(), path)
        })
        .collect()
}

/// A stored organization's name for people, as [`paths`] gives it.
fn target(row: &OrgRow, paths: &HashMap<&str, String>) -> String {
    paths.get(row.id.as_str()).cloned().unwrap_or_default()
}

/// What becomes of each managed organization no longer desired, sub-organizations first: its
/// row and the policy that applies, `Orphan` for a row that stays, unmanaged.
fn removals<'r>(rows: &'r [OrgRow], staying: &HashSet<String>) -> Vec<(&'r OrgRow, &'r str)> {
    let mut gone: Vec<&OrgRow> = rows
        .iter()
        .filter(|o| o.managed && !staying.contains(o.id.as_str()))
        .collect();
    gone.sort_by_key(|o| o.parent_id.is_none());
    let mut removed: HashSet<&str> = HashSet::new();
    let mut out = Vec::new();
    for row in gone {
        // A root whose sub-organization is kept as it is (refused, but still there) stays as
        // it is too, still managed: it goes after the last of them, or is wanted again.
        if rows.iter().any(|c| {
            c.parent_id.as_deref() == Some(row.id.as_str()) && staying.contains(c.id.as_str())
        }) {
            continue;
        }
        // A root whose sub-organizations stay in the store (orphaned by their own policy,
        // or never suborg's) keeps its row too, unmanaged: the database refuses to remove
        // it, and those rows would mean nothing without it. Its object can still go.
        let has_children = rows.iter().any(|c| {
            c.parent_id.as_deref() == Some(row.id.as_str()) && !removed.contains(c.id.as_str())
        });
        let policy = if has_children {
            "Orphan"
        } else {
            row.deletion_policy.as_str()
        };
        if policy != "Orphan" {
            removed.insert(row.id.as_str());
        }
        out.push((row, policy));
    }
    out
}

/// Plans the removal of managed organizations no longer desired: sub-organizations before
/// roots, after every row that belongs to them.
pub(crate) fn prune(
    rows: &[OrgRow],
    orgs: &Orgs<'_>,
    paths: &HashMap<&str, String>,
    changes: &mut Vec<Change>,
) {
    for (row, policy) in removals(rows, &orgs.staying) {
        let mut change = removal(
            Table::Organizations,
            &row.id,
            &row.source_uid,
            policy,
            target(row, paths),
        );
        if policy == "Orphan" && row.deletion_policy != "Orphan" {
            // Kept although its own policy says Delete: the Event and the plan say for which.
            let children: Vec<&str> = rows
                .iter()
                .filter(|c| {
                    c.parent_id.as_deref() == Some(row.id.as_str()) && orgs.stays(c.id.as_str())
                })
                .map(|c| c.slug.as_str())
                .collect();
            tracing::info!(
                organization = %row.slug,
                sub_organizations = %children.join(", "),
                "sub-organizations remain in the store: the organization's row is kept, no longer managed"
            );
            change.why = Some(format!(
                "kept for the sub-organizations that remain in the store: {}",
                children.join(", ")
            ));
        }
        changes.push(change);
    }
}

/// Carries out a change of an organization row.
pub(crate) async fn execute(
    conn: &mut AnyConnection,
    op: &Op,
    now: i64,
) -> Result<(), sqlx::Error> {
    match op {
        Op::CreateOrg { id, parent_id, org } => {
            let (depth, parent_depth, parent_key, root_id) = match parent_id {
                Some(p) => (1i64, Some(0i64), p.clone(), p.clone()),
                None => (0, None, String::new(), id.clone()),
            };
            sqlx::query(
                "INSERT INTO organizations (id, source_uid, source_name, managed, depth, parent_id, parent_depth, parent_key, root_id, slug, display_name, auth, member_namespaces, deletion_policy, created_at, updated_at) \
                 VALUES ($1, $2, $3, 1, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $14)",
            )
            .bind(id)
            .bind(&org.source_uid)
            .bind(&org.source_name)
            .bind(depth)
            .bind(parent_id.clone())
            .bind(parent_depth)
            .bind(parent_key)
            .bind(root_id)
            .bind(&org.slug)
            .bind(&org.display_name)
            .bind(org.auth.clone())
            .bind(org.member_namespaces.clone())
            .bind(org.deletion_policy)
            .bind(now)
            .execute(&mut *conn)
            .await?;
        }
        Op::UpdateOrg { id, org } => {
            sqlx::query(
                "UPDATE organizations SET source_uid = $2, source_name = $3, managed = 1, slug = $4, display_name = $5, auth = $6, member_namespaces = $7, deletion_policy = $8, updated_at = $9 WHERE id = $1",
            )
            .bind(id)
            .bind(&org.source_uid)
            .bind(&org.source_name)
            .bind(&org.slug)
            .bind(&org.display_name)
            .bind(org.auth.clone())
            .bind(org.member_namespaces.clone())
            .bind(org.deletion_policy)
            .bind(now)
            .execute(&mut *conn)
            .await?;
        }
        _ => unreachable!("only organization operations are executed here"),
    }
    Ok(())
}

/// The kind of an organization's object: a row with a parent is a SubOrganization's.
fn kind_of(has_parent: bool) -> &'static str {
    if has_parent {
        "SubOrganization"
    } else {
        "Organization"
    }
}

/// A source's slug never changes: API clients address an organization or a project by it.
/// The API server refuses the edit; offline, this does.
pub(super) fn slug_kept(
    what: &str,
    target: &str,
    source: &str,
    stored: &str,
    wanted: &str,
) -> Result<(), PlanError> {
    if stored == wanted {
        return Ok(());
    }
    Err(PlanError::Conflict(
        Some(source.to_owned()),
        format!(
            "{what} {target}: its slug is {stored:?} in the store, and a slug never changes (API clients address the {what} by it): set spec.slug back to {stored:?}, or delete the object and create a new one"
        ),
    ))
}
