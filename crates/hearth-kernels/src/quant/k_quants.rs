//! The k-quants: Q2_K, Q3_K, Q4_K, Q5_K, Q6_K (256-weight super-blocks with
//! quantized sub-block scales) and Q8_K (the f32-scaled intermediate type).
//!
//! Dequantization mirrors gguf-py's numpy code (bit-identical to it; Q8_K,
//! absent there, is ggml's `dequantize_row_q8_K`: `d * qs[j]`).
//! Quantization is ggml's `quantize_row_q*_K_ref` (what `llama-quantize`
//! runs without an importance matrix), transcribed so the bytes match.
//! The imatrix variants (`quantize_row_q*_K_impl`, with `make_qkx3_quants` /
//! `make_qp_quants`) live in `weighted.rs`.

// Index loops keep the transcription line-for-line comparable with ggml-quants.c.
#![allow(clippy::needless_range_loop)]

use super::block::impl_block;
use super::numeric::{f16_to_f32, f32_to_f16_ggml, nearest_int};
use super::scale_search::{
    make_q3_quants, make_qkx2_quants, make_qx_quants, Qkx2Search, GROUP_MAX_EPS,
};
use hearth_gguf::QK_K;

/// `K_SCALE_SIZE`: bytes of packed 6-bit scales and mins in Q4_K/Q5_K.
const K_SCALE_SIZE: usize = 12;

/// `block_q2_K` (ggml-common.h): 16 groups of 16, `x = d*sc*q - dmin*m`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct BlockQ2K {
    /// Per group: scale in the low nibble, min in the high nibble.
    pub scales: [u8; QK_K / 16],
    /// 2-bit quants.
    pub qs: [u8; QK_K / 4],
    /// Super-block scale for the scales (f16 bits).
    pub d: u16,
    /// Super-block scale for the mins (f16 bits).
    pub dmin: u16,
}
const _: () = assert!(std::mem::size_of::<BlockQ2K>() == 84);
impl_block!(BlockQ2K, QK_K, { scales: bytes / bytes, qs: bytes / bytes, d: u16 / u16, dmin: u16 / u16 });

/// `block_q3_K` (ggml-common.h): 16 groups of 16, `x = d*(sc-32)*(q-4)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct BlockQ3K {
    /// High bit of the quants (set means no -4 offset).
    pub hmask: [u8; QK_K / 8],
    /// Low 2 bits of the quants.
    pub qs: [u8; QK_K / 4],
    /// 16 packed 6-bit scales.
    pub scales: [u8; 12],
    /// Super-block scale (f16 bits).
    pub d: u16,
}
const _: () = assert!(std::mem::size_of::<BlockQ3K>() == 110);
impl_block!(BlockQ3K, QK_K, { hmask: bytes / bytes, qs: bytes / bytes, scales: bytes / bytes, d: u16 / u16 });

/// `block_q4_K` (ggml-common.h): 8 groups of 32, `x = d*sc*q - dmin*m`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct BlockQ4K {
    /// Super-block scale for the scales (f16 bits).
    pub d: u16,
    /// Super-block scale for the mins (f16 bits).
    pub dmin: u16,
    /// 8 scales and 8 mins, 6 bits each (`get_scale_min_k4`).
    pub scales: [u8; K_SCALE_SIZE],
    /// 4-bit quants.
    pub qs: [u8; QK_K / 2],
}
const _: () = assert!(std::mem::size_of::<BlockQ4K>() == 144);
impl_block!(BlockQ4K, QK_K, { d: u16 / u16, dmin: u16 / u16, scales: bytes / bytes, qs: bytes / bytes });

/// `block_q5_K` (ggml-common.h): as Q4_K with a fifth quant bit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct BlockQ5K {
    /// Super-block scale for the scales (f16 bits).
    pub d: u16,
    /// Super-block scale for the mins (f16 bits).
    pub dmin: u16,
    /// 8 scales and 8 mins, 6 bits each.
    pub scales: [u8; K_SCALE_SIZE],
    /// High bit of the quants.
    pub qh: [u8; QK_K / 8],
    /// Low 4 bits of the quants.
    pub qs: [u8; QK_K / 2],
}
const _: () = assert!(std::mem::size_of::<BlockQ5K>() == 176);
impl_block!(BlockQ5K, QK_K, {
    d: u16 / u16, dmin: u16 / u16, scales: bytes / bytes, qh: bytes / bytes, qs: bytes / bytes
});

/// `block_q6_K` (ggml-common.h): 16 groups of 16, `x = d*sc*(q-32)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct BlockQ6K {
    /// Low 4 bits of the quants.
    pub ql: [u8; QK_K / 2],
    /// High 2 bits of the quants.
    pub qh: [u8; QK_K / 4],
    /// 8-bit group scales.
    pub scales: [i8; QK_K / 16],
    /// Super-block scale (f16 bits).
    pub d: u16,
}
const _: () = assert!(std::mem::size_of::<BlockQ6K>() == 210);
impl_block!(BlockQ6K, QK_K, { ql: bytes / bytes, qh: bytes / bytes, scales: i8s / i8s, d: u16 / u16 });

/// `block_q8_K` (ggml-common.h): `x = d * q`, with f32 `d` and group sums.
#[derive(Clone, Copy, Debug, PartialEq)]
#[repr(C)]
pub struct BlockQ8K {
    /// Scale.
    pub d: f32,
    /// Quants.
    pub qs: [i8; QK_K],
    /// Sums of the quants in groups of 16.
    pub bsums: [i16; QK_K / 16],
}
const _: () = assert!(std::mem::size_of::<BlockQ8K>() == 292);
impl_block!(BlockQ8K, QK_K, { d: f32 / f32, qs: i8s / i8s, bsums: i16s / i16s });

/// `get_scale_min_k4`: the 6-bit scale and min of group `j` (0..8).
#[inline]
pub(crate) fn get_scale_min_k4(j: usize, q: &[u8; K_SCALE_SIZE]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        (
            (q[j + 4] & 0x0f) | ((q[j - 4] >> 6) << 4),
            (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
        )
    }
}

/// The 16 6-bit scales of Q3_K, unsigned (subtract 32 for the value).
#[inline]
pub(crate) fn q3k_scales(s: &[u8; 12]) -> [u8; 16] {
    std::array::from_fn(|j| {
        let low = (s[j % 8] >> (4 * (j / 8))) & 0x0f;
        let high = (s[8 + j % 4] >> (2 * (j / 4))) & 0x03;
        low | (high << 4)
    })
}

// ---------------------------------------------------------------- dequantize

pub(crate) fn dequantize_q2_k(b: &BlockQ2K, y: &mut [f32]) {
    let y = &mut y[..QK_K];
    let d = f16_to_f32(b.d);
    let dmin = f16_to_f32(b.dmin);
    for (k, y) in y.iter_mut().enumerate() {
        let (c, s, l) = (k / 128, (k % 128) / 32, k % 32);
        let sc = b.scales[k / 16];
        let dl = d * (sc & 0x0f) as f32;
        let ml = dmin * (sc >> 4) as f32;
        let q = (b.qs[c * 32 + l] >> (2 * s)) & 3;
        *y = dl * q as f32 - ml;
    }
}

pub(crate) fn dequantize_q3_k(b: &BlockQ3K, y: &mut [f32]) {
    let y = &mut y[..QK_K];
    let d = f16_to_f32(b.d);
    let scales = q3k_scales(&b.scales);
    // Output k = 128*c + 32*s + l: bits 2s of qs[32c + l], bit 4c+s of hmask[l].
    for (cs, y) in y.chunks_exact_mut(32).enumerate() {
        let (c, s) = (cs / 4, cs % 4);
        let qs = &b.qs[32 * c..32 * c + 32];
        for (half, y) in y.chunks_exact_mut(16).enumerate() {
            let dl = d * (scales[2 * cs + half] as i8 - 32) as f32;
            for (i, y) in y.iter_mut().enumerate() {
                let l = 16 * half + i;
                let low = ((qs[l] >> (2 * s)) & 3) as i8;
                let high = (((b.hmask[l] >> cs) & 1) ^ 1) as i8;
                *y = dl * (low - (high << 2)) as f32;
            }
        }
    }
}

pub(crate) fn dequantize_q4_k(b: &BlockQ4K, y: &mut [f32]) {
    let y = &mut y[..QK_K];
    let d = f16_to_f32(b.d);
    let dmin = f16_to_f32(b.dmin);
    for (g, y) in y.chunks_exact_mut(32).enumerate() {
        let (sc, m) = get_scale_min_k4(g, &b.scales);
        let dl = d * sc as f32;
        let ml = dmin * m as f32;
        let qs = &b.qs[(g / 2) * 32..(g / 2) * 32 + 32];
        let shift = 4 * (g % 2);
        for (y, &q) in y.iter_mut().zip(qs) {
            *y = dl * ((q >> shift) & 0x0f) as f32 - ml;
        }
    }
}

pub(crate) fn dequantize_q5_k(b: &BlockQ5K, y: &mut [f32]) {
    let y = &mut y[..QK_K];
    let d = f16_to_f32(b.d);
    let dmin = f16_to_f32(b.dmin);
    for (g, y) in y.chunks_exact_mut(32).enumerate() {
        let (sc, m) = get_scale_min_k4(g, &b.scales);
        let dl = d * sc as f32;
        let ml = dmin * m as f32;
        let qs = &b.qs[(g / 2) * 32..(g / 2) * 32 + 32];
        let shift = 4 * (g % 2);
        for ((y, &q), &h) in y.iter_mut().zip(qs).zip(&b.qh) {
            let q = ((q >> shift) & 0x0f) | (((h >> g) & 1) << 4);
            *y = dl * q as f32 - ml;
        }
    }
}

pub(crate) fn dequantize_q6_k(b: &BlockQ6K, y: &mut [f32]) {
    let y = &mut y[..QK_K];
    let d = f16_to_f32(b.d);
    // Output k = 128*c + 32*s + l: nibble s/2 of ql[64c + 32(s%2) + l],
    // bits 2s of qh[32c + l].
    for (cs, y) in y.chunks_exact_mut(32).enumerate() {
        let (c, s) = (cs / 4, cs % 4);
        let ql = &b.ql[64 * c + 32 * (s % 2)..64 * c + 32 * (s % 2) + 32];
        let qh = &b.qh[32 * c..32 * c + 32];
        for (half, y) in y.chunks_exact_mut(16).enumerate() {
            let dl = d * f32::from(b.scales[2 * cs + half]);
            for (i, y) in y.iter_mut().enumerate() {
                let l = 16 * half + i;
                let low = (ql[l] >> (4 * (s / 2))) & 0x0f;
                let high = (qh[l] >> (2 * s)) & 0x03;
                let q = (low | (high << 4)) as i8 - 32;
                *y = dl * q as f32;
            }
        }
    }
}

pub(crate) fn dequantize_q8_k(b: &BlockQ8K, y: &mut [f32]) {
    for (y, &q) in y[..QK_K].iter_mut().zip(&b.qs) {
        *y = b.d * q as f32;
    }
}

// ------------------------------------------------------------------ quantize

/// Packs 2-bit values: byte `j/4 + l` of each 128-chunk holds weights
/// `l, l+32, l+64, l+96` of the chunk (Q2_K/Q3_K `qs`).
#[inline]
fn pack_2bit<T: Copy + Into<i32>>(l: &[T; QK_K]) -> [u8; QK_K / 4] {
    let mut qs = [0u8; QK_K / 4];
    for j in (0..QK_K).step_by(128) {
        for i in 0..32 {
            let v = |o: usize| l[j + i + o].into() as u8;
            qs[j / 4 + i] = v(0) | (v(32) << 2) | (v(64) << 4) | (v(96) << 6);
        }
    }
    qs
}

/// `quantize_row_q2_K_ref`.
pub(crate) fn quantize_q2_k(x: &[f32]) -> BlockQ2K {
    let x = &x[..QK_K];
    let mut l = [0u8; QK_K];
    let mut laux = [0u8; 16];
    let mut weights = [0f32; 16];
    let mut mins = [0f32; QK_K / 16];
    let mut scales = [0f32; QK_K / 16];
    let q4scale = 15.0f32;
    let search = Qkx2Search {
        rmin: -0.5,
        rdelta: 0.1,
        nstep: 15,
        use_mad: true,
    };

    let mut max_scale = 0.0f32;
    let mut max_min = 0.0f32;
    for j in 0..QK_K / 16 {
        let xb = &x[16 * j..16 * j + 16];
        for (w, &v) in weights.iter_mut().zip(xb) {
            *w = v.abs();
        }
        let (scale, min) = make_qkx2_quants(
            3,
            xb,
            &weights,
            &mut l[16 * j..16 * j + 16],
            &mut laux,
            search,
        );
        scales[j] = scale;
        mins[j] = min;
        if scale > max_scale {
            max_scale = scale;
        }
        if min > max_min {
            max_min = min;
        }
    }

    let mut out = BlockQ2K {
        scales: [0; QK_K / 16],
        qs: [0; QK_K / 4],
        d: 0,
        dmin: 0,
    };
    if max_scale > 0.0 {
        let iscale = q4scale / max_scale;
        for j in 0..QK_K / 16 {
            out.scales[j] = nearest_int(iscale * scales[j]) as u8;
        }
        out.d = f32_to_f16_ggml(max_scale / q4scale);
    } else {
        out.d = f32_to_f16_ggml(0.0);
    }
    if max_min > 0.0 {
        let iscale = q4scale / max_min;
        for j in 0..QK_K / 16 {
            out.scales[j] |= (nearest_int(iscale * mins[j]) << 4) as u8;
        }
        out.dmin = f32_to_f16_ggml(max_min / q4scale);
    } else {
        out.dmin = f32_to_f16_ggml(0.0);
    }
    let dd = f16_to_f32(out.d);
    let dmin = f16_to_f32(out.dmin);
    for j in 0..QK_K / 16 {
        let d = dd * (out.scales[j] & 0x0f) as f32;
        if d == 0.0 {
            continue;
        }
        let dm = dmin * (out.scales[j] >> 4) as f32;
        for ii in 0..16 {
            let q = nearest_int((x[16 * j + ii] + dm) / d).clamp(0, 3);
            l[16 * j + ii] = q as u8;
        }
    }
    out.qs = pack_2bit(&l);
    out
}

/// `quantize_row_q3_K_ref`.
pub(crate) fn quantize_q3_k(x: &[f32]) -> BlockQ3K {
    let x = &x[..QK_K];
    let mut l = [0i8; QK_K];
    let mut scales = [0f32; QK_K / 16];
    let mut max_scale = 0.0f32;
    let mut amax = 0.0f32;
    for j in 0..QK_K / 16 {
        scales[j] = make_q3_quants(4, &x[16 * j..16 * j + 16], &mut l[16 * j..16 * j + 16]);
        let scale = scales[j].abs();
        if scale > amax {
            amax = scale;
            max_scale = scales[j];
        }
    }

    let mut sb = [0u8; 12];
    let d16;
    if max_scale != 0.0 {
        let iscale = -32.0 / max_scale;
        for j in 0..QK_K / 16 {
            let li = nearest_int(iscale * scales[j]) as i8;
            let li = (li.clamp(-32, 31) + 32) as u8;
            if j < 8 {
                sb[j] = li & 0x0f;
            } else {
                sb[j - 8] |= (li & 0x0f) << 4;
            }
            sb[j % 4 + 8] |= (li >> 4) << (2 * (j / 4));
        }
        d16 = f32_to_f16_ggml(1.0 / iscale);
    } else {
        d16 = f32_to_f16_ggml(0.0);
    }

    let dd = f16_to_f32(d16);
    let unpacked = q3k_scales(&sb);
    for j in 0..QK_K / 16 {
        let sc = unpacked[j] as i8 - 32;
        let d = dd * sc as f32;
        if d == 0.0 {
            continue;
        }
        for ii in 0..16 {
            let q = nearest_int(x[16 * j + ii] / d).clamp(-4, 3);
            l[16 * j + ii] = (q + 4) as i8;
        }
    }

    let mut hmask = [0u8; QK_K / 8];
    for (j, lj) in l.iter_mut().enumerate() {
        if *lj > 3 {
            hmask[j % 32] |= 1 << (j / 32);
            *lj -= 4;
        }
    }
    BlockQ3K {
        hmask,
        qs: pack_2bit(&l),
        scales: sb,
        d: d16,
    }
}

/// Scales and mins of Q4_K/Q5_K found by `make_qkx2_quants` on the 8 groups
/// of 32, packed as those types do; returns `(d, dmin, scales, L)`.
fn qkx_super_block(x: &[f32], nmax: i32, search: Qkx2Search) -> (u16, u16, [u8; 12], [u8; QK_K]) {
    let mut l = [0u8; QK_K];
    let mut laux = [0u8; 32];
    let mut weights = [0f32; 32];
    let mut mins = [0f32; QK_K / 32];
    let mut scales = [0f32; QK_K / 32];
    let mut max_scale = 0.0f32;
    let mut max_min = 0.0f32;
    for j in 0..QK_K / 32 {
        let xb = &x[32 * j..32 * j + 32];
        let mut sum_x2 = 0.0f32;
        for &v in xb {
            sum_x2 += v * v;
        }
        let av_x = (sum_x2 / 32.0).sqrt();
        for (w, &v) in weights.iter_mut().zip(xb) {
            *w = av_x + v.abs();
        }
        let (scale, min) = make_qkx2_quants(
            nmax,
            xb,
            &weights,
            &mut l[32 * j..32 * j + 32],
            &mut laux,
            search,
        );
        scales[j] = scale;
        mins[j] = min;
        if scale > max_scale {
            max_scale = scale;
        }
        if min > max_min {
            max_min = min;
        }
    }

    let inv_scale = if max_scale > 0.0 {
        63.0 / max_scale
    } else {
        0.0
    };
    let inv_min = if max_min > 0.0 { 63.0 / max_min } else { 0.0 };
    let mut sb = [0u8; 12];
    for j in 0..QK_K / 32 {
        let ls = (nearest_int(inv_scale * scales[j]) as u8).min(63);
        let lm = (nearest_int(inv_min * mins[j]) as u8).min(63);
        if j < 4 {
            sb[j] = ls;
            sb[j + 4] = lm;
        } else {
            sb[j + 4] = (ls & 0x0f) | ((lm & 0x0f) << 4);
            sb[j - 4] |= (ls >> 4) << 6;
            sb[j] |= (lm >> 4) << 6;
        }
    }
    let d16 = f32_to_f16_ggml(max_scale / 63.0);
    let dmin16 = f32_to_f16_ggml(max_min / 63.0);

    let dd = f16_to_f32(d16);
    let dmin = f16_to_f32(dmin16);
    for j in 0..QK_K / 32 {
        let (sc, m) = get_scale_min_k4(j, &sb);
        let d = dd * sc as f32;
        if d == 0.0 {
            continue;
        }
        let dm = dmin * m as f32;
        for ii in 0..32 {
            let q = nearest_int((x[32 * j + ii] + dm) / d).clamp(0, nmax);
            l[32 * j + ii] = q as u8;
        }
    }
    (d16, dmin16, sb, l)
}

/// `quantize_row_q4_K_ref`.
pub(crate) fn quantize_q4_k(x: &[f32]) -> BlockQ4K {
    let search = Qkx2Search {
        rmin: -1.0,
        rdelta: 0.1,
        nstep: 20,
        use_mad: false,
    };
    let (d, dmin, scales, l) = qkx_super_block(&x[..QK_K], 15, search);
    let mut qs = [0u8; QK_K / 2];
    for (c, q) in qs.chunks_exact_mut(32).enumerate() {
        for (i, q) in q.iter_mut().enumerate() {
            *q = l[64 * c + i] | (l[64 * c + i + 32] << 4);
        }
    }
    BlockQ4K {
        d,
        dmin,
        scales,
        qs,
    }
}

/// `quantize_row_q5_K_ref`.
pub(crate) fn quantize_q5_k(x: &[f32]) -> BlockQ5K {
    let search = Qkx2Search {
        rmin: -0.5,
        rdelta: 0.1,
        nstep: 15,
        use_mad: false,
    };
    let (d, dmin, scales, l) = qkx_super_block(&x[..QK_K], 31, search);
    let mut qh = [0u8; QK_K / 8];
    let mut qs = [0u8; QK_K / 2];
    for (c, q) in qs.chunks_exact_mut(32).enumerate() {
        let (m1, m2) = (1u8 << (2 * c), 2u8 << (2 * c));
        for (i, q) in q.iter_mut().enumerate() {
            let mut l1 = l[64 * c + i];
            if l1 > 15 {
                l1 -= 16;
                qh[i] |= m1;
            }
            let mut l2 = l[64 * c + i + 32];
            if l2 > 15 {
                l2 -= 16;
                qh[i] |= m2;
            }
            *q = l1 | (l2 << 4);
        }
    }
    BlockQ5K {
        d,
        dmin,
        scales,
        qh,
        qs,
    }
}

/// `quantize_row_q6_K_ref`.
pub(crate) fn quantize_q6_k(x: &[f32]) -> BlockQ6K {
    quantize_q6_k_weighted(x, None)
}

/// `quantize_row_q6_K_impl` for one super-block: the reference algorithm
/// with the importance weights `qw` (this super-block's 256) in the scale
/// search; `None` is `quantize_row_q6_K_ref`.
pub(crate) fn quantize_q6_k_weighted(x: &[f32], qw: Option<&[f32]>) -> BlockQ6K {
    let x = &x[..QK_K];
    let mut l = [0i8; QK_K];
    let mut scales = [0f32; QK_K / 16];
    let mut max_scale = 0.0f32;
    let mut max_abs_scale = 0.0f32;
    for ib in 0..QK_K / 16 {
        let scale = make_qx_quants(
            32,
            &x[16 * ib..16 * ib + 16],
            &mut l[16 * ib..16 * ib + 16],
            1,
            qw.map(|w| &w[16 * ib..16 * ib + 16]),
        );
        scales[ib] = scale;
        let abs_scale = scale.abs();
        if abs_scale > max_abs_scale {
            max_abs_scale = abs_scale;
            max_scale = scale;
        }
    }

    let mut out = BlockQ6K {
        ql: [0; QK_K / 2],
        qh: [0; QK_K / 4],
        scales: [0; QK_K / 16],
        d: f32_to_f16_ggml(0.0),
    };
    if max_abs_scale < GROUP_MAX_EPS {
        return out;
    }

    let iscale = -128.0 / max_scale;
    out.d = f32_to_f16_ggml(1.0 / iscale);
    for ib in 0..QK_K / 16 {
        out.scales[ib] = nearest_int(iscale * scales[ib]).min(127) as i8;
    }
    let dd = f16_to_f32(out.d);
    for j in 0..QK_K / 16 {
        let d = dd * f32::from(out.scales[j]);
        if d == 0.0 {
            continue;
        }
        for ii in 0..16 {
            let q = nearest_int(x[16 * j + ii] / d).clamp(-32, 31);
            l[16 * j + ii] = (q + 32) as i8;
        }
    }

    for c in 0..2 {
        let (j, ql, qh) = (
            128 * c,
            &mut out.ql[64 * c..64 * c + 64],
            &mut out.qh[32 * c..32 * c + 32],
        );
        for i in 0..32 {
            let v = |o: usize| l[j + i + o] as u8;
            ql[i] = (v(0) & 0x0f) | ((v(64) & 0x0f) << 4);
            ql[i + 32] = (v(32) & 0x0f) | ((v(96) & 0x0f) << 4);
            qh[i] = (v(0) >> 4) | ((v(32) >> 4) << 2) | ((v(64) >> 4) << 4) | ((v(96) >> 4) << 6);
        }
    }
    out
}

/// `quantize_row_q8_K_ref`. A zero block gets zero `bsums` (ggml leaves them
/// unwritten).
pub(crate) fn quantize_q8_k(x: &[f32]) -> BlockQ8K {
    let x = &x[..QK_K];
    let mut out = BlockQ8K {
        d: 0.0,
        qs: [0; QK_K],
        bsums: [0; QK_K / 16],
    };
    let mut max = 0.0f32;
    let mut amax = 0.0f32;
    for &v in x {
        let ax = v.abs();
        if ax > amax {
            amax = ax;
            max = v;
        }
    }
    if amax == 0.0 {
        return out;
    }
    let iscale = -127.0 / max;
    for (q, &v) in out.qs.iter_mut().zip(x) {
        *q = nearest_int(iscale * v).min(127) as i8;
    }
    for (s, g) in out.bsums.iter_mut().zip(out.qs.chunks_exact(16)) {
        *s = g.iter().map(|&q| i32::from(q)).sum::<i32>() as i16;
    }
    out.d = 1.0 / iscale;
    out
}
