//! The Swedish public holidays (lag 1989:253 om allmänna helgdagar) and the eves public bodies close on,
//! computed for any year rather than listed, so the calendar never runs out.
//!
//! Owns the dates only; whether a service is open on them is `hours`'s decision. Sundays are not listed:
//! weekly hours already say whether a service opens on a Sunday.

use jiff::civil::{Date, Weekday};

/// The closed days of `holidays: se` in `year`, in date order, with their Swedish names.
///
/// Fixed: nyårsdagen, trettondedag jul, första maj, nationaldagen, juldagen, annandag jul. From Easter (the
/// Gregorian computus): långfredagen, påskdagen, annandag påsk, Kristi himmelsfärdsdag, pingstdagen. Movable:
/// midsommardagen (the Saturday in 20–26 June), alla helgons dag (the Saturday in 31 October–6 November). Eves:
/// midsommarafton, julafton, nyårsafton.
pub fn swedish_holidays(year: i16) -> Vec<(Date, &'static str)> {
    let Some(easter) = easter_sunday(year) else {
        return Vec::new();
    };
    let from_easter = |days: i32| easter.checked_add(jiff::Span::new().days(days)).ok();
    let midsummer_day = saturday_from(year, 6, 20);
    let all_saints = saturday_from(year, 10, 31);
    let days: [(Option<Date>, &'static str); 16] = [
        (checked_date(year, 1, 1), "nyårsdagen"),
        (checked_date(year, 1, 6), "trettondedag jul"),
        (from_easter(-2), "långfredagen"),
        (Some(easter), "påskdagen"),
        (from_easter(1), "annandag påsk"),
        (checked_date(year, 5, 1), "första maj"),
        (from_easter(39), "Kristi himmelsfärdsdag"),
        (from_easter(49), "pingstdagen"),
        (checked_date(year, 6, 6), "nationaldagen"),
        (
            midsummer_day.and_then(|d| d.yesterday().ok()),
            "midsommarafton",
        ),
        (midsummer_day, "midsommardagen"),
        (all_saints, "alla helgons dag"),
        (checked_date(year, 12, 24), "julafton"),
        (checked_date(year, 12, 25), "juldagen"),
        (checked_date(year, 12, 26), "annandag jul"),
        (checked_date(year, 12, 31), "nyårsafton"),
    ];
    let mut days: Vec<(Date, &'static str)> = days
        .into_iter()
        .filter_map(|(day, name)| Some((day?, name)))
        .collect();
    // Kristi himmelsfärdsdag can fall on 1 May (2008) and pingstdagen on nationaldagen (2049): one entry per date.
    days.sort_by_key(|(day, _)| *day);
    days.dedup_by_key(|(day, _)| *day);
    days
}

/// The holiday or eve on `day`, if it is one.
pub fn swedish_holiday(day: Date) -> Option<&'static str> {
    swedish_holidays(day.year())
        .into_iter()
        .find(|(date, _)| *date == day)
        .map(|(_, name)| name)
}

/// Easter Sunday in the Gregorian calendar (the anonymous Gregorian algorithm, "Meeus/Jones/Butcher").
pub fn easter_sunday(year: i16) -> Option<Date> {
    let y = i32::from(year);
    let a = y % 19;
    let b = y / 100;
    let c = y % 100;
    let d = b / 4;
    let e = b % 4;
    let f = (b + 8) / 25;
    let g = (b - f + 1) / 3;
    let h = (19 * a + b - d - g + 15) % 30;
    let i = c / 4;
    let k = c % 4;
    let l = (32 + 2 * e + 2 * i - h - k) % 7;
    let m = (a + 11 * h + 22 * l) / 451;
    let month = (h + l - 7 * m + 114) / 31;
    let day = (h + l - 7 * m + 114) % 31 + 1;
    checked_date(year, i8::try_from(month).ok()?, i8::try_from(day).ok()?)
}

/// The first Saturday on or after `month`-`day` of `year`.
fn saturday_from(year: i16, month: i8, day: i8) -> Option<Date> {
    let start = checked_date(year, month, day)?;
    let ahead = (Weekday::Saturday.to_monday_zero_offset()
        - start.weekday().to_monday_zero_offset())
    .rem_euclid(7);
    start
        .checked_add(jiff::Span::new().days(i32::from(ahead)))
        .ok()
}

fn checked_date(year: i16, month: i8, day: i8) -> Option<Date> {
    Date::new(year, month, day).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(y: i16, m: i8, day: i8) -> Date {
        jiff::civil::date(y, m, day)
    }

    /// Easter-based days, 2025–2030, as published (Svenska kyrkans almanacka; kalender.se agrees):
    /// (långfredagen, påskdagen, annandag påsk, Kristi himmelsfärdsdag, pingstdagen).
    const EASTER_TABLE: [(i16, [(i8, i8); 5]); 6] = [
        (2025, [(4, 18), (4, 20), (4, 21), (5, 29), (6, 8)]),
        (2026, [(4, 3), (4, 5), (4, 6), (5, 14), (5, 24)]),
        (2027, [(3, 26), (3, 28), (3, 29), (5, 6), (5, 16)]),
        (2028, [(4, 14), (4, 16), (4, 17), (5, 25), (6, 4)]),
        (2029, [(3, 30), (4, 1), (4, 2), (5, 10), (5, 20)]),
        (2030, [(4, 19), (4, 21), (4, 22), (5, 30), (6, 9)]),
    ];

    /// (midsommarafton, midsommardagen, alla helgons dag), 2025–2030.
    const MOVABLE_TABLE: [(i16, [(i8, i8); 3]); 6] = [
        (2025, [(6, 20), (6, 21), (11, 1)]),
        (2026, [(6, 19), (6, 20), (10, 31)]),
        (2027, [(6, 25), (6, 26), (11, 6)]),
        (2028, [(6, 23), (6, 24), (11, 4)]),
        (2029, [(6, 22), (6, 23), (11, 3)]),
        (2030, [(6, 21), (6, 22), (11, 2)]),
    ];

    #[test]
    fn easter_based_days_2025_to_2030_match_the_published_calendars() {
        let names = [
            "långfredagen",
            "påskdagen",
            "annandag påsk",
            "Kristi himmelsfärdsdag",
            "pingstdagen",
        ];
        for (year, days) in EASTER_TABLE {
            for ((month, day), name) in days.into_iter().zip(names) {
                assert_eq!(
                    swedish_holiday(d(year, month, day)),
                    Some(name),
                    "{year}-{month:02}-{day:02}"
                );
            }
            assert_eq!(easter_sunday(year), Some(d(year, days[1].0, days[1].1)));
        }
    }

    #[test]
    fn midsummer_and_all_saints_2025_to_2030_match_the_published_calendars() {
        let names = ["midsommarafton", "midsommardagen", "alla helgons dag"];
        for (year, days) in MOVABLE_TABLE {
            for ((month, day), name) in days.into_iter().zip(names) {
                let date = d(year, month, day);
                assert_eq!(swedish_holiday(date), Some(name), "{date}");
            }
            assert_eq!(d(year, days[1].0, days[1].1).weekday(), Weekday::Saturday);
            assert_eq!(d(year, days[0].0, days[0].1).weekday(), Weekday::Friday);
        }
    }

    #[test]
    fn every_year_2025_to_2030_has_the_sixteen_closed_days_in_order() {
        for year in 2025..=2030 {
            let days = swedish_holidays(year);
            let fixed = [
                ((1, 1), "nyårsdagen"),
                ((1, 6), "trettondedag jul"),
                ((5, 1), "första maj"),
                ((6, 6), "nationaldagen"),
                ((12, 24), "julafton"),
                ((12, 25), "juldagen"),
                ((12, 26), "annandag jul"),
                ((12, 31), "nyårsafton"),
            ];
            for ((month, day), name) in fixed {
                assert!(
                    days.contains(&(d(year, month, day), name)),
                    "{year}: {name} missing from {days:?}"
                );
            }
            assert_eq!(days.len(), 16, "{year}: {days:?}");
            assert!(days.windows(2).all(|w| w[0].0 < w[1].0), "{days:?}");
        }
    }

    #[test]
    fn ordinary_days_and_unofficial_eves_are_not_holidays() {
        // Påskafton, valborgsmässoafton, trettondagsafton and allhelgonaafton are not closed days by this rule.
        for (y, m, day) in [
            (2026, 4, 4),
            (2026, 4, 30),
            (2026, 1, 5),
            (2026, 10, 30),
            (2026, 3, 25),
            (2026, 12, 28),
            (2026, 6, 21),
        ] {
            assert_eq!(swedish_holiday(d(y, m, day)), None, "{y}-{m}-{day}");
        }
    }

    #[test]
    fn coinciding_days_are_listed_once() {
        // 2008: Kristi himmelsfärdsdag on 1 May; 2049: pingstdagen on nationaldagen.
        assert_eq!(swedish_holidays(2008).len(), 15);
        assert_eq!(swedish_holidays(2049).len(), 15);
        assert!(swedish_holiday(d(2008, 5, 1)).is_some());
    }

    #[test]
    fn the_computus_holds_at_its_extremes() {
        assert_eq!(
            easter_sunday(1818),
            Some(d(1818, 3, 22)),
            "earliest possible"
        );
        assert_eq!(easter_sunday(1943), Some(d(1943, 4, 25)), "latest possible");
        assert_eq!(easter_sunday(2100), Some(d(2100, 3, 28)));
    }
}
