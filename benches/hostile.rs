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

/// A field of `/proc/self/status`, in KiB: `VmHWM` (peak resident) or `VmRSS` (resident now).
fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
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
        // Resets the peak to what is resident now, so the warm-up's own peak (compiling schemas
        // and rules) cannot hide the case's.
        std::fs::write("/proc/self/clear_refs", "5").expect("the peak can be reset");
        let before = status_kib("VmRSS");
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
            status_kib("VmHWM").saturating_sub(before),
            reason
        );
        return;
    }
    let exe = std::env::current_exe().unwrap();
    println!(
        "{:<14} {:>10} {:>12} {:>14} {:>24} {:>18}  outcome",
        "case", "input", "time", "time per MiB", "extra peak RSS", "lazy commit"
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
        let (bytes, secs, kib, reason) = run(&exe, name, &[]);
        // The same case with mimalloc committing its arenas lazily, as the container image
        // runs it: the reader's own memory, without the allocator's up-front commit per thread.
        let (_, _, lazy_kib, _) = run(
            &exe,
            name,
            &[
                ("MIMALLOC_ARENA_EAGER_COMMIT", "0"),
                ("MIMALLOC_PURGE_DELAY", "0"),
            ],
        );
        println!(
            "{name:<14} {:>8.0}KB {:>10.2}ms {:>12.2}ms {:>10.1}MiB ({:>6.1}x) {:>8.1}MiB ({:>5.1}x)  {reason}",
            bytes / 1024.0,
            secs * 1000.0,
            secs * 1000.0 / (bytes / 1_048_576.0),
            kib / 1024.0,
            kib * 1024.0 / bytes,
            lazy_kib / 1024.0,
            lazy_kib * 1024.0 / bytes
        );
    }
}

/// Runs one case in a child process: its input bytes, seconds, extra peak KiB and outcome.
fn run(exe: &std::path::Path, name: &str, env: &[(&str, &str)]) -> (f64, f64, f64, String) {
    let out = Command::new(exe)
        .env("SUBORG_HOSTILE_CASE", name)
        .envs(env.iter().copied())
        .output()
        .expect("the case runs");
    let text = String::from_utf8_lossy(&out.stdout);
    let f: Vec<&str> = text.split_whitespace().collect();
    (
        f[0].parse().unwrap(),
        f[1].parse().unwrap(),
        f[2].parse().unwrap(),
        f[3].to_owned(),
    )
}
