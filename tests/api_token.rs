//! `--api-token-file` through the daemon: the API and /metrics answer only with the bearer token, /healthz stays
//! open for load balancers, and a token file without a token refuses the start.

mod common;

use common::daemon::{http_get_with, os, run_cli};
use common::{Daemon, Fixture, MenuSpec};

const TOKEN: &str = "k9Zt-3mQ_vX.7~pL+w/A==";
const STATS: &str = "/api/v1/stats?from=2026-11-01&to=2026-12-01&group_by=function";
const FUNNEL: &str = "/api/v1/stats/menu?from=2026-11-01&to=2026-12-01";

fn get(daemon: &Daemon, path: &str, extra: &[&str]) -> (u16, String, String) {
    http_get_with(daemon.http, path, extra)
        .unwrap_or_else(|e| panic!("GET {path}: {e}; log:\n{}", daemon.log_text()))
}

fn www_authenticate(head: &str) -> Option<String> {
    head.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.trim()
            .eq_ignore_ascii_case("www-authenticate")
            .then(|| value.trim().to_string())
    })
}

#[test]
fn with_a_token_file_the_api_and_metrics_need_the_bearer_token_and_healthz_stays_open() {
    let fixture = Fixture::new();
    fixture.write_menu(&MenuSpec::new("sip:it@127.0.0.1:9", "sip:kt@127.0.0.1:9").yaml());
    let token_file = fixture.path("api-token");
    // Surrounding whitespace and the trailing newline are not part of the token.
    std::fs::write(&token_file, format!("\n  {TOKEN}  \n\n")).expect("write the token file");
    let token_arg = token_file.to_str().expect("utf-8 path").to_string();
    let mut daemon = Daemon::start_with(fixture, &["--api-token-file", &token_arg]);
    let bearer = format!("Authorization: Bearer {TOKEN}");

    for path in [
        "/api/v1/contacts",
        "/api/v1/agents",
        STATS,
        FUNNEL,
        "/metrics",
        "/api/v1/nothing-here",
    ] {
        let (status, head, body) = get(&daemon, path, &[]);
        assert_eq!(status, 401, "{path} without a token: {body}");
        let challenge = www_authenticate(&head).unwrap_or_default();
        assert!(challenge.starts_with("Bearer"), "{path}: {head}");
        assert!(!challenge.contains("invalid_token"), "{path}: {head}");

        let (status, head, _) = get(&daemon, path, &["Authorization: Bearer not-the-token"]);
        assert_eq!(status, 401, "{path} with a wrong token");
        assert!(
            www_authenticate(&head).is_some_and(|c| c.contains(r#"error="invalid_token""#)),
            "{path}: {head}"
        );
        let (status, _, _) = get(&daemon, path, &[&format!("Authorization: Bearer {TOKEN}x")]);
        assert_eq!(status, 401, "{path} with the token and one more character");
        let (status, _, _) = get(&daemon, path, &[&format!("Authorization: Basic {TOKEN}")]);
        assert_eq!(status, 401, "{path} with the token under another scheme");
    }
    for path in [
        "/api/v1/contacts",
        "/api/v1/agents",
        STATS,
        FUNNEL,
        "/metrics",
    ] {
        let (status, _, body) = get(&daemon, path, &[&bearer]);
        assert_eq!(status, 200, "{path} with the token: {body}");
    }
    let (status, _, _) = get(&daemon, "/api/v1/nothing-here", &[&bearer]);
    assert_eq!(
        status, 404,
        "with the token, an unknown path is simply not there"
    );
    let (status, _, _) = get(
        &daemon,
        "/api/v1/contacts",
        &[&format!("authorization: bearer {TOKEN}")],
    );
    assert_eq!(status, 200, "header name and scheme in any case");

    let (status, _, body) = get(&daemon, "/healthz", &[]);
    assert_eq!(status, 200, "/healthz without a token: {body}");
    let status = daemon.stop(15 * common::SECOND);
    assert!(status.success(), "knappval exited with {status}");
}

#[test]
fn without_a_token_file_the_api_is_open_as_before() {
    let fixture = Fixture::new();
    fixture.write_menu(&MenuSpec::new("sip:it@127.0.0.1:9", "sip:kt@127.0.0.1:9").yaml());
    let daemon = Daemon::start(fixture);
    for path in ["/api/v1/contacts", "/metrics", "/healthz"] {
        let (status, _, body) = get(&daemon, path, &[]);
        assert_eq!(status, 200, "{path}: {body}");
    }
}

#[test]
fn an_empty_token_file_refuses_the_start() {
    let fixture = Fixture::new();
    fixture.write_menu(&MenuSpec::new("sip:it@127.0.0.1:9", "sip:kt@127.0.0.1:9").yaml());
    let token_file = fixture.path("api-token");
    std::fs::write(&token_file, " \n\n").expect("write the token file");
    let output = run_cli(&[
        os("run"),
        os("--menu"),
        fixture.menu.as_os_str(),
        os("--prompts"),
        fixture.prompts.as_os_str(),
        os("--db"),
        fixture.db.as_os_str(),
        os("--sip"),
        os("127.0.0.1:0"),
        os("--http"),
        os("127.0.0.1:0"),
        os("--api-token-file"),
        token_file.as_os_str(),
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success(),
        "started with an empty token: {stderr}"
    );
    assert!(
        stderr.contains("api-token") && stderr.contains("is empty"),
        "{stderr}"
    );
}
