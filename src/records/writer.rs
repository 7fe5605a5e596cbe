//! The one task that writes contact records: call tasks hand it updates over a channel and never wait for the
//! disk. It groups what arrives within a short window into one transaction (one sync per batch, not per call
//! event), and when the disk refuses writes it keeps the updates in memory and retries, so that no record is lost
//! while the process lives.
//!
//! The queue is bounded by `max_pending` updates. At the bound, what a later whole record of the same call
//! repeats goes first (its start, its progress), then the progress of calls still in progress (only their crash
//! insurance is lost: their final write repeats it). Should whole records alone still pass the bound, the oldest
//! are written to the log as JSON (level error) and leave memory: the log then holds them.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::store::{ContactStore, RecordUpdate};

/// How the writer groups and retries.
#[derive(Debug, Clone, Copy)]
pub struct WriterSettings {
    /// How long updates gather before they are written together.
    pub batch_window: Duration,
    /// A batch is written at once when it holds this many updates.
    pub batch_max: usize,
    /// How long after a failed write the next attempt comes.
    pub retry_after: Duration,
    /// How often a failure that goes on is logged again.
    pub log_every: Duration,
    /// The most updates kept in memory (see the module doc).
    pub max_pending: usize,
}

impl Default for WriterSettings {
    fn default() -> Self {
        WriterSettings {
            batch_window: Duration::from_millis(150),
            batch_max: 500,
            retry_after: Duration::from_secs(1),
            log_every: Duration::from_secs(60),
            // About 100 MB of records at the very worst; a day of a busy service centre is far less.
            max_pending: 100_000,
        }
    }
}

/// What `/healthz` tells about the records.
#[derive(Debug, Default)]
pub struct WriterStatus {
    pending: AtomicUsize,
    last_error: Mutex<Option<String>>,
}

impl WriterStatus {
    /// Updates waiting for the disk: more than a batch's worth only while writes fail.
    pub fn pending(&self) -> usize {
        self.pending.load(Ordering::Relaxed)
    }

    /// Why the last write failed; `None` once a write succeeds again.
    pub fn last_error(&self) -> Option<String> {
        self.last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn set_error(&self, error: Option<String>) {
        *self
            .last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = error;
    }
}

pub(super) enum Message {
    Update(RecordUpdate),
    /// Write everything queued before this, then answer.
    Flush(oneshot::Sender<()>),
    /// The process is exiting and the disk still refuses: log what is queued, then stop.
    Abandon(oneshot::Sender<()>),
}

/// Runs until every sender is gone and everything queued is written, or until told to give up.
pub(super) async fn run(
    store: Arc<dyn ContactStore>,
    mut inbox: mpsc::UnboundedReceiver<Message>,
    status: Arc<WriterStatus>,
    settings: WriterSettings,
) {
    let mut queue = Queue {
        pending: VecDeque::new(),
        max_pending: settings.max_pending,
    };
    let mut flushes: Vec<oneshot::Sender<()>> = Vec::new();
    let mut write_at: Option<Instant> = None;
    let mut failing = Failing::default();
    let mut open = true;
    loop {
        if !open && queue.pending.is_empty() {
            break;
        }
        tokio::select! {
            message = inbox.recv(), if open => match message {
                Some(Message::Update(update)) => {
                    queue.push(update);
                    let soon = Instant::now() + settings.batch_window;
                    if failing.since.is_none() {
                        write_at = Some(write_at.map_or(soon, |at| at.min(soon)));
                        if queue.pending.len() >= settings.batch_max {
                            write_at = Some(Instant::now());
                        }
                    }
                }
                Some(Message::Abandon(done)) => {
                    let logged = log_unwritten(queue.pending.drain(..));
                    if logged > 0 {
                        tracing::error!(records = logged, "exiting with contact records the database refused; they are in this log");
                    }
                    status.pending.store(0, Ordering::Relaxed);
                    let _ = done.send(());
                    break;
                }
                Some(Message::Flush(done)) => {
                    if queue.pending.is_empty() {
                        let _ = done.send(());
                    } else {
                        flushes.push(done);
                        write_at = Some(Instant::now());
                    }
                }
                None => {
                    open = false;
                    write_at = Some(Instant::now());
                }
            },
            _ = sleep_until(write_at), if !queue.pending.is_empty() => {
                let batch = std::mem::take(&mut queue.pending);
                let count = batch.len();
                let store = Arc::clone(&store);
                let written = tokio::task::spawn_blocking(move || {
                    let batch = Vec::from(batch);
                    let result = store.write(&batch);
                    (batch, result.map_err(|e| e.to_string()))
                })
                .await;
                match written {
                    Ok((_, Ok(()))) => {
                        failing.recovered(count);
                        status.set_error(None);
                        write_at = None;
                        for done in flushes.drain(..) {
                            let _ = done.send(());
                        }
                    }
                    Ok((batch, Err(error))) => {
                        // Rolled back as a whole: the batch goes back in front of what came meanwhile.
                        for update in batch.into_iter().rev() {
                            queue.pending.push_front(update);
                        }
                        queue.shed();
                        failing.failed(&error, queue.pending.len(), settings.log_every);
                        status.set_error(Some(error));
                        write_at = Some(Instant::now() + settings.retry_after);
                    }
                    Err(join) => {
                        // The blocking task panicked: the batch is gone with it. Say so loudly.
                        tracing::error!(updates = count, error = %join, "the contact record writer lost a batch");
                        write_at = None;
                    }
                }
            },
        }
        status.pending.store(queue.pending.len(), Ordering::Relaxed);
    }
    for done in flushes {
        let _ = done.send(());
    }
}

/// Whole records the database would not take: written to the log, so that they exist somewhere, each record once
/// as it last stood. Returns how many.
fn log_unwritten(updates: impl IntoIterator<Item = RecordUpdate>) -> usize {
    let mut logged = 0;
    for update in latest_only(updates.into_iter().collect()) {
        if let RecordUpdate::Whole(record) = update {
            let json = serde_json::to_string(&record).unwrap_or_default();
            tracing::error!(record = %json, "contact record not written to the database; kept here");
            logged += 1;
        }
    }
    logged
}

/// Leaves out every update that a later whole record of the same call repeats (its start, its progress).
fn latest_only(updates: VecDeque<RecordUpdate>) -> VecDeque<RecordUpdate> {
    let mut whole_later = std::collections::HashSet::new();
    let mut kept: VecDeque<RecordUpdate> = updates
        .into_iter()
        .rev()
        .filter(|update| {
            let superseded = whole_later.contains(update.record_id());
            if let RecordUpdate::Whole(record) = update {
                whole_later.insert(record.id.clone());
            }
            !superseded
        })
        .collect();
    kept.make_contiguous().reverse();
    kept
}

struct Queue {
    pending: VecDeque<RecordUpdate>,
    max_pending: usize,
}

impl Queue {
    fn push(&mut self, update: RecordUpdate) {
        self.pending.push_back(update);
        self.shed();
    }

    /// Keeps the queue within its bound; see the module doc for what goes first.
    fn shed(&mut self) {
        if self.pending.len() <= self.max_pending {
            return;
        }
        let before = self.pending.len();
        self.pending = latest_only(std::mem::take(&mut self.pending));
        if self.pending.len() > self.max_pending {
            self.pending
                .retain(|update| matches!(update, RecordUpdate::Whole(_)));
        }
        let progress_dropped = before - self.pending.len();
        let excess = self.pending.len().saturating_sub(self.max_pending);
        let logged = log_unwritten(self.pending.drain(..excess));
        tracing::error!(
            progress_dropped,
            records_logged = logged,
            kept = self.pending.len(),
            "contact record queue full while the database refuses writes: progress of calls in progress \
             dropped (their final records keep it), the oldest records written to this log"
        );
    }
}

/// A failure that goes on is logged once per interval, not once per record.
#[derive(Default)]
struct Failing {
    since: Option<Instant>,
    logged_at: Option<Instant>,
    attempts: u64,
}

impl Failing {
    fn failed(&mut self, error: &str, pending: usize, log_every: Duration) {
        let now = Instant::now();
        self.since.get_or_insert(now);
        self.attempts += 1;
        if self
            .logged_at
            .is_none_or(|at| now.duration_since(at) >= log_every)
        {
            self.logged_at = Some(now);
            tracing::error!(
                error,
                pending,
                attempts = self.attempts,
                "contact records cannot be written; they are kept in memory and retried"
            );
        }
    }

    fn recovered(&mut self, written: usize) {
        if let Some(since) = self.since.take() {
            tracing::warn!(
                written,
                failed_for = ?since.elapsed(),
                attempts = self.attempts,
                "contact records are written again"
            );
        }
        self.logged_at = None;
        self.attempts = 0;
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
