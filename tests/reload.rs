//! Hot reload through the daemon: SIGHUP and a menu file changed on disk swap the menu for new calls only; an
//! invalid file keeps the old menu and `GET /api/v1/menu` shows its error with file:line:col; each record carries
//! the version of the menu its call ran on; and a SIPp load run loses no call while the menu is rewritten.

mod common;

use common::audio::{CALLER_HZ, FUNCTION_HZ, MENU_HZ, MORE_HZ};
use common::sdp::PCMU;
use common::sipp::{Callers, free_udp_port, function_phone};
use common::{Caller, Daemon, Fixture, FunctionEndpoint, MenuSpec, SECOND, event_pt, wait_until};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

const DIGIT: Duration = Duration::from_millis(100);
/// The watcher polls each second and loads a change once it has held still for a poll: a few seconds at most,
/// generous for a loaded machine.
const RELOAD_WAIT: Duration = Duration::from_secs(20);

/// What the daemon calls the menu's version: the first 12 hex digits of the file's SHA-256.
fn version_of(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .take(6)
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn stop_cleanly(mut daemon: Daemon) {
    let status = daemon.stop(15 * SECOND);
    assert!(status.success(), "knappval exited with {status}");
}

/// Waits until `GET /api/v1/menu` satisfies `done`; returns that answer.
fn wait_menu(daemon: &Daemon, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let mut last = Value::Null;
    wait_until(
        RELOAD_WAIT,
        || {
            last = daemon.menu_status();
            done(&last)
        },
        || {
            format!(
                "{what}: /api/v1/menu is {}; log:\n{}",
                daemon.menu_status(),
                daemon.log_text()
            )
        },
    );
    last
}

/// A caller (PCMU) in the menu: the menu prompt is playing.
fn caller_in_menu(daemon: &Daemon) -> (Caller, common::Call, u8) {
    let caller = Caller::udp(daemon.sip);
    let (call, answer, t0) = caller.call(daemon, &[PCMU], CALLER_HZ);
    caller.rtp.wait_tone(MENU_HZ, 10, t0, 15 * SECOND);
    (caller, call, event_pt(&answer))
}

/// The function answers, then hangs up; the caller gets the BYE. Returns the finished record.
fn complete_at(
    daemon: &Daemon,
    function: &FunctionEndpoint,
    call: &common::Call,
    expect_function: &str,
) -> Value {
    let mut incoming = function.expect_call(10 * SECOND);
    assert_eq!(
        incoming.header("X-Knappval-Function").map(str::trim),
        Some(expect_function),
        "the bridged INVITE went to the wrong function"
    );
    function.answer(&mut incoming, FUNCTION_HZ);
    assert_eq!(incoming.call.bye().status(), Some(200));
    call.expect_bye(10 * SECOND);
    daemon.wait_record(&call.call_id, 5 * SECOND)
}

#[test]
fn a_call_in_the_menu_during_a_reload_follows_the_old_menu_and_a_new_call_the_new_one() {
    let it = FunctionEndpoint::new(&[PCMU]);
    let kt = FunctionEndpoint::new(&[PCMU]);
    let mut spec = MenuSpec::new(&it.uri("it"), &kt.uri("kt"));
    // Both bridge, so the function phone that rings shows where each call went; the menu waits long enough
    // for the reload to happen while the first caller is in it.
    spec.kt_transfer = "bridge";
    spec.menu_timeout = "30s";
    let old = spec.yaml();
    let new = old.replace(r#""3": { route: it }"#, r#""3": { route: kundtjanst }"#);
    assert_ne!(old, new, "the test menu maps 3 to it");
    let fixture = Fixture::new();
    fixture.write_menu(&old);
    let menu_path = fixture.menu.clone();
    let daemon = Daemon::start(fixture);
    assert_eq!(daemon.menu_status()["version"], version_of(&old));

    let (first, first_call, first_pt) = caller_in_menu(&daemon);
    std::fs::write(&menu_path, &new).expect("write the new menu");
    daemon.hangup_signal();
    wait_menu(&daemon, "the new menu never served", |m| {
        m["version"] == version_of(&new)
    });

    // The first caller presses 3 in the menu it heard: the old mapping, to it.
    first.rtp.send_digit('3', first_pt, DIGIT);
    let first_record = complete_at(&daemon, &it, &first_call, "it");
    // A caller arriving now presses 3: the new mapping, to kundtjänst.
    let (second, second_call, second_pt) = caller_in_menu(&daemon);
    second.rtp.send_digit('3', second_pt, DIGIT);
    let second_record = complete_at(&daemon, &kt, &second_call, "kundtjanst");

    common::assert_record(&first_record, "transferred", Some("it"), "3", &["root"]);
    common::assert_record(
        &second_record,
        "transferred",
        Some("kundtjanst"),
        "3",
        &["root"],
    );
    assert_eq!(
        first_record["menu_version"],
        version_of(&old),
        "{first_record:#}"
    );
    assert_eq!(
        second_record["menu_version"],
        version_of(&new),
        "{second_record:#}"
    );
    assert!(
        daemon.log_text().contains("menu reloaded"),
        "the reload is logged"
    );
    // `knappval contacts` carries the version too, in both formats.
    let csv = common::daemon::export_contacts(&daemon.fixture.db, "csv");
    let csv = String::from_utf8_lossy(&csv.stdout);
    assert!(
        csv.lines()
            .next()
            .is_some_and(|h| h.split(',').any(|column| column == "menu_version")),
        "{csv}"
    );
    for version in [version_of(&old), version_of(&new)] {
        assert!(csv.contains(&version), "{version} in {csv}");
    }
    let jsonl = common::daemon::export_contacts(&daemon.fixture.db, "jsonl");
    let first_line: Value = String::from_utf8_lossy(&jsonl.stdout)
        .lines()
        .next()
        .and_then(|l| serde_json::from_str(l).ok())
        .expect("a JSON line");
    assert_eq!(first_line["menu_version"], version_of(&new), "newest first");
    stop_cleanly(daemon);
}

#[test]
fn an_invalid_menu_on_disk_keeps_the_old_one_serving_and_the_api_shows_where_it_is_wrong() {
    let it = FunctionEndpoint::new(&[PCMU]);
    let spec = MenuSpec::new(&it.uri("it"), "sip:kt@127.0.0.1:9");
    let good = spec.yaml();
    let fixture = Fixture::new();
    fixture.write_menu(&good);
    let menu_path = fixture.menu.clone();
    let daemon = Daemon::start(fixture);
    let before = daemon.menu_status();
    assert_eq!(before["version"], version_of(&good), "{before}");
    assert!(before["error"].is_null(), "{before}");
    assert!(
        before["loaded_at"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z')),
        "{before}"
    );
    assert!(
        before["file"]
            .as_str()
            .is_some_and(|f| f.ends_with("menu.yaml")),
        "{before}"
    );

    // A typo in a function name, saved over the file: the watcher finds it without a signal.
    let typo = good.replace(r#""3": { route: it }"#, r#""3": { route: itt }"#);
    let line = typo
        .lines()
        .position(|l| l.contains("route: itt"))
        .expect("the typo is in the menu")
        + 1;
    std::fs::write(&menu_path, &typo).expect("write the broken menu");
    let refused = wait_menu(&daemon, "the broken menu was not reported", |m| {
        !m["error"].is_null()
    });
    let error = refused["error"].as_str().unwrap_or_default();
    let place = format!("menu.yaml:{line}:");
    assert!(
        error.contains(&place) && error.contains("itt"),
        "the error names file:line:col ({place}): {error}"
    );
    let column = error
        .split(&place)
        .nth(1)
        .and_then(|rest| rest.split(':').next())
        .and_then(|col| col.parse::<u32>().ok());
    assert!(
        column.is_some_and(|c| c > 0),
        "a column after {place}: {error}"
    );
    assert_eq!(refused["version"], version_of(&good), "the old menu serves");
    assert!(!refused["error_at"].is_null(), "{refused}");
    assert!(
        daemon.log_text().contains(&place),
        "the error is logged with its place"
    );

    // A call now runs on the old menu: 3 still reaches it, and its record says which version it ran on.
    let (caller, call, pt) = caller_in_menu(&daemon);
    caller.rtp.send_digit('3', pt, DIGIT);
    let record = complete_at(&daemon, &it, &call, "it");
    assert_eq!(record["menu_version"], version_of(&good), "{record:#}");

    // Not YAML at all, with a SIGHUP: refused again, the old menu still serving.
    std::fs::write(&menu_path, "name: [unclosed\n").expect("write a non-YAML menu");
    daemon.hangup_signal();
    let refused_again = wait_menu(&daemon, "the second broken menu was not reported", |m| {
        m["error"]
            .as_str()
            .is_some_and(|e| e.contains("menu.yaml:1:"))
            && m["error_at"] != refused["error_at"]
    });
    assert_eq!(refused_again["version"], version_of(&good));

    // Fixed: the error goes and the version changes.
    let fixed = good.replace(
        "name: Knappval testkommun",
        "name: Knappval testkommun (ny)",
    );
    std::fs::write(&menu_path, &fixed).expect("write the fixed menu");
    let after = wait_menu(&daemon, "the fixed menu never served", |m| {
        m["error"].is_null()
    });
    assert_eq!(after["version"], version_of(&fixed), "{after}");
    assert_ne!(after["version"], before["version"]);
    assert!(after["error_at"].is_null(), "{after}");
    stop_cleanly(daemon);
}

/// 30 SIPp calls, each pressing 3 and bridged to a SIPp function phone, while the menu file is rewritten six
/// times (valid and invalid) and SIGHUP is sent: SIPp counts no failed call on either side, and there is one
/// finished, transferred record per call, on more than one menu version.
#[test]
fn a_sipp_load_run_loses_no_call_while_the_menu_is_reloaded() {
    const CALLS: usize = 30;
    let loopback = IpAddr::V4(Ipv4Addr::LOCALHOST);
    common::sipp::sipp_binary();
    let fixture = Fixture::new();
    let function_port = free_udp_port(loopback);
    let spec = MenuSpec::new(
        &format!("sip:it@127.0.0.1:{function_port}"),
        "sip:kt@127.0.0.1:9",
    );
    let base = spec.yaml();
    fixture.write_menu(&base);
    let menu_path = fixture.menu.clone();
    let dir = fixture.dir.path().to_path_buf();
    // SIPp's UAS takes any new request for a call starting with INVITE: no OPTIONS probes here.
    let daemon = Daemon::start_with(fixture, &["--probe-interval", "0s"]);

    let mut function = function_phone(&dir, function_port, "it", "3", "0701234567", CALLS);
    let digits = dir.join("digit-3.pcap");
    common::pcap::write_dtmf_pcap(&digits, "3", 101).expect("write the RFC 4733 pcap");
    // Three new calls a second, so calls are in every phase when the menu changes.
    let mut caller = Callers {
        caller: "0701234567",
        pcap: &digits,
        digit_delay_ms: 1500,
        hold_ms: 2000,
        calls: CALLS,
        rate: 3,
        late_offer: false,
    }
    .spawn(&dir, daemon.sip);

    // Six rewrites while the calls run: valid ones (3 still goes to it) alternating with broken ones, some
    // with SIGHUP, some left to the watcher.
    for round in 0..6 {
        std::thread::sleep(Duration::from_millis(1500));
        let text = if round % 2 == 0 {
            base.replace(
                "name: Knappval testkommun",
                &format!("name: Knappval testkommun {round}"),
            )
        } else {
            base.replace("  prompt: main-menu", "  prompt: [main-menu")
        };
        std::fs::write(&menu_path, text).expect("rewrite the menu");
        if round % 3 == 0 {
            daemon.hangup_signal();
        }
    }

    caller.assert_success(Duration::from_secs(150));
    function.assert_success(Duration::from_secs(60));
    let mut records = Vec::new();
    wait_until(
        10 * SECOND,
        || {
            records = daemon.contacts();
            records.len() == CALLS && records.iter().all(|r| !r["outcome"].is_null())
        },
        || {
            format!(
                "{} records, want {CALLS} finished: {:#?}",
                daemon.contacts().len(),
                daemon.contacts()
            )
        },
    );
    for record in &records {
        common::assert_record(record, "transferred", Some("it"), "3", &["root"]);
    }
    let mut versions: Vec<&str> = records
        .iter()
        .filter_map(|r| r["menu_version"].as_str())
        .collect();
    assert_eq!(versions.len(), CALLS, "every record has its menu version");
    versions.sort_unstable();
    versions.dedup();
    assert!(
        versions.len() >= 2,
        "calls ran on the menus before and after the reloads: {versions:?}"
    );
    let log = daemon.log_text();
    assert!(
        log.contains("menu reload refused"),
        "the broken menus were refused"
    );
    stop_cleanly(daemon);
}

#[test]
fn a_reload_probes_the_new_functions_targets() {
    let it = FunctionEndpoint::new(&[PCMU]);
    let old_kt = FunctionEndpoint::new(&[PCMU]);
    let new_kt = FunctionEndpoint::new(&[PCMU]);
    let spec = MenuSpec::new(&it.uri("it"), &old_kt.uri("kt"));
    let old = spec.yaml();
    let fixture = Fixture::new();
    fixture.write_menu(&old);
    let menu_path = fixture.menu.clone();
    let daemon = Daemon::start_with(fixture, &["--probe-interval", "1s", "--probe-mode", "all"]);
    let state = |function: &str| {
        let (_, body) = daemon.get("/healthz");
        let health: Value = serde_json::from_str(&body).expect("healthz JSON");
        health["functions"][function].clone()
    };
    wait_until(
        RELOAD_WAIT,
        || state("kundtjanst")["state"] == "up",
        || format!("kundtjanst never up: {}", state("kundtjanst")),
    );

    // kundtjänst moves to another phone, and a new function comes with the reload.
    let new = MenuSpec::new(&it.uri("it"), &new_kt.uri("kt"))
        .yaml()
        .replace(
            "functions:\n",
            &format!(
                "functions:\n  personal:\n    name: Personal Direkt\n    target: \"{}\"\n",
                it.uri("personal")
            ),
        )
        .replace(
            r#""9": { menu: more }"#,
            "\"9\": { menu: more }\n    \"5\": { route: personal }",
        );
    std::fs::write(&menu_path, &new).expect("write the new menu");
    daemon.hangup_signal();
    wait_menu(&daemon, "the new menu never served", |m| {
        m["version"] == version_of(&new)
    });
    wait_until(
        RELOAD_WAIT,
        || {
            state("kundtjanst")["target"] == new_kt.uri("kt")
                && state("kundtjanst")["state"] == "up"
                && state("personal")["state"] == "up"
        },
        || {
            format!(
                "kundtjanst {} personal {}; log:\n{}",
                state("kundtjanst"),
                state("personal"),
                daemon.log_text()
            )
        },
    );
    stop_cleanly(daemon);
}

#[test]
fn a_replaced_prompt_reaches_new_calls_while_a_call_in_progress_keeps_the_old_one() {
    let mut spec = MenuSpec::new("sip:it@127.0.0.1:9", "sip:kt@127.0.0.1:9");
    spec.menu_timeout = "30s";
    let fixture = Fixture::new();
    fixture.write_menu(&spec.yaml());
    let menu_wav = fixture.prompts.join("main-menu.wav");
    let daemon = Daemon::start_with(fixture, &["--probe-interval", "0s"]);
    let (first, mut first_call, first_pt) = caller_in_menu(&daemon);
    let before = daemon.menu_status();

    // A new recording of the menu prompt, the menu text unchanged: no signal, the watcher sees the file.
    common::audio::write_tone_wav(&menu_wav, f64::from(MORE_HZ), 1.6, 8000, 1)
        .expect("write the new main-menu.wav");
    let after = wait_menu(&daemon, "the new prompt was not loaded", |m| {
        m["loaded_at"] != before["loaded_at"]
    });
    assert_eq!(
        after["version"], before["version"],
        "the menu text is the version"
    );
    assert!(after["error"].is_null(), "{after}");

    // The first caller asks for the menu again (*): its call still has the prompts it started with.
    let again = Instant::now();
    first.rtp.send_digit('*', first_pt, DIGIT);
    first.rtp.wait_tone(MENU_HZ, 40, again, 15 * SECOND);
    let heard = first.rtp.segments_since(again);
    assert!(
        common::audio::longest(&heard, MORE_HZ) < 10,
        "the call in progress heard the new recording: {}",
        common::audio::describe(&heard)
    );
    // A new caller hears the new recording.
    let second = Caller::udp(daemon.sip);
    let (mut second_call, _answer, t0) = second.call(&daemon, &[PCMU], CALLER_HZ);
    second.rtp.wait_tone(MORE_HZ, 40, t0, 15 * SECOND);
    assert_eq!(first_call.bye().status(), Some(200));
    assert_eq!(second_call.bye().status(), Some(200));
    stop_cleanly(daemon);
}

#[test]
fn a_menu_refused_for_a_missing_prompt_loads_once_the_prompt_is_copied_in() {
    let spec = MenuSpec::new("sip:it@127.0.0.1:9", "sip:kt@127.0.0.1:9");
    let old = spec.yaml();
    let fixture = Fixture::new();
    fixture.write_menu(&old);
    let menu_path = fixture.menu.clone();
    let prompts = fixture.prompts.clone();
    let daemon = Daemon::start_with(fixture, &["--probe-interval", "0s"]);

    // The admin saves the menu first, naming a greeting not recorded yet: refused.
    let new = old.replace("greeting: welcome", "greeting: julhelg");
    std::fs::write(&menu_path, &new).expect("write the new menu");
    let refused = wait_menu(&daemon, "the missing prompt was not reported", |m| {
        m["error"].as_str().is_some_and(|e| e.contains("julhelg"))
    });
    assert_eq!(refused["version"], version_of(&old));
    // Then copies the recording in: no signal, no second save.
    common::audio::write_tone_wav(&prompts.join("julhelg.wav"), 700.0, 0.6, 8000, 1)
        .expect("write julhelg.wav");
    let loaded = wait_menu(&daemon, "the menu never loaded", |m| m["error"].is_null());
    assert_eq!(loaded["version"], version_of(&new));
    stop_cleanly(daemon);
}
