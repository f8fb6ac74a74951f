//! `hearth plan`: what a model will cost on this machine before it is loaded (memory of the
//! weights, KV cache, compute buffers; whether it fits; predicted speed), and the check `run`,
//! `chat` and `serve` make before loading (`--force` skips the refusal, `--mlock`,
//! `--no-mmap`).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args;
use hearth_gguf::{LoadMode, MappedGguf};
use hearth_model::{KvType, LogitsFor, Model, N_UBATCH};
use hearth_plan::{human, machine, speed, MemoryPlan, PlanRequest, ProcMemory, Verdict};
use serde_json::json;

use crate::run::{kv_type, KvTypeArg};

/// How the model is loaded, and whether a model that does not fit may be loaded anyway.
#[derive(Args, Clone, Debug, Default)]
pub struct LoadArgs {
    /// Load the model even if the plan says it does not fit in memory.
    #[arg(long)]
    pub force: bool,
    /// Lock the model's memory in RAM (mlock(2)): it is never paged out. Needs RLIMIT_MEMLOCK
    /// (`ulimit -l`) at least the model's size, or CAP_IPC_LOCK.
    #[arg(long)]
    pub mlock: bool,
    /// Read the model into memory instead of mapping the file.
    #[arg(long)]
    pub no_mmap: bool,
}

impl LoadArgs {
    pub fn mode(&self) -> LoadMode {
        LoadMode {
            mmap: !self.no_mmap,
            mlock: self.mlock,
        }
    }
}

/// Plans `path` for `req` and refuses (an error with the suggestions) when it does not fit,
/// unless `force`. A plan that fits only with swap is a warning.
pub fn check(path: &Path, req: &PlanRequest, force: bool) -> Result<()> {
    let plan = match MemoryPlan::for_file(path, req) {
        Ok(p) => p,
        // A file the planner cannot read is left to the loader, whose error is more precise.
        Err(hearth_plan::PlanError::Gguf { .. } | hearth_plan::PlanError::Config { .. }) => {
            return Ok(())
        }
        // No /proc/meminfo (not Linux): nothing to check against.
        Err(e @ hearth_plan::PlanError::Io { .. }) => {
            eprintln!("warning: no memory check: {e}");
            return Ok(());
        }
        Err(e) => return Err(e.into()),
    };
    match plan.verdict {
        Verdict::Fits => Ok(()),
        Verdict::FitsButWouldSwap => {
            eprintln!(
                "warning: {} (needs {}, {} available): expect it to run slowly",
                plan.verdict.text(),
                human(plan.total_bytes),
                human(plan.available.bytes)
            );
            Ok(())
        }
        Verdict::DoesNotFit if force => {
            eprintln!(
                "warning: --force: loading although the model does not fit (needs {}, {} available)",
                human(plan.total_bytes),
                human(plan.available.bytes)
            );
            Ok(())
        }
        Verdict::DoesNotFit => bail!("{}", plan.refusal()),
    }
}

/// Resident-memory snapshots for `--report-memory` (printed to stderr as one JSON line
/// `memory: {...}`).
#[derive(Default)]
pub struct MemReport {
    marks: Option<Vec<(&'static str, ProcMemory)>>,
}

impl MemReport {
    pub fn new(enabled: bool) -> MemReport {
        MemReport {
            marks: enabled.then(Vec::new),
        }
    }

    /// Records the resident memory now, after returning freed heap memory to the system (so
    /// that only live memory is counted; the peak `hwm` still includes every transient buffer).
    pub fn mark(&mut self, label: &'static str) {
        if let Some(m) = &mut self.marks {
            hearth_plan::memory::release_free_heap();
            if m.is_empty() {
                // The peak from here on (the plan made before parsed the header too).
                ProcMemory::reset_peak();
            }
            m.push((label, ProcMemory::current().unwrap_or_default()));
        }
    }

    pub fn print(&self) {
        if let Some(marks) = &self.marks {
            let obj: serde_json::Map<String, serde_json::Value> = marks
                .iter()
                .map(|(l, m)| (l.to_string(), json!(m)))
                .collect();
            eprintln!("memory: {}", serde_json::Value::Object(obj));
        }
    }
}

#[derive(Args)]
pub struct PlanArgs {
    /// The GGUF model (default: Gemma 3 270M Q4_K_M, fetched on first use).
    model: Option<PathBuf>,
    /// Context per sequence in tokens (default: the model's, at most 4096).
    #[arg(short = 'c', long = "ctx", alias = "ctx-size")]
    ctx: Option<usize>,
    /// Sequences served in parallel, each with its own KV cache.
    #[arg(long, alias = "np", default_value_t = 1)]
    parallel: usize,
    /// KV cache type.
    #[arg(long, value_enum, default_value = "f16")]
    kv_type: KvTypeArg,
    /// Plan for a model read into memory instead of mapped.
    #[arg(long)]
    no_mmap: bool,
    /// Plan for a model locked in RAM.
    #[arg(long)]
    mlock: bool,
    /// Threads (default: all cores).
    #[arg(short = 't', long)]
    threads: Option<usize>,
    /// Skip the speed prediction (no bandwidth or kernel probe).
    #[arg(long)]
    no_speed: bool,
    /// Measure the bandwidth and kernel rates again instead of using the cached figures.
    #[arg(long)]
    remeasure: bool,
    /// Also load the model, run a short prefill and decode, and print predicted vs measured
    /// speed and resident memory.
    #[arg(long)]
    measure: bool,
    /// Prompt tokens of --measure.
    #[arg(long, default_value_t = 256)]
    measure_prompt: usize,
    /// Generated tokens of --measure.
    #[arg(long, default_value_t = 32)]
    measure_gen: usize,
    /// Print the plan as JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(args: PlanArgs) -> Result<()> {
    let path = crate::model_path(args.model.clone())?;
    let threads = args.threads.unwrap_or_else(crate::threads::default_threads);
    if threads == 0 {
        bail!("--threads must be at least 1");
    }
    let req = PlanRequest {
        n_ctx: args.ctx,
        n_slots: args.parallel,
        kv_type: kv_type(args.kv_type),
        load: LoadMode {
            mmap: !args.no_mmap,
            mlock: args.mlock,
        },
        n_batch: N_UBATCH,
    };
    let mut plan = {
        let gguf =
            MappedGguf::open(&path).with_context(|| format!("reading {}", path.display()))?;
        let available = hearth_plan::memory::available()?;
        let mut plan = MemoryPlan::new(&gguf, &req, available)?;
        if !args.no_speed || args.measure {
            let pool = hearth_kernels::pool::ThreadPool::new(threads);
            let samples = speed::samples(&gguf, &plan.weights);
            let cache = hearth_store::cache_dir();
            let profile = machine::profile(&pool, Some(&cache), &samples, args.remeasure);
            plan.speed = Some(speed::predict(&plan.weights, &profile));
        }
        plan
    };
    plan.model = path.display().to_string();
    let measured = if args.measure {
        Some(measure(&path, &args, &req, threads, &plan)?)
    } else {
        None
    };
    if args.json {
        let mut j = serde_json::to_value(&plan)?;
        if let (Some(m), Some(obj)) = (&measured, j.as_object_mut()) {
            obj.insert("measured".into(), m.clone());
        }
        println!("{}", serde_json::to_string_pretty(&j)?);
    } else {
        print_plan(&plan);
        if let Some(m) = &measured {
            print_measured(&plan, m);
        }
    }
    Ok(())
}

fn print_plan(p: &MemoryPlan) {
    let w = &p.weights;
    println!(
        "model      {} ({}, {}, {:.2} M params)",
        p.model,
        p.arch,
        p.file_type,
        w.n_params as f64 / 1e6
    );
    println!(
        "context    {} tokens x {} slot{}, KV cache {}, {}{}",
        p.n_ctx,
        p.n_slots,
        if p.n_slots == 1 { "" } else { "s" },
        p.kv.kv_type,
        if p.mmap {
            "mmap"
        } else {
            "no mmap (read into memory)"
        },
        if p.mlock { ", mlock" } else { "" }
    );
    println!("memory");
    println!(
        "  weights  {:>11}  tensors {} + header {} (metadata, vocabulary); output {}",
        human(p.weights_resident_bytes),
        human(w.tensor_bytes),
        human(w.header_bytes),
        if w.tied_output {
            format!("tied to token_embd ({})", human(w.token_embd_bytes))
        } else {
            format!(
                "{} (token_embd {})",
                human(w.output_bytes),
                human(w.token_embd_bytes)
            )
        }
    );
    let kv = &p.kv;
    let layers = match kv.window {
        Some(win) => format!(
            "{} layers x {} cells + {} window layers x {} cells",
            kv.n_layers - kv.n_swa_layers,
            p.n_ctx,
            kv.n_swa_layers,
            p.n_ctx.min((win + N_UBATCH).saturating_sub(1))
        ),
        None => format!("{} layers x {} cells", kv.n_layers, p.n_ctx),
    };
    println!(
        "  KV cache {:>11}  {} x {} ({layers}; {} per position)",
        human(kv.total_bytes),
        p.n_slots,
        human(kv.per_slot_bytes),
        human(kv.bytes_per_position)
    );
    println!(
        "  compute  {:>11}  activations of a {}-token batch and logits",
        human(p.compute_bytes),
        N_UBATCH
    );
    println!(
        "  other    {:>11}  parsed metadata, tokenizer, f32 norms, program and threads",
        human(p.overhead_bytes)
    );
    println!("  total    {:>11}", human(p.total_bytes));
    println!(
        "available  {} ({}){}",
        human(p.available.bytes),
        p.available.source,
        if p.available.swap_free > 0 {
            format!(", swap free {}", human(p.available.swap_free))
        } else {
            String::new()
        }
    );
    println!("verdict    {}", p.verdict.text());
    for s in &p.suggestions {
        println!("  try {:<30} {}", s.flag, s.text);
    }
    if let Some(s) = &p.speed {
        println!(
            "speed      {} threads, {} kernels, {}",
            s.threads, s.kernels, s.cpu
        );
        println!(
            "  bandwidth {:.1} GB/s ({}); {:.1} MB of weights read per token; roofline {:.1} t/s",
            s.bandwidth / 1e9,
            if s.bandwidth_cached {
                "cached"
            } else {
                "measured now"
            },
            s.decode_read_bytes as f64 / 1e6,
            s.decode_roofline_tokens_per_s
        );
        println!(
            "  decode  {:>8.1} t/s predicted (short context)",
            s.decode_tokens_per_s
        );
        println!("  prefill {:>8.1} t/s predicted", s.prefill_tokens_per_s);
    }
    for n in &p.notes {
        println!("note: {n}");
    }
}

fn pct(measured: f64, predicted: f64) -> String {
    if measured > 0.0 {
        format!("prediction {:+.1}%", (predicted / measured - 1.0) * 100.0)
    } else {
        "n/a".into()
    }
}

fn print_measured(p: &MemoryPlan, m: &serde_json::Value) {
    let f = |k: &str| m[k].as_f64().unwrap_or(0.0);
    let u = |k: &str| m[k].as_u64().unwrap_or(0);
    println!(
        "measured   prompt {} tokens, {} generated ({} threads)",
        u("prompt_tokens"),
        u("generated_tokens"),
        u("threads")
    );
    if let Some(s) = &p.speed {
        println!(
            "  decode  {:>8.1} t/s measured, {:.1} predicted ({})",
            f("decode_tokens_per_s"),
            s.decode_tokens_per_s,
            pct(f("decode_tokens_per_s"), s.decode_tokens_per_s)
        );
        println!(
            "  prefill {:>8.1} t/s measured, {:.1} predicted ({})",
            f("prefill_tokens_per_s"),
            s.prefill_tokens_per_s,
            pct(f("prefill_tokens_per_s"), s.prefill_tokens_per_s)
        );
    }
    println!(
        "  weights  {:>11} measured ({}), {} predicted ({})",
        human(u("weights_measured_bytes")),
        if p.mmap {
            "file pages resident"
        } else {
            "heap growth while reading, less the parsed metadata"
        },
        human(p.weights_resident_bytes),
        pct(f("weights_measured_bytes"), p.weights_resident_bytes as f64)
    );
    println!(
        "  KV cache {:>11} measured (heap growth while running), {} predicted for {} positions \
         in two caches ({})",
        human(u("kv_measured_bytes")),
        human(u("kv_predicted_bytes")),
        u("positions"),
        pct(f("kv_measured_bytes"), f("kv_predicted_bytes"))
    );
    println!(
        "  peak RSS {:>11} measured, {} predicted (the plan's total with that cache) ({})",
        human(u("peak_bytes")),
        human(u("peak_predicted_bytes")),
        pct(f("peak_bytes"), f("peak_predicted_bytes"))
    );
}

/// Tokens of a fixed pseudo-random sequence (as `hearth bench`).
fn tokens(n: usize, n_vocab: usize, seed: u64) -> Vec<u32> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            ((s >> 33) % n_vocab as u64) as u32
        })
        .collect()
}

/// Loads the model as planned, prefills `measure_prompt` tokens and decodes `measure_gen`
/// greedily, and measures speed and resident memory.
fn measure(
    path: &Path,
    args: &PlanArgs,
    req: &PlanRequest,
    threads: usize,
    plan: &MemoryPlan,
) -> Result<serde_json::Value> {
    // Each snapshot first returns freed heap memory, so it counts live memory only.
    let snapshot = || {
        hearth_plan::memory::release_free_heap();
        ProcMemory::current().unwrap_or_default()
    };
    // With --no-mmap, opening reads the file and parses its header into the heap: the heap the
    // parsed metadata takes, measured on a mapped open, is taken off the weights' growth.
    let metadata_heap = if req.load.mmap {
        0
    } else {
        let a = snapshot();
        let g = MappedGguf::open(path).with_context(|| format!("reading {}", path.display()))?;
        let b = snapshot();
        drop(g);
        b.rss_anon.saturating_sub(a.rss_anon)
    };
    let before = snapshot();
    // The peak of loading and running, not of the probes before.
    ProcMemory::reset_peak();
    let gguf = Arc::new(
        MappedGguf::open_with(path, req.load)
            .with_context(|| format!("reading {}", path.display()))?,
    );
    let opened = snapshot();
    let tokenizer = hearth_tokenizer::Tokenizer::from_metadata(&gguf.file().metadata)
        .with_context(|| format!("loading the tokenizer of {}", path.display()))?;
    let mut model =
        Model::load(gguf.clone()).with_context(|| format!("loading {}", path.display()))?;
    model.set_threads(threads);
    let loaded = snapshot();
    let n_vocab = model.n_vocab();
    let n_prompt = args.measure_prompt.max(1);
    let n_ctx = plan.n_ctx.max(n_prompt + args.measure_gen + 1);
    let mut kv = model.new_kv_cache(n_ctx, req.kv_type)?;
    // Warm-up on a scratch cache: brings the mapped weights in, so the timings are the
    // kernels', not the page faults'.
    {
        let mut scratch = model.new_kv_cache(16, KvType::F16)?;
        model.forward(&tokens(8, n_vocab, 7), &mut scratch, LogitsFor::Last)?;
    }
    let prompt = tokens(n_prompt, n_vocab, 0x5eed);
    let t0 = Instant::now();
    model.forward(&prompt, &mut kv, LogitsFor::Last)?;
    let prefill_s = t0.elapsed().as_secs_f64();
    // Decoding on a fresh cache: the prediction is for the start of a context (attention over
    // a long one costs more).
    let mut kv_decode = model.new_kv_cache(n_ctx, req.kv_type)?;
    let mut last = model
        .forward(&tokens(1, n_vocab, 3), &mut kv_decode, LogitsFor::Last)?
        .last()
        .to_vec();
    let t1 = Instant::now();
    for _ in 0..args.measure_gen {
        let next = last
            .iter()
            .enumerate()
            .fold((0usize, f32::NEG_INFINITY), |b, (i, &v)| {
                if v > b.1 {
                    (i, v)
                } else {
                    b
                }
            })
            .0 as u32;
        last = model
            .forward(&[next], &mut kv_decode, LogitsFor::Last)?
            .last()
            .to_vec();
    }
    let decode_s = t1.elapsed().as_secs_f64();
    let end = snapshot();
    drop(tokenizer);

    // Two caches: the prompt's, and the decode's (one token, then the generated ones).
    let positions = n_prompt + 1 + args.measure_gen;
    let layout = hearth_plan::KvLayout::from_config(model.config());
    let kv_predicted = layout.bytes_peak(n_prompt, N_UBATCH, req.kv_type)
        + layout.bytes_peak(1 + args.measure_gen, 1, req.kv_type);
    // The heap growth while running, less the logits row kept for sampling.
    let kv_measured = end
        .rss_anon
        .saturating_sub(loaded.rss_anon + 4 * n_vocab as u64);
    let weights_measured = if req.load.mmap {
        end.rss_file.saturating_sub(before.rss_file)
    } else {
        opened.rss.saturating_sub(before.rss + metadata_heap)
    };
    // The plan's total with the cache this run filled instead of a full context, and the
    // compute buffers of its prompt batch.
    let compute = hearth_plan::compute::compute_bytes(model.config(), n_prompt, 1);
    let peak_predicted =
        plan.total_bytes - plan.kv.total_bytes - plan.compute_bytes + kv_predicted + compute;
    Ok(json!({
        "threads": threads,
        "prompt_tokens": n_prompt,
        "generated_tokens": args.measure_gen,
        "positions": positions,
        "prefill_tokens_per_s": n_prompt as f64 / prefill_s.max(1e-9),
        "decode_tokens_per_s": args.measure_gen as f64 / decode_s.max(1e-9),
        "weights_measured_bytes": weights_measured,
        "kv_measured_bytes": kv_measured,
        "kv_predicted_bytes": kv_predicted,
        "peak_bytes": end.hwm,
        "peak_predicted_bytes": peak_predicted,
        "memory": {"before": before, "opened": opened, "loaded": loaded, "end": end},
    }))
}
