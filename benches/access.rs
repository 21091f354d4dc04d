//! `suborg get access --user`: how long the store takes to answer "what can this user reach,
//! and through what" over a store of 100,000 memberships, 1,000 groups (half of them nested in
//! chains of 5) and 1,000 projects with 12,000 project memberships. Target: under 10 ms.
//!
//! `cargo bench --bench access` measures SQLite; with `SUBORG_BENCH_POSTGRES` set to an admin
//! DSN (`.ci/postgres` prints one) PostgreSQL too. Prints the median, 99th percentile and
//! slowest answer over 500 users.

use std::time::Instant;

use suborg::store::{
    ApplyOptions, Desired, DesiredGroup, DesiredGroupMember, DesiredMembership, DesiredOrg,
    DesiredOwned, DesiredProject, DesiredProjectMembership, DesiredSubjectMembership,
    ProjectSubject, SqlStore, Store,
};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const USERS: usize = 40_000;
const SUBS: usize = 100;
const PER_SUB: usize = 600;
const ROOT_GROUPS: usize = 500;
const GROUPS_PER_SUB: usize = 5;
const ROOT_PROJECTS: usize = 200;
const PROJECTS_PER_SUB: usize = 8;

fn email(u: usize) -> String {
    format!("user{}@acme.example", u % USERS)
}

/// The `k`th member of sub-organization `s`.
fn sub_member(s: usize, k: usize) -> usize {
    (s * 400 + k) % USERS
}

fn store_state() -> Desired {
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
    let membership = |uid: String, org: String, email: String| DesiredMembership {
        source_uid: uid.clone(),
        source_name: uid,
        organization: org,
        email,
        roles: r#"[{"role":"member"}]"#.into(),
        deletion_policy: "Delete",
    };
    let owned = |uid: String, org: &str| DesiredOwned {
        source_uid: uid.clone(),
        source_name: uid.clone(),
        organization: org.to_owned(),
        name: format!("ns/{uid}"),
        display_name: uid,
        deletion_policy: "Delete",
    };
    d.organizations.push(org("acme".into(), None));
    for u in 0..USERS {
        d.memberships
            .push(membership(format!("u{u}"), "acme".into(), email(u)));
    }
    for s in 0..SUBS {
        d.organizations
            .push(org(format!("sub-{s}"), Some("acme".into())));
        for k in 0..PER_SUB {
            d.memberships.push(membership(
                format!("s{s}-{k}"),
                format!("sub-{s}"),
                email(sub_member(s, k)),
            ));
        }
    }
    for g in 0..ROOT_GROUPS {
        d.groups.push(DesiredGroup {
            group: owned(format!("rg{g}"), "acme"),
            members: (0..50)
                .map(|k| DesiredGroupMember::User(email(g * 80 + k)))
                .collect(),
        });
    }
    for s in 0..SUBS {
        // Chains: group 4 is nested in 3, ... in 0; the desired state lists leaves first.
        for j in (0..GROUPS_PER_SUB).rev() {
            let mut members: Vec<DesiredGroupMember> = (0..40)
                .map(|k| DesiredGroupMember::User(email(sub_member(s, j * 100 + k))))
                .collect();
            if j + 1 < GROUPS_PER_SUB {
                members.push(DesiredGroupMember::Group(format!("sg{s}-{}", j + 1)));
            }
            members.sort();
            d.groups.push(DesiredGroup {
                group: owned(format!("sg{s}-{j}"), &format!("sub-{s}")),
                members,
            });
        }
        for r in [s * 5 % ROOT_GROUPS, (s * 5 + 1) % ROOT_GROUPS] {
            d.subject_memberships.push(DesiredSubjectMembership {
                source_uid: format!("add-{s}-{r}"),
                source_name: format!("add-{s}-{r}"),
                organization: format!("sub-{s}"),
                kind: "Group",
                subject: format!("rg{r}"),
                subject_name: format!("ns/rg{r}"),
                roles: r#"[{"role":"member"}]"#.into(),
                deletion_policy: "Delete",
            });
        }
    }
    let project = |uid: String, org: String| DesiredProject {
        source_uid: uid.clone(),
        source_name: uid.clone(),
        organization: org,
        name: format!("ns/{uid}"),
        slug: uid.clone(),
        display_name: uid,
        description: None,
        gateway: None,
        connections: vec![],
        deletion_policy: "Delete",
    };
    let pm = |uid: String, project: String, org: String, subject: ProjectSubject| {
        DesiredProjectMembership {
            source_uid: uid.clone(),
            source_name: uid,
            project,
            organization: org,
            subject_name: format!("{subject:?}"),
            subject,
            roles: r#"[{"role":"viewer"}]"#.into(),
            deletion_policy: "Delete",
        }
    };
    for p in 0..ROOT_PROJECTS {
        let uid = format!("rp{p}");
        d.projects.push(project(uid.clone(), "acme".into()));
        for k in 0..10 {
            d.project_memberships.push(pm(
                format!("{uid}-u{k}"),
                uid.clone(),
                "acme".into(),
                ProjectSubject::User(email(p * 37 + k * 4001)),
            ));
        }
        for (k, g) in [p % ROOT_GROUPS, (p + 250) % ROOT_GROUPS]
            .into_iter()
            .enumerate()
        {
            d.project_memberships.push(pm(
                format!("{uid}-g{k}"),
                uid.clone(),
                "acme".into(),
                ProjectSubject::Own("Group", format!("rg{g}")),
            ));
        }
    }
    for s in 0..SUBS {
        let org = format!("sub-{s}");
        for p in 0..PROJECTS_PER_SUB {
            let uid = format!("sp{s}-{p}");
            d.projects.push(project(uid.clone(), org.clone()));
            for k in 0..10 {
                d.project_memberships.push(pm(
                    format!("{uid}-u{k}"),
                    uid.clone(),
                    org.clone(),
                    ProjectSubject::User(email(sub_member(s, p * 60 + k))),
                ));
            }
            d.project_memberships.push(pm(
                format!("{uid}-own"),
                uid.clone(),
                org.clone(),
                ProjectSubject::Own("Group", format!("sg{s}-0")),
            ));
            d.project_memberships.push(pm(
                format!("{uid}-shared"),
                uid.clone(),
                org.clone(),
                ProjectSubject::Shared("Group", format!("rg{}", s * 5 % ROOT_GROUPS)),
            ));
        }
    }
    d
}

async fn fresh(backend: &str) -> (String, Option<tempfile::TempDir>) {
    match backend {
        "sqlite" => {
            let dir = tempfile::tempdir().unwrap();
            let dsn = format!("sqlite://{}", dir.path().join("access.db").display());
            (dsn, Some(dir))
        }
        _ => {
            let admin = std::env::var("SUBORG_BENCH_POSTGRES").unwrap();
            sqlx::any::install_default_drivers();
            let name = format!("suborg_bench_{}", uuid::Uuid::new_v4().simple());
            let pool = sqlx::AnyPool::connect(&admin).await.unwrap();
            sqlx::query(&format!("CREATE DATABASE {name}"))
                .execute(&pool)
                .await
                .unwrap();
            pool.close().await;
            let base = admin.rsplit_once('/').map(|(b, _)| b).unwrap();
            (format!("{base}/{name}"), None)
        }
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let mut backends = vec!["sqlite"];
    if std::env::var("SUBORG_BENCH_POSTGRES").is_ok() {
        backends.push("postgres");
    }
    let d = store_state();
    println!(
        "store: {} memberships, {} groups, {} projects, {} project memberships",
        d.memberships.len(),
        d.groups.len(),
        d.projects.len(),
        d.project_memberships.len()
    );
    println!(
        "{:>9} {:>10} {:>10} {:>10} {:>12}",
        "backend", "median ms", "p99 ms", "max ms", "entries/user"
    );
    for backend in backends {
        let (dsn, _dir) = fresh(backend).await;
        let store = SqlStore::open(&dsn).await.unwrap();
        store.apply(&d, ApplyOptions::default()).await.unwrap();
        // Warm the connection pool and the page cache as a running CLI or controller would.
        store.access(&email(0)).await.unwrap();
        let mut times = Vec::new();
        let mut entries = 0;
        for i in 0..500 {
            let who = email(i * 79);
            let t = Instant::now();
            let found = store.access(&who).await.unwrap().expect("a stored user");
            times.push(t.elapsed().as_secs_f64() * 1000.0);
            entries += found.len();
        }
        times.sort_by(f64::total_cmp);
        println!(
            "{backend:>9} {:>10.2} {:>10.2} {:>10.2} {:>12.1}",
            times[times.len() / 2],
            times[times.len() * 99 / 100],
            times[times.len() - 1],
            entries as f64 / times.len() as f64
        );
        store.close().await;
    }
}
