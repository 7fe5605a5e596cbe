//! `GET /metrics` through the daemon, read by a Prometheus text parser after real calls: calls by function and
//! outcome, the gauges while a call is in the menu, in a queue and bridged, SIP responses by class (the guard's
//! own 501 too), RTP packets, each queue's callers waiting, longest wait and agents by state; and the Grafana
//! dashboard shipped in packaging/ asks only for metrics /metrics has.

mod common;

use common::audio::{CALLER_HZ, FUNCTION_HZ, MENU_HZ};
use common::daemon::http_get_with;
use common::queue::{
    ANNA, QueueSpec, call_the_queue, expect_cancel, registered_phone, start, start_with_agents,
};
use common::sdp::{PCMA, PCMU};
use common::{Caller, Daemon, Fixture, FunctionEndpoint, MenuSpec, SECOND, event_pt};
use prometheus_parse::{Scrape, Value};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

/// `/metrics`, parsed; panics unless it is Prometheus text 0.0.4.
fn scrape(daemon: &Daemon) -> Scrape {
    let (status, head, body) =
        http_get_with(daemon.http, "/metrics", &[]).unwrap_or_else(|e| panic!("GET /metrics: {e}"));
    assert_eq!(status, 200, "{body}");
    let content_type = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case("content-type")
                .then(|| v.trim().to_string())
        })
        .unwrap_or_default();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "Content-Type {content_type:?}"
    );
    Scrape::parse(body.lines().map(|line| Ok(line.to_string())))
        .unwrap_or_else(|e| panic!("not Prometheus text: {e}\n{body}"))
}

fn value(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    scrape
        .samples
        .iter()
        .find(|s| {
            s.metric == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(k).unwrap_or("") == *v)
        })
        .map(|s| match s.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => v,
            _ => f64::NAN,
        })
}

fn expect(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    value(scrape, name, labels)
        .unwrap_or_else(|| panic!("no {name} {labels:?} in /metrics: {:#?}", scrape.samples))
}

/// Polls `/metrics` until `name{labels}` reads `wanted` (gauges move as calls change phase).
fn wait_for(daemon: &Daemon, name: &str, labels: &[(&str, &str)], wanted: f64) -> Scrape {
    wait_until_read(daemon, name, labels, &format!("{wanted}"), |v| v == wanted)
}

/// Polls `/metrics` until `name{labels}` has a value that `holds`; returns that scrape.
fn wait_until_read(
    daemon: &Daemon,
    name: &str,
    labels: &[(&str, &str)],
    wanted: &str,
    holds: impl Fn(f64) -> bool,
) -> Scrape {
    let deadline = Instant::now() + 10 * SECOND;
    loop {
        let scrape = scrape(daemon);
        if value(&scrape, name, labels).is_some_and(&holds) {
            return scrape;
        }
        assert!(
            Instant::now() < deadline,
            "{name} {labels:?} never read {wanted}: {:#?}",
            scrape.samples
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn metrics_count_real_calls_responses_and_rtp() {
    let it = FunctionEndpoint::new(&[PCMU, PCMA]);
    let fixture = Fixture::new();
    fixture.write_menu(&MenuSpec::new(&it.uri("it"), "sip:kt@127.0.0.1:9").yaml());
    // Calls ring before they are answered: a 180 for every call, so 1xx is counted whatever the timing.
    let mut daemon = Daemon::start_with(fixture, &["--answer-delay", "1s"]);

    let before = scrape(&daemon);
    assert_eq!(expect(&before, "knappval_calls_active", &[]), 0.0);
    assert_eq!(
        value(&before, "knappval_calls_total", &[]),
        None,
        "no call yet"
    );

    // A call bridged to `it`: in the menu, then bridged.
    let caller = Caller::udp(daemon.sip);
    let (mut call, answer, t0) = caller.call(&daemon, &[PCMU], CALLER_HZ);
    caller.rtp.wait_tone(MENU_HZ, 10, t0, 15 * SECOND);
    wait_for(&daemon, "knappval_calls_in_menu", &[], 1.0);
    assert_eq!(expect(&scrape(&daemon), "knappval_calls_active", &[]), 1.0);
    caller
        .rtp
        .send_digit('3', event_pt(&answer), Duration::from_millis(100));
    let mut incoming = it.expect_call(10 * SECOND);
    it.answer(&mut incoming, FUNCTION_HZ);
    caller
        .rtp
        .wait_tone(FUNCTION_HZ, 10, Instant::now(), 10 * SECOND);
    wait_for(&daemon, "knappval_calls_bridged", &[], 1.0);
    let bridged = scrape(&daemon);
    assert_eq!(expect(&bridged, "knappval_calls_in_menu", &[]), 0.0);
    assert_eq!(expect(&bridged, "knappval_calls_active", &[]), 1.0);
    assert_eq!(call.bye().status(), Some(200));
    incoming.call.expect_bye(10 * SECOND);
    daemon.wait_record(&call.call_id, 5 * SECOND);

    // A caller who hangs up in the menu, having chosen nothing.
    let caller = Caller::udp(daemon.sip);
    let (mut call, _answer, t0) = caller.call(&daemon, &[PCMU], CALLER_HZ);
    caller.rtp.wait_tone(MENU_HZ, 10, t0, 15 * SECOND);
    assert_eq!(call.bye().status(), Some(200));
    daemon.wait_record(&call.call_id, 5 * SECOND);

    // Responses of each kind: 200 to OPTIONS, 481 to a BYE for no dialog, the guard's own 501.
    assert_eq!(caller.out_of_dialog(&daemon, "OPTIONS"), 200);
    assert_eq!(caller.out_of_dialog(&daemon, "BYE"), 481);
    assert_eq!(caller.out_of_dialog(&daemon, "FOO"), 501);

    wait_for(&daemon, "knappval_calls_active", &[], 0.0);
    let after = scrape(&daemon);
    let calls = |function: &str, outcome: &str| {
        value(
            &after,
            "knappval_calls_total",
            &[("function", function), ("outcome", outcome)],
        )
    };
    assert_eq!(calls("it", "transferred"), Some(1.0));
    assert_eq!(calls("", "abandoned"), Some(1.0));
    let all_calls: f64 = after
        .samples
        .iter()
        .filter(|s| s.metric == "knappval_calls_total")
        .map(|s| match s.value {
            Value::Counter(v) => v,
            _ => 0.0,
        })
        .sum();
    assert_eq!(all_calls, 2.0, "{:#?}", after.samples);
    assert_eq!(expect(&after, "knappval_calls_in_menu", &[]), 0.0);
    assert_eq!(expect(&after, "knappval_calls_bridged", &[]), 0.0);
    for class in ["1xx", "2xx", "4xx", "5xx"] {
        let sent = expect(
            &after,
            "knappval_sip_responses_total",
            &[("code_class", class)],
        );
        assert!(sent >= 1.0, "{class}: {sent}");
    }
    // Two answered INVITEs, two BYEs and an OPTIONS at least.
    assert!(
        expect(
            &after,
            "knappval_sip_responses_total",
            &[("code_class", "2xx")]
        ) >= 5.0
    );
    // Seconds of menu audio to two callers and relayed audio both ways: hundreds of packets.
    let packets = expect(&after, "knappval_rtp_packets_sent_total", &[]);
    assert!(packets >= 100.0, "{packets} RTP packets");
    for name in [
        "knappval_rtp_frames_late_total",
        "knappval_rtp_frames_skipped_total",
    ] {
        assert!(expect(&after, name, &[]) >= 0.0);
    }
    let documented: BTreeSet<String> = after.docs.keys().cloned().collect();
    // This menu has no queue, so there is no per-queue sample (the queue tests below see those).
    let without_queues: BTreeSet<String> = names()
        .into_iter()
        .filter(|name| !name.starts_with("knappval_queue_"))
        .collect();
    assert_eq!(documented, without_queues, "the metrics /metrics documents");
    let status = daemon.stop(15 * SECOND);
    assert!(status.success(), "knappval exited with {status}");
}

#[test]
fn queue_metrics_follow_callers_who_wait_give_up_and_are_answered() {
    let kt = FunctionEndpoint::new(&[PCMU, PCMA]);
    let mut spec = QueueSpec::new(&[ANNA.0.to_string()]);
    // Anna's phone rings until the test answers it.
    spec.ring_timeout = "60s";
    let mut daemon = start_with_agents(&spec, &kt);
    let it = [("queue", "it")];
    let agents = |state| [("queue", "it"), ("state", state)];

    // The configured queue shows with nobody in it, and Anna, not registered yet, as unregistered.
    let empty = scrape(&daemon);
    assert_eq!(expect(&empty, "knappval_calls_in_queue", &[]), 0.0);
    assert_eq!(expect(&empty, "knappval_queue_calls_waiting", &it), 0.0);
    assert_eq!(
        expect(&empty, "knappval_queue_longest_wait_seconds", &it),
        0.0
    );
    assert_eq!(
        expect(&empty, "knappval_queue_agents", &agents("unregistered")),
        1.0
    );
    assert_eq!(
        expect(&empty, "knappval_queue_agents", &agents("idle")),
        0.0
    );

    // Two callers wait: no agent can be offered.
    let (first_caller, first, _) = call_the_queue(&daemon, "0701000001");
    wait_for(&daemon, "knappval_queue_calls_waiting", &it, 1.0);
    let (_second_caller, mut second, _) = call_the_queue(&daemon, "0701000002");
    wait_for(&daemon, "knappval_queue_calls_waiting", &it, 2.0);
    let waiting = wait_for(&daemon, "knappval_calls_in_queue", &[], 2.0);
    assert_eq!(expect(&waiting, "knappval_calls_in_menu", &[]), 0.0);
    assert_eq!(expect(&waiting, "knappval_calls_active", &[]), 2.0);
    let longest = expect(&waiting, "knappval_queue_longest_wait_seconds", &it);
    assert!(longest > 0.0, "longest wait {longest}");
    wait_until_read(
        &daemon,
        "knappval_queue_longest_wait_seconds",
        &it,
        "more than before",
        |seconds| seconds > longest,
    );

    // The second caller gives up.
    assert_eq!(second.bye().status(), Some(200));
    daemon.wait_record(&second.call_id, 5 * SECOND);
    wait_for(&daemon, "knappval_queue_calls_waiting", &it, 1.0);
    let one_left = wait_for(&daemon, "knappval_calls_in_queue", &[], 1.0);
    let documented: BTreeSet<String> = one_left.docs.keys().cloned().collect();
    assert_eq!(documented, names(), "the metrics /metrics documents");

    // Anna registers, is offered the first caller and answers: nobody waits, the call is bridged.
    let (_phone, anna) = registered_phone(&daemon, ANNA, 600);
    let mut offer = anna.expect_call(10 * SECOND);
    wait_for(&daemon, "knappval_queue_agents", &agents("ringing"), 1.0);
    anna.answer(&mut offer, FUNCTION_HZ);
    first_caller
        .rtp
        .wait_tone(FUNCTION_HZ, 10, Instant::now(), 10 * SECOND);
    let bridged = wait_for(&daemon, "knappval_calls_bridged", &[], 1.0);
    for (name, labels, wanted) in [
        ("knappval_calls_in_queue", &[][..], 0.0),
        ("knappval_calls_in_menu", &[], 0.0),
        ("knappval_queue_calls_waiting", &it, 0.0),
        ("knappval_queue_longest_wait_seconds", &it, 0.0),
        ("knappval_queue_agents", &agents("talking"), 1.0),
        ("knappval_queue_agents", &agents("unregistered"), 0.0),
    ] {
        assert_eq!(expect(&bridged, name, labels), wanted, "{name} {labels:?}");
    }

    assert_eq!(offer.call.bye().status(), Some(200));
    first.expect_bye(10 * SECOND);
    daemon.wait_record(&first.call_id, 5 * SECOND);
    wait_for(&daemon, "knappval_calls_active", &[], 0.0);
    let after = wait_for(&daemon, "knappval_queue_agents", &agents("idle"), 1.0);
    assert_eq!(expect(&after, "knappval_calls_in_queue", &[]), 0.0);
    assert_eq!(expect(&after, "knappval_calls_bridged", &[]), 0.0);
    let status = daemon.stop(15 * SECOND);
    assert!(status.success(), "knappval exited with {status}");
}

#[test]
fn a_caller_who_overflows_leaves_the_queue_and_goes_back_to_the_menu_gauge() {
    let nobody = FunctionEndpoint::new(&[PCMU]);
    let kt = FunctionEndpoint::new(&[PCMU, PCMA]);
    let mut spec = QueueSpec::new(&[nobody.uri("nobody")]);
    spec.max_wait = "6s";
    spec.ring_timeout = "60s";
    let mut daemon = start(&spec, &kt);
    let it = [("queue", "it")];

    let (caller, mut call, _) = call_the_queue(&daemon, "0705000000");
    let offer = nobody.expect_call(10 * SECOND);
    offer.send_provisional(180, "Ringing");
    let waiting = wait_for(&daemon, "knappval_calls_in_queue", &[], 1.0);
    assert_eq!(expect(&waiting, "knappval_queue_calls_waiting", &it), 1.0);
    assert_eq!(expect(&waiting, "knappval_calls_in_menu", &[]), 0.0);

    // At max_wait the offer is CANCELled and the caller goes to the overflow function, Kundtjänst, which rings:
    // back with the flow, as a call is while its function rings.
    expect_cancel(&offer);
    let mut overflow = kt.expect_call(10 * SECOND);
    let ringing = wait_for(&daemon, "knappval_calls_in_menu", &[], 1.0);
    assert_eq!(expect(&ringing, "knappval_calls_in_queue", &[]), 0.0);
    assert_eq!(expect(&ringing, "knappval_queue_calls_waiting", &it), 0.0);
    assert_eq!(expect(&ringing, "knappval_calls_active", &[]), 1.0);

    kt.answer(&mut overflow, FUNCTION_HZ);
    caller
        .rtp
        .wait_tone(FUNCTION_HZ, 10, Instant::now(), 10 * SECOND);
    wait_for(&daemon, "knappval_calls_bridged", &[], 1.0);
    assert_eq!(call.bye().status(), Some(200));
    overflow.call.expect_bye(10 * SECOND);
    daemon.wait_record(&call.call_id, 5 * SECOND);
    let after = wait_for(&daemon, "knappval_calls_active", &[], 0.0);
    for name in [
        "knappval_calls_in_queue",
        "knappval_calls_in_menu",
        "knappval_calls_bridged",
    ] {
        assert_eq!(expect(&after, name, &[]), 0.0, "{name}");
    }
    let status = daemon.stop(15 * SECOND);
    assert!(status.success(), "knappval exited with {status}");
}

/// The names `/metrics` exposes once every family has a sample.
fn names() -> BTreeSet<String> {
    knappval::metrics::NAMES
        .iter()
        .map(|n| n.to_string())
        .collect()
}

#[test]
fn every_metric_the_grafana_dashboard_asks_for_is_exposed() {
    let exposed = names();
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/packaging/grafana/knappval.json"
    );
    let text = std::fs::read_to_string(path).expect("packaging/grafana/knappval.json");
    let dashboard: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
    let mut expressions = Vec::new();
    collect_exprs(&dashboard, &mut expressions);
    assert!(!expressions.is_empty(), "the dashboard has no queries");
    let mut used = BTreeSet::new();
    for expr in &expressions {
        for word in expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
            if word.starts_with("knappval_") {
                used.insert(word.to_string());
            }
        }
    }
    let unknown: Vec<&String> = used.difference(&exposed).collect();
    assert!(
        unknown.is_empty(),
        "the dashboard asks for {unknown:?}, which /metrics does not have"
    );
    for wanted in [
        "knappval_calls_total",
        "knappval_calls_active",
        "knappval_calls_in_menu",
        "knappval_calls_in_queue",
        "knappval_calls_bridged",
        "knappval_sip_responses_total",
        "knappval_rtp_frames_late_total",
        "knappval_rtp_frames_skipped_total",
        "knappval_queue_calls_waiting",
        "knappval_queue_longest_wait_seconds",
        "knappval_queue_agents",
    ] {
        assert!(
            used.contains(wanted),
            "the dashboard does not show {wanted}"
        );
    }
}

/// Every `expr` in the dashboard's panels' targets.
fn collect_exprs(value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, v) in map {
                match (key.as_str(), v) {
                    ("expr", serde_json::Value::String(expr)) => out.push(expr.clone()),
                    _ => collect_exprs(v, out),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| collect_exprs(v, out)),
        _ => {}
    }
}
