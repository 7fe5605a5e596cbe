//! Opening hours, for the whole service (`hours:` at the top of the menu file) or one function: whether they are
//! open at an instant, as a pure function of that instant, so the daemon, `knappval simulate` and `knappval check`
//! all ask the same code. Also the small text forms the admin writes (`mon-fri`, `"08:00-16:30"`, `2026-12-28`),
//! parsed into values or into an explanation of what is wrong.
//!
//! Owns no clock: the caller passes the instant. The time zone comes from jiff's bundled tzdb, so the answer does
//! not depend on the host's /usr/share/zoneinfo, and daylight saving time is handled by converting the instant to
//! the service's local civil time first: "08:00" means 08:00 on the wall clock in Stockholm, summer or winter.
//!
//! # Rules for one local date, first match wins
//! 1. `closed_on` lists the date: closed all day.
//! 2. `special` names the date: its ranges (may be `closed`), even on a holiday.
//! 3. `holidays: se` and the date is a Swedish public holiday or eve ([`super::holidays`]): closed all day.
//! 4. `weekly` for the date's weekday; a weekday not listed is closed. Without `weekly:` every day is open all day.
//!
//! A range includes its start and excludes its end: with `"08:00-16:30"` the service is open at 08:00:00 and
//! closed at 16:30:00. Ranges do not cross midnight (`24:00` may end one).

use std::collections::{BTreeMap, BTreeSet};

use jiff::Timestamp;
use jiff::civil::{Date, Weekday};
use jiff::tz::TimeZone;

use super::holidays::swedish_holiday;
use super::model::{FunctionId, PromptId};

/// The time zone of hours that name none.
pub const DEFAULT_TIMEZONE: &str = "Europe/Stockholm";

/// The day names `weekly:` takes, Monday first (the index is [`Weekday::to_monday_zero_offset`]).
pub const DAY_NAMES: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

/// Opening hours as validated.
#[derive(Debug, Clone, PartialEq)]
pub struct Hours {
    pub timezone: TimeZone,
    /// The IANA name as written (or [`DEFAULT_TIMEZONE`]), for messages.
    pub timezone_name: String,
    /// Open ranges per weekday, Monday first; an empty list is a closed day.
    pub weekly: [Vec<OpenRange>; 7],
    /// Whether the Swedish public holidays and eves are closed days.
    pub holidays: bool,
    /// Extra closed dates.
    pub closed_on: BTreeSet<Date>,
    /// Other hours on these dates (an empty list: closed that day).
    pub special: BTreeMap<Date, Vec<OpenRange>>,
    /// What a caller hears and where the call goes while closed.
    pub closed: Closed,
}

/// A range of one day, in minutes after local midnight: open from `start` (included) to `end` (excluded).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct OpenRange {
    pub start: u16,
    pub end: u16,
}

/// The `closed:` block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Closed {
    /// Played to the caller first ("Vi har stängt ..."); none: the action follows at once.
    pub prompt: Option<PromptId>,
    pub then: ClosedAction,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClosedAction {
    /// End the call; the record's outcome is `closed`.
    Hangup,
    /// Hand the call to this function instead.
    Route(FunctionId),
}

/// Whether the hours are open at an instant, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    Open,
    /// Outside the day's ranges (weekly or special).
    ClosedNow,
    /// A date under `closed_on`.
    ClosedOn,
    /// A Swedish holiday or eve, by name.
    Holiday(&'static str),
}

impl Status {
    pub fn is_open(&self) -> bool {
        *self == Status::Open
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Status::Open => f.write_str("open"),
            Status::ClosedNow => f.write_str("closed (outside opening hours)"),
            Status::ClosedOn => f.write_str("closed (a date under closed_on)"),
            Status::Holiday(name) => write!(f, "closed ({name})"),
        }
    }
}

impl Hours {
    /// Open all day every day, closing with a hang-up: the base the YAML's keys change.
    pub fn always_open() -> Hours {
        Hours {
            timezone: TimeZone::UTC,
            timezone_name: "UTC".to_owned(),
            weekly: std::array::from_fn(|_| vec![OpenRange::WHOLE_DAY]),
            holidays: false,
            closed_on: BTreeSet::new(),
            special: BTreeMap::new(),
            closed: Closed {
                prompt: None,
                then: ClosedAction::Hangup,
            },
        }
    }

    pub fn is_open(&self, at: Timestamp) -> bool {
        self.status(at).is_open()
    }

    pub fn status(&self, at: Timestamp) -> Status {
        let local = self.timezone.to_datetime(at);
        let date = local.date();
        let time = local.time();
        let second_of_day = i32::from(time.hour()) * 3600
            + i32::from(time.minute()) * 60
            + i32::from(time.second());
        let ranges = match self.day_rule(date) {
            Ok(ranges) => ranges,
            Err(closed) => return closed,
        };
        let open = ranges.iter().any(|range| {
            i32::from(range.start) * 60 <= second_of_day
                && second_of_day < i32::from(range.end) * 60
        });
        if open {
            Status::Open
        } else {
            Status::ClosedNow
        }
    }

    /// The ranges that apply on a local date, or why the whole date is closed.
    pub fn day_rule(&self, date: Date) -> Result<&[OpenRange], Status> {
        if self.closed_on.contains(&date) {
            return Err(Status::ClosedOn);
        }
        if let Some(ranges) = self.special.get(&date) {
            return Ok(ranges);
        }
        if self.holidays
            && let Some(name) = swedish_holiday(date)
        {
            return Err(Status::Holiday(name));
        }
        Ok(&self.weekly[weekday_index(date.weekday())])
    }

    /// No weekday has a range and no special date opens: callers would always hear the closed message.
    pub fn never_open(&self) -> bool {
        self.weekly.iter().all(Vec::is_empty) && self.special.values().all(Vec::is_empty)
    }

    /// Every prompt these hours may play.
    pub fn prompt_ids(&self) -> impl Iterator<Item = &PromptId> {
        self.closed.prompt.iter()
    }
}

impl OpenRange {
    pub const WHOLE_DAY: OpenRange = OpenRange {
        start: 0,
        end: 24 * 60,
    };
}

impl std::fmt::Display for OpenRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:02}:{:02}-{:02}:{:02}",
            self.start / 60,
            self.start % 60,
            self.end / 60,
            self.end % 60
        )
    }
}

fn weekday_index(day: Weekday) -> usize {
    usize::try_from(day.to_monday_zero_offset()).unwrap_or(0)
}

/// A problem in one of the hours' text forms: what is wrong and how to write it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormError {
    pub message: String,
    pub help: String,
}

fn form_error(message: impl Into<String>, help: impl Into<String>) -> FormError {
    FormError {
        message: message.into(),
        help: help.into(),
    }
}

/// `mon`, `mon-fri`, `sat-sun`: the weekday indexes (Monday = 0) the key covers.
pub fn parse_days(key: &str) -> Result<Vec<usize>, FormError> {
    let key = key.trim();
    let day = |name: &str| -> Result<usize, FormError> {
        let lower = name.trim().to_lowercase();
        DAY_NAMES.iter().position(|d| *d == lower).ok_or_else(|| {
            form_error(
                format!("'{}' is not a day name", name.trim()),
                day_help(&lower),
            )
        })
    };
    match key.split_once('-') {
        None => Ok(vec![day(key)?]),
        Some((first, last)) => {
            let (first, last) = (day(first)?, day(last)?);
            if first > last {
                return Err(form_error(
                    format!("the day range '{key}' runs backwards"),
                    format!(
                        "weeks run mon..sun: write {}-sun and mon-{} as two keys",
                        DAY_NAMES[first], DAY_NAMES[last]
                    ),
                ));
            }
            Ok((first..=last).collect())
        }
    }
}

fn day_help(word: &str) -> String {
    // Admins write Swedish or full English names; point them at the short form.
    const LONG: [(&str, usize); 14] = [
        ("monday", 0),
        ("tuesday", 1),
        ("wednesday", 2),
        ("thursday", 3),
        ("friday", 4),
        ("saturday", 5),
        ("sunday", 6),
        ("mån", 0),
        ("tis", 1),
        ("ons", 2),
        ("tor", 3),
        ("fre", 4),
        ("lör", 5),
        ("sön", 6),
    ];
    let prefix: String = word.chars().take(3).collect();
    let guess = LONG
        .iter()
        .find(|(name, _)| *name == word || name.starts_with(&prefix))
        .map(|(_, index)| DAY_NAMES[*index]);
    match guess {
        Some(short) => format!(
            "did you mean '{short}'? Days are mon, tue, wed, thu, fri, sat, sun; a range is mon-fri"
        ),
        None => "days are mon, tue, wed, thu, fri, sat, sun; a range is mon-fri".to_owned(),
    }
}

/// `"08:00-16:30"`, `"08:00-12:00, 13:00-16:30"` or `closed`: the day's open ranges, sorted.
pub fn parse_ranges(text: &str) -> Result<Vec<OpenRange>, FormError> {
    let text = text.trim();
    if text.eq_ignore_ascii_case("closed") {
        return Ok(Vec::new());
    }
    let mut ranges = Vec::new();
    for part in text.split(',') {
        ranges.push(parse_range(part.trim())?);
    }
    ranges.sort();
    if let Some(pair) = ranges.windows(2).find(|pair| pair[1].start < pair[0].end) {
        return Err(form_error(
            format!("the ranges {} and {} overlap", pair[0], pair[1]),
            format!(
                "merge them into one, e.g. {}",
                OpenRange {
                    start: pair[0].start,
                    end: pair[0].end.max(pair[1].end)
                }
            ),
        ));
    }
    Ok(ranges)
}

fn parse_range(text: &str) -> Result<OpenRange, FormError> {
    const SHAPE: &str = "write opening hours as \"08:00-16:30\" (24-hour clock, quoted), several as \
                         \"08:00-12:00, 13:00-16:30\", or closed";
    let Some((start, end)) = text.split_once('-') else {
        return Err(form_error(format!("'{text}' is not a time range"), SHAPE));
    };
    let start = parse_clock(start.trim(), false).map_err(|m| form_error(m, SHAPE))?;
    let end = parse_clock(end.trim(), true).map_err(|m| form_error(m, SHAPE))?;
    if end <= start {
        let range = OpenRange { start, end };
        return Err(form_error(
            format!("the range '{text}' closes before it opens"),
            format!(
                "a range stays within one day: for hours past midnight write {}-24:00 on this day and \
                 00:00-{} on the next",
                &range.to_string()[..5],
                &range.to_string()[6..]
            ),
        ));
    }
    Ok(OpenRange { start, end })
}

/// `HH:MM` (or `H:MM`) in minutes after midnight; `24:00` only as an end.
fn parse_clock(text: &str, is_end: bool) -> Result<u16, String> {
    let bad = || format!("'{text}' is not a time of day (HH:MM)");
    let (hours, minutes) = text.split_once(':').ok_or_else(bad)?;
    if hours.is_empty() || hours.len() > 2 || minutes.len() != 2 {
        return Err(bad());
    }
    let hours: u16 = hours.parse().map_err(|_| bad())?;
    let minutes: u16 = minutes.parse().map_err(|_| bad())?;
    match (hours, minutes) {
        (24, 0) if is_end => Ok(24 * 60),
        (0..=23, 0..=59) => Ok(hours * 60 + minutes),
        _ => Err(bad()),
    }
}

/// `2026-12-28`.
pub fn parse_date(text: &str) -> Result<Date, FormError> {
    let text = text.trim();
    let shaped = text.len() == 10
        && text.char_indices().all(|(i, c)| {
            if i == 4 || i == 7 {
                c == '-'
            } else {
                c.is_ascii_digit()
            }
        });
    let help = "write dates as YYYY-MM-DD, e.g. 2026-12-28";
    if !shaped {
        return Err(form_error(format!("'{text}' is not a date"), help));
    }
    text.parse::<Date>()
        .map_err(|_| form_error(format!("'{text}' is not a date in the calendar"), help))
}

/// An IANA time zone name from the bundled database.
pub fn parse_timezone(name: &str) -> Result<TimeZone, FormError> {
    TimeZone::get(name.trim()).map_err(|_| {
        form_error(
            format!("unknown time zone '{}'", name.trim()),
            format!("use an IANA name such as {DEFAULT_TIMEZONE}, Europe/Helsinki or UTC"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::date;

    fn office() -> Hours {
        let mut hours = Hours::always_open();
        hours.timezone = parse_timezone(DEFAULT_TIMEZONE).unwrap();
        hours.timezone_name = DEFAULT_TIMEZONE.to_owned();
        hours.weekly = std::array::from_fn(|_| Vec::new());
        for day in parse_days("mon-thu").unwrap() {
            hours.weekly[day] = parse_ranges("08:00-16:30").unwrap();
        }
        hours.weekly[4] = parse_ranges("08:00-15:00").unwrap();
        hours.holidays = true;
        hours.closed_on.insert(date(2026, 12, 28));
        hours
            .special
            .insert(date(2026, 4, 30), parse_ranges("08:00-12:00").unwrap());
        hours
    }

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    #[test]
    fn a_range_opens_at_its_start_and_is_closed_at_its_end() {
        let hours = office();
        // Tuesday 2026-12-01, winter time (UTC+1).
        assert!(!hours.is_open(at("2026-12-01T06:59:59Z")), "07:59:59 local");
        assert!(hours.is_open(at("2026-12-01T07:00:00Z")), "08:00:00 local");
        assert!(hours.is_open(at("2026-12-01T15:29:59Z")), "16:29:59 local");
        assert!(!hours.is_open(at("2026-12-01T15:30:00Z")), "16:30:00 local");
        // Friday closes at 15:00.
        assert!(hours.is_open(at("2026-12-04T13:59:59Z")));
        assert!(!hours.is_open(at("2026-12-04T14:00:00Z")));
        // Saturday: not in weekly.
        assert_eq!(hours.status(at("2026-12-05T10:00:00Z")), Status::ClosedNow);
    }

    #[test]
    fn opening_time_follows_the_wall_clock_across_dst() {
        let hours = office();
        // Summer time begins Sunday 2026-03-29: 08:00 is 07:00Z the Friday before, 06:00Z the Monday after.
        assert!(!hours.is_open(at("2026-03-27T06:59:59Z")));
        assert!(hours.is_open(at("2026-03-27T07:00:00Z")));
        assert!(!hours.is_open(at("2026-03-30T05:59:59Z")));
        assert!(hours.is_open(at("2026-03-30T06:00:00Z")));
        assert!(hours.is_open(at("2026-03-30T14:29:59Z")), "16:29:59 CEST");
        assert!(!hours.is_open(at("2026-03-30T14:30:00Z")), "16:30 CEST");
        // Winter time returns Sunday 2026-10-25: 08:00 is 06:00Z on Friday 23rd, 07:00Z on Monday 26th.
        assert!(hours.is_open(at("2026-10-23T06:00:00Z")));
        assert!(!hours.is_open(at("2026-10-26T06:59:59Z")));
        assert!(hours.is_open(at("2026-10-26T07:00:00Z")));
        assert!(!hours.is_open(at("2026-10-26T15:30:00Z")), "16:30 CET");
    }

    #[test]
    fn ranges_through_the_changed_hour_on_the_dst_sundays() {
        let mut hours = office();
        hours.weekly[6] = parse_ranges("01:00-04:00").unwrap();
        // 2026-03-29: local 02:00-03:00 does not exist; 01:59 CET (00:59Z) and 03:00 CEST (01:00Z) are open,
        // and the range ends at 04:00 CEST (02:00Z).
        assert!(!hours.is_open(at("2026-03-28T23:59:59Z")), "00:59:59 CET");
        assert!(hours.is_open(at("2026-03-29T00:59:00Z")));
        assert!(hours.is_open(at("2026-03-29T01:00:00Z")));
        assert!(hours.is_open(at("2026-03-29T01:59:59Z")));
        assert!(!hours.is_open(at("2026-03-29T02:00:00Z")));
        // 2026-10-25: local 02:00-03:00 happens twice (00:00Z-01:00Z CEST, 01:00Z-02:00Z CET): open both times,
        // and the range ends at 04:00 CET (03:00Z), four hours after it opened at 01:00 CEST (23:00Z).
        assert!(!hours.is_open(at("2026-10-24T22:59:59Z")));
        assert!(hours.is_open(at("2026-10-24T23:00:00Z")));
        assert!(hours.is_open(at("2026-10-25T00:30:00Z")));
        assert!(hours.is_open(at("2026-10-25T01:30:00Z")));
        assert!(hours.is_open(at("2026-10-25T02:59:59Z")));
        assert!(!hours.is_open(at("2026-10-25T03:00:00Z")));
    }

    #[test]
    fn closed_on_beats_special_beats_holidays_beats_weekly() {
        let mut hours = office();
        // Valborgsmässoafton (Thursday): special hours.
        assert!(hours.is_open(at("2026-04-30T09:59:59Z")), "11:59 CEST");
        assert!(!hours.is_open(at("2026-04-30T10:00:00Z")), "12:00 CEST");
        // Långfredagen and julafton are closed all day.
        assert_eq!(
            hours.status(at("2026-04-03T09:00:00Z")),
            Status::Holiday("långfredagen")
        );
        assert_eq!(
            hours.status(at("2026-12-24T09:00:00Z")),
            Status::Holiday("julafton")
        );
        // Monday 28 December: closed_on.
        assert_eq!(hours.status(at("2026-12-28T09:00:00Z")), Status::ClosedOn);
        // A special date opens a holiday; closed_on wins over it.
        hours
            .special
            .insert(date(2026, 12, 24), parse_ranges("09:00-12:00").unwrap());
        assert!(hours.is_open(at("2026-12-24T09:00:00Z")));
        hours.closed_on.insert(date(2026, 12, 24));
        assert!(!hours.is_open(at("2026-12-24T09:00:00Z")));
        // Without holidays: se, julafton is an ordinary Thursday.
        hours.holidays = false;
        assert!(hours.is_open(at("2026-04-03T09:00:00Z")));
    }

    #[test]
    fn the_local_date_decides_not_the_utc_date() {
        let mut hours = office();
        hours.weekly = std::array::from_fn(|_| vec![OpenRange::WHOLE_DAY]);
        // 23:30Z on 23 December is 00:30 on julafton in Stockholm.
        assert!(hours.is_open(at("2026-12-23T22:59:59Z")));
        assert!(!hours.is_open(at("2026-12-23T23:30:00Z")));
    }

    #[test]
    fn day_keys() {
        assert_eq!(parse_days("mon-fri").unwrap(), vec![0, 1, 2, 3, 4]);
        assert_eq!(parse_days("Sat").unwrap(), vec![5]);
        assert_eq!(parse_days("sat-sun").unwrap(), vec![5, 6]);
        let error = parse_days("fri-mon").unwrap_err();
        assert!(error.help.contains("fri-sun and mon-mon"), "{error:?}");
        let error = parse_days("monday").unwrap_err();
        assert!(error.help.contains("did you mean 'mon'"), "{error:?}");
        let error = parse_days("mån-fre").unwrap_err();
        assert!(error.help.contains("'mon'"), "{error:?}");
        assert!(parse_days("weekdays").is_err());
    }

    #[test]
    fn range_text() {
        assert_eq!(
            parse_ranges("08:00-16:30").unwrap(),
            vec![OpenRange {
                start: 480,
                end: 990
            }]
        );
        assert_eq!(
            parse_ranges("13:00-16:30, 8:00-12:00").unwrap(),
            vec![
                OpenRange {
                    start: 480,
                    end: 720
                },
                OpenRange {
                    start: 780,
                    end: 990
                }
            ]
        );
        assert_eq!(parse_ranges("closed").unwrap(), vec![]);
        assert_eq!(
            parse_ranges("00:00-24:00").unwrap(),
            vec![OpenRange::WHOLE_DAY]
        );
        let error = parse_ranges("16:30-08:00").unwrap_err();
        assert!(
            error.message.contains("closes before it opens"),
            "{error:?}"
        );
        assert!(
            error.help.contains("16:30-24:00") && error.help.contains("00:00-08:00"),
            "{error:?}"
        );
        assert!(
            parse_ranges("08:00-12:00, 11:00-16:00")
                .unwrap_err()
                .message
                .contains("overlap")
        );
        for bad in [
            "8-16",
            "08:00",
            "25:00-26:00",
            "08:60-09:00",
            "24:00-24:00",
            "08.00-16.00",
            "",
        ] {
            assert!(parse_ranges(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn dates_and_time_zones() {
        assert_eq!(parse_date("2026-12-28").unwrap(), date(2026, 12, 28));
        assert!(
            parse_date("2026-02-30")
                .unwrap_err()
                .message
                .contains("calendar")
        );
        assert!(parse_date("28/12/2026").is_err());
        assert!(parse_date("2026-1-5").is_err());
        assert!(parse_timezone("Europe/Stockholm").is_ok());
        assert!(
            parse_timezone("Europe/Stokholm")
                .unwrap_err()
                .message
                .contains("unknown time zone")
        );
    }

    #[test]
    fn never_open_means_no_range_anywhere() {
        let mut hours = office();
        assert!(!hours.never_open());
        hours.weekly = std::array::from_fn(|_| Vec::new());
        assert!(!hours.never_open(), "the special date still opens");
        hours.special.clear();
        assert!(hours.never_open());
    }
}
