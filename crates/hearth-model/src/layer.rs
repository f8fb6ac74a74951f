//! Loading tensors by name with shape checks, and the blocks every decoder layer is built from
//! (attention with its projections, gated feed-forward). The architectures in [`crate::arch`]
//! arrange these blocks the way their llama.cpp graph does.

use hearth_gguf::{GgufFile, TensorInfo};
use hearth_kernels::quant;

use crate::attention::{attention, AttnParams};
use crate::config::{matmul_supported, ModelConfig};
use crate::error::{ConfigError, Result};
use crate::kv_cache::LayerKv;
use crate::ops::{self, Mm, RopeParams, Source, Weight};

/// Looks tensors up by name and checks them against the config. Without a source (a "dry"
/// loader) it only validates, which is how [`ModelConfig::from_gguf`] checks a file.
pub(crate) struct Loader<'a> {
    file: &'a GgufFile,
    source: Option<Source>,
}

impl<'a> Loader<'a> {
    pub(crate) fn new(file: &'a GgufFile, source: Option<Source>) -> Self {
        Loader { file, source }
    }

    /// The tensor `name` if present, after checking its shape is `dims` (trailing 1s allowed,
    /// as llama.cpp's `check_tensor_dims`).
    fn find(&self, name: &str, dims: &[usize]) -> Result<Option<&'a TensorInfo>, ConfigError> {
        let Some(info) = self.file.tensor(name) else {
            return Ok(None);
        };
        let expected: Vec<u64> = dims.iter().map(|&d| d as u64).collect();
        let ok = info.shape.len() >= expected.len()
            && info.shape[..expected.len()] == expected[..]
            && info.shape[expected.len()..].iter().all(|&d| d == 1);
        if !ok {
            return Err(ConfigError::TensorShape {
                name: name.to_string(),
                expected,
                found: info.shape.clone(),
            });
        }
        Ok(Some(info))
    }

    fn absolute_offset(&self, info: &TensorInfo) -> Result<usize, ConfigError> {
        let err = || ConfigError::TensorData {
            name: info.name.clone(),
            offset: self.file.data_offset.saturating_add(info.offset),
            size: info.size,
            file_len: self.file.file_len,
        };
        let start = self
            .file
            .data_offset
            .checked_add(info.offset)
            .ok_or_else(err)?;
        let end = start.checked_add(info.size).ok_or_else(err)?;
        if end > self.file.file_len {
            return Err(err());
        }
        if let Some(src) = &self.source {
            if end > src.bytes().len() as u64 {
                return Err(err());
            }
        }
        usize::try_from(start).map_err(|_| err())
    }

    /// Checks that `info` can be multiplied as rows of `n_in` values.
    fn check_matmul_type(
        &self,
        name: &str,
        info: &TensorInfo,
        n_in: usize,
    ) -> Result<(), ConfigError> {
        if !matmul_supported(info.ty) {
            return Err(ConfigError::TensorType {
                name: name.to_string(),
                ty: info.ty,
                reason: "hearth cannot multiply (no dequantizer or activation quantizer)",
            });
        }
        if let Some(vdt) = ops::vec_dot_type(info.ty) {
            if !n_in.is_multiple_of(quant::block_geometry(vdt).0) {
                return Err(ConfigError::TensorType {
                    name: name.to_string(),
                    ty: info.ty,
                    reason: "needs rows that are whole blocks of its activation type",
                });
            }
        }
        Ok(())
    }

    fn source_or_empty(&self) -> Source {
        self.source
            .clone()
            .unwrap_or_else(|| Source::Owned(std::sync::Arc::from(Vec::new())))
    }

    /// An optional matrix of `n_out` rows of `n_in` values.
    pub(crate) fn matrix_opt(
        &self,
        name: &str,
        n_in: usize,
        n_out: usize,
    ) -> Result<Option<Weight>, ConfigError> {
        let Some(info) = self.find(name, &[n_in, n_out])? else {
            return Ok(None);
        };
        self.check_matmul_type(name, info, n_in)?;
        let offset = self.absolute_offset(info)?;
        Ok(Some(Weight::new(
            name.to_string(),
            info.ty,
            n_in,
            n_out,
            self.source_or_empty(),
            offset,
        )))
    }

    /// An optional 3-D tensor of `n_expert` matrices of `n_out` rows of `n_in` values (ggml
    /// `ne = [n_in, n_out, n_expert]`, e.g. `ffn_up_exps`), one [`Weight`] per expert viewing its
    /// slice of the data, so a product reads only the experts it uses.
    pub(crate) fn experts_opt(
        &self,
        name: &str,
        n_in: usize,
        n_out: usize,
        n_expert: usize,
    ) -> Result<Option<Vec<Weight>>, ConfigError> {
        let Some(info) = self.find(name, &[n_in, n_out, n_expert])? else {
            return Ok(None);
        };
        self.check_matmul_type(name, info, n_in)?;
        let offset = self.absolute_offset(info)?;
        let (bv, bb) = quant::block_geometry(info.ty);
        // The tensor's size was checked against the file with the same geometry.
        let slab = n_in / bv * bb * n_out;
        if slab.checked_mul(n_expert) != usize::try_from(info.size).ok() {
            return Err(ConfigError::TensorData {
                name: name.to_string(),
                offset: offset as u64,
                size: info.size,
                file_len: self.file.file_len,
            });
        }
        let source = self.source_or_empty();
        Ok(Some(
            (0..n_expert)
                .map(|e| {
                    Weight::new(
                        name.to_string(),
                        info.ty,
                        n_in,
                        n_out,
                        source.clone(),
                        offset + e * slab,
                    )
                })
                .collect(),
        ))
    }

    /// A required expert tensor.
    pub(crate) fn experts(
        &self,
        name: &str,
        n_in: usize,
        n_out: usize,
        n_expert: usize,
    ) -> Result<Vec<Weight>, ConfigError> {
        self.experts_opt(name, n_in, n_out, n_expert)?
            .ok_or_else(|| ConfigError::MissingTensor {
                name: name.to_string(),
            })
    }

    /// A required matrix.
    pub(crate) fn matrix(
        &self,
        name: &str,
        n_in: usize,
        n_out: usize,
    ) -> Result<Weight, ConfigError> {
        self.matrix_opt(name, n_in, n_out)?
            .ok_or_else(|| ConfigError::MissingTensor {
                name: name.to_string(),
            })
    }

    /// An optional vector of `n` values, converted to f32.
    pub(crate) fn vector_opt(&self, name: &str, n: usize) -> Result<Option<Vec<f32>>, ConfigError> {
        let Some(info) = self.find(name, &[n])? else {
            return Ok(None);
        };
        if !quant::supports_dequantize(info.ty) {
            return Err(ConfigError::TensorType {
                name: name.to_string(),
                ty: info.ty,
                reason: "cannot be converted to f32",
            });
        }
        let offset = self.absolute_offset(info)?;
        let mut out = vec![0.0f32; n];
        if let Some(src) = &self.source {
            let bytes = src
                .bytes()
                .get(offset..offset + info.size as usize)
                .ok_or_else(|| ConfigError::TensorData {
                    name: name.to_string(),
                    offset: offset as u64,
                    size: info.size,
                    file_len: self.file.file_len,
                })?;
            quant::dequantize(info.ty, bytes, &mut out).map_err(|_| ConfigError::TensorType {
                name: name.to_string(),
                ty: info.ty,
                reason: "is not a whole number of blocks",
            })?;
        }
        Ok(Some(out))
    }

    /// A required vector.
    pub(crate) fn vector(&self, name: &str, n: usize) -> Result<Vec<f32>, ConfigError> {
        self.vector_opt(name, n)?
            .ok_or_else(|| ConfigError::MissingTensor {
                name: name.to_string(),
            })
    }

    pub(crate) fn has(&self, name: &str) -> bool {
        self.file.tensor(name).is_some()
    }
}

/// `blk.{il}.{suffix}`.
pub(crate) fn blk(il: usize, suffix: &str) -> String {
    format!("blk.{il}.{suffix}")
}

/// Q, K and V projections: separate matrices or one fused `attn_qkv`, each with optional bias.
// One per layer, built once: the size difference between the variants does not matter.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Qkv {
    Separate {
        wq: Weight,
        wk: Weight,
        /// `None`: V is the K projection (gemma4's full-attention layers, `attention_k_eq_v`).
        wv: Option<Weight>,
        bq: Option<Vec<f32>>,
        bk: Option<Vec<f32>>,
        bv: Option<Vec<f32>>,
    },
    Fused {
        w: Weight,
        b: Option<Vec<f32>>,
    },
    /// Q alone: a layer attending over an earlier layer's cache (gemma4's shared-KV layers).
    QOnly {
        wq: Weight,
    },
}

impl Qkv {
    /// `llama_model_base::create_tensor_qkv`: the fused tensor when present, else separate ones.
    pub(crate) fn load(l: &Loader<'_>, il: usize, cfg: &ModelConfig) -> Result<Qkv, ConfigError> {
        let (nq, nk, nv) = (cfg.n_embd_q(), cfg.n_embd_k_gqa(), cfg.n_embd_v_gqa());
        let n_embd = cfg.n_embd;
        if let Some(w) = l.matrix_opt(&blk(il, "attn_qkv.weight"), n_embd, nq + nk + nv)? {
            let b = match l.vector_opt(&blk(il, "attn_qkv.bias"), nq + nk + nv)? {
                Some(b) => Some(b),
                None => {
                    let bq = l.vector_opt(&blk(il, "attn_q.bias"), nq)?;
                    let bk = l.vector_opt(&blk(il, "attn_k.bias"), nk)?;
                    let bv = l.vector_opt(&blk(il, "attn_v.bias"), nv)?;
                    match (bq, bk, bv) {
                        (Some(mut q), Some(k), Some(v)) => {
                            q.extend(k);
                            q.extend(v);
                            Some(q)
                        }
                        _ => None,
                    }
                }
            };
            return Ok(Qkv::Fused { w, b });
        }
        Ok(Qkv::Separate {
            wq: l.matrix(&blk(il, "attn_q.weight"), n_embd, nq)?,
            wk: l.matrix(&blk(il, "attn_k.weight"), n_embd, nk)?,
            wv: match cfg.arch == crate::config::Arch::Gemma4 {
                true => l.matrix_opt(&blk(il, "attn_v.weight"), n_embd, nv)?,
                false => Some(l.matrix(&blk(il, "attn_v.weight"), n_embd, nv)?),
            },
            bq: l.vector_opt(&blk(il, "attn_q.bias"), nq)?,
            bk: l.vector_opt(&blk(il, "attn_k.bias"), nk)?,
            bv: l.vector_opt(&blk(il, "attn_v.bias"), nv)?,
        })
    }

    /// `attn_q` alone, for a layer without a KV cache of its own.
    pub(crate) fn load_q(l: &Loader<'_>, il: usize, cfg: &ModelConfig) -> Result<Qkv, ConfigError> {
        Ok(Qkv::QOnly {
            wq: l.matrix(&blk(il, "attn_q.weight"), cfg.n_embd, cfg.n_embd_q())?,
        })
    }

    /// Projects `n` rows of `x`; returns (Q, K, V) as row-major `[n][width]` (K and V empty
    /// for [`Qkv::QOnly`]).
    pub(crate) fn project(
        &self,
        x: &[f32],
        n: usize,
        cfg: &ModelConfig,
        mm: &Mm<'_>,
    ) -> Result<(Vec<f32>, Vec<f32>, Vec<f32>)> {
        let (nq, nk, nv) = (cfg.n_embd_q(), cfg.n_embd_k_gqa(), cfg.n_embd_v_gqa());
        match self {
            Qkv::Separate {
                wq,
                wk,
                wv,
                bq,
                bk,
                bv,
            } => {
                let mut q = vec![0.0; n * nq];
                let mut k = vec![0.0; n * nk];
                let mut v = vec![0.0; n * nv];
                match wv {
                    Some(wv) => {
                        mm.matmul_many(&[wq, wk, wv], x, n, &mut [&mut q, &mut k, &mut v])?
                    }
                    None => {
                        mm.matmul_many(&[wq, wk], x, n, &mut [&mut q, &mut k])?;
                        v.copy_from_slice(&k);
                    }
                }
                if let Some(b) = bq {
                    ops::add_bias(&mut q, b);
                }
                if let Some(b) = bk {
                    ops::add_bias(&mut k, b);
                }
                if let Some(b) = bv {
                    ops::add_bias(&mut v, b);
                }
                Ok((q, k, v))
            }
            Qkv::Fused { w, b } => {
                let width = nq + nk + nv;
                let mut qkv = vec![0.0; n * width];
                mm.matmul(w, x, n, &mut qkv)?;
                if let Some(b) = b {
                    ops::add_bias(&mut qkv, b);
                }
                let mut q = Vec::with_capacity(n * nq);
                let mut k = Vec::with_capacity(n * nk);
                let mut v = Vec::with_capacity(n * nv);
                for row in qkv.chunks_exact(width) {
                    q.extend_from_slice(&row[..nq]);
                    k.extend_from_slice(&row[nq..nq + nk]);
                    v.extend_from_slice(&row[nq + nk..]);
                }
                Ok((q, k, v))
            }
            Qkv::QOnly { wq } => {
                let mut q = vec![0.0; n * nq];
                mm.matmul(wq, x, n, &mut q)?;
                Ok((q, Vec::new(), Vec::new()))
            }
        }
    }
}

/// Feed-forward weights: separate gate and up, or one fused `ffn_up` of twice the width whose
/// first half is the gate (phi3).
// One per layer, built once: the size difference between the variants does not matter.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Ffn {
    Gated {
        gate: Weight,
        up: Weight,
        down: Weight,
        gate_b: Option<Vec<f32>>,
        up_b: Option<Vec<f32>>,
        down_b: Option<Vec<f32>>,
    },
    FusedGateUp {
        up: Weight,
        down: Weight,
    },
    /// Routed experts (`ffn_gate_inp` + `ffn_*_exps`).
    Moe(Box<crate::moe::Moe>),
}

/// The gating activation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Act {
    /// `silu(gate) * up` (`LLM_FFN_SILU` + `LLM_FFN_PAR`, `LLM_FFN_SWIGLU`).
    Silu,
    /// `gelu_tanh(gate) * up` (`LLM_FFN_GELU` + `LLM_FFN_PAR`).
    Gelu,
}

impl Act {
    /// `y = act(g) * u`: llama.cpp's kernels bit for bit with [`ops::Numerics::LlamaCpp`], the SIMD
    /// silu of `hearth-kernels` otherwise (the same function within a few ulp).
    pub(crate) fn apply(self, numerics: ops::Numerics, g: &[f32], u: &[f32], y: &mut [f32]) {
        match (self, numerics) {
            (Act::Silu, ops::Numerics::Fast) => hearth_kernels::vec::swiglu(g, u, y),
            (Act::Silu, ops::Numerics::LlamaCpp) => ops::swiglu(g, u, y),
            (Act::Gelu, _) => ops::geglu(g, u, y),
        }
    }
}

impl Ffn {
    pub(crate) fn load_gated(
        l: &Loader<'_>,
        il: usize,
        cfg: &ModelConfig,
        biases: bool,
    ) -> Result<Ffn, ConfigError> {
        let (e, f) = (cfg.n_embd, cfg.n_ff);
        let opt = |name: &str, n: usize| -> Result<Option<Vec<f32>>, ConfigError> {
            if biases {
                l.vector_opt(&blk(il, name), n)
            } else {
                Ok(None)
            }
        };
        Ok(Ffn::Gated {
            gate: l.matrix(&blk(il, "ffn_gate.weight"), e, f)?,
            up: l.matrix(&blk(il, "ffn_up.weight"), e, f)?,
            down: l.matrix(&blk(il, "ffn_down.weight"), f, e)?,
            gate_b: opt("ffn_gate.bias", f)?,
            up_b: opt("ffn_up.bias", f)?,
            down_b: opt("ffn_down.bias", e)?,
        })
    }

    pub(crate) fn load_fused(
        l: &Loader<'_>,
        il: usize,
        cfg: &ModelConfig,
    ) -> Result<Ffn, ConfigError> {
        let (e, f) = (cfg.n_embd, cfg.n_ff);
        Ok(Ffn::FusedGateUp {
            up: l.matrix(&blk(il, "ffn_up.weight"), e, 2 * f)?,
            down: l.matrix(&blk(il, "ffn_down.weight"), f, e)?,
        })
    }

    /// `build_ffn`: the gated feed-forward of `n` rows.
    pub(crate) fn forward(
        &self,
        x: &[f32],
        n: usize,
        cfg: &ModelConfig,
        act: Act,
        mm: &Mm<'_>,
    ) -> Result<Vec<f32>> {
        if let Ffn::Moe(moe) = self {
            return moe.forward(x, n, cfg, act, mm, None);
        }
        let (e, f) = (cfg.n_embd, cfg.n_ff);
        let apply = |g: &[f32], u: &[f32], y: &mut [f32]| act.apply(mm.numerics, g, u, y);
        let mut h = vec![0.0f32; n * f];
        let down = match self {
            Ffn::Gated {
                gate,
                up,
                down,
                gate_b,
                up_b,
                down_b: _,
            } => {
                let mut u = vec![0.0f32; n * f];
                let mut g = vec![0.0f32; n * f];
                mm.matmul_many(&[up, gate], x, n, &mut [&mut u, &mut g])?;
                if let Some(b) = up_b {
                    ops::add_bias(&mut u, b);
                }
                if let Some(b) = gate_b {
                    ops::add_bias(&mut g, b);
                }
                par_rows(mm, &mut h, n, f, |r, hr| {
                    apply(&g[r * f..(r + 1) * f], &u[r * f..(r + 1) * f], hr)
                });
                down
            }
            Ffn::FusedGateUp { up, down } => {
                let mut gu = vec![0.0f32; n * 2 * f];
                mm.matmul(up, x, n, &mut gu)?;
                par_rows(mm, &mut h, n, f, |r, hr| {
                    let row = &gu[r * 2 * f..(r + 1) * 2 * f];
                    apply(&row[..f], &row[f..], hr)
                });
                down
            }
            Ffn::Moe(_) => unreachable!("handled above"),
        };
        let mut y = vec![0.0f32; n * e];
        mm.matmul(down, &h, n, &mut y)?;
        if let Ffn::Gated {
            down_b: Some(b), ..
        } = self
        {
            ops::add_bias(&mut y, b);
        }
        Ok(y)
    }
}

/// `f(r, row r of out)` for the `n` rows of `width` values of `out`, rows shared between the
/// threads of `mm`'s pool when there are several (each row is computed the same way either
/// way).
fn par_rows(
    mm: &Mm<'_>,
    out: &mut [f32],
    n: usize,
    width: usize,
    f: impl Fn(usize, &mut [f32]) + Sync,
) {
    if n < 2 || width == 0 {
        for (r, row) in out.chunks_exact_mut(width.max(1)).enumerate() {
            f(r, row);
        }
        return;
    }
    let per = n.div_ceil(4 * mm.pool.n_threads()).max(1);
    mm.pool.par_chunks_mut(out, per * width, |i, rows| {
        for (k, row) in rows.chunks_exact_mut(width).enumerate() {
            f(i * per + k, row);
        }
    });
}

/// The tensors of one decoder layer (the union of what the supported architectures use).
pub(crate) struct Layer {
    pub(crate) attn_norm: Vec<f32>,
    pub(crate) attn_norm_b: Option<Vec<f32>>,
    pub(crate) qkv: Qkv,
    pub(crate) q_norm: Option<Vec<f32>>,
    pub(crate) k_norm: Option<Vec<f32>>,
    pub(crate) wo: Weight,
    pub(crate) bo: Option<Vec<f32>>,
    pub(crate) attn_post_norm: Option<Vec<f32>>,
    pub(crate) ffn_norm: Vec<f32>,
    pub(crate) ffn_norm_b: Option<Vec<f32>>,
    pub(crate) ffn: Ffn,
    pub(crate) ffn_post_norm: Option<Vec<f32>>,
    /// Routed experts beside the feed-forward (gemma4's expert layers).
    pub(crate) moe_branch: Option<Box<crate::arch::gemma4::MoeBranch>>,
    /// Factor the layer's output is multiplied by (`layer_output_scale`, gemma4).
    pub(crate) out_scale: Option<f32>,
    /// The per-layer embedding's gate and projection (gemma4 E2B/E4B).
    pub(crate) ple: Option<Box<crate::arch::gemma4::LayerPle>>,
}

impl Layer {
    /// Calls `f` on every weight matrix of the layer.
    pub(crate) fn for_each_weight(&self, f: &mut impl FnMut(&Weight)) {
        match &self.qkv {
            Qkv::Separate { wq, wk, wv, .. } => {
                f(wq);
                f(wk);
                if let Some(wv) = wv {
                    f(wv);
                }
            }
            Qkv::Fused { w, .. } => f(w),
            Qkv::QOnly { wq } => f(wq),
        }
        f(&self.wo);
        match &self.ffn {
            Ffn::Gated { gate, up, down, .. } => {
                f(gate);
                f(up);
                f(down);
            }
            Ffn::FusedGateUp { up, down } => {
                f(up);
                f(down);
            }
            Ffn::Moe(moe) => moe.for_each_weight(f),
        }
        if let Some(b) = &self.moe_branch {
            f(&b.gate_inp);
            b.moe.for_each_weight(f);
        }
        if let Some(p) = &self.ple {
            p.for_each_weight(f);
        }
    }

    /// Bytes of weights one token's products read: every matrix, but only `n_expert_used`
    /// experts of an expert layer.
    pub(crate) fn active_bytes(&self, cfg: &ModelConfig) -> u64 {
        let mut total = 0u64;
        self.for_each_weight(&mut |w| total += w.n_bytes() as u64);
        let moes = [
            match &self.ffn {
                Ffn::Moe(moe) => Some(&**moe),
                _ => None,
            },
            self.moe_branch.as_ref().map(|b| &b.moe),
        ];
        for moe in moes.into_iter().flatten() {
            let mut all = 0u64;
            moe.for_each_weight(&mut |w| all += w.n_bytes() as u64);
            total = total - all + moe.active_bytes(cfg.moe.n_expert_used);
        }
        total
    }
}

/// How one layer's attention block is set up.
pub(crate) struct AttnSpec {
    /// `ggml_scale` applied to Q after RoPE (gemma, phi3), if any.
    pub(crate) q_prescale: Option<f32>,
    /// Scale inside the attention (`kq_scale`).
    pub(crate) kq_scale: f32,
    /// Attention logit soft-capping.
    pub(crate) softcap: Option<f32>,
    /// RMS-normalize each V head without a weight (gemma4).
    pub(crate) v_norm: bool,
}

/// Everything about the batch that is the same for every layer.
pub(crate) struct Batch<'a> {
    /// Positions of the batch's tokens.
    pub(crate) pos: &'a [i64],
    /// The rows of each sequence of the batch (consecutive, in order); sequence `s` attends
    /// over its own cache, `caches[s]` of the layer.
    pub(crate) segments: &'a [std::ops::Range<usize>],
    /// RoPE frequency divisors (`rope_freqs`, or phi3's long/short factors).
    pub(crate) rope_factors: Option<&'a [f32]>,
    /// Threads and numerics of the products.
    pub(crate) mm: Mm<'a>,
    /// Per-layer token embeddings, `[n][n_layer][n_embd_per_layer]` (gemma4 E2B/E4B).
    pub(crate) per_layer_inp: Option<&'a [f32]>,
}

/// `build_qkv` -> optional Q/K RMS norm -> RoPE -> optional Q scale -> KV store -> attention ->
/// output projection (+ bias), for `n` normalized input rows `x`.
pub(crate) fn attention_block(
    cfg: &ModelConfig,
    layer: &Layer,
    il: usize,
    x: &[f32],
    batch: &Batch<'_>,
    caches: &mut [&mut LayerKv],
    spec: &AttnSpec,
) -> Result<Vec<f32>> {
    let n = batch.pos.len();
    // A layer past `n_layer_kv` attends over an earlier layer's cache (the caller passes
    // that one), which already holds this batch's rows: it projects Q alone
    // ([`Qkv::QOnly`], no K norm).
    let shared = il >= cfg.n_layer_kv;
    let (mut q, mut k, mut v) = layer.qkv.project(x, n, cfg, &batch.mm)?;
    if let Some(w) = &layer.q_norm {
        batch.mm.rms_norm_inplace(&mut q, w, cfg.rms_eps);
    }
    if let Some(w) = &layer.k_norm {
        batch.mm.rms_norm_inplace(&mut k, w, cfg.rms_eps);
    }
    if spec.v_norm && !shared {
        let ones = vec![1.0f32; cfg.head_dim_v];
        ops::rms_norm_inplace(&mut v, &ones, cfg.rms_eps);
    }
    let rope = rope_params(
        cfg,
        il,
        crate::arch::layer_rope_factors(cfg, il, batch.rope_factors),
    );
    let (nq, nk, nv) = (cfg.n_embd_q(), cfg.n_embd_k_gqa(), cfg.n_embd_v_gqa());
    // Each token's rows rotated with its position's (cos, sin), tokens shared between the
    // threads (Q and K in two passes, each computing the tables it needs).
    let rotate = |x: &mut [f32], width: usize| {
        par_rows(&batch.mm, x, n, width, |t, row| {
            let mut table = Vec::new();
            rope.cache(batch.pos[t], &mut table);
            rope.apply(row, cfg.head_dim_k, &table);
        })
    };
    rotate(&mut q, nq);
    if !shared {
        rotate(&mut k, nk);
    }
    if let Some(s) = spec.q_prescale {
        ops::scale_inplace(&mut q, s);
    }
    let o_width = cfg.n_head * cfg.head_dim_v;
    let mut attn = vec![0.0f32; n * o_width];
    for (seg, cache) in batch.segments.iter().zip(caches.iter_mut()) {
        for t in seg.clone().filter(|_| !shared) {
            cache.push(
                batch.pos[t],
                &k[t * nk..(t + 1) * nk],
                &v[t * nv..(t + 1) * nv],
            );
        }
        let params = AttnParams {
            n_head: cfg.n_head,
            n_head_kv: cfg.n_head_kv,
            head_dim_k: cfg.head_dim_k,
            head_dim_v: cfg.head_dim_v,
            scale: spec.kq_scale,
            softcap: spec.softcap,
            window: cache.window,
        };
        attention(
            &q[seg.start * nq..seg.end * nq],
            &batch.pos[seg.clone()],
            cache,
            &params,
            &mut attn[seg.start * o_width..seg.end * o_width],
            &batch.mm,
        );
    }
    let mut out = vec![0.0f32; n * cfg.n_embd];
    batch.mm.matmul(&layer.wo, &attn, n, &mut out)?;
    if let Some(b) = &layer.bo {
        ops::add_bias(&mut out, b);
    }
    Ok(out)
}

/// RoPE parameters of layer `il`.
pub(crate) fn rope_params<'a>(
    cfg: &ModelConfig,
    il: usize,
    factors: Option<&'a [f32]>,
) -> RopeParams<'a> {
    let (base, scale) = cfg.rope_freq(il);
    let r = &cfg.rope;
    RopeParams::new(
        r.kind == crate::config::RopeKind::Neox,
        r.n_rot,
        r.n_ctx_orig,
        base,
        scale,
        r.ext_factor,
        r.attn_factor,
        r.beta_fast,
        r.beta_slow,
        factors,
    )
}

/// Keeps only `rows` (batch indices) of a row-major `[n][width]` buffer (`ggml_get_rows` with
/// `inp_out_ids`).
pub(crate) fn select_rows(x: &[f32], width: usize, rows: &[usize]) -> Vec<f32> {
    let mut out = Vec::with_capacity(rows.len() * width);
    for &r in rows {
        out.extend_from_slice(&x[r * width..(r + 1) * width]);
    }
    out
}
