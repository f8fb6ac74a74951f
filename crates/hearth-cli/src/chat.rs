//! `hearth chat`: an interactive conversation through the model's chat
//! template (or a built-in one). The KV cache is kept between turns: each
//! turn feeds only what the template added after the cached tokens.
//! Ctrl-C stops the current answer (at the prompt, it exits); `/reset`
//! forgets the conversation; `/exit` quits.

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, Result};
use clap::Args;
use hearth_tokenizer::template::RenderOptions;
use serde_json::{json, Value as Json};

use crate::generate::{generate, Finish, Request};
use crate::run::{context_size, kv_type, load_with, KvTypeArg, Loaded};
use crate::sampling_args::SamplingArgs;

/// Set by Ctrl-C while an answer is being generated.
static INTERRUPT: AtomicBool = AtomicBool::new(false);
/// Whether an answer is being generated (else Ctrl-C exits).
static GENERATING: AtomicBool = AtomicBool::new(false);

#[derive(Args)]
pub struct ChatArgs {
    /// The GGUF model (default: the default model).
    #[arg(short, long)]
    model: Option<PathBuf>,
    /// A system message.
    #[arg(long)]
    system: Option<String>,
    /// A named template (the model's `tokenizer.chat_template.NAME`, or chatml,
    /// llama3, gemma, mistral, phi3).
    #[arg(long)]
    template: Option<String>,
    /// Context size in tokens (default: the model's, at most 4096).
    #[arg(short = 'c', long = "ctx-size")]
    ctx_size: Option<usize>,
    #[arg(long, value_enum, default_value = "f16")]
    kv_type: KvTypeArg,
    /// Most tokens per answer (-1 = until the end of the turn).
    #[arg(short = 'n', long = "n-predict", default_value_t = -1, allow_hyphen_values = true)]
    n_predict: i64,
    /// Keep generating past end-of-turn tokens.
    #[arg(long)]
    ignore_eos: bool,
    #[command(flatten)]
    sampling: SamplingArgs,
    #[command(flatten)]
    compute: crate::threads::ComputeArgs,
    #[command(flatten)]
    load: crate::plan::LoadArgs,
}

fn system_messages(system: &Option<String>) -> Vec<Json> {
    system
        .iter()
        .map(|s| json!({"role": "system", "content": s}))
        .collect()
}

pub fn run(args: ChatArgs) -> Result<()> {
    let path = crate::model_path(args.model.clone())?;
    let req = hearth_plan::PlanRequest {
        n_ctx: args.ctx_size,
        kv_type: kv_type(args.kv_type),
        load: args.load.mode(),
        ..Default::default()
    };
    crate::plan::check(&path, &req, args.load.force)?;
    let Loaded {
        gguf,
        model,
        tokenizer,
    } = load_with(
        Some(path),
        &args.compute,
        args.load.mode(),
        &mut Default::default(),
    )?;
    let template = crate::template::chat_template(&gguf, &tokenizer, args.template.as_deref())?;
    let n_ctx = context_size(&model, args.ctx_size);
    let mut kv = model.new_kv_cache(n_ctx, kv_type(args.kv_type))?;
    let sampling = args.sampling.params(model.n_vocab())?;

    ctrlc::set_handler(|| {
        if GENERATING.load(Ordering::Relaxed) {
            INTERRUPT.store(true, Ordering::Relaxed);
        } else {
            std::process::exit(130);
        }
    })
    .context("installing the Ctrl-C handler")?;

    let mut messages = system_messages(&args.system);
    let mut cached: Vec<u32> = Vec::new();
    let stdin = std::io::stdin();
    let mut out = std::io::stdout();
    eprintln!("hearth chat: /reset forgets the conversation, /exit quits, Ctrl-C stops an answer.");
    loop {
        write!(out, "\n> ")?;
        out.flush()?;
        let mut line = String::new();
        if stdin.lock().read_line(&mut line)? == 0 {
            return Ok(());
        }
        let line = line.trim_end_matches(['\n', '\r']);
        match line.trim() {
            "" => continue,
            "/exit" | "/quit" => return Ok(()),
            "/reset" => {
                messages = system_messages(&args.system);
                cached.clear();
                kv.clear();
                eprintln!("(conversation reset)");
                continue;
            }
            _ => {}
        }
        messages.push(json!({"role": "user", "content": line}));
        let opts = RenderOptions {
            add_generation_prompt: true,
            strip_bos: tokenizer.add_bos(),
            ..Default::default()
        };
        let prompt = template.render(&messages, &opts)?;
        let tokens = tokenizer.encode(&prompt, true, true);
        // Reuse the cache when the conversation so far is a prefix of the new prompt.
        let common = cached
            .iter()
            .zip(&tokens)
            .take_while(|(a, b)| a == b)
            .count();
        if common < cached.len() || common == tokens.len() {
            kv.clear();
            cached.clear();
        }
        let new = tokens[cached.len()..].to_vec();
        let req = Request {
            prompt: new.clone(),
            n_predict: usize::try_from(args.n_predict).ok(),
            sampling: sampling.clone(),
            stop: Vec::new(),
            top_logprobs: 0,
            ignore_eos: args.ignore_eos,
            context_shift: None,
            cancel: Some(&INTERRUPT),
        };
        INTERRUPT.store(false, Ordering::Relaxed);
        GENERATING.store(true, Ordering::Relaxed);
        let result = generate(&model, &tokenizer, &mut kv, &req, |piece| {
            let _ = out.write_all(piece.as_bytes());
            let _ = out.flush();
        });
        GENERATING.store(false, Ordering::Relaxed);
        let outcome = match result {
            Ok(o) => o,
            Err(e) => {
                eprintln!("\nerror: {e:#}");
                messages.pop();
                kv.clear();
                cached.clear();
                continue;
            }
        };
        cached.extend_from_slice(&new);
        cached.extend_from_slice(&outcome.generated);
        match outcome.finish {
            Finish::Cancelled => eprintln!("\n(stopped)"),
            Finish::Length if kv.len() >= n_ctx => {
                eprintln!("\n(context full: /reset to start over)")
            }
            _ => {}
        }
        messages.push(json!({"role": "assistant", "content": outcome.text}));
    }
}
