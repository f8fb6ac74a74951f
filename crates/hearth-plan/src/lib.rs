//! Know before you load: what a GGUF model will cost on this machine, from its header alone.
//!
//! A [`MemoryPlan`] adds up the weights (the tensor table; the whole file ends up resident,
//! mapped or read), the KV cache exactly as `hearth_model::KvCache` holds it (sliding-window
//! layers capped at their window, f16 or Q8_0 rows; see [`kv`]), the compute buffers of a
//! forward pass and a fixed overhead, compares the total with the memory available to the
//! process (`MemAvailable`, the cgroup limit, or `HEARTH_MEM_AVAILABLE`), and says whether it
//! fits, with changes that would make it fit. [`speed::predict`] turns the machine's measured
//! read bandwidth and kernel rates ([`machine`]) into decode and prefill speeds.
//!
//! ```no_run
//! use hearth_plan::{MemoryPlan, PlanRequest, Verdict};
//! let plan = MemoryPlan::for_file("model.gguf".as_ref(), &PlanRequest::default())?;
//! if plan.verdict == Verdict::DoesNotFit {
//!     eprintln!("{}", plan.refusal());
//! }
//! # Ok::<(), hearth_plan::PlanError>(())
//! ```

pub mod compute;
pub mod error;
pub mod kv;
pub mod machine;
pub mod memory;
pub mod plan;
pub mod speed;
pub mod weights;

pub use error::PlanError;
pub use kv::{KvLayer, KvLayout};
pub use machine::MachineProfile;
pub use memory::{Available, ProcMemory, MEM_AVAILABLE_ENV};
pub use plan::{human, MemoryPlan, PlanRequest, Suggestion, Verdict};
pub use speed::SpeedPlan;
pub use weights::WeightsInfo;
