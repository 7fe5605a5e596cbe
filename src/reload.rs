//! Hot reload of the menu: the cell new calls take their menu and prompts from, the reloads that refill it
//! (SIGHUP; the menu file or one of its prompt files changing on disk), and the state `GET /api/v1/menu` reports.
//!
//! A reload loads and validates the new menu and decodes its prompts before anything changes. Only a menu that
//! loads completely replaces the one serving; an invalid one is logged with its file:line:col errors and shown
//! by the API, while the old menu keeps serving. A call clones the cell's [`ServedMenu`] once, when it arrives,
//! and runs on that menu and those prompts to its end, whatever is reloaded meanwhile.
//!
//! The watcher polls: once a second it hashes the menu file's bytes and the size and modification time of each
//! WAV in the prompts folder (and in the folders directly in it). Polling works the same for editors that write in place, editors that
//! rename a new file over the old one, and bind-mounted or network files where change notifications are
//! unreliable; a menu is a few kilobytes, so hashing it each second costs nothing. A change is loaded once the
//! files have stayed the same for one more poll, so a half-written file is not loaded; if it still fails, the
//! next change tries again (a SIGHUP always does).

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde::Serialize;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::media::prompt::PromptCache;
use crate::menu::{self, MenuErrors, model::Menu};
use crate::records::format_timestamp;

/// How often the watcher looks at the files.
pub const POLL_INTERVAL: Duration = Duration::from_secs(1);

/// A menu as calls run on it: validated, its prompts decoded, and its version.
#[derive(Debug)]
pub struct ServedMenu {
    pub menu: Arc<Menu>,
    pub prompts: Arc<PromptCache>,
    /// See [`menu_version`].
    pub version: Arc<str>,
    pub loaded_at: OffsetDateTime,
    /// The SHA-256 of the text loaded, for the watcher to tell a later change from this text.
    text_hash: [u8; 32],
}

/// The version of a menu: the first 12 hex digits of the SHA-256 of the menu file's bytes.
///
/// The menu text alone, not its prompts: the text is what admins edit, keep in version control and compare, so
/// `git hash`-like equality of the text is what they can check a record against. A re-recorded prompt with an
/// unchanged menu keeps the version.
pub fn menu_version(text: &[u8]) -> String {
    Sha256::digest(text)
        .iter()
        .take(6)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Loads, validates and decodes the menu at `menu_path` with its prompts (see [`crate::app::decode_menu`]).
pub fn load(menu_path: &Path, prompts_dir: &Path) -> Result<ServedMenu, MenuErrors> {
    let (source, label) = menu::read(menu_path)?;
    let (menu, prompts) = crate::app::decode_menu(&source, &label, prompts_dir)?;
    Ok(ServedMenu {
        menu: Arc::new(menu),
        prompts: Arc::new(prompts),
        version: menu_version(source.as_bytes()).into(),
        loaded_at: OffsetDateTime::now_utc(),
        text_hash: Sha256::digest(source.as_bytes()).into(),
    })
}

/// The menu new calls get. Each call clones the `Arc` once at its start; a reload swaps it.
#[derive(Debug)]
pub struct MenuCell {
    served: RwLock<Arc<ServedMenu>>,
}

impl MenuCell {
    pub fn new(served: ServedMenu) -> MenuCell {
        MenuCell {
            served: RwLock::new(Arc::new(served)),
        }
    }

    /// The menu serving now.
    pub fn current(&self) -> Arc<ServedMenu> {
        match self.served.read() {
            Ok(served) => served.clone(),
            // A panic while swapping an Arc cannot leave it half-written: the value is still whole.
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn replace(&self, served: ServedMenu) {
        let served = Arc::new(served);
        match self.served.write() {
            Ok(mut slot) => *slot = served,
            Err(poisoned) => *poisoned.into_inner() = served,
        }
    }
}

/// What `GET /api/v1/menu` shows: the serving menu, and the last reload's error while the file on disk is not
/// loadable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MenuStatus {
    /// The serving menu's [`menu_version`].
    pub version: String,
    /// When the serving menu was loaded (RFC 3339 UTC).
    pub loaded_at: String,
    /// The menu file, as given to `--menu`.
    pub file: String,
    /// Why the last reload was refused (every error with file:line:col and its fix); null when the last
    /// load succeeded.
    pub error: Option<String>,
    /// When that reload was tried; null with `error`.
    pub error_at: Option<String>,
}

/// Where the reloader publishes [`MenuStatus`] for the API.
#[derive(Debug, Default)]
pub struct MenuBoard {
    status: RwLock<Option<MenuStatus>>,
}

impl MenuBoard {
    pub fn publish(&self, status: MenuStatus) {
        if let Ok(mut slot) = self.status.write() {
            *slot = Some(status);
        }
    }

    /// `None` until the daemon has loaded its first menu.
    pub fn snapshot(&self) -> Option<MenuStatus> {
        self.status.read().ok().and_then(|s| s.clone())
    }
}

/// The files' state as the watcher saw it: a hash of the menu's bytes and the prompt WAVs' names, sizes and times.
pub type Fingerprint = [u8; 32];

/// Takes the menu file's and the prompts folder's fingerprint. A menu file that cannot be read counts as its
/// error text, so its coming back is a change too.
pub fn fingerprint(menu_path: &Path, prompts_dir: &Path) -> Fingerprint {
    let text_hash = match std::fs::read(menu_path) {
        Ok(bytes) => Sha256::digest(&bytes),
        Err(e) => Sha256::digest(format!("menu unreadable: {e}").as_bytes()),
    };
    fingerprint_of(text_hash.into(), prompts_dir)
}

/// The fingerprint of a loaded menu: the text it was loaded from and the prompts folder as it is now.
fn served_fingerprint(served: &ServedMenu, prompts_dir: &Path) -> Fingerprint {
    fingerprint_of(served.text_hash, prompts_dir)
}

/// Every WAV in the prompts folder and the folders directly in it, not only those the serving menu names: a
/// refused menu may be waiting for a prompt file it names that is about to be copied in.
fn fingerprint_of(text_hash: [u8; 32], prompts_dir: &Path) -> Fingerprint {
    let mut hash = Sha256::new();
    hash.update(text_hash);
    let mut wavs = Vec::new();
    let mut folders = vec![prompts_dir.to_path_buf()];
    folders.extend(
        std::fs::read_dir(prompts_dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|entry| entry.path())
            .filter(|path| path.is_dir()),
    );
    for folder in folders {
        for entry in std::fs::read_dir(&folder).into_iter().flatten().flatten() {
            let path = entry.path();
            if path
                .extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("wav"))
            {
                if let Ok(meta) = entry.metadata() {
                    let modified = meta
                        .modified()
                        .ok()
                        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                        .map_or(0, |d| d.as_nanos());
                    wavs.push((path, meta.len(), modified));
                }
            }
        }
    }
    wavs.sort();
    for (path, len, modified) in wavs {
        hash.update(path.to_string_lossy().as_bytes());
        hash.update(len.to_le_bytes());
        hash.update(modified.to_le_bytes());
    }
    hash.finalize().into()
}

/// The watcher's debounce: a changed fingerprint is loaded once it has been seen twice in a row, and a
/// fingerprint already tried (loaded or refused) is not tried again.
#[derive(Debug)]
pub struct Debounce {
    tried: Fingerprint,
    pending: Option<Fingerprint>,
}

impl Debounce {
    /// `tried`: the files as they were when the serving menu was loaded.
    pub fn new(tried: Fingerprint) -> Debounce {
        Debounce {
            tried,
            pending: None,
        }
    }

    /// The files as seen now; true when they should be loaded.
    pub fn observe(&mut self, seen: Fingerprint) -> bool {
        if seen == self.tried {
            self.pending = None;
            false
        } else if self.pending == Some(seen) {
            true
        } else {
            self.pending = Some(seen);
            false
        }
    }

    /// A load was tried on the files as `seen` (whatever its result): do not try them again.
    pub fn tried(&mut self, seen: Fingerprint) {
        self.tried = seen;
        self.pending = None;
    }
}

/// Reloads the menu into `cell` on SIGHUP and when its files change, until `stop`. Each menu that loads is
/// also sent on `menus` (the OPTIONS prober follows the functions' targets, the queue service the queues);
/// `board` shows the result.
pub struct Reloader {
    pub menu_path: PathBuf,
    pub prompts_dir: PathBuf,
    pub cell: Arc<MenuCell>,
    pub board: Arc<MenuBoard>,
    pub menus: watch::Sender<Arc<Menu>>,
}

impl Reloader {
    /// Publishes the serving menu's status (no error).
    pub fn publish_loaded(&self) {
        let served = self.cell.current();
        self.board.publish(MenuStatus {
            version: served.version.to_string(),
            loaded_at: format_timestamp(served.loaded_at),
            file: self.menu_path.display().to_string(),
            error: None,
            error_at: None,
        });
    }

    /// Reloads until `stop`; `hangups` from [`hangup_signals`].
    pub async fn run(self, mut hangups: tokio::sync::mpsc::Receiver<()>, stop: CancellationToken) {
        let prompts_dir = self.prompts_dir.clone();
        let served = self.cell.current();
        let loaded = tokio::task::spawn_blocking(move || served_fingerprint(&served, &prompts_dir))
            .await
            .unwrap_or([0; 32]);
        // Against the text the serving menu came from: a change since it was loaded is loaded at once.
        let mut debounce = Debounce::new(loaded);
        let mut poll = tokio::time::interval(POLL_INTERVAL);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let why = tokio::select! {
                _ = stop.cancelled() => return,
                Some(()) = hangups.recv() => "SIGHUP",
                _ = poll.tick() => {
                    if !debounce.observe(self.fingerprint().await) {
                        continue;
                    }
                    "the menu or a prompt file changed"
                }
            };
            let seen = self.fingerprint().await;
            // A menu that loaded is known by the text it was loaded from: a save during the load is loaded next.
            let tried = self.reload(why).await.unwrap_or(seen);
            debounce.tried(tried);
        }
    }

    async fn fingerprint(&self) -> Fingerprint {
        let (menu_path, prompts_dir) = (self.menu_path.clone(), self.prompts_dir.clone());
        tokio::task::spawn_blocking(move || fingerprint(&menu_path, &prompts_dir))
            .await
            .unwrap_or([0; 32])
    }

    /// Loads the files now; the new menu serves new calls only if it loads completely. Returns the
    /// fingerprint of the menu loaded, `None` when it was refused.
    pub async fn reload(&self, why: &str) -> Option<Fingerprint> {
        let (menu_path, prompts_dir) = (self.menu_path.clone(), self.prompts_dir.clone());
        // Decoding prompts reads and resamples files: off the async threads that carry calls.
        let loaded = tokio::task::spawn_blocking(move || {
            load(&menu_path, &prompts_dir).map(|served| {
                let seen = served_fingerprint(&served, &prompts_dir);
                (served, seen)
            })
        })
        .await;
        let file = self.menu_path.display().to_string();
        match loaded {
            Ok(Ok((served, seen))) => {
                let previous = self.cell.current().version.clone();
                info!(file = %file, why, version = %served.version, previous = %previous,
                      functions = served.menu.functions.len(), prompts = served.prompts.len(),
                      "menu reloaded: new calls get this version, calls in progress keep theirs");
                // The queue service (and the prober) first, then the calls: a call on the new menu must not
                // reach a queue the service does not know yet.
                self.menus.send_replace(served.menu.clone());
                self.cell.replace(served);
                self.publish_loaded();
                Some(seen)
            }
            Ok(Err(errors)) => {
                let served = self.cell.current();
                error!(file = %file, why, version = %served.version,
                       "menu reload refused, version {} keeps serving:\n{errors}", served.version);
                self.board.publish(MenuStatus {
                    version: served.version.to_string(),
                    loaded_at: format_timestamp(served.loaded_at),
                    file,
                    error: Some(errors.to_string()),
                    error_at: Some(format_timestamp(OffsetDateTime::now_utc())),
                });
                None
            }
            Err(e) => {
                error!(file = %file, error = %e, "menu reload did not finish; the old menu keeps serving");
                None
            }
        }
    }
}

/// SIGHUP as a stream; never yields where there is no such signal. The handler is in place when this returns:
/// call it before the daemon says it is ready, since SIGHUP's default action ends the process.
pub fn hangup_signals() -> tokio::sync::mpsc::Receiver<()> {
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::hangup()) {
            Ok(mut hangup) => {
                tokio::spawn(async move {
                    while hangup.recv().await.is_some() {
                        // Two SIGHUPs while one reload runs need one more reload, not two.
                        let _ = tx.try_send(());
                    }
                });
            }
            Err(e) => {
                warn!(error = %e, "no SIGHUP handler; the menu reloads when its file changes")
            }
        }
    }
    #[cfg(not(unix))]
    drop(tx);
    rx
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_version_is_twelve_hex_digits_of_the_text_hash() {
        let version = menu_version(b"name: x\n");
        assert_eq!(version.len(), 12);
        assert!(version.chars().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(version, menu_version(b"name: x\n"));
        assert_ne!(version, menu_version(b"name: y\n"));
        // The known SHA-256 of the empty string starts e3b0c44298fc.
        assert_eq!(menu_version(b""), "e3b0c44298fc");
    }

    #[test]
    fn a_change_loads_once_it_holds_still_and_is_tried_once() {
        let (a, b, c) = ([1; 32], [2; 32], [3; 32]);
        let mut debounce = Debounce::new(a);
        assert!(!debounce.observe(a), "unchanged");
        assert!(!debounce.observe(b), "just changed: maybe half-written");
        assert!(!debounce.observe(c), "still changing");
        assert!(debounce.observe(c), "held still for a poll");
        debounce.tried(c);
        assert!(!debounce.observe(c), "tried already, whatever came of it");
        assert!(!debounce.observe(a));
        assert!(debounce.observe(a), "back to the old text is a change too");
    }

    #[test]
    fn a_change_back_before_it_held_still_is_no_change() {
        let mut debounce = Debounce::new([1; 32]);
        assert!(!debounce.observe([2; 32]));
        assert!(!debounce.observe([1; 32]));
        assert!(!debounce.observe([1; 32]));
    }
}
