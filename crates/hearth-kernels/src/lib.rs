//! Compute kernels for hearth.
//!
//! [`quant`] converts between f32 and every common ggml tensor type
//! (scalar reference paths, bit-exact with gguf-py / llama.cpp where noted).

#![forbid(unsafe_code)]

pub mod quant;
