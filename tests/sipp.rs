//! SIPp as an independent peer on both sides of the daemon: a SIPp caller dials the shared number and presses 3
//! with RFC 4733 events played from a pcap we generate; a SIPp function phone answers the bridged INVITE and
//! checks knappval's X- headers and the caller's number; a strict SIPp REFER transferee checks the Refer-To URI
//! headers and that no REFER or BYE overtakes our answers. sipp missing is a failure, not a skip.

mod common;

use common::sipp::{Callers, Sipp, free_udp_port, function_phone, render_scenario};
use common::{Daemon, Fixture, MenuSpec, SECOND, assert_record, pcap};
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const CALLER: &str = "0701234567";

#[test]
fn sipp_caller_presses_3_and_sipp_function_answers_the_bridge() {
    caller_presses_3_and_function_answers(false);
}

/// The caller as a PBX trunk in "delayed offer" mode: no SDP in the INVITE, knappval's offer in the 200 (PCMU,
/// PCMA, telephone-event 101), SIPp's answer in the ACK; the digit and the bridge work as with an early offer.
#[test]
fn sipp_caller_with_a_late_offer_presses_3_and_is_bridged() {
    caller_presses_3_and_function_answers(true);
}

fn caller_presses_3_and_function_answers(late_offer: bool) {
    common::sipp::sipp_binary();
    let fixture = Fixture::new();
    let function_port = free_udp_port(LOOPBACK);
    let spec = MenuSpec::new(
        &format!("sip:it@127.0.0.1:{function_port}"),
        "sip:kt@127.0.0.1:9",
    );
    fixture.write_menu(&spec.yaml());
    let dir = fixture.dir.path().to_path_buf();
    // SIPp's UAS scenario takes any new request as a call that must start with INVITE: an OPTIONS probe
    // landing in it would fail the scenario. By default only a target a call found silent is probed, so none
    // comes, however short the interval.
    let daemon = Daemon::start_with(fixture, &["--probe-interval", "1s"]);

    let mut function = function_phone(&dir, function_port, "it", "3", CALLER, 1);
    let digits = dir.join("digit-3.pcap");
    pcap::write_dtmf_pcap(&digits, "3", 101).expect("write the RFC 4733 pcap");
    let mut caller = Callers {
        caller: CALLER,
        pcap: &digits,
        // The greeting (0.6 s) has played and the menu prompt is on when the digit comes.
        digit_delay_ms: 1500,
        hold_ms: 4000,
        calls: 1,
        rate: 1,
        late_offer,
    }
    .spawn(&dir, daemon.sip);

    caller.assert_success(Duration::from_secs(130));
    function.assert_success(Duration::from_secs(130));
    let mut record = None;
    common::wait_until(
        5 * SECOND,
        || {
            record = daemon
                .contacts()
                .into_iter()
                // Finished: the record is there from the call's start, its end follows within a batch.
                .find(|r| {
                    r["from"].as_str().is_some_and(|f| f.starts_with("p:"))
                        && !r["outcome"].is_null()
                });
            record.is_some()
        },
        || {
            format!(
                "no contact record with a pseudonymised caller: {:?}",
                daemon.contacts()
            )
        },
    );
    let record = record.expect("found above");
    assert_record(&record, "transferred", Some("it"), "3", &["root"]);
}

/// SIPp as a strict REFER transferee, ten calls: each presses 9 then 1 by INFO (the submenu's IT, a refer
/// function), and SIPp aborts the call on anything out of order: a REFER before the 200 to the INFO that chose
/// it, a BYE before the 200 to the final NOTIFY. The Refer-To must carry the hand-off as URI headers, each
/// value escaped (the Call-ID holds `{}<>"\` and `@`; the path's comma).
#[test]
fn sipp_strict_refer_transferee_gets_the_hand_off_in_refer_to_and_answers_in_order() {
    common::sipp::sipp_binary();
    const CALLS: usize = 10;
    let fixture = Fixture::new();
    let mut spec = MenuSpec::new("sip:it@127.0.0.1:9", "sip:kt@127.0.0.1:9");
    spec.it_transfer = "refer";
    fixture.write_menu(&spec.yaml());
    let dir = fixture.dir.path().to_path_buf();
    let daemon = Daemon::start_with(fixture, &[]);

    // A regex inside an XML attribute: `&` escaped for XML, `.` and `?` for the regex.
    let refer_to = "sip:it@127\\.0\\.0\\.1:9\\?X-Knappval-Function=it&amp;X-Knappval-Digits=91\
                    &amp;X-Knappval-Path=root%2Cmore\
                    &amp;X-Knappval-Call-ID=k7%7B[0-9]+%7D%3Cx%3E%22y%22%5Cz%40127\\.0\\.0\\.1";
    let scenario = render_scenario(
        "refer_transferee.xml",
        &dir,
        &[("REFER_TO", refer_to.into())],
    );
    let mut caller = Sipp::spawn(
        "transferee",
        &dir,
        &[
            &daemon.sip.to_string(),
            "-sf",
            &scenario.to_string_lossy(),
            "-i",
            "127.0.0.1",
            "-mi",
            "127.0.0.1",
            "-p",
            &free_udp_port(LOOPBACK).to_string(),
            "-mp",
            &free_udp_port(LOOPBACK).to_string(),
            "-cid_str",
            "k7{%u}<x>\"y\"\\z@%s",
            "-m",
            &CALLS.to_string(),
            "-l",
            "3",
            "-timeout",
            "60s",
            "-timeout_error",
        ]
        .map(String::from),
    );
    caller.assert_success(Duration::from_secs(90));

    let mut finished = Vec::new();
    common::wait_until(
        10 * SECOND,
        || {
            finished = daemon
                .contacts()
                .into_iter()
                .filter(|r| !r["outcome"].is_null())
                .collect();
            finished.len() == CALLS
        },
        || format!("{CALLS} finished records: {:?}", daemon.contacts()),
    );
    for record in &finished {
        assert_record(record, "transferred", Some("it"), "91", &["root", "more"]);
        assert!(
            record["call_id"]
                .as_str()
                .is_some_and(|c| c.starts_with("k7{")),
            "{record:#}"
        );
    }
    // Each REFER waited for the report that the 200 to the INFO went out, not for the bound on that wait.
    assert!(
        !daemon
            .log_text()
            .contains("no report that the answer went out"),
        "a REFER was sent on the timeout, not after the 200"
    );
}

/// SIPp as an agent's phone: its own MD5 digest answer to knappval's challenge registers it (200 listing its
/// contact, then `GET /api/v1/agents` shows it); a wrong password gets 403 and registers nothing.
#[test]
fn sipp_agent_registers_with_digest_auth() {
    common::sipp::sipp_binary();
    let fixture = Fixture::new();
    fixture.write_menu(&MenuSpec::new("sip:it@127.0.0.1:9", "sip:kt@127.0.0.1:9").yaml());
    let agents = fixture.path("agents.yaml");
    common::agent::write_agents_file(&agents, "", &[("it-anna", "hemligt"), ("it-bo", "bo-pass")]);
    let dir = fixture.dir.path().to_path_buf();
    let daemon = Daemon::start_with(fixture, &["--agents", agents.to_str().expect("utf-8 path")]);

    let register =
        |name: &str, agent: &str, password: &str, port: u16, final_status: &str, check: String| {
            let scenario = render_scenario(
                "agent_register.xml",
                &dir,
                &[
                    ("AGENT", agent.into()),
                    ("PASSWORD", password.into()),
                    ("FINAL", final_status.into()),
                    ("CONTACT_CHECK", check),
                ],
            );
            let renamed = dir.join(format!("{name}.xml"));
            std::fs::rename(&scenario, &renamed).expect("rename the scenario");
            let mut sipp = Sipp::spawn(
                name,
                &dir,
                &[
                    &daemon.sip.to_string(),
                    "-sf",
                    &renamed.to_string_lossy(),
                    "-i",
                    "127.0.0.1",
                    "-p",
                    &port.to_string(),
                    "-m",
                    "1",
                    "-timeout",
                    "20s",
                    "-timeout_error",
                ]
                .map(String::from),
            );
            sipp.assert_success(Duration::from_secs(30));
        };

    let port = free_udp_port(LOOPBACK);
    let contact = format!("sip:it-anna@127.0.0.1:{port}");
    register(
        "anna",
        "it-anna",
        "hemligt",
        port,
        "200",
        // XML attribute: the angle brackets escaped.
        format!("Contact: &lt;{contact}&gt;;expires=(600|599)"),
    );
    let bo_port = free_udp_port(LOOPBACK);
    register("bo", "it-bo", "fel", bo_port, "403", "SIP/2.0 403".into());

    let (status, body) = daemon.get("/api/v1/agents");
    assert_eq!(status, 200, "{body}");
    let agents: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    let contacts = |id: &str| {
        agents
            .as_array()
            .and_then(|a| a.iter().find(|agent| agent["id"] == id))
            .map(|agent| agent["contacts"].clone())
            .unwrap_or_else(|| panic!("{id} not in {agents}"))
    };
    assert_eq!(contacts("it-anna")[0]["uri"], contact, "{agents}");
    assert_eq!(contacts("it-bo"), serde_json::json!([]), "{agents}");
}
