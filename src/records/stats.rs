//! Statistics over the contact records: rows per support function, outcome or time bucket, and the menu funnel.
//!
//! Owns the question ([`StatsQuery`]), the answer's shape ([`StatsReport`], [`MenuFunnel`]), the bucket arithmetic
//! in the configured time zone, and the SQL that aggregates. Knows nothing about HTTP or the terminal.
//!
//! # Definitions
//! - A call belongs to the bucket in which it **started** (`started_at`); a call from 23:58 to 00:03 counts on
//!   the day it began.
//! - Buckets are in the configured time zone. `day` is a local calendar day (23 hours on the spring-forward day,
//!   25 on the fall-back day), `week` starts on Monday 00:00 local, `hour` is one real hour labelled with its
//!   local offset (the fall-back day has two rows for 02:00, `+02:00` and `+01:00`). `weekday_hour` folds every
//!   hour onto a week: key `"mon 08"` is every Monday's 08:00-09:00 in the range (for a staffing heat map).
//! - Time buckets cover `from..to` without gaps, so hours with no calls show up as zeros; the first bucket's key
//!   may lie before `from` (it is the bucket's start) but only calls at or after `from` are counted.
//! - **Menu time** is how long an answered caller was held by knappval before a person took over: from
//!   `answered_at` to `transferred_at` (the function answered, or the REFER succeeded) for a transferred call,
//!   and to `ended_at` for every other answered call (the caller hung up in the menu or while the function rang,
//!   or the call ended otherwise). It includes the function's ringing. Calls never answered, and calls still in
//!   progress, have no menu time and are left out of its average and percentile.
//! - `menu_time_p90_ms` is the nearest-rank 90th percentile: the smallest menu time that at least 90 % of the
//!   row's timed calls do not exceed.
//! - `calls` counts every call that started in the bucket, calls in progress and rejected calls included.
//! - **Queue figures** count the calls whose wait in a queue is over: `queued` is every call that waited in a
//!   queue and left it (an agent answered, the caller hung up, or `max_wait` sent them on to the overflow); callers
//!   waiting now are not in it yet. `answered` is the queued calls an agent answered; `asa_ms` (average speed of
//!   answer) their average wait, from entering the queue to the agent's answer; `service_level` the share of
//!   `queued` that an agent answered within the service-level time (default 60 s), from 0 to 1, the way contact
//!   centres count it (a caller who gave up counts against it, however soon). With `group_by=function` (and
//!   `function=`) a wait counts for the **queue waited in**, while the call counts for the function it ended
//!   with: a caller who overflowed from queue `it` to `kundtjanst` is one of `it`'s queued calls and one of
//!   `kundtjanst`'s calls. A call that went through two queues is one wait, the first queue's, from entering it
//!   to leaving the last. Rows without queued calls have null `asa_ms` and `service_level`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

use jiff::Timestamp;
use jiff::civil::Date;
use jiff::tz::TimeZone;
use rusqlite::types::ValueRef;
use rusqlite::{Connection, params};
use serde::{Deserialize, Serialize};

use super::record::format_timestamp;
use super::store::StoreError;
use crate::flow::{Step, StepKind};
use crate::menu::model::ROOT_MENU;

/// The zone buckets are cut in when none is configured.
pub const DEFAULT_TIME_ZONE: &str = "Europe/Stockholm";

/// The most rows one time-bucketed answer may have (about five and a half years of hours).
pub const MAX_BUCKETS: usize = 50_000;

/// The wait within which an answer counts toward the service level when none is configured.
pub const DEFAULT_SERVICE_LEVEL: std::time::Duration = std::time::Duration::from_secs(60);

/// What the rows of a [`StatsReport`] are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupBy {
    Function,
    Outcome,
    Hour,
    WeekdayHour,
    Day,
    Week,
}

impl GroupBy {
    pub const ALL: [GroupBy; 6] = [
        GroupBy::Function,
        GroupBy::Outcome,
        GroupBy::Hour,
        GroupBy::WeekdayHour,
        GroupBy::Day,
        GroupBy::Week,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            GroupBy::Function => "function",
            GroupBy::Outcome => "outcome",
            GroupBy::Hour => "hour",
            GroupBy::WeekdayHour => "weekday_hour",
            GroupBy::Day => "day",
            GroupBy::Week => "week",
        }
    }
}

impl fmt::Display for GroupBy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The accepted `group_by` values, for error messages.
pub const GROUP_BY_VALUES: &str = "function, outcome, hour, weekday_hour, day or week";

impl FromStr for GroupBy {
    type Err = StatsError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        GroupBy::ALL
            .into_iter()
            .find(|g| g.as_str() == s)
            .ok_or_else(|| StatsError::GroupBy(s.to_string()))
    }
}

/// A question that cannot be answered as asked; each says what to write instead.
#[derive(Debug, thiserror::Error)]
pub enum StatsError {
    #[error("group_by '{0}' is not known; use one of {GROUP_BY_VALUES}")]
    GroupBy(String),
    #[error(
        "{name} '{text}' is not a time; write an RFC 3339 timestamp such as 2026-03-29T00:00:00+01:00 \
         (a + must be sent as %2B in a URL), a local time such as 2026-03-29T08:30 (in {zone}) or a date \
         such as 2026-03-29 (midnight in {zone})"
    )]
    Time {
        name: &'static str,
        text: String,
        zone: String,
    },
    #[error("to ({to}) must be later than from ({from})")]
    EmptyRange { from: String, to: String },
    #[error(
        "from..to holds more than {MAX_BUCKETS} {group_by} buckets; ask for a shorter range or a coarser group_by \
         (day or week)"
    )]
    TooManyBuckets { group_by: GroupBy },
    #[error("time zone '{0}' is not known; use an IANA name such as Europe/Stockholm or UTC")]
    TimeZone(String),
}

/// Looks up an IANA time zone in the tz database compiled into the binary (no /usr/share/zoneinfo needed).
pub fn time_zone(name: &str) -> Result<TimeZone, StatsError> {
    TimeZone::get(name).map_err(|_| StatsError::TimeZone(name.to_string()))
}

/// Reads `from`/`to`: an RFC 3339 timestamp; a date and time without an offset, meaning that local time in
/// `zone` (a time the clocks skip or repeat at a DST change is taken as jiff's "compatible" choice: the later
/// offset for a gap, the earlier for a fold); or a plain date, meaning that day's start in `zone`.
pub fn parse_instant(
    name: &'static str,
    text: &str,
    zone: &TimeZone,
) -> Result<Timestamp, StatsError> {
    let bad = || StatsError::Time {
        name,
        text: text.to_string(),
        zone: zone
            .iana_name()
            .unwrap_or("the configured zone")
            .to_string(),
    };
    let trimmed = text.trim();
    if let Ok(at) = trimmed.parse::<Timestamp>() {
        return Ok(at);
    }
    // An unescaped `+01:00` in a query string arrives as ` 01:00`; it can only have meant `+`.
    if let Some((date_time, offset)) = trimmed.rsplit_once(' ')
        && let Ok(at) = format!("{date_time}+{offset}").parse::<Timestamp>()
    {
        return Ok(at);
    }
    // jiff would read a date out of a date and time and drop the time: a time is looked for first.
    if trimmed.len() > "2026-03-29".len() {
        let local: jiff::civil::DateTime = trimmed.parse().map_err(|_| bad())?;
        return local
            .to_zoned_datetime(zone.clone())
            .map(|zoned| zoned.timestamp())
            .map_err(|_| bad());
    }
    let date: Date = trimmed.parse().map_err(|_| bad())?;
    day_start(date, zone).map_err(|_| bad())
}

/// One statistics question.
#[derive(Debug, Clone)]
pub struct StatsQuery {
    /// Calls started at or after this instant...
    pub from: Timestamp,
    /// ...and before this one.
    pub to: Timestamp,
    pub group_by: GroupBy,
    /// Only calls routed to this support function.
    pub function: Option<String>,
    /// The zone buckets are cut in and keys are written in.
    pub zone: TimeZone,
    /// An agent's answer within this wait counts toward `service_level`.
    pub service_level: std::time::Duration,
}

impl StatsQuery {
    pub fn new(
        from: Timestamp,
        to: Timestamp,
        group_by: GroupBy,
        zone: TimeZone,
    ) -> Result<StatsQuery, StatsError> {
        if to <= from {
            return Err(StatsError::EmptyRange {
                from: rfc3339(from, &zone),
                to: rfc3339(to, &zone),
            });
        }
        Ok(StatsQuery {
            from,
            to,
            group_by,
            function: None,
            zone,
            service_level: DEFAULT_SERVICE_LEVEL,
        })
    }
}

/// The answer: the question echoed (times in the zone's offset) and one row per key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatsReport {
    pub from: String,
    pub to: String,
    pub group_by: GroupBy,
    /// The wait (whole seconds) within which an answer counts toward each row's `service_level`.
    pub service_level_seconds: u64,
    pub rows: Vec<StatsRow>,
}

/// Counts for one function, outcome or bucket. See the module docs for what each figure means.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StatsRow {
    /// The function id, the outcome, the bucket's start (RFC 3339 with the zone's offset) or `"mon 08"`; null for
    /// calls that chose no function (group_by=function) or are still in progress (group_by=outcome).
    pub key: Option<String>,
    pub calls: u64,
    pub transferred: u64,
    pub abandoned: u64,
    pub timeout: u64,
    pub failed: u64,
    pub rejected: u64,
    pub menu_time_avg_ms: Option<u64>,
    pub menu_time_p90_ms: Option<u64>,
    /// Calls whose wait in a queue is over (answered, given up or overflowed).
    pub queued: u64,
    /// Queued calls an agent answered.
    pub answered: u64,
    /// Average speed of answer: the answered calls' average wait in the queue.
    pub asa_ms: Option<u64>,
    /// The share of `queued` answered within the service-level time, 0 to 1 (four decimals).
    pub service_level: Option<f64>,
}

/// The CSV columns of a [`StatsRow`], in order.
pub const STATS_CSV_HEADER: [&str; 13] = [
    "key",
    "calls",
    "transferred",
    "abandoned",
    "timeout",
    "failed",
    "rejected",
    "menu_time_avg_ms",
    "menu_time_p90_ms",
    "queued",
    "answered",
    "asa_ms",
    "service_level",
];

impl StatsRow {
    /// The row as CSV cells in [`STATS_CSV_HEADER`] order; nulls are empty cells.
    pub fn csv_cells(&self) -> [String; STATS_CSV_HEADER.len()] {
        let optional = |v: Option<u64>| v.map(|v| v.to_string()).unwrap_or_default();
        [
            self.key.clone().unwrap_or_default(),
            self.calls.to_string(),
            self.transferred.to_string(),
            self.abandoned.to_string(),
            self.timeout.to_string(),
            self.failed.to_string(),
            self.rejected.to_string(),
            optional(self.menu_time_avg_ms),
            optional(self.menu_time_p90_ms),
            self.queued.to_string(),
            self.answered.to_string(),
            optional(self.asa_ms),
            self.service_level
                .map(|s| s.to_string())
                .unwrap_or_default(),
        ]
    }
}

/// `instant` as RFC 3339 with the offset `zone` has there: `2026-03-29T03:00:00+02:00`.
pub fn rfc3339(instant: Timestamp, zone: &TimeZone) -> String {
    instant
        .display_with_offset(zone.to_offset(instant))
        .to_string()
}

fn day_start(date: Date, zone: &TimeZone) -> Result<Timestamp, jiff::Error> {
    Ok(date
        .to_zoned_datetime(zone.clone())?
        .start_of_day()?
        .timestamp())
}

/// One slice of `from..to`; `label` indexes the report's rows (several buckets share one for weekday_hour).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Bucket {
    /// It ends where the next one starts (the last where the range's last hour, day or week ends).
    start: Timestamp,
    label: usize,
}

const WEEKDAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
const HOUR_MS: i64 = 3_600_000;

/// The start of the local hour `at` falls in, as an instant. Arithmetic on the offset rather than on civil time,
/// so that the repeated 02:00 hour of the fall-back day stays two distinct hours.
fn hour_start(at: Timestamp, zone: &TimeZone) -> Result<Timestamp, jiff::Error> {
    let offset_ms = i64::from(zone.to_offset(at).seconds()) * 1000;
    let local = at.as_millisecond() + offset_ms;
    Timestamp::from_millisecond(local.div_euclid(HOUR_MS) * HOUR_MS - offset_ms)
}

/// Cuts `from..to` into the buckets of `group_by` and names their rows. Empty for function and outcome.
fn buckets(query: &StatsQuery) -> Result<(Vec<Bucket>, Vec<String>), StatsError> {
    let zone = &query.zone;
    let too_many = || StatsError::TooManyBuckets {
        group_by: query.group_by,
    };
    // The range was checked at construction; jiff only fails at the ends of its ±9999-year range.
    let overflow = |_: jiff::Error| too_many();
    let mut buckets = Vec::new();
    let mut labels = Vec::new();
    match query.group_by {
        GroupBy::Function | GroupBy::Outcome => {}
        GroupBy::Hour | GroupBy::WeekdayHour => {
            if query.group_by == GroupBy::WeekdayHour {
                for day in WEEKDAYS {
                    for hour in 0..24 {
                        labels.push(format!("{day} {hour:02}"));
                    }
                }
            }
            let mut start = hour_start(query.from, zone).map_err(overflow)?;
            while start < query.to {
                let end = hour_start(
                    start
                        .checked_add(jiff::SignedDuration::from_hours(1))
                        .map_err(overflow)?,
                    zone,
                )
                .map_err(overflow)?;
                let label = if query.group_by == GroupBy::Hour {
                    labels.push(rfc3339(start, zone));
                    labels.len() - 1
                } else {
                    let local = start.to_zoned_datetime(zone.clone());
                    let weekday = usize::try_from(local.weekday().to_monday_zero_offset())
                        .unwrap_or_default();
                    weekday * 24 + usize::try_from(local.hour()).unwrap_or_default()
                };
                buckets.push(Bucket { start, label });
                if buckets.len() > MAX_BUCKETS {
                    return Err(too_many());
                }
                start = end;
            }
        }
        GroupBy::Day | GroupBy::Week => {
            let mut date = query.from.to_zoned_datetime(zone.clone()).date();
            let days = if query.group_by == GroupBy::Week {
                for _ in 0..date.weekday().to_monday_zero_offset() {
                    date = date.yesterday().map_err(overflow)?;
                }
                7
            } else {
                1
            };
            let mut start = day_start(date, zone).map_err(overflow)?;
            while start < query.to {
                for _ in 0..days {
                    date = date.tomorrow().map_err(overflow)?;
                }
                let end = day_start(date, zone).map_err(overflow)?;
                labels.push(rfc3339(start, zone));
                buckets.push(Bucket {
                    start,
                    label: labels.len() - 1,
                });
                if buckets.len() > MAX_BUCKETS {
                    return Err(too_many());
                }
                start = end;
            }
        }
    }
    Ok((buckets, labels))
}

fn stored(t: Timestamp) -> String {
    // The records' own text form, so that comparisons in SQL are text comparisons on the index.
    let utc = time::OffsetDateTime::from_unix_timestamp_nanos(t.as_nanosecond())
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    format_timestamp(utc)
}

/// Aggregates one [`StatsQuery`] on `connection`.
///
/// SQL picks the calls of the range with their group (a column, or the bucket their start falls in) from the
/// covering index `contact_records_stats` (or `contact_records_function_stats` with a function filter), and one
/// pass in Rust adds them up. A GROUP BY would make SQLite sort the whole range, and the percentile needs every
/// menu time anyway: kept at 4 bytes per answered call of the range (6 MB for a year of 1.5 million calls), it
/// is picked per group by selection, not by sorting. A second, smaller pass adds the waits that are over from the
/// partial index `contact_records_queue_stats`, grouped by the queue waited in rather than the function the call
/// ended with.
pub(super) fn stats(
    connection: &Connection,
    query: &StatsQuery,
) -> Result<StatsReport, StoreError> {
    let (buckets, labels) = buckets(query).map_err(StoreError::Stats)?;
    // Written out rather than `(?3 IS NULL OR function_id = ?3)`, which would keep SQLite from the
    // (function_id, started_at) index.
    let (function_filter, queue_filter) = if query.function.is_some() {
        ("AND r.function_id = ?3", "AND r.queue = ?3")
    } else {
        ("AND ?3 IS NULL", "AND ?3 IS NULL")
    };
    let (calls_sql, waits_sql) = match query.group_by {
        GroupBy::Function | GroupBy::Outcome => {
            let (call_group, wait_group) = if query.group_by == GroupBy::Function {
                ("function_id", "queue")
            } else {
                ("outcome", "outcome")
            };
            (
                format!(
                    "SELECT r.{call_group}, r.outcome, r.menu_ms FROM contact_records AS r
                     WHERE r.started_at >= ?1 AND r.started_at < ?2 {function_filter}"
                ),
                format!(
                    "SELECT r.{wait_group}, r.queue_wait_ms, r.answered_by IS NOT NULL
                     FROM contact_records AS r INDEXED BY contact_records_queue_stats
                     WHERE r.queue_wait_ms IS NOT NULL AND r.started_at >= ?1 AND r.started_at < ?2 {queue_filter}"
                ),
            )
        }
        // The range's calls with their start, one scan of the index (which has them in start order already: the
        // ORDER BY costs no sort); the bucket each start falls in is found in Rust. (A join with the buckets left
        // SQLite to pick the loop order: without ANALYZE statistics it scanned the whole range once per bucket, a
        // minute for a year by day.)
        _ => (
            format!(
                "SELECT r.started_at, r.outcome, r.menu_ms FROM contact_records AS r
                 WHERE r.started_at >= ?1 AND r.started_at < ?2 {function_filter} ORDER BY r.started_at"
            ),
            format!(
                "SELECT r.started_at, r.queue_wait_ms, r.answered_by IS NOT NULL
                 FROM contact_records AS r INDEXED BY contact_records_queue_stats
                 WHERE r.queue_wait_ms IS NOT NULL AND r.started_at >= ?1 AND r.started_at < ?2 {queue_filter}
                 ORDER BY r.started_at"
            ),
        ),
    };
    let (from, to) = (stored(query.from), stored(query.to));
    let parameters: [&dyn rusqlite::ToSql; 3] = [&from, &to, &query.function];
    let mut tallies = Tallies {
        buckets: vec![Tally::default(); labels.len()],
        bucketing: (!buckets.is_empty()).then(|| Bucketing::new(&buckets)),
        ..Tallies::default()
    };
    let milliseconds = |value: ValueRef<'_>| match value {
        ValueRef::Integer(ms) => Some(u32::try_from(ms.max(0)).unwrap_or(u32::MAX)),
        _ => None,
    };
    let mut statement = connection.prepare(&calls_sql)?;
    let mut calls = statement.query(parameters)?;
    while let Some(call) = calls.next()? {
        let Some(tally) = tallies.of(call.get_ref(0)?) else {
            continue;
        };
        let outcome = match call.get_ref(1)? {
            ValueRef::Text(name) => Some(name),
            _ => None,
        };
        tally.add(outcome, milliseconds(call.get_ref(2)?));
    }
    let service_level_ms = u32::try_from(query.service_level.as_millis()).unwrap_or(u32::MAX);
    let mut statement = connection.prepare(&waits_sql)?;
    let mut waits = statement.query(parameters)?;
    while let Some(wait) = waits.next()? {
        let (Some(tally), Some(wait_ms)) =
            (tallies.of(wait.get_ref(0)?), milliseconds(wait.get_ref(1)?))
        else {
            continue;
        };
        let answered = matches!(wait.get_ref(2)?, ValueRef::Integer(1));
        tally.add_wait(QueueWait { wait_ms, answered }, service_level_ms);
    }
    let rows = match query.group_by {
        GroupBy::Function | GroupBy::Outcome => {
            let rank = |key: &Option<String>| match (query.group_by, key) {
                (_, None) => usize::MAX,
                (GroupBy::Outcome, Some(k)) => crate::flow::Outcome::ALL
                    .iter()
                    .position(|o| o.as_str() == k)
                    .unwrap_or(usize::MAX - 1),
                _ => 0,
            };
            let mut rows: Vec<StatsRow> = tallies
                .named
                .into_iter()
                .map(|(key, tally)| tally.into_row(Some(key)))
                .collect();
            if tallies.unlabelled.calls > 0 || tallies.unlabelled.queued > 0 {
                rows.push(tallies.unlabelled.into_row(None));
            }
            rows.sort_by(|a, b| {
                rank(&a.key)
                    .cmp(&rank(&b.key))
                    .then_with(|| a.key.cmp(&b.key))
            });
            rows
        }
        _ => labels
            .into_iter()
            .zip(tallies.buckets)
            .map(|(label, tally)| tally.into_row(Some(label)))
            .collect(),
    };
    Ok(StatsReport {
        from: rfc3339(query.from, &query.zone),
        to: rfc3339(query.to, &query.zone),
        group_by: query.group_by,
        service_level_seconds: query.service_level.as_secs(),
        rows,
    })
}

/// The calls of one group, added up.
#[derive(Debug, Clone, Default)]
struct Tally {
    calls: u64,
    transferred: u64,
    abandoned: u64,
    timeout: u64,
    failed: u64,
    rejected: u64,
    menu_times: Vec<u32>,
    menu_total_ms: u64,
    queued: u64,
    answered: u64,
    answered_wait_ms: u64,
    answered_in_time: u64,
}

/// A call's wait in a queue, once over.
#[derive(Debug, Clone, Copy)]
struct QueueWait {
    wait_ms: u32,
    answered: bool,
}

impl Tally {
    /// A wait in a queue that is over, with the group of the queue waited in.
    fn add_wait(&mut self, wait: QueueWait, service_level_ms: u32) {
        self.queued += 1;
        if wait.answered {
            self.answered += 1;
            self.answered_wait_ms += u64::from(wait.wait_ms);
            if wait.wait_ms <= service_level_ms {
                self.answered_in_time += 1;
            }
        }
    }

    /// A call, with the group of the function it ended with.
    fn add(&mut self, outcome: Option<&[u8]>, menu_ms: Option<u32>) {
        self.calls += 1;
        match outcome {
            Some(b"transferred") => self.transferred += 1,
            Some(b"abandoned") => self.abandoned += 1,
            Some(b"timeout") => self.timeout += 1,
            Some(b"failed") => self.failed += 1,
            Some(b"rejected") => self.rejected += 1,
            _ => {}
        }
        if let Some(ms) = menu_ms {
            self.menu_times.push(ms);
            self.menu_total_ms += u64::from(ms);
        }
    }

    fn into_row(mut self, key: Option<String>) -> StatsRow {
        let timed = self.menu_times.len() as u64;
        // Nearest rank: the ceil(0.9 n)-th smallest, 1-based.
        let rank = (self.menu_times.len() * 9).div_ceil(10);
        let p90 = match rank.checked_sub(1) {
            Some(index) => Some(u64::from(*self.menu_times.select_nth_unstable(index).1)),
            None => None,
        };
        StatsRow {
            key,
            calls: self.calls,
            transferred: self.transferred,
            abandoned: self.abandoned,
            timeout: self.timeout,
            failed: self.failed,
            rejected: self.rejected,
            menu_time_avg_ms: (timed > 0).then(|| (self.menu_total_ms + timed / 2) / timed),
            menu_time_p90_ms: p90,
            queued: self.queued,
            answered: self.answered,
            asa_ms: (self.answered > 0)
                .then(|| (self.answered_wait_ms + self.answered / 2) / self.answered),
            service_level: (self.queued > 0).then(|| {
                (self.answered_in_time as f64 / self.queued as f64 * 10_000.0).round() / 10_000.0
            }),
        }
    }
}

/// One [`Tally`] per group: bucket numbers index `buckets`; function ids and outcomes are `named`; calls with no
/// function (or no outcome yet) are `unlabelled`.
#[derive(Debug, Default)]
struct Tallies {
    buckets: Vec<Tally>,
    named: std::collections::HashMap<String, Tally>,
    unlabelled: Tally,
    /// For time buckets: which bucket a call's start falls in.
    bucketing: Option<Bucketing>,
}

/// The buckets' starts in the records' text form, in order: consecutive buckets, each ending where the next
/// starts, so a start's bucket is the last one starting at or before it (the text form sorts as time does).
#[derive(Debug)]
struct Bucketing {
    starts: Vec<String>,
    labels: Vec<usize>,
    /// The bucket of the call before: the calls come in start order, so the next one is mostly in the same
    /// bucket or a few after it (a binary search per call cost a year by hour a third more).
    cursor: usize,
}

impl Bucketing {
    fn new(buckets: &[Bucket]) -> Bucketing {
        Bucketing {
            starts: buckets.iter().map(|b| stored(b.start)).collect(),
            labels: buckets.iter().map(|b| b.label).collect(),
            cursor: 0,
        }
    }

    /// The label of the bucket a call that started at `started_at` (stored form) belongs to.
    fn label(&mut self, started_at: &[u8]) -> Option<usize> {
        let starts = &self.starts;
        let starts_by = |index: usize| starts[index].as_bytes() <= started_at;
        let mut cursor = self.cursor;
        if starts.is_empty() {
            return None;
        }
        if starts_by(cursor) {
            while cursor + 1 < starts.len() && starts_by(cursor + 1) {
                cursor += 1;
            }
        } else {
            // Earlier than the call before (the next pass starts over): search.
            let after = starts.partition_point(|start| start.as_bytes() <= started_at);
            cursor = after.checked_sub(1)?;
        }
        self.cursor = cursor;
        Some(self.labels[cursor])
    }
}

impl Tallies {
    /// The tally of the group a row's first column names: with time buckets the call's start, else a function
    /// id or outcome, or NULL.
    fn of(&mut self, group: ValueRef<'_>) -> Option<&mut Tally> {
        if let Some(bucketing) = &mut self.bucketing {
            let ValueRef::Text(started_at) = group else {
                return None;
            };
            return bucketing
                .label(started_at)
                .and_then(|label| self.buckets.get_mut(label));
        }
        match group {
            ValueRef::Null => Some(&mut self.unlabelled),
            ValueRef::Text(text) => {
                // Ids are ASCII; from_utf8 first, because the lossy scan costs more per call than the tally.
                let text = match std::str::from_utf8(text) {
                    Ok(text) => std::borrow::Cow::Borrowed(text),
                    Err(_) => String::from_utf8_lossy(text),
                };
                if !self.named.contains_key(text.as_ref()) {
                    self.named.insert(text.to_string(), Tally::default());
                }
                self.named.get_mut(text.as_ref())
            }
            _ => None,
        }
    }
}

impl StatsReport {
    /// A table for the terminal: counts right-aligned, menu times in seconds, a null key named for what it means.
    pub fn table(&self) -> String {
        let none_key = match self.group_by {
            GroupBy::Function => "(no function)",
            GroupBy::Outcome => "(in progress)",
            _ => "",
        };
        let seconds =
            |ms: Option<u64>| ms.map_or("-".to_string(), |ms| format!("{:.1}", ms as f64 / 1000.0));
        let rows = self.rows.iter().map(|row| {
            vec![
                row.key.clone().unwrap_or_else(|| none_key.to_string()),
                row.calls.to_string(),
                row.transferred.to_string(),
                row.abandoned.to_string(),
                row.timeout.to_string(),
                row.failed.to_string(),
                row.rejected.to_string(),
                seconds(row.menu_time_avg_ms),
                seconds(row.menu_time_p90_ms),
                row.queued.to_string(),
                row.answered.to_string(),
                seconds(row.asa_ms),
                row.service_level
                    .map_or("-".to_string(), |share| format!("{:.0}", share * 100.0)),
            ]
        });
        let service_level = format!("answered ≤{} s %", self.service_level_seconds);
        let header = [
            self.group_by.as_str(),
            "calls",
            "transferred",
            "abandoned",
            "timeout",
            "failed",
            "rejected",
            "menu avg s",
            "menu p90 s",
            "queued",
            "answered",
            "ASA s",
            service_level.as_str(),
        ];
        format!(
            "calls started {} .. {}\n{}",
            self.from,
            self.to,
            table(&header, rows)
        )
    }
}

impl MenuFunnel {
    /// A table for the terminal, one row per menu, one column per digit pressed anywhere.
    pub fn table(&self) -> String {
        let header = self.csv_header();
        let header: Vec<&str> = header.iter().map(String::as_str).collect();
        table(&header, self.csv_rows().into_iter()).to_string()
    }
}

/// A plain table with the first column left-aligned and every other (a number) right-aligned.
fn table(header: &[&str], rows: impl Iterator<Item = Vec<String>>) -> comfy_table::Table {
    let mut table = comfy_table::Table::new();
    table
        .load_style(comfy_table::presets::UTF8_FULL_CONDENSED)
        .set_header(header.to_vec());
    for row in rows {
        table.add_row(row);
    }
    for index in 1..header.len() {
        if let Some(column) = table.column_mut(index) {
            column.set_cell_alignment(comfy_table::CellAlignment::Right);
        }
    }
    table
}

/// The menu funnel: one node per menu reached in the range, `root` first.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MenuFunnel {
    pub nodes: Vec<FunnelNode>,
}

/// What callers did in one menu.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FunnelNode {
    pub menu: String,
    /// Callers who entered the menu, each counted once however often they heard it.
    pub reached: u64,
    /// Valid digits pressed in the menu, by digit: each press counts (a caller who pressed 9, came back and
    /// pressed 9 again counts twice). Digits nobody pressed are absent.
    pub options: BTreeMap<String, u64>,
    /// Digits pressed in the menu that are not among its options.
    pub invalid: u64,
    /// Times the menu's wait for a digit ran out.
    pub timeouts: u64,
    /// Callers who hung up while in this menu (not while a function rang or talked to them).
    pub hangups: u64,
}

/// The keypad order digits are listed in (CSV columns).
const KEYPAD: &str = "1234567890*#";

impl MenuFunnel {
    /// The digits that have a column in the CSV: every option pressed in any menu, in keypad order.
    pub fn option_digits(&self) -> Vec<String> {
        let pressed: BTreeSet<&String> = self.nodes.iter().flat_map(|n| n.options.keys()).collect();
        let mut digits: Vec<String> = pressed.into_iter().cloned().collect();
        digits.sort_by_key(|d| {
            d.chars()
                .next()
                .and_then(|c| KEYPAD.find(c))
                .unwrap_or(KEYPAD.len())
        });
        digits
    }

    /// The CSV header: `menu,reached,invalid,timeouts,hangups,option_1,option_3,...`.
    pub fn csv_header(&self) -> Vec<String> {
        ["menu", "reached", "invalid", "timeouts", "hangups"]
            .into_iter()
            .map(String::from)
            .chain(
                self.option_digits()
                    .into_iter()
                    .map(|d| format!("option_{d}")),
            )
            .collect()
    }

    /// One CSV row per node, matching [`MenuFunnel::csv_header`].
    pub fn csv_rows(&self) -> Vec<Vec<String>> {
        let digits = self.option_digits();
        self.nodes
            .iter()
            .map(|node| {
                [
                    node.menu.clone(),
                    node.reached.to_string(),
                    node.invalid.to_string(),
                    node.timeouts.to_string(),
                    node.hangups.to_string(),
                ]
                .into_iter()
                .chain(
                    digits
                        .iter()
                        .map(|d| node.options.get(d).copied().unwrap_or(0).to_string()),
                )
                .collect()
            })
            .collect()
    }
}

/// What one caller did in one menu.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Visit<'a> {
    menu: &'a str,
    /// The valid digits pressed there, one character per press.
    pressed: String,
    invalid: u64,
    timeouts: u64,
    hangups: u64,
}

/// One call's trail as visits, in the order the menus were first reached (each menu once).
fn visits(steps: &[Step]) -> Vec<Visit<'_>> {
    let mut visits: Vec<Visit<'_>> = Vec::new();
    // The menu the caller is in, as an index into `visits`; None while a hand-off runs (a hang-up then is not
    // the menu's).
    let mut current: Option<usize> = None;
    // The step before: a hang-up right after a valid digit came while that choice was being played out (the
    // function's announcement, its transfer prompt): the caller had chosen, and had left the menu.
    let mut after_choice = false;
    for step in steps {
        let visit = current.and_then(|index| visits.get_mut(index));
        let chose = matches!(step.kind, StepKind::Digit(_));
        match (&step.kind, visit) {
            (StepKind::EnteredMenu(menu), _) => {
                current = Some(match visits.iter().position(|v| v.menu == menu.as_str()) {
                    Some(index) => index,
                    None => {
                        visits.push(Visit {
                            menu,
                            pressed: String::new(),
                            invalid: 0,
                            timeouts: 0,
                            hangups: 0,
                        });
                        visits.len() - 1
                    }
                });
            }
            (StepKind::Digit(digit), Some(visit)) => visit.pressed.push(*digit),
            (StepKind::InvalidDigit(_), Some(visit)) => visit.invalid += 1,
            (StepKind::Timeout, Some(visit)) => visit.timeouts += 1,
            (StepKind::CallerHungUp, Some(visit)) if !after_choice => visit.hangups += 1,
            // Past the menu: a hang-up during a hand-off or a closed prompt is not the menu's.
            (StepKind::TransferStarted(_) | StepKind::Closed | StepKind::FunctionClosed(_), _) => {
                current = None
            }
            (
                StepKind::Digit(_)
                | StepKind::InvalidDigit(_)
                | StepKind::Timeout
                | StepKind::CallerHungUp
                | StepKind::Repeat
                | StepKind::Back
                | StepKind::TransferFailed(_)
                | StepKind::Transferred(_)
                | StepKind::Fallback
                | StepKind::Language(_)
                | StepKind::Hangup,
                _,
            ) => {}
        }
        after_choice = chose;
    }
    visits
}

/// Separates the visits of a [`funnel_summary`], and the fields of one visit; neither can be in a menu id or be
/// a DTMF digit.
const VISIT_SEPARATOR: char = ';';
const FIELD_SEPARATOR: char = ':';

/// One call's part of the menu funnel as the short text kept with its record (column `funnel`): per menu reached,
/// in the order first reached, `menu:pressed:invalid:timeouts:hangups`, joined by `;`, where `pressed` has one
/// character per valid digit pressed there. `root:3:1:0:0;it::0:0:1` is a caller who pressed a wrong digit and
/// then 3 in root, and hung up in menu `it`.
///
/// Why it exists: the funnel over a year reads this text from an index, several times faster than parsing every
/// call's step trail. `None` for a trail the text cannot carry (a menu id with a separator in it, written before
/// ids were checked): the funnel then reads that call's trail.
pub fn funnel_summary(steps: &[Step]) -> Option<String> {
    let mut summary = String::new();
    for visit in visits(steps) {
        let unsafe_char = |c: char| c == VISIT_SEPARATOR || c == FIELD_SEPARATOR;
        if visit.menu.contains(unsafe_char) || visit.pressed.contains(unsafe_char) {
            return None;
        }
        if !summary.is_empty() {
            summary.push(VISIT_SEPARATOR);
        }
        let Visit {
            menu,
            pressed,
            invalid,
            timeouts,
            hangups,
        } = visit;
        summary.push_str(&format!("{menu}:{pressed}:{invalid}:{timeouts}:{hangups}"));
    }
    Some(summary)
}

/// The funnel's nodes as they are added up.
#[derive(Debug, Default)]
struct FunnelTally {
    nodes: std::collections::HashMap<String, NodeTally>,
}

#[derive(Debug, Default)]
struct NodeTally {
    reached: u64,
    /// Presses per digit; a handful of digits, so a list beats a map.
    options: Vec<(char, u64)>,
    invalid: u64,
    timeouts: u64,
    hangups: u64,
}

impl FunnelTally {
    fn add(&mut self, visit: Visit<'_>) {
        if !self.nodes.contains_key(visit.menu) {
            self.nodes
                .insert(visit.menu.to_string(), NodeTally::default());
        }
        let Some(node) = self.nodes.get_mut(visit.menu) else {
            return;
        };
        node.reached += 1;
        for digit in visit.pressed.chars() {
            match node.options.iter_mut().find(|(d, _)| *d == digit) {
                Some((_, count)) => *count += 1,
                None => node.options.push((digit, 1)),
            }
        }
        node.invalid += visit.invalid;
        node.timeouts += visit.timeouts;
        node.hangups += visit.hangups;
    }

    /// Adds one call's [`funnel_summary`]; false (and nothing added) when the text is not one.
    fn add_summary(&mut self, summary: &str) -> bool {
        let mut parsed = Vec::new();
        for visit in summary.split(VISIT_SEPARATOR).filter(|v| !v.is_empty()) {
            let mut fields = visit.split(FIELD_SEPARATOR);
            let mut next = || fields.next();
            let (Some(menu), Some(pressed), Some(invalid), Some(timeouts), Some(hangups), None) =
                (next(), next(), next(), next(), next(), next())
            else {
                return false;
            };
            let (Ok(invalid), Ok(timeouts), Ok(hangups)) =
                (invalid.parse(), timeouts.parse(), hangups.parse())
            else {
                return false;
            };
            parsed.push(Visit {
                menu,
                pressed: pressed.to_string(),
                invalid,
                timeouts,
                hangups,
            });
        }
        for visit in parsed {
            self.add(visit);
        }
        true
    }

    fn into_funnel(self) -> MenuFunnel {
        let mut nodes: BTreeMap<String, FunnelNode> = self
            .nodes
            .into_iter()
            .map(|(menu, tally)| {
                let node = FunnelNode {
                    menu: menu.clone(),
                    reached: tally.reached,
                    options: tally
                        .options
                        .into_iter()
                        .map(|(digit, count)| (digit.to_string(), count))
                        .collect(),
                    invalid: tally.invalid,
                    timeouts: tally.timeouts,
                    hangups: tally.hangups,
                };
                (menu, node)
            })
            .collect();
        let root = nodes.remove(ROOT_MENU);
        MenuFunnel {
            nodes: root.into_iter().chain(nodes.into_values()).collect(),
        }
    }
}

/// The funnel of the calls started in `from..to`: from each record's [`funnel_summary`] (read from the
/// covering index `contact_records_funnel`), or from its step trail for the records without one (calls in
/// progress, and calls a crash cut short).
pub(super) fn menu_funnel(
    connection: &Connection,
    from: Timestamp,
    to: Timestamp,
) -> Result<MenuFunnel, StoreError> {
    // INDEXED BY: for a range of a month the planner (SQLite's stat4 weighs the bound values) went by the plain
    // started_at index and read every row for its funnel, ten times the pages of the whole year's index scan.
    let mut statement = connection.prepare_cached(
        "SELECT id, funnel FROM contact_records INDEXED BY contact_records_funnel
         WHERE started_at >= ?1 AND started_at < ?2",
    )?;
    let mut trail = connection.prepare_cached("SELECT steps FROM contact_records WHERE id = ?1")?;
    let mut rows = statement.query(params![stored(from), stored(to)])?;
    let mut tally = FunnelTally::default();
    let mut unreadable: Option<(i64, String, usize)> = None;
    while let Some(row) = rows.next()? {
        if let ValueRef::Text(summary) = row.get_ref(1)?
            && let Ok(summary) = std::str::from_utf8(summary)
            && tally.add_summary(summary)
        {
            continue;
        }
        let id: i64 = row.get(0)?;
        let steps: String = trail.query_row(params![id], |row| row.get(0))?;
        match serde_json::from_str::<Vec<Step>>(&steps) {
            Ok(steps) => visits(&steps).into_iter().for_each(|v| tally.add(v)),
            Err(error) => match &mut unreadable {
                Some((_, _, count)) => *count += 1,
                None => unreadable = Some((id, error.to_string(), 1)),
            },
        }
    }
    // One unreadable trail must not hide every other call's; one line names the first row for the admin.
    if let Some((row_id, error, count)) = unreadable {
        tracing::warn!(
            row_id,
            error,
            count,
            "contact record steps unreadable; left out of the menu funnel"
        );
    }
    Ok(tally.into_funnel())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::Outcome;
    use crate::records::{ContactRecord, ContactStore, RecordUpdate, SqliteStore};

    fn at(text: &str) -> time::OffsetDateTime {
        crate::records::parse_timestamp(text).unwrap()
    }

    fn ts(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    fn stockholm() -> TimeZone {
        time_zone(DEFAULT_TIME_ZONE).unwrap()
    }

    /// A finished call: answered `answer_s` after its start, held `menu_ms` in the menu, then ended its way.
    struct Seed {
        started: &'static str,
        function: Option<&'static str>,
        outcome: Option<Outcome>,
        menu_ms: Option<i64>,
    }

    fn put(store: &SqliteStore, record: &ContactRecord) {
        store
            .write(&[RecordUpdate::Whole(Box::new(record.clone()))])
            .unwrap();
    }

    fn seed(store: &SqliteStore, seeds: &[Seed]) {
        for (i, s) in seeds.iter().enumerate() {
            let started = at(s.started);
            let mut record = ContactRecord::started(format!("c{i}"), "0701", "0771", started);
            record.function = s.function.map(String::from);
            if let Some(menu_ms) = s.menu_ms {
                let answered = started + time::Duration::milliseconds(200);
                record.answered_at = Some(answered);
                let left = answered + time::Duration::milliseconds(menu_ms);
                if s.outcome == Some(Outcome::Transferred) {
                    record.transferred_at = Some(left);
                    record.finish(
                        Outcome::Transferred,
                        left + time::Duration::minutes(5),
                        "caller BYE",
                    );
                } else if let Some(outcome) = s.outcome {
                    record.finish(outcome, left, "caller BYE");
                }
            } else if let Some(outcome) = s.outcome {
                record.finish(outcome, started + time::Duration::seconds(3), "CANCEL");
            }
            put(store, &record);
        }
    }

    fn call(started: &'static str) -> Seed {
        Seed {
            started,
            function: Some("it"),
            outcome: Some(Outcome::Transferred),
            menu_ms: Some(1000),
        }
    }

    fn report(store: &SqliteStore, from: &str, to: &str, group_by: GroupBy) -> StatsReport {
        let query = StatsQuery::new(ts(from), ts(to), group_by, stockholm()).unwrap();
        store.stats(&query).unwrap()
    }

    fn keyed_calls(report: &StatsReport) -> Vec<(String, u64)> {
        report
            .rows
            .iter()
            .map(|r| (r.key.clone().unwrap_or_default(), r.calls))
            .collect()
    }

    #[test]
    fn days_are_local_days_the_spring_day_has_23_hours_and_a_call_counts_where_it_started() {
        let store = SqliteStore::open_in_memory().unwrap();
        seed(
            &store,
            &[
                // 23:59 on the 28th (+01:00), ends after midnight: counts on the 28th.
                call("2026-03-28T22:59:00Z"),
                // 00:30 on the 29th (+01:00).
                call("2026-03-28T23:30:00Z"),
                // 23:59:59 on the 29th (+02:00): the 29th has only 23 hours.
                call("2026-03-29T21:59:59.999Z"),
                // 00:00 on the 30th (+02:00).
                call("2026-03-29T22:00:00Z"),
                // Before `from` and at `to`: not counted.
                call("2026-03-27T22:59:59.999Z"),
                call("2026-03-30T22:00:00Z"),
            ],
        );
        let days = report(
            &store,
            "2026-03-28T00:00:00+01:00",
            "2026-03-31T00:00:00+02:00",
            GroupBy::Day,
        );
        assert_eq!(days.from, "2026-03-28T00:00:00+01:00");
        assert_eq!(days.to, "2026-03-31T00:00:00+02:00");
        assert_eq!(
            keyed_calls(&days),
            [
                ("2026-03-28T00:00:00+01:00".to_string(), 1),
                ("2026-03-29T00:00:00+01:00".to_string(), 2),
                ("2026-03-30T00:00:00+02:00".to_string(), 1),
            ]
        );
        let hours = report(
            &store,
            "2026-03-29T00:00:00+01:00",
            "2026-03-30T00:00:00+02:00",
            GroupBy::Hour,
        );
        let keys: Vec<String> = hours.rows.iter().filter_map(|r| r.key.clone()).collect();
        assert_eq!(keys.len(), 23, "{keys:?}");
        assert_eq!(keys[0], "2026-03-29T00:00:00+01:00");
        assert_eq!(keys[1], "2026-03-29T01:00:00+01:00");
        assert_eq!(keys[2], "2026-03-29T03:00:00+02:00");
        assert_eq!(keys[22], "2026-03-29T23:00:00+02:00");
        assert_eq!(hours.rows[0].calls, 1);
        assert_eq!(hours.rows[22].calls, 1);
        assert_eq!(hours.rows.iter().map(|r| r.calls).sum::<u64>(), 2);
        // Empty hours are rows of zeros with no menu time.
        assert_eq!(
            hours.rows[4],
            StatsRow {
                key: Some("2026-03-29T05:00:00+02:00".into()),
                ..StatsRow::default()
            }
        );
    }

    #[test]
    fn the_autumn_day_has_25_hours_and_the_repeated_hour_is_two_rows() {
        let store = SqliteStore::open_in_memory().unwrap();
        seed(
            &store,
            &[
                // 02:30 summer time, then 02:30 winter time an hour later.
                call("2026-10-25T00:30:00Z"),
                call("2026-10-25T01:30:00Z"),
                call("2026-10-25T01:45:00Z"),
                // 23:30 local, the day's last hour.
                call("2026-10-25T22:30:00Z"),
            ],
        );
        let hours = report(
            &store,
            "2026-10-25T00:00:00+02:00",
            "2026-10-26T00:00:00+01:00",
            GroupBy::Hour,
        );
        assert_eq!(hours.rows.len(), 25);
        let nonzero: Vec<(String, u64)> = keyed_calls(&hours)
            .into_iter()
            .filter(|(_, calls)| *calls > 0)
            .collect();
        assert_eq!(
            nonzero,
            [
                ("2026-10-25T02:00:00+02:00".to_string(), 1),
                ("2026-10-25T02:00:00+01:00".to_string(), 2),
                ("2026-10-25T23:00:00+01:00".to_string(), 1),
            ]
        );
        let day = report(
            &store,
            "2026-10-25T00:00:00+02:00",
            "2026-10-26T00:00:00+01:00",
            GroupBy::Day,
        );
        assert_eq!(
            keyed_calls(&day),
            [("2026-10-25T00:00:00+02:00".to_string(), 4)]
        );
        // Both 02:00 hours are Sunday 02 on the week's heat map.
        let heat = report(
            &store,
            "2026-10-25T00:00:00+02:00",
            "2026-10-26T00:00:00+01:00",
            GroupBy::WeekdayHour,
        );
        assert_eq!(heat.rows.len(), 168);
        assert_eq!(heat.rows[0].key.as_deref(), Some("mon 00"));
        let sunday_2 = &heat.rows[6 * 24 + 2];
        assert_eq!(
            (sunday_2.key.as_deref(), sunday_2.calls),
            (Some("sun 02"), 3)
        );
        assert_eq!(heat.rows[6 * 24 + 23].calls, 1);
        assert_eq!(heat.rows.iter().map(|r| r.calls).sum::<u64>(), 4);
    }

    #[test]
    fn weeks_start_on_monday_and_span_the_change_of_offset() {
        let store = SqliteStore::open_in_memory().unwrap();
        seed(
            &store,
            &[call("2026-03-29T10:00:00Z"), call("2026-03-30T10:00:00Z")],
        );
        let weeks = report(
            &store,
            "2026-03-25T12:00:00Z",
            "2026-04-01T00:00:00Z",
            GroupBy::Week,
        );
        assert_eq!(
            keyed_calls(&weeks),
            [
                ("2026-03-23T00:00:00+01:00".to_string(), 1),
                ("2026-03-30T00:00:00+02:00".to_string(), 1),
            ]
        );
    }

    fn function_seeds() -> Vec<Seed> {
        let mut seeds: Vec<Seed> = (1..=10)
            .map(|s| Seed {
                started: "2026-11-23T09:00:00Z",
                function: Some("it"),
                outcome: Some(if s <= 7 {
                    Outcome::Transferred
                } else {
                    Outcome::Abandoned
                }),
                menu_ms: Some(s * 1000),
            })
            .collect();
        seeds.extend([
            // Hung up while it rang: no answer, no menu time.
            Seed {
                started: "2026-11-23T09:10:00Z",
                function: None,
                outcome: Some(Outcome::Abandoned),
                menu_ms: None,
            },
            Seed {
                started: "2026-11-23T09:11:00Z",
                function: None,
                outcome: Some(Outcome::Timeout),
                menu_ms: Some(20_000),
            },
            Seed {
                started: "2026-11-23T09:12:00Z",
                function: Some("kundtjanst"),
                outcome: Some(Outcome::Failed),
                menu_ms: Some(4_500),
            },
            // Still in progress: counted as a call, nothing else.
            Seed {
                started: "2026-11-23T09:13:00Z",
                function: Some("kundtjanst"),
                outcome: None,
                menu_ms: None,
            },
            Seed {
                started: "2026-11-23T09:14:00Z",
                function: None,
                outcome: Some(Outcome::Rejected),
                menu_ms: None,
            },
        ]);
        seeds
    }

    #[test]
    fn functions_and_outcomes_are_counted_with_average_and_90th_percentile_menu_time() {
        let store = SqliteStore::open_in_memory().unwrap();
        seed(&store, &function_seeds());
        let (from, to) = ("2026-11-23T00:00:00+01:00", "2026-11-24T00:00:00+01:00");
        let by_function = report(&store, from, to, GroupBy::Function);
        assert_eq!(
            by_function.rows,
            [
                StatsRow {
                    key: Some("it".into()),
                    calls: 10,
                    transferred: 7,
                    abandoned: 3,
                    // 1 s .. 10 s: mean 5.5 s; the 9th of 10 sorted is the nearest-rank p90.
                    menu_time_avg_ms: Some(5500),
                    menu_time_p90_ms: Some(9000),
                    ..StatsRow::default()
                },
                StatsRow {
                    key: Some("kundtjanst".into()),
                    calls: 2,
                    failed: 1,
                    menu_time_avg_ms: Some(4500),
                    menu_time_p90_ms: Some(4500),
                    ..StatsRow::default()
                },
                StatsRow {
                    key: None,
                    calls: 3,
                    abandoned: 1,
                    timeout: 1,
                    rejected: 1,
                    menu_time_avg_ms: Some(20_000),
                    menu_time_p90_ms: Some(20_000),
                    ..StatsRow::default()
                },
            ]
        );
        let by_outcome = report(&store, from, to, GroupBy::Outcome);
        let summary: Vec<(Option<&str>, u64, Option<u64>)> = by_outcome
            .rows
            .iter()
            .map(|r| (r.key.as_deref(), r.calls, r.menu_time_avg_ms))
            .collect();
        assert_eq!(
            summary,
            [
                (Some("transferred"), 7, Some(4000)),
                // 8, 9, 10 s and one unanswered.
                (Some("abandoned"), 4, Some(9000)),
                (Some("timeout"), 1, Some(20_000)),
                (Some("failed"), 1, Some(4500)),
                (Some("rejected"), 1, None),
                (None, 1, None),
            ]
        );
        assert_eq!(by_outcome.rows[1].abandoned, 4);
        assert_eq!(by_outcome.rows[1].menu_time_p90_ms, Some(10_000));
    }

    #[test]
    fn a_function_filter_keeps_only_its_calls_in_every_grouping() {
        let store = SqliteStore::open_in_memory().unwrap();
        seed(&store, &function_seeds());
        let mut query = StatsQuery::new(
            ts("2026-11-23T00:00:00+01:00"),
            ts("2026-11-24T00:00:00+01:00"),
            GroupBy::Hour,
            stockholm(),
        )
        .unwrap();
        query.function = Some("kundtjanst".into());
        let hours = store.stats(&query).unwrap();
        assert_eq!(hours.rows.len(), 24);
        assert_eq!(
            hours.rows[10].key.as_deref(),
            Some("2026-11-23T10:00:00+01:00")
        );
        assert_eq!((hours.rows[10].calls, hours.rows[10].failed), (2, 1));
        assert_eq!(hours.rows.iter().map(|r| r.calls).sum::<u64>(), 2);
        query.group_by = GroupBy::Outcome;
        let outcomes = store.stats(&query).unwrap();
        assert_eq!(
            keyed_calls(&outcomes),
            [("failed".to_string(), 1), (String::new(), 1)]
        );
    }

    #[test]
    fn questions_that_cannot_be_answered_say_what_to_ask() {
        let zone = stockholm();
        let error = StatsQuery::new(
            ts("2026-11-24T00:00:00Z"),
            ts("2026-11-23T00:00:00Z"),
            GroupBy::Day,
            zone.clone(),
        )
        .unwrap_err();
        assert!(error.to_string().contains("later than from"), "{error}");
        let error = "month".parse::<GroupBy>().unwrap_err().to_string();
        assert!(error.contains("weekday_hour"), "{error}");
        let store = SqliteStore::open_in_memory().unwrap();
        let query = StatsQuery::new(
            ts("2000-01-01T00:00:00Z"),
            ts("2026-01-01T00:00:00Z"),
            GroupBy::Hour,
            zone.clone(),
        )
        .unwrap();
        let error = store.stats(&query).unwrap_err().to_string();
        assert!(error.contains("coarser group_by"), "{error}");
        let error = time_zone("Europe/Stokholm").unwrap_err().to_string();
        assert!(error.contains("IANA"), "{error}");
        let error = parse_instant("from", "yesterday", &zone)
            .unwrap_err()
            .to_string();
        assert!(error.contains("RFC 3339"), "{error}");
    }

    #[test]
    fn times_are_rfc3339_a_lost_plus_or_a_local_date() {
        let zone = stockholm();
        let expected = ts("2026-03-29T00:00:00+01:00");
        for text in [
            "2026-03-29T00:00:00+01:00",
            "2026-03-29T00:00:00 01:00",
            "2026-03-28T23:00:00Z",
            "2026-03-29",
        ] {
            assert_eq!(
                parse_instant("from", text, &zone).unwrap(),
                expected,
                "{text}"
            );
        }
        // A time without an offset is that local time, not the day's midnight; across DST too.
        for (local, instant) in [
            ("2026-12-01T06:45:00", "2026-12-01T05:45:00Z"),
            ("2026-12-01T06:45", "2026-12-01T05:45:00Z"),
            ("2026-12-01 06:45:30", "2026-12-01T05:45:30Z"),
            ("2026-03-29T03:00", "2026-03-29T01:00:00Z"),
            ("2026-03-29T02:30", "2026-03-29T01:30:00Z"),
            ("2026-10-25T02:30", "2026-10-25T00:30:00Z"),
        ] {
            assert_eq!(
                parse_instant("from", local, &zone).unwrap(),
                ts(instant),
                "{local}"
            );
        }
        for bad in [
            "2026-12-01T06:45:00garbage",
            "2026-12-01T25:00",
            "2026-12-01 noon",
        ] {
            assert!(parse_instant("from", bad, &zone).is_err(), "{bad}");
        }
    }

    #[test]
    fn queue_figures_count_waits_that_are_over_and_answers_within_the_service_level() {
        let store = SqliteStore::open_in_memory().unwrap();
        seed(
            &store,
            &[call("2026-11-24T09:00:00Z"), call("2026-11-24T09:01:00Z")],
        );
        // (wait in the queue in ms, the agent who answered)
        let waits: [(Option<i64>, Option<&str>); 6] = [
            (Some(5_000), Some("anna")),
            (Some(60_000), Some("bertil")), // exactly the service level: counts as in time
            (Some(60_001), Some("anna")),
            (Some(10_000), None),  // gave up after 10 s: counts against it
            (Some(200_000), None), // overflowed
            (None, None),          // waiting now: not counted yet
        ];
        // The overflow: waited 3 minutes in hr's queue, then handed to kt, where the call ended.
        let overflowed_at = at("2026-11-24T10:30:00Z");
        let mut overflowed = ContactRecord::started("o1", "0702", "0771", overflowed_at);
        overflowed.function = Some("kt".into());
        overflowed.queue = Some("hr".into());
        overflowed.answered_at = Some(overflowed_at);
        overflowed.queue_entered_at = Some(overflowed_at + time::Duration::seconds(5));
        overflowed.queue_wait_ms = Some(180_000);
        overflowed.finish(
            Outcome::Transferred,
            overflowed_at + time::Duration::minutes(9),
            "caller BYE",
        );
        put(&store, &overflowed);
        for (i, (wait_ms, agent)) in waits.into_iter().enumerate() {
            let started = at("2026-11-24T10:00:00Z") + time::Duration::minutes(i as i64);
            let mut record = ContactRecord::started(format!("q{i}"), "0701", "0771", started);
            record.function = Some("hr".into());
            record.queue = Some("hr".into());
            record.answered_at = Some(started);
            record.queue_entered_at = Some(started + time::Duration::seconds(5));
            record.queue_wait_ms = wait_ms;
            record.answered_by = agent.map(String::from);
            if agent.is_some() {
                record.transferred_at = Some(started + time::Duration::seconds(70));
                record.finish(
                    Outcome::Transferred,
                    started + time::Duration::minutes(9),
                    "caller BYE",
                );
            } else if wait_ms.is_some() {
                record.finish(
                    Outcome::Abandoned,
                    started + time::Duration::minutes(4),
                    "caller BYE",
                );
            }
            put(&store, &record);
        }
        let mut query = StatsQuery::new(
            ts("2026-11-24T00:00:00Z"),
            ts("2026-11-25T00:00:00Z"),
            GroupBy::Function,
            stockholm(),
        )
        .unwrap();
        let hr = |report: &StatsReport| {
            report
                .rows
                .iter()
                .find(|r| r.key.as_deref() == Some("hr"))
                .cloned()
                .unwrap()
        };
        let report = store.stats(&query).unwrap();
        assert_eq!(report.service_level_seconds, 60);
        let row = hr(&report);
        // The overflowed call is hr's wait but kt's call.
        assert_eq!((row.calls, row.queued, row.answered), (6, 6, 3));
        // (5000 + 60000 + 60001) / 3 = 41667 (rounded)
        assert_eq!(row.asa_ms, Some(41_667));
        // 2 of 6 answered within 60 s.
        assert_eq!(row.service_level, Some(0.3333));
        let kt = report
            .rows
            .iter()
            .find(|r| r.key.as_deref() == Some("kt"))
            .unwrap();
        assert_eq!(
            (kt.calls, kt.transferred, kt.queued, kt.service_level),
            (1, 1, 0, None)
        );
        let it = report
            .rows
            .iter()
            .find(|r| r.key.as_deref() == Some("it"))
            .unwrap();
        assert_eq!(
            (it.queued, it.answered, it.asa_ms, it.service_level),
            (0, 0, None, None)
        );

        query.service_level = std::time::Duration::from_secs(4);
        let row = hr(&store.stats(&query).unwrap());
        assert_eq!(row.service_level, Some(0.0));
        query.service_level = std::time::Duration::from_secs(120);
        let row = hr(&store.stats(&query).unwrap());
        assert_eq!(row.service_level, Some(0.5));
        query.function = Some("hr".into());
        let only_hr = store.stats(&query).unwrap();
        assert_eq!(only_hr.rows.len(), 1, "{only_hr:?}");
        assert_eq!((only_hr.rows[0].calls, only_hr.rows[0].queued), (6, 6));
        query.function = None;

        // The same figures per hour: all seven calls started in the 11:00 local hour.
        query.group_by = GroupBy::Hour;
        query.service_level = DEFAULT_SERVICE_LEVEL;
        let hours = store.stats(&query).unwrap();
        let eleven = hours
            .rows
            .iter()
            .find(|r| r.key.as_deref() == Some("2026-11-24T11:00:00+01:00"))
            .unwrap();
        assert_eq!(
            (
                eleven.queued,
                eleven.answered,
                eleven.asa_ms,
                eleven.service_level
            ),
            (6, 3, Some(41_667), Some(0.3333))
        );
        assert_eq!(eleven.calls, 7);
        let cells = eleven.csv_cells();
        assert_eq!(cells[9..], ["6", "3", "41667", "0.3333"]);
    }

    #[test]
    fn a_calls_bucket_is_the_last_starting_at_or_before_it_in_order_or_not() {
        let buckets: Vec<Bucket> = [
            "2026-03-01T00:00:00Z",
            "2026-03-01T01:00:00Z",
            "2026-03-01T02:00:00Z",
        ]
        .iter()
        .zip([0, 1, 0])
        .map(|(start, label)| Bucket {
            start: ts(start),
            label,
        })
        .collect();
        let mut bucketing = Bucketing::new(&buckets);
        let label =
            |bucketing: &mut Bucketing, at: &str| bucketing.label(stored(ts(at)).as_bytes());
        // In start order, as the queries read them, with a bucket skipped.
        assert_eq!(label(&mut bucketing, "2026-03-01T00:00:00Z"), Some(0));
        assert_eq!(label(&mut bucketing, "2026-03-01T00:59:59.999Z"), Some(0));
        assert_eq!(
            label(&mut bucketing, "2026-03-01T02:30:00Z"),
            Some(0),
            "the third bucket"
        );
        // Out of order: found all the same.
        assert_eq!(label(&mut bucketing, "2026-03-01T01:00:00Z"), Some(1));
        assert_eq!(
            label(&mut bucketing, "2026-02-28T23:59:59Z"),
            None,
            "before the first"
        );
        assert_eq!(label(&mut bucketing, "2026-03-01T01:30:00Z"), Some(1));
    }

    fn step(kind: StepKind) -> Step {
        Step { at_ms: 0, kind }
    }

    #[test]
    fn the_funnel_counts_callers_once_per_menu_and_every_press() {
        use StepKind::*;
        let calls: Vec<Vec<Step>> = vec![
            // Root, into "more", back to root (root reached once), 3 to it, hangs up while it rings.
            vec![
                step(EnteredMenu("root".into())),
                step(InvalidDigit('7')),
                step(Digit('9')),
                step(EnteredMenu("more".into())),
                step(Timeout),
                step(Digit('#')),
                step(Back),
                step(EnteredMenu("root".into())),
                step(Digit('3')),
                step(TransferStarted("it".into())),
                step(CallerHungUp),
            ],
            // Silence twice, then the fallback hangs up.
            vec![
                step(EnteredMenu("root".into())),
                step(Timeout),
                step(Repeat),
                step(Timeout),
                step(Fallback),
                step(Hangup),
            ],
            // Hangs up in "more".
            vec![
                step(EnteredMenu("root".into())),
                step(Digit('9')),
                step(EnteredMenu("more".into())),
                step(CallerHungUp),
            ],
            // Chooses 3 in "more" and hangs up during the function's transfer prompt: it had chosen, that is
            // no hang-up of the menu's.
            vec![
                step(EnteredMenu("root".into())),
                step(Digit('9')),
                step(EnteredMenu("more".into())),
                step(Digit('3')),
                step(CallerHungUp),
            ],
        ];
        let mut from_trails = FunnelTally::default();
        let mut from_summaries = FunnelTally::default();
        for steps in &calls {
            visits(steps).into_iter().for_each(|v| from_trails.add(v));
            let summary = funnel_summary(steps).unwrap();
            assert!(from_summaries.add_summary(&summary), "{summary}");
        }
        let funnel = from_trails.into_funnel();
        assert_eq!(
            funnel,
            from_summaries.into_funnel(),
            "the kept summary counts as the trail does"
        );
        assert_eq!(funnel.nodes[0].menu, "root", "root first");
        let nodes: BTreeMap<String, FunnelNode> = funnel
            .nodes
            .into_iter()
            .map(|n| (n.menu.clone(), n))
            .collect();
        let root = &nodes["root"];
        assert_eq!(
            (root.reached, root.invalid, root.timeouts, root.hangups),
            (4, 1, 2, 0)
        );
        assert_eq!(
            root.options,
            BTreeMap::from([("9".to_string(), 3), ("3".to_string(), 1)])
        );
        let more = &nodes["more"];
        assert_eq!(
            (more.reached, more.invalid, more.timeouts, more.hangups),
            (3, 0, 1, 1)
        );
        assert_eq!(
            more.options,
            BTreeMap::from([("#".to_string(), 1), ("3".to_string(), 1)])
        );
    }

    #[test]
    fn a_funnel_summary_is_short_and_anything_else_is_not_taken_for_one() {
        use StepKind::*;
        let steps = [
            step(EnteredMenu("root".into())),
            step(InvalidDigit('7')),
            step(Digit('3')),
            step(EnteredMenu("it".into())),
            step(CallerHungUp),
        ];
        assert_eq!(
            funnel_summary(&steps).as_deref(),
            Some("root:3:1:0:0;it::0:0:1")
        );
        assert_eq!(funnel_summary(&[]).as_deref(), Some(""), "no menu reached");
        assert_eq!(
            funnel_summary(&[step(EnteredMenu("a:b".into()))]),
            None,
            "an id the text cannot carry"
        );
        let mut tally = FunnelTally::default();
        for bad in ["root", "root:3:x:0:0", "root:3:1:0:0:9", "root:3:1:0"] {
            assert!(!tally.add_summary(bad), "{bad}");
        }
        assert!(tally.nodes.is_empty(), "a bad summary adds nothing");
    }

    #[test]
    fn the_funnel_reads_the_stored_trails_of_the_range_root_first() {
        let store = SqliteStore::open_in_memory().unwrap();
        let mut record = ContactRecord::started("c1", "a", "b", at("2026-11-23T10:00:00Z"));
        record.steps = serde_json::json!([
            {"at_ms": 0, "kind": "entered_menu", "value": "root"},
            {"at_ms": 900, "kind": "digit", "value": "9"},
            {"at_ms": 950, "kind": "entered_menu", "value": "aaa"},
            {"at_ms": 2000, "kind": "caller_hung_up"},
        ]);
        put(&store, &record);
        let mut broken = ContactRecord::started("c2", "a", "b", at("2026-11-23T10:01:00Z"));
        broken.steps = serde_json::json!([{"kind": "from a future knappval"}]);
        put(&store, &broken);
        let mut outside = ContactRecord::started("c3", "a", "b", at("2026-11-24T10:00:00Z"));
        outside.steps = record.steps.clone();
        put(&store, &outside);
        let funnel = store
            .menu_funnel(ts("2026-11-23T00:00:00Z"), ts("2026-11-24T00:00:00Z"))
            .unwrap();
        let menus: Vec<(&str, u64, u64)> = funnel
            .nodes
            .iter()
            .map(|n| (n.menu.as_str(), n.reached, n.hangups))
            .collect();
        assert_eq!(menus, [("root", 1, 0), ("aaa", 1, 1)]);
        assert_eq!(
            funnel.csv_header(),
            [
                "menu", "reached", "invalid", "timeouts", "hangups", "option_9"
            ]
        );
        assert_eq!(funnel.csv_rows()[0], ["root", "1", "0", "0", "0", "1"]);
    }
}
