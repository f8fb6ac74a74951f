//! `hearth imatrix`: an importance matrix for the quantizers, computed the
//! way llama-imatrix does: the text is cut into chunks of `-c` tokens (BOS
//! first when the model adds one), every chunk is run through the model, and
//! for each block weight the squares of its inputs are summed per column
//! (products of fewer than 16 rows are skipped). Written in llama-imatrix's
//! GGUF format (or the legacy `.dat` one), readable by `llama-quantize`.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use hearth_model::{KvType, LogitsFor};
use hearth_quantize::imatrix::Collector;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// GGUF (llama-imatrix's default).
    #[default]
    Gguf,
    /// The legacy binary format.
    Dat,
}

#[derive(Args)]
pub struct ImatrixArgs {
    /// The GGUF model (default: the default model).
    #[arg(short, long)]
    model: Option<PathBuf>,
    /// The calibration text.
    #[arg(short = 'f', long)]
    file: PathBuf,
    /// Where to write the matrix.
    #[arg(short = 'o', long = "output-file", default_value = "imatrix.gguf")]
    output: PathBuf,
    /// Tokens per chunk.
    #[arg(short = 'c', long = "ctx-size", default_value_t = 512)]
    ctx_size: usize,
    /// Use at most this many chunks (default: all).
    #[arg(long)]
    chunks: Option<usize>,
    /// File format.
    #[arg(long = "output-format", value_enum, default_value = "gguf")]
    output_format: OutputFormat,
    /// Also collect output.weight.
    #[arg(long = "process-output")]
    process_output: bool,
    #[command(flatten)]
    compute: crate::threads::ComputeArgs,
}

pub fn run(args: ImatrixArgs) -> Result<()> {
    let text = std::fs::read_to_string(&args.file)
        .with_context(|| format!("reading {}", args.file.display()))?;
    let crate::run::Loaded {
        mut model,
        tokenizer,
        ..
    } = crate::run::load(args.model, &args.compute)?;
    let n_ctx = args.ctx_size;
    if n_ctx < 16 {
        bail!("--ctx-size must be at least 16 (shorter products are not collected)");
    }
    let tokens = tokenizer.encode(&text, true, false);
    if tokens.len() < 2 * n_ctx {
        bail!(
            "{} tokenizes to {} tokens; a context of {n_ctx} needs at least {}",
            args.file.display(),
            tokens.len(),
            2 * n_ctx
        );
    }
    let max_chunks = tokens.len() / n_ctx;
    let n_chunks = args.chunks.map_or(max_chunks, |c| c.min(max_chunks));

    let collector = Arc::new(Mutex::new((
        Collector {
            process_output: args.process_output,
            ..Collector::default()
        },
        None::<hearth_quantize::QuantizeError>,
    )));
    let c2 = collector.clone();
    model.set_matmul_observer(Some(Arc::new(move |name: &str, x: &[f32], n: usize| {
        let mut g = c2.lock().unwrap_or_else(|e| e.into_inner());
        let (col, err) = &mut *g;
        if err.is_none() {
            if let Err(e) = col.add(name, x, n) {
                *err = Some(e);
            }
        }
    })));

    let mut kv = model.new_kv_cache(n_ctx, KvType::F16)?;
    eprintln!(
        "computing over {n_chunks} chunks of {n_ctx} tokens ({})",
        crate::threads::describe(&model)
    );
    for i in 0..n_chunks {
        let mut chunk = tokens[i * n_ctx..(i + 1) * n_ctx].to_vec();
        if tokenizer.add_bos() {
            if let Some(bos) = tokenizer.bos() {
                chunk[0] = bos;
            }
        }
        kv.clear();
        // All positions' logits, as llama-imatrix requests, so every layer
        // (and output.weight) sees every token.
        model.forward(&chunk, &mut kv, LogitsFor::All)?;
        if let Some(e) = collector.lock().unwrap_or_else(|e| e.into_inner()).1.take() {
            return Err(e).context("collecting the importance matrix");
        }
        eprint!("[{}]", i + 1);
    }
    eprintln!();
    model.set_matmul_observer(None);
    let (col, _) = std::mem::take(&mut *collector.lock().unwrap_or_else(|e| e.into_inner()));
    let im = col.finish(
        vec![args.file.to_string_lossy().into_owned()],
        i32::try_from(n_chunks).unwrap_or(i32::MAX),
        i32::try_from(n_ctx).unwrap_or(i32::MAX),
    );
    let bytes = match args.output_format {
        OutputFormat::Gguf => im.to_gguf(),
        OutputFormat::Dat => im.to_legacy(),
    };
    std::fs::write(&args.output, bytes)
        .with_context(|| format!("writing {}", args.output.display()))?;
    eprintln!(
        "stored {} entries computed on {n_chunks} chunks in {}",
        im.entries.len(),
        args.output.display()
    );
    Ok(())
}
