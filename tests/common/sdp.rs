//! SDP as the test peers need it: write an offer or answer as text, and read the few fields that matter
//! (connection address, audio port, payload types, telephone-event, direction) from the daemon's.

use std::net::{IpAddr, SocketAddr};

/// G.711 µ-law.
pub const PCMU: u8 = 0;
/// G.711 A-law.
pub const PCMA: u8 = 8;
/// G.729, which knappval does not speak: offering only this must get 488.
pub const G729: u8 = 18;

#[derive(Debug, Clone)]
pub struct SdpInfo {
    pub addr: IpAddr,
    pub port: u16,
    /// Payload types on the audio m= line, in preference order.
    pub payloads: Vec<u8>,
    pub telephone_event: Option<u8>,
    /// sendrecv/sendonly/recvonly/inactive, if stated.
    pub direction: Option<String>,
}

impl SdpInfo {
    pub fn media_addr(&self) -> SocketAddr {
        SocketAddr::new(self.addr, self.port)
    }

    /// The first audio codec (PCMU/PCMA) on the m= line.
    pub fn first_codec(&self) -> Option<u8> {
        self.payloads
            .iter()
            .copied()
            .find(|pt| *pt == PCMU || *pt == PCMA)
    }
}

fn static_name(pt: u8) -> Option<&'static str> {
    match pt {
        PCMU => Some("PCMU/8000"),
        PCMA => Some("PCMA/8000"),
        G729 => Some("G729/8000"),
        _ => None,
    }
}

/// An SDP body for an audio stream at `rtp` offering `codecs` (and telephone-event on `event_pt`).
pub fn build(rtp: SocketAddr, codecs: &[u8], event_pt: Option<u8>, direction: &str) -> String {
    let ip_kind = if rtp.is_ipv6() { "IP6" } else { "IP4" };
    let ip = rtp.ip();
    let mut payloads: Vec<String> = codecs.iter().map(u8::to_string).collect();
    if let Some(pt) = event_pt {
        payloads.push(pt.to_string());
    }
    let session_id = u64::from(rtp.port()) * 1000 + 1;
    let mut sdp = format!(
        "v=0\r\no=- {session_id} 1 IN {ip_kind} {ip}\r\ns=knappval-test\r\nc=IN {ip_kind} {ip}\r\nt=0 0\r\n\
m=audio {} RTP/AVP {}\r\n",
        rtp.port(),
        payloads.join(" ")
    );
    for pt in codecs {
        if let Some(name) = static_name(*pt) {
            sdp.push_str(&format!("a=rtpmap:{pt} {name}\r\n"));
        }
    }
    if let Some(pt) = event_pt {
        sdp.push_str(&format!(
            "a=rtpmap:{pt} telephone-event/8000\r\na=fmtp:{pt} 0-16\r\n"
        ));
    }
    sdp.push_str("a=ptime:20\r\n");
    sdp.push_str(&format!("a={direction}\r\n"));
    sdp
}

/// Reads the first audio stream of an SDP body; `None` when it has no usable audio m= line or address.
pub fn parse(body: &str) -> Option<SdpInfo> {
    let mut session_addr: Option<IpAddr> = None;
    let mut media_addr: Option<IpAddr> = None;
    let mut in_audio = false;
    let mut seen_audio = false;
    let mut port = 0u16;
    let mut payloads = Vec::new();
    let mut telephone_event = None;
    let mut direction = None;
    for line in body.lines().map(str::trim) {
        if let Some(m) = line.strip_prefix("m=") {
            if seen_audio {
                break;
            }
            let mut parts = m.split_whitespace();
            in_audio = parts.next() == Some("audio");
            if in_audio {
                seen_audio = true;
                port = parts.next()?.parse().ok()?;
                let _proto = parts.next();
                payloads = parts.filter_map(|p| p.parse().ok()).collect();
            }
        } else if let Some(c) = line.strip_prefix("c=") {
            let addr: Option<IpAddr> = c
                .split_whitespace()
                .nth(2)
                .and_then(|a| a.split('/').next()?.parse().ok());
            if in_audio {
                media_addr = addr;
            } else if !seen_audio {
                session_addr = addr;
            }
        } else if let Some(map) = line.strip_prefix("a=rtpmap:") {
            if in_audio
                && let Some((pt, name)) = map.split_once(' ')
                && name.to_ascii_lowercase().starts_with("telephone-event/")
            {
                telephone_event = pt.parse().ok();
            }
        } else if let Some(attr) = line.strip_prefix("a=")
            && matches!(attr, "sendrecv" | "sendonly" | "recvonly" | "inactive")
            && (in_audio || direction.is_none())
        {
            direction = Some(attr.to_string());
        }
    }
    if !seen_audio {
        return None;
    }
    Some(SdpInfo {
        addr: media_addr.or(session_addr)?,
        port,
        payloads,
        telephone_event,
        direction,
    })
}
