//! Token ids back to text: pieces, full decoding (llama.cpp's
//! `llama_detokenize`), and a streaming decoder that never splits a UTF-8
//! character.

use crate::{TokenAttr, Tokenizer};

impl Tokenizer {
    /// The text of token `id` as llama.cpp's `llama_token_to_piece` gives it
    /// (no leading-space strip): `▁` turned back into spaces, byte tokens as
    /// their byte, byte-level BPE characters as their bytes. Control and
    /// unknown tokens are empty unless `special`. Empty for ids outside the
    /// vocabulary. May be an incomplete UTF-8 sequence.
    pub fn token_to_piece(&self, id: u32, special: bool) -> &[u8] {
        let i = id as usize;
        if i >= self.n_vocab {
            return &[];
        }
        if !special && self.attrs[i].intersects(TokenAttr::UNKNOWN | TokenAttr::CONTROL) {
            return &[];
        }
        let start = if i == 0 {
            0
        } else {
            self.piece_ends[i - 1] as usize
        };
        &self.pieces[start..self.piece_ends[i] as usize]
    }

    /// Token ids to bytes exactly as llama.cpp's `llama_detokenize`: with
    /// `remove_special`, a leading BOS and a trailing EOS are dropped (when
    /// the model adds them); `unparse_special` renders control tokens;
    /// the leading space that SPM's space prefix added is removed; BPE
    /// models that ask for it get llama.cpp's clean-up of spaces before
    /// punctuation and contractions.
    pub fn decode_bytes(
        &self,
        ids: &[u32],
        remove_special: bool,
        unparse_special: bool,
    ) -> Vec<u8> {
        let mut ids = ids;
        let mut remove_space = self.opts.add_space_prefix;
        if remove_special
            && self.opts.add_bos
            && ids.first().is_some_and(|&t| Some(t) == self.ids.bos)
        {
            remove_space = false;
            ids = &ids[1..];
        }
        if remove_special
            && self.opts.add_eos
            && ids.last().is_some_and(|&t| Some(t) == self.ids.eos)
        {
            ids = &ids[..ids.len() - 1];
        }
        let mut out = Vec::with_capacity(ids.len() * 4);
        for &id in ids {
            let piece = self.token_to_piece(id, unparse_special);
            let piece = if remove_space {
                piece.strip_prefix(b" ").unwrap_or(piece)
            } else {
                piece
            };
            remove_space = false;
            out.extend_from_slice(piece);
        }
        if self.opts.clean_spaces {
            clean_spaces(&mut out);
        }
        out
    }

    /// [`Self::decode_bytes`] as a string; bytes that are not valid UTF-8
    /// become U+FFFD.
    pub fn decode(&self, ids: &[u32], remove_special: bool, unparse_special: bool) -> String {
        String::from_utf8_lossy(&self.decode_bytes(ids, remove_special, unparse_special))
            .into_owned()
    }

    /// A decoder for tokens arriving one at a time; its chunks concatenate to
    /// exactly [`Self::decode`] of all the tokens.
    pub fn stream_decoder(&self, remove_special: bool, unparse_special: bool) -> StreamDecoder<'_> {
        StreamDecoder {
            tok: self,
            remove_special,
            unparse_special,
            first: true,
            remove_space: self.opts.add_space_prefix,
            held_eos: None,
            raw: Vec::new(),
            cleaned_upto: 0,
            pending: Vec::new(),
        }
    }
}

/// llama.cpp's three clean-up passes over the detokenized bytes (in place,
/// with the same index arithmetic, so its quirks carry over).
pub(crate) fn clean_spaces(text: &mut Vec<u8>) {
    // " ?", " !", " .", " ,": drop the space.
    let n = text.len();
    let mut total = usize::from(n > 0);
    for i in 1..n {
        let x = text[i];
        if text[i - 1] == b' ' && matches!(x, b'?' | b'!' | b'.' | b',') {
            total -= 1;
        }
        text[total] = x;
        total += 1;
    }
    text.truncate(total);

    // " ' ": drop both spaces around a lone apostrophe.
    let n = text.len();
    let mut total = usize::from(n > 0);
    let mut i = 1;
    while i < n {
        let x = text[i];
        if x == b'\'' && i + 1 < n && text[i - 1] == b' ' && text[i + 1] == b' ' {
            total -= 1;
            i += 1;
            text[i] = 0;
        }
        text[total] = x;
        total += 1;
        i += 1;
    }
    text.truncate(total);

    // " 's", " 'm", " 're", " 've": attach the contraction.
    let n = text.len();
    let mut total = usize::from(n > 0);
    for i in 1..n {
        let x = text[i];
        if text[i - 1] == b' ' && x == b'\'' && i + 1 < n {
            let x1 = text[i + 1];
            if x1 == b't' || x1 == b'd' {
                // kept
            } else if x1 == b's' || x1 == b'm' {
                total -= 1;
            } else if i + 2 < n {
                let x2 = text[i + 2];
                if x2 == b'e' && (x1 == b'r' || x1 == b'v') {
                    total -= 1;
                }
            }
        }
        text[total] = x;
        total += 1;
    }
    text.truncate(total);
}

/// Incremental detokenizer. Feed tokens with [`StreamDecoder::push`]; each
/// call returns the text that became final (never a partial UTF-8
/// character, never text the space clean-up could still change), and
/// [`StreamDecoder::finish`] returns the rest.
#[derive(Clone, Debug)]
pub struct StreamDecoder<'a> {
    tok: &'a Tokenizer,
    remove_special: bool,
    unparse_special: bool,
    first: bool,
    remove_space: bool,
    /// An EOS that is dropped if it turns out to be the last token.
    held_eos: Option<u32>,
    /// Pieces not yet cleaned (only with space clean-up).
    raw: Vec<u8>,
    /// How much of `raw` has been cleaned and moved to `pending`.
    cleaned_upto: usize,
    /// Final bytes not yet returned (an incomplete UTF-8 sequence).
    pending: Vec<u8>,
}

impl StreamDecoder<'_> {
    /// Adds one token; returns the newly final text, if any.
    pub fn push(&mut self, id: u32) -> Option<String> {
        let tok = self.tok;
        if std::mem::take(&mut self.first)
            && self.remove_special
            && tok.opts.add_bos
            && Some(id) == tok.ids.bos
        {
            self.remove_space = false;
            return None;
        }
        if let Some(eos) = self.held_eos.take() {
            self.append(eos);
        }
        if self.remove_special && tok.opts.add_eos && Some(id) == tok.ids.eos {
            self.held_eos = Some(id);
        } else {
            self.append(id);
        }
        self.settle(false);
        self.take_text(false)
    }

    /// Ends the stream (a trailing EOS is dropped as in `decode`); returns
    /// the remaining text, with any incomplete UTF-8 sequence as U+FFFD.
    pub fn finish(mut self) -> String {
        self.held_eos = None;
        self.settle(true);
        self.take_text(true).unwrap_or_default()
    }

    fn append(&mut self, id: u32) {
        let piece = self.tok.token_to_piece(id, self.unparse_special);
        let piece = if std::mem::take(&mut self.remove_space) {
            piece.strip_prefix(b" ").unwrap_or(piece)
        } else {
            piece
        };
        if self.tok.opts.clean_spaces {
            self.raw.extend_from_slice(piece);
        } else {
            self.pending.extend_from_slice(piece);
        }
    }

    /// Moves cleaned text from `raw` to `pending`, up to the last point the
    /// clean-up passes cannot change any more: one preceded by three and
    /// followed by one byte that are neither space nor apostrophe (every
    /// rewrite starts at a space and spans at most four bytes).
    fn settle(&mut self, all: bool) {
        if !self.tok.opts.clean_spaces {
            return;
        }
        let raw = &self.raw;
        let safe = |k: usize| k >= 3 && raw[k - 3..=k].iter().all(|&b| b != b' ' && b != b'\'');
        let cut = if all {
            raw.len()
        } else {
            match (self.cleaned_upto + 1..raw.len()).rev().find(|&k| safe(k)) {
                Some(k) => k,
                None => return,
            }
        };
        let mut seg = self.raw[self.cleaned_upto..cut].to_vec();
        clean_spaces(&mut seg);
        self.pending.extend_from_slice(&seg);
        self.cleaned_upto = cut;
        if self.cleaned_upto > 4096 {
            self.raw.drain(..self.cleaned_upto - 4);
            self.cleaned_upto = 4;
        }
    }

    /// The longest valid prefix of `pending` (invalid sequences become
    /// U+FFFD as in `String::from_utf8_lossy`); an incomplete trailing
    /// sequence stays unless `all`.
    fn take_text(&mut self, all: bool) -> Option<String> {
        let mut out = String::new();
        let mut rest = &self.pending[..];
        loop {
            match std::str::from_utf8(rest) {
                Ok(s) => {
                    out.push_str(s);
                    rest = &[];
                    break;
                }
                Err(e) => {
                    let (valid, after) = rest.split_at(e.valid_up_to());
                    out.push_str(std::str::from_utf8(valid).unwrap_or_default());
                    match e.error_len() {
                        Some(n) => {
                            out.push('\u{FFFD}');
                            rest = &after[n..];
                        }
                        None if all => {
                            out.push('\u{FFFD}');
                            rest = &[];
                            break;
                        }
                        None => {
                            rest = after;
                            break;
                        }
                    }
                }
            }
        }
        let keep = rest.len();
        let consumed = self.pending.len() - keep;
        self.pending.drain(..consumed);
        (!out.is_empty()).then_some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::clean_spaces;

    fn clean(s: &str) -> String {
        let mut v = s.as_bytes().to_vec();
        clean_spaces(&mut v);
        String::from_utf8(v).unwrap()
    }

    #[test]
    fn clean_up_passes() {
        assert_eq!(clean("Hello , world !"), "Hello, world!");
        assert_eq!(
            clean("it 's we 're I 'll don 't"),
            "it's we're I 'll don 't"
        );
        assert_eq!(clean("a ' b"), "a'b");
        assert_eq!(clean(""), "");
    }
}
