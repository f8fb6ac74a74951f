//! The [`Tokenizer`]: a vocabulary loaded from GGUF metadata, and its public API.

use std::ops::BitOr;
use std::path::Path;
use std::sync::OnceLock;

use hearth_gguf::{MappedGguf, Metadata};

use crate::bpe::Bpe;
use crate::hash::Interner;
use crate::junction::Junctions;
use crate::pretok::PreType;
use crate::special::{Fragment, Specials};
use crate::TokenizerError;

/// The tokenizer algorithm (llama.cpp's `llama_vocab_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VocabType {
    /// SentencePiece BPE over scores (`tokenizer.ggml.model = "llama"`).
    Spm,
    /// Byte-level BPE over merges (`"gpt2"`), or SPM-style BPE (`"gemma4"`).
    Bpe,
    /// WordPiece (`"bert"`).
    Wpm,
}

/// Token attributes (llama.cpp's `llama_token_attr` bit set).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct TokenAttr(pub u32);

impl TokenAttr {
    pub const UNDEFINED: TokenAttr = TokenAttr(0);
    pub const UNKNOWN: TokenAttr = TokenAttr(1 << 0);
    pub const UNUSED: TokenAttr = TokenAttr(1 << 1);
    pub const NORMAL: TokenAttr = TokenAttr(1 << 2);
    pub const CONTROL: TokenAttr = TokenAttr(1 << 3);
    pub const USER_DEFINED: TokenAttr = TokenAttr(1 << 4);
    pub const BYTE: TokenAttr = TokenAttr(1 << 5);
    pub const NORMALIZED: TokenAttr = TokenAttr(1 << 6);
    pub const LSTRIP: TokenAttr = TokenAttr(1 << 7);
    pub const RSTRIP: TokenAttr = TokenAttr(1 << 8);
    pub const SINGLE_WORD: TokenAttr = TokenAttr(1 << 9);

    /// Whether every bit of `other` is set.
    pub fn contains(self, other: TokenAttr) -> bool {
        self.0 & other.0 == other.0
    }

    /// Whether any bit of `other` is set.
    pub fn intersects(self, other: TokenAttr) -> bool {
        self.0 & other.0 != 0
    }

    /// The attribute of a GGUF `tokenizer.ggml.token_type` value.
    pub fn from_token_type(t: i64) -> TokenAttr {
        match t {
            1 => TokenAttr::NORMAL,
            2 => TokenAttr::UNKNOWN,
            3 => TokenAttr::CONTROL,
            4 => TokenAttr::USER_DEFINED,
            5 => TokenAttr::UNUSED,
            6 => TokenAttr::BYTE,
            _ => TokenAttr::UNDEFINED,
        }
    }
}

impl BitOr for TokenAttr {
    type Output = TokenAttr;
    fn bitor(self, rhs: TokenAttr) -> TokenAttr {
        TokenAttr(self.0 | rhs.0)
    }
}

/// Special token ids as llama.cpp resolves them (defaults per tokenizer
/// model, overridden by the `tokenizer.ggml.*_token_id` keys, EOT/EOM/FIM
/// detected by text when absent).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SpecialIds {
    pub bos: Option<u32>,
    pub eos: Option<u32>,
    pub eot: Option<u32>,
    pub eom: Option<u32>,
    pub unk: Option<u32>,
    pub sep: Option<u32>,
    pub pad: Option<u32>,
    pub mask: Option<u32>,
    pub fim_pre: Option<u32>,
    pub fim_suf: Option<u32>,
    pub fim_mid: Option<u32>,
    pub fim_pad: Option<u32>,
    pub fim_rep: Option<u32>,
    pub fim_sep: Option<u32>,
    /// The newline token (llama.cpp's `linefeed_id`).
    pub nl: Option<u32>,
}

/// Tokenizer switches read from GGUF or implied by the model type.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Options {
    pub(crate) add_space_prefix: bool,
    pub(crate) add_bos: bool,
    pub(crate) add_eos: bool,
    pub(crate) add_sep: bool,
    pub(crate) ignore_merges: bool,
    pub(crate) clean_spaces: bool,
    pub(crate) remove_extra_whitespaces: bool,
    pub(crate) escape_whitespaces: bool,
    pub(crate) lowercase: bool,
    pub(crate) strip_accents: bool,
}

/// A vocabulary and everything needed to encode and decode with it exactly as
/// llama.cpp does. Immutable after loading and `Sync`: share one between threads.
#[derive(Clone, Debug)]
pub struct Tokenizer {
    pub(crate) vtype: VocabType,
    pub(crate) pre: Option<PreType>,
    pub(crate) n_vocab: usize,
    /// Token texts (ids `0..n_vocab`); BPE merge parts and results that are
    /// not tokens are interned after them.
    pub(crate) texts: Interner,
    pub(crate) scores: Vec<f32>,
    pub(crate) attrs: Vec<TokenAttr>,
    pub(crate) ids: SpecialIds,
    pub(crate) opts: Options,
    /// End-of-generation tokens, sorted.
    pub(crate) eog: Vec<u32>,
    pub(crate) specials: Specials,
    /// `token_to_piece(id, special = true)` of every token, back to back.
    pub(crate) pieces: Vec<u8>,
    pub(crate) piece_ends: Vec<u32>,
    /// SPM byte fallback: the token for each byte value.
    pub(crate) byte_tokens: [Option<u32>; 256],
    pub(crate) bpe: Option<Bpe>,
    pub(crate) max_token_len: usize,
    /// Where long inputs may be cut into independent pieces (built on first use).
    pub(crate) junctions: OnceLock<Junctions>,
}

impl Tokenizer {
    /// Loads the vocabulary described by the `tokenizer.ggml.*` keys.
    pub fn from_metadata(md: &Metadata) -> Result<Tokenizer, TokenizerError> {
        crate::load::load(md)
    }

    /// Maps the GGUF file at `path` (a full model or a vocab-only file) and
    /// loads its vocabulary.
    pub fn from_gguf_path(path: impl AsRef<Path>) -> Result<Tokenizer, TokenizerError> {
        let gguf = MappedGguf::open(path)?;
        Tokenizer::from_metadata(&gguf.file().metadata)
    }

    /// Number of tokens in the vocabulary.
    pub fn n_vocab(&self) -> usize {
        self.n_vocab
    }

    /// The tokenizer algorithm.
    pub fn vocab_type(&self) -> VocabType {
        self.vtype
    }

    /// The BPE pre-tokenizer family (None for SPM and WPM).
    pub fn pre_type(&self) -> Option<PreType> {
        self.pre
    }

    /// All special token ids.
    pub fn special_ids(&self) -> &SpecialIds {
        &self.ids
    }

    /// Beginning-of-sequence token.
    pub fn bos(&self) -> Option<u32> {
        self.ids.bos
    }

    /// End-of-sequence token.
    pub fn eos(&self) -> Option<u32> {
        self.ids.eos
    }

    /// End-of-turn token.
    pub fn eot(&self) -> Option<u32> {
        self.ids.eot
    }

    /// Whether `id` ends generation (EOS, EOT, EOM, `<|im_end|>`, ... as llama.cpp's `llama_vocab_is_eog`).
    pub fn is_eog(&self, id: u32) -> bool {
        self.eog.binary_search(&id).is_ok()
    }

    /// The end-of-generation tokens, sorted.
    pub fn eog_ids(&self) -> &[u32] {
        &self.eog
    }

    /// Whether `encode(.., add_special = true, ..)` prepends BOS.
    pub fn add_bos(&self) -> bool {
        self.opts.add_bos
    }

    /// Whether `encode(.., add_special = true, ..)` appends EOS.
    pub fn add_eos(&self) -> bool {
        self.opts.add_eos
    }

    /// `tokenizer.ggml.add_sep_token` (or the model default).
    pub fn add_sep(&self) -> bool {
        self.opts.add_sep
    }

    /// Whether SPM input gets a leading space (and decoding drops it).
    pub fn add_space_prefix(&self) -> bool {
        self.opts.add_space_prefix
    }

    /// The text of token `id` as stored in the vocabulary.
    pub fn token_text(&self, id: u32) -> Option<&str> {
        if (id as usize) < self.n_vocab {
            std::str::from_utf8(self.texts.get_bytes(id)).ok()
        } else {
            None
        }
    }

    /// The id of the token whose stored text is exactly `text`.
    pub fn token_id(&self, text: &str) -> Option<u32> {
        self.text_to_token(text.as_bytes())
    }

    /// The score of token `id` (0 when the vocabulary has none).
    pub fn token_score(&self, id: u32) -> Option<f32> {
        self.scores.get(id as usize).copied()
    }

    /// The attributes of token `id`.
    pub fn token_attr(&self, id: u32) -> Option<TokenAttr> {
        self.attrs.get(id as usize).copied()
    }

    /// Whether `id` is a CONTROL token.
    pub fn is_control(&self, id: u32) -> bool {
        self.attr(id).contains(TokenAttr::CONTROL)
    }

    #[inline]
    pub(crate) fn attr(&self, id: u32) -> TokenAttr {
        self.attrs.get(id as usize).copied().unwrap_or_default()
    }

    /// Character pairs that some merge can join (see [`Junctions`]).
    pub(crate) fn junctions(&self) -> &Junctions {
        self.junctions.get_or_init(|| Junctions::build(self))
    }

    #[inline]
    pub(crate) fn text_to_token(&self, text: &[u8]) -> Option<u32> {
        self.texts
            .get(text)
            .filter(|&id| (id as usize) < self.n_vocab)
    }

    /// Text to token ids, as llama.cpp's `llama_tokenize`: with
    /// `add_special`, BOS/EOS (SEP for WPM) are added as the model asks;
    /// with `parse_special`, control-token text such as `<start_of_turn>` in
    /// `text` becomes that token, otherwise it is tokenized as plain text
    /// (user-defined tokens are always matched).
    pub fn encode(&self, text: &str, add_special: bool, parse_special: bool) -> Vec<u32> {
        self.encode_bytes(text.as_bytes(), add_special, parse_special)
    }

    /// [`Self::encode`] for arbitrary bytes. Invalid UTF-8 is handled as
    /// llama.cpp handles it: BPE and WPM decode each bad byte to U+FFFD
    /// (WPM then drops it); SPM keeps the raw bytes, which come out as
    /// byte-fallback tokens `<0xXX>`.
    pub fn encode_bytes(&self, text: &[u8], add_special: bool, parse_special: bool) -> Vec<u32> {
        let frags = self.specials.partition(
            text,
            parse_special,
            |id| self.attr(id),
            |id| self.texts.get_bytes(id),
        );
        let mut out = Vec::with_capacity(text.len() / 3 + 4);
        match self.vtype {
            VocabType::Spm => self.encode_spm(text, &frags, add_special, &mut out),
            VocabType::Bpe => self.encode_bpe(text, &frags, add_special, &mut out),
            VocabType::Wpm => self.encode_wpm(text, &frags, add_special, &mut out),
        }
        out
    }

    fn encode_spm(&self, text: &[u8], frags: &[Fragment], add_special: bool, out: &mut Vec<u32>) {
        let add_bos = add_special && self.opts.add_bos;
        if add_bos {
            out.extend(self.ids.bos);
        }
        let mut session = crate::spm::Session::new(text.len() >= crate::spm::CUT_INPUTS_FROM);
        let mut buf = Vec::new();
        let mut prev_special = true;
        for f in frags {
            match *f {
                Fragment::Text { start, len } => {
                    buf.clear();
                    if self.opts.add_space_prefix && prev_special {
                        buf.extend_from_slice("\u{2581}".as_bytes());
                    }
                    escape_spaces(&text[start..start + len], &mut buf);
                    session.tokenize(self, &buf, out);
                    prev_special = false;
                }
                Fragment::Token(id) => {
                    out.push(id);
                    prev_special = true;
                }
            }
        }
        if add_special && self.opts.add_eos {
            out.extend(self.ids.eos);
        }
    }

    fn encode_bpe(&self, text: &[u8], frags: &[Fragment], add_special: bool, out: &mut Vec<u32>) {
        if add_special && self.opts.add_bos {
            out.extend(self.ids.bos);
        }
        let Some(bpe) = &self.bpe else { return };
        let mut session = crate::bpe::Session::default();
        let mut buf = Vec::new();
        for f in frags {
            match *f {
                Fragment::Text { start, len } => {
                    let raw = &text[start..start + len];
                    let t = if self.opts.escape_whitespaces {
                        buf.clear();
                        escape_spaces(raw, &mut buf);
                        &buf[..]
                    } else {
                        raw
                    };
                    session.tokenize(self, bpe, t, out);
                }
                Fragment::Token(id) => out.push(id),
            }
        }
        if add_special && self.opts.add_eos {
            out.extend(self.ids.eos);
        }
    }

    fn encode_wpm(&self, text: &[u8], frags: &[Fragment], add_special: bool, out: &mut Vec<u32>) {
        if add_special {
            out.extend(self.ids.bos);
        }
        for f in frags {
            match *f {
                Fragment::Text { start, len } => {
                    crate::wpm::tokenize(self, &text[start..start + len], out)
                }
                Fragment::Token(id) => out.push(id),
            }
        }
        if add_special {
            out.extend(self.ids.sep);
        }
    }
}

/// Replaces every space with U+2581 (`▁`), SentencePiece's space marker.
fn escape_spaces(text: &[u8], out: &mut Vec<u8>) {
    let mut rest = text;
    while let Some(i) = memchr::memchr(b' ', rest) {
        out.extend_from_slice(&rest[..i]);
        out.extend_from_slice("\u{2581}".as_bytes());
        rest = &rest[i + 1..];
    }
    out.extend_from_slice(rest);
}
