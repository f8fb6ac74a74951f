//! Quantization with importance weights: ggml's `quantize_row_*_impl` paths,
//! taken by `ggml_quantize_chunk` when `quant_weights` is given (llama-quantize
//! with `--imatrix`), transcribed from ggml-quants.c so the bytes match.

// Index loops keep the transcription line-for-line comparable with ggml-quants.c.
#![allow(clippy::needless_range_loop)]

use hearth_gguf::{GgmlType, QK_K};

use super::block::Block;
use super::iq4::{quantize_iq4_nl, quantize_iq4_xs};
use super::k_quants::{
    get_scale_min_k4, quantize_q6_k_weighted, BlockQ2K, BlockQ3K, BlockQ4K, BlockQ5K,
};
use super::legacy::{BlockQ4_0, BlockQ4_1, BlockQ5_0, BlockQ5_1};
use super::numeric::{f16_to_f32, f32_to_f16_ggml, nearest_int};
use super::scale_search::{make_qx_quants, GROUP_MAX_EPS};

const QK: usize = 32;

pub(crate) fn supports(ty: GgmlType) -> bool {
    use GgmlType as T;
    matches!(
        ty,
        T::Q4_0
            | T::Q4_1
            | T::Q5_0
            | T::Q5_1
            | T::Q2_K
            | T::Q3_K
            | T::Q4_K
            | T::Q5_K
            | T::Q6_K
            | T::IQ4_NL
            | T::IQ4_XS
    )
}

/// One row; `x.len()` is a whole number of blocks of `ty`, `y` the row's
/// bytes, `qw` one weight per column. Types outside [`supports`] are left
/// untouched (the caller checks).
pub(crate) fn quantize_row(ty: GgmlType, x: &[f32], y: &mut [u8], qw: &[f32]) {
    use GgmlType as T;
    match ty {
        T::Q4_0 => legacy_row(x, y, qw, q4_0),
        T::Q5_0 => legacy_row(x, y, qw, q5_0),
        T::Q4_1 => legacy_row(x, y, qw, q4_1),
        T::Q5_1 => legacy_row(x, y, qw, q5_1),
        T::Q2_K => blocks(x, y, qw, QK_K, q2_k),
        T::Q3_K => blocks(x, y, qw, QK_K, q3_k),
        T::Q4_K => blocks(x, y, qw, QK_K, q4_k),
        T::Q5_K => blocks(x, y, qw, QK_K, q5_k),
        T::Q6_K => blocks(x, y, qw, QK_K, |xb, w| quantize_q6_k_weighted(xb, Some(w))),
        T::IQ4_NL => blocks(x, y, qw, QK, |xb, w| quantize_iq4_nl(xb, Some(w))),
        T::IQ4_XS => blocks(x, y, qw, QK_K, |xb, w| quantize_iq4_xs(xb, Some(w))),
        _ => {}
    }
}

/// Runs `f(block, its weights)` over the blocks of a row.
fn blocks<B: Block>(
    x: &[f32],
    y: &mut [u8],
    qw: &[f32],
    n: usize,
    f: impl Fn(&[f32], &[f32]) -> B,
) {
    for ((xb, w), out) in x
        .chunks_exact(n)
        .zip(qw.chunks_exact(n))
        .zip(y.chunks_exact_mut(B::BYTES))
    {
        f(xb, w).encode(out);
    }
}

/// The 32-weight types: `weight[j] = qw[j] * sqrt(sigma2 + x[j]^2)` with
/// `sigma2` the mean square of the whole row.
fn legacy_row<B: Block>(x: &[f32], y: &mut [u8], qw: &[f32], f: impl Fn(&[f32], &[f32; QK]) -> B) {
    let mut sum_x2 = 0.0f32;
    for &v in x {
        sum_x2 += v * v;
    }
    let sigma2 = sum_x2 / x.len() as f32;
    let mut weight = [0f32; QK];
    for ((xb, w), out) in x
        .chunks_exact(QK)
        .zip(qw.chunks_exact(QK))
        .zip(y.chunks_exact_mut(B::BYTES))
    {
        for j in 0..QK {
            weight[j] = w[j] * (sigma2 + xb[j] * xb[j]).sqrt();
        }
        f(xb, &weight).encode(out);
    }
}

fn pack_nibbles(l: &[u8; QK]) -> [u8; QK / 2] {
    std::array::from_fn(|j| (l[j] & 0x0f) | ((l[j + 16] & 0x0f) << 4))
}

fn fifth_bits(l: &[u8; QK]) -> [u8; 4] {
    let mut qh = 0u32;
    for j in 0..16 {
        qh |= u32::from((l[j] & 0x10) >> 4) << j;
        qh |= u32::from((l[j + 16] & 0x10) >> 4) << (j + 16);
    }
    qh.to_le_bytes()
}

fn symmetric(xb: &[f32], w: &[f32; QK], nmax: i32) -> (u16, [u8; QK]) {
    let mut l = [0i8; QK];
    let d = make_qx_quants(nmax, &xb[..QK], &mut l, 1, Some(w));
    (f32_to_f16_ggml(d), l.map(|v| v as u8))
}

fn q4_0(xb: &[f32], w: &[f32; QK]) -> BlockQ4_0 {
    let (d, l) = symmetric(xb, w, 8);
    BlockQ4_0 {
        d,
        qs: pack_nibbles(&l),
    }
}

fn q5_0(xb: &[f32], w: &[f32; QK]) -> BlockQ5_0 {
    let (d, l) = symmetric(xb, w, 16);
    BlockQ5_0 {
        d,
        qh: fifth_bits(&l),
        qs: pack_nibbles(&l),
    }
}

fn q4_1(xb: &[f32], w: &[f32; QK]) -> BlockQ4_1 {
    let mut l = [0u8; QK];
    let (d, min) = make_qkx3_quants(15, &xb[..QK], w, &mut l, -0.9, 0.05, 36);
    BlockQ4_1 {
        d: f32_to_f16_ggml(d),
        m: f32_to_f16_ggml(-min),
        qs: pack_nibbles(&l),
    }
}

fn q5_1(xb: &[f32], w: &[f32; QK]) -> BlockQ5_1 {
    let mut l = [0u8; QK];
    let (d, min) = make_qkx3_quants(31, &xb[..QK], w, &mut l, -0.9, 0.05, 36);
    BlockQ5_1 {
        d: f32_to_f16_ggml(d),
        m: f32_to_f16_ggml(-min),
        qh: fifth_bits(&l),
        qs: pack_nibbles(&l),
    }
}

/// `make_qkx3_quants` with `use_mad = false`: returns `(scale, the_min)`.
fn make_qkx3_quants(
    nmax: i32,
    x: &[f32],
    weights: &[f32],
    l_out: &mut [u8],
    rmin: f32,
    rdelta: f32,
    nstep: i32,
) -> (f32, f32) {
    let n = x.len();
    let weights = &weights[..n];
    let l_out = &mut l_out[..n];
    let mut laux = [0u8; QK];
    let laux = &mut laux[..n];
    let mut min = x[0];
    let mut max = x[0];
    let mut sum_w = weights[0];
    let mut sum_x = sum_w * x[0];
    for i in 1..n {
        if x[i] < min {
            min = x[i];
        }
        if x[i] > max {
            max = x[i];
        }
        let w = weights[i];
        sum_w += w;
        sum_x += w * x[i];
    }
    if min > 0.0 {
        min = 0.0;
    }
    if max <= min {
        l_out.fill(0);
        return (0.0, -min);
    }
    let nmaxf = nmax as f32;
    let mut iscale = nmaxf / (max - min);
    let mut scale = 1.0 / iscale;
    let mut best_mad = 0.0f32;
    for i in 0..n {
        let l = nearest_int(iscale * (x[i] - min)).clamp(0, nmax) as u8;
        l_out[i] = l;
        let diff = scale * f32::from(l) + min - x[i];
        best_mad += weights[i] * (diff * diff);
    }
    if nstep < 1 {
        return (scale, -min);
    }
    for is in 0..=nstep {
        iscale = (rmin + rdelta * is as f32 + nmaxf) / (max - min);
        for i in 0..n {
            laux[i] = nearest_int(iscale * (x[i] - min)).clamp(0, nmax) as u8;
        }
        let (mut sum_l, mut sum_l2, mut sum_xl) = (0.0f32, 0.0f32, 0.0f32);
        for i in 0..n {
            let w = weights[i];
            let l = f32::from(laux[i]);
            sum_l += w * l;
            sum_l2 += w * l * l;
            sum_xl += w * l * x[i];
        }
        let d = sum_w * sum_l2 - sum_l * sum_l;
        if d > 0.0 {
            let mut this_scale = (sum_w * sum_xl - sum_x * sum_l) / d;
            let mut this_min = (sum_l2 * sum_x - sum_l * sum_xl) / d;
            if this_min > 0.0 {
                this_min = 0.0;
                this_scale = sum_xl / sum_l2;
            }
            let mut mad = 0.0f32;
            for i in 0..n {
                let diff = this_scale * f32::from(laux[i]) + this_min - x[i];
                mad += weights[i] * (diff * diff);
            }
            if mad < best_mad {
                l_out.copy_from_slice(laux);
                best_mad = mad;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    (scale, -min)
}

/// `make_qp_quants`: non-negative quantization of the sub-block scales
/// (`L` in `0..=nmax`, weighted by `quant_weights`); returns the scale.
fn make_qp_quants(nmax: i32, x: &[f32], l: &mut [u8], quant_weights: &[f32]) -> f32 {
    let n = x.len();
    let l = &mut l[..n];
    let qw = &quant_weights[..n];
    let mut max = 0.0f32;
    for &v in x {
        max = if max > v { max } else { v };
    }
    if max < GROUP_MAX_EPS {
        l.fill(0);
        return 0.0;
    }
    let nmaxf = nmax as f32;
    let mut iscale = nmaxf / max;
    for i in 0..n {
        l[i] = nearest_int(iscale * x[i]) as u8;
    }
    let scale = 1.0 / iscale;
    let mut best_mse = 0.0f32;
    for i in 0..n {
        let diff = x[i] - scale * f32::from(l[i]);
        best_mse += qw[i] * diff * diff;
    }
    for is in -4..=4 {
        if is == 0 {
            continue;
        }
        let iscale_is = (0.1 * is as f32 + nmaxf) / max;
        let scale_is = 1.0 / iscale_is;
        let mut mse = 0.0f32;
        for i in 0..n {
            let li = nearest_int(iscale_is * x[i]).min(nmax);
            let diff = x[i] - scale_is * li as f32;
            mse += qw[i] * diff * diff;
        }
        if mse < best_mse {
            best_mse = mse;
            iscale = iscale_is;
        }
    }
    let mut sumlx = 0.0f32;
    let mut suml2 = 0.0f32;
    for i in 0..n {
        let li = nearest_int(iscale * x[i]).min(nmax);
        l[i] = li as u8;
        let w = qw[i];
        // The sums use the int (possibly negative), L keeps its low byte.
        let lf = li as f32;
        sumlx += w * x[i] * lf;
        suml2 += w * lf * lf;
    }
    for _ in 0..5 {
        let mut n_changed = 0;
        for i in 0..n {
            let w = qw[i];
            let li = f32::from(l[i]);
            let mut slx = sumlx - w * x[i] * li;
            let mut sl2 = suml2 - w * li * li;
            if slx > 0.0 && sl2 > 0.0 {
                let new_l = nearest_int(x[i] * sl2 / slx).min(nmax);
                if new_l != i32::from(l[i]) {
                    let nl = new_l as f32;
                    slx += w * x[i] * nl;
                    sl2 += w * nl * nl;
                    if slx * slx * suml2 > sumlx * sumlx * sl2 {
                        l[i] = new_l as u8;
                        sumlx = slx;
                        suml2 = sl2;
                        n_changed += 1;
                    }
                }
            }
        }
        if n_changed == 0 {
            break;
        }
    }
    if suml2 > 0.0 {
        sumlx / suml2
    } else {
        0.0
    }
}

/// The common part of `quantize_row_q4_K_impl` / `quantize_row_q5_K_impl`
/// for one super-block: `(d, dmin, scales, L)`.
fn qkx3_super_block(x: &[f32], qw: &[f32], nmax: i32) -> (u16, u16, [u8; 12], [u8; QK_K]) {
    let x = &x[..QK_K];
    let mut l = [0u8; QK_K];
    let mut ls = [0u8; QK_K / 32];
    let mut lm = [0u8; QK_K / 32];
    let mut weights = [0f32; 32];
    let mut sw = [0f32; QK_K / 32];
    let mut mins = [0f32; QK_K / 32];
    let mut scales = [0f32; QK_K / 32];
    let mut sum_x2 = 0.0f32;
    for &v in x {
        sum_x2 += v * v;
    }
    let sigma2 = 2.0 * sum_x2 / QK_K as f32;
    for j in 0..QK_K / 32 {
        for i in 0..32 {
            let v = x[32 * j + i];
            weights[i] = qw[32 * j + i] * (sigma2 + v * v).sqrt();
        }
        let mut sumw = 0.0f32;
        for &w in &weights {
            sumw += w;
        }
        sw[j] = sumw;
        let (scale, min) = make_qkx3_quants(
            nmax,
            &x[32 * j..32 * j + 32],
            &weights,
            &mut l[32 * j..32 * j + 32],
            -0.9,
            0.05,
            36,
        );
        scales[j] = scale;
        mins[j] = min;
    }
    let d_block = make_qp_quants(63, &scales, &mut ls, &sw);
    let m_block = make_qp_quants(63, &mins, &mut lm, &sw);
    let mut sb = [0u8; 12];
    for j in 0..QK_K / 32 {
        let (a, b) = (ls[j].min(63), lm[j].min(63));
        if j < 4 {
            sb[j] = a;
            sb[j + 4] = b;
        } else {
            sb[j + 4] = (a & 0x0f) | ((b & 0x0f) << 4);
            sb[j - 4] |= (a >> 4) << 6;
            sb[j] |= (b >> 4) << 6;
        }
    }
    let d16 = f32_to_f16_ggml(d_block);
    let dmin16 = f32_to_f16_ggml(m_block);
    for j in 0..QK_K / 32 {
        let (sc, m) = get_scale_min_k4(j, &sb);
        let d = f16_to_f32(d16) * f32::from(sc);
        if d == 0.0 {
            continue;
        }
        let dm = f16_to_f32(dmin16) * f32::from(m);
        for ii in 0..32 {
            l[32 * j + ii] = nearest_int((x[32 * j + ii] + dm) / d).clamp(0, nmax) as u8;
        }
    }
    (d16, dmin16, sb, l)
}

fn q4_k(x: &[f32], qw: &[f32]) -> BlockQ4K {
    let (d, dmin, scales, l) = qkx3_super_block(x, qw, 15);
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

fn q5_k(x: &[f32], qw: &[f32]) -> BlockQ5K {
    let (d, dmin, scales, l) = qkx3_super_block(x, qw, 31);
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

/// Four 2-bit values per byte, ggml's k-quant layout.
fn pack_2bit(l: &[u8; QK_K]) -> [u8; QK_K / 4] {
    let mut qs = [0u8; QK_K / 4];
    for j in (0..QK_K).step_by(128) {
        for i in 0..32 {
            qs[j / 4 + i] =
                l[j + i] | (l[j + i + 32] << 2) | (l[j + i + 64] << 4) | (l[j + i + 96] << 6);
        }
    }
    qs
}

/// `quantize_row_q2_K_impl` for one super-block.
fn q2_k(x: &[f32], qw: &[f32]) -> BlockQ2K {
    let x = &x[..QK_K];
    let mut l = [0u8; QK_K];
    let mut mins = [0f32; QK_K / 16];
    let mut scales = [0f32; QK_K / 16];
    let mut sw = [0f32; QK_K / 16];
    let mut weight = [0f32; 16];
    let mut ls = [0u8; QK_K / 16];
    let mut lm = [0u8; QK_K / 16];
    let mut sumx2 = 0.0f32;
    for &v in x {
        sumx2 += v * v;
    }
    let sigma2 = sumx2 / QK_K as f32;
    for j in 0..QK_K / 16 {
        for i in 0..16 {
            let v = x[16 * j + i];
            weight[i] = qw[16 * j + i] * (sigma2 + v * v).sqrt();
        }
        for &w in &weight {
            sw[j] += w;
        }
        let (scale, min) = make_qkx3_quants(
            3,
            &x[16 * j..16 * j + 16],
            &weight,
            &mut l[16 * j..16 * j + 16],
            -0.9,
            0.05,
            36,
        );
        scales[j] = scale;
        mins[j] = min;
    }
    let dm = make_qp_quants(15, &scales, &mut ls, &sw);
    let mm = make_qp_quants(15, &mins, &mut lm, &sw);
    let d = f32_to_f16_ggml(dm);
    let dmin = f32_to_f16_ggml(mm);
    let (dm, mm) = (f16_to_f32(d), f16_to_f32(dmin));
    let sc: [u8; QK_K / 16] = std::array::from_fn(|j| ls[j] | (lm[j] << 4));
    for j in 0..QK_K / 16 {
        let dd = dm * f32::from(sc[j] & 0x0f);
        if dd == 0.0 {
            continue;
        }
        let m = mm * f32::from(sc[j] >> 4);
        for ii in 0..16 {
            l[16 * j + ii] = nearest_int((x[16 * j + ii] + m) / dd).clamp(0, 3) as u8;
        }
    }
    BlockQ2K {
        scales: sc,
        qs: pack_2bit(&l),
        d,
        dmin,
    }
}

/// `quantize_row_q3_K_impl` for one super-block.
fn q3_k(x: &[f32], qw: &[f32]) -> BlockQ3K {
    let x = &x[..QK_K];
    let mut l = [0i8; QK_K];
    let mut scales = [0f32; QK_K / 16];
    let mut weight = [0f32; 16];
    let mut sw = [0f32; QK_K / 16];
    let mut ls = [0i8; QK_K / 16];
    let mut sumx2 = 0.0f32;
    for &v in x {
        sumx2 += v * v;
    }
    let sigma2 = 2.0 * sumx2 / QK_K as f32;
    for j in 0..QK_K / 16 {
        for i in 0..16 {
            let v = x[16 * j + i];
            weight[i] = qw[16 * j + i] * (sigma2 + v * v).sqrt();
        }
        let mut sumw = 0.0f32;
        for &w in &weight {
            sumw += w;
        }
        sw[j] = sumw;
        scales[j] = make_qx_quants(
            4,
            &x[16 * j..16 * j + 16],
            &mut l[16 * j..16 * j + 16],
            1,
            Some(&weight),
        );
    }
    let mut sb = [0u8; 12];
    let d_block = make_qx_quants(32, &scales, &mut ls, 1, Some(&sw));
    for j in 0..QK_K / 16 {
        let mut v = i32::from(ls[j]);
        if j < 8 {
            sb[j] = (v & 0xf) as u8;
        } else {
            sb[j - 8] |= ((v & 0xf) << 4) as u8;
        }
        v >>= 4;
        sb[j % 4 + 8] |= (v << (2 * (j / 4))) as u8;
    }
    let d = f32_to_f16_ggml(d_block);
    for j in 0..QK_K / 16 {
        let lo = if j < 8 { sb[j] & 0xf } else { sb[j - 8] >> 4 };
        let sc = (lo | (((sb[8 + j % 4] >> (2 * (j / 4))) & 3) << 4)) as i8 as i32 - 32;
        let dd = f16_to_f32(d) * sc as f32;
        if dd == 0.0 {
            continue;
        }
        for ii in 0..16 {
            l[16 * j + ii] = (nearest_int(x[16 * j + ii] / dd).clamp(-4, 3) + 4) as i8;
        }
    }
    let mut hmask = [0u8; QK_K / 8];
    let mut lu = [0u8; QK_K];
    let (mut m, mut hm) = (0usize, 1u8);
    for j in 0..QK_K {
        let mut v = l[j] as u8;
        if v > 3 {
            hmask[m] |= hm;
            v -= 4;
        }
        lu[j] = v;
        m += 1;
        if m == QK_K / 8 {
            m = 0;
            hm = hm.wrapping_shl(1);
        }
    }
    BlockQ3K {
        hmask,
        qs: pack_2bit(&lu),
        scales: sb,
        d,
    }
}
