//! The ACD: who waits in which function's queue, which agent is free, and who is offered which call next.
//!
//! A sans-IO state machine like `flow`: the queue service feeds [`Event`]s with the time they happened and
//! carries out the [`Action`]s it gets back; timers are read from [`Acd::next_deadline`] and delivered as
//! [`Event::Tick`]. It dials nothing, plays nothing and knows no SIP: an offer names an agent, and the shell finds
//! the agent's contacts and rings them.
//!
//! # Rules
//! - First in, first out: free agents are offered to waiting callers in the order the callers entered, across
//!   every queue the agent serves. A caller whose offer fails keeps their place, so the head of the line gets the
//!   next free agent; nobody is offered an agent while someone who came earlier (and can take that agent) waits
//!   without an offer.
//! - One offer rings one agent (all free agents at once with `ring-all`) for the queue's `ring_timeout`; a
//!   rejected, unanswered or unregistered offer frees the agent, who then rests [`RETRY_PAUSE`] so that a phone
//!   nobody picks up is not rung again and again.
//! - An agent is one person whatever number of queues list them: ringing or talking in one queue is busy in all.
//!   After a call the agent rests the `wrap_up` of the queue the call came from.
//! - A caller leaves the line when answered, when they hang up, or at `max_wait` (the overflow).
//!
//! # A reloaded menu ([`Acd::reconfigure`])
//! - A new queue opens for new callers at once. A changed queue's settings apply from then on: to the next
//!   offers (strategy, agents, `ring_timeout`), to the calls answered next (`wrap_up`) and to new callers. An
//!   offer ringing keeps its ring timeout and may be answered, even by an agent the queue no longer lists; an
//!   agent talking keeps the wrap-up of the settings the call was answered under.
//! - Callers already waiting keep their place in line. Their `max_wait` counts from when they entered, under the
//!   new setting: the line then overflows in the order it came, as it would have had the setting always been so
//!   (a caller whose limit was raised waits longer, a caller already past a lowered one overflows now, which is
//!   what the admin lowered it for). Their place is told every new `announce_position` counted from when they
//!   entered, as a new caller's would be: no burst of announcements at the reload, and an unchanged interval
//!   changes nothing.
//! - A queue the menu no longer has takes no new callers (a caller still on the old menu who chooses it
//!   overflows), but its waiting callers stay in line under its last settings until answered, gone or
//!   overflowed; the queue is gone once its line is empty.
//! - Agents' registrations are not the menu's: an agent named by a new queue is as registered as the shell
//!   reports them.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant};

use crate::menu::model::{FunctionId, Queue, QueueAgent, Strategy};

pub mod service;
pub use service::{AgentContacts, NoRegistrations, Order, QueueHandle, Ticket};

/// A waiting caller, as the queue service numbers them.
pub type CallerKey = u64;
/// One offer of one caller to one agent.
pub type OfferId = u64;

/// How long an agent who did not take an offer (rejected, no answer) is passed over before being offered again.
pub const RETRY_PAUSE: Duration = Duration::from_secs(5);

/// What happened, as the shell reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A caller enters `queue` (a function id).
    Joined {
        caller: CallerKey,
        queue: FunctionId,
        call_id: String,
        from: String,
    },
    /// The caller is gone from the line: hung up, or their call ended otherwise.
    Left { caller: CallerKey },
    /// The agent's phone rejected the offer, or could not be reached.
    OfferFailed { offer: OfferId },
    /// The agent answered: the caller is being bridged to them.
    Answered {
        offer: OfferId,
        caller: CallerKey,
        agent: String,
    },
    /// The agent's bridged call is over; wrap-up starts.
    TalkEnded { agent: String },
    /// The agent's phone registered (at least one contact).
    Registered { agent: String },
    /// The agent's last contact unregistered or expired.
    Unregistered { agent: String },
    /// Time passed: timers due at `now` fire.
    Tick,
}

/// What the shell must do, in the order given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Ring `agent`'s contacts for `caller`, for at most `ring_timeout` (the queue's setting when offered).
    Offer {
        offer: OfferId,
        caller: CallerKey,
        agent: QueueAgent,
        ring_timeout: Duration,
    },
    /// Stop ringing this offer (CANCEL): it timed out, another agent answered, or the agent unregistered.
    CancelOffer { offer: OfferId, caller: CallerKey },
    /// The agent took the call: the caller is no longer waiting.
    Bridge { caller: CallerKey, agent: String },
    /// The caller waited `max_wait`: the function's overflow follows.
    Overflow { caller: CallerKey },
    /// Tell the caller their place in line (1 is next).
    AnnouncePosition { caller: CallerKey, position: usize },
}

/// An agent's state as `/api/v1/queues` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgentState {
    Idle,
    Ringing,
    Talking,
    WrapUp,
    Unregistered,
}

impl AgentState {
    pub fn as_str(self) -> &'static str {
        match self {
            AgentState::Idle => "idle",
            AgentState::Ringing => "ringing",
            AgentState::Talking => "talking",
            AgentState::WrapUp => "wrap_up",
            AgentState::Unregistered => "unregistered",
        }
    }
}

/// One queue as seen from outside, at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueView {
    pub function: FunctionId,
    /// In line order, first is next.
    pub waiting: Vec<WaitingView>,
    /// In the order the queue lists them.
    pub agents: Vec<(String, AgentState)>,
    pub longest_wait: Duration,
    /// False once a reload took the queue out of the menu: it takes no new callers and goes when its line is
    /// empty.
    pub in_menu: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WaitingView {
    pub call_id: String,
    pub from: String,
    pub waiting: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Activity {
    Idle,
    Ringing(OfferId),
    /// On a call from a queue whose wrap-up follows.
    Talking {
        wrap_up: Duration,
    },
    WrapUp {
        until: Instant,
    },
}

#[derive(Debug)]
struct Agent {
    agent: QueueAgent,
    registered: bool,
    activity: Activity,
    /// Since when the agent has been free, for `longest-idle`.
    idle_since: Instant,
    /// Not offered again before this (a missed offer).
    paused_until: Option<Instant>,
}

impl Agent {
    /// Fixed-URI agents are free from the start; registered ones once they register.
    fn new(agent: &QueueAgent, now: Instant) -> Agent {
        Agent {
            registered: matches!(agent, QueueAgent::Fixed(_)),
            agent: agent.clone(),
            activity: Activity::Idle,
            idle_since: now,
            paused_until: None,
        }
    }

    fn state(&self) -> AgentState {
        match self.activity {
            Activity::Ringing(_) => AgentState::Ringing,
            Activity::Talking { .. } => AgentState::Talking,
            _ if !self.registered => AgentState::Unregistered,
            Activity::WrapUp { .. } => AgentState::WrapUp,
            Activity::Idle => AgentState::Idle,
        }
    }

    fn can_take_offer(&self, now: Instant) -> bool {
        self.registered
            && self.activity == Activity::Idle
            && self.paused_until.is_none_or(|until| now >= until)
    }

    fn free(&mut self, now: Instant) {
        self.activity = Activity::Idle;
        self.idle_since = now;
    }
}

#[derive(Debug)]
struct Line {
    config: Queue,
    callers: VecDeque<CallerKey>,
    /// `round-robin`: index into `config.agents` of the next agent to try first.
    next_in_turn: usize,
    /// See [`QueueView::in_menu`].
    in_menu: bool,
}

impl Line {
    fn new(config: Queue) -> Line {
        Line {
            config,
            callers: VecDeque::new(),
            next_in_turn: 0,
            in_menu: true,
        }
    }

    /// Takes new settings; round-robin goes on with the agent whose turn it was, if the queue still lists them.
    fn reconfigure(&mut self, config: Queue) {
        let next = self
            .config
            .agents
            .get(self.next_in_turn)
            .and_then(|agent| config.agents.iter().position(|a| a == agent));
        self.next_in_turn = next.unwrap_or(0);
        self.config = config;
        self.in_menu = true;
    }
}

#[derive(Debug)]
struct Waiting {
    queue: FunctionId,
    call_id: String,
    from: String,
    entered: Instant,
    /// Orders callers across queues: lower came first.
    arrival: u64,
    overflow_at: Instant,
    next_announcement: Option<Instant>,
}

#[derive(Debug, Clone)]
struct Offer {
    caller: CallerKey,
    agent: String,
    deadline: Instant,
}

/// Every queue of one menu and every agent they name.
#[derive(Debug)]
pub struct Acd {
    lines: BTreeMap<FunctionId, Line>,
    agents: BTreeMap<String, Agent>,
    waiting: HashMap<CallerKey, Waiting>,
    offers: BTreeMap<OfferId, Offer>,
    next_offer: OfferId,
    arrivals: u64,
}

impl Acd {
    /// The queues by function id. Fixed-URI agents are free from the start; registered ones once they register.
    pub fn new(queues: impl IntoIterator<Item = (FunctionId, Queue)>, now: Instant) -> Acd {
        let mut acd = Acd {
            lines: queues
                .into_iter()
                .map(|(function, config)| (function, Line::new(config)))
                .collect(),
            agents: BTreeMap::new(),
            waiting: HashMap::new(),
            offers: BTreeMap::new(),
            next_offer: 1,
            arrivals: 0,
        };
        acd.add_agents(now);
        acd
    }

    /// Follows a reloaded menu: `queues` are all the queues it has (see the module docs for what happens to
    /// the callers waiting and the offers ringing). Returns what the shell must do, like [`Acd::on`]: new
    /// settings may bring offers, and a lowered `max_wait` overflows.
    pub fn reconfigure(
        &mut self,
        queues: impl IntoIterator<Item = (FunctionId, Queue)>,
        now: Instant,
    ) -> Vec<Action> {
        let mut queues: BTreeMap<FunctionId, Queue> = queues.into_iter().collect();
        for (function, line) in &mut self.lines {
            let Some(config) = queues.remove(function) else {
                line.in_menu = false;
                continue;
            };
            let announcing_changed = config.announce_position != line.config.announce_position;
            for caller in &line.callers {
                if let Some(waiting) = self.waiting.get_mut(caller) {
                    waiting.overflow_at = waiting.entered + config.max_wait;
                    if announcing_changed {
                        waiting.next_announcement = config
                            .announce_position
                            .and_then(|every| first_after(waiting.entered, every, now));
                    }
                }
            }
            line.reconfigure(config);
        }
        for (function, config) in queues {
            self.lines.insert(function, Line::new(config));
        }
        self.lines
            .retain(|_, line| line.in_menu || !line.callers.is_empty());
        self.add_agents(now);
        self.forget_unlisted_agents();
        let mut out = Vec::new();
        self.run_timers(now, &mut out);
        self.assign(now, &mut out);
        out
    }

    /// Every agent a queue lists and the engine does not know yet.
    fn add_agents(&mut self, now: Instant) {
        for line in self.lines.values() {
            for agent in &line.config.agents {
                self.agents
                    .entry(agent.id().to_owned())
                    .or_insert_with(|| Agent::new(agent, now));
            }
        }
    }

    /// Agents no queue lists any more, once they are free: a ringing or talking one is kept until that call is
    /// over, since an agent is busy in every queue while on it.
    fn forget_unlisted_agents(&mut self) {
        let listed: std::collections::HashSet<&str> = self
            .lines
            .values()
            .flat_map(|line| line.config.agents.iter().map(QueueAgent::id))
            .collect();
        self.agents
            .retain(|id, agent| listed.contains(id.as_str()) || agent.activity != Activity::Idle);
    }

    /// The agent ids that need a registration to be offered calls.
    pub fn registered_agents(&self) -> impl Iterator<Item = &str> {
        self.agents.values().filter_map(|agent| match &agent.agent {
            QueueAgent::Registered(id) => Some(id.as_str()),
            QueueAgent::Fixed(_) => None,
        })
    }

    /// Feeds one event at `now`; returns what the shell must do, in order.
    pub fn on(&mut self, event: Event, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        match event {
            Event::Joined {
                caller,
                queue,
                call_id,
                from,
            } => self.join(caller, queue, call_id, from, now, &mut out),
            Event::Left { caller } => {
                if self.remove_caller(caller) {
                    self.cancel_offers_of(caller, &mut out);
                }
            }
            Event::OfferFailed { offer } => {
                if let Some(offer) = self.offers.remove(&offer)
                    && let Some(agent) = self.agents.get_mut(&offer.agent)
                {
                    agent.activity = Activity::Idle;
                    agent.paused_until = Some(now + RETRY_PAUSE);
                }
            }
            Event::Answered {
                offer,
                caller,
                agent,
            } => self.answered(offer, caller, agent, now, &mut out),
            Event::TalkEnded { agent } => {
                if let Some(agent) = self.agents.get_mut(&agent)
                    && let Activity::Talking { wrap_up } = agent.activity
                {
                    agent.paused_until = None;
                    if wrap_up.is_zero() {
                        agent.free(now);
                    } else {
                        agent.activity = Activity::WrapUp {
                            until: now + wrap_up,
                        };
                    }
                }
            }
            Event::Registered { agent } => {
                if let Some(agent) = self.agents.get_mut(&agent)
                    && !agent.registered
                {
                    agent.registered = true;
                    if agent.activity == Activity::Idle {
                        agent.idle_since = now;
                    }
                }
            }
            Event::Unregistered { agent: id } => {
                let ringing = match self.agents.get_mut(&id) {
                    Some(agent) if matches!(agent.agent, QueueAgent::Registered(_)) => {
                        agent.registered = false;
                        match agent.activity {
                            Activity::Ringing(offer) => Some(offer),
                            _ => None,
                        }
                    }
                    _ => None,
                };
                if let Some(offer) = ringing {
                    self.cancel_offer(offer, now, &mut out);
                }
            }
            Event::Tick => {}
        }
        self.run_timers(now, &mut out);
        self.assign(now, &mut out);
        out
    }

    /// When the shell must send [`Event::Tick`] next (None: nothing is timed).
    pub fn next_deadline(&self) -> Option<Instant> {
        let offers = self.offers.values().map(|offer| offer.deadline);
        let callers = self.waiting.values().flat_map(|waiting| {
            std::iter::once(waiting.overflow_at).chain(waiting.next_announcement)
        });
        let agents = self.agents.values().flat_map(|agent| {
            let wrap_up = match agent.activity {
                Activity::WrapUp { until } => Some(until),
                _ => None,
            };
            // A pause matters only to an agent who could otherwise be offered.
            let pause = agent
                .paused_until
                .filter(|_| agent.registered && agent.activity == Activity::Idle);
            wrap_up.into_iter().chain(pause)
        });
        offers.chain(callers).chain(agents).min()
    }

    /// Every queue, for `/api/v1/queues`.
    pub fn view(&self, now: Instant) -> Vec<QueueView> {
        self.lines
            .iter()
            .map(|(function, line)| {
                let waiting: Vec<WaitingView> = line
                    .callers
                    .iter()
                    .filter_map(|key| self.waiting.get(key))
                    .map(|waiting| WaitingView {
                        call_id: waiting.call_id.clone(),
                        from: waiting.from.clone(),
                        waiting: now.saturating_duration_since(waiting.entered),
                    })
                    .collect();
                let agents = line
                    .config
                    .agents
                    .iter()
                    .filter_map(|agent| self.agents.get(agent.id()))
                    .map(|agent| (agent.agent.id().to_owned(), agent.state()))
                    .collect();
                QueueView {
                    function: function.clone(),
                    longest_wait: waiting.iter().map(|w| w.waiting).max().unwrap_or_default(),
                    waiting,
                    agents,
                    in_menu: line.in_menu,
                }
            })
            .collect()
    }

    /// The caller's place in their line (1 is next), if waiting.
    pub fn position(&self, caller: CallerKey) -> Option<usize> {
        let waiting = self.waiting.get(&caller)?;
        let line = self.lines.get(&waiting.queue)?;
        line.callers
            .iter()
            .position(|key| *key == caller)
            .map(|index| index + 1)
    }

    fn join(
        &mut self,
        caller: CallerKey,
        queue: FunctionId,
        call_id: String,
        from: String,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        if self.waiting.contains_key(&caller) {
            return;
        }
        let Some(line) = self.lines.get_mut(&queue).filter(|line| line.in_menu) else {
            // A call still on the menu it started with chose a queue a reload has taken away (or an unvalidated
            // menu routed here): the caller moves on to the overflow rather than wait in a line nobody serves.
            tracing::warn!(queue = %queue, "caller sent to a queue the menu no longer has: overflow");
            out.push(Action::Overflow { caller });
            return;
        };
        line.callers.push_back(caller);
        self.arrivals += 1;
        self.waiting.insert(
            caller,
            Waiting {
                queue,
                call_id,
                from,
                entered: now,
                arrival: self.arrivals,
                overflow_at: now + line.config.max_wait,
                next_announcement: line.config.announce_position.map(|every| now + every),
            },
        );
    }

    /// An answer always stands, even for an offer already cancelled here (the 200 crossed our CANCEL): the
    /// caller is bridged by then, so the engine follows: the agent is talking and the caller no longer waits.
    fn answered(
        &mut self,
        offer: OfferId,
        caller: CallerKey,
        agent_id: String,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        self.offers.remove(&offer);
        let wrap_up = self
            .waiting
            .get(&caller)
            .and_then(|waiting| self.lines.get(&waiting.queue))
            .map_or(Duration::ZERO, |line| line.config.wrap_up);
        let ringing_other = match self.agents.get(&agent_id).map(|agent| agent.activity) {
            Some(Activity::Ringing(other)) if other != offer => Some(other),
            _ => None,
        };
        if let Some(other) = ringing_other {
            self.cancel_offer(other, now, out);
        }
        if let Some(agent) = self.agents.get_mut(&agent_id) {
            agent.activity = Activity::Talking { wrap_up };
            agent.paused_until = None;
        }
        if self.remove_caller(caller) {
            self.cancel_offers_of(caller, out);
        }
        out.push(Action::Bridge {
            caller,
            agent: agent_id,
        });
    }

    /// Takes the caller out of their line; false if they were not waiting.
    fn remove_caller(&mut self, caller: CallerKey) -> bool {
        let Some(waiting) = self.waiting.remove(&caller) else {
            return false;
        };
        let Some(line) = self.lines.get_mut(&waiting.queue) else {
            return true;
        };
        line.callers.retain(|key| *key != caller);
        if !line.in_menu && line.callers.is_empty() {
            self.lines.remove(&waiting.queue);
            self.forget_unlisted_agents();
        }
        true
    }

    /// Cancels every offer of `caller`; the agents are free again at once (no fault of theirs).
    fn cancel_offers_of(&mut self, caller: CallerKey, out: &mut Vec<Action>) {
        let ids: Vec<OfferId> = self
            .offers
            .iter()
            .filter(|(_, offer)| offer.caller == caller)
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            if let Some(offer) = self.offers.remove(&id) {
                if let Some(agent) = self.agents.get_mut(&offer.agent)
                    && agent.activity == Activity::Ringing(id)
                {
                    agent.activity = Activity::Idle;
                }
                out.push(Action::CancelOffer { offer: id, caller });
            }
        }
    }

    /// Ends one offer the agent did not take in time (or can no longer take): the agent rests, the caller stays.
    fn cancel_offer(&mut self, id: OfferId, now: Instant, out: &mut Vec<Action>) {
        let Some(offer) = self.offers.remove(&id) else {
            return;
        };
        if let Some(agent) = self.agents.get_mut(&offer.agent)
            && agent.activity == Activity::Ringing(id)
        {
            agent.activity = Activity::Idle;
            agent.paused_until = Some(now + RETRY_PAUSE);
        }
        out.push(Action::CancelOffer {
            offer: id,
            caller: offer.caller,
        });
    }

    fn run_timers(&mut self, now: Instant, out: &mut Vec<Action>) {
        let expired: Vec<OfferId> = self
            .offers
            .iter()
            .filter(|(_, offer)| offer.deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            self.cancel_offer(id, now, out);
        }
        for agent in self.agents.values_mut() {
            if let Activity::WrapUp { until } = agent.activity
                && until <= now
            {
                agent.free(until);
            }
            if agent.paused_until.is_some_and(|until| until <= now) {
                agent.paused_until = None;
            }
        }
        let mut overflowing: Vec<(u64, CallerKey)> = self
            .waiting
            .iter()
            .filter(|(_, waiting)| waiting.overflow_at <= now)
            .map(|(key, waiting)| (waiting.arrival, *key))
            .collect();
        overflowing.sort_unstable();
        for (_, caller) in overflowing {
            self.remove_caller(caller);
            self.cancel_offers_of(caller, out);
            out.push(Action::Overflow { caller });
        }
        let mut announcing: Vec<(u64, CallerKey)> = Vec::new();
        for (key, waiting) in &mut self.waiting {
            let Some(due) = waiting.next_announcement.filter(|due| *due <= now) else {
                continue;
            };
            let every = self
                .lines
                .get(&waiting.queue)
                .and_then(|line| line.config.announce_position)
                .unwrap_or(Duration::MAX);
            // After a stall, announce once and go on from now rather than catching up.
            let mut next = due.checked_add(every);
            while let Some(at) = next.filter(|at| *at <= now) {
                next = at.checked_add(every);
            }
            waiting.next_announcement = next;
            announcing.push((waiting.arrival, *key));
        }
        announcing.sort_unstable();
        for (_, caller) in announcing {
            if let Some(position) = self.position(caller) {
                out.push(Action::AnnouncePosition { caller, position });
            }
        }
    }

    /// Offers free agents to waiting callers, earliest arrival first.
    fn assign(&mut self, now: Instant, out: &mut Vec<Action>) {
        if !self.agents.values().any(|agent| agent.can_take_offer(now)) {
            return;
        }
        let mut order: Vec<(u64, CallerKey)> = self
            .waiting
            .iter()
            .map(|(key, waiting)| (waiting.arrival, *key))
            .collect();
        order.sort_unstable();
        for (_, caller) in order {
            let Some(queue) = self.waiting.get(&caller).map(|w| w.queue.clone()) else {
                continue;
            };
            let Some(line) = self.lines.get(&queue) else {
                continue;
            };
            let strategy = line.config.strategy;
            let has_offer = self.offers.values().any(|offer| offer.caller == caller);
            if has_offer && strategy != Strategy::RingAll {
                continue;
            }
            let chosen = self.choose(&queue, now);
            if chosen.is_empty() {
                continue;
            }
            let ring_timeout = line.config.ring_timeout;
            for index in chosen {
                let Some(line) = self.lines.get_mut(&queue) else {
                    break;
                };
                let agent = line.config.agents[index].clone();
                line.next_in_turn = (index + 1) % line.config.agents.len();
                let offer = self.next_offer;
                self.next_offer += 1;
                if let Some(state) = self.agents.get_mut(agent.id()) {
                    state.activity = Activity::Ringing(offer);
                }
                self.offers.insert(
                    offer,
                    Offer {
                        caller,
                        agent: agent.id().to_owned(),
                        deadline: now + ring_timeout,
                    },
                );
                out.push(Action::Offer {
                    offer,
                    caller,
                    agent,
                    ring_timeout,
                });
            }
        }
    }

    /// Indexes into the queue's agent list of whom to offer next: all free ones for `ring-all`, else one.
    fn choose(&self, queue: &str, now: Instant) -> Vec<usize> {
        let Some(line) = self.lines.get(queue) else {
            return Vec::new();
        };
        let agents = &line.config.agents;
        let free = |index: &usize| {
            self.agents
                .get(agents[*index].id())
                .is_some_and(|agent| agent.can_take_offer(now))
        };
        match line.config.strategy {
            Strategy::RingAll => (0..agents.len()).filter(free).collect(),
            Strategy::RoundRobin => (0..agents.len())
                .map(|step| (line.next_in_turn + step) % agents.len())
                .find(free)
                .into_iter()
                .collect(),
            Strategy::LongestIdle => (0..agents.len())
                .filter(free)
                .min_by_key(|index| {
                    let since = self.agents.get(agents[*index].id()).map(|a| a.idle_since);
                    (since, *index)
                })
                .into_iter()
                .collect(),
        }
    }
}

/// The first of `entered + every`, `entered + 2 × every`, ... after `now`; None if there is none to reach.
fn first_after(entered: Instant, every: Duration, now: Instant) -> Option<Instant> {
    let every_nanos = every.as_nanos();
    if every_nanos == 0 {
        return None;
    }
    let times = now.saturating_duration_since(entered).as_nanos() / every_nanos + 1;
    let offset = u64::try_from(every_nanos.checked_mul(times)?).ok()?;
    entered.checked_add(Duration::from_nanos(offset))
}

#[cfg(test)]
mod tests;
