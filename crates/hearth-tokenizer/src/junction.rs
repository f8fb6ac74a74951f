//! Safe cut points for long inputs.
//!
//! SPM and BPE merge adjacent symbols, and a merge across the boundary
//! between two characters `a` and `b` can only happen if some token (SPM) or
//! some merge (BPE) joins a symbol ending in `a` to one starting with `b`.
//! Where no such pair exists, the two sides never interact: tokenizing them
//! separately gives exactly the same ids as tokenizing the whole, in time
//! proportional to the pieces instead of a priority queue over the whole
//! input (a 1 MB SPM fragment otherwise spends most of its time in heap
//! operations).

use crate::bpe::Bpe;
use crate::hash::FxHashSet;
use crate::unicode::{char_to_byte, decode_one, utf8_len};
use crate::{Tokenizer, VocabType};

/// Character pairs across which a merge may happen.
#[derive(Clone, Debug)]
pub(crate) enum Junctions {
    /// Byte-level BPE: pairs of raw bytes, as a 256 x 256 bit set.
    Bytes(Box<[u64; 1024]>),
    /// Pairs of UTF-8 characters, each packed by [`pack`].
    Chars(FxHashSet<u64>),
}

/// The bytes of one character (1-4) as an integer; the lead byte fixes the
/// length, so distinct characters pack differently.
#[inline]
pub(crate) fn pack(ch: &[u8]) -> u32 {
    let mut v = 0u32;
    for (i, &b) in ch.iter().take(4).enumerate() {
        v |= u32::from(b) << (8 * i);
    }
    v
}

#[inline]
fn pair(a: u32, b: u32) -> u64 {
    (u64::from(a) << 32) | u64::from(b)
}

/// The first character of `s`.
fn first_char(s: &[u8]) -> Option<&[u8]> {
    let n = utf8_len(*s.first()?).min(s.len());
    Some(&s[..n])
}

/// The last character of `s` (UTF-8 text).
fn last_char(s: &[u8]) -> Option<&[u8]> {
    let mut i = s.len().checked_sub(1)?;
    while i > 0 && s[i] & 0xC0 == 0x80 {
        i -= 1;
    }
    Some(&s[i..])
}

/// The raw byte a GPT-2 byte-level character stands for.
fn level_byte(ch: &[u8]) -> Option<u8> {
    let mut pos = 0;
    let c = decode_one(ch, &mut pos);
    if pos != ch.len() {
        return None;
    }
    char_to_byte(c)
}

impl Junctions {
    pub(crate) fn build(tok: &Tokenizer) -> Junctions {
        match (&tok.bpe, tok.vtype) {
            (Some(bpe), VocabType::Bpe) => Self::from_merges(tok, bpe),
            _ => Self::from_tokens(tok),
        }
    }

    /// SPM: any two consecutive characters inside any token.
    fn from_tokens(tok: &Tokenizer) -> Junctions {
        let mut set = FxHashSet::default();
        for id in 0..tok.n_vocab as u32 {
            let t = tok.texts.get_bytes(id);
            let mut prev: Option<u32> = None;
            let mut pos = 0;
            while pos < t.len() {
                let n = utf8_len(t[pos]).min(t.len() - pos);
                let c = pack(&t[pos..pos + n]);
                if let Some(p) = prev {
                    set.insert(pair(p, c));
                }
                prev = Some(c);
                pos += n;
            }
        }
        Junctions::Chars(set)
    }

    /// BPE: the last character of each merge's left part next to the first
    /// character of its right part.
    fn from_merges(tok: &Tokenizer, bpe: &Bpe) -> Junctions {
        let byte_level = bpe.pre.byte_encode();
        let mut bits = Box::new([0u64; 1024]);
        let mut set = FxHashSet::default();
        for &(l, r) in bpe.merges.keys() {
            let (Some(a), Some(b)) = (
                last_char(tok.texts.get_bytes(l)),
                first_char(tok.texts.get_bytes(r)),
            ) else {
                continue;
            };
            if byte_level {
                if let (Some(a), Some(b)) = (level_byte(a), level_byte(b)) {
                    let i = usize::from(a) * 256 + usize::from(b);
                    bits[i / 64] |= 1 << (i % 64);
                }
            } else {
                set.insert(pair(pack(a), pack(b)));
            }
        }
        if byte_level {
            Junctions::Bytes(bits)
        } else {
            Junctions::Chars(set)
        }
    }

    /// Ends of the independent pieces of `text` (split into characters by
    /// lead byte, or into single bytes when `bytes`); the last end is
    /// `text.len()`. Pieces are at least `min_len` bytes where possible.
    pub(crate) fn cuts(&self, text: &[u8], min_len: usize, ends: &mut Vec<usize>) {
        ends.clear();
        let mut start = 0;
        match self {
            Junctions::Bytes(bits) => {
                for i in 1..text.len() {
                    let k = usize::from(text[i - 1]) * 256 + usize::from(text[i]);
                    if i - start >= min_len && bits[k / 64] & (1 << (k % 64)) == 0 {
                        ends.push(i);
                        start = i;
                    }
                }
            }
            Junctions::Chars(set) => {
                let mut prev: Option<u32> = None;
                let mut pos = 0;
                while pos < text.len() {
                    let n = utf8_len(text[pos]).min(text.len() - pos);
                    let c = pack(&text[pos..pos + n]);
                    if let Some(p) = prev {
                        if pos - start >= min_len && !set.contains(&pair(p, c)) {
                            ends.push(pos);
                            start = pos;
                        }
                    }
                    prev = Some(c);
                    pos += n;
                }
            }
        }
        ends.push(text.len());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A long text mixing every test family's inputs (scripts, emoji, code,
    /// whitespace runs, digits).
    fn long_text() -> Vec<u8> {
        let dir = hearth_store::llama_cpp_models_dir().expect("llama.cpp test vocabularies");
        let mut text = Vec::new();
        for name in ["llama-spm", "qwen35", "gemma-4", "bert-bge"] {
            let inp =
                std::fs::read(dir.join(format!("ggml-vocab-{name}.gguf.inp"))).expect("read .inp");
            text.extend_from_slice(&inp);
        }
        text.extend_from_slice(
            "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa "
                .repeat(10)
                .as_bytes(),
        );
        text.extend_from_slice(
            "\u{2581}\u{2581}\u{2581}\u{2581}\u{2581}"
                .repeat(100)
                .as_bytes(),
        );
        text
    }

    fn vocab(name: &str) -> Tokenizer {
        let dir = hearth_store::llama_cpp_models_dir().expect("llama.cpp test vocabularies");
        Tokenizer::from_gguf_path(dir.join(format!("ggml-vocab-{name}.gguf"))).expect("load")
    }

    #[test]
    fn spm_cuts_do_not_change_tokens() {
        let text = long_text();
        let mut escaped = Vec::new();
        for &b in &text {
            if b == b' ' {
                escaped.extend_from_slice("\u{2581}".as_bytes());
            } else {
                escaped.push(b);
            }
        }
        let gemma = hearth_store::default_model().expect("default model");
        for t in [
            vocab("llama-spm"),
            Tokenizer::from_gguf_path(gemma).expect("load Gemma 3"),
        ] {
            let mut s = crate::spm::Session::new(true);
            let (mut cut, mut whole) = (Vec::new(), Vec::new());
            // Twice: the second pass is served from the piece cache.
            s.tokenize(&t, &escaped, &mut cut);
            s.tokenize(&t, &escaped, &mut cut);
            s.run(&t, &escaped, &mut whole);
            s.run(&t, &escaped, &mut whole);
            assert_eq!(cut, whole);
            let mut ends = Vec::new();
            t.junctions().cuts(&escaped, 32, &mut ends);
            assert!(ends.len() > 50, "too few cuts: {}", ends.len());
        }
    }

    #[test]
    fn bpe_cuts_do_not_change_tokens() {
        let text = long_text();
        for name in ["gpt-2", "qwen2", "gemma-4"] {
            let t = vocab(name);
            let bpe = t.bpe.as_ref().expect("bpe");
            let word: Vec<u8> = if bpe.pre.byte_encode() {
                text.clone()
            } else {
                String::from_utf8_lossy(&text)
                    .replace(' ', "\u{2581}")
                    .replace('\n', "")
                    .into_bytes()
            };
            let mut s = crate::bpe::Session::default();
            let (mut cut, mut whole) = (Vec::new(), Vec::new());
            s.word(&t, bpe, &word, &mut cut);
            s.merge(&t, bpe, &word, &mut whole);
            assert_eq!(cut, whole, "{name}");
            let mut ends = Vec::new();
            t.junctions().cuts(&word, 32, &mut ends);
            assert!(ends.len() > 20, "{name}: too few cuts: {}", ends.len());
        }
    }
}
