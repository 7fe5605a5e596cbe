//! How long contact records are kept (`--retention`, 90 days by default): records of calls that started
//! longer ago are deleted, at start-up and then once a day, so nothing about a caller is kept past the period
//! the service centre needs it for. Statistics are computed from the records, so they cover the retention
//! period only.
//!
//! Owns the setting, its parsing and the daily sweep; the deletion itself is the store's
//! ([`super::ContactStore::delete_started_before`]).

use std::time::Duration;

use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

use super::handle::Records;
use super::record::format_timestamp;

/// How often the sweep runs after the one at start-up.
pub const SWEEP_EVERY: Duration = Duration::from_secs(24 * 60 * 60);

/// The admin's retention period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retention {
    /// Records of calls started longer ago than this are deleted.
    Keep(Duration),
    /// `off`: records are kept until the admin deletes them (a service with its own legal basis and
    /// deletion routine).
    Forever,
}

impl Default for Retention {
    fn default() -> Self {
        Retention::Keep(Duration::from_secs(90 * 24 * 60 * 60))
    }
}

impl std::str::FromStr for Retention {
    type Err = String;

    /// `90d`, `36h` or `off`.
    fn from_str(text: &str) -> Result<Retention, String> {
        let text = text.trim();
        if text.eq_ignore_ascii_case("off") {
            return Ok(Retention::Forever);
        }
        let help =
            "write days or hours, e.g. 90d or 36h, or off to keep records until you delete them";
        let (number, unit_seconds) = match text.char_indices().last() {
            Some((at, 'd')) => (&text[..at], 24 * 60 * 60),
            Some((at, 'h')) => (&text[..at], 60 * 60),
            _ => return Err(format!("{text:?} has no unit: {help}")),
        };
        let count: u64 = number
            .trim()
            .parse()
            .map_err(|_| format!("{text:?} is not a whole number of days or hours: {help}"))?;
        if count == 0 {
            return Err(format!(
                "{text:?} would delete every record as soon as it is written: {help}"
            ));
        }
        // Beyond a century is a typo, and keeps the arithmetic on instants far from overflowing.
        match count.checked_mul(unit_seconds) {
            Some(seconds) if seconds <= 100 * 366 * 24 * 60 * 60 => {
                Ok(Retention::Keep(Duration::from_secs(seconds)))
            }
            _ => Err(format!("{text:?} is more than a hundred years: {help}")),
        }
    }
}

impl std::fmt::Display for Retention {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Retention::Forever => f.write_str("off"),
            Retention::Keep(period) => {
                let hours = period.as_secs() / 3600;
                if hours % 24 == 0 {
                    write!(f, "{}d", hours / 24)
                } else {
                    write!(f, "{hours}h")
                }
            }
        }
    }
}

impl Retention {
    /// Records of calls started before this instant are past retention; `None` when records are kept forever.
    pub fn cutoff(&self, now: OffsetDateTime) -> Option<OffsetDateTime> {
        match self {
            Retention::Forever => None,
            Retention::Keep(period) => Some(now - *period),
        }
    }

    /// Deletes what is past retention at `now`; returns how many records went.
    pub async fn sweep(
        &self,
        records: &Records,
        now: OffsetDateTime,
    ) -> Result<usize, super::StoreError> {
        let Some(cutoff) = self.cutoff(now) else {
            return Ok(0);
        };
        let deleted = records.delete_started_before(cutoff).await?;
        if deleted > 0 {
            tracing::info!(
                records = deleted,
                retention = %self,
                started_before = %format_timestamp(cutoff),
                "deleted contact records past retention"
            );
        }
        Ok(deleted)
    }

    /// Sweeps once a day until `stop`; a failed sweep is logged and tried again the next day.
    pub async fn run_daily(self, records: Records, stop: CancellationToken) {
        if self == Retention::Forever {
            return;
        }
        let mut every_day =
            tokio::time::interval_at(tokio::time::Instant::now() + SWEEP_EVERY, SWEEP_EVERY);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = every_day.tick() => {
                    if let Err(error) = self.sweep(&records, OffsetDateTime::now_utc()).await {
                        tracing::error!(%error, "contact records past retention could not be deleted; trying again tomorrow");
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn periods_in_days_or_hours_or_off() {
        let days = |n: u64| Retention::Keep(Duration::from_secs(n * 86_400));
        assert_eq!(Retention::default(), days(90));
        assert_eq!("90d".parse(), Ok(days(90)));
        assert_eq!(" 365d ".parse(), Ok(days(365)));
        assert_eq!(
            "36h".parse(),
            Ok(Retention::Keep(Duration::from_secs(36 * 3600)))
        );
        assert_eq!("OFF".parse(), Ok(Retention::Forever));
        for bad in [
            "90",
            "0d",
            "0",
            "-1d",
            "1.5d",
            "90m",
            "",
            "d",
            "999999999999d",
        ] {
            let err = bad.parse::<Retention>().unwrap_err();
            assert!(err.contains("90d") && err.contains("off"), "{bad}: {err}");
        }
        assert_eq!(days(90).to_string(), "90d");
        assert_eq!(
            Retention::Keep(Duration::from_secs(36 * 3600)).to_string(),
            "36h"
        );
        assert_eq!(Retention::Forever.to_string(), "off");
    }

    #[test]
    fn the_cutoff_is_now_minus_the_period() {
        let now = datetime!(2026-12-01 02:00 UTC);
        assert_eq!(
            Retention::default().cutoff(now),
            Some(datetime!(2026-09-02 02:00 UTC))
        );
        assert_eq!(Retention::Forever.cutoff(now), None);
    }
}
