use std::path::PathBuf;

/// Environment variable that overrides the cache directory.
pub const CACHE_ENV: &str = "HEARTH_CACHE";

/// The cache directory: `$HEARTH_CACHE`, else `$XDG_CACHE_HOME/hearth`, else
/// `~/.cache/hearth`.
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os(CACHE_ENV).filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir).join("hearth");
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| ".".into());
    PathBuf::from(home).join(".cache").join("hearth")
}

/// A unique temporary path next to `target`, for write-then-rename.
pub(crate) fn temp_beside(target: &std::path::Path) -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let mut name = target.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".tmp-{}-{nanos}", std::process::id()));
    target.with_file_name(name)
}
