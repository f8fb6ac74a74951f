//! `hearth bench`: llama-bench's interface and output for hearth.
//!
//! Tests as llama-bench runs them: `ppN` evaluates N prompt tokens in one
//! batch on an empty cache; `tgN` generates N tokens one at a time; `-pg`
//! both; `-d D` first fills the cache with D tokens (untimed). Each test runs
//! once untimed (warm-up), then `-r` times; t/s is mean ± standard deviation.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use hearth_gguf::{file_type_name, MappedGguf};
use hearth_model::{KvCache, KvType, LogitsFor, Model};
use serde_json::json;

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq)]
pub enum Output {
    Md,
    Json,
    Csv,
}

#[derive(Args)]
pub struct BenchArgs {
    /// GGUF model(s) (default: the default model).
    #[arg(short, long)]
    model: Vec<PathBuf>,
    /// Prompt sizes, comma-separated (0 = none).
    #[arg(
        short = 'p',
        long = "n-prompt",
        value_delimiter = ',',
        default_value = "512"
    )]
    n_prompt: Vec<usize>,
    /// Generation lengths, comma-separated (0 = none).
    #[arg(
        short = 'n',
        long = "n-gen",
        value_delimiter = ',',
        default_value = "128"
    )]
    n_gen: Vec<usize>,
    /// Prompt then generation tests `PP,TG` (repeatable).
    #[arg(long = "pg", value_name = "PP,TG")]
    pg: Vec<String>,
    /// Cache depths to run each test at, comma-separated.
    #[arg(
        short = 'd',
        long = "n-depth",
        value_delimiter = ',',
        default_value = "0"
    )]
    n_depth: Vec<usize>,
    /// Thread counts, comma-separated (default: all cores).
    #[arg(short = 't', long = "threads", value_delimiter = ',')]
    threads: Vec<usize>,
    /// Kernels: `fast` (default) or `llama.cpp` (its results bit for bit).
    #[arg(long, value_enum, default_value = "fast")]
    numerics: crate::threads::NumericsArg,
    /// Print the CPU features and kernels in use to stderr.
    #[arg(short = 'v', long)]
    verbose: bool,
    /// Repetitions per test.
    #[arg(short = 'r', long = "repetitions", default_value_t = 5)]
    repetitions: usize,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value = "md")]
    output: Output,
    /// Map the model file (1, default) or read it into memory backed by transparent huge
    /// pages (0), like llama-bench's `-mmp` / `--mmap`.
    #[arg(
        long = "mmap",
        alias = "mmp",
        value_name = "0|1",
        default_value_t = 1,
        value_parser = clap::value_parser!(u8).range(0..=1)
    )]
    mmap: u8,
}

#[derive(Clone, Copy)]
struct Test {
    n_prompt: usize,
    n_gen: usize,
    n_depth: usize,
}

impl Test {
    fn name(&self) -> String {
        let mut s = match (self.n_prompt, self.n_gen) {
            (p, 0) => format!("pp{p}"),
            (0, g) => format!("tg{g}"),
            (p, g) => format!("pp{p}+tg{g}"),
        };
        if self.n_depth > 0 {
            s.push_str(&format!(" @ d{}", self.n_depth));
        }
        s
    }

    fn n_tokens(&self) -> usize {
        self.n_prompt + self.n_gen
    }
}

/// Deterministic pseudo-random token ids (the content does not matter for speed).
struct Tokens(u64);

impl Tokens {
    fn next(&mut self, n_vocab: usize) -> u32 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((self.0 >> 33) % n_vocab as u64) as u32
    }
    fn take(&mut self, n: usize, n_vocab: usize) -> Vec<u32> {
        (0..n).map(|_| self.next(n_vocab)).collect()
    }
}

fn run_once(model: &Model, kv: &mut KvCache, t: &Test, rng: &mut Tokens) -> Result<f64> {
    let n_vocab = model.n_vocab();
    kv.clear();
    if t.n_depth > 0 {
        model.forward(&rng.take(t.n_depth, n_vocab), kv, LogitsFor::Last)?;
    }
    let start = Instant::now();
    if t.n_prompt > 0 {
        model.forward(&rng.take(t.n_prompt, n_vocab), kv, LogitsFor::Last)?;
    }
    for _ in 0..t.n_gen {
        model.forward(&[rng.next(n_vocab)], kv, LogitsFor::Last)?;
    }
    Ok(start.elapsed().as_secs_f64())
}

/// Mean and sample standard deviation.
fn mean_std(xs: &[f64]) -> (f64, f64) {
    let n = xs.len() as f64;
    let mean = xs.iter().sum::<f64>() / n;
    let var = if xs.len() > 1 {
        xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)
    } else {
        0.0
    };
    (mean, var.sqrt())
}

fn model_label(gguf: &MappedGguf) -> String {
    let m = &gguf.file().metadata;
    let arch = m
        .get_str_opt("general.architecture")
        .ok()
        .flatten()
        .unwrap_or("?");
    let n = gguf.file().n_elements() as f64;
    let fallback = if n >= 1e9 {
        format!("{:.0}B", n / 1e9)
    } else {
        format!("{:.0}M", n / 1e6)
    };
    let size = m
        .get_str_opt("general.size_label")
        .ok()
        .flatten()
        .map_or(fallback, str::to_string);
    let ftype = m
        .get_u32_opt("general.file_type")
        .ok()
        .flatten()
        .and_then(file_type_name)
        .unwrap_or("?");
    format!("{arch} {size} {ftype}")
}

pub fn run(args: BenchArgs) -> Result<()> {
    if args.repetitions == 0 {
        bail!("-r must be at least 1");
    }
    let mut tests = Vec::new();
    for &d in &args.n_depth {
        tests.extend(args.n_prompt.iter().filter(|&&p| p > 0).map(|&p| Test {
            n_prompt: p,
            n_gen: 0,
            n_depth: d,
        }));
        tests.extend(args.n_gen.iter().filter(|&&g| g > 0).map(|&g| Test {
            n_prompt: 0,
            n_gen: g,
            n_depth: d,
        }));
        for pg in &args.pg {
            let (p, g) = pg
                .split_once(',')
                .with_context(|| format!("--pg {pg:?}: expected PP,TG"))?;
            tests.push(Test {
                n_prompt: p.trim().parse()?,
                n_gen: g.trim().parse()?,
                n_depth: d,
            });
        }
    }
    let models = if args.model.is_empty() {
        vec![crate::model_path(None)?]
    } else {
        args.model.clone()
    };
    let threads = if args.threads.is_empty() {
        vec![crate::threads::default_threads()]
    } else {
        args.threads.clone()
    };
    if args.output == Output::Md {
        println!("| model                          |       size |     params | backend    | threads | kernels |            test |                  t/s |");
        println!("| ------------------------------ | ---------: | ---------: | ---------- | ------: | ------- | --------------: | -------------------: |");
    } else if args.output == Output::Csv {
        println!("model_filename,model_type,model_size,model_n_params,backend,kernels,n_threads,n_prompt,n_gen,n_depth,avg_ts,stddev_ts");
    }
    let mut json_rows = Vec::new();
    for path in &models {
        let gguf = Arc::new(
            MappedGguf::open_with(
                path,
                hearth_gguf::LoadMode {
                    mmap: args.mmap == 1,
                    mlock: false,
                },
            )
            .with_context(|| format!("reading {}", path.display()))?,
        );
        let label = model_label(&gguf);
        let (size, params) = (gguf.file().tensor_bytes(), gguf.file().n_elements());
        let mut model = Model::load(gguf)?;
        model.set_numerics(args.numerics.into());
        if args.verbose {
            let pool = hearth_kernels::pool::ThreadPool::new(crate::threads::default_threads());
            let bw = hearth_kernels::membw::read_bandwidth(&pool, 512 << 20, 3);
            let bytes = model.weight_bytes_per_token() as f64;
            eprintln!(
                "memory read bandwidth {:.1} GB/s ({} threads); weights read per token {:.1} MB; decode roofline {:.1} t/s",
                bw / 1e9,
                pool.n_threads(),
                bytes / 1e6,
                bw / bytes
            );
        }
        for &n_threads in &threads {
            if n_threads == 0 {
                anyhow::bail!("-t: thread counts must be at least 1");
            }
            model.set_threads(n_threads);
            let level = model.kernel_summary();
            if args.verbose {
                eprintln!("{}", crate::threads::describe(&model));
            }
            for t in &tests {
                let n_ctx = t.n_depth + t.n_tokens();
                let mut kv = model.new_kv_cache(n_ctx.max(1), KvType::F16)?;
                let mut rng = Tokens(0x5eed);
                run_once(&model, &mut kv, t, &mut rng)?; // warm-up
                let ts: Vec<f64> = (0..args.repetitions)
                    .map(|_| {
                        run_once(&model, &mut kv, t, &mut rng).map(|s| t.n_tokens() as f64 / s)
                    })
                    .collect::<Result<_>>()?;
                let (mean, std) = mean_std(&ts);
                match args.output {
                    Output::Md => println!(
                        "| {:<30} | {:>10} | {:>10} | {:<10} | {:>7} | {:<7} | {:>15} | {:>20} |",
                        label,
                        format!("{:.2} MiB", size as f64 / (1u64 << 20) as f64),
                        format!("{:.2} M", params as f64 / 1e6),
                        "CPU",
                        n_threads,
                        level,
                        t.name(),
                        format!("{mean:.2} ± {std:.2}")
                    ),
                    Output::Csv => println!(
                        "{},{label},{size},{params},CPU,{level},{n_threads},{},{},{},{mean:.6},{std:.6}",
                        path.display(),
                        t.n_prompt,
                        t.n_gen,
                        t.n_depth
                    ),
                    Output::Json => json_rows.push(json!({
                        "model_filename": path.display().to_string(),
                        "model_type": label,
                        "model_size": size,
                        "model_n_params": params,
                        "backends": "CPU",
                        "kernels": level,
                        "n_threads": n_threads,
                        "n_prompt": t.n_prompt,
                        "n_gen": t.n_gen,
                        "n_depth": t.n_depth,
                        "avg_ts": mean,
                        "stddev_ts": std,
                        "samples_ts": ts,
                    })),
                }
            }
        }
    }
    if args.output == Output::Json {
        println!("{}", serde_json::to_string_pretty(&json_rows)?);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_names_follow_llama_bench() {
        let t = |p, g, d| {
            Test {
                n_prompt: p,
                n_gen: g,
                n_depth: d,
            }
            .name()
        };
        assert_eq!(t(512, 0, 0), "pp512");
        assert_eq!(t(0, 128, 0), "tg128");
        assert_eq!(t(512, 128, 0), "pp512+tg128");
        assert_eq!(t(0, 128, 4096), "tg128 @ d4096");
    }

    #[test]
    fn mean_and_sample_std() {
        let (m, s) = mean_std(&[1.0, 2.0, 3.0]);
        assert_eq!(m, 2.0);
        assert!((s - 1.0).abs() < 1e-12);
    }
}
