//! The supported architectures, one file each, arranged like llama.cpp's `src/models/<arch>.cpp`:
//! `configure` (the architecture's `load_arch_hparams`), `load_layer` (`load_arch_tensors`) and
//! `forward_layer` (its graph, one decoder layer).

use hearth_gguf::GgufFile;

use crate::config::{Arch, Keys, ModelConfig};
use crate::error::{ConfigError, Result};
use crate::kv_cache::LayerKv;
use crate::layer::{Batch, Layer, Loader};
use crate::model::load_weights;

mod gemma2;
mod gemma3;
pub(crate) mod gemma4;
mod llama;
mod phi3;
mod qwen2;
mod qwen3;
mod qwen3moe;

/// Architecture-specific hyperparameters.
pub(crate) fn configure(k: &Keys<'_>, cfg: &mut ModelConfig) -> Result<(), ConfigError> {
    match cfg.arch {
        Arch::Llama => llama::configure(k, cfg),
        Arch::Qwen2 => qwen2::configure(k, cfg),
        Arch::Qwen3 => qwen3::configure(k, cfg),
        Arch::Phi3 => phi3::configure(k, cfg),
        Arch::Gemma2 => gemma2::configure(k, cfg),
        Arch::Gemma3 => gemma3::configure(k, cfg),
        Arch::Qwen3Moe => qwen3moe::configure(k, cfg),
        Arch::Gemma4 => gemma4::configure(k, cfg),
    }
}

/// The tensors of layer `il`.
pub(crate) fn load_layer(
    l: &Loader<'_>,
    il: usize,
    cfg: &ModelConfig,
) -> Result<Layer, ConfigError> {
    let cfg = &*cfg.for_layer(il);
    match cfg.arch {
        Arch::Llama => llama::load_layer(l, il, cfg),
        Arch::Qwen2 => qwen2::load_layer(l, il, cfg),
        Arch::Qwen3 => qwen3::load_layer(l, il, cfg),
        Arch::Phi3 => phi3::load_layer(l, il, cfg),
        Arch::Gemma2 => gemma2::load_layer(l, il, cfg),
        Arch::Gemma3 => gemma3::load_layer(l, il, cfg),
        Arch::Qwen3Moe => qwen3moe::load_layer(l, il, cfg),
        Arch::Gemma4 => gemma4::load_layer(l, il, cfg),
    }
}

/// One decoder layer over the batch `x` (`[n][n_embd]`). With `keep`, only those rows are
/// returned (computed after attention, as llama.cpp's `inp_out_ids` on the last layer).
pub(crate) fn forward_layer(
    cfg: &ModelConfig,
    layer: &Layer,
    il: usize,
    x: Vec<f32>,
    batch: &Batch<'_>,
    caches: &mut [&mut LayerKv],
    keep: Option<&[usize]>,
) -> Result<Vec<f32>> {
    let cfg = &*cfg.for_layer(il);
    match cfg.arch {
        Arch::Llama | Arch::Qwen2 | Arch::Qwen3 | Arch::Qwen3Moe => {
            llama::forward_layer(cfg, layer, il, x, batch, caches, keep)
        }
        Arch::Phi3 => phi3::forward_layer(cfg, layer, il, x, batch, caches, keep),
        Arch::Gemma2 | Arch::Gemma3 => {
            gemma3::forward_layer(cfg, layer, il, x, batch, caches, keep)
        }
        Arch::Gemma4 => gemma4::forward_layer(cfg, layer, il, x, batch, caches, keep),
    }
}

/// Scale of the token embeddings (gemma: `sqrt(n_embd)`).
pub(crate) fn embed_scale(cfg: &ModelConfig) -> Option<f32> {
    match cfg.arch {
        Arch::Gemma2 | Arch::Gemma3 | Arch::Gemma4 => Some((cfg.n_embd as f32).sqrt()),
        _ => None,
    }
}

/// The RoPE frequency factors layer `il` uses: gemma4 applies `rope_freqs` (proportional
/// RoPE) on its full-attention layers only.
pub(crate) fn layer_rope_factors<'a>(
    cfg: &ModelConfig,
    il: usize,
    factors: Option<&'a [f32]>,
) -> Option<&'a [f32]> {
    match cfg.arch {
        Arch::Gemma4 if cfg.is_swa(il) => None,
        _ => factors,
    }
}

/// Whether the architecture reads `output.weight` (gemma2 always ties the head to the embedding).
pub(crate) fn uses_output_tensor(arch: Arch) -> bool {
    arch != Arch::Gemma2
}

/// Checks every tensor of the model against `cfg` without loading data.
pub(crate) fn plan(file: &GgufFile, cfg: &ModelConfig) -> Result<(), ConfigError> {
    load_weights(&Loader::new(file, None), cfg).map(|_| ())
}
