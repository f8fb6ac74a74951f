//! A short probe of the machine's sustained memory read bandwidth: what bounds the decode speed
//! of a model whose weights do not fit in the caches (every weight is read once per token).

use std::time::Instant;

use crate::pool::ThreadPool;

/// Bytes per second that the threads of `pool` read together from a buffer of `bytes` bytes
/// (make it several times the last-level cache), best of `passes` passes after one warm-up.
pub fn read_bandwidth(pool: &ThreadPool, bytes: usize, passes: usize) -> f64 {
    let n = (bytes / 4).max(1 << 16);
    // Distinct values, so that no page is shared or zero-filled lazily.
    let buf: Vec<f32> = (0..n).map(|i| (i % 1024) as f32).collect();
    let chunk = n.div_ceil(pool.n_threads());
    let sums: Vec<std::sync::atomic::AtomicU32> = (0..pool.n_threads())
        .map(|_| std::sync::atomic::AtomicU32::new(0))
        .collect();
    let mut best = 0.0f64;
    for pass in 0..=passes {
        let t = Instant::now();
        pool.run(|i, _| {
            let part = &buf[(i * chunk).min(n)..((i + 1) * chunk).min(n)];
            let s = crate::vec::sum_f32(part);
            sums[i].store(s.to_bits(), std::sync::atomic::Ordering::Relaxed);
        });
        let secs = t.elapsed().as_secs_f64();
        if pass > 0 && secs > 0.0 {
            best = best.max((n * 4) as f64 / secs);
        }
    }
    std::hint::black_box(&sums);
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The probe reads the whole buffer and reports a plausible figure (between 100 MB/s and
    /// 10 TB/s on any machine this runs on).
    #[test]
    fn bandwidth_probe_gives_a_plausible_figure() {
        let pool = ThreadPool::new(2);
        let bw = read_bandwidth(&pool, 16 << 20, 2);
        assert!(bw > 1e8 && bw < 1e13, "{bw}");
    }
}
