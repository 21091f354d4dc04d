//! Scale: the controller (`suborg run`, the release binary, as a child process) against the real
//! API server `KUBECONFIG` points at, with thousands of OrgMemberships under one Organization.
//!
//! Run with `cargo bench --bench scale`. Without a cluster it prints one line and succeeds, so CI
//! without one is not failed by it. Side by side in one run it measures:
//!
//! - **raw**: how fast a plain client writes statuses, one after another over one client (300
//!   status patches on objects the controller ignores), and the same patches 32 at a time,
//!   as the controller's reconciles run: what the API server takes at most;
//! - **raw trickle**: the trickle's writes made by a plain client with no controller: as many
//!   creates one after another and, as each returns, that object's finalizer and status
//!   written (32 objects at a time): the ceiling of any controller's trickle;
//! - **startup**: the Organization and `SUBORG_SCALE_N` memberships (default 1,000) exist before
//!   the controller starts; the time from starting it until every object is Ready=True with
//!   `status.observedGeneration == metadata.generation`;
//! - **trickle**: with the controller running, `SUBORG_SCALE_TRICKLE` more (default 200)
//!   created one at a time; the time from the first create until they are all Ready;
//! - **memory**: the controller's resident memory (`VmRSS`) and peak (`VmHWM`) after that;
//! - **idle**: with every object Ready and nothing changing, the controller's CPU time
//!   (user + system, from `/proc`) over `SUBORG_SCALE_IDLE` seconds (default 30), after a
//!   settling pause, as a share of one core; measured after the trickle and after the large
//!   startup;
//! - **large** (only when `SUBORG_SCALE_LARGE` is set, e.g. 10000): the controller stopped,
//!   memberships added up to that total, a fresh controller on the same store timed until all
//!   are Ready, with the time per object beside the 1,000-object startup's, so linearity shows.
//! - **deletion**: at the end, every object the run made deleted at once (one collection delete
//!   per kind) while the controller runs; the time until the last one is gone, each having
//!   waited for its rows to leave the store and its finalizer to be released.
//!
//! `SUBORG_SCALE_LOG` overrides the controller's `--log-level` (default `warn`), e.g. `info` to
//! see each store change in its log (which slows it down a little), or
//! `warn,suborg::controller::sync=debug` for each sync's phases and their times.
//! `SUBORG_SCALE_KEEP=1` keeps the store and the controller's log after a successful run too.
//!
//! Every object carries the label `suborg.io/bench=bench-<8 hex>` (the run id), the controller
//! watches only those (`--selector`), and the run deletes everything it made at the end, failed
//! runs too.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use suborg::api::*;

#[allow(dead_code)]
#[path = "../tests/integration/fixtures.rs"]
mod fixtures;

const LABEL: &str = "suborg.io/bench";
const RAW_OBJECTS: usize = 300;
const CONCURRENCY: usize = 16;

/// How many status patches the parallel raw rate sends at once: as many as the controller
/// reconciles of one kind.
const RAW_CONCURRENCY: usize = 32;
/// The raw trickle's finalizer: written as the controller writes its own, on objects the
/// controller does not watch.
const RAW_FINALIZER: &str = "suborg.io/bench-raw";
/// How often the cleanup looks whether the run's objects are gone.
const POLL: Duration = Duration::from_millis(500);
const READY_DEADLINE: Duration = Duration::from_secs(600);
const CLEANUP_DEADLINE: Duration = Duration::from_secs(300);
const CRD_DEADLINE: Duration = Duration::from_secs(60);
const STOP_DEADLINE: Duration = Duration::from_secs(60);
/// How long the controller is left alone before its idle CPU is measured: longer than the
/// sync's debounce and the Events it sends in the background.
const IDLE_SETTLE: Duration = Duration::from_secs(10);

type Result<T> = std::result::Result<T, String>;

/// The sizes of the run, from the environment.
struct Settings {
    startup: usize,
    trickle: usize,
    large: Option<usize>,
    idle: Duration,
}

impl Settings {
    fn from_env() -> Result<Settings> {
        Ok(Settings {
            startup: env_count("SUBORG_SCALE_N")?.unwrap_or(1000),
            trickle: env_count("SUBORG_SCALE_TRICKLE")?.unwrap_or(200),
            large: env_count("SUBORG_SCALE_LARGE")?,
            idle: Duration::from_secs(env_count("SUBORG_SCALE_IDLE")?.unwrap_or(30) as u64),
        })
    }
}

fn env_count(name: &str) -> Result<Option<usize>> {
    match std::env::var(name) {
        Ok(v) => v
            .trim()
            .parse()
            .map(Some)
            .map_err(|e| format!("{name}={v:?} is not a count: {e}")),
        Err(_) => Ok(None),
    }
}

/// The figures the run printed at the end.
#[derive(Default)]
struct Figures {
    raw: Option<Timed>,
    raw_parallel: Option<Timed>,
    raw_creates: Option<Timed>,
    raw_trickle: Option<Timed>,
    startup: Option<Timed>,
    trickle: Option<Timed>,
    trickle_creates: Option<Duration>,
    memory: Option<Memory>,
    /// Idle CPU, percent of one core, after the trickle and after the large startup.
    idle: Option<f64>,
    large_idle: Option<f64>,
    large: Option<(Timed, usize, Memory)>,
}

/// `objects` handled in `elapsed`.
#[derive(Clone, Copy)]
struct Timed {
    objects: usize,
    elapsed: Duration,
}

impl Timed {
    fn rate(&self) -> f64 {
        self.objects as f64 / self.elapsed.as_secs_f64()
    }

    fn ms_per_object(&self) -> f64 {
        self.elapsed.as_secs_f64() * 1000.0 / self.objects as f64
    }
}

/// The raw rates of one run.
struct Raw {
    creates: Timed,
    patches: Timed,
    parallel: Timed,
}

/// Resident memory of the controller, in KiB.
#[derive(Clone, Copy)]
struct Memory {
    rss_kib: u64,
    hwm_kib: u64,
}

/// The run: its id, its namespace, its temporary directory (store and controller log) and the
/// controller process, when one runs.
struct Bench {
    client: Client,
    id: String,
    dir: tempfile::TempDir,
    log: PathBuf,
    controller: Option<Child>,
    /// Memberships of the run created so far (names `m-0` … `m-<created-1>`).
    created: usize,
}

#[tokio::main]
async fn main() -> ExitCode {
    let settings = match Settings::from_env() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("scale: {e}");
            return ExitCode::from(2);
        }
    };
    let Some((client, version)) = connect().await else {
        println!("no Kubernetes API server at KUBECONFIG: skipped");
        return ExitCode::SUCCESS;
    };
    let started = Instant::now();
    let mut bench = match Bench::new(client).await {
        Ok(b) => b,
        Err(e) => {
            eprintln!("scale: setting up failed: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!(
        "scale: run {} in namespace {}, controller log {}",
        bench.id,
        bench.id,
        bench.log.display()
    );
    let mut figures = Figures::default();
    let outcome = bench.run(&settings, &mut figures).await;
    if let Err(e) = &outcome {
        eprintln!("scale: {e}");
    }
    let cleaned = bench.clean_up().await;
    if let Err(e) = &cleaned {
        eprintln!("scale: cleaning up failed: {e}");
    }
    print_table(&figures, &version);
    let log = summarize_log(&bench.log);
    println!("controller log: {log}");
    println!("wall time: {:.1} s", started.elapsed().as_secs_f64());
    let keep = std::env::var_os("SUBORG_SCALE_KEEP").is_some();
    if keep || outcome.is_err() || cleaned.is_err() || !log.is_clean() {
        let kept = bench.dir.keep();
        println!(
            "kept {} (the store and controller.log) for a look",
            kept.display()
        );
    }
    if outcome.is_ok() && cleaned.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// A client and the API server's version, or None when no API server answers within 5 s.
async fn connect() -> Option<(Client, String)> {
    tokio::time::timeout(Duration::from_secs(5), async {
        let client = Client::try_default().await.ok()?;
        let info = client.apiserver_version().await.ok()?;
        Some((client, info.git_version))
    })
    .await
    .ok()
    .flatten()
}

impl Bench {
    /// Installs the CRDs and creates the run's namespace, delegated to its organization.
    async fn new(client: Client) -> Result<Bench> {
        install_crds(&client).await?;
        let id = format!("bench-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
        let dir =
            tempfile::tempdir().map_err(|e| format!("creating a temporary directory: {e}"))?;
        let log = dir.path().join("controller.log");
        let bench = Bench {
            client,
            id,
            dir,
            log,
            controller: None,
            created: 0,
        };
        let namespace = Namespace {
            metadata: ObjectMeta {
                name: Some(bench.id.clone()),
                labels: Some(BTreeMap::from([
                    ("suborg.io/organization".to_owned(), bench.org_name()),
                    (LABEL.to_owned(), bench.id.clone()),
                ])),
                ..Default::default()
            },
            ..Default::default()
        };
        Api::<Namespace>::all(bench.client.clone())
            .create(&PostParams::default(), &namespace)
            .await
            .map_err(|e| format!("creating namespace {}: {e}", bench.id))?;
        Ok(bench)
    }

    async fn run(&mut self, settings: &Settings, figures: &mut Figures) -> Result<()> {
        let raw = self.raw_rate().await?;
        figures.raw = Some(raw.patches);
        figures.raw_parallel = Some(raw.parallel);
        figures.raw_creates = Some(raw.creates);
        figures.raw_trickle = Some(self.raw_trickle(settings.trickle).await?);

        // Startup: everything exists before the controller starts.
        self.create_organization().await?;
        self.create_memberships(settings.startup).await?;
        let started = Instant::now();
        self.start()?;
        self.wait_all_ready().await?;
        figures.startup = Some(Timed {
            objects: self.objects(),
            elapsed: started.elapsed(),
        });

        // Trickle: one create after the other, the controller running.
        let (elapsed, creates) = self.trickle(settings.trickle).await?;
        figures.trickle = Some(Timed {
            objects: settings.trickle,
            elapsed,
        });
        figures.trickle_creates = Some(creates);
        figures.memory = Some(self.memory()?);
        figures.idle = Some(self.idle_cpu(settings.idle).await?);

        if let Some(total) = settings.large {
            if total <= self.created {
                println!(
                    "scale: SUBORG_SCALE_LARGE={total} is not more than the {} memberships there are: large phase skipped",
                    self.created
                );
            } else {
                self.stop().await?;
                self.create_memberships(total - self.created).await?;
                let started = Instant::now();
                self.start()?;
                self.wait_all_ready().await?;
                let timed = Timed {
                    objects: self.objects(),
                    elapsed: started.elapsed(),
                };
                figures.large = Some((timed, total, self.memory()?));
                figures.large_idle = Some(self.idle_cpu(settings.idle).await?);
            }
        }
        Ok(())
    }

    fn org_name(&self) -> String {
        format!("{}-org", self.id)
    }

    /// Objects of the run the controller manages: the Organization and the memberships.
    fn objects(&self) -> usize {
        self.created + 1
    }

    fn selector(&self) -> ListParams {
        ListParams::default().labels(&format!("{LABEL}={}", self.id))
    }

    fn memberships(&self) -> Api<OrgMembership> {
        Api::namespaced(self.client.clone(), &self.id)
    }

    fn organizations(&self) -> Api<Organization> {
        Api::all(self.client.clone())
    }

    /// A membership of user `<email_prefix><i>@bench.example` in the run's organization.
    fn membership(&self, name: String, email: String, label: &str) -> OrgMembership {
        let mut m = fixtures::user_in(
            &self.id,
            &name,
            OrganizationKind::Organization,
            &self.org_name(),
            &email,
            vec![fixtures::role("member")],
        );
        m.labels_mut().insert(LABEL.into(), label.into());
        // As `kubectl apply` leaves it: a copy of the object in an annotation, which the
        // controller's caches leave out.
        let applied = serde_json::to_string(&m).unwrap_or_default();
        m.annotations_mut().insert(
            "kubectl.kubernetes.io/last-applied-configuration".into(),
            applied,
        );
        m
    }

    /// The run's `i`th membership: `m-<i>`, user `u<i>@bench.example`.
    fn member(&self, i: usize) -> OrgMembership {
        self.membership(format!("m-{i}"), format!("u{i}@bench.example"), &self.id)
    }

    async fn create_organization(&self) -> Result<()> {
        let mut org = fixtures::org(&self.org_name());
        org.labels_mut().insert(LABEL.into(), self.id.clone());
        self.organizations()
            .create(&PostParams::default(), &org)
            .await
            .map_err(|e| format!("creating Organization {}: {e}", self.org_name()))?;
        Ok(())
    }

    /// Creates `count` more memberships of the run, `CONCURRENCY` at a time.
    async fn create_memberships(&mut self, count: usize) -> Result<()> {
        let objects: Vec<OrgMembership> = (self.created..self.created + count)
            .map(|i| self.member(i))
            .collect();
        create_all(&self.memberships(), objects).await?;
        self.created += count;
        Ok(())
    }

    /// Raw rates, on memberships the controller does not watch (another label value): their
    /// creates one after another over one client (the trickle's creates with no controller
    /// running), then sequential status patches, then the same patches 32 at a time.
    async fn raw_rate(&self) -> Result<Raw> {
        let label = format!("{}-raw", self.id);
        let api = self.memberships();
        let objects: Vec<OrgMembership> = (0..RAW_OBJECTS)
            .map(|i| self.membership(format!("raw-{i}"), format!("raw{i}@bench.example"), &label))
            .collect();
        let names: Vec<String> = objects.iter().map(|o| o.name_any()).collect();
        let started = Instant::now();
        for o in objects {
            api.create(&PostParams::default(), &o)
                .await
                .map_err(|e| format!("creating OrgMembership {}: {e}", o.name_any()))?;
        }
        let creates = started.elapsed();
        let patch = |name: &String, message: &str| {
            let status = ready_status(message);
            let api = api.clone();
            let name = name.clone();
            async move {
                api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
                    .await
                    .map_err(|e| format!("patching the status of OrgMembership {name}: {e}"))
            }
        };
        let started = Instant::now();
        for name in &names {
            patch(name, "raw").await?;
        }
        let elapsed = started.elapsed();
        // The same again, as many at once as the controller's reconciles run: what the API
        // server can take at most, the ceiling of any controller making two writes an object.
        let started = Instant::now();
        futures::stream::iter(names.iter().map(|n| patch(n, "raw, in parallel")))
            .buffer_unordered(RAW_CONCURRENCY)
            .try_collect::<Vec<_>>()
            .await?;
        let parallel = started.elapsed();
        api.delete_collection(
            &DeleteParams::default(),
            &ListParams::default().labels(&format!("{LABEL}={label}")),
        )
        .await
        .map_err(|e| format!("deleting the raw memberships: {e}"))?;
        let timed = |elapsed| Timed {
            objects: RAW_OBJECTS,
            elapsed,
        };
        Ok(Raw {
            creates: timed(creates),
            patches: timed(elapsed),
            parallel: timed(parallel),
        })
    }

    /// What a controller that cost nothing would reach in the trickle: `count` memberships the
    /// controller does not watch created one after another over one client while, as each
    /// create returns, a plain client writes the two writes the controller makes for it (its
    /// finalizer, then its status), up to `RAW_CONCURRENCY` objects at once. The time from the
    /// first create until the last status is written: the trickle's ceiling on this API server,
    /// which spends its CPU on three writes an object.
    async fn raw_trickle(&self, count: usize) -> Result<Timed> {
        let label = format!("{}-rawtrickle", self.id);
        let api = self.memberships();
        let objects: Vec<OrgMembership> = (0..count)
            .map(|i| {
                self.membership(
                    format!("rawt-{i}"),
                    format!("rawt{i}@bench.example"),
                    &label,
                )
            })
            .collect();
        let (created, names) = futures::channel::mpsc::unbounded::<String>();
        let started = Instant::now();
        let creates = async {
            for o in objects {
                api.create(&PostParams::default(), &o)
                    .await
                    .map_err(|e| format!("creating OrgMembership {}: {e}", o.name_any()))?;
                created
                    .unbounded_send(o.name_any())
                    .map_err(|e| format!("handing over a created name: {e}"))?;
            }
            drop(created);
            Ok::<_, String>(())
        };
        let finalizer = serde_json::json!({"metadata": {"finalizers": [RAW_FINALIZER]}});
        let writes = names
            .map(|name| {
                let api = api.clone();
                let status = ready_status("raw trickle");
                let finalizer = &finalizer;
                async move {
                    let fail = |e: kube::Error| format!("writing OrgMembership {name}: {e}");
                    api.patch(&name, &PatchParams::default(), &Patch::Merge(finalizer))
                        .await
                        .map_err(fail)?;
                    api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
                        .await
                        .map_err(fail)?;
                    Ok::<_, String>(())
                }
            })
            .buffer_unordered(RAW_CONCURRENCY)
            .try_collect::<Vec<()>>();
        let outcome = futures::try_join!(creates, writes);
        let elapsed = started.elapsed();
        // Released and deleted whether the writes succeeded or not, so the namespace can go.
        let selector = ListParams::default().labels(&format!("{LABEL}={label}"));
        let unfinalize = Patch::Merge(serde_json::json!({"metadata": {"finalizers": null}}));
        let fail = |e: kube::Error| format!("deleting the raw trickle's memberships: {e}");
        for m in api.list_metadata(&selector).await.map_err(fail)? {
            api.patch(&m.name_any(), &PatchParams::default(), &unfinalize)
                .await
                .map_err(fail)?;
        }
        api.delete_collection(&DeleteParams::default(), &selector)
            .await
            .map_err(fail)?;
        outcome?;
        Ok(Timed {
            objects: count,
            elapsed,
        })
    }

    /// Creates `count` memberships one after another; returns the time from the first create
    /// until all of the run's objects are Ready, and the time the creates took.
    async fn trickle(&mut self, count: usize) -> Result<(Duration, Duration)> {
        let api = self.memberships();
        let started = Instant::now();
        for _ in 0..count {
            let m = self.member(self.created);
            api.create(&PostParams::default(), &m)
                .await
                .map_err(|e| format!("creating OrgMembership {}: {e}", m.name_any()))?;
            self.created += 1;
        }
        let creates = started.elapsed();
        self.wait_all_ready().await?;
        Ok((started.elapsed(), creates))
    }

    /// Watches the run's objects until every one is Ready at its generation; fails after 10
    /// minutes, saying how many are. A watch, not a LIST polled over and over: on a 2-core
    /// machine, listing a thousand objects several times a second takes API server CPU from the
    /// controller being measured.
    async fn wait_all_ready(&mut self) -> Result<()> {
        use kube::runtime::{WatchStreamExt, watcher};
        let expected = self.objects();
        let wc = watcher::Config::default().labels(&format!("{LABEL}={}", self.id));
        let members = watcher(self.memberships(), wc.clone())
            .touched_objects()
            .map_ok(|m: OrgMembership| {
                let ready = is_ready(m.status.as_ref().map(|s| &s.common), m.metadata.generation);
                (format!("OrgMembership/{}", m.name_any()), ready)
            });
        let orgs = watcher(self.organizations(), wc)
            .touched_objects()
            .map_ok(|o: Organization| {
                let ready = is_ready(o.status.as_ref().map(|s| &s.common), o.metadata.generation);
                (format!("Organization/{}", o.name_any()), ready)
            });
        let mut events = futures::stream::select(members.boxed(), orgs.boxed());
        let mut seen: BTreeMap<String, bool> = BTreeMap::new();
        let deadline = tokio::time::Instant::now() + READY_DEADLINE;
        let mut alive = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                event = events.next() => match event {
                    Some(Ok((key, ready))) => {
                        seen.insert(key, ready);
                        let ready = seen.values().filter(|r| **r).count();
                        if seen.len() == expected && ready == expected {
                            return Ok(());
                        }
                    }
                    Some(Err(e)) => return Err(format!("watching the run's objects: {e}")),
                    None => return Err("the watch of the run's objects ended".into()),
                },
                _ = alive.tick() => self.check_controller()?,
                () = tokio::time::sleep_until(deadline) => {
                    let ready = seen.values().filter(|r| **r).count();
                    return Err(format!(
                        "{ready} of {expected} objects Ready ({} seen) after {} s",
                        seen.len(),
                        READY_DEADLINE.as_secs()
                    ));
                }
            }
        }
    }

    /// How many of the run's objects are still there.
    async fn count_left(&self) -> Result<usize> {
        let selector = self.selector();
        let members = self
            .memberships()
            .list_metadata(&selector)
            .await
            .map_err(|e| format!("listing the memberships: {e}"))?;
        let orgs = self
            .organizations()
            .list_metadata(&selector)
            .await
            .map_err(|e| format!("listing the organizations: {e}"))?;
        Ok(members.items.len() + orgs.items.len())
    }

    /// Starts the release binary's controller on the run's store, watching the run's objects.
    fn start(&mut self) -> Result<()> {
        let log = File::options()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(|e| format!("opening {}: {e}", self.log.display()))?;
        let stderr = log
            .try_clone()
            .map_err(|e| format!("opening {}: {e}", self.log.display()))?;
        let store = format!("sqlite://{}", self.dir.path().join("store.db").display());
        let selector = format!("{LABEL}={}", self.id);
        let log_level = std::env::var("SUBORG_SCALE_LOG").unwrap_or_else(|_| "warn".into());
        let child = Command::new(env!("CARGO_BIN_EXE_suborg"))
            .args(["run", "--store", &store, "--metrics-addr", "off"])
            .args(["--selector", &selector, "--log-format", "text"])
            .args(["--log-level", &log_level])
            .env("NO_COLOR", "1")
            // As the image runs it (see the Dockerfile).
            .env("MIMALLOC_ARENA_EAGER_COMMIT", "0")
            .env("MIMALLOC_PURGE_DELAY", "0")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(stderr)
            .spawn()
            .map_err(|e| format!("starting {}: {e}", env!("CARGO_BIN_EXE_suborg")))?;
        self.controller = Some(child);
        Ok(())
    }

    /// Fails when the controller has exited on its own.
    fn check_controller(&mut self) -> Result<()> {
        let Some(child) = self.controller.as_mut() else {
            return Ok(());
        };
        match child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => {
                self.controller = None;
                Err(format!("the controller exited: {status}"))
            }
            Err(e) => Err(format!("checking on the controller: {e}")),
        }
    }

    /// SIGTERM, then waits for the controller to exit (SIGKILL after a minute).
    async fn stop(&mut self) -> Result<()> {
        let Some(mut child) = self.controller.take() else {
            return Ok(());
        };
        let pid = child.id().to_string();
        let sent = Command::new("kill").arg("-TERM").arg(&pid).status();
        if !sent.is_ok_and(|s| s.success()) {
            let _ = child.kill();
        }
        let deadline = Instant::now() + STOP_DEADLINE;
        loop {
            match child.try_wait() {
                Ok(Some(status)) if status.success() => return Ok(()),
                Ok(Some(status)) => return Err(format!("the controller exited with {status}")),
                Ok(None) if Instant::now() >= deadline => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(format!(
                        "the controller did not stop within {} s of SIGTERM: killed",
                        STOP_DEADLINE.as_secs()
                    ));
                }
                Ok(None) => tokio::time::sleep(Duration::from_millis(100)).await,
                Err(e) => return Err(format!("waiting for the controller: {e}")),
            }
        }
    }

    /// The controller's CPU time so far, user and system.
    fn cpu_time(&self) -> Result<Duration> {
        let child = self
            .controller
            .as_ref()
            .ok_or("no controller runs to measure")?;
        let path = format!("/proc/{}/stat", child.id());
        let stat = std::fs::read_to_string(&path).map_err(|e| format!("reading {path}: {e}"))?;
        // Fields after the command name (which may hold spaces): state is the first, utime
        // the 12th and stime the 13th (fields 14 and 15 of proc(5)).
        let rest = stat
            .rsplit_once(") ")
            .map(|(_, r)| r)
            .ok_or_else(|| format!("{path} is not a stat line"))?;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ticks = |i: usize| -> Result<u64> {
            fields
                .get(i)
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| format!("no field {i} in {path}"))
        };
        let per_second: u64 = Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(100);
        let total = ticks(11)? + ticks(12)?;
        Ok(Duration::from_secs_f64(total as f64 / per_second as f64))
    }

    /// The controller's CPU use, percent of one core, over `over` with nothing changing.
    async fn idle_cpu(&mut self, over: Duration) -> Result<f64> {
        tokio::time::sleep(IDLE_SETTLE).await;
        let before = self.cpu_time()?;
        tokio::time::sleep(over).await;
        self.check_controller()?;
        let used = self.cpu_time()?.saturating_sub(before);
        Ok(used.as_secs_f64() * 100.0 / over.as_secs_f64())
    }

    /// The controller's resident and peak resident memory.
    fn memory(&self) -> Result<Memory> {
        let child = self
            .controller
            .as_ref()
            .ok_or("no controller runs to measure")?;
        let path = format!("/proc/{}/status", child.id());
        let status = std::fs::read_to_string(&path).map_err(|e| format!("reading {path}: {e}"))?;
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
                .ok_or_else(|| format!("no {name} in {path}"))
        };
        Ok(Memory {
            rss_kib: field("VmRSS:")?,
            hwm_kib: field("VmHWM:")?,
        })
    }

    /// Deletes the run's objects while a controller runs (it releases their finalizers), waits
    /// until they are gone (stripping the finalizers after 5 minutes), stops the controller and
    /// deletes the namespace.
    async fn clean_up(&mut self) -> Result<()> {
        let mut problems = Vec::new();
        if (self.check_controller().is_err() || self.controller.is_none())
            && let Err(e) = self.start()
        {
            problems.push(e);
        }
        let dp = DeleteParams::default();
        let raw = ListParams::default().labels(&format!("{LABEL}={}-raw", self.id));
        let marked = self.count_left().await.unwrap_or(0);
        let started = Instant::now();
        let members = self.memberships();
        let orgs = self.organizations();
        for (what, result) in [
            (
                "raw memberships",
                members.delete_collection(&dp, &raw).await,
            ),
            (
                "memberships",
                members.delete_collection(&dp, &self.selector()).await,
            ),
        ] {
            if let Err(e) = result {
                problems.push(format!("deleting the {what}: {e}"));
            }
        }
        if let Err(e) = orgs.delete_collection(&dp, &self.selector()).await {
            problems.push(format!("deleting the organization: {e}"));
        }
        let deadline = Instant::now() + CLEANUP_DEADLINE;
        loop {
            match self.count_left().await {
                Ok(0) => {
                    // Every object held suborg's finalizer: how fast the controller lets a
                    // deleted tree go, from the deletion request to the last object gone.
                    let secs = started.elapsed().as_secs_f64();
                    println!(
                        "deletion: {marked} objects gone {secs:.1} s after their deletion ({:.1}/s)",
                        marked as f64 / secs
                    );
                    break;
                }
                Ok(left) if Instant::now() >= deadline => {
                    println!(
                        "scale: {left} objects still there {} s after their deletion: stripping their finalizers",
                        CLEANUP_DEADLINE.as_secs()
                    );
                    if let Err(e) = self.strip_finalizers().await {
                        problems.push(e);
                    }
                    break;
                }
                Ok(_) => tokio::time::sleep(POLL).await,
                Err(e) => {
                    problems.push(e);
                    break;
                }
            }
        }
        if let Err(e) = self.stop().await {
            problems.push(e);
        }
        if let Err(e) = Api::<Namespace>::all(self.client.clone())
            .delete(&self.id, &dp)
            .await
        {
            problems.push(format!("deleting namespace {}: {e}", self.id));
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("; "))
        }
    }

    async fn strip_finalizers(&self) -> Result<()> {
        let patch = Patch::Merge(serde_json::json!({"metadata": {"finalizers": null}}));
        let pp = PatchParams::default();
        let members = self.memberships();
        let orgs = self.organizations();
        let fail = |e: kube::Error| format!("stripping finalizers: {e}");
        for m in members.list(&self.selector()).await.map_err(fail)? {
            members
                .patch(&m.name_any(), &pp, &patch)
                .await
                .map_err(fail)?;
        }
        for o in orgs.list(&self.selector()).await.map_err(fail)? {
            orgs.patch(&o.name_any(), &pp, &patch).await.map_err(fail)?;
        }
        Ok(())
    }
}

/// A status patch saying Ready at generation 1, as the raw rates write it.
fn ready_status(message: &str) -> serde_json::Value {
    serde_json::json!({"status": {
        "observedGeneration": 1,
        "conditions": [{
            "type": CONDITION_READY,
            "status": "True",
            "reason": "Synced",
            "message": message,
            "lastTransitionTime": format!("{:.0}", Timestamp::now()),
        }],
    }})
}

/// Ready=True, computed from the object's current generation.
fn is_ready(status: Option<&CommonStatus>, generation: Option<i64>) -> bool {
    status.is_some_and(|s| {
        s.observed_generation == generation
            && s.conditions
                .iter()
                .any(|c| c.type_ == CONDITION_READY && c.status == "True")
    })
}

/// Creates the objects, `CONCURRENCY` at a time.
async fn create_all(api: &Api<OrgMembership>, objects: Vec<OrgMembership>) -> Result<()> {
    futures::stream::iter(objects)
        .map(|o| async move {
            api.create(&PostParams::default(), &o)
                .await
                .map(|_| ())
                .map_err(|e| format!("creating OrgMembership {}: {e}", o.name_any()))
        })
        .buffer_unordered(CONCURRENCY)
        .try_collect()
        .await
}

/// Applies suborg's CRDs server-side and waits until each is Established.
async fn install_crds(client: &Client) -> Result<()> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in suborg::api::crds() {
        let name = crd.name_any();
        api.patch(
            &name,
            &PatchParams::apply("suborg-bench").force(),
            &Patch::Apply(&crd),
        )
        .await
        .map_err(|e| format!("installing CRD {name}: {e}"))?;
        let deadline = Instant::now() + CRD_DEADLINE;
        loop {
            let established = api
                .get(&name)
                .await
                .map_err(|e| format!("reading CRD {name}: {e}"))?
                .status
                .and_then(|s| s.conditions)
                .unwrap_or_default()
                .iter()
                .any(|c| c.type_ == "Established" && c.status == "True");
            if established {
                break;
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "CRD {name} not Established after {} s",
                    CRD_DEADLINE.as_secs()
                ));
            }
            tokio::time::sleep(POLL).await;
        }
    }
    Ok(())
}

fn print_table(f: &Figures, version: &str) {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!();
    println!("machine: {cpus} CPUs (nproc), kube-apiserver {version}");
    println!(
        "{:<44} {:>8} {:>9} {:>10} {:>7}",
        "phase", "objects", "seconds", "objects/s", "vs raw"
    );
    let raw = f.raw.map(|r| r.rate());
    let row = |name: &str, t: Option<Timed>| {
        if let Some(t) = t {
            let ratio = raw.map_or("-".to_owned(), |r| format!("{:.2}", t.rate() / r));
            println!(
                "{:<44} {:>8} {:>9.2} {:>10.1} {:>7}",
                name,
                t.objects,
                t.elapsed.as_secs_f64(),
                t.rate(),
                ratio
            );
        } else {
            println!("{name:<44} {:>8}", "not run");
        }
    };
    row("raw: status patches, sequential, one client", f.raw);
    row("raw: the same, 32 at a time", f.raw_parallel);
    row("raw: creates, sequential, one client", f.raw_creates);
    row("raw: trickle's writes, no controller", f.raw_trickle);
    row("startup: controller start to all Ready", f.startup);
    row("trickle: first create to all Ready", f.trickle);
    if let Some((t, _, _)) = f.large {
        row("large: controller start to all Ready", Some(t));
    }
    if let (Some(c), Some(t)) = (f.trickle_creates, f.trickle) {
        println!(
            "trickle: the sequential creates alone took {:.2} s; the last was Ready {:.2} s after it was created",
            c.as_secs_f64(),
            (t.elapsed.saturating_sub(c)).as_secs_f64()
        );
    }
    // What the API server allows at most: every object costs the controller two writes (its
    // finalizer, its status), at best at the parallel rate; a trickled object costs its create
    // too, and cannot be Ready sooner than the creates alone would take.
    if let (Some(raw), Some(p)) = (f.raw, f.raw_parallel) {
        let ceiling = p.rate() / 2.0;
        let share = |t: Option<Timed>| {
            t.map_or("-".to_owned(), |t| {
                format!("{:.0}%", 100.0 * t.rate() / ceiling)
            })
        };
        println!(
            "ceiling: two writes an object at the parallel rate, {ceiling:.1} objects/s ({:.2}x raw); startup reached {} of it",
            ceiling / raw.rate(),
            share(f.startup)
        );
    }
    if let (Some(c), Some(t), Some(raw)) = (f.raw_creates, f.trickle, f.raw) {
        println!(
            "trickle: {:.2}x the rate of sequential creates with no controller ({:.2}x raw)",
            t.rate() / c.rate(),
            c.rate() / raw.rate()
        );
    }
    if let (Some(w), Some(t), Some(raw)) = (f.raw_trickle, f.trickle, f.raw) {
        println!(
            "ceiling of the trickle: a plain client making its three writes an object reached {:.2}x raw; the controller's trickle reached {:.0}% of it",
            w.rate() / raw.rate(),
            100.0 * t.rate() / w.rate()
        );
    }
    let mib = |kib: u64| kib as f64 / 1024.0;
    if let Some(m) = f.memory {
        println!(
            "memory after trickle: VmRSS {:.1} MiB, VmHWM {:.1} MiB",
            mib(m.rss_kib),
            mib(m.hwm_kib)
        );
    }
    if let Some(p) = f.idle {
        println!("idle after trickle: {p:.2}% of one core");
    }
    if let Some(s) = f.startup {
        println!(
            "per object: startup {:.2} ms ({} objects)",
            s.ms_per_object(),
            s.objects
        );
    }
    if let Some((t, total, m)) = f.large {
        println!(
            "per object: large startup {:.2} ms ({} objects, {total} memberships)",
            t.ms_per_object(),
            t.objects
        );
        println!(
            "memory after large startup: VmRSS {:.1} MiB, VmHWM {:.1} MiB",
            mib(m.rss_kib),
            mib(m.hwm_kib)
        );
    }
    if let Some(p) = f.large_idle {
        println!("idle after large startup: {p:.2}% of one core");
    }
}

/// Lines of the controller's log, and how many are warnings or errors.
struct LogSummary {
    lines: usize,
    warnings: usize,
    errors: usize,
}

impl LogSummary {
    fn is_clean(&self) -> bool {
        self.warnings == 0 && self.errors == 0
    }
}

impl std::fmt::Display for LogSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} lines, {} WARN, {} ERROR",
            self.lines, self.warnings, self.errors
        )
    }
}

fn summarize_log(path: &Path) -> LogSummary {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    LogSummary {
        lines: text.lines().count(),
        warnings: text.lines().filter(|l| l.contains(" WARN ")).count(),
        errors: text.lines().filter(|l| l.contains(" ERROR ")).count(),
    }
}
