//! The whole-file quantizer: plan the types, write the header, then convert
//! all tensors on a pool of threads that take row chunks from one queue and
//! write each chunk at its final offset (the layout is known up front).

use std::collections::HashMap;
use std::fs::File;
use std::io::{Seek, SeekFrom, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;

use hearth_gguf::{align_up, GgmlType, MappedGguf, Value, ALIGNMENT_KEY, DEFAULT_ALIGNMENT};
use hearth_kernels::quant;

use crate::error::QuantizeError;
use crate::header::{header_bytes, HeaderTensor};
use crate::imatrix::Imatrix;
use crate::plan::TypeOptions;
use crate::plan::{plan_types, requires_imatrix, sort_like_llama_cpp, ModelInfo, TensorPlan};

/// `GGML_QNT_VERSION`.
pub const QUANTIZATION_VERSION: u32 = 2;

/// Everything a `hearth quantize` run decides.
#[derive(Clone, Debug)]
pub struct QuantizeOptions {
    pub types: TypeOptions,
    /// Allow quantized inputs (dequantized, then quantized again).
    pub allow_requantize: bool,
    /// Worker threads (at least 1).
    pub threads: usize,
    /// Importance per input column, by tensor name, already divided by the
    /// counts (what `llama-quantize` hands the quantizers).
    pub imatrix: Option<HashMap<String, Vec<f32>>>,
    /// Metadata set after `general.file_type` (llama-quantize's
    /// `--override-kv` and the `quantize.imatrix.*` keys), in order.
    pub kv_overrides: Vec<(String, Value)>,
}

impl QuantizeOptions {
    /// Options for `types` with nothing else set and one thread.
    pub fn new(types: TypeOptions) -> QuantizeOptions {
        QuantizeOptions {
            types,
            allow_requantize: false,
            threads: 1,
            imatrix: None,
            kv_overrides: Vec::new(),
        }
    }
}

impl QuantizeOptions {
    /// Uses the importance matrix `im` (read from `file_name`, recorded as
    /// given) the way llama-quantize does: weights filtered by
    /// `--include-weights` / `--exclude-weights` substrings, and the
    /// `quantize.imatrix.*` metadata (strings cut at 127 bytes). Returns
    /// the number of entries used (none: the matrix is ignored).
    pub fn use_imatrix(
        &mut self,
        file_name: &str,
        im: &Imatrix,
        include: &[String],
        exclude: &[String],
    ) -> usize {
        let data = im.quantizer_weights(include, exclude);
        let n = data.len();
        if n == 0 {
            return 0;
        }
        fn cut(s: &str) -> String {
            let mut end = s.len().min(127);
            while !s.is_char_boundary(end) {
                end -= 1;
            }
            s[..end].to_string()
        }
        self.kv_overrides.push((
            "quantize.imatrix.file".into(),
            Value::String(cut(file_name)),
        ));
        if let Some(ds) = im.datasets.first() {
            self.kv_overrides
                .push(("quantize.imatrix.dataset".into(), Value::String(cut(ds))));
        }
        self.kv_overrides.push((
            "quantize.imatrix.entries_count".into(),
            Value::U32(u32::try_from(n).unwrap_or(u32::MAX)),
        ));
        if im.chunk_count > 0 {
            self.kv_overrides.push((
                "quantize.imatrix.chunks_count".into(),
                Value::U32(im.chunk_count.unsigned_abs()),
            ));
        }
        self.imatrix = Some(data);
        n
    }
}

/// Progress of a run, passed to the callback after each chunk.
#[derive(Clone, Copy, Debug)]
pub struct Progress {
    /// Bytes of input tensor data handled so far.
    pub done: u64,
    /// Bytes of input tensor data in all.
    pub total: u64,
}

/// What a run did.
#[derive(Clone, Debug)]
pub struct Report {
    pub tensors: Vec<TensorPlan>,
    /// Bytes of tensor data in / out.
    pub size_in: u64,
    pub size_out: u64,
    /// Number of weights.
    pub n_elements: u64,
    /// Tensors that needed a fallback type.
    pub n_fallback: usize,
    /// Tensors quantized without importance data although a matrix was given.
    pub missing_imatrix: Vec<String>,
}

/// One unit of work: rows `[row0, row0 + nrows)` of tensor `t`.
struct Item {
    t: usize,
    row0: u64,
    nrows: u64,
}

/// Per-tensor geometry for the workers.
struct Job<'a> {
    plan: &'a TensorPlan,
    src: &'a [u8],
    ne0: usize,
    rows_per_matrix: u64,
    src_row: usize,
    dst_row: usize,
    /// Absolute file offset of the tensor's data.
    file_offset: u64,
    imatrix: Option<&'a [f32]>,
    copy: bool,
}

/// The file type's tensor types, without writing anything.
pub fn plan_file(model: &MappedGguf, opts: &TypeOptions) -> Result<Vec<TensorPlan>, QuantizeError> {
    let info = ModelInfo::from_metadata(&model.file().metadata)?;
    let mut tensors = model.file().tensors.clone();
    sort_like_llama_cpp(&mut tensors);
    plan_types(&tensors, &info, opts)
}

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> QuantizeError + '_ {
    move |source| QuantizeError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Whether `ggml_quantize_chunk` reads the importance matrix for `ty`.
fn uses_imatrix(ty: GgmlType) -> bool {
    use GgmlType as T;
    matches!(
        ty,
        T::Q4_0
            | T::Q4_1
            | T::Q5_0
            | T::Q5_1
            | T::Q2_K
            | T::Q3_K
            | T::Q4_K
            | T::Q5_K
            | T::Q6_K
            | T::IQ4_NL
            | T::IQ4_XS
            | T::IQ2_XXS
            | T::IQ2_XS
            | T::IQ2_S
            | T::IQ3_XXS
            | T::IQ3_S
            | T::IQ1_S
            | T::IQ1_M
    )
}

/// Quantizes `input` into `output` (written directly; callers wanting
/// atomicity write to a temporary path and rename).
pub fn quantize_file(
    input: &Path,
    output: &Path,
    opts: &QuantizeOptions,
    progress: &(dyn Fn(Progress) + Sync),
) -> Result<Report, QuantizeError> {
    let model = MappedGguf::open(input)?;
    let gguf = model.file();
    let bytes = model.bytes();
    let mut types = opts.types.clone();
    types.has_imatrix = opts.imatrix.is_some();
    let plans = plan_file(&model, &types)?;

    if let Some(im) = &opts.imatrix {
        for (name, v) in im {
            if v.iter().any(|x| !x.is_finite()) {
                return Err(QuantizeError::ImatrixNonFinite { name: name.clone() });
            }
        }
    }

    // Metadata: the input's pairs in order, then the ones llama-quantize sets
    // (gguf_set_val_* removes an existing key and appends).
    let mut md: Vec<(String, Value)> = gguf
        .metadata
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    fn set(md: &mut Vec<(String, Value)>, k: &str, v: Value) {
        md.retain(|(kk, _)| kk != k);
        md.push((k.to_string(), v));
    }
    set(
        &mut md,
        "general.quantization_version",
        Value::U32(QUANTIZATION_VERSION),
    );
    set(
        &mut md,
        "general.file_type",
        Value::U32(opts.types.ftype.id()),
    );
    md.retain(|(k, _)| {
        !matches!(
            k.as_str(),
            "split.no" | "split.count" | "split.tensors.count"
        )
    });
    for (k, v) in &opts.kv_overrides {
        set(&mut md, k, v.clone());
    }
    let alignment = match md.iter().find(|(k, _)| k == ALIGNMENT_KEY) {
        Some((_, Value::U32(a))) if a.is_power_of_two() => u64::from(*a),
        _ => DEFAULT_ALIGNMENT,
    };

    // Layout and per-tensor checks.
    let mut offsets = Vec::with_capacity(plans.len());
    let mut off = 0u64;
    let mut report = Report {
        tensors: plans.clone(),
        size_in: 0,
        size_out: 0,
        n_elements: 0,
        n_fallback: plans.iter().filter(|p| p.fallback).count(),
        missing_imatrix: Vec::new(),
    };
    let too_large = |p: &TensorPlan| QuantizeError::TooLarge {
        name: p.name.clone(),
    };
    let mut sizes = Vec::with_capacity(plans.len());
    for p in &plans {
        let size = hearth_gguf::tensor_size(p.dst_type, &p.shape).ok_or_else(|| too_large(p))?;
        offsets.push(off);
        sizes.push(size);
        off = align_up(
            off.checked_add(size).ok_or_else(|| too_large(p))?,
            alignment,
        )
        .ok_or_else(|| too_large(p))?;
    }
    let header_tensors: Vec<HeaderTensor<'_>> = plans
        .iter()
        .zip(&offsets)
        .map(|(p, &offset)| HeaderTensor {
            name: &p.name,
            shape: &p.shape,
            ty: p.dst_type,
            offset,
        })
        .collect();
    let header = header_bytes(&md, &header_tensors, alignment);
    let data_start = header.len() as u64;
    let file_len = data_start + off;

    let mut jobs = Vec::with_capacity(plans.len());
    for (i, p) in plans.iter().enumerate() {
        let info = gguf.tensor(&p.name).ok_or_else(|| too_large(p))?;
        let src = gguf.tensor_data(bytes, info)?;
        let copy = p.src_type == p.dst_type;
        report.size_in += info.size;
        report.size_out += sizes[i];
        report.n_elements += info.n_elements();
        let ne0 = usize::try_from(p.shape[0]).map_err(|_| too_large(p))?;
        let mut imatrix = None;
        if !copy {
            if p.src_type.is_quantized() && !opts.allow_requantize {
                return Err(QuantizeError::Requantize {
                    name: p.name.clone(),
                    ty: p.src_type,
                });
            }
            if !quant::supports_quantize(p.dst_type) {
                return Err(QuantizeError::Unsupported {
                    name: p.name.clone(),
                    ty: p.dst_type,
                });
            }
            if !quant::supports_dequantize(p.src_type) {
                return Err(QuantizeError::Unsupported {
                    name: p.name.clone(),
                    ty: p.src_type,
                });
            }
            if let Some(im) = &opts.imatrix {
                match im.get(&p.name) {
                    None => report.missing_imatrix.push(p.name.clone()),
                    Some(v) => {
                        let ne2 = p.shape.get(2).copied().unwrap_or(1);
                        let expected = p.shape[0].saturating_mul(ne2);
                        if v.len() as u64 == expected {
                            imatrix = Some(v.as_slice());
                        } else if p.name != "token_embd.weight"
                            && p.name != "per_layer_token_embd.weight"
                        {
                            return Err(QuantizeError::ImatrixSize {
                                name: p.name.clone(),
                                got: v.len(),
                                expected,
                            });
                        }
                    }
                }
            }
            if imatrix.is_none() && requires_imatrix(&p.name, p.dst_type, opts.types.ftype) {
                return Err(QuantizeError::NeedsImatrix {
                    name: p.name.clone(),
                    ty: p.dst_type,
                });
            }
            if imatrix.is_some()
                && uses_imatrix(p.dst_type)
                && !quant::supports_weighted(p.dst_type)
            {
                return Err(QuantizeError::Unsupported {
                    name: p.name.clone(),
                    ty: p.dst_type,
                });
            }
        }
        let src_row = p
            .src_type
            .row_bytes(p.shape[0])
            .ok_or_else(|| too_large(p))? as usize;
        let dst_row = p
            .dst_type
            .row_bytes(p.shape[0])
            .ok_or_else(|| too_large(p))? as usize;
        jobs.push(Job {
            plan: p,
            src,
            ne0,
            rows_per_matrix: p.shape.get(1).copied().unwrap_or(1),
            src_row,
            dst_row,
            file_offset: data_start + offsets[i],
            imatrix,
            copy,
        });
    }

    // Work items: about 64k weights (at least one row) each, never crossing
    // a matrix of a 3-D (expert) tensor, so that each has one imatrix slice.
    const CHUNK_WEIGHTS: u64 = 1 << 16;
    let mut items = Vec::new();
    for (t, j) in jobs.iter().enumerate() {
        let n_rows = j.plan.shape.iter().skip(1).product::<u64>();
        let per_item = if j.copy {
            n_rows.max(1)
        } else {
            (CHUNK_WEIGHTS / j.ne0.max(1) as u64).max(1)
        };
        let mut r = 0;
        while r < n_rows {
            let in_matrix = j.rows_per_matrix - r % j.rows_per_matrix;
            let n = per_item.min(n_rows - r).min(in_matrix);
            items.push(Item {
                t,
                row0: r,
                nrows: n,
            });
            r += n;
        }
    }
    // Largest first keeps the threads evenly busy to the end.
    let total: u64 = jobs.iter().map(|j| j.src.len() as u64).sum();

    let mut f = File::create(output).map_err(io_err(output))?;
    f.set_len(file_len).map_err(io_err(output))?;
    f.write_all(&header).map_err(io_err(output))?;
    let file = Mutex::new(f);
    let next = AtomicUsize::new(0);
    let done = AtomicU64::new(0);
    let failed = AtomicBool::new(false);
    let first_err: Mutex<Option<QuantizeError>> = Mutex::new(None);
    let threads = opts.threads.max(1).min(items.len().max(1));

    let worker = || {
        let mut f32_buf: Vec<f32> = Vec::new();
        let mut out_buf: Vec<u8> = Vec::new();
        loop {
            if failed.load(Ordering::Relaxed) {
                return;
            }
            let i = next.fetch_add(1, Ordering::Relaxed);
            let Some(item) = items.get(i) else { return };
            let j = &jobs[item.t];
            let r = run_item(j, item, &mut f32_buf, &mut out_buf).and_then(|data| {
                let pos = j.file_offset + item.row0 * j.dst_row as u64;
                let mut f = file.lock().unwrap_or_else(|e| e.into_inner());
                f.seek(SeekFrom::Start(pos))
                    .and_then(|_| f.write_all(data))
                    .map_err(io_err(output))
            });
            if let Err(e) = r {
                failed.store(true, Ordering::Relaxed);
                first_err
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .get_or_insert(e);
                return;
            }
            let n = item.nrows * j.src_row as u64;
            let d = done.fetch_add(n, Ordering::Relaxed) + n;
            progress(Progress { done: d, total });
        }
    };
    std::thread::scope(|s| {
        for _ in 1..threads {
            s.spawn(worker);
        }
        worker();
    });
    if let Some(e) = first_err.into_inner().unwrap_or_else(|e| e.into_inner()) {
        return Err(e);
    }
    // Like llama-quantize, no fsync: the caller renames a finished file.
    drop(file);
    Ok(report)
}

/// Converts one item; returns the bytes to write.
fn run_item<'b>(
    j: &'b Job<'_>,
    item: &Item,
    f32_buf: &mut Vec<f32>,
    out_buf: &'b mut Vec<u8>,
) -> Result<&'b [u8], QuantizeError> {
    let r0 = item.row0 as usize;
    let n = item.nrows as usize;
    let src = &j.src[r0 * j.src_row..(r0 + n) * j.src_row];
    if j.copy {
        out_buf.clear();
        out_buf.extend_from_slice(src);
        return Ok(out_buf);
    }
    f32_buf.resize(n * j.ne0, 0.0);
    quant::dequantize(j.plan.src_type, src, f32_buf)?;
    out_buf.resize(n * j.dst_row, 0);
    let imatrix = j.imatrix.map(|im| {
        let m = (item.row0 / j.rows_per_matrix) as usize;
        &im[m * j.ne0..(m + 1) * j.ne0]
    });
    match imatrix {
        Some(w) if uses_imatrix(j.plan.dst_type) => {
            quant::quantize_weighted(j.plan.dst_type, f32_buf, out_buf, j.ne0, w)?
        }
        _ => quant::quantize(j.plan.dst_type, f32_buf, out_buf)?,
    }
    Ok(out_buf)
}
