//! [`ModelConfig`]: the hyperparameters of a model, read from GGUF metadata and checked.
//!
//! Keys and defaults follow llama.cpp (`llama_model_base::load_hparams` in `src/llama-model.cpp`
//! and each architecture's `load_arch_hparams` in `src/models/<arch>.cpp`). Parsing a config also
//! checks every tensor the architecture needs against the metadata ([`ModelConfig::from_gguf`]), so
//! a file that parses here can be loaded without shape surprises.

use hearth_gguf::{Array, GgmlType, GgufError, GgufFile, Metadata, Value};

use crate::arch;
use crate::error::ConfigError;

/// An architecture hearth implements (`general.architecture`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Arch {
    Llama,
    Qwen2,
    Qwen3,
    Phi3,
    Gemma2,
    Gemma3,
    Qwen3Moe,
    Gemma4,
}

impl Arch {
    /// Every supported architecture.
    pub const ALL: [Arch; 8] = [
        Arch::Llama,
        Arch::Qwen2,
        Arch::Qwen3,
        Arch::Phi3,
        Arch::Gemma2,
        Arch::Gemma3,
        Arch::Qwen3Moe,
        Arch::Gemma4,
    ];

    /// The GGUF name (`llama`, `qwen2`, ...), also the metadata key prefix.
    pub fn name(self) -> &'static str {
        match self {
            Arch::Llama => "llama",
            Arch::Qwen2 => "qwen2",
            Arch::Qwen3 => "qwen3",
            Arch::Phi3 => "phi3",
            Arch::Gemma2 => "gemma2",
            Arch::Gemma3 => "gemma3",
            Arch::Qwen3Moe => "qwen3moe",
            Arch::Gemma4 => "gemma4",
        }
    }

    /// The architecture named `name` in GGUF.
    pub fn from_name(name: &str) -> Option<Arch> {
        Arch::ALL.into_iter().find(|a| a.name() == name)
    }

    /// The rotary embedding layout llama.cpp uses for the architecture (`llama_model_rope_type`).
    pub fn rope_kind(self) -> RopeKind {
        match self {
            Arch::Llama => RopeKind::Normal,
            Arch::Qwen2
            | Arch::Qwen3
            | Arch::Qwen3Moe
            | Arch::Phi3
            | Arch::Gemma2
            | Arch::Gemma3
            | Arch::Gemma4 => RopeKind::Neox,
        }
    }
}

impl std::fmt::Display for Arch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Which dimensions RoPE rotates together.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RopeKind {
    /// Adjacent pairs `(2i, 2i+1)` (`GGML_ROPE_TYPE_NORMAL`, llama).
    Normal,
    /// Halves `(i, i + n_rot/2)` (`GGML_ROPE_TYPE_NEOX`).
    Neox,
}

/// `{arch}.rope.scaling.type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RopeScaling {
    None,
    Linear,
    Yarn,
    LongRope,
}

/// How the router turns its logits into expert weights (`{arch}.expert_gating_func`,
/// llama.cpp's `llama_expert_gating_func_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExpertGating {
    /// Softmax over all experts (qwen3moe, Mixtral).
    Softmax,
    /// A sigmoid per expert (DeepSeek V3 style).
    Sigmoid,
    /// Softmax over the selected experts' logits only.
    SoftmaxWeight,
}

/// The mixture-of-experts hyperparameters (`n_expert == 0` for dense models).
#[derive(Clone, Debug, PartialEq)]
pub struct MoeConfig {
    /// `{arch}.expert_count`.
    pub n_expert: usize,
    /// `{arch}.expert_used_count`: experts evaluated per token.
    pub n_expert_used: usize,
    /// Rows of each expert's gate/up matrices (`{arch}.expert_feed_forward_length`).
    pub n_ff_exp: usize,
    pub gating: ExpertGating,
    /// Whether the selected weights are renormalized to sum to 1.
    pub norm_weights: bool,
    /// Factor applied to the selected weights (`{arch}.expert_weights_scale`; 0 or 1: none).
    pub weights_scale: f32,
}

impl MoeConfig {
    /// A dense model.
    pub fn dense() -> MoeConfig {
        MoeConfig {
            n_expert: 0,
            n_expert_used: 0,
            n_ff_exp: 0,
            gating: ExpertGating::Softmax,
            norm_weights: false,
            weights_scale: 0.0,
        }
    }

    /// Whether the model has experts.
    pub fn is_moe(&self) -> bool {
        self.n_expert > 0
    }
}

/// Everything RoPE needs; the values `ggml_rope_ext` receives in llama.cpp.
#[derive(Clone, Debug, PartialEq)]
pub struct RopeConfig {
    pub kind: RopeKind,
    /// Rotated dimensions per head (`{arch}.rope.dimension_count`).
    pub n_rot: usize,
    pub freq_base: f32,
    /// 1 / `{arch}.rope.scaling.factor` (1 when unscaled).
    pub freq_scale: f32,
    /// Base and scale of sliding-window layers (`{arch}.rope.freq_base_swa`).
    pub freq_base_swa: f32,
    pub freq_scale_swa: f32,
    pub scaling: RopeScaling,
    /// `{arch}.rope.scaling.original_context_length` (else the training context).
    pub n_ctx_orig: usize,
    /// YaRN parameters as resolved by `llama_context` (ext_factor 0 unless YaRN).
    pub ext_factor: f32,
    pub attn_factor: f32,
    pub beta_fast: f32,
    pub beta_slow: f32,
}

/// The hyperparameters of a model.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelConfig {
    pub arch: Arch,
    /// Rows of `token_embd.weight` (= tokenizer size when the tokenizer is present).
    pub n_vocab: usize,
    /// `{arch}.context_length`.
    pub n_ctx_train: usize,
    pub n_embd: usize,
    pub n_layer: usize,
    pub n_head: usize,
    pub n_head_kv: usize,
    /// Per-head sizes of K (= Q) and V (`{arch}.attention.key_length` / `value_length`).
    pub head_dim_k: usize,
    pub head_dim_v: usize,
    pub n_ff: usize,
    pub rms_eps: f32,
    pub rope: RopeConfig,
    /// Sliding-window size; 0 when no layer uses one.
    pub sliding_window: usize,
    /// Per layer: whether it attends through the sliding window.
    pub swa_layers: Vec<bool>,
    /// Attention logit soft-capping (gemma2).
    pub attn_softcap: Option<f32>,
    /// Final logit soft-capping (gemma2, gemma3 when present).
    pub final_softcap: Option<f32>,
    /// Attention scale (`f_attention_scale` / `kq_scale`), usually `1/sqrt(head_dim_k)`.
    pub attn_scale: f32,
    /// Whether the output head reuses `token_embd.weight`.
    pub tied_output: bool,
    /// Experts, for mixture-of-experts models.
    pub moe: MoeConfig,
    /// Per-layer attention and feed-forward sizes, for architectures whose layers differ
    /// (gemma4); `None` when every layer has the sizes above.
    pub per_layer: Option<Vec<LayerDims>>,
    /// Layers from the first on that have their own KV cache (`n_layer_kv_from_start`); the
    /// others attend over an earlier layer's cache ([`ModelConfig::kv_layer`], gemma4's
    /// `attention.shared_kv_layers`).
    pub n_layer_kv: usize,
    /// Width of the per-layer token embeddings (`embedding_length_per_layer_input`, gemma4
    /// E2B/E4B); 0 when the model has none.
    pub n_embd_per_layer: usize,
}

/// The sizes of one layer when they differ between layers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LayerDims {
    pub n_head: usize,
    pub n_head_kv: usize,
    pub head_dim_k: usize,
    pub head_dim_v: usize,
    pub n_rot: usize,
    pub n_ff: usize,
}

impl ModelConfig {
    /// Reads and checks the config of the model in `file`, including the presence, shape and
    /// type of every tensor the architecture uses.
    pub fn from_gguf(file: &GgufFile) -> Result<ModelConfig, ConfigError> {
        let cfg = Self::from_metadata_and_embd(file)?;
        arch::plan(file, &cfg)?;
        Ok(cfg)
    }

    /// Keys only, plus the embedding tensor (which fixes the vocabulary size).
    pub(crate) fn from_metadata_and_embd(file: &GgufFile) -> Result<ModelConfig, ConfigError> {
        let meta = &file.metadata;
        let arch_name = meta
            .get_str_opt("general.architecture")
            .map_err(|e| bad_value("general.architecture", e))?
            .ok_or_else(|| ConfigError::MissingKey {
                key: "general.architecture".into(),
            })?;
        let arch =
            Arch::from_name(arch_name).ok_or_else(|| ConfigError::UnsupportedArchitecture {
                arch: arch_name.to_string(),
                supported: Arch::ALL.map(Arch::name).join(", "),
            })?;
        let k = Keys { meta, arch };

        let n_ctx_train = k.positive(&k.key("context_length"))?;
        let n_embd = k.positive(&k.key("embedding_length"))?;
        let n_layer = k.positive(&k.key("block_count"))?;
        let varying = arch == Arch::Gemma4;
        let n_ff = k.per_layer_first(&k.key("feed_forward_length"), n_layer, varying)?;
        if n_ff == 0 {
            return Err(ConfigError::Zero {
                key: k.key("feed_forward_length"),
            });
        }
        let head_key = k.key("attention.head_count");
        let n_head = k.per_layer_first(&head_key, n_layer, varying)?;
        if n_head == 0 {
            return Err(ConfigError::Zero { key: head_key });
        }
        let kv_key = k.key("attention.head_count_kv");
        let n_head_kv = match k.opt_per_layer(&kv_key, n_layer, varying)? {
            Some(0) => return Err(ConfigError::Zero { key: kv_key }),
            Some(v) => v,
            None => n_head,
        };
        if n_head % n_head_kv != 0 {
            return Err(ConfigError::KvHeadsNotDividing {
                key: kv_key,
                n_head,
                n_head_kv,
            });
        }
        let key_len = k.opt_usize(&k.key("attention.key_length"))?;
        let value_len = k.opt_usize(&k.key("attention.value_length"))?;
        if (key_len.is_none() || value_len.is_none()) && n_embd % n_head != 0 {
            return Err(ConfigError::EmbdNotDivisible {
                key: k.key("embedding_length"),
                n_embd,
                n_head,
            });
        }
        let head_dim_k = key_len.unwrap_or(n_embd / n_head);
        let head_dim_v = value_len.unwrap_or(n_embd / n_head);
        if head_dim_k == 0 {
            return Err(ConfigError::Zero {
                key: k.key("attention.key_length"),
            });
        }
        if head_dim_v == 0 {
            return Err(ConfigError::Zero {
                key: k.key("attention.value_length"),
            });
        }
        let rot_key = k.key("rope.dimension_count");
        let n_rot = k.opt_usize(&rot_key)?.unwrap_or(head_dim_k);
        if n_rot == 0 || n_rot % 2 != 0 || n_rot > head_dim_k {
            return Err(ConfigError::BadValue {
                key: rot_key,
                reason: format!("{n_rot} rotated dimensions with a head size of {head_dim_k}"),
            });
        }
        if arch == Arch::Llama && n_rot != head_dim_k {
            return Err(ConfigError::BadValue {
                key: rot_key,
                reason: format!("invalid n_rot {n_rot}, llama expects the head size {head_dim_k}"),
            });
        }
        let eps_key = k.key("attention.layer_norm_rms_epsilon");
        let rms_eps = k.f32(&eps_key)?.ok_or(ConfigError::MissingKey {
            key: eps_key.clone(),
        })?;
        if !(rms_eps.is_finite() && rms_eps >= 0.0) {
            return Err(ConfigError::BadValue {
                key: eps_key,
                reason: format!("{rms_eps} is not a finite non-negative number"),
            });
        }

        let rope = k.rope(arch, n_rot, n_ctx_train)?;

        // The vocabulary: rows of the embedding, checked against the tokenizer when present.
        let embd_name = "token_embd.weight";
        let embd = file
            .tensor(embd_name)
            .ok_or_else(|| ConfigError::MissingTensor {
                name: embd_name.into(),
            })?;
        if embd.shape.len() != 2 || embd.shape[0] != n_embd as u64 {
            return Err(ConfigError::TensorShape {
                name: embd_name.into(),
                expected: vec![n_embd as u64, embd.shape.get(1).copied().unwrap_or(0)],
                found: embd.shape.clone(),
            });
        }
        let n_vocab = usize::try_from(embd.shape[1]).map_err(|_| ConfigError::TensorShape {
            name: embd_name.into(),
            expected: vec![n_embd as u64, u32::MAX as u64],
            found: embd.shape.clone(),
        })?;
        // Token ids are u32; a larger vocabulary could not be addressed.
        if n_vocab > u32::MAX as usize {
            return Err(ConfigError::TensorShape {
                name: embd_name.into(),
                expected: vec![n_embd as u64, u32::MAX as u64],
                found: embd.shape.clone(),
            });
        }
        if let Some(Value::Array(tokens)) = meta.get("tokenizer.ggml.tokens") {
            if tokens.len() != n_vocab {
                return Err(ConfigError::VocabMismatch {
                    name: embd_name.into(),
                    n_tokens: tokens.len(),
                    n_rows: n_vocab,
                });
            }
        }

        let mut cfg = ModelConfig {
            arch,
            n_vocab,
            n_ctx_train,
            n_embd,
            n_layer,
            n_head,
            n_head_kv,
            head_dim_k,
            head_dim_v,
            n_ff,
            rms_eps,
            rope,
            sliding_window: 0,
            swa_layers: vec![false; n_layer],
            attn_softcap: None,
            final_softcap: None,
            attn_scale: 1.0 / (head_dim_k as f32).sqrt(),
            tied_output: file.tensor("output.weight").is_none(),
            moe: k.moe(n_ff)?,
            per_layer: None,
            n_layer_kv: n_layer,
            n_embd_per_layer: 0,
        };
        arch::configure(&k, &mut cfg)?;
        Ok(cfg)
    }

    /// The config as layer `il` sees it: the per-layer sizes in the scalar fields.
    pub fn for_layer(&self, il: usize) -> std::borrow::Cow<'_, ModelConfig> {
        match self.per_layer.as_ref().and_then(|d| d.get(il)) {
            None => std::borrow::Cow::Borrowed(self),
            Some(d) => {
                let mut c = self.clone();
                c.per_layer = None;
                c.n_head = d.n_head;
                c.n_head_kv = d.n_head_kv;
                c.head_dim_k = d.head_dim_k;
                c.head_dim_v = d.head_dim_v;
                c.rope.n_rot = d.n_rot;
                c.n_ff = d.n_ff;
                std::borrow::Cow::Owned(c)
            }
        }
    }

    /// The layer whose KV cache layer `il` attends over: itself, or for the layers without
    /// a cache of their own (from [`n_layer_kv`](Self::n_layer_kv) on) the last layer with a
    /// cache of the same kind (llama.cpp's `reuse` callback for gemma3n/gemma4: the layer
    /// before the last for sliding-window layers, the last for global ones).
    pub fn kv_layer(&self, il: usize) -> usize {
        if il < self.n_layer_kv {
            il
        } else {
            self.n_layer_kv - if self.is_swa(il) { 2 } else { 1 }
        }
    }

    /// (K width, V width) of the cache rows of every layer with a cache of its own.
    pub fn kv_widths(&self) -> Vec<(usize, usize)> {
        (0..self.n_layer_kv)
            .map(|il| {
                let c = self.for_layer(il);
                (c.n_embd_k_gqa(), c.n_embd_v_gqa())
            })
            .collect()
    }

    /// Query width (`n_head * head_dim_k`).
    pub fn n_embd_q(&self) -> usize {
        self.n_head * self.head_dim_k
    }

    /// Width of the K rows of one token (`n_head_kv * head_dim_k`).
    pub fn n_embd_k_gqa(&self) -> usize {
        self.n_head_kv * self.head_dim_k
    }

    /// Width of the V rows of one token (`n_head_kv * head_dim_v`).
    pub fn n_embd_v_gqa(&self) -> usize {
        self.n_head_kv * self.head_dim_v
    }

    /// Whether layer `il` uses the sliding window.
    pub fn is_swa(&self, il: usize) -> bool {
        self.sliding_window > 0 && self.swa_layers.get(il).copied().unwrap_or(false)
    }

    /// RoPE base and scale of layer `il` (`llama_model::get_rope_freq_base/scale`).
    pub fn rope_freq(&self, il: usize) -> (f32, f32) {
        if self.is_swa(il) {
            (self.rope.freq_base_swa, self.rope.freq_scale_swa)
        } else {
            (self.rope.freq_base, self.rope.freq_scale)
        }
    }
}

fn bad_value(key: &str, e: GgufError) -> ConfigError {
    ConfigError::BadValue {
        key: key.to_string(),
        reason: e.to_string(),
    }
}

/// Typed, prefixed access to the metadata of one architecture.
pub(crate) struct Keys<'a> {
    pub(crate) meta: &'a Metadata,
    pub(crate) arch: Arch,
}

impl Keys<'_> {
    /// `{arch}.{suffix}`.
    pub(crate) fn key(&self, suffix: &str) -> String {
        format!("{}.{}", self.arch.name(), suffix)
    }

    pub(crate) fn opt_usize(&self, key: &str) -> Result<Option<usize>, ConfigError> {
        let v = self.meta.get_u64_opt(key).map_err(|e| bad_value(key, e))?;
        v.map(|v| {
            usize::try_from(v).map_err(|_| ConfigError::BadValue {
                key: key.to_string(),
                reason: format!("{v} does not fit in usize"),
            })
        })
        .transpose()
    }

    pub(crate) fn positive(&self, key: &str) -> Result<usize, ConfigError> {
        match self.opt_usize(key)? {
            None => Err(ConfigError::MissingKey {
                key: key.to_string(),
            }),
            Some(0) => Err(ConfigError::Zero {
                key: key.to_string(),
            }),
            Some(v) => Ok(v),
        }
    }

    pub(crate) fn f32(&self, key: &str) -> Result<Option<f32>, ConfigError> {
        self.meta.get_f32_opt(key).map_err(|e| bad_value(key, e))
    }

    pub(crate) fn str(&self, key: &str) -> Result<Option<&str>, ConfigError> {
        self.meta.get_str_opt(key).map_err(|e| bad_value(key, e))
    }

    /// A count that may be stored per layer (an array of `n_layer` values): every layer's
    /// value, `None` when the key is absent.
    pub(crate) fn opt_layer_values(
        &self,
        key: &str,
        n_layer: usize,
    ) -> Result<Option<Vec<usize>>, ConfigError> {
        match self.meta.get(key) {
            None => Ok(None),
            Some(Value::Array(_)) => {
                let vals = self
                    .meta
                    .get_int_array(key)
                    .map_err(|e| bad_value(key, e))?;
                if vals.len() != n_layer {
                    return Err(ConfigError::PerLayer {
                        key: key.to_string(),
                        reason: format!("{} values for {n_layer} layers", vals.len()),
                    });
                }
                vals.iter()
                    .map(|&v| {
                        usize::try_from(v).map_err(|_| ConfigError::BadValue {
                            key: key.to_string(),
                            reason: format!("{v} is not a valid count"),
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()
                    .map(Some)
            }
            Some(_) => Ok(self.opt_usize(key)?.map(|v| vec![v; n_layer])),
        }
    }

    /// The first layer's value of a per-layer count; values differing between layers are an
    /// error unless the architecture has per-layer sizes (`varying`).
    fn opt_per_layer(
        &self,
        key: &str,
        n_layer: usize,
        varying: bool,
    ) -> Result<Option<usize>, ConfigError> {
        let Some(vals) = self.opt_layer_values(key, n_layer)? else {
            return Ok(None);
        };
        let first = vals[0];
        if !varying && vals.iter().any(|&v| v != first) {
            return Err(ConfigError::PerLayer {
                key: key.to_string(),
                reason: "values differing between layers are not supported".into(),
            });
        }
        if vals.contains(&0) {
            return Err(ConfigError::Zero {
                key: key.to_string(),
            });
        }
        Ok(Some(first))
    }

    fn per_layer_first(
        &self,
        key: &str,
        n_layer: usize,
        varying: bool,
    ) -> Result<usize, ConfigError> {
        self.opt_per_layer(key, n_layer, varying)?
            .ok_or_else(|| ConfigError::MissingKey {
                key: key.to_string(),
            })
    }

    /// `{arch}.attention.sliding_window_pattern`: an integer period or a per-layer bool array
    /// (`llama_model_base::load_swa_pattern`); `default_period` when absent.
    pub(crate) fn swa_pattern(
        &self,
        n_layer: usize,
        default_period: usize,
    ) -> Result<Vec<bool>, ConfigError> {
        let key = self.key("attention.sliding_window_pattern");
        let period = match self.meta.get(&key) {
            Some(Value::Array(Array::Bool(v))) => {
                if v.len() != n_layer {
                    return Err(ConfigError::PerLayer {
                        key,
                        reason: format!("{} values for {n_layer} layers", v.len()),
                    });
                }
                return Ok(v.clone());
            }
            Some(_) => self.opt_usize(&key)?.unwrap_or(default_period),
            None => default_period,
        };
        // llama_hparams::set_swa_pattern (dense_first = false): every `period`-th layer is dense.
        Ok((0..n_layer)
            .map(|il| period == 0 || il % period < period - 1)
            .collect())
    }

    /// The expert hyperparameters (`llama_model_base::load_hparams`): `expert_count`,
    /// `expert_used_count` (1..=count), `expert_feed_forward_length` (default `n_ff`), the gating
    /// function and weight scale. Every architecture hearth runs renormalizes the selected
    /// weights (`norm_w = true` in their graphs).
    fn moe(&self, n_ff: usize) -> Result<MoeConfig, ConfigError> {
        let count_key = self.key("expert_count");
        let n_expert = self.opt_usize(&count_key)?.unwrap_or(0);
        if n_expert == 0 {
            return Ok(MoeConfig::dense());
        }
        // llama.cpp's LLAMA_MAX_EXPERTS.
        if n_expert > 512 {
            return Err(ConfigError::BadValue {
                key: count_key,
                reason: format!("{n_expert} experts (at most 512)"),
            });
        }
        let used_key = self.key("expert_used_count");
        let n_expert_used = self.positive(&used_key)?;
        if n_expert_used > n_expert {
            return Err(ConfigError::BadValue {
                key: used_key,
                reason: format!("{n_expert_used} used of {n_expert} experts"),
            });
        }
        let ff_key = self.key("expert_feed_forward_length");
        let n_ff_exp = match self.opt_usize(&ff_key)? {
            Some(0) => return Err(ConfigError::Zero { key: ff_key }),
            Some(v) => v,
            None => n_ff,
        };
        let gating_key = self.key("expert_gating_func");
        let gating = match self.opt_usize(&gating_key)? {
            None | Some(0) | Some(1) => ExpertGating::Softmax,
            Some(2) => ExpertGating::Sigmoid,
            Some(3) => ExpertGating::SoftmaxWeight,
            Some(v) => {
                return Err(ConfigError::BadValue {
                    key: gating_key,
                    reason: format!("unknown expert gating function {v}"),
                })
            }
        };
        let weights_scale = self.f32(&self.key("expert_weights_scale"))?.unwrap_or(0.0);
        if !weights_scale.is_finite() {
            return Err(ConfigError::BadValue {
                key: self.key("expert_weights_scale"),
                reason: format!("{weights_scale}"),
            });
        }
        Ok(MoeConfig {
            n_expert,
            n_expert_used,
            n_ff_exp,
            gating,
            norm_weights: true,
            weights_scale,
        })
    }

    fn rope(
        &self,
        arch: Arch,
        n_rot: usize,
        n_ctx_train: usize,
    ) -> Result<RopeConfig, ConfigError> {
        let freq_base = self.f32(&self.key("rope.freq_base"))?.unwrap_or(10000.0);
        let type_key = self.key("rope.scaling.type");
        let scaling = match self.str(&type_key)?.unwrap_or("linear") {
            "none" => RopeScaling::None,
            "linear" => RopeScaling::Linear,
            "yarn" => RopeScaling::Yarn,
            "longrope" => RopeScaling::LongRope,
            other => {
                return Err(ConfigError::BadValue {
                    key: type_key,
                    reason: format!("unknown RoPE scaling type {other:?}"),
                })
            }
        };
        let mut factor = self.f32(&self.key("rope.scaling.factor"))?;
        if factor.is_none() {
            factor = self.f32(&self.key("rope.scale_linear"))?;
        }
        let factor = factor.unwrap_or(0.0);
        let mut freq_scale = if factor == 0.0 { 1.0 } else { 1.0 / factor };
        if scaling == RopeScaling::None {
            freq_scale = 1.0;
        }
        if !(freq_base.is_finite() && freq_base > 0.0 && freq_scale.is_finite() && freq_scale > 0.0)
        {
            return Err(ConfigError::BadValue {
                key: self.key("rope.freq_base"),
                reason: format!("freq_base {freq_base}, freq_scale {freq_scale}"),
            });
        }
        let n_ctx_orig = self
            .opt_usize(&self.key("rope.scaling.original_context_length"))?
            .filter(|&v| v != 0)
            .unwrap_or(n_ctx_train);
        let rope_attn_factor = self
            .f32(&self.key("rope.scaling.attn_factor"))?
            .unwrap_or(1.0);
        let yarn_log_mul = self
            .f32(&self.key("rope.scaling.yarn_log_multiplier"))?
            .unwrap_or(0.0);
        let ext_factor_key = self
            .f32(&self.key("rope.scaling.yarn_ext_factor"))?
            .unwrap_or(-1.0);
        let mut attn_factor = self
            .f32(&self.key("rope.scaling.yarn_attn_factor"))?
            .unwrap_or(1.0);
        let beta_fast = self
            .f32(&self.key("rope.scaling.yarn_beta_fast"))?
            .unwrap_or(32.0);
        let beta_slow = self
            .f32(&self.key("rope.scaling.yarn_beta_slow"))?
            .unwrap_or(1.0);
        // llama_context's resolution of the YaRN parameters.
        let ext_factor = if ext_factor_key < 0.0 {
            if scaling == RopeScaling::Yarn {
                1.0
            } else {
                0.0
            }
        } else {
            ext_factor_key
        };
        if ext_factor != 0.0 {
            let get_mscale = |scale: f32, mscale: f32| {
                if scale <= 1.0 {
                    1.0
                } else {
                    0.1 * mscale * scale.ln() + 1.0
                }
            };
            let factor = 1.0 / freq_scale;
            attn_factor = if yarn_log_mul != 0.0 {
                get_mscale(factor, 1.0) / get_mscale(factor, yarn_log_mul)
            } else {
                get_mscale(factor, 1.0)
            };
            attn_factor *= 1.0 / (1.0 + 0.1 * factor.ln());
        }
        attn_factor *= rope_attn_factor;
        Ok(RopeConfig {
            kind: arch.rope_kind(),
            n_rot,
            freq_base,
            freq_scale,
            freq_base_swa: 10000.0,
            freq_scale_swa: 1.0,
            scaling,
            n_ctx_orig,
            ext_factor,
            attn_factor,
            beta_fast,
            beta_slow,
        })
    }
}

/// Whether a weight of type `ty` can be multiplied (dequantized, and its activation type
/// quantized).
pub(crate) fn matmul_supported(ty: GgmlType) -> bool {
    hearth_kernels::quant::supports_dequantize(ty)
        && crate::ops::vec_dot_type(ty).is_some_and(hearth_kernels::quant::supports_quantize)
}
