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
    /// The caller's choice of language (`languages:`); None: one language, prompts straight in the folder.
    pub languages: Option<Languages>,
}

/// `languages: { prompt: language-choice, options: { "1": sv, "2": en }, default: sv }`: the caller first hears
/// the language prompt (`PROMPTS/<prompt>.wav`, spoken in every language) and presses a key; every other prompt
/// then comes from `PROMPTS/<language>/<id>.wav`.
#[derive(Debug, Clone, PartialEq)]
pub struct Languages {
    pub prompt: PromptId,
    /// Key to language code (the folder name).
    pub options: BTreeMap<char, String>,
    /// Taken when the caller presses nothing (within the wait) or a key that is not an option.
    pub default: String,
    /// How long to wait for the key once the prompt has ended.
    pub timeout: Duration,
}

impl Languages {
    /// Every language, each once, in key order.
    pub fn codes(&self) -> Vec<&str> {
        let mut codes: Vec<&str> = Vec::new();
        for code in self.options.values() {
            if !codes.contains(&code.as_str()) {
                codes.push(code);
            }
        }
        codes
    }
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
            ids.extend(function.announcement.iter().cloned());
            ids.extend(function.transfer_prompt.iter().cloned());
            ids.extend(function.failure_prompt.iter().cloned());
            ids.extend(function.hours.iter().flat_map(Hours::prompt_ids).cloned());
            if let Some(queue) = &function.queue {
                ids.insert(queue.music.clone());
                if queue.announce_position.is_some() {
                    ids.extend(position_prompt_ids());
                }
            }
        }
        ids.extend(self.hours.iter().flat_map(Hours::prompt_ids).cloned());
        ids.extend(self.languages.iter().map(|l| l.prompt.clone()));
        ids
    }

    /// The prompt cache's keys for every prompt the menu may play: `<language>/<id>` for each language with
    /// `languages:` (the language prompt itself stays `<id>`), `<id>` without. Also the path under the prompts
    /// folder, without `.wav`.
    pub fn prompt_keys(&self) -> Vec<String> {
        let ids = self.prompt_ids();
        match &self.languages {
            None => ids.into_iter().collect(),
            Some(languages) => {
                let mut keys = vec![languages.prompt.clone()];
                for code in languages.codes() {
                    keys.extend(
                        ids.iter()
                            .filter(|id| **id != languages.prompt)
                            .map(|id| format!("{code}/{id}")),
                    );
                }
                keys
            }
        }
    }
}

/// The highest place in line read out as a number; beyond it the caller hears [`POSITION_MANY`].
pub const POSITION_NUMBERS: usize = 20;
/// "Du är nummer", before the number.
pub const POSITION_PREFIX: &str = "queue-position";
/// "i kön", after the number.
pub const POSITION_SUFFIX: &str = "queue-in-line";
/// "Det är fler än tjugo före dig i kön", for places beyond [`POSITION_NUMBERS`].
pub const POSITION_MANY: &str = "queue-position-many";

/// The spoken number `n` (1 to [`POSITION_NUMBERS`]): `number-<n>`.
pub fn number_prompt(n: usize) -> PromptId {
    format!("number-{n}")
}

/// Every prompt a position announcement may use.
pub fn position_prompt_ids() -> Vec<PromptId> {
    let mut ids = vec![
        POSITION_PREFIX.to_owned(),
        POSITION_SUFFIX.to_owned(),
        POSITION_MANY.to_owned(),
    ];
    ids.extend((1..=POSITION_NUMBERS).map(number_prompt));
    ids
}

/// One support function: where its calls go and how.
#[derive(Debug, Clone, PartialEq)]
pub struct Function {
    pub id: FunctionId,
    /// Display name, e.g. "IT Kundservice".
    pub name: String,
    /// SIP URI of the function's phone, e.g. `sip:it@127.0.0.1:5071` (validated to parse); empty for a queue,
    /// whose agents are in [`Function::queue`].
    pub target: String,
    pub transfer: TransferMode,
    /// The function's queue, when `transfer: queue`.
    pub queue: Option<Queue>,
    /// How long the target may ring before the hand-off counts as failed.
    pub ring_timeout: Duration,
    /// Optional announcement played when the caller chooses the function, before its transfer prompt
    /// ("Raindance är uppgraderat i helgen ...").
    pub announcement: Option<PromptId>,
    /// Optional prompt played just before the hand-off ("Du kopplas nu till IT Kundservice").
    pub transfer_prompt: Option<PromptId>,
    /// Optional prompt played when the target is busy, failing or does not answer.
    pub failure_prompt: Option<PromptId>,
    /// What to do when the hand-off fails: another function, or hang up. For a queue: its `overflow`.
    pub on_failure: FailureAction,
    /// The function's own opening hours (`hours:`); None: open whenever the service is.
    pub hours: Option<Hours>,
}

/// A function's queue (`transfer: queue`): callers wait in line with music while its agents are offered the call.
#[derive(Debug, Clone, PartialEq)]
pub struct Queue {
    pub agents: Vec<QueueAgent>,
    pub strategy: Strategy,
    /// How long one offer rings one agent before the next agent is tried.
    pub ring_timeout: Duration,
    /// How long an agent rests after a call before the next offer.
    pub wrap_up: Duration,
    /// How long a caller waits in this queue before the overflow (the function's `on_failure`).
    pub max_wait: Duration,
    /// Looped while the caller waits.
    pub music: PromptId,
    /// How often the caller hears their place in line; `None`: never.
    pub announce_position: Option<Duration>,
}

/// Who a queue offers its calls to.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum QueueAgent {
    /// An agent id from the agents file: offered while its phone is registered (`sip:<id>@<knappval>`).
    Registered(String),
    /// A fixed `sip:` URI (a desk phone, another PBX's hunt group): always offered.
    Fixed(String),
}

impl QueueAgent {
    /// The id the queue's state and the records know the agent by: the agent id, or the fixed URI itself.
    pub fn id(&self) -> &str {
        match self {
            QueueAgent::Registered(id) | QueueAgent::Fixed(id) => id,
        }
    }
}

/// Which free agent gets the next offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Strategy {
    /// Every free agent at once; the first to answer takes the call.
    RingAll,
    /// Each agent in turn, in the order listed, continuing after the last one offered.
    RoundRobin,
    /// The agent who has been free the longest.
    #[default]
    LongestIdle,
}

impl Strategy {
    pub const NAMES: [&str; 3] = ["ring-all", "round-robin", "longest-idle"];

    pub fn from_name(name: &str) -> Option<Strategy> {
        match name {
            "ring-all" => Some(Strategy::RingAll),
            "round-robin" => Some(Strategy::RoundRobin),
            "longest-idle" => Some(Strategy::LongestIdle),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransferMode {
    /// B2BUA: knappval INVITEs the target and relays RTP between the legs.
    Bridge,
    /// Blind transfer: knappval sends REFER to the caller's side (RFC 3515).
    Refer,
    /// The caller waits in the function's queue until an agent answers (then bridged as a B2BUA).
    Queue,
}

/// As the menu file writes it: `bridge`, `refer` or `queue`.
impl std::fmt::Display for TransferMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TransferMode::Bridge => "bridge",
            TransferMode::Refer => "refer",
            TransferMode::Queue => "queue",
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
