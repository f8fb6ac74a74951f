//! Model names: the file stem of a model in `<store>/models/`.

use std::fmt;

use crate::StoreError;

/// Longest accepted model name, in bytes.
pub const MAX_NAME_LEN: usize = 128;

/// A checked model name: only `[A-Za-z0-9._-]`, not empty, no leading `.`
/// or `-`, no `..`, no `.gguf` suffix, at most [`MAX_NAME_LEN`] bytes. It is
/// safe to join onto a directory: it never names a path outside it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ModelName(String);

impl ModelName {
    /// Checks a name given by the user.
    pub fn parse(name: &str) -> Result<ModelName, StoreError> {
        let bad = |reason: &str| StoreError::InvalidName {
            name: name.to_string(),
            reason: reason.to_string(),
        };
        if name.is_empty() {
            return Err(bad("it is empty"));
        }
        if name.starts_with('/') || name.starts_with('\\') {
            return Err(bad("it is an absolute path; a name is a plain file stem"));
        }
        if name.contains('/') || name.contains('\\') {
            return Err(bad("it contains a path separator"));
        }
        if let Some(c) = name.chars().find(|&c| !allowed(c)) {
            return Err(bad(&format!(
                "it contains {c:?}; names use only A-Z a-z 0-9 . _ -"
            )));
        }
        if name.starts_with('.') {
            return Err(bad("it starts with '.'"));
        }
        if name.contains("..") {
            return Err(bad("it contains '..'"));
        }
        if name.starts_with('-') {
            return Err(bad("it starts with '-'"));
        }
        if name.len() > MAX_NAME_LEN {
            return Err(bad(&format!("it is longer than {MAX_NAME_LEN} bytes")));
        }
        if name.to_ascii_lowercase().ends_with(".gguf") {
            return Err(bad(
                "it ends with .gguf; give the name without the extension",
            ));
        }
        Ok(ModelName(name.to_string()))
    }

    /// A name made from arbitrary text (a repository or file name):
    /// lower-cased, a trailing `.gguf` dropped, other characters mapped to
    /// `-`, then checked. `None` when nothing usable is left.
    pub fn sanitize(raw: &str) -> Option<ModelName> {
        let mut s = raw.trim().to_ascii_lowercase();
        while let Some(stem) = s.strip_suffix(".gguf") {
            s = stem.to_string();
        }
        let mut out = String::with_capacity(s.len());
        for c in s.chars() {
            let c = if allowed(c) { c } else { '-' };
            let prev = out.chars().last();
            if (c == '-' && prev == Some('-')) || (c == '.' && prev == Some('.')) {
                continue;
            }
            out.push(c);
        }
        let mut out = out
            .trim_matches(|c| c == '.' || c == '-' || c == '_')
            .to_string();
        if out.len() > MAX_NAME_LEN {
            out.truncate(MAX_NAME_LEN);
            out = out.trim_end_matches(['.', '-', '_']).to_string();
        }
        ModelName::parse(&out).ok()
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn allowed(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')
}

impl fmt::Display for ModelName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for ModelName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_plain_names() {
        for n in ["tiny", "llama-3.2-1b-q4_k_m", "A.b_c-1", "x"] {
            assert_eq!(ModelName::parse(n).unwrap().as_str(), n);
        }
    }

    #[test]
    fn rejects_paths_and_hidden_names() {
        for n in [
            "", "../x", "/abs", ".hidden", "a/b", "a\\b", "..", "a..b", "-x", "x y", "x.gguf", "é",
        ] {
            assert!(
                matches!(ModelName::parse(n), Err(StoreError::InvalidName { .. })),
                "{n:?} accepted"
            );
        }
        let long = "a".repeat(MAX_NAME_LEN + 1);
        assert!(ModelName::parse(&long).is_err());
    }

    #[test]
    fn sanitizes_derived_names() {
        let s = |x: &str| ModelName::sanitize(x).map(|n| n.0);
        assert_eq!(
            s("Llama-3.2-1B-Q4_K_M.gguf").as_deref(),
            Some("llama-3.2-1b-q4_k_m")
        );
        assert_eq!(s("../../etc/passwd").as_deref(), Some("etc-passwd"));
        assert_eq!(s(".hidden file").as_deref(), Some("hidden-file"));
        assert_eq!(s("a...b").as_deref(), Some("a.b"));
        assert_eq!(s("x.gguf.gguf").as_deref(), Some("x"));
        assert_eq!(s("///").as_deref(), None);
    }
}
