//! Dequantization of the grid i-quants: IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS,
//! IQ3_S, IQ1_S, IQ1_M.
//!
//! Each mirrors gguf-py's numpy code (`(db * grid) * sign` and
//! `dl * (grid + delta)` in f32), so results are bit-identical to it; the
//! grids are ggml's (see [`super::iq_grids`]).

use super::block::impl_block;
use super::iq_grids::{
    IQ1S_GRID, IQ2S_GRID, IQ2XS_GRID, IQ2XXS_GRID, IQ3S_GRID, IQ3XXS_GRID, KSIGNS_IQ2XS,
};
use super::numeric::f16_to_f32;
use hearth_gguf::QK_K;

/// `IQ1S_DELTA` / `IQ1M_DELTA`.
const IQ1_DELTA: f32 = 0.125;

/// `block_iq2_xxs` (ggml-common.h).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct BlockIQ2XXS {
    /// Super-block scale (f16 bits).
    pub d: u16,
    /// Per 32 weights, two u32: four grid indices (bytes), then four 7-bit
    /// sign indices and a 4-bit scale in the top bits.
    pub qs: [u16; QK_K / 8],
}
const _: () = assert!(std::mem::size_of::<BlockIQ2XXS>() == 66);
impl_block!(BlockIQ2XXS, QK_K, { d: u16 / u16, qs: u16s / u16s });

/// `block_iq2_xs` (ggml-common.h).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct BlockIQ2XS {
    /// Super-block scale (f16 bits).
    pub d: u16,
    /// 9-bit grid index and 7-bit sign index per 8 weights.
    pub qs: [u16; QK_K / 8],
    /// Two 4-bit scales per 32 weights.
    pub scales: [u8; QK_K / 32],
}
const _: () = assert!(std::mem::size_of::<BlockIQ2XS>() == 74);
impl_block!(BlockIQ2XS, QK_K, { d: u16 / u16, qs: u16s / u16s, scales: bytes / bytes });

/// `block_iq2_s` (ggml-common.h).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct BlockIQ2S {
    /// Super-block scale (f16 bits).
    pub d: u16,
    /// 32 low bytes of the grid indices, then 32 sign bytes.
    pub qs: [u8; QK_K / 4],
    /// High 2 bits of the grid indices.
    pub qh: [u8; QK_K / 32],
    /// Two 4-bit scales per 32 weights.
    pub scales: [u8; QK_K / 32],
}
const _: () = assert!(std::mem::size_of::<BlockIQ2S>() == 82);
impl_block!(BlockIQ2S, QK_K, { d: u16 / u16, qs: bytes / bytes, qh: bytes / bytes, scales: bytes / bytes });

/// `block_iq3_xxs` (ggml-common.h).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct BlockIQ3XXS {
    /// Super-block scale (f16 bits).
    pub d: u16,
    /// 64 grid indices, then per 32 weights a u32 of four 7-bit sign indices
    /// and a 4-bit scale.
    pub qs: [u8; 3 * QK_K / 8],
}
const _: () = assert!(std::mem::size_of::<BlockIQ3XXS>() == 98);
impl_block!(BlockIQ3XXS, QK_K, { d: u16 / u16, qs: bytes / bytes });

/// `block_iq3_s` (ggml-common.h).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct BlockIQ3S {
    /// Super-block scale (f16 bits).
    pub d: u16,
    /// Low 8 bits of the grid indices.
    pub qs: [u8; QK_K / 4],
    /// Ninth bit of the grid indices.
    pub qh: [u8; QK_K / 32],
    /// One sign bit per weight.
    pub signs: [u8; QK_K / 8],
    /// Two 4-bit scales per 64 weights.
    pub scales: [u8; QK_K / 64],
}
const _: () = assert!(std::mem::size_of::<BlockIQ3S>() == 110);
impl_block!(BlockIQ3S, QK_K, {
    d: u16 / u16, qs: bytes / bytes, qh: bytes / bytes, signs: bytes / bytes, scales: bytes / bytes
});

/// `block_iq1_s` (ggml-common.h).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct BlockIQ1S {
    /// Super-block scale (f16 bits).
    pub d: u16,
    /// Low 8 bits of the grid indices.
    pub qs: [u8; QK_K / 8],
    /// Per 32 weights: four 3-bit index highs, a 3-bit scale, the delta sign.
    pub qh: [u16; QK_K / 32],
}
const _: () = assert!(std::mem::size_of::<BlockIQ1S>() == 50);
impl_block!(BlockIQ1S, QK_K, { d: u16 / u16, qs: bytes / bytes, qh: u16s / u16s });

/// `block_iq1_m` (ggml-common.h); the f16 scale is split over the top
/// nibbles of the four little-endian u16 of `scales`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct BlockIQ1M {
    /// Low 8 bits of the grid indices.
    pub qs: [u8; QK_K / 8],
    /// Per 8 weights: 3-bit index high and the delta sign bit (two per byte).
    pub qh: [u8; QK_K / 16],
    /// 3-bit sub-block scales and the super-block scale.
    pub scales: [u8; QK_K / 32],
}
const _: () = assert!(std::mem::size_of::<BlockIQ1M>() == 56);
impl_block!(BlockIQ1M, QK_K, { qs: bytes / bytes, qh: bytes / bytes, scales: bytes / bytes });

/// Byte `j` of a grid entry.
#[inline]
fn grid_byte(entry: u64, j: usize) -> u8 {
    (entry >> (8 * j)) as u8
}

/// Writes `(db * grid[j]) * sign(j)` for the 8 weights of a u64 grid entry.
#[inline]
fn put8(y: &mut [f32], db: f32, entry: u64, signs: u8) {
    for (j, y) in y[..8].iter_mut().enumerate() {
        let s = if signs & (1 << j) != 0 { -1.0 } else { 1.0 };
        *y = db * f32::from(grid_byte(entry, j)) * s;
    }
}

pub(crate) fn dequantize_iq2_xxs(b: &BlockIQ2XXS, y: &mut [f32]) {
    let d = f16_to_f32(b.d);
    for (ib, y) in y[..QK_K].chunks_exact_mut(32).enumerate() {
        let q = &b.qs[4 * ib..4 * ib + 4];
        let aux0 = u32::from(q[0]) | (u32::from(q[1]) << 16);
        let aux1 = u32::from(q[2]) | (u32::from(q[3]) << 16);
        let db = d * (0.5 + (aux1 >> 28) as f32) * 0.25;
        for (l, y) in y.chunks_exact_mut(8).enumerate() {
            let idx = usize::from(aux0.to_le_bytes()[l]);
            let signs = KSIGNS_IQ2XS[((aux1 >> (7 * l)) & 127) as usize];
            put8(y, db, IQ2XXS_GRID[idx], signs);
        }
    }
}

pub(crate) fn dequantize_iq2_xs(b: &BlockIQ2XS, y: &mut [f32]) {
    let d = f16_to_f32(b.d);
    for (i, y) in y[..QK_K].chunks_exact_mut(8).enumerate() {
        let sc = (b.scales[i / 4] >> (4 * ((i / 2) % 2))) & 0x0f;
        let db = d * (0.5 + sc as f32) * 0.25;
        let q = b.qs[i];
        put8(
            y,
            db,
            IQ2XS_GRID[usize::from(q & 511)],
            KSIGNS_IQ2XS[usize::from(q >> 9)],
        );
    }
}

pub(crate) fn dequantize_iq2_s(b: &BlockIQ2S, y: &mut [f32]) {
    let d = f16_to_f32(b.d);
    let (qs, signs) = b.qs.split_at(QK_K / 8);
    for (i, y) in y[..QK_K].chunks_exact_mut(8).enumerate() {
        let sc = (b.scales[i / 4] >> (4 * ((i / 2) % 2))) & 0x0f;
        let db = d * (0.5 + sc as f32) * 0.25;
        let high = usize::from((b.qh[i / 4] >> (2 * (i % 4))) & 3);
        let idx = usize::from(qs[i]) | (high << 8);
        put8(y, db, IQ2S_GRID[idx], signs[i]);
    }
}

/// Writes `(db * grid[j]) * sign(j)` for 4 weights of a u32 grid entry with
/// the sign bits starting at `first_bit`.
#[inline]
fn put4(y: &mut [f32], db: f32, entry: u32, signs: u8, first_bit: usize) {
    for (j, y) in y[..4].iter_mut().enumerate() {
        let s = if signs & (1 << (first_bit + j)) != 0 {
            -1.0
        } else {
            1.0
        };
        *y = db * f32::from((entry >> (8 * j)) as u8) * s;
    }
}

pub(crate) fn dequantize_iq3_xxs(b: &BlockIQ3XXS, y: &mut [f32]) {
    let d = f16_to_f32(b.d);
    let (qs, scales_and_signs) = b.qs.split_at(QK_K / 4);
    for (ib, y) in y[..QK_K].chunks_exact_mut(32).enumerate() {
        let s = &scales_and_signs[4 * ib..4 * ib + 4];
        let aux = u32::from_le_bytes([s[0], s[1], s[2], s[3]]);
        let db = d * (0.5 + (aux >> 28) as f32) * 0.5;
        for (l, y) in y.chunks_exact_mut(8).enumerate() {
            let signs = KSIGNS_IQ2XS[((aux >> (7 * l)) & 127) as usize];
            let (y0, y1) = y.split_at_mut(4);
            put4(
                y0,
                db,
                IQ3XXS_GRID[usize::from(qs[8 * ib + 2 * l])],
                signs,
                0,
            );
            put4(
                y1,
                db,
                IQ3XXS_GRID[usize::from(qs[8 * ib + 2 * l + 1])],
                signs,
                4,
            );
        }
    }
}

pub(crate) fn dequantize_iq3_s(b: &BlockIQ3S, y: &mut [f32]) {
    let d = f16_to_f32(b.d);
    for (ib, y) in y[..QK_K].chunks_exact_mut(32).enumerate() {
        let sc = (b.scales[ib / 2] >> (4 * (ib % 2))) & 0x0f;
        // numpy: d * (1 + 2 * scales) with a uint8 factor.
        let db = d * f32::from(1 + 2 * sc);
        for (k, y) in y.chunks_exact_mut(4).enumerate() {
            let i = 8 * ib + k;
            let high = usize::from((b.qh[ib] >> k) & 1);
            let idx = usize::from(b.qs[i]) | (high << 8);
            let signs = b.signs[4 * ib + k / 2];
            put4(y, db, IQ3S_GRID[idx], signs, 4 * (k % 2));
        }
    }
}

/// Writes `dl * (grid[j] + delta)` for the 8 weights of an `IQ1S_GRID` entry.
#[inline]
fn put8_iq1(y: &mut [f32], dl: f32, entry: u64, delta: f32) {
    for (j, y) in y[..8].iter_mut().enumerate() {
        let g = f32::from(grid_byte(entry, j) as i8);
        *y = dl * (g + delta);
    }
}

pub(crate) fn dequantize_iq1_s(b: &BlockIQ1S, y: &mut [f32]) {
    let d = f16_to_f32(b.d);
    for (ib, y) in y[..QK_K].chunks_exact_mut(32).enumerate() {
        let qh = b.qh[ib];
        let dl = d * f32::from(2 * ((qh >> 12) & 7) + 1);
        let delta = if qh & 0x8000 != 0 {
            -IQ1_DELTA
        } else {
            IQ1_DELTA
        };
        for (l, y) in y.chunks_exact_mut(8).enumerate() {
            let idx = usize::from(b.qs[4 * ib + l]) | (usize::from((qh >> (3 * l)) & 7) << 8);
            put8_iq1(y, dl, IQ1S_GRID[idx], delta);
        }
    }
}

pub(crate) fn dequantize_iq1_m(b: &BlockIQ1M, y: &mut [f32]) {
    let sc: [u16; 4] =
        std::array::from_fn(|k| u16::from_le_bytes([b.scales[2 * k], b.scales[2 * k + 1]]));
    let d_bits =
        (sc[0] >> 12) | ((sc[1] >> 8) & 0x00f0) | ((sc[2] >> 4) & 0x0f00) | (sc[3] & 0xf000);
    let d = f16_to_f32(d_bits);
    for (ib, y) in y[..QK_K].chunks_exact_mut(32).enumerate() {
        for (half, y) in y.chunks_exact_mut(16).enumerate() {
            let s = (sc[ib / 2] >> (6 * (ib % 2) + 3 * half)) & 7;
            let dl = d * f32::from(2 * s + 1);
            let qh = b.qh[2 * ib + half];
            for (l, y) in y.chunks_exact_mut(8).enumerate() {
                let nib = qh >> (4 * l);
                let idx = usize::from(b.qs[4 * ib + 2 * half + l]) | (usize::from(nib & 7) << 8);
                let delta = if nib & 8 != 0 { -IQ1_DELTA } else { IQ1_DELTA };
                put8_iq1(y, dl, IQ1S_GRID[idx], delta);
            }
        }
    }
}
