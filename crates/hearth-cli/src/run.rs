//! `hearth run`: generate text from a prompt.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use hearth_gguf::{LoadMode, MappedGguf};
use hearth_model::{KvType, Model};
use hearth_tokenizer::Tokenizer;
use serde_json::json;

use crate::generate::{generate, Finish, Request};
use crate::plan::{LoadArgs, MemReport};
use crate::sampling_args::SamplingArgs;
use crate::threads::ComputeArgs;

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum KvTypeArg {
    F16,
    #[value(name = "q8_0", alias = "q8-0")]
    Q8_0,
}

#[derive(Args)]
pub struct RunArgs {
    /// The GGUF model (default: Gemma 3 270M Q4_K_M, fetched on first use).
    #[arg(short, long)]
    model: Option<PathBuf>,
    /// The prompt (default: read standard input).
    #[arg(short, long)]
    prompt: Option<String>,
    /// Read the prompt from a file.
    #[arg(short = 'f', long, conflicts_with = "prompt")]
    file: Option<PathBuf>,
    /// Tokens to generate (-1 = until end of generation or full context).
    #[arg(
        short = 'n',
        long = "n-predict",
        default_value_t = 128,
        allow_hyphen_values = true
    )]
    n_predict: i64,
    /// Context size in tokens (default: the model's, at most 4096).
    #[arg(short = 'c', long = "ctx-size")]
    ctx_size: Option<usize>,
    /// KV cache type.
    #[arg(long, value_enum, default_value = "f16")]
    kv_type: KvTypeArg,
    /// When the context fills, keep this many tokens and drop half of the rest.
    #[arg(long, value_name = "N_KEEP")]
    context_shift: Option<usize>,
    /// Stop when this text is generated (repeatable).
    #[arg(long)]
    stop: Vec<String>,
    /// Keep generating past end-of-generation tokens.
    #[arg(long)]
    ignore_eos: bool,
    /// Print tokens, text and per-step top log-probabilities as JSON.
    #[arg(long)]
    json: bool,
    /// With --json: how many alternatives per step.
    #[arg(long, default_value_t = 10)]
    top_logprobs: usize,
    /// Report the model and kernels in use.
    #[arg(long, short = 'v')]
    verbose: bool,
    /// Print resident-memory snapshots (before loading, after opening the file, after loading,
    /// at the end) to stderr as `memory: {JSON}` (for the plan's accuracy tests).
    #[arg(long, hide = true)]
    report_memory: bool,
    #[command(flatten)]
    compute: ComputeArgs,
    #[command(flatten)]
    load: LoadArgs,
    #[command(flatten)]
    sampling: SamplingArgs,
}

/// The model and its tokenizer, loaded from one file (kept mapped).
pub struct Loaded {
    pub gguf: Arc<MappedGguf>,
    pub model: Model,
    pub tokenizer: Tokenizer,
}

pub fn load(path: Option<PathBuf>, compute: &ComputeArgs) -> Result<Loaded> {
    load_with(
        path,
        compute,
        LoadMode::default(),
        &mut MemReport::default(),
    )
}

/// [`load`] with a load mode (`--no-mmap`, `--mlock`), marking `report` after the file is
/// opened (`opened`) and after the model is loaded (`loaded`).
pub fn load_with(
    path: Option<PathBuf>,
    compute: &ComputeArgs,
    mode: LoadMode,
    report: &mut MemReport,
) -> Result<Loaded> {
    let path = crate::model_path(path)?;
    let gguf = Arc::new(
        MappedGguf::open_with(&path, mode)
            .with_context(|| format!("reading {}", path.display()))?,
    );
    report.mark("opened");
    let tokenizer = Tokenizer::from_metadata(&gguf.file().metadata)
        .with_context(|| format!("loading the tokenizer of {}", path.display()))?;
    let mut model =
        Model::load(gguf.clone()).with_context(|| format!("loading {}", path.display()))?;
    compute.apply(&mut model)?;
    report.mark("loaded");
    Ok(Loaded {
        gguf,
        model,
        tokenizer,
    })
}

pub fn context_size(model: &Model, requested: Option<usize>) -> usize {
    requested.unwrap_or_else(|| model.config().n_ctx_train.clamp(1, 4096))
}

pub fn kv_type(arg: KvTypeArg) -> KvType {
    match arg {
        KvTypeArg::F16 => KvType::F16,
        KvTypeArg::Q8_0 => KvType::Q8_0,
    }
}

pub fn run(args: RunArgs) -> Result<()> {
    let prompt = match (&args.prompt, &args.file) {
        (Some(p), _) => p.clone(),
        (None, Some(f)) => {
            std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?
        }
        (None, None) => {
            let mut s = String::new();
            std::io::stdin()
                .read_to_string(&mut s)
                .context("reading the prompt from stdin")?;
            s
        }
    };
    let path = crate::model_path(args.model.clone())?;
    let plan_req = hearth_plan::PlanRequest {
        n_ctx: args.ctx_size,
        kv_type: kv_type(args.kv_type),
        load: args.load.mode(),
        ..Default::default()
    };
    crate::plan::check(&path, &plan_req, args.load.force)?;
    let mut report = MemReport::new(args.report_memory);
    report.mark("start");
    let Loaded {
        model, tokenizer, ..
    } = load_with(Some(path), &args.compute, args.load.mode(), &mut report)?;
    let n_ctx = context_size(&model, args.ctx_size);
    if args.verbose {
        eprintln!("{}", crate::threads::describe(&model));
        let cfg = model.config();
        eprintln!(
            "model: {} ({} layers, n_embd {}), context {n_ctx}, KV {:?}",
            cfg.arch.name(),
            cfg.n_layer,
            cfg.n_embd,
            args.kv_type
        );
    }
    let mut kv = model.new_kv_cache(n_ctx, kv_type(args.kv_type))?;
    let tokens = tokenizer.encode(&prompt, true, true);
    if tokens.is_empty() {
        bail!("the prompt is empty");
    }
    let req = Request {
        prompt: tokens.clone(),
        n_predict: usize::try_from(args.n_predict).ok(),
        sampling: args.sampling.params(model.n_vocab())?,
        stop: args.stop.clone(),
        top_logprobs: if args.json { args.top_logprobs } else { 0 },
        ignore_eos: args.ignore_eos,
        context_shift: args.context_shift,
        cancel: None,
    };
    let mut stdout = std::io::stdout().lock();
    let json_mode = args.json;
    let out = generate(&model, &tokenizer, &mut kv, &req, |piece| {
        if !json_mode {
            let _ = stdout.write_all(piece.as_bytes());
            let _ = stdout.flush();
        }
    })?;
    if json_mode {
        let steps: Vec<_> = out
            .steps
            .iter()
            .map(|s| {
                json!({
                    "id": s.id,
                    "logprob": s.logprob,
                    "top": s.top.iter().map(|&(id, lp)| json!({"id": id, "logprob": lp})).collect::<Vec<_>>(),
                })
            })
            .collect();
        let j = json!({
            "prompt_tokens": tokens,
            "generated_ids": out.generated,
            "text": out.text,
            "finish_reason": match out.finish { Finish::Eog => "eos", Finish::Length => "length", Finish::Stop => "stop", Finish::Cancelled => "cancelled" },
            "steps": steps,
        });
        writeln!(stdout, "{j}")?;
    } else {
        writeln!(stdout)?;
    }
    report.mark("end");
    report.print();
    let rate = |n: usize, d: std::time::Duration| n as f64 / d.as_secs_f64().max(1e-9);
    eprintln!(
        "prompt: {} tokens, {:.1} t/s | generation: {} tokens, {:.1} t/s",
        tokens.len(),
        rate(tokens.len(), out.prompt_time),
        out.generated.len(),
        rate(out.generated.len(), out.gen_time)
    );
    Ok(())
}
