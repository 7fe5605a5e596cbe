//! The per-call costs of signalling and the menu: every UDP datagram passes the guard (a full parse before the
//! stack parses it again), every call's offer is answered once, and every digit goes through the flow.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use criterion::{Criterion, criterion_group, criterion_main};
use knappval::flow::{Event, Flow, WallClock};
use knappval::sip::guard::inspect;
use knappval::sip::sdp::{LocalMedia, answer};

const INVITE: &str = "INVITE sip:0191000@127.0.0.1:5060 SIP/2.0\r\n\
    Via: SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bK776asdhds;rport\r\n\
    Max-Forwards: 70\r\n\
    To: <sip:0191000@127.0.0.1>\r\n\
    From: \"Anna Svensson\" <sip:+4619123456@127.0.0.1;user=phone>;tag=1928301774\r\n\
    Call-ID: a84b4c76e66710@127.0.0.1\r\n\
    CSeq: 314159 INVITE\r\n\
    Contact: <sip:+4619123456@127.0.0.1:5062>\r\n\
    Allow: INVITE, ACK, CANCEL, OPTIONS, BYE, REFER, NOTIFY, INFO\r\n\
    Content-Type: application/sdp\r\n\
    Content-Length: 220\r\n\r\n";

const OFFER: &str = "v=0\r\no=trunk 1234 1234 IN IP4 127.0.0.1\r\ns=call\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
    m=audio 40000 RTP/AVP 8 0 101\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:0 PCMU/8000\r\n\
    a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=ptime:20\r\na=sendrecv\r\n";

fn guard(c: &mut Criterion) {
    let datagram = format!("{INVITE}{OFFER}");
    c.bench_function("guard: inspect an INVITE with SDP", |b| {
        b.iter(|| inspect(black_box(datagram.as_bytes())))
    });
    let garbage: Vec<u8> = (0..1400u32).map(|i| (i * 7 + 3) as u8).collect();
    c.bench_function("guard: drop 1400 bytes of garbage", |b| {
        b.iter(|| inspect(black_box(&garbage)))
    });
}

fn offer_answer(c: &mut Criterion) {
    let local = LocalMedia {
        ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
        rtp_port: 10_000,
        session_id: 42,
        session_version: 1,
    };
    c.bench_function("sdp: answer a trunk's offer", |b| {
        b.iter(|| answer(black_box(OFFER.as_bytes()), &local))
    });
}

fn menu_flow(c: &mut Criterion) {
    let probe = |_: &Path| Ok(());
    let Ok(menu) = knappval::menu::load(
        Path::new("menus/kommunsupport.yaml"),
        Path::new("prompts"),
        &probe,
    ) else {
        panic!("the shipped menu loads");
    };
    let menu = Arc::new(menu);
    c.bench_function("flow: answer, greeting, submenu, choice", |b| {
        b.iter(|| {
            let now = Instant::now();
            let mut flow = Flow::new(
                menu.clone(),
                WallClock::new(jiff::Timestamp::now(), Instant::now()),
            );
            flow.on(Event::Answered, now);
            flow.on(Event::Digit('6'), now);
            flow.on(Event::Digit('1'), now);
            black_box(flow.journey().digits.len())
        })
    });
}

criterion_group!(benches, guard, offer_answer, menu_flow);
criterion_main!(benches);
