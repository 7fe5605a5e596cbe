//! ITU-T G.711 µ-law and A-law companding, bit-exact with the classic Sun Microsystems
//! reference (`g711.c`) that most telephony stacks (and SoX, Asterisk, FreeSWITCH) share.
//!
//! Owns only the sample <-> byte mapping. Encoding runs through tables built at compile time
//! from the reference bit operations, so a frame costs 160 table look-ups: the media path
//! encodes nothing per call at runtime except while transcoding a bridged call.

const SIGN_BIT: u8 = 0x80;
const QUANT_MASK: u8 = 0x0F;
const SEG_SHIFT: u32 = 4;
const SEG_MASK: u8 = 0x70;

/// µ-law bias (0x84) as the reference applies it to 14-bit magnitudes.
const ULAW_BIAS: i32 = 0x84;
/// Largest 14-bit magnitude µ-law represents before clipping.
const ULAW_CLIP: i32 = 8159;

const SEG_UEND: [i32; 8] = [0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF];
const SEG_AEND: [i32; 8] = [0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF];

/// The µ-law byte of digital silence (a positive zero).
pub const ULAW_SILENCE: u8 = 0xFF;
/// The A-law byte of digital silence (the smallest positive step; A-law has no exact zero).
pub const ALAW_SILENCE: u8 = 0xD5;

const fn segment(value: i32, ends: &[i32; 8]) -> usize {
    let mut seg = 0;
    while seg < 8 {
        if value <= ends[seg] {
            return seg;
        }
        seg += 1;
    }
    8
}

/// Reference µ-law encoder on a 14-bit sample (`pcm >> 2`).
const fn ulaw_from_14bit(pcm14: i32) -> u8 {
    let (mut magnitude, mask) = if pcm14 < 0 {
        (-pcm14, 0x7F)
    } else {
        (pcm14, 0xFF)
    };
    if magnitude > ULAW_CLIP {
        magnitude = ULAW_CLIP;
    }
    magnitude += ULAW_BIAS >> 2;
    let seg = segment(magnitude, &SEG_UEND);
    if seg >= 8 {
        0x7F ^ mask
    } else {
        let uval = ((seg as i32) << 4) | ((magnitude >> (seg + 1)) & 0xF);
        (uval as u8) ^ mask
    }
}

/// Reference A-law encoder on a 13-bit sample (`pcm >> 3`).
const fn alaw_from_13bit(pcm13: i32) -> u8 {
    let (magnitude, mask) = if pcm13 >= 0 {
        (pcm13, 0xD5)
    } else {
        (-pcm13 - 1, 0x55)
    };
    let seg = segment(magnitude, &SEG_AEND);
    if seg >= 8 {
        0x7F ^ mask
    } else {
        let mut aval = (seg as i32) << SEG_SHIFT;
        if seg < 2 {
            aval |= (magnitude >> 1) & QUANT_MASK as i32;
        } else {
            aval |= (magnitude >> seg) & QUANT_MASK as i32;
        }
        (aval as u8) ^ mask
    }
}

const fn ulaw_to_linear_ref(code: u8) -> i16 {
    let u = !code;
    let mut t = (((u & QUANT_MASK) as i32) << 3) + ULAW_BIAS;
    t <<= ((u & SEG_MASK) >> SEG_SHIFT) as i32;
    (if u & SIGN_BIT != 0 {
        ULAW_BIAS - t
    } else {
        t - ULAW_BIAS
    }) as i16
}

const fn alaw_to_linear_ref(code: u8) -> i16 {
    let a = code ^ 0x55;
    let mut t = ((a & QUANT_MASK) as i32) << 4;
    let seg = ((a & SEG_MASK) >> SEG_SHIFT) as i32;
    match seg {
        0 => t += 8,
        1 => t += 0x108,
        _ => {
            t += 0x108;
            t <<= seg - 1;
        }
    }
    (if a & SIGN_BIT != 0 { t } else { -t }) as i16
}

/// Indexed by `(pcm >> 2) + 8192`: every 14-bit sample value.
static ULAW_ENCODE: [u8; 16384] = {
    let mut table = [0u8; 16384];
    let mut i = 0;
    while i < 16384 {
        table[i] = ulaw_from_14bit(i as i32 - 8192);
        i += 1;
    }
    table
};

/// Indexed by `(pcm >> 3) + 4096`: every 13-bit sample value.
static ALAW_ENCODE: [u8; 8192] = {
    let mut table = [0u8; 8192];
    let mut i = 0;
    while i < 8192 {
        table[i] = alaw_from_13bit(i as i32 - 4096);
        i += 1;
    }
    table
};

static ULAW_DECODE: [i16; 256] = {
    let mut table = [0i16; 256];
    let mut i = 0;
    while i < 256 {
        table[i] = ulaw_to_linear_ref(i as u8);
        i += 1;
    }
    table
};

static ALAW_DECODE: [i16; 256] = {
    let mut table = [0i16; 256];
    let mut i = 0;
    while i < 256 {
        table[i] = alaw_to_linear_ref(i as u8);
        i += 1;
    }
    table
};

/// Bridged legs that negotiated different laws: one look-up per byte instead of decode+encode.
static ULAW_TO_ALAW: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        table[i] = alaw_from_13bit((ulaw_to_linear_ref(i as u8) as i32) >> 3);
        i += 1;
    }
    table
};

static ALAW_TO_ULAW: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        table[i] = ulaw_from_14bit((alaw_to_linear_ref(i as u8) as i32) >> 2);
        i += 1;
    }
    table
};

#[inline]
pub fn linear_to_ulaw(pcm: i16) -> u8 {
    ULAW_ENCODE[((pcm >> 2) as i32 + 8192) as usize]
}

#[inline]
pub fn ulaw_to_linear(code: u8) -> i16 {
    ULAW_DECODE[code as usize]
}

#[inline]
pub fn linear_to_alaw(pcm: i16) -> u8 {
    ALAW_ENCODE[((pcm >> 3) as i32 + 4096) as usize]
}

#[inline]
pub fn alaw_to_linear(code: u8) -> i16 {
    ALAW_DECODE[code as usize]
}

#[inline]
pub fn ulaw_to_alaw(code: u8) -> u8 {
    ULAW_TO_ALAW[code as usize]
}

#[inline]
pub fn alaw_to_ulaw(code: u8) -> u8 {
    ALAW_TO_ULAW[code as usize]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ulaw_matches_reference_values() {
        // Values from Sun's g711.c (linear2ulaw / ulaw2linear).
        assert_eq!(linear_to_ulaw(0), 0xFF);
        assert_eq!(
            linear_to_ulaw(-1),
            0x7E,
            "-1 >> 2 stays -1 in the reference"
        );
        assert_eq!(linear_to_ulaw(1), 0xFF);
        assert_eq!(linear_to_ulaw(i16::MAX), 0x80);
        assert_eq!(linear_to_ulaw(i16::MIN), 0x00);
        assert_eq!(linear_to_ulaw(1000), 0xCE);
        assert_eq!(linear_to_ulaw(-1000), 0x4E);
        assert_eq!(ulaw_to_linear(0xFF), 0);
        assert_eq!(ulaw_to_linear(0x7F), 0);
        assert_eq!(ulaw_to_linear(0x80), 32124);
        assert_eq!(ulaw_to_linear(0x00), -32124);
        assert_eq!(ulaw_to_linear(0xCE), 988);
        assert_eq!(ulaw_to_linear(0x7E), -8);
    }

    #[test]
    fn alaw_matches_reference_values() {
        assert_eq!(linear_to_alaw(0), 0xD5);
        assert_eq!(linear_to_alaw(-1), 0x55);
        assert_eq!(linear_to_alaw(i16::MAX), 0xAA);
        assert_eq!(linear_to_alaw(i16::MIN), 0x2A);
        assert_eq!(linear_to_alaw(1000), 0xFA);
        assert_eq!(linear_to_alaw(-1000), 0x7A);
        assert_eq!(alaw_to_linear(0xD5), 8);
        assert_eq!(alaw_to_linear(0x55), -8);
        assert_eq!(alaw_to_linear(0xAA), 32256);
        assert_eq!(alaw_to_linear(0x2A), -32256);
        assert_eq!(alaw_to_linear(0xFA), 1008);
    }

    #[test]
    fn every_code_survives_a_round_trip() {
        for code in 0..=255u8 {
            let linear = ulaw_to_linear(code);
            assert_eq!(
                ulaw_to_linear(linear_to_ulaw(linear)),
                linear,
                "µ-law {code:#04x}"
            );
            let linear = alaw_to_linear(code);
            assert_eq!(linear_to_alaw(linear), code, "A-law {code:#04x}");
        }
        // µ-law has two zeros (0xFF, 0x7F); every other code maps back to itself.
        for code in (0..=255u8).filter(|c| *c != 0x7F) {
            assert_eq!(
                linear_to_ulaw(ulaw_to_linear(code)),
                code,
                "µ-law {code:#04x}"
            );
        }
    }

    #[test]
    fn quantisation_error_stays_within_the_segment_step() {
        for pcm in (i16::MIN..=i16::MAX).step_by(7) {
            let u = i32::from(ulaw_to_linear(linear_to_ulaw(pcm)));
            let a = i32::from(alaw_to_linear(linear_to_alaw(pcm)));
            let p = i32::from(pcm);
            // Largest step is 1024 (µ-law) / 1024 (A-law) in the top segment, plus clipping.
            let bound = (p.abs() / 16).max(16) + 700;
            assert!((u - p).abs() <= bound, "µ-law {pcm} -> {u}");
            assert!((a - p).abs() <= bound, "A-law {pcm} -> {a}");
            assert!(
                u.signum() * p.signum() >= 0,
                "µ-law keeps the sign of {pcm}"
            );
        }
    }

    #[test]
    fn direct_transcoding_equals_decode_then_encode() {
        for code in 0..=255u8 {
            assert_eq!(ulaw_to_alaw(code), linear_to_alaw(ulaw_to_linear(code)));
            assert_eq!(alaw_to_ulaw(code), linear_to_ulaw(alaw_to_linear(code)));
        }
    }
}
