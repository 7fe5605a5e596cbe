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
    let uri = uri.trim();
    let (scheme, rest) = match uri.split_once(':') {
        Some((scheme, rest)) => (scheme.to_ascii_lowercase(), rest),
        None => (String::new(), uri),
    };
    let number = match scheme.as_str() {
        "tel" => rest.split(';').next().unwrap_or(rest),
        "sip" | "sips" => match rest.split_once('@') {
            Some((userinfo, _host)) => {
                let user = userinfo.split(':').next().unwrap_or(userinfo);
                user.split(';').next().unwrap_or(user)
            }
            None => rest.split([';', '?']).next().unwrap_or(rest),
        },
        _ => uri,
    };
    percent_decode(number.trim())
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

/// A DTMF digit from an INFO request: `application/dtmf-relay` (`Signal=5`, Cisco and most PBXes) or
/// `application/dtmf` (body `5`). Event codes 10 and 11 mean `*` and `#`. Anything else: None.
pub fn dtmf_from_info(request: &Request) -> Option<char> {
    let content_type = request
        .headers()
        .iter()
        .find(|h| matches!(h, rsipstack::sip::Header::ContentType(_)))
        .map(|h| h.to_string())
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
    fn caller_and_called_from_a_request() {
        let req = request("", "");
        assert_eq!(caller_number(&req), "+4619123456");
        assert_eq!(called_number(&req), "0191000");
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
