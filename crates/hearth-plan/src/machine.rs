//! What this machine does per second: its memory read bandwidth (what bounds decoding) and the
//! speed of the matmul kernels on each weight type (what bounds prefill, and decoding where
//! the kernels cannot keep up with memory).
//!
//! The bandwidth probe reads a 256 MiB buffer a few times (about a second), so its result is
//! kept in the cache directory (`machine-profiles.json`), keyed by the CPU model string, the
//! kernel level and the thread count, and reused for [`MAX_AGE`]. Kernel rates are measured on
//! rows of the model's own tensors (a tenth of a second per weight type) and kept in the same
//! entry: a one-token product over a matrix several times the last-level cache (what a decode
//! step does: weights streamed from memory through the kernel), and 64-token products over
//! a cached matrix (prefill, compute-bound).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hearth_gguf::GgmlType;
use hearth_kernels::matmul::{self, QMatrix};
use hearth_kernels::pool::ThreadPool;
use serde::{Deserialize, Serialize};

/// How long a measured profile is reused.
pub const MAX_AGE: Duration = Duration::from_secs(7 * 24 * 3600);

/// The cache file's name inside the cache directory.
pub const PROFILE_FILE: &str = "machine-profiles.json";

/// Bytes the bandwidth probe reads (many times any last-level cache).
const PROBE_BYTES: usize = 256 << 20;

/// Weight bytes of a kernel-rate sample (fits in the L2/L3 caches, so the kernels, not memory,
/// set the pace).
const SAMPLE_BYTES: usize = 1 << 20;

/// Bounds of the streamed matrix of the decode probe: 4 x the last-level cache, in this range.
const STREAM_MIN: usize = 64 << 20;
const STREAM_MAX: usize = 256 << 20;

/// The last-level cache of CPU 0 (sysfs), or 32 MiB when unknown.
fn llc_bytes() -> usize {
    let mut best = 0usize;
    for i in 0..8 {
        let dir = format!("/sys/devices/system/cpu/cpu0/cache/index{i}");
        let Ok(size) = std::fs::read_to_string(format!("{dir}/size")) else {
            continue;
        };
        let size = size.trim();
        let (num, mult) = match size.strip_suffix('K') {
            Some(n) => (n, 1 << 10),
            None => match size.strip_suffix('M') {
                Some(n) => (n, 1 << 20),
                None => (size, 1),
            },
        };
        if let Ok(n) = num.parse::<usize>() {
            best = best.max(n * mult);
        }
    }
    if best == 0 {
        32 << 20
    } else {
        best
    }
}

/// Tokens of the prefill-rate sample: one token block of the matmul's prefill loop.
pub const PREFILL_SAMPLE_TOKENS: usize = 64;

/// Kernel speed on one weight type, with all threads.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KernelRate {
    /// ggml type name.
    #[serde(rename = "type")]
    pub ty: String,
    /// Weight bytes per second of a one-token product (a decode step) on cached weights.
    pub decode: f64,
    /// Weight bytes per second of a one-token product on weights streamed from memory (a
    /// matrix of several times the last-level cache). 0 when not measured.
    #[serde(default)]
    pub decode_stream: f64,
    /// Weight bytes x tokens per second of a [`PREFILL_SAMPLE_TOKENS`]-token product.
    pub prefill: f64,
}

/// The measured figures of this machine.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MachineProfile {
    /// `model name` of /proc/cpuinfo.
    pub cpu: String,
    /// The kernel level in use (`avx2`, ...).
    pub kernels: String,
    pub threads: usize,
    /// When the bandwidth was measured (seconds since the epoch).
    pub measured_unix: u64,
    /// Sustained read bandwidth with `threads` threads, bytes per second.
    pub bandwidth: f64,
    pub rates: Vec<KernelRate>,
    /// Whether the bandwidth came from the cache file.
    #[serde(skip)]
    pub cached: bool,
}

impl MachineProfile {
    /// The rate of `ty`, if measured.
    pub fn rate(&self, ty: GgmlType) -> Option<&KernelRate> {
        self.rates
            .iter()
            .find(|r| r.ty == ty.name() && r.decode_stream > 0.0)
    }

    fn matches(&self, cpu: &str, kernels: &str, threads: usize) -> bool {
        self.cpu == cpu && self.kernels == kernels && self.threads == threads
    }

    fn fresh(&self, now: u64) -> bool {
        now.saturating_sub(self.measured_unix) < MAX_AGE.as_secs()
    }
}

/// The CPU's model string (`model name` in /proc/cpuinfo).
pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_string())
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A sample of a weight type for the kernel-rate probe: whole rows of a real tensor.
pub struct KernelSample {
    pub ty: GgmlType,
    /// Values per row.
    pub ne0: usize,
    /// Whole rows, at most about 1 MiB.
    pub bytes: Vec<u8>,
}

impl KernelSample {
    /// Up to [`SAMPLE_BYTES`] of whole rows from `data` (a tensor of rows of `ne0` values).
    pub fn from_tensor(ty: GgmlType, ne0: usize, data: &[u8]) -> Option<KernelSample> {
        let row = ty.row_bytes(ne0 as u64)? as usize;
        if row == 0 || data.len() < row {
            return None;
        }
        let rows = (SAMPLE_BYTES / row).clamp(1, data.len() / row);
        Some(KernelSample {
            ty,
            ne0,
            bytes: data[..rows * row].to_vec(),
        })
    }
}

/// Seconds per call of `f`, the best of repeated runs over at least `min_time` after a warm-up.
fn time_per_call(min_time: Duration, mut f: impl FnMut()) -> f64 {
    f();
    let start = Instant::now();
    let mut best = f64::INFINITY;
    let mut calls = 0;
    while calls < 3 || start.elapsed() < min_time {
        let t = Instant::now();
        f();
        best = best.min(t.elapsed().as_secs_f64());
        calls += 1;
    }
    best.max(1e-9)
}

/// Measures the kernel rates of `sample` on `pool`.
pub fn measure_rate(pool: &ThreadPool, sample: &KernelSample) -> Option<KernelRate> {
    let row = sample.ty.row_bytes(sample.ne0 as u64)? as usize;
    let n_rows = sample.bytes.len() / row;
    let q = QMatrix::new(sample.ty, sample.bytes.as_slice(), sample.ne0, n_rows).ok()?;
    let n = PREFILL_SAMPLE_TOKENS;
    // Deterministic activations of a plausible scale.
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let x: Vec<f32> = (0..n * sample.ne0)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect();
    let mut out = vec![0.0f32; n * n_rows];
    let bytes = sample.bytes.len() as f64;
    let t1 = time_per_call(Duration::from_millis(40), || {
        let _ = matmul::matmul(pool, &q, &x[..sample.ne0], 1, &mut out[..n_rows]);
    });
    let tn = time_per_call(Duration::from_millis(60), || {
        let _ = matmul::matmul(pool, &q, &x, n, &mut out);
    });
    // The streamed matrix: the sample's rows repeated past the caches.
    let reps = (4 * llc_bytes()).clamp(STREAM_MIN, STREAM_MAX) / sample.bytes.len().max(1);
    let big = sample.bytes.repeat(reps.max(1));
    let big_rows = n_rows * reps.max(1);
    let qs = QMatrix::new(sample.ty, big.as_slice(), sample.ne0, big_rows).ok()?;
    let mut out_big = vec![0.0f32; big_rows];
    let ts = time_per_call(Duration::from_millis(100), || {
        let _ = matmul::matmul(pool, &qs, &x[..sample.ne0], 1, &mut out_big);
    });
    Some(KernelRate {
        ty: sample.ty.name().to_string(),
        decode: bytes / t1,
        decode_stream: big.len() as f64 / ts,
        prefill: bytes * n as f64 / tn,
    })
}

/// Measures the read bandwidth of `pool`'s threads (about a second).
pub fn measure_bandwidth(pool: &ThreadPool) -> f64 {
    hearth_kernels::membw::read_bandwidth(pool, PROBE_BYTES, 3)
}

fn read_profiles(path: &Path) -> Vec<MachineProfile> {
    std::fs::read(path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

/// Writes through a temporary file and a rename, so readers never see half a file. Failing to
/// write the cache is not an error (the figures are only measured again next time).
fn write_profiles(path: &Path, profiles: &[MachineProfile]) {
    let Ok(json) = serde_json::to_vec_pretty(profiles) else {
        return;
    };
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    let tmp: PathBuf = path.with_extension(format!("tmp-{}", std::process::id()));
    if std::fs::write(&tmp, json).is_ok() && std::fs::rename(&tmp, path).is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
}

/// This machine's profile for `pool`'s thread count: from `cache_dir` when a fresh entry for
/// this CPU exists (and `remeasure` is false), else measured (and stored); kernel rates of
/// `samples`' types that the entry lacks are measured and added.
pub fn profile(
    pool: &ThreadPool,
    cache_dir: Option<&Path>,
    samples: &[KernelSample],
    remeasure: bool,
) -> MachineProfile {
    let cpu = cpu_model();
    let kernels = hearth_kernels::cpu::CpuLevel::active().name().to_string();
    let threads = pool.n_threads();
    let now = now_unix();
    let path = cache_dir.map(|d| d.join(PROFILE_FILE));
    let mut all = path.as_deref().map(read_profiles).unwrap_or_default();
    all.retain(|p| p.fresh(now) && !(remeasure && p.matches(&cpu, &kernels, threads)));
    let existing = all.iter().position(|p| p.matches(&cpu, &kernels, threads));
    let mut prof = match existing {
        Some(i) => {
            let mut p = all.remove(i);
            p.cached = true;
            p
        }
        None => MachineProfile {
            cpu,
            kernels,
            threads,
            measured_unix: now,
            bandwidth: measure_bandwidth(pool),
            rates: Vec::new(),
            cached: false,
        },
    };
    let mut changed = !prof.cached;
    for s in samples {
        if prof.rate(s.ty).is_none() {
            if let Some(r) = measure_rate(pool, s) {
                prof.rates.retain(|old| old.ty != r.ty);
                prof.rates.push(r);
                changed = true;
            }
        }
    }
    if changed {
        if let Some(path) = &path {
            let mut stored = prof.clone();
            stored.cached = false;
            all.push(stored);
            write_profiles(path, &all);
        }
    }
    prof
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profiles_round_trip_through_the_cache_and_expire() {
        let dir = std::env::temp_dir().join(format!("hearth-plan-prof-{}", std::process::id()));
        let path = dir.join(PROFILE_FILE);
        let p = MachineProfile {
            cpu: "Test CPU".into(),
            kernels: "avx2".into(),
            threads: 2,
            measured_unix: now_unix(),
            // A measured figure that serde_json's default (not round-trip exact) float parser
            // reads back one ulp off (1000070546.7365783); CI once failed that way.
            bandwidth: 1000070546.7365785,
            rates: vec![KernelRate {
                ty: "Q4_K".into(),
                decode: 1e10,
                decode_stream: 8e9,
                prefill: 5e10,
            }],
            cached: false,
        };
        write_profiles(&path, std::slice::from_ref(&p));
        let back = read_profiles(&path);
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(back, vec![p.clone()]);
        assert!(back[0].fresh(now_unix()));
        assert!(!back[0].fresh(now_unix() + MAX_AGE.as_secs() + 1));
        assert!(back[0].matches("Test CPU", "avx2", 2));
        assert!(!back[0].matches("Test CPU", "avx2", 1));
        assert_eq!(back[0].rate(GgmlType::Q4_K).map(|r| r.decode), Some(1e10));
    }

    /// A fresh entry for this CPU is used as is (no probe); a stale one is measured again and
    /// replaced.
    #[test]
    fn the_cached_profile_is_reused_for_7_days() {
        let dir = std::env::temp_dir().join(format!("hearth-plan-reuse-{}", std::process::id()));
        let path = dir.join(PROFILE_FILE);
        let pool = ThreadPool::new(1);
        let mine = MachineProfile {
            cpu: cpu_model(),
            kernels: hearth_kernels::cpu::CpuLevel::active().name().to_string(),
            threads: 1,
            measured_unix: now_unix() - 3600,
            bandwidth: 1.234e9,
            rates: Vec::new(),
            cached: false,
        };
        write_profiles(&path, std::slice::from_ref(&mine));
        let p = profile(&pool, Some(&dir), &[], false);
        assert!(p.cached);
        assert_eq!(p.bandwidth, 1.234e9);

        let stale = MachineProfile {
            measured_unix: now_unix() - MAX_AGE.as_secs() - 60,
            ..mine
        };
        write_profiles(&path, &[stale]);
        let p = profile(&pool, Some(&dir), &[], false);
        assert!(!p.cached);
        assert_ne!(p.bandwidth, 1.234e9);
        let stored = read_profiles(&path);
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(stored.len(), 1);
        assert_eq!(stored[0].bandwidth, p.bandwidth);
    }

    #[test]
    fn samples_are_whole_rows() {
        // Q8_0: 34 bytes per 32 values; rows of 64 values are 68 bytes.
        let data = vec![0u8; 68 * 10 + 5];
        let s = KernelSample::from_tensor(GgmlType::Q8_0, 64, &data).unwrap();
        assert_eq!(s.bytes.len(), 680);
        assert!(KernelSample::from_tensor(GgmlType::Q8_0, 64, &data[..60]).is_none());
    }
}
