//! Errors of the GGUF reader and writer. Every variant carries the offending values.

use crate::GgmlType;

/// Why a GGUF file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    #[error("tensor {name:?} was added deferred: write the file with write_streaming")]
    DeferredData { name: String },
    #[error("file is too short to be GGUF: {len} bytes (a header needs 24)")]
    TooShort { len: u64 },
    #[error("bad magic {found:02x?}: not a GGUF file")]
    BadMagic { found: [u8; 4] },
    #[error("big-endian GGUF files are not supported (version field reads {raw:#010x})")]
    BigEndian { raw: u32 },
    #[error("unsupported GGUF version {version} (supported: 2, 3)")]
    UnsupportedVersion { version: u32 },
    #[error("unexpected end of file at offset {offset} while reading {what} (needed {needed} bytes, file has {file_len})")]
    UnexpectedEof {
        what: &'static str,
        offset: u64,
        needed: u64,
        file_len: u64,
    },
    #[error("{what} count {count} cannot fit in the {remaining} bytes left in the file")]
    CountTooLarge {
        what: &'static str,
        count: u64,
        remaining: u64,
    },
    #[error(
        "string of {len} bytes at offset {offset} runs past the end of the file ({file_len} bytes)"
    )]
    StringTooLong {
        len: u64,
        offset: u64,
        file_len: u64,
    },
    #[error("string at offset {offset} is not valid UTF-8")]
    InvalidUtf8 { offset: u64 },
    #[error("unknown metadata value type {value_type} for key {key:?}")]
    UnknownValueType { key: String, value_type: u32 },
    #[error("metadata key {key:?}: arrays nested deeper than {max_depth} levels")]
    ArrayTooDeep { key: String, max_depth: usize },
    #[error("empty metadata key at offset {offset}")]
    EmptyKey { offset: u64 },
    #[error("duplicate metadata key {key:?}")]
    DuplicateKey { key: String },
    #[error("general.alignment must be a UINT32 power of two, found {found}")]
    BadAlignment { found: String },
    #[error("tensor name of {len} bytes is longer than the limit of {max}")]
    TensorNameTooLong { len: usize, max: usize },
    #[error("empty tensor name")]
    EmptyTensorName,
    #[error("duplicate tensor name {name:?}")]
    DuplicateTensor { name: String },
    #[error("tensor {name:?} has {n_dims} dimensions (allowed 1..={max})")]
    BadDimCount {
        name: String,
        n_dims: u32,
        max: usize,
    },
    #[error("tensor {name:?} has a dimension of 0 (shape {shape:?})")]
    ZeroDim { name: String, shape: Vec<u64> },
    #[error("tensor {name:?}: shape {shape:?} overflows the element count")]
    ShapeOverflow { name: String, shape: Vec<u64> },
    #[error("tensor {name:?} has unknown ggml type id {type_id}")]
    UnknownTensorType { name: String, type_id: u32 },
    #[error(
        "tensor {name:?}: row length {ne0} is not a multiple of {ty}'s block size {block_size}"
    )]
    RowNotBlockAligned {
        name: String,
        ty: GgmlType,
        ne0: u64,
        block_size: usize,
    },
    #[error("tensor {name:?}: offset {offset} is not a multiple of the alignment {alignment}")]
    MisalignedTensor {
        name: String,
        offset: u64,
        alignment: u64,
    },
    #[error("tensor {name:?}: data [{offset}, +{size}) runs past the end of the data section ({data_len} bytes, file {file_len} bytes)")]
    TensorOutOfBounds {
        name: String,
        offset: u64,
        size: u64,
        data_len: u64,
        file_len: u64,
    },
    #[error("tensors {first:?} and {second:?} overlap")]
    OverlappingTensors { first: String, second: String },
    #[error("metadata key {key:?} is missing")]
    MissingKey { key: String },
    #[error("metadata key {key:?} has type {found}, expected {expected}")]
    WrongType {
        key: String,
        expected: &'static str,
        found: String,
    },
    #[error("metadata key {key:?}: value {value} does not fit in {target}")]
    ValueOutOfRange {
        key: String,
        value: String,
        target: &'static str,
    },
    #[error("no tensor named {name:?}")]
    MissingTensor { name: String },
    #[error("tensor {name:?}: data is {len} bytes, expected {expected} for {ty} {shape:?}")]
    TensorDataSize {
        name: String,
        ty: GgmlType,
        shape: Vec<u64>,
        len: usize,
        expected: u64,
    },
    #[error("cannot allocate {bytes} bytes to read the model into (--no-mmap)")]
    HeapAlloc { bytes: u64 },
    #[error(
        "mlock of {bytes} bytes failed: {source}; RLIMIT_MEMLOCK (`ulimit -l`) is {}: raise it \
         (`ulimit -l unlimited`, or `memlock` in /etc/security/limits.conf, or LimitMEMLOCK= for a \
         systemd service) or run without --mlock",
        memlock_text(.limit)
    )]
    Mlock {
        bytes: u64,
        /// The soft RLIMIT_MEMLOCK in bytes (`None`: unlimited).
        limit: Option<u64>,
        #[source]
        source: std::io::Error,
    },
}

/// RLIMIT_MEMLOCK as a user reads it.
fn memlock_text(limit: &Option<u64>) -> String {
    match limit {
        Some(l) => format!("{l} bytes ({} KiB)", l / 1024),
        None => "unlimited".to_string(),
    }
}

/// Result alias of this crate.
pub type Result<T, E = GgufError> = std::result::Result<T, E>;
