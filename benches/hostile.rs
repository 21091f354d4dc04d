//! Hostile input: how long `suborg validate` takes, and how much memory, on documents built to
//! make a YAML reader slow or large, against their nesting depth and alias fan-out. Both must
//! stay flat: refused at once, in time and memory proportional to the input whatever its shape
//! (`depth`: nested flow lists; `fan`: one anchor referenced over and over; `plain`: values
//! packed as densely as YAML allows, no aliases; `text`: one long value referenced over and
//! over), while the densest real object (`members`: a Group's members at their shortest) is
//! read.
//!
//! Run with `cargo bench --bench hostile`. Each case runs in a child process of its own, so its
//! peak resident memory (`VmHWM`) is its alone.

use std::process::Command;
use std::time::Instant;

use k8s_openapi::jiff::Timestamp;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn nested(depth: usize) -> String {
    format!(
        "apiVersion: suborg.io/v1alpha1\nkind: Organization\nmetadata:\n  name: acme\n  labels: {{a: {}x{}}}\nspec: {{}}\n",
        "[".repeat(depth),
        "]".repeat(depth)
    )
}

fn alias_bomb(fan: usize) -> String {
    format!(
        "apiVersion: suborg.io/v1alpha1\nkind: Organization\nmetadata:\n  name: acme\n  labels: {{x: &a [{}], y: [{}]}}\nspec: {{}}\n",
        vec!["r"; fan].join(", "),
        vec!["*a"; fan].join(", ")
    )
}

/// The baseline: a plain document of about the alias bomb's size, no aliases, as dense in
/// values as YAML allows, so the memory it takes is what the parser needs per byte of input.
fn plain(n: usize) -> String {
    format!(
        "apiVersion: suborg.io/v1alpha1\nkind: Organization\nmetadata:\n  name: acme\n  labels: {{x: [{}]}}\nspec: {{}}\n",
        vec!["r"; n].join(",")
    )
}

/// The densest real object: a Group with `n` members at their shortest.
fn members(n: usize) -> String {
    format!(
        "apiVersion: suborg.io/v1alpha1\nkind: Group\nmetadata: {{name: g, namespace: n}}\nspec:\n  organizationRef: {{kind: Organization, name: o}}\n  members:\n{}",
        "  - {kind: Group, name: g}\n".repeat(n)
    )
}

/// One long value anchored, then referenced `refs` times.
fn long_text(refs: usize) -> String {
    format!(
        "apiVersion: suborg.io/v1alpha1\nkind: Organization\nmetadata:\n  name: acme\n  annotations: {{x: &a {}, y: [{}]}}\nspec: {{}}\n",
        "t".repeat(100_000),
        vec!["*a"; refs].join(", ")
    )
}

fn case(name: &str) -> String {
    let (kind, n) = name.split_once('=').expect("kind=n");
    let n: usize = n.parse().unwrap();
    match kind {
        "depth" => nested(n),
        "fan" => alias_bomb(n),
        "plain" => plain(n),
        "members" => members(n),
        "text" => long_text(n),
        _ => panic!("unknown case {name}"),
    }
}

fn peak_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap_or(0)
}

fn main() {
    // A child: run one case and print `bytes seconds peak_kib`.
    if let Ok(name) = std::env::var("SUBORG_HOSTILE_CASE") {
        let doc = case(&name);
        // Schemas and CEL programs are compiled on first use: not part of the figure.
        suborg::manifest::check_sources(
            [("warm.yaml", nested(1).as_bytes())],
            "default",
            Timestamp::now(),
        );
        let before = peak_kib();
        let started = Instant::now();
        let report = suborg::manifest::check_sources(
            [("hostile.yaml", doc.as_bytes())],
            "default",
            Timestamp::now(),
        );
        let secs = started.elapsed().as_secs_f64();
        let reason = report
            .problems
            .first()
            .map(|p| format!("{:?}", p.problem.reason))
            .unwrap_or_else(|| "accepted".into());
        println!(
            "{} {secs} {} {}",
            doc.len(),
            peak_kib().saturating_sub(before),
            reason
        );
        return;
    }
    let exe = std::env::current_exe().unwrap();
    println!(
        "{:<14} {:>10} {:>12} {:>14} {:>16}  outcome",
        "case", "input", "time", "time per MiB", "extra peak RSS"
    );
    let cases = [
        "depth=10",
        "depth=90",
        "depth=1000",
        "depth=40000",
        "depth=100000",
        "depth=1000000",
        "fan=100",
        "fan=1000",
        "fan=3000",
        "fan=10000",
        "fan=30000",
        "fan=300000",
        "fan=1000000",
        "plain=5000",
        "plain=30000",
        "plain=100000",
        "plain=1000000",
        "plain=3000000",
        "text=3",
        "text=1000",
        "members=1000",
        "members=10000",
    ];
    for name in cases {
        let out = Command::new(&exe)
            .env("SUBORG_HOSTILE_CASE", name)
            .output()
            .expect("the case runs");
        let text = String::from_utf8_lossy(&out.stdout);
        let f: Vec<&str> = text.split_whitespace().collect();
        let (bytes, secs, kib, reason): (f64, f64, f64, &str) = (
            f[0].parse().unwrap(),
            f[1].parse().unwrap(),
            f[2].parse().unwrap(),
            f[3],
        );
        println!(
            "{name:<14} {:>8.0}KB {:>10.2}ms {:>12.2}ms {:>10.1}MiB ({:.1}x)  {reason}",
            bytes / 1024.0,
            secs * 1000.0,
            secs * 1000.0 / (bytes / 1_048_576.0),
            kib / 1024.0,
            kib * 1024.0 / bytes
        );
    }
}
