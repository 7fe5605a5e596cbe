//! A call waiting in a function's queue: music in a loop, the place in line now and then, and the offers the
//! queue service makes ringing the agents' phones beside it. The first agent to answer is bridged like a
//! `bridge` function; an overflow goes back to the flow as a failed hand-off.

use crate::records::Progress;
use std::sync::Arc;
use std::time::{Duration, Instant};

use time::OffsetDateTime;
use tracing::{info, warn};

use super::{Call, End, Transfer};
use crate::flow::Event;
use crate::media::prompt::Prompt;
use crate::menu::model::{self, Function, FunctionId};
use crate::metrics::Phase;
use crate::routing::Handoff;
use crate::routing::bridge::{DialFailure, Dialer, Forked, FunctionLeg};
use crate::routing::queue::{OfferId, Order, Ticket};

/// The call task's dial outlives the engine's ring timeout by this much, so that the engine, which owns the
/// timeout, always decides (and a 200 crossing its CANCEL is still handled by the dial).
const DIAL_GRACE: Duration = Duration::from_secs(5);

/// The caller's side of a queue: the ticket, the offers ringing, and what to play.
pub(super) struct QueueWait {
    function: FunctionId,
    ticket: Ticket,
    dialer: Dialer,
    /// Offers ringing now: offer, agent id, the fork to the agent's contacts.
    dials: Vec<(OfferId, String, Forked)>,
    music: Arc<Prompt>,
}

/// Lives on the stack for one turn of the call loop, like `Wake`: boxing the answered leg would buy nothing.
#[allow(clippy::large_enum_variant)]
pub(super) enum QueueWake {
    Order(Order),
    Dialled {
        offer: OfferId,
        agent: String,
        result: Result<(String, FunctionLeg), DialFailure>,
    },
}

impl QueueWait {
    /// The next thing that happens to the wait (cancel-safe: an order is taken only when returned, and a dial
    /// is removed only once it has finished).
    pub(super) async fn next(&mut self) -> QueueWake {
        let dials = &mut self.dials;
        let dialled = std::future::poll_fn(|cx| {
            for (index, (_, _, dial)) in dials.iter_mut().enumerate() {
                if let std::task::Poll::Ready(result) = dial.as_mut().poll(cx) {
                    return std::task::Poll::Ready((index, result));
                }
            }
            std::task::Poll::Pending
        });
        tokio::select! {
            order = self.ticket.next_order() => QueueWake::Order(order),
            (index, result) = dialled => {
                let (offer, agent, _) = self.dials.swap_remove(index);
                QueueWake::Dialled { offer, agent, result }
            }
        }
    }
}

impl Call<'_> {
    /// Puts the caller in `function`'s line with its music playing; false when the function has no queue.
    pub(super) fn enter_queue(&mut self, function: &Function, handoff: Handoff) -> bool {
        let Some(queue) = &function.queue else {
            return false;
        };
        let Some(music) = self.services.prompts.get(&queue.music) else {
            warn!(prompt = %queue.music, "hold music not loaded");
            return false;
        };
        self.media.play_looped(music.clone());
        if self.record.queue_entered_at.is_none() {
            self.record.queue_entered_at = Some(OffsetDateTime::now_utc());
            self.record.queue = Some(function.id.clone());
            // Written at once, so that a crash while the caller waits keeps when they joined the line.
            self.services.records.progress(Progress {
                queue_entered_at: self.record.queue_entered_at,
                queue: self.record.queue.clone(),
                ..Progress::of(self.record)
            });
        }
        let ticket =
            self.services
                .queues
                .join(&function.id, &self.record.call_id, &self.record.from);
        let dialer = Dialer {
            sip: self.services.sip.clone(),
            rtp_ports: self.services.rtp_ports.clone(),
            media_ip: self.services.media_ip,
            prefer: self.codec,
            media_timeout: self.services.media_timeout,
            signalling: self.services.signalling.clone(),
            handoff,
        };
        info!(queue = %function.id, "caller waits in the queue");
        self.gauge.enter(Phase::Queue);
        self.transfer = Some(Transfer::Queue(Box::new(QueueWait {
            function: function.id.clone(),
            ticket,
            dialer,
            dials: Vec::new(),
            music,
        })));
        true
    }

    pub(super) async fn on_queue(&mut self, wake: QueueWake, now: Instant) -> Option<End> {
        let Some(Transfer::Queue(wait)) = &mut self.transfer else {
            return None;
        };
        match wake {
            QueueWake::Order(Order::Offer {
                offer,
                agent,
                contacts,
                ring_timeout,
            }) => {
                let dial = wait.dialer.fork(contacts, ring_timeout + DIAL_GRACE);
                wait.dials.push((offer, agent, dial));
                None
            }
            QueueWake::Order(Order::Cancel { offer }) => {
                // Dropping the dial CANCELs it.
                wait.dials.retain(|(id, _, _)| *id != offer);
                None
            }
            QueueWake::Order(Order::Announce { position }) => {
                if let Some(announcement) = self.position_announcement(position) {
                    self.media.play_over_loop(announcement);
                }
                None
            }
            QueueWake::Order(Order::Overflow) => {
                info!("no agent answered within the queue's max_wait: overflow");
                self.left_queue();
                self.media.stop_prompt();
                self.feed(Event::TransferFailed, now).await
            }
            QueueWake::Dialled {
                offer,
                agent,
                result: Err(failure),
            } => {
                info!(%agent, %failure, "agent did not take the call");
                wait.ticket.offer_failed(offer);
                None
            }
            QueueWake::Dialled {
                offer,
                agent,
                result: Ok((target, leg)),
            } => {
                let Some(Transfer::Queue(wait)) = self.transfer.take() else {
                    return None;
                };
                let QueueWait { ticket, dials, .. } = *wait;
                // The other offers (ring-all) are CANCELled now, not when the bridged call ends.
                drop(dials);
                let on_call = ticket.answered(offer, &agent);
                self.set_queue_wait();
                self.record.answered_by = Some(agent.clone());
                self.record.transfer_target = Some(target);
                info!(%agent, "agent answered");
                self.transferred(now);
                let end = self.bridged(leg).await;
                drop(on_call);
                Some(end)
            }
        }
    }

    /// While waiting, a prompt that ends is a position announcement; the music went on by itself (the player
    /// resumes it), and is started again only if something stopped it.
    pub(super) fn queue_prompt_ended(&mut self) -> bool {
        let Some(Transfer::Queue(wait)) = &self.transfer else {
            return false;
        };
        if !self.media.is_playing() {
            self.media.play_looped(wait.music.clone());
        }
        true
    }

    /// The call ends (or overflows) while waiting: the record says how long, and `end` that it was waiting.
    pub(super) fn end_in_queue(&mut self, end: &mut End) {
        if let Some(Transfer::Queue(wait)) = &self.transfer {
            end.reason = format!("{} while waiting in queue {}", end.reason, wait.function);
            self.left_queue();
        }
    }

    /// Leaves the line (the ticket's drop tells the service) and notes the time waited so far. The call is back
    /// with the flow (an overflow), or ending.
    fn left_queue(&mut self) {
        if matches!(self.transfer, Some(Transfer::Queue(_))) {
            self.transfer = None;
            self.set_queue_wait();
            // Written now: after an overflow the call goes on (another function rings, maybe another queue) for
            // minutes, and the statistics count the wait as over from here.
            self.services.records.progress(Progress {
                queue_wait_ms: self.record.queue_wait_ms,
                ..Progress::of(self.record)
            });
            self.gauge.enter(Phase::Menu);
        }
    }

    /// Waiting time from entering the first queue of the call until now.
    fn set_queue_wait(&mut self) {
        if let Some(entered) = self.record.queue_entered_at {
            let waited = OffsetDateTime::now_utc() - entered;
            self.record.queue_wait_ms = Some(waited.whole_milliseconds().max(0) as i64);
        }
    }

    /// "Du är nummer <n> i kön", from the shipped words; beyond the numbers recorded, "fler än tjugo".
    fn position_announcement(&self, position: usize) -> Option<Arc<Prompt>> {
        let prompts = &self.services.prompts;
        let parts = if position <= model::POSITION_NUMBERS {
            vec![
                prompts.get(model::POSITION_PREFIX)?,
                prompts.get(&model::number_prompt(position))?,
                prompts.get(model::POSITION_SUFFIX)?,
            ]
        } else {
            vec![prompts.get(model::POSITION_MANY)?]
        };
        Some(Arc::new(Prompt::concat(
            format!("queue-position-{position}"),
            &parts,
        )))
    }
}
