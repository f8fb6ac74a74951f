//! Byte-identity with llama.cpp's reference quantizers (ggml-quants.c), for
//! every type `quantize` implements except the element-wise ones.
//!
//! Needs llama.cpp's ggml sources: `LLAMA_CPP_DIR` if set, else the tree
//! unpacked from the llama-cpp-python sdist by
//! `hearth_store::llama_cpp_ggml_dir()` (fetched on first use). It builds
//! `tests/llama_cpp_ref/harness.c` with `cc` against `ggml-quants.c`, with
//! the flags ggml-base gets in a default build: no `-march`, so no FMA
//! contraction, and no `-ffast-math`.
//!
//! `golden_hashes_match_llama_cpp` (not ignored) pins FNV-1a hashes of
//! llama.cpp's output on inputs built without libm, printed by the ignored
//! `print_llama_cpp_golden_hashes`, so plain `cargo test` still guards the
//! byte-identity.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

use hearth_gguf::GgmlType;
use hearth_kernels::quant::{block_geometry, quantize};

mod common;
use common::{hex, random_f32_blocks, Rng};

/// Builds the harness once; returns its path.
fn harness() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let llama = match std::env::var_os("LLAMA_CPP_DIR") {
            Some(dir) => PathBuf::from(dir),
            None => hearth_store::llama_cpp_ggml_dir()
                .expect("llama.cpp's ggml sources (scripts/fetch-fixtures.sh)"),
        };
        let ggml = llama.join("ggml");
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/llama_cpp_ref/harness.c");
        let bin = Path::new(env!("CARGO_TARGET_TMPDIR")).join("llama_cpp_ref_harness");
        let out = Command::new("cc")
            .args(["-O2", "-std=c11", "-DNDEBUG"])
            .arg("-I")
            .arg(ggml.join("include"))
            .arg("-I")
            .arg(ggml.join("src"))
            .arg(&src)
            .arg(ggml.join("src/ggml-quants.c"))
            .args(["-lm", "-o"])
            .arg(&bin)
            .output()
            .expect("run cc");
        assert!(
            out.status.success(),
            "building the llama.cpp harness failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        bin
    })
}

/// llama.cpp's bytes for `input` quantized as `ty` in rows of `n_per_row`.
fn reference(ty: GgmlType, n_per_row: usize, input: &[f32]) -> Vec<u8> {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "llama-cpp-ref-{}-{}-{}",
        std::process::id(),
        ty.name(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let (inp, outp) = (dir.join("in.f32"), dir.join("out.bin"));
    let bytes: Vec<u8> = input.iter().flat_map(|v| v.to_le_bytes()).collect();
    std::fs::write(&inp, bytes).unwrap();
    let out = Command::new(harness())
        .arg(ty.name())
        .arg(n_per_row.to_string())
        .arg(&inp)
        .arg(&outp)
        .output()
        .expect("run harness");
    assert!(
        out.status.success(),
        "harness {ty}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bytes = std::fs::read(&outp).unwrap();
    std::fs::remove_dir_all(&dir).ok();
    bytes
}

/// test-quantize-fns.cpp's synthetic data: `0.1 + amplitude * cos(i + offset)`.
fn synthetic(n: usize, offset: f32, amplitude: f32) -> Vec<f32> {
    (0..n)
        .map(|i| (0.1 + f64::from(amplitude * (i as f32 + offset).cos())) as f32)
        .collect()
}

/// Weight-like rows: normal values, a per-row scale, rare outliers.
fn weight_like(n: usize, seed: u64) -> Vec<f32> {
    let mut rng = Rng::new(seed);
    let mut out = Vec::with_capacity(n);
    for _row in 0..n / 1024 {
        let scale = 0.01 + 0.2 * rng.unit();
        for _ in 0..1024 {
            let outlier = if rng.below(500) == 0 { 20.0 } else { 1.0 };
            out.push(rng.normal() * scale * outlier);
        }
    }
    out
}

fn inputs(ty: GgmlType) -> Vec<(String, Vec<f32>)> {
    let mut v = vec![
        ("synthetic(0, 2)".to_string(), synthetic(4096, 0.0, 2.0)),
        ("synthetic(1, 2)".to_string(), synthetic(4096, 1.0, 2.0)),
        ("synthetic(3, 1)".to_string(), synthetic(4096, 3.0, 1.0)),
        ("synthetic(4, 1.5)".to_string(), synthetic(4096, 4.0, 1.5)),
        ("weight_like".to_string(), weight_like(1 << 18, 11)),
    ];
    for (k, block) in [256usize, ty.block_size()].into_iter().enumerate() {
        let n_blocks = (1 << 18) / block;
        v.push((
            format!("random_f32_blocks({block})"),
            random_f32_blocks(block, n_blocks, 0xc0ffee + k as u64),
        ));
    }
    v
}

fn check(ty: GgmlType) {
    let (bs, ts) = block_geometry(ty);
    for (name, input) in inputs(ty) {
        assert_eq!(input.len() % 1024, 0);
        let expected = reference(ty, 1024, &input);
        let mut ours = vec![0u8; input.len() / bs * ts];
        quantize(ty, &input, &mut ours).unwrap();
        assert_eq!(expected.len(), ours.len());
        let bad: Vec<usize> = (0..ours.len() / ts)
            .filter(|&b| ours[b * ts..(b + 1) * ts] != expected[b * ts..(b + 1) * ts])
            .collect();
        if let Some(&b) = bad.first() {
            panic!(
                "{ty} on {name}: {} of {} blocks differ from llama.cpp; first is block {b}\n \
                 ours:      {}\n llama.cpp: {}\n input: {:?}",
                bad.len(),
                ours.len() / ts,
                hex(&ours[b * ts..(b + 1) * ts]),
                hex(&expected[b * ts..(b + 1) * ts]),
                &input[b * bs..(b + 1) * bs],
            );
        }
    }
}

macro_rules! llama_cpp_ref {
    ($($name:ident: $ty:ident;)*) => {$(
        #[test]
        fn $name() {
            check(GgmlType::$ty);
        }
    )*};
}

/// Inputs of the golden hashes: PRNG-made only (no libm), so they are the
/// same on every machine.
fn golden_inputs(ty: GgmlType) -> Vec<f32> {
    let mut v = weight_like(1 << 16, 21);
    v.extend(random_f32_blocks(256, 256, 22));
    v.extend(random_f32_blocks(
        ty.block_size(),
        (1 << 16) / ty.block_size(),
        23,
    ));
    v
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

const GOLDEN_TYPES: [GgmlType; 18] = [
    GgmlType::Q4_0,
    GgmlType::Q4_1,
    GgmlType::Q5_0,
    GgmlType::Q5_1,
    GgmlType::Q8_0,
    GgmlType::Q8_1,
    GgmlType::Q2_K,
    GgmlType::Q3_K,
    GgmlType::Q4_K,
    GgmlType::Q5_K,
    GgmlType::Q6_K,
    GgmlType::Q8_K,
    GgmlType::IQ4_NL,
    GgmlType::IQ4_XS,
    GgmlType::TQ1_0,
    GgmlType::TQ2_0,
    GgmlType::MXFP4,
    GgmlType::NVFP4,
];

/// FNV-1a of llama.cpp's bytes for `golden_inputs(ty)`, from
/// `print_llama_cpp_golden_hashes` (llama.cpp as vendored by
/// llama-cpp-python 0.3.36).
const GOLDEN: [(GgmlType, u64); 18] = [
    (GgmlType::Q4_0, 0x9fa02f4b01411160),
    (GgmlType::Q4_1, 0x3b9f14f9886163c7),
    (GgmlType::Q5_0, 0xe8b6c3242ff17456),
    (GgmlType::Q5_1, 0x7c0c06cfd8ed6206),
    (GgmlType::Q8_0, 0x7875973d1ed381a0),
    (GgmlType::Q8_1, 0xac83fb83fe50bf32),
    (GgmlType::Q2_K, 0x7632c725bc49c6f5),
    (GgmlType::Q3_K, 0xe6d43718a0907777),
    (GgmlType::Q4_K, 0x7afcb487de9cb982),
    (GgmlType::Q5_K, 0xe8e80aa130e3ecb4),
    (GgmlType::Q6_K, 0x7acff918c18630d1),
    (GgmlType::Q8_K, 0xb9e78199d514e45f),
    (GgmlType::IQ4_NL, 0x7551cf7678458921),
    (GgmlType::IQ4_XS, 0x6b4cc925900448cd),
    (GgmlType::TQ1_0, 0xc8982a10096c0fce),
    (GgmlType::TQ2_0, 0x6df505e756e39364),
    (GgmlType::MXFP4, 0x418f02d14e11815f),
    (GgmlType::NVFP4, 0x647d8f3977e813ba),
];

#[test]
fn golden_hashes_match_llama_cpp() {
    for (ty, want) in GOLDEN {
        let input = golden_inputs(ty);
        let (bs, ts) = block_geometry(ty);
        let mut ours = vec![0u8; input.len() / bs * ts];
        quantize(ty, &input, &mut ours).unwrap();
        assert_eq!(
            fnv1a(&ours),
            want,
            "{ty}: quantized bytes no longer hash to llama.cpp's; run the ignored \
             tests of this file with LLAMA_CPP_DIR to see where they differ"
        );
    }
}

#[test]
#[ignore = "needs LLAMA_CPP_DIR (a llama.cpp source tree) and cc"]
fn print_llama_cpp_golden_hashes() {
    for ty in GOLDEN_TYPES {
        let h = fnv1a(&reference(ty, 1024, &golden_inputs(ty)));
        println!("    (GgmlType::{}, {h:#018x}),", ty.name());
    }
}

llama_cpp_ref! {
    q4_0: Q4_0;
    q4_1: Q4_1;
    q5_0: Q5_0;
    q5_1: Q5_1;
    q8_0: Q8_0;
    q8_1: Q8_1;
    q2_k: Q2_K;
    q3_k: Q3_K;
    q4_k: Q4_K;
    q5_k: Q5_K;
    q6_k: Q6_K;
    q8_k: Q8_K;
    iq4_nl: IQ4_NL;
    iq4_xs: IQ4_XS;
    tq1_0: TQ1_0;
    tq2_0: TQ2_0;
    mxfp4: MXFP4;
    nvfp4: NVFP4;
}
