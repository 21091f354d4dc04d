//! Prometheus metrics, rendered in the text exposition format. Every label takes values from a
//! fixed set (kinds, error categories, Ready states), so the number of series is bounded.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Upper bounds of the duration histograms, in seconds.
const BUCKETS: [f64; 10] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0];

#[derive(Default, Clone)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl Histogram {
    fn observe(&mut self, seconds: f64) {
        for (bound, n) in BUCKETS.iter().zip(self.counts.iter_mut()) {
            if seconds <= *bound {
                *n += 1;
            }
        }
        self.count += 1;
        self.sum += seconds;
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        for (bound, n) in BUCKETS.iter().zip(self.counts.iter()) {
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {n}");
        }
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {}",
            self.count
        );
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let _ = writeln!(out, "{name}_sum{braces} {}", self.sum);
        let _ = writeln!(out, "{name}_count{braces} {}", self.count);
    }
}

#[derive(Default)]
struct Inner {
    reconciles: BTreeMap<&'static str, u64>,
    failures: BTreeMap<(&'static str, &'static str), u64>,
    durations: BTreeMap<&'static str, Histogram>,
    objects: BTreeMap<(&'static str, &'static str), u64>,
    syncs: BTreeMap<&'static str, u64>,
    sync_duration: Histogram,
    drift: u64,
}

/// The controller's metrics.
#[derive(Default)]
pub struct Metrics {
    inner: Mutex<Inner>,
    leader: AtomicBool,
}

impl Metrics {
    fn with<T>(&self, f: impl FnOnce(&mut Inner) -> T) -> T {
        // A panic while holding the lock cannot leave the counters inconsistent: take them.
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut inner)
    }

    /// One reconcile of `kind` finished after `elapsed`.
    pub fn reconciled(&self, kind: &'static str, elapsed: Duration) {
        self.with(|m| {
            *m.reconciles.entry(kind).or_default() += 1;
            m.durations
                .entry(kind)
                .or_default()
                .observe(elapsed.as_secs_f64());
        });
    }

    /// One reconcile of `kind` failed with an error of `category`.
    pub fn failed(&self, kind: &'static str, category: &'static str) {
        self.with(|m| *m.failures.entry((kind, category)).or_default() += 1);
    }

    /// A store sync finished: `result` is `applied`, `unchanged` or an error category.
    pub fn synced(&self, result: &'static str, elapsed: Duration) {
        self.with(|m| {
            *m.syncs.entry(result).or_default() += 1;
            m.sync_duration.observe(elapsed.as_secs_f64());
        });
    }

    /// A sync rewrote rows that had been changed outside suborg.
    pub fn drift_corrected(&self, rows: u64) {
        self.with(|m| m.drift += rows);
    }

    /// How many objects of each kind are in each Ready state after the last sync.
    pub fn set_objects(&self, counts: BTreeMap<(&'static str, &'static str), u64>) {
        self.with(|m| m.objects = counts);
    }

    /// Whether this replica holds the leader lease.
    pub fn set_leader(&self, leader: bool) {
        self.leader.store(leader, Ordering::Relaxed);
    }

    /// The metrics in Prometheus' text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        self.with(|m| {
            out.push_str("# HELP suborg_reconciles_total Reconciles run, by kind.\n# TYPE suborg_reconciles_total counter\n");
            for (kind, n) in &m.reconciles {
                let _ = writeln!(out, "suborg_reconciles_total{{kind=\"{kind}\"}} {n}");
            }
            out.push_str("# HELP suborg_reconcile_failures_total Reconciles that failed, by kind and error category.\n# TYPE suborg_reconcile_failures_total counter\n");
            for ((kind, category), n) in &m.failures {
                let _ = writeln!(
                    out,
                    "suborg_reconcile_failures_total{{kind=\"{kind}\",category=\"{category}\"}} {n}"
                );
            }
            out.push_str("# HELP suborg_reconcile_duration_seconds Time a reconcile takes, by kind.\n# TYPE suborg_reconcile_duration_seconds histogram\n");
            for (kind, h) in &m.durations {
                h.render(
                    &mut out,
                    "suborg_reconcile_duration_seconds",
                    &format!("kind=\"{kind}\""),
                );
            }
            out.push_str("# HELP suborg_objects Objects by kind and Ready status, as of the last sync.\n# TYPE suborg_objects gauge\n");
            for ((kind, ready), n) in &m.objects {
                let _ = writeln!(
                    out,
                    "suborg_objects{{kind=\"{kind}\",ready=\"{ready}\"}} {n}"
                );
            }
            out.push_str("# HELP suborg_store_syncs_total Syncs of the store, by result.\n# TYPE suborg_store_syncs_total counter\n");
            for (result, n) in &m.syncs {
                let _ = writeln!(out, "suborg_store_syncs_total{{result=\"{result}\"}} {n}");
            }
            out.push_str("# HELP suborg_store_sync_duration_seconds Time a sync of the store takes.\n# TYPE suborg_store_sync_duration_seconds histogram\n");
            m.sync_duration
                .render(&mut out, "suborg_store_sync_duration_seconds", "");
            out.push_str("# HELP suborg_drift_corrected_rows_total Store rows rewritten because they had been changed outside suborg.\n# TYPE suborg_drift_corrected_rows_total counter\n");
            let _ = writeln!(out, "suborg_drift_corrected_rows_total {}", m.drift);
        });
        out.push_str("# HELP suborg_leader Whether this replica holds the leader lease.\n# TYPE suborg_leader gauge\n");
        let _ = writeln!(
            out,
            "suborg_leader {}",
            u8::from(self.leader.load(Ordering::Relaxed))
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_histograms_in_text_format() {
        let m = Metrics::default();
        m.reconciled("Organization", Duration::from_millis(20));
        m.reconciled("Organization", Duration::from_secs(2));
        m.failed("OrgMembership", "StoreUnavailable");
        m.set_leader(true);
        let text = m.render();
        assert!(text.contains("suborg_reconciles_total{kind=\"Organization\"} 2\n"));
        assert!(text.contains(
            "suborg_reconcile_failures_total{kind=\"OrgMembership\",category=\"StoreUnavailable\"} 1\n"
        ));
        assert!(text.contains(
            "suborg_reconcile_duration_seconds_bucket{kind=\"Organization\",le=\"0.025\"} 1\n"
        ));
        assert!(text.contains(
            "suborg_reconcile_duration_seconds_bucket{kind=\"Organization\",le=\"+Inf\"} 2\n"
        ));
        assert!(
            text.contains("suborg_reconcile_duration_seconds_count{kind=\"Organization\"} 2\n")
        );
        assert!(text.contains("suborg_leader 1\n"));
        // Every sample line belongs to a family announced by a TYPE line.
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let name = line.split(['{', ' ']).next().unwrap();
            let family = name
                .trim_end_matches("_bucket")
                .trim_end_matches("_sum")
                .trim_end_matches("_count");
            assert!(
                text.contains(&format!("# TYPE {family} ")),
                "{line} has no TYPE"
            );
        }
    }
}
