//! Agents' phones registering to the daemon with digest authentication, seen from outside: a test phone that
//! computes its own MD5 and SHA-256 digests, the daemon's answers, and what `GET /api/v1/agents` then lists.
//! Also `knappval agents passwd` through the binary.

mod common;

use common::agent::{AgentPhone, REALM, challenges, hash, listed_expiry, write_agents_file};
use common::{Daemon, Fixture, MenuSpec, wait_until};
use serde_json::Value;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const ANNA: (&str, &str) = ("it-anna", "Sommar2026!");
const BO: (&str, &str) = ("it-bo", "vinter-bo");

/// A daemon with the standard test menu and an agents file of `settings` lines and Anna and Bo.
fn daemon_with_agents(settings: &str, extra: &[&str]) -> Daemon {
    let fixture = Fixture::new();
    fixture.write_menu(&MenuSpec::new("sip:it@127.0.0.1:9", "sip:kt@127.0.0.1:9").yaml());
    let agents = fixture.path("agents.yaml");
    write_agents_file(&agents, settings, &[ANNA, BO]);
    let mut args = vec!["--agents", agents.to_str().expect("utf-8 temp path")];
    args.extend_from_slice(extra);
    Daemon::start_with(fixture, &args)
}

fn agents_api(daemon: &Daemon) -> Vec<Value> {
    let (status, body) = daemon.get("/api/v1/agents");
    assert_eq!(status, 200, "GET /api/v1/agents: {body}");
    match serde_json::from_str(&body) {
        Ok(Value::Array(agents)) => agents,
        other => panic!("/api/v1/agents is not a JSON array: {other:?} ({body})"),
    }
}

/// The contact URIs the API lists for `id`.
fn listed_contacts(daemon: &Daemon, id: &str) -> Vec<String> {
    let agents = agents_api(daemon);
    let agent = agents
        .iter()
        .find(|a| a["id"] == id)
        .unwrap_or_else(|| panic!("agent {id} not in {agents:?}"));
    agent["contacts"]
        .as_array()
        .expect("contacts array")
        .iter()
        .map(|c| c["uri"].as_str().expect("uri").to_owned())
        .collect()
}

#[test]
fn an_agent_registers_with_md5_by_default_and_is_listed() {
    let daemon = daemon_with_agents("", &[]);
    let mut phone = AgentPhone::new(daemon.sip, ANNA.0, ANNA.1);
    let contact = [
        format!("Contact: <{}>", phone.contact()),
        "Expires: 600".to_owned(),
    ];
    let offered = phone.challenge(&contact);
    assert_eq!(offered.len(), 1, "one challenge by default: {offered:?}");
    assert_eq!(offered[0].algorithm, "MD5");
    assert_eq!(offered[0].realm, REALM);
    assert_eq!(offered[0].qop.as_deref(), Some("auth"));
    assert!(!offered[0].stale);

    let response = phone.register(600);
    assert_eq!(response.status(), Some(200), "{}", response.summary());
    let expiry = listed_expiry(&response, &phone.contact()).unwrap_or_else(|| {
        panic!(
            "200 does not list our contact: {:?}",
            response.header_all("contact")
        )
    });
    assert!((590..=600).contains(&expiry), "expires={expiry}");

    let agents = agents_api(&daemon);
    let anna = agents
        .iter()
        .find(|a| a["id"] == ANNA.0)
        .expect("it-anna listed");
    assert_eq!(anna["name"], "Agent it-anna");
    assert_eq!(anna["contacts"][0]["uri"], phone.contact());
    let left = anna["contacts"][0]["expires_in_s"]
        .as_u64()
        .expect("expires_in_s");
    assert!((500..=600).contains(&left), "expires_in_s {left}");
    let bo = agents
        .iter()
        .find(|a| a["id"] == BO.0)
        .expect("it-bo listed");
    assert_eq!(
        bo["contacts"],
        serde_json::json!([]),
        "Bo has not registered"
    );

    // Two phones for one agent: both listed, first-registered first; Expires: 0 removes one.
    let mut desk = AgentPhone::new(daemon.sip, ANNA.0, ANNA.1);
    assert_eq!(desk.register(600).status(), Some(200));
    assert_eq!(
        listed_contacts(&daemon, ANNA.0),
        [phone.contact(), desk.contact()]
    );
    assert_eq!(phone.register(0).status(), Some(200));
    assert_eq!(listed_contacts(&daemon, ANNA.0), [desk.contact()]);
    // `Contact: *` with `Expires: 0` removes every contact of the agent.
    let all = ["Contact: *".to_owned(), "Expires: 0".to_owned()];
    let response = phone.register_with(&all, "MD5");
    assert_eq!(response.status(), Some(200), "{}", response.summary());
    assert!(response.header("contact").is_none(), "no contacts left");
    assert!(listed_contacts(&daemon, ANNA.0).is_empty());
}

#[test]
fn an_agent_gets_at_most_ten_contacts() {
    let daemon = daemon_with_agents("", &[]);
    let mut phones: Vec<AgentPhone> = (0..11)
        .map(|_| AgentPhone::new(daemon.sip, ANNA.0, ANNA.1))
        .collect();
    for phone in &mut phones[..10] {
        assert_eq!(phone.register(600).status(), Some(200));
    }
    let response = phones[10].register(600);
    assert_eq!(response.status(), Some(403), "{}", response.summary());
    assert_eq!(listed_contacts(&daemon, ANNA.0).len(), 10);
    // One phone leaves; now there is room.
    assert_eq!(phones[0].register(0).status(), Some(200));
    assert_eq!(phones[10].register(600).status(), Some(200));
}

#[test]
fn a_wrong_password_or_unknown_agent_gets_403_and_registers_nothing() {
    let mut daemon = daemon_with_agents("", &[]);
    let mut phone = AgentPhone::new(daemon.sip, ANNA.0, "fel-lösenord");
    let response = phone.register(600);
    assert_eq!(response.status(), Some(403), "{}", response.summary());
    let mut stranger = AgentPhone::new(daemon.sip, "it-cecilia", "whatever");
    let response = stranger.register(600);
    assert_eq!(
        response.status(),
        Some(403),
        "unknown agent answered like a wrong password"
    );
    // The right password still works afterwards, and only then is the agent listed.
    assert!(listed_contacts(&daemon, ANNA.0).is_empty());
    let mut right = AgentPhone::new(daemon.sip, ANNA.0, ANNA.1);
    assert_eq!(right.register(600).status(), Some(200));
    assert_eq!(listed_contacts(&daemon, ANNA.0), [right.contact()]);

    daemon.stop(Duration::from_secs(15));
    // knappval's own lines: rsipstack logs at warn unless the filter names it, and what it prints is not
    // knappval's to judge here.
    let log: String = daemon
        .log_text()
        .lines()
        .filter(|line| line.contains(" knappval::"))
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        log.contains("REGISTER refused 403: wrong password"),
        "the refusal is logged:\n{log}"
    );
    assert!(log.contains("agent=it-anna"), "with the agent:\n{log}");
    assert!(!log.contains("fel-lösenord"), "the password is not logged");
    assert!(
        !log.contains("response="),
        "the credentials are not logged:\n{log}"
    );
}

#[test]
fn ten_wrong_passwords_lock_that_phone_out_of_that_agent_but_not_its_colleagues() {
    let mut daemon = daemon_with_agents("", &[]);
    let mut guesser = AgentPhone::new(daemon.sip, ANNA.0, "gissning");
    for attempt in 1..=10 {
        let response = guesser.register(600);
        assert_eq!(
            response.status(),
            Some(403),
            "attempt {attempt}: {}",
            response.summary()
        );
    }
    let mut anna = AgentPhone::new(daemon.sip, ANNA.0, ANNA.1);
    let response = anna.register(600);
    assert_eq!(
        response.status(),
        Some(403),
        "the right password from the guessing address is refused too: {}",
        response.summary()
    );
    assert!(listed_contacts(&daemon, ANNA.0).is_empty());
    let mut bo = AgentPhone::new(daemon.sip, BO.0, BO.1);
    assert_eq!(
        bo.register(600).status(),
        Some(200),
        "a colleague behind the same address registers"
    );
    assert_eq!(listed_contacts(&daemon, BO.0), [bo.contact()]);

    daemon.stop(Duration::from_secs(15));
    let log = daemon.log_text();
    let lockouts: Vec<&str> = log
        .lines()
        .filter(|line| line.contains("10 refused passwords for this agent from this address"))
        .collect();
    assert_eq!(lockouts.len(), 1, "the lockout is logged once:\n{log}");
    assert!(
        lockouts[0].contains("agent=it-anna") && lockouts[0].contains("locked_for=10m"),
        "with the agent and how long: {}",
        lockouts[0]
    );
}

#[test]
fn an_agent_registers_over_tcp() {
    let daemon = daemon_with_agents("", &[]);
    let mut phone = AgentPhone::tcp(daemon.sip, BO.0, BO.1);
    assert!(
        phone.contact().ends_with(";transport=tcp"),
        "{}",
        phone.contact()
    );
    let response = phone.register(600);
    assert_eq!(response.status(), Some(200), "{}", response.summary());
    let listed = listed_contacts(&daemon, BO.0);
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert!(
        listed[0].eq_ignore_ascii_case(&phone.contact()),
        "{listed:?} vs {}",
        phone.contact()
    );
}

#[test]
fn unreadable_credentials_get_400() {
    let daemon = daemon_with_agents("", &[]);
    let mut phone = AgentPhone::new(daemon.sip, ANNA.0, ANNA.1);
    for authorization in [
        "Authorization: Digest username=\"it-anna\", realm=\"knappval\"",
        "Authorization: Digest username=\"it-anna\", realm=\"knappval\", nonce=\"x\", uri=\"sip:a\", \
         response=\"0\", qop=auth, nc=zz, cnonce=\"c\"",
        "Authorization: Digest realm=\"knappval\", username=\"unclosed",
    ] {
        let request = phone.request(&[
            format!("Contact: <{}>", phone.contact()),
            authorization.into(),
        ]);
        let response = phone.send(&request);
        assert_eq!(
            response.status(),
            Some(400),
            "{authorization}: {}",
            response.summary()
        );
    }
    assert!(listed_contacts(&daemon, ANNA.0).is_empty());
}

#[test]
fn a_replayed_nonce_count_is_refused() {
    let daemon = daemon_with_agents("", &[]);
    let mut phone = AgentPhone::new(daemon.sip, ANNA.0, ANNA.1);
    let contact = format!("Contact: <{}>", phone.contact());
    let offered = phone.challenge(std::slice::from_ref(&contact));
    let authorization = phone.authorization(&offered[0]);
    let register = phone.request(&[
        contact.clone(),
        "Expires: 600".into(),
        authorization.clone(),
    ]);
    assert_eq!(phone.send(&register).status(), Some(200));
    // The phone unregisters with the next nonce-count...
    let next = phone.authorization(&offered[0]);
    let unregister = phone.request(&[contact.clone(), "Expires: 0".into(), next]);
    assert_eq!(phone.send(&unregister).status(), Some(200));
    assert!(listed_contacts(&daemon, ANNA.0).is_empty());
    // ...and a captured copy of the first REGISTER (the same credentials, nc=1) comes again as a new
    // transaction with a newer CSeq: refused, nothing registered.
    let replay = phone.request(&[contact, "Expires: 600".into(), authorization]);
    let response = phone.send(&replay);
    assert_eq!(response.status(), Some(401), "{}", response.summary());
    assert!(listed_contacts(&daemon, ANNA.0).is_empty());
}

#[test]
fn an_expired_nonce_is_answered_stale_and_the_phone_retries() {
    let daemon = daemon_with_agents("nonce_lifetime: 1s\n", &[]);
    let mut phone = AgentPhone::new(daemon.sip, ANNA.0, ANNA.1);
    let contact = [
        format!("Contact: <{}>", phone.contact()),
        "Expires: 600".to_owned(),
    ];
    let offered = phone.challenge(&contact);
    std::thread::sleep(Duration::from_millis(1500));
    let mut lines = contact.to_vec();
    lines.push(phone.authorization(&offered[0]));
    let request = phone.request(&lines);
    let response = phone.send(&request);
    assert_eq!(response.status(), Some(401), "{}", response.summary());
    let fresh = challenges(&response);
    assert!(fresh[0].stale, "stale=true on an expired nonce: {fresh:?}");
    assert_ne!(fresh[0].nonce, offered[0].nonce);
    // What a phone does on stale=true: answer the new nonce without asking its user.
    let mut lines = contact.to_vec();
    lines.push(phone.authorization(&fresh[0]));
    let request = phone.request(&lines);
    assert_eq!(phone.send(&request).status(), Some(200));
}

#[test]
fn sha256_is_offered_first_with_the_digest_flag_and_works() {
    let daemon = daemon_with_agents("", &["--digest", "sha-256,md5"]);
    let mut phone = AgentPhone::new(daemon.sip, ANNA.0, ANNA.1);
    let lines = [
        format!("Contact: <{}>", phone.contact()),
        "Expires: 600".to_owned(),
    ];
    let offered = phone.challenge(&lines);
    let algorithms: Vec<&str> = offered.iter().map(|c| c.algorithm.as_str()).collect();
    assert_eq!(
        algorithms,
        ["SHA-256", "MD5"],
        "one challenge per algorithm, SHA-256 first"
    );
    let response = phone.register_with(&lines, "SHA-256");
    assert_eq!(response.status(), Some(200), "{}", response.summary());
    assert_eq!(listed_contacts(&daemon, ANNA.0), [phone.contact()]);
    // MD5 phones still register.
    let mut old = AgentPhone::new(daemon.sip, BO.0, BO.1);
    assert_eq!(old.register(600).status(), Some(200));
}

#[test]
fn the_agents_file_can_offer_sha256_too() {
    let daemon = daemon_with_agents("algorithms: [sha-256, md5]\n", &[]);
    let mut phone = AgentPhone::new(daemon.sip, ANNA.0, ANNA.1);
    let offered = phone.challenge(&[format!("Contact: <{}>", phone.contact())]);
    let algorithms: Vec<&str> = offered.iter().map(|c| c.algorithm.as_str()).collect();
    assert_eq!(algorithms, ["SHA-256", "MD5"]);
}

#[test]
fn a_registration_disappears_when_it_expires() {
    let daemon = daemon_with_agents("min_expires: 1s\n", &[]);
    let mut phone = AgentPhone::new(daemon.sip, ANNA.0, ANNA.1);
    let registered = Instant::now();
    assert_eq!(phone.register(2).status(), Some(200));
    wait_until(
        Duration::from_secs(15),
        || listed_contacts(&daemon, ANNA.0).is_empty(),
        || format!("still listed: {:?}", agents_api(&daemon)),
    );
    assert!(
        registered.elapsed() >= Duration::from_millis(1500),
        "gone after {:?}, before its 2 s were up",
        registered.elapsed()
    );
}

#[test]
fn a_too_brief_registration_gets_423_with_the_minimum() {
    let daemon = daemon_with_agents("", &[]);
    let mut phone = AgentPhone::new(daemon.sip, ANNA.0, ANNA.1);
    let response = phone.register(30);
    assert_eq!(response.status(), Some(423), "{}", response.summary());
    assert_eq!(response.header("min-expires"), Some("60"));
    assert!(listed_contacts(&daemon, ANNA.0).is_empty());
    // Longer than the maximum is shortened to it.
    let response = phone.register(86_400);
    assert_eq!(listed_expiry(&response, &phone.contact()), Some(3600));
}

#[test]
fn without_an_agents_file_register_is_not_allowed() {
    let fixture = Fixture::new();
    fixture.write_menu(&MenuSpec::new("sip:it@127.0.0.1:9", "sip:kt@127.0.0.1:9").yaml());
    let daemon = Daemon::start(fixture);
    let mut phone = AgentPhone::new(daemon.sip, ANNA.0, ANNA.1);
    let request = phone.request(&[format!("Contact: <{}>", phone.contact())]);
    let response = phone.send(&request);
    assert_eq!(response.status(), Some(405), "{}", response.summary());
    assert!(
        !response
            .header("allow")
            .unwrap_or_default()
            .contains("REGISTER"),
        "{:?}",
        response.header("allow")
    );
    assert!(agents_api(&daemon).is_empty());
}

/// `knappval run` on a fixture with `extra` flags, expected to refuse to start; returns its stderr.
fn refused_start(fixture: &Fixture, extra: &[&std::ffi::OsStr]) -> String {
    let output = Command::new(common::daemon::bin())
        .arg("run")
        .arg("--menu")
        .arg(&fixture.menu)
        .arg("--prompts")
        .arg(&fixture.prompts)
        .args(["--sip", "127.0.0.1:0", "--http", "127.0.0.1:0"])
        .arg("--db")
        .arg(&fixture.db)
        .args(extra)
        .stdin(Stdio::null())
        .output()
        .expect("run knappval");
    assert!(!output.status.success(), "knappval started");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn a_broken_agents_file_stops_the_start_with_file_line_col() {
    let fixture = Fixture::new();
    fixture.write_menu(&MenuSpec::new("sip:it@127.0.0.1:9", "sip:kt@127.0.0.1:9").yaml());
    let agents = fixture.path("agents.yaml");
    std::fs::write(&agents, "agents:\n  it-anna: { password: hemligt }\n").unwrap();
    let stderr = refused_start(&fixture, &["--agents".as_ref(), agents.as_os_str()]);
    assert!(
        stderr.contains(&format!("{}:2:", agents.display())),
        "file:line:col in {stderr}"
    );
    assert!(stderr.contains("never passwords"), "{stderr}");
    // SHA-256 offered, but the file has only MD5 digests.
    let md5 = hash("MD5", &format!("{}:{REALM}:{}", ANNA.0, ANNA.1));
    std::fs::write(
        &agents,
        format!("agents:\n  it-anna: {{ ha1_md5: {md5} }}\n"),
    )
    .unwrap();
    let stderr = refused_start(
        &fixture,
        &[
            "--agents".as_ref(),
            agents.as_os_str(),
            "--digest".as_ref(),
            "sha-256,md5".as_ref(),
        ],
    );
    assert!(
        stderr.contains(&format!("{}:2:3", agents.display())),
        "{stderr}"
    );
    assert!(stderr.contains("has no ha1_sha256"), "{stderr}");
    let stderr = refused_start(&fixture, &["--digest".as_ref(), "md5".as_ref()]);
    assert!(stderr.contains("--digest needs --agents"), "{stderr}");
}

/// `knappval agents passwd --agents FILE ID` with `stdin` as its standard input.
fn passwd(file: &Path, id: &str, stdin: &str, extra: &[&str]) -> std::process::Output {
    let mut child = Command::new(common::daemon::bin())
        .args(["agents", "passwd", "--agents"])
        .arg(file)
        .args(extra)
        .arg(id)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn knappval agents passwd");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("write the password");
    child.wait_with_output().expect("knappval agents passwd")
}

#[test]
fn agents_passwd_creates_the_file_0600_and_updates_it() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("agents.yaml");
    let output = passwd(
        &file,
        ANNA.0,
        &format!("{}\nignored second line\n", ANNA.1),
        &["--name", "Anna Berg"],
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "the agents file is private");
    }
    let text = std::fs::read_to_string(&file).unwrap();
    let md5 = hash("MD5", &format!("{}:{REALM}:{}", ANNA.0, ANNA.1));
    let sha = hash("SHA-256", &format!("{}:{REALM}:{}", ANNA.0, ANNA.1));
    assert!(text.contains(&format!("ha1_md5: {md5}")), "{text}");
    assert!(text.contains(&format!("ha1_sha256: {sha}")), "{text}");
    assert!(!text.contains(ANNA.1), "no clear password in the file");

    // A comment of the admin's, a second agent, then a new password for Anna.
    std::fs::write(&file, format!("# kept\n{text}")).unwrap();
    assert!(
        passwd(&file, BO.0, &format!("{}\r\n", BO.1), &[])
            .status
            .success()
    );
    assert!(passwd(&file, ANNA.0, "nytt-lösen\n", &[]).status.success());
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.starts_with("# kept\n"), "{text}");
    assert!(!text.contains(&md5), "the old digest is gone: {text}");
    let new_md5 = hash("MD5", &format!("{}:{REALM}:nytt-lösen", ANNA.0));
    assert!(text.contains(&new_md5), "{text}");
    assert!(
        text.contains("name: \"Anna Berg\""),
        "the name is kept: {text}"
    );
    assert!(
        text.contains(&hash("MD5", &format!("{}:{REALM}:{}", BO.0, BO.1))),
        "Bo kept, CR stripped from his password: {text}"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "still private after the rewrite");
    }
    let empty = passwd(&file, BO.0, "\n", &[]);
    assert!(!empty.status.success(), "an empty password is refused");

    // The daemon takes the file as written, and the new password registers.
    let fixture = Fixture::new();
    fixture.write_menu(&MenuSpec::new("sip:it@127.0.0.1:9", "sip:kt@127.0.0.1:9").yaml());
    let daemon = Daemon::start_with(fixture, &["--agents", file.to_str().unwrap()]);
    let mut phone = AgentPhone::new(daemon.sip, ANNA.0, "nytt-lösen");
    assert_eq!(phone.register(600).status(), Some(200));
    let mut old = AgentPhone::new(daemon.sip, ANNA.0, ANNA.1);
    assert_eq!(
        old.register(600).status(),
        Some(403),
        "the old password no longer works"
    );
}
