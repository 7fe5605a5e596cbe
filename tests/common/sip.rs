//! SipPeer: a SIP user agent for the tests over a real UDP socket or TCP connection, formatting SIP as text.
//!
//! It does what a phone must do so that the daemon sees a correct peer: Via with a fresh `z9hG4bK` branch and
//! `rport`, UDP retransmission (Timer A/E, bounded), ACK for 2xx (re-sent when the 2xx is retransmitted) and for
//! non-2xx finals, and server transactions that answer a retransmitted request with the response already sent.
//! What to answer, and when, is the test's business: incoming requests wait in an inbox until a test takes them,
//! except the methods a test asked to be auto-answered (e.g. BYE while the test is busy stopping the daemon).

use super::sdp::{self, SdpInfo};
use super::sipmsg::{self, SipMessage};
use std::collections::{HashMap, HashSet, VecDeque};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

pub const T1: Duration = Duration::from_millis(500);
pub const T2: Duration = Duration::from_secs(4);
/// A TCP peer refuses to buffer more than this of one message (the daemon never sends anything near it).
const MAX_TCP_BUFFER: usize = 1 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
}

impl Transport {
    pub fn via_name(self) -> &'static str {
        match self {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
        }
    }
}

/// Where a message came from, so the answer goes back the same way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Udp(SocketAddr),
    /// Index into the peer's TCP connections.
    Tcp(usize),
}

#[derive(Debug, Clone)]
pub struct Received {
    pub msg: SipMessage,
    pub origin: Origin,
    pub at: Instant,
    /// Arrival order at this peer (0, 1, 2, ...): which of two messages came first, even within one clock tick.
    pub seq: u64,
}

#[derive(Default)]
struct State {
    inbox: VecDeque<Received>,
    /// Server transactions: (branch, CSeq method) -> last response sent (None while the test has not answered).
    server: HashMap<(String, String), Option<Vec<u8>>>,
    /// ACKs already sent for a 2xx: (Call-ID, CSeq number) -> the ACK, re-sent if the 2xx comes again.
    acks: HashMap<(String, u32), Vec<u8>>,
    auto_answer: HashSet<String>,
    tcp: Vec<TcpStream>,
    /// Unparseable input, kept for failure messages.
    garbage: Vec<String>,
    /// Messages delivered so far; the next one's `seq`.
    arrivals: u64,
}

struct Shared {
    state: Mutex<State>,
    arrived: Condvar,
    stop: AtomicBool,
    udp: Option<UdpSocket>,
    transport: Transport,
    /// The address we put in Via and Contact.
    local: SocketAddr,
    /// Where our requests go (the daemon's SIP address, or the peer that called us).
    remote: Mutex<Option<SocketAddr>>,
}

/// A SIP user agent. Cheap to clone; threads stop when the last clone is dropped.
#[derive(Clone)]
pub struct SipPeer {
    shared: Arc<Shared>,
    _guard: Arc<StopGuard>,
}

struct StopGuard(Arc<Shared>);

impl Drop for StopGuard {
    fn drop(&mut self) {
        self.0.stop.store(true, Ordering::SeqCst);
        if let Ok(state) = self.0.state.lock() {
            for stream in &state.tcp {
                let _ = stream.shutdown(std::net::Shutdown::Both);
            }
        }
    }
}

pub fn random_token() -> String {
    format!("{:016x}", rand::random::<u64>())
}

pub fn new_branch() -> String {
    format!("z9hG4bK{}", random_token())
}

/// `host:port` as SIP writes it (IPv6 in brackets).
pub fn hostport(addr: SocketAddr) -> String {
    addr.to_string()
}

impl SipPeer {
    /// A UDP peer on `bind` (port 0 for an ephemeral port) that sends its requests to `remote`, if known.
    pub fn udp(bind: SocketAddr, remote: Option<SocketAddr>) -> std::io::Result<SipPeer> {
        let socket = UdpSocket::bind(bind)?;
        socket.set_read_timeout(Some(Duration::from_millis(50)))?;
        let local = socket.local_addr()?;
        let reader = socket.try_clone()?;
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            arrived: Condvar::new(),
            stop: AtomicBool::new(false),
            udp: Some(socket),
            transport: Transport::Udp,
            local,
            remote: Mutex::new(remote),
        });
        let s = shared.clone();
        thread::spawn(move || udp_loop(&s, &reader));
        Ok(SipPeer {
            _guard: Arc::new(StopGuard(shared.clone())),
            shared,
        })
    }

    /// A TCP peer: connects to `remote` (connection 0, where our requests go) and also listens on an ephemeral
    /// port of the same address (Via/Contact), in case the daemon opens its own connection for in-dialog requests.
    pub fn tcp(remote: SocketAddr) -> std::io::Result<SipPeer> {
        let listener = TcpListener::bind(SocketAddr::new(remote.ip(), 0))?;
        listener.set_nonblocking(true)?;
        let local = listener.local_addr()?;
        let stream = TcpStream::connect_timeout(&remote, Duration::from_secs(5))?;
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            arrived: Condvar::new(),
            stop: AtomicBool::new(false),
            udp: None,
            transport: Transport::Tcp,
            local,
            remote: Mutex::new(Some(remote)),
        });
        let peer = SipPeer {
            _guard: Arc::new(StopGuard(shared.clone())),
            shared,
        };
        peer.adopt_tcp(stream)?;
        let p = Arc::downgrade(&peer.shared);
        let guard = Arc::downgrade(&peer._guard);
        thread::spawn(move || {
            loop {
                let (Some(shared), Some(_alive)) = (p.upgrade(), guard.upgrade()) else {
                    return;
                };
                if shared.stop.load(Ordering::SeqCst) {
                    return;
                }
                match listener.accept() {
                    Ok((stream, _)) => {
                        let peer = SipPeer {
                            shared,
                            _guard: _alive,
                        };
                        let _ = peer.adopt_tcp(stream);
                    }
                    Err(_) => {
                        drop(shared);
                        thread::sleep(Duration::from_millis(20));
                    }
                }
            }
        });
        Ok(peer)
    }

    fn adopt_tcp(&self, stream: TcpStream) -> std::io::Result<usize> {
        stream.set_read_timeout(Some(Duration::from_millis(50)))?;
        stream.set_nodelay(true)?;
        let reader = stream.try_clone()?;
        let index = {
            let mut state = self.shared.state.lock().expect("peer state");
            state.tcp.push(stream);
            state.tcp.len() - 1
        };
        let s = self.shared.clone();
        thread::spawn(move || tcp_loop(&s, reader, index));
        Ok(index)
    }

    pub fn transport(&self) -> Transport {
        self.shared.transport
    }

    pub fn local(&self) -> SocketAddr {
        self.shared.local
    }

    pub fn remote(&self) -> Option<SocketAddr> {
        *self.shared.remote.lock().expect("peer remote")
    }

    pub fn set_remote(&self, addr: SocketAddr) {
        *self.shared.remote.lock().expect("peer remote") = Some(addr);
    }

    /// `SIP/2.0/UDP 127.0.0.1:5555;branch=...;rport`
    pub fn via(&self, branch: &str) -> String {
        format!(
            "SIP/2.0/{} {};branch={branch};rport",
            self.shared.transport.via_name(),
            hostport(self.shared.local)
        )
    }

    pub fn contact(&self, user: &str) -> String {
        match self.shared.transport {
            Transport::Udp => format!("<sip:{user}@{}>", hostport(self.shared.local)),
            Transport::Tcp => format!("<sip:{user}@{};transport=tcp>", hostport(self.shared.local)),
        }
    }

    /// Answers requests of this method with 200 OK as they arrive (they are still put in the inbox).
    /// Stops answering `method` by itself: from now on those requests wait in the inbox like any other.
    pub fn stop_auto_answer(&self, method: &str) {
        self.shared
            .state
            .lock()
            .expect("peer state")
            .auto_answer
            .remove(&method.to_ascii_uppercase());
    }

    pub fn auto_answer(&self, method: &str) {
        self.shared
            .state
            .lock()
            .expect("peer state")
            .auto_answer
            .insert(method.to_ascii_uppercase());
    }

    pub fn garbage(&self) -> Vec<String> {
        self.shared
            .state
            .lock()
            .map(|s| s.garbage.clone())
            .unwrap_or_default()
    }

    /// Sends raw bytes to the remote (UDP) or on connection 0 (TCP).
    pub fn send_raw(&self, bytes: &[u8]) {
        match self.shared.transport {
            Transport::Udp => {
                let remote = self.remote().expect("the peer knows where to send");
                self.send_to(Origin::Udp(remote), bytes);
            }
            Transport::Tcp => self.send_to(Origin::Tcp(0), bytes),
        }
    }

    pub fn send_to(&self, origin: Origin, bytes: &[u8]) {
        send(&self.shared, origin, bytes);
    }

    /// Takes the first message in the inbox that `matches`, waiting up to `timeout`.
    pub fn take(
        &self,
        timeout: Duration,
        matches: impl Fn(&SipMessage) -> bool,
    ) -> Option<Received> {
        let deadline = Instant::now() + timeout;
        let mut state = self.shared.state.lock().expect("peer state");
        loop {
            if let Some(i) = state.inbox.iter().position(|r| matches(&r.msg)) {
                return state.inbox.remove(i);
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            state = self
                .shared
                .arrived
                .wait_timeout(state, deadline - now)
                .expect("peer state")
                .0;
        }
    }

    /// Waits for a request of `method` (optionally in the dialog `call_id`); panics with the inbox on timeout.
    pub fn expect_request(
        &self,
        method: &str,
        call_id: Option<&str>,
        timeout: Duration,
    ) -> Received {
        self.take(timeout, |m| {
            m.is_request(method) && call_id.is_none_or(|c| m.call_id() == Some(c))
        })
        .unwrap_or_else(|| {
            panic!(
                "no {method} within {timeout:?}; inbox: {}",
                self.inbox_summary()
            )
        })
    }

    pub fn inbox_summary(&self) -> String {
        let state = self.shared.state.lock().expect("peer state");
        let items: Vec<String> = state.inbox.iter().map(|r| r.msg.summary()).collect();
        format!("[{}] garbage: {:?}", items.join(", "), state.garbage)
    }

    /// Answers a received request. `to_tag` is added to To when the request had none (the UAS's dialog tag).
    pub fn respond(
        &self,
        request: &Received,
        status: u16,
        reason: &str,
        to_tag: Option<&str>,
        extra: &[String],
        body: Option<(&str, &str)>,
    ) {
        let msg = &request.msg;
        let mut out = format!("SIP/2.0 {status} {reason}\r\n");
        for via in msg.header_all("via") {
            out.push_str(&format!("Via: {via}\r\n"));
        }
        out.push_str(&format!(
            "From: {}\r\n",
            msg.header("from").unwrap_or_default()
        ));
        let to = msg.header("to").unwrap_or_default();
        match (msg.tag_in_to(), to_tag) {
            (None, Some(tag)) if status > 100 => out.push_str(&format!("To: {to};tag={tag}\r\n")),
            _ => out.push_str(&format!("To: {to}\r\n")),
        }
        out.push_str(&format!(
            "Call-ID: {}\r\n",
            msg.call_id().unwrap_or_default()
        ));
        out.push_str(&format!(
            "CSeq: {}\r\n",
            msg.header("cseq").unwrap_or_default()
        ));
        for line in extra {
            out.push_str(line);
            out.push_str("\r\n");
        }
        finish(&mut out, body);
        let bytes = out.into_bytes();
        if let (Some(branch), Some((_, method))) = (msg.via_branch(), msg.cseq()) {
            self.shared
                .state
                .lock()
                .expect("peer state")
                .server
                .insert((branch, method), Some(bytes.clone()));
        }
        self.send_to(request.origin, &bytes);
    }

    /// Sends a request and waits for its final response, retransmitting over UDP (Timer A for INVITE until a
    /// provisional, Timer E otherwise). Provisionals are returned in `provisional`.
    pub fn transact(
        &self,
        request: &str,
        timeout: Duration,
        provisional: &mut Vec<SipMessage>,
    ) -> Option<SipMessage> {
        self.transact_received(request, timeout, provisional)
            .map(|r| r.msg)
    }

    /// [`transact`](Self::transact), returning the final response with its arrival order.
    pub fn transact_received(
        &self,
        request: &str,
        timeout: Duration,
        provisional: &mut Vec<SipMessage>,
    ) -> Option<Received> {
        let parsed =
            SipMessage::parse_datagram(request.as_bytes()).expect("test requests are well-formed");
        let branch = parsed.via_branch().expect("test requests carry a branch");
        let (_, method) = parsed.cseq().expect("test requests carry CSeq");
        let is_invite = method == "INVITE";
        self.send_raw(request.as_bytes());
        let deadline = Instant::now() + timeout;
        let mut interval = T1;
        let mut next_retransmit = Instant::now() + interval;
        let mut retransmitting = self.shared.transport == Transport::Udp;
        loop {
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            let wait = if retransmitting {
                next_retransmit.min(deadline) - now
            } else {
                deadline - now
            };
            let response = self.take(wait, |m| {
                m.status().is_some()
                    && m.via_branch().as_deref() == Some(branch.as_str())
                    && m.cseq().is_some_and(|(_, mm)| mm == method)
            });
            match response {
                Some(r) if r.msg.status().is_some_and(|s| s >= 200) => return Some(r),
                Some(r) => {
                    if is_invite {
                        retransmitting = false;
                    }
                    provisional.push(r.msg);
                }
                None if retransmitting && Instant::now() >= next_retransmit => {
                    self.send_raw(request.as_bytes());
                    interval = if is_invite {
                        interval * 2
                    } else {
                        (interval * 2).min(T2)
                    };
                    next_retransmit = Instant::now() + interval;
                }
                None => {}
            }
        }
    }

    /// Sends an INVITE for a new call to `request_uri`, from `from_uri` (e.g. `sip:0701234567@host` or
    /// `tel:+46701234567`), with an SDP `offer` (or none), plus `extra` header lines.
    pub fn invite(
        &self,
        request_uri: &str,
        from_uri: &str,
        offer: Option<&str>,
        extra: &[String],
    ) -> Call {
        let call_id = format!("{}@knappval-test", random_token());
        let local_tag = random_token();
        let call = Call {
            peer: self.clone(),
            call_id,
            local_uri: from_uri.to_string(),
            local_tag,
            remote_uri: request_uri.to_string(),
            remote_tag: None,
            remote_target: request_uri.to_string(),
            cseq: 1,
            invite_branch: new_branch(),
            invite_text: String::new(),
            origin: None,
            user: sipmsg::user_of(from_uri).unwrap_or_else(|| "caller".into()),
            provisional: Vec::new(),
        };
        let mut call = call;
        let mut req = format!(
            "INVITE {request_uri} SIP/2.0\r\nVia: {}\r\nMax-Forwards: 70\r\nFrom: <{from_uri}>;tag={}\r\nTo: <{request_uri}>\r\n\
Call-ID: {}\r\nCSeq: 1 INVITE\r\nContact: {}\r\nAllow: INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, REFER, NOTIFY\r\n\
Supported: replaces\r\nUser-Agent: knappval-test\r\n",
            self.via(&call.invite_branch),
            call.local_tag,
            call.call_id,
            self.contact(&call.user)
        );
        for line in extra {
            req.push_str(line);
            req.push_str("\r\n");
        }
        finish(&mut req, offer.map(|o| ("application/sdp", o)));
        call.invite_text = req;
        call
    }

    /// Accepts an incoming INVITE as a UAS dialog (the test then rings, answers or rejects it).
    pub fn incoming(&self, invite: Received) -> IncomingCall {
        let msg = &invite.msg;
        let call = Call {
            peer: self.clone(),
            call_id: msg.call_id().unwrap_or_default().to_string(),
            local_uri: sipmsg::uri_of(msg.header("to").unwrap_or_default()),
            local_tag: random_token(),
            remote_uri: sipmsg::uri_of(msg.header("from").unwrap_or_default()),
            remote_tag: msg.tag_in_from(),
            remote_target: msg.contact_uri().unwrap_or_default(),
            cseq: 1000,
            invite_branch: msg.via_branch().unwrap_or_default(),
            invite_text: String::new(),
            origin: Some(invite.origin),
            user: "function".into(),
            provisional: Vec::new(),
        };
        IncomingCall { call, invite }
    }
}

fn finish(out: &mut String, body: Option<(&str, &str)>) {
    match body {
        Some((content_type, body)) => {
            out.push_str(&format!(
                "Content-Type: {content_type}\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            ));
        }
        None => out.push_str("Content-Length: 0\r\n\r\n"),
    }
}

fn send(shared: &Shared, origin: Origin, bytes: &[u8]) {
    match origin {
        Origin::Udp(addr) => {
            if let Some(socket) = &shared.udp {
                let _ = socket.send_to(bytes, addr);
            }
        }
        Origin::Tcp(index) => {
            let stream = shared
                .state
                .lock()
                .ok()
                .and_then(|s| s.tcp.get(index).and_then(|t| t.try_clone().ok()));
            if let Some(mut stream) = stream {
                let _ = stream.write_all(bytes);
            }
        }
    }
}

/// Files one parsed message: answers retransmissions and auto-answered methods, re-ACKs retransmitted 2xx,
/// and queues the rest for the test.
fn deliver(shared: &Shared, msg: SipMessage, origin: Origin) {
    let mut state = match shared.state.lock() {
        Ok(s) => s,
        Err(_) => return,
    };
    if let Some(status) = msg.status() {
        if (200..300).contains(&status)
            && let (Some(call_id), Some((number, method))) = (msg.call_id(), msg.cseq())
            && method == "INVITE"
            && let Some(ack) = state.acks.get(&(call_id.to_string(), number)).cloned()
        {
            drop(state);
            send(shared, origin, &ack);
            return;
        }
    } else if let (Some(branch), Some((_, cseq_method))) = (msg.via_branch(), msg.cseq())
        && cseq_method != "ACK"
    {
        let key = (branch, cseq_method.clone());
        if let Some(previous) = state.server.get(&key) {
            let previous = previous.clone();
            drop(state);
            if let Some(response) = previous {
                send(shared, origin, &response);
            }
            return;
        }
        state.server.insert(key, None);
        if state.auto_answer.contains(&cseq_method) {
            let seq = state.arrivals;
            drop(state);
            auto_respond(
                shared,
                &Received {
                    msg: msg.clone(),
                    origin,
                    at: Instant::now(),
                    seq,
                },
            );
            state = match shared.state.lock() {
                Ok(s) => s,
                Err(_) => return,
            };
        }
    }
    let seq = state.arrivals;
    state.arrivals += 1;
    state.inbox.push_back(Received {
        msg,
        origin,
        at: Instant::now(),
        seq,
    });
    shared.arrived.notify_all();
}

/// The reader threads' automatic 200 OK (for methods a test asked to be auto-answered).
fn auto_respond(shared: &Shared, request: &Received) {
    let msg = &request.msg;
    let mut out = String::from("SIP/2.0 200 OK\r\n");
    for via in msg.header_all("via") {
        out.push_str(&format!("Via: {via}\r\n"));
    }
    out.push_str(&format!(
        "From: {}\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: {}\r\nContent-Length: 0\r\n\r\n",
        msg.header("from").unwrap_or_default(),
        msg.header("to").unwrap_or_default(),
        msg.call_id().unwrap_or_default(),
        msg.header("cseq").unwrap_or_default()
    ));
    if let (Some(branch), Some((_, method))) = (msg.via_branch(), msg.cseq())
        && let Ok(mut state) = shared.state.lock()
    {
        state
            .server
            .insert((branch, method), Some(out.clone().into_bytes()));
    }
    send(shared, request.origin, out.as_bytes());
}

fn note_garbage(shared: &Shared, what: String) {
    if let Ok(mut state) = shared.state.lock() {
        state.garbage.push(what);
    }
}

fn udp_loop(shared: &Arc<Shared>, socket: &UdpSocket) {
    let mut buf = vec![0u8; 65536];
    while !shared.stop.load(Ordering::SeqCst) {
        match socket.recv_from(&mut buf) {
            Ok((n, from)) => {
                let datagram = &buf[..n];
                if datagram.iter().all(|b| b.is_ascii_whitespace()) {
                    continue; // keep-alive
                }
                match SipMessage::parse_datagram(datagram) {
                    Ok(msg) => deliver(shared, msg, Origin::Udp(from)),
                    Err(e) => note_garbage(
                        shared,
                        format!("{e}: {:?}", String::from_utf8_lossy(datagram)),
                    ),
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => thread::sleep(Duration::from_millis(5)),
        }
    }
}

fn tcp_loop(shared: &Arc<Shared>, mut stream: TcpStream, index: usize) {
    let mut buf: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; 16384];
    while !shared.stop.load(Ordering::SeqCst) {
        match stream.read(&mut chunk) {
            Ok(0) => return,
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                loop {
                    match sipmsg::parse(&buf) {
                        Ok((msg, used)) => {
                            buf.drain(..used);
                            deliver(shared, msg, Origin::Tcp(index));
                        }
                        Err(sipmsg::ParseError::Incomplete) => {
                            let only_crlf = buf.iter().all(|b| *b == b'\r' || *b == b'\n');
                            if only_crlf {
                                buf.clear();
                            }
                            if buf.len() > MAX_TCP_BUFFER {
                                note_garbage(shared, "TCP message over 1 MiB".into());
                                return;
                            }
                            break;
                        }
                        Err(e) => {
                            note_garbage(shared, format!("{e} on TCP; closing"));
                            return;
                        }
                    }
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return,
        }
    }
}

/// One dialog, caller (UAC) or called (UAS) side.
pub struct Call {
    peer: SipPeer,
    pub call_id: String,
    pub local_uri: String,
    pub local_tag: String,
    pub remote_uri: String,
    pub remote_tag: Option<String>,
    pub remote_target: String,
    cseq: u32,
    invite_branch: String,
    invite_text: String,
    /// For a UAS: where the INVITE came from (our requests go back there).
    origin: Option<Origin>,
    user: String,
    pub provisional: Vec<SipMessage>,
}

impl Call {
    pub fn peer(&self) -> &SipPeer {
        &self.peer
    }

    /// Rewrites the INVITE before it is sent, to exercise unusual but valid forms (compact names, folding).
    /// The body is left alone, so the rewrite must keep Content-Length true.
    pub fn rewrite_invite(&mut self, rewrite: impl FnOnce(&str) -> String) {
        self.invite_text = rewrite(&self.invite_text);
    }

    /// Sends the INVITE (see [`SipPeer::invite`]).
    pub fn send_invite(&self) {
        self.peer.send_raw(self.invite_text.as_bytes());
    }

    /// Sends the INVITE and waits for its final response, ACKing it as RFC 3261 asks; on 2xx the dialog is set up.
    pub fn start(&mut self, timeout: Duration) -> SipMessage {
        let text = self.invite_text.clone();
        let mut provisional = Vec::new();
        let response = self
            .peer
            .transact(&text, timeout, &mut provisional)
            .unwrap_or_else(|| {
                panic!(
                    "no final response to INVITE within {timeout:?}; inbox: {}",
                    self.peer.inbox_summary()
                )
            });
        self.provisional = provisional;
        self.ack_final(&response);
        response
    }

    /// [`Call::start`] for an INVITE without SDP (a late offer): the 2xx carries the daemon's offer, and the ACK
    /// carries `answer(offer)`, our answer to it.
    pub fn start_answering_in_ack(
        &mut self,
        timeout: Duration,
        answer: impl FnOnce(&str) -> String,
    ) -> SipMessage {
        let text = self.invite_text.clone();
        let mut provisional = Vec::new();
        let response = self
            .peer
            .transact(&text, timeout, &mut provisional)
            .unwrap_or_else(|| panic!("no final response to INVITE within {timeout:?}"));
        self.provisional = provisional;
        let body = response
            .status()
            .is_some_and(|s| (200..300).contains(&s))
            .then(|| answer(&response.body_str()));
        self.ack_final_with(&response, body.as_deref());
        response
    }

    /// Waits for the final response to an INVITE already sent with [`Call::send_invite`] (no retransmission:
    /// for races such as INVITE+CANCEL), ACKing it.
    pub fn await_final(&mut self, timeout: Duration) -> SipMessage {
        let branch = self.invite_branch.clone();
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let r = self
                .peer
                .take(left, |m| {
                    m.status().is_some()
                        && m.via_branch().as_deref() == Some(branch.as_str())
                        && m.cseq().is_some_and(|(_, mm)| mm == "INVITE")
                })
                .unwrap_or_else(|| {
                    panic!(
                        "no final response to INVITE within {timeout:?}; inbox: {}",
                        self.peer.inbox_summary()
                    )
                });
            if r.msg.status().is_some_and(|s| s >= 200) {
                self.ack_final(&r.msg);
                return r.msg;
            }
            self.provisional.push(r.msg);
        }
    }

    fn ack_final(&mut self, response: &SipMessage) {
        self.ack_final_with(response, None);
    }

    /// ACKs the final response; a 2xx's ACK carries `sdp` when given (the answer to a late offer).
    fn ack_final_with(&mut self, response: &SipMessage, sdp: Option<&str>) {
        let status = response.status().unwrap_or(0);
        let to = response.header("to").unwrap_or_default().to_string();
        if (200..300).contains(&status) {
            self.remote_tag = response.tag_in_to();
            if let Some(target) = response.contact_uri() {
                self.remote_target = target;
            }
            let body = match sdp {
                Some(sdp) => format!(
                    "Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
                    sdp.len()
                ),
                None => "Content-Length: 0\r\n\r\n".to_owned(),
            };
            let ack = format!(
                "ACK {} SIP/2.0\r\nVia: {}\r\nMax-Forwards: 70\r\nFrom: <{}>;tag={}\r\nTo: {to}\r\nCall-ID: {}\r\nCSeq: 1 ACK\r\n{body}",
                self.remote_target,
                self.peer.via(&new_branch()),
                self.local_uri,
                self.local_tag,
                self.call_id
            );
            self.peer
                .shared
                .state
                .lock()
                .expect("peer state")
                .acks
                .insert((self.call_id.clone(), 1), ack.clone().into_bytes());
            self.peer.send_raw(ack.as_bytes());
        } else if status >= 300 {
            // The ACK of a non-2xx belongs to the INVITE transaction: same branch and Request-URI.
            let ack = format!(
                "ACK {} SIP/2.0\r\nVia: {}\r\nMax-Forwards: 70\r\nFrom: <{}>;tag={}\r\nTo: {to}\r\nCall-ID: {}\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n",
                self.remote_uri,
                self.peer.via(&self.invite_branch),
                self.local_uri,
                self.local_tag,
                self.call_id
            );
            self.peer.send_raw(ack.as_bytes());
        }
    }

    /// CANCEL for our pending INVITE (same branch, Request-URI, Call-ID, From, To, CSeq number).
    pub fn cancel_text(&self) -> String {
        format!(
            "CANCEL {} SIP/2.0\r\nVia: {}\r\nMax-Forwards: 70\r\nFrom: <{}>;tag={}\r\nTo: <{}>\r\nCall-ID: {}\r\nCSeq: 1 CANCEL\r\nContent-Length: 0\r\n\r\n",
            self.remote_uri,
            self.peer.via(&self.invite_branch),
            self.local_uri,
            self.local_tag,
            self.remote_uri,
            self.call_id
        )
    }

    fn dialog_request(
        &mut self,
        method: &str,
        extra: &[String],
        body: Option<(&str, &str)>,
    ) -> String {
        self.cseq += 1;
        let to = match &self.remote_tag {
            Some(tag) => format!("<{}>;tag={tag}", self.remote_uri),
            None => format!("<{}>", self.remote_uri),
        };
        let mut req = format!(
            "{method} {} SIP/2.0\r\nVia: {}\r\nMax-Forwards: 70\r\nFrom: <{}>;tag={}\r\nTo: {to}\r\nCall-ID: {}\r\nCSeq: {} {method}\r\nContact: {}\r\n",
            self.remote_target,
            self.peer.via(&new_branch()),
            self.local_uri,
            self.local_tag,
            self.call_id,
            self.cseq,
            self.peer.contact(&self.user)
        );
        for line in extra {
            req.push_str(line);
            req.push_str("\r\n");
        }
        finish(&mut req, body);
        req
    }

    /// Sends an in-dialog request and waits for its final response.
    pub fn request(
        &mut self,
        method: &str,
        extra: &[String],
        body: Option<(&str, &str)>,
        timeout: Duration,
    ) -> SipMessage {
        self.request_received(method, extra, body, timeout).msg
    }

    /// [`request`](Self::request), returning the final response with its arrival order.
    pub fn request_received(
        &mut self,
        method: &str,
        extra: &[String],
        body: Option<(&str, &str)>,
        timeout: Duration,
    ) -> Received {
        let text = self.dialog_request(method, extra, body);
        let mut provisional = Vec::new();
        if let Some(Origin::Udp(addr)) = self.origin {
            self.peer.set_remote(addr);
        }
        self.peer
            .transact_received(&text, timeout, &mut provisional)
            .unwrap_or_else(|| {
                panic!(
                    "no final response to {method} within {timeout:?}; inbox: {}",
                    self.peer.inbox_summary()
                )
            })
    }

    pub fn bye(&mut self) -> SipMessage {
        self.request("BYE", &[], None, Duration::from_secs(10))
    }

    /// A digit by SIP INFO, `application/dtmf-relay` (Signal/Duration) as most phones send it.
    pub fn info_dtmf_relay(&mut self, digit: char) -> SipMessage {
        let body = format!("Signal={digit}\r\nDuration=160\r\n");
        self.request(
            "INFO",
            &[],
            Some(("application/dtmf-relay", &body)),
            Duration::from_secs(10),
        )
    }

    /// A digit by SIP INFO, `application/dtmf` (the bare digit).
    pub fn info_dtmf(&mut self, digit: char) -> SipMessage {
        self.request(
            "INFO",
            &[],
            Some(("application/dtmf", &digit.to_string())),
            Duration::from_secs(10),
        )
    }

    /// A re-INVITE with a new offer; ACKs the 2xx.
    pub fn reinvite(&mut self, offer: &str) -> SipMessage {
        let text = self.dialog_request("INVITE", &[], Some(("application/sdp", offer)));
        let number = self.cseq;
        let mut provisional = Vec::new();
        let response = self
            .peer
            .transact(&text, Duration::from_secs(10), &mut provisional)
            .unwrap_or_else(|| {
                panic!(
                    "no final response to re-INVITE; inbox: {}",
                    self.peer.inbox_summary()
                )
            });
        let ack = format!(
            "ACK {} SIP/2.0\r\nVia: {}\r\nMax-Forwards: 70\r\nFrom: <{}>;tag={}\r\nTo: <{}>;tag={}\r\nCall-ID: {}\r\nCSeq: {number} ACK\r\nContent-Length: 0\r\n\r\n",
            self.remote_target,
            self.peer.via(&new_branch()),
            self.local_uri,
            self.local_tag,
            self.remote_uri,
            self.remote_tag.clone().unwrap_or_default(),
            self.call_id
        );
        if response.status().is_some_and(|s| (200..300).contains(&s)) {
            self.peer
                .shared
                .state
                .lock()
                .expect("peer state")
                .acks
                .insert((self.call_id.clone(), number), ack.clone().into_bytes());
            self.peer.send_raw(ack.as_bytes());
        }
        response
    }

    /// Waits for a request of `method` in this dialog.
    pub fn expect_request(&self, method: &str, timeout: Duration) -> Received {
        self.peer
            .expect_request(method, Some(&self.call_id), timeout)
    }

    /// Answers a request in this dialog.
    pub fn respond(&self, request: &Received, status: u16, reason: &str) {
        self.peer
            .respond(request, status, reason, Some(&self.local_tag), &[], None);
    }

    /// Waits for the daemon's BYE and answers 200.
    pub fn expect_bye(&self, timeout: Duration) -> Received {
        let bye = self.expect_request("BYE", timeout);
        self.respond(&bye, 200, "OK");
        bye
    }
}

/// A call arriving at a test UAS (the function endpoint), before and after it is answered.
pub struct IncomingCall {
    pub call: Call,
    pub invite: Received,
}

impl IncomingCall {
    pub fn offer(&self) -> Option<SdpInfo> {
        sdp::parse(&self.invite.msg.body_str())
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.invite.msg.header(name)
    }

    pub fn send_provisional(&self, status: u16, reason: &str) {
        let tag = self.call.local_tag.clone();
        self.call
            .peer
            .respond(&self.invite, status, reason, Some(&tag), &[], None);
    }

    /// 200 OK with `answer`, retransmitted (UDP) until the ACK comes; returns the ACK.
    pub fn answer(&mut self, answer: &str, timeout: Duration) -> Received {
        let contact = format!("Contact: {}", self.call.peer.contact("function"));
        let tag = self.call.local_tag.clone();
        let peer = self.call.peer.clone();
        let deadline = Instant::now() + timeout;
        let mut interval = T1;
        loop {
            peer.respond(
                &self.invite,
                200,
                "OK",
                Some(&tag),
                std::slice::from_ref(&contact),
                Some(("application/sdp", answer)),
            );
            let wait = interval.min(deadline.saturating_duration_since(Instant::now()));
            if let Some(ack) = peer.take(wait, |m| {
                m.is_request("ACK") && m.call_id() == Some(self.call.call_id.as_str())
            }) {
                return ack;
            }
            if Instant::now() >= deadline {
                panic!(
                    "no ACK for our 200 within {timeout:?}; inbox: {}",
                    peer.inbox_summary()
                );
            }
            if peer.transport() == Transport::Tcp {
                interval = deadline.saturating_duration_since(Instant::now());
            } else {
                interval = (interval * 2).min(T2);
            }
        }
    }

    /// A final failure response (486 Busy Here, ...), retransmitted until the ACK; returns whether the ACK came.
    pub fn reject(&self, status: u16, reason: &str, timeout: Duration) -> bool {
        let tag = self.call.local_tag.clone();
        let peer = &self.call.peer;
        let deadline = Instant::now() + timeout;
        let mut interval = T1;
        loop {
            peer.respond(&self.invite, status, reason, Some(&tag), &[], None);
            let wait = interval.min(deadline.saturating_duration_since(Instant::now()));
            if peer
                .take(wait, |m| {
                    m.is_request("ACK") && m.call_id() == Some(self.call.call_id.as_str())
                })
                .is_some()
            {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            interval = (interval * 2).min(T2);
        }
    }
}
