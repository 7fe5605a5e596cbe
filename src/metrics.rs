//! The daemon's live figures for Prometheus (`GET /metrics`, text format 0.0.4): calls by function and outcome,
//! calls up now and where they are (menu, bridged), SIP responses sent by class, and the RTP sender's packets,
//! late frames and skipped frames.
//!
//! Owns the one registry and the metric names; a [`Metrics`] handle is passed to whoever counts, and each figure
//! is counted where its event happens (the call task, the SIP endpoint, the media session). Names follow the
//! Prometheus conventions: `knappval_` prefix, `_total` for counters (added by the encoder), base units.

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::flow::Outcome;

/// The `Content-Type` of what [`Metrics::encode`] writes.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// Every metric name `/metrics` exposes, as Prometheus shows them (counters with `_total`).
pub const NAMES: &[&str] = &[
    "knappval_calls_total",
    "knappval_calls_active",
    "knappval_calls_in_menu",
    "knappval_calls_bridged",
    "knappval_sip_responses_total",
    "knappval_rtp_packets_sent_total",
    "knappval_rtp_frames_late_total",
    "knappval_rtp_frames_skipped_total",
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
            calls_bridged,
            sip_responses,
            rtp,
        }))
    }

    /// The exposition, Prometheus text format 0.0.4.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut text, &self.0.registry);
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
            Phase::Bridged => &self.0.calls_bridged,
        }
    }
}

/// Where an answered call is, for the gauges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Menu,
    Bridged,
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

    fn sample(text: &str, line_start: &str) -> Option<String> {
        text.lines()
            .find(|line| line.starts_with(line_start))
            .map(|line| line[line_start.len()..].trim().to_string())
    }

    #[test]
    fn gauges_follow_a_call_through_its_phases_and_its_end() {
        let metrics = Metrics::new();
        let mut call = metrics.call_started();
        call.enter(Phase::Menu);
        call.enter(Phase::Menu);
        let text = metrics.encode();
        assert_eq!(
            sample(&text, "knappval_calls_active ").as_deref(),
            Some("1")
        );
        assert_eq!(
            sample(&text, "knappval_calls_in_menu ").as_deref(),
            Some("1")
        );
        call.enter(Phase::Bridged);
        let text = metrics.encode();
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
        let text = metrics.encode();
        for (line, value) in [
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
        ] {
            assert_eq!(
                sample(&text, line).as_deref(),
                Some(value),
                "{line}\n{text}"
            );
        }
        assert!(
            text.contains("# TYPE knappval_calls_total counter"),
            "{text}"
        );
        for name in NAMES {
            assert!(text.contains(&format!("# TYPE {name} ")), "{name}\n{text}");
        }
    }
}
