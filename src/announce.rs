//! The announcement board: the admin's announcements ("E-posten ligger nere, vi arbetar på det") that play to
//! every caller after the greeting, or to callers who choose one function, until they are taken down or expire.
//!
//! Owns the active set, its ids, expiry and its file. The board is kept in a small JSON file beside the contact
//! record database (`contacts.db` → `contacts.announcements.json`), replaced atomically (write a temporary
//! file, sync, rename, sync the folder) on every change, so announcements survive a restart. A file, not a
//! table: announcements are a handful of settings an admin changes, not call data; they do not belong in the
//! contact store's contract or its batching writer, and an admin can read the file. The database's one-daemon
//! lock covers it too, since it sits beside the database.
//!
//! Knows nothing about HTTP or calls: `api` changes the board, the call task reads [`Board::for_call`] when a
//! call is answered.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::flow::Announcements;
use crate::menu::model::{FunctionId, PromptId};
use crate::records::{format_timestamp, parse_timestamp};

/// One announcement on the board.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Announcement {
    /// Our own short id (8 hex digits), for `DELETE /api/v1/announcements/ID`.
    pub id: String,
    pub prompt: PromptId,
    /// Played only to callers who choose this function; None: to every caller, after the greeting.
    pub function: Option<FunctionId>,
    /// When it stops playing by itself; None: until taken down.
    pub until: Option<OffsetDateTime>,
    pub created_at: OffsetDateTime,
}

impl Announcement {
    fn active_at(&self, now: OffsetDateTime) -> bool {
        self.until.is_none_or(|until| until > now)
    }
}

/// The JSON shape, in the file and in the API: timestamps as the records write them.
#[derive(Debug, Serialize, Deserialize)]
pub struct AnnouncementJson {
    pub id: String,
    pub prompt: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function: Option<String>,
    pub until: Option<String>,
    pub created_at: String,
}

impl From<&Announcement> for AnnouncementJson {
    fn from(a: &Announcement) -> Self {
        AnnouncementJson {
            id: a.id.clone(),
            prompt: a.prompt.clone(),
            function: a.function.clone(),
            until: a.until.map(format_timestamp),
            created_at: format_timestamp(a.created_at),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BoardError {
    #[error(
        "cannot read the announcements file {path}: {reason}; fix or delete it (the announcements in it are lost)"
    )]
    Read { path: PathBuf, reason: String },
    #[error(
        "cannot write the announcements file {path}: {source}; make its folder writable by the user knappval runs as"
    )]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The active announcements, in creation order, shared by the API and the call tasks.
#[derive(Debug)]
pub struct Board {
    announcements: Mutex<Vec<Announcement>>,
    /// None: kept in memory only (tests, `knappval simulate`).
    file: Option<PathBuf>,
}

/// Where the board of the contact record database `db` is kept.
pub fn file_beside(db: &Path) -> PathBuf {
    db.with_extension("announcements.json")
}

impl Board {
    /// A board that is not kept anywhere.
    pub fn in_memory() -> Board {
        Board {
            announcements: Mutex::new(Vec::new()),
            file: None,
        }
    }

    /// Opens the board kept in `file` (none yet: an empty board). Announcements that expired while the daemon
    /// was down are dropped.
    pub fn open(file: &Path, now: OffsetDateTime) -> Result<Board, BoardError> {
        let read_error = |reason: String| BoardError::Read {
            path: file.to_path_buf(),
            reason,
        };
        let announcements = match std::fs::read(file) {
            Ok(bytes) => {
                let entries: Vec<AnnouncementJson> =
                    serde_json::from_slice(&bytes).map_err(|e| read_error(e.to_string()))?;
                entries
                    .into_iter()
                    .map(|e| {
                        let time = |text: &str| {
                            parse_timestamp(text)
                                .map_err(|err| read_error(format!("announcement {}: {err}", e.id)))
                        };
                        Ok(Announcement {
                            until: e.until.as_deref().map(time).transpose()?,
                            created_at: time(&e.created_at)?,
                            id: e.id,
                            prompt: e.prompt,
                            function: e.function,
                        })
                    })
                    .collect::<Result<Vec<_>, BoardError>>()?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(read_error(e.to_string())),
        };
        let board = Board {
            announcements: Mutex::new(announcements),
            file: Some(file.to_path_buf()),
        };
        board.purge(now)?;
        Ok(board)
    }

    /// Puts up an announcement and keeps the board; returns it with its new id.
    pub fn add(
        &self,
        prompt: PromptId,
        function: Option<FunctionId>,
        until: Option<OffsetDateTime>,
        now: OffsetDateTime,
    ) -> Result<Announcement, BoardError> {
        let mut announcements = self.lock();
        let id = loop {
            let id = format!("{:08x}", rand::random::<u32>());
            if !announcements.iter().any(|a| a.id == id) {
                break id;
            }
        };
        let announcement = Announcement {
            id,
            prompt,
            function,
            until,
            created_at: now,
        };
        announcements.retain(|a| a.active_at(now));
        announcements.push(announcement.clone());
        if let Err(e) = self.save(&announcements) {
            announcements.pop();
            return Err(e);
        }
        Ok(announcement)
    }

    /// Takes an announcement down; false when no active one has that id.
    pub fn remove(&self, id: &str, now: OffsetDateTime) -> Result<bool, BoardError> {
        let mut announcements = self.lock();
        let before = announcements.clone();
        announcements.retain(|a| a.active_at(now));
        let Some(index) = announcements.iter().position(|a| a.id == id) else {
            return Ok(false);
        };
        announcements.remove(index);
        if let Err(e) = self.save(&announcements) {
            *announcements = before;
            return Err(e);
        }
        Ok(true)
    }

    /// The announcements active at `now`, in creation order; expired ones are dropped from the board.
    pub fn active(&self, now: OffsetDateTime) -> Vec<Announcement> {
        if let Err(e) = self.purge(now) {
            // The expired ones are gone from memory either way; the file catches up at the next change.
            tracing::warn!(error = %e, "expired announcements not yet removed from the file");
        }
        self.lock().clone()
    }

    /// What a call answered at `now` plays.
    pub fn for_call(&self, now: OffsetDateTime) -> Announcements {
        let mut out = Announcements::default();
        for a in self.active(now) {
            match a.function {
                None => out.service.push(a.prompt),
                Some(function) => out.functions.entry(function).or_default().push(a.prompt),
            }
        }
        out
    }

    fn purge(&self, now: OffsetDateTime) -> Result<(), BoardError> {
        let mut announcements = self.lock();
        let before = announcements.len();
        announcements.retain(|a| a.active_at(now));
        if announcements.len() == before {
            return Ok(());
        }
        self.save(&announcements)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Announcement>> {
        // Every change is made whole under the lock before it is released; a panic cannot leave half of one.
        self.announcements
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Replaces the file atomically: a crash leaves the old board or the new one, never half of one.
    fn save(&self, announcements: &[Announcement]) -> Result<(), BoardError> {
        let Some(file) = &self.file else {
            return Ok(());
        };
        let write_error = |source| BoardError::Write {
            path: file.clone(),
            source,
        };
        let entries: Vec<AnnouncementJson> = announcements.iter().map(Into::into).collect();
        let json = serde_json::to_vec_pretty(&entries).map_err(|e| write_error(e.into()))?;
        let temporary = file.with_extension("json.tmp");
        {
            let mut out = std::fs::File::create(&temporary).map_err(write_error)?;
            out.write_all(&json).map_err(write_error)?;
            out.sync_all().map_err(write_error)?;
        }
        std::fs::rename(&temporary, file).map_err(write_error)?;
        if let Some(folder) = file.parent().filter(|p| !p.as_os_str().is_empty())
            && let Ok(folder) = std::fs::File::open(folder)
        {
            // The rename is durable only once the folder is synced; a failure here loses nothing yet.
            let _ = folder.sync_all();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn announcements_expire_leave_the_list_and_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let file = file_beside(&dir.path().join("contacts.db"));
        assert!(file.ends_with("contacts.announcements.json"));
        let now = datetime!(2026-12-01 08:00 UTC);
        let board = Board::open(&file, now).unwrap();
        let mail = board.add("email-down".into(), None, None, now).unwrap();
        let soon = board
            .add(
                "phones-down".into(),
                None,
                Some(now + time::Duration::minutes(5)),
                now,
            )
            .unwrap();
        let it = board
            .add("raindance".into(), Some("it".into()), None, now)
            .unwrap();
        assert_eq!(mail.id.len(), 8);
        assert_ne!(mail.id, soon.id);
        let call = board.for_call(now);
        assert_eq!(call.service, ["email-down", "phones-down"]);
        assert_eq!(call.functions["it"], ["raindance"]);

        let later = now + time::Duration::minutes(6);
        let reopened = Board::open(&file, now).unwrap();
        assert_eq!(reopened.active(now).len(), 3);
        assert_eq!(
            reopened
                .active(later)
                .iter()
                .map(|a| a.id.as_str())
                .collect::<Vec<_>>(),
            [mail.id.as_str(), it.id.as_str()]
        );
        // The purge reached the file.
        assert_eq!(Board::open(&file, now).unwrap().active(now).len(), 2);
        assert!(!reopened.remove(&soon.id, later).unwrap());
        assert!(reopened.remove(&mail.id, later).unwrap());
        assert_eq!(
            Board::open(&file, later).unwrap().for_call(later).service,
            Vec::<String>::new()
        );
    }

    #[test]
    fn a_broken_file_is_named_with_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("contacts.announcements.json");
        std::fs::write(&file, "[{").unwrap();
        let error = Board::open(&file, OffsetDateTime::now_utc()).unwrap_err();
        let text = error.to_string();
        assert!(
            text.contains("contacts.announcements.json") && text.contains("fix or delete"),
            "{text}"
        );
    }
}
