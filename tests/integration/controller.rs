//! The controller without a cluster: the sync against real SQLite files, status computation,
//! and the API calls of a reconcile through a `tower-test` mock that checks each request.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::client::Body;
use kube::core::{DeserializeGuard, PartialObjectMeta, PartialObjectMetaExt};
use kube::runtime::{reflector, watcher};
use kube::{Client, Resource, ResourceExt};
use suborg::api::*;
use suborg::controller::caches::Feeds;
use suborg::controller::http::Health;
use suborg::controller::kinds::{self, Kind};
use suborg::controller::prints::{Feed, Printed};
use suborg::controller::reconcile;
use suborg::controller::sync::{self, Caches, SyncResult, Syncer};
use suborg::controller::{Backoff, Context, FINALIZER, status};
use suborg::store::{SqlStore, Store};
use tower_test::mock::{Handle, SendResponse};

use super::fixtures::{
    connection, group, identity, nested, project, project_user, role, subject_in, suborg,
    temporary, user, user_in,
};

/// Gives an object what the API server would: uid, generation, creation time, our finalizer.
fn stored<K: Resource>(mut o: K, uid: &str) -> K {
    let m = o.meta_mut();
    m.uid = Some(uid.into());
    m.generation = Some(1);
    m.resource_version = Some("1".into());
    m.creation_timestamp = Some(Time("2026-01-01T00:00:00Z".parse().unwrap()));
    m.finalizers = Some(vec![FINALIZER.into()]);
    o
}

fn deleted<K: Resource>(mut o: K) -> K {
    o.meta_mut().deletion_timestamp = Some(Time(Timestamp::now()));
    o
}

fn namespace(name: &str, labels: &[(&str, &str)]) -> PartialObjectMeta<Namespace> {
    ObjectMeta {
        name: Some(name.into()),
        labels: Some(
            labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>(),
        ),
        ..Default::default()
    }
    .into_response_partial::<Namespace>()
}

fn org(name: &str) -> Organization {
    super::fixtures::org(name)
}

/// Caches filled as a first listing would, with writers to change them afterwards.
struct World {
    caches: Caches,
    orgs: Feed<DeserializeGuard<Organization>>,
    subs: Feed<DeserializeGuard<SubOrganization>>,
    members: Feed<DeserializeGuard<OrgMembership>>,
    groups: Feed<DeserializeGuard<Group>>,
    identities: Feed<DeserializeGuard<MachineIdentity>>,
    connections: Feed<DeserializeGuard<AppConnection>>,
    gateways: Feed<DeserializeGuard<Gateway>>,
    relays: Feed<DeserializeGuard<Relay>>,
    projects: Feed<DeserializeGuard<Project>>,
    project_members: Feed<DeserializeGuard<ProjectMembership>>,
    namespaces: Feed<PartialObjectMeta<Namespace>>,
    _dir: tempfile::TempDir,
    dsn: String,
}

fn fill<K: Clone + Resource<DynamicType = ()> + Printed>(w: &mut Feed<K>, objects: Vec<K>) {
    w.apply_watcher_event(&watcher::Event::Init);
    for o in objects {
        w.apply_watcher_event(&watcher::Event::InitApply(o));
    }
    w.apply_watcher_event(&watcher::Event::InitDone);
}

fn guard<K>(v: Vec<K>) -> Vec<DeserializeGuard<K>> {
    v.into_iter().map(|o| DeserializeGuard(Ok(o))).collect()
}

impl World {
    fn new(
        orgs: Vec<Organization>,
        subs: Vec<SubOrganization>,
        members: Vec<OrgMembership>,
        namespaces: Vec<PartialObjectMeta<Namespace>>,
    ) -> Self {
        let (caches, feeds) = Caches::by_hand();
        let Feeds {
            organizations: mut org_w,
            sub_organizations: mut sub_w,
            memberships: mut mem_w,
            groups: mut group_w,
            identities: mut identity_w,
            connections: mut connection_w,
            gateways: mut gateway_w,
            relays: mut relay_w,
            projects: mut project_w,
            project_memberships: mut pm_w,
            namespaces: mut ns_w,
        } = feeds;
        fill(&mut connection_w, Vec::new());
        fill(&mut gateway_w, Vec::new());
        fill(&mut relay_w, Vec::new());
        fill(&mut project_w, Vec::new());
        fill(&mut pm_w, Vec::new());
        fill(&mut org_w, guard(orgs));
        fill(&mut sub_w, guard(subs));
        fill(&mut mem_w, guard(members));
        fill(&mut group_w, Vec::new());
        fill(&mut identity_w, Vec::new());
        fill(&mut ns_w, namespaces);
        let dir = tempfile::tempdir().unwrap();
        let dsn = format!("sqlite://{}", dir.path().join("store.db").display());
        World {
            caches,
            orgs: org_w,
            subs: sub_w,
            members: mem_w,
            groups: group_w,
            identities: identity_w,
            connections: connection_w,
            gateways: gateway_w,
            relays: relay_w,
            projects: project_w,
            project_members: pm_w,
            namespaces: ns_w,
            _dir: dir,
            dsn,
        }
    }

    fn syncer(&self, resync: Duration) -> Syncer {
        self.syncer_on(&self.dsn, resync)
    }

    /// A syncer whose metrics go to `health`.
    fn syncer_counted(&self, health: Arc<Health>) -> Syncer {
        Syncer::new(
            self.caches.clone(),
            self.dsn.clone(),
            Duration::from_secs(300),
            false,
            None,
            health,
        )
    }

    /// A syncer whose store cannot be reached: nothing listens on port 1.
    fn unreachable_syncer(&self) -> Syncer {
        self.syncer_on(
            "postgres://suborg@127.0.0.1:1/suborg",
            Duration::from_secs(300),
        )
    }

    fn syncer_on(&self, dsn: &str, resync: Duration) -> Syncer {
        Syncer::new(
            self.caches.clone(),
            dsn.to_owned(),
            resync,
            false,
            None,
            Arc::new(Health::default()),
        )
    }
}

/// The acme tree: a root, a sub-organization eng with bob as admin, root members alice and
/// bob in namespace `team-a` (delegated by acme), and alice in eng from namespace `team-eng`
/// (delegated by eng).
fn acme() -> World {
    let root = stored(org("acme"), "uid-acme");
    let sub = stored(suborg("eng", "acme", &["bob@acme.example"]), "uid-eng");
    let alice = stored(
        user_in(
            "team-a",
            "alice",
            OrganizationKind::Organization,
            "acme",
            "alice@acme.example",
            vec![role("member")],
        ),
        "uid-alice",
    );
    let bob = stored(
        user_in(
            "team-a",
            "bob",
            OrganizationKind::Organization,
            "acme",
            "bob@acme.example",
            vec![role("member")],
        ),
        "uid-bob",
    );
    let alice_eng = stored(
        user_in(
            "team-eng",
            "alice-eng",
            OrganizationKind::SubOrganization,
            "eng",
            "alice@acme.example",
            vec![role("member")],
        ),
        "uid-alice-eng",
    );
    World::new(
        vec![root],
        vec![sub],
        vec![alice, bob, alice_eng],
        vec![
            namespace("team-a", &[("suborg.io/organization", "acme")]),
            namespace("team-eng", &[("suborg.io/organization", "eng")]),
        ],
    )
}

fn ready(c: &CommonStatus) -> (&str, &str, &str) {
    let r = c
        .conditions
        .iter()
        .find(|c| c.type_ == CONDITION_READY)
        .expect("a Ready condition");
    (r.status.as_str(), r.reason.as_str(), r.message.as_str())
}

/// The kstatus condition beside Ready (`Reconciling` or `Stalled`), with its reason; `None`
/// when there is none. There is never more than one, and it is always `True`.
fn progress(c: &CommonStatus) -> Option<(&str, &str)> {
    let others: Vec<_> = c
        .conditions
        .iter()
        .filter(|c| c.type_ != CONDITION_READY)
        .collect();
    assert!(others.len() <= 1, "{others:?}");
    others.first().map(|o| {
        assert_eq!(o.status, "True", "{o:?}");
        (o.type_.as_str(), o.reason.as_str())
    })
}

fn now() -> Timestamp {
    Timestamp::now()
}

fn object<K: Clone + Resource<DynamicType = ()>>(
    cache: &reflector::Store<DeserializeGuard<K>>,
    name: &str,
) -> K {
    cache
        .state()
        .into_iter()
        .find_map(|g| g.0.as_ref().ok().filter(|o| o.name_any() == name).cloned())
        .unwrap_or_else(|| panic!("{name} is not in the cache"))
}

#[tokio::test]
async fn a_sync_writes_the_tree_and_every_object_reports_ready() {
    let w = acme();
    let syncer = w.syncer(Duration::from_secs(300));
    let result = syncer.sync().await;
    assert!(result.failure.is_none(), "{:?}", result.failure);
    let acme = object(&w.caches.organizations, "acme");
    let s = status::organization(&acme, &result, now());
    assert_eq!(ready(&s.common).0, "True", "{:?}", s);
    assert_eq!(ready(&s.common).1, "Synced");
    assert_eq!(s.slug.as_deref(), Some("acme"));
    assert_eq!(s.members, Some(2));
    assert_eq!(s.sub_organizations, Some(1));
    assert!(s.common.id.is_some());
    let eng = object(&w.caches.sub_organizations, "eng");
    let s = status::sub_organization(&eng, &result, now());
    assert_eq!(ready(&s.common).0, "True", "{s:?}");
    assert_eq!(
        s.root_id,
        result
            .index
            .organizations
            .get("uid-acme")
            .map(|e| e.id.clone())
    );
    // bob as the admin it names, alice by her own membership.
    assert_eq!(s.members, Some(2));
    let m = object(&w.caches.memberships, "alice-eng");
    let s = status::membership(&m, &result, now());
    assert_eq!(ready(&s.common).0, "True", "{s:?}");
    assert_eq!(s.active_roles, vec!["member".to_owned()]);
    // The store holds what the statuses say.
    let store = SqlStore::open(&w.dsn).await.unwrap();
    let tree = store.tree().await.unwrap();
    assert_eq!(tree.len(), 1);
    assert_eq!(tree[0].members, 2);
    assert_eq!(tree[0].sub_organizations[0].members, 2);
}

#[tokio::test]
async fn an_unchanged_tree_is_not_synced_again_and_its_status_is_stable() {
    let w = acme();
    let syncer = w.syncer(Duration::from_secs(300));
    let first = syncer.sync().await;
    let second = syncer.sync().await;
    assert!(
        Arc::ptr_eq(&first, &second),
        "an unchanged tree reuses the last sync"
    );
    let mut acme = object(&w.caches.organizations, "acme");
    let s1 = status::organization(&acme, &first, now());
    acme.status = Some(s1.clone());
    // Later, with the status written back, the same status is computed: no write is made.
    let s2 = status::organization(
        &acme,
        &first,
        now() + k8s_openapi::jiff::SignedDuration::from_secs(60),
    );
    assert_eq!(s1, s2);
}

#[tokio::test]
async fn removing_a_root_membership_revokes_sub_organization_access_in_the_same_sync() {
    let mut w = acme();
    let syncer = w.syncer(Duration::from_secs(300));
    let before = syncer.sync().await;
    assert!(before.index.memberships.contains_key("uid-alice-eng"));
    // alice leaves the root; her eng membership remains in the cluster.
    let alice = object(&w.caches.memberships, "alice");
    w.members
        .apply_watcher_event(&watcher::Event::Delete(DeserializeGuard(Ok(alice))));
    let after = syncer.sync().await;
    assert!(after.failure.is_none(), "{:?}", after.failure);
    assert!(!after.index.memberships.contains_key("uid-alice-eng"));
    let m = object(&w.caches.memberships, "alice-eng");
    let s = status::membership(&m, &after, now());
    let (st, reason, message) = ready(&s.common);
    assert_eq!((st, reason), ("False", "SubjectNotInRoot"), "{message}");
    assert!(message.contains("alice@acme.example"), "{message}");
    assert_eq!(progress(&s.common), Some(("Stalled", "SubjectNotInRoot")));
    assert!(s.common.id.is_none());
    let eng = object(&w.caches.sub_organizations, "eng");
    let s = status::sub_organization(&eng, &after, now());
    assert_eq!(ready(&s.common).0, "True");
    assert_eq!(progress(&s.common), None);
    assert_eq!(s.members, Some(1));
    // The store agrees: acme keeps bob, eng keeps bob (its admin) and lost alice.
    let store = SqlStore::open(&w.dsn).await.unwrap();
    let tree = store.tree().await.unwrap();
    assert_eq!(tree[0].members, 1);
    assert_eq!(tree[0].sub_organizations[0].members, 1);
}

/// acme's tree plus what projects need: a connection and a project in eng, alice in it by
/// her eng membership; a root project with bob, and a root connection.
fn with_projects() -> World {
    let mut w = acme();
    let eng_conn = stored(
        connection(
            "team-eng",
            "github",
            OrganizationKind::SubOrganization,
            "eng",
        ),
        "uid-github",
    );
    let root_conn = stored(
        connection("team-a", "aws", OrganizationKind::Organization, "acme"),
        "uid-aws",
    );
    let mut api = project("team-eng", "api", OrganizationKind::SubOrganization, "eng");
    api.spec.app_connections = vec![LocalObjectRef {
        name: "github".into(),
        namespace: None,
    }];
    let api = stored(api, "uid-api");
    let billing = stored(
        project("team-a", "billing", OrganizationKind::Organization, "acme"),
        "uid-billing",
    );
    let alice_api = stored(
        project_user("team-eng", "alice-api", "api", "alice@acme.example"),
        "uid-alice-api",
    );
    let bob_billing = stored(
        project_user("team-a", "bob-billing", "billing", "bob@acme.example"),
        "uid-bob-billing",
    );
    fill(&mut w.connections, guard(vec![eng_conn, root_conn]));
    fill(&mut w.gateways, Vec::new());
    fill(&mut w.relays, Vec::new());
    fill(&mut w.projects, guard(vec![api, billing]));
    fill(&mut w.project_members, guard(vec![alice_api, bob_billing]));
    w
}

#[tokio::test]
async fn projects_sync_and_revoking_a_membership_revokes_project_access_at_once() {
    let mut w = with_projects();
    let syncer = w.syncer(Duration::from_secs(300));
    let before = syncer.sync().await;
    assert!(before.failure.is_none(), "{:?}", before.failure);
    assert!(before.conflicts.is_empty(), "{:?}", before.conflicts);
    let api = object(&w.caches.projects, "api");
    let s = status::project(&api, &before, now());
    assert_eq!(ready(&s.common).0, "True", "{s:?}");
    assert_eq!((s.slug.as_deref(), s.members), (Some("api"), Some(1)));
    let conn = object(&w.caches.connections, "github");
    assert_eq!(
        ready(&status::resource(&conn, &before, now()).common).0,
        "True"
    );
    let m = object(&w.caches.project_memberships, "alice-api");
    let s = status::project_membership(&m, &before, now());
    assert_eq!(ready(&s.common).0, "True", "{s:?}");
    assert_eq!(s.active_roles, ["member"]);
    assert_eq!(
        s.project_id,
        before.index.projects.get("uid-api").map(|p| p.0.clone())
    );

    // alice leaves the root: her eng membership and her project access go in the same sync;
    // the project membership says it waits on another object.
    let alice = object(&w.caches.memberships, "alice");
    w.members
        .apply_watcher_event(&watcher::Event::Delete(DeserializeGuard(Ok(alice))));
    let after = syncer.sync().await;
    assert!(after.failure.is_none(), "{:?}", after.failure);
    assert!(
        !after
            .index
            .project_memberships
            .contains_key("uid-alice-api")
    );
    assert!(
        after
            .index
            .project_memberships
            .contains_key("uid-bob-billing")
    );
    let s = status::project_membership(&m, &after, now());
    assert_eq!(ready(&s.common).1, "DependencyNotReady", "{s:?}");
    assert!(s.active_roles.is_empty() && s.common.id.is_none());
    let store = SqlStore::open(&w.dsn).await.unwrap();
    assert!(
        store
            .access("alice@acme.example")
            .await
            .unwrap()
            .is_none_or(|a| a.is_empty()),
        "alice reaches nothing"
    );

    // A project pointed at the root's connection is rejected, naming both organizations.
    let mut api = object(&w.caches.projects, "api");
    api.spec.app_connections[0] = LocalObjectRef {
        name: "aws".into(),
        namespace: Some("team-a".into()),
    };
    api.metadata.generation = Some(2);
    w.projects
        .apply_watcher_event(&watcher::Event::Apply(DeserializeGuard(Ok(api.clone()))));
    let moved = syncer.sync().await;
    let s = status::project(&api, &moved, now());
    let (st, reason, message) = ready(&s.common);
    assert_eq!(
        (st, reason),
        ("False", "ResourceNotInOrganization"),
        "{message}"
    );
    assert!(
        message.contains("is not one Project \"api\" of SubOrganization \"eng\" can use"),
        "{message}"
    );
}

#[tokio::test]
async fn a_namespace_label_change_moves_delegation() {
    let mut w = acme();
    let syncer = w.syncer(Duration::from_secs(300));
    assert!(
        syncer
            .sync()
            .await
            .index
            .memberships
            .contains_key("uid-bob")
    );
    w.namespaces
        .apply_watcher_event(&watcher::Event::Apply(namespace("team-a", &[])));
    let after = syncer.sync().await;
    let bob = object(&w.caches.memberships, "bob");
    let s = status::membership(&bob, &after, now());
    assert_eq!(ready(&s.common).1, "NamespaceNotAllowed", "{s:?}");
    assert!(!after.index.memberships.contains_key("uid-bob"));
    w.namespaces
        .apply_watcher_event(&watcher::Event::Apply(namespace(
            "team-a",
            &[("suborg.io/organization", "acme")],
        )));
    let again = syncer.sync().await;
    assert!(again.index.memberships.contains_key("uid-bob"));
}

/// A namespace losing its delegation label must not delete what it holds: the project and the
/// connection keep their rows and ids, frozen (an edit meanwhile waits), while the access
/// granted from that namespace goes at once. With the label back, the same rows carry on.
#[tokio::test]
async fn a_namespace_losing_delegation_keeps_its_projects_and_revokes_its_access() {
    let mut w = with_projects();
    let health = Arc::new(Health::default());
    let syncer = w.syncer_counted(health.clone());
    let before = syncer.sync().await;
    let api_id = before.index.projects["uid-api"].0.clone();
    let github_id = before.index.resources["uid-github"].clone();
    assert!(
        before
            .index
            .project_memberships
            .contains_key("uid-alice-api")
    );

    w.namespaces
        .apply_watcher_event(&watcher::Event::Apply(namespace("team-eng", &[])));
    let mut api = object(&w.caches.projects, "api");
    api.spec.display_name = Some("Renamed while refused".into());
    api.metadata.generation = Some(2);
    w.projects
        .apply_watcher_event(&watcher::Event::Apply(DeserializeGuard(Ok(api.clone()))));
    let after = syncer.sync().await;
    assert!(after.failure.is_none(), "{:?}", after.failure);
    assert_eq!(after.index.projects["uid-api"].0, api_id);
    assert_eq!(after.index.resources["uid-github"], github_id);
    assert!(!after.index.memberships.contains_key("uid-alice-eng"));
    assert!(
        !after
            .index
            .project_memberships
            .contains_key("uid-alice-api")
    );
    let s = status::project(&api, &after, now());
    let (st, reason, message) = ready(&s.common);
    assert_eq!((st, reason), ("False", "NamespaceNotAllowed"), "{message}");
    assert!(
        message.contains("stay in the store as last synced"),
        "{message}"
    );
    assert_eq!(s.common.id.as_deref(), Some(api_id.as_str()));
    let store = SqlStore::open(&w.dsn).await.unwrap();
    let name = |id: String| {
        let pool = store.pool().clone();
        async move {
            sqlx::query("SELECT display_name FROM projects WHERE id = $1")
                .bind(id)
                .fetch_one(&pool)
                .await
                .map(|r| sqlx::Row::get::<String, _>(&r, 0))
                .unwrap()
        }
    };
    assert_ne!(name(api_id.clone()).await, "Renamed while refused");
    assert!(
        store
            .access("alice@acme.example")
            .await
            .unwrap()
            .is_none_or(|a| a.iter().all(|g| g.organization != "acme/eng")),
        "alice reaches nothing in eng"
    );

    w.namespaces
        .apply_watcher_event(&watcher::Event::Apply(namespace(
            "team-eng",
            &[("suborg.io/organization", "eng")],
        )));
    let again = syncer.sync().await;
    assert_eq!(again.index.projects["uid-api"].0, api_id);
    assert!(
        again
            .index
            .project_memberships
            .contains_key("uid-alice-api")
    );
    assert_eq!(name(api_id.clone()).await, "Renamed while refused");
    let s = status::project(&api, &again, now());
    assert_eq!(ready(&s.common).0, "True", "{s:?}");

    // Refused again, its policy set to Orphan, then deleted: the policy is the one thing
    // written, the rows stay unmanaged, and none of it is drift.
    w.namespaces
        .apply_watcher_event(&watcher::Event::Apply(namespace("team-eng", &[])));
    api.spec.deletion_policy = DeletionPolicy::Orphan;
    api.metadata.generation = Some(3);
    w.projects
        .apply_watcher_event(&watcher::Event::Apply(DeserializeGuard(Ok(api.clone()))));
    let orphan = syncer.sync().await;
    assert_eq!(orphan.index.projects["uid-api"].0, api_id);
    w.projects
        .apply_watcher_event(&watcher::Event::Delete(DeserializeGuard(Ok(api.clone()))));
    let gone = syncer.sync().await;
    assert!(!gone.index.projects.contains_key("uid-api"));
    let left: i64 = sqlx::query("SELECT COUNT(*) FROM projects WHERE id = $1 AND managed = 0")
        .bind(&api_id)
        .fetch_one(store.pool())
        .await
        .map(|r| sqlx::Row::get(&r, 0))
        .unwrap();
    assert_eq!(left, 1, "the project's row is left in place");
    assert_eq!(drift_corrected(&health), 0);
    store.close().await;
}

/// An object that exists but no longer reads as its type (a CRD newer than the binary, say)
/// is not taken for deleted: a project's rows stay, with their id, until it reads again.
#[tokio::test]
async fn a_project_that_cannot_be_read_keeps_its_rows() {
    let mut w = with_projects();
    let syncer = w.syncer(Duration::from_secs(300));
    let before = syncer.sync().await;
    let id = before.index.projects["uid-billing"].0.clone();
    let billing = object(&w.caches.projects, "billing");
    let mut raw = serde_json::to_value(&billing).unwrap();
    raw["spec"]["deletionPolicy"] = serde_json::json!(42);
    let unreadable: DeserializeGuard<Project> = serde_json::from_value(raw).unwrap();
    assert!(unreadable.0.is_err());
    w.projects
        .apply_watcher_event(&watcher::Event::Apply(unreadable));
    let after = syncer.sync().await;
    assert!(after.failure.is_none(), "{:?}", after.failure);
    assert_eq!(after.index.projects["uid-billing"].0, id);
    assert!(
        !after
            .index
            .project_memberships
            .contains_key("uid-bob-billing"),
        "access through it waits"
    );
    w.projects
        .apply_watcher_event(&watcher::Event::Apply(DeserializeGuard(Ok(billing))));
    let again = syncer.sync().await;
    assert_eq!(again.index.projects["uid-billing"].0, id);
    assert!(
        again
            .index
            .project_memberships
            .contains_key("uid-bob-billing")
    );
}

/// A project waiting for a slug that a kept (refused) project holds goes in soon after that
/// one is deleted: the sync that deleted the holder's row left it out, and the next comes
/// after a short retry, not at the resync. None of it is drift.
#[tokio::test]
async fn a_slug_freed_by_a_deleted_kept_project_is_taken_soon_and_is_not_drift() {
    let mut w = with_projects();
    w.namespaces
        .apply_watcher_event(&watcher::Event::Apply(namespace(
            "team-eng-2",
            &[("suborg.io/organization", "eng")],
        )));
    let health = Arc::new(Health::default());
    let syncer = w.syncer_counted(health.clone());
    syncer.sync().await;
    w.namespaces
        .apply_watcher_event(&watcher::Event::Apply(namespace("team-eng", &[])));
    let mut other = project(
        "team-eng-2",
        "api-2",
        OrganizationKind::SubOrganization,
        "eng",
    );
    other.spec.slug = Some("api".into());
    let other = stored(other, "uid-api-2");
    w.projects
        .apply_watcher_event(&watcher::Event::Apply(DeserializeGuard(Ok(other.clone()))));
    let held = syncer.sync().await;
    let message = held.conflicts.get("uid-api-2").cloned().unwrap_or_default();
    assert!(
        message.contains("held in the store by Project team-eng/api"),
        "{message}"
    );
    assert!(
        held.retry.is_some(),
        "a conflict is looked at again before the resync"
    );

    let api = object(&w.caches.projects, "api");
    w.projects
        .apply_watcher_event(&watcher::Event::Delete(DeserializeGuard(Ok(api))));
    let freed = syncer.sync().await;
    assert!(!freed.index.projects.contains_key("uid-api"));
    let retry = freed.retry.unwrap_or(Duration::ZERO);
    tokio::time::sleep(retry + Duration::from_millis(50)).await;
    let taken = syncer.sync().await;
    assert!(taken.conflicts.is_empty(), "{:?}", taken.conflicts);
    assert_eq!(taken.index.projects["uid-api-2"].1, "api");
    assert_eq!(drift_corrected(&health), 0);
}

#[tokio::test]
async fn rows_changed_outside_suborg_are_rewritten_on_resync() {
    let w = acme();
    let syncer = w.syncer(Duration::ZERO);
    syncer.sync().await;
    let store = SqlStore::open(&w.dsn).await.unwrap();
    let pool = sqlx::AnyPool::connect(&w.dsn).await.unwrap();
    sqlx::query("UPDATE organizations SET display_name = 'Hijacked' WHERE slug = 'eng'")
        .execute(&pool)
        .await
        .unwrap();
    let drifted = store.organizations().await.unwrap();
    assert!(drifted.iter().any(|o| o.display_name == "Hijacked"));
    syncer.sync().await;
    let fixed = store.organizations().await.unwrap();
    assert!(
        fixed.iter().all(|o| o.display_name != "Hijacked"),
        "{fixed:?}"
    );
}

#[tokio::test]
async fn an_unreachable_store_is_reported_on_every_object_and_recovers() {
    let mut w = acme();
    // zed's membership of acme is refused on its own: a role that ends before it starts.
    let mut zed = member_in(
        "team-a",
        "zed",
        OrganizationKind::Organization,
        "acme",
        "zed@acme.example",
    );
    zed.spec.roles = vec![temporary(
        "member",
        Some("2026-02-01T00:00:00Z"),
        Some("2026-01-01T00:00:00Z"),
        None,
    )];
    w.members
        .apply_watcher_event(&watcher::Event::Apply(DeserializeGuard(Ok(zed.clone()))));
    // And zed's eng membership, which waits for that one.
    let zed_in_eng = member_in(
        "team-eng",
        "zed-eng",
        OrganizationKind::SubOrganization,
        "eng",
        "zed@acme.example",
    );
    w.members
        .apply_watcher_event(&watcher::Event::Apply(DeserializeGuard(Ok(
            zed_in_eng.clone()
        ))));
    let syncer = w.unreachable_syncer();
    let result = syncer.sync().await;
    let failure = result.failure.as_ref().expect("a failure");
    assert_eq!(failure.reason, "StoreUnavailable");
    assert!(
        failure.message.contains("127.0.0.1:1"),
        "{}",
        failure.message
    );
    let bob = object(&w.caches.memberships, "bob");
    let s = status::membership(&bob, &result, now());
    assert_eq!(ready(&s.common).0, "False");
    assert_eq!(ready(&s.common).1, "StoreUnavailable");
    assert_eq!(
        progress(&s.common),
        Some(("Reconciling", "StoreUnavailable"))
    );
    // A rule error needs no store: it is said meanwhile.
    let s = status::membership(&zed, &result, now());
    assert_eq!(ready(&s.common).1, "InvalidTemporaryAccess", "{s:?}");
    // What waits for it says so: the store's return will not change that.
    let s = status::membership(&zed_in_eng, &result, now());
    assert_eq!(ready(&s.common).1, "DependencyNotReady", "{s:?}");
    assert!(ready(&s.common).2.contains("team-a/zed"), "{s:?}");

    // A store that comes back is picked up again without a restart: here a SQLite file whose
    // directory appears after the first attempt.
    let dir = tempfile::tempdir().unwrap();
    let later = dir.path().join("later");
    let syncer = w.syncer_on(
        &format!("sqlite://{}", later.join("store.db").display()),
        Duration::from_secs(300),
    );
    let failed = syncer.sync().await;
    assert_eq!(
        failed.failure.as_ref().map(|f| f.reason),
        Some("StoreUnavailable")
    );
    std::fs::create_dir(&later).unwrap();
    // A failed sync is tried again after its retry delay (5 s after a first failure).
    let retry = failed.retry.expect("a retry delay");
    assert!(retry >= Duration::from_secs(5) && retry <= Duration::from_millis(5500));
    tokio::time::sleep(retry + Duration::from_millis(100)).await;
    let result = syncer.sync().await;
    assert!(result.failure.is_none(), "{:?}", result.failure);
    let mut bob = bob;
    bob.status = Some(s);
    let s = status::membership(&bob, &result, now());
    assert_eq!(ready(&s.common).0, "True", "{s:?}");
    assert_eq!(progress(&s.common), None, "gone with the outage");
}

#[tokio::test]
async fn an_object_whose_rows_conflict_is_left_out_and_the_rest_synced() {
    let w = acme();
    // A row with acme's slug that suborg did not create.
    let store = SqlStore::open(&w.dsn).await.unwrap();
    let pool = sqlx::AnyPool::connect(&w.dsn).await.unwrap();
    sqlx::query(
        "INSERT INTO organizations (id, managed, depth, parent_key, root_id, slug, display_name, deletion_policy, created_at, updated_at) \
         VALUES ('foreign', 0, 0, '', 'foreign', 'acme', 'acme', 'Delete', 0, 0)",
    )
    .execute(&pool)
    .await
    .unwrap();
    drop(store);
    let mut w = w;
    w.orgs
        .apply_watcher_event(&watcher::Event::Apply(DeserializeGuard(Ok(stored(
            org("globex"),
            "uid-globex",
        )))));
    let syncer = w.syncer(Duration::from_secs(300));
    let result = syncer.sync().await;
    assert!(result.failure.is_none(), "{:?}", result.failure);
    let acme = object(&w.caches.organizations, "acme");
    let s = status::organization(&acme, &result, now());
    assert_eq!(ready(&s.common).1, "StoreConflict", "{s:?}");
    assert!(ready(&s.common).2.contains("--adopt"), "{s:?}");
    let globex = object(&w.caches.organizations, "globex");
    assert_eq!(
        ready(&status::organization(&globex, &result, now()).common).0,
        "True"
    );
}

/// A root membership left out for a store conflict is not "missing": the user's
/// sub-organization membership waits for it, naming it, and is not told to add one.
#[tokio::test]
async fn a_sub_organization_member_waits_for_a_root_membership_left_out_for_a_conflict() {
    let w = acme();
    let first = w.syncer(Duration::from_secs(300)).sync().await;
    assert!(first.failure.is_none(), "{:?}", first.failure);
    // alice's root row becomes one suborg did not create.
    let pool = sqlx::AnyPool::connect(&w.dsn).await.unwrap();
    sqlx::query(
        "UPDATE memberships SET managed = 0, source_uid = NULL WHERE source_uid = 'uid-alice'",
    )
    .execute(&pool)
    .await
    .unwrap();
    let result = w.syncer(Duration::from_secs(300)).sync().await;
    assert!(result.failure.is_none(), "{:?}", result.failure);
    let alice = object(&w.caches.memberships, "alice");
    let s = status::membership(&alice, &result, now());
    assert_eq!(ready(&s.common).1, "StoreConflict", "{s:?}");
    let alice_eng = object(&w.caches.memberships, "alice-eng");
    let s = status::membership(&alice_eng, &result, now());
    let (state, reason, message) = ready(&s.common);
    assert_eq!((state, reason), ("False", "DependencyNotReady"), "{s:?}");
    assert!(message.contains("OrgMembership team-a/alice"), "{message}");
    // As kstatus reads it: the conflict needs a change, the wait does not.
    assert_eq!(
        progress(&status::membership(&alice, &result, now()).common),
        Some(("Stalled", "StoreConflict"))
    );
    assert_eq!(
        progress(&s.common),
        Some(("Reconciling", "DependencyNotReady"))
    );
    // bob, who conflicts with nothing, is synced.
    let bob = object(&w.caches.memberships, "bob");
    assert_eq!(
        ready(&status::membership(&bob, &result, now()).common).0,
        "True"
    );
}

/// A second controller on a store another claimed (another selector, another cluster) writes
/// nothing, and says why on every object, as kstatus reads a stall: it would otherwise delete
/// the first one's rows on each sync.
#[tokio::test]
async fn a_controller_on_a_store_another_claimed_writes_nothing() {
    use suborg::store::Writer;
    let w = acme();
    let first = w
        .syncer(Duration::from_secs(300))
        .with_writer(Writer::controller("c1", Some("team=a"), false));
    assert!(first.sync().await.failure.is_none());
    let before = SqlStore::open(&w.dsn).await.unwrap().tree().await.unwrap();
    let second = w
        .syncer(Duration::from_secs(300))
        .with_writer(Writer::controller("c1", Some("team=b"), false));
    let result = second.sync().await;
    let failure = result.failure.as_ref().expect("refused");
    assert_eq!(failure.reason, "StoreClaimed");
    assert!(
        failure.message.contains("--take-over-store"),
        "{}",
        failure.message
    );
    let acme = object(&w.caches.organizations, "acme");
    let s = status::organization(&acme, &result, now());
    assert_eq!(ready(&s.common).1, "StoreClaimed", "{s:?}");
    assert_eq!(progress(&s.common), Some(("Stalled", "StoreClaimed")));
    let after = SqlStore::open(&w.dsn).await.unwrap().tree().await.unwrap();
    assert_eq!(format!("{before:?}"), format!("{after:?}"));
}

/// Two controllers whose selectors overlap on one store: the one refused by the claim leaves
/// an object the other keeps Ready as it is (no status flipping between them), and tells one
/// that is not Ready why nothing is written.
#[tokio::test]
async fn a_refused_controller_leaves_what_the_claiming_one_keeps_ready() {
    use suborg::store::Writer;
    let w = acme();
    let first = w
        .syncer(Duration::from_secs(300))
        .with_writer(Writer::controller("c1", None, false));
    let synced = first.sync().await;
    let second = w
        .syncer(Duration::from_secs(300))
        .with_writer(Writer::controller("c1", Some("team=a"), false));
    let (client, mut handle) = mock();
    let ctx = context(client, second);
    let mut bob = object(&w.caches.memberships, "bob");
    bob.status = Some(status::membership(&bob, &synced, now()));
    assert_eq!(ready(&bob.status.as_ref().unwrap().common).0, "True");
    let err = tokio::time::timeout(Duration::from_secs(5), spawn_reconcile(bob.clone(), &ctx))
        .await
        .expect("the reconcile wrote the Ready status over (unanswered here)")
        .unwrap()
        .expect_err("nothing is written");
    assert_eq!(err.category(), "StoreClaimed");
    let quiet = tokio::time::timeout(Duration::from_millis(300), handle.next_request()).await;
    assert!(quiet.is_err(), "the Ready status was overwritten");
    // Without a status (or at an older generation), it is told.
    bob.status = None;
    let task = spawn_reconcile(bob.clone(), &ctx);
    let (method, uri, body, send) = next(&mut handle).await;
    assert_eq!(method, "PATCH");
    assert!(uri.contains("/orgmemberships/bob/status?"), "{uri}");
    assert_eq!(body["status"]["conditions"][0]["reason"], "StoreClaimed");
    reply(send, &bob);
    assert!(task.await.unwrap().is_err());
}

/// A syncer's task, running until [`Task::stop`].
struct Task {
    stop: tokio::sync::oneshot::Sender<()>,
    handle: tokio::task::JoinHandle<()>,
}

impl Task {
    fn start(syncer: &Arc<Syncer>) -> Self {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let syncer = syncer.clone();
        let handle = tokio::spawn(async move {
            syncer
                .run_task(async {
                    let _ = stopped.await;
                })
                .await
        });
        Task { stop, handle }
    }

    /// Stops the task; it must end within 5 s.
    async fn stop(self) {
        self.stop.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(5), self.handle)
            .await
            .expect("the task stops")
            .unwrap();
    }
}

/// One sync task owns the tree and publishes each result: a reconcile's read covers every watch
/// event taken before it, costs no sync when nothing changed, and once the task stops, a read
/// syncs on its own.
#[tokio::test]
async fn reconcilers_read_what_the_sync_task_publishes() {
    let mut w = acme();
    let syncer = Arc::new(w.syncer(Duration::from_secs(300)));
    let task = Task::start(&syncer);
    let first = syncer.current().await;
    assert!(first.failure.is_none(), "{:?}", first.failure);
    let again = syncer.current().await;
    assert!(
        Arc::ptr_eq(&first, &again),
        "nothing changed: the same result"
    );
    // An object that arrives after the first result is in the next read.
    w.orgs
        .apply_watcher_event(&watcher::Event::Apply(DeserializeGuard(Ok(stored(
            org("globex"),
            "uid-globex",
        )))));
    let next = syncer.current().await;
    assert!(!Arc::ptr_eq(&first, &next), "a new sync for a new object");
    let globex = object(&w.caches.organizations, "globex");
    assert_eq!(
        ready(&status::organization(&globex, &next, now()).common).0,
        "True"
    );
    task.stop().await;
    let after = syncer.current().await;
    assert!(
        Arc::ptr_eq(&after, &next),
        "unchanged, without the task too"
    );
}

/// A reconcile of an object the latest result saw at its generation uses that result at once,
/// although other objects arrived since; an object it has not seen waits for the sync that
/// sees it. Objects arriving one after another do not each wait for a sync of every later one.
#[tokio::test]
async fn a_result_serves_the_objects_it_saw_while_others_arrive() {
    let mut w = acme();
    let syncer = Arc::new(
        w.syncer(Duration::from_secs(300))
            .with_debounce(sync::Debounce {
                quiet: Duration::from_millis(200),
                max_wait: Duration::from_secs(1),
            }),
    );
    let task = Task::start(&syncer);
    let first = syncer.current().await;
    assert!(first.failure.is_none(), "{:?}", first.failure);
    let acme = object(&w.caches.organizations, "acme");
    let (uid, generation) = (acme.uid().unwrap(), acme.metadata.generation.unwrap());
    w.orgs
        .apply_watcher_event(&watcher::Event::Apply(DeserializeGuard(Ok(stored(
            org("globex"),
            "uid-globex",
        )))));
    let for_acme = syncer.current_for(&uid, generation).await;
    assert!(
        Arc::ptr_eq(&first, &for_acme),
        "acme is as the first result saw it: no wait for globex's sync"
    );
    let for_globex = syncer.current_for("uid-globex", 1).await;
    assert!(
        !Arc::ptr_eq(&first, &for_globex),
        "globex waits for its sync"
    );
    assert_eq!(for_globex.seen.get("uid-globex"), Some(&1));
    let globex = object(&w.caches.organizations, "globex");
    assert_eq!(
        ready(&status::organization(&globex, &for_globex, now()).common).0,
        "True"
    );
    task.stop().await;
}

/// Carol's root membership in acme, from namespace `team-a`, as stored.
fn carol(roles: Vec<RoleBinding>) -> OrgMembership {
    stored(
        user_in(
            "team-a",
            "carol",
            OrganizationKind::Organization,
            "acme",
            "carol@acme.example",
            roles,
        ),
        "uid-carol",
    )
}

/// A counter of `/metrics`: the value on the line that starts with `series` and a space.
/// A `duration` without `start` counts from the object's creation, and the row says when that
/// was: a reader of the store times the role as the controller does, whenever the row itself
/// was written.
#[tokio::test]
async fn a_duration_is_stored_with_the_start_it_counts_from() {
    let mut w = acme();
    w.members
        .apply_watcher_event(&watcher::Event::Apply(DeserializeGuard(Ok(carol(vec![
            role("member"),
            temporary("admin", None, None, Some("876000h")),
        ])))));
    let syncer = w.syncer(Duration::from_secs(300));
    let result = syncer.sync().await;
    let (id, _) = result.index.memberships["uid-carol"].clone();
    let store = SqlStore::open(&w.dsn).await.unwrap();
    let roles: String = sqlx::query("SELECT roles FROM memberships WHERE id = $1")
        .bind(&id)
        .fetch_one(store.pool())
        .await
        .map(|r| sqlx::Row::get(&r, 0))
        .unwrap();
    let roles: serde_json::Value = serde_json::from_str(&roles).unwrap();
    assert_eq!(
        roles[1]["temporary"],
        serde_json::json!({"start": "2026-01-01T00:00:00Z", "duration": "876000h"}),
        "{roles}"
    );
    store.close().await;
}

/// A member of acme from `team-a`, not yet in the acme world.
fn acme_member(name: &str, email: &str) -> OrgMembership {
    member_in(
        "team-a",
        name,
        OrganizationKind::Organization,
        "acme",
        email,
    )
}

/// A member (role `member`) of the organization `org` from namespace `ns`, as stored, with
/// uid `uid-<name>`.
fn member_in(
    ns: &str,
    name: &str,
    kind: OrganizationKind,
    org: &str,
    email: &str,
) -> OrgMembership {
    stored(
        user_in(ns, name, kind, org, email, vec![role("member")]),
        &format!("uid-{name}"),
    )
}

/// dave, a member of acme not yet in the acme world.
fn dave() -> OrgMembership {
    acme_member("dave", "dave@acme.example")
}

fn counter(health: &Health, series: &str) -> u64 {
    let prefix = format!("{series} ");
    health
        .metrics
        .render()
        .lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()).map(str::to_owned))
        .map_or(0, |n| n.trim().parse().unwrap())
}

/// `suborg_objects` follows the statuses: while the store fails, every object says
/// `StoreUnavailable`, so none counts as ready, and they count again once it is back.
#[tokio::test]
async fn the_readiness_gauge_counts_every_object_not_ready_while_the_store_fails() {
    let w = acme();
    let dir = tempfile::tempdir().unwrap();
    let later = dir.path().join("later");
    let health = Arc::new(Health::default());
    let syncer = Syncer::new(
        w.caches.clone(),
        format!("sqlite://{}", later.join("store.db").display()),
        Duration::from_secs(300),
        false,
        None,
        health.clone(),
    );
    let memberships = w.caches.memberships.state().len() as u64;
    let ready = |r: &str| {
        counter(
            &health,
            &format!("suborg_objects{{kind=\"OrgMembership\",ready=\"{r}\"}}"),
        )
    };
    let failed = syncer.sync().await;
    assert!(failed.failure.is_some());
    assert_eq!((ready("True"), ready("False")), (0, memberships));
    std::fs::create_dir(&later).unwrap();
    tokio::time::sleep(failed.retry.unwrap() + Duration::from_millis(100)).await;
    let result = syncer.sync().await;
    assert!(result.failure.is_none(), "{:?}", result.failure);
    assert_eq!((ready("True"), ready("False")), (memberships, 0));
    // team-a no longer speaks for acme: alice's and bob's root memberships are refused, and
    // with them gone, alice's eng membership is refused too. None of the three is ready.
    let mut w = w;
    w.namespaces
        .apply_watcher_event(&watcher::Event::Apply(namespace("team-a", &[])));
    let result = syncer.sync().await;
    let alice_in_eng =
        suborg::domain::ObjectKey::namespaced("OrgMembership", "team-eng", "alice-eng");
    assert_eq!(
        result.problems[&alice_in_eng][0].reason,
        suborg::domain::Reason::SubjectNotInRoot
    );
    assert_eq!((ready("True"), ready("False")), (memberships - 3, 3));
}

/// How many syncs have applied a plan, as `/metrics` says.
fn applied_syncs(health: &Health) -> u64 {
    counter(health, "suborg_store_syncs_total{result=\"applied\"}")
}

/// With no watch event at all, the sync task wakes when a temporary role ends, syncs once and
/// publishes a result without it; between deadlines it does nothing.
#[tokio::test]
async fn the_sync_task_wakes_by_itself_when_a_temporary_role_ends() {
    let mut w = acme();
    let ends = Timestamp::now() + k8s_openapi::jiff::SignedDuration::from_millis(1500);
    let carol = carol(vec![
        temporary("admin", None, Some(&format!("{ends:.0}")), None),
        role("member"),
    ]);
    w.members
        .apply_watcher_event(&watcher::Event::Apply(DeserializeGuard(Ok(carol))));
    let health = Arc::new(Health::default());
    let syncer = Arc::new(Syncer::new(
        w.caches.clone(),
        w.dsn.clone(),
        Duration::from_secs(300),
        false,
        None,
        health.clone(),
    ));
    let task = Task::start(&syncer);
    let first = syncer.current().await;
    assert!(first.failure.is_none(), "{:?}", first.failure);
    assert!(first.next_change.is_some(), "the admin role ends");
    let before = applied_syncs(&health);
    // Nobody asks and nothing changes: the deadline alone wakes the task.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        applied_syncs(&health),
        before + 1,
        "one sync at the role's end"
    );
    let after = syncer.current().await;
    assert_eq!(after.next_change, None, "no temporary role left to change");
    assert_eq!(
        applied_syncs(&health),
        before + 1,
        "the read found it ready"
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(applied_syncs(&health), before + 1, "no deadline: no sync");
    task.stop().await;
}

/// However many objects conflict, each is reported and the rest of the tree is synced.
#[tokio::test]
async fn every_conflicting_object_is_reported_and_the_rest_synced() {
    let mut w = acme();
    let store = SqlStore::open(&w.dsn).await.unwrap();
    drop(store);
    let pool = sqlx::AnyPool::connect(&w.dsn).await.unwrap();
    for i in 0..24 {
        sqlx::query(&format!(
            "INSERT INTO organizations (id, managed, depth, parent_key, root_id, slug, display_name, deletion_policy, created_at, updated_at) \
             VALUES ('foreign-{i}', 0, 0, '', 'foreign-{i}', 'taken-{i}', 'x', 'Delete', 0, 0)"
        ))
        .execute(&pool)
        .await
        .unwrap();
        w.orgs
            .apply_watcher_event(&watcher::Event::Apply(DeserializeGuard(Ok(stored(
                org(&format!("taken-{i}")),
                &format!("uid-taken-{i}"),
            )))));
    }
    let syncer = w.syncer(Duration::from_secs(300));
    let result = syncer.sync().await;
    assert!(result.failure.is_none(), "{:?}", result.failure);
    assert_eq!(result.conflicts.len(), 24, "{:?}", result.conflicts.keys());
    for i in 0..24 {
        let o = object(&w.caches.organizations, &format!("taken-{i}"));
        let s = status::organization(&o, &result, now());
        assert_eq!(ready(&s.common).1, "StoreConflict", "{s:?}");
    }
    let acme = object(&w.caches.organizations, "acme");
    assert_eq!(
        ready(&status::organization(&acme, &result, now()).common).0,
        "True"
    );
}

#[tokio::test]
async fn expired_roles_leave_the_row_and_the_next_change_is_known() {
    let m = carol(vec![
        role("member"),
        temporary(
            "admin",
            Some("2026-01-01T00:00:00Z"),
            Some("2026-01-01T10:00:00Z"),
            None,
        ),
    ]);
    let w = World::new(
        vec![stored(org("acme"), "uid-acme")],
        vec![],
        vec![m.clone()],
        vec![namespace("team-a", &[("suborg.io/organization", "acme")])],
    );
    let syncer = w.syncer(Duration::from_secs(300));
    let result = syncer.sync().await;
    let s = status::membership(&m, &result, now());
    // Long expired by now: only member remains, in the status and in the store.
    assert_eq!(s.active_roles, vec!["member".to_owned()]);
    let message = ready(&s.common).2;
    assert!(message.contains("RoleExpired"), "{message}");
    let store = SqlStore::open(&w.dsn).await.unwrap();
    let org_id = &result.index.organizations["uid-acme"].id;
    let members = store.members(org_id).await.unwrap();
    assert_eq!(members[0].roles, serde_json::json!([{"role": "member"}]));
    // A role ending in the future is a reason to come back then, for that object alone.
    let soon = now() + k8s_openapi::jiff::SignedDuration::from_secs(90);
    let carol = suborg::domain::model::membership_key(&m);
    let result = SyncResult {
        next_change: Some(soon),
        next_changes: [(carol.clone(), soon)].into(),
        ..SyncResult::default()
    };
    let visit = reconcile::next_visit(&result, &carol, now(), Duration::from_secs(300));
    assert!(
        visit <= Duration::from_secs(92) && visit >= Duration::from_secs(89),
        "{visit:?}"
    );
    let other = suborg::domain::model::organization_key(&stored(org("acme"), "uid-acme"));
    let visit = reconcile::next_visit(&result, &other, now(), Duration::from_secs(300));
    assert!(visit >= Duration::from_secs(300), "{visit:?}");
}

/// Each object is looked at again at its own next temporary-role change, not the tree's.
#[tokio::test]
async fn each_membership_knows_its_own_next_role_change() {
    let in_future = |name: &str, email: &str, start: &str| {
        stored(
            user_in(
                "team-a",
                name,
                OrganizationKind::Organization,
                "acme",
                email,
                vec![
                    role("member"),
                    temporary("admin", Some(start), None, Some("1h")),
                ],
            ),
            &format!("uid-{name}"),
        )
    };
    let soon = in_future("soon", "soon@acme.example", "2999-01-01T00:00:00Z");
    let later = in_future("later", "later@acme.example", "2999-06-01T00:00:00Z");
    let plain = stored(
        user_in(
            "team-a",
            "plain",
            OrganizationKind::Organization,
            "acme",
            "plain@acme.example",
            vec![role("member")],
        ),
        "uid-plain",
    );
    let w = World::new(
        vec![stored(org("acme"), "uid-acme")],
        vec![],
        vec![soon.clone(), later.clone(), plain.clone()],
        vec![namespace("team-a", &[("suborg.io/organization", "acme")])],
    );
    let result = w.syncer(Duration::from_secs(300)).sync().await;
    let key = suborg::domain::model::membership_key;
    let at = |s: &str| s.parse::<k8s_openapi::jiff::Timestamp>().unwrap();
    assert_eq!(
        result.next_changes.get(&key(&soon)),
        Some(&at("2999-01-01T00:00:00Z"))
    );
    assert_eq!(
        result.next_changes.get(&key(&later)),
        Some(&at("2999-06-01T00:00:00Z"))
    );
    assert_eq!(result.next_changes.get(&key(&plain)), None);
    assert_eq!(result.next_change, Some(at("2999-01-01T00:00:00Z")));
}

#[tokio::test]
async fn a_root_being_deleted_is_held_while_sub_organizations_remain() {
    let mut w = acme();
    let syncer = w.syncer(Duration::from_secs(300));
    syncer.sync().await;
    let acme = deleted(object(&w.caches.organizations, "acme"));
    w.orgs
        .apply_watcher_event(&watcher::Event::Apply(DeserializeGuard(Ok(acme.clone()))));
    let result = syncer.sync().await;
    assert_eq!(result.held.get("acme"), Some(&vec!["eng".to_owned()]));
    assert!(result.index.organizations.contains_key("uid-acme"));
    let s = status::organization(&acme, &result, now());
    assert_eq!(ready(&s.common).1, "HasSubOrganizations");
    assert!(ready(&s.common).2.contains("eng"));
    // eng is deleted in turn, as an API server does it: first marked, then gone once its
    // finalizer is released. acme waits for it to be gone.
    let eng = deleted(object(&w.caches.sub_organizations, "eng"));
    w.subs
        .apply_watcher_event(&watcher::Event::Apply(DeserializeGuard(Ok(eng.clone()))));
    let result = syncer.sync().await;
    assert_eq!(
        result.held.get("acme"),
        Some(&vec!["eng (being deleted)".to_owned()])
    );
    assert!(!result.index.organizations.contains_key("uid-eng"));
    // What acme says no longer asks for a deletion that is under way.
    let held = status::organization(&acme, &result, now());
    let (_, reason, message) = ready(&held.common);
    assert_eq!(reason, "HasSubOrganizations");
    assert_eq!(
        message,
        "being deleted: it leaves the store as soon as its sub-organizations, being deleted too, are gone: eng (being deleted)"
    );
    // Once eng is gone, acme's rows go too, at once (not at the resync).
    w.subs
        .apply_watcher_event(&watcher::Event::Delete(DeserializeGuard(Ok(eng))));
    let result = syncer.sync().await;
    assert!(result.held.is_empty());
    assert!(!result.index.organizations.contains_key("uid-acme"));
    assert!(result.index.memberships.is_empty());
}

/// A root being deleted is held by the sub-organizations whose rows the store holds, and only
/// by them: one refused before it had rows (for a name taken by an Organization, here) was never
/// a sub-organization in the store, and does not keep the root waiting; one refused after it had
/// rows keeps them, and holds the root like a Ready one.
#[tokio::test]
async fn a_root_being_deleted_is_held_only_by_sub_organizations_with_rows() {
    let mut w = acme();
    let ops_root = stored(org("ops"), "uid-ops-root");
    let ops = stored(suborg("ops", "acme", &["bob@acme.example"]), "uid-ops");
    let kept = stored(suborg("kept", "acme", &["bob@acme.example"]), "uid-kept");
    w.orgs
        .apply_watcher_event(&watcher::Event::Apply(DeserializeGuard(Ok(ops_root))));
    for s in [ops.clone(), kept.clone()] {
        w.subs
            .apply_watcher_event(&watcher::Event::Apply(DeserializeGuard(Ok(s))));
    }
    let syncer = w.syncer(Duration::from_secs(300));
    let result = syncer.sync().await;
    let reason = |s: &SubOrganization, result: &SyncResult| {
        ready(&status::sub_organization(s, result, now()).common)
            .1
            .to_owned()
    };
    assert_eq!(reason(&ops, &result), "NameConflict");
    assert!(!result.index.organizations.contains_key("uid-ops"));
    assert!(result.index.organizations.contains_key("uid-kept"));
    // kept is refused in turn (a selector that cannot be evaluated): it keeps its rows.
    let mut refused = kept.clone();
    refused.metadata.generation = Some(2);
    refused.spec.member_namespaces = Some(MemberNamespaces {
        from: NamespacesFrom::Selector,
        selector: Some(
            k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector {
                match_expressions: Some(vec![
                    k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement {
                        key: "team".into(),
                        operator: "In".into(),
                        values: None,
                    },
                ]),
                match_labels: None,
            },
        ),
    });
    w.subs
        .apply_watcher_event(&watcher::Event::Apply(DeserializeGuard(
            Ok(refused.clone()),
        )));
    let result = syncer.sync().await;
    assert_eq!(reason(&refused, &result), "InvalidSelector");
    assert!(result.kept.contains("uid-kept"));

    let acme = deleted(object(&w.caches.organizations, "acme"));
    w.orgs
        .apply_watcher_event(&watcher::Event::Apply(DeserializeGuard(Ok(acme.clone()))));
    let result = syncer.sync().await;
    assert_eq!(
        result.held.get("acme"),
        Some(&vec!["eng".to_owned(), "kept".to_owned()]),
        "ops, never in the store, does not hold acme"
    );
    let held = status::organization(&acme, &result, now());
    let (_, why, message) = ready(&held.common);
    assert_eq!(why, "HasSubOrganizations");
    assert!(!message.contains("ops"), "{message}");
    // ops still says why it is refused.
    let refused = status::sub_organization(&ops, &result, now());
    let (_, _, message) = ready(&refused.common);
    assert!(
        message.contains("has the name of Organization"),
        "{message}"
    );

    // eng and kept go: acme goes with them, although ops still names it.
    for name in ["eng", "kept"] {
        let s = object(&w.caches.sub_organizations, name);
        w.subs
            .apply_watcher_event(&watcher::Event::Delete(DeserializeGuard(Ok(s))));
    }
    let result = syncer.sync().await;
    assert!(result.held.is_empty(), "{:?}", result.held);
    assert!(result.failure.is_none(), "{:?}", result.failure);
    assert!(!result.index.organizations.contains_key("uid-acme"));
}

/// A root the rules refused has no rows, so its children (refused with it) hold nothing: its
/// deletion goes through, for a slug taken by an older root as for a name taken by an older
/// SubOrganization that names it as its parent.
#[tokio::test]
async fn a_refused_root_is_not_held_by_the_children_refused_with_it() {
    let mut w = acme();
    let younger = |mut o: Organization, uid: &str| {
        o = stored(o, uid);
        o.metadata.creation_timestamp = Some(Time("2026-02-01T00:00:00Z".parse().unwrap()));
        o
    };
    let mut twin = org("twin");
    twin.spec.slug = Some("acme".into());
    let twin = younger(twin, "uid-twin");
    let under_twin = stored(suborg("ops", "twin", &["bob@acme.example"]), "uid-ops");
    let named = younger(org("self"), "uid-self-root");
    let itself = stored(
        suborg("self", "self", &["bob@acme.example"]),
        "uid-self-sub",
    );
    for o in [twin.clone(), named.clone()] {
        w.orgs
            .apply_watcher_event(&watcher::Event::Apply(DeserializeGuard(Ok(o))));
    }
    for s in [under_twin, itself] {
        w.subs
            .apply_watcher_event(&watcher::Event::Apply(DeserializeGuard(Ok(s))));
    }
    let syncer = w.syncer(Duration::from_secs(300));
    let result = syncer.sync().await;
    assert_eq!(
        ready(&status::organization(&twin, &result, now()).common).1,
        "SlugConflict"
    );
    assert_eq!(
        ready(&status::organization(&named, &result, now()).common).1,
        "NameConflict"
    );
    for uid in ["uid-twin", "uid-ops", "uid-self-root", "uid-self-sub"] {
        assert!(!result.index.organizations.contains_key(uid), "{uid}");
    }
    for o in [deleted(twin), deleted(named)] {
        w.orgs
            .apply_watcher_event(&watcher::Event::Apply(DeserializeGuard(Ok(o))));
    }
    let result = syncer.sync().await;
    assert!(result.held.is_empty(), "{:?}", result.held);
    assert!(result.failure.is_none(), "{:?}", result.failure);
    // The rest of the tree is as it was.
    assert!(result.index.organizations.contains_key("uid-acme"));
    assert!(result.index.organizations.contains_key("uid-eng"));
}

// ---- The API calls of a reconcile, through a mock API server ----

type ApiHandle = Handle<Request<Body>, Response<Body>>;

fn mock() -> (Client, ApiHandle) {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    (Client::new(service, "default"), handle)
}

fn context(client: Client, syncer: Syncer) -> Arc<Context> {
    Arc::new(Context {
        client,
        syncer: Arc::new(syncer),
        recorder: None,
        health: Arc::new(Health::default()),
        backoff: Backoff::default(),
        resync: Duration::from_secs(300),
        written: suborg::controller::written::Written::default(),
    })
}

/// A context whose Events go to the mock API server, where a test sees them as requests.
fn context_with_events(client: Client, syncer: Syncer) -> Arc<Context> {
    let recorder = suborg::controller::events::EventSink::new(
        client.clone(),
        kube::runtime::events::Reporter {
            controller: "suborg".into(),
            instance: None,
        },
    );
    let ctx = Arc::into_inner(context(client, syncer)).expect("a new context");
    Arc::new(Context {
        recorder: Some(recorder),
        ..ctx
    })
}

/// A reconcile of `o` under way, as the controller runs one.
fn spawn_reconcile<K: Kind>(
    o: K,
    ctx: &Arc<Context>,
) -> tokio::task::JoinHandle<Result<kube::runtime::controller::Action, suborg::controller::Error>> {
    tokio::spawn(reconcile::reconcile(
        Arc::new(DeserializeGuard(Ok(o))),
        ctx.clone(),
    ))
}

/// The next request: its method, path and query, and JSON body; answered with `reply`.
async fn next(
    handle: &mut ApiHandle,
) -> (
    String,
    String,
    serde_json::Value,
    SendResponse<Response<Body>>,
) {
    let (request, send) = tokio::time::timeout(Duration::from_secs(10), handle.next_request())
        .await
        .expect("the reconcile made no further request")
        .expect("the client is gone");
    let method = request.method().to_string();
    let uri = request.uri().to_string();
    let bytes = request.into_body().collect_bytes().await.unwrap();
    let body = if bytes.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap()
    };
    (method, uri, body, send)
}

fn reply<K: serde::Serialize>(send: SendResponse<Response<Body>>, object: &K) {
    send.send_response(
        Response::builder()
            .body(Body::from(serde_json::to_vec(object).unwrap()))
            .unwrap(),
    );
}

/// Answers every further request with `object` until the reconcile ends; its result.
async fn answer_until_done<K: serde::Serialize>(
    handle: &mut ApiHandle,
    mut task: tokio::task::JoinHandle<
        Result<kube::runtime::controller::Action, suborg::controller::Error>,
    >,
    object: &K,
) -> Result<kube::runtime::controller::Action, suborg::controller::Error> {
    loop {
        tokio::select! {
            r = &mut task => return r.unwrap(),
            request = handle.next_request() => match request {
                Some((request, send)) => {
                    assert_ne!(request.method(), "GET", "no further reads: {}", request.uri());
                    reply(send, object);
                }
                // The reconcile is over and has dropped its client.
                None => return task.await.unwrap(),
            }
        }
    }
}

/// A sync raises one Event per object and reason, naming every row of it that changed: kube's
/// Recorder folds a second Event of the same object and reason into the first one's series,
/// whose note stays the first.
#[tokio::test]
async fn a_sync_raises_one_event_per_object_and_reason_naming_each_row() {
    let mut w = acme();
    let (client, mut handle) = mock();
    let sink = suborg::controller::events::EventSink::new(
        client,
        kube::runtime::events::Reporter {
            controller: "suborg".into(),
            instance: None,
        },
    );
    let syncer = Syncer::new(
        w.caches.clone(),
        w.dsn.clone(),
        Duration::from_secs(300),
        false,
        Some(sink),
        Arc::new(Health::default()),
    );
    // The Events a sync raised: (method, regarding, reason, note).
    async fn raised(handle: &mut ApiHandle) -> Vec<(String, String, String, String)> {
        let mut events = Vec::new();
        while let Ok(Some((request, send))) =
            tokio::time::timeout(Duration::from_secs(2), handle.next_request()).await
        {
            let method = request.method().to_string();
            let bytes = request.into_body().collect_bytes().await.unwrap();
            let body: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
            events.push((
                method,
                body["regarding"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                body["reason"].as_str().unwrap_or_default().to_owned(),
                body["note"].as_str().unwrap_or_default().to_owned(),
            ));
            reply(send, &body);
        }
        events
    }
    syncer.sync().await;
    let events = raised(&mut handle).await;
    let of = |name: &str| -> Vec<&(String, String, String, String)> {
        events.iter().filter(|e| e.1 == name).collect()
    };
    for name in ["acme", "eng", "alice", "bob", "alice-eng"] {
        assert_eq!(of(name).len(), 1, "{name}: {events:#?}");
        assert_eq!(of(name)[0].2, "Created", "{events:#?}");
    }
    assert_eq!(
        of("eng")[0].3,
        "store created organization acme/eng; membership bob@acme.example in acme/eng"
    );

    // A later sync with the same reason on the same object: an Event of its own (a new
    // object, not a count on the first one's series), with its own note.
    w.members
        .apply_watcher_event(&watcher::Event::Apply(DeserializeGuard(Ok(dave()))));
    let mut eng = object(&w.caches.sub_organizations, "eng");
    eng.spec.admins.push("dave@acme.example".into());
    eng.metadata.generation = Some(2);
    w.subs
        .apply_watcher_event(&watcher::Event::Apply(DeserializeGuard(Ok(eng))));
    syncer.sync().await;
    let later = raised(&mut handle).await;
    let created: Vec<_> = later
        .iter()
        .filter(|e| e.1 == "eng" && e.2 == "Created")
        .collect();
    assert_eq!(created.len(), 1, "{later:#?}");
    assert_eq!(created[0].0, "POST", "{later:#?}");
    assert_eq!(
        created[0].3,
        "store created membership dave@acme.example in acme/eng"
    );
}

#[tokio::test]
async fn reconcile_adds_the_finalizer_first() {
    let w = acme();
    let (client, mut handle) = mock();
    let ctx = context(client, w.syncer(Duration::from_secs(300)));
    let mut fresh = object(&w.caches.organizations, "acme");
    fresh.metadata.finalizers = None;
    let task = spawn_reconcile(fresh.clone(), &ctx);
    let (method, uri, body, send) = next(&mut handle).await;
    assert_eq!(method, "PATCH");
    assert!(
        uri.starts_with("/apis/suborg.io/v1alpha1/organizations/acme?"),
        "{uri}"
    );
    assert!(uri.contains("fieldManager=suborg"), "{uri}");
    assert!(body.to_string().contains(FINALIZER), "{body}");
    let mut with = fresh.clone();
    with.metadata.finalizers = Some(vec![FINALIZER.into()]);
    reply(send, &with);
    // Then, without waiting for the echo, the status.
    answer_until_done(&mut handle, task, &with)
        .await
        .expect("the reconcile succeeds");
}

#[tokio::test]
async fn reconcile_applies_status_with_the_suborg_field_manager_then_rests() {
    let w = acme();
    let (client, mut handle) = mock();
    // With Events on, so that an Event would show up as a request.
    let ctx = context_with_events(client, w.syncer(Duration::from_secs(300)));
    let eng = object(&w.caches.sub_organizations, "eng");
    let task = spawn_reconcile(eng.clone(), &ctx);
    let (method, uri, body, send) = next(&mut handle).await;
    assert_eq!(method, "PATCH");
    assert!(
        uri.starts_with("/apis/suborg.io/v1alpha1/suborganizations/eng/status?"),
        "{uri}"
    );
    assert!(uri.contains("fieldManager=suborg"), "{uri}");
    assert!(uri.contains("force=true"), "{uri}");
    assert_eq!(body["apiVersion"], "suborg.io/v1alpha1");
    assert_eq!(body["kind"], "SubOrganization");
    assert_eq!(body["status"]["conditions"][0]["type"], "Ready");
    assert_eq!(body["status"]["conditions"][0]["status"], "True");
    assert_eq!(body["status"]["observedGeneration"], 1);
    assert!(
        body.get("spec").is_none(),
        "the status patch never touches the spec"
    );
    let status: SubOrganizationStatus = serde_json::from_value(body["status"].clone()).unwrap();
    let mut written = eng.clone();
    written.status = Some(status);
    reply(send, &written);
    task.await.unwrap().expect("the reconcile succeeds");
    // A new object becoming Ready is routine: no Event.
    let quiet = tokio::time::timeout(Duration::from_millis(300), handle.next_request()).await;
    assert!(quiet.is_err(), "an Event was published for a first Ready");
    // Queued again before the cache shows the write (the same version of the object, still
    // without a status): the status is on its way, so nothing is written twice.
    let stale = reconcile::reconcile(Arc::new(DeserializeGuard(Ok(eng.clone()))), ctx.clone());
    tokio::time::timeout(Duration::from_secs(10), stale)
        .await
        .expect("no request was awaited")
        .expect("the reconcile succeeds");
    // With that status in place, a second reconcile makes no request at all.
    let again = reconcile::reconcile(Arc::new(DeserializeGuard(Ok(written))), ctx.clone());
    tokio::time::timeout(Duration::from_secs(10), again)
        .await
        .expect("no request was awaited")
        .expect("the reconcile succeeds");
    // A newer version of the object without that status (someone cleared it) is written again.
    let mut cleared = eng.clone();
    cleared.metadata.resource_version = Some("2".into());
    let task = spawn_reconcile(cleared, &ctx);
    let (method, uri, _, send) = next(&mut handle).await;
    assert_eq!(method, "PATCH");
    assert!(uri.contains("/suborganizations/eng/status?"), "{uri}");
    reply(send, &eng);
    task.await.unwrap().expect("the reconcile succeeds");
}

/// The new kinds go through the same reconciler: each status lands on its own namespaced
/// status subresource, with the project's figures.
#[tokio::test]
async fn project_kinds_write_their_own_status_subresources() {
    let w = with_projects();
    let (client, mut handle) = mock();
    let ctx = context(client, w.syncer(Duration::from_secs(300)));
    let api = object(&w.caches.projects, "api");
    let task = spawn_reconcile(api.clone(), &ctx);
    let (method, uri, body, send) = next(&mut handle).await;
    assert_eq!(method, "PATCH");
    assert!(
        uri.starts_with("/apis/suborg.io/v1alpha1/namespaces/team-eng/projects/api/status?"),
        "{uri}"
    );
    assert_eq!(body["kind"], "Project");
    assert_eq!(body["status"]["conditions"][0]["status"], "True");
    assert_eq!(body["status"]["slug"], "api");
    assert_eq!(body["status"]["members"], 1);
    let status: ProjectStatus = serde_json::from_value(body["status"].clone()).unwrap();
    let mut written = api.clone();
    written.status = Some(status);
    reply(send, &written);
    task.await.unwrap().expect("the reconcile succeeds");

    let m = object(&w.caches.project_memberships, "alice-api");
    let body = status_round_trip(m, &ctx, &mut handle).await;
    assert_eq!(body["status"]["activeRoles"][0], "member");
    let c = object(&w.caches.connections, "github");
    let body = status_round_trip(c, &ctx, &mut handle).await;
    assert!(
        !body.to_string().contains("credentials"),
        "no credential reference in status: {body}"
    );
}

/// Reconciles `o` against the mock API server: its one request must be the status patch on
/// its own namespaced subresource, which the server accepts. Returns the patch.
async fn status_round_trip<K: Kind>(
    o: K,
    ctx: &Arc<Context>,
    handle: &mut ApiHandle,
) -> serde_json::Value {
    let task = spawn_reconcile(o.clone(), ctx);
    let (method, uri, body, send) = next(handle).await;
    assert_eq!(method, "PATCH");
    let path = format!(
        "/apis/suborg.io/v1alpha1/namespaces/{}/{}/{}/status?",
        o.namespace().unwrap(),
        K::plural(&()),
        o.name_any()
    );
    assert!(uri.starts_with(&path), "{uri}");
    assert_eq!(body["kind"], K::KIND);
    assert_eq!(
        body["status"]["conditions"][0]["reason"], "Synced",
        "{body}"
    );
    let mut written = serde_json::to_value(&o).unwrap();
    written["status"] = body["status"].clone();
    reply(send, &written);
    task.await.unwrap().expect("the reconcile succeeds");
    body
}

#[tokio::test]
async fn a_broken_rule_is_a_condition_not_an_error() {
    let stray = stored(suborg("ops", "missing", &["alice@acme.example"]), "uid-ops");
    let w = World::new(vec![], vec![stray.clone()], vec![], vec![]);
    let (client, mut handle) = mock();
    let ctx = context(client, w.syncer(Duration::from_secs(300)));
    let task = spawn_reconcile(stray.clone(), &ctx);
    let (_, uri, body, send) = next(&mut handle).await;
    assert!(uri.contains("/suborganizations/ops/status"), "{uri}");
    let condition = &body["status"]["conditions"][0];
    assert_eq!(condition["status"], "False");
    assert_eq!(condition["reason"], "ParentNotFound");
    assert!(
        condition["message"].as_str().unwrap().contains("missing"),
        "{condition}"
    );
    reply(send, &stray);
    task.await
        .unwrap()
        .expect("a rule violation does not fail the reconcile");
}

#[tokio::test]
async fn a_store_failure_is_written_to_status_and_retried() {
    let w = acme();
    let (client, mut handle) = mock();
    let ctx = context(client, w.unreachable_syncer());
    let bob = object(&w.caches.memberships, "bob");
    let task = spawn_reconcile(bob.clone(), &ctx);
    let (_, uri, body, send) = next(&mut handle).await;
    assert!(
        uri.starts_with("/apis/suborg.io/v1alpha1/namespaces/team-a/orgmemberships/bob/status?"),
        "{uri}"
    );
    assert_eq!(
        body["status"]["conditions"][0]["reason"],
        "StoreUnavailable"
    );
    assert!(!body.to_string().contains("password"), "{body}");
    reply(send, &bob);
    let err = task.await.unwrap().expect_err("the reconcile fails");
    assert_eq!(err.category(), "StoreUnavailable");
    let guard = Arc::new(DeserializeGuard(Ok(bob)));
    let first = reconcile::error_policy(guard.clone(), &err, ctx.clone());
    let second = reconcile::error_policy(guard.clone(), &err, ctx.clone());
    // Backoff grows between attempts.
    assert!(format!("{first:?}") != format!("{second:?}"));
    assert!(ctx.health.metrics.render().contains(
        "suborg_reconcile_failures_total{kind=\"OrgMembership\",category=\"StoreUnavailable\"} 2"
    ));

    // With Events on: a store-wide failure raises none per retry (the status says it), an
    // object's own failure one each time.
    let (client, mut handle) = mock();
    let ctx = context_with_events(client, w.syncer(Duration::from_secs(300)));
    for _ in 0..3 {
        reconcile::error_policy(guard.clone(), &err, ctx.clone());
    }
    let quiet = tokio::time::timeout(Duration::from_millis(300), handle.next_request()).await;
    assert!(
        quiet.is_err(),
        "an Event was published for a store-wide failure"
    );
    let own = suborg::controller::Error::DeletionBlocked("rows still there".into());
    reconcile::error_policy(guard, &own, ctx.clone());
    let (method, uri, body, _send) = next(&mut handle).await;
    assert_eq!(method, "POST");
    assert!(uri.contains("/events"), "{uri}");
    assert_eq!(body["reason"], "DeletionBlocked", "{body}");
}

/// Reconciles `o` while the store is away: its status PATCH says `StoreUnavailable`, the
/// reconcile fails (to be retried), and no Event follows.
async fn reconcile_into_outage(o: &OrgMembership, ctx: &Arc<Context>, handle: &mut ApiHandle) {
    let task = spawn_reconcile(o.clone(), ctx);
    let (_, uri, body, send) = next(handle).await;
    assert!(
        uri.contains(&format!("/orgmemberships/{}/status?", o.name_any())),
        "{uri}"
    );
    assert_eq!(
        body["status"]["conditions"][0]["reason"],
        "StoreUnavailable"
    );
    reply(send, o);
    assert!(
        task.await.unwrap().is_err(),
        "the reconcile waits for the store"
    );
    let quiet = tokio::time::timeout(Duration::from_millis(300), handle.next_request()).await;
    assert!(quiet.is_err(), "an Event was published for the outage");
}

/// A store outage is in the statuses, and logged once per attempt: an object going to or
/// coming back from `StoreUnavailable` gets its status, with no Event (two Events per object
/// and outage would be a storm on a large tree).
#[tokio::test]
async fn a_store_outage_raises_no_event_per_object_when_it_starts_or_ends() {
    let w = acme();
    let (client, mut handle) = mock();
    let ctx = context_with_events(client, w.syncer(Duration::from_secs(300)));
    let mut bob = object(&w.caches.memberships, "bob");
    let outage = SyncResult::failed("StoreUnavailable", "the database is down".into());
    bob.status = Some(status::membership(&bob, &outage, now()));
    let task = spawn_reconcile(bob.clone(), &ctx);
    let (method, uri, body, send) = next(&mut handle).await;
    assert_eq!(method, "PATCH");
    assert!(uri.contains("/orgmemberships/bob/status?"), "{uri}");
    assert_eq!(body["status"]["conditions"][0]["reason"], "Synced");
    reply(send, &bob);
    task.await.unwrap().expect("the reconcile succeeds");
    let quiet = tokio::time::timeout(Duration::from_millis(300), handle.next_request()).await;
    assert!(
        quiet.is_err(),
        "an Event was published for the store's return"
    );

    // Nor when it goes: Synced, then the store cannot be reached.
    let (client, mut handle) = mock();
    let ctx = context_with_events(client, w.unreachable_syncer());
    let synced = w.syncer(Duration::from_secs(300)).sync().await;
    bob.status = Some(status::membership(&bob, &synced, now()));
    assert_eq!(ready(&bob.status.as_ref().unwrap().common).1, "Synced");
    reconcile_into_outage(&bob, &ctx, &mut handle).await;
}

/// A Ready change the outage hid is news when the outage ends: refused before it, `Synced`
/// after it (fixed meanwhile) is an Event, as it would have been without the outage.
#[tokio::test]
async fn a_change_an_outage_hid_is_an_event_when_it_ends() {
    let w = acme();
    let (client, mut handle) = mock();
    let ctx = context_with_events(client, w.unreachable_syncer());
    let mut bob = object(&w.caches.memberships, "bob");
    let synced = w.syncer(Duration::from_secs(300)).sync().await;
    let mut refused = status::membership(&bob, &synced, now());
    let ready_condition = &mut refused.common.conditions[0];
    ready_condition.status = "False".into();
    ready_condition.reason = "EmailDomainNotAllowed".into();
    bob.status = Some(refused);
    reconcile_into_outage(&bob, &ctx, &mut handle).await;

    // The store is back; the same controller reconciles bob, whose status the outage holds.
    let outage = SyncResult::failed("StoreUnavailable", "the database is down".into());
    bob.status = Some(status::membership(&bob, &outage, now()));
    let ctx = Arc::into_inner(ctx).expect("the reconcile is over");
    let ctx = Arc::new(Context {
        syncer: Arc::new(w.syncer(Duration::from_secs(300))),
        ..ctx
    });
    let task = spawn_reconcile(bob.clone(), &ctx);
    let (_, uri, body, send) = next(&mut handle).await;
    assert!(uri.contains("/orgmemberships/bob/status?"), "{uri}");
    assert_eq!(body["status"]["conditions"][0]["reason"], "Synced");
    reply(send, &bob);
    let (method, uri, body, _send) = next(&mut handle).await;
    assert_eq!(method, "POST");
    assert!(uri.contains("/events"), "{uri}");
    assert_eq!(body["reason"], "Synced", "{body}");
    assert_eq!(body["type"], "Normal", "{body}");
    task.await.unwrap().expect("the reconcile succeeds");
}

/// An object deleted while the store is down keeps its finalizer, and its status says the
/// deletion waits for the store, at the generation the deletion gave it.
#[tokio::test]
async fn a_deletion_waiting_for_the_store_says_so() {
    let w = acme();
    let (client, mut handle) = mock();
    let ctx = context(client, w.unreachable_syncer());
    let mut bob = deleted(object(&w.caches.memberships, "bob"));
    bob.metadata.generation = Some(2);
    let task = spawn_reconcile(bob.clone(), &ctx);
    let (method, uri, body, send) = next(&mut handle).await;
    assert_eq!(method, "PATCH");
    assert!(uri.contains("/orgmemberships/bob/status?"), "{uri}");
    let ready = &body["status"]["conditions"][0];
    assert_eq!(ready["status"], "False", "{body}");
    assert_eq!(ready["reason"], "StoreUnavailable", "{body}");
    assert!(
        ready["message"]
            .as_str()
            .unwrap()
            .starts_with("being deleted: its rows leave the store"),
        "{body}"
    );
    assert_eq!(body["status"]["observedGeneration"], 2, "{body}");
    reply(send, &bob);
    let err = task.await.unwrap().expect_err("the finalizer stays");
    assert_eq!(err.category(), "StoreUnavailable");
}

#[tokio::test]
async fn cleanup_removes_the_rows_then_the_finalizer() {
    let mut w = acme();
    let syncer = w.syncer(Duration::from_secs(300));
    assert!(
        syncer
            .sync()
            .await
            .index
            .memberships
            .contains_key("uid-bob")
    );
    let bob = deleted(object(&w.caches.memberships, "bob"));
    w.members
        .apply_watcher_event(&watcher::Event::Apply(DeserializeGuard(Ok(bob.clone()))));
    let (client, mut handle) = mock();
    let ctx = context(client, syncer);
    let task = spawn_reconcile(bob.clone(), &ctx);
    let (method, uri, body, send) = next(&mut handle).await;
    assert_eq!(method, "PATCH");
    assert!(
        uri.starts_with("/apis/suborg.io/v1alpha1/namespaces/team-a/orgmemberships/bob?"),
        "{uri}"
    );
    assert!(uri.contains("fieldManager=suborg"), "{uri}");
    // A JSON patch that sets the list without suborg's finalizer, guarded by a test of the
    // list as read.
    assert_eq!(body[0]["op"], "test", "{body}");
    assert_eq!(body[0]["value"], serde_json::json!([FINALIZER]), "{body}");
    assert_eq!(body[1]["value"], serde_json::json!([]), "{body}");
    let mut gone = bob.clone();
    gone.metadata.finalizers = Some(vec![]);
    reply(send, &gone);
    task.await.unwrap().expect("cleanup succeeds");
    let store = SqlStore::open(&w.dsn).await.unwrap();
    assert!(
        !store
            .index()
            .await
            .unwrap()
            .memberships
            .contains_key("uid-bob")
    );
}

/// A deletion policy changed and the object deleted before any sync saw the change (within
/// one debounce): the rows go as the object says now, not as last written.
#[tokio::test]
async fn a_deletion_policy_changed_just_before_the_deletion_is_followed() {
    let mut w = acme();
    let syncer = w.syncer(Duration::from_secs(300));
    let first = syncer.sync().await;
    let bob_id = first.index.memberships["uid-bob"].0.clone();
    let alice_id = first.index.memberships["uid-alice-eng"].0.clone();
    let mut alice = object(&w.caches.memberships, "alice-eng");
    alice.spec.deletion_policy = DeletionPolicy::Orphan;
    alice.metadata.generation = Some(2);
    w.members
        .apply_watcher_event(&watcher::Event::Apply(DeserializeGuard(Ok(alice.clone()))));
    syncer.sync().await;

    // bob: Delete as written, Orphan and deleting in one event; alice-eng: Orphan as written,
    // Delete and deleting in one event.
    let mut bob = object(&w.caches.memberships, "bob");
    bob.spec.deletion_policy = DeletionPolicy::Orphan;
    bob.metadata.generation = Some(2);
    alice.spec.deletion_policy = DeletionPolicy::Delete;
    alice.metadata.generation = Some(3);
    for o in [deleted(bob), deleted(alice)] {
        w.members
            .apply_watcher_event(&watcher::Event::Apply(DeserializeGuard(Ok(o))));
    }
    let after = syncer.sync().await;
    assert!(!after.index.memberships.contains_key("uid-bob"));
    assert!(!after.index.memberships.contains_key("uid-alice-eng"));
    let store = SqlStore::open(&w.dsn).await.unwrap();
    let count = |sql: &'static str, id: String| {
        let pool = store.pool().clone();
        async move {
            sqlx::query(sql)
                .bind(id)
                .fetch_one(&pool)
                .await
                .map(|r| sqlx::Row::get::<i64, _>(&r, 0))
                .unwrap()
        }
    };
    let unmanaged = "SELECT COUNT(*) FROM memberships WHERE id = $1 AND managed = 0 AND deletion_policy = 'Orphan'";
    assert_eq!(count(unmanaged, bob_id).await, 1, "bob's row is orphaned");
    let any = "SELECT COUNT(*) FROM memberships WHERE id = $1";
    assert_eq!(count(any, alice_id).await, 0, "alice's row is deleted");
    store.close().await;
}

fn status_reply(send: SendResponse<Response<Body>>, code: u16, reason: &str) {
    send.send_response(
        Response::builder()
            .status(code)
            .body(Body::from(
                serde_json::to_vec(&serde_json::json!({
                    "kind": "Status", "apiVersion": "v1", "status": "Failure",
                    "message": reason, "reason": reason, "code": code,
                }))
                .unwrap(),
            ))
            .unwrap(),
    );
}

/// The cache had not seen the finalizer the last reconcile added: the guarded patch fails,
/// the object is read afresh, and nothing is added twice.
#[tokio::test]
async fn a_stale_read_reads_again_instead_of_failing() {
    let w = acme();
    let (client, mut handle) = mock();
    let ctx = context(client, w.syncer(Duration::from_secs(300)));
    let current = object(&w.caches.organizations, "acme");
    let mut stale = current.clone();
    stale.metadata.finalizers = None;
    let task = spawn_reconcile(stale, &ctx);
    let (method, _, body, send) = next(&mut handle).await;
    assert_eq!(method, "PATCH");
    assert_eq!(body[0]["op"], "test", "{body}");
    status_reply(send, 422, "Invalid");
    let (method, uri, _, send) = next(&mut handle).await;
    assert_eq!(method, "GET");
    assert!(
        uri.starts_with("/apis/suborg.io/v1alpha1/organizations/acme"),
        "{uri}"
    );
    reply(send, &current);
    answer_until_done(&mut handle, task, &current)
        .await
        .expect("the fresh object already has the finalizer");
}

/// Removing the finalizer of an object that is already gone is success, not an error.
#[tokio::test]
async fn releasing_an_object_already_gone_is_done() {
    let mut w = acme();
    let syncer = w.syncer(Duration::from_secs(300));
    let bob = deleted(object(&w.caches.memberships, "bob"));
    w.members
        .apply_watcher_event(&watcher::Event::Apply(DeserializeGuard(Ok(bob.clone()))));
    let (client, mut handle) = mock();
    let ctx = context(client, syncer);
    let task = spawn_reconcile(bob, &ctx);
    let (method, _, _, send) = next(&mut handle).await;
    assert_eq!(method, "PATCH");
    status_reply(send, 404, "NotFound");
    task.await
        .unwrap()
        .expect("a gone object needs nothing more");
    assert!(
        !ctx.health
            .metrics
            .render()
            .contains("suborg_reconcile_failures_total{")
    );
}

#[tokio::test]
async fn a_root_with_sub_organizations_keeps_its_finalizer() {
    let mut w = acme();
    let acme = deleted(object(&w.caches.organizations, "acme"));
    w.orgs
        .apply_watcher_event(&watcher::Event::Apply(DeserializeGuard(Ok(acme.clone()))));
    let (client, mut handle) = mock();
    let ctx = context(client, w.syncer(Duration::from_secs(300)));
    let task = spawn_reconcile(acme.clone(), &ctx);
    let (_, uri, body, send) = next(&mut handle).await;
    assert!(uri.contains("/organizations/acme/status"), "{uri}");
    assert_eq!(
        body["status"]["conditions"][0]["reason"],
        "HasSubOrganizations"
    );
    reply(send, &acme);
    // The deletion waits, its finalizer in place (no further request), and looks again soon.
    let action = task.await.unwrap().expect("waiting is not a failure");
    assert_eq!(
        action,
        kube::runtime::controller::Action::requeue(Duration::from_secs(5))
    );
}

#[tokio::test]
async fn an_unreadable_object_is_skipped_without_a_request() {
    let w = acme();
    let (client, _handle) = mock();
    let ctx = context(client, w.syncer(Duration::from_secs(300)));
    let bad: DeserializeGuard<Organization> = serde_json::from_value(serde_json::json!({
        "apiVersion": "suborg.io/v1alpha1",
        "kind": "Organization",
        "metadata": {"name": "broken", "uid": "uid-broken"},
        "spec": {"deletionPolicy": 42}
    }))
    .unwrap();
    assert!(bad.0.is_err());
    let action = tokio::time::timeout(
        Duration::from_secs(10),
        reconcile::reconcile(Arc::new(bad), ctx),
    )
    .await
    .expect("no request was awaited")
    .unwrap();
    assert_eq!(action, kube::runtime::controller::Action::await_change());
}

#[test]
fn status_patches_carry_type_meta_and_status_only() {
    let o = org("acme");
    let s = status::organization(&o, &SyncResult::default(), now());
    let patch = kinds::status_patch::<Organization>(&s);
    let keys: Vec<&str> = patch
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys, vec!["apiVersion", "kind", "status"]);
    assert_eq!(<Organization as Kind>::KIND, "Organization");
}

#[tokio::test]
async fn a_postgres_store_that_goes_away_is_reported_and_recovered_from() {
    let Ok(admin) = std::env::var("SUBORG_TEST_POSTGRES") else {
        eprintln!("SUBORG_TEST_POSTGRES is not set: skipped (.ci/run sets it)");
        return;
    };
    let proxy = super::proxy::Proxy::start(&admin).await;
    let dsn = proxy
        .dsn(
            &admin,
            &format!("suborg_test_{}", uuid::Uuid::new_v4().simple()),
        )
        .await;
    let mut w = acme();
    let syncer = w.syncer_on(&dsn, Duration::from_secs(300));
    let result = syncer.sync().await;
    assert!(result.failure.is_none(), "{:?}", result.failure);
    proxy.cut();
    // A change while the database is away: nothing can be written, and every object says so.
    let carol = carol(vec![role("member")]);
    w.members
        .apply_watcher_event(&watcher::Event::Apply(DeserializeGuard(Ok(carol.clone()))));
    let result = syncer.sync().await;
    let failure = result.failure.as_ref().expect("the store is away");
    assert_eq!(failure.reason, "StoreUnavailable");
    assert!(!failure.message.contains("password"), "{}", failure.message);
    let s = status::membership(&carol, &result, now());
    assert_eq!(ready(&s.common).1, "StoreUnavailable");
    proxy.restore();
    tokio::time::sleep(result.retry.expect("a retry delay") + Duration::from_millis(100)).await;
    let result = syncer.sync().await;
    assert!(result.failure.is_none(), "{:?}", result.failure);
    let s = status::membership(&carol, &result, now());
    assert_eq!(ready(&s.common).0, "True", "{s:?}");
}

#[test]
fn a_long_message_is_bounded_so_the_status_can_be_written() {
    let v = status::Verdict {
        status: "False",
        reason: "SlugConflict".into(),
        message: "é".repeat(10_000),
        waiting: false,
    };
    let c = status::ready_condition(v, Some(1), &[], now());
    assert!(
        c.message.len() <= status::MAX_MESSAGE,
        "{}",
        c.message.len()
    );
    assert!(
        c.message.ends_with("(20000 bytes in all)"),
        "{}",
        &c.message[c.message.len() - 40..]
    );
}

#[tokio::test]
async fn groups_and_identities_sync_and_report_like_the_rest() {
    let mut w = acme();
    let reviewers = stored(
        group(
            "team-a",
            "reviewers",
            OrganizationKind::Organization,
            "acme",
            vec![user("alice@acme.example"), user("bob@acme.example")],
        ),
        "uid-reviewers",
    );
    let bot = stored(
        identity("team-a", "bot", OrganizationKind::Organization, "acme"),
        "uid-bot",
    );
    let added = stored(
        subject_in(
            "team-eng",
            "reviewers-in-eng",
            OrganizationKind::SubOrganization,
            "eng",
            SubjectKind::Group,
            "reviewers",
            Some("team-a"),
        ),
        "uid-reviewers-in-eng",
    );
    w.groups
        .apply_watcher_event(&watcher::Event::Apply(DeserializeGuard(Ok(
            reviewers.clone()
        ))));
    w.identities
        .apply_watcher_event(&watcher::Event::Apply(DeserializeGuard(Ok(bot.clone()))));
    w.members
        .apply_watcher_event(&watcher::Event::Apply(DeserializeGuard(Ok(added.clone()))));
    // A sub-organization's group whose only member is a nested group, and that group.
    let leads = stored(
        group(
            "team-eng",
            "leads",
            OrganizationKind::SubOrganization,
            "eng",
            vec![user("alice@acme.example")],
        ),
        "uid-leads",
    );
    let all = stored(
        group(
            "team-eng",
            "all",
            OrganizationKind::SubOrganization,
            "eng",
            vec![nested("leads")],
        ),
        "uid-all",
    );
    for g in [&leads, &all] {
        w.groups
            .apply_watcher_event(&watcher::Event::Apply(DeserializeGuard(Ok(g.clone()))));
    }
    let syncer = w.syncer(Duration::from_secs(300));
    let result = syncer.sync().await;
    assert!(result.failure.is_none(), "{:?}", result.failure);
    let s = status::group(&all, &result, now());
    assert_eq!(ready(&s.common).0, "True", "{s:?}");
    assert!(
        ready(&s.common)
            .2
            .ends_with("with 0 users and 1 nested group listed directly"),
        "{s:?}"
    );
    assert_eq!((s.members, s.nested_groups), (Some(0), Some(1)));
    let s = status::group(&leads, &result, now());
    assert!(
        ready(&s.common).2.ends_with("with 1 user listed directly"),
        "{s:?}"
    );
    assert_eq!((s.members, s.nested_groups), (Some(1), Some(0)));
    let s = status::group(&reviewers, &result, now());
    assert_eq!(ready(&s.common).0, "True", "{s:?}");
    assert!(
        ready(&s.common).2.ends_with("with 2 users listed directly"),
        "{s:?}"
    );
    assert_eq!(s.members, Some(2));
    assert_eq!(
        ready(&status::identity(&bot, &result, now()).common).0,
        "True"
    );
    let s = status::membership(&added, &result, now());
    assert_eq!(ready(&s.common).0, "True", "{s:?}");
    assert!(s.common.id.is_some());
    // The root group goes: where it was added says why, and its row goes in the same sync.
    w.groups
        .apply_watcher_event(&watcher::Event::Delete(DeserializeGuard(Ok(reviewers))));
    let result = syncer.sync().await;
    let s = status::membership(&added, &result, now());
    assert_eq!(ready(&s.common).1, "SubjectNotVisible", "{s:?}");
    assert!(!result.index.groups.contains_key("uid-reviewers"));
    assert!(
        !result
            .index
            .memberships
            .contains_key("uid-reviewers-in-eng")
    );
}

/// The objects of `cache` whose status differs between `before` and `after`, each also
/// required to be in `scope`.
fn changed_outside<K: Kind>(
    cache: &reflector::Store<DeserializeGuard<K>>,
    before: &SyncResult,
    after: &SyncResult,
    scope: &suborg::controller::scope::Scope,
    step: &str,
) -> usize {
    let now = now();
    let mut changed = 0;
    for g in cache.state() {
        let o = g.0.as_ref().unwrap();
        if o.desired(before, now) != o.desired(after, now) {
            changed += 1;
            assert!(
                scope.contains(o.meta().uid.as_deref(), || o.key()),
                "{step}: the status of {} changes, but it is out of the fan-out's scope {scope:?}",
                o.key()
            );
        }
    }
    changed
}

#[tokio::test]
async fn the_fan_out_looks_at_every_object_whose_status_a_sync_changes() {
    use suborg::controller::scope::Scope;
    let mut w = acme();
    let syncer = w.syncer(Duration::from_secs(300));
    let mut before = syncer.sync().await;
    assert!(before.failure.is_none(), "{:?}", before.failure);
    // Each object taken away (what depends on it changes too: eng's member alice goes with
    // alice's root membership), then brought back.
    type Step = Box<dyn Fn(&mut World, bool)>;
    let mut steps: Vec<(String, Step)> = Vec::new();
    let acme = object(&w.caches.organizations, "acme");
    steps.push((
        "Organization acme".into(),
        Box::new(move |w, back| {
            let e = DeserializeGuard(Ok(acme.clone()));
            w.orgs.apply_watcher_event(&if back {
                watcher::Event::Apply(e)
            } else {
                watcher::Event::Delete(e)
            });
        }),
    ));
    let eng = object(&w.caches.sub_organizations, "eng");
    steps.push((
        "SubOrganization eng".into(),
        Box::new(move |w, back| {
            let e = DeserializeGuard(Ok(eng.clone()));
            w.subs.apply_watcher_event(&if back {
                watcher::Event::Apply(e)
            } else {
                watcher::Event::Delete(e)
            });
        }),
    ));
    for name in ["alice", "bob", "alice-eng"] {
        let o = object(&w.caches.memberships, name);
        steps.push((
            format!("OrgMembership {name}"),
            Box::new(move |w, back| {
                let e = DeserializeGuard(Ok(o.clone()));
                w.members.apply_watcher_event(&if back {
                    watcher::Event::Apply(e)
                } else {
                    watcher::Event::Delete(e)
                });
            }),
        ));
    }
    let mut looked_at = 0;
    for (what, step) in &steps {
        for back in [false, true] {
            let label = format!("{what} {}", if back { "back" } else { "taken away" });
            step(&mut w, back);
            let after = syncer.sync().await;
            assert!(after.failure.is_none(), "{label}: {:?}", after.failure);
            let scope = Scope::between(&before, &after, now());
            let Scope::Only { uids, keys } = &scope else {
                panic!("{label}: a sync that changed one object fans out to everything");
            };
            let changed = changed_outside(&w.caches.organizations, &before, &after, &scope, &label)
                + changed_outside(&w.caches.sub_organizations, &before, &after, &scope, &label)
                + changed_outside(&w.caches.memberships, &before, &after, &scope, &label);
            assert!(changed > 0, "{label}: some status changes");
            // Not everything: bob is not concerned by alice's membership of eng.
            if what.ends_with("alice-eng") {
                assert!(!uids.contains("uid-bob"), "{label}: {scope:?}");
                assert!(!keys.iter().any(|k| k.name == "bob"), "{label}: {scope:?}");
            }
            looked_at += changed;
            before = after;
        }
    }
    assert!(looked_at >= steps.len() * 2);
    // A store-wide failure, and the recovery from it, reach every object.
    let failed = SyncResult::failed("StoreUnavailable", "down".into());
    assert_eq!(Scope::between(&before, &failed, now()), Scope::All);
    assert_eq!(Scope::between(&failed, &before, now()), Scope::All);
}

#[tokio::test]
async fn an_admin_leaving_the_root_keeps_the_sub_organization_and_its_members_in_the_store() {
    let mut w = acme();
    let syncer = w.syncer(Duration::from_secs(300));
    let result = syncer.sync().await;
    assert!(
        result
            .index
            .memberships
            .contains_key("uid-eng#admin:bob@acme.example")
    );
    let eng_id = result.index.organizations["uid-eng"].id.clone();
    // bob, eng's only admin, leaves acme.
    let bob = object(&w.caches.memberships, "bob");
    w.members
        .apply_watcher_event(&watcher::Event::Delete(DeserializeGuard(Ok(bob))));
    let result = syncer.sync().await;
    assert!(result.failure.is_none(), "{:?}", result.failure);
    // His access goes; eng, with its id, and alice's access to it stay.
    assert!(
        !result
            .index
            .memberships
            .contains_key("uid-eng#admin:bob@acme.example")
    );
    assert_eq!(result.index.organizations["uid-eng"].id, eng_id);
    assert!(result.index.memberships.contains_key("uid-alice-eng"));
    let eng = object(&w.caches.sub_organizations, "eng");
    let s = status::sub_organization(&eng, &result, now());
    let (ready_status, reason, message) = ready(&s.common);
    assert_eq!(
        (ready_status, reason),
        ("False", "AdminNotInRoot"),
        "{message}"
    );
    assert!(message.contains("spec.admins[0]"), "{message}");
    assert_eq!(s.slug.as_deref(), Some("eng"), "still in the store");
    let alice_eng = object(&w.caches.memberships, "alice-eng");
    let s = status::membership(&alice_eng, &result, now());
    assert_eq!(ready(&s.common).0, "True", "{s:?}");
}

/// Makes the store's files read-only (`chattr +i` for root, whom file modes do not stop), or
/// writable again.
fn read_only(dir: &std::path::Path, on: bool) {
    let root = std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0");
    // The shared-memory index stays writable: SQLite maps it, and a mapped file that cannot
    // grow ends the process (SIGBUS), which is not what this is about.
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "db-shm") {
            continue;
        }
        if root {
            let flag = if on { "+i" } else { "-i" };
            let status = std::process::Command::new("chattr")
                .arg(flag)
                .arg(&path)
                .status()
                .expect("chattr (e2fsprogs), to make a file read-only for root");
            assert!(status.success(), "chattr {flag} {}", path.display());
        } else {
            use std::os::unix::fs::PermissionsExt;
            let mode = if on { 0o444 } else { 0o644 };
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        }
    }
}

#[tokio::test]
async fn a_store_that_was_read_only_is_written_again_once_it_is_writable() {
    let mut w = acme();
    let syncer = w.syncer(Duration::from_secs(300));
    assert!(syncer.sync().await.failure.is_none());
    let dir = w._dir.path().to_owned();
    read_only(&dir, true);
    let carol = carol(vec![role("member")]);
    w.members
        .apply_watcher_event(&watcher::Event::Apply(DeserializeGuard(Ok(carol.clone()))));
    let failed = syncer.sync().await;
    let mut tries = vec![failed.clone()];
    // Tried again, as a new watch event makes it: still read-only.
    let mut again = carol.clone();
    again.metadata.generation = Some(2);
    again.spec.roles = vec![role("admin")];
    w.members
        .apply_watcher_event(&watcher::Event::Apply(DeserializeGuard(Ok(again.clone()))));
    tries.push(syncer.sync().await);
    read_only(&dir, false);
    for (n, t) in tries.iter().enumerate() {
        let f = t
            .failure
            .as_ref()
            .expect("a read-only store fails the sync");
        assert_eq!(f.reason, "StoreUnavailable", "try {n}: {}", f.message);
        // Each failure in a row waits longer: 5 s, then 10 s (plus up to a tenth).
        let retry = t.retry.expect("a failure says when it is tried again");
        let first = Duration::from_secs(5 << n);
        assert!(
            retry >= first && retry <= first.mul_f64(1.1),
            "try {n}: {retry:?}"
        );
    }
    // Writable again: the next sync writes, without a restart.
    again.metadata.generation = Some(3);
    again.spec.roles = vec![role("member")];
    w.members
        .apply_watcher_event(&watcher::Event::Apply(DeserializeGuard(Ok(again))));
    let result = syncer.sync().await;
    assert!(result.failure.is_none(), "{:?}", result.failure);
    assert!(result.index.memberships.contains_key("uid-carol"));
    assert_eq!(result.retry, None);
}

#[tokio::test]
async fn a_role_still_to_start_is_named_with_its_window() {
    let later = stored(
        user_in(
            "team-a",
            "later",
            OrganizationKind::Organization,
            "acme",
            "later@acme.example",
            vec![
                role("member"),
                temporary("admin", Some("2999-01-01T00:00:00Z"), None, Some("8h")),
            ],
        ),
        "uid-later",
    );
    let w = World::new(
        vec![stored(org("acme"), "uid-acme")],
        vec![],
        vec![later.clone()],
        vec![namespace("team-a", &[("suborg.io/organization", "acme")])],
    );
    let result = w.syncer(Duration::from_secs(300)).sync().await;
    let s = status::membership(&later, &result, now());
    let (ready_status, _, message) = ready(&s.common);
    assert_eq!(ready_status, "True", "{message}");
    assert_eq!(
        message,
        "in the store with roles member; admin from 2999-01-01T00:00:00Z until 2999-01-01T08:00:00Z"
    );
    assert_eq!(s.active_roles, ["member"]);
}

/// A sub-organization member whose root membership's only role starts later waits for a
/// time, not for a change: kstatus reads it as `Reconciling`. Once that role has expired for
/// good, the same reason is `Stalled`: only a change to an object ends it.
#[tokio::test]
async fn a_member_waiting_for_a_root_role_to_start_is_reconciling_not_stalled() {
    let root_role = |roles| {
        stored(
            user_in(
                "team-a",
                "dana-root",
                OrganizationKind::Organization,
                "acme",
                "dana@acme.example",
                roles,
            ),
            "uid-dana-root",
        )
    };
    let sub = stored(
        user_in(
            "team-eng",
            "dana-eng",
            OrganizationKind::SubOrganization,
            "eng",
            "dana@acme.example",
            vec![role("member")],
        ),
        "uid-dana-eng",
    );
    for (roles, progress_type) in [
        (
            vec![temporary(
                "member",
                Some("2999-01-01T00:00:00Z"),
                None,
                Some("8h"),
            )],
            "Reconciling",
        ),
        (
            vec![temporary(
                "member",
                Some("2020-01-01T00:00:00Z"),
                None,
                Some("8h"),
            )],
            "Stalled",
        ),
    ] {
        let w = World::new(
            vec![stored(org("acme"), "uid-acme")],
            vec![stored(suborg("eng", "acme", &[]), "uid-eng")],
            vec![root_role(roles), sub.clone()],
            vec![
                namespace("team-a", &[("suborg.io/organization", "acme")]),
                namespace("team-eng", &[("suborg.io/organization", "eng")]),
            ],
        );
        let result = w.syncer(Duration::from_secs(300)).sync().await;
        let s = status::membership(&sub, &result, now());
        let (ready_status, reason, message) = ready(&s.common);
        assert_eq!(
            (ready_status, reason),
            ("False", "SubjectNotInRoot"),
            "{message}"
        );
        assert_eq!(
            progress(&s.common),
            Some((progress_type, "SubjectNotInRoot")),
            "{message}"
        );
    }
}

#[tokio::test]
async fn a_root_being_deleted_takes_no_new_sub_organizations() {
    let mut w = acme();
    let syncer = w.syncer(Duration::from_secs(300));
    syncer.sync().await;
    let acme = deleted(object(&w.caches.organizations, "acme"));
    w.orgs
        .apply_watcher_event(&watcher::Event::Apply(DeserializeGuard(Ok(acme.clone()))));
    // A sub-organization created under acme after its deletion began: in the same second
    // (timestamps have seconds only), as when a GitOps tool replaces a tree.
    let mut late = stored(suborg("late", "acme", &["bob@acme.example"]), "uid-late");
    late.metadata.creation_timestamp = acme.metadata.deletion_timestamp.clone();
    w.subs
        .apply_watcher_event(&watcher::Event::Apply(DeserializeGuard(Ok(late.clone()))));
    let result = syncer.sync().await;
    assert_eq!(
        result.held.get("acme"),
        Some(&vec!["eng".to_owned()]),
        "late does not hold acme"
    );
    assert!(!result.index.organizations.contains_key("uid-late"));
    let s = status::sub_organization(&late, &result, now());
    let (_, reason, message) = ready(&s.common);
    assert_eq!(reason, "ParentNotFound", "{message}");
    assert!(message.contains("is being deleted"), "{message}");
    // eng goes: acme goes, although late still names it.
    let eng = object(&w.caches.sub_organizations, "eng");
    w.subs
        .apply_watcher_event(&watcher::Event::Delete(DeserializeGuard(Ok(eng))));
    let result = syncer.sync().await;
    assert!(result.held.is_empty(), "{:?}", result.held);
    assert!(!result.index.organizations.contains_key("uid-acme"));
}

/// How many store rows syncs rewrote as drift, as `/metrics` says.
fn drift_corrected(health: &Health) -> u64 {
    counter(health, "suborg_drift_corrected_rows_total")
}

/// Drift is told from what the last sync wrote even when rows changed by another writer make
/// the next sync plan the store whole: a membership raised to admin by hand and rewritten
/// then is still reported as drift.
#[tokio::test]
async fn drift_is_reported_when_another_writer_forces_a_whole_plan() {
    let mut w = acme();
    let health = Arc::new(Health::default());
    let syncer = w.syncer_counted(health.clone());
    syncer.sync().await;
    let pool = sqlx::AnyPool::connect(&w.dsn).await.unwrap();
    for sql in [
        "UPDATE memberships SET roles = '[{\"role\":\"admin\"}]' WHERE source_uid = 'uid-alice-eng'",
        "DELETE FROM memberships WHERE source_uid = 'uid-bob'",
    ] {
        sqlx::query(sql).execute(&pool).await.unwrap();
    }
    // Unrelated changes: the first sees the other writer's row and reads the store whole;
    // the second plans it whole, and rewrites alice's membership of eng.
    for (name, email) in [("dave", "dave@acme.example"), ("erin", "erin@acme.example")] {
        w.members
            .apply_watcher_event(&watcher::Event::Apply(DeserializeGuard(Ok(acme_member(
                name, email,
            )))));
        let result = syncer.sync().await;
        assert!(result.failure.is_none(), "{:?}", result.failure);
    }
    let roles: String =
        sqlx::query_scalar("SELECT roles FROM memberships WHERE source_uid = 'uid-alice-eng'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert!(!roles.contains("admin"), "{roles}");
    // alice's roles, and bob's root membership with his admin row in eng (the cascade took
    // it), put back.
    assert_eq!(drift_corrected(&health), 3);
}

#[tokio::test]
async fn a_row_changed_outside_suborg_is_drift_even_when_a_change_elsewhere_rewrites_it() {
    let mut w = acme();
    let health = Arc::new(Health::default());
    let syncer = w.syncer_counted(health.clone());
    syncer.sync().await;
    let pool = sqlx::AnyPool::connect(&w.dsn).await.unwrap();
    sqlx::query("UPDATE organizations SET display_name = 'Hijacked' WHERE slug = 'eng'")
        .execute(&pool)
        .await
        .unwrap();
    // An unrelated change: carol and dave join acme. The sync rewrites eng's name with it.
    w.members
        .apply_watcher_event(&watcher::Event::Apply(DeserializeGuard(Ok(carol(vec![
            role("member"),
        ])))));
    w.members
        .apply_watcher_event(&watcher::Event::Apply(DeserializeGuard(Ok(dave()))));
    let result = syncer.sync().await;
    assert!(result.failure.is_none(), "{:?}", result.failure);
    let store = SqlStore::open(&w.dsn).await.unwrap();
    let orgs = store.organizations().await.unwrap();
    assert!(
        orgs.iter().all(|o| o.display_name != "Hijacked"),
        "{orgs:?}"
    );
    // eng's row is drift; carol's and dave's new rows are not.
    assert_eq!(drift_corrected(&health), 1);
}

/// The SQLite file removed while the controller has it open: the next sync notices before it
/// writes, opens the store at the path again (a new file) and writes every object into it, not
/// only what changed, so what the path holds is the whole tree.
#[tokio::test]
async fn a_store_file_removed_while_open_is_opened_again_and_filled() {
    let mut w = acme();
    let syncer = w.syncer(Duration::from_secs(300));
    assert!(syncer.sync().await.failure.is_none());
    let path = w.dsn.strip_prefix("sqlite://").unwrap().to_owned();
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{path}{suffix}"));
    }
    w.members
        .apply_watcher_event(&watcher::Event::Apply(DeserializeGuard(Ok(dave()))));
    let after = syncer.sync().await;
    assert!(after.failure.is_none(), "{:?}", after.failure);
    let store = SqlStore::open(&w.dsn).await.unwrap();
    let tree = store.tree().await.unwrap();
    assert_eq!(tree.len(), 1, "{tree:?}");
    assert_eq!(tree[0].members, 3, "alice, bob and dave: {tree:?}");
    assert_eq!(tree[0].sub_organizations[0].members, 2, "{tree:?}");
}

/// A backup moved over the store's file while the controller has it open: the resync writes
/// the tree into the file the path now leads to, not into the one it replaced.
#[tokio::test]
async fn a_store_file_replaced_while_open_is_the_one_synced() {
    let w = acme();
    let syncer = w.syncer(Duration::ZERO);
    assert!(syncer.sync().await.failure.is_none());
    let path = w.dsn.strip_prefix("sqlite://").unwrap().to_owned();
    // An empty store, as a backup taken before anything was written.
    let backup = format!("{path}.backup");
    SqlStore::open(&format!("sqlite://{backup}"))
        .await
        .unwrap()
        .close()
        .await;
    std::fs::rename(&backup, &path).unwrap();
    let _ = std::fs::remove_file(format!("{path}-wal"));
    let _ = std::fs::remove_file(format!("{path}-shm"));
    let after = syncer.sync().await;
    assert!(after.failure.is_none(), "{:?}", after.failure);
    let store = SqlStore::open(&w.dsn).await.unwrap();
    let tree = store.tree().await.unwrap();
    assert_eq!(tree.len(), 1, "{tree:?}");
    assert_eq!(tree[0].members, 2, "{tree:?}");
    assert_eq!(tree[0].sub_organizations[0].members, 2, "{tree:?}");
}

/// A membership's status gives, as fields, when its next temporary role in effect expires and
/// when its next role still to come starts: an OrgMembership's and a ProjectMembership's alike.
#[test]
fn statuses_say_when_temporary_roles_end_and_start() {
    let at = |s: &str| s.parse::<Timestamp>().unwrap();
    let now = at("2030-06-01T12:00:00Z");
    let roles = vec![
        role("member"),
        temporary(
            "admin",
            Some("2030-06-01T00:00:00Z"),
            Some("2030-06-02T00:00:00Z"),
            None,
        ),
        temporary("viewer", Some("2030-06-01T00:00:00Z"), None, Some("13h")),
        temporary("auditor", Some("2030-07-01T00:00:00Z"), None, Some("1h")),
        temporary(
            "billing",
            Some("2030-06-15T00:00:00Z"),
            Some("2030-06-16T00:00:00Z"),
            None,
        ),
    ];
    let result = SyncResult::default();
    let m = carol(roles.clone());
    let s = status::membership(&m, &result, now);
    assert_eq!(s.next_expiry.as_deref(), Some("2030-06-01T13:00:00Z"));
    assert_eq!(s.next_start.as_deref(), Some("2030-06-15T00:00:00Z"));
    let mut pm = project_user("team-a", "carol-web", "web", "carol@acme.example");
    pm.spec.roles = roles;
    let s = status::project_membership(&pm, &result, now);
    assert_eq!(s.next_expiry.as_deref(), Some("2030-06-01T13:00:00Z"));
    assert_eq!(s.next_start.as_deref(), Some("2030-06-15T00:00:00Z"));
    // Nothing temporary: neither.
    let s = status::membership(&carol(vec![role("member")]), &result, now);
    assert_eq!((s.next_expiry, s.next_start), (None, None));
}
