//! Resolving `owner/repo:QUANT` through the Hugging Face Hub API.

use serde::Deserialize;

use crate::http::{encode_path, is_sha256, Client};
use crate::{Progress, StoreError};

/// Largest model-info document read (repositories with thousands of files
/// stay well under this).
const API_LIMIT: u64 = 32 << 20;

/// A `.gguf` file chosen from a repository.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct HfFile {
    /// Path in the repository.
    pub path: String,
    /// sha256 from the LFS metadata, when the API gave it.
    pub sha256: Option<String>,
    pub size: Option<u64>,
}

#[derive(Deserialize)]
struct ModelInfo {
    #[serde(default)]
    siblings: Vec<Sibling>,
}

#[derive(Deserialize)]
struct Sibling {
    rfilename: String,
    #[serde(default)]
    size: Option<u64>,
    #[serde(default)]
    lfs: Option<Lfs>,
}

#[derive(Deserialize)]
struct Lfs {
    #[serde(default)]
    sha256: Option<String>,
    #[serde(default)]
    size: Option<u64>,
}

/// `{endpoint}/{owner}/{repo}/resolve/main/{path}`.
pub(crate) fn resolve_url(endpoint: &str, owner: &str, repo: &str, path: &str) -> String {
    format!(
        "{}/{owner}/{repo}/resolve/main/{}",
        endpoint.trim_end_matches('/'),
        encode_path(path)
    )
}

/// Lists the repository's files and picks the `.gguf` for `quant`.
pub(crate) fn find_file(
    client: &Client,
    owner: &str,
    repo: &str,
    quant: Option<&str>,
    progress: &dyn Progress,
) -> Result<HfFile, StoreError> {
    let url = format!(
        "{}/api/models/{owner}/{repo}?blobs=true",
        client.opts.hf_endpoint.trim_end_matches('/')
    );
    let body = client.get_small(&url, API_LIMIT, progress)?;
    let info: ModelInfo = serde_json::from_slice(&body).map_err(|e| StoreError::HfRepo {
        repo: format!("{owner}/{repo}"),
        message: format!("unexpected answer from {url}: {e}"),
    })?;
    let files: Vec<HfFile> = info
        .siblings
        .into_iter()
        .filter(|s| s.rfilename.to_ascii_lowercase().ends_with(".gguf"))
        .map(|s| {
            let lfs = s.lfs.unwrap_or(Lfs {
                sha256: None,
                size: None,
            });
            HfFile {
                sha256: lfs
                    .sha256
                    .filter(|h| is_sha256(h))
                    .map(|h| h.to_ascii_lowercase()),
                size: lfs.size.or(s.size),
                path: s.rfilename,
            }
        })
        .collect();
    pick(&format!("{owner}/{repo}"), files, quant)
}

/// The one file for `quant`: among names containing it (case-insensitive),
/// those where it stands as a whole tag (not part of a longer one, so `Q4_0`
/// prefers `x-Q4_0.gguf` over `x-IQ4_0.gguf`) win; without `quant`, the only
/// `.gguf` of the repository.
fn pick(repo: &str, files: Vec<HfFile>, quant: Option<&str>) -> Result<HfFile, StoreError> {
    let names = |v: &[&HfFile]| v.iter().map(|f| f.path.clone()).collect::<Vec<_>>();
    if files.is_empty() {
        return Err(StoreError::HfRepo {
            repo: repo.to_string(),
            message: "it has no .gguf files".to_string(),
        });
    }
    let Some(quant) = quant else {
        if files.len() == 1 {
            return Ok(files.into_iter().next().expect("one file"));
        }
        return Err(StoreError::HfRepo {
            repo: repo.to_string(),
            message: format!(
                "it has {} .gguf files; name one with {repo}:QUANT: {}",
                files.len(),
                names(&files.iter().collect::<Vec<_>>()).join(", ")
            ),
        });
    };
    let q = quant.to_ascii_lowercase();
    let containing: Vec<&HfFile> = files
        .iter()
        .filter(|f| f.path.to_ascii_lowercase().contains(&q))
        .collect();
    let whole: Vec<&HfFile> = containing
        .iter()
        .copied()
        .filter(|f| contains_tag(&f.path.to_ascii_lowercase(), &q))
        .collect();
    let chosen = if whole.is_empty() { containing } else { whole };
    match chosen.as_slice() {
        [one] => Ok((*one).clone()),
        [] => Err(StoreError::HfRepo {
            repo: repo.to_string(),
            message: format!(
                "no .gguf file matches {quant:?}; its .gguf files are: {}",
                names(&files.iter().collect::<Vec<_>>()).join(", ")
            ),
        }),
        many => Err(StoreError::HfRepo {
            repo: repo.to_string(),
            message: format!(
                "{quant:?} matches {} files, name one exactly (or use hf://{repo}/FILE): {}",
                many.len(),
                names(many).join(", ")
            ),
        }),
    }
}

/// Whether `tag` occurs in `name` not flanked by letters, digits or `_`.
fn contains_tag(name: &str, tag: &str) -> bool {
    let word = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
    name.match_indices(tag).any(|(i, _)| {
        !word(name[..i].chars().last()) && !word(name[i + tag.len()..].chars().next())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(names: &[&str]) -> Vec<HfFile> {
        names
            .iter()
            .map(|n| HfFile {
                path: n.to_string(),
                sha256: None,
                size: None,
            })
            .collect()
    }

    #[test]
    fn picks_by_quant() {
        let f = files(&[
            "m-Q4_K_M.gguf",
            "m-Q4_K_S.gguf",
            "m-Q4_0.gguf",
            "m-IQ4_0.gguf",
        ]);
        let got = |q| pick("o/r", f.clone(), Some(q)).map(|f| f.path);
        assert_eq!(got("q4_k_m").unwrap(), "m-Q4_K_M.gguf");
        assert_eq!(got("Q4_0").unwrap(), "m-Q4_0.gguf");
        assert_eq!(got("iq4_0").unwrap(), "m-IQ4_0.gguf");
        let ambiguous = got("Q4_K").unwrap_err().to_string();
        assert!(ambiguous.contains("m-Q4_K_M.gguf") && ambiguous.contains("m-Q4_K_S.gguf"));
        let none = got("Q8_0").unwrap_err().to_string();
        assert!(none.contains("no .gguf file matches"), "{none}");
        assert!(pick("o/r", f.clone(), None).is_err());
        assert_eq!(
            pick("o/r", files(&["only.gguf"]), None).unwrap().path,
            "only.gguf"
        );
        assert!(pick("o/r", vec![], Some("Q4")).is_err());
    }
}
