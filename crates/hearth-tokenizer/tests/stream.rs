//! Streaming detokenization: chunks are whole UTF-8 characters, their
//! concatenation is exactly the full decode, and (for Gemma) the full decode
//! is the concatenation of llama.cpp's reference pieces.

use std::sync::OnceLock;

use hearth_tokenizer::{TokenAttr, Tokenizer};
use serde_json::Value;

fn vocab(name: &str) -> Tokenizer {
    let dir = hearth_store::llama_cpp_models_dir().expect("llama.cpp test vocabularies");
    Tokenizer::from_gguf_path(dir.join(format!("ggml-vocab-{name}.gguf"))).expect("load vocabulary")
}

fn gemma() -> &'static Tokenizer {
    static TOK: OnceLock<Tokenizer> = OnceLock::new();
    TOK.get_or_init(|| {
        let path = hearth_store::default_model().expect("default model");
        Tokenizer::from_gguf_path(path).expect("load Gemma 3 vocabulary")
    })
}

fn llama_spm() -> &'static Tokenizer {
    static TOK: OnceLock<Tokenizer> = OnceLock::new();
    TOK.get_or_init(|| vocab("llama-spm"))
}

/// Streams `ids` one at a time; returns the chunks (None pushes are recorded
/// as empty strings) and the final flush.
fn stream(
    t: &Tokenizer,
    ids: &[u32],
    remove_special: bool,
    unparse: bool,
) -> (Vec<String>, String) {
    let mut d = t.stream_decoder(remove_special, unparse);
    let chunks = ids
        .iter()
        .map(|&id| d.push(id).unwrap_or_default())
        .collect();
    (chunks, d.finish())
}

/// The stream of `ids` equals the full decode, with no replacement
/// characters that the full decode does not have.
fn check_stream(t: &Tokenizer, ids: &[u32], remove_special: bool, unparse: bool) -> Vec<String> {
    let (chunks, rest) = stream(t, ids, remove_special, unparse);
    let full = t.decode(ids, remove_special, unparse);
    let joined: String = chunks.concat() + &rest;
    assert_eq!(joined, full, "stream of {ids:?}");
    if !full.contains('\u{FFFD}') {
        assert!(chunks.iter().all(|c| !c.contains('\u{FFFD}')), "{chunks:?}");
    }
    chunks
}

fn byte_tokens(t: &Tokenizer, ids: &[u32]) -> usize {
    ids.iter()
        .filter(|&&id| {
            t.token_attr(id)
                .is_some_and(|a| a.contains(TokenAttr::BYTE))
        })
        .count()
}

const TEXTS: &[&str] = &[
    "안녕하세요 세계",
    "한국어 텍스트를 스트리밍합니다: 가나다라마바사",
    "family: 👨\u{200d}👩\u{200d}👧\u{200d}👦 and flag 🏳\u{fe0f}\u{200d}🌈",
    "👍🏽 thumbs, 🧑🏿\u{200d}🚀 astronaut",
    "rare: 𠀋𪚲 ꙮ 𓀀 and \u{1F9EC}",
    "plain ASCII with  two spaces",
];

#[test]
fn gemma_streams_korean_emoji_and_byte_fallback() {
    let t = gemma();
    let mut saw_bytes = 0;
    for text in TEXTS {
        let ids = t.encode(text, true, true);
        saw_bytes += byte_tokens(t, &ids);
        check_stream(t, &ids, true, false);
        assert_eq!(t.decode(&ids, true, false), *text);
    }
    assert!(saw_bytes > 0, "no byte-fallback token was exercised");
}

#[test]
fn llama_spm_streams_korean_emoji_and_byte_fallback() {
    let t = llama_spm();
    let mut saw_bytes = 0;
    for text in TEXTS {
        let ids = t.encode(text, true, false);
        saw_bytes += byte_tokens(t, &ids);
        for remove_special in [false, true] {
            check_stream(t, &ids, remove_special, false);
        }
        // The space prefix added at encoding is removed again.
        assert_eq!(t.decode(&ids[1..], false, false), *text);
    }
    assert!(
        saw_bytes > 20,
        "Korean should need byte fallback in the 32k llama vocabulary"
    );
}

#[test]
fn partial_characters_are_held_back() {
    let t = llama_spm();
    // U+20B2F is not in the vocabulary: four byte tokens.
    let ids = t.encode("\u{20B2F}", false, false);
    let bytes: Vec<u32> = ids
        .iter()
        .copied()
        .filter(|&id| {
            t.token_attr(id)
                .is_some_and(|a| a.contains(TokenAttr::BYTE))
        })
        .collect();
    assert_eq!(bytes.len(), 4, "{ids:?}");
    let mut d = t.stream_decoder(false, false);
    let out: Vec<Option<String>> = ids.iter().map(|&id| d.push(id)).collect();
    // Only the push completing the character returns it.
    let some: Vec<&String> = out.iter().flatten().collect();
    assert_eq!(some.last().map(|s| s.as_str()), Some("\u{20B2F}"));
    assert!(
        out[out.len() - 4..out.len() - 1]
            .iter()
            .all(Option::is_none),
        "{out:?}"
    );
    assert_eq!(d.finish(), "");
}

#[test]
fn gemma_stream_matches_reference_pieces() {
    let t = gemma();
    let raw = include_str!("fixtures/gemma3-270m-tokenize.jsonl");
    let wanted = [
        "v_t13_korean",
        "v_t09_emoji_zwj",
        "v_t10_emoji_skin",
        "v_t31_unknown_bytes",
        "v_t11_cjk",
    ];
    let mut n = 0;
    for line in raw.lines() {
        let v: Value = serde_json::from_str(line).expect("json line");
        if !wanted.contains(&v["id"].as_str().unwrap_or("")) {
            continue;
        }
        let mut ids = Vec::new();
        let mut reference = Vec::new();
        for p in v["pieces"].as_array().expect("pieces") {
            ids.push(p["id"].as_u64().expect("id") as u32);
            match &p["piece"] {
                Value::String(s) => reference.extend_from_slice(s.as_bytes()),
                Value::Array(a) => {
                    reference.extend(a.iter().map(|b| b.as_u64().expect("byte") as u8))
                }
                other => panic!("bad piece {other}"),
            }
        }
        let chunks = check_stream(t, &ids, false, true);
        assert_eq!(chunks.concat().as_bytes(), &reference[..], "{}", v["id"]);
        n += 1;
    }
    assert_eq!(n, wanted.len());
}

#[test]
fn byte_level_bpe_streams_multibyte_characters() {
    // GPT-2-style vocabularies split rare characters into byte-level tokens
    // whose pieces are partial UTF-8.
    for name in ["llama-bpe", "qwen2", "gpt-2"] {
        let t = vocab(name);
        for text in TEXTS {
            let ids = t.encode(text, false, false);
            check_stream(&t, &ids, false, false);
            if name != "gpt-2" {
                // gpt-2's clean-up pass rewrites " ," etc.; the others round-trip.
                assert_eq!(t.decode(&ids, false, false), *text, "{name}");
            }
        }
    }
}

#[test]
fn space_clean_up_is_identical_when_streamed() {
    // gpt-2 decodes with llama.cpp's clean-up of " ," " 's" " ' " etc.
    let t = vocab("gpt-2");
    let text =
        "Hello , world ! it 's fine , isn 't it ? we 're ' here ' . I 'm sure they 've said so .";
    let ids = t.encode(text, false, false);
    let chunks = check_stream(&t, &ids, false, false);
    assert_eq!(
        chunks.concat() + &stream(&t, &ids, false, false).1,
        "Hello, world! it's fine, isn 't it? we're'here '. I'm sure they've said so."
    );
}

#[test]
fn eos_and_control_tokens_stream_like_decode() {
    let t = gemma();
    let eos = t.eos().expect("eos");
    let mut ids = t.encode("one", true, true);
    ids.push(eos);
    ids.extend(t.encode(" two", false, true));
    ids.push(eos);
    for unparse in [false, true] {
        check_stream(t, &ids, true, unparse);
        check_stream(t, &ids, false, unparse);
    }
}

/// A small deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[test]
fn random_token_streams_equal_decode() {
    let gpt2 = vocab("gpt-2");
    for (t, name) in [
        (gemma(), "gemma3"),
        (llama_spm(), "llama-spm"),
        (&gpt2, "gpt-2"),
    ] {
        // Tokens that exercise the tricky paths: spaces, apostrophes,
        // punctuation, byte tokens, multi-byte pieces, specials.
        let mut interesting: Vec<u32> = Vec::new();
        for s in [
            " ", "'", " '", ",", ".", "?", "!", "s", "re", "ve", "t", "m", "ll", "d", "\n", "é",
        ] {
            interesting.extend(t.encode(s, false, false));
        }
        interesting.extend(t.bos());
        interesting.extend(t.eos());
        interesting.extend((0..t.n_vocab() as u32).filter(|&i| {
            t.token_attr(i).is_some_and(|a| a.contains(TokenAttr::BYTE)) && i % 7 == 0
        }));
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ t.n_vocab() as u64);
        for _ in 0..300 {
            let len = 1 + rng.below(40);
            let ids: Vec<u32> = (0..len)
                .map(|_| {
                    if rng.below(3) == 0 {
                        rng.below(t.n_vocab()) as u32
                    } else {
                        interesting[rng.below(interesting.len())]
                    }
                })
                .collect();
            for (remove, unparse) in [(false, false), (true, false), (true, true)] {
                let (chunks, rest) = stream(t, &ids, remove, unparse);
                assert_eq!(
                    chunks.concat() + &rest,
                    t.decode(&ids, remove, unparse),
                    "{name}: {ids:?} remove={remove} unparse={unparse}"
                );
            }
        }
    }
}
