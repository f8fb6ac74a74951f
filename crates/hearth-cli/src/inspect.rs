//! `hearth inspect`: what is in a GGUF file.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use hearth_gguf::{file_type_name, Array, GgmlType, GgufFile, MappedGguf, Value};
use serde_json::{json, Map, Value as Json};

/// Arrays longer than this are summarized in `--json` unless `--full`.
const ARRAY_SUMMARY_LEN: usize = 16;

#[derive(Args)]
pub struct InspectArgs {
    /// The GGUF file (default: the default model, fetched on first use).
    model: Option<PathBuf>,
    /// Print all metadata and the tensor table as JSON.
    #[arg(long)]
    json: bool,
    /// With --json: print long arrays whole instead of summarized.
    #[arg(long)]
    full: bool,
    /// Print rows of this tensor dequantized to f32.
    #[arg(long, value_name = "NAME")]
    tensor: Option<String>,
    /// With --tensor: the rows to print, `A..B` (end exclusive) or `A`.
    #[arg(long, value_name = "A..B", default_value = "0..1")]
    rows: String,
}

pub fn run(args: InspectArgs) -> Result<()> {
    let path = crate::model_path(args.model)?;
    let gguf = MappedGguf::open(&path).with_context(|| format!("reading {}", path.display()))?;
    if let Some(name) = &args.tensor {
        let rows = parse_rows(&args.rows)?;
        let out = tensor_rows_json(&gguf, name, rows)?;
        println!("{}", serde_json::to_string(&out)?);
    } else if args.json {
        let out = file_json(&gguf, args.full);
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        print!("{}", summary(&gguf));
    }
    Ok(())
}

fn parse_rows(s: &str) -> Result<std::ops::Range<u64>> {
    let parse = |x: &str| -> Result<u64> {
        x.trim()
            .parse()
            .with_context(|| format!("bad row number {x:?} in --rows {s:?}"))
    };
    let range = match s.split_once("..") {
        Some((a, b)) => parse(a)?..parse(b)?,
        None => {
            let a = parse(s)?;
            a..a.saturating_add(1)
        }
    };
    if range.start >= range.end {
        bail!("--rows {s:?} is empty");
    }
    Ok(range)
}

/// Per-type tensor counts and bytes, in type-id order.
fn type_stats(file: &GgufFile) -> BTreeMap<GgmlType, (usize, u64)> {
    let mut stats = BTreeMap::new();
    for t in &file.tensors {
        let e = stats.entry(t.ty).or_insert((0usize, 0u64));
        e.0 += 1;
        e.1 += t.size;
    }
    stats
}

fn bits_per_weight(file: &GgufFile) -> f64 {
    file.tensor_bytes() as f64 * 8.0 / file.n_elements().max(1) as f64
}

fn human_count(n: u64) -> String {
    match n {
        n if n >= 1_000_000_000 => format!("{:.2} B", n as f64 / 1e9),
        n if n >= 1_000_000 => format!("{:.2} M", n as f64 / 1e6),
        n if n >= 1_000 => format!("{:.2} K", n as f64 / 1e3),
        n => n.to_string(),
    }
}

pub(crate) fn human_bytes(n: u64) -> String {
    match n {
        n if n >= 1 << 30 => format!("{:.2} GiB", n as f64 / (1u64 << 30) as f64),
        n if n >= 1 << 20 => format!("{:.2} MiB", n as f64 / (1u64 << 20) as f64),
        n if n >= 1 << 10 => format!("{:.2} KiB", n as f64 / 1024.0),
        n => format!("{n} B"),
    }
}

pub(crate) fn summary(gguf: &MappedGguf) -> String {
    use std::fmt::Write;
    let f = gguf.file();
    let m = &f.metadata;
    let arch = m
        .get_str_opt("general.architecture")
        .ok()
        .flatten()
        .unwrap_or("?");
    let arch_u32 =
        |key: &str| -> Option<u32> { m.get_u32_opt(&format!("{arch}.{key}")).ok().flatten() };
    let mut s = String::new();
    let mut line = |label: &str, value: String| {
        let _ = writeln!(s, "{:<14}{}", format!("{label}:"), value);
    };
    line(
        "file",
        format!(
            "{} ({}, GGUF v{})",
            gguf.path().display(),
            human_bytes(f.file_len),
            f.version
        ),
    );
    line("architecture", arch.to_string());
    if let Ok(Some(name)) = m.get_str_opt("general.name") {
        line("name", name.to_string());
    }
    line("parameters", human_count(f.n_elements()));
    let pc = hearth_model::param_counts(f);
    if pc.n_expert > 0 {
        line(
            "experts",
            format!("{} ({} used per token)", pc.n_expert, pc.n_expert_used),
        );
        line("active", format!("{} per token", human_count(pc.active)));
    }
    if let Some(c) = arch_u32("context_length") {
        line("context", c.to_string());
    }
    if let Some(e) = arch_u32("embedding_length") {
        line("embedding", e.to_string());
    }
    if let Some(b) = arch_u32("block_count") {
        line("layers", b.to_string());
    }
    if let Some(h) = arch_u32("attention.head_count") {
        let kv = arch_u32("attention.head_count_kv").unwrap_or(h);
        line("heads", format!("{h} (kv {kv})"));
    }
    if let Some(ff) = arch_u32("feed_forward_length") {
        line("feed-forward", ff.to_string());
    }
    if let Ok(tokens) = m.get_array("tokenizer.ggml.tokens") {
        let model = m
            .get_str_opt("tokenizer.ggml.model")
            .ok()
            .flatten()
            .unwrap_or("?");
        line("vocab", format!("{} ({model})", tokens.len()));
    }
    if let Ok(Some(ft)) = m.get_u32_opt("general.file_type") {
        line(
            "file type",
            format!("{} ({ft})", file_type_name(ft).unwrap_or("unknown")),
        );
    }
    line(
        "tensors",
        format!("{} ({})", f.tensors.len(), human_bytes(f.tensor_bytes())),
    );
    line("bits/weight", format!("{:.2}", bits_per_weight(f)));
    let _ = writeln!(
        s,
        "\n{:<8}{:>8}{:>14}{:>9}",
        "type", "tensors", "bytes", "share"
    );
    let total = f.tensor_bytes().max(1) as f64;
    for (ty, (count, bytes)) in type_stats(f) {
        let _ = writeln!(
            s,
            "{:<8}{:>8}{:>14}{:>8.1}%",
            ty.name(),
            count,
            human_bytes(bytes),
            bytes as f64 * 100.0 / total
        );
    }
    s
}

fn file_json(gguf: &MappedGguf, full: bool) -> Json {
    let f = gguf.file();
    let mut metadata = Map::new();
    let mut types = Map::new();
    for (k, v) in f.metadata.iter() {
        metadata.insert(k.to_string(), value_json(v, full));
        types.insert(k.to_string(), Json::String(v.type_description()));
    }
    let stats: Map<String, Json> = type_stats(f)
        .into_iter()
        .map(|(ty, (count, bytes))| {
            (
                ty.name().to_string(),
                json!({"tensors": count, "bytes": bytes}),
            )
        })
        .collect();
    let tensors: Vec<Json> = f
        .tensors
        .iter()
        .map(|t| {
            json!({
                "name": t.name,
                "type": t.ty.name(),
                "shape": t.shape,
                "offset": f.data_offset + t.offset,
                "bytes": t.size,
            })
        })
        .collect();
    json!({
        "path": gguf.path().display().to_string(),
        "version": f.version,
        "alignment": f.alignment,
        "data_offset": f.data_offset,
        "file_size": f.file_len,
        "n_tensors": f.tensors.len(),
        "n_params": f.n_elements(),
        "bits_per_weight": bits_per_weight(f),
        "types": stats,
        "metadata": metadata,
        "metadata_types": types,
        "tensors": tensors,
    })
}

/// f32 as the JSON number with the same shortest decimal form.
fn f32_json(x: f32) -> Json {
    if x.is_finite() {
        json!(format!("{x}").parse::<f64>().unwrap_or(f64::from(x)))
    } else {
        Json::String(x.to_string())
    }
}

fn f64_json(x: f64) -> Json {
    if x.is_finite() {
        json!(x)
    } else {
        Json::String(x.to_string())
    }
}

fn value_json(v: &Value, full: bool) -> Json {
    match v {
        Value::U8(x) => json!(x),
        Value::I8(x) => json!(x),
        Value::U16(x) => json!(x),
        Value::I16(x) => json!(x),
        Value::U32(x) => json!(x),
        Value::I32(x) => json!(x),
        Value::U64(x) => json!(x),
        Value::I64(x) => json!(x),
        Value::F32(x) => f32_json(*x),
        Value::F64(x) => f64_json(*x),
        Value::Bool(x) => json!(x),
        Value::String(s) => json!(s),
        Value::Array(a) => array_json(a, full),
    }
}

fn array_json(a: &Array, full: bool) -> Json {
    let n = if full {
        a.len()
    } else {
        a.len().min(ARRAY_SUMMARY_LEN)
    };
    let items: Vec<Json> = (0..n)
        .filter_map(|i| a.get(i))
        .map(|v| value_json(&v, full))
        .collect();
    if n == a.len() {
        Json::Array(items)
    } else {
        json!({"summary": true, "len": a.len(), "head": items})
    }
}

fn tensor_rows_json(gguf: &MappedGguf, name: &str, rows: std::ops::Range<u64>) -> Result<Json> {
    let (info, data) = gguf.tensor_data(name)?;
    let n_rows = info.n_rows();
    if rows.end > n_rows {
        bail!(
            "tensor {name} has {n_rows} rows; --rows asked for {}..{}",
            rows.start,
            rows.end
        );
    }
    if !hearth_kernels::quant::supports_dequantize(info.ty) {
        bail!("dequantizing {} is not supported", info.ty);
    }
    let row_bytes = info.row_bytes() as usize;
    let ne0 = info.shape[0] as usize;
    let mut out = Vec::new();
    let mut buf = vec![0f32; ne0];
    for r in rows.clone() {
        let start = r as usize * row_bytes;
        hearth_kernels::quant::dequantize(info.ty, &data[start..start + row_bytes], &mut buf)?;
        out.push(Json::Array(buf.iter().map(|&x| f32_json(x)).collect()));
    }
    Ok(json!({
        "name": name,
        "type": info.ty.name(),
        "shape": info.shape,
        "rows": [rows.start, rows.end],
        "data": out,
    }))
}
