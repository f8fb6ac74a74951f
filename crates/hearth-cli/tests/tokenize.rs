//! `hearth tokenize`, `detokenize` and `template` on the default model,
//! checked against llama.cpp's tokenizations (llama-server /tokenize,
//! ported to crates/hearth-tokenizer/tests/fixtures/).

mod common;

use std::ffi::OsStr;

use common::{gemma, hearth, repo_root};
use serde_json::Value as Json;

fn references() -> Vec<Json> {
    let path =
        repo_root().join("crates/hearth-tokenizer/tests/fixtures/gemma3-270m-tokenize.jsonl");
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn ids_of(out: Vec<u8>) -> Vec<u64> {
    String::from_utf8(out)
        .unwrap()
        .split_whitespace()
        .map(|s| s.parse().unwrap())
        .collect()
}

fn tokens(v: &Json) -> Vec<u64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap())
        .collect()
}

#[test]
fn tokenize_matches_llama_cpp_with_and_without_specials() {
    let g = gemma();
    let mut n = 0;
    for r in references()
        .iter()
        .filter(|r| !r["text"].as_str().unwrap().is_empty())
        .take(12)
    {
        let text = r["text"].as_str().unwrap();
        let run = |flags: &[&str]| {
            let mut args: Vec<&OsStr> = vec!["tokenize".as_ref(), "-m".as_ref(), g.as_os_str()];
            args.extend(flags.iter().map(|f| OsStr::new(*f)));
            args.push("--".as_ref());
            args.push(text.as_ref());
            ids_of(hearth(&args))
        };
        assert_eq!(run(&[]), tokens(&r["tokens_add_special"]), "{}", r["id"]);
        assert_eq!(run(&["--no-special"]), tokens(&r["tokens"]), "{}", r["id"]);
        assert_eq!(
            run(&["--no-special", "--no-parse-special"]),
            tokens(&r["tokens_no_parse_special"]),
            "{}",
            r["id"]
        );
        n += 1;
    }
    assert_eq!(n, 12);
}

#[test]
fn tokenize_json_pieces_match_llama_cpp() {
    let g = gemma();
    for r in references()
        .iter()
        .filter(|r| r["id"].as_str().unwrap().starts_with("prompt:"))
        .take(4)
    {
        let out = hearth(&[
            "tokenize".as_ref(),
            "-m".as_ref(),
            g.as_os_str(),
            "--no-special".as_ref(),
            "--json".as_ref(),
            "--".as_ref(),
            r["text"].as_str().unwrap().as_ref(),
        ]);
        let ours: Json = serde_json::from_slice(&out).unwrap();
        assert_eq!(ours, r["pieces"], "{}", r["id"]);
    }
}

#[test]
fn detokenize_inverts_tokenize() {
    let g = gemma();
    for r in references()
        .iter()
        .filter(|r| r["id"].as_str().unwrap().starts_with("prompt:"))
        .take(4)
    {
        let ids: Vec<String> = tokens(&r["tokens_add_special"])
            .iter()
            .map(u64::to_string)
            .collect();
        let mut args: Vec<&OsStr> = vec![
            "detokenize".as_ref(),
            "-m".as_ref(),
            g.as_os_str(),
            "--remove-special".as_ref(),
        ];
        args.extend(ids.iter().map(OsStr::new));
        let out = String::from_utf8(hearth(&args)).unwrap();
        assert_eq!(
            out,
            format!("{}\n", r["text"].as_str().unwrap()),
            "{}",
            r["id"]
        );
    }
}

#[test]
fn template_renders_the_gemma_format() {
    let dir = std::env::temp_dir().join(format!("hearth-template-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("messages.json");
    std::fs::write(
        &file,
        r#"[{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Hi"}]"#,
    )
    .unwrap();
    let run = |extra: &[&str]| {
        let mut args: Vec<&OsStr> = vec![
            "template".as_ref(),
            "-m".as_ref(),
            gemma().into_os_string().leak(),
            "--messages".as_ref(),
            file.as_os_str(),
        ];
        args.extend(extra.iter().map(OsStr::new));
        String::from_utf8(hearth(&args)).unwrap()
    };
    // Gemma 3 270M (base) has no template: the built-in Gemma format, with
    // BOS left to the tokenizer.
    assert_eq!(
        run(&[]),
        "<start_of_turn>user\nYou are terse.\n\nHi<end_of_turn>\n<start_of_turn>model\n"
    );
    assert_eq!(
        run(&["--template", "chatml"]),
        "<|im_start|>system\nYou are terse.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
