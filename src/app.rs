//! The running daemon, assembled: menu and prompts loaded (and reloaded, see [`crate::reload`]), the record
//! database locked for this process, opened and proven writable (and calls a crash left open closed as failed),
//! SIP and HTTP bound, one task per call, and a clean shutdown.
//!
//! Shutdown (SIGTERM or Ctrl-C): new calls get 503, calls in progress may finish within the grace period, then
//! the rest are ended with BYE; every record is written before the process exits 0.

use std::collections::HashMap;
use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use time::OffsetDateTime;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, info, warn};

use crate::announce::{self, Board};
use crate::api::{self, Announcing, ApiState, ApiToken, Health};
use crate::call::{self, CallServices};
use crate::media::prompt::{Prompt, PromptCache, prompt_path};
use crate::media::{RtpPorts, tone, wav};
use crate::menu::model::Menu;
use crate::menu::{self, MenuErrors};
use crate::metrics::Metrics;
use crate::privacy::{CallerKey, CallerNumbers, CallerNumbersChoice};
use crate::records::{ContactStore, DatabaseLock, Records, Retention, SqliteStore};
use crate::reload::{self, MenuCell, Reloader};
use crate::routing::probe::{
    ProbeMode, ProbePolicy, ProbeResult, Probes, TargetBoard, TargetState, TargetStatus,
};
use crate::routing::queue::{AgentContacts, NoRegistrations, QueueHandle};
use crate::sip::digest::Algorithm;
use crate::sip::{Registrar, SipEndpoint};

/// Everything `knappval run` needs, after flags, environment and the settings file are merged.
#[derive(Debug, Clone)]
pub struct Settings {
    pub menu: PathBuf,
    pub prompts: PathBuf,
    pub sip: SocketAddr,
    pub http: SocketAddr,
    pub db: PathBuf,
    pub rtp_ports: RangeInclusive<u16>,
    /// How long calls in progress may go on after a shutdown signal before they are ended.
    pub grace_period: Duration,
    /// How long a caller's RTP may be silent (no packets at all) before the call is taken as dead.
    pub media_timeout: Duration,
    /// How long a new call rings (180) before it is answered; zero answers at once.
    pub answer_delay: Duration,
    /// The agents file: with it, agents' phones can REGISTER; without it REGISTER is answered 405.
    pub agents: Option<PathBuf>,
    /// The digest algorithms offered (`--digest`), overriding the agents file's `algorithms:`.
    pub digest: Option<Vec<Algorithm>>,
    /// Whether callers' numbers are stored as pseudonyms (the default) or kept.
    pub caller_numbers: CallerNumbersChoice,
    /// The key behind the pseudonyms; by default `caller-key` beside the database.
    pub caller_key: Option<PathBuf>,
    /// With it, the API and `/metrics` need `Authorization: Bearer <the file's token>`.
    pub api_token_file: Option<PathBuf>,
    /// How long contact records are kept; older ones are deleted at start and daily.
    pub retention: Retention,
    /// How often function targets are probed with OPTIONS; zero turns probing off.
    pub probe_interval: Duration,
    /// Which targets are probed: those that failed a call, or all.
    pub probe_mode: ProbeMode,
    /// The zone statistics are bucketed in (local days and hours).
    pub time_zone: jiff::tz::TimeZone,
    /// The wait within which an agent's answer counts toward the statistics' service level.
    pub service_level: Duration,
}

impl Settings {
    /// Where the caller key is: `--caller-key`, or `caller-key` in the database's folder.
    pub fn caller_key_path(&self) -> PathBuf {
        self.caller_key.clone().unwrap_or_else(|| {
            self.db
                .parent()
                .unwrap_or_else(|| Path::new(""))
                .join("caller-key")
        })
    }
}

/// The caller key read (or created at first start), or the admin's choice to keep numbers.
fn caller_numbers(settings: &Settings) -> anyhow::Result<CallerNumbers> {
    match settings.caller_numbers {
        CallerNumbersChoice::Keep => {
            info!("caller numbers are stored as received (--caller-numbers keep)");
            Ok(CallerNumbers::Keep)
        }
        CallerNumbersChoice::Pseudonymise => {
            let path = settings.caller_key_path();
            let (key, created) = CallerKey::load_or_create(&path)?;
            if created {
                info!(file = %path.display(), "created the caller key (mode 0600): back it up apart from the database");
            }
            info!(key = %path.display(), "caller numbers are stored as pseudonyms");
            Ok(CallerNumbers::Pseudonymise(key))
        }
    }
}

/// Loads and validates the menu, decoding every prompt exactly once: the same decode serves the validation
/// (so an unreadable WAV is reported at the line that names it) and the prompt cache. The cache also holds
/// every other WAV in the prompts folder, so that an announcement recorded ahead of time can be put up.
pub fn load_menu(menu_path: &Path, prompts_dir: &Path) -> Result<(Menu, PromptCache), MenuErrors> {
    let (source, label) = menu::read(menu_path)?;
    decode_menu(&source, &label, prompts_dir)
}

/// [`load_menu`] for menu text already read; `label` names the file in errors.
pub fn decode_menu(
    source: &str,
    label: &str,
    prompts_dir: &Path,
) -> Result<(Menu, PromptCache), MenuErrors> {
    let decoded: Mutex<HashMap<PathBuf, Vec<i16>>> = Mutex::new(HashMap::new());
    let probe = |path: &Path| -> Result<(), String> {
        let samples = wav::read_wav_8k(path).map_err(|e| e.to_string())?;
        if let Ok(mut decoded) = decoded.lock() {
            decoded.insert(path.to_path_buf(), samples);
        }
        Ok(())
    };
    let menu = menu::load_str(source, label, prompts_dir, &probe)?;
    let mut decoded = decoded.into_inner().unwrap_or_default();
    let mut prompts = PromptCache::default();
    for key in menu.prompt_keys() {
        if let Some(samples) = decoded.remove(&prompt_path(prompts_dir, &key)) {
            prompts.insert(Prompt::from_samples(key, samples));
        }
    }
    load_other_prompts(prompts_dir, None, &mut prompts);
    for language in menu.languages.iter().flat_map(|l| l.codes()) {
        load_other_prompts(&prompts_dir.join(language), Some(language), &mut prompts);
    }
    Ok((menu, prompts))
}

/// Every `<id>.wav` in the prompts folder the menu does not name: the announcements an admin may put up.
/// A file that does not load is logged and left out; the menu does not need it.
fn load_other_prompts(prompts_dir: &Path, language: Option<&str>, prompts: &mut PromptCache) {
    let Ok(entries) = std::fs::read_dir(prompts_dir) else {
        return;
    };
    let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    for path in paths {
        let Some(id) = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".wav"))
            .filter(|id| menu::is_prompt_id(id))
        else {
            continue;
        };
        let key = match language {
            Some(language) => format!("{language}/{id}"),
            None => id.to_owned(),
        };
        if prompts.get(&key).is_some() {
            continue;
        }
        match wav::read_wav_8k(&path) {
            Ok(samples) => prompts.insert(Prompt::from_samples(key, samples)),
            Err(e) => {
                warn!(prompt = %id, error = %e, "prompt file not loaded; it cannot be announced")
            }
        }
    }
}

/// Peak amplitude (16-bit sample units) of the ringback tone: about -13 dBm0. G.711's 0 dBm0 sine peaks at
/// about 22 650 on the 16-bit scale (3.17 dB below full scale), and ITU-T E.180 asks for ringing tone between
/// -10 and -20 dBm0: -13 dBm0 is as loud as a network's own ringback, well above line noise, far from clipping.
const RINGBACK_AMPLITUDE: f64 = 5_000.0;

/// Swedish ringback (425 Hz, 1 s on, 4 s off) for a caller waiting while a function rings.
fn ringback() -> Prompt {
    let rate = crate::media::codec::CLOCK_RATE as usize;
    let mut samples = tone::synthesize(&[(425.0, RINGBACK_AMPLITUDE)], rate);
    samples.resize(rate * 5, 0);
    Prompt::from_samples("ringback", samples)
}

pub async fn run(settings: Settings) -> anyhow::Result<()> {
    let served = reload::load(&settings.menu, &settings.prompts)
        .map_err(|errors| anyhow::anyhow!("{errors}"))?;
    info!(menu = %settings.menu.display(), name = %served.menu.name, version = %served.version,
          functions = served.menu.functions.len(), menus = served.menu.menus.len(),
          prompts = served.prompts.len(), "menu loaded");
    let menu_cell = Arc::new(MenuCell::new(served));
    // Each menu the reloader loads is sent here: the queue service and the OPTIONS prober follow it.
    let (menus_tx, menus_rx) = watch::channel(menu_cell.current().menu.clone());
    // Before the database: nothing about a caller may be written until it is known how.
    let callers = caller_numbers(&settings)?;
    let token = settings
        .api_token_file
        .as_deref()
        .map(ApiToken::read)
        .transpose()?
        .map(Arc::new);
    if let Some(file) = &settings.api_token_file {
        info!(file = %file.display(), "the API and /metrics need the bearer token");
    }

    // Before anything is written: a second daemon on this file would close the first one's live calls.
    let _db_lock = DatabaseLock::acquire(&settings.db)?;
    let store = SqliteStore::open(&settings.db)?;
    // A database that cannot take writes would lose every record of this run: refuse to start instead.
    store.probe_write()?;
    let records = Records::new(Arc::new(store));
    let board = Arc::new(Board::open(
        &announce::file_beside(&settings.db),
        OffsetDateTime::now_utc(),
    )?);
    let announcements = board.active(OffsetDateTime::now_utc()).len();
    if announcements > 0 {
        info!(announcements, "announcements on");
    }
    match records.close_unfinished(OffsetDateTime::now_utc()).await {
        Ok(0) => {}
        Ok(n) => warn!(
            calls = n,
            "closed calls left open by an earlier run as failed"
        ),
        Err(e) => return Err(e).context("cannot close unfinished contact records"),
    }
    settings
        .retention
        .sweep(&records, OffsetDateTime::now_utc())
        .await
        .context("cannot delete the contact records past retention")?;
    info!(retention = %settings.retention, "contact records past retention are deleted daily");
    let stop_retention = CancellationToken::new();
    let retention_task = tokio::spawn(
        settings
            .retention
            .run_daily(records.clone(), stop_retention.clone()),
    );

    let registrar = match &settings.agents {
        Some(path) => {
            let agents = crate::agents::load(path, settings.digest.as_deref())
                .map_err(|errors| anyhow::anyhow!("{errors}"))?;
            let offered: Vec<&str> = agents.algorithms.iter().map(|a| a.token()).collect();
            info!(file = %path.display(), agents = agents.agents.len(), realm = %agents.realm,
                  digest = %offered.join(","), "agents loaded");
            Some(Registrar::new(agents))
        }
        None if settings.digest.is_some() => {
            anyhow::bail!(
                "--digest needs --agents FILE: the digest is how agents in that file register"
            )
        }
        None => None,
    };

    if settings.sip.ip().is_unspecified() {
        anyhow::bail!(
            "--sip {}: knappval announces its SIP and RTP address to callers (Contact, SDP), so it needs one \
             concrete address, e.g. the trunk-facing 192.0.2.10:5060 or 127.0.0.1:5060",
            settings.sip
        );
    }
    let metrics = Metrics::new();
    let sip = SipEndpoint::bind(settings.sip, metrics.clone()).await?;
    let stop_expiry = CancellationToken::new();
    if let Some(registrar) = &registrar {
        sip.set_registrar(registrar.clone());
        tokio::spawn(registrar.clone().run_expiry(stop_expiry.clone()));
    }
    let http = tokio::net::TcpListener::bind(settings.http)
        .await
        .with_context(|| format!("cannot bind HTTP on {}", settings.http))?;
    let http_addr = http.local_addr()?;
    let media_ip: IpAddr = sip.local_addr().ip();
    let rtp_ports = Arc::new(
        RtpPorts::new(*settings.rtp_ports.start(), *settings.rtp_ports.end())
            .context("bad RTP port range")?,
    );

    let health = Arc::new(Health::new());
    let registrations: Arc<dyn AgentContacts> = match &registrar {
        Some(registrar) => Arc::new(registrar.clone()),
        None => Arc::new(NoRegistrations::default()),
    };
    let queues = QueueHandle::start(menus_rx.clone(), registrations);
    let stop_http = CancellationToken::new();
    let http_task = {
        let state = ApiState {
            records: records.clone(),
            health: health.clone(),
            queues: queues.clone(),
            registrar: registrar.clone(),
            token: token.clone(),
            metrics: metrics.clone(),
            time_zone: settings.time_zone.clone(),
            service_level: settings.service_level,
            names: {
                let menu_cell = menu_cell.clone();
                Arc::new(move || api::MenuNames::of(&menu_cell.current().menu))
            },
            announcements: Some(Announcing {
                board: board.clone(),
                menu: menu_cell.clone(),
            }),
        };
        let stop = stop_http.clone();
        tokio::spawn(async move {
            if let Err(e) = api::serve(http, state, async move { stop.cancelled().await }).await {
                error!(error = %e, "HTTP server failed");
            }
        })
    };

    // The template each call's services are cloned from; its menu is the first one, each call gets the current.
    let first = menu_cell.current();
    let services = Arc::new(CallServices {
        menu: first.menu.clone(),
        prompts: first.prompts.clone(),
        menu_version: first.version.clone(),
        announcements: board,
        ringback: Arc::new(ringback()),
        sip: sip.clone(),
        rtp_ports,
        media_ip,
        records: records.clone(),
        callers,
        metrics: metrics.clone(),
        health: health.clone(),
        hangup_all: CancellationToken::new(),
        media_timeout: settings.media_timeout,
        answer_delay: settings.answer_delay,
        signalling: TaskTracker::new(),
        queues,
    });
    drop(first);
    let stop_probes = CancellationToken::new();
    let probe_task = tokio::spawn(probe_targets(
        sip.clone(),
        menus_rx,
        ProbePolicy::every(settings.probe_mode, settings.probe_interval),
        health.clone(),
        stop_probes.clone(),
    ));
    let reloader = Reloader {
        menu_path: settings.menu.clone(),
        prompts_dir: settings.prompts.clone(),
        cell: menu_cell.clone(),
        board: health.menu.clone(),
        menus: menus_tx,
    };
    reloader.publish_loaded();
    let stop_reloads = CancellationToken::new();
    let reload_task = tokio::spawn(reloader.run(reload::hangup_signals(), stop_reloads.clone()));
    let (calls_tx, mut calls_rx) = mpsc::channel(256);
    let sip_task = tokio::spawn(sip.clone().serve(calls_tx));
    sip.wait_until_listening(Duration::from_secs(5))
        .await
        .with_context(|| format!("SIP over TCP did not start on {}", sip.local_addr()))?;
    let mut shutdown = std::pin::pin!(shutdown_signal());

    // The one line scripts and tests wait for.
    {
        let mut stdout = std::io::stdout().lock();
        writeln!(
            stdout,
            "knappval listening sip={} http={}",
            sip.local_addr(),
            http_addr
        )?;
        stdout.flush()?;
    }
    info!(sip = %sip.local_addr(), http = %http_addr, rtp = %format_args!("{}-{}", settings.rtp_ports.start(), settings.rtp_ports.end()), "knappval ready");

    let calls = TaskTracker::new();
    loop {
        tokio::select! {
            call = calls_rx.recv() => match call {
                Some(call) => { calls.spawn(call::run(call, on_current_menu(&services, &menu_cell))); }
                None => break,
            },
            _ = &mut shutdown => break,
        }
    }

    info!(calls = calls.len(), grace = %menu::format_duration(settings.grace_period), "shutting down: new calls get 503");
    stop_reloads.cancel();
    let _ = reload_task.await;
    health.draining.store(true, Ordering::SeqCst);
    sip.stop_accepting();
    calls.close();
    let drained = async {
        loop {
            tokio::select! {
                // Calls queued before we stopped accepting: refuse them rather than start them now.
                Some(call) = calls_rx.recv() => {
                    call.dialog.reject(Some(rsipstack::sip::StatusCode::ServiceUnavailable), None).ok();
                }
                _ = calls.wait() => break,
            }
        }
    };
    if tokio::time::timeout(settings.grace_period, drained)
        .await
        .is_err()
    {
        warn!(
            calls = calls.len(),
            "grace period over: ending the calls still up"
        );
        services.hangup_all.cancel();
        if tokio::time::timeout(Duration::from_secs(10), calls.wait())
            .await
            .is_err()
        {
            error!(
                calls = calls.len(),
                "calls did not end in time; their records stay open and are closed as failed at the next start"
            );
        }
    }
    // Let the last BYEs finish their transactions (or give up) before the transports close.
    services.signalling.close();
    if tokio::time::timeout(Duration::from_secs(3), services.signalling.wait())
        .await
        .is_err()
    {
        warn!(
            pending = services.signalling.len(),
            "some BYEs were still unanswered at exit"
        );
    }
    stop_probes.cancel();
    let _ = probe_task.await;
    stop_retention.cancel();
    let _ = retention_task.await;
    // Every call has ended and queued its record: write them before the process goes.
    records.close(Duration::from_secs(10)).await;
    sip.shutdown();
    stop_expiry.cancel();
    stop_http.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(5), http_task).await;
    let _ = tokio::time::timeout(Duration::from_secs(2), sip_task).await;
    info!("stopped");
    Ok(())
}

/// The services for a call arriving now: the menu, prompts and version serving at this moment, kept by the call
/// to its end.
fn on_current_menu(base: &CallServices, cell: &MenuCell) -> Arc<CallServices> {
    let served = cell.current();
    Arc::new(CallServices {
        menu: served.menu.clone(),
        prompts: served.prompts.clone(),
        menu_version: served.version.clone(),
        ..base.clone()
    })
}

/// Probes function targets with OPTIONS until `stop` (see [`crate::routing::probe`]): those that failed a call,
/// or all of them. Call tasks' reports come in through the health board, where each target's state is published
/// for call tasks and `/healthz`. A reloaded menu (`menus`) with other functions or targets starts the probes
/// over for the new set.
async fn probe_targets(
    sip: Arc<SipEndpoint>,
    mut menus: watch::Receiver<Arc<Menu>>,
    policy: ProbePolicy,
    health: Arc<Health>,
    stop: CancellationToken,
) {
    let board = &health.functions;
    // A queue has agents, not one target: registration and ring timeouts say who can take a call.
    let targets_of = |menu: &Menu| -> Vec<(String, String)> {
        menu.functions
            .values()
            .filter(|f| f.transfer != crate::menu::model::TransferMode::Queue)
            .map(|f| (f.id.clone(), f.target.clone()))
            .collect()
    };
    let mut targets = targets_of(&menus.borrow_and_update());
    let start = |targets: &[(String, String)]| {
        board.retain(|function| targets.iter().any(|(id, _)| id == function));
        let probes = Probes::new(policy, targets.iter().cloned(), Instant::now());
        // Shown from the start in all mode; in failed mode from the first silent call.
        for (function, target) in targets {
            publish(board, &probes, function, target, None);
        }
        probes
    };
    let mut probes = start(&targets);
    if policy.interval.is_zero() {
        return;
    }
    let (results_tx, mut results) = mpsc::channel::<(String, String, ProbeResult)>(64);
    let mut reloading = true;
    loop {
        for (function, report, at) in board.take_reports() {
            let change = probes.on_call(&function, &report, at);
            if let Some(change) = &change {
                match change.to {
                    TargetState::Down => warn!(function = %function, target = %change.target,
                        last = %report.describe(), "function target down: its calls go to their failure path, \
                        probed until it answers"),
                    _ => {
                        info!(function = %function, target = %change.target, "function target up: it answered a call")
                    }
                }
            }
            if let Some(status) = board.snapshot().get(&function)
                && (change.is_some() || status.probing != probes.probing(&function))
            {
                let target = status.target.clone();
                let last_probe = status.last_probe.clone();
                publish(
                    board,
                    &probes,
                    &function,
                    &target,
                    Some((last_probe, report.describe())),
                );
            }
        }
        for (function, target) in probes.due(Instant::now()) {
            let sip = sip.clone();
            let results_tx = results_tx.clone();
            tokio::spawn(async move {
                let result = match sip.options(&target, policy.timeout).await {
                    Ok(code) => ProbeResult::Answered(code),
                    Err(why) => ProbeResult::Failed(why),
                };
                let _ = results_tx.send((function, target, result)).await;
            });
        }
        let next = probes
            .next_due()
            .filter(|_| !policy.interval.is_zero())
            .map(tokio::time::Instant::from_std);
        tokio::select! {
            Some((function, target, result)) = results.recv() => {
                // A probe sent before a reload that changed this function's target says nothing about the new one.
                if !targets.iter().any(|(id, t)| *id == function && *t == target) {
                    continue;
                }
                if let Some(change) = probes.on_result(&function, &result) {
                    match change.to {
                        TargetState::Down => warn!(function = %function, target = %target,
                            last = %result.describe(), "function target down: its calls go to their failure path"),
                        _ => info!(function = %function, target = %target, "function target up"),
                    }
                }
                let now = OffsetDateTime::now_utc()
                    .format(&time::format_description::well_known::Rfc3339)
                    .ok();
                publish(board, &probes, &function, &target, Some((now, result.describe())));
            }
            _ = board.reported() => {}
            changed = menus.changed(), if reloading => {
                if changed.is_err() {
                    // The reloader is gone (shutdown): keep probing the targets we have until stopped.
                    reloading = false;
                    continue;
                }
                let new_targets = targets_of(&menus.borrow_and_update());
                if new_targets != targets {
                    info!(functions = new_targets.len(), "menu reloaded: probing the functions' targets anew");
                    targets = new_targets;
                    probes = start(&targets);
                }
            }
            _ = async {
                match next {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            } => {}
            _ = stop.cancelled() => return,
        }
    }
}

/// Publishes `function`'s target as the probes see it, with the last probe's time and what the last probe or
/// call got (None: nothing yet).
fn publish(
    board: &TargetBoard,
    probes: &Probes,
    function: &str,
    target: &str,
    last: Option<(Option<String>, String)>,
) {
    let (last_probe, last_result) = match last {
        Some((at, result)) => (at, Some(result)),
        None => (None, None),
    };
    board.publish(
        function,
        TargetStatus {
            target: target.to_string(),
            state: probes.state(function),
            probing: probes.probing(function),
            last_probe,
            last_result,
        },
    );
}

/// The shutdown signal, its SIGTERM handler installed now rather than at the first poll: a SIGTERM that comes
/// right after the ready line (a supervisor, a test) must start a clean shutdown, not kill the process the
/// default way.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    let term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate());
    async move {
        #[cfg(unix)]
        match term {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(e) => {
                warn!(error = %e, "no SIGTERM handler; only Ctrl-C stops the daemon");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
