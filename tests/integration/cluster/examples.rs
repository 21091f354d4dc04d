//! The README's quickstart and the Helm chart's RBAC on a real API server, with the example
//! tree itself (`examples/acme`). Its names are fixed (`acme`, namespace `platform`), so these
//! tests run one at a time (`.config/nextest.toml` puts them in one test group) and each
//! removes the examples before it ends. The controller runs as the `suborg` binary, as a user
//! runs it, managing every object without the `suborg.io/e2e` label: the other end-to-end
//! tests label theirs and run beside it untouched.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::events::v1::Event;
use kube::Client;
use kube::api::{Api, ApiResource, DynamicObject, ListParams};
use suborg::api;

/// Every object `examples/acme` declares, of the ten kinds.
const EXAMPLE_OBJECTS: usize = 34;
/// How long deleting the examples may take until every finalizer is released.
const RELEASE_WITHIN: Duration = Duration::from_secs(20);
/// How long `suborg run` may take to exit on SIGTERM.
const EXIT_WITHIN: Duration = Duration::from_secs(5);

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs a shell command line from the repository root (as the README's commands run), with
/// `suborg` on the PATH; panics with its output when it fails.
fn sh(line: &str) -> String {
    let bin = Path::new(env!("CARGO_BIN_EXE_suborg")).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new("sh")
        .args(["-c", line])
        .current_dir(root())
        .env("PATH", path)
        .output()
        .expect("sh runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "`{line}` failed:\n{text}");
    text
}

/// `suborg run` as a child process, its JSON log in a file.
struct Running {
    child: Child,
    log: PathBuf,
    lease: (String, String),
    identity: String,
}

impl Running {
    /// Starts the controller on `store`, taking the Lease `lease` in `namespace`;
    /// `kubeconfig` replaces the caller's.
    fn start(
        dir: &Path,
        store: &str,
        namespace: &str,
        lease: &str,
        kubeconfig: Option<&Path>,
    ) -> Self {
        Self::start_as("e2e-examples", dir, store, namespace, lease, kubeconfig)
    }

    /// [`Running::start`], as the replica `identity`.
    fn start_as(
        identity: &str,
        dir: &Path,
        store: &str,
        namespace: &str,
        lease: &str,
        kubeconfig: Option<&Path>,
    ) -> Self {
        let log = dir.join(format!("suborg-{lease}-{identity}.log"));
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_suborg"));
        cmd.args([
            "run",
            "--store",
            store,
            "--metrics-addr",
            "off",
            "--log-format",
            "json",
            "--selector",
            "!suborg.io/e2e",
            "--leader-election",
            "--lease-namespace",
            namespace,
            "--lease-name",
            lease,
            "--identity",
            identity,
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap());
        if let Some(k) = kubeconfig {
            cmd.env("KUBECONFIG", k);
        }
        Running {
            child: cmd.spawn().expect("suborg run starts"),
            log,
            lease: (namespace.to_owned(), lease.to_owned()),
            identity: identity.to_owned(),
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Whether the process is still running.
    fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Log lines at WARN or ERROR.
    fn complaints(&self) -> Vec<String> {
        self.log()
            .lines()
            .filter(|l| l.contains("\"level\":\"WARN\"") || l.contains("\"level\":\"ERROR\""))
            .map(str::to_owned)
            .collect()
    }

    /// Sends SIGTERM; the process must exit cleanly within [`EXIT_WITHIN`] and leave the
    /// Lease to whoever comes next.
    async fn terminate(mut self, client: &Client) {
        let sent = sigterm(&self.child);
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            if sent.elapsed() > EXIT_WITHIN {
                let _ = self.child.kill();
                panic!(
                    "suborg run was still running {EXIT_WITHIN:?} after SIGTERM:\n{}",
                    self.log()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert!(
            status.success(),
            "suborg run exited with {status}:\n{}",
            self.log()
        );
        let leases: Api<Lease> = Api::namespaced(client.clone(), &self.lease.0);
        let lease = leases
            .get(&self.lease.1)
            .await
            .expect("the Lease was taken");
        let holder = lease.spec.and_then(|s| s.holder_identity);
        assert!(
            holder.as_deref() != Some(self.identity.as_str()),
            "the Lease is released on the way out (held by {holder:?})"
        );
    }
}

/// Sends SIGTERM to `child`; when it was sent.
fn sigterm(child: &Child) -> Instant {
    let pid = child.id().to_string();
    let sent = Instant::now();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    sent
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn resources() -> Vec<ApiResource> {
    api::crds()
        .iter()
        .map(|crd| {
            let names = &crd.spec.names;
            ApiResource {
                group: crd.spec.group.clone(),
                version: crd.spec.versions[0].name.clone(),
                api_version: format!("{}/{}", crd.spec.group, crd.spec.versions[0].name),
                kind: names.kind.clone(),
                plural: names.plural.clone(),
            }
        })
        .collect()
}

/// The objects of the ten kinds that are not another test's.
async fn example_objects(client: &Client) -> Vec<DynamicObject> {
    let mut out = Vec::new();
    let lp = ListParams::default().labels("!suborg.io/e2e");
    for ar in resources() {
        let api: Api<DynamicObject> = Api::all_with(client.clone(), &ar);
        for mut o in api.list(&lp).await.unwrap() {
            o.types = Some(kube::core::TypeMeta {
                api_version: ar.api_version.clone(),
                kind: ar.kind.clone(),
            });
            out.push(o);
        }
    }
    out
}

fn describe(o: &DynamicObject) -> String {
    format!(
        "{}/{}{}",
        o.types.as_ref().map(|t| t.kind.as_str()).unwrap_or("?"),
        o.metadata
            .namespace
            .as_deref()
            .map(|n| format!("{n}/"))
            .unwrap_or_default(),
        o.metadata.name.as_deref().unwrap_or("?")
    )
}

/// Why `o` is not Ready=True at its current generation, if it is not.
fn not_ready(o: &DynamicObject) -> Option<String> {
    let status = &o.data["status"];
    let ready = status["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == "Ready");
    let observed = status["observedGeneration"].as_i64();
    match ready {
        Some(c) if c["status"] == "True" && observed == o.metadata.generation => None,
        Some(c) => Some(format!(
            "{}: Ready={} {} ({}), observedGeneration {observed:?} of {:?}",
            describe(o),
            c["status"],
            c["reason"],
            c["message"],
            o.metadata.generation
        )),
        None => Some(format!("{}: no Ready condition", describe(o))),
    }
}

/// Waits until all example objects are Ready=True at their generation; returns their uids.
async fn wait_all_ready(client: &Client, running: &Running) -> Vec<String> {
    let deadline = Instant::now() + super::TIMEOUT;
    loop {
        let objects = example_objects(client).await;
        let problems: Vec<String> = objects.iter().filter_map(not_ready).collect();
        if objects.len() == EXAMPLE_OBJECTS && problems.is_empty() {
            return objects
                .iter()
                .filter_map(|o| o.metadata.uid.clone())
                .collect();
        }
        assert!(
            Instant::now() < deadline,
            "{} of {EXAMPLE_OBJECTS} objects, not Ready: {problems:#?}\n{}",
            objects.len(),
            running.log()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Waits until every example object is Ready, and then finds no warning or failed reconcile
/// in the controller's log and no Warning Event about any of them.
async fn ready_without_complaint(client: &Client, running: &Running) {
    let uids = wait_all_ready(client, running).await;
    assert_eq!(
        running.complaints(),
        Vec::<String>::new(),
        "no warning or failed reconcile"
    );
    assert_eq!(warnings_about(client, &uids).await, Vec::<String>::new());
}

/// Warning Events about any of `uids`.
async fn warnings_about(client: &Client, uids: &[String]) -> Vec<String> {
    let events: Api<Event> = Api::all(client.clone());
    events
        .list(&ListParams::default())
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.type_.as_deref() == Some("Warning"))
        .filter(|e| {
            e.regarding
                .as_ref()
                .and_then(|r| r.uid.as_ref())
                .is_some_and(|u| uids.contains(u))
        })
        .map(|e| format!("{:?}: {:?}", e.reason, e.note))
        .collect()
}

/// `kubectl delete -f examples/acme`, then every object of the ten kinds must be gone (its
/// finalizer released) within [`RELEASE_WITHIN`]; both deletion policies are in the examples.
async fn delete_examples(client: &Client, running: &Running) {
    sh("kubectl delete -f examples/acme --wait=false --ignore-not-found");
    let started = Instant::now();
    loop {
        let left = example_objects(client).await;
        if left.is_empty() {
            break;
        }
        assert!(
            started.elapsed() < RELEASE_WITHIN,
            "still there {RELEASE_WITHIN:?} after kubectl delete: {:?}\n{}",
            left.iter().map(describe).collect::<Vec<_>>(),
            running.log()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // The namespaces go too (the API server's namespace controller), before the next test
    // applies them again.
    wait_gone(client, &EXAMPLE_NAMESPACES).await;
}

/// The namespaces `examples/acme` declares.
const EXAMPLE_NAMESPACES: [&str; 4] = [
    "platform",
    "team-engineering",
    "team-sales",
    "team-marketing",
];

/// Waits until none of `names` is a namespace, not even a terminating one.
async fn wait_gone(client: &Client, names: &[&str]) {
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    let deadline = Instant::now() + super::TIMEOUT;
    for ns in names {
        while namespaces.get_opt(ns).await.unwrap().is_some() {
            assert!(
                Instant::now() < deadline,
                "namespace {ns} is not going away"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

/// Leaves no example object behind from an earlier, interrupted run: a controller of this
/// test's own releases them.
async fn start_clean(client: &Client, dir: &Path) {
    if example_objects(client).await.is_empty() {
        // An earlier test's namespaces may still be terminating.
        wait_gone(client, &EXAMPLE_NAMESPACES).await;
        return;
    }
    let store = format!("sqlite://{}", dir.join("leftovers.db").display());
    let running = Running::start(dir, &store, "default", "suborg-e2e-leftovers", None);
    delete_examples(client, &running).await;
}

/// A client, a directory of the test's own, no example left from an earlier run, and the
/// CRDs installed by server-side apply.
async fn prepare() -> (Client, tempfile::TempDir) {
    let client = Client::try_default()
        .await
        .expect("KUBECONFIG points at a cluster");
    let dir = tempfile::tempdir().unwrap();
    start_clean(&client, dir.path()).await;
    sh("suborg crd | kubectl apply --server-side -f -");
    (client, dir)
}

/// The README's quickstart, verbatim, on a fresh cluster: the CRDs (client-side and
/// server-side apply), the example tree, every object Ready at its generation — whether the
/// controller starts after the objects exist or before — with no Warning Event and no failed
/// reconcile; deleting everything releases every finalizer within seconds; SIGTERM stops the
/// controller at once and hands its Lease back.
#[tokio::test]
#[ignore = "needs a cluster"]
async fn the_quickstart_on_a_fresh_cluster() {
    let (client, dir) = prepare().await;
    // As the README has it (client-side apply), over the server-side apply of `prepare`.
    sh("suborg crd | kubectl apply -f -");
    for crd in api::crds() {
        sh(&format!(
            "kubectl wait --for condition=established --timeout=60s crd/{}",
            crd.metadata.name.as_deref().unwrap()
        ));
    }
    let store = format!("sqlite://{}", dir.path().join("quickstart.db").display());

    // The objects first, then the controller.
    sh("suborg validate -f examples/acme");
    sh("kubectl apply -f examples/acme");
    let running = Running::start(dir.path(), &store, "default", "suborg-e2e-quickstart", None);
    ready_without_complaint(&client, &running).await;
    let tree = sh(&format!("suborg get tree --store {store}"));
    assert!(
        tree.contains("acme (Acme Corporation): 8 members"),
        "{tree}"
    );
    delete_examples(&client, &running).await;
    running.terminate(&client).await;
    // Deleted, except what asked to be kept: marketing, and acme for its sake.
    let tree = sh(&format!("suborg get tree --store {store}"));
    assert!(
        tree.contains("marketing") && !tree.contains("engineering"),
        "{tree}"
    );

    // The controller first, then the objects, applied on a running controller. A new store:
    // the first one keeps marketing (deletionPolicy Orphan) and so its root, unmanaged.
    let store = format!("sqlite://{}", dir.path().join("quickstart-2.db").display());
    let running = Running::start(dir.path(), &store, "default", "suborg-e2e-quickstart", None);
    tokio::time::sleep(Duration::from_secs(1)).await;
    sh("kubectl apply -f examples/acme");
    ready_without_complaint(&client, &running).await;
    delete_examples(&client, &running).await;
    running.terminate(&client).await;
}

/// The chart's ClusterRole and Role are sufficient and no more: the chart installed by the real
/// Helm library, the controller run with its ServiceAccount's token, the examples all Ready
/// without one `Forbidden`; and that ServiceAccount cannot read Secrets.
#[tokio::test]
#[ignore = "needs a cluster"]
async fn the_charts_rbac_is_sufficient_and_no_more() {
    let python = std::env::var("SUBORG_HELM_PYTHON").expect(
        "SUBORG_HELM_PYTHON names a Python with helm-python-sdk (see .ci/run): the chart is installed with the real Helm library",
    );
    let (client, dir) = prepare().await;
    let (namespace, release) = ("suborg-e2e-rbac", "suborg");
    let helm = |action: &str| {
        let out = Command::new(&python)
            .args(["tests/chart/cluster.py", action, namespace, release])
            .current_dir(root())
            .output()
            .expect("the helm script runs");
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            out.status.success() && text.contains("\"ok\""),
            "helm {action}: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    helm("uninstall");
    helm("install");

    // A kubeconfig holding only the ServiceAccount's token.
    let sa = format!("system:serviceaccount:{namespace}:suborg");
    let token = sh(&format!(
        "kubectl create token suborg -n {namespace} --duration=1h"
    ));
    let server =
        sh("kubectl config view --minify --raw -o jsonpath='{.clusters[0].cluster.server}'");
    let ca = sh(
        "kubectl config view --minify --raw -o jsonpath='{.clusters[0].cluster.certificate-authority-data}'",
    );
    let kubeconfig = dir.path().join("serviceaccount.kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: {}\n    certificate-authority-data: {}\nusers:\n- name: sa\n  user:\n    token: {}\ncontexts:\n- name: sa\n  context: {{cluster: c, user: sa}}\ncurrent-context: sa\n",
            server.trim(),
            ca.trim(),
            token.trim()
        ),
    )
    .unwrap();
    // Least privilege: no Secrets, anywhere.
    for verb in ["get", "list", "watch"] {
        let out = Command::new("kubectl")
            .args(["auth", "can-i", verb, "secrets", "-A", "--as", &sa])
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            "no",
            "the chart's ServiceAccount can {verb} Secrets"
        );
    }

    let store = format!("sqlite://{}", dir.path().join("rbac.db").display());
    let running = Running::start(
        dir.path(),
        &store,
        namespace,
        "suborg-leader",
        Some(&kubeconfig),
    );
    sh("kubectl apply -f examples/acme");
    let uids = wait_all_ready(&client, &running).await;
    delete_examples(&client, &running).await;
    let log = running.log();
    assert!(!log.to_lowercase().contains("forbidden"), "{log}");
    assert_eq!(running.complaints(), Vec::<String>::new());
    assert_eq!(warnings_about(&client, &uids).await, Vec::<String>::new());
    running.terminate(&client).await;
    helm("uninstall");
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    let _ = namespaces
        .delete(namespace, &kube::api::DeleteParams::default())
        .await;
}

/// Runs `kubectl apply --dry-run=server` on one object: the API server's whole admission
/// (schema, strict field validation, CEL), nothing stored. `Err` holds what it said.
fn server_admits(doc: &serde_json::Value) -> Result<(), String> {
    let mut child = Command::new("kubectl")
        .args(["apply", "--dry-run=server", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl runs");
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(doc.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// The documents of every YAML file under `dir`.
fn documents(dir: &Path) -> Vec<(String, serde_json::Value)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    let mut out = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        for doc in serde_yaml::Deserializer::from_str(&text) {
            // A document that is not YAML never reaches the API server: kubectl refuses it.
            let Ok(v) = <serde_json::Value as serde::Deserialize>::deserialize(doc) else {
                break;
            };
            if !v.is_null() {
                out.push((f.display().to_string(), v));
            }
        }
    }
    out
}

/// Admission parity with the real API server: every valid example is admitted; every document
/// of `examples/invalid` that `suborg validate` refuses on its own (schema or CEL, no other
/// object needed) is refused by the API server too, naming the same field and, for a CEL
/// rule, with the same message; and every document it admits on its own, the server admits.
#[tokio::test]
#[ignore = "needs a cluster"]
async fn admission_agrees_with_the_api_server() {
    let (client, _dir) = prepare().await;
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    let mut created: Vec<String> = Vec::new();
    let ensure_namespace = |name: &str, created: &mut Vec<String>| {
        if !created.iter().any(|n| n == name)
            && Command::new("kubectl")
                .args(["create", "namespace", name])
                .output()
                .unwrap()
                .status
                .success()
        {
            created.push(name.to_owned());
        }
    };

    // The valid tree, admitted as a whole.
    for (_, doc) in documents(&root().join("examples/acme")) {
        if let Some(ns) = doc["metadata"]["namespace"].as_str() {
            ensure_namespace(ns, &mut created);
        }
    }
    sh("kubectl apply --dry-run=server -f examples/acme");

    let mut cases: Vec<PathBuf> = std::fs::read_dir(root().join("examples/invalid"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    cases.sort();
    // Each case as `suborg validate` sees it on its own; the ones it checks alone go to the
    // server, a few kubectl processes at a time (each spends most of its time starting up).
    let mut judged = Vec::new();
    for case in cases {
        for (file, doc) in documents(&case) {
            let Some(problems) = suborg::manifest::admission_problems(doc.clone(), "default")
            else {
                continue;
            };
            if let Some(ns) = doc["metadata"]["namespace"].as_str() {
                ensure_namespace(ns, &mut created);
            }
            let name = doc["metadata"]["name"].as_str().unwrap_or("?").to_owned();
            let what = format!("{file}: {} {name}", doc["kind"].as_str().unwrap_or("?"));
            judged.push((what, doc, problems));
        }
    }
    let verdicts: Vec<Result<(), String>> = std::thread::scope(|scope| {
        let chunk = judged.len().div_ceil(4).max(1);
        let workers: Vec<_> = judged
            .chunks(chunk)
            .map(|part| {
                scope.spawn(move || {
                    part.iter()
                        .map(|(_, doc, _)| server_admits(doc))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect()
    });
    let checked = judged.len();
    let refused = verdicts.iter().filter(|v| v.is_err()).count();
    let mut disagreements = Vec::new();
    for ((what, _, problems), verdict) in judged.iter().zip(verdicts) {
        match (problems.is_empty(), verdict) {
            (true, Ok(())) => {}
            (true, Err(said)) => disagreements.push(format!(
                "{what}: admitted offline, refused by the server: {said}"
            )),
            (false, Ok(())) => disagreements.push(format!(
                "{what}: refused offline ({problems:?}), admitted by the server"
            )),
            (false, Err(said)) => {
                for p in problems {
                    // Type metadata (an unknown kind or version, no kind at all) is named
                    // in the server's own words; every rule names the field.
                    // kubectl, in front of the server, refuses a document without a
                    // name (`generateName` and apply do not mix): the offline rule follows.
                    let field_named = p.field.is_empty()
                        || p.reason == suborg::domain::Reason::MissingTypeMeta
                        || p.field == "apiVersion"
                        || p.field == "kind"
                        || said.contains(&p.field);
                    let cel = p.message.split(':').next().unwrap_or_default();
                    let rule_named =
                        !said.contains("Invalid value: \"object\"") || said.contains(cel.trim());
                    if !field_named || !rule_named {
                        disagreements.push(format!(
                            "{what}: offline {:?} at {:?} ({}), the server said: {said}",
                            p.reason, p.field, p.message
                        ));
                    }
                }
            }
        }
    }
    for ns in &created {
        let _ = namespaces
            .delete(ns, &kube::api::DeleteParams::default())
            .await;
    }
    let created: Vec<&str> = created.iter().map(String::as_str).collect();
    wait_gone(&client, &created).await;
    eprintln!(
        "{checked} documents of examples/invalid: {refused} refused by the API server, the same as offline"
    );
    assert!(checked > 60, "only {checked} documents checked");
    assert!(disagreements.is_empty(), "{disagreements:#?}");
}

/// The holder of the Lease `name` in `default`, if any.
async fn holder(client: &Client, name: &str) -> Option<String> {
    let leases: Api<Lease> = Api::namespaced(client.clone(), "default");
    leases
        .get_opt(name)
        .await
        .unwrap()
        .and_then(|l| l.spec?.holder_identity)
}

/// Waits until the Lease `name` is held by `identity`.
async fn wait_holder(client: &Client, name: &str, identity: &str, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let now = holder(client, name).await;
        if now.as_deref() == Some(identity) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the Lease {name} is held by {now:?}, not {identity}, after {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// What a test of leader election starts from: a client, a directory for the replicas' SQLite
/// store and logs, the store's DSN, and a Lease name of its own (`suborg-e2e-<what>-<8 hex>`).
async fn lease_test(what: &str) -> (Client, tempfile::TempDir, String, String) {
    let client = Client::try_default()
        .await
        .expect("KUBECONFIG points at a cluster");
    let dir = tempfile::tempdir().unwrap();
    let store = format!(
        "sqlite://{}",
        dir.path().join(format!("{what}.db")).display()
    );
    let lease = format!(
        "suborg-e2e-{what}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    (client, dir, store, lease)
}

/// Two replicas on one Lease: the first leads, the second stands by without taking it; when
/// the first stops it hands the Lease back and the second takes over at once, not after the
/// Lease would have run out.
#[tokio::test]
#[ignore = "needs a cluster"]
async fn a_standby_replica_takes_over_when_the_leader_stops() {
    let (client, dir, store, lease) = lease_test("ha").await;
    let first = Running::start_as("replica-a", dir.path(), &store, "default", &lease, None);
    wait_holder(&client, &lease, "replica-a", Duration::from_secs(30)).await;
    let second = Running::start_as("replica-b", dir.path(), &store, "default", &lease, None);
    // Longer than a Lease lasts: the standby never takes it from a leader that renews.
    tokio::time::sleep(Duration::from_secs(17)).await;
    assert_eq!(
        holder(&client, &lease).await.as_deref(),
        Some("replica-a"),
        "the leader keeps its Lease:\n{}",
        second.log()
    );
    let handed_over = Instant::now();
    first.terminate(&client).await;
    wait_holder(&client, &lease, "replica-b", Duration::from_secs(10)).await;
    assert!(
        handed_over.elapsed() < Duration::from_secs(15),
        "taken over after {:?}, as if the Lease had run out",
        handed_over.elapsed()
    );
    second.terminate(&client).await;
    let leases: Api<Lease> = Api::namespaced(client.clone(), "default");
    let _ = leases.delete(&lease, &Default::default()).await;
}

/// A replica killed without handing its Lease back, restarted under the same identity (its
/// container restarted in the same pod) after the Lease ran out, leads again: it takes the
/// Lease afresh rather than give it up at the first look and stop.
#[tokio::test]
#[ignore = "needs a cluster"]
async fn a_replica_restarted_after_its_lease_ran_out_leads_again() {
    let (client, dir, store, lease) = lease_test("restart").await;
    let first = Running::start_as("replica-a", dir.path(), &store, "default", &lease, None);
    wait_holder(&client, &lease, "replica-a", Duration::from_secs(30)).await;
    drop(first); // SIGKILL: the Lease is not handed back
    tokio::time::sleep(Duration::from_secs(17)).await;
    let mut again = Running::start_as("replica-a", dir.path(), &store, "default", &lease, None);
    wait_holder(&client, &lease, "replica-a", Duration::from_secs(30)).await;
    // Past the first looks at the Lease, and a renewal.
    tokio::time::sleep(Duration::from_secs(8)).await;
    assert!(
        again.is_running(),
        "the restarted replica stopped:\n{}",
        again.log()
    );
    assert_eq!(again.complaints(), Vec::<String>::new());
    again.terminate(&client).await;
    let leases: Api<Lease> = Api::namespaced(client.clone(), "default");
    let _ = leases.delete(&lease, &Default::default()).await;
}

/// A replica started through a proxy in front of the API server (which can swallow every
/// byte, as a partitioned network does), once it knows it leads; with its client, directory,
/// Lease name and the proxy.
async fn leader_behind_a_proxy(
    what: &str,
) -> (
    Client,
    tempfile::TempDir,
    String,
    crate::proxy::Proxy,
    Running,
) {
    let (client, dir, store, lease) = lease_test(what).await;
    // The caller's kubeconfig, with every server reached through the proxy.
    let mut kubeconfig = kube::config::Kubeconfig::read().expect("a kubeconfig");
    let server = kubeconfig.clusters[0]
        .cluster
        .as_ref()
        .and_then(|c| c.server.clone())
        .expect("a server");
    let address = server
        .split_once("://")
        .map_or(server.as_str(), |(_, a)| a)
        .trim_end_matches('/')
        .to_owned();
    let proxy = crate::proxy::Proxy::start(&format!("https://{address}")).await;
    for c in &mut kubeconfig.clusters {
        if let Some(cluster) = c.cluster.as_mut() {
            cluster.server = Some(format!("https://127.0.0.1:{}", proxy.port()));
        }
    }
    let path = dir.path().join("through-proxy.kubeconfig");
    std::fs::write(&path, serde_yaml::to_string(&kubeconfig).unwrap()).unwrap();

    let leader = Running::start_as(
        "cut-off",
        dir.path(),
        &store,
        "default",
        &lease,
        Some(&path),
    );
    wait_holder(&client, &lease, "cut-off", Duration::from_secs(30)).await;
    // The Lease can show it as holder before the answer reaches it: cut it off once it knows
    // it leads (until then it is a standby, which writes nothing).
    let knows = Instant::now();
    while !leader.log().contains("became leader") {
        assert!(
            knows.elapsed() < Duration::from_secs(10),
            "the leader never said it leads:\n{}",
            leader.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    (client, dir, lease, proxy, leader)
}

/// A leader cut off from the API server (a proxy in front of it swallows every byte, as a
/// partitioned network does) stops writing before its Lease could run out and be taken by
/// another replica: it exits, saying why, within the Lease's last renewal plus its duration.
#[tokio::test]
#[ignore = "needs a cluster"]
async fn a_leader_cut_off_from_the_api_server_stops_before_its_lease_runs_out() {
    let (client, _dir, lease, proxy, mut leader) = leader_behind_a_proxy("cut").await;
    proxy.silence();
    let leases: Api<Lease> = Api::namespaced(client.clone(), "default");
    let expires = |l: &Lease| {
        let spec = l.spec.as_ref().unwrap();
        spec.renew_time.as_ref().unwrap().0
            + k8s_openapi::jiff::SignedDuration::from_secs(i64::from(
                spec.lease_duration_seconds.unwrap(),
            ))
    };
    // The last renewal the API server saw bounds when another replica may take over.
    let mut deadline = expires(&leases.get(&lease).await.unwrap());
    let status = loop {
        if let Some(s) = leader.child.try_wait().unwrap() {
            break s;
        }
        if let Ok(l) = leases.get(&lease).await {
            deadline = expires(&l);
        }
        assert!(
            k8s_openapi::jiff::Timestamp::now() < deadline,
            "the cut-off leader still runs after its Lease ran out:\n{}",
            leader.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(!status.success(), "losing the Lease is an error exit");
    assert!(
        leader
            .log()
            .contains("could not renew the leader Lease in time"),
        "{}",
        leader.log()
    );
    let _ = leases.delete(&lease, &Default::default()).await;
}

/// A leader cut off from the API server and asked to stop (SIGTERM) exits within a pod's grace
/// period, without waiting on an API server that does not answer; its Lease runs out on its
/// own.
#[tokio::test]
#[ignore = "needs a cluster"]
async fn a_leader_cut_off_from_the_api_server_stops_promptly_when_asked() {
    let (client, _dir, lease, proxy, mut leader) = leader_behind_a_proxy("cut-term").await;
    proxy.silence();
    let sent = sigterm(&leader.child);
    // The reconciles' grace, the release's bound, and a margin.
    let within = Duration::from_secs(8);
    let status = loop {
        if let Some(s) = leader.child.try_wait().unwrap() {
            break s;
        }
        assert!(
            sent.elapsed() < within,
            "suborg run was still running {within:?} after SIGTERM:\n{}",
            leader.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "{status}:\n{}", leader.log());
    assert!(
        leader
            .log()
            .contains("the API server did not answer the release of the leader Lease"),
        "{}",
        leader.log()
    );
    proxy.restore();
    let leases: Api<Lease> = Api::namespaced(client.clone(), "default");
    let _ = leases.delete(&lease, &Default::default()).await;
}

/// A `--selector` the API server cannot parse stops the controller at once, as a usage error,
/// rather than leaving it up and never ready while every watch is refused.
#[tokio::test]
#[ignore = "needs a cluster"]
async fn a_selector_the_api_server_refuses_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let store = format!("sqlite://{}", dir.path().join("store.db").display());
    let out = Command::new(env!("CARGO_BIN_EXE_suborg"))
        .args([
            "run",
            "--store",
            &store,
            "--metrics-addr",
            "off",
            "--selector",
            "suborg.io/team in (a",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("suborg: invalid --selector \"suborg.io/team in (a\":"),
        "{stderr}"
    );
}
