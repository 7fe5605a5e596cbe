//! The running daemon, assembled: menu and prompts loaded once, the record database locked for this process,
//! opened and proven writable (and calls a crash left open closed as failed), SIP and HTTP bound, one task per
//! call, and a clean shutdown.
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
use std::time::Duration;

use anyhow::Context;
use time::OffsetDateTime;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, info, warn};

use crate::api::{self, ApiState, Health};
use crate::call::{self, CallServices};
use crate::media::prompt::{Prompt, PromptCache, prompt_path};
use crate::media::{RtpPorts, tone, wav};
use crate::menu::{self, MenuErrors, model::Menu};
use crate::records::{ContactStore, DatabaseLock, Records, SqliteStore};
use crate::sip::SipEndpoint;

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
    /// The zone statistics are bucketed in (local days and hours).
    pub time_zone: jiff::tz::TimeZone,
}

/// Loads and validates the menu, decoding every prompt exactly once: the same decode serves the validation
/// (so an unreadable WAV is reported at the line that names it) and the prompt cache.
pub fn load_menu(menu_path: &Path, prompts_dir: &Path) -> Result<(Menu, PromptCache), MenuErrors> {
    let decoded: Mutex<HashMap<PathBuf, Vec<i16>>> = Mutex::new(HashMap::new());
    let probe = |path: &Path| -> Result<(), String> {
        let samples = wav::read_wav_8k(path).map_err(|e| e.to_string())?;
        if let Ok(mut decoded) = decoded.lock() {
            decoded.insert(path.to_path_buf(), samples);
        }
        Ok(())
    };
    let menu = menu::load(menu_path, prompts_dir, &probe)?;
    let mut decoded = decoded.into_inner().unwrap_or_default();
    let mut prompts = PromptCache::default();
    for id in menu.prompt_ids() {
        if let Some(samples) = decoded.remove(&prompt_path(prompts_dir, &id)) {
            prompts.insert(Prompt::from_samples(id, samples));
        }
    }
    Ok((menu, prompts))
}

/// Swedish ringback (425 Hz, 1 s on, 4 s off) for a caller waiting while a function rings.
fn ringback() -> Prompt {
    let rate = crate::media::codec::CLOCK_RATE as usize;
    let mut samples = tone::synthesize(&[(425.0, 0.25)], rate);
    samples.resize(rate * 5, 0);
    Prompt::from_samples("ringback", samples)
}

pub async fn run(settings: Settings) -> anyhow::Result<()> {
    let (menu, prompts) = load_menu(&settings.menu, &settings.prompts)
        .map_err(|errors| anyhow::anyhow!("{errors}"))?;
    info!(menu = %settings.menu.display(), name = %menu.name, functions = menu.functions.len(),
          menus = menu.menus.len(), prompts = prompts.len(), "menu loaded");

    // Before anything is written: a second daemon on this file would close the first one's live calls.
    let _db_lock = DatabaseLock::acquire(&settings.db)?;
    let store = SqliteStore::open(&settings.db)?;
    // A database that cannot take writes would lose every record of this run: refuse to start instead.
    store.probe_write()?;
    let records = Records::new(Arc::new(store));
    match records.close_unfinished(OffsetDateTime::now_utc()).await {
        Ok(0) => {}
        Ok(n) => warn!(
            calls = n,
            "closed calls left open by an earlier run as failed"
        ),
        Err(e) => return Err(e).context("cannot close unfinished contact records"),
    }

    if settings.sip.ip().is_unspecified() {
        anyhow::bail!(
            "--sip {}: knappval announces its SIP and RTP address to callers (Contact, SDP), so it needs one \
             concrete address, e.g. the trunk-facing 192.0.2.10:5060 or 127.0.0.1:5060",
            settings.sip
        );
    }
    let sip = SipEndpoint::bind(settings.sip).await?;
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
    let stop_http = CancellationToken::new();
    let http_task = {
        let state = ApiState {
            records: records.clone(),
            health: health.clone(),
            time_zone: settings.time_zone.clone(),
            names: Arc::new(api::MenuNames::of(&menu)),
        };
        let stop = stop_http.clone();
        tokio::spawn(async move {
            if let Err(e) = api::serve(http, state, async move { stop.cancelled().await }).await {
                error!(error = %e, "HTTP server failed");
            }
        })
    };

    let services = Arc::new(CallServices {
        menu: Arc::new(menu),
        prompts: Arc::new(prompts),
        ringback: Arc::new(ringback()),
        sip: sip.clone(),
        rtp_ports,
        media_ip,
        records: records.clone(),
        health: health.clone(),
        hangup_all: CancellationToken::new(),
        media_timeout: settings.media_timeout,
        answer_delay: settings.answer_delay,
        signalling: TaskTracker::new(),
    });
    let (calls_tx, mut calls_rx) = mpsc::channel(256);
    let sip_task = tokio::spawn(sip.clone().serve(calls_tx));
    sip.wait_until_listening(Duration::from_secs(5))
        .await
        .with_context(|| format!("SIP over TCP did not start on {}", sip.local_addr()))?;

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
    info!(sip = %sip.local_addr(), http = %http_addr, rtp = ?settings.rtp_ports, "knappval ready");

    let calls = TaskTracker::new();
    let mut shutdown = std::pin::pin!(shutdown_signal());
    loop {
        tokio::select! {
            call = calls_rx.recv() => match call {
                Some(call) => { calls.spawn(call::run(call, services.clone())); }
                None => break,
            },
            _ = &mut shutdown => break,
        }
    }

    info!(calls = calls.len(), grace = ?settings.grace_period, "shutting down: new calls get 503");
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
    // Every call has ended and queued its record: write them before the process goes.
    records.close(Duration::from_secs(10)).await;
    sip.shutdown();
    stop_http.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(5), http_task).await;
    let _ = tokio::time::timeout(Duration::from_secs(2), sip_task).await;
    info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
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
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
