//! The dashboard page for managers at `GET /`: one HTML page, its script and its style sheet, all compiled into
//! the binary so that the page works on a network without internet access (no CDN, nothing fetched elsewhere).
//!
//! Owns the page's files and the headers they are served with. The page draws its charts itself (SVG from
//! plain JavaScript) from the same `/api/v1/stats`, `/api/v1/stats/menu` and `/api/v1/functions` answers any
//! other client gets; it has no data route of its own.

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::ApiState;

/// The page's own files: path, content, type. They hold no data.
const FILES: [(&str, &str, &str); 4] = [
    (
        "/",
        include_str!("dashboard/index.html"),
        "text/html; charset=utf-8",
    ),
    (
        "/dashboard/app.js",
        include_str!("dashboard/app.js"),
        "text/javascript; charset=utf-8",
    ),
    (
        "/dashboard/style.css",
        include_str!("dashboard/style.css"),
        "text/css; charset=utf-8",
    ),
    (
        "/dashboard/icon.svg",
        include_str!("dashboard/icon.svg"),
        "image/svg+xml",
    ),
];

/// Only the page's own origin may serve script, style and data: an injected tag cannot load anything.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

pub(super) fn routes() -> Router<ApiState> {
    FILES
        .into_iter()
        .fold(Router::new(), |router, (path, body, content_type)| {
            router.route(path, get(move || async move { page(body, content_type) }))
        })
}

fn page(body: &'static str, content_type: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            // Revalidated on every load, so that a new daemon's page never runs against an old script.
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(CONTENT_SECURITY_POLICY),
            ),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
        ],
        body,
    )
        .into_response()
}
