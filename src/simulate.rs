//! `knappval simulate`: one call walked through the very [`Flow`] the daemon runs, on simulated time, so an admin
//! can try a menu change (hours included) before it goes live.
//!
//! Owns the simulated clock and the caller's side: prompts take the duration of their decoded WAVs, waits for a
//! digit pass instantly, every hand-off is taken as answered. Knows nothing about terminals or files: `main.rs`
//! loads the menu, reads digits and prints what this module returns.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use jiff::tz::TimeZone;
use serde::Serialize;

use crate::flow::{Action, Announcements, Event, Flow, WallClock};
use crate::menu::hours::{self, DEFAULT_TIMEZONE};
use crate::menu::model::{FunctionId, Menu, MenuId, PromptId};

/// What the caller does when the menu waits for them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Press {
    Digit(char),
    /// Press nothing: the menu's timeout passes.
    Wait,
    HangUp,
}

/// Where the call went, in the record's words: `{"outcome","function","heard","path"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// The record's outcome (`transferred`, `closed`, ...).
    pub outcome: Option<String>,
    /// The record's function: where the call went.
    pub function: Option<FunctionId>,
    /// Prompt ids in the order the caller heard them (a prompt cut short by a digit counts).
    pub heard: Vec<PromptId>,
    /// The record's path: the menus entered, in order.
    pub path: Vec<MenuId>,
}

/// One simulated call.
pub struct Simulation {
    flow: Flow,
    start: Instant,
    now: Instant,
    durations: BTreeMap<PromptId, Duration>,
    /// When the prompt playing now ends.
    playing_until: Option<Instant>,
    transferring: bool,
    heard: Vec<PromptId>,
    /// What happened since the last [`Simulation::take_transcript`], one line each.
    transcript: Vec<String>,
}

impl Simulation {
    /// A call answered at wall-clock `at`; `durations` holds each prompt's playing time.
    pub fn new(
        menu: Arc<Menu>,
        durations: BTreeMap<PromptId, Duration>,
        at: Timestamp,
    ) -> Simulation {
        Simulation::with_announcements(menu, durations, at, Announcements::default())
    }

    /// As [`Simulation::new`], with these announcements on the board when the call is answered.
    pub fn with_announcements(
        menu: Arc<Menu>,
        durations: BTreeMap<PromptId, Duration>,
        at: Timestamp,
        announcements: Announcements,
    ) -> Simulation {
        // Any instant serves as the simulated clock's origin: only differences from it are used.
        let start = Instant::now();
        let mut flow = Flow::new(menu, WallClock::new(at, start));
        flow.announce(announcements);
        let mut simulation = Simulation {
            flow,
            start,
            now: start,
            durations,
            playing_until: None,
            transferring: false,
            heard: Vec::new(),
            transcript: Vec::new(),
        };
        simulation.feed(Event::Answered);
        simulation
    }

    /// Lets prompts end and hand-offs succeed until the menu waits for a digit (true) or the call is over.
    pub fn run_until_waiting(&mut self) -> bool {
        loop {
            if self.flow.is_finished() {
                return false;
            }
            if let Some(end) = self.playing_until.take() {
                self.now = end;
                self.feed(Event::PromptEnded);
            } else if self.transferring {
                self.transferring = false;
                self.feed(Event::TransferSucceeded);
            } else if self.flow.next_timeout().is_some() {
                return true;
            } else {
                // The flow never rests silent; if it ever did, a caller would hang up.
                self.line("nothing plays and nothing is awaited: the caller hangs up");
                self.feed(Event::CallerHungUp);
            }
        }
    }

    /// What the caller does while the menu waits.
    pub fn press(&mut self, press: Press) {
        match press {
            Press::Digit(digit) => {
                self.line(format!("caller presses {digit}"));
                self.feed(Event::Digit(digit));
            }
            Press::Wait => {
                if let Some(deadline) = self.flow.next_timeout() {
                    self.now = deadline;
                    self.line("no key: the timeout passes");
                    self.feed(Event::Timeout);
                }
            }
            Press::HangUp => {
                self.line("caller hangs up");
                self.feed(Event::CallerHungUp);
            }
        }
    }

    /// Runs a scripted call: each press is made once the menu waits; when they run out the caller stays silent.
    pub fn run_script(&mut self, presses: &[Press]) {
        let mut presses = presses.iter();
        while self.run_until_waiting() {
            self.press(presses.next().copied().unwrap_or(Press::Wait));
        }
    }

    /// The lines of what happened since the last call.
    pub fn take_transcript(&mut self) -> Vec<String> {
        std::mem::take(&mut self.transcript)
    }

    pub fn summary(&self) -> Summary {
        let journey = self.flow.journey();
        Summary {
            outcome: journey.outcome.map(|o| o.as_str().to_owned()),
            function: journey.function.clone(),
            heard: self.heard.clone(),
            path: journey.path.clone(),
        }
    }

    fn feed(&mut self, event: Event) {
        let actions = self.flow.on(event, self.now);
        for action in actions {
            match action {
                Action::Play(prompt) => {
                    let duration = self.durations.get(&prompt).copied().unwrap_or_default();
                    self.line(format!("plays {prompt} ({:.1} s)", duration.as_secs_f64()));
                    self.playing_until = Some(self.now + duration);
                    self.heard.push(prompt);
                }
                Action::StopPrompt => {
                    self.playing_until = None;
                }
                Action::Transfer(function) => {
                    let target = self
                        .flow
                        .menu()
                        .functions
                        .get(&function)
                        .map(|f| format!(" ({}, {})", f.name, f.target))
                        .unwrap_or_default();
                    self.line(format!(
                        "hands the call to {function}{target}; taken as answered"
                    ));
                    self.transferring = true;
                }
                Action::Hangup => self.line("knappval hangs up"),
            }
        }
    }

    fn line(&mut self, text: impl Into<String>) {
        let at = self.now.saturating_duration_since(self.start);
        self.transcript
            .push(format!("{:>7.1} s  {}", at.as_secs_f64(), text.into()));
    }
}

/// The time zone `--at` is read in: the service's hours', or the default.
pub fn service_timezone(menu: &Menu) -> TimeZone {
    match &menu.hours {
        Some(hours) => hours.timezone.clone(),
        None => hours::parse_timezone(DEFAULT_TIMEZONE).unwrap_or(TimeZone::UTC),
    }
}

/// `--at "YYYY-MM-DD HH:MM"` as wall-clock time in `zone` (a time skipped by a DST change counts forward).
pub fn parse_at(text: &str, zone: &TimeZone) -> Result<Timestamp, String> {
    let bad = || format!("--at {text:?} is not \"YYYY-MM-DD HH:MM\", e.g. \"2026-12-24 10:00\"");
    let (day, clock) = text.trim().split_once([' ', 'T']).ok_or_else(bad)?;
    let day = hours::parse_date(day).map_err(|_| bad())?;
    let (hour, minute) = clock.trim().split_once(':').ok_or_else(bad)?;
    let hour: i8 = hour.parse().map_err(|_| bad())?;
    let minute: i8 = minute.parse().map_err(|_| bad())?;
    let time = jiff::civil::Time::new(hour, minute, 0, 0).map_err(|_| bad())?;
    zone.to_timestamp(day.to_datetime(time))
        .map_err(|e| format!("--at {text:?}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stockholm() -> TimeZone {
        hours::parse_timezone(DEFAULT_TIMEZONE).unwrap()
    }

    /// A menu whose only function opens at 09:00 Stockholm time, and the length of each prompt.
    fn morning_menu() -> (Arc<Menu>, BTreeMap<PromptId, Duration>) {
        let source = "name: T\nfunctions:\n  it:\n    name: IT\n    target: sip:it@127.0.0.1:5073\n    \
                      hours: { weekly: { mon-sun: \"09:00-12:00\" }, closed: { prompt: goodbye } }\n\
                      menu:\n  greeting: welcome\n  prompt: main-menu\n  timeout: 5s\n  \
                      options: { \"3\": { route: it } }\n";
        let prompts = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("prompts");
        let menu = crate::menu::load_str(source, "t.yaml", &prompts, &|_| Ok(())).unwrap();
        let durations = BTreeMap::from([
            ("welcome".to_owned(), Duration::from_secs(3)),
            ("main-menu".to_owned(), Duration::from_secs(10)),
            ("goodbye".to_owned(), Duration::from_secs(2)),
        ]);
        (Arc::new(menu), durations)
    }

    /// The simulation of a call at `seconds` after 08:59 on 2026-12-01 in Stockholm.
    fn call_at_seconds_before_nine(seconds: i64) -> Simulation {
        let (menu, durations) = morning_menu();
        let at = parse_at("2026-12-01 08:59", &stockholm())
            .unwrap()
            .checked_add(jiff::SignedDuration::from_secs(seconds))
            .unwrap();
        Simulation::new(menu, durations, at)
    }

    #[test]
    fn prompts_take_their_length_and_timeouts_pass_on_the_simulated_clock() {
        // 3 s greeting + 10 s menu: called at 08:59:50, the key is pressed at 09:00:03, when `it` is open.
        let mut simulation = call_at_seconds_before_nine(50);
        simulation.run_script(&[Press::Digit('3')]);
        assert_eq!(simulation.summary().outcome.as_deref(), Some("transferred"));

        // With a timeout first (5 s, then the 10 s menu again) the key comes 28 s after the answer: called at
        // 08:59:30 that is 08:59:58, closed; called at 08:59:35 it is 09:00:03, open.
        let mut early = call_at_seconds_before_nine(30);
        early.run_script(&[Press::Wait, Press::Digit('3')]);
        let summary = early.summary();
        assert_eq!(summary.outcome.as_deref(), Some("closed"));
        assert_eq!(summary.function.as_deref(), Some("it"));
        assert_eq!(
            summary.heard,
            ["welcome", "main-menu", "main-menu", "goodbye"]
        );
        let transcript = early.take_transcript().join("\n");
        assert!(
            transcript.contains("   18.0 s  no key: the timeout passes"),
            "{transcript}"
        );
        assert!(
            transcript.contains("   28.0 s  caller presses 3"),
            "{transcript}"
        );
        assert!(
            transcript.contains("   30.0 s  knappval hangs up"),
            "{transcript}"
        );

        let mut later = call_at_seconds_before_nine(35);
        later.run_script(&[Press::Wait, Press::Digit('3')]);
        assert_eq!(later.summary().outcome.as_deref(), Some("transferred"));
    }

    #[test]
    fn at_is_local_time_in_the_service_zone() {
        let at = parse_at("2026-12-24 10:00", &stockholm()).unwrap();
        assert_eq!(at, "2026-12-24T09:00:00Z".parse().unwrap());
        let summer = parse_at("2026-06-19T10:00", &stockholm()).unwrap();
        assert_eq!(summer, "2026-06-19T08:00:00Z".parse().unwrap());
        for bad in [
            "2026-12-24",
            "24/12/2026 10:00",
            "2026-12-24 25:00",
            "2026-12-24 10",
        ] {
            assert!(parse_at(bad, &stockholm()).is_err(), "{bad}");
        }
    }
}
