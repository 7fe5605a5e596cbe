//! Bridging two call legs' media (the caller and the support function): audio and
//! telephone-events forwarded both ways, re-encoded between µ-law and A-law when the legs agreed
//! on different laws, and re-packetised on each leg's own stream.
//!
//! Owns only the forwarding rules. Each leg keeps its own SSRC, sequence numbers and symmetric
//! latch (see `session.rs`); timing follows the source, shifted onto the leg's clock. Signalling
//! (who hangs up, re-INVITEs) stays with the call task, which cancels `relay` in its `select!`.
//!
//! A bridge is ended for silence only when both legs are silent: either leg's life (RTP, RTCP, or a SIP
//! request the call task reports) keeps it up, and a leg on hold keeps it up for as long as the hold lasts.
//! A caller whose phone sends nothing while its user listens is normal (silence suppression without
//! comfort noise, one-way trunks); a function that still talks to them is proof the call is wanted.

use std::time::Instant;

use super::codec::Codec;
use super::rtp::MAX_PAYLOAD;
use super::session::{Inbound, MediaSession};

/// Why a relay stopped by itself (otherwise it runs until the call task cancels it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayEnd {
    /// Neither leg has shown life for its media timeout, and neither is on hold.
    BothSilent,
}

impl std::fmt::Display for RelayEnd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RelayEnd::BothSilent => "no media or request from either side",
        })
    }
}

/// Forwards media between the legs until both legs' media times out or the future is dropped.
/// Cancel-safe: packets are handled completely between awaits. Prompts on both legs stop;
/// after the relay, `next_event` resumes each leg's own paced stream.
/// Counters land in each leg's [`MediaStats`](super::session::MediaStats)
/// (`packets_relayed`, `packets_transcoded`).
pub async fn relay(caller: &mut MediaSession, function: &mut MediaSession) -> RelayEnd {
    caller.enter_relay();
    function.enter_relay();
    loop {
        let now = Instant::now();
        if caller.media_timed_out(now) && function.media_timed_out(now) {
            caller.rearm_timeout(now);
            function.rearm_timeout(now);
            return RelayEnd::BothSilent;
        }
        // The later deadline: a leg without one (on hold, no timeout) keeps the bridge up.
        let wake = match (caller.timeout_deadline(), function.timeout_deadline()) {
            (Some(a), Some(b)) => Some(a.max(b)),
            _ => None,
        };
        // Far enough away to never fire when no leg has a timeout.
        let wake = wake.unwrap_or_else(|| now + std::time::Duration::from_secs(3600));
        tokio::select! {
            received = caller.receive() => {
                if let Ok((length, source)) = received {
                    forward(caller, function, length, source);
                }
            }
            received = function.receive() => {
                if let Ok((length, source)) = received {
                    forward(function, caller, length, source);
                }
            }
            () = tokio::time::sleep_until(tokio::time::Instant::from_std(wake)) => {}
        }
    }
}

fn forward(
    from: &mut MediaSession,
    to: &mut MediaSession,
    length: usize,
    source: std::net::SocketAddr,
) {
    let inbound = from.accept(length, source, Instant::now());
    let Some((to_codec, to_event)) = to.relay_target() else {
        return;
    };
    match inbound {
        Inbound::Audio {
            codec,
            marker,
            timestamp,
            ssrc,
            payload,
        } => {
            let bytes = from.received(payload);
            // G.711: one byte per sample.
            let samples = bytes.len() as u32;
            let transcoded = codec != to_codec;
            let sent = if transcoded {
                let mut buffer = [0u8; MAX_PAYLOAD];
                let converted = &mut buffer[..bytes.len().min(MAX_PAYLOAD)];
                converted.copy_from_slice(&bytes[..converted.len()]);
                codec.transcode_in_place(to_codec, converted);
                to.send_relayed(
                    to_codec.payload_type(),
                    marker,
                    ssrc,
                    timestamp,
                    converted,
                    samples,
                )
            } else {
                to.send_relayed(
                    to_codec.payload_type(),
                    marker,
                    ssrc,
                    timestamp,
                    bytes,
                    samples,
                )
            };
            if sent {
                from.count_relayed(transcoded);
            }
        }
        Inbound::Event {
            marker,
            timestamp,
            ssrc,
            payload,
        } => {
            // Without telephone-event on the other leg the key press is not carried over;
            // regenerating it as tones is for when a function needs it.
            let Some(to_event) = to_event else {
                return;
            };
            let bytes = from.received(payload);
            if to.send_relayed(to_event, marker, ssrc, timestamp, bytes, 0) {
                from.count_relayed(false);
            }
        }
        Inbound::Nothing => {}
    }
}

/// The audio a relayed G.711 payload carries, for checks and diagnostics.
pub fn decode_payload(codec: Codec, payload: &[u8]) -> Vec<i16> {
    let mut samples = vec![0; payload.len()];
    codec.decode(payload, &mut samples);
    samples
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::codec::FRAME_SAMPLES;
    use crate::media::dtmf::encode_event;
    use crate::media::rtp::{self, RtpStream};
    use crate::media::session::tests::{LOCALHOST, drain, peer_socket, test_ports};
    use crate::media::tone::synthesize;
    use std::time::Duration;

    #[tokio::test]
    async fn audio_is_transcoded_both_ways_on_each_legs_own_stream() {
        let ports = test_ports();
        let mut caller_leg = MediaSession::open(LOCALHOST, &ports).await.unwrap();
        let mut function_leg = MediaSession::open(LOCALHOST, &ports).await.unwrap();
        let caller = peer_socket().await;
        let function = peer_socket().await;
        let now = Instant::now();
        caller_leg.start(caller.local_addr().unwrap(), Codec::Pcmu, Some(101), now);
        function_leg.start(function.local_addr().unwrap(), Codec::Pcma, Some(96), now);
        let (to_caller_leg, to_function_leg) = (caller_leg.local_addr(), function_leg.local_addr());

        let speech = synthesize(&[(300.0, 7000.0), (1100.0, 3000.0)], 5 * FRAME_SAMPLES);
        let answer = synthesize(&[(700.0, 5000.0)], 5 * FRAME_SAMPLES);
        let peers = async {
            let mut caller_stream = RtpStream::with_state(0xC0FFEE, 40, 1_000);
            let mut function_stream = RtpStream::with_state(0xF00D, 7, 90_000);
            for (speech, answer) in speech
                .chunks(FRAME_SAMPLES)
                .zip(answer.chunks(FRAME_SAMPLES))
            {
                let mut bytes = [0u8; FRAME_SAMPLES];
                Codec::Pcmu.encode(speech, &mut bytes);
                let packet = caller_stream.frame(0, &bytes, 160).unwrap();
                caller.send_to(packet, to_caller_leg).await.unwrap();
                Codec::Pcma.encode(answer, &mut bytes);
                let packet = function_stream.frame(8, &bytes, 160).unwrap();
                function.send_to(packet, to_function_leg).await.unwrap();
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            // The caller presses 4 during the bridge.
            for end in [false, true, true, true] {
                let payload = encode_event(4, end, 10, 400);
                let packet = caller_stream
                    .forward(101, !end, 1_800, &payload, 0)
                    .unwrap();
                caller.send_to(packet, to_caller_leg).await.unwrap();
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        tokio::select! {
            end = relay(&mut caller_leg, &mut function_leg) => panic!("relay ended: {end:?}"),
            () = peers => {}
        }

        // The function hears the caller in A-law, on the function leg's own stream.
        let heard = drain(&function).await;
        let parsed: Vec<_> = heard.iter().map(|p| rtp::parse(p).unwrap()).collect();
        let audio: Vec<_> = parsed.iter().filter(|p| p.payload_type == 8).collect();
        assert_eq!(audio.len(), 5);
        let mut decoded = Vec::new();
        for (index, packet) in audio.iter().enumerate() {
            assert_ne!(packet.ssrc, 0xC0FFEE);
            assert_eq!(packet.ssrc, audio[0].ssrc);
            assert_eq!(
                packet.sequence,
                audio[0].sequence.wrapping_add(index as u16)
            );
            assert_eq!(
                packet.timestamp,
                audio[0].timestamp.wrapping_add(160 * index as u32)
            );
            assert_eq!(packet.marker, index == 0);
            decoded.extend(decode_payload(Codec::Pcma, packet.payload));
        }
        for (got, sent) in decoded.iter().zip(&speech) {
            let error = (i32::from(*got) - i32::from(*sent)).abs();
            // µ-law then A-law quantisation: a few percent of the level, at most.
            assert!(
                error <= i32::from(sent.unsigned_abs()) / 16 + 40,
                "{sent} became {got}"
            );
        }
        // The key press follows on the function's telephone-event type, one timestamp for
        // all its packets, in step with the audio clock (600 samples after the first frame).
        let events: Vec<_> = parsed.iter().filter(|p| p.payload_type == 96).collect();
        assert_eq!(events.len(), 4);
        assert!(
            events
                .iter()
                .all(|e| e.timestamp == audio[0].timestamp.wrapping_add(800))
        );
        assert_eq!(events[0].payload, &encode_event(4, false, 10, 400));

        // The caller hears the function in µ-law.
        let heard = drain(&caller).await;
        let audio: Vec<_> = heard
            .iter()
            .map(|p| rtp::parse(p).unwrap())
            .filter(|p| p.payload_type == 0)
            .collect();
        assert_eq!(audio.len(), 5);
        let decoded: Vec<i16> = audio
            .iter()
            .flat_map(|p| decode_payload(Codec::Pcmu, p.payload))
            .collect();
        for (got, sent) in decoded.iter().zip(&answer) {
            let error = (i32::from(*got) - i32::from(*sent)).abs();
            assert!(
                error <= i32::from(sent.unsigned_abs()) / 16 + 40,
                "{sent} became {got}"
            );
        }

        let caller_stats = caller_leg.stats();
        assert_eq!(
            (
                caller_stats.packets_relayed,
                caller_stats.packets_transcoded
            ),
            (9, 5)
        );
        assert_eq!(function_leg.stats().packets_relayed, 5);
    }

    #[tokio::test]
    async fn one_talking_leg_keeps_the_relay_up_for_a_silent_one() {
        let ports = test_ports();
        let mut caller_leg = MediaSession::open(LOCALHOST, &ports).await.unwrap();
        let mut function_leg = MediaSession::open(LOCALHOST, &ports).await.unwrap();
        let caller = peer_socket().await;
        let function = peer_socket().await;
        let now = Instant::now();
        caller_leg.start(caller.local_addr().unwrap(), Codec::Pcmu, None, now);
        function_leg.start(function.local_addr().unwrap(), Codec::Pcmu, None, now);
        caller_leg.set_media_timeout(Duration::from_millis(300));
        function_leg.set_media_timeout(Duration::from_millis(300));
        let to_function_leg = function_leg.local_addr();

        // The function talks for five caller timeouts; the caller never sends a packet.
        let talking = async {
            let mut stream = RtpStream::with_state(9, 0, 0);
            for _ in 0..75 {
                let packet = stream.frame(0, &[0xFF; 160], 160).unwrap().to_vec();
                function.send_to(&packet, to_function_leg).await.unwrap();
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        tokio::select! {
            end = relay(&mut caller_leg, &mut function_leg) => panic!("relay ended: {end:?}"),
            () = talking => {}
        }
        // Now both are silent.
        let end = tokio::time::timeout(
            Duration::from_secs(5),
            relay(&mut caller_leg, &mut function_leg),
        )
        .await
        .expect("two silent legs end the relay");
        assert_eq!(end, RelayEnd::BothSilent);
    }

    #[tokio::test]
    async fn same_codec_passes_through_and_only_two_silent_legs_end_the_relay() {
        let ports = test_ports();
        let mut caller_leg = MediaSession::open(LOCALHOST, &ports).await.unwrap();
        let mut function_leg = MediaSession::open(LOCALHOST, &ports).await.unwrap();
        let caller = peer_socket().await;
        let function = peer_socket().await;
        let now = Instant::now();
        caller_leg.start(caller.local_addr().unwrap(), Codec::Pcma, None, now);
        function_leg.start(function.local_addr().unwrap(), Codec::Pcma, None, now);
        function_leg.set_media_timeout(Duration::from_millis(200));
        caller_leg.set_media_timeout(Duration::from_millis(200));

        let frame: Vec<u8> = (0..160).map(|i| (i * 3) as u8).collect();
        let mut stream = RtpStream::with_state(1, 0, 0);
        let packet = stream.frame(8, &frame, 160).unwrap().to_vec();
        caller
            .send_to(&packet, caller_leg.local_addr())
            .await
            .unwrap();

        let end = tokio::time::timeout(
            Duration::from_secs(2),
            relay(&mut caller_leg, &mut function_leg),
        )
        .await
        .expect("both legs' timeouts end the relay");
        assert_eq!(end, RelayEnd::BothSilent);
        let heard = drain(&function).await;
        assert_eq!(heard.len(), 1);
        assert_eq!(
            rtp::parse(&heard[0]).unwrap().payload,
            &frame[..],
            "bit-exact, no re-encoding"
        );
        assert_eq!(caller_leg.stats().packets_transcoded, 0);

        // After the relay the caller's leg plays its own stream again.
        drain(&caller).await;
        let _ = tokio::time::timeout(Duration::from_millis(60), caller_leg.next_event()).await;
        let resumed = drain(&caller).await;
        assert!(!resumed.is_empty());
        assert!(rtp::parse(&resumed[0]).unwrap().marker);
    }
}
