//! DRY ("don't repeat yourself"): penalizes tokens that would extend a
//! repetition of the recent context, with sequence breakers that reset it
//! (llama.cpp `llama_sampler_dry`, after koboldcpp PR 982).

use std::collections::HashMap;

/// Sequence breakers turned into tokens: a head token and the tails that must
/// precede it (empty for single-token breakers).
#[derive(Clone, Debug, Default)]
pub struct DryBreakers {
    by_head: HashMap<u32, Vec<Vec<u32>>>,
}

/// Longest breaker tail kept, as llama.cpp's `MAX_SEQ_LEN`.
const MAX_TAIL_LEN: usize = 20;

impl DryBreakers {
    /// Builds breakers from strings, given the vocabulary's pieces and a
    /// tokenizer: a token is a head when its text contains the breaker, or
    /// ends with a prefix of it (then the rest, tokenized, is the tail).
    pub fn new(
        breakers: &[String],
        pieces: impl Fn(u32) -> String,
        n_vocab: u32,
        tokenize: impl Fn(&str) -> Vec<u32>,
    ) -> Self {
        let mut by_head: HashMap<u32, Vec<Vec<u32>>> = HashMap::new();
        let mut add = |head: u32, tail: Vec<u32>| {
            let tails = by_head.entry(head).or_default();
            if !tails.contains(&tail) {
                tails.push(tail);
            }
        };
        for s in breakers.iter().filter(|s| !s.is_empty()) {
            let bytes = s.as_bytes();
            for id in 0..n_vocab {
                let word = pieces(id);
                let w = word.as_bytes();
                if word.contains(s.as_str()) {
                    add(id, Vec::new());
                    continue;
                }
                // Each occurrence of the breaker's first byte that starts a
                // prefix of the breaker running to the end of the word.
                for pos in (0..w.len()).filter(|&p| w[p] == bytes[0]) {
                    let mut i = 1;
                    while i < bytes.len() && pos + i < w.len() && w[pos + i] == bytes[i] {
                        i += 1;
                    }
                    if pos + i == w.len() || i == bytes.len() {
                        let rest = String::from_utf8_lossy(&bytes[i..]);
                        let mut tail = tokenize(&rest);
                        tail.truncate(MAX_TAIL_LEN);
                        add(id, tail);
                    }
                }
            }
        }
        DryBreakers { by_head }
    }

    /// Breakers from explicit token sequences (head first), for tests and
    /// callers that tokenized already.
    pub fn from_sequences(seqs: &[Vec<u32>]) -> Self {
        let mut by_head: HashMap<u32, Vec<Vec<u32>>> = HashMap::new();
        for s in seqs.iter().filter(|s| !s.is_empty()) {
            by_head.entry(s[0]).or_default().push(s[1..].to_vec());
        }
        DryBreakers { by_head }
    }

    fn tails(&self, head: u32) -> &[Vec<u32>] {
        self.by_head.get(&head).map_or(&[], Vec::as_slice)
    }
}

/// DRY parameters.
#[derive(Clone, Debug, PartialEq)]
pub struct DryParams {
    pub multiplier: f32,
    pub base: f32,
    pub allowed_length: usize,
    /// How many recent tokens to scan; negative = the whole context.
    pub penalty_last_n: i32,
}

/// Penalty per candidate id (in f64, as llama.cpp subtracts it): `multiplier * base^(len - allowed)` for tokens
/// that would extend a repeat of at least `allowed_length` tokens.
/// `history` is oldest first.
pub fn penalties(history: &[u32], p: &DryParams, breakers: &DryBreakers) -> HashMap<u32, f64> {
    let mut out = HashMap::new();
    if p.multiplier == 0.0 || p.base < 1.0 || p.penalty_last_n == 0 {
        return out;
    }
    let last_n = if p.penalty_last_n < 0 {
        history.len()
    } else {
        history.len().min(p.penalty_last_n as usize)
    };
    if last_n <= p.allowed_length {
        return out;
    }
    // rat(i): the i-th token counting back from the newest.
    let rat = |i: usize| history[history.len() - 1 - i];

    // Step 1: a restart sequence limits how far back a repeat may reach.
    let mut rep_limit = last_n;
    for i in 0..last_n {
        let mut longest: Option<usize> = None;
        for tail in breakers.tails(rat(i)) {
            let len = tail.len();
            if longest.is_some_and(|l| len <= l) || len > i {
                continue;
            }
            if (0..len).all(|o| tail[o] == rat(i - o - 1)) {
                longest = Some(len);
            }
        }
        if let Some(len) = longest {
            rep_limit = i - len;
            break;
        }
    }
    if rep_limit < p.allowed_length {
        return out;
    }

    // Step 2: for each position, how long a suffix of the context ends there
    // (reverse Z-algorithm), capped at rep_limit.
    let last = last_n - 1;
    let mut repeat = vec![0usize; last_n];
    let (mut lt, mut rt) = (0usize, 0usize);
    for k in 1..last_n {
        if k > rt {
            let mut n = 0;
            while n + k < last_n && rat(n) == rat(n + k) {
                n += 1;
            }
            repeat[last - k] = n.min(rep_limit);
            if n > 0 {
                lt = k;
                rt = k + n - 1;
            }
        } else {
            let pair = k - lt;
            let right_len = rt - k + 1;
            if repeat[last - pair] < right_len {
                repeat[last - k] = repeat[last - pair].min(rep_limit);
            } else {
                let mut i = rt + 1;
                while i < last_n && rat(i) == rat(i - k) {
                    i += 1;
                }
                repeat[last - k] = (i - k).min(rep_limit);
                lt = k;
                rt = i - 1;
            }
        }
    }

    // Step 3: the token after each repeat would extend it.
    let mut max_repeat: HashMap<u32, usize> = HashMap::new();
    for (i, &len) in repeat.iter().enumerate().take(last_n - 1) {
        if len >= p.allowed_length {
            let token = rat(last_n - 2 - i);
            let e = max_repeat.entry(token).or_insert(len);
            *e = (*e).max(len);
        }
    }

    // Step 4: penalties, with the exponent clamped against f32 overflow.
    const FLOAT_MAX_LOG: f32 = 88.722_84;
    let max_exponent = if p.base > 1.000_001 {
        (FLOAT_MAX_LOG / p.base.ln()) as i64
    } else {
        0
    };
    for (token, len) in max_repeat {
        let single_breaker = breakers.tails(token).iter().any(Vec::is_empty);
        if single_breaker {
            continue;
        }
        let mut exp = len as i64 - p.allowed_length as i64;
        if max_exponent > 0 && exp > max_exponent {
            exp = max_exponent;
        }
        // C++ `std::pow(float, int)` computes in double.
        out.insert(
            token,
            f64::from(p.multiplier) * f64::from(p.base).powi(exp as i32),
        );
    }
    out
}
