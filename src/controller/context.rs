//! What every reconcile shares, and how the controller is configured: the client, the sync, the
//! Event recorder, retry delays, and the one error type of a reconcile.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kube::Client;

use super::sync::Syncer;
use super::written::Written;
use super::{http, leader};

/// The finalizer that removes an object's rows from the store before it goes.
pub const FINALIZER: &str = "suborg.io/store-cleanup";

/// The field manager of every write the controller makes.
pub const MANAGER: &str = "suborg";

/// What can go wrong in a reconcile. [`Error::category`] is the fixed, bounded name used as
/// metric label and Event reason.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A request to the API server failed.
    #[error("Kubernetes API request failed: {0}")]
    Kube(#[source] kube::Error),
    /// The store could not be written; `category` says how (`StoreUnavailable`, ...).
    #[error("{message}")]
    Store {
        /// Fixed category.
        category: &'static str,
        /// What happened, without secrets.
        message: String,
    },
    /// A deletion has to wait (a root with sub-organizations, rows still in the store).
    #[error("{0}")]
    DeletionBlocked(String),
    /// The CRDs are not installed.
    #[error("{0}")]
    CrdsMissing(String),
    /// `--selector` is not a label selector the API server takes.
    #[error("{0}")]
    InvalidSelector(String),
    /// Another replica took the leader Lease.
    #[error("lost the leader Lease; stopping so that only one replica writes to the store")]
    LeaseLost,
}

impl Error {
    /// The error's fixed category.
    pub fn category(&self) -> &'static str {
        match self {
            Self::Kube(_) => "KubeApiError",
            Self::Store { category, .. } => category,
            Self::DeletionBlocked(_) => "DeletionBlocked",
            Self::CrdsMissing(_) => "CrdsMissing",
            Self::InvalidSelector(_) => "InvalidSelector",
            Self::LeaseLost => "LeaseLost",
        }
    }
}

/// `d` plus up to a tenth more, at random.
pub fn jitter(d: Duration) -> Duration {
    let r = uuid::Uuid::new_v4().as_u128() as u64 % 1000;
    d + d.mul_f64(r as f64 / 10_000.0)
}

/// Retry delays per object: 5 s doubling to 5 min, with jitter; reset by a success.
#[derive(Default)]
pub struct Backoff {
    failures: Mutex<HashMap<String, u32>>,
}

impl Backoff {
    /// The delay before retrying `key`, counting this failure.
    pub fn next(&self, key: &str) -> Duration {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let n = failures.entry(key.to_owned()).or_default();
        let delay = Duration::from_secs(5 * 2u64.pow((*n).min(6))).min(Duration::from_secs(300));
        *n = n.saturating_add(1);
        jitter(delay)
    }

    /// Forgets `key`'s failures.
    pub fn reset(&self, key: &str) {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        failures.remove(key);
    }
}

/// What every reconcile shares.
pub struct Context {
    /// The API client.
    pub client: Client,
    /// The shared sync.
    pub syncer: Arc<Syncer>,
    /// Publishes Events; `None` where no Events are wanted.
    pub recorder: Option<super::events::EventSink>,
    /// Health and metrics.
    pub health: Arc<http::Health>,
    /// Retry delays.
    pub backoff: Backoff,
    /// How often each object is looked at again when nothing happens.
    pub resync: Duration,
    /// The statuses this controller wrote and the caches may not show yet.
    pub written: Written,
}

/// How the controller runs.
#[derive(Debug, Clone)]
pub struct Config {
    /// The store DSN.
    pub store: String,
    /// Resync period: drift in the store is corrected at least this often.
    pub resync: Duration,
    /// Where to serve `/metrics`, `/healthz` and `/readyz`.
    pub metrics_addr: Option<SocketAddr>,
    /// Leader election, when more than one replica may run.
    pub leader: Option<leader::LeaderConfig>,
    /// Only objects with these labels are managed (a label selector), for running several
    /// controllers on one cluster, each with its own store.
    pub selector: Option<String>,
    /// Take over store rows suborg did not create.
    pub adopt: bool,
    /// Take the store over from another controller that claimed it ([`crate::store::Writer`]).
    pub take_over_store: bool,
}
