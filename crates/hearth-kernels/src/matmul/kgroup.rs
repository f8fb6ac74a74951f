//! Q5_K and IQ4_XS rows unpacked into Q4_K's row groups ([`K4Group`]) for the AVX-512 VNNI
//! tile kernel ([`super::tile512::avx512::k_group_tile`]), and IQ4_XS's
//! table for them and the one-row kernel ([`super::direct512::avx512::xs_row_dot`]).
//!
//! Q5_K is Q4_K with a fifth bit per value (`qh`, bit g of byte l for value l of sub-block
//! g): its values 0..32 go through the same kernel. Its scalar twin
//! ([`super::scalar::vec_dot_q5_k_q8_k_scalar`]) finishes each super-block as
//! `acc + ((d_a * d) * I1 - (d_a * dmin) * I2)`.
//!
//! [`K4Group`]: super::tile::K4Group
//!
//! An IQ4_XS super-block holds 256 values in eight sub-blocks of 32: an f16 scale `d`, a
//! signed 6-bit scale per sub-block (low nibbles in `scales_l`, two high bits each in
//! `scales_h`) and 4-bit indices into the non-linear table [`KVALUES_IQ4NL`] (-127..113).
//! The kernels look the indices up in that table plus 128 ([`KVALUES_U8`], 1..241), so that
//! `vpdpbusd` can multiply them (unsigned) with the token's values (signed), and subtract
//! `128 * sum_g sc_g * bsum_g`, the offset's exact share.
//!
//! The numerics are [`super::scalar::vec_dot_iq4_xs_q8_k_scalar`]'s, the scalar twin: per
//! super-block the exact integer `isum = sum_g sc_g * sum_l q * a`, then
//! `acc = acc + (d_a * d) * float(isum)` (a product, then a sum: no fused step), super-blocks
//! in order. Every kernel gives its bits, alone (decode) or in a tile (prefill).

#![allow(unsafe_code)]

use crate::quant::iq_grids::KVALUES_IQ4NL;

/// Bytes of an IQ4_XS block.
pub(crate) const XS_BYTES: usize = 136;

/// Bytes of a Q5_K block.
pub(crate) const K5_BYTES: usize = 176;

/// [`KVALUES_IQ4NL`] plus 128, as unsigned bytes.
pub(crate) static KVALUES_U8: [u8; 16] = {
    let mut t = [0u8; 16];
    let mut i = 0;
    while i < 16 {
        t[i] = (KVALUES_IQ4NL[i] as i16 + 128) as u8;
        i += 1;
    }
    t
};

#[cfg(target_arch = "x86_64")]
pub(crate) mod avx2 {
    use std::arch::x86_64::*;

    use super::{K5_BYTES, KVALUES_U8, XS_BYTES};
    use crate::matmul::group::{avx2::interleave_chunks, GROUP};
    use crate::matmul::scalar::iq4_xs_scale;
    use crate::matmul::tile::K4Group;
    use crate::matmul::x86_avx2::{f16c, ld, ld128, nibbles_32};
    use crate::quant::k_quants::get_scale_min_k4;

    /// Sizes `s` for `nb` super-blocks (`dmin` too when `dmin`).
    fn resize(s: &mut K4Group, nb: usize, dmin: bool) {
        let n_sub = nb * 8;
        s.q.resize(n_sub * GROUP * 32, 0);
        s.qi.resize(n_sub * GROUP * 32, 0);
        s.sc.resize(n_sub * 16, 0);
        s.mins.resize(nb * 4 * 16, 0);
        s.d.resize(nb * GROUP, 0.0);
        if dmin {
            s.dmin.resize(nb * GROUP, 0.0);
        }
    }

    /// Unpacks `rows` (at most [`GROUP`] rows of `nb` Q5_K blocks) into `s`, as
    /// [`k4_unpack_group`](crate::matmul::tile::avx2::k4_unpack_group) does Q4_K, with
    /// values 0..32.
    ///
    /// # Safety
    /// The CPU must support AVX2, FMA and F16C.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(crate) unsafe fn k5_unpack_group(rows: &[&[u8]], nb: usize, s: &mut K4Group) {
        resize(s, nb, true);
        let (m4, one) = (_mm256_set1_epi8(0x0f), _mm256_set1_epi8(1));
        for (r, row) in rows.iter().enumerate().take(GROUP) {
            assert!(row.len() >= nb * K5_BYTES, "row of {nb} blocks");
            for b in 0..nb {
                let x = &row[b * K5_BYTES..(b + 1) * K5_BYTES];
                s.d[b * GROUP + r] = f16c(u16::from_le_bytes([x[0], x[1]]));
                s.dmin[b * GROUP + r] = f16c(u16::from_le_bytes([x[2], x[3]]));
                let scales: &[u8; 12] = x[4..16].try_into().expect("12 bytes");
                for g in 0..8 {
                    let (sc, m) = get_scale_min_k4(g, scales);
                    let o = (b * 8 + g) * 16 + 2 * r;
                    s.sc[o] = i16::from(sc);
                    s.sc[o + 1] = i16::from(sc);
                    s.mins[(b * 4 + g / 2) * 16 + 2 * r + g % 2] = i16::from(m);
                }
                // SAFETY: bytes 16..48 (qh) of the block.
                let qh = unsafe { ld(x.as_ptr().add(16)) };
                for q in 0..4 {
                    // Bit g of qh byte l is bit 4 of value l of sub-block g.
                    let high = |g: i32| {
                        let bit = _mm256_and_si256(_mm256_srl_epi16(qh, _mm_cvtsi32_si128(g)), one);
                        _mm256_slli_epi16::<4>(bit)
                    };
                    // SAFETY: bytes 48 + 32q .. +32 of the block; sub-blocks 2q and 2q + 1
                    // of row r at ((b * 8 + g) * GROUP + r) * 32 < nb * 8 * GROUP * 32.
                    unsafe {
                        let raw = ld(x.as_ptr().add(48 + 32 * q));
                        let lo = _mm256_or_si256(_mm256_and_si256(raw, m4), high(2 * q as i32));
                        let hi = _mm256_or_si256(
                            _mm256_and_si256(_mm256_srli_epi16::<4>(raw), m4),
                            high(2 * q as i32 + 1),
                        );
                        let base = s.q.as_mut_ptr();
                        let dst = |g: usize| base.add(((b * 8 + g) * GROUP + r) * 32);
                        _mm256_storeu_si256(dst(2 * q) as *mut __m256i, lo);
                        _mm256_storeu_si256(dst(2 * q + 1) as *mut __m256i, hi);
                    }
                }
            }
        }
        interleave_chunks(&s.q, &mut s.qi, nb * 8);
    }

    /// Unpacks `rows` (at most [`GROUP`] rows of `nb` IQ4_XS blocks) into `s`, in the layout
    /// of Q4_K's groups ([`K4Group`]): `qi` the table values plus 128, `sc` the sub-blocks'
    /// signed scales, `mins` the same scales in the layout of Q4_K's mins (for the offset's
    /// share), `d` the super-block scales (`dmin` unused).
    ///
    /// # Safety
    /// The CPU must support AVX2, FMA and F16C.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(crate) unsafe fn xs_unpack_group(rows: &[&[u8]], nb: usize, s: &mut K4Group) {
        resize(s, nb, false);
        // SAFETY: the table has 16 bytes.
        let table = unsafe { ld128(KVALUES_U8.as_ptr()) };
        let table = _mm256_broadcastsi128_si256(table);
        for (r, row) in rows.iter().enumerate().take(GROUP) {
            assert!(row.len() >= nb * XS_BYTES, "row of {nb} blocks");
            for b in 0..nb {
                let x = &row[b * XS_BYTES..(b + 1) * XS_BYTES];
                s.d[b * GROUP + r] = f16c(u16::from_le_bytes([x[0], x[1]]));
                for g in 0..8 {
                    let sc = iq4_xs_scale(x, g) as i16;
                    let o = (b * 8 + g) * 16 + 2 * r;
                    s.sc[o] = sc;
                    s.sc[o + 1] = sc;
                    s.mins[(b * 4 + g / 2) * 16 + 2 * r + g % 2] = sc;
                    // SAFETY: bytes 8 + 16g .. +16 of the block; sub-block g of row r at
                    // ((b * 8 + g) * GROUP + r) * 32 < nb * 8 * GROUP * 32.
                    unsafe {
                        let v = _mm256_shuffle_epi8(
                            table,
                            nibbles_32(ld128(x.as_ptr().add(8 + 16 * g))),
                        );
                        let dst = s.q.as_mut_ptr().add(((b * 8 + g) * GROUP + r) * 32);
                        _mm256_storeu_si256(dst as *mut __m256i, v);
                    }
                }
            }
        }
        interleave_chunks(&s.q, &mut s.qi, nb * 8);
    }
}
