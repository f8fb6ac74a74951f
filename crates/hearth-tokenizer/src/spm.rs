//! SentencePiece BPE (llama.cpp's `llm_tokenizer_spm_session`): start from
//! UTF-8 characters, repeatedly merge the adjacent pair that forms the
//! highest-scoring token (leftmost on ties), then emit tokens, falling back
//! to `<0xXX>` byte tokens for pieces outside the vocabulary.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use crate::hash::FxHashMap;
use crate::unicode::utf8_len;
use crate::Tokenizer;

#[derive(Clone, Copy, Debug)]
struct Symbol {
    start: u32,
    len: u32,
    prev: i32,
    next: i32,
}

#[derive(Clone, Copy, Debug)]
struct Bigram {
    left: i32,
    right: i32,
    score: f32,
    size: u32,
}

impl PartialEq for Bigram {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Bigram {}
impl PartialOrd for Bigram {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Bigram {
    /// Higher score first, then the leftmost pair (as llama.cpp's comparator,
    /// which treats incomparable scores as equal).
    fn cmp(&self, other: &Self) -> Ordering {
        self.score
            .partial_cmp(&other.score)
            .unwrap_or(Ordering::Equal)
            .then_with(|| other.left.cmp(&self.left))
    }
}

/// Buffers reused across fragments.
#[derive(Default)]
pub(crate) struct Session {
    symbols: Vec<Symbol>,
    queue: BinaryHeap<Bigram>,
    cuts: Vec<usize>,
    /// Pieces already tokenized in this call: piece -> range of `cached`.
    cache: FxHashMap<Box<[u8]>, (u32, u32)>,
    cached: Vec<u32>,
    /// Whether to cut (and cache); pays off only for large inputs, since the
    /// first use builds the vocabulary's junction table.
    cut: bool,
}

/// Pieces up to this length are remembered within one `encode` call.
const CACHE_PIECE_LEN: usize = 64;
/// At most this many distinct pieces are remembered.
const CACHE_ENTRIES: usize = 1 << 16;

/// Inputs longer than this are first cut where no merge can cross ...
const CUT_ABOVE: usize = 16;
/// ... when the whole input is at least this long.
pub(crate) const CUT_INPUTS_FROM: usize = 4096;
/// ... into pieces of at least this many bytes.
const CUT_MIN: usize = 1;

impl Session {
    /// A session that cuts long pieces (and caches them) when `cut`.
    pub(crate) fn new(cut: bool) -> Session {
        Session {
            cut,
            ..Default::default()
        }
    }

    /// Tokenizes `text` (spaces already escaped to `▁`), appending to `out`.
    pub(crate) fn tokenize(&mut self, tok: &Tokenizer, text: &[u8], out: &mut Vec<u32>) {
        if !self.cut || text.len() <= CUT_ABOVE {
            return self.run(tok, text, out);
        }
        let mut cuts = std::mem::take(&mut self.cuts);
        tok.junctions().cuts(text, CUT_MIN, &mut cuts);
        let mut start = 0;
        for &end in &cuts {
            let piece = &text[start..end];
            start = end;
            if piece.len() > CACHE_PIECE_LEN {
                self.run(tok, piece, out);
                continue;
            }
            if let Some(&(a, n)) = self.cache.get(piece) {
                out.extend_from_slice(&self.cached[a as usize..(a + n) as usize]);
                continue;
            }
            let before = out.len();
            self.run(tok, piece, out);
            if self.cache.len() < CACHE_ENTRIES {
                let a = self.cached.len() as u32;
                self.cached.extend_from_slice(&out[before..]);
                self.cache
                    .insert(piece.into(), (a, (out.len() - before) as u32));
            }
        }
        self.cuts = cuts;
    }

    /// Tokenizes `text` as one piece (no cuts).
    pub(crate) fn run(&mut self, tok: &Tokenizer, text: &[u8], out: &mut Vec<u32>) {
        self.symbols.clear();
        self.queue.clear();
        let mut offs = 0usize;
        while offs < text.len() {
            let n = utf8_len(text[offs]).min(text.len() - offs);
            let index = self.symbols.len() as i32;
            offs += n;
            self.symbols.push(Symbol {
                start: (offs - n) as u32,
                len: n as u32,
                prev: index - 1,
                next: if offs == text.len() { -1 } else { index + 1 },
            });
        }
        for i in 1..self.symbols.len() as i32 {
            self.try_add_bigram(tok, text, i - 1, i);
        }
        while let Some(b) = self.queue.pop() {
            let (l, r) = (
                self.symbols[b.left as usize],
                self.symbols[b.right as usize],
            );
            if l.len == 0 || r.len == 0 || l.len + r.len != b.size {
                continue;
            }
            let left = &mut self.symbols[b.left as usize];
            left.len += r.len;
            left.next = r.next;
            let prev = left.prev;
            self.symbols[b.right as usize].len = 0;
            if r.next >= 0 {
                self.symbols[r.next as usize].prev = b.left;
            }
            self.try_add_bigram(tok, text, prev, b.left);
            self.try_add_bigram(tok, text, b.left, r.next);
        }
        let mut i = if self.symbols.is_empty() { -1 } else { 0 };
        while i != -1 {
            let s = self.symbols[i as usize];
            let piece = &text[s.start as usize..(s.start + s.len) as usize];
            // Merged symbols are always tokens; a single character may not be.
            match tok.text_to_token(piece) {
                Some(id) => out.push(id),
                None => {
                    for &b in piece {
                        out.extend(tok.byte_tokens[b as usize].or(tok.ids.unk));
                    }
                }
            }
            i = s.next;
        }
    }

    fn try_add_bigram(&mut self, tok: &Tokenizer, text: &[u8], left: i32, right: i32) {
        if left == -1 || right == -1 {
            return;
        }
        let l = self.symbols[left as usize];
        let r = self.symbols[right as usize];
        let size = l.len + r.len;
        let piece = &text[l.start as usize..(l.start + size) as usize];
        let Some(id) = tok.text_to_token(piece) else {
            return;
        };
        self.queue.push(Bigram {
            left,
            right,
            score: tok.scores[id as usize],
            size,
        });
    }
}
