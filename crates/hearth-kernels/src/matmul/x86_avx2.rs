//! AVX2 + FMA + F16C kernels (x86-64-v3): activation quantizers and dot
//! products of one weight row with a tile of 1..=4 tokens. Each weight block
//! is loaded and unpacked once per tile and used for every token of it.
//!
//! Per token the operations are the same whatever the tile size, so a
//! token's result does not depend on how tokens were tiled. The integer math
//! per block is ggml's (`maddubs` with the sign trick for signed weights,
//! `madd` by the group scales); only f32 summation order differs from the
//! scalar twins in `scalar.rs`.

#![allow(unsafe_code)]
// Loops over chunks index several arrays with the layout's arithmetic.
#![allow(clippy::needless_range_loop)]

use std::arch::x86_64::*;

use super::act::{ActKind, ActRowsMut, Acts};
use super::scalar::iq4_xs_scale;
use crate::quant::iq_grids::KVALUES_IQ4NL;
use crate::quant::{f16_to_f32, f32_to_f16, f32_to_f16_ggml};
use hearth_gguf::{GgmlType, QK_K};

use super::DotFn;

/// The AVX2 dot kernel for weight type `ty`, if there is one.
pub(crate) fn dot_fn(ty: GgmlType) -> Option<DotFn> {
    use GgmlType as T;
    Some(match ty {
        T::Q8_0 => dot_q8_0,
        T::Q4_0 => dot_q4_0,
        T::Q5_0 => dot_q5_0,
        T::IQ4_NL => dot_iq4_nl,
        T::Q4_1 => dot_q4_1,
        T::Q5_1 => dot_q5_1,
        T::Q2_K => dot_q2_k,
        T::Q3_K => dot_q3_k,
        T::Q4_K => dot_q4_k,
        T::Q5_K => dot_q5_k,
        T::Q6_K => dot_q6_k,
        T::IQ4_XS => dot_iq4_xs,
        T::F32 => dot_f32,
        T::F16 => dot_f16,
        T::BF16 => dot_bf16,
        _ => return None,
    })
}

// ------------------------------------------------------------- helpers

/// Loads 32 bytes from `p` (any alignment).
///
/// # Safety
/// `p..p + 32` must be readable.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn ld(p: *const u8) -> __m256i {
    // SAFETY: the caller guarantees 32 readable bytes; loadu has no alignment need.
    unsafe { _mm256_loadu_si256(p as *const __m256i) }
}

/// Loads 16 bytes from `p` (any alignment).
///
/// # Safety
/// `p..p + 16` must be readable.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn ld128(p: *const u8) -> __m128i {
    // SAFETY: the caller guarantees 16 readable bytes.
    unsafe { _mm_loadu_si128(p as *const __m128i) }
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn hsum_ps(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    hsum_ps128(s)
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn hsum_ps128(s: __m128) -> f32 {
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_movehdup_ps(s));
    _mm_cvtss_f32(s)
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn hsum_epi32(v: __m256i) -> i32 {
    let s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256::<1>(v));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b01_00_11_10>(s));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b10_11_00_01>(s));
    _mm_cvtsi128_si32(s)
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn hmax_ps(v: __m256) -> f32 {
    let s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_max_ss(s, _mm_movehdup_ps(s));
    _mm_cvtss_f32(s)
}

/// f16 bits -> f32 (F16C).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn f16c(bits: u16) -> f32 {
    _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(i32::from(bits))))
}

/// The little-endian u16 at `b[o..o + 2]`.
#[inline(always)]
pub(crate) fn u16_at(b: &[u8], o: usize) -> u16 {
    u16::from_le_bytes([b[o], b[o + 1]])
}

/// Sums of 4 adjacent `u8 * i8` products (`ax` unsigned, `sy` signed, no
/// i16 overflow for |ax| <= 128, |sy| <= 127 pairs).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn dot_u8i8(ax: __m256i, sy: __m256i) -> __m256i {
    _mm256_madd_epi16(_mm256_maddubs_epi16(ax, sy), _mm256_set1_epi16(1))
}

/// 32 nibbles of 16 bytes: low nibbles (weights 0..16) then high (16..32).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn nibbles_32(raw: __m128i) -> __m256i {
    let both = _mm256_set_m128i(_mm_srli_epi16::<4>(raw), raw);
    _mm256_and_si256(both, _mm256_set1_epi8(0x0f))
}

/// Byte j = 0xff where bit j of `bits` is set, else 0.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn bytes_from_bits_32(bits: u32) -> __m256i {
    let shuf = _mm256_set_epi64x(
        0x0303_0303_0303_0303,
        0x0202_0202_0202_0202,
        0x0101_0101_0101_0101,
        0,
    );
    let bytes = _mm256_shuffle_epi8(_mm256_set1_epi32(bits as i32), shuf);
    let bytes = _mm256_or_si256(bytes, _mm256_set1_epi64x(0x7fbf_dfef_f7fb_fdfe));
    _mm256_cmpeq_epi8(bytes, _mm256_set1_epi64x(-1))
}

/// The `i`-th 16-bit-lane right shift of `v` by `n` bits.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn srl16(v: __m256i, n: u32) -> __m256i {
    _mm256_srl_epi16(v, _mm_cvtsi32_si128(n as i32))
}

/// Q4_K/Q5_K scales and mins as i16: lanes 0..8 the 8 scales, 8..16 the 8
/// mins (ggml's `utmp` unpacking of `get_scale_min_k4`).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn k4_scales_mins(s: &[u8; 12]) -> __m256i {
    const KMASK1: i32 = 0x3f3f_3f3f;
    const KMASK2: i32 = 0x0f0f_0f0f;
    const KMASK3_4: i32 = 0x3030_3030;
    // SAFETY: bytes 0..8 of `s`.
    let u01 = unsafe { _mm_loadl_epi64(s.as_ptr() as *const __m128i) };
    let v = _mm_insert_epi32::<2>(u01, i32::from_le_bytes([s[8], s[9], s[10], s[11]]));
    // Lanes (sc_lo, sc_hi, m_lo, m_hi): u0 & K1, u2 & K2 | (u0 >> 6 & 3) << 4, u1 & K1,
    // u2 >> 4 & K2 | (u1 >> 6 & 3) << 4 (per byte; `(u >> 6 & 3) << 4` is `u >> 2 & 0x30`).
    let a = _mm_shuffle_epi32::<0b10_01_10_00>(v);
    let low = _mm_and_si128(
        _mm_srlv_epi32(a, _mm_setr_epi32(0, 0, 0, 4)),
        _mm_setr_epi32(KMASK1, KMASK2, KMASK1, KMASK2),
    );
    let b = _mm_shuffle_epi32::<0b01_01_00_00>(v);
    let high = _mm_and_si128(
        _mm_srli_epi32::<2>(b),
        _mm_setr_epi32(0, KMASK3_4, 0, KMASK3_4),
    );
    _mm256_cvtepu8_epi16(_mm_or_si128(low, high))
}

/// Q3_K's 16 6-bit scales minus 32, as i8 (ggml's unpacking).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn q3k_scales_i8(s: &[u8; 12]) -> __m128i {
    const KMASK1: u32 = 0x0303_0303;
    const KMASK2: u32 = 0x0f0f_0f0f;
    let a0 = u32::from_le_bytes([s[0], s[1], s[2], s[3]]);
    let a1 = u32::from_le_bytes([s[4], s[5], s[6], s[7]]);
    let a2 = u32::from_le_bytes([s[8], s[9], s[10], s[11]]);
    let v = _mm_setr_epi32(
        ((a0 & KMASK2) | ((a2 & KMASK1) << 4)) as i32,
        ((a1 & KMASK2) | (((a2 >> 2) & KMASK1) << 4)) as i32,
        (((a0 >> 4) & KMASK2) | (((a2 >> 4) & KMASK1) << 4)) as i32,
        (((a1 >> 4) & KMASK2) | (((a2 >> 6) & KMASK1) << 4)) as i32,
    );
    _mm_sub_epi8(v, _mm_set1_epi8(32))
}

/// `v` holds 8 i16 in each 128-bit lane; returns its element `g` (0..8) in
/// all 16 lanes.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn bcast_i16(v: __m256i, g: usize) -> __m256i {
    let b = (2 * g) as u8;
    _mm256_shuffle_epi8(v, _mm256_set1_epi16(i16::from_le_bytes([b, b + 1])))
}

/// `v` holds 8 i16 in each 128-bit lane (the same 8 in both); returns
/// element `2k` in lanes 0..8 and element `2k + 1` in lanes 8..16 (k in 0..4).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn pair_i16(v: __m256i, k: usize) -> __m256i {
    let lo = (4 * k) as u8;
    let hi = lo + 2;
    let l = i64::from_le_bytes([lo, lo + 1, lo, lo + 1, lo, lo + 1, lo, lo + 1]);
    let h = i64::from_le_bytes([hi, hi + 1, hi, hi + 1, hi, hi + 1, hi, hi + 1]);
    _mm256_shuffle_epi8(v, _mm256_setr_epi64x(l, l, h, h))
}

/// 16 i16 group scales as two vectors, the first 8 and the last 8 each
/// copied to both 128-bit lanes (for [`pair_i16`]).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn split_scales16(sc16: __m256i) -> [__m256i; 2] {
    [
        _mm256_permute2x128_si256::<0x00>(sc16, sc16),
        _mm256_permute2x128_si256::<0x11>(sc16, sc16),
    ]
}

/// Splits `out` (any length) into tiles of at most `max` tokens and runs
/// `tile(t0, out_tile)` on each, dispatching to a const-size kernel.
macro_rules! tiles {
    ($out:expr, $t0:expr, $max:expr, |$tt:ident, $o:ident| { $($n:literal => $call:expr),* $(,)? }) => {{
        let mut done = 0usize;
        while done < $out.len() {
            let n = ($out.len() - done).min($max);
            let $tt = $t0 + done;
            let $o = &mut $out[done..done + n];
            match n {
                $( $n => $call, )*
                _ => unreachable!("tile sizes 1..={}", $max),
            }
            done += n;
        }
    }};
}
#[allow(unused_imports)]
pub(crate) use tiles;

/// Asserts what every kernel relies on: `w` is one whole row of `acts.nb`
/// blocks of `block_bytes`, and tokens `t0..t0 + n` exist.
#[inline]
pub(crate) fn check(w: &[u8], block_bytes: usize, acts: &Acts<'_>, t0: usize, n: usize) {
    assert_eq!(w.len(), acts.nb * block_bytes, "weight row length");
    assert!(t0 + n <= acts.n_tokens, "token range");
}

/// Per-token pointers into the activations: quants of token `t0 + t`
/// (`ne0` each) and block scales (`nb` each).
///
/// # Safety
/// Tokens `t0..t0 + T` must exist in `acts` (see [`check`]).
#[inline(always)]
pub(crate) unsafe fn q8_ptrs<const T: usize>(
    acts: &Acts<'_>,
    t0: usize,
) -> ([*const u8; T], [*const f32; T]) {
    let qa = std::array::from_fn(|t| acts.qs_row(t0 + t).as_ptr() as *const u8);
    let da = std::array::from_fn(|t| acts.d_row(t0 + t).as_ptr());
    (qa, da)
}

// ------------------------------------------- 32-weight blocks, signed

/// Defines `dot_$name` for a type whose 32-weight block unpacks to signed
/// bytes: `$unpack(block) -> (d_w, q)` with q the 32 weights as i8.
macro_rules! signed_q8_0_kernel {
    ($name:ident, $tile:ident, $bytes:expr, $unpack:ident) => {
        #[target_feature(enable = "avx2,fma,f16c")]
        unsafe fn $name(w: &[u8], acts: &Acts<'_>, t0: usize, out: &mut [f32]) {
            check(w, $bytes, acts, t0, out.len());
            tiles!(out, t0, 4, |tt, o| {
                1 => $tile::<1>(w, acts, tt, o),
                2 => $tile::<2>(w, acts, tt, o),
                3 => $tile::<3>(w, acts, tt, o),
                4 => $tile::<4>(w, acts, tt, o),
            });
        }

        #[target_feature(enable = "avx2,fma,f16c")]
        fn $tile<const T: usize>(w: &[u8], acts: &Acts<'_>, t0: usize, out: &mut [f32]) {
            // SAFETY: `check` ran in the caller: tokens t0..t0+T exist.
            let (qa, da) = unsafe { q8_ptrs::<T>(acts, t0) };
            // Two accumulators per token (even and odd blocks) hide the FMA latency.
            let mut acc = [[_mm256_setzero_ps(); 2]; T];
            let nb = w.len() / $bytes;
            let mut b = 0;
            while b < nb {
                for k in 0..2 {
                    if b + k < nb {
                        let x = &w[(b + k) * $bytes..(b + k + 1) * $bytes];
                        let (dw, q) = $unpack(x);
                        let ax = _mm256_sign_epi8(q, q);
                        for t in 0..T {
                            // SAFETY: block b+k < nb of token t0+t: 32 quants
                            // at 32(b+k) and one scale at b+k are in bounds.
                            let (a, da) = unsafe { (ld(qa[t].add(32 * (b + k))), *da[t].add(b + k)) };
                            let p = dot_u8i8(ax, _mm256_sign_epi8(a, q));
                            acc[t][k] = _mm256_fmadd_ps(
                                _mm256_set1_ps(dw * da),
                                _mm256_cvtepi32_ps(p),
                                acc[t][k],
                            );
                        }
                    }
                }
                b += 2;
            }
            for t in 0..T {
                out[t] = hsum_ps(_mm256_add_ps(acc[t][0], acc[t][1]));
            }
        }
    };
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn unpack_q8_0(x: &[u8]) -> (f32, __m256i) {
    let x: &[u8; 34] = x.try_into().expect("block_q8_0");
    // SAFETY: bytes 2..34 of a 34-byte block.
    (f16c(u16_at(x, 0)), unsafe { ld(x.as_ptr().add(2)) })
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn unpack_q4_0(x: &[u8]) -> (f32, __m256i) {
    let x: &[u8; 18] = x.try_into().expect("block_q4_0");
    // SAFETY: bytes 2..18 of an 18-byte block.
    let raw = unsafe { ld128(x.as_ptr().add(2)) };
    let q = _mm256_sub_epi8(nibbles_32(raw), _mm256_set1_epi8(8));
    (f16c(u16_at(x, 0)), q)
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn unpack_q5_0(x: &[u8]) -> (f32, __m256i) {
    let x: &[u8; 22] = x.try_into().expect("block_q5_0");
    let qh = u32::from_le_bytes([x[2], x[3], x[4], x[5]]);
    // SAFETY: bytes 6..22 of a 22-byte block.
    let raw = unsafe { ld128(x.as_ptr().add(6)) };
    // nibble | (bit ? 0 : 0xf0) is the i8 value nibble + 16*bit - 16.
    let high = _mm256_andnot_si256(bytes_from_bits_32(qh), _mm256_set1_epi8(0xf0u8 as i8));
    (f16c(u16_at(x, 0)), _mm256_or_si256(nibbles_32(raw), high))
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn unpack_iq4_nl(x: &[u8]) -> (f32, __m256i) {
    let x: &[u8; 18] = x.try_into().expect("block_iq4_nl");
    // SAFETY: bytes 2..18 of an 18-byte block; the table has 16 bytes.
    let (raw, table) = unsafe {
        (
            ld128(x.as_ptr().add(2)),
            ld128(KVALUES_IQ4NL.as_ptr() as *const u8),
        )
    };
    let table = _mm256_broadcastsi128_si256(table);
    (
        f16c(u16_at(x, 0)),
        _mm256_shuffle_epi8(table, nibbles_32(raw)),
    )
}

signed_q8_0_kernel!(dot_q8_0, tile_q8_0, 34, unpack_q8_0);
signed_q8_0_kernel!(dot_q4_0, tile_q4_0, 18, unpack_q4_0);
signed_q8_0_kernel!(dot_q5_0, tile_q5_0, 22, unpack_q5_0);
signed_q8_0_kernel!(dot_iq4_nl, tile_iq4_nl, 18, unpack_iq4_nl);

// ----------------------------------------- 32-weight blocks, with a min

/// Defines `dot_$name` for Q4_1/Q5_1 x Q8_1: unsigned quants,
/// `d_w * d_a * sum(q * a) + m_w * s_a` per block.
macro_rules! min_q8_1_kernel {
    ($name:ident, $tile:ident, $bytes:expr, $unpack:ident) => {
        #[target_feature(enable = "avx2,fma,f16c")]
        unsafe fn $name(w: &[u8], acts: &Acts<'_>, t0: usize, out: &mut [f32]) {
            check(w, $bytes, acts, t0, out.len());
            tiles!(out, t0, 4, |tt, o| {
                1 => $tile::<1>(w, acts, tt, o),
                2 => $tile::<2>(w, acts, tt, o),
                3 => $tile::<3>(w, acts, tt, o),
                4 => $tile::<4>(w, acts, tt, o),
            });
        }

        #[target_feature(enable = "avx2,fma,f16c")]
        fn $tile<const T: usize>(w: &[u8], acts: &Acts<'_>, t0: usize, out: &mut [f32]) {
            // SAFETY: `check` ran in the caller: tokens t0..t0+T exist.
            let (qa, da) = unsafe { q8_ptrs::<T>(acts, t0) };
            let sa: [&[f32]; T] = std::array::from_fn(|t| acts.s_row(t0 + t));
            let mut acc = [_mm256_setzero_ps(); T];
            let mut accm = [0.0f32; T];
            for (b, x) in w.chunks_exact($bytes).enumerate() {
                let (dw, mw, q) = $unpack(x);
                for t in 0..T {
                    // SAFETY: block b < nb of token t0+t.
                    let (a, da) = unsafe { (ld(qa[t].add(32 * b)), *da[t].add(b)) };
                    let p = dot_u8i8(q, a);
                    acc[t] = _mm256_fmadd_ps(
                        _mm256_set1_ps(dw * da),
                        _mm256_cvtepi32_ps(p),
                        acc[t],
                    );
                    accm[t] += mw * sa[t][b];
                }
            }
            for t in 0..T {
                out[t] = hsum_ps(acc[t]) + accm[t];
            }
        }
    };
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn unpack_q4_1(x: &[u8]) -> (f32, f32, __m256i) {
    let x: &[u8; 20] = x.try_into().expect("block_q4_1");
    // SAFETY: bytes 4..20 of a 20-byte block.
    let raw = unsafe { ld128(x.as_ptr().add(4)) };
    (f16c(u16_at(x, 0)), f16c(u16_at(x, 2)), nibbles_32(raw))
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn unpack_q5_1(x: &[u8]) -> (f32, f32, __m256i) {
    let x: &[u8; 24] = x.try_into().expect("block_q5_1");
    let qh = u32::from_le_bytes([x[4], x[5], x[6], x[7]]);
    // SAFETY: bytes 8..24 of a 24-byte block.
    let raw = unsafe { ld128(x.as_ptr().add(8)) };
    let high = _mm256_and_si256(bytes_from_bits_32(qh), _mm256_set1_epi8(0x10));
    (
        f16c(u16_at(x, 0)),
        f16c(u16_at(x, 2)),
        _mm256_or_si256(nibbles_32(raw), high),
    )
}

min_q8_1_kernel!(dot_q4_1, tile_q4_1, 20, unpack_q4_1);
min_q8_1_kernel!(dot_q5_1, tile_q5_1, 24, unpack_q5_1);

// ------------------------------------------------------------- k-quants

/// Defines the entry point `dot_$name` of a k-quant tile kernel.
macro_rules! k_entry {
    ($name:ident, $tile:ident, $bytes:expr) => {
        #[target_feature(enable = "avx2,fma,f16c")]
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

/// Per-token pointers for Q8_K activations: quants, scales, group sums.
///
/// # Safety
/// Tokens `t0..t0 + T` must exist in `acts`.
#[inline(always)]
pub(crate) unsafe fn q8k_ptrs<const T: usize>(
    acts: &Acts<'_>,
    t0: usize,
) -> ([*const u8; T], [*const f32; T], [*const u8; T]) {
    // SAFETY: forwarded.
    let (qa, da) = unsafe { q8_ptrs::<T>(acts, t0) };
    let bs = std::array::from_fn(|t| acts.bsums_row(t0 + t).as_ptr() as *const u8);
    (qa, da, bs)
}

k_entry!(dot_q4_k, tile_q4_k, 144);
#[target_feature(enable = "avx2,fma,f16c")]
fn tile_q4_k<const T: usize>(w: &[u8], acts: &Acts<'_>, t0: usize, out: &mut [f32]) {
    // SAFETY: `check` ran in the caller.
    let (qa, da, bs) = unsafe { q8k_ptrs::<T>(acts, t0) };
    let m4 = _mm256_set1_epi8(0x0f);
    let mut acc = [_mm256_setzero_ps(); T];
    let mut accm = [_mm_setzero_ps(); T];
    for (i, x) in w.chunks_exact(144).enumerate() {
        let x: &[u8; 144] = x.try_into().expect("block_q4_K");
        let d = f16c(u16_at(x, 0));
        let dmin = f16c(u16_at(x, 2));
        let ms = k4_scales_mins(x[4..16].try_into().expect("12 bytes"));
        let mins = _mm256_extracti128_si256::<1>(ms);
        let scales = _mm256_permute2x128_si256::<0x00>(ms, ms);
        let mut sumi = [_mm256_setzero_si256(); T];
        for t in 0..T {
            // SAFETY: 16 i16 group sums of super-block i of token t0+t.
            let b = unsafe { ld(bs[t].add(32 * i)) };
            let pair_sums =
                _mm_hadd_epi16(_mm256_castsi256_si128(b), _mm256_extracti128_si256::<1>(b));
            let prod = _mm_madd_epi16(mins, pair_sums);
            // SAFETY: scale of super-block i of token t0+t.
            let ya = unsafe { *da[t].add(i) };
            accm[t] = _mm_fmadd_ps(_mm_set1_ps(dmin * ya), _mm_cvtepi32_ps(prod), accm[t]);
        }
        for j in 0..4 {
            // SAFETY: bytes 16 + 32j .. +32 of the 144-byte block.
            let raw = unsafe { ld(x.as_ptr().add(16 + 32 * j)) };
            let lo = _mm256_and_si256(raw, m4);
            let hi = _mm256_and_si256(_mm256_srli_epi16::<4>(raw), m4);
            let sc_lo = bcast_i16(scales, 2 * j);
            let sc_hi = bcast_i16(scales, 2 * j + 1);
            for t in 0..T {
                // SAFETY: quants 64j..64j+64 of super-block i of token t0+t.
                let (a_lo, a_hi) = unsafe {
                    let p = qa[t].add(QK_K * i + 64 * j);
                    (ld(p), ld(p.add(32)))
                };
                let p_lo = _mm256_madd_epi16(_mm256_maddubs_epi16(lo, a_lo), sc_lo);
                let p_hi = _mm256_madd_epi16(_mm256_maddubs_epi16(hi, a_hi), sc_hi);
                sumi[t] = _mm256_add_epi32(sumi[t], _mm256_add_epi32(p_lo, p_hi));
            }
        }
        for t in 0..T {
            // SAFETY: as above.
            let ya = unsafe { *da[t].add(i) };
            acc[t] = _mm256_fmadd_ps(_mm256_set1_ps(d * ya), _mm256_cvtepi32_ps(sumi[t]), acc[t]);
        }
    }
    for t in 0..T {
        out[t] = hsum_ps(acc[t]) - hsum_ps128(accm[t]);
    }
}

k_entry!(dot_q5_k, tile_q5_k, 176);
#[target_feature(enable = "avx2,fma,f16c")]
fn tile_q5_k<const T: usize>(w: &[u8], acts: &Acts<'_>, t0: usize, out: &mut [f32]) {
    // SAFETY: `check` ran in the caller.
    let (qa, da, bs) = unsafe { q8k_ptrs::<T>(acts, t0) };
    let m4 = _mm256_set1_epi8(0x0f);
    let m1 = _mm256_set1_epi8(1);
    let mut acc = [_mm256_setzero_ps(); T];
    let mut accm = [_mm_setzero_ps(); T];
    for (i, x) in w.chunks_exact(176).enumerate() {
        let x: &[u8; 176] = x.try_into().expect("block_q5_K");
        let d = f16c(u16_at(x, 0));
        let dmin = f16c(u16_at(x, 2));
        let ms = k4_scales_mins(x[4..16].try_into().expect("12 bytes"));
        let mins = _mm256_extracti128_si256::<1>(ms);
        let scales = _mm256_permute2x128_si256::<0x00>(ms, ms);
        // SAFETY: bytes 16..48 (qh) of the 176-byte block.
        let hb = unsafe { ld(x.as_ptr().add(16)) };
        let mut sumi = [_mm256_setzero_si256(); T];
        for t in 0..T {
            // SAFETY: group sums and scale of super-block i of token t0+t.
            let (b, ya) = unsafe { (ld(bs[t].add(32 * i)), *da[t].add(i)) };
            let pair_sums =
                _mm_hadd_epi16(_mm256_castsi256_si128(b), _mm256_extracti128_si256::<1>(b));
            let prod = _mm_madd_epi16(mins, pair_sums);
            accm[t] = _mm_fmadd_ps(_mm_set1_ps(dmin * ya), _mm_cvtepi32_ps(prod), accm[t]);
        }
        for j in 0..4 {
            // SAFETY: bytes 48 + 32j .. +32 of the 176-byte block.
            let raw = unsafe { ld(x.as_ptr().add(48 + 32 * j)) };
            let h_lo = _mm256_slli_epi16::<4>(_mm256_and_si256(srl16(hb, 2 * j as u32), m1));
            let h_hi = _mm256_slli_epi16::<4>(_mm256_and_si256(srl16(hb, 2 * j as u32 + 1), m1));
            let lo = _mm256_or_si256(_mm256_and_si256(raw, m4), h_lo);
            let hi = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16::<4>(raw), m4), h_hi);
            let sc_lo = bcast_i16(scales, 2 * j);
            let sc_hi = bcast_i16(scales, 2 * j + 1);
            for t in 0..T {
                // SAFETY: quants 64j..64j+64 of super-block i of token t0+t.
                let (a_lo, a_hi) = unsafe {
                    let p = qa[t].add(QK_K * i + 64 * j);
                    (ld(p), ld(p.add(32)))
                };
                let p_lo = _mm256_madd_epi16(_mm256_maddubs_epi16(lo, a_lo), sc_lo);
                let p_hi = _mm256_madd_epi16(_mm256_maddubs_epi16(hi, a_hi), sc_hi);
                sumi[t] = _mm256_add_epi32(sumi[t], _mm256_add_epi32(p_lo, p_hi));
            }
        }
        for t in 0..T {
            // SAFETY: as above.
            let ya = unsafe { *da[t].add(i) };
            acc[t] = _mm256_fmadd_ps(_mm256_set1_ps(d * ya), _mm256_cvtepi32_ps(sumi[t]), acc[t]);
        }
    }
    for t in 0..T {
        out[t] = hsum_ps(acc[t]) - hsum_ps128(accm[t]);
    }
}

k_entry!(dot_q6_k, tile_q6_k, 210);
#[target_feature(enable = "avx2,fma,f16c")]
fn tile_q6_k<const T: usize>(w: &[u8], acts: &Acts<'_>, t0: usize, out: &mut [f32]) {
    // SAFETY: `check` ran in the caller.
    let (qa, da, bs) = unsafe { q8k_ptrs::<T>(acts, t0) };
    let mut acc = [_mm256_setzero_ps(); T];
    for (i, x) in w.chunks_exact(210).enumerate() {
        let x: &[u8; 210] = x.try_into().expect("block_q6_K");
        let d = f16c(u16_at(x, 208));
        // SAFETY: bytes 192..208 (scales) of the 210-byte block.
        let sc16 = _mm256_cvtepi8_epi16(unsafe { ld128(x.as_ptr().add(192)) });
        let sc = split_scales16(sc16);
        let mut sumi = [_mm256_setzero_si256(); T];
        for t in 0..T {
            // sum(q6 * a) = sum((q6u - 32) * a): subtract 32 * sum(sc * bsums).
            // SAFETY: group sums of super-block i of token t0+t.
            let b = unsafe { ld(bs[t].add(32 * i)) };
            let corr = _mm256_slli_epi32::<5>(_mm256_madd_epi16(b, sc16));
            sumi[t] = _mm256_sub_epi32(sumi[t], corr);
        }
        for (cs, &q) in crate::matmul::tile_k6::avx2::unpack_values(x)
            .iter()
            .enumerate()
        {
            let scv = pair_i16(sc[cs / 4], cs % 4);
            for t in 0..T {
                // SAFETY: quants 32cs..32cs+32 of super-block i of token t0+t.
                let a = unsafe { ld(qa[t].add(QK_K * i + 32 * cs)) };
                let p = _mm256_madd_epi16(_mm256_maddubs_epi16(q, a), scv);
                sumi[t] = _mm256_add_epi32(sumi[t], p);
            }
        }
        for t in 0..T {
            // SAFETY: scale of super-block i of token t0+t.
            let ya = unsafe { *da[t].add(i) };
            acc[t] = _mm256_fmadd_ps(_mm256_set1_ps(d * ya), _mm256_cvtepi32_ps(sumi[t]), acc[t]);
        }
    }
    for t in 0..T {
        out[t] = hsum_ps(acc[t]);
    }
}

k_entry!(dot_q3_k, tile_q3_k, 110);
#[target_feature(enable = "avx2,fma,f16c")]
fn tile_q3_k<const T: usize>(w: &[u8], acts: &Acts<'_>, t0: usize, out: &mut [f32]) {
    // SAFETY: `check` ran in the caller.
    let (qa, da, _) = unsafe { q8k_ptrs::<T>(acts, t0) };
    let m2 = _mm256_set1_epi8(3);
    let m1 = _mm256_set1_epi8(1);
    let mut acc = [_mm256_setzero_ps(); T];
    for (i, x) in w.chunks_exact(110).enumerate() {
        let x: &[u8; 110] = x.try_into().expect("block_q3_K");
        let d = f16c(u16_at(x, 108));
        let sc = split_scales16(_mm256_cvtepi8_epi16(q3k_scales_i8(
            x[96..108].try_into().expect("12 bytes"),
        )));
        // SAFETY: bytes 0..32 (hmask) of the 110-byte block.
        let hm = unsafe { ld(x.as_ptr()) };
        let mut sumi = [_mm256_setzero_si256(); T];
        for c in 0..2 {
            // SAFETY: bytes 32 + 32c .. +32 (qs) of the 110-byte block.
            let raw = unsafe { ld(x.as_ptr().add(32 + 32 * c)) };
            for s in 0..4 {
                let cs = 4 * c + s;
                let low = _mm256_and_si256(srl16(raw, 2 * s as u32), m2);
                let missing = _mm256_xor_si256(_mm256_and_si256(srl16(hm, cs as u32), m1), m1);
                let q = _mm256_sub_epi8(low, _mm256_slli_epi16::<2>(missing));
                let ax = _mm256_sign_epi8(q, q);
                let scv = pair_i16(sc[c], s);
                for t in 0..T {
                    // SAFETY: quants 32cs..32cs+32 of super-block i of token t0+t.
                    let a = unsafe { ld(qa[t].add(QK_K * i + 32 * cs)) };
                    let p = _mm256_maddubs_epi16(ax, _mm256_sign_epi8(a, q));
                    sumi[t] = _mm256_add_epi32(sumi[t], _mm256_madd_epi16(p, scv));
                }
            }
        }
        for t in 0..T {
            // SAFETY: scale of super-block i of token t0+t.
            let ya = unsafe { *da[t].add(i) };
            acc[t] = _mm256_fmadd_ps(_mm256_set1_ps(d * ya), _mm256_cvtepi32_ps(sumi[t]), acc[t]);
        }
    }
    for t in 0..T {
        out[t] = hsum_ps(acc[t]);
    }
}

k_entry!(dot_q2_k, tile_q2_k, 84);
#[target_feature(enable = "avx2,fma,f16c")]
fn tile_q2_k<const T: usize>(w: &[u8], acts: &Acts<'_>, t0: usize, out: &mut [f32]) {
    // SAFETY: `check` ran in the caller.
    let (qa, da, bs) = unsafe { q8k_ptrs::<T>(acts, t0) };
    let m2 = _mm256_set1_epi8(3);
    let mut acc = [_mm256_setzero_ps(); T];
    let mut accm = [_mm256_setzero_ps(); T];
    for (i, x) in w.chunks_exact(84).enumerate() {
        let x: &[u8; 84] = x.try_into().expect("block_q2_K");
        let dall = f16c(u16_at(x, 80));
        let dmin = f16c(u16_at(x, 82));
        // SAFETY: bytes 0..16 (scales) of the 84-byte block.
        let raw_sc = unsafe { ld128(x.as_ptr()) };
        let mins = _mm256_cvtepu8_epi16(_mm_and_si128(
            _mm_srli_epi16::<4>(raw_sc),
            _mm_set1_epi8(0x0f),
        ));
        let sc = split_scales16(_mm256_cvtepu8_epi16(_mm_and_si128(
            raw_sc,
            _mm_set1_epi8(0x0f),
        )));
        for t in 0..T {
            // SAFETY: group sums and scale of super-block i of token t0+t.
            let (b, ya) = unsafe { (ld(bs[t].add(32 * i)), *da[t].add(i)) };
            let prod = _mm256_madd_epi16(b, mins);
            accm[t] = _mm256_fmadd_ps(_mm256_set1_ps(dmin * ya), _mm256_cvtepi32_ps(prod), accm[t]);
        }
        let mut sumi = [_mm256_setzero_si256(); T];
        for c in 0..2 {
            // SAFETY: bytes 16 + 32c .. +32 (qs) of the 84-byte block.
            let raw = unsafe { ld(x.as_ptr().add(16 + 32 * c)) };
            for s in 0..4 {
                let cs = 4 * c + s;
                let q = _mm256_and_si256(srl16(raw, 2 * s as u32), m2);
                let scv = pair_i16(sc[c], s);
                for t in 0..T {
                    // SAFETY: quants 32cs..32cs+32 of super-block i of token t0+t.
                    let a = unsafe { ld(qa[t].add(QK_K * i + 32 * cs)) };
                    let p = _mm256_madd_epi16(_mm256_maddubs_epi16(q, a), scv);
                    sumi[t] = _mm256_add_epi32(sumi[t], p);
                }
            }
        }
        for t in 0..T {
            // SAFETY: scale of super-block i of token t0+t.
            let ya = unsafe { *da[t].add(i) };
            acc[t] = _mm256_fmadd_ps(
                _mm256_set1_ps(dall * ya),
                _mm256_cvtepi32_ps(sumi[t]),
                acc[t],
            );
        }
    }
    for t in 0..T {
        out[t] = hsum_ps(acc[t]) - hsum_ps(accm[t]);
    }
}

k_entry!(dot_iq4_xs, tile_iq4_xs, 136);
#[target_feature(enable = "avx2,fma,f16c")]
fn tile_iq4_xs<const T: usize>(w: &[u8], acts: &Acts<'_>, t0: usize, out: &mut [f32]) {
    // SAFETY: `check` ran in the caller.
    let (qa, da, _) = unsafe { q8k_ptrs::<T>(acts, t0) };
    // SAFETY: the table has 16 bytes.
    let table = _mm256_broadcastsi128_si256(unsafe { ld128(KVALUES_IQ4NL.as_ptr() as *const u8) });
    let mut acc = [_mm256_setzero_ps(); T];
    for (i, x) in w.chunks_exact(136).enumerate() {
        let x: &[u8; 136] = x.try_into().expect("block_iq4_xs");
        let d = f16c(u16_at(x, 0));
        let mut sumi = [_mm256_setzero_si256(); T];
        for g in 0..8 {
            // SAFETY: bytes 8 + 16g .. +16 of the 136-byte block.
            let raw = unsafe { ld128(x.as_ptr().add(8 + 16 * g)) };
            let q = _mm256_shuffle_epi8(table, nibbles_32(raw));
            let ax = _mm256_sign_epi8(q, q);
            let scv = _mm256_set1_epi16(iq4_xs_scale(x, g) as i16);
            for t in 0..T {
                // SAFETY: quants 32g..32g+32 of super-block i of token t0+t.
                let a = unsafe { ld(qa[t].add(QK_K * i + 32 * g)) };
                let p = _mm256_maddubs_epi16(ax, _mm256_sign_epi8(a, q));
                sumi[t] = _mm256_add_epi32(sumi[t], _mm256_madd_epi16(p, scv));
            }
        }
        for t in 0..T {
            // SAFETY: scale of super-block i of token t0+t.
            let ya = unsafe { *da[t].add(i) };
            acc[t] = _mm256_fmadd_ps(_mm256_set1_ps(d * ya), _mm256_cvtepi32_ps(sumi[t]), acc[t]);
        }
    }
    for t in 0..T {
        out[t] = hsum_ps(acc[t]);
    }
}

// ------------------------------------------------------------ float rows

/// Defines `dot_$name` for a float weight type: `$load(ptr) -> __m256`
/// converts 8 weights (or activations) at a pointer, `$scalar(w, a, i)` the
/// i-th product for the tail; tiles of up to 2 tokens, 4 accumulators each.
macro_rules! float_kernel {
    ($name:ident, $tile:ident, $wbytes:expr, $aptr:ident, $load_w:ident, $load_a:ident, $tail:expr) => {
        #[target_feature(enable = "avx2,fma,f16c")]
        unsafe fn $name(w: &[u8], acts: &Acts<'_>, t0: usize, out: &mut [f32]) {
            assert_eq!(w.len(), acts.ne0 * $wbytes, "weight row length");
            assert!(t0 + out.len() <= acts.n_tokens, "token range");
            tiles!(out, t0, 2, |tt, o| {
                1 => $tile::<1>(w, acts, tt, o),
                2 => $tile::<2>(w, acts, tt, o),
            });
        }

        #[target_feature(enable = "avx2,fma,f16c")]
        fn $tile<const T: usize>(w: &[u8], acts: &Acts<'_>, t0: usize, out: &mut [f32]) {
            let n = acts.ne0;
            let a: [_; T] = std::array::from_fn(|t| $aptr(acts, t0 + t));
            let mut acc = [[_mm256_setzero_ps(); 4]; T];
            let n32 = n / 32 * 32;
            for i in (0..n32).step_by(32) {
                for k in 0..4 {
                    // SAFETY: i + 8k + 8 <= n32 <= ne0 elements of the row.
                    let wv = unsafe { $load_w(w.as_ptr().add((i + 8 * k) * $wbytes)) };
                    for t in 0..T {
                        // SAFETY: as above, for token t0+t's ne0 activations.
                        let av = unsafe { $load_a(a[t].as_ptr().add(i + 8 * k)) };
                        acc[t][k] = _mm256_fmadd_ps(wv, av, acc[t][k]);
                    }
                }
            }
            for t in 0..T {
                let s = _mm256_add_ps(
                    _mm256_add_ps(acc[t][0], acc[t][1]),
                    _mm256_add_ps(acc[t][2], acc[t][3]),
                );
                let mut tail = 0.0f32;
                for i in n32..n {
                    tail += $tail(w, a[t], i);
                }
                out[t] = hsum_ps(s) + tail;
            }
        }
    };
}

fn f32_row<'a>(acts: &'a Acts<'_>, t: usize) -> &'a [f32] {
    acts.f_row(t)
}

fn h_row<'a>(acts: &'a Acts<'_>, t: usize) -> &'a [u16] {
    acts.h_row(t)
}

/// # Safety
/// 8 f32 readable at `p`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn load_f32w(p: *const u8) -> __m256 {
    // SAFETY: forwarded.
    unsafe { _mm256_loadu_ps(p as *const f32) }
}

/// # Safety
/// 8 f32 readable at `p`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn load_f32a(p: *const f32) -> __m256 {
    // SAFETY: forwarded.
    unsafe { _mm256_loadu_ps(p) }
}

/// # Safety
/// 8 f16 readable at `p`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn load_f16w(p: *const u8) -> __m256 {
    // SAFETY: forwarded.
    _mm256_cvtph_ps(unsafe { ld128(p) })
}

/// # Safety
/// 8 f16 readable at `p`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn load_f16a(p: *const u16) -> __m256 {
    // SAFETY: forwarded.
    _mm256_cvtph_ps(unsafe { ld128(p as *const u8) })
}

/// # Safety
/// 8 bf16 readable at `p`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn load_bf16w(p: *const u8) -> __m256 {
    // SAFETY: forwarded.
    let v = unsafe { ld128(p) };
    _mm256_castsi256_ps(_mm256_slli_epi32::<16>(_mm256_cvtepu16_epi32(v)))
}

/// # Safety
/// 8 bf16 readable at `p`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn load_bf16a(p: *const u16) -> __m256 {
    // SAFETY: forwarded.
    unsafe { load_bf16w(p as *const u8) }
}

fn tail_f32(w: &[u8], a: &[f32], i: usize) -> f32 {
    f32::from_le_bytes([w[4 * i], w[4 * i + 1], w[4 * i + 2], w[4 * i + 3]]) * a[i]
}

fn tail_f16(w: &[u8], a: &[u16], i: usize) -> f32 {
    f16_to_f32(u16_at(w, 2 * i)) * f16_to_f32(a[i])
}

fn tail_bf16(w: &[u8], a: &[u16], i: usize) -> f32 {
    crate::quant::bf16_to_f32(u16_at(w, 2 * i)) * crate::quant::bf16_to_f32(a[i])
}

float_kernel!(dot_f32, tile_f32, 4, f32_row, load_f32w, load_f32a, tail_f32);
float_kernel!(dot_f16, tile_f16, 2, h_row, load_f16w, load_f16a, tail_f16);
float_kernel!(dot_bf16, tile_bf16, 2, h_row, load_bf16w, load_bf16a, tail_bf16);

// ------------------------------------------------ activation quantizers

/// AVX2 twin of [`super::act::quantize_rows_scalar`] (bit-identical for
/// finite input).
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn quantize_rows(kind: ActKind, x: &[f32], out: ActRowsMut<'_>) {
    match kind {
        ActKind::Q8_0 => {
            for ((x, qs), d) in x
                .chunks_exact(32)
                .zip(out.qs.chunks_exact_mut(32))
                .zip(out.d)
            {
                let (dv, _) = q8_0_block(x.try_into().expect("32"), qs.try_into().expect("32"));
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
                let (dv, sum) = q8_0_block(x.try_into().expect("32"), qs.try_into().expect("32"));
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
                *d = q8k_block(
                    x.try_into().expect("256"),
                    qs.try_into().expect("256"),
                    bs.try_into().expect("16"),
                );
            }
        }
        ActKind::F16 => {
            let mut xs = x.chunks_exact(8);
            let mut hs = out.h.chunks_exact_mut(8);
            for (x, h) in (&mut xs).zip(&mut hs) {
                // SAFETY: 8 floats in, 8 halves (16 bytes) out.
                unsafe {
                    let v = _mm256_loadu_ps(x.as_ptr());
                    let p = _mm256_cvtps_ph::<{ _MM_FROUND_TO_NEAREST_INT }>(v);
                    _mm_storeu_si128(h.as_mut_ptr() as *mut __m128i, p);
                }
            }
            for (h, &v) in hs.into_remainder().iter_mut().zip(xs.remainder()) {
                *h = f32_to_f16(v);
            }
        }
        ActKind::BF16 => {
            let mut xs = x.chunks_exact(8);
            let mut hs = out.h.chunks_exact_mut(8);
            for (x, h) in (&mut xs).zip(&mut hs) {
                // SAFETY: 8 floats in, 8 bf16 (16 bytes) out.
                unsafe {
                    let n = _mm256_castps_si256(_mm256_loadu_ps(x.as_ptr()));
                    let abs = _mm256_and_si256(n, _mm256_set1_epi32(0x7fff_ffff));
                    let nan = _mm256_cmpgt_epi32(abs, _mm256_set1_epi32(0x7f80_0000));
                    let odd = _mm256_and_si256(_mm256_srli_epi32::<16>(n), _mm256_set1_epi32(1));
                    let rounded = _mm256_srli_epi32::<16>(_mm256_add_epi32(
                        n,
                        _mm256_add_epi32(_mm256_set1_epi32(0x7fff), odd),
                    ));
                    let quiet =
                        _mm256_or_si256(_mm256_srli_epi32::<16>(n), _mm256_set1_epi32(0x40));
                    let r = _mm256_blendv_epi8(rounded, quiet, nan);
                    let packed =
                        _mm256_permute4x64_epi64::<0b11_01_10_00>(_mm256_packus_epi32(r, r));
                    _mm_storeu_si128(
                        h.as_mut_ptr() as *mut __m128i,
                        _mm256_castsi256_si128(packed),
                    );
                }
            }
            for (h, &v) in hs.into_remainder().iter_mut().zip(xs.remainder()) {
                *h = crate::quant::f32_to_bf16(v);
            }
        }
        ActKind::F32 => {}
    }
}

/// Packs 4x8 i32 (each in -128..=127) into 32 i8 in order.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn pack_i32x32(i: [__m256i; 4]) -> __m256i {
    let p01 = _mm256_packs_epi32(i[0], i[1]);
    let p23 = _mm256_packs_epi32(i[2], i[3]);
    let p = _mm256_packs_epi16(p01, p23);
    _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7))
}

/// AVX2 twin of [`super::act::q8_act_block`] (ggml's run-time Q8_0/Q8_1
/// activation quantizer: `x * (127 / amax)` rounded half to even): returns
/// `(d, sum(qs))`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn q8_0_block(x: &[f32; 32], qs: &mut [i8; 32]) -> (f32, i32) {
    let sign = _mm256_set1_ps(-0.0);
    // SAFETY: 32 floats.
    let ldx = |k: usize| unsafe { _mm256_loadu_ps(x.as_ptr().add(8 * k)) };
    let v = [ldx(0), ldx(1), ldx(2), ldx(3)];
    let m01 = _mm256_max_ps(_mm256_andnot_ps(sign, v[0]), _mm256_andnot_ps(sign, v[1]));
    let m23 = _mm256_max_ps(_mm256_andnot_ps(sign, v[2]), _mm256_andnot_ps(sign, v[3]));
    let amax = hmax_ps(_mm256_max_ps(m01, m23));
    let d = amax / 127.0;
    let id = if amax != 0.0 { 127.0 / amax } else { 0.0 };
    let idv = _mm256_set1_ps(id);
    let cvt = |k: usize| {
        let y = _mm256_mul_ps(v[k], idv);
        _mm256_cvtps_epi32(_mm256_round_ps::<
            { _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC },
        >(y))
    };
    let i = [cvt(0), cvt(1), cvt(2), cvt(3)];
    let sum = hsum_epi32(_mm256_add_epi32(
        _mm256_add_epi32(i[0], i[1]),
        _mm256_add_epi32(i[2], i[3]),
    ));
    // SAFETY: 32 bytes out.
    unsafe { _mm256_storeu_si256(qs.as_mut_ptr() as *mut __m256i, pack_i32x32(i)) };
    (d, sum)
}

/// `quantize_q8_k`: returns `d`, writes the quants and the sums of 16.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn q8k_block(x: &[f32; QK_K], qs: &mut [i8; QK_K], bsums: &mut [i16; 16]) -> f32 {
    let sign = _mm256_set1_ps(-0.0);
    let mut m = _mm256_setzero_ps();
    for k in 0..QK_K / 8 {
        // SAFETY: 8 floats at 8k < 256.
        let v = unsafe { _mm256_loadu_ps(x.as_ptr().add(8 * k)) };
        m = _mm256_max_ps(m, _mm256_andnot_ps(sign, v));
    }
    let amax = hmax_ps(m);
    if amax == 0.0 {
        qs.fill(0);
        bsums.fill(0);
        return 0.0;
    }
    // The first element of largest magnitude, with its sign.
    let amaxv = _mm256_set1_ps(amax);
    let mut max = amax;
    for k in 0..QK_K / 8 {
        // SAFETY: 8 floats at 8k < 256.
        let v = unsafe { _mm256_loadu_ps(x.as_ptr().add(8 * k)) };
        let eq = _mm256_movemask_ps(_mm256_cmp_ps::<_CMP_EQ_OQ>(
            _mm256_andnot_ps(sign, v),
            amaxv,
        ));
        if eq != 0 {
            max = x[8 * k + eq.trailing_zeros() as usize];
            break;
        }
    }
    let iscale = -127.0 / max;
    let isv = _mm256_set1_ps(iscale);
    let lim = _mm256_set1_epi32(127);
    for g in 0..QK_K / 32 {
        let cvt = |k: usize| {
            // SAFETY: 8 floats at 32g + 8k < 256.
            let v = unsafe { _mm256_loadu_ps(x.as_ptr().add(32 * g + 8 * k)) };
            _mm256_min_epi32(_mm256_cvtps_epi32(_mm256_mul_ps(isv, v)), lim)
        };
        let i = [cvt(0), cvt(1), cvt(2), cvt(3)];
        bsums[2 * g] = hsum_epi32(_mm256_add_epi32(i[0], i[1])) as i16;
        bsums[2 * g + 1] = hsum_epi32(_mm256_add_epi32(i[2], i[3])) as i16;
        // SAFETY: 32 bytes at 32g < 256.
        unsafe {
            _mm256_storeu_si256(qs.as_mut_ptr().add(32 * g) as *mut __m256i, pack_i32x32(i));
        }
    }
    1.0 / iscale
}
