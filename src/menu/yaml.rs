//! The menu file's YAML shape, as written, with the position of every value a later error can point at.
//! Owns parsing (serde-saphyr with a budget) and turning its errors into admin-facing ones; knows nothing about
//! whether ids resolve or prompts exist (that is `validate`).

use std::fmt;

use serde::Deserialize;
use serde::de::{self, MapAccess, Visitor};
use serde_saphyr::budget::BudgetBreach;
use serde_saphyr::{Budget, DuplicateKeyPolicy, MessageFormatter, Options, Spanned};

use super::error::{Pos, Report};

/// A menu file is a few kilobytes; anything this large is a mistake (or an attack) and is refused before parsing.
pub(crate) const MAX_MENU_BYTES: usize = 1024 * 1024;

/// The top of the menu file. Unknown keys are not refused here but by [`check_keys`], so that the rest of the file
/// is still checked.
#[derive(Debug, Deserialize)]
pub(crate) struct RawFile {
    pub name: Option<Spanned<String>>,
    pub functions: Option<Spanned<SpannedMap<Spanned<RawFunction>>>>,
    pub menu: Option<Spanned<RawMenu>>,
    pub menus: Option<Spanned<SpannedMap<Spanned<RawMenu>>>>,
    pub hours: Option<Spanned<RawHours>>,
    pub languages: Option<Spanned<RawLanguages>>,
}

/// `languages: { prompt: language-choice, options: { "1": sv, "2": en }, default: sv, timeout: 5s }`.
#[derive(Debug, Deserialize)]
pub(crate) struct RawLanguages {
    pub prompt: Option<Spanned<String>>,
    pub options: Option<Spanned<SpannedMap<Spanned<String>>>>,
    pub default: Option<Spanned<String>>,
    pub timeout: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct RawFunction {
    pub name: Option<Spanned<String>>,
    pub target: Option<Spanned<String>>,
    pub transfer: Option<Spanned<String>>,
    pub ring_timeout: Option<Spanned<String>>,
    pub announcement: Option<Spanned<String>>,
    pub transfer_prompt: Option<Spanned<String>>,
    pub failure_prompt: Option<Spanned<String>>,
    pub on_failure: Option<Spanned<RawChoice>>,
    pub hours: Option<Spanned<RawHours>>,
    pub queue: Option<Spanned<RawQueue>>,
}

/// `hours:` for the service or one function. Values stay text: `menu::hours` parses them and says what is wrong.
#[derive(Debug, Deserialize)]
pub(crate) struct RawHours {
    pub timezone: Option<Spanned<String>>,
    pub weekly: Option<Spanned<SpannedMap<Spanned<String>>>>,
    pub holidays: Option<Spanned<String>>,
    pub closed_on: Option<Spanned<Vec<Spanned<String>>>>,
    pub special: Option<Spanned<SpannedMap<Spanned<String>>>>,
    pub closed: Option<Spanned<RawClosed>>,
}

/// `closed: { prompt: closed, then: { hangup: true } }`.
#[derive(Debug, Deserialize)]
pub(crate) struct RawClosed {
    pub prompt: Option<Spanned<String>>,
    pub then: Option<Spanned<RawChoice>>,
}

/// A function's `queue:` (with `transfer: queue`).
#[derive(Debug, Deserialize)]
pub(crate) struct RawQueue {
    pub agents: Option<Spanned<Vec<Spanned<String>>>>,
    pub strategy: Option<Spanned<String>>,
    pub ring_timeout: Option<Spanned<String>>,
    pub wrap_up: Option<Spanned<String>>,
    pub max_wait: Option<Spanned<String>>,
    pub overflow: Option<Spanned<RawChoice>>,
    pub music: Option<Spanned<String>>,
    pub announce_position: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct RawMenu {
    pub greeting: Option<Spanned<String>>,
    pub prompt: Option<Spanned<String>>,
    pub timeout: Option<Spanned<String>>,
    pub retries: Option<Spanned<String>>,
    pub invalid: Option<Spanned<String>>,
    pub options: Option<Spanned<SpannedMap<Spanned<RawChoice>>>>,
    pub fallback: Option<Spanned<RawChoice>>,
}

/// The keys each kind of mapping allows, in the order the help text lists them (the fields of the raw structs).
const FILE_KEYS: &[&str] = &["name", "functions", "menu", "menus", "hours", "languages"];
const LANGUAGES_KEYS: &[&str] = &["prompt", "options", "default", "timeout"];
const FUNCTION_KEYS: &[&str] = &[
    "name",
    "target",
    "transfer",
    "ring_timeout",
    "announcement",
    "transfer_prompt",
    "failure_prompt",
    "on_failure",
    "hours",
    "queue",
];
const MENU_KEYS: &[&str] = &[
    "greeting", "prompt", "timeout", "retries", "invalid", "options", "fallback",
];
const HOURS_KEYS: &[&str] = &[
    "timezone",
    "weekly",
    "holidays",
    "closed_on",
    "special",
    "closed",
];
const CLOSED_KEYS: &[&str] = &["prompt", "then"];
const QUEUE_KEYS: &[&str] = &[
    "agents",
    "strategy",
    "ring_timeout",
    "wrap_up",
    "max_wait",
    "overflow",
    "music",
    "announce_position",
];

/// The shape of a known field's value, where it has keys of its own to check.
fn field_shape(key: &str) -> Shape {
    match key {
        "hours" => Shape::Fields(HOURS_KEYS),
        "closed" => Shape::Fields(CLOSED_KEYS),
        "queue" => Shape::Fields(QUEUE_KEYS),
        _ => Shape::Free,
    }
}

/// The file's mappings and their keys with positions, every entry as written (repeated keys included), values
/// other than mappings left out: what [`check_keys`] needs to find every unknown and repeated key in one go.
#[derive(Debug)]
enum KeyTree {
    Map(Vec<(Spanned<String>, KeyTree)>),
    Seq(Vec<KeyTree>),
    Scalar,
}

impl<'de> Deserialize<'de> for KeyTree {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TreeVisitor;

        impl<'de> Visitor<'de> for TreeVisitor {
            type Value = KeyTree;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a YAML value")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut entries = Vec::new();
                while let Some(key) = map.next_key::<Spanned<String>>()? {
                    entries.push((key, map.next_value::<KeyTree>()?));
                }
                Ok(KeyTree::Map(entries))
            }

            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element::<KeyTree>()? {
                    items.push(item);
                }
                Ok(KeyTree::Seq(items))
            }

            fn visit_some<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
                KeyTree::deserialize(d)
            }

            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
                Ok(KeyTree::Scalar)
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
                Ok(KeyTree::Scalar)
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
                Ok(KeyTree::Scalar)
            }
            fn visit_i128<E: de::Error>(self, _: i128) -> Result<Self::Value, E> {
                Ok(KeyTree::Scalar)
            }
            fn visit_u128<E: de::Error>(self, _: u128) -> Result<Self::Value, E> {
                Ok(KeyTree::Scalar)
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
                Ok(KeyTree::Scalar)
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
                Ok(KeyTree::Scalar)
            }
            fn visit_bytes<E: de::Error>(self, _: &[u8]) -> Result<Self::Value, E> {
                Ok(KeyTree::Scalar)
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(KeyTree::Scalar)
            }
            fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(KeyTree::Scalar)
            }
        }

        deserializer.deserialize_any(TreeVisitor)
    }
}

/// What a mapping in the menu file is, for its allowed keys.
#[derive(Clone, Copy)]
enum Shape {
    File,
    /// `functions:` or `menus:`: ids of the admin's choosing, each a function or a menu.
    Ids(&'static [&'static str]),
    /// The body of a function or a menu.
    Fields(&'static [&'static str]),
    /// Anything else (a menu's `options:`, a choice): only repeated keys are checked here; `validate` knows the rest.
    Free,
}

/// Reports every unknown key (with the keys allowed there) and every repeated key (with both positions).
fn check_keys(source: &str, tree: &KeyTree, shape: Shape, report: &mut Report) {
    match tree {
        KeyTree::Seq(items) => {
            for item in items {
                check_keys(source, item, Shape::Free, report);
            }
        }
        KeyTree::Scalar => {}
        KeyTree::Map(entries) => {
            let mut seen: Vec<(String, Pos)> = Vec::new();
            for (key, value) in entries {
                let here = Pos::of(&key.referenced);
                let identity = key_identity(source, key);
                if let Some((_, first)) = seen.iter().find(|(id, _)| *id == identity) {
                    report.error(
                        here,
                        format!(
                            "'{}' is given twice in the same mapping: first at line {}, column {}, again here",
                            key.value, first.line, first.column
                        ),
                        "keep one of them; YAML does not merge repeated keys",
                    );
                } else {
                    seen.push((identity, here));
                }
                let inner = match shape {
                    Shape::File => match key.value.as_str() {
                        "functions" => Some(Shape::Ids(FUNCTION_KEYS)),
                        "menus" => Some(Shape::Ids(MENU_KEYS)),
                        "menu" => Some(Shape::Fields(MENU_KEYS)),
                        "name" => Some(Shape::Free),
                        "hours" => Some(field_shape("hours")),
                        "languages" => Some(Shape::Fields(LANGUAGES_KEYS)),
                        _ => None,
                    },
                    Shape::Ids(fields) => Some(Shape::Fields(fields)),
                    Shape::Fields(allowed) if allowed.contains(&key.value.as_str()) => {
                        Some(field_shape(&key.value))
                    }
                    Shape::Fields(_) => None,
                    Shape::Free => Some(Shape::Free),
                };
                match inner {
                    Some(inner) => check_keys(source, value, inner, report),
                    None => {
                        let allowed = match shape {
                            Shape::Fields(allowed) => allowed,
                            _ => FILE_KEYS,
                        };
                        unknown_key(&key.value, here, allowed, report);
                    }
                }
            }
        }
    }
}

fn unknown_key(key: &str, pos: Pos, allowed: &[&str], report: &mut Report) {
    let mut help = format!("allowed here: {}", allowed.join(", "));
    if let Some(close) = closest(key, allowed.iter().copied()) {
        help = format!("did you mean '{close}'? {help}");
    }
    report.error(pos, format!("unknown key '{key}'"), help);
}

/// Which keys YAML takes as the same: equal text, except that a bare number (`1:`) is not the string `"1":`.
fn key_identity(source: &str, key: &Spanned<String>) -> String {
    let pos = Pos::of(&key.referenced);
    let quoted = source
        .lines()
        .nth(pos.line - 1)
        .and_then(|line| line.chars().nth(pos.column - 1))
        .is_some_and(|c| c == '"' || c == '\'');
    let number = !quoted && key.value.parse::<f64>().is_ok();
    format!("{}{}", if number { "#" } else { "$" }, key.value)
}

/// A mapping kept as written: keys with their positions, in file order, duplicates included (so that `1:` and
/// `"1":`, which YAML considers different keys, can be reported as the same digit).
#[derive(Debug)]
pub(crate) struct SpannedMap<V>(pub Vec<(Spanned<String>, V)>);

impl<'de, V: Deserialize<'de>> Deserialize<'de> for SpannedMap<V> {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MapVisitor<V>(std::marker::PhantomData<V>);

        impl<'de, V: Deserialize<'de>> Visitor<'de> for MapVisitor<V> {
            type Value = SpannedMap<V>;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a mapping of ids")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut entries = Vec::new();
                while let Some(key) = map.next_key::<Spanned<String>>()? {
                    entries.push((key, map.next_value::<V>()?));
                }
                Ok(SpannedMap(entries))
            }

            // `functions:` with nothing under it: an empty map, not an error.
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(SpannedMap(Vec::new()))
            }
        }

        deserializer.deserialize_map(MapVisitor(std::marker::PhantomData))
    }
}

/// A choice as written. Kept loose on purpose: `validate` explains a wrong shape far better than serde can
/// ("write { route: it }" instead of "invalid type: string, expected struct").
#[derive(Debug)]
pub(crate) enum RawChoice {
    /// `{ route: it }`; normally exactly one entry. A null value (`hangup:`) is `None`.
    Map(Vec<(Spanned<String>, Spanned<Option<String>>)>),
    /// `"1": it`: a bare scalar where a choice map belongs.
    Scalar(String),
}

impl<'de> Deserialize<'de> for RawChoice {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ChoiceVisitor;

        impl<'de> Visitor<'de> for ChoiceVisitor {
            type Value = RawChoice;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(
                    "a choice such as { route: kundtjanst }, { menu: care }, { repeat: true }, \
                     { back: true } or { hangup: true }",
                )
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut entries = Vec::new();
                while let Some(key) = map.next_key::<Spanned<String>>()? {
                    entries.push((key, map.next_value::<Spanned<Option<String>>>()?));
                }
                Ok(RawChoice::Map(entries))
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(RawChoice::Scalar(v.to_owned()))
            }

            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
                Ok(RawChoice::Scalar(v.to_string()))
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(RawChoice::Scalar(v.to_string()))
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(RawChoice::Scalar(v.to_string()))
            }

            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
                Ok(RawChoice::Scalar(v.to_string()))
            }

            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(RawChoice::Scalar(String::new()))
            }
        }

        deserializer.deserialize_any(ChoiceVisitor)
    }
}

/// Limits far above any real menu (a municipality's has a few hundred nodes) and far below what hurts.
fn options(duplicate_keys: DuplicateKeyPolicy) -> Options {
    let mut budget = Budget::default();
    budget.max_events = 200_000;
    budget.max_nodes = 50_000;
    budget.max_aliases = 1_000;
    budget.max_anchors = 1_000;
    budget.max_depth = 24;
    budget.max_documents = 1;
    budget.max_total_scalar_bytes = MAX_MENU_BYTES;
    budget.max_recorded_anchor_events = 50_000;
    budget.max_recorded_anchor_bytes = MAX_MENU_BYTES;
    let mut options = Options::default();
    options.budget = Some(budget);
    options.alias_limits.max_total_replayed_events = 50_000;
    options.alias_limits.max_replay_stack_depth = 16;
    // Positions are all we need from an error; the snippet would copy parts of the file into it.
    options.with_snippet = false;
    options.duplicate_keys = duplicate_keys;
    options
}

/// Parses the menu file's text into its raw shape, reporting every unknown and repeated key; None if it could not
/// (after a syntax or type error the rest of the document cannot be trusted, so that is one error).
pub(crate) fn parse(source: &str, report: &mut Report) -> Option<RawFile> {
    if source.len() > MAX_MENU_BYTES {
        report.error(
            Pos::FILE,
            format!(
                "menu file is too large ({} bytes, at most {MAX_MENU_BYTES})",
                source.len()
            ),
            "a menu is a few kilobytes of YAML; check that this is the right file",
        );
        return None;
    }
    if source.trim().is_empty() {
        report.error(
            Pos::FILE,
            "menu file is empty",
            "start from the shipped menus/kommunsupport.yaml",
        );
        return None;
    }
    if !unquoted_special_keys(source, report) {
        return None;
    }
    // The whole document goes through the budget first, untyped, so a hostile file (alias bomb, deep nesting) is
    // refused as such wherever it hides; the typed pass below would stop at the first type mismatch instead and
    // send the admin after the wrong problem. The same pass finds every unknown and repeated key, which the typed
    // pass then passes over (the first copy of a key wins), so the rest of the file is still checked. A second
    // parse of a few kilobytes costs nothing.
    match serde_saphyr::from_str_with_options::<KeyTree>(
        source,
        options(DuplicateKeyPolicy::PassThrough),
    ) {
        Ok(tree) => check_keys(source, &tree, Shape::File, report),
        Err(error) => {
            report_parse_error(&error, report);
            return None;
        }
    }
    match serde_saphyr::from_str_with_options::<RawFile>(
        source,
        options(DuplicateKeyPolicy::FirstWins),
    ) {
        Ok(file) => Some(file),
        Err(error) => {
            report_parse_error(&error, report);
            None
        }
    }
}

/// `*:` and `#:` are the two keys an admin cannot write bare: YAML reads `*` as an alias (a confusing syntax error)
/// and `#` as a comment (the option silently vanishes). Caught on the raw lines, before YAML gets to them.
/// Returns whether the file is free of them.
fn unquoted_special_keys(source: &str, report: &mut Report) -> bool {
    let mut clean = true;
    for (index, line) in source.lines().enumerate() {
        let indent = line.len() - line.trim_start().len();
        let rest = &line[indent..];
        let Some(key @ ('*' | '#')) = rest.chars().next() else {
            continue;
        };
        if !rest[1..].trim_start().starts_with(':') {
            continue;
        }
        clean = false;
        report.error(
            Pos {
                line: index + 1,
                column: line[..indent].chars().count() + 1,
            },
            format!("the key {key} must be quoted"),
            format!(
                "write \"{key}\": ... ; unquoted, YAML reads {key} as {}",
                if key == '*' {
                    "an alias"
                } else {
                    "the start of a comment"
                }
            ),
        );
    }
    clean
}

fn report_parse_error(error: &serde_saphyr::Error, report: &mut Report) {
    use serde_saphyr::Error as E;

    let mut inner = error.without_snippet();
    while let E::AliasError { error, .. } = inner {
        inner = error.without_snippet();
    }
    let pos = error
        .location()
        .or_else(|| inner.location())
        .map(|location| Pos::of(&location))
        .unwrap_or(Pos::FILE);
    match inner {
        E::DuplicateMappingKey { key, .. } => {
            let key = key.as_deref().unwrap_or("this key");
            report.error(
                pos,
                format!("'{key}' is given twice in the same mapping"),
                "keep one of them; YAML does not merge repeated keys",
            );
        }
        E::UnknownAnchor { .. } => report.error(
            pos,
            "'*' starts a YAML alias here, and no anchor of that name exists",
            "to mean the star key, quote it: \"*\": { repeat: true } (the same for \"#\")",
        ),
        E::Budget {
            breach: BudgetBreach::Documents { .. },
            ..
        }
        | E::MultipleDocuments { .. } => report.error(
            pos,
            "the menu file holds more than one YAML document",
            "remove the `---` line: one file, one menu",
        ),
        E::Unexpected { expected, .. } => {
            let message = match *expected {
                "mapping start" => "a mapping (`key: value` lines) belongs here".to_owned(),
                "string scalar" => {
                    "a single value belongs here, not a list or a mapping".to_owned()
                }
                other => format!("expected {other}"),
            };
            report.error(
                pos,
                message,
                "compare with the shipped menus/kommunsupport.yaml; indent with spaces",
            );
        }
        E::Budget { .. }
        | E::AliasReplayLimitExceeded { .. }
        | E::AliasExpansionLimitExceeded { .. }
        | E::AliasReplayStackDepthExceeded { .. }
        | E::AliasReplayCounterOverflow { .. } => report.error(
            pos,
            format!("menu file refused: {}", message_text(inner)),
            "a menu needs neither deep nesting nor many aliases; write the options out plainly",
        ),
        E::Eof { .. } => report.error(
            pos,
            "the menu file ends in the middle of a value",
            "close the open quote or bracket",
        ),
        _ => report.error(
            pos,
            message_text(inner),
            "check the YAML here: indent with spaces (not tabs), put a space after each ':', \
             quote \"*\" and \"#\" keys",
        ),
    }
}

fn message_text(error: &serde_saphyr::Error) -> String {
    // Calling the formatter directly skips the renderer's sanitising, so strip control characters here: the text
    // ends up on a terminal.
    serde_saphyr::DefaultMessageFormatter
        .format_message(error)
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// The candidate closest to `word` by edit distance, if it is close enough to be a plausible typo.
pub(crate) fn closest<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let limit = (word.chars().count() / 3).max(1);
    candidates
        .into_iter()
        .map(|candidate| (edit_distance(word, candidate), candidate))
        .filter(|(distance, _)| *distance <= limit)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, candidate)| candidate)
}

/// Levenshtein distance in characters.
pub(crate) fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    let mut current = vec![0; b.len() + 1];
    for (i, ca) in a.chars().enumerate() {
        current[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != *cb);
            current[j + 1] = substitution.min(previous[j + 1] + 1).min(current[j] + 1);
        }
        std::mem::swap(&mut previous, &mut current);
    }
    previous[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_distance_counts_single_edits() {
        assert_eq!(edit_distance("itt", "it"), 1);
        assert_eq!(edit_distance("kundtjänst", "kundtjanst"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("main-menu", "main-menu"), 0);
        assert_eq!(edit_distance("welcom", "welcome"), 1);
        assert_eq!(edit_distance("abc", "cab"), 2);
    }

    #[test]
    fn closest_ignores_far_candidates() {
        assert_eq!(closest("promt", ["prompt", "options"]), Some("prompt"));
        assert_eq!(closest("xyz", ["prompt", "options"]), None);
    }

    #[test]
    fn integer_keys_arrive_as_their_digits() {
        let mut report = Report::new("m.yaml");
        let file = parse(
            "menu:\n  prompt: p\n  options:\n    1: { repeat: true }\n    \"#\": { back: true }\n",
            &mut report,
        )
        .unwrap();
        assert!(report.is_empty());
        let options = file.menu.unwrap().value.options.unwrap().value.0;
        let keys: Vec<&str> = options.iter().map(|(k, _)| k.value.as_str()).collect();
        assert_eq!(keys, ["1", "#"]);
        assert_eq!(
            (
                options[1].0.referenced.line(),
                options[1].0.referenced.column()
            ),
            (5, 5)
        );
    }
}
