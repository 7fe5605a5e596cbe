//! The audio codecs knappval speaks: G.711 µ-law (PCMU) and A-law (PCMA), 8 kHz, 20 ms frames.

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
}
