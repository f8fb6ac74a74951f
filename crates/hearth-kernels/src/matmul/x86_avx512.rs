//! AVX-512 kernels (F/BW/VL + VNNI): 512-bit versions of the hot types.
//!
//! - Q8_0, Q4_0, Q5_0, IQ4_NL x Q8_0: two blocks per zmm register, the sign
//!   trick through a byte mask, `vpdpbusd` (`_mm512_dpbusd_epi32`) for the
//!   u8 x i8 sums;
//! - Q4_K, Q6_K x Q8_K: 64 weights per zmm, `vpmaddubsw` then `vpdpwssd`
//!   (`_mm512_dpwssd_epi32`) multiplying by the group scales and
//!   accumulating in one instruction;
//! - Q5_K, IQ4_XS x Q8_K: the one-row kernels of [`super::direct512`].
//!
//! Other types use the AVX2 kernels at this level. Weight unpacking, scale
//! unpacking and the min/`bsums` corrections are shared with `x86_avx2.rs`.
//! As there, a token's operations do not depend on the tile size.

#![allow(unsafe_code)]

use std::arch::x86_64::*;

use super::act::Acts;
use super::x86_avx2::{
    check, f16c, hsum_ps128, k4_scales_mins, ld, q8_ptrs, q8k_ptrs, tiles, u16_at, unpack_iq4_nl,
    unpack_q4_0, unpack_q5_0, unpack_q8_0,
};
use super::DotFn;
use hearth_gguf::{GgmlType, QK_K};

/// The AVX-512 dot kernel for weight type `ty`, if there is one (others use
/// the AVX2 kernels).
pub(crate) fn dot_fn(ty: GgmlType) -> Option<DotFn> {
    use GgmlType as T;
    Some(match ty {
        T::Q8_0 => dot_q8_0,
        T::Q4_0 => dot_q4_0,
        T::Q5_0 => dot_q5_0,
        T::IQ4_NL => dot_iq4_nl,
        T::Q4_K => dot_q4_k,
        T::Q6_K => dot_q6_k,
        T::Q5_K => dot_q5_k,
        T::IQ4_XS => dot_iq4_xs,
        _ => return None,
    })
}

/// Defines `$name`, a dot kernel running the one-row kernel `$row` of
/// [`super::direct512`] per token.
macro_rules! one_row_kernel {
    ($name:ident, $row:ident, $bytes:expr) => {
        #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
        unsafe fn $name(w: &[u8], acts: &Acts<'_>, t0: usize, out: &mut [f32]) {
            check(w, $bytes, acts, t0, out.len());
            for (i, o) in out.iter_mut().enumerate() {
                // SAFETY: the caller's CPU level; `check` ran: the row holds `nb` blocks
                // and the tokens exist.
                *o = unsafe { super::direct512::avx512::$row(w, acts, t0 + i) };
            }
        }
    };
}

one_row_kernel!(dot_q5_k, k5_row_dot, super::tile::K5_BYTES);
one_row_kernel!(dot_iq4_xs, xs_row_dot, super::kgroup::XS_BYTES);

/// Loads 64 bytes from `p` (any alignment).
///
/// # Safety
/// `p..p + 64` must be readable.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub(crate) unsafe fn ld512(p: *const u8) -> __m512i {
    // SAFETY: the caller guarantees 64 readable bytes; no alignment needed.
    unsafe { _mm512_loadu_si512(p as *const _) }
}

/// Two 256-bit halves as one zmm (`lo` in bits 0..256).
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn join(lo: __m256i, hi: __m256i) -> __m512i {
    _mm512_inserti64x4::<1>(_mm512_castsi256_si512(lo), hi)
}

// ------------------------------------------- 32-weight blocks, signed

/// Defines `dot_$name` for a signed 32-weight block type x Q8_0, two blocks
/// per zmm (`$unpack` from the AVX2 module gives one block as 32 i8).
macro_rules! signed_pair_kernel {
    ($name:ident, $tile:ident, $bytes:expr, $unpack:ident) => {
        #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
        unsafe fn $name(w: &[u8], acts: &Acts<'_>, t0: usize, out: &mut [f32]) {
            check(w, $bytes, acts, t0, out.len());
            tiles!(out, t0, 4, |tt, o| {
                1 => $tile::<1>(w, acts, tt, o),
                2 => $tile::<2>(w, acts, tt, o),
                3 => $tile::<3>(w, acts, tt, o),
                4 => $tile::<4>(w, acts, tt, o),
            });
        }

        #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
        fn $tile<const T: usize>(w: &[u8], acts: &Acts<'_>, t0: usize, out: &mut [f32]) {
            // SAFETY: `check` ran in the caller: tokens t0..t0+T exist.
            let (qa, da) = unsafe { q8_ptrs::<T>(acts, t0) };
            let nb = w.len() / $bytes;
            let mut acc = [_mm512_setzero_ps(); T];
            let mut b = 0;
            while b < nb {
                let pair = b + 1 < nb;
                let (dw0, q0) = $unpack(&w[b * $bytes..(b + 1) * $bytes]);
                let (dw1, q1) = if pair {
                    $unpack(&w[(b + 1) * $bytes..(b + 2) * $bytes])
                } else {
                    (0.0, _mm256_setzero_si256())
                };
                let q = join(q0, q1);
                let ax = _mm512_abs_epi8(q);
                let neg = _mm512_movepi8_mask(q);
                for t in 0..T {
                    // SAFETY: blocks b (and b+1 if `pair`) < nb of token t0+t:
                    // their quants (32 each, adjacent) and scales are in bounds.
                    let (a, s0, s1) = unsafe {
                        let p = qa[t].add(32 * b);
                        if pair {
                            (ld512(p), dw0 * *da[t].add(b), dw1 * *da[t].add(b + 1))
                        } else {
                            (_mm512_zextsi256_si512(ld(p)), dw0 * *da[t].add(b), 0.0)
                        }
                    };
                    // a * sign(q), so that |q| * (a * sign(q)) = q * a.
                    let sy = _mm512_mask_sub_epi8(a, neg, _mm512_setzero_si512(), a);
                    let dot = _mm512_dpbusd_epi32(_mm512_setzero_si512(), ax, sy);
                    let scale = _mm512_mask_blend_ps(0xff00, _mm512_set1_ps(s0), _mm512_set1_ps(s1));
                    acc[t] = _mm512_fmadd_ps(scale, _mm512_cvtepi32_ps(dot), acc[t]);
                }
                b += 2;
            }
            for t in 0..T {
                out[t] = _mm512_reduce_add_ps(acc[t]);
            }
        }
    };
}

signed_pair_kernel!(dot_q8_0, tile_q8_0, 34, unpack_q8_0);
signed_pair_kernel!(dot_q4_0, tile_q4_0, 18, unpack_q4_0);
signed_pair_kernel!(dot_q5_0, tile_q5_0, 22, unpack_q5_0);
signed_pair_kernel!(dot_iq4_nl, tile_iq4_nl, 18, unpack_iq4_nl);

// ------------------------------------------------------------- k-quants

macro_rules! k_entry {
    ($name:ident, $tile:ident, $bytes:expr) => {
        #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
        unsafe fn $name(w: &[u8], acts: &Acts<'_>, t0: usize, out: &mut [f32]) {
            check(w, $bytes, acts, t0, out.len());
            tiles!(out, t0, 4, |tt, o| {
                1 => $tile::<1>(w, acts, tt, o),
                2 => $tile::<2>(w, acts, tt, o),
                3 => $tile::<3>(w, acts, tt, o),
                4 => $tile::<4>(w, acts, tt, o),
            });
        }
    };
}

/// `_mm512_permutexvar_epi16` indices: lane m takes element `base + m / span`.
const fn spread(base: u16, span: u16) -> [u16; 32] {
    let mut idx = [0u16; 32];
    let mut m = 0;
    while m < 32 {
        idx[m] = base + m as u16 / span;
        m += 1;
    }
    idx
}

/// Q4_K scale vector j: i16 lanes 0..16 take scale 2j, 16..32 scale 2j+1.
static Q4K_SCALE_IDX: [[u16; 32]; 4] = [spread(0, 16), spread(2, 16), spread(4, 16), spread(6, 16)];
/// Q6_K scale vector v (weights 64v..64v+64): groups 4v..4v+4, 8 lanes each.
static Q6K_SCALE_IDX: [[u16; 32]; 4] = [spread(0, 8), spread(4, 8), spread(8, 8), spread(12, 8)];

/// One of the index tables above as a zmm.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub(crate) fn idx512(idx: &[u16; 32]) -> __m512i {
    // SAFETY: 64 readable bytes.
    unsafe { ld512(idx.as_ptr() as *const u8) }
}

k_entry!(dot_q4_k, tile_q4_k, 144);
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn tile_q4_k<const T: usize>(w: &[u8], acts: &Acts<'_>, t0: usize, out: &mut [f32]) {
    // SAFETY: `check` ran in the caller.
    let (qa, da, bs) = unsafe { q8k_ptrs::<T>(acts, t0) };
    let m4 = _mm256_set1_epi8(0x0f);
    // Scale vector j: i16 lanes 0..16 group 2j, 16..32 group 2j+1.
    let idx = Q4K_SCALE_IDX.each_ref().map(|i| idx512(i));
    let mut acc = [_mm512_setzero_ps(); T];
    let mut accm = [_mm_setzero_ps(); T];
    for (i, x) in w.chunks_exact(144).enumerate() {
        let x: &[u8; 144] = x.try_into().expect("block_q4_K");
        let d = f16c(u16_at(x, 0));
        let dmin = f16c(u16_at(x, 2));
        let ms = k4_scales_mins(x[4..16].try_into().expect("12 bytes"));
        let mins = _mm256_extracti128_si256::<1>(ms);
        let ms512 = _mm512_castsi256_si512(ms);
        let mut sumi = [_mm512_setzero_si512(); T];
        for t in 0..T {
            // SAFETY: 16 i16 group sums and the scale of super-block i of token t0+t.
            let (b, ya) = unsafe { (ld(bs[t].add(32 * i)), *da[t].add(i)) };
            let pair_sums =
                _mm_hadd_epi16(_mm256_castsi256_si128(b), _mm256_extracti128_si256::<1>(b));
            let prod = _mm_madd_epi16(mins, pair_sums);
            accm[t] = _mm_fmadd_ps(_mm_set1_ps(dmin * ya), _mm_cvtepi32_ps(prod), accm[t]);
        }
        for (j, idx) in idx.iter().enumerate() {
            // SAFETY: bytes 16 + 32j .. +32 of the 144-byte block.
            let raw = unsafe { ld(x.as_ptr().add(16 + 32 * j)) };
            // Weights 64j..64j+64: group 2j (low nibbles), then 2j+1 (high).
            let q = join(
                _mm256_and_si256(raw, m4),
                _mm256_and_si256(_mm256_srli_epi16::<4>(raw), m4),
            );
            let scv = _mm512_permutexvar_epi16(*idx, ms512);
            for t in 0..T {
                // SAFETY: quants 64j..64j+64 of super-block i of token t0+t.
                let a = unsafe { ld512(qa[t].add(QK_K * i + 64 * j)) };
                sumi[t] = _mm512_dpwssd_epi32(sumi[t], _mm512_maddubs_epi16(q, a), scv);
            }
        }
        for t in 0..T {
            // SAFETY: as above.
            let ya = unsafe { *da[t].add(i) };
            acc[t] = _mm512_fmadd_ps(_mm512_set1_ps(d * ya), _mm512_cvtepi32_ps(sumi[t]), acc[t]);
        }
    }
    for t in 0..T {
        out[t] = _mm512_reduce_add_ps(acc[t]) - hsum_ps128(accm[t]);
    }
}

k_entry!(dot_q6_k, tile_q6_k, 210);
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn tile_q6_k<const T: usize>(w: &[u8], acts: &Acts<'_>, t0: usize, out: &mut [f32]) {
    // SAFETY: `check` ran in the caller.
    let (qa, da, bs) = unsafe { q8k_ptrs::<T>(acts, t0) };
    let m4 = _mm512_set1_epi8(0x0f);
    let m2 = _mm512_set1_epi8(3);
    // Vector v (0..4) holds weights 64v..64v+64: groups 4v..4v+4, 8 i16
    // lanes (16 weights) each.
    let idx = Q6K_SCALE_IDX.each_ref().map(|i| idx512(i));
    // qh bit pairs: 2s for the lower 32 bytes, 2s+2 for the upper.
    let sh01 = _mm512_setr_epi64(0, 0, 0, 0, 2, 2, 2, 2);
    let sh23 = _mm512_setr_epi64(4, 4, 4, 4, 6, 6, 6, 6);
    let mut acc = [_mm512_setzero_ps(); T];
    for (i, x) in w.chunks_exact(210).enumerate() {
        let x: &[u8; 210] = x.try_into().expect("block_q6_K");
        let d = f16c(u16_at(x, 208));
        // SAFETY: bytes 192..208 (scales) of the 210-byte block.
        let sc16 = _mm256_cvtepi8_epi16(unsafe { super::x86_avx2::ld128(x.as_ptr().add(192)) });
        let sc512 = _mm512_castsi256_si512(sc16);
        let mut sumi = [_mm512_setzero_si512(); T];
        for t in 0..T {
            // sum(q6 * a) = sum((q6u - 32) * a): subtract 32 * sum(sc * bsums).
            // SAFETY: group sums of super-block i of token t0+t.
            let b = unsafe { ld(bs[t].add(32 * i)) };
            let corr = _mm256_slli_epi32::<5>(_mm256_madd_epi16(b, sc16));
            sumi[t] = _mm512_sub_epi32(sumi[t], _mm512_zextsi256_si512(corr));
        }
        for c in 0..2 {
            // SAFETY: ql 64c..64c+64 and qh 128+32c..+32 of the 210-byte block.
            let (l, h) = unsafe {
                (
                    ld512(x.as_ptr().add(64 * c)),
                    _mm512_broadcast_i64x4(ld(x.as_ptr().add(128 + 32 * c))),
                )
            };
            let h01 = _mm512_slli_epi16::<4>(_mm512_and_si512(_mm512_srlv_epi64(h, sh01), m2));
            let h23 = _mm512_slli_epi16::<4>(_mm512_and_si512(_mm512_srlv_epi64(h, sh23), m2));
            let q01 = _mm512_or_si512(_mm512_and_si512(l, m4), h01);
            let q23 = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16::<4>(l), m4), h23);
            let s01 = _mm512_permutexvar_epi16(idx[2 * c], sc512);
            let s23 = _mm512_permutexvar_epi16(idx[2 * c + 1], sc512);
            for t in 0..T {
                // SAFETY: quants 128c..128c+128 of super-block i of token t0+t.
                let (a01, a23) = unsafe {
                    let p = qa[t].add(QK_K * i + 128 * c);
                    (ld512(p), ld512(p.add(64)))
                };
                sumi[t] = _mm512_dpwssd_epi32(sumi[t], _mm512_maddubs_epi16(q01, a01), s01);
                sumi[t] = _mm512_dpwssd_epi32(sumi[t], _mm512_maddubs_epi16(q23, a23), s23);
            }
        }
        for t in 0..T {
            // SAFETY: scale of super-block i of token t0+t.
            let ya = unsafe { *da[t].add(i) };
            acc[t] = _mm512_fmadd_ps(_mm512_set1_ps(d * ya), _mm512_cvtepi32_ps(sumi[t]), acc[t]);
        }
    }
    for t in 0..T {
        out[t] = _mm512_reduce_add_ps(acc[t]);
    }
}
