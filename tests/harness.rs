//! Checks of the test support itself, independent of the daemon: our G.711, tone detector, SIP and SDP parsers
//! against reference values, and our SIP/RTP peers, pcap and SIPp scenarios against SIPp as the far end. If one
//! of these fails, the daemon tests' verdicts cannot be trusted.

mod common;

use common::audio::{self, Segment};
use common::sipp::{Callers, Sipp, free_udp_port, render_scenario};
use common::{FunctionEndpoint, RtpPeer, SECOND, SipPeer, Sound, pcap, sdp, sipmsg};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

const LOOPBACK: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

#[test]
fn g711_matches_reference_values() {
    // Values from ITU-T G.711 tables as the Sun reference implementation computes them.
    assert_eq!(audio::ulaw_encode(0), 0xFF);
    assert_eq!(audio::ulaw_decode(0xFF), 0);
    assert_eq!(audio::ulaw_decode(0x80), 32124);
    assert_eq!(audio::ulaw_decode(0x00), -32124);
    assert_eq!(audio::ulaw_encode(i16::MAX), 0x80);
    assert_eq!(audio::ulaw_encode(i16::MIN), 0x00);
    assert_eq!(audio::alaw_encode(0), 0xD5);
    assert_eq!(audio::alaw_decode(0xD5), 8);
    assert_eq!(audio::alaw_decode(0x55), -8);
    assert_eq!(audio::alaw_decode(0xAA), 32256);
    assert_eq!(audio::alaw_decode(0x2A), -32256);
    assert_eq!(audio::alaw_encode(i16::MAX), 0xAA);
    for byte in 0..=255u8 {
        assert_eq!(
            audio::ulaw_encode(audio::ulaw_decode(byte)),
            if byte == 0x7F { 0xFF } else { byte },
            "µ-law {byte:#04x}"
        );
        assert_eq!(
            audio::alaw_encode(audio::alaw_decode(byte)),
            byte,
            "A-law {byte:#04x}"
        );
    }
    for sample in (i16::MIN..=i16::MAX).step_by(7) {
        let tolerance = (f64::from(sample).abs() / 16.0).max(40.0);
        let mu = f64::from(audio::ulaw_decode(audio::ulaw_encode(sample)));
        let a = f64::from(audio::alaw_decode(audio::alaw_encode(sample)));
        assert!(
            (mu - f64::from(sample)).abs() <= tolerance,
            "µ-law {sample} -> {mu}"
        );
        assert!(
            (a - f64::from(sample)).abs() <= tolerance,
            "A-law {sample} -> {a}"
        );
    }
}

#[test]
fn tone_detector_tells_the_test_tones_apart_through_g711() {
    for pt in [sdp::PCMU, sdp::PCMA] {
        for tone in audio::ALL_TONES {
            let samples = audio::sine(f64::from(tone), 12000.0, 321, audio::FRAME, audio::RATE);
            let decoded = audio::decode(pt, &audio::encode(pt, &samples)).expect("G.711 payload");
            assert_eq!(
                audio::dominant(&decoded, &audio::ALL_TONES),
                Some(tone),
                "{tone} Hz in PT {pt}"
            );
        }
    }
    assert_eq!(
        audio::dominant(&[0; audio::FRAME], &audio::ALL_TONES),
        None,
        "silence"
    );
    let dtmf_3: Vec<i16> = audio::sine(697.0, 8000.0, 0, audio::FRAME, audio::RATE)
        .iter()
        .zip(audio::sine(1477.0, 8000.0, 0, audio::FRAME, audio::RATE))
        .map(|(a, b)| a + b)
        .collect();
    assert_eq!(
        audio::dominant(&dtmf_3, &audio::ALL_TONES),
        None,
        "a two-tone DTMF digit is none of ours"
    );
    let noise: Vec<i16> = (0..audio::FRAME)
        .map(|_| rand::random::<i16>() / 4)
        .collect();
    assert_eq!(
        audio::dominant(&noise, &audio::ALL_TONES),
        None,
        "white noise"
    );
}

#[test]
fn segments_bridge_short_glitches_only() {
    let mut frames = vec![Some(440); 10];
    frames.push(None);
    frames.extend(vec![Some(440); 5]);
    frames.extend(vec![None; 3]);
    frames.extend(vec![Some(1000); 4]);
    let segments = audio::segments(&frames);
    assert_eq!(
        segments,
        vec![
            Segment {
                tone: Some(440),
                frames: 16
            },
            Segment {
                tone: None,
                frames: 3
            },
            Segment {
                tone: Some(1000),
                frames: 4
            }
        ]
    );
    assert_eq!(audio::find_run(&segments, 1000, 4, 0), Some(2));
    assert_eq!(audio::longest(&segments, 440), 16);
}

#[test]
fn sip_parser_reads_compact_folded_and_framed_messages() {
    let raw = b"\r\nSIP/2.0 200 OK\r\nv: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKx;rport=1, SIP/2.0/UDP 10.0.0.1\r\n\
f: \"A\" <sip:a@b>;tag=1\r\nt: <sip:c@d>\r\n ;tag=2\r\ni: abc\r\nCSeq: 7 invite\r\nm: <sip:k@127.0.0.1:5080>\r\nl: 3\r\n\r\nv=0";
    let (msg, used) = sipmsg::parse(raw).expect("a valid message");
    assert_eq!(used, raw.len());
    assert_eq!(msg.status(), Some(200));
    assert_eq!(msg.via_branch().as_deref(), Some("z9hG4bKx"));
    assert_eq!(msg.tag_in_from().as_deref(), Some("1"));
    assert_eq!(msg.tag_in_to().as_deref(), Some("2"));
    assert_eq!(msg.call_id(), Some("abc"));
    assert_eq!(msg.cseq(), Some((7, "INVITE".into())));
    assert_eq!(msg.contact_uri().as_deref(), Some("sip:k@127.0.0.1:5080"));
    assert_eq!(msg.body, b"v=0");
    assert_eq!(
        sipmsg::parse(&raw[..raw.len() - 1]).err(),
        Some(sipmsg::ParseError::Incomplete)
    );
    let two = [&raw[2..], &raw[2..]].concat();
    let (_, first) = sipmsg::parse(&two).expect("first of two on a stream");
    assert!(
        sipmsg::parse(&two[first..]).is_ok(),
        "second of two on a stream"
    );
    assert!(matches!(
        sipmsg::parse(b"HELLO\r\n\r\n"),
        Err(sipmsg::ParseError::Malformed(_))
    ));
    assert_eq!(
        sipmsg::user_of("tel:+46701234567;phone-context=x").as_deref(),
        Some("+46701234567")
    );
    assert_eq!(
        sipmsg::user_of("sip:0701234567@[::1]:5060").as_deref(),
        Some("0701234567")
    );
}

#[test]
fn sdp_round_trips_v4_and_v6() {
    for addr in ["127.0.0.1:40000", "[::1]:40002"] {
        let addr: SocketAddr = addr.parse().expect("address");
        let text = sdp::build(addr, &[sdp::PCMA, sdp::PCMU], Some(96), "sendonly");
        let info = sdp::parse(&text).expect("our own SDP");
        assert_eq!(info.media_addr(), addr);
        assert_eq!(info.payloads, vec![8, 0, 96]);
        assert_eq!(info.telephone_event, Some(96));
        assert_eq!(info.direction.as_deref(), Some("sendonly"));
        assert_eq!(info.first_codec(), Some(sdp::PCMA));
    }
    assert!(
        sdp::parse("v=0\r\nc=IN IP4 127.0.0.1\r\n").is_none(),
        "no m=audio"
    );
}

#[test]
fn rtp_peers_exchange_tones_and_rfc4733_digits() {
    let a = RtpPeer::loopback();
    let b = RtpPeer::loopback();
    a.set_remote(b.local);
    b.set_remote(a.local);
    let start = Instant::now();
    a.play(Sound::Tone {
        freq: audio::MENU_HZ,
        pt: sdp::PCMA,
    });
    b.play(Sound::Tone {
        freq: audio::CALLER_HZ,
        pt: sdp::PCMU,
    });
    b.wait_tone(audio::MENU_HZ, 10, start, 5 * SECOND);
    a.wait_tone(audio::CALLER_HZ, 10, start, 5 * SECOND);
    a.send_digit('3', 101, Duration::from_millis(100));
    a.send_digit('#', 101, Duration::from_millis(100));
    let deadline = Instant::now() + 5 * SECOND;
    while b.received_digits(101) != "3#" && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(b.received_digits(101), "3#");
    let events: Vec<_> = b.packets().into_iter().filter(|p| p.pt == 101).collect();
    let first_digit: Vec<_> = events.iter().filter(|p| p.payload[0] == 3).collect();
    assert!(
        first_digit[0].marker,
        "the first event packet has the marker bit"
    );
    assert!(
        first_digit.iter().all(|p| p.ts == first_digit[0].ts),
        "one timestamp per event"
    );
    assert_eq!(
        first_digit
            .iter()
            .filter(|p| p.payload[1] & 0x80 != 0)
            .count(),
        3,
        "end sent three times"
    );
    assert!(
        b.packets()
            .windows(2)
            .all(|w| w[1].seq == w[0].seq.wrapping_add(1) || w[1].ssrc != w[0].ssrc),
        "sequence numbers run on across audio and events"
    );
}

fn scratch() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("knappval-harness-")
        .tempdir()
        .expect("temp dir")
}

#[test]
fn sip_caller_completes_a_call_with_sipp_uas_over_udp_and_tcp() {
    for transport in ["u1", "t1"] {
        let dir = scratch();
        let port = free_udp_port(LOOPBACK);
        let mut uas = Sipp::spawn(
            &format!("uas-{transport}"),
            dir.path(),
            &[
                "-sn",
                "uas",
                "-i",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "-t",
                transport,
                "-m",
                "1",
                "-timeout",
                "30s",
                "-timeout_error",
            ]
            .map(String::from),
        );
        let sipp_addr = SocketAddr::new(LOOPBACK, port);
        let rtp = RtpPeer::loopback();
        let offer = sdp::build(rtp.local, &[sdp::PCMU], Some(101), "sendrecv");
        let peer = if transport == "u1" {
            std::thread::sleep(Duration::from_millis(300));
            SipPeer::udp("127.0.0.1:0".parse().expect("addr"), Some(sipp_addr)).expect("udp peer")
        } else {
            let deadline = Instant::now() + 10 * SECOND;
            loop {
                match SipPeer::tcp(sipp_addr) {
                    Ok(peer) => break peer,
                    Err(e) if Instant::now() < deadline => {
                        let _ = e;
                        std::thread::sleep(Duration::from_millis(100));
                    }
                    Err(e) => panic!("connect to sipp over TCP: {e}; {}", uas.logs()),
                }
            }
        };
        let mut call = peer.invite(
            &format!("sip:service@{sipp_addr}"),
            &format!("sip:0701234567@{}", peer.local()),
            Some(&offer),
            &[],
        );
        let response = call.start(10 * SECOND);
        assert_eq!(
            response.status(),
            Some(200),
            "{transport}: {}; {}",
            response.summary(),
            uas.logs()
        );
        assert!(call.remote_tag.is_some(), "200 OK has a To tag");
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(call.bye().status(), Some(200));
        uas.assert_success(20 * SECOND);
    }
}

#[test]
fn function_endpoint_answers_sipp_uac() {
    let dir = scratch();
    let function = FunctionEndpoint::new(&[sdp::PCMU, sdp::PCMA]);
    let mut uac = Sipp::spawn(
        "uac",
        dir.path(),
        &[
            &function.sip.local().to_string(),
            "-sn",
            "uac",
            "-i",
            "127.0.0.1",
            "-p",
            &free_udp_port(LOOPBACK).to_string(),
            "-m",
            "1",
            "-d",
            "500",
            "-timeout",
            "30s",
            "-timeout_error",
        ]
        .map(String::from),
    );
    let mut incoming = function.expect_call(10 * SECOND);
    assert!(incoming.offer().is_some(), "sipp's INVITE has SDP");
    let pt = function.answer(&mut incoming, audio::FUNCTION_HZ);
    assert_eq!(pt, sdp::PCMU);
    incoming.call.expect_bye(10 * SECOND);
    uac.assert_success(20 * SECOND);
}

/// Plays the daemon's part against our function scenario: with the right headers sipp succeeds, with a wrong
/// X-Knappval-Function it must fail (so the daemon test's check_it can fail).
#[test]
fn function_scenario_checks_the_knappval_headers() {
    for (function_header, expect_success) in [("it", true), ("hr", false)] {
        let dir = scratch();
        let port = free_udp_port(LOOPBACK);
        let scenario = render_scenario(
            "function_uas.xml",
            dir.path(),
            &[
                ("FUNCTION", "it".into()),
                ("DIGITS", "3".into()),
                ("CALLER", "0701234567".into()),
                ("BYE_TIMEOUT_MS", "10000".into()),
            ],
        );
        let mut uas = Sipp::spawn(
            "function",
            dir.path(),
            &[
                "-sf",
                &scenario.to_string_lossy(),
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
        std::thread::sleep(Duration::from_millis(300));
        let sipp_addr = SocketAddr::new(LOOPBACK, port);
        let peer =
            SipPeer::udp("127.0.0.1:0".parse().expect("addr"), Some(sipp_addr)).expect("udp peer");
        let rtp = RtpPeer::loopback();
        let offer = sdp::build(rtp.local, &[sdp::PCMU], Some(101), "sendrecv");
        let headers = [
            format!("X-Knappval-Function: {function_header}"),
            "X-Knappval-Digits: 3".into(),
            "X-Knappval-Path: root".into(),
        ];
        let mut call = peer.invite(
            &format!("sip:it@{sipp_addr}"),
            &format!("sip:0701234567@{}", peer.local()),
            Some(&offer),
            &headers,
        );
        let response = call.start(10 * SECOND);
        if expect_success {
            assert_eq!(response.status(), Some(200), "{}", uas.logs());
            assert_eq!(call.bye().status(), Some(200));
            uas.assert_success(20 * SECOND);
        } else {
            // A failed check_it aborts the call; sipp sends BYE (or nothing) and exits non-zero.
            let status = uas.wait(30 * SECOND);
            assert!(
                !status.success(),
                "sipp accepted X-Knappval-Function: {function_header}"
            );
        }
    }
}

/// Plays the daemon's part against our caller scenario: the digits from our pcap must arrive as RFC 4733 events.
#[test]
fn caller_scenario_plays_our_pcap_digits() {
    let dir = scratch();
    let daemon_side = SipPeer::udp("127.0.0.1:0".parse().expect("addr"), None).expect("udp peer");
    let media = RtpPeer::loopback();
    let pcap_path = dir.path().join("digits.pcap");
    pcap::write_dtmf_pcap(&pcap_path, "39#", 101).expect("write the pcap");
    let mut uac = Callers {
        caller: "0701234567",
        pcap: &pcap_path,
        digit_delay_ms: 200,
        hold_ms: 1500,
        calls: 1,
        rate: 1,
        late_offer: false,
    }
    .spawn(dir.path(), daemon_side.local());
    let invite = daemon_side.expect_request("INVITE", None, 10 * SECOND);
    if let common::sip::Origin::Udp(from) = invite.origin {
        daemon_side.set_remote(from);
    }
    assert!(
        invite
            .msg
            .header("from")
            .is_some_and(|f| f.contains("0701234567"))
    );
    let mut incoming = daemon_side.incoming(invite);
    let offer = incoming.offer().expect("the scenario's SDP");
    assert_eq!(offer.telephone_event, Some(101));
    let answer = sdp::build(media.local, &[sdp::PCMU], Some(101), "sendrecv");
    incoming.answer(&answer, 10 * SECOND);
    incoming.call.expect_bye(15 * SECOND);
    uac.assert_success(20 * SECOND);
    assert_eq!(
        media.received_digits(101),
        "39#",
        "digits from the pcap; {}",
        uac.logs()
    );
}
