//! An agent's phone for the tests: REGISTERs to the daemon over UDP and answers its digest challenge the way a
//! phone does (RFC 7616: qop=auth, a counting nc, a cnonce), with MD5 or SHA-256 computed here, independently of
//! the daemon's code. Also writes agents files with HA1s computed here.

use super::sip::{SipPeer, new_branch, random_token};
use super::sipmsg::{self, SipMessage};
use md5::Md5;
use sha2::{Digest, Sha256};
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

pub const REALM: &str = "knappval";

pub fn hash(algorithm: &str, data: &str) -> String {
    let bytes: Vec<u8> = if algorithm.eq_ignore_ascii_case("SHA-256") {
        Sha256::digest(data.as_bytes()).to_vec()
    } else {
        Md5::digest(data.as_bytes()).to_vec()
    };
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `  id: { ha1_md5: ..., ha1_sha256: ... }` for an agents file.
pub fn agent_line(id: &str, password: &str) -> String {
    format!(
        "  {id}: {{ name: \"Agent {id}\", ha1_md5: {}, ha1_sha256: {} }}\n",
        hash("MD5", &format!("{id}:{REALM}:{password}")),
        hash("SHA-256", &format!("{id}:{REALM}:{password}"))
    )
}

/// Writes an agents file with `settings` lines (e.g. `min_expires: 1s`) and these (id, password) agents.
pub fn write_agents_file(path: &Path, settings: &str, agents: &[(&str, &str)]) {
    let mut text = format!("{settings}agents:\n");
    for (id, password) in agents {
        text.push_str(&agent_line(id, password));
    }
    std::fs::write(path, text).expect("write the agents file");
}

/// One `WWW-Authenticate: Digest ...` as the phone reads it.
#[derive(Debug, Clone)]
pub struct Challenge {
    pub realm: String,
    pub nonce: String,
    pub algorithm: String,
    pub qop: Option<String>,
    pub stale: bool,
}

/// Every challenge in a 401, in order.
pub fn challenges(response: &SipMessage) -> Vec<Challenge> {
    response
        .header_all("www-authenticate")
        .into_iter()
        .map(|value| {
            let rest = value.trim();
            assert!(
                rest.to_ascii_lowercase().starts_with("digest "),
                "not a digest challenge: {value}"
            );
            let field = |name: &str| auth_param(&rest[7..], name);
            Challenge {
                realm: field("realm").expect("realm"),
                nonce: field("nonce").expect("nonce"),
                algorithm: field("algorithm").unwrap_or_else(|| "MD5".into()),
                qop: field("qop"),
                stale: field("stale").is_some_and(|s| s.eq_ignore_ascii_case("true")),
            }
        })
        .collect()
}

/// A `name=value` or `name="value"` parameter of a challenge.
fn auth_param(params: &str, name: &str) -> Option<String> {
    let mut rest = params;
    while !rest.trim().is_empty() {
        rest = rest.trim_start_matches([',', ' ']);
        let (key, after) = rest.split_once('=')?;
        let (value, after) = match after.strip_prefix('"') {
            Some(quoted) => {
                let (value, after) = quoted.split_once('"')?;
                (value, after)
            }
            None => after.split_once(',').unwrap_or((after, "")),
        };
        if key.trim().eq_ignore_ascii_case(name) {
            return Some(value.trim().to_owned());
        }
        rest = after;
    }
    None
}

/// An agent's phone.
pub struct AgentPhone {
    pub sip: SipPeer,
    pub id: String,
    pub password: String,
    daemon: SocketAddr,
    call_id: String,
    cseq: u32,
    /// Nonce-count per nonce, as a phone keeps it.
    nc: u32,
    cnonce: String,
}

impl AgentPhone {
    pub fn new(daemon: SocketAddr, id: &str, password: &str) -> AgentPhone {
        let sip = SipPeer::udp(SocketAddr::new(daemon.ip(), 0), Some(daemon))
            .expect("bind the agent phone's socket");
        AgentPhone::on(sip, daemon, id, password)
    }

    /// A phone that registers over a TCP connection to the daemon.
    pub fn tcp(daemon: SocketAddr, id: &str, password: &str) -> AgentPhone {
        let sip = SipPeer::tcp(daemon).expect("connect to the daemon over TCP");
        AgentPhone::on(sip, daemon, id, password)
    }

    fn on(sip: SipPeer, daemon: SocketAddr, id: &str, password: &str) -> AgentPhone {
        AgentPhone {
            sip,
            id: id.into(),
            password: password.into(),
            daemon,
            call_id: format!("reg-{}", random_token()),
            cseq: 0,
            nc: 0,
            cnonce: random_token(),
        }
    }

    /// The phone's own address, as it registers it.
    pub fn contact(&self) -> String {
        super::sipmsg::uri_of(&self.sip.contact(&self.id))
    }

    /// A REGISTER for our address of record with `extra` header lines (the next CSeq, a new branch).
    pub fn request(&mut self, extra: &[String]) -> String {
        self.cseq += 1;
        let aor = format!("sip:{}@{}", self.id, self.daemon);
        let mut text = format!(
            "REGISTER sip:{} SIP/2.0\r\nVia: {}\r\nFrom: <{aor}>;tag={}\r\nTo: <{aor}>\r\nCall-ID: {}\r\n\
             CSeq: {} REGISTER\r\nMax-Forwards: 70\r\nUser-Agent: knappval-test-agent\r\n",
            self.daemon,
            self.sip.via(&new_branch()),
            random_token(),
            self.call_id,
            self.cseq
        );
        for line in extra {
            text.push_str(line);
            text.push_str("\r\n");
        }
        text.push_str("Content-Length: 0\r\n\r\n");
        text
    }

    /// The Authorization line answering `challenge` for the next nonce-count.
    pub fn authorization(&mut self, challenge: &Challenge) -> String {
        self.nc += 1;
        let nc = format!("{:08x}", self.nc);
        let uri = format!("sip:{}", self.daemon);
        let algorithm = &challenge.algorithm;
        let ha1 = hash(
            algorithm,
            &format!("{}:{}:{}", self.id, challenge.realm, self.password),
        );
        let ha2 = hash(algorithm, &format!("REGISTER:{uri}"));
        let response = hash(
            algorithm,
            &format!("{ha1}:{}:{nc}:{}:auth:{ha2}", challenge.nonce, self.cnonce),
        );
        format!(
            "Authorization: Digest username=\"{}\", realm=\"{}\", nonce=\"{}\", uri=\"{uri}\", \
             response=\"{response}\", algorithm={algorithm}, qop=auth, nc={nc}, cnonce=\"{}\"",
            self.id, challenge.realm, challenge.nonce, self.cnonce
        )
    }

    /// Sends `request` and waits (retransmitting) for its final response.
    pub fn send(&self, request: &str) -> SipMessage {
        self.sip
            .transact(request, Duration::from_secs(10), &mut Vec::new())
            .unwrap_or_else(|| {
                panic!(
                    "no final response to REGISTER within 10 s; inbox: {}",
                    self.sip.inbox_summary()
                )
            })
    }

    /// A REGISTER without credentials; asserts the 401 and returns its challenges.
    pub fn challenge(&mut self, extra: &[String]) -> Vec<Challenge> {
        let request = self.request(extra);
        let response = self.send(&request);
        assert_eq!(
            response.status(),
            Some(401),
            "unauthenticated REGISTER: {}",
            response.summary()
        );
        let offered = challenges(&response);
        assert!(!offered.is_empty(), "401 without a challenge");
        self.nc = 0;
        offered
    }

    /// The whole exchange a phone does: REGISTER, 401, REGISTER with credentials for the first challenge of
    /// `algorithm`. Returns the final response.
    pub fn register_with(&mut self, extra: &[String], algorithm: &str) -> SipMessage {
        let offered = self.challenge(extra);
        let challenge = offered
            .iter()
            .find(|c| c.algorithm.eq_ignore_ascii_case(algorithm))
            .unwrap_or_else(|| panic!("no {algorithm} challenge in {offered:?}"))
            .clone();
        let mut lines = extra.to_vec();
        lines.push(self.authorization(&challenge));
        let request = self.request(&lines);
        self.send(&request)
    }

    /// Registers our contact for `expires` seconds with MD5.
    pub fn register(&mut self, expires: u32) -> SipMessage {
        let lines = [
            format!("Contact: <{}>", self.contact()),
            format!("Expires: {expires}"),
        ];
        self.register_with(&lines, "MD5")
    }
}

/// The `expires` parameter of the Contact in `response` for `uri`, if listed.
pub fn listed_expiry(response: &SipMessage, uri: &str) -> Option<u64> {
    response
        .header_all("contact")
        .into_iter()
        .flat_map(|value| value.split(','))
        .find(|value| sipmsg::uri_of(value) == uri)
        .and_then(|value| sipmsg::param(value, "expires"))
        .and_then(|e| e.parse().ok())
}
