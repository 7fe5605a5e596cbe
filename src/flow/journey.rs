//! What one caller did in the menu, as the contact record and the statistics need it.
//!
//! Plain data filled in by [`Flow`](super::Flow); it serialises to readable JSON so the record store can keep the
//! step trail as one column (`{"at_ms":1520,"kind":"digit","value":"2"}`). Nothing here decides anything.

use serde::{Deserialize, Serialize};

use super::Outcome;
use crate::menu::model::{FunctionId, MenuId, PromptId};

/// Everything that happened in one call, from answer to outcome.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Journey {
    /// Every digit the caller pressed while in a menu, in order, valid or not. Digits pressed during a hand-off
    /// are not the caller's choice and are left out.
    pub digits: String,
    /// Menus entered, in order, starting with `root`. A menu entered again (submenu option, back, fallback) is
    /// appended again, so the funnel can count visits.
    pub path: Vec<MenuId>,
    /// The function the caller was last routed to: handed to, being handed to, or attempted and failed.
    pub function: Option<FunctionId>,
    /// The language the caller chose (or was given by default), with `languages:` in the menu.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
    /// The announcements played (service ones, then the chosen functions'), by prompt id, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub announcements: Vec<PromptId>,
    /// Set once the call's outcome is decided.
    pub outcome: Option<Outcome>,
    /// The timestamped trail, for time-to-choice and funnel statistics.
    pub steps: Vec<Step>,
}

impl Journey {
    /// Milliseconds from answer to the caller's first valid choice, if they made one.
    pub fn time_to_choice_ms(&self) -> Option<u64> {
        self.steps
            .iter()
            .find(|step| matches!(step.kind, StepKind::Digit(_)))
            .map(|step| step.at_ms)
    }

    /// True once the call was handed to a support function.
    pub fn was_transferred(&self) -> bool {
        self.outcome == Some(Outcome::Transferred)
    }
}

/// One entry of the trail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    /// Milliseconds since the call was answered (0 for anything before the answer).
    pub at_ms: u64,
    #[serde(flatten)]
    pub kind: StepKind,
}

/// What happened at a step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "value", rename_all = "snake_case")]
pub enum StepKind {
    /// The caller entered this menu (root on answer, a submenu, back, or a fallback).
    EnteredMenu(MenuId),
    /// A digit that is one of the current menu's options.
    Digit(char),
    /// A digit that is not one of the current menu's options.
    InvalidDigit(char),
    /// The language the call goes on in (chosen, or the default).
    Language(String),
    /// The caller pressed nothing within the menu's timeout.
    Timeout,
    /// The menu prompt is played again (the caller's choice, or a fallback).
    Repeat,
    /// The caller went back to the previous menu (at the root: the root prompt again).
    Back,
    /// The hand-off to this function was asked of the call task.
    TransferStarted(FunctionId),
    /// The hand-off to this function failed (busy, no answer, error).
    TransferFailed(FunctionId),
    /// The hand-off to this function succeeded.
    Transferred(FunctionId),
    /// The menu's retries ran out and its fallback took over.
    Fallback,
    /// The service's opening hours were closed when the call was answered.
    Closed,
    /// This function's opening hours were closed when it was chosen.
    FunctionClosed(FunctionId),
    /// The caller hung up or cancelled.
    CallerHungUp,
    /// knappval ended the call.
    Hangup,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_serialise_flat_and_round_trip() {
        let journey = Journey {
            digits: "2x".into(),
            path: vec!["root".into()],
            function: Some("it".into()),
            announcements: Vec::new(),
            language: None,
            outcome: Some(Outcome::Transferred),
            steps: vec![
                Step {
                    at_ms: 0,
                    kind: StepKind::EnteredMenu("root".into()),
                },
                Step {
                    at_ms: 1520,
                    kind: StepKind::Digit('2'),
                },
                Step {
                    at_ms: 3000,
                    kind: StepKind::Timeout,
                },
                Step {
                    at_ms: 4000,
                    kind: StepKind::TransferStarted("it".into()),
                },
            ],
        };
        let json = serde_json::to_value(&journey).unwrap();
        assert_eq!(
            json["steps"],
            serde_json::json!([
                {"at_ms": 0, "kind": "entered_menu", "value": "root"},
                {"at_ms": 1520, "kind": "digit", "value": "2"},
                {"at_ms": 3000, "kind": "timeout"},
                {"at_ms": 4000, "kind": "transfer_started", "value": "it"},
            ])
        );
        assert_eq!(json["outcome"], "transferred");
        let back: Journey = serde_json::from_value(json).unwrap();
        assert_eq!(back, journey);
    }

    #[test]
    fn time_to_choice_is_the_first_valid_digit() {
        let mut journey = Journey::default();
        assert_eq!(journey.time_to_choice_ms(), None);
        journey.steps.push(Step {
            at_ms: 900,
            kind: StepKind::InvalidDigit('7'),
        });
        journey.steps.push(Step {
            at_ms: 2100,
            kind: StepKind::Digit('1'),
        });
        journey.steps.push(Step {
            at_ms: 4100,
            kind: StepKind::Digit('3'),
        });
        assert_eq!(journey.time_to_choice_ms(), Some(2100));
        assert!(!journey.was_transferred());
    }
}
