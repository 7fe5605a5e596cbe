//! A support-function queue for the black-box tests: the menu (`1` goes to the `it` queue, overflow to
//! `kundtjanst`), its prompts as tones, the daemon with or without an agents file, agents' phones that register,
//! and a caller who joins the line.

use super::agent::{AgentPhone, write_agents_file};
use super::audio;
use super::audio::CALLER_HZ;
use super::sdp::{PCMA, PCMU};
use super::{
    Call, Caller, Daemon, Fixture, FunctionEndpoint, IncomingCall, RtpPeer, SECOND, event_pt,
};
use std::time::{Duration, Instant};

/// The test hold music: one second of a tone, looped by the daemon.
pub const MUSIC_HZ: u32 = 2900;
/// "Du är nummer" and "i kön" in the test prompts.
pub const POSITION_HZ: u32 = 3300;
/// The number prompts: `number-<n>` is this tone for n × 100 ms, so the place said can be read off its length.
pub const NUMBER_HZ: u32 = 3700;

/// The queue's keys as a test sets them; `agents` are YAML list items.
pub struct QueueSpec {
    pub agents: Vec<String>,
    pub strategy: &'static str,
    pub ring_timeout: &'static str,
    pub wrap_up: &'static str,
    pub max_wait: &'static str,
    pub overflow: &'static str,
    pub music: &'static str,
    pub announce_position: Option<&'static str>,
}

impl QueueSpec {
    pub fn new(agents: &[String]) -> QueueSpec {
        QueueSpec {
            agents: agents.to_vec(),
            strategy: "longest-idle",
            ring_timeout: "10s",
            wrap_up: "0s",
            max_wait: "10m",
            overflow: "{ route: kundtjanst }",
            music: "test-music",
            announce_position: None,
        }
    }

    /// The menu: "1" goes to the `it` queue (transfer prompt `welcome` first); `kundtjanst` bridges to `kt`.
    pub fn yaml(&self, kt: &str) -> String {
        let agents: Vec<String> = self.agents.iter().map(|a| format!("\"{a}\"")).collect();
        let announce = self
            .announce_position
            .map(|every| format!("      announce_position: {every}\n"))
            .unwrap_or_default();
        format!(
            r#"name: Kö-test
functions:
  it:
    name: IT Kundservice
    transfer: queue
    transfer_prompt: welcome
    failure_prompt: busy
    queue:
      agents: [{}]
      strategy: {}
      ring_timeout: {}
      wrap_up: {}
      max_wait: {}
      overflow: {}
      music: {}
{announce}  kundtjanst:
    name: Kundtjänst
    target: "{kt}"
menu:
  prompt: main-menu
  timeout: 5s
  options:
    "1": {{ route: it }}
"#,
            agents.join(", "),
            self.strategy,
            self.ring_timeout,
            self.wrap_up,
            self.max_wait,
            self.overflow,
            self.music,
        )
    }
}

/// The standard test prompts plus the queue's: test music, the shipped hold music, and position words as tones.
pub fn queue_fixture() -> Fixture {
    let fixture = Fixture::new();
    let prompts = &fixture.prompts;
    let tone = |name: &str, freq: u32, seconds: f64| {
        audio::write_tone_wav(
            &prompts.join(format!("{name}.wav")),
            f64::from(freq),
            seconds,
            8000,
            1,
        )
        .expect("write a queue test prompt");
    };
    tone("test-music", MUSIC_HZ, 1.0);
    tone("queue-position", POSITION_HZ, 0.4);
    tone("queue-in-line", POSITION_HZ, 0.3);
    tone("queue-position-many", POSITION_HZ, 1.0);
    for n in 1..=20 {
        tone(&format!("number-{n}"), NUMBER_HZ, 0.1 * n as f64);
    }
    let shipped = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("prompts/hold-music.wav");
    std::fs::copy(shipped, prompts.join("hold-music.wav")).expect("copy the shipped hold music");
    fixture
}

pub fn start(spec: &QueueSpec, kt: &FunctionEndpoint) -> Daemon {
    let fixture = queue_fixture();
    fixture.write_menu(&spec.yaml(&kt.uri("kt")));
    Daemon::start(fixture)
}

pub const ANNA: (&str, &str) = ("it-anna", "Sommar2026!");
pub const BO: (&str, &str) = ("it-bo", "vinter-bo");

/// The daemon with an agents file of Anna and Bo (registrations may be as short as 1 s).
pub fn start_with_agents(spec: &QueueSpec, kt: &FunctionEndpoint) -> Daemon {
    let fixture = queue_fixture();
    fixture.write_menu(&spec.yaml(&kt.uri("kt")));
    let agents = fixture.path("agents.yaml");
    write_agents_file(&agents, "min_expires: 1s\n", &[ANNA, BO]);
    let agents = agents.to_str().expect("utf-8 temp path").to_owned();
    Daemon::start_with(fixture, &["--agents", &agents])
}

/// An agent's phone that registers for `expires` seconds and can then answer offers at its contact.
pub fn registered_phone(
    daemon: &Daemon,
    (id, password): (&str, &str),
    expires: u32,
) -> (AgentPhone, FunctionEndpoint) {
    let mut phone = AgentPhone::new(daemon.sip, id, password);
    let response = phone.register(expires);
    assert_eq!(
        response.status(),
        Some(200),
        "REGISTER of {id}: {}",
        response.summary()
    );
    let answering = FunctionEndpoint {
        sip: phone.sip.clone(),
        rtp: RtpPeer::loopback(),
        codecs: vec![PCMU, PCMA],
    };
    (phone, answering)
}

/// A caller who dials in and presses 1 for the IT queue. Returns the call and when the digit went.
pub fn call_the_queue(daemon: &Daemon, number: &str) -> (Caller, Call, Instant) {
    call_and_press(daemon, number, '1')
}

/// A caller who dials in and presses `digit`. Returns the call and when the digit went.
pub fn call_and_press(daemon: &Daemon, number: &str, digit: char) -> (Caller, Call, Instant) {
    let mut caller = Caller::udp(daemon.sip);
    caller.number = number.to_string();
    let (call, answer, _) = caller.call(daemon, &[PCMU, PCMA], CALLER_HZ);
    caller
        .rtp
        .send_digit(digit, event_pt(&answer), Duration::from_millis(100));
    (caller, call, Instant::now())
}

/// The agent's phone takes the daemon's CANCEL of a ringing offer: 200 for the CANCEL, 487 for the INVITE.
pub fn expect_cancel(offer: &IncomingCall) {
    let cancel = offer.call.expect_request("CANCEL", 10 * SECOND);
    offer.call.respond(&cancel, 200, "OK");
    offer.reject(487, "Request Terminated", 5 * SECOND);
}
