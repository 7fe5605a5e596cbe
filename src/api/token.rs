//! The bearer token that guards the HTTP side (`--api-token-file`): contact records, statistics and metrics
//! say who called and when, so with a token every path but [`OPEN_PATHS`] needs `Authorization: Bearer <token>`
//! and anything else gets 401 with `WWW-Authenticate: Bearer` (RFC 6750).
//!
//! Owns reading the token file and the comparison; the router applies it in front of every route, so a route
//! added later is guarded unless it is listed here as open.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use crate::sip::digest::constant_time_eq;

/// Paths served without the token: the health check, which load balancers poll without credentials and which
/// tells nothing about callers, and the dashboard's own files (the same for every daemon, no data): the page asks
/// for the token once when its data calls get 401.
pub const OPEN_PATHS: &[&str] = &[
    "/healthz",
    "/",
    "/dashboard/app.js",
    "/dashboard/style.css",
    "/dashboard/icon.svg",
];

/// The token, kept only as its SHA-256: comparing two digests of fixed length in constant time tells an
/// attacker neither the token's length nor how much of a guess was right.
#[derive(Clone)]
pub struct ApiToken {
    digest: [u8; 32],
}

impl std::fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiToken(..)")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("cannot read the API token file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the API token file {path} is empty: write a long random token into it, e.g. `openssl rand -hex 32 > {path}`"
    )]
    Empty { path: PathBuf },
    #[error(
        "the API token in {path} has a character a Bearer token cannot carry (RFC 6750 allows letters, digits and \
         -._~+/ with = at the end only): e.g. `openssl rand -hex 32 > {path}`"
    )]
    BadCharacter { path: PathBuf },
}

impl ApiToken {
    /// Reads the token from `path`; surrounding whitespace and the trailing newline are not part of it.
    pub fn read(path: &Path) -> Result<ApiToken, TokenError> {
        let text = std::fs::read_to_string(path).map_err(|source| TokenError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let token = text.trim();
        if token.is_empty() {
            return Err(TokenError::Empty {
                path: path.to_path_buf(),
            });
        }
        if !is_b64token(token) {
            return Err(TokenError::BadCharacter {
                path: path.to_path_buf(),
            });
        }
        Ok(ApiToken::new(token))
    }

    pub fn new(token: &str) -> ApiToken {
        ApiToken {
            digest: Sha256::digest(token.as_bytes()).into(),
        }
    }

    /// What an `Authorization` header's value is worth.
    pub fn check(&self, authorization: Option<&HeaderValue>) -> Check {
        let Some(value) = authorization.and_then(|v| v.to_str().ok()) else {
            return Check::Missing;
        };
        let Some((scheme, presented)) = value.trim().split_once(' ') else {
            return Check::Missing;
        };
        // The scheme is case-insensitive (RFC 7235 §2.1); the token is not.
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Check::Missing;
        }
        let presented: [u8; 32] = Sha256::digest(presented.trim().as_bytes()).into();
        if constant_time_eq(&presented, &self.digest) {
            Check::Admitted
        } else {
            Check::Wrong
        }
    }
}

/// RFC 6750 §2.1 b64token: `1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`.
fn is_b64token(token: &str) -> bool {
    let body = token.trim_end_matches('=');
    !body.is_empty()
        && body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    Admitted,
    /// No Bearer credentials at all.
    Missing,
    /// A Bearer token, not ours.
    Wrong,
}

/// The middleware: with a token configured, every request but [`OPEN_PATHS`] must carry it.
pub async fn require(
    State(token): State<Option<Arc<ApiToken>>>,
    request: Request,
    next: Next,
) -> Response {
    let Some(token) = token else {
        return next.run(request).await;
    };
    if OPEN_PATHS.contains(&request.uri().path()) {
        return next.run(request).await;
    }
    let challenge = match token.check(request.headers().get(header::AUTHORIZATION)) {
        Check::Admitted => return next.run(request).await,
        Check::Missing => r#"Bearer realm="knappval""#,
        Check::Wrong => r#"Bearer realm="knappval", error="invalid_token""#,
    };
    let body = serde_json::json!({
        "error": "this needs the API token",
        "help": "send the token from the daemon's --api-token-file as `Authorization: Bearer <token>`",
    });
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, challenge)],
        axum::Json(body),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(value: &str) -> HeaderValue {
        HeaderValue::from_str(value).unwrap()
    }

    #[test]
    fn only_the_bearer_token_itself_is_admitted() {
        let token = ApiToken::new("s3cret-Token_1");
        assert_eq!(
            token.check(Some(&header("Bearer s3cret-Token_1"))),
            Check::Admitted
        );
        assert_eq!(
            token.check(Some(&header("bearer  s3cret-Token_1 "))),
            Check::Admitted
        );
        assert_eq!(
            token.check(Some(&header("Bearer s3cret-token_1"))),
            Check::Wrong
        );
        assert_eq!(
            token.check(Some(&header("Bearer s3cret-Token_12"))),
            Check::Wrong
        );
        assert_eq!(token.check(Some(&header("Bearer "))), Check::Missing);
        assert_eq!(token.check(Some(&header("Basic czNjcmV0"))), Check::Missing);
        assert_eq!(token.check(Some(&header("s3cret-Token_1"))), Check::Missing);
        assert_eq!(token.check(None), Check::Missing);
    }

    #[test]
    fn the_file_gives_the_token_without_its_whitespace() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "  abc.DEF~123==  \n\n").unwrap();
        let token = ApiToken::read(&path).unwrap();
        assert_eq!(
            token.check(Some(&header("Bearer abc.DEF~123=="))),
            Check::Admitted
        );
        std::fs::write(&path, " \n\t\n").unwrap();
        let err = ApiToken::read(&path).unwrap_err().to_string();
        assert!(err.contains("is empty") && err.contains("token"), "{err}");
        std::fs::write(&path, "two words\n").unwrap();
        let err = ApiToken::read(&path).unwrap_err().to_string();
        assert!(err.contains("RFC 6750"), "{err}");
        let missing = ApiToken::read(&dir.path().join("nope")).unwrap_err();
        assert!(missing.to_string().contains("nope"), "{missing}");
    }
}
