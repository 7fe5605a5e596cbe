//! Durations as admins write them in the menu: `5s`, `500ms`, `2m`, `1m30s`, `1.5s`, `1h`.
//! Pure parsing; whether a value is sensible for a given key is decided by the caller.

use std::time::Duration;

/// Why a duration text was refused, with the fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DurationError {
    pub message: String,
    pub help: String,
}

const HELP: &str = "write a number with a unit: 500ms, 5s, 1.5s, 2m, 1m30s or 1h";

/// Units from largest to smallest; a duration uses each at most once, in this order.
const UNITS: [(&str, u128); 4] = [
    ("h", 3_600_000_000_000),
    ("m", 60_000_000_000),
    ("s", 1_000_000_000),
    ("ms", 1_000_000),
];

/// Parses `1m30s`-style text. Fractions are allowed on any part (`1.5s`, `0.5m`) to nanosecond precision.
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let refuse = |message: String| DurationError {
        message,
        help: HELP.to_owned(),
    };
    let text = text.trim();
    if text.is_empty() {
        return Err(refuse("empty duration".to_owned()));
    }
    let mut rest = text;
    let mut total_nanos: u128 = 0;
    // Index into UNITS of the last unit used: the next one must be strictly smaller.
    let mut last_unit: Option<usize> = None;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (number, after) = rest.split_at(number_len);
        if number.is_empty() {
            return Err(refuse(format!("'{text}' is not a duration")));
        }
        // `5 s` and `1m 30s` are what people write; a space inside a number (`5 5s`) still is no duration.
        let after = after.trim_start();
        let unit_len = after
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_len);
        if unit.is_empty() {
            return Err(DurationError {
                message: format!("'{text}' has no unit"),
                help: format!("write {number}s for seconds or {number}ms for milliseconds"),
            });
        }
        let Some(unit_index) = UNITS.iter().position(|(name, _)| *name == unit) else {
            let message = format!("unknown unit '{unit}' in '{text}'");
            return Err(match spelled_out(unit) {
                Some(short) => DurationError {
                    message,
                    help: format!(
                        "write {short} instead of {unit}; the units are ms, s, m and h: 500ms, 5s, 1.5s, 2m, \
                         1m30s or 1h"
                    ),
                },
                None => refuse(message),
            });
        };
        if last_unit.is_some_and(|last| unit_index <= last) {
            return Err(refuse(format!(
                "'{text}': units must go from larger to smaller, each once"
            )));
        }
        last_unit = Some(unit_index);
        let after = after.trim_start();
        let nanos = scaled(number, UNITS[unit_index].1)
            .ok_or_else(|| refuse(format!("'{number}' is not a number in '{text}'")))?;
        total_nanos = total_nanos
            .checked_add(nanos)
            .ok_or_else(|| refuse(format!("'{text}' is too long")))?;
        rest = after;
    }
    let secs = u64::try_from(total_nanos / 1_000_000_000)
        .map_err(|_| refuse(format!("'{text}' is too long")))?;
    // The remainder is below 10^9 and so always fits.
    let nanos = (total_nanos % 1_000_000_000) as u32;
    Ok(Duration::new(secs, nanos))
}

/// The unit an admin meant by a longer name (`sec`, `minutes`), if any.
fn spelled_out(unit: &str) -> Option<&'static str> {
    match unit.to_ascii_lowercase().as_str() {
        "msec" | "msecs" | "millis" | "millisecond" | "milliseconds" => Some("ms"),
        "sec" | "secs" | "second" | "seconds" => Some("s"),
        "min" | "mins" | "minute" | "minutes" => Some("m"),
        "hr" | "hrs" | "hour" | "hours" => Some("h"),
        _ => None,
    }
}

/// `number` (digits with at most one '.') times `unit_nanos`, exactly, without floating point.
fn scaled(number: &str, unit_nanos: u128) -> Option<u128> {
    let (whole, fraction) = match number.split_once('.') {
        Some((whole, fraction)) => (whole, fraction),
        None => (number, ""),
    };
    if (whole.is_empty() && fraction.is_empty()) || fraction.contains('.') {
        return None;
    }
    // Beyond 9 fractional digits nothing a telephone can time is left.
    if fraction.len() > 9 || whole.len() > 12 {
        return None;
    }
    let whole: u128 = if whole.is_empty() {
        0
    } else {
        whole.parse().ok()?
    };
    let mut value = whole.checked_mul(unit_nanos)?;
    if !fraction.is_empty() {
        let digits: u128 = fraction.parse().ok()?;
        let scale = 10u128.pow(u32::try_from(fraction.len()).ok()?);
        value = value.checked_add(digits.checked_mul(unit_nanos)? / scale)?;
    }
    Some(value)
}

/// Shows a duration the way an admin would write it, for help texts.
pub fn format_duration(duration: Duration) -> String {
    let millis = duration.as_millis();
    if millis % 1000 != 0 {
        return format!("{millis}ms");
    }
    let secs = millis / 1000;
    match (secs / 3600, secs % 3600 / 60, secs % 60) {
        (0, 0, s) => format!("{s}s"),
        (0, m, 0) => format!("{m}m"),
        (0, m, s) => format!("{m}m{s}s"),
        (h, 0, 0) => format!("{h}h"),
        (h, m, s) => format!("{h}h{m}m{s}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn accepts_the_forms_admins_write() {
        assert_eq!(parse_duration("5s"), Ok(ms(5000)));
        assert_eq!(parse_duration("500ms"), Ok(ms(500)));
        assert_eq!(parse_duration("2m"), Ok(ms(120_000)));
        assert_eq!(parse_duration("1m30s"), Ok(ms(90_000)));
        assert_eq!(parse_duration("1.5s"), Ok(ms(1500)));
        assert_eq!(parse_duration("1h"), Ok(ms(3_600_000)));
        assert_eq!(parse_duration("1h2m3s4ms"), Ok(ms(3_723_004)));
        assert_eq!(parse_duration(".5s"), Ok(ms(500)));
        assert_eq!(parse_duration(" 5s "), Ok(ms(5000)));
        assert_eq!(parse_duration("0.000000001s"), Ok(Duration::from_nanos(1)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("5 s"), Ok(ms(5000)));
        assert_eq!(parse_duration("1m 30s"), Ok(ms(90_000)));
        assert_eq!(parse_duration("1 m 30 s"), Ok(ms(90_000)));
    }

    #[test]
    fn a_bare_number_asks_for_a_unit() {
        let error = parse_duration("5").unwrap_err();
        assert_eq!(error.message, "'5' has no unit");
        assert_eq!(error.help, "write 5s for seconds or 5ms for milliseconds");
    }

    #[test]
    fn refuses_malformed_text() {
        for text in [
            "", "s", "5x", "5sec", "1s1m", "1s1s", "1..5s", "1.2.3s", "-5s", ".s", "5s5", "1e3s",
            "5 5s",
        ] {
            assert!(parse_duration(text).is_err(), "{text:?} was accepted");
        }
    }

    #[test]
    fn refuses_overflow_instead_of_wrapping() {
        assert!(parse_duration("999999999999999h").is_err());
        assert!(parse_duration("0.1234567891s").is_err());
    }

    #[test]
    fn formats_back_to_admin_notation() {
        assert_eq!(format_duration(ms(5000)), "5s");
        assert_eq!(format_duration(ms(500)), "500ms");
        assert_eq!(format_duration(ms(90_000)), "1m30s");
        assert_eq!(format_duration(ms(120_000)), "2m");
        assert_eq!(format_duration(ms(3_600_000)), "1h");
        for text in ["5s", "500ms", "1m30s", "2m", "1h", "1h2m3s"] {
            let parsed = parse_duration(text).unwrap();
            assert_eq!(format_duration(parsed), text);
        }
    }
}
