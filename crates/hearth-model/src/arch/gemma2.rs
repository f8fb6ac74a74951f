//! `gemma2` (llama.cpp `src/models/gemma2.cpp`): the gemma3 layer without Q/K norms, with
//! attention logit soft-capping, final logit soft-capping and every other layer sliding-window.
//! The layer graph is [`super::gemma3::forward_layer`].

use crate::config::{Keys, ModelConfig};
use crate::error::ConfigError;
use crate::layer::{blk, Ffn, Layer, Loader, Qkv};

pub(crate) fn configure(k: &Keys<'_>, cfg: &mut ModelConfig) -> Result<(), ConfigError> {
    cfg.sliding_window = k
        .opt_usize(&k.key("attention.sliding_window"))?
        .unwrap_or(4096);
    cfg.swa_layers = k.swa_pattern(cfg.n_layer, 2)?;
    cfg.rope.freq_base_swa = k
        .f32(&k.key("rope.freq_base_swa"))?
        .unwrap_or(cfg.rope.freq_base);
    cfg.rope.freq_scale_swa = cfg.rope.freq_scale;
    cfg.attn_softcap =
        Some(k.f32(&k.key("attn_logit_softcapping"))?.unwrap_or(50.0)).filter(|&c| c != 0.0);
    cfg.final_softcap =
        Some(k.f32(&k.key("final_logit_softcapping"))?.unwrap_or(30.0)).filter(|&c| c != 0.0);
    // gemma_pytorch config.py: the 27B model (46 layers) scales by n_embd / n_head.
    cfg.attn_scale = if cfg.n_layer == 46 {
        1.0 / ((cfg.n_embd / cfg.n_head) as f32).sqrt()
    } else {
        1.0 / (cfg.head_dim_k as f32).sqrt()
    };
    cfg.tied_output = true;
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
        attn_post_norm: Some(l.vector(&blk(il, "post_attention_norm.weight"), e)?),
        ffn_norm: l.vector(&blk(il, "ffn_norm.weight"), e)?,
        ffn_norm_b: None,
        ffn: Ffn::load_gated(l, il, cfg, false)?,
        ffn_post_norm: Some(l.vector(&blk(il, "post_ffw_norm.weight"), e)?),
        moe_branch: None,
        out_scale: None,
        ple: None,
    })
}
