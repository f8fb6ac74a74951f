//! Q6_K times Q8_K: the one-row kernel (decode), the row-group tile kernel (prompts) and
//! their scalar twin.
//!
//! A Q6_K super-block holds 256 values `q` in 0..64 (four low bits in `ql`, two high bits in
//! `qh`), weights `q - 32`, and sixteen signed 8-bit scales, one per 16 values. The numerics,
//! per row and token: the exact integer sum `I = sum_g sc_g * sum_l (q - 32) * a` of each
//! super-block, then `acc = fma(d * d_a, I, acc)` in block order. Every kernel here computes
//! exactly that, so SIMD and scalar, decode and prefill give the same bits.
//!
//! The SIMD kernels multiply the unsigned `q` (`maddubs`) and subtract
//! `32 * sum_g sc_g * bsum_g` with the activations' 16-value sums.

#![allow(unsafe_code)]

use super::act::Acts;
use crate::quant::f16_to_f32;

/// Bytes of a Q6_K block.
pub(crate) const Q6K_BYTES: usize = 210;

/// Value `k` (0..256) of a Q6_K block, unsigned (0..64).
#[inline]
fn q6(x: &[u8], k: usize) -> u8 {
    // k = 128c + 32s + l: nibble s/2 of ql[64c + 32(s%2) + l], bits 2s of qh[32c + l].
    let (c, s, l) = (k / 128, (k % 128) / 32, k % 32);
    let low = (x[64 * c + 32 * (s % 2) + l] >> (4 * (s / 2))) & 0x0f;
    let high = (x[128 + 32 * c + l] >> (2 * s)) & 3;
    low | (high << 4)
}

/// `dot(row, token t)` for Q6_K (portable twin of the kernels below).
pub(crate) fn k6_row_dot_scalar(row: &[u8], acts: &Acts<'_>, t: usize) -> f32 {
    let (qa, da) = (acts.qs_row(t), acts.d_row(t));
    let mut acc = 0.0f32;
    for (b, &yd) in da.iter().enumerate() {
        let x = &row[b * Q6K_BYTES..(b + 1) * Q6K_BYTES];
        let d = f16_to_f32(u16::from_le_bytes([x[208], x[209]]));
        let mut isum = 0i32;
        for g in 0..16 {
            let gsum: i32 = (16 * g..16 * g + 16)
                .map(|k| (i32::from(q6(x, k)) - 32) * i32::from(qa[256 * b + k]))
                .sum();
            isum += i32::from(x[192 + g] as i8) * gsum;
        }
        acc = (d * yd).mul_add(isum as f32, acc);
    }
    acc
}

/// A group of up to [`GROUP`](super::group::GROUP) Q6_K rows unpacked for
/// [`avx2::k6_group_tile`], per 32-value chunk `ch = b * 8 + c` of super-block `b` (sub-blocks
/// `2c` and `2c + 1`):
/// - `qi[(ch * 8 + k) * 32..]`: values 4k..4k + 4 (0..64) of the chunk of rows 0..8;
/// - `sc[(b * 16 + g) * 16 + 2r]` and `[.. + 1]`: row r's scale of sub-block g;
/// - `scp[(b * 8 + p) * 16 + 2r + i]`: row r's scale of sub-block `2p + i`;
/// - `d[b * 8 + r]`: the super-block scale.
#[derive(Default)]
pub(crate) struct K6Group {
    pub(crate) q: Vec<u8>,
    pub(crate) qi: Vec<u8>,
    pub(crate) sc: Vec<i16>,
    pub(crate) scp: Vec<i16>,
    pub(crate) d: Vec<f32>,
}

#[cfg(target_arch = "x86_64")]
pub(crate) mod avx2 {
    use std::arch::x86_64::*;

    use super::{K6Group, Q6K_BYTES};
    use crate::matmul::act::Acts;
    use crate::matmul::group::{avx2::interleave_chunks, GROUP};
    use crate::matmul::tile::{TilePrep, TILE};
    use crate::matmul::x86_avx2::{f16c, ld, ld128, pair_i16, split_scales16, srl16};

    /// The 256 unsigned values of a Q6_K block as eight vectors of 32 (chunk `4c + s` holds
    /// values `128c + 32s ..`).
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(crate) fn unpack_values(x: &[u8; Q6K_BYTES]) -> [__m256i; 8] {
        let m4 = _mm256_set1_epi8(0x0f);
        let m2 = _mm256_set1_epi8(3);
        let mut out = [_mm256_setzero_si256(); 8];
        for c in 0..2 {
            // SAFETY: ql 64c..64c+64 and qh 128+32c..+32 of the 210-byte block.
            let (ql0, ql1, qh) = unsafe {
                (
                    ld(x.as_ptr().add(64 * c)),
                    ld(x.as_ptr().add(64 * c + 32)),
                    ld(x.as_ptr().add(128 + 32 * c)),
                )
            };
            let high = |n: u32| _mm256_slli_epi16::<4>(_mm256_and_si256(srl16(qh, n), m2));
            out[4 * c] = _mm256_or_si256(_mm256_and_si256(ql0, m4), high(0));
            out[4 * c + 1] = _mm256_or_si256(_mm256_and_si256(ql1, m4), high(2));
            out[4 * c + 2] =
                _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16::<4>(ql0), m4), high(4));
            out[4 * c + 3] =
                _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16::<4>(ql1), m4), high(6));
        }
        out
    }

    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn hsum_i32(v: __m256i) -> i32 {
        let s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256::<1>(v));
        let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b01_00_11_10>(s));
        let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b10_11_00_01>(s));
        _mm_cvtsi128_si32(s)
    }

    /// One Q6_K row read in place against token `t` (decode): bit-identical to
    /// [`super::k6_row_dot_scalar`].
    ///
    /// # Safety
    /// The CPU must support AVX2, FMA and F16C; `row` must hold the blocks of `acts`' rows;
    /// token `t` must exist.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(crate) unsafe fn k6_row_dot_direct(row: &[u8], acts: &Acts<'_>, t: usize) -> f32 {
        let (qa, da, bs) = (acts.qs_row(t), acts.d_row(t), acts.bsums_row(t));
        let nb = da.len();
        assert!(qa.len() >= nb * 256 && bs.len() >= nb * 16 && row.len() >= nb * Q6K_BYTES);
        let mut acc = 0.0f32;
        for (b, &yd) in da.iter().enumerate() {
            let x: &[u8; Q6K_BYTES] = row[b * Q6K_BYTES..(b + 1) * Q6K_BYTES]
                .try_into()
                .expect("block");
            // SAFETY: bytes 192..208 (scales) of the block; 16 bsums of super-block b.
            let (sc16, bsv) = unsafe {
                (
                    _mm256_cvtepi8_epi16(ld128(x.as_ptr().add(192))),
                    _mm256_loadu_si256(bs.as_ptr().add(16 * b) as *const __m256i),
                )
            };
            let sc = split_scales16(sc16);
            // sum((q - 32) * a) = sum(q * a) - 32 * sum(sc * bsums).
            let mut sumi = _mm256_sub_epi32(
                _mm256_setzero_si256(),
                _mm256_slli_epi32::<5>(_mm256_madd_epi16(bsv, sc16)),
            );
            for (cs, q) in unpack_values(x).iter().enumerate() {
                // SAFETY: quants 256b + 32cs .. +32 of the token (length asserted above).
                let a = unsafe { ld(qa.as_ptr().add(256 * b + 32 * cs) as *const u8) };
                let scv = pair_i16(sc[cs / 4], cs % 4);
                sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(_mm256_maddubs_epi16(*q, a), scv));
            }
            let d = f16c(u16::from_le_bytes([x[208], x[209]]));
            acc = (d * yd).mul_add(hsum_i32(sumi) as f32, acc);
        }
        acc
    }

    /// Unpacks `rows` (at most [`GROUP`] rows of `nb` Q6_K blocks) into `s`.
    ///
    /// # Safety
    /// The CPU must support AVX2, FMA and F16C.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(crate) unsafe fn k6_unpack_group(rows: &[&[u8]], nb: usize, s: &mut K6Group) {
        let n_ch = nb * 8;
        s.q.resize(n_ch * GROUP * 32, 0);
        s.qi.resize(n_ch * GROUP * 32, 0);
        s.sc.resize(nb * 16 * 16, 0);
        s.scp.resize(nb * 8 * 16, 0);
        s.d.resize(nb * GROUP, 0.0);
        for (r, row) in rows.iter().enumerate().take(GROUP) {
            assert!(row.len() >= nb * Q6K_BYTES, "row of {nb} blocks");
            for b in 0..nb {
                let x: &[u8; Q6K_BYTES] = row[b * Q6K_BYTES..(b + 1) * Q6K_BYTES]
                    .try_into()
                    .expect("block");
                s.d[b * GROUP + r] = f16c(u16::from_le_bytes([x[208], x[209]]));
                for g in 0..16 {
                    let sc = i16::from(x[192 + g] as i8);
                    let o = (b * 16 + g) * 16 + 2 * r;
                    s.sc[o] = sc;
                    s.sc[o + 1] = sc;
                    s.scp[(b * 8 + g / 2) * 16 + 2 * r + g % 2] = sc;
                }
                for (c, v) in unpack_values(x).iter().enumerate() {
                    let o = ((b * 8 + c) * GROUP + r) * 32;
                    // SAFETY: o + 32 <= n_ch * GROUP * 32.
                    unsafe { _mm256_storeu_si256(s.q.as_mut_ptr().add(o) as *mut __m256i, *v) };
                }
            }
        }
        interleave_chunks(&s.q, &mut s.qi, n_ch);
    }

    /// `out[j][r] = dot(row r of the group, token prep.t[j])` for Q6_K rows unpacked by
    /// [`k6_unpack_group`] (bit-identical to [`super::k6_row_dot_scalar`]).
    ///
    /// Lane r holds row r: two `maddubs` of the interleaved values with the token's broadcast
    /// values are added in 16 bits (`2 * 2 * 63 * 128` fits), then widened and scaled by one
    /// `madd` with the rows' scales of the sub-block.
    ///
    /// # Safety
    /// The CPU must support AVX2, FMA and F16C; `prep` must be prepared from `acts`; `s` must
    /// hold rows of `acts.nb` blocks.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(crate) unsafe fn k6_group_tile(
        s: &K6Group,
        acts: &Acts<'_>,
        prep: &TilePrep,
        out: &mut [[f32; GROUP]; TILE],
    ) {
        let nb = acts.nb;
        assert!(
            s.qi.len() >= nb * 8 * GROUP * 32
                && s.sc.len() >= nb * 16 * 16
                && s.scp.len() >= nb * 8 * 16
                && s.d.len() >= nb * GROUP
                && prep.dx.len() >= nb * TILE
        );
        let (qa, bs) = (prep.act_ptrs(acts, nb * 256), prep.bsum_ptrs(acts, nb * 16));
        let (wi, sc, scp) = (s.qi.as_ptr(), s.sc.as_ptr(), s.scp.as_ptr());
        let mut acc = [_mm256_setzero_ps(); TILE];
        for b in 0..nb {
            let mut i1 = [_mm256_setzero_si256(); TILE];
            for ch in b * 8..b * 8 + 8 {
                for half in 0..2 {
                    let g = 2 * (ch - b * 8) + half;
                    // SAFETY: 16 i16 at (b * 16 + g) * 16 (asserted).
                    let scv =
                        unsafe { _mm256_loadu_si256(sc.add((b * 16 + g) * 16) as *const __m256i) };
                    for k in (4 * half..4 * half + 4).step_by(2) {
                        // SAFETY: 32 bytes at (ch * 8 + k) * 32 and the next (asserted).
                        let (w0, w1) = unsafe {
                            (
                                ld(wi.add((ch * 8 + k) * 32)),
                                ld(wi.add((ch * 8 + k + 1) * 32)),
                            )
                        };
                        for (j, i) in i1.iter_mut().enumerate() {
                            // SAFETY: 4 values at 32ch + 4k (and + 4) of a row of nb * 256.
                            let (a0, a1) = unsafe {
                                let p = qa[j].add(32 * ch + 4 * k) as *const i32;
                                (
                                    _mm256_set1_epi32(p.read_unaligned()),
                                    _mm256_set1_epi32(p.add(1).read_unaligned()),
                                )
                            };
                            let s16 = _mm256_add_epi16(
                                _mm256_maddubs_epi16(w0, a0),
                                _mm256_maddubs_epi16(w1, a1),
                            );
                            *i = _mm256_add_epi32(*i, _mm256_madd_epi16(s16, scv));
                        }
                    }
                }
            }
            // SAFETY: 8 scales at b * GROUP (asserted).
            let dv = unsafe { _mm256_loadu_ps(s.d.as_ptr().add(b * GROUP)) };
            for (j, (a, i1)) in acc.iter_mut().zip(&i1).enumerate() {
                // 32 * sum_g sc_g * bsum_g, lane r for row r.
                let mut i2 = _mm256_setzero_si256();
                for p in 0..8 {
                    // SAFETY: 16 i16 at (b * 8 + p) * 16; 2 bsums at 16b + 2p (checked).
                    let (sv, bp) = unsafe {
                        (
                            _mm256_loadu_si256(scp.add((b * 8 + p) * 16) as *const __m256i),
                            _mm256_set1_epi32(
                                (bs[j].add(16 * b + 2 * p) as *const i32).read_unaligned(),
                            ),
                        )
                    };
                    i2 = _mm256_add_epi32(i2, _mm256_madd_epi16(sv, bp));
                }
                let isum = _mm256_sub_epi32(*i1, _mm256_slli_epi32::<5>(i2));
                let yd = _mm256_set1_ps(prep.dx[b * TILE + j]);
                *a = _mm256_fmadd_ps(_mm256_mul_ps(dv, yd), _mm256_cvtepi32_ps(isum), *a);
            }
        }
        for (o, a) in out.iter_mut().zip(&acc) {
            // SAFETY: 8 floats out.
            unsafe { _mm256_storeu_ps(o.as_mut_ptr(), *a) };
        }
    }
}
