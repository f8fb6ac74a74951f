//! AVX-512 VNNI one-row kernels for decoding (a row read in place, times one token): Q4_K,
//! Q5_K, Q6_K and IQ4_XS times Q8_K.
//!
//! Each 64 weights go through one `vpdpbusd` with the token's 64 values (sums of four
//! products per 32-bit lane, small enough for 16 bits), two such results are packed to 16
//! bits and multiplied by the sub-blocks' scales with one `vpdpwssd`, and the super-block's
//! exact integer sum is reduced once. IQ4_XS's table values plus 128 give sums too large for
//! 16 bits, so its products are scaled in 32 bits ([`super::kgroup`]). The float steps per
//! super-block are the scalar twins' ([`super::tile::k4_row_dot_scalar`],
//! [`super::tile_k6::k6_row_dot_scalar`], [`super::scalar::vec_dot_q5_k_q8_k_scalar`],
//! [`super::scalar::vec_dot_iq4_xs_q8_k_scalar`]), so
//! the results have the same bits as every other kernel for these types.

#![allow(unsafe_code)]

#[cfg(target_arch = "x86_64")]
pub(crate) mod avx512 {
    use std::arch::x86_64::*;

    use crate::matmul::act::Acts;
    use crate::matmul::kgroup::{KVALUES_U8, XS_BYTES};
    use crate::matmul::tile::K5_BYTES;
    use crate::matmul::tile_k6::Q6K_BYTES;
    use crate::matmul::x86_avx2::{f16c, k4_scales_mins, ld128};
    use crate::matmul::x86_avx512::{idx512, ld512};

    /// i16 lane indices: 128-bit lane `l` takes element `a[l]` four times, then `b[l]`.
    const fn quad_idx(a: [u16; 4], b: [u16; 4]) -> [u16; 32] {
        let mut idx = [0u16; 32];
        let mut l = 0;
        while l < 4 {
            let mut i = 0;
            while i < 4 {
                idx[8 * l + i] = a[l];
                idx[8 * l + 4 + i] = b[l];
                i += 1;
            }
            l += 1;
        }
        idx
    }

    /// Q4_K: after `packs(p0, p1)` of the products of sub-blocks (0 | 1) and (2 | 3), 128-bit
    /// lanes 0 and 1 hold sub-blocks 0 and 2, lanes 2 and 3 sub-blocks 1 and 3 (then 4..8).
    static K4_IDX: [[u16; 32]; 2] = [
        quad_idx([0, 0, 1, 1], [2, 2, 3, 3]),
        quad_idx([4, 4, 5, 5], [6, 6, 7, 7]),
    ];
    /// Q6_K: `packs` of the products of values 128c..+64 and 128c+64..+64: lane l holds the
    /// 16-value sub-blocks 8c + l and 8c + 4 + l.
    static K6_IDX: [[u16; 32]; 2] = [
        quad_idx([0, 1, 2, 3], [4, 5, 6, 7]),
        quad_idx([8, 9, 10, 11], [12, 13, 14, 15]),
    ];

    /// 32 bytes at `p` in both halves of a zmm.
    ///
    /// # Safety
    /// `p..p + 32` must be readable.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
    unsafe fn bcast256(p: *const u8) -> __m512i {
        // SAFETY: forwarded to the caller.
        _mm512_broadcast_i64x4(unsafe { _mm256_loadu_si256(p as *const __m256i) })
    }

    /// i16 shift counts: `lo` in the lower 256 bits, `hi` in the upper.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
    fn halves16(lo: i16, hi: i16) -> __m512i {
        _mm512_inserti64x4::<1>(
            _mm512_castsi256_si512(_mm256_set1_epi16(lo)),
            _mm256_set1_epi16(hi),
        )
    }

    /// Token `t`'s bsums added in pairs (one i16 per 32-value sub-block, `nb * 8`).
    pub(crate) fn bsum_pairs_row(acts: &Acts<'_>, t: usize) -> Vec<i16> {
        acts.bsums_row(t)
            .chunks_exact(2)
            .map(|p| p[0].saturating_add(p[1]))
            .collect()
    }

    /// One Q4_K row read in place against token `t` (bit-identical to
    /// [`crate::matmul::tile::k4_row_dot_scalar`]).
    ///
    /// # Safety
    /// The CPU must support AVX-512 F/BW/VL/VNNI, AVX2, FMA and F16C; `row` must hold the
    /// blocks of `acts`' rows; token `t` must exist.
    #[cfg(test)]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
    pub(crate) unsafe fn k4_row_dot(row: &[u8], acts: &Acts<'_>, t: usize) -> f32 {
        // SAFETY: forwarded.
        unsafe { k45_row_dot::<false>(row, acts, t, &bsum_pairs_row(acts, t)) }
    }

    /// One Q5_K row read in place against token `t` (bit-identical to
    /// [`crate::matmul::scalar::vec_dot_q5_k_q8_k_scalar`]).
    ///
    /// # Safety
    /// As [`k4_row_dot`].
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
    pub(crate) unsafe fn k5_row_dot(row: &[u8], acts: &Acts<'_>, t: usize) -> f32 {
        // SAFETY: forwarded.
        unsafe { k45_row_dot::<true>(row, acts, t, &bsum_pairs_row(acts, t)) }
    }

    /// [`k4_row_dot`] (`Q5` false) or [`k5_row_dot`], with token `t`'s bsum pairs
    /// ([`bsum_pairs_row`]) computed once for all rows. Q5_K's values 0..32 keep the sums of
    /// four products within 16 bits (`4 * 31 * 128`), so both pack them the same way.
    ///
    /// # Safety
    /// As [`k4_row_dot`]; `pairs` must be token `t`'s bsum pairs.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
    pub(crate) unsafe fn k45_row_dot<const Q5: bool>(
        row: &[u8],
        acts: &Acts<'_>,
        t: usize,
        pairs: &[i16],
    ) -> f32 {
        let (qa, da) = (acts.qs_row(t), acts.d_row(t));
        let nb = da.len();
        let (bb, qs0) = if Q5 { (K5_BYTES, 48) } else { (144, 16) };
        assert!(qa.len() >= nb * 256 && pairs.len() >= nb * 8 && row.len() >= nb * bb);
        let m4 = _mm512_set1_epi8(0x0f);
        let one = _mm512_set1_epi8(1);
        // The low nibbles of 32 bytes in the lower half, the high ones in the upper.
        let nib = halves16(0, 4);
        // Q5_K: qh bits 2j (lower half) and 2j + 1 (upper).
        let qh_shift: [__m512i; 4] =
            std::array::from_fn(|j| halves16(2 * j as i16, 2 * j as i16 + 1));
        let (idx0, idx1) = (idx512(&K4_IDX[0]), idx512(&K4_IDX[1]));
        let mut acc = 0.0f32;
        for (b, &yd) in da.iter().enumerate() {
            let a = qa.as_ptr().wrapping_add(256 * b) as *const u8;
            let x = &row[b * bb..(b + 1) * bb];
            let ms = k4_scales_mins(x[4..16].try_into().expect("12 bytes"));
            let msz = _mm512_castsi256_si512(ms);
            let qh = if Q5 {
                // SAFETY: bytes 16..48 (Q5_K's qh) of the block (length asserted above).
                unsafe { bcast256(x.as_ptr().add(16)) }
            } else {
                one
            };
            let mut p = [_mm512_setzero_si512(); 4];
            for (j, p) in p.iter_mut().enumerate() {
                // SAFETY: bytes qs0 + 32j .. +32 of the block; values 64j..64j+64 of the
                // token's super-block (lengths asserted above).
                let (raw, av) =
                    unsafe { (bcast256(x.as_ptr().add(qs0 + 32 * j)), ld512(a.add(64 * j))) };
                // Sub-blocks 2j (lanes 0..8) and 2j + 1 (lanes 8..16).
                let mut w = _mm512_and_si512(_mm512_srlv_epi16(raw, nib), m4);
                if Q5 {
                    let high = _mm512_and_si512(_mm512_srlv_epi16(qh, qh_shift[j]), one);
                    w = _mm512_or_si512(w, _mm512_slli_epi16::<4>(high));
                }
                *p = _mm512_dpbusd_epi32(_mm512_setzero_si512(), w, av);
            }
            let v = _mm512_dpwssd_epi32(
                _mm512_dpwssd_epi32(
                    _mm512_setzero_si512(),
                    _mm512_packs_epi32(p[0], p[1]),
                    _mm512_permutexvar_epi16(idx0, msz),
                ),
                _mm512_packs_epi32(p[2], p[3]),
                _mm512_permutexvar_epi16(idx1, msz),
            );
            // SAFETY: 8 pairs at 8b (length asserted above).
            let bp = unsafe { _mm_loadu_si128(pairs.as_ptr().add(8 * b) as *const __m128i) };
            let m = _mm_madd_epi16(_mm256_extracti128_si256::<1>(ms), bp);
            // I1 (the 16 lanes of v) and I2 (the 4 of m) reduced together.
            let v = _mm256_add_epi32(_mm512_castsi512_si256(v), _mm512_extracti64x4_epi64::<1>(v));
            let v = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256::<1>(v));
            let s = _mm_add_epi32(_mm_unpacklo_epi64(v, m), _mm_unpackhi_epi64(v, m));
            let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b10_11_00_01>(s));
            let (i1, i2) = (_mm_cvtsi128_si32(s), _mm_extract_epi32::<2>(s));
            // d and dmin (lanes 0 and 1), times the token's scale.
            let dd = _mm_cvtph_ps(_mm_cvtsi32_si128(i32::from_le_bytes([
                x[0], x[1], x[2], x[3],
            ])));
            let dy = _mm_mul_ps(dd, _mm_set1_ps(yd));
            let (dy, dmy) = (_mm_cvtss_f32(dy), _mm_cvtss_f32(_mm_movehdup_ps(dy)));
            if Q5 {
                acc += dy * i1 as f32 - dmy * i2 as f32;
            } else {
                acc = dy.mul_add(i1 as f32, acc);
                acc = (-dmy).mul_add(i2 as f32, acc);
            }
        }
        acc
    }

    /// One Q6_K row read in place against token `t` (bit-identical to
    /// [`crate::matmul::tile_k6::k6_row_dot_scalar`]).
    ///
    /// # Safety
    /// The CPU must support AVX-512 F/BW/VL/VNNI, AVX2, FMA and F16C; `row` must hold the
    /// blocks of `acts`' rows; token `t` must exist.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
    pub(crate) unsafe fn k6_row_dot(row: &[u8], acts: &Acts<'_>, t: usize) -> f32 {
        let (qa, da, bs) = (acts.qs_row(t), acts.d_row(t), acts.bsums_row(t));
        let nb = da.len();
        assert!(qa.len() >= nb * 256 && bs.len() >= nb * 16 && row.len() >= nb * Q6K_BYTES);
        let m4 = _mm512_set1_epi8(0x0f);
        let m2 = _mm512_set1_epi8(3);
        // qh bit pairs 0 and 2 (values 0..32 and 32..64 of a chunk), then 4 and 6.
        let (sh_lo, sh_hi) = (halves16(0, 2), halves16(4, 6));
        let idx = [idx512(&K6_IDX[0]), idx512(&K6_IDX[1])];
        let mut acc = 0.0f32;
        for (b, &yd) in da.iter().enumerate() {
            let a = qa.as_ptr().wrapping_add(256 * b) as *const u8;
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
            let scz = _mm512_castsi256_si512(sc16);
            // sum((q - 32) * a) = sum(q * a) - 32 * sum(sc * bsums).
            let corr = _mm256_slli_epi32::<5>(_mm256_madd_epi16(bsv, sc16));
            let mut v = _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_zextsi256_si512(corr));
            for (c, idx) in idx.iter().enumerate() {
                // SAFETY: ql 64c..64c+64 and qh 128+32c..+32 of the block; values
                // 128c..128c+128 of the token's super-block (lengths asserted above).
                let (l, h, a_lo, a_hi) = unsafe {
                    (
                        ld512(x.as_ptr().add(64 * c)),
                        bcast256(x.as_ptr().add(128 + 32 * c)),
                        ld512(a.add(128 * c)),
                        ld512(a.add(128 * c + 64)),
                    )
                };
                let high = |sh: __m512i| {
                    _mm512_slli_epi16::<4>(_mm512_and_si512(_mm512_srlv_epi16(h, sh), m2))
                };
                let lo = _mm512_or_si512(_mm512_and_si512(l, m4), high(sh_lo));
                let hi =
                    _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16::<4>(l), m4), high(sh_hi));
                let p_lo = _mm512_dpbusd_epi32(_mm512_setzero_si512(), lo, a_lo);
                let p_hi = _mm512_dpbusd_epi32(_mm512_setzero_si512(), hi, a_hi);
                v = _mm512_dpwssd_epi32(
                    v,
                    _mm512_packs_epi32(p_lo, p_hi),
                    _mm512_permutexvar_epi16(*idx, scz),
                );
            }
            let d = f16c(u16::from_le_bytes([x[208], x[209]]));
            acc = (d * yd).mul_add(_mm512_reduce_add_epi32(v) as f32, acc);
        }
        acc
    }

    /// The eight signed 6-bit sub-block scales of an IQ4_XS block, as bytes 0..8.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
    fn xs_scales(x: &[u8; XS_BYTES]) -> __m128i {
        let m4 = _mm_set1_epi8(0x0f);
        // Sub-block g's low four bits: nibble g % 2 of byte 4 + g / 2.
        let l = _mm_cvtsi32_si128(i32::from_le_bytes([x[4], x[5], x[6], x[7]]));
        let lo = _mm_unpacklo_epi8(
            _mm_and_si128(l, m4),
            _mm_and_si128(_mm_srli_epi16::<4>(l), m4),
        );
        // Its two high bits: bits 2g, 2g + 1 of `scales_h`, to bits 4 and 5 of byte g.
        let h = _mm_set1_epi16(i16::from_le_bytes([x[2], x[3]]));
        let h = _mm_srlv_epi16(h, _mm_setr_epi16(0, 2, 4, 6, 8, 10, 12, 14));
        let h = _mm_slli_epi16::<4>(_mm_and_si128(h, _mm_set1_epi16(3)));
        _mm_sub_epi8(_mm_or_si128(lo, _mm_packus_epi16(h, h)), _mm_set1_epi8(32))
    }

    /// One IQ4_XS row read in place against token `t` (bit-identical to
    /// [`crate::matmul::scalar::vec_dot_iq4_xs_q8_k_scalar`]).
    ///
    /// Per 64 values (sub-blocks 2j and 2j + 1), the 32 index bytes go to 128-bit lanes as
    /// (low nibbles, high nibbles) of bytes 0..16 then of 16..32, are looked up in
    /// [`KVALUES_U8`], and one `vpdpbusd` with the token's 64 values gives sub-block 2j's sums
    /// in lanes 0..8, 2j + 1's in 8..16, which are multiplied by their scales.
    ///
    /// # Safety
    /// The CPU must support AVX-512 F/BW/VL/VNNI, AVX2, FMA and F16C; `row` must hold the
    /// blocks of `acts`' rows; token `t` must exist.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
    pub(crate) unsafe fn xs_row_dot(row: &[u8], acts: &Acts<'_>, t: usize) -> f32 {
        let (qa, da, bs) = (acts.qs_row(t), acts.d_row(t), acts.bsums_row(t));
        let nb = da.len();
        assert!(qa.len() >= nb * 256 && bs.len() >= nb * 16 && row.len() >= nb * XS_BYTES);
        let m4 = _mm512_set1_epi8(0x0f);
        // SAFETY: the table has 16 bytes.
        let table = _mm512_broadcast_i32x4(unsafe { ld128(KVALUES_U8.as_ptr()) });
        // Shift 0 in 128-bit lanes 0 and 2 (low nibbles), 4 in lanes 1 and 3.
        let four = 0x0004_0004_0004_0004;
        let nib = _mm512_set_epi64(four, four, 0, 0, four, four, 0, 0);
        // Sub-block 2j's scale in lanes 0..8, 2j + 1's in lanes 8..16.
        let sc_idx: [__m512i; 4] = std::array::from_fn(|j| {
            let (a, b) = (2 * j as i32, 2 * j as i32 + 1);
            _mm512_setr_epi32(a, a, a, a, a, a, a, a, b, b, b, b, b, b, b, b)
        });
        let mut acc = 0.0f32;
        for (b, &yd) in da.iter().enumerate() {
            let a = qa.as_ptr().wrapping_add(256 * b) as *const u8;
            let x: &[u8; XS_BYTES] = row[b * XS_BYTES..(b + 1) * XS_BYTES]
                .try_into()
                .expect("block");
            let sc8 = xs_scales(x);
            let sc32 = _mm512_castsi256_si512(_mm256_cvtepi8_epi32(sc8));
            // SAFETY: 16 bsums of super-block b (length asserted above).
            let bsv = unsafe { _mm256_loadu_si256(bs.as_ptr().add(16 * b) as *const __m256i) };
            // sum(kv * a) = sum((kv + 128) * a) - 128 * sum_g sc_g * (bsum_2g + bsum_2g+1).
            let corr = _mm256_madd_epi16(bsv, _mm256_cvtepi8_epi16(_mm_unpacklo_epi8(sc8, sc8)));
            let mut v = _mm512_sub_epi32(
                _mm512_setzero_si512(),
                _mm512_zextsi256_si512(_mm256_slli_epi32::<7>(corr)),
            );
            for (j, idx) in sc_idx.iter().enumerate() {
                // SAFETY: bytes 8 + 32j .. +32 of the block; values 64j..64j+64 of the
                // token's super-block (lengths asserted above).
                let (raw, av) = unsafe {
                    (
                        _mm256_loadu_si256(x.as_ptr().add(8 + 32 * j) as *const __m256i),
                        ld512(a.add(64 * j)),
                    )
                };
                let raw = _mm512_castsi256_si512(raw);
                let r = _mm512_shuffle_i64x2::<0b01_01_00_00>(raw, raw);
                let w = _mm512_shuffle_epi8(table, _mm512_and_si512(_mm512_srlv_epi16(r, nib), m4));
                let p = _mm512_dpbusd_epi32(_mm512_setzero_si512(), w, av);
                v = _mm512_add_epi32(
                    v,
                    _mm512_mullo_epi32(p, _mm512_permutexvar_epi32(*idx, sc32)),
                );
            }
            let d = yd * f16c(u16::from_le_bytes([x[0], x[1]]));
            acc += d * _mm512_reduce_add_epi32(v) as f32;
        }
        acc
    }
}
