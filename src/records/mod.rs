//! Contact records: one per call, what the service centre is judged by (calls per function and hour, where
//! callers gave up, how long they waited).
//!
//! Owns the record type, the [`ContactStore`] contract and its SQLite backend, the writer task that batches and
//! retries writes, the async [`Records`] handle for call tasks, the one-daemon-per-file [`DatabaseLock`], and the
//! JSONL/CSV export. Reads nothing of the call tasks' insides: the call side hands over records and what changed
//! in them ([`Progress`]). May not touch SIP, media or HTTP.

mod export;
mod handle;
mod lock;
mod record;
mod retention;
mod sqlite;
pub mod stats;
mod store;
mod writer;

pub use export::{ExportFormat, UnknownExportFormat, export, write_csv};
pub use handle::Records;
pub use lock::DatabaseLock;
pub use record::{ContactRecord, Progress, format_timestamp, new_record_id, parse_timestamp};
pub use retention::Retention;
pub use sqlite::{SCHEMA_VERSION, SqliteStore};
pub use store::{ContactQuery, ContactStore, RecordUpdate, StoreError, UNFINISHED_END_REASON};
pub use writer::{WriterSettings, WriterStatus};
