//! `hearth run` end to end (tokenizer, model, sampler, CLI) against
//! llama.cpp's greedy generations of the default model.

mod common;

use std::process::Command;

use common::{gemma, hearth, repo_root};
use serde_json::Value as Json;

/// llama.cpp b1-0c1e570 greedy references for Gemma 3 270M Q4_K_M
/// (ported from shared/reference; see crates/hearth-model/tests/fixtures/README.md).
fn references() -> Vec<Json> {
    let path = repo_root().join("crates/hearth-model/tests/fixtures/gemma3-270m-greedy.jsonl");
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn run_json(prompt: &str, n: usize, numerics: &str) -> Json {
    let out = hearth(&[
        "run".as_ref(),
        "--numerics".as_ref(),
        numerics.as_ref(),
        "-m".as_ref(),
        gemma().as_os_str(),
        "-p".as_ref(),
        prompt.as_ref(),
        "-n".as_ref(),
        n.to_string().as_ref(),
        "--temp".as_ref(),
        "0".as_ref(),
        "--json".as_ref(),
    ]);
    serde_json::from_slice(&out).expect("run --json prints JSON")
}

/// Greedy generation with `numerics` against llama.cpp's on the records `ids` (all if empty):
/// the same tokens up to the first step whose margin is below `stop_margin`, and top-10
/// logprobs within `tol` on average over all compared steps.
fn compare_greedy(ids: &[&str], numerics: &str, stop_margin: f64, tol: f64, min_steps: usize) {
    const N: usize = 16;
    let mut compared = 0;
    let (mut diff_sum, mut n_lp) = (0.0f64, 0usize);
    for r in references()
        .iter()
        .filter(|r| ids.is_empty() || ids.contains(&r["id"].as_str().unwrap()))
    {
        let ours = run_json(r["prompt"].as_str().unwrap(), N, numerics);
        assert_eq!(
            ours["prompt_tokens"], r["prompt_tokens"],
            "{}: prompt tokens",
            r["id"]
        );
        for (i, step) in r["steps"].as_array().unwrap().iter().take(N).enumerate() {
            let our_step = &ours["steps"][i];
            if step["margin"].as_f64().unwrap() < stop_margin {
                // A near-tie: the choice may go either way, and what follows differs.
                break;
            }
            assert_eq!(our_step["id"], step["id"], "{}: step {i}", r["id"]);
            let their_top: Vec<(u64, f64)> = step["top10"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| (t["id"].as_u64().unwrap(), t["logprob"].as_f64().unwrap()))
                .collect();
            for t in our_step["top"].as_array().unwrap() {
                let id = t["id"].as_u64().unwrap();
                if let Some(&(_, lp)) = their_top.iter().find(|(tid, _)| *tid == id) {
                    diff_sum += (t["logprob"].as_f64().unwrap() - lp).abs();
                    n_lp += 1;
                }
            }
            compared += 1;
        }
    }
    let mean = diff_sum / n_lp.max(1) as f64;
    assert!(mean < tol, "mean top-10 logprob difference {mean}");
    assert!(compared >= min_steps, "compared only {compared} steps");
}

#[test]
fn greedy_run_reproduces_llama_cpp_on_the_default_model() {
    compare_greedy(
        &["v03_python", "v05_list", "v07_arith", "v09_multilingual"],
        "llama.cpp",
        0.05,
        0.001,
        40,
    );
}

/// hearth's own kernels: llama.cpp's math summed in another order, which moves Gemma's
/// logprobs about as much as changing llama.cpp's own batching does (see
/// crates/hearth-model/tests/gemma3_reference.rs).
#[test]
fn greedy_run_with_fast_kernels_follows_llama_cpp() {
    compare_greedy(&[], "fast", 1.0, 0.2, 20);
}

#[test]
fn a_fixed_seed_gives_the_same_text() {
    let run = |seed: &str| {
        hearth(&[
            "run".as_ref(),
            "-m".as_ref(),
            gemma().as_os_str(),
            "-p".as_ref(),
            "Once upon a time".as_ref(),
            "-n".as_ref(),
            "12".as_ref(),
            "--temp".as_ref(),
            "1.0".as_ref(),
            "--seed".as_ref(),
            seed.as_ref(),
        ])
    };
    assert_eq!(run("7"), run("7"));
}

#[test]
fn bad_sampling_parameters_are_rejected_with_their_name() {
    for (flag, value, name) in [
        ("--top-p", "1.5", "top_p"),
        ("--temp", "NaN", "temperature"),
        ("--top-k", "-3", "top_k"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_hearth"))
            .args(["run", "-m"])
            .arg(gemma())
            .args(["-p", "hi", "-n", "1", flag, value])
            .output()
            .unwrap();
        assert!(!out.status.success(), "{flag} {value} was accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(name), "{flag} {value}: {err}");
    }
}

#[test]
fn a_full_context_finishes_with_length_or_shifts() {
    let run = |extra: &[&str]| -> Json {
        let mut args: Vec<&std::ffi::OsStr> = vec![
            "run".as_ref(),
            "-m".as_ref(),
            gemma().into_os_string().leak(),
            "-p".as_ref(),
            "Once upon a time".as_ref(),
            "-c".as_ref(),
            "24".as_ref(),
            "-n".as_ref(),
            "40".as_ref(),
            "--temp".as_ref(),
            "0".as_ref(),
            "--ignore-eos".as_ref(),
            "--json".as_ref(),
        ];
        args.extend(extra.iter().map(std::ffi::OsStr::new));
        serde_json::from_slice(&hearth(&args)).unwrap()
    };
    // 5 prompt tokens in a 24-token context: 19 generated tokens fill it,
    // and a 20th is sampled from the last position, then "length".
    let full = run(&[]);
    assert_eq!(full["finish_reason"], "length");
    assert_eq!(full["generated_ids"].as_array().unwrap().len(), 20);
    // With a context shift the generation goes on to -n.
    let shifted = run(&["--context-shift", "4"]);
    assert_eq!(shifted["generated_ids"].as_array().unwrap().len(), 40);
    // Up to the shift, both runs are the same.
    assert_eq!(
        full["generated_ids"].as_array().unwrap()[..20],
        shifted["generated_ids"].as_array().unwrap()[..20]
    );
}
