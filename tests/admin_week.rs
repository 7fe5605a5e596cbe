//! The admin's week through the real binary: opening hours on real calls (answered, closed prompt heard,
//! outcome `closed`; a closed function routing elsewhere), `knappval simulate` (scripted walks, `--at` on a
//! holiday) and simulate compared with the daemon for the same digits, `check`'s warnings and `graph`.
//!
//! The daemon cannot be told what day it is, so tests that need it closed write the hours relative to the real
//! clock: `closed_on:` lists yesterday, today and tomorrow in Stockholm (a test running over midnight stays
//! closed), with `weekly:` open all week so that only closed_on can close it.

mod common;

use common::audio::{
    self, BUSY_HZ, CALLER_HZ, CLOSED_HZ, FUNCTION_CLOSED_HZ, FUNCTION_HZ, GREETING_HZ, INVALID_HZ,
    MENU_HZ, MORE_HZ,
};
use common::daemon::{os, path_arg, run_cli};
use common::sdp::PCMU;
use common::{
    Caller, Daemon, Fixture, FunctionEndpoint, MenuSpec, SECOND, assert_record, event_pt,
};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// Every prompt of the test menus, by the tone the tests give it.
const PROMPT_TONES: [(&str, u32); 7] = [
    ("welcome", GREETING_HZ),
    ("main-menu", MENU_HZ),
    ("invalid-choice", INVALID_HZ),
    ("more-menu", MORE_HZ),
    ("busy", BUSY_HZ),
    ("closed", CLOSED_HZ),
    ("it-closed", FUNCTION_CLOSED_HZ),
];

/// The standard test fixture plus the two closed prompts.
fn fixture(yaml: &str) -> Fixture {
    let fixture = Fixture::new();
    for (id, freq, seconds) in [
        ("closed", CLOSED_HZ, 1.2),
        ("it-closed", FUNCTION_CLOSED_HZ, 0.8),
    ] {
        audio::write_tone_wav(
            &fixture.prompts.join(format!("{id}.wav")),
            f64::from(freq),
            seconds,
            8000,
            1,
        )
        .expect("write a closed prompt");
    }
    fixture.write_menu(yaml);
    fixture
}

/// `[yesterday, today, tomorrow]` in Stockholm, as a YAML list.
fn around_today() -> String {
    let zone = jiff::tz::TimeZone::get("Europe/Stockholm").expect("bundled tzdb");
    let today = zone.to_datetime(jiff::Timestamp::now()).date();
    let days: Vec<String> = [today.yesterday(), Ok(today), today.tomorrow()]
        .into_iter()
        .map(|day| day.expect("a date").to_string())
        .collect();
    format!("[{}]", days.join(", "))
}

/// The test menu with service hours closed now.
fn closed_service(spec: &MenuSpec) -> String {
    format!(
        "{}hours:\n  weekly: {{ mon-sun: \"00:00-24:00\" }}\n  closed_on: {}\n  \
         closed: {{ prompt: closed, then: {{ hangup: true }} }}\n",
        spec.yaml(),
        around_today()
    )
}

/// The test menu with service hours closed every weekday and on holidays, but open all day on the days around
/// today by `special:` (which wins over holidays): open now.
fn open_by_special(spec: &MenuSpec) -> String {
    let days = around_today();
    let special: Vec<String> = days
        .trim_matches(['[', ']'])
        .split(", ")
        .map(|day| format!("\"{day}\": \"00:00-24:00\""))
        .collect();
    format!(
        "{}hours:\n  weekly: {{ mon-sun: closed }}\n  holidays: se\n  special: {{ {} }}\n  \
         closed: {{ prompt: closed, then: {{ hangup: true }} }}\n",
        spec.yaml(),
        special.join(", ")
    )
}

/// The test menu with function `it` closed now, routing its callers to kundtjänst.
fn closed_it(spec: &MenuSpec) -> String {
    spec.yaml().replacen(
        "    failure_prompt: busy\n",
        &format!(
            "    failure_prompt: busy\n    hours: {{ weekly: {{ mon-sun: \"00:00-24:00\" }}, closed_on: {}, \
             closed: {{ prompt: it-closed, then: {{ route: kundtjanst }} }} }}\n",
            around_today()
        ),
        1,
    )
}

/// The prompts a caller heard, in order.
fn heard_prompts(segments: &[audio::Segment]) -> Vec<String> {
    audio::heard_prompts(segments, &PROMPT_TONES)
}

fn simulate(fixture: &Fixture, args: &[&str]) -> std::process::Output {
    common::daemon::simulate(fixture, args)
}

fn simulate_json(fixture: &Fixture, args: &[&str]) -> Value {
    let mut args = args.to_vec();
    args.extend(["--format", "json"]);
    let output = simulate(fixture, &args);
    assert!(
        output.status.success(),
        "simulate {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("simulate printed no single JSON object ({e}): {stdout}"))
}

fn stop_cleanly(mut daemon: Daemon) {
    let status = daemon.stop(15 * SECOND);
    assert!(status.success(), "knappval exited with {status}");
}

/// Targets that never answer: for simulations, where hand-offs are taken as answered.
fn offline_spec() -> MenuSpec {
    MenuSpec::new("sip:it@127.0.0.1:9", "sip:kt@127.0.0.1:9")
}

#[test]
fn closed_service_answers_plays_the_closed_prompt_and_records_closed() {
    let fixture = fixture(&closed_service(&offline_spec()));
    let daemon = Daemon::start(fixture);
    let caller = Caller::udp(daemon.sip);
    // `call` asserts the 200 OK: a closed service still answers.
    let (call, _answer, t0) = caller.call(&daemon, &[PCMU], CALLER_HZ);
    call.expect_bye(15 * SECOND);
    let heard = caller.rtp.segments_since(t0);
    assert_eq!(
        heard_prompts(&heard),
        ["closed"],
        "only the closed prompt; heard {}",
        audio::describe(&heard)
    );
    assert!(
        audio::longest(&heard, CLOSED_HZ) >= 50,
        "the 1.2 s closed prompt plays to its end before the BYE; heard {}",
        audio::describe(&heard)
    );
    let record = daemon.wait_record(&call.call_id, 5 * SECOND);
    assert_record(&record, "closed", None, "", &[]);
    assert_eq!(
        record["steps"]
            .as_array()
            .map(|s| s.iter().map(|s| s["kind"].clone()).collect::<Vec<_>>()),
        Some(vec![json!("closed"), json!("hangup")]),
        "{record:#}"
    );
    assert!(!record["answered_at"].is_null(), "{record:#}");
    stop_cleanly(daemon);
}

#[test]
fn a_function_closed_when_chosen_plays_its_prompt_and_the_call_goes_elsewhere() {
    let it = FunctionEndpoint::new(&[PCMU]);
    let kt = FunctionEndpoint::new(&[PCMU]);
    let mut spec = MenuSpec::new(&it.uri("it"), &kt.uri("kt"));
    spec.kt_transfer = "bridge";
    let daemon = Daemon::start(fixture(&closed_it(&spec)));
    let caller = Caller::udp(daemon.sip);
    let (mut call, answer, t0) = caller.call(&daemon, &[PCMU], CALLER_HZ);
    caller.rtp.wait_tone(MENU_HZ, 10, t0, 15 * SECOND);
    caller
        .rtp
        .send_digit('3', event_pt(&answer), Duration::from_millis(100));
    let mut incoming = kt.expect_call(15 * SECOND);
    assert_eq!(
        incoming.header("X-Knappval-Function").map(str::trim),
        Some("kundtjanst")
    );
    let answered = Instant::now();
    kt.answer(&mut incoming, FUNCTION_HZ);
    caller.rtp.wait_tone(FUNCTION_HZ, 5, answered, 10 * SECOND);
    let heard = caller.rtp.segments_since(t0);
    assert!(
        audio::find_run(&heard, FUNCTION_CLOSED_HZ, 35, 0).is_some(),
        "it's closed prompt, whole; heard {}",
        audio::describe(&heard)
    );
    assert!(
        it.sip
            .take(SECOND / 2, |m| m.is_request("INVITE"))
            .is_none(),
        "the closed function is not called"
    );
    assert_eq!(call.bye().status(), Some(200));
    incoming.call.expect_bye(10 * SECOND);
    let record = daemon.wait_record(&call.call_id, 5 * SECOND);
    assert_record(&record, "transferred", Some("kundtjanst"), "3", &["root"]);
    let steps = record["steps"].as_array().cloned().unwrap_or_default();
    assert!(
        steps
            .iter()
            .any(|s| s["kind"] == "function_closed" && s["value"] == "it"),
        "the steps show the closed function: {record:#}"
    );
    stop_cleanly(daemon);
}

#[test]
fn simulate_prints_a_scripted_walk_as_json() {
    let fixture = fixture(&offline_spec().yaml());
    assert_eq!(
        simulate_json(&fixture, &["--digits", "9,1"]),
        json!({"outcome": "transferred", "function": "it",
               "heard": ["welcome", "main-menu", "more-menu"], "path": ["root", "more"]})
    );
    // A wrong key, then silence: retries 1, then the fallback hangs up.
    assert_eq!(
        simulate_json(&fixture, &["--digits", "7"]),
        json!({"outcome": "timeout", "function": null,
               "heard": ["welcome", "main-menu", "invalid-choice", "main-menu"], "path": ["root"]})
    );
    let output = simulate(&fixture, &["--digits", "x"]);
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("not a telephone key"),
        "{output:?}"
    );
}

#[test]
fn simulate_at_a_holiday_is_closed_and_on_a_working_day_open() {
    let yaml = format!(
        "{}hours:\n  weekly: {{ mon-thu: \"08:00-16:30\", fri: \"08:00-15:00\" }}\n  holidays: se\n  \
         closed: {{ prompt: closed, then: {{ hangup: true }} }}\n",
        offline_spec().yaml()
    );
    let fixture = fixture(&yaml);
    assert_eq!(
        simulate_json(&fixture, &["--at", "2026-12-24 10:00", "--digits", "3"]),
        json!({"outcome": "closed", "function": null, "heard": ["closed"], "path": []})
    );
    assert_eq!(
        simulate_json(&fixture, &["--at", "2026-12-23 10:00", "--digits", "3"]),
        json!({"outcome": "transferred", "function": "it",
               "heard": ["welcome", "main-menu"], "path": ["root"]})
    );
    // 16:30 is closing time (the end of a range is excluded).
    assert_eq!(
        simulate_json(&fixture, &["--at", "2026-12-23 16:30"])["outcome"],
        "closed"
    );
    let text = simulate(&fixture, &["--at", "2026-12-24 10:00"]);
    let stdout = String::from_utf8_lossy(&text.stdout);
    assert!(stdout.contains("service closed (julafton)"), "{stdout}");
    assert!(stdout.contains("outcome: closed"), "{stdout}");
}

#[test]
fn simulate_reads_keys_from_stdin_when_no_digits_are_given() {
    let fixture = fixture(&offline_spec().yaml());
    let mut child = std::process::Command::new(common::daemon::bin())
        .args(["simulate", "--format", "json", "--menu"])
        .arg(&fixture.menu)
        .arg("--prompts")
        .arg(&fixture.prompts)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn knappval simulate");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("stdin");
        // A wait (empty line), then 9 and 1.
        stdin.write_all(b"\n9\n1\n").expect("write keys");
    }
    let output = child.wait_with_output().expect("simulate finishes");
    assert!(output.status.success());
    let summary: Value = serde_json::from_slice(&output.stdout).expect("one JSON object");
    assert_eq!(
        summary,
        json!({"outcome": "transferred", "function": "it",
               "heard": ["welcome", "main-menu", "main-menu", "more-menu"], "path": ["root", "more"]})
    );
}

/// Runs `simulate --digits` and a real call through the daemon pressing the same keys (each once the prompt
/// before it has played), and compares what the caller heard and the record with what simulate printed.
/// `waits` is the prompt tone and length (frames) to hear before each key. Returns what simulate printed.
fn simulate_matches_the_daemon(
    menu: impl Fn(&MenuSpec) -> String,
    digits: &[char],
    waits: &[(u32, usize)],
) -> Value {
    let it = FunctionEndpoint::new(&[PCMU]);
    let kt = FunctionEndpoint::new(&[PCMU]);
    let mut spec = MenuSpec::new(&it.uri("it"), &kt.uri("kt"));
    spec.kt_transfer = "bridge";
    let fixture = fixture(&menu(&spec));
    let script: Vec<String> = digits.iter().map(char::to_string).collect();
    let simulated = simulate_json(&fixture, &["--digits", &script.join(",")]);

    let daemon = Daemon::start(fixture);
    let caller = Caller::udp(daemon.sip);
    let (mut call, answer, t0) = caller.call(&daemon, &[PCMU], CALLER_HZ);
    let mut since = t0;
    for (digit, (tone, frames)) in digits.iter().zip(waits) {
        caller.rtp.wait_tone(*tone, *frames, since, 15 * SECOND);
        // Past the prompt's end: simulate presses once the menu waits.
        std::thread::sleep(Duration::from_millis(400));
        since = Instant::now();
        caller
            .rtp
            .send_digit(*digit, event_pt(&answer), Duration::from_millis(100));
    }
    let endpoint = match simulated["function"].as_str() {
        Some("it") => Some(&it),
        Some("kundtjanst") => Some(&kt),
        None => None,
        other => panic!("simulate routed to an unknown function {other:?}"),
    };
    let heard = match endpoint {
        Some(endpoint) => {
            let mut incoming = endpoint.expect_call(15 * SECOND);
            let answered = Instant::now();
            endpoint.answer(&mut incoming, FUNCTION_HZ);
            caller.rtp.wait_tone(FUNCTION_HZ, 5, answered, 10 * SECOND);
            let heard = caller.rtp.segments_since(t0);
            assert_eq!(call.bye().status(), Some(200));
            incoming.call.expect_bye(10 * SECOND);
            heard
        }
        // No function: the daemon ends the call itself.
        None => {
            call.expect_bye(30 * SECOND);
            caller.rtp.segments_since(t0)
        }
    };
    let record = daemon.wait_record(&call.call_id, 5 * SECOND);

    assert_eq!(
        json!(heard_prompts(&heard)),
        simulated["heard"],
        "heard on the call ({}) vs simulate",
        audio::describe(&heard)
    );
    for field in ["outcome", "function", "path"] {
        assert_eq!(
            record[field], simulated[field],
            "{field}: record {record:#}"
        );
    }
    stop_cleanly(daemon);
    simulated
}

#[test]
fn simulate_matches_the_daemon_through_a_submenu() {
    let simulated =
        simulate_matches_the_daemon(MenuSpec::yaml, &['9', '1'], &[(MENU_HZ, 70), (MORE_HZ, 40)]);
    assert_eq!(simulated["path"], json!(["root", "more"]));
}

#[test]
fn simulate_matches_the_daemon_when_the_chosen_function_is_closed() {
    let simulated = simulate_matches_the_daemon(closed_it, &['3'], &[(MENU_HZ, 70)]);
    assert_eq!(simulated["function"], "kundtjanst");
}

#[test]
fn simulate_matches_the_daemon_when_the_service_is_closed() {
    let simulated = simulate_matches_the_daemon(closed_service, &[], &[]);
    assert_eq!(simulated["outcome"], "closed");
}

#[test]
fn simulate_matches_the_daemon_when_special_hours_open_the_service() {
    let simulated = simulate_matches_the_daemon(open_by_special, &['3'], &[(MENU_HZ, 70)]);
    assert_eq!(
        simulated["heard"],
        json!(["welcome", "main-menu"]),
        "open, though every weekday and holiday is closed"
    );
}

#[test]
fn simulate_matches_the_daemon_when_a_wrong_key_and_silence_end_in_the_fallback() {
    let simulated = simulate_matches_the_daemon(MenuSpec::yaml, &['7'], &[(MENU_HZ, 70)]);
    assert_eq!(simulated["outcome"], "timeout");
}

#[test]
fn check_warns_without_failing_and_graph_draws_the_menu() {
    let yaml = format!(
        "{}hours:\n  weekly: {{ sat: closed }}\n  closed: {{ prompt: closed }}\n",
        offline_spec().yaml()
    );
    let fixture = fixture(&yaml);
    let output = run_cli(&[
        os("check"),
        os("--menu"),
        path_arg(&fixture.menu),
        os("--prompts"),
        path_arg(&fixture.prompts),
    ]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "warnings do not fail check: {output:?}"
    );
    assert!(
        stdout.contains("warning: prompt 'it-closed'") && stdout.contains("is never used"),
        "{stdout}"
    );
    assert!(
        stdout.contains("warning: the service's hours are never open"),
        "{stdout}"
    );

    let output = run_cli(&[
        os("graph"),
        os("--menu"),
        path_arg(&fixture.menu),
        os("--format"),
        os("dot"),
    ]);
    let dot = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{output:?}");
    assert!(
        dot.contains("\"menu:root\" -> \"menu:more\" [label=\"9\"];"),
        "{dot}"
    );
    assert!(
        dot.contains("\"start\" -> \"hangup\" [label=\"closed\", style=dashed];"),
        "{dot}"
    );
    let output = run_cli(&[
        os("graph"),
        os("--menu"),
        path_arg(&fixture.menu),
        os("--format"),
        os("mermaid"),
    ]);
    let mermaid = String::from_utf8_lossy(&output.stdout);
    assert!(mermaid.starts_with("flowchart LR\n"), "{mermaid}");
    assert!(mermaid.contains("-->|\"9\"|"), "{mermaid}");
}
