//! Shared helpers of the reference tests: the record format of `tests/fixtures/*.jsonl` (see
//! `tests/fixtures/README.md`) and the teacher-forced comparison against llama.cpp's per-step
//! distributions.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use hearth_model::{BatchNumerics, KvCache, KvType, LogitsFor, Model, Numerics};
use serde::Deserialize;

/// Steps whose (ban-aware) top-1/top-2 margin is below this can flip; checks stop at the first.
pub const MARGIN_TOL: f64 = 0.05;
/// Allowed mean absolute difference of the top-10 logprobs over the checked steps for
/// [`Numerics::LlamaCpp`], which reproduces llama.cpp's kernels bit for bit (what remains are
/// the exp/tanh of another libm).
pub const LOGPROB_TOL_EXACT: f64 = 0.001;

/// With [`Numerics::Fast`] (llama.cpp's math, f32 sums in another order) a greedy choice may
/// differ from llama.cpp's where its top-1/top-2 margin is below this. The activations are
/// quantized to 8 bits before every product, so a last-bit difference can move a value to the
/// next quantization step; llama.cpp's own results move as much when only its batching
/// changes (on Gemma 3 single top-10 logprobs move by up to 1.58 that way; see
/// `tests/gemma3_reference.rs`).
pub const FAST_FLIP_MARGIN: f64 = 1.0;

#[derive(Debug, Deserialize)]
pub struct TopEntry {
    pub id: u32,
    pub logprob: f64,
}

#[derive(Debug, Deserialize)]
pub struct Step {
    pub id: u32,
    pub logprob: f64,
    pub top10: Vec<TopEntry>,
    pub margin: f64,
    pub margin_allowed: f64,
}

#[derive(Debug, Deserialize)]
pub struct Record {
    pub id: String,
    pub prompt_tokens: Vec<u32>,
    pub generated_ids: Vec<u32>,
    pub steps: Vec<Step>,
    #[serde(default)]
    pub banned_token_ids: Vec<u32>,
    #[serde(default)]
    pub model_file: Option<String>,
}

impl Record {
    /// Steps to check: those before the first step whose margin is below [`MARGIN_TOL`].
    pub fn n_checked(&self) -> usize {
        self.steps
            .iter()
            .position(|s| s.margin_allowed < MARGIN_TOL)
            .unwrap_or(self.steps.len())
    }
}

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// `shared/reference/synthetic/<arch>` (the models stay there; they are a few MB each).
pub fn synthetic_dir(arch: &str) -> PathBuf {
    Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/reference/synthetic"
    ))
    .join(arch)
}

pub fn read_records(path: &Path) -> Vec<Record> {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).expect("fixture record"))
        .collect()
}

pub fn load_model(path: &Path) -> Model {
    load_model_with(path, Numerics::Fast)
}

pub fn load_model_with(path: &Path, numerics: Numerics) -> Model {
    let gguf = hearth_gguf::MappedGguf::open(path)
        .unwrap_or_else(|e| panic!("opening {}: {e}", path.display()));
    let mut model =
        Model::load(Arc::new(gguf)).unwrap_or_else(|e| panic!("loading {}: {e}", path.display()));
    model.set_numerics(numerics);
    model
}

/// The Gemma 3 270M model of the hearth cache.
pub fn gemma() -> Model {
    gemma_with(Numerics::Fast)
}

/// [`gemma`] with a choice of kernels.
pub fn gemma_with(numerics: Numerics) -> Model {
    let path = hearth_store::default_model().expect("default model (scripts/fetch-fixtures.sh)");
    load_model_with(&path, numerics)
}

/// Natural-log softmax in f64.
pub fn log_softmax(logits: &[f32]) -> Vec<f64> {
    let max = logits.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b)) as f64;
    let sum: f64 = logits.iter().map(|&x| (x as f64 - max).exp()).sum();
    let lse = max + sum.ln();
    logits.iter().map(|&x| x as f64 - lse).collect()
}

/// Best token not in `banned` (lowest id on ties, like llama.cpp's greedy sampler).
pub fn argmax_allowed(logits: &[f32], banned: &[u32]) -> u32 {
    let mut best = None::<(u32, f32)>;
    for (i, &x) in logits.iter().enumerate() {
        let id = i as u32;
        if banned.contains(&id) {
            continue;
        }
        if best.is_none_or(|(_, b)| x > b) {
            best = Some((id, x));
        }
    }
    best.map_or(0, |(id, _)| id)
}

/// Evaluates the prompt as llama-server does; returns the logits of its last token.
pub fn prefill(model: &Model, kv: &mut KvCache, prompt: &[u32]) -> Vec<f32> {
    let mut last = Vec::new();
    for r in model.prompt_batches_like_llama_server(prompt.len()) {
        let l = model
            .forward(&prompt[r], kv, LogitsFor::Last)
            .expect("prefill");
        last = l.last().to_vec();
    }
    last
}

/// How the per-step logits are computed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Teacher forcing: the prompt as llama-server batches it, then the generated tokens as one
    /// more batch computed with [`BatchNumerics::PerToken`] (each row as a decode step).
    TeacherForced,
    /// The prompt as llama-server batches it, then one token at a time through the KV cache.
    Incremental,
}

/// Logits of the first `n_steps` steps of a record (step k predicts `generated_ids[k]`).
pub fn step_logits(
    model: &Model,
    rec: &Record,
    mode: Mode,
    n_ctx: usize,
    n_steps: usize,
) -> Vec<Vec<f32>> {
    let mut kv = model.new_kv_cache(n_ctx, KvType::F16).expect("kv cache");
    let mut out = vec![prefill(model, &mut kv, &rec.prompt_tokens)];
    let gen_in = &rec.generated_ids[..n_steps.saturating_sub(1)];
    if gen_in.is_empty() {
        return out;
    }
    match mode {
        Mode::TeacherForced => {
            let l = model
                .forward_with(gen_in, &mut kv, LogitsFor::All, BatchNumerics::PerToken)
                .expect("generated batch");
            out.extend(l.rows().map(<[f32]>::to_vec));
        }
        Mode::Incremental => {
            for &t in gen_in {
                let l = model
                    .forward(&[t], &mut kv, LogitsFor::Last)
                    .expect("decode");
                out.push(l.last().to_vec());
            }
        }
    }
    out
}

/// Comparison of one model against its records.
#[derive(Debug, Default)]
pub struct Stats {
    pub records: usize,
    pub steps_total: usize,
    /// Steps compared (before each record's first low-margin step).
    pub steps_checked: usize,
    /// Compared steps whose greedy choice equals llama.cpp's.
    pub steps_matched: usize,
    pub sum_diff: f64,
    /// Largest per-step mean difference.
    pub max_step_diff: f64,
    /// Largest single top-10 entry difference.
    pub max_entry_diff: f64,
    pub failures: Vec<String>,
    /// llama.cpp's margin at each failure.
    pub failure_margins: Vec<f64>,
}

impl Stats {
    pub fn mean_diff(&self) -> f64 {
        if self.steps_checked == 0 {
            0.0
        } else {
            self.sum_diff / self.steps_checked as f64
        }
    }

    pub fn line(&self, label: &str) -> String {
        format!(
            "{label:<20} records {:>2}  greedy matched {:>3}/{:<3} steps (of {:>3})  top-10 logprob |diff| mean {:.6} max-step {:.6} max-entry {:.6}",
            self.records,
            self.steps_matched,
            self.steps_checked,
            self.steps_total,
            self.mean_diff(),
            self.max_step_diff,
            self.max_entry_diff
        )
    }

    /// Fails with the collected evidence unless the greedy choices match and the mean
    /// difference is within `fast_tol` ([`Numerics::Fast`], where choices with a margin below
    /// [`FAST_FLIP_MARGIN`] may differ) or [`LOGPROB_TOL_EXACT`] ([`Numerics::LlamaCpp`],
    /// where every checked choice must match).
    pub fn assert_ok_for(&self, label: &str, numerics: Numerics, fast_tol: f64) {
        match numerics {
            Numerics::LlamaCpp => self.assert_within(label, LOGPROB_TOL_EXACT, 0.0),
            Numerics::Fast => self.assert_within(label, fast_tol, FAST_FLIP_MARGIN),
        }
    }

    /// [`Stats::assert_ok_for`] for [`Numerics::LlamaCpp`].
    pub fn assert_ok(&self, label: &str) {
        self.assert_within(label, LOGPROB_TOL_EXACT, 0.0);
    }

    /// Greedy choices equal where llama.cpp's margin is at least `flip_margin`, and the mean
    /// top-10 logprob difference below `tol`.
    pub fn assert_within(&self, label: &str, tol: f64, flip_margin: f64) {
        assert!(self.steps_checked > 0, "{label}: no step checked");
        let hard: Vec<&String> = self
            .failures
            .iter()
            .zip(&self.failure_margins)
            .filter(|(_, &m)| m >= flip_margin)
            .map(|(f, _)| f)
            .collect();
        assert!(hard.is_empty(), "{label}: greedy mismatches: {hard:#?}");
        assert!(
            self.mean_diff() < tol,
            "{label}: mean top-10 logprob difference {:.6} >= {tol}",
            self.mean_diff()
        );
    }
}

/// Compares the per-step logits with the record, up to the first step with a margin below
/// [`MARGIN_TOL`].
pub fn compare(rec: &Record, logits: &[Vec<f32>], stats: &mut Stats) {
    stats.records += 1;
    stats.steps_total += rec.steps.len();
    for (k, (step, lg)) in rec
        .steps
        .iter()
        .zip(logits)
        .take(rec.n_checked())
        .enumerate()
    {
        stats.steps_checked += 1;
        let ours = argmax_allowed(lg, &rec.banned_token_ids);
        let lp = log_softmax(lg);
        let mut sum = 0.0;
        for e in &step.top10 {
            let d = (lp[e.id as usize] - e.logprob).abs();
            stats.max_entry_diff = stats.max_entry_diff.max(d);
            sum += d;
        }
        let step_diff = sum / step.top10.len().max(1) as f64;
        stats.sum_diff += step_diff;
        stats.max_step_diff = stats.max_step_diff.max(step_diff);
        if ours == rec.generated_ids[k] {
            stats.steps_matched += 1;
        } else {
            stats.failure_margins.push(step.margin_allowed);
            stats.failures.push(format!(
                "{} step {k}: ours {ours}, llama.cpp {} (margin_allowed {:.4}, step diff {step_diff:.4})",
                rec.id, rec.generated_ids[k], step.margin_allowed
            ));
        }
    }
}

/// Teacher-forced comparison of a model with its records.
pub fn check_records(model: &Model, records: &[&Record], n_ctx: usize) -> Stats {
    let mut stats = Stats::default();
    for rec in records {
        let logits = step_logits(model, rec, Mode::TeacherForced, n_ctx, rec.n_checked());
        compare(rec, &logits, &mut stats);
    }
    stats
}
