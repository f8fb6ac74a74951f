//! Conversion between f32 and the ggml tensor types (scalar reference paths).
//!
//! [`dequantize`] and [`quantize`] work on whole blocks: `src`/`dst` must
//! hold the same number of blocks of `ty` (see [`block_geometry`]). Block bytes are read
//! without alignment assumptions and no byte content can make them panic.
//!
//! Exactness, per type:
//! - dequantization of every type gguf-py's `gguf.quants` knows is
//!   bit-identical to its numpy code (same f32 operations in the same
//!   order); Q8_1 and Q8_K (absent there) compute ggml's `qs[j] * d`;
//! - quantization of F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, TQ1_0,
//!   TQ2_0 and MXFP4 is bit-identical to `gguf.quants.quantize`;
//! - quantization of Q8_1, Q2_K..Q6_K, Q8_K, IQ4_NL, IQ4_XS and NVFP4 is
//!   ggml's reference quantizer without importance matrix (the path
//!   `llama-quantize` takes), byte-identical to it;
//! - [`quantize_weighted`] is ggml's importance-weighted path
//!   (`quantize_row_*_impl`, llama-quantize `--imatrix`) for Q4_0, Q4_1,
//!   Q5_0, Q5_1, Q2_K..Q6_K, IQ4_NL and IQ4_XS, byte-identical to it
//!   (checked end to end against llama-quantize in crates/hearth-quantize).

mod block;
pub(crate) mod float;
mod fp4;
mod iq;
pub(crate) mod iq4;
pub(crate) mod iq_grids;
pub(crate) mod k_quants;
pub(crate) mod legacy;
mod numeric;
mod scale_search;
mod ternary;
mod weighted;

use std::fmt;

use hearth_gguf::GgmlType;

pub use block::Block;
use block::{dequantize_blocks, quantize_blocks};
pub use fp4::{BlockMXFP4, BlockNVFP4};
pub use iq::{BlockIQ1M, BlockIQ1S, BlockIQ2S, BlockIQ2XS, BlockIQ2XXS, BlockIQ3S, BlockIQ3XXS};
pub use iq4::{BlockIQ4NL, BlockIQ4XS};
pub use k_quants::{BlockQ2K, BlockQ3K, BlockQ4K, BlockQ5K, BlockQ6K, BlockQ8K};
pub use legacy::{BlockQ4_0, BlockQ4_1, BlockQ5_0, BlockQ5_1, BlockQ8_0, BlockQ8_1};
pub use numeric::{bf16_to_f32, f16_to_f32, f32_to_bf16, f32_to_f16, f32_to_f16_ggml};
pub use ternary::{BlockTQ1_0, BlockTQ2_0};

/// The direction of a conversion, for error messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    /// Type -> f32.
    Dequantize,
    /// f32 -> type.
    Quantize,
    /// Matrix multiplication ([`crate::matmul`]).
    Matmul,
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Op::Dequantize => "dequantization",
            Op::Quantize => "quantization",
            Op::Matmul => "matrix multiplication",
        })
    }
}

/// Why a conversion was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum QuantError {
    /// `bytes` and `values` are not the same whole number of blocks.
    #[error(
        "{ty}: {bytes} bytes and {values} values are not the same whole number of blocks \
         ({block_values} values in {block_bytes} bytes per block)"
    )]
    LengthMismatch {
        /// The tensor type.
        ty: GgmlType,
        /// Length of the byte side.
        bytes: usize,
        /// Length of the f32 side.
        values: usize,
        /// Values per block of `ty`.
        block_values: usize,
        /// Bytes per block of `ty`.
        block_bytes: usize,
    },
    /// The conversion is not implemented for this type.
    #[error("{op} is not implemented for {ty}")]
    Unsupported {
        /// The tensor type.
        ty: GgmlType,
        /// The refused direction.
        op: Op,
    },
    /// A matmul operand has the wrong number of elements.
    #[error("{what}: expected {expected} elements, got {got}")]
    Shape {
        /// Which operand (`"weight bytes"`, `"x"`, `"out"`).
        what: &'static str,
        /// The length the shapes call for (`usize::MAX` if it overflows).
        expected: usize,
        /// The length given.
        got: usize,
    },
    /// A weight row is not a whole number of blocks.
    #[error("{ty}: row length {ne0} is not a multiple of the block size {block_values}")]
    RowNotBlocks {
        /// The tensor type.
        ty: GgmlType,
        /// Weights per row.
        ne0: usize,
        /// Weights per block of `ty`.
        block_values: usize,
    },
    /// The requested kernel level needs CPU features this machine lacks.
    #[error("kernel level {requested} is not supported by this CPU (best: {detected})")]
    LevelUnsupported {
        /// The level asked for.
        requested: crate::cpu::CpuLevel,
        /// The best level this CPU supports.
        detected: crate::cpu::CpuLevel,
    },
}

type DequantizeFn = fn(&[u8], &mut [f32]);
type QuantizeFn = fn(&[f32], &mut [u8]);

fn dequantizer(ty: GgmlType) -> Option<DequantizeFn> {
    use GgmlType as T;
    let f: DequantizeFn = match ty {
        T::F32 => float::dequantize_row_f32,
        T::F16 => float::dequantize_row_f16,
        T::BF16 => float::dequantize_row_bf16,
        T::Q4_0 => |s, d| dequantize_blocks(s, d, legacy::dequantize_q4_0),
        T::Q4_1 => |s, d| dequantize_blocks(s, d, legacy::dequantize_q4_1),
        T::Q5_0 => |s, d| dequantize_blocks(s, d, legacy::dequantize_q5_0),
        T::Q5_1 => |s, d| dequantize_blocks(s, d, legacy::dequantize_q5_1),
        T::Q8_0 => |s, d| dequantize_blocks(s, d, legacy::dequantize_q8_0),
        T::Q8_1 => |s, d| dequantize_blocks(s, d, legacy::dequantize_q8_1),
        T::Q2_K => |s, d| dequantize_blocks(s, d, k_quants::dequantize_q2_k),
        T::Q3_K => |s, d| dequantize_blocks(s, d, k_quants::dequantize_q3_k),
        T::Q4_K => |s, d| dequantize_blocks(s, d, k_quants::dequantize_q4_k),
        T::Q5_K => |s, d| dequantize_blocks(s, d, k_quants::dequantize_q5_k),
        T::Q6_K => |s, d| dequantize_blocks(s, d, k_quants::dequantize_q6_k),
        T::Q8_K => |s, d| dequantize_blocks(s, d, k_quants::dequantize_q8_k),
        T::IQ2_XXS => |s, d| dequantize_blocks(s, d, iq::dequantize_iq2_xxs),
        T::IQ2_XS => |s, d| dequantize_blocks(s, d, iq::dequantize_iq2_xs),
        T::IQ2_S => |s, d| dequantize_blocks(s, d, iq::dequantize_iq2_s),
        T::IQ3_XXS => |s, d| dequantize_blocks(s, d, iq::dequantize_iq3_xxs),
        T::IQ3_S => |s, d| dequantize_blocks(s, d, iq::dequantize_iq3_s),
        T::IQ1_S => |s, d| dequantize_blocks(s, d, iq::dequantize_iq1_s),
        T::IQ1_M => |s, d| dequantize_blocks(s, d, iq::dequantize_iq1_m),
        T::IQ4_NL => |s, d| dequantize_blocks(s, d, iq4::dequantize_iq4_nl),
        T::IQ4_XS => |s, d| dequantize_blocks(s, d, iq4::dequantize_iq4_xs),
        T::TQ1_0 => |s, d| dequantize_blocks(s, d, ternary::dequantize_tq1_0),
        T::TQ2_0 => |s, d| dequantize_blocks(s, d, ternary::dequantize_tq2_0),
        T::MXFP4 => |s, d| dequantize_blocks(s, d, fp4::dequantize_mxfp4),
        T::NVFP4 => |s, d| dequantize_blocks(s, d, fp4::dequantize_nvfp4),
        T::I8 | T::I16 | T::I32 | T::I64 | T::F64 | T::Q1_0 => return None,
    };
    Some(f)
}

fn quantizer(ty: GgmlType) -> Option<QuantizeFn> {
    use GgmlType as T;
    let f: QuantizeFn = match ty {
        T::F32 => float::quantize_row_f32,
        T::F16 => float::quantize_row_f16,
        T::BF16 => float::quantize_row_bf16,
        T::Q4_0 => |s, d| quantize_blocks(s, d, legacy::quantize_q4_0),
        T::Q4_1 => |s, d| quantize_blocks(s, d, legacy::quantize_q4_1),
        T::Q5_0 => |s, d| quantize_blocks(s, d, legacy::quantize_q5_0),
        T::Q5_1 => |s, d| quantize_blocks(s, d, legacy::quantize_q5_1),
        T::Q8_0 => |s, d| quantize_blocks(s, d, legacy::quantize_q8_0),
        T::Q8_1 => |s, d| quantize_blocks(s, d, legacy::quantize_q8_1),
        T::Q2_K => |s, d| quantize_blocks(s, d, k_quants::quantize_q2_k),
        T::Q3_K => |s, d| quantize_blocks(s, d, k_quants::quantize_q3_k),
        T::Q4_K => |s, d| quantize_blocks(s, d, k_quants::quantize_q4_k),
        T::Q5_K => |s, d| quantize_blocks(s, d, k_quants::quantize_q5_k),
        T::Q6_K => |s, d| quantize_blocks(s, d, k_quants::quantize_q6_k),
        T::Q8_K => |s, d| quantize_blocks(s, d, k_quants::quantize_q8_k),
        T::IQ4_NL => |s, d| quantize_blocks(s, d, |x| iq4::quantize_iq4_nl(x, None)),
        T::IQ4_XS => |s, d| quantize_blocks(s, d, |x| iq4::quantize_iq4_xs(x, None)),
        T::TQ1_0 => |s, d| quantize_blocks(s, d, ternary::quantize_tq1_0),
        T::TQ2_0 => |s, d| quantize_blocks(s, d, ternary::quantize_tq2_0),
        T::MXFP4 => |s, d| quantize_blocks(s, d, fp4::quantize_mxfp4),
        T::NVFP4 => |s, d| quantize_blocks(s, d, fp4::quantize_nvfp4),
        T::IQ2_XXS
        | T::IQ2_XS
        | T::IQ2_S
        | T::IQ3_XXS
        | T::IQ3_S
        | T::IQ1_S
        | T::IQ1_M
        | T::I8
        | T::I16
        | T::I32
        | T::I64
        | T::F64
        | T::Q1_0 => return None,
    };
    Some(f)
}

/// Whether [`dequantize`] handles `ty`.
pub fn supports_dequantize(ty: GgmlType) -> bool {
    dequantizer(ty).is_some()
}

/// Whether [`quantize`] handles `ty`.
pub fn supports_quantize(ty: GgmlType) -> bool {
    quantizer(ty).is_some()
}

/// `(values, bytes)` of one block of `ty` as ggml lays it out (the size of
/// the block struct). This is [`GgmlType::block_size`] /
/// [`GgmlType::type_size`] except for Q8_1, whose ggml block is 36 bytes
/// (`sizeof(block_q8_1)`) while gguf-py's `GGML_QUANT_SIZES` says 40.
pub fn block_geometry(ty: GgmlType) -> (usize, usize) {
    fn of<B: Block>() -> (usize, usize) {
        (B::VALUES, B::BYTES)
    }
    use GgmlType as T;
    match ty {
        T::Q4_0 => of::<BlockQ4_0>(),
        T::Q4_1 => of::<BlockQ4_1>(),
        T::Q5_0 => of::<BlockQ5_0>(),
        T::Q5_1 => of::<BlockQ5_1>(),
        T::Q8_0 => of::<BlockQ8_0>(),
        T::Q8_1 => of::<BlockQ8_1>(),
        T::Q2_K => of::<BlockQ2K>(),
        T::Q3_K => of::<BlockQ3K>(),
        T::Q4_K => of::<BlockQ4K>(),
        T::Q5_K => of::<BlockQ5K>(),
        T::Q6_K => of::<BlockQ6K>(),
        T::Q8_K => of::<BlockQ8K>(),
        T::IQ2_XXS => of::<BlockIQ2XXS>(),
        T::IQ2_XS => of::<BlockIQ2XS>(),
        T::IQ2_S => of::<BlockIQ2S>(),
        T::IQ3_XXS => of::<BlockIQ3XXS>(),
        T::IQ3_S => of::<BlockIQ3S>(),
        T::IQ1_S => of::<BlockIQ1S>(),
        T::IQ1_M => of::<BlockIQ1M>(),
        T::IQ4_NL => of::<BlockIQ4NL>(),
        T::IQ4_XS => of::<BlockIQ4XS>(),
        T::TQ1_0 => of::<BlockTQ1_0>(),
        T::TQ2_0 => of::<BlockTQ2_0>(),
        T::MXFP4 => of::<BlockMXFP4>(),
        T::NVFP4 => of::<BlockNVFP4>(),
        T::F32 | T::F16 | T::BF16 | T::I8 | T::I16 | T::I32 | T::I64 | T::F64 | T::Q1_0 => {
            (ty.block_size(), ty.type_size())
        }
    }
}

/// Checks that `bytes` and `values` are the same whole number of blocks.
fn check_lengths(ty: GgmlType, bytes: usize, values: usize) -> Result<(), QuantError> {
    let (bv, bb) = block_geometry(ty);
    if values.is_multiple_of(bv) && bytes.is_multiple_of(bb) && values / bv == bytes / bb {
        Ok(())
    } else {
        Err(QuantError::LengthMismatch {
            ty,
            bytes,
            values,
            block_values: bv,
            block_bytes: bb,
        })
    }
}

/// Decodes the blocks of `ty` in `src` into `dst`
/// (`dst.len() == n_blocks * values`, `src.len() == n_blocks * bytes`, with
/// `(values, bytes) = block_geometry(ty)`).
pub fn dequantize(ty: GgmlType, src: &[u8], dst: &mut [f32]) -> Result<(), QuantError> {
    let f = dequantizer(ty).ok_or(QuantError::Unsupported {
        ty,
        op: Op::Dequantize,
    })?;
    check_lengths(ty, src.len(), dst.len())?;
    f(src, dst);
    Ok(())
}

/// Encodes `src` as blocks of `ty` into `dst`
/// (`src.len() == n_blocks * values`, `dst.len() == n_blocks * bytes`, with
/// `(values, bytes) = block_geometry(ty)`).
pub fn quantize(ty: GgmlType, src: &[f32], dst: &mut [u8]) -> Result<(), QuantError> {
    let f = quantizer(ty).ok_or(QuantError::Unsupported {
        ty,
        op: Op::Quantize,
    })?;
    check_lengths(ty, dst.len(), src.len())?;
    f(src, dst);
    Ok(())
}

/// Whether [`quantize_weighted`] handles `ty` (the types whose ggml
/// quantizer reads an importance matrix).
pub fn supports_weighted(ty: GgmlType) -> bool {
    weighted::supports(ty)
}

/// Encodes rows of `n_per_row` weights as `ty` the way ggml's
/// `quantize_<type>(src, dst, nrows, n_per_row, quant_weights)` does with
/// importance weights `imatrix` (one per column, `imatrix.len() == n_per_row`):
/// byte-identical to `ggml_quantize_chunk` given the same `quant_weights`.
pub fn quantize_weighted(
    ty: GgmlType,
    src: &[f32],
    dst: &mut [u8],
    n_per_row: usize,
    imatrix: &[f32],
) -> Result<(), QuantError> {
    let (bv, bb) = block_geometry(ty);
    if !weighted::supports(ty) {
        return Err(QuantError::Unsupported {
            ty,
            op: Op::Quantize,
        });
    }
    check_lengths(ty, dst.len(), src.len())?;
    if n_per_row == 0 || !n_per_row.is_multiple_of(bv) || !src.len().is_multiple_of(n_per_row) {
        return Err(QuantError::RowNotBlocks {
            ty,
            ne0: n_per_row,
            block_values: bv,
        });
    }
    if imatrix.len() != n_per_row {
        return Err(QuantError::Shape {
            what: "imatrix",
            expected: n_per_row,
            got: imatrix.len(),
        });
    }
    let row_bytes = n_per_row / bv * bb;
    for (x, y) in src
        .chunks_exact(n_per_row)
        .zip(dst.chunks_exact_mut(row_bytes))
    {
        weighted::quantize_row(ty, x, y, imatrix);
    }
    Ok(())
}

#[cfg(test)]
mod tests;
