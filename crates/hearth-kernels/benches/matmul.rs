//! Quantized matmul: decode (1 token, weight GB/s) and prefill (64/512
//! tokens, multiply-adds per second) for Q4_K, Q4_0 and Q8_0 matrices, at
//! every kernel level this machine supports, against the dequantize + f32 dot
//! baseline.
//!
//! ```sh
//! cargo bench -p hearth-kernels --bench matmul             # everything
//! cargo bench -p hearth-kernels --bench matmul -- decode   # a subset
//! cargo bench -p hearth-kernels --bench matmul -- batch    # decode steps of 2..16 sequences
//! ```
//! `HEARTH_BENCH_THREADS` sets the pool size (default: all CPUs).

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use hearth_gguf::GgmlType;
use hearth_kernels::cpu::{self, CpuLevel};
use hearth_kernels::matmul::{matmul, matmul_dequant_baseline, QMatrix};
use hearth_kernels::pool::ThreadPool;
use hearth_kernels::quant::{block_geometry, quantize};
use std::time::Duration;

const TYPES: [GgmlType; 3] = [GgmlType::Q4_K, GgmlType::Q4_0, GgmlType::Q8_0];

fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 2.0
        })
        .collect()
}

fn weights(ty: GgmlType, ne0: usize, n_rows: usize) -> Vec<u8> {
    let (bv, bb) = block_geometry(ty);
    let x = values(ne0 * n_rows, 42);
    let mut w = vec![0u8; ne0 * n_rows / bv * bb];
    quantize(ty, &x, &mut w).expect("quantizable type");
    w
}

fn pool() -> ThreadPool {
    match std::env::var("HEARTH_BENCH_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        Some(n) => ThreadPool::new(n),
        None => ThreadPool::with_available_parallelism(),
    }
}

/// What a benchmark runs: a kernel level, or the dequantize baseline.
fn variants() -> Vec<Option<CpuLevel>> {
    let mut v: Vec<Option<CpuLevel>> = CpuLevel::supported()
        // AMX kernels are not written yet: the level runs the AVX-512 ones.
        .filter(|&l| l != CpuLevel::Amx)
        .map(Some)
        .collect();
    v.push(None);
    v
}

fn name(v: Option<CpuLevel>) -> &'static str {
    v.map_or("dequant+dot", |l| l.name())
}

fn run(
    pool: &ThreadPool,
    m: &QMatrix<'_>,
    v: Option<CpuLevel>,
    x: &[f32],
    n: usize,
    out: &mut [f32],
) {
    match v {
        Some(_) => matmul(pool, m, x, n, out).expect("matmul"),
        None => matmul_dequant_baseline(pool, m, x, n, out).expect("baseline"),
    }
}

fn decode(c: &mut Criterion) {
    let pool = pool();
    eprintln!("{} | {} threads", cpu::describe(), pool.n_threads());
    for (n_rows, ne0) in [(2048usize, 2048usize), (8192, 2048)] {
        let mut g = c.benchmark_group(format!("decode/{n_rows}x{ne0}"));
        g.warm_up_time(Duration::from_millis(300))
            .measurement_time(Duration::from_secs(2))
            .sample_size(20);
        for ty in TYPES {
            let w = weights(ty, ne0, n_rows);
            let x = values(ne0, 7);
            let mut out = vec![0.0f32; n_rows];
            for v in variants() {
                let m = QMatrix::new(ty, &w[..], ne0, n_rows).expect("matrix");
                let m = m.with_level(v.unwrap_or(CpuLevel::Scalar)).expect("level");
                g.throughput(Throughput::Bytes(m.n_bytes() as u64));
                g.bench_function(BenchmarkId::new(ty.name(), name(v)), |b| {
                    b.iter(|| run(&pool, &m, v, &x, 1, &mut out))
                });
            }
        }
        g.finish();
    }
}

fn prefill(c: &mut Criterion) {
    let pool = pool();
    let (n_rows, ne0) = (2048usize, 2048usize);
    for n_tokens in [64usize, 512] {
        let mut g = c.benchmark_group(format!("prefill{n_tokens}/{n_rows}x{ne0}"));
        g.warm_up_time(Duration::from_millis(300))
            .measurement_time(Duration::from_secs(3))
            .sample_size(10);
        for ty in TYPES {
            let w = weights(ty, ne0, n_rows);
            let x = values(ne0 * n_tokens, 7);
            let mut out = vec![0.0f32; n_rows * n_tokens];
            for v in variants() {
                if v == Some(CpuLevel::Scalar) && n_tokens > 64 {
                    continue; // seconds per iteration; the 64-token figure tells enough
                }
                let m = QMatrix::new(ty, &w[..], ne0, n_rows).expect("matrix");
                let m = m.with_level(v.unwrap_or(CpuLevel::Scalar)).expect("level");
                // Elements = multiply-adds.
                g.throughput(Throughput::Elements((n_tokens * n_rows * ne0) as u64));
                g.bench_function(BenchmarkId::new(ty.name(), name(v)), |b| {
                    b.iter(|| run(&pool, &m, v, &x, n_tokens, &mut out))
                });
            }
        }
        g.finish();
    }
}

/// A decode step of several sequences: a few tokens through a wide matrix (Gemma 3's tied
/// 262k x 640 output projection is Q8_0 and dominates a batched step of that model).
fn batch(c: &mut Criterion) {
    let pool = pool();
    for (ty, n_rows, ne0) in [
        (GgmlType::Q8_0, 65536usize, 640usize),
        (GgmlType::Q4_K, 8192, 2048),
    ] {
        for n_tokens in [1usize, 2, 4, 8, 16] {
            let mut g = c.benchmark_group(format!("batch{n_tokens}/{n_rows}x{ne0}"));
            g.warm_up_time(Duration::from_millis(300))
                .measurement_time(Duration::from_secs(2))
                .sample_size(10);
            let w = weights(ty, ne0, n_rows);
            let x = values(ne0 * n_tokens, 7);
            let mut out = vec![0.0f32; n_rows * n_tokens];
            let m = QMatrix::new(ty, &w[..], ne0, n_rows).expect("matrix");
            g.throughput(Throughput::Elements((n_tokens * n_rows * ne0) as u64));
            g.bench_function(BenchmarkId::new(ty.name(), m.kernel_name()), |b| {
                b.iter(|| run(&pool, &m, Some(m.level()), &x, n_tokens, &mut out))
            });
            g.finish();
        }
    }
}

criterion_group!(benches, decode, prefill, batch);
criterion_main!(benches);
