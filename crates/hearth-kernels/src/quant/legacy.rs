//! The 32-weight "legacy" quants: Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q8_1.
//!
//! Dequantization and quantization of Q4_0..Q8_0 mirror gguf-py's numpy code
//! (`gguf/quants.py`) operation by operation, so results are bit-identical to
//! it; those quantizers are also what ggml's `quantize_row_*_ref` compute for
//! finite input. Q8_1 (absent from gguf-py) follows ggml:
//! `quantize_row_q8_1_ref`, and dequantization as `qs[j] * d` (the `s` sum
//! field is ignored, as in Q8_0).

use super::block::impl_block;
use super::numeric::{
    cvt_i32, f16_to_f32, f32_to_f16, f32_to_f16_ggml, np_amax, np_argmax_abs, np_inv_or_zero,
    np_max, np_min, np_roundf,
};

const QK: usize = 32;

/// `block_q4_0` (ggml-common.h): 32 weights `d * (q - 8)`, q in 0..16.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct BlockQ4_0 {
    /// Scale (f16 bits).
    pub d: u16,
    /// Nibbles: weight j in the low nibble of `qs[j]`, weight j+16 in the high one.
    pub qs: [u8; QK / 2],
}
const _: () = assert!(std::mem::size_of::<BlockQ4_0>() == 18);
impl_block!(BlockQ4_0, QK, { d: u16 / u16, qs: bytes / bytes });

/// `block_q4_1` (ggml-common.h): 32 weights `d * q + m`, q in 0..16.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct BlockQ4_1 {
    /// Scale (f16 bits).
    pub d: u16,
    /// Minimum (f16 bits).
    pub m: u16,
    /// Nibbles, as in [`BlockQ4_0`].
    pub qs: [u8; QK / 2],
}
const _: () = assert!(std::mem::size_of::<BlockQ4_1>() == 20);
impl_block!(BlockQ4_1, QK, { d: u16 / u16, m: u16 / u16, qs: bytes / bytes });

/// `block_q5_0` (ggml-common.h): 32 weights `d * (q - 16)`, q in 0..32.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct BlockQ5_0 {
    /// Scale (f16 bits).
    pub d: u16,
    /// Fifth bit of weight j in bit j of this little-endian u32.
    pub qh: [u8; 4],
    /// Low nibbles, as in [`BlockQ4_0`].
    pub qs: [u8; QK / 2],
}
const _: () = assert!(std::mem::size_of::<BlockQ5_0>() == 22);
impl_block!(BlockQ5_0, QK, { d: u16 / u16, qh: bytes / bytes, qs: bytes / bytes });

/// `block_q5_1` (ggml-common.h): 32 weights `d * q + m`, q in 0..32.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct BlockQ5_1 {
    /// Scale (f16 bits).
    pub d: u16,
    /// Minimum (f16 bits).
    pub m: u16,
    /// Fifth bits, as in [`BlockQ5_0`].
    pub qh: [u8; 4],
    /// Low nibbles.
    pub qs: [u8; QK / 2],
}
const _: () = assert!(std::mem::size_of::<BlockQ5_1>() == 24);
impl_block!(BlockQ5_1, QK, { d: u16 / u16, m: u16 / u16, qh: bytes / bytes, qs: bytes / bytes });

/// `block_q8_0` (ggml-common.h): 32 weights `d * q`, q an i8.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct BlockQ8_0 {
    /// Scale (f16 bits).
    pub d: u16,
    /// Quants.
    pub qs: [i8; QK],
}
const _: () = assert!(std::mem::size_of::<BlockQ8_0>() == 34);
impl_block!(BlockQ8_0, QK, { d: u16 / u16, qs: i8s / i8s });

/// `block_q8_1` (ggml-common.h): as Q8_0 plus `s = d * sum(qs)`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct BlockQ8_1 {
    /// Scale (f16 bits).
    pub d: u16,
    /// `d * sum(qs)` (f16 bits), used by dot products.
    pub s: u16,
    /// Quants.
    pub qs: [i8; QK],
}
const _: () = assert!(std::mem::size_of::<BlockQ8_1>() == 36);
impl_block!(BlockQ8_1, QK, { d: u16 / u16, s: u16 / u16, qs: i8s / i8s });

// ---------------------------------------------------------------- dequantize

pub(crate) fn dequantize_q4_0(b: &BlockQ4_0, y: &mut [f32]) {
    let d = f16_to_f32(b.d);
    let (lo, hi) = y[..QK].split_at_mut(QK / 2);
    for j in 0..QK / 2 {
        lo[j] = d * ((b.qs[j] & 0x0f) as i8 - 8) as f32;
        hi[j] = d * ((b.qs[j] >> 4) as i8 - 8) as f32;
    }
}

pub(crate) fn dequantize_q4_1(b: &BlockQ4_1, y: &mut [f32]) {
    let d = f16_to_f32(b.d);
    let m = f16_to_f32(b.m);
    let (lo, hi) = y[..QK].split_at_mut(QK / 2);
    for j in 0..QK / 2 {
        lo[j] = d * (b.qs[j] & 0x0f) as f32 + m;
        hi[j] = d * (b.qs[j] >> 4) as f32 + m;
    }
}

pub(crate) fn dequantize_q5_0(b: &BlockQ5_0, y: &mut [f32]) {
    let d = f16_to_f32(b.d);
    let qh = u32::from_le_bytes(b.qh);
    let (lo, hi) = y[..QK].split_at_mut(QK / 2);
    for j in 0..QK / 2 {
        let h0 = (((qh >> j) & 1) << 4) as u8;
        let h1 = (((qh >> (j + 16)) & 1) << 4) as u8;
        lo[j] = d * (((b.qs[j] & 0x0f) | h0) as i8 - 16) as f32;
        hi[j] = d * (((b.qs[j] >> 4) | h1) as i8 - 16) as f32;
    }
}

pub(crate) fn dequantize_q5_1(b: &BlockQ5_1, y: &mut [f32]) {
    let d = f16_to_f32(b.d);
    let m = f16_to_f32(b.m);
    let qh = u32::from_le_bytes(b.qh);
    let (lo, hi) = y[..QK].split_at_mut(QK / 2);
    for j in 0..QK / 2 {
        let h0 = (((qh >> j) & 1) << 4) as u8;
        let h1 = (((qh >> (j + 16)) & 1) << 4) as u8;
        lo[j] = d * ((b.qs[j] & 0x0f) | h0) as f32 + m;
        hi[j] = d * ((b.qs[j] >> 4) | h1) as f32 + m;
    }
}

pub(crate) fn dequantize_q8_0(b: &BlockQ8_0, y: &mut [f32]) {
    let d = f16_to_f32(b.d);
    for (y, &q) in y[..QK].iter_mut().zip(&b.qs) {
        *y = q as f32 * d;
    }
}

pub(crate) fn dequantize_q8_1(b: &BlockQ8_1, y: &mut [f32]) {
    let d = f16_to_f32(b.d);
    for (y, &q) in y[..QK].iter_mut().zip(&b.qs) {
        *y = q as f32 * d;
    }
}

// ------------------------------------------------------------------ quantize

/// numpy's `np.trunc(v).astype(np.uint8).clip(0, max)` on one float32.
#[inline]
fn trunc_u8_clip(v: f32, max: u8) -> u8 {
    // cvt_i32 truncates already: cvt_i32(v.trunc()) == cvt_i32(v) for every v.
    (cvt_i32(v) as u8).min(max)
}

/// Packs 32 4-bit values: j in the low nibble of byte j, j+16 in the high one.
#[inline]
fn pack_nibbles(q: &[u8; QK]) -> [u8; QK / 2] {
    let mut qs = [0u8; QK / 2];
    for j in 0..QK / 2 {
        qs[j] = (q[j] & 0x0f) | (q[j + QK / 2] << 4);
    }
    qs
}

/// Fifth bits of 32 5-bit values, bit j of a little-endian u32.
#[inline]
fn pack_fifth_bits(q: &[u8; QK]) -> [u8; 4] {
    let mut qh = 0u32;
    for (j, &v) in q.iter().enumerate() {
        qh |= u32::from(v >> 4 != 0) << j;
    }
    qh.to_le_bytes()
}

pub(crate) fn quantize_q4_0(x: &[f32]) -> BlockQ4_0 {
    let x = &x[..QK];
    let max = x[np_argmax_abs(x)];
    let d = max / -8.0;
    let id = np_inv_or_zero(d);
    let q: [u8; QK] = std::array::from_fn(|j| trunc_u8_clip(x[j] * id + 8.5, 15));
    BlockQ4_0 {
        d: f32_to_f16(d),
        qs: pack_nibbles(&q),
    }
}

pub(crate) fn quantize_q4_1(x: &[f32]) -> BlockQ4_1 {
    let x = &x[..QK];
    let max = np_max(x);
    let min = np_min(x);
    let d = (max - min) / 15.0;
    let id = np_inv_or_zero(d);
    let q: [u8; QK] = std::array::from_fn(|j| trunc_u8_clip((x[j] - min) * id + 0.5, 15));
    BlockQ4_1 {
        d: f32_to_f16(d),
        m: f32_to_f16(min),
        qs: pack_nibbles(&q),
    }
}

pub(crate) fn quantize_q5_0(x: &[f32]) -> BlockQ5_0 {
    let x = &x[..QK];
    let max = x[np_argmax_abs(x)];
    let d = max / -16.0;
    let id = np_inv_or_zero(d);
    let q: [u8; QK] = std::array::from_fn(|j| trunc_u8_clip(x[j] * id + 16.5, 31));
    BlockQ5_0 {
        d: f32_to_f16(d),
        qh: pack_fifth_bits(&q),
        qs: pack_nibbles(&q),
    }
}

pub(crate) fn quantize_q5_1(x: &[f32]) -> BlockQ5_1 {
    let x = &x[..QK];
    let max = np_max(x);
    let min = np_min(x);
    let d = (max - min) / 31.0;
    let id = np_inv_or_zero(d);
    let q: [u8; QK] = std::array::from_fn(|j| trunc_u8_clip((x[j] - min) * id + 0.5, 31));
    BlockQ5_1 {
        d: f32_to_f16(d),
        m: f32_to_f16(min),
        qh: pack_fifth_bits(&q),
        qs: pack_nibbles(&q),
    }
}

pub(crate) fn quantize_q8_0(x: &[f32]) -> BlockQ8_0 {
    let x = &x[..QK];
    // Fast path for finite blocks (branch-free, vectorizable): the largest
    // |x| compared as bits (monotonic for non-NaN), round half away from
    // zero through truncation. Same bytes as the general path below.
    let mut amax_bits = 0u32;
    for &v in x {
        amax_bits = amax_bits.max(v.to_bits() & 0x7fff_ffff);
    }
    let d = f32::from_bits(amax_bits) / 127.0;
    // A normal (or zero) scale keeps |x * id| <= 127.5; tiny and
    // non-finite blocks take the general path (C's cast of inf, NaN).
    if amax_bits < 0x7f80_0000 && (d == 0.0 || d.is_normal()) {
        let id = np_inv_or_zero(d);
        let mut qs = [0i8; QK];
        for (q, &v) in qs.iter_mut().zip(x) {
            // |v * id| <= 127.5, so the i32 truncation is exact.
            let v = v * id;
            let t = v as i32;
            let f = v - t as f32;
            *q = (t + i32::from(f >= 0.5) - i32::from(f <= -0.5)) as i8;
        }
        return BlockQ8_0 {
            d: f32_to_f16(d),
            qs,
        };
    }
    let d = np_amax(x) / 127.0;
    let id = np_inv_or_zero(d);
    BlockQ8_0 {
        d: f32_to_f16(d),
        qs: std::array::from_fn(|j| cvt_i32(np_roundf(x[j] * id)) as i8),
    }
}

/// `quantize_row_q8_1_ref` (ggml-quants.c), C semantics included.
pub(crate) fn quantize_q8_1(x: &[f32]) -> BlockQ8_1 {
    let x = &x[..QK];
    let mut amax = 0.0f32;
    for &v in x {
        let a = v.abs();
        amax = if amax > a { amax } else { a };
    }
    let d = amax / 127.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    let qs: [i8; QK] = std::array::from_fn(|j| cvt_i32((x[j] * id).round()) as i8);
    let sum: i32 = qs.iter().map(|&q| i32::from(q)).sum();
    BlockQ8_1 {
        d: f32_to_f16_ggml(d),
        s: f32_to_f16_ggml(sum as f32 * d),
        qs,
    }
}
