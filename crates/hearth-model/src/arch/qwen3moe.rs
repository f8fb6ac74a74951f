//! `qwen3moe` (llama.cpp `src/models/qwen3moe.cpp`): the qwen3 layer (per-head RMS norms of Q
//! and K) with routed experts in place of the feed-forward: softmax gating, top-k, the
//! selected weights renormalized. The layer graph is [`super::llama::forward_layer`].

use crate::config::{Keys, ModelConfig};
use crate::error::ConfigError;
use crate::layer::{blk, Ffn, Layer, Loader, Qkv};
use crate::moe::Moe;

pub(crate) fn configure(k: &Keys<'_>, cfg: &mut ModelConfig) -> Result<(), ConfigError> {
    if !cfg.moe.is_moe() {
        return Err(ConfigError::MissingKey {
            key: k.key("expert_count"),
        });
    }
    // llama.cpp: `n_ff_exp` defaults to `n_ff / n_expert_used` for qwen3moe.
    if k.opt_usize(&k.key("expert_feed_forward_length"))?.is_none() {
        cfg.moe.n_ff_exp = (cfg.n_ff / cfg.moe.n_expert_used).max(1);
    }
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
        q_norm: Some(l.vector(&blk(il, "attn_q_norm.weight"), cfg.head_dim_k)?),
        k_norm: Some(l.vector(&blk(il, "attn_k_norm.weight"), cfg.head_dim_k)?),
        wo: l.matrix(&blk(il, "attn_output.weight"), cfg.n_embd_q(), e)?,
        bo: None,
        attn_post_norm: None,
        ffn_norm: l.vector(&blk(il, "ffn_norm.weight"), e)?,
        ffn_norm_b: None,
        ffn: Ffn::Moe(Box::new(Moe::load(l, il, cfg, true)?)),
        ffn_post_norm: None,
        moe_branch: None,
        out_scale: None,
        ple: None,
    })
}
