//! What the weights of a GGUF file cost: bytes held in memory, and bytes read per token, from
//! the tensor table alone (nothing is loaded).

use hearth_gguf::{GgmlType, GgufFile};
use serde::Serialize;

/// Bytes of one ggml type read per token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TypeBytes {
    /// The ggml type name (`Q4_K`).
    #[serde(rename = "type")]
    pub name: &'static str,
    #[serde(skip)]
    pub ty: GgmlType,
    /// Read by one decode step (layer matrices and the output projection).
    pub decode_bytes: u64,
    /// Read per prompt token of a prefill (the layer matrices; the output projection runs once
    /// per batch, for the last token only).
    pub prefill_bytes: u64,
}

/// The weights of a model file.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct WeightsInfo {
    /// Size of the file.
    pub file_bytes: u64,
    /// Metadata and tensor table (the vocabulary lives here), before the tensor data.
    pub header_bytes: u64,
    /// Tensor data (the sum of the tensors' sizes).
    pub tensor_bytes: u64,
    /// Number of weights.
    pub n_params: u64,
    /// The output projection reuses `token_embd.weight`.
    pub tied_output: bool,
    /// `token_embd.weight`.
    pub token_embd_bytes: u64,
    /// The output projection (`output.weight`, or `token_embd.weight` when tied).
    pub output_bytes: u64,
    /// Experts `(evaluated per token, total)` of a mixture-of-experts model.
    pub experts: Option<(u64, u64)>,
    /// Weight bytes one decode step reads: every layer matrix (the used share of the experts)
    /// and the output projection; the token embedding contributes one row unless tied.
    pub decode_read_bytes: u64,
    /// Weight bytes each prompt token costs in a prefill (layer matrices only).
    pub prefill_read_bytes: u64,
    /// The same, per ggml type, largest first.
    pub by_type: Vec<TypeBytes>,
}

impl WeightsInfo {
    /// Reads the tensor table of `file`.
    pub fn from_gguf(file: &GgufFile) -> WeightsInfo {
        let arch = file
            .metadata
            .get_str_opt("general.architecture")
            .ok()
            .flatten()
            .unwrap_or("")
            .to_string();
        let count = |key: &str| {
            file.metadata
                .get_u64_opt(&format!("{arch}.{key}"))
                .ok()
                .flatten()
                .unwrap_or(0)
        };
        let (n_expert, n_used) = (count("expert_count"), count("expert_used_count"));
        let experts = (n_expert > 0).then_some((n_used.min(n_expert), n_expert));
        let tied_output = file.tensor("output.weight").is_none();
        let size_of = |name: &str| file.tensor(name).map_or(0, |t| t.size);
        let token_embd_bytes = size_of("token_embd.weight");
        let output_bytes = if tied_output {
            token_embd_bytes
        } else {
            size_of("output.weight")
        };

        let mut by_type: Vec<TypeBytes> = Vec::new();
        let mut add =
            |ty: GgmlType, decode: u64, prefill: u64| match by_type.iter_mut().find(|t| t.ty == ty)
            {
                Some(t) => {
                    t.decode_bytes += decode;
                    t.prefill_bytes += prefill;
                }
                None => by_type.push(TypeBytes {
                    name: ty.name(),
                    ty,
                    decode_bytes: decode,
                    prefill_bytes: prefill,
                }),
            };
        for t in &file.tensors {
            let is_output =
                t.name == "output.weight" || (tied_output && t.name == "token_embd.weight");
            if is_output {
                add(t.ty, t.size, 0);
            } else if t.name.starts_with("blk.") && t.shape.len() >= 2 {
                let bytes = match experts {
                    // Expert tensors (`ffn_gate_exps`, ...) hold every expert; a token reads
                    // those of its `n_used` experts.
                    Some((used, total)) if t.name.contains("_exps") => t.size * used / total,
                    _ => t.size,
                };
                add(t.ty, bytes, bytes);
            }
        }
        by_type.sort_by_key(|t| std::cmp::Reverse(t.decode_bytes));
        let decode_read_bytes = by_type.iter().map(|t| t.decode_bytes).sum();
        let prefill_read_bytes = by_type.iter().map(|t| t.prefill_bytes).sum();
        WeightsInfo {
            file_bytes: file.file_len,
            header_bytes: file.data_offset,
            tensor_bytes: file.tensor_bytes(),
            n_params: file.n_elements(),
            tied_output,
            token_embd_bytes,
            output_bytes,
            experts,
            decode_read_bytes,
            prefill_read_bytes,
            by_type,
        }
    }
}
