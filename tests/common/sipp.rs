//! Running SIPp as an independent peer: find it (a missing sipp fails the test, the test command installs it),
//! render a scenario template from tests/sipp/, start it with bounded runtime, collect its logs on failure.

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// The sipp binary, or a failed test saying how to get it.
pub fn sipp_binary() -> PathBuf {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("sipp"))
            .find(|p| p.is_file())
    });
    found.unwrap_or_else(|| {
        panic!("sipp is not installed: these interop tests need SIPp (Debian/Ubuntu: apt-get install sip-tester; tests/run.sh installs it)")
    })
}

/// A free UDP port on `ip` (bound and released: another process could take it in between, rarely).
pub fn free_udp_port(ip: IpAddr) -> u16 {
    UdpSocket::bind(SocketAddr::new(ip, 0))
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .expect("bind an ephemeral UDP port")
}

/// Copies tests/sipp/NAME into `dir`, replacing each `{{KEY}}` with its value.
pub fn render_scenario(name: &str, dir: &Path, values: &[(&str, String)]) -> PathBuf {
    let source = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/sipp")
        .join(name);
    let mut text = std::fs::read_to_string(&source)
        .unwrap_or_else(|e| panic!("read {}: {e}", source.display()));
    for (key, value) in values {
        text = text.replace(&format!("{{{{{key}}}}}"), value);
    }
    assert!(
        !text.contains("{{"),
        "scenario {name} has an unreplaced placeholder"
    );
    let target = dir.join(name);
    std::fs::write(&target, text).expect("write the rendered scenario");
    target
}

/// One sipp process. Killed (by its PID) if still running when dropped.
pub struct Sipp {
    child: Option<Child>,
    pub name: String,
    pub dir: PathBuf,
}

impl Sipp {
    /// Starts `sipp ARGS` in `dir` with stdin closed and output in `dir/NAME.out`; `-trace_err` logs land in `dir`.
    pub fn spawn(name: &str, dir: &Path, args: &[String]) -> Sipp {
        let out = std::fs::File::create(dir.join(format!("{name}.out")))
            .expect("create the sipp output file");
        let err = out.try_clone().expect("clone the sipp output file");
        let child = Command::new(sipp_binary())
            .args(args)
            .args(["-nostdin", "-trace_err", "-error_file"])
            .arg(dir.join(format!("{name}_errors.log")))
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("spawn sipp");
        Sipp {
            child: Some(child),
            name: name.to_string(),
            dir: dir.to_path_buf(),
        }
    }

    /// Waits (bounded) for sipp to exit; kills it and panics with its logs if it does not.
    pub fn wait(&mut self, timeout: Duration) -> ExitStatus {
        let mut child = self.child.take().expect("sipp is running");
        super::wait_child(&mut child, timeout).unwrap_or_else(|| {
            panic!(
                "sipp {} did not finish within {timeout:?}; {}",
                self.name,
                self.logs()
            )
        })
    }

    /// Its output and error log, for failure messages.
    pub fn logs(&self) -> String {
        let read = |file: String| {
            std::fs::read_to_string(self.dir.join(&file))
                .map(|t| format!("--- {file} ---\n{t}"))
                .unwrap_or_default()
        };
        format!(
            "{}\n{}",
            read(format!("{}.out", self.name)),
            read(format!("{}_errors.log", self.name))
        )
    }

    /// Waits and asserts a clean exit (every call succeeded).
    pub fn assert_success(&mut self, timeout: Duration) {
        let status = self.wait(timeout);
        assert!(
            status.success(),
            "sipp {} failed with {status}; {}",
            self.name,
            self.logs()
        );
    }
}

impl Drop for Sipp {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// SIPp as a support function's phone (tests/sipp/function_uas.xml) on 127.0.0.1:`port`: answers `calls`
/// bridged INVITEs for `function` that carry `digits` and the caller's number `caller`, and waits for their BYE.
pub fn function_phone(
    dir: &Path,
    port: u16,
    function: &str,
    digits: &str,
    caller: &str,
    calls: usize,
) -> Sipp {
    let scenario = render_scenario(
        "function_uas.xml",
        dir,
        &[
            ("FUNCTION", function.into()),
            ("DIGITS", digits.into()),
            ("CALLER", caller.into()),
            ("BYE_TIMEOUT_MS", "30000".into()),
        ],
    );
    spawn_on_loopback("function", dir, &scenario, None, port, calls, &[])
}

/// SIPp callers (tests/sipp/caller_uac.xml) from `caller` to `target`: `calls` calls, `rate` new calls a second,
/// each pressing the digits recorded in `pcap` `digit_delay_ms` after the answer and hanging up `hold_ms` later.
pub struct Callers<'a> {
    pub caller: &'a str,
    pub pcap: &'a Path,
    pub digit_delay_ms: u32,
    pub hold_ms: u32,
    pub calls: usize,
    pub rate: u32,
    /// No SDP in the INVITE: knappval offers in its 200, the caller answers in the ACK.
    pub late_offer: bool,
}

/// The caller's SDP (PCMU and telephone-event 101), as the body lines of a SIPp message with their headers.
const CALLER_SDP: &str = "Content-Type: application/sdp
Content-Length: [len]

v=0
o=sipp 1 1 IN IP[local_ip_type] [local_ip]
s=-
c=IN IP[media_ip_type] [media_ip]
t=0 0
m=audio [media_port] RTP/AVP 0 101
a=rtpmap:0 PCMU/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-16
a=ptime:20
a=sendrecv
";

impl Callers<'_> {
    pub fn spawn(&self, dir: &Path, target: SocketAddr) -> Sipp {
        let no_body = "Content-Length: 0\n";
        // knappval answers with the one codec it chose; it offers both G.711 codecs, PCMU first.
        let (invite_body, sdp_200, ack_body) = if self.late_offer {
            (no_body, "m=audio [0-9]+ RTP/AVP 0 8 101", CALLER_SDP)
        } else {
            (CALLER_SDP, "m=audio [0-9]+ RTP/AVP 0 101", no_body)
        };
        let scenario = render_scenario(
            "caller_uac.xml",
            dir,
            &[
                ("CALLER", self.caller.into()),
                ("PCAP", self.pcap.to_string_lossy().into_owned()),
                ("DIGIT_DELAY_MS", self.digit_delay_ms.to_string()),
                ("HOLD_MS", self.hold_ms.to_string()),
                ("INVITE_BODY", invite_body.into()),
                ("SDP_200", sdp_200.into()),
                ("ACK_BODY", ack_body.into()),
            ],
        );
        let port = free_udp_port(target.ip());
        let rate = ["-r".to_string(), self.rate.to_string()];
        spawn_on_loopback(
            "caller",
            dir,
            &scenario,
            Some(target),
            port,
            self.calls,
            &rate,
        )
    }
}

/// sipp on 127.0.0.1:`port` running `scenario` `calls` times (towards `target` as a client), with a bounded
/// run time.
fn spawn_on_loopback(
    name: &str,
    dir: &Path,
    scenario: &Path,
    target: Option<SocketAddr>,
    port: u16,
    calls: usize,
    extra: &[String],
) -> Sipp {
    let loopback = IpAddr::from([127, 0, 0, 1]);
    let mut args: Vec<String> = target.map(|t| t.to_string()).into_iter().collect();
    args.extend(
        [
            "-sf",
            &scenario.to_string_lossy(),
            "-i",
            "127.0.0.1",
            "-mi",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-mp",
            &free_udp_port(loopback).to_string(),
            "-m",
            &calls.to_string(),
            "-timeout",
            "120s",
            "-timeout_error",
        ]
        .map(String::from),
    );
    args.extend_from_slice(extra);
    Sipp::spawn(name, dir, &args)
}
