//! The registrar: agents' phones REGISTER to knappval's own address (`sip:<agent id>@<knappval's address>`) with
//! digest authentication, and the queues ask which contacts an agent has right now.
//!
//! The interface the rest of the daemon uses:
//! - [`Registrar::contacts`]`(agent_id, now) -> Vec<Uri>`: the agent's unexpired contacts, first-registered
//!   first. An offer forks to all of them.
//! - [`Registrar::subscribe`]`() -> broadcast::Receiver<RegistrationChange>`: `{ agent, registered }` each time
//!   an agent gains its first contact (`true`) or loses its last (`false`), by REGISTER or by expiry.
//! - [`Registrar::knows`]`(agent_id)`: whether the agents file has that agent.
//! - [`Registrar::agents`]: the read-out behind `GET /api/v1/agents`.
//!
//! `Registrar` is an `Arc` inside: clone it freely. The decisions are sans-IO: [`Registrar::register`] takes a
//! REGISTER and `now` and returns the answer and what happened (for the log); [`Bindings`] is the table of
//! contacts with explicit time; [`Registrar::expire`] is the sweep. The SIP dispatcher (`super::endpoint`) calls
//! `register` and sends the answer; [`Registrar::run_expiry`] is the one task that runs the sweep each second.
//!
//! Choices, where the RFCs leave room:
//! - A 401 carries one challenge per offered algorithm, in the admin's order (RFC 8760 §2.4); by default only
//!   MD5, because real phones (baresip 1.0) fail on a 401 with several.
//! - Wrong password, unknown agent id, or credentials for another agent's address: `403 Forbidden`, the same
//!   answer for each, so the registrar does not tell which agent ids exist. Every REGISTER without credentials
//!   gets its 401 first, whoever it names.
//! - A nonce too old: 401 with `stale=true` (the phone retries without asking its user), decided before the
//!   digest is checked, so that this answer too is the same for every agent id; a wrong password then gets its
//!   403 on the retry. A nonce this process did not mint (forged, or from before a restart): 401 with a fresh
//!   nonce.
//! - A nonce-count used before with the same nonce (a replay): 401 with a fresh nonce, nothing registered.
//! - Password guessing ([`lockout`]): 10 refused passwords for one agent id from one address within 10 minutes
//!   lock that address out of that agent id for 10 minutes: its REGISTERs for it get 403 without the digest
//!   being checked. Other agents, and the same agent from other addresses, register as before.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rsipstack::sip::prelude::HeadersExt;
use rsipstack::sip::typed::Contact;
use rsipstack::sip::{Header, Request, StatusCode, Uri};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use super::digest::{Credentials, NonceCheck, NonceKey};
use crate::agents::Agents;

pub mod lockout;

/// Sent when an agent gains its first contact or loses its last.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistrationChange {
    pub agent: String,
    pub registered: bool,
}

/// How long a registration lasts when the phone names no expiry (RFC 3261 §10.2.1.1 suggests 3600 s).
const DEFAULT_EXPIRES: Duration = Duration::from_secs(3600);

/// Room for bursts of changes before a slow subscriber starts missing some (it then sees `Lagged` and should
/// re-read [`Registrar::contacts`]).
const CHANGES_CAPACITY: usize = 256;

/// The agents' registrations. Clone freely: all clones share one table.
#[derive(Clone)]
pub struct Registrar {
    inner: Arc<Inner>,
}

struct Inner {
    agents: Agents,
    nonces: NonceKey,
    state: Mutex<State>,
    changes: broadcast::Sender<RegistrationChange>,
}

#[derive(Default)]
struct State {
    bindings: Bindings,
    /// Nonces a client has authenticated with, and the highest nonce-count used with each; forgotten when the
    /// nonce expires.
    used_nonces: HashMap<String, UsedNonce>,
    /// Refused passwords per address and agent id.
    lockout: lockout::Lockout,
}

struct UsedNonce {
    last_count: u32,
    expires_at: Instant,
}

/// What to answer a REGISTER, and what happened, for the log (never with credentials in it).
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: Vec<Header>,
    pub outcome: Outcome,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// No usable credentials: challenged.
    Challenged,
    /// The nonce was too old: challenged again with stale=true.
    Stale,
    /// The nonce was not minted here: challenged again.
    ForeignNonce,
    /// A nonce-count already used: challenged again, nothing changed.
    Replayed { agent: String },
    /// The digest did not match (wrong password).
    WrongPassword { agent: String },
    /// No such agent, or credentials of one agent for another's address.
    UnknownAgent { agent: String },
    /// Refused unchecked: this address got the password for this agent id wrong too often
    /// ([`lockout::MAX_FAILURES`] times within [`lockout::WINDOW`]). `started` is true for the failure that
    /// began the lockout (it is logged loudly once; the refusals after it quietly).
    LockedOut {
        agent: String,
        started: bool,
        for_: Duration,
    },
    /// Bindings set or read; `contacts` is how many the agent has now, `changed` whether the set of contacts
    /// changed (a refresh of the same contacts did not).
    Registered {
        agent: String,
        contacts: usize,
        changed: bool,
    },
    /// Refused for what the request asked (bad Contact, too brief, out of order).
    Refused { agent: String, reason: String },
    /// The request itself was unusable (no To user, unreadable Authorization).
    BadRequest { reason: String },
}

/// One agent as `GET /api/v1/agents` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AgentView {
    pub id: String,
    pub name: String,
    pub contacts: Vec<ContactView>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct ContactView {
    pub uri: String,
    pub expires_in_s: u64,
}

impl Registrar {
    /// A registrar for the agents of `agents` (already validated), with a fresh secret for its nonces.
    pub fn new(agents: Agents) -> Registrar {
        Registrar::with_secret(agents, rand::random(), Instant::now())
    }

    fn with_secret(agents: Agents, secret: [u8; 32], epoch: Instant) -> Registrar {
        let (changes, _) = broadcast::channel(CHANGES_CAPACITY);
        Registrar {
            inner: Arc::new(Inner {
                agents,
                nonces: NonceKey::new(secret, epoch),
                state: Mutex::new(State::default()),
                changes,
            }),
        }
    }

    /// The agent's unexpired contacts at `now`, first-registered first. Empty for an unknown agent.
    pub fn contacts(&self, agent_id: &str, now: Instant) -> Vec<Uri> {
        self.state()
            .bindings
            .current(agent_id, now)
            .map(|b| b.uri.clone())
            .collect()
    }

    /// Changes from now on: an agent gained its first contact or lost its last.
    pub fn subscribe(&self) -> broadcast::Receiver<RegistrationChange> {
        self.inner.changes.subscribe()
    }

    /// Whether the agents file has `agent_id`.
    pub fn knows(&self, agent_id: &str) -> bool {
        self.inner.agents.knows(agent_id)
    }

    /// Every agent in the file, by id, with its current contacts.
    pub fn agents(&self, now: Instant) -> Vec<AgentView> {
        let state = self.state();
        self.inner
            .agents
            .agents
            .iter()
            .map(|(id, agent)| AgentView {
                id: id.clone(),
                name: agent.name.clone().unwrap_or_else(|| id.clone()),
                contacts: state
                    .bindings
                    .current(id, now)
                    .map(|b| ContactView {
                        uri: b.uri.to_string(),
                        expires_in_s: whole_seconds_left(b.expires_at, now),
                    })
                    .collect(),
            })
            .collect()
    }

    /// Drops what expired by `now`: bindings (announcing agents that lost their last contact) and used nonces.
    pub fn expire(&self, now: Instant) {
        let mut state = self.state();
        state.used_nonces.retain(|_, used| used.expires_at > now);
        state.lockout.forget(now);
        self.expire_bindings(&mut state, now);
    }

    /// Sent under the table's lock, so that subscribers see changes in the order they happened.
    fn expire_bindings(&self, state: &mut State, now: Instant) {
        for agent in state.bindings.expire(now) {
            tracing::info!(%agent, "agent unregistered: its registration expired");
            self.announce(agent, false);
        }
    }

    /// Runs [`expire`](Self::expire) every second until `stop`.
    pub async fn run_expiry(self, stop: CancellationToken) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tick.tick() => self.expire(Instant::now()),
            }
        }
    }

    fn announce(&self, agent: String, registered: bool) {
        // No subscriber (no queue yet) is fine: the change is in the table either way.
        let _ = self
            .inner
            .changes
            .send(RegistrationChange { agent, registered });
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere mid-update leaves the table usable; refusing every REGISTER after it would be worse.
        self.inner
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Decides a REGISTER that came from `source` at `now`.
    pub fn register(&self, request: &Request, source: IpAddr, now: Instant) -> Answer {
        let agents = &self.inner.agents;
        let Some(agent) = request
            .to_header()
            .ok()
            .and_then(|to| to.uri().ok())
            .and_then(|uri| uri.user().map(str::to_owned))
        else {
            return bad_request("To has no agent id (sip:<agent id>@<knappval's address>)");
        };
        let credentials = match self.credentials(request) {
            Ok(Some(credentials)) => credentials,
            Ok(None) => return self.challenge(now, false, Outcome::Challenged),
            Err(reason) => return bad_request(reason),
        };
        if !agents.algorithms.contains(&credentials.algorithm) {
            return self.challenge(now, false, Outcome::Challenged);
        }
        let nonce_expires =
            match self
                .inner
                .nonces
                .check(&credentials.nonce, now, agents.nonce_lifetime)
            {
                NonceCheck::Fresh { expires_at } => expires_at,
                NonceCheck::Stale => return self.challenge(now, true, Outcome::Stale),
                NonceCheck::Foreign => return self.challenge(now, false, Outcome::ForeignNonce),
            };
        let guesser = lockout::key(
            source,
            agents
                .agents
                .contains_key(&credentials.username)
                .then(|| credentials.username.clone()),
        );
        if let Some(until) = self.state().lockout.locked_until(&guesser, now) {
            return forbidden(Outcome::LockedOut {
                agent,
                started: false,
                for_: Duration::from_secs(whole_seconds_left(until, now)),
            });
        }
        let refused = match agents
            .agents
            .get(&agent)
            .filter(|_| credentials.username == agent)
            .and_then(|a| a.ha1(credentials.algorithm))
        {
            None => Some(Outcome::UnknownAgent {
                agent: agent.clone(),
            }),
            Some(ha1) if !credentials.verify(ha1, request.method.to_string().as_str()) => {
                Some(Outcome::WrongPassword {
                    agent: agent.clone(),
                })
            }
            Some(_) => None,
        };
        if let Some(outcome) = refused {
            let began_lockout = self.state().lockout.failed(guesser, now);
            return forbidden(if began_lockout {
                Outcome::LockedOut {
                    agent,
                    started: true,
                    for_: lockout::LOCKOUT,
                }
            } else {
                outcome
            });
        }

        let mut state = self.state();
        // Without qop there is no count: such a nonce is good for one request.
        let count = credentials.nonce_count().unwrap_or(u32::MAX);
        match state.used_nonces.get_mut(&credentials.nonce) {
            Some(used) if count <= used.last_count => {
                drop(state);
                return self.challenge(now, false, Outcome::Replayed { agent });
            }
            Some(used) => used.last_count = count,
            None => {
                state.used_nonces.insert(
                    credentials.nonce.clone(),
                    UsedNonce {
                        last_count: count,
                        expires_at: nonce_expires,
                    },
                );
            }
        }
        // Only a fresh request forgives: a replayed one proves nothing about who sends it.
        state.lockout.succeeded(&guesser);

        let update = match binding_update(request, agents) {
            Ok(update) => update,
            Err(refusal) => {
                let mut headers = vec![];
                if refusal.status == StatusCode::IntervalTooBrief {
                    headers.push(Header::MinExpires(
                        agents.min_expires.as_secs().to_string().into(),
                    ));
                }
                return Answer {
                    status: refusal.status,
                    headers,
                    outcome: Outcome::Refused {
                        agent,
                        reason: refusal.reason,
                    },
                };
            }
        };
        let (call_id, cseq) = match (request.call_id_header(), request.cseq_header()) {
            (Ok(call_id), Ok(cseq)) => (call_id.value().to_owned(), cseq.seq().unwrap_or(0)),
            _ => return bad_request("no Call-ID or CSeq"),
        };
        self.expire_bindings(&mut state, now);
        let keys = |bindings: &Bindings| -> Vec<String> {
            bindings
                .current(&agent, now)
                .map(|b| b.key.clone())
                .collect()
        };
        let before = keys(&state.bindings);
        if let Err(error) = state.bindings.apply(&agent, &update, &call_id, cseq, now) {
            let status = match error {
                BindingError::OutOfOrder { .. } => StatusCode::BadRequest,
                BindingError::TooManyContacts => StatusCode::Forbidden,
            };
            return Answer {
                status,
                headers: vec![],
                outcome: Outcome::Refused {
                    agent,
                    reason: error.to_string(),
                },
            };
        }
        let changed = keys(&state.bindings) != before;
        let headers: Vec<Header> = state
            .bindings
            .current(&agent, now)
            .map(|b| {
                Header::Contact(
                    format!(
                        "<{}>;expires={}",
                        b.uri,
                        whole_seconds_left(b.expires_at, now)
                    )
                    .into(),
                )
            })
            .collect();
        let contacts = headers.len();
        let (was_registered, registered) = (!before.is_empty(), contacts > 0);
        if registered != was_registered {
            self.announce(agent.clone(), registered);
        }
        drop(state);
        Answer {
            status: StatusCode::OK,
            headers,
            outcome: Outcome::Registered {
                agent,
                contacts,
                changed,
            },
        }
    }

    /// The Authorization for our realm, if any (a request may carry one per realm, RFC 3261 §22.4).
    fn credentials(&self, request: &Request) -> Result<Option<Credentials>, String> {
        let mut found = None;
        for header in request.headers.iter() {
            if let Header::Authorization(value) = header {
                let credentials = Credentials::parse(value.value()).map_err(|e| e.to_string())?;
                if credentials.realm == self.inner.agents.realm {
                    found = Some(credentials);
                }
            }
        }
        Ok(found)
    }

    fn challenge(&self, now: Instant, stale: bool, outcome: Outcome) -> Answer {
        let agents = &self.inner.agents;
        let nonce = self.inner.nonces.mint(now, rand::random());
        let headers = agents
            .algorithms
            .iter()
            .map(|algorithm| {
                Header::WwwAuthenticate(
                    super::digest::challenge(*algorithm, &agents.realm, &nonce, stale).into(),
                )
            })
            .collect();
        Answer {
            status: StatusCode::Unauthorized,
            headers,
            outcome,
        }
    }
}

fn forbidden(outcome: Outcome) -> Answer {
    Answer {
        status: StatusCode::Forbidden,
        headers: vec![],
        outcome,
    }
}

fn bad_request(reason: impl Into<String>) -> Answer {
    Answer {
        status: StatusCode::BadRequest,
        headers: vec![],
        outcome: Outcome::BadRequest {
            reason: reason.into(),
        },
    }
}

/// Rounded up, so a binding shows 0 only once it has expired.
fn whole_seconds_left(expires_at: Instant, now: Instant) -> u64 {
    let left = expires_at.saturating_duration_since(now);
    left.as_secs() + u64::from(left.subsec_nanos() > 0)
}

/// What a REGISTER asks of an agent's bindings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BindingUpdate {
    /// No Contact: only list the current ones.
    Query,
    /// `Contact: *` with `Expires: 0`.
    RemoveAll,
    /// Each contact with how long to keep it; zero removes it.
    Contacts(Vec<(Uri, Duration)>),
}

struct Refusal {
    status: StatusCode,
    reason: String,
}

/// Reads the Contact and Expires headers (RFC 3261 §10.3 steps 6 and 7): a contact's `expires` parameter wins
/// over the Expires header, which wins over one hour; under `min_expires` (and not zero) is refused 423, over
/// `max_expires` is shortened.
fn binding_update(request: &Request, agents: &Agents) -> Result<BindingUpdate, Refusal> {
    let bad = |reason: String| Refusal {
        status: StatusCode::BadRequest,
        reason,
    };
    let header_expires = match request.expires_header() {
        None => None,
        Some(expires) => Some(
            expires
                .value()
                .trim()
                .parse::<u64>()
                .map_err(|_| bad(format!("Expires {:?} is not a number", expires.value())))?,
        ),
    };
    let mut contacts = Vec::new();
    let mut wildcard = false;
    for header in request.contact_headers() {
        let parsed = Contact::parse_header_list(header.value())
            .map_err(|e| bad(format!("unreadable Contact: {e}")))?;
        for contact in parsed {
            if header.value().trim() == "*" {
                wildcard = true;
                continue;
            }
            let seconds = match contact.params.iter().find_map(|p| match p {
                rsipstack::sip::Param::Expires(e) => Some(e.value().to_owned()),
                _ => None,
            }) {
                Some(text) => Some(
                    text.trim()
                        .parse::<u64>()
                        .map_err(|_| bad(format!("Contact expires={text:?} is not a number")))?,
                ),
                None => header_expires,
            };
            let expires = seconds.map_or(DEFAULT_EXPIRES, Duration::from_secs);
            let expires = if expires.is_zero() {
                expires
            } else if expires < agents.min_expires {
                return Err(Refusal {
                    status: StatusCode::IntervalTooBrief,
                    reason: format!(
                        "{} s is under the minimum of {} s",
                        expires.as_secs(),
                        agents.min_expires.as_secs()
                    ),
                });
            } else {
                expires.min(agents.max_expires)
            };
            contacts.push((contact.uri, expires));
        }
    }
    match (wildcard, contacts.is_empty()) {
        (false, true) => Ok(BindingUpdate::Query),
        (false, false) => Ok(BindingUpdate::Contacts(contacts)),
        (true, true) if header_expires == Some(0) => Ok(BindingUpdate::RemoveAll),
        (true, _) => Err(bad(
            "Contact: * must be alone and with Expires: 0 (RFC 3261 §10.2.2)".into(),
        )),
    }
}

/// An agent's phones at most: each offer forks to all of them, and a phone that re-registers from a new port
/// after every restart would otherwise pile up stale contacts until they expire.
pub const MAX_CONTACTS: usize = 10;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BindingError {
    /// RFC 3261 §10.3 step 7: the same Call-ID with a CSeq not newer than the binding's.
    #[error("CSeq {cseq} is not newer than the binding's")]
    OutOfOrder { cseq: u32 },
    #[error("more than {MAX_CONTACTS} contacts for one agent")]
    TooManyContacts,
}

/// One contact of an agent.
#[derive(Debug, Clone)]
pub struct Binding {
    pub uri: Uri,
    /// The URI as text, for comparing contacts.
    key: String,
    call_id: String,
    cseq: u32,
    pub expires_at: Instant,
}

/// The table of contacts per agent, in the order they were first registered. Time is always passed in.
#[derive(Debug, Default)]
pub struct Bindings {
    agents: HashMap<String, Vec<Binding>>,
}

impl Bindings {
    /// The agent's bindings that have not expired at `now`.
    pub fn current<'a>(
        &'a self,
        agent: &str,
        now: Instant,
    ) -> impl Iterator<Item = &'a Binding> + 'a {
        self.agents
            .get(agent)
            .into_iter()
            .flatten()
            .filter(move |b| b.expires_at > now)
    }

    /// Applies one REGISTER's update, all or nothing. A binding refreshed keeps its place in the order.
    /// Refused (RFC 3261 §10.3 step 7) when a binding it touches was set by the same Call-ID with a CSeq not
    /// lower: the request is older than what we have; or when the agent would have more than [`MAX_CONTACTS`].
    pub fn apply(
        &mut self,
        agent: &str,
        update: &BindingUpdate,
        call_id: &str,
        cseq: u32,
        now: Instant,
    ) -> Result<(), BindingError> {
        let bindings = self.agents.entry(agent.to_owned()).or_default();
        bindings.retain(|b| b.expires_at > now);
        let out_of_order = |b: &Binding| b.call_id == call_id && b.cseq >= cseq;
        let result = match update {
            BindingUpdate::Query => Ok(()),
            BindingUpdate::RemoveAll => {
                if bindings.iter().any(out_of_order) {
                    Err(BindingError::OutOfOrder { cseq })
                } else {
                    bindings.clear();
                    Ok(())
                }
            }
            BindingUpdate::Contacts(contacts) => {
                let keyed: Vec<(String, &Uri, Duration)> = contacts
                    .iter()
                    .map(|(uri, expires)| (uri.to_string(), uri, *expires))
                    .collect();
                let added = keyed
                    .iter()
                    .filter(|(key, _, expires)| {
                        !expires.is_zero() && !bindings.iter().any(|b| &b.key == key)
                    })
                    .count();
                let removed = keyed
                    .iter()
                    .filter(|(key, _, expires)| {
                        expires.is_zero() && bindings.iter().any(|b| &b.key == key)
                    })
                    .count();
                if keyed
                    .iter()
                    .any(|(key, _, _)| bindings.iter().any(|b| &b.key == key && out_of_order(b)))
                {
                    Err(BindingError::OutOfOrder { cseq })
                } else if bindings.len() + added - removed > MAX_CONTACTS {
                    Err(BindingError::TooManyContacts)
                } else {
                    for (key, uri, expires) in keyed {
                        match bindings.iter().position(|b| b.key == key) {
                            Some(i) if expires.is_zero() => {
                                bindings.remove(i);
                            }
                            Some(i) => {
                                let binding = &mut bindings[i];
                                binding.uri = uri.clone();
                                binding.call_id = call_id.to_owned();
                                binding.cseq = cseq;
                                binding.expires_at = now + expires;
                            }
                            None if expires.is_zero() => {}
                            None => bindings.push(Binding {
                                uri: uri.clone(),
                                key,
                                call_id: call_id.to_owned(),
                                cseq,
                                expires_at: now + expires,
                            }),
                        }
                    }
                    Ok(())
                }
            }
        };
        if bindings.is_empty() {
            self.agents.remove(agent);
        }
        result
    }

    /// Removes what expired by `now`; returns the agents that had contacts and now have none.
    pub fn expire(&mut self, now: Instant) -> Vec<String> {
        let mut lost = Vec::new();
        self.agents.retain(|agent, bindings| {
            bindings.retain(|b| b.expires_at > now);
            if bindings.is_empty() {
                lost.push(agent.clone());
            }
            !bindings.is_empty()
        });
        lost.sort();
        lost
    }
}

#[cfg(test)]
mod tests;
