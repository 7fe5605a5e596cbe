//! Support-function queues through the daemon: callers wait with music (heard and decoded at the caller), agents'
//! phones are offered the calls first in, first out, ring timeouts move an offer on, `max_wait` overflows, a
//! caller who gives up CANCELs the ringing agent, and each call's record says how long it waited and who answered.
//! Agents are fixed `sip:` URIs pointing at test UAS phones on loopback, or agents' phones that REGISTER with
//! digest authentication (the test phone of `common::agent`) and are rung at the contact they registered.

mod common;

use common::agent::write_agents_file;

use common::audio::{self, BUSY_HZ, CALLER_HZ, FUNCTION_HZ, GREETING_HZ, Segment};
use common::daemon::{export_jsonl, os, path_arg, run_cli};
use common::queue::{
    ANNA, BO, MUSIC_HZ, NUMBER_HZ, POSITION_HZ, QueueSpec, call_and_press, call_the_queue,
    expect_cancel, queue_fixture, registered_phone, start, start_with_agents,
};
use common::sdp::{PCMA, PCMU};
use common::sipp::{Sipp, free_udp_port, render_scenario};
use common::{Caller, Daemon, FunctionEndpoint, RtpPeer, SECOND, wait_until};
use serde_json::Value;
use std::time::{Duration, Instant};

/// The shipped hold music's melody (C5, E5, G5): its signature.
const SHIPPED_MUSIC_HZ: [u32; 3] = [523, 659, 784];
const QUEUE_TONES: [u32; 7] = [
    MUSIC_HZ,
    POSITION_HZ,
    NUMBER_HZ,
    GREETING_HZ,
    BUSY_HZ,
    FUNCTION_HZ,
    1000,
];

fn agent_state(daemon: &Daemon, id: &str) -> String {
    queues(daemon)[0]["agents"]
        .as_array()
        .and_then(|agents| agents.iter().find(|a| a["id"] == id))
        .and_then(|a| a["state"].as_str())
        .unwrap_or("not listed")
        .to_owned()
}

/// What the caller heard since `since`, judged against the queue's tones.
fn heard(rtp: &RtpPeer, since: Instant, tones: &[u32]) -> Vec<Segment> {
    let frames: Vec<Option<u32>> = rtp
        .packets()
        .iter()
        .filter(|p| p.at >= since)
        .filter_map(|p| audio::decode(p.pt, &p.payload))
        .map(|samples| audio::dominant(&samples, tones))
        .collect();
    audio::segments(&frames)
}

fn wait_heard(
    rtp: &RtpPeer,
    since: Instant,
    tones: &[u32],
    timeout: Duration,
    done: impl Fn(&[Segment]) -> bool,
) -> Vec<Segment> {
    wait_until(
        timeout,
        || done(&heard(rtp, since, tones)),
        || format!("heard {}", audio::describe(&heard(rtp, since, tones))),
    );
    heard(rtp, since, tones)
}

fn queues(daemon: &Daemon) -> Vec<Value> {
    let (status, body) = daemon.get("/api/v1/queues");
    assert_eq!(status, 200, "{body}");
    serde_json::from_str::<Value>(&body)
        .ok()
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_else(|| panic!("/api/v1/queues is not a JSON array: {body}"))
}

fn header<'a>(incoming: &'a common::IncomingCall, name: &str) -> &'a str {
    incoming.header(name).map(str::trim).unwrap_or_default()
}

/// The agent answers the offer, the caller hears the agent, the agent hangs up; the caller's finished record.
fn answer_talk_hang_up(
    daemon: &Daemon,
    agent: &FunctionEndpoint,
    offer: &mut common::IncomingCall,
    caller: &Caller,
    call: &common::Call,
) -> Value {
    agent.answer(offer, FUNCTION_HZ);
    caller
        .rtp
        .wait_tone(FUNCTION_HZ, 25, Instant::now(), 10 * SECOND);
    assert_eq!(offer.call.bye().status(), Some(200));
    call.expect_bye(10 * SECOND);
    daemon.wait_record(&call.call_id, 5 * SECOND)
}

/// Today's `/api/v1/stats` row for `function` (grouped by function): the queue figures a manager reads.
fn stats_row(daemon: &Daemon, function: &str) -> Value {
    // A day either side of now: the calls of this test, whatever the zones.
    let now = jiff::Timestamp::now();
    let day = jiff::SignedDuration::from_hours(24);
    let path = format!(
        "/api/v1/stats?from={}&to={}&group_by=function",
        now - day,
        now + day
    );
    let (status, body) = daemon.get(&path);
    assert_eq!(status, 200, "{body}");
    let report: Value = serde_json::from_str(&body).expect("stats JSON");
    report["rows"]
        .as_array()
        .and_then(|rows| rows.iter().find(|row| row["key"] == function))
        .cloned()
        .unwrap_or(Value::Null)
}

fn assert_queued_record(record: &Value, outcome: &str, answered_by: Option<&str>) {
    assert_eq!(record["outcome"], outcome, "{record:#}");
    assert!(
        record["queue_entered_at"].is_string(),
        "queue_entered_at: {record:#}"
    );
    assert!(
        record["queue_wait_ms"].as_u64().is_some(),
        "queue_wait_ms: {record:#}"
    );
    assert!(record["queue"].is_string(), "queue: {record:#}");
    match answered_by {
        Some(agent) => assert_eq!(record["answered_by"], agent, "{record:#}"),
        None => assert!(record["answered_by"].is_null(), "{record:#}"),
    }
}

#[test]
fn a_fixed_uri_agent_is_offered_the_call_with_the_callers_number_and_the_caller_is_bridged() {
    let agent = FunctionEndpoint::new(&[PCMU, PCMA]);
    let kt = FunctionEndpoint::new(&[PCMU, PCMA]);
    let daemon = start(&QueueSpec::new(&[agent.uri("it-desk")]), &kt);
    let (caller, call, pressed) = call_the_queue(&daemon, "0701112233");

    let mut offer = agent.expect_call(10 * SECOND);
    assert!(
        header(&offer, "from").contains("0701112233"),
        "From: {}",
        header(&offer, "from")
    );
    assert_eq!(header(&offer, "X-Knappval-Function"), "it");
    assert_eq!(header(&offer, "X-Knappval-Digits"), "1");
    assert_eq!(header(&offer, "X-Knappval-Call-ID"), call.call_id);
    // Ring a while: the caller keeps hearing the music, after the transfer prompt.
    offer.send_provisional(180, "Ringing");
    wait_heard(&caller.rtp, pressed, &QUEUE_TONES, 10 * SECOND, |h| {
        audio::find_run(h, GREETING_HZ, 20, 0)
            .is_some_and(|g| audio::find_run(h, MUSIC_HZ, 60, g + 1).is_some())
    });
    agent.answer(&mut offer, FUNCTION_HZ);
    let bridged = Instant::now();
    // The music stops at once: what follows is the agent's voice.
    caller.rtp.wait_tone(FUNCTION_HZ, 25, bridged, 10 * SECOND);
    let after = heard(&caller.rtp, bridged, &QUEUE_TONES);
    let first_agent = audio::find_run(&after, FUNCTION_HZ, 25, 0).expect("agent heard");
    let music_before: usize = after[..first_agent]
        .iter()
        .filter(|s| s.tone == Some(MUSIC_HZ))
        .map(|s| s.frames)
        .sum();
    assert!(
        music_before <= 25,
        "music went on after the answer: {}",
        audio::describe(&after)
    );
    agent.rtp.wait_tone(CALLER_HZ, 25, bridged, 10 * SECOND);
    // While caller and agent still talk, the statistics already count the call as answered from the queue.
    wait_until(
        10 * SECOND,
        || stats_row(&daemon, "it")["answered"] == 1,
        || format!("not answered in the stats: {}", stats_row(&daemon, "it")),
    );

    assert_eq!(offer.call.bye().status(), Some(200));
    call.expect_bye(10 * SECOND);
    let record = daemon.wait_record(&call.call_id, 5 * SECOND);
    assert_queued_record(&record, "transferred", Some(&agent.uri("it-desk")));
    assert_eq!(record["function"], "it");
    assert_eq!(record["transfer_target"], agent.uri("it-desk"));
    // One queued call, answered within the default 60 s: the average speed of answer is its wait.
    let row = stats_row(&daemon, "it");
    assert_eq!(
        (&row["calls"], &row["queued"], &row["answered"]),
        (&Value::from(1), &Value::from(1), &Value::from(1)),
        "{row}"
    );
    assert_eq!(row["asa_ms"], record["queue_wait_ms"], "{row}");
    assert_eq!(row["service_level"], 1.0, "{row}");
}

#[test]
fn three_callers_and_two_agents_are_served_first_in_first_out() {
    let anna = FunctionEndpoint::new(&[PCMU, PCMA]);
    let bo = FunctionEndpoint::new(&[PCMU, PCMA]);
    let kt = FunctionEndpoint::new(&[PCMU, PCMA]);
    let daemon = start(&QueueSpec::new(&[anna.uri("anna"), bo.uri("bo")]), &kt);

    let mut callers = Vec::new();
    for number in ["0701000001", "0701000002", "0701000003"] {
        let (caller, call, _) = call_the_queue(&daemon, number);
        // Each in the line before the next dials.
        wait_until(
            10 * SECOND,
            || {
                queues(&daemon)[0]["waiting"]
                    .as_array()
                    .is_some_and(|w| w.iter().any(|x| x["call_id"] == call.call_id))
            },
            || format!("{number} not in line: {:?}", queues(&daemon)),
        );
        callers.push((caller, call));
    }
    // Longest idle, equal: Anna (listed first) gets caller 1, Bo caller 2; caller 3 waits for the next free agent.
    let mut to_anna = anna.expect_call(10 * SECOND);
    let mut to_bo = bo.expect_call(10 * SECOND);
    assert_eq!(header(&to_anna, "X-Knappval-Call-ID"), callers[0].1.call_id);
    assert_eq!(header(&to_bo, "X-Knappval-Call-ID"), callers[1].1.call_id);
    let line = queues(&daemon);
    assert_eq!(
        line[0]["waiting"].as_array().map(Vec::len),
        Some(3),
        "{line:?}"
    );
    bo.answer(&mut to_bo, FUNCTION_HZ);
    anna.answer(&mut to_anna, FUNCTION_HZ);
    wait_until(
        10 * SECOND,
        || queues(&daemon)[0]["waiting"].as_array().map(Vec::len) == Some(1),
        || format!("{:?}", queues(&daemon)),
    );
    let line = &queues(&daemon)[0];
    assert_eq!(
        line["waiting"][0]["call_id"], callers[2].1.call_id,
        "{line:#}"
    );
    // Callers are shown by their pseudonym, as everywhere the daemon shows them (tests/privacy.rs).
    let pseudonym = knappval::privacy::CallerKey::load(&daemon.fixture.path("caller-key"))
        .expect("the caller key beside the database")
        .pseudonym("0701000003");
    assert_eq!(line["waiting"][0]["from"], pseudonym.as_str());
    let states: Vec<&str> = line["agents"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|a| a["state"].as_str())
        .collect();
    assert_eq!(states, ["talking", "talking"]);
    // Caller 3 hears music meanwhile.
    let t = Instant::now();
    wait_heard(&callers[2].0.rtp, t, &QUEUE_TONES, 10 * SECOND, |h| {
        audio::longest(h, MUSIC_HZ) >= 50
    });

    // Bo hangs up first: with no wrap-up, Bo is offered caller 3 at once.
    assert_eq!(to_bo.call.bye().status(), Some(200));
    callers[1].1.expect_bye(10 * SECOND);
    let mut again = bo.expect_call(10 * SECOND);
    assert_eq!(header(&again, "X-Knappval-Call-ID"), callers[2].1.call_id);
    bo.answer(&mut again, FUNCTION_HZ);
    callers[2]
        .0
        .rtp
        .wait_tone(FUNCTION_HZ, 25, Instant::now(), 10 * SECOND);
    for incoming in [&mut to_anna, &mut again] {
        assert_eq!(incoming.call.bye().status(), Some(200));
    }
    callers[0].1.expect_bye(10 * SECOND);
    callers[2].1.expect_bye(10 * SECOND);

    let records: Vec<Value> = callers
        .iter()
        .map(|(_, call)| daemon.wait_record(&call.call_id, 5 * SECOND))
        .collect();
    for record in &records {
        assert_queued_record(
            record,
            "transferred",
            None.or(record["answered_by"].as_str()),
        );
    }
    assert_eq!(records[0]["answered_by"], anna.uri("anna"));
    assert_eq!(records[1]["answered_by"], bo.uri("bo"));
    assert_eq!(records[2]["answered_by"], bo.uri("bo"));
    let entered: Vec<&str> = records
        .iter()
        .filter_map(|r| r["queue_entered_at"].as_str())
        .collect();
    assert!(
        entered[0] < entered[1] && entered[1] < entered[2],
        "{entered:?}"
    );
    assert!(records[2]["transferred_at"].as_str() > records[0]["transferred_at"].as_str());
    for (i, record) in records.iter().enumerate() {
        let wait = record["queue_wait_ms"].as_u64().unwrap_or(0);
        assert!(wait < 60_000, "caller {i} waited {wait} ms: {record:#}");
    }
}

#[test]
fn an_unanswered_offer_is_cancelled_at_ring_timeout_and_the_next_agent_is_offered() {
    let anna = FunctionEndpoint::new(&[PCMU, PCMA]);
    let bo = FunctionEndpoint::new(&[PCMU, PCMA]);
    let kt = FunctionEndpoint::new(&[PCMU, PCMA]);
    let mut spec = QueueSpec::new(&[anna.uri("anna"), bo.uri("bo")]);
    spec.ring_timeout = "2s";
    let daemon = start(&spec, &kt);
    let (caller, call, _) = call_the_queue(&daemon, "0702000000");

    let to_anna = anna.expect_call(10 * SECOND);
    to_anna.send_provisional(180, "Ringing");
    let rang = Instant::now();
    let cancel = to_anna.call.expect_request("CANCEL", 10 * SECOND);
    let rang_for = rang.elapsed();
    assert!(
        rang_for >= Duration::from_millis(1500),
        "CANCEL after {rang_for:?}, ring_timeout is 2s"
    );
    to_anna.call.respond(&cancel, 200, "OK");
    to_anna.reject(487, "Request Terminated", 5 * SECOND);

    let mut to_bo = bo.expect_call(10 * SECOND);
    assert_eq!(header(&to_bo, "X-Knappval-Call-ID"), call.call_id);
    let record = answer_talk_hang_up(&daemon, &bo, &mut to_bo, &caller, &call);
    assert_queued_record(&record, "transferred", Some(&bo.uri("bo")));
}

#[test]
fn with_every_agent_busy_the_caller_hears_the_shipped_music_and_their_place_in_line() {
    let anna = FunctionEndpoint::new(&[PCMU, PCMA]);
    let kt = FunctionEndpoint::new(&[PCMU, PCMA]);
    let mut spec = QueueSpec::new(&[anna.uri("anna")]);
    spec.music = "hold-music";
    spec.announce_position = Some("7s");
    let daemon = start(&spec, &kt);
    // Anna is busy with the first caller.
    let (_first, first_call, _) = call_the_queue(&daemon, "0703000001");
    let mut busy = anna.expect_call(10 * SECOND);
    anna.answer(&mut busy, FUNCTION_HZ);

    let (second, second_call, pressed) = call_the_queue(&daemon, "0703000002");
    let mut tones = SHIPPED_MUSIC_HZ.to_vec();
    tones.extend([POSITION_HZ, NUMBER_HZ, GREETING_HZ]);
    // Transfer prompt, the melody (C5 E5 G5 E5, 2 s each), at 7 s "du är nummer" + "ett" (100 ms) + "i kön",
    // then the melody again from where it paused.
    let h = wait_heard(&second.rtp, pressed, &tones, 20 * SECOND, |h| {
        audio::find_run(h, POSITION_HZ, 10, 0)
            .and_then(|p| audio::find_run(h, NUMBER_HZ, 3, p + 1))
            .and_then(|n| audio::find_run(h, POSITION_HZ, 10, n + 1))
            .is_some_and(|end| {
                h[end + 1..]
                    .iter()
                    .any(|s| SHIPPED_MUSIC_HZ.iter().any(|f| s.tone == Some(*f)) && s.frames >= 20)
            })
    });
    let greeting = audio::find_run(&h, GREETING_HZ, 20, 0).expect("transfer prompt first");
    for note in SHIPPED_MUSIC_HZ {
        assert!(
            audio::find_run(&h, note, 40, greeting + 1).is_some(),
            "note {note} Hz of the melody; heard {}",
            audio::describe(&h)
        );
    }
    let prefix = audio::find_run(&h, POSITION_HZ, 10, greeting + 1).unwrap();
    let number = audio::find_run(&h, NUMBER_HZ, 3, prefix + 1).unwrap();
    assert!(
        (4..=6).contains(&h[number].frames),
        "number-1 is 100 ms (5 frames); heard {}",
        audio::describe(&h)
    );
    let music_frames: usize = h[greeting + 1..prefix]
        .iter()
        .filter(|s| s.tone.is_some_and(|t| SHIPPED_MUSIC_HZ.contains(&t)))
        .map(|s| s.frames)
        .sum();
    assert!(
        music_frames >= 300,
        "about 7 s of music before the announcement; heard {}",
        audio::describe(&h)
    );
    // The announcement paused the melody in its fourth note (E5, 6-8 s): it goes on there, not from the start.
    let suffix = audio::find_run(&h, POSITION_HZ, 10, number + 1).unwrap();
    let resumed = h[suffix + 1..]
        .iter()
        .find(|s| s.frames >= 5 && s.tone.is_some())
        .and_then(|s| s.tone);
    assert_eq!(
        resumed,
        Some(659),
        "music after the announcement; heard {}",
        audio::describe(&h)
    );
    let line = &queues(&daemon)[0];
    assert_eq!(line["waiting"][0]["call_id"], second_call.call_id);
    assert!(
        line["longest_wait_ms"].as_u64().unwrap_or(0) >= 4000,
        "{line:#}"
    );
    assert_eq!(line["agents"][0]["state"], "talking");
    drop(busy);
    drop(first_call);
}

#[test]
fn hold_music_loops_without_a_gap_in_sound_or_in_the_rtp_stream() {
    let nobody = FunctionEndpoint::new(&[PCMU]);
    let kt = FunctionEndpoint::new(&[PCMU, PCMA]);
    // The only agent never answers and is rung rarely: the caller just waits.
    let mut spec = QueueSpec::new(&[nobody.uri("nobody")]);
    spec.ring_timeout = "30s";
    let daemon = start(&spec, &kt);
    let (caller, _call, _) = call_the_queue(&daemon, "0704000000");
    let _ = nobody.expect_call(10 * SECOND);
    let t = Instant::now();
    // Four loops of the 1 s music: one unbroken run of its tone, every packet in sequence, 160 samples apart.
    let h = wait_heard(&caller.rtp, t, &QUEUE_TONES, 15 * SECOND, |h| {
        audio::longest(h, MUSIC_HZ) >= 200
    });
    let run = audio::find_run(&h, MUSIC_HZ, 200, 0).expect("a long run of music");
    assert!(
        h[run + 1..]
            .iter()
            .all(|s| s.tone == Some(MUSIC_HZ) || s.frames == 0),
        "heard {}",
        audio::describe(&h)
    );
    let packets: Vec<_> = caller
        .rtp
        .packets()
        .into_iter()
        .filter(|p| p.at >= t)
        .collect();
    for pair in packets.windows(2) {
        assert_eq!(
            pair[1].seq,
            pair[0].seq.wrapping_add(1),
            "a packet missing in the music"
        );
        assert_eq!(
            pair[1].ts,
            pair[0].ts.wrapping_add(160),
            "a jump in the RTP clock at seq {}",
            pair[1].seq
        );
    }
    // Each frame of the loop is the tone: the wrap does not insert a frame of silence.
    let silent = packets
        .iter()
        .filter_map(|p| audio::decode(p.pt, &p.payload))
        .filter(|samples| audio::rms(samples) < 1000.0)
        .count();
    assert_eq!(silent, 0, "silent frames in the looped music");
}

#[test]
fn max_wait_plays_the_failure_prompt_and_overflows_to_the_overflow_function() {
    let nobody = FunctionEndpoint::new(&[PCMU]);
    let kt = FunctionEndpoint::new(&[PCMU, PCMA]);
    let mut spec = QueueSpec::new(&[nobody.uri("nobody")]);
    spec.max_wait = "3s";
    spec.ring_timeout = "30s";
    let daemon = start(&spec, &kt);
    let (caller, call, pressed) = call_the_queue(&daemon, "0705000000");
    let offer = nobody.expect_call(10 * SECOND);
    offer.send_provisional(180, "Ringing");
    // At max_wait the ringing agent is CANCELled, the caller hears the failure prompt and goes to Kundtjänst.
    expect_cancel(&offer);
    let mut overflow = kt.expect_call(10 * SECOND);
    assert!(
        pressed.elapsed() >= Duration::from_millis(2500),
        "overflow after {:?}",
        pressed.elapsed()
    );
    assert_eq!(header(&overflow, "X-Knappval-Function"), "kundtjanst");
    // While Kundtjänst rings, the wait in `it` is over and already counted: queued, not answered.
    wait_until(
        10 * SECOND,
        || stats_row(&daemon, "it")["queued"] == 1,
        || {
            format!(
                "the overflowed wait is not counted yet: {}",
                stats_row(&daemon, "it")
            )
        },
    );
    let h = heard(&caller.rtp, pressed, &QUEUE_TONES);
    let music = audio::find_run(&h, MUSIC_HZ, 50, 0)
        .unwrap_or_else(|| panic!("no music; heard {}", audio::describe(&h)));
    assert!(
        audio::find_run(&h, BUSY_HZ, 20, music + 1).is_some(),
        "failure prompt after the music; heard {}",
        audio::describe(&h)
    );
    let record = answer_talk_hang_up(&daemon, &kt, &mut overflow, &caller, &call);
    assert_queued_record(&record, "transferred", None);
    assert_eq!(record["function"], "kundtjanst");
    assert!(
        record["queue_wait_ms"]
            .as_u64()
            .is_some_and(|ms| ms >= 2500),
        "{record:#}"
    );
    // The record keeps the queue waited in. The statistics count the wait for that queue (queued, not
    // answered: against its service level), and the call for Kundtjänst, where it ended.
    assert_eq!(record["queue"], "it", "{record:#}");
    let row = stats_row(&daemon, "it");
    assert_eq!(
        (
            &row["calls"],
            &row["queued"],
            &row["answered"],
            &row["asa_ms"],
            &row["service_level"]
        ),
        (
            &Value::from(0),
            &Value::from(1),
            &Value::from(0),
            &Value::Null,
            &Value::from(0.0)
        ),
        "{row}"
    );
    let row = stats_row(&daemon, "kundtjanst");
    assert_eq!(
        (&row["calls"], &row["queued"], &row["service_level"]),
        (&Value::from(1), &Value::from(0), &Value::Null),
        "{row}"
    );
}

#[test]
fn a_caller_who_hangs_up_while_the_agent_rings_cancels_the_offer_and_is_recorded_abandoned() {
    let anna = FunctionEndpoint::new(&[PCMU, PCMA]);
    let kt = FunctionEndpoint::new(&[PCMU, PCMA]);
    let daemon = start(&QueueSpec::new(&[anna.uri("anna")]), &kt);
    let (_caller, mut call, _) = call_the_queue(&daemon, "0706000000");
    let offer = anna.expect_call(10 * SECOND);
    offer.send_provisional(180, "Ringing");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(call.bye().status(), Some(200));
    expect_cancel(&offer);
    let record = daemon.wait_record(&call.call_id, 5 * SECOND);
    assert_queued_record(&record, "abandoned", None);
    assert!(
        record["end_reason"]
            .as_str()
            .is_some_and(|r| r.contains("waiting in queue it")),
        "{record:#}"
    );
    wait_until(
        5 * SECOND,
        || {
            queues(&daemon)[0]["agents"][0]["state"] == "idle"
                && queues(&daemon)[0]["waiting"] == serde_json::json!([])
        },
        || format!("{:?}", queues(&daemon)),
    );
}

#[test]
fn sigterm_gives_every_waiting_caller_a_record_that_says_so() {
    let nobody = FunctionEndpoint::new(&[PCMU]);
    let kt = FunctionEndpoint::new(&[PCMU, PCMA]);
    let mut spec = QueueSpec::new(&[nobody.uri("nobody")]);
    spec.ring_timeout = "30s";
    let mut daemon = start(&spec, &kt);
    let mut calls = Vec::new();
    for number in ["0707000001", "0707000002"] {
        let (caller, call, _) = call_the_queue(&daemon, number);
        calls.push((caller, call));
    }
    wait_until(
        10 * SECOND,
        || queues(&daemon)[0]["waiting"].as_array().map(Vec::len) == Some(2),
        || format!("{:?}", queues(&daemon)),
    );
    let db = daemon.fixture.db.clone();
    let status = daemon.stop(20 * SECOND);
    assert!(status.success(), "{status}");
    let exported = export_jsonl(&db);
    for (_, call) in &calls {
        let record = exported
            .iter()
            .find(|r| r["call_id"] == call.call_id)
            .unwrap_or_else(|| panic!("no record for {}: {exported:?}", call.call_id));
        assert_queued_record(record, "failed", None);
        assert_eq!(
            record["end_reason"], "daemon shut down while waiting in queue it",
            "{record:#}"
        );
    }
}

#[test]
fn check_points_at_bad_queue_durations_and_strategies() {
    let kt = FunctionEndpoint::new(&[PCMU]);
    let mut spec = QueueSpec::new(&["sip:desk@127.0.0.1".to_string()]);
    spec.ring_timeout = "15 sec";
    spec.strategy = "longest-idel";
    let fixture = queue_fixture();
    fixture.write_menu(&spec.yaml(&kt.uri("kt")));
    let output = run_cli(&[
        os("check"),
        os("--menu"),
        path_arg(&fixture.menu),
        os("--prompts"),
        path_arg(&fixture.prompts),
    ]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    let menu = fixture.menu.display().to_string();
    assert!(
        stderr.contains(&format!(
            "{menu}:10:17: error: unknown queue strategy 'longest-idel'"
        )),
        "{stderr}"
    );
    assert!(stderr.contains("did you mean 'longest-idle'"), "{stderr}");
    assert!(
        stderr.contains(&format!("{menu}:11:21: error:")),
        "{stderr}"
    );
}

#[test]
fn an_agent_who_registers_with_digest_auth_is_offered_the_call_at_the_registered_contact() {
    let kt = FunctionEndpoint::new(&[PCMU, PCMA]);
    let daemon = start_with_agents(&QueueSpec::new(&[ANNA.0.to_string()]), &kt);
    assert_eq!(agent_state(&daemon, ANNA.0), "unregistered");
    // Nobody is offered the call while Anna is away: the caller waits with music.
    let (caller, call, pressed) = call_the_queue(&daemon, "0708000001");
    wait_heard(&caller.rtp, pressed, &QUEUE_TONES, 10 * SECOND, |h| {
        audio::longest(h, MUSIC_HZ) >= 50
    });

    let (phone, anna) = registered_phone(&daemon, ANNA, 600);
    let mut offer = anna.expect_call(10 * SECOND);
    let request_uri = match &offer.invite.msg.start {
        common::sipmsg::StartLine::Request { uri, .. } => uri.clone(),
        other => panic!("not a request: {other:?}"),
    };
    assert_eq!(
        request_uri,
        phone.contact(),
        "INVITE to the registered contact"
    );
    assert!(header(&offer, "from").contains("0708000001"));
    assert_eq!(header(&offer, "X-Knappval-Function"), "it");
    assert_eq!(agent_state(&daemon, ANNA.0), "ringing");
    anna.answer(&mut offer, FUNCTION_HZ);
    caller
        .rtp
        .wait_tone(FUNCTION_HZ, 25, Instant::now(), 10 * SECOND);
    assert_eq!(agent_state(&daemon, ANNA.0), "talking");
    assert_eq!(offer.call.bye().status(), Some(200));
    call.expect_bye(10 * SECOND);
    let record = daemon.wait_record(&call.call_id, 5 * SECOND);
    assert_queued_record(&record, "transferred", Some(ANNA.0));
    assert_eq!(record["transfer_target"], phone.contact());
    // No wrap-up in this queue: Anna is free at once.
    wait_until(
        5 * SECOND,
        || agent_state(&daemon, ANNA.0) == "idle",
        || agent_state(&daemon, ANNA.0),
    );
}

#[test]
fn an_expired_registration_stops_the_offers_to_that_agent() {
    let kt = FunctionEndpoint::new(&[PCMU, PCMA]);
    let daemon = start_with_agents(
        &QueueSpec::new(&[ANNA.0.to_string(), BO.0.to_string()]),
        &kt,
    );
    let (_anna_phone, anna) = registered_phone(&daemon, ANNA, 1);
    let (_bo_phone, bo) = registered_phone(&daemon, BO, 600);
    wait_until(
        10 * SECOND,
        || agent_state(&daemon, ANNA.0) == "unregistered",
        || {
            format!(
                "Anna's 1 s registration still counts: {:?}",
                queues(&daemon)
            )
        },
    );
    assert_eq!(agent_state(&daemon, BO.0), "idle");
    // Anna was free longest, but only Bo is offered the call.
    let (caller, call, _) = call_the_queue(&daemon, "0708000002");
    let mut offer = bo.expect_call(10 * SECOND);
    assert!(
        anna.sip
            .take(Duration::from_secs(2), |m| m.is_request("INVITE"))
            .is_none(),
        "an INVITE reached the expired contact"
    );
    let record = answer_talk_hang_up(&daemon, &bo, &mut offer, &caller, &call);
    assert_queued_record(&record, "transferred", Some(BO.0));
}

#[test]
fn check_with_the_agents_file_names_unknown_agents() {
    let kt = FunctionEndpoint::new(&[PCMU]);
    let spec = QueueSpec::new(&[
        ANNA.0.to_string(),
        "it-boo".to_string(),
        "sip:desk@127.0.0.1".to_string(),
    ]);
    let fixture = queue_fixture();
    fixture.write_menu(&spec.yaml(&kt.uri("kt")));
    let agents = fixture.path("agents.yaml");
    write_agents_file(&agents, "", &[ANNA, BO]);
    let check = |with_agents: bool| {
        let mut args = vec![
            os("check"),
            os("--menu"),
            path_arg(&fixture.menu),
            os("--prompts"),
            path_arg(&fixture.prompts),
        ];
        if with_agents {
            args.extend([os("--agents"), path_arg(&agents)]);
        }
        run_cli(&args)
    };
    // Without the agents file any well-formed id passes; with it, the unknown one is named at its place.
    assert!(
        check(false).status.success(),
        "{}",
        String::from_utf8_lossy(&check(false).stderr)
    );
    let output = check(true);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    let menu = fixture.menu.display().to_string();
    assert!(
        stderr.contains(&format!(
            "{menu}:9:27: error: agent 'it-boo' is not in the agents file"
        )),
        "{stderr}"
    );
    assert!(stderr.contains("did you mean 'it-bo'"), "{stderr}");
    assert!(
        !stderr.contains("it-anna") && !stderr.contains("desk"),
        "{stderr}"
    );
}

/// Two SIPp agents' phones: each registers with SIPp's own MD5 digest answer, then answers the offers it gets on
/// the registered contact (500 ms of ringing, 2 s of talk, then BYE). Three callers: answered in the order they
/// entered the queue.
#[test]
fn sipp_agents_register_and_answer_three_callers_first_in_first_out() {
    common::sipp::sipp_binary();
    let kt = FunctionEndpoint::new(&[PCMU, PCMA]);
    let daemon = start_with_agents(
        &QueueSpec::new(&[ANNA.0.to_string(), BO.0.to_string()]),
        &kt,
    );
    let dir = daemon.fixture.dir.path().to_path_buf();
    let answer = render_scenario(
        "agent_answer.xml",
        &dir,
        &[
            ("FUNCTION", "it".into()),
            ("RING_MS", "500".into()),
            ("TALK_MS", "2000".into()),
        ],
    );
    let mut agents = Vec::new();
    for (id, password) in [ANNA, BO] {
        let online = render_scenario(
            "agent_register_stay.xml",
            &dir,
            &[
                ("AGENT", id.into()),
                ("PASSWORD", password.into()),
                ("ONLINE_MS", "14000".into()),
            ],
        );
        let renamed = dir.join(format!("{id}.xml"));
        std::fs::rename(&online, &renamed).expect("rename the scenario");
        let port = free_udp_port(daemon.sip.ip());
        let args = [
            &daemon.sip.to_string(),
            "-sf",
            &renamed.to_string_lossy(),
            "-oocsf",
            &answer.to_string_lossy(),
            "-i",
            "127.0.0.1",
            "-mi",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-mp",
            &free_udp_port(daemon.sip.ip()).to_string(),
            "-m",
            "1",
            "-timeout",
            "40s",
            "-timeout_error",
        ]
        .map(String::from);
        agents.push(Sipp::spawn(id, &dir, &args));
    }
    wait_until(
        10 * SECOND,
        || agent_state(&daemon, ANNA.0) == "idle" && agent_state(&daemon, BO.0) == "idle",
        || format!("agents not registered: {:?}", queues(&daemon)),
    );
    let mut calls = Vec::new();
    for number in ["0709000001", "0709000002", "0709000003"] {
        let (caller, call, _) = call_the_queue(&daemon, number);
        wait_until(
            10 * SECOND,
            || daemon.get("/api/v1/queues").1.contains(&call.call_id),
            || format!("{number} not in line: {:?}", queues(&daemon)),
        );
        calls.push((caller, call));
    }
    let records: Vec<Value> = calls
        .iter()
        .map(|(_, call)| {
            call.expect_bye(20 * SECOND);
            daemon.wait_record(&call.call_id, 5 * SECOND)
        })
        .collect();
    for mut agent in agents {
        agent.assert_success(Duration::from_secs(40));
    }
    for record in &records {
        let agent = record["answered_by"].as_str().unwrap_or_default();
        assert!([ANNA.0, BO.0].contains(&agent), "{record:#}");
        assert_queued_record(record, "transferred", Some(agent));
    }
    let answered: Vec<&str> = records
        .iter()
        .filter_map(|r| r["transferred_at"].as_str())
        .collect();
    assert!(
        answered[0] <= answered[2] && answered[1] <= answered[2],
        "caller 3 was answered before an earlier caller: {answered:?}"
    );
    assert!(
        records[2]["queue_wait_ms"].as_u64() >= Some(1500),
        "caller 3 waited for a free agent: {:#}",
        records[2]
    );
}

#[test]
fn an_offer_forks_to_every_registered_contact_and_the_first_answer_cancels_the_others() {
    let kt = FunctionEndpoint::new(&[PCMU, PCMA]);
    let daemon = start_with_agents(&QueueSpec::new(&[ANNA.0.to_string()]), &kt);
    // Anna's desk phone and her softphone.
    let (_desk, desk) = registered_phone(&daemon, ANNA, 600);
    let (soft_phone, soft) = registered_phone(&daemon, ANNA, 600);
    let (caller, call, _) = call_the_queue(&daemon, "0708000003");
    let to_desk = desk.expect_call(10 * SECOND);
    let mut to_soft = soft.expect_call(10 * SECOND);
    to_desk.send_provisional(180, "Ringing");
    soft.answer(&mut to_soft, FUNCTION_HZ);
    expect_cancel(&to_desk);
    caller
        .rtp
        .wait_tone(FUNCTION_HZ, 25, Instant::now(), 10 * SECOND);
    assert_eq!(to_soft.call.bye().status(), Some(200));
    call.expect_bye(10 * SECOND);
    let record = daemon.wait_record(&call.call_id, 5 * SECOND);
    assert_queued_record(&record, "transferred", Some(ANNA.0));
    assert_eq!(record["transfer_target"], soft_phone.contact());
}

#[test]
fn an_agent_who_unregisters_while_ringing_is_cancelled_and_the_next_agent_offered() {
    let kt = FunctionEndpoint::new(&[PCMU, PCMA]);
    let daemon = start_with_agents(
        &QueueSpec::new(&[ANNA.0.to_string(), BO.0.to_string()]),
        &kt,
    );
    let (mut anna_phone, anna) = registered_phone(&daemon, ANNA, 600);
    let (_bo_phone, bo) = registered_phone(&daemon, BO, 600);
    let (caller, call, _) = call_the_queue(&daemon, "0708000004");
    let to_anna = anna.expect_call(10 * SECOND);
    to_anna.send_provisional(180, "Ringing");
    // Anna logs her phone out while it rings.
    let response = anna_phone.register(0);
    assert_eq!(response.status(), Some(200), "{}", response.summary());
    expect_cancel(&to_anna);
    let mut to_bo = bo.expect_call(10 * SECOND);
    assert_eq!(agent_state(&daemon, ANNA.0), "unregistered");
    let record = answer_talk_hang_up(&daemon, &bo, &mut to_bo, &caller, &call);
    assert_queued_record(&record, "transferred", Some(BO.0));
}

#[test]
fn ring_all_rings_every_free_agent_and_the_first_answer_cancels_the_others() {
    let anna = FunctionEndpoint::new(&[PCMU, PCMA]);
    let bo = FunctionEndpoint::new(&[PCMU, PCMA]);
    let kt = FunctionEndpoint::new(&[PCMU, PCMA]);
    let mut spec = QueueSpec::new(&[anna.uri("anna"), bo.uri("bo")]);
    spec.strategy = "ring-all";
    let daemon = start(&spec, &kt);
    let (caller, call, _) = call_the_queue(&daemon, "0710000000");
    let to_anna = anna.expect_call(10 * SECOND);
    let mut to_bo = bo.expect_call(10 * SECOND);
    to_anna.send_provisional(180, "Ringing");
    bo.answer(&mut to_bo, FUNCTION_HZ);
    expect_cancel(&to_anna);
    caller
        .rtp
        .wait_tone(FUNCTION_HZ, 25, Instant::now(), 10 * SECOND);
    assert_eq!(to_bo.call.bye().status(), Some(200));
    call.expect_bye(10 * SECOND);
    let record = daemon.wait_record(&call.call_id, 5 * SECOND);
    assert_queued_record(&record, "transferred", Some(&bo.uri("bo")));
}

#[test]
fn after_a_call_the_agent_wraps_up_before_the_next_offer() {
    let anna = FunctionEndpoint::new(&[PCMU, PCMA]);
    let kt = FunctionEndpoint::new(&[PCMU, PCMA]);
    let mut spec = QueueSpec::new(&[anna.uri("anna")]);
    spec.wrap_up = "3s";
    let daemon = start(&spec, &kt);
    let (_first, first_call, _) = call_the_queue(&daemon, "0711000001");
    let mut offer = anna.expect_call(10 * SECOND);
    anna.answer(&mut offer, FUNCTION_HZ);
    let (_second, second_call, _) = call_the_queue(&daemon, "0711000002");
    wait_until(
        10 * SECOND,
        || {
            daemon
                .get("/api/v1/queues")
                .1
                .contains(&second_call.call_id)
        },
        || format!("{:?}", queues(&daemon)),
    );
    assert_eq!(offer.call.bye().status(), Some(200));
    let ended = Instant::now();
    first_call.expect_bye(10 * SECOND);
    wait_until(
        5 * SECOND,
        || agent_state(&daemon, &anna.uri("anna")) == "wrap_up",
        || format!("{:?}", queues(&daemon)),
    );
    let next = anna.expect_call(15 * SECOND);
    let rested = ended.elapsed();
    assert!(
        rested >= Duration::from_millis(2500),
        "offered again after {rested:?} of a 3 s wrap-up"
    );
    assert_eq!(header(&next, "X-Knappval-Call-ID"), second_call.call_id);
}

/// The watcher polls each second and loads a change once it has held still for a poll; SIGHUP loads at once.
/// Generous for a loaded machine.
const RELOAD_WAIT: Duration = Duration::from_secs(20);

/// Saves `yaml` over the running daemon's menu and sends SIGHUP; returns when `/api/v1/queues` satisfies
/// `done`, which shows the queue service has the new menu.
fn reload_queues(daemon: &Daemon, yaml: &str, what: &str, done: impl Fn(&[Value]) -> bool) {
    std::fs::write(&daemon.fixture.menu, yaml).expect("write the new menu");
    daemon.hangup_signal();
    wait_until(
        RELOAD_WAIT,
        || done(&queues(daemon)),
        || {
            format!(
                "{what}: /api/v1/queues is {:?}; /api/v1/menu is {}",
                queues(daemon),
                daemon.menu_status()
            )
        },
    );
}

fn queue_named<'a>(queues: &'a [Value], function: &str) -> Option<&'a Value> {
    queues.iter().find(|q| q["function"] == function)
}

fn waiting_call_ids(queue: &Value) -> Vec<String> {
    queue["waiting"]
        .as_array()
        .map(|w| {
            w.iter()
                .filter_map(|c| c["call_id"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn a_queue_added_by_a_reload_bridges_its_callers_to_its_agent_without_a_restart() {
    let anna = FunctionEndpoint::new(&[PCMU, PCMA]);
    let desk = FunctionEndpoint::new(&[PCMU, PCMA]);
    let kt = FunctionEndpoint::new(&[PCMU, PCMA]);
    let spec = QueueSpec::new(&[anna.uri("anna")]);
    let old = spec.yaml(&kt.uri("kt"));
    let daemon = start(&spec, &kt);
    assert!(queue_named(&queues(&daemon), "hr").is_none());

    // The admin adds Personal, a queue on 2 served by a desk phone, and saves.
    let hr = format!(
        "  hr:\n    name: Personal\n    transfer: queue\n    transfer_prompt: welcome\n    failure_prompt: busy\n    \
         queue:\n      agents: [\"{}\"]\n      overflow: {{ route: kundtjanst }}\n      music: test-music\n",
        desk.uri("hr-desk")
    );
    let new = old
        .replacen("  kundtjanst:\n", &format!("{hr}  kundtjanst:\n"), 1)
        .replacen(
            "    \"1\": { route: it }\n",
            "    \"1\": { route: it }\n    \"2\": { route: hr }\n",
            1,
        );
    assert!(
        new.contains("route: hr") && new.contains("  hr:\n"),
        "{new}"
    );
    reload_queues(&daemon, &new, "the new queue never came", |q| {
        queue_named(q, "hr").is_some_and(|hr| hr["agents"][0]["id"] == desk.uri("hr-desk"))
    });

    // A caller presses 2: they wait in the new queue, its agent is offered the call and they are bridged.
    let (caller, call, pressed) = call_and_press(&daemon, "0709000001", '2');
    let mut offer = desk.expect_call(15 * SECOND);
    assert_eq!(header(&offer, "X-Knappval-Function"), "hr");
    assert_eq!(header(&offer, "X-Knappval-Call-ID"), call.call_id);
    wait_heard(&caller.rtp, pressed, &QUEUE_TONES, 10 * SECOND, |h| {
        audio::longest(h, MUSIC_HZ) >= 25
    });
    let record = answer_talk_hang_up(&daemon, &desk, &mut offer, &caller, &call);
    assert_queued_record(&record, "transferred", Some(&desk.uri("hr-desk")));
    assert_eq!(record["function"], "hr");
    assert!(
        kt.sip
            .take(Duration::from_millis(500), |m| m.is_request("INVITE"))
            .is_none(),
        "the caller was overflowed to kundtjänst"
    );
    assert!(!daemon.log_text().contains("queue the menu no longer has"));
}

#[test]
fn a_caller_waiting_while_a_reload_changes_the_queue_stays_in_line_and_the_new_agent_answers() {
    let new_agent = FunctionEndpoint::new(&[PCMU, PCMA]);
    let kt = FunctionEndpoint::new(&[PCMU, PCMA]);
    // The queue's only agent never registers (this daemon has no agents file): the caller waits with music.
    let mut spec = QueueSpec::new(&["it-away".to_string()]);
    let daemon = start(&spec, &kt);
    let (caller, call, pressed) = call_the_queue(&daemon, "0709000002");
    wait_heard(&caller.rtp, pressed, &QUEUE_TONES, 10 * SECOND, |h| {
        audio::longest(h, MUSIC_HZ) >= 50
    });

    // The team changes while the caller waits: a desk phone, a shorter ring timeout.
    spec.agents = vec![new_agent.uri("it-new")];
    spec.ring_timeout = "8s";
    reload_queues(
        &daemon,
        &spec.yaml(&kt.uri("kt")),
        "the queue kept its old agent",
        |q| queue_named(q, "it").is_some_and(|it| it["agents"][0]["id"] == new_agent.uri("it-new")),
    );
    let reloaded = Instant::now();
    let mut offer = new_agent.expect_call(15 * SECOND);
    assert_eq!(header(&offer, "X-Knappval-Call-ID"), call.call_id);
    let it = queues(&daemon);
    let it = queue_named(&it, "it").expect("it listed");
    assert_eq!(waiting_call_ids(it), [call.call_id.as_str()], "{it}");
    assert_eq!(it["in_menu"], true, "{it}");
    // Ringing, the caller still hears the music: not dropped, not silenced by the reload.
    offer.send_provisional(180, "Ringing");
    wait_heard(&caller.rtp, reloaded, &QUEUE_TONES, 10 * SECOND, |h| {
        audio::longest(h, MUSIC_HZ) >= 25
    });
    let record = answer_talk_hang_up(&daemon, &new_agent, &mut offer, &caller, &call);
    assert_queued_record(&record, "transferred", Some(&new_agent.uri("it-new")));
    assert!(
        record["queue_wait_ms"]
            .as_u64()
            .is_some_and(|ms| ms >= reloaded.duration_since(pressed).as_millis() as u64),
        "one wait across the reload: {record:#}"
    );
}

#[test]
fn a_caller_waiting_in_a_queue_a_reload_removes_keeps_waiting_and_is_answered() {
    let anna = FunctionEndpoint::new(&[PCMU, PCMA]);
    let kt = FunctionEndpoint::new(&[PCMU, PCMA]);
    let mut spec = QueueSpec::new(&[anna.uri("anna")]);
    spec.ring_timeout = "30s";
    let old = spec.yaml(&kt.uri("kt"));
    let daemon = start(&spec, &kt);
    let (caller, call, pressed) = call_the_queue(&daemon, "0709000003");
    let busy = anna.expect_call(10 * SECOND);
    assert!(busy.reject(486, "Busy Here", 5 * SECOND), "no ACK for 486");

    // IT stops being a queue: its callers go straight to Kundtjänst's phone from now on.
    let start = old.find("  it:\n").expect("it in the menu");
    let end = old.find("  kundtjanst:\n").expect("kundtjanst in the menu");
    let new = format!(
        "{}  it:\n    name: IT Kundservice\n    target: \"{}\"\n{}",
        &old[..start],
        kt.uri("it"),
        &old[end..]
    );
    reload_queues(
        &daemon,
        &new,
        "the queue was not taken out of the menu",
        |q| queue_named(q, "it").is_some_and(|it| it["in_menu"] == false),
    );
    assert_eq!(
        waiting_call_ids(queue_named(&queues(&daemon), "it").expect("it listed")),
        [call.call_id.as_str()]
    );
    // Anna, rested after her busy signal, is offered the waiting caller under the queue's last settings.
    let mut offer = anna.expect_call(15 * SECOND);
    assert_eq!(header(&offer, "X-Knappval-Call-ID"), call.call_id);
    let h = heard(&caller.rtp, pressed, &QUEUE_TONES);
    assert!(
        audio::longest(&h, MUSIC_HZ) >= 50,
        "{}",
        audio::describe(&h)
    );
    let record = answer_talk_hang_up(&daemon, &anna, &mut offer, &caller, &call);
    assert_queued_record(&record, "transferred", Some(&anna.uri("anna")));
    // Its line empty, the queue is gone; a new caller pressing 1 is bridged on the new menu.
    wait_until(
        5 * SECOND,
        || queue_named(&queues(&daemon), "it").is_none(),
        || format!("{:?}", queues(&daemon)),
    );
    let (_second, second_call, _) = call_the_queue(&daemon, "0709000004");
    let mut bridged = kt.expect_call(15 * SECOND);
    assert_eq!(header(&bridged, "X-Knappval-Function"), "it");
    assert_eq!(header(&bridged, "X-Knappval-Call-ID"), second_call.call_id);
    kt.answer(&mut bridged, FUNCTION_HZ);
    assert_eq!(bridged.call.bye().status(), Some(200));
    second_call.expect_bye(10 * SECOND);
}

#[test]
fn a_registered_agent_added_to_a_queue_by_a_reload_is_offered_the_waiting_caller_and_unknown_ids_are_logged()
 {
    let kt = FunctionEndpoint::new(&[PCMU, PCMA]);
    let mut spec = QueueSpec::new(&[ANNA.0.to_string()]);
    let daemon = start_with_agents(&spec, &kt);
    // Bo's phone registers while he is in no queue; a caller waits for Anna, who is away.
    let (_bo_phone, bo) = registered_phone(&daemon, BO, 600);
    let (caller, call, pressed) = call_the_queue(&daemon, "0709000005");
    wait_heard(&caller.rtp, pressed, &QUEUE_TONES, 10 * SECOND, |h| {
        audio::longest(h, MUSIC_HZ) >= 50
    });
    assert!(
        bo.sip
            .take(Duration::from_millis(500), |m| m.is_request("INVITE"))
            .is_none(),
        "Bo is in no queue yet"
    );

    // Bo joins the team, with an id the agents file lacks (a typo for Bo).
    spec.agents = vec![ANNA.0.to_string(), BO.0.to_string(), "it-boo".to_string()];
    reload_queues(
        &daemon,
        &spec.yaml(&kt.uri("kt")),
        "Bo never joined the queue",
        |q| {
            queue_named(q, "it")
                .is_some_and(|it| it["agents"].as_array().is_some_and(|a| a.len() == 3))
        },
    );
    let mut offer = bo.expect_call(15 * SECOND);
    assert_eq!(header(&offer, "X-Knappval-Call-ID"), call.call_id);
    let record = answer_talk_hang_up(&daemon, &bo, &mut offer, &caller, &call);
    assert_queued_record(&record, "transferred", Some(BO.0));
    let log = daemon.log_text();
    assert!(
        log.lines()
            .any(|l| l.contains("it-boo") && l.contains("not in the agents file")),
        "the unknown agent id of the reloaded menu is logged"
    );
}
