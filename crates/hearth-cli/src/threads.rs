//! The thread count and kernels the model runs with (`-t`, `--numerics`), shared by the
//! commands that run a model.

use clap::{Args, ValueEnum};
use hearth_model::{Model, Numerics};

/// All cores.
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// `--numerics`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum NumericsArg {
    /// hearth's kernels for this CPU (llama.cpp's math, f32 sums in another order).
    #[default]
    Fast,
    /// llama.cpp's CPU results bit for bit (slower; for comparisons with llama.cpp).
    #[value(name = "llama.cpp", alias = "llama-cpp")]
    LlamaCpp,
}

impl From<NumericsArg> for Numerics {
    fn from(a: NumericsArg) -> Numerics {
        match a {
            NumericsArg::Fast => Numerics::Fast,
            NumericsArg::LlamaCpp => Numerics::LlamaCpp,
        }
    }
}

/// Options of the compute backend.
#[derive(Args, Clone, Debug, Default)]
pub struct ComputeArgs {
    /// Threads (default: all cores).
    #[arg(short = 't', long = "threads")]
    pub threads: Option<usize>,
    /// Kernels: `fast` (default) or `llama.cpp` (reproduce llama.cpp's CPU results exactly).
    #[arg(long, value_enum, default_value = "fast")]
    pub numerics: NumericsArg,
}

impl ComputeArgs {
    /// Applies the options to a loaded model.
    pub fn apply(&self, model: &mut Model) -> anyhow::Result<()> {
        if let Some(n) = self.threads {
            if n == 0 {
                anyhow::bail!("--threads must be at least 1");
            }
            model.set_threads(n);
        }
        model.set_numerics(self.numerics.into());
        Ok(())
    }
}

/// What `--verbose` and `hearth bench` print about the backend: CPU features, the kernel
/// level chosen, and what the weights run on.
pub fn describe(model: &Model) -> String {
    format!(
        "cpu: {}; threads {}; numerics {}; kernels {}",
        hearth_kernels::cpu::describe(),
        model.n_threads(),
        model.numerics().name(),
        model.kernel_summary()
    )
}
