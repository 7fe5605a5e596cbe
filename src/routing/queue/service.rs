//! The queue service: one task in the daemon that owns the [`Acd`], and the handle call tasks and the API talk
//! to it through.
//!
//! A call task joins with [`QueueHandle::join`] and gets a [`Ticket`]: the [`Order`]s for that caller arrive on
//! it (ring these contacts, stop ringing, your place in line, overflow), and what happened goes back through it
//! (the agent answered, the offer failed). Dropping the ticket takes the caller out of the line, however the call
//! ended. Agents' registrations reach the engine from an [`AgentContacts`] source (the registrar), and each menu
//! the reloader publishes reaches it as [`Acd::reconfigure`].

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tracing::{debug, info, warn};

use super::{Acd, Action, CallerKey, Event, OfferId, QueueView};
use crate::menu::model::{FunctionId, Menu, Queue, QueueAgent};
use crate::sip::{Registrar, RegistrationChange};

/// Where agents' registered contacts come from: the registrar, or nobody when the daemon runs without an
/// agents file.
pub trait AgentContacts: Send + Sync {
    /// The agent's unexpired contacts at `now`, as SIP URIs; empty when not registered.
    fn contacts(&self, agent: &str, now: Instant) -> Vec<String>;
    /// Registrations and unregistrations as they happen.
    fn subscribe(&self) -> broadcast::Receiver<RegistrationChange>;
    /// Whether `agent` can never register (not in the agents file), which the admin should hear about.
    fn unknown(&self, agent: &str) -> bool;
}

/// No agent registers: only fixed `sip:` URI agents are ever offered (a daemon run without an agents file).
pub struct NoRegistrations(broadcast::Sender<RegistrationChange>);

impl Default for NoRegistrations {
    fn default() -> Self {
        NoRegistrations(broadcast::channel(1).0)
    }
}

impl AgentContacts for Registrar {
    fn contacts(&self, agent: &str, now: Instant) -> Vec<String> {
        Registrar::contacts(self, agent, now)
            .iter()
            .map(ToString::to_string)
            .collect()
    }
    fn subscribe(&self) -> broadcast::Receiver<RegistrationChange> {
        Registrar::subscribe(self)
    }
    fn unknown(&self, agent: &str) -> bool {
        !self.knows(agent)
    }
}

impl AgentContacts for NoRegistrations {
    fn contacts(&self, _agent: &str, _now: Instant) -> Vec<String> {
        Vec::new()
    }
    fn subscribe(&self) -> broadcast::Receiver<RegistrationChange> {
        self.0.subscribe()
    }
    /// Without an agents file there is no list to hold the ids against.
    fn unknown(&self, _agent: &str) -> bool {
        false
    }
}

/// How often every agent's registration is read again, so an expiry nobody announced is still noticed.
const RESYNC: Duration = Duration::from_secs(5);

/// What the queue service tells one waiting caller's call task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Order {
    /// Ring the agent's contacts (all at once; the first to answer wins) for at most `ring_timeout`.
    Offer {
        offer: OfferId,
        agent: String,
        contacts: Vec<String>,
        ring_timeout: Duration,
    },
    /// Stop ringing this offer.
    Cancel { offer: OfferId },
    /// Say the caller's place in line.
    Announce { position: usize },
    /// The wait is over without an agent: the function's overflow follows.
    Overflow,
}

enum Request {
    Join {
        caller: CallerKey,
        queue: FunctionId,
        call_id: String,
        from: String,
        orders: mpsc::UnboundedSender<Order>,
    },
    Report(Event),
    View(oneshot::Sender<Vec<QueueView>>),
}

/// The call tasks' and the API's way to the queue service. Cheap to clone.
#[derive(Clone)]
pub struct QueueHandle {
    requests: mpsc::UnboundedSender<Request>,
    next_caller: Arc<AtomicU64>,
}

impl QueueHandle {
    /// Starts the queue service for the queues of the menu in `menus`, following each menu sent on it later.
    /// It runs until the last handle is dropped.
    pub fn start(
        mut menus: watch::Receiver<Arc<Menu>>,
        registrations: Arc<dyn AgentContacts>,
    ) -> QueueHandle {
        let queues = queues_of(&menus.borrow_and_update());
        warn_unknown_agents(&queues, registrations.as_ref());
        let acd = Acd::new(queues, Instant::now());
        let (requests, inbox) = mpsc::unbounded_channel();
        let service = Service {
            acd,
            registrations,
            orders: HashMap::new(),
        };
        tokio::spawn(service.run(inbox, menus));
        QueueHandle {
            requests,
            next_caller: Arc::new(AtomicU64::new(1)),
        }
    }

    /// Puts the caller in `queue`'s line. The ticket carries the orders for them; dropping it leaves the line.
    pub fn join(&self, queue: &str, call_id: &str, from: &str) -> Ticket {
        let caller = self.next_caller.fetch_add(1, Ordering::Relaxed);
        let (orders_tx, orders) = mpsc::unbounded_channel();
        let _ = self.requests.send(Request::Join {
            caller,
            queue: queue.to_owned(),
            call_id: call_id.to_owned(),
            from: from.to_owned(),
            orders: orders_tx,
        });
        Ticket {
            caller,
            orders,
            handle: self.clone(),
            waiting: true,
        }
    }

    /// Every queue as it is now; empty if the service is gone.
    pub async fn view(&self) -> Vec<QueueView> {
        let (reply, answer) = oneshot::channel();
        if self.requests.send(Request::View(reply)).is_err() {
            return Vec::new();
        }
        answer.await.unwrap_or_default()
    }

    fn report(&self, event: Event) {
        let _ = self.requests.send(Request::Report(event));
    }
}

/// One caller's place in a line, held by their call task.
pub struct Ticket {
    caller: CallerKey,
    orders: mpsc::UnboundedReceiver<Order>,
    handle: QueueHandle,
    /// Still in the line (not answered, not overflowed).
    waiting: bool,
}

impl Ticket {
    /// The next order; pending forever once the service has nothing more to say (cancel-safe).
    pub async fn next_order(&mut self) -> Order {
        match self.orders.recv().await {
            Some(order) => {
                if order == Order::Overflow {
                    self.waiting = false;
                }
                order
            }
            None => std::future::pending().await,
        }
    }

    /// The agent's phone refused or failed the offer.
    pub fn offer_failed(&self, offer: OfferId) {
        self.handle.report(Event::OfferFailed { offer });
    }

    /// The agent answered `offer`: the caller leaves the line. The returned guard ends the agent's talk (and
    /// starts their wrap-up) when dropped, however the bridged call ends.
    pub fn answered(mut self, offer: OfferId, agent: &str) -> AgentOnCall {
        self.waiting = false;
        self.handle.report(Event::Answered {
            offer,
            caller: self.caller,
            agent: agent.to_owned(),
        });
        AgentOnCall {
            agent: agent.to_owned(),
            handle: self.handle.clone(),
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if self.waiting {
            self.handle.report(Event::Left {
                caller: self.caller,
            });
        }
    }
}

/// An agent talking to a caller from a queue; dropping it starts the agent's wrap-up.
pub struct AgentOnCall {
    agent: String,
    handle: QueueHandle,
}

impl Drop for AgentOnCall {
    fn drop(&mut self) {
        self.handle.report(Event::TalkEnded {
            agent: std::mem::take(&mut self.agent),
        });
    }
}

/// Every queue of `menu`, by function id.
fn queues_of(menu: &Menu) -> Vec<(FunctionId, Queue)> {
    menu.functions
        .values()
        .filter_map(|f| f.queue.clone().map(|q| (f.id.clone(), q)))
        .collect()
}

/// Logs each queue agent id the agents file lacks, at start and at each reload: such an agent is never offered
/// a call, and a menu naming one still loads (the agents file is a separate file, read at start).
fn warn_unknown_agents(queues: &[(FunctionId, Queue)], registrations: &dyn AgentContacts) {
    for (function, queue) in queues {
        for agent in &queue.agents {
            if let QueueAgent::Registered(id) = agent
                && registrations.unknown(id)
            {
                warn!(function = %function, agent = %id,
                      "queue agent is not in the agents file and can never be offered a call; \
                       `knappval check --agents` lists these");
            }
        }
    }
}

struct Service {
    acd: Acd,
    registrations: Arc<dyn AgentContacts>,
    orders: HashMap<CallerKey, mpsc::UnboundedSender<Order>>,
}

impl Service {
    async fn run(
        mut self,
        mut inbox: mpsc::UnboundedReceiver<Request>,
        mut menus: watch::Receiver<Arc<Menu>>,
    ) {
        let mut following = true;
        let mut changes = self.registrations.subscribe();
        let mut resync = tokio::time::interval(RESYNC);
        resync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let deadline = self.acd.next_deadline().map(tokio::time::Instant::from_std);
            let events: Vec<Event> = tokio::select! {
                request = inbox.recv() => match request {
                    None => break,
                    Some(Request::View(reply)) => {
                        let _ = reply.send(self.acd.view(Instant::now()));
                        continue;
                    }
                    Some(Request::Join { caller, queue, call_id, from, orders }) => {
                        self.orders.insert(caller, orders);
                        vec![Event::Joined { caller, queue, call_id, from }]
                    }
                    Some(Request::Report(event)) => {
                        if let Event::Left { caller } | Event::Answered { caller, .. } = &event {
                            self.orders.remove(caller);
                        }
                        vec![event]
                    }
                },
                changed = menus.changed(), if following => {
                    if changed.is_err() {
                        // The reloader is gone (shutdown): keep serving the queues we have.
                        following = false;
                        continue;
                    }
                    let queues = queues_of(&menus.borrow_and_update());
                    self.reconfigure(queues);
                    continue;
                },
                change = changes.recv() => match change {
                    Ok(change) => vec![registration_event(change)],
                    Err(broadcast::error::RecvError::Lagged(_)) => self.registered_now(),
                    // The registrar is gone: keep what we know; the resync still reads contacts.
                    Err(broadcast::error::RecvError::Closed) => {
                        changes = broadcast::channel(1).1;
                        Vec::new()
                    }
                },
                _ = resync.tick() => self.registered_now(),
                _ = sleep_until(deadline) => vec![Event::Tick],
            };
            self.feed(events);
        }
        debug!("queue service stopped");
    }

    /// A reloaded menu's queues: the engine follows them, then learns the registrations of the agents they
    /// newly name (a phone registered before its agent joined a queue is offered calls at once).
    fn reconfigure(&mut self, queues: Vec<(FunctionId, Queue)>) {
        info!(
            queues = queues.len(),
            "menu reloaded: the queues follow it; callers waiting keep their place"
        );
        warn_unknown_agents(&queues, self.registrations.as_ref());
        let now = Instant::now();
        let mut pending = VecDeque::new();
        for action in self.acd.reconfigure(queues, now) {
            self.act(action, now, &mut pending);
        }
        pending.extend(self.registered_now());
        self.feed(pending.into());
    }

    /// Every registered agent's registration as the registrar has it now.
    fn registered_now(&self) -> Vec<Event> {
        let now = Instant::now();
        self.acd
            .registered_agents()
            .map(|agent| {
                let registered = !self.registrations.contacts(agent, now).is_empty();
                registration_event(RegistrationChange {
                    agent: agent.to_owned(),
                    registered,
                })
            })
            .collect()
    }

    /// Runs events through the engine and carries out its actions, which may lead to more events.
    fn feed(&mut self, events: Vec<Event>) {
        let mut pending: VecDeque<Event> = events.into();
        while let Some(event) = pending.pop_front() {
            let now = Instant::now();
            for action in self.acd.on(event, now) {
                self.act(action, now, &mut pending);
            }
        }
    }

    fn act(&mut self, action: Action, now: Instant, pending: &mut VecDeque<Event>) {
        match action {
            Action::Offer {
                offer,
                caller,
                agent,
                ring_timeout,
            } => {
                let contacts = match &agent {
                    QueueAgent::Fixed(uri) => vec![uri.clone()],
                    QueueAgent::Registered(id) => self.registrations.contacts(id, now),
                };
                if contacts.is_empty() {
                    // The registration expired without anyone telling us: the agent is away.
                    info!(agent = agent.id(), "agent's registration has expired");
                    pending.push_back(Event::Unregistered {
                        agent: agent.id().to_owned(),
                    });
                    pending.push_back(Event::OfferFailed { offer });
                    return;
                }
                debug!(
                    caller,
                    offer,
                    agent = agent.id(),
                    ?contacts,
                    "offering the call"
                );
                self.send(
                    caller,
                    Order::Offer {
                        offer,
                        agent: agent.id().to_owned(),
                        contacts,
                        ring_timeout,
                    },
                    pending,
                );
            }
            Action::CancelOffer { offer, caller } => {
                self.send(caller, Order::Cancel { offer }, pending)
            }
            Action::Bridge { caller, agent } => {
                info!(caller, agent = %agent, "agent answered a caller from the queue");
            }
            Action::Overflow { caller } => {
                self.send(caller, Order::Overflow, pending);
                self.orders.remove(&caller);
            }
            Action::AnnouncePosition { caller, position } => {
                self.send(caller, Order::Announce { position }, pending)
            }
        }
    }

    /// A caller whose call task is gone leaves the line (its ticket's drop may still be on the way).
    fn send(&mut self, caller: CallerKey, order: Order, pending: &mut VecDeque<Event>) {
        let delivered = self
            .orders
            .get(&caller)
            .is_some_and(|orders| orders.send(order).is_ok());
        if !delivered && self.orders.remove(&caller).is_some() {
            warn!(
                caller,
                "caller's call task is gone; taking them out of the line"
            );
            pending.push_back(Event::Left { caller });
        }
    }
}

fn registration_event(change: RegistrationChange) -> Event {
    if change.registered {
        Event::Registered {
            agent: change.agent,
        }
    } else {
        Event::Unregistered {
            agent: change.agent,
        }
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}
