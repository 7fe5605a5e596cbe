//! The audio codecs knappval speaks: G.711 µ-law (PCMU) and A-law (PCMA), 8 kHz, 20 ms frames.

use super::g711;

/// Samples per 20 ms frame at 8 kHz, and bytes per G.711 frame.
pub const FRAME_SAMPLES: usize = 160;
/// RTP clock rate of G.711 and of telephone-event as we negotiate it.
pub const CLOCK_RATE: u32 = 8000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Codec {
    /// G.711 µ-law, static RTP payload type 0.
    Pcmu,
    /// G.711 A-law, static RTP payload type 8.
    Pcma,
}

/// As SDP writes it, `PCMU` or `PCMA`: what an operator reads in logs.
impl std::fmt::Display for Codec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl Codec {
    pub fn payload_type(self) -> u8 {
        match self {
            Codec::Pcmu => 0,
            Codec::Pcma => 8,
        }
    }

    pub fn from_payload_type(pt: u8) -> Option<Codec> {
        match pt {
            0 => Some(Codec::Pcmu),
            8 => Some(Codec::Pcma),
            _ => None,
        }
    }

    /// The encoding name as SDP's rtpmap writes it.
    pub fn name(self) -> &'static str {
        match self {
            Codec::Pcmu => "PCMU",
            Codec::Pcma => "PCMA",
        }
    }

    /// Matches an rtpmap encoding name, case-insensitively as RFC 4566 asks.
    pub fn from_name(name: &str) -> Option<Codec> {
        if name.eq_ignore_ascii_case("PCMU") {
            Some(Codec::Pcmu)
        } else if name.eq_ignore_ascii_case("PCMA") {
            Some(Codec::Pcma)
        } else {
            None
        }
    }

    /// The byte a frame of digital silence is made of.
    pub fn silence_byte(self) -> u8 {
        match self {
            Codec::Pcmu => g711::ULAW_SILENCE,
            Codec::Pcma => g711::ALAW_SILENCE,
        }
    }

    pub fn encode_sample(self, pcm: i16) -> u8 {
        match self {
            Codec::Pcmu => g711::linear_to_ulaw(pcm),
            Codec::Pcma => g711::linear_to_alaw(pcm),
        }
    }

    pub fn decode_sample(self, code: u8) -> i16 {
        match self {
            Codec::Pcmu => g711::ulaw_to_linear(code),
            Codec::Pcma => g711::alaw_to_linear(code),
        }
    }

    /// Encodes `pcm` into `out`, sample for byte, over the shorter of the two.
    pub fn encode(self, pcm: &[i16], out: &mut [u8]) {
        for (byte, sample) in out.iter_mut().zip(pcm) {
            *byte = self.encode_sample(*sample);
        }
    }

    /// Decodes `bytes` into `out`, byte for sample, over the shorter of the two.
    pub fn decode(self, bytes: &[u8], out: &mut [i16]) {
        for (sample, byte) in out.iter_mut().zip(bytes) {
            *sample = self.decode_sample(*byte);
        }
    }

    pub fn encode_frame(self, pcm: &[i16; FRAME_SAMPLES]) -> [u8; FRAME_SAMPLES] {
        let mut frame = [0u8; FRAME_SAMPLES];
        self.encode(pcm, &mut frame);
        frame
    }

    pub fn decode_frame(self, frame: &[u8; FRAME_SAMPLES]) -> [i16; FRAME_SAMPLES] {
        let mut pcm = [0i16; FRAME_SAMPLES];
        self.decode(frame, &mut pcm);
        pcm
    }

    /// Rewrites G.711 bytes encoded with `self` in place into `to`'s law.
    pub fn transcode_in_place(self, to: Codec, bytes: &mut [u8]) {
        match (self, to) {
            (Codec::Pcmu, Codec::Pcma) => {
                bytes.iter_mut().for_each(|b| *b = g711::ulaw_to_alaw(*b))
            }
            (Codec::Pcma, Codec::Pcmu) => {
                bytes.iter_mut().for_each(|b| *b = g711::alaw_to_ulaw(*b))
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_types_and_names_round_trip() {
        for codec in [Codec::Pcmu, Codec::Pcma] {
            assert_eq!(Codec::from_payload_type(codec.payload_type()), Some(codec));
            assert_eq!(Codec::from_name(&codec.name().to_lowercase()), Some(codec));
        }
        assert_eq!(Codec::from_payload_type(101), None);
    }

    #[test]
    fn silence_decodes_to_near_zero() {
        for codec in [Codec::Pcmu, Codec::Pcma] {
            assert!(codec.decode_sample(codec.silence_byte()).abs() <= 8);
            assert_eq!(codec.encode_sample(0), codec.silence_byte());
        }
    }

    #[test]
    fn frames_round_trip_within_quantisation() {
        let pcm: [i16; FRAME_SAMPLES] =
            std::array::from_fn(|i| ((i as f64 * 0.3).sin() * 12000.0) as i16);
        for codec in [Codec::Pcmu, Codec::Pcma] {
            let back = codec.decode_frame(&codec.encode_frame(&pcm));
            for (a, b) in pcm.iter().zip(back.iter()) {
                assert!(
                    (i32::from(*a) - i32::from(*b)).abs() <= 512,
                    "{codec:?}: {a} vs {b}"
                );
            }
        }
    }

    #[test]
    fn transcoding_preserves_the_audio() {
        let pcm: [i16; FRAME_SAMPLES] =
            std::array::from_fn(|i| ((i as f64 * 0.2).sin() * 9000.0) as i16);
        let ulaw = Codec::Pcmu.encode_frame(&pcm);
        let mut alaw = ulaw;
        Codec::Pcmu.transcode_in_place(Codec::Pcma, &mut alaw);
        assert_eq!(
            alaw,
            Codec::Pcma.encode_frame(&Codec::Pcmu.decode_frame(&ulaw))
        );
    }
}
