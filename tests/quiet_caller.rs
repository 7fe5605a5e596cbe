//! Quiet callers and dead dialogs, through the daemon: a caller whose phone sends no RTP is not hung up while
//! the menu runs or while the function talks to them; hold and RTCP keep a call up; a bridge where both sides
//! have gone silent is ended; session timers (RFC 4028) are answered, refreshed and enforced.
//!
//! Most tests run the daemon with `--media-timeout 5s`, so that surviving 4-6 timeouts takes seconds, not
//! minutes. One test holds a call for the literal 2 minutes with the default settings.

mod common;

use common::audio::{CALLER_HZ, FUNCTION_HZ};
use common::sdp::{self, PCMU};
use common::sipmsg::SipMessage;
use common::{
    Call, Caller, Daemon, Fixture, FunctionEndpoint, IncomingCall, MenuSpec, SECOND, Sound,
};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// A daemon whose root menu hands a caller who presses nothing to `it` (bridge) after its timeouts.
fn daemon(extra: &[&str], fallback: &'static str) -> (Daemon, FunctionEndpoint) {
    let it = FunctionEndpoint::new(&[PCMU]);
    let kt = FunctionEndpoint::new(&[PCMU]);
    let mut spec = MenuSpec::new(&it.uri("it"), &kt.uri("kt"));
    spec.fallback = fallback;
    spec.it_ring_timeout = "10s";
    let fixture = Fixture::new();
    fixture.write_menu(&spec.yaml());
    (Daemon::start_with(fixture, extra), it)
}

fn quick_timeout_daemon() -> (Daemon, FunctionEndpoint) {
    daemon(&["--media-timeout", "5s"], "{ route: it }")
}

/// Calls the daemon and never sends a single RTP packet; returns the call and its 200 OK.
fn silent_call(caller: &Caller, daemon: &Daemon, extra: &[String]) -> (Call, SipMessage) {
    let mut call = caller.sip.invite(
        &daemon.uri(),
        &caller.caller_uri(),
        Some(&caller.offer(&[PCMU])),
        extra,
    );
    let response = call.start(10 * SECOND);
    assert_eq!(response.status(), Some(200), "{}", response.summary());
    let answer = sdp::parse(&response.body_str()).expect("SDP in the 200");
    caller.rtp.set_remote(answer.media_addr());
    (call, response)
}

/// Where the daemon receives the caller's RTP, from its answer.
fn media_of(ok: &SipMessage) -> SocketAddr {
    sdp::parse(&ok.body_str())
        .expect("SDP in the 200")
        .media_addr()
}

/// The menu's fallback reaches the function; it answers and talks (`Some(tone)`) or stays silent (`None`).
fn function_answers(it: &FunctionEndpoint, tone: Option<u32>) -> IncomingCall {
    // A silent caller sits through greeting, prompts and timeouts first: well past a 5 s media timeout.
    let mut incoming = it.expect_call(60 * SECOND);
    it.answer(&mut incoming, tone.unwrap_or(FUNCTION_HZ));
    if tone.is_none() {
        it.rtp.play(Sound::Nothing);
    }
    incoming
}

fn bye_within(call: &Call, timeout: Duration) -> Option<SipMessage> {
    let call_id = call.call_id.clone();
    let bye = call.peer().take(timeout, |m| {
        m.is_request("BYE") && m.call_id() == Some(call_id.as_str())
    })?;
    call.respond(&bye, 200, "OK");
    Some(bye.msg)
}

fn assert_no_bye(call: &Call, during: Duration, context: &str) {
    if let Some(bye) = bye_within(call, during) {
        panic!("{context}: the daemon hung up: {}", bye.summary());
    }
}

/// Both sides silent: the daemon ends the bridge with BYE to each and says why in the record.
fn assert_dead_bridge_ended(daemon: &Daemon, call: &Call, function: &IncomingCall, context: &str) {
    assert!(
        bye_within(call, 30 * SECOND).is_some(),
        "{context}: a dead bridge must end; inbox {}",
        call.peer().inbox_summary()
    );
    function.call.expect_bye(10 * SECOND);
    assert_eq!(
        end_reason(daemon, &call.call_id),
        "media stopped on both legs"
    );
}

fn end_reason(daemon: &Daemon, call_id: &str) -> String {
    let record = daemon.wait_record(call_id, 10 * SECOND);
    record["end_reason"].as_str().unwrap_or_default().to_owned()
}

/// An RTCP receiver report (RFC 3550 §6.4.2) without report blocks: 8 bytes, RC 0.
fn rtcp_receiver_report() -> [u8; 8] {
    [0x80, 201, 0, 1, 0x12, 0x34, 0x56, 0x78]
}

#[test]
fn a_caller_who_sends_no_rtp_is_bridged_by_the_fallback_and_kept_while_the_function_talks() {
    let (daemon, it) = quick_timeout_daemon();
    let caller = Caller::udp(daemon.sip);
    let (mut call, _media) = silent_call(&caller, &daemon, &[]);
    let incoming = function_answers(&it, Some(FUNCTION_HZ));
    let bridged = Instant::now();

    // Four media timeouts of a caller who only listens.
    assert_no_bye(&call, 20 * SECOND, "caller silent, function talking");
    assert!(
        incoming
            .call
            .peer()
            .take(Duration::ZERO, |m| m.is_request("BYE"))
            .is_none(),
        "the function was hung up"
    );
    caller
        .rtp
        .wait_tone(FUNCTION_HZ, 25, bridged + 15 * SECOND, 10 * SECOND);

    assert_eq!(call.bye().status(), Some(200));
    incoming.call.expect_bye(10 * SECOND);
    let record = daemon.wait_record(&call.call_id, 10 * SECOND);
    assert_eq!(record["outcome"], "transferred", "{record:#}");
    assert_eq!(record["end_reason"], "caller hung up", "{record:#}");
}

#[test]
fn a_caller_who_falls_silent_after_choosing_stays_bridged_while_the_function_talks() {
    let (daemon, it) = quick_timeout_daemon();
    let caller = Caller::udp(daemon.sip);
    let (mut call, _media) = silent_call(&caller, &daemon, &[]);
    // The only RTP this caller ever sends: the key press (RFC 4733) that routes to `it`.
    caller.rtp.send_digit('3', 101, Duration::from_millis(100));
    let incoming = function_answers(&it, Some(FUNCTION_HZ));
    assert_eq!(
        incoming.header("X-Knappval-Digits").map(str::trim),
        Some("3")
    );
    assert_no_bye(
        &call,
        20 * SECOND,
        "caller silent since the digit, function talking",
    );
    assert_eq!(call.bye().status(), Some(200));
    incoming.call.expect_bye(10 * SECOND);
    assert_eq!(end_reason(&daemon, &call.call_id), "caller hung up");
}

#[test]
fn a_bridge_where_both_sides_are_silent_is_ended_on_both_legs() {
    let (daemon, it) = quick_timeout_daemon();
    let caller = Caller::udp(daemon.sip);
    let (call, _media) = silent_call(&caller, &daemon, &[]);
    let incoming = function_answers(&it, None);

    assert_dead_bridge_ended(&daemon, &call, &incoming, "both sides silent");
}

#[test]
fn hold_in_either_direction_never_times_out_and_resuming_rearms_the_timeout() {
    let (daemon, it) = quick_timeout_daemon();
    let caller = Caller::udp(daemon.sip);
    let (mut call, _media) = silent_call(&caller, &daemon, &[]);
    let incoming = function_answers(&it, None);

    // The caller puts the call on hold (music on hold that sends nothing), then only listens (recvonly).
    for direction in ["sendonly", "recvonly", "inactive"] {
        let hold = sdp::build(caller.rtp.local, &[PCMU], Some(101), direction);
        assert_eq!(call.reinvite(&hold).status(), Some(200));
        assert_no_bye(
            &call,
            8 * SECOND,
            &format!("{direction} hold with both sides silent"),
        );
    }
    // Off hold with both sides still silent: now the bridge is dead.
    let resume = sdp::build(caller.rtp.local, &[PCMU], Some(101), "sendrecv");
    assert_eq!(call.reinvite(&resume).status(), Some(200));
    assert_dead_bridge_ended(&daemon, &call, &incoming, "off hold");
}

#[test]
fn rtcp_on_either_port_or_requests_in_the_dialog_alone_keep_a_silent_bridge_up() {
    let (daemon, it) = quick_timeout_daemon();
    let caller = Caller::udp(daemon.sip);
    let (mut call, ok) = silent_call(&caller, &daemon, &[]);
    let media = media_of(&ok);
    let incoming = function_answers(&it, None);

    let rtcp_port = SocketAddr::new(media.ip(), media.port() + 1);
    // RTCP to RTP port + 1 (RFC 3550), then multiplexed on the RTP port (RFC 5761); 8 s each, 5 s timeout.
    for target in [rtcp_port, media] {
        let until = Instant::now() + 8 * SECOND;
        while Instant::now() < until {
            caller.rtp.send_raw(target, &rtcp_receiver_report());
            assert_no_bye(&call, SECOND, &format!("RTCP to {target}"));
        }
    }
    // Then only OPTIONS in the caller's dialog, every 2 s for 8 s.
    let until = Instant::now() + 8 * SECOND;
    while Instant::now() < until {
        let options = call.request("OPTIONS", &[], None, 10 * SECOND);
        assert_eq!(options.status(), Some(200), "{}", options.summary());
        assert_no_bye(&call, 2 * SECOND, "OPTIONS in the dialog");
    }
    assert_dead_bridge_ended(&daemon, &call, &incoming, "RTCP and requests stopped");
}

#[test]
fn a_session_interval_below_90_s_is_refused_422_with_min_se() {
    let (daemon, _it) = quick_timeout_daemon();
    let caller = Caller::udp(daemon.sip);
    let mut call = caller.sip.invite(
        &daemon.uri(),
        &caller.caller_uri(),
        Some(&caller.offer(&[PCMU])),
        &["Session-Expires: 30".into(), "Supported: timer".into()],
    );
    let response = call.start(10 * SECOND);
    assert_eq!(response.status(), Some(422), "{}", response.summary());
    assert_eq!(response.header("min-se").map(str::trim), Some("90"));

    // The retry with our minimum is answered, with the interval and who refreshes, and Require: timer.
    let (mut call, _media) = silent_call(
        &caller,
        &daemon,
        &[
            "Session-Expires: 90".into(),
            "Min-SE: 90".into(),
            "Supported: timer".into(),
        ],
    );
    assert_eq!(call.bye().status(), Some(200));
}

/// A caller whose INVITE asks for a session timer, talking (so media never ends the call).
fn timed_call(caller: &Caller, daemon: &Daemon, extra: &[String]) -> (Call, SipMessage) {
    let (call, ok) = silent_call(caller, daemon, extra);
    caller.rtp.play(Sound::Tone {
        freq: CALLER_HZ,
        pt: PCMU,
    });
    (call, ok)
}

#[test]
fn a_refreshed_session_outlives_its_interval_and_an_unrefreshed_one_is_ended_with_bye() {
    // Bridged, so the bridge's loop is the one that watches the timer.
    let (daemon, it) = daemon(&[], "{ route: it }");
    let caller = Caller::udp(daemon.sip);
    let (mut call, ok) = timed_call(
        &caller,
        &daemon,
        &[
            "Session-Expires: 90;refresher=uac".into(),
            "Supported: timer".into(),
        ],
    );
    let answered = Instant::now();
    assert_eq!(
        ok.header("session-expires").map(str::trim),
        Some("90;refresher=uac"),
        "{}",
        ok.summary()
    );
    assert_eq!(ok.header("require").map(str::trim), Some("timer"));
    let incoming = function_answers(&it, Some(FUNCTION_HZ));

    // Unrefreshed, the session would end at 60 s (90 s less a third). We refresh at 40 s with an UPDATE.
    assert_no_bye(
        &call,
        (answered + 40 * SECOND).saturating_duration_since(Instant::now()),
        "before the refresh",
    );
    let refresh = call.request(
        "UPDATE",
        &[
            "Session-Expires: 90;refresher=uac".into(),
            "Supported: timer".into(),
        ],
        None,
        10 * SECOND,
    );
    let refreshed = Instant::now();
    assert_eq!(refresh.status(), Some(200), "{}", refresh.summary());
    assert!(
        refresh.body_str().trim().is_empty(),
        "a refresh UPDATE is answered without SDP"
    );
    assert_eq!(
        refresh.header("session-expires").map(str::trim),
        Some("90;refresher=uac")
    );
    // Past the first interval's end: still up.
    assert_no_bye(&call, 50 * SECOND, "after a refresh");
    // No second refresh: BYE 60 s after the first, to both legs.
    let bye = bye_within(&call, 40 * SECOND).unwrap_or_else(|| {
        panic!(
            "no BYE when the session expired; inbox {}",
            call.peer().inbox_summary()
        )
    });
    assert!(
        refreshed.elapsed() >= 55 * SECOND,
        "BYE {:?} after the refresh: {}",
        refreshed.elapsed(),
        bye.summary()
    );
    incoming.call.expect_bye(10 * SECOND);
    assert_eq!(end_reason(&daemon, &call.call_id), "session timer expired");
}

#[test]
fn a_session_timer_in_the_menu_expires_and_one_we_refresh_stays_up() {
    // The menu waits two minutes for a digit: within this test only the session timer can end these calls.
    let it = FunctionEndpoint::new(&[PCMU]);
    let mut spec = MenuSpec::new(&it.uri("it"), &it.uri("kt"));
    spec.menu_timeout = "120s";
    let fixture = Fixture::new();
    fixture.write_menu(&spec.yaml());
    let daemon = Daemon::start(fixture);
    let unrefreshed_caller = Caller::udp(daemon.sip);
    let by_update_caller = Caller::udp(daemon.sip);
    let by_invite_caller = Caller::udp(daemon.sip);
    let ours = |allow: &str| {
        vec![
            "Session-Expires: 90;refresher=uas".to_string(),
            "Supported: timer".to_string(),
            format!("Allow: {allow}"),
        ]
    };
    let (unrefreshed, _) = timed_call(
        &unrefreshed_caller,
        &daemon,
        &["Session-Expires: 90".into(), "Supported: timer".into()],
    );
    let (mut by_update, ok) = timed_call(&by_update_caller, &daemon, &ours("UPDATE"));
    assert_eq!(
        ok.header("session-expires").map(str::trim),
        Some("90;refresher=uas")
    );
    let (mut by_invite, _) = timed_call(&by_invite_caller, &daemon, &ours("PRACK"));

    // We refresh at half the interval (45 s): an UPDATE where the caller allows it, else a re-INVITE with
    // our SDP unchanged.
    let update = by_update.expect_request("UPDATE", 70 * SECOND);
    assert_eq!(
        update.msg.header("session-expires").map(str::trim),
        Some("90;refresher=uas")
    );
    by_update.peer().respond(
        &update,
        200,
        "OK",
        Some(&by_update.local_tag),
        &[
            "Session-Expires: 90;refresher=uas".into(),
            "Require: timer".into(),
        ],
        None,
    );
    let reinvite = by_invite.expect_request("INVITE", 20 * SECOND);
    assert!(
        sdp::parse(&reinvite.msg.body_str()).is_some(),
        "the refresh re-INVITE carries our SDP: {}",
        reinvite.msg.body_str()
    );
    let answer = by_invite_caller.offer(&[PCMU]);
    by_invite.peer().respond(
        &reinvite,
        200,
        "OK",
        Some(&by_invite.local_tag),
        &[
            "Session-Expires: 90;refresher=uas".into(),
            format!("Contact: {}", by_invite.peer().contact("0701234567")),
        ],
        Some(("application/sdp", &answer)),
    );
    by_invite.expect_request("ACK", 10 * SECOND);

    // The caller that did not refresh (refresher=uac by default) is ended at 60 s; the refreshed ones live on.
    assert!(
        bye_within(&unrefreshed, 40 * SECOND).is_some(),
        "no BYE for the unrefreshed session; inbox {}",
        unrefreshed.peer().inbox_summary()
    );
    assert_eq!(
        end_reason(&daemon, &unrefreshed.call_id),
        "session timer expired"
    );
    assert_no_bye(&by_update, 10 * SECOND, "refreshed by our UPDATE");
    assert_no_bye(&by_invite, Duration::ZERO, "refreshed by our re-INVITE");
    assert_eq!(by_update.bye().status(), Some(200));
    assert_eq!(by_invite.bye().status(), Some(200));
}

/// LONG (about 2.5 minutes): the issue's own test, with the default settings (`--media-timeout 60s`).
#[test]
fn long_a_silent_caller_stays_bridged_to_a_talking_function_for_two_minutes_with_default_settings()
{
    let (daemon, it) = daemon(&[], "{ route: it }");
    let caller = Caller::udp(daemon.sip);
    let (mut call, _media) = silent_call(&caller, &daemon, &[]);
    let incoming = function_answers(&it, Some(FUNCTION_HZ));
    let bridged = Instant::now();
    assert_no_bye(&call, 120 * SECOND, "two minutes bridged");
    caller
        .rtp
        .wait_tone(FUNCTION_HZ, 25, bridged + 115 * SECOND, 10 * SECOND);
    assert_eq!(call.bye().status(), Some(200));
    incoming.call.expect_bye(10 * SECOND);
    assert_eq!(end_reason(&daemon, &call.call_id), "caller hung up");
}
