//! hearth's HTTP server as a library: the OpenAI, Ollama and llama.cpp-native APIs over a
//! continuous-batching engine.
//!
//! A request travels one way: HTTP body -> typed request (serde; type errors name the field)
//! -> validated [`engine::GenParams`] (chat template, tokens, limits) -> [`engine::Engine`]
//! admission queue -> scheduler step (all running slots in one `forward_batch`, prefix cache)
//! -> sampling -> streaming detokenizer -> SSE / NDJSON chunk or one JSON answer.
//!
//! ```no_run
//! let cfg = hearth_server::ServerConfig::new("model.gguf".into());
//! hearth_server::serve_blocking(cfg).unwrap();
//! ```

#![forbid(unsafe_code)]

pub mod common;
pub mod engine;
pub mod error;
pub mod gateway;
pub mod logprobs;
pub mod metrics;
pub mod native;
pub mod ollama;
pub mod openai;
pub mod server;

pub use engine::{Engine, EngineConfig, Event, Finish, GenParams};
pub use error::{ApiError, Flavor};
pub use gateway::{GatewayConfig, UpstreamSpec};
pub use server::{serve, serve_blocking, ServeError, ServerConfig};
