//! The IVR engine: one caller's walk through the admin's [`Menu`], as a sans-IO state machine.
//!
//! The call task feeds [`Event`]s with the time they happened and performs the [`Action`]s it gets back, in
//! order; `knappval simulate` drives the very same engine from a terminal. This module owns the menu logic only:
//! it does no I/O, keeps no clock (time is always passed in), spawns nothing and never looks up prompts or SIP
//! targets. It may read the [`Menu`] but never changes it.
//!
//! # How a call runs
//! - `Answered` enters `root`. A menu's greeting plays on the caller's first entry of that menu in the call only,
//!   then its prompt. Once the prompt has ended the engine waits the menu's `timeout` for a digit
//!   ([`Flow::next_timeout`]); there is never a timer while a prompt plays.
//! - A digit during a greeting, menu prompt or invalid prompt barges in: [`Action::StopPrompt`] comes first.
//!   Digits are ignored before the answer and from the moment a function is chosen (its transfer prompt, the
//!   hand-off, its failure prompt): they are not menu choices and are not recorded.
//! - An invalid digit or a timeout is a failure. While failures stay within the menu's `retries` the caller hears
//!   the invalid prompt (invalid digit, if the menu has one) and then the menu prompt again. One more failure and
//!   the menu's fallback takes over and starts a new round of retries. Entering a menu (submenu, back, fallback)
//!   resets the failures; the caller's own `repeat` neither counts nor resets them.
//! - Choosing a menu that is already on the way down from the root (e.g. "9: main menu") returns to it rather
//!   than nesting deeper, so `back` from there goes where the caller would expect and the stack stays bounded
//!   by the number of menus.
//! - Opening hours are asked at the wall-clock time of the event, from the [`WallClock`] the flow was created
//!   with (the flow keeps no clock: the wall time of `now` is the reading plus the monotonic time since). When
//!   the service's `hours:` are closed at the answer, the caller hears their closed prompt and then their
//!   `then` runs (hang up, or route to a function); no menu is entered. When a function's `hours:` are closed at
//!   the moment it is chosen, its closed prompt plays and its `then` runs; a route there makes the record's
//!   function the one the call went to, and the steps keep `function_closed` for the one that was closed.
//! - With `languages:` the caller first hears the language prompt and presses a key (barging in is fine); the
//!   language's timeout passing, or a key that is not an option, takes the default language. Only then does the
//!   call go on as below (hours, greeting, menu), every prompt in the chosen language ([`Flow::language`]); the
//!   key is recorded among the digits and as a `language` step.
//! - Announcements ([`Flow::announce`], from the daemon's announcement board at the answer) play after the root
//!   menu's greeting and before its prompt, all of them in the order given, once per call. A function's own
//!   announcements (its `announcement:` from the menu, then those the board holds for it) play when the caller
//!   chooses it and it is open, before its transfer prompt. Announcements cannot be skipped: they exist so that
//!   every caller hears them, so digits pressed while one plays are ignored and not recorded. The journey lists
//!   every announcement played.
//! - A function with a transfer prompt hears it before the hand-off. A failed hand-off plays the function's failure
//!   prompt (if any) and then follows its `on_failure`. No function is attempted twice in a call, so an
//!   `on_failure` chain that comes back to a function already tried ends the call instead of looping.
//!
//! # Outcome rules
//! - [`Outcome::Transferred`]: the call task reported `TransferSucceeded` for the function last asked for.
//! - [`Outcome::Abandoned`]: the caller hung up (at any point before the outcome was decided), or chose a `hangup`
//!   option themselves.
//! - [`Outcome::Timeout`]: the retries ran out and the menu's fallback is `hangup`.
//! - [`Outcome::Closed`]: closed hours (the service's or the chosen function's) ended the call with `hangup`.
//! - [`Outcome::Failed`]: a hand-off failed with no `on_failure` left to try (`hangup`, or a function already
//!   attempted), or the menu refers to something that does not exist (which validation should have caught).
//!
//! Once the outcome is decided the flow is finished: every further event yields no actions.
//!
//! # Never silence
//! Every state the engine rests in either has a prompt playing (ended by `PromptEnded`), waits with a timer, has a
//! hand-off in progress (ended by `TransferSucceeded`/`TransferFailed`, whose ring timeout the call task owns), or
//! has hung up. The random-walk test in this module checks that for thousands of steps.

pub mod journey;
pub mod outcome;
pub use journey::{Journey, Step, StepKind};
pub use outcome::Outcome;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use jiff::Timestamp;

use crate::menu::hours::{Closed, ClosedAction};
use crate::menu::model::{
    Choice, FailureAction, FunctionId, Menu, MenuId, MenuNode, PromptId, ROOT_MENU,
};

/// Longest wait for a digit. A menu timeout beyond it (validation should prevent one) is clamped so the deadline
/// stays representable and the caller is re-prompted at some point.
const LONGEST_WAIT: Duration = Duration::from_secs(3600);

/// A reading of the wall clock paired with the monotonic instant it was taken at: how the flow learns the time
/// of day for opening hours without reading a clock. The daemon reads the real clock at the answer;
/// `knappval simulate` makes one up from `--at`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WallClock {
    wall: Timestamp,
    at: Instant,
}

impl WallClock {
    /// The wall clock read `wall` at the monotonic instant `at`.
    pub fn new(wall: Timestamp, at: Instant) -> WallClock {
        WallClock { wall, at }
    }

    /// The wall-clock time at monotonic `now` (never before the reading).
    pub fn at(&self, now: Instant) -> Timestamp {
        let since = now.saturating_duration_since(self.at);
        self.wall.checked_add(since).unwrap_or(Timestamp::MAX)
    }
}

/// Something that happened to the call, reported by the call task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// The call is answered and media is ready: start the menu.
    Answered,
    /// The prompt last asked for with [`Action::Play`] finished playing (never sent after [`Action::StopPrompt`]).
    PromptEnded,
    /// The caller pressed a digit (`'0'..='9'`, `'*'`, `'#'`; anything else is ignored).
    Digit(char),
    /// `now >= next_timeout()`.
    Timeout,
    /// BYE or CANCEL from the caller.
    CallerHungUp,
    /// The hand-off to the function last asked for succeeded.
    TransferSucceeded,
    /// The hand-off to the function last asked for failed: busy, no answer or error.
    TransferFailed,
}

/// What the call task must do, in the order given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Start playing this prompt, replacing anything playing.
    Play(PromptId),
    /// Stop the current prompt now (the caller barged in).
    StopPrompt,
    /// Hand the call to this function; its target and mode are in the [`Menu`].
    Transfer(FunctionId),
    /// End the call with a BYE.
    Hangup,
}

/// Which prompt is playing, which decides what its end leads to.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Prompt {
    /// The current menu's greeting; the menu prompt follows.
    Greeting,
    /// The current menu's prompt; the wait for a digit follows.
    Menu,
    /// The current menu's invalid-digit prompt; the menu prompt follows.
    Invalid,
    /// The function's transfer prompt; the hand-off follows.
    Transfer(FunctionId),
    /// The function's failure prompt; its `on_failure` follows.
    Failure(FunctionId),
    /// The language choice; the wait for its key follows.
    LanguageChoice,
    /// A service announcement; the next one, or the menu prompt, follows.
    Announcement,
    /// One of the function's announcements; the next one, its transfer prompt or the hand-off follows.
    FunctionAnnouncement(FunctionId),
    /// The service's closed prompt; its `then` follows.
    ServiceClosed,
    /// The function's closed prompt; its `then` follows.
    FunctionClosed(FunctionId),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Phase {
    /// Not answered yet.
    Ringing,
    Playing(Prompt),
    /// Waiting for a digit after the menu prompt.
    Waiting {
        deadline: Instant,
    },
    /// Waiting for the key of the language choice after its prompt.
    ChoosingLanguage {
        deadline: Instant,
    },
    /// The call task is handing the call to this function.
    Transferring(FunctionId),
    Finished,
}

/// One call's IVR state. Cheap to create; holds a shared reference to the menu the call started with, so a
/// reloaded menu never changes a call in progress.
#[derive(Debug, Clone)]
pub struct Flow {
    menu: Arc<Menu>,
    phase: Phase,
    /// The menus from the root down to the current one (last).
    stack: Vec<MenuId>,
    /// Failures (invalid digits, timeouts) in the current menu since it was entered or the fallback ran.
    failures: u32,
    /// Menus whose greeting the caller has already had (or that have none).
    greeted: BTreeSet<MenuId>,
    /// Functions routed to in this call, to stop `on_failure` loops.
    attempted: BTreeSet<FunctionId>,
    answered_at: Option<Instant>,
    clock: WallClock,
    /// Service announcements not yet played (all of them play once, after the root greeting).
    announcements: VecDeque<PromptId>,
    /// Announcements the board holds for single functions, played when the function is chosen.
    function_announcements: BTreeMap<FunctionId, Vec<PromptId>>,
    /// The chosen function's announcements still to play.
    pending_function: VecDeque<PromptId>,
    journey: Journey,
}

/// The announcements active when a call is answered, as the flow plays them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Announcements {
    /// Played after the greeting and before the root menu prompt, in this order.
    pub service: Vec<PromptId>,
    /// Played when the caller chooses the function, after its own `announcement:` from the menu.
    pub functions: BTreeMap<FunctionId, Vec<PromptId>>,
}

impl Flow {
    /// `clock` says what time of day it is, for opening hours.
    pub fn new(menu: Arc<Menu>, clock: WallClock) -> Flow {
        Flow {
            menu,
            phase: Phase::Ringing,
            stack: Vec::new(),
            failures: 0,
            greeted: BTreeSet::new(),
            attempted: BTreeSet::new(),
            answered_at: None,
            clock,
            announcements: VecDeque::new(),
            function_announcements: BTreeMap::new(),
            pending_function: VecDeque::new(),
            journey: Journey::default(),
        }
    }

    /// The announcements this call plays; given before [`Event::Answered`] (later, service ones no longer play).
    pub fn announce(&mut self, announcements: Announcements) {
        self.announcements = announcements.service.into();
        self.function_announcements = announcements.functions;
    }

    /// Feed one event at time `now`; returns what the call task must do, in order.
    pub fn on(&mut self, event: Event, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        match event {
            Event::Answered => {
                if self.phase == Phase::Ringing {
                    self.answered_at = Some(now);
                    let menu = Arc::clone(&self.menu);
                    match &menu.languages {
                        Some(languages) => {
                            self.play(languages.prompt.clone(), Prompt::LanguageChoice, &mut out)
                        }
                        None => self.start(now, &mut out),
                    }
                }
            }
            Event::PromptEnded => {
                if let Phase::Playing(prompt) = &self.phase {
                    let prompt = prompt.clone();
                    self.prompt_ended(prompt, now, &mut out);
                }
            }
            Event::Digit(digit) => self.digit(digit, now, &mut out),
            Event::Timeout => {
                // An early or unexpected timeout is a stale timer of the call task: nothing to do.
                if matches!(self.phase, Phase::ChoosingLanguage { deadline } if now >= deadline) {
                    self.choose_language(None, now, &mut out);
                } else if matches!(self.phase, Phase::Waiting { deadline } if now >= deadline) {
                    self.step(now, StepKind::Timeout);
                    self.failure(false, now, &mut out);
                }
            }
            Event::CallerHungUp => {
                if self.phase != Phase::Finished {
                    self.step(now, StepKind::CallerHungUp);
                    self.finish(Outcome::Abandoned);
                }
            }
            Event::TransferSucceeded => {
                if let Phase::Transferring(function) = &self.phase {
                    let function = function.clone();
                    self.step(now, StepKind::Transferred(function));
                    self.finish(Outcome::Transferred);
                }
            }
            Event::TransferFailed => {
                if let Phase::Transferring(function) = &self.phase {
                    let function = function.clone();
                    self.transfer_failed(function, now, &mut out);
                }
            }
        }
        out
    }

    /// When the call task must deliver [`Event::Timeout`] (None: no timer pending).
    pub fn next_timeout(&self) -> Option<Instant> {
        match self.phase {
            Phase::Waiting { deadline } | Phase::ChoosingLanguage { deadline } => Some(deadline),
            _ => None,
        }
    }

    /// What happened so far, for the contact record.
    pub fn journey(&self) -> &Journey {
        &self.journey
    }

    /// The journey, once the call task is done with the flow.
    pub fn into_journey(self) -> Journey {
        self.journey
    }

    /// Outcome decided; no further actions will come.
    pub fn is_finished(&self) -> bool {
        self.phase == Phase::Finished
    }

    /// The menu the caller is in (None before the answer).
    pub fn current_menu(&self) -> Option<&MenuId> {
        self.stack.last()
    }

    /// The menu this call runs.
    pub fn menu(&self) -> &Arc<Menu> {
        &self.menu
    }

    /// The caller's language, once chosen (None: before the choice, or a menu without `languages:`): prompts
    /// come from its folder.
    pub fn language(&self) -> Option<&str> {
        self.journey.language.as_deref()
    }

    /// After the answer, and the language choice if any: closed hours, or the root menu.
    fn start(&mut self, now: Instant, out: &mut Vec<Action>) {
        let menu = Arc::clone(&self.menu);
        match &menu.hours {
            Some(hours) if !hours.is_open(self.clock.at(now)) => {
                self.step(now, StepKind::Closed);
                self.closed(&hours.closed, Prompt::ServiceClosed, now, out);
            }
            _ => self.enter_menu(ROOT_MENU.to_string(), now, out),
        }
    }

    /// The caller pressed `digit` at the language choice (None: nothing in time); not an option is the default.
    fn choose_language(&mut self, digit: Option<char>, now: Instant, out: &mut Vec<Action>) {
        let menu = Arc::clone(&self.menu);
        let Some(languages) = &menu.languages else {
            return self.start(now, out);
        };
        let language = digit
            .and_then(|d| languages.options.get(&d))
            .unwrap_or(&languages.default)
            .clone();
        self.step(now, StepKind::Language(language.clone()));
        self.journey.language = Some(language);
        self.start(now, out)
    }

    fn digit(&mut self, digit: char, now: Instant, out: &mut Vec<Action>) {
        if !matches!(digit, '0'..='9' | '*' | '#') {
            return;
        }
        let choosing_language = matches!(
            self.phase,
            Phase::Playing(Prompt::LanguageChoice) | Phase::ChoosingLanguage { .. }
        );
        if choosing_language {
            self.journey.digits.push(digit);
            if self.phase == Phase::Playing(Prompt::LanguageChoice) {
                out.push(Action::StopPrompt);
            }
            return self.choose_language(Some(digit), now, out);
        }
        let barge_in = match self.phase {
            Phase::Playing(Prompt::Greeting | Prompt::Menu | Prompt::Invalid) => true,
            Phase::Waiting { .. } => false,
            // Before the answer, once a function is chosen, or after the end, a digit is not a menu choice.
            _ => return,
        };
        self.journey.digits.push(digit);
        if barge_in {
            out.push(Action::StopPrompt);
        }
        let menu = Arc::clone(&self.menu);
        let Some(node) = self.current_node(&menu) else {
            return self.broken_menu(now, out);
        };
        match node.options.get(&digit) {
            Some(choice) => {
                self.step(now, StepKind::Digit(digit));
                self.choose(choice.clone(), now, out);
            }
            None => {
                self.step(now, StepKind::InvalidDigit(digit));
                self.failure(true, now, out);
            }
        }
    }

    /// An invalid digit (`invalid_digit`) or a timeout: re-prompt, or hand over to the fallback.
    fn failure(&mut self, invalid_digit: bool, now: Instant, out: &mut Vec<Action>) {
        let menu = Arc::clone(&self.menu);
        let Some(node) = self.current_node(&menu) else {
            return self.broken_menu(now, out);
        };
        self.failures = self.failures.saturating_add(1);
        if self.failures > node.retries {
            self.step(now, StepKind::Fallback);
            self.failures = 0;
            match node.fallback.clone() {
                // The caller made no choice: that is a timeout, not the caller leaving.
                Choice::Hangup => self.hang_up(Outcome::Timeout, now, out),
                choice => self.choose(choice, now, out),
            }
            return;
        }
        match (&node.invalid, invalid_digit) {
            (Some(invalid), true) => self.play(invalid.clone(), Prompt::Invalid, out),
            _ => self.play(node.prompt.clone(), Prompt::Menu, out),
        }
    }

    /// Do what a digit (or a fallback) chose.
    fn choose(&mut self, choice: Choice, now: Instant, out: &mut Vec<Action>) {
        match choice {
            Choice::Route(function) => self.route(function, now, out),
            Choice::Menu(id) => self.enter_menu(id, now, out),
            Choice::Repeat => {
                self.step(now, StepKind::Repeat);
                self.play_menu_prompt(now, out);
            }
            Choice::Back => {
                self.step(now, StepKind::Back);
                if self.stack.len() > 1 {
                    self.stack.pop();
                    if let Some(previous) = self.stack.last().cloned() {
                        self.failures = 0;
                        self.journey.path.push(previous.clone());
                        self.step(now, StepKind::EnteredMenu(previous));
                    }
                }
                self.play_menu_prompt(now, out);
            }
            Choice::Hangup => self.hang_up(Outcome::Abandoned, now, out),
        }
    }

    fn enter_menu(&mut self, id: MenuId, now: Instant, out: &mut Vec<Action>) {
        let menu = Arc::clone(&self.menu);
        let Some(node) = menu.menus.get(&id) else {
            tracing::error!(menu = %id, "menu refers to a menu that does not exist; ending the call");
            return self.hang_up(Outcome::Failed, now, out);
        };
        match self.stack.iter().position(|on_stack| *on_stack == id) {
            Some(depth) => self.stack.truncate(depth + 1),
            None => self.stack.push(id.clone()),
        }
        self.failures = 0;
        self.journey.path.push(id.clone());
        self.step(now, StepKind::EnteredMenu(id.clone()));
        let first_visit = self.greeted.insert(id);
        match &node.greeting {
            Some(greeting) if first_visit => self.play(greeting.clone(), Prompt::Greeting, out),
            _ => self.after_greeting(now, out),
        }
    }

    /// The next service announcement, or the menu prompt once none is left.
    fn after_greeting(&mut self, now: Instant, out: &mut Vec<Action>) {
        match self.announcements.pop_front() {
            Some(announcement) => {
                self.journey.announcements.push(announcement.clone());
                self.play(announcement, Prompt::Announcement, out);
            }
            None => self.play_menu_prompt(now, out),
        }
    }

    /// The chosen function's next announcement, then its transfer prompt, then the hand-off.
    fn before_transfer(&mut self, id: FunctionId, now: Instant, out: &mut Vec<Action>) {
        if let Some(announcement) = self.pending_function.pop_front() {
            self.journey.announcements.push(announcement.clone());
            return self.play(announcement, Prompt::FunctionAnnouncement(id), out);
        }
        let menu = Arc::clone(&self.menu);
        match menu
            .functions
            .get(&id)
            .and_then(|f| f.transfer_prompt.as_ref())
        {
            Some(prompt) => self.play(prompt.clone(), Prompt::Transfer(id), out),
            None => self.transfer(id, now, out),
        }
    }

    /// Route the caller to a function: its transfer prompt first, if it has one.
    fn route(&mut self, id: FunctionId, now: Instant, out: &mut Vec<Action>) {
        if self.attempted.contains(&id) {
            tracing::warn!(function = %id, "on_failure leads back to a function already tried; ending the call");
            return self.hang_up(Outcome::Failed, now, out);
        }
        let menu = Arc::clone(&self.menu);
        let Some(function) = menu.functions.get(&id) else {
            tracing::error!(function = %id, "menu refers to a function that does not exist; ending the call");
            return self.hang_up(Outcome::Failed, now, out);
        };
        self.attempted.insert(id.clone());
        self.journey.function = Some(id.clone());
        if let Some(hours) = &function.hours
            && !hours.is_open(self.clock.at(now))
        {
            self.step(now, StepKind::FunctionClosed(id.clone()));
            return self.closed(&hours.closed, Prompt::FunctionClosed(id), now, out);
        }
        self.pending_function = function
            .announcement
            .iter()
            .chain(self.function_announcements.get(&id).into_iter().flatten())
            .cloned()
            .collect();
        self.before_transfer(id, now, out)
    }

    /// Closed hours: their prompt (as `prompt`, whose end runs their action), or their action at once.
    fn closed(&mut self, closed: &Closed, prompt: Prompt, now: Instant, out: &mut Vec<Action>) {
        match &closed.prompt {
            Some(id) => self.play(id.clone(), prompt, out),
            None => self.closed_action(closed.then.clone(), now, out),
        }
    }

    fn closed_action(&mut self, then: ClosedAction, now: Instant, out: &mut Vec<Action>) {
        match then {
            // Closed functions routing to each other: the caller has been told it is closed, and that is how
            // the call ends, not as a failure.
            ClosedAction::Route(function) if self.attempted.contains(&function) => {
                tracing::warn!(function = %function, "closed hours route back to a function already tried; ending the call");
                self.hang_up(Outcome::Closed, now, out)
            }
            ClosedAction::Route(function) => self.route(function, now, out),
            ClosedAction::Hangup => self.hang_up(Outcome::Closed, now, out),
        }
    }

    /// The `then` of the closed hours whose prompt just ended.
    fn after_closed_prompt(
        &mut self,
        function: Option<FunctionId>,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        let menu = Arc::clone(&self.menu);
        let hours = match &function {
            None => menu.hours.as_ref(),
            Some(id) => menu.functions.get(id).and_then(|f| f.hours.as_ref()),
        };
        match hours {
            Some(hours) => self.closed_action(hours.closed.then.clone(), now, out),
            None => self.hang_up(Outcome::Closed, now, out),
        }
    }

    fn transfer(&mut self, id: FunctionId, now: Instant, out: &mut Vec<Action>) {
        self.step(now, StepKind::TransferStarted(id.clone()));
        out.push(Action::Transfer(id.clone()));
        self.phase = Phase::Transferring(id);
    }

    fn transfer_failed(&mut self, id: FunctionId, now: Instant, out: &mut Vec<Action>) {
        self.step(now, StepKind::TransferFailed(id.clone()));
        let menu = Arc::clone(&self.menu);
        match menu
            .functions
            .get(&id)
            .and_then(|f| f.failure_prompt.as_ref())
        {
            Some(prompt) => self.play(prompt.clone(), Prompt::Failure(id), out),
            None => self.after_failure(id, now, out),
        }
    }

    /// The function's `on_failure`, once the caller has heard its failure prompt (if any).
    fn after_failure(&mut self, id: FunctionId, now: Instant, out: &mut Vec<Action>) {
        let menu = Arc::clone(&self.menu);
        match menu.functions.get(&id).map(|f| &f.on_failure) {
            Some(FailureAction::Route(next)) => self.route(next.clone(), now, out),
            Some(FailureAction::Hangup) | None => self.hang_up(Outcome::Failed, now, out),
        }
    }

    fn prompt_ended(&mut self, prompt: Prompt, now: Instant, out: &mut Vec<Action>) {
        match prompt {
            Prompt::LanguageChoice => {
                let menu = Arc::clone(&self.menu);
                let wait = menu
                    .languages
                    .as_ref()
                    .map_or(Duration::ZERO, |l| l.timeout.min(LONGEST_WAIT));
                let deadline = now.checked_add(wait).unwrap_or(now);
                self.phase = Phase::ChoosingLanguage { deadline };
            }
            Prompt::Greeting | Prompt::Announcement => self.after_greeting(now, out),
            Prompt::FunctionAnnouncement(id) => self.before_transfer(id, now, out),
            Prompt::Invalid => self.play_menu_prompt(now, out),
            Prompt::Menu => {
                let menu = Arc::clone(&self.menu);
                let Some(node) = self.current_node(&menu) else {
                    return self.broken_menu(now, out);
                };
                let wait = node.timeout.min(LONGEST_WAIT);
                // `now + wait` can only overflow on a clock near the end of its range; waiting zero then is
                // better than a panic, as the caller is simply re-prompted.
                let deadline = now.checked_add(wait).unwrap_or(now);
                self.phase = Phase::Waiting { deadline };
            }
            Prompt::Transfer(id) => self.transfer(id, now, out),
            Prompt::Failure(id) => self.after_failure(id, now, out),
            Prompt::ServiceClosed => self.after_closed_prompt(None, now, out),
            Prompt::FunctionClosed(id) => self.after_closed_prompt(Some(id), now, out),
        }
    }

    fn play_menu_prompt(&mut self, now: Instant, out: &mut Vec<Action>) {
        let menu = Arc::clone(&self.menu);
        match self.current_node(&menu) {
            Some(node) => self.play(node.prompt.clone(), Prompt::Menu, out),
            None => self.broken_menu(now, out),
        }
    }

    fn play(&mut self, prompt: PromptId, kind: Prompt, out: &mut Vec<Action>) {
        out.push(Action::Play(prompt));
        self.phase = Phase::Playing(kind);
    }

    fn hang_up(&mut self, outcome: Outcome, now: Instant, out: &mut Vec<Action>) {
        self.step(now, StepKind::Hangup);
        out.push(Action::Hangup);
        self.finish(outcome);
    }

    fn finish(&mut self, outcome: Outcome) {
        self.journey.outcome = Some(outcome);
        self.phase = Phase::Finished;
    }

    /// The current menu vanished from under us; only an unvalidated menu can get here.
    fn broken_menu(&mut self, now: Instant, out: &mut Vec<Action>) {
        tracing::error!(
            menu = self.stack.last().map(tracing::field::display),
            "current menu is missing from the menu; ending the call"
        );
        self.hang_up(Outcome::Failed, now, out);
    }

    fn current_node<'m>(&self, menu: &'m Menu) -> Option<&'m MenuNode> {
        self.stack.last().and_then(|id| menu.menus.get(id))
    }

    fn step(&mut self, now: Instant, kind: StepKind) {
        let at_ms = self
            .answered_at
            .map(|answered| now.saturating_duration_since(answered).as_millis())
            .map_or(0, |ms| u64::try_from(ms).unwrap_or(u64::MAX));
        self.journey.steps.push(Step { at_ms, kind });
    }
}

#[cfg(test)]
mod tests;
