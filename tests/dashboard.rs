//! The dashboard page in a real browser: the daemon starts on a database seeded with known calls, headless
//! Chromium loads `GET /` and runs its script against the daemon's API, and the DOM it leaves behind must hold
//! exactly the seeded figures, in the tables and in the charts, with nothing in the browser's console or error
//! log.
//!
//! The browser is driven over the DevTools protocol (tests/common/browser.rs): it reports console calls by
//! level, uncaught exceptions and failed requests as events, and lets the test wait for the page's own "ready"
//! instead of guessing a time budget. Without Chromium the test fails (tests/run.sh installs it).

mod common;

use std::path::Path;

use common::browser::Browser;
use common::{Daemon, Fixture, MenuSpec};
use jiff::civil::date;
use knappval::flow::{Outcome, Step, StepKind};
use knappval::records::{ContactRecord, ContactStore, RecordUpdate, SqliteStore};
use serde_json::json;
use time::OffsetDateTime;

/// The day the page is asked about: a Tuesday, so its average comes from earlier Tuesdays.
const DAY: &str = "2026-11-24";
const ZONE: &str = "Europe/Stockholm";

/// `day_offset` days from [`DAY`], at `hour:minute` local time in [`ZONE`].
fn local(day_offset: i64, hour: i8, minute: i8) -> OffsetDateTime {
    let zoned = date(2026, 11, 24)
        .checked_add(jiff::Span::new().days(day_offset))
        .expect("a date")
        .at(hour, minute, 0, 0)
        .in_tz(ZONE)
        .expect("a zoned time");
    OffsetDateTime::from_unix_timestamp(zoned.timestamp().as_second()).expect("a time")
}

/// One seeded call: where it went, how it ended, and its menu trail.
struct Seed {
    start: OffsetDateTime,
    function: Option<&'static str>,
    outcome: Outcome,
    /// Seconds from answer to transfer (transferred calls) or to the end.
    menu_seconds: i64,
    steps: Vec<StepKind>,
    /// Seconds waited in a queue, and the agent who answered (None: the caller gave up waiting).
    queue: Option<(i64, Option<&'static str>)>,
}

fn call(day_offset: i64, hour: i8, function: Option<&'static str>, outcome: Outcome) -> Seed {
    let steps = match (function, outcome) {
        (Some(f), Outcome::Transferred) => vec![
            StepKind::EnteredMenu("root".into()),
            StepKind::Digit(digit_of(f)),
            StepKind::TransferStarted(f.into()),
            StepKind::Transferred(f.into()),
        ],
        // Hung up while the function rang: not a hang-up in the menu.
        (Some(f), _) => vec![
            StepKind::EnteredMenu("root".into()),
            StepKind::Digit(digit_of(f)),
            StepKind::TransferStarted(f.into()),
            StepKind::CallerHungUp,
        ],
        (None, Outcome::Timeout) => vec![
            StepKind::EnteredMenu("root".into()),
            StepKind::InvalidDigit('4'),
            StepKind::Timeout,
            StepKind::Fallback,
            StepKind::Hangup,
        ],
        (None, _) => vec![StepKind::EnteredMenu("root".into()), StepKind::CallerHungUp],
    };
    Seed {
        start: local(day_offset, hour, 5),
        function,
        outcome,
        menu_seconds: 10,
        steps,
        queue: None,
    }
}

fn digit_of(function: &str) -> char {
    match function {
        "kundtjanst" => '1',
        "it" => '3',
        _ => '7',
    }
}

fn record(seed: &Seed, n: usize) -> ContactRecord {
    let mut record =
        ContactRecord::started(format!("seed-{n}@test"), "+46701234567", "ivr", seed.start);
    let answered = seed.start + time::Duration::seconds(1);
    let menu_end = answered + time::Duration::seconds(seed.menu_seconds);
    record.answered_at = Some(answered);
    record.function = seed.function.map(String::from);
    record.path = vec!["root".into()];
    record.steps = serde_json::to_value(
        seed.steps
            .iter()
            .enumerate()
            .map(|(i, kind)| Step {
                at_ms: 1000 * i as u64,
                kind: kind.clone(),
            })
            .collect::<Vec<_>>(),
    )
    .expect("steps as JSON");
    if let Some((wait_seconds, agent)) = seed.queue {
        record.queue = seed.function.map(String::from);
        record.queue_entered_at = Some(menu_end - time::Duration::seconds(wait_seconds));
        record.queue_wait_ms = Some(wait_seconds * 1000);
        record.answered_by = agent.map(String::from);
    }
    if seed.outcome == Outcome::Transferred {
        record.transferred_at = Some(menu_end);
        record.transfer_target = seed.function.map(|f| format!("sip:{f}@127.0.0.1:5999"));
        record.finish(
            seed.outcome,
            menu_end + time::Duration::seconds(60),
            "caller BYE",
        );
    } else {
        record.finish(seed.outcome, menu_end, "caller BYE");
    }
    record
}

/// The seeded calls, with the figures the page must show worked out by hand in the test below.
fn seeds() -> Vec<Seed> {
    use Outcome::{Abandoned, Timeout, Transferred};
    let mut seeds = vec![
        // The day: 09 three calls to IT (one abandoned while it rang), 10 one to Kundtjänst and one without a
        // choice, 14 one to Kundtjänst abandoned.
        call(0, 9, Some("it"), Transferred),
        call(0, 9, Some("it"), Transferred),
        call(0, 9, Some("it"), Abandoned),
        call(0, 10, Some("kundtjanst"), Transferred),
        call(0, 10, None, Timeout),
        call(0, 14, Some("kundtjanst"), Abandoned),
        // Inside the 7-day period: Monday 08 a caller who hung up in the menu, Sunday 12 a function since
        // removed from the menu.
        call(-1, 8, None, Abandoned),
        call(-2, 12, Some("gamla"), Transferred),
        // Earlier Tuesdays (outside the 7-day period): 2 at 09, then 4 at 09, then 2 at 10; the fourth Tuesday
        // back has none and is left out of the average.
        call(-7, 9, Some("kundtjanst"), Transferred),
        call(-7, 9, Some("kundtjanst"), Transferred),
        call(-21, 10, Some("kundtjanst"), Transferred),
        call(-21, 10, Some("kundtjanst"), Transferred),
        // Outside the 8-week heat map: never shown.
        call(-56, 9, Some("it"), Transferred),
    ];
    for _ in 0..4 {
        seeds.push(call(-14, 9, Some("kundtjanst"), Transferred));
    }
    // IT's calls took 10 s, 30 s and 10 s (abandoned while ringing) in the menu: average 16.7 s, p90 30 s.
    seeds[1].menu_seconds = 30;
    // Kundtjänst queues: the day's 10:05 caller was answered by an agent after 20 s, the 14:05 caller gave up
    // after 90 s. Two queued, one answered (within 60 s): ASA 20 s, service level 50 %.
    seeds[3].queue = Some((20, Some("anna")));
    seeds[5].queue = Some((90, None));
    seeds
}

fn seed_database(path: &Path) {
    let store = SqliteStore::open(path).expect("create the database");
    let updates: Vec<RecordUpdate> = seeds()
        .iter()
        .enumerate()
        .map(|(n, seed)| RecordUpdate::Whole(Box::new(record(seed, n))))
        .collect();
    store.write(&updates).expect("seed the records");
}

/// What the page left behind once it said it was ready, and what it logged.
struct Visit {
    dom: String,
    console: Vec<String>,
    network_errors: Vec<String>,
}

/// Loads `url` in headless Chromium and waits until the page's status says `ready` (or a generous bound passes).
/// With `KNAPPVAL_DASHBOARD_SCREENSHOT=FILE.png` also saves what the page looks like, for a person to check.
fn visit(url: &str) -> Visit {
    let mut browser = Browser::launch();
    browser.navigate(url);
    let state = browser.wait_for(
        "document.getElementById('status')?.dataset.state",
        &json!("ready"),
    );
    let dom = browser.html();
    assert_eq!(state, "ready", "the page did not finish loading:\n{dom}");
    if let Ok(path) = std::env::var("KNAPPVAL_DASHBOARD_SCREENSHOT") {
        browser.screenshot(Path::new(&path));
    }
    Visit {
        dom,
        console: browser.console.clone(),
        network_errors: browser.network_errors.clone(),
    }
}

/// The text of an HTML fragment: each tag a space (SVG labels sit in separate elements), the entities Chromium
/// writes decoded, spaces collapsed.
fn text(html: &str) -> String {
    let mut out = String::new();
    let mut in_tag = false;
    for c in html.chars() {
        match c {
            '<' => {
                in_tag = true;
                out.push(' ');
            }
            '>' => in_tag = false,
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    out.replace("&nbsp;", " ")
        .replace(['\u{a0}', '\u{202f}'], " ")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&amp;", "&")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// The element that starts with `opening` (e.g. `<table class="hourly"`), up to its closing `</tag>`.
fn element<'a>(dom: &'a str, opening: &str) -> &'a str {
    let start = dom
        .find(opening)
        .unwrap_or_else(|| panic!("no {opening} in the page:\n{dom}"));
    let tag = opening[1..].split([' ', '>']).next().expect("a tag name");
    let close = format!("</{tag}>");
    let end = dom[start..]
        .find(&close)
        .unwrap_or_else(|| panic!("{opening} is not closed"));
    &dom[start..start + end + close.len()]
}

/// A table's rows as cell texts, header row first.
fn table(dom: &str, class: &str) -> Vec<Vec<String>> {
    element(dom, &format!("<table class=\"{class}\""))
        .split("<tr")
        .skip(1)
        .map(|row| {
            row.split("<t")
                .skip(1)
                .filter(|cell| cell.starts_with('h') || cell.starts_with('d'))
                .map(|cell| text(&format!("<t{}", cell.split("</t").next().unwrap_or(""))))
                .collect()
        })
        .collect()
}

fn row<'a>(rows: &'a [Vec<String>], header: &str) -> &'a [String] {
    rows.iter()
        .find(|row| row.first().is_some_and(|first| first.starts_with(header)))
        .unwrap_or_else(|| panic!("no row '{header}' in {rows:#?}"))
}

/// `[(hour, value)]` set, every other hour "0".
fn hours(values: &[(usize, &str)]) -> Vec<String> {
    (0..24)
        .map(|h| {
            values
                .iter()
                .find(|(hour, _)| *hour == h)
                .map_or("0", |(_, v)| v)
                .to_string()
        })
        .collect()
}

#[test]
fn the_dashboard_shows_the_seeded_figures_in_charts_and_tables_without_console_errors() {
    let fixture = Fixture::new();
    fixture.write_menu(&MenuSpec::new("sip:it@127.0.0.1:5999", "sip:kt@127.0.0.1:5999").yaml());
    seed_database(&fixture.db);
    let daemon = Daemon::start_with(fixture, &["--timezone", ZONE]);

    let (status, names) = daemon.get("/api/v1/functions");
    assert_eq!(status, 200, "{names}");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&names).expect("JSON"),
        serde_json::json!({"menu": "Knappval testkommun", "functions": [
            {"id": "it", "name": "IT Kundservice"},
            {"id": "kundtjanst", "name": "Kundtjänst"},
        ]})
    );

    let url = format!("http://{}/?day={DAY}&period=7", daemon.http);
    let page = visit(&url);
    let dom = &page.dom;
    assert!(
        page.console.is_empty() && page.network_errors.is_empty(),
        "the browser logged errors:\n{}\n{}",
        page.console.join("\n"),
        page.network_errors.join("\n")
    );

    // Calls per hour on the day, against the three earlier Tuesdays with calls: 09 (2+4+0)/3 = 2, 10 2/3.
    let hourly = table(dom, "hourly");
    let hour_names: Vec<String> = (0..24).map(|h| format!("{h:02}")).collect();
    assert_eq!(hourly[0][1..], hour_names[..]);
    assert_eq!(
        row(&hourly, "Dagen / The day")[1..],
        hours(&[(9, "3"), (10, "2"), (14, "1")])[..]
    );
    let average = row(
        &hourly,
        "Snitt, 3 tidigare tisdagar / Average, 3 previous Tuesdays",
    );
    assert_eq!(average[1..], hours(&[(9, "2"), (10, "0,7")])[..]);
    assert_eq!(
        row(&hourly, "Avbrutna / Abandoned")[1..],
        hours(&[(9, "1"), (14, "1")])[..]
    );
    // The chart draws the same: 24 bars, the 09 bar 1.5 times the 10 bar, and the average as a line.
    let hourly_svg = element(dom, "<div id=\"hourly-chart\"");
    assert!(hourly_svg.contains("role=\"img\""), "{hourly_svg}");
    assert_eq!(
        hourly_svg.matches("class=\"bar-today\"").count(),
        24,
        "one bar per hour: {hourly_svg}"
    );
    let bar_heights: Vec<f64> = hourly_svg
        .split("<rect ")
        .skip(1)
        .map(|rect| {
            let height = rect.split("height=\"").nth(1).expect("a height");
            height[..height.find('"').expect("quoted")]
                .parse()
                .expect("a number")
        })
        .collect();
    assert!(
        bar_heights[9] > 0.0 && (bar_heights[9] / bar_heights[10] - 1.5).abs() < 0.01,
        "{bar_heights:?}"
    );
    assert!(
        (bar_heights[14] * 3.0 - bar_heights[9]).abs() < 0.5,
        "{bar_heights:?}"
    );
    assert!(
        hourly_svg.contains("class=\"line-average\""),
        "{hourly_svg}"
    );

    // Per function over the 7 days up to the day, by name; the removed function by its id; no choice last.
    let functions = table(dom, "functions");
    assert_eq!(functions.len(), 5, "{functions:#?}");
    assert_eq!(
        row(&functions, "IT Kundservice")[1..9],
        ["3", "2", "1", "33 %", "0", "0", "16,7 s", "30 s"]
    );
    assert_eq!(row(&functions, "Kundtjänst")[1..5], ["2", "1", "1", "50 %"]);
    // The queue columns, shown because some call of the period waited in a queue.
    assert_eq!(
        functions[0][9..],
        [
            "I kö / Queued",
            "Besvarade / Answered",
            "Snitt väntetid till svar / ASA",
            "Servicenivå ≤ 60 s / Service level"
        ]
    );
    assert_eq!(
        row(&functions, "Kundtjänst")[9..],
        ["2", "1", "20 s", "50 %"]
    );
    assert_eq!(row(&functions, "IT Kundservice")[9..], ["0", "0", "–", "–"]);
    assert_eq!(row(&functions, "gamla")[1..3], ["1", "1"]);
    assert_eq!(
        row(&functions, "Inget val / No choice")[1..7],
        ["2", "0", "1", "50 %", "1", "0"]
    );
    let functions_chart = text(element(dom, "<div id=\"functions-chart\""));
    for name_and_count in [
        "IT Kundservice 3",
        "Kundtjänst 2",
        "gamla 1",
        "Inget val / No choice 2",
    ] {
        assert!(
            functions_chart.contains(name_and_count),
            "'{name_and_count}' not in the function chart: {functions_chart}"
        );
    }
    let abandoned_chart = text(element(dom, "<div id=\"abandoned-chart\""));
    assert!(
        abandoned_chart.contains("IT Kundservice 33 % (1 av/of 3)"),
        "{abandoned_chart}"
    );

    // Overview tiles: 8 calls in the period, 4 transferred, 3 abandoned.
    let summary = text(element(dom, "<dl id=\"summary\""));
    for tile in [
        "Samtal / Calls 8",
        "Kopplade / Transferred 4 50 %",
        "Avbrutna / Abandoned 3 38 %",
        "Besvarade i kö / Answered from a queue 1 50 %",
        "Servicenivå, svar inom 60 s / Service level, answered within 60 s 50 % 2 i kö / queued",
    ] {
        assert!(
            summary.contains(tile),
            "'{tile}' not in the overview: {summary}"
        );
    }

    // The funnel of the root menu over the period.
    let funnel = table(dom, "funnel");
    let funnel_figures: Vec<(&str, &str)> = funnel[1..]
        .iter()
        .map(|row| (row[0].as_str(), row[1].as_str()))
        .collect();
    assert_eq!(
        funnel_figures,
        [
            ("Nådde menyn / Reached", "8"),
            ("Tryckte 1 / Pressed 1", "2"),
            ("Tryckte 3 / Pressed 3", "3"),
            ("Tryckte 7 / Pressed 7", "1"),
            ("Ogiltiga val / Invalid", "1"),
            ("Tidsgränser / Timeouts", "1"),
            ("Lade på här / Hung up here", "1"),
        ]
    );

    // The heat map averages 8 weeks: Tuesday 09 had 3 + 2 + 4 calls (9/8), Tuesday 10 had 2 + 2 (4/8).
    let heat = table(dom, "heatmap");
    assert_eq!(heat.len(), 8, "{heat:#?}");
    assert_eq!(
        row(&heat, "tis / Tue")[1..],
        hours(&[(9, "1,1"), (10, "0,5"), (14, "0,1")])[..]
    );
    assert_eq!(row(&heat, "mån / Mon")[1..], hours(&[(8, "0,1")])[..]);
    assert_eq!(row(&heat, "sön / Sun")[1..], hours(&[(12, "0,1")])[..]);
    let busiest = element(dom, "<table class=\"heatmap\"");
    assert_eq!(busiest.matches("heat-6").count(), 1, "one darkest cell");
}

/// The value of `expression` in the page once it yields `want`; panics with the page's status otherwise.
fn wait_state(browser: &mut Browser, want: &str) {
    let state = browser.wait_for(
        "document.getElementById('status')?.dataset.state",
        &json!(want),
    );
    let status = browser.eval("document.getElementById('status')?.textContent");
    assert_eq!(state, want, "status: {status}");
}

#[test]
fn with_an_api_token_the_page_asks_for_it_once_keeps_it_for_the_tab_and_shows_the_figures() {
    let fixture = Fixture::new();
    fixture.write_menu(&MenuSpec::new("sip:it@127.0.0.1:5999", "sip:kt@127.0.0.1:5999").yaml());
    seed_database(&fixture.db);
    let token_file = fixture.path("api-token");
    std::fs::write(&token_file, "s3cret-Token_1\n").expect("write the token file");
    let token_arg = token_file.display().to_string();
    let daemon = Daemon::start_with(
        fixture,
        &["--timezone", ZONE, "--api-token-file", &token_arg],
    );
    // The page itself needs no token; its data does.
    let (status, page) = daemon.get("/");
    assert_eq!(status, 200, "{page}");
    assert_eq!(daemon.get("/dashboard/app.js").0, 200);
    assert_eq!(daemon.get("/api/v1/functions").0, 401);

    let url = format!("http://{}/?day={DAY}&period=7", daemon.http);
    let mut browser = Browser::launch();
    browser.navigate(&url);
    wait_state(&mut browser, "token");
    assert_eq!(
        browser.eval("document.getElementById('token-form').hidden"),
        json!(false)
    );

    // A wrong token: asked again, and told so.
    let submit = |token: &str| {
        format!(
            "document.getElementById('token').value = {}; \
             document.getElementById('token-form').requestSubmit(); true",
            json!(token)
        )
    };
    browser.eval(&submit("not-the-token"));
    wait_state(&mut browser, "token");
    browser.wait_for(
        "document.getElementById('token-form').classList.contains('wrong')",
        &json!(true),
    );

    browser.eval(&submit("s3cret-Token_1"));
    wait_state(&mut browser, "ready");
    assert_eq!(
        browser.eval("document.getElementById('token-form').hidden"),
        json!(true)
    );
    let summary = text(element(&browser.html(), "<dl id=\"summary\""));
    assert!(summary.contains("Samtal / Calls 8"), "{summary}");
    assert_eq!(
        browser.eval("sessionStorage.getItem('knappval.apiToken')"),
        json!("s3cret-Token_1")
    );

    // Loaded again in the same tab: no question, no refused request.
    let refused = browser.network_errors.len();
    // Marked, so that "ready" below can only come from the new load.
    browser.eval("document.getElementById('status').dataset.state = 'stale'");
    browser.navigate(&url);
    wait_state(&mut browser, "ready");
    assert_eq!(
        browser.eval("document.getElementById('token-form').hidden"),
        json!(true)
    );
    assert_eq!(
        browser.network_errors.len(),
        refused,
        "{:#?}",
        browser.network_errors
    );

    // The refusals were the two 401s before a good token, and nothing went to the console.
    assert!(
        browser.console.is_empty(),
        "the browser console:\n{}",
        browser.console.join("\n")
    );
    assert!(
        !browser.network_errors.is_empty()
            && browser.network_errors.iter().all(|e| e.contains("401")),
        "{:#?}",
        browser.network_errors
    );
}
