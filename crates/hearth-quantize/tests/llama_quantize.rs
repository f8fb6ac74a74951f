//! hearth's quantizer against llama-quantize, byte for byte.
//!
//! `fixtures/llama-quantize-sha256.txt` holds the sha256 of llama-quantize's
//! output for every synthetic F16 model of ../shared/reference/synthetic and
//! every file type (plus a few flag combinations), so the check runs without
//! the peer. When the peer binary is built (scripts/build-peer.sh), the same
//! cases are also run through it and the files compared directly. The
//! `--imatrix` cases use `fixtures/llama-imatrix.gguf`, written by
//! llama-imatrix for the synthetic llama on the reference text (8 chunks of 128).

use std::path::{Path, PathBuf};
use std::process::Command;

use hearth_gguf::GgmlType;
use hearth_quantize::imatrix::Imatrix;
use hearth_quantize::{parse_tensor_type, FileType, QuantizeOptions, TypeOptions};
use sha2::{Digest, Sha256};

fn synthetic_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/reference/synthetic")
}

fn peer_quantize() -> Option<PathBuf> {
    let p = hearth_store::cache_dir().join("peer/llama.cpp-0.3.36/build/bin/llama-quantize");
    p.is_file().then_some(p)
}

struct Case {
    model: String,
    ftype: String,
    sha256: String,
    flags: Vec<String>,
}

fn cases() -> Vec<Case> {
    let text = include_str!("fixtures/llama-quantize-sha256.txt");
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let mut it = l.split_whitespace().map(str::to_string);
            Case {
                model: it.next().unwrap(),
                ftype: it.next().unwrap(),
                sha256: it.next().unwrap(),
                flags: it.collect(),
            }
        })
        .collect()
}

/// The library options for llama-quantize's flags (the subset the fixtures use).
fn options(ftype: &str, flags: &[String]) -> QuantizeOptions {
    let mut t = TypeOptions::new(FileType::parse(ftype).unwrap());
    let mut imatrix = None;
    let mut it = flags.iter();
    while let Some(f) = it.next() {
        let mut val = || it.next().expect("flag value").as_str();
        match f.as_str() {
            "--pure" => t.pure = true,
            "--leave-output-tensor" => t.leave_output_tensor = true,
            "--tensor-type" => t.tensor_types.push(parse_tensor_type(val()).unwrap()),
            "--output-tensor-type" => t.output_tensor_type = GgmlType::from_name(val()),
            "--token-embedding-type" => t.token_embedding_type = GgmlType::from_name(val()),
            "--imatrix" => imatrix = Some(val().to_string()),
            other => panic!("flag {other} not handled by the test"),
        }
    }
    let mut o = QuantizeOptions::new(t);
    o.threads = 2;
    if let Some(path) = imatrix {
        // Relative to the package root (the tests' working directory), as
        // llama-quantize records the path it was given in the metadata.
        let im = Imatrix::load(Path::new(&path)).unwrap();
        assert!(o.use_imatrix(&path, &im, &[], &[]) > 0);
    }
    o
}

fn sha256(path: &Path) -> String {
    let bytes = std::fs::read(path).unwrap();
    Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
fn every_synthetic_model_and_file_type_matches_llama_quantize() {
    let dir = synthetic_dir();
    if !dir.is_dir() {
        eprintln!("skipped: {} not found", dir.display());
        return;
    }
    let peer = peer_quantize();
    if peer.is_none() {
        eprintln!(
            "llama-quantize not built (scripts/build-peer.sh): checking the recorded sha256 only"
        );
    }
    let tmp = std::env::temp_dir().join(format!("hearth-quantize-test-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    let mut failures = Vec::new();
    let all = cases();
    assert!(all.len() >= 170, "fixture has {} cases", all.len());
    for (i, c) in all.iter().enumerate() {
        let input = dir.join(&c.model).join(format!("{}-f16.gguf", c.model));
        let ours = tmp.join(format!("h-{i}.gguf"));
        let opts = options(&c.ftype, &c.flags);
        hearth_quantize::quantize_file(&input, &ours, &opts, &|_| {})
            .unwrap_or_else(|e| panic!("{} {} {:?}: {e}", c.model, c.ftype, c.flags));
        let got = sha256(&ours);
        let label = format!("{} {} {}", c.model, c.ftype, c.flags.join(" "));
        if got != c.sha256 {
            failures.push(format!(
                "{label}: sha256 {got}, llama-quantize {}",
                c.sha256
            ));
        }
        if let Some(peer) = &peer {
            let theirs = tmp.join(format!("l-{i}.gguf"));
            let out = Command::new(peer)
                .args(&c.flags)
                .arg(&input)
                .arg(&theirs)
                .arg(&c.ftype)
                .arg("2")
                .output()
                .unwrap();
            assert!(out.status.success(), "llama-quantize failed for {label}");
            if std::fs::read(&theirs).unwrap() != std::fs::read(&ours).unwrap() {
                failures.push(format!("{label}: differs from llama-quantize's file"));
            }
            let _ = std::fs::remove_file(&theirs);
        }
        let _ = std::fs::remove_file(&ours);
    }
    let _ = std::fs::remove_dir_all(&tmp);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn q2_k_s_needs_an_importance_matrix_like_llama_quantize() {
    let input = synthetic_dir().join("llama/llama-f16.gguf");
    if !input.is_file() {
        eprintln!("skipped: {} not found", input.display());
        return;
    }
    let out = std::env::temp_dir().join(format!("hearth-q2ks-{}.gguf", std::process::id()));
    let err =
        hearth_quantize::quantize_file(&input, &out, &options("Q2_K_S", &[]), &|_| {}).unwrap_err();
    assert!(
        err.to_string().contains("requires an importance matrix"),
        "{err}"
    );
    let _ = std::fs::remove_file(&out);
}

#[test]
fn quantized_input_is_refused_unless_requantizing_is_allowed() {
    let dir = synthetic_dir().join("llama");
    let input = dir.join("llama-q8_0.gguf");
    if !input.is_file() {
        eprintln!("skipped: {} not found", input.display());
        return;
    }
    let out = std::env::temp_dir().join(format!("hearth-rq-{}.gguf", std::process::id()));
    let mut opts = options("Q4_K_M", &[]);
    let err = hearth_quantize::quantize_file(&input, &out, &opts, &|_| {}).unwrap_err();
    assert!(
        err.to_string().contains("requantizing from type Q8_0"),
        "{err}"
    );
    opts.allow_requantize = true;
    hearth_quantize::quantize_file(&input, &out, &opts, &|_| {}).unwrap();
    // llama-quantize --allow-requantize llama-q8_0.gguf Q4_K_M
    assert_eq!(
        sha256(&out),
        "15c660cbcc73a18e03242c44ff9a7181fc4e3efe0e35f68af3dff58a6ae80d13"
    );
    let _ = std::fs::remove_file(&out);
}
