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
use knappval::routing::probe::ProbeMode;
use serde_saphyr::{MessageFormatter, Spanned};

mod announce_cli;

const DEFAULT_MENU: &str = "menus/kommunsupport.yaml";
const DEFAULT_PROMPTS: &str = "prompts";
const DEFAULT_SIP: &str = "127.0.0.1:5060";
const DEFAULT_HTTP: &str = "127.0.0.1:8080";
const DEFAULT_DB: &str = "data/contacts.db";
const DEFAULT_RTP_PORTS: &str = "10000-20000";
const DEFAULT_GRACE: &str = "30s";
const DEFAULT_MEDIA_TIMEOUT: &str = "60s";
const DEFAULT_ANSWER_DELAY: &str = "0s";
const DEFAULT_PROBE_INTERVAL: &str = "20s";
const DEFAULT_TIMEZONE: &str = "Europe/Stockholm";

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

// Parsed once at start: the size of the run variant's settings costs nothing worth a box.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// Answer calls: play the menu, collect digits, hand calls to their function, record every call.
    Run(Box<RunArgs>),
    /// Validate a menu and its prompts: list every mistake with file:line:col and its fix, exit 1 if there is
    /// any.
    Check {
        /// Menu file (YAML) to check.
        #[arg(long, env = "KNAPPVAL_MENU", default_value = DEFAULT_MENU, value_name = "FILE")]
        menu: PathBuf,
        /// Folder with the prompts the menu names, as <id>.wav.
        #[arg(long, env = "KNAPPVAL_PROMPTS", default_value = DEFAULT_PROMPTS, value_name = "DIR")]
        prompts: PathBuf,
        /// Agents file: queue agents given by id must be in it.
        #[arg(long, env = "KNAPPVAL_AGENTS")]
        agents: Option<PathBuf>,
    },
    /// Manage the agents file (who may REGISTER as an agent).
    Agents {
        #[command(subcommand)]
        command: AgentsCommand,
    },
    /// Walk one call through the menu, as the daemon would, on simulated time: what the caller hears and where
    /// the call goes. Without --digits, asks for each key on stdin (an empty line waits for the timeout).
    Simulate {
        #[arg(long, env = "KNAPPVAL_MENU", default_value = DEFAULT_MENU)]
        menu: PathBuf,
        #[arg(long, env = "KNAPPVAL_PROMPTS", default_value = DEFAULT_PROMPTS)]
        prompts: PathBuf,
        /// When the call comes, in the service's time zone: "YYYY-MM-DD HH:MM" (default: now).
        #[arg(long)]
        at: Option<String>,
        /// The keys the caller presses, one each time the menu waits, e.g. 3,1; an empty item lets the timeout
        /// pass. Once they run out the caller stays silent.
        #[arg(long)]
        digits: Option<String>,
        /// An announcement on the board for this call (prompt id), played after the greeting; repeat for more.
        #[arg(long = "announce", value_name = "PROMPT")]
        announce: Vec<String>,
        #[arg(long, value_enum, default_value = "text")]
        format: SimulateFormat,
    },
    /// Put up, take down or list the announcements of the running daemon (through its HTTP API).
    Announce {
        /// The daemon's HTTP API address.
        #[arg(long, env = "KNAPPVAL_HTTP", default_value = DEFAULT_HTTP, value_name = "ADDR", global = true)]
        http: String,
        #[command(subcommand)]
        command: AnnounceCommand,
    },
    /// Draw the menu: menus, options as edges labelled with their keys, functions as leaves, fallbacks dashed.
    Graph {
        #[arg(long, env = "KNAPPVAL_MENU", default_value = DEFAULT_MENU)]
        menu: PathBuf,
        #[arg(long, value_enum, default_value = "dot")]
        format: GraphFormat,
    },
    /// Draft prompts: render a menu's prompts from their text, to try the menu before the recordings exist.
    Prompts {
        #[command(subcommand)]
        command: PromptsCommand,
    },
    /// Export contact records, newest first.
    Contacts {
        /// SQLite file the daemon writes its contact records to.
        #[arg(long, env = "KNAPPVAL_DB", default_value = DEFAULT_DB, value_name = "FILE")]
        db: PathBuf,
        /// Output format.
        #[arg(long, value_enum, default_value = "jsonl")]
        format: ExportFormat,
        /// Only calls started at or after this time (RFC 3339, e.g. 2026-11-23T08:00:00Z).
        #[arg(long, value_name = "TIME")]
        since: Option<String>,
        /// At most this many records.
        #[arg(long, value_name = "N")]
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
    /// An agent's answer within this wait (whole seconds) counts toward a queue's service level.
    #[arg(
        long,
        env = "KNAPPVAL_SERVICE_LEVEL",
        value_name = "DURATION",
        default_value = "60s"
    )]
    service_level: String,
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

#[derive(Subcommand)]
enum AgentsCommand {
    /// Create or update agent ID with the password on the first line of stdin (stored as HA1 digests only).
    /// Creates the agents file (mode 0600) if it does not exist; keeps the other agents and comments.
    Passwd {
        #[arg(long, env = "KNAPPVAL_AGENTS")]
        agents: PathBuf,
        /// The agent's display name (kept from the file when not given).
        #[arg(long)]
        name: Option<String>,
        /// The agent id: the user part of the address the phone registers, e.g. it-anna.
        id: String,
    },
}

#[derive(Subcommand)]
enum AnnounceCommand {
    /// Play a prompt to every caller after the greeting (or, with --function, to callers who choose that
    /// function) until --until or `announce off`.
    On {
        /// The prompt id: a WAV in the daemon's prompts folder (loaded at start).
        #[arg(long, value_name = "ID")]
        prompt: String,
        /// When it stops by itself: RFC 3339 (2026-12-01T16:00:00+01:00) or HH:MM, meaning today in --timezone.
        #[arg(long, value_name = "T")]
        until: Option<String>,
        /// Only for callers who choose this function (its id in the menu).
        #[arg(long, value_name = "ID")]
        function: Option<String>,
        /// The service's time zone, for --until HH:MM (the menu's hours.timezone).
        #[arg(long, env = "KNAPPVAL_TIMEZONE", default_value = DEFAULT_TIMEZONE, value_name = "TZ")]
        timezone: String,
    },
    /// Take an announcement down by its id.
    Off { id: String },
    /// List the active announcements, oldest first.
    List,
}

#[derive(Subcommand)]
enum PromptsCommand {
    /// Render each prompt the menu names from its text in --text with espeak-ng, as an 8 kHz mono 16-bit WAV in
    /// the prompts folder, marked as a draft (`check` lists drafts). Recordings are kept unless --force.
    Synth {
        /// Menu file (YAML) whose prompts to render.
        #[arg(long, env = "KNAPPVAL_MENU", default_value = DEFAULT_MENU, value_name = "FILE")]
        menu: PathBuf,
        /// The prompts' texts (YAML), one a line: welcome: "Välkommen till ..."
        #[arg(long, value_name = "FILE")]
        text: PathBuf,
        /// Folder to write the prompts to, as <id>.wav.
        #[arg(long, env = "KNAPPVAL_PROMPTS", default_value = DEFAULT_PROMPTS, value_name = "DIR")]
        prompts: PathBuf,
        /// espeak-ng voice (`espeak-ng --voices` lists them).
        #[arg(long, default_value = "sv", value_name = "VOICE")]
        voice: String,
        /// Replace recorded prompts too, not only drafts.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum SimulateFormat {
    Text,
    /// One JSON object: outcome, function, heard, path.
    Json,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum GraphFormat {
    Dot,
    Mermaid,
}

/// Flags win over environment variables, which win over the settings file, which wins over the defaults.
// The defaults are written into the help texts rather than given to clap: a clap default would always be set and
// so hide the settings file's value.
#[derive(clap::Args)]
struct RunArgs {
    /// Settings file (YAML) with any of: menu, prompts, sip, http, db, rtp_ports, grace_period, media_timeout,
    /// answer_delay, agents, digest, probe_interval, probe_mode, log_format, timezone, caller_numbers, caller_key,
    /// api_token_file, retention, service_level.
    #[arg(long, env = "KNAPPVAL_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Menu file (YAML); check it first with `knappval check` [default: menus/kommunsupport.yaml]
    #[arg(long, env = "KNAPPVAL_MENU", value_name = "FILE")]
    menu: Option<PathBuf>,
    /// Folder with the prompts the menu names, as <id>.wav [default: prompts]
    #[arg(long, env = "KNAPPVAL_PROMPTS", value_name = "DIR")]
    prompts: Option<PathBuf>,
    /// SIP address (UDP and TCP), e.g. [::1]:5060; port 0 picks a free port [default: 127.0.0.1:5060]
    #[arg(long, env = "KNAPPVAL_SIP", value_name = "ADDR:PORT")]
    sip: Option<String>,
    /// HTTP address for the records API and /healthz [default: 127.0.0.1:8080]
    #[arg(long, env = "KNAPPVAL_HTTP", value_name = "ADDR:PORT")]
    http: Option<String>,
    /// SQLite file for contact records, created with its folder [default: data/contacts.db]
    #[arg(long, env = "KNAPPVAL_DB", value_name = "FILE")]
    db: Option<PathBuf>,
    /// RTP port range on the SIP address [default: 10000-20000]
    #[arg(long, env = "KNAPPVAL_RTP_PORTS", value_name = "LOW-HIGH")]
    rtp_ports: Option<String>,
    /// After SIGTERM, how long calls in progress may go on before they are ended [default: 30s]
    #[arg(long, env = "KNAPPVAL_GRACE_PERIOD", value_name = "DURATION")]
    grace_period: Option<String>,
    /// How long a call may show no sign of life (RTP, RTCP or a SIP request; either side once bridged)
    /// before it is taken as dead; 0s disables [default: 60s]
    #[arg(long, env = "KNAPPVAL_MEDIA_TIMEOUT", value_name = "DURATION")]
    media_timeout: Option<String>,
    /// Let the call ring (180) this long before answering; 0s answers at once [default: 0s]
    #[arg(long, env = "KNAPPVAL_ANSWER_DELAY", value_name = "DURATION")]
    answer_delay: Option<String>,
    /// Time zone statistics count local days and hours in [default: Europe/Stockholm]
    #[arg(long, env = "KNAPPVAL_TIMEZONE", value_name = "ZONE")]
    timezone: Option<String>,
    /// Agents file (see `knappval agents passwd`); without it REGISTER gets 405 [default: none]
    #[arg(long, env = "KNAPPVAL_AGENTS", value_name = "FILE")]
    agents: Option<PathBuf>,
    /// Digest algorithms offered to registering phones, preferred first, e.g. sha-256,md5 [default: md5]
    #[arg(long, env = "KNAPPVAL_DIGEST", value_name = "LIST")]
    digest: Option<String>,
    /// Probe function targets with OPTIONS this often; 0s disables [default: 20s]
    #[arg(long, env = "KNAPPVAL_PROBE_INTERVAL", value_name = "DURATION")]
    probe_interval: Option<String>,
    /// Probe only targets a call found silent, until they answer, or all [default: failed]
    #[arg(long, env = "KNAPPVAL_PROBE_MODE", value_enum, value_name = "MODE")]
    probe_mode: Option<ProbeMode>,
    /// Contact records of calls older than this are deleted, at start and daily: days or hours, or off to keep
    /// them [default: 90d]
    #[arg(long, env = "KNAPPVAL_RETENTION", value_name = "DURATION")]
    retention: Option<String>,
    /// Statistics: an agent's answer within this wait counts toward a queue's service level [default: 60s]
    #[arg(long, env = "KNAPPVAL_SERVICE_LEVEL", value_name = "DURATION")]
    service_level: Option<String>,
    /// How callers' numbers are stored and logged: pseudonymise (a keyed hash, `p:` and 20 hex digits) or
    /// keep (the number itself, for a service that calls back) [default: pseudonymise]
    #[arg(long, env = "KNAPPVAL_CALLER_NUMBERS", value_name = "MODE")]
    caller_numbers: Option<String>,
    /// The key behind the pseudonyms, created with mode 0600 at first start [default: caller-key beside --db]
    #[arg(long, env = "KNAPPVAL_CALLER_KEY", value_name = "FILE")]
    caller_key: Option<PathBuf>,
    /// Bearer token file: the API and /metrics then need `Authorization: Bearer <token>` [default: none]
    #[arg(long, env = "KNAPPVAL_API_TOKEN_FILE", value_name = "FILE")]
    api_token_file: Option<PathBuf>,
    /// Log format on stderr; the level comes from KNAPPVAL_LOG or RUST_LOG (e.g. debug) [default: text]
    #[arg(long, env = "KNAPPVAL_LOG_FORMAT", value_enum, value_name = "FORMAT")]
    log_format: Option<LogFormat>,
}

/// How log lines are written on stderr.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
enum LogFormat {
    // One human-readable line per event.
    #[default]
    Text,
    // One JSON object per line, for a log collector.
    Json,
}

/// The settings file: the same names as the flags, with underscores.
#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct SettingsFile {
    menu: Option<PathBuf>,
    prompts: Option<PathBuf>,
    sip: Option<Spanned<String>>,
    http: Option<Spanned<String>>,
    db: Option<PathBuf>,
    rtp_ports: Option<Spanned<String>>,
    grace_period: Option<Spanned<String>>,
    media_timeout: Option<Spanned<String>>,
    answer_delay: Option<Spanned<String>>,
    agents: Option<PathBuf>,
    digest: Option<Spanned<String>>,
    probe_interval: Option<Spanned<String>>,
    probe_mode: Option<ProbeMode>,
    log_format: Option<LogFormat>,
    timezone: Option<Spanned<String>>,
    retention: Option<Spanned<String>>,
    service_level: Option<Spanned<String>>,
    caller_numbers: Option<Spanned<String>>,
    caller_key: Option<PathBuf>,
    api_token_file: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run(args) => {
            let flag_format = args.log_format;
            let result = match settings(*args) {
                Ok((settings, format)) => {
                    init_logging(format);
                    run(settings)
                }
                Err(e) => {
                    // The settings file may be what is wrong, so only the flag or environment choose the format.
                    init_logging(flag_format.unwrap_or_default());
                    Err(e)
                }
            };
            match result {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    // Once, in the log's own format: a second copy on stderr would be a second line to parse.
                    tracing::error!("{}", causes_once(&e));
                    ExitCode::FAILURE
                }
            }
        }
        Command::Check {
            menu,
            prompts,
            agents,
        } => {
            let known_agents = match agents
                .as_deref()
                .map(|path| knappval::agents::load(path, None))
            {
                None => None,
                Some(Ok(file)) => Some(file.agents.into_keys().collect()),
                Some(Err(errors)) => {
                    eprintln!("{errors}");
                    return ExitCode::FAILURE;
                }
            };
            // The same decode `run` does, so a menu that passes here also loads there.
            let (report, ok) = knappval::menu::check_report(
                &menu,
                &prompts,
                &knappval::media::probe_wav,
                known_agents.as_ref(),
            );
            if ok {
                println!("{report}");
                ExitCode::SUCCESS
            } else {
                eprintln!("{report}");
                ExitCode::FAILURE
            }
        }
        Command::Agents {
            command: AgentsCommand::Passwd { agents, name, id },
        } => match passwd(&agents, &id, name.as_deref()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("knappval: {e:#}");
                ExitCode::FAILURE
            }
        },
        Command::Simulate {
            menu,
            prompts,
            at,
            digits,
            announce,
            format,
        } => match simulate(
            &menu,
            &prompts,
            at.as_deref(),
            digits.as_deref(),
            announce,
            format,
        ) {
            Ok(()) => ExitCode::SUCCESS,
            // `knappval simulate | head` is a normal way to end.
            Err(e)
                if e.downcast_ref::<std::io::Error>()
                    .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe) =>
            {
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("knappval: {e:#}");
                ExitCode::FAILURE
            }
        },
        Command::Announce { http, command } => match announce(&http, command) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("knappval: {}", causes_once(&e));
                ExitCode::FAILURE
            }
        },
        Command::Graph { menu, format } => match knappval::menu::load_layout(&menu) {
            Ok(menu) => {
                let text = match format {
                    GraphFormat::Dot => knappval::menu::graph::dot(&menu),
                    GraphFormat::Mermaid => knappval::menu::graph::mermaid(&menu),
                };
                print!("{text}");
                ExitCode::SUCCESS
            }
            Err(errors) => {
                eprintln!("{errors}");
                ExitCode::FAILURE
            }
        },
        Command::Prompts {
            command:
                PromptsCommand::Synth {
                    menu,
                    text,
                    prompts,
                    voice,
                    force,
                },
        } => match synth_prompts(&menu, &text, &prompts, voice, force) {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => ExitCode::FAILURE,
            Err(e) => {
                eprintln!("knappval: {}", causes_once(&e));
                ExitCode::FAILURE
            }
        },
        Command::Contacts {
            db,
            format,
            since,
            limit,
        } => match contacts(&db, format, since, limit) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("knappval: {}", causes_once(&e));
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
    let store = SqliteStore::open_for_reading(&args.db)?;
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
        query.service_level =
            parse_service_level(&Given::flag("service_level", args.service_level))?;
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

/// The error and its causes, `a: b: c`, each cause once. Many errors already write their cause into their own
/// message (the OS error text, say) and report it as their source as well; `{:#}` would print it twice.
fn causes_once(error: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in error.chain() {
        let part = cause.to_string();
        // SQLite's own error repeats the text with its code in front (`Error code 8: attempt to write a
        // readonly database`): the text once is enough.
        let said = part
            .strip_prefix("Error code ")
            .and_then(|coded| coded.split_once(": "))
            .map_or(part.as_str(), |(_, said)| said);
        if text.contains(&part) || text.contains(said) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&part);
    }
    text
}

fn run(settings: Settings) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("knappval")
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(app::run(settings))
}

fn announce(http: &str, command: AnnounceCommand) -> anyhow::Result<()> {
    match command {
        AnnounceCommand::On {
            prompt,
            until,
            function,
            timezone,
        } => {
            let until = match until {
                Some(text) => {
                    let zone = jiff::tz::TimeZone::get(&timezone).with_context(|| {
                        format!(
                            "--timezone {timezone} is not an IANA time zone (e.g. Europe/Stockholm)"
                        )
                    })?;
                    Some(announce_cli::until_rfc3339(
                        &text,
                        &zone,
                        jiff::Timestamp::now(),
                    )?)
                }
                None => None,
            };
            announce_cli::on(http, &prompt, until, function.as_deref())
        }
        AnnounceCommand::Off { id } => announce_cli::off(http, &id),
        AnnounceCommand::List => announce_cli::list(http),
    }
}

fn simulate(
    menu_path: &Path,
    prompts_dir: &Path,
    at: Option<&str>,
    digits: Option<&str>,
    announce: Vec<String>,
    format: SimulateFormat,
) -> anyhow::Result<()> {
    use knappval::simulate::{self as sim, Press, Simulation};
    // The same load and decode as `run`: prompts play for exactly as long as they will on a call.
    let (menu, prompts) =
        app::load_menu(menu_path, prompts_dir).map_err(|errors| anyhow::anyhow!("{errors}"))?;
    if let Some(unknown) = announce.iter().find(|id| !prompts.knows(id)) {
        anyhow::bail!(
            "--announce {unknown}: no prompt {unknown}.wav in {}; record it there first",
            prompts_dir.display()
        );
    }
    // With languages, prompts last as long as in the default language.
    let language = menu.languages.as_ref().map(|l| l.default.as_str());
    let durations = menu
        .prompt_ids()
        .into_iter()
        .chain(announce.iter().cloned())
        .filter_map(|id| Some((id.clone(), prompts.get_in(language, &id)?.duration())))
        .collect();
    let zone = sim::service_timezone(&menu);
    let at = match at {
        Some(text) => sim::parse_at(text, &zone).map_err(anyhow::Error::msg)?,
        None => jiff::Timestamp::now(),
    };
    let script = digits.map(parse_presses).transpose()?;
    let local = zone.to_datetime(at);
    let status = menu
        .hours
        .as_ref()
        .map_or("open (no hours)".to_owned(), |h| h.status(at).to_string());
    let menu = std::sync::Arc::new(menu);
    let announcements = knappval::flow::Announcements {
        service: announce,
        ..Default::default()
    };
    let mut simulation = Simulation::with_announcements(menu.clone(), durations, at, announcements);
    let text = matches!(format, SimulateFormat::Text);
    let mut out = std::io::stdout().lock();
    if text {
        writeln!(
            out,
            "{}: a call at {} {} ({}): service {status}",
            menu.name,
            local.strftime("%Y-%m-%d %H:%M"),
            zone.iana_name().unwrap_or("UTC"),
            local.strftime("%A"),
        )?;
    }
    match script {
        Some(presses) => simulation.run_script(&presses),
        None => {
            let mut lines = std::io::stdin().lines();
            while simulation.run_until_waiting() {
                if text {
                    for line in simulation.take_transcript() {
                        writeln!(out, "{line}")?;
                    }
                    write!(out, "key (0-9 * #; empty: wait; q: hang up)> ")?;
                    out.flush()?;
                }
                let press = loop {
                    let line = lines.next();
                    if text && !std::io::IsTerminal::is_terminal(&std::io::stdin()) {
                        // Keys piped in are not echoed: end the question's line ourselves.
                        writeln!(out)?;
                    }
                    match line.transpose()?.as_deref().map(str::trim) {
                        None | Some("q" | "Q") => break Press::HangUp,
                        Some("") => break Press::Wait,
                        Some(key) => match parse_press(key) {
                            Ok(press) => break press,
                            // A typo at the prompt is asked again, not the end of the simulation.
                            Err(e) if text => {
                                write!(out, "{e}\nkey> ")?;
                                out.flush()?;
                            }
                            Err(e) => return Err(e),
                        },
                    }
                };
                simulation.press(press);
            }
        }
    }
    let summary = simulation.summary();
    if text {
        for line in simulation.take_transcript() {
            writeln!(out, "{line}")?;
        }
        let none = || "(none)".to_owned();
        writeln!(
            out,
            "outcome: {}; function: {}; path: {}\nheard: {}",
            summary.outcome.clone().unwrap_or_else(none),
            summary.function.clone().unwrap_or_else(none),
            if summary.path.is_empty() {
                none()
            } else {
                summary.path.join(" > ")
            },
            if summary.heard.is_empty() {
                none()
            } else {
                summary.heard.join(", ")
            },
        )?;
    } else {
        writeln!(out, "{}", serde_json::to_string(&summary)?)?;
    }
    Ok(())
}

/// `3,1` or `3,,1` (an empty item waits for the timeout).
fn parse_presses(text: &str) -> anyhow::Result<Vec<knappval::simulate::Press>> {
    text.split(',')
        .map(|item| match item.trim() {
            "" => Ok(knappval::simulate::Press::Wait),
            key => parse_press(key),
        })
        .collect()
}

fn parse_press(key: &str) -> anyhow::Result<knappval::simulate::Press> {
    let mut chars = key.chars();
    match (chars.next(), chars.next()) {
        (Some(c @ ('0'..='9' | '*' | '#')), None) => Ok(knappval::simulate::Press::Digit(c)),
        _ => anyhow::bail!(
            "'{key}' is not a telephone key: use 0-9, * or #, one per item (e.g. --digits 3,1)"
        ),
    }
}

/// Renders the drafts and prints one line per prompt; false when a prompt has neither a file nor a text.
fn synth_prompts(
    menu_path: &Path,
    texts_path: &Path,
    prompts_dir: &Path,
    voice: String,
    force: bool,
) -> anyhow::Result<bool> {
    use knappval::prompts::{self, SynthOptions};
    // The menu's shape only: its prompt files are what is about to be written.
    let menu =
        knappval::menu::load_layout(menu_path).map_err(|errors| anyhow::anyhow!("{errors}"))?;
    let texts = prompts::read_texts(texts_path)?;
    let ids = menu.prompt_ids();
    let results = prompts::synth(&ids, &texts, prompts_dir, &SynthOptions { voice, force })?;
    let (report, complete) = prompts::report(&results, texts_path);
    println!("{report}");
    for id in texts.keys().filter(|id| !ids.contains(*id)) {
        println!(
            "{id}: not rendered: {} does not use it",
            menu_path.display()
        );
    }
    Ok(complete)
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
    let store = SqliteStore::open_for_reading(db)?;
    let records = store.list(&ContactQuery { since, limit })?;
    let mut out = std::io::stdout().lock();
    match knappval::records::export(&records, format, &mut out).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        // `knappval contacts | head` is a normal way to end.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(e.into()),
    }
}

fn passwd(agents: &Path, id: &str, name: Option<&str>) -> anyhow::Result<()> {
    use knappval::agents::PasswdOutcome;
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .context("cannot read the password from standard input")?;
    let password = line.trim_end_matches(['\n', '\r']);
    let what = match knappval::agents::set_password(agents, id, password, name)? {
        PasswdOutcome::CreatedFile => "created the file with agent",
        PasswdOutcome::AddedAgent => "added agent",
        PasswdOutcome::UpdatedAgent => "updated agent",
    };
    println!("{}: {what} '{id}'", agents.display());
    Ok(())
}

fn settings(args: RunArgs) -> anyhow::Result<(Settings, LogFormat)> {
    let (file, file_path) = match &args.config {
        Some(path) => (read_settings_file(path)?, path.as_path()),
        None => (SettingsFile::default(), Path::new("")),
    };
    // Flag (or its KNAPPVAL_* variable) first, then the file, then the default.
    let pick = |name: &'static str, flag: Option<String>, in_file: Option<Spanned<String>>| match (
        flag, in_file,
    ) {
        (Some(text), _) => Some(Given::flag(name, text)),
        (None, Some(spanned)) => Some(Given::file(file_path, name, spanned)),
        (None, None) => None,
    };
    let given = |name: &'static str, flag, in_file, default: &str| {
        pick(name, flag, in_file).unwrap_or_else(|| Given::flag(name, default.into()))
    };
    let sip = given("sip", args.sip, file.sip, DEFAULT_SIP);
    let http = given("http", args.http, file.http, DEFAULT_HTTP);
    let rtp_ports = given(
        "rtp_ports",
        args.rtp_ports,
        file.rtp_ports,
        DEFAULT_RTP_PORTS,
    );
    let grace = given(
        "grace_period",
        args.grace_period,
        file.grace_period,
        DEFAULT_GRACE,
    );
    let media_timeout = given(
        "media_timeout",
        args.media_timeout,
        file.media_timeout,
        DEFAULT_MEDIA_TIMEOUT,
    );
    let answer_delay = given(
        "answer_delay",
        args.answer_delay,
        file.answer_delay,
        DEFAULT_ANSWER_DELAY,
    );
    let probe_interval = given(
        "probe_interval",
        args.probe_interval,
        file.probe_interval,
        DEFAULT_PROBE_INTERVAL,
    );
    let timezone = given("timezone", args.timezone, file.timezone, DEFAULT_TIME_ZONE);
    let log_format = args.log_format.or(file.log_format).unwrap_or_default();
    let settings = Settings {
        menu: args
            .menu
            .or(file.menu)
            .unwrap_or_else(|| DEFAULT_MENU.into()),
        prompts: args
            .prompts
            .or(file.prompts)
            .unwrap_or_else(|| DEFAULT_PROMPTS.into()),
        sip: parse_addr(&sip)?,
        http: parse_addr(&http)?,
        db: args.db.or(file.db).unwrap_or_else(|| DEFAULT_DB.into()),
        rtp_ports: parse_port_range(&rtp_ports)?,
        grace_period: parse_duration(&grace)?,
        media_timeout: parse_duration(&media_timeout)?,
        answer_delay: parse_duration(&answer_delay)?,
        agents: args.agents.or(file.agents),
        digest: pick("digest", args.digest, file.digest)
            .map(|list| {
                knappval::sip::digest::parse_algorithms(&list.text).map_err(|e| list.refused(e))
            })
            .transpose()?,
        probe_interval: parse_duration(&probe_interval)?,
        probe_mode: args.probe_mode.or(file.probe_mode).unwrap_or_default(),
        time_zone: stats::time_zone(&timezone.text).map_err(|_| {
            timezone.refused(format!(
                "{:?} is not a known time zone: use an IANA name such as Europe/Stockholm or UTC",
                timezone.text
            ))
        })?,
        caller_numbers: pick("caller_numbers", args.caller_numbers, file.caller_numbers)
            .map(|choice| choice.text.parse().map_err(|e| choice.refused(e)))
            .transpose()?
            .unwrap_or_default(),
        caller_key: args.caller_key.or(file.caller_key),
        api_token_file: args.api_token_file.or(file.api_token_file),
        retention: pick("retention", args.retention, file.retention)
            .map(|given| given.text.parse().map_err(|e| given.refused(e)))
            .transpose()?
            .unwrap_or_default(),
        service_level: pick("service_level", args.service_level, file.service_level)
            .map(|given| parse_service_level(&given))
            .transpose()?
            .unwrap_or(stats::DEFAULT_SERVICE_LEVEL),
    };
    Ok((settings, log_format))
}

/// Reads the settings file; a mistake in it is reported as the menu's are, `file:line:col: error: ...`.
fn read_settings_file(path: &Path) -> anyhow::Result<SettingsFile> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the settings file {}", path.display()))?;
    serde_saphyr::from_str::<SettingsFile>(&text).map_err(|error| {
        let (line, column) = error
            .location()
            .map(|at| (at.line().max(1), at.column().max(1)))
            .unwrap_or((1, 1));
        let message: String = serde_saphyr::DefaultMessageFormatter
            .format_message(error.without_snippet())
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        let help = if message.contains("unknown field") {
            "the keys are the `knappval run` flags' names with underscores (`knappval run --help` lists them)"
        } else {
            "write one `key: value` per line, each value as `knappval run --help` shows it (see \
             packaging/knappval.yaml)"
        };
        anyhow::anyhow!(
            "{}:{line}:{column}: error: {message}\n  help: {help}",
            path.display()
        )
    })
}

/// A setting's text and where the admin gave it, so that a bad value is reported where it was written.
struct Given {
    text: String,
    /// `--grace-period` for a flag, its KNAPPVAL_* variable or the default; `FILE:LINE:COL: error: grace_period`
    /// for the settings file.
    origin: String,
}

impl Given {
    /// `name` is the settings file's key (`grace_period`); the flag is written with dashes.
    fn flag(name: &str, text: String) -> Given {
        Given {
            text,
            origin: format!("--{}", name.replace('_', "-")),
        }
    }

    fn file(path: &Path, name: &str, spanned: Spanned<String>) -> Given {
        let at = spanned.referenced;
        Given {
            text: spanned.value,
            origin: format!(
                "{}:{}:{}: error: {name}",
                path.display(),
                at.line().max(1),
                at.column().max(1)
            ),
        }
    }

    /// The error for this value: `problem` says what is wrong and what to write (most name the value).
    fn refused(&self, problem: impl std::fmt::Display) -> anyhow::Error {
        anyhow::anyhow!("{} {problem}", self.origin)
    }
}

/// The service-level time: whole seconds, because the statistics say it in whole seconds.
fn parse_service_level(given: &Given) -> anyhow::Result<Duration> {
    let wait = parse_duration(given)?;
    if wait.subsec_nanos() != 0 || wait.is_zero() {
        return Err(given.refused(format!(
            "{:?}: give a whole number of seconds of 1 s or more, e.g. 20s or 60s",
            given.text
        )));
    }
    Ok(wait)
}

fn parse_addr(given: &Given) -> anyhow::Result<SocketAddr> {
    given.text.parse().map_err(|_| {
        given.refused(format!(
            "{:?} is not ADDR:PORT (e.g. 127.0.0.1:5060 or [::1]:5060)",
            given.text
        ))
    })
}

fn parse_port_range(given: &Given) -> anyhow::Result<RangeInclusive<u16>> {
    let parsed = given.text.split_once('-').and_then(|(lo, hi)| {
        Some((
            lo.trim().parse::<u16>().ok()?,
            hi.trim().parse::<u16>().ok()?,
        ))
    });
    match parsed {
        Some((lo, hi)) if lo > 0 && lo < hi => Ok(lo..=hi),
        _ => Err(given.refused(format!(
            "{:?} is not LOW-HIGH with 0 < LOW < HIGH (e.g. 10000-20000)",
            given.text
        ))),
    }
}

fn parse_duration(given: &Given) -> anyhow::Result<Duration> {
    knappval::menu::parse_duration(&given.text)
        .map_err(|e| given.refused(format!("{:?}: {} ({})", given.text, e.message, e.help)))
}

/// The log filter: KNAPPVAL_LOG, else RUST_LOG, else info. rsipstack stays at warn unless the filter names it:
/// it logs every datagram whole at info, callers' numbers included, and the numbers must not reach a log at info
/// level (an admin who writes `KNAPPVAL_LOG=info` means knappval's lines). `rsipstack=info` brings them back for
/// a SIP trace.
fn log_directives(configured: Option<&str>) -> String {
    let directives = configured
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .unwrap_or("info");
    // A filter already quieter than warn (error, off) keeps rsipstack as quiet.
    let quiet = directives
        .split(',')
        .any(|d| matches!(d.trim().to_ascii_lowercase().as_str(), "error" | "off"));
    if directives.contains("rsipstack") || quiet {
        directives.to_string()
    } else {
        format!("{directives},rsipstack=warn")
    }
}

fn init_logging(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let configured = ["KNAPPVAL_LOG", "RUST_LOG"]
        .into_iter()
        .find_map(|name| std::env::var(name).ok());
    let filter = EnvFilter::try_new(log_directives(configured.as_deref()))
        .unwrap_or_else(|_| EnvFilter::new(log_directives(None)));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_service_level_is_whole_seconds() {
        let level = |text: &str| parse_service_level(&Given::flag("service_level", text.into()));
        assert_eq!(level("20s").unwrap(), Duration::from_secs(20));
        assert_eq!(level("2m").unwrap(), Duration::from_secs(120));
        for bad in ["1500ms", "0s", "soon"] {
            assert!(level(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn rsipstack_logs_at_warn_unless_the_filter_names_it() {
        assert_eq!(log_directives(None), "info,rsipstack=warn");
        assert_eq!(log_directives(Some(" ")), "info,rsipstack=warn");
        assert_eq!(log_directives(Some("info")), "info,rsipstack=warn");
        assert_eq!(
            log_directives(Some("debug,knappval::sip=trace")),
            "debug,knappval::sip=trace,rsipstack=warn"
        );
        assert_eq!(
            log_directives(Some("info,rsipstack=info")),
            "info,rsipstack=info"
        );
        assert_eq!(log_directives(Some("error")), "error");
        assert_eq!(log_directives(Some("off")), "off");
    }

    fn run_args(args: &[&str]) -> RunArgs {
        let mut argv = vec!["knappval", "run"];
        argv.extend_from_slice(args);
        match Cli::try_parse_from(argv)
            .expect("valid command line")
            .command
        {
            Command::Run(args) => *args,
            _ => unreachable!("parsed as run"),
        }
    }

    #[test]
    fn defaults_are_the_shipped_menu_on_loopback() {
        let (s, format) = settings(run_args(&[])).unwrap();
        assert_eq!(format, LogFormat::Text);
        assert_eq!(s.menu, PathBuf::from(DEFAULT_MENU));
        assert_eq!(s.sip, "127.0.0.1:5060".parse().unwrap());
        assert_eq!(s.http, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(s.db, PathBuf::from(DEFAULT_DB));
        assert_eq!(s.retention, knappval::records::Retention::default());
        assert_eq!(
            s.caller_numbers,
            knappval::privacy::CallerNumbersChoice::Pseudonymise
        );
        assert_eq!(
            (s.caller_key.as_ref(), s.api_token_file.as_ref()),
            (None, None)
        );
        assert_eq!(s.rtp_ports, 10000..=20000);
        assert_eq!(s.grace_period, Duration::from_secs(30));
        assert_eq!(s.answer_delay, Duration::ZERO);
        assert_eq!(s.probe_interval, Duration::from_secs(20));
        assert_eq!(s.probe_mode, ProbeMode::Failed);
        assert_eq!(s.media_timeout, Duration::from_secs(60));
        let (off, _) = settings(run_args(&["--media-timeout", "0s"])).unwrap();
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
            "sip: \"[::1]:5070\"\nhttp: 127.0.0.1:9090\nrtp_ports: 30000-30999\ngrace_period: 5s\ndb: /var/lib/knappval/c.db\ntimezone: Europe/Helsinki\nprobe_mode: all\n",
        )
        .unwrap();
        let config = file.to_str().unwrap();
        let (s, _) = settings(run_args(&["--config", config, "--http", "127.0.0.1:9191"])).unwrap();
        assert_eq!(s.sip, "[::1]:5070".parse().unwrap());
        assert_eq!(s.http, "127.0.0.1:9191".parse().unwrap(), "the flag wins");
        assert_eq!(s.rtp_ports, 30000..=30999);
        assert_eq!(s.grace_period, Duration::from_secs(5));
        assert_eq!(s.db, PathBuf::from("/var/lib/knappval/c.db"));
        assert_eq!(s.time_zone.iana_name(), Some("Europe/Helsinki"));
        assert_eq!(s.probe_mode, ProbeMode::All);
        let (flag, _) = settings(run_args(&[
            "--config",
            config,
            "--timezone",
            "UTC",
            "--probe-mode",
            "failed",
        ]))
        .unwrap();
        assert_eq!(flag.time_zone.iana_name(), Some("UTC"), "the flag wins");
        assert_eq!(flag.probe_mode, ProbeMode::Failed, "the flag wins");
        let (default, _) = settings(run_args(&[])).unwrap();
        assert_eq!(default.time_zone.iana_name(), Some("Europe/Stockholm"));
    }

    #[test]
    fn agents_and_digest_from_the_file_or_the_flags() {
        use knappval::sip::digest::Algorithm;
        let (none, _) = settings(run_args(&[])).unwrap();
        assert_eq!((none.agents, none.digest), (None, None));
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("knappval.yaml");
        std::fs::write(
            &file,
            "agents: /etc/knappval/agents.yaml\ndigest: sha-256,md5\n",
        )
        .unwrap();
        let config = file.to_str().unwrap();
        let (s, _) = settings(run_args(&["--config", config])).unwrap();
        assert_eq!(s.agents, Some(PathBuf::from("/etc/knappval/agents.yaml")));
        assert_eq!(s.digest, Some(vec![Algorithm::Sha256, Algorithm::Md5]));
        let (s, _) = settings(run_args(&["--config", config, "--digest", "md5"])).unwrap();
        assert_eq!(s.digest, Some(vec![Algorithm::Md5]), "the flag wins");
        let err = settings(run_args(&["--digest", "sha-512"]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("--digest") && err.contains("sha-256"), "{err}");
    }

    #[test]
    fn bad_values_say_what_to_write() {
        for (flag, value, says) in [
            ("--retention", "90", "90d"),
            ("--caller-numbers", "hash", "keep"),
        ] {
            let err = settings(run_args(&[flag, value])).unwrap_err().to_string();
            assert!(err.contains(flag) && err.contains(says), "{err}");
        }
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
        assert!(
            err.starts_with(&format!(
                "{}:1:1: error: unknown field `sipp`",
                file.display()
            )),
            "{err}"
        );
    }

    #[test]
    fn a_bad_value_in_the_settings_file_is_reported_where_it_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("knappval.yaml");
        let config = file.to_str().unwrap();
        for (yaml, at, says) in [
            (
                "db: x.db\nretention:  90\n",
                "2:13: error: retention",
                "90d",
            ),
            (
                "grace_period: soon\n",
                "1:15: error: grace_period \"soon\"",
                "1m30s",
            ),
            (
                "sip: localhost\n",
                "1:6: error: sip \"localhost\"",
                "ADDR:PORT",
            ),
            ("rtp_ports: 9-1\n", "1:12: error: rtp_ports", "LOW-HIGH"),
            (
                "timezone: Europe/Stokholm\n",
                "1:11: error: timezone",
                "IANA",
            ),
            ("digest: sha-512\n", "1:9: error: digest", "sha-256"),
            (
                "caller_numbers: hash\n",
                "1:17: error: caller_numbers",
                "keep",
            ),
            (
                "service_level: 1500ms\n",
                "1:16: error: service_level",
                "whole number",
            ),
        ] {
            std::fs::write(&file, yaml).unwrap();
            let err = settings(run_args(&["--config", config]))
                .unwrap_err()
                .to_string();
            assert!(
                err.starts_with(&format!("{config}:{at}")) && err.contains(says),
                "{yaml:?}: {err}"
            );
        }
        std::fs::write(&file, "retention: 90\n").unwrap();
        let err = settings(run_args(&["--config", config, "--retention", "30"]))
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("--retention \"30\""),
            "the flag's value: {err}"
        );
    }

    #[test]
    fn the_log_format_comes_from_the_settings_file_unless_a_flag_says_otherwise() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("knappval.yaml");
        std::fs::write(&file, "log_format: json\n").unwrap();
        let config = file.to_str().unwrap();
        let (_, format) = settings(run_args(&["--config", config])).unwrap();
        assert_eq!(format, LogFormat::Json);
        let (_, format) =
            settings(run_args(&["--config", config, "--log-format", "text"])).unwrap();
        assert_eq!(format, LogFormat::Text);
        std::fs::write(&file, "log_format: xml\n").unwrap();
        let err = settings(run_args(&["--config", config]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("text") && err.contains("json"), "{err}");
    }

    #[test]
    fn a_cause_already_in_its_parent_message_is_not_repeated() {
        let os = std::io::Error::from(std::io::ErrorKind::AddrInUse);
        #[derive(Debug, thiserror::Error)]
        #[error("cannot bind SIP: {source}")]
        struct Bind {
            source: std::io::Error,
        }
        let error = anyhow::Error::new(Bind { source: os }).context("starting");
        let text = causes_once(&error);
        assert_eq!(
            text.matches("address").count() + text.matches("Address").count(),
            1,
            "{text}"
        );
        assert!(text.starts_with("starting: cannot bind SIP: "), "{text}");
    }

    #[test]
    fn sqlite_text_repeated_behind_its_code_is_said_once() {
        let sqlite = rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(8),
            Some("attempt to write a readonly database".into()),
        );
        let error = anyhow::Error::new(sqlite).context("cannot open x.db");
        assert_eq!(
            causes_once(&error),
            "cannot open x.db: attempt to write a readonly database"
        );
    }
}
