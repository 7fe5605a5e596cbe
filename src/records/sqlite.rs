//! The SQLite contact store: one file, WAL, every commit synced, schema versioned by `PRAGMA user_version`.
//! Writes come in batches (see `super::writer`), one transaction and so one sync each.
//!
//! Owns the table layout and its migrations. Knows nothing about calls beyond [`ContactRecord`]; the async
//! side (`Records`) and HTTP live elsewhere.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, Row, TransactionBehavior, params};
use time::OffsetDateTime;

use super::record::{ContactRecord, Progress, format_timestamp, parse_timestamp};
use super::stats::{self, MenuFunnel, StatsQuery, StatsReport};
use super::store::{ContactQuery, ContactStore, RecordUpdate, StoreError, UNFINISHED_END_REASON};
use crate::flow::{Outcome, Step};
use serde::Deserialize;

/// A record's menu time in milliseconds, from its own columns: answered_at to transferred_at, or to ended_at when
/// it was not transferred; NULL when it was never answered or has not ended.
macro_rules! menu_ms {
    () => {
        "(CASE WHEN answered_at IS NOT NULL THEN max(0, CAST(round(
            (julianday(coalesce(transferred_at, ended_at)) - julianday(answered_at)) * 86400000.0) AS INTEGER)) END)"
    };
}

/// Schema steps, oldest first; step `n` takes the file from `user_version` n to n + 1. Append, never edit:
/// files in the field are at every version ever released.
///
/// Columns are named for the domain, not the JSON (`caller`, not the SQL keyword `from`). `outcome` has no
/// CHECK list on purpose: SQLite cannot alter a CHECK without rebuilding the table, and outcomes will grow
/// (queues); the reader rejects names it does not know instead.
const MIGRATIONS: &[&str] = &[
    // 1: the foundation's contact record.
    "CREATE TABLE contact_records (
        id              INTEGER PRIMARY KEY,
        call_id         TEXT    NOT NULL,
        caller          TEXT    NOT NULL,
        called          TEXT    NOT NULL,
        started_at      TEXT    NOT NULL,
        answered_at     TEXT,
        ended_at        TEXT,
        duration_ms     INTEGER,
        digits          TEXT    NOT NULL DEFAULT '',
        path            TEXT    NOT NULL DEFAULT '[]',
        function_id     TEXT,
        outcome         TEXT,
        transfer_target TEXT,
        transferred_at  TEXT,
        end_reason      TEXT,
        steps           TEXT    NOT NULL DEFAULT '[]'
    );
    CREATE UNIQUE INDEX contact_records_call_id ON contact_records (call_id);
    CREATE INDEX contact_records_started_at ON contact_records (started_at);
    -- Start-up looks for calls a crash left open; this stays tiny however many records there are.
    CREATE INDEX contact_records_unfinished ON contact_records (id) WHERE outcome IS NULL;",
    // 2: records keyed by an id of our own (issue 7.3): a Call-ID may come again and must not overwrite the
    // earlier call. Rows from before get a UUIDv7 from their start time, like new ones.
    "ALTER TABLE contact_records ADD COLUMN record_id TEXT NOT NULL DEFAULT '';
    UPDATE contact_records SET record_id = lower(printf('%08x-%04x-7%03x-%04x-%012x',
        ms >> 16, ms & 65535, random() & 4095, (random() & 16383) | 32768, random() & 281474976710655))
        FROM (SELECT id AS row_id,
                coalesce(CAST(round((julianday(started_at) - 2440587.5) * 86400000) AS INTEGER), 0) AS ms
              FROM contact_records)
        WHERE id = row_id;
    CREATE UNIQUE INDEX contact_records_record_id ON contact_records (record_id);
    DROP INDEX contact_records_call_id;
    CREATE INDEX contact_records_call_id ON contact_records (call_id);",
    // 3: statistics. menu_ms (see records::stats for its definition) is kept by triggers, so no writer has to
    // know it; a plain column rather than a generated one because SQLite reads a generated column from the row
    // even when an index holds it. The two indexes cover every column a stats query reads, so a year of calls
    // is counted from an index alone, without touching the rows and their step trails.
    concat!(
        "ALTER TABLE contact_records ADD COLUMN menu_ms INTEGER;
        UPDATE contact_records SET menu_ms = ", menu_ms!(), ";
        CREATE TRIGGER contact_records_menu_ms_insert AFTER INSERT ON contact_records BEGIN
            UPDATE contact_records SET menu_ms = ", menu_ms!(), " WHERE id = NEW.id;
        END;
        CREATE TRIGGER contact_records_menu_ms_update
            AFTER UPDATE OF answered_at, transferred_at, ended_at ON contact_records BEGIN
            UPDATE contact_records SET menu_ms = ", menu_ms!(), " WHERE id = NEW.id;
        END;
        CREATE INDEX contact_records_stats ON contact_records (started_at, function_id, outcome, menu_ms);
        CREATE INDEX contact_records_function_stats ON contact_records (function_id, started_at, outcome, menu_ms);"
    ),
    // 4: the announcements a call was played (issue 10), a JSON list of prompt ids, and the caller's language.
    "ALTER TABLE contact_records ADD COLUMN announcements TEXT NOT NULL DEFAULT '[]';
    ALTER TABLE contact_records ADD COLUMN language TEXT;",
    // 5: queues (issue 8): when the caller entered the first queue, how long they waited, and who answered.
    "ALTER TABLE contact_records ADD COLUMN queue_entered_at TEXT;
    ALTER TABLE contact_records ADD COLUMN queue_wait_ms INTEGER;
    ALTER TABLE contact_records ADD COLUMN answered_by TEXT;",
    // 6: the menu version each call ran on (issue 10, hot reload): NULL for calls from before.
    "ALTER TABLE contact_records ADD COLUMN menu_version TEXT;",
    // 7: statistics on queues and a fast funnel (issue 9). `queue` is the queue the caller waited in (a caller
    // who overflowed ends with another function, and the wait belongs to the queue); rows from before take their
    // function, the only guess there is. The queue figures are counted from a partial index of the calls whose
    // wait is over. `funnel` keeps each finished call's part of the menu funnel (records::stats::funnel_summary)
    // so that the funnel reads a short text per call from its own index instead of parsing every step trail.
    // The writer fills it with a whole record and clears it when a step is appended; rows from before are
    // filled in by [`backfill_funnels`] in the same transaction.
    "ALTER TABLE contact_records ADD COLUMN queue TEXT;
    UPDATE contact_records SET queue = function_id WHERE queue_entered_at IS NOT NULL;
    CREATE INDEX contact_records_queue_stats
        ON contact_records (started_at, queue, outcome, queue_wait_ms, answered_by)
        WHERE queue_wait_ms IS NOT NULL;
    ALTER TABLE contact_records ADD COLUMN funnel TEXT;
    CREATE INDEX contact_records_funnel ON contact_records (started_at, funnel);",
];

/// The schema version whose step is followed by [`backfill_funnels`].
const FUNNEL_VERSION: i64 = 7;

/// The schema version this build writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// How long a writer waits for another process (an admin's `sqlite3`, a backup) to release the file.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

const UPSERT: &str = "INSERT INTO contact_records (
        record_id, call_id, caller, called, started_at, answered_at, ended_at, duration_ms, digits, path,
        function_id, outcome, transfer_target, transferred_at, end_reason, steps, announcements, language,
        queue_entered_at, queue_wait_ms, answered_by, menu_version, funnel, queue)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22,
        ?23, ?24)
    ON CONFLICT (record_id) DO UPDATE SET
        call_id = excluded.call_id,
        caller = excluded.caller,
        called = excluded.called,
        started_at = excluded.started_at,
        answered_at = excluded.answered_at,
        ended_at = excluded.ended_at,
        duration_ms = excluded.duration_ms,
        digits = excluded.digits,
        path = excluded.path,
        function_id = excluded.function_id,
        outcome = excluded.outcome,
        transfer_target = excluded.transfer_target,
        transferred_at = excluded.transferred_at,
        end_reason = excluded.end_reason,
        steps = excluded.steps,
        announcements = excluded.announcements,
        language = excluded.language,
        queue_entered_at = excluded.queue_entered_at,
        queue_wait_ms = excluded.queue_wait_ms,
        answered_by = excluded.answered_by,
        menu_version = excluded.menu_version,
        funnel = excluded.funnel,
        queue = excluded.queue";

/// A call moved on: the columns that changed (NULL keeps the old value).
const PROGRESS: &str = "UPDATE contact_records SET
        answered_at = coalesce(?2, answered_at),
        digits = coalesce(?3, digits),
        path = coalesce(?4, path),
        function_id = coalesce(?5, function_id),
        transfer_target = coalesce(?6, transfer_target),
        transferred_at = coalesce(?7, transferred_at),
        announcements = coalesce(?8, announcements),
        language = coalesce(?9, language),
        queue_entered_at = coalesce(?10, queue_entered_at),
        answered_by = coalesce(?11, answered_by),
        queue_wait_ms = coalesce(?12, queue_wait_ms),
        queue = coalesce(?13, queue)
    WHERE record_id = ?1";

/// Appends one step at its index; a step already there is left alone (json_insert never overwrites). The kept
/// funnel summary no longer matches the trail, so it goes: the funnel reads the trail until the whole record
/// comes.
const APPEND_STEP: &str = "UPDATE contact_records SET steps = json_insert(steps, '$[' || ?2 || ']', json(?3)), \
     funnel = NULL WHERE record_id = ?1";

const COLUMNS: &str = "id, record_id, call_id, caller, called, started_at, answered_at, ended_at, digits, path, function_id, \
     outcome, transfer_target, transferred_at, end_reason, steps, announcements, language, queue_entered_at, \
     queue_wait_ms, answered_by, menu_version, queue";

/// Contact records in one SQLite file. One writing connection behind a mutex (SQLite has one writer at a time
/// anyway, and the writer task sends one batch at a time), and for a file a second, read-only one for lists and
/// statistics: with WAL, reads never wait for a write, even one stuck in the busy timeout of a locked database,
/// and a long aggregate never holds up a call's write.
pub struct SqliteStore {
    connection: Mutex<Connection>,
    reader: Option<Mutex<Connection>>,
    path: PathBuf,
}

/// Creates an empty file at `path` with mode 0600, unless one is there (an existing file keeps the mode its admin
/// gave it). The records say when and how people called: personal data even with the numbers pseudonymised.
fn create_private(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => Err(e),
        _ => Ok(()),
    }
}

impl SqliteStore {
    /// Opens (creating it, mode 0600, and its folder if need be) the database at `path` and brings its schema up to date.
    pub fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        Self::open_file(path).map_err(|e| e.read_only_as_not_writable(path))
    }

    fn open_file(path: &Path) -> Result<SqliteStore, StoreError> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|source| StoreError::CreateDir {
                path: parent.to_path_buf(),
                source,
            })?;
        }
        // Created here first, so that SQLite opens a file only the daemon's user may read (it gives the -wal
        // and -shm files the database's mode). When this cannot create it, SQLite's own open says why.
        let _ = create_private(path);
        let open_error = |source| StoreError::Open {
            path: path.to_path_buf(),
            source,
        };
        let connection = Connection::open(path).map_err(open_error)?;
        connection.busy_timeout(BUSY_TIMEOUT).map_err(open_error)?;
        let journal_mode: String = connection
            .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
            .map_err(open_error)?;
        if !journal_mode.eq_ignore_ascii_case("wal") {
            // Some network file systems cannot do WAL; the records are still safe, only readers block writers.
            tracing::warn!(
                path = %path.display(),
                journal_mode,
                "contact record database is not in WAL mode; keep it on a local disk"
            );
        }
        // Every commit reaches the disk: a record lost on power failure is a call the statistics never saw.
        // Cheap, because the writer commits a batch of updates at a time, not one per call event.
        connection
            .pragma_update(None, "synchronous", "FULL")
            .map_err(open_error)?;
        // A deleted record (retention) is overwritten with zeros, not left in a free page for anyone with the
        // file to read back.
        connection
            .pragma_update(None, "secure_delete", "ON")
            .map_err(open_error)?;
        let mut store = Self::with_connection(connection, path.to_path_buf())?;
        // NO_MUTEX, as `Connection::open` has by default: the store's own mutex already keeps the connection to
        // one thread, and SQLite's per-call locking cost a sixth of a year's statistics query.
        let reader = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(open_error)?;
        reader.busy_timeout(BUSY_TIMEOUT).map_err(open_error)?;
        store.reader = Some(Mutex::new(reader));
        Ok(store)
    }

    /// Opens an existing database to read it (`knappval stats`, `knappval contacts`): never creates and never
    /// migrates, so that a newer binary run beside an older daemon leaves the daemon's file as that daemon knows
    /// it (an upgrade rewrites every row and holds the write lock while it does).
    pub fn open_for_reading(path: &Path) -> Result<SqliteStore, StoreError> {
        let open_error = |source| StoreError::Open {
            path: path.to_path_buf(),
            source,
        };
        let connection = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(open_error)?;
        connection.busy_timeout(BUSY_TIMEOUT).map_err(open_error)?;
        let found: i64 = connection
            .pragma_query_value(None, "user_version", |row| row.get(0))
            .map_err(open_error)?;
        let mismatch = |too_new: bool| {
            let (path, supported) = (path.to_path_buf(), SCHEMA_VERSION);
            if too_new {
                StoreError::SchemaTooNew {
                    path,
                    found,
                    supported,
                }
            } else {
                StoreError::SchemaTooOld {
                    path,
                    found,
                    supported,
                }
            }
        };
        match found.cmp(&SCHEMA_VERSION) {
            std::cmp::Ordering::Greater => Err(mismatch(true)),
            std::cmp::Ordering::Less => Err(mismatch(false)),
            std::cmp::Ordering::Equal => Ok(SqliteStore {
                connection: Mutex::new(connection),
                reader: None,
                path: path.to_path_buf(),
            }),
        }
    }

    /// A store that lives in memory only, for tests and `knappval simulate`.
    pub fn open_in_memory() -> Result<SqliteStore, StoreError> {
        let path = PathBuf::from(":memory:");
        let connection = Connection::open_in_memory().map_err(|source| StoreError::Open {
            path: path.clone(),
            source,
        })?;
        Self::with_connection(connection, path)
    }

    fn with_connection(
        mut connection: Connection,
        path: PathBuf,
    ) -> Result<SqliteStore, StoreError> {
        migrate(&mut connection, &path)?;
        Ok(SqliteStore {
            connection: Mutex::new(connection),
            reader: None,
            path,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub(super) fn connection(&self) -> MutexGuard<'_, Connection> {
        // A panic elsewhere while holding the lock leaves no half-written state: every write is one SQLite
        // statement or transaction, which SQLite rolls back on its own.
        self.connection
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn reader(&self) -> MutexGuard<'_, Connection> {
        match &self.reader {
            Some(reader) => reader.lock().unwrap_or_else(PoisonError::into_inner),
            None => self.connection(),
        }
    }
}

fn encode(
    record_id: &str,
    what: &'static str,
    value: &impl serde::Serialize,
) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|source| StoreError::Encode {
        record_id: record_id.to_string(),
        what,
        source,
    })
}

fn upsert(connection: &Connection, record: &ContactRecord) -> Result<(), StoreError> {
    let path = encode(&record.id, "path", &record.path)?;
    let steps = encode(&record.id, "steps", &record.steps)?;
    let announcements = encode(&record.id, "announcements", &record.announcements)?;
    let funnel = Vec::<Step>::deserialize(&record.steps)
        .ok()
        .and_then(|steps| stats::funnel_summary(&steps));
    let mut statement = connection.prepare_cached(UPSERT)?;
    statement.execute(params![
        record.id,
        record.call_id,
        record.from,
        record.to,
        format_timestamp(record.started_at),
        record.answered_at.map(format_timestamp),
        record.ended_at.map(format_timestamp),
        record.duration_ms(),
        record.digits,
        path,
        record.function,
        record.outcome.map(Outcome::as_str),
        record.transfer_target,
        record.transferred_at.map(format_timestamp),
        record.end_reason,
        steps,
        announcements,
        record.language,
        record.queue_entered_at.map(format_timestamp),
        record.queue_wait_ms,
        record.answered_by,
        record.menu_version,
        funnel,
        record.queue,
    ])?;
    Ok(())
}

fn progress(connection: &Connection, progress: &Progress) -> Result<(), StoreError> {
    let path = progress
        .path
        .as_ref()
        .map(|path| encode(&progress.id, "path", path))
        .transpose()?;
    let announcements = progress
        .announcements
        .as_ref()
        .map(|list| encode(&progress.id, "announcements", list))
        .transpose()?;
    connection.prepare_cached(PROGRESS)?.execute(params![
        progress.id,
        progress.answered_at.map(format_timestamp),
        progress.digits,
        path,
        progress.function,
        progress.transfer_target,
        progress.transferred_at.map(format_timestamp),
        announcements,
        progress.language,
        progress.queue_entered_at.map(format_timestamp),
        progress.answered_by,
        progress.queue_wait_ms,
        progress.queue,
    ])?;
    let mut append = connection.prepare_cached(APPEND_STEP)?;
    for (i, step) in progress.steps.iter().enumerate() {
        let index = i64::try_from(progress.first_step + i).unwrap_or(i64::MAX);
        append.execute(params![
            progress.id,
            index,
            encode(&progress.id, "steps", step)?
        ])?;
    }
    Ok(())
}

impl ContactStore for SqliteStore {
    fn write(&self, updates: &[RecordUpdate]) -> Result<(), StoreError> {
        let mut connection = self.connection();
        let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
        for update in updates {
            match update {
                RecordUpdate::Whole(record) => upsert(&transaction, record)?,
                RecordUpdate::Progress(change) => progress(&transaction, change)?,
            }
        }
        transaction.commit()?;
        Ok(())
    }

    fn delete_started_before(&self, cutoff: OffsetDateTime) -> Result<usize, StoreError> {
        let connection = self.connection();
        // Timestamps are stored in one fixed-width UTC form, so text order is time order (and the started_at
        // index serves this).
        let deleted = connection
            .prepare_cached("DELETE FROM contact_records WHERE started_at < ?1")?
            .execute(params![format_timestamp(cutoff)])?;
        if deleted > 0 && self.reader.is_some() {
            // The deleted rows' old pages also sit in the write-ahead log until a checkpoint copies the zeroed
            // pages over them; TRUNCATE then empties the log file. Busy (a reader in the middle of a list) only
            // postpones it to SQLite's next automatic checkpoint.
            let _busy: (i64, i64, i64) =
                connection.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |row| {
                    Ok((row.get(0)?, row.get(1)?, row.get(2)?))
                })?;
        }
        Ok(deleted)
    }

    fn probe_write(&self) -> Result<(), StoreError> {
        let not_writable = |source| StoreError::NotWritable {
            path: self.path.clone(),
            source,
        };
        let mut connection = self.connection();
        let transaction = connection
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(not_writable)?;
        // Writing the version it already has dirties the header page: a real write, committed and synced.
        let version: i64 = transaction
            .pragma_query_value(None, "user_version", |row| row.get(0))
            .map_err(not_writable)?;
        transaction
            .pragma_update(None, "user_version", version)
            .map_err(not_writable)?;
        transaction.commit().map_err(not_writable)
    }

    fn close_unfinished(&self, now: OffsetDateTime) -> Result<usize, StoreError> {
        let mut connection = self.connection();
        let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let unfinished: Vec<(i64, String)> = {
            let mut statement = transaction
                .prepare("SELECT id, started_at FROM contact_records WHERE outcome IS NULL")?;
            statement
                .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?
                .collect::<Result<_, _>>()?
        };
        let ended_at = format_timestamp(now);
        {
            let mut update = transaction.prepare(
                "UPDATE contact_records SET outcome = ?1, ended_at = ?2, duration_ms = ?3, end_reason = ?4 \
                 WHERE id = ?5",
            )?;
            for (id, started_at) in &unfinished {
                // A start time nobody can read must not stop the daemon from starting: close the call anyway
                // and leave its length unknown.
                let duration_ms = match parse_timestamp(started_at) {
                    Ok(started_at) => ContactRecord {
                        ended_at: Some(now),
                        ..ContactRecord::started("", "", "", started_at)
                    }
                    .duration_ms(),
                    Err(error) => {
                        tracing::warn!(
                            row_id = id,
                            started_at,
                            %error,
                            "unfinished contact record has a bad start time"
                        );
                        None
                    }
                };
                update.execute(params![
                    Outcome::Failed.as_str(),
                    ended_at,
                    duration_ms,
                    UNFINISHED_END_REASON,
                    id
                ])?;
            }
        }
        transaction.commit()?;
        Ok(unfinished.len())
    }

    fn list(&self, query: &ContactQuery) -> Result<Vec<ContactRecord>, StoreError> {
        let limit = query
            .limit
            .map_or(-1, |limit| i64::try_from(limit).unwrap_or(i64::MAX));
        let connection = self.reader();
        let rows: Vec<RawRow> = match query.since {
            Some(since) => {
                let mut statement = connection.prepare_cached(&format!(
                    "SELECT {COLUMNS} FROM contact_records WHERE started_at >= ?1 \
                     ORDER BY started_at DESC, id DESC LIMIT ?2"
                ))?;
                statement
                    .query_map(params![format_timestamp(since), limit], RawRow::read)?
                    .collect::<Result<_, _>>()?
            }
            None => {
                let mut statement = connection.prepare_cached(&format!(
                    "SELECT {COLUMNS} FROM contact_records ORDER BY started_at DESC, id DESC LIMIT ?1"
                ))?;
                statement
                    .query_map(params![limit], RawRow::read)?
                    .collect::<Result<_, _>>()?
            }
        };
        drop(connection);
        rows.into_iter().map(RawRow::into_record).collect()
    }

    fn stats(&self, query: &StatsQuery) -> Result<StatsReport, StoreError> {
        stats::stats(&self.reader(), query)
    }

    fn menu_funnel(
        &self,
        from: jiff::Timestamp,
        to: jiff::Timestamp,
    ) -> Result<MenuFunnel, StoreError> {
        stats::menu_funnel(&self.reader(), from, to)
    }
}

/// Brings the schema to [`SCHEMA_VERSION`], one step per transaction so that a crash mid-way resumes cleanly.
fn migrate(connection: &mut Connection, path: &Path) -> Result<(), StoreError> {
    loop {
        // IMMEDIATE takes the write lock before reading the version, so two daemons started on one file
        // cannot both run the same step.
        let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let found: i64 = transaction.pragma_query_value(None, "user_version", |row| row.get(0))?;
        if found > SCHEMA_VERSION {
            return Err(StoreError::SchemaTooNew {
                path: path.to_path_buf(),
                found,
                supported: SCHEMA_VERSION,
            });
        }
        let Some(step) = usize::try_from(found).ok().and_then(|i| MIGRATIONS.get(i)) else {
            return Ok(());
        };
        let version = found + 1;
        let migrate_error = |source| StoreError::Migrate {
            path: path.to_path_buf(),
            version,
            source,
        };
        transaction.execute_batch(step).map_err(migrate_error)?;
        if version == FUNNEL_VERSION {
            backfill_funnels(&transaction).map_err(|error| match error {
                StoreError::Sqlite(source) => migrate_error(source),
                error => error,
            })?;
        }
        transaction
            .pragma_update(None, "user_version", version)
            .map_err(migrate_error)?;
        transaction.commit().map_err(migrate_error)?;
        tracing::info!(path = %path.display(), version, "contact record schema migrated");
    }
}

/// Fills in `funnel` for the records written before it existed, from their step trails; a trail that does not
/// parse is left NULL (the funnel then tries it, and says so in the log).
fn backfill_funnels(connection: &Connection) -> Result<(), StoreError> {
    let mut read = connection.prepare("SELECT id, steps FROM contact_records")?;
    let mut write = connection.prepare("UPDATE contact_records SET funnel = ?2 WHERE id = ?1")?;
    let mut rows = read.query([])?;
    let mut filled = 0_u64;
    while let Some(row) = rows.next()? {
        let steps = row.get_ref(1)?.as_str().unwrap_or("");
        if let Some(summary) = serde_json::from_str::<Vec<Step>>(steps)
            .ok()
            .and_then(|steps| stats::funnel_summary(&steps))
        {
            write.execute(params![row.get::<_, i64>(0)?, summary])?;
            filled += 1;
        }
    }
    if filled > 0 {
        tracing::info!(
            records = filled,
            "menu funnel summaries kept for the records already written"
        );
    }
    Ok(())
}

/// A row as SQLite hands it over, before the text columns are checked.
struct RawRow {
    id: i64,
    record_id: String,
    call_id: String,
    caller: String,
    called: String,
    started_at: String,
    answered_at: Option<String>,
    ended_at: Option<String>,
    digits: String,
    path: String,
    function_id: Option<String>,
    outcome: Option<String>,
    transfer_target: Option<String>,
    transferred_at: Option<String>,
    end_reason: Option<String>,
    steps: String,
    announcements: String,
    language: Option<String>,
    queue_entered_at: Option<String>,
    queue_wait_ms: Option<i64>,
    answered_by: Option<String>,
    menu_version: Option<String>,
    queue: Option<String>,
}

impl RawRow {
    fn read(row: &Row<'_>) -> rusqlite::Result<RawRow> {
        Ok(RawRow {
            id: row.get(0)?,
            record_id: row.get(1)?,
            call_id: row.get(2)?,
            caller: row.get(3)?,
            called: row.get(4)?,
            started_at: row.get(5)?,
            answered_at: row.get(6)?,
            ended_at: row.get(7)?,
            digits: row.get(8)?,
            path: row.get(9)?,
            function_id: row.get(10)?,
            outcome: row.get(11)?,
            transfer_target: row.get(12)?,
            transferred_at: row.get(13)?,
            end_reason: row.get(14)?,
            steps: row.get(15)?,
            announcements: row.get(16)?,
            language: row.get(17)?,
            queue_entered_at: row.get(18)?,
            queue_wait_ms: row.get(19)?,
            answered_by: row.get(20)?,
            menu_version: row.get(21)?,
            queue: row.get(22)?,
        })
    }

    fn into_record(self) -> Result<ContactRecord, StoreError> {
        let row_id = self.id;
        let corrupt = |column, reason: String| StoreError::CorruptRow {
            row_id,
            column,
            reason,
        };
        let time =
            |column, text: &str| parse_timestamp(text).map_err(|e| corrupt(column, e.to_string()));
        let optional_time =
            |column, text: Option<String>| text.map(|t| time(column, &t)).transpose();
        Ok(ContactRecord {
            started_at: time("started_at", &self.started_at)?,
            answered_at: optional_time("answered_at", self.answered_at)?,
            ended_at: optional_time("ended_at", self.ended_at)?,
            transferred_at: optional_time("transferred_at", self.transferred_at)?,
            queue: self.queue,
            queue_entered_at: optional_time("queue_entered_at", self.queue_entered_at)?,
            queue_wait_ms: self.queue_wait_ms,
            answered_by: self.answered_by,
            path: serde_json::from_str(&self.path).map_err(|e| corrupt("path", e.to_string()))?,
            steps: serde_json::from_str(&self.steps)
                .map_err(|e| corrupt("steps", e.to_string()))?,
            announcements: serde_json::from_str(&self.announcements)
                .map_err(|e| corrupt("announcements", e.to_string()))?,
            language: self.language,
            outcome: self
                .outcome
                .map(|name| name.parse::<Outcome>())
                .transpose()
                .map_err(|e| corrupt("outcome", e.to_string()))?,
            id: self.record_id,
            call_id: self.call_id,
            from: self.caller,
            to: self.called,
            digits: self.digits,
            function: self.function_id,
            transfer_target: self.transfer_target,
            end_reason: self.end_reason,
            menu_version: self.menu_version,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn store_in(dir: &tempfile::TempDir) -> SqliteStore {
        SqliteStore::open(&dir.path().join("data/records.sqlite")).unwrap()
    }

    fn call(call_id: &str, started_at: OffsetDateTime) -> ContactRecord {
        ContactRecord::started(call_id, "0701234567", "0771100200", started_at)
    }

    fn ended(mut record: ContactRecord) -> ContactRecord {
        record.answered_at = Some(record.started_at + time::Duration::milliseconds(300));
        record.digits = "31".into();
        record.path = vec!["root".into(), "hr".into()];
        record.function = Some("personal-direkt".into());
        record.transfer_target = Some("sip:hr@127.0.0.1:5072".into());
        record.transferred_at = Some(record.started_at + time::Duration::seconds(20));
        record.steps =
            serde_json::json!([{"at_ms": 300, "step": "answered"}, {"at_ms": 4100, "digit": "3"}]);
        let ended_at = record.started_at + time::Duration::seconds(95);
        record.menu_version = Some("3f2a9c0b41de".into());
        record.finish(Outcome::Transferred, ended_at, "caller BYE");
        record
    }

    fn put(store: &SqliteStore, record: &ContactRecord) {
        store
            .write(&[RecordUpdate::Whole(Box::new(record.clone()))])
            .unwrap();
    }

    fn all(store: &SqliteStore) -> Vec<ContactRecord> {
        store.list(&ContactQuery::default()).unwrap()
    }

    #[test]
    fn retention_deletes_exactly_the_calls_started_before_the_cutoff_and_leaves_no_trace() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_in(&dir);
        let cutoff = datetime!(2026-09-02 02:00 UTC);
        let just_before = ended(call(
            "gone-marker-1@trunk",
            cutoff - time::Duration::milliseconds(1),
        ));
        let long_before = call("gone-marker-2@trunk", datetime!(2025-01-01 00:00 UTC));
        let at_cutoff = ended(call("kept-1@trunk", cutoff));
        let after = call("kept-2@trunk", cutoff + time::Duration::days(80));
        for record in [&just_before, &long_before, &at_cutoff, &after] {
            put(&store, record);
        }
        assert_eq!(store.delete_started_before(cutoff).unwrap(), 2);
        assert_eq!(all(&store), vec![after, at_cutoff]);
        assert_eq!(store.delete_started_before(cutoff).unwrap(), 0);
        // Nothing of the deleted records is left in the files for someone with a copy to read back.
        for file in ["records.sqlite", "records.sqlite-wal"] {
            let bytes = std::fs::read(dir.path().join("data").join(file)).unwrap_or_default();
            assert!(
                !bytes.windows(11).any(|w| w == b"gone-marker"),
                "a deleted record is still readable in {file}"
            );
        }
    }

    #[test]
    fn open_creates_the_folder_schema_and_wal() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_in(&dir);
        assert!(store.path().exists());
        let connection = store.connection();
        let version: i64 = connection
            .pragma_query_value(None, "user_version", |row| row.get(0))
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
        let mode: String = connection
            .pragma_query_value(None, "journal_mode", |row| row.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        // FULL is 2.
        let synchronous: i64 = connection
            .pragma_query_value(None, "synchronous", |row| row.get(0))
            .unwrap();
        assert_eq!(synchronous, 2);
    }

    #[test]
    fn a_new_file_and_its_wal_are_the_daemon_users_alone_and_an_existing_file_keeps_its_mode() {
        use std::os::unix::fs::PermissionsExt;
        let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
        let dir = tempfile::tempdir().unwrap();
        let store = store_in(&dir);
        put(&store, &call("c1@trunk", datetime!(2026-01-01 10:00 UTC)));
        let wal = PathBuf::from(format!("{}-wal", store.path().display()));
        assert_eq!(mode(store.path()), 0o600);
        assert_eq!(mode(&wal), 0o600);

        let shared = dir.path().join("shared.sqlite");
        std::fs::write(&shared, b"").unwrap();
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o640)).unwrap();
        SqliteStore::open(&shared).unwrap();
        assert_eq!(mode(&shared), 0o640, "the admin's choice stands");
    }

    #[test]
    fn a_file_of_the_first_schema_gains_the_queue_columns_and_keeps_its_rows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v1.sqlite");
        {
            let connection = Connection::open(&path).unwrap();
            connection.execute_batch(MIGRATIONS[0]).unwrap();
            connection.pragma_update(None, "user_version", 1).unwrap();
            connection
                .execute(
                    "INSERT INTO contact_records (call_id, caller, called, started_at) \
                     VALUES ('old@trunk', '070', '0771', '2026-11-23T10:00:00.000Z')",
                    [],
                )
                .unwrap();
        }
        let store = SqliteStore::open(&path).unwrap();
        let old = all(&store);
        assert_eq!(old.len(), 1);
        assert_eq!(
            (
                old[0].queue_entered_at,
                old[0].queue_wait_ms,
                old[0].answered_by.clone()
            ),
            (None, None, None)
        );
        let mut queued = ended(call("q@trunk", datetime!(2026-11-23 10:15:00 UTC)));
        queued.queue = Some("it".into());
        queued.queue_entered_at = Some(datetime!(2026-11-23 10:15:10 UTC));
        queued.queue_wait_ms = Some(8_250);
        queued.answered_by = Some("it-anna".into());
        put(&store, &queued);
        assert_eq!(all(&store)[0], queued);
    }

    /// One text column of every record, in the order they were written.
    fn column(store: &SqliteStore, name: &str) -> Vec<Option<String>> {
        store
            .connection()
            .prepare(&format!("SELECT {name} FROM contact_records ORDER BY id"))
            .unwrap()
            .query_map([], |row| row.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    #[test]
    fn files_from_before_the_funnel_column_get_it_filled_and_the_writer_keeps_it_true() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v6.sqlite");
        {
            let connection = Connection::open(&path).unwrap();
            for step in &MIGRATIONS[..6] {
                connection.execute_batch(step).unwrap();
            }
            connection.pragma_update(None, "user_version", 6).unwrap();
            connection
                .execute_batch(
                    "INSERT INTO contact_records (record_id, call_id, caller, called, started_at, outcome, steps)
                     VALUES ('r1', 'old-1@trunk', '0701', '0771', '2026-11-23T10:15:02.123Z', 'abandoned',
                             '[{\"at_ms\":0,\"kind\":\"entered_menu\",\"value\":\"root\"},
                               {\"at_ms\":900,\"kind\":\"digit\",\"value\":\"3\"},
                               {\"at_ms\":950,\"kind\":\"caller_hung_up\"}]'),
                            ('r2', 'old-2@trunk', '0702', '0771', '2026-11-23T10:16:00.000Z', NULL, 'not json');
                     UPDATE contact_records SET function_id = 'it', queue_entered_at = '2026-11-23T10:15:05.000Z',
                         queue_wait_ms = 4000 WHERE record_id = 'r1';",
                )
                .unwrap();
        }
        let store = SqliteStore::open(&path).unwrap();
        assert_eq!(
            column(&store, "funnel"),
            [Some("root:3:0:0:0".to_string()), None],
            "filled from the trail; a trail that does not parse stays NULL"
        );
        assert_eq!(
            column(&store, "queue"),
            [Some("it".to_string()), None],
            "a queued call's queue is its function"
        );

        // The writer: a whole record carries its summary, an appended step clears it, the end fills it again.
        let mut record = call("new@trunk", datetime!(2026-11-24 08:00 UTC));
        put(&store, &record);
        assert_eq!(column(&store, "funnel")[2].as_deref(), Some(""));
        let entered = serde_json::json!({"at_ms": 0, "kind": "entered_menu", "value": "root"});
        let appended = record
            .advance("", &["root".into()], None, vec![entered])
            .unwrap();
        store
            .write(&[RecordUpdate::Progress(Box::new(appended))])
            .unwrap();
        assert_eq!(column(&store, "funnel")[2], None);
        record.finish(
            Outcome::Abandoned,
            datetime!(2026-11-24 08:01 UTC),
            "caller BYE",
        );
        put(&store, &record);
        assert_eq!(column(&store, "funnel")[2].as_deref(), Some("root::0:0:0"));

        // The funnel reads summaries and trails alike.
        let funnel = store
            .menu_funnel(
                "2026-11-23T00:00:00Z".parse().unwrap(),
                "2026-11-25T00:00:00Z".parse().unwrap(),
            )
            .unwrap();
        assert_eq!(funnel.nodes.len(), 1);
        assert_eq!((funnel.nodes[0].reached, funnel.nodes[0].hangups), (2, 0));
    }

    #[test]
    fn reading_a_file_never_creates_or_migrates_it() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.sqlite");
        assert!(matches!(
            SqliteStore::open_for_reading(&missing),
            Err(StoreError::Open { .. })
        ));
        assert!(!missing.exists(), "not created");

        let old = dir.path().join("v6.sqlite");
        {
            let connection = Connection::open(&old).unwrap();
            for step in &MIGRATIONS[..6] {
                connection.execute_batch(step).unwrap();
            }
            connection.pragma_update(None, "user_version", 6).unwrap();
        }
        let error = SqliteStore::open_for_reading(&old).err().unwrap();
        assert!(
            matches!(error, StoreError::SchemaTooOld { found: 6, .. }),
            "{error}"
        );
        assert!(error.to_string().contains("restart the daemon"), "{error}");
        let version: i64 = Connection::open(&old)
            .unwrap()
            .pragma_query_value(None, "user_version", |row| row.get(0))
            .unwrap();
        assert_eq!(version, 6, "left as it was");

        let current = dir.path().join("v7.sqlite");
        let store = SqliteStore::open(&current).unwrap();
        put(&store, &call("c1@trunk", datetime!(2026-11-23 10:15 UTC)));
        drop(store);
        let reader = SqliteStore::open_for_reading(&current).unwrap();
        assert_eq!(all(&reader).len(), 1);
    }

    #[test]
    fn a_started_call_is_there_at_once_and_its_end_replaces_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_in(&dir);
        let started = call("c1@trunk", datetime!(2026-11-23 10:15:02.123 UTC));
        put(&store, &started);
        assert_eq!(all(&store), vec![started.clone()]);

        let finished = ended(started);
        put(&store, &finished);
        let stored = all(&store);
        assert_eq!(stored, vec![finished]);
        assert_eq!(stored[0].duration_ms(), Some(95_000));
        let duration: i64 = store
            .connection()
            .query_row("SELECT duration_ms FROM contact_records", [], |row| {
                row.get(0)
            })
            .unwrap();
        assert_eq!(duration, 95_000);
    }

    #[test]
    fn a_reused_call_id_is_a_new_record_and_a_repeated_write_does_not_fail() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_in(&dir);
        let finished = ended(call("c1@trunk", datetime!(2026-11-23 10:00 UTC)));
        put(&store, &finished);
        put(&store, &finished);
        assert_eq!(all(&store), vec![finished.clone()]);
        // A trunk that recycles Call-IDs: the later call must not overwrite the earlier one's record.
        let reused = call("c1@trunk", datetime!(2026-11-23 11:00 UTC));
        put(&store, &reused);
        assert_eq!(all(&store), vec![reused, finished]);
    }

    #[test]
    fn announcements_are_written_as_the_call_plays_them_and_read_back() {
        let store = SqliteStore::open_in_memory().unwrap();
        let mut record = call("c1", datetime!(2026-11-23 10:00 UTC));
        put(&store, &record);
        let played = ["email-down".to_string(), "raindance".to_string()];
        let progress = record.announced(&played[..1], Some("en")).unwrap();
        store
            .write(&[RecordUpdate::Progress(Box::new(progress))])
            .unwrap();
        assert_eq!(all(&store)[0].announcements, ["email-down"]);
        assert!(record.announced(&played[..1], Some("en")).is_none());
        assert_eq!(all(&store)[0].language.as_deref(), Some("en"));
        let progress = record.announced(&played, None).unwrap();
        store
            .write(&[RecordUpdate::Progress(Box::new(progress))])
            .unwrap();
        assert_eq!(all(&store), vec![record]);
    }

    #[test]
    fn progress_updates_only_what_changed_and_appends_each_step_once() {
        let store = SqliteStore::open_in_memory().unwrap();
        let mut record = call("c1", datetime!(2026-11-23 10:00 UTC));
        put(&store, &record);
        let step = |n: u64| serde_json::json!({ "at_ms": n, "kind": "timeout" });
        let root = vec!["root".to_string()];
        let first = record
            .advance("", &root, None, vec![step(1), step(2)])
            .unwrap();
        let it = "it".to_string();
        let second = record
            .advance("3", &root, Some(&it), vec![step(3)])
            .unwrap();
        let progress = |p: &Progress| RecordUpdate::Progress(Box::new(p.clone()));
        store.write(&[progress(&first), progress(&second)]).unwrap();
        assert_eq!(all(&store), vec![record.clone()]);
        // A batch written again (its commit reported a failure that was not one) adds no step twice.
        store.write(&[progress(&first), progress(&second)]).unwrap();
        assert_eq!(all(&store), vec![record.clone()]);
        assert_eq!(all(&store)[0].step_count(), 3);
    }

    #[test]
    fn schema_1_files_get_record_ids_and_keep_their_rows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("records.sqlite");
        {
            let connection = Connection::open(&path).unwrap();
            connection.execute_batch(MIGRATIONS[0]).unwrap();
            connection.pragma_update(None, "user_version", 1).unwrap();
            connection
                .execute_batch(
                    "INSERT INTO contact_records (call_id, caller, called, started_at, digits, path, outcome, steps)
                     VALUES ('old-1@trunk', '0701', '0771', '2026-11-23T10:15:02.123Z', '3', '[\"root\"]',
                             'abandoned', '[{\"at_ms\":0,\"kind\":\"entered_menu\",\"value\":\"root\"}]'),
                            ('old-2@trunk', '0702', '0771', '2026-11-23T10:16:00.000Z', '', '[]', NULL, '[]');",
                )
                .unwrap();
        }
        let store = SqliteStore::open(&path).unwrap();
        let records = all(&store);
        assert_eq!(records.len(), 2);
        let old = &records[1];
        assert_eq!(
            (old.call_id.as_str(), old.digits.as_str()),
            ("old-1@trunk", "3")
        );
        assert_eq!(old.step_count(), 1);
        for record in &records {
            // A UUIDv7 whose time is the call's start.
            let millis = i64::from_str_radix(&record.id[..13].replace('-', ""), 16).unwrap();
            let started = record.started_at.unix_timestamp_nanos() / 1_000_000;
            assert_eq!(i128::from(millis), started, "{}", record.id);
            assert_eq!(&record.id[14..15], "7", "{}", record.id);
        }
        assert_ne!(records[0].id, records[1].id);
        // The Call-ID is no longer unique.
        put(
            &store,
            &call("old-1@trunk", datetime!(2026-11-24 08:00 UTC)),
        );
        assert_eq!(all(&store).len(), 3);
    }

    #[test]
    fn lists_do_not_wait_for_a_write_in_progress() {
        let dir = tempfile::tempdir().unwrap();
        let store = std::sync::Arc::new(store_in(&dir));
        let record = call("c1", datetime!(2026-11-23 10:00 UTC));
        put(&store, &record);
        // The writer stuck inside a write (a locked database's busy timeout) holds the writing connection.
        let writing = store.connection();
        let (tx, rx) = std::sync::mpsc::channel();
        let reader = std::sync::Arc::clone(&store);
        std::thread::spawn(move || {
            let _ = tx.send(
                reader
                    .list(&ContactQuery::default())
                    .map_err(|e| e.to_string()),
            );
        });
        let listed = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("the list waited for the writer");
        drop(writing);
        assert_eq!(listed.unwrap(), vec![record]);
    }

    #[test]
    fn the_write_probe_fails_on_a_read_only_database() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("records.sqlite");
        SqliteStore::open(&path).unwrap().probe_write().unwrap();
        let read_only =
            Connection::open_with_flags(&path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
        let store = SqliteStore {
            connection: Mutex::new(read_only),
            reader: None,
            path: path.clone(),
        };
        let error = store.probe_write().unwrap_err();
        assert!(matches!(error, StoreError::NotWritable { .. }), "{error}");
        let message = error.to_string();
        assert!(
            message.contains(&path.display().to_string()) && message.contains("--db"),
            "{message}"
        );
    }

    #[test]
    fn list_is_newest_first_and_honours_since_and_limit() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_in(&dir);
        let times = [
            datetime!(2026-11-23 09:59:59.999 UTC),
            datetime!(2026-11-23 10:00:00.000 UTC),
            datetime!(2026-11-23 10:30:00.000 UTC),
            datetime!(2026-11-24 08:00:00.000 UTC),
        ];
        // Written out of order: order must come from started_at, not from insertion.
        for (i, at) in [(2, times[2]), (0, times[0]), (3, times[3]), (1, times[1])] {
            put(&store, &ended(call(&format!("c{i}"), at)));
        }
        let ids = |records: Vec<ContactRecord>| {
            records.into_iter().map(|r| r.call_id).collect::<Vec<_>>()
        };
        assert_eq!(ids(all(&store)), ["c3", "c2", "c1", "c0"]);
        let since = ContactQuery {
            // Given in local time: 11:00 +01:00 is 10:00 UTC, and "at or after" includes c1.
            since: Some(datetime!(2026-11-23 11:00 +01:00)),
            limit: None,
        };
        assert_eq!(ids(store.list(&since).unwrap()), ["c3", "c2", "c1"]);
        let newest_two = ContactQuery {
            since: None,
            limit: Some(2),
        };
        assert_eq!(ids(store.list(&newest_two).unwrap()), ["c3", "c2"]);
        let both = ContactQuery {
            since: Some(datetime!(2026-11-23 10:00 UTC)),
            limit: Some(1),
        };
        assert_eq!(ids(store.list(&both).unwrap()), ["c3"]);
        let none = ContactQuery {
            since: None,
            limit: Some(0),
        };
        assert!(store.list(&none).unwrap().is_empty());
    }

    #[test]
    fn close_unfinished_fails_only_the_open_calls() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_in(&dir);
        let started = call("done", datetime!(2026-11-23 10:00 UTC));
        put(&store, &started);
        let done = ended(started);
        put(&store, &done);
        let mut open = call("open", datetime!(2026-11-23 10:05 UTC));
        open.path = vec!["root".into()];
        open.digits = "9".into();
        put(&store, &open);

        let now = datetime!(2026-11-23 10:07:30.250 UTC);
        assert_eq!(store.close_unfinished(now).unwrap(), 1);
        let records = all(&store);
        assert_eq!(records[1], done);
        let closed = &records[0];
        assert_eq!(closed.call_id, "open");
        assert_eq!(closed.outcome, Some(Outcome::Failed));
        assert_eq!(closed.ended_at, Some(now));
        assert_eq!(closed.end_reason.as_deref(), Some(UNFINISHED_END_REASON));
        assert_eq!(closed.duration_ms(), Some(150_250));
        // What the caller did before the crash is kept.
        assert_eq!(closed.digits, "9");
        assert_eq!(closed.path, ["root"]);
        assert_eq!(store.close_unfinished(now).unwrap(), 0);
    }

    #[test]
    fn reopening_keeps_every_record() {
        let dir = tempfile::tempdir().unwrap();
        let finished = ended(call("kept", datetime!(2026-11-23 10:00 UTC)));
        let open = call("still-open", datetime!(2026-11-23 10:01 UTC));
        {
            let store = store_in(&dir);
            put(&store, &finished);
        }
        let store = store_in(&dir);
        put(&store, &open);
        // A crash: the connection is never closed, so the last write exists only in the WAL file.
        std::mem::forget(store);
        assert!(dir.path().join("data/records.sqlite-wal").exists());
        let store = store_in(&dir);
        assert_eq!(all(&store), vec![open, finished]);
    }

    #[test]
    fn a_file_from_a_newer_knappval_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("records.sqlite");
        drop(SqliteStore::open(&path).unwrap());
        Connection::open(&path)
            .unwrap()
            .pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
        match SqliteStore::open(&path) {
            Err(StoreError::SchemaTooNew {
                found, supported, ..
            }) => {
                assert_eq!((found, supported), (SCHEMA_VERSION + 1, SCHEMA_VERSION));
            }
            Err(other) => panic!("expected SchemaTooNew, got {other}"),
            Ok(_) => panic!("a newer schema was opened"),
        }
    }

    #[test]
    fn a_corrupt_row_is_reported_with_its_id_and_column() {
        let store = SqliteStore::open_in_memory().unwrap();
        put(&store, &ended(call("c1", datetime!(2026-11-23 10:00 UTC))));
        store
            .connection()
            .execute("UPDATE contact_records SET outcome = 'gave-up'", [])
            .unwrap();
        let error = store.list(&ContactQuery::default()).unwrap_err();
        assert!(
            matches!(
                error,
                StoreError::CorruptRow {
                    row_id: 1,
                    column: "outcome",
                    ..
                }
            ),
            "{error}"
        );
    }

    #[test]
    fn a_corrupt_start_time_does_not_stop_close_unfinished() {
        let store = SqliteStore::open_in_memory().unwrap();
        put(&store, &call("c1", datetime!(2026-11-23 10:00 UTC)));
        store
            .connection()
            .execute("UPDATE contact_records SET started_at = 'garbage'", [])
            .unwrap();
        assert_eq!(
            store
                .close_unfinished(datetime!(2026-11-23 10:05 UTC))
                .unwrap(),
            1
        );
        let (outcome, duration): (String, Option<i64>) = store
            .connection()
            .query_row(
                "SELECT outcome, duration_ms FROM contact_records",
                [],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .unwrap();
        assert_eq!((outcome.as_str(), duration), ("failed", None));
    }
}
