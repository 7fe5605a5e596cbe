//! Contact records: one per call, what the service centre is judged by (calls per function and hour, where
//! callers gave up, how long they waited).
//!
//! Owns the record type, the [`ContactStore`] contract and its SQLite backend, the async [`Records`] handle
//! for call tasks, and the JSONL/CSV export. Reads nothing of the call tasks' insides: the call side hands
//! over finished [`ContactRecord`]s. May not touch SIP, media or HTTP.

mod export;
mod handle;
mod record;
mod sqlite;
pub mod stats;
mod store;

pub use export::{ExportFormat, UnknownExportFormat, export, write_csv};
pub use handle::Records;
pub use record::{ContactRecord, format_timestamp, parse_timestamp};
pub use sqlite::{SCHEMA_VERSION, SqliteStore};
pub use store::{ContactQuery, ContactStore, StoreError, UNFINISHED_END_REASON};
