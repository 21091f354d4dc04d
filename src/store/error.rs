//! [`StoreError`]: what can go wrong with the store, for every caller. Messages name the store
//! by its DSN with the password removed.

/// What can go wrong with the store. Messages never carry a password.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The DSN could not be understood.
    #[error("invalid store: {0}")]
    InvalidDsn(String),
    /// The database could not be reached or opened.
    #[error("cannot open store {dsn}: {source}")]
    Unavailable {
        /// The DSN, password removed.
        dsn: String,
        /// The driver's error.
        #[source]
        source: sqlx::Error,
    },
    /// The database holds a schema newer than this binary knows.
    #[error(
        "store {dsn} has schema version {found}, newer than the {known} this suborg knows: upgrade suborg"
    )]
    SchemaTooNew {
        /// The DSN, password removed.
        dsn: String,
        /// Version in the database.
        found: i64,
        /// Newest version this binary has.
        known: i64,
    },
    /// The desired state cannot be applied as a whole.
    #[error("{0}")]
    Conflict(String),
    /// Objects whose rows cannot be written: a row with their slug exists that suborg did not
    /// create, an object would move a row to another parent, or the database refuses a row.
    /// Every such object a plan finds is named at once, so a caller can leave them all out.
    #[error("{}", conflicts_text(conflicts))]
    SourceConflicts {
        /// Each object at fault, in the order the plan met them.
        conflicts: Vec<ObjectConflict>,
    },
    /// The store did not answer in time (a database that stopped responding, a lock held
    /// elsewhere); whatever the transaction had written was rolled back.
    #[error(
        "store {dsn} did not answer within {}s; nothing was written, the transaction was rolled back",
        after.as_secs()
    )]
    TimedOut {
        /// The DSN, password removed.
        dsn: String,
        /// How long it was given.
        after: std::time::Duration,
    },
    /// Another controller writes the store ([`super::Writer`]).
    #[error("{0}")]
    Claimed(String),
    /// A query failed.
    #[error("store {dsn}: {source}")]
    Query {
        /// The DSN, password removed.
        dsn: String,
        /// The driver's error.
        #[source]
        source: sqlx::Error,
    },
}

/// One object whose rows cannot be written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectConflict {
    /// The source (Kubernetes object uid) at fault.
    pub uid: String,
    /// What is wrong and what to do.
    pub message: String,
}

/// The conflicts' messages, one a line.
fn conflicts_text(conflicts: &[ObjectConflict]) -> String {
    conflicts
        .iter()
        .map(|c| c.message.as_str())
        .collect::<Vec<_>>()
        .join("\n")
}
