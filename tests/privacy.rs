//! What knappval keeps about a caller, through the daemon: the number stored as a keyed pseudonym (stable
//! across calls and restarts, computed from the number alone), never the number itself on disk or in the log
//! at the default level, the real number still given to the function, `--caller-numbers keep` as the opt-out.

mod common;

use common::audio::{CALLER_HZ, FUNCTION_HZ, MENU_HZ};
use common::sdp::{PCMA, PCMU};
use common::{Caller, Daemon, Fixture, FunctionEndpoint, MenuSpec, SECOND, event_pt};
use knappval::privacy::CallerKey;
use std::path::Path;
use std::time::Duration;

/// The caller's number, in three spellings a trunk may use for the same line.
const NUMBER: &str = "+46705550123";
/// What must never be found: the number's digits, however it was written.
const NUMBER_DIGITS: &str = "705550123";

fn stop_cleanly(daemon: &mut Daemon) {
    let status = daemon.stop(15 * SECOND);
    assert!(status.success(), "knappval exited with {status}");
}

/// A call from `from_uri` (with `extra` headers) that hears the menu and hangs up; returns its record.
fn short_call(daemon: &Daemon, from_uri: &str, extra: &[String]) -> serde_json::Value {
    let caller = Caller::udp(daemon.sip);
    let mut call = caller
        .sip
        .invite(&daemon.uri(), from_uri, Some(&caller.offer(&[PCMU])), extra);
    let response = call.start(10 * SECOND);
    assert_eq!(response.status(), Some(200), "{}", response.summary());
    let answer = common::sdp::parse(&response.body_str()).expect("SDP answer");
    caller.rtp.set_remote(answer.media_addr());
    let t0 = std::time::Instant::now();
    caller.rtp.play(common::Sound::Tone {
        freq: CALLER_HZ,
        pt: PCMU,
    });
    caller.rtp.wait_tone(MENU_HZ, 10, t0, 15 * SECOND);
    assert_eq!(call.bye().status(), Some(200));
    daemon.wait_record(&call.call_id, 5 * SECOND)
}

/// Panics when `file` holds the number's digits anywhere in its bytes.
fn assert_number_not_in(file: &Path) {
    let Ok(bytes) = std::fs::read(file) else {
        return;
    };
    let found = bytes
        .windows(NUMBER_DIGITS.len())
        .any(|w| w == NUMBER_DIGITS.as_bytes());
    assert!(
        !found,
        "the caller's number is in {} ({} bytes)",
        file.display(),
        bytes.len()
    );
}

fn assert_number_nowhere(fixture: &Fixture) {
    for name in [
        "contacts.db",
        "contacts.db-wal",
        "contacts.db-shm",
        "daemon.log",
    ] {
        assert_number_not_in(&fixture.path(name));
    }
}

#[test]
fn callers_are_stable_pseudonyms_and_their_number_is_nowhere_on_disk_or_in_the_log() {
    let it = FunctionEndpoint::new(&[PCMU, PCMA]);
    let fixture = Fixture::new();
    fixture.write_menu(&MenuSpec::new(&it.uri("it"), "sip:kt@127.0.0.1:9").yaml());
    let key_path = fixture.path("caller-key");
    assert!(!key_path.exists());
    // "info" written out, as an admin does: the SIP stack must not log whole messages, numbers and all.
    let mut daemon = Daemon::start_with_log(fixture, &[], "info");

    // Created at first start, beside the database, for the admin only; so is the database with its WAL.
    {
        use std::os::unix::fs::PermissionsExt;
        for name in ["caller-key", "contacts.db", "contacts.db-wal"] {
            let mode = std::fs::metadata(daemon.fixture.path(name))
                .unwrap_or_else(|e| panic!("{name} beside the database: {e}"))
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{name} mode {:o}", mode & 0o777);
        }
    }
    let expected = CallerKey::load(&key_path)
        .expect("a readable key")
        .pseudonym(NUMBER);

    // First call: bridged to the function, which still gets the real number.
    let mut caller = Caller::udp(daemon.sip);
    caller.number = NUMBER.into();
    let (mut call, answer, t0) = caller.call(&daemon, &[PCMU], CALLER_HZ);
    caller.rtp.wait_tone(MENU_HZ, 10, t0, 15 * SECOND);
    caller
        .rtp
        .send_digit('3', event_pt(&answer), Duration::from_millis(100));
    let mut incoming = it.expect_call(10 * SECOND);
    let from = incoming.header("from").unwrap_or_default().to_string();
    assert!(
        from.contains(NUMBER),
        "the function's INVITE carries the caller's number in From: {from}"
    );
    it.answer(&mut incoming, FUNCTION_HZ);
    caller
        .rtp
        .wait_tone(FUNCTION_HZ, 10, std::time::Instant::now(), 10 * SECOND);
    assert_eq!(call.bye().status(), Some(200));
    incoming.call.expect_bye(10 * SECOND);
    let first = daemon.wait_record(&call.call_id, 5 * SECOND);
    assert_eq!(first["outcome"], "transferred", "{first:#}");
    assert_eq!(first["from"], expected.as_str(), "{first:#}");

    // Second call: the same line written with visual separators in a tel: URI.
    let second = short_call(&daemon, "tel:+46-70-555-0123", &[]);
    assert_eq!(second["from"], expected.as_str(), "{second:#}");

    assert_number_nowhere(&daemon.fixture);
    stop_cleanly(&mut daemon);
    assert_number_nowhere(&daemon.fixture);

    // After a restart, with the same key: an anonymous From, the number asserted by the trunk.
    let fixture = std::mem::take(&mut daemon.fixture);
    drop(daemon);
    let mut daemon = Daemon::start_with_default_log(fixture, &[]);
    let third = short_call(
        &daemon,
        "sip:anonymous@anonymous.invalid",
        &[format!(
            "P-Asserted-Identity: \"Kalle\" <sip:{NUMBER}@trunk.example;user=phone>"
        )],
    );
    assert_eq!(third["from"], expected.as_str(), "{third:#}");
    // An anonymous caller without an asserted identity is nobody in particular.
    let anonymous = short_call(&daemon, "sip:anonymous@anonymous.invalid", &[]);
    assert_eq!(anonymous["from"], "anonymous", "{anonymous:#}");

    let log = daemon.log_text();
    assert!(
        log.contains(&format!("caller={expected}")),
        "the call's log names the caller by pseudonym:\n{log}"
    );
    assert_number_nowhere(&daemon.fixture);
    stop_cleanly(&mut daemon);
    assert_number_nowhere(&daemon.fixture);
}

#[test]
fn keep_stores_the_number_as_received_and_needs_no_key() {
    let fixture = Fixture::new();
    fixture.write_menu(&MenuSpec::new("sip:it@127.0.0.1:9", "sip:kt@127.0.0.1:9").yaml());
    let key_path = fixture.path("caller-key");
    let mut daemon = Daemon::start_with(fixture, &["--caller-numbers", "keep"]);
    let record = short_call(&daemon, &format!("sip:{NUMBER}@127.0.0.1"), &[]);
    assert_eq!(record["from"], NUMBER, "{record:#}");
    assert!(!key_path.exists(), "no key is made for numbers kept");
    stop_cleanly(&mut daemon);
    // The other test's search of the files would have found the number: here it is.
    let on_disk = ["contacts.db", "contacts.db-wal"].iter().any(|name| {
        std::fs::read(daemon.fixture.path(name)).is_ok_and(|bytes| {
            bytes
                .windows(NUMBER_DIGITS.len())
                .any(|w| w == NUMBER_DIGITS.as_bytes())
        })
    });
    assert!(on_disk, "the kept number is in the database file");
}

#[test]
fn a_caller_key_that_is_not_a_key_refuses_the_start() {
    let fixture = Fixture::new();
    fixture.write_menu(&MenuSpec::new("sip:it@127.0.0.1:9", "sip:kt@127.0.0.1:9").yaml());
    let key = fixture.path("elsewhere/key");
    std::fs::create_dir_all(key.parent().expect("a folder")).expect("mkdir");
    std::fs::write(&key, "hemligt\n").expect("write a bad key");
    let output = common::daemon::run_cli(&[
        common::daemon::os("run"),
        common::daemon::os("--menu"),
        fixture.menu.as_os_str(),
        common::daemon::os("--prompts"),
        fixture.prompts.as_os_str(),
        common::daemon::os("--db"),
        fixture.db.as_os_str(),
        common::daemon::os("--sip"),
        common::daemon::os("127.0.0.1:0"),
        common::daemon::os("--http"),
        common::daemon::os("127.0.0.1:0"),
        common::daemon::os("--caller-key"),
        key.as_os_str(),
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "started with a bad key: {stderr}");
    assert!(
        stderr.contains("elsewhere/key") && stderr.contains("64 hex digits"),
        "{stderr}"
    );
    assert!(
        !fixture.db.exists(),
        "nothing written before the key is known"
    );
}
