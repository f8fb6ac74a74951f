//! AVX-512 VNNI versions of the token-tile kernels ([`super::tile`], [`super::tile_k6`]):
//! sixteen rows times four tokens per call.
//!
//! Two groups of eight rows, unpacked by the AVX2 unpackers into their interleaved layouts,
//! sit side by side in one zmm register (lanes 0..8 the first group's rows, 8..16 the
//! second's), four values of each row per 32-bit lane. `vpdpbusd` multiplies those unsigned
//! values with a token's four (signed) activations broadcast to every lane and adds the four
//! products to the lane's 32-bit sum: one instruction per 64 multiply-adds, where AVX2 needs
//! `maddubs`, 16-bit additions and a widening `madd`. Values are made unsigned by an offset
//! ([`vnni_offset`](super::group::vnni_offset): 128 for Q8_0 and IQ4_NL), whose product with
//! the token's block sum is subtracted; Q4_K and Q6_K values are unsigned already.
//!
//! The integer block sums are exact, and the float steps are those of the AVX2 tile kernels
//! and the scalar twins, per row and token, so every kernel gives the same bits.

#![allow(unsafe_code)]

/// Rows per call: two groups of [`GROUP`](super::group::GROUP).
pub(crate) const ROWS: usize = 16;

#[cfg(target_arch = "x86_64")]
pub(crate) mod avx512 {
    use std::arch::x86_64::*;

    use super::ROWS;
    use crate::matmul::act::Acts;
    use crate::matmul::group::{self, GroupScratch, GROUP};
    use crate::matmul::tile::{K4Group, TilePrep, TILE};
    use crate::matmul::tile_k6::K6Group;
    use crate::matmul::x86_avx2::ld;
    use hearth_gguf::GgmlType;

    /// 32 bytes at `p0` (lanes 0..8) and 32 at `p1` (lanes 8..16).
    ///
    /// # Safety
    /// Both ranges must be readable.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
    unsafe fn ld2(p0: *const u8, p1: *const u8) -> __m512i {
        // SAFETY: forwarded to the caller.
        unsafe { _mm512_inserti64x4::<1>(_mm512_castsi256_si512(ld(p0)), ld(p1)) }
    }

    /// Eight floats at `p0` (lanes 0..8) and eight at `p1` (lanes 8..16).
    ///
    /// # Safety
    /// Both ranges must be readable.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
    unsafe fn ld2_ps(p0: *const f32, p1: *const f32) -> __m512 {
        // SAFETY: forwarded to the caller.
        let (a, b) = unsafe { (_mm256_loadu_ps(p0), _mm256_loadu_ps(p1)) };
        _mm512_castpd_ps(_mm512_insertf64x4::<1>(
            _mm512_castpd256_pd512(_mm256_castps_pd(a)),
            _mm256_castps_pd(b),
        ))
    }

    /// Four activation values at `p` broadcast to every lane.
    ///
    /// # Safety
    /// `p..p + 4` must be readable.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
    unsafe fn bcast4(p: *const u8) -> __m512i {
        // SAFETY: forwarded to the caller.
        _mm512_set1_epi32(unsafe { (p as *const i32).read_unaligned() })
    }

    /// Stores the tile's results, lane r of `acc[j]` to `out[j][r]`.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
    fn store(acc: &[__m512; TILE], out: &mut [[f32; ROWS]; TILE]) {
        for (o, a) in out.iter_mut().zip(acc) {
            // SAFETY: 16 floats out.
            unsafe { _mm512_storeu_ps(o.as_mut_ptr(), *a) };
        }
    }

    /// `out[j][r] = dot(row r, token prep.t[j])` for two groups of rows of a 32-value block
    /// type, `s[0]` rows 0..8 and `s[1]` rows 8..16, unpacked by
    /// [`group::avx2::unpack_group`] with [`vnni_offset`](group::vnni_offset) (bit-identical
    /// to [`crate::matmul::tile::q8_row_dot_scalar`] per row and token).
    ///
    /// # Safety
    /// The CPU must support AVX-512 F/BW/VL/VNNI, AVX2, FMA and F16C; `prep` must be prepared
    /// from `acts` with the block sums; `s` must hold rows of `acts.nb` blocks of `ty`.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
    pub(crate) unsafe fn q8_group_tile(
        ty: GgmlType,
        s: [&GroupScratch; 2],
        acts: &Acts<'_>,
        prep: &TilePrep,
        out: &mut [[f32; ROWS]; TILE],
    ) {
        // SAFETY: forwarded.
        unsafe {
            match group::vnni_offset(ty) {
                8 => q8_tile_t::<8>(s, acts, prep, out),
                16 => q8_tile_t::<16>(s, acts, prep, out),
                _ => q8_tile_t::<128>(s, acts, prep, out),
            }
        }
    }

    /// [`q8_group_tile`] for the offset `OFF`: each block's sum starts at `-OFF * sum(a)`, so
    /// that adding `sum((q + OFF) * a)` leaves the exact `sum(q * a)`.
    ///
    /// # Safety
    /// As [`q8_group_tile`].
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
    unsafe fn q8_tile_t<const OFF: i32>(
        s: [&GroupScratch; 2],
        acts: &Acts<'_>,
        prep: &TilePrep,
        out: &mut [[f32; ROWS]; TILE],
    ) {
        let nb = acts.nb;
        for g in s {
            assert!(g.qabs.len() >= nb * GROUP * 32 && g.d.len() >= nb * GROUP);
        }
        assert!(prep.dx.len() >= nb * TILE && prep.asum.len() >= nb * TILE);
        let qa = prep.act_ptrs(acts, nb * 32);
        let (w0, w1) = (s[0].qabs.as_ptr(), s[1].qabs.as_ptr());
        let mut part = [[_mm512_setzero_ps(); TILE]; 8];
        for (m, part) in part.iter_mut().enumerate().take(nb) {
            let mut acc = [_mm512_setzero_ps(); TILE];
            for b in (m..nb).step_by(8) {
                // Two chains of four `vpdpbusd` per token (values 0..16 and 16..32), added.
                let mut lo = [_mm512_setzero_si512(); TILE];
                for (j, l) in lo.iter_mut().enumerate() {
                    *l = _mm512_set1_epi32(-OFF * prep.asum[b * TILE + j]);
                }
                let mut hi = [_mm512_setzero_si512(); TILE];
                for k in 0..4 {
                    for (half, isum) in [(0, &mut lo), (4, &mut hi)] {
                        let o = (b * 8 + k + half) * 32;
                        // SAFETY: 32 bytes at o < nb * GROUP * 32 in both groups (asserted).
                        let w = unsafe { ld2(w0.add(o), w1.add(o)) };
                        for (j, is) in isum.iter_mut().enumerate() {
                            // SAFETY: 4 values at 32b + 4(k + half) of a row of nb * 32.
                            let a = unsafe { bcast4(qa[j].add(32 * b + 4 * (k + half))) };
                            *is = _mm512_dpbusd_epi32(*is, w, a);
                        }
                    }
                }
                let mut isum = lo;
                for (is, h) in isum.iter_mut().zip(&hi) {
                    *is = _mm512_add_epi32(*is, *h);
                }
                // SAFETY: 8 scales at b * GROUP in both groups (asserted).
                let dw = unsafe {
                    ld2_ps(
                        s[0].d.as_ptr().add(b * GROUP),
                        s[1].d.as_ptr().add(b * GROUP),
                    )
                };
                for (j, (a, is)) in acc.iter_mut().zip(&isum).enumerate() {
                    let dx = _mm512_set1_ps(prep.dx[b * TILE + j]);
                    *a = _mm512_fmadd_ps(_mm512_mul_ps(dw, dx), _mm512_cvtepi32_ps(*is), *a);
                }
            }
            *part = acc;
        }
        let sums: [__m512; TILE] = std::array::from_fn(|j| {
            let p = |m: usize| part[m][j];
            _mm512_add_ps(
                _mm512_add_ps(_mm512_add_ps(p(0), p(1)), _mm512_add_ps(p(2), p(3))),
                _mm512_add_ps(_mm512_add_ps(p(4), p(5)), _mm512_add_ps(p(6), p(7))),
            )
        });
        store(&sums, out);
    }

    /// Which type [`k_group_tile`] multiplies (rows unpacked into [`K4Group`]s), and how
    /// its super-block sums become floats, as the type's scalar twin does.
    #[derive(Clone, Copy, PartialEq, Eq)]
    pub(crate) enum Finish {
        /// Q4_K ([`crate::matmul::tile::avx2::k4_unpack_group`], twin
        /// [`crate::matmul::tile::k4_row_dot_scalar`]): `acc = fma(d * d_a, I1, acc)`, then
        /// `acc = fma(-(dmin * d_a), I2, acc)`.
        Q4K,
        /// Q5_K ([`crate::matmul::tile::avx2::k5_unpack_group`], twin
        /// [`crate::matmul::scalar::vec_dot_q5_k_q8_k_scalar`]):
        /// `acc = acc + ((d_a * d) * I1 - (d_a * dmin) * I2)`.
        Q5K,
        /// IQ4_XS ([`crate::matmul::kgroup::avx2::xs_unpack_group`], twin
        /// [`crate::matmul::scalar::vec_dot_iq4_xs_q8_k_scalar`]): the table values plus 128,
        /// `mins` the scales: `acc = acc + (d_a * d) * (I1 - 128 I2)`.
        Iq4Xs,
    }

    /// `outs[p][j][r] = dot(row r, token preps[p].t[j])` for two groups of rows of the type
    /// `fin` says (bit-identical to its scalar twin per row and token): one tile of four
    /// tokens, or two (eight tokens, each weight slice loaded once for all eight).
    ///
    /// # Safety
    /// The CPU must support AVX-512 F/BW/VL/VNNI, AVX2, FMA and F16C; `preps` must be
    /// prepared from `acts` with the bsum pairs; `s` must hold rows of `acts.nb` blocks
    /// unpacked for `fin`.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
    pub(crate) unsafe fn k_group_tile(
        fin: Finish,
        s: [&K4Group; 2],
        acts: &Acts<'_>,
        preps: &[TilePrep],
        outs: &mut [[[f32; ROWS]; TILE]],
    ) {
        // SAFETY: forwarded.
        unsafe {
            match (fin, preps.len()) {
                (Finish::Q4K, 2) => k_tile::<{ Finish::Q4K as u8 }, 2>(s, acts, preps, outs),
                (Finish::Q5K, 2) => k_tile::<{ Finish::Q5K as u8 }, 2>(s, acts, preps, outs),
                (Finish::Iq4Xs, 2) => k_tile::<{ Finish::Iq4Xs as u8 }, 2>(s, acts, preps, outs),
                (Finish::Q4K, _) => k_tile::<{ Finish::Q4K as u8 }, 1>(s, acts, preps, outs),
                (Finish::Q5K, _) => k_tile::<{ Finish::Q5K as u8 }, 1>(s, acts, preps, outs),
                (Finish::Iq4Xs, _) => k_tile::<{ Finish::Iq4Xs as u8 }, 1>(s, acts, preps, outs),
            }
        }
    }

    /// [`k_group_tile`] for `NP` tiles (`NP * TILE` tokens): per super-block and token, the
    /// exact `I1 = sum_g sc_g * sum_l q * a` (per sub-block, eight `vpdpbusd` of the unsigned
    /// values with the token's values, in one chain per token for eight tokens or two for
    /// four, multiplied by the rows' scales in 32 bits) and `I2 = sum_g m_g * bsum_g`,
    /// finished as `FIN` ([`Finish`]) says.
    ///
    /// # Safety
    /// As [`k_group_tile`].
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
    unsafe fn k_tile<const FIN: u8, const NP: usize>(
        s: [&K4Group; 2],
        acts: &Acts<'_>,
        preps: &[TilePrep],
        outs: &mut [[[f32; ROWS]; TILE]],
    ) {
        const MAXT: usize = 2 * TILE;
        let nt = NP * TILE;
        // Chains per token: eight accumulators in flight either way.
        let ch = MAXT / nt;
        assert!(preps.len() >= NP && outs.len() >= NP);
        let nb = acts.nb;
        let dmin = FIN != Finish::Iq4Xs as u8;
        for g in s {
            assert!(
                g.qi.len() >= nb * 8 * GROUP * 32
                    && g.sc.len() >= nb * 8 * 16
                    && g.mins.len() >= nb * 4 * 16
                    && g.d.len() >= nb * GROUP
                    && (!dmin || g.dmin.len() >= nb * GROUP)
            );
        }
        for p in &preps[..NP] {
            assert!(p.dx.len() >= nb * TILE && p.bsp.len() >= nb * TILE * 8);
        }
        // Token j of the call: token j % TILE of tile j / TILE.
        let mut qa = [std::ptr::null::<u8>(); MAXT];
        for (p, prep) in preps[..NP].iter().enumerate() {
            qa[p * TILE..(p + 1) * TILE].copy_from_slice(&prep.act_ptrs(acts, nb * 256));
        }
        let (wi0, wi1) = (s[0].qi.as_ptr(), s[1].qi.as_ptr());
        let (sc0, sc1) = (s[0].sc.as_ptr() as *const u8, s[1].sc.as_ptr() as *const u8);
        let (mn0, mn1) = (
            s[0].mins.as_ptr() as *const u8,
            s[1].mins.as_ptr() as *const u8,
        );
        let mut acc = [_mm512_setzero_ps(); MAXT];
        for b in 0..nb {
            let mut i1 = [_mm512_setzero_si512(); MAXT];
            for g in 0..8 {
                let sb = b * 8 + g;
                // Accumulator j + nt * c: chain c of token j.
                let mut s32 = [_mm512_setzero_si512(); MAXT];
                for k in 0..8 {
                    let o = (sb * 8 + k) * 32;
                    // SAFETY: 32 bytes at o < nb * 8 * GROUP * 32 in both groups.
                    let w = unsafe { ld2(wi0.add(o), wi1.add(o)) };
                    let c = k % ch;
                    for j in 0..nt {
                        // SAFETY: 4 values at 32sb + 4k of a row of nb * 256.
                        let a = unsafe { bcast4(qa[j].add(32 * sb + 4 * k)) };
                        s32[j + nt * c] = _mm512_dpbusd_epi32(s32[j + nt * c], w, a);
                    }
                }
                // Row r's scale is in both i16 halves of 32-bit lane r.
                // SAFETY: 16 i16 (32 bytes) at sb * 16 in both groups (asserted).
                let scv =
                    _mm512_srai_epi32::<16>(unsafe { ld2(sc0.add(sb * 32), sc1.add(sb * 32)) });
                for j in 0..nt {
                    let mut sum = s32[j];
                    for c in 1..ch {
                        sum = _mm512_add_epi32(sum, s32[j + nt * c]);
                    }
                    i1[j] = _mm512_add_epi32(i1[j], _mm512_mullo_epi32(sum, scv));
                }
            }
            // SAFETY: 8 scales at b * GROUP in both groups (asserted; `dmin` only read when
            // the type has one).
            let (dv, dmv) = unsafe {
                (
                    ld2_ps(
                        s[0].d.as_ptr().add(b * GROUP),
                        s[1].d.as_ptr().add(b * GROUP),
                    ),
                    if dmin {
                        ld2_ps(
                            s[0].dmin.as_ptr().add(b * GROUP),
                            s[1].dmin.as_ptr().add(b * GROUP),
                        )
                    } else {
                        _mm512_setzero_ps()
                    },
                )
            };
            for j in 0..nt {
                let (prep, jt) = (&preps[j / TILE], j % TILE);
                let mut i2 = _mm512_setzero_si512();
                for p in 0..4 {
                    let o = (b * 4 + p) * 32;
                    // SAFETY: 16 i16 at (b * 4 + p) * 16 in both groups; 2 i16 at
                    // (b * TILE + jt) * 8 + 2p (asserted).
                    let (mv, bp) = unsafe {
                        (
                            ld2(mn0.add(o), mn1.add(o)),
                            _mm512_set1_epi32(
                                (prep.bsp.as_ptr().add((b * TILE + jt) * 8 + 2 * p) as *const i32)
                                    .read_unaligned(),
                            ),
                        )
                    };
                    i2 = _mm512_add_epi32(i2, _mm512_madd_epi16(mv, bp));
                }
                let yd = _mm512_set1_ps(prep.dx[b * TILE + jt]);
                let dyd = _mm512_mul_ps(dv, yd);
                let a = &mut acc[j];
                if FIN == Finish::Q4K as u8 {
                    *a = _mm512_fmadd_ps(dyd, _mm512_cvtepi32_ps(i1[j]), *a);
                    *a = _mm512_fnmadd_ps(_mm512_mul_ps(dmv, yd), _mm512_cvtepi32_ps(i2), *a);
                } else if FIN == Finish::Q5K as u8 {
                    let t1 = _mm512_mul_ps(dyd, _mm512_cvtepi32_ps(i1[j]));
                    let t2 = _mm512_mul_ps(_mm512_mul_ps(dmv, yd), _mm512_cvtepi32_ps(i2));
                    *a = _mm512_add_ps(*a, _mm512_sub_ps(t1, t2));
                } else {
                    let isum = _mm512_sub_epi32(i1[j], _mm512_slli_epi32::<7>(i2));
                    *a = _mm512_add_ps(*a, _mm512_mul_ps(dyd, _mm512_cvtepi32_ps(isum)));
                }
            }
        }
        for (p, out) in outs[..NP].iter_mut().enumerate() {
            let acc: &[__m512; TILE] = acc[p * TILE..(p + 1) * TILE].try_into().expect("tile");
            store(acc, out);
        }
    }

    /// `out[j][r] = dot(row r, token prep.t[j])` for two groups of Q6_K rows unpacked by
    /// [`crate::matmul::tile_k6::avx2::k6_unpack_group`] (bit-identical to
    /// [`crate::matmul::tile_k6::k6_row_dot_scalar`] per row and token).
    ///
    /// Per 16-value sub-block, four `vpdpbusd` give the exact sums of the unsigned values times
    /// the token's values, multiplied by the rows' (signed) scales in 32 bits; `32 * sum_g sc_g
    /// * bsum_g` is subtracted per super-block as in AVX2.
    ///
    /// # Safety
    /// The CPU must support AVX-512 F/BW/VL/VNNI, AVX2, FMA and F16C; `prep` must be prepared
    /// from `acts`; `s` must hold rows of `acts.nb` blocks.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
    pub(crate) unsafe fn k6_group_tile(
        s: [&K6Group; 2],
        acts: &Acts<'_>,
        prep: &TilePrep,
        out: &mut [[f32; ROWS]; TILE],
    ) {
        let nb = acts.nb;
        for g in s {
            assert!(
                g.qi.len() >= nb * 8 * GROUP * 32
                    && g.sc.len() >= nb * 16 * 16
                    && g.scp.len() >= nb * 8 * 16
                    && g.d.len() >= nb * GROUP
            );
        }
        assert!(prep.dx.len() >= nb * TILE);
        let (qa, bs) = (prep.act_ptrs(acts, nb * 256), prep.bsum_ptrs(acts, nb * 16));
        let (wi0, wi1) = (s[0].qi.as_ptr(), s[1].qi.as_ptr());
        let (sc0, sc1) = (s[0].sc.as_ptr() as *const u8, s[1].sc.as_ptr() as *const u8);
        let (sp0, sp1) = (
            s[0].scp.as_ptr() as *const u8,
            s[1].scp.as_ptr() as *const u8,
        );
        let mut acc = [_mm512_setzero_ps(); TILE];
        for b in 0..nb {
            let mut i1 = [_mm512_setzero_si512(); TILE];
            for c in 0..8 {
                let ch = b * 8 + c;
                for half in 0..2 {
                    let g = 2 * c + half;
                    let mut s32 = [_mm512_setzero_si512(); TILE];
                    for k in 4 * half..4 * half + 4 {
                        let o = (ch * 8 + k) * 32;
                        // SAFETY: 32 bytes at o < nb * 8 * GROUP * 32 in both groups.
                        let w = unsafe { ld2(wi0.add(o), wi1.add(o)) };
                        for (j, s) in s32.iter_mut().enumerate() {
                            // SAFETY: 4 values at 32ch + 4k of a row of nb * 256 (checked).
                            let a = unsafe { bcast4(qa[j].add(32 * ch + 4 * k)) };
                            *s = _mm512_dpbusd_epi32(*s, w, a);
                        }
                    }
                    let o = (b * 16 + g) * 32;
                    // Row r's scale is in both i16 halves of 32-bit lane r.
                    // SAFETY: 16 i16 at (b * 16 + g) * 16 in both groups (asserted).
                    let scv = _mm512_srai_epi32::<16>(unsafe { ld2(sc0.add(o), sc1.add(o)) });
                    for (i, s) in i1.iter_mut().zip(&s32) {
                        *i = _mm512_add_epi32(*i, _mm512_mullo_epi32(*s, scv));
                    }
                }
            }
            // SAFETY: 8 scales at b * GROUP in both groups (asserted).
            let dv = unsafe {
                ld2_ps(
                    s[0].d.as_ptr().add(b * GROUP),
                    s[1].d.as_ptr().add(b * GROUP),
                )
            };
            for (j, (a, i1)) in acc.iter_mut().zip(&i1).enumerate() {
                // 32 * sum_g sc_g * bsum_g, lane r for row r.
                let mut i2 = _mm512_setzero_si512();
                for p in 0..8 {
                    let o = (b * 8 + p) * 32;
                    // SAFETY: 16 i16 at (b * 8 + p) * 16 in both groups; 2 bsums at
                    // 16b + 2p (checked).
                    let (sv, bp) = unsafe {
                        (
                            ld2(sp0.add(o), sp1.add(o)),
                            _mm512_set1_epi32(
                                (bs[j].add(16 * b + 2 * p) as *const i32).read_unaligned(),
                            ),
                        )
                    };
                    i2 = _mm512_add_epi32(i2, _mm512_madd_epi16(sv, bp));
                }
                let isum = _mm512_sub_epi32(*i1, _mm512_slli_epi32::<5>(i2));
                let yd = _mm512_set1_ps(prep.dx[b * TILE + j]);
                *a = _mm512_fmadd_ps(_mm512_mul_ps(dv, yd), _mm512_cvtepi32_ps(isum), *a);
            }
        }
        store(&acc, out);
    }
}
