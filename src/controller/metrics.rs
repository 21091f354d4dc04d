//! Prometheus metrics (`prometheus-client`), exposed in the OpenMetrics text format. Every label
//! takes values from a fixed set (kinds, error categories, Ready states, sync results), so the
//! number of series is bounded.

use std::collections::BTreeMap;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Upper bounds of the duration histograms, in seconds.
const BUCKETS: [f64; 10] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FailureLabels {
    kind: &'static str,
    category: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ObjectLabels {
    kind: &'static str,
    ready: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

fn histogram() -> Histogram {
    Histogram::new(BUCKETS)
}

/// The controller's metrics, registered once.
pub struct Metrics {
    registry: Registry,
    reconciles: Family<KindLabel, Counter>,
    failures: Family<FailureLabels, Counter>,
    durations: Family<KindLabel, Histogram, fn() -> Histogram>,
    objects: Family<ObjectLabels, Gauge>,
    syncs: Family<ResultLabel, Counter>,
    sync_duration: Histogram,
    drift: Counter,
    leader: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        let m = Self {
            registry: Registry::default(),
            reconciles: Family::default(),
            failures: Family::default(),
            durations: Family::new_with_constructor(histogram),
            objects: Family::default(),
            syncs: Family::default(),
            sync_duration: histogram(),
            drift: Counter::default(),
            leader: Gauge::default(),
        };
        let mut registry = Registry::default();
        registry.register(
            "suborg_reconciles",
            "Reconciles run, by kind",
            m.reconciles.clone(),
        );
        registry.register(
            "suborg_reconcile_failures",
            "Reconciles that failed, by kind and error category",
            m.failures.clone(),
        );
        registry.register(
            "suborg_reconcile_duration_seconds",
            "Time a reconcile takes, by kind",
            m.durations.clone(),
        );
        registry.register(
            "suborg_objects",
            "Objects by kind and Ready status, as of the last sync",
            m.objects.clone(),
        );
        registry.register(
            "suborg_store_syncs",
            "Syncs of the store, by result",
            m.syncs.clone(),
        );
        registry.register(
            "suborg_store_sync_duration_seconds",
            "Time a sync of the store takes",
            m.sync_duration.clone(),
        );
        registry.register(
            "suborg_drift_corrected_rows",
            "Store rows rewritten because they had been changed outside suborg",
            m.drift.clone(),
        );
        registry.register(
            "suborg_leader",
            "Whether this replica holds the leader lease",
            m.leader.clone(),
        );
        Self { registry, ..m }
    }
}

impl Metrics {
    /// One reconcile of `kind` finished after `elapsed`.
    pub fn reconciled(&self, kind: &'static str, elapsed: Duration) {
        let label = KindLabel { kind };
        self.reconciles.get_or_create(&label).inc();
        self.durations
            .get_or_create(&label)
            .observe(elapsed.as_secs_f64());
    }

    /// One reconcile of `kind` failed with an error of `category`.
    pub fn failed(&self, kind: &'static str, category: &'static str) {
        self.failures
            .get_or_create(&FailureLabels { kind, category })
            .inc();
    }

    /// A store sync finished: `result` is `applied`, `unchanged` or an error category.
    pub fn synced(&self, result: &'static str, elapsed: Duration) {
        self.syncs.get_or_create(&ResultLabel { result }).inc();
        self.sync_duration.observe(elapsed.as_secs_f64());
    }

    /// A sync rewrote rows that had been changed outside suborg.
    pub fn drift_corrected(&self, rows: u64) {
        self.drift.inc_by(rows);
    }

    /// How many objects of each kind are in each Ready state after the last sync; a state no
    /// object is in any more goes from the exposition.
    pub fn set_objects(&self, counts: BTreeMap<(&'static str, &'static str), u64>) {
        self.objects.clear();
        for ((kind, ready), n) in counts {
            self.objects
                .get_or_create(&ObjectLabels { kind, ready })
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
    }

    /// Whether this replica holds the leader lease.
    pub fn set_leader(&self, leader: bool) {
        self.leader.set(i64::from(leader));
    }

    /// The metrics in the OpenMetrics text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

/// The content type of [`Metrics::render`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

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
        m.set_objects(BTreeMap::from([(("Group", "True"), 3)]));
        m.set_objects(BTreeMap::from([(("Group", "False"), 1)]));
        let text = m.render();
        assert!(text.contains("suborg_reconciles_total{kind=\"Organization\"} 2\n"));
        assert!(text.contains(
            "suborg_reconcile_failures_total{kind=\"OrgMembership\",category=\"StoreUnavailable\"} 1\n"
        ));
        assert!(text.contains(
            "suborg_reconcile_duration_seconds_bucket{le=\"0.025\",kind=\"Organization\"} 1\n"
        ));
        assert!(text.contains(
            "suborg_reconcile_duration_seconds_bucket{le=\"+Inf\",kind=\"Organization\"} 2\n"
        ));
        assert!(
            text.contains("suborg_reconcile_duration_seconds_count{kind=\"Organization\"} 2\n")
        );
        assert!(text.contains("suborg_leader 1\n"));
        assert!(text.contains("suborg_objects{kind=\"Group\",ready=\"False\"} 1\n"));
        assert!(
            !text.contains("ready=\"True\""),
            "a Ready state no object is in any more is gone:\n{text}"
        );
        assert!(text.ends_with("# EOF\n"));
        // Every sample line belongs to a family announced by a TYPE line.
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let name = line.split(['{', ' ']).next().unwrap();
            let family = name
                .trim_end_matches("_bucket")
                .trim_end_matches("_sum")
                .trim_end_matches("_count")
                .trim_end_matches("_total");
            assert!(
                text.contains(&format!("# TYPE {family} ")),
                "{line} has no TYPE"
            );
        }
    }
}
