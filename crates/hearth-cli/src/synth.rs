//! `hearth synth`: random-weight models with the shapes of real ones (and a real vocabulary from
//! llama.cpp's tokenizer test files), for benchmarks and tests of sizes no fixture has.
//!
//! Tensors are generated and written one by one (any size fits in memory): the values are
//! rounded to f16, as a converted F16 model holds them, then quantized to the type
//! `hearth quantize`'s plan gives each tensor for the requested file type (llama.cpp's
//! mixes). The result is the file `synth --type F16` followed by `hearth quantize` would
//! give, without the F16 intermediate (52 GB for a 26B model).

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use hearth_gguf::{GgmlType, GgufWriter, MappedGguf, Metadata, TensorInfo, Value};
use hearth_kernels::pool::ThreadPool;
use hearth_quantize::{
    plan_types, sort_like_llama_cpp, FileType, ModelInfo, TypeOptions, QUANTIZATION_VERSION,
};

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
    /// Gemma 4 26B-A4B: 30 layers, 2816 wide, 128 experts of 704 (8 used) beside a dense
    /// 2112 feed-forward; sliding-window layers 16x256 heads (8 KV), every 6th layer global
    /// 16x512 heads (2 KV, K as V, proportional RoPE); 262k vocabulary.
    #[value(name = "gemma4-26b-a4b")]
    Gemma4_26bA4b,
    /// The dense twin of gemma4-26b-a4b: the same layers with one dense feed-forward of the
    /// width of the 8 active experts plus the shared one (2112 + 8 x 704), i.e. the same
    /// active parameters per token.
    #[value(name = "gemma4-26b-a4b-dense")]
    Gemma4_26bA4bDense,
    /// A tiny gemma4 with expert layers (for tests against llama.cpp): 2 layers, 256 wide,
    /// 8 experts of 128 (2 used), llama.cpp's gemma-4 test vocabulary.
    #[value(name = "gemma4-tiny-moe")]
    Gemma4TinyMoe,
    /// A tiny gemma4 with the E2B/E4B features (for tests against llama.cpp): 4 layers, 256
    /// wide, per-layer token embeddings of 16, the last 2 layers attending over the caches of
    /// the first 2.
    #[value(name = "gemma4-tiny-ple")]
    Gemma4TinyPle,
}

/// Experts of every layer.
#[derive(Clone, Copy, Debug)]
struct MoeShape {
    n_expert: usize,
    n_used: usize,
    n_ff_exp: usize,
}

/// What gemma4's layers add to the common shape (which describes its sliding-window layers).
#[derive(Clone, Copy, Debug)]
struct Gemma4Shape {
    /// Every `period`-th layer attends globally.
    period: usize,
    window: usize,
    head_dim_full: usize,
    n_head_kv_full: usize,
    rope_base_swa: f32,
    /// Global layers have no `attn_v` (V = K).
    k_eq_v: bool,
    /// Fraction of the global layers' head rotated by RoPE (`rope_freqs`).
    partial_rotary: f32,
    /// The last layers without a KV cache of their own (`attention.shared_kv_layers`).
    shared_kv: usize,
    /// Width of the per-layer token embeddings (0: none).
    n_embd_per_layer: usize,
}

/// The hyperparameters of a preset.
#[derive(Clone, Debug)]
struct Shape {
    arch: &'static str,
    name: &'static str,
    size_label: &'static str,
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
    moe: Option<MoeShape>,
    gemma4: Option<Gemma4Shape>,
    /// Standard deviations of the weight matrices and of the token embedding.
    w_std: f32,
    embd_std: f32,
}

fn shape(p: Preset) -> Shape {
    let llama = Shape {
        arch: "llama",
        name: "llama-3.2-1b",
        size_label: "1B",
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
        moe: None,
        gemma4: None,
        w_std: 0.02,
        embd_std: 0.02,
    };
    let gemma4 = Shape {
        arch: "gemma4",
        name: "gemma4-26b-a4b",
        size_label: "26B-A4B",
        n_layer: 30,
        n_embd: 2816,
        n_ff: 2112,
        n_head: 16,
        n_head_kv: 8,
        head_dim: 256,
        rope_base: 1_000_000.0,
        n_ctx: 262_144,
        rms_eps: 1e-6,
        tied: true,
        qkv_bias: false,
        vocab: "ggml-vocab-gemma-4.gguf",
        moe: Some(MoeShape {
            n_expert: 128,
            n_used: 8,
            n_ff_exp: 704,
        }),
        gemma4: Some(Gemma4Shape {
            period: 6,
            window: 1024,
            head_dim_full: 512,
            n_head_kv_full: 2,
            rope_base_swa: 10_000.0,
            k_eq_v: true,
            partial_rotary: 0.25,
            shared_kv: 0,
            n_embd_per_layer: 0,
        }),
        w_std: 0.02,
        embd_std: 0.02,
    };
    let tiny_moe = Shape {
        name: "gemma4-tiny-moe",
        size_label: "tiny",
        n_layer: 2,
        n_embd: 256,
        n_ff: 512,
        n_head: 4,
        n_head_kv: 2,
        head_dim: 64,
        n_ctx: 512,
        moe: Some(MoeShape {
            n_expert: 8,
            n_used: 2,
            n_ff_exp: 128,
        }),
        gemma4: Some(Gemma4Shape {
            period: 2,
            window: 64,
            head_dim_full: 128,
            n_head_kv_full: 1,
            ..gemma4.gemma4.unwrap_or_else(|| unreachable!())
        }),
        // As shared/reference/synthetic's models: peaked enough distributions over the
        // 262k-token vocabulary that greedy steps are decided by clear margins.
        w_std: 0.05,
        embd_std: 0.06,
        ..gemma4
    };
    match p {
        Preset::Llama32_1b => llama,
        Preset::Qwen25_05b => Shape {
            arch: "qwen2",
            name: "qwen2.5-0.5b",
            size_label: "0.5B",
            n_layer: 24,
            n_embd: 896,
            n_ff: 4864,
            n_head: 14,
            n_head_kv: 2,
            rope_base: 1_000_000.0,
            n_ctx: 32_768,
            rms_eps: 1e-6,
            qkv_bias: true,
            vocab: "ggml-vocab-qwen2.gguf",
            ..llama
        },
        Preset::Llama31_8b => Shape {
            name: "llama-3.1-8b",
            size_label: "8B",
            n_layer: 32,
            n_embd: 4096,
            n_ff: 14336,
            head_dim: 128,
            tied: false,
            ..llama
        },
        Preset::Gemma4_26bA4b => gemma4,
        Preset::Gemma4_26bA4bDense => Shape {
            name: "gemma4-26b-a4b-dense",
            size_label: "4B",
            n_ff: 2112 + 8 * 704,
            moe: None,
            ..gemma4
        },
        Preset::Gemma4TinyMoe => tiny_moe,
        Preset::Gemma4TinyPle => Shape {
            name: "gemma4-tiny-ple",
            n_layer: 4,
            moe: None,
            gemma4: tiny_moe.gemma4.map(|g| Gemma4Shape {
                shared_kv: 2,
                n_embd_per_layer: 16,
                ..g
            }),
            ..tiny_moe
        },
    }
}

impl Shape {
    /// Whether layer `il` attends through the sliding window (gemma4).
    fn is_swa(&self, il: usize) -> bool {
        self.gemma4.is_some_and(|g| il % g.period != g.period - 1)
    }

    /// Whether layer `il` attends over an earlier layer's cache (gemma4's shared-KV layers).
    fn is_kv_shared(&self, il: usize) -> bool {
        self.gemma4
            .is_some_and(|g| il + g.shared_kv >= self.n_layer)
    }

    /// (head size, KV heads) of layer `il`.
    fn attn(&self, il: usize) -> (usize, usize) {
        match self.gemma4 {
            Some(g) if !self.is_swa(il) => (g.head_dim_full, g.n_head_kv_full),
            _ => (self.head_dim, self.n_head_kv),
        }
    }
}

#[derive(Args)]
pub struct SynthArgs {
    /// The architecture (must match the preset's).
    #[arg(long)]
    arch: Option<String>,
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
    /// Threads for generating and quantizing (default: all cores).
    #[arg(short = 't', long)]
    threads: Option<usize>,
}

pub fn run(args: SynthArgs) -> Result<()> {
    let mut sh = shape(args.preset);
    if let Some(arch) = &args.arch {
        if arch != sh.arch {
            bail!("preset {} is a {} model, not {arch}", sh.name, sh.arch);
        }
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
    let pool = ThreadPool::new(
        args.threads
            .unwrap_or_else(crate::threads::default_threads)
            .max(1),
    );
    let tmp = temp_path(&args.output, "part");
    let t0 = std::time::Instant::now();
    let result = write_model(&sh, &vocab, args.seed, ftype, &pool, &tmp);
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(e.context(format!("writing {}", tmp.display())));
    }
    std::fs::rename(&tmp, &args.output)?;
    eprintln!(
        "synth: {} ({} layers) as {} in {:.1?}: {}",
        sh.name,
        sh.n_layer,
        ftype.map_or("F16", |f| f.name()),
        t0.elapsed(),
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
    /// Gaussian values of this standard deviation, as f32 (expert routers).
    Normal32(f32),
    /// Ones plus small noise, as f32 (norm weights).
    Ones,
    /// Small values, as f32 (biases).
    Small,
    /// Proportional RoPE factors: 1 for the first `n` of the values, 1e30 (not rotated) after.
    RopeFreqs(usize),
}

impl Fill {
    /// The type the values are stored in before quantization.
    fn src_type(self) -> GgmlType {
        match self {
            Fill::Normal(_) => GgmlType::F16,
            _ => GgmlType::F32,
        }
    }
}

struct Tensor {
    name: String,
    shape: Vec<u64>,
    fill: Fill,
}

fn tensors(sh: &Shape, n_vocab: usize) -> Vec<Tensor> {
    let (e, f) = (sh.n_embd as u64, sh.n_ff as u64);
    // Weights of std 0.02 (GPT-2's initialization; trained models' weights are of that
    // order): activations stay of order 1 and the logits give a spread distribution, so the
    // numbers in every kernel are like a real model's (no overflow, no denormals).
    let w = Fill::Normal(sh.w_std);
    let t = |name: String, shape: Vec<u64>, fill| Tensor { name, shape, fill };
    let mut out = vec![t(
        "token_embd.weight".into(),
        vec![e, n_vocab as u64],
        Fill::Normal(sh.embd_std),
    )];
    if let Some(g) = sh.gemma4 {
        let half = g.head_dim_full / 2;
        let rotated = (half as f32 * g.partial_rotary) as usize;
        out.push(t(
            "rope_freqs.weight".into(),
            vec![half as u64],
            Fill::RopeFreqs(rotated),
        ));
    }
    for il in 0..sh.n_layer {
        let b = |s: &str| format!("blk.{il}.{s}");
        let (hd, n_kv) = sh.attn(il);
        let q = (sh.n_head * hd) as u64;
        let kv = (n_kv * hd) as u64;
        out.push(t(b("attn_norm.weight"), vec![e], Fill::Ones));
        out.push(t(b("attn_q.weight"), vec![e, q], w));
        let shared = sh.is_kv_shared(il);
        if !shared {
            out.push(t(b("attn_k.weight"), vec![e, kv], w));
        }
        let k_eq_v = sh.gemma4.is_some_and(|g| g.k_eq_v && !sh.is_swa(il));
        if !k_eq_v && !shared {
            out.push(t(b("attn_v.weight"), vec![e, kv], w));
        }
        if sh.qkv_bias {
            out.push(t(b("attn_q.bias"), vec![q], Fill::Small));
            out.push(t(b("attn_k.bias"), vec![kv], Fill::Small));
            out.push(t(b("attn_v.bias"), vec![kv], Fill::Small));
        }
        out.push(t(b("attn_output.weight"), vec![q, e], w));
        out.push(t(b("ffn_norm.weight"), vec![e], Fill::Ones));
        out.push(t(b("ffn_gate.weight"), vec![e, f], w));
        out.push(t(b("ffn_up.weight"), vec![e, f], w));
        out.push(t(b("ffn_down.weight"), vec![f, e], w));
        if sh.gemma4.is_some() {
            out.push(t(b("attn_q_norm.weight"), vec![hd as u64], Fill::Ones));
            if !shared {
                out.push(t(b("attn_k_norm.weight"), vec![hd as u64], Fill::Ones));
            }
            out.push(t(b("post_attention_norm.weight"), vec![e], Fill::Ones));
            out.push(t(b("post_ffw_norm.weight"), vec![e], Fill::Ones));
            out.push(t(b("layer_output_scale.weight"), vec![1], Fill::Ones));
        }
        if let Some(pl) = sh
            .gemma4
            .map(|g| g.n_embd_per_layer as u64)
            .filter(|&n| n > 0)
        {
            out.push(t(b("inp_gate.weight"), vec![e, pl], w));
            out.push(t(b("proj.weight"), vec![pl, e], w));
            out.push(t(b("post_norm.weight"), vec![e], Fill::Ones));
        }
        if let Some(m) = sh.moe {
            let (n, fe) = (m.n_expert as u64, m.n_ff_exp as u64);
            out.push(t(
                b("ffn_gate_inp.weight"),
                vec![e, n],
                Fill::Normal32(sh.w_std),
            ));
            out.push(t(b("ffn_gate_exps.weight"), vec![e, fe, n], w));
            out.push(t(b("ffn_up_exps.weight"), vec![e, fe, n], w));
            out.push(t(b("ffn_down_exps.weight"), vec![fe, e, n], w));
            if sh.gemma4.is_some() {
                out.push(t(b("ffn_gate_inp.scale"), vec![e], Fill::Ones));
                out.push(t(b("pre_ffw_norm_2.weight"), vec![e], Fill::Ones));
                out.push(t(b("post_ffw_norm_1.weight"), vec![e], Fill::Ones));
                out.push(t(b("post_ffw_norm_2.weight"), vec![e], Fill::Ones));
            }
        }
    }
    if let Some(pl) = sh
        .gemma4
        .map(|g| g.n_embd_per_layer as u64)
        .filter(|&n| n > 0)
    {
        let all = pl * sh.n_layer as u64;
        out.push(t(
            "per_layer_token_embd.weight".into(),
            vec![all, n_vocab as u64],
            Fill::Normal(sh.embd_std),
        ));
        out.push(t("per_layer_model_proj.weight".into(), vec![e, all], w));
        out.push(t("per_layer_proj_norm.weight".into(), vec![pl], Fill::Ones));
    }
    out.push(t("output_norm.weight".into(), vec![e], Fill::Ones));
    if !sh.tied {
        out.push(t("output.weight".into(), vec![e, n_vocab as u64], w));
    }
    out
}

fn metadata(sh: &Shape, vocab: &Metadata, n_vocab: usize, quantized: bool) -> Metadata {
    let mut md = Metadata::new();
    let a = sh.arch;
    md.set("general.architecture", Value::String(a.into()));
    md.set(
        "general.name",
        Value::String(format!("synthetic {} (random weights)", sh.name)),
    );
    if !quantized {
        md.set("general.file_type", Value::U32(1));
    }
    md.set("general.size_label", Value::String(sh.size_label.into()));
    let u32v = |x: usize| Value::U32(x as u32);
    md.set(format!("{a}.block_count"), u32v(sh.n_layer));
    md.set(format!("{a}.context_length"), Value::U32(sh.n_ctx));
    md.set(format!("{a}.embedding_length"), u32v(sh.n_embd));
    md.set(format!("{a}.feed_forward_length"), u32v(sh.n_ff));
    md.set(format!("{a}.attention.head_count"), u32v(sh.n_head));
    match sh.gemma4 {
        None => md.set(format!("{a}.attention.head_count_kv"), u32v(sh.n_head_kv)),
        Some(_) => md.set(
            format!("{a}.attention.head_count_kv"),
            Value::Array(hearth_gguf::Array::U32(
                (0..sh.n_layer).map(|il| sh.attn(il).1 as u32).collect(),
            )),
        ),
    }
    md.set(
        format!("{a}.attention.layer_norm_rms_epsilon"),
        Value::F32(sh.rms_eps),
    );
    md.set(format!("{a}.rope.freq_base"), Value::F32(sh.rope_base));
    match sh.gemma4 {
        None => md.set(format!("{a}.rope.dimension_count"), u32v(sh.head_dim)),
        Some(g) => {
            let hd = g.head_dim_full;
            md.set(format!("{a}.attention.key_length"), u32v(hd));
            md.set(format!("{a}.attention.value_length"), u32v(hd));
            md.set(format!("{a}.attention.key_length_swa"), u32v(sh.head_dim));
            md.set(format!("{a}.attention.value_length_swa"), u32v(sh.head_dim));
            md.set(format!("{a}.rope.dimension_count"), u32v(hd));
            md.set(format!("{a}.rope.dimension_count_swa"), u32v(sh.head_dim));
            md.set(
                format!("{a}.rope.freq_base_swa"),
                Value::F32(g.rope_base_swa),
            );
            md.set(format!("{a}.final_logit_softcapping"), Value::F32(30.0));
            md.set(format!("{a}.attention.sliding_window"), u32v(g.window));
            md.set(format!("{a}.attention.shared_kv_layers"), u32v(g.shared_kv));
            md.set(
                format!("{a}.embedding_length_per_layer_input"),
                u32v(g.n_embd_per_layer),
            );
            md.set(
                format!("{a}.attention.sliding_window_pattern"),
                Value::Array(hearth_gguf::Array::Bool(
                    (0..sh.n_layer).map(|il| sh.is_swa(il)).collect(),
                )),
            );
        }
    }
    if let Some(m) = sh.moe {
        md.set(format!("{a}.expert_count"), u32v(m.n_expert));
        md.set(format!("{a}.expert_used_count"), u32v(m.n_used));
        md.set(format!("{a}.expert_feed_forward_length"), u32v(m.n_ff_exp));
    }
    if sh.gemma4.is_none() {
        md.set(format!("{a}.vocab_size"), u32v(n_vocab));
    }
    for (k, v) in vocab.iter() {
        if k.starts_with("tokenizer.") {
            md.set(k, v.clone());
        }
    }
    md
}

fn write_model(
    sh: &Shape,
    vocab: &MappedGguf,
    seed: u64,
    ftype: Option<FileType>,
    pool: &ThreadPool,
    path: &Path,
) -> Result<()> {
    let vmd = &vocab.file().metadata;
    let n_vocab = vmd.get_str_array("tokenizer.ggml.tokens")?.len();
    let mut md = metadata(sh, vmd, n_vocab, ftype.is_some());
    let list = tensors(sh, n_vocab);
    // The tensor order and types `hearth quantize` would give the F16 file.
    let mut infos: Vec<TensorInfo> = list
        .iter()
        .map(|t| TensorInfo {
            name: t.name.clone(),
            shape: t.shape.clone(),
            ty: t.fill.src_type(),
            offset: 0,
            size: hearth_gguf::tensor_size(t.fill.src_type(), &t.shape).unwrap_or(0),
        })
        .collect();
    let types: Vec<(String, GgmlType)> = match ftype {
        None => infos.iter().map(|t| (t.name.clone(), t.ty)).collect(),
        Some(ft) => {
            sort_like_llama_cpp(&mut infos);
            let info = ModelInfo::from_metadata(&md)?;
            md.set(
                "general.quantization_version",
                Value::U32(QUANTIZATION_VERSION),
            );
            md.set("general.file_type", Value::U32(ft.id()));
            plan_types(&infos, &info, &TypeOptions::new(ft))?
                .into_iter()
                .map(|p| (p.name, p.dst_type))
                .collect()
        }
    };
    let by_name: std::collections::HashMap<&str, &Tensor> =
        list.iter().map(|t| (t.name.as_str(), t)).collect();
    let mut w = GgufWriter::with_metadata(md);
    for (name, ty) in &types {
        w.add_tensor_deferred(name, *ty, &by_name[name.as_str()].shape)?;
    }
    let file = std::fs::File::create(path)?;
    let mut out = std::io::BufWriter::with_capacity(1 << 22, file);
    let table = normal_table();
    let mut buf: Vec<u8> = Vec::new();
    w.write_streaming(&mut out, |i, dst| {
        let (name, ty) = &types[i];
        let t = by_name[name.as_str()];
        let ne0 = t.shape[0] as usize;
        let n_rows = (t.shape.iter().product::<u64>() / t.shape[0]) as usize;
        let row_bytes = ty.row_bytes(ne0 as u64).unwrap_or(0) as usize;
        // Rows in parts of about 256k values, each generated from its own stream (so the
        // values do not depend on the thread count), written in order.
        let part_rows = (GEN_PART / ne0).max(1);
        let parts_per_batch = 4 * pool.n_threads();
        let mut row = 0;
        while row < n_rows {
            let rows = (part_rows * parts_per_batch).min(n_rows - row);
            buf.clear();
            buf.resize(rows * row_bytes, 0);
            let first_part = row / part_rows;
            let err = std::sync::Mutex::new(None);
            pool.par_chunks_mut(&mut buf, part_rows * row_bytes, |p, chunk| {
                let nr = chunk.len() / row_bytes;
                let mut rng = Rng::new(seed ^ ((first_part + p) as u64).wrapping_mul(0x9e37), name);
                let mut vals = vec![0.0f32; nr * ne0];
                fill_values(t.fill, &mut rng, table, row + p * part_rows, ne0, &mut vals);
                if let Err(e) = encode(*ty, &vals, chunk) {
                    *err.lock().unwrap_or_else(|e| e.into_inner()) = Some(e);
                }
            });
            if let Some(e) = err.into_inner().unwrap_or_else(|e| e.into_inner()) {
                return Err(std::io::Error::other(e.to_string()).into());
            }
            dst.write_all(&buf)?;
            row += rows;
        }
        Ok(())
    })?;
    out.flush()?;
    Ok(())
}

/// Values generated per random stream.
const GEN_PART: usize = 1 << 18;

/// `rows` rows of `ne0` values starting at row `row0`.
fn fill_values(fill: Fill, rng: &mut Rng, table: &[f32], row0: usize, ne0: usize, out: &mut [f32]) {
    match fill {
        Fill::Normal(std) => {
            for v in out.iter_mut() {
                *v = half::f16::from_f32(rng.table_normal(table) * std).to_f32();
            }
        }
        Fill::Normal32(std) => out
            .iter_mut()
            .for_each(|v| *v = rng.table_normal(table) * std),
        Fill::Ones => out
            .iter_mut()
            .for_each(|v| *v = 1.0 + 0.1 * rng.table_normal(table)),
        Fill::Small => out
            .iter_mut()
            .for_each(|v| *v = 0.02 * rng.table_normal(table)),
        Fill::RopeFreqs(n) => {
            for (i, v) in out.iter_mut().enumerate() {
                let col = (row0 * ne0 + i) % ne0;
                *v = if col < n { 1.0 } else { 1e30 };
            }
        }
    }
}

/// `vals` stored as `ty` into `dst`.
fn encode(ty: GgmlType, vals: &[f32], dst: &mut [u8]) -> Result<()> {
    match ty {
        GgmlType::F32 => {
            for (d, v) in dst.chunks_exact_mut(4).zip(vals) {
                d.copy_from_slice(&v.to_le_bytes());
            }
        }
        GgmlType::F16 => {
            for (d, v) in dst.chunks_exact_mut(2).zip(vals) {
                d.copy_from_slice(&half::f16::from_f32(*v).to_bits().to_le_bytes());
            }
        }
        _ => hearth_kernels::quant::quantize(ty, vals, dst)?,
    }
    Ok(())
}

/// 4096 Gaussian quantiles (Box-Muller of a fixed stream): drawing from the table is a
/// table lookup, fast enough for tens of billions of values.
fn normal_table() -> &'static [f32] {
    static TABLE: std::sync::OnceLock<Vec<f32>> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| {
        let mut rng = Rng::new(0x5eed, "normal-table");
        (0..4096).map(|_| rng.normal()).collect()
    })
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

    /// A Gaussian value from `table` (4096 entries).
    fn table_normal(&mut self, table: &[f32]) -> f32 {
        table[(self.next() >> 52) as usize]
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
