//! Test support for knappval's black-box tests: real SIP and RTP peers over loopback sockets, the daemon as a
//! child process, audio analysis, and SIPp. Shared by several test crates, each using a part of it, hence the
//! crate-wide `dead_code` allowance below.
#![allow(dead_code, unused_imports)]

pub mod audio;
pub mod daemon;
pub mod function;
pub mod pcap;
pub mod rtp;
pub mod sdp;
pub mod sip;
pub mod sipmsg;
pub mod sipp;

pub use daemon::{Daemon, Fixture, MenuSpec};
pub use function::FunctionEndpoint;
pub use rtp::{RtpPeer, Sound};
pub use sip::{Call, IncomingCall, SipPeer};

use std::net::SocketAddr;
use std::time::{Duration, Instant};

pub const SECOND: Duration = Duration::from_secs(1);

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

    pub fn from_uri(&self) -> String {
        format!("sip:{}@{}", self.number, self.sip.local())
    }

    /// An offer of `codecs` with telephone-event 101.
    pub fn offer(&self, codecs: &[u8]) -> String {
        sdp::build(self.rtp.local, codecs, Some(101), "sendrecv")
    }

    /// Calls the daemon offering `codecs`, expects 200 with an SDP answer, and starts sending `sound` to the
    /// answered address. Returns the dialog and the answer.
    pub fn call(
        &self,
        daemon: &Daemon,
        codecs: &[u8],
        sound: Sound,
    ) -> (Call, sdp::SdpInfo, Instant) {
        let mut call = self.sip.invite(
            &daemon.uri(),
            &self.from_uri(),
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
        self.rtp.set_remote(answer.media_addr());
        self.rtp.play(sound);
        (call, answer, started)
    }
}

/// The telephone-event payload type the daemon answered (or the one we offered).
pub fn event_pt(answer: &sdp::SdpInfo) -> u8 {
    answer.telephone_event.unwrap_or(101)
}
