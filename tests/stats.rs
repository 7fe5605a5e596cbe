//! Statistics through the daemon: real calls with digits, invalid digits, silence and hang-ups, then the menu
//! funnel and the stats rows read over HTTP (JSON and CSV) and from the `knappval stats` command.

mod common;

use common::audio::{CALLER_HZ, FUNCTION_HZ, INVALID_HZ, MENU_HZ, MORE_HZ};
use common::daemon::{os, path_arg, run_cli};
use common::sdp::PCMU;
use common::{Caller, Daemon, Fixture, FunctionEndpoint, MenuSpec, SECOND, event_pt};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

const DIGIT: Duration = Duration::from_millis(100);
/// Wide enough for any clock this test runs under; the funnel has no bucket limit.
const ALL_TIME: &str = "from=2020-01-01T00:00:00Z&to=2100-01-01T00:00:00Z";

fn get_json(daemon: &Daemon, path: &str) -> Value {
    let (status, body) = daemon.get(path);
    assert_eq!(status, 200, "GET {path}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: {e}: {body}"))
}

fn csv_rows(text: &str) -> (Vec<String>, Vec<Vec<String>>) {
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let header = reader
        .headers()
        .expect("a CSV header")
        .iter()
        .map(String::from)
        .collect();
    let rows = reader
        .records()
        .map(|r| r.expect("a CSV row").iter().map(String::from).collect())
        .collect();
    (header, rows)
}

#[test]
fn the_funnel_and_the_rows_count_real_calls_over_http_and_in_the_cli() {
    let it = FunctionEndpoint::new(&[PCMU]);
    let kt = FunctionEndpoint::new(&[PCMU]);
    let fixture = Fixture::new();
    fixture.write_menu(&MenuSpec::new(&it.uri("it"), &kt.uri("kt")).yaml());
    let mut daemon = Daemon::start_with(fixture, &["--timezone", "UTC"]);

    // Silent: the menu times out twice (retries: 1) and the fallback hangs up. Runs while the others call.
    let silent = Caller::udp(daemon.sip);
    let (silent_call, _, _) = silent.call(&daemon, &[PCMU], CALLER_HZ);

    // Presses 3 and talks to the IT function.
    let caller = Caller::udp(daemon.sip);
    let (call, answer, t0) = caller.call(&daemon, &[PCMU], CALLER_HZ);
    caller.rtp.wait_tone(MENU_HZ, 10, t0, 15 * SECOND);
    caller.rtp.send_digit('3', event_pt(&answer), DIGIT);
    let mut incoming = it.expect_call(10 * SECOND);
    let answered = Instant::now();
    it.answer(&mut incoming, FUNCTION_HZ);
    caller.rtp.wait_tone(FUNCTION_HZ, 5, answered, 10 * SECOND);
    assert_eq!(incoming.call.bye().status(), Some(200));
    call.expect_bye(10 * SECOND);
    daemon.wait_record(&call.call_id, 5 * SECOND);

    // Presses 4, which the menu does not have, hears "invalid", and hangs up.
    let caller = Caller::udp(daemon.sip);
    let (mut call, answer, t0) = caller.call(&daemon, &[PCMU], CALLER_HZ);
    caller.rtp.wait_tone(MENU_HZ, 10, t0, 15 * SECOND);
    caller.rtp.send_digit('4', event_pt(&answer), DIGIT);
    caller.rtp.wait_tone(INVALID_HZ, 12, t0, 10 * SECOND);
    assert_eq!(call.bye().status(), Some(200));
    daemon.wait_record(&call.call_id, 5 * SECOND);

    // Goes into "more" with 9, back with #, hears the main menu again and hangs up there.
    let caller = Caller::udp(daemon.sip);
    let (mut call, answer, t0) = caller.call(&daemon, &[PCMU], CALLER_HZ);
    caller.rtp.wait_tone(MENU_HZ, 10, t0, 15 * SECOND);
    caller.rtp.send_digit('9', event_pt(&answer), DIGIT);
    caller.rtp.wait_tone(MORE_HZ, 10, t0, 10 * SECOND);
    let back = Instant::now();
    caller.rtp.send_digit('#', event_pt(&answer), DIGIT);
    caller.rtp.wait_tone(MENU_HZ, 10, back, 10 * SECOND);
    assert_eq!(call.bye().status(), Some(200));
    daemon.wait_record(&call.call_id, 5 * SECOND);

    silent_call.expect_bye(30 * SECOND);
    let silent_record = daemon.wait_record(&silent_call.call_id, 5 * SECOND);
    assert_eq!(silent_record["outcome"], "timeout", "{silent_record:#}");

    let funnel = get_json(&daemon, &format!("/api/v1/stats/menu?{ALL_TIME}"));
    assert_eq!(
        funnel,
        json!({"nodes": [
            // Four callers, the one who came back from "more" counted once.
            {"menu": "root", "reached": 4, "options": {"3": 1, "9": 1}, "invalid": 1, "timeouts": 2, "hangups": 2},
            {"menu": "more", "reached": 1, "options": {"#": 1}, "invalid": 0, "timeouts": 0, "hangups": 0},
        ]}),
        "records: {:#}",
        Value::Array(daemon.contacts())
    );
    let (status, funnel_csv) = daemon.get(&format!("/api/v1/stats/menu?{ALL_TIME}&format=csv"));
    assert_eq!(status, 200);
    let (header, rows) = csv_rows(&funnel_csv);
    assert_eq!(
        header,
        [
            "menu", "reached", "invalid", "timeouts", "hangups", "option_3", "option_9", "option_#"
        ]
    );
    assert_eq!(
        rows,
        [
            ["root", "4", "1", "2", "2", "1", "1", "0"],
            ["more", "1", "0", "0", "0", "0", "0", "1"]
        ]
    );

    let by_function = get_json(
        &daemon,
        &format!("/api/v1/stats?{ALL_TIME}&group_by=function"),
    );
    let rows = by_function["rows"].as_array().expect("rows");
    assert_eq!(rows.len(), 2, "{by_function:#}");
    assert_eq!(rows[0]["key"], "it");
    assert_eq!(
        (&rows[0]["calls"], &rows[0]["transferred"]),
        (&json!(1), &json!(1))
    );
    assert!(
        rows[0]["menu_time_avg_ms"]
            .as_u64()
            .is_some_and(|ms| ms > 0 && ms < 30_000),
        "{by_function:#}"
    );
    assert!(rows[1]["key"].is_null());
    assert_eq!(
        (
            &rows[1]["calls"],
            &rows[1]["abandoned"],
            &rows[1]["timeout"]
        ),
        (&json!(3), &json!(2), &json!(1))
    );

    // --timezone UTC: today's bucket starts at midnight UTC.
    let today = time::OffsetDateTime::now_utc().date();
    let tomorrow = today.next_day().expect("a tomorrow");
    let days = get_json(
        &daemon,
        &format!("/api/v1/stats?from={today}&to={tomorrow}&group_by=day"),
    );
    assert_eq!(days["rows"][0]["key"], format!("{today}T00:00:00+00:00"));
    assert_eq!(days["rows"][0]["calls"], 4);

    let status = daemon.stop(15 * SECOND);
    assert!(status.success(), "knappval exited with {status}");

    // The same rows from the command line, as a table and as CSV.
    let db = daemon.fixture.db.clone();
    let stats_cli = |extra: &[&str]| {
        let mut args = vec![os("stats"), os("--db"), path_arg(&db)];
        args.extend(
            [
                "--from",
                "2020-01-01T00:00:00Z",
                "--to",
                "2100-01-01T00:00:00Z",
            ]
            .map(os),
        );
        args.extend(extra.iter().map(|a| os(a)));
        let output = run_cli(&args);
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(
            output.status.success(),
            "knappval stats {extra:?}: {}{stdout}",
            String::from_utf8_lossy(&output.stderr)
        );
        stdout
    };
    let table = stats_cli(&["--group-by", "outcome"]);
    // A table row's cells, whatever the border characters.
    let cells = |line: &str| -> Vec<String> {
        line.split(['│', '┆', '|'])
            .map(str::trim)
            .filter(|cell| !cell.is_empty())
            .map(String::from)
            .collect()
    };
    let line = |name: &str| {
        table
            .lines()
            .map(cells)
            .find(|row| row.first().is_some_and(|first| first == name))
            .unwrap_or_else(|| panic!("no {name} row in\n{table}"))
    };
    assert!(
        table.contains("calls started 2020-01-01T01:00:00+01:00"),
        "{table}"
    );
    assert_eq!(
        line("transferred")[..7],
        ["transferred", "1", "1", "0", "0", "0", "0"],
        "{table}"
    );
    assert_eq!(
        line("abandoned")[..4],
        ["abandoned", "2", "0", "2"],
        "{table}"
    );
    assert_eq!(
        line("timeout")[..5],
        ["timeout", "1", "0", "0", "1"],
        "{table}"
    );

    let csv = stats_cli(&["--group-by", "function", "--format", "csv"]);
    let (header, csv_rows) = csv_rows(&csv);
    assert_eq!(header[..2], ["key", "calls"]);
    assert_eq!(csv_rows.len(), 2, "{csv}");
    assert_eq!(csv_rows[0][..3], ["it", "1", "1"]);
    let menu_time = by_function["rows"][0]["menu_time_avg_ms"].to_string();
    assert_eq!(
        csv_rows[0][7], menu_time,
        "the CLI and the API agree: {csv}"
    );

    let funnel_table = stats_cli(&["--menu-funnel"]);
    assert!(funnel_table.contains("option_9"), "{funnel_table}");
    assert!(
        funnel_table.lines().any(|l| l.contains("more")),
        "{funnel_table}"
    );

    let output = run_cli(&[
        os("stats"),
        os("--db"),
        path_arg(&db),
        os("--from"),
        os("2026-01-01"),
        os("--to"),
        os("2026-01-02"),
        os("--group-by"),
        os("month"),
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("weekday_hour"), "{stderr}");
}

#[test]
fn an_unknown_time_zone_stops_the_daemon_with_the_fix() {
    let fixture = Fixture::new();
    let output = run_cli(&[
        os("run"),
        os("--menu"),
        path_arg(&fixture.menu),
        os("--db"),
        path_arg(&fixture.db),
        os("--timezone"),
        os("Europe/Stokholm"),
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("Europe/Stokholm") && stderr.contains("IANA"),
        "{stderr}"
    );
}
