//! Sampling parameters with llama.cpp's defaults (`common_params_sampling`),
//! and their validation.

/// `LLAMA_DEFAULT_SEED`: draw a random seed.
pub const RANDOM_SEED: u32 = 0xFFFF_FFFF;

/// The samplers that can be ordered in the chain (`--samplers`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SamplerKind {
    Penalties,
    Dry,
    TopNSigma,
    TopK,
    TypicalP,
    TopP,
    MinP,
    Xtc,
    Temperature,
}

impl SamplerKind {
    /// llama.cpp's default order.
    pub const DEFAULT_ORDER: [SamplerKind; 9] = [
        SamplerKind::Penalties,
        SamplerKind::Dry,
        SamplerKind::TopNSigma,
        SamplerKind::TopK,
        SamplerKind::TypicalP,
        SamplerKind::TopP,
        SamplerKind::MinP,
        SamplerKind::Xtc,
        SamplerKind::Temperature,
    ];

    /// Parses llama.cpp's names (`top_k`, `top-k`, `typ_p`, `temperature`, ...).
    pub fn parse(name: &str) -> Option<SamplerKind> {
        Some(match name.trim().replace('-', "_").as_str() {
            "penalties" => SamplerKind::Penalties,
            "dry" => SamplerKind::Dry,
            "top_n_sigma" => SamplerKind::TopNSigma,
            "top_k" => SamplerKind::TopK,
            "typ_p" | "typical_p" | "typical" => SamplerKind::TypicalP,
            "top_p" => SamplerKind::TopP,
            "min_p" => SamplerKind::MinP,
            "xtc" => SamplerKind::Xtc,
            "temperature" | "temp" => SamplerKind::Temperature,
            _ => return None,
        })
    }
}

/// Every parameter of the sampling chain.
#[derive(Clone, Debug, PartialEq)]
pub struct SamplingParams {
    /// RNG seed; [`RANDOM_SEED`] draws one.
    pub seed: u32,
    /// `<= 0` disables.
    pub top_k: i32,
    pub top_p: f32,
    pub min_p: f32,
    pub typical_p: f32,
    /// `<= 0` is greedy.
    pub temperature: f32,
    pub dynatemp_range: f32,
    pub dynatemp_exponent: f32,
    /// Tokens the penalties look back over; 0 disables, -1 = the context.
    pub penalty_last_n: i32,
    pub repeat_penalty: f32,
    pub frequency_penalty: f32,
    pub presence_penalty: f32,
    pub dry_multiplier: f32,
    pub dry_base: f32,
    pub dry_allowed_length: u32,
    pub dry_penalty_last_n: i32,
    pub dry_sequence_breakers: Vec<String>,
    pub xtc_probability: f32,
    pub xtc_threshold: f32,
    /// `<= 0` disables.
    pub top_n_sigma: f32,
    /// 0, 1 or 2.
    pub mirostat: u8,
    pub mirostat_tau: f32,
    pub mirostat_eta: f32,
    pub min_keep: u32,
    /// (token, bias) pairs added to the logits; `f32::NEG_INFINITY` bans.
    pub logit_bias: Vec<(u32, f32)>,
    pub order: Vec<SamplerKind>,
}

impl Default for SamplingParams {
    fn default() -> Self {
        SamplingParams {
            seed: RANDOM_SEED,
            top_k: 40,
            top_p: 0.95,
            min_p: 0.05,
            typical_p: 1.0,
            temperature: 0.8,
            dynatemp_range: 0.0,
            dynatemp_exponent: 1.0,
            penalty_last_n: 64,
            repeat_penalty: 1.0,
            frequency_penalty: 0.0,
            presence_penalty: 0.0,
            dry_multiplier: 0.0,
            dry_base: 1.75,
            dry_allowed_length: 2,
            dry_penalty_last_n: -1,
            dry_sequence_breakers: ["\n", ":", "\"", "*"].map(String::from).to_vec(),
            xtc_probability: 0.0,
            xtc_threshold: 0.1,
            top_n_sigma: -1.0,
            mirostat: 0,
            mirostat_tau: 5.0,
            mirostat_eta: 0.1,
            min_keep: 0,
            logit_bias: Vec::new(),
            order: SamplerKind::DEFAULT_ORDER.to_vec(),
        }
    }
}

/// A parameter outside its range. Names the parameter and the bad value.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("invalid sampling parameter {name}: {value} ({expected})")]
pub struct SamplingError {
    pub name: &'static str,
    pub value: String,
    pub expected: &'static str,
}

fn check(
    ok: bool,
    name: &'static str,
    value: impl ToString,
    expected: &'static str,
) -> Result<(), SamplingError> {
    if ok {
        Ok(())
    } else {
        Err(SamplingError {
            name,
            value: value.to_string(),
            expected,
        })
    }
}

impl SamplingParams {
    /// Greedy decoding: temperature 0, nothing else in the way.
    pub fn greedy() -> Self {
        SamplingParams {
            temperature: 0.0,
            top_k: 1,
            top_p: 1.0,
            min_p: 0.0,
            seed: 0,
            ..Self::default()
        }
    }

    /// Rejects NaN/infinite values and out-of-range parameters; `n_vocab`
    /// bounds the logit-bias token ids.
    pub fn validate(&self, n_vocab: usize) -> Result<(), SamplingError> {
        let t = self.temperature;
        check(
            t.is_finite() && t >= 0.0,
            "temperature",
            t,
            "a finite number >= 0",
        )?;
        check(
            self.top_k >= 0,
            "top_k",
            self.top_k,
            "an integer >= 0 (0 disables)",
        )?;
        let p = self.top_p;
        check(
            p.is_finite() && p > 0.0 && p <= 1.0,
            "top_p",
            p,
            "a number in (0, 1]",
        )?;
        let p = self.min_p;
        check(
            p.is_finite() && (0.0..=1.0).contains(&p),
            "min_p",
            p,
            "a number in [0, 1]",
        )?;
        let p = self.typical_p;
        check(
            p.is_finite() && p > 0.0 && p <= 1.0,
            "typical_p",
            p,
            "a number in (0, 1]",
        )?;
        let r = self.dynatemp_range;
        check(
            r.is_finite() && r >= 0.0,
            "dynatemp_range",
            r,
            "a finite number >= 0",
        )?;
        let e = self.dynatemp_exponent;
        check(
            e.is_finite() && e >= 0.0,
            "dynatemp_exponent",
            e,
            "a finite number >= 0",
        )?;
        check(
            self.penalty_last_n >= -1,
            "penalty_last_n",
            self.penalty_last_n,
            ">= -1",
        )?;
        let r = self.repeat_penalty;
        check(
            r.is_finite() && r > 0.0 && (1.0 / r).is_finite(),
            "repeat_penalty",
            r,
            "a finite number > 0",
        )?;
        let f = self.frequency_penalty;
        check(
            f.is_finite() && (-2.0..=2.0).contains(&f),
            "frequency_penalty",
            f,
            "a number in [-2, 2]",
        )?;
        let f = self.presence_penalty;
        check(
            f.is_finite() && (-2.0..=2.0).contains(&f),
            "presence_penalty",
            f,
            "a number in [-2, 2]",
        )?;
        let m = self.dry_multiplier;
        check(
            m.is_finite() && m >= 0.0,
            "dry_multiplier",
            m,
            "a finite number >= 0",
        )?;
        let b = self.dry_base;
        check(
            b.is_finite() && b >= 1.0,
            "dry_base",
            b,
            "a finite number >= 1",
        )?;
        check(
            self.dry_penalty_last_n >= -1,
            "dry_penalty_last_n",
            self.dry_penalty_last_n,
            ">= -1",
        )?;
        let x = self.xtc_probability;
        check(
            x.is_finite() && (0.0..=1.0).contains(&x),
            "xtc_probability",
            x,
            "a number in [0, 1]",
        )?;
        let x = self.xtc_threshold;
        check(
            x.is_finite() && (0.0..=1.0).contains(&x),
            "xtc_threshold",
            x,
            "a number in [0, 1]",
        )?;
        let s = self.top_n_sigma;
        check(
            s.is_finite(),
            "top_n_sigma",
            s,
            "a finite number (<= 0 disables)",
        )?;
        check(self.mirostat <= 2, "mirostat", self.mirostat, "0, 1 or 2")?;
        let tau = self.mirostat_tau;
        check(
            tau.is_finite() && tau >= 0.0,
            "mirostat_tau",
            tau,
            "a finite number >= 0",
        )?;
        let eta = self.mirostat_eta;
        check(
            eta.is_finite() && eta >= 0.0,
            "mirostat_eta",
            eta,
            "a finite number >= 0",
        )?;
        for &(id, bias) in &self.logit_bias {
            check(
                (id as usize) < n_vocab,
                "logit_bias",
                id,
                "token ids below the vocabulary size",
            )?;
            check(
                !bias.is_nan() && bias != f32::INFINITY,
                "logit_bias",
                bias,
                "a finite bias or -inf",
            )?;
        }
        Ok(())
    }
}
