//! Store addresses: `sqlite://PATH` or `postgres://USER[:PASSWORD]@HOST[:PORT]/DB[?PARAMS]`. A
//! password may also come from the `password` parameter, `SUBORG_STORE_PASSWORD` or the file
//! named by `SUBORG_STORE_PASSWORD_FILE`, so it need not sit in a command line; exactly one of
//! them may give it (two are refused, naming the sources). Displaying a DSN never shows the
//! password, wherever it was: user-info, `password`, `sslpassword` and `options` are masked.

use std::fmt;

use super::error::StoreError;

/// Which database a DSN names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// An embedded SQLite file.
    Sqlite,
    /// A PostgreSQL server.
    Postgres,
}

/// How long a SQLite connection waits for another's lock, writers and readers alike.
macro_rules! sqlite_lock_wait {
    () => {
        "PRAGMA busy_timeout = 10000;"
    };
}

/// How long a PostgreSQL statement or lock wait (the advisory write lock included) may take,
/// writers and readers alike: neither may hold the store forever.
macro_rules! postgres_timeouts {
    () => {
        "SET statement_timeout = '60s'; SET lock_timeout = '30s'"
    };
}

impl Backend {
    /// Statements run on every new connection.
    pub fn connection_setup(self) -> &'static str {
        match self {
            // WAL: readers never block the writer. synchronous=NORMAL is durable across a crash
            // of the process (a power cut can lose the last transaction, never corrupt). A
            // larger page cache keeps the indexes of a big store in memory.
            Self::Sqlite => concat!(
                "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA cache_size = -65536; ",
                sqlite_lock_wait!()
            ),
            // Nor may a transaction left idle; the client side has its own deadline too.
            Self::Postgres => concat!(
                postgres_timeouts!(),
                "; SET idle_in_transaction_session_timeout = '120s'"
            ),
        }
    }

    /// The statement that opens a transaction holding the write lock from its start.
    pub fn begin_write(self) -> &'static str {
        match self {
            // IMMEDIATE: a deferred transaction that later writes can fail to upgrade its lock.
            Self::Sqlite => "BEGIN IMMEDIATE",
            Self::Postgres => "BEGIN",
        }
    }
}

/// A parsed store address.
#[derive(Clone, PartialEq, Eq)]
pub struct Dsn {
    /// The database kind.
    pub backend: Backend,
    url: String,
    shown: String,
    read_only: bool,
}

impl fmt::Debug for Dsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Dsn({})", self.shown)
    }
}

impl fmt::Display for Dsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.shown)
    }
}

impl Dsn {
    /// Parses a DSN, taking the password from the environment when the DSN has none.
    pub fn parse(s: &str) -> Result<Self, StoreError> {
        let env_password = || -> Result<Option<String>, StoreError> {
            if let Ok(file) = std::env::var("SUBORG_STORE_PASSWORD_FILE") {
                let p = std::fs::read_to_string(&file)
                    .map_err(|e| StoreError::InvalidDsn(format!("password file {file}: {e}")))?;
                return Ok(Some(p.trim_end_matches(['\n', '\r']).to_owned()));
            }
            Ok(std::env::var("SUBORG_STORE_PASSWORD").ok())
        };
        Self::parse_with(s, env_password)
    }

    fn parse_with(
        s: &str,
        env_password: impl FnOnce() -> Result<Option<String>, StoreError>,
    ) -> Result<Self, StoreError> {
        if let Some(path) = s.strip_prefix("sqlite://") {
            return Self::sqlite(path);
        }
        let rest = s
            .strip_prefix("postgres://")
            .or_else(|| s.strip_prefix("postgresql://"))
            .ok_or_else(|| {
                StoreError::InvalidDsn(format!(
                    "{:?}: use sqlite://PATH or postgres://USER@HOST/DB",
                    redact(s)
                ))
            })?;
        let (userinfo, host) = match rest.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, rest),
        };
        let (user, password) = match userinfo {
            Some(u) => match u.split_once(':') {
                Some((user, pw)) => (Some(user), Some(pw.to_owned())),
                None => (Some(u), None),
            },
            None => (None, None),
        };
        let password = one_password(password, host, env_password)?;
        Ok(Self::postgres(user, password, host))
    }

    fn sqlite(path: &str) -> Result<Self, StoreError> {
        if path.is_empty() {
            return Err(StoreError::InvalidDsn(
                "sqlite:// needs a file path, e.g. sqlite:///var/lib/suborg/store.db".into(),
            ));
        }
        let sep = if path.contains('?') { '&' } else { '?' };
        Ok(Self {
            backend: Backend::Sqlite,
            url: format!("sqlite://{path}{sep}mode=rwc"),
            shown: redact(&format!("sqlite://{path}")),
            read_only: false,
        })
    }

    /// A PostgreSQL DSN for `user` and the URL-encoded `password` at `host` (with the database
    /// and parameters), shown without the password.
    fn postgres(user: Option<&str>, password: Option<String>, host: &str) -> Self {
        let auth = match (user, &password) {
            (Some(u), Some(p)) => format!("{u}:{p}@"),
            (Some(u), None) => format!("{u}@"),
            (None, Some(p)) => format!(":{p}@"),
            (None, None) => String::new(),
        };
        let shown_auth = match user {
            Some(u) if password.is_some() => format!("{u}:***@"),
            Some(u) => format!("{u}@"),
            None if password.is_some() => ":***@".to_owned(),
            None => String::new(),
        };
        Self {
            backend: Backend::Postgres,
            url: format!("postgres://{auth}{host}"),
            shown: format!("postgres://{shown_auth}{}", mask_query(host)),
            read_only: false,
        }
    }

    /// The same store, for reading only: SQLite opens the file read-only (never creating it),
    /// PostgreSQL sessions refuse writes.
    pub fn read_only(mut self) -> Self {
        if self.backend == Backend::Sqlite {
            self.url = self.url.replace("mode=rwc", "mode=ro");
        }
        self.read_only = true;
        self
    }

    /// A read-only SQLite store opened as a file nobody writes (`immutable`): what a reader
    /// can still do where the file or its directory cannot be written, so that SQLite cannot
    /// make the `-shm` file a WAL database needs. `None` for PostgreSQL or a writable DSN.
    pub fn immutable(&self) -> Option<Self> {
        (self.backend == Backend::Sqlite && self.read_only).then(|| {
            let mut d = self.clone();
            d.url.push_str("&immutable=true");
            d
        })
    }

    /// Whether the store is opened for reading only.
    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    /// Statements run on every new connection.
    pub(crate) fn connection_setup(&self) -> &'static str {
        match (self.backend, self.read_only) {
            // The journal mode is the writer's to set; a reader only waits for locks.
            (Backend::Sqlite, true) => concat!(sqlite_lock_wait!(), " PRAGMA query_only = 1;"),
            (Backend::Postgres, true) => concat!(
                "SET default_transaction_read_only = on; ",
                postgres_timeouts!()
            ),
            (backend, false) => backend.connection_setup(),
        }
    }

    /// The SQLite file, for a SQLite store.
    pub fn sqlite_path(&self) -> Option<&str> {
        (self.backend == Backend::Sqlite)
            .then(|| self.shown.strip_prefix("sqlite://"))
            .flatten()
            .map(|p| p.split('?').next().unwrap_or(p))
    }

    /// The URL handed to the driver (with the password).
    pub(crate) fn connect_url(&self) -> &str {
        &self.url
    }

    /// SQLite has one writer at a time; a small pool is enough and avoids lock contention.
    pub(crate) fn max_connections(&self) -> u32 {
        match self.backend {
            Backend::Sqlite => 4,
            Backend::Postgres => 8,
        }
    }
}

/// The password, URL-encoded, from its one source: the DSN's user-info (`in_userinfo`), its
/// `password` parameter (left in `host`'s query), or the environment (variable or file). Two
/// sources are refused, so which one is used is never a surprise.
fn one_password(
    in_userinfo: Option<String>,
    host: &str,
    env_password: impl FnOnce() -> Result<Option<String>, StoreError>,
) -> Result<Option<String>, StoreError> {
    let in_query = host.split_once('?').is_some_and(|(_, q)| {
        q.split('&')
            .any(|kv| secret_key(kv.split('=').next().unwrap_or_default()))
    });
    let from_env = env_password()?;
    let sources: Vec<&str> = [
        (in_userinfo.is_some(), "the DSN's user-info"),
        (in_query, "the DSN's password parameter"),
        (
            from_env.is_some(),
            "SUBORG_STORE_PASSWORD or SUBORG_STORE_PASSWORD_FILE",
        ),
    ]
    .into_iter()
    .filter_map(|(given, name)| given.then_some(name))
    .collect();
    if sources.len() > 1 {
        return Err(StoreError::InvalidDsn(format!(
            "the password is given more than once ({}): give it in one place",
            sources.join(" and ")
        )));
    }
    // A password in the DSN is already URL-encoded; one from the environment is raw.
    Ok(match in_userinfo {
        Some(p) => Some(p),
        None => from_env.map(|p| encode(&p)),
    })
}

/// Percent-encodes a password taken from the environment so any character survives the URL.
fn encode(p: &str) -> String {
    p.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Query parameters whose value is a secret (libpq's names), or may hold one (`options`
/// passes arbitrary settings to the server).
fn secret_key(key: &str) -> bool {
    matches!(
        key.to_ascii_lowercase().as_str(),
        "password" | "sslpassword" | "options"
    )
}

/// `host/db?query` with the value of every secret parameter replaced by `***`.
fn mask_query(s: &str) -> String {
    let Some((head, query)) = s.split_once('?') else {
        return s.to_owned();
    };
    let params: Vec<String> = query
        .split('&')
        .map(|kv| match kv.split_once('=') {
            Some((k, _)) if secret_key(k) => format!("{k}=***"),
            _ => kv.to_owned(),
        })
        .collect();
    format!("{head}?{}", params.join("&"))
}

/// A DSN for messages: any password replaced by `***`, in the user-info and in the query.
/// A DSN that is not `scheme://…` (a typo: `postgres:/user:pw@host`) has its whole user-info
/// hidden, since where the password starts cannot be told.
pub fn redact(s: &str) -> String {
    let s = mask_query(s);
    match (s.find("://"), s.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &s[scheme + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &s[..scheme + 3], &s[at..]),
                None => s,
            }
        }
        (_, Some(at)) => {
            let scheme = s[..at].find(':').map_or(0, |c| c + 1);
            format!("{}***{}", &s[..scheme], &s[at..])
        }
        _ => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str, env: Option<&str>) -> Dsn {
        Dsn::parse_with(s, || Ok(env.map(str::to_owned))).unwrap()
    }

    #[test]
    fn passwords_are_never_shown() {
        let d = parse("postgres://suborg:s3cret@db:5432/suborg", None);
        assert_eq!(d.backend, Backend::Postgres);
        assert_eq!(d.to_string(), "postgres://suborg:***@db:5432/suborg");
        assert_eq!(
            format!("{d:?}"),
            "Dsn(postgres://suborg:***@db:5432/suborg)"
        );
        assert!(d.connect_url().contains("s3cret"));
        let d = parse("postgres://suborg@db/suborg", Some("p@ss w%rd"));
        assert_eq!(d.to_string(), "postgres://suborg:***@db/suborg");
        assert_eq!(
            d.connect_url(),
            "postgres://suborg:p%40ss%20w%25rd@db/suborg"
        );
        assert_eq!(redact("postgres://u:pw@h/db"), "postgres://u:***@h/db");
        assert!(!redact("bogus://u:hunter2@h").contains("hunter2"));
    }

    /// A DSN mistyped so that it parses as no URL still keeps its password out of the message
    /// that refuses it, and a SQLite DSN's query is masked too.
    #[test]
    fn a_mistyped_dsn_shows_no_password() {
        for dsn in [
            "postgres:/postgres:hunter2@127.0.0.1:1/x",
            "postgres:postgres:hunter2@127.0.0.1:1/x",
            "postgres//u:hunter2@h/db",
            "u:hunter2@h/db",
        ] {
            let e = Dsn::parse_with(dsn, || Ok(None)).unwrap_err().to_string();
            assert!(!e.contains("hunter2"), "{e}");
            assert!(e.contains("@127.0.0.1") || e.contains("@h/db"), "{e}");
        }
        let d = parse("sqlite:///tmp/a.db?password=hunter2", None);
        assert_eq!(d.to_string(), "sqlite:///tmp/a.db?password=***");
    }

    #[test]
    fn passwords_in_query_parameters_are_never_shown() {
        for dsn in [
            "postgres://u@127.0.0.1:1/db?password=hunter2",
            "postgres://u@127.0.0.1:1/db?options=-c%20x%3Dy&password=hunter2",
            "postgres://u@127.0.0.1:1/db?sslmode=disable&PASSWORD=hunter2&x=1",
            "postgres://u@h/db?sslpassword=hunter2",
            "postgres://u@h/db?options=-c%20password%3Dhunter2",
        ] {
            let d = parse(dsn, None);
            assert!(!d.to_string().contains("hunter2"), "{d}");
            assert!(!format!("{d:?}").contains("hunter2"), "{d:?}");
            assert!(!redact(dsn).contains("hunter2"), "{}", redact(dsn));
            assert!(
                d.connect_url().contains("hunter2"),
                "the driver still gets it"
            );
        }
        let d = parse(
            "postgres://u@h/db?sslmode=require&application_name=suborg",
            None,
        );
        assert_eq!(
            d.to_string(),
            "postgres://u@h/db?sslmode=require&application_name=suborg"
        );
    }

    #[test]
    fn a_password_given_twice_is_refused_naming_the_sources_only() {
        for (dsn, env) in [
            ("postgres://u:pw-alpha@h/db", Some("pw-bravo")),
            ("postgres://u@h/db?password=pw-alpha", Some("pw-bravo")),
            ("postgres://u:pw-alpha@h/db?password=pw-bravo", None),
        ] {
            let e = Dsn::parse_with(dsn, || Ok(env.map(str::to_owned)))
                .unwrap_err()
                .to_string();
            assert!(e.contains("given more than once"), "{e}");
            assert!(!e.contains("pw-alpha") && !e.contains("pw-bravo"), "{e}");
        }
    }

    #[test]
    fn sqlite_paths() {
        let d = parse("sqlite:///var/lib/suborg/store.db", None);
        assert_eq!(d.backend, Backend::Sqlite);
        assert_eq!(d.to_string(), "sqlite:///var/lib/suborg/store.db");
        assert_eq!(
            d.connect_url(),
            "sqlite:///var/lib/suborg/store.db?mode=rwc"
        );
    }

    #[test]
    fn unknown_schemes_are_refused_without_the_password() {
        let e = Dsn::parse_with("mysql://u:hunter2@h/db", || Ok(None))
            .unwrap_err()
            .to_string();
        assert!(e.contains("use sqlite://PATH or postgres://"), "{e}");
        assert!(!e.contains("hunter2"), "{e}");
        assert!(Dsn::parse_with("sqlite://", || Ok(None)).is_err());
    }
}
