//! Which type each tensor gets: llama.cpp's `llama_tensor_get_type` and the
//! rules around it (src/llama-quant.cpp), reproduced decision for decision.

use hearth_gguf::{GgmlType, Metadata, TensorInfo};
use regex::Regex;

use crate::error::QuantizeError;
use crate::FileType;

/// What the type choice needs to know about the model (`llama_hparams`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelInfo {
    /// `general.architecture`.
    pub arch: String,
    /// `{arch}.block_count`.
    pub n_layer: u32,
    /// Heads / KV heads of layer 0 (`hparams.n_gqa()`), 0 without KV heads.
    pub n_gqa: u32,
    /// `{arch}.expert_count` (0 for dense models).
    pub n_expert: u32,
    /// llama.cpp's `LLM_TYPE_70B` (80-layer llama with grouped-query attention).
    pub is_70b: bool,
}

impl ModelInfo {
    /// Reads the hyper-parameters from GGUF metadata.
    pub fn from_metadata(md: &Metadata) -> Result<ModelInfo, QuantizeError> {
        let arch = md.architecture()?.to_string();
        let n_layer = md.get_u32(&format!("{arch}.block_count"))?;
        let first = |key: &str| -> Result<Option<u32>, QuantizeError> {
            if md.get(key).is_none() {
                return Ok(None);
            }
            if let Ok(a) = md.get_int_array(key) {
                let v = a.first().copied().unwrap_or(0);
                return Ok(Some(u32::try_from(v).unwrap_or(0)));
            }
            Ok(Some(md.get_u32(key)?))
        };
        let n_head = first(&format!("{arch}.attention.head_count"))?.unwrap_or(0);
        // llama.cpp: head_count_kv defaults to head_count.
        let n_head_kv = first(&format!("{arch}.attention.head_count_kv"))?.unwrap_or(n_head);
        let n_gqa = n_head.checked_div(n_head_kv).unwrap_or(0);
        let n_expert = md
            .get_u32_opt(&format!("{arch}.expert_count"))?
            .unwrap_or(0);
        let is_70b = arch == "llama" && n_layer == 80 && n_head != n_head_kv;
        Ok(ModelInfo {
            arch,
            n_layer,
            n_gqa,
            n_expert,
            is_70b,
        })
    }
}

/// The choices of a `llama-quantize` run that decide tensor types.
#[derive(Clone, Debug)]
pub struct TypeOptions {
    pub ftype: FileType,
    /// `--output-tensor-type`.
    pub output_tensor_type: Option<GgmlType>,
    /// `--token-embedding-type`.
    pub token_embedding_type: Option<GgmlType>,
    /// `--tensor-type REGEX=TYPE`, first match wins.
    pub tensor_types: Vec<(Regex, GgmlType)>,
    /// `--pure`: no mixes, every quantizable tensor gets the default type.
    pub pure: bool,
    /// `--leave-output-tensor`.
    pub leave_output_tensor: bool,
    /// Whether an importance matrix is given (changes a few choices).
    pub has_imatrix: bool,
}

impl TypeOptions {
    /// Options for `ftype` with nothing else set.
    pub fn new(ftype: FileType) -> TypeOptions {
        TypeOptions {
            ftype,
            output_tensor_type: None,
            token_embedding_type: None,
            tensor_types: Vec::new(),
            pure: false,
            leave_output_tensor: false,
            has_imatrix: false,
        }
    }
}

/// Parses `--tensor-type NAME=TYPE` as llama-quantize does: the name is
/// lower-cased and used as a regular expression searched in tensor names.
pub fn parse_tensor_type(arg: &str) -> Result<(Regex, GgmlType), QuantizeError> {
    let bad = |why: &str| QuantizeError::BadTensorType {
        arg: arg.to_string(),
        why: why.to_string(),
    };
    let (name, ty) = arg
        .split_once('=')
        .ok_or_else(|| bad("expected NAME=TYPE"))?;
    if name.is_empty() {
        return Err(bad("missing tensor name"));
    }
    if ty.is_empty() {
        return Err(bad("missing quantization type"));
    }
    let ty = GgmlType::from_name(ty).ok_or_else(|| bad("unknown ggml type"))?;
    let re = regex::RegexBuilder::new(&name.to_lowercase())
        .size_limit(1 << 20)
        .dfa_size_limit(1 << 20)
        .nest_limit(64)
        .build()
        .map_err(|e| bad(&e.to_string()))?;
    Ok((re, ty))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Category {
    TokenEmbd,
    AttentionQ,
    AttentionV,
    AttentionK,
    AttentionQkv,
    AttentionKvB,
    AttentionOutput,
    FfnUp,
    FfnGate,
    FfnDown,
    Output,
    Other,
}

fn category(name: &str) -> Category {
    use Category as C;
    if name == "output.weight" {
        return C::Output;
    }
    if is_token_embd(name) {
        return C::TokenEmbd;
    }
    for (pat, c) in [
        ("attn_qkv.weight", C::AttentionQkv),
        ("attn_kv_b.weight", C::AttentionKvB),
        ("attn_v.weight", C::AttentionV),
        ("attn_k.weight", C::AttentionK),
        ("attn_q.weight", C::AttentionQ),
        ("attn_output.weight", C::AttentionOutput),
        ("ffn_up", C::FfnUp),
        ("ffn_gate", C::FfnGate),
        ("ffn_down", C::FfnDown),
    ] {
        if name.contains(pat) {
            return c;
        }
    }
    C::Other
}

fn is_token_embd(name: &str) -> bool {
    name == "token_embd.weight" || name == "per_layer_token_embd.weight"
}

fn is_attn_v(c: Category) -> bool {
    matches!(
        c,
        Category::AttentionV | Category::AttentionQkv | Category::AttentionKvB
    )
}

/// Number of dimensions as ggml counts them (trailing 1s dropped).
pub(crate) fn n_dims(shape: &[u64]) -> usize {
    shape.iter().rposition(|&d| d > 1).map_or(1, |i| i + 1)
}

/// `sscanf(name, "blk.%d.", &layer)`: the layer number of a block tensor.
pub(crate) fn layer_of(name: &str) -> Option<i64> {
    let rest = name.strip_prefix("blk.")?;
    let rest = rest.trim_start();
    let (neg, digits) = match rest.as_bytes().first() {
        Some(b'-') => (true, &rest[1..]),
        Some(b'+') => (false, &rest[1..]),
        _ => (false, rest),
    };
    let end = digits
        .bytes()
        .position(|b| !b.is_ascii_digit())
        .unwrap_or(digits.len());
    if end == 0 {
        return None;
    }
    let v: i64 = digits[..end]
        .parse()
        .unwrap_or(i64::MAX)
        .min(i64::from(i32::MAX));
    Some(if neg { -v } else { v })
}

/// The order llama-quantize writes tensors in (`weight_name_comparer`):
/// non-block tensors first, then by layer, then by name.
pub fn sort_like_llama_cpp(tensors: &mut [TensorInfo]) {
    tensors.sort_by(|a, b| {
        let la = layer_of(&a.name).unwrap_or(-1);
        let lb = layer_of(&b.name).unwrap_or(-1);
        la.cmp(&lb)
            .then_with(|| a.name.as_bytes().cmp(b.name.as_bytes()))
    });
}

/// `tensor_allows_quantization` for the architectures hearth knows.
pub fn allows_quantization(name: &str, shape: &[u64], opts: &TypeOptions) -> bool {
    if n_dims(shape) < 2 || !name.ends_with("weight") {
        return false;
    }
    if opts.leave_output_tensor && name == "output.weight" {
        return false;
    }
    const NEVER: &[&str] = &[
        "_norm.weight",
        "ffn_gate_inp.weight",
        "ffn_gate_tid2eid.weight",
        "altup",
        "laurel",
        "per_layer_model_proj",
        "ssm_conv1d",
        "shortconv.conv.weight",
        "indexer.k_proj.weight",
        "indexer.q_proj.weight",
        "time_mix_first.weight",
        "time_mix_w0.weight",
        "time_mix_w1.weight",
        "time_mix_w2.weight",
        "time_mix_v0.weight",
        "time_mix_v1.weight",
        "time_mix_v2.weight",
        "time_mix_a0.weight",
        "time_mix_a1.weight",
        "time_mix_a2.weight",
        "time_mix_g1.weight",
        "time_mix_g2.weight",
        "time_mix_decay_w1.weight",
        "time_mix_decay_w2.weight",
        "time_mix_lerp_fused.weight",
        "attn_rel_b.weight",
        ".position_embd",
        "sam.pos_embd",
        "sam.neck.",
        "sam.net_",
        ".rel_pos",
        ".patch_embd",
        ".patch_merger",
        "a.rvq.codebook",
        "mm.a.code_embd",
    ];
    if NEVER.iter().any(|p| name.contains(p)) {
        return false;
    }
    // LLM_TENSOR_POS_EMBD / LLM_TENSOR_TOKEN_TYPES.
    name != "position_embd.weight" && name != "token_types.weight"
}

/// Whether a tensor of this type needs an importance matrix
/// (`tensor_requires_imatrix`).
pub fn requires_imatrix(name: &str, ty: GgmlType, ftype: FileType) -> bool {
    if is_token_embd(name) || name == "output.weight" {
        return false;
    }
    use GgmlType as T;
    match ty {
        T::IQ3_XXS | T::IQ2_XXS | T::IQ2_XS | T::IQ2_S | T::IQ1_M | T::IQ1_S => true,
        T::Q2_K => ftype == FileType::Q2_K_S,
        _ => false,
    }
}

/// One tensor's decision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorPlan {
    pub name: String,
    pub shape: Vec<u64>,
    pub src_type: GgmlType,
    pub dst_type: GgmlType,
    /// The planned type did not fit the row length and a fallback was used.
    pub fallback: bool,
}

/// The running state of `quantize_state_impl`.
struct State<'a> {
    info: &'a ModelInfo,
    opts: &'a TypeOptions,
    n_attention_wv: i64,
    n_ffn: i64,
    i_attention_wv: i64,
    i_ffn_down: i64,
    i_ffn_gate: i64,
    i_ffn_up: i64,
    has_tied_embeddings: bool,
}

fn use_more_bits(i_layer: i64, n_layers: i64) -> bool {
    i_layer < n_layers / 8 || i_layer >= 7 * n_layers / 8 || (i_layer - n_layers / 8) % 3 == 2
}

impl State<'_> {
    fn layer_info(&self, counter: i64, name: &str) -> Result<(i64, i64), QuantizeError> {
        let n_layer = self.n_ffn;
        if self.info.n_expert.max(1) > 1 {
            let l = layer_of(name).ok_or_else(|| QuantizeError::NoLayer {
                name: name.to_string(),
            })?;
            if l < 0 || l >= n_layer {
                return Err(QuantizeError::BadLayer {
                    name: name.to_string(),
                    layer: l,
                    n_layer,
                });
            }
            return Ok((l, n_layer));
        }
        Ok((counter, n_layer))
    }

    /// `llama_tensor_get_type_impl`.
    fn mix_type(
        &mut self,
        mut new_type: GgmlType,
        name: &str,
        ne0: u64,
        ne2: u64,
        cat: Category,
    ) -> Result<GgmlType, QuantizeError> {
        use FileType as F;
        use GgmlType as T;
        let ftype = self.opts.ftype;
        let arch = self.info.arch.as_str();
        let n_gqa = self.info.n_gqa;
        let n_expert = self.info.n_expert;
        let falcon = arch == "falcon";
        let iq_low = matches!(
            ftype,
            F::IQ2_XXS | F::IQ2_XS | F::IQ1_S | F::IQ2_S | F::IQ2_M | F::IQ1_M
        );
        let iq2s_m = matches!(ftype, F::IQ2_S | F::IQ2_M);

        if cat == Category::Output || (self.has_tied_embeddings && cat == Category::TokenEmbd) {
            if let Some(t) = self.opts.output_tensor_type {
                new_type = t;
            } else {
                let qk = new_type.block_size() as u64;
                if ftype == F::MXFP4_MOE || falcon || !ne0.is_multiple_of(qk) {
                    new_type = T::Q8_0;
                } else if matches!(
                    ftype,
                    F::IQ2_XXS | F::IQ2_XS | F::IQ3_XXS | F::IQ1_S | F::IQ2_S | F::IQ2_M | F::IQ1_M
                ) {
                    new_type = T::Q5_K;
                } else if new_type != T::Q8_0 {
                    new_type = T::Q6_K;
                }
            }
        } else if ftype == F::MXFP4_MOE {
            new_type = if ne2 > 1 { T::MXFP4 } else { T::Q8_0 };
        } else if cat == Category::TokenEmbd {
            if let Some(t) = self.opts.token_embedding_type {
                new_type = t;
            } else if matches!(ftype, F::IQ2_XXS | F::IQ2_XS | F::IQ1_S | F::IQ1_M) {
                new_type = T::Q2_K;
            } else if matches!(ftype, F::IQ2_S | F::IQ2_M | F::IQ3_XXS) {
                new_type = T::IQ3_S;
            } else if matches!(ftype, F::TQ1_0 | F::TQ2_0) {
                new_type = T::Q4_K;
            }
        } else if iq_low {
            if is_attn_v(cat) {
                new_type = if n_gqa >= 4 || n_expert >= 4 {
                    T::Q4_K
                } else if iq2s_m {
                    T::IQ3_S
                } else {
                    T::Q2_K
                };
                self.i_attention_wv += 1;
            } else if n_expert == 8 && cat == Category::AttentionK {
                new_type = T::Q4_K;
            } else if cat == Category::FfnDown {
                if self.i_ffn_down < self.n_ffn / 8 {
                    new_type = if iq2s_m { T::IQ3_S } else { T::Q2_K };
                }
                self.i_ffn_down += 1;
            } else if cat == Category::AttentionOutput {
                if n_expert == 8 {
                    new_type = T::Q5_K;
                } else if matches!(ftype, F::IQ1_S | F::IQ1_M) {
                    new_type = T::IQ2_XXS;
                } else if iq2s_m {
                    new_type = T::IQ3_S;
                }
            }
        } else if is_attn_v(cat) {
            let (i, n) = (self.i_attention_wv, self.n_attention_wv);
            if ftype == F::Q2_K {
                new_type = if n_gqa >= 4 { T::Q4_K } else { T::Q3_K };
            } else if ftype == F::Q2_K_S && n_gqa >= 4 {
                new_type = T::Q4_K;
            } else if ftype == F::IQ3_XXS {
                new_type = if n_gqa >= 4 {
                    T::Q4_K
                } else if !self.opts.has_imatrix {
                    T::IQ3_S
                } else {
                    T::IQ3_XXS
                };
            } else if (matches!(ftype, F::IQ3_XS | F::IQ3_S) && n_gqa >= 4) || ftype == F::IQ3_M {
                new_type = T::Q4_K;
            } else if ftype == F::Q3_K_M {
                new_type = if i < 2 { T::Q5_K } else { T::Q4_K };
            } else if ftype == F::Q3_K_L || (matches!(ftype, F::IQ4_NL | F::IQ4_XS) && n_gqa >= 4) {
                new_type = T::Q5_K;
            } else if matches!(ftype, F::Q4_K_M | F::Q5_K_M) && use_more_bits(i, n) {
                new_type = T::Q6_K;
            } else if ftype == F::Q4_K_S && i < 4 {
                new_type = T::Q5_K;
            }
            if self.info.is_70b && matches!(new_type, T::Q3_K | T::Q4_K) {
                new_type = T::Q5_K;
            }
            if n_expert == 8 {
                new_type = T::Q8_0;
            }
            self.i_attention_wv += 1;
        } else if cat == Category::AttentionK {
            if n_expert == 8 {
                new_type = T::Q8_0;
            } else if ftype == F::IQ3_XS {
                new_type = T::IQ3_XXS;
            } else if ftype == F::IQ3_XXS {
                new_type = T::IQ2_S;
            }
        } else if cat == Category::AttentionQ {
            if ftype == F::IQ3_XS {
                new_type = T::IQ3_XXS;
            } else if ftype == F::IQ3_XXS {
                new_type = T::IQ2_S;
            }
        } else if cat == Category::FfnDown {
            let (i_layer, n_layer) = self.layer_info(self.i_ffn_down, name)?;
            let has_imatrix = self.opts.has_imatrix;
            if ftype == F::Q2_K {
                new_type = T::Q3_K;
            } else if ftype == F::Q2_K_S {
                if i_layer < n_layer / 8 {
                    new_type = T::Q4_K;
                }
            } else if ftype == F::IQ3_XXS && !has_imatrix {
                new_type = if i_layer < n_layer / 8 {
                    T::Q4_K
                } else {
                    T::Q3_K
                };
            } else if ftype == F::Q3_K_M {
                new_type = if i_layer < n_layer / 16 {
                    T::Q5_K
                } else if !falcon || use_more_bits(i_layer, n_layer) {
                    T::Q4_K
                } else {
                    T::Q3_K
                };
            } else if ftype == F::IQ3_M
                && (i_layer < n_layer / 8 || (n_expert == 8 && use_more_bits(i_layer, n_layer)))
            {
                new_type = T::Q4_K;
            } else if ftype == F::Q3_K_L {
                new_type = if falcon { T::Q4_K } else { T::Q5_K };
            } else if ftype == F::Q4_K_M {
                if falcon {
                    new_type = if i_layer < n_layer / 16 {
                        T::Q6_K
                    } else if use_more_bits(i_layer, n_layer) {
                        T::Q5_K
                    } else {
                        T::Q4_K
                    };
                } else if use_more_bits(i_layer, n_layer) {
                    new_type = T::Q6_K;
                }
            } else if i_layer < n_layer / 8
                && matches!(ftype, F::IQ4_NL | F::IQ4_XS)
                && !has_imatrix
            {
                new_type = T::Q5_K;
            } else if ftype == F::Q5_K_M && use_more_bits(i_layer, n_layer) {
                new_type = T::Q6_K;
            } else if ftype == F::Q4_K_S && !falcon && i_layer < n_layer / 8 {
                new_type = T::Q5_K;
            } else if matches!(ftype, F::Q4_0 | F::Q5_0) && has_imatrix && i_layer < n_layer / 8 {
                new_type = if ftype == F::Q4_0 { T::Q4_1 } else { T::Q5_1 };
            }
            self.i_ffn_down += 1;
        } else if cat == Category::AttentionOutput {
            if !falcon {
                if n_expert == 8 {
                    if matches!(
                        ftype,
                        F::Q2_K
                            | F::IQ3_XS
                            | F::IQ3_XXS
                            | F::Q3_K_S
                            | F::Q3_K_M
                            | F::IQ4_NL
                            | F::Q4_K_S
                            | F::Q4_K_M
                            | F::IQ3_S
                            | F::IQ3_M
                            | F::IQ4_XS
                    ) {
                        new_type = T::Q5_K;
                    }
                } else {
                    match ftype {
                        F::Q2_K => new_type = T::Q3_K,
                        F::IQ3_XXS => new_type = T::IQ3_S,
                        F::Q3_K_M => new_type = T::Q4_K,
                        F::Q3_K_L => new_type = T::Q5_K,
                        F::IQ3_M => new_type = T::Q4_K,
                        _ => {}
                    }
                }
            } else if ftype == F::Q3_K_L {
                new_type = T::Q4_K;
            }
        } else if cat == Category::AttentionQkv {
            match ftype {
                F::Q3_K_M | F::Q3_K_L | F::IQ3_M => new_type = T::Q4_K,
                F::Q4_K_M => new_type = T::Q5_K,
                F::Q5_K_M => new_type = T::Q6_K,
                _ => {}
            }
        } else if cat == Category::FfnGate || cat == Category::FfnUp {
            let counter = if cat == Category::FfnGate {
                self.i_ffn_gate
            } else {
                self.i_ffn_up
            };
            let (i_layer, n_layer) = self.layer_info(counter, name)?;
            if ftype == F::IQ3_XS && i_layer >= n_layer / 8 && i_layer < 7 * n_layer / 8 {
                new_type = T::IQ3_XXS;
            }
            if cat == Category::FfnGate {
                self.i_ffn_gate += 1;
            } else {
                self.i_ffn_up += 1;
            }
        }
        Ok(new_type)
    }
}

/// `tensor_type_fallback`: a type whose block fits the row length.
fn fallback(ne0: u64, target: GgmlType) -> Result<(GgmlType, bool), QuantizeError> {
    use GgmlType as T;
    let qk = target.block_size() as u64;
    if ne0.is_multiple_of(qk) {
        return Ok((target, false));
    }
    let mut ret = match target {
        T::IQ1_S
        | T::IQ1_M
        | T::IQ2_XXS
        | T::IQ2_XS
        | T::IQ2_S
        | T::IQ3_XXS
        | T::IQ3_S
        | T::IQ4_XS => T::IQ4_NL,
        T::Q2_K | T::Q3_K | T::TQ1_0 | T::TQ2_0 => T::Q4_0,
        T::Q4_K => T::Q5_0,
        T::Q5_K => T::Q5_1,
        T::Q6_K => T::Q8_0,
        _ if qk <= 32 => target,
        _ => return Err(QuantizeError::NoFallback { ty: target }),
    };
    if !ne0.is_multiple_of(ret.block_size() as u64) {
        ret = T::F16;
    }
    Ok((ret, true))
}

/// Decides the type of every tensor, in the given order (use
/// [`sort_like_llama_cpp`] first to match llama-quantize's counters).
pub fn plan_types(
    tensors: &[TensorInfo],
    info: &ModelInfo,
    opts: &TypeOptions,
) -> Result<Vec<TensorPlan>, QuantizeError> {
    let mut st = State {
        info,
        opts,
        n_attention_wv: 0,
        n_ffn: i64::from(info.n_layer),
        i_attention_wv: 0,
        i_ffn_down: 0,
        i_ffn_gate: 0,
        i_ffn_up: 0,
        has_tied_embeddings: true,
    };
    for t in tensors {
        let c = category(&t.name);
        if is_attn_v(c) {
            st.n_attention_wv += 1;
        }
        if c == Category::Output {
            st.has_tied_embeddings = false;
        }
    }
    let default_type = opts.ftype.default_type();
    let mut out = Vec::with_capacity(tensors.len());
    for t in tensors {
        let mut plan = TensorPlan {
            name: t.name.clone(),
            shape: t.shape.clone(),
            src_type: t.ty,
            dst_type: t.ty,
            fallback: false,
        };
        if allows_quantization(&t.name, &t.shape, opts) {
            let cat = category(&t.name);
            let ne0 = t.shape[0];
            let ne2 = t.shape.get(2).copied().unwrap_or(1);
            let matches = |name: &str| -> Option<GgmlType> {
                opts.tensor_types
                    .iter()
                    .find(|(re, _)| re.is_match(name))
                    .map(|&(_, ty)| ty)
            };
            plan.dst_type = if let (Some(te), Category::TokenEmbd, false) = (
                opts.token_embedding_type,
                cat,
                t.name == "per_layer_token_embd.weight" && matches(&t.name).is_some(),
            ) {
                te
            } else if let (Some(ot), Category::Output) = (opts.output_tensor_type, cat) {
                ot
            } else if default_type.is_quantized() {
                let mut ty = default_type;
                let manual = matches(&t.name);
                if let Some(m) = manual {
                    ty = m;
                } else if !opts.pure {
                    ty = st.mix_type(ty, &t.name, ne0, ne2, cat)?;
                }
                let (ty, fb) = fallback(ne0, ty)?;
                plan.fallback = fb;
                ty
            } else {
                default_type
            };
        }
        out.push(plan);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(name: &str, shape: &[u64]) -> TensorInfo {
        TensorInfo {
            name: name.into(),
            shape: shape.to_vec(),
            ty: GgmlType::F16,
            offset: 0,
            size: 0,
        }
    }

    #[test]
    fn layer_parsing_follows_sscanf() {
        assert_eq!(layer_of("blk.12.attn_q.weight"), Some(12));
        assert_eq!(layer_of("blk.x.attn_q.weight"), None);
        assert_eq!(layer_of("output.weight"), None);
        assert_eq!(layer_of("blk.-3.a"), Some(-3));
        assert_eq!(
            layer_of("blk.99999999999999999999.a"),
            Some(i64::from(i32::MAX))
        );
    }

    #[test]
    fn order_puts_globals_first_then_layers_numerically() {
        let mut v = vec![
            t("blk.10.a.weight", &[32, 32]),
            t("blk.2.b.weight", &[32, 32]),
            t("token_embd.weight", &[32, 32]),
            t("blk.2.a.weight", &[32, 32]),
            t("output.weight", &[32, 32]),
        ];
        sort_like_llama_cpp(&mut v);
        let names: Vec<_> = v.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "output.weight",
                "token_embd.weight",
                "blk.2.a.weight",
                "blk.2.b.weight",
                "blk.10.a.weight"
            ]
        );
    }

    #[test]
    fn q4_k_falls_back_to_q5_0_on_640_wide_rows() {
        // Gemma 3 270M: n_embd 640 is not a multiple of 256.
        assert_eq!(
            fallback(640, GgmlType::Q4_K).unwrap(),
            (GgmlType::Q5_0, true)
        );
        assert_eq!(
            fallback(640, GgmlType::Q6_K).unwrap(),
            (GgmlType::Q8_0, true)
        );
        assert_eq!(fallback(48, GgmlType::Q4_0).unwrap(), (GgmlType::F16, true));
        assert_eq!(
            fallback(512, GgmlType::Q4_K).unwrap(),
            (GgmlType::Q4_K, false)
        );
    }

    #[test]
    fn tensor_type_parsing_rejects_bad_input_without_panicking() {
        assert!(parse_tensor_type("attn_q=q8_0").is_ok());
        assert!(parse_tensor_type("ATTN_Q=Q8_0")
            .unwrap()
            .0
            .is_match("blk.0.attn_q.weight"));
        for bad in [
            "attn_q",
            "=q8_0",
            "attn_q=",
            "attn_q=q9_9",
            "(=q8_0",
            "a{99999999}=q8_0",
        ] {
            assert!(parse_tensor_type(bad).is_err(), "{bad}");
        }
    }
}
