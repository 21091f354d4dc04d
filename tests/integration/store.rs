//! The store conformance suite: every test runs on a fresh SQLite file and, when
//! `SUBORG_TEST_POSTGRES` names a server (`.ci/run` starts one), on a fresh PostgreSQL database.

use std::path::Path;

use sqlx::Row;
use suborg::manifest::Loader;
use suborg::rows::desired_from;
use suborg::store::{
    Action, ApplyOptions, Backend, Desired, SqlStore, Store, StoreError, source_object,
};

/// A throwaway store; the SQLite file lives as long as this value.
struct Fresh {
    dsn: String,
    _dir: Option<tempfile::TempDir>,
}

async fn fresh_stores() -> Vec<Fresh> {
    let dir = tempfile::tempdir().unwrap();
    let mut out = vec![Fresh {
        dsn: format!("sqlite://{}", dir.path().join("store.db").display()),
        _dir: Some(dir),
    }];
    if let Ok(admin) = std::env::var("SUBORG_TEST_POSTGRES") {
        // One database per test, so tests run in parallel without seeing each other.
        sqlx::any::install_default_drivers();
        let name = format!("suborg_test_{}", uuid::Uuid::new_v4().simple());
        let pool = sqlx::AnyPool::connect(&admin)
            .await
            .unwrap_or_else(|e| panic!("SUBORG_TEST_POSTGRES is set but unreachable: {e}"));
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&pool)
            .await
            .unwrap();
        pool.close().await;
        let base = admin.rsplit_once('/').map(|(b, _)| b).unwrap();
        out.push(Fresh {
            dsn: format!("{base}/{name}"),
            _dir: None,
        });
    }
    out
}

fn desired(path: &Path) -> Desired {
    let mut loader = Loader::new("default");
    suborg::cli::files::load(&[path.to_owned()], 8 << 20, &mut loader);
    let now = k8s_openapi::jiff::Timestamp::now();
    let (report, set, accepted) = loader.finish(now);
    assert_eq!(report.errors, 0, "{:?}", report.problems);
    desired_from(&set, &accepted, now)
}

fn acme() -> Desired {
    desired(&Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/acme"))
}

/// Every organization's slug and whether suborg manages it, by slug.
async fn slugs_and_managed(store: &SqlStore) -> Vec<(String, i64)> {
    sqlx::query("SELECT slug, managed FROM organizations ORDER BY slug")
        .fetch_all(store.pool())
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

async fn count(store: &SqlStore, sql: &str) -> i64 {
    sqlx::query(sql)
        .fetch_one(store.pool())
        .await
        .unwrap()
        .get::<i64, _>(0)
}

const OPTS: ApplyOptions = ApplyOptions {
    prune: false,
    adopt: false,
};
const PRUNE: ApplyOptions = ApplyOptions {
    prune: true,
    adopt: false,
};

#[tokio::test]
async fn apply_is_idempotent() {
    for f in fresh_stores().await {
        let store = SqlStore::open(&f.dsn).await.unwrap();
        let d = acme();
        let plan = store.apply(&d, OPTS).await.unwrap();
        assert_eq!(
            plan.count(Action::Create),
            38,
            "4 organizations, 15 memberships (admins and an invite included), 3 groups, 1 identity, 2 added to engineering, 4 connections, gateways and relays, 2 projects, 7 project memberships"
        );
        let stamp = count(&store, "SELECT MAX(updated_at) FROM memberships").await;
        let again = store.apply(&d, OPTS).await.unwrap();
        assert!(again.is_empty(), "{:?}: {again:?}", f.dsn);
        assert_eq!(
            count(&store, "SELECT MAX(updated_at) FROM memberships").await,
            stamp,
            "no row touched"
        );
        // Seven members and one user provisioned by a project invite.
        assert_eq!(count(&store, "SELECT COUNT(*) FROM users").await, 8);
        let tree = store.tree().await.unwrap();
        assert_eq!(tree.len(), 1);
        assert_eq!(tree[0].members, 8);
        let subs: Vec<(&str, i64)> = tree[0]
            .sub_organizations
            .iter()
            .map(|s| (s.slug.as_str(), s.members))
            .collect();
        assert_eq!(
            subs,
            [("engineering", 3), ("marketing", 2), ("sales-emea", 2)]
        );
        store.close().await;
    }
}

#[tokio::test]
async fn the_database_enforces_the_invariants() {
    for f in fresh_stores().await {
        let store = SqlStore::open(&f.dsn).await.unwrap();
        store.apply(&acme(), OPTS).await.unwrap();
        let pool = store.pool();
        let id = |slug: &'static str| async move {
            sqlx::query("SELECT id FROM organizations WHERE slug = $1")
                .bind(slug)
                .fetch_one(pool)
                .await
                .unwrap()
                .get::<String, _>(0)
        };
        let (acme_id, eng_id) = (id("acme").await, id("engineering").await);
        let insert_org = "INSERT INTO organizations (id, managed, depth, parent_id, parent_depth, parent_key, root_id, slug, display_name, deletion_policy, created_at, updated_at) VALUES ($1, 0, $2, $3, $4, $5, $6, $7, 'X', 'Delete', 0, 0)";
        // One level of nesting: a child of a sub-organization is refused, however it is dressed.
        for (depth, parent_depth) in [(1i64, 0i64), (1, 1)] {
            let r = sqlx::query(insert_org)
                .bind("nested")
                .bind(depth)
                .bind(&eng_id)
                .bind(parent_depth)
                .bind(&eng_id)
                .bind(&eng_id)
                .bind("nested")
                .execute(pool)
                .await;
            assert!(
                r.is_err(),
                "{}: nesting under a sub-organization was accepted",
                f.dsn
            );
        }
        // Slugs are unique under a parent.
        let r = sqlx::query(insert_org)
            .bind("dup")
            .bind(1i64)
            .bind(&acme_id)
            .bind(0i64)
            .bind(&acme_id)
            .bind(&acme_id)
            .bind("engineering")
            .execute(pool)
            .await;
        assert!(r.is_err(), "{}: duplicate slug accepted", f.dsn);
        // What the API enforces on single fields: a slug of lowercase letters, digits and '-',
        // trimmed display names; inserted or updated around suborg, they are refused too.
        for (slug, display) in [
            ("Engineering", "X"),
            ("eng ", "X"),
            ("eng_x", "X"),
            ("ok", " X"),
            ("ok", "X "),
        ] {
            let r = sqlx::query("INSERT INTO organizations (id, managed, depth, parent_key, root_id, slug, display_name, deletion_policy, created_at, updated_at) VALUES ('bad', 0, 0, '', 'bad', $1, $2, 'Delete', 0, 0)")
                .bind(slug)
                .bind(display)
                .execute(pool)
                .await;
            assert!(
                r.is_err(),
                "{}: organization {slug:?} / {display:?} accepted",
                f.dsn
            );
        }
        for set in ["slug = 'Acme'", "display_name = ' Acme'"] {
            let r = sqlx::query(&format!("UPDATE organizations SET {set} WHERE id = $1"))
                .bind(&acme_id)
                .execute(pool)
                .await;
            assert!(r.is_err(), "{}: {set} accepted", f.dsn);
        }
        for table in ["groups", "machine_identities"] {
            let r = sqlx::query(&format!(
                "UPDATE {table} SET display_name = display_name || ' '"
            ))
            .execute(pool)
            .await;
            assert!(
                r.is_err(),
                "{}: a padded display name in {table} accepted",
                f.dsn
            );
        }
        // Authentication only at the root.
        let r = sqlx::query("UPDATE organizations SET auth = '{}' WHERE id = $1")
            .bind(&eng_id)
            .execute(pool)
            .await;
        assert!(
            r.is_err(),
            "{}: authentication on a sub-organization accepted",
            f.dsn
        );
        // A sub-organization member must be a member of the root.
        sqlx::query(
            "INSERT INTO users (id, email, created_at) VALUES ('u-zed', 'zed@acme.example', 0)",
        )
        .execute(pool)
        .await
        .unwrap();
        let r = sqlx::query("INSERT INTO memberships (id, managed, organization_id, root_id, subject_kind, user_id, roles, deletion_policy, created_at, updated_at) VALUES ('m-zed', 0, $1, $2, 'User', 'u-zed', '[]', 'Delete', 0, 0)")
            .bind(&eng_id).bind(&acme_id).execute(pool).await;
        assert!(
            r.is_err(),
            "{}: sub-organization member outside the root accepted",
            f.dsn
        );
        // ...and cannot claim another root to slip past that.
        let r = sqlx::query("INSERT INTO memberships (id, managed, organization_id, root_id, subject_kind, user_id, roles, deletion_policy, created_at, updated_at) VALUES ('m-zed', 0, $1, $1, 'User', 'u-zed', '[]', 'Delete', 0, 0)")
            .bind(&eng_id).execute(pool).await;
        assert!(
            r.is_err(),
            "{}: a membership with the wrong root accepted",
            f.dsn
        );
        // Emails are unique case-insensitively (stored lowercased).
        let r = sqlx::query(
            "INSERT INTO users (id, email, created_at) VALUES ('u-x', 'Carol@acme.example', 0)",
        )
        .execute(pool)
        .await;
        assert!(r.is_err(), "{}: mixed-case email accepted", f.dsn);
        // A root with sub-organizations cannot be deleted.
        let r = sqlx::query("DELETE FROM organizations WHERE id = $1")
            .bind(&acme_id)
            .execute(pool)
            .await;
        assert!(r.is_err(), "{}: root with children deleted", f.dsn);
        // Removing a user from the root removes their sub-organization memberships with it.
        let carol = "(SELECT id FROM users WHERE email = 'carol@acme.example')";
        assert_eq!(
            count(
                &store,
                &format!("SELECT COUNT(*) FROM memberships WHERE user_id = {carol}")
            )
            .await,
            2
        );
        sqlx::query(&format!(
            "DELETE FROM memberships WHERE organization_id = $1 AND user_id = {carol}"
        ))
        .bind(&acme_id)
        .execute(pool)
        .await
        .unwrap();
        assert_eq!(
            count(
                &store,
                &format!("SELECT COUNT(*) FROM memberships WHERE user_id = {carol}")
            )
            .await,
            0,
            "{}",
            f.dsn
        );
        store.close().await;
    }
}

#[tokio::test]
async fn prune_follows_the_deletion_policy() {
    for f in fresh_stores().await {
        let store = SqlStore::open(&f.dsn).await.unwrap();
        let full = acme();
        store.apply(&full, OPTS).await.unwrap();
        // Drop sales (deletionPolicy Delete) and marketing (Orphan) with everything in them.
        let mut less = full.clone();
        let gone: Vec<String> = less
            .organizations
            .iter()
            .filter(|o| o.source_name == "sales" || o.source_name == "marketing")
            .map(|o| o.source_uid.clone())
            .collect();
        less.organizations.retain(|o| !gone.contains(&o.source_uid));
        for m in less
            .memberships
            .iter()
            .filter(|m| gone.contains(&m.organization))
        {
            less.live.remove(source_object(&m.source_uid));
        }
        less.memberships.retain(|m| !gone.contains(&m.organization));
        less.live.retain(|s| !gone.contains(s));
        assert!(
            store.apply(&less, OPTS).await.unwrap().is_empty(),
            "without --prune nothing goes"
        );
        let plan = store.apply(&less, PRUNE).await.unwrap();
        // Deleted: sales, dana (its admin), frank there, and alice in marketing (her own
        // membership says Delete). Orphaned: marketing and erin, its admin, which follow
        // marketing's Orphan policy.
        assert_eq!(plan.count(Action::Delete), 4, "{plan:#?}");
        assert_eq!(plan.count(Action::Orphan), 2, "{plan:#?}");
        let orgs: Vec<String> = sqlx::query("SELECT slug FROM organizations ORDER BY slug")
            .fetch_all(store.pool())
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert_eq!(
            orgs,
            ["acme", "engineering", "marketing"],
            "marketing is orphaned, not deleted"
        );
        assert_eq!(
            count(
                &store,
                "SELECT COUNT(*) FROM organizations WHERE managed = 1"
            )
            .await,
            2
        );
        assert!(store.apply(&less, PRUNE).await.unwrap().is_empty());

        // Everything deleted (`kubectl delete -f`): the root cannot leave while marketing's
        // orphaned row stays, so it stays too, no longer managed, and the plan goes through.
        let nothing = Desired::default();
        let plan = store.apply(&nothing, PRUNE).await.unwrap();
        assert!(plan.count(Action::Delete) > 0, "{plan:#?}");
        // The plan says why acme, whose policy is Delete, stays.
        let kept = plan
            .changes
            .iter()
            .find(|c| c.action == Action::Orphan && c.target == "acme")
            .unwrap_or_else(|| panic!("acme is not orphaned: {plan:#?}"));
        assert_eq!(
            kept.to_string(),
            "  = organization acme (kept for the sub-organizations that remain in the store: marketing)"
        );
        let orgs = slugs_and_managed(&store).await;
        assert_eq!(
            orgs,
            [("acme".to_owned(), 0), ("marketing".to_owned(), 0)],
            "engineering deleted; acme kept for its orphaned child"
        );
        assert!(store.apply(&nothing, PRUNE).await.unwrap().is_empty());
        store.close().await;
    }
}

/// An object deleted right after its policy changed, before any apply wrote the change: its
/// rows go as [`Desired::deleting`] says, not as last written.
#[tokio::test]
async fn the_policy_of_an_object_being_deleted_is_the_one_it_has_now() {
    for f in fresh_stores().await {
        let store = SqlStore::open(&f.dsn).await.unwrap();
        let full = acme();
        store.apply(&full, OPTS).await.unwrap();
        let uid = |slug: &str| {
            full.organizations
                .iter()
                .find(|o| o.source_name == slug)
                .map(|o| o.source_uid.clone())
                .unwrap()
        };
        let (sales, marketing) = (uid("sales"), uid("marketing"));
        // Written as Delete (sales) and Orphan (marketing); deleted as Orphan and Delete.
        let mut less = full.clone();
        let gone = [sales.clone(), marketing.clone()];
        less.organizations.retain(|o| !gone.contains(&o.source_uid));
        less.memberships.retain(|m| !gone.contains(&m.organization));
        less.live.retain(|s| !gone.contains(s));
        less.deleting = [(sales, "Orphan"), (marketing, "Delete")].into();
        store.apply(&less, PRUNE).await.unwrap();
        let orgs = slugs_and_managed(&store).await;
        assert_eq!(
            orgs,
            [
                ("acme".to_owned(), 1),
                ("engineering".to_owned(), 1),
                ("sales-emea".to_owned(), 0)
            ],
            "sales is orphaned, marketing deleted"
        );
        store.close().await;
    }
}

/// A sub-organization deleted with `Orphan` leaves its row in place, so the rows of objects
/// that still exist in it (refused now, their organization gone) stay too: only a deleted
/// organization takes them with it.
#[tokio::test]
async fn an_orphaned_organization_keeps_the_rows_of_objects_still_in_it() {
    for f in fresh_stores().await {
        let store = SqlStore::open(&f.dsn).await.unwrap();
        let full = acme();
        store.apply(&full, PRUNE).await.unwrap();
        let eng = full
            .organizations
            .iter()
            .find(|o| o.source_name == "engineering")
            .map(|o| o.source_uid.clone())
            .unwrap();
        let conn = "AppConnection/team-engineering/github";
        let api = "Project/team-engineering/api";
        let conn_id = id_of(&store, "org_resources", "source_uid", conn).await;
        let api_id = id_of(&store, "projects", "source_uid", api).await;

        // engineering deleted with Orphan; everything in it still exists, refused.
        let mut d = full.clone();
        d.organizations.retain(|o| o.source_uid != eng);
        d.memberships.retain(|m| m.organization != eng);
        d.subject_memberships.retain(|m| m.organization != eng);
        d.project_memberships.retain(|m| m.organization != eng);
        let mut kept = Vec::new();
        kept.extend(
            d.groups
                .iter()
                .filter(|g| g.group.organization == eng)
                .map(|g| g.group.source_uid.clone()),
        );
        kept.extend(
            d.identities
                .iter()
                .filter(|i| i.organization == eng)
                .map(|i| i.source_uid.clone()),
        );
        kept.extend(
            d.resources
                .iter()
                .filter(|r| r.organization == eng)
                .map(|r| r.source_uid.clone()),
        );
        kept.extend(
            d.projects
                .iter()
                .filter(|p| p.organization == eng)
                .map(|p| p.source_uid.clone()),
        );
        d.groups.retain(|g| g.group.organization != eng);
        d.identities.retain(|i| i.organization != eng);
        d.resources.retain(|r| r.organization != eng);
        d.projects.retain(|p| p.organization != eng);
        d.kept = kept.into_iter().map(|s| (s, Some("Delete"))).collect();
        d.live.remove(&eng);
        d.deleting = [(eng.clone(), "Orphan")].into();
        let plan = store.apply(&d, PRUNE).await.unwrap();
        assert!(
            !plan
                .changes
                .iter()
                .any(|c| c.source.as_deref() == Some(conn) || c.source.as_deref() == Some(api)),
            "{}: {plan:#?}",
            f.dsn
        );
        assert_eq!(
            id_of(&store, "org_resources", "source_uid", conn).await,
            conn_id
        );
        assert_eq!(id_of(&store, "projects", "source_uid", api).await, api_id);
        assert!(
            slugs_and_managed(&store)
                .await
                .contains(&("engineering".to_owned(), 0)),
            "{}",
            f.dsn
        );
        store.close().await;
    }
}

/// An `Orphan` sub-organization leaves its admin's row in place, unless the admin leaves the
/// root in the same plan: rule 9 then takes that row (the database cascades), and the plan
/// says it is deleted rather than left in place.
#[tokio::test]
async fn an_orphaned_row_that_rule_9_removes_is_reported_deleted() {
    for f in fresh_stores().await {
        let store = SqlStore::open(&f.dsn).await.unwrap();
        let full = acme();
        store.apply(&full, PRUNE).await.unwrap();
        let marketing = full
            .organizations
            .iter()
            .find(|o| o.source_name == "marketing")
            .unwrap()
            .source_uid
            .clone();
        let mut less = full.clone();
        less.organizations.retain(|o| o.source_uid != marketing);
        less.memberships
            .retain(|m| m.organization != marketing && m.email != "erin@acme.example");
        let plan = store.apply(&less, PRUNE).await.unwrap();
        let erin: Vec<(Action, &str)> = plan
            .changes
            .iter()
            .filter(|c| c.target.starts_with("erin@acme.example"))
            .map(|c| (c.action, c.target.as_str()))
            .collect();
        assert_eq!(
            erin,
            [
                (Action::Delete, "erin@acme.example in acme"),
                (Action::Delete, "erin@acme.example in acme/marketing"),
            ],
            "{}: {plan:#?}",
            f.dsn
        );
        assert_eq!(
            count(
                &store,
                "SELECT COUNT(*) FROM memberships m JOIN users u ON u.id = m.user_id WHERE u.email = 'erin@acme.example'"
            )
            .await,
            0,
            "{}",
            f.dsn
        );
        store.close().await;
    }
}

/// A row is named alike when it is created and when it goes, so its Events read as one story:
/// `ROOT/SUB` for an organization, a group or identity by `namespace/name`, never a row id.
#[tokio::test]
async fn a_row_is_named_alike_when_created_and_when_removed() {
    for f in fresh_stores().await {
        let store = SqlStore::open(&f.dsn).await.unwrap();
        let full = acme();
        let named = |plan: &suborg::store::Plan, actions: &[Action]| {
            let mut v: Vec<String> = plan
                .changes
                .iter()
                .filter(|c| actions.contains(&c.action))
                .map(|c| format!("{}: {}", c.kind, c.target))
                .collect();
            v.sort();
            v
        };
        let created = named(&store.apply(&full, PRUNE).await.unwrap(), &[Action::Create]);
        let removed = named(
            &store.apply(&Desired::default(), PRUNE).await.unwrap(),
            &[Action::Delete, Action::Orphan],
        );
        assert!(
            created
                .iter()
                .any(|t| t.starts_with("project membership: Group ")),
            "{created:#?}"
        );
        assert_eq!(created, removed, "{}", f.dsn);
        store.close().await;
    }
}

/// A row an `Orphan` policy leaves in place but the database removes in the same transaction
/// (here a project membership whose user leaves the root) is reported deleted, not orphaned.
#[tokio::test]
async fn a_row_the_cascade_removes_is_not_reported_orphaned() {
    for f in fresh_stores().await {
        let store = SqlStore::open(&f.dsn).await.unwrap();
        let mut full = acme();
        let pm = full
            .project_memberships
            .iter_mut()
            .find(|m| m.source_name == "billing-grace")
            .expect("grace is in billing");
        pm.deletion_policy = "Orphan";
        let pm = pm.source_uid.clone();
        store.apply(&full, PRUNE).await.unwrap();
        let mut gone = full.clone();
        gone.project_memberships.retain(|m| m.source_uid != pm);
        gone.memberships.retain(|m| m.email != "grace@acme.example");
        gone.live.clear(); // both objects deleted
        let plan = store.apply(&gone, PRUNE).await.unwrap();
        let grace: Vec<(Action, &str)> = plan
            .changes
            .iter()
            .filter(|c| c.target.contains("grace@acme.example"))
            .map(|c| (c.action, c.kind))
            .collect();
        assert_eq!(
            grace,
            [
                (Action::Delete, "project membership"),
                (Action::Delete, "membership")
            ],
            "{}: {plan:#?}",
            f.dsn
        );
        assert!(
            store
                .access("grace@acme.example")
                .await
                .unwrap()
                .is_none_or(|a| a.is_empty())
        );
        store.close().await;
    }
}

/// `Orphan` applies when an object is deleted. A row its object, still there, no longer asks
/// for (a membership refused, an admin taken off an `Orphan` sub-organization's list) is
/// access that must go: it is deleted whatever the policy.
#[tokio::test]
async fn a_row_a_live_object_no_longer_asks_for_is_deleted_whatever_its_policy() {
    for f in fresh_stores().await {
        let store = SqlStore::open(&f.dsn).await.unwrap();
        let mut full = acme();
        let marketing = full
            .organizations
            .iter()
            .find(|o| o.source_name == "marketing")
            .unwrap()
            .source_uid
            .clone();
        // A member of engineering whose own policy is Orphan.
        let carol = full
            .memberships
            .iter_mut()
            .find(|m| {
                m.organization != marketing
                    && m.source_uid.contains("carol")
                    && !m.source_uid.contains('#')
            })
            .expect("carol has a membership of her own");
        carol.deletion_policy = "Orphan";
        let carol = carol.source_uid.clone();
        store.apply(&full, PRUNE).await.unwrap();
        let erin = format!("{marketing}#admin:erin@acme.example");
        let mut less = full.clone();
        less.memberships
            .retain(|m| m.source_uid != erin && m.source_uid != carol);
        // Deleted objects: their policy holds.
        let mut deleted = less.clone();
        deleted.live.clear();
        let plan = store.plan(&deleted, PRUNE).await.unwrap();
        assert_eq!(plan.count(Action::Orphan), 2, "{}: {plan:#?}", f.dsn);
        // Still there (`live`, as the rows of the objects build it): gone.
        assert!(less.live.contains(&marketing) && less.live.contains(&carol));
        let plan = store.apply(&less, PRUNE).await.unwrap();
        let gone: Vec<(Action, &str)> = plan
            .changes
            .iter()
            .map(|c| (c.action, c.source.as_deref().unwrap_or_default()))
            .collect();
        assert_eq!(
            gone,
            [
                (Action::Delete, carol.as_str()),
                (Action::Delete, erin.as_str())
            ],
            "{}: {plan:#?}",
            f.dsn
        );
        assert_eq!(
            count(&store, "SELECT COUNT(*) FROM memberships WHERE managed = 0").await,
            0,
            "{}",
            f.dsn
        );
        store.close().await;
    }
}

/// A row whose object is gone passes to the same object re-created (a new uid: restored from a
/// backup, replaced), never to another object that happens to take the same slug: that one
/// would inherit the row's id and everything hanging off it.
#[tokio::test]
async fn a_row_passes_only_to_the_object_that_made_it() {
    for f in fresh_stores().await {
        let store = SqlStore::open(&f.dsn).await.unwrap();
        let full = acme();
        store.apply(&full, PRUNE).await.unwrap();
        let api = "Project/team-engineering/api";
        let id = id_of(&store, "projects", "source_uid", api).await;
        let eng = full.organizations[1].clone();
        for (what, other, holder) in [
            (
                "project",
                true,
                "held in the store by Project team-engineering/api,",
            ),
            (
                "sub-organization",
                false,
                "held in the store by SubOrganization engineering,",
            ),
        ] {
            let mut d = full.clone();
            if other {
                let p = d.projects.iter_mut().find(|p| p.source_uid == api).unwrap();
                p.source_uid = "Project/team-engineering/thief".into();
                p.source_name = "thief".into();
                p.name = "team-engineering/thief".into();
            } else {
                let o = d
                    .organizations
                    .iter_mut()
                    .find(|o| o.source_uid == eng.source_uid)
                    .unwrap();
                o.source_uid = "SubOrganization/other".into();
                o.source_name = "other".into();
            }
            match store.apply(&d, PRUNE).await {
                Err(StoreError::SourceConflicts { conflicts }) => {
                    assert!(
                        conflicts.iter().any(|c| c.message.contains(holder)),
                        "{}: {what}: {conflicts:?}",
                        f.dsn
                    );
                }
                other => panic!("{}: {what}: {other:?}", f.dsn),
            }
        }
        assert_eq!(id_of(&store, "projects", "source_uid", api).await, id);
        // The same project re-created: a new uid, its own name.
        let mut again = full.clone();
        let p = again
            .projects
            .iter_mut()
            .find(|p| p.source_uid == api)
            .unwrap();
        p.source_uid = "uid-of-the-restored-api".into();
        for m in &mut again.project_memberships {
            if m.project == api {
                m.project = "uid-of-the-restored-api".into();
            }
        }
        store.apply(&again, PRUNE).await.unwrap();
        assert_eq!(
            id_of(&store, "projects", "source_uid", "uid-of-the-restored-api").await,
            id
        );
        store.close().await;
    }
}

/// One apply names every object of a table whose rows conflict, not only the first, and not
/// the objects that merely depend on one (a sub-organization of a root in conflict): the caller
/// leaves them all out at once and the rest goes in on the next pass.
#[tokio::test]
async fn every_conflict_of_a_table_is_named_in_one_pass() {
    use suborg::store::ObjectConflict;
    let org = |uid: String, parent: Option<String>, slug: String| {
        desired_org(&uid, parent.as_deref(), slug)
    };
    for f in fresh_stores().await {
        let store = SqlStore::open(&f.dsn).await.unwrap();
        let mut d = Desired::default();
        for i in 0..6 {
            d.organizations
                .push(org(format!("root-{i}"), None, format!("root-{i}")));
            d.organizations.push(org(
                format!("sub-{i}"),
                Some(format!("root-{i}")),
                format!("team-{i}"),
            ));
        }
        // Rows for the even roots, written around suborg.
        for i in [0, 2, 4] {
            sqlx::query(&format!(
                "INSERT INTO organizations (id, managed, depth, parent_key, root_id, slug, display_name, deletion_policy, created_at, updated_at) \
                 VALUES ('foreign-{i}', 0, 0, '', 'foreign-{i}', 'root-{i}', 'x', 'Delete', 0, 0)"
            ))
            .execute(store.pool())
            .await
            .unwrap();
        }
        let err = store.apply(&d, PRUNE).await.unwrap_err();
        let StoreError::SourceConflicts { conflicts } = &err else {
            panic!("{}: {err:?}", f.dsn)
        };
        let uids: Vec<&str> = conflicts.iter().map(|c| c.uid.as_str()).collect();
        assert_eq!(uids, ["root-0", "root-2", "root-4"], "{}: {err}", f.dsn);
        assert!(
            conflicts
                .iter()
                .all(|ObjectConflict { message, .. }| message.contains("suborg does not manage it")),
            "{err}"
        );
        // Every message is in the error's text, one a line.
        assert_eq!(err.to_string().lines().count(), 3, "{err}");
        assert_eq!(
            count(
                &store,
                "SELECT COUNT(*) FROM organizations WHERE managed = 1"
            )
            .await,
            0,
            "nothing written"
        );
        // Without them and their children, the rest goes in at once.
        d.organizations.retain(|o| {
            !["root-0", "root-2", "root-4"]
                .iter()
                .any(|r| o.source_uid == *r || o.parent.as_deref() == Some(*r))
        });
        store.apply(&d, PRUNE).await.unwrap();
        assert_eq!(
            count(
                &store,
                "SELECT COUNT(*) FROM organizations WHERE managed = 1"
            )
            .await,
            6,
            "{}",
            f.dsn
        );
        store.close().await;
    }
}

#[tokio::test]
async fn rows_suborg_did_not_create_are_conflicts_unless_adopted() {
    for f in fresh_stores().await {
        let store = SqlStore::open(&f.dsn).await.unwrap();
        sqlx::query("INSERT INTO organizations (id, managed, depth, parent_key, root_id, slug, display_name, deletion_policy, created_at, updated_at) VALUES ('legacy', 0, 0, '', 'legacy', 'acme', 'Legacy', 'Delete', 0, 0)")
            .execute(store.pool()).await.unwrap();
        let err = store.apply(&acme(), OPTS).await.unwrap_err();
        assert!(
            matches!(
                err,
                StoreError::Conflict(_) | StoreError::SourceConflicts { .. }
            ),
            "{err}"
        );
        assert!(
            err.to_string().contains(
                "organization acme already exists in the store and suborg does not manage it"
            ),
            "{err}"
        );
        assert_eq!(
            count(&store, "SELECT COUNT(*) FROM memberships").await,
            0,
            "nothing written"
        );
        let plan = store
            .apply(
                &acme(),
                ApplyOptions {
                    prune: false,
                    adopt: true,
                },
            )
            .await
            .unwrap();
        assert_eq!(plan.changes[0].action, Action::Update);
        assert_eq!(
            plan.changes[0].fields,
            [
                "source",
                "displayName",
                "authentication",
                "memberNamespaces"
            ]
        );
        assert_eq!(
            count(
                &store,
                "SELECT COUNT(*) FROM organizations WHERE id = 'legacy' AND managed = 1"
            )
            .await,
            1
        );
        store.close().await;
    }
}

#[tokio::test]
async fn a_renamed_source_keeps_its_row() {
    /// Everything in organization `from` moved to `to`.
    fn repoint(d: &mut Desired, from: &str, to: &str) {
        let to = to.to_owned();
        for m in &mut d.memberships {
            if m.organization == from {
                m.organization.clone_from(&to);
            }
        }
        for g in &mut d.groups {
            if g.group.organization == from {
                g.group.organization.clone_from(&to);
            }
        }
        for m in &mut d.subject_memberships {
            if m.organization == from {
                m.organization.clone_from(&to);
            }
        }
        for r in &mut d.resources {
            if r.organization == from {
                r.organization.clone_from(&to);
            }
        }
        for p in &mut d.projects {
            if p.organization == from {
                p.organization.clone_from(&to);
            }
        }
        for m in &mut d.project_memberships {
            if m.organization == from {
                m.organization.clone_from(&to);
            }
        }
    }
    for f in fresh_stores().await {
        let store = SqlStore::open(&f.dsn).await.unwrap();
        let d = acme();
        store.apply(&d, OPTS).await.unwrap();
        let before = count(&store, "SELECT COUNT(*) FROM organizations").await;
        let mut renamed = d.clone();
        // A delete-and-recreate: a new uid for engineering, same slug.
        let old = renamed.organizations[1].source_uid.clone();
        renamed.organizations[1].source_uid = "new-uid".into();
        repoint(&mut renamed, &old, "new-uid");
        let plan = store.apply(&renamed, PRUNE).await.unwrap();
        assert_eq!(plan.count(Action::Create), 0, "{plan:#?}");
        assert_eq!(plan.count(Action::Delete), 0, "{plan:#?}");
        assert_eq!(
            plan.changes
                .iter()
                .filter(|c| c.kind == "organization")
                .count(),
            1
        );
        assert_eq!(
            count(&store, "SELECT COUNT(*) FROM organizations").await,
            before
        );

        // Another name is another object: the row does not pass to it, even when this apply
        // prunes the old one, and the message says how to get there in two applies.
        let mut other = renamed.clone();
        other.organizations[1].source_uid = "other-uid".into();
        other.organizations[1].source_name = "platform".into();
        repoint(&mut other, "new-uid", "other-uid");
        let err = store.apply(&other, PRUNE).await.unwrap_err();
        let Some((uid, message)) = only_conflict(&err) else {
            panic!("{}: {err:?}", f.dsn)
        };
        assert_eq!(uid, "other-uid");
        assert!(
            message.contains("this apply would prune that row")
                && message.contains("apply once without SubOrganization platform"),
            "{message}"
        );
        store.close().await;
    }
}

/// The sources whose rows a plan changed, as the controller hands them to `index_after`.
fn sources(plan: &suborg::store::Plan) -> std::collections::HashSet<&str> {
    plan.changes
        .iter()
        .map(|c| {
            c.source
                .as_deref()
                .expect("every change of a managed row has a source")
        })
        .collect()
}

/// The acme tree's desired state whole, and with each of its objects taken away in turn (its
/// dependants with it: a root member's sub-organization access goes by cascade).
fn acme_without_each() -> (Desired, Vec<Desired>) {
    let now = k8s_openapi::jiff::Timestamp::now();
    let mut loader = Loader::new("default");
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/acme");
    suborg::cli::files::load(&[dir], 8 << 20, &mut loader);
    let (_, full, _) = loader.finish(now);
    let desired_of = |set: &suborg::domain::model::ObjectSet| {
        desired_from(set, &suborg::domain::check(set, now).accepted, now)
    };
    let mut without_each = Vec::new();
    macro_rules! each {
        ($($field:ident),*) => {$(
            for i in 0..full.$field.len() {
                let mut set = full.clone();
                set.$field.remove(i);
                without_each.push(desired_of(&set));
            }
        )*};
    }
    each!(
        organizations,
        sub_organizations,
        memberships,
        groups,
        identities,
        connections,
        gateways,
        relays,
        projects,
        project_memberships
    );
    assert!(without_each.len() > 20, "the acme tree has every kind");
    (desired_of(&full), without_each)
}

/// Rows an Orphan policy left behind are taken back when their object returns.
const PRUNE_ADOPT: ApplyOptions = ApplyOptions {
    prune: true,
    adopt: true,
};

/// The index the controller carries from one sync to the next, read again only where a write
/// changed rows, is what a full read returns, after each object of the acme tree is taken away
/// and after it comes back.
#[tokio::test]
async fn the_index_after_a_write_is_the_index_read_whole() {
    let (whole, without_each) = acme_without_each();
    for f in fresh_stores().await {
        let store = SqlStore::open(&f.dsn).await.unwrap();
        store.apply(&whole, PRUNE).await.unwrap();
        let mut index = store.index().await.unwrap();
        for (step, desired) in without_each.iter().flat_map(|d| [d, &whole]).enumerate() {
            let plan = store.apply(desired, PRUNE_ADOPT).await.unwrap();
            index = store
                .index_after(&index, &sources(&plan))
                .await
                .unwrap()
                .unwrap_or_else(|| panic!("step {step}: no row went around the write: {plan:#?}"));
            assert_eq!(
                index,
                store.index().await.unwrap(),
                "step {step}: {plan:#?}"
            );
        }
        // A row gone behind the index's back (another writer): the count tells.
        sqlx::query("DELETE FROM memberships WHERE id IN (SELECT id FROM memberships WHERE source_uid IS NOT NULL LIMIT 1)")
            .execute(store.pool())
            .await
            .unwrap();
        let unrelated = std::collections::HashSet::from(["uid-of-nothing"]);
        let after = store.index_after(&index, &unrelated).await.unwrap();
        assert_eq!(after, None, "the index must be read whole");
        store.close().await;
    }
}

/// What a plan says it does, without the row ids each store makes up.
fn changes(plan: &suborg::store::Plan) -> Vec<String> {
    let is_id = |w: &str| w.len() == 36 && w.matches('-').count() == 4;
    let mut out: Vec<String> = plan
        .changes
        .iter()
        .map(|c| {
            let target: Vec<&str> = c
                .target
                .split(' ')
                .map(|w| if is_id(w) { "<id>" } else { w })
                .collect();
            format!(
                "{:?} {} {} {:?} {:?}",
                c.action,
                c.kind,
                target.join(" "),
                c.fields,
                c.source
            )
        })
        .collect();
    out.sort();
    out
}

/// A plan given what the last apply wrote reads and plans only the memberships that changed
/// since; it makes the same changes as a plan of everything, at every step: each object of the
/// acme tree taken away and brought back, and each membership's roles changed and changed back.
#[tokio::test]
async fn a_plan_of_what_changed_makes_the_changes_of_a_whole_plan() {
    let (whole, without_each) = acme_without_each();
    let mut steps: Vec<Desired> = without_each
        .iter()
        .flat_map(|d| [d.clone(), whole.clone()])
        .collect();
    for i in 0..whole.memberships.len() {
        let mut changed = whole.clone();
        changed.memberships[i].roles = r#"[{"role":"no-access"}]"#.into();
        steps.extend([changed, whole.clone()]);
    }
    // Without adoption, the rows an Orphan policy left behind are conflicts when their
    // object returns: both plans must refuse the same objects, and write nothing.
    let mut refused = 0;
    for options in [PRUNE_ADOPT, PRUNE] {
        for (delta, full) in fresh_stores().await.into_iter().zip(fresh_stores().await) {
            let delta = SqlStore::open(&delta.dsn).await.unwrap();
            let full = SqlStore::open(&full.dsn).await.unwrap();
            let mut before = whole.clone();
            delta.apply(&whole, PRUNE).await.unwrap();
            full.apply(&whole, PRUNE).await.unwrap();
            for (step, desired) in steps.iter().enumerate() {
                let by_delta = delta.apply_after(desired, Some(&before), options).await;
                let by_full = full.apply(desired, options).await;
                match (by_delta, by_full) {
                    (Ok(a), Ok(b)) => {
                        assert_eq!(changes(&a), changes(&b), "step {step}");
                        before = desired.clone();
                    }
                    (
                        Err(StoreError::SourceConflicts { conflicts: a }),
                        Err(StoreError::SourceConflicts { conflicts: b }),
                    ) => {
                        let uids = |c: Vec<suborg::store::ObjectConflict>| {
                            let mut u: Vec<String> = c.into_iter().map(|c| c.uid).collect();
                            u.sort();
                            u
                        };
                        assert_eq!(uids(a), uids(b), "step {step}");
                        refused += 1;
                    }
                    (a, b) => panic!("step {step}: {a:?} against {b:?}"),
                }
            }
            let (a, b) = (delta.index().await.unwrap(), full.index().await.unwrap());
            assert_eq!(a.memberships.len(), b.memberships.len());
            // With adoption the last step, the whole tree, went in.
            assert!(!options.adopt || a.memberships.len() > 5);
            delta.close().await;
            full.close().await;
        }
    }
    assert!(refused > 0, "some steps are refused without adoption");
}

#[tokio::test]
async fn a_failed_apply_leaves_nothing_half_written() {
    for f in fresh_stores().await {
        let store = SqlStore::open(&f.dsn).await.unwrap();
        // Make the last membership insert fail, after the organizations and most memberships.
        let backend = store.dsn().backend;
        match backend {
            Backend::Sqlite => {
                sqlx::query("CREATE TRIGGER boom BEFORE INSERT ON memberships WHEN NEW.source_name = 'marketing' BEGIN SELECT RAISE(ABORT, 'cut off'); END")
                    .execute(store.pool()).await.unwrap();
            }
            Backend::Postgres => {
                sqlx::raw_sql("CREATE FUNCTION boom() RETURNS trigger AS $$ BEGIN IF NEW.source_name = 'marketing' THEN RAISE EXCEPTION 'cut off'; END IF; RETURN NEW; END $$ LANGUAGE plpgsql; CREATE TRIGGER boom BEFORE INSERT ON memberships FOR EACH ROW EXECUTE FUNCTION boom();")
                    .execute(store.pool()).await.unwrap();
            }
        }
        // The trigger fires on marketing's admin, the last row the plan writes.
        let err = store.apply(&acme(), OPTS).await;
        assert!(
            err.as_ref()
                .is_err_and(|e| e.to_string().contains("cut off")),
            "{err:?}"
        );
        assert_eq!(
            count(&store, "SELECT COUNT(*) FROM organizations").await,
            0,
            "{}",
            f.dsn
        );
        assert_eq!(count(&store, "SELECT COUNT(*) FROM memberships").await, 0);
        assert_eq!(count(&store, "SELECT COUNT(*) FROM users").await, 0);
        store.close().await;
    }
}

#[tokio::test]
async fn two_writers_at_once_converge() {
    for f in fresh_stores().await {
        let d = acme();
        let (a, b) = (
            SqlStore::open(&f.dsn).await.unwrap(),
            SqlStore::open(&f.dsn).await.unwrap(),
        );
        let (ra, rb) = tokio::join!(a.apply(&d, OPTS), b.apply(&d, OPTS));
        let (pa, pb) = (ra.unwrap(), rb.unwrap());
        assert_eq!(
            pa.changes.len() + pb.changes.len(),
            38,
            "one writer did the work, the other found nothing to do"
        );
        assert_eq!(count(&a, "SELECT COUNT(*) FROM organizations").await, 4);
        assert_eq!(count(&a, "SELECT COUNT(*) FROM memberships").await, 15);
        a.close().await;
        b.close().await;
    }
}

/// One controller writes a store. Another (another cluster or selector) would prune the first's
/// rows on every sync, so it is refused, naming both, and nothing it planned is written;
/// replicas of the first share its claim; a take-over is on purpose; the offline `apply`
/// writes only a store no controller claimed, and claims none, and a controller takes over
/// what `apply` wrote only on purpose.
#[tokio::test]
async fn a_store_is_written_by_one_controller() {
    use suborg::store::Writer;
    for f in fresh_stores().await {
        let open = |w: Writer| {
            let dsn = f.dsn.clone();
            async move { SqlStore::open(&dsn).await.unwrap().writing_as(w) }
        };
        let offline = open(Writer::Offline).await;
        offline.apply(&acme(), OPTS).await.unwrap();
        assert_eq!(
            count(&offline, "SELECT COUNT(*) FROM suborg_claim").await,
            0
        );
        // What `apply` wrote is not the controller's to prune until it takes the store over.
        let a = open(Writer::controller("c1", Some("team=a"), false)).await;
        let written = slugs_and_managed(&a).await;
        let err = a.apply(&Desired::default(), PRUNE).await.unwrap_err();
        assert!(matches!(err, StoreError::Claimed(_)), "{err:?}");
        for part in [
            "`suborg apply`",
            r#"selector "team=a""#,
            "--take-over-store",
        ] {
            assert!(err.to_string().contains(part), "{part}: {err}");
        }
        assert_eq!(
            slugs_and_managed(&a).await,
            written,
            "{}: nothing pruned",
            f.dsn
        );
        let once = open(Writer::controller("c1", Some("team=a"), true)).await;
        once.apply(&acme(), PRUNE).await.unwrap();
        a.apply(&acme(), PRUNE).await.unwrap();
        let before = slugs_and_managed(&a).await;
        let b = open(Writer::controller("c1", Some("team=b"), false)).await;
        let err = b.apply(&Desired::default(), PRUNE).await.unwrap_err();
        let message = err.to_string();
        assert!(matches!(err, StoreError::Claimed(_)), "{err:?}");
        for part in [
            r#"cluster c1, selector "team=a""#,
            r#"cluster c1, selector "team=b""#,
            "--take-over-store",
        ] {
            assert!(message.contains(part), "{part}: {message}");
        }
        assert_eq!(
            slugs_and_managed(&a).await,
            before,
            "{}: nothing pruned",
            f.dsn
        );
        // Another cluster, same selector: refused too.
        let elsewhere = open(Writer::controller("c2", Some("team=a"), false)).await;
        assert!(matches!(
            elsewhere.apply(&acme(), PRUNE).await,
            Err(StoreError::Claimed(_))
        ));
        // A replica of the first.
        let replica = open(Writer::controller("c1", Some(" team = a "), false)).await;
        assert!(replica.apply(&acme(), PRUNE).await.unwrap().is_empty());
        let err = offline.apply(&acme(), OPTS).await.unwrap_err();
        assert!(err.to_string().contains("written by a controller"), "{err}");
        // Taken over on purpose: the first is refused from then on.
        let b = open(Writer::controller("c1", Some("team=b"), true)).await;
        b.apply(&acme(), PRUNE).await.unwrap();
        assert!(matches!(
            a.apply(&acme(), PRUNE).await,
            Err(StoreError::Claimed(_))
        ));
        for s in [offline, a, once, b, replica, elsewhere] {
            s.close().await;
        }
    }
}

/// Rows that break the schema's own keys, written into a database whose constraints were
/// dropped (or, on SQLite, ignored) by hand, are reported by `get`; and a slug several such
/// rows share is called damage, not a choice between roots to make.
#[tokio::test]
async fn rows_that_break_the_schemas_keys_are_reported() {
    for f in fresh_stores().await {
        let store = SqlStore::open(&f.dsn).await.unwrap();
        store.apply(&acme(), OPTS).await.unwrap();
        let sub: String = sqlx::query_scalar(
            "SELECT id FROM organizations WHERE depth = 1 ORDER BY slug LIMIT 1",
        )
        .fetch_one(store.pool())
        .await
        .unwrap();
        store.close().await;
        let mut c = <sqlx::AnyConnection as sqlx::Connection>::connect(&f.dsn)
            .await
            .unwrap();
        let postgres = f.dsn.starts_with("postgres");
        let loosen: &[&str] = if postgres {
            &[
                "ALTER TABLE organizations DROP CONSTRAINT organizations_parent_id_parent_depth_fkey",
                "ALTER TABLE organizations DROP CONSTRAINT organizations_parent_key_slug_key",
            ]
        } else {
            &["PRAGMA foreign_keys = OFF"]
        };
        for sql in loosen {
            sqlx::query(sql).execute(&mut c).await.unwrap();
        }
        // A sub-organization of a sub-organization.
        sqlx::query(&format!("INSERT INTO organizations (id, managed, depth, parent_id, parent_depth, parent_key, root_id, slug, display_name, deletion_policy, created_at, updated_at) VALUES ('deep', 0, 1, '{sub}', 0, '{sub}', '{sub}', 'deep', 'deep', 'Delete', 0, 0)"))
            .execute(&mut c)
            .await
            .unwrap();
        if postgres {
            // SQLite's unique keys cannot be switched off.
            for id in ["d1", "d2"] {
                sqlx::query(&format!("INSERT INTO organizations (id, managed, depth, parent_key, root_id, slug, display_name, deletion_policy, created_at, updated_at) VALUES ('{id}', 0, 0, '', '{id}', 'twice', 'twice', 'Delete', 0, 0)"))
                    .execute(&mut c)
                    .await
                    .unwrap();
            }
        }
        drop(c);
        let store = SqlStore::open(&f.dsn).await.unwrap();
        let damage = store.damage().await.unwrap();
        store.close().await;
        assert!(
            damage
                .iter()
                .any(|d| d.contains("\"deep\" has a sub-organization as its parent")),
            "{}: {damage:?}",
            f.dsn
        );
        if postgres {
            assert!(
                damage
                    .iter()
                    .any(|d| d.contains("slug \"twice\" is held by more than one row")),
                "{damage:?}"
            );
            let out = std::process::Command::new(env!("CARGO_BIN_EXE_suborg"))
                .args(["get", "members", "--org", "twice", "--store", &f.dsn])
                .output()
                .unwrap();
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(!out.status.success(), "{err}");
            assert!(
                err.contains("2 organizations in the store match \"twice\"")
                    && err.contains("the store is damaged")
                    && !err.contains("ROOT/"),
                "{err}"
            );
        }
    }
}

/// A store written before the database checked slugs and display names, holding rows that
/// break them, still upgrades: the checks guard every write from then on, and the rows already
/// there are reported, not a reason to refuse the store.
#[tokio::test]
async fn a_store_holding_bad_rows_still_upgrades() {
    for f in fresh_stores().await {
        let store = SqlStore::open(&f.dsn).await.unwrap();
        store.apply(&acme(), OPTS).await.unwrap();
        let pool = store.pool();
        // Back to schema 3: the field checks of migration 4 removed.
        let drops: Vec<String> = match store.dsn().backend {
            Backend::Sqlite => sqlx::query_scalar("SELECT 'DROP TRIGGER ' || name FROM sqlite_master WHERE type = 'trigger'")
                .fetch_all(pool)
                .await
                .unwrap(),
            Backend::Postgres => sqlx::query_scalar("SELECT 'ALTER TABLE ' || conrelid::regclass::text || ' DROP CONSTRAINT ' || conname FROM pg_constraint WHERE conname LIKE '%_slug_format' OR conname LIKE '%_display_name_trimmed'")
                .fetch_all(pool)
                .await
                .unwrap(),
        };
        assert_eq!(
            drops.len(),
            if store.dsn().backend == Backend::Sqlite {
                14
            } else {
                7
            },
            "{drops:?}"
        );
        for d in drops {
            sqlx::query(&d).execute(pool).await.unwrap();
        }
        // And what came after it.
        for sql in ["DROP INDEX memberships_user", "DROP TABLE suborg_claim"] {
            sqlx::query(sql).execute(pool).await.unwrap();
        }
        sqlx::query("DELETE FROM suborg_schema WHERE version >= 4")
            .execute(pool)
            .await
            .unwrap();
        sqlx::query("INSERT INTO organizations (id, managed, depth, parent_key, root_id, slug, display_name, deletion_policy, created_at, updated_at) VALUES ('x1', 0, 0, '', 'x1', 'Engineering', ' Padded ', 'Delete', 0, 0)")
            .execute(pool)
            .await
            .unwrap();
        store.close().await;

        let store = SqlStore::open(&f.dsn).await.unwrap();
        assert_eq!(
            count(&store, "SELECT MAX(version) FROM suborg_schema").await,
            6
        );
        let damage = store.damage().await.unwrap();
        assert!(
            damage.iter().any(|d| d.contains("slug \"Engineering\"")),
            "{}: {damage:?}",
            f.dsn
        );
        assert!(
            damage
                .iter()
                .any(|d| d.contains("display name \" Padded \"")),
            "{}: {damage:?}",
            f.dsn
        );
        let r = sqlx::query("UPDATE organizations SET slug = 'Acme' WHERE slug = 'acme'")
            .execute(store.pool())
            .await;
        assert!(r.is_err(), "{}: the check is back after the upgrade", f.dsn);
        // suborg's own writes go on.
        assert!(
            store.plan(&acme(), OPTS).await.unwrap().is_empty(),
            "{}",
            f.dsn
        );
        store.close().await;
    }
}

#[tokio::test]
async fn reopening_and_migrating_again_changes_nothing() {
    for f in fresh_stores().await {
        let store = SqlStore::open(&f.dsn).await.unwrap();
        store.apply(&acme(), OPTS).await.unwrap();
        store.close().await;
        let store = SqlStore::open(&f.dsn).await.unwrap();
        assert!(store.plan(&acme(), OPTS).await.unwrap().is_empty());
        assert_eq!(count(&store, "SELECT COUNT(*) FROM suborg_schema").await, 6);
        // A schema from a newer suborg is refused, not written over.
        sqlx::query("INSERT INTO suborg_schema (version, description, applied_at) VALUES (999, 'future', 0)").execute(store.pool()).await.unwrap();
        store.close().await;
        let Err(err) = SqlStore::open(&f.dsn).await else {
            panic!("a newer schema was accepted")
        };
        assert!(
            matches!(
                err,
                StoreError::SchemaTooNew {
                    found: 999,
                    known: 6,
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("upgrade suborg"), "{err}");
    }
}

#[tokio::test]
async fn unusable_stores_fail_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("corrupt.db");
    std::fs::write(
        &path,
        b"this is not a database, just bytes that look nothing like one".repeat(100),
    )
    .unwrap();
    let Err(err) = SqlStore::open(&format!("sqlite://{}", path.display())).await else {
        panic!("a corrupt file opened")
    };
    let msg = err.to_string();
    assert!(
        msg.contains(&format!("cannot open store sqlite://{}", path.display())),
        "{msg}"
    );
    assert!(msg.contains("not a database"), "{msg}");

    let Err(err) = SqlStore::open("postgres://suborg:hunter2@127.0.0.1:1/suborg").await else {
        panic!("connected to port 1")
    };
    let msg = err.to_string();
    assert!(
        msg.starts_with("cannot open store postgres://suborg:***@127.0.0.1:1/suborg"),
        "{msg}"
    );
    assert!(!msg.contains("hunter2"), "{msg}");
}

/// `n` memberships of distinct users under one root and a few sub-organizations.
/// An organization as the rules would hand it to the store: its slug as its name.
fn desired_org(uid: &str, parent: Option<&str>, slug: String) -> suborg::store::DesiredOrg {
    suborg::store::DesiredOrg {
        source_uid: uid.into(),
        source_name: slug.clone(),
        parent: parent.map(Into::into),
        display_name: slug.clone(),
        slug,
        auth: None,
        member_namespaces: None,
        deletion_policy: "Delete",
    }
}

fn big(n: usize) -> Desired {
    use suborg::store::DesiredMembership;
    let org = desired_org;
    let mut d = Desired::default();
    d.organizations.push(org("root", None, "big".into()));
    d.organizations
        .push(org("sub", Some("root"), "team".into()));
    for i in 0..n {
        let org = if i < n / 2 { "root" } else { "sub" };
        let user = if i < n / 2 { i } else { i - n / 2 };
        d.memberships.push(DesiredMembership {
            source_uid: format!("m{i}"),
            source_name: format!("m{i}"),
            organization: org.into(),
            email: format!("user{user}@big.example"),
            roles: r#"[{"role":"member"}]"#.into(),
            deletion_policy: "Delete",
        });
    }
    d
}

/// The connection applying is killed in the middle of its transaction (as when the database
/// restarts): afterwards the store holds the state before, never a part of the new one.
#[tokio::test]
async fn a_connection_killed_mid_apply_leaves_the_state_before() {
    let Some(f) = fresh_stores()
        .await
        .into_iter()
        .find(|f| f.dsn.starts_with("postgres"))
    else {
        return; // PostgreSQL only: SQLite's case is the process killed mid-apply, below.
    };
    let store = std::sync::Arc::new(SqlStore::open(&f.dsn).await.unwrap());
    let d = big(60_000);
    let task = {
        let (store, d) = (store.clone(), d.clone());
        tokio::spawn(async move { store.apply(&d, OPTS).await })
    };
    let db = f.dsn.rsplit_once('/').unwrap().1.to_owned();
    let admin = sqlx::AnyPool::connect(&std::env::var("SUBORG_TEST_POSTGRES").unwrap())
        .await
        .unwrap();
    let mut killed = false;
    for _ in 0..2000 {
        let n: i64 = sqlx::query("SELECT COUNT(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = $1 AND query LIKE 'INSERT INTO memberships%' AND state = 'active'")
            .bind(&db)
            .fetch_one(&admin)
            .await
            .unwrap()
            .get(0);
        if n > 0 {
            killed = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        if task.is_finished() {
            break;
        }
    }
    assert!(killed, "the apply finished before it could be cut off");
    let result = task.await.unwrap();
    assert!(
        result.is_err(),
        "an apply whose connection died reported success"
    );
    assert_eq!(count(&store, "SELECT COUNT(*) FROM organizations").await, 0);
    assert_eq!(count(&store, "SELECT COUNT(*) FROM memberships").await, 0);
    assert_eq!(count(&store, "SELECT COUNT(*) FROM users").await, 0);
    // And the next apply completes the job.
    let plan = store.apply(&d, OPTS).await.unwrap();
    assert_eq!(plan.changes.len(), 60_002);
    admin.close().await;
}

/// The database goes away in the middle of an apply, as the client sees it (every connection
/// dropped, new ones refused) and comes back: the store holds the state before, and the next
/// apply completes the job.
#[tokio::test]
async fn a_database_lost_mid_apply_leaves_the_state_before() {
    let Ok(admin_dsn) = std::env::var("SUBORG_TEST_POSTGRES") else {
        return; // PostgreSQL only.
    };
    let proxy = super::proxy::Proxy::start(&admin_dsn).await;
    let db = format!("suborg_test_{}", uuid::Uuid::new_v4().simple());
    let dsn = proxy.dsn(&admin_dsn, &db).await;
    let store = std::sync::Arc::new(SqlStore::open(&dsn).await.unwrap());
    let d = big(60_000);
    let task = {
        let (store, d) = (store.clone(), d.clone());
        tokio::spawn(async move { store.apply(&d, OPTS).await })
    };
    let admin = sqlx::AnyPool::connect(&admin_dsn).await.unwrap();
    let mut cut = false;
    for _ in 0..2000 {
        let n: i64 = sqlx::query("SELECT COUNT(*) FROM pg_stat_activity WHERE datname = $1 AND query LIKE 'INSERT INTO memberships%' AND state = 'active'")
            .bind(&db)
            .fetch_one(&admin)
            .await
            .unwrap()
            .get(0);
        if n > 0 {
            proxy.cut();
            cut = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        if task.is_finished() {
            break;
        }
    }
    assert!(cut, "the apply finished before the database could go away");
    let result = task.await.unwrap();
    let err = result.expect_err("an apply that lost its database reported success");
    assert!(err.to_string().contains("127.0.0.1"), "{err}");
    proxy.restore();
    // The server rolls back the transaction of a connection that vanished.
    let direct = format!("{}/{db}", admin_dsn.rsplit_once('/').unwrap().0);
    let check = SqlStore::open(&direct).await.unwrap();
    for _ in 0..200 {
        let busy: i64 = sqlx::query("SELECT COUNT(*) FROM pg_stat_activity WHERE datname = $1 AND state <> 'idle' AND pid <> pg_backend_pid()")
            .bind(&db)
            .fetch_one(&admin)
            .await
            .unwrap()
            .get(0);
        if busy == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(count(&check, "SELECT COUNT(*) FROM organizations").await, 0);
    assert_eq!(count(&check, "SELECT COUNT(*) FROM memberships").await, 0);
    assert_eq!(count(&check, "SELECT COUNT(*) FROM users").await, 0);
    let plan = store.apply(&d, OPTS).await.unwrap();
    assert_eq!(plan.changes.len(), 60_002);
    admin.close().await;
}

/// A row the database refuses although the plan let it through (here: desired values the API
/// would never produce) is a conflict of the object it belongs to, named with the database's
/// reason, not a store outage; and nothing of that apply is written.
#[tokio::test]
async fn a_row_the_database_refuses_is_a_conflict_of_its_object() {
    for f in fresh_stores().await {
        let store = SqlStore::open(&f.dsn).await.unwrap();
        // One membership among many refused (a mixed-case email: users are stored lowercased),
        // inside a batch of inserts.
        let mut d = big(3_000);
        d.memberships[1234].email = "Mixed@Big.example".into();
        let err = store
            .apply(&d, OPTS)
            .await
            .expect_err("a refused row was written");
        let Some((uid, message)) = only_conflict(&err) else {
            panic!("{}: {err:?}", f.dsn)
        };
        assert_eq!(uid, "m1234", "{}: {message}", f.dsn);
        assert!(
            message.contains("the store refused to create membership Mixed@Big.example"),
            "{}: {message}",
            f.dsn
        );
        assert_eq!(
            count(&store, "SELECT COUNT(*) FROM memberships").await,
            0,
            "{}",
            f.dsn
        );
        assert_eq!(
            count(&store, "SELECT COUNT(*) FROM users").await,
            0,
            "{}",
            f.dsn
        );
        // A single row: a slug the API's pattern refuses.
        let mut d = big(10);
        d.organizations[1].slug = "Team_X".into();
        let err = store
            .apply(&d, OPTS)
            .await
            .expect_err("a refused slug was written");
        let Some((uid, message)) = only_conflict(&err) else {
            panic!("{}: {err:?}", f.dsn)
        };
        assert_eq!(uid, "sub", "{}: {message}", f.dsn);
        assert!(message.contains("slug_format"), "{}: {message}", f.dsn);
        // Without those, everything goes in.
        store.apply(&big(3_000), OPTS).await.unwrap();
        assert_eq!(
            count(&store, "SELECT COUNT(*) FROM memberships").await,
            3_000,
            "{}",
            f.dsn
        );
        store.close().await;
    }
}

/// Whether an apply is in the middle of its transaction: on PostgreSQL a statement of it runs;
/// on SQLite the write lock is taken (a second writer cannot begin).
async fn mid_transaction(f: &Fresh, admin: Option<&sqlx::AnyPool>) -> bool {
    match admin {
        Some(admin) => {
            let db = f.dsn.rsplit_once('/').unwrap().1;
            let n: i64 = sqlx::query("SELECT COUNT(*) FROM pg_stat_activity WHERE datname = $1 AND query LIKE 'INSERT INTO memberships%' AND state = 'active'")
                .bind(db)
                .fetch_one(admin)
                .await
                .unwrap()
                .get(0);
            n > 0
        }
        None => {
            use sqlx::{ConnectOptions, Connection};
            let path = f.dsn.strip_prefix("sqlite://").unwrap();
            let Ok(mut conn) = sqlx::sqlite::SqliteConnectOptions::new()
                .filename(path)
                .busy_timeout(std::time::Duration::ZERO)
                .connect()
                .await
            else {
                return false;
            };
            let busy = sqlx::query("BEGIN IMMEDIATE")
                .execute(&mut conn)
                .await
                .is_err();
            if !busy {
                let _ = sqlx::query("ROLLBACK").execute(&mut conn).await;
            }
            let _ = conn.close().await;
            busy
        }
    }
}

/// An apply whose caller goes away in the middle of the transaction (a cancelled reconcile, a
/// deadline) leaves nothing behind: no half-written rows, and no pooled connection still inside
/// that transaction or holding the write lock, so every later apply goes through.
#[tokio::test]
async fn a_cancelled_apply_leaves_no_transaction_behind() {
    for f in fresh_stores().await {
        let admin = match std::env::var("SUBORG_TEST_POSTGRES") {
            Ok(a) if f.dsn.starts_with("postgres") => {
                Some(sqlx::AnyPool::connect(&a).await.unwrap())
            }
            _ => None,
        };
        let store = std::sync::Arc::new(SqlStore::open(&f.dsn).await.unwrap());
        let task = {
            let store = store.clone();
            tokio::spawn(async move { store.apply(&big(60_000), OPTS).await })
        };
        let mut caught = false;
        for _ in 0..5000 {
            if mid_transaction(&f, admin.as_ref()).await {
                caught = true;
                break;
            }
            if task.is_finished() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
        assert!(
            caught,
            "{}: the apply finished before it could be cancelled",
            f.dsn
        );
        task.abort();
        assert!(task.await.unwrap_err().is_cancelled());
        // As many applies at once as the pool has connections: one of them gets the connection
        // the cancelled apply used.
        let applies = (0..8).map(|_| {
            let store = store.clone();
            tokio::spawn(async move { store.apply(&acme(), OPTS).await })
        });
        let all = tokio::time::timeout(
            std::time::Duration::from_secs(30),
            futures::future::join_all(applies),
        )
        .await
        .unwrap_or_else(|_| panic!("{}: applies after a cancelled one hung", f.dsn));
        for r in all {
            r.unwrap().unwrap_or_else(|e| panic!("{}: {e}", f.dsn));
        }
        assert_eq!(
            count(
                &store,
                "SELECT COUNT(*) FROM organizations WHERE slug = 'big'"
            )
            .await,
            0,
            "{}",
            f.dsn
        );
        assert_eq!(
            count(
                &store,
                "SELECT COUNT(*) FROM users WHERE email LIKE '%@big.example'"
            )
            .await,
            0,
            "{}",
            f.dsn
        );
        assert!(
            count(
                &store,
                "SELECT COUNT(*) FROM organizations WHERE slug = 'acme'"
            )
            .await
                == 1,
            "{}",
            f.dsn
        );
    }
}

/// A database that stops answering without closing anything (packets dropped): an apply gives up
/// at its deadline instead of holding the controller, and opening a store gives up too; once
/// the connections are gone and the database is back, applies go through again.
#[tokio::test]
async fn a_database_that_stops_answering_is_given_up_on() {
    let Ok(admin_dsn) = std::env::var("SUBORG_TEST_POSTGRES") else {
        return; // PostgreSQL only: SQLite is a local file.
    };
    let proxy = super::proxy::Proxy::start(&admin_dsn).await;
    let db = format!("suborg_test_{}", uuid::Uuid::new_v4().simple());
    let dsn = proxy.dsn(&admin_dsn, &db).await;
    let deadline = std::time::Duration::from_secs(3);
    let store = SqlStore::open(&dsn).await.unwrap().with_deadline(deadline);
    store.apply(&acme(), OPTS).await.unwrap();

    proxy.silence();
    let started = std::time::Instant::now();
    let err = store
        .apply(&big(10), OPTS)
        .await
        .expect_err("an unanswered apply succeeded");
    assert!(matches!(err, StoreError::TimedOut { .. }), "{err}");
    assert!(
        err.to_string().contains("did not answer within 3s"),
        "{err}"
    );
    assert!(
        started.elapsed() < deadline * 3,
        "gave up after {:?}",
        started.elapsed()
    );
    let started = std::time::Instant::now();
    let Err(err) = SqlStore::open(&dsn).await else {
        panic!("opened a store that does not answer")
    };
    assert!(err.to_string().contains("no answer within"), "{err}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(20),
        "gave up after {:?}",
        started.elapsed()
    );

    proxy.cut();
    proxy.restore();
    let mut applied = Err(err);
    for _ in 0..10 {
        applied = store.apply(&big(10), OPTS).await;
        if applied.is_ok() {
            break;
        }
    }
    applied.expect("applies go through once the database answers again");
    assert_eq!(
        count(
            &store,
            "SELECT COUNT(*) FROM organizations WHERE slug = 'big'"
        )
        .await,
        1
    );
}

/// `suborg apply` killed (SIGKILL) in the middle of writing a SQLite store: after it, the file
/// opens and holds the state before or after, nothing between.
#[tokio::test]
async fn a_process_killed_mid_apply_leaves_before_or_after() {
    let dir = tempfile::tempdir().unwrap();
    let dsn = format!("sqlite://{}", dir.path().join("s.db").display());
    let mut yaml = String::from(
        "apiVersion: suborg.io/v1alpha1\nkind: Organization\nmetadata: {name: big}\nspec:\n  memberNamespaces: {from: All}\n",
    );
    for i in 0..20_000 {
        yaml.push_str(&format!("---\napiVersion: suborg.io/v1alpha1\nkind: OrgMembership\nmetadata: {{name: m{i}, namespace: ns}}\nspec:\n  organizationRef: {{name: big}}\n  subject: {{kind: User, email: user{i}@big.example}}\n  roles: [{{role: member}}]\n"));
    }
    let file = dir.path().join("big.yaml");
    std::fs::write(&file, yaml).unwrap();
    for delay_ms in [150u64, 300, 600, 1200] {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_suborg"))
            .args([
                "apply",
                "--max-file-size",
                "64Mi",
                "-f",
                file.to_str().unwrap(),
                "--store",
                &dsn,
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        let _ = child.kill();
        let _ = child.wait();
        let store = SqlStore::open(&dsn).await.unwrap();
        let members = count(&store, "SELECT COUNT(*) FROM memberships").await;
        let orgs = count(&store, "SELECT COUNT(*) FROM organizations").await;
        assert!(
            (orgs, members) == (0, 0) || (orgs, members) == (1, 20_000),
            "after a kill at {delay_ms} ms the store holds {orgs} organizations and {members} memberships"
        );
        store.close().await;
    }
}

/// Ids of rows by a column value, for raw SQL below.
async fn id_of(store: &SqlStore, table: &str, column: &str, value: &str) -> String {
    sqlx::query(&format!("SELECT id FROM {table} WHERE {column} = $1"))
        .bind(value)
        .fetch_one(store.pool())
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn groups_identities_and_what_was_added_are_stored_once() {
    for f in fresh_stores().await {
        let store = SqlStore::open(&f.dsn).await.unwrap();
        let d = acme();
        store.apply(&d, OPTS).await.unwrap();
        assert_eq!(count(&store, "SELECT COUNT(*) FROM groups").await, 3);
        assert_eq!(
            count(&store, "SELECT COUNT(*) FROM machine_identities").await,
            1
        );
        assert_eq!(
            count(&store, "SELECT COUNT(*) FROM subject_memberships").await,
            2
        );
        // security-reviewers: alice, bob; backend-leads: bob; backend: carol, frank, leads.
        assert_eq!(count(&store, "SELECT COUNT(*) FROM group_members").await, 6);
        assert_eq!(
            count(
                &store,
                "SELECT COUNT(*) FROM group_members WHERE member_kind = 'Group'"
            )
            .await,
            1
        );
        let stamp = count(&store, "SELECT MAX(updated_at) FROM groups").await;
        assert!(store.apply(&d, OPTS).await.unwrap().is_empty());
        assert_eq!(
            count(&store, "SELECT MAX(updated_at) FROM groups").await,
            stamp
        );
        let index = store.index().await.unwrap();
        assert_eq!(index.groups.len(), 3);
        assert_eq!(index.identities.len(), 1);

        // A member leaves a group; the group is updated, nothing else.
        let mut less = d.clone();
        let backend = less
            .groups
            .iter_mut()
            .find(|g| g.group.name.ends_with("/backend"))
            .unwrap();
        backend
            .members
            .retain(|m| *m != suborg::store::DesiredGroupMember::User("frank@acme.example".into()));
        let plan = store.apply(&less, OPTS).await.unwrap();
        assert_eq!(plan.changes.len(), 1, "{plan:?}");
        assert_eq!(plan.changes[0].fields, ["members"]);
        assert_eq!(count(&store, "SELECT COUNT(*) FROM group_members").await, 5);

        // The root group goes: its row, its members and where it was added go with it.
        let mut fewer = less.clone();
        fewer
            .groups
            .retain(|g| !g.group.name.ends_with("/security-reviewers"));
        fewer.subject_memberships.retain(|m| m.kind != "Group");
        fewer
            .project_memberships
            .retain(|m| !m.subject_name.ends_with("/security-reviewers"));
        let plan = store.apply(&fewer, PRUNE).await.unwrap();
        // The group, where it was added, and the two projects it was in.
        assert_eq!(plan.count(Action::Delete), 4, "{plan:?}");
        assert_eq!(count(&store, "SELECT COUNT(*) FROM groups").await, 2);
        assert_eq!(
            count(&store, "SELECT COUNT(*) FROM subject_memberships").await,
            1
        );
        store.close().await;
    }
}

#[tokio::test]
async fn the_database_enforces_the_group_invariants() {
    for f in fresh_stores().await {
        let store = SqlStore::open(&f.dsn).await.unwrap();
        store.apply(&acme(), OPTS).await.unwrap();
        let pool = store.pool();
        let acme_id = id_of(&store, "organizations", "slug", "acme").await;
        let eng = id_of(&store, "organizations", "slug", "engineering").await;
        let sales = id_of(&store, "organizations", "slug", "sales-emea").await;
        let reviewers = id_of(&store, "groups", "name", "platform/security-reviewers").await;
        let backend = id_of(&store, "groups", "name", "team-engineering/backend").await;
        let grace = id_of(&store, "users", "email", "grace@acme.example").await;
        let alice = id_of(&store, "users", "email", "alice@acme.example").await;
        let refused = |sql: String| async move {
            let r = sqlx::raw_sql(&sql).execute(pool).await;
            assert!(r.is_err(), "the database accepted: {sql}");
        };
        // A sub-organization group's user must be a member of that sub-organization (grace is
        // not in engineering).
        refused(format!("INSERT INTO group_members (group_id, organization_id, org_depth, member_kind, user_id) VALUES ('{backend}', '{eng}', 1, 'User', '{grace}')")).await;
        // Root groups do not nest.
        refused(format!("INSERT INTO group_members (group_id, organization_id, org_depth, member_kind, member_group_id) VALUES ('{reviewers}', '{acme_id}', 0, 'Group', '{backend}')")).await;
        // Nor does a group contain itself, nor a group of another organization.
        refused(format!("INSERT INTO group_members (group_id, organization_id, org_depth, member_kind, member_group_id) VALUES ('{backend}', '{eng}', 1, 'Group', '{backend}')")).await;
        refused(format!("INSERT INTO group_members (group_id, organization_id, org_depth, member_kind, member_group_id) VALUES ('{backend}', '{eng}', 1, 'Group', '{reviewers}')")).await;
        // A group's root membership does not exist; a sub-organization's own group is not added
        // to a sibling.
        refused(format!("INSERT INTO subject_memberships (id, managed, organization_id, root_id, org_depth, subject_kind, group_id, roles, deletion_policy, created_at, updated_at) VALUES ('x1', 0, '{acme_id}', '{acme_id}', 1, 'Group', '{reviewers}', '[]', 'Delete', 0, 0)")).await;
        refused(format!("INSERT INTO subject_memberships (id, managed, organization_id, root_id, org_depth, subject_kind, group_id, roles, deletion_policy, created_at, updated_at) VALUES ('x2', 0, '{sales}', '{acme_id}', 1, 'Group', '{backend}', '[]', 'Delete', 0, 0)")).await;
        // Removing alice from the root takes her out of the root's groups in the same statement.
        let before = count(&store, "SELECT COUNT(*) FROM group_members").await;
        sqlx::query("DELETE FROM memberships WHERE organization_id = $1 AND user_id = $2")
            .bind(&acme_id)
            .bind(&alice)
            .execute(pool)
            .await
            .unwrap();
        assert_eq!(
            count(&store, "SELECT COUNT(*) FROM group_members").await,
            before - 1
        );
        // Removing the root group revokes it where it was added.
        sqlx::query("DELETE FROM groups WHERE id = $1")
            .bind(&reviewers)
            .execute(pool)
            .await
            .unwrap();
        assert_eq!(
            count(
                &store,
                "SELECT COUNT(*) FROM subject_memberships WHERE subject_kind = 'Group'"
            )
            .await,
            0
        );
        store.close().await;
    }
}

#[tokio::test]
async fn the_database_enforces_the_project_invariants() {
    for f in fresh_stores().await {
        let store = SqlStore::open(&f.dsn).await.unwrap();
        store.apply(&acme(), OPTS).await.unwrap();
        let pool = store.pool();
        let acme_id = id_of(&store, "organizations", "slug", "acme").await;
        let eng = id_of(&store, "organizations", "slug", "engineering").await;
        let billing = id_of(&store, "projects", "slug", "billing").await;
        let api = id_of(&store, "projects", "slug", "api").await;
        let github = id_of(&store, "org_resources", "name", "team-engineering/github").await;
        let datacenter = id_of(&store, "org_resources", "name", "platform/datacenter").await;
        let reviewers = id_of(&store, "groups", "name", "platform/security-reviewers").await;
        let grace = id_of(&store, "users", "email", "grace@acme.example").await;
        let carol = id_of(&store, "users", "email", "carol@acme.example").await;
        let refused = |sql: String| async move {
            let r = sqlx::raw_sql(&sql).execute(pool).await;
            assert!(r.is_err(), "the database accepted: {sql}");
        };
        // A root project cannot use engineering's connection, under either organization.
        refused(format!("INSERT INTO project_connections (project_id, organization_id, connection_id, connection_kind) VALUES ('{billing}', '{acme_id}', '{github}', 'AppConnection')")).await;
        refused(format!("INSERT INTO project_connections (project_id, organization_id, connection_id, connection_kind) VALUES ('{billing}', '{eng}', '{github}', 'AppConnection')")).await;
        // Nor engineering's project the root's gateway; nor is a gateway a connection.
        refused(format!("UPDATE projects SET gateway_id = '{datacenter}', gateway_org_id = '{eng}', gateway_kind = 'Gateway' WHERE id = '{api}'")).await;
        refused(format!("UPDATE projects SET gateway_id = '{datacenter}', gateway_org_id = '{acme_id}', gateway_kind = 'Gateway' WHERE id = '{api}'")).await;
        refused(format!("INSERT INTO project_connections (project_id, organization_id, connection_id, connection_kind) VALUES ('{billing}', '{acme_id}', '{datacenter}', 'AppConnection')")).await;
        // grace was never added to engineering, so its project cannot hold her.
        refused(format!("INSERT INTO project_memberships (id, managed, project_id, organization_id, subject_kind, user_id, roles, deletion_policy, created_at, updated_at) VALUES ('x1', 0, '{api}', '{eng}', 'User', '{grace}', '[]', 'Delete', 0, 0)")).await;
        // The root's group is engineering's only through where it was added, never as its own.
        refused(format!("INSERT INTO project_memberships (id, managed, project_id, organization_id, subject_kind, group_id, roles, deletion_policy, created_at, updated_at) VALUES ('x2', 0, '{api}', '{eng}', 'Group', '{reviewers}', '[]', 'Delete', 0, 0)")).await;
        // Two subjects in one row.
        refused(format!("INSERT INTO project_memberships (id, managed, project_id, organization_id, subject_kind, user_id, shared_group_id, roles, deletion_policy, created_at, updated_at) VALUES ('x3', 0, '{api}', '{eng}', 'User', '{carol}', '{reviewers}', '[]', 'Delete', 0, 0)")).await;

        // Removing carol from engineering revokes her project membership there at once.
        let before = count(&store, "SELECT COUNT(*) FROM project_memberships").await;
        sqlx::query("DELETE FROM memberships WHERE organization_id = $1 AND user_id = $2")
            .bind(&eng)
            .bind(&carol)
            .execute(pool)
            .await
            .unwrap();
        assert_eq!(
            count(&store, "SELECT COUNT(*) FROM project_memberships").await,
            before - 1
        );
        // Taking the root's group out of engineering revokes what engineering's project gave it.
        sqlx::query("DELETE FROM subject_memberships WHERE organization_id = $1 AND group_id = $2")
            .bind(&eng)
            .bind(&reviewers)
            .execute(pool)
            .await
            .unwrap();
        assert_eq!(
            count(&store, "SELECT COUNT(*) FROM project_memberships").await,
            before - 2
        );
        // Deleting a connection takes it out of the projects that used it.
        sqlx::query("DELETE FROM org_resources WHERE id = $1")
            .bind(&github)
            .execute(pool)
            .await
            .unwrap();
        assert_eq!(
            count(&store, "SELECT COUNT(*) FROM project_connections").await,
            1
        );
        store.close().await;
    }
}

#[tokio::test]
async fn a_project_does_not_move_between_organizations() {
    for f in fresh_stores().await {
        let store = SqlStore::open(&f.dsn).await.unwrap();
        let d = acme();
        store.apply(&d, PRUNE).await.unwrap();
        let mut moved = d.clone();
        let eng = moved.projects[1].organization.clone();
        moved.projects[0].organization = eng;
        moved.projects[0].connections.clear();
        moved.projects[0].gateway = None;
        let err = store.apply(&moved, PRUNE).await.unwrap_err();
        let Some((uid, message)) = only_conflict(&err) else {
            panic!("a project moved to another organization: {err:?}")
        };
        assert_eq!(uid, moved.projects[0].source_uid);
        assert!(
            message.contains("stays in the organization that created it"),
            "{message}"
        );
        // Nothing was written; the next good apply finds nothing to do.
        assert!(store.apply(&d, PRUNE).await.unwrap().is_empty());

        // Everything a project holds goes with it, and a removed project's rows are pruned.
        let mut fewer = d.clone();
        fewer.projects.retain(|p| p.slug != "api");
        fewer
            .project_memberships
            .retain(|m| m.project != d.projects[1].source_uid);
        let plan = store.apply(&fewer, PRUNE).await.unwrap();
        assert_eq!(plan.count(Action::Delete), 5, "{plan:#?}");
        assert_eq!(count(&store, "SELECT COUNT(*) FROM projects").await, 1);
        assert_eq!(
            count(&store, "SELECT COUNT(*) FROM project_memberships").await,
            3
        );
        store.close().await;
    }
}

/// Slugs are how API clients address organizations and projects: a source's slug never
/// changes in the store (the API server refuses the edit; offline, the store does).
#[tokio::test]
async fn a_slug_never_changes() {
    for f in fresh_stores().await {
        let store = SqlStore::open(&f.dsn).await.unwrap();
        let d = acme();
        store.apply(&d, PRUNE).await.unwrap();
        let sub = d
            .organizations
            .iter()
            .position(|o| o.parent.is_some())
            .expect("a sub-organization");
        let mut renamed = d.clone();
        renamed.organizations[sub].slug = "renamed".into();
        let err = store.apply(&renamed, PRUNE).await.unwrap_err();
        let Some((uid, message)) = only_conflict(&err) else {
            panic!("{}: a slug changed: {err:?}", f.dsn)
        };
        assert_eq!(uid, d.organizations[sub].source_uid);
        assert!(message.contains("a slug never changes"), "{message}");
        assert!(
            message.contains(&format!(
                "set spec.slug back to {:?}",
                d.organizations[sub].slug
            )),
            "{message}"
        );
        let mut renamed = d.clone();
        renamed.projects[0].slug = "renamed".into();
        let err = store.apply(&renamed, PRUNE).await.unwrap_err();
        let Some((uid, message)) = only_conflict(&err) else {
            panic!("{}: a project slug changed: {err:?}", f.dsn)
        };
        assert_eq!(uid, d.projects[0].source_uid);
        assert!(message.contains("a slug never changes"), "{message}");
        // Nothing was written.
        assert!(store.apply(&d, PRUNE).await.unwrap().is_empty());
        store.close().await;
    }
}

/// A user row lives as long as a membership names it: an email is personal data, and the
/// store keeps none it no longer needs.
#[tokio::test]
async fn a_user_leaves_with_their_last_membership() {
    for f in fresh_stores().await {
        let store = SqlStore::open(&f.dsn).await.unwrap();
        let d = acme();
        store.apply(&d, PRUNE).await.unwrap();
        let users = count(&store, "SELECT COUNT(*) FROM users").await;
        assert!(users > 0);
        // The whole tree goes (a few rows stay, unmanaged, by their Orphan policy): the users
        // go with their last membership, and those the rows left still name stay.
        store.apply(&Desired::default(), PRUNE).await.unwrap();
        let named = count(&store, "SELECT COUNT(DISTINCT user_id) FROM memberships").await;
        assert!(named < users, "{}", f.dsn);
        assert_eq!(
            count(&store, "SELECT COUNT(*) FROM users").await,
            named,
            "{}",
            f.dsn
        );
        store.close().await;
    }
}

#[tokio::test]
async fn access_follows_memberships_groups_and_projects() {
    for f in fresh_stores().await {
        let store = SqlStore::open(&f.dsn).await.unwrap();
        store.apply(&acme(), OPTS).await.unwrap();
        let bob = store.access("Bob@Acme.example").await.unwrap().unwrap();
        let routes: Vec<(&str, Option<&str>, &str)> = bob
            .iter()
            .map(|e| {
                (
                    e.organization.as_str(),
                    e.project.as_deref(),
                    e.via.as_str(),
                )
            })
            .collect();
        assert_eq!(
            routes,
            [
                ("acme", None, "membership bob"),
                ("acme", Some("billing"), "group platform/security-reviewers"),
                (
                    "acme/engineering",
                    None,
                    "admin of SubOrganization engineering"
                ),
                (
                    "acme/engineering",
                    None,
                    "group platform/security-reviewers"
                ),
                (
                    "acme/engineering",
                    Some("api"),
                    "group platform/security-reviewers"
                ),
                (
                    "acme/engineering",
                    Some("api"),
                    "group team-engineering/backend (through team-engineering/backend-leads)"
                ),
            ],
            "{}",
            f.dsn
        );
        assert_eq!(bob[1].roles, ["viewer"]);
        // A user with no route anywhere but the root; and no such user at all.
        let dana = store.access("dana@acme.example").await.unwrap().unwrap();
        assert!(dana.iter().all(|e| e.project.is_none()), "{dana:?}");
        assert!(store.access("nobody@acme.example").await.unwrap().is_none());
        // A no-access role reaches nothing.
        sqlx::query("UPDATE project_memberships SET roles = '[{\"role\":\"no-access\"}]' WHERE source_name = 'billing-security'")
            .execute(store.pool())
            .await
            .unwrap();
        let bob = store.access("bob@acme.example").await.unwrap().unwrap();
        assert!(!bob.iter().any(|e| e.project.as_deref() == Some("billing")));
        store.close().await;
    }
}

#[tokio::test]
async fn an_orphaned_invite_keeps_the_membership_it_needs() {
    for f in fresh_stores().await {
        let store = SqlStore::open(&f.dsn).await.unwrap();
        // The acme tree with heidi's invite marked Orphan.
        let mut loader = Loader::new("default");
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/acme");
        suborg::cli::files::load(&[path], 8 << 20, &mut loader);
        let now = k8s_openapi::jiff::Timestamp::now();
        let (_, mut set, accepted) = loader.finish(now);
        for m in &mut set.project_memberships {
            if m.metadata.name.as_deref() == Some("billing-heidi") {
                m.spec.deletion_policy = suborg::api::DeletionPolicy::Orphan;
            }
        }
        let d = desired_from(&set, &accepted, now);
        let heidi = d
            .memberships
            .iter()
            .find(|m| m.email == "heidi@acme.example")
            .unwrap();
        assert!(heidi.source_uid.contains("#invite:"), "{heidi:?}");
        assert_eq!(
            heidi.deletion_policy, "Orphan",
            "it follows its project membership"
        );
        store.apply(&d, PRUNE).await.unwrap();
        let mut gone = d.clone();
        let pm = d
            .project_memberships
            .iter()
            .find(|m| m.source_name == "billing-heidi")
            .unwrap();
        gone.live.remove(&pm.source_uid); // deleted
        gone.project_memberships
            .retain(|m| m.source_name != "billing-heidi");
        gone.memberships.retain(|m| m.email != "heidi@acme.example");
        let plan = store.apply(&gone, PRUNE).await.unwrap();
        assert_eq!(plan.count(Action::Orphan), 2, "{plan:#?}");
        assert_eq!(plan.count(Action::Delete), 0, "{plan:#?}");
        let heidi = store.access("heidi@acme.example").await.unwrap().unwrap();
        assert_eq!(
            heidi.len(),
            2,
            "still at the root and in billing: {heidi:?}"
        );
        store.close().await;
    }
}

/// The one object a store refused, and why, when the error is that.
fn only_conflict(err: &StoreError) -> Option<(&str, &str)> {
    match err {
        StoreError::SourceConflicts { conflicts } => match conflicts.as_slice() {
            [c] => Some((c.uid.as_str(), c.message.as_str())),
            _ => None,
        },
        _ => None,
    }
}

/// A refused container (its namespace lost its delegation, its organization is refused) still
/// exists: its rows stay as last written, with their ids, and no other object takes them over;
/// only the memberships that depended on it go. They still go with their organization's row.
#[tokio::test]
async fn a_kept_source_keeps_its_rows_until_its_organization_goes() {
    for f in fresh_stores().await {
        let store = SqlStore::open(&f.dsn).await.unwrap();
        let full = acme();
        store.apply(&full, PRUNE).await.unwrap();
        let api = "Project/team-engineering/api";
        let group = "Group/team-engineering/backend";
        let conn = "AppConnection/team-engineering/github";
        for source in [api, group, conn] {
            assert!(
                full.projects.iter().any(|p| p.source_uid == source)
                    || full.groups.iter().any(|g| g.group.source_uid == source)
                    || full.resources.iter().any(|r| r.source_uid == source),
                "acme has {source}"
            );
        }
        let project_id = id_of(&store, "projects", "source_uid", api).await;
        let group_id = id_of(&store, "groups", "source_uid", group).await;
        let conn_id = id_of(&store, "org_resources", "source_uid", conn).await;
        let grants = count(&store, "SELECT COUNT(*) FROM project_memberships").await;

        // The three refused: no rows asked for, their sources kept. What used them goes.
        let mut refused = full.clone();
        refused.projects.retain(|p| p.source_uid != api);
        refused.groups.retain(|g| g.group.source_uid != group);
        refused.resources.retain(|r| r.source_uid != conn);
        for p in &mut refused.projects {
            p.connections.retain(|c| c != conn);
        }
        let shared = |m: &suborg::store::DesiredSubjectMembership| m.subject == group;
        refused.subject_memberships.retain(|m| !shared(m));
        refused.project_memberships.retain(|m| {
            m.project != api
                && !matches!(&m.subject, suborg::store::ProjectSubject::Own(_, g) if g == group)
        });
        refused.kept = [api, group, conn]
            .map(|s| (s.to_owned(), Some("Delete")))
            .into();
        let members_before = count(
            &store,
            &format!("SELECT COUNT(*) FROM group_members WHERE group_id = '{group_id}'"),
        )
        .await;
        assert!(members_before > 0, "{}: backend has members", f.dsn);
        let plan = store.apply(&refused, PRUNE).await.unwrap();
        // Their rows are as they were, but for the group's members: access follows only what
        // is accepted.
        let touched: Vec<(&str, &[&str])> = plan
            .changes
            .iter()
            .filter_map(|c| Some((c.source.as_deref()?, c.fields.as_slice())))
            .filter(|(s, _)| [api, group, conn].contains(s))
            .collect();
        assert_eq!(touched, [(group, &["members"][..])], "{}: {plan:#?}", f.dsn);
        assert_eq!(
            count(
                &store,
                &format!("SELECT COUNT(*) FROM group_members WHERE group_id = '{group_id}'"),
            )
            .await,
            0,
            "{}: the kept group has no members",
            f.dsn
        );
        assert!(plan.count(Action::Delete) > 0, "{}: {plan:#?}", f.dsn);
        assert_eq!(
            id_of(&store, "projects", "source_uid", api).await,
            project_id
        );
        assert_eq!(id_of(&store, "groups", "source_uid", group).await, group_id);
        assert_eq!(
            id_of(&store, "org_resources", "source_uid", conn).await,
            conn_id
        );
        assert!(
            count(&store, "SELECT COUNT(*) FROM project_memberships").await < grants,
            "{}: the project's memberships go",
            f.dsn
        );
        assert!(store.apply(&refused, PRUNE).await.unwrap().is_empty());

        // Another object with the project's slug does not take its row over.
        let mut other = refused.clone();
        let mut twin = full
            .projects
            .iter()
            .find(|p| p.source_uid == api)
            .unwrap()
            .clone();
        twin.source_uid = "Project/team-engineering/api-twin".into();
        other.projects.push(twin);
        match store.apply(&other, PRUNE).await {
            Err(StoreError::SourceConflicts { conflicts }) => {
                assert_eq!(conflicts.len(), 1, "{}: {conflicts:?}", f.dsn);
                assert_eq!(conflicts[0].uid, "Project/team-engineering/api-twin");
                assert!(
                    conflicts[0]
                        .message
                        .contains("held in the store by Project team-engineering/api"),
                    "{}: {}",
                    f.dsn,
                    conflicts[0].message
                );
            }
            other => panic!("{}: {other:?}", f.dsn),
        }
        assert_eq!(
            id_of(&store, "projects", "source_uid", api).await,
            project_id
        );

        // The one value of a kept row that follows its object: the deletion policy, so that
        // deleting the object does what it says.
        let mut orphan = refused.clone();
        orphan.kept.insert(conn.to_owned(), Some("Orphan"));
        let plan = store.apply(&orphan, PRUNE).await.unwrap();
        let fields: Vec<(&str, &[&str])> = plan
            .changes
            .iter()
            .map(|c| (c.source.as_deref().unwrap_or_default(), c.fields.as_slice()))
            .collect();
        assert_eq!(fields, [(conn, &["deletionPolicy"][..])], "{}", f.dsn);
        let mut deleted = orphan.clone();
        deleted.kept.remove(conn);
        deleted.live.remove(conn);
        let plan = store.apply(&deleted, PRUNE).await.unwrap();
        assert_eq!(plan.count(Action::Orphan), 1, "{}: {plan:#?}", f.dsn);
        assert_eq!(
            count(
                &store,
                &format!(
                    "SELECT COUNT(*) FROM org_resources WHERE id = '{conn_id}' AND managed = 0"
                )
            )
            .await,
            1,
            "{}",
            f.dsn
        );
        store.apply(&full, PRUNE_ADOPT).await.unwrap();
        store.apply(&refused, PRUNE).await.unwrap();

        // Fixed: the same rows, updated in place.
        let plan = store.apply(&full, PRUNE).await.unwrap();
        assert_eq!(plan.count(Action::Delete), 0, "{}: {plan:#?}", f.dsn);
        assert_eq!(
            id_of(&store, "projects", "source_uid", api).await,
            project_id
        );
        assert_eq!(
            count(&store, "SELECT COUNT(*) FROM project_memberships").await,
            grants
        );

        // Its organization deleted for real: kept or not, the project goes with it.
        let eng = full
            .organizations
            .iter()
            .find(|o| o.source_name == "engineering")
            .unwrap()
            .source_uid
            .clone();
        let mut gone = refused.clone();
        gone.organizations.retain(|o| o.source_uid != eng);
        gone.memberships.retain(|m| m.organization != eng);
        gone.groups.retain(|g| g.group.organization != eng);
        gone.identities.retain(|i| i.organization != eng);
        gone.subject_memberships.retain(|m| m.organization != eng);
        gone.resources.retain(|r| r.organization != eng);
        gone.projects.retain(|p| p.organization != eng);
        gone.project_memberships.retain(|m| m.organization != eng);
        store.apply(&gone, PRUNE).await.unwrap();
        assert_eq!(
            count(
                &store,
                &format!("SELECT COUNT(*) FROM projects WHERE source_uid = '{api}'")
            )
            .await,
            0,
            "{}",
            f.dsn
        );
        assert!(store.apply(&gone, PRUNE).await.unwrap().is_empty());
        store.close().await;
    }
}

/// `effective_members` lists who has access, as `access` does: not a member whose roles grant
/// nothing now (`no-access`, all expired, all still to start), nor the users of a root group
/// whose addition to the organization has no role in effect.
#[tokio::test]
async fn effective_members_leave_out_what_grants_nothing() {
    for f in fresh_stores().await {
        let store = SqlStore::open(&f.dsn).await.unwrap();
        let mut d = acme();
        // engineering's addition of the root group security-reviewers (alice's only way in)
        // has expired: its row holds no role.
        for m in &mut d.subject_memberships {
            if m.kind == "Group" {
                m.roles = "[]".into();
            }
        }
        // erin's root role starts in 2099.
        for m in &mut d.memberships {
            if m.email == "erin@acme.example" && !m.roles.contains("admin") {
                m.roles = r#"[{"role":"member","temporary":{"start":"2099-01-01T00:00:00Z","duration":"1h"}}]"#.into();
            }
        }
        store.apply(&d, PRUNE).await.unwrap();
        let emails = |members: Vec<suborg::store::EffectiveMember>| -> Vec<String> {
            members.into_iter().map(|m| m.email).collect()
        };
        let eng = id_of(&store, "organizations", "slug", "engineering").await;
        let in_eng = emails(store.effective_members(&eng).await.unwrap());
        assert!(
            !in_eng.contains(&"alice@acme.example".to_owned()),
            "{}: {in_eng:?}",
            f.dsn
        );
        assert!(
            in_eng.contains(&"bob@acme.example".to_owned()),
            "{in_eng:?}"
        );
        let acme = id_of(&store, "organizations", "slug", "acme").await;
        let in_acme = emails(store.effective_members(&acme).await.unwrap());
        for gone in ["grace@acme.example", "erin@acme.example"] {
            assert!(!in_acme.contains(&gone.to_owned()), "{gone}: {in_acme:?}");
        }
        assert!(
            in_acme.contains(&"alice@acme.example".to_owned()),
            "{in_acme:?}"
        );
        // The plain list of members still has them: their rows are there.
        let listed: Vec<String> = store
            .members(&acme)
            .await
            .unwrap()
            .into_iter()
            .map(|m| m.email)
            .collect();
        assert!(listed.contains(&"grace@acme.example".to_owned()));
        assert!(listed.contains(&"erin@acme.example".to_owned()));
        store.close().await;
    }
}
