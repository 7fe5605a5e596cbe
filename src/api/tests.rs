//! The API over a real socket on loopback, spoken to in raw HTTP/1.1.

use std::net::SocketAddr;
use std::time::Duration;

use time::OffsetDateTime;
use time::macros::datetime;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::*;
use crate::flow::Outcome;
use crate::records::stats::{MenuFunnel, StatsQuery, StatsReport};
use crate::records::{ContactRecord, ContactStore, RecordUpdate, SqliteStore, StoreError};

/// Long enough for a loaded shared machine; only reached when something hangs.
const PATIENCE: Duration = Duration::from_secs(10);

struct TestServer {
    address: SocketAddr,
    state: ApiState,
    stop: oneshot::Sender<()>,
    task: JoinHandle<io::Result<()>>,
}

impl TestServer {
    async fn start(store: Arc<dyn ContactStore>) -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let state = ApiState {
            service_level: crate::records::stats::DEFAULT_SERVICE_LEVEL,
            records: Records::new(store),
            health: Arc::new(Health::new()),
            queues: crate::routing::queue::QueueHandle::start(
                tokio::sync::watch::channel(Arc::new(menu_with_a_queue())).1,
                Arc::new(crate::routing::queue::NoRegistrations::default()),
            ),
            registrar: None,
            token: None,
            metrics: crate::metrics::Metrics::new(),
            time_zone: crate::records::stats::time_zone("Europe/Stockholm").unwrap(),
            names: Arc::new(|| MenuNames {
                menu: "Testkommun".into(),
                functions: vec![FunctionName {
                    id: "it".into(),
                    name: "IT Kundservice".into(),
                }],
            }),
            announcements: None,
        };
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(serve(listener, state.clone(), async move {
            let _ = stopped.await;
        }));
        TestServer {
            address,
            state,
            stop,
            task,
        }
    }

    async fn with_records(records: &[ContactRecord]) -> TestServer {
        let store = SqliteStore::open_in_memory().unwrap();
        let whole: Vec<RecordUpdate> = records
            .iter()
            .map(|record| RecordUpdate::Whole(Box::new(record.clone())))
            .collect();
        store.write(&whole).unwrap();
        TestServer::start(Arc::new(store)).await
    }

    /// Sends one request and returns the status and the JSON body.
    async fn request(&self, method: &str, target: &str) -> (u16, serde_json::Value) {
        let (status, _, body) = self.exchange(method, target, "").await;
        let body = if body.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::from_str(&body).unwrap_or_else(|e| panic!("JSON body ({e}): {body}"))
        };
        (status, body)
    }

    /// Sends one request with `headers` (each line ending in CRLF); returns status, head and body text.
    async fn exchange(&self, method: &str, target: &str, headers: &str) -> (u16, String, String) {
        let exchange = async {
            let mut stream = TcpStream::connect(self.address).await.unwrap();
            let request = format!(
                "{method} {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n{headers}Connection: close\r\n\r\n"
            );
            stream.write_all(request.as_bytes()).await.unwrap();
            let mut response = Vec::new();
            stream.read_to_end(&mut response).await.unwrap();
            response
        };
        let response = tokio::time::timeout(PATIENCE, exchange)
            .await
            .expect("server answered");
        let text = String::from_utf8(response).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").expect("a complete response");
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|code| code.parse().ok())
            .expect("a status line");
        (status, head.to_string(), body.to_string())
    }

    async fn get(&self, target: &str) -> (u16, serde_json::Value) {
        self.request("GET", target).await
    }

    async fn stop(self) {
        self.stop.send(()).unwrap();
        let result = tokio::time::timeout(PATIENCE, self.task)
            .await
            .expect("server stopped after the shutdown signal");
        result.unwrap().unwrap();
    }
}

fn record(call_id: &str, started_at: OffsetDateTime) -> ContactRecord {
    let mut record = ContactRecord::started(call_id, "0701234567", "0771100200", started_at);
    record.path = vec!["root".into()];
    record.digits = "1".into();
    record.function = Some("kundtjanst".into());
    record.finish(
        Outcome::Abandoned,
        started_at + time::Duration::seconds(12),
        "caller BYE",
    );
    record
}

fn call_ids(body: &serde_json::Value) -> Vec<&str> {
    body.as_array()
        .expect("a JSON array")
        .iter()
        .map(|r| r["call_id"].as_str().unwrap())
        .collect()
}

fn three_calls() -> Vec<ContactRecord> {
    vec![
        record("morning", datetime!(2026-11-23 08:00 UTC)),
        record("noon", datetime!(2026-11-23 12:00 UTC)),
        record("evening", datetime!(2026-11-23 18:00 UTC)),
    ]
}

/// One queue with a registered agent (who never registers here) and a fixed desk phone.
fn menu_with_a_queue() -> crate::menu::model::Menu {
    use crate::menu::model::*;
    let queue = Queue {
        agents: vec![
            QueueAgent::Registered("it-anna".into()),
            QueueAgent::Fixed("sip:it-desk@192.0.2.5".into()),
        ],
        strategy: Strategy::LongestIdle,
        ring_timeout: Duration::from_secs(15),
        wrap_up: Duration::from_secs(10),
        max_wait: Duration::from_secs(600),
        music: "hold-music".into(),
        announce_position: None,
    };
    let it = Function {
        id: "it".into(),
        name: "IT".into(),
        target: String::new(),
        transfer: TransferMode::Queue,
        queue: Some(queue),
        ring_timeout: Duration::from_secs(30),
        transfer_prompt: None,
        failure_prompt: None,
        on_failure: FailureAction::Hangup,
        announcement: None,
        hours: None,
    };
    let root = MenuNode {
        id: ROOT_MENU.into(),
        greeting: None,
        prompt: "main-menu".into(),
        timeout: Duration::from_secs(5),
        retries: 2,
        invalid: None,
        options: [('1', Choice::Route("it".into()))].into(),
        fallback: Choice::Hangup,
    };
    Menu {
        name: "Test".into(),
        functions: [("it".to_string(), it)].into(),
        menus: [(ROOT_MENU.to_string(), root)].into(),
        hours: None,
        languages: None,
    }
}

#[tokio::test]
async fn queues_lists_each_queue_with_its_agents_and_no_one_waiting() {
    let server = TestServer::start(Arc::new(SqliteStore::open_in_memory().unwrap())).await;
    let (status, body) = server.get("/api/v1/queues").await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        serde_json::json!([{
            "function": "it",
            "waiting": [],
            "agents": [
                { "id": "it-anna", "state": "unregistered" },
                { "id": "sip:it-desk@192.0.2.5", "state": "idle" },
            ],
            "longest_wait_ms": 0,
            "in_menu": true,
        }])
    );
    server.stop().await;
}

#[tokio::test]
async fn contacts_are_newest_first_with_every_field() {
    let calls = three_calls();
    let server = TestServer::with_records(&calls).await;
    let (status, body) = server.get("/api/v1/contacts").await;
    assert_eq!(status, 200);
    assert_eq!(call_ids(&body), ["evening", "noon", "morning"]);
    assert_eq!(body[0], serde_json::to_value(&calls[2]).unwrap());
    // Both keys: our own record id and the caller leg's Call-ID.
    assert_eq!(body[0]["id"], calls[2].id.as_str());
    assert_eq!(body[0]["call_id"], "evening");
    assert_eq!(body[0]["duration_ms"], 12_000);
    server.stop().await;
}

#[tokio::test]
async fn since_and_limit_narrow_the_list() {
    let server = TestServer::with_records(&three_calls()).await;
    let (status, body) = server
        .get("/api/v1/contacts?since=2026-11-23T12:00:00Z")
        .await;
    assert_eq!(status, 200);
    assert_eq!(call_ids(&body), ["evening", "noon"]);
    // 13:00+01:00 is noon UTC, escaped as it should be...
    let (_, body) = server
        .get("/api/v1/contacts?since=2026-11-23T13:00:00%2B01:00")
        .await;
    assert_eq!(call_ids(&body), ["evening", "noon"]);
    // ...and as people type it.
    let (status, body) = server
        .get("/api/v1/contacts?since=2026-11-23T13:00:00+01:00")
        .await;
    assert_eq!(status, 200);
    assert_eq!(call_ids(&body), ["evening", "noon"]);
    let (_, body) = server.get("/api/v1/contacts?limit=1").await;
    assert_eq!(call_ids(&body), ["evening"]);
    let (_, body) = server
        .get("/api/v1/contacts?since=2026-11-24T00:00:00Z")
        .await;
    assert_eq!(body, serde_json::json!([]));
    server.stop().await;
}

#[tokio::test]
async fn the_default_limit_is_a_thousand() {
    let start = datetime!(2026-11-23 08:00 UTC);
    let calls: Vec<ContactRecord> = (0..=DEFAULT_LIMIT as i64)
        .map(|i| record(&format!("c{i}"), start + time::Duration::seconds(i)))
        .collect();
    let server = TestServer::with_records(&calls).await;
    let (status, body) = server.get("/api/v1/contacts").await;
    assert_eq!(status, 200);
    let ids = call_ids(&body);
    assert_eq!(ids.len(), DEFAULT_LIMIT);
    assert_eq!(ids[0], format!("c{DEFAULT_LIMIT}"));
    let (_, body) = server.get("/api/v1/contacts?limit=10000").await;
    assert_eq!(call_ids(&body).len(), DEFAULT_LIMIT + 1);
    server.stop().await;
}

#[tokio::test]
async fn bad_parameters_get_a_json_400_that_says_what_to_do() {
    let server = TestServer::with_records(&three_calls()).await;
    for target in [
        "/api/v1/contacts?since=yesterday",
        "/api/v1/contacts?since=2026-11-23",
        "/api/v1/contacts?limit=many",
        "/api/v1/contacts?limit=-1",
        "/api/v1/contacts?limit=10001",
    ] {
        let (status, body) = server.get(target).await;
        assert_eq!(status, 400, "{target}");
        assert!(
            body["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{target}: {body}"
        );
        assert!(
            body["help"].as_str().is_some_and(|h| !h.is_empty()),
            "{target}: {body}"
        );
    }
    let (_, body) = server.get("/api/v1/contacts?since=yesterday").await;
    assert!(
        body["error"].as_str().unwrap().contains("'yesterday'"),
        "{body}"
    );
    assert!(body["help"].as_str().unwrap().contains("since="), "{body}");
    server.stop().await;
}

#[tokio::test]
async fn healthz_reports_calls_and_turns_503_while_draining() {
    let server = TestServer::with_records(&[]).await;
    server.state.health.active_calls.store(3, Ordering::Relaxed);
    let (status, body) = server.get("/healthz").await;
    assert_eq!(status, 200);
    assert_eq!(body["status"], "ok");
    assert_eq!(body["active_calls"], 3);
    assert_eq!(
        body["records"],
        serde_json::json!({ "pending": 0, "last_error": null })
    );
    assert_eq!(body["draining"], false);
    assert_eq!(body["functions"], serde_json::json!({}));
    server.state.health.functions.publish(
        "it",
        crate::routing::probe::TargetStatus {
            target: "sip:it@127.0.0.1:5073".into(),
            state: crate::routing::probe::TargetState::Down,
            probing: true,
            last_probe: Some("2026-12-01T00:00:00Z".into()),
            last_result: Some("no response within 4s".into()),
        },
    );
    let (status, body) = server.get("/healthz").await;
    assert_eq!(
        status, 200,
        "a target that is down does not fail the health check"
    );
    assert_eq!(body["functions"]["it"]["state"], "down", "{body}");
    assert_eq!(body["functions"]["it"]["target"], "sip:it@127.0.0.1:5073");
    server.state.health.draining.store(true, Ordering::Relaxed);
    let (status, body) = server.get("/healthz").await;
    assert_eq!(status, 503);
    assert_eq!(body["status"], "draining");
    assert_eq!(body["draining"], true);
    server.stop().await;
}

#[tokio::test]
async fn unknown_paths_are_a_json_404_and_other_methods_405() {
    let server = TestServer::with_records(&[]).await;
    let (status, body) = server.get("/api/v1/contactz").await;
    assert_eq!(status, 404);
    assert!(body["help"].as_str().unwrap().contains("/api/v1/contacts"));
    let (status, _) = server.request("DELETE", "/api/v1/contacts").await;
    assert_eq!(status, 405);
    server.stop().await;
}

/// Stands for a database that cannot be read.
struct Unreadable;

impl ContactStore for Unreadable {
    fn write(&self, _: &[RecordUpdate]) -> Result<(), StoreError> {
        Ok(())
    }
    fn probe_write(&self) -> Result<(), StoreError> {
        Ok(())
    }
    fn close_unfinished(&self, _: OffsetDateTime) -> Result<usize, StoreError> {
        Ok(0)
    }
    fn delete_started_before(&self, _: OffsetDateTime) -> Result<usize, StoreError> {
        Ok(0)
    }
    fn list(&self, _: &ContactQuery) -> Result<Vec<ContactRecord>, StoreError> {
        Err(unreadable())
    }
    fn stats(&self, _: &StatsQuery) -> Result<StatsReport, StoreError> {
        Err(unreadable())
    }
    fn menu_funnel(
        &self,
        _: jiff::Timestamp,
        _: jiff::Timestamp,
    ) -> Result<MenuFunnel, StoreError> {
        Err(unreadable())
    }
}

fn unreadable() -> StoreError {
    StoreError::CorruptRow {
        row_id: 7,
        column: "outcome",
        reason: "unknown outcome".into(),
    }
}

#[tokio::test]
async fn a_store_failure_is_a_json_500_without_internals() {
    let server = TestServer::start(Arc::new(Unreadable)).await;
    let (status, body) = server.get("/api/v1/contacts").await;
    assert_eq!(status, 500);
    assert!(!body["error"].as_str().unwrap().contains("row 7"), "{body}");
    server.stop().await;
}

/// Calls on the spring-forward day (2026-03-29, 23 hours in Stockholm), one with a function id a spreadsheet would
/// run.
fn spring_calls() -> Vec<ContactRecord> {
    let mut calls = vec![
        record("night", datetime!(2026-03-28 23:30 UTC)),
        record("evening", datetime!(2026-03-29 21:30 UTC)),
        record("next-day", datetime!(2026-03-29 22:30 UTC)),
    ];
    calls[1].function = Some("=HYPERLINK(\"http://x\")".into());
    calls
}

#[tokio::test]
async fn stats_rows_are_local_days_with_the_zone_offset() {
    let server = TestServer::with_records(&spring_calls()).await;
    let (status, body) = server
        .get("/api/v1/stats?from=2026-03-29&to=2026-03-31&group_by=day")
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["from"], "2026-03-29T00:00:00+01:00");
    assert_eq!(body["to"], "2026-03-31T00:00:00+02:00");
    assert_eq!(body["group_by"], "day");
    let rows = body["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["key"], "2026-03-29T00:00:00+01:00");
    assert_eq!(rows[0]["calls"], 2);
    assert_eq!(rows[0]["abandoned"], 2);
    assert_eq!(rows[1]["key"], "2026-03-30T00:00:00+02:00");
    assert_eq!(rows[1]["calls"], 1);
    for field in [
        "transferred",
        "timeout",
        "failed",
        "menu_time_avg_ms",
        "menu_time_p90_ms",
    ] {
        assert!(rows[0].get(field).is_some(), "{field} in {body}");
    }
    let (_, body) = server
        .get("/api/v1/stats?from=2026-03-29T00:00:00%2B01:00&to=2026-03-30T00:00:00%2B02:00&group_by=hour&function=kundtjanst")
        .await;
    assert_eq!(body["rows"].as_array().unwrap().len(), 23, "{body}");
    assert_eq!(body["rows"][0]["calls"], 1);
    server.stop().await;
}

fn parse_csv(body: &str) -> (Vec<String>, Vec<Vec<String>>) {
    let mut reader = csv::Reader::from_reader(body.as_bytes());
    let header = reader.headers().unwrap().iter().map(String::from).collect();
    let rows = reader
        .records()
        .map(|r| r.unwrap().iter().map(String::from).collect())
        .collect();
    (header, rows)
}

/// A JSON value as its CSV cell: null is empty, strings bare.
fn cell(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::Null => String::new(),
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[tokio::test]
async fn stats_csv_has_the_json_rows_and_guards_formulas() {
    let server = TestServer::with_records(&spring_calls()).await;
    let query = "/api/v1/stats?from=2026-03-29&to=2026-03-31&group_by=function";
    let (_, json) = server.get(query).await;
    let (status, head, by_param) = server
        .exchange("GET", &format!("{query}&format=csv"), "")
        .await;
    assert_eq!(status, 200);
    assert!(
        head.to_ascii_lowercase().contains("content-type: text/csv"),
        "{head}"
    );
    let (status, _, by_accept) = server.exchange("GET", query, "Accept: text/csv\r\n").await;
    assert_eq!(status, 200);
    assert_eq!(by_param, by_accept);
    let (header, rows) = parse_csv(&by_param);
    let json_rows = json["rows"].as_array().unwrap();
    assert_eq!(rows.len(), json_rows.len());
    for (csv_row, json_row) in rows.iter().zip(json_rows) {
        for (name, value) in header.iter().zip(csv_row) {
            let expected = cell(&json_row[name]);
            if expected.starts_with('=') {
                // The one cell a spreadsheet would run arrives as text.
                assert_eq!(value, &format!("'{expected}"));
            } else {
                assert_eq!(value, &expected, "{name} in {csv_row:?} vs {json_row}");
            }
        }
    }
    assert!(header.iter().any(|h| h == "menu_time_p90_ms"), "{header:?}");
    assert!(by_param.contains("'=HYPERLINK"), "{by_param}");
    // Accept: text/csv loses to an explicit format=json.
    let (_, head, _) = server
        .exchange(
            "GET",
            &format!("{query}&format=json"),
            "Accept: text/csv\r\n",
        )
        .await;
    assert!(
        head.to_ascii_lowercase().contains("application/json"),
        "{head}"
    );
    // Accept weights decide; CSV wins a tie, as the one named on purpose.
    for (accept, csv) in [
        ("text/csv;q=0.1, application/json", false),
        ("application/json;q=0.5, text/csv", true),
        ("text/csv, */*", true),
        ("text/csv;q=0.5, */*", false),
        ("text/csv;q=0", false),
        ("*/*", false),
    ] {
        let (_, head, _) = server
            .exchange("GET", query, &format!("Accept: {accept}\r\n"))
            .await;
        assert_eq!(
            head.to_ascii_lowercase().contains("content-type: text/csv"),
            csv,
            "Accept: {accept}: {head}"
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn the_menu_funnel_is_json_or_csv() {
    let mut calls = spring_calls();
    calls[0].steps = serde_json::json!([
        {"at_ms": 0, "kind": "entered_menu", "value": "root"},
        {"at_ms": 500, "kind": "invalid_digit", "value": "4"},
        {"at_ms": 900, "kind": "digit", "value": "3"},
        {"at_ms": 900, "kind": "transfer_started", "value": "it"},
    ]);
    calls[1].steps = serde_json::json!([
        {"at_ms": 0, "kind": "entered_menu", "value": "root"},
        {"at_ms": 4000, "kind": "caller_hung_up"},
    ]);
    let server = TestServer::with_records(&calls).await;
    let query = "/api/v1/stats/menu?from=2026-03-29&to=2026-03-30";
    let (status, body) = server.get(query).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        serde_json::json!({"nodes": [{
            "menu": "root", "reached": 2, "options": {"3": 1}, "invalid": 1, "timeouts": 0, "hangups": 1
        }]})
    );
    let (status, _, csv) = server
        .exchange("GET", &format!("{query}&format=csv"), "")
        .await;
    assert_eq!(status, 200);
    let (header, rows) = parse_csv(&csv);
    assert_eq!(
        header,
        [
            "menu", "reached", "invalid", "timeouts", "hangups", "option_3"
        ]
    );
    assert_eq!(rows, [["root", "2", "1", "0", "1", "1"]]);
    server.stop().await;
}

#[tokio::test]
async fn bad_stats_parameters_get_a_400_naming_the_accepted_values() {
    let server = TestServer::with_records(&[]).await;
    let cases = [
        (
            "/api/v1/stats?from=2026-03-29&to=2026-03-30",
            "group_by is missing",
        ),
        (
            "/api/v1/stats?from=2026-03-29&to=2026-03-30&group_by=month",
            "weekday_hour",
        ),
        (
            "/api/v1/stats?to=2026-03-30&group_by=day",
            "from is missing",
        ),
        (
            "/api/v1/stats?from=yesterday&to=2026-03-30&group_by=day",
            "RFC 3339",
        ),
        (
            "/api/v1/stats?from=2026-03-30&to=2026-03-29&group_by=day",
            "later than from",
        ),
        (
            "/api/v1/stats?from=2026-03-29&to=2026-03-30&group_by=day&format=xlsx",
            "json or csv",
        ),
        (
            "/api/v1/stats?from=1990-01-01&to=2026-03-30&group_by=hour",
            "coarser group_by",
        ),
        ("/api/v1/stats/menu?from=2026-03-29", "to is missing"),
        (
            "/api/v1/stats/menu?from=2026-03-30&to=2026-03-29",
            "later than from",
        ),
    ];
    for (target, says) in cases {
        let (status, body) = server.get(target).await;
        assert_eq!(status, 400, "{target}: {body}");
        let error = body["error"].as_str().unwrap_or_default();
        assert!(error.contains(says), "{target}: {body}");
        assert!(
            body["help"].as_str().is_some_and(|h| h.contains("from=")),
            "{target}: {body}"
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn a_store_failure_in_stats_is_a_json_500() {
    let server = TestServer::start(Arc::new(Unreadable)).await;
    for target in [
        "/api/v1/stats?from=2026-03-29&to=2026-03-30&group_by=day",
        "/api/v1/stats/menu?from=2026-03-29&to=2026-03-30",
    ] {
        let (status, body) = server.get(target).await;
        assert_eq!(status, 500, "{target}: {body}");
        assert!(!body["error"].as_str().unwrap().contains("row 7"), "{body}");
    }
    server.stop().await;
}

#[tokio::test]
async fn the_function_names_come_from_the_menu() {
    let server = TestServer::with_records(&[]).await;
    let (status, body) = server.get("/api/v1/functions").await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        serde_json::json!({"menu": "Testkommun", "functions": [{"id": "it", "name": "IT Kundservice"}]})
    );
    server.stop().await;
}

#[tokio::test]
async fn the_dashboard_files_are_served_from_the_binary_with_their_types_and_a_strict_policy() {
    let server = TestServer::with_records(&[]).await;
    for (path, content_type, needle) in [
        (
            "/",
            "text/html; charset=utf-8",
            "<script src=\"/dashboard/app.js\"",
        ),
        (
            "/dashboard/app.js",
            "text/javascript; charset=utf-8",
            "/api/v1/stats",
        ),
        ("/dashboard/style.css", "text/css; charset=utf-8", ".heat-6"),
        ("/dashboard/icon.svg", "image/svg+xml", "<svg"),
    ] {
        let (status, head, body) = server.exchange("GET", path, "").await;
        assert_eq!(status, 200, "{path}: {head}");
        let head = head.to_ascii_lowercase();
        assert!(
            head.contains(&format!("content-type: {content_type}")),
            "{path}: {head}"
        );
        assert!(
            head.contains("content-security-policy: default-src 'none'; script-src 'self'"),
            "{path}: {head}"
        );
        assert!(body.contains(needle), "{path}: {body}");
    }
    server.stop().await;
}
