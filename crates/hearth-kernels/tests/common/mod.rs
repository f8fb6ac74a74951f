//! Shared by the integration tests: a seeded PRNG and input generators.

#![allow(dead_code)]

/// splitmix64.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 24) as f32
    }
    /// Roughly normal (Irwin-Hall of 4), mean 0, sd ~1.
    pub fn normal(&mut self) -> f32 {
        let s: f32 = (0..4).map(|_| self.unit()).sum();
        (s - 2.0) * 1.732
    }
    pub fn fill(&mut self, buf: &mut [u8]) {
        for b in buf {
            *b = self.next() as u8;
        }
    }
}

/// Random f32 blocks of many shapes for quantizer parity.
pub fn random_f32_blocks(block: usize, n_blocks: usize, seed: u64) -> Vec<f32> {
    let mut rng = Rng::new(seed);
    let mut out = Vec::with_capacity(block * n_blocks);
    for i in 0..n_blocks {
        let kind = if i < 14 { i as u64 } else { rng.below(14) };
        // A power-of-two-ish random scale over a wide range.
        let pow2 = (2.0f32).powi(rng.below(41) as i32 - 20);
        let scale = pow2 * (0.5 + rng.unit());
        let start = out.len();
        for _ in 0..block {
            let v = match kind {
                0 => 0.0,
                1 => rng.normal() * scale,
                2 => rng.normal() * 1e-30,
                3 => rng.normal() * 1e-40, // subnormal f32
                4 => rng.normal() * 1e30,
                5 => rng.normal().abs() * scale,  // all positive
                6 => -rng.normal().abs() * scale, // all negative
                // Exact ties: multiples of scale/16 (halves of 1/8 steps).
                7 => (rng.below(33) as f32 - 16.0) * scale / 16.0,
                8 => (rng.below(256) as f32 - 128.0) * scale / 128.0,
                9 => [0.0, 1.0, -1.0, 0.5, -0.5][rng.below(5) as usize] * scale,
                10 => rng.normal() * 65504.0 * 16.0, // f16 scale overflow
                // Half-integer multiples of a power of two: exact ties of
                // the rounding steps once the block maximum is set below.
                12 | 13 => (rng.below(63) as f32 - 31.0 + 0.5 * rng.below(2) as f32) * pow2,
                _ => rng.normal() * scale * if rng.below(8) == 0 { 100.0 } else { 1.0 },
            };
            out.push(v);
        }
        let b = &mut out[start..];
        match kind {
            // A negative value carrying the maximum magnitude.
            1 | 11 => {
                let j = rng.below(block as u64) as usize;
                let m = b.iter().fold(0f32, |m, v| m.max(v.abs()));
                b[j] = -(m * 1.5 + 1e-30);
            }
            // The same magnitude twice, with opposite signs.
            9 => {
                let (j, k) = (
                    rng.below(block as u64) as usize,
                    rng.below(block as u64) as usize,
                );
                b[j] = -4.0 * scale;
                b[k] = 4.0 * scale;
            }
            // A single non-zero value.
            0 if i % 2 == 1 => b[rng.below(block as u64) as usize] = scale,
            // Symmetric types: a maximum making the scale a power of two
            // (Q8_0: 127, Q4_0: -8, Q5_0: -16, TQ: 1, ...), values clipped
            // below it so it stays the maximum.
            12 => {
                let m =
                    [127.0f32, -8.0, 8.0, -16.0, 16.0, 1.0, -1.0, 6.0, 12.0][rng.below(9) as usize];
                for v in b.iter_mut() {
                    let lim = m.abs() * pow2;
                    *v = if m.abs() <= 1.0 {
                        [0.0, 0.5, -0.5][rng.below(3) as usize] * pow2
                    } else {
                        v.clamp(-lim + pow2, lim - pow2)
                    };
                }
                b[rng.below(block as u64) as usize] = m * pow2;
            }
            // Asymmetric types: min and max 15 or 31 steps apart.
            13 => {
                let range = [15.0f32, 31.0][rng.below(2) as usize];
                let lo = -(rng.below(range as u64 + 1) as f32);
                for v in b.iter_mut() {
                    *v = v.clamp(lo * pow2, (lo + range) * pow2);
                }
                b[0] = lo * pow2;
                b[block - 1] = (lo + range) * pow2;
            }
            _ => {}
        }
    }
    out
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
