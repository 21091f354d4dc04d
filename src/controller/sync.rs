//! Dereference → rules → store: one sync of the whole tree.
//!
//! The rules are about the tree, not one object (a slug is unique under its root, a sub-org
//! member must be a root member, removing a root member revokes their sub-org access in the same
//! transaction), so one sync task ([`Syncer::run_task`]) owns the tree: a snapshot of every
//! watched object from the caches, [`crate::domain::check`] (the call `suborg validate` makes),
//! and one store plan applied in one transaction with pruning. It wakes at each watch event and
//! publishes each result; reconcilers read the latest ([`Syncer::current`]) and write only
//! their own finalizer and status. Syncs are coalesced: when no object's spec,
//! deletion state or namespace labels changed since the last one, no temporary role changed
//! state and the resync period has not passed, the last result is reused, so a burst of
//! reconciles costs one store transaction. Whether anything changed is read from the
//! fingerprint the watch feeds keep event by event ([`super::prints`]): a reconcile that reuses
//! the last result costs the same on a tree of ten objects or of a hundred thousand.
//!
//! What a sync that runs costs: the snapshot and the rules are still over the whole tree; the
//! store is read where it changed. Each sync carries over what the last one wrote and the index
//! it read, so the store plan reads and plans only the memberships that changed
//! ([`SqlStore::apply_after`]) and the index is read again only for the rows the plan wrote
//! ([`SqlStore::index_after`]). The periodic resync, a sync after a failure and a sync after
//! rows went around a write (another writer) read and plan everything, which corrects drift.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::jiff::Timestamp;
use kube::runtime::events::{Event, EventType};

pub use super::caches::{Caches, Readiness, ReadyMark};
use super::caches::{Snapshot, each_object, generations, remove};
use super::metrics::Metrics;
pub use super::scope::Scope;
use crate::domain::model::{self, ObjectSet};
use crate::domain::problem::{ObjectKey, Problem};
use crate::domain::temporary;
use crate::rows::desired_from;
use crate::store::{
    Action, ApplyOptions, Desired, ObjectConflict, Plan, SqlStore, Store, StoreError, StoreIndex,
};

/// A store-wide failure: every object reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// Condition reason and error category, e.g. `StoreUnavailable`.
    pub reason: &'static str,
    /// What happened, without secrets.
    pub message: String,
}

/// Whether a condition reason is one a failure of the whole sync gives every object
/// ([`SyncResult::failed`]) and nothing else does.
pub fn is_store_wide(reason: &str) -> bool {
    matches!(
        reason,
        "StoreUnavailable" | "StoreSchemaTooNew" | "StoreClaimed" | "WatchFailed"
    )
}

/// What one sync found and did.
#[derive(Debug, Clone, Default)]
pub struct SyncResult {
    /// Problems the rules found, by object.
    pub problems: HashMap<ObjectKey, Vec<Problem>>,
    /// Set when the store could not be written: nothing was applied.
    pub failure: Option<Failure>,
    /// Objects whose rows could not be written, by uid, with why.
    pub conflicts: HashMap<String, String>,
    /// Organizations being deleted that stay in the store while sub-organizations remain, by
    /// name, with the names of those sub-organizations.
    pub held: HashMap<String, Vec<String>>,
    /// Where each object's rows are.
    pub index: StoreIndex,
    /// The next moment a temporary role starts or ends: the sync is stale from then on.
    pub next_change: Option<Timestamp>,
    /// The same, for each object with a temporary role still to start or end: when to look at
    /// that object again.
    pub next_changes: HashMap<ObjectKey, Timestamp>,
    /// For a failure, or objects left out for conflicts: how soon the sync is tried again
    /// (5 s, doubling to 30 s, jittered), whether or not anything changed.
    pub retry: Option<Duration>,
    /// Objects held back by another object's problem, with what they wait for.
    pub waiting: HashMap<ObjectKey, String>,
    /// Refused organizations, groups, identities, resources and projects, by uid: whatever
    /// rows they have stay in the store as last written.
    pub kept: HashSet<String>,
    /// The generation of each object the sync saw, by uid: a reconcile of an object at that
    /// generation may use this result although other objects changed since
    /// ([`Syncer::current_for`]).
    pub seen: HashMap<String, i64>,
}

impl SyncResult {
    /// A result in which every object reports `failure`.
    pub fn failed(reason: &'static str, message: String) -> Self {
        Self {
            failure: Some(Failure { reason, message }),
            ..Self::default()
        }
    }
}

/// For each membership and project membership with a temporary role still to start or end,
/// the next moment one does.
fn next_changes(set: &ObjectSet, now: Timestamp) -> HashMap<ObjectKey, Timestamp> {
    let next = |meta: &kube::api::ObjectMeta, roles: &[crate::api::RoleBinding]| {
        let granted_at = temporary::granted_at(meta, now);
        roles
            .iter()
            .filter_map(|r| temporary::state(r, granted_at, now).ok()?.next_change())
            .filter(|t| *t > now)
            .min()
    };
    let memberships = set
        .memberships
        .iter()
        .filter_map(|m| Some((model::membership_key(m), next(&m.metadata, &m.spec.roles)?)));
    let project_memberships = set.project_memberships.iter().filter_map(|m| {
        Some((
            model::project_membership_key(m),
            next(&m.metadata, &m.spec.roles)?,
        ))
    });
    memberships.chain(project_memberships).collect()
}

/// A failure of the whole sync, with the objects' rule errors and what the objects held back
/// by them wait for, which need no store: an object the rules refuse, or one that waits for
/// it, says why, not only that the store failed.
fn failed_with_rules(
    reason: &'static str,
    message: String,
    set: &ObjectSet,
    now: Timestamp,
) -> SyncResult {
    let mut result = SyncResult::failed(reason, message);
    let outcome = crate::domain::check(set, now);
    result.waiting = crate::domain::waiting::waiting(set, &outcome);
    for p in outcome.problems {
        if p.is_error()
            && let Some(key) = p.object.clone()
        {
            result.problems.entry(key).or_default().push(p);
        }
    }
    result
}

pub use crate::store::source_object;

#[derive(Default)]
struct State {
    /// Failed syncs in a row.
    failures: u32,
    /// Syncs in a row that left objects out for conflicts.
    conflicted: u32,
    fingerprint: Option<u64>,
    result: Option<Arc<SyncResult>>,
    synced_at: Option<Instant>,
    written: Written,
}

/// What the last sync wrote to the store.
#[derive(Default)]
struct Written {
    /// The desired state, when that sync succeeded: the next tells drift by it, and compares
    /// its memberships with it unless `full_next`.
    desired: Option<Desired>,
    /// Rows were seen going around that write (another writer): the next sync plans and
    /// reads the store whole.
    full_next: bool,
}

/// What a sync carries over from the last one: the index, and the desired state it wrote.
struct Carried<'a> {
    index: &'a StoreIndex,
    written: &'a Desired,
}

/// How many store-change Events may go out at once, and how many a second after that: a first
/// sync of a large tree changes every row, and a burst of arrivals or deletions one row each;
/// an Event per row would take the API server's time from the statuses. The rest are logged.
const EVENT_BURST: f64 = 200.0;
const EVENTS_PER_SECOND: f64 = 5.0;

/// A token bucket for store-change Events.
struct EventBudget {
    tokens: f64,
    at: Instant,
}

impl EventBudget {
    fn new() -> Self {
        Self {
            tokens: EVENT_BURST,
            at: Instant::now(),
        }
    }

    /// How many of `wanted` Events may go out now.
    fn take(&mut self, wanted: usize) -> usize {
        let now = Instant::now();
        self.tokens = (self.tokens + now.duration_since(self.at).as_secs_f64() * EVENTS_PER_SECOND)
            .min(EVENT_BURST);
        self.at = now;
        let granted = (wanted as f64).min(self.tokens.floor());
        self.tokens -= granted;
        granted as usize
    }
}

/// The Event for the rows of one object that a sync changed alike.
struct RowsEvent {
    type_: EventType,
    reason: &'static str,
    verb: &'static str,
    reference: k8s_openapi::api::core::v1::ObjectReference,
    rows: Vec<String>,
}

/// The longest note the API server takes on an Event, in bytes.
const EVENT_NOTE_MAX: usize = 1024;

/// `note` cut to what an Event holds, on a character boundary, with an ellipsis when cut.
fn event_note(note: &str) -> String {
    if note.len() <= EVENT_NOTE_MAX {
        return note.to_owned();
    }
    let mut end = EVENT_NOTE_MAX - '…'.len_utf8();
    while !note.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &note[..end])
}

/// A result as the sync task publishes it.
struct Published {
    /// Every watch event before this many is covered by the result.
    events: u64,
    result: Arc<SyncResult>,
    /// When the sync that made the result ran.
    at: Instant,
}

/// The longest the sync task sleeps without a watch event: a safety net under the deadline it
/// computes (the next temporary role change, the resync, a failed sync's retry), which is what
/// normally wakes it.
const LONGEST_SLEEP: Duration = Duration::from_secs(60);

/// The most changes a plan may make for each to be checked for drift against what the last
/// sync wrote (a scan of the desired state per change); a larger plan is drift only when the
/// whole sync is.
const DRIFT_CHECKED_AT_MOST: usize = 64;

/// How soon a failed sync is tried again: doubling from the first to the last, with jitter.
const FIRST_RETRY: Duration = Duration::from_secs(5);
// A store that comes back is written again within 30 s: a failed try costs one connection
// attempt, so waiting longer saves little.
const LAST_RETRY: Duration = Duration::from_secs(30);

/// The delay before the next try after `failures` failed syncs in a row (one or more).
pub fn retry_after(failures: u32) -> Duration {
    let doubled = FIRST_RETRY.saturating_mul(1 << failures.saturating_sub(1).min(5));
    super::context::jitter(doubled.min(LAST_RETRY))
}

/// The shared sync.
pub struct Syncer {
    caches: Caches,
    dsn: String,
    store: tokio::sync::Mutex<Option<Arc<SqlStore>>>,
    state: tokio::sync::Mutex<State>,
    resync: Duration,
    adopt: bool,
    recorder: Option<super::events::EventSink>,
    metrics: Arc<super::http::Health>,
    fanout: Option<Fanout>,
    debounce: Debounce,
    events: std::sync::Mutex<EventBudget>,
    published: tokio::sync::watch::Sender<Option<Published>>,
    /// Whether [`Syncer::run_task`] runs: reconcilers then read what it publishes.
    task: std::sync::atomic::AtomicBool,
    /// Who the syncs write as, checked against the store's claim ([`crate::store::Writer`]).
    writer: Option<crate::store::Writer>,
}

/// How long a changed tree must stay unchanged before it is synced, and the longest a change
/// waits for that.
///
/// `kubectl apply -f dir/` or an Argo CD wave creates objects one request at a time; a sync in
/// the middle would see a sub-organization without the root memberships of its admins, say, and
/// report a problem that is gone a moment later. A short quiet period lets a burst land whole.
#[derive(Debug, Clone, Copy, Default)]
pub struct Debounce {
    /// The quiet period (zero: sync at once).
    pub quiet: Duration,
    /// The longest a change waits for quiet.
    pub max_wait: Duration,
}

/// Called after each sync that ran, to reconcile the objects whose status it changed: those in
/// the [`Scope`] of what changed since the last result.
pub type Fanout = Box<dyn Fn(&SyncResult, &Scope) + Send + Sync>;

impl Syncer {
    /// A syncer over `caches` writing to the store at `dsn`, opened on first use.
    pub fn new(
        caches: Caches,
        dsn: String,
        resync: Duration,
        adopt: bool,
        recorder: Option<super::events::EventSink>,
        health: Arc<super::http::Health>,
    ) -> Self {
        Self {
            caches,
            dsn,
            store: tokio::sync::Mutex::new(None),
            state: tokio::sync::Mutex::new(State::default()),
            resync,
            adopt,
            recorder,
            metrics: health,
            fanout: None,
            debounce: Debounce::default(),
            events: std::sync::Mutex::new(EventBudget::new()),
            published: tokio::sync::watch::Sender::new(None),
            task: std::sync::atomic::AtomicBool::new(false),
            writer: None,
        }
    }

    /// Writes as `writer`: a store another controller claimed is refused (`StoreClaimed`).
    pub fn with_writer(mut self, writer: crate::store::Writer) -> Self {
        self.writer = Some(writer);
        self
    }

    /// Waits for the tree to stay unchanged for `debounce.quiet` before syncing a change.
    pub fn with_debounce(mut self, debounce: Debounce) -> Self {
        self.debounce = debounce;
        self
    }

    /// Calls `fanout` after every sync that ran.
    pub fn with_fanout(mut self, fanout: Fanout) -> Self {
        self.fanout = Some(fanout);
        self
    }

    /// The caches.
    pub fn caches(&self) -> &Caches {
        &self.caches
    }

    fn metrics(&self) -> &Metrics {
        &self.metrics.metrics
    }

    async fn store(&self) -> Result<Arc<SqlStore>, StoreError> {
        let mut store = self.store.lock().await;
        if let Some(s) = &*store {
            return Ok(s.clone());
        }
        let mut s = SqlStore::open(&self.dsn).await?;
        if let Some(w) = &self.writer {
            s = s.writing_as(w.clone());
        }
        let s = Arc::new(s);
        *store = Some(s.clone());
        Ok(s)
    }

    /// Closes the store when its SQLite file left its path (see [`SqlStore::file_left`]), so
    /// the next use opens the file the path leads to now (or creates one); says whether it did.
    async fn let_go_of_a_file_that_left(&self) -> bool {
        let mut store = self.store.lock().await;
        let Some(left) = store.as_ref().and_then(|s| s.file_left()) else {
            return false;
        };
        tracing::warn!(
            "the store's file {left} while the controller had it open: opening the store again and syncing every object into it"
        );
        // Closed before the path is opened again: the old connections' write-ahead log, still
        // at the path, is emptied into the file they opened and not read as the new file's.
        if let Some(old) = store.take() {
            old.close_shared().await;
        }
        true
    }

    /// The sync task: one sync whenever watch events came (after the debounce), a temporary
    /// role changes state, the resync period passes or a failed sync is due again (it sleeps
    /// until the first of these, so an idle controller does nothing); each result
    /// is published for the reconcilers ([`Syncer::current`]). Runs until `stop`; a sync under
    /// way then is dropped, and its transaction rolled back.
    pub async fn run_task(&self, stop: impl Future<Output = ()>) {
        use std::sync::atomic::Ordering;
        self.task.store(true, Ordering::SeqCst);
        tokio::pin!(stop);
        loop {
            tokio::select! {
                () = &mut stop => break,
                () = self.caches.fingerprint.next_event() => {}
                () = tokio::time::sleep(self.due_in()) => {}
            }
            tokio::select! {
                () = &mut stop => break,
                _ = self.sync() => {}
            }
        }
        self.task.store(false, Ordering::SeqCst);
        // Whoever waits for a result syncs on its own from now on.
        self.published.send_modify(|_| {});
    }

    /// The result a reconcile reads: the sync task's latest, once it covers every watch event
    /// taken before this call and is not due again (a temporary role changing state, the
    /// resync period, a failed sync's retry). Costs nothing when it is ready; otherwise waits for
    /// the task's next result. Without the task (a test, a one-off caller), syncs itself.
    pub async fn current(&self) -> Arc<SyncResult> {
        self.current_covering(None).await
    }

    /// The result a reconcile of the object `uid` at `generation` reads: as [`Syncer::current`],
    /// but the latest result also serves when it saw the object at that generation, although
    /// other objects changed since. Their changes reach this object through the fan-out of the
    /// sync that sees them, when they change its part of the result; meanwhile its status says
    /// what the store holds. So objects arriving one after another do not each wait for a
    /// sync that covers every later arrival too.
    pub async fn current_for(&self, uid: &str, generation: i64) -> Arc<SyncResult> {
        self.current_covering(Some((uid, generation))).await
    }

    async fn current_covering(&self, object: Option<(&str, i64)>) -> Arc<SyncResult> {
        use std::sync::atomic::Ordering;
        let mut published = self.published.subscribe();
        let wanted = self.caches.fingerprint.events();
        loop {
            if !self.task.load(Ordering::SeqCst) {
                return self.sync().await;
            }
            if let Some(p) = published.borrow_and_update().as_ref()
                && (p.events >= wanted
                    || object.is_some_and(|(uid, g)| p.result.seen.get(uid) == Some(&g)))
                && self.is_fresh(&p.result, p.at)
            {
                return p.result.clone();
            }
            // A requeue at a temporary role's change, or the task busy: make sure it looks.
            self.caches.fingerprint.poke();
            if published.changed().await.is_err() {
                return self.sync().await;
            }
        }
    }

    /// How long until the published result is due again (see [`Syncer::is_fresh`]); at once
    /// when nothing is published yet.
    fn due_in(&self) -> Duration {
        let published = self.published.borrow();
        let Some(p) = published.as_ref() else {
            return Duration::ZERO;
        };
        let mut due = self.lifetime(&p.result).saturating_sub(p.at.elapsed());
        if let Some(change) = p.result.next_change {
            let until = Duration::try_from(change.duration_since(Timestamp::now()))
                .unwrap_or(Duration::ZERO);
            // Just past the moment, when the role has changed state.
            due = due.min(until + Duration::from_millis(1));
        }
        due.min(LONGEST_SLEEP)
    }

    /// How long a result may be used: the resync period, or for a failure the retry delay.
    fn lifetime(&self, result: &SyncResult) -> Duration {
        // A failed sync is retried, but not more than every few seconds however many
        // reconciles ask.
        if result.failure.is_some() {
            result.retry.unwrap_or(FIRST_RETRY)
        } else {
            // A conflict is looked at again before the resync: the row in the way may be on
            // its way out (its object deleted in the same sync), or be adopted.
            result.retry.unwrap_or(self.resync).min(self.resync)
        }
    }

    fn publish(&self, events: u64, result: &Arc<SyncResult>, at: Instant) {
        self.published.send_replace(Some(Published {
            events,
            result: result.clone(),
            at,
        }));
    }

    /// Whether a result made at `at` may still be used: no temporary role has changed state
    /// since, and neither the resync period nor (for a failure) the retry delay has passed.
    fn is_fresh(&self, result: &SyncResult, at: Instant) -> bool {
        let in_time = result.next_change.is_none_or(|t| Timestamp::now() < t);
        in_time && at.elapsed() < self.lifetime(result)
    }

    /// The result of a sync as fresh as the caches: the last one when nothing changed since.
    pub async fn sync(&self) -> Arc<SyncResult> {
        if !self.caches.ready().await {
            let failed = Arc::new(SyncResult::failed(
                "WatchFailed",
                "the watches stopped before the caches were filled".to_owned(),
            ));
            self.publish(u64::MAX, &failed, Instant::now());
            return failed;
        }
        let mut state = self.state.lock().await;
        // Read before the snapshot: the caches are written before their part of the
        // fingerprint, so the snapshot holds at least what this says. The event count is read
        // before the fingerprint: the result covers every event it counts.
        let mut events = self.caches.fingerprint.events();
        let mut fingerprint = self.caches.fingerprint.get();
        if state.result.is_some()
            && state.fingerprint != Some(fingerprint)
            && !self.debounce.quiet.is_zero()
        {
            let started = Instant::now();
            while started.elapsed() < self.debounce.max_wait {
                tokio::time::sleep(self.debounce.quiet).await;
                events = self.caches.fingerprint.events();
                let again = self.caches.fingerprint.get();
                let settled = again == fingerprint;
                fingerprint = again;
                if settled {
                    break;
                }
            }
        }
        let now = Timestamp::now();
        if let (Some(result), Some(at)) = (&state.result, state.synced_at) {
            let same_input = state.fingerprint == Some(fingerprint);
            if same_input && self.is_fresh(result, at) {
                let result = result.clone();
                self.publish(events, &result, at);
                return result;
            }
        }
        // A SQLite file removed or replaced (a backup moved into place) under the open store:
        // the connections would go on writing a file no one reads. Opened again and read
        // whole; what the old file held is known no more.
        let reopened = self.let_go_of_a_file_that_left().await;
        if reopened {
            state.written.full_next = true;
        }
        // Same objects and no temporary role due: anything the plan changes was changed in the
        // store behind suborg's back.
        // Nor after objects were left out for conflicts: they may go in now.
        // A store file opened again is not drift either: its rows are written as a restart
        // writes them.
        let drift = !reopened
            && state.fingerprint == Some(fingerprint)
            && state.result.as_ref().is_some_and(|r| {
                r.failure.is_none()
                    && r.conflicts.is_empty()
                    && r.next_change.is_none_or(|t| now < t)
            });
        // The index and the memberships written are carried over from the last sync, and the
        // store read again only where they changed, except on the periodic resync and after a
        // failure, which read it whole.
        let previous = match (&state.result, state.synced_at) {
            (Some(r), Some(at))
                if r.failure.is_none() && at.elapsed() < self.resync && !reopened =>
            {
                Some(r.clone())
            }
            _ => None,
        };
        let started = Instant::now();
        // What the store holds is known from a sync that read it; a failed one did not.
        let stored = state
            .result
            .as_ref()
            .filter(|r| r.failure.is_none() && !reopened)
            .map(|r| {
                r.index
                    .organizations
                    .keys()
                    .chain(r.index.projects.keys())
                    .cloned()
                    .collect()
            });
        let snapshot = self.caches.snapshot_with(stored);
        tracing::debug!(
            elapsed_ms = started.elapsed().as_millis() as u64,
            "snapshot taken"
        );
        let written = state.written.desired.take();
        let full = std::mem::take(&mut state.written.full_next);
        let carried = match (&previous, &written) {
            (Some(r), Some(written)) if !full => Some(Carried {
                index: &r.index,
                written,
            }),
            _ => None,
        };
        let mut result = self
            .run(
                snapshot,
                now,
                drift,
                carried,
                written.as_ref(),
                &mut state.written,
            )
            .await;
        // A conflict is warned about when it starts or its reason changes: one that lasts (a
        // row to adopt) is in the object's status, not a warning per sync.
        let before = state.result.as_ref().map(|r| &r.conflicts);
        let news: Vec<(&String, &String)> = result
            .conflicts
            .iter()
            .filter(|(uid, message)| before.is_none_or(|b| b.get(*uid) != Some(*message)))
            .collect();
        if !news.is_empty() {
            let refs = self
                .caches
                .references(&news.iter().map(|(uid, _)| uid.as_str()).collect());
            for (uid, message) in news {
                // Named as every other line names an object; the uid when it is gone already.
                let object = refs
                    .get(uid)
                    .map_or_else(|| uid.clone(), |(k, _)| k.to_string());
                tracing::warn!(object = %object, conflict = %message, "an object's rows conflict with the store: it is left out of the sync");
            }
        }
        let outcome = match &result.failure {
            Some(f) => {
                state.failures = state.failures.saturating_add(1);
                let retry = retry_after(state.failures);
                result.retry = Some(retry);
                // Once per attempt, however many objects wait for it.
                tracing::warn!(reason = f.reason, error = %f.message, retry_in_ms = retry.as_millis() as u64, "sync failed; every object waits for the store");
                // The objects' statuses now say the store failed: so does the gauge of
                // their readiness.
                self.count_objects(&result, &self.caches.snapshot().set);
                if f.reason == "StoreUnavailable" {
                    // Opened afresh next time: a connection the database turned away (a file
                    // that was read-only, a server that restarted) is not kept in the pool.
                    *self.store.lock().await = None;
                }
                f.reason
            }
            None => {
                state.failures = 0;
                if result.conflicts.is_empty() {
                    state.conflicted = 0;
                } else {
                    state.conflicted = state.conflicted.saturating_add(1);
                    result.retry = Some(retry_after(state.conflicted));
                }
                "applied"
            }
        };
        let result = Arc::new(result);
        self.metrics().synced(outcome, started.elapsed());
        tracing::debug!(
            outcome,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "sync finished"
        );
        let at = Instant::now();
        state.fingerprint = Some(fingerprint);
        state.synced_at = Some(at);
        state.result = Some(result.clone());
        drop(state);
        self.publish(events, &result, at);
        if let Some(fanout) = &self.fanout {
            // Only what changed since a result carried over; everything after the first sync,
            // a failure, and on the resync.
            let scope = match &previous {
                Some(before) => Scope::between(before, &result, Timestamp::now()),
                None => Scope::All,
            };
            fanout(&result, &scope);
        }
        result
    }

    /// One sync of `snapshot`; what it wrote goes to `written`, for the next one to compare
    /// with. Drift is told from `last`, what the sync before wrote.
    async fn run(
        &self,
        snapshot: Snapshot,
        now: Timestamp,
        drift: bool,
        carried: Option<Carried<'_>>,
        last: Option<&Desired>,
        written: &mut Written,
    ) -> SyncResult {
        let Snapshot {
            mut set,
            held,
            unreadable,
            deleting,
        } = snapshot;
        let store = match self.store().await {
            Ok(s) => s,
            Err(e) => return failed_with_rules("StoreUnavailable", e.to_string(), &set, now),
        };
        let seen = generations(&set);
        let mut conflicts = HashMap::new();
        // Containers left out for a conflict keep their rows, as refused ones do, and so do
        // those that could not be read: a binary older than its CRDs must not delete them.
        let mut left_out: BTreeMap<String, Option<&'static str>> = unreadable
            .iter()
            .filter(|(key, _)| crate::rows::is_container(&key.kind))
            .map(|(_, uid)| (uid.clone(), None))
            .collect();
        // Objects that exist though the rules do not see them: unreadable, or left out for a
        // conflict. Their rows are not orphaned ([`Desired::live`]).
        let mut unseen: HashSet<String> = unreadable.into_iter().map(|(_, uid)| uid).collect();
        let options = ApplyOptions {
            prune: true,
            adopt: self.adopt,
        };
        let mut attempt = 0;
        let (outcome, plan, desired) = loop {
            attempt += 1;
            let t = Instant::now();
            let outcome = crate::domain::check(&set, now);
            let mut desired = desired_from(&set, &outcome.accepted, now);
            desired.kept.extend(left_out.clone());
            desired.live.extend(unseen.iter().cloned());
            desired.deleting.clone_from(&deleting);
            let rules = t.elapsed();
            let before = carried.as_ref().map(|c| c.written);
            let applied = store.apply_after(&desired, before, options).await;
            tracing::debug!(
                rules_ms = rules.as_millis() as u64,
                store_ms = (t.elapsed() - rules).as_millis() as u64,
                "rules and store plan"
            );
            match applied {
                Ok(plan) => break (outcome, plan, desired),
                Err(StoreError::SourceConflicts { conflicts: found }) => {
                    // Leave the objects out, as if rejected on their own, and try again: a
                    // conflicting object must not hold back the rest of the tree. A pass names
                    // every conflict of a table, and each leaves at least one more object out,
                    // so this ends, after at most a pass per table.
                    // Warned about once per conflict by `sync`, not on every pass of every sync
                    // while it lasts.
                    tracing::debug!(
                        attempt,
                        objects = found.len(),
                        "leaving objects with conflicting rows out of the sync"
                    );
                    let mut this_pass = HashSet::new();
                    let uids = found.iter().map(|c| source_object(&c.uid)).collect();
                    let refs = self.caches.references(&uids);
                    for ObjectConflict { uid, message } in found {
                        let object = source_object(&uid).to_owned();
                        tracing::debug!(conflict = %message, "conflicting rows");
                        if this_pass.contains(&object) {
                            continue; // another of its rows
                        }
                        let Some((key, _)) = refs.get(&object) else {
                            return failed_with_rules("StoreConflict", message, &set, now);
                        };
                        // Left out before, and still in conflict: the plan cannot get past it.
                        if conflicts.contains_key(&object) {
                            return failed_with_rules("StoreConflict", message, &set, now);
                        }
                        this_pass.insert(object.clone());
                        left_out
                            .extend(crate::rows::kept_entry(&set, key).map(|(k, p)| (k, Some(p))));
                        unseen.insert(object.clone());
                        // A membership stays, refused: what builds on it finds it by its
                        // subject, and waits for it rather than being told it is missing.
                        if key.kind != "OrgMembership" {
                            remove(&mut set, key);
                        }
                        set.rejected.insert(key.clone());
                        conflicts.insert(object, message);
                    }
                }
                Err(
                    e @ (StoreError::Unavailable { .. }
                    | StoreError::Query { .. }
                    | StoreError::TimedOut { .. }),
                ) => {
                    return failed_with_rules("StoreUnavailable", e.to_string(), &set, now);
                }
                Err(e @ StoreError::SchemaTooNew { .. }) => {
                    return failed_with_rules("StoreSchemaTooNew", e.to_string(), &set, now);
                }
                Err(e @ StoreError::Claimed(_)) => {
                    return failed_with_rules("StoreClaimed", e.to_string(), &set, now);
                }
                Err(e) => return failed_with_rules("StoreConflict", e.to_string(), &set, now),
            }
        };
        let t = Instant::now();
        let sources: Option<HashSet<&str>> =
            plan.changes.iter().map(|c| c.source.as_deref()).collect();
        // Rows the plan changed although their object wants what it wanted at the last sync:
        // changed outside suborg, whatever set this sync off. An object that wants no row
        // (gone, refused, kept as it is) has nothing to drift from.
        // Told from what the last sync wrote, even when this one planned the store whole.
        let drifted: HashSet<String> = match last {
            Some(last) if plan.changes.len() <= DRIFT_CHECKED_AT_MOST => plan
                .changes
                .iter()
                .filter_map(|ch| ch.source.as_deref())
                .filter(|s| {
                    let now = desired.rows_of(s);
                    !now.is_empty() && last.rows_of(s) == now
                })
                .map(str::to_owned)
                .collect(),
            _ => HashSet::new(),
        };
        // Whether the next sync may compare with what this one wrote: not when rows went
        // around the write (another writer), which the index's row count shows.
        let mut keep = true;
        let index = match (&carried, sources) {
            (Some(c), Some(sources)) => match store.index_after(c.index, &sources).await {
                Ok(Some(index)) => Ok(index),
                Ok(None) => {
                    keep = false;
                    store.index().await
                }
                Err(e) => Err(e),
            },
            _ => store.index().await,
        };
        let kept = desired.kept.keys().cloned().collect();
        if index.is_ok() {
            written.desired = Some(desired);
            written.full_next = !keep;
        }
        let index = match index {
            Ok(i) => i,
            Err(e) => return failed_with_rules("StoreUnavailable", e.to_string(), &set, now),
        };
        tracing::debug!(
            elapsed_ms = t.elapsed().as_millis() as u64,
            "store index read"
        );
        self.announce(&plan, drift, &drifted);
        let waiting = crate::domain::waiting::waiting(&set, &outcome);
        let mut problems: HashMap<ObjectKey, Vec<Problem>> = HashMap::new();
        for p in outcome.problems {
            if let Some(key) = p.object.clone() {
                problems.entry(key).or_default().push(p);
            }
        }
        let changes = next_changes(&set, now);
        let result = SyncResult {
            problems,
            failure: None,
            conflicts,
            held,
            index,
            next_change: changes.values().min().copied(),
            next_changes: changes,
            retry: None,
            waiting,
            kept,
            seen,
        };
        self.count_objects(&result, &set);
        result
    }

    /// Events for what the sync changed, and a log line for each change. A change is drift
    /// when the whole sync is (nothing changed in the cluster), or its source is in `drifted`.
    fn announce(&self, plan: &Plan, drift: bool, drifted: &HashSet<String>) {
        if plan.is_empty() {
            return;
        }
        let uids = plan
            .changes
            .iter()
            .filter_map(|c| c.source.as_deref().map(source_object))
            .collect();
        let refs = self.caches.references(&uids);
        let is_drift = |c: &crate::store::Change| {
            drift || c.source.as_deref().is_some_and(|s| drifted.contains(s))
        };
        let drifts = plan.changes.iter().filter(|c| is_drift(c)).count();
        if drifts > 0 {
            self.metrics().drift_corrected(drifts as u64);
        }
        // One Event per object and reason, listing its rows: kube's Recorder folds Events of
        // one object and reason into a series that keeps the first note, so an Event per row
        // would show only the first row of a sub-organization and its admins.
        let mut grouped: Vec<RowsEvent> = Vec::new();
        let mut slots: HashMap<(String, &'static str), usize> = HashMap::new();
        for change in &plan.changes {
            let object = change
                .source
                .as_deref()
                .and_then(|s| refs.get(source_object(s)));
            let drift = is_drift(change);
            tracing::info!(
                action = ?change.action,
                row = %change.target,
                object = object.map(|(k, _)| k.to_string()),
                drift,
                "store row changed"
            );
            let Some((key, reference)) = object else {
                continue;
            };
            let (reason, verb) = match (drift, change.action) {
                (true, _) => ("DriftCorrected", "rewrote (changed outside suborg)"),
                (false, Action::Create) => ("Created", "created"),
                (false, Action::Update) => ("Updated", "updated"),
                (false, Action::Delete) => ("Deleted", "deleted"),
                (false, Action::Orphan) => ("Orphaned", "left in place, unmanaged,"),
            };
            let fields = if change.fields.is_empty() {
                String::new()
            } else {
                format!(" ({})", change.fields.join(", "))
            };
            let why = change
                .why
                .as_deref()
                .map(|w| format!(" ({w})"))
                .unwrap_or_default();
            let row = format!("{} {}{fields}{why}", change.kind, change.target);
            let slot = *slots.entry((key.to_string(), reason)).or_insert_with(|| {
                let type_ = if drift {
                    EventType::Warning
                } else {
                    EventType::Normal
                };
                grouped.push(RowsEvent {
                    type_,
                    reason,
                    verb,
                    reference: reference.clone(),
                    rows: Vec::new(),
                });
                grouped.len() - 1
            });
            grouped[slot].rows.push(row);
        }
        let allowed = self
            .events
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take(grouped.len());
        let events: Vec<_> = grouped
            .into_iter()
            .take(allowed)
            .map(|g| {
                let event = Event {
                    type_: g.type_,
                    reason: g.reason.into(),
                    note: Some(event_note(&format!(
                        "store {} {}",
                        g.verb,
                        g.rows.join("; ")
                    ))),
                    action: "Sync".into(),
                    secondary: None,
                };
                (event, g.reference)
            })
            .collect();
        if let Some(recorder) = self
            .recorder
            .as_ref()
            .map(super::events::EventSink::recorder)
        {
            tokio::spawn(async move {
                for (event, reference) in events {
                    super::events::publish(&recorder, &event, &reference).await;
                }
            });
        }
    }

    fn count_objects(&self, result: &SyncResult, set: &ObjectSet) {
        let mut counts: BTreeMap<(&'static str, &'static str), u64> = BTreeMap::new();
        let mut count = |kind: &'static str, key: ObjectKey, uid: Option<String>| {
            // Ready as the status says: rows in the store, and no error, conflict or wait.
            // A store-wide failure: every object's status says so.
            let stored = uid.as_deref().is_some_and(|u| result.index.holds(u));
            let failed = result.failure.is_some()
                || !stored
                || result.waiting.contains_key(&key)
                || result
                    .problems
                    .get(&key)
                    .is_some_and(|ps| ps.iter().any(Problem::is_error))
                || uid.is_some_and(|u| result.conflicts.contains_key(&u));
            *counts
                .entry((kind, if failed { "False" } else { "True" }))
                .or_default() += 1;
        };
        each_object(set, &mut count);
        for key in &set.rejected {
            // The metric's label is one of the fixed kind names, never the key's own string.
            let kind = crate::api::KINDS
                .into_iter()
                .find(|k| *k == key.kind)
                .unwrap_or("OrgMembership");
            *counts.entry((kind, "False")).or_default() += 1;
        }
        self.metrics().set_objects(counts);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_note_is_cut_to_what_the_api_server_takes_on_a_character_boundary() {
        assert_eq!(event_note("short"), "short");
        let exact = "a".repeat(EVENT_NOTE_MAX);
        assert_eq!(event_note(&exact), exact);
        // Two-byte characters: the cut falls inside one unless moved back.
        let long = "é".repeat(EVENT_NOTE_MAX);
        let cut = event_note(&long);
        assert!(cut.len() <= EVENT_NOTE_MAX, "{}", cut.len());
        assert!(cut.ends_with("é…"), "{cut}");
    }
}
