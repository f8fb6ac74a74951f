//! `qwen2` (llama.cpp `src/models/qwen2.cpp`): the llama layer with Q/K/V biases and an optional
//! output bias; the layer graph is [`super::llama::forward_layer`].

use crate::config::{Keys, ModelConfig};
use crate::error::ConfigError;
use crate::layer::{blk, Ffn, Layer, Loader, Qkv};

pub(crate) fn configure(_k: &Keys<'_>, _cfg: &mut ModelConfig) -> Result<(), ConfigError> {
    Ok(())
}

pub(crate) fn load_layer(
    l: &Loader<'_>,
    il: usize,
    cfg: &ModelConfig,
) -> Result<Layer, ConfigError> {
    let e = cfg.n_embd;
    Ok(Layer {
        attn_norm: l.vector(&blk(il, "attn_norm.weight"), e)?,
        attn_norm_b: None,
        qkv: Qkv::load(l, il, cfg)?,
        q_norm: None,
        k_norm: None,
        wo: l.matrix(&blk(il, "attn_output.weight"), cfg.n_embd_q(), e)?,
        bo: None,
        attn_post_norm: None,
        ffn_norm: l.vector(&blk(il, "ffn_norm.weight"), e)?,
        ffn_norm_b: None,
        ffn: Ffn::load_gated(l, il, cfg, false)?,
        ffn_post_norm: None,
        moe_branch: None,
        out_scale: None,
        ple: None,
    })
}
