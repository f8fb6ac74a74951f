//! GGUF v2/v3: a bounded reader, a writer, and ggml tensor type geometry.
//!
//! No compute lives here. Parsing works over a byte slice (usually the
//! memory map made by [`MappedGguf`]); every count and offset read from the
//! file is checked before it is used.

mod error;
mod file_type;
mod ggml_type;
mod mapped;
mod metadata;
mod reader;
mod tensor;
mod value;
mod writer;

pub use error::{GgufError, Result};
pub use file_type::file_type_name;
pub use ggml_type::{GgmlType, QK_K};
pub use mapped::{memlock_limit, LoadMode, MappedGguf};
pub use metadata::Metadata;
pub use reader::{align_up, GgufFile, ALIGNMENT_KEY, DEFAULT_ALIGNMENT, MAGIC, MAX_ARRAY_DEPTH};
pub use tensor::{tensor_size, TensorInfo, MAX_DIMS, MAX_NAME_LEN};
pub use value::{Array, Value, ValueType};
pub use writer::GgufWriter;
