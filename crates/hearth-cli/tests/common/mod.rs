//! Helpers shared by the CLI's integration tests.
#![allow(dead_code)]

pub mod http;

use std::path::{Path, PathBuf};
use std::process::Command;

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `../shared/reference` beside the repository.
pub fn reference_dir() -> PathBuf {
    repo_root().join("../shared/reference")
}

/// Runs python3 with `args`; fails the test with a clear message if Python
/// or the gguf package is missing.
pub fn python(args: &[&std::ffi::OsStr]) -> Vec<u8> {
    let out = Command::new("python3").args(args).output().expect(
        "python3 is needed for the reference checks (pip install -r scripts/requirements.txt)",
    );
    assert!(
        out.status.success(),
        "python3 {:?} failed (is `pip install -r scripts/requirements.txt` done?):\n{}",
        args,
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Runs the `hearth` binary with `args` and returns its stdout.
pub fn hearth(args: &[&std::ffi::OsStr]) -> Vec<u8> {
    let out = Command::new(env!("CARGO_BIN_EXE_hearth"))
        .args(args)
        .output()
        .expect("running hearth");
    assert!(
        out.status.success(),
        "hearth {:?} failed:\n{}",
        args,
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// The default model, fetched on first use.
pub fn gemma() -> PathBuf {
    hearth_store::default_model().expect("fetching the default model")
}

/// Every synthetic reference model in ../shared/reference/synthetic/.
pub fn synthetic_models() -> Vec<PathBuf> {
    let mut out = Vec::new();
    let dir = reference_dir().join("synthetic");
    for arch in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        for f in std::fs::read_dir(arch.unwrap().path()).unwrap() {
            let p = f.unwrap().path();
            if p.extension().is_some_and(|e| e == "gguf") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}
