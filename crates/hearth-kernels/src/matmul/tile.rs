//! Token-tile kernels for prompt processing: one weight row, read in place, times [`TILE`]
//! tokens at once.
//!
//! Each weight block is loaded and unpacked once into registers and multiplied with the same
//! block of the four tokens, so the unpacking and the weight loads are shared by the tile and
//! nothing is written back to memory between the two (the row-group kernels before these
//! unpacked eight rows into a scratch buffer and read it back per token). The per-token
//! float work runs on four lanes at once, with the tokens' block scales (and Q4_K's bsum
//! pairs) transposed once per tile ([`TilePrep`]) for all rows.
//!
//! The numerics are those of the one-row kernels, per row and token: for the 32-value block
//! types eight accumulators with block `b` going to accumulator `b % 8` as
//! `acc[b % 8] = fma(d_w[b] * d_x[b], float(isum_b), acc[b % 8])`, summed as
//! `((a0 + a1) + (a2 + a3)) + ((a4 + a5) + (a6 + a7))`; for Q4_K per super-block the exact
//! integer sums `I1 = sum_g sc_g * sum_l q * a` and `I2 = sum_g m_g * bsum_g`, then
//! `acc = fma(d * d_a, I1, acc)` and `acc = fma(-(dmin * d_a), I2, acc)`. The scalar twins
//! here compute exactly that, so a token's result has the same bits whichever kernel ran it,
//! alone (decode) or in a tile (prefill).

#![allow(unsafe_code)]

use hearth_gguf::GgmlType;

use super::act::Acts;
use super::group::{block_bytes, sum8, unpack_block, GROUP};
use crate::quant::f16_to_f32;
use crate::quant::k_quants::get_scale_min_k4;

/// Tokens per tile.
pub(crate) const TILE: usize = 4;

/// Bytes of a Q4_K block.
const Q4K_BYTES: usize = 144;

/// Bytes of a Q5_K block.
pub(crate) const K5_BYTES: usize = 176;

/// The tokens of one tile and their per-block data, transposed for the kernels.
#[derive(Default)]
pub(crate) struct TilePrep {
    /// The tile's tokens (a tile of fewer than [`TILE`] repeats its last token; the extra
    /// results are dropped by the caller).
    pub(crate) t: [usize; TILE],
    /// `dx[b * TILE + j]`: token `t[j]`'s scale of block `b`.
    pub(crate) dx: Vec<f32>,
    /// Q8_K only: `bsp[(b * TILE + j) * 8 + g]`: the sum of token `t[j]`'s two bsums of
    /// sub-block `g` of super-block `b`.
    pub(crate) bsp: Vec<i16>,
    /// Q8_0 with `asums` only: `asum[b * TILE + j]`: the sum of token `t[j]`'s 32 values of
    /// block `b`.
    pub(crate) asum: Vec<i32>,
}

impl TilePrep {
    /// The tile's four activation rows, checked to hold `len` values each.
    pub(crate) fn act_ptrs(&self, acts: &Acts<'_>, len: usize) -> [*const u8; TILE] {
        std::array::from_fn(|j| {
            let q = acts.qs_row(self.t[j]);
            assert!(q.len() >= len, "activation row");
            q.as_ptr() as *const u8
        })
    }

    /// The tile's four rows of Q8_K bsums, checked to hold `len` each.
    pub(crate) fn bsum_ptrs(&self, acts: &Acts<'_>, len: usize) -> [*const i16; TILE] {
        std::array::from_fn(|j| {
            let b = acts.bsums_row(self.t[j]);
            assert!(b.len() >= len, "bsums row");
            b.as_ptr()
        })
    }

    /// Prepares tokens `t0..t0 + nt` (`1 <= nt <= TILE`, all existing); `bsums`: also the
    /// bsum pairs (Q8_K activations); `asums`: also the block sums (Q8_0 activations).
    pub(crate) fn prepare(
        &mut self,
        acts: &Acts<'_>,
        t0: usize,
        nt: usize,
        bsums: bool,
        asums: bool,
    ) {
        assert!((1..=TILE).contains(&nt) && t0 + nt <= acts.n_tokens);
        let nb = acts.nb;
        self.t = std::array::from_fn(|j| t0 + j.min(nt - 1));
        self.dx.resize(nb * TILE, 0.0);
        for (j, &t) in self.t.iter().enumerate() {
            for (b, &d) in acts.d_row(t).iter().enumerate().take(nb) {
                self.dx[b * TILE + j] = d;
            }
        }
        if asums {
            self.asum.resize(nb * TILE, 0);
            for (j, &t) in self.t.iter().enumerate() {
                for (b, sum) in super::group::block_sums(acts, t).into_iter().enumerate() {
                    self.asum[b * TILE + j] = sum;
                }
            }
        }
        if bsums {
            self.bsp.resize(nb * TILE * 8, 0);
            for (j, &t) in self.t.iter().enumerate() {
                let bs = acts.bsums_row(t);
                for b in 0..nb {
                    for g in 0..8 {
                        self.bsp[(b * TILE + j) * 8 + g] =
                            bs[16 * b + 2 * g].saturating_add(bs[16 * b + 2 * g + 1]);
                    }
                }
            }
        }
    }
}

/// A group of up to [`GROUP`](super::group::GROUP) Q4_K rows unpacked for [`avx2::k4_group_tile`], per
/// 32-value sub-block `sb = b * 8 + g` of super-block `b`:
/// - `qi[(sb * 8 + k) * 32..]`: values 4k..4k + 4 (0..16) of the sub-block of rows 0..8
///   (`q` the same, row after row, before interleaving);
/// - `sc[sb * 16 + 2r]` and `[.. + 1]`: row r's 6-bit scale of the sub-block;
/// - `mins[(b * 4 + p) * 16 + 2r + i]`: row r's min of sub-block `2p + i`;
/// - `d[b * 8 + r]`, `dmin[b * 8 + r]`: the super-block scales.
#[derive(Default)]
pub(crate) struct K4Group {
    pub(crate) q: Vec<u8>,
    pub(crate) qi: Vec<u8>,
    pub(crate) sc: Vec<i16>,
    pub(crate) mins: Vec<i16>,
    pub(crate) d: Vec<f32>,
    pub(crate) dmin: Vec<f32>,
}

impl K4Group {
    /// Sizes the buffers for `nb` super-blocks (`dmin` too when `dmin`).
    pub(crate) fn resize(&mut self, nb: usize, dmin: bool) {
        let n_sub = nb * 8;
        self.q.resize(n_sub * GROUP * 32, 0);
        self.qi.resize(n_sub * GROUP * 32, 0);
        self.sc.resize(n_sub * 16, 0);
        self.mins.resize(nb * 4 * 16, 0);
        self.d.resize(nb * GROUP, 0.0);
        if dmin {
            self.dmin.resize(nb * GROUP, 0.0);
        }
    }
}

/// `dot(row, token t)` for the 32-value block types of [`super::group`] (portable twin of
/// the tile and one-row kernels).
pub(crate) fn q8_row_dot_scalar(ty: GgmlType, row: &[u8], acts: &Acts<'_>, t: usize) -> f32 {
    let (qa, da) = (acts.qs_row(t), acts.d_row(t));
    let bb = block_bytes(ty);
    let mut acc = [0.0f32; 8];
    let mut q = [0i8; 32];
    for (b, &dx) in da.iter().enumerate() {
        let d = unpack_block(ty, &row[b * bb..(b + 1) * bb], &mut q);
        let isum: i32 = q
            .iter()
            .zip(&qa[b * 32..(b + 1) * 32])
            .map(|(&x, &y)| i32::from(x) * i32::from(y))
            .sum();
        acc[b % 8] = (d * dx).mul_add(isum as f32, acc[b % 8]);
    }
    sum8(&acc)
}

/// `dot(row, token t)` for Q4_K times Q8_K (portable twin of the tile and one-row kernels).
pub(crate) fn k4_row_dot_scalar(row: &[u8], acts: &Acts<'_>, t: usize) -> f32 {
    let (qa, da, bs) = (acts.qs_row(t), acts.d_row(t), acts.bsums_row(t));
    let mut acc = 0.0f32;
    for (b, &yd) in da.iter().enumerate() {
        let x = &row[b * Q4K_BYTES..(b + 1) * Q4K_BYTES];
        let d = f16_to_f32(u16::from_le_bytes([x[0], x[1]]));
        let dmin = f16_to_f32(u16::from_le_bytes([x[2], x[3]]));
        let scales: &[u8; 12] = x[4..16].try_into().expect("12 bytes");
        let (mut i1, mut i2) = (0i32, 0i32);
        for g in 0..8 {
            let (sc, m) = get_scale_min_k4(g, scales);
            let qs = &x[16 + 32 * (g / 2)..16 + 32 * (g / 2) + 32];
            let a = &qa[256 * b + 32 * g..256 * b + 32 * (g + 1)];
            let gsum: i32 = qs
                .iter()
                .zip(a)
                .map(|(&v, &y)| i32::from((v >> (4 * (g % 2))) & 0x0f) * i32::from(y))
                .sum();
            i1 += i32::from(sc) * gsum;
            i2 +=
                i32::from(m) * (i32::from(bs[16 * b + 2 * g]) + i32::from(bs[16 * b + 2 * g + 1]));
        }
        acc = (d * yd).mul_add(i1 as f32, acc);
        acc = (-(dmin * yd)).mul_add(i2 as f32, acc);
    }
    acc
}

#[cfg(target_arch = "x86_64")]
pub(crate) mod avx2 {
    use std::arch::x86_64::*;

    use super::{K4Group, TilePrep, K5_BYTES, Q4K_BYTES, TILE};
    use crate::matmul::act::Acts;
    use crate::matmul::group::{self, avx2::interleave_chunks, GroupScratch, GROUP};
    use crate::matmul::x86_avx2::{f16c, ld};
    use crate::quant::k_quants::get_scale_min_k4;
    use hearth_gguf::GgmlType;

    /// `out[j][r] = dot(row r of the group, token prep.t[j])` for a group of rows of a
    /// 32-value block type unpacked by [`group::avx2::unpack_group`] (bit-identical to
    /// [`group::group_dot_scalar`] for each token).
    ///
    /// The interleaved layout puts row r's sums in lane r, so a block needs no horizontal
    /// reduction; the weights of each 4-value slice are loaded once for the four tokens.
    /// Accumulator `m` of every (row, token) is computed in a pass over the blocks
    /// `b = m, m + 8, ...` (the same additions in the same order as block by block).
    ///
    /// # Safety
    /// The CPU must support AVX2, FMA and F16C; `prep` must be prepared from `acts`, whose
    /// rows have the blocks `s` was unpacked with.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(crate) unsafe fn group_dot_tile(
        ty: GgmlType,
        s: &GroupScratch,
        acts: &Acts<'_>,
        prep: &TilePrep,
        out: &mut [[f32; GROUP]; TILE],
    ) {
        // SAFETY: forwarded.
        unsafe {
            match group::unsigned_offset(ty) {
                8 => group_dot_tile_t::<8>(s, acts, prep, out),
                16 => group_dot_tile_t::<16>(s, acts, prep, out),
                _ => group_dot_tile_t::<0>(s, acts, prep, out),
            }
        }
    }

    /// [`group_dot_tile`] for values with the unsigned offset `OFF` (0: the sign trick).
    ///
    /// With an offset, `qabs` holds `q + OFF` (0..2 * OFF), so `maddubs` multiplies the
    /// unsigned weights with the signed activations directly and several of its 16-bit results
    /// can be added before widening (`2 * 15 * 127 * 8` and `2 * 31 * 127 * 4` fit in i16);
    /// the exact block sum is then `sum((q + OFF) * a) - OFF * sum(a)`.
    ///
    /// # Safety
    /// As [`group_dot_tile`]; with an offset, `prep` must hold the block sums.
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn group_dot_tile_t<const OFF: i32>(
        s: &GroupScratch,
        acts: &Acts<'_>,
        prep: &TilePrep,
        out: &mut [[f32; GROUP]; TILE],
    ) {
        let nb = acts.nb;
        assert!(
            s.qi.len() >= nb * GROUP * 32
                && s.qabs.len() >= nb * GROUP * 32
                && s.d.len() >= nb * GROUP
                && prep.dx.len() >= nb * TILE
                && (OFF == 0 || prep.asum.len() >= nb * TILE)
        );
        let qa = prep.act_ptrs(acts, nb * 32);
        let ones = _mm256_set1_epi16(1);
        let (wi, wa) = (s.qi.as_ptr() as *const u8, s.qabs.as_ptr());
        // 16-bit partial sums per widening: all 8 slices (Q4_0), 4 (Q5_0).
        let run = if OFF == 8 { 8 } else { 4 };
        let mut part = [[_mm256_setzero_ps(); TILE]; 8];
        for (m, part) in part.iter_mut().enumerate().take(nb) {
            let mut acc = [_mm256_setzero_ps(); TILE];
            for b in (m..nb).step_by(8) {
                let mut isum = [_mm256_setzero_si256(); TILE];
                // The four tokens' 4 values at 32b + 4k, broadcast.
                let a4 = |j: usize, k: usize| {
                    // SAFETY: 4 values at 32b + 4k of a row of nb * 32 (checked).
                    unsafe {
                        _mm256_set1_epi32(
                            (qa[j].add(32 * b + 4 * k) as *const i32).read_unaligned(),
                        )
                    }
                };
                if OFF == 0 {
                    for k in 0..8 {
                        let o = (b * 8 + k) * 32;
                        // SAFETY: 32 bytes at o < nb * GROUP * 32 in both buffers (asserted).
                        let (w, wabs) = unsafe { (ld(wi.add(o)), ld(wa.add(o))) };
                        for (j, is) in isum.iter_mut().enumerate() {
                            let p = _mm256_maddubs_epi16(wabs, _mm256_sign_epi8(a4(j, k), w));
                            *is = _mm256_add_epi32(*is, _mm256_madd_epi16(p, ones));
                        }
                    }
                } else {
                    for k0 in (0..8).step_by(run) {
                        let mut s16 = [_mm256_setzero_si256(); TILE];
                        for k in k0..k0 + run {
                            // SAFETY: 32 bytes at o < nb * GROUP * 32 (asserted).
                            let wu = unsafe { ld(wa.add((b * 8 + k) * 32)) };
                            for (j, s) in s16.iter_mut().enumerate() {
                                *s = _mm256_add_epi16(*s, _mm256_maddubs_epi16(wu, a4(j, k)));
                            }
                        }
                        for (is, s) in isum.iter_mut().zip(&s16) {
                            *is = _mm256_add_epi32(*is, _mm256_madd_epi16(*s, ones));
                        }
                    }
                    for (j, is) in isum.iter_mut().enumerate() {
                        let corr = _mm256_set1_epi32(OFF * prep.asum[b * TILE + j]);
                        *is = _mm256_sub_epi32(*is, corr);
                    }
                }
                // SAFETY: 8 scales at b * GROUP; 4 at b * TILE (asserted).
                let dw = unsafe { _mm256_loadu_ps(s.d.as_ptr().add(b * GROUP)) };
                for (j, (a, is)) in acc.iter_mut().zip(&isum).enumerate() {
                    let dx = _mm256_set1_ps(prep.dx[b * TILE + j]);
                    *a = _mm256_fmadd_ps(_mm256_mul_ps(dw, dx), _mm256_cvtepi32_ps(*is), *a);
                }
            }
            *part = acc;
        }
        for (j, o) in out.iter_mut().enumerate() {
            let p = |m: usize| part[m][j];
            let sum = _mm256_add_ps(
                _mm256_add_ps(_mm256_add_ps(p(0), p(1)), _mm256_add_ps(p(2), p(3))),
                _mm256_add_ps(_mm256_add_ps(p(4), p(5)), _mm256_add_ps(p(6), p(7))),
            );
            // SAFETY: 8 floats out.
            unsafe { _mm256_storeu_ps(o.as_mut_ptr(), sum) };
        }
    }

    /// Unpacks `rows` (at most [`GROUP`] rows of `nb` Q4_K blocks) into `s`.
    ///
    /// # Safety
    /// The CPU must support AVX2, FMA and F16C.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(crate) unsafe fn k4_unpack_group(rows: &[&[u8]], nb: usize, s: &mut K4Group) {
        // SAFETY: forwarded.
        unsafe { k45_unpack_group::<false>(rows, nb, s) }
    }

    /// Unpacks `rows` of Q5_K blocks into `s` as [`k4_unpack_group`] does Q4_K, with the fifth
    /// bit (`qh`, bit g of byte l for value l of sub-block g) merged: values 0..32.
    ///
    /// # Safety
    /// The CPU must support AVX2, FMA and F16C.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(crate) unsafe fn k5_unpack_group(rows: &[&[u8]], nb: usize, s: &mut K4Group) {
        // SAFETY: forwarded.
        unsafe { k45_unpack_group::<true>(rows, nb, s) }
    }

    /// [`k4_unpack_group`] (`Q5` false) or [`k5_unpack_group`].
    ///
    /// # Safety
    /// The CPU must support AVX2, FMA and F16C.
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn k45_unpack_group<const Q5: bool>(rows: &[&[u8]], nb: usize, s: &mut K4Group) {
        // Block bytes and where the nibbles start (Q5_K's 32 `qh` bytes come before them).
        let (bb, qs0) = if Q5 { (K5_BYTES, 48) } else { (Q4K_BYTES, 16) };
        s.resize(nb, true);
        let (m4, one) = (_mm256_set1_epi8(0x0f), _mm256_set1_epi8(1));
        for (r, row) in rows.iter().enumerate().take(GROUP) {
            assert!(row.len() >= nb * bb, "row of {nb} blocks");
            for b in 0..nb {
                let x = &row[b * bb..(b + 1) * bb];
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
                // Q5_K: bit 4 of the values of sub-block g, from bit g of the qh bytes.
                let qh = if Q5 {
                    // SAFETY: bytes 16..48 of a Q5_K block.
                    unsafe { ld(x.as_ptr().add(16)) }
                } else {
                    one
                };
                let high = |g: usize| {
                    let bit =
                        _mm256_and_si256(_mm256_srl_epi16(qh, _mm_cvtsi32_si128(g as i32)), one);
                    _mm256_slli_epi16::<4>(bit)
                };
                for q in 0..4 {
                    // SAFETY: bytes qs0 + 32q .. +32 of the block; sub-blocks 2q and 2q + 1 of
                    // row r at ((b * 8 + g) * GROUP + r) * 32 < nb * 8 * GROUP * 32.
                    unsafe {
                        let raw = ld(x.as_ptr().add(qs0 + 32 * q));
                        let mut lo = _mm256_and_si256(raw, m4);
                        let mut hi = _mm256_and_si256(_mm256_srli_epi16::<4>(raw), m4);
                        if Q5 {
                            lo = _mm256_or_si256(lo, high(2 * q));
                            hi = _mm256_or_si256(hi, high(2 * q + 1));
                        }
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

    /// `out[j][r] = dot(row r of the group, token prep.t[j])` for Q4_K rows unpacked by
    /// [`k4_unpack_group`] (bit-identical to [`super::k4_row_dot_scalar`] for each row and
    /// token).
    ///
    /// Lane r holds row r throughout: per sub-block, eight `maddubs` of the interleaved
    /// nibbles with the token's broadcast values are added in 16 bits (`8 * 2 * 15 * 128`
    /// fits), then one `madd` with the rows' scales widens and scales them; the mins' term
    /// takes four `madd`s per super-block.
    ///
    /// # Safety
    /// The CPU must support AVX2, FMA and F16C; `prep` must be prepared from `acts` with the
    /// bsum pairs; `s` must hold rows of `acts.nb` blocks.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(crate) unsafe fn k4_group_tile(
        s: &K4Group,
        acts: &Acts<'_>,
        prep: &TilePrep,
        out: &mut [[f32; GROUP]; TILE],
    ) {
        let nb = acts.nb;
        assert!(
            s.qi.len() >= nb * 8 * GROUP * 32
                && s.sc.len() >= nb * 8 * 16
                && s.mins.len() >= nb * 4 * 16
                && s.d.len() >= nb * GROUP
                && s.dmin.len() >= nb * GROUP
                && prep.dx.len() >= nb * TILE
                && prep.bsp.len() >= nb * TILE * 8
        );
        let qa = prep.act_ptrs(acts, nb * 256);
        let (wi, sc, mins) = (s.qi.as_ptr(), s.sc.as_ptr(), s.mins.as_ptr());
        let mut acc = [_mm256_setzero_ps(); TILE];
        for b in 0..nb {
            let mut i1 = [_mm256_setzero_si256(); TILE];
            for g in 0..8 {
                let sb = b * 8 + g;
                let mut s16 = [_mm256_setzero_si256(); TILE];
                for k in 0..8 {
                    // SAFETY: 32 bytes at (sb * 8 + k) * 32 < nb * 8 * GROUP * 32 (asserted).
                    let w = unsafe { ld(wi.add((sb * 8 + k) * 32)) };
                    for (j, s) in s16.iter_mut().enumerate() {
                        // SAFETY: 4 values at 32sb + 4k of a row of nb * 256 (checked).
                        let a4 = unsafe {
                            _mm256_set1_epi32(
                                (qa[j].add(32 * sb + 4 * k) as *const i32).read_unaligned(),
                            )
                        };
                        *s = _mm256_add_epi16(*s, _mm256_maddubs_epi16(w, a4));
                    }
                }
                // SAFETY: 16 i16 at sb * 16 (asserted).
                let scv = unsafe { _mm256_loadu_si256(sc.add(sb * 16) as *const __m256i) };
                for (i, s) in i1.iter_mut().zip(&s16) {
                    *i = _mm256_add_epi32(*i, _mm256_madd_epi16(*s, scv));
                }
            }
            // SAFETY: 8 scales at b * GROUP (asserted).
            let (dv, dmv) = unsafe {
                (
                    _mm256_loadu_ps(s.d.as_ptr().add(b * GROUP)),
                    _mm256_loadu_ps(s.dmin.as_ptr().add(b * GROUP)),
                )
            };
            for (j, (a, i1)) in acc.iter_mut().zip(&i1).enumerate() {
                let mut i2 = _mm256_setzero_si256();
                for p in 0..4 {
                    // SAFETY: 16 i16 at (b * 4 + p) * 16; 2 i16 at (b * TILE + j) * 8 + 2p
                    // (asserted).
                    let (mv, bp) = unsafe {
                        (
                            _mm256_loadu_si256(mins.add((b * 4 + p) * 16) as *const __m256i),
                            _mm256_set1_epi32(
                                (prep.bsp.as_ptr().add((b * TILE + j) * 8 + 2 * p) as *const i32)
                                    .read_unaligned(),
                            ),
                        )
                    };
                    i2 = _mm256_add_epi32(i2, _mm256_madd_epi16(mv, bp));
                }
                let yd = _mm256_set1_ps(prep.dx[b * TILE + j]);
                *a = _mm256_fmadd_ps(_mm256_mul_ps(dv, yd), _mm256_cvtepi32_ps(*i1), *a);
                *a = _mm256_fnmadd_ps(_mm256_mul_ps(dmv, yd), _mm256_cvtepi32_ps(i2), *a);
            }
        }
        for (o, a) in out.iter_mut().zip(&acc) {
            // SAFETY: 8 floats out.
            unsafe { _mm256_storeu_ps(o.as_mut_ptr(), *a) };
        }
    }
}
