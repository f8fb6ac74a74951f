//! Text to token ids and back, exactly as llama.cpp does it.
//!
//! A [`Tokenizer`] is built from a GGUF file's `tokenizer.ggml.*` metadata
//! ([`Tokenizer::from_metadata`], [`Tokenizer::from_gguf_path`]) and
//! supports the vocabulary types llama.cpp ships test vocabularies for:
//!
//! - SPM (`llama`): SentencePiece BPE over token scores with `<0xXX>` byte
//!   fallback and the optional leading space;
//! - BPE (`gpt2`, `gemma4`): merges by rank after a pre-tokenizer chosen by
//!   `tokenizer.ggml.pre` (every family llama.cpp knows; see [`PreType`]);
//! - WPM (`bert`): WordPiece with BERT normalization.
//!
//! Special tokens (control, user-defined) in the text are matched as
//! llama.cpp does; [`Tokenizer::decode`] and [`StreamDecoder`] turn ids back
//! into text, the latter one token at a time without ever splitting a UTF-8
//! character.
//!
//! ```no_run
//! # fn main() -> Result<(), hearth_tokenizer::TokenizerError> {
//! let tok = hearth_tokenizer::Tokenizer::from_gguf_path("model.gguf")?;
//! let ids = tok.encode("Hello world", true, true); // add_special, parse_special
//! println!("{ids:?} -> {:?}", tok.decode(&ids, true, false)); // remove_special, unparse_special
//! # Ok(()) }
//! ```

mod bpe;
mod decode;
mod error;
mod hash;
mod junction;
mod load;
mod pretok;
mod regex;
mod special;
mod spm;
pub mod template;
mod tokenizer;
mod unicode;
#[rustfmt::skip]
mod unicode_tables;
mod wpm;

pub use decode::StreamDecoder;
pub use error::TokenizerError;
pub use pretok::PreType;
pub use tokenizer::{SpecialIds, TokenAttr, Tokenizer, VocabType};
