//! The daemon as a black box: a temp dir with the menu, the prompts and the database; the process started with
//! `knappval run`, its ready line read, SIGTERM to stop it, SIGKILL from Drop if a test panics (with its log
//! printed), and the contact records read over its HTTP API with a raw HTTP/1.1 client.

use super::audio;
use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_knappval")
}

/// A test's files: `menu.yaml`, `prompts/*.wav`, `contacts.db`, `daemon.log`.
pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub prompts: PathBuf,
    pub menu: PathBuf,
    pub db: PathBuf,
}

impl Default for Fixture {
    fn default() -> Self {
        Fixture::new()
    }
}

impl Fixture {
    /// Prompts at different rates and channel counts so that the daemon's loading and resampling are exercised.
    pub fn new() -> Fixture {
        let dir = tempfile::Builder::new()
            .prefix("knappval-test-")
            .tempdir()
            .expect("create a temp dir");
        let prompts = dir.path().join("prompts");
        std::fs::create_dir_all(&prompts).expect("create the prompts dir");
        let tones: [(&str, u32, f64, u32, u16); 5] = [
            ("welcome", audio::GREETING_HZ, 0.6, 44_100, 2),
            ("main-menu", audio::MENU_HZ, 1.6, 48_000, 1),
            ("invalid-choice", audio::INVALID_HZ, 0.4, 16_000, 1),
            ("more-menu", audio::MORE_HZ, 1.0, 8_000, 1),
            ("busy", audio::BUSY_HZ, 0.6, 22_050, 2),
        ];
        for (name, freq, seconds, rate, channels) in tones {
            audio::write_tone_wav(
                &prompts.join(format!("{name}.wav")),
                f64::from(freq),
                seconds,
                rate,
                channels,
            )
            .expect("write a test prompt");
        }
        let menu = dir.path().join("menu.yaml");
        let db = dir.path().join("contacts.db");
        Fixture {
            dir,
            prompts,
            menu,
            db,
        }
    }

    pub fn write_menu(&self, yaml: &str) {
        std::fs::write(&self.menu, yaml).expect("write menu.yaml");
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

/// The knobs the call-flow tests turn on the standard test menu.
pub struct MenuSpec {
    pub it_target: String,
    pub it_transfer: &'static str,
    pub it_ring_timeout: &'static str,
    /// YAML for `on_failure` of `it` (`{ route: kundtjanst }` or `{ hangup: true }`).
    pub it_on_failure: &'static str,
    pub kt_target: String,
    pub kt_transfer: &'static str,
    /// YAML for the root menu's fallback.
    pub fallback: &'static str,
    /// How long the root menu waits for a digit.
    pub menu_timeout: &'static str,
}

impl MenuSpec {
    pub fn new(it_target: &str, kt_target: &str) -> MenuSpec {
        MenuSpec {
            it_target: it_target.to_string(),
            it_transfer: "bridge",
            it_ring_timeout: "3s",
            it_on_failure: "{ route: kundtjanst }",
            kt_target: kt_target.to_string(),
            kt_transfer: "refer",
            fallback: "{ hangup: true }",
            menu_timeout: "2s",
        }
    }

    pub fn yaml(&self) -> String {
        format!(
            r##"name: Knappval testkommun
functions:
  it:
    name: IT Kundservice
    target: "{}"
    transfer: {}
    ring_timeout: {}
    failure_prompt: busy
    on_failure: {}
  kundtjanst:
    name: Kundtjänst
    target: "{}"
    transfer: {}
menu:
  greeting: welcome
  prompt: main-menu
  timeout: {}
  retries: 1
  invalid: invalid-choice
  options:
    "1": {{ route: kundtjanst }}
    "3": {{ route: it }}
    "9": {{ menu: more }}
    "*": {{ repeat: true }}
  fallback: {}
menus:
  more:
    prompt: more-menu
    timeout: 2s
    options:
      "1": {{ route: it }}
      "#": {{ back: true }}
"##,
            self.it_target,
            self.it_transfer,
            self.it_ring_timeout,
            self.it_on_failure,
            self.kt_target,
            self.kt_transfer,
            self.menu_timeout,
            self.fallback
        )
    }
}

static STARTED: AtomicU32 = AtomicU32::new(0);

/// A running `knappval run`.
pub struct Daemon {
    child: Option<Child>,
    pub sip: SocketAddr,
    pub http: SocketAddr,
    pub fixture: Fixture,
    pub log: PathBuf,
}

impl Daemon {
    /// Starts on 127.0.0.1 with ephemeral ports.
    pub fn start(fixture: Fixture) -> Daemon {
        Daemon::start_on(fixture, "127.0.0.1:0", "127.0.0.1:0")
    }

    /// Starts on 127.0.0.1 with ephemeral ports and these extra `knappval run` flags.
    pub fn start_with(fixture: Fixture, extra: &[&str]) -> Daemon {
        Daemon::spawn(fixture, "127.0.0.1:0", "127.0.0.1:0", extra)
    }

    pub fn start_on(fixture: Fixture, sip: &str, http: &str) -> Daemon {
        Daemon::spawn(fixture, sip, http, &[])
    }

    /// Like [`start_with`](Self::start_with), logging as an admin's daemon does: no KNAPPVAL_LOG or RUST_LOG, so
    /// the daemon's own default filter (info) applies, not the tests' debug.
    pub fn start_with_default_log(fixture: Fixture, extra: &[&str]) -> Daemon {
        Daemon::spawn_logging(fixture, "127.0.0.1:0", "127.0.0.1:0", extra, None)
    }

    /// Like [`start_with`](Self::start_with), with the log filter an admin sets with `KNAPPVAL_LOG` (e.g. `info`).
    pub fn start_with_log(fixture: Fixture, extra: &[&str], level: &str) -> Daemon {
        Daemon::spawn_logging(fixture, "127.0.0.1:0", "127.0.0.1:0", extra, Some(level))
    }

    fn spawn(fixture: Fixture, sip: &str, http: &str, extra: &[&str]) -> Daemon {
        let level = std::env::var("KNAPPVAL_TEST_LOG").unwrap_or_else(|_| "debug".into());
        Daemon::spawn_logging(fixture, sip, http, extra, Some(&level))
    }

    fn spawn_logging(
        fixture: Fixture,
        sip: &str,
        http: &str,
        extra: &[&str],
        level: Option<&str>,
    ) -> Daemon {
        // Each daemon gets its own RTP range, so that daemons of parallel tests (and of other test processes on a
        // shared machine) rarely meet; the daemon must still cope when a port is taken.
        let slot = (std::process::id() + STARTED.fetch_add(1, Ordering::SeqCst) * 37) % 100;
        let rtp_ports = format!("{}-{}", 20_000 + slot * 100, 20_000 + slot * 100 + 99);
        let log = fixture.path("daemon.log");
        let stderr = std::fs::File::create(&log).expect("create the daemon log");
        let mut command = Command::new(bin());
        command.env_remove("KNAPPVAL_LOG").env_remove("RUST_LOG");
        if let Some(level) = level {
            command.env("RUST_LOG", level);
        }
        let mut child = command
            .arg("run")
            .arg("--menu")
            .arg(&fixture.menu)
            .arg("--prompts")
            .arg(&fixture.prompts)
            .args(["--sip", sip, "--http", http])
            .arg("--db")
            .arg(&fixture.db)
            .args(["--rtp-ports", &rtp_ports])
            // Short, so that a test's SIGTERM sees calls still up ended well within its wait.
            .args(["--grace-period", "2s"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("spawn knappval run");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            while let Some(Ok(line)) = lines.next() {
                let _ = tx.send(line);
            }
        });
        let mut daemon = Daemon {
            child: Some(child),
            sip: "0.0.0.0:0".parse().expect("addr"),
            http: "0.0.0.0:0".parse().expect("addr"),
            fixture,
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(line) => {
                    if let Some((sip, http)) = parse_ready_line(&line) {
                        daemon.sip = sip;
                        daemon.http = http;
                        return daemon;
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let status = daemon.child.as_mut().and_then(|c| c.wait().ok());
                    panic!(
                        "knappval exited ({status:?}) before its ready line; log:\n{}",
                        daemon.log_text()
                    );
                }
            }
            if let Some(Ok(Some(status))) = daemon.child.as_mut().map(|c| c.try_wait()) {
                panic!(
                    "knappval exited ({status}) before its ready line; log:\n{}",
                    daemon.log_text()
                );
            }
            if Instant::now() > deadline {
                panic!(
                    "no ready line from knappval within 30 s; log:\n{}",
                    daemon.log_text()
                );
            }
        }
    }

    /// SIGKILL, as a crash or an OOM kill would: nothing is cleaned up. Returns the fixture, so that a new daemon
    /// can start on the same menu, prompts and database.
    pub fn crash(mut self) -> Fixture {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        std::mem::take(&mut self.fixture)
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or(0)
    }

    /// `sip:ivr@127.0.0.1:PORT` (or `[::1]`): the shared number as a test caller dials it.
    pub fn uri(&self) -> String {
        format!("sip:ivr@{}", self.sip)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, then wait up to `grace` for the exit; SIGKILL and panic if it does not come.
    pub fn stop(&mut self, grace: Duration) -> ExitStatus {
        let mut child = self.child.take().expect("the daemon is running");
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        super::wait_child(&mut child, grace).unwrap_or_else(|| {
            panic!(
                "knappval did not exit within {grace:?} of SIGTERM; log:\n{}",
                self.log_text()
            )
        })
    }

    /// SIGHUP: the daemon reloads its menu and prompts.
    pub fn hangup_signal(&self) {
        let status = Command::new("kill")
            .arg("-HUP")
            .arg(self.pid().to_string())
            .status()
            .expect("run kill -HUP");
        assert!(status.success(), "kill -HUP {} failed", self.pid());
    }

    /// `GET /api/v1/menu` as JSON.
    pub fn menu_status(&self) -> Value {
        let (status, body) = self.get("/api/v1/menu");
        assert_eq!(status, 200, "GET /api/v1/menu: {body}");
        serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("/api/v1/menu is not JSON ({e}): {body}"))
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    pub fn get(&self, path: &str) -> (u16, String) {
        http_get(self.http, path)
            .unwrap_or_else(|e| panic!("GET {path}: {e}; log:\n{}", self.log_text()))
    }

    /// All contact records, newest first.
    pub fn contacts(&self) -> Vec<Value> {
        let (status, body) = self.get("/api/v1/contacts");
        assert_eq!(status, 200, "GET /api/v1/contacts: {body}");
        match serde_json::from_str(&body) {
            Ok(Value::Array(records)) => records,
            other => panic!("/api/v1/contacts is not a JSON array: {other:?} ({body})"),
        }
    }

    /// Polls the API until the record of `call_id` is there (records are written at call end).
    /// Waits for the call's finished record: the daemon writes one when the call starts (outcome null) and
    /// completes it when the call ends.
    pub fn wait_record(&self, call_id: &str, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(record) = self
                .contacts()
                .into_iter()
                .find(|r| r["call_id"] == call_id && !r["outcome"].is_null())
            {
                return record;
            }
            if Instant::now() > deadline {
                panic!(
                    "no finished contact record for {call_id} within {timeout:?}; records: {:?}",
                    self.contacts()
                );
            }
            thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if thread::panicking() {
            let log = self.log_text();
            let lines: Vec<&str> = log.lines().collect();
            let tail = &lines[lines.len().saturating_sub(300)..];
            eprintln!(
                "---- knappval log ({}; last {} lines) ----\n{}\n---- end of log ----",
                self.log.display(),
                tail.len(),
                tail.join("\n")
            );
        }
    }
}

/// `knappval listening sip=127.0.0.1:5060 http=127.0.0.1:8080` -> the two addresses.
pub fn parse_ready_line(line: &str) -> Option<(SocketAddr, SocketAddr)> {
    let rest = line.trim().strip_prefix("knappval listening ")?;
    let mut sip = None;
    let mut http = None;
    for word in rest.split_whitespace() {
        if let Some(v) = word.strip_prefix("sip=") {
            sip = v.parse().ok();
        } else if let Some(v) = word.strip_prefix("http=") {
            http = v.parse().ok();
        }
    }
    Some((sip?, http?))
}

/// Runs `knappval ARGS` to completion (bounded) and returns its output.
pub fn run_cli(args: &[&std::ffi::OsStr]) -> Output {
    let mut child = Command::new(bin())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn knappval");
    let (mut out, mut err) = (
        child.stdout.take().expect("stdout"),
        child.stderr.take().expect("stderr"),
    );
    let out_reader = thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    let err_reader = thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err.read_to_end(&mut v);
        v
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Ok(Some(status)) = child.try_wait() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("knappval {args:?} did not finish within 30 s");
        }
        thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: out_reader.join().unwrap_or_default(),
        stderr: err_reader.join().unwrap_or_default(),
    }
}

/// `knappval contacts --db DB --format FORMAT`, run to completion.
pub fn export_contacts(db: &Path, format: &str) -> Output {
    run_cli(&[
        os("contacts"),
        os("--db"),
        path_arg(db),
        os("--format"),
        os(format),
    ])
}

pub fn os(s: &str) -> &std::ffi::OsStr {
    std::ffi::OsStr::new(s)
}

/// `knappval check` on the fixture's menu and prompts.
pub fn check(fixture: &Fixture) -> Output {
    run_cli(&[
        os("check"),
        os("--menu"),
        path_arg(&fixture.menu),
        os("--prompts"),
        path_arg(&fixture.prompts),
    ])
}

/// `knappval simulate` on the fixture's menu and prompts, with `args`.
pub fn simulate(fixture: &Fixture, args: &[&str]) -> Output {
    let mut argv = vec![
        os("simulate"),
        os("--menu"),
        path_arg(&fixture.menu),
        os("--prompts"),
        path_arg(&fixture.prompts),
    ];
    argv.extend(args.iter().map(|a| os(a)));
    run_cli(&argv)
}

pub fn path_arg(p: &Path) -> &std::ffi::OsStr {
    p.as_os_str()
}

/// A raw HTTP/1.1 GET with `Connection: close`: (status, body). Handles Content-Length, chunked and read-to-close.
pub fn http_get(addr: SocketAddr, path: &str) -> Result<(u16, String), String> {
    http_request(addr, "GET", path, None)
}

/// A raw HTTP/1.1 request with `Connection: close` and an optional JSON body: (status, body).
pub fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    json: Option<&str>,
) -> Result<(u16, String), String> {
    http_exchange(addr, method, path, json, &[]).map(|(status, _head, body)| (status, body))
}

/// A GET with `extra` header lines (e.g. `Authorization: Bearer x`): (status, head, body).
pub fn http_get_with(
    addr: SocketAddr,
    path: &str,
    extra: &[&str],
) -> Result<(u16, String, String), String> {
    http_exchange(addr, "GET", path, None, extra)
}

fn http_exchange(
    addr: SocketAddr,
    method: &str,
    path: &str,
    json: Option<&str>,
    extra: &[&str],
) -> Result<(u16, String, String), String> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .map_err(|e| format!("connect {addr}: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    let body = json.unwrap_or("");
    let content = match json {
        Some(json) => format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            json.len()
        ),
        None => String::new(),
    };
    let extra: String = extra.iter().map(|line| format!("{line}\r\n")).collect();
    write!(stream, "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: application/json\r\n{content}{extra}Connection: close\r\n\r\n{body}").map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    stream
        .read_to_end(&mut raw)
        .map_err(|e| format!("read: {e}"))?;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("no end of HTTP headers")?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut body = raw[split + 4..].to_vec();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line in {head:?}"))?;
    let header = |name: &str| {
        head.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_ascii_lowercase())
        })
    };
    if header("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        body = dechunk(&body)?;
    } else if let Some(len) = header("content-length").and_then(|v| v.parse::<usize>().ok()) {
        body.truncate(len);
    }
    Ok((status, head, String::from_utf8_lossy(&body).into_owned()))
}

fn dechunk(mut data: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let line_end = data
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("bad chunk size line")?;
        let size_text = String::from_utf8_lossy(&data[..line_end]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| "bad chunk size")?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        out.extend_from_slice(data.get(..size).ok_or("short chunk")?);
        data = data.get(size + 2..).ok_or("short chunk")?;
    }
}

/// `knappval contacts --format jsonl` on `db`: every record it exports, newest first.
pub fn export_jsonl(db: &Path) -> Vec<Value> {
    let output = run_cli(&[
        os("contacts"),
        os("--db"),
        path_arg(db),
        os("--format"),
        os("jsonl"),
    ]);
    assert!(
        output.status.success(),
        "knappval contacts: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}")))
        .collect()
}
