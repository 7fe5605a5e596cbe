//! The SIP endpoint: rsipstack's transport and transaction layers on one address (UDP and TCP), and the
//! dispatcher that sorts incoming requests.
//!
//! A new INVITE becomes an [`IncomingCall`] handed to the daemon through a bounded channel; its INVITE server
//! transaction (100 Trying, the final response and its retransmissions, the ACK, a CANCEL) is driven by the
//! dialog layer in a task of its own. In-dialog requests (BYE, INFO, re-INVITE, REFER, NOTIFY, ...) are routed
//! to their dialog, whose owner (the call task) sees them on its dialog-state channel. Out-of-dialog OPTIONS is
//! answered here; REGISTER goes to the [`Registrar`] when the daemon has one (`--agents`) and gets 405
//! otherwise; requests for dialogs we do not have get 481; methods we do not serve get 405.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use rsipstack::dialog::dialog::{Dialog, DialogStateReceiver};
use rsipstack::dialog::dialog_layer::DialogLayer;
use rsipstack::dialog::invite_dialog::InviteDialog;
use rsipstack::sip::prelude::HeadersExt;
use rsipstack::sip::{Header, Method, Request, StatusCode, Transport};
use rsipstack::transaction::endpoint::EndpointOption;
use rsipstack::transaction::key::{TransactionKey, TransactionRole};
use rsipstack::transaction::transaction::Transaction;
use rsipstack::transport::udp::UdpConnection;
use rsipstack::transport::{TcpListenerConnection, TransportLayer};
use rsipstack::{EndpointBuilder, transaction::Endpoint};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::guard::GuardedUdpSocket;
use super::message;
use super::registrar::{Outcome, Registrar};
use crate::metrics::Metrics;
use rsipstack::sip::SipMessage;
use rsipstack::transaction::endpoint::MessageInspector;
use rsipstack::transport::SipAddr;

/// A call that has arrived and not yet been answered. The call task owns it from here on.
pub struct IncomingCall {
    /// The initial INVITE as received.
    pub request: Request,
    /// The server INVITE dialog: `accept`, `reject`, `bye`, `refer`, `info`, ...
    pub dialog: InviteDialog,
    /// Everything that happens to the dialog: ACK (Confirmed), BYE/CANCEL (Terminated), INFO, re-INVITE
    /// (Updated), NOTIFY, each with a handle to answer it where one is owed.
    pub events: DialogStateReceiver,
    /// The transport the INVITE came on.
    pub transport: Transport,
    /// Where the INVITE came from (the caller's side of the signalling).
    pub source: Option<SocketAddr>,
}

#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    #[error("cannot bind SIP on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("SIP stack: {0}")]
    Stack(#[from] rsipstack::Error),
}

/// The running endpoint. Clone the `Arc` freely: call tasks use `dialogs` to place outgoing calls.
pub struct SipEndpoint {
    endpoint: Endpoint,
    pub dialogs: Arc<DialogLayer>,
    local: SocketAddr,
    accepting: AtomicBool,
    /// New INVITEs whose server transaction is still running, by Call-ID, From tag and CSeq: the same request
    /// reaching us by another path (an SBC failover, a fork that loops back) is answered 482, not taken as a
    /// second call (RFC 3261 §8.2.2.2).
    invites_in_progress: Arc<Mutex<HashSet<InviteKey>>>,
    /// Agents' REGISTERs go here; without one (no `--agents`) REGISTER is answered 405.
    registrar: OnceLock<Registrar>,
    /// Whether a REGISTER without a registrar has been logged: a phone retrying every minute should not fill
    /// the log.
    register_refusal_logged: AtomicBool,
    cancel: CancellationToken,
}

/// What identifies a request apart from the path it took: Call-ID, From tag, CSeq number.
type InviteKey = (String, String, u32);

fn invite_key(request: &Request) -> Option<InviteKey> {
    let call_id = request.call_id_header().ok()?.value().to_string();
    let from_tag = request.from_header().ok()?.tag().ok()??.value().to_string();
    let cseq = request.cseq_header().ok()?.seq().ok()?;
    Some((call_id, from_tag, cseq))
}

impl SipEndpoint {
    /// Binds UDP and TCP on `listen`. With port 0 the kernel picks a port for UDP and TCP takes the same number.
    /// Every SIP response sent counts in `metrics`.
    pub async fn bind(
        listen: SocketAddr,
        metrics: Metrics,
    ) -> Result<Arc<SipEndpoint>, EndpointError> {
        let (udp, local) =
            bind_udp_and_tcp(listen)
                .await
                .map_err(|source| EndpointError::Bind {
                    addr: listen,
                    source,
                })?;
        let cancel = CancellationToken::new();
        let transport = TransportLayer::new(cancel.clone());
        let udp = UdpConnection::from_socket(
            GuardedUdpSocket::new(udp, metrics.clone()),
            None,
            Some(cancel.child_token()),
        )
        .await?;
        transport.add_transport(udp.into());
        transport.add_transport(TcpListenerConnection::new(local, None).await?.into());
        // Call-IDs of the requests we originate (the bridged INVITE, OPTIONS probes) end in our own address,
        // not the library's default host, so that an operator reading a trace sees who made them.
        let option = EndpointOption {
            callid_suffix: Some(call_id_host(local)),
            ..EndpointOption::default()
        };
        let endpoint = EndpointBuilder::new()
            .with_inspector(Box::new(CountResponses(metrics)))
            .with_option(option)
            .with_transport_layer(transport)
            .with_cancel_token(cancel.clone())
            .with_user_agent(concat!("knappval/", env!("CARGO_PKG_VERSION")))
            .with_allows(vec![
                Method::Invite,
                Method::Ack,
                Method::Bye,
                Method::Cancel,
                Method::Options,
                Method::Info,
                Method::Refer,
                Method::Notify,
                Method::Update,
                Method::PRack,
            ])
            .build();
        let dialogs = Arc::new(DialogLayer::new(endpoint.inner.clone()));
        Ok(Arc::new(SipEndpoint {
            endpoint,
            dialogs,
            local,
            accepting: AtomicBool::new(true),
            invites_in_progress: Arc::default(),
            registrar: OnceLock::new(),
            register_refusal_logged: AtomicBool::new(false),
            cancel,
        }))
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// From now on REGISTERs go to `registrar`. Set once, before [`serve`](Self::serve); a second call is ignored.
    pub fn set_registrar(&self, registrar: Registrar) {
        if self.registrar.set(registrar).is_err() {
            warn!("a registrar was already set; keeping the first");
        }
    }

    /// The Allow header: our methods, with REGISTER when agents can register.
    fn allow(&self) -> Header {
        match self.registrar.get() {
            Some(_) => Header::Allow(format!("{}, REGISTER", super::ALLOWED_METHODS).into()),
            None => Header::Allow(super::ALLOWED_METHODS.into()),
        }
    }

    /// Our Contact for a dialog on `transport` (RFC 3261 §8.1.1.8: where the peer sends in-dialog requests).
    pub fn contact(&self, transport: Transport) -> rsipstack::sip::Uri {
        let mut uri = rsipstack::sip::Uri {
            scheme: Some(rsipstack::sip::Scheme::Sip),
            auth: Some(rsipstack::sip::Auth {
                user: "knappval".into(),
                password: None,
            }),
            host_with_port: self.local.into(),
            ..Default::default()
        };
        if transport != Transport::Udp {
            uri.params.push(rsipstack::sip::Param::Transport(transport));
        }
        uri
    }

    /// Sends OPTIONS to `target` outside any dialog and waits at most `timeout` for a response: its status
    /// code, or why there was none. Used to probe whether a support function's target is alive.
    pub async fn options(&self, target: &str, timeout: std::time::Duration) -> Result<u16, String> {
        let uri = rsipstack::sip::Uri::try_from(target).map_err(|e| format!("bad target: {e}"))?;
        let inner = &self.endpoint.inner;
        let via = inner.get_via(None, None).map_err(|e| e.to_string())?;
        let from = rsipstack::sip::typed::From {
            display_name: None,
            uri: self.contact(Transport::Udp),
            params: vec![],
        }
        .with_tag(rsipstack::transaction::make_tag());
        let to = rsipstack::sip::typed::To {
            display_name: None,
            uri: uri.clone(),
            params: vec![],
        };
        let request = inner.make_request(Method::Options, uri, via, from, to, 1, None);
        let key = TransactionKey::from_request(&request, TransactionRole::Client)
            .map_err(|e| e.to_string())?;
        let mut tx = Transaction::new_client(key, request, inner.clone(), None);
        tx.send().await.map_err(|e| format!("not sent: {e}"))?;
        let response = async {
            while let Some(message) = tx.receive().await {
                if let rsipstack::sip::SipMessage::Response(response) = message {
                    return Some(u16::from(response.status_code));
                }
            }
            None
        };
        match tokio::time::timeout(timeout, response).await {
            Ok(Some(code)) => Ok(code),
            Ok(None) => Err("no response".into()),
            Err(_) => Err(format!("no response within {}s", timeout.as_secs())),
        }
    }

    /// Waits until the TCP listener (which rsipstack binds when [`serve`](Self::serve) starts) takes connections,
    /// so that "listening" is only said once it is true for TCP as well as UDP.
    pub async fn wait_until_listening(&self, timeout: std::time::Duration) -> std::io::Result<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match tokio::net::TcpStream::connect(self.local).await {
                Ok(_probe) => return Ok(()),
                Err(e) if tokio::time::Instant::now() >= deadline => return Err(e),
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(10)).await,
            }
        }
    }

    /// From now on new INVITEs are answered 503 (shutting down); calls in progress carry on.
    pub fn stop_accepting(&self) {
        self.accepting.store(false, Ordering::SeqCst);
    }

    /// Stops the transports and timers. Call after the last call has ended.
    pub fn shutdown(&self) {
        self.cancel.cancel();
    }

    /// Runs the stack and the dispatcher until [`shutdown`](Self::shutdown). New calls go to `calls`; when
    /// that channel is full the caller gets 503 rather than waiting in silence.
    pub async fn serve(self: Arc<Self>, calls: mpsc::Sender<IncomingCall>) {
        let mut incoming = match self.endpoint.incoming_transactions() {
            Ok(incoming) => incoming,
            Err(e) => {
                warn!(error = %e, "SIP dispatcher already running");
                return;
            }
        };
        let stack = self.endpoint.inner.clone();
        let stack_task = tokio::spawn(async move {
            if let Err(e) = stack.serve().await {
                warn!(error = %e, "SIP stack stopped");
            }
        });
        info!(addr = %self.local, "SIP listening on UDP and TCP");
        loop {
            let transaction = tokio::select! {
                _ = self.cancel.cancelled() => break,
                transaction = incoming.recv() => match transaction {
                    Some(transaction) => transaction,
                    None => break,
                },
            };
            self.dispatch(transaction, &calls);
        }
        stack_task.abort();
    }

    /// Sorts one new transaction. Never waits on the network itself: a TCP peer that stops reading must not be
    /// able to hold up every other call's signalling, so every reply goes out from a task of its own.
    fn dispatch(&self, mut tx: Transaction, calls: &mpsc::Sender<IncomingCall>) {
        let method = tx.original.method;
        let in_dialog = has_to_tag(&tx.original);
        if in_dialog || method != Method::Invite {
            if let Some(Dialog::Invite(mut dialog)) = self.dialogs.match_dialog(&tx) {
                // The dialog answers through its owner (the call task); its own task waits for that answer.
                tokio::spawn(async move {
                    if let Err(e) = dialog.handle(&mut tx).await {
                        debug!(error = %e, %method, "in-dialog request not handled");
                    }
                });
                return;
            }
        }
        let allow = || self.allow();
        let (status, headers) = match method {
            Method::Invite if in_dialog => (StatusCode::CallTransactionDoesNotExist, vec![]),
            Method::Invite => match self.admit(&tx.original) {
                Ok(()) => return self.new_call(tx, calls),
                Err(refusal) => refusal,
            },
            Method::Options => (
                StatusCode::OK,
                vec![
                    allow(),
                    Header::Supported("timer".into()),
                    Header::Accept("application/sdp".into()),
                    Header::AcceptLanguage("sv, en".into()),
                ],
            ),
            Method::Ack => return,
            Method::Bye
            | Method::Info
            | Method::Notify
            | Method::Refer
            | Method::Update
            | Method::PRack
            | Method::Cancel => (StatusCode::CallTransactionDoesNotExist, vec![]),
            Method::Register => return self.register(tx),
            Method::Subscribe | Method::Publish | Method::Message => {
                (StatusCode::MethodNotAllowed, vec![allow()])
            }
        };
        reply_later(tx, status, headers);
    }

    /// An agent's REGISTER: the registrar decides, this logs (never the credentials) and answers.
    fn register(&self, tx: Transaction) {
        let Some(registrar) = self.registrar.get() else {
            if !self.register_refusal_logged.swap(true, Ordering::Relaxed) {
                info!(
                    "REGISTER answered 405: no agents file (start with --agents FILE to let agents register); \
                     logged once"
                );
            }
            return reply_later(tx, StatusCode::MethodNotAllowed, vec![self.allow()]);
        };
        let remote = tx.connection.as_ref().and_then(|c| c.get_remote_addr());
        // A connection always knows its peer; were it ever missing, such requests share one lockout entry.
        let source_ip = remote
            .and_then(|addr| addr.get_socketaddr().ok())
            .map(|addr| addr.ip())
            .unwrap_or(std::net::IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED));
        let answer = registrar.register(&tx.original, source_ip, std::time::Instant::now());
        let source = remote.map(|addr| addr.to_string()).unwrap_or_default();
        match &answer.outcome {
            Outcome::Challenged | Outcome::Stale | Outcome::ForeignNonce => {
                debug!(%source, outcome = ?answer.outcome, "REGISTER challenged")
            }
            Outcome::Registered {
                agent,
                contacts,
                changed: true,
            } => info!(%agent, contacts, %source, "REGISTER accepted: contacts changed"),
            Outcome::Registered {
                agent, contacts, ..
            } => debug!(%agent, contacts, %source, "REGISTER accepted: refreshed"),
            Outcome::WrongPassword { agent } => {
                warn!(%agent, %source, "REGISTER refused 403: wrong password")
            }
            Outcome::UnknownAgent { agent } => warn!(
                %agent, %source,
                "REGISTER refused 403: no such agent in the agents file, or another agent's credentials"
            ),
            Outcome::LockedOut {
                agent,
                started: true,
                for_,
            } => warn!(
                %agent, %source, locked_for = %crate::menu::format_duration(*for_),
                "REGISTER refused 403: {} refused passwords for this agent from this address within {}; \
                 its REGISTERs for this agent are refused unchecked until the lockout ends",
                crate::sip::registrar::lockout::MAX_FAILURES,
                crate::menu::format_duration(crate::sip::registrar::lockout::WINDOW)
            ),
            Outcome::LockedOut { agent, for_, .. } => debug!(
                %agent, %source, locked_for = %crate::menu::format_duration(*for_),
                "REGISTER refused 403 unchecked: locked out after refused passwords"
            ),
            Outcome::Replayed { agent } => warn!(
                %agent, %source,
                "REGISTER refused 401: nonce-count used before (a replayed request?)"
            ),
            Outcome::Refused { agent, reason } => {
                info!(%agent, %source, status = %answer.status, %reason, "REGISTER refused")
            }
            Outcome::BadRequest { reason } => info!(%source, %reason, "REGISTER refused 400"),
        }
        reply_later(tx, answer.status, answer.headers);
    }

    /// Whether a new INVITE can become a call, or the final response that says why not.
    fn admit(&self, invite: &Request) -> Result<(), (StatusCode, Vec<Header>)> {
        if !self.accepting.load(Ordering::SeqCst) {
            return Err((
                StatusCode::ServiceUnavailable,
                vec![Header::RetryAfter("30".into())],
            ));
        }
        if let Some(key) = invite_key(invite) {
            if self.invites_lock().contains(&key) {
                return Err((StatusCode::LoopDetected, vec![]));
            }
        }
        // RFC 3261 §8.2.2.3: session timers are the one extension we implement; any other required one is
        // unsupported.
        let mut required = message::required_extensions(invite);
        required.retain(|tag| !tag.eq_ignore_ascii_case("timer"));
        if !required.is_empty() {
            return Err((
                StatusCode::BadExtension,
                vec![Header::Unsupported(required.join(", ").into())],
            ));
        }
        if super::session_timer::asked(invite) == super::session_timer::Asked::TooSmall {
            // RFC 4028 §8.1: the caller retries with our minimum.
            let min_se = super::session_timer::MIN_SE.as_secs().to_string();
            return Err((
                StatusCode::SessionIntervalTooSmall,
                vec![Header::MinSE(min_se.into())],
            ));
        }
        if let Err(e) = message::session_offer(invite) {
            debug!(error = %e, "INVITE body refused");
            return Err((
                StatusCode::UnsupportedMediaType,
                vec![Header::Accept("application/sdp".into())],
            ));
        }
        Ok(())
    }

    fn new_call(&self, tx: Transaction, calls: &mpsc::Sender<IncomingCall>) {
        let mut tx = tx;
        let transport = tx
            .connection
            .as_ref()
            .map(|c| c.transport())
            .unwrap_or(Transport::Udp);
        let (state_sender, events) = self.dialogs.new_dialog_state_channel();
        let mut dialog = match self.dialogs.get_or_create_server_invite(
            &tx,
            state_sender,
            None,
            Some(self.contact(transport)),
        ) {
            Ok(dialog) => dialog,
            Err(e) => {
                warn!(error = %e, "cannot create a dialog for the INVITE");
                reply_later(tx, StatusCode::BadRequest, vec![]);
                return;
            }
        };
        let request = tx.original.clone();
        let source = tx
            .connection
            .as_ref()
            .and_then(|c| c.get_remote_addr())
            .and_then(|addr| addr.get_socketaddr().ok());
        let call = IncomingCall {
            request,
            dialog: dialog.clone(),
            events,
            transport,
            source,
        };
        if let Err(refused) = calls.try_send(call) {
            let call = match refused {
                mpsc::error::TrySendError::Full(call) | mpsc::error::TrySendError::Closed(call) => {
                    call
                }
            };
            warn!("too many calls waiting to start: answering 503");
            call.dialog
                .reject(Some(StatusCode::ServiceUnavailable), None)
                .ok();
            self.dialogs.remove_dialog(&call.dialog.id());
        }
        // Drives the INVITE server transaction: 100 Trying, our final response and its retransmissions, the ACK
        // or a CANCEL.
        let key = invite_key(&tx.original);
        if let Some(key) = &key {
            self.invites_lock().insert(key.clone());
        }
        let in_progress = self.invites_in_progress.clone();
        tokio::spawn(async move {
            if let Err(e) = dialog.handle(&mut tx).await {
                debug!(error = %e, "INVITE transaction ended with an error");
            }
            if let (Some(key), Ok(mut in_progress)) = (key, in_progress.lock()) {
                in_progress.remove(&key);
            }
        });
    }

    fn invites_lock(&self) -> std::sync::MutexGuard<'_, HashSet<InviteKey>> {
        // A poisoned lock only means a panic elsewhere mid-insert; the set itself is still usable.
        self.invites_in_progress
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Counts each SIP response as it goes out, whoever sent it (the dialogs, the dispatcher, the registrar, the
/// transactions' retransmissions) and over whichever transport.
struct CountResponses(Metrics);

impl MessageInspector for CountResponses {
    fn before_send(&self, message: SipMessage, _: Option<&SipAddr>) -> SipMessage {
        if let SipMessage::Response(response) = &message {
            self.0
                .sip_response_sent(u16::from(response.status_code.clone()));
        }
        message
    }

    fn after_received(&self, message: SipMessage, _: Option<&SipAddr>) -> SipMessage {
        message
    }
}

fn reply_later(mut tx: Transaction, status: StatusCode, headers: Vec<Header>) {
    tokio::spawn(async move {
        let method = tx.original.method;
        if let Err(e) = tx.reply_with(status, headers, None).await {
            debug!(error = %e, %method, "reply failed");
        }
    });
}

fn has_to_tag(request: &Request) -> bool {
    request
        .to_header()
        .ok()
        .and_then(|to| to.tag().ok().flatten())
        .is_some()
}

/// What the SIP socket asks the kernel to buffer. Calls arrive in bursts (a trunk's morning peak, a queue
/// overflowing into the IVR): with the default ~200 KiB, a short stall of the reading task drops requests,
/// and every drop costs the caller a retransmission (0.5 s, 1 s, 2 s, ...). Measured under load: the default
/// buffer overflowed at 500 concurrent calls. The kernel caps it at net.core.rmem_max.
const SIP_RECEIVE_BUFFER: usize = 4 * 1024 * 1024;

/// Our address as the host part of a Call-ID (`uuid@127.0.0.1`, `uuid@[::1]`).
fn call_id_host(local: SocketAddr) -> String {
    match local.ip() {
        std::net::IpAddr::V4(ip) => ip.to_string(),
        std::net::IpAddr::V6(ip) => format!("[{ip}]"),
    }
}

fn bind_sip_udp(listen: SocketAddr) -> std::io::Result<tokio::net::UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(
        Domain::for_address(listen),
        Type::DGRAM,
        Some(Protocol::UDP),
    )?;
    if listen.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    if let Err(e) = socket.set_recv_buffer_size(SIP_RECEIVE_BUFFER) {
        warn!(error = %e, "could not enlarge the SIP receive buffer; bursts may be dropped");
    }
    socket.bind(&listen.into())?;
    socket.set_nonblocking(true)?;
    let buffer = socket.recv_buffer_size().unwrap_or(0);
    if buffer < SIP_RECEIVE_BUFFER {
        debug!(
            bytes = buffer,
            "SIP receive buffer limited by net.core.rmem_max"
        );
    }
    tokio::net::UdpSocket::from_std(socket.into())
}

/// Binds UDP on `listen` and makes sure TCP can have the same port, retrying for an ephemeral port.
async fn bind_udp_and_tcp(
    listen: SocketAddr,
) -> std::io::Result<(tokio::net::UdpSocket, SocketAddr)> {
    let mut last_error = None;
    for _ in 0..16 {
        let udp = bind_sip_udp(listen)?;
        let local = udp.local_addr()?;
        // rsipstack binds TCP itself when serving; check now so a taken port is an error at start-up,
        // not a warning in the log after we said we were listening.
        match std::net::TcpListener::bind(local) {
            Ok(probe) => {
                drop(probe);
                return Ok((udp, local));
            }
            Err(e) if listen.port() == 0 => last_error = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last_error.unwrap_or_else(|| std::io::Error::other("no port free for UDP and TCP")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_sip_socket_gets_a_receive_buffer_for_bursts() {
        let socket = bind_sip_udp("127.0.0.1:0".parse().unwrap()).unwrap();
        let granted = socket2::SockRef::from(&socket).recv_buffer_size().unwrap();
        // The kernel caps the request at net.core.rmem_max (and reports double what it was asked for).
        let cap = std::fs::read_to_string("/proc/sys/net/core/rmem_max")
            .ok()
            .and_then(|max| max.trim().parse::<usize>().ok())
            .unwrap_or(SIP_RECEIVE_BUFFER);
        assert!(
            granted >= SIP_RECEIVE_BUFFER.min(cap),
            "receive buffer {granted} bytes, asked for {SIP_RECEIVE_BUFFER} (rmem_max {cap})"
        );
    }

    #[tokio::test]
    async fn udp_and_tcp_share_an_ephemeral_port() {
        let (udp, local) = bind_udp_and_tcp("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        assert_eq!(udp.local_addr().unwrap(), local);
        assert_ne!(local.port(), 0);
        // The TCP side of the same port is free for rsipstack to take.
        drop(std::net::TcpListener::bind(local).unwrap());
    }
}
