//! Scalar twins of the SIMD dot products: one weight row against one token
//! of quantized activations, the integer math of ggml's `ggml_vec_dot_*`
//! (exact integer sums per block, one f32 multiply-add per block or
//! super-block), written plainly. Every SIMD kernel is tested against these,
//! and these against dequantize + f32 dot.

// Index loops mirror the block layouts (ggml-common.h) for readability.
#![allow(clippy::needless_range_loop)]

use super::act::Acts;
use crate::quant::f16_to_f32;
use crate::quant::iq_grids::KVALUES_IQ4NL;
use crate::quant::k_quants::{get_scale_min_k4, q3k_scales};
use crate::quant::{bf16_to_f32, block_geometry};
use hearth_gguf::{GgmlType, QK_K};

/// The f16 at byte `o` of `b`, as f32.
#[inline]
pub(crate) fn f16_at(b: &[u8], o: usize) -> f32 {
    f16_to_f32(u16::from_le_bytes([b[o], b[o + 1]]))
}

/// A scalar dot product of one weight row with token `t`.
pub(crate) type ScalarDot = fn(w: &[u8], acts: &Acts<'_>, t: usize) -> f32;

/// The scalar twin for weight type `ty`, if it has a fast path.
pub(crate) fn scalar_dot(ty: GgmlType) -> Option<ScalarDot> {
    use GgmlType as T;
    Some(match ty {
        T::Q4_0 => vec_dot_q4_0_q8_0_scalar,
        T::Q4_1 => vec_dot_q4_1_q8_1_scalar,
        T::Q5_0 => vec_dot_q5_0_q8_0_scalar,
        T::Q5_1 => vec_dot_q5_1_q8_1_scalar,
        T::Q8_0 => vec_dot_q8_0_q8_0_scalar,
        T::IQ4_NL => vec_dot_iq4_nl_q8_0_scalar,
        T::Q2_K => vec_dot_q2_k_q8_k_scalar,
        T::Q3_K => vec_dot_q3_k_q8_k_scalar,
        T::Q4_K => vec_dot_q4_k_q8_k_scalar,
        T::Q5_K => vec_dot_q5_k_q8_k_scalar,
        T::Q6_K => vec_dot_q6_k_q8_k_scalar,
        T::IQ4_XS => vec_dot_iq4_xs_q8_k_scalar,
        T::F16 => vec_dot_f16_scalar,
        T::BF16 => vec_dot_bf16_scalar,
        T::F32 => vec_dot_f32_scalar,
        _ => return None,
    })
}

/// Weight blocks of `ty` in `w` (length checked by the caller).
#[inline]
fn blocks(ty: GgmlType, w: &[u8]) -> std::slice::ChunksExact<'_, u8> {
    w.chunks_exact(block_geometry(ty).1)
}

// ------------------------------------------------------ 32-weight blocks

pub(crate) fn vec_dot_q8_0_q8_0_scalar(w: &[u8], acts: &Acts<'_>, t: usize) -> f32 {
    let (qa, da) = (acts.qs_row(t), acts.d_row(t));
    let mut sumf = 0.0f32;
    for ((x, a), &d) in blocks(GgmlType::Q8_0, w).zip(qa.chunks_exact(32)).zip(da) {
        let mut sumi = 0i32;
        for j in 0..32 {
            sumi += i32::from(x[2 + j] as i8) * i32::from(a[j]);
        }
        sumf += sumi as f32 * (f16_at(x, 0) * d);
    }
    sumf
}

pub(crate) fn vec_dot_q4_0_q8_0_scalar(w: &[u8], acts: &Acts<'_>, t: usize) -> f32 {
    let (qa, da) = (acts.qs_row(t), acts.d_row(t));
    let mut sumf = 0.0f32;
    for ((x, a), &d) in blocks(GgmlType::Q4_0, w).zip(qa.chunks_exact(32)).zip(da) {
        let qs = &x[2..18];
        let mut sumi = 0i32;
        for j in 0..16 {
            let v0 = i32::from(qs[j] & 0x0f) - 8;
            let v1 = i32::from(qs[j] >> 4) - 8;
            sumi += v0 * i32::from(a[j]) + v1 * i32::from(a[j + 16]);
        }
        sumf += sumi as f32 * (f16_at(x, 0) * d);
    }
    sumf
}

pub(crate) fn vec_dot_q4_1_q8_1_scalar(w: &[u8], acts: &Acts<'_>, t: usize) -> f32 {
    let (qa, da, sa) = (acts.qs_row(t), acts.d_row(t), acts.s_row(t));
    let mut sumf = 0.0f32;
    for (((x, a), &d), &s) in blocks(GgmlType::Q4_1, w)
        .zip(qa.chunks_exact(32))
        .zip(da)
        .zip(sa)
    {
        let qs = &x[4..20];
        let mut sumi = 0i32;
        for j in 0..16 {
            sumi += i32::from(qs[j] & 0x0f) * i32::from(a[j])
                + i32::from(qs[j] >> 4) * i32::from(a[j + 16]);
        }
        sumf += (f16_at(x, 0) * d) * sumi as f32 + f16_at(x, 2) * s;
    }
    sumf
}

/// The fifth bits of a Q5 block (bit j for weight j).
#[inline]
fn qh32(x: &[u8], o: usize) -> u32 {
    u32::from_le_bytes([x[o], x[o + 1], x[o + 2], x[o + 3]])
}

pub(crate) fn vec_dot_q5_0_q8_0_scalar(w: &[u8], acts: &Acts<'_>, t: usize) -> f32 {
    let (qa, da) = (acts.qs_row(t), acts.d_row(t));
    let mut sumf = 0.0f32;
    for ((x, a), &d) in blocks(GgmlType::Q5_0, w).zip(qa.chunks_exact(32)).zip(da) {
        let qh = qh32(x, 2);
        let qs = &x[6..22];
        let mut sumi = 0i32;
        for j in 0..16 {
            let v0 = i32::from(qs[j] & 0x0f) | (((qh >> j) & 1) << 4) as i32;
            let v1 = i32::from(qs[j] >> 4) | (((qh >> (j + 16)) & 1) << 4) as i32;
            sumi += (v0 - 16) * i32::from(a[j]) + (v1 - 16) * i32::from(a[j + 16]);
        }
        sumf += sumi as f32 * (f16_at(x, 0) * d);
    }
    sumf
}

pub(crate) fn vec_dot_q5_1_q8_1_scalar(w: &[u8], acts: &Acts<'_>, t: usize) -> f32 {
    let (qa, da, sa) = (acts.qs_row(t), acts.d_row(t), acts.s_row(t));
    let mut sumf = 0.0f32;
    for (((x, a), &d), &s) in blocks(GgmlType::Q5_1, w)
        .zip(qa.chunks_exact(32))
        .zip(da)
        .zip(sa)
    {
        let qh = qh32(x, 4);
        let qs = &x[8..24];
        let mut sumi = 0i32;
        for j in 0..16 {
            let v0 = i32::from(qs[j] & 0x0f) | (((qh >> j) & 1) << 4) as i32;
            let v1 = i32::from(qs[j] >> 4) | (((qh >> (j + 16)) & 1) << 4) as i32;
            sumi += v0 * i32::from(a[j]) + v1 * i32::from(a[j + 16]);
        }
        sumf += (f16_at(x, 0) * d) * sumi as f32 + f16_at(x, 2) * s;
    }
    sumf
}

pub(crate) fn vec_dot_iq4_nl_q8_0_scalar(w: &[u8], acts: &Acts<'_>, t: usize) -> f32 {
    let (qa, da) = (acts.qs_row(t), acts.d_row(t));
    let kv = |i: u8| i32::from(KVALUES_IQ4NL[usize::from(i)]);
    let mut sumf = 0.0f32;
    for ((x, a), &d) in blocks(GgmlType::IQ4_NL, w).zip(qa.chunks_exact(32)).zip(da) {
        let qs = &x[2..18];
        let mut sumi = 0i32;
        for j in 0..16 {
            sumi += kv(qs[j] & 0x0f) * i32::from(a[j]) + kv(qs[j] >> 4) * i32::from(a[j + 16]);
        }
        sumf += sumi as f32 * (f16_at(x, 0) * d);
    }
    sumf
}

// ------------------------------------------------------------- k-quants

/// Per super-block: the weight bytes, the token's 256 quants, its scale and
/// its 16 group sums.
#[inline]
fn k_blocks<'a>(
    ty: GgmlType,
    w: &'a [u8],
    acts: &'a Acts<'_>,
    t: usize,
) -> impl Iterator<Item = (&'a [u8], &'a [i8], f32, &'a [i16])> {
    blocks(ty, w)
        .zip(acts.qs_row(t).chunks_exact(QK_K))
        .zip(acts.d_row(t))
        .zip(acts.bsums_row(t).chunks_exact(QK_K / 16))
        .map(|(((x, a), &d), bs)| (x, a, d, bs))
}

pub(crate) fn vec_dot_q2_k_q8_k_scalar(w: &[u8], acts: &Acts<'_>, t: usize) -> f32 {
    let mut sumf = 0.0f32;
    for (x, a, yd, bsums) in k_blocks(GgmlType::Q2_K, w, acts, t) {
        let (scales, qs) = (&x[0..16], &x[16..80]);
        let dall = yd * f16_at(x, 80);
        let dmin = yd * f16_at(x, 82);
        let mut summs = 0i32;
        for g in 0..16 {
            summs += i32::from(bsums[g]) * i32::from(scales[g] >> 4);
        }
        // Weight k = 128c + 32s + l is bits 2s of qs[32c + l]; group k / 16.
        let mut isum = 0i32;
        for k in 0..QK_K {
            let (c, s, l) = (k / 128, (k % 128) / 32, k % 32);
            let q = i32::from((qs[32 * c + l] >> (2 * s)) & 3);
            isum += i32::from(scales[k / 16] & 0x0f) * q * i32::from(a[k]);
        }
        sumf += dall * isum as f32 - dmin * summs as f32;
    }
    sumf
}

pub(crate) fn vec_dot_q3_k_q8_k_scalar(w: &[u8], acts: &Acts<'_>, t: usize) -> f32 {
    let mut sumf = 0.0f32;
    for (x, a, yd, _) in k_blocks(GgmlType::Q3_K, w, acts, t) {
        let (hmask, qs) = (&x[0..32], &x[32..96]);
        let scales = q3k_scales(x[96..108].try_into().expect("12 bytes"));
        let d = yd * f16_at(x, 108);
        let mut isum = 0i32;
        for g in 0..16 {
            let mut gsum = 0i32;
            for k in 16 * g..16 * g + 16 {
                let (c, s, l) = (k / 128, (k % 128) / 32, k % 32);
                let low = i32::from((qs[32 * c + l] >> (2 * s)) & 3);
                let high = i32::from((hmask[l] >> (4 * c + s)) & 1);
                gsum += (low - 4 * (1 - high)) * i32::from(a[k]);
            }
            isum += (i32::from(scales[g]) - 32) * gsum;
        }
        sumf += d * isum as f32;
    }
    sumf
}

pub(crate) fn vec_dot_q4_k_q8_k_scalar(w: &[u8], acts: &Acts<'_>, t: usize) -> f32 {
    let mut sumf = 0.0f32;
    for (x, a, yd, bsums) in k_blocks(GgmlType::Q4_K, w, acts, t) {
        let scales: &[u8; 12] = x[4..16].try_into().expect("12 bytes");
        let qs = &x[16..144];
        let (mut isum, mut summs) = (0i32, 0i32);
        for g in 0..8 {
            let (sc, m) = get_scale_min_k4(g, scales);
            summs += i32::from(m) * (i32::from(bsums[2 * g]) + i32::from(bsums[2 * g + 1]));
            let q = &qs[32 * (g / 2)..32 * (g / 2) + 32];
            let mut gsum = 0i32;
            for l in 0..32 {
                gsum += i32::from((q[l] >> (4 * (g % 2))) & 0x0f) * i32::from(a[32 * g + l]);
            }
            isum += i32::from(sc) * gsum;
        }
        sumf += yd * f16_at(x, 0) * isum as f32 - yd * f16_at(x, 2) * summs as f32;
    }
    sumf
}

pub(crate) fn vec_dot_q5_k_q8_k_scalar(w: &[u8], acts: &Acts<'_>, t: usize) -> f32 {
    let mut sumf = 0.0f32;
    for (x, a, yd, bsums) in k_blocks(GgmlType::Q5_K, w, acts, t) {
        let scales: &[u8; 12] = x[4..16].try_into().expect("12 bytes");
        let (qh, qs) = (&x[16..48], &x[48..176]);
        let (mut isum, mut summs) = (0i32, 0i32);
        for g in 0..8 {
            let (sc, m) = get_scale_min_k4(g, scales);
            summs += i32::from(m) * (i32::from(bsums[2 * g]) + i32::from(bsums[2 * g + 1]));
            let q = &qs[32 * (g / 2)..32 * (g / 2) + 32];
            let mut gsum = 0i32;
            for l in 0..32 {
                let v = ((q[l] >> (4 * (g % 2))) & 0x0f) | (((qh[l] >> g) & 1) << 4);
                gsum += i32::from(v) * i32::from(a[32 * g + l]);
            }
            isum += i32::from(sc) * gsum;
        }
        sumf += yd * f16_at(x, 0) * isum as f32 - yd * f16_at(x, 2) * summs as f32;
    }
    sumf
}

pub(crate) fn vec_dot_q6_k_q8_k_scalar(w: &[u8], acts: &Acts<'_>, t: usize) -> f32 {
    let mut sumf = 0.0f32;
    for (x, a, yd, _) in k_blocks(GgmlType::Q6_K, w, acts, t) {
        let (ql, qh, scales) = (&x[0..128], &x[128..192], &x[192..208]);
        let d = yd * f16_at(x, 208);
        let mut isum = 0i32;
        for g in 0..16 {
            let mut gsum = 0i32;
            for k in 16 * g..16 * g + 16 {
                // k = 128c + 32s + l: nibble s/2 of ql[64c + 32(s%2) + l],
                // bits 2s of qh[32c + l].
                let (c, s, l) = (k / 128, (k % 128) / 32, k % 32);
                let low = (ql[64 * c + 32 * (s % 2) + l] >> (4 * (s / 2))) & 0x0f;
                let high = (qh[32 * c + l] >> (2 * s)) & 3;
                gsum += (i32::from(low | (high << 4)) - 32) * i32::from(a[k]);
            }
            isum += i32::from(scales[g] as i8) * gsum;
        }
        sumf += d * isum as f32;
    }
    sumf
}

/// The signed 6-bit scale of group `g` of an IQ4_XS block.
#[inline]
pub(crate) fn iq4_xs_scale(x: &[u8], g: usize) -> i32 {
    let scales_h = u16::from_le_bytes([x[2], x[3]]);
    let low = (x[4 + g / 2] >> (4 * (g % 2))) & 0x0f;
    let high = ((scales_h >> (2 * g)) & 3) as u8;
    i32::from(low | (high << 4)) - 32
}

pub(crate) fn vec_dot_iq4_xs_q8_k_scalar(w: &[u8], acts: &Acts<'_>, t: usize) -> f32 {
    let kv = |i: u8| i32::from(KVALUES_IQ4NL[usize::from(i)]);
    let mut sumf = 0.0f32;
    for (x, a, yd, _) in k_blocks(GgmlType::IQ4_XS, w, acts, t) {
        let d = yd * f16_at(x, 0);
        let mut isum = 0i32;
        for g in 0..8 {
            let qs = &x[8 + 16 * g..8 + 16 * g + 16];
            let a = &a[32 * g..32 * g + 32];
            let mut gsum = 0i32;
            for j in 0..16 {
                gsum += kv(qs[j] & 0x0f) * i32::from(a[j]) + kv(qs[j] >> 4) * i32::from(a[j + 16]);
            }
            isum += iq4_xs_scale(x, g) * gsum;
        }
        sumf += d * isum as f32;
    }
    sumf
}

// ------------------------------------------------------------ float rows

pub(crate) fn vec_dot_f16_scalar(w: &[u8], acts: &Acts<'_>, t: usize) -> f32 {
    let mut sum = 0.0f64;
    for (x, &a) in w.chunks_exact(2).zip(acts.h_row(t)) {
        sum += f64::from(f16_to_f32(u16::from_le_bytes([x[0], x[1]])) * f16_to_f32(a));
    }
    sum as f32
}

pub(crate) fn vec_dot_bf16_scalar(w: &[u8], acts: &Acts<'_>, t: usize) -> f32 {
    let mut sum = 0.0f64;
    for (x, &a) in w.chunks_exact(2).zip(acts.h_row(t)) {
        sum += f64::from(bf16_to_f32(u16::from_le_bytes([x[0], x[1]])) * bf16_to_f32(a));
    }
    sum as f32
}

pub(crate) fn vec_dot_f32_scalar(w: &[u8], acts: &Acts<'_>, t: usize) -> f32 {
    let mut sum = 0.0f64;
    for (x, &a) in w.chunks_exact(4).zip(acts.f_row(t)) {
        sum += f64::from(f32::from_le_bytes([x[0], x[1], x[2], x[3]]) * a);
    }
    sum as f32
}

/// `sum(a[i] * b[i])` in f32 with eight partial sums (vectorizable), for the
/// dequantize + dot fallback.
pub(crate) fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let mut ca = a.chunks_exact(8);
    let mut cb = b.chunks_exact(8);
    for (x, y) in (&mut ca).zip(&mut cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    let mut tail = 0.0f32;
    for (x, y) in ca.remainder().iter().zip(cb.remainder()) {
        tail += x * y;
    }
    ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])) + tail
}
