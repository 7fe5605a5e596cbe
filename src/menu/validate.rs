//! From the YAML as written to the validated [`model::Menu`]: every id resolved, every value checked, every prompt
//! file probed. Collects all problems instead of stopping at the first, so an admin fixes a file in one round.
//! Reads the prompts directory (to probe files and suggest names); writes nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use serde_saphyr::Spanned;

use super::duration::{format_duration, parse_duration};
use super::error::{Pos, Report};
use super::hours::ClosedAction;
use super::model::{
    self, Choice, FailureAction, Function, MenuNode, QueueAgent, ROOT_MENU, Strategy, TransferMode,
};
use super::yaml::{
    RawChoice, RawFile, RawFunction, RawLanguages, RawMenu, RawQueue, SpannedMap, closest,
};

mod hours;

const DEFAULT_RING_TIMEOUT: Duration = Duration::from_secs(30);
/// One agent's phone rings this long by default before the next agent is tried.
const DEFAULT_AGENT_RING_TIMEOUT: Duration = Duration::from_secs(15);
const DEFAULT_WRAP_UP: Duration = Duration::from_secs(10);
const DEFAULT_MAX_WAIT: Duration = Duration::from_secs(600);
const DEFAULT_MENU_TIMEOUT: Duration = Duration::from_secs(5);
const DEFAULT_RETRIES: u32 = 2;
/// No caller listens to a menu more than a handful of times; a larger number is a typo.
const MAX_RETRIES: u32 = 10;
/// Anything longer is a typo (`5m` for `5s`) or a unit mix-up, not a telephone timeout.
const MAX_DURATION: Duration = Duration::from_secs(3600);

/// Ids end up in contact records, logs and URLs: keep them to a safe alphabet.
pub(crate) fn is_valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

fn pos<T>(spanned: &Spanned<T>) -> Pos {
    Pos::of(&spanned.referenced)
}

/// Where a choice appears decides which actions make sense.
#[derive(Clone, Copy)]
enum ChoiceSite<'a> {
    /// A digit in a menu's `options:`.
    Option,
    /// A menu's `fallback:` when the retries run out.
    Fallback { menu_id: &'a str },
    /// A function's `on_failure:`, or its queue's `overflow:`.
    OnFailure { function_id: &'a str, key: &'a str },
    /// `then:` under the `closed:` of the service's hours (None) or a function's.
    Closed { function_id: Option<&'a str> },
}

/// A prompt reference to be probed once all ids are known.
struct PromptUse {
    id: String,
    pos: Pos,
}

pub(crate) struct Validator<'a> {
    report: &'a mut Report,
    prompts_dir: &'a Path,
    function_ids: BTreeSet<String>,
    menu_ids: BTreeSet<String>,
    prompt_uses: Vec<PromptUse>,
    /// Menu id to the menu its fallback enters, with the fallback's position.
    fallback_edges: BTreeMap<String, (String, Pos)>,
    /// Whether prompt files are looked at (not when only the menu's shape matters, as for `knappval graph`).
    probe_prompt_files: bool,
    /// The agent ids of the agents file, when one is given: queue agents must be among them.
    known_agents: Option<&'a BTreeSet<String>>,
}

impl<'a> Validator<'a> {
    pub fn new(report: &'a mut Report, prompts_dir: &'a Path) -> Self {
        Validator {
            report,
            prompts_dir,
            function_ids: BTreeSet::new(),
            menu_ids: BTreeSet::new(),
            prompt_uses: Vec::new(),
            fallback_edges: BTreeMap::new(),
            probe_prompt_files: true,
            known_agents: None,
        }
    }

    /// Checks prompt ids' spelling but not their files.
    pub fn without_prompt_files(mut self) -> Self {
        self.probe_prompt_files = false;
        self
    }

    /// Queue agents that are ids (not `sip:` URIs) must be in this set.
    pub fn with_known_agents(mut self, agents: Option<&'a BTreeSet<String>>) -> Self {
        self.known_agents = agents;
        self
    }

    /// Checks the whole file. Returns the model only if nothing at all was wrong.
    pub fn validate(
        mut self,
        file: RawFile,
        probe_prompt: &dyn Fn(&Path) -> Result<(), String>,
    ) -> Option<model::Menu> {
        let name = match &file.name {
            Some(name) if !name.value.trim().is_empty() => Some(name.value.trim().to_owned()),
            Some(name) => {
                self.report.error(
                    pos(name),
                    "`name:` is empty",
                    "give the menu a name, e.g. name: Kommunsupport",
                );
                None
            }
            None => {
                self.report.error(
                    Pos::FILE,
                    "the menu file has no `name:`",
                    "add a first line like: name: Kommunsupport",
                );
                None
            }
        };

        // Ids first, so that references anywhere in the file can be resolved regardless of order.
        let empty_functions = SpannedMap(Vec::new());
        let raw_functions = file
            .functions
            .as_ref()
            .map_or(&empty_functions, |f| &f.value);
        self.function_ids = self.collect_ids(raw_functions, "function", "functions");
        let empty_menus = SpannedMap(Vec::new());
        let raw_menus = file.menus.as_ref().map_or(&empty_menus, |m| &m.value);
        self.menu_ids = self.collect_ids(raw_menus, "menu", "menus");
        for (key, _) in &raw_menus.0 {
            if key.value == ROOT_MENU {
                self.report.error(
                    pos(key),
                    "the menu id 'root' is reserved for the top menu",
                    "the top menu is `menu:`; give this submenu another id",
                );
            }
        }
        self.menu_ids.insert(ROOT_MENU.to_owned());

        let mut functions = BTreeMap::new();
        for (key, raw) in &raw_functions.0 {
            if let Some(function) = self.function(key, raw) {
                functions.entry(function.id.clone()).or_insert(function);
            }
        }

        let mut menus = BTreeMap::new();
        match &file.menu {
            Some(root) => {
                if let Some(node) = self.menu(ROOT_MENU, pos(root), &root.value) {
                    menus.insert(ROOT_MENU.to_owned(), node);
                }
            }
            None => self.report.error(
                Pos::FILE,
                "the menu file has no `menu:` (the menu callers hear first)",
                "add `menu:` with at least `prompt:` and `options:`",
            ),
        }
        for (key, raw) in &raw_menus.0 {
            if key.value == ROOT_MENU || !is_valid_id(&key.value) {
                continue;
            }
            if let Some(node) = self.menu(&key.value, pos(key), &raw.value) {
                menus.entry(node.id.clone()).or_insert(node);
            }
        }

        let hours = file.hours.as_ref().and_then(|h| self.hours(h, None));
        let languages = file.languages.as_ref().and_then(|l| self.languages(l));

        self.check_fallback_cycles();
        if self.probe_prompt_files {
            self.check_prompts(probe_prompt);
        }

        if !self.report.is_empty() {
            return None;
        }
        Some(model::Menu {
            name: name?,
            functions,
            menus,
            hours,
            languages,
        })
    }

    /// `languages:`. Every prompt named so far is then looked for in each language's folder; the language
    /// prompt itself (spoken in all of them) straight in the prompts folder.
    fn languages(&mut self, raw: &Spanned<RawLanguages>) -> Option<model::Languages> {
        let before = self.report_len();
        let example = "write it like languages: { prompt: language-choice, options: { \"1\": sv, \"2\": en }, default: sv }";
        let mut options = BTreeMap::new();
        match &raw.value.options {
            Some(map) if !map.value.0.is_empty() => {
                for (key, code) in &map.value.0 {
                    let digit = self.digit(key);
                    let text = code.value.trim();
                    if !is_valid_id(text) {
                        self.report.error(
                            pos(code),
                            format!("'{text}' is not a language code"),
                            "a language is the name of its prompts folder, e.g. sv or en",
                        );
                        continue;
                    }
                    if let Some(digit) = digit {
                        options.insert(digit, text.to_owned());
                    }
                }
            }
            _ => self
                .report
                .error(pos(raw), "`languages:` has no `options:`", example),
        }
        let default = match &raw.value.default {
            Some(default) => {
                let text = default.value.trim().to_owned();
                if !options.is_empty() && !options.values().any(|code| *code == text) {
                    let codes: BTreeSet<&String> = options.values().collect();
                    let codes: Vec<&str> = codes.into_iter().map(String::as_str).collect();
                    self.report.error(
                        pos(default),
                        format!("default language '{text}' is not one of the options"),
                        format!("use one of: {}", codes.join(", ")),
                    );
                }
                text
            }
            None => {
                self.report.error(
                    pos(raw),
                    "`languages:` has no `default:` (the language of a caller who presses nothing)",
                    example,
                );
                String::new()
            }
        };
        let timeout = self.duration(raw.value.timeout.as_ref(), "timeout", DEFAULT_MENU_TIMEOUT);
        // The prompts named so far are the menu's: each must exist in every language.
        let codes: BTreeSet<String> = options.values().cloned().collect();
        let uses = std::mem::take(&mut self.prompt_uses);
        for code in &codes {
            self.prompt_uses.extend(uses.iter().map(|u| PromptUse {
                id: format!("{code}/{}", u.id),
                pos: u.pos,
            }));
        }
        let prompt = match &raw.value.prompt {
            Some(prompt) => self.prompt(prompt),
            None => {
                self.report.error(
                    pos(raw),
                    "`languages:` has no `prompt:` (the choice callers hear first)",
                    example,
                );
                None
            }
        };
        if self.report_len() != before {
            return None;
        }
        Some(model::Languages {
            prompt: prompt?,
            options,
            default,
            timeout,
        })
    }

    /// The ids under `functions:` or `menus:`, reporting malformed and repeated ones.
    fn collect_ids<V>(
        &mut self,
        map: &SpannedMap<V>,
        what: &str,
        section: &str,
    ) -> BTreeSet<String> {
        let mut ids: BTreeMap<String, Pos> = BTreeMap::new();
        for (key, _) in &map.0 {
            let id = &key.value;
            if !is_valid_id(id) {
                self.report.error(
                    pos(key),
                    format!("'{id}' is not a valid {what} id"),
                    "ids are letters a-z, digits, '-' and '_' (e.g. kundtjanst); the display name goes in `name:`",
                );
                continue;
            }
            if let Some(first) = ids.get(id) {
                self.report.error(
                    pos(key),
                    format!("{what} '{id}' is defined twice under `{section}:`"),
                    format!("the first is at line {}; keep one", first.line),
                );
                continue;
            }
            ids.insert(id.clone(), pos(key));
        }
        ids.into_keys().collect()
    }

    fn function(&mut self, key: &Spanned<String>, raw: &Spanned<RawFunction>) -> Option<Function> {
        let id = key.value.as_str();
        if !is_valid_id(id) {
            return None;
        }
        let raw = &raw.value;
        let before = self.report_len();

        let name = match &raw.name {
            Some(name) if !name.value.trim().is_empty() => name.value.trim().to_owned(),
            other => {
                let at = other.as_ref().map_or(pos(key), pos);
                self.report.error(
                    at,
                    format!("function '{id}' has no `name:`"),
                    "add the name callers' records and statistics show, e.g. name: IT Kundservice",
                );
                String::new()
            }
        };
        let is_queue = raw
            .transfer
            .as_ref()
            .is_some_and(|t| t.value.trim() == "queue");
        let target = match &raw.target {
            Some(target) if is_queue => {
                self.report.error(
                    pos(target),
                    format!("function '{id}' is a queue and has no `target:`"),
                    "its calls go to the agents under `queue: {{ agents: [...] }}`; remove target, \
                     or list it there as a fixed agent",
                );
                String::new()
            }
            Some(target) => self.target(target),
            None if is_queue => String::new(),
            None => {
                self.report.error(
                    pos(key),
                    format!("function '{id}' has no `target:`"),
                    "add the SIP URI its calls go to, e.g. target: sip:it@10.0.0.5:5060",
                );
                String::new()
            }
        };
        let transfer = match &raw.transfer {
            None => TransferMode::Bridge,
            Some(mode) => match mode.value.trim() {
                "bridge" => TransferMode::Bridge,
                "refer" => TransferMode::Refer,
                "queue" => TransferMode::Queue,
                other => {
                    self.report.error(
                        pos(mode),
                        format!("unknown transfer mode '{other}'"),
                        "use `bridge` (knappval calls the function and relays the audio), `refer` \
                         (the caller's side is asked to transfer the call itself) or `queue` (callers wait \
                         for the agents under `queue:`)",
                    );
                    TransferMode::Bridge
                }
            },
        };
        let ring_timeout = self.duration(
            raw.ring_timeout.as_ref(),
            "ring_timeout",
            DEFAULT_RING_TIMEOUT,
        );
        let announcement = raw.announcement.as_ref().and_then(|p| self.prompt(p));
        let transfer_prompt = raw.transfer_prompt.as_ref().and_then(|p| self.prompt(p));
        let failure_prompt = raw.failure_prompt.as_ref().and_then(|p| self.prompt(p));
        let queue = match (&raw.queue, transfer) {
            (Some(queue), TransferMode::Queue) => self.queue(id, queue),
            (None, TransferMode::Queue) => {
                self.report.error(
                    raw.transfer.as_ref().map_or(pos(key), pos),
                    format!("function '{id}' is a queue with no `queue:`"),
                    "add queue: with at least agents: [...] and music: <prompt>",
                );
                None
            }
            (Some(queue), _) => {
                self.report.error(
                    pos(queue),
                    format!("function '{id}' has a `queue:` but is not a queue"),
                    "add transfer: queue to the function, or remove queue:",
                );
                None
            }
            (None, _) => None,
        };
        if let (Some(on_failure), TransferMode::Queue) = (&raw.on_failure, transfer) {
            self.report.error(
                pos(on_failure),
                format!("function '{id}' is a queue: what follows a long wait is its `overflow:`"),
                "move it under queue: as overflow: { route: <function> } or overflow: { hangup: true }",
            );
        }
        let overflow = raw.queue.as_ref().and_then(|q| q.value.overflow.as_ref());
        let on_failure = match &raw.on_failure {
            None => FailureAction::Hangup,
            Some(choice) => match self.choice(
                choice,
                ChoiceSite::OnFailure {
                    function_id: id,
                    key: "on_failure",
                },
            ) {
                Some(Choice::Route(to)) => FailureAction::Route(to),
                _ => FailureAction::Hangup,
            },
        };
        let on_failure = match (overflow, transfer) {
            (Some(choice), TransferMode::Queue) => match self.choice(
                choice,
                ChoiceSite::OnFailure {
                    function_id: id,
                    key: "overflow",
                },
            ) {
                Some(Choice::Route(to)) => FailureAction::Route(to),
                _ => FailureAction::Hangup,
            },
            _ => on_failure,
        };

        let hours = raw.hours.as_ref().and_then(|h| self.hours(h, Some(id)));

        (self.report_len() == before).then(|| Function {
            id: id.to_owned(),
            hours,
            name,
            target,
            transfer,
            queue,
            ring_timeout,
            announcement,
            transfer_prompt,
            failure_prompt,
            on_failure,
        })
    }

    fn queue(&mut self, function_id: &str, raw: &Spanned<RawQueue>) -> Option<model::Queue> {
        let at = pos(raw);
        let raw = &raw.value;
        let before = self.report_len();
        let mut agents: Vec<QueueAgent> = Vec::new();
        match &raw.agents {
            Some(list) if !list.value.is_empty() => {
                let mut seen: BTreeMap<String, Pos> = BTreeMap::new();
                for entry in &list.value {
                    let Some(agent) = self.queue_agent(entry) else {
                        continue;
                    };
                    if let Some(first) = seen.get(agent.id()) {
                        self.report.error(
                            pos(entry),
                            format!("agent '{}' is listed twice in this queue", agent.id()),
                            format!("the first is at line {}; keep one", first.line),
                        );
                        continue;
                    }
                    seen.insert(agent.id().to_owned(), pos(entry));
                    agents.push(agent);
                }
            }
            // Written out empty: a team not staffed yet. Allowed, and `check` warns (see `warnings`).
            Some(_) => {}
            None => self.report.error(
                at,
                format!("the queue of '{function_id}' has no agents"),
                "list who takes its calls: agents: [it-anna, it-bo, sip:it-desk@10.0.0.5] \
                 (agent ids from the agents file, or fixed sip: URIs)",
            ),
        }
        let strategy = match &raw.strategy {
            None => Strategy::default(),
            Some(name) => match Strategy::from_name(name.value.trim()) {
                Some(strategy) => strategy,
                None => {
                    let mut help = format!("use one of: {}", Strategy::NAMES.join(", "));
                    if let Some(close) = closest(name.value.trim(), Strategy::NAMES) {
                        help = format!("did you mean '{close}'? {help}");
                    }
                    self.report.error(
                        pos(name),
                        format!("unknown queue strategy '{}'", name.value.trim()),
                        help,
                    );
                    Strategy::default()
                }
            },
        };
        let ring_timeout = self.duration(
            raw.ring_timeout.as_ref(),
            "ring_timeout",
            DEFAULT_AGENT_RING_TIMEOUT,
        );
        // No rest between calls is a legitimate choice, so 0 is allowed here.
        let wrap_up = match &raw.wrap_up {
            Some(text) if parse_duration(&text.value).is_ok_and(|d| d.is_zero()) => Duration::ZERO,
            other => self.duration(other.as_ref(), "wrap_up", DEFAULT_WRAP_UP),
        };
        let max_wait = self.duration(raw.max_wait.as_ref(), "max_wait", DEFAULT_MAX_WAIT);
        let music = match &raw.music {
            Some(music) => self.prompt(music),
            None => {
                self.report.error(
                    at,
                    format!("the queue of '{function_id}' has no `music:`"),
                    "callers must hear something while they wait: add music: hold-music \
                     (prompts/hold-music.wav, looped)",
                );
                None
            }
        };
        let announce_position = raw.announce_position.as_ref().map(|every| {
            let every_value = self.duration(Some(every), "announce_position", DEFAULT_MAX_WAIT);
            for id in model::position_prompt_ids() {
                self.prompt_uses.push(PromptUse {
                    id,
                    pos: pos(every),
                });
            }
            every_value
        });
        if self.report_len() != before {
            return None;
        }
        Some(model::Queue {
            agents,
            strategy,
            ring_timeout,
            wrap_up,
            max_wait,
            music: music?,
            announce_position,
        })
    }

    /// One entry of `agents:`: a fixed `sip:` URI, or an agent id that must be in the agents file when one is given.
    fn queue_agent(&mut self, entry: &Spanned<String>) -> Option<QueueAgent> {
        let text = entry.value.trim();
        if text.starts_with("sip:") || text.starts_with("sips:") {
            let uri = self.target(entry);
            return (!uri.is_empty()).then_some(QueueAgent::Fixed(uri));
        }
        if !crate::agents::is_valid_agent_id(text) {
            self.report.error(
                pos(entry),
                format!("'{text}' is neither an agent id nor a sip: URI"),
                "an agent id is letters, digits, '.', '-' and '_' (e.g. it-anna); a fixed phone is \
                 written sip:it-desk@10.0.0.5",
            );
            return None;
        }
        if let Some(known) = self.known_agents
            && !known.contains(text)
        {
            let mut help = format!(
                "add it with: knappval agents passwd --agents <file> {text}; or write a fixed sip: URI"
            );
            if let Some(close) = closest(text, known.iter().map(String::as_str)) {
                help = format!("did you mean '{close}'? {help}");
            }
            self.report.error(
                pos(entry),
                format!("agent '{text}' is not in the agents file"),
                help,
            );
            return None;
        }
        Some(QueueAgent::Registered(text.to_owned()))
    }

    /// Checks a `target:` and returns it trimmed.
    fn target(&mut self, target: &Spanned<String>) -> String {
        let text = target.value.trim();
        let example = "write it like sip:it@10.0.0.5:5060 or sips:it@vaxel.kommun.se";
        if text.chars().any(char::is_whitespace) {
            self.report.error(
                pos(target),
                format!("target '{text}' contains a space"),
                example,
            );
            return String::new();
        }
        let uri = match rsipstack::sip::Uri::try_from(text) {
            Ok(uri) => uri,
            Err(error) => {
                self.report.error(
                    pos(target),
                    format!("target '{text}' is not a SIP URI: {error}"),
                    example,
                );
                return String::new();
            }
        };
        use rsipstack::sip::{Host, Scheme};
        if !matches!(uri.scheme, Some(Scheme::Sip) | Some(Scheme::Sips)) {
            self.report.error(
                pos(target),
                format!("target '{text}' is not a sip: or sips: URI"),
                example,
            );
            return String::new();
        }
        // rsip takes any text for a domain; a typo such as "sip:it@" or "sip:it@host,x" must not reach the wire.
        let host_ok = match uri.host() {
            Host::IpAddr(_) => true,
            Host::Domain(domain) => {
                !domain.0.is_empty()
                    && domain.0.split('.').all(|label| {
                        !label.is_empty()
                            && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                    })
            }
        };
        if !host_ok {
            self.report.error(
                pos(target),
                format!("target '{text}' has no valid host"),
                example,
            );
            return String::new();
        }
        text.to_owned()
    }

    fn menu(&mut self, id: &str, at: Pos, raw: &RawMenu) -> Option<MenuNode> {
        let before = self.report_len();
        let greeting = raw.greeting.as_ref().and_then(|p| self.prompt(p));
        let prompt = match &raw.prompt {
            Some(prompt) => self.prompt(prompt),
            None => {
                let which = if id == ROOT_MENU {
                    "the top `menu:`".to_owned()
                } else {
                    format!("menu '{id}'")
                };
                self.report.error(
                    at,
                    format!("{which} has no `prompt:`"),
                    "add the prompt that reads out the choices, e.g. prompt: main-menu (prompts/main-menu.wav)",
                );
                None
            }
        };
        let timeout = self.duration(raw.timeout.as_ref(), "timeout", DEFAULT_MENU_TIMEOUT);
        let retries = match &raw.retries {
            None => DEFAULT_RETRIES,
            Some(retries) => match retries.value.trim().parse::<u32>() {
                Ok(n) if n <= MAX_RETRIES => n,
                _ => {
                    self.report.error(
                        pos(retries),
                        format!("retries '{}' is not a number from 0 to {MAX_RETRIES}", retries.value),
                        format!(
                            "how many times the menu is played again after silence or a wrong key; default {DEFAULT_RETRIES}"
                        ),
                    );
                    DEFAULT_RETRIES
                }
            },
        };
        let invalid = raw.invalid.as_ref().and_then(|p| self.prompt(p));

        let mut options = BTreeMap::new();
        if let Some(raw_options) = &raw.options {
            let mut first_seen: BTreeMap<char, Pos> = BTreeMap::new();
            for (key, choice) in &raw_options.value.0 {
                let digit = self.digit(key);
                let choice = self.choice(choice, ChoiceSite::Option);
                let Some(digit) = digit else { continue };
                if let Some(first) = first_seen.get(&digit) {
                    self.report.error(
                        pos(key),
                        format!("key '{digit}' is given twice in this menu"),
                        format!("the first is at line {}; keep one", first.line),
                    );
                    continue;
                }
                first_seen.insert(digit, pos(key));
                if let Some(choice) = choice {
                    options.insert(digit, choice);
                }
            }
        }
        let fallback = match &raw.fallback {
            None => Some(Choice::Hangup),
            Some(choice) => {
                let resolved = self.choice(choice, ChoiceSite::Fallback { menu_id: id });
                if let Some(Choice::Menu(to)) = &resolved {
                    self.fallback_edges
                        .insert(id.to_owned(), (to.clone(), pos(choice)));
                }
                resolved
            }
        };

        if self.report_len() != before {
            return None;
        }
        Some(MenuNode {
            id: id.to_owned(),
            greeting,
            prompt: prompt?,
            timeout,
            retries,
            invalid,
            options,
            fallback: fallback?,
        })
    }

    fn digit(&mut self, key: &Spanned<String>) -> Option<char> {
        let text = key.value.as_str();
        let mut chars = text.chars();
        match (chars.next(), chars.next()) {
            (Some(c @ ('0'..='9' | '*' | '#')), None) => Some(c),
            _ => {
                self.report.error(
                    pos(key),
                    format!("'{text}' is not a telephone key"),
                    "each option is one key: 0-9, \"*\" or \"#\" (quote * and #)",
                );
                None
            }
        }
    }

    fn choice(&mut self, raw: &Spanned<RawChoice>, site: ChoiceSite<'_>) -> Option<Choice> {
        const FORMS: &str = "write one of { route: <function> }, { menu: <menu> }, { repeat: true }, { back: true }, { hangup: true }";
        let entries = match &raw.value {
            RawChoice::Scalar(text) => {
                let text = text.trim();
                let help = if self.function_ids.contains(text) {
                    format!("write {{ route: {text} }}")
                } else if self.menu_ids.contains(text) {
                    format!("write {{ menu: {text} }}")
                } else if matches!(text, "repeat" | "back" | "hangup") {
                    format!("write {{ {text}: true }}")
                } else {
                    FORMS.to_owned()
                };
                self.report
                    .error(pos(raw), format!("'{text}' is not a choice"), help);
                return None;
            }
            RawChoice::Map(entries) => entries,
        };
        let [(action, value)] = entries.as_slice() else {
            match entries.get(1) {
                None => self.report.error(pos(raw), "empty choice", FORMS),
                Some((second, _)) => self.report.error(
                    pos(second),
                    format!(
                        "one choice, two actions: '{}' and '{}'",
                        entries[0].0.value, second.value
                    ),
                    "a key does exactly one thing; keep one of them",
                ),
            }
            return None;
        };
        let text = value.value.as_deref().map(str::trim);
        // A null value (`hangup:`) has no position of its own worth showing; its key does.
        let value_pos = if value.value.is_some() {
            pos(value)
        } else {
            pos(action)
        };
        let choice = match action.value.as_str() {
            "route" => {
                let Some(function) = text.filter(|t| !t.is_empty()) else {
                    self.report.error(
                        value_pos,
                        "`route:` needs a function id",
                        self.function_help("<id>"),
                    );
                    return None;
                };
                if !self.function_ids.contains(function) {
                    let help = self.function_help(function);
                    self.report.error(
                        value_pos,
                        format!("route to undefined function '{function}'"),
                        help,
                    );
                    return None;
                }
                Choice::Route(function.to_owned())
            }
            "menu" => {
                let Some(menu) = text.filter(|t| !t.is_empty()) else {
                    self.report
                        .error(value_pos, "`menu:` needs a menu id", self.menu_help("<id>"));
                    return None;
                };
                if !self.menu_ids.contains(menu) {
                    let help = self.menu_help(menu);
                    self.report
                        .error(value_pos, format!("submenu '{menu}' is not defined"), help);
                    return None;
                }
                Choice::Menu(menu.to_owned())
            }
            flag @ ("repeat" | "back" | "hangup") => {
                match text {
                    Some("true") => {}
                    Some("false") => {
                        self.report.error(
                            value_pos,
                            format!("`{flag}: false` does nothing"),
                            format!("remove the option, or write {{ {flag}: true }}"),
                        );
                        return None;
                    }
                    _ => {
                        self.report.error(
                            value_pos,
                            format!("`{flag}:` takes `true`"),
                            format!("write {{ {flag}: true }}"),
                        );
                        return None;
                    }
                }
                match flag {
                    "repeat" => Choice::Repeat,
                    "back" => Choice::Back,
                    _ => Choice::Hangup,
                }
            }
            other => {
                let help = match closest(other, ["route", "menu", "repeat", "back", "hangup"]) {
                    Some(close) => format!("did you mean '{close}'? {FORMS}"),
                    None => FORMS.to_owned(),
                };
                self.report
                    .error(pos(action), format!("unknown action '{other}'"), help);
                return None;
            }
        };
        self.check_site(&choice, action, site)
    }

    /// Refuses actions that make no sense where they stand (they would loop forever or do nothing).
    fn check_site(
        &mut self,
        choice: &Choice,
        action: &Spanned<String>,
        site: ChoiceSite<'_>,
    ) -> Option<Choice> {
        let refusal = match (site, choice) {
            (ChoiceSite::Option, _) => None,
            (ChoiceSite::Fallback { .. }, Choice::Repeat) => Some((
                "`repeat` as a fallback would play the menu forever".to_owned(),
                "when the retries run out, route the caller on, e.g. { route: kundtjanst }, or { hangup: true }"
                    .to_owned(),
            )),
            (ChoiceSite::Fallback { menu_id }, Choice::Back) if menu_id == ROOT_MENU => Some((
                "`back` from the top menu goes nowhere".to_owned(),
                "use { route: <function> } or { hangup: true }".to_owned(),
            )),
            (ChoiceSite::Fallback { menu_id }, Choice::Menu(to)) if to == menu_id => Some((
                format!("menu '{menu_id}' falls back to itself"),
                "that restarts the same menu forever; route the caller on or hang up".to_owned(),
            )),
            (ChoiceSite::Fallback { .. }, _) => None,
            (ChoiceSite::OnFailure { key, .. }, Choice::Menu(_) | Choice::Repeat | Choice::Back) => Some((
                format!("`{}` cannot follow a failed hand-off", action.value),
                format!("{key} is {{ route: <another function> }} or {{ hangup: true }}"),
            )),
            (ChoiceSite::OnFailure { function_id, .. }, Choice::Route(to)) if to == function_id => Some((
                format!("function '{function_id}' fails over to itself"),
                "route to another function (e.g. kundtjanst), or { hangup: true }".to_owned(),
            )),
            (ChoiceSite::OnFailure { .. }, _) => None,
            (ChoiceSite::Closed { .. }, Choice::Menu(_) | Choice::Repeat | Choice::Back) => Some((
                format!("`{}` cannot follow closed hours", action.value),
                "then: is { hangup: true } or { route: <a function that is open> }".to_owned(),
            )),
            (ChoiceSite::Closed { function_id: Some(function_id) }, Choice::Route(to)) if to == function_id => Some((
                format!("function '{function_id}' routes to itself when closed"),
                "route to another function (e.g. kundtjanst), or { hangup: true }".to_owned(),
            )),
            (ChoiceSite::Closed { .. }, _) => None,
        };
        match refusal {
            Some((message, help)) => {
                self.report.error(pos(action), message, help);
                None
            }
            None => Some(choice.clone()),
        }
    }

    fn function_help(&self, id: &str) -> String {
        let mut help = format!("define '{id}' under `functions:`");
        if !self.function_ids.is_empty() {
            help.push_str(", or use one of: ");
            help.push_str(&join(&self.function_ids));
        }
        help
    }

    fn menu_help(&self, id: &str) -> String {
        format!(
            "define '{id}' under `menus:`, or use one of: {}",
            join(&self.menu_ids)
        )
    }

    fn duration(
        &mut self,
        raw: Option<&Spanned<String>>,
        key: &str,
        default: Duration,
    ) -> Duration {
        let Some(raw) = raw else { return default };
        match parse_duration(&raw.value) {
            Ok(duration) if duration.is_zero() => {
                self.report.error(
                    pos(raw),
                    format!("`{key}:` cannot be 0"),
                    format!(
                        "leave it out for the default ({})",
                        format_duration(default)
                    ),
                );
                default
            }
            Ok(duration) if duration > MAX_DURATION => {
                self.report.error(
                    pos(raw),
                    format!("`{key}: {}` is longer than an hour", raw.value.trim()),
                    format!(
                        "the longest allowed is {}; the default is {}",
                        format_duration(MAX_DURATION),
                        format_duration(default)
                    ),
                );
                default
            }
            Ok(duration) => duration,
            Err(error) => {
                self.report.error(pos(raw), error.message, error.help);
                default
            }
        }
    }

    /// A caller who never presses a key must eventually reach a person or be hung up on, not be passed between
    /// menus whose fallbacks lead into each other forever. (A menu falling back to itself is refused earlier.)
    fn check_fallback_cycles(&mut self) {
        let mut reported: BTreeSet<String> = BTreeSet::new();
        let starts: Vec<String> = self.fallback_edges.keys().cloned().collect();
        for start in starts {
            let mut path = vec![start.clone()];
            let mut current = start.clone();
            while let Some((next, _)) = self.fallback_edges.get(&current) {
                if let Some(index) = path.iter().position(|id| id == next) {
                    let cycle = &path[index..];
                    // Report each cycle once, at the fallback of its smallest id.
                    let Some(first) = cycle.iter().min().cloned() else {
                        break;
                    };
                    if cycle.len() > 1 && reported.insert(first.clone()) {
                        let at = self.fallback_edges[&first].1;
                        let mut names: Vec<&str> = cycle.iter().map(String::as_str).collect();
                        let rotate = names.iter().position(|id| *id == first).unwrap_or(0);
                        names.rotate_left(rotate);
                        names.push(&first);
                        self.report.error(
                            at,
                            format!("menus fall back into each other forever: {}", names.join(" -> ")),
                            "a silent caller would never leave; let one of them route to a function or hang up",
                        );
                    }
                    break;
                }
                path.push(next.clone());
                current = next.clone();
            }
        }
    }

    /// Checks a prompt id's spelling now; whether its file exists is checked once all ids are known.
    fn prompt(&mut self, raw: &Spanned<String>) -> Option<String> {
        let id = raw.value.trim();
        if let Some(stem) = id.strip_suffix(".wav").filter(|s| is_valid_id(s)) {
            self.report.error(
                pos(raw),
                format!("prompt id '{id}' includes the file extension"),
                format!("write the id without .wav: {stem}"),
            );
            return None;
        }
        if !is_valid_id(id) {
            // Also what keeps a prompt id from naming a file outside the prompts directory.
            self.report.error(
                pos(raw),
                format!("'{id}' is not a valid prompt id"),
                "a prompt id is a file name without .wav: letters, digits, '-' and '_' (e.g. main-menu)",
            );
            return None;
        }
        self.prompt_uses.push(PromptUse {
            id: id.to_owned(),
            pos: pos(raw),
        });
        Some(id.to_owned())
    }

    /// Probes each referenced prompt file once and reports a problem at every place that uses it.
    fn check_prompts(&mut self, probe_prompt: &dyn Fn(&Path) -> Result<(), String>) {
        if !self.prompts_dir.is_dir()
            && let Some(first) = self.prompt_uses.first()
        {
            // One cause, one error: every prompt would otherwise be reported missing on its own.
            let ids: BTreeSet<&str> = self.prompt_uses.iter().map(|u| u.id.as_str()).collect();
            self.report.error(
                first.pos,
                format!(
                    "the prompts folder {} does not exist or is not a folder (this menu names {} {})",
                    self.prompts_dir.display(),
                    ids.len(),
                    if ids.len() == 1 { "prompt" } else { "prompts" }
                ),
                "pass --prompts with the folder that holds <id>.wav for each prompt id \
                 (the shipped ones are in prompts/ of the repository), or create it",
            );
            self.prompt_uses.clear();
            return;
        }
        let available = self.available_prompts();
        let mut verdicts: BTreeMap<String, Option<(String, String)>> = BTreeMap::new();
        for prompt_use in std::mem::take(&mut self.prompt_uses) {
            let verdict = verdicts
                .entry(prompt_use.id.clone())
                .or_insert_with(|| self.probe(&prompt_use.id, &available, probe_prompt));
            if let Some((message, help)) = verdict {
                self.report
                    .error(prompt_use.pos, message.clone(), help.clone());
            }
        }
    }

    fn probe(
        &self,
        id: &str,
        available: &Option<Vec<String>>,
        probe_prompt: &dyn Fn(&Path) -> Result<(), String>,
    ) -> Option<(String, String)> {
        let path = self.prompts_dir.join(format!("{id}.wav"));
        if !path.is_file() {
            let help = match available {
                None => format!(
                    "the prompts directory {} does not exist or cannot be read",
                    self.prompts_dir.display()
                ),
                Some(names) => {
                    let mut close: Vec<(usize, &str)> = names
                        .iter()
                        .map(|name| (super::yaml::edit_distance(id, name), name.as_str()))
                        .filter(|(distance, _)| *distance <= (id.chars().count() / 3).max(2))
                        .collect();
                    close.sort();
                    if close.is_empty() {
                        "record it (8 kHz mono WAV) or fix the id".to_owned()
                    } else {
                        let names: Vec<&str> =
                            close.iter().take(3).map(|(_, name)| *name).collect();
                        format!(
                            "did you mean: {}? Otherwise record it or fix the id",
                            names.join(", ")
                        )
                    }
                }
            };
            let message = match id.split_once('/') {
                Some((language, prompt)) => format!(
                    "prompt '{prompt}' is missing in language '{language}': no file {}",
                    path.display()
                ),
                None => format!("prompt file not found: {}", path.display()),
            };
            return Some((message, help));
        }
        probe_prompt(&path).err().map(|reason| {
            (
                format!("prompt file {} cannot be played: {reason}", path.display()),
                format!(
                    "convert it, e.g. sox in.wav -r 8000 -c 1 -b 16 {}",
                    path.display()
                ),
            )
        })
    }

    /// The prompt ids present in the prompts directory, for suggestions; `None` if it cannot be listed.
    fn available_prompts(&self) -> Option<Vec<String>> {
        prompt_files(self.prompts_dir)
    }

    fn report_len(&self) -> usize {
        self.report.len()
    }
}

/// The prompt ids of the WAV files in `prompts_dir`, sorted; `None` if it cannot be listed.
pub(crate) fn prompt_files(prompts_dir: &Path) -> Option<Vec<String>> {
    let entries = std::fs::read_dir(prompts_dir).ok()?;
    let mut names: Vec<String> = entries
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let path = entry.path();
            let is_wav = path
                .extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("wav"));
            is_wav.then(|| path.file_stem()?.to_str().map(str::to_owned))?
        })
        .collect();
    names.sort();
    Some(names)
}

fn join(ids: &BTreeSet<String>) -> String {
    ids.iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Menus that no digit or fallback leads to from the top menu: allowed (an admin may park a menu), but worth a note.
pub fn unreachable_menus(menu: &model::Menu) -> Vec<&str> {
    let mut reached: BTreeSet<&str> = BTreeSet::new();
    let mut queue = vec![ROOT_MENU];
    while let Some(id) = queue.pop() {
        if !reached.insert(id) {
            continue;
        }
        let Some(node) = menu.menus.get(id) else {
            continue;
        };
        for choice in node.options.values().chain(std::iter::once(&node.fallback)) {
            if let Choice::Menu(next) = choice {
                queue.push(next);
            }
        }
    }
    menu.menus
        .keys()
        .map(String::as_str)
        .filter(|id| !reached.contains(id))
        .collect()
}

/// Functions that no reachable menu or failover leads to.
pub fn unreachable_functions(menu: &model::Menu) -> Vec<&str> {
    let parked: BTreeSet<&str> = unreachable_menus(menu).into_iter().collect();
    let mut reached: BTreeSet<&str> = BTreeSet::new();
    let mut queue: Vec<&str> = Vec::new();
    for node in menu
        .menus
        .values()
        .filter(|n| !parked.contains(n.id.as_str()))
    {
        for choice in node.options.values().chain(std::iter::once(&node.fallback)) {
            if let Choice::Route(function) = choice {
                queue.push(function);
            }
        }
    }
    if let Some(ClosedAction::Route(function)) = menu.hours.as_ref().map(|h| &h.closed.then) {
        queue.push(function);
    }
    while let Some(id) = queue.pop() {
        if !reached.insert(id) {
            continue;
        }
        let Some(function) = menu.functions.get(id) else {
            continue;
        };
        if let FailureAction::Route(next) = &function.on_failure {
            queue.push(next);
        }
        if let Some(ClosedAction::Route(next)) = function.hours.as_ref().map(|h| &h.closed.then) {
            queue.push(next);
        }
    }
    menu.functions
        .keys()
        .map(String::as_str)
        .filter(|id| !reached.contains(id))
        .collect()
}
