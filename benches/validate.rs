//! Validation throughput: generates manifest sets of 10,000 and 100,000 objects (one root,
//! hundreds of sub-organizations, the rest memberships), checks them the way `suborg validate`
//! does (YAML, schema, CEL rules, cross-object rules), and prints objects per second.
//!
//! Then the same with groups: 500 and 1,000 groups of 100 users, nested 5 deep (`cargo bench
//! --bench validate -- groups` runs this part alone).
//!
//! Run with `cargo bench --bench validate`. Target: at least 100,000 objects/s, linear growth.

use std::fmt::Write;
use std::time::Instant;

use k8s_openapi::jiff::Timestamp;
use suborg::domain;
use suborg::manifest::Loader;

// The same allocator as the `suborg` binary.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A manifest set of about `n` suborg objects, in one YAML string.
fn generate(n: usize) -> (String, usize) {
    let subs = (n / 50).clamp(100, 900);
    let users = (n - 1 - subs) * 2 / 5;
    let sub_members = n - 1 - subs - users;
    let mut y = String::with_capacity(n * 330);
    let mut objects = 0;
    y.push_str("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: platform\n  labels:\n    suborg.io/organization: acme\n---\n");
    y.push_str("apiVersion: suborg.io/v1alpha1\nkind: Organization\nmetadata:\n  name: acme\nspec:\n  displayName: Acme\n  authentication:\n    allowedEmailDomains: [acme.example]\n---\n");
    objects += 1;
    for u in 0..users {
        writeln!(
            y,
            "apiVersion: suborg.io/v1alpha1\nkind: OrgMembership\nmetadata:\n  name: u{u}\n  namespace: platform\nspec:\n  organizationRef:\n    name: acme\n  subject:\n    kind: User\n    email: user{u}@acme.example\n  roles:\n    - role: member\n---"
        )
        .unwrap();
        objects += 1;
    }
    for s in 0..subs {
        writeln!(
            y,
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: team-{s}\n  labels:\n    suborg.io/organization: sub-{s}\n---\napiVersion: suborg.io/v1alpha1\nkind: SubOrganization\nmetadata:\n  name: sub-{s}\nspec:\n  organizationRef:\n    kind: Organization\n    name: acme\n  displayName: Team {s}\n  admins:\n    - user{}@acme.example\n---",
            s % users
        )
        .unwrap();
        objects += 1;
    }
    for i in 0..sub_members {
        let (s, u) = (i % subs, i % users);
        let temporary = if i % 10 == 0 {
            "\n      temporary:\n        duration: 8h"
        } else {
            ""
        };
        writeln!(
            y,
            "apiVersion: suborg.io/v1alpha1\nkind: OrgMembership\nmetadata:\n  name: m{i}\n  namespace: team-{s}\nspec:\n  organizationRef:\n    kind: SubOrganization\n    name: sub-{s}\n  subject:\n    kind: User\n    email: user{u}@acme.example\n  roles:\n    - role: member{temporary}\n---"
        )
        .unwrap();
        objects += 1;
    }
    (y, objects)
}

/// A set with `groups` groups of 100 users each, in chains of 5 nested groups, spread over 10
/// sub-organizations of 200 members each: `(yaml, objects, group edges)`.
fn generate_groups(groups: usize) -> (String, usize, usize) {
    let subs = 10;
    let per_sub = 200;
    let mut y = String::new();
    let mut objects = 1;
    let mut edges = 0;
    y.push_str("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: platform\n  labels:\n    suborg.io/organization: acme\n---\n");
    y.push_str("apiVersion: suborg.io/v1alpha1\nkind: Organization\nmetadata:\n  name: acme\nspec: {}\n---\n");
    for u in 0..subs * per_sub {
        writeln!(y, "apiVersion: suborg.io/v1alpha1\nkind: OrgMembership\nmetadata:\n  name: u{u}\n  namespace: platform\nspec:\n  organizationRef:\n    name: acme\n  subject:\n    kind: User\n    email: user{u}@acme.example\n  roles:\n    - role: member\n---").unwrap();
        objects += 1;
    }
    for s in 0..subs {
        writeln!(y, "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: team-{s}\n  labels:\n    suborg.io/organization: sub-{s}\n---\napiVersion: suborg.io/v1alpha1\nkind: SubOrganization\nmetadata:\n  name: sub-{s}\nspec:\n  organizationRef:\n    name: acme\n  admins: [user{}@acme.example]\n---", s * per_sub).unwrap();
        objects += 1;
        for k in 0..per_sub {
            writeln!(y, "apiVersion: suborg.io/v1alpha1\nkind: OrgMembership\nmetadata:\n  name: m{k}\n  namespace: team-{s}\nspec:\n  organizationRef:\n    kind: SubOrganization\n    name: sub-{s}\n  subject:\n    kind: User\n    email: user{}@acme.example\n  roles:\n    - role: member\n---", s * per_sub + k).unwrap();
            objects += 1;
        }
    }
    for g in 0..groups {
        let s = g % subs;
        let mut members = String::new();
        for k in 0..100 {
            let u = s * per_sub + (g + k) % per_sub;
            writeln!(members, "    - {{kind: User, email: user{u}@acme.example}}").unwrap();
            edges += 1;
        }
        // Chains of 5: each group nests the next one of its sub-organization's chain.
        if g % 5 != 4 && g + subs < groups {
            writeln!(members, "    - {{kind: Group, name: g{}}}", g + subs).unwrap();
            edges += 1;
        }
        writeln!(y, "apiVersion: suborg.io/v1alpha1\nkind: Group\nmetadata:\n  name: g{g}\n  namespace: team-{s}\nspec:\n  organizationRef:\n    kind: SubOrganization\n    name: sub-{s}\n  members:\n{members}---").unwrap();
        objects += 1;
    }
    (y, objects, edges)
}

fn groups_bench(now: Timestamp) {
    println!(
        "\n{:>7} {:>8} {:>7} {:>10} {:>14} {:>14}",
        "groups", "objects", "edges", "seconds", "edges/s", "rules edges/s"
    );
    let mut per_edge = Vec::new();
    for groups in [500, 1000] {
        let (yaml, objects, edges) = generate_groups(groups);
        let mut best = (f64::MAX, f64::MAX);
        for _ in 0..3 {
            let start = Instant::now();
            let mut loader = Loader::new("default");
            loader.add_bytes("groups.yaml", yaml.as_bytes());
            let (report, set, _) = loader.finish(now);
            let total = start.elapsed().as_secs_f64();
            assert_eq!(report.errors, 0, "{:?}", report.problems.first());
            assert_eq!(report.objects, objects);
            let start = Instant::now();
            let outcome = domain::check(&set, now);
            let rules = start.elapsed().as_secs_f64();
            assert_eq!(outcome.accepted.groups.len(), groups);
            if total < best.0 {
                best = (total, rules);
            }
        }
        per_edge.push(best.1 / edges as f64);
        println!(
            "{groups:>7} {objects:>8} {edges:>7} {:>10.3} {:>14.0} {:>14.0}",
            best.0,
            edges as f64 / best.0,
            edges as f64 / best.1
        );
    }
    println!(
        "rules time per edge, 1000 vs 500 groups: {:.2}x (1.00 is linear)",
        per_edge[1] / per_edge[0]
    );
}

fn main() {
    let now = Timestamp::now();
    if std::env::args().any(|a| a == "groups") {
        groups_bench(now);
        return;
    }
    // Single-threaded, best of three runs, so the figure is the machine's, not the scheduler's.
    let mut rows = Vec::new();
    for n in [10_000, 100_000] {
        let (yaml, objects) = generate(n);
        let mut best = (f64::MAX, f64::MAX);
        for _ in 0..3 {
            let start = Instant::now();
            let mut loader = Loader::new("default");
            loader.add_bytes("bench.yaml", yaml.as_bytes());
            let (report, set, _) = loader.finish(now);
            let total = start.elapsed().as_secs_f64();
            assert_eq!(report.errors, 0, "{:?}", report.problems.first());
            assert_eq!(report.objects, objects);
            // The cross-object rules alone, as the controller runs them on typed objects.
            let start = Instant::now();
            let outcome = domain::check(&set, now);
            let rules = start.elapsed().as_secs_f64();
            assert_eq!(
                outcome.accepted.memberships.len() + 1 + set.sub_organizations.len(),
                objects
            );
            if total < best.0 {
                best = (total, rules);
            }
        }
        rows.push((objects, yaml.len(), best.0, best.1));
    }
    println!(
        "{:>9} {:>9} {:>10} {:>14} {:>16}",
        "objects", "MiB", "seconds", "objects/s", "rules objects/s"
    );
    for (objects, bytes, total, rules) in &rows {
        println!(
            "{objects:>9} {:>9.1} {total:>10.3} {:>14.0} {:>16.0}",
            *bytes as f64 / (1 << 20) as f64,
            *objects as f64 / total,
            *objects as f64 / rules
        );
    }
    let (small, large) = (&rows[0], &rows[1]);
    let per_object_ratio = (large.2 / large.0 as f64) / (small.2 / small.0 as f64);
    println!("time per object, 100k vs 10k: {per_object_ratio:.2}x (1.00 is linear)");
    groups_bench(now);
}
