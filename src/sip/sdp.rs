//! SDP offer/answer (RFC 3264 over RFC 4566 bodies) for knappval's single audio stream.
//!
//! Owns: reading a peer's offer or answer into one [`Negotiated`] audio stream, and writing our
//! answer or offer. Bodies are parsed and marshalled with the `sdp` crate; no SDP text is
//! assembled by hand here. This module knows nothing of SIP dialogs, sockets or RTP packets: the
//! caller maps an [`SdpError`] to a SIP status (488, or 400 for [`SdpError::Malformed`]) and sets
//! up media from [`Negotiated`].
//!
//! What knappval speaks: G.711 (PCMU at static payload type 0, PCMA at 8), telephone-event
//! (RFC 4733) at whatever payload type the offerer chose, 20 ms packets, plain RTP/AVP. SRTP
//! (RTP/SAVP) and feedback profiles are not spoken, so such streams are rejected with port 0.

use std::fmt::Write as _;
use std::io::Cursor;
use std::net::{IpAddr, SocketAddr};

use sdp::description::common::{Address, Attribute, ConnectionInformation};
use sdp::description::media::{MediaDescription, MediaName, RangedPort};
use sdp::description::session::{Origin, SessionDescription, TimeDescription, Timing};

use crate::media::codec::{CLOCK_RATE, Codec};

/// Bodies above this are refused unread. Real trunk SDP is well under 2 KiB; even WebRTC-style
/// bodies full of ICE candidates stay far below this, and SIP over UDP cannot carry more anyway.
pub const MAX_SDP_BYTES: usize = 64 * 1024;

/// An answer repeats every offered m= line (RFC 3264 §6), so an offer with thousands of them
/// would make us build and send an equally large answer. No telephony peer needs more than this.
pub const MAX_MEDIA_DESCRIPTIONS: usize = 32;

/// The packet time we send and ask for.
pub const PTIME_MS: u32 = 20;

/// The telephone-event payload type in our own offers; 101 is what most trunks and PBXes use.
pub const OFFER_TELEPHONE_EVENT_PT: u8 = 101;

/// DTMF digits 0-9, *, #, A-D (events 0-15) and flash (16).
const DEFAULT_EVENTS: &str = "0-16";

/// Upper bound on a telephone-event fmtp value we copy from an offer into our answer.
const MAX_EVENTS_LEN: usize = 64;

/// Keeps peer-controlled text in error messages short enough for a SIP Warning header.
const MAX_DETAIL_CHARS: usize = 120;

/// The audio stream both sides agreed on, as the peer described it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Negotiated {
    /// The G.711 variant both sides use; its static payload type is the one on the wire.
    pub codec: Codec,
    /// The peer's telephone-event/8000 payload type, if both sides support RFC 4733 events.
    pub telephone_event: Option<u8>,
    /// Where the peer receives RTP: c= (media level wins over session level) and the m= port.
    /// For old-style hold (c=0.0.0.0) this is the unspecified address with the offered port.
    pub remote_rtp: SocketAddr,
    /// The direction the peer declared for itself. c=0.0.0.0 reads as [`Direction::Inactive`].
    pub direction: Direction,
    /// The packet time the peer asked to receive (a=ptime), [`PTIME_MS`] when it said nothing.
    /// ptime is a recommendation (RFC 4566 §6), so sending 20 ms frames regardless is valid.
    pub ptime_ms: u32,
}

/// An SDP stream direction (RFC 3264 §5.1), always from the point of view of the side that
/// wrote it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    SendRecv,
    SendOnly,
    RecvOnly,
    Inactive,
}

/// As SDP writes it: `sendrecv`, `sendonly`, `recvonly`, `inactive`.
impl std::fmt::Display for Direction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.attribute())
    }
}

impl Direction {
    /// The attribute name as SDP writes it.
    pub fn attribute(self) -> &'static str {
        match self {
            Direction::SendRecv => "sendrecv",
            Direction::SendOnly => "sendonly",
            Direction::RecvOnly => "recvonly",
            Direction::Inactive => "inactive",
        }
    }

    fn from_attribute(key: &str) -> Option<Direction> {
        [
            Direction::SendRecv,
            Direction::SendOnly,
            Direction::RecvOnly,
            Direction::Inactive,
        ]
        .into_iter()
        .find(|direction| key.eq_ignore_ascii_case(direction.attribute()))
    }

    /// The direction an answerer takes for a stream offered with `self` (RFC 3264 §6.1).
    pub fn mirrored(self) -> Direction {
        match self {
            Direction::SendRecv => Direction::SendRecv,
            Direction::SendOnly => Direction::RecvOnly,
            Direction::RecvOnly => Direction::SendOnly,
            Direction::Inactive => Direction::Inactive,
        }
    }

    /// Whether the side that wrote this direction will send media.
    pub fn sends(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::SendOnly)
    }

    /// Whether the side that wrote this direction wants to receive media. When the peer's
    /// direction says no, we stop sending to it (the peer has put the call on hold).
    pub fn receives(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::RecvOnly)
    }
}

/// Our end of the audio stream, as written into offers and answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalMedia {
    /// The address the peer should send RTP to; also the o= address.
    pub ip: IpAddr,
    pub rtp_port: u16,
    /// o= session id: stays the same for the life of the dialog.
    pub session_id: u64,
    /// o= session version: the caller increments it for every changed description it sends.
    pub session_version: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SdpError {
    #[error("malformed SDP: {0}")]
    Malformed(String),
    #[error("no usable audio stream: knappval needs m=audio with RTP/AVP and a non-zero port")]
    NoAudio,
    #[error(
        "no common audio codec: offered only {}; knappval speaks PCMU/8000, PCMA/8000",
        offered_list(.offered)
    )]
    NoCommonCodec { offered: Vec<String> },
}

fn offered_list(offered: &[String]) -> String {
    if offered.is_empty() {
        "no codecs".to_owned()
    } else {
        offered.join(", ")
    }
}

/// UAS: answers an offer.
///
/// The codec follows the offerer's preference order among PCMU/PCMA, and the answer lists only
/// that one codec (plus telephone-event) so the peer cannot switch codecs mid-call. Our direction
/// mirrors theirs. Every m= line other than the chosen audio stream (video, a second audio, SRTP,
/// port 0) is answered as rejected with port 0, in the offer's order (RFC 3264 §6).
pub fn answer(offer: &[u8], local: &LocalMedia) -> Result<(Negotiated, String), SdpError> {
    let session = parse(offer)?;
    let (index, stream) = choose_stream(&session)?;

    let mut answer = session_skeleton(local);
    for (i, offered) in session.media_descriptions.iter().enumerate() {
        let media = if i == index {
            audio_media(
                local.rtp_port,
                stream.codec,
                stream.telephone_event.as_ref(),
                stream.direction.mirrored(),
            )
        } else {
            rejected_media(offered)
        };
        answer.media_descriptions.push(media);
    }
    Ok((stream.negotiated(), answer.marshal()))
}

/// UAC: our offer to a support function: the two G.711 codecs with `prefer` first (the caller
/// leg's codec, so the bridge relays without transcoding when the function agrees),
/// telephone-event at [`OFFER_TELEPHONE_EVENT_PT`] for events 0-16, ptime 20, sendrecv.
pub fn offer(local: &LocalMedia, prefer: Codec) -> String {
    let other = match prefer {
        Codec::Pcmu => Codec::Pcma,
        Codec::Pcma => Codec::Pcmu,
    };
    let mut media = MediaDescription {
        media_name: MediaName {
            media: "audio".to_owned(),
            port: ranged_port(local.rtp_port),
            protos: rtp_avp(),
            formats: Vec::new(),
        },
        ..MediaDescription::default()
    };
    for codec in [prefer, other] {
        media
            .media_name
            .formats
            .push(codec.payload_type().to_string());
        media
            .attributes
            .push(rtpmap(codec.payload_type(), codec.name()));
    }
    push_telephone_event(
        &mut media,
        &TelephoneEvent {
            payload_type: OFFER_TELEPHONE_EVENT_PT,
            events: DEFAULT_EVENTS.to_owned(),
        },
    );
    push_tail(&mut media, Direction::SendRecv);

    let mut offer = session_skeleton(local);
    offer.media_descriptions.push(media);
    offer.marshal()
}

/// UAC: reads a support function's answer to our [`offer`]. The codec must be one we offered
/// (PCMU 0 or PCMA 8); the telephone-event payload type is taken from the answer.
pub fn parse_answer(answer: &[u8]) -> Result<Negotiated, SdpError> {
    let session = parse(answer)?;
    choose_stream(&session).map(|(_, stream)| stream.negotiated())
}

/// The telephone-event payload type and the events to list in our fmtp for it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct TelephoneEvent {
    payload_type: u8,
    events: String,
}

/// One audio m= line we can use, read from the peer's description.
#[derive(Debug)]
struct Stream {
    codec: Codec,
    telephone_event: Option<TelephoneEvent>,
    remote_rtp: SocketAddr,
    direction: Direction,
    ptime_ms: u32,
}

impl Stream {
    fn negotiated(&self) -> Negotiated {
        Negotiated {
            codec: self.codec,
            telephone_event: self.telephone_event.as_ref().map(|te| te.payload_type),
            remote_rtp: self.remote_rtp,
            direction: self.direction,
            ptime_ms: self.ptime_ms,
        }
    }
}

/// What one m= line offers us.
enum Verdict {
    Usable(Stream),
    /// Not audio, port 0, or a transport profile we do not speak.
    Unusable,
    /// Plain RTP audio, but without PCMU or PCMA; carries the codecs it listed instead.
    NoCodec(Vec<String>),
}

fn parse(body: &[u8]) -> Result<SessionDescription, SdpError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(SdpError::Malformed("the body is empty".to_owned()));
    }
    if body.len() > MAX_SDP_BYTES {
        return Err(SdpError::Malformed(format!(
            "the body is {} bytes, more than the {MAX_SDP_BYTES} accepted",
            body.len()
        )));
    }
    let session = SessionDescription::unmarshal(&mut Cursor::new(body))
        .map_err(|e| SdpError::Malformed(clip(&e.to_string())))?;
    let count = session.media_descriptions.len();
    if count > MAX_MEDIA_DESCRIPTIONS {
        return Err(SdpError::Malformed(format!(
            "{count} m= lines, more than the {MAX_MEDIA_DESCRIPTIONS} accepted"
        )));
    }
    Ok(session)
}

/// Picks the first usable audio stream. When there is none, tells apart "you offered audio we
/// cannot decode" (which names the codecs, for the Warning header) from "no audio at all".
fn choose_stream(session: &SessionDescription) -> Result<(usize, Stream), SdpError> {
    let mut offered: Vec<String> = Vec::new();
    let mut saw_plain_audio = false;
    for (index, media) in session.media_descriptions.iter().enumerate() {
        match judge(session, media)? {
            Verdict::Usable(stream) => return Ok((index, stream)),
            Verdict::Unusable => {}
            Verdict::NoCodec(names) => {
                saw_plain_audio = true;
                for name in names {
                    if !offered.contains(&name) {
                        offered.push(name);
                    }
                }
            }
        }
    }
    if saw_plain_audio {
        Err(SdpError::NoCommonCodec { offered })
    } else {
        Err(SdpError::NoAudio)
    }
}

fn judge(session: &SessionDescription, media: &MediaDescription) -> Result<Verdict, SdpError> {
    let name = &media.media_name;
    let port = match u16::try_from(name.port.value) {
        Ok(port) if port != 0 => port,
        _ => return Ok(Verdict::Unusable),
    };
    if name.media != "audio" || name.protos != ["RTP", "AVP"] {
        return Ok(Verdict::Unusable);
    }

    let mut codec = None;
    let mut telephone_event = None;
    let mut listed = Vec::new();
    for format in &name.formats {
        // RTP/AVP formats are payload types 0-127; anything else cannot be RTP.
        let Some(pt) = format.parse::<u8>().ok().filter(|pt| *pt < 128) else {
            continue;
        };
        let encoding = encoding_of(media, pt);
        if let Some(found) = encoding.as_ref().and_then(|e| e.g711_at(pt)) {
            codec.get_or_insert(found);
            continue;
        }
        match encoding {
            Some(e) if e.is_telephone_event() => {
                telephone_event.get_or_insert(TelephoneEvent {
                    payload_type: pt,
                    events: events_of(media, pt),
                });
            }
            // Comfort noise is no voice codec; naming it would only confuse the Warning text.
            Some(e) if e.name.eq_ignore_ascii_case("CN") => {}
            Some(e) => listed.push(e.describe(pt)),
            None => listed.push(format!("payload type {pt} without rtpmap")),
        }
    }
    let Some(codec) = codec else {
        return Ok(Verdict::NoCodec(listed));
    };

    let connection = media
        .connection_information
        .as_ref()
        .or(session.connection_information.as_ref())
        .ok_or_else(|| {
            SdpError::Malformed("the audio stream has no c= line at media or session level".into())
        })?;
    let ip = connection_ip(connection)?;

    let declared = direction_of(&media.attributes)
        .or_else(|| direction_of(&session.attributes))
        .unwrap_or(Direction::SendRecv);
    // RFC 2543-style hold: an unspecified address means "send nothing here", whatever the
    // direction attribute says (RFC 3264 §8.4 asks answerers to still understand it).
    let direction = if ip.is_unspecified() {
        Direction::Inactive
    } else {
        declared
    };

    Ok(Verdict::Usable(Stream {
        codec,
        telephone_event,
        remote_rtp: SocketAddr::new(ip, port),
        direction,
        ptime_ms: ptime_of(media),
    }))
}

/// An encoding as an rtpmap names it: `<name>/<clock rate>[/<channels>]`.
struct Encoding {
    name: String,
    clock_rate: u32,
    channels: u32,
}

impl Encoding {
    fn new(name: &str, clock_rate: u32) -> Encoding {
        Encoding {
            name: name.to_owned(),
            clock_rate,
            channels: 1,
        }
    }

    /// G.711 at its static payload type. We send with the static types, so PCMU or PCMA under a
    /// dynamic number does not count as a match.
    fn g711_at(&self, pt: u8) -> Option<Codec> {
        Codec::from_name(&self.name).filter(|codec| {
            codec.payload_type() == pt && self.clock_rate == CLOCK_RATE && self.channels == 1
        })
    }

    fn is_telephone_event(&self) -> bool {
        self.name.eq_ignore_ascii_case("telephone-event") && self.clock_rate == CLOCK_RATE
    }

    fn describe(&self, pt: u8) -> String {
        let mut text = format!("{}/{}", clip(&self.name), self.clock_rate);
        if self.channels != 1 {
            let _ = write!(text, "/{}", self.channels);
        }
        if Codec::from_name(&self.name).is_some() {
            let _ = write!(text, " at payload type {pt}");
        }
        text
    }
}

/// The media line's rtpmap for `pt`, or the RFC 3551 static assignment when it has none.
fn encoding_of(media: &MediaDescription, pt: u8) -> Option<Encoding> {
    let mapped = media
        .attributes
        .iter()
        .filter(|a| a.key == "rtpmap")
        .filter_map(|a| a.value.as_deref())
        .find_map(|value| {
            let (number, encoding) = value.trim().split_once(char::is_whitespace)?;
            (number.parse::<u8>().ok()? == pt).then_some(encoding.trim())
        });
    match mapped {
        Some(text) => parse_encoding(text),
        None => static_encoding(pt),
    }
}

fn parse_encoding(text: &str) -> Option<Encoding> {
    let mut parts = text.split('/');
    let name = parts.next().filter(|name| !name.is_empty())?;
    let clock_rate = parts.next()?.trim().parse().ok()?;
    let channels = match parts.next() {
        Some(channels) => channels.trim().parse().ok()?,
        None => 1,
    };
    Some(Encoding {
        name: name.to_owned(),
        clock_rate,
        channels,
    })
}

/// Static audio payload types of RFC 3551 §6, so offers that omit rtpmap still read right and
/// the "offered only" list can name what was offered.
fn static_encoding(pt: u8) -> Option<Encoding> {
    let (name, clock_rate) = match pt {
        0 => ("PCMU", 8000),
        3 => ("GSM", 8000),
        4 => ("G723", 8000),
        5 => ("DVI4", 8000),
        6 => ("DVI4", 16000),
        7 => ("LPC", 8000),
        8 => ("PCMA", 8000),
        9 => ("G722", 8000),
        10 => {
            return Some(Encoding {
                name: "L16".to_owned(),
                clock_rate: 44100,
                channels: 2,
            });
        }
        11 => ("L16", 44100),
        12 => ("QCELP", 8000),
        13 => ("CN", 8000),
        14 => ("MPA", 90000),
        15 => ("G728", 8000),
        16 => ("DVI4", 11025),
        17 => ("DVI4", 22050),
        18 => ("G729", 8000),
        _ => return None,
    };
    Some(Encoding::new(name, clock_rate))
}

/// The events listed in the offer's fmtp for the telephone-event payload type, if they read as
/// an RFC 4733 event list; otherwise the events we handle.
fn events_of(media: &MediaDescription, pt: u8) -> String {
    media
        .attributes
        .iter()
        .filter(|a| a.key == "fmtp")
        .filter_map(|a| a.value.as_deref())
        .find_map(|value| {
            let (number, events) = value.trim().split_once(char::is_whitespace)?;
            (number.parse::<u8>().ok()? == pt).then_some(events.trim())
        })
        .filter(|events| is_event_list(events))
        .map_or_else(|| DEFAULT_EVENTS.to_owned(), str::to_owned)
}

/// `0-15`, `0-16,32`, ... : numbers and ranges separated by commas (RFC 4733 §7.1.1).
fn is_event_list(events: &str) -> bool {
    events.len() <= MAX_EVENTS_LEN
        && events.split(',').all(|item| {
            let mut bounds = item.split('-');
            let in_range = |s: &str| s.parse::<u8>().is_ok();
            match (bounds.next(), bounds.next(), bounds.next()) {
                (Some(one), None, None) => in_range(one),
                (Some(low), Some(high), None) => in_range(low) && in_range(high),
                _ => false,
            }
        })
}

fn direction_of(attributes: &[Attribute]) -> Option<Direction> {
    attributes
        .iter()
        .filter(|a| a.value.is_none())
        .find_map(|a| Direction::from_attribute(&a.key))
}

/// The peer's a=ptime, when it is a packet time a G.711 stream can actually have.
fn ptime_of(media: &MediaDescription) -> u32 {
    media
        .attributes
        .iter()
        .find(|a| a.key == "ptime")
        .and_then(|a| a.value.as_deref())
        .and_then(|value| value.trim().parse::<u32>().ok())
        .filter(|ms| (10..=200).contains(ms))
        .unwrap_or(PTIME_MS)
}

fn connection_ip(connection: &ConnectionInformation) -> Result<IpAddr, SdpError> {
    let Some(address) = connection.address.as_ref() else {
        return Err(SdpError::Malformed("c= has no address".to_owned()));
    };
    let text = address.address.as_str();
    let ip: IpAddr = text.parse().map_err(|_| {
        SdpError::Malformed(format!(
            "c= address {:?} is not an IP address (host names and multicast ranges are not supported)",
            clip(text)
        ))
    })?;
    let family_matches = match connection.address_type.as_str() {
        "IP4" => ip.is_ipv4(),
        "IP6" => ip.is_ipv6(),
        _ => false,
    };
    if !family_matches {
        return Err(SdpError::Malformed(format!(
            "c= says {} but the address is {ip}",
            clip(&connection.address_type)
        )));
    }
    Ok(ip)
}

/// v=, o=, s=, c= and t= of every description we send.
fn session_skeleton(local: &LocalMedia) -> SessionDescription {
    let address_type = match local.ip {
        IpAddr::V4(_) => "IP4",
        IpAddr::V6(_) => "IP6",
    };
    SessionDescription {
        version: 0,
        origin: Origin {
            username: "-".to_owned(),
            session_id: local.session_id,
            session_version: local.session_version,
            network_type: "IN".to_owned(),
            address_type: address_type.to_owned(),
            unicast_address: local.ip.to_string(),
        },
        session_name: "knappval".to_owned(),
        connection_information: Some(ConnectionInformation {
            network_type: "IN".to_owned(),
            address_type: address_type.to_owned(),
            address: Some(Address {
                address: local.ip.to_string(),
                ttl: None,
                range: None,
            }),
        }),
        time_descriptions: vec![TimeDescription {
            timing: Timing {
                start_time: 0,
                stop_time: 0,
            },
            repeat_times: Vec::new(),
        }],
        ..SessionDescription::default()
    }
}

fn ranged_port(port: u16) -> RangedPort {
    RangedPort {
        // Lossless: isize is at least 32 bits on every target a SIP daemon runs on.
        value: port as isize,
        range: None,
    }
}

fn rtp_avp() -> Vec<String> {
    vec!["RTP".to_owned(), "AVP".to_owned()]
}

fn rtpmap(pt: u8, name: &str) -> Attribute {
    Attribute::new(
        "rtpmap".to_owned(),
        Some(format!("{pt} {name}/{CLOCK_RATE}")),
    )
}

fn push_telephone_event(media: &mut MediaDescription, event: &TelephoneEvent) {
    let pt = event.payload_type;
    media.media_name.formats.push(pt.to_string());
    media.attributes.push(rtpmap(pt, "telephone-event"));
    media.attributes.push(Attribute::new(
        "fmtp".to_owned(),
        Some(format!("{pt} {}", event.events)),
    ));
}

fn push_tail(media: &mut MediaDescription, direction: Direction) {
    media.attributes.push(Attribute::new(
        "ptime".to_owned(),
        Some(PTIME_MS.to_string()),
    ));
    media
        .attributes
        .push(Attribute::new(direction.attribute().to_owned(), None));
}

/// Our accepted audio m= line: the one chosen codec, telephone-event if the peer offered it.
fn audio_media(
    port: u16,
    codec: Codec,
    telephone_event: Option<&TelephoneEvent>,
    direction: Direction,
) -> MediaDescription {
    let mut media = MediaDescription {
        media_name: MediaName {
            media: "audio".to_owned(),
            port: ranged_port(port),
            protos: rtp_avp(),
            formats: vec![codec.payload_type().to_string()],
        },
        attributes: vec![rtpmap(codec.payload_type(), codec.name())],
        ..MediaDescription::default()
    };
    if let Some(event) = telephone_event {
        push_telephone_event(&mut media, event);
    }
    push_tail(&mut media, direction);
    media
}

/// A declined stream: same media and transport, port 0, the offered formats (RFC 3264 §6
/// requires at least one; repeating the offer's is what peers expect).
fn rejected_media(offered: &MediaDescription) -> MediaDescription {
    MediaDescription {
        media_name: MediaName {
            media: offered.media_name.media.clone(),
            port: ranged_port(0),
            protos: offered.media_name.protos.clone(),
            formats: offered.media_name.formats.clone(),
        },
        ..MediaDescription::default()
    }
}

/// Peer text quoted in an error: shortened, control characters replaced, so the message can go
/// into a log line or a Warning header as it is.
fn clip(text: &str) -> String {
    let mut clipped: String = text
        .chars()
        .take(MAX_DETAIL_CHARS)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    if text.chars().nth(MAX_DETAIL_CHARS).is_some() {
        clipped.push('…');
    }
    clipped
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use super::*;

    /// SDP fixtures are written with `\n` for readability; peers send CRLF.
    fn crlf(text: &str) -> Vec<u8> {
        text.lines()
            .map(str::trim)
            .filter(|line| !line.is_empty())
            .flat_map(|line| [line, "\r\n"])
            .collect::<String>()
            .into_bytes()
    }

    fn local_v4() -> LocalMedia {
        LocalMedia {
            ip: IpAddr::V4(Ipv4Addr::new(10, 20, 30, 40)),
            rtp_port: 40000,
            session_id: 7_000_001,
            session_version: 3,
        }
    }

    fn local_v6() -> LocalMedia {
        LocalMedia {
            ip: IpAddr::V6(Ipv6Addr::LOCALHOST),
            rtp_port: 40002,
            session_id: 9,
            session_version: 1,
        }
    }

    fn lines(sdp: &str) -> Vec<&str> {
        sdp.split("\r\n").filter(|l| !l.is_empty()).collect()
    }

    fn m_lines(sdp: &str) -> Vec<&str> {
        lines(sdp)
            .into_iter()
            .filter(|l| l.starts_with("m="))
            .collect()
    }

    fn has_line(sdp: &str, line: &str) -> bool {
        lines(sdp).contains(&line)
    }

    const CISCO_PCMA_FIRST: &str = "
        v=0
        o=CiscoSystemsSIP-GW-UserAgent 4367 8012 IN IP4 192.0.2.10
        s=SIP Call
        c=IN IP4 192.0.2.10
        t=0 0
        m=audio 17452 RTP/AVP 8 0 101
        c=IN IP4 192.0.2.10
        a=rtpmap:8 PCMA/8000
        a=rtpmap:0 PCMU/8000
        a=rtpmap:101 telephone-event/8000
        a=fmtp:101 0-15
        a=ptime:20
    ";

    const ASTERISK_PCMU_FIRST: &str = "
        v=0
        o=- 1234 1234 IN IP4 198.51.100.7
        s=Asterisk
        c=IN IP4 198.51.100.7
        t=0 0
        m=audio 10018 RTP/AVP 0 8 3 101
        a=rtpmap:0 PCMU/8000
        a=rtpmap:8 PCMA/8000
        a=rtpmap:3 GSM/8000
        a=rtpmap:101 telephone-event/8000
        a=fmtp:101 0-16
        a=ptime:20
        a=maxptime:150
        a=sendrecv
    ";

    const FREESWITCH_G729_FIRST: &str = "
        v=0
        o=FreeSWITCH 1700000000 1700000001 IN IP4 203.0.113.5
        s=FreeSWITCH
        c=IN IP4 203.0.113.5
        t=0 0
        m=audio 24580 RTP/AVP 18 0 96
        a=rtpmap:18 G729/8000
        a=fmtp:18 annexb=no
        a=rtpmap:0 PCMU/8000
        a=rtpmap:96 telephone-event/8000
        a=fmtp:96 0-16
        a=ptime:20
        a=rtcp:24581 IN IP4 203.0.113.5
        a=sendrecv
    ";

    #[test]
    fn cisco_offer_with_pcma_first_gets_pcma() {
        let (negotiated, sdp) = answer(&crlf(CISCO_PCMA_FIRST), &local_v4()).unwrap();
        assert_eq!(
            negotiated,
            Negotiated {
                codec: Codec::Pcma,
                telephone_event: Some(101),
                remote_rtp: "192.0.2.10:17452".parse().unwrap(),
                direction: Direction::SendRecv,
                ptime_ms: 20,
            }
        );
        assert_eq!(m_lines(&sdp), ["m=audio 40000 RTP/AVP 8 101"]);
        assert!(has_line(&sdp, "a=rtpmap:8 PCMA/8000"));
        assert!(has_line(&sdp, "a=rtpmap:101 telephone-event/8000"));
        // The offer's event range is echoed, not widened to ours.
        assert!(has_line(&sdp, "a=fmtp:101 0-15"));
        assert!(!sdp.contains("PCMU"));
    }

    #[test]
    fn asterisk_offer_with_pcmu_first_gets_pcmu() {
        let (negotiated, sdp) = answer(&crlf(ASTERISK_PCMU_FIRST), &local_v4()).unwrap();
        assert_eq!(negotiated.codec, Codec::Pcmu);
        assert_eq!(negotiated.telephone_event, Some(101));
        assert_eq!(negotiated.remote_rtp, "198.51.100.7:10018".parse().unwrap());
        assert_eq!(m_lines(&sdp), ["m=audio 40000 RTP/AVP 0 101"]);
        assert!(has_line(&sdp, "a=fmtp:101 0-16"));
        assert!(has_line(&sdp, "a=sendrecv"));
    }

    #[test]
    fn freeswitch_offer_skips_g729_and_keeps_telephone_event_96() {
        let (negotiated, sdp) = answer(&crlf(FREESWITCH_G729_FIRST), &local_v4()).unwrap();
        assert_eq!(negotiated.codec, Codec::Pcmu);
        assert_eq!(negotiated.telephone_event, Some(96));
        assert_eq!(m_lines(&sdp), ["m=audio 40000 RTP/AVP 0 96"]);
        assert!(has_line(&sdp, "a=rtpmap:96 telephone-event/8000"));
        assert!(has_line(&sdp, "a=fmtp:96 0-16"));
        assert!(!sdp.contains("G729"));
    }

    #[test]
    fn answer_has_every_required_line_in_order_with_crlf() {
        let (_, sdp) = answer(&crlf(ASTERISK_PCMU_FIRST), &local_v4()).unwrap();
        assert!(sdp.ends_with("\r\n"));
        assert!(!sdp.replace("\r\n", "").contains('\n'));
        assert_eq!(
            lines(&sdp),
            [
                "v=0",
                "o=- 7000001 3 IN IP4 10.20.30.40",
                "s=knappval",
                "c=IN IP4 10.20.30.40",
                "t=0 0",
                "m=audio 40000 RTP/AVP 0 101",
                "a=rtpmap:0 PCMU/8000",
                "a=rtpmap:101 telephone-event/8000",
                "a=fmtp:101 0-16",
                "a=ptime:20",
                "a=sendrecv",
            ]
        );
    }

    #[test]
    fn static_payload_types_need_no_rtpmap() {
        let offer = "
            v=0
            o=- 1 1 IN IP4 192.0.2.1
            s=-
            c=IN IP4 192.0.2.1
            t=0 0
            m=audio 5004 RTP/AVP 18 8
        ";
        let (negotiated, sdp) = answer(&crlf(offer), &local_v4()).unwrap();
        assert_eq!(negotiated.codec, Codec::Pcma);
        assert_eq!(negotiated.telephone_event, None);
        assert_eq!(negotiated.ptime_ms, 20);
        assert_eq!(m_lines(&sdp), ["m=audio 40000 RTP/AVP 8"]);
        assert!(!sdp.contains("telephone-event"));
    }

    #[test]
    fn rtpmap_names_and_telephone_event_are_case_insensitive() {
        let offer = "
            v=0
            o=- 1 1 IN IP4 192.0.2.1
            s=-
            c=IN IP4 192.0.2.1
            t=0 0
            m=audio 5004 RTP/AVP 0 100
            a=rtpmap:0 pcmu/8000
            a=rtpmap:100 Telephone-Event/8000
        ";
        let (negotiated, sdp) = answer(&crlf(offer), &local_v4()).unwrap();
        assert_eq!(negotiated.codec, Codec::Pcmu);
        assert_eq!(negotiated.telephone_event, Some(100));
        // No fmtp offered: we state the events we handle.
        assert!(has_line(&sdp, "a=fmtp:100 0-16"));
    }

    #[test]
    fn wideband_telephone_event_is_not_taken_for_an_8khz_stream() {
        let offer = "
            v=0
            o=- 1 1 IN IP4 192.0.2.1
            s=-
            c=IN IP4 192.0.2.1
            t=0 0
            m=audio 5004 RTP/AVP 8 97
            a=rtpmap:97 telephone-event/16000
        ";
        let (negotiated, _) = answer(&crlf(offer), &local_v4()).unwrap();
        assert_eq!(negotiated.telephone_event, None);
    }

    #[test]
    fn garbage_fmtp_is_not_echoed() {
        let offer = "
            v=0
            o=- 1 1 IN IP4 192.0.2.1
            s=-
            c=IN IP4 192.0.2.1
            t=0 0
            m=audio 5004 RTP/AVP 8 101
            a=rtpmap:101 telephone-event/8000
            a=fmtp:101 0-15;evil=1
        ";
        let (_, sdp) = answer(&crlf(offer), &local_v4()).unwrap();
        assert!(has_line(&sdp, "a=fmtp:101 0-16"));
        assert!(!sdp.contains("evil"));
    }

    #[test]
    fn event_lists() {
        for good in ["0-15", "0-16", "0-15,32-36", "11", "0-16,66"] {
            assert!(is_event_list(good), "{good}");
        }
        for bad in ["", "0-", "-5", "0-15,", "0-1-2", "a-b", "0-300", "0 15"] {
            assert!(!is_event_list(bad), "{bad}");
        }
    }

    #[test]
    fn ipv6_connection() {
        let offer = "
            v=0
            o=- 1 1 IN IP6 ::1
            s=-
            c=IN IP6 ::1
            t=0 0
            m=audio 6000 RTP/AVP 0 101
            a=rtpmap:101 telephone-event/8000
        ";
        let (negotiated, sdp) = answer(&crlf(offer), &local_v6()).unwrap();
        assert_eq!(negotiated.remote_rtp, "[::1]:6000".parse().unwrap());
        assert!(has_line(&sdp, "c=IN IP6 ::1"));
        assert!(has_line(&sdp, "o=- 9 1 IN IP6 ::1"));
        assert_eq!(m_lines(&sdp), ["m=audio 40002 RTP/AVP 0 101"]);
    }

    #[test]
    fn session_level_connection_is_used_when_media_has_none() {
        let (negotiated, _) = answer(&crlf(ASTERISK_PCMU_FIRST), &local_v4()).unwrap();
        assert_eq!(
            negotiated.remote_rtp.ip(),
            "198.51.100.7".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn media_level_connection_wins_over_session_level() {
        let offer = "
            v=0
            o=- 1 1 IN IP4 192.0.2.1
            s=-
            c=IN IP4 192.0.2.1
            t=0 0
            m=audio 5004 RTP/AVP 0
            c=IN IP4 192.0.2.99
        ";
        let (negotiated, _) = answer(&crlf(offer), &local_v4()).unwrap();
        assert_eq!(negotiated.remote_rtp, "192.0.2.99:5004".parse().unwrap());
    }

    #[test]
    fn missing_connection_everywhere_is_malformed() {
        let offer = "
            v=0
            o=- 1 1 IN IP4 192.0.2.1
            s=-
            t=0 0
            m=audio 5004 RTP/AVP 0
        ";
        let err = answer(&crlf(offer), &local_v4()).unwrap_err();
        assert!(
            matches!(err, SdpError::Malformed(ref m) if m.contains("c=")),
            "{err}"
        );
    }

    #[test]
    fn host_names_and_mismatched_families_in_connection_are_malformed() {
        for c in [
            "c=IN IP4 pbx.example.net",
            "c=IN IP4 ::1",
            "c=IN IP6 192.0.2.1",
        ] {
            let offer =
                format!("v=0\no=- 1 1 IN IP4 192.0.2.1\ns=-\n{c}\nt=0 0\nm=audio 5004 RTP/AVP 0\n");
            let err = answer(&crlf(&offer), &local_v4()).unwrap_err();
            assert!(matches!(err, SdpError::Malformed(_)), "{c}: {err}");
        }
    }

    #[test]
    fn no_common_codec_lists_what_was_offered() {
        let offer = "
            v=0
            o=- 1 1 IN IP4 192.0.2.1
            s=-
            c=IN IP4 192.0.2.1
            t=0 0
            m=audio 5004 RTP/AVP 9 18 13 101
            a=rtpmap:9 G722/8000
            a=rtpmap:18 G729/8000
            a=rtpmap:101 telephone-event/8000
        ";
        let err = answer(&crlf(offer), &local_v4()).unwrap_err();
        assert_eq!(
            err,
            SdpError::NoCommonCodec {
                offered: vec!["G722/8000".into(), "G729/8000".into()]
            }
        );
        assert_eq!(
            err.to_string(),
            "no common audio codec: offered only G722/8000, G729/8000; \
             knappval speaks PCMU/8000, PCMA/8000"
        );
    }

    #[test]
    fn g711_under_a_dynamic_payload_type_is_named_but_not_taken() {
        let offer = "
            v=0
            o=- 1 1 IN IP4 192.0.2.1
            s=-
            c=IN IP4 192.0.2.1
            t=0 0
            m=audio 5004 RTP/AVP 96 97
            a=rtpmap:96 PCMU/8000
            a=rtpmap:97 opus/48000/2
        ";
        let err = answer(&crlf(offer), &local_v4()).unwrap_err();
        assert_eq!(
            err,
            SdpError::NoCommonCodec {
                offered: vec!["PCMU/8000 at payload type 96".into(), "opus/48000/2".into()]
            }
        );
    }

    #[test]
    fn video_and_audio_answers_video_rejected_in_place() {
        let offer = "
            v=0
            o=- 1 1 IN IP4 192.0.2.1
            s=-
            c=IN IP4 192.0.2.1
            t=0 0
            m=video 5006 RTP/AVP 96
            a=rtpmap:96 H264/90000
            m=audio 5004 RTP/AVP 8 101
            a=rtpmap:101 telephone-event/8000
        ";
        let (negotiated, sdp) = answer(&crlf(offer), &local_v4()).unwrap();
        assert_eq!(negotiated.remote_rtp.port(), 5004);
        assert_eq!(
            m_lines(&sdp),
            ["m=video 0 RTP/AVP 96", "m=audio 40000 RTP/AVP 8 101"]
        );
        assert!(!sdp.contains("H264"));
    }

    #[test]
    fn second_audio_line_is_rejected_and_first_usable_is_taken() {
        let offer = "
            v=0
            o=- 1 1 IN IP4 192.0.2.1
            s=-
            c=IN IP4 192.0.2.1
            t=0 0
            m=audio 5002 RTP/AVP 9
            m=audio 5004 RTP/AVP 0
            m=audio 5006 RTP/AVP 8
        ";
        let (negotiated, sdp) = answer(&crlf(offer), &local_v4()).unwrap();
        assert_eq!(negotiated.codec, Codec::Pcmu);
        assert_eq!(negotiated.remote_rtp.port(), 5004);
        assert_eq!(
            m_lines(&sdp),
            [
                "m=audio 0 RTP/AVP 9",
                "m=audio 40000 RTP/AVP 0",
                "m=audio 0 RTP/AVP 8"
            ]
        );
    }

    #[test]
    fn savp_is_rejected_and_plain_audio_beside_it_taken() {
        let offer = "
            v=0
            o=- 1 1 IN IP4 192.0.2.1
            s=-
            c=IN IP4 192.0.2.1
            t=0 0
            m=audio 5004 RTP/SAVP 0 8
            a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz
            m=audio 5006 RTP/AVP 0 8
        ";
        let (negotiated, sdp) = answer(&crlf(offer), &local_v4()).unwrap();
        assert_eq!(negotiated.remote_rtp.port(), 5006);
        assert_eq!(
            m_lines(&sdp),
            ["m=audio 0 RTP/SAVP 0 8", "m=audio 40000 RTP/AVP 0"]
        );
        assert!(!sdp.contains("crypto"));
    }

    #[test]
    fn savp_only_is_no_audio() {
        let offer = "
            v=0
            o=- 1 1 IN IP4 192.0.2.1
            s=-
            c=IN IP4 192.0.2.1
            t=0 0
            m=audio 5004 RTP/SAVP 0 8
        ";
        assert_eq!(
            answer(&crlf(offer), &local_v4()).unwrap_err(),
            SdpError::NoAudio
        );
    }

    #[test]
    fn port_zero_audio_is_not_used() {
        let rejected_only = "
            v=0
            o=- 1 1 IN IP4 192.0.2.1
            s=-
            c=IN IP4 192.0.2.1
            t=0 0
            m=audio 0 RTP/AVP 0
        ";
        assert_eq!(
            answer(&crlf(rejected_only), &local_v4()).unwrap_err(),
            SdpError::NoAudio
        );

        let with_live_stream = format!("{rejected_only}\nm=audio 5008 RTP/AVP 8\n");
        let (negotiated, sdp) = answer(&crlf(&with_live_stream), &local_v4()).unwrap();
        assert_eq!(negotiated.remote_rtp.port(), 5008);
        assert_eq!(
            m_lines(&sdp),
            ["m=audio 0 RTP/AVP 0", "m=audio 40000 RTP/AVP 8"]
        );
    }

    #[test]
    fn video_only_is_no_audio() {
        let offer = "
            v=0
            o=- 1 1 IN IP4 192.0.2.1
            s=-
            c=IN IP4 192.0.2.1
            t=0 0
            m=video 5006 RTP/AVP 96
        ";
        assert_eq!(
            answer(&crlf(offer), &local_v4()).unwrap_err(),
            SdpError::NoAudio
        );
    }

    fn offer_with(direction_lines: &str, connection: &str) -> Vec<u8> {
        crlf(&format!(
            "v=0\no=- 1 2 IN IP4 192.0.2.1\ns=-\nc={connection}\nt=0 0\n\
             m=audio 5004 RTP/AVP 0 101\na=rtpmap:101 telephone-event/8000\n{direction_lines}\n"
        ))
    }

    #[test]
    fn hold_variants_are_mirrored() {
        let cases = [
            ("a=sendonly", Direction::SendOnly, "a=recvonly"),
            ("a=inactive", Direction::Inactive, "a=inactive"),
            ("a=recvonly", Direction::RecvOnly, "a=sendonly"),
            ("a=sendrecv", Direction::SendRecv, "a=sendrecv"),
            ("", Direction::SendRecv, "a=sendrecv"),
        ];
        for (attribute, peer, ours) in cases {
            let offer = offer_with(attribute, "IN IP4 192.0.2.1");
            let (negotiated, sdp) = answer(&offer, &local_v4()).unwrap();
            assert_eq!(negotiated.direction, peer, "{attribute:?}");
            assert!(has_line(&sdp, ours), "{attribute:?} answered with:\n{sdp}");
            assert_eq!(negotiated.remote_rtp, "192.0.2.1:5004".parse().unwrap());
        }
    }

    #[test]
    fn session_level_direction_applies_unless_media_level_overrides() {
        let base = "v=0\no=- 1 2 IN IP4 192.0.2.1\ns=-\nc=IN IP4 192.0.2.1\nt=0 0\na=sendonly\n\
                    m=audio 5004 RTP/AVP 0\n";
        let (negotiated, _) = answer(&crlf(base), &local_v4()).unwrap();
        assert_eq!(negotiated.direction, Direction::SendOnly);

        let overridden = format!("{base}a=sendrecv\n");
        let (negotiated, _) = answer(&crlf(&overridden), &local_v4()).unwrap();
        assert_eq!(negotiated.direction, Direction::SendRecv);
    }

    #[test]
    fn old_style_hold_with_zero_address_is_inactive_and_keeps_port() {
        let offer = offer_with("a=sendrecv", "IN IP4 0.0.0.0");
        let (negotiated, sdp) = answer(&offer, &local_v4()).unwrap();
        assert_eq!(negotiated.direction, Direction::Inactive);
        assert_eq!(negotiated.remote_rtp, "0.0.0.0:5004".parse().unwrap());
        assert!(!negotiated.direction.receives());
        assert!(has_line(&sdp, "a=inactive"));
        // Our own address stays real: only the peer is on hold.
        assert!(has_line(&sdp, "c=IN IP4 10.20.30.40"));
    }

    #[test]
    fn peer_ptime_is_reported_and_nonsense_falls_back_to_20() {
        for (line, expected) in [("a=ptime:30", 30), ("a=ptime:0", 20), ("a=ptime:x", 20)] {
            let (negotiated, sdp) =
                answer(&offer_with(line, "IN IP4 192.0.2.1"), &local_v4()).unwrap();
            assert_eq!(negotiated.ptime_ms, expected, "{line}");
            assert!(has_line(&sdp, "a=ptime:20"));
        }
    }

    #[test]
    fn lf_only_line_endings_are_accepted() {
        let offer = ASTERISK_PCMU_FIRST
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join("\n");
        let (negotiated, _) = answer(offer.as_bytes(), &local_v4()).unwrap();
        assert_eq!(negotiated.codec, Codec::Pcmu);
    }

    #[test]
    fn empty_and_binary_bodies_are_malformed() {
        let bodies: [&[u8]; 6] = [
            b"",
            b"\r\n\r\n",
            b"\x00\x01\x02\xff\xfe",
            b"v=0\r\no=\xff\xfe 1 1 IN IP4 1.2.3.4\r\n",
            b"hello world",
            b"INVITE sip:a@b SIP/2.0\r\n",
        ];
        for body in bodies {
            assert!(
                matches!(answer(body, &local_v4()), Err(SdpError::Malformed(_))),
                "{body:?}"
            );
            assert!(
                matches!(parse_answer(body), Err(SdpError::Malformed(_))),
                "{body:?}"
            );
        }
    }

    #[test]
    fn sdp_cut_before_any_media_has_no_audio_and_cut_inside_a_line_is_malformed() {
        let full = crlf(ASTERISK_PCMU_FIRST);
        let text = String::from_utf8(full.clone()).unwrap();
        let before_media = text.find("m=audio").unwrap();
        assert_eq!(
            answer(&full[..before_media], &local_v4()).unwrap_err(),
            SdpError::NoAudio
        );
        let inside_origin = text.find("1234 IN").unwrap();
        assert!(matches!(
            answer(&full[..inside_origin], &local_v4()),
            Err(SdpError::Malformed(_))
        ));
    }

    #[test]
    fn too_many_media_lines_are_refused() {
        let mut offer = String::from(
            "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n",
        );
        for i in 0..2000 {
            offer.push_str(&format!("m=audio {} RTP/AVP 0\r\n", 1000 + i));
        }
        assert!(offer.len() <= MAX_SDP_BYTES);
        let err = answer(offer.as_bytes(), &local_v4()).unwrap_err();
        assert!(
            matches!(err, SdpError::Malformed(ref m) if m.contains("m= lines")),
            "{err}"
        );
    }

    #[test]
    fn oversized_bodies_are_refused_unread() {
        let mut offer = crlf(ASTERISK_PCMU_FIRST);
        offer.resize(MAX_SDP_BYTES + 1, b'\n');
        assert!(matches!(
            answer(&offer, &local_v4()),
            Err(SdpError::Malformed(ref m)) if m.contains("bytes")
        ));
    }

    #[test]
    fn error_details_from_the_peer_are_clipped_and_printable() {
        let clipped = clip(&format!("evil\r\nheader{}", "x".repeat(500)));
        assert!(!clipped.contains('\r') && !clipped.contains('\n'));
        assert!(clipped.chars().count() <= MAX_DETAIL_CHARS + 1);
    }

    #[test]
    fn our_offer_lists_preferred_codec_first() {
        let sdp = offer(&local_v4(), Codec::Pcma);
        assert_eq!(
            lines(&sdp),
            [
                "v=0",
                "o=- 7000001 3 IN IP4 10.20.30.40",
                "s=knappval",
                "c=IN IP4 10.20.30.40",
                "t=0 0",
                "m=audio 40000 RTP/AVP 8 0 101",
                "a=rtpmap:8 PCMA/8000",
                "a=rtpmap:0 PCMU/8000",
                "a=rtpmap:101 telephone-event/8000",
                "a=fmtp:101 0-16",
                "a=ptime:20",
                "a=sendrecv",
            ]
        );
        assert_eq!(
            m_lines(&offer(&local_v6(), Codec::Pcmu)),
            ["m=audio 40002 RTP/AVP 0 8 101"]
        );
    }

    #[test]
    fn round_trip_offer_answer_parse_answer() {
        let caller_side = local_v4();
        let function_side = LocalMedia {
            ip: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 77)),
            rtp_port: 30000,
            session_id: 55,
            session_version: 1,
        };
        for prefer in [Codec::Pcmu, Codec::Pcma] {
            let our_offer = offer(&caller_side, prefer);
            let (at_function, their_answer) = answer(our_offer.as_bytes(), &function_side).unwrap();
            assert_eq!(at_function.codec, prefer);
            assert_eq!(at_function.telephone_event, Some(OFFER_TELEPHONE_EVENT_PT));
            assert_eq!(at_function.remote_rtp, "10.20.30.40:40000".parse().unwrap());
            assert_eq!(at_function.direction, Direction::SendRecv);

            let at_us = parse_answer(their_answer.as_bytes()).unwrap();
            assert_eq!(at_us.codec, prefer);
            assert_eq!(at_us.telephone_event, Some(OFFER_TELEPHONE_EVENT_PT));
            assert_eq!(at_us.remote_rtp, "192.0.2.77:30000".parse().unwrap());
            assert_eq!(at_us.direction, Direction::SendRecv);
        }
    }

    #[test]
    fn parse_answer_takes_the_answered_codec_and_event_type() {
        let reply = "
            v=0
            o=ServiceDesk 5 6 IN IP4 192.0.2.50
            s=-
            c=IN IP4 192.0.2.50
            t=0 0
            m=audio 31000 RTP/AVP 8 0 96
            a=rtpmap:96 telephone-event/8000
            a=recvonly
        ";
        let negotiated = parse_answer(&crlf(reply)).unwrap();
        assert_eq!(negotiated.codec, Codec::Pcma);
        assert_eq!(negotiated.telephone_event, Some(96));
        assert_eq!(negotiated.direction, Direction::RecvOnly);
        assert!(!negotiated.direction.sends());
    }

    #[test]
    fn parse_answer_refuses_codecs_we_did_not_offer() {
        let reply = "
            v=0
            o=- 5 6 IN IP4 192.0.2.50
            s=-
            c=IN IP4 192.0.2.50
            t=0 0
            m=audio 31000 RTP/AVP 18 96
            a=rtpmap:96 PCMA/8000
        ";
        assert_eq!(
            parse_answer(&crlf(reply)).unwrap_err(),
            SdpError::NoCommonCodec {
                offered: vec!["G729/8000".into(), "PCMA/8000 at payload type 96".into()]
            }
        );
    }

    #[test]
    fn parse_answer_with_rejected_audio_is_no_audio() {
        let reply = "
            v=0
            o=- 5 6 IN IP4 192.0.2.50
            s=-
            c=IN IP4 192.0.2.50
            t=0 0
            m=audio 0 RTP/AVP 0
        ";
        assert_eq!(parse_answer(&crlf(reply)).unwrap_err(), SdpError::NoAudio);
    }

    /// Mutations of a valid offer, each of which must come back as Ok or Err, never a panic.
    #[test]
    fn mutated_offers_never_panic() {
        let valid = crlf(FREESWITCH_G729_FIRST);
        let local = local_v4();
        let mut tried = 0usize;
        let mut check = |body: &[u8], what: &dyn Fn() -> String| {
            let outcome = std::panic::catch_unwind(|| {
                let _ = answer(body, &local);
                let _ = parse_answer(body);
            });
            assert!(outcome.is_ok(), "panicked on {}", what());
            tried += 1;
        };

        for cut in 0..=valid.len() {
            check(&valid[..cut], &|| format!("truncation at {cut}"));
        }
        let replacements = [0x00, 0xff, b'\r', b'\n', b'=', b' ', b'/', b':', b'9', b'-'];
        for at in 0..valid.len() {
            for &byte in &replacements {
                let mut mutated = valid.clone();
                mutated[at] = byte;
                check(&mutated, &|| format!("byte {at} set to {byte:#04x}"));
            }
            let mut flipped = valid.clone();
            flipped[at] ^= 0x20;
            check(&flipped, &|| format!("byte {at} case-flipped"));
        }
        // Deterministic pseudo-random multi-byte damage (xorshift), reproducible by seed.
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        for round in 0..2000 {
            let mut mutated = valid.clone();
            for _ in 0..4 {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let at = (state % mutated.len() as u64) as usize;
                mutated[at] = (state >> 32) as u8;
            }
            check(&mutated, &|| format!("random round {round}"));
        }
        assert!(tried > valid.len() * replacements.len());
    }
}
