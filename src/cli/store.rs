//! `suborg apply` and `suborg get`: the whole job without a cluster, on a store.

use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use crate::manifest::Loader;
use crate::store::{Action, ApplyOptions, SqlStore, Store, StoreError, desired_from};

/// Where the store lives unless `--store` or `SUBORG_STORE` says otherwise: a SQLite file in
/// the user's data directory (`$XDG_DATA_HOME/suborg`, else `~/.local/share/suborg`).
pub fn default_store() -> String {
    let dir = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
        .unwrap_or_else(|| PathBuf::from("."))
        .join("suborg");
    format!("sqlite://{}", dir.join("store.db").display())
}

/// Arguments of `suborg apply`.
#[derive(clap::Args, Debug)]
pub struct ApplyArgs {
    /// Files or directories (read recursively), or `-` for standard input.
    #[arg(short = 'f', long = "filename", required = true, num_args = 1..)]
    pub paths: Vec<PathBuf>,
    /// The store: `sqlite://PATH` or `postgres://USER@HOST/DB` (default: a SQLite file in the
    /// user's data directory).
    #[arg(long, env = "SUBORG_STORE")]
    pub store: Option<String>,
    /// Print the plan without changing the store.
    #[arg(long)]
    pub dry_run: bool,
    /// Delete rows suborg created earlier that the manifests no longer declare.
    #[arg(long)]
    pub prune: bool,
    /// Take over rows with a declared slug that suborg did not create.
    #[arg(long)]
    pub adopt: bool,
    /// Namespace of namespaced objects that do not set metadata.namespace.
    #[arg(short = 'n', long, default_value = "default")]
    pub namespace: String,
    /// Largest file accepted, in bytes (suffixes Ki, Mi, Gi allowed).
    #[arg(long, default_value = "8Mi", value_parser = super::files::parse_size)]
    pub max_file_size: u64,
}

/// Arguments of `suborg get`.
#[derive(clap::Args, Debug)]
pub struct GetArgs {
    /// What to show.
    #[arg(value_enum)]
    pub what: GetWhat,
    /// The store (see `suborg apply --help`).
    #[arg(long, env = "SUBORG_STORE")]
    pub store: Option<String>,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t = super::Output::Text)]
    pub output: super::Output,
}

/// What `suborg get` shows.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum GetWhat {
    /// Each root, its sub-organizations and their member counts.
    Tree,
}

fn runtime() -> io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}

fn open(store: Option<&str>) -> Result<SqlStore, StoreError> {
    let dsn = store.map(str::to_owned).unwrap_or_else(default_store);
    if let Some(path) = dsn.strip_prefix("sqlite://")
        && let Some(dir) = std::path::Path::new(path).parent()
        && !dir.as_os_str().is_empty()
    {
        let _ = std::fs::create_dir_all(dir);
    }
    runtime()
        .map_err(|e| StoreError::InvalidDsn(e.to_string()))
        .and_then(|rt| rt.block_on(SqlStore::open(&dsn)))
}

/// `suborg apply`.
pub fn apply(args: &ApplyArgs) -> io::Result<ExitCode> {
    let mut loader = Loader::new(&args.namespace);
    super::files::load(&args.paths, args.max_file_size, &mut loader);
    let (report, set, accepted) = loader.finish(k8s_openapi::jiff::Timestamp::now());
    let mut out = io::stdout().lock();
    if report.errors > 0 {
        super::write_text(&mut out, &report)?;
        out.flush()?;
        eprintln!(
            "{} error{}: nothing was applied",
            report.errors,
            if report.errors == 1 { "" } else { "s" }
        );
        return Ok(ExitCode::FAILURE);
    }
    let desired = desired_from(&set, &accepted);
    let options = ApplyOptions {
        prune: args.prune,
        adopt: args.adopt,
    };
    let rt = runtime()?;
    let result = rt.block_on(async {
        let store = SqlStore::open(&args.store.clone().unwrap_or_else(default_store)).await?;
        let plan = if args.dry_run {
            store.plan(&desired, options).await
        } else {
            store.apply(&desired, options).await
        };
        store.close().await;
        plan
    });
    let plan = match result {
        Ok(plan) => plan,
        Err(e) => {
            eprintln!("suborg: {e}");
            eprintln!("nothing was applied");
            return Ok(ExitCode::FAILURE);
        }
    };
    if plan.is_empty() {
        writeln!(out, "No changes: the store matches the manifests.")?;
        return Ok(ExitCode::SUCCESS);
    }
    for c in &plan.changes {
        writeln!(out, "{c}")?;
    }
    writeln!(
        out,
        "\n{}: {} to create, {} to update, {} to delete, {} to orphan.",
        if args.dry_run {
            "Plan (dry run, nothing written)"
        } else {
            "Applied"
        },
        plan.count(Action::Create),
        plan.count(Action::Update),
        plan.count(Action::Delete),
        plan.count(Action::Orphan),
    )?;
    Ok(ExitCode::SUCCESS)
}

/// `suborg get`.
pub fn get(args: &GetArgs) -> io::Result<ExitCode> {
    let store = match open(args.store.as_deref()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("suborg: {e}");
            return Ok(ExitCode::FAILURE);
        }
    };
    let rt = runtime()?;
    let tree = match rt.block_on(store.tree()) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("suborg: {e}");
            return Ok(ExitCode::FAILURE);
        }
    };
    rt.block_on(store.close());
    let mut out = io::stdout().lock();
    match args.output {
        super::Output::Json => {
            serde_json::to_writer_pretty(&mut out, &tree).map_err(io::Error::other)?;
            writeln!(out)?;
        }
        super::Output::Text => {
            for root in &tree {
                writeln!(
                    out,
                    "{} ({}): {} members",
                    root.slug, root.display_name, root.members
                )?;
                let n = root.sub_organizations.len();
                for (i, s) in root.sub_organizations.iter().enumerate() {
                    let branch = if i + 1 == n { "└──" } else { "├──" };
                    writeln!(
                        out,
                        "{branch} {} ({}): {} members",
                        s.slug, s.display_name, s.members
                    )?;
                }
            }
            if tree.is_empty() {
                writeln!(out, "The store holds no organizations.")?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
