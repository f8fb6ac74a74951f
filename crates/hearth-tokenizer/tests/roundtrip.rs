//! Random text: encoding never panics, and decoding gives the text back for
//! vocabularies whose decoding is lossless (no space clean-up).

use hearth_tokenizer::Tokenizer;

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

#[rustfmt::skip]
const ALPHABET: &[&str] = &[
    "a", "b", "e", "t", "the", "The", "Hello", " ", "  ", "   ", "\n", "\n\n", "\t", "\r\n", "'", "'s", "'re",
    ",", ".", "!", "?", "...", "(", ")", "{", "}", "<", ">", "/", "-", "_", "0", "1", "7", "42", "1234",
    "é", "ü", "ñ", "ß", "안녕", "하세요", "세계", "我", "喜欢", "こんにちは", "Привет", "مرحبا", "שלום",
    "👍", "🏽", "👨\u{200d}👩\u{200d}👧", "🏳\u{fe0f}\u{200d}🌈", "\u{200d}", "\u{3000}", "\u{a0}", "∑",
    "𠀋", "ꙮ", "\u{0301}", "<start_of_turn>", "<s>", "</s>", "<|endoftext|>", "<|im_end|>", "[CLS]",
];

fn random_text(rng: &mut Rng) -> String {
    let n = rng.below(30);
    (0..n)
        .map(|_| ALPHABET[rng.below(ALPHABET.len())])
        .collect()
}

fn random_bytes(rng: &mut Rng) -> Vec<u8> {
    let mut v = random_text(rng).into_bytes();
    for _ in 0..rng.below(4) {
        let pos = rng.below(v.len() + 1);
        let b = [0x80, 0xC3, 0xE2, 0xF0, 0xFF, 0xED, 0x00][rng.below(7)];
        v.insert(pos, b);
    }
    v
}

fn vocab(name: &str) -> Tokenizer {
    let dir = hearth_store::llama_cpp_models_dir().expect("llama.cpp test vocabularies");
    Tokenizer::from_gguf_path(dir.join(format!("ggml-vocab-{name}.gguf"))).expect("load vocabulary")
}

const ALL: &[&str] = &[
    "bert-bge",
    "command-r",
    "deepseek-coder",
    "deepseek-llm",
    "falcon",
    "gemma-4",
    "gpt-2",
    "llama-bpe",
    "llama-spm",
    "mpt",
    "phi-3",
    "qwen2",
    "qwen35",
    "refact",
    "starcoder",
];

#[test]
fn garbage_never_panics_in_any_family() {
    let mut rng = Rng(0x1234_5678_9ABC_DEF1);
    for name in ALL {
        let t = vocab(name);
        for _ in 0..200 {
            let text = random_bytes(&mut rng);
            for (add, parse) in [(false, false), (true, true)] {
                let ids = t.encode_bytes(&text, add, parse);
                assert!(ids.iter().all(|&id| (id as usize) < t.n_vocab()), "{name}");
                let _ = t.decode(&ids, add, parse);
            }
        }
    }
}

#[test]
fn lossless_families_round_trip() {
    let gemma3 = Tokenizer::from_gguf_path(hearth_store::default_model().expect("default model"))
        .expect("load");
    let mut rng = Rng(0xDEAD_BEEF_CAFE_F00D);
    let mut families: Vec<(String, Tokenizer)> = [
        "llama-spm",
        "qwen2",
        "qwen35",
        "deepseek-coder",
        "command-r",
    ]
    .iter()
    .map(|n| (n.to_string(), vocab(n)))
    .collect();
    families.push(("gemma3".into(), gemma3));
    for (name, t) in &families {
        for _ in 0..500 {
            let text = random_text(&mut rng);
            // parse_special on and off: special-token text comes back either way
            // (except that SPM's space prefix is re-added after a special token).
            for parse in [false, true] {
                if parse && t.add_space_prefix() {
                    continue;
                }
                let ids = t.encode(&text, false, parse);
                assert_eq!(
                    t.decode(&ids, false, true),
                    text,
                    "{name} parse_special={parse}: {ids:?}"
                );
            }
        }
    }
}

#[test]
fn tokenizer_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Tokenizer>();
}
