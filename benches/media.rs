//! The per-packet costs of the media path: at thousands of callers per core, each of these runs
//! 50 times a second per call.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use knappval::media::dtmf::{DtmfReceiver, encode_event, parse_event};
use knappval::media::rtp::{self, RtpStream};
use knappval::media::tone::synthesize;
use knappval::media::{Codec, FRAME_SAMPLES, Frame, Prompt, PromptPlayer};

fn g711(c: &mut Criterion) {
    let pcm: [i16; FRAME_SAMPLES] = synthesize(&[(440.0, 9000.0)], FRAME_SAMPLES)
        .try_into()
        .unwrap_or([0; FRAME_SAMPLES]);
    c.bench_function("encode 20 ms frame (µ-law)", |b| {
        b.iter(|| Codec::Pcmu.encode_frame(black_box(&pcm)))
    });
    c.bench_function("encode 20 ms frame (A-law)", |b| {
        b.iter(|| Codec::Pcma.encode_frame(black_box(&pcm)))
    });
    let ulaw = Codec::Pcmu.encode_frame(&pcm);
    c.bench_function("transcode 20 ms frame µ-law to A-law", |b| {
        b.iter(|| {
            let mut frame = black_box(ulaw);
            Codec::Pcmu.transcode_in_place(Codec::Pcma, &mut frame);
            frame
        })
    });
}

fn playout(c: &mut Criterion) {
    let prompt = Arc::new(Prompt::from_samples(
        "menu",
        synthesize(&[(440.0, 9000.0)], 8000 * 10),
    ));
    let mut player = PromptPlayer::new(Codec::Pcma);
    let mut stream = RtpStream::new();
    let silence = [Codec::Pcma.silence_byte(); FRAME_SAMPLES];
    c.bench_function("player next_frame + RTP packet", |b| {
        b.iter(|| {
            if !player.is_playing() {
                player.play(prompt.clone());
            }
            let payload: &[u8] = match player.next_frame() {
                Frame::Prompt { bytes, .. } => bytes,
                Frame::Silence => &silence,
            };
            let packet = stream.frame(8, payload, FRAME_SAMPLES as u32);
            black_box(packet.map(<[u8]>::len).unwrap_or(0))
        })
    });
    let datagram = RtpStream::with_state(1, 2, 3)
        .frame(0, &silence, 160)
        .map(<[u8]>::to_vec)
        .unwrap_or_default();
    c.bench_function("RTP parse", |b| {
        b.iter(|| rtp::parse(black_box(&datagram)).is_ok())
    });
}

fn dtmf(c: &mut Criterion) {
    let payload = encode_event(5, true, 10, 800);
    c.bench_function("telephone-event parse", |b| {
        b.iter(|| parse_event(black_box(&payload)))
    });
    let mut receiver = DtmfReceiver::new();
    let mut timestamp = 0u32;
    c.bench_function("DTMF receiver, one key press of 6 packets", |b| {
        b.iter(|| {
            timestamp = timestamp.wrapping_add(1600);
            let mut digits = 0;
            for _ in 0..6 {
                digits += usize::from(receiver.on_packet(timestamp, black_box(&payload)).is_some());
            }
            digits
        })
    });
}

criterion_group!(benches, g711, playout, dtmf);
criterion_main!(benches);
