//! RtpPeer: one RTP stream over a real UDP socket, as a phone or a function's desk phone would run it.
//! A receiver thread keeps every packet with its arrival time; a sender thread paces 20 ms frames by absolute
//! deadlines and sends audio (a tone or silence) or RFC 4733 telephone-events in place of audio.

use super::audio;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

const TICK: Duration = Duration::from_millis(20);

#[derive(Debug, Clone)]
pub struct RtpPacket {
    pub at: Instant,
    pub from: SocketAddr,
    pub marker: bool,
    pub pt: u8,
    pub seq: u16,
    pub ts: u32,
    pub ssrc: u32,
    pub payload: Vec<u8>,
}

/// Parses an RTP packet (RFC 3550): version 2, CSRCs, header extension and padding honoured.
pub fn parse_rtp(buf: &[u8], from: SocketAddr, at: Instant) -> Option<RtpPacket> {
    if buf.len() < 12 || buf[0] >> 6 != 2 {
        return None;
    }
    let csrc_count = usize::from(buf[0] & 0x0F);
    let mut offset = 12 + 4 * csrc_count;
    if buf[0] & 0x10 != 0 {
        let ext = buf.get(offset..offset + 4)?;
        offset += 4 + 4 * usize::from(u16::from_be_bytes([ext[2], ext[3]]));
    }
    let mut end = buf.len();
    if buf[0] & 0x20 != 0 {
        end = end.checked_sub(usize::from(*buf.last()?))?;
    }
    let payload = buf.get(offset..end)?.to_vec();
    Some(RtpPacket {
        at,
        from,
        marker: buf[1] & 0x80 != 0,
        pt: buf[1] & 0x7F,
        seq: u16::from_be_bytes([buf[2], buf[3]]),
        ts: u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]),
        ssrc: u32::from_be_bytes([buf[8], buf[9], buf[10], buf[11]]),
        payload,
    })
}

pub fn rtp_header(marker: bool, pt: u8, seq: u16, ts: u32, ssrc: u32) -> Vec<u8> {
    let mut h = Vec::with_capacity(12 + 160);
    h.push(0x80);
    h.push(if marker { 0x80 | pt } else { pt });
    h.extend_from_slice(&seq.to_be_bytes());
    h.extend_from_slice(&ts.to_be_bytes());
    h.extend_from_slice(&ssrc.to_be_bytes());
    h
}

/// RFC 4733 event code of a DTMF digit.
pub fn event_code(digit: char) -> Option<u8> {
    match digit {
        '0'..='9' => Some(digit as u8 - b'0'),
        '*' => Some(10),
        '#' => Some(11),
        'A'..='D' => Some(digit as u8 - b'A' + 12),
        _ => None,
    }
}

pub fn event_digit(code: u8) -> Option<char> {
    match code {
        0..=9 => Some((b'0' + code) as char),
        10 => Some('*'),
        11 => Some('#'),
        12..=15 => Some((b'A' + code - 12) as char),
        _ => None,
    }
}

/// The 4-byte telephone-event payload.
pub fn event_payload(code: u8, end: bool, volume: u8, duration: u16) -> [u8; 4] {
    let d = duration.to_be_bytes();
    [
        code,
        if end { 0x80 } else { 0 } | (volume & 0x3F),
        d[0],
        d[1],
    ]
}

/// What the sender thread sends every 20 ms while no event is in progress.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Sound {
    Nothing,
    /// Comfort-level silence in this G.711 payload type.
    Silence(u8),
    Tone {
        freq: u32,
        pt: u8,
    },
}

enum Command {
    Remote(SocketAddr),
    Sound(Sound),
    Digit {
        code: u8,
        pt: u8,
        frames: u16,
        done: Sender<()>,
    },
    Stop,
}

struct SenderState {
    remote: Option<SocketAddr>,
    sound: Sound,
    seq: u16,
    ts: u32,
    ssrc: u32,
    samples: u64,
    first: bool,
}

pub struct RtpPeer {
    socket: Arc<UdpSocket>,
    pub local: SocketAddr,
    received: Arc<Mutex<Vec<RtpPacket>>>,
    /// Datagrams that were not RTP.
    pub junk: Arc<AtomicUsize>,
    commands: Sender<Command>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl RtpPeer {
    pub fn bind(ip: IpAddr) -> std::io::Result<RtpPeer> {
        let socket = Arc::new(UdpSocket::bind(SocketAddr::new(ip, 0))?);
        socket.set_read_timeout(Some(Duration::from_millis(50)))?;
        let local = socket.local_addr()?;
        let received = Arc::new(Mutex::new(Vec::new()));
        let junk = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (commands, rx) = mpsc::channel();
        let receiver = {
            let (socket, received, junk, stop) =
                (socket.clone(), received.clone(), junk.clone(), stop.clone());
            thread::spawn(move || receive_loop(&socket, &received, &junk, &stop))
        };
        let sender = {
            let socket = socket.clone();
            let ssrc = rand::random::<u32>();
            let state = SenderState {
                remote: None,
                sound: Sound::Nothing,
                seq: rand::random(),
                ts: rand::random(),
                ssrc,
                samples: 0,
                first: true,
            };
            thread::spawn(move || send_loop(&socket, rx, state))
        };
        Ok(RtpPeer {
            socket,
            local,
            received,
            junk,
            commands,
            stop,
            threads: vec![receiver, sender],
        })
    }

    pub fn loopback() -> RtpPeer {
        RtpPeer::bind(IpAddr::from([127, 0, 0, 1])).expect("bind an RTP socket on 127.0.0.1")
    }

    /// Where to send: the address from the other side's SDP.
    pub fn set_remote(&self, addr: SocketAddr) {
        let _ = self.commands.send(Command::Remote(addr));
    }

    pub fn play(&self, sound: Sound) {
        let _ = self.commands.send(Command::Sound(sound));
    }

    /// Sends one digit as RFC 4733 events (start with marker, continuations, the end packet three times, all with
    /// the event's start timestamp) in place of audio, and returns once the last end packet is out.
    pub fn send_digit(&self, digit: char, event_pt: u8, duration: Duration) {
        let code = event_code(digit).unwrap_or_else(|| panic!("{digit:?} is not a DTMF digit"));
        let frames = (duration.as_millis() / 20).clamp(2, 1000) as u16;
        let (done, finished) = mpsc::channel();
        let _ = self.commands.send(Command::Digit {
            code,
            pt: event_pt,
            frames,
            done,
        });
        finished
            .recv_timeout(Duration::from_millis(u64::from(frames) * 20 + 5000))
            .expect("the RTP sender thread finished the digit");
    }

    /// Sends raw bytes from this socket (malformed packets for robustness tests).
    pub fn send_raw(&self, to: SocketAddr, bytes: &[u8]) {
        let _ = self.socket.send_to(bytes, to);
    }

    pub fn packets(&self) -> Vec<RtpPacket> {
        self.received.lock().map(|p| p.clone()).unwrap_or_default()
    }

    pub fn packet_count(&self) -> usize {
        self.received.lock().map(|p| p.len()).unwrap_or(0)
    }

    /// The received G.711 frames since `since`, decoded, in arrival order (other payloads left out).
    fn frames_since(&self, since: Instant) -> Vec<Vec<i16>> {
        let received = match self.received.lock() {
            Ok(r) => r,
            Err(_) => return Vec::new(),
        };
        received
            .iter()
            .filter(|p| p.at >= since)
            .filter_map(|p| audio::decode(p.pt, &p.payload))
            .collect()
    }

    /// Tone per received G.711 frame (arrival order) since `since`.
    pub fn tones_since(&self, since: Instant) -> Vec<Option<u32>> {
        self.frames_since(since)
            .iter()
            .map(|samples| audio::dominant(samples, &audio::ALL_TONES))
            .collect()
    }

    /// The decoded G.711 audio received since `since`, in arrival order.
    pub fn samples_since(&self, since: Instant) -> Vec<i16> {
        self.frames_since(since).concat()
    }

    pub fn segments_since(&self, since: Instant) -> Vec<audio::Segment> {
        audio::segments(&self.tones_since(since))
    }

    /// Waits until a run of `tone` at least `min_frames` long has arrived since `since`; panics with what was heard.
    pub fn wait_tone(&self, tone: u32, min_frames: usize, since: Instant, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let segments = self.segments_since(since);
            if audio::longest(&segments, tone) >= min_frames {
                return;
            }
            if Instant::now() >= deadline {
                panic!(
                    "waited {timeout:?} for {tone} Hz × {min_frames} frames; heard: {} ({} packets in all)",
                    audio::describe(&segments),
                    self.packet_count()
                );
            }
            thread::sleep(Duration::from_millis(40));
        }
    }

    /// Digits received as RFC 4733 events on `pt` (one per event timestamp that ended).
    pub fn received_digits(&self, pt: u8) -> String {
        let mut seen: Vec<u32> = Vec::new();
        let mut digits = String::new();
        for p in self
            .packets()
            .iter()
            .filter(|p| p.pt == pt && p.payload.len() >= 4)
        {
            if p.payload[1] & 0x80 != 0 && !seen.contains(&p.ts) {
                seen.push(p.ts);
                if let Some(d) = event_digit(p.payload[0]) {
                    digits.push(d);
                }
            }
        }
        digits
    }

    /// Where the other side's RTP comes from (its media port, for sending it garbage).
    pub fn last_source(&self) -> Option<SocketAddr> {
        self.received.lock().ok()?.last().map(|p| p.from)
    }
}

impl Drop for RtpPeer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.commands.send(Command::Stop);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn receive_loop(
    socket: &UdpSocket,
    received: &Mutex<Vec<RtpPacket>>,
    junk: &AtomicUsize,
    stop: &AtomicBool,
) {
    let mut buf = vec![0u8; 2048];
    while !stop.load(Ordering::SeqCst) {
        match socket.recv_from(&mut buf) {
            Ok((n, from)) => match parse_rtp(&buf[..n], from, Instant::now()) {
                Some(p) => {
                    if let Ok(mut r) = received.lock() {
                        r.push(p);
                    }
                }
                None => {
                    junk.fetch_add(1, Ordering::SeqCst);
                }
            },
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            // ICMP port unreachable shows up as ConnectionRefused on some systems: not fatal for a peer.
            Err(_) => thread::sleep(Duration::from_millis(5)),
        }
    }
}

fn send_loop(socket: &UdpSocket, commands: Receiver<Command>, mut state: SenderState) {
    let mut next = Instant::now();
    let mut digit: Option<(u8, u8, u16, u16, u32, Sender<()>)> = None; // code, pt, frames, sent, start ts, done
    loop {
        let wait = next.saturating_duration_since(Instant::now());
        match commands.recv_timeout(wait) {
            Ok(Command::Remote(addr)) => state.remote = Some(addr),
            Ok(Command::Sound(sound)) => state.sound = sound,
            Ok(Command::Digit {
                code,
                pt,
                frames,
                done,
            }) => digit = Some((code, pt, frames, 0, state.ts, done)),
            Ok(Command::Stop) | Err(RecvTimeoutError::Disconnected) => return,
            Err(RecvTimeoutError::Timeout) => {
                tick(socket, &mut state, &mut digit);
                next += TICK;
                // A starved machine should not make us burst a backlog of frames.
                if Instant::now() > next + TICK * 5 {
                    next = Instant::now() + TICK;
                }
            }
        }
    }
}

type DigitProgress = Option<(u8, u8, u16, u16, u32, Sender<()>)>;

fn tick(socket: &UdpSocket, state: &mut SenderState, digit: &mut DigitProgress) {
    let Some(remote) = state.remote else {
        return;
    };
    if let Some((code, pt, frames, sent, start_ts, _)) = digit.as_mut() {
        // Packets 0..frames-1 grow the duration; the last three repeat the end.
        let index = *sent;
        let end = index + 1 >= *frames;
        let duration = (index.min(*frames - 1) + 1) * 160;
        let marker = index == 0;
        let mut packet = rtp_header(marker, *pt, state.seq, *start_ts, state.ssrc);
        packet.extend_from_slice(&event_payload(*code, end, 10, duration));
        let _ = socket.send_to(&packet, remote);
        state.seq = state.seq.wrapping_add(1);
        state.ts = state.ts.wrapping_add(160);
        *sent += 1;
        if *sent >= *frames + 2 {
            if let Some((.., done)) = digit.take() {
                let _ = done.send(());
            }
        }
        return;
    }
    let (pt, samples) = match state.sound {
        Sound::Nothing => {
            state.ts = state.ts.wrapping_add(160);
            return;
        }
        Sound::Silence(pt) => (pt, vec![0i16; audio::FRAME]),
        Sound::Tone { freq, pt } => (
            pt,
            audio::sine(
                f64::from(freq),
                12000.0,
                state.samples,
                audio::FRAME,
                audio::RATE,
            ),
        ),
    };
    state.samples += audio::FRAME as u64;
    let mut packet = rtp_header(state.first, pt, state.seq, state.ts, state.ssrc);
    state.first = false;
    packet.extend_from_slice(&audio::encode(pt, &samples));
    let _ = socket.send_to(&packet, remote);
    state.seq = state.seq.wrapping_add(1);
    state.ts = state.ts.wrapping_add(160);
}
