//! The async handle call tasks and the HTTP side hold: runs the blocking store on tokio's blocking pool.
//!
//! A contact record that cannot be written must never take the call down with it, so the call-side methods
//! log and return nothing; the reading side returns errors for its caller to answer.

use std::sync::Arc;

use time::OffsetDateTime;

use super::record::ContactRecord;
use super::stats::{MenuFunnel, StatsQuery, StatsReport};
use super::store::{ContactQuery, ContactStore, StoreError};

/// A cheap, cloneable handle on the contact store.
#[derive(Clone)]
pub struct Records(Arc<dyn ContactStore>);

impl Records {
    pub fn new(store: Arc<dyn ContactStore>) -> Self {
        Records(store)
    }

    /// The blocking store, for code that is not on the runtime (the `contacts` CLI).
    pub fn store(&self) -> &Arc<dyn ContactStore> {
        &self.0
    }

    /// Writes the start of a call; a failure is logged, not returned.
    pub async fn call_started(&self, record: ContactRecord) {
        let call_id = record.call_id.clone();
        let store = Arc::clone(&self.0);
        if let Err(error) = run(move || store.call_started(&record)).await {
            tracing::error!(call_id, %error, "contact record for the call's start not written");
        }
    }

    /// Writes the final record; a failure is logged, not returned.
    pub async fn call_ended(&self, record: ContactRecord) {
        let call_id = record.call_id.clone();
        let store = Arc::clone(&self.0);
        if let Err(error) = run(move || store.call_ended(&record)).await {
            tracing::error!(call_id, %error, "final contact record not written");
        }
    }

    /// See [`ContactStore::close_unfinished`]; start-up decides whether a failure is fatal.
    pub async fn close_unfinished(&self, now: OffsetDateTime) -> Result<usize, StoreError> {
        let store = Arc::clone(&self.0);
        run(move || store.close_unfinished(now)).await
    }

    pub async fn list(&self, query: ContactQuery) -> Result<Vec<ContactRecord>, StoreError> {
        let store = Arc::clone(&self.0);
        run(move || store.list(&query)).await
    }

    pub async fn stats(&self, query: StatsQuery) -> Result<StatsReport, StoreError> {
        let store = Arc::clone(&self.0);
        run(move || store.stats(&query)).await
    }

    pub async fn menu_funnel(
        &self,
        from: jiff::Timestamp,
        to: jiff::Timestamp,
    ) -> Result<MenuFunnel, StoreError> {
        let store = Arc::clone(&self.0);
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
mod tests {
    use super::*;
    use crate::flow::Outcome;
    use crate::records::SqliteStore;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use time::macros::datetime;

    /// A store whose every write fails, counting the attempts.
    struct BrokenDisk(AtomicUsize);

    impl ContactStore for BrokenDisk {
        fn call_started(&self, _: &ContactRecord) -> Result<(), StoreError> {
            self.0.fetch_add(1, Ordering::SeqCst);
            Err(StoreError::Worker("disk full".into()))
        }
        fn call_ended(&self, _: &ContactRecord) -> Result<(), StoreError> {
            self.0.fetch_add(1, Ordering::SeqCst);
            Err(StoreError::Worker("disk full".into()))
        }
        fn close_unfinished(&self, _: OffsetDateTime) -> Result<usize, StoreError> {
            Err(StoreError::Worker("disk full".into()))
        }
        fn list(&self, _: &ContactQuery) -> Result<Vec<ContactRecord>, StoreError> {
            Err(StoreError::Worker("disk full".into()))
        }
        fn stats(&self, _: &StatsQuery) -> Result<StatsReport, StoreError> {
            Err(StoreError::Worker("disk full".into()))
        }
        fn menu_funnel(
            &self,
            _: jiff::Timestamp,
            _: jiff::Timestamp,
        ) -> Result<MenuFunnel, StoreError> {
            Err(StoreError::Worker("disk full".into()))
        }
    }

    #[tokio::test]
    async fn writes_go_through_to_the_store() {
        let records = Records::new(Arc::new(SqliteStore::open_in_memory().unwrap()));
        let mut record = ContactRecord::started("c1", "a", "b", datetime!(2026-11-23 10:00 UTC));
        records.call_started(record.clone()).await;
        assert_eq!(
            records.list(ContactQuery::default()).await.unwrap(),
            vec![record.clone()]
        );
        record.finish(
            Outcome::Abandoned,
            datetime!(2026-11-23 10:00:07 UTC),
            "caller BYE",
        );
        records.call_ended(record.clone()).await;
        assert_eq!(
            records.list(ContactQuery::default()).await.unwrap(),
            vec![record]
        );
        assert_eq!(
            records
                .close_unfinished(datetime!(2026-11-23 11:00 UTC))
                .await
                .unwrap(),
            0
        );
    }

    #[tokio::test]
    async fn a_failing_store_does_not_fail_the_call() {
        let store = Arc::new(BrokenDisk(AtomicUsize::new(0)));
        let records = Records::new(store.clone());
        let record = ContactRecord::started("c1", "a", "b", datetime!(2026-11-23 10:00 UTC));
        records.call_started(record.clone()).await;
        records.call_ended(record).await;
        assert_eq!(store.0.load(Ordering::SeqCst), 2);
        assert!(records.list(ContactQuery::default()).await.is_err());
    }
}
