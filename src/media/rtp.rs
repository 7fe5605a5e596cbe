//! RTP (RFC 3550) packets out and in, on top of rtp-rs.
//!
//! Owns our outbound stream's identity and clock: a random SSRC, random initial sequence number
//! and timestamp (RFC 3550 §5.1, so streams are not predictable), the sequence number rising by
//! one per packet and the timestamp by the samples each packet covers, also across silence and
//! skipped time, and the marker bit on the first packet of each talkspurt. Inbound, it validates
//! a datagram into a borrowed view. No sockets, no clocks, no codecs here.

use rtp_rs::{RtpPacketBuilder, RtpReader, RtpReaderError, Seq};

/// Header (12) plus the largest payload we forward: an Ethernet MTU's worth of UDP.
pub const MAX_PACKET: usize = 1500;
/// The largest payload [`RtpStream`] packs (no CSRCs or extensions on our packets).
pub const MAX_PAYLOAD: usize = MAX_PACKET - RtpReader::MIN_HEADER_LEN;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RtpError {
    #[error("RTP datagram of {0} bytes is shorter than the 12-byte header")]
    TooShort(usize),
    #[error("RTP version {0}, only 2 exists")]
    Version(u8),
    #[error("RTP header (CSRCs or extension) runs past the datagram")]
    Truncated,
    #[error("RTP padding length is invalid")]
    Padding,
    #[error("RTCP packet type {0} on the RTP port")]
    Rtcp(u8),
    #[error("payload of {0} bytes does not fit one packet")]
    PayloadTooLarge(usize),
    #[error("payload type {0} is over 127")]
    PayloadType(u8),
}

/// A valid inbound RTP packet, borrowed from the datagram it came in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpPacket<'a> {
    pub payload_type: u8,
    pub marker: bool,
    pub sequence: u16,
    pub timestamp: u32,
    pub ssrc: u32,
    /// Without CSRCs, header extension and padding.
    pub payload: &'a [u8],
}

/// Parses one datagram received on an RTP port.
pub fn parse(datagram: &[u8]) -> Result<RtpPacket<'_>, RtpError> {
    // RTCP multiplexed onto the RTP port (RFC 5761) has packet types 200-204 where RTP has
    // marker+PT; it is not garbage, but it is not media either.
    if datagram.len() >= 8 && (200..=204).contains(&datagram[1]) {
        return Err(RtpError::Rtcp(datagram[1]));
    }
    let reader = RtpReader::new(datagram).map_err(|e| match e {
        RtpReaderError::BufferTooShort(n) => RtpError::TooShort(n),
        RtpReaderError::UnsupportedVersion(v) => RtpError::Version(v),
        RtpReaderError::HeadersTruncated { .. } => RtpError::Truncated,
        RtpReaderError::PaddingLengthInvalid(_) => RtpError::Padding,
    })?;
    Ok(RtpPacket {
        payload_type: reader.payload_type(),
        marker: reader.mark(),
        sequence: u16::from(reader.sequence_number()),
        timestamp: reader.timestamp(),
        ssrc: reader.ssrc(),
        payload: reader.payload(),
    })
}

/// Our side of one RTP stream: identity, sequence, clock; packs payloads into packets.
#[derive(Debug)]
pub struct RtpStream {
    ssrc: u32,
    sequence: u16,
    /// The timestamp of the next frame on the running media clock.
    timestamp: u32,
    mark_next: bool,
    buffer: Box<[u8; MAX_PACKET]>,
}

impl Default for RtpStream {
    fn default() -> Self {
        RtpStream::new()
    }
}

impl RtpStream {
    pub fn new() -> RtpStream {
        RtpStream::with_state(rand::random(), rand::random(), rand::random())
    }

    /// A stream with a chosen identity, for tests and for continuing a stream.
    pub fn with_state(ssrc: u32, sequence: u16, timestamp: u32) -> RtpStream {
        RtpStream {
            ssrc,
            sequence,
            timestamp,
            mark_next: true,
            buffer: Box::new([0; MAX_PACKET]),
        }
    }

    pub fn ssrc(&self) -> u32 {
        self.ssrc
    }

    /// The sequence number the next packet will carry.
    pub fn next_sequence(&self) -> u16 {
        self.sequence
    }

    /// The timestamp the next frame will carry.
    pub fn timestamp(&self) -> u32 {
        self.timestamp
    }

    /// The next packet starts a talkspurt (a prompt, audio after a gap): receivers resync
    /// their jitter buffer on the marker bit.
    pub fn mark_talkspurt(&mut self) {
        self.mark_next = true;
    }

    /// Moves the media clock on by `samples` without sending: time passed that no packet covers
    /// (a stall, hold), so the receiver's playout clock stays true to wall time.
    pub fn skip(&mut self, samples: u32) {
        self.timestamp = self.timestamp.wrapping_add(samples);
    }

    /// Packs the next frame on the running clock, covering `samples` samples.
    pub fn frame(
        &mut self,
        payload_type: u8,
        payload: &[u8],
        samples: u32,
    ) -> Result<&[u8], RtpError> {
        let timestamp = self.timestamp;
        let marker = self.mark_next;
        let length = self.pack(payload_type, marker, timestamp, payload)?;
        self.timestamp = timestamp.wrapping_add(samples);
        Ok(&self.buffer[..length])
    }

    /// Packs a packet with an explicit timestamp and marker (relayed media, telephone-events,
    /// whose packets all carry the event's start time). The running clock follows it to
    /// `timestamp + samples`.
    pub fn forward(
        &mut self,
        payload_type: u8,
        marker: bool,
        timestamp: u32,
        payload: &[u8],
        samples: u32,
    ) -> Result<&[u8], RtpError> {
        let length = self.pack(payload_type, marker || self.mark_next, timestamp, payload)?;
        self.timestamp = timestamp.wrapping_add(samples);
        Ok(&self.buffer[..length])
    }

    fn pack(
        &mut self,
        payload_type: u8,
        marker: bool,
        timestamp: u32,
        payload: &[u8],
    ) -> Result<usize, RtpError> {
        if payload.len() > MAX_PAYLOAD {
            return Err(RtpError::PayloadTooLarge(payload.len()));
        }
        if payload_type > 127 {
            return Err(RtpError::PayloadType(payload_type));
        }
        let length = RtpPacketBuilder::new()
            .payload_type(payload_type)
            .marked(marker)
            .sequence(Seq::from(self.sequence))
            .timestamp(timestamp)
            .ssrc(self.ssrc)
            .payload(payload)
            .build_into(&mut self.buffer[..])
            .map_err(|_| RtpError::PayloadTooLarge(payload.len()))?;
        self.sequence = self.sequence.wrapping_add(1);
        self.mark_next = false;
        Ok(length)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_count_up_and_wrap() {
        let mut stream = RtpStream::with_state(0x1234_5678, 65534, u32::MAX - 159);
        let frame = [0xFFu8; 160];
        let mut seen = Vec::new();
        for _ in 0..3 {
            let packet = stream.frame(0, &frame, 160).unwrap().to_vec();
            let parsed = parse(&packet).unwrap();
            assert_eq!(parsed.payload, &frame[..]);
            assert_eq!(parsed.ssrc, 0x1234_5678);
            assert_eq!(parsed.payload_type, 0);
            seen.push((parsed.sequence, parsed.timestamp, parsed.marker));
        }
        assert_eq!(
            seen,
            [
                (65534, u32::MAX - 159, true),
                (65535, 0, false),
                (0, 160, false)
            ]
        );
    }

    #[test]
    fn skipped_time_advances_the_clock_and_a_new_talkspurt_is_marked() {
        let mut stream = RtpStream::with_state(1, 10, 1000);
        stream.frame(8, &[0xD5; 160], 160).unwrap();
        stream.skip(5 * 160);
        stream.mark_talkspurt();
        let packet = parse(stream.frame(8, &[0xD5; 160], 160).unwrap())
            .map(|p| (p.sequence, p.timestamp, p.marker))
            .unwrap();
        assert_eq!(packet, (11, 1000 + 6 * 160, true));
    }

    #[test]
    fn forward_keeps_the_given_timestamp_and_moves_the_clock() {
        let mut stream = RtpStream::with_state(1, 0, 0);
        stream.frame(0, &[0; 160], 160).unwrap();
        let packet = parse(
            stream
                .forward(101, true, 5000, &[1, 0x8A, 0, 160], 0)
                .unwrap(),
        )
        .map(|p| (p.payload_type, p.marker, p.timestamp))
        .unwrap();
        assert_eq!(packet, (101, true, 5000));
        assert_eq!(stream.timestamp(), 5000);
    }

    #[test]
    fn random_streams_differ() {
        let a = RtpStream::new();
        let b = RtpStream::new();
        assert!(a.ssrc() != b.ssrc() || a.timestamp() != b.timestamp());
    }

    #[test]
    fn oversized_payloads_and_bad_payload_types_are_refused() {
        let mut stream = RtpStream::with_state(1, 0, 0);
        assert_eq!(
            stream.frame(0, &[0; MAX_PAYLOAD + 1], 160).unwrap_err(),
            RtpError::PayloadTooLarge(MAX_PAYLOAD + 1)
        );
        assert_eq!(
            stream.frame(128, &[0; 160], 160).unwrap_err(),
            RtpError::PayloadType(128)
        );
        assert_eq!(
            stream.next_sequence(),
            0,
            "a refused packet uses no sequence number"
        );
    }

    #[test]
    fn inbound_padding_csrcs_and_extensions_are_stripped() {
        // V=2 P=1 X=1 CC=1, PT 0, one CSRC, a one-word extension, 3 payload bytes, 2 pad bytes.
        let datagram = [
            0xB1, 0x00, 0x00, 0x07, 0, 0, 0, 160, 0, 0, 0, 9, // header
            0, 0, 0, 42, // CSRC
            0xBE, 0xDE, 0x00, 0x01, 1, 2, 3, 4, // extension
            0xAA, 0xBB, 0xCC, // payload
            0x00, 0x02, // padding
        ];
        let packet = parse(&datagram).unwrap();
        assert_eq!(packet.payload, &[0xAA, 0xBB, 0xCC]);
        assert_eq!(
            (packet.sequence, packet.timestamp, packet.ssrc),
            (7, 160, 9)
        );
    }

    #[test]
    fn garbage_is_rejected_without_panicking() {
        assert_eq!(parse(&[0x80; 5]), Err(RtpError::TooShort(5)));
        assert_eq!(parse(&[0x40; 20]), Err(RtpError::Version(1)));
        assert_eq!(parse(&[0x8F; 20]), Err(RtpError::Truncated));
        let mut padded = [0u8; 16];
        padded[0] = 0xA0;
        padded[15] = 0;
        assert_eq!(parse(&padded), Err(RtpError::Padding));
        assert_eq!(
            parse(&[0x81, 201, 0, 7, 0, 0, 0, 1]),
            Err(RtpError::Rtcp(201))
        );
        for length in 0..64 {
            for seed in 0..=255u8 {
                let datagram: Vec<u8> = (0..length)
                    .map(|i| {
                        seed.wrapping_mul(31)
                            .wrapping_add((i as u8).wrapping_mul(7))
                    })
                    .collect();
                let _ = parse(&datagram);
            }
        }
    }
}
