//! `llama` (llama.cpp `src/models/llama.cpp`): pre-norm attention with optional biases, RoPE
//! with optional frequency factors (`rope_freqs`, llama 3) and scaling, SiLU-gated feed-forward,
//! or routed experts when `llama.expert_count` is set (Mixtral).
//! qwen2 and qwen3 use the same layer graph.

use crate::config::{Keys, ModelConfig};
use crate::error::{ConfigError, Result};
use crate::kv_cache::LayerKv;
use crate::layer::{attention_block, blk, Act, AttnSpec, Batch, Ffn, Layer, Loader, Qkv};
use crate::model::keep_rows;
use crate::moe::Moe;
use crate::ops;

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
        bo: l.vector_opt(&blk(il, "attn_output.bias"), e)?,
        attn_post_norm: None,
        ffn_norm: l.vector(&blk(il, "ffn_norm.weight"), e)?,
        ffn_norm_b: None,
        ffn: match cfg.moe.is_moe() {
            true => Ffn::Moe(Box::new(Moe::load(l, il, cfg, true)?)),
            false => Ffn::load_gated(l, il, cfg, true)?,
        },
        ffn_post_norm: None,
        moe_branch: None,
        out_scale: None,
        ple: None,
    })
}

/// One llama / qwen2 / qwen3 layer: `x + attn(norm(x))`, then `h + ffn(norm(h))`.
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
        q_prescale: None,
        kq_scale: cfg.attn_scale,
        softcap: None,
        v_norm: false,
    };
    let attn = attention_block(cfg, layer, il, &cur, batch, caches, &spec)?;
    let mut ffn_inp = keep_rows(attn, e, keep);
    let x = keep_rows(x, e, keep);
    ops::add_inplace(&mut ffn_inp, &x);
    let n = ffn_inp.len() / e;

    let mut h = vec![0.0f32; n * e];
    batch
        .mm
        .rms_norm(&ffn_inp, &layer.ffn_norm, None, eps, &mut h);
    let mut out = layer.ffn.forward(&h, n, cfg, Act::Silu, &batch.mm)?;
    ops::add_inplace(&mut out, &ffn_inp);
    Ok(out)
}
