//! WordPiece (llama.cpp's `llm_tokenizer_wpm_session`): BERT-style
//! normalization and word splitting, then greedy longest-match per word
//! with the word prefixed by `▁` (the GGUF convention for word starts).

use crate::unicode::{self, flags, nfd_first, to_lower};
use crate::Tokenizer;

fn is_chinese_char(cpt: u32) -> bool {
    matches!(cpt,
        0x04E00..=0x09FFF
        | 0x03400..=0x04DBF
        | 0x20000..=0x2A6DF
        | 0x2A700..=0x2B73F
        | 0x2B740..=0x2B81F
        | 0x2B920..=0x2CEAF // llama.cpp (after HF): 0x2B920, not 0x2B820
        | 0x0F900..=0x0FAFF
        | 0x2F800..=0x2FA1F)
}

/// Splits `text` into words: whitespace separates, punctuation, ASCII
/// symbols and CJK characters stand alone, control characters and U+FFFD
/// vanish; optional lowercasing and accent stripping (first code point of
/// NFD, marks dropped).
fn words(tok: &Tokenizer, text: &[u8]) -> Vec<Vec<u8>> {
    let mut cpts = Vec::new();
    unicode::decode_lossy(text, &mut cpts);
    let (lower, strip) = (tok.opts.lowercase, tok.opts.strip_accents);
    let mut words: Vec<Vec<u8>> = vec![Vec::new()];
    for &c in &cpts {
        let c = if strip { nfd_first(c) } else { c };
        let f = flags(c);
        if f.is_whitespace() {
            if words.last().is_some_and(|w| !w.is_empty()) {
                words.push(Vec::new());
            }
            continue;
        }
        if c == 0 || c == 0xFFFD || f.is_control() {
            continue;
        }
        if strip && f.is_accent_mark() {
            continue;
        }
        let out = if lower { to_lower(c) } else { c };
        if f.is_punctuation() || (c < 0x7F && f.is_symbol()) || is_chinese_char(c) {
            if words.last().is_some_and(|w| !w.is_empty()) {
                words.push(Vec::new());
            }
            if let Some(w) = words.last_mut() {
                unicode::push_utf8(out, w);
            }
            words.push(Vec::new());
        } else if let Some(w) = words.last_mut() {
            unicode::push_utf8(out, w);
        }
    }
    if words.last().is_some_and(|w| w.is_empty()) {
        words.pop();
    }
    words
}

pub(crate) fn tokenize(tok: &Tokenizer, text: &[u8], out: &mut Vec<u32>) {
    let mut word1 = Vec::new();
    for word in words(tok, text) {
        if word.is_empty() {
            continue;
        }
        word1.clear();
        word1.extend_from_slice("\u{2581}".as_bytes());
        word1.extend_from_slice(&word);
        let n = word1.len();
        let before = out.len();
        let mut i = 0;
        while i < n {
            let mut matched = false;
            let mut j = n.min(i + tok.max_token_len + 1);
            while j > i {
                if let Some(id) = tok.text_to_token(&word1[i..j]) {
                    out.push(id);
                    matched = true;
                    i = j - 1;
                    break;
                }
                j -= 1;
            }
            if !matched {
                out.truncate(before);
                break;
            }
            i += 1;
        }
        if out.len() == before {
            out.extend(tok.ids.unk);
        }
    }
}
