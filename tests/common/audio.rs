//! Audio for the test peers: G.711 µ-law/A-law (our own, so the tests do not trust the daemon's codec), tones,
//! Goertzel tone detection per 20 ms frame, runs of one tone, and the WAV prompts the tests give the daemon.

use std::path::Path;

pub const RATE: f64 = 8000.0;
pub const FRAME: usize = 160;

// Prompt and peer tones. Far from each other (≥ 100 Hz, beyond the 50 Hz Goertzel bin of a 20 ms frame),
// no harmonics of each other, and none a DTMF frequency, so an in-band detector cannot mistake them for digits.
pub const GREETING_HZ: u32 = 440;
pub const MENU_HZ: u32 = 1000;
pub const INVALID_HZ: u32 = 1500;
pub const MORE_HZ: u32 = 2000;
pub const BUSY_HZ: u32 = 2500;
pub const CALLER_HZ: u32 = 600;
pub const FUNCTION_HZ: u32 = 1800;
/// The closed prompts of opening hours: the service's and a function's.
pub const CLOSED_HZ: u32 = 2800;
pub const FUNCTION_CLOSED_HZ: u32 = 3300;
/// Announcements: two, so that tests can tell which played and in what order.
pub const ANNOUNCE_HZ: u32 = 3500;
pub const ANNOUNCE_2_HZ: u32 = 3700;
pub const ALL_TONES: [u32; 11] = [
    GREETING_HZ,
    MENU_HZ,
    INVALID_HZ,
    MORE_HZ,
    BUSY_HZ,
    CALLER_HZ,
    FUNCTION_HZ,
    CLOSED_HZ,
    FUNCTION_CLOSED_HZ,
    ANNOUNCE_HZ,
    ANNOUNCE_2_HZ,
];

const ULAW_BIAS: i32 = 0x84;
const ULAW_CLIP: i32 = 32635;

pub fn ulaw_encode(sample: i16) -> u8 {
    let mut s = i32::from(sample);
    let sign = if s < 0 {
        s = -s;
        0x80
    } else {
        0
    };
    s = s.min(ULAW_CLIP) + ULAW_BIAS;
    let mut exponent = 7;
    let mut mask = 0x4000;
    while exponent > 0 && s & mask == 0 {
        exponent -= 1;
        mask >>= 1;
    }
    let mantissa = (s >> (exponent + 3)) & 0x0F;
    !(sign | (exponent << 4) | mantissa) as u8
}

pub fn ulaw_decode(byte: u8) -> i16 {
    let u = i32::from(!byte);
    let exponent = (u >> 4) & 0x07;
    let mantissa = u & 0x0F;
    let magnitude = (((mantissa << 3) + ULAW_BIAS) << exponent) - ULAW_BIAS;
    (if u & 0x80 != 0 { -magnitude } else { magnitude }) as i16
}

pub fn alaw_encode(sample: i16) -> u8 {
    const SEGMENT_END: [i32; 8] = [0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF];
    let mut pcm = i32::from(sample) >> 3;
    let mask = if pcm >= 0 {
        0xD5
    } else {
        pcm = -pcm - 1;
        0x55
    };
    let Some(segment) = SEGMENT_END.iter().position(|end| pcm <= *end) else {
        return (0x7F ^ mask) as u8;
    };
    let quant = if segment < 2 {
        (pcm >> 1) & 0x0F
    } else {
        (pcm >> segment) & 0x0F
    };
    (((segment as i32) << 4 | quant) ^ mask) as u8
}

pub fn alaw_decode(byte: u8) -> i16 {
    let a = i32::from(byte ^ 0x55);
    let mut t = (a & 0x0F) << 4;
    let segment = (a & 0x70) >> 4;
    match segment {
        0 => t += 8,
        1 => t += 0x108,
        _ => t = (t + 0x108) << (segment - 1),
    }
    (if a & 0x80 != 0 { t } else { -t }) as i16
}

/// Decodes a G.711 payload by its static payload type; `None` for anything else (events, unknown).
pub fn decode(pt: u8, payload: &[u8]) -> Option<Vec<i16>> {
    match pt {
        0 => Some(payload.iter().map(|b| ulaw_decode(*b)).collect()),
        8 => Some(payload.iter().map(|b| alaw_decode(*b)).collect()),
        _ => None,
    }
}

pub fn encode(pt: u8, samples: &[i16]) -> Vec<u8> {
    match pt {
        8 => samples.iter().map(|s| alaw_encode(*s)).collect(),
        _ => samples.iter().map(|s| ulaw_encode(*s)).collect(),
    }
}

/// Goertzel power at `freq`, normalised so that a pure sine at `freq` (on a bin) scores 1.0 against its own energy.
pub fn tone_share(samples: &[i16], freq: f64) -> f64 {
    let n = samples.len() as f64;
    let coeff = 2.0 * (2.0 * std::f64::consts::PI * freq / RATE).cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    let mut energy = 0.0f64;
    for x in samples {
        let x = f64::from(*x);
        energy += x * x;
        let s0 = x + coeff * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    if energy == 0.0 {
        return 0.0;
    }
    let power = s1 * s1 + s2 * s2 - coeff * s1 * s2;
    2.0 * power / (n * energy)
}

pub fn rms(samples: &[i16]) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    (samples.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>() / samples.len() as f64).sqrt()
}

/// RMS of a 0 dBm0 sine on the 16-bit scale G.711 decodes to: its peak is 3.17 dB below µ-law full scale
/// (8159 on the 14-bit scale, 32636 on 16 bits), ITU-T G.711's digital milliwatt.
pub const DBM0_RMS: f64 = 32636.0 / 1.4405 / std::f64::consts::SQRT_2;

/// The level of `samples` in dBm0 (-inf for silence).
pub fn dbm0(samples: &[i16]) -> f64 {
    20.0 * (rms(samples) / DBM0_RMS).log10()
}

/// Which of `candidates` dominates a frame, if any: most of the energy at that frequency and not near-silent.
pub fn dominant(samples: &[i16], candidates: &[u32]) -> Option<u32> {
    if rms(samples) < 300.0 {
        return None;
    }
    candidates
        .iter()
        .map(|f| (*f, tone_share(samples, f64::from(*f))))
        .filter(|(_, share)| *share > 0.6)
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(f, _)| f)
}

/// A run of consecutive frames of one tone (`None`: silence or anything else).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    pub tone: Option<u32>,
    pub frames: usize,
}

impl Segment {
    pub fn ms(&self) -> usize {
        self.frames * 20
    }
}

/// Runs of tones. A frame or two of something else between two runs of the same tone (a frame straddling a
/// resampler edge, a lost packet) does not split the run.
pub fn segments(frames: &[Option<u32>]) -> Vec<Segment> {
    let mut raw: Vec<Segment> = Vec::new();
    for tone in frames {
        match raw.last_mut() {
            Some(last) if last.tone == *tone => last.frames += 1,
            _ => raw.push(Segment {
                tone: *tone,
                frames: 1,
            }),
        }
    }
    let mut merged: Vec<Segment> = Vec::new();
    let mut i = 0;
    while i < raw.len() {
        let seg = raw[i];
        if let (Some(prev), Some(next)) = (merged.last_mut(), raw.get(i + 1))
            && prev.tone.is_some()
            && seg.frames <= 2
            && next.tone == prev.tone
        {
            prev.frames += seg.frames + next.frames;
            i += 2;
            continue;
        }
        match merged.last_mut() {
            Some(prev) if prev.tone == seg.tone => prev.frames += seg.frames,
            _ => merged.push(seg),
        }
        i += 1;
    }
    merged
}

/// Human-readable runs for assertion messages: `440Hz×30 -×4 1000Hz×80`.
pub fn describe(segments: &[Segment]) -> String {
    segments
        .iter()
        .map(|s| match s.tone {
            Some(f) => format!("{f}Hz×{}", s.frames),
            None => format!("-×{}", s.frames),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The longest run of `tone`, in frames.
pub fn longest(segments: &[Segment], tone: u32) -> usize {
    segments
        .iter()
        .filter(|s| s.tone == Some(tone))
        .map(|s| s.frames)
        .max()
        .unwrap_or(0)
}

/// Index of the first run of `tone` at least `min_frames` long, starting the search at `from`.
pub fn find_run(segments: &[Segment], tone: u32, min_frames: usize, from: usize) -> Option<usize> {
    (from..segments.len())
        .find(|i| segments[*i].tone == Some(tone) && segments[*i].frames >= min_frames)
}

/// Samples of a sine at `freq`, continuing from sample index `start` so consecutive frames join without clicks.
pub fn sine(freq: f64, amplitude: f64, start: u64, len: usize, rate: f64) -> Vec<i16> {
    (0..len as u64)
        .map(|i| {
            let t = (start + i) as f64 / rate;
            (amplitude * (2.0 * std::f64::consts::PI * freq * t).sin()) as i16
        })
        .collect()
}

/// Writes a 16-bit PCM WAV of a pure tone (half full scale, 5 ms fades) as a prompt for the daemon.
pub fn write_tone_wav(
    path: &Path,
    freq: f64,
    seconds: f64,
    rate: u32,
    channels: u16,
) -> Result<(), hound::Error> {
    let spec = hound::WavSpec {
        channels,
        sample_rate: rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut writer = hound::WavWriter::create(path, spec)?;
    let total = (seconds * f64::from(rate)) as u64;
    let fade = (0.005 * f64::from(rate)) as u64;
    for i in 0..total {
        let gain = (i.min(total - 1 - i) as f64 / fade as f64).min(1.0);
        let t = i as f64 / f64::from(rate);
        let sample = (16384.0 * gain * (2.0 * std::f64::consts::PI * freq * t).sin()) as i16;
        for _ in 0..channels {
            writer.write_sample(sample)?;
        }
    }
    writer.finalize()
}

/// The prompts a caller heard, in order, named by `tones` (prompt id, its tone): runs of a prompt's tone at
/// least 200 ms long.
pub fn heard_prompts(segments: &[Segment], tones: &[(&str, u32)]) -> Vec<String> {
    segments
        .iter()
        .filter(|s| s.frames >= 10)
        .filter_map(|s| {
            tones
                .iter()
                .find(|(_, tone)| s.tone == Some(*tone))
                .map(|(id, _)| (*id).to_owned())
        })
        .collect()
}
