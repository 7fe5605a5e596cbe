//! Statistics over a year of a mid-size municipality: 1.5 million contact records in a temp SQLite file, and every
//! stats query timed over the whole year (the worst case a dashboard or a manager can ask for).
//!
//! `KNAPPVAL_BENCH_RECORDS=200000 cargo bench --bench stats` seeds fewer (and `cargo test` only 5 000); `KNAPPVAL_BENCH_DB=FILE` keeps (or
//! reuses) the seeded file, e.g. to run EXPLAIN QUERY PLAN on it with sqlite3.

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use knappval::flow::Step;
use knappval::records::stats::{DEFAULT_TIME_ZONE, GroupBy, StatsQuery, funnel_summary, time_zone};
use knappval::records::{ContactStore, SqliteStore, format_timestamp};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const YEAR_START: i64 = 1_767_222_000; // 2026-01-01T00:00:00+01:00
const YEAR_SECONDS: i64 = 365 * 86_400;
const FUNCTIONS: [&str; 8] = [
    "kundtjanst",
    "it",
    "personal",
    "skola",
    "bygglov",
    "socialtjanst",
    "vatten",
    "parkering",
];

/// 1.5 million under `cargo bench`; `cargo test --all-targets` runs each benchmark once as a smoke test (no
/// `--bench` argument), where a few thousand records show the same code working in a debug build.
fn records() -> usize {
    let benchmarking = std::env::args().any(|arg| arg == "--bench");
    std::env::var("KNAPPVAL_BENCH_RECORDS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(if benchmarking { 1_500_000 } else { 5_000 })
}

/// A start time weighted like a service centre's day: most calls in office hours on weekdays.
fn start_second(rng: &mut StdRng) -> i64 {
    loop {
        let t = YEAR_START + rng.random_range(0..YEAR_SECONDS);
        let local = t + 3600;
        let hour = (local % 86_400) / 3600;
        let weekday = (local / 86_400 + 3) % 7; // 0 = Monday
        let weight = match (weekday, hour) {
            (0..=4, 8..=16) => 100,
            (0..=4, 7 | 17..=19) => 30,
            (5 | 6, 9..=15) => 8,
            _ => 2,
        };
        if rng.random_range(0..100) < weight {
            return t;
        }
    }
}

fn iso(unix_ms: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(unix_ms) * 1_000_000)
        .expect("in range");
    format_timestamp(t)
}

/// Seeds `count` finished calls straight into the store's table, one transaction (the daemon's own path syncs
/// every record, which would take hours here).
fn seed(path: &Path, count: usize) {
    drop(SqliteStore::open(path).expect("create the store"));
    let mut connection = rusqlite::Connection::open(path).expect("open for seeding");
    connection
        .pragma_update(None, "synchronous", "OFF")
        .expect("pragma");
    let transaction = connection.transaction().expect("begin");
    {
        let mut insert = transaction
            .prepare(
                "INSERT INTO contact_records (record_id, call_id, caller, called, started_at, answered_at, ended_at,
                 duration_ms, digits, path, function_id, outcome, transfer_target, transferred_at, end_reason, steps,
                 funnel, queue_entered_at, queue_wait_ms, answered_by, queue)
                 VALUES (?15, ?1, ?2, '0771100200', ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14,
                         ?16, ?17, ?18, ?19, ?20)",
            )
            .expect("prepare");
        let mut rng = StdRng::seed_from_u64(9);
        for i in 0..count {
            let started = start_second(&mut rng) * 1000 + rng.random_range(0..1000);
            let roll = rng.random_range(0..100);
            let answered = (roll >= 3).then_some(started + 300);
            let function_index = rng.random_range(0..FUNCTIONS.len() + 1);
            let function = FUNCTIONS.get(function_index).copied();
            let choice_ms = rng.random_range(2_000..40_000);
            let digit = char::from(b'1' + u8::try_from(function_index % 9).unwrap_or(0));
            let mut steps = vec![r#"{"at_ms":0,"kind":"entered_menu","value":"root"}"#.to_string()];
            if rng.random_range(0..10) == 0 {
                steps.push(format!(
                    r#"{{"at_ms":{},"kind":"invalid_digit","value":"7"}}"#,
                    choice_ms / 2
                ));
            }
            let (outcome, transferred, ended, reason) = match (answered, roll) {
                (None, _) => ("rejected", None, started + 100, "488 no common codec"),
                (Some(a), 3..=14) => {
                    steps.push(format!(
                        r#"{{"at_ms":{choice_ms},"kind":"caller_hung_up"}}"#
                    ));
                    ("abandoned", None, a + choice_ms, "caller BYE")
                }
                (Some(a), 15..=19) => {
                    steps.push(format!(r#"{{"at_ms":{choice_ms},"kind":"timeout"}}"#));
                    steps.push(format!(r#"{{"at_ms":{choice_ms},"kind":"hangup"}}"#));
                    ("timeout", None, a + choice_ms, "menu timeout")
                }
                (Some(a), 20..=24) => ("failed", None, a + choice_ms + 30_000, "486 busy"),
                (Some(a), _) => {
                    let ring = rng.random_range(1_000..20_000);
                    let f = function.unwrap_or("kundtjanst");
                    steps.push(format!(
                        r#"{{"at_ms":{choice_ms},"kind":"digit","value":"{digit}"}}"#
                    ));
                    steps.push(format!(
                        r#"{{"at_ms":{choice_ms},"kind":"transfer_started","value":"{f}"}}"#
                    ));
                    steps.push(format!(
                        r#"{{"at_ms":{},"kind":"transferred","value":"{f}"}}"#,
                        choice_ms + ring
                    ));
                    let t = a + choice_ms + ring;
                    (
                        "transferred",
                        Some(t),
                        t + rng.random_range(30_000..600_000),
                        "caller BYE",
                    )
                }
            };
            let steps = format!("[{}]", steps.join(","));
            // The daemon's writer keeps this with every finished call; the same function computes it here.
            let funnel = serde_json::from_str::<Vec<Step>>(&steps)
                .ok()
                .and_then(|steps| funnel_summary(&steps));
            // The first two functions are queues: their answered calls waited up to three minutes for an agent.
            let queue = match (function_index, transferred) {
                (0 | 1, Some(t)) => {
                    let wait = rng.random_range(1_000..180_000).min(t - started);
                    Some((
                        iso(t - wait),
                        wait,
                        format!("agent-{}", rng.random_range(0..20)),
                    ))
                }
                _ => None,
            };
            insert
                .execute(rusqlite::params![
                    format!("{i:08x}@bench"),
                    format!("07{:08}", rng.random_range(0..100_000_000u32)),
                    iso(started),
                    answered.map(iso),
                    iso(ended),
                    ended - started,
                    digit.to_string(),
                    r#"["root"]"#,
                    function,
                    outcome,
                    function.map(|f| format!("sip:{f}@127.0.0.1:5070")),
                    transferred.map(iso),
                    reason,
                    steps,
                    format!("{i:032x}"),
                    funnel,
                    queue.as_ref().map(|q| q.0.clone()),
                    queue.as_ref().map(|q| q.1),
                    queue.as_ref().map(|q| q.2.clone()),
                    queue.as_ref().and(function),
                ])
                .expect("insert");
        }
    }
    transaction.commit().expect("commit");
    // No ANALYZE: the daemon never runs it, so the planner works here as it does there, without statistics.
    connection
        .execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")
        .expect("checkpoint");
}

fn database() -> (Option<tempfile::TempDir>, PathBuf) {
    if let Ok(path) = std::env::var("KNAPPVAL_BENCH_DB") {
        let path = PathBuf::from(path);
        if !path.exists() {
            seed_timed(&path);
        }
        return (None, path);
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("contacts.db");
    seed_timed(&path);
    (Some(dir), path)
}

fn seed_timed(path: &Path) {
    let count = records();
    let started = Instant::now();
    seed(path, count);
    eprintln!(
        "seeded {count} records into {} in {:.1} s ({} MB)",
        path.display(),
        started.elapsed().as_secs_f64(),
        std::fs::metadata(path)
            .map(|m| m.len() / 1_000_000)
            .unwrap_or(0)
    );
}

/// CPU time (user + system) of this process so far: on a shared, loaded machine the wall clock says as much
/// about the neighbours as about the query.
fn cpu_time() -> Duration {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage only writes the struct it is given, and RUSAGE_SELF is always valid.
    let usage = unsafe {
        libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr());
        usage.assume_init()
    };
    let seconds = |t: libc::timeval| {
        Duration::from_secs(u64::try_from(t.tv_sec).unwrap_or(0))
            + Duration::from_micros(u64::try_from(t.tv_usec).unwrap_or(0))
    };
    seconds(usage.ru_utime) + seconds(usage.ru_stime)
}

/// Prints the best wall and CPU time of five runs, before criterion's own (wall-clock) statistics.
fn best_of_five(name: &str, mut run: impl FnMut()) {
    let (mut wall, mut cpu) = (Duration::MAX, Duration::MAX);
    for _ in 0..5 {
        let (started, cpu_before) = (Instant::now(), cpu_time());
        run();
        wall = wall.min(started.elapsed());
        cpu = cpu.min(cpu_time().saturating_sub(cpu_before));
    }
    eprintln!(
        "{name}: best of 5: {} ms wall, {} ms CPU",
        wall.as_millis(),
        cpu.as_millis()
    );
}

fn stats(c: &mut Criterion) {
    let (_dir, path) = database();
    let store = SqliteStore::open(&path).expect("open the seeded store");
    let zone = time_zone(DEFAULT_TIME_ZONE).expect("zone");
    let year = |group_by| {
        StatsQuery::new(
            "2026-01-01T00:00:00+01:00".parse().expect("from"),
            "2027-01-01T00:00:00+01:00".parse().expect("to"),
            group_by,
            zone.clone(),
        )
        .expect("query")
    };
    let mut group = c.benchmark_group("stats over a year");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(8));
    for group_by in GroupBy::ALL {
        let query = year(group_by);
        best_of_five(&format!("year group_by={group_by}"), || {
            black_box(store.stats(&query).expect("stats"));
        });
        group.bench_function(format!("group_by={group_by}"), |b| {
            b.iter(|| black_box(store.stats(&query).expect("stats")))
        });
    }
    let mut one_function = year(GroupBy::Day);
    one_function.function = Some("it".into());
    best_of_five("year group_by=day&function=it", || {
        black_box(store.stats(&one_function).expect("stats"));
    });
    group.bench_function("group_by=day&function=it", |b| {
        b.iter(|| black_box(store.stats(&one_function).expect("stats")))
    });
    let store = &store;
    let funnel = |from: &str, to: &str| {
        let (from, to) = (from.parse().expect("from"), to.parse().expect("to"));
        move || black_box(store.menu_funnel(from, to).expect("funnel"))
    };
    let year_funnel = funnel("2026-01-01T00:00:00+01:00", "2027-01-01T00:00:00+01:00");
    best_of_five("year menu funnel", || {
        year_funnel();
    });
    group.bench_function("menu funnel", |b| b.iter(&year_funnel));
    group.finish();
    let mut group = c.benchmark_group("stats over a month");
    group.sample_size(10);
    let month = |group_by| {
        StatsQuery::new(
            "2026-03-01T00:00:00+01:00".parse().expect("from"),
            "2026-04-01T00:00:00+02:00".parse().expect("to"),
            group_by,
            zone.clone(),
        )
        .expect("query")
    };
    for group_by in [GroupBy::Hour, GroupBy::Function] {
        let query = month(group_by);
        best_of_five(&format!("month group_by={group_by}"), || {
            black_box(store.stats(&query).expect("stats"));
        });
        group.bench_function(format!("group_by={group_by}"), |b| {
            b.iter(|| black_box(store.stats(&query).expect("stats")))
        });
    }
    let month_funnel = funnel("2026-03-01T00:00:00+01:00", "2026-04-01T00:00:00+02:00");
    best_of_five("month menu funnel", || {
        month_funnel();
    });
    group.bench_function("menu funnel", |b| b.iter(&month_funnel));
    group.finish();
}

criterion_group!(benches, stats);
criterion_main!(benches);
