//! A small, tolerant SIP message parser for the test peers: start line, headers (case-insensitive, compact forms
//! expanded, folded lines joined), body by Content-Length. It judges the daemon's output, so it accepts anything
//! RFC 3261 allows and reports what it cannot read instead of panicking.

use std::fmt;

/// Compact header forms (RFC 3261 7.3.3 and the extensions that define one) to their full names, lower-case.
const COMPACT: &[(&str, &str)] = &[
    ("i", "call-id"),
    ("m", "contact"),
    ("e", "content-encoding"),
    ("l", "content-length"),
    ("c", "content-type"),
    ("f", "from"),
    ("s", "subject"),
    ("k", "supported"),
    ("t", "to"),
    ("v", "via"),
    ("o", "event"),
    ("r", "refer-to"),
    ("b", "referred-by"),
    ("u", "allow-events"),
    ("x", "session-expires"),
];

/// Lower-case full name of a header as written on the wire (compact or full, any case).
pub fn canonical_name(name: &str) -> String {
    let lower = name.trim().to_ascii_lowercase();
    COMPACT
        .iter()
        .find(|(short, _)| *short == lower)
        .map(|(_, full)| (*full).to_string())
        .unwrap_or(lower)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartLine {
    Request { method: String, uri: String },
    Response { status: u16, reason: String },
}

#[derive(Debug, Clone)]
pub struct SipMessage {
    pub start: StartLine,
    /// (lower-case full name, value) in wire order; one entry per header line (not split at commas).
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    /// More bytes are needed (stream transports).
    Incomplete,
    Malformed(String),
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::Incomplete => f.write_str("incomplete message"),
            ParseError::Malformed(why) => write!(f, "malformed message: {why}"),
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Parses one message from the front of `buf`; returns it and how many bytes it used. Leading CRLFs
/// (keep-alives) are skipped. On a datagram transport a body shorter than Content-Length is `Incomplete`.
pub fn parse(buf: &[u8]) -> Result<(SipMessage, usize), ParseError> {
    let skipped = buf
        .iter()
        .take_while(|b| **b == b'\r' || **b == b'\n')
        .count();
    let rest = &buf[skipped..];
    let (head_len, sep_len) = match (find(rest, b"\r\n\r\n"), find(rest, b"\n\n")) {
        (Some(a), Some(b)) if b < a => (b, 2),
        (Some(a), _) => (a, 4),
        (None, Some(b)) => (b, 2),
        (None, None) => return Err(ParseError::Incomplete),
    };
    let head = std::str::from_utf8(&rest[..head_len])
        .map_err(|_| ParseError::Malformed("header block is not UTF-8".into()))?;
    let mut lines = head.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    let first = lines.next().unwrap_or_default();
    let start = parse_start_line(first)?;
    let mut headers: Vec<(String, String)> = Vec::new();
    for line in lines {
        if line.starts_with(' ') || line.starts_with('\t') {
            match headers.last_mut() {
                Some((_, value)) => {
                    value.push(' ');
                    value.push_str(line.trim());
                }
                None => {
                    return Err(ParseError::Malformed(
                        "continuation line before any header".into(),
                    ));
                }
            }
            continue;
        }
        let Some((name, value)) = line.split_once(':') else {
            return Err(ParseError::Malformed(format!(
                "header line without colon: {line:?}"
            )));
        };
        if name.trim().is_empty() || name.trim().contains(' ') {
            return Err(ParseError::Malformed(format!("bad header name: {line:?}")));
        }
        headers.push((canonical_name(name), value.trim().to_string()));
    }
    let body_start = skipped + head_len + sep_len;
    let content_length = match headers.iter().find(|(n, _)| n == "content-length") {
        Some((_, v)) => v
            .parse::<usize>()
            .map_err(|_| ParseError::Malformed(format!("bad Content-Length {v:?}")))?,
        None => 0,
    };
    if buf.len() < body_start + content_length {
        return Err(ParseError::Incomplete);
    }
    let body = buf[body_start..body_start + content_length].to_vec();
    Ok((
        SipMessage {
            start,
            headers,
            body,
        },
        body_start + content_length,
    ))
}

fn parse_start_line(line: &str) -> Result<StartLine, ParseError> {
    let mut parts = line.splitn(3, ' ');
    let (a, b, c) = (parts.next(), parts.next(), parts.next());
    match (a, b, c) {
        (Some(version), Some(code), reason) if version.eq_ignore_ascii_case("SIP/2.0") => {
            let status = code
                .parse::<u16>()
                .ok()
                .filter(|s| (100..700).contains(s))
                .ok_or_else(|| ParseError::Malformed(format!("bad status line {line:?}")))?;
            Ok(StartLine::Response {
                status,
                reason: reason.unwrap_or_default().to_string(),
            })
        }
        (Some(method), Some(uri), Some(version))
            if version.trim().eq_ignore_ascii_case("SIP/2.0") =>
        {
            Ok(StartLine::Request {
                method: method.to_string(),
                uri: uri.to_string(),
            })
        }
        _ => Err(ParseError::Malformed(format!("bad start line {line:?}"))),
    }
}

/// The value of `name` in a `;name=value` parameter list (after the addr-spec for name-addr headers).
pub fn param(value: &str, name: &str) -> Option<String> {
    let params = match value.rfind('>') {
        Some(end) => &value[end + 1..],
        None => value,
    };
    params
        .split(';')
        .skip(usize::from(value.rfind('>').is_none()))
        .find_map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
}

/// The URI inside a name-addr (`"Name" <sip:a@b>;tag=x` -> `sip:a@b`) or a bare addr-spec without parameters.
pub fn uri_of(value: &str) -> String {
    if let (Some(start), Some(end)) = (value.find('<'), value.rfind('>'))
        && start < end
    {
        return value[start + 1..end].trim().to_string();
    }
    value
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// The user part of a sip:/sips:/tel: URI (`sip:0701234567@host` -> `0701234567`, `tel:+4670;x=y` -> `+4670`).
pub fn user_of(uri: &str) -> Option<String> {
    let uri = uri.trim();
    if let Some(rest) = uri.strip_prefix("tel:") {
        return Some(rest.split(';').next().unwrap_or_default().to_string());
    }
    let rest = uri
        .strip_prefix("sip:")
        .or_else(|| uri.strip_prefix("sips:"))?;
    let (user, _) = rest.split_once('@')?;
    Some(user.split(';').next().unwrap_or_default().to_string())
}

impl SipMessage {
    pub fn parse_datagram(buf: &[u8]) -> Result<SipMessage, ParseError> {
        parse(buf).map(|(m, _)| m)
    }

    pub fn method(&self) -> Option<&str> {
        match &self.start {
            StartLine::Request { method, .. } => Some(method),
            StartLine::Response { .. } => None,
        }
    }

    pub fn uri(&self) -> Option<&str> {
        match &self.start {
            StartLine::Request { uri, .. } => Some(uri),
            StartLine::Response { .. } => None,
        }
    }

    pub fn status(&self) -> Option<u16> {
        match &self.start {
            StartLine::Response { status, .. } => Some(*status),
            StartLine::Request { .. } => None,
        }
    }

    pub fn is_request(&self, method: &str) -> bool {
        self.method()
            .is_some_and(|m| m.eq_ignore_ascii_case(method))
    }

    /// First value of a header (any case, compact or full name).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = canonical_name(name);
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every line of a header, in order.
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        let name = canonical_name(name);
        self.headers
            .iter()
            .filter(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    pub fn call_id(&self) -> Option<&str> {
        self.header("call-id")
    }

    /// CSeq number and method.
    pub fn cseq(&self) -> Option<(u32, String)> {
        let value = self.header("cseq")?;
        let mut parts = value.split_whitespace();
        let number = parts.next()?.parse().ok()?;
        let method = parts.next()?.to_ascii_uppercase();
        Some((number, method))
    }

    /// The first Via value (a header line may carry several, comma-separated).
    pub fn top_via(&self) -> Option<&str> {
        self.header("via")
            .map(|v| v.split(',').next().unwrap_or(v).trim())
    }

    pub fn via_branch(&self) -> Option<String> {
        param(self.top_via()?, "branch")
    }

    pub fn tag_in_from(&self) -> Option<String> {
        param(self.header("from")?, "tag")
    }

    pub fn tag_in_to(&self) -> Option<String> {
        param(self.header("to")?, "tag").filter(|t| !t.is_empty())
    }

    pub fn contact_uri(&self) -> Option<String> {
        self.header("contact").map(uri_of)
    }

    pub fn body_str(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// One line for failure messages and logs.
    pub fn summary(&self) -> String {
        let first = match &self.start {
            StartLine::Request { method, uri } => format!("{method} {uri}"),
            StartLine::Response { status, reason } => format!("{status} {reason}"),
        };
        format!("{first} (CSeq {})", self.header("cseq").unwrap_or("?"))
    }
}
