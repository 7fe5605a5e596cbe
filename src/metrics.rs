//! The daemon's live figures for Prometheus (`GET /metrics`, text format 0.0.4): calls by function and outcome,
//! calls up now and where they are (menu, queue, bridged), SIP responses sent by class, the RTP sender's packets,
//! late frames and skipped frames, and per queue the callers waiting, the longest wait and the agents by state.
//!
//! Owns the one registry and the metric names; a [`Metrics`] handle is passed to whoever counts, and each figure
//! is counted where its event happens (the call task, the SIP endpoint, the media session). The per-queue figures
//! are not counted but read: [`Metrics::encode`] takes the queue service's snapshot of the moment. Names follow
//! the Prometheus conventions: `knappval_` prefix, `_total` for counters (added by the encoder), base units.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};

use crate::flow::Outcome;
use crate::routing::queue::{AgentState, QueueView};

/// The `Content-Type` of what [`Metrics::encode`] writes.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// Every metric name `/metrics` exposes, as Prometheus shows them (counters with `_total`).
pub const NAMES: &[&str] = &[
    "knappval_calls_total",
    "knappval_calls_active",
    "knappval_calls_in_menu",
    "knappval_calls_in_queue",
    "knappval_calls_bridged",
    "knappval_sip_responses_total",
    "knappval_rtp_packets_sent_total",
    "knappval_rtp_frames_late_total",
    "knappval_rtp_frames_skipped_total",
    "knappval_queue_calls_waiting",
    "knappval_queue_longest_wait_seconds",
    "knappval_queue_agents",
];

/// Every state an agent can be in, so that a queue shows `0` idle agents rather than no sample at all.
const AGENT_STATES: [AgentState; 5] = [
    AgentState::Idle,
    AgentState::Ringing,
    AgentState::Talking,
    AgentState::WrapUp,
    AgentState::Unregistered,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    /// The function the caller chose; empty when the caller chose none.
    function: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResponseLabels {
    /// `1xx` .. `6xx`.
    code_class: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QueueLabels {
    /// The queue's function id.
    queue: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AgentLabels {
    queue: String,
    /// `idle`, `ringing`, `talking`, `wrap_up` or `unregistered`, as `/api/v1/queues` names them.
    state: String,
}

/// The RTP sender's counters, shared by every media session.
#[derive(Clone, Debug, Default)]
pub struct RtpCounters {
    /// RTP packets sent: prompts, silence and relayed audio, to callers and to functions.
    pub packets_sent: Counter,
    /// Frames sent a frame period or more after their deadline, in a catch-up burst after a short stall.
    pub frames_late: Counter,
    /// Frames not sent at all after a long stall: the RTP clock moved on, the caller heard a gap.
    pub frames_skipped: Counter,
}

/// A cheap, cloneable handle on the registry and its metrics.
#[derive(Clone)]
pub struct Metrics(Arc<Inner>);

struct Inner {
    registry: Registry,
    calls: Family<CallLabels, Counter>,
    calls_active: Gauge,
    calls_in_menu: Gauge,
    calls_in_queue: Gauge,
    calls_bridged: Gauge,
    sip_responses: Family<ResponseLabels, Counter>,
    rtp: RtpCounters,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics(..)")
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("knappval");
        let calls = Family::<CallLabels, Counter>::default();
        registry.register(
            "calls",
            "Calls ended, by the function chosen (empty: none) and outcome",
            calls.clone(),
        );
        let calls_active = Gauge::default();
        registry.register(
            "calls_active",
            "Calls in progress, from the INVITE to the end",
            calls_active.clone(),
        );
        let calls_in_menu = Gauge::default();
        registry.register(
            "calls_in_menu",
            "Answered calls in the menu (or waiting for their function to answer)",
            calls_in_menu.clone(),
        );
        let calls_in_queue = Gauge::default();
        registry.register(
            "calls_in_queue",
            "Answered calls waiting in a queue for an agent",
            calls_in_queue.clone(),
        );
        let calls_bridged = Gauge::default();
        registry.register(
            "calls_bridged",
            "Calls bridged to a support function",
            calls_bridged.clone(),
        );
        let sip_responses = Family::<ResponseLabels, Counter>::default();
        registry.register(
            "sip_responses",
            "SIP responses knappval sent, by class (retransmissions included)",
            sip_responses.clone(),
        );
        let rtp = RtpCounters::default();
        registry.register(
            "rtp_packets_sent",
            "RTP packets sent to callers and functions",
            rtp.packets_sent.clone(),
        );
        registry.register(
            "rtp_frames_late",
            "20 ms frames sent a frame period or more after their deadline (catch-up after a short stall)",
            rtp.frames_late.clone(),
        );
        registry.register(
            "rtp_frames_skipped",
            "20 ms frames not sent after a long stall (the caller heard a gap)",
            rtp.frames_skipped.clone(),
        );
        Metrics(Arc::new(Inner {
            registry,
            calls,
            calls_active,
            calls_in_menu,
            calls_in_queue,
            calls_bridged,
            sip_responses,
            rtp,
        }))
    }

    /// The exposition, Prometheus text format 0.0.4, with `queues` (the queue service's snapshot now) as the
    /// per-queue figures.
    pub fn encode(&self, queues: &[QueueView]) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut text, &self.0.registry);
        let _ = prometheus_client::encoding::prometheus_text::encode(
            &mut text,
            &queue_registry(queues),
        );
        text
    }

    /// A call has arrived: counted as active until the returned guard is dropped.
    pub fn call_started(&self) -> CallGauge {
        self.0.calls_active.inc();
        CallGauge {
            metrics: self.clone(),
            phase: None,
        }
    }

    pub fn call_ended(&self, function: Option<&str>, outcome: Outcome) {
        self.0
            .calls
            .get_or_create(&CallLabels {
                function: function.unwrap_or_default().to_string(),
                outcome: outcome.as_str().to_string(),
            })
            .inc();
    }

    /// A SIP response with this status code went out.
    pub fn sip_response_sent(&self, code: u16) {
        let code_class = match code {
            100..=699 => format!("{}xx", code / 100),
            _ => "other".to_string(),
        };
        self.0
            .sip_responses
            .get_or_create(&ResponseLabels { code_class })
            .inc();
    }

    /// The counters every media session adds to.
    pub fn rtp(&self) -> RtpCounters {
        self.0.rtp.clone()
    }

    fn phase_gauge(&self, phase: Phase) -> &Gauge {
        match phase {
            Phase::Menu => &self.0.calls_in_menu,
            Phase::Queue => &self.0.calls_in_queue,
            Phase::Bridged => &self.0.calls_bridged,
        }
    }
}

/// Where an answered call is, for the gauges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Menu,
    /// Waiting in a queue for an agent.
    Queue,
    Bridged,
}

/// The per-queue figures of one snapshot, in a registry of their own built for this scrape.
///
/// Built afresh rather than kept: a queue gone since the last scrape (a reload) simply is not in it, and two
/// scrapes at once cannot mix their snapshots. Families in the shared registry would need clearing and refilling
/// under a lock held through the encoding; a `Collector` is encoded synchronously, so it could not ask the queue
/// service itself and would still need the snapshot handed over through shared state.
fn queue_registry(queues: &[QueueView]) -> Registry {
    let mut registry = Registry::with_prefix("knappval");
    let waiting = Family::<QueueLabels, Gauge>::default();
    let longest_wait = Family::<QueueLabels, Gauge<f64, AtomicU64>>::default();
    let agents = Family::<AgentLabels, Gauge>::default();
    for view in queues {
        let queue = QueueLabels {
            queue: view.function.clone(),
        };
        waiting
            .get_or_create(&queue)
            .set(i64::try_from(view.waiting.len()).unwrap_or(i64::MAX));
        longest_wait
            .get_or_create(&queue)
            .set(view.longest_wait.as_secs_f64());
        let agent_labels = |state: AgentState| AgentLabels {
            queue: view.function.clone(),
            state: state.as_str().to_string(),
        };
        for state in AGENT_STATES {
            agents.get_or_create(&agent_labels(state)).set(0);
        }
        for (_, state) in &view.agents {
            agents.get_or_create(&agent_labels(*state)).inc();
        }
    }
    registry.register(
        "queue_calls_waiting",
        "Callers waiting in the queue (its function id) now",
        waiting,
    );
    registry.register_with_unit(
        "queue_longest_wait",
        "How long the queue's longest-waiting caller has waited so far (0: nobody waits)",
        Unit::Seconds,
        longest_wait,
    );
    registry.register(
        "queue_agents",
        "The queue's agents by state (an agent in several queues counts in each)",
        agents,
    );
    registry
}

/// One call in the gauges: active while it lives, in one phase at a time; dropping it takes the call out of
/// both, however the call ended.
pub struct CallGauge {
    metrics: Metrics,
    phase: Option<Phase>,
}

impl CallGauge {
    pub fn enter(&mut self, phase: Phase) {
        if self.phase == Some(phase) {
            return;
        }
        if let Some(old) = self.phase.replace(phase) {
            self.metrics.phase_gauge(old).dec();
        }
        self.metrics.phase_gauge(phase).inc();
    }
}

impl Drop for CallGauge {
    fn drop(&mut self) {
        if let Some(phase) = self.phase {
            self.metrics.phase_gauge(phase).dec();
        }
        self.metrics.0.calls_active.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routing::queue::WaitingView;
    use std::time::Duration;

    fn sample(text: &str, line_start: &str) -> Option<String> {
        text.lines()
            .find(|line| line.starts_with(line_start))
            .map(|line| line[line_start.len()..].trim().to_string())
    }

    /// Each `(line start, value)`: the sample line that starts so reads that value.
    fn assert_samples(text: &str, expected: &[(&str, &str)]) {
        for (line, value) in expected {
            assert_eq!(
                sample(text, line).as_deref(),
                Some(*value),
                "{line}\n{text}"
            );
        }
    }

    #[test]
    fn gauges_follow_a_call_through_its_phases_and_its_end() {
        let metrics = Metrics::new();
        let mut call = metrics.call_started();
        call.enter(Phase::Menu);
        call.enter(Phase::Menu);
        let text = metrics.encode(&[]);
        assert_eq!(
            sample(&text, "knappval_calls_active ").as_deref(),
            Some("1")
        );
        assert_eq!(
            sample(&text, "knappval_calls_in_menu ").as_deref(),
            Some("1")
        );
        call.enter(Phase::Bridged);
        let text = metrics.encode(&[]);
        assert_eq!(
            sample(&text, "knappval_calls_in_menu ").as_deref(),
            Some("0")
        );
        assert_eq!(
            sample(&text, "knappval_calls_bridged ").as_deref(),
            Some("1")
        );
        drop(call);
        metrics.call_ended(None, Outcome::Abandoned);
        metrics.call_ended(Some("it"), Outcome::Transferred);
        metrics.sip_response_sent(180);
        metrics.sip_response_sent(487);
        let text = metrics.encode(&[]);
        assert_samples(
            &text,
            &[
                ("knappval_calls_active ", "0"),
                ("knappval_calls_bridged ", "0"),
                (
                    r#"knappval_calls_total{function="",outcome="abandoned"} "#,
                    "1",
                ),
                (
                    r#"knappval_calls_total{function="it",outcome="transferred"} "#,
                    "1",
                ),
                (r#"knappval_sip_responses_total{code_class="1xx"} "#, "1"),
                (r#"knappval_sip_responses_total{code_class="4xx"} "#, "1"),
            ],
        );
        assert!(
            text.contains("# TYPE knappval_calls_total counter"),
            "{text}"
        );
        let text = metrics.encode(&[view("it", &[], &[])]);
        for name in NAMES {
            assert!(text.contains(&format!("# TYPE {name} ")), "{name}\n{text}");
        }
    }

    fn view(queue: &str, waits: &[u64], agents: &[(&str, AgentState)]) -> QueueView {
        let waiting: Vec<WaitingView> = waits
            .iter()
            .map(|ms| WaitingView {
                call_id: format!("call-{ms}"),
                from: "p:0123".to_string(),
                waiting: Duration::from_millis(*ms),
            })
            .collect();
        QueueView {
            function: queue.to_string(),
            longest_wait: waiting.iter().map(|w| w.waiting).max().unwrap_or_default(),
            waiting,
            agents: agents
                .iter()
                .map(|(id, state)| (id.to_string(), *state))
                .collect(),
            in_menu: true,
        }
    }

    #[test]
    fn queue_figures_are_the_snapshot_of_the_scrape_and_a_gone_queue_leaves_no_sample() {
        let metrics = Metrics::new();
        let mut call = metrics.call_started();
        call.enter(Phase::Menu);
        call.enter(Phase::Queue);
        let snapshot = [
            view(
                "it",
                &[1500, 250],
                &[
                    ("anna", AgentState::Ringing),
                    ("bo", AgentState::Unregistered),
                    ("cecilia", AgentState::Unregistered),
                ],
            ),
            view("ekonomi", &[], &[("bo", AgentState::Unregistered)]),
        ];
        let text = metrics.encode(&snapshot);
        assert_samples(
            &text,
            &[
                ("knappval_calls_in_queue ", "1"),
                ("knappval_calls_in_menu ", "0"),
                (r#"knappval_queue_calls_waiting{queue="it"} "#, "2"),
                (r#"knappval_queue_calls_waiting{queue="ekonomi"} "#, "0"),
                (r#"knappval_queue_longest_wait_seconds{queue="it"} "#, "1.5"),
                (
                    r#"knappval_queue_longest_wait_seconds{queue="ekonomi"} "#,
                    "0.0",
                ),
                (r#"knappval_queue_agents{queue="it",state="ringing"} "#, "1"),
                (
                    r#"knappval_queue_agents{queue="it",state="unregistered"} "#,
                    "2",
                ),
                (r#"knappval_queue_agents{queue="it",state="idle"} "#, "0"),
                (r#"knappval_queue_agents{queue="it",state="talking"} "#, "0"),
                (r#"knappval_queue_agents{queue="it",state="wrap_up"} "#, "0"),
                (
                    r#"knappval_queue_agents{queue="ekonomi",state="unregistered"} "#,
                    "1",
                ),
            ],
        );
        assert!(
            text.contains("# TYPE knappval_queue_longest_wait_seconds gauge"),
            "{text}"
        );

        call.enter(Phase::Bridged);
        let text = metrics.encode(&snapshot[..1]);
        assert_eq!(
            sample(&text, "knappval_calls_in_queue ").as_deref(),
            Some("0")
        );
        assert!(!text.contains(r#"queue="ekonomi""#), "{text}");
        let text = metrics.encode(&[]);
        assert!(!text.contains("knappval_queue_"), "{text}");
    }
}
