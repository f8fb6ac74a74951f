//! How much memory this process may use (`/proc/meminfo`, the cgroup's limit), and how much it
//! uses (`/proc/self/status`).

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::error::PlanError;

/// Replaces the measured available memory (and takes swap as 0): for tests, and to keep memory
/// for other programs. Bytes, or a number with `K`, `M`, `G`, `T` (powers of 1024), e.g. `512M`.
pub const MEM_AVAILABLE_ENV: &str = "HEARTH_MEM_AVAILABLE";

/// Limits at or above this are "no limit" (cgroup v1 reports `PAGE_COUNTER_MAX` pages).
const NO_LIMIT: u64 = 1 << 60;

/// The memory the plan may count on.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Available {
    /// Bytes the model may use without pushing anything out of RAM: the smaller of
    /// `MemAvailable` and the cgroup's limit minus its usage (or the override).
    pub bytes: u64,
    /// Free swap (0 with the override).
    pub swap_free: u64,
    /// Where `bytes` comes from.
    pub source: String,
    /// `MemTotal`.
    pub mem_total: Option<u64>,
    /// `MemAvailable` of `/proc/meminfo`.
    pub mem_available: Option<u64>,
    /// The tightest memory limit of the process's cgroup and its ancestors, and that cgroup's
    /// usage.
    pub cgroup_limit: Option<u64>,
    pub cgroup_usage: Option<u64>,
}

/// A size as `HEARTH_MEM_AVAILABLE` takes it: `123`, `64K`, `512M`, `1.5G`, `2GiB`, `1T`.
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let value: f64 = num.parse().ok()?;
    let unit = unit.trim().to_ascii_uppercase();
    let mult = match unit.trim_end_matches("IB").trim_end_matches('B') {
        "" => 1u64,
        "K" => 1 << 10,
        "M" => 1 << 20,
        "G" => 1 << 30,
        "T" => 1 << 40,
        _ => return None,
    };
    let bytes = value * mult as f64;
    (bytes.is_finite() && bytes >= 0.0).then_some(bytes as u64)
}

/// The `kB` fields of `/proc/meminfo` (or `/proc/self/status`) text, in bytes.
pub fn parse_kb_field(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let rest = l.strip_prefix(key)?.strip_prefix(':')?;
        let kb: u64 = rest.split_whitespace().next()?.parse().ok()?;
        Some(kb * 1024)
    })
}

fn read(path: &Path) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

fn read_u64(path: &Path) -> Option<u64> {
    let s = read(path)?;
    let s = s.trim();
    if s == "max" {
        return Some(u64::MAX);
    }
    s.parse().ok()
}

/// `(limit, usage)` of the tightest limited cgroup from the process's own up to the root.
/// cgroup v2 (`memory.max`, `memory.current`) and v1 (`memory.limit_in_bytes`,
/// `memory.usage_in_bytes`) under the standard mount points; inside a cgroup namespace the
/// process's cgroup is the mount's root, which is checked too.
fn cgroup_limit(proc_cgroup: &str, root: &Path) -> Option<(u64, u64)> {
    let mut best: Option<(u64, u64)> = None;
    let mut consider = |dir: PathBuf, limit_file: &str, usage_file: &str| {
        let (Some(limit), Some(usage)) = (
            read_u64(&dir.join(limit_file)),
            read_u64(&dir.join(usage_file)),
        ) else {
            return;
        };
        if limit >= NO_LIMIT {
            return;
        }
        let room = limit.saturating_sub(usage);
        if best.is_none_or(|(l, u)| room < l.saturating_sub(u)) {
            best = Some((limit, usage));
        }
    };
    for line in proc_cgroup.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(_), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let (mounts, limit_file, usage_file): (&[&str], _, _) = if controllers.is_empty() {
            (&["", "unified"], "memory.max", "memory.current")
        } else if controllers.split(',').any(|c| c == "memory") {
            (
                &["memory"],
                "memory.limit_in_bytes",
                "memory.usage_in_bytes",
            )
        } else {
            continue;
        };
        for mount in mounts {
            let base = root.join(mount);
            let mut rel = PathBuf::from(path.trim_start_matches('/'));
            loop {
                consider(base.join(&rel), limit_file, usage_file);
                if !rel.pop() {
                    break;
                }
            }
        }
    }
    best
}

/// The memory available to this process now.
pub fn available() -> Result<Available, PlanError> {
    let meminfo = read(Path::new("/proc/meminfo")).unwrap_or_default();
    let mem_total = parse_kb_field(&meminfo, "MemTotal");
    let mem_available = parse_kb_field(&meminfo, "MemAvailable");
    let cgroup = read(Path::new("/proc/self/cgroup"))
        .and_then(|text| cgroup_limit(&text, Path::new("/sys/fs/cgroup")));
    let (cgroup_limit, cgroup_usage) = (cgroup.map(|c| c.0), cgroup.map(|c| c.1));

    if let Ok(v) = std::env::var(MEM_AVAILABLE_ENV) {
        let bytes = parse_size(&v).ok_or(PlanError::BadSize {
            var: MEM_AVAILABLE_ENV,
            value: v.clone(),
        })?;
        return Ok(Available {
            bytes,
            swap_free: 0,
            source: format!("{MEM_AVAILABLE_ENV}={v}"),
            mem_total,
            mem_available,
            cgroup_limit,
            cgroup_usage,
        });
    }
    let swap_free = parse_kb_field(&meminfo, "SwapFree").unwrap_or(0);
    let cgroup_room = cgroup.map(|(l, u)| l.saturating_sub(u));
    let (bytes, source) = match (mem_available, cgroup_room) {
        (Some(a), Some(c)) if c < a => (c, "cgroup memory limit minus usage".to_string()),
        (Some(a), _) => (a, "MemAvailable (/proc/meminfo)".to_string()),
        (None, Some(c)) => (c, "cgroup memory limit minus usage".to_string()),
        (None, None) => {
            return Err(PlanError::Io {
                path: "/proc/meminfo".into(),
                source: std::io::Error::new(std::io::ErrorKind::NotFound, "no MemAvailable"),
            })
        }
    };
    Ok(Available {
        bytes,
        swap_free,
        source,
        mem_total,
        mem_available,
        cgroup_limit,
        cgroup_usage,
    })
}

/// Sets up glibc's allocator for model forward passes, which allocate and free buffers of
/// megabytes every layer: by default glibc maps each such buffer afresh and unmaps it when
/// freed (a page fault and zeroing per page, every layer) or trims the heap top; here buffers
/// up to 32 MiB come from the heap and freed memory stays there until 1 GiB is free (measured
/// on Gemma 3 270M pp512: +30%). [`release_free_heap`] still returns it for measurements.
/// Call first thing in `main`.
pub fn configure_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt takes no pointers and may be called at any time; it only changes the
    // thresholds later allocations and frees use.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
    }
}

/// Returns the heap memory the allocator holds but nobody uses to the system (glibc's
/// `malloc_trim`), so that a following [`ProcMemory::current`] counts live memory only: freed
/// compute buffers otherwise stay resident in the heap until reused. Only for measurements.
pub fn release_free_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim takes no pointers and may be called at any time; it only returns
    // free memory of the allocator's arenas to the kernel.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// The resident memory of this process (`/proc/self/status`), in bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ProcMemory {
    /// `VmRSS`.
    pub rss: u64,
    /// `RssAnon`: heap, stacks (the KV cache, compute buffers, a `--no-mmap` copy).
    pub rss_anon: u64,
    /// `RssFile`: mapped files (the binary, a mapped model's pages in use).
    pub rss_file: u64,
    /// `VmHWM`: the peak of `VmRSS`.
    pub hwm: u64,
}

impl ProcMemory {
    /// Resets `VmHWM` to the current resident size (`/proc/self/clear_refs`, Linux 4.0+), so
    /// that a later peak is that of the work after this point. Best effort.
    pub fn reset_peak() {
        let _ = std::fs::write("/proc/self/clear_refs", "5");
    }

    /// This process now; `None` without `/proc`.
    pub fn current() -> Option<ProcMemory> {
        let text = read(Path::new("/proc/self/status"))?;
        Some(ProcMemory {
            rss: parse_kb_field(&text, "VmRSS")?,
            rss_anon: parse_kb_field(&text, "RssAnon").unwrap_or(0),
            rss_file: parse_kb_field(&text, "RssFile").unwrap_or(0),
            hwm: parse_kb_field(&text, "VmHWM").unwrap_or(0),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_binary_units() {
        assert_eq!(parse_size("123"), Some(123));
        assert_eq!(parse_size("64K"), Some(65_536));
        assert_eq!(parse_size("512M"), Some(512 << 20));
        assert_eq!(parse_size("512MiB"), Some(512 << 20));
        assert_eq!(parse_size("1.5G"), Some(3 << 29));
        assert_eq!(parse_size("2gb"), Some(2 << 30));
        assert_eq!(parse_size("lots"), None);
        assert_eq!(parse_size("12X"), None);
    }

    #[test]
    fn meminfo_fields_are_bytes() {
        let text = "MemTotal:       24683656 kB\nMemFree:  100 kB\nMemAvailable:   24221060 kB\n";
        assert_eq!(
            parse_kb_field(text, "MemAvailable"),
            Some(24_221_060 * 1024)
        );
        assert_eq!(parse_kb_field(text, "MemFree"), Some(102_400));
        assert_eq!(parse_kb_field(text, "Mem"), None);
    }

    /// A v1 hierarchy with a limit on a parent of the process's cgroup and none on its own.
    #[test]
    fn cgroup_v1_limit_of_an_ancestor_counts() {
        let root = std::env::temp_dir().join(format!("hearth-plan-cg-{}", std::process::id()));
        let parent = root.join("memory/jobs");
        let own = parent.join("job1");
        std::fs::create_dir_all(&own).unwrap();
        std::fs::write(parent.join("memory.limit_in_bytes"), "1073741824\n").unwrap();
        std::fs::write(parent.join("memory.usage_in_bytes"), "268435456\n").unwrap();
        std::fs::write(own.join("memory.limit_in_bytes"), "9223372036854771712\n").unwrap();
        std::fs::write(own.join("memory.usage_in_bytes"), "1000\n").unwrap();
        let got = cgroup_limit("4:memory:/jobs/job1\n1:cpu:/\n", &root);
        std::fs::remove_dir_all(&root).unwrap();
        assert_eq!(got, Some((1 << 30, 1 << 28)));
    }

    #[test]
    fn cgroup_v2_max_is_no_limit() {
        let root = std::env::temp_dir().join(format!("hearth-plan-cg2-{}", std::process::id()));
        let own = root.join("user.slice");
        std::fs::create_dir_all(&own).unwrap();
        std::fs::write(own.join("memory.max"), "max\n").unwrap();
        std::fs::write(own.join("memory.current"), "5000\n").unwrap();
        assert_eq!(cgroup_limit("0::/user.slice\n", &root), None);
        std::fs::write(own.join("memory.max"), "2000000\n").unwrap();
        let got = cgroup_limit("0::/user.slice\n", &root);
        std::fs::remove_dir_all(&root).unwrap();
        assert_eq!(got, Some((2_000_000, 5000)));
    }

    #[test]
    fn this_process_has_a_resident_size() {
        let m = ProcMemory::current().expect("/proc/self/status");
        assert!(m.rss > 0 && m.hwm >= m.rss, "{m:?}");
    }
}
