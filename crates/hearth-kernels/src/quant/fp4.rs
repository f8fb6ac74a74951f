//! The FP4 (E2M1) types: MXFP4 (32 weights, one E8M0 exponent) and NVFP4
//! (64 weights, four UE4M3 scales of 16 weights each).
//!
//! Dequantization of both and quantization of MXFP4 mirror gguf-py's numpy
//! code (bit-identical). NVFP4 quantization (absent from gguf-py) is ggml's
//! `quantize_row_nvfp4_ref`.

use super::block::impl_block;
use super::iq_grids::KVALUES_MXFP4;
use super::numeric::{cvt_i32, np_amax};

const QK_MXFP4: usize = 32;
const QK_NVFP4: usize = 64;
const QK_NVFP4_SUB: usize = 16;

/// `block_mxfp4` (ggml-common.h): `x = 2^(e-128) * kvalues_mxfp4[q]`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct BlockMXFP4 {
    /// E8M0 shared exponent.
    pub e: u8,
    /// Indices: weight j in the low nibble of `qs[j]`, j+16 in the high one.
    pub qs: [u8; QK_MXFP4 / 2],
}
const _: () = assert!(std::mem::size_of::<BlockMXFP4>() == 17);
impl_block!(BlockMXFP4, QK_MXFP4, { e: u8 / u8, qs: bytes / bytes });

/// `block_nvfp4` (ggml-common.h).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct BlockNVFP4 {
    /// UE4M3 scale of each 16-weight sub-block.
    pub d: [u8; QK_NVFP4 / QK_NVFP4_SUB],
    /// Indices: 8 bytes per sub-block, weight j low nibble, j+8 high nibble.
    pub qs: [u8; QK_NVFP4 / 2],
}
const _: () = assert!(std::mem::size_of::<BlockNVFP4>() == 36);
impl_block!(BlockNVFP4, QK_NVFP4, { d: bytes / bytes, qs: bytes / bytes });

/// `ggml_e8m0_to_fp32_half`: 2^(e-128), i.e. half the E8M0 value.
#[inline]
pub(crate) fn e8m0_to_fp32_half(e: u8) -> f32 {
    let bits = if e < 2 {
        0x0020_0000u32 << e
    } else {
        u32::from(e - 1) << 23
    };
    f32::from_bits(bits)
}

/// `ggml_ue4m3_to_fp32`: unsigned E4M3 (bias 7, bit 7 ignored), halved to
/// match the doubled `kvalues_mxfp4`; 0 and 0x7f decode to 0.
#[inline]
pub(crate) fn ue4m3_to_fp32(x: u8) -> f32 {
    if x == 0 || x == 0x7f {
        return 0.0;
    }
    let exp = i32::from((x >> 3) & 0x0f);
    let man = f32::from(x & 7);
    let raw = if exp == 0 {
        man * (1.0 / 512.0)
    } else {
        (1.0 + man / 8.0) * f32::from_bits(((exp - 7 + 127) as u32) << 23)
    };
    raw * 0.5
}

/// `ggml_fp32_to_ue4m3`.
#[inline]
pub(crate) fn fp32_to_ue4m3(x: f32) -> u8 {
    if x.is_nan() || x <= 0.0 {
        return 0;
    }
    let x = if x > 448.0 { 448.0 } else { x };
    let bits = x.to_bits();
    let fp32_exp = ((bits >> 23) & 0xff) as i32 - 127;
    let fp32_man = ((bits >> 20) & 7) as i32;
    let mut exp = fp32_exp + 7;
    if exp <= 0 {
        let man = cvt_i32(x * 512.0 + 0.5).min(7);
        return if man < 1 { 0 } else { man as u8 };
    }
    if exp >= 15 {
        return 0x7e;
    }
    let mut man = fp32_man + ((bits >> 19) & 1) as i32;
    if man > 7 {
        man = 0;
        exp += 1;
        if exp >= 15 {
            return 0x7e;
        }
    }
    ((exp << 3) | man) as u8
}

pub(crate) fn dequantize_mxfp4(b: &BlockMXFP4, y: &mut [f32]) {
    let d = e8m0_to_fp32_half(b.e);
    let (lo, hi) = y[..QK_MXFP4].split_at_mut(QK_MXFP4 / 2);
    for j in 0..QK_MXFP4 / 2 {
        lo[j] = d * f32::from(KVALUES_MXFP4[usize::from(b.qs[j] & 0x0f)]);
        hi[j] = d * f32::from(KVALUES_MXFP4[usize::from(b.qs[j] >> 4)]);
    }
}

pub(crate) fn dequantize_nvfp4(b: &BlockNVFP4, y: &mut [f32]) {
    for (s, y) in y[..QK_NVFP4].chunks_exact_mut(QK_NVFP4_SUB).enumerate() {
        let d = ue4m3_to_fp32(b.d[s]);
        let qs = &b.qs[8 * s..8 * s + 8];
        let (lo, hi) = y.split_at_mut(8);
        for j in 0..8 {
            lo[j] = d * f32::from(KVALUES_MXFP4[usize::from(qs[j] & 0x0f)]);
            hi[j] = d * f32::from(KVALUES_MXFP4[usize::from(qs[j] >> 4)]);
        }
    }
}

/// numpy's float32 `floor(log2(x))`: numpy's float32 `log2` agrees with the
/// correctly rounded value (checked against all positive float32), which
/// rounds up to the next integer just below powers of two.
#[inline]
fn np_floor_log2(x: f32) -> f32 {
    ((f64::from(x)).log2() as f32).floor()
}

/// gguf-py's `MXFP4.quantize_blocks`: `e = floor(log2(amax)) - 2 + 127`,
/// then the nearest table entry per weight (first on ties, numpy argmin).
pub(crate) fn quantize_mxfp4(x: &[f32]) -> BlockMXFP4 {
    let x = &x[..QK_MXFP4];
    let amax = np_amax(x);
    let e = if amax > 0.0 {
        cvt_i32(np_floor_log2(amax) - 2.0 + 127.0) as u8
    } else {
        0
    };
    let d = e8m0_to_fp32_half(e);
    let best = |v: f32| -> u8 {
        let mut best = 0u8;
        let mut best_err = f32::INFINITY;
        for (i, &k) in KVALUES_MXFP4.iter().enumerate() {
            let err = (d * f32::from(k) - v).abs();
            if err.is_nan() {
                return i as u8;
            }
            if i == 0 || err < best_err {
                best = i as u8;
                best_err = err;
            }
        }
        best
    };
    let mut qs = [0u8; QK_MXFP4 / 2];
    for j in 0..QK_MXFP4 / 2 {
        qs[j] = best(x[j]) | (best(x[j + QK_MXFP4 / 2]) << 4);
    }
    BlockMXFP4 { e, qs }
}

/// ggml's `best_index_mxfp4`.
#[inline]
fn best_index_mxfp4(x: f32, e: f32) -> u8 {
    let mut best_index = 0u8;
    let mut best_err = (f32::from(KVALUES_MXFP4[0]) * e - x).abs();
    for (i, &k) in KVALUES_MXFP4.iter().enumerate().skip(1) {
        let err = (f32::from(k) * e - x).abs();
        if err < best_err {
            best_index = i as u8;
            best_err = err;
        }
    }
    best_index
}

/// `quantize_row_nvfp4_ref`.
pub(crate) fn quantize_nvfp4(x: &[f32]) -> BlockNVFP4 {
    let mut b = BlockNVFP4::default();
    for (s, xb) in x[..QK_NVFP4].chunks_exact(QK_NVFP4_SUB).enumerate() {
        let mut amax = 0.0f32;
        for &v in xb {
            if amax < v.abs() {
                amax = v.abs();
            }
        }
        let ue = fp32_to_ue4m3(amax / 6.0);
        b.d[s] = ue;
        let d = ue4m3_to_fp32(ue);
        for j in 0..QK_NVFP4_SUB / 2 {
            let x0 = best_index_mxfp4(xb[j], d);
            let x1 = best_index_mxfp4(xb[QK_NVFP4_SUB / 2 + j], d);
            b.qs[s * 8 + j] = x0 | (x1 << 4);
        }
    }
    b
}
