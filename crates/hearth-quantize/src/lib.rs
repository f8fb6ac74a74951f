//! `hearth quantize`: GGUF model quantization with llama.cpp's file types and
//! per-tensor mixes (src/llama-quant.cpp), byte-identical to `llama-quantize`
//! for the types hearth-kernels can produce; importance matrices in
//! llama-imatrix's formats (GGUF and legacy `.dat`).

mod driver;
mod error;
mod ftype;
mod header;
pub mod imatrix;
mod plan;

pub use driver::{
    plan_file, quantize_file, Progress, QuantizeOptions, Report, QUANTIZATION_VERSION,
};
pub use error::QuantizeError;
pub use ftype::FileType;
pub use plan::{
    allows_quantization, parse_tensor_type, plan_types, requires_imatrix, sort_like_llama_cpp,
    ModelInfo, TensorPlan, TypeOptions,
};
