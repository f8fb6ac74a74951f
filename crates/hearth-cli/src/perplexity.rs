//! `hearth perplexity`: llama.cpp's perplexity method (llama-perplexity):
//! the text is cut into chunks of `n_ctx` tokens, each chunk starts with BOS
//! (when the model adds one), and the second half of each chunk is scored.
//!
//! With `--kl-divergence-base FILE` the scored positions' log-probabilities
//! are saved in llama-perplexity's format (`_logits_`, n_ctx, n_vocab,
//! n_chunk, the tokens, then per position a 16-bit quantized log-softmax);
//! adding `--kl-divergence` compares a model against such a file and prints
//! llama-perplexity's KL-divergence statistics.

use std::io::{BufReader, BufWriter, Read, Write};
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
    /// The text file to score (not needed with --kl-divergence: the tokens come from the base file).
    #[arg(short = 'f', long)]
    file: Option<PathBuf>,
    /// Tokens per chunk.
    #[arg(short = 'c', long = "ctx-size", default_value_t = 512)]
    ctx_size: usize,
    /// Score at most this many chunks (default: all).
    #[arg(long)]
    chunks: Option<usize>,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
    /// Save the scored log-probabilities here (llama-perplexity's format); with
    /// --kl-divergence, read them from here instead.
    #[arg(long = "kl-divergence-base", value_name = "FILE")]
    kl_divergence_base: Option<PathBuf>,
    /// Compare the model against the log-probabilities of --kl-divergence-base.
    #[arg(long = "kl-divergence", requires = "kl_divergence_base")]
    kl_divergence: bool,
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
    if args.kl_divergence {
        return run_kld(args);
    }
    let Some(file) = args.file.clone() else {
        bail!("-f FILE is required (the text to score)");
    };
    let text =
        std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
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
            file.display(),
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
    let mut base_out = None;
    if let Some(path) = &args.kl_divergence_base {
        let f =
            std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
        let mut w = BufWriter::new(f);
        let n_vocab = model.n_vocab();
        w.write_all(b"_logits_")?;
        w.write_all(&(n_ctx as u32).to_le_bytes())?;
        w.write_all(&(n_vocab as i32).to_le_bytes())?;
        w.write_all(&(n_chunks as i32).to_le_bytes())?;
        for &t in &tokens[..n_chunks * n_ctx] {
            w.write_all(&(t as i32).to_le_bytes())?;
        }
        base_out = Some((w, vec![0u16; kld_row_len(n_vocab)]));
    }
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
            if let Some((w, buf)) = &mut base_out {
                quantized_log_softmax(row, buf);
                for v in buf.iter() {
                    w.write_all(&v.to_le_bytes())?;
                }
            }
        }
        running.push(nll.ppl());
        if !args.json {
            write!(err, "[{}]{:.4},", i + 1, nll.ppl())?;
            err.flush()?;
        }
    }
    if let Some((mut w, _)) = base_out {
        w.flush()?;
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

/// u16 values per saved position: two f32 (scale, minimum log-prob), then
/// the vocabulary rounded up to an even count (llama-perplexity's `nv`).
fn kld_row_len(n_vocab: usize) -> usize {
    2 * n_vocab.div_ceil(2) + 4
}

/// ggml's `nearest_int`: round half to even through the f32 mantissa.
fn nearest_int(f: f32) -> i32 {
    let v = f + 12582912.0;
    (v.to_bits() & 0x007f_ffff) as i32 - 0x0040_0000
}

/// The base model's log-softmax of one position, quantized to 16 bits over
/// the 16 nats below the maximum, as llama-perplexity saves it.
fn quantized_log_softmax(logits: &[f32], out: &mut [u16]) {
    let mut max = logits[0];
    let mut min = logits[0];
    for &l in &logits[1..] {
        max = max.max(l);
        min = min.min(l);
    }
    min = min.max(max - 16.0);
    let sum: f64 = logits.iter().map(|&l| f64::from((l - max).exp())).sum();
    let log_sum_exp = sum.ln() as f32;
    let min_log_prob = min - max - log_sum_exp;
    let scale = (max - min) / 65535.0;
    let (head, vals) = out.split_at_mut(4);
    let s = scale.to_bits();
    let m = min_log_prob.to_bits();
    head.copy_from_slice(&[s as u16, (s >> 16) as u16, m as u16, (m >> 16) as u16]);
    vals.fill(0);
    if scale != 0.0 {
        let inv = 1.0 / scale;
        for (o, &l) in vals.iter_mut().zip(logits) {
            *o = if l > min {
                nearest_int(inv * (l - min)) as u16
            } else {
                0
            };
        }
    }
}

/// llama-perplexity's `kl_divergence_result`.
#[derive(Default)]
struct KldStats {
    sum_nll: f64,
    sum_nll2: f64,
    sum_nll_base: f64,
    sum_nll_base2: f64,
    sum_nll_nll_base: f64,
    sum_kld: f64,
    sum_kld2: f64,
    sum_p_diff: f64,
    sum_p_diff2: f64,
    sum_p_diff4: f64,
    max_p_diff: f32,
    n_same_top: usize,
    count: usize,
}

impl KldStats {
    /// Adds one position: the model's logits against the base's saved row;
    /// returns (KLD, Δp).
    fn add(&mut self, logits: &[f32], base: &[u16], tok: usize) -> (f64, f32) {
        let mut max = logits[0];
        let mut imax = 0;
        for (i, &l) in logits.iter().enumerate().skip(1) {
            if l > max {
                max = l;
                imax = i;
            }
        }
        let sum_exp: f64 = logits.iter().map(|&l| f64::from((l - max).exp())).sum();
        let log_sum_exp = sum_exp.ln() as f32;
        let scale = f32::from_bits(u32::from(base[0]) | (u32::from(base[1]) << 16));
        let min_log_prob = f32::from_bits(u32::from(base[2]) | (u32::from(base[3]) << 16));
        let base = &base[4..];
        let nll = max + log_sum_exp - logits[tok];
        self.sum_nll += f64::from(nll);
        self.sum_nll2 += f64::from(nll * nll);
        let nll_base = -(scale * f32::from(base[tok]) + min_log_prob);
        self.sum_nll_base += f64::from(nll_base);
        self.sum_nll_base2 += f64::from(nll_base * nll_base);
        self.sum_nll_nll_base += f64::from(nll * nll_base);
        let max_log = max + log_sum_exp;
        let mut sum = 0f64;
        let mut imax_base = 0;
        let mut p_log_base_max = 0f32;
        for (i, &l) in logits.iter().enumerate() {
            let p_log_base = scale * f32::from(base[i]) + min_log_prob;
            if i == 0 || p_log_base > p_log_base_max {
                p_log_base_max = p_log_base;
                imax_base = i;
            }
            if p_log_base > -16.0 {
                let p_base = p_log_base.exp();
                sum += f64::from(p_base * (p_log_base - l + max_log));
            }
        }
        self.sum_kld += sum;
        self.sum_kld2 += sum * sum;
        self.count += 1;
        if imax == imax_base {
            self.n_same_top += 1;
        }
        let p_diff = (-nll).exp() - (-nll_base).exp();
        self.sum_p_diff += f64::from(p_diff);
        let p_diff2 = f64::from(p_diff * p_diff);
        self.sum_p_diff2 += p_diff2;
        self.sum_p_diff4 += p_diff2 * p_diff2;
        self.max_p_diff = self.max_p_diff.max(p_diff.abs());
        (sum, p_diff)
    }
}

/// Mean and its standard error, as llama-perplexity computes them.
fn mean_and_uncertainty(sum: f64, sum2: f64, count: usize) -> (f64, f64) {
    if count < 1 {
        return (0.0, 0.0);
    }
    let n = count as f64;
    let f = sum / n;
    let df = sum2 / n - f * f;
    let df = if df > 0.0 && count > 10 {
        (df / (n - 1.0)).sqrt()
    } else {
        0.0
    };
    (f, df)
}

fn covariance(a: f64, b: f64, ab: f64, count: usize) -> f64 {
    if count < 10 {
        return 0.0;
    }
    let n = count as f64;
    (ab / n - (a / n) * (b / n)) / (n - 1.0)
}

/// Linear interpolation between the sorted values around `fraction`.
fn percentile(values: &[f32], fraction: f32) -> f32 {
    if fraction <= 0.0 {
        return values[0];
    }
    if fraction >= 1.0 {
        return values[values.len() - 1];
    }
    let p = fraction * (values.len() - 1) as f32;
    let ip = p as usize;
    let p = p - ip as f32;
    (1.0 - p) * values[ip] + p * values[(ip + 1).min(values.len() - 1)]
}

fn median(values: &[f32]) -> f32 {
    let n = values.len();
    if n.is_multiple_of(2) {
        0.5 * (values[n / 2] + values[n / 2 - 1])
    } else {
        values[n / 2]
    }
}

fn read_i32(r: &mut impl Read) -> Result<i32> {
    let mut b = [0u8; 4];
    r.read_exact(&mut b)?;
    Ok(i32::from_le_bytes(b))
}

/// `--kl-divergence`: the model against the saved base log-probabilities.
fn run_kld(args: PerplexityArgs) -> Result<()> {
    let Some(path) = &args.kl_divergence_base else {
        bail!("--kl-divergence needs --kl-divergence-base FILE");
    };
    let file_len = std::fs::metadata(path)
        .with_context(|| format!("reading {}", path.display()))?
        .len();
    let mut r = BufReader::new(
        std::fs::File::open(path).with_context(|| format!("reading {}", path.display()))?,
    );
    let mut magic = [0u8; 8];
    r.read_exact(&mut magic)
        .with_context(|| format!("reading {}", path.display()))?;
    if &magic != b"_logits_" {
        bail!(
            "{} does not look like a file of log-probabilities",
            path.display()
        );
    }
    let n_ctx = read_i32(&mut r)? as u32 as usize;
    let n_vocab = read_i32(&mut r)?;
    let n_chunk_file = read_i32(&mut r)?;
    if n_ctx < 4 || n_vocab < 1 || n_chunk_file < 1 {
        bail!(
            "{}: bad header (n_ctx {n_ctx}, n_vocab {n_vocab}, n_chunk {n_chunk_file})",
            path.display()
        );
    }
    let (n_vocab, n_chunk_file) = (n_vocab as usize, n_chunk_file as usize);
    let nv = kld_row_len(n_vocab);
    let first = n_ctx / 2;
    let n_scored = n_ctx - 1 - first;
    // Everything the header promises must be in the file before we allocate.
    let need = (n_ctx as u64)
        .checked_mul(n_chunk_file as u64)
        .and_then(|t| t.checked_mul(4))
        .and_then(|t| t.checked_add(20))
        .and_then(|t| {
            (n_scored as u64)
                .checked_mul(nv as u64)?
                .checked_mul(2)?
                .checked_mul(n_chunk_file as u64)?
                .checked_add(t)
        });
    if need.is_none_or(|n| n > file_len) {
        bail!(
            "{}: {file_len} bytes cannot hold {n_chunk_file} chunks of {n_ctx} tokens over {n_vocab} tokens",
            path.display()
        );
    }
    let mut tokens = vec![0u32; n_ctx * n_chunk_file];
    for t in &mut tokens {
        let v = read_i32(&mut r)?;
        *t = u32::try_from(v)
            .ok()
            .filter(|&v| (v as usize) < n_vocab)
            .with_context(|| format!("{}: token id {v} out of the vocabulary", path.display()))?;
    }

    let crate::run::Loaded {
        model, tokenizer, ..
    } = crate::run::load(args.model.clone(), &args.compute)?;
    if model.n_vocab() != n_vocab {
        bail!(
            "inconsistent vocabulary: the base file has {n_vocab} tokens, the model {}",
            model.n_vocab()
        );
    }
    let n_chunk = args.chunks.map_or(n_chunk_file, |c| c.min(n_chunk_file));
    let mut kv = model.new_kv_cache(n_ctx, KvType::F16)?;
    let mut stats = KldStats::default();
    let mut kld_values = Vec::with_capacity(n_scored * n_chunk);
    let mut p_diff_values = Vec::with_capacity(n_scored * n_chunk);
    let mut row = vec![0u16; nv];
    let mut bytes = vec![0u8; nv * 2];
    let mut out = std::io::stdout().lock();
    let mut per_chunk = Vec::with_capacity(n_chunk);
    if !args.json {
        writeln!(out, "chunk             PPL               ln(PPL(Q)/PPL(base))          KL Divergence              Δp RMS            Same top p")?;
    }
    for i in 0..n_chunk {
        let mut chunk = tokens[i * n_ctx..(i + 1) * n_ctx].to_vec();
        if tokenizer.add_bos() {
            if let Some(bos) = tokenizer.bos() {
                chunk[0] = bos;
            }
        }
        kv.clear();
        let logits = model.forward(&chunk, &mut kv, LogitsFor::LastN(n_ctx - first))?;
        for (j, lrow) in logits.rows().take(n_scored).enumerate() {
            r.read_exact(&mut bytes)
                .with_context(|| format!("reading the log-probs of chunk {}", i + 1))?;
            for (v, b) in row.iter_mut().zip(bytes.chunks_exact(2)) {
                *v = u16::from_le_bytes([b[0], b[1]]);
            }
            // The next token of the *original* text (not BOS) is scored.
            let tok = tokens[i * n_ctx + first + j + 1] as usize;
            let (k, p) = stats.add(lrow, &row, tok);
            kld_values.push(k as f32);
            p_diff_values.push(p);
        }
        let lp = mean_and_uncertainty(stats.sum_nll, stats.sum_nll2, stats.count);
        let lpb = mean_and_uncertainty(stats.sum_nll_base, stats.sum_nll_base2, stats.count);
        let cov = covariance(
            stats.sum_nll,
            stats.sum_nll_base,
            stats.sum_nll_nll_base,
            stats.count,
        );
        let ratio = lp.0 - lpb.0;
        let ratio_unc = (lp.1 * lp.1 + lpb.1 * lpb.1 - 2.0 * cov).sqrt();
        let kl = mean_and_uncertainty(stats.sum_kld, stats.sum_kld2, stats.count);
        let mse = mean_and_uncertainty(stats.sum_p_diff2, stats.sum_p_diff4, stats.count);
        let rms = mse.0.sqrt();
        let rms_unc = 0.5 / rms * mse.1;
        let top = stats.n_same_top as f64 / stats.count as f64;
        let top_unc = (top * (1.0 - top) / (stats.count as f64 - 1.0)).sqrt();
        let ppl = lp.0.exp();
        per_chunk.push(json!({
            "chunk": i + 1, "ppl": ppl, "ln_ppl_ratio": ratio, "kld": kl.0,
            "p_diff_rms": rms, "same_top_p": top,
        }));
        if !args.json {
            writeln!(
                out,
                "{:4}    {:9.4} ± {:9.4}    {:10.5} ± {:10.5}    {:10.5} ± {:10.5}    {:6.3} ± {:6.3} %    {:6.3} ± {:6.3} %",
                i + 1,
                ppl,
                ppl * lp.1,
                ratio,
                ratio_unc,
                kl.0,
                kl.1,
                100.0 * rms,
                100.0 * rms_unc,
                100.0 * top,
                100.0 * top_unc
            )?;
        }
    }
    if stats.count == 0 {
        bail!("nothing was scored");
    }
    kld_values.sort_by(f32::total_cmp);
    p_diff_values.sort_by(f32::total_cmp);
    let lp = mean_and_uncertainty(stats.sum_nll, stats.sum_nll2, stats.count);
    let lpb = mean_and_uncertainty(stats.sum_nll_base, stats.sum_nll_base2, stats.count);
    let cov = covariance(
        stats.sum_nll,
        stats.sum_nll_base,
        stats.sum_nll_nll_base,
        stats.count,
    );
    let (ppl, ppl_unc) = (lp.0.exp(), lp.0.exp() * lp.1);
    let (ppl_base, ppl_base_unc) = (lpb.0.exp(), lpb.0.exp() * lpb.1);
    let ratio = lp.0 - lpb.0;
    let ratio_unc = (lp.1 * lp.1 + lpb.1 * lpb.1 - 2.0 * cov).sqrt();
    let kl = mean_and_uncertainty(stats.sum_kld, stats.sum_kld2, stats.count);
    let pd = mean_and_uncertainty(stats.sum_p_diff, stats.sum_p_diff2, stats.count);
    let mse = mean_and_uncertainty(stats.sum_p_diff2, stats.sum_p_diff4, stats.count);
    let rms = mse.0.sqrt();
    let rms_unc = 0.5 / rms * mse.1;
    let top = stats.n_same_top as f64 / stats.count as f64;
    let top_unc = (top * (1.0 - top) / (stats.count as f64 - 1.0)).sqrt();
    const KLD_PCT: [(&str, f32); 8] = [
        ("99.9%", 0.999),
        ("99.0%", 0.99),
        ("95.0%", 0.95),
        ("90.0%", 0.9),
        ("10.0%", 0.1),
        (" 5.0%", 0.05),
        (" 1.0%", 0.01),
        (" 0.1%", 0.001),
    ];
    const DP_PCT: [(&str, f32); 10] = [
        ("99.9%", 0.999),
        ("99.0%", 0.99),
        ("95.0%", 0.95),
        ("90.0%", 0.9),
        ("75.0%", 0.75),
        ("25.0%", 0.25),
        ("10.0%", 0.1),
        (" 5.0%", 0.05),
        (" 1.0%", 0.01),
        (" 0.1%", 0.001),
    ];
    if args.json {
        let pct = |v: &[f32], table: &[(&str, f32)]| -> serde_json::Value {
            table
                .iter()
                .map(|&(n, f)| (n.trim().to_string(), json!(percentile(v, f))))
                .collect::<serde_json::Map<_, _>>()
                .into()
        };
        let j = json!({
            "n_ctx": n_ctx, "n_chunks": n_chunk, "count": stats.count,
            "ppl": ppl, "ppl_pm": ppl_unc, "ppl_base": ppl_base, "ppl_base_pm": ppl_base_unc,
            "ln_ppl_ratio": ratio, "ln_ppl_ratio_pm": ratio_unc,
            "kld_mean": kl.0, "kld_mean_pm": kl.1,
            "kld_max": kld_values[kld_values.len() - 1], "kld_median": median(&kld_values),
            "kld_min": kld_values[0], "kld_percentiles": pct(&kld_values, &KLD_PCT),
            "p_diff_mean": pd.0, "p_diff_mean_pm": pd.1, "p_diff_max": p_diff_values[p_diff_values.len() - 1],
            "p_diff_median": median(&p_diff_values), "p_diff_min": p_diff_values[0],
            "p_diff_percentiles": pct(&p_diff_values, &DP_PCT),
            "p_diff_rms": rms, "p_diff_rms_pm": rms_unc,
            "same_top_p": top, "same_top_p_pm": top_unc,
            "per_chunk": per_chunk,
        });
        writeln!(out, "{j}")?;
        return Ok(());
    }
    writeln!(out)?;
    if stats.count < 100 {
        return Ok(());
    }
    writeln!(out, "====== Perplexity statistics ======")?;
    writeln!(
        out,
        "Mean PPL(Q)                   : {ppl:10.6} ± {ppl_unc:10.6}"
    )?;
    writeln!(
        out,
        "Mean PPL(base)                : {ppl_base:10.6} ± {ppl_base_unc:10.6}"
    )?;
    writeln!(
        out,
        "Cor(ln(PPL(Q)), ln(PPL(base))): {:6.2}%",
        100.0 * cov / (lp.1 * lpb.1)
    )?;
    writeln!(
        out,
        "Mean ln(PPL(Q)/PPL(base))     : {ratio:10.6} ± {ratio_unc:10.6}"
    )?;
    let r = ratio.exp();
    writeln!(
        out,
        "Mean PPL(Q)/PPL(base)         : {r:10.6} ± {:10.6}",
        r * ratio_unc
    )?;
    let ppl_cov = ppl * ppl_base * cov;
    let diff_unc = (ppl_unc * ppl_unc + ppl_base_unc * ppl_base_unc - 2.0 * ppl_cov).sqrt();
    writeln!(
        out,
        "Mean PPL(Q)-PPL(base)         : {:10.6} ± {diff_unc:10.6}",
        ppl - ppl_base
    )?;
    writeln!(out)?;
    writeln!(out, "====== KL divergence statistics ======")?;
    writeln!(out, "Mean    KLD: {:10.6} ± {:10.6}", kl.0, kl.1)?;
    writeln!(
        out,
        "Maximum KLD: {:10.6}",
        kld_values[kld_values.len() - 1]
    )?;
    for &(n, f) in &KLD_PCT[..4] {
        writeln!(out, "{n}   KLD: {:10.6}", percentile(&kld_values, f))?;
    }
    writeln!(out, "Median  KLD: {:10.6}", median(&kld_values))?;
    for &(n, f) in &KLD_PCT[4..] {
        writeln!(out, "{n}   KLD: {:10.6}", percentile(&kld_values, f))?;
    }
    writeln!(out, "Minimum KLD: {:10.6}", kld_values[0])?;
    writeln!(out)?;
    writeln!(out, "====== Token probability statistics ======")?;
    writeln!(
        out,
        "Mean    Δp: {:6.3} ± {:5.3} %",
        100.0 * pd.0,
        100.0 * pd.1
    )?;
    writeln!(
        out,
        "Maximum Δp: {:6.3}%",
        100.0 * p_diff_values[p_diff_values.len() - 1]
    )?;
    for &(n, f) in &DP_PCT[..5] {
        writeln!(
            out,
            "{n}   Δp: {:6.3}%",
            100.0 * percentile(&p_diff_values, f)
        )?;
    }
    writeln!(out, "Median  Δp: {:6.3}%", 100.0 * median(&p_diff_values))?;
    for &(n, f) in &DP_PCT[5..] {
        writeln!(
            out,
            "{n}   Δp: {:6.3}%",
            100.0 * percentile(&p_diff_values, f)
        )?;
    }
    writeln!(out, "Minimum Δp: {:6.3}%", 100.0 * p_diff_values[0])?;
    writeln!(
        out,
        "RMS Δp    : {:6.3} ± {:5.3} %",
        100.0 * rms,
        100.0 * rms_unc
    )?;
    writeln!(
        out,
        "Same top p: {:6.3} ± {:5.3} %",
        100.0 * top,
        100.0 * top_unc
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_int_rounds_half_to_even() {
        assert_eq!(nearest_int(2.5), 2);
        assert_eq!(nearest_int(3.5), 4);
        assert_eq!(nearest_int(65535.0), 65535);
        assert_eq!(nearest_int(-1.4), -1);
    }

    #[test]
    fn kld_of_a_model_against_its_own_log_probs_is_about_zero() {
        let logits: Vec<f32> = (0..101)
            .map(|i| ((i * 37) % 23) as f32 * 0.7 - 5.0)
            .collect();
        let mut row = vec![0u16; kld_row_len(logits.len())];
        assert_eq!(row.len(), 2 * 51 + 4);
        quantized_log_softmax(&logits, &mut row);
        let mut s = KldStats::default();
        let (kld, p_diff) = s.add(&logits, &row, 7);
        assert!(kld.abs() < 1e-4, "{kld}");
        assert!(p_diff.abs() < 1e-4, "{p_diff}");
        assert_eq!(s.n_same_top, 1);
    }

    #[test]
    fn percentiles_interpolate_like_llama_perplexity() {
        let v = [0.0f32, 1.0, 2.0, 3.0, 4.0];
        assert_eq!(percentile(&v, 0.5), 2.0);
        assert_eq!(percentile(&v, 0.99), 3.96);
        assert_eq!(percentile(&v, 1.0), 4.0);
        assert_eq!(median(&[1.0, 2.0, 3.0, 4.0]), 2.5);
    }

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
