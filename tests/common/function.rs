//! FunctionEndpoint: the support function's phone as a UAS on 127.0.0.1 (an ephemeral UDP port), with its own
//! RTP stream, for the daemon to bridge callers to.

use super::rtp::{RtpPeer, Sound};
use super::sdp;
use super::sip::{IncomingCall, SipPeer};
use std::net::SocketAddr;
use std::time::Duration;

pub struct FunctionEndpoint {
    pub sip: SipPeer,
    pub rtp: RtpPeer,
    /// G.711 payload types this phone accepts, in its preference order.
    pub codecs: Vec<u8>,
}

impl FunctionEndpoint {
    pub fn new(codecs: &[u8]) -> FunctionEndpoint {
        let bind: SocketAddr = "127.0.0.1:0".parse().expect("loopback address");
        let sip = SipPeer::udp(bind, None).expect("bind the function's SIP socket");
        // As a phone does, and as the daemon's target probes expect.
        sip.auto_answer("OPTIONS");
        FunctionEndpoint {
            sip,
            rtp: RtpPeer::loopback(),
            codecs: codecs.to_vec(),
        }
    }

    /// The target URI the menu's function points at.
    pub fn uri(&self, user: &str) -> String {
        format!("sip:{user}@{}", self.sip.local())
    }

    /// Waits for the daemon's INVITE; our requests in that dialog go back to where it came from.
    pub fn expect_call(&self, timeout: Duration) -> IncomingCall {
        let invite = self.sip.expect_request("INVITE", None, timeout);
        if let super::sip::Origin::Udp(from) = invite.origin {
            self.sip.set_remote(from);
        }
        self.sip.incoming(invite)
    }

    /// 180, then 200 with an answer choosing the first offered codec we accept; starts sending `tone` in it.
    /// Returns the payload type chosen.
    pub fn answer(&self, call: &mut IncomingCall, tone: u32) -> u8 {
        call.send_provisional(180, "Ringing");
        let offer = call.offer().unwrap_or_else(|| {
            panic!(
                "the daemon's INVITE has no usable SDP: {}",
                call.invite.msg.body_str()
            )
        });
        let pt = offer
            .payloads
            .iter()
            .copied()
            .find(|pt| self.codecs.contains(pt))
            .unwrap_or_else(|| {
                panic!(
                    "the daemon offered {:?}; the function accepts {:?}",
                    offer.payloads, self.codecs
                )
            });
        let answer = sdp::build(self.rtp.local, &[pt], offer.telephone_event, "sendrecv");
        self.rtp.set_remote(offer.media_addr());
        self.rtp.play(Sound::Tone { freq: tone, pt });
        call.answer(&answer, Duration::from_secs(10));
        pt
    }
}
