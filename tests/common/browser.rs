//! Headless Chromium driven over the DevTools protocol through `--remote-debugging-pipe` (JSON messages ended by
//! NUL on file descriptors 3 and 4): no websocket client and no chromedriver needed. It records what the page
//! writes to the console, uncaught exceptions and the browser's own error log (failed requests), evaluates
//! JavaScript in the page, and is killed when dropped.
//!
//! Chromium is Debian's `chromium` (tests/run.sh installs it), or the binary named by `KNAPPVAL_CHROMIUM`. A test
//! that needs it fails without it: a skipped browser test would leave the page untested.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::{FromRawFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Value, json};

/// Generous: a cold Chromium start on a loaded 2-core machine takes seconds.
const PATIENCE: Duration = Duration::from_secs(60);

pub fn chromium() -> PathBuf {
    if let Ok(path) = std::env::var("KNAPPVAL_CHROMIUM") {
        return PathBuf::from(path);
    }
    for name in ["chromium", "chromium-browser"] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {name}")])
            .output()
            .ok()
            .filter(|out| out.status.success())
            .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_string());
        if let Some(path) = found.filter(|p| !p.is_empty()) {
            return PathBuf::from(path);
        }
    }
    panic!(
        "this test needs headless Chromium and found none: install Debian's `chromium` \
         (tests/run.sh does: apt-get install -y chromium) or set KNAPPVAL_CHROMIUM"
    );
}

/// A pipe whose both ends are closed on exec; the child gets its end by `dup2`, which clears that flag.
fn pipe() -> (RawFd, RawFd) {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two descriptors into the array it is given.
    let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    assert_eq!(rc, 0, "pipe2: {}", std::io::Error::last_os_error());
    (fds[0], fds[1])
}

/// One page in a headless Chromium.
pub struct Browser {
    child: Child,
    commands: File,
    messages: mpsc::Receiver<Value>,
    session: String,
    next_id: u64,
    /// Console calls, uncaught exceptions and error log entries, as readable lines.
    pub console: Vec<String>,
    /// Error log entries of the browser itself (e.g. a request answered 401), kept apart from the console.
    pub network_errors: Vec<String>,
    _profile: tempfile::TempDir,
}

impl Browser {
    pub fn launch() -> Browser {
        let profile = tempfile::Builder::new()
            .prefix("knappval-chromium-")
            .tempdir()
            .expect("a profile dir");
        let (browser_reads, we_write) = pipe();
        let (we_read, browser_writes) = pipe();
        let mut command = Command::new(chromium());
        command
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--remote-debugging-pipe",
                "--window-size=1280,1600",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // SAFETY: only async-signal-safe calls (dup2, fcntl) between fork and exec.
        unsafe {
            command.pre_exec(move || {
                for (from, to) in [(browser_reads, 3), (browser_writes, 4)] {
                    if from == to {
                        libc::fcntl(to, libc::F_SETFD, 0);
                    } else if libc::dup2(from, to) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        let child = command.spawn().expect("start chromium");
        // SAFETY: each descriptor came from pipe2 above and is owned once, here.
        let (commands, replies) = unsafe {
            libc::close(browser_reads);
            libc::close(browser_writes);
            (File::from_raw_fd(we_write), File::from_raw_fd(we_read))
        };
        let (tx, messages) = mpsc::channel();
        thread::spawn(move || {
            let mut reader = BufReader::new(replies);
            let mut message = Vec::new();
            while reader.read_until(0, &mut message).is_ok_and(|n| n > 0) {
                if message.last() == Some(&0) {
                    message.pop();
                }
                let value = serde_json::from_slice::<Value>(&message);
                if value.is_ok_and(|value| tx.send(value).is_err()) {
                    return;
                }
                message.clear();
            }
        });
        let mut browser = Browser {
            child,
            commands,
            messages,
            session: String::new(),
            next_id: 0,
            console: Vec::new(),
            network_errors: Vec::new(),
            _profile: profile,
        };
        let target = browser.call(None, "Target.createTarget", json!({"url": "about:blank"}));
        let target_id = target["targetId"]
            .as_str()
            .expect("a target id")
            .to_string();
        let attached = browser.call(
            None,
            "Target.attachToTarget",
            json!({"targetId": target_id, "flatten": true}),
        );
        browser.session = attached["sessionId"]
            .as_str()
            .expect("a session id")
            .to_string();
        for domain in ["Runtime.enable", "Log.enable", "Page.enable"] {
            browser.command(domain, json!({}));
        }
        browser
    }

    /// Sends a command to the page and returns its result.
    pub fn command(&mut self, method: &str, params: Value) -> Value {
        let session = self.session.clone();
        self.call(Some(&session), method, params)
    }

    fn call(&mut self, session: Option<&str>, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut message = json!({"id": id, "method": method, "params": params});
        if let Some(session) = session {
            message["sessionId"] = json!(session);
        }
        let mut bytes = serde_json::to_vec(&message).expect("JSON");
        bytes.push(0);
        self.commands
            .write_all(&bytes)
            .expect("write to chromium's pipe");
        let deadline = Instant::now() + PATIENCE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let reply = self
                .messages
                .recv_timeout(left)
                .unwrap_or_else(|e| panic!("no answer from chromium to {method}: {e}"));
            if reply["id"] == id {
                if let Some(error) = reply.get("error") {
                    panic!("chromium refused {method}: {error}");
                }
                return reply["result"].clone();
            }
            self.note(&reply);
        }
    }

    /// Keeps what an event says about errors.
    fn note(&mut self, event: &Value) {
        let params = &event["params"];
        match event["method"].as_str() {
            Some("Runtime.consoleAPICalled") => {
                let args: Vec<String> = params["args"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|arg| {
                        arg.get("value")
                            .map(|v| v.to_string())
                            .or_else(|| arg["description"].as_str().map(String::from))
                            .unwrap_or_default()
                    })
                    .collect();
                let level = params["type"].as_str().unwrap_or("log");
                self.console
                    .push(format!("console.{level}: {}", args.join(" ")));
            }
            Some("Runtime.exceptionThrown") => {
                let details = &params["exceptionDetails"];
                let description = details["exception"]["description"]
                    .as_str()
                    .or(details["text"].as_str())
                    .unwrap_or("?");
                self.console.push(format!("uncaught: {description}"));
            }
            Some("Log.entryAdded") => {
                let entry = &params["entry"];
                let field = |name: &str| entry[name].as_str().unwrap_or("").to_string();
                let line = format!(
                    "{} {}: {} {}",
                    field("level"),
                    field("source"),
                    field("text"),
                    field("url")
                );
                if entry["source"] == "network" {
                    self.network_errors.push(line);
                } else {
                    self.console.push(line);
                }
            }
            _ => {}
        }
    }

    /// Evaluates `expression` in the page (awaiting a promise) and returns its value.
    pub fn eval(&mut self, expression: &str) -> Value {
        let result = self.command(
            "Runtime.evaluate",
            json!({"expression": expression, "returnByValue": true, "awaitPromise": true}),
        );
        if let Some(details) = result.get("exceptionDetails") {
            panic!("{expression} threw: {details}");
        }
        result["result"]["value"].clone()
    }

    pub fn navigate(&mut self, url: &str) {
        self.command("Page.navigate", json!({"url": url}));
    }

    /// Polls `expression` until it yields `want`, within a generous bound; returns what it yielded last.
    pub fn wait_for(&mut self, expression: &str, want: &Value) -> Value {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let value = self.eval(expression);
            if &value == want || Instant::now() > deadline {
                return value;
            }
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// The page as HTML, after its scripts ran.
    pub fn html(&mut self) -> String {
        self.eval("document.documentElement.outerHTML")
            .as_str()
            .expect("the page's HTML")
            .to_string()
    }

    /// Saves a PNG of the whole page.
    pub fn screenshot(&mut self, path: &std::path::Path) {
        let shot = self.command(
            "Page.captureScreenshot",
            json!({"format": "png", "captureBeyondViewport": true}),
        );
        let data = shot["data"].as_str().expect("PNG data");
        let png = base64::engine::general_purpose::STANDARD
            .decode(data)
            .expect("base64 PNG");
        std::fs::write(path, png).expect("write the screenshot");
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
