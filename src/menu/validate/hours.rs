//! Checks an `hours:` block (the service's or a function's) where it is written, and builds its [`Hours`].
//! The text forms themselves (day keys, ranges, dates, zones) are parsed by `menu::hours`; this adds positions,
//! cross-key checks (a day given twice, a date both closed and special) and the `closed:` action.

use std::collections::BTreeMap;

use serde_saphyr::Spanned;

use super::{ChoiceSite, Validator, pos};
use crate::menu::error::Pos;
use crate::menu::hours::{
    self, Closed, ClosedAction, DAY_NAMES, DEFAULT_TIMEZONE, FormError, Hours,
};
use crate::menu::model::Choice;
use crate::menu::yaml::RawHours;

impl Validator<'_> {
    /// `function_id` is None for the service's hours.
    pub(super) fn hours(
        &mut self,
        raw: &Spanned<RawHours>,
        function_id: Option<&str>,
    ) -> Option<Hours> {
        let before = self.report.len();
        let at = pos(raw);
        let raw = &raw.value;
        let mut result = Hours::always_open();

        let zone_name = raw
            .timezone
            .as_ref()
            .map_or(DEFAULT_TIMEZONE, |zone| zone.value.trim());
        match hours::parse_timezone(zone_name) {
            Ok(zone) => {
                result.timezone = zone;
                result.timezone_name = zone_name.to_owned();
            }
            Err(error) => {
                let at = raw.timezone.as_ref().map_or(at, pos);
                self.form_error(at, error);
            }
        }

        if let Some(weekly) = &raw.weekly {
            result.weekly = std::array::from_fn(|_| Vec::new());
            let mut given_at: [Option<Pos>; 7] = [None; 7];
            for (key, value) in &weekly.value.0 {
                let days = match hours::parse_days(&key.value) {
                    Ok(days) => days,
                    Err(error) => {
                        self.form_error(pos(key), error);
                        continue;
                    }
                };
                let ranges = match hours::parse_ranges(&value.value) {
                    Ok(ranges) => ranges,
                    Err(error) => {
                        self.form_error(pos(value), error);
                        continue;
                    }
                };
                for day in days {
                    if let Some(first) = given_at[day] {
                        self.report.error(
                            pos(key),
                            format!("{} is given twice under `weekly:`", DAY_NAMES[day]),
                            format!(
                                "the first is at line {}; give each day once (mon-thu and fri, not mon-fri and fri)",
                                first.line
                            ),
                        );
                        continue;
                    }
                    given_at[day] = Some(pos(key));
                    result.weekly[day] = ranges.clone();
                }
            }
        }

        if let Some(holidays) = &raw.holidays {
            match holidays.value.trim() {
                "se" => result.holidays = true,
                "none" => result.holidays = false,
                other => self.report.error(
                    pos(holidays),
                    format!("unknown holiday calendar '{other}'"),
                    "write holidays: se for the Swedish public holidays and eves, or leave the key out",
                ),
            }
        }

        if let Some(closed_on) = &raw.closed_on {
            for day in &closed_on.value {
                match hours::parse_date(&day.value) {
                    Ok(date) => {
                        result.closed_on.insert(date);
                    }
                    Err(error) => self.form_error(pos(day), error),
                }
            }
        }

        if let Some(special) = &raw.special {
            let mut given_at = BTreeMap::new();
            for (key, value) in &special.value.0 {
                let date = match hours::parse_date(&key.value) {
                    Ok(date) => date,
                    Err(error) => {
                        self.form_error(pos(key), error);
                        continue;
                    }
                };
                if let Some(first) = given_at.insert(date, pos(key)) {
                    self.report.error(
                        pos(key),
                        format!("{date} is given twice under `special:`"),
                        format!("the first is at line {}; keep one", first.line),
                    );
                    continue;
                }
                if result.closed_on.contains(&date) {
                    self.report.error(
                        pos(key),
                        format!("{date} is both under `closed_on:` and under `special:`"),
                        "closed_on wins, so these hours would never apply: remove one of them",
                    );
                    continue;
                }
                match hours::parse_ranges(&value.value) {
                    Ok(ranges) => {
                        result.special.insert(date, ranges);
                    }
                    Err(error) => self.form_error(pos(value), error),
                }
            }
        }

        let example = "closed: { prompt: closed, then: { hangup: true } }";
        match &raw.closed {
            None => self.report.error(
                at,
                "`hours:` has no `closed:` (what callers hear, and where the call goes, while closed)",
                format!("add e.g. {example}, or then: {{ route: <function> }}"),
            ),
            Some(closed) => {
                let prompt = closed.value.prompt.as_ref().and_then(|p| self.prompt(p));
                let then = match &closed.value.then {
                    None => Some(ClosedAction::Hangup),
                    Some(then) => match self.choice(then, ChoiceSite::Closed { function_id }) {
                        Some(Choice::Route(function)) => Some(ClosedAction::Route(function)),
                        Some(_) => Some(ClosedAction::Hangup),
                        None => None,
                    },
                };
                if then == Some(ClosedAction::Hangup) && closed.value.prompt.is_none() {
                    self.report.error(
                        pos(closed),
                        "closed with no prompt and a hang-up: callers would be answered and cut off without a word",
                        format!("add the prompt that gives the opening hours, e.g. {example}"),
                    );
                }
                if let Some(then) = then {
                    result.closed = Closed { prompt, then };
                }
            }
        }

        (self.report.len() == before).then_some(result)
    }

    fn form_error(&mut self, at: Pos, error: FormError) {
        self.report.error(at, error.message, error.help);
    }
}
