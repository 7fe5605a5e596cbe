//! Announcements through the real binary: put up over the HTTP API and with `knappval announce`, heard by
//! callers after the greeting and before the menu (by their tones in the RTP the caller receives), listed in the
//! record's `announcements`, expiring by themselves, taken down, kept across a restart; a function's own
//! announcement heard when the caller chooses it; a prompt and a function added by a reload announced without a
//! restart; `simulate --announce`.

mod common;

use common::audio::{
    self, ANNOUNCE_2_HZ, ANNOUNCE_HZ, BUSY_HZ, CALLER_HZ, CLOSED_HZ, GREETING_HZ, INVALID_HZ,
    MENU_HZ, MORE_HZ,
};
use common::daemon::{http_request, os, run_cli};
use common::sdp::PCMU;
use common::{Caller, Daemon, Fixture, MenuSpec, SECOND, event_pt};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// Every prompt of these tests, by the tone the tests give it.
const PROMPT_TONES: [(&str, u32); 7] = [
    ("welcome", GREETING_HZ),
    ("main-menu", MENU_HZ),
    ("invalid-choice", INVALID_HZ),
    ("more-menu", MORE_HZ),
    ("busy", BUSY_HZ),
    ("email-down", ANNOUNCE_HZ),
    ("raindance", ANNOUNCE_2_HZ),
];

/// The standard fixture plus two announcement prompts the menu does not name.
fn fixture(yaml: &str) -> Fixture {
    let fixture = Fixture::new();
    for (id, freq) in [("email-down", ANNOUNCE_HZ), ("raindance", ANNOUNCE_2_HZ)] {
        audio::write_tone_wav(
            &fixture.prompts.join(format!("{id}.wav")),
            f64::from(freq),
            0.8,
            8000,
            1,
        )
        .expect("write an announcement prompt");
    }
    fixture.write_menu(yaml);
    fixture
}

/// Targets that never answer: these tests hang up before a hand-off matters.
fn offline_spec() -> MenuSpec {
    MenuSpec::new("sip:it@127.0.0.1:9", "sip:kt@127.0.0.1:9")
}

/// The prompts a caller heard, in order.
fn heard_prompts(segments: &[audio::Segment]) -> Vec<String> {
    audio::heard_prompts(segments, &PROMPT_TONES)
}

fn api(daemon: &Daemon, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let body = body.map(|b| b.to_string());
    let (status, text) = http_request(daemon.http, method, path, body.as_deref())
        .unwrap_or_else(|e| panic!("{method} {path}: {e}; log:\n{}", daemon.log_text()));
    let json = if text.trim().is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    };
    (status, json)
}

fn post(daemon: &Daemon, body: Value) -> (u16, Value) {
    api(daemon, "POST", "/api/v1/announcements", Some(body))
}

/// The prompts of the active announcements, oldest first.
fn listed(daemon: &Daemon) -> Vec<String> {
    let (status, list) = api(daemon, "GET", "/api/v1/announcements", None);
    assert_eq!(status, 200, "{list}");
    list.as_array()
        .expect("a JSON array")
        .iter()
        .map(|a| a["prompt"].as_str().unwrap_or("").to_owned())
        .collect()
}

/// A call that listens until the menu prompt has played whole, then hangs up: what it heard, and its record.
fn call_and_listen(daemon: &Daemon) -> (Vec<String>, Value) {
    let caller = Caller::udp(daemon.sip);
    let (mut call, _answer, t0) = caller.call(daemon, &[PCMU], CALLER_HZ);
    caller.rtp.wait_tone(MENU_HZ, 70, t0, 20 * SECOND);
    let heard = caller.rtp.segments_since(t0);
    assert_eq!(call.bye().status(), Some(200));
    let record = daemon.wait_record(&call.call_id, 5 * SECOND);
    (heard_prompts(&heard), record)
}

fn stop_cleanly(mut daemon: Daemon) {
    let status = daemon.stop(15 * SECOND);
    assert!(status.success(), "knappval exited with {status}");
}

#[test]
fn a_posted_announcement_plays_after_the_greeting_is_recorded_and_deleted() {
    let daemon = Daemon::start(fixture(&offline_spec().yaml()));
    let (status, created) = post(&daemon, json!({"prompt": "email-down"}));
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().expect("an id").to_owned();
    assert!(!id.is_empty() && id.len() <= 16, "a short id: {created}");
    assert_eq!(created["prompt"], "email-down");
    assert_eq!(created["until"], Value::Null);
    assert!(created["created_at"].is_string(), "{created}");

    // What is wrong is said, and nothing is put up.
    let (status, error) = post(&daemon, json!({"prompt": "no-such-prompt"}));
    assert_eq!(status, 422, "{error}");
    assert!(
        error["error"]
            .as_str()
            .is_some_and(|e| e.contains("no-such-prompt")),
        "{error}"
    );
    let (status, error) = post(
        &daemon,
        json!({"prompt": "email-down", "until": "tomorrow"}),
    );
    assert_eq!(status, 422, "{error}");
    let (status, error) = post(
        &daemon,
        json!({"prompt": "email-down", "until": "2020-01-01T00:00:00Z"}),
    );
    assert_eq!(status, 422, "{error}");
    let (status, error) = post(&daemon, json!({"until": "2030-01-01T00:00:00Z"}));
    assert_eq!(status, 400, "{error}");
    assert_eq!(listed(&daemon), ["email-down"]);

    let (heard, record) = call_and_listen(&daemon);
    assert_eq!(heard, ["welcome", "email-down", "main-menu"]);
    assert_eq!(record["announcements"], json!(["email-down"]), "{record:#}");

    let (status, _) = api(
        &daemon,
        "DELETE",
        &format!("/api/v1/announcements/{id}"),
        None,
    );
    assert_eq!(status, 204);
    let (status, error) = api(
        &daemon,
        "DELETE",
        &format!("/api/v1/announcements/{id}"),
        None,
    );
    assert_eq!(status, 404, "{error}");
    assert!(listed(&daemon).is_empty());

    let (heard, record) = call_and_listen(&daemon);
    assert_eq!(heard, ["welcome", "main-menu"]);
    assert_eq!(record["announcements"], json!([]), "{record:#}");
    stop_cleanly(daemon);
}

#[test]
fn announcements_survive_a_restart_and_expire_by_themselves() {
    let daemon = Daemon::start(fixture(&offline_spec().yaml()));
    // Long enough to outlive a restart on a loaded machine, short enough to wait for.
    let until = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(20);
    let (status, soon) = post(
        &daemon,
        json!({"prompt": "raindance", "until": until.to_string()}),
    );
    assert_eq!(status, 201, "{soon}");
    assert!(soon["until"].is_string(), "{soon}");
    let (status, _) = post(&daemon, json!({"prompt": "email-down"}));
    assert_eq!(status, 201);

    // Killed, not stopped: the board is on disk after each change, not only at shutdown.
    let daemon = Daemon::start(daemon.crash());
    assert_eq!(listed(&daemon), ["raindance", "email-down"]);
    let (heard, record) = call_and_listen(&daemon);
    assert_eq!(heard, ["welcome", "raindance", "email-down", "main-menu"]);
    assert_eq!(
        record["announcements"],
        json!(["raindance", "email-down"]),
        "{record:#}"
    );

    let deadline = Instant::now() + 60 * SECOND;
    while listed(&daemon).len() == 2 {
        assert!(
            Instant::now() < deadline,
            "the announcement until {until} is still listed"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    assert_eq!(listed(&daemon), ["email-down"]);
    let (heard, record) = call_and_listen(&daemon);
    assert_eq!(heard, ["welcome", "email-down", "main-menu"]);
    assert_eq!(record["announcements"], json!(["email-down"]), "{record:#}");

    // The expired one stays gone after a restart.
    let mut daemon = daemon;
    let status = daemon.stop(15 * SECOND);
    assert!(status.success());
    let daemon = Daemon::start(daemon.crash());
    assert_eq!(listed(&daemon), ["email-down"]);
    stop_cleanly(daemon);
}

fn announce_cli(daemon: &Daemon, args: &[&str]) -> std::process::Output {
    let http = daemon.http.to_string();
    let mut argv = vec![os("announce"), os("--http"), os(&http)];
    argv.extend(args.iter().map(|a| os(a)));
    run_cli(&argv)
}

/// A time zone where it is not yet 22:00 today, so that `--until 23:00` is ahead whenever the test runs.
fn zone_before_ten_pm() -> jiff::tz::TimeZone {
    ["Europe/Stockholm", "America/New_York", "Asia/Tokyo"]
        .iter()
        .map(|name| jiff::tz::TimeZone::get(name).expect("bundled tzdb"))
        .find(|zone| zone.to_datetime(jiff::Timestamp::now()).hour() < 22)
        .expect("one of three zones 7 to 14 hours apart is before 22:00")
}

#[test]
fn the_announce_command_puts_up_lists_and_takes_down_on_the_running_daemon() {
    let daemon = Daemon::start(fixture(&offline_spec().yaml()));
    let zone = zone_before_ten_pm();
    let zone_name = zone.iana_name().expect("a named zone").to_owned();
    let on = announce_cli(
        &daemon,
        &[
            "on",
            "--prompt",
            "email-down",
            "--until",
            "23:00",
            "--timezone",
            &zone_name,
        ],
    );
    assert!(
        on.status.success(),
        "announce on: {}",
        String::from_utf8_lossy(&on.stderr)
    );
    let (_, list) = api(&daemon, "GET", "/api/v1/announcements", None);
    let expected = zone
        .to_ambiguous_timestamp(
            zone.to_datetime(jiff::Timestamp::now())
                .date()
                .at(23, 0, 0, 0),
        )
        .compatible()
        .expect("23:00 exists");
    let listed_until: jiff::Timestamp = list[0]["until"]
        .as_str()
        .expect("until")
        .parse()
        .expect("RFC 3339");
    assert_eq!(listed_until, expected, "{list}");
    let id = list[0]["id"].as_str().expect("an id").to_owned();
    assert!(
        String::from_utf8_lossy(&on.stdout).contains(&id),
        "announce on prints the new id"
    );

    let shown = announce_cli(&daemon, &["list"]);
    assert!(shown.status.success());
    let text = String::from_utf8_lossy(&shown.stdout);
    assert!(
        text.contains(&id) && text.contains("email-down"),
        "list: {text}"
    );

    let unknown = announce_cli(&daemon, &["on", "--prompt", "no-such-prompt"]);
    assert!(!unknown.status.success());
    assert!(
        String::from_utf8_lossy(&unknown.stderr).contains("no-such-prompt"),
        "{}",
        String::from_utf8_lossy(&unknown.stderr)
    );

    let off = announce_cli(&daemon, &["off", &id]);
    assert!(
        off.status.success(),
        "announce off: {}",
        String::from_utf8_lossy(&off.stderr)
    );
    assert!(listed(&daemon).is_empty());
    let again = announce_cli(&daemon, &["off", &id]);
    assert!(!again.status.success(), "off of an unknown id fails");
    let shown = announce_cli(&daemon, &["list"]);
    assert!(String::from_utf8_lossy(&shown.stdout).contains("no announcements"));
    stop_cleanly(daemon);

    // No daemon there: said plainly.
    let http = daemon_gone_address();
    let output = run_cli(&[os("announce"), os("--http"), os(&http), os("list")]);
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("cannot reach"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A loopback address nobody listens on.
fn daemon_gone_address() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = listener.local_addr().expect("address").to_string();
    drop(listener);
    address
}

fn simulate(fixture: &Fixture, args: &[&str]) -> std::process::Output {
    common::daemon::simulate(fixture, args)
}

/// The test menu with `it` carrying its own announcement.
fn it_announces(spec: &MenuSpec) -> String {
    spec.yaml().replacen(
        "    failure_prompt: busy\n",
        "    failure_prompt: busy\n    announcement: raindance\n",
        1,
    )
}

#[test]
fn a_functions_announcements_play_when_the_caller_chooses_it() {
    let fixture = fixture(&it_announces(&offline_spec()));
    let simulated = simulate(
        &fixture,
        &[
            "--announce",
            "email-down",
            "--digits",
            "3",
            "--format",
            "json",
        ],
    );
    assert!(
        simulated.status.success(),
        "{}",
        String::from_utf8_lossy(&simulated.stderr)
    );
    let simulated: Value = serde_json::from_slice(&simulated.stdout).expect("one JSON object");
    assert_eq!(
        simulated["heard"],
        json!(["welcome", "email-down", "main-menu", "raindance"])
    );

    let daemon = Daemon::start(fixture);
    // Board announcements for one function play after the function's own.
    let (status, created) = post(&daemon, json!({"prompt": "email-down", "function": "it"}));
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["function"], "it");
    let (status, error) = post(&daemon, json!({"prompt": "email-down", "function": "hr"}));
    assert_eq!(status, 422, "{error}");

    let caller = Caller::udp(daemon.sip);
    let (mut call, answer, t0) = caller.call(&daemon, &[PCMU], CALLER_HZ);
    caller.rtp.wait_tone(MENU_HZ, 10, t0, 15 * SECOND);
    caller
        .rtp
        .send_digit('3', event_pt(&answer), Duration::from_millis(100));
    caller.rtp.wait_tone(ANNOUNCE_HZ, 35, t0, 15 * SECOND);
    let heard = heard_prompts(&caller.rtp.segments_since(t0));
    assert_eq!(
        heard[..4],
        ["welcome", "main-menu", "raindance", "email-down"],
        "the function's own announcement, then the board's for it; heard {heard:?}"
    );
    assert_eq!(call.bye().status(), Some(200));
    let record = daemon.wait_record(&call.call_id, 5 * SECOND);
    assert_eq!(
        record["announcements"],
        json!(["raindance", "email-down"]),
        "{record:#}"
    );
    assert_eq!(record["function"], "it", "{record:#}");
    stop_cleanly(daemon);
}

#[test]
fn simulate_refuses_an_announcement_without_its_prompt() {
    let fixture = fixture(&offline_spec().yaml());
    let output = simulate(&fixture, &["--announce", "no-such-prompt", "--digits", "3"]);
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("no-such-prompt.wav"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn a_prompt_and_a_function_added_by_a_reload_can_be_announced_without_a_restart() {
    let old = offline_spec().yaml();
    let fixture = fixture(&old);
    let (menu_path, prompts) = (fixture.menu.clone(), fixture.prompts.clone());
    let daemon = Daemon::start(fixture);
    let (status, error) = post(&daemon, json!({"prompt": "storm"}));
    assert_eq!(status, 422, "not recorded yet: {error}");
    let before = daemon.menu_status();

    // The admin records the announcement and adds a function; no signal: the watcher loads both.
    audio::write_tone_wav(
        &prompts.join("storm.wav"),
        f64::from(CLOSED_HZ),
        0.8,
        8000,
        1,
    )
    .expect("write storm.wav");
    let new = old
        .replacen(
            "functions:\n",
            "functions:\n  personal:\n    name: Personal Direkt\n    target: \"sip:personal@127.0.0.1:9\"\n",
            1,
        )
        .replacen(
            "    \"9\": { menu: more }\n",
            "    \"9\": { menu: more }\n    \"5\": { route: personal }\n",
            1,
        );
    assert!(new.contains("route: personal"), "{new}");
    std::fs::write(&menu_path, &new).expect("write the new menu");
    common::wait_until(
        20 * SECOND,
        || {
            let now = daemon.menu_status();
            now["version"] != before["version"] && now["error"].is_null()
        },
        || format!("the new menu never served: {}", daemon.menu_status()),
    );

    let (status, created) = post(&daemon, json!({"prompt": "storm"}));
    assert_eq!(status, 201, "{created}");
    let (status, created) = post(
        &daemon,
        json!({"prompt": "email-down", "function": "personal"}),
    );
    assert_eq!(status, 201, "{created}");
    assert_eq!(listed(&daemon), ["storm", "email-down"]);
    // The dashboard's names follow the reload too.
    let (status, names) = daemon.get("/api/v1/functions");
    assert_eq!(status, 200, "{names}");
    let names: serde_json::Value = serde_json::from_str(&names).expect("JSON");
    assert!(
        names["functions"]
            .as_array()
            .is_some_and(|f| f.contains(&json!({"id": "personal", "name": "Personal Direkt"}))),
        "{names}"
    );

    // A new caller hears it, found by its tone in the RTP they receive.
    let caller = Caller::udp(daemon.sip);
    let (mut call, _answer, t0) = caller.call(&daemon, &[PCMU], CALLER_HZ);
    caller.rtp.wait_tone(MENU_HZ, 70, t0, 20 * SECOND);
    let mut tones = PROMPT_TONES.to_vec();
    tones.push(("storm", CLOSED_HZ));
    let heard = audio::heard_prompts(&caller.rtp.segments_since(t0), &tones);
    assert_eq!(heard, ["welcome", "storm", "main-menu"]);
    assert_eq!(call.bye().status(), Some(200));
    let record = daemon.wait_record(&call.call_id, 5 * SECOND);
    assert_eq!(record["announcements"], json!(["storm"]), "{record:#}");
    stop_cleanly(daemon);
}
