//! `hearth perplexity` against llama-perplexity's figures on the default model
//! (fixtures/gemma3-270m-perplexity.json): with hearth's kernels within 0.5% at -c 128 and
//! -c 512; with `--numerics llama.cpp` within 0.05% at -c 512.

mod common;

use common::{gemma, hearth, repo_root};
use serde_json::Value as Json;

fn check(n_ctx: u64, numerics: &str, tol: f64) {
    let dir = repo_root().join("crates/hearth-cli/tests/fixtures");
    let refs: Json = serde_json::from_str(
        &std::fs::read_to_string(dir.join("gemma3-270m-perplexity.json")).unwrap(),
    )
    .unwrap();
    let r = refs["runs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["n_ctx"] == n_ctx)
        .expect("reference run");
    let out = hearth(&[
        "perplexity".as_ref(),
        "-m".as_ref(),
        gemma().as_os_str(),
        "-f".as_ref(),
        dir.join("gpl-3.txt").as_os_str(),
        "-c".as_ref(),
        n_ctx.to_string().as_ref(),
        "--json".as_ref(),
        "--numerics".as_ref(),
        numerics.as_ref(),
    ]);
    let ours: Json = serde_json::from_slice(&out).unwrap();
    assert_eq!(ours["n_chunks"], r["n_chunks"]);
    let (p, q) = (ours["ppl"].as_f64().unwrap(), r["ppl"].as_f64().unwrap());
    let rel = (p - q).abs() / q;
    assert!(
        rel < tol,
        "-c {n_ctx} [{numerics}]: PPL {p:.4}, llama.cpp {q:.4} ({:.3}% off)",
        rel * 100.0
    );
    let (pm, qm) = (
        ours["ppl_pm"].as_f64().unwrap(),
        r["ppl_pm"].as_f64().unwrap(),
    );
    assert!(
        (pm - qm).abs() / qm < 0.02,
        "-c {n_ctx}: ± {pm:.5}, llama.cpp {qm:.5}"
    );
}

#[test]
fn perplexity_at_context_128_matches_llama_cpp() {
    check(128, "fast", 0.005);
}

#[test]
fn perplexity_at_context_512_matches_llama_cpp() {
    check(512, "fast", 0.005);
}

#[test]
fn perplexity_at_context_512_with_llama_cpp_numerics_is_llama_cpp_s() {
    check(512, "llama.cpp", 0.0005);
}
