//! The caller's side of a blind transfer, as a real transferee does it (RFC 3515 §2.4.2, RFC 3261 §19.1.5): it
//! takes the Refer-To URI apart, calls the URI without its headers, and puts the URI's headers (unescaped) into
//! that new INVITE, which is how the support function learns the caller's choice.

use super::sip::{Call, Received, SipPeer};
use super::sipmsg;
use std::net::SocketAddr;

/// A Refer-To value taken apart: where to call, and the headers to put in the INVITE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReferTarget {
    pub uri: String,
    pub headers: Vec<(String, String)>,
}

/// Splits `<sip:kt@host:port;transport=udp?X-A=1&X-B=a%40b>` into the URI and its unescaped headers.
pub fn parse_refer_to(value: &str) -> ReferTarget {
    let inner = sipmsg::uri_of(value);
    let (uri, query) = match inner.split_once('?') {
        Some((uri, query)) => (uri.to_string(), query),
        None => (inner.clone(), ""),
    };
    let headers = query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            (unescape(name), unescape(value))
        })
        .collect();
    ReferTarget { uri, headers }
}

/// Percent-decoding; a malformed escape is kept as it is (the test then shows it in its failure message).
pub fn unescape(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(hex) = text.get(i + 1..i + 3)
            && let Ok(byte) = u8::from_str_radix(hex, 16)
        {
            out.push(byte);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The host:port of a `sip:user@host:port;params` URI (IPv4 loopback in these tests).
fn target_addr(uri: &str) -> SocketAddr {
    let rest = uri
        .strip_prefix("sip:")
        .unwrap_or_else(|| panic!("Refer-To {uri} is not a sip: URI"));
    let host = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
    let host = host.split(';').next().unwrap_or_default();
    host.parse()
        .unwrap_or_else(|e| panic!("Refer-To host {host}: {e}"))
}

/// Acts on a REFER the way a phone or PBX does: a new INVITE from a fresh SIP socket to the Refer-To URI,
/// carrying the URI's headers and `offer`. The INVITE is not sent yet: call [`Call::start`] (from a thread, if
/// the function must answer meanwhile).
pub fn invite_from_refer(refer: &Received, from_uri: &str, offer: &str) -> Call {
    let refer_to = refer
        .msg
        .header("refer-to")
        .unwrap_or_else(|| panic!("REFER without Refer-To: {}", refer.msg.summary()));
    let target = parse_refer_to(refer_to);
    let bind: SocketAddr = "127.0.0.1:0".parse().expect("loopback address");
    let peer = SipPeer::udp(bind, Some(target_addr(&target.uri))).expect("bind the transferee");
    let extra: Vec<String> = target
        .headers
        .iter()
        .map(|(name, value)| format!("{name}: {value}"))
        .collect();
    peer.invite(&target.uri, from_uri, Some(offer), &extra)
}
