//! The contact record database through the daemon: records keyed by our own id (a reused Call-ID is a new
//! record), progress that survives `kill -9`, a database that refuses writes at start (no start) or at run time
//! (kept in memory, `/healthz` degraded, written once it recovers), and one daemon per database file.

mod common;

use common::audio::{CALLER_HZ, FUNCTION_HZ, MENU_HZ, MORE_HZ};
use common::daemon::{bin, export_contacts};
use common::sdp::PCMU;
use common::{Caller, Daemon, Fixture, MenuSpec, SECOND, standard_daemon, wait_until};
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn records_of(daemon: &Daemon, call_id: &str) -> Vec<Value> {
    daemon
        .contacts()
        .into_iter()
        .filter(|r| r["call_id"] == call_id)
        .collect()
}

fn healthz(daemon: &Daemon) -> (u16, Value) {
    let (status, body) = daemon.get("/healthz");
    let json = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
    (status, json)
}

/// `knappval run` on `fixture`'s database, which its user may read but not write (expected to refuse).
fn start_on_a_database_it_may_not_write(fixture: &Fixture) -> Output {
    let root = unsafe { libc::geteuid() } == 0;
    let all = |path: &Path, mode: u32| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
    };
    if root {
        // Root writes anything: the daemon runs as nobody, who may use the folder but not the file.
        all(fixture.dir.path(), 0o777);
        all(&fixture.db, 0o644);
    } else {
        all(&fixture.db, 0o444);
    }
    refused_start(fixture, root)
}

/// `knappval run` on `fixture`'s files, expected to refuse to start: its output once it exited (bounded).
fn refused_start(fixture: &Fixture, as_nobody: bool) -> Output {
    let program = if as_nobody {
        // The build's folder may be closed to other users (a CI checkout under /root): run a copy from the
        // fixture's folder, which nobody may enter.
        let copy = fixture.path("knappval");
        std::fs::copy(bin(), &copy).expect("copy the binary");
        copy
    } else {
        bin().into()
    };
    let mut command = Command::new(program);
    command
        .arg("run")
        .arg("--menu")
        .arg(&fixture.menu)
        .arg("--prompts")
        .arg(&fixture.prompts)
        .arg("--db")
        .arg(&fixture.db)
        .args(["--sip", "127.0.0.1:0", "--http", "127.0.0.1:0"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if as_nobody {
        use std::os::unix::process::CommandExt;
        command.uid(65534).gid(65534);
    }
    // A fresh copy may be "text file busy" for a moment: another test thread's fork can hold its write handle
    // until that child's exec.
    let mut attempts = 0;
    let mut child = loop {
        match command.spawn() {
            Err(e) if e.raw_os_error() == Some(26) && attempts < 50 => {
                attempts += 1;
                std::thread::sleep(Duration::from_millis(50));
            }
            spawned => break spawned.expect("spawn knappval run"),
        }
    };
    let deadline = Instant::now() + 30 * SECOND;
    while child.try_wait().ok().flatten().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let output = child.wait_with_output().expect("output");
            panic!(
                "knappval started although it should have refused: {}",
                String::from_utf8_lossy(&output.stdout)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().expect("output")
}

fn assert_refused(output: &Output, says: &[&str]) {
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "exit {}: {stderr}", output.status);
    assert!(
        !stdout.contains("knappval listening"),
        "the ready line came before the refusal: {stdout}"
    );
    for text in says {
        assert!(stderr.contains(text), "{text:?} not in: {stderr}");
    }
}

/// Another process takes the database's write lock (as an admin's sqlite3 in a transaction or a backup tool
/// would): every write of the daemon then fails with SQLITE_BUSY after its busy timeout, a real failure on the
/// real write path. Then a call comes, presses `digits` and hangs up. Returns the lock's holder and the call.
fn a_call_while_the_database_is_locked(
    daemon: &Daemon,
    digits: &str,
) -> (rusqlite::Connection, common::Call) {
    let blocker = rusqlite::Connection::open(&daemon.fixture.db).expect("open the database");
    blocker
        .execute_batch("BEGIN IMMEDIATE")
        .expect("take the write lock");
    let caller = Caller::udp(daemon.sip);
    let (mut call, _answer, t0) = caller.call(daemon, &[PCMU], CALLER_HZ);
    caller.rtp.wait_tone(MENU_HZ, 10, t0, 15 * SECOND);
    for digit in digits.chars() {
        assert_eq!(call.info_dtmf_relay(digit).status(), Some(200));
    }
    assert_eq!(call.bye().status(), Some(200));
    (blocker, call)
}

#[test]
fn a_reused_call_id_is_a_second_record_and_leaves_the_first_alone() {
    let (daemon, _it, _kt) = standard_daemon(&[]);
    let reused = "recycled-by-the-trunk@192.0.2.7";
    let mut ids = Vec::new();
    for (n, digits) in [(1, "*"), (2, "")] {
        // A fresh test phone each time: the test peer itself keys its dialogs by Call-ID.
        let caller = Caller::udp(daemon.sip);
        let mut call = caller.sip.invite(
            &daemon.uri(),
            &caller.caller_uri(),
            Some(&caller.offer(&[PCMU])),
            &[],
        );
        let generated = call.call_id.clone();
        call.rewrite_invite(|text| text.replace(&generated, reused));
        call.call_id = reused.to_string();
        let t0 = Instant::now();
        let answer = call.start(10 * SECOND);
        assert_eq!(answer.status(), Some(200), "call {n}: {}", answer.summary());
        let sdp = common::sdp::parse(&answer.body_str()).expect("SDP answer");
        caller.rtp.set_remote(sdp.media_addr());
        caller.rtp.play(common::Sound::Tone {
            freq: CALLER_HZ,
            pt: PCMU,
        });
        caller.rtp.wait_tone(MENU_HZ, 10, t0, 15 * SECOND);
        for digit in digits.chars() {
            assert_eq!(call.info_dtmf_relay(digit).status(), Some(200));
        }
        assert_eq!(call.bye().status(), Some(200));
        // The call's own record is finished before the next call begins.
        wait_until(
            10 * SECOND,
            || {
                records_of(&daemon, reused)
                    .iter()
                    .filter(|r| !r["outcome"].is_null())
                    .count()
                    == n
            },
            || format!("{n} finished records: {:#?}", records_of(&daemon, reused)),
        );
        let records = records_of(&daemon, reused);
        assert_eq!(records.len(), n, "{records:#?}");
        ids.push(records[0]["id"].as_str().expect("an id").to_string());
    }
    let records = records_of(&daemon, reused);
    // Newest first: the second call, then the first, each with what it did.
    assert_eq!(records[0]["digits"], "", "{records:#?}");
    assert_eq!(records[1]["digits"], "*", "{records:#?}");
    assert_eq!(records[0]["id"], ids[1].as_str());
    assert_eq!(records[1]["id"], ids[0].as_str());
    assert_ne!(ids[0], ids[1]);
    for record in &records {
        assert_eq!(record["outcome"], "abandoned", "{record:#}");
    }
}

#[test]
fn a_killed_daemon_leaves_how_far_the_call_got() {
    let (daemon, it, _kt) = standard_daemon(&[]);
    let caller = Caller::udp(daemon.sip);
    let (mut call, _answer, t0) = caller.call(&daemon, &[PCMU], CALLER_HZ);
    caller.rtp.wait_tone(MENU_HZ, 10, t0, 15 * SECOND);
    // 9: the submenu, then 1: IT, bridged.
    assert_eq!(call.info_dtmf_relay('9').status(), Some(200));
    caller
        .rtp
        .wait_tone(MORE_HZ, 10, Instant::now(), 15 * SECOND);
    assert_eq!(call.info_dtmf_relay('1').status(), Some(200));
    let mut incoming = it.expect_call(10 * SECOND);
    it.answer(&mut incoming, FUNCTION_HZ);
    caller
        .rtp
        .wait_tone(FUNCTION_HZ, 25, Instant::now(), 10 * SECOND);
    // The writer groups updates for a moment: wait until the bridge is in the database, then kill.
    wait_until(
        10 * SECOND,
        || {
            records_of(&daemon, &call.call_id)
                .first()
                .is_some_and(|r| !r["transferred_at"].is_null())
        },
        || {
            format!(
                "the bridge in the record: {:#?}",
                records_of(&daemon, &call.call_id)
            )
        },
    );
    let open = records_of(&daemon, &call.call_id).remove(0);
    assert!(open["outcome"].is_null(), "{open:#}");
    let fixture = daemon.crash();

    let restarted = Daemon::start(fixture);
    let record = restarted.wait_record(&call.call_id, 10 * SECOND);
    assert_eq!(record["id"], open["id"], "{record:#}");
    assert_eq!(record["outcome"], "failed", "{record:#}");
    assert_eq!(
        record["end_reason"], "daemon stopped before the call ended",
        "{record:#}"
    );
    assert!(!record["answered_at"].is_null(), "{record:#}");
    assert!(!record["ended_at"].is_null(), "{record:#}");
    assert_eq!(record["digits"], "91", "{record:#}");
    assert_eq!(
        record["path"],
        serde_json::json!(["root", "more"]),
        "{record:#}"
    );
    assert_eq!(record["function"], "it", "{record:#}");
    assert!(
        record["transfer_target"]
            .as_str()
            .is_some_and(|t| t.contains(&it.uri("it"))),
        "{record:#}"
    );
    assert!(!record["transferred_at"].is_null(), "{record:#}");
    let kinds: Vec<&str> = record["steps"]
        .as_array()
        .map(|steps| steps.iter().filter_map(|s| s["kind"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(
        kinds,
        [
            "entered_menu",
            "digit",
            "entered_menu",
            "digit",
            "transfer_started",
            "transferred"
        ],
        "{record:#}"
    );
}

#[test]
fn an_unwritable_database_stops_the_start_before_the_ready_line() {
    let fixture = Fixture::new();
    let spec = MenuSpec::new("sip:it@127.0.0.1:9", "sip:kt@127.0.0.1:9");
    fixture.write_menu(&spec.yaml());
    // A database made by another user (here root, or us) that this daemon's user may read but not write.
    drop(knappval::records::SqliteStore::open(&fixture.db).expect("create the database"));
    let output = start_on_a_database_it_may_not_write(&fixture);
    let db = fixture.db.display().to_string();
    assert_refused(&output, &[&db, "does not take writes", "writable"]);
}

/// A database in rollback-journal mode (made with the sqlite3 tool, or copied from elsewhere) that this
/// daemon's user may read but not write: the first write is switching it to WAL, not the write probe. The
/// refusal still says what to do, and SQLite's text comes once, not again with its code.
#[test]
fn an_unwritable_database_in_rollback_journal_mode_stops_the_start_with_the_fix() {
    let fixture = Fixture::new();
    let spec = MenuSpec::new("sip:it@127.0.0.1:9", "sip:kt@127.0.0.1:9");
    fixture.write_menu(&spec.yaml());
    drop(knappval::records::SqliteStore::open(&fixture.db).expect("create the database"));
    rusqlite::Connection::open(&fixture.db)
        .and_then(|c| c.pragma_update(None, "journal_mode", "DELETE"))
        .expect("back to a rollback journal");
    let output = start_on_a_database_it_may_not_write(&fixture);
    let db = fixture.db.display().to_string();
    assert_refused(&output, &[&db, "does not take writes", "writable"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        stderr.matches("readonly database").count(),
        1,
        "SQLite's reason once: {stderr}"
    );
}

#[test]
fn a_database_that_refuses_writes_keeps_the_records_and_healthz_says_so() {
    let (daemon, _it, _kt) = standard_daemon(&[]);
    assert_eq!(healthz(&daemon).1["status"], "ok");
    let (blocker, call) = a_call_while_the_database_is_locked(&daemon, "*");

    let mut degraded = Value::Null;
    wait_until(
        30 * SECOND,
        || {
            let (status, body) = healthz(&daemon);
            // Calls are still served: a load balancer must keep sending them, so 200 and the reason in the body.
            assert_eq!(status, 200, "{body:#}");
            let done = body["status"] == "degraded";
            degraded = body;
            done
        },
        || "healthz never said degraded".to_string(),
    );
    assert!(
        degraded["records"]["pending"]
            .as_u64()
            .is_some_and(|n| n > 0),
        "{degraded:#}"
    );
    assert!(
        degraded["records"]["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("locked")),
        "{degraded:#}"
    );
    // Several attempts fail (5 s busy timeout each, then 1 s): the log says so once, not once per attempt.
    std::thread::sleep(15 * SECOND);
    let failures = daemon
        .log_text()
        .matches("contact records cannot be written")
        .count();
    assert_eq!(failures, 1, "log:\n{}", daemon.log_text());
    assert!(
        records_of(&daemon, &call.call_id).is_empty(),
        "nothing can be written while the lock is held"
    );

    blocker.execute_batch("ROLLBACK").expect("release the lock");
    let record = daemon.wait_record(&call.call_id, 20 * SECOND);
    assert_eq!(record["outcome"], "abandoned", "{record:#}");
    assert_eq!(record["digits"], "*", "{record:#}");
    assert!(!record["answered_at"].is_null(), "{record:#}");
    wait_until(
        10 * SECOND,
        || healthz(&daemon).1["status"] == "ok",
        || format!("healthz after recovery: {:#}", healthz(&daemon).1),
    );
    let (_, body) = healthz(&daemon);
    assert_eq!(body["records"]["pending"], 0, "{body:#}");
    assert!(body["records"]["last_error"].is_null(), "{body:#}");
    assert!(
        daemon
            .log_text()
            .contains("contact records are written again"),
        "log:\n{}",
        daemon.log_text()
    );
}

#[test]
fn a_second_daemon_on_the_same_database_is_refused_and_readers_still_read() {
    let (daemon, _it, _kt) = standard_daemon(&[]);
    let caller = Caller::udp(daemon.sip);
    let (mut call, _answer, t0) = caller.call(&daemon, &[PCMU], CALLER_HZ);
    caller.rtp.wait_tone(MENU_HZ, 10, t0, 15 * SECOND);

    let second = Fixture::new();
    second.write_menu(&std::fs::read_to_string(&daemon.fixture.menu).expect("the menu"));
    let second = Fixture {
        db: daemon.fixture.db.clone(),
        ..second
    };
    let output = refused_start(&second, false);
    let pid = daemon.pid().to_string();
    let db = daemon.fixture.db.display().to_string();
    assert_refused(&output, &[&pid, &db, "another knappval"]);

    // The first daemon's call was not touched by the second's attempt.
    let open = records_of(&daemon, &call.call_id);
    assert_eq!(open.len(), 1, "{open:#?}");
    assert!(open[0]["outcome"].is_null(), "{:#}", open[0]);

    // Readers take no lock: `knappval contacts` works while the daemon runs, and shows both ids.
    let csv = export_contacts(&daemon.fixture.db, "csv");
    assert!(
        csv.status.success(),
        "{}",
        String::from_utf8_lossy(&csv.stderr)
    );
    let text = String::from_utf8_lossy(&csv.stdout);
    assert!(text.starts_with("id,call_id,"), "{text}");
    let id = open[0]["id"].as_str().expect("an id");
    assert!(
        text.lines()
            .any(|l| l.starts_with(&format!("{id},{},", call.call_id))),
        "{text}"
    );
    let jsonl = export_contacts(&daemon.fixture.db, "jsonl");
    assert!(
        jsonl.status.success(),
        "{}",
        String::from_utf8_lossy(&jsonl.stderr)
    );
    let first: Value = serde_json::from_str(
        String::from_utf8_lossy(&jsonl.stdout)
            .lines()
            .next()
            .unwrap_or_default(),
    )
    .expect("a JSON line");
    assert_eq!(
        (first["id"].as_str(), first["call_id"].as_str()),
        (Some(id), Some(call.call_id.as_str()))
    );
    assert_eq!(call.bye().status(), Some(200));
    daemon.wait_record(&call.call_id, 10 * SECOND);
}

#[test]
fn records_the_database_still_refuses_at_exit_are_written_to_the_log() {
    let (mut daemon, _it, _kt) = standard_daemon(&[]);
    let (blocker, call) = a_call_while_the_database_is_locked(&daemon, "");
    wait_until(
        30 * SECOND,
        || healthz(&daemon).1["status"] == "degraded",
        || "healthz never said degraded".to_string(),
    );
    // The daemon waits 10 s for the database at exit, then gives up on it; the lock stays held throughout.
    let status = daemon.stop(60 * SECOND);
    assert!(status.success(), "exit {status}");
    let log = daemon.log_text();
    // The call's record once, as it ended (not its start as well).
    let kept: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("contact record not written to the database; kept here"))
        .collect();
    assert_eq!(kept.len(), 1, "log:\n{log}");
    assert!(kept[0].contains(&call.call_id), "{}", kept[0]);
    assert!(kept[0].contains(r#""outcome":"abandoned""#), "{}", kept[0]);
    drop(blocker);
}
