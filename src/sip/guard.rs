//! The door in front of the SIP stack: every UDP datagram passes [`inspect`] before rsipstack sees it.
//!
//! rsipstack drops what it cannot parse without a word, and its parser knows only the methods it implements.
//! RFC 3261 wants more of a UAS: an unknown method is answered 501 (§8.2.1), a request missing a mandatory
//! header or claiming more body than the datagram holds is answered 400 (§8.2.2, §18.3). This module decides,
//! from the raw bytes and without I/O, whether a datagram goes on, gets such an answer, or is dropped; the
//! answer is built from the request's own header lines so it reaches the sender even when the full parser failed.
//! [`GuardedUdpSocket`] applies the verdicts on a real socket. It never panics on any input.

use crate::metrics::Metrics;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rsipstack::sip::SipMessage;
use rsipstack::sip::prelude::{HeadersExt, ToTypedHeader};

/// Methods rsipstack parses. Anything else that looks like a method gets 501.
const KNOWN_METHODS: [&str; 14] = [
    "ACK",
    "BYE",
    "CANCEL",
    "INFO",
    "INVITE",
    "MESSAGE",
    "NOTIFY",
    "OPTIONS",
    "PRACK",
    "PUBLISH",
    "REFER",
    "REGISTER",
    "SUBSCRIBE",
    "UPDATE",
];

/// What to do with one datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Well-formed enough for the stack: hand it on.
    Pass,
    /// Answer the sender with these bytes and do not hand it on.
    Reply { response: Vec<u8>, reason: String },
    /// Nothing sensible can be answered (garbage, a broken response, no Via): drop it.
    Drop { reason: String },
}

/// Judges one datagram. Pure: no I/O, no clock.
pub fn inspect(datagram: &[u8]) -> Verdict {
    // CRLF keep-alives (RFC 5626) and stray whitespace: the stack answers or ignores them.
    if datagram.iter().all(|b| b.is_ascii_whitespace()) {
        return Verdict::Pass;
    }
    let head_end = find_head_end(datagram);
    let head = match std::str::from_utf8(&datagram[..head_end.unwrap_or(datagram.len())]) {
        Ok(head) => head,
        Err(_) => {
            return Verdict::Drop {
                reason: "message head is not UTF-8 text".into(),
            };
        }
    };
    let first_line = head.lines().next().unwrap_or("").trim_end();
    if first_line.starts_with("SIP/") {
        // A response we cannot parse cannot be answered; the stack decides about parseable ones.
        return match SipMessage::try_from(datagram) {
            Ok(_) => Verdict::Pass,
            Err(e) => Verdict::Drop {
                reason: format!("malformed response: {e}"),
            },
        };
    }
    let Some(method) = request_method(first_line) else {
        return Verdict::Drop {
            reason: format!("not a SIP request line: {:?}", truncate(first_line, 80)),
        };
    };
    let lines = RawHeaders::new(head);
    if method == "ACK" {
        // An ACK is never answered (RFC 3261 §17.2.3): pass it if it parses, drop it if not.
        return match SipMessage::try_from(datagram) {
            Ok(_) => Verdict::Pass,
            Err(e) => Verdict::Drop {
                reason: format!("malformed ACK: {e}"),
            },
        };
    }
    if !KNOWN_METHODS.contains(&method) {
        return lines.answer(
            501,
            "Not Implemented",
            &format!("method {method} is not supported"),
        );
    }
    let Some(head_end) = head_end else {
        return lines.answer(
            400,
            "Bad Request",
            "message head does not end with an empty line",
        );
    };
    if let Some(problem) = lines.problem() {
        return lines.answer(400, "Bad Request", &problem);
    }
    let body_len = datagram.len() - head_end;
    if let Some(declared) = lines.get(&["content-length", "l"]) {
        match declared.trim().parse::<usize>() {
            Ok(declared) if declared > body_len => {
                return lines.answer(
                    400,
                    "Bad Request",
                    &format!(
                        "Content-Length {declared} exceeds the {body_len} body bytes received"
                    ),
                );
            }
            Ok(_) => {}
            Err(_) => return lines.answer(400, "Bad Request", "Content-Length is not a number"),
        }
    }
    let request = match SipMessage::try_from(datagram) {
        Ok(SipMessage::Request(request)) => request,
        Ok(SipMessage::Response(_)) => {
            return Verdict::Drop {
                reason: "request line parsed as a response".into(),
            };
        }
        Err(e) => return lines.answer(400, "Bad Request", &format!("unparseable request: {e}")),
    };
    if let Err(missing) = check_mandatory(&request) {
        return lines.answer(400, "Bad Request", &missing);
    }
    Verdict::Pass
}

/// The checks rsipstack's transaction layer relies on (RFC 3261 §8.1.1): without them it would drop the request.
fn check_mandatory(request: &rsipstack::sip::Request) -> Result<(), String> {
    let via = request
        .top_via_header()
        .map_err(|_| "missing Via".to_string())?;
    via.typed().map_err(|e| format!("bad Via: {e}"))?;
    let from = request
        .from_header()
        .map_err(|_| "missing From".to_string())?;
    match from.tag() {
        Ok(Some(_)) => {}
        _ => return Err("From has no tag".into()),
    }
    let to = request.to_header().map_err(|_| "missing To".to_string())?;
    to.tag().map_err(|e| format!("bad To: {e}"))?;
    request
        .call_id_header()
        .map_err(|_| "missing Call-ID".to_string())?;
    let cseq = request
        .cseq_header()
        .map_err(|_| "missing CSeq".to_string())?;
    cseq.seq().map_err(|e| format!("bad CSeq: {e}"))?;
    match cseq.method() {
        Ok(method) if method == request.method => Ok(()),
        Ok(method) => Err(format!(
            "CSeq method {method} does not match request method {}",
            request.method
        )),
        Err(e) => Err(format!("bad CSeq: {e}")),
    }
}

/// `METHOD SP Request-URI SP SIP/2.0`, the method a token (RFC 3261 §25.1).
fn request_method(first_line: &str) -> Option<&str> {
    let mut parts = first_line.split(' ');
    let method = parts.next()?;
    let _uri = parts.next().filter(|uri| !uri.is_empty())?;
    let version = parts.next()?;
    if parts.next().is_some() || !version.eq_ignore_ascii_case("SIP/2.0") {
        return None;
    }
    is_token(method).then_some(method)
}

/// Headers a request carries exactly once, with their compact forms.
const SINGLE_HEADERS: [&[&str]; 6] = [
    &["CSeq"],
    &["Call-ID", "i"],
    &["From", "f"],
    &["To", "t"],
    &["Content-Length", "l"],
    &["Max-Forwards"],
];

fn is_token(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b))
}

fn find_head_end(datagram: &[u8]) -> Option<usize> {
    datagram
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| i + 4)
        .or_else(|| {
            datagram
                .windows(2)
                .position(|w| w == b"\n\n")
                .map(|i| i + 2)
        })
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// Header lines of a request head, unfolded, read without the full parser.
struct RawHeaders<'a> {
    lines: Vec<(&'a str, String)>,
    /// Lines that are neither `name: value` nor a continuation, for a 400.
    broken: Vec<&'a str>,
}

impl<'a> RawHeaders<'a> {
    fn new(head: &'a str) -> Self {
        let mut lines: Vec<(&'a str, String)> = Vec::new();
        let mut broken = Vec::new();
        for line in head.lines().skip(1) {
            let line = line.trim_end_matches('\r');
            if line.is_empty() {
                break;
            }
            if line.starts_with([' ', '\t']) {
                // A folded continuation line (RFC 3261 §7.3.1) belongs to the previous header.
                if let Some((_, value)) = lines.last_mut() {
                    value.push(' ');
                    value.push_str(line.trim());
                }
                continue;
            }
            match line.split_once(':') {
                Some((name, value)) if is_token(name.trim()) => {
                    lines.push((name.trim(), value.trim().to_string()))
                }
                _ => broken.push(line),
            }
        }
        RawHeaders { lines, broken }
    }

    /// Header lines that cannot be read, or a header that must appear once appearing twice (RFC 3261 §7.3).
    fn problem(&self) -> Option<String> {
        if let Some(line) = self.broken.first() {
            return Some(format!("not a header line: {:?}", truncate(line, 60)));
        }
        for names in SINGLE_HEADERS {
            let count = self
                .lines
                .iter()
                .filter(|(name, _)| Self::is(name, names))
                .count();
            if count > 1 {
                return Some(format!("{} appears {count} times", names[0]));
            }
        }
        None
    }

    fn is(name: &str, names: &[&str]) -> bool {
        names.iter().any(|n| name.eq_ignore_ascii_case(n))
    }

    fn get(&self, names: &[&str]) -> Option<&str> {
        self.lines
            .iter()
            .find(|(name, _)| Self::is(name, names))
            .map(|(_, value)| value.as_str())
    }

    /// A response built from the request's own Via, From, To, Call-ID and CSeq (RFC 3261 §8.2.6).
    /// Without a Via there is nowhere to send it: dropped instead.
    fn answer(&self, code: u16, phrase: &str, reason: &str) -> Verdict {
        let vias: Vec<&str> = self
            .lines
            .iter()
            .filter(|(name, _)| Self::is(name, &["via", "v"]))
            .map(|(_, value)| value.as_str())
            .collect();
        if vias.is_empty() {
            return Verdict::Drop {
                reason: format!("{reason} (and no Via to answer to)"),
            };
        }
        let mut response = format!("SIP/2.0 {code} {phrase}\r\n");
        for via in vias {
            response.push_str(&format!("Via: {via}\r\n"));
        }
        if let Some(from) = self.get(&["from", "f"]) {
            response.push_str(&format!("From: {from}\r\n"));
        }
        if let Some(to) = self.get(&["to", "t"]) {
            if to.to_ascii_lowercase().contains(";tag=") {
                response.push_str(&format!("To: {to}\r\n"));
            } else {
                response.push_str(&format!("To: {to};tag={}\r\n", error_tag()));
            }
        }
        if let Some(call_id) = self.get(&["call-id", "i"]) {
            response.push_str(&format!("Call-ID: {call_id}\r\n"));
        }
        if let Some(cseq) = self.get(&["cseq"]) {
            response.push_str(&format!("CSeq: {cseq}\r\n"));
        }
        if code == 501 || code == 405 {
            response.push_str(&format!("Allow: {}\r\n", crate::sip::ALLOWED_METHODS));
        }
        // RFC 3261 §20.43: a human-readable reason helps whoever reads the trace on the other side.
        let warning = reason.replace(['"', '\r', '\n'], "'");
        response.push_str(&format!(
            "Warning: 399 knappval \"{}\"\r\nServer: knappval\r\nContent-Length: 0\r\n\r\n",
            truncate(&warning, 200)
        ));
        Verdict::Reply {
            response: response.into_bytes(),
            reason: reason.to_string(),
        }
    }
}

fn error_tag() -> String {
    format!("kv{:08x}", rand::random::<u32>())
}

/// A UDP socket for rsipstack's `UdpConnection::from_socket` that applies [`inspect`] to every datagram:
/// rsipstack reads only what passes; the rest is answered or dropped here, and logged without flooding.
pub struct GuardedUdpSocket {
    socket: tokio::net::UdpSocket,
    log: RateLimitedLog,
    /// The guard's own answers (400, 501) are SIP responses sent like any other.
    metrics: Metrics,
}

impl GuardedUdpSocket {
    pub fn new(socket: tokio::net::UdpSocket, metrics: Metrics) -> Arc<Self> {
        Arc::new(GuardedUdpSocket {
            socket,
            log: RateLimitedLog::default(),
            metrics,
        })
    }
}

/// The status code of a response the guard built (`SIP/2.0 400 ...`).
fn status_of(response: &[u8]) -> Option<u16> {
    std::str::from_utf8(response.get(8..11)?).ok()?.parse().ok()
}

#[async_trait::async_trait]
impl rsipstack::platform::net::UdpSocket for GuardedUdpSocket {
    async fn recv_from(&self, buf: &mut [u8]) -> rsipstack::Result<(usize, SocketAddr)> {
        loop {
            let (len, from) = self.socket.recv_from(buf).await?;
            match inspect(&buf[..len]) {
                Verdict::Pass => return Ok((len, from)),
                Verdict::Reply { response, reason } => {
                    self.log.warn(from, &reason, true);
                    match self.socket.send_to(&response, from).await {
                        Ok(_) => {
                            if let Some(code) = status_of(&response) {
                                self.metrics.sip_response_sent(code);
                            }
                        }
                        Err(e) => {
                            tracing::debug!(%from, error = %e, "could not send the error response")
                        }
                    }
                }
                Verdict::Drop { reason } => self.log.warn(from, &reason, false),
            }
        }
    }

    async fn send_to(&self, buf: &[u8], addr: SocketAddr) -> rsipstack::Result<usize> {
        Ok(self.socket.send_to(buf, addr).await?)
    }

    fn local_addr(&self) -> rsipstack::Result<SocketAddr> {
        Ok(self.socket.local_addr()?)
    }
}

/// Logs bad input at most once a second; the rest is counted and reported with the next line.
#[derive(Default)]
struct RateLimitedLog {
    suppressed: AtomicU64,
    last_ms: AtomicU64,
}

impl RateLimitedLog {
    fn warn(&self, from: SocketAddr, reason: &str, answered: bool) {
        static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
        let now_ms = EPOCH.get_or_init(Instant::now).elapsed().as_millis() as u64 + 1;
        let last = self.last_ms.load(Ordering::Relaxed);
        let window = Duration::from_secs(1).as_millis() as u64;
        if last != 0 && now_ms.saturating_sub(last) < window {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.last_ms.store(now_ms, Ordering::Relaxed);
        let suppressed = self.suppressed.swap(0, Ordering::Relaxed);
        tracing::warn!(%from, answered, suppressed, "bad SIP datagram: {reason}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INVITE: &str = "INVITE sip:kommun@127.0.0.1 SIP/2.0\r\n\
        Via: SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bK776asdhds;rport\r\n\
        Max-Forwards: 70\r\n\
        To: <sip:kommun@127.0.0.1>\r\n\
        From: <sip:+4619123456@127.0.0.1>;tag=1928301774\r\n\
        Call-ID: a84b4c76e66710@127.0.0.1\r\n\
        CSeq: 314159 INVITE\r\n\
        Contact: <sip:caller@127.0.0.1:5062>\r\n\
        Content-Length: 0\r\n\r\n";

    fn reply_status(verdict: &Verdict) -> Option<String> {
        match verdict {
            Verdict::Reply { response, .. } => String::from_utf8(response.clone())
                .ok()
                .and_then(|r| r.lines().next().map(str::to_string)),
            _ => None,
        }
    }

    #[test]
    fn a_good_invite_passes() {
        assert_eq!(inspect(INVITE.as_bytes()), Verdict::Pass);
    }

    #[test]
    fn compact_and_folded_headers_pass() {
        let msg = "OPTIONS sip:kommun@127.0.0.1 SIP/2.0\r\n\
            v: SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bKc1\r\n\
            t: <sip:kommun@127.0.0.1>\r\n\
            f: <sip:a@127.0.0.1>\r\n ;tag=99\r\n\
            i: compact-1\r\n\
            CSeq: 1 OPTIONS\r\n\
            l: 0\r\n\r\n";
        assert_eq!(inspect(msg.as_bytes()), Verdict::Pass);
    }

    #[test]
    fn unknown_method_gets_501_with_allow() {
        let msg = INVITE.replace("INVITE", "FROBNICATE");
        let verdict = inspect(msg.as_bytes());
        assert_eq!(
            reply_status(&verdict).as_deref(),
            Some("SIP/2.0 501 Not Implemented")
        );
        let Verdict::Reply { response, .. } = verdict else {
            unreachable!()
        };
        let text = String::from_utf8(response).unwrap();
        assert!(text.contains("Via: SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bK776asdhds"));
        assert!(text.contains("Call-ID: a84b4c76e66710@127.0.0.1"));
        assert!(text.contains("CSeq: 314159 FROBNICATE"));
        assert!(text.contains(";tag="), "a final response needs a To tag");
        assert!(text.contains("Allow: "));
    }

    #[test]
    fn the_status_of_our_own_answers_is_read_back() {
        let Verdict::Reply { response, .. } = inspect(b"FOO sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:c@d>\r\nCall-ID: x\r\nCSeq: 1 FOO\r\nContent-Length: 0\r\n\r\n") else {
            panic!("an unknown method is answered");
        };
        assert_eq!(status_of(&response), Some(501));
        assert_eq!(status_of(b"SIP/2.0"), None);
    }

    #[test]
    fn missing_call_id_gets_400() {
        let msg = INVITE.replace("Call-ID: a84b4c76e66710@127.0.0.1\r\n", "");
        assert_eq!(
            reply_status(&inspect(msg.as_bytes())).as_deref(),
            Some("SIP/2.0 400 Bad Request")
        );
    }

    #[test]
    fn missing_from_tag_and_bad_cseq_get_400() {
        let no_tag = INVITE.replace(";tag=1928301774", "");
        assert_eq!(
            reply_status(&inspect(no_tag.as_bytes())).as_deref(),
            Some("SIP/2.0 400 Bad Request")
        );
        let bad_cseq = INVITE.replace("CSeq: 314159 INVITE", "CSeq: abc INVITE");
        assert_eq!(
            reply_status(&inspect(bad_cseq.as_bytes())).as_deref(),
            Some("SIP/2.0 400 Bad Request")
        );
        let mismatch = INVITE.replace("CSeq: 314159 INVITE", "CSeq: 314159 BYE");
        assert_eq!(
            reply_status(&inspect(mismatch.as_bytes())).as_deref(),
            Some("SIP/2.0 400 Bad Request")
        );
    }

    #[test]
    fn unreadable_header_lines_and_repeated_single_headers_get_400() {
        let junk = INVITE.replace(
            "Max-Forwards: 70\r\n",
            "Max-Forwards: 70\r\nThis line is no header\r\n",
        );
        assert_eq!(
            reply_status(&inspect(junk.as_bytes())).as_deref(),
            Some("SIP/2.0 400 Bad Request")
        );
        let nameless = INVITE.replace("Max-Forwards: 70\r\n", "Max-Forwards: 70\r\n: no name\r\n");
        assert_eq!(
            reply_status(&inspect(nameless.as_bytes())).as_deref(),
            Some("SIP/2.0 400 Bad Request")
        );
        let two_cseq = INVITE.replace(
            "CSeq: 314159 INVITE\r\n",
            "CSeq: 314159 INVITE\r\nCSeq: x INVITE\r\n",
        );
        assert_eq!(
            reply_status(&inspect(two_cseq.as_bytes())).as_deref(),
            Some("SIP/2.0 400 Bad Request")
        );
    }

    #[test]
    fn content_length_beyond_the_datagram_gets_400() {
        let msg = INVITE.replace("Content-Length: 0", "Content-Length: 99999999");
        assert_eq!(
            reply_status(&inspect(msg.as_bytes())).as_deref(),
            Some("SIP/2.0 400 Bad Request")
        );
        let msg = INVITE.replace("Content-Length: 0", "Content-Length: lots");
        assert_eq!(
            reply_status(&inspect(msg.as_bytes())).as_deref(),
            Some("SIP/2.0 400 Bad Request")
        );
    }

    #[test]
    fn garbage_and_headless_input_is_dropped_not_answered() {
        for input in [
            &b"\x00\x01\x02\xff\xfe garbage"[..],
            b"HELLO WORLD",
            b"INVITE sip:x SIP/2.0\r\nCall-ID: 1\r\n\r\n",
            b"SIP/2.0 200\r\n",
            &[0xffu8; 3000][..],
        ] {
            assert!(
                matches!(inspect(input), Verdict::Drop { .. }),
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn truncated_messages_never_panic() {
        let bytes = INVITE.as_bytes();
        for cut in 0..bytes.len() {
            let _ = inspect(&bytes[..cut]);
        }
        // And every single-byte corruption.
        for i in 0..bytes.len() {
            let mut corrupted = bytes.to_vec();
            corrupted[i] ^= 0xA5;
            let _ = inspect(&corrupted);
        }
    }

    #[test]
    fn keepalives_pass_to_the_stack() {
        assert_eq!(inspect(b"\r\n\r\n"), Verdict::Pass);
    }
}
