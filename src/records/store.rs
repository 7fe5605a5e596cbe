//! The contact store contract every backend (SQLite now, PostgreSQL later) keeps, and its errors.

use std::path::PathBuf;

use time::OffsetDateTime;

use super::record::ContactRecord;
use super::stats::{MenuFunnel, StatsError, StatsQuery, StatsReport};

/// Where contact records are kept. Blocking: async callers go through [`super::Records`].
pub trait ContactStore: Send + Sync + 'static {
    /// Record the start of a call at once (outcome NULL), so a crash leaves a trace.
    fn call_started(&self, record: &ContactRecord) -> Result<(), StoreError>;
    /// Write the final record (upsert by call_id).
    fn call_ended(&self, record: &ContactRecord) -> Result<(), StoreError>;
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
    #[error("cannot encode the {what} of contact record {call_id}: {source}")]
    Encode {
        call_id: String,
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error("{0}")]
    Stats(#[from] StatsError),
    #[error("the contact record worker stopped before it answered: {0}")]
    Worker(String),
}
