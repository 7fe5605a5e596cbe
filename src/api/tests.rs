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
            records: Records::new(store),
            health: Arc::new(Health::new()),
            registrar: None,
            token: None,
            metrics: crate::metrics::Metrics::new(),
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
        let exchange = async {
            let mut stream = TcpStream::connect(self.address).await.unwrap();
            let request = format!(
                "{method} {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
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
        let body = if body.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::from_str(body).unwrap_or_else(|e| panic!("JSON body ({e}): {body}"))
        };
        (status, body)
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
        Err(StoreError::CorruptRow {
            row_id: 7,
            column: "outcome",
            reason: "unknown outcome".into(),
        })
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
