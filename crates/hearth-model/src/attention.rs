//! Causal grouped-query attention over the KV cache, with online softmax in f32.
//!
//! This reproduces llama.cpp's CPU flash attention (`ggml_compute_forward_flash_attn_ext_f16` in
//! `ggml-cpu/ops.cpp`; llama-server enables flash attention on the CPU by default). ggml picks one
//! of two kernels by the number of query rows in the micro-batch:
//!
//! - **tiled** (at least [`Q_TILE`] rows and an f16 cache): Q stays f32, K and V are widened to
//!   f32, scores are processed in tiles of [`KV_TILE`] cells with a per-tile maximum, the
//!   exponentials go through the vectorized `ggml_v_expf`, and V is accumulated in f32;
//! - **one row at a time** (fewer rows, e.g. every decode step, or a quantized cache): Q is
//!   converted to the cache's dot type (f16 / Q8_0), the softmax is updated cell by cell with
//!   `expf`, and for an f16 cache the V accumulator itself is kept in f16.
//!
//! Both are implemented; `attention` chooses as ggml does, so a decode step here computes what
//! a decode step in llama.cpp computes.

use hearth_kernels::pool::ThreadPool;
use hearth_kernels::vec::{axpy_f16, axpy_f32, dot_f16 as vec_dot_f16, dot_f32 as vec_dot_f32};

use crate::kv_cache::{KvType, LayerKv, RowSlice};
use crate::ops::{
    dot, dot_f16_vec, fma32, reduce_add_16, round_activation, round_f16, v_expf, Mm, Numerics,
};

/// Query rows from which ggml uses the tiled kernel (`GGML_FA_TILE_Q`).
pub const Q_TILE: usize = 64;
/// KV cells per tile of the tiled kernel (`GGML_FA_TILE_KV`).
pub const KV_TILE: usize = 64;

/// Shape and scaling of one attention call.
#[derive(Clone, Copy, Debug)]
pub struct AttnParams {
    pub n_head: usize,
    pub n_head_kv: usize,
    pub head_dim_k: usize,
    pub head_dim_v: usize,
    /// Multiplies `q . k` (`kq_scale`).
    pub scale: f32,
    /// Logit soft-capping `c * tanh(s / c)` (gemma2).
    pub softcap: Option<f32>,
    /// Sliding window: a query at `p` sees keys at `p - window < p0 <= p`.
    pub window: Option<usize>,
}

impl AttnParams {
    fn visible(&self, p_key: i64, p_query: i64) -> bool {
        p_key <= p_query && self.window.is_none_or(|w| p_query - p_key < w as i64)
    }

    /// `(scale applied to q.k, cap)`: with soft-capping ggml folds `1/cap` into the scale.
    fn score_scale(&self) -> (f32, f32) {
        match self.softcap {
            Some(c) if c != 0.0 => (self.scale / c, c),
            _ => (self.scale, 0.0),
        }
    }
}

/// Attention of `n_q` query rows (`q`: `[n_q][n_head * head_dim_k]`, positions `q_pos`) over
/// every cell of `cache` (which already holds this batch's K and V). Writes
/// `[n_q][n_head * head_dim_v]` into `out`. With `per_token`, every row is computed as ggml
/// computes a one-token batch.
pub(crate) fn attention(
    q: &[f32],
    q_pos: &[i64],
    cache: &LayerKv,
    p: &AttnParams,
    out: &mut [f32],
    mm: &Mm<'_>,
) {
    if mm.numerics == Numerics::Fast {
        attention_fast(q, q_pos, cache, p, out, mm.pool);
        return;
    }
    let per_token = mm.exact_per_token();
    let n_q = q_pos.len();
    let n_cells = cache.n_cells();
    let one_token = per_token || n_q == 1;
    let mut k = Vec::new();
    let mut v = Vec::new();
    cache.k.read_all(n_cells, &mut k);
    cache.v.read_all(n_cells, &mut v);
    let ctx = Ctx {
        k: &k,
        v: &v,
        pos: &cache.pos,
        p,
        kv_type: cache.kv_type(),
        capacity: cache.capacity,
        one_token,
    };
    let q_width = p.n_head * p.head_dim_k;
    let o_width = p.n_head * p.head_dim_v;
    let tiled = !per_token && n_q >= Q_TILE && cache.kv_type() == KvType::F16;

    // Work items: (head, first query row, rows). Tiled items cover up to Q_TILE rows.
    let rows_per_item = if tiled { Q_TILE } else { 1 };
    let mut items = Vec::new();
    for h in 0..p.n_head {
        for t0 in (0..n_q).step_by(rows_per_item) {
            items.push((h, t0, rows_per_item.min(n_q - t0)));
        }
    }
    let work = n_q * n_cells * p.n_head * (p.head_dim_k + p.head_dim_v);
    let n_parts = if work >= 1 << 18 {
        (4 * mm.pool.n_threads()).min(items.len())
    } else {
        1
    };
    let per_part = items.len().div_ceil(n_parts.max(1));
    let results = std::sync::Mutex::new(Vec::with_capacity(n_parts));
    mm.pool.run_parts(n_parts, |i, _| {
        let a = (i * per_part).min(items.len());
        let b = ((i + 1) * per_part).min(items.len());
        let r = run_items(&ctx, &items[a..b], q, q_pos, q_width, tiled);
        results.lock().unwrap_or_else(|e| e.into_inner()).push(r);
    });
    let results = results.into_inner().unwrap_or_else(|e| e.into_inner());
    let dv = p.head_dim_v;
    for (h, t0, rows, o) in results.into_iter().flatten() {
        for r in 0..rows {
            let t = t0 + r;
            out[t * o_width + h * dv..t * o_width + (h + 1) * dv]
                .copy_from_slice(&o[r * dv..(r + 1) * dv]);
        }
    }
}

/// [`attention`] with hearth's kernels: for every query row and head, the scores of the
/// visible cells (f32 dot products with the cached K, read in place), an exact softmax in f32,
/// and the weighted sum of the cached V rows. Rows and heads are shared between the threads of
/// `pool`; each output is computed whole by one thread, so the result of a row does not
/// depend on its batch or on the thread count.
fn attention_fast(
    q: &[f32],
    q_pos: &[i64],
    cache: &LayerKv,
    p: &AttnParams,
    out: &mut [f32],
    pool: &ThreadPool,
) {
    if q_pos.len() > 1 && attention_grouped(q, q_pos, cache, p, out, pool) {
        return;
    }
    let (dk, dv) = (p.head_dim_k, p.head_dim_v);
    let group = (p.n_head / p.n_head_kv.max(1)).max(1);
    let (scale, cap) = p.score_scale();
    let q_width = p.n_head * dk;
    let pos = &cache.pos;
    pool.par_chunks_mut(out, dv, |i, o| {
        let (t, h) = (i / p.n_head, i % p.n_head);
        let kvh = h / group;
        let qp = q_pos[t];
        let qh = &q[t * q_width + h * dk..t * q_width + (h + 1) * dk];
        let std::ops::Range { start: first, end } = visible_cells(pos, p, qp);
        o.fill(0.0);
        if first >= end {
            return;
        }
        let mut scratch = Vec::new();
        let mut scores = Vec::with_capacity(end - first);
        if let Some((k, width)) = cache.k.f16_cells() {
            // The same dot products as one `dot_f16` per cell.
            scores.resize(end - first, 0.0);
            hearth_kernels::vec::dot_rows_f16(
                &mut scores,
                qh,
                &k[first * width + kvh * dk..],
                width,
            );
        } else {
            for c in first..end {
                scores.push(
                    match cache.k.slice(c, kvh * dk..(kvh + 1) * dk, &mut scratch) {
                        RowSlice::F16(k) => vec_dot_f16(k, qh),
                        RowSlice::F32(k) => vec_dot_f32(k, qh),
                    },
                );
            }
        }
        let sum = softmax_numerators(&mut scores, scale, cap);
        if let Some((v, width)) = cache.v.f16_cells() {
            // The same fused multiply-adds as one `axpy_f16` per cell, in cell order.
            hearth_kernels::vec::axpy_rows_f16(o, &scores, &v[first * width + kvh * dv..], width);
        } else {
            for (c, &w) in (first..end).zip(&scores) {
                match cache.v.slice(c, kvh * dv..(kvh + 1) * dv, &mut scratch) {
                    RowSlice::F16(v) => axpy_f16(o, w, v),
                    RowSlice::F32(v) => axpy_f32(o, w, v),
                }
            }
        }
        let inv = 1.0 / sum;
        o.iter_mut().for_each(|x| *x *= inv);
    });
}

/// The scores of one query row scaled (and soft-capped), then replaced by `exp(s - max)`;
/// returns their sum (the softmax's denominator).
fn softmax_numerators(scores: &mut [f32], scale: f32, cap: f32) -> f32 {
    for s in scores.iter_mut() {
        *s *= scale;
        if cap != 0.0 {
            *s = cap * s.tanh();
        }
    }
    let max = scores.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
    hearth_kernels::vec::exp_sub(scores, max);
    hearth_kernels::vec::sum_f32(scores)
}

/// The cells a query at `qp` sees: cells hold ascending positions, so the visible ones are a
/// contiguous run.
fn visible_cells(pos: &[i64], p: &AttnParams, qp: i64) -> std::ops::Range<usize> {
    let first = match p.window {
        Some(w) => pos.partition_point(|&pk| qp - pk >= w as i64),
        None => 0,
    };
    first..pos.partition_point(|&pk| pk <= qp).max(first)
}

/// Bytes of widened K [`attention_grouped`] holds at once (it takes the K/V heads in as many
/// passes as this needs).
const K_BLOCKS_BYTES: usize = 64 << 20;

/// [`attention_fast`] for a batch of several rows over an f16 cache, with the kernels of
/// [`hearth_kernels::attn`]: per token and K/V head, the query heads of the group together,
/// each cell's K and V converted once for all of them. Every score and weighted sum has the
/// bits of the one-query kernels, so the result is [`attention_fast`]'s, row by row. Returns
/// false (and does nothing) where those kernels do not run or do not take the head sizes.
fn attention_grouped(
    q: &[f32],
    q_pos: &[i64],
    cache: &LayerKv,
    p: &AttnParams,
    out: &mut [f32],
    pool: &ThreadPool,
) -> bool {
    use hearth_kernels::attn;
    let (dk, dv) = (p.head_dim_k, p.head_dim_v);
    let (Some((k, kw)), Some((v, vw))) = (cache.k.f16_cells(), cache.v.f16_cells()) else {
        return false;
    };
    if !attn::available()
        || !attn::supports(dk, dv)
        || p.n_head_kv == 0
        || !p.n_head.is_multiple_of(p.n_head_kv)
    {
        return false;
    }
    let group = p.n_head / p.n_head_kv;
    let (scale, cap) = p.score_scale();
    let q_width = p.n_head * dk;
    let pos = &cache.pos;
    // Cells any row of the batch sees.
    let n_cells = q_pos
        .iter()
        .map(|&qp| visible_cells(pos, p, qp).end)
        .max()
        .unwrap_or(0);
    let per_head = n_cells.div_ceil(attn::CELLS) * attn::CELLS * dk * 4;
    let heads_per_pass = (K_BLOCKS_BYTES / per_head.max(1)).clamp(1, p.n_head_kv);
    let mut blocks = attn::KBlocks::default();
    for h0 in (0..p.n_head_kv).step_by(heads_per_pass) {
        let heads = h0..(h0 + heads_per_pass).min(p.n_head_kv);
        blocks.fill(pool, k, kw, n_cells, heads.clone(), dk);
        // Item i: token i / n_head_kv, K/V head i % n_head_kv; its `group` query heads are
        // adjacent in both Q and the output.
        pool.par_chunks_mut(out, group * dv, |i, o| {
            let (t, kvh) = (i / p.n_head_kv, i % p.n_head_kv);
            if !heads.contains(&kvh) {
                return;
            }
            o.fill(0.0);
            let cells = visible_cells(pos, p, q_pos[t]);
            let n = cells.len();
            if n == 0 {
                return;
            }
            let qs = &q[t * q_width + kvh * group * dk..][..group * dk];
            let mut w = vec![0.0f32; group * n];
            attn::scores(&mut w, qs, &blocks, kvh - heads.start, cells.clone());
            let mut sums = vec![0.0f32; group];
            for (row, sum) in w.chunks_exact_mut(n).zip(sums.iter_mut()) {
                *sum = softmax_numerators(row, scale, cap);
            }
            attn::weighted_sum(o, &w, &v[cells.start * vw + kvh * dv..], vw, dv);
            for (y, &sum) in o.chunks_exact_mut(dv).zip(sums.iter()) {
                let inv = 1.0 / sum;
                y.iter_mut().for_each(|x| *x *= inv);
            }
        });
    }
    true
}

struct Ctx<'a> {
    k: &'a [f32],
    v: &'a [f32],
    pos: &'a [i64],
    p: &'a AttnParams,
    kv_type: KvType,
    capacity: usize,
    /// The rows are decode steps (a batch of one token in ggml).
    one_token: bool,
}

type ItemOut = (usize, usize, usize, Vec<f32>);

fn run_items(
    ctx: &Ctx<'_>,
    items: &[(usize, usize, usize)],
    q: &[f32],
    q_pos: &[i64],
    q_width: usize,
    tiled: bool,
) -> Vec<ItemOut> {
    let dk = ctx.p.head_dim_k;
    items
        .iter()
        .map(|&(h, t0, rows)| {
            let q_rows: Vec<&[f32]> = (t0..t0 + rows)
                .map(|t| &q[t * q_width + h * dk..t * q_width + (h + 1) * dk])
                .collect();
            let o = if tiled {
                tiled_head(ctx, h, &q_rows, &q_pos[t0..t0 + rows])
            } else {
                one_row_split(ctx, h, q_rows[0], q_pos[t0])
            };
            (h, t0, rows, o)
        })
        .collect()
}

/// One query row and head, including ggml's split-KV decode path: for a one-token batch whose
/// KV view has at least 512 cells, ggml splits the cells between its threads (two here, as in
/// the reference runs), computes each part with the one-row kernel and merges the partial
/// softmax states (`ggml_flash_attn_ext_reduce_partials`).
fn one_row_split(ctx: &Ctx<'_>, h: usize, q: &[f32], q_pos: i64) -> Vec<f32> {
    const N_THREADS: usize = 2;
    // llama_kv_cache::get_n_kv: used cells padded to 256 (cells hold positions in order).
    let n_kv = ctx
        .capacity
        .min((q_pos as usize + 1).div_ceil(256).max(1) * 256);
    if !(ctx.one_token && ctx.kv_type == KvType::F16 && n_kv >= 512) {
        let (_, s, mut acc) = one_row_head(ctx, h, q, q_pos, i64::MIN, i64::MAX);
        let inv = if s == 0.0 { 0.0 } else { 1.0 / s };
        acc.iter_mut().for_each(|a| *a *= inv);
        return acc;
    }
    let chunk = n_kv.div_ceil(N_THREADS) as i64;
    let mut m_final = f32::NEG_INFINITY;
    let mut s_final = 0.0f32;
    let mut acc = vec![0.0f32; ctx.p.head_dim_v];
    for c in 0..N_THREADS as i64 {
        let (m, s, part) = one_row_head(ctx, h, q, q_pos, c * chunk, (c + 1) * chunk);
        if s == 0.0 {
            continue;
        }
        let m_new = m_final.max(m);
        let scale_old = (m_final - m_new).exp();
        let scale_new = (m - m_new).exp();
        // `a*b + c*d` contracted by GCC on the first product.
        for (a, &p) in acc.iter_mut().zip(&part) {
            *a = fma32(*a, scale_old, p * scale_new);
        }
        s_final = fma32(s_final, scale_old, s * scale_new);
        m_final = m_new;
    }
    if s_final != 0.0 {
        let inv = 1.0 / s_final;
        acc.iter_mut().for_each(|a| *a *= inv);
    }
    acc
}

/// `ggml_compute_forward_flash_attn_ext_f16_one_chunk` for one query row and head over the
/// cells with positions in `[p0, p1)`: returns the running maximum, the sum and the
/// unnormalized accumulator.
fn one_row_head(
    ctx: &Ctx<'_>,
    h: usize,
    q: &[f32],
    q_pos: i64,
    p0: i64,
    p1: i64,
) -> (f32, f32, Vec<f32>) {
    let p = ctx.p;
    let (dk, dv) = (p.head_dim_k, p.head_dim_v);
    let kvh = h / (p.n_head / p.n_head_kv);
    let (kw, vw) = (p.n_head_kv * dk, p.n_head_kv * dv);
    let (scale, cap) = p.score_scale();
    let f16_v = ctx.kv_type == KvType::F16;

    // Q converted to K's vec_dot type.
    let mut qc = q.to_vec();
    match ctx.kv_type {
        KvType::F16 => qc.iter_mut().for_each(|x| *x = round_f16(*x)),
        KvType::Q8_0 => round_activation(hearth_gguf::GgmlType::Q8_0, &mut qc, &mut Vec::new()),
    }

    let mut s_sum = 0.0f32;
    let mut m = f32::NEG_INFINITY;
    let mut acc = vec![0.0f32; dv];
    for (c, &pk) in ctx.pos.iter().enumerate() {
        if pk < p0 || pk >= p1 || !p.visible(pk, q_pos) {
            continue;
        }
        let krow = &ctx.k[c * kw + kvh * dk..c * kw + (kvh + 1) * dk];
        let mut s = if f16_v {
            dot_f16_vec(krow, &qc)
        } else {
            dot(krow, &qc)
        } * scale;
        if cap != 0.0 {
            s = cap * s.tanh();
        }
        let vrow = &ctx.v[c * vw + kvh * dv..c * vw + (kvh + 1) * dv];
        let mut ms = 1.0f32;
        let mut vs = 1.0f32;
        if s > m {
            let m_old = m;
            m = s;
            ms = (m_old - m).exp();
            if f16_v {
                acc.iter_mut().for_each(|a| *a = round_f16(*a * ms));
            } else {
                acc.iter_mut().for_each(|a| *a *= ms);
            }
        } else {
            vs = (s - m).exp();
        }
        if f16_v {
            acc.iter_mut()
                .zip(vrow)
                .for_each(|(a, &x)| *a = round_f16(fma32(x, vs, *a)));
        } else {
            acc.iter_mut()
                .zip(vrow)
                .for_each(|(a, &x)| *a = fma32(x, vs, *a));
        }
        // `S = S*ms + vs`, contracted by GCC.
        s_sum = fma32(s_sum, ms, vs);
    }
    (m, s_sum, acc)
}

/// `ggml_compute_forward_flash_attn_ext_tiled` for up to [`Q_TILE`] query rows of one head.
fn tiled_head(ctx: &Ctx<'_>, h: usize, q_rows: &[&[f32]], q_pos: &[i64]) -> Vec<f32> {
    let p = ctx.p;
    let (dk, dv) = (p.head_dim_k, p.head_dim_v);
    let kvh = h / (p.n_head / p.n_head_kv);
    let (kw, vw) = (p.n_head_kv * dk, p.n_head_kv * dv);
    let (scale, cap) = p.score_scale();
    let rows = q_rows.len();
    let n_cells = ctx.pos.len();

    let mut m = vec![f32::NEG_INFINITY; rows];
    let mut s_sum = vec![0.0f32; rows];
    let mut acc = vec![0.0f32; rows * dv];
    let mut kq = [0.0f32; KV_TILE];
    for c0 in (0..n_cells).step_by(KV_TILE) {
        let nt = KV_TILE.min(n_cells - c0);
        // Skip the tile when every row has every cell masked.
        let any_visible = q_pos
            .iter()
            .any(|&qp| (c0..c0 + nt).any(|c| p.visible(ctx.pos[c], qp)));
        if !any_visible {
            continue;
        }
        for (r, (&qrow, &qp)) in q_rows.iter().zip(q_pos).enumerate() {
            for (tk, slot) in kq.iter_mut().enumerate() {
                let c = c0 + tk;
                *slot = if tk < nt && p.visible(ctx.pos[c], qp) {
                    let krow = &ctx.k[c * kw + kvh * dk..c * kw + (kvh + 1) * dk];
                    // simd_gemm: one fused multiply-add per dimension, in order.
                    let mut s = qrow
                        .iter()
                        .zip(krow)
                        .fold(0.0f32, |acc, (&q, &k)| fma32(q, k, acc))
                        * scale;
                    if cap != 0.0 {
                        s = s.tanh() * cap;
                    }
                    s
                } else {
                    f32::NEG_INFINITY
                };
            }
            let tile_max = kq.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
            if tile_max == f32::NEG_INFINITY {
                continue;
            }
            let m_new = m[r].max(tile_max);
            let a = &mut acc[r * dv..(r + 1) * dv];
            if m_new > m[r] {
                let ms = (m[r] - m_new).exp();
                a.iter_mut().for_each(|x| *x *= ms);
                s_sum[r] *= ms;
            }
            m[r] = m_new;
            // ggml_vec_soft_max_f32: exponentials in place, lanes summed 16 at a time in f64.
            let mut sum = 0.0f64;
            for group in kq.chunks_exact_mut(16) {
                let mut lanes = [0.0f32; 16];
                for (l, x) in lanes.iter_mut().zip(group.iter_mut()) {
                    *x = v_expf(*x - m_new);
                    *l = *x;
                }
                sum += f64::from(reduce_add_16(&lanes));
            }
            s_sum[r] = (f64::from(s_sum[r]) + sum) as f32;
            for (tk, &w) in kq.iter().enumerate().take(nt) {
                if w == 0.0 {
                    continue;
                }
                let c = c0 + tk;
                let vrow = &ctx.v[c * vw + kvh * dv..c * vw + (kvh + 1) * dv];
                a.iter_mut()
                    .zip(vrow)
                    .for_each(|(x, &vv)| *x = fma32(w, vv, *x));
            }
        }
    }
    for r in 0..rows {
        let inv = if s_sum[r] == 0.0 { 0.0 } else { 1.0 / s_sum[r] };
        acc[r * dv..(r + 1) * dv].iter_mut().for_each(|x| *x *= inv);
    }
    acc
}
