//! What an operator reads: the daemon's log lines (text and JSON), its fatal errors, `--help`, and the settings it
//! refuses. Each test runs the real binary.

mod common;

use common::audio::{CALLER_HZ, FUNCTION_HZ, MENU_HZ};
use common::daemon::{os, path_arg, run_cli};
use common::sdp::{PCMA, PCMU};
use common::{Caller, Daemon, Fixture, FunctionEndpoint, MenuSpec, SECOND, wait_until};
use serde_json::Value;
use std::time::Instant;

/// Every line of a JSON log, parsed; panics on a line that is not a JSON object.
fn json_lines(log: &str) -> Vec<Value> {
    log.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            serde_json::from_str::<Value>(l)
                .unwrap_or_else(|e| panic!("log line is not JSON ({e}): {l}"))
        })
        .collect()
}

/// The `fields` of the first JSON log line whose message starts with `message`.
fn fields_of<'a>(lines: &'a [Value], message: &str) -> &'a Value {
    lines
        .iter()
        .map(|l| &l["fields"])
        .find(|f| {
            f["message"]
                .as_str()
                .is_some_and(|m| m.starts_with(message))
        })
        .unwrap_or_else(|| panic!("no log line {message:?}"))
}

#[test]
fn json_log_values_are_written_as_an_operator_writes_them() {
    let it = FunctionEndpoint::new(&[PCMA]);
    let kt = FunctionEndpoint::new(&[PCMU, PCMA]);
    let fixture = Fixture::new();
    fixture.write_menu(&MenuSpec::new(&it.uri("it"), &kt.uri("kt")).yaml());
    let mut daemon = Daemon::start_with(fixture, &["--log-format", "json"]);

    // A call that presses 3 (INFO) and is bridged to `it`, which speaks only PCMA.
    let caller = Caller::udp(daemon.sip);
    let (mut call, _answer, t0) = caller.call(&daemon, &[PCMU], CALLER_HZ);
    caller.rtp.wait_tone(MENU_HZ, 10, t0, 15 * SECOND);
    assert_eq!(call.info_dtmf_relay('3').status(), Some(200));
    let mut incoming = it.expect_call(10 * SECOND);
    it.answer(&mut incoming, FUNCTION_HZ);
    caller
        .rtp
        .wait_tone(FUNCTION_HZ, 10, Instant::now(), 10 * SECOND);
    assert_eq!(call.bye().status(), Some(200));
    incoming.call.expect_bye(10 * SECOND);
    daemon.wait_record(&call.call_id, 5 * SECOND);

    // A call with a session timer that hangs up in the menu: no function.
    let caller = Caller::udp(daemon.sip);
    let mut quiet = caller.sip.invite(
        &daemon.uri(),
        &caller.caller_uri(),
        Some(&caller.offer(&[PCMU])),
        &["Supported: timer".into(), "Session-Expires: 90".into()],
    );
    let ok = quiet.start(10 * SECOND);
    assert_eq!(ok.status(), Some(200), "{}", ok.summary());
    assert_eq!(quiet.bye().status(), Some(200));
    daemon.wait_record(&quiet.call_id, 5 * SECOND);
    assert!(daemon.stop(15 * SECOND).success());

    let log = daemon.log_text();
    let lines = json_lines(&log);
    for line in lines.iter().filter(|l| {
        l["target"]
            .as_str()
            .is_some_and(|t| t.starts_with("knappval"))
    }) {
        let text = line.to_string();
        for debug_form in [
            "None", "Some(", "..=", "Bridge", "Refer", "Pcmu", "Pcma", "Caller", "Uac",
        ] {
            assert!(
                !text.contains(debug_form),
                "{debug_form:?} in a log line: {text}"
            );
        }
    }
    let ready = fields_of(&lines, "knappval ready");
    let rtp = ready["rtp"].as_str().expect("rtp is a string");
    let (lo, hi) = rtp.split_once('-').expect("rtp is LOW-HIGH");
    assert!(
        lo.parse::<u16>().is_ok() && hi.parse::<u16>().is_ok(),
        "rtp={rtp}"
    );

    let digit = fields_of(&lines, "digit pressed");
    assert_eq!(digit["digit"], "3", "{digit}");
    assert_eq!(digit["menu"], "root", "{digit}");

    let handoff = fields_of(&lines, "handing off");
    assert_eq!(handoff["function"], "it", "{handoff}");
    assert_eq!(handoff["mode"], "bridge", "{handoff}");
    let bridged = fields_of(&lines, "bridged");
    assert_eq!(bridged["codec_caller"], "PCMU", "{bridged}");
    assert_eq!(bridged["codec_function"], "PCMA", "{bridged}");

    let ended: Vec<&Value> = lines
        .iter()
        .map(|l| &l["fields"])
        .filter(|f| {
            f["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("call ended"))
        })
        .collect();
    assert_eq!(ended.len(), 2, "{log}");
    assert_eq!(ended[0]["function"], "it", "{}", ended[0]);
    assert!(
        ended[1].get("function").is_none_or(Value::is_null),
        "a call without a function logs none: {}",
        ended[1]
    );
    let timer = fields_of(&lines, "session timer on");
    assert_eq!(timer["interval"], "1m30s", "{timer}");
    assert_eq!(timer["refresher"], "uac", "{timer}");
    let shutdown = fields_of(&lines, "shutting down");
    assert_eq!(shutdown["grace"], "2s", "{shutdown}");
}

#[test]
fn each_digit_is_logged_with_its_menu_when_pressed() {
    let it = FunctionEndpoint::new(&[PCMU]);
    let kt = FunctionEndpoint::new(&[PCMU]);
    let fixture = Fixture::new();
    fixture.write_menu(&MenuSpec::new(&it.uri("it"), &kt.uri("kt")).yaml());
    let mut daemon = Daemon::start_with(fixture, &[]);
    let caller = Caller::udp(daemon.sip);
    let (mut call, _answer, t0) = caller.call(&daemon, &[PCMU], CALLER_HZ);
    caller.rtp.wait_tone(MENU_HZ, 10, t0, 15 * SECOND);
    // 7 is no option: it is logged all the same, before anything follows from it.
    assert_eq!(call.info_dtmf_relay('7').status(), Some(200));
    wait_until(
        10 * SECOND,
        || daemon.log_text().contains("digit pressed"),
        || daemon.log_text(),
    );
    let log = daemon.log_text();
    let line = log
        .lines()
        .find(|l| l.contains("digit pressed"))
        .expect("a digit line");
    assert!(
        line.contains(" INFO ") && line.contains("digit=7") && line.contains("menu=root"),
        "{line}"
    );
    assert!(
        !log.contains("handing off"),
        "7 leads nowhere, yet it was logged: {log}"
    );
    assert_eq!(call.bye().status(), Some(200));
    daemon.wait_record(&call.call_id, 5 * SECOND);
    assert!(daemon.stop(15 * SECOND).success());
}

#[test]
fn the_log_format_is_text_or_json_and_nothing_else() {
    let out = run_cli(&[os("run"), os("--log-format"), os("xml")]);
    assert_eq!(out.status.code(), Some(2), "a usage error");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("'xml'") && err.contains("text") && err.contains("json"),
        "{err}"
    );
}

#[test]
fn a_fatal_error_is_printed_once_with_each_cause_once() {
    // A busy SIP port: the OS error must appear once, in one line.
    let busy = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    let tcp = std::net::TcpListener::bind(busy.local_addr().expect("addr"));
    let sip = busy.local_addr().expect("addr").to_string();
    let fixture = Fixture::new();
    fixture.write_menu(&MenuSpec::new("sip:it@127.0.0.1:5071", "sip:kt@127.0.0.1:5072").yaml());
    let out = run_cli(&[
        os("run"),
        os("--menu"),
        path_arg(&fixture.menu),
        os("--prompts"),
        path_arg(&fixture.prompts),
        os("--db"),
        path_arg(&fixture.db),
        os("--sip"),
        os(&sip),
        os("--http"),
        os("127.0.0.1:0"),
    ]);
    drop(tcp);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    let os_error = std::io::Error::from(std::io::ErrorKind::AddrInUse).to_string();
    let os_text = "Address already in use";
    assert_eq!(
        err.matches(os_text).count(),
        1,
        "{os_error}; stderr:\n{err}"
    );
    assert_eq!(err.matches("cannot bind SIP").count(), 1, "stderr:\n{err}");
    assert!(err.contains(&sip), "names the address: {err}");
}

#[test]
fn run_help_names_every_setting_with_its_default() {
    let out = run_cli(&[os("run"), os("--help")]);
    let help = String::from_utf8_lossy(&out.stdout);
    for (flag, default) in [
        ("--menu", "menus/kommunsupport.yaml"),
        ("--prompts", "prompts"),
        ("--sip", "127.0.0.1:5060"),
        ("--http", "127.0.0.1:8080"),
        ("--db", "data/contacts.db"),
        ("--rtp-ports", "10000-20000"),
        ("--grace-period", "30s"),
        ("--media-timeout", "60s"),
        ("--answer-delay", "0s"),
        ("--log-format", "text"),
        ("--agents", "none"),
        ("--digest", "md5"),
        ("--probe-interval", "20s"),
    ] {
        let line = help
            .lines()
            .find(|l| l.trim_start().starts_with(flag))
            .unwrap_or_else(|| panic!("{flag} missing:\n{help}"));
        let described = line.split_once("  ").map(|(_, d)| d.trim()).unwrap_or("");
        assert!(described.len() > 20, "{flag} has no description:\n{help}");
        assert!(
            line.contains(&format!("[default: {default}]")),
            "{flag} shows no default:\n{help}"
        );
    }
    // Not only RTP: RTCP and SIP requests are life too (README, "--media-timeout").
    assert!(
        help.lines()
            .any(|l| l.contains("--media-timeout") && l.contains("RTCP")),
        "{help}"
    );
    let out = run_cli(&[os("contacts"), os("--help")]);
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(
        !help.contains("[`"),
        "a doc link leaked into --help:\n{help}"
    );
    assert!(help.contains("--db") && help.contains("SQLite"), "{help}");
}

fn check(fixture: &Fixture, prompts: &std::path::Path) -> (Option<i32>, String) {
    let out = run_cli(&[
        os("check"),
        os("--menu"),
        path_arg(&fixture.menu),
        os("--prompts"),
        path_arg(prompts),
    ]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text)
}

/// The 1-based line of the first line of `yaml` holding `needle`, after the `skip`-th match.
fn line_of(yaml: &str, needle: &str, skip: usize) -> usize {
    yaml.lines()
        .enumerate()
        .filter(|(_, l)| l.contains(needle))
        .nth(skip)
        .map(|(i, _)| i + 1)
        .unwrap_or_else(|| panic!("{needle:?} not in the menu"))
}

/// The error line `menu.yaml:LINE:COL: error: ...` that mentions `needle`, as (line, rest).
fn error_at(text: &str, needle: &str) -> (usize, String) {
    let line = text
        .lines()
        .find(|l| l.contains(": error: ") && l.contains(needle))
        .unwrap_or_else(|| panic!("no error about {needle:?}:\n{text}"));
    let (_, rest) = line.split_once("menu.yaml:").expect("file:line:col");
    let mut parts = rest.splitn(3, ':');
    let number = parts.next().and_then(|n| n.parse().ok()).expect("line");
    let column: usize = parts.next().and_then(|n| n.parse().ok()).expect("column");
    assert!(column > 0, "{line}");
    (number, line.to_owned())
}

#[test]
fn check_lists_every_mistake_at_once_with_file_line_col() {
    let fixture = Fixture::new();
    let good = MenuSpec::new("sip:it@127.0.0.1:5071", "sip:kt@127.0.0.1:5072").yaml();
    // An unknown key, a dangling route, a bad duration and a repeated key, in one file.
    let broken = good
        .replace("  retries: 1\n", "  retries: 1\n  retires: 2\n")
        .replace("\"3\": { route: it }", "\"3\": { route: nope }")
        .replace("    ring_timeout: 3s\n", "    ring_timeout: 3 secs\n")
        .replace(
            "    name: Kundtjänst\n",
            "    name: Kundtjänst\n    name: Kundtjanst\n",
        );
    fixture.write_menu(&broken);
    let (code, text) = check(&fixture, &fixture.prompts);
    assert_eq!(code, Some(1), "{text}");
    for (needle, at) in [
        ("unknown key 'retires'", line_of(&broken, "retires:", 0)),
        ("nope", line_of(&broken, "route: nope", 0)),
        ("3 secs", line_of(&broken, "ring_timeout", 0)),
    ] {
        assert_eq!(error_at(&text, needle).0, at, "{needle}:\n{text}");
    }
    let first = line_of(&broken, "    name: Kundt", 0);
    let again = line_of(&broken, "    name: Kundt", 1);
    let (line, message) = error_at(&text, "given twice");
    assert_eq!(line, again, "{text}");
    assert!(
        message.contains(&format!("first at line {first}")),
        "names the first copy too: {message}"
    );
    assert!(text.contains("4 errors"), "{text}");
}

#[test]
fn check_accepts_a_spaced_duration_and_says_a_missing_prompts_folder_once() {
    let fixture = Fixture::new();
    let spaced = MenuSpec::new("sip:it@127.0.0.1:5071", "sip:kt@127.0.0.1:5072")
        .yaml()
        .replace("  timeout: 2s\n", "  timeout: 5 s\n");
    fixture.write_menu(&spaced);
    let (code, text) = check(&fixture, &fixture.prompts);
    assert_eq!(code, Some(0), "'5 s' is a duration: {text}");

    let (code, text) = check(&fixture, &fixture.path("no-such-folder"));
    assert_eq!(code, Some(1), "{text}");
    assert_eq!(text.matches(": error: ").count(), 1, "one error:\n{text}");
    assert!(
        text.contains("no-such-folder") && text.contains("--prompts"),
        "names the folder and the fix: {text}"
    );
}

/// The README's try-it commands: SIPp's built-in UAS as IT's phone, the shipped caller scenario pressing 3 by
/// INFO, and the record it leaves.
#[test]
fn the_readme_sipp_caller_presses_3_and_is_bridged_to_it() {
    use common::sipp::{Sipp, free_udp_port};
    let ip: std::net::IpAddr = "127.0.0.1".parse().expect("ip");
    let it_port = free_udp_port(ip);
    let fixture = Fixture::new();
    let dir = fixture.path("sipp");
    std::fs::create_dir_all(&dir).expect("sipp dir");
    let mut spec = MenuSpec::new(&format!("sip:it@127.0.0.1:{it_port}"), "sip:kt@127.0.0.1:9");
    // The scenario listens 8 s before it presses 3, as the shipped menu's 5 s timeout allows.
    spec.menu_timeout = "10s";
    fixture.write_menu(&spec.yaml());
    // A reader takes their time between the commands: OPTIONS probes reach IT's phone before the call does
    // (here every 2 s instead of 20 s, so that they surely do).
    let daemon = Daemon::start_with(fixture, &["--probe-interval", "2s"]);
    let args = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let function = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/sipp/function.xml");
    // The README's command, with a global timeout (the phone runs until stopped): exit 0 if no call failed.
    let mut it = Sipp::spawn(
        "it",
        &dir,
        &args(&[
            "-sf",
            function,
            "-i",
            "127.0.0.1",
            "-p",
            &it_port.to_string(),
            "-timeout",
            "35s",
        ]),
    );
    let scenario = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/sipp/caller.xml");
    let mut caller = Sipp::spawn(
        "caller",
        &dir,
        &args(&[
            "-sf",
            scenario,
            "-i",
            "127.0.0.1",
            "-m",
            "1",
            "-timeout",
            "60s",
            "-timeout_error",
            &daemon.sip.to_string(),
        ]),
    );
    caller.assert_success(90 * SECOND);
    it.assert_success(60 * SECOND);
    let (_, health) = daemon.get("/healthz");
    assert!(
        health.contains(r#""last_result":"200""#),
        "a probe reached IT's phone and was answered: {health}"
    );
    let records = daemon.contacts();
    assert_eq!(records.len(), 1, "{records:?}");
    let record = &records[0];
    assert_eq!(record["digits"], "3", "{record:#}");
    assert_eq!(record["function"], "it", "{record:#}");
    assert_eq!(record["outcome"], "transferred", "{record:#}");
    assert!(
        daemon
            .log_text()
            .contains("digit pressed digit=3 menu=root"),
        "{}",
        daemon.log_text()
    );
}
