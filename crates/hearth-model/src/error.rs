//! Errors of model loading and evaluation. Every variant carries the offending values.

use hearth_gguf::{GgmlType, GgufError};
use hearth_kernels::quant::QuantError;

/// Why a GGUF file does not describe a model hearth can run.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A metadata key the architecture needs is absent.
    #[error("required metadata key {key:?} is missing")]
    MissingKey { key: String },
    /// A metadata key has the wrong type or an unusable value.
    #[error("metadata key {key:?}: {reason}")]
    BadValue { key: String, reason: String },
    /// `general.architecture` names an architecture hearth does not implement.
    #[error("unsupported architecture {arch:?} (supported: {supported})")]
    UnsupportedArchitecture { arch: String, supported: String },
    /// A count that must be positive is zero.
    #[error("metadata key {key:?} is 0; it must be positive")]
    Zero { key: String },
    /// The embedding width does not split evenly into heads (and no explicit head size is given).
    #[error("{key:?} = {n_embd} is not divisible by the head count {n_head}")]
    EmbdNotDivisible {
        key: String,
        n_embd: usize,
        n_head: usize,
    },
    /// The KV head count does not divide the query head count (grouped-query attention).
    #[error("KV head count {n_head_kv} does not divide the head count {n_head} ({key:?})")]
    KvHeadsNotDividing {
        key: String,
        n_head: usize,
        n_head_kv: usize,
    },
    /// A per-layer array has the wrong length or differing values where one value is supported.
    #[error("metadata key {key:?}: {reason}")]
    PerLayer { key: String, reason: String },
    /// A tensor the architecture needs is absent.
    #[error("required tensor {name:?} is missing")]
    MissingTensor { name: String },
    /// A tensor's shape disagrees with the metadata.
    #[error("tensor {name:?} has shape {found:?}, the config implies {expected:?}")]
    TensorShape {
        name: String,
        expected: Vec<u64>,
        found: Vec<u64>,
    },
    /// A tensor's data does not lie within the file.
    #[error(
        "tensor {name:?}: {size} bytes at offset {offset} lie outside the file of {file_len} bytes"
    )]
    TensorData {
        name: String,
        offset: u64,
        size: u64,
        file_len: u64,
    },
    /// A tensor's type cannot be used where it appears.
    #[error("tensor {name:?} has type {ty}, which {reason}")]
    TensorType {
        name: String,
        ty: GgmlType,
        reason: &'static str,
    },
    /// The vocabulary size of the tokenizer and of the embedding disagree.
    #[error("tokenizer has {n_tokens} tokens but {name:?} has {n_rows} rows")]
    VocabMismatch {
        name: String,
        n_tokens: usize,
        n_rows: usize,
    },
}

/// Why a model could not be loaded or evaluated.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Gguf(#[from] GgufError),
    /// A tensor's bytes could not be converted.
    #[error("tensor {name:?}: {source}")]
    Quant {
        name: String,
        #[source]
        source: QuantError,
    },
    /// A forward pass was asked for no tokens.
    #[error("empty batch: forward needs at least one token")]
    EmptyBatch,
    /// A token id outside the vocabulary.
    #[error("token id {id} at batch index {index} is out of range (vocabulary size {n_vocab})")]
    TokenOutOfRange {
        id: u32,
        index: usize,
        n_vocab: usize,
    },
    /// The sequence would not fit in the context and no context shift was requested.
    #[error(
        "context overflow: {n_past} cached + {n_tokens} new tokens exceed the context of {n_ctx}"
    )]
    ContextOverflow {
        n_past: usize,
        n_tokens: usize,
        n_ctx: usize,
    },
    /// Even a context shift cannot make room for the batch.
    #[error(
        "context shift cannot make room: batch of {n_tokens} tokens, context {n_ctx}, n_keep {n_keep}"
    )]
    ContextShiftImpossible {
        n_tokens: usize,
        n_ctx: usize,
        n_keep: usize,
    },
    /// A KV cache was created for a different model or with invalid parameters.
    #[error("KV cache: {reason}")]
    KvCache { reason: String },
    /// Logits were requested for more rows than the batch has.
    #[error("logits requested for the last {requested} tokens of a batch of {n_tokens}")]
    LogitsRows { requested: usize, n_tokens: usize },
}

/// Result alias of this crate.
pub type Result<T, E = ModelError> = std::result::Result<T, E>;
