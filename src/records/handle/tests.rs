//! The writer against a real SQLite file: batching, a disk that fills up, and the bound of its queue.

use super::*;
use crate::flow::Outcome;
use crate::records::SqliteStore;
use time::macros::datetime;

const PATIENCE: Duration = Duration::from_secs(10);

fn quick() -> WriterSettings {
    WriterSettings {
        batch_window: Duration::from_millis(20),
        retry_after: Duration::from_millis(50),
        ..WriterSettings::default()
    }
}

fn store_in(dir: &tempfile::TempDir) -> Arc<SqliteStore> {
    Arc::new(SqliteStore::open(&dir.path().join("records.sqlite")).unwrap())
}

/// Caps the file at the pages it has now: SQLite then answers every growing write with SQLITE_FULL, the
/// error a full disk gives. `None` lifts the cap.
fn fill_disk(store: &SqliteStore, full: bool) {
    let connection = store.connection();
    let pages: i64 = connection
        .pragma_query_value(None, "page_count", |row| row.get(0))
        .unwrap();
    let cap = if full { pages } else { 1 << 30 };
    connection
        .pragma_update(None, "max_page_count", cap)
        .unwrap();
}

fn call(n: u32) -> ContactRecord {
    ContactRecord::started(
        format!("c{n}@trunk"),
        "0701234567",
        "0771100200",
        datetime!(2026-11-23 10:00 UTC) + time::Duration::seconds(n.into()),
    )
}

/// A record's life as the call task writes it: start, answered, a digit, end.
fn live(records: &Records, mut record: ContactRecord) -> ContactRecord {
    records.call_started(&record);
    let answered = record.started_at + time::Duration::milliseconds(200);
    record.answered_at = Some(answered);
    records.progress(Progress {
        answered_at: Some(answered),
        ..Progress::of(&record)
    });
    let step = serde_json::json!({"at_ms": 900, "kind": "digit", "value": "3"});
    let root = vec!["root".to_string()];
    let progress = record.advance("3", &root, None, vec![step]).unwrap();
    records.progress(progress);
    record.finish(
        Outcome::Abandoned,
        record.started_at + time::Duration::seconds(7),
        "caller BYE",
    );
    records.call_ended(record.clone());
    record
}

#[tokio::test]
async fn a_call_in_progress_is_there_as_it_goes_and_its_end_completes_it() {
    let dir = tempfile::tempdir().unwrap();
    let records = Records::with_writer(store_in(&dir), quick());
    let mut record = call(1);
    records.call_started(&record);
    record.answered_at = Some(record.started_at + time::Duration::milliseconds(300));
    records.progress(Progress {
        answered_at: record.answered_at,
        ..Progress::of(&record)
    });
    let root = vec!["root".to_string()];
    let it = "it".to_string();
    let steps = vec![
        serde_json::json!({"at_ms": 0, "kind": "entered_menu", "value": "root"}),
        serde_json::json!({"at_ms": 900, "kind": "digit", "value": "3"}),
    ];
    records.progress(record.advance("3", &root, Some(&it), steps).unwrap());
    records.progress(Progress {
        transfer_target: Some("sip:it@127.0.0.1:5071".into()),
        ..Progress::of(&record)
    });
    record.transfer_target = Some("sip:it@127.0.0.1:5071".into());
    assert!(records.flush(PATIENCE).await);
    let stored = records.list(ContactQuery::default()).await.unwrap();
    assert_eq!(
        stored,
        vec![record.clone()],
        "the open record, as far as it got"
    );

    record.finish(
        Outcome::Abandoned,
        datetime!(2026-11-23 10:00:09 UTC),
        "caller BYE",
    );
    records.call_ended(record.clone());
    assert!(records.flush(PATIENCE).await);
    assert_eq!(
        records.list(ContactQuery::default()).await.unwrap(),
        vec![record]
    );
    assert_eq!(records.status().pending(), 0);
    assert_eq!(records.status().last_error(), None);
}

#[tokio::test]
async fn a_full_disk_keeps_the_records_in_memory_until_it_takes_writes_again() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_in(&dir);
    let records = Records::with_writer(store.clone(), quick());
    let first = live(&records, call(1));
    assert!(records.flush(PATIENCE).await);

    fill_disk(&store, true);
    let later: Vec<ContactRecord> = (2..40).map(|n| live(&records, call(n))).collect();
    assert!(
        !records.flush(Duration::from_millis(500)).await,
        "a full disk took the writes"
    );
    let status = records.status();
    assert!(status.pending() > 0);
    let error = status.last_error().expect("the failure is reported");
    assert!(error.contains("full"), "{error}");

    fill_disk(&store, false);
    assert!(
        records.flush(PATIENCE).await,
        "not written after the disk recovered"
    );
    let mut expected = later;
    expected.reverse();
    expected.push(first);
    assert_eq!(
        records.list(ContactQuery::default()).await.unwrap(),
        expected
    );
    assert_eq!(records.status().pending(), 0);
    assert_eq!(records.status().last_error(), None);
}

/// Four calls of four updates each (start, two progress, end), written while the disk is full: 16 updates, 8 of
/// them whole records. Each record is larger than a page, so that not even the first fits. Returns once they have
/// met the full disk, with the disk still full (and the folder, to keep).
async fn four_calls_on_a_full_disk(
    max_pending: usize,
) -> (
    Records,
    Arc<SqliteStore>,
    Vec<ContactRecord>,
    tempfile::TempDir,
) {
    let dir = tempfile::tempdir().unwrap();
    let store = store_in(&dir);
    fill_disk(&store, true);
    let settings = WriterSettings {
        max_pending,
        ..quick()
    };
    let records = Records::with_writer(store.clone(), settings);
    let big = |n| ContactRecord {
        from: "0".repeat(5000),
        ..call(n)
    };
    let calls: Vec<ContactRecord> = (1..=4).map(|n| live(&records, big(n))).collect();
    assert!(!records.flush(Duration::from_millis(500)).await);
    (records, store, calls, dir)
}

#[tokio::test]
async fn at_its_bound_the_queue_drops_progress_first_and_keeps_whole_records() {
    let (records, store, calls, _dir) = four_calls_on_a_full_disk(8).await;
    assert!(
        records.status().pending() <= 8,
        "{}",
        records.status().pending()
    );
    fill_disk(&store, false);
    assert!(records.flush(PATIENCE).await);
    let mut expected = calls;
    expected.reverse();
    assert_eq!(
        records.list(ContactQuery::default()).await.unwrap(),
        expected
    );
}

#[tokio::test]
async fn past_the_bound_the_oldest_whole_records_leave_memory_and_the_newest_are_kept() {
    let (records, store, calls, _dir) = four_calls_on_a_full_disk(2).await;
    fill_disk(&store, false);
    assert!(records.flush(PATIENCE).await);
    // The two oldest went to the log (see `log_unwritten`); the two newest reach the database.
    let newest: Vec<ContactRecord> = calls[2..].iter().rev().cloned().collect();
    assert_eq!(records.list(ContactQuery::default()).await.unwrap(), newest);
}

#[tokio::test]
async fn close_gives_up_on_a_refusing_disk_without_hanging() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_in(&dir);
    fill_disk(&store, true);
    let records = Records::with_writer(store, quick());
    live(&records, call(1));
    tokio::time::timeout(PATIENCE * 3, records.close(Duration::from_millis(300)))
        .await
        .expect("close returned");
    assert_eq!(records.status().pending(), 0);
}
