//! End-to-end tests against a real API server: the cluster `KUBECONFIG` points at (kind, k3d,
//! a real one). Ignored by default; run them with
//! `cargo nextest run --run-ignored ignored-only cluster::` (see the README).
//!
//! Each test installs the CRDs (server-side apply, so reruns are harmless), runs the controller
//! in-process against its own SQLite file, and works in namespaces and on cluster-scoped names
//! of its own: every object carries the label `suborg.io/e2e=<id>`, and the controller of the
//! test watches only those, so tests run side by side without seeing each other.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::{Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use suborg::api::*;
use suborg::controller::{self, Config};
use suborg::store::{SqlStore, Store};

use super::fixtures::{role, suborg, user_in};

mod examples;

const TIMEOUT: Duration = Duration::from_secs(90);

struct Env {
    client: Client,
    id: String,
    /// Namespace delegated to the root (`<id>-root`) and to the sub-organization (`<id>-sub`).
    root_ns: String,
    sub_ns: String,
    dir: tempfile::TempDir,
    dsn: String,
    controller: Option<Running>,
}

/// A controller running in-process: the sender stops it, the handle awaits or aborts it.
type Running = (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<Result<(), controller::Error>>,
);

async fn install_crds(client: &Client) {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in suborg::api::crds() {
        let name = crd.name_any();
        api.patch(
            &name,
            &PatchParams::apply("suborg-e2e").force(),
            &Patch::Apply(&crd),
        )
        .await
        .expect("the CRD installs");
        wait_for(|| async {
            api.get(&name)
                .await
                .ok()
                .and_then(|c| c.status)
                .is_some_and(|s| {
                    s.conditions
                        .unwrap_or_default()
                        .iter()
                        .any(|c| c.type_ == "Established" && c.status == "True")
                })
        })
        .await;
    }
}

async fn wait_for<F, Fut>(mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition not reached in {TIMEOUT:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

impl Env {
    async fn new() -> Env {
        let client = Client::try_default()
            .await
            .expect("KUBECONFIG points at a cluster");
        install_crds(&client).await;
        let id = format!("e2e-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
        let dir = tempfile::tempdir().unwrap();
        let dsn = format!("sqlite://{}", dir.path().join("store.db").display());
        let env = Env {
            client,
            root_ns: format!("{id}-root"),
            sub_ns: format!("{id}-sub"),
            id,
            dir,
            dsn,
            controller: None,
        };
        env.namespace(&env.root_ns, &env.org("acme")).await;
        env.namespace(&env.sub_ns, &env.org("eng")).await;
        env
    }

    /// A cluster-scoped name of this test's own.
    fn org(&self, name: &str) -> String {
        format!("{}-{name}", self.id)
    }

    async fn namespace(&self, name: &str, delegated_to: &str) {
        let ns = Namespace {
            metadata: kube::api::ObjectMeta {
                name: Some(name.into()),
                labels: Some(BTreeMap::from([
                    ("suborg.io/organization".to_owned(), delegated_to.to_owned()),
                    ("suborg.io/e2e".to_owned(), self.id.clone()),
                ])),
                ..Default::default()
            },
            ..Default::default()
        };
        self.apply(ns).await;
    }

    fn start(&mut self) {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let config = Config {
            store: self.dsn.clone(),
            resync: Duration::from_secs(300),
            metrics_addr: None,
            leader: None,
            selector: Some(format!("suborg.io/e2e={}", self.id)),
            adopt: false,
            take_over_store: false,
        };
        let client = self.client.clone();
        let task = tokio::spawn(controller::run(client, config, async {
            let _ = rx.await;
        }));
        self.controller = Some((tx, task));
    }

    /// Stops the controller abruptly, as a killed pod would.
    fn kill(&mut self) {
        if let Some((_, task)) = self.controller.take() {
            task.abort();
        }
    }

    async fn stop(&mut self) {
        if let Some((tx, task)) = self.controller.take() {
            let _ = tx.send(());
            let _ = tokio::time::timeout(TIMEOUT, task).await;
        }
    }

    /// Server-side applies `o`, labelled as this test's.
    async fn apply<K>(&self, mut o: K) -> K
    where
        K: ApiFor + Clone + Serialize + DeserializeOwned + std::fmt::Debug,
    {
        o.labels_mut()
            .insert("suborg.io/e2e".into(), self.id.clone());
        let api = K::api_for(self.client.clone(), o.namespace().as_deref());
        o.meta_mut().managed_fields = None;
        api.patch(
            &o.name_any(),
            &PatchParams::apply("suborg-e2e").force(),
            &Patch::Apply(&o),
        )
        .await
        .unwrap_or_else(|e| panic!("applying {} failed: {e}", o.name_any()))
    }

    fn root(&self) -> Organization {
        super::fixtures::org(&self.org("acme"))
    }

    /// The sub-organization `eng` of the root; `admins` must be root members (one at least).
    fn sub(&self, admins: &[&str]) -> SubOrganization {
        suborg(&self.org("eng"), &self.org("acme"), admins)
    }

    fn root_member(&self, name: &str, email: &str) -> OrgMembership {
        user_in(
            &self.root_ns,
            name,
            OrganizationKind::Organization,
            &self.org("acme"),
            email,
            vec![role("member")],
        )
    }

    fn sub_member(&self, name: &str, email: &str) -> OrgMembership {
        user_in(
            &self.sub_ns,
            name,
            OrganizationKind::SubOrganization,
            &self.org("eng"),
            email,
            vec![role("member")],
        )
    }

    async fn store(&self) -> SqlStore {
        SqlStore::open(&self.dsn).await.unwrap()
    }

    /// Deletes everything the test made and waits until it is gone.
    async fn clean_up(mut self) {
        if self.controller.is_none() {
            self.start();
        }
        let selector = ListParams::default().labels(&format!("suborg.io/e2e={}", self.id));
        let dp = DeleteParams::default();
        let members: Api<OrgMembership> = Api::all(self.client.clone());
        for m in members.list(&selector).await.unwrap() {
            let api: Api<OrgMembership> =
                Api::namespaced(self.client.clone(), &m.namespace().unwrap());
            let _ = api.delete(&m.name_any(), &dp).await;
        }
        delete_all::<ProjectMembership>(&self.client, &selector).await;
        delete_all::<Project>(&self.client, &selector).await;
        delete_all::<AppConnection>(&self.client, &selector).await;
        delete_all::<Gateway>(&self.client, &selector).await;
        delete_all::<Relay>(&self.client, &selector).await;
        let groups: Api<Group> = Api::all(self.client.clone());
        for g in groups.list(&selector).await.unwrap() {
            let api: Api<Group> = Api::namespaced(self.client.clone(), &g.namespace().unwrap());
            let _ = api.delete(&g.name_any(), &dp).await;
        }
        let identities: Api<MachineIdentity> = Api::all(self.client.clone());
        for i in identities.list(&selector).await.unwrap() {
            let api: Api<MachineIdentity> =
                Api::namespaced(self.client.clone(), &i.namespace().unwrap());
            let _ = api.delete(&i.name_any(), &dp).await;
        }
        let subs: Api<SubOrganization> = Api::all(self.client.clone());
        let _ = subs.delete_collection(&dp, &selector).await;
        let orgs: Api<Organization> = Api::all(self.client.clone());
        let _ = orgs.delete_collection(&dp, &selector).await;
        wait_for(|| async {
            orgs.list(&selector).await.unwrap().items.is_empty()
                && subs.list(&selector).await.unwrap().items.is_empty()
                && members.list(&selector).await.unwrap().items.is_empty()
                && groups.list(&selector).await.unwrap().items.is_empty()
                && identities.list(&selector).await.unwrap().items.is_empty()
        })
        .await;
        self.stop().await;
        // Namespaces have no delete-collection: one by one.
        let namespaces: Api<Namespace> = Api::all(self.client.clone());
        for ns in [&self.root_ns, &self.sub_ns] {
            let _ = namespaces.delete(ns, &dp).await;
        }
        drop(self.dir);
    }
}

/// Deletes every object of a namespaced kind the selector matches and waits until they are
/// gone (their finalizers released).
async fn delete_all<K>(client: &Client, selector: &ListParams)
where
    K: ApiFor + Clone + DeserializeOwned + std::fmt::Debug,
{
    let all: Api<K> = Api::all(client.clone());
    for o in all.list(selector).await.unwrap() {
        let api = K::api_for(client.clone(), o.namespace().as_deref());
        let _ = api.delete(&o.name_any(), &DeleteParams::default()).await;
    }
    wait_for(|| async { all.list(selector).await.unwrap().items.is_empty() }).await;
}

/// The Api of an object of a kind, namespaced or not.
trait ApiFor: Resource<DynamicType = ()> + Sized {
    fn api_for(client: Client, namespace: Option<&str>) -> Api<Self>;
}
macro_rules! cluster_scoped {
    ($($k:ty),*) => {$(
        impl ApiFor for $k {
            fn api_for(client: Client, _: Option<&str>) -> Api<Self> {
                Api::all(client)
            }
        }
    )*};
}
cluster_scoped!(Namespace, Organization, SubOrganization);
macro_rules! namespaced {
    ($($k:ty),*) => {$(
        impl ApiFor for $k {
            fn api_for(client: Client, namespace: Option<&str>) -> Api<Self> {
                Api::namespaced(client, namespace.expect("namespaced kind"))
            }
        }
    )*};
}
namespaced!(
    Group,
    MachineIdentity,
    AppConnection,
    Gateway,
    Relay,
    Project,
    ProjectMembership
);
impl ApiFor for OrgMembership {
    fn api_for(client: Client, namespace: Option<&str>) -> Api<Self> {
        Api::namespaced(client, namespace.expect("memberships are namespaced"))
    }
}

fn ready_of(status: Option<&CommonStatus>) -> Option<(String, String, String)> {
    status?
        .conditions
        .iter()
        .find(|c| c.type_ == CONDITION_READY)
        .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
}

/// Waits until the object's Ready condition has `status` and `reason`; returns the object.
async fn wait_ready<K>(api: &Api<K>, name: &str, status: &str, reason: &str) -> K
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
    K: HasCommon,
{
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        let o = api.get(name).await.unwrap();
        let now = ready_of(o.common());
        if let Some((s, r, _)) = &now
            && s == status
            && r == reason
            && o.common().and_then(|c| c.observed_generation) == o.meta().generation
        {
            assert_kstatus(name, o.common().unwrap(), status, reason);
            return o;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{name}: Ready is {now:?}, not {status}/{reason}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// What kstatus reads beside Ready, as the server holds it: nothing when Ready is `True` (a
/// condition from an earlier status is gone, as server-side apply removes it), else
/// `Reconciling` or `Stalled` with the same reason.
fn assert_kstatus(name: &str, common: &CommonStatus, status: &str, reason: &str) {
    let others: Vec<(&str, &str, &str)> = common
        .conditions
        .iter()
        .filter(|c| c.type_ != "Ready")
        .map(|c| (c.type_.as_str(), c.status.as_str(), c.reason.as_str()))
        .collect();
    let expected = match status {
        "True" => vec![],
        _ if suborg::controller::status::is_waiting(reason) => {
            vec![("Reconciling", "True", reason)]
        }
        _ => vec![("Stalled", "True", reason)],
    };
    assert_eq!(others, expected, "{name}: the conditions beside Ready");
}

trait HasCommon {
    fn common(&self) -> Option<&CommonStatus>;
}
macro_rules! has_common {
    ($($k:ty),*) => {$(
        impl HasCommon for $k {
            fn common(&self) -> Option<&CommonStatus> {
                self.status.as_ref().map(|s| &s.common)
            }
        }
    )*};
}
has_common!(Project, ProjectMembership, AppConnection, Gateway, Relay);
impl HasCommon for Organization {
    fn common(&self) -> Option<&CommonStatus> {
        self.status.as_ref().map(|s| &s.common)
    }
}
impl HasCommon for SubOrganization {
    fn common(&self) -> Option<&CommonStatus> {
        self.status.as_ref().map(|s| &s.common)
    }
}
impl HasCommon for Group {
    fn common(&self) -> Option<&CommonStatus> {
        self.status.as_ref().map(|s| &s.common)
    }
}
impl HasCommon for OrgMembership {
    fn common(&self) -> Option<&CommonStatus> {
        self.status.as_ref().map(|s| &s.common)
    }
}

#[tokio::test]
#[ignore = "needs a cluster"]
async fn a_tree_becomes_ready_and_lands_in_the_store() {
    let mut env = Env::new().await;
    env.start();
    env.apply(env.root()).await;
    env.apply(env.sub(&["bob@acme.example"])).await;
    env.apply(env.root_member("alice", "alice@acme.example"))
        .await;
    env.apply(env.root_member("bob", "bob@acme.example")).await;
    env.apply(env.sub_member("alice", "alice@acme.example"))
        .await;
    let orgs: Api<Organization> = Api::all(env.client.clone());
    let root = wait_ready(&orgs, &env.org("acme"), "True", "Synced").await;
    let subs: Api<SubOrganization> = Api::all(env.client.clone());
    wait_ready(&subs, &env.org("eng"), "True", "Synced").await;
    let members: Api<OrgMembership> = Api::namespaced(env.client.clone(), &env.sub_ns);
    let alice = wait_ready(&members, "alice", "True", "Synced").await;
    assert!(alice.status.unwrap().common.id.is_some());
    assert!(
        root.finalizers()
            .contains(&"suborg.io/store-cleanup".to_owned())
    );
    // The spec, labels and annotations stay as the user wrote them: no perpetual diff.
    assert_eq!(root.spec, env.root().spec);
    let tree = env.store().await.tree().await.unwrap();
    let acme = tree
        .iter()
        .find(|r| r.slug == env.org("acme"))
        .expect("the root is in the store");
    assert_eq!(acme.members, 2);
    assert_eq!(acme.sub_organizations.len(), 1);
    assert_eq!(acme.sub_organizations[0].members, 2);
    env.clean_up().await;
}

#[tokio::test]
#[ignore = "needs a cluster"]
async fn nesting_is_refused_at_admission_and_reported_when_it_hides_behind_a_name() {
    let mut env = Env::new().await;
    env.start();
    env.apply(env.root()).await;
    env.apply(env.root_member("bob", "bob@acme.example")).await;
    // Admins are required (one at least) and must be root members.
    env.apply(env.sub(&["bob@acme.example"])).await;
    // organizationRef.kind SubOrganization: the API server itself refuses it.
    let mut nested = suborg(&env.org("deep"), &env.org("eng"), &["bob@acme.example"]);
    nested.spec.organization_ref.kind = OrganizationKind::SubOrganization;
    nested
        .labels_mut()
        .insert("suborg.io/e2e".into(), env.id.clone());
    let subs: Api<SubOrganization> = Api::all(env.client.clone());
    let err = subs
        .patch(
            &env.org("deep"),
            &PatchParams::apply("suborg-e2e"),
            &Patch::Apply(&nested),
        )
        .await
        .expect_err("nesting is refused at admission");
    assert!(err.to_string().contains("one level"), "{err}");
    // Naming a sub-organization as if it were a root passes admission; the controller says why
    // it cannot be.
    env.apply(suborg(
        &env.org("deep"),
        &env.org("eng"),
        &["bob@acme.example"],
    ))
    .await;
    let deep = wait_ready(&subs, &env.org("deep"), "False", "NestingViolation").await;
    let message = ready_of(deep.common()).unwrap().2;
    assert!(message.contains(&env.org("eng")), "{message}");
    env.clean_up().await;
}

#[tokio::test]
#[ignore = "needs a cluster"]
async fn removing_a_root_member_revokes_their_sub_organization_access() {
    let mut env = Env::new().await;
    env.start();
    env.apply(env.root()).await;
    env.apply(env.root_member("bob", "bob@acme.example")).await;
    env.apply(env.sub(&["bob@acme.example"])).await;
    env.apply(env.root_member("alice", "alice@acme.example"))
        .await;
    env.apply(env.sub_member("alice", "alice@acme.example"))
        .await;
    let sub_members: Api<OrgMembership> = Api::namespaced(env.client.clone(), &env.sub_ns);
    wait_ready(&sub_members, "alice", "True", "Synced").await;
    let root_members: Api<OrgMembership> = Api::namespaced(env.client.clone(), &env.root_ns);
    root_members
        .delete("alice", &DeleteParams::default())
        .await
        .unwrap();
    let alice = wait_ready(&sub_members, "alice", "False", "SubjectNotInRoot").await;
    assert!(alice.status.unwrap().common.id.is_none());
    // bob stays, at the root and as eng's admin; alice is gone from both.
    let tree = env.store().await.tree().await.unwrap();
    let acme = tree.iter().find(|r| r.slug == env.org("acme")).unwrap();
    assert_eq!(acme.members, 1);
    assert_eq!(acme.sub_organizations[0].members, 1);
    env.clean_up().await;
}

#[tokio::test]
#[ignore = "needs a cluster"]
async fn delegation_follows_namespace_labels() {
    let mut env = Env::new().await;
    env.start();
    env.apply(env.root()).await;
    env.apply(env.root_member("alice", "alice@acme.example"))
        .await;
    let members: Api<OrgMembership> = Api::namespaced(env.client.clone(), &env.root_ns);
    wait_ready(&members, "alice", "True", "Synced").await;
    env.namespace(&env.root_ns, "someone-else").await;
    wait_ready(&members, "alice", "False", "NamespaceNotAllowed").await;
    env.namespace(&env.root_ns, &env.org("acme")).await;
    wait_ready(&members, "alice", "True", "Synced").await;
    env.clean_up().await;
}

/// A namespace that loses its delegation keeps its project in the store, with its id, and
/// loses the access granted from it at once; with the label back, the same project carries on.
#[tokio::test]
#[ignore = "needs a cluster"]
async fn a_namespace_losing_delegation_keeps_its_project_and_loses_its_grants() {
    use super::fixtures::{project, project_user};
    let mut env = Env::new().await;
    env.start();
    env.apply(env.root()).await;
    env.apply(env.sub(&["bob@acme.example"])).await;
    env.apply(env.root_member("bob", "bob@acme.example")).await;
    env.apply(env.root_member("carol", "carol@acme.example"))
        .await;
    env.apply(env.sub_member("carol-eng", "carol@acme.example"))
        .await;
    env.apply(project(
        &env.sub_ns,
        "api",
        OrganizationKind::SubOrganization,
        &env.org("eng"),
    ))
    .await;
    env.apply(project_user(
        &env.sub_ns,
        "carol-api",
        "api",
        "carol@acme.example",
    ))
    .await;
    let projects: Api<Project> = Api::namespaced(env.client.clone(), &env.sub_ns);
    let pms: Api<ProjectMembership> = Api::namespaced(env.client.clone(), &env.sub_ns);
    let id = wait_ready(&projects, "api", "True", "Synced")
        .await
        .status
        .and_then(|s| s.common.id)
        .expect("a store id");
    wait_ready(&pms, "carol-api", "True", "Synced").await;

    env.namespace(&env.sub_ns, "someone-else").await;
    let refused = wait_ready(&projects, "api", "False", "NamespaceNotAllowed").await;
    let status = refused.status.unwrap();
    assert_eq!(status.common.id.as_deref(), Some(id.as_str()));
    let (_, _, message) = ready_of(Some(&status.common)).unwrap();
    assert!(message.contains("stay in the store"), "{message}");
    // The membership is in that namespace too: its own refusal, not a wait for the project.
    wait_ready(&pms, "carol-api", "False", "NamespaceNotAllowed").await;
    let store = env.store().await;
    let access = store.access("carol@acme.example").await.unwrap();
    assert!(
        access.is_none_or(|a| a.iter().all(|e| e.project.is_none())),
        "carol still reaches the project"
    );

    env.namespace(&env.sub_ns, &env.org("eng")).await;
    let back = wait_ready(&projects, "api", "True", "Synced").await;
    assert_eq!(back.status.and_then(|s| s.common.id), Some(id));
    wait_ready(&pms, "carol-api", "True", "Synced").await;
    env.clean_up().await;
}

#[tokio::test]
#[ignore = "needs a cluster"]
async fn deletion_policies_delete_or_keep_the_rows() {
    let mut env = Env::new().await;
    env.start();
    env.apply(env.root()).await;
    env.apply(env.root_member("alice", "alice@acme.example"))
        .await;
    let mut kept = env.root_member("bob", "bob@acme.example");
    kept.spec.deletion_policy = DeletionPolicy::Orphan;
    env.apply(kept).await;
    let members: Api<OrgMembership> = Api::namespaced(env.client.clone(), &env.root_ns);
    wait_ready(&members, "alice", "True", "Synced").await;
    wait_ready(&members, "bob", "True", "Synced").await;
    members
        .delete("alice", &DeleteParams::default())
        .await
        .unwrap();
    members
        .delete("bob", &DeleteParams::default())
        .await
        .unwrap();
    wait_for(|| async {
        members
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty()
    })
    .await;
    let store = env.store().await;
    let orgs = store.organizations().await.unwrap();
    let acme = orgs.iter().find(|o| o.slug == env.org("acme")).unwrap();
    let left: Vec<String> = store
        .members(&acme.id)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.email)
        .collect();
    assert_eq!(left, vec!["bob@acme.example".to_owned()]);
    env.clean_up().await;
}

/// An object relabelled out of the controller's `--selector` is, to that controller, deleted:
/// its rows leave the store, its status says it is no longer managed, and its finalizer is
/// released, so deleting it later is not held by a controller that no longer looks.
/// Relabelled back, it is synced again.
#[tokio::test]
#[ignore = "needs a cluster"]
async fn an_object_relabelled_out_of_the_selector_is_let_go() {
    let mut env = Env::new().await;
    env.start();
    env.apply(env.root()).await;
    env.apply(env.root_member("alice", "alice@acme.example"))
        .await;
    let members: Api<OrgMembership> = Api::namespaced(env.client.clone(), &env.root_ns);
    wait_ready(&members, "alice", "True", "Synced").await;
    let relabel = |value: Option<&str>| {
        Patch::Merge(serde_json::json!({"metadata": {"labels": {"suborg.io/e2e": value}}}))
    };
    members
        .patch("alice", &PatchParams::default(), &relabel(None))
        .await
        .unwrap();
    let alice = wait_ready(&members, "alice", "Unknown", "NotManaged").await;
    let message = ready_of(alice.status.as_ref().map(|s| &s.common))
        .unwrap()
        .2;
    assert!(message.contains("rows are removed"), "{message}");
    wait_for(|| async { members.get("alice").await.unwrap().finalizers().is_empty() }).await;
    let store = env.store().await;
    let acme = env.org("acme");
    wait_for(|| async {
        let orgs = store.organizations().await.unwrap();
        let root = orgs.iter().find(|o| o.slug == acme).unwrap();
        store.members(&root.id).await.unwrap().is_empty()
    })
    .await;
    // Back in the selector: synced again, finalizer and all.
    members
        .patch("alice", &PatchParams::default(), &relabel(Some(&env.id)))
        .await
        .unwrap();
    let alice = wait_ready(&members, "alice", "True", "Synced").await;
    assert!(
        alice
            .finalizers()
            .iter()
            .any(|f| f == suborg::controller::FINALIZER)
    );
    // Out again, then deleted: nothing holds the deletion.
    members
        .patch("alice", &PatchParams::default(), &relabel(None))
        .await
        .unwrap();
    wait_ready(&members, "alice", "Unknown", "NotManaged").await;
    wait_for(|| async { members.get("alice").await.unwrap().finalizers().is_empty() }).await;
    members
        .delete("alice", &DeleteParams::default())
        .await
        .unwrap();
    wait_for(|| async { members.get_opt("alice").await.unwrap().is_none() }).await;
    env.clean_up().await;
}

/// A root whose deletion waits for its sub-organizations, relabelled out of the selector, is
/// let go too: its finalizer is released and the API server finishes the deletion.
#[tokio::test]
#[ignore = "needs a cluster"]
async fn a_root_being_deleted_relabelled_out_of_the_selector_is_let_go() {
    let mut env = Env::new().await;
    env.start();
    env.apply(env.root()).await;
    env.apply(env.root_member("bob", "bob@acme.example")).await;
    env.apply(env.sub(&["bob@acme.example"])).await;
    let subs: Api<SubOrganization> = Api::all(env.client.clone());
    wait_ready(&subs, &env.org("eng"), "True", "Synced").await;
    let orgs: Api<Organization> = Api::all(env.client.clone());
    let acme = env.org("acme");
    orgs.delete(&acme, &DeleteParams::default()).await.unwrap();
    wait_ready(&orgs, &acme, "False", "HasSubOrganizations").await;
    orgs.patch(
        &acme,
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"metadata": {"labels": {"suborg.io/e2e": null}}})),
    )
    .await
    .unwrap();
    wait_for(|| async { orgs.get_opt(&acme).await.unwrap().is_none() }).await;
    env.clean_up().await;
}

#[tokio::test]
#[ignore = "needs a cluster"]
async fn a_root_waits_for_its_sub_organizations_before_leaving_the_store() {
    let mut env = Env::new().await;
    env.start();
    env.apply(env.root()).await;
    env.apply(env.root_member("bob", "bob@acme.example")).await;
    env.apply(env.sub(&["bob@acme.example"])).await;
    let subs: Api<SubOrganization> = Api::all(env.client.clone());
    wait_ready(&subs, &env.org("eng"), "True", "Synced").await;
    let orgs: Api<Organization> = Api::all(env.client.clone());
    orgs.delete(&env.org("acme"), &DeleteParams::default())
        .await
        .unwrap();
    wait_ready(&orgs, &env.org("acme"), "False", "HasSubOrganizations").await;
    subs.delete(&env.org("eng"), &DeleteParams::default())
        .await
        .unwrap();
    let asked = std::time::Instant::now();
    wait_for(|| async { orgs.get_opt(&env.org("acme")).await.unwrap().is_none() }).await;
    // The sync that removes eng's rows queues acme, whose finalizer goes then, not at the
    // next look it asked for (5 s later).
    assert!(
        asked.elapsed() < std::time::Duration::from_secs(4),
        "acme went {:?} after eng was deleted",
        asked.elapsed()
    );
    let tree = env.store().await.tree().await.unwrap();
    assert!(tree.iter().all(|r| r.slug != env.org("acme")));
    env.clean_up().await;
}

#[tokio::test]
#[ignore = "needs a cluster"]
async fn a_controller_killed_mid_apply_converges_after_restart() {
    let mut env = Env::new().await;
    env.apply(env.root()).await;
    let n = 300;
    for i in 0..n {
        env.apply(env.root_member(&format!("user-{i}"), &format!("user{i}@acme.example")))
            .await;
    }
    env.start();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    env.kill();
    env.start();
    let orgs: Api<Organization> = Api::all(env.client.clone());
    wait_for(|| async {
        orgs.get(&env.org("acme"))
            .await
            .ok()
            .and_then(|o| o.status)
            .and_then(|s| s.members)
            == Some(n)
    })
    .await;
    let store = env.store().await;
    let acme = store
        .organizations()
        .await
        .unwrap()
        .into_iter()
        .find(|o| o.slug == env.org("acme"))
        .unwrap();
    let members = store.members(&acme.id).await.unwrap();
    let mut emails: Vec<String> = members.into_iter().map(|m| m.email).collect();
    emails.dedup();
    assert_eq!(emails.len(), n as usize, "nothing duplicated or lost");
    env.clean_up().await;
}

#[tokio::test]
#[ignore = "needs a cluster"]
async fn a_store_that_goes_away_is_reported_and_recovered_from() {
    let Ok(postgres) = std::env::var("SUBORG_TEST_POSTGRES") else {
        eprintln!("SUBORG_TEST_POSTGRES is not set: this test needs a PostgreSQL server");
        return;
    };
    let mut env = Env::new().await;
    // The controller reaches PostgreSQL through a proxy the test can cut and restore.
    let proxy = super::proxy::Proxy::start(&postgres).await;
    env.dsn = proxy
        .dsn(&postgres, &format!("suborg_{}", env.id.replace('-', "_")))
        .await;
    env.start();
    env.apply(env.root()).await;
    let orgs: Api<Organization> = Api::all(env.client.clone());
    wait_ready(&orgs, &env.org("acme"), "True", "Synced").await;
    proxy.cut();
    env.apply(env.root_member("alice", "alice@acme.example"))
        .await;
    let members: Api<OrgMembership> = Api::namespaced(env.client.clone(), &env.root_ns);
    wait_ready(&members, "alice", "False", "StoreUnavailable").await;
    proxy.restore();
    wait_ready(&members, "alice", "True", "Synced").await;
    env.clean_up().await;
}

#[tokio::test]
#[ignore = "needs a cluster"]
async fn a_root_group_flows_down_once_added_and_its_removal_revokes_it() {
    use super::fixtures::{group, subject_in, user};
    let mut env = Env::new().await;
    env.start();
    env.apply(env.root()).await;
    env.apply(env.sub(&["bob@acme.example"])).await;
    env.apply(env.root_member("bob", "bob@acme.example")).await;
    let reviewers = group(
        &env.root_ns,
        "reviewers",
        OrganizationKind::Organization,
        &env.org("acme"),
        vec![user("bob@acme.example")],
    );
    env.apply(reviewers).await;
    let added = subject_in(
        &env.sub_ns,
        "reviewers",
        OrganizationKind::SubOrganization,
        &env.org("eng"),
        SubjectKind::Group,
        "reviewers",
        Some(&env.root_ns),
    );
    env.apply(added).await;
    let groups: Api<Group> = Api::namespaced(env.client.clone(), &env.root_ns);
    let g = wait_ready(&groups, "reviewers", "True", "Synced").await;
    assert_eq!(g.status.unwrap().members, Some(1));
    let members: Api<OrgMembership> = Api::namespaced(env.client.clone(), &env.sub_ns);
    wait_ready(&members, "reviewers", "True", "Synced").await;
    groups
        .delete("reviewers", &DeleteParams::default())
        .await
        .unwrap();
    // Named in another namespace: the same answer as for a group of another organization.
    wait_ready(&members, "reviewers", "False", "SubjectNotVisible").await;
    env.clean_up().await;
}

#[tokio::test]
#[ignore = "needs a cluster"]
async fn a_sub_organization_project_sees_only_what_was_added_and_loses_it_on_revocation() {
    use super::fixtures::{connection, project, project_user};
    let mut env = Env::new().await;
    env.start();
    env.apply(env.root()).await;
    env.apply(env.sub(&["bob@acme.example"])).await;
    env.apply(env.root_member("bob", "bob@acme.example")).await;
    env.apply(env.root_member("carol", "carol@acme.example"))
        .await;
    env.apply(env.sub_member("carol-eng", "carol@acme.example"))
        .await;
    env.apply(connection(
        &env.sub_ns,
        "github",
        OrganizationKind::SubOrganization,
        &env.org("eng"),
    ))
    .await;
    let mut api = project(
        &env.sub_ns,
        "api",
        OrganizationKind::SubOrganization,
        &env.org("eng"),
    );
    api.spec.app_connections = vec![LocalObjectRef {
        name: "github".into(),
        namespace: None,
    }];
    env.apply(api).await;
    env.apply(project_user(
        &env.sub_ns,
        "carol-api",
        "api",
        "carol@acme.example",
    ))
    .await;
    env.apply(project_user(
        &env.sub_ns,
        "dave-api",
        "api",
        "dave@acme.example",
    ))
    .await;
    let projects: Api<Project> = Api::namespaced(env.client.clone(), &env.sub_ns);
    wait_ready(&projects, "api", "True", "Synced").await;
    // Ready as soon as the project is in the store; its count follows its members' sync.
    wait_for(|| async {
        projects
            .get("api")
            .await
            .ok()
            .and_then(|p| p.status)
            .and_then(|s| s.members)
            == Some(1)
    })
    .await;
    let pms: Api<ProjectMembership> = Api::namespaced(env.client.clone(), &env.sub_ns);
    wait_ready(&pms, "carol-api", "True", "Synced").await;
    wait_ready(&pms, "dave-api", "False", "SubjectNotInOrganization").await;
    // The API server refuses moving a project to another organization.
    let moved = serde_json::json!({"spec": {"organizationRef": {"kind": "Organization", "name": env.org("acme")}}});
    let err = projects
        .patch("api", &PatchParams::default(), &Patch::Merge(&moved))
        .await
        .expect_err("organizationRef is immutable");
    assert!(err.to_string().contains("is immutable"), "{err}");
    // carol leaves engineering: her project access goes with it.
    let members: Api<OrgMembership> = Api::namespaced(env.client.clone(), &env.sub_ns);
    members
        .delete("carol-eng", &DeleteParams::default())
        .await
        .unwrap();
    wait_ready(&pms, "carol-api", "False", "SubjectNotInOrganization").await;
    let store = env.store().await;
    let access = store.access("carol@acme.example").await.unwrap().unwrap();
    assert!(access.iter().all(|e| e.project.is_none()), "{access:?}");
    env.clean_up().await;
}
