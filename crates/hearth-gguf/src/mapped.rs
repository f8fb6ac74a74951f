//! The mmap boundary: a GGUF file mapped read-only, with checked tensor views.

use std::fs::File;
use std::path::{Path, PathBuf};

use memmap2::Mmap;

use crate::error::{GgufError, Result};
use crate::reader::GgufFile;
use crate::tensor::TensorInfo;

/// A GGUF file mapped into memory. Tensor data is handed out as slices of the
/// map; nothing is copied.
pub struct MappedGguf {
    path: PathBuf,
    mmap: Mmap,
    file: GgufFile,
}

impl MappedGguf {
    /// Maps and parses the file at `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let f = File::open(&path)?;
        // SAFETY: the map is read-only and private to this process. Another
        // process truncating the file while it is mapped would fault on
        // access (SIGBUS); like llama.cpp and every mmap-based loader we accept
        // that models are not modified while in use. All bounds are checked
        // against the length seen at map time before any slice is made.
        let mmap = unsafe { Mmap::map(&f)? };
        let file = GgufFile::parse(&mmap)?;
        Ok(MappedGguf { path, mmap, file })
    }

    /// The parsed header.
    pub fn file(&self) -> &GgufFile {
        &self.file
    }

    /// Where the file was mapped from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The whole mapped file.
    pub fn bytes(&self) -> &[u8] {
        &self.mmap
    }

    /// The data of the tensor named `name`.
    pub fn tensor_data(&self, name: &str) -> Result<(&TensorInfo, &[u8])> {
        let info = self
            .file
            .tensor(name)
            .ok_or_else(|| GgufError::MissingTensor {
                name: name.to_string(),
            })?;
        Ok((info, self.file.tensor_data(&self.mmap, info)?))
    }
}
