//! Bit-for-bit parity with gguf-py's numpy (de)quantizers (`gguf.quants`,
//! PyPI `gguf` 0.19.0) through `scripts/gguf_ref.py`.
//!
//! Dequantization: seeded random blocks (random bytes, with the f16 scales
//! replaced by finite values, typical and extreme) for every type gguf-py
//! dequantizes. Quantization: seeded random f32 blocks of many shapes (zero,
//! tiny, huge, negative maximum, exact rounding ties, ...) for every type
//! gguf-py quantizes. Every output f32 / byte must be identical.
//!
//! Needs `python3` with `gguf` and `numpy`; without them these tests fail
//! (they do not skip).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

use hearth_gguf::GgmlType;
use hearth_kernels::quant::{dequantize, f16_to_f32, quantize};

mod common;
use common::{hex, random_f32_blocks, Rng};

const INSTALL_HINT: &str = "pip install gguf==0.19.0 numpy";

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/gguf_ref.py")
}

/// Fails (never skips) when python3, numpy or gguf 0.19.0 is missing.
fn require_gguf() {
    let out = Command::new("python3")
        .args([
            "-c",
            "import numpy, gguf.quants, importlib.metadata as m; print(m.version('gguf'))",
        ])
        .output();
    let out = match out {
        Ok(o) => o,
        Err(e) => panic!("cannot run python3 ({e}); install Python 3 and run: {INSTALL_HINT}"),
    };
    assert!(
        out.status.success(),
        "python3 cannot import gguf/numpy: {}\nrun: {INSTALL_HINT}",
        String::from_utf8_lossy(&out.stderr)
    );
    let version = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert_eq!(
        version, "0.19.0",
        "parity is pinned to gguf 0.19.0, found {version}; run: {INSTALL_HINT}"
    );
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// Runs `gguf_ref.py OP TYPE` on `input` and returns its output bytes.
fn run_ref(op: &str, ty: GgmlType, input: &[u8]) -> Vec<u8> {
    require_gguf();
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!(
        "hearth-kernels-parity-{}-{}-{}-{n}",
        std::process::id(),
        op,
        ty.name()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let (inp, outp) = (dir.join("in.bin"), dir.join("out.bin"));
    std::fs::write(&inp, input).unwrap();
    let out = Command::new("python3")
        .arg(script())
        .args([op, ty.name()])
        .arg(&inp)
        .arg(&outp)
        .output()
        .expect("run python3");
    assert!(
        out.status.success(),
        "gguf_ref.py {op} {ty} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let bytes = std::fs::read(&outp).unwrap();
    std::fs::remove_dir_all(&dir).ok();
    bytes
}

// ------------------------------------------------------------ dequantization

/// A finite f16 scale: mostly typical magnitudes, sometimes extreme ones
/// (largest normal, subnormal, zero), random sign.
fn finite_f16(rng: &mut Rng) -> u16 {
    let sign = (rng.below(2) as u16) << 15;
    let exp = match rng.below(16) {
        0 => 0,                        // zero / subnormal
        1 => 30,                       // up to 65504
        2 => 1 + rng.below(3) as u16,  // smallest normals
        _ => 5 + rng.below(17) as u16, // ~2^-10 .. 2^6
    };
    let man = rng.below(1024) as u16;
    sign | (exp << 10) | man
}

/// Byte offsets of the f16 scales in a block of `ty`.
fn f16_fields(ty: GgmlType) -> &'static [usize] {
    use GgmlType as T;
    match ty {
        T::Q4_0 | T::Q5_0 | T::Q8_0 | T::IQ4_NL => &[0],
        T::Q4_1 | T::Q5_1 | T::Q4_K | T::Q5_K | T::IQ4_XS => &[0, 2],
        T::Q2_K => &[80, 82],
        T::Q3_K => &[108],
        T::Q6_K => &[208],
        T::IQ2_XXS | T::IQ2_XS | T::IQ2_S | T::IQ3_XXS | T::IQ3_S | T::IQ1_S => &[0],
        T::TQ1_0 => &[52],
        T::TQ2_0 => &[64],
        // No f16 scale (IQ1_M is handled apart; MXFP4/NVFP4 scales are
        // always finite).
        _ => &[],
    }
}

/// Random blocks of `ty` with finite scales.
fn random_blocks(ty: GgmlType, n_blocks: usize, seed: u64) -> Vec<u8> {
    let mut rng = Rng::new(seed);
    let ts = ty.type_size();
    let mut buf = vec![0u8; n_blocks * ts];
    rng.fill(&mut buf);
    for (i, block) in buf.chunks_exact_mut(ts).enumerate() {
        // A few fixed patterns first: all-zero and all-one quant bits.
        match i {
            0 => block.fill(0),
            1 => block.fill(0xff),
            _ => {}
        }
        for &off in f16_fields(ty) {
            block[off..off + 2].copy_from_slice(&finite_f16(&mut rng).to_le_bytes());
        }
        if ty == GgmlType::IQ1_M {
            // The f16 scale is split over the top nibbles of the four u16
            // at byte 48..56 (low nibble of the f16 in the first u16).
            let h = finite_f16(&mut rng);
            for k in 0..4 {
                let b = &mut block[48 + 2 * k + 1];
                *b = (*b & 0x0f) | ((((h >> (4 * k)) & 0x0f) as u8) << 4);
            }
        }
    }
    buf
}

fn f32s(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

fn check_dequant(ty: GgmlType, blocks: &[u8]) {
    let n = blocks.len() / ty.type_size() * ty.block_size();
    let mut ours = vec![0f32; n];
    dequantize(ty, blocks, &mut ours).unwrap();
    let theirs = f32s(&run_ref("dequant", ty, blocks));
    assert_eq!(
        theirs.len(),
        n,
        "{ty}: gguf-py returned {} values",
        theirs.len()
    );
    let mut mismatches = 0usize;
    let mut first = None;
    for (i, (a, b)) in ours.iter().zip(&theirs).enumerate() {
        if a.to_bits() != b.to_bits() {
            mismatches += 1;
            first.get_or_insert(i);
        }
    }
    if let Some(i) = first {
        let (bs, ts) = (ty.block_size(), ty.type_size());
        let blk = i / bs;
        panic!(
            "{ty} dequantization differs from gguf-py at block {blk}, element {} \
             (value {i}): ours {} ({:#010x}), gguf-py {} ({:#010x}); {mismatches} of {n} values \
             differ; block bytes {}",
            i % bs,
            ours[i],
            ours[i].to_bits(),
            theirs[i],
            theirs[i].to_bits(),
            hex(&blocks[blk * ts..(blk + 1) * ts]),
        );
    }
}

macro_rules! dequant_parity {
    ($($name:ident: $ty:ident, $blocks:expr;)*) => {$(
        #[test]
        fn $name() {
            let ty = GgmlType::$ty;
            check_dequant(ty, &random_blocks(ty, $blocks, 0x5eed_0000 + ty as u64));
        }
    )*};
}

dequant_parity! {
    dequant_q4_0: Q4_0, 4096;
    dequant_q4_1: Q4_1, 4096;
    dequant_q5_0: Q5_0, 4096;
    dequant_q5_1: Q5_1, 4096;
    dequant_q8_0: Q8_0, 4096;
    dequant_q2_k: Q2_K, 1024;
    dequant_q3_k: Q3_K, 1024;
    dequant_q4_k: Q4_K, 1024;
    dequant_q5_k: Q5_K, 1024;
    dequant_q6_k: Q6_K, 1024;
    dequant_iq2_xxs: IQ2_XXS, 1024;
    dequant_iq2_xs: IQ2_XS, 1024;
    dequant_iq2_s: IQ2_S, 1024;
    dequant_iq3_xxs: IQ3_XXS, 1024;
    dequant_iq3_s: IQ3_S, 1024;
    dequant_iq1_s: IQ1_S, 1024;
    dequant_iq1_m: IQ1_M, 1024;
    dequant_iq4_nl: IQ4_NL, 4096;
    dequant_iq4_xs: IQ4_XS, 1024;
    dequant_tq1_0: TQ1_0, 1024;
    dequant_tq2_0: TQ2_0, 1024;
    dequant_mxfp4: MXFP4, 4096;
    dequant_nvfp4: NVFP4, 2048;
}

/// F16 and BF16: every bit pattern, NaN payloads included (both sides keep
/// them); F32: random bit patterns, kept as they are.
#[test]
fn dequant_float_types_every_pattern() {
    let all: Vec<u8> = (0..=u16::MAX).flat_map(|h| h.to_le_bytes()).collect();
    check_dequant(GgmlType::F16, &all);
    check_dequant(GgmlType::BF16, &all);
    let mut rng = Rng::new(7);
    let mut f32_bytes = vec![0u8; 4 * 65536];
    rng.fill(&mut f32_bytes);
    check_dequant(GgmlType::F32, &f32_bytes);
}

// -------------------------------------------------------------- quantization

fn check_quant(ty: GgmlType, input: &[f32]) {
    let (bs, ts) = (ty.block_size(), ty.type_size());
    let mut ours = vec![0u8; input.len() / bs * ts];
    quantize(ty, input, &mut ours).unwrap();
    let in_bytes: Vec<u8> = input.iter().flat_map(|v| v.to_le_bytes()).collect();
    let theirs = run_ref("quant", ty, &in_bytes);
    assert_eq!(
        theirs.len(),
        ours.len(),
        "{ty}: gguf-py returned {} bytes",
        theirs.len()
    );
    if let Some(i) = ours.iter().zip(&theirs).position(|(a, b)| a != b) {
        let blk = i / ts;
        let n_bad = ours
            .chunks_exact(ts)
            .zip(theirs.chunks_exact(ts))
            .filter(|(a, b)| a != b)
            .count();
        panic!(
            "{ty} quantization differs from gguf-py in block {blk} (byte {} of the block); \
             {n_bad} of {} blocks differ\n ours:    {}\n gguf-py: {}\n input: {:?}",
            i % ts,
            ours.len() / ts,
            hex(&ours[blk * ts..(blk + 1) * ts]),
            hex(&theirs[blk * ts..(blk + 1) * ts]),
            &input[blk * bs..(blk + 1) * bs],
        );
    }
}

macro_rules! quant_parity {
    ($($name:ident: $ty:ident, $blocks:expr;)*) => {$(
        #[test]
        fn $name() {
            let ty = GgmlType::$ty;
            check_quant(ty, &random_f32_blocks(ty.block_size(), $blocks, 0xfeed_0000 + ty as u64));
        }
    )*};
}

quant_parity! {
    quant_q4_0: Q4_0, 4096;
    quant_q4_1: Q4_1, 4096;
    quant_q5_0: Q5_0, 4096;
    quant_q5_1: Q5_1, 4096;
    quant_q8_0: Q8_0, 4096;
    quant_tq1_0: TQ1_0, 1024;
    quant_tq2_0: TQ2_0, 1024;
    quant_mxfp4: MXFP4, 4096;
}

/// Special f32 values for the element-wise types: rounding ties of f16 and
/// bf16, subnormals, overflow, infinities, NaN payloads.
fn special_f32s() -> Vec<f32> {
    let mut rng = Rng::new(99);
    let mut v: Vec<f32> = [
        0.0f32,
        -0.0,
        1.0,
        -1.0,
        65504.0,
        65519.99,
        65520.0,
        1e-8,
        -1e-8,
        5.960_464_5e-8,
        2.980_232_2e-8,
        f32::MAX,
        f32::MIN_POSITIVE,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::NAN,
    ]
    .to_vec();
    for bits in [
        0x7f80_0001u32,
        0xffc0_1234,
        0x7fbf_ffff,
        0x7f80_2000,
        0x0000_0001,
        0x8000_0001,
    ] {
        v.push(f32::from_bits(bits));
    }
    for _ in 0..(1 << 18) {
        let r = rng.next() as u32;
        let bits = match rng.below(4) {
            0 => r,                               // anything, NaNs included
            1 => (r & 0xffff_0000) | 0x8000,      // bf16 tie
            2 => (r & 0xffff_e000) | 0x1000,      // f16 tie
            _ => (r & 0x83ff_ffff) | 0x3800_0000, // around the f16 range
        };
        v.push(f32::from_bits(bits));
    }
    v
}

#[test]
fn quant_float_types() {
    let v = special_f32s();
    check_quant(GgmlType::F32, &v);
    check_quant(GgmlType::F16, &v);
    check_quant(GgmlType::BF16, &v);
}

/// Non-finite input to the block quantizers: they must not panic, and (as
/// everywhere) agree with gguf-py.
#[test]
fn quant_non_finite_blocks() {
    for ty in [
        GgmlType::Q4_0,
        GgmlType::Q4_1,
        GgmlType::Q5_0,
        GgmlType::Q5_1,
        GgmlType::Q8_0,
        GgmlType::TQ1_0,
        GgmlType::TQ2_0,
        GgmlType::MXFP4,
    ] {
        let bs = ty.block_size();
        let mut x = random_f32_blocks(bs, 8, 3);
        for (k, special) in [f32::INFINITY, f32::NEG_INFINITY, f32::NAN]
            .into_iter()
            .enumerate()
        {
            x[k * bs + 1] = special;
        }
        x[3 * bs..4 * bs].fill(f32::INFINITY);
        check_quant(ty, &x);
    }
}

/// The scale generator really produces finite values (a NaN scale would make
/// the bit comparisons above meaningless).
#[test]
fn generated_scales_are_finite() {
    let mut rng = Rng::new(1);
    for _ in 0..10_000 {
        assert!(f16_to_f32(finite_f16(&mut rng)).is_finite());
    }
}
