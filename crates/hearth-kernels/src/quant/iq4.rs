//! IQ4_NL (32-weight blocks) and IQ4_XS (256-weight super-blocks): 4-bit
//! indices into the non-linear table `kvalues_iq4nl`.
//!
//! Dequantization mirrors gguf-py's numpy code (bit-identical). Quantization
//! is ggml's `quantize_row_iq4_nl_impl` as called by `quantize_iq4_nl` /
//! `quantize_iq4_xs` (the `ggml_quantize_chunk` path `llama-quantize` takes,
//! `ntry = 7`), without importance weights unless given.

use super::block::impl_block;
use super::iq_grids::KVALUES_IQ4NL;
use super::numeric::{f16_to_f32, f32_to_f16_ggml, nearest_int};
use super::scale_search::{best_index_int8, GROUP_MAX_EPS};
use hearth_gguf::QK_K;

const QK4_NL: usize = 32;

/// `block_iq4_nl` (ggml-common.h): `x = d * kvalues_iq4nl[q]`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct BlockIQ4NL {
    /// Scale (f16 bits).
    pub d: u16,
    /// Indices: weight j in the low nibble of `qs[j]`, j+16 in the high one.
    pub qs: [u8; QK4_NL / 2],
}
const _: () = assert!(std::mem::size_of::<BlockIQ4NL>() == 18);
impl_block!(BlockIQ4NL, QK4_NL, { d: u16 / u16, qs: bytes / bytes });

/// `block_iq4_xs` (ggml-common.h): 8 groups of 32 with 6-bit scales,
/// `x = d * (ls - 32) * kvalues_iq4nl[q]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct BlockIQ4XS {
    /// Super-block scale (f16 bits).
    pub d: u16,
    /// High 2 bits of the 8 group scales.
    pub scales_h: u16,
    /// Low 4 bits of the 8 group scales.
    pub scales_l: [u8; QK_K / 64],
    /// Indices, 16 bytes per group as in IQ4_NL.
    pub qs: [u8; QK_K / 2],
}
const _: () = assert!(std::mem::size_of::<BlockIQ4XS>() == 136);
impl_block!(BlockIQ4XS, QK_K, { d: u16 / u16, scales_h: u16 / u16, scales_l: bytes / bytes, qs: bytes / bytes });

// ---------------------------------------------------------------- dequantize

pub(crate) fn dequantize_iq4_nl(b: &BlockIQ4NL, y: &mut [f32]) {
    let d = f16_to_f32(b.d);
    let (lo, hi) = y[..QK4_NL].split_at_mut(QK4_NL / 2);
    for j in 0..QK4_NL / 2 {
        lo[j] = d * f32::from(KVALUES_IQ4NL[usize::from(b.qs[j] & 0x0f)]);
        hi[j] = d * f32::from(KVALUES_IQ4NL[usize::from(b.qs[j] >> 4)]);
    }
}

pub(crate) fn dequantize_iq4_xs(b: &BlockIQ4XS, y: &mut [f32]) {
    let d = f16_to_f32(b.d);
    for (ib, y) in y[..QK_K].chunks_exact_mut(32).enumerate() {
        let low = (b.scales_l[ib / 2] >> (4 * (ib % 2))) & 0x0f;
        let high = ((b.scales_h >> (2 * ib)) & 3) as u8;
        let ls = (low | (high << 4)) as i8 - 32;
        let dl = d * ls as f32;
        let qs = &b.qs[16 * ib..16 * ib + 16];
        let (lo, hi) = y.split_at_mut(16);
        for j in 0..16 {
            lo[j] = dl * f32::from(KVALUES_IQ4NL[usize::from(qs[j] & 0x0f)]);
            hi[j] = dl * f32::from(KVALUES_IQ4NL[usize::from(qs[j] >> 4)]);
        }
    }
}

// ------------------------------------------------------------------ quantize

/// Output of [`quantize_iq4_impl`] for one super-block of `SB` weights.
struct Iq4Out<const SB: usize> {
    d: u16,
    scales_h: u16,
    scales_l: [u8; QK_K / 64],
    l: [u8; SB],
}

/// `quantize_row_iq4_nl_impl` with `block_size = 32` and `values =
/// kvalues_iq4nl`, for a super-block of `SB` weights (32 for IQ4_NL, 256 for
/// IQ4_XS). `quant_weights` are the importance weights of these `SB` weights.
fn quantize_iq4_impl<const SB: usize>(
    x: &[f32],
    quant_weights: Option<&[f32]>,
    ntry: i32,
) -> Iq4Out<SB> {
    const BS: usize = 32;
    let x = &x[..SB];
    let values = &KVALUES_IQ4NL;
    let v0 = f32::from(values[0]);
    let mut sigma2 = 0.0f32;
    for &v in x {
        sigma2 += v * v;
    }
    sigma2 *= 2.0 / SB as f32;

    let mut out = Iq4Out {
        d: f32_to_f16_ggml(0.0),
        scales_h: 0,
        scales_l: [0; QK_K / 64],
        l: [0u8; SB],
    };
    let mut scales = [0f32; QK_K / 32];
    let mut weight = [0f32; BS];
    let mut max_scale = 0.0f32;
    let mut amax_scale = 0.0f32;
    for ib in 0..SB / BS {
        let xb = &x[ib * BS..ib * BS + BS];
        let lb = &mut out.l[ib * BS..ib * BS + BS];
        match quant_weights {
            Some(qw) => {
                let qw = &qw[ib * BS..ib * BS + BS];
                for j in 0..BS {
                    weight[j] = qw[j] * (sigma2 + xb[j] * xb[j]).sqrt();
                }
            }
            None => {
                for j in 0..BS {
                    weight[j] = xb[j] * xb[j];
                }
            }
        }
        let mut amax = 0.0f32;
        let mut max = 0.0f32;
        for &v in xb {
            let ax = v.abs();
            if ax > amax {
                amax = ax;
                max = v;
            }
        }
        if amax < GROUP_MAX_EPS {
            scales[ib] = 0.0;
            continue;
        }
        let mut d = if ntry > 0 { -max / v0 } else { max / v0 };
        let mut id = 1.0 / d;
        let mut sumqx = 0.0f32;
        let mut sumq2 = 0.0f32;
        for j in 0..BS {
            let l = best_index_int8(values, id * xb[j]);
            lb[j] = l;
            let q = f32::from(values[usize::from(l)]);
            let w = weight[j];
            sumqx += w * q * xb[j];
            sumq2 += w * q * q;
        }
        d = if sumq2 > 0.0 { sumqx / sumq2 } else { 0.0 };
        let mut best = d * sumqx;
        for itry in -ntry..=ntry {
            id = (itry + i32::from(values[0])) as f32 / max;
            sumqx = 0.0;
            sumq2 = 0.0;
            for j in 0..BS {
                let l = best_index_int8(values, id * xb[j]);
                let q = f32::from(values[usize::from(l)]);
                let w = weight[j];
                sumqx += w * q * xb[j];
                sumq2 += w * q * q;
            }
            if sumq2 > 0.0 && sumqx * sumqx > best * sumq2 {
                d = sumqx / sumq2;
                best = d * sumqx;
            }
        }
        scales[ib] = d;
        let abs_d = d.abs();
        if abs_d > amax_scale {
            amax_scale = abs_d;
            max_scale = d;
        }
    }

    if SB / BS > 1 {
        let d = -max_scale / 32.0;
        out.d = f32_to_f16_ggml(d);
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        for ib in 0..SB / BS {
            let l = nearest_int(id * scales[ib]).clamp(-32, 31);
            let dl = d * l as f32;
            let idl = if dl != 0.0 { 1.0 / dl } else { 0.0 };
            let xb = &x[ib * BS..ib * BS + BS];
            for (lj, &xj) in out.l[ib * BS..ib * BS + BS].iter_mut().zip(xb) {
                *lj = best_index_int8(values, idl * xj);
            }
            let l = (l + 32) as u8;
            let (l_l, l_h) = (l & 0x0f, l >> 4);
            if ib % 2 == 0 {
                out.scales_l[ib / 2] = l_l;
            } else {
                out.scales_l[ib / 2] |= l_l << 4;
            }
            out.scales_h |= u16::from(l_h) << (2 * (ib % 8));
        }
    } else {
        out.d = f32_to_f16_ggml(scales[0]);
        if ntry > 0 {
            let id = if scales[0] != 0.0 {
                1.0 / scales[0]
            } else {
                0.0
            };
            for (lj, &xj) in out.l.iter_mut().zip(x) {
                *lj = best_index_int8(values, id * xj);
            }
        }
    }
    out
}

/// Packs 4-bit indices: in each 32-group, j in the low nibble of byte j and
/// j+16 in the high one.
fn pack_iq4(l: &[u8], q4: &mut [u8]) {
    for (q, l) in q4.chunks_exact_mut(16).zip(l.chunks_exact(32)) {
        for j in 0..16 {
            q[j] = l[j] | (l[16 + j] << 4);
        }
    }
}

/// `quantize_iq4_nl` for one block (`ntry = 7`).
pub(crate) fn quantize_iq4_nl(x: &[f32], quant_weights: Option<&[f32]>) -> BlockIQ4NL {
    let r = quantize_iq4_impl::<QK4_NL>(x, quant_weights, 7);
    let mut b = BlockIQ4NL {
        d: r.d,
        qs: [0; 16],
    };
    pack_iq4(&r.l, &mut b.qs);
    b
}

/// `quantize_iq4_xs` for one super-block (`ntry = 7`).
pub(crate) fn quantize_iq4_xs(x: &[f32], quant_weights: Option<&[f32]>) -> BlockIQ4XS {
    let r = quantize_iq4_impl::<QK_K>(x, quant_weights, 7);
    let mut b = BlockIQ4XS {
        d: r.d,
        scales_h: r.scales_h,
        scales_l: r.scales_l,
        qs: [0; QK_K / 2],
    };
    pack_iq4(&r.l, &mut b.qs);
    b
}
