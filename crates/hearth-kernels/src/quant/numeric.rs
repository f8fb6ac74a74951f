//! Scalar conversions shared by the (de)quantizers.
//!
//! Two reference implementations are mirrored bit for bit:
//! - gguf-py's numpy code (`gguf.quants`): float16 conversion as numpy's
//!   `npy_floatbits_to_halfbits` / `npy_halfbits_to_floatbits` (round half to
//!   even, NaN payloads kept), its `np_roundf`, and numpy's float -> integer
//!   casts as they behave on x86-64;
//! - ggml's C code (ggml-quants.c): `nearest_int` and C float -> integer casts.

/// f16 bits -> f32, exact; NaN payloads (also signalling ones) are kept, as
/// numpy's `astype(np.float32)` does.
#[inline]
pub fn f16_to_f32(h: u16) -> f32 {
    let sign = u32::from(h & 0x8000) << 16;
    let exp = u32::from((h >> 10) & 0x1f);
    let man = u32::from(h & 0x03ff);
    let bits = match exp {
        0 => {
            // Zero or subnormal: man * 2^-24, exact in f32.
            let v = man as f32 * (1.0 / 16_777_216.0);
            sign | v.to_bits()
        }
        0x1f => sign | 0x7f80_0000 | (man << 13),
        _ => sign | ((exp + 112) << 23) | (man << 13),
    };
    f32::from_bits(bits)
}

/// f32 -> f16 bits, round to nearest, ties to even; overflow gives a signed
/// infinity. A NaN keeps its sign and the top 10 payload bits (made non-zero
/// if they all are), exactly like numpy's `astype(np.float16)`.
#[inline]
pub fn f32_to_f16(x: f32) -> u16 {
    let f = x.to_bits();
    let sign = ((f >> 16) & 0x8000) as u16;
    let exp = ((f >> 23) & 0xff) as i32;
    let man = f & 0x007f_ffff;
    if exp == 0xff {
        if man == 0 {
            return sign | 0x7c00;
        }
        let h = 0x7c00 | (man >> 13) as u16;
        return sign | if h == 0x7c00 { 0x7c01 } else { h };
    }
    let e = exp - 127;
    if e > 15 {
        return sign | 0x7c00;
    }
    if e >= -14 {
        // Normal half; a carry out of the mantissa bumps the exponent, up to
        // infinity (0x7c00) for values >= 65520.
        let mut h = (((e + 15) as u32) << 10) | (man >> 13);
        let rest = man & 0x1fff;
        if rest > 0x1000 || (rest == 0x1000 && h & 1 == 1) {
            h += 1;
        }
        return sign | h as u16;
    }
    if e < -25 {
        return sign;
    }
    // Subnormal half: count units of 2^-24. value = sig * 2^(e - 23).
    let sig = man | 0x0080_0000;
    let shift = (-(e + 1)) as u32; // 14..=24
    let q = sig >> shift;
    let rem = sig & ((1u32 << shift) - 1);
    let halfway = 1u32 << (shift - 1);
    let h = if rem > halfway || (rem == halfway && q & 1 == 1) {
        q + 1
    } else {
        q
    };
    sign | h as u16
}

/// f32 -> f16 bits as ggml's `GGML_FP32_TO_FP16` (`ggml_compute_fp32_to_fp16`):
/// the same rounding as [`f32_to_f16`], but every NaN becomes `sign | 0x7e00`.
#[inline]
pub fn f32_to_f16_ggml(x: f32) -> u16 {
    if x.is_nan() {
        ((x.to_bits() >> 16) & 0x8000) as u16 | 0x7e00
    } else {
        f32_to_f16(x)
    }
}

/// bf16 bits -> f32 (exact, bits kept).
#[inline]
pub fn bf16_to_f32(h: u16) -> f32 {
    f32::from_bits(u32::from(h) << 16)
}

/// f32 -> bf16 bits as `ggml_compute_fp32_to_bf16` and gguf-py's `BF16`:
/// NaN is made quiet (truncated, bit 6 of the high half set), everything
/// else is rounded to nearest even.
#[inline]
pub fn f32_to_bf16(x: f32) -> u16 {
    let mut n = x.to_bits();
    if n & 0x7fff_ffff > 0x7f80_0000 {
        n = (n & 0xffff_0000) | (64 << 16);
    }
    ((u64::from(n) + u64::from(0x7fff + ((n >> 16) & 1))) >> 16) as u16
}

/// A float -> 32-bit integer conversion as compiled C (`(int)x`, `cvttss2si`)
/// and numpy's `astype` do it on x86-64: truncation toward zero, and the
/// "integer indefinite" `i32::MIN` for NaN and out-of-range values. Narrower
/// C/numpy integer casts then keep the low bits (`as u8`, `as i8`).
#[inline]
pub(crate) fn cvt_i32(x: f32) -> i32 {
    if (-2_147_483_648.0..2_147_483_648.0).contains(&x) {
        x as i32
    } else {
        i32::MIN
    }
}

/// gguf-py's `np_roundf`: round half away from zero, computed the way it is
/// there (`sign(n) * (floor(|n|) + floor(2 * (|n| - floor(|n|))))`).
#[inline]
pub(crate) fn np_roundf(n: f32) -> f32 {
    let a = n.abs();
    if a < 8_388_608.0 {
        // Below 2^23 truncating through i32 is floor(a), exactly; and
        // floor(2 * (a - floor(a))) is 0 or 1. Same result, no libm call.
        let floored = (a as i32) as f32;
        let b = if 2.0 * (a - floored) >= 1.0 {
            floored + 1.0
        } else {
            floored
        };
        return np_sign(n) * b;
    }
    let floored = a.floor();
    let b = floored + (2.0 * (a - floored)).floor();
    np_sign(n) * b
}

/// numpy's `sign` for float32: 1, -1, 0 (positive) or NaN.
#[inline]
fn np_sign(x: f32) -> f32 {
    if x > 0.0 {
        1.0
    } else if x < 0.0 {
        -1.0
    } else if x == 0.0 {
        0.0
    } else {
        x
    }
}

/// ggml's `nearest_int`: round to nearest (ties to even) through the
/// `x + 1.5 * 2^23` trick. Exact for |x| <= 4194303; other inputs give the
/// same (meaningless) value ggml computes, never a panic.
#[inline]
pub(crate) fn nearest_int(fval: f32) -> i32 {
    let val = fval + 12_582_912.0;
    let i = val.to_bits() as i32;
    (i & 0x007f_ffff) - 0x0040_0000
}

/// numpy `max` over a float32 slice: NaN if any element is NaN (the first
/// one), else the largest value. `xs` must not be empty.
#[inline]
pub(crate) fn np_max(xs: &[f32]) -> f32 {
    let mut m = xs[0];
    for &v in &xs[1..] {
        if m.is_nan() {
            break;
        }
        if v.is_nan() || v > m {
            m = v;
        }
    }
    m
}

/// numpy `min`, as [`np_max`].
#[inline]
pub(crate) fn np_min(xs: &[f32]) -> f32 {
    let mut m = xs[0];
    for &v in &xs[1..] {
        if m.is_nan() {
            break;
        }
        if v.is_nan() || v < m {
            m = v;
        }
    }
    m
}

/// numpy `abs(x).argmax()`: index of the first largest `|x|`, or of the first
/// NaN. `xs` must not be empty.
#[inline]
pub(crate) fn np_argmax_abs(xs: &[f32]) -> usize {
    let mut best = 0;
    let mut best_v = xs[0].abs();
    if best_v.is_nan() {
        return 0;
    }
    for (i, &x) in xs.iter().enumerate().skip(1) {
        let v = x.abs();
        if v.is_nan() {
            return i;
        }
        if v > best_v {
            best = i;
            best_v = v;
        }
    }
    best
}

/// numpy `abs(x).max()`.
#[inline]
pub(crate) fn np_amax(xs: &[f32]) -> f32 {
    let mut m = xs[0].abs();
    for &v in &xs[1..] {
        let a = v.abs();
        if m.is_nan() {
            break;
        }
        if a.is_nan() || a > m {
            m = a;
        }
    }
    m
}

/// `np.where(d == 0, 0, 1 / d)` in float32.
#[inline]
pub(crate) fn np_inv_or_zero(d: f32) -> f32 {
    if d == 0.0 {
        0.0
    } else {
        1.0 / d
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f16_round_trip_all_finite_halves() {
        for h in 0..=u16::MAX {
            let f = f16_to_f32(h);
            if f.is_nan() {
                assert_eq!(f32_to_f16(f), h, "NaN payload of {h:#06x} kept");
            } else {
                assert_eq!(f32_to_f16(f), h, "{h:#06x}");
            }
        }
    }

    #[test]
    fn f16_matches_half_crate_for_non_nan() {
        let mut s = 0x1234_5678_9abc_def0u64;
        for _ in 0..200_000 {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let x = f32::from_bits((s >> 32) as u32);
            if x.is_nan() {
                continue;
            }
            assert_eq!(f32_to_f16(x), half::f16::from_f32(x).to_bits(), "{x:e}");
        }
        for h in 0..=u16::MAX {
            let a = f16_to_f32(h);
            let b = half::f16::from_bits(h).to_f32();
            assert!(a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan()));
        }
    }

    #[test]
    fn f16_rounding_edges() {
        assert_eq!(f32_to_f16(65504.0), 0x7bff);
        assert_eq!(f32_to_f16(65519.996), 0x7bff);
        assert_eq!(f32_to_f16(65520.0), 0x7c00);
        assert_eq!(f32_to_f16(-1e10), 0xfc00);
        assert_eq!(f32_to_f16(f32::from_bits(0x3300_0000)), 0); // 2^-25: tie to even 0
        assert_eq!(f32_to_f16(f32::from_bits(0x3300_0001)), 1);
        assert_eq!(f32_to_f16(f32::from_bits(0x7f80_0001)), 0x7c01);
        assert_eq!(f32_to_f16(f32::from_bits(0xffa0_0000)), 0xfd00);
        assert_eq!(f32_to_f16(-0.0), 0x8000);
    }

    #[test]
    fn bf16_rounding_and_nan() {
        assert_eq!(f32_to_bf16(1.0), 0x3f80);
        assert_eq!(f32_to_bf16(f32::from_bits(0x3f80_8000)), 0x3f80); // tie, even
        assert_eq!(f32_to_bf16(f32::from_bits(0x3f81_8000)), 0x3f82); // tie, odd up
        assert_eq!(f32_to_bf16(f32::from_bits(0x7f80_0001)), 0x7fc0);
        assert_eq!(f32_to_bf16(f32::from_bits(0xff81_0000)), 0xffc1);
        assert_eq!(f32_to_bf16(f32::MAX), 0x7f80);
        assert_eq!(bf16_to_f32(0xc040).to_bits(), 0xc040_0000);
    }

    #[test]
    fn fast_np_roundf_equals_the_floor_formula() {
        fn reference(n: f32) -> f32 {
            let a = n.abs();
            let floored = a.floor();
            np_sign(n) * (floored + (2.0 * (a - floored)).floor())
        }
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut bits = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u32
        };
        let specials = [
            0.0,
            -0.0,
            0.5,
            -0.5,
            1.5,
            2.5,
            0.49999997,
            8_388_607.5,
            8_388_608.0,
            8_388_609.0,
            -8_388_607.5,
            1e30,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::MIN_POSITIVE,
        ];
        for x in specials
            .into_iter()
            .chain((0..200_000).map(|_| f32::from_bits(bits())))
        {
            if x.is_nan() {
                assert!(np_roundf(x).is_nan());
                continue;
            }
            assert_eq!(np_roundf(x).to_bits(), reference(x).to_bits(), "{x:e}");
        }
        for i in -100_000..100_000 {
            let x = i as f32 * 0.25 + 0.001 * (i % 7) as f32;
            assert_eq!(np_roundf(x).to_bits(), reference(x).to_bits(), "{x:e}");
        }
    }

    #[test]
    fn integer_helpers() {
        assert_eq!(nearest_int(2.5), 2);
        assert_eq!(nearest_int(3.5), 4);
        assert_eq!(nearest_int(-2.5), -2);
        assert_eq!(nearest_int(-0.4), 0);
        assert_eq!(np_roundf(2.5), 3.0);
        assert_eq!(np_roundf(-2.5), -3.0);
        assert_eq!(np_roundf(0.49999997), 0.0);
        assert_eq!(cvt_i32(-24.5) as u8, 232);
        assert_eq!(cvt_i32(300.0) as u8, 44);
        assert_eq!(cvt_i32(f32::NAN), i32::MIN);
        assert_eq!(cvt_i32(3e9), i32::MIN);
        assert_eq!(np_argmax_abs(&[1.0, -3.0, 3.0]), 1);
        assert!(np_max(&[1.0, f32::NAN, 3.0]).is_nan());
    }
}
