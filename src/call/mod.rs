//! The call task: one tokio task per call, owning the caller's dialog, the media session and the menu flow.
//!
//! It answers the INVITE (SDP offer/answer), feeds the flow with what happens (digits from RFC 4733 or INFO,
//! prompts ending, timers, hang-ups) and carries out what the flow asks (play, stop, transfer, hang up). A
//! transfer runs beside the menu loop, so a caller who hangs up while the function rings is noticed at once.
//! Once bridged, it relays media between the legs until one side hangs up, both fall silent, or the caller's
//! session timer (RFC 4028, [`session_refresh`]) expires. Its contact record is written when the call
//! starts, then as it goes (answered, each menu event, transfer started, bridged), so that a crash leaves how
//! far it got, and complete when it ends, whatever way it ends.

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

mod session_refresh;

use session_refresh::SessionRefresh;

use crate::announce::Board;
use crate::api::Health;
use crate::flow::{Action, Event, Flow, Outcome, StepKind, WallClock};
use crate::media::prompt::{Prompt, PromptCache};
use crate::media::{Codec, MediaEvent, MediaSession, RtpPorts};
use crate::menu::model::{Menu, TransferMode};
use crate::metrics::{CallGauge, Metrics, Phase};
use crate::privacy::CallerNumbers;
use crate::records::{ContactRecord, Progress, Records};
use crate::routing::Handoff;
use crate::routing::bridge::{self, DialFailure, FunctionLeg};
use crate::routing::probe::{CallReport, TargetState};
use crate::routing::queue::QueueHandle;
use crate::routing::refer::{self, ReferProgress};
use crate::sip::sdp::{self, LocalMedia, Negotiated, SdpError};
use crate::sip::{IncomingCall, SipEndpoint, message};

mod queue;

/// The shared services a call task is given at spawn. Cloned per call with the menu then serving (see
/// [`crate::reload`]), so a reload affects new calls only.
#[derive(Clone)]
pub struct CallServices {
    /// The menu version this call runs from start to end (a reload affects new calls only).
    pub menu: Arc<Menu>,
    /// The prompts decoded with that menu: a prompt file replaced on disk reaches new calls only.
    pub prompts: Arc<PromptCache>,
    /// The announcements this call plays are those on the board when it is answered.
    pub announcements: Arc<Board>,
    /// `menu`'s content hash, for the record.
    pub menu_version: Arc<str>,
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
    /// The functions' queues (`transfer: queue`).
    pub queues: QueueHandle,
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
        record.menu_version = Some(services.menu_version.to_string());
        // Queued for the writer task: a slow disk must not delay the caller's 200 OK.
        services.records.call_started(&record);
        let caller_dialog = call.dialog.clone();
        let end = answer_and_run(call, &services, &mut record, &mut gauge).await;
        // The dialog layer keeps every dialog until told: forgetting this would leak one per call.
        services.sip.dialogs.remove_dialog(&caller_dialog.id());
        record.finish(end.outcome, end.at, end.reason);
        services
            .metrics
            .call_ended(record.function.as_deref(), end.outcome);
        info!(outcome = %end.outcome, digits = %record.digits, function = record.function.as_deref().map(display),
              open_dialogs = services.sip.dialogs.len(),
              "call ended: {}", record.end_reason.as_deref().unwrap_or(""));
        services.records.call_ended(record);
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
    // None: a late offer (RFC 3261 §13.2.1; PBX trunks in "delayed offer" send one): we offer in the 200 and
    // the caller answers in its ACK.
    let offer = match message::session_offer(&request) {
        Ok(offer) => offer,
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
    let (negotiated, answer) = match offer.as_deref().map(|offer| sdp::answer(offer, &local)) {
        Some(Ok((negotiated, answer))) => (Some(negotiated), answer),
        Some(Err(e)) => {
            let status = match e {
                SdpError::Malformed(_) => StatusCode::BadRequest,
                SdpError::NoAudio | SdpError::NoCommonCodec { .. } => StatusCode::NotAcceptableHere,
            };
            info!(error = %e, "offer refused");
            reject(&dialog, status.clone(), &e.to_string());
            return End::new(Outcome::Rejected, format!("{} {e}", u16::from(status)));
        }
        None => (None, sdp::offer(&local, Codec::Pcmu)),
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
    let session = SessionRefresh::start(&request, &dialog, &answer, Instant::now());
    let mut headers = vec![Header::ContentType("application/sdp".into())];
    headers.extend(session.iter().flat_map(SessionRefresh::response_headers));
    if let Err(e) = dialog.accept(Some(headers), Some(answer.into_bytes())) {
        if matches!(dialog.state(), DialogState::Terminated(..)) {
            return End::new(Outcome::Abandoned, "caller cancelled before answer");
        }
        warn!(error = %e, "could not answer the call");
        return End::new(Outcome::Failed, format!("answer failed: {e}"));
    }
    record.answered_at = Some(OffsetDateTime::now_utc());
    services.records.progress(Progress {
        answered_at: record.answered_at,
        ..Progress::of(record)
    });
    let negotiated = match negotiated {
        Some(negotiated) => negotiated,
        None => match late_answer(&dialog, &mut events).await {
            Ok(negotiated) => negotiated,
            Err(end) => {
                if end.outcome == Outcome::Failed {
                    // RFC 3261 §13.3.1.4: a session whose answer is missing or unusable is ended with BYE.
                    if let Err(e) = dialog.bye().await {
                        debug!(error = %e, "BYE failed");
                    }
                }
                return end;
            }
        },
    };
    let now = Instant::now();
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
    media.set_direction(
        negotiated.direction.receives(),
        negotiated.direction.sends(),
    );
    local.session_version += 1;
    // Opening hours are judged by the wall clock at the answer, carried forward by the monotonic clock.
    let mut flow = Flow::new(
        services.menu.clone(),
        WallClock::new(jiff::Timestamp::now(), now),
    );
    flow.announce(services.announcements.for_call(OffsetDateTime::now_utc()));
    let mut call = Call {
        services: services.clone(),
        dialog,
        events,
        media,
        local,
        codec: negotiated.codec,
        flow,
        transfer: None,
        refer_deadline: None,
        refer_accepted: false,
        answer_in_ack: false,
        caller_number: message::caller_number(&request),
        asserted_identity: message::asserted_identity_headers(&request),
        transfer_failures: Vec::new(),
        session,
        record,
        gauge,
    };
    let mut end = call.run().await;
    if !call.transfer_failures.is_empty() {
        end.reason = format!(
            "{}; failed hand-offs: {}",
            end.reason,
            call.transfer_failures.join(", ")
        );
    }
    call.end_in_queue(&mut end);
    end
}

/// How long a late-offer call waits for the ACK with the caller's answer (64 × T1: the 200 is retransmitted
/// until then, RFC 3261 §13.3.1.4).
const ACK_WAIT: Duration = Duration::from_secs(32);

/// The caller's answer to the offer in our 200 (a late-offer call), read from its ACK. The call's end when there
/// is none: `Failed` when the ACK came without a usable answer or never came, `Abandoned` when the caller hung
/// up first.
async fn late_answer(
    dialog: &InviteDialog,
    events: &mut DialogStateReceiver,
) -> Result<Negotiated, End> {
    let acked = async {
        loop {
            match events.recv().await {
                Some(DialogState::Confirmed(..)) => return Ok(()),
                Some(DialogState::Terminated(_, TerminatedReason::UacBye)) => {
                    return Err(End::new(
                        Outcome::Abandoned,
                        "caller hung up before its ACK",
                    ));
                }
                Some(DialogState::Terminated(_, reason)) => {
                    return Err(End::new(
                        Outcome::Failed,
                        format!("no ACK with an SDP answer: dialog ended ({reason:?})"),
                    ));
                }
                None => {
                    return Err(End::new(
                        Outcome::Failed,
                        "caller dialog gone before its ACK",
                    ));
                }
                // Nothing else belongs before the ACK; what comes is answered as it would be later.
                Some(other) => {
                    answer_routine(other).await;
                }
            }
        }
    };
    match tokio::time::timeout(ACK_WAIT, acked).await {
        Ok(Ok(())) => {}
        Ok(Err(end)) => return Err(end),
        Err(_) => {
            return Err(End::new(
                Outcome::Failed,
                "no ACK for the 200 OK with our offer",
            ));
        }
    }
    let body = dialog
        .last_remote_ack()
        .map(|ack| ack.body)
        .unwrap_or_default();
    sdp::parse_answer(&body).map_err(|e| {
        info!(error = %e, "the ACK carries no usable answer to our offer: ending the call");
        End::new(
            Outcome::Failed,
            format!("late offer: the ACK carries no usable SDP answer ({e})"),
        )
    })
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
    Queue(Box<queue::QueueWait>),
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
    SessionExpired,
    Queue(queue::QueueWake),
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
    /// The caller's P-Asserted-Identity and Privacy headers, for the bridged INVITE.
    asserted_identity: Vec<Header>,
    /// Why each hand-off that failed did (`it: no response from target within 4s`), for the record.
    transfer_failures: Vec<String>,
    /// The caller's session timer, when its INVITE asked for one.
    session: Option<SessionRefresh>,
    record: &'r mut ContactRecord,
    gauge: &'r mut CallGauge,
}

/// How long a REFER may take, beyond the function's ring timeout, before we take it as failed.
const REFER_GRACE: Duration = Duration::from_secs(8);
/// Longest wait for an in-dialog answer to go out before a BYE that must follow it.
const ANSWER_SENT_WAIT: Duration = Duration::from_secs(2);

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
                Wake::Dialog(None) => Some(self.caller_gone(now).await),
                Wake::Dialog(Some(state)) => self.on_dialog(state).await,
                Wake::Media(MediaEvent::PromptEnded) => {
                    if matches!(self.transfer, Some(Transfer::Bridge(_))) {
                        // The function is ringing: keep the ringback going.
                        self.media.play(self.services.ringback.clone());
                        None
                    } else if self.queue_prompt_ended() {
                        None
                    } else {
                        self.feed(Event::PromptEnded, now).await
                    }
                }
                Wake::Media(MediaEvent::Digit(digit)) => self.feed(Event::Digit(digit), now).await,
                // Silence alone does not end the call before the menu has run its course (see silence_is_death).
                Wake::Media(MediaEvent::MediaTimeout) if !self.silence_is_death() => None,
                Wake::Media(MediaEvent::MediaTimeout) => {
                    self.feed(Event::CallerHungUp, now).await;
                    self.hang_up();
                    Some(End::new(
                        self.outcome_or(Outcome::Abandoned),
                        "no RTP, RTCP or request from the caller",
                    ))
                }
                Wake::SessionExpired => {
                    self.feed(Event::CallerHungUp, now).await;
                    self.hang_up();
                    Some(End::new(
                        self.outcome_or(Outcome::Abandoned),
                        "session timer expired",
                    ))
                }
                Wake::Timer => self.feed(Event::Timeout, now).await,
                Wake::Bridged(Ok(leg)) => {
                    self.transfer = None;
                    self.target_heard();
                    self.transferred(now);
                    Some(self.bridged(*leg).await)
                }
                Wake::Bridged(Err(failure)) => {
                    self.transfer = None;
                    if failure.target_responded() {
                        self.target_heard();
                    } else if failure.target_silent() {
                        self.report_target(CallReport::Unanswered(failure.to_string()));
                    }
                    self.media.stop_prompt();
                    self.transfer_failed(failure.to_string(), now).await
                }
                Wake::Referred(Ok(())) => {
                    self.transfer = None;
                    self.refer_accepted = true;
                    None
                }
                Wake::Referred(Err(failure)) => {
                    self.transfer = None;
                    self.refer_deadline = None;
                    self.transfer_failed(failure.to_string(), now).await
                }
                Wake::ReferTimedOut => {
                    self.refer_deadline = None;
                    self.transfer_failed("no final NOTIFY for the REFER in time".into(), now)
                        .await
                }
                Wake::Queue(wake) => self.on_queue(wake, now).await,
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
            () = session_refresh::expiry(&mut self.session) => Wake::SessionExpired,
            done = poll_transfer(&mut self.transfer) => done,
            _ = self.services.hangup_all.cancelled() => Wake::Shutdown,
        }
    }

    /// In the menu a caller who sends nothing may still be listening: the menu's own timeouts and fallback take
    /// them on (a hand-off, or a hang-up). Silence ends the call only once the menu's fallback has run and no
    /// hand-off is under way, so a fallback that leads back into a menu cannot keep a dead caller forever: the
    /// bound is the menu's time to its fallback plus one media timeout.
    fn silence_is_death(&self) -> bool {
        let handing_off = self.transfer.is_some() || self.refer_deadline.is_some();
        let fell_back = self
            .flow
            .journey()
            .steps
            .iter()
            .any(|step| matches!(step.kind, StepKind::Fallback));
        !handing_off && fell_back
    }

    fn outcome_or(&self, otherwise: Outcome) -> Outcome {
        self.flow.journey().outcome.unwrap_or(otherwise)
    }

    /// Feeds the flow and carries out its actions; Some when the call is over.
    async fn feed(&mut self, event: Event, now: Instant) -> Option<End> {
        if let Event::Digit(digit) = event {
            // Before the flow moves on, so `menu` is the one the digit was pressed in, not the one it leads to.
            info!(%digit, menu = self.flow.current_menu().map(display), "digit pressed");
        }
        let actions = self.flow.on(event, now);
        self.sync_record();
        self.apply(actions).await
    }

    /// Brings the record up to the flow's journey and queues what changed: only the new steps are serialised.
    fn sync_record(&mut self) {
        let journey = self.flow.journey();
        let new_steps = journey
            .steps
            .get(self.record.step_count()..)
            .unwrap_or_default()
            .iter()
            .filter_map(|step| serde_json::to_value(step).ok())
            .collect();
        let function = journey.function.as_ref();
        if let Some(progress) =
            self.record
                .advance(&journey.digits, &journey.path, function, new_steps)
        {
            self.services.records.progress(progress);
        }
        if let Some(progress) = self
            .record
            .announced(&journey.announcements, journey.language.as_deref())
        {
            self.services.records.progress(progress);
        }
    }

    async fn apply(&mut self, actions: Vec<Action>) -> Option<End> {
        self.sync_record();
        for action in actions {
            match action {
                Action::Play(prompt_id) => match self
                    .services
                    .prompts
                    .get_in(self.flow.language(), &prompt_id)
                {
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
                    if let Err(why) = self.start_transfer(&function_id) {
                        let now = Instant::now();
                        if let Some(end) = Box::pin(self.transfer_failed(why, now)).await {
                            return Some(end);
                        }
                    }
                }
                Action::Hangup => {
                    self.hang_up();
                    let reason = match self.flow.journey().outcome {
                        Some(Outcome::Timeout) => "menu fallback: hang up",
                        Some(Outcome::Closed) => "closed: hang up",
                        Some(Outcome::Failed) => "transfer failed, no fallback left",
                        _ => "menu: hang up",
                    };
                    return Some(End::new(self.outcome_or(Outcome::Abandoned), reason));
                }
            }
        }
        None
    }

    /// Starts the hand-off beside the menu loop; Err (why) when it cannot start: the function does not exist
    /// (validation makes that unreachable) or its target is down (silent to a call or to the OPTIONS probes).
    fn start_transfer(&mut self, function_id: &str) -> Result<(), String> {
        let Some(function) = self.services.menu.functions.get(function_id) else {
            warn!(function = %function_id, "transfer to an unknown function");
            return Err(format!("{function_id}: no such function"));
        };
        if self.services.health.functions.state(function_id) == TargetState::Down {
            self.record.transfer_target = Some(function.target.clone());
            return Err("target down (no response to a call or OPTIONS probe)".into());
        }
        let journey = self.flow.journey();
        let handoff = Handoff {
            caller_number: self.caller_number.clone(),
            call_id: self.record.call_id.clone(),
            function_id: function.id.clone(),
            digits: journey.digits.clone(),
            path: journey.path.clone(),
            asserted_identity: self.asserted_identity.clone(),
        };
        info!(function = %function.id, target = %function.target, mode = %function.transfer, "handing off");
        if function.transfer == TransferMode::Queue {
            let function = function.clone();
            return if self.enter_queue(&function, handoff) {
                Ok(())
            } else {
                Err(format!(
                    "{}: the queue could not start (hold music not loaded)",
                    function.id
                ))
            };
        }
        self.record.transfer_target = Some(function.target.clone());
        self.services.records.progress(Progress {
            transfer_target: self.record.transfer_target.clone(),
            ..Progress::of(self.record)
        });
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
            // Handled above: a queue has no target to dial.
            TransferMode::Queue => {
                return Err(format!("{}: a queue has no target to dial", function.id));
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
        Ok(())
    }

    /// The target of the hand-off under way answered our INVITE: the OPTIONS prober counts that as a probe.
    fn target_heard(&self) {
        self.report_target(CallReport::Heard);
    }

    /// Tells the OPTIONS prober what the hand-off learnt about its target (a silent one is down at once).
    fn report_target(&self, report: CallReport) {
        if let Some(function) = &self.flow.journey().function {
            self.services.health.functions.report(function, report);
        }
    }

    /// The hand-off under way failed: logged and kept for the record with its reason, and the flow moves on
    /// to the function's failure path.
    async fn transfer_failed(&mut self, why: String, now: Instant) -> Option<End> {
        let function = self.flow.journey().function.clone().unwrap_or_default();
        info!(function = %function, reason = %why, "transfer failed");
        self.transfer_failures.push(format!("{function}: {why}"));
        self.feed(Event::TransferFailed, now).await
    }

    async fn on_dialog(&mut self, state: DialogState) -> Option<End> {
        let now = Instant::now();
        // A request in the dialog (re-INVITE, UPDATE, INFO, OPTIONS) shows the caller is there.
        self.media.note_life(now);
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
                // The digit may lead to a REFER or a BYE in this dialog; a strict caller drops the dialog on
                // either overtaking our 200 to its INFO.
                let later = self.until_answer_sent().await;
                let mut end = match digit {
                    Some(digit) => self.feed(Event::Digit(digit), now).await,
                    None => None,
                };
                for state in later {
                    if end.is_some() {
                        break;
                    }
                    end = match state {
                        Some(state) => Box::pin(self.on_dialog(state)).await,
                        None => Some(self.caller_gone(now).await),
                    };
                }
                end
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
                        // A strict transferee drops the dialog on a BYE that overtakes our 200 to its NOTIFY.
                        // Whatever came meanwhile, the call is over: the BYE goes out (to a gone dialog, harmless).
                        let _ = self.until_answer_sent().await;
                        self.hang_up();
                        Some(End::new(Outcome::Transferred, "referred"))
                    }
                    Some(ReferProgress::Failed(code)) if self.refer_deadline.is_some() => {
                        self.refer_deadline = None;
                        self.transfer_failed(format!("referred call failed {code}"), now)
                            .await
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
        info!(codec_caller = %self.codec, codec_function = %leg.negotiated.codec, "bridged");
        self.gauge.enter(Phase::Bridged);
        leg.media.count_into(self.services.metrics.rtp());
        self.media.stop_prompt();
        loop {
            let wake = tokio::select! {
                state = self.events.recv() => BridgeWake::Caller(state),
                state = leg.events.recv() => BridgeWake::Function(state),
                end = crate::media::relay(&mut self.media, &mut leg.media) => BridgeWake::Relay(end),
                () = session_refresh::expiry(&mut self.session) => BridgeWake::SessionExpired,
                _ = self.services.hangup_all.cancelled() => BridgeWake::Shutdown,
            };
            // A request in a leg's dialog is that leg's life, as its media would be.
            match &wake {
                BridgeWake::Caller(Some(_)) => self.media.note_life(Instant::now()),
                BridgeWake::Function(Some(_)) => leg.media.note_life(Instant::now()),
                _ => {}
            }
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
                    let local = &mut leg.local;
                    let _ = answer_reoffer(&request, &handle, &mut leg.media, local, codec, vec![])
                        .await;
                }
                BridgeWake::Caller(Some(state)) | BridgeWake::Function(Some(state)) => {
                    answer_routine(state).await;
                }
                BridgeWake::Relay(end) => {
                    info!(%end, "media relay ended");
                    self.bye(&leg.dialog);
                    self.bye(&self.dialog);
                    return End::new(Outcome::Transferred, "media stopped on both legs");
                }
                BridgeWake::SessionExpired => {
                    info!("the caller's session timer expired");
                    self.bye(&leg.dialog);
                    self.bye(&self.dialog);
                    return End::new(Outcome::Transferred, "session timer expired");
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
        self.services.records.progress(Progress {
            transferred_at: self.record.transferred_at,
            // Set when an agent answered from a queue: the statistics count the call as answered from now.
            answered_by: self.record.answered_by.clone(),
            queue_wait_ms: self.record.queue_wait_ms,
            ..Progress::of(self.record)
        });
    }

    /// A re-INVITE or UPDATE from the caller, in the menu or bridged; also a session refresh.
    async fn caller_reoffer(&mut self, request: &Request, handle: &TransactionHandle) {
        let mut timer_headers = Vec::new();
        if let Some(session) = self.session.as_mut() {
            if session.peer_refreshed(request, Instant::now()) {
                timer_headers = session.response_headers();
            } else {
                self.session = None;
            }
        }
        let reoffer = answer_reoffer(
            request,
            handle,
            &mut self.media,
            &mut self.local,
            &mut self.codec,
            timer_headers,
        )
        .await;
        self.answer_in_ack = reoffer.answer_in_ack;
        if let (Some(session), Some(sdp)) = (self.session.as_mut(), reoffer.sdp_sent) {
            session.sdp_sent(&sdp);
        }
    }

    /// The ACK that completes an offerless re-INVITE from the caller carries the answer.
    fn caller_answer_from_ack(&mut self) {
        self.answer_in_ack = false;
        take_answer_from_ack(&self.dialog, &mut self.media, &mut self.codec);
    }

    /// Waits until our answer to the in-dialog request just answered is on the wire: `respond` only queues it
    /// for the request's transaction, which sends it and then reports the dialog Confirmed again; bounded, in
    /// case the report never comes. Returns, in order, what came meanwhile (requests, the dialog's end; None
    /// when its events closed), for the caller to handle next.
    async fn until_answer_sent(&mut self) -> Vec<Option<DialogState>> {
        let mut later = Vec::new();
        let wait = async {
            loop {
                match self.events.recv().await {
                    Some(DialogState::Confirmed(..)) => return,
                    None => {
                        later.push(None);
                        return;
                    }
                    Some(ended @ DialogState::Terminated(..)) => {
                        later.push(Some(ended));
                        return;
                    }
                    // Another INFO carries a digit, a NOTIFY the REFER's progress: all are handled in turn.
                    Some(other) => later.push(Some(other)),
                }
            }
        };
        if tokio::time::timeout(ANSWER_SENT_WAIT, wait).await.is_err() {
            debug!("no report that the answer went out; going on");
        }
        later
    }

    /// The caller's dialog is gone without a BYE we saw (its events closed).
    async fn caller_gone(&mut self, now: Instant) -> End {
        self.feed(Event::CallerHungUp, now).await;
        End::new(self.outcome_or(Outcome::Abandoned), "caller dialog gone")
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
    SessionExpired,
    Shutdown,
}

/// What answering a re-offer did.
struct Reoffer {
    /// The re-INVITE had no offer: ours went in the 200 and the answer comes in the ACK.
    answer_in_ack: bool,
    /// The SDP our 2xx carried, if any.
    sdp_sent: Option<String>,
}

/// A re-INVITE or UPDATE on one leg: hold, resume, a new address, or only a session refresh (an UPDATE
/// without a body). Answered from the same session (same o= id, next version), with `extra` headers on a
/// 2xx, and the leg's media follows what was agreed.
async fn answer_reoffer(
    request: &Request,
    handle: &TransactionHandle,
    media: &mut MediaSession,
    local: &mut LocalMedia,
    codec: &mut Codec,
    extra: Vec<Header>,
) -> Reoffer {
    let mut reoffer = Reoffer {
        answer_in_ack: false,
        sdp_sent: None,
    };
    if request.body.is_empty() && request.method == rsipstack::sip::Method::Update {
        respond_with(handle, StatusCode::OK, extra, None).await;
        return reoffer;
    }
    if request.body.is_empty() {
        let offer = sdp::offer(local, *codec);
        local.session_version += 1;
        respond_with(handle, StatusCode::OK, extra, Some(offer.clone())).await;
        reoffer.answer_in_ack = true;
        reoffer.sdp_sent = Some(offer);
        return reoffer;
    }
    match sdp::answer(&request.body, local) {
        Ok((negotiated, answer)) => {
            local.session_version += 1;
            follow(media, codec, &negotiated);
            info!(direction = %negotiated.direction, "session updated");
            respond_with(handle, StatusCode::OK, extra, Some(answer.clone())).await;
            reoffer.sdp_sent = Some(answer);
        }
        Err(e) => {
            info!(error = %e, "re-offer refused; the session stays as it was");
            respond(handle, StatusCode::NotAcceptableHere, None).await;
        }
    }
    reoffer
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
    media.set_direction(
        negotiated.direction.receives(),
        negotiated.direction.sends(),
    );
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
            info!(direction = %negotiated.direction, "session updated from the ACK's answer");
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
    respond_with(handle, status, Vec::new(), sdp_body).await;
}

async fn respond_with(
    handle: &TransactionHandle,
    status: StatusCode,
    mut headers: Vec<Header>,
    sdp_body: Option<String>,
) {
    if sdp_body.is_some() {
        headers.push(Header::ContentType("application/sdp".into()));
    }
    let headers = (!headers.is_empty()).then_some(headers);
    let body = sdp_body.map(String::into_bytes);
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
        Some(Transfer::Queue(wait)) => Wake::Queue(wait.next().await),
        None => std::future::pending().await,
    }
}
