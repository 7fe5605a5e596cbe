//! WAV files in, 8 kHz mono 16-bit samples out: what prompts are made of.
//!
//! Owns reading a prompt file once, at load: any sample rate, channel count and PCM depth
//! (8/16/24/32-bit integer, 32-bit float, through hound), plus the A-law and µ-law WAVs that
//! telephony tools write (format tags 6 and 7, which hound rejects, read by the small RIFF
//! reader here). Channels are averaged to mono and the rate converted to 8 kHz with rubato's
//! FFT resampler, whose low-pass keeps content above 4 kHz from aliasing into the speech band.
//! Never touches the network or the prompt cache.

use std::io::Cursor;
use std::path::{Path, PathBuf};

use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Fft, FixedSync, Resampler};

use super::codec::CLOCK_RATE;
use super::g711;

/// A prompt over this size is a mistake (an hour of 48 kHz stereo is 690 MB), not a prompt.
pub const MAX_WAV_BYTES: u64 = 256 * 1024 * 1024;
/// Rates outside this range are corrupt headers, and would size the resampler absurdly.
const MIN_RATE: u32 = 1000;
const MAX_RATE: u32 = 384_000;

const FORMAT_PCM: u16 = 1;
const FORMAT_FLOAT: u16 = 3;
const FORMAT_ALAW: u16 = 6;
const FORMAT_ULAW: u16 = 7;
const FORMAT_EXTENSIBLE: u16 = 0xFFFE;

const SOX_HINT: &str = "sox in.wav -r 8000 -c 1 -b 16 out.wav";

#[derive(Debug, thiserror::Error)]
pub enum WavError {
    #[error("{}: cannot read: {source}", .path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {size} bytes is over the {MAX_WAV_BYTES}-byte limit for a prompt", .path.display())]
    TooLarge { path: PathBuf, size: u64 },
    #[error("{}: not a WAV file ({what}): convert with `{SOX_HINT}`", .path.display())]
    NotWav { path: PathBuf, what: String },
    #[error("{}: unsupported format tag {tag} ({name}): convert with `{SOX_HINT}`", .path.display())]
    UnsupportedFormat {
        path: PathBuf,
        tag: u16,
        name: &'static str,
    },
    #[error("{}: broken WAV: {what}", .path.display())]
    Malformed { path: PathBuf, what: String },
    #[error("{}: {source}", .path.display())]
    Decode { path: PathBuf, source: hound::Error },
    #[error("{}: cannot convert {rate} Hz to 8000 Hz: {what}", .path.display())]
    Resample {
        path: PathBuf,
        rate: u32,
        what: String,
    },
    #[error("{}: contains no audio", .path.display())]
    Empty { path: PathBuf },
}

/// Reads `path` and returns its audio as 8 kHz mono 16-bit samples.
pub fn read_wav_8k(path: &Path) -> Result<Vec<i16>, WavError> {
    let io = |source| WavError::Io {
        path: path.to_path_buf(),
        source,
    };
    let size = std::fs::metadata(path).map_err(io)?.len();
    if size > MAX_WAV_BYTES {
        return Err(WavError::TooLarge {
            path: path.to_path_buf(),
            size,
        });
    }
    let bytes = std::fs::read(path).map_err(io)?;
    decode_wav_8k(path, &bytes)
}

/// [`read_wav_8k`] over a file already in memory; `path` only names it in errors.
pub fn decode_wav_8k(path: &Path, bytes: &[u8]) -> Result<Vec<i16>, WavError> {
    let wave = parse_riff(bytes).map_err(|problem| match problem {
        RiffProblem::NotWav(what) => WavError::NotWav {
            path: path.to_path_buf(),
            what,
        },
        RiffProblem::Malformed(what) => WavError::Malformed {
            path: path.to_path_buf(),
            what,
        },
    })?;
    let format = wave.format;
    if format.channels == 0 {
        return Err(malformed(path, "the fmt chunk declares 0 channels"));
    }
    if !(MIN_RATE..=MAX_RATE).contains(&format.sample_rate) {
        return Err(malformed(
            path,
            &format!(
                "sample rate {} Hz is outside {MIN_RATE}-{MAX_RATE} Hz",
                format.sample_rate
            ),
        ));
    }
    let interleaved = match format.tag {
        FORMAT_PCM | FORMAT_FLOAT => decode_with_hound(path, &canonical_wav(&wave))?,
        FORMAT_ALAW | FORMAT_ULAW => decode_g711(path, &format, wave.data)?,
        tag => {
            return Err(WavError::UnsupportedFormat {
                path: path.to_path_buf(),
                tag,
                name: format_name(tag),
            });
        }
    };
    let mono = downmix(&interleaved, usize::from(format.channels));
    if mono.is_empty() {
        return Err(WavError::Empty {
            path: path.to_path_buf(),
        });
    }
    let resampled =
        resample_to_8k(&mono, format.sample_rate).map_err(|what| WavError::Resample {
            path: path.to_path_buf(),
            rate: format.sample_rate,
            what,
        })?;
    Ok(resampled.iter().map(|s| to_i16(*s)).collect())
}

fn malformed(path: &Path, what: &str) -> WavError {
    WavError::Malformed {
        path: path.to_path_buf(),
        what: what.to_owned(),
    }
}

fn format_name(tag: u16) -> &'static str {
    match tag {
        0x0002 => "Microsoft ADPCM",
        0x0011 => "IMA ADPCM",
        0x0031 => "GSM 6.10",
        0x0040 => "G.721 ADPCM",
        0x0050 => "MPEG",
        0x0055 => "MP3",
        0x0064 => "G.726 ADPCM",
        0x0161..=0x0163 => "Windows Media Audio",
        0x1610 => "AAC",
        _ => "unknown",
    }
}

#[derive(Debug, Clone, Copy)]
struct WaveFormat {
    /// The effective tag: for WAVE_FORMAT_EXTENSIBLE, the sub-format's.
    tag: u16,
    channels: u16,
    sample_rate: u32,
    block_align: u16,
    bits_per_sample: u16,
}

struct Wave<'a> {
    format: WaveFormat,
    /// The fmt chunk as written, for handing PCM to hound.
    format_chunk: &'a [u8],
    data: &'a [u8],
}

enum RiffProblem {
    NotWav(String),
    Malformed(String),
}

fn u16_at(bytes: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(bytes.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

/// Walks the RIFF chunks for `fmt ` and `data`, skipping everything else (LIST, fact, cue, ...).
fn parse_riff(bytes: &[u8]) -> Result<Wave<'_>, RiffProblem> {
    match bytes.get(0..4) {
        Some(b"RIFF") => {}
        Some(b"RIFX") => return Err(RiffProblem::NotWav("big-endian RIFX".into())),
        Some(b"RF64") => return Err(RiffProblem::NotWav("RF64".into())),
        _ => return Err(RiffProblem::NotWav("no RIFF header".into())),
    }
    if bytes.get(8..12) != Some(b"WAVE") {
        return Err(RiffProblem::NotWav("RIFF but not WAVE".into()));
    }
    let mut format = None;
    let mut data = None;
    let mut at = 12usize;
    while at + 8 <= bytes.len() {
        let id = &bytes[at..at + 4];
        let declared = u32_at(bytes, at + 4).unwrap_or(0) as usize;
        let body_start = at + 8;
        // Writers that stream (and then crash) leave the data size too large; take what is there.
        let body_end = body_start.saturating_add(declared).min(bytes.len());
        let body = &bytes[body_start..body_end];
        match id {
            b"fmt " => format = Some((parse_fmt(body)?, body)),
            b"data" if data.is_none() => data = Some(body),
            _ => {}
        }
        // Chunks are word-aligned: an odd-sized chunk is followed by one pad byte.
        at = body_start
            .saturating_add(declared)
            .saturating_add(declared & 1);
    }
    match (format, data) {
        (Some((format, format_chunk)), Some(data)) => Ok(Wave {
            format,
            format_chunk,
            data,
        }),
        (None, _) => Err(RiffProblem::Malformed("no fmt chunk".into())),
        (Some(_), None) => Err(RiffProblem::Malformed("no data chunk".into())),
    }
}

fn parse_fmt(body: &[u8]) -> Result<WaveFormat, RiffProblem> {
    let short = || RiffProblem::Malformed(format!("fmt chunk of {} bytes, 16 needed", body.len()));
    let mut tag = u16_at(body, 0).ok_or_else(short)?;
    let channels = u16_at(body, 2).ok_or_else(short)?;
    let sample_rate = u32_at(body, 4).ok_or_else(short)?;
    let block_align = u16_at(body, 12).ok_or_else(short)?;
    let bits_per_sample = u16_at(body, 14).ok_or_else(short)?;
    if tag == FORMAT_EXTENSIBLE {
        // cbSize, valid bits, channel mask, then the sub-format GUID whose first two bytes are
        // the classic format tag (…-0000-0010-8000-00AA00389B71).
        tag = u16_at(body, 24).ok_or_else(|| {
            RiffProblem::Malformed("WAVE_FORMAT_EXTENSIBLE without its sub-format".into())
        })?;
    }
    Ok(WaveFormat {
        tag,
        channels,
        sample_rate,
        block_align,
        bits_per_sample,
    })
}

/// Just `fmt ` and `data`, as hound expects them: hound skips unknown chunks without their pad
/// byte, and stops at a data chunk whose declared size runs past the end of the file.
fn canonical_wav(wave: &Wave<'_>) -> Vec<u8> {
    let block = usize::from(wave.format.block_align.max(1));
    let data = &wave.data[..wave.data.len() - wave.data.len() % block];
    let format_len = wave.format_chunk.len() + wave.format_chunk.len() % 2;
    let mut wav = Vec::with_capacity(28 + format_len + data.len());
    let riff_len = 4 + 8 + format_len + 8 + data.len();
    wav.extend_from_slice(b"RIFF");
    wav.extend_from_slice(&(riff_len as u32).to_le_bytes());
    wav.extend_from_slice(b"WAVEfmt ");
    wav.extend_from_slice(&(wave.format_chunk.len() as u32).to_le_bytes());
    wav.extend_from_slice(wave.format_chunk);
    if wave.format_chunk.len() % 2 == 1 {
        wav.push(0);
    }
    wav.extend_from_slice(b"data");
    wav.extend_from_slice(&(data.len() as u32).to_le_bytes());
    wav.extend_from_slice(data);
    wav
}

/// PCM and float through hound, normalised to [-1, 1], still interleaved.
fn decode_with_hound(path: &Path, bytes: &[u8]) -> Result<Vec<f32>, WavError> {
    let decode = |source| WavError::Decode {
        path: path.to_path_buf(),
        source,
    };
    let mut reader = hound::WavReader::new(Cursor::new(bytes)).map_err(decode)?;
    let spec = reader.spec();
    match spec.sample_format {
        hound::SampleFormat::Float => reader.samples::<f32>().map(|s| s.map_err(decode)).collect(),
        hound::SampleFormat::Int => {
            if spec.bits_per_sample == 0 || spec.bits_per_sample > 32 {
                return Err(malformed(
                    path,
                    &format!("{} bits per sample", spec.bits_per_sample),
                ));
            }
            let full_scale = (1u64 << (spec.bits_per_sample - 1)) as f64;
            reader
                .samples::<i32>()
                .map(|s| {
                    s.map(|v| (f64::from(v) / full_scale) as f32)
                        .map_err(decode)
                })
                .collect()
        }
    }
}

fn decode_g711(path: &Path, format: &WaveFormat, data: &[u8]) -> Result<Vec<f32>, WavError> {
    if format.bits_per_sample != 8 {
        return Err(malformed(
            path,
            &format!(
                "G.711 with {} bits per sample (8 expected)",
                format.bits_per_sample
            ),
        ));
    }
    if format.block_align != 0 && format.block_align != format.channels {
        return Err(malformed(
            path,
            &format!(
                "G.711 block align {} for {} channels",
                format.block_align, format.channels
            ),
        ));
    }
    // A trailing partial sample frame is a truncated file: keep the whole frames.
    let whole = data.len() - data.len() % usize::from(format.channels);
    let decode = if format.tag == FORMAT_ALAW {
        g711::alaw_to_linear
    } else {
        g711::ulaw_to_linear
    };
    Ok(data[..whole]
        .iter()
        .map(|code| f32::from(decode(*code)) / 32768.0)
        .collect())
}

fn downmix(interleaved: &[f32], channels: usize) -> Vec<f32> {
    if channels == 1 {
        return interleaved.to_vec();
    }
    interleaved
        .chunks_exact(channels)
        .map(|frame| frame.iter().sum::<f32>() / channels as f32)
        .collect()
}

fn resample_to_8k(mono: &[f32], rate: u32) -> Result<Vec<f32>, String> {
    if rate == CLOCK_RATE {
        return Ok(mono.to_vec());
    }
    let mut resampler = Fft::<f32>::new(
        rate as usize,
        CLOCK_RATE as usize,
        1024,
        1,
        FixedSync::Input,
    )
    .map_err(|e| e.to_string())?;
    let input = InterleavedSlice::new(mono, 1, mono.len()).map_err(|e| e.to_string())?;
    let output = resampler
        .process_all(&input, mono.len(), None)
        .map_err(|e| e.to_string())?;
    Ok(output.take_data())
}

fn to_i16(sample: f32) -> i16 {
    // NaN (a corrupt float file) becomes silence rather than full scale.
    if sample.is_nan() {
        return 0;
    }
    (f64::from(sample) * 32768.0)
        .round()
        .clamp(f64::from(i16::MIN), f64::from(i16::MAX)) as i16
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::media::tone::{goertzel_amplitude_i16, synthesize};
    use std::f64::consts::PI;

    fn write_int_wav(path: &Path, rate: u32, channels: u16, bits: u16, seconds: f64, freq: f64) {
        let spec = hound::WavSpec {
            channels,
            sample_rate: rate,
            bits_per_sample: bits,
            sample_format: hound::SampleFormat::Int,
        };
        let mut writer = hound::WavWriter::create(path, spec).unwrap();
        let amplitude = 0.5 * ((1i64 << (bits - 1)) - 1) as f64;
        let frames = (f64::from(rate) * seconds) as usize;
        for n in 0..frames {
            let value = (amplitude * (2.0 * PI * freq * n as f64 / f64::from(rate)).sin()) as i32;
            for _ in 0..channels {
                if bits == 8 {
                    writer.write_sample(value as i8).unwrap();
                } else {
                    writer.write_sample(value).unwrap();
                }
            }
        }
        writer.finalize().unwrap();
    }

    fn write_float_wav(path: &Path, rate: u32, seconds: f64, freq: f64) {
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: rate,
            bits_per_sample: 32,
            sample_format: hound::SampleFormat::Float,
        };
        let mut writer = hound::WavWriter::create(path, spec).unwrap();
        let frames = (f64::from(rate) * seconds) as usize;
        for n in 0..frames {
            let value = 0.5 * (2.0 * PI * freq * n as f64 / f64::from(rate)).sin();
            writer.write_sample(value as f32).unwrap();
        }
        writer.finalize().unwrap();
    }

    /// A G.711 WAV as sox/Audacity write it: fmt (18 bytes, cbSize 0), fact, then data; with
    /// an odd-sized LIST chunk in front of fmt to exercise the pad byte.
    pub(crate) fn g711_wav(tag: u16, channels: u16, payload: &[u8], extensible: bool) -> Vec<u8> {
        let mut fmt = Vec::new();
        fmt.extend_from_slice(&(if extensible { FORMAT_EXTENSIBLE } else { tag }).to_le_bytes());
        fmt.extend_from_slice(&channels.to_le_bytes());
        fmt.extend_from_slice(&8000u32.to_le_bytes());
        fmt.extend_from_slice(&(8000u32 * u32::from(channels)).to_le_bytes());
        fmt.extend_from_slice(&channels.to_le_bytes());
        fmt.extend_from_slice(&8u16.to_le_bytes());
        if extensible {
            fmt.extend_from_slice(&22u16.to_le_bytes());
            fmt.extend_from_slice(&8u16.to_le_bytes());
            fmt.extend_from_slice(&4u32.to_le_bytes());
            fmt.extend_from_slice(&tag.to_le_bytes());
            fmt.extend_from_slice(&[
                0x00, 0x00, 0x00, 0x00, 0x10, 0x00, 0x80, 0x00, 0x00, 0xAA, 0x00, 0x38, 0x9B, 0x71,
            ]);
        } else {
            fmt.extend_from_slice(&0u16.to_le_bytes());
        }
        let mut chunks = Vec::new();
        let mut chunk = |id: &[u8; 4], body: &[u8]| {
            chunks.extend_from_slice(id);
            chunks.extend_from_slice(&(body.len() as u32).to_le_bytes());
            chunks.extend_from_slice(body);
            if body.len() % 2 == 1 {
                chunks.push(0);
            }
        };
        chunk(b"LIST", b"INFOISFT\x03\x00\x00\x00ab\x00");
        chunk(b"fmt ", &fmt);
        chunk(
            b"fact",
            &((payload.len() / usize::from(channels)) as u32).to_le_bytes(),
        );
        chunk(b"data", payload);
        let mut wav = b"RIFF".to_vec();
        wav.extend_from_slice(&(4 + chunks.len() as u32).to_le_bytes());
        wav.extend_from_slice(b"WAVE");
        wav.extend_from_slice(&chunks);
        wav
    }

    fn assert_tone(samples: &[i16], freq: f64, expected_amplitude: f64) {
        // Skip the edges, where the resampler's filter ramps in and out.
        let middle = &samples[800..samples.len() - 800];
        let amplitude = goertzel_amplitude_i16(middle, freq);
        assert!(
            (amplitude - expected_amplitude).abs() < expected_amplitude * 0.1,
            "{freq} Hz at amplitude {amplitude}, expected {expected_amplitude}"
        );
    }

    #[test]
    fn stereo_44k1_16_bit_becomes_8k_mono_of_the_same_length_and_pitch() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("greeting.wav");
        write_int_wav(&path, 44100, 2, 16, 1.0, 1000.0);
        let samples = read_wav_8k(&path).unwrap();
        assert!(
            (samples.len() as i64 - 8000).abs() <= 160,
            "{}",
            samples.len()
        );
        assert_tone(&samples, 1000.0, 16383.0);
    }

    #[test]
    fn float_8_bit_and_24_bit_files_convert() {
        let dir = tempfile::tempdir().unwrap();
        let float = dir.path().join("float.wav");
        write_float_wav(&float, 48000, 0.5, 1000.0);
        let samples = read_wav_8k(&float).unwrap();
        assert!((samples.len() as i64 - 4000).abs() <= 160);
        assert_tone(&samples, 1000.0, 16384.0);

        let eight = dir.path().join("eight.wav");
        write_int_wav(&eight, 8000, 1, 8, 0.5, 1000.0);
        let samples = read_wav_8k(&eight).unwrap();
        assert_eq!(samples.len(), 4000, "8 kHz input is not resampled");
        assert_tone(&samples, 1000.0, 63.0 / 128.0 * 32768.0);

        let deep = dir.path().join("deep.wav");
        write_int_wav(&deep, 16000, 1, 24, 0.5, 1000.0);
        let samples = read_wav_8k(&deep).unwrap();
        assert!((samples.len() as i64 - 4000).abs() <= 160);
        assert_tone(&samples, 1000.0, 16384.0);
    }

    #[test]
    fn content_above_4k_is_filtered_not_aliased() {
        // At 48 kHz, 6 kHz decimated naively to 8 kHz folds to 2 kHz at full strength.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hiss.wav");
        write_int_wav(&path, 48000, 1, 16, 1.0, 6000.0);
        let samples = read_wav_8k(&path).unwrap();
        let middle = &samples[800..samples.len() - 800];
        let aliased = goertzel_amplitude_i16(middle, 2000.0);
        // 16383 in, at most -60 dB out.
        assert!(aliased < 16.0, "2 kHz alias at amplitude {aliased}");
    }

    #[test]
    fn alaw_and_ulaw_wavs_decode_including_extensible_and_stereo() {
        let tone = synthesize(&[(1000.0, 10000.0)], 8000);
        let dir = tempfile::tempdir().unwrap();
        for (tag, encode) in [
            (FORMAT_ALAW, g711::linear_to_alaw as fn(i16) -> u8),
            (FORMAT_ULAW, g711::linear_to_ulaw as fn(i16) -> u8),
        ] {
            let mono: Vec<u8> = tone.iter().map(|s| encode(*s)).collect();
            let stereo: Vec<u8> = mono.iter().flat_map(|b| [*b, *b]).collect();
            for (channels, payload, extensible) in
                [(1, &mono, false), (1, &mono, true), (2, &stereo, false)]
            {
                let path = dir
                    .path()
                    .join(format!("g711-{tag}-{channels}-{extensible}.wav"));
                std::fs::write(&path, g711_wav(tag, channels, payload, extensible)).unwrap();
                let samples = read_wav_8k(&path).unwrap();
                assert_eq!(samples.len(), 8000, "tag {tag}, {channels} ch");
                for (got, want) in samples.iter().zip(&tone) {
                    assert!((i32::from(*got) - i32::from(*want)).abs() <= 320);
                }
            }
        }
    }

    #[test]
    fn pcm_with_an_odd_list_chunk_before_fmt_still_reads() {
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("plain.wav");
        write_int_wav(&plain, 8000, 1, 16, 0.1, 1000.0);
        let bytes = std::fs::read(&plain).unwrap();
        let list = b"LIST\x05\x00\x00\x00INFOx\x00";
        let mut tagged = bytes[..12].to_vec();
        tagged.extend_from_slice(list);
        tagged.extend_from_slice(&bytes[12..]);
        let riff_size = (tagged.len() - 8) as u32;
        tagged[4..8].copy_from_slice(&riff_size.to_le_bytes());
        let expected = decode_wav_8k(&plain, &bytes).unwrap();
        assert_eq!(
            decode_wav_8k(Path::new("tagged.wav"), &tagged).unwrap(),
            expected
        );
        // A recorder that died mid-write: sizes claim more than there is, half a sample at the end.
        let cut = &tagged[..tagged.len() - 201];
        let salvaged = decode_wav_8k(Path::new("cut.wav"), cut).unwrap();
        assert_eq!(salvaged[..], expected[..expected.len() - 101]);
    }

    #[test]
    fn unsupported_and_broken_files_are_named_with_a_fix() {
        let dir = tempfile::tempdir().unwrap();
        let mp3 = dir.path().join("music.wav");
        std::fs::write(&mp3, g711_wav(0x55, 1, &[0u8; 100], false)).unwrap();
        let message = read_wav_8k(&mp3).unwrap_err().to_string();
        assert!(message.contains("music.wav"), "{message}");
        assert!(
            message.contains("unsupported format tag 85 (MP3)"),
            "{message}"
        );
        assert!(
            message.contains("sox in.wav -r 8000 -c 1 -b 16 out.wav"),
            "{message}"
        );

        let text = dir.path().join("notes.wav");
        std::fs::write(&text, b"hello, this is not audio").unwrap();
        assert!(matches!(read_wav_8k(&text), Err(WavError::NotWav { .. })));

        let missing = dir.path().join("missing.wav");
        assert!(matches!(read_wav_8k(&missing), Err(WavError::Io { .. })));

        let empty = dir.path().join("empty.wav");
        std::fs::write(&empty, g711_wav(FORMAT_ULAW, 1, &[], false)).unwrap();
        assert!(matches!(read_wav_8k(&empty), Err(WavError::Empty { .. })));
    }

    #[test]
    fn truncated_or_garbled_headers_never_panic() {
        let whole = g711_wav(FORMAT_ALAW, 1, &[0xD5; 321], false);
        for cut in 0..whole.len() {
            let _ = decode_wav_8k(Path::new("cut.wav"), &whole[..cut]);
        }
        let mut garbled = whole.clone();
        for i in 12..garbled.len().min(120) {
            garbled[i] ^= 0xA5;
            let _ = decode_wav_8k(Path::new("garbled.wav"), &garbled);
        }
    }
}
