use super::*;

const S: Duration = Duration::from_secs(1);

fn queue(agents: &[&str], strategy: Strategy) -> Queue {
    Queue {
        agents: agents
            .iter()
            .map(|a| {
                if a.starts_with("sip:") {
                    QueueAgent::Fixed(a.to_string())
                } else {
                    QueueAgent::Registered(a.to_string())
                }
            })
            .collect(),
        strategy,
        ring_timeout: 15 * S,
        wrap_up: 10 * S,
        max_wait: 600 * S,
        music: "hold-music".into(),
        announce_position: None,
    }
}

/// A test bench: the engine, a clock, and helpers that read the actions.
struct Bench {
    acd: Acd,
    now: Instant,
}

impl Bench {
    fn new(queues: Vec<(&str, Queue)>) -> Bench {
        let now = Instant::now();
        let acd = Acd::new(queues.into_iter().map(|(id, q)| (id.to_string(), q)), now);
        Bench { acd, now }
    }

    fn on(&mut self, event: Event) -> Vec<Action> {
        self.acd.on(event, self.now)
    }

    fn advance(&mut self, by: Duration) -> Vec<Action> {
        self.now += by;
        self.acd.on(Event::Tick, self.now)
    }

    fn register(&mut self, agents: &[&str]) -> Vec<Action> {
        let mut out = Vec::new();
        for agent in agents {
            out.extend(self.on(Event::Registered {
                agent: agent.to_string(),
            }));
        }
        out
    }

    fn join(&mut self, caller: CallerKey, queue: &str) -> Vec<Action> {
        self.on(Event::Joined {
            caller,
            queue: queue.into(),
            call_id: format!("call-{caller}"),
            from: format!("07000000{caller}"),
        })
    }

    fn answer(&mut self, offer: OfferId, caller: CallerKey, agent: &str) -> Vec<Action> {
        self.on(Event::Answered {
            offer,
            caller,
            agent: agent.into(),
        })
    }

    /// A reloaded menu with these queues.
    fn reconfigure(&mut self, queues: Vec<(&str, Queue)>) -> Vec<Action> {
        let queues = queues.into_iter().map(|(id, q)| (id.to_string(), q));
        self.acd.reconfigure(queues, self.now)
    }

    fn state(&self, agent: &str) -> AgentState {
        self.acd
            .view(self.now)
            .iter()
            .flat_map(|q| q.agents.clone())
            .find(|(id, _)| id == agent)
            .map(|(_, state)| state)
            .expect("agent listed")
    }
}

/// (offer, caller, agent id) of every offer in `actions`.
fn offers(actions: &[Action]) -> Vec<(OfferId, CallerKey, String)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Offer {
                offer,
                caller,
                agent,
                ..
            } => Some((*offer, *caller, agent.id().to_string())),
            _ => None,
        })
        .collect()
}

fn cancels(actions: &[Action]) -> Vec<OfferId> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::CancelOffer { offer, .. } => Some(*offer),
            _ => None,
        })
        .collect()
}

#[test]
fn unregistered_agents_get_no_offer_and_a_registration_brings_one() {
    let mut b = Bench::new(vec![("it", queue(&["anna", "bo"], Strategy::LongestIdle))]);
    assert!(offers(&b.join(1, "it")).is_empty());
    assert_eq!(b.state("anna"), AgentState::Unregistered);
    let out = b.register(&["bo"]);
    assert_eq!(offers(&out), [(1, 1, "bo".to_string())]);
    assert_eq!(b.state("bo"), AgentState::Ringing);
}

#[test]
fn fixed_uri_agents_are_offered_without_registering() {
    let mut b = Bench::new(vec![(
        "it",
        queue(&["sip:desk@10.0.0.5"], Strategy::LongestIdle),
    )]);
    let out = b.join(1, "it");
    assert_eq!(offers(&out), [(1, 1, "sip:desk@10.0.0.5".to_string())]);
    assert!(matches!(
        &out[0],
        Action::Offer {
            agent: QueueAgent::Fixed(_),
            ..
        }
    ));
}

#[test]
fn three_callers_two_agents_are_served_in_order_of_arrival() {
    let mut b = Bench::new(vec![("it", queue(&["anna", "bo"], Strategy::LongestIdle))]);
    b.register(&["anna", "bo"]);
    let first = offers(&b.join(1, "it"));
    b.now += S;
    let second = offers(&b.join(2, "it"));
    b.now += S;
    assert!(
        offers(&b.join(3, "it")).is_empty(),
        "no agent left for caller 3"
    );
    assert_eq!(first[0].1, 1);
    assert_eq!(second[0].1, 2);
    assert_eq!(b.acd.position(3), Some(3));
    // Caller 2's agent answers first; caller 3 moves up but still waits.
    let out = b.answer(second[0].0, 2, &second[0].2);
    assert!(out.contains(&Action::Bridge {
        caller: 2,
        agent: second[0].2.clone()
    }));
    assert_eq!(b.acd.position(3), Some(2));
    // Caller 1's agent rejects: caller 1 keeps the head of the line; the agent rests, so nobody is offered yet.
    let out = b.on(Event::OfferFailed { offer: first[0].0 });
    assert!(offers(&out).is_empty());
    assert_eq!(b.acd.position(1), Some(1));
    // The rejecting agent is free again after the pause: the head of the line (caller 1) gets them, not caller 3.
    let out = b.advance(RETRY_PAUSE);
    let next = offers(&out);
    assert_eq!(next.len(), 1, "{out:?}");
    assert_eq!((next[0].1, next[0].2.as_str()), (1, first[0].2.as_str()));
    // Agent 2 finishes and wraps up; then caller 3 is offered.
    b.on(Event::TalkEnded {
        agent: second[0].2.clone(),
    });
    assert!(offers(&b.advance(5 * S)).is_empty());
    let next = offers(&b.advance(5 * S));
    assert_eq!((next[0].1, next[0].2.as_str()), (3, second[0].2.as_str()));
}

#[test]
fn the_head_of_the_line_gets_the_next_free_agent_whatever_the_strategy() {
    for strategy in [
        Strategy::RingAll,
        Strategy::RoundRobin,
        Strategy::LongestIdle,
    ] {
        let mut b = Bench::new(vec![("it", queue(&["anna"], strategy))]);
        b.join(1, "it");
        b.now += S;
        b.join(2, "it");
        b.now += S;
        b.join(3, "it");
        let out = b.register(&["anna"]);
        assert_eq!(offers(&out)[0].1, 1, "{strategy:?}");
        let (offer, _, agent) = offers(&out)[0].clone();
        b.answer(offer, 1, &agent);
        b.on(Event::TalkEnded {
            agent: agent.clone(),
        });
        let out = b.advance(10 * S);
        assert_eq!(offers(&out)[0].1, 2, "{strategy:?}");
    }
}

#[test]
fn ring_timeout_cancels_and_moves_the_offer_to_the_next_agent() {
    let mut b = Bench::new(vec![("it", queue(&["anna", "bo"], Strategy::LongestIdle))]);
    b.register(&["anna", "bo"]);
    let first = offers(&b.join(1, "it"));
    assert_eq!(first[0].2, "anna", "equal idle time: the first listed");
    assert_eq!(b.acd.next_deadline(), Some(b.now + 15 * S));
    let out = b.advance(15 * S);
    assert_eq!(cancels(&out), [first[0].0]);
    let next = offers(&out);
    assert_eq!(next.len(), 1);
    assert_eq!((next[0].1, next[0].2.as_str()), (1, "bo"));
    assert_eq!(b.acd.position(1), Some(1), "the caller keeps their place");
}

#[test]
fn longest_idle_picks_the_agent_free_the_longest() {
    let mut b = Bench::new(vec![(
        "it",
        queue(&["anna", "bo", "cia"], Strategy::LongestIdle),
    )]);
    b.register(&["cia"]);
    b.now += S;
    b.register(&["bo"]);
    b.now += S;
    b.register(&["anna"]);
    assert_eq!(offers(&b.join(1, "it"))[0].2, "cia");
    assert_eq!(offers(&b.join(2, "it"))[0].2, "bo");
}

#[test]
fn round_robin_continues_after_the_last_agent_offered() {
    let mut q = queue(&["anna", "bo", "cia"], Strategy::RoundRobin);
    q.wrap_up = Duration::ZERO;
    let mut b = Bench::new(vec![("it", q)]);
    b.register(&["anna", "bo", "cia"]);
    let mut served = Vec::new();
    for caller in 1..=4 {
        let out = b.join(caller, "it");
        let (offer, _, agent) = offers(&out)[0].clone();
        served.push(agent.clone());
        b.answer(offer, caller, &agent);
        b.on(Event::TalkEnded { agent });
    }
    assert_eq!(served, ["anna", "bo", "cia", "anna"]);
}

#[test]
fn ring_all_rings_every_free_agent_and_the_first_answer_cancels_the_rest() {
    let mut b = Bench::new(vec![(
        "it",
        queue(&["anna", "bo", "sip:desk@h"], Strategy::RingAll),
    )]);
    b.register(&["anna", "bo"]);
    let out = b.join(1, "it");
    let rung = offers(&out);
    assert_eq!(rung.len(), 3);
    assert!(
        offers(&b.join(2, "it")).is_empty(),
        "caller 2 waits behind caller 1"
    );
    let out = b.answer(rung[1].0, 1, "bo");
    let mut cancelled = cancels(&out);
    cancelled.sort();
    assert_eq!(cancelled, [rung[0].0, rung[2].0]);
    // The two freed agents go to caller 2 at once (they did nothing wrong).
    let next = offers(&out);
    assert_eq!(next.len(), 2);
    assert!(next.iter().all(|(_, caller, _)| *caller == 2));
    assert_eq!(b.state("bo"), AgentState::Talking);
}

#[test]
fn an_agent_in_two_queues_is_busy_in_both() {
    let mut b = Bench::new(vec![
        ("it", queue(&["anna"], Strategy::LongestIdle)),
        ("kundtjanst", queue(&["anna", "bo"], Strategy::LongestIdle)),
    ]);
    b.register(&["anna", "bo"]);
    let out = b.join(1, "it");
    assert_eq!(offers(&out)[0].2, "anna");
    let out = b.join(2, "kundtjanst");
    assert_eq!(offers(&out)[0].2, "bo", "anna rings for caller 1 already");
    let views = b.acd.view(b.now);
    assert!(views.iter().all(|q| {
        q.agents
            .iter()
            .any(|(id, s)| id == "anna" && *s == AgentState::Ringing)
    }));
}

#[test]
fn a_shared_agent_goes_to_whoever_waited_longest_across_queues() {
    let mut b = Bench::new(vec![
        ("it", queue(&["anna"], Strategy::LongestIdle)),
        ("kundtjanst", queue(&["anna"], Strategy::LongestIdle)),
    ]);
    b.join(1, "kundtjanst");
    b.now += S;
    b.join(2, "it");
    let out = b.register(&["anna"]);
    assert_eq!(offers(&out)[0].1, 1);
}

#[test]
fn wrap_up_rests_the_agent_before_the_next_offer() {
    let mut b = Bench::new(vec![("it", queue(&["anna"], Strategy::LongestIdle))]);
    b.register(&["anna"]);
    let (offer, _, _) = offers(&b.join(1, "it"))[0].clone();
    b.answer(offer, 1, "anna");
    b.join(2, "it");
    assert!(
        offers(&b.on(Event::TalkEnded {
            agent: "anna".into()
        }))
        .is_empty()
    );
    assert_eq!(b.state("anna"), AgentState::WrapUp);
    assert_eq!(b.acd.next_deadline().map(|d| d - b.now), Some(10 * S));
    assert!(offers(&b.advance(9 * S)).is_empty());
    assert_eq!(offers(&b.advance(S))[0].1, 2);
}

#[test]
fn max_wait_overflows_the_caller_and_cancels_their_offer() {
    let mut q = queue(&["anna"], Strategy::LongestIdle);
    q.max_wait = 20 * S;
    q.ring_timeout = 30 * S;
    let mut b = Bench::new(vec![("it", q)]);
    b.register(&["anna"]);
    let (offer, _, _) = offers(&b.join(1, "it"))[0].clone();
    b.now += 5 * S;
    b.join(2, "it");
    let out = b.advance(15 * S);
    assert_eq!(
        out[..2],
        [
            Action::CancelOffer { offer, caller: 1 },
            Action::Overflow { caller: 1 }
        ]
    );
    // Anna was freed by the cancel (not her fault) and goes to caller 2 at once.
    assert_eq!(offers(&out)[0].1, 2);
    assert_eq!(b.acd.position(1), None);
}

#[test]
fn position_is_announced_every_interval_with_the_current_place() {
    let mut q = queue(&["anna"], Strategy::LongestIdle);
    q.announce_position = Some(45 * S);
    let mut b = Bench::new(vec![("it", q)]);
    b.join(1, "it");
    b.now += 10 * S;
    b.join(2, "it");
    let out = b.advance(35 * S);
    assert_eq!(
        out,
        [Action::AnnouncePosition {
            caller: 1,
            position: 1
        }]
    );
    let out = b.advance(10 * S);
    assert_eq!(
        out,
        [Action::AnnouncePosition {
            caller: 2,
            position: 2
        }]
    );
    b.on(Event::Left { caller: 1 });
    let out = b.advance(45 * S);
    assert_eq!(
        out,
        [Action::AnnouncePosition {
            caller: 2,
            position: 1
        }]
    );
}

#[test]
fn a_caller_who_hangs_up_while_an_agent_rings_cancels_the_offer() {
    let mut b = Bench::new(vec![("it", queue(&["anna"], Strategy::LongestIdle))]);
    b.register(&["anna"]);
    let (offer, _, _) = offers(&b.join(1, "it"))[0].clone();
    let out = b.on(Event::Left { caller: 1 });
    assert_eq!(cancels(&out), [offer]);
    assert_eq!(b.state("anna"), AgentState::Idle);
    assert!(b.acd.view(b.now)[0].waiting.is_empty());
}

#[test]
fn unregistering_while_ringing_moves_the_offer_on() {
    let mut b = Bench::new(vec![("it", queue(&["anna", "bo"], Strategy::LongestIdle))]);
    b.register(&["anna", "bo"]);
    let (offer, _, agent) = offers(&b.join(1, "it"))[0].clone();
    assert_eq!(agent, "anna");
    let out = b.on(Event::Unregistered {
        agent: "anna".into(),
    });
    assert_eq!(cancels(&out), [offer]);
    assert_eq!(offers(&out)[0].2, "bo");
    assert_eq!(b.state("anna"), AgentState::Unregistered);
}

#[test]
fn an_answer_that_crossed_the_cancel_still_stands() {
    let mut q = queue(&["anna", "bo"], Strategy::LongestIdle);
    q.ring_timeout = 5 * S;
    let mut b = Bench::new(vec![("it", q)]);
    b.register(&["anna", "bo"]);
    let (late, _, _) = offers(&b.join(1, "it"))[0].clone();
    let out = b.advance(5 * S);
    let (to_bo, _, _) = offers(&out)[0].clone();
    let out = b.answer(late, 1, "anna");
    assert_eq!(cancels(&out), [to_bo]);
    assert_eq!(b.state("anna"), AgentState::Talking);
    assert_eq!(b.state("bo"), AgentState::Idle);
    assert_eq!(b.acd.position(1), None);
}

#[test]
fn the_view_lists_waiting_callers_in_line_order_with_their_wait() {
    let mut b = Bench::new(vec![(
        "it",
        queue(&["anna", "sip:desk@h"], Strategy::LongestIdle),
    )]);
    b.on(Event::Registered {
        agent: "anna".into(),
    });
    b.on(Event::Unregistered {
        agent: "anna".into(),
    });
    b.join(1, "it");
    b.now += 3 * S;
    b.join(2, "it");
    b.now += S;
    let view = &b.acd.view(b.now)[0];
    assert_eq!(view.function, "it");
    assert_eq!(view.waiting.len(), 2);
    assert_eq!(
        (view.waiting[0].call_id.as_str(), view.waiting[0].waiting),
        ("call-1", 4 * S)
    );
    assert_eq!(view.longest_wait, 4 * S);
    assert_eq!(
        view.agents,
        [
            ("anna".to_string(), AgentState::Unregistered),
            ("sip:desk@h".to_string(), AgentState::Ringing)
        ]
    );
}

#[test]
fn a_rejecting_agent_is_not_rung_again_at_once() {
    let mut b = Bench::new(vec![("it", queue(&["anna"], Strategy::LongestIdle))]);
    b.register(&["anna"]);
    let (offer, _, _) = offers(&b.join(1, "it"))[0].clone();
    assert!(offers(&b.on(Event::OfferFailed { offer })).is_empty());
    assert_eq!(b.acd.next_deadline(), Some(b.now + RETRY_PAUSE));
    assert_eq!(offers(&b.advance(RETRY_PAUSE))[0].1, 1);
}

#[test]
fn a_queue_added_by_a_reload_takes_callers_at_once() {
    let it = || ("it", queue(&["anna"], Strategy::LongestIdle));
    let mut b = Bench::new(vec![it()]);
    assert_eq!(
        b.join(1, "hr"),
        [Action::Overflow { caller: 1 }],
        "no such queue yet"
    );
    let mut hr = queue(&["sip:hr-desk@h"], Strategy::LongestIdle);
    hr.ring_timeout = 7 * S;
    assert!(b.reconfigure(vec![it(), ("hr", hr)]).is_empty());
    let out = b.join(2, "hr");
    assert_eq!(
        out,
        [Action::Offer {
            offer: 1,
            caller: 2,
            agent: QueueAgent::Fixed("sip:hr-desk@h".into()),
            ring_timeout: 7 * S,
        }]
    );
    let functions: Vec<String> = b.acd.view(b.now).into_iter().map(|q| q.function).collect();
    assert_eq!(functions, ["hr", "it"]);
}

#[test]
fn a_changed_queue_offers_its_new_agents_with_its_new_ring_timeout_and_the_line_keeps_its_order() {
    let mut b = Bench::new(vec![("it", queue(&["anna"], Strategy::LongestIdle))]);
    for caller in 1..=3 {
        b.join(caller, "it");
        b.now += S;
    }
    let mut changed = queue(&["anna", "sip:desk@h"], Strategy::RingAll);
    changed.ring_timeout = 5 * S;
    let out = b.reconfigure(vec![("it", changed)]);
    assert_eq!(
        out,
        [Action::Offer {
            offer: 1,
            caller: 1,
            agent: QueueAgent::Fixed("sip:desk@h".into()),
            ring_timeout: 5 * S,
        }],
        "the head of the line gets the new agent"
    );
    assert_eq!(
        [1, 2, 3].map(|c| b.acd.position(c)),
        [Some(1), Some(2), Some(3)]
    );
    assert_eq!(b.acd.next_deadline(), Some(b.now + 5 * S));
    // The new strategy too: ring-all rings Anna for the head of the line beside the desk.
    let out = b.register(&["anna"]);
    assert_eq!(offers(&out), [(2, 1, "anna".to_string())]);
}

#[test]
fn an_agent_taken_out_of_a_queue_may_answer_the_offer_ringing_but_gets_no_new_one() {
    let mut b = Bench::new(vec![("it", queue(&["anna", "bo"], Strategy::LongestIdle))]);
    b.register(&["anna", "bo"]);
    let (ringing, _, agent) = offers(&b.join(1, "it"))[0].clone();
    assert_eq!(agent, "anna");
    let out = b.reconfigure(vec![("it", queue(&["bo"], Strategy::LongestIdle))]);
    assert!(
        cancels(&out).is_empty(),
        "the offer ringing goes on: {out:?}"
    );
    assert_eq!(b.state("bo"), AgentState::Idle);
    let out = b.answer(ringing, 1, "anna");
    assert!(out.contains(&Action::Bridge {
        caller: 1,
        agent: "anna".into()
    }));
    b.on(Event::TalkEnded {
        agent: "anna".into(),
    });
    // Anna is free again after her wrap-up, but callers of it get Bo only.
    b.advance(20 * S);
    let (to_bo, _, agent) = offers(&b.join(2, "it"))[0].clone();
    assert_eq!(agent, "bo");
    assert!(offers(&b.join(3, "it")).is_empty(), "Anna is not offered");
    b.on(Event::OfferFailed { offer: to_bo });
    let out = b.advance(RETRY_PAUSE);
    assert_eq!(offers(&out), [(3, 2, "bo".to_string())]);
    assert!(b.acd.view(b.now)[0].agents.iter().all(|(id, _)| id == "bo"));
}

#[test]
fn after_a_reload_max_wait_counts_from_when_each_caller_entered() {
    let mut q = queue(&["anna"], Strategy::LongestIdle);
    q.max_wait = 600 * S;
    let mut b = Bench::new(vec![("it", q.clone())]);
    b.join(1, "it");
    b.now += 100 * S;
    b.join(2, "it");
    b.now += 20 * S;
    // Raised: both wait longer, in the order they came.
    q.max_wait = 900 * S;
    assert!(b.reconfigure(vec![("it", q.clone())]).is_empty());
    assert!(b.advance(779 * S).is_empty(), "past the old 600 s");
    assert_eq!(b.advance(S), [Action::Overflow { caller: 1 }]);
    b.join(3, "it");
    b.now += 30 * S;
    // Lowered below what caller 2 has waited (830 s): they overflow now; caller 3 (30 s) at 60 s.
    q.max_wait = 60 * S;
    assert_eq!(
        b.reconfigure(vec![("it", q)]),
        [Action::Overflow { caller: 2 }]
    );
    assert_eq!(b.acd.position(3), Some(1));
    assert!(b.advance(29 * S).is_empty());
    assert_eq!(b.advance(S), [Action::Overflow { caller: 3 }]);
}

#[test]
fn after_a_reload_the_place_is_told_every_new_interval_counted_from_entry() {
    let announce = |every: Option<Duration>| {
        let mut q = queue(&["anna"], Strategy::LongestIdle);
        q.announce_position = every;
        vec![("it", q)]
    };
    let mut b = Bench::new(announce(Some(45 * S)));
    b.join(1, "it");
    let out = b.advance(50 * S);
    assert_eq!(
        out,
        [Action::AnnouncePosition {
            caller: 1,
            position: 1
        }]
    );
    // Unchanged: the next stays at 90 s.
    assert!(b.reconfigure(announce(Some(45 * S))).is_empty());
    assert_eq!(b.acd.next_deadline(), Some(b.now + 40 * S));
    // Every 30 s: the next at 60 s, not at once.
    assert!(b.reconfigure(announce(Some(30 * S))).is_empty());
    assert_eq!(b.acd.next_deadline(), Some(b.now + 10 * S));
    assert_eq!(b.advance(10 * S).len(), 1);
    // Off: nothing more is timed but the overflow.
    assert!(b.reconfigure(announce(None)).is_empty());
    assert_eq!(b.acd.next_deadline().map(|d| d - b.now), Some(540 * S));
}

#[test]
fn a_removed_queue_keeps_its_callers_under_its_last_settings_and_goes_once_empty() {
    let mut q = queue(&["anna"], Strategy::LongestIdle);
    q.max_wait = 100 * S;
    q.ring_timeout = 8 * S;
    let mut b = Bench::new(vec![("it", q)]);
    b.join(1, "it");
    b.now += S;
    b.join(2, "it");
    let kt = || ("kundtjanst", queue(&["bo"], Strategy::LongestIdle));
    assert!(b.reconfigure(vec![kt()]).is_empty(), "nobody is dropped");
    let view = b.acd.view(b.now);
    let it = view.iter().find(|q| q.function == "it").expect("it listed");
    assert!(!it.in_menu);
    assert_eq!(it.waiting.len(), 2);
    assert_eq!(
        b.join(3, "it"),
        [Action::Overflow { caller: 3 }],
        "closed to new callers"
    );
    // Its agent still serves its line, with its ring timeout.
    let out = b.register(&["anna"]);
    assert_eq!(offers(&out), [(1, 1, "anna".to_string())]);
    assert!(matches!(
        out[0],
        Action::Offer {
            ring_timeout,
            ..
        } if ring_timeout == 8 * S
    ));
    b.answer(1, 1, "anna");
    assert_eq!(b.state("anna"), AgentState::Talking);
    // Caller 2 overflows at its max_wait; the queue is then gone, and so is Anna, whom no queue lists.
    assert_eq!(b.advance(100 * S), [Action::Overflow { caller: 2 }]);
    let functions: Vec<String> = b.acd.view(b.now).into_iter().map(|q| q.function).collect();
    assert_eq!(functions, ["kundtjanst"]);
    b.on(Event::TalkEnded {
        agent: "anna".into(),
    });
    b.advance(10 * S);
    // Back in a later menu: open again. Anna was kept while on her call, so her registration still counts.
    let out = b.reconfigure(vec![kt(), ("it", queue(&["anna"], Strategy::LongestIdle))]);
    assert!(out.is_empty());
    assert!(b.acd.view(b.now).iter().all(|q| q.in_menu));
    assert_eq!(
        b.acd.registered_agents().collect::<Vec<_>>(),
        ["anna", "bo"]
    );
    assert_eq!(offers(&b.join(4, "it")), [(2, 4, "anna".to_string())]);
}

#[test]
fn an_agent_no_queue_lists_is_forgotten_once_free_and_registers_anew_when_listed_again() {
    let mut b = Bench::new(vec![("it", queue(&["anna", "bo"], Strategy::LongestIdle))]);
    b.register(&["anna", "bo"]);
    b.reconfigure(vec![("it", queue(&["bo"], Strategy::LongestIdle))]);
    assert_eq!(b.acd.registered_agents().collect::<Vec<_>>(), ["bo"]);
    // Listed again: unregistered until the shell reports her registration (it reads the registrar at once).
    b.reconfigure(vec![("it", queue(&["anna"], Strategy::LongestIdle))]);
    assert_eq!(b.state("anna"), AgentState::Unregistered);
    assert!(offers(&b.join(1, "it")).is_empty());
    assert_eq!(offers(&b.register(&["anna"])), [(1, 1, "anna".to_string())]);
}

/// A small deterministic generator, so a failing walk can be replayed.
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n.max(1)
    }
}

/// What must hold after every event: offers and agents agree, offers belong to waiting callers, and no waiting
/// caller without an offer (or any ring-all caller) could be offered a free agent of their queue.
fn check_invariants(acd: &Acd, now: Instant, step: usize) {
    for (id, offer) in &acd.offers {
        let agent = &acd.agents[&offer.agent];
        assert_eq!(
            agent.activity,
            Activity::Ringing(*id),
            "step {step}: offer {id} vs agent {agent:?}"
        );
        assert!(
            acd.waiting.contains_key(&offer.caller),
            "step {step}: offer {id} for a caller not waiting"
        );
    }
    for (id, agent) in &acd.agents {
        if let Activity::Ringing(offer) = agent.activity {
            assert_eq!(
                acd.offers.get(&offer).map(|o| o.agent.as_str()),
                Some(id.as_str()),
                "step {step}"
            );
        }
    }
    for (queue, line) in &acd.lines {
        for caller in &line.callers {
            assert_eq!(acd.waiting[caller].queue, *queue, "step {step}");
            let has_offer = acd.offers.values().any(|o| o.caller == *caller);
            if has_offer && line.config.strategy != Strategy::RingAll {
                continue;
            }
            let free: Vec<&str> = line
                .config
                .agents
                .iter()
                .filter(|a| acd.agents[a.id()].can_take_offer(now))
                .map(QueueAgent::id)
                .collect();
            assert!(
                free.is_empty(),
                "step {step}: caller {caller} in {queue} waits while {free:?} are free"
            );
        }
    }
    assert_eq!(
        acd.waiting.len(),
        acd.lines.values().map(|l| l.callers.len()).sum::<usize>(),
        "step {step}"
    );
}

#[test]
fn random_walks_keep_offers_agents_and_lines_consistent_and_leave_no_free_agent_idle() {
    for (seed, strategy) in [
        (1, Strategy::LongestIdle),
        (2, Strategy::RoundRobin),
        (3, Strategy::RingAll),
    ] {
        let mut rng = Lcg(seed);
        let mut it = queue(&["anna", "bo", "sip:desk@h"], strategy);
        it.max_wait = 120 * S;
        it.announce_position = Some(30 * S);
        let mut kt = queue(&["bo", "cia"], Strategy::LongestIdle);
        kt.wrap_up = Duration::ZERO;
        // The menus a reload may bring: it changed (other agents, strategy and times), kundtjänst removed,
        // both back as they were.
        let mut it_changed = queue(&["cia", "sip:desk@h"], Strategy::RoundRobin);
        it_changed.max_wait = 60 * S;
        it_changed.announce_position = Some(20 * S);
        it_changed.ring_timeout = 5 * S;
        let menus = [
            vec![("it", it.clone()), ("kundtjanst", kt.clone())],
            vec![("it", it_changed.clone()), ("kundtjanst", kt.clone())],
            vec![("it", it_changed)],
            vec![("kundtjanst", kt.clone())],
        ];
        let mut b = Bench::new(vec![("it", it), ("kundtjanst", kt)]);
        let mut live: Vec<(OfferId, CallerKey, String)> = Vec::new();
        let mut next_caller = 1;
        for step in 0..20_000 {
            let agent = ["anna", "bo", "cia", "sip:desk@h"][rng.below(4) as usize].to_string();
            let event = match rng.below(12) {
                0 | 1 => {
                    next_caller += 1;
                    Event::Joined {
                        caller: next_caller,
                        queue: ["it", "kundtjanst"][rng.below(2) as usize].into(),
                        call_id: format!("c{next_caller}"),
                        from: "070".into(),
                    }
                }
                2 => Event::Left {
                    caller: rng.below(next_caller + 1),
                },
                3 | 4 if !live.is_empty() => {
                    let (offer, _, _) = live[rng.below(live.len() as u64) as usize].clone();
                    Event::OfferFailed { offer }
                }
                5 if !live.is_empty() => {
                    let (offer, caller, agent) =
                        live[rng.below(live.len() as u64) as usize].clone();
                    Event::Answered {
                        offer,
                        caller,
                        agent,
                    }
                }
                6 => Event::TalkEnded { agent },
                7 => Event::Registered { agent },
                8 => Event::Unregistered { agent },
                _ => {
                    b.now += Duration::from_millis(rng.below(20_000));
                    Event::Tick
                }
            };
            let answered = match &event {
                Event::Answered { offer, .. } | Event::OfferFailed { offer } => Some(*offer),
                _ => None,
            };
            live.retain(|(offer, _, _)| Some(*offer) != answered);
            let actions = if rng.below(40) == 0 {
                b.reconfigure(menus[rng.below(menus.len() as u64) as usize].clone())
            } else {
                b.on(event)
            };
            for action in actions {
                match action {
                    Action::Offer {
                        offer,
                        caller,
                        agent,
                        ..
                    } => live.push((offer, caller, agent.id().to_string())),
                    Action::CancelOffer { offer, .. } => live.retain(|(o, _, _)| *o != offer),
                    _ => {}
                }
            }
            check_invariants(&b.acd, b.now, step);
            if let Some(deadline) = b.acd.next_deadline() {
                assert!(
                    deadline > b.now,
                    "step {step}: a timer already due was not run"
                );
            }
        }
    }
}
