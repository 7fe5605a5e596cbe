//! The daemon end to end over loopback: real callers and function phones on UDP/TCP, prompts judged by their
//! tones, digits by RFC 4733 and SIP INFO, hand-off by bridge and REFER, and the contact record of each call.
//! Every test runs its own daemon with its own temp dir and ports.

mod common;

use common::audio::{
    self, BUSY_HZ, CALLER_HZ, FUNCTION_HZ, GREETING_HZ, INVALID_HZ, MENU_HZ, MORE_HZ,
};
use common::daemon::{os, path_arg, run_cli};
use common::sdp::{self, G729, PCMA, PCMU};
use common::transferee;
use common::{
    Caller, Daemon, Fixture, FunctionEndpoint, MenuSpec, SECOND, assert_record, event_pt,
    wait_until,
};
use std::time::{Duration, Instant};

const DIGIT: Duration = Duration::from_millis(100);

/// The daemon with the standard menu: `it` bridges to one endpoint, `kundtjanst` goes to another.
fn setup(customize: impl FnOnce(&mut MenuSpec)) -> (Daemon, FunctionEndpoint, FunctionEndpoint) {
    setup_with(&[PCMU, PCMA], customize)
}

fn setup_with(
    it_codecs: &[u8],
    customize: impl FnOnce(&mut MenuSpec),
) -> (Daemon, FunctionEndpoint, FunctionEndpoint) {
    let it = FunctionEndpoint::new(it_codecs);
    let kt = FunctionEndpoint::new(&[PCMU, PCMA]);
    let mut spec = MenuSpec::new(&it.uri("it"), &kt.uri("kt"));
    customize(&mut spec);
    let fixture = Fixture::new();
    fixture.write_menu(&spec.yaml());
    (Daemon::start(fixture), it, kt)
}

fn assert_header(incoming: &common::IncomingCall, name: &str, expected: &str) {
    assert_eq!(
        incoming.header(name).map(str::trim),
        Some(expected),
        "{name} in the bridged INVITE; headers: {:?}",
        incoming.invite.msg.headers
    );
}

/// The transferee's last NOTIFY of a REFER: the referred call was answered. Returns the daemon's response.
fn final_notify(call: &mut common::Call, timeout: Duration) -> common::sip::Received {
    call.request_received(
        "NOTIFY",
        &[
            "Event: refer".into(),
            "Subscription-State: terminated;reason=noresource".into(),
        ],
        Some(("message/sipfrag;version=2.0", "SIP/2.0 200 OK\r\n")),
        timeout,
    )
}

/// A caller (PCMU) who waits for the menu and presses `digit`.
fn caller_choosing(daemon: &Daemon, digit: char) -> (Caller, common::Call) {
    let caller = Caller::udp(daemon.sip);
    let (call, answer, t0) = caller.call(daemon, &[PCMU], CALLER_HZ);
    caller.rtp.wait_tone(MENU_HZ, 10, t0, 15 * SECOND);
    caller.rtp.send_digit(digit, event_pt(&answer), DIGIT);
    (caller, call)
}

/// The caller, bridged to IT after pressing 3, hangs up: IT gets the BYE, and the record says transferred.
fn caller_hangs_up_on_it(daemon: Daemon, call: &mut common::Call, incoming: &common::IncomingCall) {
    assert_eq!(call.bye().status(), Some(200));
    incoming.call.expect_bye(10 * SECOND);
    let record = daemon.wait_record(&call.call_id, 5 * SECOND);
    assert_record(&record, "transferred", Some("it"), "3", &["root"]);
    stop_cleanly(daemon);
}

fn stop_cleanly(mut daemon: Daemon) {
    let status = daemon.stop(15 * SECOND);
    assert!(status.success(), "knappval exited with {status}");
}

#[test]
fn caller_hears_greeting_and_menu_then_3_bridges_to_it_and_function_hangs_up() {
    let (daemon, it, _kt) = setup(|_| {});
    let caller = Caller::udp(daemon.sip);
    let (call, answer, t0) = caller.call(&daemon, &[PCMU, PCMA], CALLER_HZ);

    caller.rtp.wait_tone(MENU_HZ, 60, t0, 15 * SECOND);
    let heard = caller.rtp.segments_since(t0);
    let greeting = audio::find_run(&heard, GREETING_HZ, 15, 0)
        .unwrap_or_else(|| panic!("no greeting; heard {}", audio::describe(&heard)));
    let menu = audio::find_run(&heard, MENU_HZ, 60, greeting + 1).unwrap_or_else(|| {
        panic!(
            "no menu after the greeting; heard {}",
            audio::describe(&heard)
        )
    });
    assert!(
        (20..=40).contains(&heard[greeting].frames),
        "the 0.6 s greeting lasted {} ms; heard {}",
        heard[greeting].ms(),
        audio::describe(&heard)
    );
    assert!(menu > greeting);

    caller.rtp.send_digit('3', event_pt(&answer), DIGIT);
    let mut incoming = it.expect_call(10 * SECOND);
    assert_header(&incoming, "X-Knappval-Function", "it");
    assert_header(&incoming, "X-Knappval-Digits", "3");
    assert_header(&incoming, "X-Knappval-Path", "root");
    let from = incoming.header("from").unwrap_or_default();
    assert!(
        from.contains(&caller.number),
        "the caller's number in From: {from}"
    );
    it.answer(&mut incoming, FUNCTION_HZ);
    let bridged = Instant::now();

    caller.rtp.wait_tone(FUNCTION_HZ, 25, bridged, 10 * SECOND);
    it.rtp.wait_tone(CALLER_HZ, 25, bridged, 10 * SECOND);

    assert_eq!(incoming.call.bye().status(), Some(200));
    call.expect_bye(10 * SECOND);

    let record = daemon.wait_record(&call.call_id, 5 * SECOND);
    assert_record(&record, "transferred", Some("it"), "3", &["root"]);
    // Stored as a pseudonym by default (tests/privacy.rs checks which one).
    assert!(
        record["from"]
            .as_str()
            .is_some_and(|f| f.starts_with("p:") && !f.contains(&caller.number)),
        "{record:#}"
    );
    assert!(
        record["transfer_target"]
            .as_str()
            .is_some_and(|t| t.contains(&it.uri("it"))),
        "{record:#}"
    );
    assert!(
        !record["answered_at"].is_null() && !record["transferred_at"].is_null(),
        "{record:#}"
    );
    // The trail managers read the funnel from: the menu, the digit, the hand-off and its success, in order.
    let kinds: Vec<&str> = record["steps"]
        .as_array()
        .map(|steps| steps.iter().filter_map(|s| s["kind"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(
        kinds,
        ["entered_menu", "digit", "transfer_started", "transferred"],
        "{record:#}"
    );
    stop_cleanly(daemon);
}

#[test]
fn sip_info_digit_bridges_and_caller_hangup_ends_the_function_leg() {
    let (daemon, it, _kt) = setup(|_| {});
    let caller = Caller::udp(daemon.sip);
    let (mut call, _answer, t0) = caller.call(&daemon, &[PCMU], CALLER_HZ);
    caller.rtp.wait_tone(MENU_HZ, 10, t0, 15 * SECOND);

    assert_eq!(call.info_dtmf_relay('3').status(), Some(200));
    let mut incoming = it.expect_call(10 * SECOND);
    assert_header(&incoming, "X-Knappval-Digits", "3");
    it.answer(&mut incoming, FUNCTION_HZ);
    let bridged = Instant::now();
    caller.rtp.wait_tone(FUNCTION_HZ, 25, bridged, 10 * SECOND);
    it.rtp.wait_tone(CALLER_HZ, 25, bridged, 10 * SECOND);

    caller_hangs_up_on_it(daemon, &mut call, &incoming);
}

#[test]
fn hangup_during_the_menu_is_abandoned() {
    let (daemon, it, _kt) = setup(|_| {});
    let caller = Caller::udp(daemon.sip);
    let (mut call, _answer, t0) = caller.call(&daemon, &[PCMU], CALLER_HZ);
    caller.rtp.wait_tone(MENU_HZ, 10, t0, 15 * SECOND);
    assert_eq!(call.bye().status(), Some(200));
    let record = daemon.wait_record(&call.call_id, 5 * SECOND);
    assert_record(&record, "abandoned", None, "", &["root"]);
    assert!(
        it.sip
            .take(SECOND / 2, |m| m.is_request("INVITE"))
            .is_none(),
        "no hand-off"
    );
    // The media stops with the call.
    let count = caller.rtp.packet_count();
    std::thread::sleep(SECOND);
    let after = caller.rtp.packet_count();
    assert!(
        after - count <= 5,
        "{} RTP packets after the BYE",
        after - count
    );
    stop_cleanly(daemon);
}

#[test]
fn no_digit_replays_the_menu_then_the_fallback_hangs_up() {
    let (daemon, _it, _kt) = setup(|_| {});
    let caller = Caller::udp(daemon.sip);
    let (call, _answer, t0) = caller.call(&daemon, &[PCMU], CALLER_HZ);
    call.expect_bye(30 * SECOND);
    let heard = caller.rtp.segments_since(t0);
    let first = audio::find_run(&heard, MENU_HZ, 60, 0);
    let second = first.and_then(|i| audio::find_run(&heard, MENU_HZ, 60, i + 1));
    assert!(
        second.is_some(),
        "retries: 1 plays the menu twice; heard {}",
        audio::describe(&heard)
    );
    let record = daemon.wait_record(&call.call_id, 5 * SECOND);
    assert_record(&record, "timeout", None, "", &["root"]);
    stop_cleanly(daemon);
}

#[test]
fn no_digit_with_a_route_fallback_hands_the_call_to_it() {
    let (daemon, it, _kt) = setup(|spec| spec.fallback = "{ route: it }");
    let caller = Caller::udp(daemon.sip);
    let (mut call, _answer, _t0) = caller.call(&daemon, &[PCMU], CALLER_HZ);
    let mut incoming = it.expect_call(30 * SECOND);
    assert_header(&incoming, "X-Knappval-Function", "it");
    it.answer(&mut incoming, FUNCTION_HZ);
    caller
        .rtp
        .wait_tone(FUNCTION_HZ, 25, Instant::now(), 10 * SECOND);
    assert_eq!(call.bye().status(), Some(200));
    incoming.call.expect_bye(10 * SECOND);
    let record = daemon.wait_record(&call.call_id, 5 * SECOND);
    assert_eq!(record["function"], "it", "{record:#}");
    assert_eq!(record["outcome"], "transferred", "{record:#}");
    stop_cleanly(daemon);
}

#[test]
fn cancel_right_after_invite_ends_consistently() {
    let (daemon, _it, _kt) = setup(|_| {});
    let caller = Caller::udp(daemon.sip);
    let mut call = caller.sip.invite(
        &daemon.uri(),
        &caller.caller_uri(),
        Some(&caller.offer(&[PCMU])),
        &[],
    );
    call.send_invite();
    caller.sip.send_raw(call.cancel_text().as_bytes());
    let final_response = call.await_final(10 * SECOND);
    let cancel_response = caller
        .sip
        .take(5 * SECOND, |m| {
            m.status().is_some() && m.cseq().is_some_and(|(_, m)| m == "CANCEL")
        })
        .unwrap_or_else(|| {
            panic!(
                "no response to CANCEL; inbox {}",
                caller.sip.inbox_summary()
            )
        });
    match final_response.status() {
        Some(487) => assert_eq!(
            cancel_response.msg.status(),
            Some(200),
            "CANCEL of a pending INVITE"
        ),
        Some(200) => {
            // The answer won the race: the CANCEL had nothing left to cancel. Hang up normally.
            assert!(matches!(cancel_response.msg.status(), Some(200 | 481)));
            assert_eq!(call.bye().status(), Some(200));
        }
        other => panic!("INVITE+CANCEL ended with {other:?}"),
    }
    let record = daemon.wait_record(&call.call_id, 5 * SECOND);
    assert_eq!(record["outcome"], "abandoned", "{record:#}");
    assert!(record["function"].is_null(), "{record:#}");
    stop_cleanly(daemon);
}

#[test]
fn unknown_digit_plays_invalid_with_barge_in_then_a_valid_digit_routes() {
    let (daemon, it, _kt) = setup(|_| {});
    let caller = Caller::udp(daemon.sip);
    let (mut call, answer, t0) = caller.call(&daemon, &[PCMU], CALLER_HZ);
    caller.rtp.wait_tone(MENU_HZ, 10, t0, 15 * SECOND);

    assert_eq!(call.info_dtmf('7').status(), Some(200));
    caller.rtp.wait_tone(INVALID_HZ, 12, t0, 10 * SECOND);
    let heard = caller.rtp.segments_since(t0);
    let invalid = audio::find_run(&heard, INVALID_HZ, 12, 0).expect("the invalid prompt");
    let cut_menu = heard[..invalid]
        .iter()
        .rev()
        .find(|s| s.tone == Some(MENU_HZ));
    assert!(
        cut_menu.is_some_and(|s| s.frames < 60),
        "the digit stops the 1.6 s menu prompt (barge-in); heard {}",
        audio::describe(&heard)
    );
    // The menu prompt is played again after the invalid prompt.
    wait_until(
        10 * SECOND,
        || audio::find_run(&caller.rtp.segments_since(t0), MENU_HZ, 10, invalid + 1).is_some(),
        || {
            format!(
                "menu again after invalid; heard {}",
                audio::describe(&caller.rtp.segments_since(t0))
            )
        },
    );

    caller.rtp.send_digit('3', event_pt(&answer), DIGIT);
    let mut incoming = it.expect_call(10 * SECOND);
    assert_header(&incoming, "X-Knappval-Function", "it");
    let answered = Instant::now();
    it.answer(&mut incoming, FUNCTION_HZ);
    // Hang up only once bridged (the function's tone reaches the caller): a BYE racing the function's 200
    // would rightly count as abandoned.
    caller.rtp.wait_tone(FUNCTION_HZ, 5, answered, 10 * SECOND);
    assert_eq!(call.bye().status(), Some(200));
    incoming.call.expect_bye(10 * SECOND);
    let record = daemon.wait_record(&call.call_id, 5 * SECOND);
    assert_record(&record, "transferred", Some("it"), "73", &["root"]);
    stop_cleanly(daemon);
}

#[test]
fn submenu_choice_carries_digits_and_path() {
    let (daemon, it, _kt) = setup(|_| {});
    let caller = Caller::udp(daemon.sip);
    let (call, answer, t0) = caller.call(&daemon, &[PCMU], CALLER_HZ);
    caller.rtp.wait_tone(MENU_HZ, 10, t0, 15 * SECOND);
    caller.rtp.send_digit('9', event_pt(&answer), DIGIT);
    caller.rtp.wait_tone(MORE_HZ, 10, t0, 10 * SECOND);
    caller.rtp.send_digit('1', event_pt(&answer), DIGIT);
    let mut incoming = it.expect_call(10 * SECOND);
    let call_id = incoming.invite.msg.call_id().unwrap_or_default();
    assert!(
        call_id.ends_with(&format!("@{}", daemon.sip.ip())),
        "the function leg's Call-ID {call_id} names knappval's address"
    );
    assert_header(&incoming, "X-Knappval-Function", "it");
    assert_header(&incoming, "X-Knappval-Digits", "91");
    assert_header(&incoming, "X-Knappval-Path", "root,more");
    let answered = Instant::now();
    it.answer(&mut incoming, FUNCTION_HZ);
    caller.rtp.wait_tone(FUNCTION_HZ, 5, answered, 10 * SECOND);
    assert_eq!(incoming.call.bye().status(), Some(200));
    call.expect_bye(10 * SECOND);
    let record = daemon.wait_record(&call.call_id, 5 * SECOND);
    assert_record(&record, "transferred", Some("it"), "91", &["root", "more"]);
    stop_cleanly(daemon);
}

/// Swedish ringback: 425 Hz, 1 s on, 4 s off, at a level a caller hears (ITU-T E.180: -10 to -20 dBm0).
#[test]
fn caller_hears_the_ringback_at_a_normal_level_while_the_function_rings() {
    let (daemon, it, _kt) = setup(|spec| spec.it_ring_timeout = "15s");
    let (caller, _call) = caller_choosing(&daemon, '3');
    let incoming = it.expect_call(10 * SECOND);
    incoming.send_provisional(180, "Ringing");
    let ringing = Instant::now();
    std::thread::sleep(7 * SECOND);

    // 200 ms windows: 85 whole periods of 425 Hz, so the Goertzel share of a clean tone is close to 1.
    let samples = caller.rtp.samples_since(ringing);
    let windows: Vec<(f64, f64)> = samples
        .chunks_exact(1600)
        .map(|w| (audio::tone_share(w, 425.0), audio::dbm0(w)))
        .collect();
    let describe = || {
        windows
            .iter()
            .map(|(share, level)| format!("{share:.2}@{level:.1}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let tone: Vec<&(f64, f64)> = windows.iter().filter(|(share, _)| *share > 0.9).collect();
    let silent = windows.iter().filter(|(_, level)| *level < -50.0).count();
    // 7 s hold at least one whole second of tone (5 windows, less the edges) and most of a 4 s pause.
    assert!(
        (4..=12).contains(&tone.len()),
        "425 Hz in {} windows of 200 ms; share@dBm0: {}",
        tone.len(),
        describe()
    );
    assert!(
        silent >= 12,
        "{silent} silent windows; share@dBm0: {}",
        describe()
    );
    for (_, level) in &tone {
        assert!(
            (-16.0..=-10.0).contains(level),
            "ringback at {level:.1} dBm0, expected about -13; share@dBm0: {}",
            describe()
        );
    }
    stop_cleanly(daemon);
}

#[test]
fn refer_mode_transfers_the_caller_blind() {
    let (daemon, _it, kt) = setup(|_| {});
    let caller = Caller::udp(daemon.sip);
    let (mut call, answer, t0) = caller.call(&daemon, &[PCMU], CALLER_HZ);
    caller.rtp.wait_tone(MENU_HZ, 10, t0, 15 * SECOND);
    caller.rtp.send_digit('1', event_pt(&answer), DIGIT);

    let refer = call.expect_request("REFER", 10 * SECOND);
    let refer_to = refer.msg.header("refer-to").unwrap_or_default().to_string();
    assert!(
        refer_to.contains(&kt.uri("kt")),
        "Refer-To {refer_to} names {}",
        kt.uri("kt")
    );
    call.respond(&refer, 202, "Accepted");

    // The caller's phone calls the function itself, copying the Refer-To URI's headers into its INVITE.
    let mut referred =
        transferee::invite_from_refer(&refer, &caller.caller_uri(), &caller.offer(&[PCMU]));
    let dialing = std::thread::spawn(move || {
        let response = referred.start(15 * SECOND);
        (referred, response)
    });
    let mut incoming = kt.expect_call(10 * SECOND);
    kt.sip.auto_answer("BYE");
    assert_header(&incoming, "X-Knappval-Function", "kundtjanst");
    assert_header(&incoming, "X-Knappval-Digits", "1");
    assert_header(&incoming, "X-Knappval-Path", "root");
    assert_header(&incoming, "X-Knappval-Call-ID", &call.call_id);
    kt.answer(&mut incoming, FUNCTION_HZ);
    let (mut referred, response) = dialing.join().expect("the transferee's INVITE");
    assert_eq!(response.status(), Some(200), "{}", response.summary());

    let notify = final_notify(&mut call, 10 * SECOND);
    assert_eq!(notify.msg.status(), Some(200));
    let bye = call.expect_bye(10 * SECOND);
    assert!(
        notify.seq < bye.seq,
        "the 200 to the final NOTIFY must come before the BYE"
    );
    assert_eq!(referred.bye().status(), Some(200));

    let record = daemon.wait_record(&call.call_id, 5 * SECOND);
    assert_record(&record, "transferred", Some("kundtjanst"), "1", &["root"]);
    assert!(
        record["transfer_target"]
            .as_str()
            .is_some_and(|t| t.contains("kt@")),
        "{record:#}"
    );
    stop_cleanly(daemon);
}

/// The order of our 200 to the final NOTIFY and our BYE is decided inside the daemon (the 200 goes through the
/// NOTIFY's transaction, the BYE through a new one), so one call on loopback shows a wrong order only now and
/// then. Many calls at once, each checking which of the two reached the caller first, catch it.
#[test]
fn refer_answers_the_final_notify_before_sending_bye_every_time() {
    const CALLS: usize = 16;
    let (daemon, _it, _kt) = setup(|_| {});
    let callers: Vec<_> = (0..CALLS)
        .map(|_| {
            let daemon_sip = daemon.sip;
            let uri = daemon.uri();
            std::thread::spawn(move || {
                let caller = Caller::udp(daemon_sip);
                let mut call = caller.sip.invite(
                    &uri,
                    &caller.caller_uri(),
                    Some(&caller.offer(&[PCMU])),
                    &[],
                );
                let response = call.start(15 * SECOND);
                assert_eq!(response.status(), Some(200), "{}", response.summary());
                let answer = sdp::parse(&response.body_str()).expect("SDP answer");
                caller.rtp.set_remote(answer.media_addr());
                let t0 = Instant::now();
                caller.rtp.play(common::Sound::Tone {
                    freq: CALLER_HZ,
                    pt: PCMU,
                });
                caller.rtp.wait_tone(MENU_HZ, 5, t0, 30 * SECOND);
                caller.rtp.send_digit('1', event_pt(&answer), DIGIT);
                let refer = call.expect_request("REFER", 20 * SECOND);
                call.respond(&refer, 202, "Accepted");
                let notify = final_notify(&mut call, 20 * SECOND);
                let bye = call.expect_bye(20 * SECOND);
                (call.call_id.clone(), notify.seq < bye.seq)
            })
        })
        .collect();
    let orders: Vec<(String, bool)> = callers
        .into_iter()
        .map(|c| c.join().expect("a caller thread"))
        .collect();
    let overtaken: Vec<&String> = orders
        .iter()
        .filter(|(_, ok)| !ok)
        .map(|(id, _)| id)
        .collect();
    assert!(
        overtaken.is_empty(),
        "in {} of {CALLS} calls the BYE reached the caller before the 200 to its final NOTIFY: {overtaken:?}",
        overtaken.len()
    );
    for (call_id, _) in &orders {
        let record = daemon.wait_record(call_id, 10 * SECOND);
        assert_eq!(record["outcome"], "transferred", "{record:#}");
    }
    // The BYE waited for the report that the 200 went out, not for the bound on that wait.
    assert!(
        !daemon
            .log_text()
            .contains("no report that the answer went out"),
        "a BYE was sent on the timeout, not after the 200"
    );
    stop_cleanly(daemon);
}

#[test]
fn busy_function_plays_the_failure_prompt_and_falls_back_to_kundtjanst() {
    let (daemon, it, kt) = setup(|spec| spec.kt_transfer = "bridge");
    let caller = Caller::udp(daemon.sip);
    let (mut call, answer, t0) = caller.call(&daemon, &[PCMU], CALLER_HZ);
    caller.rtp.wait_tone(MENU_HZ, 10, t0, 15 * SECOND);
    caller.rtp.send_digit('3', event_pt(&answer), DIGIT);

    let incoming = it.expect_call(10 * SECOND);
    assert!(
        incoming.reject(486, "Busy Here", 10 * SECOND),
        "the daemon ACKs our 486"
    );
    caller.rtp.wait_tone(BUSY_HZ, 15, t0, 10 * SECOND);

    let mut fallback = kt.expect_call(15 * SECOND);
    assert_header(&fallback, "X-Knappval-Function", "kundtjanst");
    kt.answer(&mut fallback, FUNCTION_HZ);
    let bridged = Instant::now();
    caller.rtp.wait_tone(FUNCTION_HZ, 25, bridged, 10 * SECOND);
    kt.rtp.wait_tone(CALLER_HZ, 25, bridged, 10 * SECOND);
    assert_eq!(call.bye().status(), Some(200));
    fallback.call.expect_bye(10 * SECOND);

    let record = daemon.wait_record(&call.call_id, 5 * SECOND);
    assert_eq!(record["outcome"], "transferred", "{record:#}");
    assert_eq!(record["function"], "kundtjanst", "{record:#}");
    assert!(
        record["end_reason"]
            .as_str()
            .is_some_and(|r| r.contains("failed hand-offs: it: busy 486")),
        "the record says why the first hand-off failed: {record:#}"
    );
    stop_cleanly(daemon);
}

#[test]
fn ring_timeout_cancels_the_function_and_hangs_up_as_failed() {
    let (daemon, it, _kt) = setup(|spec| {
        spec.it_ring_timeout = "2s";
        spec.it_on_failure = "{ hangup: true }";
    });
    let caller = Caller::udp(daemon.sip);
    let (call, answer, t0) = caller.call(&daemon, &[PCMU], CALLER_HZ);
    caller.rtp.wait_tone(MENU_HZ, 10, t0, 15 * SECOND);
    caller.rtp.send_digit('3', event_pt(&answer), DIGIT);

    let incoming = it.expect_call(10 * SECOND);
    incoming.send_provisional(180, "Ringing");
    let cancel = it
        .sip
        .expect_request("CANCEL", Some(&incoming.call.call_id), 15 * SECOND);
    it.sip.respond(&cancel, 200, "OK", None, &[], None);
    assert!(
        incoming.reject(487, "Request Terminated", 10 * SECOND),
        "the daemon ACKs our 487"
    );

    caller.rtp.wait_tone(BUSY_HZ, 15, t0, 10 * SECOND);
    call.expect_bye(15 * SECOND);
    let record = daemon.wait_record(&call.call_id, 5 * SECOND);
    assert_record(&record, "failed", Some("it"), "3", &["root"]);
    assert!(
        record["end_reason"]
            .as_str()
            .is_some_and(|r| r.contains("it: rang out after 2s")),
        "{record:#}"
    );
    stop_cleanly(daemon);
}

#[test]
fn pcmu_caller_and_pcma_function_are_transcoded() {
    let (daemon, it, _kt) = setup_with(&[PCMA], |_| {});
    let caller = Caller::udp(daemon.sip);
    let (mut call, answer, t0) = caller.call(&daemon, &[PCMU], CALLER_HZ);
    caller.rtp.wait_tone(MENU_HZ, 10, t0, 15 * SECOND);
    caller.rtp.send_digit('3', event_pt(&answer), DIGIT);
    let mut incoming = it.expect_call(10 * SECOND);
    assert_eq!(it.answer(&mut incoming, FUNCTION_HZ), PCMA);
    let bridged = Instant::now();
    caller.rtp.wait_tone(FUNCTION_HZ, 25, bridged, 10 * SECOND);
    it.rtp.wait_tone(CALLER_HZ, 25, bridged, 10 * SECOND);
    let audio_pts = |packets: Vec<common::rtp::RtpPacket>| -> Vec<u8> {
        let mut pts: Vec<u8> = packets
            .iter()
            .filter(|p| p.at >= bridged && p.payload.len() == audio::FRAME)
            .map(|p| p.pt)
            .collect();
        pts.dedup();
        pts
    };
    assert_eq!(
        audio_pts(caller.rtp.packets()),
        vec![PCMU],
        "the caller gets µ-law only"
    );
    assert_eq!(
        audio_pts(it.rtp.packets()),
        vec![PCMA],
        "the function gets A-law only"
    );
    assert_eq!(call.bye().status(), Some(200));
    incoming.call.expect_bye(10 * SECOND);
    stop_cleanly(daemon);
}

#[test]
fn a_late_offer_is_answered_in_the_ack_and_the_caller_hears_the_menu_and_is_bridged() {
    let (daemon, it, _kt) = setup(|_| {});
    let caller = Caller::udp(daemon.sip);
    // A PBX trunk in "delayed offer": no SDP in the INVITE. It answers the daemon's offer in A-law.
    let mut call = caller
        .sip
        .invite(&daemon.uri(), &caller.caller_uri(), None, &[]);
    let mut offered = None;
    let response = call.start_answering_in_ack(10 * SECOND, |offer| {
        let info =
            sdp::parse(offer).unwrap_or_else(|| panic!("200 without an SDP offer: {offer:?}"));
        let answer = sdp::build(caller.rtp.local, &[PCMA], info.telephone_event, "sendrecv");
        offered = Some(info);
        answer
    });
    let t0 = Instant::now();
    assert_eq!(response.status(), Some(200), "{}", response.summary());
    let offered = offered.expect("the 200's offer");
    assert_eq!(
        offered.payloads[..2],
        [PCMU, PCMA],
        "both G.711 offered: {offered:?}"
    );
    let event = offered.telephone_event.expect("telephone-event offered");
    caller.rtp.set_remote(offered.media_addr());
    caller.rtp.play(common::rtp::Sound::Tone {
        freq: CALLER_HZ,
        pt: PCMA,
    });
    caller.rtp.wait_tone(MENU_HZ, 10, t0, 15 * SECOND);
    caller.rtp.send_digit('3', event, DIGIT);
    let mut incoming = it.expect_call(10 * SECOND);
    assert_eq!(
        it.answer(&mut incoming, FUNCTION_HZ),
        PCMA,
        "the function is offered the caller's codec first"
    );
    let bridged = Instant::now();
    caller.rtp.wait_tone(FUNCTION_HZ, 25, bridged, 10 * SECOND);
    it.rtp.wait_tone(CALLER_HZ, 25, bridged, 10 * SECOND);
    let prompt_pts: Vec<u8> = caller
        .rtp
        .packets()
        .iter()
        .filter(|p| p.payload.len() == audio::FRAME)
        .map(|p| p.pt)
        .collect();
    assert!(
        !prompt_pts.is_empty() && prompt_pts.iter().all(|&pt| pt == PCMA),
        "the caller gets the codec of its answer only"
    );
    caller_hangs_up_on_it(daemon, &mut call, &incoming);
}

#[test]
fn the_function_gets_the_callers_asserted_identity_and_privacy() {
    let (daemon, it, _kt) = setup(|_| {});
    let caller = Caller::udp(daemon.sip);
    // The trunk asserts who called; the caller asked that the number not be shown.
    let asserted = "\"Kalle\" <sip:+46705555555@trunk.example;user=phone>";
    let mut call = caller.sip.invite(
        &daemon.uri(),
        &caller.caller_uri(),
        Some(&caller.offer(&[PCMU])),
        &[
            format!("P-Asserted-Identity: {asserted}"),
            "Privacy: id".to_owned(),
        ],
    );
    let t0 = Instant::now();
    let response = call.start(10 * SECOND);
    assert_eq!(response.status(), Some(200), "{}", response.summary());
    let answer = sdp::parse(&response.body_str()).expect("an SDP answer");
    caller.rtp.set_remote(answer.media_addr());
    caller.rtp.play(common::rtp::Sound::Tone {
        freq: CALLER_HZ,
        pt: PCMU,
    });
    caller.rtp.wait_tone(MENU_HZ, 10, t0, 15 * SECOND);
    caller.rtp.send_digit('3', event_pt(&answer), DIGIT);
    let mut incoming = it.expect_call(10 * SECOND);
    assert_header(&incoming, "P-Asserted-Identity", asserted);
    assert_header(&incoming, "Privacy", "id");
    it.answer(&mut incoming, FUNCTION_HZ);
    caller
        .rtp
        .wait_tone(FUNCTION_HZ, 10, Instant::now(), 10 * SECOND);
    caller_hangs_up_on_it(daemon, &mut call, &incoming);
}

#[test]
fn a_late_offer_whose_ack_has_no_answer_is_ended_with_bye() {
    let (daemon, _it, _kt) = setup(|_| {});
    let caller = Caller::udp(daemon.sip);
    let mut call = caller
        .sip
        .invite(&daemon.uri(), &caller.caller_uri(), None, &[]);
    let response = call.start(10 * SECOND);
    assert_eq!(response.status(), Some(200), "{}", response.summary());
    call.expect_bye(10 * SECOND);
    let record = daemon.wait_record(&call.call_id, 5 * SECOND);
    assert_eq!(record["outcome"], "failed", "{record:#}");
    assert!(
        record["end_reason"]
            .as_str()
            .is_some_and(|reason| reason.contains("no usable SDP answer")),
        "{record:#}"
    );
    stop_cleanly(daemon);
}

#[test]
fn tcp_caller_is_bridged_and_gets_the_bye_over_tcp() {
    let (daemon, it, _kt) = setup(|_| {});
    let caller = Caller::tcp(daemon.sip);
    let (call, answer, t0) = caller.call(&daemon, &[PCMU], CALLER_HZ);
    caller.rtp.wait_tone(GREETING_HZ, 15, t0, 15 * SECOND);
    caller.rtp.wait_tone(MENU_HZ, 10, t0, 15 * SECOND);
    caller.rtp.send_digit('3', event_pt(&answer), DIGIT);
    let mut incoming = it.expect_call(10 * SECOND);
    it.answer(&mut incoming, FUNCTION_HZ);
    caller
        .rtp
        .wait_tone(FUNCTION_HZ, 25, Instant::now(), 10 * SECOND);
    assert_eq!(incoming.call.bye().status(), Some(200));
    let bye = call.expect_bye(10 * SECOND);
    assert!(matches!(bye.origin, common::sip::Origin::Tcp(_)));
    let record = daemon.wait_record(&call.call_id, 5 * SECOND);
    assert_record(&record, "transferred", Some("it"), "3", &["root"]);
    stop_cleanly(daemon);
}

#[test]
fn options_unknown_method_and_no_common_codec() {
    let (daemon, _it, _kt) = setup(|_| {});
    let caller = Caller::udp(daemon.sip);
    assert_eq!(caller.out_of_dialog(&daemon, "OPTIONS"), 200);
    assert_eq!(caller.out_of_dialog(&daemon, "FOO"), 501);

    let offer = sdp::build(caller.rtp.local, &[G729], None, "sendrecv");
    let mut call = caller
        .sip
        .invite(&daemon.uri(), &caller.caller_uri(), Some(&offer), &[]);
    let response = call.start(10 * SECOND);
    assert_eq!(
        response.status(),
        Some(488),
        "G.729 only: {}",
        response.summary()
    );
    let record = daemon.wait_record(&call.call_id, 5 * SECOND);
    assert_eq!(record["outcome"], "rejected", "{record:#}");
    assert!(record["answered_at"].is_null(), "{record:#}");
    stop_cleanly(daemon);
}

#[test]
fn reinvite_to_hold_is_answered_with_sdp() {
    let (daemon, _it, _kt) = setup(|_| {});
    let caller = Caller::udp(daemon.sip);
    let (mut call, _answer, t0) = caller.call(&daemon, &[PCMU], CALLER_HZ);
    caller.rtp.wait_tone(GREETING_HZ, 5, t0, 15 * SECOND);
    let hold = sdp::build(caller.rtp.local, &[PCMU], Some(101), "sendonly");
    let response = call.reinvite(&hold);
    assert_eq!(response.status(), Some(200), "{}", response.summary());
    let answer = sdp::parse(&response.body_str()).expect("SDP in the re-INVITE's 200");
    assert!(
        matches!(answer.direction.as_deref(), Some("recvonly" | "inactive")),
        "hold (sendonly) is answered recvonly or inactive (RFC 3264): {:?}",
        answer.direction
    );
    assert_eq!(call.bye().status(), Some(200));
    daemon.wait_record(&call.call_id, 5 * SECOND);
    stop_cleanly(daemon);
}

#[test]
fn sigterm_during_a_call_exits_0_and_keeps_the_record() {
    // The caller stays in the menu past the grace period, so the daemon has to end the call itself.
    let (mut daemon, _it, _kt) = setup(|spec| spec.menu_timeout = "30s");
    let caller = Caller::udp(daemon.sip);
    caller.sip.auto_answer("BYE");
    let (call, _answer, t0) = caller.call(&daemon, &[PCMU], CALLER_HZ);
    caller.rtp.wait_tone(MENU_HZ, 10, t0, 15 * SECOND);
    let status = daemon.stop(20 * SECOND);
    assert!(status.success(), "knappval exited with {status} on SIGTERM");
    assert!(
        caller.sip.take(SECOND, |m| m.is_request("BYE")).is_some(),
        "callers get a BYE when the daemon stops; inbox {}",
        caller.sip.inbox_summary()
    );
    let out = run_cli(&[
        os("contacts"),
        os("--db"),
        path_arg(&daemon.fixture.db),
        os("--format"),
        os("jsonl"),
    ]);
    assert!(
        out.status.success(),
        "contacts: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let record: serde_json::Value = stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|r| r["call_id"] == call.call_id.as_str())
        .unwrap_or_else(|| panic!("no record of {} in {stdout}", call.call_id));
    assert_eq!(record["outcome"], "failed", "{record:#}");
    assert!(!record["ended_at"].is_null(), "{record:#}");
}

#[test]
fn check_reports_file_line_col_and_contacts_exports() {
    let fixture = Fixture::new();
    let good = MenuSpec::new("sip:it@127.0.0.1:5071", "sip:kt@127.0.0.1:5072").yaml();
    fixture.write_menu(&good);
    let check = common::daemon::check;
    let out = check(&fixture);
    assert!(
        out.status.success(),
        "a valid menu passes: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A dangling function id and a prompt without a file: each reported at its own line.
    let broken = good
        .replace("\"3\": { route: it }", "\"3\": { route: nope }")
        .replace("prompt: more-menu", "prompt: saknas");
    fixture.write_menu(&broken);
    let line_of = |needle: &str| {
        broken
            .lines()
            .position(|l| l.contains(needle))
            .expect("needle in menu")
            + 1
    };
    let out = check(&fixture);
    assert_eq!(out.status.code(), Some(1), "a broken menu exits 1");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    for needle in ["nope", "saknas"] {
        let line = line_of(needle);
        let found = text.lines().any(|l| {
            let Some((_, rest)) = l.split_once(&format!("menu.yaml:{line}:")) else {
                return false;
            };
            let mut parts = rest.splitn(2, ':');
            parts
                .next()
                .is_some_and(|col| col.parse::<u32>().is_ok_and(|c| c > 0))
                && parts
                    .next()
                    .is_some_and(|r| r.trim_start().starts_with("error:"))
        });
        assert!(
            found,
            "expected menu.yaml:{line}:COL: error: ... for {needle}; got:\n{text}"
        );
    }

    // contacts exports what calls left behind.
    let (daemon, _it, _kt) = setup(|_| {});
    let caller = Caller::udp(daemon.sip);
    let (mut call, _answer, t0) = caller.call(&daemon, &[PCMU], CALLER_HZ);
    caller.rtp.wait_tone(GREETING_HZ, 5, t0, 15 * SECOND);
    assert_eq!(call.bye().status(), Some(200));
    daemon.wait_record(&call.call_id, 5 * SECOND);
    let db = daemon.fixture.db.clone();
    stop_cleanly_keep(daemon, |_| {
        let jsonl = run_cli(&[
            os("contacts"),
            os("--db"),
            path_arg(&db),
            os("--format"),
            os("jsonl"),
        ]);
        assert!(
            jsonl.status.success(),
            "{}",
            String::from_utf8_lossy(&jsonl.stderr)
        );
        let text = String::from_utf8_lossy(&jsonl.stdout);
        let records: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect();
        assert_eq!(records.len(), 1, "{text}");
        assert_eq!(records[0]["call_id"], call.call_id.as_str());
        let csv = run_cli(&[
            os("contacts"),
            os("--db"),
            path_arg(&db),
            os("--format"),
            os("csv"),
        ]);
        assert!(
            csv.status.success(),
            "{}",
            String::from_utf8_lossy(&csv.stderr)
        );
        let text = String::from_utf8_lossy(&csv.stdout);
        let mut lines = text.lines();
        let header = lines.next().unwrap_or_default();
        assert!(
            header.split(',').any(|h| h == "call_id") && header.contains("outcome"),
            "CSV header: {header}"
        );
        assert!(
            lines.any(|l| l.contains(&call.call_id) && l.contains("abandoned")),
            "CSV rows:\n{text}"
        );
    });
}

/// Stops the daemon (exit 0) and then runs `after` while its temp dir still exists.
fn stop_cleanly_keep(mut daemon: Daemon, after: impl FnOnce(&Daemon)) {
    let status = daemon.stop(15 * SECOND);
    assert!(status.success(), "knappval exited with {status}");
    after(&daemon);
}
