//! Downloading packages with pip (the one registry client every machine has).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::StoreError;

/// Downloads `requirement` (e.g. `pkg==1.0.0`) into `dest` without
/// dependencies; `sdist` asks for the source distribution. Returns the path
/// of the downloaded file.
pub(crate) fn pip_download(
    requirement: &str,
    dest: &Path,
    sdist: bool,
) -> Result<PathBuf, StoreError> {
    std::fs::create_dir_all(dest).map_err(StoreError::io(dest))?;
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".to_string());
    let name = requirement.split("==").next().unwrap_or(requirement);
    let mut cmd = Command::new(&python);
    cmd.args([
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--quiet",
        "--disable-pip-version-check",
    ]);
    if sdist {
        cmd.args(["--no-binary", name]);
    } else {
        cmd.args(["--only-binary", ":all:"]);
    }
    cmd.arg("-d").arg(dest).arg(requirement);
    let command = format!("{python} -m pip download {requirement}");
    let out = cmd.output().map_err(|source| StoreError::Spawn {
        command: command.clone(),
        source,
    })?;
    if !out.status.success() {
        return Err(StoreError::Download {
            command,
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        });
    }
    find_download(dest, name).ok_or_else(|| StoreError::Download {
        command,
        stderr: format!(
            "pip reported success but no file for {name} is in {}",
            dest.display()
        ),
    })
}

/// The file in `dir` whose name is the distribution `name` (dashes and
/// underscores equivalent) followed by a version.
fn find_download(dir: &Path, name: &str) -> Option<PathBuf> {
    let norm = name.replace('-', "_").to_ascii_lowercase();
    std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .map(|n| n.to_ascii_lowercase().replace('-', "_"))
                .is_some_and(|n| n.starts_with(&format!("{norm}_")) && !n.contains(".tmp"))
        })
}
