//! `hours:` in the menu file: what loads, each mistake at its position with a fix, and `check`'s warnings.

use std::path::{Path, PathBuf};

use jiff::civil::date;

use super::hours::{ClosedAction, OpenRange};
use super::*;

fn prompts_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("prompts")
}

fn any_file(_: &Path) -> Result<(), String> {
    Ok(())
}

const FUNCTIONS: &str = "\
name: Test
functions:
  it:
    name: IT Kundservice
    target: sip:it@127.0.0.1:5073
IT_HOURS
  kundtjanst:
    name: Kundtjänst
    target: sip:kundtjanst@127.0.0.1:5071
menu:
  prompt: main-menu
  options:
    \"1\": { route: kundtjanst }
    \"3\": { route: it }
";

/// The test menu with `service` appended at the top level and `it_hours` under function `it`.
fn source(service: &str, it_hours: &str) -> String {
    format!("{}{service}", FUNCTIONS.replace("IT_HOURS\n", it_hours))
}

fn load(source: &str) -> Result<model::Menu, MenuErrors> {
    load_str(source, "t.yaml", &prompts_dir(), &any_file)
}

/// Every error as (line, column, message, help).
fn errors(source: &str) -> Vec<(usize, usize, String, String)> {
    match load(source) {
        Ok(menu) => panic!("accepted: {menu:?}"),
        Err(errors) => errors
            .0
            .into_iter()
            .map(|e| (e.line, e.column, e.message, e.help))
            .collect(),
    }
}

const SERVICE: &str = "\
hours:
  weekly: { mon-thu: \"08:00-16:30\", fri: \"08:00-15:00\" }
  holidays: se
  closed_on: [2026-12-28]
  special: { \"2026-04-30\": \"08:00-12:00\" }
  closed: { prompt: goodbye, then: { hangup: true } }
";

const IT_HOURS: &str = "    hours: { weekly: { mon-fri: \"09:00-12:00\" }, closed: { prompt: function-busy, then: { route: kundtjanst } } }\n";

#[test]
fn the_issues_example_loads() {
    let menu = load(&source(SERVICE, IT_HOURS)).unwrap_or_else(|e| panic!("{e}"));
    let hours = menu.hours.as_ref().expect("service hours");
    assert_eq!(hours.timezone_name, "Europe/Stockholm");
    assert_eq!(
        hours.weekly[0],
        vec![OpenRange {
            start: 480,
            end: 990
        }]
    );
    assert_eq!(
        hours.weekly[4],
        vec![OpenRange {
            start: 480,
            end: 900
        }]
    );
    assert!(hours.weekly[5].is_empty() && hours.weekly[6].is_empty());
    assert!(hours.holidays);
    assert!(hours.closed_on.contains(&date(2026, 12, 28)));
    assert_eq!(
        hours.special.get(&date(2026, 4, 30)),
        Some(&vec![OpenRange {
            start: 480,
            end: 720
        }])
    );
    assert_eq!(hours.closed.prompt.as_deref(), Some("goodbye"));
    assert_eq!(hours.closed.then, ClosedAction::Hangup);
    let it = menu.functions["it"].hours.as_ref().expect("it's hours");
    assert_eq!(it.closed.then, ClosedAction::Route("kundtjanst".into()));
    assert!(!it.holidays, "a function's holidays are its own key");
    let prompts = menu.prompt_ids();
    assert!(prompts.contains("goodbye") && prompts.contains("function-busy"));
}

#[test]
fn without_weekly_every_day_is_open_all_day() {
    let menu = load(&source(
        "hours:\n  holidays: se\n  closed: { prompt: goodbye }\n",
        "",
    ))
    .unwrap_or_else(|e| panic!("{e}"));
    let hours = menu.hours.unwrap();
    assert!(
        hours
            .weekly
            .iter()
            .all(|day| day == &vec![OpenRange::WHOLE_DAY])
    );
    assert_eq!(
        hours.closed.then,
        ClosedAction::Hangup,
        "then defaults to hang up"
    );
}

#[test]
fn bad_day_names_ranges_dates_and_zones_point_at_the_value() {
    let found = errors(&source(
        "hours:\n  timezone: Europe/Stokholm\n  weekly: { monday: \"08:00-16:30\", fri: \"16:30-08:00\", sat-sun: \"9-12\" }\n  closed_on: [2026-02-30, 28/12/2026]\n  special: { \"2026-13-01\": closed }\n  closed: { prompt: goodbye }\n",
        "",
    ));
    let summary: Vec<(usize, usize, &str)> = found
        .iter()
        .map(|(line, column, message, _)| (*line, *column, message.as_str()))
        .collect();
    assert_eq!(
        summary,
        [
            (15, 13, "unknown time zone 'Europe/Stokholm'"),
            (16, 13, "'monday' is not a day name"),
            (16, 41, "the range '16:30-08:00' closes before it opens"),
            (16, 65, "'9' is not a time of day (HH:MM)"),
            (17, 15, "'2026-02-30' is not a date in the calendar"),
            (17, 27, "'28/12/2026' is not a date"),
            (18, 14, "'2026-13-01' is not a date in the calendar"),
        ],
        "{found:#?}"
    );
    assert!(found[0].3.contains("Europe/Stockholm"), "{}", found[0].3);
    assert!(found[1].3.contains("did you mean 'mon'"), "{}", found[1].3);
    assert!(found[2].3.contains("16:30-24:00"), "{}", found[2].3);
}

#[test]
fn a_day_given_twice_and_a_date_both_closed_and_special_are_refused() {
    let found = errors(&source(
        "hours:\n  weekly: { mon-fri: \"08:00-16:30\", fri: \"08:00-15:00\" }\n  closed_on: [2026-04-30]\n  special: { \"2026-04-30\": \"08:00-12:00\" }\n  closed: { prompt: goodbye }\n",
        "",
    ));
    assert_eq!(found.len(), 2, "{found:#?}");
    assert_eq!((found[0].0, found[0].1), (15, 37));
    assert_eq!(found[0].2, "fri is given twice under `weekly:`");
    assert!(found[0].3.contains("mon-thu and fri"), "{}", found[0].3);
    assert_eq!((found[1].0, found[1].1), (17, 14));
    assert!(
        found[1]
            .2
            .contains("both under `closed_on:` and under `special:`")
    );
}

#[test]
fn overlapping_ranges_on_one_day_are_refused() {
    let found = errors(&source(
        "hours:\n  weekly: { mon: \"08:00-12:00, 11:00-16:00\" }\n  closed: { prompt: goodbye }\n",
        "",
    ));
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!((found[0].0, found[0].1), (15, 18));
    assert_eq!(found[0].2, "the ranges 08:00-12:00 and 11:00-16:00 overlap");
    assert!(found[0].3.contains("08:00-16:00"), "{}", found[0].3);
}

#[test]
fn closed_must_say_what_callers_hear_and_where_they_go() {
    let found = errors(&source(
        "hours:\n  weekly: { mon-fri: \"08:00-16:00\" }\n",
        "",
    ));
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!((found[0].0, found[0].1), (15, 3));
    assert!(found[0].2.contains("no `closed:`"), "{}", found[0].2);

    let found = errors(&source(
        "hours:\n  closed: { then: { hangup: true } }\n",
        "",
    ));
    assert_eq!(found.len(), 1, "{found:#?}");
    assert!(
        found[0].2.contains("cut off without a word"),
        "{}",
        found[0].2
    );

    let found = errors(&source(
        "hours:\n  closed: { prompt: goodbye, then: { route: itt } }\n",
        "",
    ));
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!((found[0].0, found[0].1), (15, 45));
    assert_eq!(found[0].2, "route to undefined function 'itt'");
    assert!(found[0].3.contains("it, kundtjanst"), "{}", found[0].3);

    let found = errors(&source(
        "hours:\n  closed: { prompt: goodbye, then: { menu: root } }\n",
        "",
    ));
    assert!(
        found[0].2.contains("cannot follow closed hours"),
        "{found:#?}"
    );

    let found = errors(&source(
        "",
        "    hours: { closed: { prompt: goodbye, then: { route: it } } }\n",
    ));
    assert_eq!(found[0].2, "function 'it' routes to itself when closed");
}

#[test]
fn unknown_keys_and_calendars_are_named() {
    let found = errors(&source(
        "hours:\n  holidays: no\n  closed: { prompt: goodbye }\n",
        "",
    ));
    assert_eq!(found[0].2, "unknown holiday calendar 'no'");
    let found = errors(&source(
        "hours:\n  weekley: {}\n  closed: { prompt: goodbye }\n",
        "",
    ));
    assert_eq!(found[0].2, "unknown key 'weekley'");
    assert!(
        found[0].3.contains("did you mean 'weekly'"),
        "{}",
        found[0].3
    );
}

#[test]
fn a_missing_closed_prompt_is_reported_like_any_prompt() {
    let found = errors(&source("hours:\n  closed: { prompt: stangt }\n", ""));
    assert_eq!(found.len(), 1, "{found:#?}");
    assert!(
        found[0].2.starts_with("prompt file not found"),
        "{}",
        found[0].2
    );
}

#[test]
fn check_warns_about_unused_prompts_unreachable_options_deep_menus_and_hours_never_open() {
    let dir = tempfile::tempdir().unwrap();
    let prompts = dir.path().join("prompts");
    std::fs::create_dir_all(&prompts).unwrap();
    for id in ["main-menu", "goodbye", "sub", "old-announcement"] {
        std::fs::write(prompts.join(format!("{id}.wav")), b"").unwrap();
    }
    let path = dir.path().join("m.yaml");
    std::fs::write(
        &path,
        "name: T\nfunctions:\n  it:\n    name: IT\n    target: sip:it@127.0.0.1:5073\n    \
         hours: { weekly: {}, closed: { prompt: goodbye } }\n\
         hours:\n  weekly: { mon: closed }\n  closed: { prompt: goodbye }\n\
         menu:\n  prompt: main-menu\n  options:\n    \"1\": { menu: a }\n\
         menus:\n  a: { prompt: sub, options: { \"1\": { menu: b } } }\n  b: { prompt: sub, options: { \"1\": { menu: c } } }\n  \
         c: { prompt: sub, options: { \"1\": { menu: d } } }\n  d: { prompt: sub, options: { \"1\": { route: it } } }\n  \
         parked: { prompt: sub, options: { \"1\": { route: it }, \"2\": { back: true } } }\n",
    )
    .unwrap();
    let (text, ok) = check_report(&path, &prompts, &any_file, None);
    assert!(ok, "warnings do not fail the check: {text}");
    let label = path.display();
    let warnings: Vec<&str> = text
        .lines()
        .filter_map(|line| line.strip_prefix(&format!("{label}: warning: ")))
        .collect();
    assert_eq!(warnings.len(), 5, "{text}");
    assert!(
        warnings[0].starts_with("prompt 'old-announcement'"),
        "{text}"
    );
    assert!(
        warnings[1].starts_with("options 1, 2 of menu 'parked' cannot be reached"),
        "{text}"
    );
    assert!(warnings[2].starts_with("menu 'd' is at depth 5"), "{text}");
    assert!(
        warnings[3].starts_with("the service's hours are never open"),
        "{text}"
    );
    assert!(
        warnings[4].starts_with("function 'it' has hours that are never open"),
        "{text}"
    );
}
