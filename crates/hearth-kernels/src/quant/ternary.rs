//! The ternary types TQ1_0 (base-3 packed, 1.6875 bpw) and TQ2_0 (2-bit),
//! weights in {-d, 0, d}.
//!
//! Both directions mirror gguf-py's numpy code (bit-identical to it); for
//! finite input that is also what ggml's `quantize_row_tq*_0_ref` computes.

use super::block::impl_block;
use super::numeric::{cvt_i32, f16_to_f32, f32_to_f16, np_amax, np_inv_or_zero, np_roundf};
use hearth_gguf::QK_K;

/// `block_tq1_0` (ggml-common.h).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct BlockTQ1_0 {
    /// Five trits per byte (fixed-point base-3 fraction).
    pub qs: [u8; (QK_K - 4 * QK_K / 64) / 5],
    /// Four trits per byte.
    pub qh: [u8; QK_K / 64],
    /// Scale (f16 bits).
    pub d: u16,
}
const _: () = assert!(std::mem::size_of::<BlockTQ1_0>() == 54);
impl_block!(BlockTQ1_0, QK_K, { qs: bytes / bytes, qh: bytes / bytes, d: u16 / u16 });

/// `block_tq2_0` (ggml-common.h).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct BlockTQ2_0 {
    /// 2-bit values `q + 1`.
    pub qs: [u8; QK_K / 4],
    /// Scale (f16 bits).
    pub d: u16,
}
const _: () = assert!(std::mem::size_of::<BlockTQ2_0>() == 66);
impl_block!(BlockTQ2_0, QK_K, { qs: bytes / bytes, d: u16 / u16 });

const POW3: [u8; 5] = [1, 3, 9, 27, 81];

/// The trit `n` (0..5) of a TQ1_0 byte, as -1, 0 or 1 (wrapping u8 maths).
#[inline]
fn trit(byte: u8, n: usize) -> i8 {
    let q = byte.wrapping_mul(POW3[n]);
    ((u16::from(q) * 3) >> 8) as i8 - 1
}

pub(crate) fn dequantize_tq1_0(b: &BlockTQ1_0, y: &mut [f32]) {
    let d = f16_to_f32(b.d);
    let mut y = y[..QK_K].iter_mut();
    let mut put = |q: i8| {
        if let Some(v) = y.next() {
            *v = d * q as f32;
        }
    };
    let (qs0, qs1) = b.qs.split_at(32);
    for n in 0..5 {
        for &byte in qs0 {
            put(trit(byte, n));
        }
    }
    for n in 0..5 {
        for &byte in qs1 {
            put(trit(byte, n));
        }
    }
    for n in 0..4 {
        for &byte in &b.qh {
            put(trit(byte, n));
        }
    }
}

pub(crate) fn dequantize_tq2_0(b: &BlockTQ2_0, y: &mut [f32]) {
    let d = f16_to_f32(b.d);
    for (k, y) in y[..QK_K].iter_mut().enumerate() {
        let (c, s, m) = (k / 128, (k % 128) / 32, k % 32);
        let q = ((b.qs[32 * c + m] >> (2 * s)) & 3) as i8 - 1;
        *y = d * q as f32;
    }
}

/// gguf-py: `q = np_roundf(x * id).astype(int8) + 1` as uint8.
#[inline]
fn ternary_levels(x: &[f32]) -> (f32, [u8; QK_K]) {
    let x = &x[..QK_K];
    let d = np_amax(x);
    let id = np_inv_or_zero(d);
    let q = std::array::from_fn(|j| (cvt_i32(np_roundf(x[j] * id)) as i8).wrapping_add(1) as u8);
    (d, q)
}

/// Base-3 packing of gguf-py (uint8 products summed, then
/// `(v * 256 + 242) // 243` in uint16).
#[inline]
fn pack_trits(q: &[u8], stride: usize, weights: &[u8]) -> u8 {
    let mut v = 0u64;
    for (n, &w) in weights.iter().enumerate() {
        v += u64::from(q[n * stride].wrapping_mul(w));
    }
    ((v as u16).wrapping_mul(256).wrapping_add(243 - 1) / 243) as u8
}

pub(crate) fn quantize_tq1_0(x: &[f32]) -> BlockTQ1_0 {
    let (d, q) = ternary_levels(x);
    let w5 = [81, 27, 9, 3, 1];
    let mut b = BlockTQ1_0 {
        qs: [0; 48],
        qh: [0; 4],
        d: f32_to_f16(d),
    };
    for m in 0..32 {
        b.qs[m] = pack_trits(&q[m..], 32, &w5);
    }
    for m in 0..16 {
        b.qs[32 + m] = pack_trits(&q[160 + m..], 16, &w5);
    }
    for m in 0..4 {
        b.qh[m] = pack_trits(&q[240 + m..], 4, &w5[..4]);
    }
    b
}

pub(crate) fn quantize_tq2_0(x: &[f32]) -> BlockTQ2_0 {
    let (d, q) = ternary_levels(x);
    let mut b = BlockTQ2_0 {
        qs: [0; 64],
        d: f32_to_f16(d),
    };
    for c in 0..2 {
        for m in 0..32 {
            let v = |s: usize| q[128 * c + 32 * s + m] << (2 * s);
            b.qs[32 * c + m] = v(0) | v(1) | v(2) | v(3);
        }
    }
    b
}
