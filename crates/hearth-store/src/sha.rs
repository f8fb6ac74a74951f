use std::io::Read;
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::StoreError;

/// Lower-case hex sha256 of a digest.
pub(crate) fn hex(digest: &[u8]) -> String {
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// The sha256 of the file at `path`, as lower-case hex.
pub fn sha256_file(path: &Path) -> Result<String, StoreError> {
    let mut f = std::fs::File::open(path).map_err(StoreError::io(path))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(StoreError::io(path))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex(&h.finalize()))
}

/// Checks `actual` against `expected`.
pub(crate) fn check(what: &str, expected: &str, actual: String) -> Result<(), StoreError> {
    if actual == expected {
        Ok(())
    } else {
        Err(StoreError::HashMismatch {
            what: what.to_string(),
            expected: expected.to_string(),
            actual,
        })
    }
}
