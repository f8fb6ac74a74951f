//! `gemma4` (llama.cpp `src/models/gemma4.cpp`): gemma's scaled embeddings and sandwich norms,
//! with layers of different shapes: sliding-window layers (their own head size, RoPE base and
//! rotated dimensions) and full-attention layers (wider heads, fewer KV heads, K reused as V
//! when `attn_v` is absent, proportional RoPE through `rope_freqs`). Q and K are RMS-normed
//! with weights, V without; the attention scale is 1. Expert layers run a dense GELU
//! feed-forward beside routed experts whose router reads its own normalized, scaled input.
//! Every layer's output may be scaled (`layer_output_scale`); the logits are soft-capped.
//!
//! The E2B/E4B models add shared-KV layers (the last layers attend over an earlier layer's
//! cache, [`ModelConfig::kv_layer`]) and per-layer token embeddings ([`PleInput`],
//! [`LayerPle`]): a second embedding table gives every token a small vector per layer, mixed
//! with a projection of the embeddings, which each layer gates into its output.

use crate::config::{Keys, LayerDims, ModelConfig};
use crate::error::{ConfigError, Result};
use crate::kv_cache::LayerKv;
use crate::layer::{attention_block, blk, Act, AttnSpec, Batch, Ffn, Layer, Loader, Qkv};
use crate::model::keep_rows;
use crate::moe::Moe;
use crate::ops::{self, Mm, Weight};

/// The routed experts of an expert layer and the norms around them.
pub(crate) struct MoeBranch {
    /// `ffn_gate_inp`: router logits from the scaled, normalized layer input.
    pub(crate) gate_inp: Weight,
    /// `ffn_gate_inp.scale`: per-channel scale of the router input.
    gate_inp_s: Vec<f32>,
    /// `pre_ffw_norm_2`: norm of the experts' input.
    pre_norm: Vec<f32>,
    /// `post_ffw_norm_1`: norm of the dense feed-forward's output.
    post_norm_dense: Vec<f32>,
    /// `post_ffw_norm_2`: norm of the experts' output.
    post_norm_moe: Vec<f32>,
    pub(crate) moe: Moe,
}

/// The model-level part of the per-layer token embeddings (llama.cpp's
/// `build_inp_per_layer` and `project_per_layer_inputs`).
pub(crate) struct PleInput {
    /// `per_layer_token_embd`: per token, `n_layer` vectors of `n_embd_per_layer`.
    tok_embd: Weight,
    /// `per_layer_model_proj`: the scaled embeddings projected to the same shape.
    model_proj: Weight,
    /// `per_layer_proj_norm`: RMS norm weights of each projected vector.
    proj_norm: Vec<f32>,
}

impl PleInput {
    /// The tensors, if the model has per-layer embeddings.
    pub(crate) fn load(l: &Loader<'_>, cfg: &ModelConfig) -> Result<Option<PleInput>, ConfigError> {
        let n = cfg.n_embd_per_layer;
        if n == 0 {
            return Ok(None);
        }
        let width = n
            .checked_mul(cfg.n_layer)
            .ok_or_else(|| ConfigError::BadValue {
                key: "gemma4.embedding_length_per_layer_input".into(),
                reason: format!("{n} x {} layers overflows", cfg.n_layer),
            })?;
        Ok(Some(PleInput {
            tok_embd: l.matrix("per_layer_token_embd.weight", width, cfg.n_vocab)?,
            model_proj: l.matrix("per_layer_model_proj.weight", cfg.n_embd, width)?,
            proj_norm: l.vector("per_layer_proj_norm.weight", n)?,
        }))
    }

    /// Every layer's input for `tokens` whose scaled embeddings are `x`:
    /// `(rms_norm(proj(x) / sqrt(n_embd)) + embd_pl(token) * sqrt(n_pl)) / sqrt(2)`, as
    /// `[n][n_layer][n_pl]`.
    pub(crate) fn compute(
        &self,
        cfg: &ModelConfig,
        tokens: &[u32],
        x: &[f32],
        mm: &Mm<'_>,
    ) -> Result<Vec<f32>> {
        let n = tokens.len();
        let n_pl = cfg.n_embd_per_layer;
        let width = n_pl * cfg.n_layer;
        let mut proj = vec![0.0f32; n * width];
        mm.matmul(&self.model_proj, x, n, &mut proj)?;
        ops::scale_inplace(&mut proj, 1.0 / (cfg.n_embd as f32).sqrt());
        ops::rms_norm_inplace(&mut proj, &self.proj_norm, cfg.rms_eps);
        let (embd_scale, inp_scale) = ((n_pl as f32).sqrt(), 1.0 / 2.0f32.sqrt());
        let mut sel = vec![0.0f32; width];
        for (row, &t) in proj.chunks_exact_mut(width).zip(tokens) {
            self.tok_embd.dequantize_row(t as usize, &mut sel)?;
            for (p, &e) in row.iter_mut().zip(&sel) {
                *p = (*p + e * embd_scale) * inp_scale;
            }
        }
        Ok(proj)
    }

    pub(crate) fn for_each_weight(&self, f: &mut impl FnMut(&Weight)) {
        f(&self.tok_embd);
        f(&self.model_proj);
    }

    /// Bytes a token reads: one row of the table and the whole projection.
    pub(crate) fn bytes_per_token(&self) -> u64 {
        let row = self.tok_embd.n_bytes() / self.tok_embd.n_out().max(1);
        (row + self.model_proj.n_bytes()) as u64
    }
}

/// A layer's part of the per-layer embeddings: its output `h` becomes
/// `h + rms_norm(proj(gelu(inp_gate(h)) * input_l))`.
pub(crate) struct LayerPle {
    /// `inp_gate`: `n_embd` to `n_embd_per_layer`.
    inp_gate: Weight,
    /// `proj`: `n_embd_per_layer` to `n_embd`.
    proj: Weight,
    /// `post_norm`.
    post_norm: Vec<f32>,
}

impl LayerPle {
    pub(crate) fn for_each_weight(&self, f: &mut impl FnMut(&Weight)) {
        f(&self.inp_gate);
        f(&self.proj);
    }
}

pub(crate) fn configure(k: &Keys<'_>, cfg: &mut ModelConfig) -> Result<(), ConfigError> {
    let n_layer = cfg.n_layer;
    let pattern_key = k.key("attention.sliding_window_pattern");
    if k.meta.get(&pattern_key).is_none() {
        return Err(ConfigError::MissingKey { key: pattern_key });
    }
    cfg.swa_layers = k.swa_pattern(n_layer, 0)?;
    let window_key = k.key("attention.sliding_window");
    cfg.sliding_window = k.positive(&window_key)?;
    if let Some(b) = k.f32(&k.key("rope.freq_base_swa"))? {
        cfg.rope.freq_base_swa = b;
    }
    cfg.final_softcap = k
        .f32(&k.key("final_logit_softcapping"))?
        .filter(|&c| c != 0.0);
    cfg.attn_scale = 1.0;
    // Per-layer sizes: full-attention layers use `key_length` / `rope.dimension_count`,
    // sliding-window layers the `_swa` keys (defaulting to the full ones).
    let head_full = cfg.head_dim_k;
    if cfg.head_dim_v != head_full {
        return Err(ConfigError::BadValue {
            key: k.key("attention.value_length"),
            reason: "gemma4 needs equal K and V head sizes".into(),
        });
    }
    let head_swa = k
        .opt_usize(&k.key("attention.key_length_swa"))?
        .unwrap_or(head_full);
    let head_swa_v = k
        .opt_usize(&k.key("attention.value_length_swa"))?
        .unwrap_or(head_swa);
    if head_swa == 0 || head_swa != head_swa_v {
        return Err(ConfigError::BadValue {
            key: k.key("attention.value_length_swa"),
            reason: format!("K head size {head_swa}, V head size {head_swa_v}"),
        });
    }
    let rot_full = cfg.rope.n_rot;
    let rot_key = k.key("rope.dimension_count_swa");
    let rot_swa = k.opt_usize(&rot_key)?.unwrap_or(rot_full);
    if rot_swa == 0 || rot_swa % 2 != 0 || rot_swa > head_swa {
        return Err(ConfigError::BadValue {
            key: rot_key,
            reason: format!("{rot_swa} rotated dimensions with a head size of {head_swa}"),
        });
    }
    let values = |suffix: &str, default: usize| -> Result<Vec<usize>, ConfigError> {
        Ok(k.opt_layer_values(&k.key(suffix), n_layer)?
            .unwrap_or_else(|| vec![default; n_layer]))
    };
    let n_head = values("attention.head_count", cfg.n_head)?;
    let n_head_kv = values("attention.head_count_kv", cfg.n_head)?;
    let n_ff = values("feed_forward_length", cfg.n_ff)?;
    let mut dims = Vec::with_capacity(n_layer);
    for il in 0..n_layer {
        let swa = cfg.swa_layers[il];
        let (h, kv) = (n_head[il], n_head_kv[il]);
        if h == 0 || kv == 0 || h % kv != 0 || n_ff[il] == 0 {
            return Err(ConfigError::PerLayer {
                key: k.key("attention.head_count_kv"),
                reason: format!(
                    "layer {il}: {h} heads, {kv} KV heads, feed-forward {}",
                    n_ff[il]
                ),
            });
        }
        let head = if swa { head_swa } else { head_full };
        dims.push(LayerDims {
            n_head: h,
            n_head_kv: kv,
            head_dim_k: head,
            head_dim_v: head,
            n_rot: if swa { rot_swa } else { rot_full },
            n_ff: n_ff[il],
        });
    }
    cfg.per_layer = Some(dims);

    // Shared-KV layers: the last `shared_kv_layers` attend over the cache of the last
    // earlier layer of their kind, which must have their sizes.
    let shared_key = k.key("attention.shared_kv_layers");
    let shared = k.opt_usize(&shared_key)?.unwrap_or(0);
    if shared > 0 {
        let n_kv = n_layer
            .checked_sub(shared)
            .filter(|&n| n >= 2)
            .ok_or_else(|| ConfigError::BadValue {
                key: shared_key.clone(),
                reason: format!("{shared} of {n_layer} layers (at least 2 must have a cache)"),
            })?;
        cfg.n_layer_kv = n_kv;
        if !cfg.is_swa(n_kv - 2) || cfg.is_swa(n_kv - 1) {
            return Err(ConfigError::BadValue {
                key: shared_key,
                reason:
                    "the last two layers with a cache must be a sliding-window and a global one"
                        .into(),
            });
        }
        for il in n_kv..n_layer {
            let (a, b) = (cfg.for_layer(il), cfg.for_layer(cfg.kv_layer(il)));
            if (a.n_head_kv, a.head_dim_k) != (b.n_head_kv, b.head_dim_k) {
                return Err(ConfigError::PerLayer {
                    key: k.key("attention.head_count_kv"),
                    reason: format!(
                        "layer {il} shares layer {}'s cache but not its KV heads and head size",
                        cfg.kv_layer(il)
                    ),
                });
            }
        }
    }
    cfg.n_embd_per_layer = k
        .opt_usize(&k.key("embedding_length_per_layer_input"))?
        .unwrap_or(0);
    Ok(())
}

/// The tensors of layer `il`; `cfg` is the layer's view ([`ModelConfig::for_layer`]).
pub(crate) fn load_layer(
    l: &Loader<'_>,
    il: usize,
    cfg: &ModelConfig,
) -> Result<Layer, ConfigError> {
    let e = cfg.n_embd;
    let hd = cfg.head_dim_k;
    let out_scale = l
        .vector_opt(&blk(il, "layer_output_scale.weight"), 1)?
        .map(|v| v[0]);
    for unsupported in [
        "ffn_down_exps.scale",
        "ffn_gate_up_exps.scale",
        "ffn_up_exps.scale",
    ] {
        if l.has(&blk(il, unsupported)) {
            return Err(ConfigError::MissingTensor {
                name: format!(
                    "{} (per-expert scales are not supported)",
                    blk(il, unsupported)
                ),
            });
        }
    }
    let moe_branch = match l.has(&blk(il, "ffn_gate_inp.weight")) {
        false => None,
        true if !cfg.moe.is_moe() => {
            return Err(ConfigError::MissingKey {
                key: "gemma4.expert_count".into(),
            })
        }
        true => Some(Box::new(MoeBranch {
            gate_inp: l.matrix(&blk(il, "ffn_gate_inp.weight"), e, cfg.moe.n_expert)?,
            gate_inp_s: l.vector(&blk(il, "ffn_gate_inp.scale"), e)?,
            pre_norm: l.vector(&blk(il, "pre_ffw_norm_2.weight"), e)?,
            post_norm_dense: l.vector(&blk(il, "post_ffw_norm_1.weight"), e)?,
            post_norm_moe: l.vector(&blk(il, "post_ffw_norm_2.weight"), e)?,
            moe: Moe::load(l, il, cfg, false)?,
        })),
    };
    let ple = match cfg.n_embd_per_layer {
        0 => None,
        n => Some(Box::new(LayerPle {
            inp_gate: l.matrix(&blk(il, "inp_gate.weight"), e, n)?,
            proj: l.matrix(&blk(il, "proj.weight"), n, e)?,
            post_norm: l.vector(&blk(il, "post_norm.weight"), e)?,
        })),
    };
    // Layers past `n_layer_kv` reuse an earlier layer's cache: no K/V of their own.
    let shared = il >= cfg.n_layer_kv;
    Ok(Layer {
        attn_norm: l.vector(&blk(il, "attn_norm.weight"), e)?,
        attn_norm_b: None,
        qkv: match shared {
            true => Qkv::load_q(l, il, cfg)?,
            false => Qkv::load(l, il, cfg)?,
        },
        q_norm: Some(l.vector(&blk(il, "attn_q_norm.weight"), hd)?),
        k_norm: match shared {
            true => None,
            false => Some(l.vector(&blk(il, "attn_k_norm.weight"), hd)?),
        },
        wo: l.matrix(&blk(il, "attn_output.weight"), cfg.n_embd_q(), e)?,
        bo: None,
        attn_post_norm: Some(l.vector(&blk(il, "post_attention_norm.weight"), e)?),
        ffn_norm: l.vector(&blk(il, "ffn_norm.weight"), e)?,
        ffn_norm_b: None,
        ffn: Ffn::load_gated(l, il, cfg, false)?,
        ffn_post_norm: Some(l.vector(&blk(il, "post_ffw_norm.weight"), e)?),
        moe_branch,
        out_scale,
        ple,
    })
}

/// One gemma4 layer; `cfg` is the layer's view.
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
        v_norm: true,
    };
    let attn = attention_block(cfg, layer, il, &cur, batch, caches, &spec)?;
    let attn = keep_rows(attn, e, keep);
    let x = keep_rows(x, e, keep);
    let n = x.len() / e;

    // attn_out = post_attention_norm(attn) + x
    let mut attn_out = norm_opt(attn, layer.attn_post_norm.as_deref(), eps);
    ops::add_inplace(&mut attn_out, &x);

    let mut h = vec![0.0f32; n * e];
    batch
        .mm
        .rms_norm(&attn_out, &layer.ffn_norm, None, eps, &mut h);
    let dense = layer.ffn.forward(&h, n, cfg, Act::Gelu, &batch.mm)?;
    let ffn_out = match &layer.moe_branch {
        None => dense,
        Some(b) => {
            let mut mlp = vec![0.0f32; n * e];
            batch
                .mm
                .rms_norm(&dense, &b.post_norm_dense, None, eps, &mut mlp);

            // The router's input: rms_norm(attn_out) / sqrt(n_embd) * ffn_gate_inp.scale.
            let mut tmp = attn_out.clone();
            batch.mm.rms_norm_inplace(&mut tmp, &vec![1.0f32; e], eps);
            ops::scale_inplace(&mut tmp, 1.0 / (e as f32).sqrt());
            for row in tmp.chunks_exact_mut(e) {
                for (v, &s) in row.iter_mut().zip(&b.gate_inp_s) {
                    *v *= s;
                }
            }
            let mut logits = vec![0.0f32; n * cfg.moe.n_expert];
            batch.mm.matmul(&b.gate_inp, &tmp, n, &mut logits)?;

            let mut xin = vec![0.0f32; n * e];
            batch
                .mm
                .rms_norm(&attn_out, &b.pre_norm, None, eps, &mut xin);
            let routed = b
                .moe
                .forward(&xin, n, cfg, Act::Gelu, &batch.mm, Some(logits))?;
            let mut out = vec![0.0f32; n * e];
            batch
                .mm
                .rms_norm(&routed, &b.post_norm_moe, None, eps, &mut out);
            ops::add_inplace(&mut mlp, &out);
            mlp
        }
    };
    let mut out = norm_opt(ffn_out, layer.ffn_post_norm.as_deref(), eps);
    ops::add_inplace(&mut out, &attn_out);
    if let (Some(p), Some(inp)) = (&layer.ple, batch.per_layer_inp) {
        // This layer's input of every kept row.
        let n_pl = cfg.n_embd_per_layer;
        let n_all = batch.pos.len();
        let rows: Vec<usize> = keep.map_or_else(|| (0..n_all).collect(), <[usize]>::to_vec);
        let mut inp_l = Vec::with_capacity(n * n_pl);
        for &r in &rows {
            let at = (r * cfg.n_layer + il) * n_pl;
            inp_l.extend_from_slice(&inp[at..at + n_pl]);
        }
        let mut gate = vec![0.0f32; n * n_pl];
        batch.mm.matmul(&p.inp_gate, &out, n, &mut gate)?;
        let mut g = vec![0.0f32; n * n_pl];
        ops::geglu(&gate, &inp_l, &mut g);
        let mut proj = vec![0.0f32; n * e];
        batch.mm.matmul(&p.proj, &g, n, &mut proj)?;
        batch.mm.rms_norm_inplace(&mut proj, &p.post_norm, eps);
        ops::add_inplace(&mut out, &proj);
    }
    if let Some(s) = layer.out_scale {
        ops::scale_inplace(&mut out, s);
    }
    Ok(out)
}

/// `x` RMS-normed with `w` when there is one.
fn norm_opt(x: Vec<f32>, w: Option<&[f32]>, eps: f32) -> Vec<f32> {
    match w {
        Some(w) => {
            let mut y = vec![0.0f32; x.len()];
            ops::rms_norm(&x, w, None, eps, &mut y);
            y
        }
        None => x,
    }
}
