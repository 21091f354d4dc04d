//! `suborg apply` and `suborg get`: the whole job without a cluster, on a store.

use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use crate::manifest::Loader;
use crate::rows::desired_from;
use crate::store::{Action, ApplyOptions, SqlStore, Store, StoreError};

/// Where the store lives unless `--store` or `SUBORG_STORE` says otherwise: a SQLite file in
/// the user's data directory (`$XDG_DATA_HOME/suborg`, else `~/.local/share/suborg`).
pub fn default_store() -> String {
    let dir = std::env::var_os("XDG_DATA_HOME")
        .filter(|d| !d.is_empty())
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

pub(super) fn runtime() -> io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}

/// `suborg apply`.
pub fn apply(args: &ApplyArgs) -> io::Result<ExitCode> {
    if let Some(code) = dsn_usage_error(args.store.as_deref()) {
        return Ok(code);
    }
    let mut progress = super::progress::Progress::stderr();
    let mut loader = Loader::new(&args.namespace);
    super::files::load_with(&args.paths, args.max_file_size, &mut loader, &mut |n| {
        progress.step(&format!("reading manifests: {n} files"));
    });
    progress.step("checking the objects");
    let now = k8s_openapi::jiff::Timestamp::now();
    let rt = runtime()?;
    // An object already in the store was created when its rows were first written. Read only:
    // an invalid set must not even create the store; one that cannot be opened is reported
    // below, once the objects have been checked.
    let first_written = rt
        .block_on(async {
            let dsn = args.store.clone().unwrap_or_else(default_store);
            let store = SqlStore::open_read_only(&dsn).await?;
            let first = store.first_written().await;
            store.close().await;
            first
        })
        .unwrap_or_default();
    loader.date(&first_written, now);
    let (report, set, accepted) = loader.finish(now);
    let mut out = io::stdout().lock();
    if report.errors > 0 {
        progress.finish();
        super::report::write_text(&mut out, &report)?;
        out.flush()?;
        eprintln!(
            "{} error{}: nothing was applied",
            report.errors,
            if report.errors == 1 { "" } else { "s" }
        );
        return Ok(ExitCode::FAILURE);
    }
    // Warnings do not stop the apply, but are worth reading (an expired role, a group member
    // left out): on stderr, ahead of the plan.
    if report.warnings > 0 {
        progress.finish();
        super::report::write_text(&mut io::stderr().lock(), &report)?;
    }
    let desired = desired_from(&set, &accepted, now);
    let options = ApplyOptions {
        prune: args.prune,
        adopt: args.adopt,
    };
    progress.step(&format!(
        "{} {} organizations and {} memberships against the store",
        if args.dry_run { "planning" } else { "applying" },
        desired.organizations.len(),
        desired.memberships.len()
    ));
    let result = rt.block_on(async {
        // A store a controller writes is refused: this apply would undo its work.
        let store = open_async(args.store.as_deref())
            .await?
            .writing_as(crate::store::Writer::Offline);
        let plan = if args.dry_run {
            store.plan(&desired, options).await
        } else {
            store.apply(&desired, options).await
        };
        // Without --prune, what pruning would remove: rows the manifests do not declare,
        // which stay, and which the summary names so that "no changes" is not read as "the
        // store holds exactly this".
        let undeclared = match &plan {
            Ok(_) if !args.prune => {
                let pruning = ApplyOptions {
                    prune: true,
                    ..options
                };
                store.plan(&desired, pruning).await.map(|p| {
                    p.changes
                        .iter()
                        .filter(|c| matches!(c.action, Action::Delete | Action::Orphan))
                        .count()
                })
            }
            _ => Ok(0),
        };
        store.close().await;
        plan.and_then(|plan| Ok((plan, undeclared?)))
    });
    progress.finish();
    let (plan, undeclared) = match result {
        Ok(found) => found,
        Err(e) => {
            eprintln!("suborg: {e}");
            eprintln!("nothing was applied");
            return Ok(ExitCode::FAILURE);
        }
    };
    let left = match (undeclared, args.dry_run) {
        (0, _) => String::new(),
        (1, dry) => format!(
            "\n1 managed row in the store is not in these manifests and {} left as it is (--prune removes it).",
            if dry { "would be" } else { "was" }
        ),
        (n, dry) => format!(
            "\n{n} managed rows in the store are not in these manifests and {} left as they are (--prune removes them).",
            if dry { "would be" } else { "were" }
        ),
    };
    if plan.is_empty() {
        if undeclared > 0 {
            writeln!(out, "No changes to the objects in the manifests.{left}")?;
        } else {
            writeln!(out, "No changes: the store matches the manifests.")?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    for c in in_print_order(&plan.changes) {
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
    if !left.is_empty() {
        writeln!(out, "{}", left.trim_start())?;
    }
    Ok(ExitCode::SUCCESS)
}

/// A `--store` (or `SUBORG_STORE`) that is no DSN suborg takes is a usage error, exit code 2,
/// told before anything is read.
pub(crate) fn dsn_usage_error(store: Option<&str>) -> Option<ExitCode> {
    let dsn = store.map(str::to_owned).unwrap_or_else(default_store);
    match crate::store::Dsn::parse(&dsn) {
        Err(e @ StoreError::InvalidDsn(_)) => {
            eprintln!("suborg: {e}");
            Some(ExitCode::from(2))
        }
        _ => None,
    }
}

/// The store's DSN (the default when none is given), with the directory of a SQLite file
/// created: the default one need not exist.
pub(crate) fn prepare_store(store: Option<&str>) -> String {
    let dsn = store.map(str::to_owned).unwrap_or_else(default_store);
    if let Some(path) = dsn.strip_prefix("sqlite://")
        && let Some(dir) = std::path::Path::new(path.split('?').next().unwrap_or(path)).parent()
        && !dir.as_os_str().is_empty()
    {
        let _ = std::fs::create_dir_all(dir);
    }
    dsn
}

/// Opens the store, creating the directory of a SQLite file.
async fn open_async(store: Option<&str>) -> Result<SqlStore, StoreError> {
    SqlStore::open(&prepare_store(store)).await
}

/// The changes as printed: by kind of row in the order the plan takes the tables, then
/// creations, updates, deletions and orphans, then by row. The plan's own order within a table
/// follows the database's, which differs between SQLite and PostgreSQL: the same input prints
/// the same plan on both.
fn in_print_order(changes: &[crate::store::Change]) -> Vec<&crate::store::Change> {
    let mut kinds: Vec<&str> = Vec::new();
    for c in changes {
        if !kinds.contains(&c.kind) {
            kinds.push(c.kind);
        }
    }
    let action = |a: Action| match a {
        Action::Create => 0,
        Action::Update => 1,
        Action::Delete => 2,
        Action::Orphan => 3,
    };
    let mut sorted: Vec<&crate::store::Change> = changes.iter().collect();
    sorted.sort_by(|a, b| {
        let rank = |c: &crate::store::Change| kinds.iter().position(|k| *k == c.kind);
        (rank(a), action(a.action), &a.target).cmp(&(rank(b), action(b.action), &b.target))
    });
    sorted
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Change;
    use crate::store::plan::{Op, Table};

    fn change(action: Action, kind: &'static str, target: &str) -> Change {
        let op = Op::DeleteRow {
            table: Table::Memberships,
            id: target.into(),
        };
        Change::new(action, kind, target.into(), vec![], None, op)
    }

    /// The rows of one table come in whatever order the database gave them: printed, they
    /// are in one order, tables first as the plan takes them.
    #[test]
    fn a_plan_prints_in_one_order_whatever_the_database_order() {
        let one = [
            change(Action::Create, "organization", "acme/eng"),
            change(Action::Delete, "membership", "bob@x in acme"),
            change(Action::Create, "membership", "new@x in acme/eng"),
            change(Action::Create, "membership", "new@x in acme"),
        ];
        let mut other = [
            one[0].clone(),
            one[3].clone(),
            one[2].clone(),
            one[1].clone(),
        ];
        let printed = |c: &[Change]| -> Vec<String> {
            in_print_order(c).iter().map(|c| c.to_string()).collect()
        };
        assert_eq!(printed(&one), printed(&other));
        assert_eq!(
            printed(&one),
            [
                "  + organization acme/eng",
                "  + membership new@x in acme",
                "  + membership new@x in acme/eng",
                "  - membership bob@x in acme",
            ]
        );
        other.reverse();
        // Kinds in the order the plan met them: memberships first now.
        assert_eq!(printed(&other)[3], "  + organization acme/eng");
    }
}
