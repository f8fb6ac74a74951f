//! Vector kernels of attention (ggml's `vec.h`): dot products and `y += a * x` between f32
//! vectors and rows stored as f16 (the KV cache) or f32.
//!
//! The SIMD code is chosen once for [`CpuLevel::active`] (AVX2 + FMA + F16C where present);
//! every kernel has a scalar twin, and the tests compare them. Results of the two differ only
//! by the order of the f32 additions.

#![allow(unsafe_code)]

use std::sync::OnceLock;

use crate::cpu::CpuLevel;
use crate::quant::f16_to_f32;

/// The kernels of one level.
#[derive(Clone, Copy)]
struct Kernels {
    dot_f16: fn(&[u16], &[f32]) -> f32,
    axpy_f16: fn(&mut [f32], f32, &[u16]),
    dot_f32: fn(&[f32], &[f32]) -> f32,
    axpy_f32: fn(&mut [f32], f32, &[f32]),
    sum_f32: fn(&[f32]) -> f32,
    swiglu: fn(&[f32], &[f32], &mut [f32]),
    exp_sub: fn(&mut [f32], f32),
    axpy_rows_f16: fn(&mut [f32], &[f32], &[u16], usize),
    dot_rows_f16: fn(&mut [f32], &[f32], &[u16], usize),
    geglu_table: GegluTableFn,
}

/// [`geglu_table`]'s signature.
type GegluTableFn = fn(&[f32], &[f32], &mut [f32], &[u16; 65536]);

const SCALAR: Kernels = Kernels {
    dot_f16: scalar::dot_f16,
    axpy_f16: scalar::axpy_f16,
    dot_f32: scalar::dot_f32,
    axpy_f32: scalar::axpy_f32,
    sum_f32: scalar::sum_f32,
    swiglu: scalar::swiglu,
    exp_sub: scalar::exp_sub,
    axpy_rows_f16: scalar::axpy_rows_f16,
    dot_rows_f16: scalar::dot_rows_f16,
    geglu_table: scalar::geglu_table,
};

#[cfg(target_arch = "x86_64")]
const AVX2: Kernels = Kernels {
    dot_f16: avx2::dot_f16,
    axpy_f16: avx2::axpy_f16,
    dot_f32: avx2::dot_f32,
    axpy_f32: avx2::axpy_f32,
    sum_f32: avx2::sum_f32,
    swiglu: avx2::swiglu,
    exp_sub: avx2::exp_sub,
    axpy_rows_f16: avx2::axpy_rows_f16,
    dot_rows_f16: avx2::dot_rows_f16,
    geglu_table: avx2::geglu_table,
};

fn kernels_for(level: CpuLevel) -> Kernels {
    #[cfg(target_arch = "x86_64")]
    if level >= CpuLevel::Avx2 {
        return AVX2;
    }
    let _ = level;
    SCALAR
}

/// [`dot_f16`] at `level` (a level the CPU supports), for the tests of kernels that
/// reproduce its bits.
#[cfg(test)]
pub(crate) fn dot_f16_at(level: CpuLevel, a: &[u16], b: &[f32]) -> f32 {
    (kernels_for(level).dot_f16)(a, b)
}

/// [`axpy_rows_f16`] at `level`, as [`dot_f16_at`].
#[cfg(test)]
pub(crate) fn axpy_rows_f16_at(
    level: CpuLevel,
    y: &mut [f32],
    w: &[f32],
    x: &[u16],
    stride: usize,
) {
    (kernels_for(level).axpy_rows_f16)(y, w, x, stride)
}

fn kernels() -> &'static Kernels {
    static K: OnceLock<Kernels> = OnceLock::new();
    K.get_or_init(|| kernels_for(CpuLevel::active()))
}

/// `sum(f16(a[i]) * b[i])` over the shorter length.
#[inline]
pub fn dot_f16(a: &[u16], b: &[f32]) -> f32 {
    (kernels().dot_f16)(a, b)
}

/// `y[i] += alpha * f16(x[i])` over the shorter length.
#[inline]
pub fn axpy_f16(y: &mut [f32], alpha: f32, x: &[u16]) {
    (kernels().axpy_f16)(y, alpha, x)
}

/// `sum(a[i] * b[i])` over the shorter length.
#[inline]
pub fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    (kernels().dot_f32)(a, b)
}

/// `y[i] += alpha * x[i]` over the shorter length.
#[inline]
pub fn axpy_f32(y: &mut [f32], alpha: f32, x: &[f32]) {
    (kernels().axpy_f32)(y, alpha, x)
}

/// `sum(x[i])`.
#[inline]
pub fn sum_f32(x: &[f32]) -> f32 {
    (kernels().sum_f32)(x)
}

/// `out[i] = silu(gate[i]) * up[i]` with `silu(x) = x / (1 + exp(-x))`, over the shortest
/// length; `exp` is [`expf_fast`]'s (within 2 ulp of the exact value for the arguments silu
/// meets; SIMD and scalar results are identical).
#[inline]
pub fn swiglu(gate: &[f32], up: &[f32], out: &mut [f32]) {
    (kernels().swiglu)(gate, up, out)
}

/// `y += w[c] * f16(row c)` for every `c in 0..w.len()` in that order, row c being
/// `x[c * stride..][..y.len()]`: the same results, bit for bit, as one [`axpy_f16`] per row
/// (the weighted sum of attention's V rows), with `y` kept in registers across the rows.
///
/// # Panics
/// If `x` is too short for the last row.
#[inline]
pub fn axpy_rows_f16(y: &mut [f32], w: &[f32], x: &[u16], stride: usize) {
    if let Some(last) = w.len().checked_sub(1) {
        assert!(x.len() >= last * stride + y.len(), "rows of x");
    }
    (kernels().axpy_rows_f16)(y, w, x, stride)
}

/// `out[c] = dot_f16(row c, q)` for every `c in 0..out.len()`, row c being
/// `x[c * stride..][..q.len()]`: [`dot_f16`]'s results, bit for bit (the scores of attention's
/// K rows).
///
/// # Panics
/// If `x` is too short for the last row.
#[inline]
pub fn dot_rows_f16(out: &mut [f32], q: &[f32], x: &[u16], stride: usize) {
    if let Some(last) = out.len().checked_sub(1) {
        assert!(x.len() >= last * stride + q.len(), "rows of x");
    }
    (kernels().dot_rows_f16)(out, q, x, stride)
}

/// `out[i] = act(gate[i]) * up[i]` with `act` looked up in `table` by the f16 of the
/// argument (ggml's `ggml_vec_geglu_f32` through `ggml_table_gelu_f16`): 0 for arguments
/// `<= -10`, the argument itself for `>= 10`. SIMD and scalar results are identical.
#[inline]
pub fn geglu_table(gate: &[f32], up: &[f32], out: &mut [f32], table: &[u16; 65536]) {
    (kernels().geglu_table)(gate, up, out, table)
}

/// `x[i] = exp(x[i] - m)` with [`expf_fast`]'s `exp` (softmax numerators; SIMD and scalar
/// results are identical).
#[inline]
pub fn exp_sub(x: &mut [f32], m: f32) {
    (kernels().exp_sub)(x, m)
}

/// The constants of [`expf_fast`]: round-to-integer shift, log2(e), ln(2) split in two, and
/// the degree-5 polynomial of ggml's `ggml_v_expf`.
mod expc {
    pub(super) const SHIFT: f32 = 12582912.0; // 0x1.8p23
    pub(super) const LOG2E: u32 = 0x3fb8_aa3b;
    pub(super) const LN2_HI: u32 = 0x3f31_7200;
    pub(super) const LN2_LO: u32 = 0x35bf_be8e;
    pub(super) const C: [u32; 5] = [
        0x3f7f_fff6, // c1
        0x3eff_fedb, // c2
        0x3e2a_af33, // c3
        0x3d2b_9f17, // c4
        0x3c07_2010, // c5
    ];
    /// Arguments are clamped to this range, so that `2^n` is a normal f32.
    pub(super) const MIN: f32 = -87.0;
    pub(super) const MAX: f32 = 88.0;
}

/// `exp(x)` for `x` clamped to `[-87, 88]` (portable; the SIMD kernels compute the same
/// operations lane by lane): `x = n ln2 + b` with `n` an integer, `exp(b)` by the polynomial,
/// times `2^n` built in the exponent bits. NaN stays NaN.
pub fn expf_fast(x: f32) -> f32 {
    use expc::*;
    let f = f32::from_bits;
    let x = if x.is_nan() { x } else { x.clamp(MIN, MAX) };
    let z = x.mul_add(f(LOG2E), SHIFT);
    let n = z - SHIFT;
    let b = (-n).mul_add(f(LN2_LO), (-n).mul_add(f(LN2_HI), x));
    let u = b * b;
    let [c1, c2, c3, c4, c5] = C.map(f);
    let j = c5
        .mul_add(b, c4)
        .mul_add(u, c3.mul_add(b, c2))
        .mul_add(u, c1.mul_add(b, 1.0));
    if n.is_nan() {
        return n;
    }
    j * f((((n as i32) + 127) as u32) << 23)
}

/// Portable twins.
mod scalar {
    use super::f16_to_f32;

    pub(super) fn dot_f16(a: &[u16], b: &[f32]) -> f32 {
        a.iter().zip(b).map(|(&x, &y)| f16_to_f32(x) * y).sum()
    }

    pub(super) fn axpy_f16(y: &mut [f32], alpha: f32, x: &[u16]) {
        for (y, &x) in y.iter_mut().zip(x) {
            *y += alpha * f16_to_f32(x);
        }
    }

    pub(super) fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
        a.iter().zip(b).map(|(&x, &y)| x * y).sum()
    }

    pub(super) fn axpy_f32(y: &mut [f32], alpha: f32, x: &[f32]) {
        for (y, &x) in y.iter_mut().zip(x) {
            *y += alpha * x;
        }
    }

    pub(super) fn swiglu(gate: &[f32], up: &[f32], out: &mut [f32]) {
        for ((y, &g), &u) in out.iter_mut().zip(gate).zip(up) {
            *y = g / (1.0 + super::expf_fast(-g)) * u;
        }
    }

    pub(super) fn sum_f32(x: &[f32]) -> f32 {
        x.iter().sum()
    }

    pub(super) fn exp_sub(x: &mut [f32], m: f32) {
        for v in x.iter_mut() {
            *v = super::expf_fast(*v - m);
        }
    }

    pub(super) fn axpy_rows_f16(y: &mut [f32], w: &[f32], x: &[u16], stride: usize) {
        let n = y.len();
        for (c, &wc) in w.iter().enumerate() {
            axpy_f16(y, wc, &x[c * stride..c * stride + n]);
        }
    }

    pub(super) fn dot_rows_f16(out: &mut [f32], q: &[f32], x: &[u16], stride: usize) {
        let n = q.len();
        for (c, o) in out.iter_mut().enumerate() {
            *o = dot_f16(&x[c * stride..c * stride + n], q);
        }
    }

    pub(super) fn geglu_table(gate: &[f32], up: &[f32], out: &mut [f32], table: &[u16; 65536]) {
        for ((y, &x), &u) in out.iter_mut().zip(gate).zip(up) {
            *y = if x <= -10.0 {
                0.0
            } else if x >= 10.0 {
                x * u
            } else {
                f16_to_f32(table[usize::from(crate::quant::f32_to_f16(x))]) * u
            };
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    use super::f16_to_f32;
    use crate::matmul::x86_avx2::hsum_ps;

    // Each wrapper is only installed by `kernels_for` for a level the CPU supports, so the
    // `target_feature` functions below may be called.

    pub(super) fn dot_f16(a: &[u16], b: &[f32]) -> f32 {
        // SAFETY: AVX2, FMA and F16C are present (see above).
        unsafe { dot_f16_impl(a, b) }
    }

    pub(super) fn axpy_f16(y: &mut [f32], alpha: f32, x: &[u16]) {
        // SAFETY: as above.
        unsafe { axpy_f16_impl(y, alpha, x) }
    }

    pub(super) fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
        // SAFETY: as above.
        unsafe { dot_f32_impl(a, b) }
    }

    pub(super) fn axpy_f32(y: &mut [f32], alpha: f32, x: &[f32]) {
        // SAFETY: as above.
        unsafe { axpy_f32_impl(y, alpha, x) }
    }

    pub(super) fn swiglu(gate: &[f32], up: &[f32], out: &mut [f32]) {
        // SAFETY: as above.
        unsafe { swiglu_impl(gate, up, out) }
    }

    /// Eight lanes of [`super::expf_fast`].
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn expf8(x: __m256) -> __m256 {
        use super::expc::*;
        let f = |b: u32| _mm256_set1_ps(f32::from_bits(b));
        // max/min return the second operand for a NaN first one: keep NaN lanes.
        let nan = _mm256_cmp_ps::<_CMP_UNORD_Q>(x, x);
        let xc = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(MIN)), _mm256_set1_ps(MAX));
        let x = _mm256_blendv_ps(xc, x, nan);
        let shift = _mm256_set1_ps(SHIFT);
        let z = _mm256_fmadd_ps(x, f(LOG2E), shift);
        let n = _mm256_sub_ps(z, shift);
        let b = _mm256_fnmadd_ps(n, f(LN2_LO), _mm256_fnmadd_ps(n, f(LN2_HI), x));
        let u = _mm256_mul_ps(b, b);
        let [c1, c2, c3, c4, c5] = C.map(f);
        let j = _mm256_fmadd_ps(
            _mm256_fmadd_ps(_mm256_fmadd_ps(c5, b, c4), u, _mm256_fmadd_ps(c3, b, c2)),
            u,
            _mm256_fmadd_ps(c1, b, _mm256_set1_ps(1.0)),
        );
        let e = _mm256_slli_epi32::<23>(_mm256_add_epi32(
            _mm256_cvttps_epi32(n),
            _mm256_set1_epi32(127),
        ));
        let r = _mm256_mul_ps(j, _mm256_castsi256_ps(e));
        _mm256_blendv_ps(r, n, nan)
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    fn swiglu_impl(gate: &[f32], up: &[f32], out: &mut [f32]) {
        let n = out.len().min(gate.len()).min(up.len());
        let one = _mm256_set1_ps(1.0);
        let mut i = 0;
        while i + 8 <= n {
            // SAFETY: i + 8 <= the length of all three.
            unsafe {
                let g = _mm256_loadu_ps(gate.as_ptr().add(i));
                let u = _mm256_loadu_ps(up.as_ptr().add(i));
                let e = expf8(_mm256_sub_ps(_mm256_setzero_ps(), g));
                let y = _mm256_mul_ps(_mm256_div_ps(g, _mm256_add_ps(one, e)), u);
                _mm256_storeu_ps(out.as_mut_ptr().add(i), y);
            }
            i += 8;
        }
        super::scalar::swiglu(&gate[i..n], &up[i..n], &mut out[i..n]);
    }

    pub(super) fn sum_f32(x: &[f32]) -> f32 {
        // SAFETY: as above.
        unsafe { sum_f32_impl(x) }
    }

    pub(super) fn exp_sub(x: &mut [f32], m: f32) {
        // SAFETY: as above.
        unsafe { exp_sub_impl(x, m) }
    }

    pub(super) fn axpy_rows_f16(y: &mut [f32], w: &[f32], x: &[u16], stride: usize) {
        // SAFETY: as above.
        unsafe { axpy_rows_f16_impl(y, w, x, stride) }
    }

    pub(super) fn dot_rows_f16(out: &mut [f32], q: &[f32], x: &[u16], stride: usize) {
        // SAFETY: as above.
        unsafe { dot_rows_f16_impl(out, q, x, stride) }
    }

    pub(super) fn geglu_table(gate: &[f32], up: &[f32], out: &mut [f32], table: &[u16; 65536]) {
        // SAFETY: as above.
        unsafe { geglu_table_impl(gate, up, out, table) }
    }

    /// Eight lanes at a time: the f16 of the arguments (F16C, round to nearest even: the
    /// portable conversion's result for every non-NaN value), the table entries gathered,
    /// widened and multiplied; chunks holding a NaN go through the scalar twin.
    #[target_feature(enable = "avx2,fma,f16c")]
    fn geglu_table_impl(gate: &[f32], up: &[f32], out: &mut [f32], table: &[u16; 65536]) {
        let n = out.len().min(gate.len()).min(up.len());
        let (lo, hi) = (_mm256_set1_ps(-10.0), _mm256_set1_ps(10.0));
        let mut i = 0;
        while i + 8 <= n {
            // SAFETY: i + 8 <= the length of all three.
            let (x, u) = unsafe {
                (
                    _mm256_loadu_ps(gate.as_ptr().add(i)),
                    _mm256_loadu_ps(up.as_ptr().add(i)),
                )
            };
            if _mm256_movemask_ps(_mm256_cmp_ps::<_CMP_ORD_Q>(x, x)) != 0xff {
                super::scalar::geglu_table(
                    &gate[i..i + 8],
                    &up[i..i + 8],
                    &mut out[i..i + 8],
                    table,
                );
                i += 8;
                continue;
            }
            let h = _mm256_cvtepu16_epi32(_mm256_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(x));
            // The f16 of a non-NaN value is at most 0xfc00, so the 4 bytes read at entry h
            // stay inside the table; the upper 2 are dropped.
            // SAFETY: every index <= 0xfc00 < 65535 (see above).
            let g = unsafe { _mm256_i32gather_epi32::<2>(table.as_ptr() as *const i32, h) };
            let g = _mm256_and_si256(g, _mm256_set1_epi32(0xffff));
            let g16 = _mm256_permute4x64_epi64::<0b11_01_10_00>(_mm256_packus_epi32(g, g));
            let act = _mm256_cvtph_ps(_mm256_castsi256_si128(g16));
            let mut y = _mm256_mul_ps(act, u);
            y = _mm256_blendv_ps(y, _mm256_mul_ps(x, u), _mm256_cmp_ps::<_CMP_GE_OQ>(x, hi));
            y = _mm256_blendv_ps(y, _mm256_setzero_ps(), _mm256_cmp_ps::<_CMP_LE_OQ>(x, lo));
            // SAFETY: i + 8 <= n.
            unsafe { _mm256_storeu_ps(out.as_mut_ptr().add(i), y) };
            i += 8;
        }
        super::scalar::geglu_table(&gate[i..n], &up[i..n], &mut out[i..n], table);
    }

    /// [`dot_f16_impl`] for every row (inlined: no call or dispatch per row).
    #[target_feature(enable = "avx2,fma,f16c")]
    fn dot_rows_f16_impl(out: &mut [f32], q: &[f32], x: &[u16], stride: usize) {
        let n = q.len();
        for (c, o) in out.iter_mut().enumerate() {
            *o = dot_f16_impl(&x[c * stride..c * stride + n], q);
        }
    }

    /// [`axpy_f16_impl`] for every row, each element's fused multiply-adds in row order (the
    /// same operations per element): 64 outputs at a time stay in registers over all rows.
    #[target_feature(enable = "avx2,fma,f16c")]
    fn axpy_rows_f16_impl(y: &mut [f32], w: &[f32], x: &[u16], stride: usize) {
        let n = y.len();
        if w.is_empty() {
            return;
        }
        assert!(x.len() >= (w.len() - 1) * stride + n);
        let mut i = 0;
        while i + 64 <= n {
            // SAFETY: outputs i..i + 64 < n; row c's values i..i + 64 lie within x (asserted).
            unsafe {
                let p = y.as_mut_ptr().add(i);
                let mut acc: [__m256; 8] = [_mm256_setzero_ps(); 8];
                for (k, a) in acc.iter_mut().enumerate() {
                    *a = _mm256_loadu_ps(p.add(8 * k));
                }
                for (c, &wc) in w.iter().enumerate() {
                    let wv = _mm256_set1_ps(wc);
                    let row = x.as_ptr().add(c * stride + i);
                    for (k, a) in acc.iter_mut().enumerate() {
                        let v = _mm256_cvtph_ps(_mm_loadu_si128(row.add(8 * k) as *const __m128i));
                        *a = _mm256_fmadd_ps(wv, v, *a);
                    }
                }
                for (k, a) in acc.iter().enumerate() {
                    _mm256_storeu_ps(p.add(8 * k), *a);
                }
            }
            i += 64;
        }
        if i < n {
            for (c, &wc) in w.iter().enumerate() {
                axpy_f16_impl(&mut y[i..], wc, &x[c * stride + i..c * stride + n]);
            }
        }
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    fn exp_sub_impl(x: &mut [f32], m: f32) {
        let n = x.len();
        let mv = _mm256_set1_ps(m);
        let mut i = 0;
        while i + 8 <= n {
            // SAFETY: i + 8 <= n.
            unsafe {
                let p = x.as_mut_ptr().add(i);
                _mm256_storeu_ps(p, expf8(_mm256_sub_ps(_mm256_loadu_ps(p), mv)));
            }
            i += 8;
        }
        super::scalar::exp_sub(&mut x[i..], m);
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    fn sum_f32_impl(x: &[f32]) -> f32 {
        let n = x.len();
        let mut acc = [_mm256_setzero_ps(); 4];
        let mut i = 0;
        while i + 32 <= n {
            for (k, acc) in acc.iter_mut().enumerate() {
                // SAFETY: i + 8k + 8 <= n.
                *acc = _mm256_add_ps(*acc, unsafe { _mm256_loadu_ps(x.as_ptr().add(i + 8 * k)) });
            }
            i += 32;
        }
        let s = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
        hsum_ps(s) + x[i..].iter().sum::<f32>()
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    fn dot_f16_impl(a: &[u16], b: &[f32]) -> f32 {
        let n = a.len().min(b.len());
        let (a, b) = (&a[..n], &b[..n]);
        let mut acc = [_mm256_setzero_ps(); 4];
        let mut i = 0;
        while i + 32 <= n {
            for (k, acc) in acc.iter_mut().enumerate() {
                let j = i + 8 * k;
                // SAFETY: j + 8 <= n for both slices.
                unsafe {
                    let x = _mm256_cvtph_ps(_mm_loadu_si128(a.as_ptr().add(j) as *const __m128i));
                    let y = _mm256_loadu_ps(b.as_ptr().add(j));
                    *acc = _mm256_fmadd_ps(x, y, *acc);
                }
            }
            i += 32;
        }
        while i + 8 <= n {
            // SAFETY: i + 8 <= n.
            unsafe {
                let x = _mm256_cvtph_ps(_mm_loadu_si128(a.as_ptr().add(i) as *const __m128i));
                let y = _mm256_loadu_ps(b.as_ptr().add(i));
                acc[0] = _mm256_fmadd_ps(x, y, acc[0]);
            }
            i += 8;
        }
        let s = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
        let mut sum = hsum_ps(s);
        for j in i..n {
            sum += f16_to_f32(a[j]) * b[j];
        }
        sum
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    fn axpy_f16_impl(y: &mut [f32], alpha: f32, x: &[u16]) {
        let n = y.len().min(x.len());
        let av = _mm256_set1_ps(alpha);
        let mut i = 0;
        while i + 8 <= n {
            // SAFETY: i + 8 <= n for both slices.
            unsafe {
                let xv = _mm256_cvtph_ps(_mm_loadu_si128(x.as_ptr().add(i) as *const __m128i));
                let p = y.as_mut_ptr().add(i);
                _mm256_storeu_ps(p, _mm256_fmadd_ps(av, xv, _mm256_loadu_ps(p)));
            }
            i += 8;
        }
        for j in i..n {
            y[j] += alpha * f16_to_f32(x[j]);
        }
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    fn dot_f32_impl(a: &[f32], b: &[f32]) -> f32 {
        let n = a.len().min(b.len());
        let mut acc = [_mm256_setzero_ps(); 4];
        let mut i = 0;
        while i + 32 <= n {
            for (k, acc) in acc.iter_mut().enumerate() {
                let j = i + 8 * k;
                // SAFETY: j + 8 <= n for both slices.
                unsafe {
                    let x = _mm256_loadu_ps(a.as_ptr().add(j));
                    let y = _mm256_loadu_ps(b.as_ptr().add(j));
                    *acc = _mm256_fmadd_ps(x, y, *acc);
                }
            }
            i += 32;
        }
        while i + 8 <= n {
            // SAFETY: i + 8 <= n.
            unsafe {
                let x = _mm256_loadu_ps(a.as_ptr().add(i));
                let y = _mm256_loadu_ps(b.as_ptr().add(i));
                acc[0] = _mm256_fmadd_ps(x, y, acc[0]);
            }
            i += 8;
        }
        let s = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
        let mut sum = hsum_ps(s);
        for j in i..n {
            sum += a[j] * b[j];
        }
        sum
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    fn axpy_f32_impl(y: &mut [f32], alpha: f32, x: &[f32]) {
        let n = y.len().min(x.len());
        let av = _mm256_set1_ps(alpha);
        let mut i = 0;
        while i + 8 <= n {
            // SAFETY: i + 8 <= n for both slices.
            unsafe {
                let xv = _mm256_loadu_ps(x.as_ptr().add(i));
                let p = y.as_mut_ptr().add(i);
                _mm256_storeu_ps(p, _mm256_fmadd_ps(av, xv, _mm256_loadu_ps(p)));
            }
            i += 8;
        }
        for j in i..n {
            y[j] += alpha * x[j];
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::quant::f32_to_f16;

    /// `n` test values in [-1, 1], a different run for each seed.
    pub(crate) fn data(n: usize, seed: u32) -> Vec<f32> {
        (0..n)
            .map(|i| {
                let h = (i as u32).wrapping_mul(2654435761).wrapping_add(seed) >> 8;
                (h % 2001) as f32 / 1000.0 - 1.0
            })
            .collect()
    }

    /// Every level this CPU supports against the scalar twin, on lengths that exercise the
    /// 32-, 8- and 1-wide loops.
    #[test]
    fn simd_kernels_match_their_scalar_twins() {
        for level in CpuLevel::supported() {
            let k = kernels_for(level);
            for n in [0usize, 1, 7, 8, 31, 32, 33, 64, 100, 256, 1000] {
                let a = data(n, 1);
                let b = data(n, 2);
                let h: Vec<u16> = a.iter().map(|&x| f32_to_f16(x)).collect();
                let tol = 1e-5 * (n as f32 + 1.0);
                let (d0, d1) = ((k.dot_f16)(&h, &b), scalar::dot_f16(&h, &b));
                assert!(
                    (d0 - d1).abs() <= tol,
                    "{level:?} dot_f16 n={n}: {d0} vs {d1}"
                );
                let (s0, s1) = ((k.sum_f32)(&a), scalar::sum_f32(&a));
                assert!(
                    (s0 - s1).abs() <= tol,
                    "{level:?} sum_f32 n={n}: {s0} vs {s1}"
                );
                let (d0, d1) = ((k.dot_f32)(&a, &b), scalar::dot_f32(&a, &b));
                assert!(
                    (d0 - d1).abs() <= tol,
                    "{level:?} dot_f32 n={n}: {d0} vs {d1}"
                );
                let mut y0 = b.clone();
                let mut y1 = b.clone();
                (k.axpy_f16)(&mut y0, 0.37, &h);
                scalar::axpy_f16(&mut y1, 0.37, &h);
                for (i, (p, q)) in y0.iter().zip(&y1).enumerate() {
                    assert!((p - q).abs() <= 1e-6, "{level:?} axpy_f16 n={n} [{i}]");
                }
                let mut y0 = b.clone();
                let mut y1 = b.clone();
                (k.axpy_f32)(&mut y0, -1.5, &a);
                scalar::axpy_f32(&mut y1, -1.5, &a);
                for (i, (p, q)) in y0.iter().zip(&y1).enumerate() {
                    assert!((p - q).abs() <= 1e-6, "{level:?} axpy_f32 n={n} [{i}]");
                }
            }
        }
    }

    /// (row length, stride, rows) of the row kernels' tests: lengths with and without the
    /// 64-, 8- and 1-wide remainders, strides wider than the rows.
    const ROW_CASES: &[(usize, usize, usize)] =
        &[(256, 256, 37), (64, 96, 5), (100, 130, 9), (7, 7, 3)];

    /// `n` values of [`data`] rounded to f16.
    pub(crate) fn f16_data(n: usize, seed: u32) -> Vec<u16> {
        data(n, seed).iter().map(|&v| f32_to_f16(v)).collect()
    }

    /// axpy_rows_f16 gives, at every level, the bits of one axpy_f16 per row (lengths with
    /// and without the 64-, 8- and 1-wide remainders, strides wider than the rows).
    #[test]
    fn axpy_rows_f16_is_axpy_f16_row_by_row() {
        for level in CpuLevel::supported() {
            let k = kernels_for(level);
            for &(n, stride, rows) in ROW_CASES.iter().chain(&[(64, 64, 0)]) {
                let x = f16_data(stride * rows.max(1), 9);
                let w = data(rows, 11);
                let mut want = data(n, 12);
                let mut got = want.clone();
                for (c, &wc) in w.iter().enumerate() {
                    (k.axpy_f16)(&mut want, wc, &x[c * stride..c * stride + n]);
                }
                (k.axpy_rows_f16)(&mut got, &w, &x, stride);
                assert_eq!(
                    got.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                    want.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                    "{level:?} n={n} stride={stride} rows={rows}"
                );
            }
        }
    }

    /// dot_rows_f16 gives, at every level, the bits of one dot_f16 per row.
    #[test]
    fn dot_rows_f16_is_dot_f16_row_by_row() {
        for level in CpuLevel::supported() {
            let k = kernels_for(level);
            for &(n, stride, rows) in ROW_CASES {
                let x = f16_data(stride * rows, 13);
                let q = data(n, 14);
                let want: Vec<u32> = (0..rows)
                    .map(|c| (k.dot_f16)(&x[c * stride..c * stride + n], &q).to_bits())
                    .collect();
                let mut got = vec![0.0f32; rows];
                (k.dot_rows_f16)(&mut got, &q, &x, stride);
                let got: Vec<u32> = got.iter().map(|v| v.to_bits()).collect();
                assert_eq!(got, want, "{level:?} n={n} stride={stride} rows={rows}");
            }
        }
    }

    /// geglu_table: SIMD and scalar give the same bits for every f16-representable argument
    /// and values between them (rounding ties, subnormals, the +-10 ends, infinities, NaN).
    #[test]
    fn geglu_table_matches_its_twin() {
        // Any table will do: a hash of the index.
        let table: Box<[u16; 65536]> = (0..=u16::MAX)
            .map(|h| (u32::from(h).wrapping_mul(2654435761) >> 16) as u16 & 0x7bff)
            .collect::<Vec<u16>>()
            .try_into()
            .unwrap();
        let mut g: Vec<f32> = (0..=u16::MAX).map(crate::quant::f16_to_f32).collect();
        // Midpoints (ties) and near-midpoints between neighbouring f16 values.
        for h in (0..0x7bffu16).step_by(7) {
            let (a, b) = (crate::quant::f16_to_f32(h), crate::quant::f16_to_f32(h + 1));
            let m = (a + b) / 2.0;
            g.extend([
                m,
                -m,
                f32::from_bits(m.to_bits() + 1),
                -f32::from_bits(m.to_bits() - 1),
            ]);
        }
        g.extend([
            -10.0,
            10.0,
            -9.999999,
            9.999999,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NAN,
        ]);
        let u = data(g.len(), 15);
        let mut want = vec![0.0f32; g.len()];
        scalar::geglu_table(&g, &u, &mut want, &table);
        for level in CpuLevel::supported() {
            let mut got = vec![0.0f32; g.len()];
            (kernels_for(level).geglu_table)(&g, &u, &mut got, &table);
            for (i, (a, b)) in got.iter().zip(&want).enumerate() {
                assert!(
                    a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan()),
                    "{level:?} [{i}] g={}: {a} vs {b}",
                    g[i]
                );
            }
        }
    }

    /// exp_sub: SIMD and scalar give the same bits (NaN, infinities and the clamped ends
    /// included), within a few ulp of the f64 exponential.
    #[test]
    fn exp_sub_matches_its_twin_and_the_definition() {
        let mut x = data(1001, 5).iter().map(|v| v * 40.0).collect::<Vec<_>>();
        x.extend([
            0.0,
            -0.0,
            200.0,
            -200.0,
            f32::NAN,
            f32::INFINITY,
            f32::NEG_INFINITY,
        ]);
        let m = 3.25f32;
        let mut want = x.clone();
        scalar::exp_sub(&mut want, m);
        for level in CpuLevel::supported() {
            let mut got = x.clone();
            (kernels_for(level).exp_sub)(&mut got, m);
            for (i, (a, b)) in got.iter().zip(&want).enumerate() {
                assert!(
                    a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan()),
                    "{level:?} [{i}] x={}: {a} vs {b}",
                    x[i]
                );
            }
        }
        for (&v, &w) in x.iter().zip(&want) {
            // The argument as the kernels round it (f32 subtraction).
            let d = f64::from(v - m);
            if !d.is_finite() || !(-80.0..=80.0).contains(&d) {
                continue;
            }
            let exact = d.exp();
            assert!(
                (f64::from(w) - exact).abs() <= 4e-7 * exact,
                "exp({d}) = {w}, want {exact}"
            );
        }
    }

    /// swiglu: SIMD and scalar give the same bits (NaN and the clamped ends included), and
    /// the result is within a few ulp of the f64 definition.
    #[test]
    fn swiglu_matches_its_twin_and_the_definition() {
        let mut g = data(1000, 3).iter().map(|x| x * 30.0).collect::<Vec<_>>();
        g.extend([
            0.0,
            -0.0,
            100.0,
            -100.0,
            88.5,
            -87.5,
            f32::NAN,
            f32::INFINITY,
        ]);
        g.extend([f32::NEG_INFINITY, 1e-30, -1e-30]);
        let u = data(g.len(), 4);
        let mut want = vec![0.0f32; g.len()];
        scalar::swiglu(&g, &u, &mut want);
        for level in CpuLevel::supported() {
            let mut got = vec![0.0f32; g.len()];
            (kernels_for(level).swiglu)(&g, &u, &mut got);
            for (i, (a, b)) in got.iter().zip(&want).enumerate() {
                assert!(
                    a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan()),
                    "{level:?} [{i}] g={}: {a} vs {b}",
                    g[i]
                );
            }
        }
        for (i, (&x, (&y, &w))) in g.iter().zip(u.iter().zip(&want)).enumerate() {
            if !x.is_finite() || x.abs() > 80.0 {
                continue;
            }
            let exact = (f64::from(x) / (1.0 + (-f64::from(x)).exp())) * f64::from(y);
            let err = (f64::from(w) - exact).abs();
            assert!(
                err <= 1e-6 * exact.abs() + 1e-30,
                "[{i}] x={x}: {w} vs {exact}"
            );
        }
        assert!(want[g.len() - 5].is_nan());
    }

    /// The scalar twins against values computed by hand.
    #[test]
    fn scalar_kernels_compute_the_definition() {
        let h: Vec<u16> = [1.0f32, 2.0, -0.5].iter().map(|&x| f32_to_f16(x)).collect();
        assert_eq!(scalar::dot_f16(&h, &[3.0, 0.25, 4.0]), 3.0 + 0.5 - 2.0);
        let mut y = vec![1.0, 1.0, 1.0];
        scalar::axpy_f16(&mut y, 2.0, &h);
        assert_eq!(y, vec![3.0, 5.0, 0.0]);
    }
}
