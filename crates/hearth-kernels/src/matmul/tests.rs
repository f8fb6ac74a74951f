//! Kernel tests: SIMD quantizers against their scalar twins (bit-exact),
//! scalar dot products against dequantize + f64 dot, every SIMD kernel this
//! machine supports against the scalar twins, and `matmul` end to end
//! (thread counts, tilings, decode vs prefill, fallback, errors).

use super::act::{quantize_rows, quantize_rows_scalar, ActRowsMut};
use super::*;
use crate::quant::{quantize, Block, BlockQ8K};
use hearth_gguf::QK_K;

/// Types with kernels, and the byte offsets of their f16 scale fields.
const FAST: &[(GgmlType, &[usize])] = &[
    (GgmlType::Q4_0, &[0]),
    (GgmlType::Q4_1, &[0, 2]),
    (GgmlType::Q5_0, &[0]),
    (GgmlType::Q5_1, &[0, 2]),
    (GgmlType::Q8_0, &[0]),
    (GgmlType::IQ4_NL, &[0]),
    (GgmlType::Q2_K, &[80, 82]),
    (GgmlType::Q3_K, &[108]),
    (GgmlType::Q4_K, &[0, 2]),
    (GgmlType::Q5_K, &[0, 2]),
    (GgmlType::Q6_K, &[208]),
    (GgmlType::IQ4_XS, &[0]),
    (GgmlType::F16, &[]),
    (GgmlType::BF16, &[]),
    (GgmlType::F32, &[]),
];

/// PCG32: seeded, reproducible test data.
struct Rng(u64);

impl Rng {
    fn u32(&mut self) -> u32 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let x = ((self.0 >> 18) ^ self.0) >> 27;
        let rot = (self.0 >> 59) as u32;
        (x as u32).rotate_right(rot)
    }

    /// Uniform in [-1, 1).
    fn uniform(&mut self) -> f32 {
        (self.u32() >> 8) as f32 / (1u32 << 23) as f32 - 1.0
    }

    /// Roughly normal, with an occasional outlier (as real activations).
    fn value(&mut self) -> f32 {
        let v: f32 = (0..4).map(|_| self.uniform()).sum::<f32>() * 0.6;
        if self.u32().is_multiple_of(97) {
            v * 8.0
        } else {
            v
        }
    }

    fn values(&mut self, n: usize, scale: f32) -> Vec<f32> {
        (0..n).map(|_| self.value() * scale).collect()
    }
}

/// Weights of `ty`: `n_rows` rows of `ne0`, either quantized from random
/// values or random bytes with sane f16 scales (every bit pattern of the
/// quants, scales and high bits).
fn weights(
    ty: GgmlType,
    scale_offsets: &[usize],
    ne0: usize,
    n_rows: usize,
    rng: &mut Rng,
    raw: bool,
) -> Vec<u8> {
    let (bv, bb) = block_geometry(ty);
    let n = ne0 * n_rows;
    let mut w = vec![0u8; n / bv * bb];
    if raw && !scale_offsets.is_empty() {
        for b in w.iter_mut() {
            *b = rng.u32() as u8;
        }
        for block in w.chunks_exact_mut(bb) {
            for &o in scale_offsets {
                let d = 0.001 + 0.05 * (rng.uniform() + 1.0);
                block[o..o + 2].copy_from_slice(&crate::quant::f32_to_f16(d).to_le_bytes());
            }
        }
    } else {
        let x = rng.values(n, 1.0);
        quantize(ty, &x, &mut w).unwrap();
    }
    w
}

fn acts_for<'x>(
    kind: ActKind,
    x: &'x [f32],
    n_tokens: usize,
    ne0: usize,
    level: CpuLevel,
) -> Acts<'x> {
    Acts::quantize(kind, x, n_tokens, ne0, level, None)
}

#[test]
fn simd_activation_quantizers_are_bit_exact_twins() {
    let mut rng = Rng(7);
    let ne0 = 2 * QK_K + 256;
    let n_tokens = 3;
    for kind in [
        ActKind::Q8_0,
        ActKind::Q8_1,
        ActKind::Q8K,
        ActKind::F16,
        ActKind::BF16,
    ] {
        let mut x = rng.values(n_tokens * ne0, 3.0);
        // Edge cases: a zero block, ties, a repeated extreme of both signs.
        x[..32].fill(0.0);
        x[32] = 1.0;
        x[33] = -1.0;
        x[40] = 0.5 / 127.0;
        x[300] = -x[301].abs() - 5.0;
        x[302] = -x[300];
        let reference = acts_for(kind, &x, n_tokens, ne0, CpuLevel::Scalar);
        for level in CpuLevel::supported().filter(|&l| l > CpuLevel::Scalar) {
            let a = acts_for(kind, &x, n_tokens, ne0, level);
            assert_eq!(a.qs, reference.qs, "{kind:?} {level} qs");
            let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&a.d), bits(&reference.d), "{kind:?} {level} d");
            assert_eq!(bits(&a.s), bits(&reference.s), "{kind:?} {level} s");
            assert_eq!(a.bsums, reference.bsums, "{kind:?} {level} bsums");
            assert_eq!(a.h, reference.h, "{kind:?} {level} h");
        }
    }
}

#[test]
fn q8k_activations_match_the_block_quantizer() {
    let mut rng = Rng(11);
    let x = rng.values(QK_K, 2.0);
    let a = acts_for(ActKind::Q8K, &x, 1, QK_K, CpuLevel::Scalar);
    let mut bytes = vec![0u8; BlockQ8K::BYTES];
    quantize(GgmlType::Q8_K, &x, &mut bytes).unwrap();
    let b = BlockQ8K::decode(&bytes);
    assert_eq!(a.qs, b.qs.to_vec());
    assert_eq!(a.d[0], b.d);
    assert_eq!(a.bsums, b.bsums.to_vec());
}

/// The value each kernel approximates, in f64: dequantized weights times
/// dequantized activations, plus, for Q8_1 activations, ggml's use of the
/// f16 `s` instead of `d * sum(qs)` in the min term. Also returns
/// `sum |w_i a_i|` for the tolerance.
fn reference_dot(ty: GgmlType, w_row: &[u8], acts: &Acts<'_>, t: usize) -> (f64, f64) {
    let ne0 = acts.ne0;
    let mut wf = vec![0.0f32; ne0];
    dequantize(ty, w_row, &mut wf).unwrap();
    let af: Vec<f64> = match acts.kind {
        ActKind::Q8_0 | ActKind::Q8_1 | ActKind::Q8K => {
            let bl = acts.kind.block();
            let d = acts.d_row(t);
            acts.qs_row(t)
                .iter()
                .enumerate()
                .map(|(i, &q)| f64::from(d[i / bl]) * f64::from(q))
                .collect()
        }
        ActKind::F16 => acts
            .h_row(t)
            .iter()
            .map(|&h| f64::from(crate::quant::f16_to_f32(h)))
            .collect(),
        ActKind::BF16 => acts
            .h_row(t)
            .iter()
            .map(|&h| f64::from(crate::quant::bf16_to_f32(h)))
            .collect(),
        ActKind::F32 => acts.f_row(t).iter().map(|&v| f64::from(v)).collect(),
    };
    let mut dot = 0.0f64;
    let mut mag = 0.0f64;
    for (&w, &a) in wf.iter().zip(&af) {
        dot += f64::from(w) * a;
        mag += (f64::from(w) * a).abs();
    }
    if acts.kind == ActKind::Q8_1 {
        let bb = block_geometry(ty).1;
        for (b, blk) in w_row.chunks_exact(bb).enumerate() {
            let m = f64::from(scalar::f16_at(blk, 2));
            let sum: f64 = acts.qs_row(t)[32 * b..32 * b + 32]
                .iter()
                .map(|&q| f64::from(q))
                .sum();
            let exact = f64::from(acts.d_row(t)[b]) * sum;
            dot += m * (f64::from(acts.s_row(t)[b]) - exact);
            mag += (m * f64::from(acts.s_row(t)[b])).abs();
        }
    }
    (dot, mag)
}

fn close(got: f32, want: f64, mag: f64, rel: f64) -> bool {
    (f64::from(got) - want).abs() <= rel * mag + 1e-6
}

#[test]
fn scalar_twins_match_dequantize_and_dot() {
    let mut rng = Rng(1);
    let ne0 = 3 * QK_K;
    let n_tokens = 2;
    for &(ty, offs) in FAST {
        for raw in [false, true] {
            let w = weights(ty, offs, ne0, 3, &mut rng, raw);
            let x = rng.values(n_tokens * ne0, 1.5);
            let kind = act_kind(ty).unwrap();
            let acts = acts_for(kind, &x, n_tokens, ne0, CpuLevel::Scalar);
            let dot = scalar::scalar_dot(ty).unwrap();
            let row_bytes = w.len() / 3;
            for (r, row) in w.chunks_exact(row_bytes).enumerate() {
                for t in 0..n_tokens {
                    let got = dot(row, &acts, t);
                    let (want, mag) = reference_dot(ty, row, &acts, t);
                    assert!(
                        close(got, want, mag, 1e-5),
                        "{ty} raw={raw} row {r} token {t}: {got} vs {want} (mag {mag})"
                    );
                }
            }
        }
    }
}

#[test]
fn simd_kernels_match_scalar_twins_at_every_supported_level() {
    let mut rng = Rng(2);
    // The kernels written for each SIMD level this CPU runs (no self-test
    // fallback here: a failing kernel must fail the test).
    let levels: Vec<CpuLevel> = CpuLevel::supported()
        .filter(|&l| l == CpuLevel::Avx2 || l == CpuLevel::Avx512)
        .collect();
    // Row lengths: several super-blocks, and (float types) a ragged tail.
    for &(ty, offs) in FAST {
        let ne0s: &[usize] = if block_geometry(ty).0 == 1 {
            &[2 * QK_K, 100, 37]
        } else {
            &[2 * QK_K, 4 * QK_K]
        };
        for &ne0 in ne0s {
            for raw in [false, true] {
                let n_rows = 5;
                let n_tokens = 7;
                let w = weights(ty, offs, ne0, n_rows, &mut rng, raw);
                let x = rng.values(n_tokens * ne0, 1.0);
                let kind = act_kind(ty).unwrap();
                let dot = scalar::scalar_dot(ty).unwrap();
                let scalar_acts = acts_for(kind, &x, n_tokens, ne0, CpuLevel::Scalar);
                let row_bytes = w.len() / n_rows;
                for &level in &levels {
                    let Some(f) = simd_kernel(ty, level) else {
                        continue;
                    };
                    let k = Kernel {
                        act: kind,
                        dot: Dot::Simd(f),
                        level,
                        group: None,
                    };
                    let acts = acts_for(kind, &x, n_tokens, ne0, level);
                    for (r, row) in w.chunks_exact(row_bytes).enumerate() {
                        // Tiles of every size, at every offset.
                        for tile in 1..=TILE {
                            for t0 in 0..=n_tokens - tile {
                                let mut got = [0.0f32; TILE];
                                k.run(row, &acts, t0, &mut got[..tile]);
                                for (j, &g) in got[..tile].iter().enumerate() {
                                    let want = dot(row, &scalar_acts, t0 + j);
                                    let (_, mag) = reference_dot(ty, row, &scalar_acts, t0 + j);
                                    assert!(
                                        close(g, f64::from(want), mag, 1e-5),
                                        "{ty} {level} ne0={ne0} raw={raw} row {r} token {} tile {tile}: {g} vs {want}",
                                        t0 + j
                                    );
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn run_matmul(pool: &ThreadPool, w: &QMatrix<'_>, x: &[f32], n_tokens: usize) -> Vec<f32> {
    let mut out = vec![f32::NAN; n_tokens * w.n_rows()];
    matmul(pool, w, x, n_tokens, &mut out).unwrap();
    out
}

#[test]
fn matmul_is_deterministic_across_threads_tiles_and_batching() {
    let mut rng = Rng(3);
    let pools: Vec<ThreadPool> = [1, 2, 3].into_iter().map(ThreadPool::new).collect();
    for &(ty, offs) in FAST {
        let ne0 = 2 * QK_K;
        let n_rows = 37;
        let n_tokens = 9;
        let w = weights(ty, offs, ne0, n_rows, &mut rng, false);
        let x = rng.values(n_tokens * ne0, 1.0);
        for level in CpuLevel::supported() {
            let m = QMatrix::new(ty, &w[..], ne0, n_rows)
                .unwrap()
                .with_level(level)
                .unwrap();
            let batch = run_matmul(&pools[0], &m, &x, n_tokens);
            for pool in &pools[1..] {
                let other = run_matmul(pool, &m, &x, n_tokens);
                assert_eq!(
                    batch.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                    other.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                    "{ty} {level}: thread count changed the result"
                );
            }
            for t in 0..n_tokens {
                let one = run_matmul(&pools[1], &m, &x[t * ne0..(t + 1) * ne0], 1);
                for r in 0..n_rows {
                    assert_eq!(
                        one[r].to_bits(),
                        batch[t * n_rows + r].to_bits(),
                        "{ty} {level}: decode and prefill differ at token {t} row {r}"
                    );
                }
            }
            // And against the scalar twins.
            let kind = act_kind(ty).unwrap();
            let acts = acts_for(kind, &x, n_tokens, ne0, CpuLevel::Scalar);
            let dot = scalar::scalar_dot(ty).unwrap();
            for t in 0..n_tokens {
                for r in 0..n_rows {
                    let row = m.row(r);
                    let want = dot(row, &acts, t);
                    let (_, mag) = reference_dot(ty, row, &acts, t);
                    assert!(
                        close(batch[t * n_rows + r], f64::from(want), mag, 1e-5),
                        "{ty} {level} ({t}, {r})"
                    );
                }
            }
        }
    }
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// The tile kernels of the 32-value block types (Q4_0, Q5_0, Q8_0, IQ4_NL): for groups of
/// every size, a full and a partial tile, odd block counts and fewer blocks than
/// accumulators, the AVX2 tile and one-row kernels give the scalar twin's bits (all bit
/// patterns of the weights), and the twin agrees with the f64 reference dot product.
#[test]
fn q8_tile_kernels_match_their_scalar_twin_bit_for_bit() {
    use super::group::{self, GroupScratch, GROUP};
    use super::tile::{self, TilePrep, TILE};
    let mut rng = Rng(21);
    let n_tokens = 6;
    for ty in [
        GgmlType::Q4_0,
        GgmlType::Q5_0,
        GgmlType::Q8_0,
        GgmlType::IQ4_NL,
    ] {
        for (ne0, raw) in [(19 * 32, true), (5 * 32, true), (16 * 32, false)] {
            let w = weights(ty, &[0], ne0, GROUP, &mut rng, raw);
            let x = rng.values(n_tokens * ne0, 1.0);
            let rb = w.len() / GROUP;
            for n_rows in 1..=GROUP {
                let rows: Vec<&[u8]> = w.chunks_exact(rb).take(n_rows).collect();
                for level in CpuLevel::supported() {
                    let acts = acts_for(ActKind::Q8_0, &x, n_tokens, ne0, level);
                    let want: Vec<Vec<f32>> = (0..n_tokens)
                        .map(|t| {
                            let v: Vec<f32> = rows
                                .iter()
                                .map(|row| tile::q8_row_dot_scalar(ty, row, &acts, t))
                                .collect();
                            for (r, row) in rows.iter().enumerate() {
                                let (exact, mag) = reference_dot(ty, row, &acts, t);
                                assert!(close(v[r], exact, mag, 1e-5), "{ty} scalar ({t}, {r})");
                            }
                            v
                        })
                        .collect();
                    #[cfg(target_arch = "x86_64")]
                    if level >= CpuLevel::Avx2 {
                        let mut s = GroupScratch::default();
                        // SAFETY: the level is supported by this CPU.
                        unsafe {
                            group::avx2::unpack_group(
                                ty,
                                &rows,
                                ne0 / 32,
                                &mut s,
                                group::unsigned_offset(ty),
                            )
                        };
                        let asums = group::unsigned_offset(ty) != 0;
                        for t0 in (0..n_tokens).step_by(TILE) {
                            let nt = TILE.min(n_tokens - t0);
                            let mut prep = TilePrep::default();
                            prep.prepare(&acts, t0, nt, false, asums);
                            let mut got = [[0.0f32; GROUP]; TILE];
                            // SAFETY: the level is supported by this CPU.
                            unsafe { tile::avx2::group_dot_tile(ty, &s, &acts, &prep, &mut got) };
                            for j in 0..nt {
                                assert_eq!(
                                    bits(&got[j][..n_rows]),
                                    bits(&want[t0 + j]),
                                    "{ty} ne0 {ne0} tile token {}, {n_rows} rows",
                                    t0 + j
                                );
                            }
                        }
                        for (t, want) in want.iter().enumerate() {
                            for (r, row) in rows.iter().enumerate() {
                                let asum = group::block_sums(&acts, t);
                                // SAFETY: the level is supported by this CPU.
                                let one = unsafe {
                                    group::avx2::row_dot_direct(ty, row, &acts, t, &asum)
                                };
                                assert_eq!(one.to_bits(), want[r].to_bits(), "{ty} row {r}");
                                if level >= CpuLevel::Avx512 {
                                    // SAFETY: the level is supported by this CPU.
                                    let vnni = unsafe {
                                        group::avx2::row_dot_direct_vnni(ty, row, &acts, t, &asum)
                                    };
                                    assert_eq!(vnni.to_bits(), want[r].to_bits(), "{ty} vnni {r}");
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The Q4_K kernels: for groups of every size and a full and a partial tile, the AVX2 tile
/// kernel (from the unpacked group) and the one-row kernel give the scalar twin's bits, which
/// are close to the f64 reference.
#[test]
fn q4_k_tile_kernels_match_their_scalar_twin_bit_for_bit() {
    use super::group::GROUP;
    use super::tile::{self, K4Group, TilePrep, TILE};
    let mut rng = Rng(23);
    let n_tokens = 7;
    let ty = GgmlType::Q4_K;
    for (ne0, raw) in [(2 * QK_K, true), (3 * QK_K, false)] {
        let w = weights(ty, &[0, 2], ne0, GROUP, &mut rng, raw);
        let x = rng.values(n_tokens * ne0, 1.0);
        let all: Vec<&[u8]> = w.chunks_exact(w.len() / GROUP).collect();
        for level in CpuLevel::supported() {
            let acts = acts_for(ActKind::Q8K, &x, n_tokens, ne0, level);
            let want: Vec<Vec<f32>> = (0..n_tokens)
                .map(|t| {
                    all.iter()
                        .map(|row| tile::k4_row_dot_scalar(row, &acts, t))
                        .collect()
                })
                .collect();
            for (t, want) in want.iter().enumerate() {
                for (r, row) in all.iter().enumerate() {
                    let (exact, mag) = reference_dot(ty, row, &acts, t);
                    assert!(close(want[r], exact, mag, 1e-5), "scalar ({t}, {r})");
                }
            }
            #[cfg(target_arch = "x86_64")]
            if level >= CpuLevel::Avx2 {
                for n_rows in 1..=GROUP {
                    let mut s = K4Group::default();
                    // SAFETY: the level is supported by this CPU.
                    unsafe { tile::avx2::k4_unpack_group(&all[..n_rows], ne0 / QK_K, &mut s) };
                    for t0 in (0..n_tokens).step_by(TILE) {
                        let nt = TILE.min(n_tokens - t0);
                        let mut prep = TilePrep::default();
                        prep.prepare(&acts, t0, nt, true, false);
                        let mut got = [[0.0f32; GROUP]; TILE];
                        // SAFETY: the level is supported by this CPU.
                        unsafe { tile::avx2::k4_group_tile(&s, &acts, &prep, &mut got) };
                        for j in 0..nt {
                            assert_eq!(
                                bits(&got[j][..n_rows]),
                                bits(&want[t0 + j][..n_rows]),
                                "tile token {}, {n_rows} rows",
                                t0 + j
                            );
                        }
                    }
                }
                for (t, want) in want.iter().enumerate() {
                    for (r, row) in all.iter().enumerate() {
                        // SAFETY: the level is supported by this CPU.
                        let one =
                            unsafe { super::group::avx2_k4::k4_row_dot_direct(row, &acts, t) };
                        assert_eq!(one.to_bits(), want[r].to_bits(), "row direct ({t}, {r})");
                    }
                }
            }
        }
    }
}

/// The Q6_K kernels: for groups of every size and a full and a partial tile, the AVX2 tile
/// kernel and the one-row kernel give the scalar twin's bits (all bit patterns of the
/// quants and scales), which are close to the f64 reference.
#[test]
fn q6_k_kernels_match_their_scalar_twin_bit_for_bit() {
    use super::group::GROUP;
    use super::tile::{TilePrep, TILE};
    use super::tile_k6::{self, K6Group};
    let mut rng = Rng(29);
    let n_tokens = 6;
    let ty = GgmlType::Q6_K;
    for (ne0, raw) in [(2 * QK_K, true), (3 * QK_K, false)] {
        let w = weights(ty, &[208], ne0, GROUP, &mut rng, raw);
        let x = rng.values(n_tokens * ne0, 1.0);
        let all: Vec<&[u8]> = w.chunks_exact(w.len() / GROUP).collect();
        for level in CpuLevel::supported() {
            let acts = acts_for(ActKind::Q8K, &x, n_tokens, ne0, level);
            let want: Vec<Vec<f32>> = (0..n_tokens)
                .map(|t| {
                    all.iter()
                        .map(|row| tile_k6::k6_row_dot_scalar(row, &acts, t))
                        .collect()
                })
                .collect();
            for (t, want) in want.iter().enumerate() {
                for (r, row) in all.iter().enumerate() {
                    let (exact, mag) = reference_dot(ty, row, &acts, t);
                    assert!(close(want[r], exact, mag, 1e-5), "scalar ({t}, {r})");
                }
            }
            #[cfg(target_arch = "x86_64")]
            if level >= CpuLevel::Avx2 {
                for n_rows in 1..=GROUP {
                    let mut s = K6Group::default();
                    // SAFETY: the level is supported by this CPU.
                    unsafe { tile_k6::avx2::k6_unpack_group(&all[..n_rows], ne0 / QK_K, &mut s) };
                    for t0 in (0..n_tokens).step_by(TILE) {
                        let nt = TILE.min(n_tokens - t0);
                        let mut prep = TilePrep::default();
                        prep.prepare(&acts, t0, nt, false, false);
                        let mut got = [[0.0f32; GROUP]; TILE];
                        // SAFETY: the level is supported by this CPU.
                        unsafe { tile_k6::avx2::k6_group_tile(&s, &acts, &prep, &mut got) };
                        for j in 0..nt {
                            assert_eq!(
                                bits(&got[j][..n_rows]),
                                bits(&want[t0 + j][..n_rows]),
                                "tile token {}, {n_rows} rows",
                                t0 + j
                            );
                        }
                    }
                }
                for (t, want) in want.iter().enumerate() {
                    for (r, row) in all.iter().enumerate() {
                        // SAFETY: the level is supported by this CPU.
                        let one = unsafe { tile_k6::avx2::k6_row_dot_direct(row, &acts, t) };
                        assert_eq!(one.to_bits(), want[r].to_bits(), "row direct ({t}, {r})");
                    }
                }
            }
        }
    }
}

/// The AVX-512 VNNI tile kernels (sixteen rows: two unpacked groups side by side): for every
/// row count 1..=16 (a lone group passed twice), a full and a partial tile, odd and small
/// block counts and every bit pattern of the weights, each type's kernel gives the scalar
/// twin's bits for each row and token.
#[test]
fn vnni_tile_kernels_match_their_scalar_twins_bit_for_bit() {
    use super::group::{self, GroupScratch, GROUP};
    use super::kgroup;
    use super::tile::{self, K4Group, TilePrep, TILE};
    use super::tile512::ROWS;
    use super::tile_k6::{self, K6Group};
    if !CpuLevel::Avx512.is_supported() {
        eprintln!("skipped: this CPU has no AVX-512 VNNI");
        return;
    }
    #[cfg(target_arch = "x86_64")]
    {
        use super::tile512::avx512;
        let level = CpuLevel::Avx512;
        let mut rng = Rng(31);
        let n_tokens = 7;
        let cases: &[(GgmlType, &[usize], &[usize])] = &[
            (GgmlType::Q4_0, &[0], &[19 * 32, 5 * 32]),
            (GgmlType::Q5_0, &[0], &[19 * 32, 5 * 32]),
            (GgmlType::Q8_0, &[0], &[19 * 32, 5 * 32]),
            (GgmlType::IQ4_NL, &[0], &[19 * 32, 5 * 32]),
            (GgmlType::Q4_K, &[0, 2], &[2 * QK_K, 3 * QK_K]),
            (GgmlType::Q6_K, &[208], &[2 * QK_K, 3 * QK_K]),
            (GgmlType::Q5_K, &[0, 2], &[2 * QK_K, 3 * QK_K]),
            (GgmlType::IQ4_XS, &[0], &[2 * QK_K, 3 * QK_K]),
        ];
        for &(ty, scales, ne0s) in cases {
            for &ne0 in ne0s {
                for raw in [true, false] {
                    let w = weights(ty, scales, ne0, ROWS, &mut rng, raw);
                    let x = rng.values(n_tokens * ne0, 1.0);
                    let all: Vec<&[u8]> = w.chunks_exact(w.len() / ROWS).collect();
                    let kind = act_kind(ty).unwrap();
                    let acts = acts_for(kind, &x, n_tokens, ne0, level);
                    let twin = |row: &[u8], t: usize| match ty {
                        GgmlType::Q4_K => tile::k4_row_dot_scalar(row, &acts, t),
                        GgmlType::Q6_K => tile_k6::k6_row_dot_scalar(row, &acts, t),
                        GgmlType::Q5_K => scalar::vec_dot_q5_k_q8_k_scalar(row, &acts, t),
                        GgmlType::IQ4_XS => scalar::vec_dot_iq4_xs_q8_k_scalar(row, &acts, t),
                        _ => tile::q8_row_dot_scalar(ty, row, &acts, t),
                    };
                    let nb = acts.nb;
                    for n_rows in 1..=ROWS {
                        let groups: Vec<&[&[u8]]> = all[..n_rows].chunks(GROUP).collect();
                        let second = groups.len() - 1;
                        let (mut q8, mut k4, mut k6) = (
                            [GroupScratch::default(), GroupScratch::default()],
                            [K4Group::default(), K4Group::default()],
                            [K6Group::default(), K6Group::default()],
                        );
                        for (h, rows) in groups.iter().enumerate() {
                            // SAFETY: AVX-512 (and so AVX2) is supported by this CPU.
                            unsafe {
                                match ty {
                                    GgmlType::Q4_K => {
                                        tile::avx2::k4_unpack_group(rows, nb, &mut k4[h])
                                    }
                                    GgmlType::Q6_K => {
                                        tile_k6::avx2::k6_unpack_group(rows, nb, &mut k6[h])
                                    }
                                    GgmlType::Q5_K => {
                                        tile::avx2::k5_unpack_group(rows, nb, &mut k4[h])
                                    }
                                    GgmlType::IQ4_XS => {
                                        kgroup::avx2::xs_unpack_group(rows, nb, &mut k4[h])
                                    }
                                    _ => group::avx2::unpack_group(
                                        ty,
                                        rows,
                                        nb,
                                        &mut q8[h],
                                        group::vnni_offset(ty),
                                    ),
                                }
                            }
                        }
                        let q8k = matches!(
                            ty,
                            GgmlType::Q4_K | GgmlType::Q5_K | GgmlType::Q6_K | GgmlType::IQ4_XS
                        );
                        let fin = match ty {
                            GgmlType::Q4_K => Some(avx512::Finish::Q4K),
                            GgmlType::Q5_K => Some(avx512::Finish::Q5K),
                            GgmlType::IQ4_XS => Some(avx512::Finish::Iq4Xs),
                            _ => None,
                        };
                        let tiles: Vec<(usize, usize)> = (0..n_tokens)
                            .step_by(TILE)
                            .map(|t0| (t0, TILE.min(n_tokens - t0)))
                            .collect();
                        // One tile per call, and for the K types also two (eight tokens).
                        let mut calls: Vec<Vec<usize>> =
                            (0..tiles.len()).map(|i| vec![i]).collect();
                        if fin.is_some() {
                            calls.push(vec![0, 1]);
                        }
                        for call in calls {
                            let preps: Vec<TilePrep> = call
                                .iter()
                                .map(|&i| {
                                    let (t0, nt) = tiles[i];
                                    let mut prep = TilePrep::default();
                                    prep.prepare(&acts, t0, nt, fin.is_some(), !q8k);
                                    prep
                                })
                                .collect();
                            let mut got = vec![[[0.0f32; ROWS]; TILE]; call.len()];
                            // SAFETY: AVX-512 VNNI is supported by this CPU; the preps have
                            // the bsum pairs (K types) or block sums (the 32-value types).
                            unsafe {
                                match (ty, fin) {
                                    (_, Some(fin)) => avx512::k_group_tile(
                                        fin,
                                        [&k4[0], &k4[second]],
                                        &acts,
                                        &preps,
                                        &mut got,
                                    ),
                                    (GgmlType::Q6_K, _) => avx512::k6_group_tile(
                                        [&k6[0], &k6[second]],
                                        &acts,
                                        &preps[0],
                                        &mut got[0],
                                    ),
                                    _ => avx512::q8_group_tile(
                                        ty,
                                        [&q8[0], &q8[second]],
                                        &acts,
                                        &preps[0],
                                        &mut got[0],
                                    ),
                                }
                            }
                            for (got, &i) in got.iter().zip(&call) {
                                let (t0, nt) = tiles[i];
                                for (j, got) in got[..nt].iter().enumerate() {
                                    let want: Vec<f32> =
                                        all[..n_rows].iter().map(|row| twin(row, t0 + j)).collect();
                                    assert_eq!(
                                        bits(&got[..n_rows]),
                                        bits(&want),
                                        "{ty} ne0 {ne0} raw {raw}: token {}, {n_rows} rows, \
                                         {} tiles per call",
                                        t0 + j,
                                        call.len()
                                    );
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The AVX-512 VNNI one-row (decode) kernels for Q4_K, Q5_K, Q6_K and IQ4_XS give the scalar twins' bits
/// for every row and token (all bit patterns of the quants and scales, and quantized
/// weights).
#[test]
fn vnni_one_row_kernels_match_their_scalar_twins_bit_for_bit() {
    use super::tile::k4_row_dot_scalar;
    use super::tile_k6::k6_row_dot_scalar;
    if !CpuLevel::Avx512.is_supported() {
        eprintln!("skipped: this CPU has no AVX-512 VNNI");
        return;
    }
    #[cfg(target_arch = "x86_64")]
    {
        use super::direct512::avx512;
        let mut rng = Rng(37);
        let (n_tokens, n_rows) = (3, 9);
        for (ty, scales) in [
            (GgmlType::Q4_K, &[0usize, 2][..]),
            (GgmlType::Q6_K, &[208][..]),
            (GgmlType::Q5_K, &[0, 2][..]),
            (GgmlType::IQ4_XS, &[0][..]),
        ] {
            for ne0 in [QK_K, 3 * QK_K] {
                for raw in [true, false] {
                    let w = weights(ty, scales, ne0, n_rows, &mut rng, raw);
                    let x = rng.values(n_tokens * ne0, 1.0);
                    let acts = acts_for(ActKind::Q8K, &x, n_tokens, ne0, CpuLevel::Avx512);
                    for (r, row) in w.chunks_exact(w.len() / n_rows).enumerate() {
                        for t in 0..n_tokens {
                            // SAFETY: AVX-512 VNNI is supported by this CPU.
                            let (got, want) = unsafe {
                                match ty {
                                    GgmlType::Q4_K => (
                                        avx512::k4_row_dot(row, &acts, t),
                                        k4_row_dot_scalar(row, &acts, t),
                                    ),
                                    GgmlType::Q5_K => (
                                        avx512::k5_row_dot(row, &acts, t),
                                        scalar::vec_dot_q5_k_q8_k_scalar(row, &acts, t),
                                    ),
                                    GgmlType::Q6_K => (
                                        avx512::k6_row_dot(row, &acts, t),
                                        k6_row_dot_scalar(row, &acts, t),
                                    ),
                                    _ => (
                                        avx512::xs_row_dot(row, &acts, t),
                                        scalar::vec_dot_iq4_xs_q8_k_scalar(row, &acts, t),
                                    ),
                                }
                            };
                            assert_eq!(
                                got.to_bits(),
                                want.to_bits(),
                                "{ty} ne0 {ne0} raw {raw} ({t}, {r})"
                            );
                        }
                    }
                }
            }
        }
    }
}

/// `matmul_many` gives every matrix the bits `matmul` gives it, for mixed types (shared and
/// separate activation formats) and row counts that do not line up with the thread split.
#[test]
fn matmul_many_equals_separate_products() {
    let mut rng = Rng(11);
    let ne0 = QK_K;
    let mixes: [&[(GgmlType, usize)]; 3] = [
        &[
            (GgmlType::Q5_0, 37),
            (GgmlType::Q5_0, 5),
            (GgmlType::Q8_0, 70),
        ],
        &[
            (GgmlType::Q4_K, 9),
            (GgmlType::Q6_K, 33),
            (GgmlType::Q4_0, 64),
        ],
        &[(GgmlType::F16, 3)],
    ];
    for pool in [ThreadPool::new(1), ThreadPool::new(3)] {
        for mix in mixes {
            for n_tokens in [1usize, 6] {
                let data: Vec<Vec<u8>> = mix
                    .iter()
                    .map(|&(ty, rows)| weights(ty, &[], ne0, rows, &mut rng, false))
                    .collect();
                let ms: Vec<QMatrix<'_>> = mix
                    .iter()
                    .zip(&data)
                    .map(|(&(ty, rows), d)| QMatrix::new(ty, &d[..], ne0, rows).unwrap())
                    .collect();
                let x = rng.values(n_tokens * ne0, 1.0);
                let want: Vec<Vec<f32>> = ms
                    .iter()
                    .map(|m| run_matmul(&pool, m, &x, n_tokens))
                    .collect();
                let mut got: Vec<Vec<f32>> = ms
                    .iter()
                    .map(|m| vec![f32::NAN; n_tokens * m.n_rows()])
                    .collect();
                let refs: Vec<&QMatrix<'_>> = ms.iter().collect();
                let mut outs: Vec<&mut [f32]> = got.iter_mut().map(|v| v.as_mut_slice()).collect();
                matmul_many(&pool, &refs, &x, n_tokens, &mut outs).unwrap();
                for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                    let (g, w): (Vec<u32>, Vec<u32>) = (
                        g.iter().map(|v| v.to_bits()).collect(),
                        w.iter().map(|v| v.to_bits()).collect(),
                    );
                    assert_eq!(g, w, "matrix {i} of {mix:?}, {n_tokens} tokens");
                }
            }
        }
    }
}

/// `matmul_each` gives every matrix, with its own input, the bits `matmul` gives it (inputs
/// repeated, inputs of different widths, mixed activation formats).
#[test]
fn matmul_each_equals_separate_products() {
    let mut rng = Rng(12);
    let mix: [(GgmlType, usize, usize); 4] = [
        (GgmlType::Q5_0, 64, 37),
        (GgmlType::Q8_0, 64, 70),
        (GgmlType::Q4_K, 2 * QK_K, 9),
        (GgmlType::Q6_K, QK_K, 33),
    ];
    for pool in [ThreadPool::new(1), ThreadPool::new(3)] {
        for n_tokens in [1usize, 5] {
            let data: Vec<Vec<u8>> = mix
                .iter()
                .map(|&(ty, ne0, rows)| weights(ty, &[], ne0, rows, &mut rng, false))
                .collect();
            let ms: Vec<QMatrix<'_>> = mix
                .iter()
                .zip(&data)
                .map(|(&(ty, ne0, rows), d)| QMatrix::new(ty, &d[..], ne0, rows).unwrap())
                .collect();
            // Matrices 0 and 1 share one input; 2 and 3 have their own.
            let x64 = rng.values(n_tokens * 64, 1.0);
            let x2k = rng.values(n_tokens * 2 * QK_K, 1.0);
            let xk = rng.values(n_tokens * QK_K, 1.0);
            let xs: [&[f32]; 4] = [&x64, &x64, &x2k, &xk];
            let want: Vec<Vec<f32>> = ms
                .iter()
                .zip(xs)
                .map(|(m, x)| run_matmul(&pool, m, x, n_tokens))
                .collect();
            let mut got: Vec<Vec<f32>> = ms
                .iter()
                .map(|m| vec![f32::NAN; n_tokens * m.n_rows()])
                .collect();
            let refs: Vec<&QMatrix<'_>> = ms.iter().collect();
            {
                let mut outs: Vec<&mut [f32]> = got.iter_mut().map(|v| v.as_mut_slice()).collect();
                matmul_each(&pool, &refs, &xs, n_tokens, &mut outs).unwrap();
                // A wrong number of inputs is an error, not a panic.
                assert!(matmul_each(&pool, &refs, &xs[..3], n_tokens, &mut outs).is_err());
            }
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(g), bits(w), "matrix {i}, {n_tokens} tokens");
            }
        }
    }
}

#[test]
fn matmul_is_close_to_the_f32_product() {
    // End to end: the activation quantization error only.
    let mut rng = Rng(4);
    let pool = ThreadPool::new(2);
    for &(ty, offs) in FAST {
        let (ne0, n_rows, n_tokens) = (4 * QK_K, 16, 3);
        let w = weights(ty, offs, ne0, n_rows, &mut rng, false);
        let x = rng.values(n_tokens * ne0, 1.0);
        let m = QMatrix::new(ty, &w[..], ne0, n_rows).unwrap();
        let got = run_matmul(&pool, &m, &x, n_tokens);
        let mut want = vec![0.0f32; got.len()];
        matmul_dequant_baseline(&pool, &m, &x, n_tokens, &mut want).unwrap();
        let mut wf = vec![0.0f32; ne0];
        for r in 0..n_rows {
            dequantize(ty, m.row(r), &mut wf).unwrap();
            let wnorm = wf.iter().map(|v| v * v).sum::<f32>().sqrt();
            for t in 0..n_tokens {
                let xnorm = x[t * ne0..(t + 1) * ne0]
                    .iter()
                    .map(|v| v * v)
                    .sum::<f32>()
                    .sqrt();
                let err = (got[t * n_rows + r] - want[t * n_rows + r]).abs() / (wnorm * xnorm);
                assert!(err < 0.01, "{ty}: relative error {err}");
            }
        }
    }
}

#[test]
fn types_without_kernels_use_the_dequantize_fallback() {
    let mut rng = Rng(5);
    let pool = ThreadPool::new(2);
    for ty in [GgmlType::TQ2_0, GgmlType::Q8_1, GgmlType::MXFP4] {
        let (ne0, n_rows, n_tokens) = (2 * QK_K, 6, 2);
        let w = weights(ty, &[], ne0, n_rows, &mut rng, false);
        let m = QMatrix::new(ty, w.clone(), ne0, n_rows).unwrap();
        assert_eq!(m.kernel_name(), "dequantize+dot");
        let x = rng.values(n_tokens * ne0, 1.0);
        let got = run_matmul(&pool, &m, &x, n_tokens);
        let mut wf = vec![0.0f32; ne0];
        for r in 0..n_rows {
            dequantize(ty, m.row(r), &mut wf).unwrap();
            for t in 0..n_tokens {
                let xt = &x[t * ne0..(t + 1) * ne0];
                let want: f64 = wf
                    .iter()
                    .zip(xt)
                    .map(|(&a, &b)| f64::from(a) * f64::from(b))
                    .sum();
                let mag: f64 = wf
                    .iter()
                    .zip(xt)
                    .map(|(&a, &b)| (f64::from(a) * f64::from(b)).abs())
                    .sum();
                assert!(close(got[t * n_rows + r], want, mag, 1e-5), "{ty}");
            }
        }
    }
}

#[test]
fn shapes_and_levels_are_checked() {
    let pool = ThreadPool::new(1);
    let w = vec![0u8; 2 * 34];
    assert_eq!(
        QMatrix::new(GgmlType::Q8_0, &w[..], 64, 2).unwrap_err(),
        QuantError::Shape {
            what: "weight bytes",
            expected: 136,
            got: 68
        }
    );
    assert_eq!(
        QMatrix::new(GgmlType::Q8_0, &w[..], 48, 2).unwrap_err(),
        QuantError::RowNotBlocks {
            ty: GgmlType::Q8_0,
            ne0: 48,
            block_values: 32
        }
    );
    assert_eq!(
        QMatrix::new(GgmlType::I8, &w[..], 68, 1).unwrap_err(),
        QuantError::Unsupported {
            ty: GgmlType::I8,
            op: Op::Matmul
        }
    );
    let m = QMatrix::new(GgmlType::Q8_0, &w[..], 32, 2).unwrap();
    let mut out = vec![0.0; 2];
    assert_eq!(
        matmul(&pool, &m, &[0.0; 31], 1, &mut out).unwrap_err(),
        QuantError::Shape {
            what: "x",
            expected: 32,
            got: 31
        }
    );
    assert_eq!(
        matmul(&pool, &m, &[0.0; 64], 2, &mut out).unwrap_err(),
        QuantError::Shape {
            what: "out",
            expected: 4,
            got: 2
        }
    );
    matmul(&pool, &m, &[], 0, &mut []).unwrap();
    if CpuLevel::detected() < CpuLevel::Amx {
        assert_eq!(
            m.clone().with_level(CpuLevel::Amx).unwrap_err(),
            QuantError::LevelUnsupported {
                requested: CpuLevel::Amx,
                detected: CpuLevel::detected()
            }
        );
    }
    let owned = QMatrix::new(GgmlType::Q8_0, w.clone(), 32, 2).unwrap();
    assert_eq!(owned.n_bytes(), 68);
}

#[test]
fn quantize_rows_entry_points_agree_on_lengths() {
    // The twins write exactly the slices they are given.
    let x = vec![0.25f32; 64];
    let (mut qs, mut d) = (vec![0i8; 64], vec![0f32; 2]);
    quantize_rows_scalar(
        ActKind::Q8_0,
        &x,
        ActRowsMut {
            qs: &mut qs,
            d: &mut d,
            s: &mut [],
            bsums: &mut [],
            h: &mut [],
        },
    );
    let (mut qs2, mut d2) = (vec![0i8; 64], vec![0f32; 2]);
    quantize_rows(
        ActKind::Q8_0,
        CpuLevel::active(),
        &x,
        ActRowsMut {
            qs: &mut qs2,
            d: &mut d2,
            s: &mut [],
            bsums: &mut [],
            h: &mut [],
        },
    );
    assert_eq!((qs, d), (qs2, d2));
}

#[test]
fn every_simd_kernel_passes_its_self_test_here() {
    for level in CpuLevel::supported().filter(|&l| l == CpuLevel::Avx2 || l == CpuLevel::Avx512) {
        for &(ty, _) in FAST {
            if let Some(f) = simd_kernel(ty, level) {
                assert!(self_test_uncached(ty, level, f), "{ty} {level}");
                assert_eq!(kernel_for(ty, level).unwrap().level, level, "{ty}");
            }
        }
    }
}
