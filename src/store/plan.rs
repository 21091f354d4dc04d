//! Plans: what applying a desired state changes, row by row, and carrying a plan out.

use std::collections::{HashMap, HashSet};
use std::fmt;

use sqlx::{AnyConnection, Row};

use super::desired::{
    Desired, DesiredMembership, DesiredOrg, DesiredOwned, DesiredProject, DesiredProjectMembership,
    DesiredResource,
};
use super::{ApplyOptions, Backend, Dsn, StoreError};
use super::{owned, projects};

/// Milliseconds since the Unix epoch.
pub(crate) fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// What happens to one row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Action {
    /// A new row.
    Create,
    /// A row whose values change.
    Update,
    /// A row removed (`--prune`, deletion policy `Delete`).
    Delete,
    /// A row left in place but no longer managed (`--prune`, deletion policy `Orphan`).
    Orphan,
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Create => "+",
            Self::Update => "~",
            Self::Delete => "-",
            Self::Orphan => "=",
        })
    }
}

impl Action {
    /// The verb, for messages: "create", "update", "delete", "orphan".
    pub fn verb(self) -> &'static str {
        match self {
            Self::Create => "create",
            Self::Update => "update",
            Self::Delete => "delete",
            Self::Orphan => "orphan",
        }
    }
}

/// One planned change.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Change {
    /// What happens.
    pub action: Action,
    /// `organization` or `membership`.
    pub kind: &'static str,
    /// The row, for people: `acme/engineering`, or `alice@acme.example in acme/engineering`.
    pub target: String,
    /// For updates, the fields that change.
    pub fields: Vec<&'static str>,
    /// The source the row belongs to (a Kubernetes object's uid), when known.
    #[serde(skip)]
    pub source: Option<String>,
    #[serde(skip)]
    pub(super) op: Op,
}

impl Change {
    /// A new row for `source`.
    pub(super) fn create(kind: &'static str, target: String, source: &str, op: Op) -> Self {
        Self::new(
            Action::Create,
            kind,
            target,
            vec![],
            Some(source.to_owned()),
            op,
        )
    }

    /// An update of the `fields` of `source`'s row, or nothing when none changed (the
    /// statement is only built then: a no-op plan of a large store builds none).
    pub(super) fn update(
        kind: &'static str,
        target: String,
        fields: Vec<&'static str>,
        source: &str,
        op: impl FnOnce() -> Op,
    ) -> Option<Self> {
        (!fields.is_empty()).then(|| {
            Self::new(
                Action::Update,
                kind,
                target,
                fields,
                Some(source.to_owned()),
                op(),
            )
        })
    }

    pub(super) fn new(
        action: Action,
        kind: &'static str,
        target: String,
        fields: Vec<&'static str>,
        source: Option<String>,
        op: Op,
    ) -> Self {
        Self {
            action,
            kind,
            target,
            fields,
            source,
            op,
        }
    }
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "  {} {} {}", self.action, self.kind, self.target)?;
        if !self.fields.is_empty() {
            write!(f, " ({})", self.fields.join(", "))?;
        }
        Ok(())
    }
}

/// Everything applying a desired state changes. Empty when the store already matches.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Plan {
    /// Changes in the order they are carried out.
    pub changes: Vec<Change>,
}

impl Plan {
    /// How many changes of `action` the plan holds.
    pub fn count(&self, action: Action) -> usize {
        self.changes.iter().filter(|c| c.action == action).count()
    }

    /// Whether the plan changes nothing.
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }
}

/// The statements behind a change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Op {
    CreateOrg {
        id: String,
        parent_id: Option<String>,
        org: DesiredOrg,
    },
    UpdateOrg {
        id: String,
        org: DesiredOrg,
    },
    CreateMembership {
        id: String,
        org_id: String,
        root_id: String,
        m: DesiredMembership,
    },
    UpdateMembership {
        id: String,
        m: DesiredMembership,
    },
    DeleteOrg {
        id: String,
    },
    DeleteMembership {
        id: String,
    },
    OrphanOrg {
        id: String,
    },
    OrphanMembership {
        id: String,
    },
    CreateOwned {
        table: owned::Table,
        id: String,
        org_id: String,
        root_id: String,
        org_depth: i64,
        owned: DesiredOwned,
        members: Vec<owned::MemberRef>,
    },
    UpdateOwned {
        table: owned::Table,
        id: String,
        org_id: String,
        org_depth: i64,
        owned: DesiredOwned,
        add: Vec<owned::MemberRef>,
        remove: Vec<owned::MemberRef>,
    },
    CreateSubject {
        id: String,
        org_id: String,
        root_id: String,
        subject_id: String,
        m: owned::Subject,
    },
    UpdateSubject {
        id: String,
        m: owned::Subject,
    },
    CreateResource {
        id: String,
        org_id: String,
        root_id: String,
        relay_id: Option<String>,
        r: DesiredResource,
    },
    UpdateResource {
        id: String,
        org_id: String,
        relay_id: Option<String>,
        r: DesiredResource,
    },
    CreateProject {
        id: String,
        org_id: String,
        root_id: String,
        gateway_id: Option<String>,
        connections: Vec<String>,
        p: DesiredProject,
    },
    UpdateProject {
        id: String,
        org_id: String,
        gateway_id: Option<String>,
        add: Vec<String>,
        remove: Vec<String>,
        p: DesiredProject,
    },
    CreateProjectMember {
        id: String,
        project_id: String,
        /// The subject column (one of a fixed list) and its value: an email for a user.
        column: &'static str,
        value: String,
        m: DesiredProjectMembership,
    },
    UpdateProjectMember {
        id: String,
        m: DesiredProjectMembership,
    },
    DeleteRow {
        table: owned::Table,
        id: String,
    },
    OrphanRow {
        table: owned::Table,
        id: String,
    },
}

impl Op {
    /// Whether [`owned::execute`] carries the operation out (groups, identities, subject
    /// memberships).
    fn is_owned(&self) -> bool {
        matches!(
            self,
            Self::CreateOwned { .. }
                | Self::UpdateOwned { .. }
                | Self::CreateSubject { .. }
                | Self::UpdateSubject { .. }
                | Self::DeleteRow { .. }
                | Self::OrphanRow { .. }
        )
    }

    /// Whether [`projects::execute`] carries the operation out.
    fn is_project(&self) -> bool {
        matches!(
            self,
            Self::CreateResource { .. }
                | Self::UpdateResource { .. }
                | Self::CreateProject { .. }
                | Self::UpdateProject { .. }
                | Self::CreateProjectMember { .. }
                | Self::UpdateProjectMember { .. }
        )
    }
}

/// A planning failure, before the DSN is attached.
pub(crate) enum PlanError {
    /// A conflict, with the source (object uid) it is about when there is one.
    Conflict(Option<String>, String),
    Query(sqlx::Error),
}

impl From<sqlx::Error> for PlanError {
    fn from(e: sqlx::Error) -> Self {
        Self::Query(e)
    }
}

impl PlanError {
    pub(crate) fn with_dsn(self, dsn: &Dsn) -> StoreError {
        match self {
            Self::Conflict(None, m) => StoreError::Conflict(m),
            Self::Conflict(Some(source), message) => StoreError::SourceConflict {
                uid: source,
                message,
            },
            Self::Query(source) => StoreError::Query {
                dsn: dsn.to_string(),
                source,
            },
        }
    }
}

/// A stored row as a plan sees it: whether suborg manages it, and the source it came from.
pub(super) trait Sourced {
    fn managed(&self) -> bool;
    fn source(&self) -> Option<&str>;

    /// Whether a desired object keyed `uid` that matched this row by its natural key (slug,
    /// subject) takes it over: the row predates suborg, or its source is no longer wanted (a
    /// rename, or a delete-and-recreate).
    fn claimable(&self, wanted: &HashSet<&str>) -> bool {
        !self.managed() || self.source().is_some_and(|s| !wanted.contains(s))
    }

    /// Whether writing `uid` to this row changes its source or makes it managed.
    fn source_changes(&self, uid: &str) -> bool {
        self.source() != Some(uid) || !self.managed()
    }

    /// What writing `source` and the desired values changes: `source` when the row changes
    /// hands or becomes managed, then the name of each field whose value `differs`.
    fn changed_fields(&self, source: &str, differs: &[(&'static str, bool)]) -> Vec<&'static str> {
        std::iter::once(("source", self.source_changes(source)))
            .chain(differs.iter().copied())
            .filter(|(_, d)| *d)
            .map(|(f, _)| f)
            .collect()
    }

    /// Refuses to write `source` over a row suborg did not create, unless adoption is asked for.
    fn writable_by(
        &self,
        source: &str,
        options: ApplyOptions,
        what: &str,
    ) -> Result<(), PlanError> {
        if self.managed() || options.adopt {
            Ok(())
        } else {
            Err(PlanError::Conflict(
                Some(source.to_owned()),
                format!(
                    "{what} already exists in the store and suborg did not create it: apply with --adopt to take it over"
                ),
            ))
        }
    }
}

/// Stored rows by the source they came from.
pub(super) fn by_source<R: Sourced>(rows: &[R]) -> HashMap<&str, &R> {
    rows.iter()
        .filter_map(|r| r.source().map(|s| (s, r)))
        .collect()
}

/// The stored row the desired `source` writes to: the one it already owns, or the one with
/// its natural key `key` (slug, subject, name) that it may take over.
pub(super) fn row_for<'r, R: Sourced, K: Eq + std::hash::Hash>(
    by_source: &HashMap<&str, &'r R>,
    by_key: &HashMap<K, &'r R>,
    source: &str,
    key: &K,
    wanted: &HashSet<&str>,
) -> Option<&'r R> {
    by_source
        .get(source)
        .copied()
        .or_else(|| by_key.get(key).copied().filter(|r| r.claimable(wanted)))
}

/// Implements [`Sourced`] for row types with `managed` and `source_uid` fields.
macro_rules! sourced {
    ($($row:ty),*) => {$(
        impl Sourced for $row {
            fn managed(&self) -> bool {
                self.managed
            }
            fn source(&self) -> Option<&str> {
                self.source_uid.as_deref()
            }
        }
    )*};
}
pub(super) use sourced;

sourced!(OrgRow, MembershipRow);

struct OrgRow {
    id: String,
    source_uid: Option<String>,
    managed: bool,
    parent_id: Option<String>,
    root_id: String,
    slug: String,
    display_name: String,
    auth: Option<String>,
    member_namespaces: Option<String>,
    deletion_policy: String,
}

struct MembershipRow {
    id: String,
    source_uid: Option<String>,
    managed: bool,
    organization_id: String,
    email: String,
    roles: String,
    deletion_policy: String,
}

/// Every membership with its user's email. From SQLite, one row: a JSON array of arrays. The
/// SQLite driver hands rows over one at a time, each a hop between threads, which costs more
/// than the query on a large store; one aggregated value is a single hop (2x faster at 100,000
/// memberships). PostgreSQL streams rows cheaply and builds JSON slowly, so it returns rows.
const MEMBERSHIP_COLUMNS: &str =
    "m.id, m.source_uid, m.managed, m.organization_id, u.email, m.roles, m.deletion_policy";

async fn load(
    conn: &mut AnyConnection,
    backend: Backend,
) -> Result<(Vec<OrgRow>, Vec<MembershipRow>), sqlx::Error> {
    let orgs = sqlx::query(
        "SELECT id, source_uid, managed, parent_id, root_id, slug, display_name, auth, member_namespaces, deletion_policy FROM organizations",
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
    })
    .collect();
    let from = "FROM memberships m JOIN users u ON u.id = m.user_id";
    let memberships = match backend {
        Backend::Sqlite => {
            let json: String = sqlx::query(&format!(
                "SELECT json_group_array(json_array({MEMBERSHIP_COLUMNS})) {from}"
            ))
            .fetch_one(&mut *conn)
            .await?
            .get(0);
            type Cells = (String, Option<String>, i64, String, String, String, String);
            let rows: Vec<Cells> =
                serde_json::from_str(&json).map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
            rows.into_iter()
                .map(
                    |(id, source_uid, managed, organization_id, email, roles, deletion_policy)| {
                        MembershipRow {
                            id,
                            source_uid,
                            managed: managed == 1,
                            organization_id,
                            email,
                            roles,
                            deletion_policy,
                        }
                    },
                )
                .collect()
        }
        Backend::Postgres => sqlx::query(&format!("SELECT {MEMBERSHIP_COLUMNS} {from}"))
            .fetch_all(&mut *conn)
            .await?
            .into_iter()
            .map(|r| MembershipRow {
                id: r.get(0),
                source_uid: r.get(1),
                managed: r.get::<i64, _>(2) == 1,
                organization_id: r.get(3),
                email: r.get(4),
                roles: r.get(5),
                deletion_policy: r.get(6),
            })
            .collect(),
    };
    Ok((orgs, memberships))
}

pub(super) fn new_id() -> String {
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicU64, Ordering};
    // Time-ordered ids (UUIDv7): new rows land at the end of the primary-key index, not all
    // over it. The 80 bits after the timestamp are a random per-process start plus a counter:
    // unique within the process by construction, across processes by the random start, and
    // one system call per process instead of one per row.
    static START: OnceLock<u128> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let start = *START.get_or_init(|| uuid::Uuid::new_v4().as_u128());
    let tail = start.wrapping_add(u128::from(COUNTER.fetch_add(1, Ordering::Relaxed)));
    let bytes: [u8; 10] = tail.to_be_bytes()[6..].try_into().expect("10 of 16 bytes");
    uuid::Builder::from_unix_timestamp_millis(now_millis() as u64, &bytes)
        .into_uuid()
        .to_string()
}

/// Compares the desired state with the store.
pub(crate) async fn compute(
    conn: &mut AnyConnection,
    desired: &Desired,
    options: ApplyOptions,
    backend: Backend,
) -> Result<Plan, PlanError> {
    let (orgs, memberships) = load(conn, backend).await?;
    let existing_owned = owned::load(conn, backend).await?;
    let existing_projects = projects::load(conn).await?;
    let mut plan = Plan::default();
    let org_owners = by_source(&orgs);
    let by_slug: HashMap<(Option<&str>, &str), &OrgRow> = orgs
        .iter()
        .map(|o| ((o.parent_id.as_deref(), o.slug.as_str()), o))
        .collect();
    let desired_sources: HashSet<&str> = desired
        .organizations
        .iter()
        .map(|o| o.source_uid.as_str())
        .collect();
    // source_uid → (row id, root id), for existing rows and rows this plan creates.
    let mut ids: HashMap<String, (String, String)> = HashMap::new();
    let name = |o: &DesiredOrg, parent: Option<&DesiredOrg>| match parent {
        Some(p) => format!("{}/{}", p.slug, o.slug),
        None => o.slug.clone(),
    };
    let desired_by_source: HashMap<&str, &DesiredOrg> = desired
        .organizations
        .iter()
        .map(|o| (o.source_uid.as_str(), o))
        .collect();

    for o in &desired.organizations {
        let parent_desired = o
            .parent
            .as_deref()
            .and_then(|p| desired_by_source.get(p).copied());
        let target = name(o, parent_desired);
        let parent_id = match &o.parent {
            Some(p) => Some(ids.get(p).map(|(id, _)| id.clone()).ok_or_else(|| {
                PlanError::Conflict(
                    Some(o.source_uid.clone()),
                    format!("organization {target}: its parent is not in the desired state"),
                )
            })?),
            None => None,
        };
        // Else the same slug under the same parent: the object was renamed (a new source) or
        // the row predates suborg.
        let key = (parent_id.as_deref(), o.slug.as_str());
        match row_for(&org_owners, &by_slug, &o.source_uid, &key, &desired_sources) {
            Some(row) => {
                row.writable_by(&o.source_uid, options, &format!("organization {target}"))?;
                if row.parent_id != parent_id {
                    return Err(PlanError::Conflict(
                        Some(o.source_uid.clone()),
                        format!(
                            "organization {target} has another parent in the store: sub-organizations cannot move between roots; delete the old one first"
                        ),
                    ));
                }
                let fields = row.changed_fields(
                    &o.source_uid,
                    &[
                        ("slug", row.slug != o.slug),
                        ("displayName", row.display_name != o.display_name),
                        ("authentication", row.auth != o.auth),
                        (
                            "memberNamespaces",
                            row.member_namespaces != o.member_namespaces,
                        ),
                        ("deletionPolicy", row.deletion_policy != o.deletion_policy),
                    ],
                );
                ids.insert(o.source_uid.clone(), (row.id.clone(), row.root_id.clone()));
                if !fields.is_empty() {
                    plan.changes.push(Change {
                        action: Action::Update,
                        kind: "organization",
                        target,
                        fields,
                        source: Some(o.source_uid.clone()),
                        op: Op::UpdateOrg {
                            id: row.id.clone(),
                            org: o.clone(),
                        },
                    });
                }
            }
            None => {
                let id = new_id();
                let root = parent_id.clone().unwrap_or_else(|| id.clone());
                ids.insert(o.source_uid.clone(), (id.clone(), root));
                plan.changes.push(Change {
                    action: Action::Create,
                    kind: "organization",
                    target,
                    fields: vec![],
                    source: Some(o.source_uid.clone()),
                    op: Op::CreateOrg {
                        id,
                        parent_id,
                        org: o.clone(),
                    },
                });
            }
        }
    }

    let slug_of: HashMap<String, String> = orgs
        .iter()
        .map(|o| (o.id.clone(), o.slug.clone()))
        .chain(plan.changes.iter().filter_map(|c| match &c.op {
            Op::CreateOrg { id, .. } => Some((id.clone(), c.target.clone())),
            _ => None,
        }))
        .collect();
    let m_by_source = by_source(&memberships);
    let m_by_pair: HashMap<(&str, &str), &MembershipRow> = memberships
        .iter()
        .map(|m| ((m.organization_id.as_str(), m.email.as_str()), m))
        .collect();
    let desired_m: HashSet<&str> = desired
        .memberships
        .iter()
        .map(|m| m.source_uid.as_str())
        .collect();
    for m in &desired.memberships {
        let Some((org_id, root_id)) = ids.get(&m.organization) else {
            return Err(PlanError::Conflict(
                Some(m.source_uid.clone()),
                format!(
                    "membership {}: its organization is not in the desired state",
                    m.source_name
                ),
            ));
        };
        // Named for people only when it goes into the plan: most rows of a re-apply do not.
        let target = || {
            let org_name = desired_by_source
                .get(m.organization.as_str())
                .map(|o| {
                    let parent = o
                        .parent
                        .as_deref()
                        .and_then(|p| desired_by_source.get(p).copied());
                    name(o, parent)
                })
                .or_else(|| slug_of.get(org_id).cloned())
                .unwrap_or_default();
            format!("{} in {org_name}", m.email)
        };
        let key = (org_id.as_str(), m.email.as_str());
        match row_for(&m_by_source, &m_by_pair, &m.source_uid, &key, &desired_m) {
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
                if !fields.is_empty() {
                    plan.changes.push(Change {
                        action: Action::Update,
                        kind: "membership",
                        target: target(),
                        fields,
                        source: Some(m.source_uid.clone()),
                        op: Op::UpdateMembership {
                            id: row.id.clone(),
                            m: m.clone(),
                        },
                    });
                }
            }
            None => plan.changes.push(Change {
                action: Action::Create,
                kind: "membership",
                target: target(),
                fields: vec![],
                source: Some(m.source_uid.clone()),
                op: Op::CreateMembership {
                    id: new_id(),
                    org_id: org_id.clone(),
                    root_id: root_id.clone(),
                    m: m.clone(),
                },
            }),
        }
    }

    let org_names = &slug_of;
    let orgs_view = owned::Orgs {
        ids: &ids,
        names: org_names,
    };
    let kept_owned = owned::compute(
        &existing_owned,
        desired,
        &orgs_view,
        options,
        &mut plan.changes,
    )?;

    let kept_projects = projects::compute(
        &existing_projects,
        desired,
        &orgs_view,
        &kept_owned,
        options,
        &mut plan.changes,
    )?;

    if options.prune {
        projects::prune(
            &existing_projects,
            &kept_projects,
            &orgs_view,
            &mut plan.changes,
        );
        owned::prune(&existing_owned, &kept_owned, &orgs_view, &mut plan.changes);
        let kept_m: HashSet<String> = plan
            .changes
            .iter()
            .filter_map(|c| match &c.op {
                Op::UpdateMembership { id, .. } => Some(id.clone()),
                _ => None,
            })
            .collect();
        let slug_by_id: HashMap<&str, &str> = orgs
            .iter()
            .map(|o| (o.id.as_str(), o.slug.as_str()))
            .collect();
        for row in memberships.iter().filter(|r| r.managed) {
            let wanted = row
                .source_uid
                .as_deref()
                .is_some_and(|s| desired_m.contains(s));
            if wanted || kept_m.contains(&row.id) {
                continue;
            }
            let orphan = row.deletion_policy == "Orphan";
            plan.changes.push(Change {
                action: if orphan {
                    Action::Orphan
                } else {
                    Action::Delete
                },
                kind: "membership",
                target: format!(
                    "{} in {}",
                    row.email,
                    slug_by_id.get(row.organization_id.as_str()).unwrap_or(&"?")
                ),
                fields: vec![],
                source: row.source_uid.clone(),
                op: if orphan {
                    Op::OrphanMembership { id: row.id.clone() }
                } else {
                    Op::DeleteMembership { id: row.id.clone() }
                },
            });
        }
        let kept: HashSet<&str> = ids.values().map(|(id, _)| id.as_str()).collect();
        // Sub-organizations before roots; a root keeps its row while any child remains.
        let mut gone: Vec<&OrgRow> = orgs
            .iter()
            .filter(|o| o.managed && !kept.contains(o.id.as_str()))
            .collect();
        gone.sort_by_key(|o| o.parent_id.is_none());
        let mut removed: HashSet<&str> = HashSet::new();
        for row in gone {
            // A root whose sub-organizations stay in the store (orphaned by their own policy,
            // or never suborg's) keeps its row too, unmanaged: the database refuses to remove
            // it, and those rows would mean nothing without it. Its object can still go.
            let has_children = orgs.iter().any(|c| {
                c.parent_id.as_deref() == Some(row.id.as_str()) && !removed.contains(c.id.as_str())
            });
            let orphan = row.deletion_policy == "Orphan" || has_children;
            if has_children && row.deletion_policy != "Orphan" {
                tracing::info!(
                    organization = %row.slug,
                    "sub-organizations remain in the store: the organization's row is kept, no longer managed"
                );
            }
            if !orphan {
                removed.insert(row.id.as_str());
            }
            plan.changes.push(Change {
                action: if orphan {
                    Action::Orphan
                } else {
                    Action::Delete
                },
                kind: "organization",
                target: match row.parent_id.as_deref() {
                    Some(p) => format!("{}/{}", slug_by_id.get(p).unwrap_or(&"?"), row.slug),
                    None => row.slug.clone(),
                },
                fields: vec![],
                source: row.source_uid.clone(),
                op: if orphan {
                    Op::OrphanOrg { id: row.id.clone() }
                } else {
                    Op::DeleteOrg { id: row.id.clone() }
                },
            });
        }
    }
    Ok(plan)
}

/// Rows per multi-row INSERT: bulk applies are bound by round trips, not by rows. SQLite
/// allows 32,766 parameters a statement, PostgreSQL 65,535; a membership row has 10.
fn batch_rows(backend: Backend) -> usize {
    match backend {
        Backend::Sqlite => 1000,
        Backend::Postgres => 5000,
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
    let mut users: Option<HashMap<String, String>> = None;
    let mut i = 0;
    while i < changes.len() {
        let change = &changes[i];
        if matches!(change.op, Op::CreateMembership { .. }) {
            let mut j = i;
            while j < changes.len()
                && j - i < batch_rows(backend)
                && matches!(changes[j].op, Op::CreateMembership { .. })
            {
                j += 1;
            }
            let users = loaded(conn, &mut users).await?;
            insert_batch(conn, &changes[i..j], users, now, backend).await?;
            i = j;
            continue;
        }
        let done = if change.op.is_project() {
            let users = loaded(conn, &mut users).await?;
            projects::execute(conn, &change.op, now, backend, users)
                .await
                .map_err(PlanError::Query)
        } else if change.op.is_owned() {
            let users = loaded(conn, &mut users).await?;
            owned::execute(conn, &change.op, now, backend, users)
                .await
                .map_err(PlanError::Query)
        } else {
            execute_one(conn, &change.op, now).await
        };
        done.map_err(|e| refused(e, change))?;
        i += 1;
    }
    Ok(())
}

/// The database's own words when `e` is a constraint refusing a row.
fn constraint_message(e: &sqlx::Error) -> Option<String> {
    use sqlx::error::ErrorKind;
    let sqlx::Error::Database(d) = e else {
        return None;
    };
    let constraint = !matches!(d.kind(), ErrorKind::Other)
        // SQLite's triggers (migration 4) raise their own constraint errors.
        || d.message().contains("constraint failed");
    constraint.then(|| d.message().to_owned())
}

/// `e` as a conflict of `change`'s object when it is a constraint refusing its row.
fn refused(e: PlanError, change: &Change) -> PlanError {
    match e {
        PlanError::Query(q) => match (constraint_message(&q), &change.source) {
            (Some(message), Some(source)) => PlanError::Conflict(
                Some(source.clone()),
                format!(
                    "the store refused to {} {} {}: {message}",
                    change.action.verb(),
                    change.kind,
                    change.target
                ),
            ),
            _ => PlanError::Query(q),
        },
        other => other,
    }
}

/// Inserts a run of new memberships in a few statements. When the database refuses the run,
/// it is rolled back to where it started and inserted row by row, to name the row refused.
async fn insert_batch(
    conn: &mut AnyConnection,
    batch: &[Change],
    users: &mut HashMap<String, String>,
    now: i64,
    backend: Backend,
) -> Result<(), PlanError> {
    sqlx::query("SAVEPOINT membership_batch")
        .execute(&mut *conn)
        .await?;
    match insert_memberships(conn, batch, users, now, backend).await {
        Ok(()) => {}
        Err(e) if constraint_message(&e).is_some() => {
            sqlx::query("ROLLBACK TO SAVEPOINT membership_batch")
                .execute(&mut *conn)
                .await?;
            // The users the run created went with it.
            *users = load_users(conn).await?;
            for change in batch {
                insert_memberships(conn, std::slice::from_ref(change), users, now, backend)
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

/// The users by email, loaded from the store the first time a change needs them.
async fn loaded<'u>(
    conn: &mut AnyConnection,
    users: &'u mut Option<HashMap<String, String>>,
) -> Result<&'u mut HashMap<String, String>, sqlx::Error> {
    if users.is_none() {
        *users = Some(load_users(conn).await?);
    }
    Ok(users.get_or_insert_default())
}

async fn load_users(conn: &mut AnyConnection) -> Result<HashMap<String, String>, sqlx::Error> {
    Ok(sqlx::query("SELECT email, id FROM users")
        .fetch_all(&mut *conn)
        .await?
        .into_iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect())
}

/// `($1, $2, …extra), ($n+1, …extra)` for `rows` rows of `width` parameters, each row ending
/// with the literal SQL `extra`. SQLite gets `?`: it binds `$N` by looking each name up, which
/// is quadratic in the number of parameters of a statement.
pub(super) fn placeholders(backend: Backend, rows: usize, width: usize, extra: &str) -> String {
    (0..rows)
        .map(|r| {
            let cells: Vec<String> = (1..=width)
                .map(|c| match backend {
                    Backend::Sqlite => "?".to_owned(),
                    Backend::Postgres => format!("${}", r * width + c),
                })
                .collect();
            format!("({}{extra})", cells.join(", "))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Inserts a run of new memberships, and the users they need, a few statements in all.
async fn insert_memberships(
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

async fn execute_one(conn: &mut AnyConnection, op: &Op, now: i64) -> Result<(), PlanError> {
    {
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
            Op::CreateMembership { .. } => unreachable!("inserted in batches"),
            Op::UpdateMembership { id, m } => {
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
            }
            Op::DeleteMembership { id } | Op::DeleteOrg { id } => {
                let sql = match op {
                    Op::DeleteOrg { .. } => "DELETE FROM organizations WHERE id = $1",
                    _ => "DELETE FROM memberships WHERE id = $1",
                };
                sqlx::query(sql).bind(id).execute(&mut *conn).await?;
            }
            Op::OrphanMembership { id } | Op::OrphanOrg { id } => {
                let sql = match op {
                    Op::OrphanOrg { .. } => {
                        "UPDATE organizations SET managed = 0, source_uid = NULL, updated_at = $2 WHERE id = $1"
                    }
                    _ => {
                        "UPDATE memberships SET managed = 0, source_uid = NULL, updated_at = $2 WHERE id = $1"
                    }
                };
                sqlx::query(sql)
                    .bind(id)
                    .bind(now)
                    .execute(&mut *conn)
                    .await?;
            }
            // Groups, identities and subject memberships: see `Op::is_owned`.
            _ => unreachable!("carried out by the owned module"),
        }
    }
    Ok(())
}
