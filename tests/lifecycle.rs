//! The daemon's promises around a call's edges: the 200 OK is retransmitted until the caller ACKs it (RFC 3261
//! §13.3.1.4), and a call that was up when the process died is closed as `failed` when the daemon starts again.

mod common;

use common::audio::{CALLER_HZ, MENU_HZ};
use common::sdp::PCMU;
use common::{Caller, Daemon, FunctionEndpoint, SECOND};

fn daemon_with(extra: &[&str]) -> (Daemon, FunctionEndpoint, FunctionEndpoint) {
    common::standard_daemon(extra)
}

fn daemon() -> (Daemon, FunctionEndpoint, FunctionEndpoint) {
    daemon_with(&[])
}

#[test]
fn two_hundred_ok_is_retransmitted_until_the_ack() {
    let (daemon, _it, _kt) = daemon();
    let caller = Caller::udp(daemon.sip);
    let mut call = caller.sip.invite(
        &daemon.uri(),
        &caller.caller_uri(),
        Some(&caller.offer(&[PCMU])),
        &[],
    );
    call.send_invite();
    let is_200 = |m: &common::sipmsg::SipMessage| {
        m.status() == Some(200) && m.cseq().is_some_and(|(_, method)| method == "INVITE")
    };
    // Without an ACK the same 200 must come again (Timer G: after T1, then 2*T1, ...).
    let first = caller.sip.take(10 * SECOND, is_200);
    assert!(
        first.is_some(),
        "no 200 OK; inbox {}",
        caller.sip.inbox_summary()
    );
    let again = caller.sip.take(5 * SECOND, is_200);
    assert!(
        again.is_some(),
        "the 200 OK was not retransmitted while the ACK was missing; inbox {}",
        caller.sip.inbox_summary()
    );
    // The next copy gets our ACK; after that the retransmissions stop (one may already be on its way).
    let answered = call.await_final(10 * SECOND);
    assert_eq!(answered.status(), Some(200));
    let mut late = 0;
    while caller.sip.take(3 * SECOND, is_200).is_some() {
        late += 1;
        assert!(late <= 1, "the 200 OK kept coming after the ACK");
    }
    assert_eq!(call.bye().status(), Some(200));
    let record = daemon.wait_record(&call.call_id, 5 * SECOND);
    assert_eq!(record["outcome"], "abandoned", "{record:#}");
}

#[test]
fn a_call_up_when_the_daemon_was_killed_is_closed_as_failed_at_the_next_start() {
    let (daemon, _it, _kt) = daemon();
    let caller = Caller::udp(daemon.sip);
    let (call, _answer, t0) = caller.call(&daemon, &[PCMU], CALLER_HZ);
    caller.rtp.wait_tone(MENU_HZ, 10, t0, 15 * SECOND);
    let open = daemon
        .contacts()
        .into_iter()
        .find(|r| r["call_id"] == call.call_id.as_str())
        .expect("the record is written when the call starts");
    assert!(open["outcome"].is_null(), "still in progress: {open:#}");

    let fixture = daemon.crash();
    let restarted = Daemon::start(fixture);
    let record = restarted.wait_record(&call.call_id, 5 * SECOND);
    assert_eq!(record["outcome"], "failed", "{record:#}");
    assert!(!record["ended_at"].is_null(), "{record:#}");
    assert!(
        record["end_reason"]
            .as_str()
            .is_some_and(|r| r.contains("stopped")),
        "{record:#}"
    );
}

#[test]
fn a_record_routed_call_keeps_its_route_set_for_our_bye() {
    let (daemon, _it, _kt) = daemon();
    let caller = Caller::udp(daemon.sip);
    caller.sip.auto_answer("BYE");
    // A proxy in the path (here at the caller's own address, so that what it receives is visible).
    let proxy = format!("<sip:proxy@{};lr>", caller.sip.local());
    let mut call = caller.sip.invite(
        &daemon.uri(),
        &caller.caller_uri(),
        Some(&caller.offer(&[PCMU])),
        &[format!("Record-Route: {proxy}")],
    );
    let answer = call.start(10 * SECOND);
    assert_eq!(answer.status(), Some(200));
    assert!(
        answer
            .header("record-route")
            .is_some_and(|rr| rr.contains("sip:proxy@")),
        "the 200 echoes the Record-Route (RFC 3261 §12.1.1): {}",
        answer.summary()
    );
    // No digit: the menu's fallback hangs up, and our BYE must follow the route set.
    let bye = call.expect_bye(20 * SECOND);
    assert!(
        bye.msg
            .header("route")
            .is_some_and(|r| r.contains("sip:proxy@")),
        "in-dialog requests carry the route set as Route: {:?}",
        bye.msg.header("route")
    );
    let record = daemon.wait_record(&call.call_id, 5 * SECOND);
    assert_eq!(record["outcome"], "timeout", "{record:#}");
}

#[test]
fn with_an_answer_delay_the_call_rings_and_a_cancel_gets_487() {
    let (daemon, _it, _kt) = daemon_with(&["--answer-delay", "3s"]);
    let caller = Caller::udp(daemon.sip);
    let mut call = caller.sip.invite(
        &daemon.uri(),
        &caller.caller_uri(),
        Some(&caller.offer(&[PCMU])),
        &[],
    );
    call.send_invite();
    let ringing = caller.sip.take(5 * SECOND, |m| m.status() == Some(180));
    assert!(
        ringing.is_some(),
        "180 Ringing first; inbox {}",
        caller.sip.inbox_summary()
    );
    caller.sip.send_raw(call.cancel_text().as_bytes());
    let final_response = call.await_final(5 * SECOND);
    assert_eq!(
        final_response.status(),
        Some(487),
        "{}",
        final_response.summary()
    );
    let cancelled = caller.sip.take(5 * SECOND, |m| {
        m.status().is_some() && m.cseq().is_some_and(|(_, method)| method == "CANCEL")
    });
    assert_eq!(
        cancelled.and_then(|r| r.msg.status()),
        Some(200),
        "CANCEL answered 200"
    );
    let record = daemon.wait_record(&call.call_id, 5 * SECOND);
    assert_eq!(record["outcome"], "abandoned", "{record:#}");
    assert!(record["answered_at"].is_null(), "{record:#}");
}
