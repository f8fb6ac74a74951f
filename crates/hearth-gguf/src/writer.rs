//! GGUF v3 writer: metadata, tensor infos and aligned tensor data.

use std::borrow::Cow;
use std::collections::HashSet;
use std::io::Write;

use crate::error::{GgufError, Result};
use crate::metadata::Metadata;
use crate::reader::{align_up, ALIGNMENT_KEY, DEFAULT_ALIGNMENT, MAGIC};
use crate::tensor::{tensor_size, MAX_DIMS, MAX_NAME_LEN};
use crate::value::{Array, Value};
use crate::GgmlType;

struct PendingTensor<'a> {
    name: String,
    shape: Vec<u64>,
    ty: GgmlType,
    data: Cow<'a, [u8]>,
    /// Data supplied while writing ([`GgufWriter::write_streaming`]); `data` is empty.
    deferred: Option<u64>,
}

/// Collects metadata and tensors, then writes a GGUF v3 file.
#[derive(Default)]
pub struct GgufWriter<'a> {
    metadata: Metadata,
    tensors: Vec<PendingTensor<'a>>,
    names: HashSet<String>,
}

impl<'a> GgufWriter<'a> {
    /// An empty file.
    pub fn new() -> Self {
        Self::default()
    }

    /// A writer starting from existing metadata.
    pub fn with_metadata(metadata: Metadata) -> Self {
        GgufWriter {
            metadata,
            ..Self::default()
        }
    }

    /// The metadata to be written.
    pub fn metadata_mut(&mut self) -> &mut Metadata {
        &mut self.metadata
    }

    /// Adds a tensor; `data` must be exactly the bytes of `ty` and `shape`
    /// (ggml order, `shape[0]` the row length).
    pub fn add_tensor(
        &mut self,
        name: impl Into<String>,
        ty: GgmlType,
        shape: &[u64],
        data: impl Into<Cow<'a, [u8]>>,
    ) -> Result<()> {
        self.push_tensor(name.into(), ty, shape, data.into(), false)
    }

    /// Adds a tensor whose bytes are written later by the `fill` callback of
    /// [`GgufWriter::write_streaming`] (for files larger than memory).
    pub fn add_tensor_deferred(
        &mut self,
        name: impl Into<String>,
        ty: GgmlType,
        shape: &[u64],
    ) -> Result<()> {
        self.push_tensor(name.into(), ty, shape, Cow::Borrowed(&[]), true)
    }

    fn push_tensor(
        &mut self,
        name: String,
        ty: GgmlType,
        shape: &[u64],
        data: Cow<'a, [u8]>,
        deferred: bool,
    ) -> Result<()> {
        if name.is_empty() {
            return Err(GgufError::EmptyTensorName);
        }
        if name.len() > MAX_NAME_LEN {
            return Err(GgufError::TensorNameTooLong {
                len: name.len(),
                max: MAX_NAME_LEN,
            });
        }
        if shape.is_empty() || shape.len() > MAX_DIMS {
            return Err(GgufError::BadDimCount {
                name,
                n_dims: shape.len() as u32,
                max: MAX_DIMS,
            });
        }
        let expected = tensor_size(ty, shape);
        let deferred_size = match (deferred, expected) {
            (true, Some(size)) => Some(size),
            _ => None,
        };
        if deferred_size.is_none() && expected != Some(data.len() as u64) {
            return Err(GgufError::TensorDataSize {
                name,
                ty,
                shape: shape.to_vec(),
                len: data.len(),
                expected: expected.unwrap_or(0),
            });
        }
        if !self.names.insert(name.clone()) {
            return Err(GgufError::DuplicateTensor { name });
        }
        self.tensors.push(PendingTensor {
            name,
            shape: shape.to_vec(),
            ty,
            data,
            deferred: deferred_size,
        });
        Ok(())
    }

    fn alignment(&self) -> Result<u64> {
        match self.metadata.get(ALIGNMENT_KEY) {
            None => Ok(DEFAULT_ALIGNMENT),
            Some(Value::U32(a)) if a.is_power_of_two() => Ok(u64::from(*a)),
            Some(v) => Err(GgufError::BadAlignment {
                found: format!("{v:?}"),
            }),
        }
    }

    /// Writes the whole file to `w`; returns the number of bytes written. Tensors added with
    /// [`GgufWriter::add_tensor_deferred`] need [`GgufWriter::write_streaming`].
    pub fn write_to<W: Write>(&self, w: W) -> Result<u64> {
        self.write_streaming(w, |i, _| {
            Err(GgufError::DeferredData {
                name: self.tensors[i].name.clone(),
            })
        })
    }

    /// [`GgufWriter::write_to`], calling `fill(i, w)` to write the bytes of the `i`-th tensor
    /// (in the order added) when it was added deferred; `fill` must write exactly the
    /// tensor's size.
    pub fn write_streaming<W: Write>(
        &self,
        w: W,
        mut fill: impl FnMut(usize, &mut dyn Write) -> Result<()>,
    ) -> Result<u64> {
        let alignment = self.alignment()?;
        let mut w = CountingWriter { inner: w, count: 0 };
        w.write_all(&MAGIC)?;
        w.write_all(&3u32.to_le_bytes())?;
        w.write_all(&(self.tensors.len() as u64).to_le_bytes())?;
        w.write_all(&(self.metadata.len() as u64).to_le_bytes())?;
        for (key, value) in self.metadata.iter() {
            write_str(&mut w, key)?;
            w.write_all(&(value.value_type() as u32).to_le_bytes())?;
            write_value(&mut w, value)?;
        }
        let mut offset = 0u64;
        let mut offsets = Vec::with_capacity(self.tensors.len());
        for t in &self.tensors {
            write_str(&mut w, &t.name)?;
            w.write_all(&(t.shape.len() as u32).to_le_bytes())?;
            for &d in &t.shape {
                w.write_all(&d.to_le_bytes())?;
            }
            w.write_all(&(t.ty as u32).to_le_bytes())?;
            w.write_all(&offset.to_le_bytes())?;
            offsets.push(offset);
            let len = t.deferred.unwrap_or(t.data.len() as u64);
            offset = align_up(offset + len, alignment).expect("sizes fit in u64");
        }
        pad_to(&mut w, alignment)?;
        let data_start = w.count;
        for (i, (t, &off)) in self.tensors.iter().zip(&offsets).enumerate() {
            let pad = data_start + off - w.count;
            w.write_all(&vec![0u8; pad as usize])?;
            match t.deferred {
                None => w.write_all(&t.data)?,
                Some(size) => {
                    let before = w.count;
                    fill(i, &mut w)?;
                    let written = w.count - before;
                    if written != size {
                        return Err(GgufError::TensorDataSize {
                            name: t.name.clone(),
                            ty: t.ty,
                            shape: t.shape.clone(),
                            len: written as usize,
                            expected: size,
                        });
                    }
                }
            }
        }
        pad_to(&mut w, alignment)?;
        w.inner.flush()?;
        Ok(w.count)
    }
}

struct CountingWriter<W> {
    inner: W,
    count: u64,
}

impl<W: Write> Write for CountingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.count += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

fn pad_to<W: Write>(w: &mut CountingWriter<W>, alignment: u64) -> Result<()> {
    let target = align_up(w.count, alignment).expect("file size fits in u64");
    w.write_all(&vec![0u8; (target - w.count) as usize])?;
    Ok(())
}

fn write_str<W: Write>(w: &mut W, s: &str) -> Result<()> {
    w.write_all(&(s.len() as u64).to_le_bytes())?;
    w.write_all(s.as_bytes())?;
    Ok(())
}

fn write_value<W: Write>(w: &mut W, v: &Value) -> Result<()> {
    match v {
        Value::U8(x) => w.write_all(&x.to_le_bytes())?,
        Value::I8(x) => w.write_all(&x.to_le_bytes())?,
        Value::U16(x) => w.write_all(&x.to_le_bytes())?,
        Value::I16(x) => w.write_all(&x.to_le_bytes())?,
        Value::U32(x) => w.write_all(&x.to_le_bytes())?,
        Value::I32(x) => w.write_all(&x.to_le_bytes())?,
        Value::F32(x) => w.write_all(&x.to_le_bytes())?,
        Value::Bool(x) => w.write_all(&[u8::from(*x)])?,
        Value::String(s) => write_str(w, s)?,
        Value::Array(a) => write_array(w, a)?,
        Value::U64(x) => w.write_all(&x.to_le_bytes())?,
        Value::I64(x) => w.write_all(&x.to_le_bytes())?,
        Value::F64(x) => w.write_all(&x.to_le_bytes())?,
    }
    Ok(())
}

fn write_array<W: Write>(w: &mut W, a: &Array) -> Result<()> {
    w.write_all(&(a.element_type() as u32).to_le_bytes())?;
    w.write_all(&(a.len() as u64).to_le_bytes())?;
    macro_rules! each {
        ($v:expr) => {
            for x in $v {
                w.write_all(&x.to_le_bytes())?;
            }
        };
    }
    match a {
        Array::U8(v) => w.write_all(v)?,
        Array::I8(v) => each!(v),
        Array::U16(v) => each!(v),
        Array::I16(v) => each!(v),
        Array::U32(v) => each!(v),
        Array::I32(v) => each!(v),
        Array::F32(v) => each!(v),
        Array::Bool(v) => each!(v.iter().map(|&b| u8::from(b))),
        Array::String(v) => {
            for s in v {
                write_str(w, s)?;
            }
        }
        Array::Array(v) => {
            for inner in v {
                write_array(w, inner)?;
            }
        }
        Array::U64(v) => each!(v),
        Array::I64(v) => each!(v),
        Array::F64(v) => each!(v),
    }
    Ok(())
}
