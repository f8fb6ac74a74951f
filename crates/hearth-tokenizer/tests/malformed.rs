//! Vocabularies built by hand: malformed ones must be rejected with a typed
//! error (never a panic), small valid ones must behave like llama.cpp.

use hearth_gguf::{Array, Metadata, Value};
use hearth_tokenizer::{TokenAttr, Tokenizer, TokenizerError, VocabType};

const NORMAL: i32 = 1;
const UNKNOWN: i32 = 2;
const CONTROL: i32 = 3;
const BYTE: i32 = 6;

fn strings(v: &[&str]) -> Value {
    Value::Array(Array::String(v.iter().map(|s| s.to_string()).collect()))
}

/// A small SPM vocabulary: `<unk> <s> </s>`, the 256 byte tokens, then `extra`
/// (NORMAL, scores decreasing so earlier tokens merge first).
fn spm(extra: &[&str]) -> Metadata {
    let mut tokens: Vec<String> = vec!["<unk>".into(), "<s>".into(), "</s>".into()];
    let mut types = vec![UNKNOWN, CONTROL, CONTROL];
    for b in 0..=255u8 {
        tokens.push(format!("<0x{b:02X}>"));
        types.push(BYTE);
    }
    for e in extra {
        tokens.push(e.to_string());
        types.push(NORMAL);
    }
    let scores: Vec<f32> = (0..tokens.len()).map(|i| -(i as f32)).collect();
    let mut md = Metadata::new();
    md.set("tokenizer.ggml.model", Value::String("llama".into()));
    md.set("tokenizer.ggml.tokens", Value::Array(Array::String(tokens)));
    md.set("tokenizer.ggml.scores", Value::Array(Array::F32(scores)));
    md.set("tokenizer.ggml.token_type", Value::Array(Array::I32(types)));
    md
}

fn err(md: &Metadata) -> TokenizerError {
    match Tokenizer::from_metadata(md) {
        Ok(_) => panic!("expected an error"),
        Err(e) => e,
    }
}

#[test]
fn valid_handmade_spm_vocabulary() {
    let md = spm(&["▁", "a", "b", "▁a", "ab", "▁ab"]);
    let t = Tokenizer::from_metadata(&md).unwrap();
    assert_eq!(t.vocab_type(), VocabType::Spm);
    assert_eq!(t.n_vocab(), 3 + 256 + 6);
    let id = |s: &str| t.token_id(s).unwrap();
    assert_eq!(t.encode("ab", false, false), vec![id("▁ab")]);
    assert_eq!(t.encode("ab", true, false), vec![1, id("▁ab")]);
    // Unknown characters fall back to bytes.
    assert_eq!(
        t.encode("é", false, false),
        vec![id("▁"), id("<0xC3>"), id("<0xA9>")]
    );
    // llama_detokenize strips the space prefix only when no BOS leads the
    // ids (with remove_special a leading BOS is dropped and the space kept).
    let ids = t.encode("ab é", true, false);
    assert_eq!(t.decode(&ids[1..], false, false), "ab é");
    assert_eq!(t.decode(&ids, true, false), " ab é");
    assert_eq!(t.decode(&ids, false, false), " ab é");
    assert!(t.is_eog(2));
    assert_eq!(t.special_ids().nl, Some(id("<0x0A>")));
}

#[test]
fn lengths_must_agree() {
    let mut md = spm(&["a"]);
    md.set(
        "tokenizer.ggml.scores",
        Value::Array(Array::F32(vec![0.0; 5])),
    );
    assert!(matches!(
        err(&md),
        TokenizerError::LengthMismatch {
            key: "tokenizer.ggml.scores",
            len: 5,
            n_vocab: 260
        }
    ));

    let mut md = spm(&["a"]);
    md.set(
        "tokenizer.ggml.token_type",
        Value::Array(Array::I32(vec![1; 300])),
    );
    assert!(matches!(
        err(&md),
        TokenizerError::LengthMismatch {
            key: "tokenizer.ggml.token_type",
            len: 300,
            n_vocab: 260
        }
    ));
}

#[test]
fn scores_of_the_wrong_type() {
    let mut md = spm(&["a"]);
    md.set("tokenizer.ggml.scores", strings(&["x"]));
    assert!(matches!(
        err(&md),
        TokenizerError::WrongArrayType {
            key: "tokenizer.ggml.scores",
            ..
        }
    ));
}

#[test]
fn byte_tokens_must_be_hex() {
    for bad in ["<0x-1>", "<0xZZ>", "<0x1>", "<0x100>", "0x41", "<0X41>"] {
        let mut md = spm(&[]);
        let Some(Value::Array(Array::String(tokens))) = md.get("tokenizer.ggml.tokens").cloned()
        else {
            panic!()
        };
        let mut tokens = tokens;
        tokens[3 + 0x41] = bad.to_string();
        md.set("tokenizer.ggml.tokens", Value::Array(Array::String(tokens)));
        match err(&md) {
            TokenizerError::BadByteToken { id, text } => {
                assert_eq!((id, text.as_str()), (3 + 0x41, bad));
            }
            e => panic!("{bad}: {e}"),
        }
    }
}

#[test]
fn bos_and_eos_must_be_in_the_vocabulary() {
    for (key, v) in [
        ("tokenizer.ggml.bos_token_id", Value::U32(260)),
        ("tokenizer.ggml.eos_token_id", Value::U32(1_000_000)),
        ("tokenizer.ggml.bos_token_id", Value::I32(-1)),
    ] {
        let mut md = spm(&["a"]);
        md.set(key, v);
        match err(&md) {
            TokenizerError::SpecialTokenOutOfRange {
                key: k, n_vocab, ..
            } => {
                assert_eq!((k, n_vocab), (key, 260));
            }
            e => panic!("{key}: {e}"),
        }
    }
    // In range is fine, and other ids out of range keep llama.cpp's default.
    let mut md = spm(&["a"]);
    md.set("tokenizer.ggml.eos_token_id", Value::U32(259));
    md.set("tokenizer.ggml.padding_token_id", Value::U32(99_999));
    let t = Tokenizer::from_metadata(&md).unwrap();
    assert_eq!(t.eos(), Some(259));
    assert_eq!(t.special_ids().pad, None);
}

#[test]
fn duplicate_and_empty_tokens() {
    let md = spm(&["a", "b", "a"]);
    assert!(matches!(
        err(&md),
        TokenizerError::DuplicateToken {
            id: 261,
            first: 259,
            ..
        }
    ));
    // An empty token is renamed as in llama.cpp, not an error.
    let t = Tokenizer::from_metadata(&spm(&["a", ""])).unwrap();
    assert_eq!(t.token_text(260), Some("[EMPTY_260]"));
}

#[test]
fn empty_vocabulary_and_missing_keys() {
    let mut md = spm(&[]);
    md.set("tokenizer.ggml.tokens", Value::Array(Array::String(vec![])));
    md.set("tokenizer.ggml.scores", Value::Array(Array::F32(vec![])));
    md.set(
        "tokenizer.ggml.token_type",
        Value::Array(Array::I32(vec![])),
    );
    assert!(matches!(err(&md), TokenizerError::EmptyVocab));

    assert!(matches!(err(&Metadata::new()), TokenizerError::Gguf(_)));

    let mut md = spm(&[]);
    md.set("tokenizer.ggml.tokens", Value::String("nope".into()));
    assert!(matches!(err(&md), TokenizerError::Gguf(_)));

    let mut md = spm(&[]);
    md.set("tokenizer.ggml.add_bos_token", Value::String("yes".into()));
    assert!(matches!(err(&md), TokenizerError::Gguf(_)));
}

#[test]
fn unknown_models_and_pre_tokenizers() {
    let mut md = spm(&[]);
    md.set(
        "tokenizer.ggml.model",
        Value::String("sentencepiece9".into()),
    );
    assert!(matches!(err(&md), TokenizerError::UnknownModel { .. }));

    md.set("tokenizer.ggml.model", Value::String("t5".into()));
    assert!(matches!(err(&md), TokenizerError::UnsupportedModel { .. }));

    md.set("tokenizer.ggml.model", Value::String("gpt2".into()));
    assert!(matches!(err(&md), TokenizerError::MissingMerges));

    md.set("tokenizer.ggml.merges", strings(&["a b"]));
    md.set("tokenizer.ggml.pre", Value::String("no-such-pre".into()));
    assert!(matches!(
        err(&md),
        TokenizerError::UnknownPreTokenizer { .. }
    ));
}

/// A tiny byte-level BPE vocabulary: all 256 GPT-2 byte characters plus merges.
fn bpe(merges: &[&str], extra: &[&str]) -> Metadata {
    fn byte_char(b: u8) -> char {
        let printable = matches!(b, 0x21..=0x7E | 0xA1..=0xAC | 0xAE..=0xFF);
        if printable {
            return b as char;
        }
        let n = (0..b)
            .filter(|&x| !matches!(x, 0x21..=0x7E | 0xA1..=0xAC | 0xAE..=0xFF))
            .count();
        char::from_u32(256 + n as u32).unwrap()
    }
    let mut tokens: Vec<String> = (0..=255u8).map(|b| byte_char(b).to_string()).collect();
    tokens.extend(extra.iter().map(|s| s.to_string()));
    tokens.push("<|endoftext|>".into());
    let mut types = vec![NORMAL; tokens.len()];
    *types.last_mut().unwrap() = CONTROL;
    let mut md = Metadata::new();
    md.set("tokenizer.ggml.model", Value::String("gpt2".into()));
    md.set("tokenizer.ggml.pre", Value::String("gpt-2".into()));
    md.set("tokenizer.ggml.tokens", Value::Array(Array::String(tokens)));
    md.set("tokenizer.ggml.token_type", Value::Array(Array::I32(types)));
    md.set("tokenizer.ggml.merges", strings(merges));
    md
}

#[test]
fn valid_handmade_bpe_vocabulary() {
    let md = bpe(
        &["h e", "l l", "he ll", "hell o", "Ġ w"],
        &["he", "ll", "hell", "hello", "Ġw"],
    );
    let t = Tokenizer::from_metadata(&md).unwrap();
    let id = |s: &str| t.token_id(s).unwrap();
    assert_eq!(
        t.encode("hello world", false, false)[..2],
        [id("hello"), id("Ġw")]
    );
    assert_eq!(
        t.decode(&t.encode("hello world", false, false), false, false),
        "hello world"
    );
    // BOS/EOS default to 11 for gpt2, and <|endoftext|> is detected as EOT/EOG.
    assert_eq!(t.bos(), Some(11));
    let eot = id("<|endoftext|>");
    assert_eq!(t.eot(), Some(eot));
    assert!(t.is_eog(eot));
    // Invalid UTF-8 becomes U+FFFD before byte-level encoding.
    assert_eq!(
        t.encode_bytes(b"a\xffb", false, false),
        t.encode("a\u{FFFD}b", false, false)
    );
    // A merge whose result is not a token falls back to its printable bytes.
    let md = bpe(&["x y"], &[]);
    let t = Tokenizer::from_metadata(&md).unwrap();
    assert_eq!(
        t.encode("xy", false, false),
        vec![u32::from(b'x'), u32::from(b'y')]
    );
}

#[test]
fn add_eos_and_streaming_hold_back_eos() {
    let mut md = spm(&["▁", "a", "b", "▁a", "ab", "▁ab"]);
    md.set("tokenizer.ggml.add_eos_token", Value::Bool(true));
    let t = Tokenizer::from_metadata(&md).unwrap();
    let ids = t.encode("ab a", true, false);
    assert_eq!(ids.first(), Some(&1));
    assert_eq!(ids.last(), Some(&2));
    assert_eq!(t.decode(&ids, true, true), " ab a");
    assert_eq!(t.decode(&ids, false, true), "<s> ab a</s>");
    assert_eq!(t.decode(&ids[1..], true, false), "ab a");
    // An EOS in the middle survives remove_special; only the last one goes.
    let mut twice = ids.clone();
    twice.extend(&ids[1..]);
    for (remove, unparse) in [(true, true), (true, false), (false, true)] {
        let mut d = t.stream_decoder(remove, unparse);
        let mut s: String = twice.iter().filter_map(|&i| d.push(i)).collect();
        s += &d.finish();
        assert_eq!(s, t.decode(&twice, remove, unparse), "{remove} {unparse}");
    }
}

#[test]
fn garbage_never_panics() {
    let t = Tokenizer::from_metadata(&spm(&["▁", "a", "<s>x"])).unwrap();
    let inputs: [&[u8]; 6] = [
        b"",
        b"\xff\xfe",
        b"\xf0\x9f",
        b"<s><s></s>",
        b"a\x00b",
        b"\xed\xa0\x80",
    ];
    for input in inputs {
        for (add, parse) in [(false, false), (true, true)] {
            let ids = t.encode_bytes(input, add, parse);
            let _ = t.decode(&ids, true, true);
        }
    }
    // SPM keeps raw bytes: invalid UTF-8 round-trips as byte tokens.
    let ids = t.encode_bytes(b"\xff", false, false);
    assert_eq!(
        ids,
        vec![t.token_id("▁").unwrap(), t.token_id("<0xFF>").unwrap()]
    );
    assert_eq!(t.decode_bytes(&ids, false, false), b"\xff");
    assert_eq!(t.token_to_piece(9999, true), b"");
    assert_eq!(t.decode(&[9999, u32::MAX], false, true), "");
    assert_eq!(t.token_attr(1), Some(TokenAttr::CONTROL));
}
