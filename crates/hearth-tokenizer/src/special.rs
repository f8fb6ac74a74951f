//! Splitting text around special tokens before tokenizing the rest
//! (llama.cpp's `tokenizer_st_partition`).
//!
//! llama.cpp takes the special tokens longest first and, for each, cuts every
//! occurrence out of the text fragments still unprocessed; a token's LSTRIP /
//! RSTRIP attribute also drops the ASCII whitespace beside it. We do the same,
//! but only for the tokens that occur in the text at all, found in one pass
//! with a byte trie, so the cost does not grow with the number of special
//! tokens in the vocabulary (Gemma has thousands).

use memchr::memmem;

use crate::TokenAttr;

/// A piece of the input: raw text to tokenize, or a special token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fragment {
    Text { start: usize, len: usize },
    Token(u32),
}

#[derive(Clone, Debug, Default)]
struct Node {
    /// `(byte, child)`, sorted by byte.
    children: Vec<(u8, u32)>,
    /// Index into the special list of the token ending here.
    terminal: Option<u32>,
}

/// The special tokens of a vocabulary in llama.cpp's priority order, with a
/// trie over their texts.
#[derive(Clone, Debug)]
pub(crate) struct Specials {
    /// Token ids, longest text first (ties by id).
    ids: Vec<u32>,
    nodes: Vec<Node>,
    first_bytes: [bool; 256],
}

/// C `isspace` in the "C" locale.
#[inline]
pub(crate) fn is_c_space(b: u8) -> bool {
    b == b' ' || (0x09..=0x0D).contains(&b)
}

impl Specials {
    /// `ids` must already be in priority order; `text(id)` gives a token's text.
    pub(crate) fn new<'a>(ids: Vec<u32>, text: impl Fn(u32) -> &'a [u8]) -> Specials {
        let mut s = Specials {
            ids,
            nodes: vec![Node::default()],
            first_bytes: [false; 256],
        };
        for (idx, &id) in s.ids.iter().enumerate() {
            let t = text(id);
            if let Some(&b) = t.first() {
                s.first_bytes[b as usize] = true;
            }
            let mut node = 0usize;
            for &b in t {
                node = match s.nodes[node].children.binary_search_by_key(&b, |&(c, _)| c) {
                    Ok(i) => s.nodes[node].children[i].1 as usize,
                    Err(i) => {
                        let new = s.nodes.len();
                        s.nodes.push(Node::default());
                        s.nodes[node].children.insert(i, (b, new as u32));
                        new
                    }
                };
            }
            // Texts are unique, so a terminal is never overwritten.
            s.nodes[node].terminal.get_or_insert(idx as u32);
        }
        s
    }

    /// Indexes (into the priority list) of the special tokens that occur in
    /// `text`, sorted, without duplicates.
    fn occurring(&self, text: &[u8]) -> Vec<u32> {
        let mut seen = vec![false; self.ids.len()];
        let mut found = Vec::new();
        for start in 0..text.len() {
            if !self.first_bytes[text[start] as usize] {
                continue;
            }
            let mut node = 0usize;
            for &b in &text[start..] {
                let children = &self.nodes[node].children;
                match children.binary_search_by_key(&b, |&(c, _)| c) {
                    Ok(i) => node = children[i].1 as usize,
                    Err(_) => break,
                }
                if let Some(t) = self.nodes[node].terminal {
                    if !seen[t as usize] {
                        seen[t as usize] = true;
                        found.push(t);
                    }
                }
            }
        }
        found.sort_unstable();
        found
    }

    /// Splits `text` around special tokens. With `parse_special` off, CONTROL
    /// and UNKNOWN tokens are left in the text; USER_DEFINED ones are still
    /// cut out (as in llama.cpp and HF tokenizers).
    pub(crate) fn partition<'a>(
        &self,
        text: &[u8],
        parse_special: bool,
        attr: impl Fn(u32) -> TokenAttr,
        token_text: impl Fn(u32) -> &'a [u8],
    ) -> Vec<Fragment> {
        let mut frags = Vec::new();
        if text.is_empty() {
            return frags;
        }
        frags.push(Fragment::Text {
            start: 0,
            len: text.len(),
        });
        let mut next = Vec::new();
        for idx in self.occurring(text) {
            let id = self.ids[idx as usize];
            let a = attr(id);
            if !parse_special && a.intersects(TokenAttr::CONTROL | TokenAttr::UNKNOWN) {
                continue;
            }
            let needle = token_text(id);
            let finder = memmem::Finder::new(needle);
            next.clear();
            for &f in &frags {
                let Fragment::Text { start, len } = f else {
                    next.push(f);
                    continue;
                };
                let (mut off, mut len) = (start, len);
                loop {
                    let Some(rel) = finder.find(&text[off..off + len]) else {
                        next.push(Fragment::Text { start: off, len });
                        break;
                    };
                    let m = off + rel;
                    let mut left = rel;
                    if a.contains(TokenAttr::LSTRIP) {
                        while left > 0 && is_c_space(text[off + left - 1]) {
                            left -= 1;
                        }
                    }
                    if left > 0 {
                        next.push(Fragment::Text {
                            start: off,
                            len: left,
                        });
                    }
                    next.push(Fragment::Token(id));
                    let end = off + len;
                    let mut r = m + needle.len();
                    if r >= end {
                        break;
                    }
                    if a.contains(TokenAttr::RSTRIP) {
                        while r < end && is_c_space(text[r]) {
                            r += 1;
                        }
                    }
                    if r == end {
                        break;
                    }
                    off = r;
                    len = end - r;
                }
            }
            std::mem::swap(&mut frags, &mut next);
        }
        frags
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(tokens: &[(&str, TokenAttr)], text: &str) -> Vec<String> {
        let mut ids: Vec<u32> = (0..tokens.len() as u32).collect();
        ids.sort_by_key(|&i| std::cmp::Reverse(tokens[i as usize].0.len()));
        let s = Specials::new(ids, |i| tokens[i as usize].0.as_bytes());
        s.partition(
            text.as_bytes(),
            true,
            |i| tokens[i as usize].1,
            |i| tokens[i as usize].0.as_bytes(),
        )
        .into_iter()
        .map(|f| match f {
            Fragment::Text { start, len } => text[start..start + len].to_string(),
            Fragment::Token(i) => format!("[{}]", tokens[i as usize].0),
        })
        .collect()
    }

    #[test]
    fn longest_token_wins_even_when_later() {
        let t = [("AB", TokenAttr::CONTROL), ("BCD", TokenAttr::CONTROL)];
        assert_eq!(run(&t, "xABCD"), ["xA", "[BCD]"]);
    }

    #[test]
    fn strips_whitespace_around() {
        let t = [(
            "<s>",
            TokenAttr::CONTROL | TokenAttr::LSTRIP | TokenAttr::RSTRIP,
        )];
        assert_eq!(run(&t, "a  <s>  b<s>"), ["a", "[<s>]", "b", "[<s>]"]);
    }

    #[test]
    fn repeated_and_adjacent() {
        let t = [
            ("\n", TokenAttr::USER_DEFINED),
            ("\n\n", TokenAttr::USER_DEFINED),
        ];
        assert_eq!(run(&t, "a\n\n\nb\n"), ["a", "[\n\n]", "[\n]", "b", "[\n]"]);
    }
}
