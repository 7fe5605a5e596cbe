//! HTTP for operators and managers' tools: the contact records, statistics, the dashboard page that draws them,
//! the agents' registrations, the announcement board, the serving menu's version, metrics, and a health check.
//!
//! Owns the routes, their query parameters and JSON error bodies. Reads contact records through [`Records`],
//! registrations through [`Registrar`] and the daemon's state through [`Health`] only, never the call tasks'
//! insides; the one thing it changes is the announcement [`Board`].

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Instant;

use axum::Json;
use axum::Router;
use axum::extract::rejection::JsonRejection;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::announce::{AnnouncementJson, Board};
use crate::menu::model::Menu;
use crate::metrics::Metrics;
use crate::records::{ContactQuery, Records, parse_timestamp};
use crate::reload::{MenuBoard, MenuCell};
use crate::routing::probe::TargetBoard;
use crate::routing::queue::QueueHandle;
use crate::sip::Registrar;

mod token;
pub use token::{ApiToken, OPEN_PATHS, TokenError};

/// Records returned by `/api/v1/contacts` when no `limit` is given.
pub const DEFAULT_LIMIT: usize = 1000;
/// The largest `limit` accepted: one answer stays a few megabytes at most.
pub const MAX_LIMIT: usize = 10_000;

/// What the handlers share.
#[derive(Clone)]
pub struct ApiState {
    pub records: Records,
    pub health: Arc<Health>,
    pub queues: QueueHandle,
    /// The agents' registrations, when the daemon runs with `--agents`.
    pub registrar: Option<Registrar>,
    /// The zone statistics buckets are cut in.
    pub time_zone: jiff::tz::TimeZone,
    /// An agent's answer within this wait counts toward the statistics' `service_level`.
    pub service_level: std::time::Duration,
    /// With `--api-token-file`: every route but `/healthz` needs it.
    pub token: Option<Arc<ApiToken>>,
    /// What `/metrics` exposes.
    pub metrics: Metrics,
    /// The announcement board, with what an announcement may name; None: the routes answer 404.
    pub announcements: Option<Announcing>,
    /// What `/api/v1/functions` answers, asked at each request: the daemon reads the menu serving now, so that a
    /// function a reload added has its display name on the dashboard at once.
    pub names: Arc<dyn Fn() -> MenuNames + Send + Sync>,
}

/// The announcement board and what decides whether a posted announcement can play.
#[derive(Clone)]
pub struct Announcing {
    pub board: Arc<Board>,
    /// The menu serving new calls, read at each request so that a reload's prompts and functions count at once:
    /// an announcement's prompt must be in its prompt cache (the menu's prompts and every WAV in the prompts
    /// folder), and a function-scoped announcement must name one of its functions.
    pub menu: Arc<MenuCell>,
}

/// The menu's name and its support functions' display names: the statistics key rows by function id, people
/// read names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MenuNames {
    /// The menu's `name:`.
    pub menu: String,
    /// In id order.
    pub functions: Vec<FunctionName>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FunctionName {
    pub id: String,
    pub name: String,
}

impl MenuNames {
    pub fn of(menu: &Menu) -> MenuNames {
        MenuNames {
            menu: menu.name.clone(),
            functions: menu
                .functions
                .values()
                .map(|function| FunctionName {
                    id: function.id.clone(),
                    name: function.name.clone(),
                })
                .collect(),
        }
    }
}

/// The daemon's liveness as `/healthz` reports it; the call side updates it.
#[derive(Debug)]
pub struct Health {
    /// Calls currently in progress.
    pub active_calls: AtomicUsize,
    /// Set at shutdown: new calls are refused, so a load balancer should stop sending them here.
    pub draining: AtomicBool,
    pub started: Instant,
    /// Each function target's state from the OPTIONS probes.
    pub functions: TargetBoard,
    /// The serving menu's version and the last reload's error.
    pub menu: Arc<MenuBoard>,
}

impl Health {
    pub fn new() -> Self {
        Health {
            active_calls: AtomicUsize::new(0),
            draining: AtomicBool::new(false),
            started: Instant::now(),
            functions: TargetBoard::default(),
            menu: Arc::default(),
        }
    }
}

impl Default for Health {
    fn default() -> Self {
        Health::new()
    }
}

/// The routes: `GET /api/v1/contacts`, `GET /api/v1/stats`, `GET /api/v1/stats/menu`, `GET /api/v1/functions`,
/// `GET /api/v1/queues`, `GET /api/v1/agents`, `GET|POST /api/v1/announcements`, `DELETE /api/v1/announcements/ID`,
/// `GET /api/v1/menu`, `GET /healthz`, `GET /metrics` and the dashboard page at `GET /`; anything else is a JSON 404.
pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/api/v1/contacts", get(contacts))
        .route("/api/v1/stats", get(stats::stats))
        .route("/api/v1/stats/menu", get(stats::menu))
        .route("/api/v1/functions", get(functions))
        .route("/api/v1/queues", get(queues))
        .route("/api/v1/agents", get(agents))
        .route(
            "/api/v1/announcements",
            get(list_announcements).post(post_announcement),
        )
        .route("/api/v1/announcements/{id}", delete(delete_announcement))
        .route("/api/v1/menu", get(menu))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .merge(dashboard::routes())
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(
            state.token.clone(),
            token::require,
        ))
        .with_state(state)
}

/// Serves the API on `listener` until `shutdown` completes, then lets requests in flight finish.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: ApiState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    if let Ok(address) = listener.local_addr() {
        tracing::info!(%address, "HTTP API listening");
    }
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
}

/// A JSON error: what went wrong and what to do instead.
struct ApiError {
    status: StatusCode,
    error: String,
    help: &'static str,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": self.error, "help": self.help });
        (self.status, Json(body)).into_response()
    }
}

fn bad_request(error: String, help: &'static str) -> ApiError {
    ApiError {
        status: StatusCode::BAD_REQUEST,
        error,
        help,
    }
}

/// Kept as text so that a bad value gets our JSON answer, not the extractor's plain-text one.
#[derive(Deserialize)]
struct ContactsParams {
    since: Option<String>,
    limit: Option<String>,
}

const SINCE_HELP: &str = "give since as an RFC 3339 timestamp, e.g. since=2026-11-23T00:00:00Z \
     (write a + offset as %2B)";
const LIMIT_HELP: &str = "give limit as a whole number from 0 to 10000 (default 1000); \
     use since to fetch older records in parts";

async fn contacts(
    State(state): State<ApiState>,
    params: Result<Query<ContactsParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(params) = params.map_err(|rejection| {
        bad_request(
            rejection.body_text(),
            "the query takes since=<RFC 3339 timestamp> and limit=<number>",
        )
    })?;
    let query = contact_query(&params)?;
    match state.records.list(query).await {
        Ok(records) => Ok(Json(records).into_response()),
        Err(error) => {
            tracing::error!(%error, "contact records could not be read for the API");
            Err(ApiError {
                status: StatusCode::INTERNAL_SERVER_ERROR,
                error: "the contact records could not be read".into(),
                help: "the daemon's log says why; try again later",
            })
        }
    }
}

fn contact_query(params: &ContactsParams) -> Result<ContactQuery, ApiError> {
    let since = match params.since.as_deref() {
        None => None,
        Some(text) => Some(
            parse_timestamp(text)
                // An unescaped `+01:00` arrives as ` 01:00` after form decoding; it can only have meant `+`.
                .or_else(|error| {
                    if text.contains(' ') {
                        parse_timestamp(&text.replace(' ', "+"))
                    } else {
                        Err(error)
                    }
                })
                .map_err(|error| {
                    bad_request(
                        format!("since '{text}' is not an RFC 3339 timestamp: {error}"),
                        SINCE_HELP,
                    )
                })?,
        ),
    };
    let limit = match params.limit.as_deref() {
        None => DEFAULT_LIMIT,
        Some(text) => match text.parse::<usize>() {
            Ok(limit) if limit <= MAX_LIMIT => limit,
            _ => {
                return Err(bad_request(
                    format!("limit '{text}' is not a number from 0 to {MAX_LIMIT}"),
                    LIMIT_HELP,
                ));
            }
        },
    };
    Ok(ContactQuery {
        since,
        limit: Some(limit),
    })
}

async fn functions(State(state): State<ApiState>) -> Json<MenuNames> {
    Json((state.names)())
}

/// Every queue now: who waits (in line order) and how long, each agent's state, the longest wait, and whether the
/// serving menu still has it (`in_menu` false: a reload took it out while callers still wait in it).
async fn queues(State(state): State<ApiState>) -> Response {
    let millis = |d: std::time::Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    let body: Vec<serde_json::Value> = state
        .queues
        .view()
        .await
        .into_iter()
        .map(|queue| {
            let waiting: Vec<serde_json::Value> = queue
                .waiting
                .iter()
                .map(|w| {
                    serde_json::json!({
                        "call_id": w.call_id,
                        "from": w.from,
                        "waiting_ms": millis(w.waiting),
                    })
                })
                .collect();
            let agents: Vec<serde_json::Value> = queue
                .agents
                .iter()
                .map(|(id, agent_state)| serde_json::json!({ "id": id, "state": agent_state.as_str() }))
                .collect();
            serde_json::json!({
                "function": queue.function,
                "waiting": waiting,
                "agents": agents,
                "longest_wait_ms": millis(queue.longest_wait),
                "in_menu": queue.in_menu,
            })
        })
        .collect();
    Json(body).into_response()
}

/// Every agent in the agents file with its current contacts, by id; `[]` without `--agents`.
async fn agents(State(state): State<ApiState>) -> Response {
    let agents = state
        .registrar
        .map(|registrar| registrar.agents(Instant::now()))
        .unwrap_or_default();
    Json(agents).into_response()
}

/// `POST /api/v1/announcements`: what the admin sends.
#[derive(Deserialize)]
struct NewAnnouncement {
    prompt: String,
    #[serde(default)]
    until: Option<String>,
    #[serde(default)]
    function: Option<String>,
}

const ANNOUNCEMENT_HELP: &str = "send {\"prompt\": \"<prompt id>\", \"until\": \"<RFC 3339, optional>\", \
     \"function\": \"<function id, optional>\"}, e.g. {\"prompt\": \"email-down\", \"until\": \"2026-12-01T16:00:00+01:00\"}";

fn announcing(state: &ApiState) -> Result<&Announcing, ApiError> {
    state.announcements.as_ref().ok_or(ApiError {
        status: StatusCode::NOT_FOUND,
        error: "this daemon has no announcement board".into(),
        help: "announcements are served by `knappval run`",
    })
}

fn unprocessable(error: String, help: &'static str) -> ApiError {
    ApiError {
        status: StatusCode::UNPROCESSABLE_ENTITY,
        error,
        help,
    }
}

fn board_failed(error: crate::announce::BoardError) -> ApiError {
    tracing::error!(%error, "announcement board not saved");
    ApiError {
        status: StatusCode::INTERNAL_SERVER_ERROR,
        error: error.to_string(),
        help: "nothing was changed; the daemon's log says why",
    }
}

async fn list_announcements(State(state): State<ApiState>) -> Result<Response, ApiError> {
    let board = &announcing(&state)?.board;
    let list: Vec<AnnouncementJson> = board
        .active(OffsetDateTime::now_utc())
        .iter()
        .map(Into::into)
        .collect();
    Ok(Json(list).into_response())
}

async fn post_announcement(
    State(state): State<ApiState>,
    body: Result<Json<NewAnnouncement>, JsonRejection>,
) -> Result<Response, ApiError> {
    let announcing = announcing(&state)?;
    let Json(new) =
        body.map_err(|rejection| bad_request(rejection.body_text(), ANNOUNCEMENT_HELP))?;
    let now = OffsetDateTime::now_utc();
    let prompt = new.prompt.trim().to_string();
    let serving = announcing.menu.current();
    if !serving.prompts.knows(&prompt) {
        let mut known: Vec<&str> = serving.prompts.ids().collect();
        known.sort_unstable();
        return Err(unprocessable(
            format!(
                "prompt '{prompt}' is not loaded (known: {}); record it as <prompts folder>/{prompt}.wav and \
                 restart or reload knappval, or use one of the known ids",
                known.join(", ")
            ),
            ANNOUNCEMENT_HELP,
        ));
    }
    let until = match new.until.as_deref() {
        None => None,
        Some(text) => {
            let until = parse_timestamp(text).map_err(|e| {
                unprocessable(
                    format!("until '{text}' is not an RFC 3339 timestamp: {e}"),
                    ANNOUNCEMENT_HELP,
                )
            })?;
            if until <= now {
                return Err(unprocessable(
                    format!("until '{text}' is already past"),
                    "give a time in the future, or leave until out to announce until taken down",
                ));
            }
            Some(until)
        }
    };
    if let Some(function) = &new.function
        && !serving.menu.functions.contains_key(function)
    {
        let known: Vec<&str> = serving.menu.functions.keys().map(String::as_str).collect();
        return Err(unprocessable(
            format!(
                "function '{function}' is not in the menu (its functions: {})",
                known.join(", ")
            ),
            ANNOUNCEMENT_HELP,
        ));
    }
    let announcement = announcing
        .board
        .add(prompt, new.function, until, now)
        .map_err(board_failed)?;
    tracing::info!(id = %announcement.id, prompt = %announcement.prompt,
                   function = announcement.function.as_deref(), until = announcement.until.map(crate::records::format_timestamp),
                   "announcement on");
    let body = AnnouncementJson::from(&announcement);
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

async fn delete_announcement(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let board = &announcing(&state)?.board;
    if board
        .remove(&id, OffsetDateTime::now_utc())
        .map_err(board_failed)?
    {
        tracing::info!(%id, "announcement off");
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(ApiError {
            status: StatusCode::NOT_FOUND,
            error: format!("no active announcement has the id '{id}'"),
            help: "GET /api/v1/announcements lists the active ones and their ids",
        })
    }
}

/// The serving menu: `{"version", "loaded_at", "file", "error", "error_at"}`, `error` null unless the menu file
/// on disk was refused at its last reload (see [`crate::reload`]).
async fn menu(State(state): State<ApiState>) -> Response {
    match state.health.menu.snapshot() {
        Some(status) => Json(status).into_response(),
        None => ApiError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            error: "no menu loaded yet".into(),
            help: "the daemon is starting; try again in a moment",
        }
        .into_response(),
    }
}

/// `status` is `ok`, `degraded` (calls are served, but contact records wait in memory because the database
/// refuses writes: still 200, so that a load balancer keeps sending calls here, while monitoring alerts on the
/// body) or `draining` (503: send new calls elsewhere).
async fn healthz(State(state): State<ApiState>) -> Response {
    let health = &state.health;
    let draining = health.draining.load(Ordering::Relaxed);
    let writer = state.records.status();
    let last_error = writer.last_error();
    let status = match (draining, &last_error) {
        (true, _) => "draining",
        (false, Some(_)) => "degraded",
        (false, None) => "ok",
    };
    let body = serde_json::json!({
        "status": status,
        "active_calls": health.active_calls.load(Ordering::Relaxed),
        "draining": draining,
        "uptime_seconds": health.started.elapsed().as_secs(),
        // A target that is down does not make knappval unhealthy: its callers get the failure path.
        "functions": health.functions.snapshot(),
        "records": { "pending": writer.pending(), "last_error": last_error },
    });
    let status = if draining {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    (status, Json(body)).into_response()
}

/// Prometheus text format 0.0.4; the per-queue figures are the queue service's snapshot of this scrape.
async fn metrics(State(state): State<ApiState>) -> Response {
    let queues = state.queues.view().await;
    (
        [(
            axum::http::header::CONTENT_TYPE,
            crate::metrics::CONTENT_TYPE,
        )],
        state.metrics.encode(&queues),
    )
        .into_response()
}

async fn not_found() -> ApiError {
    ApiError {
        status: StatusCode::NOT_FOUND,
        error: "no such resource".into(),
        help: "the API serves GET /api/v1/contacts, /api/v1/stats, /api/v1/stats/menu, /api/v1/functions, \
               /api/v1/queues, /api/v1/agents, /api/v1/menu, GET|POST /api/v1/announcements, \
               DELETE /api/v1/announcements/ID, GET /healthz and GET /metrics; the dashboard is at /",
    }
}

mod dashboard;
mod stats;
#[cfg(test)]
mod tests;
