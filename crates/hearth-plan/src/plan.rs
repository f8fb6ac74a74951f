//! [`MemoryPlan`]: what loading a model with given options will cost, whether it fits, and
//! what to change when it does not.

use std::path::Path;

use hearth_gguf::{align_up, tensor_size, LoadMode, MappedGguf};
use hearth_model::{KvType, ModelConfig, N_UBATCH};
use hearth_quantize::{FileType, TypeOptions};
use serde::Serialize;

use crate::compute::{compute_bytes, overhead_bytes};
use crate::error::PlanError;
use crate::kv::{kv_type_name, KvLayout};
use crate::memory::Available;
use crate::speed::SpeedPlan;
use crate::weights::WeightsInfo;

/// What will be loaded, and how.
#[derive(Clone, Debug)]
pub struct PlanRequest {
    /// Context per sequence (`None`: the model's training context, at most 4096, as `hearth
    /// run` and `hearth serve` choose it).
    pub n_ctx: Option<usize>,
    /// Sequences with their own cache (`--parallel`).
    pub n_slots: usize,
    pub kv_type: KvType,
    pub load: LoadMode,
    /// Most tokens of one forward pass (prompt micro-batches are at most [`N_UBATCH`]).
    pub n_batch: usize,
}

impl Default for PlanRequest {
    fn default() -> PlanRequest {
        PlanRequest {
            n_ctx: None,
            n_slots: 1,
            kv_type: KvType::F16,
            load: LoadMode::default(),
            n_batch: N_UBATCH,
        }
    }
}

/// The context `hearth run` / `hearth serve` use when none is given.
pub fn default_n_ctx(n_ctx_train: usize) -> usize {
    n_ctx_train.clamp(2, 4096)
}

/// Whether the model fits in the available memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Everything fits in available memory.
    Fits,
    /// It fits only by pushing other memory out of RAM (to swap, or the mapped weights back to
    /// disk): it runs, slowly.
    FitsButWouldSwap,
    /// It does not fit even with swap (or locked memory does not fit in RAM).
    DoesNotFit,
}

impl Verdict {
    /// As printed.
    pub fn text(self) -> &'static str {
        match self {
            Verdict::Fits => "fits",
            Verdict::FitsButWouldSwap => "fits but would swap",
            Verdict::DoesNotFit => "does not fit",
        }
    }
}

/// A change that makes the model fit (or fit better).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Suggestion {
    /// What to pass (`--ctx 2048`, `--kv-type q8_0`, ...).
    pub flag: String,
    /// The total it leads to.
    pub total_bytes: u64,
    /// A sentence for people.
    pub text: String,
}

/// The KV cache part of a plan.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct KvPlan {
    /// Storage type of K and V (`f16` or `q8_0`; hearth's cache stores either).
    pub kv_type: &'static str,
    pub n_layers: usize,
    /// Layers attending through a sliding window, and its size.
    pub n_swa_layers: usize,
    pub window: Option<usize>,
    /// Bytes each further position of context costs (the layers without a window).
    pub bytes_per_position: u64,
    /// One sequence at a full context, as allocated (the cache's Vecs double as they grow: a
    /// layer of `c` cells has room for `c.next_power_of_two()`).
    pub per_slot_bytes: u64,
    /// The rows alone.
    pub per_slot_data_bytes: u64,
    /// All slots.
    pub total_bytes: u64,
}

/// Where the memory of a loaded model goes, and whether it fits.
#[derive(Clone, Debug, Serialize)]
pub struct MemoryPlan {
    pub model: String,
    pub arch: String,
    /// `general.file_type` as llama.cpp names it.
    pub file_type: String,
    pub n_ctx: usize,
    pub n_ctx_train: usize,
    pub n_slots: usize,
    pub mmap: bool,
    pub mlock: bool,
    pub weights: WeightsInfo,
    /// Weight memory counted in the budget: the whole file (a map's pages become resident as
    /// the weights are read; `--no-mmap` reads it all into the heap).
    pub weights_resident_bytes: u64,
    pub kv: KvPlan,
    /// Activations and logits of a forward pass of `n_batch` tokens.
    pub compute_bytes: u64,
    /// Parsed metadata, tokenizer, f32 norms, the program and its threads.
    pub overhead_bytes: u64,
    /// Everything.
    pub total_bytes: u64,
    pub available: Available,
    pub verdict: Verdict,
    pub suggestions: Vec<Suggestion>,
    /// Remarks (an untied embedding's pages, mlock limits, ...).
    pub notes: Vec<String>,
    /// Predicted speed (`hearth plan` measures the machine; absent when not asked for).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub speed: Option<SpeedPlan>,
}

/// The parts of a plan that depend on the options.
struct Costs {
    weights: u64,
    kv_per_slot: u64,
    compute: u64,
    overhead: u64,
}

impl Costs {
    fn total(&self, n_slots: usize) -> u64 {
        self.weights + self.kv_per_slot * n_slots as u64 + self.compute + self.overhead
    }
}

fn verdict(total: u64, locked: u64, available: &Available) -> Verdict {
    if total <= available.bytes {
        Verdict::Fits
    } else if locked > available.bytes {
        Verdict::DoesNotFit
    } else if total <= available.bytes.saturating_add(available.swap_free) {
        Verdict::FitsButWouldSwap
    } else {
        Verdict::DoesNotFit
    }
}

/// Binary units for people.
pub fn human(bytes: u64) -> String {
    let b = bytes as f64;
    if b >= (1u64 << 30) as f64 {
        format!("{:.2} GiB", b / (1u64 << 30) as f64)
    } else if b >= (1u64 << 20) as f64 {
        format!("{:.1} MiB", b / (1u64 << 20) as f64)
    } else if b >= 1024.0 {
        format!("{:.1} KiB", b / 1024.0)
    } else {
        format!("{bytes} B")
    }
}

/// Smaller file types to suggest, largest first.
const QUANT_CANDIDATES: [FileType; 10] = [
    FileType::Q8_0,
    FileType::Q6_K,
    FileType::Q5_K_M,
    FileType::Q5_K_S,
    FileType::Q4_K_M,
    FileType::Q4_K_S,
    FileType::IQ4_XS,
    FileType::Q3_K_M,
    FileType::Q3_K_S,
    FileType::Q2_K,
];

/// The size of `gguf` requantized to `ftype` with llama-quantize's mix (header kept, tensors
/// aligned as in the file); `None` when the mix cannot be planned for this model.
pub fn quantized_file_bytes(gguf: &MappedGguf, ftype: FileType) -> Option<u64> {
    let plan = hearth_quantize::plan_file(gguf, &TypeOptions::new(ftype)).ok()?;
    let file = gguf.file();
    let align = file.alignment;
    let mut data = 0u64;
    for t in &plan {
        data = align_up(data, align)? + tensor_size(t.dst_type, &t.shape)?;
    }
    Some(file.data_offset + data)
}

impl MemoryPlan {
    /// The plan of loading `gguf` (opened with [`MappedGguf::open`]: only its header is read)
    /// as `req` asks, against `available` memory. No speed figures (see
    /// [`crate::speed::predict`]).
    pub fn new(
        gguf: &MappedGguf,
        req: &PlanRequest,
        available: Available,
    ) -> Result<MemoryPlan, PlanError> {
        if req.n_slots == 0 {
            return Err(PlanError::Zero {
                what: "--parallel",
                value: 0,
            });
        }
        let path = gguf.path();
        let file = gguf.file();
        let cfg = ModelConfig::from_gguf(file).map_err(|source| PlanError::Config {
            path: path.to_path_buf(),
            source,
        })?;
        let n_ctx = req.n_ctx.unwrap_or_else(|| default_n_ctx(cfg.n_ctx_train));
        if n_ctx == 0 {
            return Err(PlanError::Zero {
                what: "--ctx",
                value: 0,
            });
        }
        let weights = WeightsInfo::from_gguf(file);
        let layout = KvLayout::from_config(&cfg);
        let norm_values: u64 = file
            .tensors
            .iter()
            .filter(|t| t.shape.len() == 1)
            .map(|t| t.n_elements())
            .sum();
        let logit_rows = req.n_slots.min(req.n_batch.max(1));
        let costs = |n_ctx: usize, kv_type: KvType, weights_bytes: u64| Costs {
            weights: weights_bytes,
            kv_per_slot: layout.bytes_full(n_ctx, kv_type),
            compute: compute_bytes(&cfg, req.n_batch, logit_rows),
            overhead: overhead_bytes(weights.header_bytes, norm_values),
        };
        let locked = |w: u64| if req.load.mlock { w } else { 0 };
        let weights_resident = weights.file_bytes;
        let c = costs(n_ctx, req.kv_type, weights_resident);
        let total = c.total(req.n_slots);
        let verdict = verdict(total, locked(weights_resident), &available);

        let mut notes = Vec::new();
        if !weights.tied_output && req.load.mmap {
            notes.push(format!(
                "token_embd.weight ({}) is only read a row per token: with mmap its pages become \
                 resident as tokens are seen, so the weights may stay below the figure counted",
                human(weights.token_embd_bytes)
            ));
        }
        if weights.tied_output {
            notes.push(format!(
                "the output projection reuses token_embd.weight ({}): read in full every token",
                human(weights.token_embd_bytes)
            ));
        }
        if req.load.mlock {
            if let Some(limit) = hearth_gguf::memlock_limit() {
                if limit < weights_resident {
                    notes.push(format!(
                        "--mlock: RLIMIT_MEMLOCK (`ulimit -l`) is {}, less than the {} to lock; \
                         mlock will fail unless the process has CAP_IPC_LOCK",
                        human(limit),
                        human(weights_resident)
                    ));
                }
            }
        }
        if req.n_slots > 1 {
            notes.push(
                "hearth serve also keeps one cache for /v1/embeddings requests, empty until used"
                    .to_string(),
            );
        }
        notes.push(
            "the KV cache grows as the context fills; the figure is a full context".to_string(),
        );

        let mut suggestions = Vec::new();
        if verdict != Verdict::Fits {
            let fits =
                |total: u64, w: u64| self::verdict(total, locked(w), &available) == Verdict::Fits;
            // The largest context that fits (multiples of 256, as llama.cpp pads).
            let (mut lo, mut hi) = (0usize, n_ctx / 256);
            while lo < hi {
                let mid = (lo + hi).div_ceil(2);
                if fits(
                    costs(mid * 256, req.kv_type, weights_resident).total(req.n_slots),
                    weights_resident,
                ) {
                    lo = mid;
                } else {
                    hi = mid - 1;
                }
            }
            if lo > 0 && lo * 256 < n_ctx {
                let t = costs(lo * 256, req.kv_type, weights_resident).total(req.n_slots);
                suggestions.push(Suggestion {
                    flag: format!("--ctx {}", lo * 256),
                    total_bytes: t,
                    text: format!(
                        "a context of {} tokens (instead of {n_ctx}) needs {} in all",
                        lo * 256,
                        human(t)
                    ),
                });
            }
            if req.kv_type == KvType::F16 {
                let t = costs(n_ctx, KvType::Q8_0, weights_resident).total(req.n_slots);
                if t < total {
                    suggestions.push(Suggestion {
                        flag: "--kv-type q8_0".into(),
                        total_bytes: t,
                        text: format!(
                            "a Q8_0 KV cache ({} instead of {}) brings the total to {}{}",
                            human(layout.bytes_full(n_ctx, KvType::Q8_0) * req.n_slots as u64),
                            human(c.kv_per_slot * req.n_slots as u64),
                            human(t),
                            if fits(t, weights_resident) {
                                " (fits)"
                            } else {
                                " (still too much)"
                            }
                        ),
                    });
                }
            }
            if req.n_slots > 1 {
                let best = (1..req.n_slots)
                    .rev()
                    .find(|&p| fits(c.total(p), weights_resident));
                if let Some(p) = best {
                    suggestions.push(Suggestion {
                        flag: format!("--parallel {p}"),
                        total_bytes: c.total(p),
                        text: format!(
                            "{p} slots instead of {} need {}",
                            req.n_slots,
                            human(c.total(p))
                        ),
                    });
                }
            }
            let mut quant_fits = 0;
            for ft in QUANT_CANDIDATES {
                if quant_fits == 2 {
                    break;
                }
                let Some(size) = quantized_file_bytes(gguf, ft) else {
                    continue;
                };
                if size >= weights.file_bytes {
                    continue;
                }
                let t = costs(n_ctx, req.kv_type, size).total(req.n_slots);
                if fits(t, size) {
                    quant_fits += 1;
                    suggestions.push(Suggestion {
                        flag: format!("hearth quantize MODEL OUT {}", ft.name()),
                        total_bytes: t,
                        text: format!(
                            "the model as {} would be about {} ({} in all); quantize it from \
                             the original F16/BF16 file (requantizing loses more quality)",
                            ft.name(),
                            human(size),
                            human(t)
                        ),
                    });
                }
            }
        }

        let file_type = file
            .metadata
            .get("general.file_type")
            .and_then(|v| v.as_integer())
            .and_then(|t| u32::try_from(t).ok())
            .and_then(hearth_gguf::file_type_name)
            .unwrap_or("unknown")
            .to_string();
        let window = layout.layers.iter().find_map(|l| l.window);
        Ok(MemoryPlan {
            model: path.display().to_string(),
            arch: cfg.arch.name().to_string(),
            file_type,
            n_ctx,
            n_ctx_train: cfg.n_ctx_train,
            n_slots: req.n_slots,
            mmap: req.load.mmap,
            mlock: req.load.mlock,
            weights_resident_bytes: weights_resident,
            kv: KvPlan {
                kv_type: kv_type_name(req.kv_type),
                n_layers: layout.layers.len(),
                n_swa_layers: layout.n_swa(),
                window,
                bytes_per_position: layout.bytes_per_position(req.kv_type),
                per_slot_bytes: c.kv_per_slot,
                per_slot_data_bytes: layout.data_bytes_full(n_ctx, req.kv_type),
                total_bytes: c.kv_per_slot * req.n_slots as u64,
            },
            weights,
            compute_bytes: c.compute,
            overhead_bytes: c.overhead,
            total_bytes: total,
            available,
            verdict,
            suggestions,
            notes,
            speed: None,
        })
    }

    /// Opens `path` (mapped: only the header is read) and plans it against the memory available
    /// now ([`crate::memory::available`]).
    pub fn for_file(path: &Path, req: &PlanRequest) -> Result<MemoryPlan, PlanError> {
        let gguf = MappedGguf::open(path).map_err(|source| PlanError::Gguf {
            path: path.to_path_buf(),
            source,
        })?;
        let available = crate::memory::available()?;
        MemoryPlan::new(&gguf, req, available)
    }

    /// The refusal message of `hearth run` / `hearth serve` for a plan that does not fit.
    pub fn refusal(&self) -> String {
        let mut s = format!(
            "{} {}: needs {} (weights {}, KV cache {} for {} x {} tokens, compute {}, other {}) \
             but {} is available ({})",
            self.model,
            self.verdict.text(),
            human(self.total_bytes),
            human(self.weights_resident_bytes),
            human(self.kv.total_bytes),
            self.n_slots,
            self.n_ctx,
            human(self.compute_bytes),
            human(self.overhead_bytes),
            human(self.available.bytes),
            self.available.source
        );
        if !self
            .suggestions
            .iter()
            .any(|sug| sug.total_bytes <= self.available.bytes)
        {
            s.push_str(&format!(
                "\nno smaller context, cache type, slot count or quantization makes it fit: the \
                 weights alone need {}",
                human(self.weights_resident_bytes)
            ));
        }
        if !self.suggestions.is_empty() {
            s.push_str("\ntry:");
            for sug in &self.suggestions {
                s.push_str(&format!("\n  {:<32} {}", sug.flag, sug.text));
            }
        }
        s.push_str("\n(--force loads it anyway; `hearth plan` shows the details)");
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn avail(bytes: u64, swap: u64) -> Available {
        Available {
            bytes,
            swap_free: swap,
            source: "test".into(),
            mem_total: None,
            mem_available: None,
            cgroup_limit: None,
            cgroup_usage: None,
        }
    }

    #[test]
    fn verdicts() {
        assert_eq!(verdict(100, 0, &avail(100, 0)), Verdict::Fits);
        assert_eq!(verdict(101, 0, &avail(100, 0)), Verdict::DoesNotFit);
        assert_eq!(verdict(150, 0, &avail(100, 50)), Verdict::FitsButWouldSwap);
        assert_eq!(verdict(151, 0, &avail(100, 50)), Verdict::DoesNotFit);
        // Locked memory cannot go to swap.
        assert_eq!(verdict(150, 120, &avail(100, 50)), Verdict::DoesNotFit);
    }

    #[test]
    fn human_sizes() {
        assert_eq!(human(512), "512 B");
        assert_eq!(human(3 << 19), "1.5 MiB");
        assert_eq!(human(5 << 30), "5.00 GiB");
    }
}
