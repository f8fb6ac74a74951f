//! Shared building blocks of the forward pass, with the numerics of llama.cpp's CPU backend.
//!
//! Each function names the ggml operation it reproduces (`ggml/src/ggml-cpu/ops.cpp`, `vec.h`,
//! `vec.cpp`, `arch/x86/quants.c`, `repack.cpp`, `tiled/`, `llamafile/sgemm.cpp`). Where ggml's
//! result depends on the SIMD path, the path of the reference build (x86-64, AVX-512 VNNI, GCC;
//! see `shared/reference/README.md`) is followed down to the order of the f32 additions and the
//! fused multiply-adds GCC contracts, so the results are bit-identical to llama.cpp's for the
//! kernels listed in [`matmul_as`] and for attention; other weight types use plain f32 dots
//! (same values, summed in another order).
//!
//! [`Mm::matmul`] is the one entry point for weight x activation products. With
//! [`Numerics::Fast`] it runs the SIMD kernels of `hearth-kernels` (same math, f32 sums in
//! another order); with [`Numerics::LlamaCpp`] it runs the bit-exact reproductions here.

use std::sync::{Arc, OnceLock};

use hearth_gguf::{GgmlType, MappedGguf};
use hearth_kernels::matmul::{self as kmatmul, QMatrix, WeightBytes};
use hearth_kernels::pool::ThreadPool;
use hearth_kernels::quant::{
    self, bf16_to_f32, block_geometry, f16_to_f32, f32_to_bf16, f32_to_f16,
};

use crate::error::{ModelError, Result};

/// Bytes a model's tensors live in: a memory-mapped file or an owned buffer.
#[derive(Clone)]
pub(crate) enum Source {
    Mapped(Arc<MappedGguf>),
    Owned(Arc<[u8]>),
}

impl Source {
    pub(crate) fn bytes(&self) -> &[u8] {
        match self {
            Source::Mapped(m) => m.bytes(),
            Source::Owned(b) => b,
        }
    }
}

impl AsRef<[u8]> for Source {
    fn as_ref(&self) -> &[u8] {
        self.bytes()
    }
}

/// Which kernels the forward pass runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Numerics {
    /// hearth's kernels, chosen for the CPU at run time (`HEARTH_CPU` forces a level): the
    /// math of llama.cpp's (same quantized activations, same integer block products), f32 sums
    /// in another order, so results equal llama.cpp's up to f32 rounding. A token's result does
    /// not depend on the other tokens of its batch.
    #[default]
    Fast,
    /// llama.cpp's CPU backend reproduced bit for bit (the reference x86-64 AVX-512 build,
    /// including its batch-size-dependent kernel choices; see [`crate::BatchNumerics`]).
    /// Slower; for checking against llama.cpp's outputs.
    LlamaCpp,
}

impl Numerics {
    /// `"fast"` or `"llama.cpp"`.
    pub fn name(self) -> &'static str {
        match self {
            Numerics::Fast => "fast",
            Numerics::LlamaCpp => "llama.cpp",
        }
    }
}

/// How the products of one forward pass are computed: the threads, the numerics, and (for
/// [`Numerics::LlamaCpp`]) whether rows are computed as one-token batches.
#[derive(Clone, Copy)]
pub(crate) struct Mm<'a> {
    pub(crate) pool: &'a ThreadPool,
    pub(crate) numerics: Numerics,
    pub(crate) per_token: bool,
    /// Sees the input of every weight product (see [`MatmulObserver`]).
    pub(crate) observer: Option<&'a MatmulObserver>,
}

/// Called with `(weight name, input rows, number of rows)` before every weight product, e.g.
/// to accumulate an importance matrix (`llama-imatrix`'s `collect_imatrix`).
pub type MatmulObserver = dyn Fn(&str, &[f32], usize) + Send + Sync;

impl Mm<'_> {
    /// `out[t][r] = dot(weight row r, x[t])` for `n_tokens` rows of `w.n_in()` values
    /// (`ggml_mul_mat(w, x)`).
    pub(crate) fn matmul(
        &self,
        w: &Weight,
        x: &[f32],
        n_tokens: usize,
        out: &mut [f32],
    ) -> Result<()> {
        if let Some(observe) = self.observer {
            observe(&w.name, x, n_tokens);
        }
        if self.numerics == Numerics::Fast {
            if let Some(q) = &w.fast {
                return kmatmul::matmul(self.pool, q, x, n_tokens, out).map_err(|source| {
                    ModelError::Quant {
                        name: w.name.clone(),
                        source,
                    }
                });
            }
        }
        matmul_exact(self.pool, w, x, n_tokens, out, self.per_token)
    }

    /// `outs[i] = ws[i] x` for weights sharing the input `x` (Q/K/V, gate/up): with the fast
    /// kernels in one run (the input quantized once), otherwise one product after another.
    pub(crate) fn matmul_many(
        &self,
        ws: &[&Weight],
        x: &[f32],
        n_tokens: usize,
        outs: &mut [&mut [f32]],
    ) -> Result<()> {
        let fast: Option<Vec<&QMatrix<'static>>> = match self.numerics {
            Numerics::Fast => ws.iter().map(|w| w.fast.as_ref()).collect(),
            Numerics::LlamaCpp => None,
        };
        match fast {
            Some(qs) => {
                if let Some(observe) = self.observer {
                    for w in ws {
                        observe(&w.name, x, n_tokens);
                    }
                }
                kmatmul::matmul_many(self.pool, &qs, x, n_tokens, outs).map_err(|source| {
                    ModelError::Quant {
                        name: ws
                            .iter()
                            .map(|w| w.name.as_str())
                            .collect::<Vec<_>>()
                            .join("+"),
                        source,
                    }
                })
            }
            None => {
                for (w, out) in ws.iter().zip(outs.iter_mut()) {
                    self.matmul(w, x, n_tokens, out)?;
                }
                Ok(())
            }
        }
    }

    /// `outs[i] = ws[i] xs[i]`, each product with its own input (a token's expert down
    /// products): with the fast kernels in one run, otherwise one product after another.
    pub(crate) fn matmul_each(
        &self,
        ws: &[&Weight],
        xs: &[&[f32]],
        n_tokens: usize,
        outs: &mut [&mut [f32]],
    ) -> Result<()> {
        let fast: Option<Vec<&QMatrix<'static>>> = match self.numerics {
            Numerics::Fast => ws.iter().map(|w| w.fast.as_ref()).collect(),
            Numerics::LlamaCpp => None,
        };
        match fast {
            Some(qs) => {
                if let Some(observe) = self.observer {
                    for (w, x) in ws.iter().zip(xs) {
                        observe(&w.name, x, n_tokens);
                    }
                }
                kmatmul::matmul_each(self.pool, &qs, xs, n_tokens, outs).map_err(|source| {
                    ModelError::Quant {
                        name: ws
                            .iter()
                            .map(|w| w.name.as_str())
                            .collect::<Vec<_>>()
                            .join("+"),
                        source,
                    }
                })
            }
            None => {
                for ((w, x), out) in ws.iter().zip(xs).zip(outs.iter_mut()) {
                    self.matmul(w, x, n_tokens, out)?;
                }
                Ok(())
            }
        }
    }

    /// [`rms_norm`] with the rows shared between the pool's threads (each row computed as
    /// alone).
    pub(crate) fn rms_norm(
        &self,
        x: &[f32],
        w: &[f32],
        b: Option<&[f32]>,
        eps: f32,
        out: &mut [f32],
    ) {
        let n = w.len().max(1);
        let per = self.rows_per_part(x.len() / n);
        self.pool.par_chunks_mut(out, per * n, |i, y| {
            rms_norm(&x[i * per * n..][..y.len()], w, b, eps, y)
        });
    }

    /// [`rms_norm_inplace`] with the rows shared between the pool's threads.
    pub(crate) fn rms_norm_inplace(&self, x: &mut [f32], w: &[f32], eps: f32) {
        let n = w.len().max(1);
        let per = self.rows_per_part(x.len() / n);
        self.pool
            .par_chunks_mut(x, per * n, |_, x| rms_norm_inplace(x, w, eps));
    }

    /// Rows per part of a row-wise op over `rows` rows: a multiple of four, about four parts
    /// per thread, all of them in one part below 64 rows (not worth waking the pool).
    fn rows_per_part(&self, rows: usize) -> usize {
        if rows < 64 {
            return rows.max(1);
        }
        rows.div_ceil(4 * self.pool.n_threads()).next_multiple_of(4)
    }

    /// Whether rows are computed as llama.cpp computes one-token batches.
    pub(crate) fn exact_per_token(&self) -> bool {
        self.numerics == Numerics::LlamaCpp && self.per_token
    }
}

/// A weight matrix of `n_out` rows of `n_in` values (ggml `ne = [n_in, n_out]`), kept in its file
/// type and dequantized row by row when multiplied.
#[derive(Clone)]
pub struct Weight {
    name: String,
    ty: GgmlType,
    n_in: usize,
    n_out: usize,
    row_bytes: usize,
    source: Source,
    /// Absolute offset of the tensor data in `source`.
    offset: usize,
    /// The matrix for `hearth-kernels` (`None` if its kernels cannot take it).
    fast: Option<QMatrix<'static>>,
}

impl std::fmt::Debug for Weight {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Weight")
            .field("name", &self.name)
            .field("ty", &self.ty)
            .field("n_in", &self.n_in)
            .field("n_out", &self.n_out)
            .finish()
    }
}

impl Weight {
    /// `data_offset` is absolute in `source`; the caller has checked that
    /// `n_out * row_bytes` bytes from there lie within it.
    pub(crate) fn new(
        name: String,
        ty: GgmlType,
        n_in: usize,
        n_out: usize,
        source: Source,
        offset: usize,
    ) -> Weight {
        let (bv, bb) = block_geometry(ty);
        let row_bytes = n_in / bv * bb;
        let fast = n_out
            .checked_mul(row_bytes)
            .and_then(|len| Some(offset..offset.checked_add(len)?))
            .and_then(|range| {
                let bytes = WeightBytes::Shared {
                    owner: Arc::new(source.clone()),
                    range,
                };
                QMatrix::new(ty, bytes, n_in, n_out).ok()
            });
        Weight {
            name,
            ty,
            n_in,
            n_out,
            row_bytes,
            source,
            offset,
            fast,
        }
    }

    /// The tensor name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The ggml type the weight is stored in.
    pub fn ty(&self) -> GgmlType {
        self.ty
    }

    /// Values per row (the input width of the product).
    pub fn n_in(&self) -> usize {
        self.n_in
    }

    /// Rows (the output width of the product).
    pub fn n_out(&self) -> usize {
        self.n_out
    }

    fn row_data(&self, row: usize) -> &[u8] {
        let start = self.offset + row * self.row_bytes;
        &self.source.bytes()[start..start + self.row_bytes]
    }

    /// Bytes of the matrix.
    pub fn n_bytes(&self) -> usize {
        self.n_out * self.row_bytes
    }

    /// The kernel level the fast path runs for this weight (`"avx2"`, `"scalar"`, ...).
    pub fn kernel_name(&self) -> &'static str {
        self.fast
            .as_ref()
            .map_or("llama.cpp-exact", |q| q.kernel_name())
    }

    /// Row `row` dequantized into `out` (`n_in` values): ggml's `get_rows`.
    pub fn dequantize_row(&self, row: usize, out: &mut [f32]) -> Result<()> {
        quant::dequantize(self.ty, self.row_data(row), &mut out[..self.n_in]).map_err(|source| {
            ModelError::Quant {
                name: self.name.clone(),
                source,
            }
        })
    }
}

/// The type ggml converts the activation to before a dot product with a weight of type `ty`
/// (`type_traits_cpu[ty].vec_dot_type` in `ggml-cpu.c`).
pub fn vec_dot_type(ty: GgmlType) -> Option<GgmlType> {
    use GgmlType as T;
    Some(match ty {
        T::F32 => T::F32,
        T::F16 => T::F16,
        T::BF16 => T::BF16,
        T::Q4_0 | T::Q5_0 | T::Q8_0 | T::IQ4_NL | T::MXFP4 | T::NVFP4 | T::Q1_0 => T::Q8_0,
        T::Q4_1 | T::Q5_1 | T::Q8_1 => T::Q8_1,
        T::Q2_K
        | T::Q3_K
        | T::Q4_K
        | T::Q5_K
        | T::Q6_K
        | T::IQ2_XXS
        | T::IQ2_XS
        | T::IQ2_S
        | T::IQ3_XXS
        | T::IQ3_S
        | T::IQ1_S
        | T::IQ1_M
        | T::IQ4_XS
        | T::TQ1_0
        | T::TQ2_0 => T::Q8_K,
        T::Q8_K | T::I8 | T::I16 | T::I32 | T::I64 | T::F64 => return None,
    })
}

/// Rounds an activation row in place to the values ggml's dot product sees after converting it
/// to `ty` (`from_float` of the vec_dot type): the product then is an f32 dot of exact values.
pub(crate) fn round_activation(ty: GgmlType, row: &mut [f32], scratch: &mut Vec<u8>) {
    use GgmlType as T;
    match ty {
        T::F32 => {}
        T::F16 => row.iter_mut().for_each(|x| *x = f16_to_f32(f32_to_f16(*x))),
        T::BF16 => row
            .iter_mut()
            .for_each(|x| *x = bf16_to_f32(f32_to_bf16(*x))),
        T::Q8_0 | T::Q8_1 => row.chunks_exact_mut(32).for_each(round_q8_0_block),
        _ => {
            let (bv, bb) = block_geometry(ty);
            scratch.clear();
            scratch.resize(row.len() / bv * bb, 0);
            // Lengths are whole blocks (checked at load), and the type was checked to be
            // quantizable, so neither call can fail; on the impossible error keep f32 values.
            if quant::quantize(ty, row, scratch).is_ok() {
                let _ = quant::dequantize(ty, scratch, row);
            }
        }
    }
}

/// One block of `quantize_row_q8_0` / `quantize_row_q8_1` as the x86 SIMD path computes it:
/// `d = amax / 127` stored as f16, `q = round_half_even(x * (127 / amax))`; the value the dot
/// product sees is `q * d`.
fn round_q8_0_block(x: &mut [f32]) {
    let amax = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let d = f16_to_f32(f32_to_f16(amax / 127.0));
    let id = if amax != 0.0 { 127.0 / amax } else { 0.0 };
    for v in x.iter_mut() {
        let q = (*v * id).round_ties_even();
        *v = q * d;
    }
}

/// f32 dot product (eight partial sums, vectorizable).
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0.0f32; 16];
    let mut ca = a.chunks_exact(16);
    let mut cb = b.chunks_exact(16);
    for (x, y) in (&mut ca).zip(&mut cb) {
        for i in 0..16 {
            acc[i] += x[i] * y[i];
        }
    }
    let mut tail = 0.0f32;
    for (x, y) in ca.remainder().iter().zip(cb.remainder()) {
        tail += x * y;
    }
    for i in 0..8 {
        acc[i] += acc[i + 8];
    }
    for i in 0..4 {
        acc[i] += acc[i + 4];
    }
    (acc[0] + acc[2]) + (acc[1] + acc[3]) + tail
}

/// Work (multiply-adds) below which a product runs on the calling thread.
const PARALLEL_MIN_WORK: usize = 1 << 20;

/// How a weight type is multiplied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kernel {
    /// Q4_0 / Q5_0 / Q8_0 x Q8_0 in integers, with the lane structure of ggml's AVX2 kernels
    /// (`ggml_vec_dot_q8_0_q8_0` and friends, `tinyBLAS_Q0_AVX`): per block of 32, eight lanes of
    /// four products, each lane accumulated as `fma(d_w * d_x, lane, acc)`, then summed as
    /// `hsum_float_8`.
    Q8Blocks,
    /// F16 x F16 with f32 accumulation in ggml's AVX-512 order: `tinyBLAS` (16 lanes) for
    /// batches of two or more rows, `ggml_vec_dot_f16` (4 x 16 lanes) for one row.
    F16,
    /// Q4_K x Q8_K as ggml's repacked `q4_K_8x8` kernels: integer sums per super-block
    /// (`gemv`, and the rows of a batch beyond a multiple of 4) or per 64 values (AVX-512
    /// `gemm`, the first `4 * floor(n/4)` rows of a batch), each scaled by `d_w * d_x` into
    /// an f32 accumulator, the mins likewise into a second one, then subtracted.
    Q4K,
    /// Q6_K x Q8_K as `ggml_vec_dot_q6_K_q8_K` (AVX2): eight integer lanes per super-block,
    /// each `fma(d, lane, acc)`, then `hsum_float_8`.
    Q6K,
    /// Any other type: weight rows dequantized to f32, dot products in f32.
    Generic,
}

fn kernel(ty: GgmlType) -> Kernel {
    match ty {
        GgmlType::Q4_0 | GgmlType::Q5_0 | GgmlType::Q8_0 => Kernel::Q8Blocks,
        GgmlType::F16 => Kernel::F16,
        GgmlType::Q4_K => Kernel::Q4K,
        GgmlType::Q6_K => Kernel::Q6K,
        _ => Kernel::Generic,
    }
}

/// Activation rows prepared for one kernel.
enum Prepared {
    /// Q8_0 values (widened to i16) and per-block scales.
    Q8 { q: Vec<i16>, d: Vec<f32> },
    /// Q8_K values (widened to i16), per-super-block scales and sums of 16.
    Q8K {
        q: Vec<i16>,
        d: Vec<f32>,
        bsums: Vec<i16>,
    },
    /// f32 values (already rounded to the vec_dot type).
    F32(Vec<f32>),
}

/// `out[t][r] = dot(weight row r, x[t])` for `n_tokens` activation rows of `w.n_in()` values,
/// as llama.cpp computes it: the activation is first rounded to the weight's vec_dot type, as
/// ggml does, and ggml's kernels are chosen as for a batch of `n_tokens` rows or, with
/// `per_token`, as for `n_tokens` separate one-row batches (decode steps); ggml's kernels for the
/// two cases sum in different orders, so this decides which of llama.cpp's results is
/// reproduced. Every weight row is unpacked once and reused for all tokens; rows are split
/// between the threads of `pool` (each output computed whole by one thread, so the bits do
/// not depend on the thread count).
pub(crate) fn matmul_exact(
    pool: &ThreadPool,
    w: &Weight,
    x: &[f32],
    n_tokens: usize,
    out: &mut [f32],
    per_token: bool,
) -> Result<()> {
    // The row count ggml's kernel selection sees.
    let n_sel = if per_token { 1 } else { n_tokens };
    let (n_in, n_out) = (w.n_in, w.n_out);
    debug_assert_eq!(x.len(), n_tokens * n_in);
    debug_assert_eq!(out.len(), n_tokens * n_out);
    let vdt = vec_dot_type(w.ty).ok_or_else(|| ModelError::Quant {
        name: w.name.clone(),
        source: quant::QuantError::Unsupported {
            ty: w.ty,
            op: quant::Op::Quantize,
        },
    })?;
    let kern = kernel(w.ty);
    let prepared = match kern {
        Kernel::Q8Blocks => {
            let (q, d) = quantize_q8_0_act(x);
            Prepared::Q8 { q, d }
        }
        Kernel::Q4K | Kernel::Q6K => {
            let (q, d, bsums) = quantize_q8_k_act(x);
            Prepared::Q8K { q, d, bsums }
        }
        _ => {
            let mut xq = x.to_vec();
            let mut scratch = Vec::new();
            for row in xq.chunks_exact_mut(n_in) {
                round_activation(vdt, row, &mut scratch);
            }
            Prepared::F32(xq)
        }
    };

    let n_parts = if n_out * n_in * n_tokens >= PARALLEL_MIN_WORK {
        (4 * pool.n_threads()).min(n_out.div_ceil(16))
    } else {
        1
    };
    let rows_per = n_out.div_ceil(n_parts);
    let run = |r0: usize, r1: usize| -> Result<Vec<f32>> {
        // Local output [n_tokens][r1 - r0].
        let nr = r1 - r0;
        let mut local = vec![0.0f32; n_tokens * nr];
        match &prepared {
            Prepared::Q8 { q, d } => {
                let nb = n_in / 32;
                let mut wq = vec![0i16; n_in];
                let mut wd = vec![0.0f32; nb];
                let mut pairs = Vec::new();
                for r in r0..r1 {
                    unpack_q8_blocks(w.ty, w.row_data(r), &mut wq, &mut wd);
                    for t in 0..n_tokens {
                        local[t * nr + (r - r0)] = dot_q8_blocks(
                            &wq,
                            &wd,
                            &q[t * n_in..(t + 1) * n_in],
                            &d[t * nb..(t + 1) * nb],
                            &mut pairs,
                        );
                    }
                }
            }
            Prepared::Q8K { q, d, bsums } => {
                let nb = n_in / 256;
                // Rows of a batch that ggml's repacked Q4_K kernel handles with `gemm`.
                let gemm_rows = if n_sel >= 4 {
                    n_tokens - n_tokens % 4
                } else {
                    0
                };
                let mut wrow = KRow::default();
                for r in r0..r1 {
                    wrow.unpack(w.ty, w.row_data(r));
                    for t in 0..n_tokens {
                        let (xq, xd, xs) = (
                            &q[t * n_in..(t + 1) * n_in],
                            &d[t * nb..(t + 1) * nb],
                            &bsums[t * nb * 16..(t + 1) * nb * 16],
                        );
                        local[t * nr + (r - r0)] = if kern == Kernel::Q4K {
                            wrow.dot_q4_k(xq, xd, xs, t < gemm_rows)
                        } else if n_sel >= 8 {
                            wrow.dot_q6_k_tiled(xq, xd, xs)
                        } else {
                            wrow.dot_q6_k(xq, xd, xs)
                        };
                    }
                }
            }
            Prepared::F32(xq) => {
                let mut wrow = vec![0.0f32; n_in];
                for r in r0..r1 {
                    w.dequantize_row(r, &mut wrow)?;
                    for (t, xt) in xq.chunks_exact(n_in).enumerate() {
                        local[t * nr + (r - r0)] = match kern {
                            Kernel::F16 if n_sel >= 2 && n_in % 16 == 0 => {
                                dot_f16_tinyblas(&wrow, xt)
                            }
                            Kernel::F16 => dot_f16_vec(&wrow, xt),
                            _ => dot(&wrow, xt),
                        };
                    }
                }
            }
        }
        Ok(local)
    };
    let parts = std::sync::Mutex::new(Vec::with_capacity(n_parts));
    pool.run_parts(n_parts, |i, _| {
        let r0 = (i * rows_per).min(n_out);
        let r1 = ((i + 1) * rows_per).min(n_out);
        let local = run(r0, r1);
        parts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((r0, r1, local));
    });
    let parts = parts.into_inner().unwrap_or_else(|e| e.into_inner());
    for (r0, r1, local) in parts {
        let local = local?;
        let nr = r1 - r0;
        if nr == 0 {
            continue;
        }
        for t in 0..n_tokens {
            out[t * n_out + r0..t * n_out + r1].copy_from_slice(&local[t * nr..(t + 1) * nr]);
        }
    }
    Ok(())
}

/// `quantize_row_q8_0` (x86 SIMD path) of every 32 values: the int8 values and the f16 scale
/// widened to f32.
fn quantize_q8_0_act(x: &[f32]) -> (Vec<i16>, Vec<f32>) {
    let mut q = vec![0i16; x.len()];
    let mut d = vec![0.0f32; x.len() / 32];
    for ((xb, qb), db) in x
        .chunks_exact(32)
        .zip(q.chunks_exact_mut(32))
        .zip(d.iter_mut())
    {
        let amax = xb.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        *db = f16_to_f32(f32_to_f16(amax / 127.0));
        let id = if amax != 0.0 { 127.0 / amax } else { 0.0 };
        for (qv, &v) in qb.iter_mut().zip(xb) {
            *qv = (v * id).round_ties_even() as i16;
        }
    }
    (q, d)
}

/// Unpacks one row of Q4_0 / Q5_0 / Q8_0 blocks into int8 values and f32 block scales
/// (the values `dequantize_row_*` multiplies by `d`).
fn unpack_q8_blocks(ty: GgmlType, row: &[u8], q: &mut [i16], d: &mut [f32]) {
    let (_, bb) = block_geometry(ty);
    for ((b, qb), db) in row
        .chunks_exact(bb)
        .zip(q.chunks_exact_mut(32))
        .zip(d.iter_mut())
    {
        *db = f16_to_f32(u16::from_le_bytes([b[0], b[1]]));
        match ty {
            GgmlType::Q8_0 => {
                for (o, &v) in qb.iter_mut().zip(&b[2..34]) {
                    *o = i16::from(v as i8);
                }
            }
            GgmlType::Q4_0 => {
                let qs = &b[2..18];
                for j in 0..16 {
                    qb[j] = i16::from(qs[j] & 0x0f) - 8;
                    qb[j + 16] = i16::from(qs[j] >> 4) - 8;
                }
            }
            GgmlType::Q5_0 => {
                let qh = u32::from_le_bytes([b[2], b[3], b[4], b[5]]);
                let qs = &b[6..22];
                for j in 0..16 {
                    let h0 = (((qh >> j) << 4) & 0x10) as u8;
                    let h1 = ((qh >> (j + 12)) & 0x10) as u8;
                    qb[j] = i16::from((qs[j] & 0x0f) | h0) - 16;
                    qb[j + 16] = i16::from((qs[j] >> 4) | h1) - 16;
                }
            }
            _ => unreachable_type(),
        }
    }
}

#[cold]
fn unreachable_type() {
    debug_assert!(
        false,
        "unpack_q8_blocks called for a type it does not handle"
    );
}

/// `out[m] = a[2m]*b[2m] + a[2m+1]*b[2m+1]` in i32 (vectorizes to `pmaddwd`).
fn pair_sums(a: &[i16], b: &[i16], out: &mut Vec<i32>) {
    // Sized once per buffer; every element is overwritten below.
    out.resize(a.len().min(b.len()) / 2, 0);
    for ((p, a2), b2) in out.iter_mut().zip(a.chunks_exact(2)).zip(b.chunks_exact(2)) {
        *p = i32::from(a2[0]) * i32::from(b2[0]) + i32::from(a2[1]) * i32::from(b2[1]);
    }
}

/// The Q8Blocks dot product (see [`Kernel::Q8Blocks`]). Values are int8 widened to i16; the
/// products are first summed in pairs over the whole row (a loop that vectorizes to `pmaddwd`),
/// then in lanes of four per block, then scaled and accumulated per lane.
fn dot_q8_blocks(wq: &[i16], wd: &[f32], xq: &[i16], xd: &[f32], pairs: &mut Vec<i32>) -> f32 {
    pair_sums(wq, xq, pairs);
    let mut acc = [0.0f64; 8];
    for ((pb, &dw), &dx) in pairs.chunks_exact(16).zip(wd).zip(xd) {
        let d = f64::from(dw * dx);
        for (l, a) in acc.iter_mut().enumerate() {
            // |lane| <= 4 * 128 * 128, exact in f32 and f64.
            let lane = f64::from(pb[2 * l] + pb[2 * l + 1]);
            // fma(d, lane, acc) in f32 (see fma32), kept in f64 between the two roundings.
            *a = f64::from((d * lane + *a) as f32);
        }
    }
    hsum_float_8(&acc.map(|a| a as f32))
}

/// `quantize_row_q8_K` (ggml's reference quantizer, through hearth-kernels) of every 256
/// values: int8 values, the f32 scale and the sums of each 16 values.
fn quantize_q8_k_act(x: &[f32]) -> (Vec<i16>, Vec<f32>, Vec<i16>) {
    const BLOCK: usize = 292;
    let nb = x.len() / 256;
    let mut bytes = vec![0u8; nb * BLOCK];
    // Whole blocks by construction (n_in is a multiple of 256 for K-quant weights).
    let _ = quant::quantize(GgmlType::Q8_K, x, &mut bytes);
    let mut q = Vec::with_capacity(nb * 256);
    let mut d = Vec::with_capacity(nb);
    let mut bsums = Vec::with_capacity(nb * 16);
    for b in bytes.chunks_exact(BLOCK) {
        d.push(f32::from_le_bytes([b[0], b[1], b[2], b[3]]));
        q.extend(b[4..260].iter().map(|&v| i16::from(v as i8)));
        bsums.extend(
            b[260..292]
                .chunks_exact(2)
                .map(|c| i16::from_le_bytes([c[0], c[1]])),
        );
    }
    (q, d, bsums)
}

/// One weight row of Q4_K or Q6_K super-blocks, unpacked to integers.
#[derive(Default)]
struct KRow {
    /// Per super-block: d (and dmin for Q4_K) widened to f32.
    d: Vec<f32>,
    dmin: Vec<f32>,
    /// Q4_K: 8 scales and 8 mins per super-block; Q6_K: 16 signed scales.
    scales: Vec<i32>,
    mins: Vec<i32>,
    /// Unsigned quants (Q4_K 0..15, Q6_K 0..63), in value order, widened to i16.
    q: Vec<i16>,
    /// Scratch for pair sums.
    pairs: Vec<i32>,
}

impl KRow {
    fn unpack(&mut self, ty: GgmlType, row: &[u8]) {
        self.d.clear();
        self.dmin.clear();
        self.scales.clear();
        self.mins.clear();
        self.q.clear();
        match ty {
            GgmlType::Q4_K => {
                for b in row.chunks_exact(144) {
                    self.d.push(f16_to_f32(u16::from_le_bytes([b[0], b[1]])));
                    self.dmin.push(f16_to_f32(u16::from_le_bytes([b[2], b[3]])));
                    let sc = &b[4..16];
                    for j in 0..8 {
                        // get_scale_min_k4
                        let (s, m) = if j < 4 {
                            (sc[j] & 63, sc[j + 4] & 63)
                        } else {
                            (
                                (sc[j + 4] & 0x0f) | ((sc[j - 4] >> 6) << 4),
                                (sc[j + 4] >> 4) | ((sc[j] >> 6) << 4),
                            )
                        };
                        self.scales.push(i32::from(s));
                        self.mins.push(i32::from(m));
                    }
                    let qs = &b[16..144];
                    for j in 0..4 {
                        let chunk = &qs[32 * j..32 * j + 32];
                        self.q.extend(chunk.iter().map(|&v| i16::from(v & 0x0f)));
                        self.q.extend(chunk.iter().map(|&v| i16::from(v >> 4)));
                    }
                }
            }
            GgmlType::Q6_K => {
                for b in row.chunks_exact(210) {
                    let (ql, qh) = (&b[0..128], &b[128..192]);
                    self.scales
                        .extend(b[192..208].iter().map(|&v| i32::from(v as i8)));
                    self.d
                        .push(f16_to_f32(u16::from_le_bytes([b[208], b[209]])));
                    let start = self.q.len();
                    self.q.resize(start + 256, 0);
                    let out = &mut self.q[start..];
                    for j in 0..2 {
                        let (ql, qh, o) = (&ql[64 * j..], &qh[32 * j..], &mut out[128 * j..]);
                        for l in 0..32 {
                            o[l] = i16::from((ql[l] & 0x0f) | ((qh[l] & 3) << 4));
                            o[l + 32] = i16::from((ql[l + 32] & 0x0f) | (((qh[l] >> 2) & 3) << 4));
                            o[l + 64] = i16::from((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4));
                            o[l + 96] = i16::from((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4));
                        }
                    }
                }
            }
            _ => unreachable_type(),
        }
    }

    /// Q4_K x Q8_K (see [`Kernel::Q4K`]); `per_64` selects the AVX-512 `gemm` grouping.
    fn dot_q4_k(&mut self, xq: &[i16], xd: &[f32], bsums: &[i16], per_64: bool) -> f32 {
        pair_sums(&self.q, xq, &mut self.pairs);
        let mut acc = 0.0f32;
        let mut acc_min = 0.0f32;
        for (b, &dy) in xd.iter().enumerate() {
            let (scale, dmin_scale) = (self.d[b] * dy, self.dmin[b] * dy);
            let mut isum = 0i32;
            let mut imin = 0i32;
            for k in 0..8 {
                let base = b * 128 + 16 * k;
                let s: i32 = self.pairs[base..base + 16].iter().sum();
                isum += self.scales[b * 8 + k] * s;
                let bs = i32::from(bsums[b * 16 + 2 * k]) + i32::from(bsums[b * 16 + 2 * k + 1]);
                imin += self.mins[b * 8 + k] * bs;
                if per_64 && k % 2 == 1 {
                    acc = fma32(isum as f32, scale, acc);
                    acc_min = fma32(imin as f32, dmin_scale, acc_min);
                    isum = 0;
                    imin = 0;
                }
            }
            if !per_64 {
                acc = fma32(isum as f32, scale, acc);
                acc_min = fma32(imin as f32, dmin_scale, acc_min);
            }
        }
        acc - acc_min
    }

    /// Q6_K x Q8_K as ggml's tiled K-quant matmul (`ggml-cpu/tiled`, AVX-512 VNNI), which takes
    /// over from `vec_dot` for batches of 8 rows or more: per super-block the whole integer sum
    /// `s1 = sum(scale * (raw - 32 * bsum))`, then `acc += (s1 * d_w) * d_x`.
    fn dot_q6_k_tiled(&mut self, xq: &[i16], xd: &[f32], bsums: &[i16]) -> f32 {
        pair_sums(&self.q, xq, &mut self.pairs);
        let mut acc = 0.0f32;
        for (b, &dy) in xd.iter().enumerate() {
            let mut s1 = 0i32;
            for s in 0..16 {
                let base = b * 128 + 8 * s;
                let raw: i32 = self.pairs[base..base + 8].iter().sum();
                s1 += self.scales[b * 16 + s] * (raw - 32 * i32::from(bsums[b * 16 + s]));
            }
            let result = s1 as f32 * self.d[b];
            // `buf + result * d1`, contracted by GCC into a fused multiply-add.
            acc = fma32(result, dy, acc);
        }
        acc
    }

    /// Q6_K x Q8_K (see [`Kernel::Q6K`]).
    fn dot_q6_k(&mut self, xq: &[i16], xd: &[f32], bsums: &[i16]) -> f32 {
        pair_sums(&self.q, xq, &mut self.pairs);
        let mut acc = [0.0f32; 8];
        for (b, &dy) in xd.iter().enumerate() {
            let d = dy * self.d[b];
            let sc = &self.scales[b * 16..b * 16 + 16];
            let pr = &self.pairs[b * 128..b * 128 + 128];
            let bs = &bsums[b * 16..b * 16 + 16];
            for (l, a) in acc.iter_mut().enumerate() {
                // Lane l: values 4l..4l+3 of each of the eight 32-value groups, with the
                // unsigned quants; the -32 offset is applied per lane through the block sums
                // of sub-blocks 2l and 2l+1, as the AVX2 kernel does.
                let mut lane = 0i32;
                for g in 0..8 {
                    let p = pr[16 * g + 2 * l] + pr[16 * g + 2 * l + 1];
                    lane += sc[(32 * g + 4 * l) / 16] * p;
                }
                lane -= 32
                    * (i32::from(bs[2 * l]) * sc[2 * l] + i32::from(bs[2 * l + 1]) * sc[2 * l + 1]);
                *a = fma32(d, lane as f32, *a);
            }
        }
        hsum_float_8(&acc)
    }
}

/// `hsum_float_8`: `(a[i] + a[i+4])`, then pairs, then the last two.
fn hsum_float_8(a: &[f32; 8]) -> f32 {
    let r = [a[0] + a[4], a[1] + a[5], a[2] + a[6], a[3] + a[7]];
    let r2 = [r[0] + r[2], r[1] + r[3]];
    r2[0] + r2[1]
}

/// `tinyBLAS<16, __m512>` for one output: 16 lanes accumulated over the row in steps of 16
/// (products of f16 values are exact in f32, so the FMA is an addition), then
/// `_mm512_reduce_add_ps`.
pub(crate) fn dot_f16_tinyblas(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; 16];
    for (x, y) in a.chunks_exact(16).zip(b.chunks_exact(16)) {
        for i in 0..16 {
            acc[i] += x[i] * y[i];
        }
    }
    reduce_add_16(&acc)
}

/// `ggml_vec_dot_f16` (AVX-512, no FP16 arithmetic): four accumulators of 16 lanes over steps
/// of 64, reduced `s0+s2, s1+s3, s0+s1`, lanes summed as `_mm512_reduce_add_ps`, leftovers
/// added in f64.
pub(crate) fn dot_f16_vec(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let np = n / 64 * 64;
    let mut acc = [[0.0f32; 16]; 4];
    for i in (0..np).step_by(64) {
        for (j, accj) in acc.iter_mut().enumerate() {
            let o = i + 16 * j;
            for l in 0..16 {
                accj[l] += a[o + l] * b[o + l];
            }
        }
    }
    let [mut s0, mut s1, s2, s3] = acc;
    s0.iter_mut().zip(&s2).for_each(|(a, b)| *a += b);
    s1.iter_mut().zip(&s3).for_each(|(a, b)| *a += b);
    s0.iter_mut().zip(&s1).for_each(|(a, b)| *a += b);
    let mut sum = f64::from(reduce_add_16(&s0));
    for i in np..n {
        sum += f64::from(a[i] * b[i]);
    }
    sum as f32
}

/// `ggml_rms_norm` followed by `ggml_mul` with `w` (and `ggml_add` with `b`), per row of `w.len()`
/// values: the sum of squares is accumulated in f64 (`ggml_float`), in order, as ggml does.
pub fn rms_norm(x: &[f32], w: &[f32], b: Option<&[f32]>, eps: f32, out: &mut [f32]) {
    let n = w.len();
    if n == 0 {
        return;
    }
    let mut xs = x.chunks_exact(n * 4);
    let mut ys = out.chunks_exact_mut(n * 4);
    for (x4, y4) in (&mut xs).zip(&mut ys) {
        let sums = sums_of_squares_4(x4, n);
        for ((xr, yr), sum) in x4.chunks_exact(n).zip(y4.chunks_exact_mut(n)).zip(sums) {
            rms_scale_row(xr, w, b, sum, eps, yr);
        }
    }
    for (xr, yr) in xs
        .remainder()
        .chunks_exact(n)
        .zip(ys.into_remainder().chunks_exact_mut(n))
    {
        let sum = xr.iter().map(|&v| f64::from(v * v)).sum();
        rms_scale_row(xr, w, b, sum, eps, yr);
    }
}

/// The in-order f64 sums of squares of four rows of `n` values: four independent chains side
/// by side (each row's additions in the order of one row alone).
fn sums_of_squares_4(x4: &[f32], n: usize) -> [f64; 4] {
    let (r0, rest) = x4.split_at(n);
    let (r1, rest) = rest.split_at(n);
    let (r2, r3) = rest.split_at(n);
    let mut s = [0.0f64; 4];
    for i in 0..n {
        s[0] += f64::from(r0[i] * r0[i]);
        s[1] += f64::from(r1[i] * r1[i]);
        s[2] += f64::from(r2[i] * r2[i]);
        s[3] += f64::from(r3[i] * r3[i]);
    }
    s
}

/// `y = x * (1 / sqrt(mean + eps)) * w (+ b)` for a row whose sum of squares is `sum`.
fn rms_scale_row(x: &[f32], w: &[f32], b: Option<&[f32]>, sum: f64, eps: f32, y: &mut [f32]) {
    let mean = (sum / x.len() as f64) as f32;
    let scale = 1.0 / (mean + eps).sqrt();
    for ((y, &x), &w) in y.iter_mut().zip(x).zip(w) {
        *y = x * scale * w;
    }
    if let Some(b) = b {
        y.iter_mut().zip(b).for_each(|(y, b)| *y += b);
    }
}

/// In-place RMS norm of every `w.len()`-sized chunk (per-head Q/K norm).
pub fn rms_norm_inplace(x: &mut [f32], w: &[f32], eps: f32) {
    let n = w.len();
    if n == 0 {
        return;
    }
    let mut tmp = vec![0.0f32; 4 * n];
    for x4 in x.chunks_mut(4 * n) {
        let t = &mut tmp[..x4.len()];
        rms_norm(x4, w, None, eps, t);
        x4.copy_from_slice(t);
    }
}

/// `x += y`, element-wise (`ggml_add`).
pub fn add_inplace(x: &mut [f32], y: &[f32]) {
    x.iter_mut().zip(y).for_each(|(a, b)| *a += b);
}

/// Adds `bias` to every row (`ggml_add` with a broadcast bias).
pub fn add_bias(x: &mut [f32], bias: &[f32]) {
    for row in x.chunks_exact_mut(bias.len()) {
        add_inplace(row, bias);
    }
}

/// `x *= s` (`ggml_scale`).
pub fn scale_inplace(x: &mut [f32], s: f32) {
    x.iter_mut().for_each(|v| *v *= s);
}

/// `c * tanh(x / c)` as three ggml ops (`scale`, `tanh`, `scale`).
pub fn softcap_inplace(x: &mut [f32], cap: f32) {
    let inv = 1.0 / cap;
    x.iter_mut().for_each(|v| *v = (*v * inv).tanh() * cap);
}

// ---------------------------------------------------------------------------------------------
// Activations

const GELU_COEF_A: f32 = 0.044715;
const SQRT_2_OVER_PI: f32 = 0.797_884_6;

/// `ggml_gelu_f32`: the tanh approximation, in ggml's operation order (with the contraction
/// GCC makes of `1.0f + GELU_COEF_A*x*x`).
fn gelu_f32(x: f32) -> f32 {
    0.5 * x * (1.0 + (SQRT_2_OVER_PI * x * fma32(GELU_COEF_A * x, x, 1.0)).tanh())
}

/// `ggml_table_gelu_f16`: GELU of every f16 value, rounded to f16 (ggml evaluates GELU through
/// this table because `GGML_GELU_FP16` is defined).
fn gelu_table() -> &'static [u16; 65536] {
    static TABLE: OnceLock<Box<[u16; 65536]>> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut t = Box::new([0u16; 65536]);
        for (h, e) in (0..=u16::MAX).zip(t.iter_mut()) {
            *e = f32_to_f16(gelu_f32(f16_to_f32(h)));
        }
        t
    })
}

/// `ggml_vec_geglu_f32`: `y = gelu(g) * u`, GELU looked up through the f16 table (0 for
/// `g <= -10`, `g * u` for `g >= 10`).
pub fn geglu(gate: &[f32], up: &[f32], out: &mut [f32]) {
    hearth_kernels::vec::geglu_table(gate, up, out, gelu_table());
}

/// `ggml_vec_swiglu_f32`: `y = silu(g) * u`; groups of 16 go through the vectorized exp
/// (`ggml_v_silu`), the tail through `expf`.
pub fn swiglu(gate: &[f32], up: &[f32], out: &mut [f32]) {
    let n = out.len().min(gate.len()).min(up.len());
    let simd = n / 16 * 16;
    for i in 0..n {
        let x = gate[i];
        let silu = if i < simd {
            x / (1.0 + v_expf(-x))
        } else {
            x / (1.0 + (-x).exp())
        };
        out[i] = silu * up[i];
    }
}

/// One lane of ggml's AVX-512 `ggml_v_expf` (`vec.h`): a degree-5 polynomial after range
/// reduction, with the same fused multiply-adds and `scalef`.
pub fn v_expf(x: f32) -> f32 {
    let r = f32::from_bits(0x4b40_0000); // 0x1.8p23
    let z = fma32(x, f32::from_bits(0x3fb8_aa3b), r); // 0x1.715476p+0
    let n = z - r;
    let b = fma32(
        -n,
        f32::from_bits(0x35bf_be8e),               // 0x1.7f7d1cp-20
        fma32(-n, f32::from_bits(0x3f31_7200), x), // 0x1.62e4p-1
    );
    let u = b * b;
    let c5 = f32::from_bits(0x3c07_2010); // 0x1.0e4020p-7
    let c4 = f32::from_bits(0x3d2b_9f17); // 0x1.573e2ep-5
    let c3 = f32::from_bits(0x3e2a_af33); // 0x1.555e66p-3
    let c2 = f32::from_bits(0x3eff_fedb); // 0x1.fffdb6p-2
    let c1 = f32::from_bits(0x3f7f_fff6); // 0x1.ffffecp-1
    let j = fma32(
        fma32(fma32(c5, b, c4), u, fma32(c3, b, c2)),
        u,
        fma32(c1, b, 1.0),
    );
    if n.is_nan() {
        return n;
    }
    if n.abs() > 192.0 {
        return if n <= 0.0 { 0.0 } else { f32::INFINITY };
    }
    // scalef: j * 2^n, rounded once (exact in f64 for these ranges).
    (f64::from(j) * 2f64.powi(n as i32)) as f32
}

/// `fma(a, b, c)` in f32, computed through f64: the product is exact there, and the sum is
/// rounded twice (f64, then f32), which differs from a fused multiply-add only in rare halfway
/// cases. (`f32::mul_add` is a libm call unless the build enables FMA.)
#[inline]
pub fn fma32(a: f32, b: f32, c: f32) -> f32 {
    (f64::from(a) * f64::from(b) + f64::from(c)) as f32
}

/// Sum of 16 lanes in the order of `_mm512_reduce_add_ps`.
pub(crate) fn reduce_add_16(v: &[f32; 16]) -> f32 {
    let mut t = [0.0f32; 8];
    for i in 0..8 {
        t[i] = v[i] + v[i + 8];
    }
    let t3 = [t[0] + t[4], t[1] + t[5], t[2] + t[6], t[3] + t[7]];
    let t5 = [t3[0] + t3[2], t3[1] + t3[3]];
    t5[0] + t5[1]
}

// ---------------------------------------------------------------------------------------------
// Rotary position embedding

/// The parameters of one `ggml_rope_ext` call.
#[derive(Clone, Copy, Debug)]
pub struct RopeParams<'a> {
    pub neox: bool,
    pub n_rot: usize,
    pub freq_base: f32,
    pub freq_scale: f32,
    pub ext_factor: f32,
    pub attn_factor: f32,
    pub corr_dims: [f32; 2],
    /// Per-pair frequency divisors (`rope_freqs.weight`, long/short factors).
    pub freq_factors: Option<&'a [f32]>,
}

impl<'a> RopeParams<'a> {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        neox: bool,
        n_rot: usize,
        n_ctx_orig: usize,
        freq_base: f32,
        freq_scale: f32,
        ext_factor: f32,
        attn_factor: f32,
        beta_fast: f32,
        beta_slow: f32,
        freq_factors: Option<&'a [f32]>,
    ) -> Self {
        RopeParams {
            neox,
            n_rot,
            freq_base,
            freq_scale,
            ext_factor,
            attn_factor,
            corr_dims: yarn_corr_dims(n_rot, n_ctx_orig, freq_base, beta_fast, beta_slow),
            freq_factors,
        }
    }

    /// `ggml_rope_cache_init`: `(cos, sin)` pairs for position `pos`.
    pub fn cache(&self, pos: i64, cache: &mut Vec<f32>) {
        cache.clear();
        let theta_scale = self.freq_base.powf(-2.0 / self.n_rot as f32);
        let mut theta = pos as f32;
        for i0 in (0..self.n_rot).step_by(2) {
            let ff = self
                .freq_factors
                .and_then(|f| f.get(i0 / 2).copied())
                .unwrap_or(1.0);
            let (c, s) = self.yarn(theta / ff, i0);
            cache.push(c);
            cache.push(s);
            theta *= theta_scale;
        }
    }

    /// `rope_yarn`.
    fn yarn(&self, theta_extrap: f32, i0: usize) -> (f32, f32) {
        let theta_interp = self.freq_scale * theta_extrap;
        let mut theta = theta_interp;
        let mut mscale = self.attn_factor;
        if self.ext_factor != 0.0 {
            let ramp_mix = yarn_ramp(self.corr_dims[0], self.corr_dims[1], i0) * self.ext_factor;
            theta = theta_interp * (1.0 - ramp_mix) + theta_extrap * ramp_mix;
            mscale *= 1.0 + 0.1 * (1.0 / self.freq_scale).ln();
        }
        (theta.cos() * mscale, theta.sin() * mscale)
    }

    /// Rotates every `head_dim`-sized head in `x` with the (cos, sin) `cache` of its position.
    pub fn apply(&self, x: &mut [f32], head_dim: usize, cache: &[f32]) {
        let half = self.n_rot / 2;
        for head in x.chunks_exact_mut(head_dim) {
            for i0 in (0..self.n_rot).step_by(2) {
                let (c, s) = (cache[i0], cache[i0 + 1]);
                let (a, b) = if self.neox {
                    (i0 / 2, i0 / 2 + half)
                } else {
                    (i0, i0 + 1)
                };
                let (x0, x1) = (head[a], head[b]);
                // GCC contracts `x0*c - x1*s` and `x0*s + x1*c` into fused multiply-adds
                // (`-ffp-contract=fast`, the GNU C default) on the first product.
                head[a] = fma32(x0, c, -(x1 * s));
                head[b] = fma32(x0, s, x1 * c);
            }
        }
    }
}

fn yarn_ramp(low: f32, high: f32, i0: usize) -> f32 {
    let y = ((i0 / 2) as f32 - low) / (high - low).max(0.001);
    1.0 - y.clamp(0.0, 1.0)
}

/// `ggml_rope_yarn_corr_dims`.
fn yarn_corr_dims(
    n_dims: usize,
    n_ctx_orig: usize,
    base: f32,
    beta_fast: f32,
    beta_slow: f32,
) -> [f32; 2] {
    let corr_dim = |n_rot: f32| {
        n_dims as f32 * (n_ctx_orig as f32 / (n_rot * 2.0 * std::f32::consts::PI)).ln()
            / (2.0 * base.ln())
    };
    let start = corr_dim(beta_fast).floor();
    let end = corr_dim(beta_slow).ceil();
    [start.max(0.0), end.min(n_dims as f32 - 1.0)]
}

/// f32 -> f16 -> f32 (`GGML_CPU_FP32_TO_FP16`, round to nearest even).
#[inline]
pub fn round_f16(x: f32) -> f32 {
    f16_to_f32(f32_to_f16(x))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v_expf_is_close_to_exp() {
        for i in -1700..1700 {
            let x = i as f32 * 0.05;
            let (a, b) = (v_expf(x), x.exp());
            assert!(((a - b) / b).abs() < 3e-7, "x={x}: {a} vs {b}");
        }
        assert_eq!(v_expf(f32::NEG_INFINITY), 0.0);
        assert_eq!(v_expf(-200.0), 0.0);
        assert_eq!(v_expf(0.0), 1.0);
    }

    #[test]
    fn q8_0_rounding_matches_block_quantization() {
        let x: Vec<f32> = (0..64)
            .map(|i| ((i * 37 % 23) as f32 - 11.0) * 0.173)
            .collect();
        let mut a = x.clone();
        round_activation(GgmlType::Q8_0, &mut a, &mut Vec::new());
        // Reference: the block quantizer of hearth-kernels (ggml's reference path).
        let mut bytes = vec![0u8; 2 * 34];
        quant::quantize(GgmlType::Q8_0, &x, &mut bytes).unwrap();
        let mut b = vec![0.0; 64];
        quant::dequantize(GgmlType::Q8_0, &bytes, &mut b).unwrap();
        for (p, q) in a.iter().zip(&b) {
            assert!((p - q).abs() <= 1e-6, "{p} vs {q}");
        }
    }

    fn pseudo_random(n: usize, seed: u32) -> Vec<f32> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (s >> 8) as f32 / (1u32 << 24) as f32 - 0.5
            })
            .collect()
    }

    #[test]
    fn unpacked_blocks_equal_dequantized_values() {
        let x = pseudo_random(512, 7);
        for ty in [GgmlType::Q4_0, GgmlType::Q5_0, GgmlType::Q8_0] {
            let (_, bb) = block_geometry(ty);
            let mut bytes = vec![0u8; 512 / 32 * bb];
            quant::quantize(ty, &x, &mut bytes).unwrap();
            let mut deq = vec![0.0; 512];
            quant::dequantize(ty, &bytes, &mut deq).unwrap();
            let (mut q, mut d) = (vec![0i16; 512], vec![0.0f32; 16]);
            unpack_q8_blocks(ty, &bytes, &mut q, &mut d);
            for (i, (&qv, &dv)) in q.iter().zip(&deq).enumerate() {
                assert_eq!(f32::from(qv) * d[i / 32], dv, "{ty} value {i}");
            }
        }
        for ty in [GgmlType::Q4_K, GgmlType::Q6_K] {
            let (_, bb) = block_geometry(ty);
            let mut bytes = vec![0u8; 2 * bb];
            quant::quantize(ty, &x, &mut bytes).unwrap();
            let mut deq = vec![0.0; 512];
            quant::dequantize(ty, &bytes, &mut deq).unwrap();
            let mut row = KRow::default();
            row.unpack(ty, &bytes);
            for (i, &want) in deq.iter().enumerate() {
                let (b, sub) = (i / 256, (i % 256) / 32);
                let v = if ty == GgmlType::Q4_K {
                    let d = row.d[b] * row.scales[b * 8 + sub] as f32;
                    let m = row.dmin[b] * row.mins[b * 8 + sub] as f32;
                    d * f32::from(row.q[i]) - m
                } else {
                    row.d[b]
                        * row.scales[b * 16 + (i % 256) / 16] as f32
                        * (i32::from(row.q[i]) - 32) as f32
                };
                assert!(
                    (v - want).abs() <= 1e-6 * want.abs().max(1.0),
                    "{ty} value {i}: {v} vs {want}"
                );
            }
        }
    }

    #[test]
    fn dot_matches_naive() {
        let a: Vec<f32> = (0..77).map(|i| (i as f32).sin()).collect();
        let b: Vec<f32> = (0..77).map(|i| (i as f32 * 0.3).cos()).collect();
        let naive: f64 = a.iter().zip(&b).map(|(x, y)| f64::from(x * y)).sum();
        assert!((f64::from(dot(&a, &b)) - naive).abs() < 1e-5);
    }

    #[test]
    fn rope_neox_rotates_halves() {
        let p = RopeParams::new(true, 4, 512, 10000.0, 1.0, 0.0, 1.0, 32.0, 1.0, None);
        let mut cache = Vec::new();
        p.cache(1, &mut cache);
        let mut x = [1.0, 0.0, 0.0, 0.0];
        p.apply(&mut x, 4, &cache);
        assert!((x[0] - 1f32.cos()).abs() < 1e-6 && (x[2] - 1f32.sin()).abs() < 1e-6);
    }
}

#[cfg(test)]
mod fast_vs_exact {
    use super::*;
    use crate::layer::Loader;

    /// On every weight type of Gemma 3 270M (Q8_0, Q5_0, Q4_K, Q6_K), the fast kernels give
    /// llama.cpp's products up to f32 rounding: the same quantized activations and integer
    /// block sums, only summed in another order.
    #[test]
    fn fast_matmul_agrees_with_llama_cpp_exact_on_gemma_weights() {
        let path = hearth_store::default_model().expect("default model");
        let gguf = Arc::new(MappedGguf::open(&path).unwrap());
        let loader = Loader::new(gguf.file(), Some(Source::Mapped(gguf.clone())));
        let pool = ThreadPool::new(2);
        let names: Vec<String> = gguf
            .file()
            .tensors
            .iter()
            .filter(|t| t.shape.len() == 2 && t.shape[1] > 1)
            .map(|t| t.name.clone())
            .collect();
        for name in &names {
            let name = name.as_str();
            let info = gguf.file().tensor(name).unwrap();
            let (n_in, n_out) = (info.shape[0] as usize, info.shape[1] as usize);
            let w = loader.matrix(name, n_in, n_out).unwrap();
            for n in [1usize, 7] {
                // Hidden states with outliers, as real ones have.
                let x: Vec<f32> = (0..n * n_in)
                    .map(|i| {
                        let v = ((i * 7919 + 13) % 1000) as f32 / 500.0 - 1.0;
                        if i % 97 == 0 {
                            v * 300.0
                        } else {
                            v
                        }
                    })
                    .collect();
                let mut exact = vec![0.0f32; n * n_out];
                let mut fast = vec![0.0f32; n * n_out];
                matmul_exact(&pool, &w, &x, n, &mut exact, false).unwrap();
                let mm = Mm {
                    pool: &pool,
                    numerics: Numerics::Fast,
                    per_token: false,
                    observer: None,
                };
                mm.matmul(&w, &x, n, &mut fast).unwrap();
                let scale = exact.iter().fold(0.0f32, |a, &b| a.max(b.abs()));
                let worst = exact
                    .iter()
                    .zip(&fast)
                    .map(|(a, b)| (a - b).abs())
                    .fold(0.0f32, f32::max);
                assert!(
                    worst <= 1e-5 * scale.max(1.0),
                    "{name} ({:?}) n={n}: max |fast - exact| {worst} (scale {scale})",
                    w.ty()
                );
            }
        }
    }
}
