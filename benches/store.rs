//! Store throughput: applying 10,000 and 100,000 memberships (under a few hundred
//! sub-organizations) into a fresh store, and re-applying the same set (a no-op).
//!
//! `cargo bench --bench store` measures SQLite; with `SUBORG_BENCH_POSTGRES` set to an admin DSN
//! (`.ci/postgres` prints one) it measures PostgreSQL too, in a fresh database per run.
//! Targets: SQLite ≥ 50,000 rows/s fresh, PostgreSQL ≥ 20,000 rows/s fresh, no-op ≥ 200,000
//! objects/s on either.

use std::time::Instant;

use suborg::store::{ApplyOptions, Desired, DesiredMembership, DesiredOrg, SqlStore, Store};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn desired(memberships: usize) -> Desired {
    let subs = 300;
    let users = memberships * 2 / 5;
    let mut d = Desired::default();
    let org = |uid: String, parent: Option<String>, slug: String| DesiredOrg {
        source_uid: uid,
        source_name: slug.clone(),
        parent,
        display_name: slug.clone(),
        slug,
        auth: None,
        member_namespaces: None,
        deletion_policy: "Delete",
    };
    d.organizations
        .push(org("root".into(), None, "acme".into()));
    for s in 0..subs {
        d.organizations.push(org(
            format!("sub-{s}"),
            Some("root".into()),
            format!("team-{s}"),
        ));
    }
    let m = |uid: String, org: String, email: String| DesiredMembership {
        source_uid: uid.clone(),
        source_name: uid,
        organization: org,
        email,
        roles: r#"[{"role":"member"}]"#.into(),
        deletion_policy: "Delete",
    };
    for u in 0..users {
        d.memberships.push(m(
            format!("u{u}"),
            "root".into(),
            format!("user{u}@acme.example"),
        ));
    }
    for i in 0..memberships - users {
        // Each user joins a sub-organization at most once: pair i with a distinct (sub, user).
        let (s, u) = (i % subs, i % users);
        d.memberships.push(m(
            format!("m{i}"),
            format!("sub-{s}"),
            format!("user{u}@acme.example"),
        ));
    }
    d
}

async fn fresh(backend: &str) -> (String, Option<tempfile::TempDir>) {
    if backend == "sqlite" {
        let dir = tempfile::tempdir().unwrap();
        (
            format!("sqlite://{}", dir.path().join("bench.db").display()),
            Some(dir),
        )
    } else {
        let admin = std::env::var("SUBORG_BENCH_POSTGRES").unwrap();
        sqlx::any::install_default_drivers();
        let pool = sqlx::AnyPool::connect(&admin).await.unwrap();
        let name = format!("suborg_bench_{}", uuid::Uuid::new_v4().simple());
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&pool)
            .await
            .unwrap();
        pool.close().await;
        (
            format!("{}/{name}", admin.rsplit_once('/').unwrap().0),
            None,
        )
    }
}

#[tokio::main]
async fn main() {
    let mut backends = vec!["sqlite"];
    if std::env::var("SUBORG_BENCH_POSTGRES").is_ok() {
        backends.push("postgres");
    }
    println!(
        "{:>9} {:>9} {:>14} {:>16}",
        "backend", "rows", "fresh rows/s", "no-op objects/s"
    );
    for backend in backends {
        for n in [10_000, 100_000] {
            let d = desired(n);
            let rows = d.organizations.len() + d.memberships.len();
            let (dsn, _dir) = fresh(backend).await;
            let store = SqlStore::open(&dsn).await.unwrap();
            let opts = ApplyOptions::default();
            let t = Instant::now();
            let plan = store.apply(&d, opts).await.unwrap();
            let fresh_s = t.elapsed().as_secs_f64();
            assert_eq!(plan.changes.len(), rows);
            let t = Instant::now();
            let again = store.apply(&d, opts).await.unwrap();
            let noop_s = t.elapsed().as_secs_f64();
            assert!(again.is_empty());
            println!(
                "{backend:>9} {rows:>9} {:>14.0} {:>16.0}",
                rows as f64 / fresh_s,
                rows as f64 / noop_s
            );
            store.close().await;
        }
    }
}
