//! One call leg's media: its RTP socket and the RTCP socket beside it, the outbound stream (prompts or
//! silence, paced), and what the peer sends (digits, liveness), as a cancel-safe `next_event` for the
//! call task's `tokio::select!`.
//!
//! Liveness: the media timeout counts from the peer's last sign of life, which is valid RTP, RTCP on either
//! port (RFC 3550 port + 1, or multiplexed on the RTP port, RFC 5761), or whatever the call task reports
//! through [`MediaSession::note_life`] (SIP requests in the dialog). A leg on hold in either direction (the
//! peer's latest SDP is not `sendrecv`) has no timeout: silence is what hold means.
//!
//! Owns the socket and the leg's RTP state. Does not decide what to play (the flow does) or
//! parse SDP (sip does): it is told the remote address, codec and telephone-event payload type.
//! The relay (`relay.rs`) borrows two sessions and uses the receive/forward halves here.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use tracing::{debug, warn};

use super::codec::{Codec, FRAME_SAMPLES};
use super::dtmf::{DtmfReceiver, InbandDtmfDetector};
use super::player::{Frame, Pacer, PromptPlayer};
use super::ports::RtpPorts;
use super::prompt::Prompt;
use super::rtp::{self, RtpError, RtpStream};

/// How long the peer may send no RTP before the call is presumed dead (RFC 3550 peers send
/// continuously; gateways that stop are gone or broken).
pub const DEFAULT_MEDIA_TIMEOUT: Duration = Duration::from_secs(60);
/// Comfort noise (RFC 3389): a live peer, no audio for us.
const PT_COMFORT_NOISE: u8 = 13;
/// Bigger than any RTP packet over an Ethernet MTU; larger datagrams are cut and then invalid.
const RECEIVE_BUFFER: usize = 2048;
/// RTCP is only looked at for its header (life), so a cut compound packet is fine.
const RTCP_BUFFER: usize = 512;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaEvent {
    /// The prompt given to `play` has been sent to its last frame.
    PromptEnded,
    /// The caller pressed a key (RFC 4733, or in-band tones when no telephone-event was agreed).
    Digit(char),
    /// The peer has sent no RTP or RTCP, and the call task reported no life, for the media timeout
    /// (never while on hold).
    MediaTimeout,
}

/// Counters of one leg, for the contact record's quality fields and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MediaStats {
    pub packets_sent: u64,
    /// Valid RTP from the peer.
    pub packets_received: u64,
    /// Datagrams that are not RTP: too short, wrong version, truncated headers, bad padding.
    pub malformed_dropped: u64,
    /// Valid RTP we do not take: unknown payload type, or from other than the latched source.
    pub foreign_dropped: u64,
    /// RTCP from the peer, on the RTP port (rtcp-mux) or the RTCP port: life, not media.
    pub rtcp_received: u64,
    /// 20 ms frames not sent because the process stalled (the RTP clock still moved on).
    pub frames_skipped: u64,
    pub send_errors: u64,
    /// Packets received on this leg and forwarded to the other by the relay.
    pub packets_relayed: u64,
    /// Of those, re-encoded between µ-law and A-law.
    pub packets_transcoded: u64,
    pub digits: u64,
}

/// What was agreed in SDP, and where the peer's media actually comes from.
#[derive(Debug, Clone, Copy)]
struct Peer {
    remote: SocketAddr,
    codec: Codec,
    telephone_event: Option<u8>,
}

/// Log each kind of trouble once per session: a flood of bad packets must not flood the log.
#[derive(Debug, Default)]
struct Logged {
    malformed: bool,
    foreign_source: bool,
    unknown_payload_type: bool,
    send_error: bool,
    receive_error: bool,
}

/// One valid, accepted inbound packet, its payload left in the receive buffer.
#[derive(Debug, Clone)]
pub(super) enum Inbound {
    Audio {
        codec: Codec,
        marker: bool,
        timestamp: u32,
        ssrc: u32,
        payload: Range<usize>,
    },
    Event {
        marker: bool,
        timestamp: u32,
        ssrc: u32,
        payload: Range<usize>,
    },
    /// Dropped (and counted), or valid but nothing to act on (comfort noise).
    Nothing,
}

/// Where relayed media from one source continues on our outbound clock.
#[derive(Debug, Clone, Copy)]
struct RelayClock {
    source_ssrc: u32,
    offset: u32,
}

#[derive(Debug)]
pub struct MediaSession {
    socket: UdpSocket,
    /// RTP port + 1: RTCP from peers that do not multiplex it.
    rtcp: UdpSocket,
    /// The same socket, for sending without waiting: a UDP send only fails to go out at once
    /// when the socket buffer is full, and then the frame is better dropped than late. (Tokio's
    /// `try_send_to` would also refuse until its reactor has first seen the socket writable.)
    sender: std::net::UdpSocket,
    local: SocketAddr,
    peer: Option<Peer>,
    /// The address the peer's SDP announced (`peer.remote` may move to the latched source).
    announced: Option<SocketAddr>,
    /// Where the peer's signalling came from: RTP from that host may be latched to as well (a NATed phone
    /// announces its private address in SDP but sends from the public one).
    signalling_ip: Option<IpAddr>,
    /// The remote address has been learnt from the peer's own RTP (symmetric RTP, RFC 4961).
    latched: bool,
    stream: RtpStream,
    /// `None` before `start` and while relaying; restarted when prompts resume.
    pacer: Option<Pacer>,
    player: PromptPlayer,
    dtmf: DtmfReceiver,
    inband: InbandDtmfDetector,
    sending: bool,
    /// The peer's SDP says it sends (sendrecv/sendonly). When it does not, silence is expected.
    peer_sends: bool,
    media_timeout: Duration,
    /// The peer's last sign of life (RTP, RTCP, or reported by the call task).
    last_received: Instant,
    relay_clock: Option<RelayClock>,
    stats: MediaStats,
    logged: Logged,
    receive_buffer: Box<[u8; RECEIVE_BUFFER]>,
    rtcp_buffer: Box<[u8; RTCP_BUFFER]>,
}

impl MediaSession {
    /// Binds an RTP port and its RTCP neighbour on `ip` from `ports`. Nothing is sent until [`start`].
    ///
    /// [`start`]: MediaSession::start
    pub async fn open(ip: IpAddr, ports: &RtpPorts) -> io::Result<MediaSession> {
        let (bound, rtcp) = ports.bind_pair_std(ip)?;
        let sender = bound.try_clone()?;
        let socket = UdpSocket::from_std(bound)?;
        let rtcp = UdpSocket::from_std(rtcp)?;
        let local = socket.local_addr()?;
        Ok(MediaSession {
            socket,
            rtcp,
            sender,
            local,
            peer: None,
            announced: None,
            signalling_ip: None,
            latched: false,
            stream: RtpStream::new(),
            pacer: None,
            player: PromptPlayer::new(Codec::Pcmu),
            dtmf: DtmfReceiver::new(),
            inband: InbandDtmfDetector::new(),
            sending: true,
            peer_sends: true,
            media_timeout: DEFAULT_MEDIA_TIMEOUT,
            last_received: Instant::now(),
            relay_clock: None,
            stats: MediaStats::default(),
            logged: Logged::default(),
            receive_buffer: Box::new([0; RECEIVE_BUFFER]),
            rtcp_buffer: Box::new([0; RTCP_BUFFER]),
        })
    }

    /// The address to put in our SDP.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The host the peer's SIP came from. RTP is latched to only from that host or the SDP's, so a stranger
    /// spraying RTP at our port range cannot take the caller's stream (and hear or steer the call).
    pub fn set_signalling_source(&mut self, ip: IpAddr) {
        self.signalling_ip = Some(ip);
    }

    /// `Duration::ZERO` disables the media timeout.
    pub fn set_media_timeout(&mut self, timeout: Duration) {
        self.media_timeout = timeout;
    }

    /// Begins the stream towards the peer: remote from SDP, codec and telephone-event payload
    /// type as negotiated (`None`: none offered, digits are then detected in-band).
    pub fn start(
        &mut self,
        remote: SocketAddr,
        codec: Codec,
        telephone_event: Option<u8>,
        now: Instant,
    ) {
        self.update_remote(remote, codec, telephone_event);
        self.pacer = Some(Pacer::new(now));
        self.last_received = now;
    }

    /// A re-INVITE changed the peer's address or codec: a new address is used until the peer's RTP
    /// shows where it really is (a new latch); the same address (a session refresh, a codec change)
    /// keeps the latch.
    pub fn update_remote(&mut self, remote: SocketAddr, codec: Codec, telephone_event: Option<u8>) {
        let keep_latch = self.latched && self.announced == Some(remote);
        let target = match (&self.peer, keep_latch) {
            (Some(peer), true) => peer.remote,
            _ => remote,
        };
        self.peer = Some(Peer {
            remote: target,
            codec,
            telephone_event,
        });
        self.announced = Some(remote);
        self.latched = keep_latch;
        self.player.set_codec(codec);
        self.stream.mark_talkspurt();
    }

    /// Follows the direction in the peer's latest SDP. Hold in either direction (`sendonly`,
    /// `recvonly`, `inactive`) suspends the media timeout. When the peer does not receive we stop
    /// sending; the RTP clock and the prompt run on, so sending resumes seamlessly and the menu never
    /// stalls.
    pub fn set_direction(&mut self, peer_receives: bool, peer_sends: bool) {
        let was_on_hold = self.on_hold();
        if peer_receives && !self.sending {
            self.stream.mark_talkspurt();
        }
        self.sending = peer_receives;
        self.peer_sends = peer_sends;
        if was_on_hold && !self.on_hold() {
            // The timeout starts afresh when the call comes off hold.
            self.last_received = Instant::now();
        }
    }

    fn on_hold(&self) -> bool {
        !(self.sending && self.peer_sends)
    }

    /// The peer showed life other than by media (a SIP request in its dialog): the timeout restarts.
    pub fn note_life(&mut self, now: Instant) {
        self.last_received = self.last_received.max(now);
    }

    /// Plays `prompt` from its start, replacing any prompt playing.
    pub fn play(&mut self, prompt: Arc<Prompt>) {
        self.player.play(prompt);
    }

    /// Plays `prompt` in a gapless loop (hold music) until replaced or stopped; no `PromptEnded` comes.
    pub fn play_looped(&mut self, prompt: Arc<Prompt>) {
        self.player.play_looped(prompt);
    }

    /// Plays `prompt` once over the loop playing (an announcement over hold music); the loop goes on where it
    /// paused, with no gap, and `PromptEnded` reports the announcement's end.
    pub fn play_over_loop(&mut self, prompt: Arc<Prompt>) {
        self.player.play_over_loop(prompt);
    }

    /// Stops the prompt (barge-in); no `PromptEnded` follows for it.
    pub fn stop_prompt(&mut self) {
        self.player.stop();
    }

    pub fn is_playing(&self) -> bool {
        self.player.is_playing()
    }

    pub fn stats(&self) -> MediaStats {
        self.stats
    }

    /// The negotiated codec, once started.
    pub fn codec(&self) -> Option<Codec> {
        self.peer.map(|peer| peer.codec)
    }

    /// Where we send: the SDP address, or where the peer's RTP comes from once latched.
    pub fn remote_addr(&self) -> Option<SocketAddr> {
        self.peer.map(|peer| peer.remote)
    }

    /// Sends every frame that is due (prompt or silence: the stream never stalls), receives
    /// RTP, and returns the next event. Cancel-safe: all state changes happen between awaits,
    /// and the only awaits are a UDP receive and a timer, both cancel-safe.
    pub async fn next_event(&mut self) -> MediaEvent {
        loop {
            if let Some(event) = self.poll(Instant::now()) {
                return event;
            }
            let wake = self.next_wakeup();
            // Far enough away to never fire when nothing is timed.
            let wake = wake.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
            let received = tokio::select! {
                result = self.socket.recv_from(&mut self.receive_buffer[..]) => Some(result),
                result = self.rtcp.recv_from(&mut self.rtcp_buffer[..]) => {
                    match result {
                        Ok((length, source)) => self.on_rtcp_port(length, source, Instant::now()),
                        Err(error) => self.on_receive_error(&error),
                    }
                    None
                }
                () = tokio::time::sleep_until(tokio::time::Instant::from_std(wake)) => None,
            };
            match received {
                Some(Ok((length, source))) => {
                    let now = Instant::now();
                    if let Some(event) = self.on_datagram(length, source, now) {
                        return event;
                    }
                }
                Some(Err(error)) => self.on_receive_error(&error),
                None => {}
            }
        }
    }

    /// Sends what is due and reports a finished prompt or a media timeout.
    fn poll(&mut self, now: Instant) -> Option<MediaEvent> {
        // Nothing is sent or timed before `start`.
        self.peer?;
        self.send_due(now);
        if self.player.take_finished() {
            return Some(MediaEvent::PromptEnded);
        }
        if self.media_timed_out(now) {
            // Re-armed, so a caller that ignores the event is not woken in a busy loop.
            self.last_received = now;
            return Some(MediaEvent::MediaTimeout);
        }
        None
    }

    pub(super) fn media_timed_out(&self, now: Instant) -> bool {
        self.timeout_deadline()
            .is_some_and(|deadline| now >= deadline)
    }

    pub(super) fn timeout_deadline(&self) -> Option<Instant> {
        (self.peer.is_some() && !self.on_hold() && !self.media_timeout.is_zero())
            .then(|| self.last_received + self.media_timeout)
    }

    /// Re-arms the timeout after the relay reported it.
    pub(super) fn rearm_timeout(&mut self, now: Instant) {
        self.last_received = now;
    }

    fn next_wakeup(&self) -> Option<Instant> {
        let frame = self.pacer.as_ref().map(Pacer::next_deadline);
        match (frame, self.timeout_deadline()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn send_due(&mut self, now: Instant) {
        let Some(peer) = self.peer else {
            return;
        };
        // Back from a relay: a fresh schedule from now, a new talkspurt on the same stream.
        if self.pacer.is_none() {
            self.pacer = Some(Pacer::new(now));
            self.stream.mark_talkspurt();
        }
        let Some(due) = self.pacer.as_mut().map(|pacer| pacer.poll(now)) else {
            return;
        };
        if due.skipped > 0 {
            self.stream
                .skip((due.skipped * FRAME_SAMPLES as u64) as u32);
            self.stream.mark_talkspurt();
            self.stats.frames_skipped += due.skipped;
        }
        let can_send = self.sending && is_sendable(peer.remote);
        for _ in 0..due.frames {
            if !can_send {
                // On hold the clock runs on and so does the prompt, unheard: the menu keeps moving (its
                // timers and fallback still end a call whose caller never comes back).
                let _ = self.player.next_frame();
                self.stream.skip(FRAME_SAMPLES as u32);
                continue;
            }
            let silence = [peer.codec.silence_byte(); FRAME_SAMPLES];
            let payload: &[u8] = match self.player.next_frame() {
                Frame::Prompt { bytes, first } => {
                    if first {
                        self.stream.mark_talkspurt();
                    }
                    bytes
                }
                Frame::Silence => &silence,
            };
            let packet =
                self.stream
                    .frame(peer.codec.payload_type(), payload, FRAME_SAMPLES as u32);
            match packet {
                Ok(packet) => match self.sender.send_to(packet, peer.remote) {
                    Ok(_) => self.stats.packets_sent += 1,
                    Err(error) => {
                        self.stats.send_errors += 1;
                        log_send_error(&mut self.logged, self.local, peer.remote, &error);
                    }
                },
                // Our own frames always fit; counted should that ever change.
                Err(_) => self.stats.send_errors += 1,
            }
        }
    }

    fn on_datagram(
        &mut self,
        length: usize,
        source: SocketAddr,
        now: Instant,
    ) -> Option<MediaEvent> {
        let inbound = self.accept(length, source, now);
        let telephone_event = self.peer.and_then(|peer| peer.telephone_event);
        let digit = match inbound {
            Inbound::Event {
                timestamp, payload, ..
            } => self
                .dtmf
                .on_packet(timestamp, &self.receive_buffer[payload]),
            Inbound::Audio { codec, payload, .. } if telephone_event.is_none() => {
                let mut samples = [0i16; RECEIVE_BUFFER];
                let bytes = &self.receive_buffer[payload];
                codec.decode(bytes, &mut samples);
                self.inband.feed(&samples[..bytes.len()])
            }
            _ => None,
        }?;
        self.stats.digits += 1;
        Some(MediaEvent::Digit(digit))
    }

    /// Validates a received datagram, latches the peer's address, and classifies it.
    pub(super) fn accept(&mut self, length: usize, source: SocketAddr, now: Instant) -> Inbound {
        let datagram = &self.receive_buffer[..length];
        let packet = match rtp::parse(datagram) {
            Ok(packet) => packet,
            Err(RtpError::Rtcp(_)) => {
                self.on_rtcp(source, now);
                return Inbound::Nothing;
            }
            Err(error) => {
                self.stats.malformed_dropped += 1;
                if !std::mem::replace(&mut self.logged.malformed, true) {
                    debug!(local = %self.local, %source, %error, "dropping malformed RTP (logged once)");
                }
                return Inbound::Nothing;
            }
        };
        let Some(peer) = self.peer.as_mut() else {
            self.stats.foreign_dropped += 1;
            return Inbound::Nothing;
        };
        if self.latched && source != peer.remote {
            self.stats.foreign_dropped += 1;
            if !std::mem::replace(&mut self.logged.foreign_source, true) {
                debug!(local = %self.local, %source, latched = %peer.remote,
                    "dropping RTP from other than the peer's source (logged once)");
            }
            return Inbound::Nothing;
        }
        let pt = packet.payload_type;
        let is_event = peer.telephone_event == Some(pt);
        let audio = Codec::from_payload_type(pt);
        if !is_event && audio.is_none() && pt != PT_COMFORT_NOISE {
            self.stats.foreign_dropped += 1;
            if !std::mem::replace(&mut self.logged.unknown_payload_type, true) {
                debug!(local = %self.local, %source, payload_type = pt,
                    "dropping RTP of a payload type not negotiated (logged once)");
            }
            return Inbound::Nothing;
        }
        if !self.latched {
            let plausible =
                source.ip() == peer.remote.ip() || Some(source.ip()) == self.signalling_ip;
            if !plausible {
                self.stats.foreign_dropped += 1;
                if !std::mem::replace(&mut self.logged.foreign_source, true) {
                    debug!(local = %self.local, %source, sdp = %peer.remote,
                        "dropping RTP from a host that is neither the SDP's nor the signalling's (logged once)");
                }
                return Inbound::Nothing;
            }
            if source != peer.remote {
                debug!(local = %self.local, sdp = %peer.remote, actual = %source,
                    "peer's RTP comes from elsewhere than its SDP said: sending there");
                peer.remote = source;
            }
            self.latched = true;
        }
        self.last_received = now;
        self.stats.packets_received += 1;
        // The payload's position in the buffer, so it can be read after this borrow ends.
        let start = packet.payload.as_ptr() as usize - datagram.as_ptr() as usize;
        let payload = start..start + packet.payload.len();
        let (marker, timestamp, ssrc) = (packet.marker, packet.timestamp, packet.ssrc);
        match audio {
            _ if is_event => Inbound::Event {
                marker,
                timestamp,
                ssrc,
                payload,
            },
            Some(codec) => Inbound::Audio {
                codec,
                marker,
                timestamp,
                ssrc,
                payload,
            },
            None => Inbound::Nothing,
        }
    }

    /// A datagram on the RTCP port: life when it is RTCP from the peer's host (any RTCP packet type,
    /// RFC 3550 and its feedback/XR extensions, 200-207).
    pub(super) fn on_rtcp_port(&mut self, length: usize, source: SocketAddr, now: Instant) {
        let header = &self.rtcp_buffer[..length.min(RTCP_BUFFER)];
        let is_rtcp = header.len() >= 8 && header[0] >> 6 == 2 && (200..=207).contains(&header[1]);
        if is_rtcp {
            self.on_rtcp(source, now);
        } else {
            self.stats.malformed_dropped += 1;
        }
    }

    /// RTCP proves the peer alive only when it comes from where its media may come from: a stranger
    /// must not keep a dead call up.
    fn on_rtcp(&mut self, source: SocketAddr, now: Instant) {
        let Some(peer) = self.peer else {
            return;
        };
        let from_peer = source.ip() == peer.remote.ip()
            || self.announced.is_some_and(|a| a.ip() == source.ip())
            || Some(source.ip()) == self.signalling_ip;
        if from_peer {
            self.stats.rtcp_received += 1;
            self.last_received = now;
        } else {
            self.stats.foreign_dropped += 1;
        }
    }

    fn on_receive_error(&mut self, error: &io::Error) {
        if !std::mem::replace(&mut self.logged.receive_error, true) {
            warn!(local = %self.local, %error, "RTP receive failed (logged once)");
        }
    }

    /// Receives one RTP datagram into the session's buffer (for the relay's `select!`); RTCP arriving
    /// meanwhile on the RTCP port is taken in as life. Cancel-safe: each datagram is handled whole.
    pub(super) async fn receive(&mut self) -> io::Result<(usize, SocketAddr)> {
        loop {
            tokio::select! {
                result = self.socket.recv_from(&mut self.receive_buffer[..]) => {
                    if let Err(error) = &result {
                        self.on_receive_error(error);
                    }
                    return result;
                }
                result = self.rtcp.recv_from(&mut self.rtcp_buffer[..]) => match result {
                    Ok((length, source)) => self.on_rtcp_port(length, source, Instant::now()),
                    Err(error) => self.on_receive_error(&error),
                },
            }
        }
    }

    /// Where peers send RTCP that is not multiplexed.
    pub fn rtcp_addr(&self) -> io::Result<SocketAddr> {
        self.rtcp.local_addr()
    }

    pub(super) fn received(&self, range: Range<usize>) -> &[u8] {
        &self.receive_buffer[range]
    }

    /// Hands the leg to the relay: prompts stop and the pacer with them; the next relayed
    /// packet starts a talkspurt on this leg's own stream.
    pub(super) fn enter_relay(&mut self) {
        self.player.stop();
        self.pacer = None;
        self.relay_clock = None;
        self.stream.mark_talkspurt();
    }

    /// What a relayed packet must be re-encoded to on this leg; `None` if this leg takes no
    /// media now (not started, on hold, no address yet).
    pub(super) fn relay_target(&self) -> Option<(Codec, Option<u8>)> {
        let peer = self.peer?;
        (self.sending && is_sendable(peer.remote)).then_some((peer.codec, peer.telephone_event))
    }

    /// Sends a packet relayed from the other leg on this leg's own stream: own SSRC and
    /// sequence, the source's timing carried over by a fixed offset (re-based when the source's
    /// SSRC changes), so telephone-event packets keep sharing their start timestamp.
    pub(super) fn send_relayed(
        &mut self,
        payload_type: u8,
        marker: bool,
        source_ssrc: u32,
        source_timestamp: u32,
        payload: &[u8],
        samples: u32,
    ) -> bool {
        let Some(peer) = self.peer else {
            return false;
        };
        let clock = match self.relay_clock {
            Some(clock) if clock.source_ssrc == source_ssrc => clock,
            _ => {
                let clock = RelayClock {
                    source_ssrc,
                    offset: self.stream.timestamp().wrapping_sub(source_timestamp),
                };
                self.relay_clock = Some(clock);
                self.stream.mark_talkspurt();
                clock
            }
        };
        let timestamp = source_timestamp.wrapping_add(clock.offset);
        let Ok(packet) = self
            .stream
            .forward(payload_type, marker, timestamp, payload, samples)
        else {
            self.stats.send_errors += 1;
            return false;
        };
        match self.sender.send_to(packet, peer.remote) {
            Ok(_) => {
                self.stats.packets_sent += 1;
                true
            }
            Err(error) => {
                self.stats.send_errors += 1;
                log_send_error(&mut self.logged, self.local, peer.remote, &error);
                false
            }
        }
    }

    pub(super) fn count_relayed(&mut self, transcoded: bool) {
        self.stats.packets_relayed += 1;
        if transcoded {
            self.stats.packets_transcoded += 1;
        }
    }
}

fn is_sendable(remote: SocketAddr) -> bool {
    !remote.ip().is_unspecified() && remote.port() != 0
}

fn log_send_error(logged: &mut Logged, local: SocketAddr, remote: SocketAddr, error: &io::Error) {
    if !std::mem::replace(&mut logged.send_error, true) {
        warn!(%local, %remote, %error, "RTP send failed (logged once)");
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::media::dtmf::{digit_event, encode_event};
    use crate::media::tone::synthesize;
    use std::net::Ipv4Addr;

    pub(in crate::media) const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

    pub(in crate::media) fn test_ports() -> RtpPorts {
        // A range of its own, away from ports.rs's tests; busy ports are skipped.
        RtpPorts::new(36000, 37998).unwrap()
    }

    pub(in crate::media) async fn peer_socket() -> UdpSocket {
        UdpSocket::bind((LOCALHOST, 0)).await.unwrap()
    }

    /// Runs the session until `wanted` or 2 s pass; returns every event seen before.
    async fn events_until(session: &mut MediaSession, wanted: MediaEvent) -> Vec<MediaEvent> {
        let mut seen = Vec::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
        while let Ok(event) = tokio::time::timeout_at(deadline, session.next_event()).await {
            seen.push(event);
            if event == wanted {
                return seen;
            }
        }
        panic!("no {wanted:?} within 2 s; saw {seen:?}");
    }

    /// Events in the next `millis` (the session keeps sending meanwhile).
    async fn events_for(session: &mut MediaSession, millis: u64) -> Vec<MediaEvent> {
        let mut seen = Vec::new();
        let deadline = tokio::time::Instant::now() + Duration::from_millis(millis);
        while let Ok(event) = tokio::time::timeout_at(deadline, session.next_event()).await {
            seen.push(event);
        }
        seen
    }

    /// Everything that has arrived, waiting briefly for datagrams still in the kernel's path.
    pub(in crate::media) async fn drain(socket: &UdpSocket) -> Vec<Vec<u8>> {
        let mut buffer = [0u8; 2048];
        let mut packets = Vec::new();
        while let Ok(Ok((length, _))) =
            tokio::time::timeout(Duration::from_millis(20), socket.recv_from(&mut buffer)).await
        {
            packets.push(buffer[..length].to_vec());
        }
        packets
    }

    fn key_press(digit: char, timestamp: u32, sequence: u16) -> Vec<Vec<u8>> {
        let event = digit_event(digit).unwrap();
        let mut stream = RtpStream::with_state(0xCA11E4, sequence, timestamp);
        let mut packets = Vec::new();
        for (end, duration) in [
            (false, 160),
            (false, 320),
            (true, 480),
            (true, 480),
            (true, 480),
        ] {
            let payload = encode_event(event, end, 10, duration);
            packets.push(
                stream
                    .forward(101, duration == 160, timestamp, &payload, 0)
                    .unwrap()
                    .to_vec(),
            );
        }
        packets
    }

    #[tokio::test]
    async fn a_prompt_arrives_frame_for_frame_and_ends_once() {
        let ports = test_ports();
        let mut session = MediaSession::open(LOCALHOST, &ports).await.unwrap();
        let caller = peer_socket().await;
        let samples = synthesize(&[(440.0, 9000.0)], 10 * FRAME_SAMPLES - 37);
        let prompt = Arc::new(Prompt::from_samples("welcome", samples));
        session.start(
            caller.local_addr().unwrap(),
            Codec::Pcma,
            Some(101),
            Instant::now(),
        );
        session.play(prompt.clone());

        let events = events_until(&mut session, MediaEvent::PromptEnded).await;
        assert_eq!(events, [MediaEvent::PromptEnded]);
        let packets = drain(&caller).await;
        assert_eq!(packets.len(), 10, "ten frames, then the prompt ended");
        let parsed: Vec<_> = packets.iter().map(|p| rtp::parse(p).unwrap()).collect();
        for (index, packet) in parsed.iter().enumerate() {
            assert_eq!(packet.payload_type, 8);
            assert_eq!(packet.payload, &prompt.frames(Codec::Pcma)[index][..]);
            assert_eq!(packet.marker, index == 0);
            assert_eq!(
                packet.sequence,
                parsed[0].sequence.wrapping_add(index as u16)
            );
            assert_eq!(
                packet.timestamp,
                parsed[0].timestamp.wrapping_add(160 * index as u32)
            );
            assert_eq!(packet.ssrc, parsed[0].ssrc);
        }
        // Afterwards the stream goes on with silence, on the same clock.
        assert!(events_for(&mut session, 100).await.is_empty());
        let silence = drain(&caller).await;
        assert!(!silence.is_empty());
        let first = rtp::parse(&silence[0]).unwrap();
        assert!(
            first
                .payload
                .iter()
                .all(|b| *b == Codec::Pcma.silence_byte())
        );
        assert_eq!(first.sequence, parsed[9].sequence.wrapping_add(1));
        assert_eq!(first.timestamp, parsed[9].timestamp.wrapping_add(160));
        assert_eq!(session.stats().packets_sent as usize, 10 + silence.len());
    }

    #[tokio::test]
    async fn rtp_from_a_stranger_host_is_never_latched() {
        let ports = test_ports();
        let mut session = MediaSession::open(LOCALHOST, &ports).await.unwrap();
        let caller = peer_socket().await;
        session.set_signalling_source(LOCALHOST);
        session.start(
            caller.local_addr().unwrap(),
            Codec::Pcmu,
            Some(101),
            Instant::now(),
        );
        let target = session.local_addr();
        // Another host (127.0.0.2 is loopback too) sprays RTP before the caller's first packet.
        let stranger = UdpSocket::bind((IpAddr::from([127, 0, 0, 2]), 0))
            .await
            .unwrap();
        for packet in key_press('9', 4000, 77) {
            stranger.send_to(&packet, target).await.unwrap();
        }
        assert!(
            events_for(&mut session, 150).await.is_empty(),
            "no digit from the stranger"
        );
        assert_eq!(session.remote_addr(), Some(caller.local_addr().unwrap()));
        assert_eq!(session.stats().foreign_dropped, 5);
        for packet in key_press('4', 8000, 100) {
            caller.send_to(&packet, target).await.unwrap();
        }
        let digits: Vec<MediaEvent> = events_for(&mut session, 300).await;
        assert!(digits.contains(&MediaEvent::Digit('4')));
        // A session refresh with the same SDP address keeps the latch.
        session.update_remote(caller.local_addr().unwrap(), Codec::Pcma, Some(101));
        assert_eq!(session.remote_addr(), Some(caller.local_addr().unwrap()));
    }

    #[tokio::test]
    async fn a_prompt_runs_on_unheard_during_hold() {
        let ports = test_ports();
        let mut session = MediaSession::open(LOCALHOST, &ports).await.unwrap();
        let caller = peer_socket().await;
        session.start(
            caller.local_addr().unwrap(),
            Codec::Pcmu,
            None,
            Instant::now(),
        );
        session.set_direction(false, true);
        session.play(Arc::new(Prompt::from_samples("menu", vec![1000; 1600])));
        let events = events_for(&mut session, 600).await;
        assert_eq!(
            events,
            [MediaEvent::PromptEnded],
            "the menu must not stall on hold"
        );
        assert!(drain(&caller).await.is_empty(), "nothing is sent on hold");
    }

    #[tokio::test]
    async fn each_key_press_is_one_digit_and_the_sender_is_latched() {
        let ports = test_ports();
        let mut session = MediaSession::open(LOCALHOST, &ports).await.unwrap();
        let caller = peer_socket().await;
        // The SDP named an address nobody listens on; the caller's RTP shows the real one.
        let sdp_remote = SocketAddr::new(LOCALHOST, 9);
        session.start(sdp_remote, Codec::Pcmu, Some(101), Instant::now());
        let target = session.local_addr();

        for packet in key_press('5', 8000, 100) {
            caller.send_to(&packet, target).await.unwrap();
        }
        for packet in key_press('5', 9600, 105) {
            caller.send_to(&packet, target).await.unwrap();
        }
        let mut digits: Vec<MediaEvent> = events_for(&mut session, 300).await;
        digits.retain(|event| matches!(event, MediaEvent::Digit(_)));
        assert_eq!(digits, [MediaEvent::Digit('5'), MediaEvent::Digit('5')]);
        assert_eq!(session.remote_addr(), Some(caller.local_addr().unwrap()));
        assert!(
            !drain(&caller).await.is_empty(),
            "silence now flows to the latched address"
        );

        // Another source can neither inject digits nor steal the stream.
        let intruder = peer_socket().await;
        for packet in key_press('9', 20_000, 300) {
            intruder.send_to(&packet, target).await.unwrap();
        }
        assert!(events_for(&mut session, 150).await.is_empty());
        assert_eq!(session.remote_addr(), Some(caller.local_addr().unwrap()));
        let stats = session.stats();
        assert_eq!(stats.foreign_dropped, 5);
        assert_eq!(stats.packets_received, 10);
        assert_eq!(stats.digits, 2);
    }

    #[tokio::test]
    async fn garbage_is_counted_and_dropped() {
        let ports = test_ports();
        let mut session = MediaSession::open(LOCALHOST, &ports).await.unwrap();
        let caller = peer_socket().await;
        session.start(
            caller.local_addr().unwrap(),
            Codec::Pcmu,
            Some(101),
            Instant::now(),
        );
        let target = session.local_addr();
        caller.send_to(b"not rtp", target).await.unwrap();
        caller.send_to(&[0x40; 40], target).await.unwrap();
        caller
            .send_to(&[0x81, 200, 0, 6, 0, 0, 0, 1], target)
            .await
            .unwrap();
        let mut unknown = RtpStream::with_state(7, 0, 0);
        let packet = unknown.frame(96, &[0; 20], 160).unwrap().to_vec();
        caller.send_to(&packet, target).await.unwrap();
        assert!(events_for(&mut session, 150).await.is_empty());
        let stats = session.stats();
        assert_eq!(stats.malformed_dropped, 2);
        assert_eq!(stats.rtcp_received, 1, "RTCP is life, not garbage");
        assert_eq!(stats.foreign_dropped, 1);
        assert_eq!(stats.packets_received, 0);
    }

    #[tokio::test]
    async fn rtcp_on_either_port_and_reported_life_keep_the_timeout_off_and_so_does_recvonly() {
        let ports = test_ports();
        let mut session = MediaSession::open(LOCALHOST, &ports).await.unwrap();
        let caller = peer_socket().await;
        session.set_media_timeout(Duration::from_millis(500));
        session.start(
            caller.local_addr().unwrap(),
            Codec::Pcmu,
            None,
            Instant::now(),
        );
        let rtcp_port = session.rtcp_addr().unwrap();
        assert_eq!(rtcp_port.port(), session.local_addr().port() + 1);
        let report = [0x80, 201, 0, 1, 0, 0, 0, 7];
        // Six rounds of 150 ms: twice the timeout, kept off by RTCP alone.
        for round in 0..6 {
            let target = if round % 2 == 0 {
                rtcp_port
            } else {
                session.local_addr()
            };
            caller.send_to(&report, target).await.unwrap();
            assert!(
                events_for(&mut session, 150).await.is_empty(),
                "round {round}"
            );
        }
        assert_eq!(session.stats().rtcp_received, 6);
        // A SIP request the call task reports counts too; what is not RTCP on the RTCP port does not.
        session.note_life(Instant::now());
        caller.send_to(b"hello there", rtcp_port).await.unwrap();
        assert!(events_for(&mut session, 150).await.is_empty());
        let events = events_until(&mut session, MediaEvent::MediaTimeout).await;
        assert_eq!(events, [MediaEvent::MediaTimeout]);
        assert_eq!(session.stats().malformed_dropped, 1);

        // The peer only listens (recvonly): its silence is expected.
        session.set_direction(true, false);
        assert!(events_for(&mut session, 300).await.is_empty());
    }

    #[tokio::test]
    async fn silence_from_the_peer_times_out_and_hold_suspends_it() {
        let ports = test_ports();
        let mut session = MediaSession::open(LOCALHOST, &ports).await.unwrap();
        let caller = peer_socket().await;
        session.set_media_timeout(Duration::from_millis(150));
        session.start(
            caller.local_addr().unwrap(),
            Codec::Pcmu,
            None,
            Instant::now(),
        );
        let events = events_until(&mut session, MediaEvent::MediaTimeout).await;
        assert_eq!(events, [MediaEvent::MediaTimeout]);

        session.set_direction(false, true);
        drain(&caller).await;
        assert!(
            events_for(&mut session, 300).await.is_empty(),
            "no timeout on hold"
        );
        assert!(drain(&caller).await.is_empty(), "nothing sent on hold");
        session.set_direction(true, true);
        assert!(events_for(&mut session, 60).await.is_empty());
        let resumed = drain(&caller).await;
        assert!(!resumed.is_empty());
        assert!(
            rtp::parse(&resumed[0]).unwrap().marker,
            "resuming starts a talkspurt"
        );
    }

    #[tokio::test]
    async fn inband_digits_when_no_telephone_event_was_agreed() {
        let ports = test_ports();
        let mut session = MediaSession::open(LOCALHOST, &ports).await.unwrap();
        let caller = peer_socket().await;
        session.start(
            caller.local_addr().unwrap(),
            Codec::Pcmu,
            None,
            Instant::now(),
        );
        // '3' = 697 Hz + 1477 Hz for 80 ms, then 60 ms of silence.
        let mut audio = synthesize(&[(697.0, 5000.0), (1477.0, 5000.0)], 640);
        audio.extend([0i16; 480]);
        let mut stream = RtpStream::with_state(5, 0, 0);
        for frame in audio.chunks(FRAME_SAMPLES) {
            let mut bytes = [0u8; FRAME_SAMPLES];
            Codec::Pcmu.encode(frame, &mut bytes);
            let packet = stream.frame(0, &bytes, 160).unwrap().to_vec();
            caller.send_to(&packet, session.local_addr()).await.unwrap();
        }
        let mut digits = events_for(&mut session, 300).await;
        digits.retain(|event| matches!(event, MediaEvent::Digit(_)));
        assert_eq!(digits, [MediaEvent::Digit('3')]);
    }

    #[tokio::test]
    async fn next_event_survives_cancellation_between_packets() {
        let ports = test_ports();
        let mut session = MediaSession::open(LOCALHOST, &ports).await.unwrap();
        let caller = peer_socket().await;
        session.start(
            caller.local_addr().unwrap(),
            Codec::Pcmu,
            Some(101),
            Instant::now(),
        );
        let packets = key_press('#', 4000, 0);
        let mut digits = Vec::new();
        for packet in &packets {
            caller.send_to(packet, session.local_addr()).await.unwrap();
            // Cancel next_event very often, as a select! with a busy signalling side would.
            for _ in 0..5 {
                if let Ok(event) =
                    tokio::time::timeout(Duration::from_millis(3), session.next_event()).await
                {
                    digits.push(event);
                }
            }
        }
        digits.extend(events_for(&mut session, 100).await);
        assert_eq!(digits, [MediaEvent::Digit('#')]);
        assert_eq!(session.stats().packets_received, packets.len() as u64);
    }
}
