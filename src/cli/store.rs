//! `suborg apply` and `suborg get`: the whole job without a cluster, on a store.

use clap::ValueEnum;
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

/// Arguments of `suborg get`.
#[derive(clap::Args, Debug)]
pub struct GetArgs {
    /// What to show.
    #[arg(value_enum)]
    pub what: GetWhat,
    /// The store (see `suborg apply --help`).
    #[arg(long, env = "SUBORG_STORE")]
    pub store: Option<String>,
    /// The organization: a root's slug, or `ROOT/SUB` (a sub-organization's slug alone when it
    /// is unique). For `suborgs`, the root whose children to list; for `members`, required.
    #[arg(long)]
    pub org: Option<String>,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t = GetOutput::Table)]
    pub output: GetOutput,
    /// With `members`: everyone with access to the organization, including the users of the
    /// groups usable there (nested groups followed), and through what.
    #[arg(long)]
    pub effective: bool,
    /// With `access`: the user's email.
    #[arg(long)]
    pub user: Option<String>,
}

/// What `suborg get` shows.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum GetWhat {
    /// Each root, its sub-organizations and their member counts.
    Tree,
    /// Root organizations.
    Orgs,
    /// Sub-organizations (of `--org`, or of every root).
    Suborgs,
    /// The members added to `--org` (`--effective`: everyone with access, through groups too).
    Members,
    /// The groups usable in `--org`: its own, and for a sub-organization the root's added to it.
    Groups,
    /// The machine identities usable in `--org`.
    Identities,
    /// The projects of `--org` (its own: a root's list leaves out its sub-organizations').
    Projects,
    /// The app connections, gateways and relays of `--org` (never inherited), with the Secret
    /// each names.
    Connections,
    /// Every organization and project `--user` can reach, and through what.
    Access,
}

/// Output formats of `suborg get`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum GetOutput {
    /// Aligned columns (a tree for `get tree`).
    Table,
    /// JSON.
    Json,
    /// YAML.
    Yaml,
}

fn runtime() -> io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}

/// `suborg apply`.
pub fn apply(args: &ApplyArgs) -> io::Result<ExitCode> {
    let mut progress = super::progress::Progress::stderr();
    let mut loader = Loader::new(&args.namespace);
    super::files::load_with(&args.paths, args.max_file_size, &mut loader, &mut |n| {
        progress.step(&format!("reading manifests: {n} files"));
    });
    progress.step("checking the objects");
    let now = k8s_openapi::jiff::Timestamp::now();
    let (report, set, accepted) = loader.finish(now);
    let mut out = io::stdout().lock();
    if report.errors > 0 {
        progress.finish();
        super::write_text(&mut out, &report)?;
        out.flush()?;
        eprintln!(
            "{} error{}: nothing was applied",
            report.errors,
            if report.errors == 1 { "" } else { "s" }
        );
        return Ok(ExitCode::FAILURE);
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
    let rt = runtime()?;
    let result = rt.block_on(async {
        let store = open_async(args.store.as_deref()).await?;
        let plan = if args.dry_run {
            store.plan(&desired, options).await
        } else {
            store.apply(&desired, options).await
        };
        store.close().await;
        plan
    });
    progress.finish();
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
    let rt = runtime()?;
    let result = rt.block_on(async {
        let store = open_read_only_async(args.store.as_deref()).await?;
        let out = read(&store, args).await;
        // What the rows show is only as good as the rows: say when some break an invariant.
        let damage = store.damage().await;
        store.close().await;
        match damage {
            Ok(lines) => {
                for line in lines {
                    eprintln!(
                        "suborg: warning: the store holds a row suborg would never write: {line}"
                    );
                }
            }
            Err(e) => eprintln!("suborg: warning: the store's rows could not be checked: {e}"),
        }
        out
    });
    let mut out = io::stdout().lock();
    match result {
        Ok(Shown::Tree(tree)) => match args.output {
            GetOutput::Table => write_tree(&mut out, &tree)?,
            format => write_structured(&mut out, format, &tree)?,
        },
        Ok(Shown::Orgs(orgs)) => match args.output {
            GetOutput::Table => {
                let rows: Vec<Vec<String>> = orgs
                    .iter()
                    .map(|o| {
                        let mut row = vec![o.slug.clone()];
                        if let Some(p) = &o.parent {
                            row.insert(0, p.clone());
                        }
                        row.extend([o.display_name.clone(), o.members.to_string()]);
                        if o.parent.is_none() {
                            row.push(o.sub_organizations.to_string());
                        }
                        row.push(if o.managed { "yes" } else { "no" }.into());
                        row
                    })
                    .collect();
                let header: &[&str] = if args.what == GetWhat::Suborgs {
                    &["PARENT", "SLUG", "DISPLAY NAME", "MEMBERS", "MANAGED"]
                } else {
                    &["SLUG", "DISPLAY NAME", "MEMBERS", "SUBORGS", "MANAGED"]
                };
                write_table(&mut out, header, &rows)?;
            }
            format => write_structured(&mut out, format, &orgs)?,
        },
        Ok(Shown::Members(members)) => match args.output {
            GetOutput::Table => {
                let rows: Vec<Vec<String>> = members
                    .iter()
                    .map(|m| {
                        let roles = m.roles.as_array().map(|rs| {
                            rs.iter()
                                .map(|r| {
                                    let name = r["role"].as_str().unwrap_or("?");
                                    if r.get("temporary").is_some() {
                                        format!("{name} (temporary)")
                                    } else {
                                        name.to_owned()
                                    }
                                })
                                .collect::<Vec<_>>()
                                .join(", ")
                        });
                        vec![m.email.clone(), roles.unwrap_or_default()]
                    })
                    .collect();
                write_table(&mut out, &["EMAIL", "ROLES"], &rows)?;
            }
            format => write_structured(&mut out, format, &members)?,
        },
        Ok(Shown::Effective(members)) => match args.output {
            GetOutput::Table => {
                let rows: Vec<Vec<String>> = members
                    .iter()
                    .map(|m| vec![m.email.clone(), m.via.join(", ")])
                    .collect();
                write_table(&mut out, &["EMAIL", "VIA"], &rows)?;
            }
            format => write_structured(&mut out, format, &members)?,
        },
        Ok(Shown::Owned(owned)) => match args.output {
            GetOutput::Table => {
                let groups = args.what == GetWhat::Groups;
                let rows: Vec<Vec<String>> = owned
                    .iter()
                    .map(|o| {
                        let mut row = vec![o.name.clone(), o.display_name.clone(), o.owner.clone()];
                        if groups {
                            row.push(o.users.unwrap_or(0).to_string());
                            row.push(o.nested_groups.unwrap_or(0).to_string());
                        }
                        row
                    })
                    .collect();
                let header: &[&str] = if groups {
                    &["NAME", "DISPLAY NAME", "OWNER", "USERS", "NESTED"]
                } else {
                    &["NAME", "DISPLAY NAME", "OWNER"]
                };
                write_table(&mut out, header, &rows)?;
            }
            format => write_structured(&mut out, format, &owned)?,
        },
        Ok(Shown::Projects(projects)) => match args.output {
            GetOutput::Table => {
                let rows: Vec<Vec<String>> = projects
                    .iter()
                    .map(|p| {
                        vec![
                            p.slug.clone(),
                            p.display_name.clone(),
                            p.name.clone(),
                            p.gateway.clone().unwrap_or_else(|| "-".into()),
                            if p.app_connections.is_empty() {
                                "-".into()
                            } else {
                                p.app_connections.join(", ")
                            },
                            p.members.to_string(),
                        ]
                    })
                    .collect();
                write_table(
                    &mut out,
                    &[
                        "SLUG",
                        "DISPLAY NAME",
                        "OBJECT",
                        "GATEWAY",
                        "APP CONNECTIONS",
                        "MEMBERS",
                    ],
                    &rows,
                )?;
            }
            format => write_structured(&mut out, format, &projects)?,
        },
        Ok(Shown::Resources(resources)) => match args.output {
            GetOutput::Table => {
                let dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
                let rows: Vec<Vec<String>> = resources
                    .iter()
                    .map(|r| {
                        vec![
                            r.kind.clone(),
                            r.name.clone(),
                            r.display_name.clone(),
                            dash(&r.app),
                            dash(&r.relay),
                            dash(&r.credentials_secret),
                        ]
                    })
                    .collect();
                write_table(
                    &mut out,
                    &["KIND", "NAME", "DISPLAY NAME", "APP", "RELAY", "SECRET"],
                    &rows,
                )?;
            }
            format => write_structured(&mut out, format, &resources)?,
        },
        Ok(Shown::Access(entries)) => match args.output {
            GetOutput::Table => {
                let rows: Vec<Vec<String>> = entries
                    .iter()
                    .map(|e| {
                        vec![
                            e.organization.clone(),
                            e.project.clone().unwrap_or_else(|| "-".into()),
                            e.roles.join(", "),
                            e.via.clone(),
                        ]
                    })
                    .collect();
                write_table(
                    &mut out,
                    &["ORGANIZATION", "PROJECT", "ROLES", "VIA"],
                    &rows,
                )?;
            }
            format => write_structured(&mut out, format, &entries)?,
        },
        Err(e) => {
            eprintln!("suborg: {e}");
            return Ok(ExitCode::FAILURE);
        }
    }
    Ok(ExitCode::SUCCESS)
}

enum Shown {
    Tree(Vec<crate::store::TreeRoot>),
    Orgs(Vec<crate::store::OrgInfo>),
    Members(Vec<crate::store::MemberInfo>),
    Effective(Vec<crate::store::EffectiveMember>),
    Owned(Vec<crate::store::OwnedInfo>),
    Projects(Vec<crate::store::ProjectInfo>),
    Resources(Vec<crate::store::ResourceInfo>),
    Access(Vec<crate::store::AccessEntry>),
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

/// Opens the store for reading only: `get` never writes, so a read-only file is enough.
async fn open_read_only_async(store: Option<&str>) -> Result<SqlStore, StoreError> {
    SqlStore::open_read_only(&store.map(str::to_owned).unwrap_or_else(default_store)).await
}

async fn read(store: &SqlStore, args: &GetArgs) -> Result<Shown, StoreError> {
    match args.what {
        GetWhat::Tree => Ok(Shown::Tree(store.tree().await?)),
        GetWhat::Orgs => {
            let orgs = store.organizations().await?;
            Ok(Shown::Orgs(
                orgs.into_iter().filter(|o| o.parent.is_none()).collect(),
            ))
        }
        GetWhat::Suborgs => {
            let orgs = store.organizations().await?;
            if let Some(root) = &args.org
                && !orgs.iter().any(|o| o.parent.is_none() && &o.slug == root)
            {
                return Err(StoreError::Conflict(format!(
                    "no root organization with slug {root:?}"
                )));
            }
            Ok(Shown::Orgs(
                orgs.into_iter()
                    .filter(|o| {
                        o.parent
                            .as_ref()
                            .is_some_and(|p| args.org.as_ref().is_none_or(|r| r == p))
                    })
                    .collect(),
            ))
        }
        GetWhat::Members => {
            let id = org_id(store, args).await?;
            if args.effective {
                Ok(Shown::Effective(store.effective_members(&id).await?))
            } else {
                Ok(Shown::Members(store.members(&id).await?))
            }
        }
        GetWhat::Groups | GetWhat::Identities => {
            let id = org_id(store, args).await?;
            let kind = if args.what == GetWhat::Groups {
                "Group"
            } else {
                "MachineIdentity"
            };
            Ok(Shown::Owned(
                store
                    .owned(&id)
                    .await?
                    .into_iter()
                    .filter(|o| o.kind == kind)
                    .collect(),
            ))
        }
        GetWhat::Projects => Ok(Shown::Projects(
            store.projects(&org_id(store, args).await?).await?,
        )),
        GetWhat::Connections => Ok(Shown::Resources(
            store.resources(&org_id(store, args).await?).await?,
        )),
        GetWhat::Access => {
            let Some(email) = &args.user else {
                return Err(StoreError::Conflict("get access needs --user EMAIL".into()));
            };
            match store.access(email).await? {
                Some(entries) => Ok(Shown::Access(entries)),
                None => Err(StoreError::Conflict(format!(
                    "no user {email:?} in the store"
                ))),
            }
        }
    }
}

/// The store id of the organization `--org` names, which `get members`, `groups`,
/// `identities`, `projects` and `connections` need.
async fn org_id(store: &SqlStore, args: &GetArgs) -> Result<String, StoreError> {
    let Some(wanted) = &args.org else {
        let what = args
            .what
            .to_possible_value()
            .map(|v| v.get_name().to_owned())
            .unwrap_or_default();
        return Err(StoreError::Conflict(format!(
            "get {what} needs --org ROOT or --org ROOT/SUB"
        )));
    };
    resolve(&store.organizations().await?, wanted)
}

/// Finds `ROOT`, `ROOT/SUB`, or a sub-organization slug that is unique in the store.
fn resolve(orgs: &[crate::store::OrgInfo], wanted: &str) -> Result<String, StoreError> {
    let matches: Vec<&crate::store::OrgInfo> = match wanted.split_once('/') {
        Some((root, sub)) => orgs
            .iter()
            .filter(|o| o.parent.as_deref() == Some(root) && o.slug == sub)
            .collect(),
        None => {
            let roots: Vec<_> = orgs
                .iter()
                .filter(|o| o.parent.is_none() && o.slug == wanted)
                .collect();
            if roots.is_empty() {
                orgs.iter().filter(|o| o.slug == wanted).collect()
            } else {
                roots
            }
        }
    };
    match matches.as_slice() {
        [one] => Ok(one.id.clone()),
        [] => Err(StoreError::Conflict(format!(
            "no organization {wanted:?} in the store"
        ))),
        many => Err(StoreError::Conflict(format!(
            "{wanted:?} is a sub-organization of several roots ({}): name it as ROOT/{wanted}",
            many.iter()
                .filter_map(|o| o.parent.as_deref())
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

fn write_tree(out: &mut impl Write, tree: &[crate::store::TreeRoot]) -> io::Result<()> {
    for root in tree {
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
    Ok(())
}

fn write_structured<T: serde::Serialize>(
    out: &mut impl Write,
    format: GetOutput,
    value: &T,
) -> io::Result<()> {
    match format {
        GetOutput::Yaml => write!(
            out,
            "{}",
            serde_yaml::to_string(value).map_err(io::Error::other)?
        ),
        _ => {
            serde_json::to_writer_pretty(&mut *out, value).map_err(io::Error::other)?;
            writeln!(out)
        }
    }
}

fn write_table(out: &mut impl Write, header: &[&str], rows: &[Vec<String>]) -> io::Result<()> {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                s.push_str(cell);
            } else {
                s.push_str(&format!("{cell:<w$}   "));
            }
        }
        s
    };
    writeln!(out, "{}", line(header.to_vec()))?;
    for row in rows {
        writeln!(out, "{}", line(row.iter().map(String::as_str).collect()))?;
    }
    Ok(())
}
