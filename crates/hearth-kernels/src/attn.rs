//! Attention kernels for many queries over one K/V head of an f16 cache (prefill: the query
//! heads of a GQA group, every token of a batch): the scores `q . k` and the weighted sum of
//! the V rows, each cell's K and V converted once for all the queries instead of once per
//! query as [`crate::vec::dot_rows_f16`] and [`crate::vec::axpy_rows_f16`] do.
//!
//! The scores run "vertically": K is widened to f32 and transposed into blocks of
//! [`CELLS`] cells ([`KBlocks`]), so one fused multiply-add computes a dimension of sixteen
//! cells' dot products. The additions are those of the AVX2 `dot_f16`, reproduced lane by
//! lane: dimension `d` goes to lane `d % 32`, each lane is a chain of fused multiply-adds in
//! dimension order, and the 32 lanes are added in `dot_f16`'s tree. So every score has the
//! bits of [`crate::vec::dot_f16`] at the AVX2 and AVX-512 levels, and the weighted sums those
//! of [`crate::vec::axpy_rows_f16`] (one fused multiply-add per cell, in cell order): a row
//! computed here in a batch equals the same row computed alone by the one-query kernels.
//!
//! [`available`] says whether the AVX-512 kernels run; the portable twins
//! ([`scores_scalar`], [`weighted_sum_scalar`]) compute the same operations and are what the
//! tests compare them with.

#![allow(unsafe_code)]

use std::ops::Range;

use crate::cpu::CpuLevel;
use crate::pool::ThreadPool;
use crate::quant::f16_to_f32;

/// Cells per block of [`KBlocks`] (one zmm register of f32).
pub const CELLS: usize = 16;

/// Lanes of the AVX2 `dot_f16` (four registers of eight).
const LANES: usize = 32;

/// Whether the AVX-512 kernels run: the active level is AVX-512 or above. Below it the
/// callers use the one-query kernels of [`crate::vec`] (whose AVX2 bits these reproduce).
pub fn available() -> bool {
    CpuLevel::active() >= CpuLevel::Avx512
}

/// Whether the kernels take these head sizes: K a multiple of 32 values (no tail in
/// `dot_f16`), V a multiple of 64 (no tail in `axpy_rows_f16`).
pub fn supports(head_dim_k: usize, head_dim_v: usize) -> bool {
    head_dim_k > 0 && head_dim_k.is_multiple_of(LANES) && head_dim_v.is_multiple_of(64)
}

/// The K rows of some heads of an f16 cache widened to f32 and transposed per block of
/// [`CELLS`] cells: value `d` of cell `c` of head `h` at
/// `((h * n_blocks + c / CELLS) * dk + d) * CELLS + c % CELLS`. Cells past the last are zero.
#[derive(Default)]
pub struct KBlocks {
    dk: usize,
    n_heads: usize,
    n_blocks: usize,
    data: Vec<f32>,
}

impl KBlocks {
    /// Fills the blocks of heads `heads` (K head `h` being values `h * dk..(h + 1) * dk` of
    /// each cell) for cells `0..n_cells` of `x` (cell `c` at `x[c * stride..]`), blocks
    /// shared between the threads of `pool`.
    ///
    /// # Panics
    /// If `x` is too short for the cells and heads.
    pub fn fill(
        &mut self,
        pool: &ThreadPool,
        x: &[u16],
        stride: usize,
        n_cells: usize,
        heads: Range<usize>,
        dk: usize,
    ) {
        if n_cells > 0 {
            assert!(
                x.len() >= (n_cells - 1) * stride + heads.end * dk,
                "cells of x"
            );
        }
        self.dk = dk;
        self.n_heads = heads.len();
        self.n_blocks = n_cells.div_ceil(CELLS);
        let block = dk * CELLS;
        self.data.clear();
        self.data.resize(self.n_heads * self.n_blocks * block, 0.0);
        let n_blocks = self.n_blocks;
        pool.par_chunks_mut(&mut self.data, block.max(1), |i, out| {
            let (h, b) = (heads.start + i / n_blocks, i % n_blocks);
            for j in 0..CELLS.min(n_cells - b * CELLS) {
                let row = &x[(b * CELLS + j) * stride + h * dk..][..dk];
                for (d, &v) in row.iter().enumerate() {
                    out[d * CELLS + j] = f16_to_f32(v);
                }
            }
        });
    }

    /// Block `b` of head `h` (relative to the filled range).
    fn block(&self, h: usize, b: usize) -> &[f32] {
        let n = self.dk * CELLS;
        &self.data[(h * self.n_blocks + b) * n..][..n]
    }
}

/// `out[g * n + i] = dot_f16(k cell cells.start + i, qs[g * dk..][..dk])` (n = cells.len())
/// for every query `g` of `qs`, K being head `h` of `k`.
///
/// # Panics
/// If the lengths disagree, the head or cells are not in `k`, or [`supports`] refuses `dk`.
pub fn scores(out: &mut [f32], qs: &[f32], k: &KBlocks, h: usize, cells: Range<usize>) {
    let dk = k.dk;
    assert!(supports(dk, 0) && h < k.n_heads && cells.end <= k.n_blocks * CELLS);
    assert!(qs.len().is_multiple_of(dk) && out.len() == qs.len() / dk * cells.len());
    #[cfg(target_arch = "x86_64")]
    if available() {
        // SAFETY: the level is AVX-512 or above, so F, VL, FMA and F16C are present.
        unsafe { avx512::scores(out, qs, k, h, cells) };
        return;
    }
    scores_scalar(out, qs, k, h, cells);
}

/// `ys[g * dv..][..dv] += ws[g * n + c] * v row c`, in cell order `c in 0..n` with one fused
/// multiply-add each (`n = ws.len() / queries`, V row `c` at `x[c * stride..][..dv]`), for
/// every query `g`: [`crate::vec::axpy_rows_f16`]'s bits per query.
///
/// # Panics
/// If the lengths disagree or `dv` is not a multiple of 64.
pub fn weighted_sum(ys: &mut [f32], ws: &[f32], x: &[u16], stride: usize, dv: usize) {
    let nq = ys.len() / dv.max(1);
    assert!(supports(LANES, dv) && dv > 0 && ys.len() == nq * dv);
    assert!(nq > 0 && ws.len().is_multiple_of(nq));
    let n = ws.len() / nq;
    if n > 0 {
        assert!(x.len() >= (n - 1) * stride + dv, "rows of x");
    }
    #[cfg(target_arch = "x86_64")]
    if available() {
        // SAFETY: as in `scores`.
        unsafe { avx512::weighted_sum(ys, ws, x, stride, dv, n) };
        return;
    }
    weighted_sum_scalar(ys, ws, x, stride, dv);
}

/// The portable twin of [`scores`]: the same lanes, chains and additions, one value at a time.
pub fn scores_scalar(out: &mut [f32], qs: &[f32], k: &KBlocks, h: usize, cells: Range<usize>) {
    let dk = k.dk;
    let n = cells.len();
    for (g, q) in qs.chunks_exact(dk).enumerate() {
        for (i, c) in cells.clone().enumerate() {
            let kb = k.block(h, c / CELLS);
            let lane = |l: usize| {
                (l..dk)
                    .step_by(LANES)
                    .fold(0.0f32, |a, d| q[d].mul_add(kb[d * CELLS + c % CELLS], a))
            };
            let s8 = |m: usize| (lane(m) + lane(8 + m)) + (lane(16 + m) + lane(24 + m));
            let s4 = |m: usize| s8(m) + s8(m + 4);
            out[g * n + i] = (s4(0) + s4(2)) + (s4(1) + s4(3));
        }
    }
}

/// The portable twin of [`weighted_sum`].
pub fn weighted_sum_scalar(ys: &mut [f32], ws: &[f32], x: &[u16], stride: usize, dv: usize) {
    let nq = ys.len() / dv;
    let n = ws.len() / nq;
    if n == 0 {
        return;
    }
    for (y, w) in ys.chunks_exact_mut(dv).zip(ws.chunks_exact(n)) {
        for (c, &wc) in w.iter().enumerate() {
            for (yd, &v) in y.iter_mut().zip(&x[c * stride..][..dv]) {
                *yd = wc.mul_add(f16_to_f32(v), *yd);
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;
    use std::ops::Range;

    use super::{KBlocks, CELLS, LANES};

    /// Queries per pass: each K block or V row loaded once for this many.
    const NQ: usize = 4;

    /// [`super::scores`].
    ///
    /// # Safety
    /// The CPU must support AVX-512 F/VL, FMA and F16C; the arguments as `scores` asserts.
    #[target_feature(enable = "avx512f,avx512vl,fma,f16c")]
    pub(super) unsafe fn scores(
        out: &mut [f32],
        qs: &[f32],
        k: &KBlocks,
        h: usize,
        cells: Range<usize>,
    ) {
        let dk = k.dk;
        let n = cells.len();
        let nq = qs.len() / dk;
        let mut g0 = 0;
        while g0 < nq {
            let m = NQ.min(nq - g0);
            let mut b = cells.start / CELLS;
            while b * CELLS < cells.end {
                let s = match m {
                    4 => block_scores::<4>(&qs[g0 * dk..], k.block(h, b), dk),
                    3 => block_scores::<3>(&qs[g0 * dk..], k.block(h, b), dk),
                    2 => block_scores::<2>(&qs[g0 * dk..], k.block(h, b), dk),
                    _ => block_scores::<1>(&qs[g0 * dk..], k.block(h, b), dk),
                };
                // The block's cells inside `cells`.
                let lo = (b * CELLS).max(cells.start);
                let hi = ((b + 1) * CELLS).min(cells.end);
                for (g, sg) in s.iter().enumerate().take(m) {
                    let mut lanes = [0.0f32; CELLS];
                    // SAFETY: 16 floats out.
                    unsafe { _mm512_storeu_ps(lanes.as_mut_ptr(), *sg) };
                    let row = &mut out[(g0 + g) * n..][..n];
                    row[lo - cells.start..hi - cells.start]
                        .copy_from_slice(&lanes[lo - b * CELLS..hi - b * CELLS]);
                }
                b += 1;
            }
            g0 += m;
        }
    }

    /// The scores of `M` queries (`qs[g * dk..][..dk]`) with the sixteen cells of block `kb`.
    #[inline]
    #[target_feature(enable = "avx512f,avx512vl,fma,f16c")]
    fn block_scores<const M: usize>(qs: &[f32], kb: &[f32], dk: usize) -> [__m512; NQ] {
        assert!(qs.len() >= M * dk && kb.len() >= dk * CELLS);
        let (qp, kp) = (qs.as_ptr(), kb.as_ptr());
        // Lane l of `dot_f16`: fused multiply-adds over d = l, l + 32, ... from zero.
        let lane = |l: usize| {
            let mut a = [_mm512_setzero_ps(); M];
            let mut d = l;
            while d < dk {
                // SAFETY: d < dk: 16 floats at d * 16 of the block, value d of each query.
                let kv = unsafe { _mm512_loadu_ps(kp.add(d * CELLS)) };
                for (g, a) in a.iter_mut().enumerate() {
                    // SAFETY: as above.
                    let qv = _mm512_set1_ps(unsafe { *qp.add(g * dk + d) });
                    *a = _mm512_fmadd_ps(qv, kv, *a);
                }
                d += LANES;
            }
            a
        };
        let add = |x: [__m512; M], y: [__m512; M]| -> [__m512; M] {
            std::array::from_fn(|g| _mm512_add_ps(x[g], y[g]))
        };
        // (L(m) + L(8 + m)) + (L(16 + m) + L(24 + m)): the four registers added.
        let s8 = |m: usize| add(add(lane(m), lane(8 + m)), add(lane(16 + m), lane(24 + m)));
        // hsum: the two halves, then (0 + 2) + (1 + 3).
        let s4 = |m: usize| add(s8(m), s8(m + 4));
        let r = add(add(s4(0), s4(2)), add(s4(1), s4(3)));
        let mut out = [_mm512_setzero_ps(); NQ];
        out[..M].copy_from_slice(&r);
        out
    }

    /// [`super::weighted_sum`] for `n` cells.
    ///
    /// # Safety
    /// As [`scores`]; the arguments as `weighted_sum` asserts.
    #[target_feature(enable = "avx512f,avx512vl,fma,f16c")]
    pub(super) unsafe fn weighted_sum(
        ys: &mut [f32],
        ws: &[f32],
        x: &[u16],
        stride: usize,
        dv: usize,
        n: usize,
    ) {
        let nq = ys.len() / dv;
        let mut g0 = 0;
        while g0 < nq {
            let m = NQ.min(nq - g0);
            let (y, w) = (&mut ys[g0 * dv..(g0 + m) * dv], &ws[g0 * n..(g0 + m) * n]);
            // SAFETY: forwarded.
            unsafe {
                match m {
                    4 => sum_rows::<4>(y, w, x, stride, dv, n),
                    3 => sum_rows::<3>(y, w, x, stride, dv, n),
                    2 => sum_rows::<2>(y, w, x, stride, dv, n),
                    _ => sum_rows::<1>(y, w, x, stride, dv, n),
                }
            }
            g0 += m;
        }
    }

    /// `M` queries of [`weighted_sum`]: 64 outputs of each in registers over all cells.
    ///
    /// # Safety
    /// As [`weighted_sum`], with `ys` `M * dv` and `ws` `M * n` long.
    #[target_feature(enable = "avx512f,avx512vl,fma,f16c")]
    unsafe fn sum_rows<const M: usize>(
        ys: &mut [f32],
        ws: &[f32],
        x: &[u16],
        stride: usize,
        dv: usize,
        n: usize,
    ) {
        assert!(ys.len() == M * dv && ws.len() == M * n);
        assert!(n == 0 || x.len() >= (n - 1) * stride + dv);
        for d0 in (0..dv).step_by(64) {
            let mut acc = [[_mm512_setzero_ps(); 4]; M];
            for (g, a) in acc.iter_mut().enumerate() {
                for (k, a) in a.iter_mut().enumerate() {
                    // SAFETY: outputs d0 + 16k..+16 < dv of query g.
                    *a = unsafe { _mm512_loadu_ps(ys.as_ptr().add(g * dv + d0 + 16 * k)) };
                }
            }
            for c in 0..n {
                // SAFETY: values d0..d0 + 64 <= dv of row c, inside x (asserted).
                let v: [__m512; 4] = std::array::from_fn(|k| unsafe {
                    _mm512_cvtph_ps(_mm256_loadu_si256(
                        x.as_ptr().add(c * stride + d0 + 16 * k) as *const __m256i
                    ))
                });
                for (g, a) in acc.iter_mut().enumerate() {
                    let wv = _mm512_set1_ps(ws[g * n + c]);
                    for (a, &v) in a.iter_mut().zip(&v) {
                        *a = _mm512_fmadd_ps(wv, v, *a);
                    }
                }
            }
            for (g, a) in acc.iter().enumerate() {
                for (k, &a) in a.iter().enumerate() {
                    // SAFETY: as the loads.
                    unsafe { _mm512_storeu_ps(ys.as_mut_ptr().add(g * dv + d0 + 16 * k), a) };
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vec;
    use crate::vec::tests::{data, f16_data};

    fn bits(x: &[f32]) -> Vec<u32> {
        x.iter().map(|v| v.to_bits()).collect()
    }

    /// (head dim, heads in the cache, cells, queries): one and several blocks, partial last
    /// blocks, query counts around the kernel's four per pass.
    const CASES: &[(usize, usize, usize, usize)] = &[
        (64, 8, 37, 4),
        (64, 2, 16, 1),
        (128, 3, 50, 6),
        (256, 1, 70, 5),
        (32, 1, 3, 2),
    ];

    /// The scores give, for every query and cell range, the bits of the portable twin and of
    /// the one-query `dot_f16` at the AVX2 level (whose order they reproduce).
    #[test]
    fn scores_match_their_twin_and_dot_f16_bit_for_bit() {
        let pool = ThreadPool::new(2);
        for &(dk, n_heads, n_cells, nq) in CASES {
            let stride = n_heads * dk + 8;
            let x: Vec<u16> = f16_data(n_cells * stride, 1);
            let qs = data(nq * dk, 2);
            // The last head, from blocks filled from the second head on where there are two.
            let (first, h) = (usize::from(n_heads > 1), n_heads - 1);
            let mut k = KBlocks::default();
            k.fill(&pool, &x, stride, n_cells, first..n_heads, dk);
            for cells in [0..n_cells, 3.min(n_cells)..n_cells, 1..n_cells.min(17)] {
                let mut got = vec![0.0f32; nq * cells.len()];
                let mut twin = got.clone();
                scores(&mut got, &qs, &k, h - first, cells.clone());
                scores_scalar(&mut twin, &qs, &k, h - first, cells.clone());
                assert_eq!(bits(&got), bits(&twin), "dk={dk} cells={cells:?}");
                if CpuLevel::Avx2.is_supported() {
                    let mut want = Vec::new();
                    for q in qs.chunks_exact(dk) {
                        for c in cells.clone() {
                            want.push(vec::dot_f16_at(
                                CpuLevel::Avx2,
                                &x[c * stride + h * dk..][..dk],
                                q,
                            ));
                        }
                    }
                    assert_eq!(bits(&got), bits(&want), "dk={dk} cells={cells:?}");
                }
            }
        }
    }

    /// The weighted sums give the bits of the twin and of `axpy_rows_f16` query by query.
    #[test]
    fn weighted_sums_match_their_twin_and_axpy_rows_bit_for_bit() {
        for (dv, n, nq) in [
            (64usize, 37usize, 4usize),
            (128, 5, 7),
            (256, 70, 1),
            (64, 0, 2),
        ] {
            let stride = dv + 24;
            let x: Vec<u16> = f16_data(n.max(1) * stride, 3);
            let ws = data(nq * n, 4);
            let start = data(nq * dv, 5);
            let mut got = start.clone();
            let mut twin = start.clone();
            weighted_sum(&mut got, &ws, &x, stride, dv);
            weighted_sum_scalar(&mut twin, &ws, &x, stride, dv);
            assert_eq!(bits(&got), bits(&twin), "dv={dv} n={n}");
            if CpuLevel::Avx2.is_supported() {
                let mut want = start.clone();
                for (y, w) in want.chunks_exact_mut(dv).zip(ws.chunks(n.max(1))) {
                    vec::axpy_rows_f16_at(CpuLevel::Avx2, y, &w[..n], &x, stride);
                }
                assert_eq!(bits(&got), bits(&want), "dv={dv} n={n}");
            }
        }
    }

    /// A wrong lane order is caught: the scores of a plain sequential dot product differ.
    #[test]
    fn a_sequential_sum_is_not_the_lane_order() {
        let pool = ThreadPool::new(1);
        let dk = 256;
        let x: Vec<u16> = f16_data(16 * dk, 7);
        let q = data(dk, 8);
        let mut k = KBlocks::default();
        k.fill(&pool, &x, dk, 16, 0..1, dk);
        let mut got = vec![0.0f32; 16];
        scores(&mut got, &q, &k, 0, 0..16);
        let seq: Vec<f32> = (0..16)
            .map(|c| (0..dk).fold(0.0f32, |a, d| q[d].mul_add(f16_to_f32(x[c * dk + d]), a)))
            .collect();
        assert_ne!(bits(&got), bits(&seq));
    }
}
