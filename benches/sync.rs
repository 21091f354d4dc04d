//! The controller's sync without a cluster: what one sync of the tree costs, and what one
//! change costs, at 1,000 and at 10,000 OrgMemberships under one Organization (SQLite store in a
//! temporary directory, caches filled as a watch would fill them).
//!
//! `cargo bench --bench sync` prints, for each size:
//! - **first sync**: the whole tree into an empty store;
//! - **unchanged**: a sync when no watch event changed anything (the last result is reused);
//! - **one new membership**: a membership arrives, then one sync (median of 15), beside the
//!   time to compute every object's status from the result (as the fan-out does after the
//!   first sync and at a resync), and the fan-out after that one change: the statuses of the
//!   objects in its scope (what changed in the result), and how many those are;
//! - the same per object, so how a change's cost grows with the tree shows.
//!
//! `SUBORG_BENCH_SYNC_SIZES` (comma-separated) replaces the sizes;
//! `SUBORG_BENCH_LOG=suborg::controller::sync=debug` prints each sync's phases.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::Resource;
use kube::core::{DeserializeGuard, PartialObjectMeta, PartialObjectMetaExt};
use kube::runtime::watcher;
use suborg::api::*;
use suborg::controller::caches::Feeds;
use suborg::controller::http::Health;
use suborg::controller::kinds::Kind;
use suborg::controller::prints::{Feed, Printed};
use suborg::controller::sync::{Caches, Scope, Syncer};

#[allow(dead_code)]
#[path = "../tests/integration/fixtures.rs"]
mod fixtures;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const NAMESPACE: &str = "team";
const ORG: &str = "acme";

fn stored<K: Resource>(mut o: K, uid: String) -> K {
    let m = o.meta_mut();
    m.uid = Some(uid);
    m.generation = Some(1);
    m.resource_version = Some("1".into());
    m.creation_timestamp = Some(Time(Timestamp::now()));
    m.finalizers = Some(vec![suborg::controller::FINALIZER.into()]);
    o
}

fn member(i: usize) -> DeserializeGuard<OrgMembership> {
    let m = fixtures::user_in(
        NAMESPACE,
        &format!("m-{i}"),
        OrganizationKind::Organization,
        ORG,
        &format!("u{i}@bench.example"),
        vec![fixtures::role("member")],
    );
    DeserializeGuard(Ok(stored(m, format!("uid-m-{i}"))))
}

fn organization() -> DeserializeGuard<Organization> {
    DeserializeGuard(Ok(stored(fixtures::org(ORG), "uid-org".into())))
}

fn namespace() -> PartialObjectMeta<Namespace> {
    ObjectMeta {
        name: Some(NAMESPACE.into()),
        labels: Some(BTreeMap::from([(
            "suborg.io/organization".to_owned(),
            ORG.to_owned(),
        )])),
        ..Default::default()
    }
    .into_response_partial::<Namespace>()
}

fn fill<K: Clone + Resource<DynamicType = ()> + Printed>(feed: &mut Feed<K>, objects: Vec<K>) {
    feed.apply_watcher_event(&watcher::Event::Init);
    for o in objects {
        feed.apply_watcher_event(&watcher::Event::InitApply(o));
    }
    feed.apply_watcher_event(&watcher::Event::InitDone);
}

/// Caches holding the Organization and `n` memberships, and their feeds.
fn caches(n: usize) -> (Caches, Feeds) {
    let (caches, mut feeds) = Caches::by_hand();
    fill(&mut feeds.organizations, vec![organization()]);
    fill(&mut feeds.namespaces, vec![namespace()]);
    fill(&mut feeds.memberships, (0..n).map(member).collect());
    (caches, feeds)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

struct Figures {
    objects: usize,
    first: Duration,
    unchanged: Duration,
    change: Duration,
    statuses: Duration,
    fan_out: Duration,
    in_scope: usize,
}

async fn measure(n: usize) -> Figures {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let dsn = format!("sqlite://{}", dir.path().join("store.db").display());
    let (caches, mut feeds) = caches(n);
    let syncer = Syncer::new(
        caches.clone(),
        dsn,
        Duration::from_secs(3600),
        false,
        None,
        Arc::new(Health::default()),
    );
    let started = Instant::now();
    let result = syncer.sync().await;
    let first = started.elapsed();
    assert!(result.failure.is_none(), "first sync failed: {result:?}");

    let started = Instant::now();
    let mut before = syncer.sync().await;
    let unchanged = started.elapsed();

    let mut changes = Vec::new();
    let mut statuses = Vec::new();
    let mut fan_outs = Vec::new();
    let mut in_scope = 0;
    for i in 0..15 {
        feeds
            .memberships
            .apply_watcher_event(&watcher::Event::Apply(member(n + i)));
        let started = Instant::now();
        let result = syncer.sync().await;
        changes.push(started.elapsed());
        assert!(result.failure.is_none(), "sync failed: {result:?}");
        let uid = format!("uid-m-{}", n + i);
        assert!(
            result.index.memberships.contains_key(&uid),
            "the new membership {uid} is not in the store"
        );

        let started = Instant::now();
        let now = Timestamp::now();
        let mut changed = 0usize;
        for guard in caches.memberships.state() {
            if let Ok(m) = &guard.0
                && m.current() != Some(&m.desired(&result, now))
            {
                changed += 1;
            }
        }
        for guard in caches.organizations.state() {
            if let Ok(o) = &guard.0
                && o.current() != Some(&o.desired(&result, now))
            {
                changed += 1;
            }
        }
        statuses.push(started.elapsed());
        // Nothing here writes statuses, so every object's differs from what it says.
        assert!(changed > n, "{changed} statuses to write");

        // The fan-out after this sync: only the objects whose entries changed.
        let started = Instant::now();
        let scope = Scope::between(&before, &result, now);
        in_scope = 0;
        for guard in caches.memberships.state() {
            if let Ok(m) = &guard.0
                && scope.contains(m.meta().uid.as_deref(), || m.key())
                && m.current() != Some(&m.desired(&result, now))
            {
                in_scope += 1;
            }
        }
        for guard in caches.organizations.state() {
            if let Ok(o) = &guard.0
                && scope.contains(o.meta().uid.as_deref(), || o.key())
                && o.current() != Some(&o.desired(&result, now))
            {
                in_scope += 1;
            }
        }
        fan_outs.push(started.elapsed());
        // The new membership, and the organization whose member count it changed.
        assert_eq!(in_scope, 2, "{scope:?}");
        before = result;
    }
    Figures {
        objects: n + 1,
        first,
        unchanged,
        change: median(changes),
        statuses: median(statuses),
        fan_out: median(fan_outs),
        in_scope,
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if let Ok(filter) = std::env::var("SUBORG_BENCH_LOG") {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .init();
    }
    let sizes: Vec<usize> = std::env::var("SUBORG_BENCH_SYNC_SIZES")
        .ok()
        .map(|s| {
            s.split(',')
                .map(|n| n.trim().parse().expect("SUBORG_BENCH_SYNC_SIZES: numbers"))
                .collect()
        })
        .unwrap_or_else(|| vec![1_000, 10_000]);
    println!(
        "{:>8} {:>14} {:>14} {:>16} {:>16} {:>22} {:>13} {:>9}",
        "objects",
        "first sync ms",
        "unchanged ms",
        "one change ms",
        "statuses ms",
        "one change µs/object",
        "fan-out ms",
        "in scope"
    );
    for n in sizes {
        let f = measure(n).await;
        println!(
            "{:>8} {:>14.1} {:>14.3} {:>16.1} {:>16.1} {:>22.2} {:>13.2} {:>9}",
            f.objects,
            ms(f.first),
            ms(f.unchanged),
            ms(f.change),
            ms(f.statuses),
            ms(f.change) * 1000.0 / f.objects as f64,
            ms(f.fan_out),
            f.in_scope
        );
    }
}
