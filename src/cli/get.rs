//! `suborg get`: reads the store and shows what it holds, as a table, JSON or YAML.

use std::io::{self, Write};
use std::process::ExitCode;

use clap::ValueEnum;

use super::store::{default_store, runtime};
use crate::store::{
    AccessEntry, EffectiveMember, MemberInfo, OrgInfo, OwnedInfo, ProjectInfo, ResourceInfo,
    SqlStore, Store, StoreError, TreeRoot,
};

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

/// `suborg get`.
pub fn get(args: &GetArgs) -> io::Result<ExitCode> {
    // A view without the flag it needs is a usage error, told before the store is opened.
    if let Some(message) = missing_flag(args) {
        eprintln!("suborg: {message}");
        return Ok(ExitCode::from(2));
    }
    if let Some(code) = super::store::dsn_usage_error(args.store.as_deref()) {
        return Ok(code);
    }
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
    let shown = match result {
        Ok(shown) => shown,
        Err(e) => {
            eprintln!("suborg: {e}");
            return Ok(ExitCode::FAILURE);
        }
    };
    match shown {
        Shown::Tree(tree) => match args.output {
            GetOutput::Table => write_tree(&mut out, &tree)?,
            format => write_structured(&mut out, format, &tree)?,
        },
        Shown::Orgs(rows) => show(&mut out, args, &rows)?,
        Shown::Members(rows) => show(&mut out, args, &rows)?,
        Shown::Effective(rows) => show(&mut out, args, &rows)?,
        Shown::Owned(rows) => show(&mut out, args, &rows)?,
        Shown::Projects(rows) => show(&mut out, args, &rows)?,
        Shown::Resources(rows) => show(&mut out, args, &rows)?,
        Shown::Access(rows) => show(&mut out, args, &rows)?,
    }
    Ok(ExitCode::SUCCESS)
}

/// Writes `rows` as a table or in the structured format asked for.
fn show<R: Row + serde::Serialize>(
    out: &mut impl Write,
    args: &GetArgs,
    rows: &[R],
) -> io::Result<()> {
    match args.output {
        GetOutput::Table => {
            let cells: Vec<Vec<String>> = rows.iter().map(|r| r.cells(args.what)).collect();
            write_table(out, R::header(args.what), &cells)
        }
        format => write_structured(out, format, &rows),
    }
}

/// One line of a `get` table.
trait Row {
    /// The column names, for what was asked.
    fn header(what: GetWhat) -> &'static [&'static str];
    /// This row's cells, in the header's order.
    fn cells(&self, what: GetWhat) -> Vec<String>;
}

fn dash(v: &Option<String>) -> String {
    v.clone().unwrap_or_else(|| "-".into())
}

impl Row for OrgInfo {
    fn header(what: GetWhat) -> &'static [&'static str] {
        if what == GetWhat::Suborgs {
            &["PARENT", "SLUG", "DISPLAY NAME", "MEMBERS", "MANAGED"]
        } else {
            &["SLUG", "DISPLAY NAME", "MEMBERS", "SUBORGS", "MANAGED"]
        }
    }
    fn cells(&self, _: GetWhat) -> Vec<String> {
        let mut row = vec![self.slug.clone()];
        if let Some(p) = &self.parent {
            row.insert(0, p.clone());
        }
        row.extend([self.display_name.clone(), self.members.to_string()]);
        if self.parent.is_none() {
            row.push(self.sub_organizations.to_string());
        }
        row.push(if self.managed { "yes" } else { "no" }.into());
        row
    }
}

impl Row for MemberInfo {
    fn header(_: GetWhat) -> &'static [&'static str] {
        &["EMAIL", "ROLES"]
    }
    fn cells(&self, _: GetWhat) -> Vec<String> {
        let roles = self.roles.as_array().map(|rs| {
            rs.iter()
                .map(|r| {
                    let name = r["role"].as_str().unwrap_or("?");
                    let at = |k: &str| r[k].as_str().unwrap_or("?").to_owned();
                    match r["state"].as_str() {
                        Some("active") if r.get("until").is_some() => {
                            format!("{name} (until {})", at("until"))
                        }
                        Some("pending") => format!("{name} (from {})", at("from")),
                        Some("expired") => format!("{name} (expired {})", at("expiredAt")),
                        _ if r.get("temporary").is_some() => format!("{name} (temporary)"),
                        _ => name.to_owned(),
                    }
                })
                .collect::<Vec<_>>()
                .join(", ")
        });
        vec![self.email.clone(), roles.unwrap_or_default()]
    }
}

impl Row for EffectiveMember {
    fn header(_: GetWhat) -> &'static [&'static str] {
        &["EMAIL", "VIA"]
    }
    fn cells(&self, _: GetWhat) -> Vec<String> {
        vec![self.email.clone(), self.via.join(", ")]
    }
}

impl Row for OwnedInfo {
    fn header(what: GetWhat) -> &'static [&'static str] {
        if what == GetWhat::Groups {
            &["NAME", "DISPLAY NAME", "OWNER", "USERS", "NESTED"]
        } else {
            &["NAME", "DISPLAY NAME", "OWNER"]
        }
    }
    fn cells(&self, what: GetWhat) -> Vec<String> {
        let mut row = vec![
            self.name.clone(),
            self.display_name.clone(),
            self.owner.clone(),
        ];
        if what == GetWhat::Groups {
            row.push(self.users.unwrap_or(0).to_string());
            row.push(self.nested_groups.unwrap_or(0).to_string());
        }
        row
    }
}

impl Row for ProjectInfo {
    fn header(_: GetWhat) -> &'static [&'static str] {
        &[
            "SLUG",
            "DISPLAY NAME",
            "OBJECT",
            "GATEWAY",
            "APP CONNECTIONS",
            "MEMBERS",
        ]
    }
    fn cells(&self, _: GetWhat) -> Vec<String> {
        vec![
            self.slug.clone(),
            self.display_name.clone(),
            self.name.clone(),
            dash(&self.gateway),
            if self.app_connections.is_empty() {
                "-".into()
            } else {
                self.app_connections.join(", ")
            },
            self.members.to_string(),
        ]
    }
}

impl Row for ResourceInfo {
    fn header(_: GetWhat) -> &'static [&'static str] {
        &["KIND", "NAME", "DISPLAY NAME", "APP", "RELAY", "SECRET"]
    }
    fn cells(&self, _: GetWhat) -> Vec<String> {
        vec![
            self.kind.clone(),
            self.name.clone(),
            self.display_name.clone(),
            dash(&self.app),
            dash(&self.relay),
            dash(&self.credentials_secret),
        ]
    }
}

impl Row for AccessEntry {
    fn header(_: GetWhat) -> &'static [&'static str] {
        &["ORGANIZATION", "PROJECT", "ROLES", "VIA"]
    }
    fn cells(&self, _: GetWhat) -> Vec<String> {
        vec![
            self.organization.clone(),
            dash(&self.project),
            self.roles.join(", "),
            self.via.clone(),
        ]
    }
}

enum Shown {
    Tree(Vec<TreeRoot>),
    Orgs(Vec<OrgInfo>),
    Members(Vec<MemberInfo>),
    Effective(Vec<EffectiveMember>),
    Owned(Vec<OwnedInfo>),
    Projects(Vec<ProjectInfo>),
    Resources(Vec<ResourceInfo>),
    Access(Vec<AccessEntry>),
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
                return Err(StoreError::Conflict(missing_flag(args).unwrap_or_default()));
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

/// What `get` says when the view asked for lacks the flag it needs (`--org`, `--user`).
fn missing_flag(args: &GetArgs) -> Option<String> {
    let flag = match args.what {
        GetWhat::Members
        | GetWhat::Groups
        | GetWhat::Identities
        | GetWhat::Projects
        | GetWhat::Connections
            if args.org.is_none() =>
        {
            "--org ROOT or --org ROOT/SUB"
        }
        GetWhat::Access if args.user.is_none() => "--user EMAIL",
        _ => return None,
    };
    let what = args
        .what
        .to_possible_value()
        .map(|v| v.get_name().to_owned())
        .unwrap_or_default();
    Some(format!("get {what} needs {flag}"))
}

/// The store id of the organization `--org` names, which `get members`, `groups`,
/// `identities`, `projects` and `connections` need.
async fn org_id(store: &SqlStore, args: &GetArgs) -> Result<String, StoreError> {
    let Some(wanted) = &args.org else {
        return Err(StoreError::Conflict(missing_flag(args).unwrap_or_default()));
    };
    resolve(&store.organizations().await?, wanted)
}

/// Finds `ROOT`, `ROOT/SUB`, or a sub-organization slug that is unique in the store.
fn resolve(orgs: &[OrgInfo], wanted: &str) -> Result<String, StoreError> {
    let matches: Vec<&OrgInfo> = match wanted.split_once('/') {
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
        // Roots, or `ROOT/SUB`, are unique unless the store's keys were broken by hand.
        many if wanted.contains('/') || many.iter().any(|o| o.parent.is_none()) => {
            Err(StoreError::Conflict(format!(
                "{} organizations in the store match {wanted:?}, whose slugs should be unique: the store is damaged (see the warnings above)",
                many.len()
            )))
        }
        many => Err(StoreError::Conflict(format!(
            "{wanted:?} is a sub-organization of several roots ({}): name it as ROOT/{wanted}",
            many.iter()
                .filter_map(|o| o.parent.as_deref())
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

/// `1 member`, `2 members`.
fn members(n: i64) -> String {
    format!("{n} member{}", super::plural(n.unsigned_abs() as usize))
}

fn write_tree(out: &mut impl Write, tree: &[crate::store::TreeRoot]) -> io::Result<()> {
    for root in tree {
        writeln!(
            out,
            "{} ({}): {}",
            root.slug,
            root.display_name,
            members(root.members)
        )?;
        let n = root.sub_organizations.len();
        for (i, s) in root.sub_organizations.iter().enumerate() {
            let branch = if i + 1 == n { "└──" } else { "├──" };
            writeln!(
                out,
                "{branch} {} ({}): {}",
                s.slug,
                s.display_name,
                members(s.members)
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
            // `From` keeps an I/O error's kind, so a closed pipe stays a closed pipe.
            serde_json::to_writer_pretty(&mut *out, value).map_err(io::Error::from)?;
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

#[cfg(test)]
mod tests {
    #[test]
    fn one_member_is_singular() {
        assert_eq!(super::members(1), "1 member");
        assert_eq!(super::members(0), "0 members");
        assert_eq!(super::members(2), "2 members");
    }
}
