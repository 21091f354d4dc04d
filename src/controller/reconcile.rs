//! The three reconcilers, one generic function: finalizer, sync, status.
//!
//! Each reconcile runs the shared sync (dereference → rules → store, see [`super::sync`]),
//! then writes the object's status by server-side apply when it differs from what the object
//! already says. A rule the object breaks is not an error of the reconcile: it is a `False`
//! condition and a Warning Event, and the object waits for a change. A store that cannot be
//! reached is an error: it is reported the same way and the object is retried with backoff.

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use kube::core::DeserializeGuard;
use kube::runtime::controller::Action;
use kube::runtime::events::{Event as KubeEvent, EventType, Recorder};
use tracing::Instrument;

use super::context::{Context, Error, FINALIZER, MANAGER, jitter};
use super::events::publish;
use super::kinds::Kind;
use super::kinds::status_patch;
use super::status;
use super::sync::SyncResult;
use crate::api::CONDITION_READY;
use crate::domain::problem::ObjectKey;

fn ready<K: Kind>(status: Option<&K::Status>) -> Option<(String, String)> {
    status.and_then(|s| {
        K::common(s)
            .conditions
            .iter()
            .find(|c| c.type_ == CONDITION_READY)
            .map(|c| (c.status.clone(), c.reason.clone()))
    })
}

/// Reconciles one object of kind `K`. Every log line of the reconcile carries the object's
/// kind, namespace and name.
pub async fn reconcile<K: Kind>(
    guard: Arc<DeserializeGuard<K>>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    let meta = match &guard.0 {
        Ok(o) => o.meta(),
        Err(e) => &e.metadata,
    };
    // `object`, not `name`: a JSON log line names the span itself `name`.
    let span = tracing::info_span!(
        "reconcile",
        kind = K::KIND,
        namespace = meta.namespace.as_deref(),
        object = meta.name.as_deref()
    );
    reconcile_object(guard, ctx).instrument(span).await
}

async fn reconcile_object<K: Kind>(
    guard: Arc<DeserializeGuard<K>>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    let started = Instant::now();
    let obj = match &guard.0 {
        Ok(o) => Arc::new(o.clone()),
        Err(invalid) => {
            // The rest of the watch goes on; this object waits for a fix.
            tracing::warn!(
                kind = K::KIND,
                namespace = invalid.metadata.namespace.as_deref(),
                name = invalid.metadata.name.as_deref(),
                error = %invalid.error,
                "object cannot be read; it is left out until it is fixed"
            );
            return Ok(Action::await_change());
        }
    };
    let api = K::api(ctx.client.clone(), obj.namespace().as_deref());
    let result = with_finalizer(&api, obj, &ctx).await;
    ctx.health.metrics.reconciled(K::KIND, started.elapsed());
    if result.is_ok() {
        ctx.backoff.reset(&guard_key::<K>(&guard));
    }
    result
}

/// The finalizer around apply and cleanup.
///
/// The object comes from the cache, which may not have seen the controller's own last write yet
/// (a finalizer added or removed a moment ago, and the object queued again meanwhile). So every
/// finalizer patch is guarded by a test of the list it read, and when that test fails the object
/// is read afresh and the decision made again; an object already gone is done. A new object is
/// applied in the same reconcile as its finalizer is added, without waiting for the echo.
async fn with_finalizer<K: Kind>(
    api: &Api<K>,
    obj: Arc<K>,
    ctx: &Context,
) -> Result<Action, Error> {
    let mut obj = obj;
    for attempt in 0..3 {
        let has = obj.finalizers().iter().any(|f| f == FINALIZER);
        let deleting = obj.meta().deletion_timestamp.is_some();
        let patched = match (deleting, has) {
            (false, true) => return apply(obj, api, ctx).await,
            // Not ours to hold back.
            (true, false) => return Ok(Action::await_change()),
            (false, false) => patch_finalizers(api, &obj, true).await,
            (true, true) => {
                if let Some(wait) = cleanup(obj.clone(), api, ctx).await? {
                    return Ok(wait);
                }
                match patch_finalizers(api, &obj, false).await {
                    Ok(_) | Err(Stale::Gone) => return Ok(Action::await_change()),
                    Err(e) => Err(e),
                }
            }
        };
        match patched {
            Ok(updated) => obj = Arc::new(updated),
            Err(Stale::Gone) => return Ok(Action::await_change()),
            Err(Stale::Changed) if attempt < 2 => match api.get_opt(&obj.name_any()).await {
                Ok(Some(fresh)) => obj = Arc::new(fresh),
                Ok(None) => return Ok(Action::await_change()),
                Err(e) => return Err(Error::Kube(e)),
            },
            Err(Stale::Changed) => break,
            Err(Stale::Failed(e)) => return Err(Error::Kube(e)),
        }
    }
    Err(Error::Kube(kube::Error::Service(
        "the object kept changing while its finalizer was written; retrying".into(),
    )))
}

/// Why a finalizer patch did not land.
enum Stale {
    /// The object changed since it was read (the patch's test failed, or a conflict).
    Changed,
    /// The object is gone.
    Gone,
    Failed(kube::Error),
}

/// Adds (`add`) or removes suborg's finalizer with a JSON patch that first tests the list as
/// `o` has it, so a stale read never drops or duplicates someone else's finalizer.
async fn patch_finalizers<K: Kind>(api: &Api<K>, o: &K, add: bool) -> Result<K, Stale> {
    let current = o.finalizers();
    let wanted: Vec<&str> = current
        .iter()
        .map(String::as_str)
        .filter(|f| *f != FINALIZER)
        .chain(add.then_some(FINALIZER))
        .collect();
    let test = if o.meta().finalizers.is_none() {
        serde_json::json!({"op": "test", "path": "/metadata/finalizers", "value": null})
    } else {
        serde_json::json!({"op": "test", "path": "/metadata/finalizers", "value": current})
    };
    let patch: json_patch::Patch = serde_json::from_value(serde_json::json!([
        test,
        {"op": "add", "path": "/metadata/finalizers", "value": wanted},
    ]))
    .expect("a well-formed JSON patch");
    match api
        .patch(
            &o.name_any(),
            // Named, so managedFields (Argo CD's diff, audit logs) say suborg owns it.
            &PatchParams {
                field_manager: Some(MANAGER.into()),
                ..PatchParams::default()
            },
            &Patch::<()>::Json(patch),
        )
        .await
    {
        Ok(updated) => Ok(updated),
        Err(kube::Error::Api(e)) if e.code == 404 => Err(Stale::Gone),
        Err(kube::Error::Api(e)) if e.code == 409 || e.code == 422 => Err(Stale::Changed),
        Err(e) => Err(Stale::Failed(e)),
    }
}

/// The reason of the status an object gets when it leaves the controller's `--selector`.
pub const NOT_MANAGED: &str = "NotManaged";

/// Lets go of an object that left the controller's `--selector` (its labels changed): the
/// watch says it is gone, so the sync takes it as deleted and its rows go as its
/// `deletionPolicy` says, and no reconcile will see it again. Its status says so (`Ready`
/// `Unknown`, `NotManaged`), and suborg's finalizer is released last, so a later deletion
/// is not held by a controller that no longer looks. Released last, it also wakes a controller
/// whose selector the object entered (the same finalizer is its own), which then writes its
/// own status over this one. Tried a few times; a failure is logged.
pub(super) async fn let_go<K: Kind>(client: kube::Client, o: K, selector: String) {
    let api = K::api(client, o.namespace().as_deref());
    let rows = if o.deletion_policy() == crate::api::DeletionPolicy::Orphan {
        "its rows stay in the store, no longer managed (deletionPolicy: Orphan); labelled to match again, it takes them back only with --adopt"
    } else if K::KIND == "Organization" {
        "its rows are removed from the store once no sub-organization of it is left there (deletionPolicy: Delete); labelled to match again, it is synced afresh"
    } else {
        "its rows are removed from the store (deletionPolicy: Delete); labelled to match again, it is synced afresh"
    };
    let message = format!(
        "its labels no longer match the --selector of the suborg controller that synced it ({selector}): it is not synced any more, and {rows}"
    );
    // Stalled beside Ready, as beside every Ready that is not True and waits for a change to
    // the object: kstatus (Flux's wait, kpt) reports it failed, not in progress.
    let conditions: Vec<serde_json::Value> = [(CONDITION_READY, "Unknown"), ("Stalled", "True")]
        .into_iter()
        .map(|(type_, status)| {
            serde_json::json!({
                "type": type_,
                "status": status,
                "reason": NOT_MANAGED,
                "message": message,
                "lastTransitionTime": Timestamp::now(),
                "observedGeneration": o.meta().generation,
            })
        })
        .collect();
    let patch = serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": {
            "observedGeneration": o.meta().generation,
            "conditions": conditions,
        },
    });
    let key = o.key();
    for attempt in 1..=LET_GO_ATTEMPTS {
        let status = api
            .patch_status(
                &o.name_any(),
                &PatchParams::apply(MANAGER).force(),
                &Patch::Apply(&patch),
            )
            .await;
        let outcome = match status {
            Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
            Err(e) => Err(e),
            Ok(_) => match patch_finalizers(&api, &o, false).await {
                // Changed since: the finalizer is someone else's to keep now (an object that
                // came back into the selector is reconciled afresh).
                Ok(_) | Err(Stale::Gone | Stale::Changed) => Ok(()),
                Err(Stale::Failed(e)) => Err(e),
            },
        };
        match outcome {
            Ok(()) => {
                tracing::info!(object = %key, selector, "the object left the selector: its finalizer was released");
                return;
            }
            Err(e) if attempt == LET_GO_ATTEMPTS => {
                tracing::warn!(object = %key, error = %e, "the object left the selector, but its finalizer could not be released: remove it by hand if it is deleted");
            }
            Err(_) => tokio::time::sleep(Duration::from_secs(attempt.into())).await,
        }
    }
}

/// How many times [`let_go`] tries.
const LET_GO_ATTEMPTS: u32 = 3;

fn guard_key<K: Kind>(guard: &DeserializeGuard<K>) -> String {
    let meta = match &guard.0 {
        Ok(o) => o.meta().clone(),
        Err(e) => e.metadata.clone(),
    };
    format!(
        "{}/{}/{}",
        K::KIND,
        meta.namespace.unwrap_or_default(),
        meta.name.unwrap_or_default()
    )
}

/// Writes `desired` as the object's status when it differs from what the object says (and was
/// not just written, see [`Written`]), and records an Event when Ready changes, except when a
/// new object first becomes Ready (routine, and one per object: the store's `Created` Event
/// already says it), and when the store fails for every object or comes back: an outage is
/// logged once per attempt and counted, not raised as two Events per object. A change the
/// outage hid (a rule error fixed meanwhile) is an Event when it ends
/// ([`Written::changed_from`]).
async fn write_status<K: Kind>(
    o: &K,
    api: &Api<K>,
    ctx: &Context,
    desired: &K::Status,
) -> Result<(), Error> {
    if o.current() == Some(desired) || ctx.written.in_flight(o, desired) {
        return Ok(());
    }
    let patch = status_patch::<K>(desired);
    api.patch_status(
        &o.name_any(),
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await
    .map_err(Error::Kube)?;
    ctx.written.record(o, desired);
    let after = ready::<K>(Some(desired));
    let Some(before) = ctx.written.changed_from(
        o,
        ready::<K>(o.current()),
        &after,
        crate::controller::sync::is_store_wide,
    ) else {
        return Ok(());
    };
    let first_ready = before.is_none() && after.as_ref().is_some_and(|(s, _)| s == "True");
    if !first_ready
        && let Some(sink) = &ctx.recorder
        && let Some(condition) = K::common(desired)
            .conditions
            .iter()
            .find(|c| c.type_ == CONDITION_READY)
    {
        // A root waiting for its sub-organizations to go is the order of a deletion, not a
        // fault.
        let warning =
            condition.status == "False" && condition.reason != status::HAS_SUB_ORGANIZATIONS;
        let type_ = if warning {
            EventType::Warning
        } else {
            EventType::Normal
        };
        // A Recorder of its own: folded into the series of an earlier change of the same
        // reason, this one's note would be lost (a second `Synced` with other roles).
        report(
            &sink.recorder(),
            o,
            type_,
            condition.reason.clone(),
            &condition.message,
        );
    }
    Ok(())
}

/// Publishes a Reconcile Event about `o`, without holding the reconcile: an Event is a report,
/// and the reconcile is done without it.
fn report<K: Kind>(recorder: &Recorder, o: &K, type_: EventType, reason: String, note: &str) {
    let event = KubeEvent {
        type_,
        reason,
        note: Some(truncate(note, 1000)),
        action: "Reconcile".into(),
        secondary: None,
    };
    let (recorder, reference) = (recorder.clone(), o.object_ref(&()));
    tokio::spawn(async move {
        publish(&recorder, &event, &reference).await;
    });
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

async fn apply<K: Kind>(o: Arc<K>, api: &Api<K>, ctx: &Context) -> Result<Action, Error> {
    let meta = o.meta();
    let result = match &meta.uid {
        Some(uid) => {
            let generation = meta.generation.unwrap_or_default();
            ctx.syncer.current_for(uid, generation).await
        }
        None => ctx.syncer.current().await,
    };
    let now = Timestamp::now();
    if !claimed_and_ready_elsewhere(&*o, &result) {
        let desired = o.desired(&result, now);
        write_status(&*o, api, ctx, &desired).await?;
    }
    if let Some(f) = &result.failure {
        return Err(Error::Store {
            category: f.reason,
            message: f.message.clone(),
        });
    }
    Ok(Action::requeue(next_visit(
        &result,
        &o.key(),
        now,
        ctx.resync,
    )))
}

/// Whether this controller is refused by another's claim on the store while the object is
/// Ready at its generation: that controller wrote it so (their selectors overlap), so it is
/// left as it is rather than flipped between the two; an object that is not Ready is told why
/// nothing is written.
fn claimed_and_ready_elsewhere<K: Kind>(o: &K, result: &SyncResult) -> bool {
    result
        .failure
        .as_ref()
        .is_some_and(|f| f.reason == "StoreClaimed")
        && o.current()
            .is_some_and(|s| K::common(s).observed_generation == o.meta().generation)
        && ready::<K>(o.current()).is_some_and(|(status, _)| status == "True")
}

/// When to look at the object `key` again: at its own next temporary-role change, or after
/// the resync period (with jitter, so a fleet of objects does not come due at once). Objects
/// whose status another object's change affects are queued by the sync that sees it.
pub fn next_visit(
    result: &SyncResult,
    key: &ObjectKey,
    now: Timestamp,
    resync: Duration,
) -> Duration {
    let periodic = jitter(resync);
    match result.next_changes.get(key).copied() {
        Some(t) => {
            let until = now.duration_until(t).unsigned_abs() + Duration::from_secs(1);
            until.min(periodic)
        }
        None => periodic,
    }
}

/// Removes the object's rows. `Some(action)` when the finalizer must stay for now.
async fn cleanup<K: Kind>(o: Arc<K>, api: &Api<K>, ctx: &Context) -> Result<Option<Action>, Error> {
    // The snapshot leaves the deleted object out (an Organization with sub-organizations
    // stays), so the sync's pruning removes its rows, or orphans them as its policy says.
    let result = ctx.syncer.current().await;
    if let Some(f) = &result.failure {
        // The status says why the deletion waits, at the generation the deletion gave the
        // object, rather than the Ready it had before.
        let waiting = SyncResult::failed(
            f.reason,
            format!(
                "being deleted: its rows leave the store (or are left unmanaged, as its deletionPolicy says) once the store can be written; {}",
                f.message
            ),
        );
        write_status(&*o, api, ctx, &o.desired(&waiting, Timestamp::now())).await?;
        return Err(Error::Store {
            category: f.reason,
            message: f.message.clone(),
        });
    }
    if K::KIND == "Organization"
        && let Some(children) = result.held.get(&o.name_any())
    {
        let desired = o.desired(&result, Timestamp::now());
        write_status(&*o, api, ctx, &desired).await?;
        // Its status says why; it is queued again when they go (and looked at soon anyway).
        tracing::info!(
            kind = K::KIND,
            name = %o.name_any(),
            sub_organizations = %children.join(", "),
            "the organization leaves the store after its sub-organizations"
        );
        return Ok(Some(Action::requeue(Duration::from_secs(5))));
    }
    let uid = o.uid().unwrap_or_default();
    if result.index.holds(&uid) {
        return Err(Error::DeletionBlocked(format!(
            "{} {:?}: its rows are still in the store",
            K::KIND,
            o.name_any()
        )));
    }
    ctx.written.forget(&*o);
    tracing::info!(kind = K::KIND, name = %o.name_any(), "rows released from the store (deleted, or left unmanaged by deletionPolicy: Orphan); finalizer released");
    Ok(None)
}

/// What happens after a failed reconcile: a count, a retry with backoff, and a Warning Event
/// when the failure is the object's own. A store that cannot be written fails every object at
/// once: their Ready condition says so (one Event each when it turns), the sync logs each
/// failed attempt, and the retries raise no further Events.
pub fn error_policy<K: Kind>(
    guard: Arc<DeserializeGuard<K>>,
    error: &Error,
    ctx: Arc<Context>,
) -> Action {
    let category = error.category();
    ctx.health.metrics.failed(K::KIND, category);
    let key = guard_key::<K>(&guard);
    let store_wide = matches!(error, Error::Store { .. });
    if store_wide {
        tracing::debug!(kind = K::KIND, object = %key, category, "waiting for the store");
    } else {
        tracing::warn!(kind = K::KIND, object = %key, category, error = %error, "reconcile failed");
    }
    if let (false, Some(sink), Ok(o)) = (store_wide, &ctx.recorder, &guard.0) {
        report(
            sink.repeats(),
            o,
            EventType::Warning,
            category.to_owned(),
            &error.to_string(),
        );
    }
    Action::requeue(ctx.backoff.next(&key))
}
