//! The contact record: one row per call, the unit managers count, and its timestamp text form.
//!
//! Timestamps travel as RFC 3339 UTC with exactly three fraction digits (`2026-11-23T10:15:02.123Z`): the same
//! text in JSON, CSV and the SQLite columns, so that text order is time order and a record reads the same
//! everywhere. Precision below a millisecond is dropped when a timestamp is written.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, UtcOffset};

use crate::flow::Outcome;
use crate::menu::model::{FunctionId, MenuId, PromptId};

/// One call as the statistics see it. `outcome` is `None` only while the call is in progress.
#[derive(Debug, Clone, PartialEq)]
pub struct ContactRecord {
    /// knappval's own id for this record, see [`new_record_id`]. The key: two calls never share it, whatever
    /// their Call-IDs.
    pub id: String,
    /// The SIP Call-ID of the caller's leg. Not unique: trunks recycle Call-IDs, and a peer may reuse one.
    pub call_id: String,
    /// The caller's number or user, as taken from the From URI (`sip:` or `tel:`); see `crate::sip::message::caller_number`.
    pub from: String,
    /// The number or user the caller dialled, from the To (or Request-) URI.
    pub to: String,
    pub started_at: OffsetDateTime,
    /// When knappval answered (200 OK sent); `None` when the call was refused or abandoned while ringing.
    pub answered_at: Option<OffsetDateTime>,
    pub ended_at: Option<OffsetDateTime>,
    /// Every DTMF digit the caller pressed, in order, including invalid ones.
    pub digits: String,
    /// The menus the caller visited, in order, starting with `root`.
    pub path: Vec<MenuId>,
    /// The support function the caller chose, whether or not the hand-off succeeded.
    pub function: Option<FunctionId>,
    pub outcome: Option<Outcome>,
    /// The flow's timestamped steps, stored as given so the statistics can grow without a schema change.
    pub steps: serde_json::Value,
    /// The URI the call was handed to (the function's target).
    pub transfer_target: Option<String>,
    /// When the function answered (bridge) or the REFER succeeded.
    pub transferred_at: Option<OffsetDateTime>,
    /// Free text: "caller BYE", "function BYE", "488 no common codec", "shutdown", ...
    pub end_reason: Option<String>,
    /// The announcements the caller was played (service ones after the greeting, then the chosen function's),
    /// by prompt id, in order.
    pub announcements: Vec<PromptId>,
    /// The caller's language, with `languages:` in the menu (chosen, or the default).
    pub language: Option<String>,
    /// The queue the caller waited in: the first of the call, when its overflow led on to another function. The
    /// statistics count the wait there, not at the function the call ended with.
    pub queue: Option<FunctionId>,
    /// When the caller entered the first queue of the call (`None`: never queued).
    pub queue_entered_at: Option<OffsetDateTime>,
    /// From entering the first queue to an agent's answer, the caller hanging up or the overflow.
    pub queue_wait_ms: Option<i64>,
    /// The agent id (or fixed URI) who answered from a queue.
    pub answered_by: Option<String>,
    /// The menu the call ran on: the first 12 hex digits of the SHA-256 of the menu file's bytes, as
    /// `GET /api/v1/menu` shows it. `None` for records written before menus had versions.
    pub menu_version: Option<String>,
}

impl ContactRecord {
    /// A record for a call that has just arrived, with a new id: nothing pressed, nothing decided.
    pub fn started(
        call_id: impl Into<String>,
        from: impl Into<String>,
        to: impl Into<String>,
        started_at: OffsetDateTime,
    ) -> Self {
        ContactRecord {
            id: new_record_id(started_at),
            call_id: call_id.into(),
            from: from.into(),
            to: to.into(),
            started_at,
            answered_at: None,
            ended_at: None,
            digits: String::new(),
            path: Vec::new(),
            function: None,
            outcome: None,
            steps: serde_json::Value::Array(Vec::new()),
            transfer_target: None,
            transferred_at: None,
            end_reason: None,
            announcements: Vec::new(),
            language: None,
            queue: None,
            queue_entered_at: None,
            queue_wait_ms: None,
            answered_by: None,
            menu_version: None,
        }
    }

    /// Closes the record: sets the outcome, the end time and why it ended.
    pub fn finish(
        &mut self,
        outcome: Outcome,
        ended_at: OffsetDateTime,
        end_reason: impl Into<String>,
    ) {
        self.outcome = Some(outcome);
        self.ended_at = Some(ended_at);
        self.end_reason = Some(end_reason.into());
    }

    /// Takes the menu's latest state and returns what changed since the last call, for the store to write; `None`
    /// when nothing did. `new_steps` are the steps after those the record already has, so a call's steps are
    /// serialised once each, not once per event.
    pub fn advance(
        &mut self,
        digits: &str,
        path: &[MenuId],
        function: Option<&FunctionId>,
        new_steps: Vec<serde_json::Value>,
    ) -> Option<Progress> {
        let mut progress = Progress::of(self);
        if self.digits != digits {
            self.digits = digits.to_string();
            progress.digits = Some(self.digits.clone());
        }
        if self.path != path {
            self.path = path.to_vec();
            progress.path = Some(self.path.clone());
        }
        if function.is_some() && self.function.as_ref() != function {
            self.function = function.cloned();
            progress.function = self.function.clone();
        }
        if !new_steps.is_empty() {
            let steps = self.steps_mut();
            progress.first_step = steps.len();
            steps.extend(new_steps.iter().cloned());
            progress.steps = new_steps;
        }
        (!progress.is_empty()).then_some(progress)
    }

    /// Takes the announcements played so far and the caller's language; the change to write, if any.
    pub fn announced(
        &mut self,
        announcements: &[PromptId],
        language: Option<&str>,
    ) -> Option<Progress> {
        let mut progress = Progress::of(self);
        if self.announcements != announcements {
            self.announcements = announcements.to_vec();
            progress.announcements = Some(self.announcements.clone());
        }
        if language.is_some() && self.language.as_deref() != language {
            self.language = language.map(str::to_owned);
            progress.language = self.language.clone();
        }
        (!progress.is_empty()).then_some(progress)
    }

    /// How many steps the record holds.
    pub fn step_count(&self) -> usize {
        self.steps.as_array().map_or(0, Vec::len)
    }

    fn steps_mut(&mut self) -> &mut Vec<serde_json::Value> {
        if !self.steps.is_array() {
            self.steps = serde_json::Value::Array(Vec::new());
        }
        match &mut self.steps {
            serde_json::Value::Array(steps) => steps,
            _ => unreachable!("made an array above"),
        }
    }

    /// `ended_at - started_at` in whole milliseconds, as written; `None` while the call is in progress.
    ///
    /// Never negative: a wall clock stepped back by NTP mid-call must not produce a negative call length
    /// in the averages.
    pub fn duration_ms(&self) -> Option<i64> {
        let ended = self.ended_at?;
        let millis = unix_millis(ended) - unix_millis(self.started_at);
        Some(i64::try_from(millis.max(0)).unwrap_or(i64::MAX))
    }
}

/// What changed in a call's record since its last write: the store updates these columns only and appends
/// the new steps. `None` and empty mean "unchanged"; a progress never clears a field.
#[derive(Debug, Clone, PartialEq)]
pub struct Progress {
    /// The record's [`ContactRecord::id`].
    pub id: String,
    pub answered_at: Option<OffsetDateTime>,
    pub digits: Option<String>,
    pub path: Option<Vec<MenuId>>,
    pub function: Option<FunctionId>,
    pub transfer_target: Option<String>,
    pub transferred_at: Option<OffsetDateTime>,
    pub announcements: Option<Vec<PromptId>>,
    pub language: Option<String>,
    /// When the caller entered the first queue, and which: written at once, so a crash while waiting keeps it.
    pub queue_entered_at: Option<OffsetDateTime>,
    pub queue: Option<FunctionId>,
    pub answered_by: Option<String>,
    /// Written when an agent answers, so that the statistics of a call still talking know its wait.
    pub queue_wait_ms: Option<i64>,
    /// The index of `steps[0]` in the record's step list: writing a step twice (a batch retried after a commit
    /// that reported failure) leaves one copy.
    pub first_step: usize,
    pub steps: Vec<serde_json::Value>,
}

impl Progress {
    /// No change yet, for `record`.
    pub fn of(record: &ContactRecord) -> Progress {
        Progress {
            id: record.id.clone(),
            answered_at: None,
            digits: None,
            path: None,
            function: None,
            transfer_target: None,
            transferred_at: None,
            announcements: None,
            language: None,
            queue_entered_at: None,
            queue: None,
            answered_by: None,
            queue_wait_ms: None,
            first_step: record.step_count(),
            steps: Vec::new(),
        }
    }

    fn is_empty(&self) -> bool {
        self.answered_at.is_none()
            && self.digits.is_none()
            && self.path.is_none()
            && self.function.is_none()
            && self.transfer_target.is_none()
            && self.transferred_at.is_none()
            && self.announcements.is_none()
            && self.language.is_none()
            && self.queue_entered_at.is_none()
            && self.queue.is_none()
            && self.answered_by.is_none()
            && self.queue_wait_ms.is_none()
            && self.steps.is_empty()
    }
}

/// A new record id: a UUIDv7 (RFC 9562) in its usual text form, from the call's start time and 74 random bits.
///
/// Ours, not the Call-ID, because Call-IDs repeat; time-ordered, so ids sort like the calls and index well;
/// 74 random bits per millisecond, so several knappval nodes writing one PostgreSQL later need no coordination.
/// A dozen lines instead of a crate.
pub fn new_record_id(at: OffsetDateTime) -> String {
    let millis = u64::try_from(unix_millis(at)).unwrap_or(0) & 0xffff_ffff_ffff;
    let random: u128 = rand::random();
    let bits = (u128::from(millis) << 80)
        | (0x7 << 76) // version 7
        | ((random & 0xfff) << 64) // rand_a
        | (0b10 << 62) // variant
        | ((random >> 12) & 0x3fff_ffff_ffff_ffff); // rand_b
    let hex = format!("{bits:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

/// Milliseconds since the Unix epoch, truncated the way [`format_timestamp`] truncates.
fn unix_millis(t: OffsetDateTime) -> i128 {
    t.unix_timestamp_nanos().div_euclid(1_000_000)
}

/// `2026-11-23T10:15:02.123Z`: UTC, milliseconds, fixed width for years 0000-9999 (so text order is time order).
pub fn format_timestamp(t: OffsetDateTime) -> String {
    let t = t.to_offset(UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

/// Parses any RFC 3339 timestamp (any offset, any fraction) and returns it in UTC.
pub fn parse_timestamp(text: &str) -> Result<OffsetDateTime, time::error::Parse> {
    OffsetDateTime::parse(text, &Rfc3339).map(|t| t.to_offset(UtcOffset::UTC))
}

/// The JSON shape, field for field; borrowed so serialising a long list copies nothing.
#[derive(Serialize)]
struct RecordOut<'a> {
    id: &'a str,
    call_id: &'a str,
    from: &'a str,
    to: &'a str,
    started_at: String,
    answered_at: Option<String>,
    ended_at: Option<String>,
    duration_ms: Option<i64>,
    digits: &'a str,
    path: &'a [MenuId],
    function: Option<&'a str>,
    outcome: Option<Outcome>,
    transfer_target: Option<&'a str>,
    transferred_at: Option<String>,
    end_reason: Option<&'a str>,
    queue: Option<&'a str>,
    queue_entered_at: Option<String>,
    queue_wait_ms: Option<i64>,
    answered_by: Option<&'a str>,
    menu_version: Option<&'a str>,
    steps: &'a serde_json::Value,
    announcements: &'a [PromptId],
    language: Option<&'a str>,
}

impl Serialize for ContactRecord {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        RecordOut {
            id: &self.id,
            call_id: &self.call_id,
            from: &self.from,
            to: &self.to,
            started_at: format_timestamp(self.started_at),
            answered_at: self.answered_at.map(format_timestamp),
            ended_at: self.ended_at.map(format_timestamp),
            duration_ms: self.duration_ms(),
            digits: &self.digits,
            path: &self.path,
            function: self.function.as_deref(),
            outcome: self.outcome,
            transfer_target: self.transfer_target.as_deref(),
            transferred_at: self.transferred_at.map(format_timestamp),
            end_reason: self.end_reason.as_deref(),
            queue: self.queue.as_deref(),
            queue_entered_at: self.queue_entered_at.map(format_timestamp),
            queue_wait_ms: self.queue_wait_ms,
            answered_by: self.answered_by.as_deref(),
            menu_version: self.menu_version.as_deref(),
            steps: &self.steps,
            announcements: &self.announcements,
            language: self.language.as_deref(),
        }
        .serialize(serializer)
    }
}

/// What a record may look like when read back (a JSONL export, a later tool): `duration_ms` is accepted
/// but recomputed from the timestamps, so the two can never disagree.
#[derive(Deserialize)]
struct RecordIn {
    /// Absent in exports made before records had ids.
    #[serde(default)]
    id: String,
    call_id: String,
    from: String,
    to: String,
    started_at: String,
    #[serde(default)]
    answered_at: Option<String>,
    #[serde(default)]
    ended_at: Option<String>,
    #[serde(default)]
    digits: String,
    #[serde(default)]
    path: Vec<MenuId>,
    #[serde(default)]
    function: Option<FunctionId>,
    #[serde(default)]
    outcome: Option<Outcome>,
    #[serde(default)]
    transfer_target: Option<String>,
    #[serde(default)]
    transferred_at: Option<String>,
    #[serde(default)]
    end_reason: Option<String>,
    #[serde(default)]
    queue: Option<FunctionId>,
    #[serde(default)]
    queue_entered_at: Option<String>,
    #[serde(default)]
    queue_wait_ms: Option<i64>,
    #[serde(default)]
    answered_by: Option<String>,
    menu_version: Option<String>,
    #[serde(default = "empty_steps")]
    steps: serde_json::Value,
    /// Absent in exports made before announcements.
    #[serde(default)]
    announcements: Vec<PromptId>,
    #[serde(default)]
    language: Option<String>,
}

fn empty_steps() -> serde_json::Value {
    serde_json::Value::Array(Vec::new())
}

impl<'de> Deserialize<'de> for ContactRecord {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = RecordIn::deserialize(deserializer)?;
        let time = |field: &'static str, text: &str| {
            parse_timestamp(text).map_err(|e| {
                serde::de::Error::custom(BadTimestamp {
                    field,
                    text: text.to_string(),
                    reason: e.to_string(),
                })
            })
        };
        let optional_time = |field: &'static str, text: Option<String>| match text {
            Some(text) => time(field, &text).map(Some),
            None => Ok(None),
        };
        Ok(ContactRecord {
            started_at: time("started_at", &raw.started_at)?,
            answered_at: optional_time("answered_at", raw.answered_at)?,
            ended_at: optional_time("ended_at", raw.ended_at)?,
            transferred_at: optional_time("transferred_at", raw.transferred_at)?,
            id: raw.id,
            queue: raw.queue,
            queue_entered_at: optional_time("queue_entered_at", raw.queue_entered_at)?,
            queue_wait_ms: raw.queue_wait_ms,
            answered_by: raw.answered_by,
            call_id: raw.call_id,
            from: raw.from,
            to: raw.to,
            digits: raw.digits,
            path: raw.path,
            function: raw.function,
            outcome: raw.outcome,
            steps: raw.steps,
            transfer_target: raw.transfer_target,
            end_reason: raw.end_reason,
            announcements: raw.announcements,
            language: raw.language,
            menu_version: raw.menu_version,
        })
    }
}

struct BadTimestamp {
    field: &'static str,
    text: String,
    reason: String,
}

impl fmt::Display for BadTimestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} '{}' is not an RFC 3339 timestamp ({}); write it like 2026-11-23T10:15:02.123Z",
            self.field, self.text, self.reason
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn finished_record() -> ContactRecord {
        let mut record = ContactRecord::started(
            "a84b4c76e66710@pc33",
            "0701234567",
            "0771-100200",
            datetime!(2026-11-23 10:15:02.123 UTC),
        );
        record.id = "0196b4f2-1c3b-7abc-8def-0123456789ab".into();
        record.answered_at = Some(datetime!(2026-11-23 10:15:02.400 UTC));
        record.digits = "12".into();
        record.path = vec!["root".into(), "it".into()];
        record.function = Some("it-kundservice".into());
        record.transfer_target = Some("sip:it@127.0.0.1:5071".into());
        record.transferred_at = Some(datetime!(2026-11-23 10:15:20.000 UTC));
        record.steps = serde_json::json!([{"at": "2026-11-23T10:15:02.400Z", "step": "answered"}]);
        record.announcements = vec!["email-down".into()];
        record.menu_version = Some("3f2a9c0b41de".into());
        record.finish(
            Outcome::Transferred,
            datetime!(2026-11-23 10:19:02.623 UTC),
            "function BYE",
        );
        record
    }

    #[test]
    fn timestamps_are_utc_with_three_fraction_digits() {
        assert_eq!(
            format_timestamp(datetime!(2026-11-23 11:15:02.123456 +01:00)),
            "2026-11-23T10:15:02.123Z"
        );
        assert_eq!(
            format_timestamp(datetime!(2026-01-02 03:04:05 UTC)),
            "2026-01-02T03:04:05.000Z"
        );
        assert_eq!(
            parse_timestamp("2026-11-23T11:15:02.5+01:00").unwrap(),
            datetime!(2026-11-23 10:15:02.5 UTC)
        );
        assert!(parse_timestamp("2026-11-23 10:15").is_err());
    }

    #[test]
    fn json_uses_the_documented_field_names_and_shapes() {
        let json = serde_json::to_value(finished_record()).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "id": "0196b4f2-1c3b-7abc-8def-0123456789ab",
                "call_id": "a84b4c76e66710@pc33",
                "from": "0701234567",
                "to": "0771-100200",
                "started_at": "2026-11-23T10:15:02.123Z",
                "answered_at": "2026-11-23T10:15:02.400Z",
                "ended_at": "2026-11-23T10:19:02.623Z",
                "duration_ms": 240_500,
                "digits": "12",
                "path": ["root", "it"],
                "function": "it-kundservice",
                "outcome": "transferred",
                "transfer_target": "sip:it@127.0.0.1:5071",
                "transferred_at": "2026-11-23T10:15:20.000Z",
                "end_reason": "function BYE",
                "queue": null,
                "queue_entered_at": null,
                "queue_wait_ms": null,
                "answered_by": null,
                "menu_version": "3f2a9c0b41de",
                "steps": [{"at": "2026-11-23T10:15:02.400Z", "step": "answered"}],
                "announcements": ["email-down"],
                "language": null,
            })
        );
    }

    #[test]
    fn a_call_in_progress_has_null_outcome_end_and_duration() {
        let record = ContactRecord::started("x", "a", "b", datetime!(2026-11-23 10:00 UTC));
        let json = serde_json::to_value(&record).unwrap();
        assert!(json["outcome"].is_null());
        assert!(json["ended_at"].is_null());
        assert!(json["duration_ms"].is_null());
        assert_eq!(json["path"], serde_json::json!([]));
    }

    #[test]
    fn json_round_trips_and_duration_is_recomputed() {
        let record = finished_record();
        let mut json = serde_json::to_value(&record).unwrap();
        json["duration_ms"] = serde_json::json!(1);
        let back: ContactRecord = serde_json::from_value(json).unwrap();
        assert_eq!(back, record);
        assert_eq!(back.duration_ms(), Some(240_500));
    }

    #[test]
    fn a_bad_timestamp_names_the_field() {
        let mut json = serde_json::to_value(finished_record()).unwrap();
        json["ended_at"] = serde_json::json!("yesterday");
        let error = serde_json::from_value::<ContactRecord>(json).unwrap_err();
        assert!(
            error.to_string().contains("ended_at 'yesterday'"),
            "{error}"
        );
    }

    #[test]
    fn record_ids_are_uuid_v7_ordered_by_time_and_unique() {
        let at = datetime!(2026-11-23 10:15:02.123 UTC);
        let id = new_record_id(at);
        assert_eq!(id.len(), 36, "{id}");
        let dashes: Vec<usize> = id.match_indices('-').map(|(i, _)| i).collect();
        assert_eq!(dashes, [8, 13, 18, 23], "{id}");
        assert_eq!(&id[14..15], "7", "version nibble: {id}");
        assert!(
            matches!(&id[19..20], "8" | "9" | "a" | "b"),
            "variant: {id}"
        );
        // The first 48 bits are the start in Unix milliseconds.
        let millis = u64::from_str_radix(&id[..13].replace('-', ""), 16).unwrap();
        assert_eq!(i128::from(millis), unix_millis(at));
        let later = new_record_id(at + time::Duration::milliseconds(1));
        assert!(later > id, "{later} sorts after {id}");
        let same_ms: std::collections::HashSet<String> =
            (0..1000).map(|_| new_record_id(at)).collect();
        assert_eq!(same_ms.len(), 1000);
    }

    #[test]
    fn advance_reports_only_what_changed_and_only_the_new_steps() {
        let mut record = ContactRecord::started("x", "a", "b", datetime!(2026-11-23 10:00 UTC));
        let root = vec![MenuId::from("root")];
        let step = |n: u64| serde_json::json!({ "at_ms": n, "kind": "timeout" });
        let first = record
            .advance("", &root, None, vec![step(1), step(2)])
            .expect("path and steps changed");
        assert_eq!(first.id, record.id);
        assert_eq!(first.path.as_deref(), Some(&root[..]));
        assert_eq!((first.digits.clone(), first.function.clone()), (None, None));
        assert_eq!((first.first_step, first.steps.len()), (0, 2));
        assert!(record.advance("", &root, None, Vec::new()).is_none());
        let it = FunctionId::from("it");
        let second = record
            .advance("3", &root, Some(&it), vec![step(3)])
            .expect("digit, function and a step");
        assert_eq!(second.digits.as_deref(), Some("3"));
        assert_eq!(second.path, None);
        assert_eq!(second.function.as_deref(), Some("it"));
        assert_eq!(
            (second.first_step, second.steps.clone()),
            (2, vec![step(3)])
        );
        assert_eq!(record.step_count(), 3);
        assert_eq!(record.digits, "3");
    }

    #[test]
    fn duration_is_never_negative_and_uses_written_milliseconds() {
        let mut record =
            ContactRecord::started("x", "a", "b", datetime!(2026-11-23 10:00:00.9999 UTC));
        record.ended_at = Some(datetime!(2026-11-23 10:00:01.0001 UTC));
        // As written: 10:00:00.999 -> 10:00:01.000.
        assert_eq!(record.duration_ms(), Some(1));
        record.ended_at = Some(datetime!(2026-11-23 09:59:00 UTC));
        assert_eq!(record.duration_ms(), Some(0));
    }
}
