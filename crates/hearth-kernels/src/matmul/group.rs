//! Row-group kernels for the 32-weight block types with signed 8-bit values after unpacking
//! (Q4_0, Q5_0, Q8_0, IQ4_NL) times Q8_0 activations.
//!
//! A group of up to [`GROUP`] weight rows is unpacked once into int8 values and f32 block
//! scales ([`GroupScratch`]), then every token of the batch is multiplied with all rows of the
//! group at once: one activation block is loaded once for the eight rows, the eight integer
//! block sums are reduced into one vector, and the block's float work (scale and fused
//! multiply-add) is done for the eight rows together. The unpacking is shared by all tokens,
//! which is what makes prompt processing fast.
//!
//! The numerics are fixed per row, independent of the group and of the tokens: for every block
//! `b` in order, `acc = fma(d_w[b] * d_x[b], float(sum_i q_w[i] * q_x[i]), acc)` with the
//! integer block sum exact. The scalar twin computes exactly that, so SIMD and scalar results
//! are bit-identical, and decode and prefill give the same bits.

#![allow(unsafe_code)]

use hearth_gguf::GgmlType;

use super::act::Acts;
use crate::quant::f16_to_f32;
use crate::quant::iq_grids::KVALUES_IQ4NL;

/// Rows per group.
pub(crate) const GROUP: usize = 8;

/// A group of rows unpacked: `q[(b * GROUP + r) * 32 ..][..32]` are the int8 weights of block
/// `b` of row `r`, `d[b * GROUP + r]` its scale (rows beyond the group's count are zero).
#[derive(Default)]
pub(crate) struct GroupScratch {
    pub(crate) q: Vec<i8>,
    pub(crate) d: Vec<f32>,
}

impl GroupScratch {
    /// Sizes the buffers for `nb` blocks and zeroes the scales of the rows from `n_rows` on
    /// (their values are then multiplied by 0, whatever an earlier group left there).
    fn prepare(&mut self, nb: usize, n_rows: usize) {
        if self.q.len() != nb * GROUP * 32 {
            self.q.clear();
            self.q.resize(nb * GROUP * 32, 0);
            self.d.clear();
            self.d.resize(nb * GROUP, 0.0);
        }
        for b in 0..nb {
            self.d[b * GROUP + n_rows.min(GROUP)..(b + 1) * GROUP].fill(0.0);
        }
    }
}

/// Whether `ty` has row-group kernels.
pub(crate) fn has_group(ty: GgmlType) -> bool {
    matches!(
        ty,
        GgmlType::Q4_0 | GgmlType::Q5_0 | GgmlType::Q8_0 | GgmlType::IQ4_NL
    )
}

/// Bytes of one block of `ty`.
fn block_bytes(ty: GgmlType) -> usize {
    match ty {
        GgmlType::Q4_0 | GgmlType::IQ4_NL => 18,
        GgmlType::Q5_0 => 22,
        _ => 34,
    }
}

/// The 32 int8 values and the scale of one block (portable).
pub(crate) fn unpack_block(ty: GgmlType, x: &[u8], q: &mut [i8]) -> f32 {
    let d = f16_to_f32(u16::from_le_bytes([x[0], x[1]]));
    match ty {
        GgmlType::Q4_0 => {
            for j in 0..16 {
                q[j] = (x[2 + j] & 0x0f) as i8 - 8;
                q[j + 16] = (x[2 + j] >> 4) as i8 - 8;
            }
        }
        GgmlType::IQ4_NL => {
            for j in 0..16 {
                q[j] = KVALUES_IQ4NL[(x[2 + j] & 0x0f) as usize];
                q[j + 16] = KVALUES_IQ4NL[(x[2 + j] >> 4) as usize];
            }
        }
        GgmlType::Q5_0 => {
            let qh = u32::from_le_bytes([x[2], x[3], x[4], x[5]]);
            for j in 0..16 {
                let lo = (x[6 + j] & 0x0f) | ((((qh >> j) & 1) as u8) << 4);
                let hi = (x[6 + j] >> 4) | ((((qh >> (j + 16)) & 1) as u8) << 4);
                q[j] = lo as i8 - 16;
                q[j + 16] = hi as i8 - 16;
            }
        }
        _ => {
            for j in 0..32 {
                q[j] = x[2 + j] as i8;
            }
        }
    }
    d
}

/// Unpacks `rows` (at most [`GROUP`], each `nb` blocks of `ty`) into `s` (portable).
pub(crate) fn unpack_group_scalar(ty: GgmlType, rows: &[&[u8]], nb: usize, s: &mut GroupScratch) {
    let bb = block_bytes(ty);
    s.prepare(nb, rows.len());
    for (r, row) in rows.iter().enumerate().take(GROUP) {
        for b in 0..nb {
            let o = (b * GROUP + r) * 32;
            s.d[b * GROUP + r] = unpack_block(ty, &row[b * bb..(b + 1) * bb], &mut s.q[o..o + 32]);
        }
    }
}

/// `out[r] = dot(row r of the group, token t)` for the [`GROUP`] rows (portable twin).
pub(crate) fn group_dot_scalar(
    s: &GroupScratch,
    acts: &Acts<'_>,
    t: usize,
    out: &mut [f32; GROUP],
) {
    let (qa, da) = (acts.qs_row(t), acts.d_row(t));
    let nb = da.len();
    for (r, o) in out.iter_mut().enumerate() {
        let mut acc = 0.0f32;
        for b in 0..nb {
            let w = &s.q[(b * GROUP + r) * 32..][..32];
            let a = &qa[b * 32..][..32];
            let isum: i32 = w
                .iter()
                .zip(a)
                .map(|(&x, &y)| i32::from(x) * i32::from(y))
                .sum();
            acc = (s.d[b * GROUP + r] * da[b]).mul_add(isum as f32, acc);
        }
        *o = acc;
    }
}

#[cfg(target_arch = "x86_64")]
pub(crate) mod avx2 {
    use std::arch::x86_64::*;

    use super::{block_bytes, GroupScratch, GROUP};
    use crate::matmul::act::Acts;
    use crate::matmul::x86_avx2::{ld, unpack_iq4_nl, unpack_q4_0, unpack_q5_0, unpack_q8_0};
    use hearth_gguf::GgmlType;

    /// AVX2 twin of [`super::unpack_group_scalar`].
    ///
    /// # Safety
    /// The CPU must support AVX2, FMA and F16C; every row must hold `nb` blocks of `ty`.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(crate) unsafe fn unpack_group(
        ty: GgmlType,
        rows: &[&[u8]],
        nb: usize,
        s: &mut GroupScratch,
    ) {
        let bb = block_bytes(ty);
        s.q.clear();
        s.q.resize(nb * GROUP * 32, 0);
        s.d.clear();
        s.d.resize(nb * GROUP, 0.0);
        for (r, row) in rows.iter().enumerate().take(GROUP) {
            assert!(row.len() >= nb * bb, "row of {nb} blocks");
            for b in 0..nb {
                let x = &row[b * bb..(b + 1) * bb];
                let (d, q) = match ty {
                    GgmlType::Q4_0 => unpack_q4_0(x),
                    GgmlType::Q5_0 => unpack_q5_0(x),
                    GgmlType::IQ4_NL => unpack_iq4_nl(x),
                    _ => unpack_q8_0(x),
                };
                let o = (b * GROUP + r) * 32;
                // SAFETY: `q` holds nb * GROUP * 32 bytes and o + 32 <= that.
                unsafe { _mm256_storeu_si256(s.q.as_mut_ptr().add(o) as *mut __m256i, q) };
                s.d[b * GROUP + r] = d;
            }
        }
    }

    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn unpack(ty: GgmlType, x: &[u8]) -> (f32, __m256i) {
        match ty {
            GgmlType::Q4_0 => unpack_q4_0(x),
            GgmlType::Q5_0 => unpack_q5_0(x),
            GgmlType::IQ4_NL => unpack_iq4_nl(x),
            _ => unpack_q8_0(x),
        }
    }

    /// The eight integer block sums of `p` (lane r = the sum of `p[r]`'s lanes), then
    /// `fma(dw * da, float(sum), acc)`.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn reduce_fma(p: &[__m256i; GROUP], dw: __m256, da: f32, acc: __m256) -> __m256 {
        let s01 = _mm256_hadd_epi32(p[0], p[1]);
        let s23 = _mm256_hadd_epi32(p[2], p[3]);
        let s45 = _mm256_hadd_epi32(p[4], p[5]);
        let s67 = _mm256_hadd_epi32(p[6], p[7]);
        let s0123 = _mm256_hadd_epi32(s01, s23);
        let s4567 = _mm256_hadd_epi32(s45, s67);
        let isum = _mm256_add_epi32(
            _mm256_permute2x128_si256::<0x20>(s0123, s4567),
            _mm256_permute2x128_si256::<0x31>(s0123, s4567),
        );
        let scale = _mm256_mul_ps(dw, _mm256_set1_ps(da));
        _mm256_fmadd_ps(scale, _mm256_cvtepi32_ps(isum), acc)
    }

    /// [`group_dot`] reading the rows in place (no scratch): for a single token, where
    /// unpacking into a scratch buffer would not be repaid. Bit-identical to it.
    ///
    /// # Safety
    /// The CPU must support AVX2, FMA and F16C; every row must hold the blocks of `acts`' rows
    /// and token `t` must exist.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(crate) unsafe fn group_dot_direct(
        ty: GgmlType,
        rows: &[&[u8]],
        acts: &Acts<'_>,
        t: usize,
        out: &mut [f32; GROUP],
    ) {
        let (qa, da) = (acts.qs_row(t), acts.d_row(t));
        let nb = da.len();
        let bb = block_bytes(ty);
        assert!(qa.len() >= nb * 32 && rows.len() <= GROUP);
        assert!(
            rows.iter().all(|r| r.len() >= nb * bb),
            "rows of {nb} blocks"
        );
        let ones = _mm256_set1_epi16(1);
        let zero = _mm256_setzero_si256();
        let mut acc = _mm256_setzero_ps();
        for (b, &dab) in da.iter().enumerate() {
            // SAFETY: bounds asserted above.
            let a = unsafe { ld(qa.as_ptr().add(32 * b) as *const u8) };
            let mut d = [0.0f32; GROUP];
            let p: [__m256i; GROUP] = std::array::from_fn(|r| match rows.get(r) {
                Some(row) => {
                    let (dw, w) = unpack(ty, &row[b * bb..(b + 1) * bb]);
                    d[r] = dw;
                    _mm256_madd_epi16(
                        _mm256_maddubs_epi16(_mm256_sign_epi8(w, w), _mm256_sign_epi8(a, w)),
                        ones,
                    )
                }
                None => zero,
            });
            // SAFETY: 8 floats.
            let dw = unsafe { _mm256_loadu_ps(d.as_ptr()) };
            acc = reduce_fma(&p, dw, dab, acc);
        }
        // SAFETY: 8 floats out.
        unsafe { _mm256_storeu_ps(out.as_mut_ptr(), acc) };
    }

    /// AVX2 twin of [`super::group_dot_scalar`] (bit-identical).
    ///
    /// # Safety
    /// The CPU must support AVX2, FMA and F16C; `s` must hold the blocks of `acts`' rows and
    /// token `t` must exist.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(crate) unsafe fn group_dot(
        s: &GroupScratch,
        acts: &Acts<'_>,
        t: usize,
        out: &mut [f32; GROUP],
    ) {
        let (qa, da) = (acts.qs_row(t), acts.d_row(t));
        let nb = da.len();
        assert!(s.q.len() >= nb * GROUP * 32 && s.d.len() >= nb * GROUP && qa.len() >= nb * 32);
        let ones = _mm256_set1_epi16(1);
        let mut acc = _mm256_setzero_ps();
        let wq = s.q.as_ptr() as *const u8;
        for (b, &dab) in da.iter().enumerate() {
            // SAFETY: bounds asserted above.
            let a = unsafe { ld(qa.as_ptr().add(32 * b) as *const u8) };
            let p: [__m256i; GROUP] = std::array::from_fn(|r| {
                // SAFETY: block b of row r lies within the asserted length.
                let w = unsafe { ld(wq.add((b * GROUP + r) * 32)) };
                _mm256_madd_epi16(
                    _mm256_maddubs_epi16(_mm256_sign_epi8(w, w), _mm256_sign_epi8(a, w)),
                    ones,
                )
            });
            // SAFETY: 8 scales at b * GROUP, within the asserted length.
            let dw = unsafe { _mm256_loadu_ps(s.d.as_ptr().add(b * GROUP)) };
            acc = reduce_fma(&p, dw, dab, acc);
        }
        // SAFETY: 8 floats out.
        unsafe { _mm256_storeu_ps(out.as_mut_ptr(), acc) };
    }
}
