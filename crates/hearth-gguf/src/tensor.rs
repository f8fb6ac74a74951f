//! Tensor infos: name, shape, type and where the data lies.

use crate::GgmlType;

/// Maximum number of dimensions of a ggml tensor (`GGML_MAX_DIMS`).
pub const MAX_DIMS: usize = 4;
/// Maximum tensor name length in bytes (`GGML_MAX_NAME` - 1 for the NUL).
pub const MAX_NAME_LEN: usize = 63;

/// One tensor of a GGUF file. `shape` is in ggml order: `shape[0]` is the
/// row length (`ne[0]`), the fastest-varying dimension.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorInfo {
    pub name: String,
    pub shape: Vec<u64>,
    pub ty: GgmlType,
    /// Offset from the start of the data section.
    pub offset: u64,
    /// Bytes of data, derived from shape and type.
    pub size: u64,
}

impl TensorInfo {
    /// Total number of elements.
    pub fn n_elements(&self) -> u64 {
        self.shape.iter().product()
    }

    /// Number of rows (elements / row length).
    pub fn n_rows(&self) -> u64 {
        self.shape.iter().skip(1).product()
    }

    /// Bytes of one row.
    pub fn row_bytes(&self) -> u64 {
        self.size / self.n_rows().max(1)
    }
}

/// Bytes of a tensor of type `ty` and `shape`, with checked arithmetic;
/// `None` when a dimension is zero, the row is not block-aligned or the size
/// overflows (the caller reports which).
pub fn tensor_size(ty: GgmlType, shape: &[u64]) -> Option<u64> {
    let (&ne0, rest) = shape.split_first()?;
    let row = ty.row_bytes(ne0)?;
    rest.iter().try_fold(row, |acc, &d| acc.checked_mul(d))
}
