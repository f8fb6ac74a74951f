//! Sampling flags with llama.cpp's names and defaults, shared by `run` and `chat`.

use anyhow::{bail, Context, Result};
use clap::Args;
use hearth_model::sampling::{SamplerKind, SamplingParams, RANDOM_SEED};

#[derive(Args, Clone, Debug)]
pub struct SamplingArgs {
    /// Temperature; 0 = greedy.
    #[arg(long = "temp", default_value_t = 0.8)]
    temperature: f32,
    /// Top-k; 0 disables.
    #[arg(long, default_value_t = 40, allow_hyphen_values = true)]
    top_k: i32,
    /// Top-p (nucleus); 1.0 disables.
    #[arg(long, default_value_t = 0.95)]
    top_p: f32,
    /// Min-p; 0.0 disables.
    #[arg(long, default_value_t = 0.05)]
    min_p: f32,
    /// Locally typical sampling; 1.0 disables.
    #[arg(long = "typical", default_value_t = 1.0)]
    typical_p: f32,
    /// Top-nσ; <= 0 disables.
    #[arg(long, default_value_t = -1.0, allow_hyphen_values = true)]
    top_n_sigma: f32,
    /// Repetition penalty; 1.0 disables.
    #[arg(long, default_value_t = 1.0)]
    repeat_penalty: f32,
    /// Tokens the penalties look back over (0 disables, -1 = context).
    #[arg(long, default_value_t = 64, allow_hyphen_values = true)]
    repeat_last_n: i32,
    #[arg(long, default_value_t = 0.0, allow_hyphen_values = true)]
    presence_penalty: f32,
    #[arg(long, default_value_t = 0.0, allow_hyphen_values = true)]
    frequency_penalty: f32,
    /// DRY multiplier; 0 disables.
    #[arg(long, default_value_t = 0.0)]
    dry_multiplier: f32,
    #[arg(long, default_value_t = 1.75)]
    dry_base: f32,
    #[arg(long, default_value_t = 2)]
    dry_allowed_length: u32,
    #[arg(long, default_value_t = -1, allow_hyphen_values = true)]
    dry_penalty_last_n: i32,
    /// XTC probability; 0 disables.
    #[arg(long, default_value_t = 0.0)]
    xtc_probability: f32,
    #[arg(long, default_value_t = 0.1)]
    xtc_threshold: f32,
    /// Dynamic temperature range; 0 disables.
    #[arg(long, default_value_t = 0.0)]
    dynatemp_range: f32,
    #[arg(long = "dynatemp-exp", default_value_t = 1.0)]
    dynatemp_exponent: f32,
    /// Mirostat version (0 = off, 1, 2).
    #[arg(long, default_value_t = 0)]
    mirostat: u8,
    /// Mirostat learning rate (eta).
    #[arg(long = "mirostat-lr", default_value_t = 0.1)]
    mirostat_eta: f32,
    /// Mirostat target entropy (tau).
    #[arg(long = "mirostat-ent", default_value_t = 5.0)]
    mirostat_tau: f32,
    /// RNG seed (default: random).
    #[arg(long, short = 's')]
    seed: Option<u32>,
    /// Logit bias `TOKEN(+|-)BIAS`, e.g. `15043+1` or `15043-inf`; repeatable.
    #[arg(long = "logit-bias", short = 'l', value_name = "TOKEN(+|-)BIAS")]
    logit_bias: Vec<String>,
    /// Sampler order, `;`-separated (llama.cpp names).
    #[arg(long)]
    samplers: Option<String>,
}

impl SamplingArgs {
    /// The parameters these flags ask for, validated against `n_vocab`.
    pub fn params(&self, n_vocab: usize) -> Result<SamplingParams> {
        let mut p = SamplingParams {
            seed: self.seed.unwrap_or(RANDOM_SEED),
            top_k: self.top_k,
            top_p: self.top_p,
            min_p: self.min_p,
            typical_p: self.typical_p,
            temperature: self.temperature,
            dynatemp_range: self.dynatemp_range,
            dynatemp_exponent: self.dynatemp_exponent,
            penalty_last_n: self.repeat_last_n,
            repeat_penalty: self.repeat_penalty,
            frequency_penalty: self.frequency_penalty,
            presence_penalty: self.presence_penalty,
            dry_multiplier: self.dry_multiplier,
            dry_base: self.dry_base,
            dry_allowed_length: self.dry_allowed_length,
            dry_penalty_last_n: self.dry_penalty_last_n,
            xtc_probability: self.xtc_probability,
            xtc_threshold: self.xtc_threshold,
            top_n_sigma: self.top_n_sigma,
            mirostat: self.mirostat,
            mirostat_tau: self.mirostat_tau,
            mirostat_eta: self.mirostat_eta,
            ..SamplingParams::default()
        };
        for spec in &self.logit_bias {
            p.logit_bias.push(parse_logit_bias(spec)?);
        }
        if let Some(order) = &self.samplers {
            p.order = order
                .split([';', ','])
                .filter(|s| !s.trim().is_empty())
                .map(|s| SamplerKind::parse(s).with_context(|| format!("unknown sampler {s:?}")))
                .collect::<Result<_>>()?;
        }
        p.validate(n_vocab)?;
        Ok(p)
    }
}

/// `TOKEN+BIAS`, `TOKEN-BIAS`, `TOKEN-inf`.
fn parse_logit_bias(spec: &str) -> Result<(u32, f32)> {
    let Some(split) = spec.find(['+', '-']) else {
        bail!("--logit-bias {spec:?}: expected TOKEN+BIAS or TOKEN-BIAS");
    };
    let token: u32 = spec[..split]
        .parse()
        .with_context(|| format!("--logit-bias {spec:?}: bad token id"))?;
    let bias: f32 = spec[split..]
        .parse()
        .with_context(|| format!("--logit-bias {spec:?}: bad bias"))?;
    Ok((token, bias))
}

#[cfg(test)]
mod tests {
    #[test]
    fn logit_bias_specs_parse() {
        assert_eq!(super::parse_logit_bias("15043+1").unwrap(), (15043, 1.0));
        assert_eq!(super::parse_logit_bias("7-0.5").unwrap(), (7, -0.5));
        assert_eq!(
            super::parse_logit_bias("7-inf").unwrap(),
            (7, f32::NEG_INFINITY)
        );
        assert!(super::parse_logit_bias("x+1").is_err());
        assert!(super::parse_logit_bias("12").is_err());
    }
}
