//! The mmap boundary: a GGUF file mapped read-only (or read into an aligned heap buffer), with
//! checked tensor views.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use memmap2::{Mmap, MmapMut};

use crate::error::{GgufError, Result};
use crate::reader::GgufFile;
use crate::tensor::TensorInfo;

/// How a model file is brought into memory (llama.cpp's `--no-mmap` and `--mlock`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoadMode {
    /// Map the file (pages are read on first use and can be dropped by the kernel under memory
    /// pressure); `false` reads the whole file into heap memory up front.
    pub mmap: bool,
    /// Lock the bytes in RAM with `mlock(2)` so they are never paged out.
    pub mlock: bool,
}

impl Default for LoadMode {
    /// Mapped, not locked.
    fn default() -> LoadMode {
        LoadMode {
            mmap: true,
            mlock: false,
        }
    }
}

/// Where the bytes of the file live.
enum Storage {
    Mapped(Mmap),
    /// The file read into anonymous memory (page-aligned, so every tensor keeps the file's
    /// alignment), backed by transparent huge pages where the kernel allows: a decode step
    /// of a mixture-of-experts model jumps between experts all over the weights, and 2 MiB
    /// pages take most of the TLB misses out of that.
    Heap(MmapMut),
}

impl Storage {
    fn bytes(&self) -> &[u8] {
        match self {
            Storage::Mapped(m) => m,
            Storage::Heap(b) => b,
        }
    }

    /// Anonymous memory of `len` bytes (at least one), advised to use huge pages.
    fn heap(len: usize) -> Result<MmapMut> {
        let buf = MmapMut::map_anon(len.max(1))
            .map_err(|_| GgufError::HeapAlloc { bytes: len as u64 })?;
        #[cfg(target_os = "linux")]
        {
            // A hint: without THP support the pages are simply 4 KiB.
            let _ = buf.advise(memmap2::Advice::HugePage);
        }
        Ok(buf)
    }
}

/// The soft `RLIMIT_MEMLOCK` in bytes; `None` when unlimited or unknown.
pub fn memlock_limit() -> Option<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one `rlimit` to the pointer, which is valid for the call.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut lim) };
    (rc == 0 && lim.rlim_cur != libc::RLIM_INFINITY).then_some(lim.rlim_cur)
}

fn mlock_error(bytes: usize, source: std::io::Error) -> GgufError {
    GgufError::Mlock {
        bytes: bytes as u64,
        limit: memlock_limit(),
        source,
    }
}

/// A GGUF file in memory: mapped (the default; tensor data is handed out as slices of the map,
/// nothing is copied) or read into an aligned heap buffer.
pub struct MappedGguf {
    path: PathBuf,
    storage: Storage,
    file: GgufFile,
    mode: LoadMode,
}

impl MappedGguf {
    /// Maps and parses the file at `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        Self::open_with(path, LoadMode::default())
    }

    /// Maps (or reads, with `mode.mmap == false`) and parses the file at `path`, then locks its
    /// bytes in RAM if `mode.mlock` asks for it. A failed lock is an error
    /// ([`GgufError::Mlock`], naming `RLIMIT_MEMLOCK` and its value).
    pub fn open_with(path: impl AsRef<Path>, mode: LoadMode) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let mut f = File::open(&path)?;
        let storage = if mode.mmap {
            // SAFETY: the map is read-only and private to this process. Another
            // process truncating the file while it is mapped would fault on
            // access (SIGBUS); like llama.cpp and every mmap-based loader we accept
            // that models are not modified while in use. All bounds are checked
            // against the length seen at map time before any slice is made.
            let mmap = unsafe { Mmap::map(&f)? };
            Storage::Mapped(mmap)
        } else {
            let len = f.metadata()?.len();
            let len = usize::try_from(len).map_err(|_| GgufError::HeapAlloc { bytes: len })?;
            let mut buf = Storage::heap(len)?;
            f.read_exact(&mut buf[..len])?;
            Storage::Heap(buf)
        };
        let file = GgufFile::parse(storage.bytes())?;
        let me = MappedGguf {
            path,
            storage,
            file,
            mode,
        };
        if mode.mlock {
            me.lock()?;
        }
        Ok(me)
    }

    fn lock(&self) -> Result<()> {
        match &self.storage {
            Storage::Mapped(m) => m.lock().map_err(|e| mlock_error(m.len(), e)),
            Storage::Heap(b) => b.lock().map_err(|e| mlock_error(b.len(), e)),
        }
    }

    /// How the file was loaded.
    pub fn load_mode(&self) -> LoadMode {
        self.mode
    }

    /// The parsed header.
    pub fn file(&self) -> &GgufFile {
        &self.file
    }

    /// Where the file was mapped from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The whole file.
    pub fn bytes(&self) -> &[u8] {
        self.storage.bytes()
    }

    /// The data of the tensor named `name`.
    pub fn tensor_data(&self, name: &str) -> Result<(&TensorInfo, &[u8])> {
        let info = self
            .file
            .tensor(name)
            .ok_or_else(|| GgufError::MissingTensor {
                name: name.to_string(),
            })?;
        Ok((info, self.file.tensor_data(self.storage.bytes(), info)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{GgmlType, GgufWriter};

    fn sample_file(tag: &str) -> PathBuf {
        let path =
            std::env::temp_dir().join(format!("hearth-gguf-{tag}-{}.gguf", std::process::id()));
        let mut w = GgufWriter::new();
        let a: Vec<u8> = (0..64u32).flat_map(|i| (i as f32).to_le_bytes()).collect();
        w.add_tensor("a", GgmlType::F32, &[64], a).unwrap();
        w.add_tensor("b", GgmlType::Q8_0, &[32], vec![7u8; 34])
            .unwrap();
        w.write_to(File::create(&path).unwrap()).unwrap();
        path
    }

    /// Reading the file into the heap gives the same bytes and tensors as mapping it, at a
    /// 64-byte-aligned address.
    #[test]
    fn heap_copy_equals_the_map() {
        let path = sample_file("heap");
        let mapped = MappedGguf::open(&path).unwrap();
        let heap = MappedGguf::open_with(
            &path,
            LoadMode {
                mmap: false,
                mlock: false,
            },
        )
        .unwrap();
        std::fs::remove_file(&path).unwrap();
        assert!(mapped.load_mode().mmap && !heap.load_mode().mmap);
        assert_eq!(mapped.bytes(), heap.bytes());
        // Page-aligned, as the map: every tensor keeps the file's alignment.
        assert_eq!(heap.bytes().as_ptr() as usize % 4096, 0);
        for name in ["a", "b"] {
            assert_eq!(
                mapped.tensor_data(name).unwrap().1,
                heap.tensor_data(name).unwrap().1
            );
        }
        assert_eq!(
            &heap.tensor_data("a").unwrap().1[4..8],
            &1.0f32.to_le_bytes()
        );
    }

    /// Locking works, or fails with the error that names RLIMIT_MEMLOCK.
    #[test]
    fn mlock_locks_or_explains() {
        let path = sample_file("mlock");
        for mmap in [true, false] {
            match MappedGguf::open_with(&path, LoadMode { mmap, mlock: true }) {
                Ok(g) => assert!(g.load_mode().mlock),
                Err(e @ GgufError::Mlock { .. }) => {
                    let text = e.to_string();
                    assert!(
                        text.contains("RLIMIT_MEMLOCK") && text.contains("ulimit -l"),
                        "{text}"
                    );
                }
                Err(e) => panic!("{e}"),
            }
        }
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn memlock_error_names_the_limit() {
        let e = GgufError::Mlock {
            bytes: 1 << 20,
            limit: Some(8 << 20),
            source: std::io::Error::from_raw_os_error(libc::ENOMEM),
        };
        let text = e.to_string();
        assert!(text.contains("mlock of 1048576 bytes failed"), "{text}");
        assert!(
            text.contains("RLIMIT_MEMLOCK (`ulimit -l`) is 8388608 bytes (8192 KiB)"),
            "{text}"
        );
        let unlimited = GgufError::Mlock {
            bytes: 1,
            limit: None,
            source: std::io::Error::from_raw_os_error(libc::EPERM),
        };
        assert!(unlimited.to_string().contains("is unlimited"));
    }
}
