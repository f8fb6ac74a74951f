//! Bounded GGUF v2/v3 parser over a byte slice (the memory map).
//!
//! Every count read from the file is checked against the bytes left before
//! anything is allocated for it, all size arithmetic is checked, and every
//! tensor's data range is checked against the file before a view is handed
//! out. Layout: ggml/src/gguf.cpp and docs/gguf.md in llama.cpp.

use std::collections::HashMap;

use crate::error::{GgufError, Result};
use crate::metadata::Metadata;
use crate::tensor::{tensor_size, TensorInfo, MAX_DIMS, MAX_NAME_LEN};
use crate::value::{Array, Value, ValueType};
use crate::GgmlType;

/// `GGUF` in file order.
pub const MAGIC: [u8; 4] = *b"GGUF";
/// Alignment of tensor data when `general.alignment` is absent.
pub const DEFAULT_ALIGNMENT: u64 = 32;
/// Deepest nesting of arrays accepted (an array of arrays of ... ).
pub const MAX_ARRAY_DEPTH: usize = 8;
/// Key holding the tensor data alignment.
pub const ALIGNMENT_KEY: &str = "general.alignment";

/// Smallest possible encoded tensor info: name length, n_dims, one dim, type, offset.
const MIN_TENSOR_INFO: u64 = 8 + 4 + 8 + 4 + 8;
/// Smallest possible encoded key-value pair: key length, value type, a 1-byte value.
const MIN_KV: u64 = 8 + 4 + 1;

/// The parsed header of a GGUF file: version, metadata, tensor infos and where
/// the data section starts. Tensor data stays in the caller's bytes.
#[derive(Clone, Debug, PartialEq)]
pub struct GgufFile {
    pub version: u32,
    pub metadata: Metadata,
    pub tensors: Vec<TensorInfo>,
    pub alignment: u64,
    /// Absolute file offset of the data section.
    pub data_offset: u64,
    /// Length of the file that was parsed.
    pub file_len: u64,
    tensor_index: HashMap<String, usize>,
}

impl GgufFile {
    /// Parses and validates a whole GGUF file held in `bytes`.
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        Parser::new(bytes).parse()
    }

    /// The tensor named `name`.
    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensor_index.get(name).map(|&i| &self.tensors[i])
    }

    /// The data of `info` within `bytes` (the same bytes that were parsed).
    pub fn tensor_data<'a>(&self, bytes: &'a [u8], info: &TensorInfo) -> Result<&'a [u8]> {
        let oob = || GgufError::TensorOutOfBounds {
            name: info.name.clone(),
            offset: info.offset,
            size: info.size,
            data_len: self.file_len.saturating_sub(self.data_offset),
            file_len: bytes.len() as u64,
        };
        let start = self.data_offset.checked_add(info.offset).ok_or_else(oob)?;
        let end = start.checked_add(info.size).ok_or_else(oob)?;
        let (start, end) = (
            usize::try_from(start).map_err(|_| oob())?,
            usize::try_from(end).map_err(|_| oob())?,
        );
        bytes.get(start..end).ok_or_else(oob)
    }

    /// Total bytes of tensor data.
    pub fn tensor_bytes(&self) -> u64 {
        self.tensors.iter().map(|t| t.size).sum()
    }

    /// Total number of weights.
    pub fn n_elements(&self) -> u64 {
        self.tensors.iter().map(|t| t.n_elements()).sum()
    }
}

struct Parser<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Parser<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Parser { buf, pos: 0 }
    }

    fn remaining(&self) -> u64 {
        (self.buf.len() - self.pos) as u64
    }

    fn take(&mut self, n: u64, what: &'static str) -> Result<&'a [u8]> {
        if n > self.remaining() {
            return Err(GgufError::UnexpectedEof {
                what,
                offset: self.pos as u64,
                needed: n,
                file_len: self.buf.len() as u64,
            });
        }
        let n = n as usize;
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N]> {
        let s = self.take(N as u64, what)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    fn u32(&mut self, what: &'static str) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    fn u64(&mut self, what: &'static str) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    /// Checks that `count` items of at least `min_size` bytes each can fit in
    /// what is left of the file, so a vector of `count` may be allocated.
    fn bounded_count(&self, count: u64, min_size: u64, what: &'static str) -> Result<usize> {
        let remaining = self.remaining();
        match count.checked_mul(min_size) {
            Some(need) if need <= remaining => Ok(count as usize),
            _ => Err(GgufError::CountTooLarge {
                what,
                count,
                remaining,
            }),
        }
    }

    fn string(&mut self, what: &'static str) -> Result<String> {
        let len_offset = self.pos as u64;
        let len = self.u64(what)?;
        if len > self.remaining() {
            return Err(GgufError::StringTooLong {
                len,
                offset: len_offset,
                file_len: self.buf.len() as u64,
            });
        }
        let offset = self.pos as u64;
        let bytes = self.take(len, what)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| GgufError::InvalidUtf8 { offset })
    }

    fn value_type(&mut self, key: &str) -> Result<ValueType> {
        let id = self.u32("metadata value type")?;
        ValueType::from_id(id).ok_or_else(|| GgufError::UnknownValueType {
            key: key.to_string(),
            value_type: id,
        })
    }

    fn value(&mut self, ty: ValueType, key: &str) -> Result<Value> {
        const W: &str = "metadata value";
        Ok(match ty {
            ValueType::U8 => Value::U8(self.array::<1>(W)?[0]),
            ValueType::I8 => Value::I8(i8::from_le_bytes(self.array(W)?)),
            ValueType::U16 => Value::U16(u16::from_le_bytes(self.array(W)?)),
            ValueType::I16 => Value::I16(i16::from_le_bytes(self.array(W)?)),
            ValueType::U32 => Value::U32(self.u32(W)?),
            ValueType::I32 => Value::I32(i32::from_le_bytes(self.array(W)?)),
            ValueType::F32 => Value::F32(f32::from_le_bytes(self.array(W)?)),
            ValueType::Bool => Value::Bool(self.array::<1>(W)?[0] != 0),
            ValueType::String => Value::String(self.string(W)?),
            ValueType::U64 => Value::U64(self.u64(W)?),
            ValueType::I64 => Value::I64(i64::from_le_bytes(self.array(W)?)),
            ValueType::F64 => Value::F64(f64::from_le_bytes(self.array(W)?)),
            ValueType::Array => Value::Array(self.array_value(key, 1)?),
        })
    }

    fn array_value(&mut self, key: &str, depth: usize) -> Result<Array> {
        if depth > MAX_ARRAY_DEPTH {
            return Err(GgufError::ArrayTooDeep {
                key: key.to_string(),
                max_depth: MAX_ARRAY_DEPTH,
            });
        }
        let elem = self.value_type(key)?;
        let count = self.u64("array length")?;
        let n = self.bounded_count(count, elem.min_size(), "array element")?;
        macro_rules! prims {
            ($variant:ident, $t:ty) => {{
                const SZ: usize = std::mem::size_of::<$t>();
                let bytes = self.take((n * SZ) as u64, "array data")?;
                Array::$variant(
                    bytes
                        .chunks_exact(SZ)
                        .map(|c| <$t>::from_le_bytes(c.try_into().expect("chunk of SZ")))
                        .collect(),
                )
            }};
        }
        Ok(match elem {
            ValueType::U8 => Array::U8(self.take(n as u64, "array data")?.to_vec()),
            ValueType::I8 => prims!(I8, i8),
            ValueType::U16 => prims!(U16, u16),
            ValueType::I16 => prims!(I16, i16),
            ValueType::U32 => prims!(U32, u32),
            ValueType::I32 => prims!(I32, i32),
            ValueType::F32 => prims!(F32, f32),
            ValueType::U64 => prims!(U64, u64),
            ValueType::I64 => prims!(I64, i64),
            ValueType::F64 => prims!(F64, f64),
            ValueType::Bool => Array::Bool(
                self.take(n as u64, "array data")?
                    .iter()
                    .map(|&b| b != 0)
                    .collect(),
            ),
            ValueType::String => {
                let mut v = Vec::with_capacity(n);
                for _ in 0..n {
                    v.push(self.string("array string")?);
                }
                Array::String(v)
            }
            ValueType::Array => {
                let mut v = Vec::with_capacity(n);
                for _ in 0..n {
                    v.push(self.array_value(key, depth + 1)?);
                }
                Array::Array(v)
            }
        })
    }

    fn header(&mut self) -> Result<(u32, u64, u64)> {
        if self.buf.len() < 24 {
            // Still report a wrong magic as such when there are 4 bytes.
            if self.buf.len() >= 4 && self.buf[..4] != MAGIC {
                return Err(GgufError::BadMagic {
                    found: self.buf[..4].try_into().expect("4 bytes"),
                });
            }
            return Err(GgufError::TooShort {
                len: self.buf.len() as u64,
            });
        }
        let magic: [u8; 4] = self.array("magic")?;
        if magic != MAGIC {
            return Err(GgufError::BadMagic { found: magic });
        }
        let version = self.u32("version")?;
        if version & 0xFFFF == 0 && version != 0 {
            return Err(GgufError::BigEndian { raw: version });
        }
        if !(2..=3).contains(&version) {
            return Err(GgufError::UnsupportedVersion { version });
        }
        let n_tensors = self.u64("tensor count")?;
        let n_kv = self.u64("metadata count")?;
        Ok((version, n_tensors, n_kv))
    }

    fn parse(mut self) -> Result<GgufFile> {
        let (version, n_tensors, n_kv) = self.header()?;
        let n_kv = self.bounded_count(n_kv, MIN_KV, "metadata key")?;
        let n_tensors = self.bounded_count(n_tensors, MIN_TENSOR_INFO, "tensor info")?;

        let mut metadata = Metadata::new();
        for _ in 0..n_kv {
            let key_offset = self.pos as u64;
            let key = self.string("metadata key")?;
            if key.is_empty() {
                return Err(GgufError::EmptyKey { offset: key_offset });
            }
            if metadata.contains(&key) {
                return Err(GgufError::DuplicateKey { key });
            }
            let ty = self.value_type(&key)?;
            let value = self.value(ty, &key)?;
            metadata.insert(key, value)?;
        }
        let alignment = alignment_of(&metadata)?;

        let mut tensors = Vec::with_capacity(n_tensors);
        let mut tensor_index = HashMap::with_capacity(n_tensors);
        for _ in 0..n_tensors {
            let info = self.tensor_info(alignment)?;
            if tensor_index.contains_key(&info.name) {
                return Err(GgufError::DuplicateTensor { name: info.name });
            }
            tensor_index.insert(info.name.clone(), tensors.len());
            tensors.push(info);
        }

        let file_len = self.buf.len() as u64;
        let data_offset = align_up(self.pos as u64, alignment).unwrap_or(u64::MAX);
        let data_len = file_len.saturating_sub(data_offset);
        check_tensor_ranges(&tensors, data_len, file_len)?;

        Ok(GgufFile {
            version,
            metadata,
            tensors,
            alignment,
            data_offset,
            file_len,
            tensor_index,
        })
    }

    fn tensor_info(&mut self, alignment: u64) -> Result<TensorInfo> {
        let name = self.string("tensor name")?;
        if name.is_empty() {
            return Err(GgufError::EmptyTensorName);
        }
        if name.len() > MAX_NAME_LEN {
            return Err(GgufError::TensorNameTooLong {
                len: name.len(),
                max: MAX_NAME_LEN,
            });
        }
        let n_dims = self.u32("tensor n_dims")?;
        if n_dims == 0 || n_dims as usize > MAX_DIMS {
            return Err(GgufError::BadDimCount {
                name,
                n_dims,
                max: MAX_DIMS,
            });
        }
        let mut shape = Vec::with_capacity(n_dims as usize);
        for _ in 0..n_dims {
            shape.push(self.u64("tensor dimension")?);
        }
        let type_id = self.u32("tensor type")?;
        let offset = self.u64("tensor offset")?;

        if shape.contains(&0) {
            return Err(GgufError::ZeroDim { name, shape });
        }
        let n_elements = shape.iter().try_fold(1u64, |acc, &d| acc.checked_mul(d));
        if !matches!(n_elements, Some(n) if n <= i64::MAX as u64) {
            return Err(GgufError::ShapeOverflow { name, shape });
        }
        let Some(ty) = GgmlType::from_id(type_id) else {
            return Err(GgufError::UnknownTensorType { name, type_id });
        };
        if shape[0] % ty.block_size() as u64 != 0 {
            return Err(GgufError::RowNotBlockAligned {
                name,
                ty,
                ne0: shape[0],
                block_size: ty.block_size(),
            });
        }
        let Some(size) = tensor_size(ty, &shape) else {
            return Err(GgufError::ShapeOverflow { name, shape });
        };
        if offset % alignment != 0 {
            return Err(GgufError::MisalignedTensor {
                name,
                offset,
                alignment,
            });
        }
        Ok(TensorInfo {
            name,
            shape,
            ty,
            offset,
            size,
        })
    }
}

/// `general.alignment`, which must be a non-zero power of two stored as UINT32.
fn alignment_of(metadata: &Metadata) -> Result<u64> {
    match metadata.get(ALIGNMENT_KEY) {
        None => Ok(DEFAULT_ALIGNMENT),
        Some(Value::U32(a)) if a.is_power_of_two() => Ok(u64::from(*a)),
        Some(Value::U32(a)) => Err(GgufError::BadAlignment {
            found: a.to_string(),
        }),
        Some(v) => Err(GgufError::BadAlignment {
            found: v.type_description(),
        }),
    }
}

/// `x` rounded up to a multiple of `align` (a power of two).
pub fn align_up(x: u64, align: u64) -> Option<u64> {
    Some(x.checked_add(align - 1)? & !(align - 1))
}

/// Every tensor lies inside the data section and no two overlap.
fn check_tensor_ranges(tensors: &[TensorInfo], data_len: u64, file_len: u64) -> Result<()> {
    for t in tensors {
        if !matches!(t.offset.checked_add(t.size), Some(end) if end <= data_len) {
            return Err(GgufError::TensorOutOfBounds {
                name: t.name.clone(),
                offset: t.offset,
                size: t.size,
                data_len,
                file_len,
            });
        }
    }
    let mut order: Vec<&TensorInfo> = tensors.iter().collect();
    order.sort_by_key(|t| t.offset);
    for pair in order.windows(2) {
        // Ranges were checked above, so the sum cannot overflow.
        if pair[0].offset + pair[0].size > pair[1].offset {
            return Err(GgufError::OverlappingTensors {
                first: pair[0].name.clone(),
                second: pair[1].name.clone(),
            });
        }
    }
    Ok(())
}
