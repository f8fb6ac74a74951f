//! Importance matrices in llama-imatrix's formats.
//!
//! - GGUF (what llama-imatrix writes by default): metadata `general.type =
//!   "imatrix"`, `imatrix.datasets` (string array), `imatrix.chunk_count`,
//!   `imatrix.chunk_size` (u32); per weight `NAME.in_sum2` (F32, `[ne0,
//!   n_mat]`: the sum of squared inputs per column) and `NAME.counts` (F32,
//!   `[1, n_mat]`: how many input rows were summed), tensors sorted by name.
//! - legacy `.dat`: i32 entry count; per entry i32 name length, name, i32
//!   ncall, i32 value count, f32 values (already `sum / count * ncall`);
//!   then optionally i32 chunk count, i32 length + dataset name.
//!
//! Reading is bounded: every length is checked against the bytes left before
//! anything is allocated, and no input makes it panic.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use hearth_gguf::{GgmlType, GgufFile, Value};

use crate::error::QuantizeError;
use crate::header::{header_bytes, HeaderTensor};

/// One weight's statistics.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Entry {
    /// Sum of squared inputs per column, `n_mat` blocks of `ne0` values.
    pub sums: Vec<f32>,
    /// Input rows summed, one per matrix (legacy files: one `ncall`).
    pub counts: Vec<i64>,
}

/// An importance matrix file.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Imatrix {
    /// By weight name (`blk.0.attn_q.weight`).
    pub entries: BTreeMap<String, Entry>,
    /// The texts it was computed on.
    pub datasets: Vec<String>,
    pub chunk_count: i32,
    pub chunk_size: i32,
    /// Read from the legacy `.dat` format.
    pub is_legacy: bool,
    /// The GGUF file had all three `imatrix.*` keys.
    pub has_metadata: bool,
}

fn bad(msg: impl Into<String>) -> QuantizeError {
    QuantizeError::BadImatrix(msg.into())
}

struct Cursor<'a> {
    buf: &'a [u8],
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], QuantizeError> {
        if n > self.buf.len() {
            return Err(bad(format!(
                "legacy file ends while reading {what} ({n} bytes needed, {} left)",
                self.buf.len()
            )));
        }
        let (h, t) = self.buf.split_at(n);
        self.buf = t;
        Ok(h)
    }

    fn i32(&mut self, what: &str) -> Result<i32, QuantizeError> {
        let b = self.take(4, what)?;
        Ok(i32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
}

impl Imatrix {
    /// Reads a GGUF or legacy imatrix file.
    pub fn load(path: &Path) -> Result<Imatrix, QuantizeError> {
        let bytes = std::fs::read(path).map_err(|source| QuantizeError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_bytes(&bytes)
    }

    /// Parses a GGUF or legacy imatrix held in memory.
    pub fn from_bytes(bytes: &[u8]) -> Result<Imatrix, QuantizeError> {
        if bytes.starts_with(&hearth_gguf::MAGIC) {
            Self::from_gguf(bytes)
        } else {
            Self::from_legacy(bytes)
        }
    }

    fn from_gguf(bytes: &[u8]) -> Result<Imatrix, QuantizeError> {
        let g = GgufFile::parse(bytes)?;
        if g.tensors.is_empty() {
            return Err(bad("no data in the file"));
        }
        let md = &g.metadata;
        let mut im = Imatrix::default();
        if let Ok(ds) = md.get_str_array("imatrix.datasets") {
            im.datasets = ds.to_vec();
        }
        let count = md.get_u32_opt("imatrix.chunk_count").ok().flatten();
        let size = md.get_u32_opt("imatrix.chunk_size").ok().flatten();
        im.has_metadata = md.contains("imatrix.datasets") && count.is_some() && size.is_some();
        im.chunk_count = count.map_or(0, |c| c as i32);
        im.chunk_size = size.map_or(0, |c| c as i32);
        let mut pairs: BTreeMap<&str, (Option<usize>, Option<usize>)> = BTreeMap::new();
        for (i, t) in g.tensors.iter().enumerate() {
            if let Some(n) = t.name.strip_suffix(".in_sum2") {
                pairs.entry(n).or_default().0 = Some(i);
            } else if let Some(n) = t.name.strip_suffix(".counts") {
                pairs.entry(n).or_default().1 = Some(i);
            }
        }
        let floats = |i: usize| -> Result<Vec<f32>, QuantizeError> {
            let t = &g.tensors[i];
            if t.ty != GgmlType::F32 {
                return Err(bad(format!("{} must be F32, is {}", t.name, t.ty)));
            }
            let data = g.tensor_data(bytes, t)?;
            Ok(data
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect())
        };
        for (name, (s, c)) in pairs {
            let (Some(s), Some(c)) = (s, c) else {
                return Err(bad(format!("mismatched sums and counts for {name}")));
            };
            let sums = floats(s)?;
            let counts: Vec<i64> = floats(c)?.into_iter().map(|x| x.round() as i64).collect();
            if counts.is_empty() || !sums.len().is_multiple_of(counts.len()) {
                return Err(bad(format!(
                    "{name}: {} sums do not split into {} matrices",
                    sums.len(),
                    counts.len()
                )));
            }
            im.entries.insert(name.to_string(), Entry { sums, counts });
        }
        Ok(im)
    }

    fn from_legacy(bytes: &[u8]) -> Result<Imatrix, QuantizeError> {
        let mut c = Cursor { buf: bytes };
        let n = c.i32("the entry count")?;
        if n < 1 {
            return Err(bad("no data in the file"));
        }
        let mut im = Imatrix {
            is_legacy: true,
            ..Imatrix::default()
        };
        for i in 0..n {
            let len = c.i32("a name length")?;
            let len =
                usize::try_from(len).map_err(|_| bad(format!("entry {i}: bad name length")))?;
            let name = c.take(len, "a name")?;
            // The C reader stops at a NUL inside the name.
            let name = name.split(|&b| b == 0).next().unwrap_or_default();
            let name = String::from_utf8_lossy(name).into_owned();
            let ncall = c.i32("ncall")?;
            let nval = c.i32("a value count")?;
            if nval < 1 {
                return Err(bad(format!("entry {i}: {nval} values")));
            }
            let nbytes = (nval as usize)
                .checked_mul(4)
                .ok_or_else(|| bad("value count overflows"))?;
            let data = c.take(nbytes, "values")?;
            let sums = data
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            im.entries.insert(
                name,
                Entry {
                    sums,
                    counts: vec![i64::from(ncall)],
                },
            );
        }
        if !c.buf.is_empty() {
            if let Ok(n_calls) = c.i32("the chunk count") {
                im.chunk_count = n_calls;
                if let Ok(len) = c.i32("the dataset length") {
                    if let Ok(len) = usize::try_from(len) {
                        if len > 0 {
                            if let Ok(ds) = c.take(len, "the dataset") {
                                let ds = ds.split(|&b| b == 0).next().unwrap_or_default();
                                im.datasets.push(String::from_utf8_lossy(ds).into_owned());
                            }
                        }
                    }
                }
            }
        }
        Ok(im)
    }

    /// The per-column weights llama-quantize hands the quantizers: sums
    /// divided by counts (a matrix that saw no input gets all 1s; legacy
    /// values are divided by ncall), optionally filtered by substrings of
    /// the names (`--include-weights` / `--exclude-weights`).
    pub fn quantizer_weights(
        &self,
        include: &[String],
        exclude: &[String],
    ) -> HashMap<String, Vec<f32>> {
        let mut out = HashMap::new();
        for (name, e) in &self.entries {
            if exclude.iter().any(|x| name.contains(x.as_str())) {
                continue;
            }
            if !include.is_empty() && !include.iter().any(|x| name.contains(x.as_str())) {
                continue;
            }
            let mut w = vec![0f32; e.sums.len()];
            if self.is_legacy {
                let ncall = e.counts.first().copied().unwrap_or(0);
                for (o, &s) in w.iter_mut().zip(&e.sums) {
                    *o = if ncall > 0 { s / ncall as f32 } else { s };
                }
            } else {
                let n_mat = e.counts.len().max(1);
                let ne0 = e.sums.len() / n_mat;
                for (j, &count) in e.counts.iter().enumerate() {
                    let count = count as f32;
                    for i in 0..ne0 {
                        w[j * ne0 + i] = if count > 0.0 {
                            e.sums[j * ne0 + i] / count
                        } else {
                            1.0
                        };
                    }
                }
            }
            out.insert(name.clone(), w);
        }
        out
    }

    /// The file llama-imatrix writes by default (GGUF).
    pub fn to_gguf(&self) -> Vec<u8> {
        let md: Vec<(String, Value)> = vec![
            ("general.type".into(), Value::String("imatrix".into())),
            (
                "imatrix.datasets".into(),
                Value::Array(hearth_gguf::Array::String(self.datasets.clone())),
            ),
            (
                "imatrix.chunk_count".into(),
                Value::U32(self.chunk_count.max(0) as u32),
            ),
            (
                "imatrix.chunk_size".into(),
                Value::U32(self.chunk_size.max(0) as u32),
            ),
        ];
        struct T {
            name: String,
            shape: Vec<u64>,
            data: Vec<u8>,
        }
        let mut ts = Vec::new();
        for (name, e) in &self.entries {
            let n_mat = e.counts.len();
            if e.sums.is_empty() || n_mat == 0 {
                continue;
            }
            let ne0 = (e.sums.len() / n_mat) as u64;
            ts.push(T {
                name: format!("{name}.in_sum2"),
                shape: vec![ne0, n_mat as u64],
                data: e.sums.iter().flat_map(|x| x.to_le_bytes()).collect(),
            });
            ts.push(T {
                name: format!("{name}.counts"),
                shape: vec![1, n_mat as u64],
                data: e
                    .counts
                    .iter()
                    .flat_map(|&c| (c as f32).to_le_bytes())
                    .collect(),
            });
        }
        let align = hearth_gguf::DEFAULT_ALIGNMENT;
        let mut off = 0u64;
        let mut infos = Vec::with_capacity(ts.len());
        for t in &ts {
            infos.push(HeaderTensor {
                name: &t.name,
                shape: &t.shape,
                ty: GgmlType::F32,
                offset: off,
            });
            off = hearth_gguf::align_up(off + t.data.len() as u64, align).unwrap_or(off);
        }
        let mut out = header_bytes(&md, &infos, align);
        for t in &ts {
            out.extend_from_slice(&t.data);
            let padded = hearth_gguf::align_up(out.len() as u64, align).unwrap_or(0) as usize;
            out.resize(padded, 0);
        }
        out
    }

    /// The legacy `.dat` format (`--output-format dat`); entries that saw
    /// no input are left out, as llama-imatrix does.
    pub fn to_legacy(&self) -> Vec<u8> {
        let chunk = i64::from(self.chunk_size.max(1));
        let stored: Vec<(&String, &Entry)> = self
            .entries
            .iter()
            .filter(|(_, e)| !e.counts.is_empty() && e.counts.iter().any(|&c| c != 0))
            .collect();
        let mut out = Vec::new();
        out.extend_from_slice(&(stored.len() as i32).to_le_bytes());
        for (name, e) in stored {
            out.extend_from_slice(&(name.len() as i32).to_le_bytes());
            out.extend_from_slice(name.as_bytes());
            let max = e.counts.iter().copied().max().unwrap_or(0);
            let ncall = ((max + chunk - 1) / chunk) as i32;
            out.extend_from_slice(&ncall.to_le_bytes());
            let nval = e.sums.len();
            out.extend_from_slice(&(nval as i32).to_le_bytes());
            let nmat = e.counts.len();
            let per = (nval / nmat).max(1);
            for (i, &v) in e.sums.iter().enumerate() {
                let mut count = e.counts[(i / per).min(nmat - 1)] as f32;
                let mut value = v;
                if count == 0.0 {
                    value = 1.0;
                    count = 1.0;
                }
                out.extend_from_slice(&((value / count) * ncall as f32).to_le_bytes());
            }
        }
        out.extend_from_slice(&self.chunk_count.to_le_bytes());
        let ds = self.datasets.last().map(String::as_str).unwrap_or("");
        out.extend_from_slice(&(ds.len() as i32).to_le_bytes());
        out.extend_from_slice(ds.as_bytes());
        out
    }
}

/// Accumulates an importance matrix from the inputs of weight products, as
/// llama-imatrix's `collect_imatrix` does for dense products: per weight,
/// the sum over input rows of each column's square (summed in f32 in row
/// order), and the number of rows. Products with fewer than 16 rows, and
/// weights outside the blocks (unless `process_output` for output.weight),
/// are skipped.
#[derive(Debug, Default)]
pub struct Collector {
    pub stats: BTreeMap<String, Entry>,
    /// Also collect `output.weight` (`--process-output`).
    pub process_output: bool,
}

impl Collector {
    /// Whether llama-imatrix would collect this product.
    pub fn wants(&self, name: &str, n_rows: usize) -> bool {
        n_rows >= 16
            && (name.starts_with("blk.") || (self.process_output && name == "output.weight"))
    }

    /// Adds `n_rows` input rows `x` of the weight `name`; returns an error
    /// message when the sizes disagree with earlier calls or a value is not
    /// finite.
    pub fn add(&mut self, name: &str, x: &[f32], n_rows: usize) -> Result<(), QuantizeError> {
        if !self.wants(name, n_rows) || x.is_empty() {
            return Ok(());
        }
        let ne0 = x.len() / n_rows;
        let e = self.stats.entry(name.to_string()).or_default();
        if e.sums.is_empty() {
            e.sums = vec![0.0; ne0];
            e.counts = vec![0];
        } else if e.sums.len() != ne0 {
            return Err(bad(format!(
                "inconsistent size for {name} ({} vs {ne0})",
                e.sums.len()
            )));
        }
        for row in x.chunks_exact(ne0).take(n_rows) {
            for (acc, &v) in e.sums.iter_mut().zip(row) {
                *acc += v * v;
            }
        }
        if e.sums.iter().any(|v| !v.is_finite()) {
            return Err(QuantizeError::ImatrixNonFinite {
                name: name.to_string(),
            });
        }
        for c in &mut e.counts {
            *c += n_rows as i64;
        }
        Ok(())
    }

    /// The collected matrix, with its metadata.
    pub fn finish(self, datasets: Vec<String>, chunk_count: i32, chunk_size: i32) -> Imatrix {
        Imatrix {
            entries: self.stats,
            datasets,
            chunk_count,
            chunk_size,
            is_legacy: false,
            has_metadata: true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Imatrix {
        let mut c = Collector::default();
        let x: Vec<f32> = (0..32 * 4).map(|i| (i as f32 * 0.37).sin()).collect();
        c.add("blk.0.attn_q.weight", &x, 16).unwrap();
        c.add("blk.0.attn_q.weight", &x, 16).unwrap();
        c.add("blk.0.ffn_up.weight", &x, 16).unwrap();
        c.add("output.weight", &x, 16).unwrap(); // skipped
        c.add("blk.0.attn_k.weight", &x[..8 * 4], 4).unwrap(); // too few rows
        c.finish(vec!["text.txt".into()], 2, 16)
    }

    #[test]
    fn collector_follows_llama_imatrix_filters() {
        let im = sample();
        let names: Vec<_> = im.entries.keys().map(String::as_str).collect();
        assert_eq!(names, ["blk.0.attn_q.weight", "blk.0.ffn_up.weight"]);
        assert_eq!(im.entries["blk.0.attn_q.weight"].counts, [32]);
        assert_eq!(im.entries["blk.0.attn_q.weight"].sums.len(), 8);
    }

    #[test]
    fn gguf_round_trips_and_normalizes() {
        let im = sample();
        let back = Imatrix::from_bytes(&im.to_gguf()).unwrap();
        assert_eq!(back, im);
        let w = back.quantizer_weights(&[], &[]);
        let e = &im.entries["blk.0.ffn_up.weight"];
        assert_eq!(w["blk.0.ffn_up.weight"][3], e.sums[3] / 16.0);
        let only = back.quantizer_weights(&["ffn".into()], &[]);
        assert_eq!(only.len(), 1);
        let not = back.quantizer_weights(&[], &["ffn".into()]);
        assert!(!not.contains_key("blk.0.ffn_up.weight"));
    }

    #[test]
    fn legacy_round_trips_to_the_same_weights() {
        let im = sample();
        let back = Imatrix::from_bytes(&im.to_legacy()).unwrap();
        assert!(back.is_legacy);
        assert_eq!(back.chunk_count, 2);
        assert_eq!(back.datasets, ["text.txt"]);
        let a = im.quantizer_weights(&[], &[]);
        let b = back.quantizer_weights(&[], &[]);
        for (k, v) in &a {
            for (x, y) in v.iter().zip(&b[k]) {
                assert!((x - y).abs() <= 1e-6 * x.abs().max(1.0), "{k}: {x} {y}");
            }
        }
    }

    #[test]
    fn truncated_and_garbage_input_is_an_error_not_a_panic() {
        let good = sample().to_legacy();
        for n in 0..good.len() {
            let _ = Imatrix::from_bytes(&good[..n]);
        }
        let gguf = sample().to_gguf();
        for n in (0..gguf.len()).step_by(7) {
            let _ = Imatrix::from_bytes(&gguf[..n]);
        }
        // A huge declared length allocates nothing.
        let mut huge = Vec::new();
        huge.extend_from_slice(&1i32.to_le_bytes());
        huge.extend_from_slice(&i32::MAX.to_le_bytes());
        assert!(Imatrix::from_bytes(&huge).is_err());
        let mut huge = Vec::new();
        huge.extend_from_slice(&1i32.to_le_bytes());
        huge.extend_from_slice(&1i32.to_le_bytes());
        huge.push(b'a');
        huge.extend_from_slice(&0i32.to_le_bytes());
        huge.extend_from_slice(&i32::MAX.to_le_bytes());
        assert!(Imatrix::from_bytes(&huge).is_err());
        assert!(Imatrix::from_bytes(&[]).is_err());
    }
}
