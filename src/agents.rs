//! The agents file: who may REGISTER as an agent, with HA1 digests (never passwords), and the registrar's few
//! knobs. Admin-owned YAML beside the menu; loading reports every problem with file:line:col and a fix, like the
//! menu does. `knappval agents passwd` creates or updates one agent in place ([`set_password`]).
//!
//! ```yaml
//! realm: knappval            # optional; HA1 = H(id:realm:password), so changing it means new passwords
//! algorithms: [md5]          # optional; [sha-256, md5] offers both, preferred first
//! agents:
//!   it-anna: { name: Anna Berg, ha1_md5: <32 hex>, ha1_sha256: <64 hex> }
//! ```
//!
//! Owns the file's shape, its validation and its rewriting; the registrar (`crate::sip::registrar`) owns what a
//! REGISTER does with it.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, MapAccess, Visitor};
use serde_saphyr::Spanned;

use crate::menu::{MenuError, MenuErrors, parse_duration};
use crate::sip::digest::{self, Algorithm};

/// The digest realm when the file names none.
pub const DEFAULT_REALM: &str = "knappval";
/// Registrations shorter than this are answered 423 Interval Too Brief (RFC 3261 §10.3 step 7).
pub const DEFAULT_MIN_EXPIRES: Duration = Duration::from_secs(60);
/// Registrations longer than this are shortened to it.
pub const DEFAULT_MAX_EXPIRES: Duration = Duration::from_secs(3600);
/// How long a nonce may be used; after that the phone is told `stale=true` and retries with a new one.
pub const DEFAULT_NONCE_LIFETIME: Duration = Duration::from_secs(300);

/// Thousands of agents are a few hundred kilobytes; anything larger is a mistake and is refused before parsing.
const MAX_FILE_BYTES: u64 = 16 * 1024 * 1024;

const PASSWD_HELP: &str =
    "set it with: knappval agents passwd --agents FILE ID (the password on stdin)";

/// The loaded agents file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Agents {
    pub realm: String,
    /// The challenges a 401 carries, one per algorithm, preferred first.
    pub algorithms: Vec<Algorithm>,
    pub min_expires: Duration,
    pub max_expires: Duration,
    pub nonce_lifetime: Duration,
    /// By agent id (the user part of the address the agent registers).
    pub agents: BTreeMap<String, Agent>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Agent {
    pub name: Option<String>,
    /// HA1 in lowercase hex.
    pub ha1_md5: Option<String>,
    pub ha1_sha256: Option<String>,
}

impl Agent {
    pub fn ha1(&self, algorithm: Algorithm) -> Option<&str> {
        match algorithm {
            Algorithm::Md5 => self.ha1_md5.as_deref(),
            Algorithm::Sha256 => self.ha1_sha256.as_deref(),
        }
    }
}

impl Agents {
    /// Whether `id` is an agent in the file (`check` reports queue members that are not).
    pub fn knows(&self, id: &str) -> bool {
        self.agents.contains_key(id)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    realm: Option<Spanned<String>>,
    algorithms: Option<Spanned<Vec<Spanned<String>>>>,
    min_expires: Option<Spanned<String>>,
    max_expires: Option<Spanned<String>>,
    nonce_lifetime: Option<Spanned<String>>,
    agents: Option<Spanned<AgentMap>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAgent {
    name: Option<Spanned<String>>,
    ha1_md5: Option<Spanned<String>>,
    ha1_sha256: Option<Spanned<String>>,
}

/// The agents as written: keys with their positions, in file order (serde-saphyr refuses repeated keys).
#[derive(Debug, Default)]
struct AgentMap(Vec<(Spanned<String>, Spanned<Option<RawAgent>>)>);

impl<'de> Deserialize<'de> for AgentMap {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MapVisitor;
        impl<'de> Visitor<'de> for MapVisitor {
            type Value = AgentMap;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a mapping of agent ids")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<AgentMap, A::Error> {
                let mut entries = Vec::new();
                while let Some(key) = map.next_key()? {
                    entries.push((key, map.next_value()?));
                }
                Ok(AgentMap(entries))
            }
            // `agents:` with nothing under it yet.
            fn visit_unit<E: de::Error>(self) -> Result<AgentMap, E> {
                Ok(AgentMap::default())
            }
        }
        deserializer.deserialize_map(MapVisitor)
    }
}

/// Where each agent's key is in the text, for rewriting one agent in place: (id, line, column), 1-based.
type KeyPositions = Vec<(String, usize, usize)>;

struct Errors {
    file: String,
    errors: Vec<MenuError>,
}

impl Errors {
    fn at<T>(&mut self, spanned: &Spanned<T>, message: impl Into<String>, help: impl Into<String>) {
        let (line, column) = position(&spanned.referenced);
        self.push(line, column, message, help);
    }

    fn push(
        &mut self,
        line: usize,
        column: usize,
        message: impl Into<String>,
        help: impl Into<String>,
    ) {
        self.errors.push(MenuError {
            file: self.file.clone(),
            line,
            column,
            message: message.into(),
            help: help.into(),
        });
    }

    fn finish<T>(mut self, value: T) -> Result<T, MenuErrors> {
        if self.errors.is_empty() {
            return Ok(value);
        }
        self.errors.sort_by_key(|e| (e.line, e.column));
        Err(MenuErrors(self.errors))
    }
}

fn position(location: &serde_saphyr::Location) -> (usize, usize) {
    let line = usize::try_from(location.line()).unwrap_or(1).max(1);
    let column = usize::try_from(location.column()).unwrap_or(1).max(1);
    (line, column)
}

fn file_error(file: &str, message: String, help: &str) -> MenuErrors {
    MenuErrors(vec![MenuError {
        file: file.to_owned(),
        line: 1,
        column: 1,
        message,
        help: help.to_owned(),
    }])
}

/// Loads and validates the agents file. `digest` (the `--digest` flag) overrides the file's `algorithms:`;
/// every agent must have an HA1 for each algorithm offered.
pub fn load(path: &Path, digest: Option<&[Algorithm]>) -> Result<Agents, MenuErrors> {
    let label = path.display().to_string();
    let source = read(path).map_err(|(message, help)| file_error(&label, message, help))?;
    load_str(&source, &label, digest).map(|(agents, _)| agents)
}

fn read(path: &Path) -> Result<String, (String, &'static str)> {
    if let Ok(metadata) = std::fs::metadata(path)
        && metadata.len() > MAX_FILE_BYTES
    {
        return Err((
            format!(
                "agents file is too large ({} bytes, at most {MAX_FILE_BYTES})",
                metadata.len()
            ),
            "check that --agents names the agents file",
        ));
    }
    let bytes = std::fs::read(path).map_err(|e| {
        (
            format!("cannot read the agents file: {e}"),
            "check the path given with --agents and the file's permissions; \
             knappval agents passwd creates it",
        )
    })?;
    String::from_utf8(bytes).map_err(|e| {
        (
            format!(
                "the agents file is not UTF-8 text (invalid byte at offset {})",
                e.utf8_error().valid_up_to()
            ),
            "save the file as UTF-8",
        )
    })
}

/// Like [`load`], for text in memory; also returns where each agent's key is.
fn load_str(
    source: &str,
    label: &str,
    digest: Option<&[Algorithm]>,
) -> Result<(Agents, KeyPositions), MenuErrors> {
    let mut errors = Errors {
        file: label.to_owned(),
        errors: Vec::new(),
    };
    let raw = if source.trim().is_empty() {
        // An empty file is a file with no agents yet.
        RawFile {
            realm: None,
            algorithms: None,
            min_expires: None,
            max_expires: None,
            nonce_lifetime: None,
            agents: None,
        }
    } else {
        match serde_saphyr::from_str::<RawFile>(source) {
            Ok(raw) => raw,
            Err(error) => {
                let (line, column) = error.location().map(|l| position(&l)).unwrap_or((1, 1));
                let (text, help) = parse_error_text(&error);
                errors.push(line, column, text, help);
                return Err(errors.finish(()).unwrap_err());
            }
        }
    };

    let realm = match &raw.realm {
        None => DEFAULT_REALM.to_owned(),
        Some(realm) => {
            if realm.value.is_empty()
                || realm
                    .value
                    .chars()
                    .any(|c| c == '"' || c == '\\' || c.is_control())
            {
                errors.at(
                    realm,
                    format!("realm {:?} cannot go in a challenge", realm.value),
                    "use plain text without quotes or backslashes, e.g. realm: knappval",
                );
            }
            realm.value.clone()
        }
    };
    let file_algorithms = match &raw.algorithms {
        None => None,
        Some(list) => {
            let text: Vec<&str> = list.value.iter().map(|a| a.value.as_str()).collect();
            match digest::parse_algorithms(&text.join(",")) {
                Ok(algorithms) => Some(algorithms),
                Err(e) => {
                    errors.at(list, e, "write e.g. algorithms: [sha-256, md5] or [md5]");
                    None
                }
            }
        }
    };
    let algorithms = digest
        .map(<[Algorithm]>::to_vec)
        .or(file_algorithms)
        .unwrap_or_else(|| vec![Algorithm::Md5]);
    let mut duration = |raw: &Option<Spanned<String>>, default: Duration| match raw {
        None => default,
        Some(text) => match parse_duration(&text.value) {
            Ok(d) if d >= Duration::from_secs(1) => d,
            Ok(_) => {
                errors.at(
                    text,
                    format!("'{}' is shorter than a second", text.value),
                    "registrar times are whole seconds: write e.g. 60s",
                );
                default
            }
            Err(e) => {
                errors.at(text, e.message, e.help);
                default
            }
        },
    };
    let min_expires = duration(&raw.min_expires, DEFAULT_MIN_EXPIRES);
    let max_expires = duration(&raw.max_expires, DEFAULT_MAX_EXPIRES);
    let nonce_lifetime = duration(&raw.nonce_lifetime, DEFAULT_NONCE_LIFETIME);
    if let Some(max) = &raw.max_expires
        && max_expires < min_expires
    {
        errors.at(
            max,
            "max_expires is shorter than min_expires",
            "make max_expires at least min_expires (defaults 60s and 1h)",
        );
    }

    let mut agents = BTreeMap::new();
    let mut keys = Vec::new();
    let entries = raw.agents.map(|a| a.value.0).unwrap_or_default();
    for (key, value) in entries {
        let id = key.value.clone();
        let (line, column) = position(&key.referenced);
        if !is_valid_agent_id(&id) {
            errors.at(
                &key,
                format!("'{id}' is not a valid agent id"),
                "an agent id is the user part of the phone's SIP address: letters, digits, '-', '_' and '.' \
                 (e.g. it-anna)",
            );
            continue;
        }
        keys.push((id.clone(), line, column));
        let raw_agent = value.value.unwrap_or(RawAgent {
            name: None,
            ha1_md5: None,
            ha1_sha256: None,
        });
        let mut ha1 = |field: &Option<Spanned<String>>, algorithm: Algorithm| {
            let text = field.as_ref()?;
            let hex = text.value.trim().to_ascii_lowercase();
            if hex.len() != algorithm.hex_len() || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                errors.at(
                    text,
                    format!(
                        "agent '{id}': the {algorithm} HA1 must be {} hex digits",
                        algorithm.hex_len()
                    ),
                    PASSWD_HELP,
                );
                return None;
            }
            Some(hex)
        };
        let agent = Agent {
            name: raw_agent.name.map(|n| n.value),
            ha1_md5: ha1(&raw_agent.ha1_md5, Algorithm::Md5),
            ha1_sha256: ha1(&raw_agent.ha1_sha256, Algorithm::Sha256),
        };
        for algorithm in &algorithms {
            let present = match algorithm {
                Algorithm::Md5 => raw_agent.ha1_md5.is_some(),
                Algorithm::Sha256 => raw_agent.ha1_sha256.is_some(),
            };
            if !present {
                let field = match algorithm {
                    Algorithm::Md5 => "ha1_md5",
                    Algorithm::Sha256 => "ha1_sha256",
                };
                errors.at(
                    &key,
                    format!("agent '{id}' has no {field}, and {algorithm} is offered"),
                    format!("{PASSWD_HELP}; it writes both digests"),
                );
            }
        }
        agents.insert(id, agent);
    }
    errors.finish((
        Agents {
            realm,
            algorithms,
            min_expires,
            max_expires,
            nonce_lifetime,
            agents,
        },
        keys,
    ))
}

/// An admin's words for what serde-saphyr found, and the fix.
fn parse_error_text(error: &serde_saphyr::Error) -> (String, String) {
    use serde_saphyr::Error as E;
    match error.without_snippet() {
        E::SerdeUnknownField { field, .. } if field.contains("password") => (
            format!("unknown key '{field}'"),
            format!("the agents file holds HA1 digests, never passwords; {PASSWD_HELP}"),
        ),
        E::SerdeUnknownField {
            field, expected, ..
        } => (
            format!("unknown key '{field}'"),
            format!("allowed here: {}", expected.join(", ")),
        ),
        E::DuplicateMappingKey { key, .. } => (
            format!(
                "'{}' is given twice in the same mapping",
                key.as_deref().unwrap_or("this key")
            ),
            "keep one of them".to_owned(),
        ),
        other => (
            first_line(&other.to_string()),
            "compare with the example in the README: `agents:` with one `id: { ha1_md5: ..., ha1_sha256: ... }` \
             per line; indent with spaces"
                .to_owned(),
        ),
    }
}

fn first_line(text: &str) -> String {
    text.lines()
        .next()
        .unwrap_or("unreadable YAML")
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// Letters, digits, `-`, `_`, `.`: safe as a SIP user part and as a YAML key without quotes.
pub fn is_valid_agent_id(id: &str) -> bool {
    id.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && id.len() <= 64
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

#[derive(Debug, thiserror::Error)]
pub enum PasswdError {
    #[error("{0}")]
    Invalid(MenuErrors),
    #[error("'{0}' is not a valid agent id: use letters, digits, '-', '_' and '.' (e.g. it-anna)")]
    BadId(String),
    #[error("the password is empty: give it on the first line of standard input")]
    EmptyPassword,
    #[error(
        "{file}: cannot add the agent in place (agents written as a flow mapping?): write `agents:` as one \
         agent per line, `  id: {{ ... }}`, and run again"
    )]
    Layout { file: String },
    #[error("{file}: {source}")]
    Io {
        file: String,
        source: std::io::Error,
    },
}

/// What [`set_password`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PasswdOutcome {
    CreatedFile,
    AddedAgent,
    UpdatedAgent,
}

/// Sets agent `id`'s password: writes its HA1 for MD5 and SHA-256 under the file's realm, keeping every other
/// line of the file (other agents, comments) as it was. Creates the file (mode 0600) when it does not exist.
/// The write is atomic (a temporary file renamed over the old one) and keeps the old file's mode.
pub fn set_password(
    path: &Path,
    id: &str,
    password: &str,
    name: Option<&str>,
) -> Result<PasswdOutcome, PasswdError> {
    if !is_valid_agent_id(id) {
        return Err(PasswdError::BadId(id.to_owned()));
    }
    if password.is_empty() {
        return Err(PasswdError::EmptyPassword);
    }
    let label = path.display().to_string();
    let io = |source| PasswdError::Io {
        file: label.clone(),
        source,
    };
    let existing =
        match std::fs::metadata(path) {
            Ok(_) => Some(read(path).map_err(|(message, help)| {
                PasswdError::Invalid(file_error(&label, message, help))
            })?),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(io(e)),
        };
    let source = existing.clone().unwrap_or_else(|| {
        format!(
            "# knappval agents: who may REGISTER, with HA1 digests (never passwords).\n\
             # Add an agent or change a password: knappval agents passwd --agents FILE ID (password on stdin)\n\
             realm: {DEFAULT_REALM}\nagents:\n"
        )
    });
    // Any algorithm: the file's own check of offered algorithms does not matter for rewriting it.
    let lenient = Some(&[][..]);
    let (agents, keys) = load_str(&source, &label, lenient).map_err(PasswdError::Invalid)?;
    let old = agents.agents.get(id);
    let name = name
        .map(str::to_owned)
        .or_else(|| old.and_then(|a| a.name.clone()));
    let ha1_md5 = digest::ha1(Algorithm::Md5, id, &agents.realm, password);
    let ha1_sha256 = digest::ha1(Algorithm::Sha256, id, &agents.realm, password);
    let mut entry = format!("{id}: {{ ");
    if let Some(name) = &name {
        // A JSON string is a valid YAML double-quoted scalar.
        entry.push_str(&format!(
            "name: {}, ",
            serde_json::to_string(name).unwrap_or_default()
        ));
    }
    entry.push_str(&format!("ha1_md5: {ha1_md5}, ha1_sha256: {ha1_sha256} }}"));
    let updated = upsert_entry(&source, &keys, id, &entry).ok_or_else(|| PasswdError::Layout {
        file: label.clone(),
    })?;
    // Written only if it reads back as intended: the other agents unchanged, this one with its new digests.
    let (reread, _) = load_str(&updated, &label, lenient).map_err(|_| PasswdError::Layout {
        file: label.clone(),
    })?;
    let mut expected = agents.agents.clone();
    expected.insert(
        id.to_owned(),
        Agent {
            name,
            ha1_md5: Some(ha1_md5),
            ha1_sha256: Some(ha1_sha256),
        },
    );
    if reread.agents != expected || reread.realm != agents.realm {
        return Err(PasswdError::Layout { file: label });
    }
    write_atomically(path, updated.as_bytes()).map_err(io)?;
    Ok(match (existing, old) {
        (None, _) => PasswdOutcome::CreatedFile,
        (Some(_), None) => PasswdOutcome::AddedAgent,
        (Some(_), Some(_)) => PasswdOutcome::UpdatedAgent,
    })
}

fn indent_of(line: &str) -> usize {
    line.len() - line.trim_start_matches(' ').len()
}

/// Replaces agent `id`'s entry (its key line and the lines indented under it) with the one-line `entry`, or adds
/// `entry` after the last agent. `None` when the file's layout is not one agent key per line.
fn upsert_entry(source: &str, keys: &KeyPositions, id: &str, entry: &str) -> Option<String> {
    let mut lines: Vec<String> = source.lines().map(str::to_owned).collect();
    // The key must start its own line (block style), or the entry has no lines of its own to replace.
    let block_key = |line: usize, column: usize| {
        lines
            .get(line - 1)
            .and_then(|text| text.get(..column - 1))
            .is_some_and(|before| before.trim().is_empty())
    };
    // Lines after `line` that belong to the entry: more indented than its key (blank lines and comments
    // in between count only when more of the entry follows them).
    let entry_end = |line: usize, indent: usize| {
        let mut end = line;
        for (index, text) in lines.iter().enumerate().skip(line) {
            let trimmed = text.trim();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            if indent_of(text) > indent {
                end = index + 1;
            } else {
                break;
            }
        }
        end
    };
    if let Some((_, line, column)) = keys.iter().find(|(key, _, _)| key == id) {
        if !block_key(*line, *column) {
            return None;
        }
        let end = entry_end(*line, column - 1);
        let indented = format!("{}{entry}", " ".repeat(column - 1));
        lines.splice(line - 1..end, [indented]);
    } else if let Some((_, line, column)) = keys.iter().max_by_key(|(_, line, _)| *line) {
        if !block_key(*line, *column) {
            return None;
        }
        let end = entry_end(*line, column - 1);
        lines.insert(end, format!("{}{entry}", " ".repeat(column - 1)));
    } else if let Some(index) = lines.iter().position(|l| {
        let code = l.split('#').next().unwrap_or("").trim_end();
        code == "agents:" || code == "agents: {}"
    }) {
        lines[index] = "agents:".to_owned();
        lines.insert(index + 1, format!("  {entry}"));
    } else if !lines
        .iter()
        .any(|l| l.starts_with("agents:") || l.starts_with("agents "))
    {
        lines.push("agents:".to_owned());
        lines.push(format!("  {entry}"));
    } else {
        return None;
    }
    let mut text = lines.join("\n");
    text.push('\n');
    Some(text)
}

/// Writes `bytes` to a temporary file beside `path`, then renames it over `path`: a reader (or a crash) sees the
/// old file or the new one, never half of one. A new file gets mode 0600 (it holds credentials' digests); an
/// existing file keeps its mode.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "agents.yaml".into());
    let temp = dir.join(format!(".{file_name}.{}.tmp", std::process::id()));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let result = (|| {
        let mut file = options.open(&temp)?;
        #[cfg(unix)]
        if let Ok(old) = std::fs::metadata(path) {
            file.set_permissions(old.permissions())?;
        }
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&temp, path)?;
        if let Ok(dir) = std::fs::File::open(&dir) {
            // The rename itself survives a power cut only once the directory is synced.
            let _ = dir.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    const MD5: &str = "0123456789abcdef0123456789abcdef";
    const SHA: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn parse(source: &str, digest: Option<&[Algorithm]>) -> Result<Agents, MenuErrors> {
        load_str(source, "agents.yaml", digest).map(|(agents, _)| agents)
    }

    #[test]
    fn defaults_and_a_full_file() {
        let agents = parse(
            &format!("agents:\n  it-anna: {{ name: Anna Berg, ha1_md5: {MD5} }}\n"),
            None,
        )
        .unwrap();
        assert_eq!(agents.realm, "knappval");
        assert_eq!(agents.algorithms, [Algorithm::Md5]);
        assert_eq!(agents.min_expires, Duration::from_secs(60));
        assert_eq!(agents.max_expires, Duration::from_secs(3600));
        assert!(agents.knows("it-anna"));
        assert!(!agents.knows("it-bo"));
        assert_eq!(agents.agents["it-anna"].name.as_deref(), Some("Anna Berg"));

        let agents = parse(
            &format!(
                "realm: kommun.example\nalgorithms: [sha-256, md5]\nmin_expires: 1s\nmax_expires: 10m\n\
                 nonce_lifetime: 30s\nagents:\n  it-bo:\n    ha1_md5: {}\n    ha1_sha256: {SHA}\n",
                MD5.to_uppercase()
            ),
            None,
        )
        .unwrap();
        assert_eq!(agents.realm, "kommun.example");
        assert_eq!(agents.algorithms, [Algorithm::Sha256, Algorithm::Md5]);
        assert_eq!(agents.min_expires, Duration::from_secs(1));
        assert_eq!(agents.max_expires, Duration::from_secs(600));
        assert_eq!(agents.nonce_lifetime, Duration::from_secs(30));
        assert_eq!(
            agents.agents["it-bo"].ha1(Algorithm::Md5),
            Some(MD5),
            "HA1 kept in lowercase"
        );
    }

    #[test]
    fn errors_point_at_the_line_and_say_what_to_do() {
        let errors = parse(
            &format!(
                "algorithms: [md5]\nagents:\n  it-anna: {{ ha1_md5: abc }}\n  \
                 \"bad id\": {{ ha1_md5: {MD5} }}\n  it-bo: {{ ha1_sha256: {SHA} }}\n"
            ),
            None,
        )
        .unwrap_err()
        .to_string();
        assert!(
            errors.contains(
                "agents.yaml:3:23: error: agent 'it-anna': the MD5 HA1 must be 32 hex digits"
            ),
            "{errors}"
        );
        assert!(
            errors.contains("agents.yaml:4:3: error: 'bad id' is not a valid agent id"),
            "{errors}"
        );
        assert!(
            errors.contains(
                "agents.yaml:5:3: error: agent 'it-bo' has no ha1_md5, and MD5 is offered"
            ),
            "{errors}"
        );
        assert!(errors.contains("knappval agents passwd"), "{errors}");
        let errors = parse(
            &format!("agents:\n  it-anna: {{ ha1_md5: {MD5} }}\n  it-anna: {{ ha1_md5: {MD5} }}\n"),
            None,
        )
        .unwrap_err()
        .to_string();
        assert!(
            errors.contains("agents.yaml:3:3: error: 'it-anna' is given twice"),
            "{errors}"
        );
    }

    #[test]
    fn a_clear_password_is_refused_with_the_way_to_an_ha1() {
        let errors = parse("agents:\n  it-anna: { password: hemligt }\n", None)
            .unwrap_err()
            .to_string();
        assert!(errors.starts_with("agents.yaml:2:"), "{errors}");
        assert!(errors.contains("never passwords"), "{errors}");
    }

    #[test]
    fn the_digest_flag_overrides_the_file_and_needs_the_digests() {
        let source = format!("algorithms: [md5]\nagents:\n  it-anna: {{ ha1_md5: {MD5} }}\n");
        let errors = parse(&source, Some(&[Algorithm::Sha256, Algorithm::Md5]))
            .unwrap_err()
            .to_string();
        assert!(
            errors.contains("has no ha1_sha256, and SHA-256 is offered"),
            "{errors}"
        );
        let errors = parse("algorithms: [sha1]\n", None).unwrap_err().to_string();
        assert!(errors.contains("agents.yaml:1:13"), "{errors}");
    }

    #[test]
    fn passwd_adds_and_replaces_one_entry_and_keeps_the_rest() {
        let source = format!(
            "# the service centre's agents\nrealm: knappval\nagents:\n  it-anna:   # Anna\n    name: Anna Berg\n    \
             ha1_md5: {MD5}\n\n  # Bo works mornings\n  it-bo: {{ ha1_md5: {MD5} }}\n# end\n"
        );
        let (_, keys) = load_str(&source, "a.yaml", Some(&[])).unwrap();
        let replaced =
            upsert_entry(&source, &keys, "it-anna", "it-anna: { ha1_md5: new }").unwrap();
        assert_eq!(
            replaced,
            format!(
                "# the service centre's agents\nrealm: knappval\nagents:\n  it-anna: {{ ha1_md5: new }}\n\n  \
                 # Bo works mornings\n  it-bo: {{ ha1_md5: {MD5} }}\n# end\n"
            )
        );
        let added = upsert_entry(&source, &keys, "it-cy", "it-cy: { ha1_md5: c }").unwrap();
        assert!(
            added.ends_with(&format!(
                "  it-bo: {{ ha1_md5: {MD5} }}\n  it-cy: {{ ha1_md5: c }}\n# end\n"
            )),
            "{added}"
        );
        let flow = "agents: { it-anna: { ha1_md5: x } }\n";
        let keys = vec![("it-anna".to_owned(), 1, 11)];
        assert_eq!(upsert_entry(flow, &keys, "it-bo", "it-bo: {}"), None);
        assert_eq!(
            upsert_entry("realm: r\n", &Vec::new(), "a", "a: {}").as_deref(),
            Some("realm: r\nagents:\n  a: {}\n")
        );
    }
}
