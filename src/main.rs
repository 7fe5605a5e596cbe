//! The `knappval` command line: parse, build, run. Nothing else lives here.

use std::io::Write;
use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use knappval::app::{self, Settings};
use knappval::records::stats::{self, DEFAULT_TIME_ZONE, GroupBy, StatsQuery};
use knappval::records::{ContactQuery, ContactStore, ExportFormat, SqliteStore, parse_timestamp};

const DEFAULT_MENU: &str = "menus/kommunsupport.yaml";
const DEFAULT_PROMPTS: &str = "prompts";
const DEFAULT_SIP: &str = "127.0.0.1:5060";
const DEFAULT_HTTP: &str = "127.0.0.1:8080";
const DEFAULT_DB: &str = "data/contacts.db";
const DEFAULT_RTP_PORTS: &str = "10000-20000";
const DEFAULT_GRACE: &str = "30s";
const DEFAULT_MEDIA_TIMEOUT: &str = "60s";
const DEFAULT_ANSWER_DELAY: &str = "0s";

#[derive(Parser)]
#[command(
    name = "knappval",
    version,
    about = "SIP IVR and call routing: one number, a menu, the right support function"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Answer calls: play the menu, collect digits, hand calls to their function, record every call.
    Run(RunArgs),
    /// Validate a menu and its prompts; exit 1 with file:line:col errors.
    Check {
        #[arg(long, env = "KNAPPVAL_MENU", default_value = DEFAULT_MENU)]
        menu: PathBuf,
        #[arg(long, env = "KNAPPVAL_PROMPTS", default_value = DEFAULT_PROMPTS)]
        prompts: PathBuf,
    },
    /// Export contact records, newest first.
    Contacts {
        #[arg(long, env = "KNAPPVAL_DB", default_value = DEFAULT_DB)]
        db: PathBuf,
        #[arg(long, value_enum, default_value = "jsonl")]
        format: ExportFormat,
        /// Only calls started at or after this time (RFC 3339, e.g. 2026-11-23T08:00:00Z).
        #[arg(long)]
        since: Option<String>,
        /// At most this many records.
        #[arg(long)]
        limit: Option<usize>,
    },
    /// Statistics from the contact records: calls, outcomes and menu time per function, outcome or time bucket.
    Stats(StatsArgs),
}

#[derive(clap::Args)]
struct StatsArgs {
    #[arg(long, env = "KNAPPVAL_DB", default_value = DEFAULT_DB)]
    db: PathBuf,
    /// Calls started at or after this time: RFC 3339 (2026-03-29T00:00:00+01:00) or a date (local midnight).
    #[arg(long)]
    from: String,
    /// Calls started before this time, written like --from.
    #[arg(long)]
    to: String,
    /// Rows per function, outcome, hour, weekday_hour, day or week.
    #[arg(long, default_value = "day")]
    group_by: String,
    /// Only the calls routed to this support function.
    #[arg(long)]
    function: Option<String>,
    /// The IANA zone days and hours are counted in.
    #[arg(long, env = "KNAPPVAL_TIMEZONE", default_value = DEFAULT_TIME_ZONE)]
    timezone: String,
    /// Print the menu funnel (what callers did in each menu) instead of the rows.
    #[arg(long)]
    menu_funnel: bool,
    #[arg(long, value_enum, default_value = "table")]
    format: StatsFormat,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum StatsFormat {
    /// A table for the terminal.
    Table,
    Csv,
    /// The same JSON as the HTTP API.
    Json,
}

/// Flags win over environment variables, which win over the settings file, which wins over the defaults.
#[derive(clap::Args)]
struct RunArgs {
    /// Settings file (YAML) with any of: menu, prompts, sip, http, db, rtp_ports, grace_period, media_timeout,
    /// answer_delay, timezone.
    #[arg(long, env = "KNAPPVAL_CONFIG")]
    config: Option<PathBuf>,
    #[arg(long, env = "KNAPPVAL_MENU")]
    menu: Option<PathBuf>,
    #[arg(long, env = "KNAPPVAL_PROMPTS")]
    prompts: Option<PathBuf>,
    /// SIP address (UDP and TCP), e.g. 127.0.0.1:5060 or [::1]:5060; port 0 picks a free port.
    #[arg(long, env = "KNAPPVAL_SIP")]
    sip: Option<String>,
    /// HTTP address for the API and health check.
    #[arg(long, env = "KNAPPVAL_HTTP")]
    http: Option<String>,
    /// SQLite file for contact records (created with its folder).
    #[arg(long, env = "KNAPPVAL_DB")]
    db: Option<PathBuf>,
    /// RTP port range on the SIP address, e.g. 10000-20000.
    #[arg(long, env = "KNAPPVAL_RTP_PORTS")]
    rtp_ports: Option<String>,
    /// After SIGTERM, how long calls in progress may go on before they are ended (e.g. 30s).
    #[arg(long, env = "KNAPPVAL_GRACE_PERIOD")]
    grace_period: Option<String>,
    /// How long a caller's RTP may stop before the call is taken as dead (0s disables).
    #[arg(long, env = "KNAPPVAL_MEDIA_TIMEOUT")]
    media_timeout: Option<String>,
    /// Let the call ring (180) this long before answering (default 0s: answer at once).
    #[arg(long, env = "KNAPPVAL_ANSWER_DELAY")]
    answer_delay: Option<String>,
    /// The IANA time zone statistics count local days and hours in (default Europe/Stockholm).
    #[arg(long, env = "KNAPPVAL_TIMEZONE")]
    timezone: Option<String>,
    /// Log format on stderr: text or json. The level comes from KNAPPVAL_LOG or RUST_LOG (default info).
    #[arg(long, env = "KNAPPVAL_LOG_FORMAT", default_value = "text")]
    log_format: String,
}

/// The settings file: the same names as the flags, with underscores.
#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct SettingsFile {
    menu: Option<PathBuf>,
    prompts: Option<PathBuf>,
    sip: Option<String>,
    http: Option<String>,
    db: Option<PathBuf>,
    rtp_ports: Option<String>,
    grace_period: Option<String>,
    media_timeout: Option<String>,
    answer_delay: Option<String>,
    timezone: Option<String>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run(args) => {
            init_logging(&args.log_format);
            match settings(args).and_then(run) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!("{e:#}");
                    eprintln!("knappval: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Check { menu, prompts } => {
            // The same decode `run` does, so a menu that passes here also loads there.
            let (report, ok) =
                knappval::menu::check_report(&menu, &prompts, &knappval::media::probe_wav);
            if ok {
                println!("{report}");
                ExitCode::SUCCESS
            } else {
                eprintln!("{report}");
                ExitCode::FAILURE
            }
        }
        Command::Contacts {
            db,
            format,
            since,
            limit,
        } => match contacts(&db, format, since, limit) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("knappval: {e:#}");
                ExitCode::FAILURE
            }
        },
        Command::Stats(args) => match print_stats(args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("knappval: {e:#}");
                ExitCode::FAILURE
            }
        },
    }
}

fn print_stats(args: StatsArgs) -> anyhow::Result<()> {
    if !args.db.exists() {
        anyhow::bail!(
            "no contact record database at {} (start the daemon once, or pass --db)",
            args.db.display()
        );
    }
    let zone = stats::time_zone(&args.timezone).context("--timezone")?;
    let from = stats::parse_instant("--from", &args.from, &zone)?;
    let to = stats::parse_instant("--to", &args.to, &zone)?;
    let store = SqliteStore::open(&args.db)?;
    let mut out = std::io::stdout().lock();
    let written = if args.menu_funnel {
        if to <= from {
            anyhow::bail!("--to ({to}) must be later than --from ({from})");
        }
        let funnel = store.menu_funnel(from, to)?;
        match args.format {
            StatsFormat::Table => writeln!(out, "{}", funnel.table()),
            StatsFormat::Json => writeln!(out, "{}", serde_json::to_string_pretty(&funnel)?),
            StatsFormat::Csv => {
                knappval::records::write_csv(&mut out, funnel.csv_header(), funnel.csv_rows())
            }
        }
    } else {
        let group_by: GroupBy = args.group_by.parse().context("--group-by")?;
        let mut query = StatsQuery::new(from, to, group_by, zone)?;
        query.function = args.function;
        let report = store.stats(&query)?;
        match args.format {
            StatsFormat::Table => writeln!(out, "{}", report.table()),
            StatsFormat::Json => writeln!(out, "{}", serde_json::to_string_pretty(&report)?),
            StatsFormat::Csv => knappval::records::write_csv(
                &mut out,
                stats::STATS_CSV_HEADER,
                report.rows.iter().map(|row| row.csv_cells()),
            ),
        }
    };
    match written.and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        // `knappval stats | head` is a normal way to end.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(e.into()),
    }
}

fn run(settings: Settings) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("knappval")
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(app::run(settings))
}

fn contacts(
    db: &Path,
    format: ExportFormat,
    since: Option<String>,
    limit: Option<usize>,
) -> anyhow::Result<()> {
    if !db.exists() {
        anyhow::bail!(
            "no contact record database at {} (start the daemon once, or pass --db)",
            db.display()
        );
    }
    let since = since
        .map(|s| {
            parse_timestamp(&s).with_context(|| {
                format!("--since {s:?} is not RFC 3339, e.g. 2026-11-23T08:00:00Z")
            })
        })
        .transpose()?;
    let store = SqliteStore::open(db)?;
    let records = store.list(&ContactQuery { since, limit })?;
    let mut out = std::io::stdout().lock();
    match knappval::records::export(&records, format, &mut out).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        // `knappval contacts | head` is a normal way to end.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(e.into()),
    }
}

fn settings(args: RunArgs) -> anyhow::Result<Settings> {
    let file = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the settings file {}", path.display()))?;
            serde_saphyr::from_str::<SettingsFile>(&text)
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?
        }
        None => SettingsFile::default(),
    };
    let sip = args.sip.or(file.sip).unwrap_or_else(|| DEFAULT_SIP.into());
    let http = args
        .http
        .or(file.http)
        .unwrap_or_else(|| DEFAULT_HTTP.into());
    let rtp_ports = args
        .rtp_ports
        .or(file.rtp_ports)
        .unwrap_or_else(|| DEFAULT_RTP_PORTS.into());
    let grace = args
        .grace_period
        .or(file.grace_period)
        .unwrap_or_else(|| DEFAULT_GRACE.into());
    let media_timeout = args
        .media_timeout
        .or(file.media_timeout)
        .unwrap_or_else(|| DEFAULT_MEDIA_TIMEOUT.into());
    let answer_delay = args
        .answer_delay
        .or(file.answer_delay)
        .unwrap_or_else(|| DEFAULT_ANSWER_DELAY.into());
    Ok(Settings {
        menu: args
            .menu
            .or(file.menu)
            .unwrap_or_else(|| DEFAULT_MENU.into()),
        prompts: args
            .prompts
            .or(file.prompts)
            .unwrap_or_else(|| DEFAULT_PROMPTS.into()),
        sip: parse_addr("sip", &sip)?,
        http: parse_addr("http", &http)?,
        db: args.db.or(file.db).unwrap_or_else(|| DEFAULT_DB.into()),
        rtp_ports: parse_port_range(&rtp_ports)?,
        grace_period: parse_duration("grace_period", &grace)?,
        media_timeout: parse_duration("media_timeout", &media_timeout)?,
        answer_delay: parse_duration("answer_delay", &answer_delay)?,
        time_zone: stats::time_zone(
            &args
                .timezone
                .or(file.timezone)
                .unwrap_or_else(|| DEFAULT_TIME_ZONE.into()),
        )
        .context("--timezone")?,
    })
}

fn parse_addr(what: &str, value: &str) -> anyhow::Result<SocketAddr> {
    value.parse().with_context(|| {
        format!("--{what} {value:?} is not ADDR:PORT (e.g. 127.0.0.1:5060 or [::1]:5060)")
    })
}

fn parse_port_range(value: &str) -> anyhow::Result<RangeInclusive<u16>> {
    let parsed = value.split_once('-').and_then(|(lo, hi)| {
        Some((
            lo.trim().parse::<u16>().ok()?,
            hi.trim().parse::<u16>().ok()?,
        ))
    });
    match parsed {
        Some((lo, hi)) if lo > 0 && lo < hi => Ok(lo..=hi),
        _ => anyhow::bail!(
            "--rtp-ports {value:?} is not LOW-HIGH with 0 < LOW < HIGH (e.g. 10000-20000)"
        ),
    }
}

fn parse_duration(what: &str, value: &str) -> anyhow::Result<Duration> {
    knappval::menu::parse_duration(value).map_err(|e| {
        anyhow::anyhow!(
            "--{} {value:?}: {} ({})",
            what.replace('_', "-"),
            e.message,
            e.help
        )
    })
}

fn init_logging(format: &str) {
    use tracing_subscriber::EnvFilter;
    // rsipstack logs every datagram at info; our own lines tell each call's story.
    let filter = EnvFilter::try_from_env("KNAPPVAL_LOG")
        .or_else(|_| EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| EnvFilter::new("info,rsipstack=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    if format.eq_ignore_ascii_case("json") {
        builder.json().init();
    } else {
        builder.init();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_args(args: &[&str]) -> RunArgs {
        let mut argv = vec!["knappval", "run"];
        argv.extend_from_slice(args);
        match Cli::try_parse_from(argv)
            .expect("valid command line")
            .command
        {
            Command::Run(args) => args,
            _ => unreachable!("parsed as run"),
        }
    }

    #[test]
    fn defaults_are_the_shipped_menu_on_loopback() {
        let s = settings(run_args(&[])).unwrap();
        assert_eq!(s.menu, PathBuf::from(DEFAULT_MENU));
        assert_eq!(s.sip, "127.0.0.1:5060".parse().unwrap());
        assert_eq!(s.http, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(s.db, PathBuf::from(DEFAULT_DB));
        assert_eq!(s.rtp_ports, 10000..=20000);
        assert_eq!(s.grace_period, Duration::from_secs(30));
        assert_eq!(s.answer_delay, Duration::ZERO);
        assert_eq!(s.media_timeout, Duration::from_secs(60));
        let off = settings(run_args(&["--media-timeout", "0s"])).unwrap();
        assert_eq!(
            off.media_timeout,
            Duration::ZERO,
            "0s disables the media timeout"
        );
    }

    #[test]
    fn the_settings_file_fills_in_and_flags_win() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("knappval.yaml");
        std::fs::write(
            &file,
            "sip: \"[::1]:5070\"\nhttp: 127.0.0.1:9090\nrtp_ports: 30000-30999\ngrace_period: 5s\ndb: /var/lib/knappval/c.db\ntimezone: Europe/Helsinki\n",
        )
        .unwrap();
        let config = file.to_str().unwrap();
        let s = settings(run_args(&["--config", config, "--http", "127.0.0.1:9191"])).unwrap();
        assert_eq!(s.sip, "[::1]:5070".parse().unwrap());
        assert_eq!(s.http, "127.0.0.1:9191".parse().unwrap(), "the flag wins");
        assert_eq!(s.rtp_ports, 30000..=30999);
        assert_eq!(s.grace_period, Duration::from_secs(5));
        assert_eq!(s.db, PathBuf::from("/var/lib/knappval/c.db"));
        assert_eq!(s.time_zone.iana_name(), Some("Europe/Helsinki"));
        let flag = settings(run_args(&["--config", config, "--timezone", "UTC"])).unwrap();
        assert_eq!(flag.time_zone.iana_name(), Some("UTC"), "the flag wins");
        let default = settings(run_args(&[])).unwrap();
        assert_eq!(default.time_zone.iana_name(), Some("Europe/Stockholm"));
    }

    #[test]
    fn bad_values_say_what_to_write() {
        let err = settings(run_args(&["--sip", "localhost"]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("ADDR:PORT"), "{err}");
        let err = settings(run_args(&["--rtp-ports", "20000-10000"]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("LOW-HIGH"), "{err}");
        let err = settings(run_args(&["--grace-period", "soon"]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("grace-period"), "{err}");
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("bad.yaml");
        std::fs::write(&file, "sipp: 127.0.0.1:5060\n").unwrap();
        let err = settings(run_args(&["--config", file.to_str().unwrap()]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("bad.yaml"), "{err}");
    }
}
