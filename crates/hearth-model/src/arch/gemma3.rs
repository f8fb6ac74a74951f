//! `gemma3` (llama.cpp `src/models/gemma3.cpp`): embeddings scaled by `sqrt(n_embd)`, RMS-normed
//! Q and K, Q scaled before attention, sandwich norms around attention and the GELU-gated
//! feed-forward, sliding-window layers with their own RoPE base, optional final soft-capping.

use crate::config::{Keys, ModelConfig};
use crate::error::{ConfigError, Result};
use crate::kv_cache::LayerKv;
use crate::layer::{attention_block, blk, Act, AttnSpec, Batch, Ffn, Layer, Loader, Qkv};
use crate::model::keep_rows;
use crate::ops;

pub(crate) fn configure(k: &Keys<'_>, cfg: &mut ModelConfig) -> Result<(), ConfigError> {
    let swa = k
        .opt_usize(&k.key("attention.sliding_window"))?
        .unwrap_or(0);
    if swa > 0 {
        cfg.sliding_window = swa;
        cfg.swa_layers = k.swa_pattern(cfg.n_layer, 6)?;
        if let Some(b) = k.f32(&k.key("rope.freq_base_swa"))? {
            cfg.rope.freq_base_swa = b;
        }
    }
    cfg.final_softcap = k
        .f32(&k.key("final_logit_softcapping"))?
        .filter(|&c| c != 0.0);
    // gemma_pytorch config.py: the 27B model (62 layers) scales by n_embd / n_head.
    cfg.attn_scale = if cfg.n_layer == 62 {
        1.0 / ((cfg.n_embd / cfg.n_head) as f32).sqrt()
    } else {
        1.0 / (cfg.head_dim_k as f32).sqrt()
    };
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

/// One gemma2/gemma3 layer (the two graphs differ only in the Q/K norms, present in the
/// layer's tensors, and the attention soft-capping, present in the config).
pub(crate) fn forward_layer(
    cfg: &ModelConfig,
    layer: &Layer,
    il: usize,
    x: Vec<f32>,
    batch: &Batch<'_>,
    caches: &mut [&mut LayerKv],
    keep: Option<&[usize]>,
) -> Result<Vec<f32>> {
    let e = cfg.n_embd;
    let eps = cfg.rms_eps;
    let mut cur = vec![0.0f32; x.len()];
    batch.mm.rms_norm(&x, &layer.attn_norm, None, eps, &mut cur);
    let spec = AttnSpec {
        q_prescale: Some(cfg.attn_scale),
        kq_scale: 1.0,
        softcap: cfg.attn_softcap,
        v_norm: false,
    };
    let attn = attention_block(cfg, layer, il, &cur, batch, caches, &spec)?;
    let attn = keep_rows(attn, e, keep);
    let x = keep_rows(x, e, keep);
    let n = x.len() / e;

    let mut sa_out = vec![0.0f32; n * e];
    if let Some(w) = &layer.attn_post_norm {
        batch.mm.rms_norm(&attn, w, None, eps, &mut sa_out);
    } else {
        sa_out.copy_from_slice(&attn);
    }
    ops::add_inplace(&mut sa_out, &x);

    let mut h = vec![0.0f32; n * e];
    batch
        .mm
        .rms_norm(&sa_out, &layer.ffn_norm, None, eps, &mut h);
    let f = layer.ffn.forward(&h, n, cfg, Act::Gelu, &batch.mm)?;
    let mut out = vec![0.0f32; n * e];
    if let Some(w) = &layer.ffn_post_norm {
        batch.mm.rms_norm(&f, w, None, eps, &mut out);
    } else {
        out.copy_from_slice(&f);
    }
    ops::add_inplace(&mut out, &sa_out);
    Ok(out)
}
