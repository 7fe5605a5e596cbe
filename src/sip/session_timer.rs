//! SIP session timers (RFC 4028) for the caller's dialog, where knappval is the UAS: reading what the
//! INVITE (or a refresh) asks, the headers our 2xx carries, and a sans-IO timer that says when to send a
//! refresh ourselves and when the session has expired.
//!
//! Owns only the rules. The call task sends the refresh (UPDATE, or re-INVITE when the peer does not allow
//! UPDATE) and the BYE; the dispatcher answers 422 to an interval below [`MIN_SE`]. The function's leg, where
//! knappval is the UAC, asks for no session timer.

use std::time::{Duration, Instant};

use rsipstack::sip::{Header, Headers, Request, Response};

/// The smallest session interval we accept (RFC 4028 §4: 90 s is the protocol's own floor).
pub const MIN_SE: Duration = Duration::from_secs(90);
/// A session interval above a day is taken as a day: the timer only has to find dialogs that are dead.
const MAX_SE: Duration = Duration::from_secs(86_400);
/// §10: the side that does not refresh ends the session this much before it expires, at most.
const EXPIRY_MARGIN: Duration = Duration::from_secs(32);

/// Which side of the dialog sends the refreshes, in RFC 4028's own terms (we are the UAS).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refresher {
    /// The caller refreshes; we end the session if it stops.
    Uac,
    /// We refresh, at half the interval.
    Uas,
}

/// As RFC 4028 writes it (`uac`, `uas`): in the `refresher` parameter and in logs.
impl std::fmt::Display for Refresher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.param())
    }
}

impl Refresher {
    fn param(self) -> &'static str {
        match self {
            Refresher::Uac => "uac",
            Refresher::Uas => "uas",
        }
    }
}

/// What the peer's request asks of the session timer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Asked {
    /// No Session-Expires: no session timer.
    Nothing,
    /// An interval we take, and who refreshes.
    Agreed(Agreement),
    /// The interval is below [`MIN_SE`]: answer 422 with `Min-SE`.
    TooSmall,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Agreement {
    pub interval: Duration,
    pub refresher: Refresher,
    /// The peer listed `timer` in Supported: then our 2xx says `Require: timer` (§9).
    pub peer_supports: bool,
}

impl Agreement {
    /// Session-Expires (and Require: timer when the peer supports it) for the 2xx (§9).
    pub fn response_headers(&self) -> Vec<Header> {
        let mut headers = vec![self.session_expires()];
        if self.peer_supports {
            headers.push(Header::Require("timer".into()));
        }
        headers
    }

    /// Session-Expires as we write it, in our responses and our own refreshes.
    pub fn session_expires(&self) -> Header {
        Header::SessionExpires(
            format!(
                "{};refresher={}",
                self.interval.as_secs(),
                self.refresher.param()
            )
            .into(),
        )
    }
}

/// Reads Session-Expires, Min-SE and Supported from an INVITE, re-INVITE or UPDATE (§9). Unreadable values
/// are taken as absent: a header we cannot read must not cost the caller the call.
pub fn asked(request: &Request) -> Asked {
    let Some(value) = header(&request.headers, "session-expires") else {
        return Asked::Nothing;
    };
    let Some(seconds) = leading_seconds(value) else {
        return Asked::Nothing;
    };
    let refresher = value.split(';').skip(1).find_map(|param| {
        let (name, value) = param.split_once('=')?;
        if !name.trim().eq_ignore_ascii_case("refresher") {
            return None;
        }
        match value.trim().to_ascii_lowercase().as_str() {
            "uac" => Some(Refresher::Uac),
            "uas" => Some(Refresher::Uas),
            _ => None,
        }
    });
    let interval = Duration::from_secs(seconds);
    if interval < MIN_SE {
        return Asked::TooSmall;
    }
    // The peer's own floor binds our answer too (§9); an interval below it is the peer's mistake.
    let peer_min = header(&request.headers, "min-se")
        .and_then(leading_seconds)
        .map(Duration::from_secs)
        .unwrap_or(MIN_SE);
    let interval = interval.max(peer_min).min(MAX_SE);
    let peer_supports =
        header_tokens(request, "supported").any(|t| t.eq_ignore_ascii_case("timer"));
    // A peer that does not support timers cannot be asked to refresh; one that does refreshes unless it
    // said otherwise, which keeps the re-INVITEs on the side that wanted them.
    let refresher = match (peer_supports, refresher) {
        (false, _) => Refresher::Uas,
        (true, Some(chosen)) => chosen,
        (true, None) => Refresher::Uac,
    };
    Asked::Agreed(Agreement {
        interval,
        refresher,
        peer_supports,
    })
}

/// Whether the peer's Allow lists UPDATE: then our refreshes are UPDATEs without a body (§7.4 prefers it).
pub fn allows_update(request: &Request) -> bool {
    header_tokens(request, "allow").any(|t| t.eq_ignore_ascii_case("UPDATE"))
}

/// The interval a 2xx to our refresh names (§7.2 lets the answerer move it), if it is one we accept.
pub fn answered_interval(response: &Response) -> Option<Duration> {
    header(&response.headers, "session-expires")
        .and_then(leading_seconds)
        .map(Duration::from_secs)
        .filter(|interval| *interval >= MIN_SE)
        .map(|interval| interval.min(MAX_SE))
}

/// `90;refresher=uac` -> 90.
fn leading_seconds(value: &str) -> Option<u64> {
    value.split(';').next()?.trim().parse().ok()
}

fn header<'h>(headers: &'h Headers, name: &str) -> Option<&'h str> {
    headers
        .iter()
        .find(|h| h.name().eq_ignore_ascii_case(name))
        .map(Header::value)
}

fn header_tokens<'r>(request: &'r Request, name: &'r str) -> impl Iterator<Item = &'r str> {
    request
        .headers
        .iter()
        .filter(move |h| h.name().eq_ignore_ascii_case(name))
        .flat_map(|h| h.value().split(','))
        .map(str::trim)
}

/// What the timer asks of the call task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimerAction {
    /// Send a refresh now (we are the refresher); report its 2xx with [`SessionTimer::refreshed`].
    Refresh,
    /// No refresh came in time: end the session with BYE.
    Expired,
}

/// The running session timer of one dialog.
#[derive(Debug, Clone)]
pub struct SessionTimer {
    agreement: Agreement,
    refreshed_at: Instant,
    /// Our refresh is out: no second one until it is answered, and the expiry still stands.
    refreshing: bool,
    /// Our last refresh failed (a glare, a 5xx): the next try, still before the expiry.
    retry_at: Option<Instant>,
}

impl SessionTimer {
    pub fn new(agreement: Agreement, now: Instant) -> SessionTimer {
        SessionTimer {
            agreement,
            refreshed_at: now,
            refreshing: false,
            retry_at: None,
        }
    }

    pub fn agreement(&self) -> Agreement {
        self.agreement
    }

    /// A successful refresh (the peer's, answered 2xx by us, or ours, answered 2xx by the peer), with the
    /// agreement it carried.
    pub fn refreshed(&mut self, agreement: Agreement, now: Instant) {
        self.agreement = agreement;
        self.refreshed_at = now;
        self.refreshing = false;
        self.retry_at = None;
    }

    /// Our refresh got no 2xx: tried again an eighth of the interval later; the session still expires
    /// when it would have.
    pub fn refresh_failed(&mut self, now: Instant) {
        self.refreshing = false;
        self.retry_at = Some(now + self.agreement.interval / 8);
    }

    /// When [`poll`](SessionTimer::poll) next has something to say.
    pub fn next_deadline(&self) -> Instant {
        match self.agreement.refresher {
            Refresher::Uas if !self.refreshing => self
                .retry_at
                .unwrap_or(self.refreshed_at + self.agreement.interval / 2)
                .min(self.expiry()),
            _ => self.expiry(),
        }
    }

    pub fn poll(&mut self, now: Instant) -> Option<TimerAction> {
        if now >= self.expiry() {
            return Some(TimerAction::Expired);
        }
        if now >= self.next_deadline() && self.agreement.refresher == Refresher::Uas {
            self.refreshing = true;
            return Some(TimerAction::Refresh);
        }
        None
    }

    /// §10: BYE slightly before the session expires, by the lesser of 32 s and a third of the interval.
    /// Our own refreshes get the same margin: a refresh still unanswered by then has failed.
    fn expiry(&self) -> Instant {
        let interval = self.agreement.interval;
        self.refreshed_at + interval - EXPIRY_MARGIN.min(interval / 3)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(headers: &str) -> Request {
        let text = format!(
            "INVITE sip:menu@127.0.0.1 SIP/2.0\r\n\
             Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK1\r\n\
             From: <sip:c@127.0.0.1>;tag=1\r\n\
             To: <sip:menu@127.0.0.1>\r\n\
             Call-ID: st@test\r\n\
             CSeq: 1 INVITE\r\n\
             {headers}\
             Content-Length: 0\r\n\r\n"
        );
        Request::try_from(text.as_bytes()).expect("test request parses")
    }

    fn agreed(headers: &str) -> Agreement {
        match asked(&request(headers)) {
            Asked::Agreed(agreement) => agreement,
            other => panic!("{headers:?} gave {other:?}"),
        }
    }

    #[test]
    fn no_session_expires_means_no_timer() {
        assert_eq!(asked(&request("Supported: timer\r\n")), Asked::Nothing);
        assert_eq!(asked(&request("Session-Expires: soon\r\n")), Asked::Nothing);
    }

    #[test]
    fn an_interval_below_90_s_is_too_small() {
        assert_eq!(
            asked(&request("Session-Expires: 60\r\nSupported: timer\r\n")),
            Asked::TooSmall
        );
        assert_eq!(agreed("Session-Expires: 90\r\n").interval, MIN_SE);
    }

    #[test]
    fn the_uac_refreshes_when_it_supports_timers_and_did_not_choose() {
        let a = agreed("Session-Expires: 1800\r\nSupported: 100rel, timer\r\n");
        assert_eq!(
            (a.interval, a.refresher, a.peer_supports),
            (Duration::from_secs(1800), Refresher::Uac, true)
        );
        let headers: Vec<String> = a.response_headers().iter().map(|h| h.to_string()).collect();
        assert_eq!(
            headers,
            ["Session-Expires: 1800;refresher=uac", "Require: timer"]
        );
    }

    #[test]
    fn the_peer_may_make_us_refresher_and_a_peer_without_timer_support_must() {
        let asked_us = agreed("x: 600;refresher=uas\r\nk: timer\r\nMin-SE: 120\r\n");
        assert_eq!(asked_us.refresher, Refresher::Uas);
        assert_eq!(asked_us.interval, Duration::from_secs(600));
        let unaware = agreed("Session-Expires: 600;refresher=uac\r\n");
        assert_eq!(unaware.refresher, Refresher::Uas);
        let headers: Vec<String> = unaware
            .response_headers()
            .iter()
            .map(|h| h.to_string())
            .collect();
        assert_eq!(
            headers,
            ["Session-Expires: 600;refresher=uas"],
            "no Require: timer for a peer that does not support it"
        );
        // The peer's own Min-SE lifts an interval below it.
        assert_eq!(
            agreed("Session-Expires: 100\r\nMin-SE: 300\r\n").interval,
            Duration::from_secs(300)
        );
    }

    #[test]
    fn allow_lists_update() {
        assert!(allows_update(&request(
            "Allow: INVITE, ACK, BYE, update\r\n"
        )));
        assert!(!allows_update(&request("Allow: INVITE, ACK, BYE\r\n")));
    }

    #[test]
    fn when_the_peer_refreshes_we_only_watch_for_expiry() {
        let t0 = Instant::now();
        let mut timer =
            SessionTimer::new(agreed("Session-Expires: 90\r\nSupported: timer\r\n"), t0);
        // 90 s: the BYE goes 30 s (a third) before the end.
        assert_eq!(timer.next_deadline(), t0 + Duration::from_secs(60));
        assert_eq!(timer.poll(t0 + Duration::from_secs(59)), None);
        let t1 = t0 + Duration::from_secs(50);
        timer.refreshed(timer.agreement(), t1);
        assert_eq!(timer.poll(t0 + Duration::from_secs(100)), None);
        assert_eq!(
            timer.poll(t1 + Duration::from_secs(60)),
            Some(TimerAction::Expired)
        );
        // Long intervals: 32 s before the end.
        let long = SessionTimer::new(agreed("Session-Expires: 1800\r\nk: timer\r\n"), t0);
        assert_eq!(long.next_deadline(), t0 + Duration::from_secs(1768));
    }

    #[test]
    fn as_refresher_we_refresh_at_half_the_interval_once_until_answered() {
        let t0 = Instant::now();
        let mut timer = SessionTimer::new(agreed("Session-Expires: 120;refresher=uas\r\n"), t0);
        assert_eq!(timer.next_deadline(), t0 + Duration::from_secs(60));
        assert_eq!(timer.poll(t0 + Duration::from_secs(59)), None);
        let due = t0 + Duration::from_secs(60);
        assert_eq!(timer.poll(due), Some(TimerAction::Refresh));
        assert_eq!(timer.poll(due), None, "one refresh at a time");
        // Unanswered, the session still ends at its expiry (120 - 32 s).
        assert_eq!(timer.next_deadline(), t0 + Duration::from_secs(88));
        let answered = due + Duration::from_secs(1);
        timer.refreshed(timer.agreement(), answered);
        assert_eq!(timer.next_deadline(), answered + Duration::from_secs(60));
        // A failed refresh is retried an eighth of the interval (15 s) later, within the time left.
        let first = answered + Duration::from_secs(60);
        assert_eq!(timer.poll(first), Some(TimerAction::Refresh));
        timer.refresh_failed(first);
        assert_eq!(timer.poll(first + Duration::from_secs(14)), None);
        assert_eq!(
            timer.poll(first + Duration::from_secs(15)),
            Some(TimerAction::Refresh)
        );
        timer.refresh_failed(first + Duration::from_secs(15));
        assert_eq!(timer.next_deadline(), answered + Duration::from_secs(88));
        assert_eq!(
            timer.poll(answered + Duration::from_secs(88)),
            Some(TimerAction::Expired)
        );
    }
}
