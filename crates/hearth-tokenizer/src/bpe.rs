//! Byte-pair encoding by merge rank (llama.cpp's `llm_tokenizer_bpe_session`).
//!
//! Strings are interned once at load time (tokens first, so a string id below
//! `n_vocab` is a token id; then merge parts and merge results), which turns
//! every merge lookup into an integer-pair hash lookup that also yields the
//! id of the merged string.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use crate::hash::FxHashMap;
use crate::pretok::{PreTokenizer, PreType, SplitScratch};
use crate::unicode::{byte_to_char, push_utf8, utf8_len};
use crate::Tokenizer;

/// No interned string: a character that takes part in no merge and is no token.
pub(crate) const NONE: u32 = u32::MAX;

/// Merge tables of a BPE vocabulary.
#[derive(Clone, Debug)]
pub(crate) struct Bpe {
    pub(crate) pre: PreTokenizer,
    pub(crate) pre_type: PreType,
    /// `(left id, right id)` -> `(rank, id of the merged string)`.
    pub(crate) merges: FxHashMap<(u32, u32), (u32, u32)>,
    /// Byte-level vocabularies: the string id of each byte's GPT-2 character.
    pub(crate) byte_sym: [u32; 256],
    /// Tokens used for the bytes of a piece outside the vocabulary: the
    /// printable-ASCII tokens for byte-level vocabularies (other bytes are
    /// dropped, as in llama.cpp), `<0xXX>` for raw-UTF-8 ones.
    pub(crate) fallback: [Option<u32>; 256],
}

#[derive(Clone, Copy, Debug)]
struct Symbol {
    start: u32,
    len: u32,
    prev: i32,
    next: i32,
    id: u32,
}

/// Buffers reused across words and fragments.
#[derive(Default)]
pub(crate) struct Session {
    split: SplitScratch,
    words: Vec<u8>,
    ends: Vec<usize>,
    encoded: Vec<u8>,
    symbols: Vec<Symbol>,
    /// `Reverse((rank, left, right, size))`: lowest rank, then leftmost.
    queue: BinaryHeap<Reverse<(u32, i32, i32, u32)>>,
    cuts: Vec<usize>,
    /// Words already tokenized in this call: word -> range of `cached`.
    cache: FxHashMap<Box<[u8]>, (u32, u32)>,
    cached: Vec<u32>,
}

/// Words up to this length are remembered within one `encode` call (text
/// repeats words a lot; a word's tokens never depend on its context).
const CACHE_WORD_LEN: usize = 48;
/// At most this many distinct words are remembered.
const CACHE_ENTRIES: usize = 1 << 16;

/// Words longer than this are first cut where no merge can cross.
const CUT_ABOVE: usize = 256;

impl Session {
    pub(crate) fn tokenize(&mut self, tok: &Tokenizer, bpe: &Bpe, text: &[u8], out: &mut Vec<u32>) {
        self.words.clear();
        self.ends.clear();
        bpe.pre
            .split(text, &mut self.split, &mut self.words, &mut self.ends);
        let words = std::mem::take(&mut self.words);
        let mut start = 0;
        for i in 0..self.ends.len() {
            let end = self.ends[i];
            let word = &words[start..end];
            start = end;
            if word.len() > CACHE_WORD_LEN {
                self.word(tok, bpe, word, out);
                continue;
            }
            if let Some(&(a, n)) = self.cache.get(word) {
                out.extend_from_slice(&self.cached[a as usize..(a + n) as usize]);
                continue;
            }
            let before = out.len();
            self.word(tok, bpe, word, out);
            if self.cache.len() < CACHE_ENTRIES {
                let a = self.cached.len() as u32;
                self.cached.extend_from_slice(&out[before..]);
                self.cache
                    .insert(word.into(), (a, (out.len() - before) as u32));
            }
        }
        self.words = words;
    }

    pub(crate) fn word(&mut self, tok: &Tokenizer, bpe: &Bpe, word: &[u8], out: &mut Vec<u32>) {
        let byte_level = bpe.pre.byte_encode();
        if tok.opts.ignore_merges {
            let whole = if byte_level {
                self.encoded.clear();
                for &b in word {
                    push_utf8(byte_to_char(b), &mut self.encoded);
                }
                tok.text_to_token(&self.encoded)
            } else {
                tok.text_to_token(word)
            };
            if let Some(id) = whole {
                out.push(id);
                return;
            }
        } else if bpe.pre_type == PreType::Gemma4 && word.iter().all(|&b| b == b'\n') {
            if let Some(id) = tok.text_to_token(word) {
                out.push(id);
                return;
            }
        }

        if word.len() <= CUT_ABOVE {
            return self.merge(tok, bpe, word, out);
        }
        let mut cuts = std::mem::take(&mut self.cuts);
        tok.junctions().cuts(word, 32, &mut cuts);
        let mut start = 0;
        for &end in &cuts {
            self.merge(tok, bpe, &word[start..end], out);
            start = end;
        }
        self.cuts = cuts;
    }

    /// Merges the symbols of `word` by rank and emits the tokens.
    pub(crate) fn merge(&mut self, tok: &Tokenizer, bpe: &Bpe, word: &[u8], out: &mut Vec<u32>) {
        let byte_level = bpe.pre.byte_encode();
        self.symbols.clear();
        self.queue.clear();
        let mut offs = 0usize;
        while offs < word.len() {
            let n = if byte_level {
                1
            } else {
                utf8_len(word[offs]).min(word.len() - offs)
            };
            let id = if byte_level {
                bpe.byte_sym[word[offs] as usize]
            } else {
                tok.texts.get(&word[offs..offs + n]).unwrap_or(NONE)
            };
            let index = self.symbols.len() as i32;
            offs += n;
            self.symbols.push(Symbol {
                start: (offs - n) as u32,
                len: n as u32,
                prev: index - 1,
                next: if offs == word.len() { -1 } else { index + 1 },
                id,
            });
        }
        for i in 1..self.symbols.len() as i32 {
            self.add_bigram(bpe, i - 1, i);
        }
        while let Some(Reverse((_, left, right, size))) = self.queue.pop() {
            let (l, r) = (self.symbols[left as usize], self.symbols[right as usize]);
            if l.len == 0 || r.len == 0 || l.len + r.len != size {
                continue;
            }
            let merged = bpe.merges.get(&(l.id, r.id)).map_or(NONE, |&(_, id)| id);
            let sym = &mut self.symbols[left as usize];
            sym.len += r.len;
            sym.next = r.next;
            sym.id = merged;
            let prev = sym.prev;
            self.symbols[right as usize].len = 0;
            if r.next >= 0 {
                self.symbols[r.next as usize].prev = left;
            }
            self.add_bigram(bpe, prev, left);
            self.add_bigram(bpe, left, r.next);
        }
        for s in &self.symbols {
            if s.len == 0 {
                continue;
            }
            if (s.id as usize) < tok.n_vocab {
                out.push(s.id);
            } else {
                for &b in &word[s.start as usize..(s.start + s.len) as usize] {
                    out.extend(bpe.fallback[b as usize]);
                }
            }
        }
    }

    fn add_bigram(&mut self, bpe: &Bpe, left: i32, right: i32) {
        if left == -1 || right == -1 {
            return;
        }
        let (l, r) = (self.symbols[left as usize], self.symbols[right as usize]);
        if l.id == NONE || r.id == NONE {
            return;
        }
        if let Some(&(rank, _)) = bpe.merges.get(&(l.id, r.id)) {
            self.queue.push(Reverse((rank, left, right, l.len + r.len)));
        }
    }
}
