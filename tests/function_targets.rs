//! Function targets that are dead, slow or coming and going, through the daemon: a target with nothing
//! listening fails within seconds with the true reason in the log and the record, a ring timeout above Timer B's
//! 32 s holds once the target rings, and the OPTIONS probes mark a silent target down in `/healthz` (its calls go
//! straight to the failure path) and up again when it answers.

mod common;

use common::audio::{BUSY_HZ, CALLER_HZ, MENU_HZ};
use common::sdp::PCMU;
use common::{Caller, Daemon, Fixture, FunctionEndpoint, MenuSpec, SECOND, event_pt, wait_until};
use serde_json::Value;
use std::net::UdpSocket;
use std::time::{Duration, Instant};

const DIGIT: Duration = Duration::from_millis(100);

fn daemon_with(spec: &MenuSpec, extra: &[&str]) -> Daemon {
    let fixture = Fixture::new();
    fixture.write_menu(&spec.yaml());
    Daemon::start_with(fixture, extra)
}

/// A caller who waits for the menu and presses `digit`; returns when the digit went.
fn caller_choosing(daemon: &Daemon, digit: char) -> (Caller, common::Call, Instant) {
    let caller = Caller::udp(daemon.sip);
    let (call, answer, t0) = caller.call(daemon, &[PCMU], CALLER_HZ);
    caller.rtp.wait_tone(MENU_HZ, 10, t0, 15 * SECOND);
    caller.rtp.send_digit(digit, event_pt(&answer), DIGIT);
    (caller, call, Instant::now())
}

/// A loopback port with nothing listening on it (bound once, then let go).
fn dead_port() -> u16 {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind a probe socket");
    socket.local_addr().expect("its address").port()
}

fn function_state(daemon: &Daemon, function: &str) -> Value {
    let (status, body) = daemon.get("/healthz");
    assert_eq!(status, 200, "/healthz: {body}");
    let health: Value = serde_json::from_str(&body).expect("/healthz is JSON");
    health["functions"][function].clone()
}

fn wait_function_state(daemon: &Daemon, function: &str, state: &str, timeout: Duration) {
    wait_until(
        timeout,
        || function_state(daemon, function)["state"] == state,
        || {
            format!(
                "{function} not {state}: {}",
                function_state(daemon, function)
            )
        },
    );
}

#[test]
fn a_target_with_nothing_listening_fails_within_seconds_with_the_true_reason() {
    let mut spec = MenuSpec::new(
        &format!("sip:it@127.0.0.1:{}", dead_port()),
        "sip:kt@127.0.0.1:9",
    );
    spec.it_ring_timeout = "30s";
    spec.it_on_failure = "{ hangup: true }";
    // Probes off: this is about the call's own INVITE finding nobody there.
    let daemon = daemon_with(&spec, &["--probe-interval", "0s"]);
    let (caller, call, pressed) = caller_choosing(&daemon, '3');

    // The failure prompt, then goodbye: within seconds, not after Timer B's 32 s or the 30 s ring timeout.
    caller.rtp.wait_tone(BUSY_HZ, 15, pressed, 20 * SECOND);
    let waited = pressed.elapsed();
    assert!(
        waited < Duration::from_secs(20),
        "the failure prompt came {waited:?} after the choice"
    );
    call.expect_bye(15 * SECOND);
    let record = daemon.wait_record(&call.call_id, 5 * SECOND);
    assert_eq!(record["outcome"], "failed", "{record:#}");
    let reason = record["end_reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("it: no response from target within 4s"),
        "end_reason says why: {record:#}"
    );
    let log = daemon.log_text();
    assert!(
        log.contains("no response from target within 4s"),
        "the log says why"
    );
    assert!(
        !log.contains("did not answer within"),
        "not taken for a ring-out"
    );
}

#[test]
fn a_ring_timeout_above_32s_holds_while_the_target_rings() {
    let it = FunctionEndpoint::new(&[PCMU]);
    let mut spec = MenuSpec::new(&it.uri("it"), "sip:kt@127.0.0.1:9");
    spec.it_ring_timeout = "40s";
    spec.it_on_failure = "{ hangup: true }";
    let daemon = daemon_with(&spec, &[]);
    let (_caller, call, _) = caller_choosing(&daemon, '3');

    let incoming = it.expect_call(10 * SECOND);
    incoming.send_provisional(180, "Ringing");
    let ringing = Instant::now();
    let cancel = it
        .sip
        .expect_request("CANCEL", Some(&incoming.call.call_id), 60 * SECOND);
    let rang = ringing.elapsed();
    assert!(
        rang >= Duration::from_secs(38),
        "CANCEL after {rang:?} of ringing: the 40 s ring timeout was cut short"
    );
    it.sip.respond(&cancel, 200, "OK", None, &[], None);
    assert!(incoming.reject(487, "Request Terminated", 10 * SECOND));
    call.expect_bye(15 * SECOND);
    let record = daemon.wait_record(&call.call_id, 5 * SECOND);
    let reason = record["end_reason"].as_str().unwrap_or_default();
    assert!(reason.contains("it: rang out after 40s"), "{record:#}");
}

#[test]
fn probes_take_a_silent_target_down_and_back_up_and_calls_skip_it_while_down() {
    let it = FunctionEndpoint::new(&[PCMU]);
    let mut spec = MenuSpec::new(&it.uri("it"), "sip:kt@127.0.0.1:9");
    spec.it_on_failure = "{ hangup: true }";
    let daemon = daemon_with(&spec, &["--probe-interval", "1s"]);

    wait_function_state(&daemon, "it", "up", 15 * SECOND);
    let up = function_state(&daemon, "it");
    assert_eq!(up["target"], it.uri("it"), "{up}");
    assert!(up["last_probe"].is_string(), "{up}");

    it.sip.stop_auto_answer("OPTIONS");
    wait_function_state(&daemon, "it", "down", 30 * SECOND);
    let (caller, call, pressed) = caller_choosing(&daemon, '3');
    caller.rtp.wait_tone(BUSY_HZ, 15, pressed, 10 * SECOND);
    call.expect_bye(15 * SECOND);
    assert!(
        it.sip
            .take(Duration::ZERO, |m| m.is_request("INVITE"))
            .is_none(),
        "a target that is down gets no INVITE"
    );
    let record = daemon.wait_record(&call.call_id, 5 * SECOND);
    assert_eq!(record["outcome"], "failed", "{record:#}");
    let reason = record["end_reason"].as_str().unwrap_or_default();
    assert!(reason.contains("it: target down"), "{record:#}");

    let probe = it
        .sip
        .take(Duration::ZERO, |m| m.is_request("OPTIONS"))
        .expect("the unanswered probes wait in the inbox");
    let call_id = probe.msg.call_id().unwrap_or_default();
    assert!(
        call_id.ends_with("@127.0.0.1"),
        "the probe's Call-ID {call_id} names knappval's address"
    );

    it.sip.auto_answer("OPTIONS");
    // Probes that went unanswered meanwhile wait in the inbox; the next one is answered.
    wait_function_state(&daemon, "it", "up", 30 * SECOND);
    let (_caller, _call, _) = caller_choosing(&daemon, '3');
    let incoming = it.expect_call(10 * SECOND);
    assert_eq!(
        incoming.header("X-Knappval-Function").map(str::trim),
        Some("it")
    );
}
