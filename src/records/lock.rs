//! One daemon per database file: an exclusive `flock` on `<db>.lock`, which holds the owner's PID.
//!
//! A second daemon on the same file would close the first one's live calls as failed at its start, so it is
//! refused, naming the PID that holds the lock. The kernel drops the lock when its process dies (even by
//! SIGKILL), so a crash never leaves a stale lock behind. Readers (`knappval contacts`) do not take it.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use super::store::StoreError;

/// Held for the daemon's lifetime; dropping it (or the process ending) releases the database.
#[derive(Debug)]
pub struct DatabaseLock {
    _file: File,
    path: PathBuf,
}

impl DatabaseLock {
    /// Takes the lock beside `db` (creating the folder if need be), or says who holds it.
    pub fn acquire(db: &Path) -> Result<DatabaseLock, StoreError> {
        let mut name = db.as_os_str().to_owned();
        name.push(".lock");
        let path = PathBuf::from(name);
        let lock_error = |source| StoreError::Lock {
            lock: path.clone(),
            source,
        };
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|source| StoreError::CreateDir {
                path: parent.to_path_buf(),
                source,
            })?;
        }
        // Not truncated on open: while another daemon holds it, its PID is what we report.
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(lock_error)?;
        // SAFETY: flock on a descriptor this function owns; no memory is shared with the kernel.
        let locked = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if locked != 0 {
            let error = std::io::Error::last_os_error();
            if error.kind() != std::io::ErrorKind::WouldBlock {
                return Err(lock_error(error));
            }
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let pid = match holder.trim() {
                "" => "unknown".to_string(),
                pid => pid.to_string(),
            };
            return Err(StoreError::InUse {
                path: db.to_path_buf(),
                lock: path,
                pid,
            });
        }
        file.set_len(0).map_err(lock_error)?;
        file.rewind().map_err(lock_error)?;
        writeln!(file, "{}", std::process::id()).map_err(lock_error)?;
        file.flush().map_err(lock_error)?;
        Ok(DatabaseLock { _file: file, path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_the_same_database_is_refused_with_the_holders_pid() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("data/contacts.db");
        let first = DatabaseLock::acquire(&db).unwrap();
        assert_eq!(first.path(), dir.path().join("data/contacts.db.lock"));
        // flock locks belong to the open file description, so a second open in one process conflicts too.
        match DatabaseLock::acquire(&db) {
            Err(StoreError::InUse { pid, .. }) => assert_eq!(pid, std::process::id().to_string()),
            other => panic!("expected InUse, got {other:?}"),
        }
        drop(first);
        let again = DatabaseLock::acquire(&db).unwrap();
        let text = std::fs::read_to_string(again.path()).unwrap();
        assert_eq!(text.trim(), std::process::id().to_string());
    }
}
