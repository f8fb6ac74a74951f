//! The synthetic models of `shared/reference/synthetic` (F16, Q8_0 and Q4_K_M of each
//! architecture) against llama.cpp's greedy references (`tests/fixtures/README.md`).

mod common;

use std::time::Instant;

use common::*;
use hearth_model::{KvType, LogitsFor, Numerics};

/// Mean top-10 logprob difference allowed for the fast kernels on the random-weight synthetic
/// models. Besides the order of f32 sums, llama.cpp's one-row attention rounds its V
/// accumulator to f16 at every cell while hearth's accumulates in f32; on these models that
/// moves logprobs by up to about 0.05 on average (Q4_K_M of qwen3: 0.051).
const SYNTHETIC_FAST_TOL: f64 = 0.1;

fn check_arch(arch: &str) {
    let records = read_records(&fixture(&format!("synthetic-{arch}-refs.jsonl")));
    let mut files: Vec<String> = records
        .iter()
        .filter_map(|r| r.model_file.clone())
        .collect();
    files.dedup();
    assert_eq!(
        files.len(),
        3,
        "{arch}: expected F16, Q8_0 and Q4_K_M records"
    );
    for file in &files {
        for numerics in [Numerics::LlamaCpp, Numerics::Fast] {
            let t = Instant::now();
            let model = load_model_with(&synthetic_dir(arch).join(file), numerics);
            let recs: Vec<&Record> = records
                .iter()
                .filter(|r| r.model_file.as_deref() == Some(file))
                .collect();
            let stats = check_records(&model, &recs, 512);
            let label = format!("{file} [{}]", numerics.name());
            eprintln!("{} ({:.1?})", stats.line(&label), t.elapsed());
            stats.assert_ok_for(&label, numerics, SYNTHETIC_FAST_TOL);
        }
    }
}

#[test]
fn synthetic_llama_matches_llama_cpp() {
    check_arch("llama");
}

#[test]
fn synthetic_qwen2_matches_llama_cpp() {
    check_arch("qwen2");
}

#[test]
fn synthetic_qwen3_matches_llama_cpp() {
    check_arch("qwen3");
}

#[test]
fn synthetic_phi3_matches_llama_cpp() {
    check_arch("phi3");
}

#[test]
fn synthetic_qwen3moe_matches_llama_cpp() {
    check_arch("qwen3moe");
}

#[test]
fn synthetic_llama_moe_matches_llama_cpp() {
    check_arch("llama-moe");
}

#[test]
fn synthetic_gemma4_matches_llama_cpp() {
    check_arch("gemma4");
}

#[test]
fn synthetic_gemma2_matches_llama_cpp() {
    check_arch("gemma2");
}

/// The long prompt (211 tokens) of the synthetic gemma2 model exceeds its 64-token window:
/// the sliding-window layer keeps a window-sized cache while decoding, the global layer keeps
/// everything, and token-by-token decoding reproduces llama.cpp's steps.
#[test]
fn gemma2_sliding_window_keeps_a_window_sized_cache() {
    let file = "gemma2-q8_0.gguf";
    let model = load_model(&synthetic_dir("gemma2").join(file));
    let cfg = model.config();
    assert_eq!(cfg.sliding_window, 64);
    assert_eq!(cfg.swa_layers, vec![true, false]);
    let records = read_records(&fixture("synthetic-gemma2-refs.jsonl"));
    let rec = records
        .iter()
        .find(|r| r.model_file.as_deref() == Some(file) && r.id == "s4_long")
        .expect("s4_long record");
    assert!(rec.prompt_tokens.len() > 3 * cfg.sliding_window);

    let mut kv = model.new_kv_cache(512, KvType::F16).unwrap();
    let first = prefill(&model, &mut kv, &rec.prompt_tokens);
    let mut stats = Stats::default();
    let mut logits = vec![first];
    for &t in &rec.generated_ids[..rec.n_checked().saturating_sub(1)] {
        logits.push(
            model
                .forward(&[t], &mut kv, LogitsFor::Last)
                .unwrap()
                .last()
                .to_vec(),
        );
        // Layer 0 attends through the window: only the last 64 positions stay cached.
        assert!(
            kv.n_cells(0) <= cfg.sliding_window,
            "{} cells",
            kv.n_cells(0)
        );
        assert_eq!(kv.n_cells(1), kv.len());
    }
    compare(rec, &logits, &mut stats);
    eprintln!("{}", stats.line("gemma2 s4_long"));
    stats.assert_ok_for("gemma2 s4_long", Numerics::Fast, SYNTHETIC_FAST_TOL);
}

/// Several sequences in one `forward_batch` (the products shared, attention per sequence)
/// give each sequence the bits it gets alone, with the fast kernels; with llama.cpp's
/// numerics they are evaluated one by one and equal `forward` too. Also for gemma2's sliding
/// window caches.
#[test]
fn forward_batch_equals_separate_forwards() {
    use hearth_model::SeqBatch;
    for (arch, file) in [("llama", "llama-q8_0.gguf"), ("gemma2", "gemma2-q8_0.gguf")] {
        for numerics in [Numerics::Fast, Numerics::LlamaCpp] {
            let model = load_model_with(&synthetic_dir(arch).join(file), numerics);
            let prompts: [&[u32]; 3] = [
                &[1, 20, 30, 40, 50],
                &[1, 7],
                &[1, 99, 98, 97, 96, 95, 94, 93],
            ];
            // Alone.
            let mut want = Vec::new();
            for p in prompts {
                let mut kv = model.new_kv_cache(64, KvType::F16).unwrap();
                let a = model.forward(p, &mut kv, LogitsFor::All).unwrap();
                let b = model.forward(&[5, 6], &mut kv, LogitsFor::Last).unwrap();
                want.push((a, b));
            }
            // Together: the prompts in one batch, then one step of two tokens each.
            let mut kvs: Vec<_> = (0..3)
                .map(|_| model.new_kv_cache(64, KvType::F16).unwrap())
                .collect();
            let mut seqs: Vec<SeqBatch> = kvs
                .iter_mut()
                .zip(prompts)
                .map(|(kv, p)| SeqBatch {
                    tokens: p,
                    kv,
                    logits: LogitsFor::All,
                })
                .collect();
            let first = model.forward_batch(&mut seqs).unwrap();
            let mut seqs: Vec<SeqBatch> = kvs
                .iter_mut()
                .map(|kv| SeqBatch {
                    tokens: &[5, 6],
                    kv,
                    logits: LogitsFor::Last,
                })
                .collect();
            let second = model.forward_batch(&mut seqs).unwrap();
            for (i, (a, b)) in want.iter().enumerate() {
                assert!(first[i] == *a, "{file} [{}]: prompt {i}", numerics.name());
                assert!(second[i] == *b, "{file} [{}]: step of {i}", numerics.name());
            }
        }
    }
}

/// Total and active parameters of the synthetic qwen3moe (2 layers of 4 experts, 2 used,
/// each expert 3 matrices of 256 x 256): half of the 1 572 864 expert values are active.
#[test]
fn moe_active_parameters() {
    let gguf = hearth_gguf::MappedGguf::open(synthetic_dir("qwen3moe").join("qwen3moe-q8_0.gguf"))
        .unwrap();
    let pc = hearth_model::param_counts(gguf.file());
    assert_eq!((pc.n_expert, pc.n_expert_used), (4, 2));
    let experts = 2 * 3 * 256 * 256 * 4;
    assert_eq!(pc.total - pc.active, experts / 2);
    assert_eq!(pc.total, gguf.file().n_elements());
    // A dense model: everything is active.
    let dense =
        hearth_gguf::MappedGguf::open(synthetic_dir("qwen3").join("qwen3-q8_0.gguf")).unwrap();
    let pc = hearth_model::param_counts(dense.file());
    assert_eq!((pc.n_expert, pc.active), (0, pc.total));
}
