//! Probe: whether each function's target is alive, as Kamailio's dispatcher judges it. Any SIP response to
//! knappval (200, 404, 405 to an OPTIONS; 100, 180, 486 to a call's INVITE) means something is there, so the
//! target is up. A target that is down gets no calls: they go to their failure path at once.
//!
//! [`ProbeMode::Failed`] (the default, Kamailio's `ds_probing_mode=0`) probes only targets that failed: a
//! target is not probed until a call's INVITE to it got no response at all (nothing within 4 s, or the request
//! could not be sent). That takes it down at once, and from then on it is probed with OPTIONS every
//! [`ProbePolicy::interval`] until anything answers; then it is up and no longer probed. A healthy function
//! phone never sees an OPTIONS, which matters because some (SIPp's UAS scenarios, for one) take any request
//! outside a call as a broken call.
//!
//! [`ProbeMode::All`] (`ds_probing_mode=1`) probes every target every interval, the first probes one interval
//! after start; [`ProbePolicy::down_after`] probes in a row without a response mark a target down. A target
//! that answered one of our INVITEs within the interval needs no probe: that answer counts as one.
//!
//! [`Probes`] is the decision, sans IO: which targets are due, and what a probe result or a call's report does
//! to a target's state. [`TargetBoard`] is where the current states are published for call tasks and
//! `/healthz`, and where call tasks leave their reports. The task that sends the OPTIONS lives in
//! [`crate::app`].

use std::collections::BTreeMap;
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::Notify;

use crate::menu::model::FunctionId;

/// Which targets are probed (`--probe-mode`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProbeMode {
    // Only targets that failed a call, until they answer (plain comments: clap would list doc comments in help).
    #[default]
    Failed,
    // Every target, every interval.
    All,
}

/// How often targets are probed, how long a probe may take, and how many failures mean down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbePolicy {
    pub mode: ProbeMode,
    pub interval: Duration,
    /// A probe with no response within this is a failure (OPTIONS' own Timer F would take 32 s).
    pub timeout: Duration,
    /// In [`ProbeMode::All`], failed probes in a row before a target is marked down.
    pub down_after: u32,
}

/// The default probe interval (`--probe-interval`).
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(20);
/// The longest a probe may wait for a response.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(4);
/// Failed probes in a row before a target is down: one lost datagram does not take a target out.
pub const DOWN_AFTER: u32 = 2;

impl ProbePolicy {
    /// Probes in `mode` every `interval`, each waiting at most [`PROBE_TIMEOUT`] (or the interval, if shorter).
    pub fn every(mode: ProbeMode, interval: Duration) -> ProbePolicy {
        ProbePolicy {
            mode,
            interval,
            timeout: PROBE_TIMEOUT.min(interval),
            down_after: DOWN_AFTER,
        }
    }
}

/// What a target is believed to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TargetState {
    /// Not probed yet and no call to it has ended, or probing is off: calls are tried.
    Unknown,
    Up,
    Down,
}

/// How one probe went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeResult {
    /// The target answered, with this status code.
    Answered(u16),
    /// No response within the probe timeout, or the request could not be sent (the reason).
    Failed(String),
}

/// What a call task learnt about its function's target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallReport {
    /// The target responded to the call's INVITE (any response: it is there).
    Heard,
    /// The call's INVITE got no response at all (the reason, as the record gives it).
    Unanswered(String),
}

/// One target's state as the board shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TargetStatus {
    pub target: String,
    pub state: TargetState,
    /// Whether OPTIONS probes go to it now.
    pub probing: bool,
    /// When the last probe finished (RFC 3339, UTC), if one has.
    pub last_probe: Option<String>,
    /// What the last probe or call got: `200`, `no response within 4s`, `answered a call`, ...
    pub last_result: Option<String>,
}

#[derive(Debug)]
struct Target {
    function: FunctionId,
    target: String,
    state: TargetState,
    probing: bool,
    failures: u32,
    next_probe: Instant,
    in_flight: bool,
}

impl Target {
    /// The change from state `from` to the current one, if it is one.
    fn change_from(&self, from: TargetState) -> Option<Change> {
        (from != self.state).then(|| Change {
            function: self.function.clone(),
            target: self.target.clone(),
            from,
            to: self.state,
        })
    }
}

/// The probing of all function targets: probes due, results and calls' reports in, state changes out.
#[derive(Debug)]
pub struct Probes {
    policy: ProbePolicy,
    targets: Vec<Target>,
}

/// A target's state changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub function: FunctionId,
    pub target: String,
    pub from: TargetState,
    pub to: TargetState,
}

impl Probes {
    /// Every function's target, unknown; in [`ProbeMode::All`] each is first probed one interval after `now`.
    pub fn new(
        policy: ProbePolicy,
        functions: impl IntoIterator<Item = (FunctionId, String)>,
        now: Instant,
    ) -> Probes {
        let targets = functions
            .into_iter()
            .map(|(function, target)| Target {
                function,
                target,
                state: TargetState::Unknown,
                probing: policy.mode == ProbeMode::All,
                failures: 0,
                next_probe: now + policy.interval,
                in_flight: false,
            })
            .collect();
        Probes { policy, targets }
    }

    pub fn policy(&self) -> ProbePolicy {
        self.policy
    }

    /// The probes to send now, as (function, target); each is in flight until its result comes.
    pub fn due(&mut self, now: Instant) -> Vec<(FunctionId, String)> {
        let interval = self.policy.interval;
        self.targets
            .iter_mut()
            .filter(|t| t.probing && !t.in_flight && t.next_probe <= now)
            .map(|t| {
                t.in_flight = true;
                t.next_probe = now + interval;
                (t.function.clone(), t.target.clone())
            })
            .collect()
    }

    /// When the next probe is due (None: none is, until a call reports a target silent or a result comes).
    pub fn next_due(&self) -> Option<Instant> {
        self.targets
            .iter()
            .filter(|t| t.probing && !t.in_flight)
            .map(|t| t.next_probe)
            .min()
    }

    /// A probe's result; Some when it changed the target's state.
    pub fn on_result(&mut self, function: &str, result: &ProbeResult) -> Option<Change> {
        let policy = self.policy;
        let target = self.targets.iter_mut().find(|t| t.function == function)?;
        target.in_flight = false;
        if !target.probing {
            // A call's answer came first and put the target up: this probe is no longer asked for.
            return None;
        }
        let from = target.state;
        match result {
            ProbeResult::Answered(_) => {
                target.failures = 0;
                target.state = TargetState::Up;
                target.probing = policy.mode == ProbeMode::All;
            }
            ProbeResult::Failed(_) => {
                target.failures = target.failures.saturating_add(1);
                if target.failures >= policy.down_after {
                    target.state = TargetState::Down;
                }
            }
        }
        target.change_from(from)
    }

    /// What a call to `function` learnt at `at`; Some when it changed the target's state.
    pub fn on_call(&mut self, function: &str, report: &CallReport, at: Instant) -> Option<Change> {
        match report {
            CallReport::Heard => self.heard_from(function, at),
            CallReport::Unanswered(_) => self.unanswered(function, at),
        }
    }

    /// The target answered a call: as good as an answered probe. In [`ProbeMode::All`] the next probe waits a
    /// whole interval from then, and a probe in flight decides instead; in [`ProbeMode::Failed`] probing stops.
    fn heard_from(&mut self, function: &str, at: Instant) -> Option<Change> {
        let policy = self.policy;
        let target = self.targets.iter_mut().find(|t| t.function == function)?;
        match policy.mode {
            ProbeMode::All if target.in_flight => return None,
            ProbeMode::All => target.next_probe = target.next_probe.max(at + policy.interval),
            ProbeMode::Failed => target.probing = false,
        }
        target.failures = 0;
        let from = target.state;
        target.state = TargetState::Up;
        target.change_from(from)
    }

    /// A call's INVITE got no response at all: the target is down at once (a silent INVITE, retransmitted for
    /// 4 s, says more than one lost probe) and probed from one interval on until it answers.
    fn unanswered(&mut self, function: &str, at: Instant) -> Option<Change> {
        let interval = self.policy.interval;
        let target = self.targets.iter_mut().find(|t| t.function == function)?;
        if !target.probing {
            target.probing = true;
            target.next_probe = at + interval;
        }
        let from = target.state;
        target.state = TargetState::Down;
        target.change_from(from)
    }

    pub fn state(&self, function: &str) -> TargetState {
        self.targets
            .iter()
            .find(|t| t.function == function)
            .map_or(TargetState::Unknown, |t| t.state)
    }

    /// Whether OPTIONS probes go to `function`'s target now.
    pub fn probing(&self, function: &str) -> bool {
        self.targets
            .iter()
            .any(|t| t.function == function && t.probing)
    }
}

impl ProbeResult {
    /// As `/healthz` shows it.
    pub fn describe(&self) -> String {
        match self {
            ProbeResult::Answered(code) => code.to_string(),
            ProbeResult::Failed(why) => why.clone(),
        }
    }
}

impl CallReport {
    /// As `/healthz` shows it.
    pub fn describe(&self) -> String {
        match self {
            CallReport::Heard => "answered a call".into(),
            CallReport::Unanswered(why) => format!("a call got {why}"),
        }
    }
}

/// The targets' current states, shared by the prober (writer), call tasks and `/healthz` (readers); and the
/// call tasks' reports on their way to the prober.
#[derive(Debug, Default)]
pub struct TargetBoard {
    targets: RwLock<BTreeMap<FunctionId, TargetStatus>>,
    /// What calls learnt about targets since the prober last looked, and when.
    reports: Mutex<Vec<(FunctionId, CallReport, Instant)>>,
    /// Wakes the prober for a report.
    reported: Notify,
}

impl TargetBoard {
    /// Unknown when the function is not probed.
    pub fn state(&self, function: &str) -> TargetState {
        self.targets
            .read()
            .ok()
            .and_then(|t| t.get(function).map(|s| s.state))
            .unwrap_or(TargetState::Unknown)
    }

    pub fn publish(&self, function: &str, status: TargetStatus) {
        if let Ok(mut targets) = self.targets.write() {
            targets.insert(function.to_string(), status);
        }
    }

    /// Forgets the functions `keep` says no to: a reloaded menu no longer has them.
    pub fn retain(&self, keep: impl Fn(&str) -> bool) {
        if let Ok(mut targets) = self.targets.write() {
            targets.retain(|function, _| keep(function));
        }
    }

    pub fn snapshot(&self) -> BTreeMap<FunctionId, TargetStatus> {
        self.targets.read().map(|t| t.clone()).unwrap_or_default()
    }

    /// A call task's report on `function`'s target (see [`Probes::on_call`]).
    pub fn report(&self, function: &str, report: CallReport) {
        if let Ok(mut reports) = self.reports.lock() {
            // Bounded by the number of functions: the latest report on each is all the prober needs.
            reports.retain(|(f, _, _)| f != function);
            reports.push((function.to_string(), report, Instant::now()));
        }
        self.reported.notify_one();
    }

    /// What call tasks reported since the last call, for the prober.
    pub fn take_reports(&self) -> Vec<(FunctionId, CallReport, Instant)> {
        self.reports
            .lock()
            .map(|mut reports| std::mem::take(&mut *reports))
            .unwrap_or_default()
    }

    /// Resolves when a call task reported something (at once if it did since the last wait).
    pub async fn reported(&self) {
        self.reported.notified().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECS: fn(u64) -> Duration = Duration::from_secs;

    fn probes(mode: ProbeMode, now: Instant) -> Probes {
        Probes::new(
            ProbePolicy::every(mode, SECS(10)),
            [
                ("it".to_string(), "sip:it@127.0.0.1:5071".to_string()),
                ("kt".to_string(), "sip:kt@127.0.0.1:5072".to_string()),
            ],
            now,
        )
    }

    fn silent() -> CallReport {
        CallReport::Unanswered("no response from target within 4s".into())
    }

    #[test]
    fn by_default_no_target_is_probed_until_a_call_finds_it_silent() {
        let start = Instant::now();
        let mut p = probes(ProbeMode::Failed, start);
        assert_eq!(p.next_due(), None);
        assert!(
            p.due(start + SECS(1000)).is_empty(),
            "healthy: never probed"
        );
        // A busy or ringing target answered: still not probed.
        let change = p.on_call("it", &CallReport::Heard, start).expect("up");
        assert_eq!(
            (change.from, change.to),
            (TargetState::Unknown, TargetState::Up)
        );
        assert!(p.due(start + SECS(2000)).is_empty());
        assert!(!p.probing("it"));

        let at = start + SECS(2000);
        let change = p.on_call("it", &silent(), at).expect("down at once");
        assert_eq!(
            (change.from, change.to),
            (TargetState::Up, TargetState::Down)
        );
        assert!(p.probing("it"));
        assert_eq!(p.next_due(), Some(at + SECS(10)));
        assert_eq!(
            p.on_call("it", &silent(), at + SECS(1)),
            None,
            "already down"
        );
        assert_eq!(
            p.next_due(),
            Some(at + SECS(10)),
            "a second failure does not put it off"
        );
        let due = p.due(at + SECS(10));
        assert_eq!(due, vec![("it".into(), "sip:it@127.0.0.1:5071".into())]);
        let fail = ProbeResult::Failed("no response within 4s".into());
        assert_eq!(p.on_result("it", &fail), None, "stays down");
        assert_eq!(
            p.due(at + SECS(20)).len(),
            1,
            "probed every interval while down"
        );
        let change = p.on_result("it", &ProbeResult::Answered(405)).expect("up");
        assert_eq!(change.to, TargetState::Up);
        assert!(!p.probing("it"), "up: probes stop");
        assert_eq!(p.next_due(), None);
        assert_eq!(p.state("kt"), TargetState::Unknown);
    }

    #[test]
    fn a_call_answered_while_a_probe_is_out_ends_the_probing() {
        let start = Instant::now();
        let mut p = probes(ProbeMode::Failed, start);
        p.on_call("it", &silent(), start);
        assert_eq!(p.due(start + SECS(10)).len(), 1);
        let change = p
            .on_call("it", &CallReport::Heard, start + SECS(11))
            .expect("up");
        assert_eq!(change.to, TargetState::Up);
        let fail = ProbeResult::Failed("no response within 4s".into());
        assert_eq!(
            p.on_result("it", &fail),
            None,
            "the late probe changes nothing"
        );
        assert_eq!(p.state("it"), TargetState::Up);
        assert_eq!(p.next_due(), None);
    }

    #[test]
    fn in_all_mode_every_target_is_probed_each_interval_not_while_in_flight() {
        let start = Instant::now();
        let mut p = probes(ProbeMode::All, start);
        assert!(p.due(start).is_empty(), "no probe at start");
        let t0 = start + SECS(10);
        assert_eq!(p.due(t0).len(), 2);
        assert!(p.due(t0 + SECS(30)).is_empty(), "in flight");
        assert_eq!(p.next_due(), None);
        p.on_result("it", &ProbeResult::Answered(200));
        assert!(p.probing("it"), "up and still probed");
        assert_eq!(p.next_due(), Some(t0 + SECS(10)));
        assert!(p.due(t0 + SECS(9)).is_empty());
        let due = p.due(t0 + SECS(10));
        assert_eq!(due, vec![("it".into(), "sip:it@127.0.0.1:5071".into())]);
    }

    #[test]
    fn in_all_mode_any_response_is_up_and_down_takes_failures_in_a_row() {
        let t0 = Instant::now() + SECS(10);
        let mut p = probes(ProbeMode::All, t0);
        assert_eq!(p.state("it"), TargetState::Unknown);
        let fail = ProbeResult::Failed("no response within 4s".into());
        p.due(t0);
        assert_eq!(p.on_result("it", &fail), None, "one failure is not down");
        p.due(t0);
        let change = p.on_result("it", &fail).expect("down after two");
        assert_eq!(
            (change.from, change.to),
            (TargetState::Unknown, TargetState::Down)
        );
        assert_eq!(p.state("it"), TargetState::Down);
        // A 404 or 405 still says something is there.
        let change = p.on_result("it", &ProbeResult::Answered(405)).expect("up");
        assert_eq!(change.to, TargetState::Up);
        assert_eq!(
            p.on_result("it", &fail),
            None,
            "failures count again from zero"
        );
        assert_eq!(p.state("it"), TargetState::Up);
        assert_eq!(p.state("kt"), TargetState::Unknown);
        assert_eq!(p.on_result("nobody", &fail), None);
        let change = p.on_call("kt", &silent(), t0).expect("a silent call: down");
        assert_eq!(change.to, TargetState::Down);
    }

    #[test]
    fn in_all_mode_a_response_to_a_call_counts_as_a_probe_and_puts_the_next_one_off() {
        let start = Instant::now();
        let mut p = probes(ProbeMode::All, start);
        let at = start + SECS(8);
        let change = p
            .on_call("it", &CallReport::Heard, at)
            .expect("unknown to up");
        assert_eq!(change.to, TargetState::Up);
        assert_eq!(p.on_call("it", &CallReport::Heard, at), None);
        let due = p.due(start + SECS(10));
        assert_eq!(due, vec![("kt".into(), "sip:kt@127.0.0.1:5072".into())]);
        assert_eq!(
            p.due(start + SECS(18)).len(),
            1,
            "it: a whole interval after the call"
        );
        assert_eq!(
            p.on_call("it", &CallReport::Heard, at),
            None,
            "in flight: the probe decides"
        );
    }

    #[test]
    fn the_board_shows_unknown_for_what_it_was_not_told_and_keeps_the_latest_report() {
        let board = TargetBoard::default();
        assert_eq!(board.state("it"), TargetState::Unknown);
        board.publish(
            "it",
            TargetStatus {
                target: "sip:it@127.0.0.1".into(),
                state: TargetState::Down,
                probing: true,
                last_probe: None,
                last_result: Some("no response within 4s".into()),
            },
        );
        assert_eq!(board.state("it"), TargetState::Down);
        let json = serde_json::to_value(board.snapshot()).unwrap();
        assert_eq!(json["it"]["state"], "down");
        assert_eq!(json["it"]["probing"], true);
        board.report("it", CallReport::Heard);
        board.report("it", silent());
        let reports = board.take_reports();
        assert_eq!(reports.len(), 1);
        assert_eq!(reports[0].1, silent());
        assert!(board.take_reports().is_empty());
    }
}
