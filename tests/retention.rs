//! Retention through the daemon: records of calls older than `--retention` are deleted when the daemon starts,
//! exactly those, and nothing of them is left in the database's files.

mod common;

use common::{Daemon, Fixture, MenuSpec};
use knappval::flow::Outcome;
use knappval::records::{ContactRecord, ContactStore, RecordUpdate, SqliteStore};
use time::{Duration, OffsetDateTime};

fn seed(fixture: &Fixture, records: &[ContactRecord]) {
    let store = SqliteStore::open(&fixture.db).expect("create the database");
    let updates: Vec<RecordUpdate> = records
        .iter()
        .map(|r| RecordUpdate::Whole(Box::new(r.clone())))
        .collect();
    store.write(&updates).expect("seed records");
}

fn record(call_id: &str, started_at: OffsetDateTime) -> ContactRecord {
    let mut record =
        ContactRecord::started(call_id, "p:0011223344556677aabb", "0771100200", started_at);
    record.finish(
        Outcome::Abandoned,
        started_at + Duration::seconds(30),
        "caller hung up",
    );
    record
}

fn call_ids(daemon: &Daemon) -> Vec<String> {
    let mut ids: Vec<String> = daemon
        .contacts()
        .iter()
        .filter_map(|r| r["call_id"].as_str().map(String::from))
        .collect();
    ids.sort();
    ids
}

fn menu(fixture: &Fixture) {
    fixture.write_menu(&MenuSpec::new("sip:it@127.0.0.1:9", "sip:kt@127.0.0.1:9").yaml());
}

#[test]
fn the_daemon_deletes_exactly_the_records_older_than_the_retention_at_start() {
    let fixture = Fixture::new();
    menu(&fixture);
    let now = OffsetDateTime::now_utc();
    let days = |n: i64| Duration::days(n);
    seed(
        &fixture,
        &[
            record("expired-a@trunk", now - days(400)),
            // A second past the 90 days.
            record("expired-b@trunk", now - days(90) - Duration::seconds(1)),
            // Two minutes inside them: kept however slowly the daemon starts (within two minutes).
            record("kept-a@trunk", now - days(90) + Duration::minutes(2)),
            record("kept-b@trunk", now - days(3)),
        ],
    );
    let mut daemon = Daemon::start(fixture);
    assert_eq!(call_ids(&daemon), ["kept-a@trunk", "kept-b@trunk"]);
    assert!(
        daemon
            .log_text()
            .contains("deleted contact records past retention"),
        "the deletion is logged:\n{}",
        daemon.log_text()
    );
    let status = daemon.stop(15 * common::SECOND);
    assert!(status.success(), "knappval exited with {status}");
    for file in ["contacts.db", "contacts.db-wal"] {
        let bytes = std::fs::read(daemon.fixture.path(file)).unwrap_or_default();
        assert!(
            !bytes.windows(7).any(|w| w == b"expired"),
            "a deleted record is still readable in {file}"
        );
    }
}

#[test]
fn a_shorter_retention_in_hours_and_off_keeping_everything() {
    let fixture = Fixture::new();
    menu(&fixture);
    let now = OffsetDateTime::now_utc();
    seed(
        &fixture,
        &[
            record("old@trunk", now - Duration::days(1000)),
            record("yesterday@trunk", now - Duration::hours(25)),
            record("this-morning@trunk", now - Duration::hours(3)),
        ],
    );
    let mut daemon = Daemon::start_with(fixture, &["--retention", "off"]);
    assert_eq!(
        call_ids(&daemon),
        ["old@trunk", "this-morning@trunk", "yesterday@trunk"],
        "off keeps everything"
    );
    daemon.stop(15 * common::SECOND);
    let fixture = std::mem::take(&mut daemon.fixture);
    drop(daemon);
    let mut daemon = Daemon::start_with(fixture, &["--retention", "24h"]);
    assert_eq!(call_ids(&daemon), ["this-morning@trunk"]);
    daemon.stop(15 * common::SECOND);
}
