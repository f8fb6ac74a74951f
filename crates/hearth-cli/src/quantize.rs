//! `hearth quantize`: llama-quantize's file types and mixes, byte-identical
//! output (see crates/hearth-quantize).

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Args;
use hearth_gguf::GgmlType;
use hearth_quantize::imatrix::Imatrix;
use hearth_quantize::{FileType, Progress, QuantizeOptions, TypeOptions};

#[derive(Args)]
pub struct QuantizeArgs {
    /// The input GGUF (F32/F16/BF16; quantized inputs need --allow-requantize).
    input: PathBuf,
    /// The output GGUF.
    output: PathBuf,
    /// The file type: Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q2_K_S, Q3_K_S, Q3_K_M, Q3_K_L,
    /// Q4_K_S, Q4_K_M, Q5_K_S, Q5_K_M, Q6_K, IQ4_NL, IQ4_XS, F16, BF16, F32 (or the numeric id).
    #[arg(value_name = "TYPE")]
    ftype: String,
    /// Importance matrix (llama-imatrix's GGUF or legacy .dat format).
    #[arg(long)]
    imatrix: Option<PathBuf>,
    /// Use the importance matrix only for tensors whose name contains this (repeatable).
    #[arg(long = "include-weights", value_name = "NAME")]
    include_weights: Vec<String>,
    /// Do not use the importance matrix for tensors whose name contains this (repeatable).
    #[arg(
        long = "exclude-weights",
        value_name = "NAME",
        conflicts_with = "include_weights"
    )]
    exclude_weights: Vec<String>,
    /// Quantize tensors matching a regular expression to a type: `attn_v=q8_0` (repeatable).
    #[arg(long = "tensor-type", value_name = "REGEX=TYPE")]
    tensor_type: Vec<String>,
    /// Type of output.weight.
    #[arg(long = "output-tensor-type", value_name = "TYPE")]
    output_tensor_type: Option<String>,
    /// Type of the token embeddings.
    #[arg(long = "token-embedding-type", value_name = "TYPE")]
    token_embedding_type: Option<String>,
    /// No mixes: every quantizable tensor gets the file type's default type.
    #[arg(long)]
    pure: bool,
    /// Leave output.weight as it is.
    #[arg(long = "leave-output-tensor")]
    leave_output_tensor: bool,
    /// Allow quantized input tensors (dequantized first; loses quality).
    #[arg(long = "allow-requantize")]
    allow_requantize: bool,
    /// Worker threads (default: all cores).
    #[arg(short = 't', long)]
    threads: Option<usize>,
    /// Print the type of every tensor and exit without writing.
    #[arg(long = "dry-run")]
    dry_run: bool,
}

fn ggml_type(s: &str) -> Result<GgmlType> {
    GgmlType::from_name(s).with_context(|| format!("unknown ggml type {s:?}"))
}

/// A progress bar on stderr, redrawn at most every 100 ms (only on a terminal).
struct Bar {
    tty: bool,
    last: Mutex<Option<Instant>>,
}

impl Bar {
    fn show(&self, p: Progress) {
        if !self.tty {
            return;
        }
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if p.done < p.total && last.is_some_and(|t| now - t < Duration::from_millis(100)) {
            return;
        }
        *last = Some(now);
        let frac = if p.total == 0 {
            1.0
        } else {
            p.done as f64 / p.total as f64
        };
        let width = 40;
        let filled = ((frac * width as f64) as usize).min(width);
        let mut err = std::io::stderr().lock();
        let _ = write!(
            err,
            "\r[{}{}] {:5.1}% {:8.2}/{:.2} MiB",
            "#".repeat(filled),
            " ".repeat(width - filled),
            frac * 100.0,
            p.done as f64 / 1048576.0,
            p.total as f64 / 1048576.0
        );
        let _ = err.flush();
    }
}

pub fn run(args: QuantizeArgs) -> Result<()> {
    let ftype = FileType::parse(&args.ftype)
        .with_context(|| format!("unknown file type {:?}", args.ftype))?;
    let mut types = TypeOptions::new(ftype);
    types.output_tensor_type = args
        .output_tensor_type
        .as_deref()
        .map(ggml_type)
        .transpose()?;
    types.token_embedding_type = args
        .token_embedding_type
        .as_deref()
        .map(ggml_type)
        .transpose()?;
    types.pure = args.pure;
    types.leave_output_tensor = args.leave_output_tensor;
    for tt in &args.tensor_type {
        types
            .tensor_types
            .push(hearth_quantize::parse_tensor_type(tt)?);
    }
    let threads = args.threads.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    if threads == 0 {
        bail!("--threads must be at least 1");
    }
    let mut opts = QuantizeOptions::new(types);
    opts.allow_requantize = args.allow_requantize;
    opts.threads = threads;

    if let Some(path) = &args.imatrix {
        let im = Imatrix::load(path)
            .with_context(|| format!("reading the importance matrix {}", path.display()))?;
        let n = opts.use_imatrix(
            &path.to_string_lossy(),
            &im,
            &args.include_weights,
            &args.exclude_weights,
        );
        eprintln!(
            "imatrix: {n} entries from {} computed on {} chunks",
            path.display(),
            im.chunk_count
        );
    }

    if args.dry_run {
        let model = hearth_gguf::MappedGguf::open(&args.input)
            .with_context(|| format!("opening {}", args.input.display()))?;
        let mut t = opts.types.clone();
        t.has_imatrix = opts.imatrix.is_some();
        for p in hearth_quantize::plan_file(&model, &t)? {
            println!(
                "{:<40} {:>20} {:>8} -> {}",
                p.name,
                format!("{:?}", p.shape),
                p.src_type.name(),
                p.dst_type.name()
            );
        }
        return Ok(());
    }

    if same_file(&args.input, &args.output) {
        bail!(
            "input and output files are the same: {}",
            args.input.display()
        );
    }
    let tmp = temp_path(&args.output);
    eprintln!(
        "quantizing {} to {} as {} using {} threads",
        args.input.display(),
        args.output.display(),
        ftype,
        threads
    );
    let bar = Bar {
        tty: std::io::stderr().is_terminal(),
        last: Mutex::new(None),
    };
    let t0 = Instant::now();
    let result = hearth_quantize::quantize_file(&args.input, &tmp, &opts, &|p| bar.show(p));
    if bar.tty {
        eprintln!();
    }
    let report = match result {
        Ok(r) => r,
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(e).with_context(|| format!("quantizing {}", args.input.display()));
        }
    };
    std::fs::rename(&tmp, &args.output).with_context(|| {
        let _ = std::fs::remove_file(&tmp);
        format!("renaming {} to {}", tmp.display(), args.output.display())
    })?;
    let elapsed = t0.elapsed();
    for name in &report.missing_imatrix {
        eprintln!("warning: no importance data for {name}");
    }
    if report.n_fallback > 0 {
        eprintln!(
            "warning: {} of {} tensor(s) required fallback quantization",
            report.n_fallback,
            report.tensors.len()
        );
    }
    let n = report.n_elements.max(1) as f64;
    eprintln!(
        "model size = {:8.2} MiB ({:.2} BPW)\nquant size = {:8.2} MiB ({:.2} BPW)\nquantize time = {:.2} ms",
        report.size_in as f64 / 1048576.0,
        report.size_in as f64 * 8.0 / n,
        report.size_out as f64 / 1048576.0,
        report.size_out as f64 * 8.0 / n,
        elapsed.as_secs_f64() * 1000.0
    );
    Ok(())
}

fn temp_path(out: &Path) -> PathBuf {
    let mut name = out.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".tmp-{}", std::process::id()));
    out.with_file_name(name)
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    }
}
