//! A libpcap file of RFC 4733 telephone-event packets (Ethernet / IPv4 / UDP / RTP), for SIPp's
//! `play_pcap_audio` to send as the caller's digits. SIPp rewrites addresses and ports; it keeps payloads and
//! the pacing given by the capture timestamps.

use super::rtp::{event_code, event_payload, rtp_header};
use std::path::Path;

fn checksum(data: &[u8], initial: u32) -> u16 {
    let mut sum = initial;
    for pair in data.chunks(2) {
        let word = u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)]);
        sum += u32::from(word);
    }
    while sum > 0xFFFF {
        sum = (sum & 0xFFFF) + (sum >> 16);
    }
    !(sum as u16)
}

fn frame(ip_id: u16, rtp: &[u8]) -> Vec<u8> {
    let src = [10, 0, 0, 1];
    let dst = [10, 0, 0, 2];
    let (sport, dport) = (6000u16, 7000u16);
    let udp_len = (8 + rtp.len()) as u16;
    let mut f = Vec::new();
    f.extend_from_slice(&[
        0x00, 0x50, 0x56, 0x00, 0x00, 0x02, 0x00, 0x50, 0x56, 0x00, 0x00, 0x01, 0x08, 0x00,
    ]);
    let mut ip = vec![0x45, 0x00];
    ip.extend_from_slice(&(20 + udp_len).to_be_bytes());
    ip.extend_from_slice(&ip_id.to_be_bytes());
    ip.extend_from_slice(&[0x00, 0x00, 64, 17, 0, 0]);
    ip.extend_from_slice(&src);
    ip.extend_from_slice(&dst);
    let sum = checksum(&ip, 0);
    ip[10..12].copy_from_slice(&sum.to_be_bytes());
    f.extend_from_slice(&ip);
    let mut udp = Vec::new();
    udp.extend_from_slice(&sport.to_be_bytes());
    udp.extend_from_slice(&dport.to_be_bytes());
    udp.extend_from_slice(&udp_len.to_be_bytes());
    udp.extend_from_slice(&[0, 0]);
    udp.extend_from_slice(rtp);
    let pseudo: u32 = u32::from(u16::from_be_bytes([src[0], src[1]]))
        + u32::from(u16::from_be_bytes([src[2], src[3]]))
        + u32::from(u16::from_be_bytes([dst[0], dst[1]]))
        + u32::from(u16::from_be_bytes([dst[2], dst[3]]))
        + 17
        + u32::from(udp_len);
    let sum = match checksum(&udp, pseudo) {
        0 => 0xFFFF,
        s => s,
    };
    udp[6..8].copy_from_slice(&sum.to_be_bytes());
    f.extend_from_slice(&udp);
    f
}

/// Writes `digits` as telephone-events on `pt`: each 200 ms (start with marker, continuations every 20 ms, the
/// end packet three times with the same timestamp), 300 ms apart, starting 100 ms into the capture.
pub fn write_dtmf_pcap(path: &Path, digits: &str, pt: u8) -> std::io::Result<()> {
    let mut out = Vec::new();
    out.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&4u16.to_le_bytes());
    out.extend_from_slice(&0i32.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&65535u32.to_le_bytes());
    out.extend_from_slice(&1u32.to_le_bytes());
    let ssrc = 0x4b4e_4150u32;
    let (mut seq, mut ts, mut ip_id) = (1000u16, 160_000u32, 1u16);
    let mut at_us: u64 = 1_700_000_000_000_000 + 100_000;
    const FRAMES: u16 = 10;
    for digit in digits.chars() {
        let code = event_code(digit).unwrap_or_else(|| panic!("{digit:?} is not a DTMF digit"));
        for i in 0..FRAMES + 2 {
            let end = i + 1 >= FRAMES;
            let duration = (i.min(FRAMES - 1) + 1) * 160;
            let mut rtp = rtp_header(i == 0, pt, seq, ts, ssrc);
            rtp.extend_from_slice(&event_payload(code, end, 10, duration));
            let f = frame(ip_id, &rtp);
            out.extend_from_slice(&((at_us / 1_000_000) as u32).to_le_bytes());
            out.extend_from_slice(&((at_us % 1_000_000) as u32).to_le_bytes());
            out.extend_from_slice(&(f.len() as u32).to_le_bytes());
            out.extend_from_slice(&(f.len() as u32).to_le_bytes());
            out.extend_from_slice(&f);
            seq = seq.wrapping_add(1);
            ip_id = ip_id.wrapping_add(1);
            at_us += 20_000;
        }
        ts = ts.wrapping_add(u32::from(FRAMES + 2) * 160 + 2400);
        at_us += 300_000;
    }
    std::fs::write(path, out)
}
