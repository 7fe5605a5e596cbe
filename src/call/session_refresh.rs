//! The caller dialog's session timer (RFC 4028) at work: the rules live in [`crate::sip::session_timer`]; this
//! shell sends our refreshes when we are the refresher and tells the call task when the session has expired.

use std::future::Future;
use std::pin::Pin;
use std::time::Instant;

use rsipstack::dialog::invite_dialog::InviteDialog;
use rsipstack::sip::{Header, Request, StatusCode};
use tracing::{debug, info};

use crate::sip::session_timer::{self, Agreement, Asked, SessionTimer, TimerAction};

type InFlight = Pin<Box<dyn Future<Output = Refreshed> + Send>>;

/// How our refresh went.
enum Refreshed {
    Answered(Agreement),
    /// 408 or 481 (§7.4): the dialog is gone.
    DialogGone,
    /// A glare, a 5xx, no answer: tried again later.
    Failed,
}

pub(super) struct SessionRefresh {
    timer: SessionTimer,
    dialog: InviteDialog,
    /// UPDATE without a body when the caller allows it; else a re-INVITE with our last SDP, unchanged.
    by_update: bool,
    last_sdp: String,
    in_flight: Option<InFlight>,
}

impl SessionRefresh {
    /// The timer the caller's INVITE asked for, if any; `sdp` is our answer in the 200.
    pub(super) fn start(
        invite: &Request,
        dialog: &InviteDialog,
        sdp: &str,
        now: Instant,
    ) -> Option<SessionRefresh> {
        let Asked::Agreed(agreement) = session_timer::asked(invite) else {
            return None;
        };
        info!(
            interval = %crate::menu::format_duration(agreement.interval),
            refresher = %agreement.refresher,
            "session timer on"
        );
        Some(SessionRefresh {
            timer: SessionTimer::new(agreement, now),
            dialog: dialog.clone(),
            by_update: session_timer::allows_update(invite),
            last_sdp: sdp.to_owned(),
            in_flight: None,
        })
    }

    /// Headers for our 2xx to the INVITE or to a refresh.
    pub(super) fn response_headers(&self) -> Vec<Header> {
        self.timer.agreement().response_headers()
    }

    /// Our SDP changed (an answer to a re-offer): a re-INVITE refresh repeats the latest.
    pub(super) fn sdp_sent(&mut self, sdp: &str) {
        sdp.clone_into(&mut self.last_sdp);
    }

    /// A re-INVITE or UPDATE from the caller: a refresh (§9), with whatever interval it asks. One without
    /// Session-Expires turns the timer off, as RFC 4028 reads it (false: drop this timer); one with too small
    /// an interval keeps the one we had.
    pub(super) fn peer_refreshed(&mut self, request: &Request, now: Instant) -> bool {
        match session_timer::asked(request) {
            Asked::Nothing => {
                info!("session timer off: the refresh asked for none");
                false
            }
            Asked::Agreed(agreement) => {
                self.timer.refreshed(agreement, now);
                true
            }
            Asked::TooSmall => {
                self.timer.refreshed(self.timer.agreement(), now);
                true
            }
        }
    }

    /// Sends our refreshes when they are due; returns only when the session has expired (or the caller's
    /// dialog is gone, as a refresh found). Cancel-safe: a refresh under way is kept in `self`.
    pub(super) async fn expired(&mut self) {
        loop {
            let deadline = tokio::time::Instant::from_std(self.timer.next_deadline());
            let finished = match self.in_flight.as_mut() {
                Some(refresh) => tokio::select! {
                    outcome = refresh => Some(outcome),
                    () = tokio::time::sleep_until(deadline) => None,
                },
                None => {
                    tokio::time::sleep_until(deadline).await;
                    None
                }
            };
            let now = Instant::now();
            if let Some(outcome) = finished {
                self.in_flight = None;
                match outcome {
                    Refreshed::Answered(agreement) => self.timer.refreshed(agreement, now),
                    Refreshed::DialogGone => return,
                    Refreshed::Failed => self.timer.refresh_failed(now),
                }
            }
            match self.timer.poll(now) {
                Some(TimerAction::Expired) => return,
                Some(TimerAction::Refresh) => self.in_flight = Some(self.refresh()),
                None => {}
            }
        }
    }

    fn refresh(&self) -> InFlight {
        let dialog = self.dialog.clone();
        let agreement = self.timer.agreement();
        let by_update = self.by_update;
        let sdp = self.last_sdp.clone();
        Box::pin(async move {
            let mut headers = vec![
                agreement.session_expires(),
                Header::Supported("timer".into()),
            ];
            let result = if by_update {
                dialog.update(Some(headers), None).await
            } else {
                headers.push(Header::ContentType("application/sdp".into()));
                dialog.reinvite(Some(headers), Some(sdp.into_bytes())).await
            };
            match result {
                Ok(Some(response))
                    if response.status_code.kind()
                        == rsipstack::sip::StatusCodeKind::Successful =>
                {
                    let answered = session_timer::answered_interval(&response);
                    Refreshed::Answered(Agreement {
                        interval: answered.unwrap_or(agreement.interval),
                        ..agreement
                    })
                }
                Ok(Some(response))
                    if matches!(
                        response.status_code,
                        StatusCode::RequestTimeout | StatusCode::CallTransactionDoesNotExist
                    ) =>
                {
                    info!(status = %response.status_code, "session refresh: the caller's dialog is gone");
                    Refreshed::DialogGone
                }
                Ok(other) => {
                    debug!(status = ?other.map(|r| r.status_code), "session refresh not answered 2xx");
                    Refreshed::Failed
                }
                Err(e) => {
                    debug!(error = %e, "session refresh failed");
                    Refreshed::Failed
                }
            }
        })
    }
}

/// Waits for the session of `refresh` to expire; never, when there is no session timer.
pub(super) async fn expiry(refresh: &mut Option<SessionRefresh>) {
    match refresh {
        Some(refresh) => refresh.expired().await,
        None => std::future::pending().await,
    }
}
