//! Probe: whether each function's target is alive, as Kamailio's dispatcher judges it. knappval sends SIP
//! OPTIONS to every function target every [`ProbePolicy::interval`]; any response (200, 404, 405, ...) means
//! something is there, so the target is up; [`ProbePolicy::down_after`] probes in a row without one mark it
//! down. A call routed to a target that is down goes to its failure path at once instead of waiting.
//!
//! A target that answered one of our INVITEs (any response) within the interval needs no probe: that answer
//! counts as one. So a busy target is not probed at all, and the first probes go one interval after start:
//! some function phones (SIPp's UAS scenarios, for one) take any request outside a call as a broken call.
//!
//! [`Probes`] is the decision, sans IO: which targets are due, and what a result does to a target's state.
//! [`TargetBoard`] is where the current states are published for call tasks and `/healthz`. The task that
//! sends the OPTIONS lives in [`crate::app`].

use std::collections::BTreeMap;
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::menu::model::FunctionId;

/// How often targets are probed, how long a probe may take, and how many failures mean down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbePolicy {
    pub interval: Duration,
    /// A probe with no response within this is a failure (OPTIONS' own Timer F would take 32 s).
    pub timeout: Duration,
    /// Failed probes in a row before a target is marked down.
    pub down_after: u32,
}

/// The default probe interval (`--probe-interval`).
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(20);
/// The longest a probe may wait for a response.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(4);
/// Failed probes in a row before a target is down: one lost datagram does not take a target out.
pub const DOWN_AFTER: u32 = 2;

impl ProbePolicy {
    /// Probes every `interval`, each waiting at most [`PROBE_TIMEOUT`] (or the interval, if shorter).
    pub fn every(interval: Duration) -> ProbePolicy {
        ProbePolicy {
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
    /// Not probed yet, or probing is off: calls are tried.
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

/// One target's state as the board shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TargetStatus {
    pub target: String,
    pub state: TargetState,
    /// When the last probe finished (RFC 3339, UTC), if one has.
    pub last_probe: Option<String>,
    /// What the last probe got: `200`, `no response within 4s`, ...
    pub last_result: Option<String>,
}

#[derive(Debug)]
struct Target {
    function: FunctionId,
    target: String,
    state: TargetState,
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

/// The probing of all function targets: probes due in, results in, state changes out.
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
    /// Every function's target, each first probed one interval after `now`.
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
            .filter(|t| !t.in_flight && t.next_probe <= now)
            .map(|t| {
                t.in_flight = true;
                t.next_probe = now + interval;
                (t.function.clone(), t.target.clone())
            })
            .collect()
    }

    /// When the next probe is due (None: a probe of every target is in flight, or there are none).
    pub fn next_due(&self) -> Option<Instant> {
        self.targets
            .iter()
            .filter(|t| !t.in_flight)
            .map(|t| t.next_probe)
            .min()
    }

    /// A probe's result; Some when it changed the target's state.
    pub fn on_result(&mut self, function: &str, result: &ProbeResult) -> Option<Change> {
        let down_after = self.policy.down_after;
        let target = self.targets.iter_mut().find(|t| t.function == function)?;
        target.in_flight = false;
        let from = target.state;
        match result {
            ProbeResult::Answered(_) => {
                target.failures = 0;
                target.state = TargetState::Up;
            }
            ProbeResult::Failed(_) => {
                target.failures = target.failures.saturating_add(1);
                if target.failures >= down_after {
                    target.state = TargetState::Down;
                }
            }
        }
        target.change_from(from)
    }

    /// A call to `function` got a response from its target at `at`: as good as an answered probe, and the next
    /// probe waits a whole interval from then. None when no state changed (or a probe is in flight: its own
    /// result decides).
    pub fn heard_from(&mut self, function: &str, at: Instant) -> Option<Change> {
        let interval = self.policy.interval;
        let target = self
            .targets
            .iter_mut()
            .find(|t| t.function == function && !t.in_flight)?;
        target.next_probe = target.next_probe.max(at + interval);
        target.failures = 0;
        let from = target.state;
        target.state = TargetState::Up;
        target.change_from(from)
    }

    pub fn state(&self, function: &str) -> TargetState {
        self.targets
            .iter()
            .find(|t| t.function == function)
            .map_or(TargetState::Unknown, |t| t.state)
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

/// The targets' current states, shared by the prober (writer), call tasks and `/healthz` (readers).
#[derive(Debug, Default)]
pub struct TargetBoard {
    targets: RwLock<BTreeMap<FunctionId, TargetStatus>>,
    /// Targets that answered a call's INVITE since the prober last looked, and when.
    heard: Mutex<Vec<(FunctionId, Instant)>>,
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

    pub fn snapshot(&self) -> BTreeMap<FunctionId, TargetStatus> {
        self.targets.read().map(|t| t.clone()).unwrap_or_default()
    }

    /// A call task got a response from `function`'s target (see [`Probes::heard_from`]).
    pub fn heard_from(&self, function: &str) {
        if let Ok(mut heard) = self.heard.lock() {
            // Bounded by the number of functions: one entry each is all the prober needs.
            heard.retain(|(f, _)| f != function);
            heard.push((function.to_string(), Instant::now()));
        }
    }

    /// What call tasks heard since the last call, for the prober.
    pub fn take_heard(&self) -> Vec<(FunctionId, Instant)> {
        self.heard
            .lock()
            .map(|mut heard| std::mem::take(&mut *heard))
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probes(now: Instant) -> Probes {
        Probes::new(
            ProbePolicy::every(Duration::from_secs(10)),
            [
                ("it".to_string(), "sip:it@127.0.0.1:5071".to_string()),
                ("kt".to_string(), "sip:kt@127.0.0.1:5072".to_string()),
            ],
            now,
        )
    }

    #[test]
    fn every_target_is_probed_each_interval_not_while_in_flight() {
        let start = Instant::now();
        let mut p = probes(start);
        assert!(p.due(start).is_empty(), "no probe at start");
        let t0 = start + Duration::from_secs(10);
        assert_eq!(p.due(t0).len(), 2);
        assert!(p.due(t0 + Duration::from_secs(30)).is_empty(), "in flight");
        assert_eq!(p.next_due(), None);
        p.on_result("it", &ProbeResult::Answered(200));
        assert_eq!(p.next_due(), Some(t0 + Duration::from_secs(10)));
        assert!(p.due(t0 + Duration::from_secs(9)).is_empty());
        let due = p.due(t0 + Duration::from_secs(10));
        assert_eq!(due, vec![("it".into(), "sip:it@127.0.0.1:5071".into())]);
    }

    #[test]
    fn any_response_is_up_and_down_takes_failures_in_a_row() {
        let t0 = Instant::now() + Duration::from_secs(10);
        let mut p = probes(t0);
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
    }

    #[test]
    fn a_response_to_a_call_counts_as_a_probe_and_puts_the_next_one_off() {
        let start = Instant::now();
        let mut p = probes(start);
        let at = start + Duration::from_secs(8);
        let change = p.heard_from("it", at).expect("unknown to up");
        assert_eq!(change.to, TargetState::Up);
        assert_eq!(p.heard_from("it", at), None);
        let due = p.due(start + Duration::from_secs(10));
        assert_eq!(due, vec![("kt".into(), "sip:kt@127.0.0.1:5072".into())]);
        assert_eq!(
            p.due(start + Duration::from_secs(18)).len(),
            1,
            "it: a whole interval after the call"
        );
        assert_eq!(p.heard_from("it", at), None, "in flight: the probe decides");
    }

    #[test]
    fn the_board_shows_unknown_for_what_it_was_not_told() {
        let board = TargetBoard::default();
        assert_eq!(board.state("it"), TargetState::Unknown);
        board.publish(
            "it",
            TargetStatus {
                target: "sip:it@127.0.0.1".into(),
                state: TargetState::Down,
                last_probe: None,
                last_result: Some("no response within 4s".into()),
            },
        );
        assert_eq!(board.state("it"), TargetState::Down);
        let json = serde_json::to_value(board.snapshot()).unwrap();
        assert_eq!(json["it"]["state"], "down");
        board.heard_from("it");
        board.heard_from("it");
        assert_eq!(board.take_heard().len(), 1);
        assert!(board.take_heard().is_empty());
    }
}
