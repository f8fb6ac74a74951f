//! Unpacking and one-row kernels for the 32-weight block types with 8-bit values after
//! unpacking (Q4_0, Q5_0, Q8_0, IQ4_NL) times Q8_0 activations, and the one-row Q4_K kernel.
//!
//! For prompts, a group of up to [`GROUP`] weight rows is unpacked once per block of tokens
//! into int8 values and f32 block scales ([`GroupScratch`], interleaved so that one 32-byte
//! load holds four values of each of the eight rows), which the tile kernels
//! ([`super::tile`]) multiply with four tokens at a time. For decoding, a row is read in place
//! from start to end ([`avx2::row_dot_direct`], [`avx2_k4::k4_row_dot_direct`]).
//!
//! The numerics are fixed per row, independent of the group and of the tokens: eight
//! accumulators, block `b` going to accumulator `b % 8` as
//! `acc[b % 8] = fma(d_w[b] * d_x[b], float(sum_i q_w[i] * q_x[i]), acc[b % 8])` (the integer
//! block sum exact, blocks in order), then `((a0 + a1) + (a2 + a3)) + ((a4 + a5) + (a6 + a7))`.
//! Eight independent chains let a single row be computed as fast as the memory delivers it
//! (decoding); the scalar twins ([`super::tile::q8_row_dot_scalar`]) compute exactly the same,
//! so SIMD and scalar results are bit-identical, and decode and prefill give the same bits.

#![allow(unsafe_code)]

use hearth_gguf::GgmlType;

use super::act::Acts;
use crate::cpu::CpuLevel;
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
    /// The SIMD layout: per block `b` and group of four values `k`, the eight rows' four
    /// values (`qi[((b * 8 + k) * GROUP + r) * 4..][..4]`), so that one 32-byte load holds a
    /// slice of every row (written for the sign trick only); `qabs` the same, absolute values, or for the types with an
    /// [`unsigned_offset`] the values plus that offset (0..16 or 0..32).
    pub(crate) qi: Vec<i8>,
    pub(crate) qabs: Vec<u8>,
}

impl GroupScratch {
    /// Sizes the buffers for `nb` blocks and zeroes the scales of the rows from `n_rows` on
    /// (their values are then multiplied by 0, whatever an earlier group left there).
    fn prepare(&mut self, nb: usize, n_rows: usize) {
        if self.d.len() != nb * GROUP {
            self.q = vec![0; nb * GROUP * 32];
            self.d = vec![0.0; nb * GROUP];
            self.qi = vec![0; nb * GROUP * 32];
            self.qabs = vec![0; nb * GROUP * 32];
        }
        for b in 0..nb {
            self.d[b * GROUP + n_rows.min(GROUP)..(b + 1) * GROUP].fill(0.0);
        }
    }
}

/// Which row-group kernels a type has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum GroupKind {
    /// 32-value blocks of signed 8-bit values after unpacking, times Q8_0.
    Q8,
    /// Q4_K times Q8_K.
    Q4K,
    /// Q6_K times Q8_K.
    Q6K,
    /// Q5_K times Q8_K (AVX-512 VNNI only: [`super::kgroup`]).
    Q5K,
    /// IQ4_XS times Q8_K (AVX-512 VNNI only: [`super::kgroup`]).
    Iq4Xs,
}

/// The row-group kernels of `ty` for kernels of level `code`, if any.
pub(crate) fn group_kind(ty: GgmlType, code: CpuLevel) -> Option<GroupKind> {
    match ty {
        GgmlType::Q5_K if code >= CpuLevel::Avx512 => Some(GroupKind::Q5K),
        GgmlType::IQ4_XS if code >= CpuLevel::Avx512 => Some(GroupKind::Iq4Xs),
        GgmlType::Q4_0 | GgmlType::Q5_0 | GgmlType::Q8_0 | GgmlType::IQ4_NL => Some(GroupKind::Q8),
        GgmlType::Q4_K => Some(GroupKind::Q4K),
        GgmlType::Q6_K => Some(GroupKind::Q6K),
        _ => None,
    }
}

/// The offset that makes `ty`'s unpacked values unsigned and small enough for 16-bit sums of
/// several `maddubs` results: 8 for Q4_0 (0..16), 16 for Q5_0 (0..32), 0 for the types
/// multiplied with the sign trick.
pub(crate) fn unsigned_offset(ty: GgmlType) -> u8 {
    match ty {
        GgmlType::Q4_0 => 8,
        GgmlType::Q5_0 => 16,
        _ => 0,
    }
}

/// The offset of `ty`'s unpacked values for the VNNI kernels (`vpdpbusd` multiplies unsigned
/// bytes with signed ones and sums in 32 bits, so any offset that makes the values unsigned
/// works): [`unsigned_offset`] for Q4_0 and Q5_0, 128 for Q8_0 and IQ4_NL.
pub(crate) fn vnni_offset(ty: GgmlType) -> u8 {
    match unsigned_offset(ty) {
        0 => 128,
        off => off,
    }
}

/// Bytes of one block of `ty`.
pub(crate) fn block_bytes(ty: GgmlType) -> usize {
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

/// The sums of token `t`'s Q8_0 activation blocks (for the unsigned-offset kernels).
pub(crate) fn block_sums(acts: &Acts<'_>, t: usize) -> Vec<i32> {
    acts.qs_row(t)
        .chunks_exact(32)
        .take(acts.nb)
        .map(|a| a.iter().map(|&v| i32::from(v)).sum())
        .collect()
}

/// The fixed order in which the eight accumulators are added.
#[inline]
pub(crate) fn sum8(a: &[f32; 8]) -> f32 {
    ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7]))
}

#[cfg(target_arch = "x86_64")]
pub(crate) mod avx2 {
    use std::arch::x86_64::*;

    use super::{block_bytes, GroupScratch, GROUP};
    use crate::matmul::act::Acts;
    use crate::matmul::x86_avx2::{
        bytes_from_bits_32, ld, ld128, nibbles_32, unpack_iq4_nl, unpack_q4_0, unpack_q5_0,
        unpack_q8_0,
    };
    use hearth_gguf::GgmlType;

    /// Unpacks `rows` (at most [`GROUP`], each `nb` blocks of `ty`) into `s`, `qabs` holding
    /// the values plus `off` (the AVX2 kernels' [`unsigned_offset`](super::unsigned_offset)
    /// or the VNNI kernels' [`vnni_offset`](super::vnni_offset)), or their absolute values
    /// for `off == 0`.
    ///
    /// # Safety
    /// The CPU must support AVX2, FMA and F16C; every row must hold `nb` blocks of `ty`.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(crate) unsafe fn unpack_group(
        ty: GgmlType,
        rows: &[&[u8]],
        nb: usize,
        s: &mut GroupScratch,
        off: u8,
    ) {
        let bb = block_bytes(ty);
        s.prepare(nb, rows.len());
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
        // What `qabs` holds: the values plus `off` (wrapping: -128..128 + 128 is 0..256 as
        // bytes), or absolute values.
        let offv = _mm256_set1_epi8(off as i8);
        let abs_or_offset = |v: __m256i| {
            if off == 0 {
                _mm256_sign_epi8(v, v)
            } else {
                _mm256_add_epi8(v, offv)
            }
        };
        // The interleaved layout: a transpose of each block's 8 rows x 8 groups of 4 bytes.
        for b in 0..nb {
            // SAFETY: `q`, `qi`, `qabs` hold nb * GROUP * 32 bytes; block b's 8 rows are the
            // 256 bytes at b * 256.
            unsafe {
                let src = s.q.as_ptr().add(b * GROUP * 32) as *const u8;
                let out = interleave8(std::array::from_fn(|i| ld(src.add(32 * i))));
                for (k, v) in out.iter().enumerate() {
                    let o = (b * 8 + k) * 32;
                    // Only the sign trick reads the signed values.
                    if off == 0 {
                        _mm256_storeu_si256(s.qi.as_mut_ptr().add(o) as *mut __m256i, *v);
                    }
                    _mm256_storeu_si256(
                        s.qabs.as_mut_ptr().add(o) as *mut __m256i,
                        abs_or_offset(*v),
                    );
                }
            }
        }
    }

    /// The interleaved layout of one block of eight rows: `r[i]` holds row i's 32 values;
    /// vector k of the result holds values 4k..4k + 4 of rows 0..8 (a transpose of 8 x 8
    /// groups of 4 bytes).
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(crate) fn interleave8(r: [__m256i; 8]) -> [__m256i; 8] {
        let t: [__m256i; 8] = [
            _mm256_unpacklo_epi32(r[0], r[1]),
            _mm256_unpackhi_epi32(r[0], r[1]),
            _mm256_unpacklo_epi32(r[2], r[3]),
            _mm256_unpackhi_epi32(r[2], r[3]),
            _mm256_unpacklo_epi32(r[4], r[5]),
            _mm256_unpackhi_epi32(r[4], r[5]),
            _mm256_unpacklo_epi32(r[6], r[7]),
            _mm256_unpackhi_epi32(r[6], r[7]),
        ];
        let u: [__m256i; 8] = [
            _mm256_unpacklo_epi64(t[0], t[2]),
            _mm256_unpackhi_epi64(t[0], t[2]),
            _mm256_unpacklo_epi64(t[1], t[3]),
            _mm256_unpackhi_epi64(t[1], t[3]),
            _mm256_unpacklo_epi64(t[4], t[6]),
            _mm256_unpackhi_epi64(t[4], t[6]),
            _mm256_unpacklo_epi64(t[5], t[7]),
            _mm256_unpackhi_epi64(t[5], t[7]),
        ];
        [
            _mm256_permute2x128_si256::<0x20>(u[0], u[4]),
            _mm256_permute2x128_si256::<0x20>(u[1], u[5]),
            _mm256_permute2x128_si256::<0x20>(u[2], u[6]),
            _mm256_permute2x128_si256::<0x20>(u[3], u[7]),
            _mm256_permute2x128_si256::<0x31>(u[0], u[4]),
            _mm256_permute2x128_si256::<0x31>(u[1], u[5]),
            _mm256_permute2x128_si256::<0x31>(u[2], u[6]),
            _mm256_permute2x128_si256::<0x31>(u[3], u[7]),
        ]
    }

    /// [`interleave8`] for `n` chunks of eight rows x 32 bytes: chunk c's rows are the 256
    /// bytes at `c * 256` of `src`, its interleaved vectors go to the same place in `dst`.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(crate) fn interleave_chunks(src: &[u8], dst: &mut [u8], n: usize) {
        assert!(src.len() >= n * GROUP * 32 && dst.len() >= n * GROUP * 32);
        for c in 0..n {
            // SAFETY: 256 bytes at c * 256 < n * 256 of both (asserted).
            unsafe {
                let p = src.as_ptr().add(c * GROUP * 32);
                let out = interleave8(std::array::from_fn(|i| ld(p.add(32 * i))));
                for (k, v) in out.iter().enumerate() {
                    let d = dst.as_mut_ptr().add((c * 8 + k) * 32);
                    _mm256_storeu_si256(d as *mut __m256i, *v);
                }
            }
        }
    }

    /// One row times token `t`, reading the row in place from start to end (one memory stream,
    /// which the hardware prefetcher follows; for decoding). Bit-identical to the row's lane
    /// of the tile kernels: the integer sums of eight blocks at a time are reduced into one
    /// vector whose lane k is accumulator k.
    ///
    /// Q4_0 and Q5_0 multiply their unsigned values (no sign operations) and subtract
    /// [`unsigned_offset`](super::unsigned_offset) times `asum`, the token's block sums ([`block_sums`]); the other
    /// types ignore `asum`.
    ///
    /// # Safety
    /// The CPU must support AVX2, FMA and F16C; `row` must hold the blocks of `acts`' rows
    /// and token `t` must exist.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(crate) unsafe fn row_dot_direct(
        ty: GgmlType,
        row: &[u8],
        acts: &Acts<'_>,
        t: usize,
        asum: &[i32],
    ) -> f32 {
        // One copy of the loop per type, so that the unpacking is inlined.
        // SAFETY: forwarded.
        unsafe {
            match ty {
                GgmlType::Q4_0 => row_dot_t::<0>(row, acts, t, asum),
                GgmlType::Q5_0 => row_dot_t::<1>(row, acts, t, asum),
                GgmlType::IQ4_NL => row_dot_t::<2>(row, acts, t, asum),
                _ => row_dot_t::<3>(row, acts, t, asum),
            }
        }
    }

    /// The unsigned values of a Q4_0 (0..16) or Q5_0 (0..32) block.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn unpack_unsigned<const TY: u8>(x: &[u8]) -> __m256i {
        if TY == 0 {
            // SAFETY: bytes 2..18 of an 18-byte block.
            nibbles_32(unsafe { ld128(x[..18].as_ptr().add(2)) })
        } else {
            let qh = u32::from_le_bytes([x[2], x[3], x[4], x[5]]);
            // SAFETY: bytes 6..22 of a 22-byte block.
            let raw = unsafe { ld128(x[..22].as_ptr().add(6)) };
            let high = _mm256_and_si256(bytes_from_bits_32(qh), _mm256_set1_epi8(0x10));
            _mm256_or_si256(nibbles_32(raw), high)
        }
    }

    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn unpack_t<const TY: u8>(x: &[u8]) -> (f32, __m256i) {
        match TY {
            0 => unpack_q4_0(x),
            1 => unpack_q5_0(x),
            2 => unpack_iq4_nl(x),
            _ => unpack_q8_0(x),
        }
    }

    /// `asum` (at most 8 block sums) shifted left by `shift`, zeros after.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn offset_correction(asum: &[i32], shift: __m128i) -> __m256i {
        let v = if asum.len() >= GROUP {
            // SAFETY: 8 i32.
            unsafe { _mm256_loadu_si256(asum.as_ptr() as *const __m256i) }
        } else {
            let mut v = [0i32; GROUP];
            v[..asum.len()].copy_from_slice(asum);
            // SAFETY: 8 i32.
            unsafe { _mm256_loadu_si256(v.as_ptr() as *const __m256i) }
        };
        _mm256_sll_epi32(v, shift)
    }

    /// Block `x`'s integer products with the 32 activations at `a`, as 8 lanes of partial
    /// sums: unsigned values for Q4_0 and Q5_0 (without the offset), the sign trick otherwise.
    ///
    /// # Safety
    /// `a` must point to 32 readable bytes; `x` must start with a block of the type.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn block_prod<const TY: u8>(a: *const u8, x: &[u8]) -> __m256i {
        let ones = _mm256_set1_epi16(1);
        // SAFETY: forwarded to the caller.
        let a = unsafe { ld(a) };
        if TY <= 1 {
            return _mm256_madd_epi16(_mm256_maddubs_epi16(unpack_unsigned::<TY>(x), a), ones);
        }
        let (_, w) = unpack_t::<TY>(x);
        _mm256_madd_epi16(
            _mm256_maddubs_epi16(_mm256_sign_epi8(w, w), _mm256_sign_epi8(a, w)),
            ones,
        )
    }

    /// Defines the one-row loop `$name::<TY>` with the block product `$prod` (whose values
    /// carry the offset `$off(TY)`, 0 for the sign trick), compiled for `$feat`.
    macro_rules! row_dot_loop {
        ($name:ident, $feat:literal, $prod:ident, $sums8:ident, $off:expr) => {
            /// # Safety
            /// As [`row_dot_direct`].
            #[target_feature(enable = $feat)]
            unsafe fn $name<const TY: u8>(
                row: &[u8],
                acts: &Acts<'_>,
                t: usize,
                asum: &[i32],
            ) -> f32 {
                let bb = match TY {
                    0 | 2 => 18,
                    1 => 22,
                    _ => 34,
                };
                let off: u8 = $off(TY);
                let unsigned = off != 0;
                let (qa, da) = (acts.qs_row(t), acts.d_row(t));
                let nb = da.len();
                assert!(
                    qa.len() >= nb * 32 && row.len() >= nb * bb && (!unsigned || asum.len() >= nb)
                );
                // log2 of the offset (8, 16 or 128).
                let shift = _mm_cvtsi32_si128(off.trailing_zeros() as i32);
                macro_rules! prod {
                    ($b:expr) => {{
                        let b = $b;
                        // SAFETY: block b < nb of the token and of the row (asserted above).
                        unsafe {
                            $prod::<TY>(
                                qa.as_ptr().add(32 * b) as *const u8,
                                &row[b * bb..(b + 1) * bb],
                            )
                        }
                    }};
                }
                // The block sums of blocks b0.. (k < n) as the offset's multiples, to subtract.
                macro_rules! correction {
                    ($b0:expr, $n:expr) => {
                        if unsigned {
                            offset_correction(&asum[$b0..$b0 + $n], shift)
                        } else {
                            _mm256_setzero_si256()
                        }
                    };
                }
                let scale = |b: usize| -> i16 {
                    // SAFETY: the f16 scale at the start of block b < nb (asserted above).
                    unsafe { (row.as_ptr().add(b * bb) as *const i16).read_unaligned() }
                };
                // Lane k: the accumulator of blocks b with b % 8 == k.
                let mut acc = _mm256_setzero_ps();
                let mut b0 = 0;
                while b0 + GROUP <= nb {
                    // SAFETY: blocks b0..b0 + 8 <= nb of the token and of the row (asserted).
                    let sums = unsafe {
                        $sums8::<TY>(
                            qa.as_ptr().add(32 * b0) as *const u8,
                            &row[b0 * bb..(b0 + GROUP) * bb],
                        )
                    };
                    let dw = _mm256_cvtph_ps(_mm_setr_epi16(
                        scale(b0),
                        scale(b0 + 1),
                        scale(b0 + 2),
                        scale(b0 + 3),
                        scale(b0 + 4),
                        scale(b0 + 5),
                        scale(b0 + 6),
                        scale(b0 + 7),
                    ));
                    // SAFETY: blocks b0..b0 + 8 <= nb.
                    let dx = unsafe { _mm256_loadu_ps(da.as_ptr().add(b0)) };
                    let isum = _mm256_cvtepi32_ps(_mm256_sub_epi32(sums, correction!(b0, GROUP)));
                    acc = _mm256_fmadd_ps(_mm256_mul_ps(dw, dx), isum, acc);
                    b0 += GROUP;
                }
                if b0 < nb {
                    // The last n < 8 blocks, built in registers (no scalar stores read back as
                    // vectors): the missing lanes multiply zero sums by zero scales.
                    let n = nb - b0;
                    let mut p = [_mm256_setzero_si256(); GROUP];
                    for (k, p) in p.iter_mut().enumerate().take(n) {
                        *p = prod!(b0 + k);
                    }
                    let sc = |k: usize| if k < n { scale(b0 + k) } else { 0 };
                    let dwv = _mm256_cvtph_ps(_mm_setr_epi16(
                        sc(0),
                        sc(1),
                        sc(2),
                        sc(3),
                        sc(4),
                        sc(5),
                        sc(6),
                        sc(7),
                    ));
                    let mask = _mm256_cmpgt_epi32(
                        _mm256_set1_epi32(n as i32),
                        _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
                    );
                    // SAFETY: lanes k < n read blocks b0 + k < nb of `da` (and of `asum`,
                    // whose length was asserted for the offset types); the others are masked.
                    let (dxv, corr) = unsafe {
                        let dxv = _mm256_maskload_ps(da.as_ptr().add(b0), mask);
                        let corr = if unsigned {
                            _mm256_sll_epi32(
                                _mm256_maskload_epi32(asum.as_ptr().add(b0), mask),
                                shift,
                            )
                        } else {
                            _mm256_setzero_si256()
                        };
                        (dxv, corr)
                    };
                    let isum = _mm256_cvtepi32_ps(_mm256_sub_epi32(reduce8(&p), corr));
                    acc = _mm256_fmadd_ps(_mm256_mul_ps(dwv, dxv), isum, acc);
                }
                let mut lanes = [0.0f32; 8];
                // SAFETY: 8 floats out.
                unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), acc) };
                super::sum8(&lanes)
            }
        };
    }

    row_dot_loop!(row_dot_t, "avx2,fma,f16c", block_prod, sums8, avx2_offset);
    row_dot_loop!(
        row_dot_vnni_t,
        "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c",
        block_prod_vnni,
        sums8_zmm,
        vnni_offset_of
    );

    /// Lane k: the integer sum of block k of the eight blocks at `x` (the row) times the
    /// activations at `a`, from [`block_prod`].
    ///
    /// # Safety
    /// `a` must point to 256 readable bytes; `x` must hold eight blocks of the type.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn sums8<const TY: u8>(a: *const u8, x: &[u8]) -> __m256i {
        let bb = x.len() / GROUP;
        let mut p = [_mm256_setzero_si256(); GROUP];
        for (k, p) in p.iter_mut().enumerate() {
            // SAFETY: forwarded to the caller.
            *p = unsafe { block_prod::<TY>(a.add(32 * k), &x[k * bb..(k + 1) * bb]) };
        }
        reduce8(&p)
    }

    /// [`sums8`] with 512-bit `vpdpbusd` on pairs of blocks (values plus the VNNI offset):
    /// Q4_0 and Q5_0 nibbles spread over 64 bytes with one variable shift (Q5_0's fifth bits
    /// added under a 64-bit mask), Q8_0 as two loads; IQ4_NL block by block.
    ///
    /// # Safety
    /// As [`sums8`]; the CPU must support AVX-512 F/BW/VL/VNNI.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
    unsafe fn sums8_zmm<const TY: u8>(a: *const u8, x: &[u8]) -> __m256i {
        let bb = x.len() / GROUP;
        if TY == 2 {
            let mut p = [_mm256_setzero_si256(); GROUP];
            for (k, p) in p.iter_mut().enumerate() {
                // SAFETY: forwarded to the caller.
                *p = unsafe { block_prod_vnni::<TY>(a.add(32 * k), &x[k * bb..(k + 1) * bb]) };
            }
            return reduce8(&p);
        }
        // i16 shift counts: 0 for the low nibbles (values 0..16 of a block), 4 for the high.
        let cnt = _mm512_set_epi64(
            0x0004_0004_0004_0004,
            0x0004_0004_0004_0004,
            0,
            0,
            0x0004_0004_0004_0004,
            0x0004_0004_0004_0004,
            0,
            0,
        );
        let mut p = [_mm512_setzero_si512(); 4];
        for (i, p) in p.iter_mut().enumerate() {
            let (x0, x1) = (&x[2 * i * bb..], &x[(2 * i + 1) * bb..]);
            // SAFETY: the pair's bytes are within the eight blocks; 64 activations at a + 64i.
            let (w, av) = unsafe {
                let w = if TY == 3 {
                    let z = _mm512_inserti64x4::<1>(
                        _mm512_castsi256_si512(ld(x0.as_ptr().add(2))),
                        ld(x1.as_ptr().add(2)),
                    );
                    _mm512_xor_si512(z, _mm512_set1_epi8(-128))
                } else {
                    let o = if TY == 0 { 2 } else { 6 };
                    let b0 = _mm256_broadcastsi128_si256(ld128(x0.as_ptr().add(o)));
                    let b1 = _mm256_broadcastsi128_si256(ld128(x1.as_ptr().add(o)));
                    let z = _mm512_inserti64x4::<1>(_mm512_castsi256_si512(b0), b1);
                    let w = _mm512_and_si512(_mm512_srlv_epi16(z, cnt), _mm512_set1_epi8(0x0f));
                    if TY == 1 {
                        let qh = |x: &[u8]| u64::from(u32::from_le_bytes([x[2], x[3], x[4], x[5]]));
                        let m: __mmask64 = qh(x0) | (qh(x1) << 32);
                        _mm512_mask_add_epi8(w, m, w, _mm512_set1_epi8(16))
                    } else {
                        w
                    }
                };
                (w, _mm512_loadu_si512(a.add(64 * i) as *const _))
            };
            *p = _mm512_dpbusd_epi32(_mm512_setzero_si512(), w, av);
        }
        // p[i]: lanes 0..8 block 2i, 8..16 block 2i + 1. Sum each half, blocks in order.
        let s01 = _mm512_add_epi32(
            _mm512_unpacklo_epi32(p[0], p[1]),
            _mm512_unpackhi_epi32(p[0], p[1]),
        );
        let s23 = _mm512_add_epi32(
            _mm512_unpacklo_epi32(p[2], p[3]),
            _mm512_unpackhi_epi32(p[2], p[3]),
        );
        // 128-bit lane l: the four-lane sums of p[0..4] there.
        let t = _mm512_add_epi32(
            _mm512_unpacklo_epi64(s01, s23),
            _mm512_unpackhi_epi64(s01, s23),
        );
        // Lanes (0, 2) and (1, 3) side by side, then added: blocks 0, 2, 4, 6 | 1, 3, 5, 7.
        let u = _mm512_shuffle_i64x2::<0b11_01_10_00>(t, t);
        let v = _mm256_add_epi32(_mm512_castsi512_si256(u), _mm512_extracti64x4_epi64::<1>(u));
        _mm256_permutevar8x32_epi32(v, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7))
    }

    /// The AVX2 one-row loop's offset for type code `ty` (Q4_0 8, Q5_0 16, others the sign
    /// trick).
    const fn avx2_offset(ty: u8) -> u8 {
        match ty {
            0 => 8,
            1 => 16,
            _ => 0,
        }
    }

    /// The VNNI one-row loop's offset for type code `ty` (Q4_0 8, Q5_0 16, others 128).
    const fn vnni_offset_of(ty: u8) -> u8 {
        match ty {
            0 => 8,
            1 => 16,
            _ => 128,
        }
    }

    /// [`block_prod`] with `vpdpbusd`: the values plus the type's VNNI offset times the
    /// activations, four products per lane.
    ///
    /// # Safety
    /// `a` must point to 32 readable bytes; `x` must start with a block of the type.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
    unsafe fn block_prod_vnni<const TY: u8>(a: *const u8, x: &[u8]) -> __m256i {
        // SAFETY: forwarded to the caller.
        let a = unsafe { ld(a) };
        let wu = if TY <= 1 {
            unpack_unsigned::<TY>(x)
        } else {
            let (_, w) = unpack_t::<TY>(x);
            _mm256_xor_si256(w, _mm256_set1_epi8(-128))
        };
        _mm256_dpbusd_epi32(_mm256_setzero_si256(), wu, a)
    }

    /// [`row_dot_direct`] with AVX-512 VNNI (`vpdpbusd` on 256 bits): every type multiplies
    /// unsigned values (Q8_0 and IQ4_NL offset by 128) and subtracts the offset times `asum`,
    /// which must hold the token's block sums for every type. Bit-identical to the AVX2
    /// kernel and the scalar twin.
    ///
    /// # Safety
    /// The CPU must support AVX-512 F/BW/VL/VNNI, AVX2, FMA and F16C; as [`row_dot_direct`].
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
    pub(crate) unsafe fn row_dot_direct_vnni(
        ty: GgmlType,
        row: &[u8],
        acts: &Acts<'_>,
        t: usize,
        asum: &[i32],
    ) -> f32 {
        // SAFETY: forwarded.
        unsafe {
            match ty {
                GgmlType::Q4_0 => row_dot_vnni_t::<0>(row, acts, t, asum),
                GgmlType::Q5_0 => row_dot_vnni_t::<1>(row, acts, t, asum),
                GgmlType::IQ4_NL => row_dot_vnni_t::<2>(row, acts, t, asum),
                _ => row_dot_vnni_t::<3>(row, acts, t, asum),
            }
        }
    }

    /// Lane k = the sum of `p[k]`'s eight i32 lanes.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) fn reduce8(p: &[__m256i; GROUP]) -> __m256i {
        let s01 = _mm256_hadd_epi32(p[0], p[1]);
        let s23 = _mm256_hadd_epi32(p[2], p[3]);
        let s45 = _mm256_hadd_epi32(p[4], p[5]);
        let s67 = _mm256_hadd_epi32(p[6], p[7]);
        let s0123 = _mm256_hadd_epi32(s01, s23);
        let s4567 = _mm256_hadd_epi32(s45, s67);
        _mm256_add_epi32(
            _mm256_permute2x128_si256::<0x20>(s0123, s4567),
            _mm256_permute2x128_si256::<0x31>(s0123, s4567),
        )
    }
}

// ------------------------------------------------------------------ Q4_K

#[cfg(target_arch = "x86_64")]
pub(crate) mod avx2_k4 {
    use std::arch::x86_64::*;

    use crate::matmul::act::Acts;
    use crate::matmul::x86_avx2::ld;

    /// The pair sums of a super-block's 16 bsums (one i16 per 32-value sub-block).
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(crate) fn bsum_pairs(bs: &[i16]) -> __m128i {
        assert!(bs.len() >= 16);
        // SAFETY: 16 i16 asserted.
        let bsv = unsafe { _mm256_loadu_si256(bs.as_ptr() as *const __m256i) };
        let bsp = _mm256_madd_epi16(bsv, _mm256_set1_epi16(1));
        _mm_packs_epi32(
            _mm256_castsi256_si128(bsp),
            _mm256_extracti128_si256::<1>(bsp),
        )
    }

    /// One Q4_K row read in place against token `t`: [`k4_dot`]'s result for that row (the
    /// same exact integer block sums and the same two fused steps per block), without
    /// unpacking. Decode steps use it: one stream through memory per row is faster than
    /// eight rows read side by side.
    ///
    /// # Safety
    /// The CPU must support AVX2, FMA and F16C; `row` must hold the blocks of `acts`' rows;
    /// token `t` must exist.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(crate) unsafe fn k4_row_dot_direct(row: &[u8], acts: &Acts<'_>, t: usize) -> f32 {
        use crate::matmul::x86_avx2::{bcast_i16, f16c, k4_scales_mins};
        let (qa, da, bs) = (acts.qs_row(t), acts.d_row(t), acts.bsums_row(t));
        let nb = da.len();
        assert!(qa.len() >= nb * 256 && bs.len() >= nb * 16 && row.len() >= nb * 144);
        let m4 = _mm256_set1_epi8(0x0f);
        let mut acc = 0.0f32;
        for (b, &yd) in da.iter().enumerate() {
            let a = qa.as_ptr().wrapping_add(256 * b) as *const u8;
            let x: &[u8; 144] = row[b * 144..(b + 1) * 144].try_into().expect("block");
            let ms = k4_scales_mins(x[4..16].try_into().expect("12 bytes"));
            let m = _mm_madd_epi16(_mm256_extracti128_si256::<1>(ms), bsum_pairs(&bs[16 * b..]));
            let scales = _mm256_permute2x128_si256::<0x00>(ms, ms);
            let mut sum = _mm256_setzero_si256();
            for j in 0..4 {
                // SAFETY: bytes 16 + 32j .. +32 of the block; quants 64j..64j+64 of the
                // token's super-block (lengths asserted above).
                let (raw, a_lo, a_hi) = unsafe {
                    (
                        ld(x.as_ptr().add(16 + 32 * j)),
                        ld(a.add(64 * j)),
                        ld(a.add(64 * j + 32)),
                    )
                };
                let lo = _mm256_and_si256(raw, m4);
                let hi = _mm256_and_si256(_mm256_srli_epi16::<4>(raw), m4);
                let p_lo =
                    _mm256_madd_epi16(_mm256_maddubs_epi16(lo, a_lo), bcast_i16(scales, 2 * j));
                let p_hi =
                    _mm256_madd_epi16(_mm256_maddubs_epi16(hi, a_hi), bcast_i16(scales, 2 * j + 1));
                sum = _mm256_add_epi32(sum, _mm256_add_epi32(p_lo, p_hi));
            }
            let i1 = hsum_i32x8(sum);
            let i2 = hsum_i32x4(m);
            let d = f16c(u16::from_le_bytes([x[0], x[1]]));
            let dm = f16c(u16::from_le_bytes([x[2], x[3]]));
            acc = (d * yd).mul_add(i1 as f32, acc);
            acc = (-(dm * yd)).mul_add(i2 as f32, acc);
        }
        acc
    }

    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn hsum_i32x4(v: __m128i) -> i32 {
        let v = _mm_add_epi32(v, _mm_shuffle_epi32::<0b01_00_11_10>(v));
        let v = _mm_add_epi32(v, _mm_shuffle_epi32::<0b10_11_00_01>(v));
        _mm_cvtsi128_si32(v)
    }

    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn hsum_i32x8(v: __m256i) -> i32 {
        hsum_i32x4(_mm_add_epi32(
            _mm256_castsi256_si128(v),
            _mm256_extracti128_si256::<1>(v),
        ))
    }
}
