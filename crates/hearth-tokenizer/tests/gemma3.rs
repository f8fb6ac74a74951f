//! Gemma 3 270M against llama.cpp's own tokenizations
//! (`tests/fixtures/gemma3-270m-tokenize.jsonl`, from `llama-server /tokenize`).

use std::sync::OnceLock;

use hearth_tokenizer::{TokenAttr, Tokenizer, VocabType};
use serde_json::Value;

fn gemma() -> &'static Tokenizer {
    static TOK: OnceLock<Tokenizer> = OnceLock::new();
    TOK.get_or_init(|| {
        let path =
            hearth_store::default_model().expect("default model (scripts/fetch-fixtures.sh)");
        Tokenizer::from_gguf_path(path).expect("load Gemma 3 vocabulary")
    })
}

struct Case {
    id: String,
    text: String,
    tokens: Vec<u32>,
    tokens_add_special: Vec<u32>,
    tokens_no_parse_special: Vec<u32>,
    pieces: Vec<(u32, Vec<u8>)>,
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .expect("array of ids")
        .iter()
        .map(|x| x.as_u64().expect("id") as u32)
        .collect()
}

fn cases() -> Vec<Case> {
    let raw = include_str!("fixtures/gemma3-270m-tokenize.jsonl");
    raw.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: Value = serde_json::from_str(l).expect("json line");
            let pieces = v["pieces"]
                .as_array()
                .expect("pieces")
                .iter()
                .map(|p| {
                    let id = p["id"].as_u64().expect("piece id") as u32;
                    let bytes = match &p["piece"] {
                        Value::String(s) => s.as_bytes().to_vec(),
                        Value::Array(a) => {
                            a.iter().map(|b| b.as_u64().expect("byte") as u8).collect()
                        }
                        other => panic!("bad piece {other}"),
                    };
                    (id, bytes)
                })
                .collect();
            Case {
                id: v["id"].as_str().expect("id").to_string(),
                text: v["text"].as_str().expect("text").to_string(),
                tokens: ids(&v["tokens"]),
                tokens_add_special: ids(&v["tokens_add_special"]),
                tokens_no_parse_special: ids(&v["tokens_no_parse_special"]),
                pieces,
            }
        })
        .collect()
}

#[test]
fn fixture_has_all_cases() {
    assert_eq!(cases().len(), 43);
}

#[test]
fn vocabulary_facts() {
    let t = gemma();
    assert_eq!(t.vocab_type(), VocabType::Spm);
    assert_eq!(t.n_vocab(), 262_144);
    assert_eq!(t.bos(), Some(2));
    assert_eq!(t.eos(), Some(1));
    assert_eq!(t.eot(), Some(106));
    assert!(t.add_bos());
    assert!(!t.add_eos());
    assert!(!t.add_space_prefix());
    assert!(t.is_eog(1) && t.is_eog(106));
    assert!(!t.is_eog(2) && !t.is_eog(105));
    assert_eq!(t.token_id("<start_of_turn>"), Some(105));
    assert!(t.token_attr(105).unwrap().contains(TokenAttr::CONTROL));
}

#[test]
fn tokens_match_llama_cpp() {
    let t = gemma();
    let mut bad = Vec::new();
    for c in cases() {
        let checks = [
            ("tokens", t.encode(&c.text, false, true), &c.tokens),
            (
                "tokens_add_special",
                t.encode(&c.text, true, true),
                &c.tokens_add_special,
            ),
            (
                "tokens_no_parse_special",
                t.encode(&c.text, false, false),
                &c.tokens_no_parse_special,
            ),
        ];
        for (what, got, want) in checks {
            if &got != want {
                bad.push(format!("{} {what}:\n  want {want:?}\n  got  {got:?}", c.id));
            }
        }
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

#[test]
fn pieces_match_llama_cpp() {
    let t = gemma();
    let mut n = 0;
    for c in cases() {
        for (id, piece) in &c.pieces {
            assert_eq!(
                t.token_to_piece(*id, true),
                &piece[..],
                "{}: piece of {id}: {:?}",
                c.id,
                String::from_utf8_lossy(piece)
            );
            n += 1;
        }
        let ids: Vec<u32> = c.pieces.iter().map(|p| p.0).collect();
        assert_eq!(ids, c.tokens, "{}: pieces list the tokens", c.id);
    }
    assert!(n > 400);
}

#[test]
fn decode_round_trips_reference_tokens() {
    let t = gemma();
    for c in cases() {
        // Control tokens render only with unparse_special; BOS is dropped by remove_special.
        assert_eq!(t.decode(&c.tokens, false, true), c.text, "{}", c.id);
        assert_eq!(
            t.decode(&c.tokens_add_special, true, true),
            c.text,
            "{}",
            c.id
        );
        let joined: Vec<u8> = c.pieces.iter().flat_map(|p| p.1.clone()).collect();
        assert_eq!(t.decode_bytes(&c.tokens, false, true), joined, "{}", c.id);
    }
}

#[test]
fn special_token_text_is_plain_text_without_parse_special() {
    let t = gemma();
    let ids = t.encode("<start_of_turn>user\nhi<end_of_turn>", false, false);
    assert!(!ids.contains(&105) && !ids.contains(&106), "{ids:?}");
    assert_eq!(
        t.decode(&ids, false, false),
        "<start_of_turn>user\nhi<end_of_turn>"
    );
    // Control tokens vanish from decoded text unless unparsed.
    let ids = t.encode("<start_of_turn>user", false, true);
    assert_eq!(ids[0], 105);
    assert_eq!(t.decode(&ids, false, false), "user");
    assert_eq!(t.decode(&ids, false, true), "<start_of_turn>user");
}
