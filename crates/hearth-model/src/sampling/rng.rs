//! The random stream llama.cpp samples with: `std::mt19937` seeded with the
//! sampler seed, read through libstdc++'s `generate_canonical`, so that a
//! seed means the same thing here as there.

/// MT19937, the 32-bit Mersenne Twister (`std::mt19937`).
#[derive(Clone)]
pub struct Mt19937 {
    state: [u32; 624],
    index: usize,
}

impl Mt19937 {
    /// Seeds the generator like `std::mt19937(seed)`.
    pub fn new(seed: u32) -> Self {
        let mut state = [0u32; 624];
        state[0] = seed;
        for i in 1..624 {
            let prev = state[i - 1];
            state[i] = 1_812_433_253u32
                .wrapping_mul(prev ^ (prev >> 30))
                .wrapping_add(i as u32);
        }
        Mt19937 { state, index: 624 }
    }

    fn twist(&mut self) {
        for i in 0..624 {
            let y = (self.state[i] & 0x8000_0000) | (self.state[(i + 1) % 624] & 0x7fff_ffff);
            let mut next = self.state[(i + 397) % 624] ^ (y >> 1);
            if y & 1 != 0 {
                next ^= 0x9908_b0df;
            }
            self.state[i] = next;
        }
        self.index = 0;
    }

    /// The next 32-bit output.
    pub fn next_u32(&mut self) -> u32 {
        if self.index >= 624 {
            self.twist();
        }
        let mut y = self.state[self.index];
        self.index += 1;
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c_5680;
        y ^= (y << 15) & 0xefc6_0000;
        y ^ (y >> 18)
    }

    /// `std::uniform_real_distribution<double>(0, 1)`: two draws, 53 bits.
    pub fn uniform_f64(&mut self) -> f64 {
        let lo = f64::from(self.next_u32());
        let hi = f64::from(self.next_u32());
        let r = (lo + hi * 4_294_967_296.0) / 18_446_744_073_709_551_616.0;
        if r >= 1.0 {
            1.0f64.next_down()
        } else {
            r
        }
    }

    /// `std::uniform_real_distribution<float>(0, 1)`: one draw, 24 bits.
    pub fn uniform_f32(&mut self) -> f32 {
        let r = self.next_u32() as f32 / 4_294_967_296.0f32;
        if r >= 1.0 {
            1.0f32.next_down()
        } else {
            r
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Mt19937;

    #[test]
    fn the_10000th_output_of_the_default_seed_is_the_standard_value() {
        // C++11 [rand.predef]: the 10000th consecutive invocation of a
        // default-constructed mt19937 (seed 5489) produces 4123659995.
        let mut r = Mt19937::new(5489);
        let mut last = 0;
        for _ in 0..10_000 {
            last = r.next_u32();
        }
        assert_eq!(last, 4_123_659_995);
    }

    #[test]
    fn the_first_outputs_of_seed_5489_match_the_reference() {
        // First outputs of the reference mt19937ar with init_genrand(5489).
        let mut r = Mt19937::new(5489);
        assert_eq!(r.next_u32(), 3_499_211_612);
        assert_eq!(r.next_u32(), 581_869_302);
        assert_eq!(r.next_u32(), 3_890_346_734);
    }

    #[test]
    fn uniform_values_are_in_the_unit_interval() {
        let mut r = Mt19937::new(42);
        for _ in 0..1000 {
            let (a, b) = (r.uniform_f64(), r.uniform_f32());
            assert!((0.0..1.0).contains(&a) && (0.0..1.0).contains(&b));
        }
    }
}
