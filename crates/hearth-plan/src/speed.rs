//! Predicted decode and prefill speed from the machine's measured figures and the bytes of
//! weights each token reads.
//!
//! Decode: every weight matrix is read once per token. For each weight type the time is its
//! bytes over the measured speed of a one-token product on that type with the weights streamed
//! from memory (which is what bounds decoding: the memory bandwidth as far as the kernel keeps
//! up with it), times [`DECODE_EFFICIENCY`] for what a whole step adds (many smaller matrices,
//! norms, attention, synchronisation). Prefill: the layer matrices' bytes per prompt token over
//! the kernel's speed on a 64-token product (compute-bound: the weights are reused across the
//! tokens of a block), times [`PREFILL_EFFICIENCY`], plus the output projection once per
//! micro-batch. The figures are for the start of a context (attention over a long context
//! costs more).

use hearth_gguf::MappedGguf;
use hearth_model::N_UBATCH;
use serde::Serialize;

use crate::machine::{KernelSample, MachineProfile};
use crate::weights::WeightsInfo;

/// Share of the streamed one-token product's speed a whole decode step achieves. Calibrated:
/// measured 0.815 on Gemma 3 270M Q4_K_M and 0.824 on a Llama 3.2 1B Q4_K_M (BENCHMARKS.md,
/// "Plan accuracy").
pub const DECODE_EFFICIENCY: f64 = 0.8;

/// Share of the 64-token product's speed a whole prefill achieves (attention, norms, RoPE and
/// activations take the rest). Calibrated: measured 0.66 and 0.69 on the same two models.
pub const PREFILL_EFFICIENCY: f64 = 0.65;

/// Predicted speed of a model on this machine.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SpeedPlan {
    pub cpu: String,
    pub kernels: String,
    pub threads: usize,
    /// Measured read bandwidth, bytes per second.
    pub bandwidth: f64,
    /// Whether the bandwidth came from the cache (measured within 7 days).
    pub bandwidth_cached: bool,
    /// Weight bytes per decode step.
    pub decode_read_bytes: u64,
    /// Bandwidth / bytes per step: the memory roofline.
    pub decode_roofline_tokens_per_s: f64,
    /// [`DECODE_EFFICIENCY`] and [`PREFILL_EFFICIENCY`].
    pub decode_efficiency: f64,
    pub prefill_efficiency: f64,
    pub decode_tokens_per_s: f64,
    pub prefill_tokens_per_s: f64,
    /// Per weight type: seconds per decode step and per prompt token, and the kernel rates.
    pub by_type: Vec<TypeSpeed>,
}

/// One weight type's share of the time.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TypeSpeed {
    #[serde(rename = "type")]
    pub name: &'static str,
    /// Kernel rates (weight bytes per second, streamed; x tokens for prefill), if measured.
    pub decode_rate: Option<f64>,
    pub prefill_rate: Option<f64>,
    pub decode_seconds: f64,
    pub prefill_seconds: f64,
}

/// A sample of every weight type of the model: rows of its first tensor of that type.
pub fn samples(gguf: &MappedGguf, weights: &WeightsInfo) -> Vec<KernelSample> {
    let file = gguf.file();
    weights
        .by_type
        .iter()
        .filter_map(|tb| {
            let t = file.tensors.iter().find(|t| {
                t.ty == tb.ty
                    && t.shape.len() >= 2
                    && (t.name.starts_with("blk.")
                        || t.name == "output.weight"
                        || t.name == "token_embd.weight")
            })?;
            let (_, data) = gguf.tensor_data(&t.name).ok()?;
            KernelSample::from_tensor(t.ty, usize::try_from(t.shape[0]).ok()?, data)
        })
        .collect()
}

/// The prediction for `weights` on the machine of `profile`.
pub fn predict(weights: &WeightsInfo, profile: &MachineProfile) -> SpeedPlan {
    let mut by_type = Vec::new();
    let (mut decode_s, mut prefill_s) = (0.0f64, 0.0f64);
    for tb in &weights.by_type {
        let rate = profile.rate(tb.ty);
        let decode_rate = rate.map(|r| r.decode_stream);
        let prefill_rate = rate.map(|r| r.prefill);
        // Without a measured kernel, the memory bandwidth alone.
        let d_rate = decode_rate.unwrap_or(profile.bandwidth) * DECODE_EFFICIENCY;
        let d = tb.decode_bytes as f64 / d_rate.max(1.0);
        let p_rate = prefill_rate.unwrap_or(profile.bandwidth) * PREFILL_EFFICIENCY;
        let p = tb.prefill_bytes as f64 / p_rate.max(1.0)
            + (tb.decode_bytes - tb.prefill_bytes) as f64 / d_rate.max(1.0) / N_UBATCH as f64;
        decode_s += d;
        prefill_s += p;
        by_type.push(TypeSpeed {
            name: tb.name,
            decode_rate,
            prefill_rate,
            decode_seconds: d,
            prefill_seconds: p,
        });
    }
    let per_s = |s: f64| if s > 0.0 { 1.0 / s } else { 0.0 };
    SpeedPlan {
        cpu: profile.cpu.clone(),
        kernels: profile.kernels.clone(),
        threads: profile.threads,
        bandwidth: profile.bandwidth,
        bandwidth_cached: profile.cached,
        decode_read_bytes: weights.decode_read_bytes,
        decode_roofline_tokens_per_s: profile.bandwidth / weights.decode_read_bytes.max(1) as f64,
        decode_efficiency: DECODE_EFFICIENCY,
        prefill_efficiency: PREFILL_EFFICIENCY,
        decode_tokens_per_s: per_s(decode_s),
        prefill_tokens_per_s: per_s(prefill_s),
        by_type,
    }
}
