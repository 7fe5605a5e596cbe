//! What knappval keeps about a caller: the caller's number as a keyed pseudonym, not as the number.
//!
//! Owns the caller key (a file the admin owns, created at first start with mode 0600), the pseudonym (an
//! HMAC-SHA256 of the normalised number under that key) and the admin's choice to keep numbers instead
//! (`--caller-numbers keep`, for a service that calls back). Pure apart from reading and creating the key file:
//! the call task asks [`CallerNumbers::stored`] once per call and uses the answer for everything it writes or
//! logs; the live call still carries the real number to the function.

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::sip::digest::hmac_sha256;

/// Hex digits of the HMAC kept in a pseudonym: 20 (80 bits). Repeat callers are counted by pseudonym, so two
/// callers must not share one: among ten million different numbers the chance that any two collide is about
/// 4 in 10^11. The protection is the key, not the length: phone numbers are few enough (about 10^10) that
/// anyone holding the key can recompute every pseudonym, and no one without it can recompute any.
pub const PSEUDONYM_HEX: usize = 20;

/// Marks a stored caller as a pseudonym (`p:3f9a...`), so that nobody takes it for a number to call back.
pub const PSEUDONYM_PREFIX: &str = "p:";

/// Bytes of a caller key; the file holds them as 64 hex digits.
const KEY_BYTES: usize = 32;

/// How the caller's number is stored, in the records, the API, exports and the logs at info level.
#[derive(Clone)]
pub enum CallerNumbers {
    /// The default: a keyed pseudonym.
    Pseudonymise(CallerKey),
    /// The number as received (`--caller-numbers keep`), for a service that calls back.
    Keep,
}

impl CallerNumbers {
    /// What is stored and logged for a caller whose number (see `sip::message::caller_identity`) is `number`.
    /// No number, or an anonymous one (RFC 3323 `anonymous`), identifies nobody and is stored as it came, so
    /// anonymous callers are not counted as one frequent caller.
    pub fn stored(&self, number: &str) -> String {
        match self {
            CallerNumbers::Keep => number.to_string(),
            CallerNumbers::Pseudonymise(_) if is_anonymous(number) => number.to_string(),
            CallerNumbers::Pseudonymise(key) => key.pseudonym(number),
        }
    }
}

fn is_anonymous(number: &str) -> bool {
    number.trim().is_empty() || number.trim().eq_ignore_ascii_case("anonymous")
}

/// The admin's choice, before any key is read: `pseudonymise` (default) or `keep`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CallerNumbersChoice {
    #[default]
    Pseudonymise,
    Keep,
}

impl std::str::FromStr for CallerNumbersChoice {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        match text.trim().to_ascii_lowercase().as_str() {
            "pseudonymise" | "pseudonymize" => Ok(CallerNumbersChoice::Pseudonymise),
            "keep" => Ok(CallerNumbersChoice::Keep),
            _ => Err(format!(
                "{text:?} is neither pseudonymise (the default: a keyed hash of the number) nor keep (the \
                 number itself, for a service that calls callers back)"
            )),
        }
    }
}

/// The secret behind the pseudonyms. Whoever has it can tell whether a given number called: keep it as private
/// as the database's backups are, and apart from them.
#[derive(Clone)]
pub struct CallerKey {
    secret: [u8; KEY_BYTES],
}

impl fmt::Debug for CallerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CallerKey(..)")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CallerKeyError {
    #[error("cannot read the caller key {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot create the caller key {path}: {source}")]
    Create {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the caller key {path} does not hold 64 hex digits; restore the original file from a backup (a new key \
         gives every caller a new pseudonym, so repeat callers before and after no longer match), or delete it \
         to have knappval create a new one"
    )]
    Malformed { path: PathBuf },
}

impl CallerKey {
    pub fn from_secret(secret: [u8; KEY_BYTES]) -> CallerKey {
        CallerKey { secret }
    }

    /// Reads the key at `path`, creating it (and its folder) with 32 random bytes and mode 0600 when there is
    /// none. Returns whether it was created.
    pub fn load_or_create(path: &Path) -> Result<(CallerKey, bool), CallerKeyError> {
        match CallerKey::load(path) {
            Err(CallerKeyError::Read { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                match CallerKey::create(path) {
                    Ok(key) => Ok((key, true)),
                    // Another process created it in between: use that one.
                    Err(CallerKeyError::Create { source, .. })
                        if source.kind() == std::io::ErrorKind::AlreadyExists =>
                    {
                        Ok((CallerKey::load(path)?, false))
                    }
                    Err(e) => Err(e),
                }
            }
            other => other.map(|key| (key, false)),
        }
    }

    /// Reads an existing key file.
    pub fn load(path: &Path) -> Result<CallerKey, CallerKeyError> {
        let text = std::fs::read_to_string(path).map_err(|source| CallerKeyError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let malformed = || CallerKeyError::Malformed {
            path: path.to_path_buf(),
        };
        let hex = text.trim();
        if hex.len() != KEY_BYTES * 2 {
            return Err(malformed());
        }
        let mut secret = [0u8; KEY_BYTES];
        for (i, byte) in secret.iter_mut().enumerate() {
            *byte = hex
                .get(2 * i..2 * i + 2)
                .and_then(|pair| u8::from_str_radix(pair, 16).ok())
                .ok_or_else(malformed)?;
        }
        warn_if_readable_by_others(path);
        Ok(CallerKey { secret })
    }

    fn create(path: &Path) -> Result<CallerKey, CallerKeyError> {
        let create_error = |source| CallerKeyError::Create {
            path: path.to_path_buf(),
            source,
        };
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(create_error)?;
        }
        let secret: [u8; KEY_BYTES] = rand::random();
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            // Created 0600 from the start: no moment in which another user could read it.
            options.mode(0o600);
        }
        let mut file = options.open(path).map_err(create_error)?;
        writeln!(file, "{}", hex(&secret)).map_err(create_error)?;
        file.sync_all().map_err(create_error)?;
        Ok(CallerKey { secret })
    }

    /// `p:` and the first [`PSEUDONYM_HEX`] hex digits of HMAC-SHA256(key, normalised number).
    pub fn pseudonym(&self, number: &str) -> String {
        let tag = hmac_sha256(&self.secret, normalise(number).as_bytes());
        let mut pseudonym = String::from(PSEUDONYM_PREFIX);
        pseudonym.push_str(&hex(&tag)[..PSEUDONYM_HEX]);
        pseudonym
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(unix)]
fn warn_if_readable_by_others(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path) {
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            tracing::warn!(
                file = %path.display(),
                mode = format!("{mode:o}"),
                "the caller key can be read by other users: chmod 600 it"
            );
        }
    }
}

#[cfg(not(unix))]
fn warn_if_readable_by_others(_: &Path) {}

/// The one form of a number that is hashed, so that `+46-70-123 45 67` and `+46701234567` are the same caller:
/// RFC 3966 visual separators (`-`, `.`, `(`, `)`, spaces) are removed from something that is a phone number
/// (an optional `+`, then digits, `*` and `#`). Nothing else changes: `0701234567` and `+46701234567` stay two
/// forms, because which prefix a trunk means depends on its numbering plan, which knappval does not know (a
/// trunk sends one form consistently); a SIP user name such as `anna.berg` keeps its dots.
pub fn normalise(number: &str) -> String {
    let number = number.trim();
    let is_separator = |c: char| matches!(c, '-' | '.' | '(' | ')' | ' ');
    let digits = number.strip_prefix('+').unwrap_or(number);
    let is_phone_number = digits.chars().any(|c| c.is_ascii_digit())
        && digits
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '*' | '#') || is_separator(c));
    if is_phone_number {
        number.chars().filter(|c| !is_separator(*c)).collect()
    } else {
        number.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> CallerKey {
        CallerKey::from_secret([byte; KEY_BYTES])
    }

    #[test]
    fn the_pseudonym_is_a_keyed_hash_of_the_number_alone() {
        let a = key(1).pseudonym("+46701234567");
        assert_eq!(a.len(), PSEUDONYM_PREFIX.len() + PSEUDONYM_HEX);
        assert!(a.starts_with("p:"), "{a}");
        assert!(a[2..].chars().all(|c| c.is_ascii_hexdigit()), "{a}");
        assert_eq!(a, key(1).pseudonym("+46701234567"), "stable");
        assert_eq!(
            a,
            key(1).pseudonym(" +46-70-123 45 67 "),
            "visual separators"
        );
        assert_ne!(a, key(2).pseudonym("+46701234567"), "another key");
        assert_ne!(a, key(1).pseudonym("+46701234568"), "another number");
        assert_ne!(
            a,
            key(1).pseudonym("0701234567"),
            "prefixes are not guessed"
        );
        // HMAC-SHA256 with this key and message, computed independently: Python's
        // hmac.new(bytes([1] * 32), b"+46701234567", hashlib.sha256).hexdigest()[:20]
        assert_eq!(a, "p:004a93fbe68afd3fc950");
    }

    #[test]
    fn normalising_only_touches_phone_numbers() {
        assert_eq!(normalise("+46 (0)70-123.45.67"), "+460701234567");
        assert_eq!(normalise("*31#0701"), "*31#0701");
        assert_eq!(normalise("anna.berg"), "anna.berg");
        assert_eq!(normalise("+ - ."), "+ - .", "no digit: not a number");
    }

    #[test]
    fn anonymous_and_missing_numbers_stay_as_they_are_and_keep_keeps() {
        let pseudonymise = CallerNumbers::Pseudonymise(key(1));
        assert_eq!(pseudonymise.stored(""), "");
        assert_eq!(pseudonymise.stored("Anonymous"), "Anonymous");
        assert!(pseudonymise.stored("0701234567").starts_with("p:"));
        assert_eq!(CallerNumbers::Keep.stored("0701234567"), "0701234567");
        assert_eq!(
            "KEEP".parse::<CallerNumbersChoice>(),
            Ok(CallerNumbersChoice::Keep)
        );
        assert!("hash".parse::<CallerNumbersChoice>().is_err());
    }

    #[test]
    fn the_key_file_is_created_once_with_mode_0600_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data").join("caller-key");
        let (created, was_created) = CallerKey::load_or_create(&path).unwrap();
        assert!(was_created);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{mode:o}");
        }
        let (loaded, was_created) = CallerKey::load_or_create(&path).unwrap();
        assert!(!was_created);
        assert_eq!(created.pseudonym("0701"), loaded.pseudonym("0701"));
        std::fs::write(&path, "not a key\n").unwrap();
        let err = CallerKey::load_or_create(&path).unwrap_err().to_string();
        assert!(
            err.contains("caller-key") && err.contains("64 hex digits"),
            "{err}"
        );
    }
}
