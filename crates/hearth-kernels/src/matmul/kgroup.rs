//! IQ4_XS rows unpacked into Q4_K's row groups ([`K4Group`]) for the AVX-512 VNNI tile
//! kernel ([`super::tile512::avx512::k_group_tile`]; Q5_K's are unpacked beside Q4_K's, by
//! [`super::tile::avx2::k5_unpack_group`]), and IQ4_XS's table for them and the one-row
//! kernel ([`super::direct512::avx512::xs_row_dot`]).
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

    use super::{KVALUES_U8, XS_BYTES};
    use crate::matmul::group::{avx2::interleave_chunks, GROUP};
    use crate::matmul::scalar::iq4_xs_scale;
    use crate::matmul::tile::K4Group;
    use crate::matmul::x86_avx2::{f16c, ld128, nibbles_32};

    /// Unpacks `rows` (at most [`GROUP`] rows of `nb` IQ4_XS blocks) into `s`, in the layout
    /// of Q4_K's groups ([`K4Group`]): `qi` the table values plus 128, `sc` the sub-blocks'
    /// signed scales, `mins` the same scales in the layout of Q4_K's mins (for the offset's
    /// share), `d` the super-block scales (`dmin` unused).
    ///
    /// # Safety
    /// The CPU must support AVX2, FMA and F16C.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(crate) unsafe fn xs_unpack_group(rows: &[&[u8]], nb: usize, s: &mut K4Group) {
        s.resize(nb, false);
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
