//! Memory that is neither weights nor KV cache: the buffers of a forward pass, and the fixed
//! cost of a loaded model (the parsed metadata, the tokenizer's tables, the program).

use hearth_model::{ModelConfig, N_UBATCH};

/// Bytes of the activations a forward pass of `n_tokens` tokens (at most a micro-batch) keeps
/// alive at once, plus `logit_rows` rows of logits.
///
/// Per token (f32), whichever phase of a layer holds more: attention (the layer input and its
/// norm, Q, K, V, the attention output and its projection: `3 n_embd + q + k + v + o`) or the
/// feed-forward (input, norm, residual, the post-norms and output: `6 n_embd`, plus gate, up
/// and the activated rows: `3 n_ff`, or the used experts' share), plus the input quantized for
/// the kernels (about 1.06 bytes a value of the wider input). Logits are `n_vocab` f32 per
/// requested row, and a copy of them is kept for sampling.
pub fn compute_bytes(cfg: &ModelConfig, n_tokens: usize, logit_rows: usize) -> u64 {
    let n = n_tokens.clamp(1, N_UBATCH) as u64;
    let e = cfg.n_embd as u64;
    let ff = if cfg.moe.is_moe() {
        (cfg.moe.n_ff_exp * cfg.moe.n_expert_used).max(cfg.n_ff) as u64
    } else {
        cfg.n_ff as u64
    };
    let (nq, nk, nv) = (
        cfg.n_embd_q() as u64,
        cfg.n_embd_k_gqa() as u64,
        cfg.n_embd_v_gqa() as u64,
    );
    let o = (cfg.n_head * cfg.head_dim_v) as u64;
    let attention = 3 * e + nq + nk + nv + o;
    let ffn = 6 * e + 3 * ff;
    let quantized = e.max(ff) * 34 / 32;
    let logits = logit_rows as u64 * cfg.n_vocab as u64 * 4 * 2;
    n * (attention.max(ffn) * 4 + quantized) + logits
}

/// Fixed cost of the program with a model loaded, besides weights, KV cache and compute
/// buffers: the metadata parsed from the header and the tokenizer built from it (both scale
/// with the header, which is mostly the vocabulary: [`HEADER_HEAP_FACTOR`] times its size),
/// the norms converted to f32, and the program itself with its threads ([`BASE_BYTES`]).
/// Calibrated on Gemma 3 270M (a 6.5 MB header: 262,144 SPM tokens) and a Llama 3.2 1B file
/// (7.8 MB: 128,256 BPE tokens and 280,147 merges); see BENCHMARKS.md, "Plan accuracy".
pub fn overhead_bytes(header_bytes: u64, n_norm_values: u64) -> u64 {
    BASE_BYTES + HEADER_HEAP_FACTOR * header_bytes + 4 * n_norm_values
}

/// Resident size of the program and its threads before it loads a model (measured: 6 MB, and
/// a few MB more of its code once a model runs).
pub const BASE_BYTES: u64 = 10 << 20;

/// Heap bytes of the parsed metadata and the tokenizer per byte of GGUF header (measured: 4.7
/// for Gemma 3 270M, 5.2 for Llama 3.2 1B).
pub const HEADER_HEAP_FACTOR: u64 = 5;
