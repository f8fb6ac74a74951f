//! The thread count and kernel level the model runs with.

use anyhow::Result;

/// All cores.
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The kernel level in use (scalar until the SIMD kernels are wired in).
pub fn kernel_level() -> &'static str {
    "scalar"
}

/// Runs the model with `n` threads.
pub fn set_threads(n: usize) -> Result<()> {
    if n != default_threads() {
        anyhow::bail!(
            "this build runs the model with {} threads only",
            default_threads()
        );
    }
    Ok(())
}
