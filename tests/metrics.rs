//! `GET /metrics` through the daemon, read by a Prometheus text parser after real calls: calls by function and
//! outcome, the gauges while a call is in the menu and bridged, SIP responses by class (the guard's own 501
//! too), RTP packets; and the Grafana dashboard shipped in packaging/ asks only for metrics /metrics has.

mod common;

use common::audio::{CALLER_HZ, FUNCTION_HZ, MENU_HZ};
use common::daemon::http_get_with;
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
fn wait_for(daemon: &Daemon, name: &str, labels: &[(&str, &str)], wanted: f64) {
    let deadline = Instant::now() + 10 * SECOND;
    loop {
        let scrape = scrape(daemon);
        if value(&scrape, name, labels) == Some(wanted) {
            return;
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
    assert_eq!(documented, names(), "the metrics /metrics documents");
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
        "knappval_calls_bridged",
        "knappval_sip_responses_total",
        "knappval_rtp_frames_late_total",
        "knappval_rtp_frames_skipped_total",
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
