//! The async handle call tasks and the HTTP side hold. Call tasks hand updates to the writer task (see
//! `super::writer`) and never wait for the disk; reads run the blocking store on tokio's blocking pool.
//!
//! A contact record that cannot be written must never take the call down with it, so the call-side methods
//! return nothing; the reading side returns errors for its caller to answer.

use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;
use tokio::sync::{mpsc, oneshot};

use super::record::{ContactRecord, Progress};
use super::stats::{MenuFunnel, StatsQuery, StatsReport};
use super::store::{ContactQuery, ContactStore, RecordUpdate, StoreError};
use super::writer::{self, Message, WriterSettings, WriterStatus};

/// A cheap, cloneable handle on the contact store and its writer.
#[derive(Clone)]
pub struct Records {
    store: Arc<dyn ContactStore>,
    writer: mpsc::UnboundedSender<Message>,
    status: Arc<WriterStatus>,
}

impl Records {
    /// Starts the writer task with the default batching; needs a tokio runtime.
    pub fn new(store: Arc<dyn ContactStore>) -> Self {
        Records::with_writer(store, WriterSettings::default())
    }

    pub fn with_writer(store: Arc<dyn ContactStore>, settings: WriterSettings) -> Self {
        let (writer, inbox) = mpsc::unbounded_channel();
        let status = Arc::new(WriterStatus::default());
        tokio::spawn(writer::run(
            Arc::clone(&store),
            inbox,
            Arc::clone(&status),
            settings,
        ));
        Records {
            store,
            writer,
            status,
        }
    }

    /// The blocking store, for code that is not on the runtime (the `contacts` CLI).
    pub fn store(&self) -> &Arc<dyn ContactStore> {
        &self.store
    }

    /// Whether writes are keeping up, for `/healthz`.
    pub fn status(&self) -> &WriterStatus {
        &self.status
    }

    /// Queues the start of a call (outcome NULL), so a crash leaves a trace.
    pub fn call_started(&self, record: &ContactRecord) {
        self.send(RecordUpdate::Whole(Box::new(record.clone())));
    }

    /// Queues what changed in a call in progress.
    pub fn progress(&self, progress: Progress) {
        self.send(RecordUpdate::Progress(Box::new(progress)));
    }

    /// Queues the final record.
    pub fn call_ended(&self, record: ContactRecord) {
        self.send(RecordUpdate::Whole(Box::new(record)));
    }

    fn send(&self, update: RecordUpdate) {
        if self.writer.send(Message::Update(update)).is_err() {
            // Only after `close`: nothing may be written any more, so the log keeps it.
            tracing::error!("contact record update after the writer stopped");
        }
    }

    /// Waits until everything queued so far is in the database; false when `patience` ran out first.
    pub async fn flush(&self, patience: Duration) -> bool {
        let (done, flushed) = oneshot::channel();
        if self.writer.send(Message::Flush(done)).is_err() {
            return false;
        }
        matches!(tokio::time::timeout(patience, flushed).await, Ok(Ok(())))
    }

    /// At exit: writes what is queued, waiting up to `patience`; what the database still refuses then goes to
    /// the log as JSON, so no record is lost while the process lives.
    pub async fn close(&self, patience: Duration) {
        if self.flush(patience).await {
            return;
        }
        let (done, abandoned) = oneshot::channel();
        if self.writer.send(Message::Abandon(done)).is_ok() {
            // The writer may be inside one more attempt (SQLite's busy timeout) before it reads this.
            let _ = tokio::time::timeout(patience + Duration::from_secs(10), abandoned).await;
        }
    }

    /// See [`ContactStore::close_unfinished`]; start-up decides whether a failure is fatal.
    pub async fn close_unfinished(&self, now: OffsetDateTime) -> Result<usize, StoreError> {
        let store = Arc::clone(&self.store);
        run(move || store.close_unfinished(now)).await
    }

    /// See [`ContactStore::delete_started_before`].
    pub async fn delete_started_before(&self, cutoff: OffsetDateTime) -> Result<usize, StoreError> {
        let store = Arc::clone(&self.store);
        run(move || store.delete_started_before(cutoff)).await
    }

    pub async fn list(&self, query: ContactQuery) -> Result<Vec<ContactRecord>, StoreError> {
        let store = Arc::clone(&self.store);
        run(move || store.list(&query)).await
    }

    pub async fn stats(&self, query: StatsQuery) -> Result<StatsReport, StoreError> {
        let store = Arc::clone(&self.store);
        run(move || store.stats(&query)).await
    }

    pub async fn menu_funnel(
        &self,
        from: jiff::Timestamp,
        to: jiff::Timestamp,
    ) -> Result<MenuFunnel, StoreError> {
        let store = Arc::clone(&self.store);
        run(move || store.menu_funnel(from, to)).await
    }
}

async fn run<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|join| StoreError::Worker(join.to_string()))?
}

#[cfg(test)]
mod tests;
