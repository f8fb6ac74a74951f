//! Errors of planning. Every variant carries the offending values.

use std::path::PathBuf;

use hearth_gguf::GgufError;
use hearth_model::ConfigError;

/// Why a plan could not be made.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// The file is not a readable GGUF file.
    #[error("reading {path}: {source}")]
    Gguf {
        path: PathBuf,
        #[source]
        source: GgufError,
    },
    /// The file does not describe a model hearth can run.
    #[error("{path}: {source}")]
    Config {
        path: PathBuf,
        #[source]
        source: ConfigError,
    },
    /// A request value is out of range.
    #[error("{what} must be at least 1 (got {value})")]
    Zero { what: &'static str, value: usize },
    /// `HEARTH_MEM_AVAILABLE` is not a size.
    #[error("{var}={value:?} is not a size (bytes, or a number with K, M, G or T, e.g. 512M)")]
    BadSize { var: &'static str, value: String },
    /// Reading a /proc or /sys file failed.
    #[error("reading {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}
