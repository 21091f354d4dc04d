//! Store throughput: applying 10,000 and 100,000 memberships (under a few hundred
//! sub-organizations) into a fresh store, and re-applying the same set (a no-op).
//!
//! `cargo bench --bench store` measures SQLite; with `SUBORG_BENCH_POSTGRES` set to an admin DSN
//! (`.ci/postgres` prints one) it measures PostgreSQL too, in a fresh database per run.
//! Targets: SQLite ≥ 50,000 rows/s fresh, PostgreSQL ≥ 20,000 rows/s fresh, no-op ≥ 200,000
//! objects/s on either.
//!
//! Then groups: 500 and 1,000 groups of 100 members nested 5 deep, written, re-applied, and
//! resolved into a sub-organization's effective members (`cargo bench --bench store -- groups`
//! runs this part alone).

use std::time::Instant;

use suborg::store::{
    ApplyOptions, Desired, DesiredGroup, DesiredGroupMember, DesiredMembership, DesiredOrg,
    DesiredOwned, SqlStore, Store,
};

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

/// 10 sub-organizations of 200 members, and `groups` groups of 100 of those members each,
/// nested in chains of 5: `(desired, group edges)`.
fn desired_groups(groups: usize) -> (Desired, usize) {
    let (subs, per_sub) = (10, 200);
    let mut d = Desired::default();
    let org = |uid: String, parent: Option<String>| DesiredOrg {
        source_uid: uid.clone(),
        source_name: uid.clone(),
        parent,
        display_name: uid.clone(),
        slug: uid,
        auth: None,
        member_namespaces: None,
        deletion_policy: "Delete",
    };
    d.organizations.push(org("acme".into(), None));
    let m = |uid: String, org: String, email: String| DesiredMembership {
        source_uid: uid.clone(),
        source_name: uid,
        organization: org,
        email,
        roles: r#"[{"role":"member"}]"#.into(),
        deletion_policy: "Delete",
    };
    for u in 0..subs * per_sub {
        d.memberships.push(m(
            format!("u{u}"),
            "acme".into(),
            format!("user{u}@acme.example"),
        ));
    }
    for s in 0..subs {
        d.organizations
            .push(org(format!("sub-{s}"), Some("acme".into())));
        for k in 0..per_sub {
            let u = s * per_sub + k;
            d.memberships.push(m(
                format!("s{s}-{k}"),
                format!("sub-{s}"),
                format!("user{u}@acme.example"),
            ));
        }
    }
    let mut edges = 0;
    // Innermost first, as desired_from orders them.
    for g in (0..groups).rev() {
        let s = g % subs;
        let mut members: Vec<DesiredGroupMember> = (0..100)
            .map(|k| {
                DesiredGroupMember::User(format!(
                    "user{}@acme.example",
                    s * per_sub + (g + k) % per_sub
                ))
            })
            .collect();
        if g % 5 != 4 && g + subs < groups {
            members.push(DesiredGroupMember::Group(format!("g{}", g + subs)));
        }
        edges += members.len();
        members.sort();
        d.groups.push(DesiredGroup {
            group: DesiredOwned {
                source_uid: format!("g{g}"),
                source_name: format!("g{g}"),
                organization: format!("sub-{s}"),
                name: format!("team-{s}/g{g}"),
                display_name: format!("g{g}"),
                deletion_policy: "Delete",
            },
            members,
        });
    }
    (d, edges)
}

async fn groups_bench(backends: &[&str]) {
    println!(
        "\n{:>9} {:>7} {:>7} {:>15} {:>16} {:>18}",
        "backend", "groups", "edges", "fresh edges/s", "no-op rows/s", "effective edges/s"
    );
    for &backend in backends {
        let mut per_edge = Vec::new();
        for groups in [500, 1000] {
            let (d, edges) = desired_groups(groups);
            let objects = d.organizations.len() + d.memberships.len() + d.groups.len();
            let (dsn, _dir) = fresh(backend).await;
            let store = SqlStore::open(&dsn).await.unwrap();
            let opts = ApplyOptions::default();
            // Users and memberships first: the figure is for groups and their edges.
            let mut base = d.clone();
            base.groups.clear();
            store.apply(&base, opts).await.unwrap();
            let t = Instant::now();
            let plan = store.apply(&d, opts).await.unwrap();
            let fresh_s = t.elapsed().as_secs_f64();
            assert_eq!(plan.changes.len(), groups);
            let t = Instant::now();
            assert!(store.apply(&d, opts).await.unwrap().is_empty());
            let noop_s = t.elapsed().as_secs_f64();
            let sub = store
                .organizations()
                .await
                .unwrap()
                .into_iter()
                .find(|o| o.slug == "sub-0")
                .unwrap();
            let t = Instant::now();
            let effective = store.effective_members(&sub.id).await.unwrap();
            let eff_s = t.elapsed().as_secs_f64();
            assert_eq!(effective.len(), 200);
            let sub_edges = edges / 10;
            per_edge.push(eff_s / sub_edges as f64);
            println!(
                "{backend:>9} {groups:>7} {edges:>7} {:>15.0} {:>16.0} {:>18.0}",
                edges as f64 / fresh_s,
                (objects + edges) as f64 / noop_s,
                sub_edges as f64 / eff_s
            );
            store.close().await;
        }
        println!(
            "{backend}: effective-membership time per edge, 1000 vs 500 groups: {:.2}x (1.00 is linear)",
            per_edge[1] / per_edge[0]
        );
    }
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
    if std::env::args().any(|a| a == "groups") {
        groups_bench(&backends).await;
        return;
    }
    println!(
        "{:>9} {:>9} {:>14} {:>16}",
        "backend", "rows", "fresh rows/s", "no-op objects/s"
    );
    for &backend in &backends {
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
    groups_bench(&backends).await;
}
