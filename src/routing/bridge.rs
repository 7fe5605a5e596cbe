//! Bridge: knappval calls the support function (UAC), and once it answers, the call task relays media between
//! the two legs until one side hangs up.
//!
//! [`dial`] places the call with our SDP offer (the caller's codec first, so that no transcoding is needed when
//! the function can do it), waits at most the function's ring timeout, and CANCELs when it runs out or when the
//! dial itself is dropped (the caller hung up while it rang). A target that sends nothing at all (not even
//! 100 Trying) within [`NO_RESPONSE_TIMEOUT`] is given up at once rather than after Timer B's 32 s: nothing
//! is there. Once a provisional came, Timer B no longer runs (RFC 3261 §17.1.1.2), so a ring timeout above
//! 32 s takes effect.

use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use rsipstack::dialog::dialog::{DialogState, DialogStateReceiver};
use rsipstack::dialog::dialog_layer::DialogLayer;
use rsipstack::dialog::invitation::InviteOption;
use rsipstack::dialog::invite_dialog::InviteDialog;
use rsipstack::sip::{StatusCode, StatusCodeKind, Transport, Uri};
use tokio_util::task::TaskTracker;
use tracing::{debug, info};

use super::Handoff;
use crate::media::codec::Codec;
use crate::media::{MediaSession, RtpPorts};
use crate::sip::SipEndpoint;
use crate::sip::sdp::{self, LocalMedia, Negotiated};

/// The function's side of a bridged call, answered and with media negotiated.
pub struct FunctionLeg {
    pub dialog: InviteDialog,
    pub events: DialogStateReceiver,
    pub media: MediaSession,
    pub negotiated: Negotiated,
    pub local: LocalMedia,
}

/// How long a target may stay silent (no 100 Trying, no 180) before the dial gives up on it. Any SIP element
/// answers an INVITE with 100 within a round trip or two; 4 s covers a slow DNS and retransmissions (the
/// INVITE goes out at 0, 0.5, 1.5 and 3.5 s) while the caller hears ringback.
pub const NO_RESPONSE_TIMEOUT: Duration = Duration::from_secs(4);

/// Why the function did not take the call, worded for the log and the contact record.
#[derive(Debug, thiserror::Error)]
pub enum DialFailure {
    #[error("busy {0}")]
    Busy(u16),
    #[error("refused {code} {reason}")]
    Refused { code: u16, reason: String },
    #[error("rang out after {}s", .0.as_secs())]
    NoAnswer(Duration),
    #[error("no response from target within {}s", .0.as_secs())]
    NoResponse(Duration),
    #[error("target unreachable: {0}")]
    Unreachable(String),
    #[error("function's answer unusable: {0}")]
    BadAnswer(String),
    #[error("no RTP port for the function leg: {0}")]
    Media(std::io::Error),
    #[error("bad function target '{0}'")]
    BadTarget(String),
}

impl DialFailure {
    /// Whether the target itself answered (busy, refused, rang): it is alive, whatever the outcome.
    pub fn target_responded(&self) -> bool {
        matches!(
            self,
            DialFailure::Busy(_)
                | DialFailure::Refused { .. }
                | DialFailure::NoAnswer(_)
                | DialFailure::BadAnswer(_)
        )
    }

    /// Whether nothing at all came back from the target (silence, or the INVITE could not be sent): a sign
    /// that it is down.
    pub fn target_silent(&self) -> bool {
        matches!(
            self,
            DialFailure::NoResponse(_) | DialFailure::Unreachable(_)
        )
    }
}

pub struct Dial<'a> {
    pub sip: &'a SipEndpoint,
    pub target: &'a str,
    pub handoff: &'a Handoff,
    pub media_ip: IpAddr,
    pub rtp_ports: &'a RtpPorts,
    pub prefer: Codec,
    pub ring_timeout: Duration,
    /// The function leg's RTP may stop this long before the bridge is taken as dead (zero: never).
    pub media_timeout: Duration,
    /// Where the CANCEL of an abandoned dial runs, so that shutdown waits for it.
    pub signalling: &'a TaskTracker,
}

/// Ends the function leg if the dial is dropped before it finished (the caller hung up while it rang): CANCEL
/// while it rings, BYE if its 2xx raced us; then the dialog is forgotten by the dialog layer.
struct CancelOnDrop {
    dialog: Option<InviteDialog>,
    dialogs: Arc<DialogLayer>,
    signalling: TaskTracker,
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if let Some(dialog) = self.dialog.take() {
            let dialogs = self.dialogs.clone();
            self.signalling.spawn(async move {
                if let Err(e) = dialog.hangup().await {
                    debug!(error = %e, "could not end the unanswered function leg");
                }
                dialogs.remove_dialog(&dialog.id());
            });
        }
    }
}

pub async fn dial(d: Dial<'_>) -> Result<FunctionLeg, DialFailure> {
    let callee = Uri::try_from(d.target).map_err(|_| DialFailure::BadTarget(d.target.into()))?;
    let media = MediaSession::open(d.media_ip, d.rtp_ports)
        .await
        .map_err(DialFailure::Media)?;
    let local = LocalMedia {
        ip: d.media_ip,
        rtp_port: media.local_addr().port(),
        session_id: rand::random::<u32>() as u64,
        session_version: 1,
    };
    let offer = sdp::offer(&local, d.prefer);
    let our_host = d.sip.local_addr();
    let caller_user = if d.handoff.caller_number.is_empty() {
        "anonymous".to_string()
    } else {
        d.handoff.caller_number.clone()
    };
    let caller = Uri {
        scheme: Some(rsipstack::sip::Scheme::Sip),
        auth: Some(rsipstack::sip::Auth {
            user: caller_user,
            password: None,
        }),
        host_with_port: our_host.into(),
        ..Default::default()
    };
    let transport = callee
        .params
        .iter()
        .find_map(|p| match p {
            rsipstack::sip::Param::Transport(t) => Some(*t),
            _ => None,
        })
        .unwrap_or(Transport::Udp);
    let option = InviteOption {
        caller,
        callee,
        contact: d.sip.contact(transport),
        content_type: Some("application/sdp".into()),
        offer: Some(offer.into_bytes()),
        headers: Some(
            d.handoff
                .headers()
                .into_iter()
                .chain(d.handoff.asserted_identity.iter().cloned())
                .collect(),
        ),
        caller_display_name: None,
        ..Default::default()
    };
    let (state_sender, events) = d.sip.dialogs.new_dialog_state_channel();
    let (dialog, outcome) = d
        .sip
        .dialogs
        .do_invite_async(option, state_sender)
        .map_err(|e| DialFailure::Unreachable(e.to_string()))?;
    let mut guard = CancelOnDrop {
        dialog: Some(dialog.clone()),
        dialogs: d.sip.dialogs.clone(),
        signalling: d.signalling.clone(),
    };
    info!(target = %d.target, function = %d.handoff.function_id, "calling the function");
    let mut outcome = outcome;
    let mut events = events;
    let started = tokio::time::Instant::now();
    let rang_out = tokio::time::sleep_until(started + d.ring_timeout);
    let silent = tokio::time::sleep_until(started + NO_RESPONSE_TIMEOUT.min(d.ring_timeout));
    tokio::pin!(rang_out, silent);
    let mut heard = false;
    let result = loop {
        tokio::select! {
            joined = &mut outcome => break joined,
            state = events.recv(), if !heard => {
                // Calling is our own INVITE going out; anything else is the target's doing.
                heard = !matches!(state, Some(DialogState::Calling(_)));
            }
            _ = &mut silent, if !heard => {
                // Nothing answers there; the guard ends the attempt, whose transaction would idle to Timer B.
                return Err(DialFailure::NoResponse(NO_RESPONSE_TIMEOUT.min(d.ring_timeout)));
            }
            _ = &mut rang_out => {
                // The guard CANCELs; wait briefly so a 2xx racing the CANCEL is ended cleanly by the stack.
                drop(guard);
                let _ = tokio::time::timeout(Duration::from_secs(2), outcome).await;
                return Err(DialFailure::NoAnswer(d.ring_timeout));
            }
        }
    };
    let response = match result {
        Ok(Ok((_id, Some(response)))) => response,
        Ok(Ok((_id, None))) => {
            guard.dialog = None;
            return Err(DialFailure::Unreachable("no final response".into()));
        }
        Ok(Err(e)) => {
            guard.dialog = None;
            return Err(DialFailure::Unreachable(e.to_string()));
        }
        Err(e) => {
            guard.dialog = None;
            return Err(DialFailure::Unreachable(format!("dial task failed: {e}")));
        }
    };
    guard.dialog = None;
    let code = u16::from(response.status_code.clone());
    match response.status_code.kind() {
        StatusCodeKind::Successful => {}
        _ if matches!(
            response.status_code,
            StatusCode::BusyHere | StatusCode::BusyEverywhere
        ) =>
        {
            return Err(DialFailure::Busy(code));
        }
        _ => {
            return Err(DialFailure::Refused {
                code,
                reason: response.status_code.to_string(),
            });
        }
    }
    let negotiated = match sdp::parse_answer(&response.body) {
        Ok(negotiated) => negotiated,
        Err(e) => {
            // Answered but unusable: we must still end the dialog it created.
            if let Err(bye) = dialog.bye().await {
                debug!(error = %bye, "BYE after a bad answer failed");
            }
            d.sip.dialogs.remove_dialog(&dialog.id());
            return Err(DialFailure::BadAnswer(e.to_string()));
        }
    };
    let mut media = media;
    media.set_media_timeout(d.media_timeout);
    media.start(
        negotiated.remote_rtp,
        negotiated.codec,
        negotiated.telephone_event,
        std::time::Instant::now(),
    );
    media.set_direction(
        negotiated.direction.receives(),
        negotiated.direction.sends(),
    );
    Ok(FunctionLeg {
        dialog,
        events,
        media,
        negotiated,
        local,
    })
}

/// What a dial needs, owned, so that dials can run as `'static` futures beside the call (a queue's offers).
#[derive(Clone)]
pub struct Dialer {
    pub sip: Arc<SipEndpoint>,
    pub rtp_ports: Arc<RtpPorts>,
    pub media_ip: IpAddr,
    pub prefer: Codec,
    pub media_timeout: Duration,
    pub signalling: TaskTracker,
    pub handoff: Handoff,
}

/// A dial that ends with the leg and the target that answered.
pub type Forked =
    std::pin::Pin<Box<dyn Future<Output = Result<(String, FunctionLeg), DialFailure>> + Send>>;

impl Dialer {
    /// Rings every target at once (an agent's registered contacts); the first to answer wins and the others
    /// are CANCELled (dropped: see [`CancelOnDrop`]). Fails with the last failure when none answers.
    pub fn fork(&self, targets: Vec<String>, ring_timeout: Duration) -> Forked {
        let dialer = self.clone();
        Box::pin(async move {
            let mut dials: Vec<Forked> = targets
                .into_iter()
                .map(|target| {
                    let dialer = dialer.clone();
                    Box::pin(async move {
                        let leg = dial(Dial {
                            sip: &dialer.sip,
                            target: &target,
                            handoff: &dialer.handoff,
                            media_ip: dialer.media_ip,
                            rtp_ports: &dialer.rtp_ports,
                            prefer: dialer.prefer,
                            ring_timeout,
                            media_timeout: dialer.media_timeout,
                            signalling: &dialer.signalling,
                        })
                        .await?;
                        Ok((target, leg))
                    }) as Forked
                })
                .collect();
            let mut last = DialFailure::Unreachable("no contact to ring".into());
            while !dials.is_empty() {
                let (index, result) = std::future::poll_fn(|cx| {
                    for (index, dial) in dials.iter_mut().enumerate() {
                        if let std::task::Poll::Ready(result) = dial.as_mut().poll(cx) {
                            return std::task::Poll::Ready((index, result));
                        }
                    }
                    std::task::Poll::Pending
                })
                .await;
                drop(dials.swap_remove(index));
                match result {
                    Ok(answered) => return Ok(answered),
                    Err(failure) => last = failure,
                }
            }
            Err(last)
        })
    }
}
