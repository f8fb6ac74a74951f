//! Resumable, verified downloads into a `.part` file.
//!
//! The `.part` file only ever holds a prefix of what the server sent, in
//! order, and a sidecar (`<part>.json`) records which URL it came from, so
//! a later attempt can ask for the rest with `Range: bytes=N-`. The hash is
//! computed while writing (the prefix is hashed once when resuming), and the
//! file is checked against the expected sha256 before the caller moves it
//! into place.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::http::{header, status_failure, Client, Failure};
use crate::sha::hex;
use crate::{Progress, StoreError};

/// What to download, and where to.
pub(crate) struct Target<'a> {
    pub url: &'a str,
    pub part: &'a Path,
    /// The sha256 the result must have, if known before the download.
    pub expected_sha256: Option<&'a str>,
}

/// A complete download, verified against the expected hash if one was
/// known (given, or announced by the server).
pub(crate) struct Downloaded {
    pub sha256: String,
    pub size: u64,
    /// The sha256 a server announced (`X-Linked-Etag`), if any.
    pub linked_sha256: Option<String>,
}

/// The sidecar of a `.part` file.
#[derive(Serialize, Deserialize)]
struct PartInfo {
    url: String,
    /// A strong ETag or Last-Modified of the response the bytes came from,
    /// sent back as `If-Range` so a changed file restarts from zero.
    #[serde(default)]
    validator: Option<String>,
}

/// The sidecar path of a `.part` file.
pub(crate) fn sidecar(part: &Path) -> PathBuf {
    let mut name = part.file_name().unwrap_or_default().to_os_string();
    name.push(".json");
    part.with_file_name(name)
}

/// Removes a `.part` file and its sidecar.
pub(crate) fn discard(part: &Path) {
    let _ = std::fs::remove_file(part);
    let _ = std::fs::remove_file(sidecar(part));
}

/// The `.part` file being written, and the hash of what it holds.
struct Partial {
    file: File,
    path: PathBuf,
    hasher: Sha256,
    len: u64,
}

impl Partial {
    /// Opens `path`, keeping (and hashing) what it holds if `keep`.
    fn open(path: &Path, keep: bool) -> Result<Partial, StoreError> {
        let mut file = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(StoreError::io(path))?;
        let mut p = Partial {
            path: path.to_path_buf(),
            hasher: Sha256::new(),
            len: 0,
            file: file.try_clone().map_err(StoreError::io(path))?,
        };
        if keep {
            let mut buf = vec![0u8; 1 << 20];
            loop {
                let n = file.read(&mut buf).map_err(StoreError::io(path))?;
                if n == 0 {
                    break;
                }
                p.hasher.update(&buf[..n]);
                p.len += n as u64;
            }
        } else {
            p.file.set_len(0).map_err(StoreError::io(path))?;
        }
        p.file
            .seek(SeekFrom::Start(p.len))
            .map_err(StoreError::io(path))?;
        Ok(p)
    }

    fn restart(&mut self) -> Result<(), StoreError> {
        self.file.set_len(0).map_err(StoreError::io(&self.path))?;
        self.file
            .seek(SeekFrom::Start(0))
            .map_err(StoreError::io(&self.path))?;
        self.hasher = Sha256::new();
        self.len = 0;
        Ok(())
    }

    fn append(&mut self, bytes: &[u8]) -> Result<(), StoreError> {
        self.file
            .write_all(bytes)
            .map_err(StoreError::io(&self.path))?;
        self.hasher.update(bytes);
        self.len += bytes.len() as u64;
        Ok(())
    }
}

/// Downloads `t.url` into `t.part`, resuming what a previous attempt left
/// there, retrying as `client.opts` allows, and verifying the sha256
/// (`t.expected_sha256`, else one the server announced). On a hash mismatch
/// the `.part` is deleted; on other failures it is kept for a later resume
/// (unless empty).
pub(crate) fn download(
    client: &Client,
    t: &Target,
    progress: &dyn Progress,
) -> Result<Downloaded, StoreError> {
    let info_path = sidecar(t.part);
    let info: Option<PartInfo> = std::fs::read(&info_path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());
    let same_source = info.as_ref().is_some_and(|i| i.url == t.url);
    let mut partial = Partial::open(t.part, same_source)?;
    let mut validator = info.and_then(|i| i.validator).filter(|_| same_source);
    let mut best = partial.len;
    let mut linked = None;
    let result = client.with_retries(progress, &mut |_| {
        attempt(
            client,
            t,
            &mut partial,
            &mut validator,
            &mut best,
            &mut linked,
            progress,
        )
    });
    progress.finish();
    if let Err(e) = result {
        if partial.len == 0 {
            discard(t.part);
        }
        return Err(e);
    }
    partial
        .file
        .sync_all()
        .map_err(StoreError::io(&partial.path))?;
    let sha256 = hex(&partial.hasher.clone().finalize());
    if let Some(expected) = t.expected_sha256.or(linked.as_deref()) {
        if !sha256.eq_ignore_ascii_case(expected) {
            discard(t.part);
            return Err(StoreError::HashMismatch {
                what: t.url.to_string(),
                expected: expected.to_ascii_lowercase(),
                actual: sha256,
            });
        }
    }
    Ok(Downloaded {
        sha256,
        size: partial.len,
        linked_sha256: linked,
    })
}

/// One request: resume (or start) the transfer and read the body to its end.
fn attempt(
    client: &Client,
    t: &Target,
    partial: &mut Partial,
    validator: &mut Option<String>,
    best: &mut u64,
    linked: &mut Option<String>,
    progress: &dyn Progress,
) -> Result<(), Failure> {
    let offset = partial.len;
    let mut headers = Vec::new();
    if offset > 0 {
        headers.push(("Range", format!("bytes={offset}-")));
        if let Some(v) = validator.as_ref() {
            headers.push(("If-Range", v.clone()));
        }
    }
    let fetched = client.get(t.url, &headers)?;
    if linked.is_none() {
        linked.clone_from(&fetched.linked_sha256);
    }
    let response = fetched.response;
    let io = |e: StoreError| Failure::fatal(e);
    // The length the file has when this response's body is complete.
    let total = match response.status().as_u16() {
        200 => {
            if offset > 0 {
                // The server ignored the range (or the file changed): start over.
                partial.restart().map_err(io)?;
            }
            response.body().content_length()
        }
        206 => match header(&response, "content-range").and_then(|v| content_range(&v)) {
            Some((start, end, total)) if start == offset && end >= start => {
                Some(total.unwrap_or(end + 1))
            }
            got => {
                partial.restart().map_err(io)?;
                let _ = std::fs::remove_file(sidecar(t.part));
                return Err(Failure::retry(StoreError::Network {
                    url: t.url.to_string(),
                    message: format!(
                        "asked for bytes {offset}- and got Content-Range {got:?}; starting over"
                    ),
                }));
            }
        },
        416 if offset > 0 => {
            let total = header(&response, "content-range").and_then(|v| unsatisfied_range(&v));
            if total == Some(offset) {
                // The previous attempt already had every byte.
                return Ok(());
            }
            partial.restart().map_err(io)?;
            return Err(Failure::retry(StoreError::Network {
                url: t.url.to_string(),
                message: format!(
                    "the partial download ({offset} bytes) does not fit the file on the server; starting over"
                ),
            }));
        }
        _ => return Err(status_failure(client, &fetched.url, &response)),
    };
    *validator = header(&response, "etag")
        .filter(|e| !e.starts_with("W/"))
        .or_else(|| header(&response, "last-modified"));
    let info = PartInfo {
        url: t.url.to_string(),
        validator: validator.clone(),
    };
    let info_path = sidecar(t.part);
    let json = serde_json::to_vec(&info).unwrap_or_default();
    std::fs::write(&info_path, json).map_err(|e| io(StoreError::io(&info_path)(e)))?;

    progress.start(total, partial.len);
    let mut reader = response.into_body().into_reader();
    let mut buf = vec![0u8; 256 << 10];
    let read_error = loop {
        match reader.read(&mut buf) {
            Ok(0) => break None,
            Ok(n) => {
                partial.append(&buf[..n]).map_err(io)?;
                progress.advance(n as u64);
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => break Some(e),
        }
    };
    // With a known length, every byte counts (a reset after the last one
    // does not matter); without one, only a clean end of the body does.
    let complete = match total {
        Some(t) => partial.len >= t,
        None => read_error.is_none(),
    };
    if complete {
        if let Some(t) = total.filter(|&t| partial.len > t) {
            return Err(Failure::fatal(StoreError::Network {
                url: fetched.url,
                message: format!("got {} bytes, more than the {t} announced", partial.len),
            }));
        }
        return Ok(());
    }
    let progressed = partial.len > *best;
    *best = (*best).max(partial.len);
    let error = match total {
        Some(expected) => StoreError::Truncated {
            url: t.url.to_string(),
            expected,
            received: partial.len,
        },
        None => StoreError::Network {
            url: t.url.to_string(),
            message: format!(
                "the transfer failed after {} bytes: {}",
                partial.len,
                read_error.map(|e| e.to_string()).unwrap_or_default()
            ),
        },
    };
    Err(Failure {
        error,
        retryable: true,
        retry_after: None,
        progressed,
    })
}

/// `bytes START-END/TOTAL` (TOTAL may be `*`).
fn content_range(v: &str) -> Option<(u64, u64, Option<u64>)> {
    let rest = v.trim().strip_prefix("bytes")?.trim_start();
    let (range, total) = rest.split_once('/')?;
    let (a, b) = range.split_once('-')?;
    let total = match total.trim() {
        "*" => None,
        t => Some(t.parse().ok()?),
    };
    Some((a.trim().parse().ok()?, b.trim().parse().ok()?, total))
}

/// The total in `bytes */TOTAL` (a 416's Content-Range).
fn unsatisfied_range(v: &str) -> Option<u64> {
    let rest = v.trim().strip_prefix("bytes")?.trim_start();
    rest.strip_prefix("*/")?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_content_ranges() {
        assert_eq!(content_range("bytes 10-19/20"), Some((10, 19, Some(20))));
        assert_eq!(content_range("bytes 0-9/*"), Some((0, 9, None)));
        assert_eq!(content_range("bytes */20"), None);
        assert_eq!(content_range("items 0-1/2"), None);
        assert_eq!(unsatisfied_range("bytes */20"), Some(20));
        assert_eq!(unsatisfied_range("bytes 0-1/2"), None);
    }
}
