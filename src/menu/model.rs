//! The validated menu as the rest of the daemon sees it: plain data, every reference resolved and checked.
//!
//! `menu::load` turns the admin's YAML (with its line:col spans) into this; `flow`, `routing` and `app` read only
//! this. Nothing here knows about YAML, files or positions.

use std::collections::BTreeMap;
use std::time::Duration;

pub use super::hours::Hours;

/// A prompt file name without extension: `main-menu` means `PROMPTS/main-menu.wav`.
pub type PromptId = String;
/// A menu id: `root` for the top menu, otherwise the key under `menus:`.
pub type MenuId = String;
/// A support function id: the key under `functions:` (`it`, `kundtjanst`, ...).
pub type FunctionId = String;

/// The id the root menu (`menu:` in YAML) is known by in paths and records.
pub const ROOT_MENU: &str = "root";

/// The whole validated menu file.
#[derive(Debug, Clone, PartialEq)]
pub struct Menu {
    /// Display name (`name:`), e.g. "Kommunsupport".
    pub name: String,
    /// Support functions by id.
    pub functions: BTreeMap<FunctionId, Function>,
    /// Menus by id; always contains [`ROOT_MENU`].
    pub menus: BTreeMap<MenuId, MenuNode>,
    /// The service's opening hours (`hours:`); None: always open.
    pub hours: Option<Hours>,
}

impl Menu {
    pub fn root(&self) -> &MenuNode {
        &self.menus[ROOT_MENU]
    }
    /// Every prompt id the menu may play, for loading the prompt cache up front.
    pub fn prompt_ids(&self) -> std::collections::BTreeSet<PromptId> {
        let mut ids = std::collections::BTreeSet::new();
        for node in self.menus.values() {
            ids.extend(node.greeting.iter().cloned());
            ids.insert(node.prompt.clone());
            ids.extend(node.invalid.iter().cloned());
        }
        for function in self.functions.values() {
            ids.extend(function.transfer_prompt.iter().cloned());
            ids.extend(function.failure_prompt.iter().cloned());
            ids.extend(function.hours.iter().flat_map(Hours::prompt_ids).cloned());
        }
        ids.extend(self.hours.iter().flat_map(Hours::prompt_ids).cloned());
        ids
    }
}

/// One support function: where its calls go and how.
#[derive(Debug, Clone, PartialEq)]
pub struct Function {
    pub id: FunctionId,
    /// Display name, e.g. "IT Kundservice".
    pub name: String,
    /// SIP URI of the function's queue/phone, e.g. `sip:it@127.0.0.1:5071` (validated to parse).
    pub target: String,
    pub transfer: TransferMode,
    /// How long the target may ring before the hand-off counts as failed.
    pub ring_timeout: Duration,
    /// Optional prompt played just before the hand-off ("Du kopplas nu till IT Kundservice").
    pub transfer_prompt: Option<PromptId>,
    /// Optional prompt played when the target is busy, failing or does not answer.
    pub failure_prompt: Option<PromptId>,
    /// What to do when the hand-off fails: another function, or hang up.
    pub on_failure: FailureAction,
    /// The function's own opening hours (`hours:`); None: open whenever the service is.
    pub hours: Option<Hours>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransferMode {
    /// B2BUA: knappval INVITEs the target and relays RTP between the legs.
    Bridge,
    /// Blind transfer: knappval sends REFER to the caller's side (RFC 3515).
    Refer,
}

/// As the menu file writes it: `bridge` or `refer`.
impl std::fmt::Display for TransferMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TransferMode::Bridge => "bridge",
            TransferMode::Refer => "refer",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FailureAction {
    /// Try this other function (validated to exist; chains are bounded at run time).
    Route(FunctionId),
    Hangup,
}

/// One menu: prompts, timing and what each digit does.
#[derive(Debug, Clone, PartialEq)]
pub struct MenuNode {
    pub id: MenuId,
    /// Played once, before the first menu prompt, when the caller first enters this menu.
    pub greeting: Option<PromptId>,
    /// The menu prompt ("Tryck 1 för ...").
    pub prompt: PromptId,
    /// How long to wait for a digit after the prompt has ended.
    pub timeout: Duration,
    /// Re-prompts after a timeout or an invalid digit before the fallback.
    pub retries: u32,
    /// Played on a digit that is not one of the options.
    pub invalid: Option<PromptId>,
    /// Digit ('0'..='9', '*', '#') to what it does.
    pub options: BTreeMap<char, Choice>,
    /// What happens when the retries run out.
    pub fallback: Choice,
}

/// What a digit (or the fallback) does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Choice {
    /// Hand the call to this support function.
    Route(FunctionId),
    /// Enter this submenu.
    Menu(MenuId),
    /// Play the current menu prompt again (does not count as a retry).
    Repeat,
    /// Return to the menu we came from (the root stays at the root).
    Back,
    /// End the call politely.
    Hangup,
}
