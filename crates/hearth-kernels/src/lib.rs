//! Compute kernels for hearth.
//!
//! - [`quant`] converts between f32 and every common ggml tensor type
//!   (scalar reference paths, bit-exact with gguf-py / llama.cpp where noted);
//! - [`cpu`] detects the CPU's vector extensions once and picks the kernel
//!   level ([`cpu::CpuLevel`], `HEARTH_CPU` overrides it);
//! - [`pool`] is the persistent thread pool the kernels run on;
//! - [`matmul`] multiplies a quantized weight matrix ([`matmul::QMatrix`]) by
//!   f32 activations, with SIMD kernels per level and scalar twins.
//!
//! `unsafe` is confined to the SIMD kernels, CPU detection and the pool's
//! lifetime erasure; every block carries a `// SAFETY:` comment.

#![deny(unsafe_code)]
#![warn(clippy::undocumented_unsafe_blocks)]

pub mod attn;
pub mod cpu;
pub mod matmul;
pub mod membw;
pub mod pool;
pub mod quant;
pub mod vec;
