//! The caller's key presses: RFC 4733 telephone-events, and in-band DTMF tones for callers whose
//! gateway offers no telephone-event.
//!
//! Owns turning packets (or 8 kHz audio) into digits, each key press reported exactly once.
//! Sans-IO: fed payloads, RTP timestamps and samples; no sockets, no clock.

use super::tone::goertzel_amplitude;

/// Digits as RFC 4733 §3.2 numbers them: events 0-15.
const DIGITS: [char; 16] = [
    '0', '1', '2', '3', '4', '5', '6', '7', '8', '9', '*', '#', 'A', 'B', 'C', 'D',
];

/// The digit of a DTMF event number; `None` for the other telephone-events (flash, tones).
pub fn event_digit(event: u8) -> Option<char> {
    DIGITS.get(usize::from(event)).copied()
}

/// The event number of a DTMF digit (`'0'`-`'9'`, `*`, `#`, `A`-`D`, also lowercase).
pub fn digit_event(digit: char) -> Option<u8> {
    let digit = digit.to_ascii_uppercase();
    DIGITS.iter().position(|d| *d == digit).map(|i| i as u8)
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DtmfError {
    #[error("telephone-event payload of {0} bytes, 4 needed")]
    TooShort(usize),
}

/// One RFC 4733 telephone-event payload (§2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TelephoneEvent {
    pub event: u8,
    /// The E bit: this packet (and its retransmissions) ends the event.
    pub end: bool,
    /// Power level in -dBm0, 0-63.
    pub volume: u8,
    /// Duration so far, in RTP timestamp units from the event's start timestamp.
    pub duration: u16,
}

impl TelephoneEvent {
    pub fn digit(&self) -> Option<char> {
        event_digit(self.event)
    }
}

/// Parses the first event of a payload; anything after it (RFC 2198 redundancy is negotiated
/// separately, so only trailing junk) is ignored.
pub fn parse_event(payload: &[u8]) -> Result<TelephoneEvent, DtmfError> {
    let [event, flags, high, low, ..] = *payload else {
        return Err(DtmfError::TooShort(payload.len()));
    };
    Ok(TelephoneEvent {
        event,
        end: flags & 0x80 != 0,
        volume: flags & 0x3F,
        duration: u16::from_be_bytes([high, low]),
    })
}

/// The payload for one telephone-event packet; `volume` is clamped to its 6 bits.
pub fn encode_event(event: u8, end: bool, volume: u8, duration: u16) -> [u8; 4] {
    let [high, low] = duration.to_be_bytes();
    [event, (u8::from(end) << 7) | (volume & 0x3F), high, low]
}

/// How many recent events to remember: enough for late end retransmissions of the previous
/// key press to arrive after the next one began.
const REMEMBERED_EVENTS: usize = 4;

/// Reports each RFC 4733 key press once, as early as possible.
///
/// An event is identified by its RTP timestamp (all its packets carry the start time), so the
/// start packet, the updates, the three redundant end packets and a late retransmission are one
/// key press; if the start packets were lost the first end packet reports it; pressing the same
/// key again starts a new timestamp and is a new key press.
#[derive(Debug, Default)]
pub struct DtmfReceiver {
    recent: [Option<u32>; REMEMBERED_EVENTS],
    next_slot: usize,
}

impl DtmfReceiver {
    pub fn new() -> DtmfReceiver {
        DtmfReceiver::default()
    }

    /// Feeds one telephone-event packet; returns the digit if it starts a new key press.
    /// Malformed payloads and non-DTMF events are ignored (returning `None`).
    pub fn on_packet(&mut self, rtp_timestamp: u32, payload: &[u8]) -> Option<char> {
        let digit = parse_event(payload).ok()?.digit()?;
        if self.recent.contains(&Some(rtp_timestamp)) {
            return None;
        }
        self.recent[self.next_slot] = Some(rtp_timestamp);
        self.next_slot = (self.next_slot + 1) % REMEMBERED_EVENTS;
        Some(digit)
    }
}

/// The DTMF frequency grid (ITU-T Q.23): rows are the low group, columns the high group.
const LOW_GROUP: [f64; 4] = [697.0, 770.0, 852.0, 941.0];
const HIGH_GROUP: [f64; 4] = [1209.0, 1336.0, 1477.0, 1633.0];
const KEYPAD: [[char; 4]; 4] = [
    ['1', '2', '3', 'A'],
    ['4', '5', '6', 'B'],
    ['7', '8', '9', 'C'],
    ['*', '0', '#', 'D'],
];

/// 102 samples (12.75 ms at 8 kHz) resolve the DTMF grid's closest tones (Q.24's common choice,
/// e.g. in spandsp and Asterisk).
const BLOCK: usize = 102;
/// Below roughly -36 dBm0 nothing is a key press (Q.24 operates down to about -26 dBm0 per tone).
const MIN_TONE_AMPLITUDE: f64 = 400.0;
/// Each tone must stand this far (8 dB) above every other tone of its group; over a 12.75 ms
/// block a pure tone leaks up to about a quarter of its level into its neighbour's filter.
const GROUP_DOMINANCE: f64 = 2.5;
/// Twist: the tones' levels may differ by up to 8 dB (Q.24: 6 dB forward, 4 dB reverse, with margin).
const MAX_TWIST: f64 = 2.5;
/// A key press is heard in this many consecutive blocks (≥ 25 ms) before it counts.
const CONFIRM_BLOCKS: u8 = 2;
/// The key counts as released after this many blocks without it (38 ms, under the 40 ms pause
/// between digits that senders must leave), so a single doubtful block inside a held tone does
/// not split it into two digits.
const RELEASE_BLOCKS: u8 = 3;

/// In-band DTMF detection over 8 kHz audio, for callers without telephone-event: Goertzel
/// filters on the eight DTMF tones over 12.75 ms blocks, with level, dominance and twist checks.
#[derive(Debug, Default)]
pub struct InbandDtmfDetector {
    block: Vec<f32>,
    candidate: Option<char>,
    candidate_blocks: u8,
    reported: Option<char>,
    release_blocks: u8,
}

impl InbandDtmfDetector {
    pub fn new() -> InbandDtmfDetector {
        InbandDtmfDetector {
            block: Vec::with_capacity(BLOCK),
            ..InbandDtmfDetector::default()
        }
    }

    /// Feeds decoded audio; returns a digit at most once per key press (if several complete in
    /// one call, the first).
    pub fn feed(&mut self, samples: &[i16]) -> Option<char> {
        let mut detected = None;
        for sample in samples {
            self.block.push(f32::from(*sample));
            if self.block.len() == BLOCK {
                let heard = classify_block(&self.block);
                self.block.clear();
                if let Some(digit) = self.on_block(heard) {
                    detected = detected.or(Some(digit));
                }
            }
        }
        detected
    }

    fn on_block(&mut self, heard: Option<char>) -> Option<char> {
        if heard.is_some() && heard == self.candidate {
            self.candidate_blocks = self.candidate_blocks.saturating_add(1);
        } else {
            self.candidate = heard;
            self.candidate_blocks = 1;
        }
        match heard {
            None => {
                self.release_blocks = self.release_blocks.saturating_add(1);
                if self.release_blocks >= RELEASE_BLOCKS {
                    self.reported = None;
                }
                None
            }
            Some(digit) => {
                self.release_blocks = 0;
                if self.candidate_blocks >= CONFIRM_BLOCKS && self.reported != Some(digit) {
                    self.reported = Some(digit);
                    Some(digit)
                } else {
                    None
                }
            }
        }
    }
}

fn strongest(block: &[f32], group: &[f64; 4]) -> Option<(usize, f64)> {
    let levels = group.map(|frequency| goertzel_amplitude(block, frequency, 8000));
    let (index, level) = levels
        .iter()
        .copied()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(&b.1))?;
    let dominant = levels
        .iter()
        .enumerate()
        .all(|(i, other)| i == index || level >= other * GROUP_DOMINANCE);
    (level >= MIN_TONE_AMPLITUDE && dominant).then_some((index, level))
}

fn classify_block(block: &[f32]) -> Option<char> {
    let (row, low) = strongest(block, &LOW_GROUP)?;
    let (column, high) = strongest(block, &HIGH_GROUP)?;
    if low > high * MAX_TWIST || high > low * MAX_TWIST {
        return None;
    }
    // The two tones must carry most of the block's energy: speech and music spread wider.
    let energy: f64 = block.iter().map(|s| f64::from(*s).powi(2)).sum::<f64>() / block.len() as f64;
    let tones = (low * low + high * high) / 2.0;
    (tones >= energy * 0.6).then_some(KEYPAD[row][column])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::tone::synthesize;

    #[test]
    fn events_map_to_digits_and_back() {
        let all: String = (0..16).filter_map(event_digit).collect();
        assert_eq!(all, "0123456789*#ABCD");
        assert_eq!(event_digit(16), None, "flash is not a digit");
        for (event, digit) in all.chars().enumerate() {
            assert_eq!(digit_event(digit), Some(event as u8));
        }
        assert_eq!(digit_event('b'), Some(13));
        assert_eq!(digit_event('x'), None);
    }

    #[test]
    fn payloads_parse_and_encode() {
        let payload = encode_event(11, true, 10, 1280);
        assert_eq!(payload, [11, 0x8A, 0x05, 0x00]);
        let event = parse_event(&payload).unwrap();
        assert_eq!(
            event,
            TelephoneEvent {
                event: 11,
                end: true,
                volume: 10,
                duration: 1280
            }
        );
        assert_eq!(event.digit(), Some('#'));
        // The reserved R bit is ignored, volume keeps 6 bits.
        assert_eq!(parse_event(&[5, 0x7F, 0, 160]).unwrap().volume, 63);
        assert!(!parse_event(&[5, 0x7F, 0, 160]).unwrap().end);
        assert_eq!(encode_event(1, false, 0xFF, 0)[1], 0x3F);
        assert_eq!(parse_event(&[1, 2, 3]), Err(DtmfError::TooShort(3)));
        assert_eq!(parse_event(&[]), Err(DtmfError::TooShort(0)));
    }

    /// The packets a gateway sends for one key press: start, updates, three end packets.
    fn key_press(digit: char) -> Vec<[u8; 4]> {
        let event = digit_event(digit).unwrap();
        let mut packets: Vec<[u8; 4]> = [160, 320, 480]
            .iter()
            .map(|duration| encode_event(event, false, 10, *duration))
            .collect();
        packets.extend([encode_event(event, true, 10, 640); 3]);
        packets
    }

    #[test]
    fn each_key_press_is_reported_once() {
        let mut receiver = DtmfReceiver::new();
        let heard: Vec<char> = key_press('5')
            .iter()
            .filter_map(|payload| receiver.on_packet(8000, payload))
            .collect();
        assert_eq!(heard, ['5']);
    }

    #[test]
    fn a_lost_start_is_reported_from_the_end_packets() {
        let mut receiver = DtmfReceiver::new();
        let packets = key_press('7');
        let heard: Vec<char> = packets[3..]
            .iter()
            .filter_map(|payload| receiver.on_packet(1600, payload))
            .collect();
        assert_eq!(heard, ['7']);
    }

    #[test]
    fn the_same_key_pressed_twice_is_two_digits() {
        let mut receiver = DtmfReceiver::new();
        let mut heard = Vec::new();
        for start in [16_000u32, 20_000] {
            for payload in key_press('1') {
                heard.extend(receiver.on_packet(start, &payload));
            }
        }
        assert_eq!(heard, ['1', '1']);
    }

    #[test]
    fn late_end_packets_of_the_previous_press_are_not_new_digits() {
        let mut receiver = DtmfReceiver::new();
        let first = key_press('2');
        let second = key_press('3');
        let mut heard = Vec::new();
        heard.extend(receiver.on_packet(u32::MAX - 100, &first[0]));
        heard.extend(receiver.on_packet(200, &second[0]));
        heard.extend(receiver.on_packet(u32::MAX - 100, &first[5]));
        heard.extend(receiver.on_packet(200, &second[5]));
        assert_eq!(heard, ['2', '3']);
    }

    #[test]
    fn malformed_and_non_dtmf_events_are_ignored() {
        let mut receiver = DtmfReceiver::new();
        assert_eq!(receiver.on_packet(0, &[1, 2]), None);
        assert_eq!(
            receiver.on_packet(0, &encode_event(16, false, 10, 160)),
            None
        );
        assert_eq!(
            receiver.on_packet(0, &encode_event(9, false, 10, 160)),
            Some('9'),
            "ignored packets did not use up the timestamp"
        );
    }

    fn dtmf_tone(digit: char, millis: usize, amplitude: f64) -> Vec<i16> {
        let (row, column) = (0..4)
            .flat_map(|r| (0..4).map(move |c| (r, c)))
            .find(|(r, c)| KEYPAD[*r][*c] == digit)
            .unwrap();
        synthesize(
            &[(LOW_GROUP[row], amplitude), (HIGH_GROUP[column], amplitude)],
            millis * 8,
        )
    }

    #[test]
    fn inband_tones_are_detected_once_per_press() {
        let mut detector = InbandDtmfDetector::new();
        let mut heard = Vec::new();
        for digit in "1590*#AD".chars() {
            // 60 ms of tone and 60 ms of pause, fed in 20 ms frames as RTP delivers them.
            let mut audio = dtmf_tone(digit, 60, 4000.0);
            audio.extend(vec![0i16; 480]);
            for frame in audio.chunks(160) {
                heard.extend(detector.feed(frame));
            }
        }
        assert_eq!(heard.iter().collect::<String>(), "1590*#AD");
    }

    #[test]
    fn a_held_key_is_one_digit_and_single_tones_or_noise_are_none() {
        let mut detector = InbandDtmfDetector::new();
        assert_eq!(
            dtmf_tone('8', 1000, 6000.0)
                .chunks(160)
                .filter_map(|frame| detector.feed(frame))
                .count(),
            1
        );
        let mut detector = InbandDtmfDetector::new();
        let dial_tone = synthesize(&[(425.0, 8000.0)], 8000);
        let one_tone = synthesize(&[(770.0, 8000.0)], 8000);
        let mut noise = Vec::with_capacity(8000);
        let mut state = 12345u32;
        for _ in 0..8000 {
            state = state.wrapping_mul(1_103_515_245).wrapping_add(12345);
            noise.push(((state >> 16) as i16) / 4);
        }
        for audio in [dial_tone, one_tone, noise] {
            assert_eq!(detector.feed(&audio), None);
        }
    }
}
