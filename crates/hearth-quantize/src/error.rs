//! Errors of quantization and importance-matrix handling.

use std::path::PathBuf;

use hearth_gguf::GgmlType;

/// Why quantizing (or reading an importance matrix) failed.
#[derive(Debug, thiserror::Error)]
pub enum QuantizeError {
    #[error(transparent)]
    Gguf(#[from] hearth_gguf::GgufError),
    #[error(transparent)]
    Quant(#[from] hearth_kernels::quant::QuantError),
    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("bad --tensor-type {arg:?}: {why}")]
    BadTensorType { arg: String, why: String },
    #[error("no tensor type fallback is defined for type {ty}")]
    NoFallback { ty: GgmlType },
    #[error("failed to determine the layer of tensor {name:?}")]
    NoLayer { name: String },
    #[error("bad layer {layer} for tensor {name:?}: must be in [0, {n_layer})")]
    BadLayer {
        name: String,
        layer: i64,
        n_layer: i64,
    },
    #[error("requantizing from type {ty} is disabled (tensor {name:?}; use --allow-requantize)")]
    Requantize { name: String, ty: GgmlType },
    #[error("quantizing to {ty} is not implemented yet (tensor {name:?})")]
    Unsupported { name: String, ty: GgmlType },
    #[error("this quantization requires an importance matrix (tensor {name:?}, type {ty})")]
    NeedsImatrix { name: String, ty: GgmlType },
    #[error("imatrix has {got} values for {name:?}, the tensor needs {expected}")]
    ImatrixSize {
        name: String,
        got: usize,
        expected: u64,
    },
    #[error("imatrix contains a non-finite value for {name:?}")]
    ImatrixNonFinite { name: String },
    #[error("bad imatrix file: {0}")]
    BadImatrix(String),
    #[error("tensor {name:?} is too large for this machine")]
    TooLarge { name: String },
}
