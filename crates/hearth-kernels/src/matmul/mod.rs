//! Quantized matrix multiplication on the CPU: a weight matrix in a ggml
//! type times f32 activations, like ggml's CPU `mul_mat`.
//!
//! Per call the activations are quantized once to the weight type's
//! `vec_dot_type` (Q4_0/Q5_0/Q8_0/IQ4_NL -> Q8_0, Q4_1/Q5_1 -> Q8_1,
//! Q2_K..Q6_K/IQ4_XS -> Q8_K, F16 -> f16, BF16 -> bf16, F32 -> f32); each
//! output is then an integer dot product per block scaled in f32, the math
//! of ggml's `ggml_vec_dot_*`, so results match llama.cpp up to f32
//! rounding. Other types fall back to dequantize-row + f32 dot.
//!
//! Kernels are picked per matrix for a [`CpuLevel`] (by default
//! [`CpuLevel::active`]) and run on a [`ThreadPool`]: rows are split into
//! contiguous parts (a few per thread) and every output is computed by one
//! kernel call in a fixed order, so results are independent of timing and of
//! the number of threads. A token's result is also independent of how many
//! tokens are multiplied together (decode and prefill give identical bits).

#![allow(unsafe_code)]

pub(crate) mod act;
pub(crate) mod direct512;
pub(crate) mod group;
pub(crate) mod kgroup;
pub(crate) mod scalar;
pub(crate) mod tile;
pub(crate) mod tile512;
pub(crate) mod tile_k6;
#[cfg(target_arch = "x86_64")]
pub(crate) mod x86_avx2;
#[cfg(target_arch = "x86_64")]
pub(crate) mod x86_avx512;

#[cfg(test)]
mod tests;

use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use hearth_gguf::GgmlType;

use crate::cpu::CpuLevel;
use crate::pool::{split_range, SharedMut, ThreadPool};
use crate::quant::{block_geometry, dequantize, supports_dequantize, Op, QuantError};
use act::{ActKind, Acts};
use scalar::ScalarDot;

/// A SIMD kernel: `out[i] = dot(w_row, token t0 + i)` for every `i`.
///
/// # Safety
/// The CPU must support the kernel's level. Lengths are asserted inside.
pub(crate) type DotFn = unsafe fn(w: &[u8], acts: &Acts<'_>, t0: usize, out: &mut [f32]);

#[derive(Clone, Copy)]
enum Dot {
    Simd(DotFn),
    Scalar(ScalarDot),
}

/// The kernel chosen for a matrix.
#[derive(Clone, Copy)]
struct Kernel {
    act: ActKind,
    dot: Dot,
    /// The level of the code `dot` runs (may be below the matrix's level
    /// when a type has no kernel at that level).
    level: CpuLevel,
    /// Products run through these row-group kernels ([`group`]) instead of `dot`.
    group: Option<group::GroupKind>,
}

impl Kernel {
    /// `out[i] = dot(w_row, token t0 + i)`.
    #[inline]
    fn run(&self, w_row: &[u8], acts: &Acts<'_>, t0: usize, out: &mut [f32]) {
        debug_assert_eq!(acts.kind, self.act);
        match self.dot {
            // SAFETY: a Simd kernel is only selected for a level the CPU
            // supports (`kernel_for` is called with checked levels only).
            Dot::Simd(f) => unsafe { f(w_row, acts, t0, out) },
            Dot::Scalar(f) => {
                for (i, o) in out.iter_mut().enumerate() {
                    *o = f(w_row, acts, t0 + i);
                }
            }
        }
    }
}

/// The activation format (`vec_dot_type`) of the weight types with kernels.
fn act_kind(ty: GgmlType) -> Option<ActKind> {
    use GgmlType as T;
    Some(match ty {
        T::Q4_0 | T::Q5_0 | T::Q8_0 | T::IQ4_NL => ActKind::Q8_0,
        T::Q4_1 | T::Q5_1 => ActKind::Q8_1,
        T::Q2_K | T::Q3_K | T::Q4_K | T::Q5_K | T::Q6_K | T::IQ4_XS => ActKind::Q8K,
        T::F16 => ActKind::F16,
        T::BF16 => ActKind::BF16,
        T::F32 => ActKind::F32,
        _ => return None,
    })
}

/// The SIMD kernel written for exactly `code` (Avx2 or Avx512) for `ty`.
fn simd_kernel(ty: GgmlType, code: CpuLevel) -> Option<DotFn> {
    #[cfg(target_arch = "x86_64")]
    match code {
        CpuLevel::Avx512 => return x86_avx512::dot_fn(ty),
        CpuLevel::Avx2 => return x86_avx2::dot_fn(ty),
        _ => {}
    }
    let _ = (ty, code);
    None
}

/// The best kernel for `ty` at `level` (which the CPU must support), or
/// `None` for the dequantize fallback. A SIMD kernel is only taken if it
/// agrees with its scalar twin on this CPU ([`self_test`]); otherwise the
/// next level down is tried (with a warning).
fn kernel_for(ty: GgmlType, level: CpuLevel) -> Option<Kernel> {
    let act = act_kind(ty)?;
    for code in [CpuLevel::Avx512, CpuLevel::Avx2] {
        if level < code {
            continue;
        }
        if let Some(f) = simd_kernel(ty, code) {
            if self_test(ty, code, f) {
                return Some(Kernel {
                    act,
                    dot: Dot::Simd(f),
                    level: code,
                    group: group::group_kind(ty, code),
                });
            }
        }
    }
    Some(Kernel {
        act,
        dot: Dot::Scalar(scalar::scalar_dot(ty)?),
        level: CpuLevel::Scalar,
        group: group::group_kind(ty, CpuLevel::Scalar),
    })
}

/// Runs the `code`-level kernel for `ty` once on a small seeded matrix and
/// compares it with the scalar twin (cached per type and level). A kernel
/// that disagrees on this CPU is never used: the check guards code paths
/// that could not be tested on the machine they were written on.
fn self_test(ty: GgmlType, code: CpuLevel, f: DotFn) -> bool {
    use std::collections::HashMap;
    use std::sync::Mutex;
    static RESULTS: Mutex<Option<HashMap<(GgmlType, CpuLevel), bool>>> = Mutex::new(None);
    let mut results = RESULTS.lock().unwrap_or_else(|e| e.into_inner());
    let results = results.get_or_insert_with(HashMap::new);
    if let Some(&ok) = results.get(&(ty, code)) {
        return ok;
    }
    let ok = self_test_uncached(ty, code, f);
    if !ok {
        eprintln!(
            "hearth: the {code} matmul kernel for {ty} disagrees with its scalar twin on this CPU; \
             using a lower level"
        );
    }
    results.insert((ty, code), ok);
    ok
}

fn self_test_uncached(ty: GgmlType, code: CpuLevel, f: DotFn) -> bool {
    let (Some(act), Some(twin)) = (act_kind(ty), scalar::scalar_dot(ty)) else {
        return false;
    };
    let (bv, bb) = block_geometry(ty);
    // 17 blocks of 32 (an odd count), 2 super-blocks, or a ragged float row.
    let ne0 = match bv {
        1 => 100,
        32 => 17 * 32,
        _ => 2 * bv,
    };
    let (n_rows, n_tokens) = (2, 5);
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((seed >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 2.0
    };
    let wf: Vec<f32> = (0..ne0 * n_rows).map(|_| next()).collect();
    let x: Vec<f32> = (0..ne0 * n_tokens).map(|_| next()).collect();
    let mut w = vec![0u8; ne0 * n_rows / bv * bb];
    if crate::quant::quantize(ty, &wf, &mut w).is_err() {
        return false;
    }
    let acts = Acts::quantize(act, &x, n_tokens, ne0, code, None);
    let mut deq = vec![0.0f32; ne0];
    for row in w.chunks_exact(w.len() / n_rows) {
        if dequantize(ty, row, &mut deq).is_err() {
            return false;
        }
        for tile in 1..=TILE {
            let mut got = [0.0f32; TILE];
            // SAFETY: `code` <= the level the caller checked against the CPU.
            unsafe { f(row, &acts, n_tokens - tile, &mut got[..tile]) };
            for (j, &g) in got[..tile].iter().enumerate() {
                let t = n_tokens - tile + j;
                let want = twin(row, &acts, t);
                let mag: f32 = deq
                    .iter()
                    .zip(&x[t * ne0..(t + 1) * ne0])
                    .map(|(a, b)| (a * b).abs())
                    .sum();
                let ok = (g - want).abs() <= 1e-4 * mag + 1e-5;
                if !ok {
                    return false;
                }
            }
        }
    }
    true
}

/// The bytes of a weight matrix: borrowed (zero-copy, e.g. from a memory
/// map the caller keeps alive) or shared ownership of any byte container
/// (a `Vec`, an `Arc<Mmap>`, ...).
#[derive(Clone)]
pub enum WeightBytes<'a> {
    /// Borrowed bytes.
    Borrowed(&'a [u8]),
    /// A range of bytes owned by `owner`.
    Shared {
        /// The container.
        owner: Arc<dyn AsRef<[u8]> + Send + Sync>,
        /// The matrix's bytes within `owner.as_ref()`.
        range: Range<usize>,
    },
}

impl WeightBytes<'_> {
    fn bytes(&self) -> &[u8] {
        match self {
            WeightBytes::Borrowed(b) => b,
            WeightBytes::Shared { owner, range } => {
                let all: &[u8] = (**owner).as_ref();
                all.get(range.clone()).unwrap_or(&[])
            }
        }
    }
}

impl<'a> From<&'a [u8]> for WeightBytes<'a> {
    fn from(b: &'a [u8]) -> Self {
        WeightBytes::Borrowed(b)
    }
}

impl From<Vec<u8>> for WeightBytes<'static> {
    fn from(v: Vec<u8>) -> Self {
        let range = 0..v.len();
        WeightBytes::Shared {
            owner: Arc::new(v),
            range,
        }
    }
}

impl From<Arc<[u8]>> for WeightBytes<'static> {
    fn from(v: Arc<[u8]>) -> Self {
        let range = 0..v.len();
        WeightBytes::Shared {
            owner: Arc::new(v),
            range,
        }
    }
}

/// A weight matrix: `n_rows` rows of `ne0` weights of type `ty`, in ggml
/// layout (each row `ne0 / block` consecutive blocks; a GGUF tensor of shape
/// `[ne0, n_rows]`).
#[derive(Clone)]
pub struct QMatrix<'a> {
    ty: GgmlType,
    ne0: usize,
    n_rows: usize,
    row_bytes: usize,
    data: WeightBytes<'a>,
    level: CpuLevel,
    kernel: Option<Kernel>,
}

impl fmt::Debug for QMatrix<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QMatrix")
            .field("ty", &self.ty)
            .field("ne0", &self.ne0)
            .field("n_rows", &self.n_rows)
            .field("level", &self.level)
            .field("kernel", &self.kernel_name())
            .finish()
    }
}

impl<'a> QMatrix<'a> {
    /// Checks the shape against the bytes and picks kernels for
    /// [`CpuLevel::active`].
    pub fn new(
        ty: GgmlType,
        data: impl Into<WeightBytes<'a>>,
        ne0: usize,
        n_rows: usize,
    ) -> Result<QMatrix<'a>, QuantError> {
        let data = data.into();
        if let WeightBytes::Shared { owner, range } = &data {
            let len = (**owner).as_ref().len();
            if range.start > range.end || range.end > len {
                return Err(QuantError::Shape {
                    what: "weight byte range",
                    expected: len,
                    got: range.end,
                });
            }
        }
        if act_kind(ty).is_none() && !supports_dequantize(ty) {
            return Err(QuantError::Unsupported { ty, op: Op::Matmul });
        }
        let (bv, bb) = block_geometry(ty);
        if !ne0.is_multiple_of(bv) {
            return Err(QuantError::RowNotBlocks {
                ty,
                ne0,
                block_values: bv,
            });
        }
        let row_bytes = ne0 / bv * bb;
        let expected = row_bytes.saturating_mul(n_rows);
        let got = data.bytes().len();
        if got != expected {
            return Err(QuantError::Shape {
                what: "weight bytes",
                expected,
                got,
            });
        }
        let level = CpuLevel::active();
        Ok(QMatrix {
            ty,
            ne0,
            n_rows,
            row_bytes,
            data,
            level,
            kernel: kernel_for(ty, level),
        })
    }

    /// The same matrix with kernels for `level` (for tests and benchmarks
    /// of each level).
    pub fn with_level(mut self, level: CpuLevel) -> Result<QMatrix<'a>, QuantError> {
        if !level.is_supported() {
            return Err(QuantError::LevelUnsupported {
                requested: level,
                detected: CpuLevel::detected(),
            });
        }
        self.level = level;
        self.kernel = kernel_for(self.ty, level);
        Ok(self)
    }

    /// The weight type.
    pub fn ty(&self) -> GgmlType {
        self.ty
    }

    /// Weights per row.
    pub fn ne0(&self) -> usize {
        self.ne0
    }

    /// Rows (outputs per token).
    pub fn n_rows(&self) -> usize {
        self.n_rows
    }

    /// Bytes of weights (what a decode step streams from memory).
    pub fn n_bytes(&self) -> usize {
        self.row_bytes * self.n_rows
    }

    /// The level kernels were chosen for.
    pub fn level(&self) -> CpuLevel {
        self.level
    }

    /// What runs: `"avx2"`, `"scalar"`, ... or `"dequantize+dot"` for types
    /// without a kernel.
    pub fn kernel_name(&self) -> &'static str {
        match &self.kernel {
            Some(k) => k.level.name(),
            None => "dequantize+dot",
        }
    }

    #[inline]
    fn row(&self, r: usize) -> &[u8] {
        &self.data.bytes()[r * self.row_bytes..(r + 1) * self.row_bytes]
    }

    fn check_operands(&self, x: &[f32], n_tokens: usize, out: &[f32]) -> Result<(), QuantError> {
        let expect = |what, a: usize, b: usize, got| {
            let expected = a.saturating_mul(b);
            if expected == got {
                Ok(())
            } else {
                Err(QuantError::Shape {
                    what,
                    expected,
                    got,
                })
            }
        };
        expect("x", n_tokens, self.ne0, x.len())?;
        expect("out", n_tokens, self.n_rows, out.len())
    }
}

/// Rows per chunk of the prefill loop (a chunk of weights stays in L1/L2
/// while every token tile of a token block passes over it).
const ROW_CHUNK: usize = 16;
/// Tokens per block of the prefill loop (their activations stay in L2).
const TOKEN_BLOCK: usize = 64;
/// Tokens per block of the tile kernels' loop: each group of rows is unpacked once per block
/// (the block's activations are read from L2/L3 once per group).
const TILE_TOKEN_BLOCK: usize = 256;
/// Tokens per kernel call (the kernels tile further as they need).
const TILE: usize = 4;

/// `out[t * n_rows + r] = dot(row r of w, x[t * ne0..(t + 1) * ne0])` for
/// `t in 0..n_tokens`, on all threads of `pool`.
pub fn matmul(
    pool: &ThreadPool,
    w: &QMatrix<'_>,
    x: &[f32],
    n_tokens: usize,
    out: &mut [f32],
) -> Result<(), QuantError> {
    w.check_operands(x, n_tokens, out)?;
    if n_tokens == 0 || w.n_rows == 0 {
        return Ok(());
    }
    match w.kernel {
        Some(k) => {
            let acts = Acts::quantize(k.act, x, n_tokens, w.ne0, w.level, Some(pool));
            matmul_kernel(pool, w, &k, &acts, out);
        }
        None => matmul_dequant(pool, w, x, n_tokens, out),
    }
    Ok(())
}

/// The reference path: each weight row dequantized to f32 (the crate's
/// bit-exact dequantizers) and dotted with `x` in f32. Same contract as
/// [`matmul`]; what types without kernels run, and the baseline the
/// benchmarks compare against.
pub fn matmul_dequant_baseline(
    pool: &ThreadPool,
    w: &QMatrix<'_>,
    x: &[f32],
    n_tokens: usize,
    out: &mut [f32],
) -> Result<(), QuantError> {
    w.check_operands(x, n_tokens, out)?;
    if !supports_dequantize(w.ty) {
        return Err(QuantError::Unsupported {
            ty: w.ty,
            op: Op::Dequantize,
        });
    }
    if n_tokens > 0 && w.n_rows > 0 {
        matmul_dequant(pool, w, x, n_tokens, out);
    }
    Ok(())
}

/// Parts to split `n_rows` rows into: several per thread (a thread that
/// the OS holds back leaves its parts to the others), at least 64 rows each.
fn n_parts(pool: &ThreadPool, n_rows: usize) -> usize {
    (n_rows / 64).clamp(1, 4 * pool.n_threads())
}

fn matmul_kernel(pool: &ThreadPool, w: &QMatrix<'_>, k: &Kernel, acts: &Acts<'_>, out: &mut [f32]) {
    let n_rows = w.n_rows;
    let out = SharedMut::new(out);
    pool.run_parts(n_parts(pool, n_rows), |i, n| {
        let (r0, r1) = split_range(n_rows, n, i, 4);
        kernel_rows(w, k, acts, &out, r0, r1);
    });
}

/// Rows `r0..r1` of `w x` into `out` (`[n_tokens][n_rows]`).
fn kernel_rows(
    w: &QMatrix<'_>,
    k: &Kernel,
    acts: &Acts<'_>,
    out: &SharedMut<'_, f32>,
    r0: usize,
    r1: usize,
) {
    let (n_rows, n_tokens, rb) = (w.n_rows, acts.n_tokens, w.row_bytes);
    let data = w.data.bytes();
    let row = |r: usize| &data[r * rb..(r + 1) * rb];
    if r0 >= r1 {
        return;
    }
    if let Some(kind) = k.group {
        return tile_rows(w, k, acts, out, r0, r1, kind);
    }
    if n_tokens == 1 {
        // SAFETY: rows r0..r1 belong to the caller's part alone.
        let dst = unsafe { out.slice(r0, r1 - r0) };
        for (r, o) in (r0..r1).zip(dst.chunks_exact_mut(1)) {
            k.run(row(r), acts, 0, o);
        }
        return;
    }
    let mut tile = [0.0f32; TILE];
    for tb in (0..n_tokens).step_by(TOKEN_BLOCK) {
        let tb_end = (tb + TOKEN_BLOCK).min(n_tokens);
        for rc in (r0..r1).step_by(ROW_CHUNK) {
            let rc_end = (rc + ROW_CHUNK).min(r1);
            for t in (tb..tb_end).step_by(TILE) {
                let nt = TILE.min(tb_end - t);
                for r in rc..rc_end {
                    k.run(row(r), acts, t, &mut tile[..nt]);
                    for (j, &v) in tile[..nt].iter().enumerate() {
                        // SAFETY: row r is in the caller's range, so
                        // element (t + j, r) is written by no other part.
                        unsafe { out.slice((t + j) * n_rows + r, 1)[0] = v };
                    }
                }
            }
        }
    }
}

/// Products of fewer tokens than this (decode steps of a few sequences) run the one-row
/// kernels, each row read from memory once and multiplied with every token while it is in
/// L1, instead of unpacking row groups for the tile kernels.
const DIRECT_BELOW: usize = 4;

/// Whether `k` runs the AVX2 group kernels (else their scalar twins).
fn group_simd(k: &Kernel) -> bool {
    cfg!(target_arch = "x86_64") && k.level >= CpuLevel::Avx2
}

/// `dot(row, token t)` by the scalar twin of `kind`'s kernels (`ty` its weight type).
fn group_twin(kind: group::GroupKind, ty: GgmlType, row: &[u8], acts: &Acts<'_>, t: usize) -> f32 {
    use group::GroupKind;
    match kind {
        GroupKind::Q8 => tile::q8_row_dot_scalar(ty, row, acts, t),
        GroupKind::Q4K => tile::k4_row_dot_scalar(row, acts, t),
        GroupKind::Q5K => scalar::vec_dot_q5_k_q8_k_scalar(row, acts, t),
        GroupKind::Q6K => tile_k6::k6_row_dot_scalar(row, acts, t),
        GroupKind::Iq4Xs => scalar::vec_dot_iq4_xs_q8_k_scalar(row, acts, t),
    }
}

/// Decode: every row read in place (one memory stream per row) and multiplied with each
/// token, `dot(row, t)`, while it is in L1.
#[cfg(target_arch = "x86_64")]
fn direct_rows<'d>(
    out: &SharedMut<'_, f32>,
    n_rows: usize,
    r0: usize,
    r1: usize,
    row: &impl Fn(usize) -> &'d [u8],
    n_tokens: usize,
    dot: impl Fn(&[u8], usize) -> f32,
) {
    for r in r0..r1 {
        let w = row(r);
        for t in 0..n_tokens {
            // SAFETY: row r is in the caller's range, so element (t, r) is written by no
            // other part.
            unsafe { out.slice(t * n_rows + r, 1)[0] = dot(w, t) };
        }
    }
}

/// Asks the CPU to bring `bytes` into its caches (a hint: no effect on results, no faults).
#[inline]
fn prefetch(bytes: &[u8]) {
    #[cfg(target_arch = "x86_64")]
    for line in bytes.chunks(64) {
        // SAFETY: a prefetch hint on an address inside a live slice; it never faults.
        unsafe {
            std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
                line.as_ptr() as *const i8
            )
        };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = bytes;
}

/// [`kernel_rows`] for the types with tile kernels ([`tile`]): one token is multiplied with
/// each row read in place (decode), several in tiles of [`tile::TILE`] tokens per row, a chunk
/// of rows at a time for a block of tokens (the chunk stays in cache while the block's tiles
/// pass over it).
fn tile_rows(
    w: &QMatrix<'_>,
    k: &Kernel,
    acts: &Acts<'_>,
    out: &SharedMut<'_, f32>,
    r0: usize,
    r1: usize,
    kind: group::GroupKind,
) {
    use group::{GroupKind, GROUP};
    use tile::{TilePrep, TILE};
    let (n_rows, n_tokens, rb) = (w.n_rows, acts.n_tokens, w.row_bytes);
    let data = w.data.bytes();
    let row = |r: usize| &data[r * rb..(r + 1) * rb];
    let simd = group_simd(k);
    if !simd {
        for t in 0..n_tokens {
            // SAFETY: rows r0..r1 belong to the caller's part alone.
            let dst = unsafe { out.slice(t * n_rows + r0, r1 - r0) };
            for (o, r) in dst.iter_mut().zip(r0..r1) {
                *o = group_twin(kind, w.ty, row(r), acts, t);
            }
        }
        return;
    }
    #[cfg(target_arch = "x86_64")]
    {
        let wide = k.level >= CpuLevel::Avx512;
        if n_tokens < DIRECT_BELOW {
            // The tokens' block sums, for the unsigned-offset types (Q4_0, Q5_0).
            let asums: Vec<Vec<i32>> = match kind {
                GroupKind::Q8 if wide || group::unsigned_offset(w.ty) != 0 => {
                    (0..n_tokens).map(|t| group::block_sums(acts, t)).collect()
                }
                _ => vec![Vec::new(); n_tokens],
            };
            // The tokens' bsum pairs, for the VNNI Q4_K/Q5_K kernels.
            let pairs: Vec<Vec<i16>> = match kind {
                GroupKind::Q4K | GroupKind::Q5K if wide => (0..n_tokens)
                    .map(|t| direct512::avx512::bsum_pairs_row(acts, t))
                    .collect(),
                _ => vec![Vec::new(); n_tokens],
            };
            // SAFETY: the matrix's level (checked against the CPU) is at least AVX2; each
            // row holds nb blocks; the tokens exist; `asums` holds their block sums, `pairs`
            // their bsum pairs.
            // With AVX-512 VNNI (`wide`) the rows run its kernels.
            direct_rows(out, n_rows, r0, r1, &row, n_tokens, |row, t| unsafe {
                match (kind, wide) {
                    (GroupKind::Q8, true) => {
                        group::avx2::row_dot_direct_vnni(w.ty, row, acts, t, &asums[t])
                    }
                    (GroupKind::Q8, false) => {
                        group::avx2::row_dot_direct(w.ty, row, acts, t, &asums[t])
                    }
                    (GroupKind::Q4K, true) => {
                        direct512::avx512::k45_row_dot::<false>(row, acts, t, &pairs[t])
                    }
                    (GroupKind::Q4K, false) => group::avx2_k4::k4_row_dot_direct(row, acts, t),
                    (GroupKind::Q6K, true) => direct512::avx512::k6_row_dot(row, acts, t),
                    (GroupKind::Q6K, false) => tile_k6::avx2::k6_row_dot_direct(row, acts, t),
                    (GroupKind::Q5K, true) => {
                        direct512::avx512::k45_row_dot::<true>(row, acts, t, &pairs[t])
                    }
                    (GroupKind::Iq4Xs, true) => direct512::avx512::xs_row_dot(row, acts, t),
                    // AVX-512 only (`group_kind`).
                    (GroupKind::Q5K | GroupKind::Iq4Xs, false) => {
                        group_twin(kind, w.ty, row, acts, t)
                    }
                }
            });
            return;
        }
        // AVX-512 VNNI: sixteen rows (two unpacked groups) per kernel call.
        let step = if wide { tile512::ROWS } else { GROUP };
        let off = if wide {
            group::vnni_offset(w.ty)
        } else {
            group::unsigned_offset(w.ty)
        };
        let mut preps: Vec<TilePrep> = Vec::new();
        let mut q8: [group::GroupScratch; 2] = Default::default();
        let mut k4: [tile::K4Group; 2] = Default::default();
        let mut k6: [tile_k6::K6Group; 2] = Default::default();
        let mut res2 = [[[0.0f32; tile512::ROWS]; TILE]; 2];
        // The VNNI kernel of the types unpacked to `K4Group`s, and how it finishes them; it
        // takes two tiles (eight tokens) per call.
        let fin = match kind {
            GroupKind::Q4K => Some(tile512::avx512::Finish::Q4K),
            GroupKind::Q5K => Some(tile512::avx512::Finish::Q5K),
            GroupKind::Iq4Xs => Some(tile512::avx512::Finish::Iq4Xs),
            GroupKind::Q8 | GroupKind::Q6K => None,
        };
        let per_call = if wide && fin.is_some() { 2 } else { 1 };
        let bsums = matches!(kind, GroupKind::Q4K | GroupKind::Q5K | GroupKind::Iq4Xs);
        let asums = kind == GroupKind::Q8 && off != 0;
        for tb in (0..n_tokens).step_by(TILE_TOKEN_BLOCK) {
            let tb_end = (tb + TILE_TOKEN_BLOCK).min(n_tokens);
            // The block's tiles, prepared once for all rows.
            let tiles: Vec<(usize, usize)> = (tb..tb_end)
                .step_by(TILE)
                .map(|t0| (t0, TILE.min(tb_end - t0)))
                .collect();
            preps.resize_with(tiles.len(), TilePrep::default);
            for (p, &(t0, nt)) in preps.iter_mut().zip(&tiles) {
                p.prepare(acts, t0, nt, bsums, asums);
            }
            for g0 in (r0..r1).step_by(step) {
                let g1 = (g0 + step).min(r1);
                // The groups of eight rows: rows g0..g1 split at g0 + 8.
                let halves = [(g0, (g0 + GROUP).min(g1)), ((g0 + GROUP).min(g1), g1)];
                let n_groups = if halves[1].0 < halves[1].1 { 2 } else { 1 };
                for (h, &(a, b)) in halves.iter().enumerate().take(n_groups) {
                    let mut slots: [&[u8]; GROUP] = [&[]; GROUP];
                    for (slot, r) in slots.iter_mut().zip(a..b) {
                        *slot = row(r);
                    }
                    let rows = &slots[..b - a];
                    // SAFETY: the matrix's level (checked against the CPU) is at least AVX2;
                    // rows hold nb blocks each (the matrix shape was checked).
                    unsafe {
                        match kind {
                            GroupKind::Q8 => {
                                group::avx2::unpack_group(w.ty, rows, acts.nb, &mut q8[h], off)
                            }
                            GroupKind::Q4K => {
                                tile::avx2::k4_unpack_group(rows, acts.nb, &mut k4[h])
                            }
                            GroupKind::Q6K => {
                                tile_k6::avx2::k6_unpack_group(rows, acts.nb, &mut k6[h])
                            }
                            GroupKind::Q5K => {
                                tile::avx2::k5_unpack_group(rows, acts.nb, &mut k4[h])
                            }
                            GroupKind::Iq4Xs => {
                                kgroup::avx2::xs_unpack_group(rows, acts.nb, &mut k4[h])
                            }
                        }
                    }
                }
                // The next group's rows stream in while this one is multiplied.
                prefetch(&data[g1 * rb..(g1 + step).min(r1).max(g1) * rb]);
                // A lone group is passed twice (the second half's results are dropped).
                let second = n_groups - 1;
                for (pc, tc) in preps.chunks(per_call).zip(tiles.chunks(per_call)) {
                    let prep = &pc[0];
                    let res = &mut res2[0];
                    // SAFETY: as above, and the level is AVX-512 (VNNI) when `wide`; `pc`
                    // was prepared from `acts` (with the bsum pairs for the K types, the
                    // block sums for the offset types).
                    unsafe {
                        if wide {
                            use tile512::avx512;
                            match (kind, fin) {
                                (_, Some(fin)) => avx512::k_group_tile(
                                    fin,
                                    [&k4[0], &k4[second]],
                                    acts,
                                    pc,
                                    &mut res2[..pc.len()],
                                ),
                                (GroupKind::Q6K, _) => {
                                    avx512::k6_group_tile([&k6[0], &k6[second]], acts, prep, res)
                                }
                                _ => avx512::q8_group_tile(
                                    w.ty,
                                    [&q8[0], &q8[second]],
                                    acts,
                                    prep,
                                    res,
                                ),
                            }
                        } else {
                            let mut r8 = [[0.0f32; GROUP]; TILE];
                            match kind {
                                GroupKind::Q8 => {
                                    tile::avx2::group_dot_tile(w.ty, &q8[0], acts, prep, &mut r8)
                                }
                                GroupKind::Q4K => {
                                    tile::avx2::k4_group_tile(&k4[0], acts, prep, &mut r8)
                                }
                                GroupKind::Q6K => {
                                    tile_k6::avx2::k6_group_tile(&k6[0], acts, prep, &mut r8)
                                }
                                // Group kernels at the AVX-512 level only (`group_kind`);
                                // the scalar twins keep this total.
                                GroupKind::Q5K | GroupKind::Iq4Xs => {
                                    for (rj, &t) in r8.iter_mut().zip(&prep.t) {
                                        for (o, r) in rj.iter_mut().zip(g0..g1) {
                                            *o = group_twin(kind, w.ty, row(r), acts, t);
                                        }
                                    }
                                }
                            }
                            for (r16, r8) in res.iter_mut().zip(&r8) {
                                r16[..GROUP].copy_from_slice(r8);
                            }
                        }
                    }
                    for (res, &(t0, nt)) in res2.iter().zip(tc) {
                        for (j, rj) in res[..nt].iter().enumerate() {
                            // SAFETY: rows g0..g1 are in the caller's range alone.
                            let dst = unsafe { out.slice((t0 + j) * n_rows + g0, g1 - g0) };
                            dst.copy_from_slice(&rj[..g1 - g0]);
                        }
                    }
                }
            }
        }
    }
}

/// Several products of one input: `outs[i] = ws[i] x` (each `[n_tokens][n_rows_i]`), as
/// [`matmul`] computes each, but with the input quantized once per activation format and the
/// rows of all matrices shared between the threads in one run: how fused Q/K/V and
/// gate/up projections run (one synchronization instead of one per matrix).
pub fn matmul_many(
    pool: &ThreadPool,
    ws: &[&QMatrix<'_>],
    x: &[f32],
    n_tokens: usize,
    outs: &mut [&mut [f32]],
) -> Result<(), QuantError> {
    matmul_each(pool, ws, &vec![x; ws.len()], n_tokens, outs)
}

/// Several products, each of its own input: `outs[i] = ws[i] xs[i]` (each `[n_tokens]` rows),
/// as [`matmul`] computes each, with the rows of all matrices shared between the threads in
/// one run (e.g. the down products of a token's experts). Inputs that are the same slice are
/// quantized once.
pub fn matmul_each(
    pool: &ThreadPool,
    ws: &[&QMatrix<'_>],
    xs: &[&[f32]],
    n_tokens: usize,
    outs: &mut [&mut [f32]],
) -> Result<(), QuantError> {
    for (what, got) in [("outputs", outs.len()), ("inputs", xs.len())] {
        if ws.len() != got {
            return Err(QuantError::Shape {
                what,
                expected: ws.len(),
                got,
            });
        }
    }
    for ((w, o), x) in ws.iter().zip(outs.iter()).zip(xs) {
        w.check_operands(x, n_tokens, o)?;
    }
    if n_tokens == 0 {
        return Ok(());
    }
    if ws.iter().any(|w| w.kernel.is_none()) {
        for ((w, o), x) in ws.iter().zip(outs.iter_mut()).zip(xs) {
            matmul(pool, w, x, n_tokens, o)?;
        }
        return Ok(());
    }
    // One quantization per (input slice, format, level).
    let mut acts: Vec<((usize, usize), ActKind, CpuLevel, Acts<'_>)> = Vec::new();
    let mut which = Vec::with_capacity(ws.len());
    for (w, x) in ws.iter().zip(xs) {
        let k = w.kernel.as_ref().expect("checked above");
        let i = match acts.iter().position(|(p, a, l, _)| {
            *p == (x.as_ptr() as usize, x.len()) && *a == k.act && *l == w.level
        }) {
            Some(i) => i,
            None => {
                let a = Acts::quantize(k.act, x, n_tokens, w.ne0, w.level, Some(pool));
                acts.push(((x.as_ptr() as usize, x.len()), k.act, w.level, a));
                acts.len() - 1
            }
        };
        which.push(i);
    }
    let total: usize = ws.iter().map(|w| w.n_rows).sum();
    let shared: Vec<SharedMut<'_, f32>> = outs.iter_mut().map(|o| SharedMut::new(o)).collect();
    pool.run_parts(n_parts(pool, total), |i, n| {
        let (g0, g1) = split_range(total, n, i, 4);
        // The matrices overlapping global rows g0..g1.
        let mut base = 0;
        for (m, w) in ws.iter().enumerate() {
            let (a, b) = (g0.max(base), g1.min(base + w.n_rows));
            if a < b {
                let k = w.kernel.as_ref().expect("checked above");
                kernel_rows(w, k, &acts[which[m]].3, &shared[m], a - base, b - base);
            }
            base += w.n_rows;
        }
    });
    Ok(())
}

fn matmul_dequant(pool: &ThreadPool, w: &QMatrix<'_>, x: &[f32], n_tokens: usize, out: &mut [f32]) {
    let (n_rows, ne0) = (w.n_rows, w.ne0);
    let out = SharedMut::new(out);
    pool.run_parts(n_parts(pool, n_rows), |i, n| {
        let (r0, r1) = split_range(n_rows, n, i, 4);
        let mut buf = vec![0.0f32; ne0];
        for r in r0..r1 {
            // Lengths were checked when `w` was built; the type dequantizes.
            if dequantize(w.ty, w.row(r), &mut buf).is_err() {
                buf.fill(f32::NAN);
            }
            for (t, xt) in x.chunks_exact(ne0).enumerate().take(n_tokens) {
                // SAFETY: row r is in this part's range.
                unsafe { out.slice(t * n_rows + r, 1)[0] = scalar::dot_f32(&buf, xt) };
            }
        }
    });
}
