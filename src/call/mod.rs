//! The call task: one tokio task per call, owning the caller's dialog, the media session and the menu flow.
//!
//! It answers the INVITE (SDP offer/answer), feeds the flow with what happens (digits from RFC 4733 or INFO,
//! prompts ending, timers, hang-ups) and carries out what the flow asks (play, stop, transfer, hang up). A
//! transfer runs beside the menu loop, so a caller who hangs up while the function rings is noticed at once.
//! Once bridged, it relays media between the legs until one side hangs up. Its contact record is written when
//! the call starts (so a crash leaves a trace) and again, complete, when it ends, whatever way it ends.

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use rsipstack::dialog::dialog::{
    DialogState, DialogStateReceiver, TerminatedReason, TransactionHandle,
};
use rsipstack::dialog::invite_dialog::InviteDialog;
use rsipstack::sip::prelude::HeadersExt;
use rsipstack::sip::{Header, Request, StatusCode};
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, debug, info, info_span, warn};

use crate::api::Health;
use crate::flow::{Action, Event, Flow, Outcome};
use crate::media::prompt::{Prompt, PromptCache};
use crate::media::{Codec, MediaEvent, MediaSession, RtpPorts};
use crate::menu::model::{Menu, TransferMode};
use crate::metrics::{CallGauge, Metrics, Phase};
use crate::privacy::CallerNumbers;
use crate::records::{ContactRecord, Records};
use crate::routing::Handoff;
use crate::routing::bridge::{self, DialFailure, FunctionLeg};
use crate::routing::refer::{self, ReferProgress};
use crate::sip::sdp::{self, LocalMedia, Negotiated, SdpError};
use crate::sip::{IncomingCall, SipEndpoint, message};

/// The shared services a call task is given at spawn.
pub struct CallServices {
    /// The menu version this call runs from start to end (a reload affects new calls only).
    pub menu: Arc<Menu>,
    pub prompts: Arc<PromptCache>,
    /// Played to the caller while a bridged function rings.
    pub ringback: Arc<Prompt>,
    pub sip: Arc<SipEndpoint>,
    pub rtp_ports: Arc<RtpPorts>,
    /// The address RTP is bound to and announced in SDP.
    pub media_ip: IpAddr,
    pub records: Records,
    /// How the caller's number is stored and logged: a pseudonym unless the admin keeps numbers.
    pub callers: CallerNumbers,
    pub metrics: Metrics,
    pub health: Arc<Health>,
    /// Fired when the shutdown grace period is over: calls still up are ended cleanly.
    pub hangup_all: CancellationToken,
    /// How long the caller's RTP may stop before the call is taken as dead (zero: never).
    pub media_timeout: Duration,
    /// How long a new call rings (180) before it is answered; zero answers at once.
    pub answer_delay: Duration,
    /// BYEs and CANCELs still in flight after their call ended; shutdown waits for them briefly.
    pub signalling: TaskTracker,
}

/// Runs one call to its end. Never panics on what the network sends; always writes the record.
pub async fn run(call: IncomingCall, services: Arc<CallServices>) {
    let call_id = call
        .request
        .call_id_header()
        .map(|h| h.value().trim().to_string())
        .unwrap_or_default();
    // Pseudonymised before anything is written or logged; the real number goes on only to the function.
    let caller = services
        .callers
        .stored(&message::caller_identity(&call.request));
    let span = info_span!("call", call_id = %call_id, caller = %caller);
    async move {
        services.health.active_calls.fetch_add(1, Ordering::SeqCst);
        let mut gauge = services.metrics.call_started();
        let mut record = ContactRecord::started(
            call_id.clone(),
            caller.clone(),
            message::called_number(&call.request),
            OffsetDateTime::now_utc(),
        );
        // Written beside the answer, not before it: a slow disk must not delay the caller's 200 OK.
        let started = {
            let records = services.records.clone();
            let record = record.clone();
            tokio::spawn(async move { records.call_started(record).await })
        };
        let caller_dialog = call.dialog.clone();
        let end = answer_and_run(call, &services, &mut record, &mut gauge).await;
        // The dialog layer keeps every dialog until told: forgetting this would leak one per call.
        services.sip.dialogs.remove_dialog(&caller_dialog.id());
        record.finish(end.outcome, end.at, end.reason);
        services
            .metrics
            .call_ended(record.function.as_deref(), end.outcome);
        info!(outcome = %end.outcome, digits = %record.digits, function = ?record.function,
              open_dialogs = services.sip.dialogs.len(),
              "call ended: {}", record.end_reason.as_deref().unwrap_or(""));
        // The start must be on disk before the end, or the end's upsert could be overwritten by it.
        if let Err(e) = started.await {
            warn!(error = %e, "writing the call's start failed");
        }
        services.records.call_ended(record).await;
        services.health.active_calls.fetch_sub(1, Ordering::SeqCst);
    }
    .instrument(span)
    .await
}

/// How the call ended, for the record.
struct End {
    outcome: Outcome,
    reason: String,
    /// When the end was decided: the record's ended_at, whatever the BYE's transaction still takes.
    at: OffsetDateTime,
}

impl End {
    fn new(outcome: Outcome, reason: impl Into<String>) -> End {
        End {
            outcome,
            reason: reason.into(),
            at: OffsetDateTime::now_utc(),
        }
    }
}

async fn answer_and_run(
    call: IncomingCall,
    services: &Arc<CallServices>,
    record: &mut ContactRecord,
    gauge: &mut CallGauge,
) -> End {
    let IncomingCall {
        request,
        dialog,
        mut events,
        source,
        ..
    } = call;
    let offer = match message::session_offer(&request) {
        Ok(Some(offer)) => offer,
        // A late offer (SDP in the ACK) is legal but rare from trunks; we say plainly that we need one.
        Ok(None) => {
            let why = "knappval needs an SDP offer in the INVITE";
            reject(&dialog, StatusCode::NotAcceptableHere, why);
            return End::new(Outcome::Rejected, "488 INVITE without SDP offer");
        }
        // The dispatcher answers these 415 already; kept so that this function stands on its own.
        Err(e) => {
            reject(&dialog, StatusCode::UnsupportedMediaType, &e.to_string());
            return End::new(Outcome::Rejected, format!("415 {e}"));
        }
    };
    let mut media = match MediaSession::open(services.media_ip, &services.rtp_ports).await {
        Ok(mut media) => {
            media.count_into(services.metrics.rtp());
            media
        }
        Err(e) => {
            warn!(error = %e, "no RTP port free");
            reject(
                &dialog,
                StatusCode::ServiceUnavailable,
                "no media port free",
            );
            return End::new(Outcome::Rejected, format!("503 no RTP port: {e}"));
        }
    };
    let mut local = LocalMedia {
        ip: services.media_ip,
        rtp_port: media.local_addr().port(),
        session_id: rand::random::<u32>() as u64,
        session_version: 1,
    };
    let (negotiated, answer) = match sdp::answer(&offer, &local) {
        Ok(answered) => answered,
        Err(e) => {
            let status = match e {
                SdpError::Malformed(_) => StatusCode::BadRequest,
                SdpError::NoAudio | SdpError::NoCommonCodec { .. } => StatusCode::NotAcceptableHere,
            };
            info!(error = %e, "offer refused");
            reject(&dialog, status.clone(), &e.to_string());
            return End::new(Outcome::Rejected, format!("{} {e}", u16::from(status)));
        }
    };
    if !services.answer_delay.is_zero()
        && !ring_before_answer(&dialog, &mut events, services.answer_delay).await
    {
        return End::new(Outcome::Abandoned, "caller cancelled before answer");
    }
    // A CANCEL may have come while we opened media and read the offer.
    if matches!(dialog.state(), DialogState::Terminated(..)) {
        return End::new(Outcome::Abandoned, "caller cancelled before answer");
    }
    let headers = vec![Header::ContentType("application/sdp".into())];
    if let Err(e) = dialog.accept(Some(headers), Some(answer.into_bytes())) {
        if matches!(dialog.state(), DialogState::Terminated(..)) {
            return End::new(Outcome::Abandoned, "caller cancelled before answer");
        }
        warn!(error = %e, "could not answer the call");
        return End::new(Outcome::Failed, format!("answer failed: {e}"));
    }
    let now = Instant::now();
    record.answered_at = Some(OffsetDateTime::now_utc());
    gauge.enter(Phase::Menu);
    media.set_media_timeout(services.media_timeout);
    if let Some(source) = source {
        media.set_signalling_source(source.ip());
    }
    media.start(
        negotiated.remote_rtp,
        negotiated.codec,
        negotiated.telephone_event,
        now,
    );
    media.set_sending(negotiated.direction.receives());
    local.session_version += 1;
    let mut call = Call {
        services: services.clone(),
        dialog,
        events,
        media,
        local,
        codec: negotiated.codec,
        flow: Flow::new(services.menu.clone()),
        transfer: None,
        refer_deadline: None,
        refer_accepted: false,
        answer_in_ack: false,
        caller_number: message::caller_number(&request),
        record,
        gauge,
    };
    call.run().await
}

/// Sends 180 Ringing and lets the call ring for `delay`; false when the caller gave up (CANCEL) meanwhile.
async fn ring_before_answer(
    dialog: &InviteDialog,
    events: &mut DialogStateReceiver,
    delay: Duration,
) -> bool {
    if let Err(e) = dialog.ringing(None, None) {
        debug!(error = %e, "180 Ringing not sent");
    }
    let ringing = tokio::time::sleep(delay);
    tokio::pin!(ringing);
    loop {
        tokio::select! {
            _ = &mut ringing => return true,
            state = events.recv() => match state {
                None | Some(DialogState::Terminated(..)) => return false,
                Some(_) => {}
            },
        }
    }
}

fn reject(dialog: &InviteDialog, status: StatusCode, why: &str) {
    if let Err(e) = dialog.reject(Some(status), Some(why.to_string())) {
        debug!(error = %e, "reject failed");
    }
}

/// A hand-off under way beside the menu loop.
enum Transfer {
    Bridge(Pin<Box<dyn Future<Output = Result<FunctionLeg, DialFailure>> + Send>>),
    Refer(Pin<Box<dyn Future<Output = Result<(), refer::ReferFailure>> + Send>>),
}

/// What woke the call loop. Lives on the stack for one turn of the loop, so a large variant costs nothing
/// that boxing (an allocation per dialog event) would save.
#[allow(clippy::large_enum_variant)]
enum Wake {
    Dialog(Option<DialogState>),
    Media(MediaEvent),
    Timer,
    Bridged(Result<Box<FunctionLeg>, DialFailure>),
    Referred(Result<(), refer::ReferFailure>),
    ReferTimedOut,
    Shutdown,
}

struct Call<'r> {
    services: Arc<CallServices>,
    dialog: InviteDialog,
    events: DialogStateReceiver,
    media: MediaSession,
    local: LocalMedia,
    codec: Codec,
    flow: Flow,
    transfer: Option<Transfer>,
    /// While a REFER is under way: when we stop waiting for the NOTIFY that says how it went.
    refer_deadline: Option<tokio::time::Instant>,
    /// The caller's side took the REFER (2xx, or a NOTIFY about it): only then may its BYE mean success.
    refer_accepted: bool,
    /// We offered in a 200 to a re-INVITE without SDP: the caller's answer comes with the ACK.
    answer_in_ack: bool,
    /// The caller's real number (From), which the function gets; the record holds only what `callers` stores.
    caller_number: String,
    record: &'r mut ContactRecord,
    gauge: &'r mut CallGauge,
}

/// How long a REFER may take, beyond the function's ring timeout, before we take it as failed.
const REFER_GRACE: Duration = Duration::from_secs(8);

impl Call<'_> {
    async fn run(&mut self) -> End {
        let actions = self.flow.on(Event::Answered, Instant::now());
        if let Some(end) = self.apply(actions).await {
            return end;
        }
        loop {
            let wake = self.wait().await;
            let now = Instant::now();
            let end = match wake {
                Wake::Dialog(None) => {
                    self.feed(Event::CallerHungUp, now).await;
                    Some(End::new(
                        self.outcome_or(Outcome::Abandoned),
                        "caller dialog gone",
                    ))
                }
                Wake::Dialog(Some(state)) => self.on_dialog(state).await,
                Wake::Media(MediaEvent::PromptEnded) => {
                    if matches!(self.transfer, Some(Transfer::Bridge(_))) {
                        // The function is ringing: keep the ringback going.
                        self.media.play(self.services.ringback.clone());
                        None
                    } else {
                        self.feed(Event::PromptEnded, now).await
                    }
                }
                Wake::Media(MediaEvent::Digit(digit)) => self.feed(Event::Digit(digit), now).await,
                Wake::Media(MediaEvent::MediaTimeout) => {
                    self.feed(Event::CallerHungUp, now).await;
                    self.hang_up();
                    Some(End::new(
                        self.outcome_or(Outcome::Abandoned),
                        "no RTP from the caller",
                    ))
                }
                Wake::Timer => self.feed(Event::Timeout, now).await,
                Wake::Bridged(Ok(leg)) => {
                    self.transfer = None;
                    self.transferred(now);
                    Some(self.bridged(*leg).await)
                }
                Wake::Bridged(Err(failure)) => {
                    self.transfer = None;
                    info!(%failure, "transfer failed");
                    self.media.stop_prompt();
                    self.feed(Event::TransferFailed, now).await
                }
                Wake::Referred(Ok(())) => {
                    self.transfer = None;
                    self.refer_accepted = true;
                    None
                }
                Wake::Referred(Err(failure)) => {
                    self.transfer = None;
                    self.refer_deadline = None;
                    info!(%failure, "refer failed");
                    self.feed(Event::TransferFailed, now).await
                }
                Wake::ReferTimedOut => {
                    self.refer_deadline = None;
                    info!("no final NOTIFY for the REFER in time");
                    self.feed(Event::TransferFailed, now).await
                }
                Wake::Shutdown => {
                    self.hang_up();
                    Some(End::new(
                        self.outcome_or(Outcome::Failed),
                        "daemon shut down",
                    ))
                }
            };
            if let Some(end) = end {
                return end;
            }
        }
    }

    async fn wait(&mut self) -> Wake {
        let timer = self.flow.next_timeout().map(tokio::time::Instant::from_std);
        let refer_deadline = self.refer_deadline;
        tokio::select! {
            state = self.events.recv() => Wake::Dialog(state),
            event = self.media.next_event() => Wake::Media(event),
            _ = sleep_until(timer) => Wake::Timer,
            _ = sleep_until(refer_deadline) => Wake::ReferTimedOut,
            done = poll_transfer(&mut self.transfer) => done,
            _ = self.services.hangup_all.cancelled() => Wake::Shutdown,
        }
    }

    fn outcome_or(&self, otherwise: Outcome) -> Outcome {
        self.flow.journey().outcome.unwrap_or(otherwise)
    }

    /// Feeds the flow and carries out its actions; Some when the call is over.
    async fn feed(&mut self, event: Event, now: Instant) -> Option<End> {
        let actions = self.flow.on(event, now);
        self.sync_record();
        self.apply(actions).await
    }

    fn sync_record(&mut self) {
        let journey = self.flow.journey();
        self.record.digits = journey.digits.clone();
        self.record.path = journey.path.clone();
        self.record.function = journey.function.clone();
        self.record.steps = serde_json::to_value(&journey.steps).unwrap_or_default();
    }

    async fn apply(&mut self, actions: Vec<Action>) -> Option<End> {
        self.sync_record();
        for action in actions {
            match action {
                Action::Play(prompt_id) => match self.services.prompts.get(&prompt_id) {
                    Some(prompt) => self.media.play(prompt),
                    None => {
                        // Validated at load, so this is a bug; skipping keeps the caller moving rather than silent.
                        warn!(prompt = %prompt_id, "prompt not loaded; skipping it");
                        let now = Instant::now();
                        if let Some(end) = Box::pin(self.feed(Event::PromptEnded, now)).await {
                            return Some(end);
                        }
                    }
                },
                Action::StopPrompt => self.media.stop_prompt(),
                Action::Transfer(function_id) => {
                    if !self.start_transfer(&function_id) {
                        // Validation makes this unreachable; if it happens the flow must still move on.
                        let now = Instant::now();
                        if let Some(end) = Box::pin(self.feed(Event::TransferFailed, now)).await {
                            return Some(end);
                        }
                    }
                }
                Action::Hangup => {
                    self.hang_up();
                    let reason = match self.flow.journey().outcome {
                        Some(Outcome::Timeout) => "menu fallback: hang up",
                        Some(Outcome::Failed) => "transfer failed, no fallback left",
                        _ => "menu: hang up",
                    };
                    return Some(End::new(self.outcome_or(Outcome::Abandoned), reason));
                }
            }
        }
        None
    }

    /// Starts the hand-off beside the menu loop; false when the function does not exist.
    fn start_transfer(&mut self, function_id: &str) -> bool {
        let Some(function) = self.services.menu.functions.get(function_id) else {
            warn!(function = function_id, "transfer to an unknown function");
            return false;
        };
        let journey = self.flow.journey();
        let handoff = Handoff {
            caller_number: self.caller_number.clone(),
            call_id: self.record.call_id.clone(),
            function_id: function.id.clone(),
            digits: journey.digits.clone(),
            path: journey.path.clone(),
        };
        self.record.transfer_target = Some(function.target.clone());
        info!(function = %function.id, target = %function.target, mode = ?function.transfer, "handing off");
        match function.transfer {
            TransferMode::Bridge => {
                self.media.play(self.services.ringback.clone());
                let services = self.services.clone();
                let target = function.target.clone();
                let ring_timeout = function.ring_timeout;
                let prefer = self.codec;
                self.transfer = Some(Transfer::Bridge(Box::pin(async move {
                    bridge::dial(bridge::Dial {
                        sip: &services.sip,
                        target: &target,
                        handoff: &handoff,
                        media_ip: services.media_ip,
                        rtp_ports: &services.rtp_ports,
                        prefer,
                        ring_timeout,
                        media_timeout: services.media_timeout,
                        signalling: &services.signalling,
                    })
                    .await
                })));
            }
            TransferMode::Refer => {
                let dialog = self.dialog.clone();
                let target = function.target.clone();
                self.refer_deadline =
                    Some(tokio::time::Instant::now() + function.ring_timeout + REFER_GRACE);
                self.refer_accepted = false;
                self.transfer = Some(Transfer::Refer(Box::pin(async move {
                    refer::send(&dialog, &target, &handoff).await
                })));
            }
        }
        true
    }

    async fn on_dialog(&mut self, state: DialogState) -> Option<End> {
        let now = Instant::now();
        match state {
            DialogState::Terminated(_, reason) => {
                let why = match reason {
                    TerminatedReason::UacBye => "caller hung up",
                    TerminatedReason::UacCancel => "caller cancelled",
                    TerminatedReason::Timeout => "no ACK from the caller",
                    _ => "caller dialog ended",
                };
                if self.refer_deadline.is_some()
                    && self.refer_accepted
                    && matches!(reason, TerminatedReason::UacBye)
                {
                    // Some PBXes end our dialog themselves once the referred call is up, before or
                    // instead of the final NOTIFY: that is success.
                    self.transferred(now);
                    return Some(End::new(
                        Outcome::Transferred,
                        "caller's side ended the dialog after REFER",
                    ));
                }
                self.feed(Event::CallerHungUp, now).await;
                Some(End::new(self.outcome_or(Outcome::Abandoned), why))
            }
            DialogState::Info(_, request, handle) => {
                let digit = message::dtmf_from_info(&request);
                respond(&handle, StatusCode::OK, None).await;
                match digit {
                    Some(digit) => self.feed(Event::Digit(digit), now).await,
                    None => None,
                }
            }
            DialogState::Updated(_, request, handle) => {
                self.caller_reoffer(&request, &handle).await;
                None
            }
            DialogState::Notify(_, request, handle) => {
                respond(&handle, StatusCode::OK, None).await;
                let progress = refer::progress(&request);
                if progress.is_some() && self.refer_deadline.is_some() {
                    // A NOTIFY may overtake the 202 it follows; either way the REFER was taken.
                    self.refer_accepted = true;
                }
                match progress {
                    Some(ReferProgress::Succeeded(code)) if self.refer_deadline.is_some() => {
                        info!(code, "referred call answered");
                        self.refer_deadline = None;
                        self.transferred(now);
                        self.hang_up();
                        Some(End::new(Outcome::Transferred, "referred"))
                    }
                    Some(ReferProgress::Failed(code)) if self.refer_deadline.is_some() => {
                        info!(code, "referred call failed");
                        self.refer_deadline = None;
                        self.feed(Event::TransferFailed, now).await
                    }
                    _ => None,
                }
            }
            DialogState::Confirmed(..) if self.answer_in_ack => {
                self.caller_answer_from_ack();
                None
            }
            other => {
                answer_routine(other).await;
                None
            }
        }
    }

    /// The bridged phase: relay until either side hangs up, then end the other.
    async fn bridged(&mut self, leg: FunctionLeg) -> End {
        let function_dialog = leg.dialog.id();
        let end = self.relay_until_hangup(leg).await;
        self.services.sip.dialogs.remove_dialog(&function_dialog);
        end
    }

    async fn relay_until_hangup(&mut self, mut leg: FunctionLeg) -> End {
        info!(codec_caller = ?self.codec, codec_function = ?leg.negotiated.codec, "bridged");
        self.gauge.enter(Phase::Bridged);
        leg.media.count_into(self.services.metrics.rtp());
        self.media.stop_prompt();
        loop {
            let wake = tokio::select! {
                state = self.events.recv() => BridgeWake::Caller(state),
                state = leg.events.recv() => BridgeWake::Function(state),
                end = crate::media::relay(&mut self.media, &mut leg.media) => BridgeWake::Relay(end),
                _ = self.services.hangup_all.cancelled() => BridgeWake::Shutdown,
            };
            match wake {
                BridgeWake::Caller(None)
                | BridgeWake::Caller(Some(DialogState::Terminated(..))) => {
                    self.bye(&leg.dialog);
                    return End::new(Outcome::Transferred, "caller hung up");
                }
                BridgeWake::Function(None)
                | BridgeWake::Function(Some(DialogState::Terminated(..))) => {
                    self.bye(&self.dialog);
                    return End::new(Outcome::Transferred, "function hung up");
                }
                BridgeWake::Caller(Some(DialogState::Confirmed(..))) if self.answer_in_ack => {
                    self.caller_answer_from_ack()
                }
                BridgeWake::Caller(Some(DialogState::Updated(_, request, handle))) => {
                    self.caller_reoffer(&request, &handle).await
                }
                BridgeWake::Function(Some(DialogState::Updated(_, request, handle))) => {
                    let codec = &mut leg.negotiated.codec;
                    // An answer in the function's ACK is not applied (rare from agent phones): noted.
                    let _ =
                        answer_reoffer(&request, &handle, &mut leg.media, &mut leg.local, codec)
                            .await;
                }
                BridgeWake::Caller(Some(state)) | BridgeWake::Function(Some(state)) => {
                    answer_routine(state).await;
                }
                BridgeWake::Relay(end) => {
                    info!(?end, "media relay ended");
                    self.bye(&leg.dialog);
                    self.bye(&self.dialog);
                    return End::new(Outcome::Transferred, "media stopped");
                }
                BridgeWake::Shutdown => {
                    self.bye(&leg.dialog);
                    self.bye(&self.dialog);
                    return End::new(Outcome::Transferred, "daemon shut down");
                }
            }
        }
    }

    /// The function has the call (bridge answered, or the referred call is up): the flow and the record say so.
    fn transferred(&mut self, now: Instant) {
        // The flow is finished after this and asks for nothing more.
        let _ = self.flow.on(Event::TransferSucceeded, now);
        self.sync_record();
        self.record.transferred_at = Some(OffsetDateTime::now_utc());
    }

    /// A re-INVITE or UPDATE from the caller, in the menu or bridged.
    async fn caller_reoffer(&mut self, request: &Request, handle: &TransactionHandle) {
        self.answer_in_ack = answer_reoffer(
            request,
            handle,
            &mut self.media,
            &mut self.local,
            &mut self.codec,
        )
        .await;
    }

    /// The ACK that completes an offerless re-INVITE from the caller carries the answer.
    fn caller_answer_from_ack(&mut self) {
        self.answer_in_ack = false;
        take_answer_from_ack(&self.dialog, &mut self.media, &mut self.codec);
    }

    fn hang_up(&mut self) {
        self.media.stop_prompt();
        self.bye(&self.dialog);
    }

    /// Sends BYE without waiting for its transaction, which may take 64*T1 when the peer is gone: the call ends
    /// (and its record is written) now. The task is tracked so that shutdown lets it finish.
    fn bye(&self, dialog: &InviteDialog) {
        let dialog = dialog.clone();
        self.services.signalling.spawn(async move {
            if let Err(e) = dialog.bye().await {
                debug!(error = %e, "BYE failed");
            }
        });
    }
}

enum BridgeWake {
    Caller(Option<DialogState>),
    Function(Option<DialogState>),
    Relay(crate::media::RelayEnd),
    Shutdown,
}

/// A re-INVITE or UPDATE on one leg: hold, resume, a new address. Answered from the same session (same
/// o= id, next version), and the leg's media follows what was agreed.
/// Returns true when the re-INVITE had no offer: ours went in the 200 and the answer comes in the ACK.
async fn answer_reoffer(
    request: &Request,
    handle: &TransactionHandle,
    media: &mut MediaSession,
    local: &mut LocalMedia,
    codec: &mut Codec,
) -> bool {
    if request.body.is_empty() {
        let offer = sdp::offer(local, *codec);
        local.session_version += 1;
        respond(handle, StatusCode::OK, Some(offer)).await;
        return true;
    }
    match sdp::answer(&request.body, local) {
        Ok((negotiated, answer)) => {
            local.session_version += 1;
            follow(media, codec, &negotiated);
            info!(direction = ?negotiated.direction, "session updated");
            respond(handle, StatusCode::OK, Some(answer)).await;
        }
        Err(e) => {
            info!(error = %e, "re-offer refused; the session stays as it was");
            respond(handle, StatusCode::NotAcceptableHere, None).await;
        }
    }
    false
}

/// A leg's media follows a renegotiated session: new address, codec and telephone-event type, and hold
/// (the peer not receiving) stops our sending.
fn follow(media: &mut MediaSession, codec: &mut Codec, negotiated: &Negotiated) {
    *codec = negotiated.codec;
    media.update_remote(
        negotiated.remote_rtp,
        negotiated.codec,
        negotiated.telephone_event,
    );
    media.set_sending(negotiated.direction.receives());
}

/// The answer a caller put in the ACK of a re-INVITE without offer (PBXes re-anchor media this way after a
/// transfer or a hold on their side): the media follows it.
fn take_answer_from_ack(dialog: &InviteDialog, media: &mut MediaSession, codec: &mut Codec) {
    let Some(ack) = dialog.last_remote_ack() else {
        return;
    };
    match sdp::parse_answer(&ack.body) {
        Ok(negotiated) => {
            follow(media, codec, &negotiated);
            info!(direction = ?negotiated.direction, "session updated from the ACK's answer");
        }
        Err(e) => info!(error = %e, "no usable answer in the ACK; the session stays as it was"),
    }
}

/// In-dialog requests that need an answer and nothing more: INFO and OPTIONS are fine, REFER, MESSAGE and
/// PUBLISH are not ours to take. Returns the state back when it is something else.
async fn answer_routine(state: DialogState) -> Option<DialogState> {
    match state {
        DialogState::Info(_, _, handle)
        | DialogState::Options(_, _, handle)
        | DialogState::Notify(_, _, handle) => respond(&handle, StatusCode::OK, None).await,
        DialogState::Refer(_, _, handle)
        | DialogState::Message(_, _, handle)
        | DialogState::Publish(_, _, handle) => {
            // RFC 3261 §21.4.6: a 405 lists what is allowed.
            let allow = vec![Header::Allow(crate::sip::ALLOWED_METHODS.into())];
            if let Err(e) = handle
                .respond(StatusCode::MethodNotAllowed, Some(allow), None)
                .await
            {
                debug!(error = %e, "in-dialog 405 failed");
            }
        }
        other => return Some(other),
    }
    None
}

async fn respond(handle: &TransactionHandle, status: StatusCode, sdp_body: Option<String>) {
    let (headers, body) = match sdp_body {
        Some(body) => (
            Some(vec![Header::ContentType("application/sdp".into())]),
            Some(body.into_bytes()),
        ),
        None => (None, None),
    };
    if let Err(e) = handle.respond(status, headers, body).await {
        debug!(error = %e, "in-dialog response failed");
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

async fn poll_transfer(transfer: &mut Option<Transfer>) -> Wake {
    match transfer {
        Some(Transfer::Bridge(dial)) => Wake::Bridged(dial.await.map(Box::new)),
        Some(Transfer::Refer(refer)) => Wake::Referred(refer.await),
        None => std::future::pending().await,
    }
}
