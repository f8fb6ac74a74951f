//! `phi3` (llama.cpp `src/models/phi3.cpp`): fused QKV (`attn_qkv`), fused gate+up (`ffn_up` of
//! twice `n_ff`, gate first), Q scaled by `1/sqrt(head_dim)` before attention, LongRoPE factors
//! (`rope_factors_long/short`) chosen by context size. llama.cpp disables phi3's sliding window.

use crate::config::{Keys, ModelConfig};
use crate::error::{ConfigError, Result};
use crate::kv_cache::LayerKv;
use crate::layer::{attention_block, blk, Act, AttnSpec, Batch, Ffn, Layer, Loader, Qkv};
use crate::model::keep_rows;
use crate::ops;

pub(crate) fn configure(_k: &Keys<'_>, cfg: &mut ModelConfig) -> Result<(), ConfigError> {
    // "Phi SWA is currently disabled" (llama.cpp #13676): every layer attends globally.
    cfg.sliding_window = 0;
    cfg.swa_layers = vec![false; cfg.n_layer];
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
        attn_norm_b: l.vector_opt(&blk(il, "attn_norm.bias"), e)?,
        qkv: Qkv::load(l, il, cfg)?,
        q_norm: None,
        k_norm: None,
        wo: l.matrix(&blk(il, "attn_output.weight"), cfg.n_embd_q(), e)?,
        bo: l.vector_opt(&blk(il, "attn_output.bias"), e)?,
        attn_post_norm: None,
        ffn_norm: l.vector(&blk(il, "ffn_norm.weight"), e)?,
        ffn_norm_b: l.vector_opt(&blk(il, "ffn_norm.bias"), e)?,
        ffn: if l.has(&blk(il, "ffn_gate.weight")) {
            Ffn::load_gated(l, il, cfg, false)?
        } else {
            Ffn::load_fused(l, il, cfg)?
        },
        ffn_post_norm: None,
        moe_branch: None,
        out_scale: None,
        ple: None,
    })
}

/// One phi3 layer: `r = x + attn(norm(x))`, then `r + ffn(norm(r))`.
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
    batch.mm.rms_norm(
        &x,
        &layer.attn_norm,
        layer.attn_norm_b.as_deref(),
        eps,
        &mut cur,
    );
    let spec = AttnSpec {
        q_prescale: Some(1.0 / (cfg.head_dim_v as f32).sqrt()),
        kq_scale: 1.0,
        softcap: None,
        v_norm: false,
    };
    let attn = attention_block(cfg, layer, il, &cur, batch, caches, &spec)?;
    let mut residual = keep_rows(attn, e, keep);
    let x = keep_rows(x, e, keep);
    ops::add_inplace(&mut residual, &x);
    let n = residual.len() / e;

    let mut h = vec![0.0f32; n * e];
    batch.mm.rms_norm(
        &residual,
        &layer.ffn_norm,
        layer.ffn_norm_b.as_deref(),
        eps,
        &mut h,
    );
    let mut out = layer.ffn.forward(&h, n, cfg, Act::Silu, &batch.mm)?;
    ops::add_inplace(&mut out, &residual);
    Ok(out)
}
