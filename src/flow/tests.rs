//! Every branch of the engine, driven the way the call task drives it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::*;
use crate::menu::model::{Choice, FailureAction, Function, Menu, MenuNode, TransferMode};

fn node(id: &str) -> MenuNode {
    MenuNode {
        id: id.into(),
        greeting: None,
        prompt: format!("{id}-prompt"),
        timeout: Duration::from_secs(5),
        retries: 2,
        invalid: None,
        options: BTreeMap::new(),
        fallback: Choice::Hangup,
    }
}

fn function(id: &str) -> Function {
    Function {
        id: id.into(),
        name: id.to_uppercase(),
        target: format!("sip:{id}@127.0.0.1:5071"),
        transfer: TransferMode::Bridge,
        queue: None,
        ring_timeout: Duration::from_secs(20),
        announcement: None,
        transfer_prompt: None,
        failure_prompt: None,
        on_failure: FailureAction::Hangup,
        hours: None,
    }
}

/// A municipality's menu with every feature in use:
/// root (greeting, invalid prompt, retries 2, timeout 5 s, fallback: kundtjanst)
///   1 kundtjanst (transfer prompt), 2 personal (submenu), 3 it (no transfer prompt; busy prompt, then kundtjanst),
///   0 repeat, * back, 9 hangup
/// personal (greeting, no invalid prompt, retries 1, timeout 4 s, fallback: back)
///   1 hr (no prompts; on failure: it), 9 main menu, * back, 0 repeat
fn kommun() -> Menu {
    let mut root = node(ROOT_MENU);
    root.greeting = Some("welcome".into());
    root.invalid = Some("invalid".into());
    root.options = BTreeMap::from([
        ('1', Choice::Route("kundtjanst".into())),
        ('2', Choice::Menu("personal".into())),
        ('3', Choice::Route("it".into())),
        ('0', Choice::Repeat),
        ('*', Choice::Back),
        ('9', Choice::Hangup),
    ]);
    root.fallback = Choice::Route("kundtjanst".into());

    let mut personal = node("personal");
    personal.greeting = Some("personal-welcome".into());
    personal.retries = 1;
    personal.timeout = Duration::from_secs(4);
    personal.options = BTreeMap::from([
        ('1', Choice::Route("hr".into())),
        ('9', Choice::Menu(ROOT_MENU.into())),
        ('*', Choice::Back),
        ('0', Choice::Repeat),
    ]);
    personal.fallback = Choice::Back;

    let mut kundtjanst = function("kundtjanst");
    kundtjanst.transfer_prompt = Some("to-kundtjanst".into());
    let mut it = function("it");
    it.failure_prompt = Some("it-busy".into());
    it.on_failure = FailureAction::Route("kundtjanst".into());
    let mut hr = function("hr");
    hr.on_failure = FailureAction::Route("it".into());

    Menu {
        name: "Kommunsupport".into(),
        functions: [kundtjanst, it, hr]
            .into_iter()
            .map(|f| (f.id.clone(), f))
            .collect(),
        menus: [root, personal]
            .into_iter()
            .map(|m| (m.id.clone(), m))
            .collect(),
        hours: None,
        languages: None,
    }
}

/// The call task's side: a clock and a flow.
struct Call {
    flow: Flow,
    start: Instant,
    now: Instant,
}

impl Call {
    fn new(menu: Menu) -> Call {
        let start = Instant::now();
        Call {
            flow: Flow::new(
                Arc::new(menu),
                WallClock::new(jiff::Timestamp::UNIX_EPOCH, start),
            ),
            start,
            now: start,
        }
    }

    /// A call answered at t=0 whose greeting (if any) and root prompt have played: waiting for a digit.
    fn waiting_in_root(menu: Menu) -> Call {
        let mut call = Call::new(menu);
        call.send(Event::Answered);
        // Greeting (if any), then the root prompt.
        for _ in 0..2 {
            if call.flow.next_timeout().is_none() {
                call.send(Event::PromptEnded);
            }
        }
        assert!(
            call.flow.next_timeout().is_some(),
            "waiting for a digit in root"
        );
        call
    }

    fn at(&mut self, ms: u64) -> &mut Call {
        self.now = self.start + Duration::from_millis(ms);
        self
    }

    fn send(&mut self, event: Event) -> Vec<Action> {
        self.flow.on(event, self.now)
    }

    /// Deliver the pending timeout exactly when it is due.
    fn time_out(&mut self) -> Vec<Action> {
        self.now = self.flow.next_timeout().expect("a timer is pending");
        self.send(Event::Timeout)
    }

    fn path(&self) -> Vec<&str> {
        self.flow
            .journey()
            .path
            .iter()
            .map(String::as_str)
            .collect()
    }

    fn kinds(&self) -> Vec<StepKind> {
        self.flow
            .journey()
            .steps
            .iter()
            .map(|s| s.kind.clone())
            .collect()
    }
}

fn play(prompt: &str) -> Action {
    Action::Play(prompt.into())
}

fn transfer(function: &str) -> Action {
    Action::Transfer(function.into())
}

fn entered(menu: &str) -> StepKind {
    StepKind::EnteredMenu(menu.into())
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[test]
fn answer_plays_greeting_then_prompt_then_waits_for_the_menu_timeout() {
    let mut call = Call::new(kommun());
    assert_eq!(call.send(Event::Answered), vec![play("welcome")]);
    assert_eq!(
        call.flow.current_menu().map(String::as_str),
        Some(ROOT_MENU)
    );
    assert_eq!(
        call.flow.next_timeout(),
        None,
        "no timer while the greeting plays"
    );
    assert_eq!(
        call.at(3_000).send(Event::PromptEnded),
        vec![play("root-prompt")]
    );
    assert_eq!(
        call.flow.next_timeout(),
        None,
        "no timer while the prompt plays"
    );
    assert_eq!(call.at(9_000).send(Event::PromptEnded), vec![]);
    assert_eq!(call.flow.next_timeout(), Some(call.start + ms(14_000)));
    assert!(!call.flow.is_finished());
    assert_eq!(call.path(), vec![ROOT_MENU]);
}

#[test]
fn a_menu_without_greeting_starts_with_its_prompt() {
    let mut menu = kommun();
    menu.menus.get_mut(ROOT_MENU).unwrap().greeting = None;
    let mut call = Call::new(menu);
    assert_eq!(call.send(Event::Answered), vec![play("root-prompt")]);
    assert_eq!(call.send(Event::PromptEnded), vec![]);
    assert!(call.flow.next_timeout().is_some());
}

#[test]
fn the_greeting_plays_only_on_the_first_entry_of_a_menu() {
    let mut call = Call::waiting_in_root(kommun());
    assert_eq!(call.send(Event::Digit('2')), vec![play("personal-welcome")]);
    assert_eq!(call.send(Event::PromptEnded), vec![play("personal-prompt")]);
    // "9: main menu" returns to the root without its greeting.
    assert_eq!(
        call.send(Event::Digit('9')),
        vec![Action::StopPrompt, play("root-prompt")]
    );
    assert_eq!(
        call.send(Event::Digit('2')),
        vec![Action::StopPrompt, play("personal-prompt")]
    );
    assert_eq!(
        call.path(),
        vec![ROOT_MENU, "personal", ROOT_MENU, "personal"]
    );
}

#[test]
fn timeouts_replay_the_prompt_until_the_retries_run_out_then_the_fallback_routes() {
    let mut call = Call::waiting_in_root(kommun());
    for _ in 0..2 {
        assert_eq!(call.time_out(), vec![play("root-prompt")]);
        assert_eq!(call.flow.next_timeout(), None);
        assert_eq!(call.send(Event::PromptEnded), vec![]);
    }
    // Third failure with retries 2: the fallback routes to kundtjanst, which has a transfer prompt.
    assert_eq!(call.time_out(), vec![play("to-kundtjanst")]);
    assert_eq!(call.send(Event::PromptEnded), vec![transfer("kundtjanst")]);
    assert_eq!(call.send(Event::TransferSucceeded), vec![]);
    assert!(call.flow.is_finished());
    let journey = call.flow.journey();
    assert_eq!(journey.outcome, Some(Outcome::Transferred));
    assert_eq!(journey.function.as_deref(), Some("kundtjanst"));
    assert_eq!(journey.digits, "");
    assert_eq!(
        call.kinds(),
        vec![
            entered(ROOT_MENU),
            StepKind::Timeout,
            StepKind::Timeout,
            StepKind::Timeout,
            StepKind::Fallback,
            StepKind::TransferStarted("kundtjanst".into()),
            StepKind::Transferred("kundtjanst".into()),
        ]
    );
}

#[test]
fn an_early_or_unexpected_timeout_is_ignored() {
    let mut call = Call::new(kommun());
    assert_eq!(call.send(Event::Timeout), vec![], "before the answer");
    call.send(Event::Answered);
    assert_eq!(
        call.at(60_000).send(Event::Timeout),
        vec![],
        "during the greeting"
    );
    call.send(Event::PromptEnded);
    call.send(Event::PromptEnded);
    let deadline = call.flow.next_timeout().unwrap();
    call.now = deadline - ms(1);
    assert_eq!(call.send(Event::Timeout), vec![]);
    assert_eq!(
        call.flow.next_timeout(),
        Some(deadline),
        "the timer is still pending"
    );
    assert!(!call.kinds().contains(&StepKind::Timeout));
}

#[test]
fn an_invalid_digit_plays_the_invalid_prompt_then_the_menu_prompt() {
    let mut call = Call::waiting_in_root(kommun());
    assert_eq!(call.send(Event::Digit('7')), vec![play("invalid")]);
    assert_eq!(
        call.flow.next_timeout(),
        None,
        "no timer during the invalid prompt"
    );
    assert_eq!(call.send(Event::PromptEnded), vec![play("root-prompt")]);
    assert_eq!(call.flow.next_timeout(), None);
    assert_eq!(call.send(Event::PromptEnded), vec![]);
    assert!(call.flow.next_timeout().is_some());
}

#[test]
fn an_invalid_digit_without_invalid_prompt_replays_the_menu_prompt() {
    let mut call = Call::waiting_in_root(kommun());
    call.send(Event::Digit('2'));
    // Barge into the personal greeting with a digit personal has no option for.
    assert_eq!(
        call.send(Event::Digit('5')),
        vec![Action::StopPrompt, play("personal-prompt")]
    );
    assert_eq!(call.kinds().last(), Some(&StepKind::InvalidDigit('5')));
}

#[test]
fn invalid_digits_past_the_retries_run_the_fallback_and_a_hangup_fallback_is_a_timeout() {
    let mut menu = kommun();
    menu.menus.get_mut(ROOT_MENU).unwrap().fallback = Choice::Hangup;
    let mut call = Call::waiting_in_root(menu);
    assert_eq!(call.send(Event::Digit('7')), vec![play("invalid")]);
    // Barging into the invalid prompt with another invalid digit counts too.
    assert_eq!(
        call.send(Event::Digit('8')),
        vec![Action::StopPrompt, play("invalid")]
    );
    assert_eq!(
        call.send(Event::Digit('#')),
        vec![Action::StopPrompt, Action::Hangup]
    );
    assert!(call.flow.is_finished());
    assert_eq!(call.flow.journey().outcome, Some(Outcome::Timeout));
    assert_eq!(call.flow.journey().digits, "78#");
    assert_eq!(
        call.kinds()[call.kinds().len() - 2..],
        [StepKind::Fallback, StepKind::Hangup]
    );
}

#[test]
fn timeouts_and_invalid_digits_share_the_failure_count() {
    let mut menu = kommun();
    menu.menus.get_mut(ROOT_MENU).unwrap().fallback = Choice::Hangup;
    let mut call = Call::waiting_in_root(menu);
    call.time_out();
    call.send(Event::PromptEnded);
    call.send(Event::Digit('5'));
    call.send(Event::PromptEnded);
    call.send(Event::PromptEnded);
    assert_eq!(call.time_out(), vec![Action::Hangup]);
    assert_eq!(call.flow.journey().outcome, Some(Outcome::Timeout));
}

#[test]
fn a_fallback_menu_is_entered_with_fresh_retries() {
    let mut menu = kommun();
    menu.menus.get_mut(ROOT_MENU).unwrap().fallback = Choice::Menu("personal".into());
    let mut call = Call::waiting_in_root(menu);
    for _ in 0..2 {
        call.time_out();
        call.send(Event::PromptEnded);
    }
    assert_eq!(call.time_out(), vec![play("personal-welcome")]);
    assert_eq!(call.path(), vec![ROOT_MENU, "personal"]);
    call.send(Event::PromptEnded);
    call.send(Event::PromptEnded);
    // personal has retries 1: one timeout re-prompts, the second runs personal's fallback (back to root).
    assert_eq!(call.time_out(), vec![play("personal-prompt")]);
    call.send(Event::PromptEnded);
    assert_eq!(call.time_out(), vec![play("root-prompt")]);
    assert_eq!(call.path(), vec![ROOT_MENU, "personal", ROOT_MENU]);
    assert!(
        call.kinds()
            .ends_with(&[StepKind::Fallback, StepKind::Back, entered(ROOT_MENU)])
    );
}

#[test]
fn a_repeat_fallback_starts_a_new_round_of_retries() {
    let mut menu = kommun();
    menu.menus.get_mut(ROOT_MENU).unwrap().fallback = Choice::Repeat;
    let mut call = Call::waiting_in_root(menu);
    for round in 0..3 {
        for _ in 0..2 {
            assert_eq!(
                call.send(Event::Digit('7')),
                vec![play("invalid")],
                "round {round}"
            );
            call.send(Event::PromptEnded);
            call.send(Event::PromptEnded);
        }
        // The failure past the retries: the fallback repeats the menu prompt (no invalid prompt).
        assert_eq!(
            call.send(Event::Digit('7')),
            vec![play("root-prompt")],
            "round {round}"
        );
        call.send(Event::PromptEnded);
    }
    assert!(!call.flow.is_finished());
}

#[test]
fn repeat_replays_the_prompt_and_is_not_a_failure() {
    let mut menu = kommun();
    menu.menus.get_mut(ROOT_MENU).unwrap().fallback = Choice::Hangup;
    let mut call = Call::waiting_in_root(menu);
    for _ in 0..5 {
        assert_eq!(call.send(Event::Digit('0')), vec![play("root-prompt")]);
        call.send(Event::PromptEnded);
    }
    // Still two retries left.
    assert_eq!(call.time_out(), vec![play("root-prompt")]);
    call.send(Event::PromptEnded);
    assert_eq!(call.time_out(), vec![play("root-prompt")]);
    call.send(Event::PromptEnded);
    assert_eq!(call.time_out(), vec![Action::Hangup]);
    assert_eq!(
        call.kinds()
            .iter()
            .filter(|k| **k == StepKind::Repeat)
            .count(),
        5
    );
}

#[test]
fn repeat_barging_into_the_prompt_stops_it_first() {
    let mut call = Call::new(kommun());
    call.send(Event::Answered);
    call.send(Event::PromptEnded);
    assert_eq!(
        call.send(Event::Digit('0')),
        vec![Action::StopPrompt, play("root-prompt")]
    );
}

#[test]
fn back_in_a_submenu_returns_to_the_previous_menu_with_fresh_retries() {
    let mut menu = kommun();
    menu.menus.get_mut(ROOT_MENU).unwrap().fallback = Choice::Hangup;
    let mut call = Call::waiting_in_root(menu);
    // Two failures in root, then into personal and back: root's failures start over.
    for _ in 0..2 {
        call.time_out();
        call.send(Event::PromptEnded);
    }
    call.send(Event::Digit('2'));
    assert_eq!(
        call.send(Event::Digit('*')),
        vec![Action::StopPrompt, play("root-prompt")]
    );
    assert_eq!(
        call.flow.current_menu().map(String::as_str),
        Some(ROOT_MENU)
    );
    call.send(Event::PromptEnded);
    assert_eq!(
        call.time_out(),
        vec![play("root-prompt")],
        "retries were reset by entering root again"
    );
    assert_eq!(call.path(), vec![ROOT_MENU, "personal", ROOT_MENU]);
}

#[test]
fn back_at_the_root_replays_the_root_prompt() {
    let mut call = Call::waiting_in_root(kommun());
    assert_eq!(call.send(Event::Digit('*')), vec![play("root-prompt")]);
    assert_eq!(call.path(), vec![ROOT_MENU]);
    assert_eq!(call.kinds().last(), Some(&StepKind::Back));
    assert_eq!(
        call.flow.current_menu().map(String::as_str),
        Some(ROOT_MENU)
    );
}

#[test]
fn choosing_a_menu_already_on_the_way_returns_to_it_instead_of_nesting() {
    let mut call = Call::waiting_in_root(kommun());
    call.send(Event::Digit('2'));
    call.send(Event::Digit('9'));
    call.send(Event::PromptEnded);
    // Back from the root, reached by "main menu", stays at the root.
    assert_eq!(call.send(Event::Digit('*')), vec![play("root-prompt")]);
    assert_eq!(
        call.flow.current_menu().map(String::as_str),
        Some(ROOT_MENU)
    );
    assert_eq!(call.path(), vec![ROOT_MENU, "personal", ROOT_MENU]);
}

#[test]
fn a_route_with_transfer_prompt_plays_it_then_hands_off_and_ignores_digits_meanwhile() {
    let mut call = Call::waiting_in_root(kommun());
    assert_eq!(
        call.at(20_000).send(Event::Digit('1')),
        vec![play("to-kundtjanst")]
    );
    assert_eq!(call.flow.journey().function.as_deref(), Some("kundtjanst"));
    assert_eq!(
        call.send(Event::Digit('2')),
        vec![],
        "no barge-in into a transfer prompt"
    );
    assert_eq!(call.send(Event::PromptEnded), vec![transfer("kundtjanst")]);
    assert_eq!(call.flow.next_timeout(), None);
    assert_eq!(call.send(Event::Digit('3')), vec![]);
    assert_eq!(
        call.send(Event::PromptEnded),
        vec![],
        "nothing plays during the hand-off"
    );
    assert_eq!(call.send(Event::TransferSucceeded), vec![]);
    assert!(call.flow.is_finished());
    assert_eq!(call.flow.journey().digits, "1");
    assert_eq!(call.flow.journey().outcome, Some(Outcome::Transferred));
}

#[test]
fn a_route_without_transfer_prompt_hands_off_at_once_barging_in() {
    let mut call = Call::new(kommun());
    call.send(Event::Answered);
    assert_eq!(
        call.send(Event::Digit('3')),
        vec![Action::StopPrompt, transfer("it")]
    );
    assert_eq!(call.flow.next_timeout(), None);
}

#[test]
fn a_failed_transfer_plays_the_failure_prompt_then_follows_on_failure() {
    let mut call = Call::waiting_in_root(kommun());
    call.send(Event::Digit('3'));
    assert_eq!(call.send(Event::TransferFailed), vec![play("it-busy")]);
    assert_eq!(
        call.send(Event::Digit('1')),
        vec![],
        "digits are not choices after a failed hand-off"
    );
    assert_eq!(call.send(Event::PromptEnded), vec![play("to-kundtjanst")]);
    assert_eq!(call.send(Event::PromptEnded), vec![transfer("kundtjanst")]);
    assert_eq!(call.flow.journey().function.as_deref(), Some("kundtjanst"));
    // kundtjanst has no failure prompt and hangs up on failure.
    assert_eq!(call.send(Event::TransferFailed), vec![Action::Hangup]);
    assert!(call.flow.is_finished());
    assert_eq!(call.flow.journey().outcome, Some(Outcome::Failed));
    assert_eq!(
        call.kinds()[1..],
        [
            StepKind::Digit('3'),
            StepKind::TransferStarted("it".into()),
            StepKind::TransferFailed("it".into()),
            StepKind::TransferStarted("kundtjanst".into()),
            StepKind::TransferFailed("kundtjanst".into()),
            StepKind::Hangup,
        ]
    );
}

#[test]
fn a_failed_transfer_without_failure_prompt_routes_on_at_once() {
    let mut call = Call::waiting_in_root(kommun());
    call.send(Event::Digit('2'));
    assert_eq!(
        call.send(Event::Digit('1')),
        vec![Action::StopPrompt, transfer("hr")]
    );
    // hr fails straight on to it, which has no transfer prompt.
    assert_eq!(call.send(Event::TransferFailed), vec![transfer("it")]);
    assert_eq!(call.send(Event::TransferSucceeded), vec![]);
    assert_eq!(call.flow.journey().outcome, Some(Outcome::Transferred));
    assert_eq!(call.flow.journey().function.as_deref(), Some("it"));
}

#[test]
fn on_failure_never_loops_back_to_a_function_already_tried() {
    let mut menu = kommun();
    menu.functions.get_mut("kundtjanst").unwrap().on_failure = FailureAction::Route("hr".into());
    let mut call = Call::waiting_in_root(menu);
    call.send(Event::Digit('2'));
    call.send(Event::Digit('1'));
    // hr -> it -> (busy prompt) kundtjanst -> hr again: hang up instead.
    assert_eq!(call.send(Event::TransferFailed), vec![transfer("it")]);
    assert_eq!(call.send(Event::TransferFailed), vec![play("it-busy")]);
    assert_eq!(call.send(Event::PromptEnded), vec![play("to-kundtjanst")]);
    assert_eq!(call.send(Event::PromptEnded), vec![transfer("kundtjanst")]);
    assert_eq!(call.send(Event::TransferFailed), vec![Action::Hangup]);
    assert_eq!(call.flow.journey().outcome, Some(Outcome::Failed));
    assert_eq!(call.flow.journey().function.as_deref(), Some("kundtjanst"));
}

#[test]
fn a_function_failing_over_to_itself_hangs_up() {
    let mut menu = kommun();
    menu.functions.get_mut("it").unwrap().on_failure = FailureAction::Route("it".into());
    let mut call = Call::waiting_in_root(menu);
    call.send(Event::Digit('3'));
    call.send(Event::TransferFailed);
    assert_eq!(call.send(Event::PromptEnded), vec![Action::Hangup]);
    assert_eq!(call.flow.journey().outcome, Some(Outcome::Failed));
}

#[test]
fn the_caller_hanging_up_mid_prompt_abandons_the_call_and_keeps_the_journey() {
    let mut call = Call::waiting_in_root(kommun());
    call.at(6_000).send(Event::Digit('2'));
    assert_eq!(call.at(7_500).send(Event::CallerHungUp), vec![]);
    assert!(call.flow.is_finished());
    let journey = call.flow.journey().clone();
    assert_eq!(journey.outcome, Some(Outcome::Abandoned));
    assert_eq!(journey.digits, "2");
    assert_eq!(journey.path, vec![ROOT_MENU.to_string(), "personal".into()]);
    assert_eq!(journey.function, None);
    assert_eq!(
        journey.steps.last(),
        Some(&Step {
            at_ms: 7_500,
            kind: StepKind::CallerHungUp
        })
    );
    // Nothing after the end, not even a second hang-up.
    for event in [
        Event::PromptEnded,
        Event::Digit('1'),
        Event::Timeout,
        Event::CallerHungUp,
        Event::Answered,
    ] {
        assert_eq!(call.send(event), vec![]);
    }
    assert_eq!(call.flow.journey(), &journey);
}

#[test]
fn the_caller_hanging_up_during_the_hand_off_abandons_the_call() {
    let mut call = Call::waiting_in_root(kommun());
    call.send(Event::Digit('3'));
    assert_eq!(call.send(Event::CallerHungUp), vec![]);
    assert_eq!(call.flow.journey().outcome, Some(Outcome::Abandoned));
    assert_eq!(call.flow.journey().function.as_deref(), Some("it"));
    assert_eq!(call.send(Event::TransferSucceeded), vec![]);
    assert_eq!(call.flow.journey().outcome, Some(Outcome::Abandoned));
}

#[test]
fn the_caller_hanging_up_before_the_answer_is_abandoned() {
    let mut call = Call::new(kommun());
    assert_eq!(call.send(Event::CallerHungUp), vec![]);
    assert_eq!(call.flow.journey().outcome, Some(Outcome::Abandoned));
    assert_eq!(call.flow.journey().path, Vec::<String>::new());
    assert_eq!(call.send(Event::Answered), vec![]);
}

#[test]
fn a_hangup_option_ends_the_call_as_abandoned() {
    let mut call = Call::new(kommun());
    call.send(Event::Answered);
    assert_eq!(
        call.send(Event::Digit('9')),
        vec![Action::StopPrompt, Action::Hangup]
    );
    assert!(call.flow.is_finished());
    assert_eq!(call.flow.journey().outcome, Some(Outcome::Abandoned));
    assert_eq!(call.kinds().last(), Some(&StepKind::Hangup));
}

#[test]
fn a_digit_barging_into_the_greeting_enters_the_submenu() {
    let mut call = Call::new(kommun());
    call.send(Event::Answered);
    assert_eq!(
        call.send(Event::Digit('2')),
        vec![Action::StopPrompt, play("personal-welcome")]
    );
    // The root greeting's end will never be reported, and the personal greeting's end leads on.
    assert_eq!(call.send(Event::PromptEnded), vec![play("personal-prompt")]);
}

#[test]
fn stale_and_out_of_place_events_do_nothing() {
    let mut call = Call::new(kommun());
    for event in [
        Event::PromptEnded,
        Event::Digit('1'),
        Event::TransferSucceeded,
        Event::TransferFailed,
    ] {
        assert_eq!(call.send(event), vec![], "{event:?} before the answer");
    }
    assert_eq!(call.flow.journey().digits, "");
    call.send(Event::Answered);
    assert_eq!(call.send(Event::Answered), vec![], "a second answer");
    call.send(Event::PromptEnded);
    call.send(Event::PromptEnded);
    let deadline = call.flow.next_timeout().unwrap();
    for event in [
        Event::PromptEnded,
        Event::Answered,
        Event::TransferSucceeded,
        Event::TransferFailed,
        Event::Digit('A'),
        Event::Digit('x'),
    ] {
        assert_eq!(call.send(event), vec![], "{event:?} while waiting");
        assert_eq!(call.flow.next_timeout(), Some(deadline));
    }
    assert_eq!(
        call.flow.journey().digits,
        "",
        "non-DTMF characters are not digits"
    );
    assert_eq!(call.kinds(), vec![entered(ROOT_MENU)]);
}

#[test]
fn the_journey_records_digits_path_and_timed_steps() {
    let mut call = Call::new(kommun());
    call.at(0).send(Event::Answered);
    call.at(2_000).send(Event::PromptEnded);
    call.at(2_400).send(Event::Digit('7')); // invalid, barges into the root prompt
    call.at(3_000).send(Event::Digit('2')); // barges into the invalid prompt
    call.at(5_000).send(Event::PromptEnded);
    call.at(8_000).send(Event::PromptEnded);
    call.time_out(); // 12 000
    call.at(12_700).send(Event::Digit('1'));
    call.at(13_000).send(Event::TransferFailed);
    call.at(13_100).send(Event::TransferFailed); // hr -> it: busy prompt
    call.at(15_000).send(Event::PromptEnded);
    call.at(17_000).send(Event::PromptEnded);
    call.at(31_234).send(Event::TransferSucceeded);
    let journey = call.flow.journey();
    assert_eq!(journey.digits, "721");
    assert_eq!(journey.path, vec![ROOT_MENU.to_string(), "personal".into()]);
    assert_eq!(journey.function.as_deref(), Some("kundtjanst"));
    assert_eq!(journey.outcome, Some(Outcome::Transferred));
    assert_eq!(journey.time_to_choice_ms(), Some(3_000));
    let steps: Vec<(u64, StepKind)> = journey
        .steps
        .iter()
        .map(|s| (s.at_ms, s.kind.clone()))
        .collect();
    assert_eq!(
        steps,
        vec![
            (0, entered(ROOT_MENU)),
            (2_400, StepKind::InvalidDigit('7')),
            (3_000, StepKind::Digit('2')),
            (3_000, entered("personal")),
            (12_000, StepKind::Timeout),
            (12_700, StepKind::Digit('1')),
            (12_700, StepKind::TransferStarted("hr".into())),
            (13_000, StepKind::TransferFailed("hr".into())),
            (13_000, StepKind::TransferStarted("it".into())),
            (13_100, StepKind::TransferFailed("it".into())),
            (17_000, StepKind::TransferStarted("kundtjanst".into())),
            (31_234, StepKind::Transferred("kundtjanst".into())),
        ]
    );
}

#[test]
fn a_menu_referring_to_missing_things_ends_the_call_instead_of_panicking() {
    let mut menu = kommun();
    let root = menu.menus.get_mut(ROOT_MENU).unwrap();
    root.options.insert('5', Choice::Route("nowhere".into()));
    root.options.insert('6', Choice::Menu("nowhere".into()));
    for digit in ['5', '6'] {
        let mut call = Call::waiting_in_root(menu.clone());
        assert_eq!(call.send(Event::Digit(digit)), vec![Action::Hangup]);
        assert_eq!(call.flow.journey().outcome, Some(Outcome::Failed));
    }
    let mut no_root = kommun();
    no_root.menus.remove(ROOT_MENU);
    let mut call = Call::new(no_root);
    assert_eq!(call.send(Event::Answered), vec![Action::Hangup]);
    assert_eq!(call.flow.journey().outcome, Some(Outcome::Failed));
}

#[test]
fn an_absurd_menu_timeout_is_clamped() {
    let mut menu = kommun();
    menu.menus.get_mut(ROOT_MENU).unwrap().timeout = Duration::MAX;
    let call = Call::waiting_in_root(menu);
    let deadline = call.flow.next_timeout().unwrap();
    assert!(deadline <= call.now + LONGEST_WAIT);
}

/// A tiny deterministic generator, so the walk is the same on every run.
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

/// What the call task would be doing, tracked from the actions only.
#[derive(Default)]
struct CallTask {
    answered: bool,
    playing: bool,
    transferring: bool,
}

/// Walk random event sequences, stale and out-of-order ones included, and check after every step that the caller
/// is never left in silence: exactly one of a prompt playing, a digit timer pending, or a hand-off in progress,
/// until the flow is finished (and then nothing more happens).
fn random_walk(menu: Menu, seed: u64, steps: usize) {
    let menu = Arc::new(menu);
    let mut rng = Lcg(seed);
    let mut now = Instant::now();
    let mut flow = Flow::new(
        Arc::clone(&menu),
        WallClock::new(jiff::Timestamp::UNIX_EPOCH, Instant::now()),
    );
    let mut task = CallTask::default();
    let mut calls = 0;
    const DIGITS: [char; 16] = [
        '0', '1', '2', '3', '4', '5', '6', '7', '8', '9', '*', '#', 'A', 'x', '1', '2',
    ];
    for step in 0..steps {
        now += Duration::from_millis(rng.below(7_000));
        let event = match rng.below(20) {
            0 => Event::Answered,
            1..=5 => Event::PromptEnded,
            6..=11 => Event::Digit(DIGITS[rng.below(DIGITS.len() as u64) as usize]),
            12..=14 => {
                // Mostly when due, sometimes early or with no timer pending.
                if let (Some(deadline), true) = (flow.next_timeout(), rng.below(4) > 0) {
                    now = now.max(deadline);
                }
                Event::Timeout
            }
            15 => Event::CallerHungUp,
            16 | 17 => Event::TransferSucceeded,
            _ => Event::TransferFailed,
        };
        let finished_before = flow.is_finished();
        match event {
            Event::Answered => task.answered = true,
            Event::PromptEnded => task.playing = false,
            Event::TransferSucceeded | Event::TransferFailed => task.transferring = false,
            _ => {}
        }
        let actions = flow.on(event, now);
        let context = || format!("step {step}, call {calls}, {event:?} -> {actions:?}");
        if finished_before {
            assert!(actions.is_empty(), "{}", context());
        }
        for action in &actions {
            match action {
                Action::Play(prompt) => {
                    assert!(menu.prompt_ids().contains(prompt), "{}", context());
                    assert!(!task.transferring, "{}", context());
                    task.playing = true;
                }
                Action::StopPrompt => {
                    assert!(task.playing, "stop with nothing playing: {}", context());
                    task.playing = false;
                }
                Action::Transfer(function) => {
                    assert!(menu.functions.contains_key(function), "{}", context());
                    assert!(!task.playing && !task.transferring, "{}", context());
                    task.transferring = true;
                }
                Action::Hangup => assert!(flow.is_finished(), "{}", context()),
            }
        }
        let journey = flow.journey();
        assert_eq!(
            journey.outcome.is_some(),
            flow.is_finished(),
            "{}",
            context()
        );
        assert!(
            journey
                .digits
                .chars()
                .all(|d| matches!(d, '0'..='9' | '*' | '#'))
        );
        if flow.is_finished() {
            calls += 1;
            flow = Flow::new(
                Arc::clone(&menu),
                WallClock::new(jiff::Timestamp::UNIX_EPOCH, Instant::now()),
            );
            task = CallTask::default();
            continue;
        }
        if task.answered {
            assert_eq!(
                journey.path.first().map(String::as_str),
                Some(ROOT_MENU),
                "{}",
                context()
            );
            let waiting = flow.next_timeout().is_some();
            let busy = [task.playing, waiting, task.transferring];
            assert_eq!(
                busy.iter().filter(|b| **b).count(),
                1,
                "silence or overlap {busy:?}: {}",
                context()
            );
        } else {
            assert!(
                actions.is_empty() && flow.next_timeout().is_none(),
                "{}",
                context()
            );
        }
    }
    assert!(
        calls > steps / 100,
        "the walk should finish many calls, finished {calls}"
    );
}

#[test]
fn random_walks_never_leave_the_caller_in_silence() {
    random_walk(kommun(), 1, 20_000);
}

#[test]
fn random_walks_without_any_optional_prompts_never_leave_the_caller_in_silence() {
    let mut menu = kommun();
    for node in menu.menus.values_mut() {
        node.greeting = None;
        node.invalid = None;
        node.fallback = Choice::Repeat;
    }
    for function in menu.functions.values_mut() {
        function.transfer_prompt = None;
        function.failure_prompt = None;
    }
    random_walk(menu, 0xC0FFEE, 20_000);
}

mod hours {
    use super::*;
    use crate::menu::hours::{self, Closed, ClosedAction, Hours};

    /// Hours in UTC open 09:00-12:00 every day, closing with `prompt` and `then`.
    fn morning(prompt: Option<&str>, then: ClosedAction) -> Hours {
        let mut hours = Hours::always_open();
        hours.weekly = std::array::from_fn(|_| hours::parse_ranges("09:00-12:00").unwrap());
        hours.closed = Closed {
            prompt: prompt.map(str::to_owned),
            then,
        };
        hours
    }

    /// A call whose wall clock reads `wall` (UTC) at its start.
    fn call_at(menu: Menu, wall: &str) -> Call {
        let mut call = Call::new(menu);
        call.flow = Flow::new(
            Arc::clone(call.flow.menu()),
            WallClock::new(wall.parse().unwrap(), call.start),
        );
        call
    }

    /// A call waiting in root whose function `it` keeps morning hours, closing with its prompt and `then`.
    fn waiting_with_it_hours(then: ClosedAction, wall: &str) -> Call {
        let mut menu = kommun();
        menu.functions.get_mut("it").unwrap().hours = Some(morning(Some("it-closed"), then));
        let mut call = call_at(menu, wall);
        call.send(Event::Answered);
        call.send(Event::PromptEnded);
        call.send(Event::PromptEnded);
        call
    }

    #[test]
    fn a_closed_service_answers_plays_its_prompt_and_hangs_up_as_closed() {
        let mut menu = kommun();
        menu.hours = Some(morning(Some("closed"), ClosedAction::Hangup));
        let mut call = call_at(menu, "2026-12-01T08:59:59Z");
        assert_eq!(call.send(Event::Answered), vec![play("closed")]);
        assert_eq!(call.flow.current_menu(), None, "no menu is entered");
        assert_eq!(
            call.at(500).send(Event::Digit('1')),
            vec![],
            "digits during the closed prompt are not choices"
        );
        assert_eq!(
            call.at(4_000).send(Event::PromptEnded),
            vec![Action::Hangup]
        );
        let journey = call.flow.journey();
        assert_eq!(journey.outcome, Some(Outcome::Closed));
        assert!(journey.path.is_empty() && journey.digits.is_empty());
        assert_eq!(call.kinds(), vec![StepKind::Closed, StepKind::Hangup]);
    }

    #[test]
    fn an_open_service_plays_the_menu_and_opening_is_at_the_ranges_start() {
        let mut menu = kommun();
        menu.hours = Some(morning(Some("closed"), ClosedAction::Hangup));
        let mut call = call_at(menu.clone(), "2026-12-01T09:00:00Z");
        assert_eq!(call.send(Event::Answered), vec![play("welcome")]);
        // 12:00 is the end of the range, excluded.
        let mut call = call_at(menu, "2026-12-01T12:00:00Z");
        assert_eq!(call.send(Event::Answered), vec![play("closed")]);
    }

    #[test]
    fn a_closed_service_can_route_to_a_function_instead() {
        let mut menu = kommun();
        menu.hours = Some(morning(None, ClosedAction::Route("kundtjanst".into())));
        let mut call = call_at(menu, "2026-12-01T20:00:00Z");
        assert_eq!(call.send(Event::Answered), vec![play("to-kundtjanst")]);
        assert_eq!(
            call.at(2_000).send(Event::PromptEnded),
            vec![transfer("kundtjanst")]
        );
        call.send(Event::TransferSucceeded);
        assert_eq!(call.flow.journey().outcome, Some(Outcome::Transferred));
        assert_eq!(call.flow.journey().function.as_deref(), Some("kundtjanst"));
    }

    #[test]
    fn a_function_closed_when_chosen_plays_its_prompt_and_routes_elsewhere() {
        let mut call = waiting_with_it_hours(
            ClosedAction::Route("kundtjanst".into()),
            "2026-12-01T13:00:00Z",
        );
        assert_eq!(
            call.at(100).send(Event::Digit('3')),
            vec![play("it-closed")]
        );
        assert_eq!(call.at(200).send(Event::Digit('1')), vec![], "not a choice");
        assert_eq!(
            call.at(3_000).send(Event::PromptEnded),
            vec![play("to-kundtjanst")]
        );
        assert_eq!(
            call.at(5_000).send(Event::PromptEnded),
            vec![transfer("kundtjanst")]
        );
        call.send(Event::TransferSucceeded);
        let journey = call.flow.journey();
        assert_eq!(
            journey.function.as_deref(),
            Some("kundtjanst"),
            "where the call went"
        );
        assert_eq!(journey.outcome, Some(Outcome::Transferred));
        assert_eq!(journey.digits, "3");
        assert!(
            call.kinds()
                .contains(&StepKind::FunctionClosed("it".into())),
            "the steps show the closed function: {:?}",
            call.kinds()
        );
    }

    #[test]
    fn a_function_closed_with_hangup_ends_as_closed_with_that_function() {
        let mut call = waiting_with_it_hours(ClosedAction::Hangup, "2026-12-01T13:00:00Z");
        assert_eq!(
            call.at(100).send(Event::Digit('3')),
            vec![play("it-closed")]
        );
        assert_eq!(
            call.at(3_000).send(Event::PromptEnded),
            vec![Action::Hangup]
        );
        let journey = call.flow.journey();
        assert_eq!(journey.outcome, Some(Outcome::Closed));
        assert_eq!(journey.function.as_deref(), Some("it"));
    }

    #[test]
    fn closed_functions_routing_to_each_other_end_as_closed() {
        let mut menu = kommun();
        menu.functions.get_mut("it").unwrap().hours =
            Some(morning(Some("it-closed"), ClosedAction::Route("hr".into())));
        menu.functions.get_mut("hr").unwrap().hours =
            Some(morning(None, ClosedAction::Route("it".into())));
        let mut call = call_at(menu, "2026-12-01T13:00:00Z");
        call.send(Event::Answered);
        call.send(Event::PromptEnded);
        call.send(Event::PromptEnded);
        assert_eq!(
            call.at(100).send(Event::Digit('3')),
            vec![play("it-closed")]
        );
        assert_eq!(
            call.at(2_000).send(Event::PromptEnded),
            vec![Action::Hangup]
        );
        assert_eq!(call.flow.journey().outcome, Some(Outcome::Closed));
        assert!(
            call.kinds()
                .contains(&StepKind::FunctionClosed("hr".into()))
        );
    }

    #[test]
    fn the_time_of_a_choice_is_the_wall_clock_carried_forward() {
        // Answered two seconds before it opens: a choice at 1 s finds it closed, one at 2 s finds it open.
        for (choice_ms, expected) in [(1_999, play("it-closed")), (2_000, transfer("it"))] {
            let mut call = waiting_with_it_hours(ClosedAction::Hangup, "2026-12-01T08:59:58Z");
            assert_eq!(call.at(choice_ms).send(Event::Digit('3')), vec![expected]);
        }
    }
}

#[test]
fn announcements_play_after_the_greeting_unskippable_and_are_recorded() {
    let mut call = Call::new(kommun());
    call.flow.announce(Announcements {
        service: vec!["email-down".into(), "phones-down".into()],
        functions: BTreeMap::from([("kundtjanst".into(), vec!["queue-long".into()])]),
    });
    assert_eq!(call.send(Event::Answered), [play("welcome")]);
    assert_eq!(call.send(Event::PromptEnded), [play("email-down")]);
    // A digit during an announcement is neither a barge-in nor a choice.
    assert_eq!(call.send(Event::Digit('1')), []);
    assert_eq!(call.flow.journey().digits, "");
    assert_eq!(call.send(Event::PromptEnded), [play("phones-down")]);
    assert_eq!(call.send(Event::PromptEnded), [play("root-prompt")]);
    assert_eq!(call.send(Event::PromptEnded), []);
    assert!(call.flow.next_timeout().is_some());
    // Back in root later: no greeting and no announcements again.
    assert_eq!(call.send(Event::Digit('0')), [play("root-prompt")]);
    call.send(Event::PromptEnded);
    // Kundtjänst: its board announcement, then its transfer prompt, then the hand-off.
    assert_eq!(call.send(Event::Digit('1')), [play("queue-long")]);
    assert_eq!(call.send(Event::Digit('5')), []);
    assert_eq!(call.send(Event::PromptEnded), [play("to-kundtjanst")]);
    assert_eq!(call.send(Event::PromptEnded), [transfer("kundtjanst")]);
    assert_eq!(
        call.flow.journey().announcements,
        ["email-down", "phones-down", "queue-long"]
    );
}

#[test]
fn a_functions_own_announcement_plays_before_the_boards_and_the_hand_off() {
    let mut menu = kommun();
    menu.functions.get_mut("it").unwrap().announcement = Some("raindance".into());
    let mut call = Call::waiting_in_root(menu.clone());
    assert_eq!(call.send(Event::Digit('3')), [play("raindance")]);
    assert_eq!(call.send(Event::PromptEnded), [transfer("it")]);
    assert_eq!(call.flow.journey().announcements, ["raindance"]);

    // Without announcements nothing changes: greeting, then the menu prompt.
    let mut call = Call::new(menu);
    call.flow.announce(Announcements {
        functions: BTreeMap::from([("it".into(), vec!["it-extra".into()])]),
        ..Announcements::default()
    });
    assert_eq!(call.send(Event::Answered), [play("welcome")]);
    assert_eq!(call.send(Event::PromptEnded), [play("root-prompt")]);
    call.send(Event::PromptEnded);
    assert_eq!(call.send(Event::Digit('3')), [play("raindance")]);
    assert_eq!(call.send(Event::PromptEnded), [play("it-extra")]);
    assert_eq!(call.send(Event::PromptEnded), [transfer("it")]);
}

#[test]
fn the_language_is_chosen_first_and_defaults_on_silence_or_a_wrong_key() {
    let mut menu = kommun();
    menu.languages = Some(crate::menu::model::Languages {
        prompt: "language-choice".into(),
        options: BTreeMap::from([('1', "sv".into()), ('2', "en".into())]),
        default: "sv".into(),
        timeout: Duration::from_secs(4),
    });
    // A key during the choice barges in and chooses.
    let mut call = Call::new(menu.clone());
    assert_eq!(call.send(Event::Answered), [play("language-choice")]);
    assert_eq!(call.flow.language(), None);
    assert_eq!(
        call.send(Event::Digit('2')),
        [Action::StopPrompt, play("welcome")]
    );
    assert_eq!(call.flow.language(), Some("en"));
    assert_eq!(call.flow.journey().digits, "2");
    assert_eq!(
        call.kinds()[..2],
        [StepKind::Language("en".into()), entered(ROOT_MENU)]
    );

    // Silence: the default once the wait is over.
    let mut call = Call::new(menu.clone());
    call.send(Event::Answered);
    assert_eq!(call.send(Event::PromptEnded), []);
    assert_eq!(call.flow.next_timeout(), Some(call.start + ms(4000)));
    assert_eq!(call.time_out(), [play("welcome")]);
    assert_eq!(call.flow.language(), Some("sv"));

    // A key that is no option: the default too, and the menu goes on.
    let mut call = Call::new(menu);
    call.send(Event::Answered);
    call.send(Event::PromptEnded);
    assert_eq!(call.send(Event::Digit('7')), [play("welcome")]);
    assert_eq!(call.flow.language(), Some("sv"));
    assert_eq!(call.flow.journey().digits, "7");
}
