//! Test support for knappval's black-box tests: real SIP and RTP peers over loopback sockets, the daemon as a
//! child process, audio analysis, and SIPp. Shared by several test crates, each using a part of it, hence the
//! crate-wide `dead_code` allowance below.
#![allow(dead_code, unused_imports)]

pub mod agent;
pub mod audio;
pub mod browser;
pub mod daemon;
pub mod function;
pub mod pcap;
pub mod queue;
pub mod rtp;
pub mod sdp;
pub mod sip;
pub mod sipmsg;
pub mod sipp;
pub mod transferee;

pub use daemon::{Daemon, Fixture, MenuSpec};
pub use function::FunctionEndpoint;
pub use rtp::{RtpPeer, Sound};
pub use sip::{Call, IncomingCall, SipPeer};

use std::net::SocketAddr;
use std::time::{Duration, Instant};

pub const SECOND: Duration = Duration::from_secs(1);

/// The standard test menu (`it` bridges, `kundtjanst` refers, each to its own endpoint), run with these extra
/// `knappval run` flags.
pub fn standard_daemon(extra: &[&str]) -> (Daemon, FunctionEndpoint, FunctionEndpoint) {
    let it = FunctionEndpoint::new(&[sdp::PCMU]);
    let kt = FunctionEndpoint::new(&[sdp::PCMU]);
    let spec = MenuSpec::new(&it.uri("it"), &kt.uri("kt"));
    let fixture = Fixture::new();
    fixture.write_menu(&spec.yaml());
    (Daemon::start_with(fixture, extra), it, kt)
}

/// Polls `done` every 40 ms until it holds or `timeout` passes; then panics with `describe()`.
pub fn wait_until(
    timeout: Duration,
    mut done: impl FnMut() -> bool,
    describe: impl Fn() -> String,
) {
    let deadline = Instant::now() + timeout;
    while !done() {
        if Instant::now() > deadline {
            panic!("timed out after {timeout:?}: {}", describe());
        }
        std::thread::sleep(Duration::from_millis(40));
    }
}

/// Waits up to `timeout` for `child` to exit; past that kills it, reaps it and returns `None`.
pub fn wait_child(
    child: &mut std::process::Child,
    timeout: Duration,
) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Asserts the fields of a contact record every outcome shares, and returns it for further checks.
pub fn assert_record<'a>(
    record: &'a serde_json::Value,
    outcome: &str,
    function: Option<&str>,
    digits: &str,
    path: &[&str],
) -> &'a serde_json::Value {
    let context = || format!("record: {record:#}");
    assert_eq!(record["outcome"], outcome, "outcome; {}", context());
    match function {
        Some(f) => assert_eq!(record["function"], f, "function; {}", context()),
        None => assert!(
            record["function"].is_null(),
            "no function expected; {}",
            context()
        ),
    }
    assert_eq!(record["digits"], digits, "digits; {}", context());
    let expected_path: Vec<serde_json::Value> = path.iter().map(|p| serde_json::json!(p)).collect();
    assert_eq!(
        record["path"],
        serde_json::Value::Array(expected_path),
        "path; {}",
        context()
    );
    for field in [
        "call_id",
        "from",
        "to",
        "started_at",
        "ended_at",
        "end_reason",
    ] {
        assert!(!record[field].is_null(), "{field} missing; {}", context());
    }
    for stamp in ["started_at", "answered_at", "ended_at", "transferred_at"] {
        if let Some(text) = record[stamp].as_str() {
            assert!(
                time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
                    .is_ok(),
                "{stamp} is not RFC 3339; {}",
                context()
            );
        }
    }
    assert!(
        record["duration_ms"].as_u64().is_some(),
        "duration_ms; {}",
        context()
    );
    record
}

/// A caller: a SIP peer towards the daemon and the phone's RTP stream, in one place.
pub struct Caller {
    pub sip: SipPeer,
    pub rtp: RtpPeer,
    /// The number the caller dials from (user part of From).
    pub number: String,
}

impl Caller {
    pub fn udp(daemon: SocketAddr) -> Caller {
        let bind = SocketAddr::new(daemon.ip(), 0);
        let sip = SipPeer::udp(bind, Some(daemon)).expect("bind the caller's SIP socket");
        let rtp = RtpPeer::bind(daemon.ip()).expect("bind the caller's RTP socket");
        Caller {
            sip,
            rtp,
            number: "0701234567".into(),
        }
    }

    pub fn tcp(daemon: SocketAddr) -> Caller {
        let sip = SipPeer::tcp(daemon).expect("connect to the daemon over TCP");
        let rtp = RtpPeer::bind(daemon.ip()).expect("bind the caller's RTP socket");
        Caller {
            sip,
            rtp,
            number: "0701234567".into(),
        }
    }

    pub fn caller_uri(&self) -> String {
        format!("sip:{}@{}", self.number, self.sip.local())
    }

    /// Sends `method` outside any dialog and returns the final response's status.
    pub fn out_of_dialog(&self, daemon: &Daemon, method: &str) -> u16 {
        let request = format!(
            "{method} {} SIP/2.0\r\nVia: {}\r\nMax-Forwards: 70\r\nFrom: <{}>;tag={}\r\nTo: <{}>\r\n\
Call-ID: {}@knappval-test\r\nCSeq: 1 {method}\r\nContact: {}\r\nAccept: application/sdp\r\nContent-Length: 0\r\n\r\n",
            daemon.uri(),
            self.sip.via(&sip::new_branch()),
            self.caller_uri(),
            sip::random_token(),
            daemon.uri(),
            sip::random_token(),
            self.sip.contact("caller"),
        );
        let mut provisional = Vec::new();
        self.sip
            .transact(&request, 10 * SECOND, &mut provisional)
            .and_then(|r| r.status())
            .unwrap_or_else(|| panic!("no response to {method}"))
    }

    /// An offer of `codecs` with telephone-event 101.
    pub fn offer(&self, codecs: &[u8]) -> String {
        sdp::build(self.rtp.local, codecs, Some(101), "sendrecv")
    }

    /// Calls the daemon offering `codecs`, expects 200 with an SDP answer in one of them, and starts sending
    /// `tone` in the answered codec to the answered address. Returns the dialog, the answer and when it began.
    pub fn call(&self, daemon: &Daemon, codecs: &[u8], tone: u32) -> (Call, sdp::SdpInfo, Instant) {
        let mut call = self.sip.invite(
            &daemon.uri(),
            &self.caller_uri(),
            Some(&self.offer(codecs)),
            &[],
        );
        let started = Instant::now();
        let response = call.start(10 * SECOND);
        assert_eq!(
            response.status(),
            Some(200),
            "INVITE answered {}",
            response.summary()
        );
        let answer = sdp::parse(&response.body_str())
            .unwrap_or_else(|| panic!("200 OK without usable SDP: {:?}", response.body_str()));
        let pt = answer
            .first_codec()
            .filter(|pt| codecs.contains(pt))
            .unwrap_or_else(|| {
                panic!(
                    "answer {:?} picks none of the offered {codecs:?}",
                    answer.payloads
                )
            });
        self.rtp.set_remote(answer.media_addr());
        self.rtp.play(Sound::Tone { freq: tone, pt });
        (call, answer, started)
    }
}

/// The telephone-event payload type the daemon answered (or the one we offered).
pub fn event_pt(answer: &sdp::SdpInfo) -> u8 {
    answer.telephone_event.unwrap_or(101)
}
