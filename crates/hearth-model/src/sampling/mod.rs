//! The sampling chain: llama.cpp's samplers, parameters, defaults and order,
//! driven by the same random stream (mt19937), plus stop strings.
//!
//! Order (llama.cpp `common_sampler_init`): logit bias, then the configured
//! chain (default: penalties, DRY, top-nσ, top-k, typical-p, top-p, min-p,
//! XTC, temperature), then the draw; or, with mirostat, temperature and the
//! mirostat draw.

mod candidates;
mod dry;
mod params;
mod rng;
mod samplers;
mod stop;

use std::collections::{HashMap, VecDeque};

pub use candidates::{Candidates, TokenData};
pub use dry::{DryBreakers, DryParams};
pub use params::{SamplerKind, SamplingError, SamplingParams, RANDOM_SEED};
pub use rng::Mt19937;
pub use stop::{StopMatch, StopStrings};

/// A stateful sampler for one sequence.
pub struct Sampler {
    params: SamplingParams,
    n_vocab: usize,
    rng: Mt19937,
    /// Accepted tokens, oldest first, as many as any sampler looks back over.
    history: VecDeque<u32>,
    history_cap: usize,
    /// Counts of the tokens in the penalty window.
    counts: HashMap<u32, u32>,
    dry_breakers: DryBreakers,
    mirostat_mu: f32,
}

impl Sampler {
    /// A sampler for a vocabulary of `n_vocab`; `dry_breakers` come from the
    /// tokenizer ([`DryBreakers::new`]) and only matter when DRY is on.
    pub fn new(
        params: SamplingParams,
        n_vocab: usize,
        dry_breakers: DryBreakers,
    ) -> Result<Self, SamplingError> {
        params.validate(n_vocab)?;
        let seed = if params.seed == RANDOM_SEED {
            random_seed()
        } else {
            params.seed
        };
        let window = |n: i32| if n < 0 { usize::MAX } else { n as usize };
        let history_cap = window(params.penalty_last_n)
            .max(window(params.dry_penalty_last_n))
            .max(64);
        Ok(Sampler {
            mirostat_mu: 2.0 * params.mirostat_tau,
            params,
            n_vocab,
            rng: Mt19937::new(seed),
            history: VecDeque::new(),
            history_cap,
            counts: HashMap::new(),
            dry_breakers,
        })
    }

    /// The parameters.
    pub fn params(&self) -> &SamplingParams {
        &self.params
    }

    fn penalty_window(&self) -> usize {
        match self.params.penalty_last_n {
            n if n < 0 => usize::MAX,
            n => n as usize,
        }
    }

    /// Records a token of the sequence (prompt tokens too, as llama-server
    /// does, so penalties see the prompt).
    pub fn accept(&mut self, token: u32) {
        let window = self.penalty_window();
        if window > 0 {
            *self.counts.entry(token).or_default() += 1;
            if self.history.len() >= window {
                // The token leaving the penalty window.
                let old = self.history[self.history.len() - window];
                if let Some(c) = self.counts.get_mut(&old) {
                    *c -= 1;
                    if *c == 0 {
                        self.counts.remove(&old);
                    }
                }
            }
        }
        self.history.push_back(token);
        if self.history.len() > self.history_cap {
            self.history.pop_front();
        }
    }

    /// Forgets the history (a new sequence), keeping the RNG stream.
    pub fn reset(&mut self) {
        self.history.clear();
        self.counts.clear();
        self.mirostat_mu = 2.0 * self.params.mirostat_tau;
    }

    /// Runs the chain over `logits` and draws a token. Does not accept it.
    pub fn sample(&mut self, logits: &[f32]) -> u32 {
        let mut c = Candidates::from_logits(&logits[..logits.len().min(self.n_vocab)]);
        for &(id, bias) in &self.params.logit_bias {
            if let Some(t) = c.data.get_mut(id as usize) {
                t.logit += bias;
            }
        }
        let p = self.params.clone();
        let min_keep = p.min_keep as usize;
        if p.mirostat != 0 {
            samplers::temperature(&mut c, p.temperature);
            return self.mirostat(&mut c);
        }
        for kind in &p.order {
            match kind {
                SamplerKind::Penalties => self.apply_penalties(&mut c),
                SamplerKind::Dry => self.apply_dry(&mut c),
                SamplerKind::TopNSigma => samplers::top_n_sigma(&mut c, p.top_n_sigma),
                SamplerKind::TopK => samplers::top_k(&mut c, p.top_k),
                SamplerKind::TypicalP => samplers::typical(&mut c, p.typical_p, min_keep),
                SamplerKind::TopP => samplers::top_p(&mut c, p.top_p, min_keep),
                SamplerKind::MinP => samplers::min_p(&mut c, p.min_p, min_keep),
                SamplerKind::Xtc => samplers::xtc(
                    &mut c,
                    p.xtc_probability,
                    p.xtc_threshold,
                    min_keep,
                    &mut self.rng,
                ),
                SamplerKind::Temperature => samplers::temperature_ext(
                    &mut c,
                    p.temperature,
                    p.dynatemp_range,
                    p.dynatemp_exponent,
                ),
            }
        }
        let i = samplers::dist(&mut c, &mut self.rng);
        c.data.get(i).map_or(0, |t| t.id)
    }

    fn apply_penalties(&self, c: &mut Candidates) {
        let p = &self.params;
        let disabled = p.penalty_last_n == 0
            || (p.repeat_penalty == 1.0 && p.frequency_penalty == 0.0 && p.presence_penalty == 0.0);
        if disabled || self.counts.is_empty() {
            return;
        }
        for t in &mut c.data {
            let Some(&count) = self.counts.get(&t.id) else {
                continue;
            };
            if t.logit <= 0.0 {
                t.logit *= p.repeat_penalty;
            } else {
                t.logit /= p.repeat_penalty;
            }
            t.logit -= count as f32 * p.frequency_penalty + p.presence_penalty;
        }
        c.sorted = false;
    }

    fn apply_dry(&self, c: &mut Candidates) {
        let p = &self.params;
        if p.dry_multiplier == 0.0 {
            return;
        }
        let history: Vec<u32> = self.history.iter().copied().collect();
        let dry = DryParams {
            multiplier: p.dry_multiplier,
            base: p.dry_base,
            allowed_length: p.dry_allowed_length as usize,
            penalty_last_n: p.dry_penalty_last_n,
        };
        let pen = dry::penalties(&history, &dry, &self.dry_breakers);
        if pen.is_empty() {
            return;
        }
        for t in &mut c.data {
            if let Some(&d) = pen.get(&t.id) {
                t.logit = (f64::from(t.logit) - d) as f32;
            }
        }
        c.sorted = false;
    }

    fn mirostat(&mut self, c: &mut Candidates) -> u32 {
        let (tau, eta) = (self.params.mirostat_tau, self.params.mirostat_eta);
        c.softmax(true);
        if self.params.mirostat == 1 {
            // Estimate the Zipf exponent from the top m = 100 tokens.
            let m = 100usize;
            let (mut sum_ti_bi, mut sum_ti_sq) = (0.0f32, 0.0f32);
            for i in 0..(m - 1).min(c.len().saturating_sub(1)) {
                let t_i = ((i + 2) as f32 / (i + 1) as f32).ln();
                let b_i = (c.data[i].p / c.data[i + 1].p).ln();
                sum_ti_bi += t_i * b_i;
                sum_ti_sq += t_i * t_i;
            }
            let s_hat = sum_ti_bi / sum_ti_sq;
            let eps = s_hat - 1.0;
            let k = ((eps * 2f32.powf(self.mirostat_mu))
                / (1.0 - (self.n_vocab as f32).powf(-eps)))
            .powf(1.0 / s_hat);
            let k = if k.is_finite() { (k as i64).max(1) } else { 1 };
            samplers::top_k(c, k.min(i32::MAX as i64) as i32);
        } else {
            let mu = self.mirostat_mu;
            let keep = c
                .data
                .iter()
                .position(|t| -t.p.log2() > mu)
                .unwrap_or(c.len());
            c.truncate(keep);
        }
        c.softmax(true);
        let idx = samplers::discrete(c, &mut self.rng);
        let observed = -c.data[idx].p.log2();
        self.mirostat_mu -= eta * (observed - tau);
        c.data[idx].id
    }
}

fn random_seed() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.finish() as u32
}

#[cfg(test)]
mod tests;
