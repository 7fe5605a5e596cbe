//! Single-frequency analysis (Goertzel) and tone synthesis at 8 kHz.
//!
//! Owns the arithmetic only: the in-band DTMF detector and the audio-quality tests are built on
//! it. Knows nothing about RTP, codecs or files.

use super::codec::CLOCK_RATE;

/// The amplitude (in sample units) of the `frequency` component of `samples` taken at
/// `sample_rate`: a pure tone of amplitude A over a whole number of periods reads back as A.
pub fn goertzel_amplitude(samples: &[f32], frequency: f64, sample_rate: u32) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    let omega = 2.0 * std::f64::consts::PI * frequency / f64::from(sample_rate);
    let coefficient = 2.0 * omega.cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for sample in samples {
        let s0 = f64::from(*sample) + coefficient * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    let power = s1 * s1 + s2 * s2 - coefficient * s1 * s2;
    2.0 * power.max(0.0).sqrt() / samples.len() as f64
}

/// [`goertzel_amplitude`] over 8 kHz 16-bit samples, as prompts and decoded RTP hold them.
pub fn goertzel_amplitude_i16(samples: &[i16], frequency: f64) -> f64 {
    let floats: Vec<f32> = samples.iter().map(|s| f32::from(*s)).collect();
    goertzel_amplitude(&floats, frequency, CLOCK_RATE)
}

/// `count` samples of a sum of sine tones at 8 kHz, each `(frequency, amplitude)`, clipped to i16.
pub fn synthesize(tones: &[(f64, f64)], count: usize) -> Vec<i16> {
    (0..count)
        .map(|n| {
            let t = n as f64 / f64::from(CLOCK_RATE);
            let value: f64 = tones
                .iter()
                .map(|(frequency, amplitude)| {
                    amplitude * (2.0 * std::f64::consts::PI * frequency * t).sin()
                })
                .sum();
            value
                .round()
                .clamp(f64::from(i16::MIN), f64::from(i16::MAX)) as i16
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn goertzel_reads_back_the_amplitude_of_a_tone() {
        let samples = synthesize(&[(1000.0, 8000.0)], 800);
        let at_tone = goertzel_amplitude_i16(&samples, 1000.0);
        assert!((at_tone - 8000.0).abs() < 80.0, "{at_tone}");
        let elsewhere = goertzel_amplitude_i16(&samples, 1500.0);
        assert!(elsewhere < 80.0, "{elsewhere}");
    }

    #[test]
    fn goertzel_of_nothing_is_zero() {
        assert_eq!(goertzel_amplitude(&[], 1000.0, 8000), 0.0);
    }
}
