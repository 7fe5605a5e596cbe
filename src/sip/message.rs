//! The few things we read out of SIP messages ourselves: who is calling, which number was called, and DTMF
//! carried in INFO bodies. Tolerant by design: a trunk's odd formatting must not cost the caller the call.

use rsipstack::sip::Request;
use rsipstack::sip::prelude::{HasHeaders, HeadersExt};

/// The caller's number as the contact record keeps it: the user part of a `sip:`/`sips:` From, the number of a
/// `tel:` From (RFC 3966), or the host when a SIP URI has no user. Visual separators are kept as sent.
pub fn caller_number(request: &Request) -> String {
    request
        .from_header()
        .ok()
        .map(|from| number_of(from.value()))
        .unwrap_or_default()
}

/// The caller's asserted identity as its INVITE carried it (RFC 3325): every P-Asserted-Identity and the
/// Privacy header, for the bridged INVITE to a function or agent. Those are knappval's own trust domain, so the
/// identity travels on, and Privacy with it, for the phone to honour (`Privacy: id`: show no number).
pub fn asserted_identity_headers(request: &Request) -> Vec<rsipstack::sip::Header> {
    request
        .headers
        .iter()
        .filter(|header| {
            matches!(
                header,
                rsipstack::sip::Header::PAssertedIdentity(_) | rsipstack::sip::Header::Privacy(_)
            )
        })
        .cloned()
        .collect()
}

/// Who the caller is, for the contact record: the user part of the first P-Asserted-Identity (RFC 3325) when the
/// INVITE has one, else [`caller_number`]. A trunk sets P-Asserted-Identity itself, so it names the line that
/// called even when the From a caller's phone wrote says something else; the display name, tags and ports of
/// either header are never part of it.
pub fn caller_identity(request: &Request) -> String {
    request
        .p_asserted_identity_header()
        .map(|pai| first_identity(pai.value()))
        .map(number_of)
        .filter(|number| !number.is_empty())
        .unwrap_or_else(|| caller_number(request))
}

/// The first of the comma-separated identities a P-Asserted-Identity may list (`<sip:...>, <tel:...>`); a comma
/// inside a quoted display name or inside the brackets does not split it.
fn first_identity(value: &str) -> &str {
    match value.find('<') {
        Some(open) => match value[open..].find('>') {
            Some(close) => &value[..open + close + 1],
            None => value,
        },
        None => value.split(',').next().unwrap_or(value),
    }
}

/// The number that was called: the To user, falling back to the Request-URI's user.
pub fn called_number(request: &Request) -> String {
    let to = request
        .to_header()
        .ok()
        .map(|to| number_of(to.value()))
        .unwrap_or_default();
    if to.is_empty() {
        number_of(&request.uri.to_string())
    } else {
        to
    }
}

/// The identifying part of a name-addr or addr-spec header value, e.g.
/// `"Anna" <sip:+4619123456@trunk;user=phone>;tag=1` -> `+4619123456`, `<tel:+46-19-12>;tag=x` -> `+46-19-12`.
pub fn number_of(header_value: &str) -> String {
    let value = header_value.trim();
    let uri = match (value.find('<'), value.rfind('>')) {
        (Some(open), Some(close)) if open < close => &value[open + 1..close],
        // addr-spec without brackets: header params start at the first ';'.
        _ => value
            .trim_start_matches('<')
            .split(';')
            .next()
            .unwrap_or(value),
    };
    percent_decode(uri_user(uri))
}

/// The user part of a caller or callee URI: `sip:0701234567@pbx;user=phone` -> `0701234567`,
/// `tel:+46-8-123456;phone-context=x` -> `+46-8-123456`, `<sip:alice@host>` -> `alice`.
///
/// A URI with no user part (`sip:pbx.example`) yields its host, so that the record still says where the call
/// came from. Text that is not a URI at all is returned trimmed, as the trunk sent it.
pub fn uri_user(uri: &str) -> &str {
    let uri = uri.trim();
    let uri = uri.strip_prefix('<').unwrap_or(uri);
    let uri = uri.strip_suffix('>').unwrap_or(uri);
    let lower_scheme = |prefix: &str| {
        uri.get(..prefix.len())
            .is_some_and(|head| head.eq_ignore_ascii_case(prefix))
    };
    if lower_scheme("tel:") {
        let rest = &uri[4..];
        return rest.split(';').next().unwrap_or(rest);
    }
    let rest = if lower_scheme("sips:") {
        &uri[5..]
    } else if lower_scheme("sip:") {
        &uri[4..]
    } else {
        return uri;
    };
    match rest.find('@') {
        // Parameters and a password may sit in the user part (`alice;npdi:secret@`); only the user is wanted.
        Some(at) => {
            let user = &rest[..at];
            let user = user.split(':').next().unwrap_or(user);
            user.split(';').next().unwrap_or(user)
        }
        None => {
            let host = rest.split([';', '?']).next().unwrap_or(rest);
            // An IPv6 reference keeps its brackets; only a trailing port is cut.
            match host.rfind(':') {
                Some(colon) if !host[colon..].contains(']') => &host[..colon],
                _ => host,
            }
        }
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push(h * 16 + l);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// Option tags in Require headers (RFC 3261 §20.32). knappval implements no extensions, so each of them is
/// one the caller's side needs and we do not have: answered 420 Bad Extension.
pub fn required_extensions(request: &Request) -> Vec<String> {
    request
        .headers()
        .iter()
        .filter_map(|h| match h {
            rsipstack::sip::Header::Require(value) => Some(value.to_string()),
            rsipstack::sip::Header::Other(name, value) if name.eq_ignore_ascii_case("require") => {
                Some(value.clone())
            }
            _ => None,
        })
        .flat_map(|value| {
            let value = value
                .split_once(':')
                .filter(|(name, _)| name.trim().eq_ignore_ascii_case("require"))
                .map(|(_, v)| v.to_string())
                .unwrap_or(value);
            value
                .split(',')
                .map(|tag| tag.trim().to_string())
                .filter(|tag| !tag.is_empty())
                .collect::<Vec<_>>()
        })
        .collect()
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BodyError {
    #[error("body of type {0:?} is not a session description")]
    NotSdp(String),
    #[error("multipart body without an application/sdp part")]
    NoSdpPart,
}

/// The SDP offer of an INVITE: the body when it is `application/sdp`, the `application/sdp` part of a
/// `multipart/mixed` body (SIP-I/SIP-T trunks send SDP beside ISUP), None when there is no body (a late offer).
pub fn session_offer(request: &Request) -> Result<Option<Vec<u8>>, BodyError> {
    if request.body.is_empty() {
        return Ok(None);
    }
    let content_type = content_type(request)
        // RFC 3261 §20.15: a body without Content-Type is malformed, but SDP is the only thing an INVITE carries
        // in practice; be liberal.
        .unwrap_or_else(|| "application/sdp".to_string());
    let media_type = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match media_type.as_str() {
        "application/sdp" => Ok(Some(request.body.clone())),
        "multipart/mixed" | "multipart/related" | "multipart/alternative" => {
            let boundary = content_type
                .split(';')
                .skip(1)
                .filter_map(|param| param.split_once('='))
                .find(|(name, _)| name.trim().eq_ignore_ascii_case("boundary"))
                .map(|(_, value)| value.trim().trim_matches('"').to_string())
                .ok_or(BodyError::NoSdpPart)?;
            sdp_part(&request.body, &boundary)
                .map(Some)
                .ok_or(BodyError::NoSdpPart)
        }
        _ => Err(BodyError::NotSdp(media_type)),
    }
}

/// The `application/sdp` part of a MIME multipart body (RFC 2046 §5.1).
fn sdp_part(body: &[u8], boundary: &str) -> Option<Vec<u8>> {
    let delimiter = format!("--{boundary}");
    let delimiter = delimiter.as_bytes();
    let mut starts = Vec::new();
    let mut i = 0;
    while i + delimiter.len() <= body.len() {
        if &body[i..i + delimiter.len()] == delimiter {
            starts.push(i);
            i += delimiter.len();
        } else {
            i += 1;
        }
    }
    for pair in starts.windows(2) {
        let part = &body[pair[0] + delimiter.len()..pair[1]];
        // The delimiter line ends with CRLF; the part's headers end with an empty line.
        let Some(part) = part
            .strip_prefix(b"\r\n")
            .or_else(|| part.strip_prefix(b"\n"))
        else {
            continue;
        };
        let (head_len, separator) = match part.windows(4).position(|w| w == b"\r\n\r\n") {
            Some(p) => (p, 4),
            None => match part.windows(2).position(|w| w == b"\n\n") {
                Some(p) => (p, 2),
                None => continue,
            },
        };
        let head = String::from_utf8_lossy(&part[..head_len]).to_ascii_lowercase();
        let is_sdp = head.lines().any(|line| {
            line.split_once(':').is_some_and(|(name, value)| {
                name.trim() == "content-type" && value.trim().starts_with("application/sdp")
            })
        });
        if is_sdp {
            let content = &part[head_len + separator..];
            // The CRLF before the next delimiter belongs to the delimiter.
            let content = content
                .strip_suffix(b"\r\n")
                .or_else(|| content.strip_suffix(b"\n"))
                .unwrap_or(content);
            return Some(content.to_vec());
        }
    }
    None
}

/// The Content-Type value (media type and parameters, as sent), if any.
fn content_type(request: &Request) -> Option<String> {
    request.headers().iter().find_map(|h| match h {
        rsipstack::sip::Header::ContentType(value) => Some(value.value().trim().to_string()),
        _ => None,
    })
}

/// A DTMF digit from an INFO request: `application/dtmf-relay` (`Signal=5`, Cisco and most PBXes) or
/// `application/dtmf` (body `5`). Event codes 10 and 11 mean `*` and `#`. Anything else: None.
pub fn dtmf_from_info(request: &Request) -> Option<char> {
    let content_type = content_type(request)
        .unwrap_or_default()
        .to_ascii_lowercase();
    let body = std::str::from_utf8(&request.body).ok()?;
    if content_type.contains("application/dtmf-relay") {
        body.lines().find_map(|line| {
            let (key, value) = line.split_once('=')?;
            key.trim()
                .eq_ignore_ascii_case("signal")
                .then(|| digit_of(value.trim()))
                .flatten()
        })
    } else if content_type.contains("application/dtmf") {
        digit_of(body.trim())
    } else {
        None
    }
}

fn digit_of(signal: &str) -> Option<char> {
    match signal {
        "10" => Some('*'),
        "11" => Some('#'),
        s if s.chars().count() == 1 => {
            let c = s.chars().next()?.to_ascii_uppercase();
            matches!(c, '0'..='9' | '*' | '#' | 'A'..='D').then_some(c)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(extra_headers: &str, body: &str) -> Request {
        let text = format!(
            "INFO sip:knappval@127.0.0.1 SIP/2.0\r\n\
             Via: SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bK1\r\n\
             From: \"Anna Svensson\" <sip:+4619123456@trunk.example;user=phone>;tag=a\r\n\
             To: <sip:0191000@127.0.0.1>;tag=b\r\n\
             Call-ID: c1\r\nCSeq: 2 INFO\r\n{extra_headers}Content-Length: {}\r\n\r\n{body}",
            body.len()
        );
        Request::try_from(text.as_str()).unwrap()
    }

    #[test]
    fn numbers_from_sip_tel_and_odd_forms() {
        assert_eq!(
            number_of("\"Anna\" <sip:+4619123456@trunk;user=phone>;tag=1"),
            "+4619123456"
        );
        assert_eq!(
            number_of("<tel:+46-19-12;phone-context=x>;tag=9"),
            "+46-19-12"
        );
        assert_eq!(number_of("tel:+4619123456;tag=9"), "+4619123456");
        assert_eq!(number_of("sip:alice@[::1]:5060;tag=1"), "alice");
        assert_eq!(number_of("<sip:alice:secret@host>"), "alice");
        assert_eq!(number_of("<sip:pbx.example>"), "pbx.example");
        assert_eq!(number_of("<sip:%2B4619@host>"), "+4619");
        assert_eq!(number_of("garbage"), "garbage");
        assert_eq!(number_of(""), "");
        assert_eq!(number_of("<sip:%2"), "%2");
    }

    #[test]
    fn user_part_of_caller_uris() {
        assert_eq!(uri_user("sip:0701234567@10.0.0.1;user=phone"), "0701234567");
        assert_eq!(uri_user("<sips:alice:secret@pbx.example:5061>"), "alice");
        assert_eq!(uri_user("SIP:+46701234567;npdi@trunk"), "+46701234567");
        assert_eq!(
            uri_user("tel:+46-8-123456;phone-context=example.se"),
            "+46-8-123456"
        );
        assert_eq!(
            uri_user("sip:pbx.example:5060;transport=tcp"),
            "pbx.example"
        );
        assert_eq!(uri_user("sip:[2001:db8::1]:5060"), "[2001:db8::1]");
        assert_eq!(uri_user("sip:[2001:db8::1]"), "[2001:db8::1]");
        assert_eq!(uri_user(" anonymous "), "anonymous");
    }

    #[test]
    fn caller_and_called_from_a_request() {
        let req = request("", "");
        assert_eq!(caller_number(&req), "+4619123456");
        assert_eq!(called_number(&req), "0191000");
    }

    #[test]
    fn the_asserted_identity_names_the_caller_when_present() {
        let req = request("", "");
        assert_eq!(caller_identity(&req), "+4619123456", "From without PAI");
        let pai = "P-Asserted-Identity: \"Växeln, Örebro\" <sip:+4619000111@trunk;user=phone>, <tel:+4619000111>\r\n";
        let req = request(pai, "");
        assert_eq!(caller_identity(&req), "+4619000111");
        assert_eq!(
            caller_number(&req),
            "+4619123456",
            "From itself is unchanged"
        );
        let req = request("P-Asserted-Identity: tel:+46-19-000 222\r\n", "");
        assert_eq!(caller_identity(&req), "+46-19-000 222");
        let req = request("P-Asserted-Identity: <sip:@trunk>\r\n", "");
        assert_eq!(
            caller_identity(&req),
            "+4619123456",
            "a PAI without a user falls back to From"
        );
    }

    fn invite(headers: &str, body: &[u8]) -> Request {
        let mut text = format!(
            "INVITE sip:0191000@127.0.0.1 SIP/2.0\r\n\
             Via: SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bK1\r\n\
             From: <sip:+4619123456@trunk>;tag=a\r\nTo: <sip:0191000@127.0.0.1>\r\n\
             Call-ID: c2\r\nCSeq: 1 INVITE\r\n{headers}Content-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        text.extend_from_slice(body);
        Request::try_from(text.as_slice()).unwrap()
    }

    #[test]
    fn the_offer_of_plain_multipart_and_odd_invites() {
        let sdp = b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n";
        let plain = invite("Content-Type: application/sdp\r\n", sdp);
        assert_eq!(session_offer(&plain).unwrap().as_deref(), Some(&sdp[..]));
        let none = invite("", b"");
        assert_eq!(session_offer(&none).unwrap(), None);

        let mut multipart =
            b"--unique-boundary-1\r\nContent-Type: application/sdp\r\n\r\n".to_vec();
        multipart.extend_from_slice(sdp);
        multipart.extend_from_slice(
            b"\r\n--unique-boundary-1\r\nContent-Type: application/isup;version=itu-t92+\r\n\r\n\x01\x00\x49\x00\xff\r\n--unique-boundary-1--\r\n",
        );
        let sip_i = invite(
            "Content-Type: multipart/mixed;boundary=\"unique-boundary-1\"\r\nMIME-Version: 1.0\r\n",
            &multipart,
        );
        assert_eq!(session_offer(&sip_i).unwrap().as_deref(), Some(&sdp[..]));

        let json = invite("Content-Type: application/json\r\n", b"{}");
        assert!(matches!(session_offer(&json), Err(BodyError::NotSdp(_))));
        let no_sdp_part = invite(
            "Content-Type: multipart/mixed;boundary=b\r\n",
            b"--b\r\nContent-Type: text/plain\r\n\r\nhej\r\n--b--\r\n",
        );
        assert_eq!(session_offer(&no_sdp_part), Err(BodyError::NoSdpPart));
        let no_boundary = invite("Content-Type: multipart/mixed\r\n", b"--b\r\n");
        assert_eq!(session_offer(&no_boundary), Err(BodyError::NoSdpPart));
    }

    #[test]
    fn required_extensions_are_listed() {
        assert!(required_extensions(&invite("", b"")).is_empty());
        let req = invite("Require: 100rel, timer\r\n", b"");
        assert_eq!(required_extensions(&req), vec!["100rel", "timer"]);
    }

    #[test]
    fn dtmf_relay_and_dtmf_bodies() {
        let relay = request(
            "Content-Type: application/dtmf-relay\r\n",
            "Signal=5\r\nDuration=160\r\n",
        );
        assert_eq!(dtmf_from_info(&relay), Some('5'));
        let star = request(
            "Content-Type: application/dtmf-relay\r\n",
            "Signal= *\r\nDuration=160\r\n",
        );
        assert_eq!(dtmf_from_info(&star), Some('*'));
        let code = request("Content-Type: application/dtmf\r\n", "11");
        assert_eq!(dtmf_from_info(&code), Some('#'));
        let plain = request("Content-Type: application/dtmf\r\n", "3\r\n");
        assert_eq!(dtmf_from_info(&plain), Some('3'));
        let other = request("Content-Type: application/json\r\n", "{\"signal\":5}");
        assert_eq!(dtmf_from_info(&other), None);
        let junk = request("Content-Type: application/dtmf-relay\r\n", "Signal=55\r\n");
        assert_eq!(dtmf_from_info(&junk), None);
    }
}
