//! `hearth perplexity`: llama.cpp's perplexity method (llama-perplexity):
//! the text is cut into chunks of `n_ctx` tokens, each chunk starts with BOS
//! (when the model adds one), and the second half of each chunk is scored.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use hearth_model::{KvType, LogitsFor};
use serde_json::json;

#[derive(Args)]
pub struct PerplexityArgs {
    /// The GGUF model (default: the default model).
    #[arg(short, long)]
    model: Option<PathBuf>,
    /// The text file to score.
    #[arg(short = 'f', long)]
    file: PathBuf,
    /// Tokens per chunk.
    #[arg(short = 'c', long = "ctx-size", default_value_t = 512)]
    ctx_size: usize,
    /// Score at most this many chunks (default: all).
    #[arg(long)]
    chunks: Option<usize>,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    compute: crate::threads::ComputeArgs,
}

/// `log p(tok)` under softmax(logits), computed as llama-perplexity does
/// (f32 max, f64 sum of f32 exponentials).
fn log_softmax(logits: &[f32], tok: usize) -> f64 {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f64 = logits.iter().map(|&l| f64::from((l - max).exp())).sum();
    f64::from(logits[tok] - max) - sum.ln()
}

/// Running sums of the negative log-likelihood.
#[derive(Default)]
struct Nll {
    sum: f64,
    sum2: f64,
    count: usize,
}

impl Nll {
    fn add(&mut self, logprob: f64) {
        self.sum -= logprob;
        self.sum2 += logprob * logprob;
        self.count += 1;
    }

    fn ppl(&self) -> f64 {
        (self.sum / self.count as f64).exp()
    }

    /// The ± llama-perplexity prints: the standard error of the mean
    /// negative log-likelihood, scaled by the perplexity.
    fn ppl_pm(&self) -> f64 {
        let n = self.count as f64;
        let mean = self.sum / n;
        let var = self.sum2 / n - mean * mean;
        if var > 0.0 {
            (var / (n - 1.0)).sqrt() * self.ppl()
        } else {
            f64::NAN
        }
    }
}

pub fn run(args: PerplexityArgs) -> Result<()> {
    let text = std::fs::read_to_string(&args.file)
        .with_context(|| format!("reading {}", args.file.display()))?;
    let crate::run::Loaded {
        model, tokenizer, ..
    } = crate::run::load(args.model, &args.compute)?;
    let n_ctx = args.ctx_size;
    if n_ctx < 4 {
        bail!("--ctx-size must be at least 4");
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
    let first = n_ctx / 2;
    let mut kv = model.new_kv_cache(n_ctx, KvType::F16)?;
    let mut nll = Nll::default();
    let mut running = Vec::with_capacity(n_chunks);
    let mut err = std::io::stderr().lock();
    for i in 0..n_chunks {
        let mut chunk = tokens[i * n_ctx..(i + 1) * n_ctx].to_vec();
        if tokenizer.add_bos() {
            if let Some(bos) = tokenizer.bos() {
                chunk[0] = bos;
            }
        }
        kv.clear();
        // Positions first..n_ctx-1 predict the tokens after them; the last
        // position predicts nothing in the chunk.
        let logits = model.forward(&chunk, &mut kv, LogitsFor::LastN(n_ctx - first))?;
        for (j, row) in logits.rows().take(n_ctx - first - 1).enumerate() {
            nll.add(log_softmax(row, chunk[first + j + 1] as usize));
        }
        running.push(nll.ppl());
        if !args.json {
            write!(err, "[{}]{:.4},", i + 1, nll.ppl())?;
            err.flush()?;
        }
    }
    if args.json {
        let j = json!({
            "n_ctx": n_ctx,
            "n_chunks": n_chunks,
            "n_tokens": tokens.len(),
            "ppl": nll.ppl(),
            "ppl_pm": nll.ppl_pm(),
            "running_ppl_per_chunk": running,
        });
        println!("{j}");
    } else {
        writeln!(err)?;
        println!(
            "Final estimate: PPL = {:.4} +/- {:.5}",
            nll.ppl(),
            nll.ppl_pm()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_softmax_is_normalized() {
        let logits = [1f32.ln(), 3f32.ln()];
        assert!((log_softmax(&logits, 1) - 0.75f64.ln()).abs() < 1e-7);
    }

    #[test]
    fn nll_statistics_match_the_formula() {
        // logprobs ln 0.5, ln 0.25: mean nll = 1.5 ln 2, ppl = 2^1.5.
        let mut n = Nll::default();
        n.add(0.5f64.ln());
        n.add(0.25f64.ln());
        assert!((n.ppl() - 2f64.powf(1.5)).abs() < 1e-12);
        // var of nll = (ln2)^2 / 4; sqrt(var / 1) * ppl.
        let expected = (2f64.ln() / 2.0) * 2f64.powf(1.5);
        assert!((n.ppl_pm() - expected).abs() < 1e-12);
    }
}
