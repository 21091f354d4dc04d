//! `suborg run`: the controller, with its settings from flags or the environment.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::ValueEnum;

use crate::controller::{self, Config, leader::LeaderConfig};

/// How logs are written.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// One JSON object a line, for log collectors.
    Json,
    /// Human-readable lines.
    Text,
}

/// Arguments of `suborg run`.
#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// The store: `sqlite://PATH` or `postgres://USER@HOST/DB` (password from
    /// SUBORG_STORE_PASSWORD or SUBORG_STORE_PASSWORD_FILE, never from a flag). Defaults to a
    /// SQLite file in the user's data directory.
    #[arg(long, env = "SUBORG_STORE")]
    pub store: Option<String>,
    /// How often every object is checked again and drift in the store corrected, as a
    /// duration such as 5m or 1h30m.
    #[arg(long, env = "SUBORG_RESYNC", default_value = "5m", value_parser = parse_period)]
    pub resync: Duration,
    /// Address of /metrics, /healthz and /readyz; `off` to serve none.
    #[arg(long, env = "SUBORG_METRICS_ADDR", default_value = "0.0.0.0:8080")]
    pub metrics_addr: String,
    /// Take the leader Lease before writing, so replicas never write at once.
    #[arg(long, env = "SUBORG_LEADER_ELECTION")]
    pub leader_election: bool,
    /// Namespace of the leader Lease (the controller's own).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    pub lease_namespace: String,
    /// Name of the leader Lease.
    #[arg(long, env = "SUBORG_LEASE_NAME", default_value = "suborg-leader")]
    pub lease_name: String,
    /// This replica's name in the Lease; defaults to the pod's name or the host name.
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
    /// Manage only objects with these labels (a label selector such as `team=platform`).
    #[arg(long, env = "SUBORG_SELECTOR")]
    pub selector: Option<String>,
    /// Take over store rows with a desired slug that suborg did not create.
    #[arg(long)]
    pub adopt: bool,
    /// Write the store although another controller (another cluster or selector) claimed it.
    /// Its rows that this controller's objects do not ask for are deleted: for a store whose
    /// controller is gone for good (its selector changed, say).
    #[arg(long)]
    pub take_over_store: bool,
    /// Log format.
    #[arg(long, env = "SUBORG_LOG_FORMAT", value_enum, default_value_t = LogFormat::Json)]
    pub log_format: LogFormat,
    /// Log filter, e.g. `info` or `suborg=debug,kube=info`.
    #[arg(long, env = "SUBORG_LOG", default_value = "info")]
    pub log_level: String,
}

fn parse_period(s: &str) -> Result<Duration, String> {
    crate::domain::temporary::parse_duration(s)
        .filter(|d| d.is_positive())
        .and_then(|d| {
            d.unsigned_abs()
                .ge(&Duration::from_secs(1))
                .then(|| d.unsigned_abs())
        })
        .ok_or_else(|| format!("{s:?} is not a duration of at least 1s such as 30s, 5m or 1h"))
}

fn init_logs(args: &RunArgs) -> Result<(), String> {
    check_log_level(&args.log_level)?;
    let filter = tracing_subscriber::EnvFilter::try_new(with_driver_quiet(&args.log_level))
        .map_err(|e| format!("invalid --log-level {:?}: {e}", args.log_level))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let result = match args.log_format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
        LogFormat::Text => builder.try_init(),
    };
    result.map_err(|e| e.to_string())
}

fn identity(args: &RunArgs) -> String {
    args.identity
        .clone()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| format!("suborg-{}", uuid::Uuid::new_v4().simple()))
}

/// Resolves when the process is asked to stop (SIGTERM from the kubelet, or Ctrl-C).
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(t) => t,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    tracing::info!("shutting down");
}

/// `level` with the database driver's own lines left out unless it names them: a store that
/// fails is logged by suborg once per attempt, and the driver would add its own (an ERROR for
/// the same refused connection, PostgreSQL's notices, the text of slow statements).
/// `--log-level info,sqlx=warn` shows them.
fn with_driver_quiet(level: &str) -> String {
    if level.contains("sqlx") {
        level.to_owned()
    } else {
        format!("{level},sqlx=off")
    }
}

/// A bare word that is not a level (`verbose`) reads as a filter for a module of that name,
/// which would silence every log line: refuse it, as any other unusable flag.
fn check_log_level(level: &str) -> Result<(), String> {
    const LEVELS: [&str; 6] = ["error", "warn", "info", "debug", "trace", "off"];
    let bare = !level.contains(['=', ',', ':', '[']);
    if bare && !LEVELS.contains(&level.to_ascii_lowercase().as_str()) {
        return Err(format!(
            "invalid --log-level {level:?}: a level ({}) or filter directives such as suborg=debug,kube=info",
            LEVELS.join(", ")
        ));
    }
    Ok(())
}

/// `suborg run`.
pub fn run(args: &RunArgs) -> ExitCode {
    if let Err(e) = init_logs(args) {
        eprintln!("suborg: {e}");
        return ExitCode::from(2);
    }
    let metrics_addr = match args.metrics_addr.as_str() {
        "off" | "" => None,
        a => match a.parse::<SocketAddr>() {
            Ok(a) => Some(a),
            Err(e) => {
                eprintln!("suborg: invalid --metrics-addr {a:?}: {e}");
                return ExitCode::from(2);
            }
        },
    };
    let store = super::store::prepare_store(args.store.as_deref());
    let config = Config {
        store,
        resync: args.resync,
        metrics_addr,
        leader: args.leader_election.then(|| LeaderConfig {
            namespace: args.lease_namespace.clone(),
            name: args.lease_name.clone(),
            identity: identity(args),
            lease_duration: Duration::from_secs(15),
            renew_every: Duration::from_secs(5),
        }),
        selector: args.selector.clone(),
        adopt: args.adopt,
        take_over_store: args.take_over_store,
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("suborg: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    // The message, and whether it is a usage error (exit code 2, as for a malformed flag).
    let result: Result<(), (String, bool)> = runtime.block_on(async {
        let kube_config = kube::Config::infer().await.map_err(|e| {
            let m = format!("no Kubernetes API to talk to (in-cluster config or KUBECONFIG): {e}");
            (m, false)
        })?;
        let url = kube_config.cluster_url.to_string();
        let client = kube::Client::try_from(kube_config).map_err(|e| {
            let m = format!("cannot set up a client for the Kubernetes API at {url}: {e}");
            (m, false)
        })?;
        controller::run(client, config, shutdown_signal())
            .await
            .map_err(|e| match e {
                controller::Error::Kube(_) => (format!("{e} (API server {url})"), false),
                controller::Error::InvalidSelector(_) => (e.to_string(), true),
                e => (e.to_string(), false),
            })
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err((e, usage)) => {
            tracing::error!(error = %e, "suborg stopped");
            eprintln!("suborg: {e}");
            if usage {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_drivers_lines_are_left_out_unless_named() {
        assert_eq!(with_driver_quiet("info"), "info,sqlx=off");
        assert_eq!(with_driver_quiet("debug,sqlx=warn"), "debug,sqlx=warn");
        assert!(tracing_subscriber::EnvFilter::try_new(with_driver_quiet("suborg=debug")).is_ok());
    }

    #[test]
    fn log_levels_are_levels_or_directives() {
        for ok in [
            "info",
            "DEBUG",
            "off",
            "suborg=debug",
            "suborg=debug,kube=info",
            "warn,suborg=trace",
        ] {
            assert_eq!(check_log_level(ok), Ok(()), "{ok}");
        }
        let e = check_log_level("verbose").unwrap_err();
        assert!(
            e.starts_with("invalid --log-level \"verbose\": a level (error, warn"),
            "{e}"
        );
    }

    #[test]
    fn periods() {
        assert_eq!(parse_period("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_period("1h30m"), Ok(Duration::from_secs(5400)));
        assert!(parse_period("0s").is_err());
        assert!(parse_period("10ms").is_err());
        assert!(parse_period("soon").is_err());
    }
}
