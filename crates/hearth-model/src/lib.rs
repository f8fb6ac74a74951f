//! Model architectures as `forward(batch, kv)`, the KV cache, and the sampling chain.
//!
//! ```no_run
//! # use std::sync::Arc;
//! # use hearth_model::{Model, KvType, LogitsFor};
//! let gguf = Arc::new(hearth_gguf::MappedGguf::open("model.gguf")?);
//! let model = Model::load(gguf)?;
//! let mut kv = model.new_kv_cache(2048, KvType::F16)?;
//! let logits = model.forward(&[2, 651, 6037], &mut kv, LogitsFor::Last)?;
//! let next = logits.last();
//! # let _ = next;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! The numerics follow llama.cpp's CPU backend (see [`ops`] and [`attention`]) down to the
//! summation order: for F16, Q8_0, Q5_0, Q4_0, Q4_K and Q6_K weights and an f16 KV cache the
//! logits are bit-identical to those of the reference llama.cpp build (AVX-512), including the
//! dependence on batch size ([`BatchNumerics`]).
//!
//! Architectures: `llama` (incl. RoPE scaling and `rope_freqs`), `qwen2`, `qwen3`, `phi3`,
//! `gemma2`, `gemma3`, and the mixture-of-experts `qwen3moe` and `llama` with experts (Mixtral);
//! one file each in `src/arch/`, the experts in `moe.rs`.

#![forbid(unsafe_code)]

mod arch;
pub mod attention;
pub mod config;
pub mod error;
pub mod kv_cache;
mod layer;
pub mod model;
mod moe;
pub mod ops;
pub mod params;
pub mod sampling;

pub use config::{Arch, ExpertGating, ModelConfig, MoeConfig, RopeConfig, RopeKind, RopeScaling};
pub use error::{ConfigError, ModelError};
pub use kv_cache::{KvCache, KvType};
pub use model::{BatchNumerics, Logits, LogitsFor, Model, SeqBatch, N_UBATCH};
pub use ops::{MatmulObserver, Numerics};
pub use params::{param_counts, ParamCounts};
