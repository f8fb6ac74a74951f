//! Activations quantized once per matmul to the weight type's `vec_dot_type`
//! (ggml's `type_traits_cpu`), kept in a structure-of-arrays layout the
//! kernels read directly: quants contiguous per token, block scales already
//! converted to f32.
//!
//! The scalar path runs the crate's reference quantizers
//! ([`crate::quant`]); the AVX2 path is its twin, bit-identical for finite
//! input (tested), so every kernel level sees the same quantized activations.

use crate::cpu::CpuLevel;
use crate::pool::{split_range, SharedMut, ThreadPool};
use crate::quant::k_quants::quantize_q8_k;
use crate::quant::{f16_to_f32, f32_to_bf16, f32_to_f16, f32_to_f16_ggml};
use hearth_gguf::QK_K;

/// The activation format a weight type's kernels take.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ActKind {
    /// `block_q8_0`: 32 quants, f16 scale (`qs`, `d`).
    Q8_0,
    /// `block_q8_1`: as Q8_0 plus `s = d * sum(qs)` in f16 (`qs`, `d`, `s`).
    Q8_1,
    /// `block_q8_K`: 256 quants, f32 scale, sums of 16 (`qs`, `d`, `bsums`).
    Q8K,
    /// f16 bits (`h`).
    F16,
    /// bf16 bits (`h`).
    BF16,
    /// The f32 input itself (`f`).
    F32,
}

impl ActKind {
    /// Values per block.
    pub(crate) fn block(self) -> usize {
        match self {
            ActKind::Q8_0 | ActKind::Q8_1 => 32,
            ActKind::Q8K => QK_K,
            ActKind::F16 | ActKind::BF16 | ActKind::F32 => 1,
        }
    }
}

/// `n_tokens` rows of `ne0` activations in [`ActKind`] form.
pub(crate) struct Acts<'x> {
    pub(crate) kind: ActKind,
    pub(crate) n_tokens: usize,
    pub(crate) ne0: usize,
    /// Blocks per token (`ne0 / kind.block()`).
    pub(crate) nb: usize,
    /// Quants, `ne0` per token (Q8 kinds).
    pub(crate) qs: Vec<i8>,
    /// Block scales as f32, `nb` per token (Q8 kinds).
    pub(crate) d: Vec<f32>,
    /// Q8_1 `s` as f32, `nb` per token.
    pub(crate) s: Vec<f32>,
    /// Q8_K sums of 16 quants, `16 * nb` per token.
    pub(crate) bsums: Vec<i16>,
    /// f16/bf16 bits, `ne0` per token.
    pub(crate) h: Vec<u16>,
    /// The input (F32 kind).
    pub(crate) f: &'x [f32],
}

impl<'x> Acts<'x> {
    /// Quantizes `x` (`n_tokens * ne0` values; `ne0` a multiple of the
    /// kind's block) with `level`'s quantizer, on `pool`'s threads when there
    /// are enough tokens to share.
    pub(crate) fn quantize(
        kind: ActKind,
        x: &'x [f32],
        n_tokens: usize,
        ne0: usize,
        level: CpuLevel,
        pool: Option<&ThreadPool>,
    ) -> Acts<'x> {
        debug_assert_eq!(x.len(), n_tokens * ne0);
        debug_assert_eq!(ne0 % kind.block(), 0);
        let nb = ne0 / kind.block();
        let n = n_tokens * ne0;
        let nbt = n_tokens * nb;
        let (qs_len, d_len, s_len, bs_len, h_len) = match kind {
            ActKind::Q8_0 => (n, nbt, 0, 0, 0),
            ActKind::Q8_1 => (n, nbt, nbt, 0, 0),
            ActKind::Q8K => (n, nbt, 0, nbt * (QK_K / 16), 0),
            ActKind::F16 | ActKind::BF16 => (0, 0, 0, 0, n),
            ActKind::F32 => (0, 0, 0, 0, 0),
        };
        let mut acts = Acts {
            kind,
            n_tokens,
            ne0,
            nb,
            qs: vec![0; qs_len],
            d: vec![0.0; d_len],
            s: vec![0.0; s_len],
            bsums: vec![0; bs_len],
            h: vec![0; h_len],
            f: x,
        };
        if kind == ActKind::F32 {
            return acts;
        }
        let bs16 = if kind == ActKind::Q8K { QK_K / 16 } else { 0 };
        let parts = Parts {
            qs: SharedMut::new(&mut acts.qs),
            d: SharedMut::new(&mut acts.d),
            s: SharedMut::new(&mut acts.s),
            bsums: SharedMut::new(&mut acts.bsums),
            h: SharedMut::new(&mut acts.h),
        };
        let do_tokens = |t0: usize, t1: usize| {
            let nt = t1 - t0;
            let (qn, dn, sn, bn, hn) = (
                if qs_len > 0 { ne0 } else { 0 },
                if d_len > 0 { nb } else { 0 },
                if s_len > 0 { nb } else { 0 },
                nb * bs16,
                if h_len > 0 { ne0 } else { 0 },
            );
            // SAFETY: token ranges of different calls are disjoint (split_range),
            // so are these slices.
            let out = unsafe {
                ActRowsMut {
                    qs: parts.qs.slice(t0 * qn, nt * qn),
                    d: parts.d.slice(t0 * dn, nt * dn),
                    s: parts.s.slice(t0 * sn, nt * sn),
                    bsums: parts.bsums.slice(t0 * bn, nt * bn),
                    h: parts.h.slice(t0 * hn, nt * hn),
                }
            };
            quantize_rows(kind, level, &x[t0 * ne0..t1 * ne0], out);
        };
        // Quantizing costs about a hundredth of the matmul; share it only
        // when each thread gets a few tokens.
        match pool {
            Some(pool) if pool.n_threads() > 1 && n_tokens >= 4 * pool.n_threads() => {
                pool.run_parts(2 * pool.n_threads(), |i, nt| {
                    let (a, b) = split_range(n_tokens, nt, i, 1);
                    if a < b {
                        do_tokens(a, b);
                    }
                });
            }
            _ => do_tokens(0, n_tokens),
        }
        acts
    }

    /// Quants of token `t`.
    #[inline]
    pub(crate) fn qs_row(&self, t: usize) -> &[i8] {
        &self.qs[t * self.ne0..(t + 1) * self.ne0]
    }

    /// Block scales of token `t`.
    #[inline]
    pub(crate) fn d_row(&self, t: usize) -> &[f32] {
        &self.d[t * self.nb..(t + 1) * self.nb]
    }

    /// Q8_1 `s` of token `t`.
    #[inline]
    pub(crate) fn s_row(&self, t: usize) -> &[f32] {
        &self.s[t * self.nb..(t + 1) * self.nb]
    }

    /// Q8_K sums of token `t` (16 per block).
    #[inline]
    pub(crate) fn bsums_row(&self, t: usize) -> &[i16] {
        let n = self.nb * (QK_K / 16);
        &self.bsums[t * n..(t + 1) * n]
    }

    /// f16/bf16 bits of token `t`.
    #[inline]
    pub(crate) fn h_row(&self, t: usize) -> &[u16] {
        &self.h[t * self.ne0..(t + 1) * self.ne0]
    }

    /// f32 values of token `t`.
    #[inline]
    pub(crate) fn f_row(&self, t: usize) -> &[f32] {
        &self.f[t * self.ne0..(t + 1) * self.ne0]
    }
}

struct Parts<'a> {
    qs: SharedMut<'a, i8>,
    d: SharedMut<'a, f32>,
    s: SharedMut<'a, f32>,
    bsums: SharedMut<'a, i16>,
    h: SharedMut<'a, u16>,
}

/// Output slices for some whole tokens (empty where the kind has no such field).
pub(crate) struct ActRowsMut<'a> {
    pub(crate) qs: &'a mut [i8],
    pub(crate) d: &'a mut [f32],
    pub(crate) s: &'a mut [f32],
    pub(crate) bsums: &'a mut [i16],
    pub(crate) h: &'a mut [u16],
}

/// Quantizes whole tokens `x` into `out` with `level`'s code.
pub(crate) fn quantize_rows(kind: ActKind, level: CpuLevel, x: &[f32], out: ActRowsMut<'_>) {
    #[cfg(target_arch = "x86_64")]
    if level >= CpuLevel::Avx2 {
        // SAFETY: `level` is only ever a level this CPU supports (QMatrix
        // checks it against the detected level), so AVX2+FMA+F16C are present.
        unsafe { super::x86_avx2::quantize_rows(kind, x, out) };
        return;
    }
    let _ = level;
    quantize_rows_scalar(kind, x, out);
}

/// One block of 32 activations as ggml's CPU backend quantizes them at run time
/// (`quantize_row_q8_0` / `quantize_row_q8_1` in `ggml-cpu/arch/x86/quants.c`): the scale is
/// `amax / 127`, the values are multiplied by `127 / amax` and rounded half to even. (The
/// reference quantizer `quantize_row_q8_0_ref`, which the file-format code follows, multiplies
/// by `1 / d` and rounds half away from zero; the two differ by one step in rare values, which
/// is enough to move a product by a visible amount when activations are large.) Returns the
/// unrounded scale and the sum of the quants.
pub(crate) fn q8_act_block(x: &[f32], qs: &mut [i8]) -> (f32, i32) {
    let amax = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let d = amax / 127.0;
    let id = if amax != 0.0 { 127.0 / amax } else { 0.0 };
    let mut sum = 0i32;
    for (q, &v) in qs.iter_mut().zip(x) {
        let r = (v * id).round_ties_even() as i32;
        *q = r as i8;
        sum += r;
    }
    (d, sum)
}

/// ggml's run-time activation quantizers ([`q8_act_block`] for Q8_0/Q8_1, the reference
/// `quantize_row_q8_K_ref` for Q8_K, which x86 also uses), block by block.
pub(crate) fn quantize_rows_scalar(kind: ActKind, x: &[f32], out: ActRowsMut<'_>) {
    match kind {
        ActKind::Q8_0 => {
            for ((x, qs), d) in x
                .chunks_exact(32)
                .zip(out.qs.chunks_exact_mut(32))
                .zip(out.d)
            {
                let (dv, _) = q8_act_block(x, qs);
                *d = f16_to_f32(f32_to_f16(dv));
            }
        }
        ActKind::Q8_1 => {
            for (((x, qs), d), s) in x
                .chunks_exact(32)
                .zip(out.qs.chunks_exact_mut(32))
                .zip(out.d)
                .zip(out.s)
            {
                let (dv, sum) = q8_act_block(x, qs);
                *d = f16_to_f32(f32_to_f16_ggml(dv));
                *s = f16_to_f32(f32_to_f16_ggml(sum as f32 * dv));
            }
        }
        ActKind::Q8K => {
            for (((x, qs), d), bs) in x
                .chunks_exact(QK_K)
                .zip(out.qs.chunks_exact_mut(QK_K))
                .zip(out.d)
                .zip(out.bsums.chunks_exact_mut(QK_K / 16))
            {
                let b = quantize_q8_k(x);
                qs.copy_from_slice(&b.qs);
                *d = b.d;
                bs.copy_from_slice(&b.bsums);
            }
        }
        ActKind::F16 => {
            for (h, &v) in out.h.iter_mut().zip(x) {
                *h = f32_to_f16(v);
            }
        }
        ActKind::BF16 => {
            for (h, &v) in out.h.iter_mut().zip(x) {
                *h = f32_to_bf16(v);
            }
        }
        ActKind::F32 => {}
    }
}

#[cfg(test)]
mod tests {
    use super::q8_act_block;

    /// ggml's run-time quantizer rounds `x * 127 / amax` half to even: with `amax = 127` the
    /// values are their own quants, and 2.5 / -6.5 / 0.5 go to 2 / -6 / 0 (the reference
    /// quantizer, rounding half away from zero, would give 3 / -7 / 1).
    #[test]
    fn run_time_q8_quantizer_rounds_half_to_even() {
        let mut x = [0.0f32; 32];
        x[0] = 127.0;
        x[1] = 2.5;
        x[2] = -6.5;
        x[3] = 0.5;
        x[4] = 3.5;
        let mut qs = [0i8; 32];
        let (d, sum) = q8_act_block(&x, &mut qs);
        assert_eq!(d, 1.0);
        assert_eq!(&qs[..5], &[127, 2, -6, 0, 4]);
        assert_eq!(sum, 127 + 2 - 6 + 4);
    }
}
