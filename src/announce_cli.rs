//! `knappval announce on|off|list`: the announcement board of a running daemon, through its HTTP API.
//!
//! Owns the command's wording and its HTTP/1.1 client: one request per connection on loopback or the admin
//! network, `Connection: close`, a JSON body at most. A dozen lines of HTTP, rather than an HTTP client crate
//! with its TLS and connection pools for three requests.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use anyhow::{Context, bail};
use jiff::Timestamp;
use jiff::tz::TimeZone;
use serde_json::Value;

/// How long the daemon may take to answer one request.
const PATIENCE: Duration = Duration::from_secs(10);

/// `--until` as the API takes it: RFC 3339 as given, or `HH:MM` today in `zone` (which must be ahead).
pub fn until_rfc3339(text: &str, zone: &TimeZone, now: Timestamp) -> anyhow::Result<String> {
    let text = text.trim();
    if let Ok(at) = text.parse::<Timestamp>() {
        return Ok(at.to_string());
    }
    let Some((hour, minute)) = text
        .split_once(':')
        .filter(|(h, m)| h.len() <= 2 && m.len() == 2)
        .and_then(|(h, m)| Some((h.parse::<i8>().ok()?, m.parse::<i8>().ok()?)))
    else {
        bail!(
            "--until '{text}' is neither RFC 3339 (2026-12-01T16:00:00+01:00) nor HH:MM (16:00, meaning today)"
        );
    };
    let today = zone.to_datetime(now).date();
    let not_a_time = || format!("--until '{text}' is not a time of day (HH:MM, 00:00 to 23:59)");
    let time = jiff::civil::Time::new(hour, minute, 0, 0).with_context(not_a_time)?;
    let at = zone
        .to_ambiguous_timestamp(today.to_datetime(time))
        .compatible()
        .with_context(not_a_time)?;
    if at <= now {
        bail!(
            "--until {text} is already past today in {}; give a later time, or a date as RFC 3339",
            zone.iana_name().unwrap_or("the service's time zone")
        );
    }
    Ok(at.to_string())
}

/// `announce on`: puts up `prompt` (for one function's callers when `function` is given).
pub fn on(
    http: &str,
    prompt: &str,
    until: Option<String>,
    function: Option<&str>,
) -> anyhow::Result<()> {
    let mut body = serde_json::json!({ "prompt": prompt });
    if let Some(until) = until {
        body["until"] = Value::String(until);
    }
    if let Some(function) = function {
        body["function"] = Value::String(function.to_string());
    }
    let created = expect(
        request(http, "POST", "/api/v1/announcements", Some(&body))?,
        201,
    )?;
    println!("{}", describe(&created));
    Ok(())
}

/// `announce off ID`.
pub fn off(http: &str, id: &str) -> anyhow::Result<()> {
    if id.is_empty() || !id.chars().all(|c| c.is_ascii_alphanumeric()) {
        bail!("'{id}' is not an announcement id; `knappval announce list` shows them");
    }
    expect(
        request(http, "DELETE", &format!("/api/v1/announcements/{id}"), None)?,
        204,
    )?;
    println!("announcement {id} off");
    Ok(())
}

/// `announce list`: one line per active announcement, oldest first.
pub fn list(http: &str) -> anyhow::Result<()> {
    let list = expect(request(http, "GET", "/api/v1/announcements", None)?, 200)?;
    let items = list.as_array().cloned().unwrap_or_default();
    if items.is_empty() {
        println!("no announcements");
    }
    for item in &items {
        println!("{}", describe(item));
    }
    Ok(())
}

/// `a3f09c12  email-down  until 2026-12-01T15:00:00.000Z  (since ...)`.
fn describe(announcement: &Value) -> String {
    let text = |key: &str| announcement[key].as_str().unwrap_or("").to_string();
    let mut line = format!("{}  {}", text("id"), text("prompt"));
    if let Some(function) = announcement["function"].as_str() {
        line.push_str(&format!("  when {function} is chosen"));
    }
    match announcement["until"].as_str() {
        Some(until) => line.push_str(&format!("  until {until}")),
        None => line.push_str("  until taken off"),
    }
    line.push_str(&format!("  (since {})", text("created_at")));
    line
}

/// The JSON body of a response with the `want`ed status, or the daemon's error and help as the error.
fn expect((status, body): (u16, String), want: u16) -> anyhow::Result<Value> {
    let json: Value = if body.trim().is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&body).unwrap_or(Value::String(body))
    };
    if status == want {
        return Ok(json);
    }
    match (json["error"].as_str(), json["help"].as_str()) {
        (Some(error), Some(help)) => bail!("{error} ({help})"),
        (Some(error), None) => bail!("{error}"),
        _ => bail!("the daemon answered {status}: {json}"),
    }
}

/// One HTTP/1.1 request; (status, body).
fn request(
    http: &str,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> anyhow::Result<(u16, String)> {
    let authority = http
        .trim()
        .trim_start_matches("http://")
        .trim_end_matches('/');
    let unreachable = || {
        format!(
            "cannot reach knappval's HTTP API at {authority}; is the daemon running? give its address with \
             --http HOST:PORT (or KNAPPVAL_HTTP)"
        )
    };
    let address = authority
        .to_socket_addrs()
        .with_context(unreachable)?
        .next()
        .with_context(unreachable)?;
    let mut stream = TcpStream::connect_timeout(&address, PATIENCE).with_context(unreachable)?;
    stream.set_read_timeout(Some(PATIENCE))?;
    stream.set_write_timeout(Some(PATIENCE))?;
    let body = body.map(Value::to_string).unwrap_or_default();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {authority}\r\nAccept: application/json\r\nConnection: close\r\n"
    );
    if method == "POST" {
        head.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    stream.write_all(body.as_bytes())?;
    let mut raw = Vec::new();
    stream
        .read_to_end(&mut raw)
        .with_context(|| format!("no complete answer from {authority}"))?;
    parse_response(&raw).with_context(|| format!("{authority} did not answer in HTTP"))
}

fn parse_response(raw: &[u8]) -> anyhow::Result<(u16, String)> {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .context("no end of the headers")?;
    let head = String::from_utf8_lossy(&raw[..split]);
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .context("no status")?;
    let header = |name: &str| {
        head.lines().skip(1).find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.trim()
                .eq_ignore_ascii_case(name)
                .then(|| value.trim().to_ascii_lowercase())
        })
    };
    let mut body = raw[split + 4..].to_vec();
    if header("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        body = dechunk(&body).context("a broken chunked body")?;
    } else if let Some(length) = header("content-length").and_then(|v| v.parse::<usize>().ok()) {
        body.truncate(length);
    }
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

fn dechunk(mut data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let end = data.windows(2).position(|w| w == b"\r\n")?;
        let size_text = String::from_utf8_lossy(&data[..end]);
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        data = &data[end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(data.get(..size)?);
        data = data.get(size + 2..)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn until_takes_rfc3339_or_a_time_today_in_the_zone() {
        let zone = TimeZone::get("Europe/Stockholm").unwrap();
        // 09:30 in Stockholm (CET, +01:00).
        let now: Timestamp = "2026-12-01T08:30:00Z".parse().unwrap();
        assert_eq!(
            until_rfc3339("16:00", &zone, now).unwrap(),
            "2026-12-01T15:00:00Z"
        );
        assert_eq!(
            until_rfc3339("2026-12-02T10:00:00+01:00", &zone, now).unwrap(),
            "2026-12-02T09:00:00Z"
        );
        let past = until_rfc3339("09:00", &zone, now).unwrap_err().to_string();
        assert!(past.contains("already past"), "{past}");
        assert!(until_rfc3339("25:00", &zone, now).is_err());
        assert!(until_rfc3339("soon", &zone, now).is_err());
    }

    #[test]
    fn responses_are_read_with_length_or_chunks() {
        let plain = b"HTTP/1.1 201 Created\r\ncontent-length: 2\r\n\r\n{}xx";
        assert_eq!(parse_response(plain).unwrap(), (201, "{}".into()));
        let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n[]\r\n0\r\n\r\n";
        assert_eq!(parse_response(chunked).unwrap(), (200, "[]".into()));
    }
}
