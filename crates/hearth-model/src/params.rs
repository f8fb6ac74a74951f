//! Parameter counts of a model file: total, and active per token for mixture-of-experts models
//! (only `expert_used_count` of the `expert_count` experts of each `*_exps` tensor are read).

use hearth_gguf::GgufFile;

/// Parameters of a model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParamCounts {
    /// Every value of every tensor.
    pub total: u64,
    /// Values one token's forward pass uses: the expert tensors count for their used experts
    /// only (equal to `total` for dense models).
    pub active: u64,
    /// `{arch}.expert_count` (0 for dense models) and `{arch}.expert_used_count`.
    pub n_expert: u64,
    pub n_expert_used: u64,
}

/// The parameter counts of `file` (metadata and tensor table only).
pub fn param_counts(file: &GgufFile) -> ParamCounts {
    let total = file.n_elements();
    let md = &file.metadata;
    let arch = md
        .get_str_opt("general.architecture")
        .ok()
        .flatten()
        .unwrap_or("");
    let get = |k: &str| {
        md.get_u64_opt(&format!("{arch}.{k}"))
            .ok()
            .flatten()
            .unwrap_or(0)
    };
    let (n_expert, n_used) = (get("expert_count"), get("expert_used_count"));
    if n_expert == 0 || n_used >= n_expert {
        return ParamCounts {
            total,
            active: total,
            n_expert,
            n_expert_used: n_used,
        };
    }
    let experts: u64 = file
        .tensors
        .iter()
        .filter(|t| t.name.contains("_exps."))
        .map(|t| t.n_elements())
        .sum();
    let unused =
        (u128::from(experts) * u128::from(n_expert - n_used) / u128::from(n_expert)) as u64;
    ParamCounts {
        total,
        active: total - unused,
        n_expert,
        n_expert_used: n_used,
    }
}
