//! Which controller writes a store. A controller's sync prunes every managed row that none of
//! its objects asks for, so two controllers that see different objects (another `--selector`,
//! another cluster) on one database would delete each other's rows on every sync. The first
//! controller to write claims the store; another is refused, with both named, until it takes
//! the store over on purpose (`suborg run --take-over-store`). Replicas of one controller share
//! its claim. The offline `suborg apply` never claims, and is refused on a store a controller
//! claimed: its `--prune` would delete that controller's rows.
//!
//! A store that no controller claimed but that holds managed rows was written by `suborg
//! apply` (a controller claims in the transaction of its first write, and nothing removes a
//! claim). A controller would remove every one of those rows its objects do not ask for, so it
//! is refused there too until it takes the store over on purpose.

use sqlx::{AnyConnection, Row};

use super::error::StoreError;

/// Who writes through a [`super::SqlStore`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Writer {
    /// A controller, by what decides the objects it sees (its cluster and `--selector`).
    Controller {
        /// How the claim names it, e.g. `cluster 1b4e… selector "team=a"`.
        id: String,
        /// Take a store another controller claimed.
        take_over: bool,
    },
    /// `suborg apply`: writes only where no controller claimed the store.
    Offline,
}

impl Writer {
    /// The claim of a controller in the cluster `cluster` (its `kube-system` namespace's uid)
    /// that sees the objects `selector` matches (all of them when `None`).
    pub fn controller(cluster: &str, selector: Option<&str>, take_over: bool) -> Self {
        let selector = match selector.map(canonical_selector).filter(|s| !s.is_empty()) {
            Some(s) => format!("selector {s:?}"),
            None => "no selector".to_owned(),
        };
        Writer::Controller {
            id: format!("cluster {cluster}, {selector}"),
            take_over,
        }
    }
}

/// Checks, inside the write transaction on `conn` (under the write lock), that `writer` may
/// write the store, claiming it for a controller that finds it unclaimed (or takes it over).
/// A failed query is reported as `query` says (the store's own errors name its address).
pub(super) async fn check(
    conn: &mut AnyConnection,
    writer: &Writer,
    now_ms: i64,
    query: impl Fn(sqlx::Error) -> StoreError,
) -> Result<(), StoreError> {
    let claimed: Option<String> = sqlx::query("SELECT writer FROM suborg_claim WHERE id = 1")
        .fetch_optional(&mut *conn)
        .await
        .map_err(&query)?
        .map(|r| r.try_get(0))
        .transpose()
        .map_err(&query)?;
    match (writer, claimed) {
        (Writer::Offline, None) => Ok(()),
        (Writer::Offline, Some(by)) => Err(StoreError::Claimed(format!(
            "the store is written by a controller ({by}): `suborg apply` would undo its work (and `--prune` delete its rows); change the objects through the API server, or point `apply` at a store of its own"
        ))),
        (Writer::Controller { id, .. }, Some(by)) if *id == by => Ok(()),
        (Writer::Controller { id, take_over }, claimed) => {
            match &claimed {
                Some(by) if !take_over => {
                    return Err(StoreError::Claimed(format!(
                        "the store is written by another controller ({by}), not this one ({id}): a controller removes the rows of every object it does not see, so two would delete each other's; give each its own database, or, if that controller is gone for good (its selector changed, say), start this one once with --take-over-store"
                    )));
                }
                Some(by) => {
                    tracing::warn!(from = %by, to = %id, "taking the store over from another controller");
                }
                None if holds_managed_rows(conn).await.map_err(&query)? => {
                    if !take_over {
                        return Err(StoreError::Claimed(format!(
                            "the store holds rows that `suborg apply` wrote, and no controller has claimed it: this controller ({id}) would remove every one its objects do not ask for; apply the same manifests to the cluster first and then start it once with --take-over-store, or give it a database of its own"
                        )));
                    }
                    tracing::warn!(to = %id, "taking over a store that `suborg apply` wrote");
                }
                None => {}
            }
            let sql = "INSERT INTO suborg_claim (id, writer, claimed_at) VALUES (1, $1, $2) ON CONFLICT (id) DO UPDATE SET writer = excluded.writer, claimed_at = excluded.claimed_at";
            sqlx::query(sql)
                .bind(id.as_str())
                .bind(now_ms)
                .execute(&mut *conn)
                .await
                .map_err(&query)?;
            if claimed.is_none() {
                tracing::info!(writer = %id, "the store is claimed for this controller");
            }
            Ok(())
        }
    }
}

/// Whether any table holds a managed row.
async fn holds_managed_rows(conn: &mut AnyConnection) -> Result<bool, sqlx::Error> {
    for table in super::tables::MANAGED {
        // A fixed table name from the list above; nothing from outside enters the statement.
        let sql = format!("SELECT 1 FROM {table} WHERE managed = 1 LIMIT 1");
        if sqlx::query(&sql)
            .fetch_optional(&mut *conn)
            .await?
            .is_some()
        {
            return Ok(true);
        }
    }
    Ok(false)
}

/// A label selector written one way, so that replicas started with the same selector spelled
/// differently (`a=1,b=2` and `b=2, a=1`; `env in (x,y)` and `env in (y, x)`) share one claim.
/// Requirements are comma-separated outside parentheses and their order does not matter; nor
/// does the order of an `in`/`notin` set, or whitespace around operators and separators.
fn canonical_selector(selector: &str) -> String {
    let mut requirements = Vec::new();
    let mut depth = 0usize;
    let mut current = String::new();
    for c in selector.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                requirements.push(std::mem::take(&mut current));
                continue;
            }
            _ => {}
        }
        current.push(c);
    }
    requirements.push(current);
    let mut requirements: Vec<String> = requirements
        .iter()
        .map(|r| canonical_requirement(r))
        .filter(|r| !r.is_empty())
        .collect();
    requirements.sort();
    requirements.dedup();
    requirements.join(",")
}

/// One requirement: whitespace runs become one space, and none is kept beside an operator,
/// a comma or a parenthesis; `==` is `=` (the same operator); the values of a set are sorted.
fn canonical_requirement(requirement: &str) -> String {
    let words: Vec<&str> = requirement.split_whitespace().collect();
    let joined = words.join(" ");
    let mut out = String::new();
    for (i, c) in joined.char_indices() {
        let tight = |ch: char| matches!(ch, '=' | '!' | ',' | '(' | ')');
        if c == ' ' {
            let before = joined[..i].chars().next_back();
            let after = joined[i + 1..].chars().next();
            if before.is_some_and(tight) || after.is_some_and(tight) {
                continue;
            }
        }
        out.push(c);
    }
    let out = out.replace("==", "=");
    match (out.find('('), out.rfind(')')) {
        (Some(open), Some(close)) if open < close => {
            let mut values: Vec<&str> = out[open + 1..close].split(',').collect();
            values.sort_unstable();
            values.dedup();
            // A set of one is an equation: `k in (v)` selects what `k=v` does.
            let key = &out[..open];
            match (values.as_slice(), close + 1 == out.len()) {
                ([one], true) if let Some(k) = key.strip_suffix(" in") => format!("{k}={one}"),
                ([one], true) if let Some(k) = key.strip_suffix(" notin") => {
                    format!("{k}!={one}")
                }
                _ => format!("{key}({}){}", values.join(","), &out[close + 1..]),
            }
        }
        _ => out,
    }
}

#[cfg(test)]
mod tests {
    use super::canonical_selector;

    #[test]
    fn selectors_spelled_differently_are_one_claim() {
        for (a, b) in [
            ("team=a,tier=web", "tier=web, team=a"),
            (" team = a ", "team=a"),
            ("env in (x,y),team!=b", "team != b , env in ( y , x )"),
            ("!legacy,team", "team, !legacy"),
            ("team=a,team=a", "team=a"),
            ("team==a", "team = a"),
            ("team in (a)", "team=a"),
            ("team notin ( a )", "team!=a"),
        ] {
            assert_eq!(canonical_selector(a), canonical_selector(b), "{a} vs {b}");
        }
        for (a, b) in [
            ("team=a", "team=b"),
            ("env in (x)", "env notin (x)"),
            ("team", "!team"),
            ("team!=a", "team=a"),
            ("team in (a,b)", "team=a"),
            ("team=a,tier=web", "team=a"),
        ] {
            assert_ne!(canonical_selector(a), canonical_selector(b), "{a} vs {b}");
        }
    }
}
