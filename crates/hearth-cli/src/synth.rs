//! `hearth synth`: random-weight models with the shapes of real ones (and a real vocabulary from
//! llama.cpp's tokenizer test files), for benchmarks and tests of sizes no fixture has.
//!
//! The model is first written as F16 (streamed, tensor by tensor, so any size fits in memory),
//! then quantized to the requested file type by `hearth quantize`'s code, which picks the
//! per-tensor types of llama.cpp's mixes.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use hearth_gguf::{GgmlType, GgufWriter, MappedGguf, Metadata, Value};
use hearth_quantize::{quantize_file, FileType, QuantizeOptions, TypeOptions};

/// Real model shapes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Preset {
    /// Llama 3.2 1B: 16 layers, 2048 wide, GQA 32/8, 128k-token vocabulary, tied output.
    #[value(name = "llama-3.2-1b")]
    Llama32_1b,
    /// Qwen 2.5 0.5B: 24 layers, 896 wide, GQA 14/2, QKV biases, tied output.
    #[value(name = "qwen2.5-0.5b")]
    Qwen25_05b,
    /// Llama 3.1 8B: 32 layers, 4096 wide, GQA 32/8, separate output matrix.
    #[value(name = "llama-3.1-8b")]
    Llama31_8b,
}

/// The hyperparameters of a preset.
#[derive(Clone, Debug)]
struct Shape {
    arch: &'static str,
    name: &'static str,
    n_layer: usize,
    n_embd: usize,
    n_ff: usize,
    n_head: usize,
    n_head_kv: usize,
    head_dim: usize,
    rope_base: f32,
    n_ctx: u32,
    rms_eps: f32,
    tied: bool,
    qkv_bias: bool,
    /// llama.cpp's tokenizer test vocabulary (`models/ggml-vocab-*.gguf` of the sdist).
    vocab: &'static str,
}

fn shape(p: Preset) -> Shape {
    match p {
        Preset::Llama32_1b => Shape {
            arch: "llama",
            name: "llama-3.2-1b",
            n_layer: 16,
            n_embd: 2048,
            n_ff: 8192,
            n_head: 32,
            n_head_kv: 8,
            head_dim: 64,
            rope_base: 500_000.0,
            n_ctx: 131_072,
            rms_eps: 1e-5,
            tied: true,
            qkv_bias: false,
            vocab: "ggml-vocab-llama-bpe.gguf",
        },
        Preset::Qwen25_05b => Shape {
            arch: "qwen2",
            name: "qwen2.5-0.5b",
            n_layer: 24,
            n_embd: 896,
            n_ff: 4864,
            n_head: 14,
            n_head_kv: 2,
            head_dim: 64,
            rope_base: 1_000_000.0,
            n_ctx: 32_768,
            rms_eps: 1e-6,
            tied: true,
            qkv_bias: true,
            vocab: "ggml-vocab-qwen2.gguf",
        },
        Preset::Llama31_8b => Shape {
            arch: "llama",
            name: "llama-3.1-8b",
            n_layer: 32,
            n_embd: 4096,
            n_ff: 14336,
            n_head: 32,
            n_head_kv: 8,
            head_dim: 128,
            rope_base: 500_000.0,
            n_ctx: 131_072,
            rms_eps: 1e-5,
            tied: false,
            qkv_bias: false,
            vocab: "ggml-vocab-llama-bpe.gguf",
        },
    }
}

#[derive(Args)]
pub struct SynthArgs {
    /// The architecture (must match the preset's).
    #[arg(long, default_value = "llama")]
    arch: String,
    /// The shape to copy.
    #[arg(long, value_enum)]
    preset: Preset,
    /// File type: F16, or a llama.cpp mix/type name (Q4_K_M, Q4_0, Q8_0, IQ4_XS, ...).
    #[arg(long = "type", default_value = "Q4_K_M")]
    ty: String,
    /// Output file.
    #[arg(short, long)]
    output: PathBuf,
    /// Seed of the random weights.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Fewer layers than the preset (small test models of the same width).
    #[arg(long)]
    layers: Option<usize>,
    /// Threads for quantizing (default: all cores).
    #[arg(short = 't', long)]
    threads: Option<usize>,
}

pub fn run(args: SynthArgs) -> Result<()> {
    let mut sh = shape(args.preset);
    if args.arch != sh.arch {
        bail!(
            "preset {} is a {} model, not {}",
            sh.name,
            sh.arch,
            args.arch
        );
    }
    if let Some(n) = args.layers {
        if n == 0 || n > sh.n_layer {
            bail!("--layers must be in 1..={}", sh.n_layer);
        }
        sh.n_layer = n;
    }
    let ftype = if args.ty.eq_ignore_ascii_case("f16") {
        None
    } else {
        Some(
            FileType::parse(&args.ty)
                .with_context(|| format!("unknown file type {:?}", args.ty))?,
        )
    };
    let vocab_path = hearth_store::llama_cpp_models_dir()?.join(sh.vocab);
    let vocab = MappedGguf::open(&vocab_path)
        .with_context(|| format!("reading the vocabulary {}", vocab_path.display()))?;

    let f16_path = match ftype {
        None => temp_path(&args.output, "part"),
        Some(_) => temp_path(&args.output, "f16.part"),
    };
    let t0 = std::time::Instant::now();
    write_f16(&sh, &vocab, args.seed, &f16_path)
        .with_context(|| format!("writing {}", f16_path.display()))?;
    eprintln!(
        "synth: {} ({} layers) as F16 in {:.1?}",
        sh.name,
        sh.n_layer,
        t0.elapsed()
    );
    let Some(ftype) = ftype else {
        std::fs::rename(&f16_path, &args.output)?;
        return Ok(());
    };
    let out_tmp = temp_path(&args.output, "part");
    let mut opts = QuantizeOptions::new(TypeOptions::new(ftype));
    opts.threads = args
        .threads
        .unwrap_or_else(crate::threads::default_threads)
        .max(1);
    let t1 = std::time::Instant::now();
    let result = quantize_file(&f16_path, &out_tmp, &opts, &|_| {});
    let _ = std::fs::remove_file(&f16_path);
    result.with_context(|| format!("quantizing to {}", args.ty))?;
    std::fs::rename(&out_tmp, &args.output)?;
    eprintln!(
        "synth: quantized to {} in {:.1?}: {}",
        ftype.name(),
        t1.elapsed(),
        args.output.display()
    );
    Ok(())
}

fn temp_path(out: &Path, suffix: &str) -> PathBuf {
    let mut s = out.as_os_str().to_owned();
    s.push(format!(".{suffix}"));
    PathBuf::from(s)
}

/// What each tensor is filled with.
#[derive(Clone, Copy)]
enum Fill {
    /// Gaussian values of this standard deviation, as f16.
    Normal(f32),
    /// Ones plus small noise, as f32 (norm weights).
    Ones,
    /// Small values, as f32 (biases).
    Small,
}

struct Tensor {
    name: String,
    shape: Vec<u64>,
    fill: Fill,
}

fn tensors(sh: &Shape, n_vocab: usize) -> Vec<Tensor> {
    let (e, f) = (sh.n_embd as u64, sh.n_ff as u64);
    let q = (sh.n_head * sh.head_dim) as u64;
    let kv = (sh.n_head_kv * sh.head_dim) as u64;
    // Weights of std 0.02 (GPT-2's initialization; trained models' weights are of that
    // order): activations stay of order 1 and the logits give a spread distribution, so the
    // numbers in every kernel are like a real model's (no overflow, no denormals).
    let w = |_fan_in: u64| Fill::Normal(0.02);
    let t = |name: String, shape: Vec<u64>, fill| Tensor { name, shape, fill };
    let mut out = vec![t(
        "token_embd.weight".into(),
        vec![e, n_vocab as u64],
        Fill::Normal(0.02),
    )];
    for il in 0..sh.n_layer {
        let b = |s: &str| format!("blk.{il}.{s}");
        out.push(t(b("attn_norm.weight"), vec![e], Fill::Ones));
        out.push(t(b("attn_q.weight"), vec![e, q], w(e)));
        out.push(t(b("attn_k.weight"), vec![e, kv], w(e)));
        out.push(t(b("attn_v.weight"), vec![e, kv], w(e)));
        if sh.qkv_bias {
            out.push(t(b("attn_q.bias"), vec![q], Fill::Small));
            out.push(t(b("attn_k.bias"), vec![kv], Fill::Small));
            out.push(t(b("attn_v.bias"), vec![kv], Fill::Small));
        }
        out.push(t(b("attn_output.weight"), vec![q, e], w(q)));
        out.push(t(b("ffn_norm.weight"), vec![e], Fill::Ones));
        out.push(t(b("ffn_gate.weight"), vec![e, f], w(e)));
        out.push(t(b("ffn_up.weight"), vec![e, f], w(e)));
        out.push(t(b("ffn_down.weight"), vec![f, e], w(f)));
    }
    out.push(t("output_norm.weight".into(), vec![e], Fill::Ones));
    if !sh.tied {
        out.push(t("output.weight".into(), vec![e, n_vocab as u64], w(e)));
    }
    out
}

fn write_f16(sh: &Shape, vocab: &MappedGguf, seed: u64, path: &Path) -> Result<()> {
    let vmd = &vocab.file().metadata;
    let n_vocab = vmd.get_str_array("tokenizer.ggml.tokens")?.len();
    let mut md = Metadata::new();
    let a = sh.arch;
    md.set("general.architecture", Value::String(a.into()));
    md.set(
        "general.name",
        Value::String(format!("synthetic {} (random weights)", sh.name)),
    );
    md.set("general.file_type", Value::U32(1));
    let size = match sh.name {
        "llama-3.2-1b" => "1B",
        "qwen2.5-0.5b" => "0.5B",
        _ => "8B",
    };
    md.set("general.size_label", Value::String(size.into()));
    let u32v = |x: usize| Value::U32(x as u32);
    md.set(format!("{a}.block_count"), u32v(sh.n_layer));
    md.set(format!("{a}.context_length"), Value::U32(sh.n_ctx));
    md.set(format!("{a}.embedding_length"), u32v(sh.n_embd));
    md.set(format!("{a}.feed_forward_length"), u32v(sh.n_ff));
    md.set(format!("{a}.attention.head_count"), u32v(sh.n_head));
    md.set(format!("{a}.attention.head_count_kv"), u32v(sh.n_head_kv));
    md.set(
        format!("{a}.attention.layer_norm_rms_epsilon"),
        Value::F32(sh.rms_eps),
    );
    md.set(format!("{a}.rope.freq_base"), Value::F32(sh.rope_base));
    md.set(format!("{a}.rope.dimension_count"), u32v(sh.head_dim));
    md.set(format!("{a}.vocab_size"), u32v(n_vocab));
    for (k, v) in vmd.iter() {
        if k.starts_with("tokenizer.") {
            md.set(k, v.clone());
        }
    }
    let list = tensors(sh, n_vocab);
    let mut w = GgufWriter::with_metadata(md);
    for t in &list {
        let ty = match t.fill {
            Fill::Normal(_) => GgmlType::F16,
            Fill::Ones | Fill::Small => GgmlType::F32,
        };
        w.add_tensor_deferred(&t.name, ty, &t.shape)?;
    }
    let file = std::fs::File::create(path)?;
    let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
    w.write_streaming(&mut out, |i, dst| {
        let t = &list[i];
        let n: u64 = t.shape.iter().product();
        let mut rng = Rng::new(seed, &t.name);
        let mut buf = Vec::with_capacity(1 << 16);
        let mut left = n;
        while left > 0 {
            let k = left.min(1 << 14) as usize;
            buf.clear();
            for _ in 0..k {
                match t.fill {
                    Fill::Normal(std) => {
                        let v = half::f16::from_f32(rng.normal() * std);
                        buf.extend_from_slice(&v.to_bits().to_le_bytes());
                    }
                    Fill::Ones => buf.extend_from_slice(&(1.0 + 0.1 * rng.normal()).to_le_bytes()),
                    Fill::Small => buf.extend_from_slice(&(0.02 * rng.normal()).to_le_bytes()),
                }
            }
            dst.write_all(&buf)?;
            left -= k as u64;
        }
        Ok(())
    })?;
    out.flush()?;
    Ok(())
}

/// xoshiro128+-style generator seeded from the seed and the tensor name (so tensors do not
/// depend on each other's order), with Gaussian values by Box-Muller.
struct Rng {
    s: [u64; 2],
    spare: Option<f32>,
}

impl Rng {
    fn new(seed: u64, name: &str) -> Rng {
        let mut h = seed ^ 0x9e37_79b9_7f4a_7c15;
        for b in name.bytes() {
            h = (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
        }
        let sm = |x: &mut u64| {
            *x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = *x;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        };
        Rng {
            s: [sm(&mut h), sm(&mut h) | 1],
            spare: None,
        }
    }

    fn next(&mut self) -> u64 {
        let [mut s0, mut s1] = self.s;
        let r = s0.wrapping_add(s1);
        s1 ^= s0;
        s0 = s0.rotate_left(24) ^ s1 ^ (s1 << 16);
        s1 = s1.rotate_left(37);
        self.s = [s0, s1];
        r
    }

    fn uniform(&mut self) -> f32 {
        // (0, 1]
        ((self.next() >> 40) as f32 + 1.0) / (1u64 << 24) as f32
    }

    fn normal(&mut self) -> f32 {
        if let Some(z) = self.spare.take() {
            return z;
        }
        let (u, v) = (self.uniform(), self.uniform());
        let r = (-2.0 * u.ln()).sqrt();
        let th = std::f32::consts::TAU * v;
        self.spare = Some(r * th.sin());
        r * th.cos()
    }
}
