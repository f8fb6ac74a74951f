//! `hearth inspect` on real files, checked against gguf-py's reader.

mod common;

use std::path::Path;

use common::{gemma, hearth, python, repo_root, synthetic_models};
use serde_json::Value as Json;

fn inspect_json(path: &Path, full: bool) -> Json {
    let mut args = vec!["inspect".as_ref(), path.as_os_str(), "--json".as_ref()];
    if full {
        args.push("--full".as_ref());
    }
    serde_json::from_slice(&hearth(&args)).expect("inspect --json prints JSON")
}

fn gguf_py_dump(path: &Path) -> Json {
    let script = repo_root().join("scripts/gguf_dump.py");
    serde_json::from_slice(&python(&[script.as_os_str(), path.as_os_str()])).unwrap()
}

/// Values equal, with FLOAT32 compared after rounding both sides to f32.
fn same_value(ours: &Json, theirs: &Json, ty: &str) -> bool {
    match (ours, theirs) {
        (Json::Array(a), Json::Array(b)) => {
            a.len() == b.len() && a.iter().zip(b).all(|(x, y)| same_value(x, y, ty))
        }
        (Json::Number(x), Json::Number(y)) if ty.contains("FLOAT32") => {
            x.as_f64().map(|v| v as f32) == y.as_f64().map(|v| v as f32)
        }
        (Json::Number(x), Json::Number(y)) => {
            x.as_i64() == y.as_i64() && x.as_u64() == y.as_u64() && x.as_f64() == y.as_f64()
        }
        _ => ours == theirs,
    }
}

fn assert_matches_gguf_py(path: &Path) {
    let ours = inspect_json(path, true);
    let theirs = gguf_py_dump(path);
    let (om, tm) = (
        ours["metadata"].as_object().unwrap(),
        theirs["metadata"].as_object().unwrap(),
    );
    let mut keys: Vec<_> = om.keys().collect();
    let mut their_keys: Vec<_> = tm.keys().collect();
    keys.sort();
    their_keys.sort();
    assert_eq!(keys, their_keys, "{}: metadata keys differ", path.display());
    for k in keys {
        let ty = theirs["types"][k].as_str().unwrap();
        assert_eq!(
            ours["metadata_types"][k],
            theirs["types"][k],
            "{}: type of {k}",
            path.display()
        );
        assert!(
            same_value(&om[k], &tm[k], ty),
            "{}: value of {k} differs: ours {:.200} theirs {:.200}",
            path.display(),
            om[k].to_string(),
            tm[k].to_string()
        );
    }
    let (ot, tt) = (
        ours["tensors"].as_array().unwrap(),
        theirs["tensors"].as_array().unwrap(),
    );
    assert_eq!(ot.len(), tt.len());
    for (a, b) in ot.iter().zip(tt) {
        for field in ["name", "type", "shape", "offset", "bytes"] {
            assert_eq!(
                a[field],
                b[field],
                "{}: tensor {} {field}",
                path.display(),
                a["name"]
            );
        }
    }
}

#[test]
fn gemma_summary_has_the_expected_architecture_and_type_counts() {
    let j = inspect_json(&gemma(), false);
    assert_eq!(j["metadata"]["general.architecture"], "gemma3");
    assert_eq!(j["n_tensors"], 236);
    let counts: Vec<(String, u64)> = j["types"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v["tensors"].as_u64().unwrap()))
        .collect();
    let mut expected = vec![
        ("F32".to_string(), 109),
        ("Q5_0".to_string(), 81),
        ("Q4_K".to_string(), 27),
        ("Q8_0".to_string(), 10),
        ("Q6_K".to_string(), 9),
    ];
    expected.sort();
    let mut counts = counts;
    counts.sort();
    assert_eq!(counts, expected);
    // Long arrays are summarized without --full.
    assert_eq!(j["metadata"]["tokenizer.ggml.tokens"]["len"], 262144);
}

#[test]
fn gemma_text_summary_names_the_model() {
    let out = String::from_utf8(hearth(&["inspect".as_ref(), gemma().as_os_str()])).unwrap();
    for needle in ["gemma3", "Q4_K_M", "236", "Q6_K", "262144"] {
        assert!(out.contains(needle), "summary lacks {needle}:\n{out}");
    }
}

#[test]
fn gemma_json_full_round_trips_every_metadata_key() {
    assert_matches_gguf_py(&gemma());
}

#[test]
fn synthetic_reference_models_json_matches_gguf_py() {
    let models = synthetic_models();
    assert!(
        models.len() >= 20,
        "expected the synthetic reference models, found {}",
        models.len()
    );
    for m in models {
        assert_matches_gguf_py(&m);
    }
}

/// gguf-py's reader takes ~10 s on a large vocabulary, so one small file per
/// tokenizer model (WPM, SPM, BPE x2); the Gemma test covers a 262k vocab.
#[test]
fn vocab_test_files_json_matches_gguf_py() {
    let dir = hearth_store::llama_cpp_models_dir().expect("llama.cpp vocab fixtures");
    for family in ["bert-bge", "llama-spm", "gpt-2", "deepseek-coder"] {
        assert_matches_gguf_py(&dir.join(format!("ggml-vocab-{family}.gguf")));
    }
}

#[test]
fn tensor_rows_print_dequantized_values() {
    let out = hearth(&[
        "inspect".as_ref(),
        gemma().as_os_str(),
        "--tensor".as_ref(),
        "blk.0.attn_norm.weight".as_ref(),
        "--rows".as_ref(),
        "0..1".as_ref(),
    ]);
    let j: Json = serde_json::from_slice(&out).unwrap();
    assert_eq!(j["type"], "F32");
    assert_eq!(j["data"][0].as_array().unwrap().len(), 640);
}
