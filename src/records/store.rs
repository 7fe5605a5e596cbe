//! The contact store contract every backend (SQLite now, PostgreSQL later) keeps, and its errors.

use std::path::PathBuf;

use time::OffsetDateTime;

use super::record::{ContactRecord, Progress};
use super::stats::{MenuFunnel, StatsError, StatsQuery, StatsReport};

/// Where contact records are kept. Blocking: async callers go through [`super::Records`].
pub trait ContactStore: Send + Sync + 'static {
    /// Writes `updates` in order in one transaction: all of them or, on error, none.
    fn write(&self, updates: &[RecordUpdate]) -> Result<(), StoreError>;
    /// A real write, committed, that changes nothing: start-up proves the database takes writes before it says
    /// it is ready.
    fn probe_write(&self) -> Result<(), StoreError>;
    /// At start-up: every record still without outcome is closed as `failed`, ended_at = now, end_reason
    /// [`UNFINISHED_END_REASON`]. Returns how many.
    fn close_unfinished(&self, now: OffsetDateTime) -> Result<usize, StoreError>;
    /// Records matching `query`, newest (by `started_at`) first.
    fn list(&self, query: &ContactQuery) -> Result<Vec<ContactRecord>, StoreError>;
    /// Aggregates the calls started in the query's range (see [`super::stats`] for the definitions).
    fn stats(&self, query: &StatsQuery) -> Result<StatsReport, StoreError>;
    /// The menu funnel of the calls started in `from..to`.
    fn menu_funnel(
        &self,
        from: jiff::Timestamp,
        to: jiff::Timestamp,
    ) -> Result<MenuFunnel, StoreError>;
    /// Retention: deletes every record of a call that started before `cutoff`, so that nothing of it is left
    /// in the store's files; a record started at `cutoff` stays. Returns how many went.
    fn delete_started_before(&self, cutoff: OffsetDateTime) -> Result<usize, StoreError>;
}

/// One change to the contact records.
#[derive(Debug, Clone, PartialEq)]
pub enum RecordUpdate {
    /// The whole record, inserted or replacing the one with its id: a call's start (outcome NULL, so a crash
    /// leaves a trace) and its end.
    Whole(Box<ContactRecord>),
    /// A call in progress moved on: only what changed.
    Progress(Box<Progress>),
}

impl RecordUpdate {
    /// The record this update is about.
    pub fn record_id(&self) -> &str {
        match self {
            RecordUpdate::Whole(record) => &record.id,
            RecordUpdate::Progress(progress) => &progress.id,
        }
    }
}

/// The end reason [`ContactStore::close_unfinished`] writes.
pub const UNFINISHED_END_REASON: &str = "daemon stopped before the call ended";

/// Which records [`ContactStore::list`] returns.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ContactQuery {
    /// Only calls started at or after this instant.
    pub since: Option<OffsetDateTime>,
    /// At most this many (the newest); `None` for all.
    pub limit: Option<usize>,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create the folder {path} for the contact record database: {source}")]
    CreateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot open the contact record database {path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error(
        "the contact record database {path} has schema version {found}, but this knappval knows versions up to \
         {supported}: run a newer knappval, or point records at another file"
    )]
    SchemaTooNew {
        path: PathBuf,
        found: i64,
        supported: i64,
    },
    #[error(
        "the contact record database {path} has schema version {found}; this knappval reads version {supported} \
         and upgrades a file only when the daemon starts: restart the daemon with this knappval once, then run \
         this again"
    )]
    SchemaTooOld {
        path: PathBuf,
        found: i64,
        supported: i64,
    },
    #[error(
        "cannot bring the contact record database {path} to schema version {version}: {source}"
    )]
    Migrate {
        path: PathBuf,
        version: i64,
        #[source]
        source: rusqlite::Error,
    },
    #[error("contact record database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error(
        "contact record row {row_id} has a bad {column} ({reason}); fix or delete that row with sqlite3, \
         the other records are intact"
    )]
    CorruptRow {
        row_id: i64,
        column: &'static str,
        reason: String,
    },
    #[error(
        "the contact record database {path} does not take writes ({source}); make the file, the -wal and -shm \
         files beside it and their folder writable by the user knappval runs as, or point --db at a writable path"
    )]
    NotWritable {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error(
        "another knappval (PID {pid}) is running on the contact record database {path}: it holds {lock}; stop \
         it first, or give this one another --db"
    )]
    InUse {
        path: PathBuf,
        lock: PathBuf,
        pid: String,
    },
    #[error(
        "cannot lock the contact record database with {lock}: {source}; make that file and its folder writable by \
         the user knappval runs as"
    )]
    Lock {
        lock: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot encode the {what} of contact record {record_id}: {source}")]
    Encode {
        record_id: String,
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error("{0}")]
    Stats(#[from] StatsError),
    #[error("the contact record worker stopped before it answered: {0}")]
    Worker(String),
}

impl StoreError {
    /// A database the user may read but not write fails at whichever step writes first (switching to WAL,
    /// a migration), not only at the write probe: each is the same refusal, with its fix.
    pub(super) fn read_only_as_not_writable(self, path: &std::path::Path) -> StoreError {
        match self {
            StoreError::Open { source, .. }
            | StoreError::Migrate { source, .. }
            | StoreError::Sqlite(source)
                if source.sqlite_error_code() == Some(rusqlite::ErrorCode::ReadOnly) =>
            {
                StoreError::NotWritable {
                    path: path.to_path_buf(),
                    source,
                }
            }
            other => other,
        }
    }
}
