//! Why a vocabulary could not be loaded. Every variant names the offending
//! key or token and carries the values.

/// A vocabulary that hearth will not tokenize with.
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    /// Reading the GGUF file or one of its keys failed (missing key, wrong type).
    #[error(transparent)]
    Gguf(#[from] hearth_gguf::GgufError),
    /// `tokenizer.ggml.model` names a tokenizer llama.cpp does not know.
    #[error("unknown tokenizer model {model:?} (tokenizer.ggml.model)")]
    UnknownModel { model: String },
    /// A tokenizer llama.cpp knows but hearth does not implement yet.
    #[error("tokenizer model {model:?} is not supported (supported: llama, gpt2, gemma4, bert)")]
    UnsupportedModel { model: String },
    /// `tokenizer.ggml.pre` names an unknown pre-tokenizer.
    #[error("unknown pre-tokenizer {pre:?} (tokenizer.ggml.pre)")]
    UnknownPreTokenizer { pre: String },
    /// The vocabulary has no tokens.
    #[error("tokenizer.ggml.tokens is empty")]
    EmptyVocab,
    /// Per-token arrays whose length differs from the token list.
    #[error("{key} has {len} entries but tokenizer.ggml.tokens has {n_vocab}")]
    LengthMismatch {
        key: &'static str,
        len: usize,
        n_vocab: usize,
    },
    /// A per-token or merge array of the wrong element type.
    #[error("{key} has the wrong element type (expected {expected})")]
    WrongArrayType {
        key: &'static str,
        expected: &'static str,
    },
    /// The same token text appears twice (llama.cpp aborts on this).
    #[error("token {id} {text:?} duplicates token {first}")]
    DuplicateToken { id: u32, first: u32, text: String },
    /// A token typed BYTE whose text is not `<0xHH>`.
    #[error("byte token {id} has text {text:?}, expected <0xHH>")]
    BadByteToken { id: u32, text: String },
    /// A special-token id (BOS, EOS) outside the vocabulary.
    #[error("{key} = {id} is outside the vocabulary of {n_vocab} tokens")]
    SpecialTokenOutOfRange {
        key: &'static str,
        id: i64,
        n_vocab: usize,
    },
    /// A BPE vocabulary without `tokenizer.ggml.merges`.
    #[error("BPE vocabulary without tokenizer.ggml.merges")]
    MissingMerges,
    /// A vocabulary too large for 32-bit token ids and offsets.
    #[error("vocabulary of {n_vocab} tokens is too large (ids and text offsets are 32-bit)")]
    TooManyTokens { n_vocab: usize },
    /// A pre-tokenizer pattern failed to compile (a bug in hearth).
    #[error("pre-tokenizer pattern {pattern:?} does not compile: {message}")]
    BadPattern { pattern: String, message: String },
}
