//! `GET /api/v1/stats` and `GET /api/v1/stats/menu`: the statistics as JSON or CSV.
//!
//! Owns their query parameters, the choice of format (`format=csv|json`, else `Accept: text/csv`) and the
//! 400 answers; the figures come from [`crate::records::stats`] through [`Records`](crate::records::Records).

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::{ApiError, ApiState, bad_request};
use crate::records::stats::{
    GroupBy, MenuFunnel, STATS_CSV_HEADER, StatsQuery, StatsReport, parse_instant,
};
use crate::records::{StoreError, write_csv};

const STATS_HELP: &str = "GET /api/v1/stats?from=<time>&to=<time>&group_by=<G>[&function=<id>]\
     [&service_level_seconds=<N>][&format=json|csv]; G is one of function, outcome, hour, weekday_hour, day, week; \
     N is the wait in whole seconds within which an answer counts toward service_level; a time is RFC 3339 \
     (2026-03-29T00:00:00%2B01:00 or 2026-03-28T23:00:00Z) or a date (2026-03-29, midnight in the configured zone)";
const MENU_HELP: &str = "GET /api/v1/stats/menu?from=<time>&to=<time>[&format=json|csv]; a time is RFC 3339 \
     (2026-03-29T00:00:00%2B01:00 or 2026-03-28T23:00:00Z) or a date (2026-03-29, midnight in the configured zone)";

/// Kept as text so that a bad value gets our JSON answer, not the extractor's plain-text one.
#[derive(Deserialize)]
pub(super) struct StatsParams {
    from: Option<String>,
    to: Option<String>,
    group_by: Option<String>,
    function: Option<String>,
    service_level_seconds: Option<String>,
    format: Option<String>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Format {
    Json,
    Csv,
}

fn format(
    params: &StatsParams,
    headers: &HeaderMap,
    help: &'static str,
) -> Result<Format, ApiError> {
    match params
        .format
        .as_deref()
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("json") => Ok(Format::Json),
        Some("csv") => Ok(Format::Csv),
        Some(other) => Err(bad_request(
            format!("format '{other}' is not known; use json or csv"),
            help,
        )),
        None => {
            let accept: Vec<String> = headers
                .get_all(header::ACCEPT)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .map(str::to_ascii_lowercase)
                .collect();
            let csv = preference(&accept, &["text/csv"]);
            let json = preference(&accept, &["application/json", "application/*", "*/*"]);
            // Named with a weight no lower than JSON's: CSV (it is only ever named on purpose).
            Ok(if csv > 0.0 && csv >= json {
                Format::Csv
            } else {
                Format::Json
            })
        }
    }
}

/// The highest weight (`q`, RFC 9110 §12.5.1; 1 when not given) the Accept values give any of `ranges`; 0 when
/// none is named.
fn preference(accept: &[String], ranges: &[&str]) -> f32 {
    accept
        .iter()
        .flat_map(|value| value.split(','))
        .filter_map(|item| {
            let mut parts = item.split(';').map(str::trim);
            let range = parts.next()?;
            if !ranges.contains(&range) {
                return None;
            }
            let q = parts
                .filter_map(|param| param.strip_prefix("q="))
                .find_map(|q| q.parse::<f32>().ok())
                .unwrap_or(1.0);
            Some(q.clamp(0.0, 1.0))
        })
        .fold(0.0, f32::max)
}

fn range(
    state: &ApiState,
    params: &StatsParams,
    help: &'static str,
) -> Result<(jiff::Timestamp, jiff::Timestamp), ApiError> {
    let instant = |name: &'static str, value: &Option<String>| match value.as_deref() {
        None => Err(bad_request(format!("{name} is missing"), help)),
        Some(text) => parse_instant(name, text, &state.time_zone)
            .map_err(|error| bad_request(error.to_string(), help)),
    };
    Ok((instant("from", &params.from)?, instant("to", &params.to)?))
}

fn store_error(error: StoreError, help: &'static str) -> ApiError {
    match error {
        StoreError::Stats(error) => bad_request(error.to_string(), help),
        error => {
            tracing::error!(%error, "statistics could not be read for the API");
            ApiError {
                status: StatusCode::INTERNAL_SERVER_ERROR,
                error: "the contact records could not be read".into(),
                help: "the daemon's log says why; try again later",
            }
        }
    }
}

fn csv_response(header: Vec<String>, rows: Vec<Vec<String>>) -> Result<Response, ApiError> {
    let mut body = Vec::new();
    write_csv(&mut body, header, rows).map_err(|error| {
        tracing::error!(%error, "statistics CSV could not be written");
        ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            error: "the CSV could not be written".into(),
            help: "the daemon's log says why; ask for format=json",
        }
    })?;
    Ok((
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/csv; charset=utf-8"),
        )],
        body,
    )
        .into_response())
}

pub(super) async fn stats(
    State(state): State<ApiState>,
    headers: HeaderMap,
    params: Result<Query<StatsParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(params) =
        params.map_err(|rejection| bad_request(rejection.body_text(), STATS_HELP))?;
    let format = format(&params, &headers, STATS_HELP)?;
    let group_by: GroupBy = match params.group_by.as_deref() {
        None => return Err(bad_request("group_by is missing".into(), STATS_HELP)),
        Some(text) => text
            .parse()
            .map_err(|error: crate::records::stats::StatsError| {
                bad_request(error.to_string(), STATS_HELP)
            })?,
    };
    let (from, to) = range(&state, &params, STATS_HELP)?;
    let mut query = StatsQuery::new(from, to, group_by, state.time_zone.clone())
        .map_err(|error| bad_request(error.to_string(), STATS_HELP))?;
    query.function = params.function.filter(|f| !f.is_empty());
    query.service_level = match params.service_level_seconds.as_deref() {
        None | Some("") => state.service_level,
        Some(text) => text
            .trim()
            .parse::<u32>()
            .map(|seconds| std::time::Duration::from_secs(seconds.into()))
            .map_err(|_| {
                bad_request(
                    format!("service_level_seconds '{text}' is not a whole number of seconds"),
                    STATS_HELP,
                )
            })?,
    };
    let report: StatsReport = state
        .records
        .stats(query)
        .await
        .map_err(|error| store_error(error, STATS_HELP))?;
    match format {
        Format::Json => Ok(Json(report).into_response()),
        Format::Csv => csv_response(
            STATS_CSV_HEADER.iter().map(|h| h.to_string()).collect(),
            report
                .rows
                .iter()
                .map(|row| row.csv_cells().to_vec())
                .collect(),
        ),
    }
}

pub(super) async fn menu(
    State(state): State<ApiState>,
    headers: HeaderMap,
    params: Result<Query<StatsParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(params) =
        params.map_err(|rejection| bad_request(rejection.body_text(), MENU_HELP))?;
    let format = format(&params, &headers, MENU_HELP)?;
    let (from, to) = range(&state, &params, MENU_HELP)?;
    if to <= from {
        return Err(bad_request(
            format!("to ({to}) must be later than from ({from})"),
            MENU_HELP,
        ));
    }
    let funnel: MenuFunnel = state
        .records
        .menu_funnel(from, to)
        .await
        .map_err(|error| store_error(error, MENU_HELP))?;
    match format {
        Format::Json => Ok(Json(funnel).into_response()),
        Format::Csv => csv_response(funnel.csv_header(), funnel.csv_rows()),
    }
}
