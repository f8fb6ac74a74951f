//! llama.cpp's tokenizer test vectors: for every `ggml-vocab-*.gguf` that
//! ships with `.inp` / `.out` in the llama.cpp tree (unpacked into the cache
//! by `hearth_store::llama_cpp_models_dir`), every input must tokenize to
//! exactly the ids in `.out`. The flags are those of llama.cpp's
//! `tests/test-tokenizer-0.cpp`: `add_special = false`, `parse_special = false`.

use std::path::PathBuf;

use hearth_tokenizer::Tokenizer;

fn models_dir() -> PathBuf {
    hearth_store::llama_cpp_models_dir()
        .expect("llama.cpp test vocabularies (scripts/fetch-fixtures.sh)")
}

/// The cases of `<vocab>.inp` / `<vocab>.out`, read as test-tokenizer-0 does:
/// inputs separated by `\n__ggml_vocab_test__\n` (nothing after the last
/// separator is not a case), one line of space-separated ids per input.
fn read_cases(name: &str) -> Vec<(Vec<u8>, Vec<u32>)> {
    let base = models_dir().join(format!("ggml-vocab-{name}.gguf"));
    let inp = std::fs::read(base.with_extension("gguf.inp")).expect("read .inp");
    let out = std::fs::read_to_string(base.with_extension("gguf.out")).expect("read .out");
    let sep = b"\n__ggml_vocab_test__\n";
    let mut inputs = Vec::new();
    let mut pos = 0;
    while pos < inp.len() {
        match memchr_find(&inp[pos..], sep) {
            Some(i) => {
                inputs.push(inp[pos..pos + i].to_vec());
                pos += i + sep.len();
            }
            None => {
                inputs.push(inp[pos..].to_vec());
                break;
            }
        }
    }
    let outputs: Vec<Vec<u32>> = out
        .lines()
        .map(|l| {
            l.split_whitespace()
                .map(|t| t.parse().expect("token id"))
                .collect()
        })
        .collect();
    assert_eq!(
        inputs.len(),
        outputs.len(),
        "{name}: .inp and .out disagree on the number of cases"
    );
    inputs.into_iter().zip(outputs).collect()
}

fn memchr_find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn check_family(name: &str) {
    let path = models_dir().join(format!("ggml-vocab-{name}.gguf"));
    let tok = Tokenizer::from_gguf_path(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
    let cases = read_cases(name);
    let mut failures = Vec::new();
    for (text, expected) in &cases {
        let got = tok.encode_bytes(text, false, false);
        if &got != expected {
            failures.push(format!(
                "  input {:?}\n    expected {expected:?}\n    got      {got:?}",
                String::from_utf8_lossy(text)
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{name}: {} of {} cases differ from llama.cpp:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    eprintln!("{name}: {} cases pass", cases.len());
}

#[test]
fn bert_bge() {
    check_family("bert-bge");
}

#[test]
fn command_r() {
    check_family("command-r");
}

#[test]
fn deepseek_coder() {
    check_family("deepseek-coder");
}

#[test]
fn deepseek_llm() {
    check_family("deepseek-llm");
}

#[test]
fn falcon() {
    check_family("falcon");
}

#[test]
fn gemma_4() {
    check_family("gemma-4");
}

#[test]
fn gpt_2() {
    check_family("gpt-2");
}

#[test]
fn llama_bpe() {
    check_family("llama-bpe");
}

#[test]
fn llama_spm() {
    check_family("llama-spm");
}

#[test]
fn mpt() {
    check_family("mpt");
}

#[test]
fn phi_3() {
    check_family("phi-3");
}

#[test]
fn qwen2() {
    check_family("qwen2");
}

#[test]
fn qwen35() {
    check_family("qwen35");
}

#[test]
fn refact() {
    check_family("refact");
}

#[test]
fn starcoder() {
    check_family("starcoder");
}

/// Every vocabulary with test vectors in the tree has a test above.
#[test]
fn every_family_with_vectors_is_covered() {
    let covered = [
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
    let mut found: Vec<String> = std::fs::read_dir(models_dir())
        .expect("list models dir")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter_map(|n| {
            Some(
                n.strip_prefix("ggml-vocab-")?
                    .strip_suffix(".gguf.inp")?
                    .to_string(),
            )
        })
        .collect();
    found.sort();
    assert_eq!(found, covered);
}
