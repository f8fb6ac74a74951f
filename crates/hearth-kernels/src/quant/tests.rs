//! Unit tests of the public API: round-trip error bounds, Q8_1/Q8_K
//! semantics, geometry and error handling. Parity with gguf-py and llama.cpp
//! is tested in `tests/`.

#![allow(clippy::needless_range_loop)]

use super::*;
use hearth_gguf::QK_K;

/// All types `quantize` handles, with the largest round-trip error llama.cpp's
/// tests/test-quantize-fns.cpp accepts for them (`MAX_QUANTIZATION_TOTAL_ERROR*`).
const ROUND_TRIP_BOUNDS: &[(GgmlType, f32)] = &[
    (GgmlType::F32, 0.002),
    (GgmlType::F16, 0.002),
    (GgmlType::BF16, 0.002),
    (GgmlType::Q4_0, 0.002),
    (GgmlType::Q4_1, 0.002),
    (GgmlType::Q5_0, 0.002),
    (GgmlType::Q5_1, 0.002),
    (GgmlType::Q8_0, 0.002),
    (GgmlType::Q8_1, 0.002),
    (GgmlType::Q2_K, 0.0075), // MAX_QUANTIZATION_TOTAL_ERROR_2BITS
    (GgmlType::Q3_K, 0.0040), // MAX_QUANTIZATION_TOTAL_ERROR_3BITS
    (GgmlType::Q4_K, 0.002),
    (GgmlType::Q5_K, 0.002),
    (GgmlType::Q6_K, 0.002),
    (GgmlType::Q8_K, 0.002),
    (GgmlType::IQ4_NL, 0.002),
    (GgmlType::IQ4_XS, 0.002),
    (GgmlType::TQ1_0, 0.01), // MAX_QUANTIZATION_TOTAL_ERROR_TERNARY
    (GgmlType::TQ2_0, 0.01),
    (GgmlType::MXFP4, 0.002),
    (GgmlType::NVFP4, 0.003), // MAX_QUANTIZATION_TOTAL_ERROR_FP4
];

/// test-quantize-fns.cpp `generate_data`: `0.1 + amplitude * cosf(i + offset)`
/// (the sum in double, as there).
fn generate_data(offset: f32, n: usize) -> Vec<f32> {
    (0..n)
        .map(|i| (0.1 + f64::from(2.0 * (i as f32 + offset).cos())) as f32)
        .collect()
}

/// test-quantize-fns.cpp `array_rmse` (sqrt of the f64 squared-error sum, / n).
fn array_rmse(a: &[f32], b: &[f32]) -> f32 {
    let sum: f64 = a
        .iter()
        .zip(b)
        .map(|(&x, &y)| {
            let d = f64::from(x - y);
            d * d
        })
        .sum();
    (sum.sqrt() as f32) / a.len() as f32
}

fn round_trip(ty: GgmlType, x: &[f32]) -> Vec<f32> {
    let (bv, bb) = block_geometry(ty);
    let mut q = vec![0u8; x.len() / bv * bb];
    quantize(ty, x, &mut q).unwrap();
    let mut y = vec![0f32; x.len()];
    dequantize(ty, &q, &mut y).unwrap();
    y
}

#[test]
fn round_trip_error_within_llama_cpp_bounds() {
    // test_size = 32 * 128 in test-quantize-fns.cpp.
    let x = generate_data(0.0, 32 * 128);
    for &(ty, bound) in ROUND_TRIP_BOUNDS {
        let err = array_rmse(&x, &round_trip(ty, &x));
        assert!(err < bound, "{ty}: round-trip error {err} >= {bound}");
        if ty == GgmlType::F32 {
            assert_eq!(err, 0.0);
        } else {
            assert!(err > 0.0, "{ty}: a lossy type cannot be exact here");
        }
    }
    // Every quantizable type is covered.
    for &ty in GgmlType::ALL {
        assert_eq!(
            supports_quantize(ty),
            ROUND_TRIP_BOUNDS.iter().any(|&(t, _)| t == ty),
            "{ty}"
        );
    }
}

#[test]
fn round_trip_error_shrinks_with_bits() {
    let x = generate_data(1.0, 4096);
    let err = |ty| array_rmse(&x, &round_trip(ty, &x));
    assert!(err(GgmlType::Q2_K) > err(GgmlType::Q3_K));
    assert!(err(GgmlType::Q3_K) > err(GgmlType::Q4_K));
    assert!(err(GgmlType::Q4_K) > err(GgmlType::Q5_K));
    assert!(err(GgmlType::Q5_K) > err(GgmlType::Q6_K));
    assert!(err(GgmlType::Q6_K) > err(GgmlType::Q8_K));
    assert!(err(GgmlType::Q4_0) > err(GgmlType::Q8_0));
}

#[test]
fn q8_1_semantics() {
    // amax 127 gives d = 1: quants are x rounded half away from zero.
    let mut x = [0f32; 32];
    for (j, v) in x.iter_mut().enumerate() {
        *v = j as f32 - 16.0 + 0.5;
    }
    x[0] = -127.0;
    x[1] = 2.5;
    x[2] = -2.5;
    let mut q = [0u8; 36];
    quantize(GgmlType::Q8_1, &x, &mut q).unwrap();
    let b = BlockQ8_1::decode(&q);
    assert_eq!(f16_to_f32(b.d), 1.0);
    assert_eq!(b.qs[0], -127);
    assert_eq!(b.qs[1], 3);
    assert_eq!(b.qs[2], -3);
    for j in 3..32 {
        assert_eq!(f32::from(b.qs[j]), x[j].round(), "j={j}");
    }
    let sum: i32 = b.qs.iter().map(|&v| i32::from(v)).sum();
    assert_eq!(b.s, f32_to_f16(sum as f32 * 1.0));

    // Dequantization is qs * d; the sum field plays no part.
    let mut y = [0f32; 32];
    dequantize(GgmlType::Q8_1, &q, &mut y).unwrap();
    for j in 0..32 {
        assert_eq!(y[j], f32::from(b.qs[j]));
    }
    q[2..4].copy_from_slice(&0x7c00u16.to_le_bytes());
    let mut y2 = [0f32; 32];
    dequantize(GgmlType::Q8_1, &q, &mut y2).unwrap();
    assert_eq!(y, y2);

    // A general block: d = amax / 127 in f16, s = d * sum(qs).
    let x: Vec<f32> = (0..32)
        .map(|j| ((j * 37 % 23) as f32 - 11.0) * 0.013)
        .collect();
    quantize(GgmlType::Q8_1, &x, &mut q).unwrap();
    let b = BlockQ8_1::decode(&q);
    let amax = x.iter().fold(0f32, |m, v| m.max(v.abs()));
    let d = amax / 127.0;
    assert_eq!(b.d, f32_to_f16(d));
    for j in 0..32 {
        assert_eq!(f32::from(b.qs[j]), (x[j] * (1.0 / d)).round());
    }
    let sum: i32 = b.qs.iter().map(|&v| i32::from(v)).sum();
    assert_eq!(b.s, f32_to_f16(sum as f32 * d));
}

#[test]
fn q8_k_semantics() {
    // max = -127 gives iscale = 1: quants are x rounded half to even
    // (ggml's nearest_int), d = 1 / iscale in f32.
    let mut x = [0f32; QK_K];
    for (j, v) in x.iter_mut().enumerate() {
        *v = (j % 61) as f32 - 30.0 + if j % 2 == 0 { 0.5 } else { 0.25 };
    }
    x[5] = -127.0;
    x[6] = 2.5;
    x[7] = 3.5;
    let mut q = vec![0u8; 292];
    quantize(GgmlType::Q8_K, &x, &mut q).unwrap();
    let b = BlockQ8K::decode(&q);
    assert_eq!(b.d, 1.0);
    assert_eq!(b.qs[5], -127);
    assert_eq!(b.qs[6], 2);
    assert_eq!(b.qs[7], 4);
    for j in 0..QK_K {
        assert_eq!(f32::from(b.qs[j]), x[j].round_ties_even(), "j={j}");
    }
    for g in 0..16 {
        let s: i32 = b.qs[16 * g..16 * g + 16]
            .iter()
            .map(|&v| i32::from(v))
            .sum();
        assert_eq!(i32::from(b.bsums[g]), s);
    }
    let mut y = vec![0f32; QK_K];
    dequantize(GgmlType::Q8_K, &q, &mut y).unwrap();
    for j in 0..QK_K {
        assert_eq!(y[j], b.d * f32::from(b.qs[j]));
    }

    // A positive maximum gives a negative d (iscale = -127 / max).
    let x: Vec<f32> = (0..QK_K).map(|j| (j as f32 * 0.37).sin()).collect();
    quantize(GgmlType::Q8_K, &x, &mut q).unwrap();
    let b = BlockQ8K::decode(&q);
    let (mut max, mut amax) = (0f32, 0f32);
    for &v in &x {
        if v.abs() > amax {
            amax = v.abs();
            max = v;
        }
    }
    assert_eq!(b.d, 1.0 / (-127.0 / max));
    dequantize(GgmlType::Q8_K, &q, &mut y).unwrap();
    for (a, b) in x.iter().zip(&y) {
        assert!((a - b).abs() <= amax / 127.0 * 0.5 + 1e-6);
    }

    // A zero block is all zero, bsums included.
    quantize(GgmlType::Q8_K, &[0.0; QK_K], &mut q).unwrap();
    assert!(q.iter().all(|&v| v == 0));
}

#[test]
fn geometry_matches_ggml() {
    for &ty in GgmlType::ALL {
        let (v, b) = block_geometry(ty);
        if ty == GgmlType::Q8_1 {
            // sizeof(block_q8_1) in ggml; gguf-py's table says 40.
            assert_eq!((v, b), (32, 36));
        } else {
            assert_eq!((v, b), (ty.block_size(), ty.type_size()), "{ty}");
        }
    }
}

#[test]
fn malformed_lengths_are_errors() {
    let mut out = vec![0f32; 512];
    let bytes = vec![0u8; 1024];
    let err = dequantize(GgmlType::Q4_K, &bytes[..143], &mut out[..256]).unwrap_err();
    assert_eq!(
        err,
        QuantError::LengthMismatch {
            ty: GgmlType::Q4_K,
            bytes: 143,
            values: 256,
            block_values: 256,
            block_bytes: 144
        }
    );
    assert!(err.to_string().contains("143 bytes"), "{err}");
    assert!(dequantize(GgmlType::Q4_K, &bytes[..144], &mut out[..255]).is_err());
    assert!(dequantize(GgmlType::Q4_K, &bytes[..288], &mut out[..256]).is_err());
    assert!(dequantize(GgmlType::Q4_K, &bytes[..144], &mut out[..512]).is_err());
    assert!(dequantize(GgmlType::Q8_1, &bytes[..40], &mut out[..32]).is_err());
    assert!(dequantize(GgmlType::F32, &bytes[..3], &mut out[..1]).is_err());
    assert!(dequantize(GgmlType::F16, &bytes[..4], &mut out[..1]).is_err());
    assert!(dequantize(GgmlType::Q4_K, &bytes[..288], &mut out[..512]).is_ok());
    assert!(dequantize(GgmlType::Q8_1, &bytes[..36], &mut out[..32]).is_ok());
    assert!(dequantize(GgmlType::Q4_0, &[], &mut []).is_ok());

    let x = vec![0.5f32; 512];
    let mut q = vec![0u8; 1024];
    assert!(matches!(
        quantize(GgmlType::Q4_0, &x[..31], &mut q[..18]),
        Err(QuantError::LengthMismatch { values: 31, .. })
    ));
    assert!(quantize(GgmlType::Q4_0, &x[..32], &mut q[..17]).is_err());
    assert!(quantize(GgmlType::Q4_0, &x[..64], &mut q[..18]).is_err());
    assert!(quantize(GgmlType::NVFP4, &x[..32], &mut q[..18]).is_err());
    assert!(quantize(GgmlType::Q4_0, &x[..64], &mut q[..36]).is_ok());
}

#[test]
fn unsupported_types_are_errors() {
    let expected_dequant_only = [
        GgmlType::IQ2_XXS,
        GgmlType::IQ2_XS,
        GgmlType::IQ2_S,
        GgmlType::IQ3_XXS,
        GgmlType::IQ3_S,
        GgmlType::IQ1_S,
        GgmlType::IQ1_M,
    ];
    let neither = [
        GgmlType::I8,
        GgmlType::I16,
        GgmlType::I32,
        GgmlType::I64,
        GgmlType::F64,
        GgmlType::Q1_0,
    ];
    for &ty in GgmlType::ALL {
        let dq = !neither.contains(&ty);
        let q = dq && !expected_dequant_only.contains(&ty);
        assert_eq!(supports_dequantize(ty), dq, "{ty}");
        assert_eq!(supports_quantize(ty), q, "{ty}");
    }
    let err = quantize(GgmlType::IQ2_XXS, &[0.0; 256], &mut [0u8; 66]).unwrap_err();
    assert_eq!(
        err,
        QuantError::Unsupported {
            ty: GgmlType::IQ2_XXS,
            op: Op::Quantize
        }
    );
    assert_eq!(
        err.to_string(),
        "quantization is not implemented for IQ2_XXS"
    );
    // Unsupported wins over a length problem.
    assert!(matches!(
        dequantize(GgmlType::I8, &[0u8; 3], &mut [0f32; 1]),
        Err(QuantError::Unsupported {
            op: Op::Dequantize,
            ..
        })
    ));
}

/// xorshift64*, for byte soup.
fn soup(n: usize, seed: u64) -> Vec<u8> {
    let mut s = seed | 1;
    (0..n)
        .map(|_| {
            s ^= s >> 12;
            s ^= s << 25;
            s ^= s >> 27;
            (s.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 56) as u8
        })
        .collect()
}

#[test]
fn any_bytes_dequantize_without_panic() {
    for &ty in GgmlType::ALL.iter().filter(|&&t| supports_dequantize(t)) {
        let (bv, bb) = block_geometry(ty);
        for bytes in [
            vec![0xffu8; 64 * bb],
            vec![0u8; 64 * bb],
            soup(64 * bb, ty as u64 + 1),
        ] {
            let mut out = vec![0f32; 64 * bv];
            dequantize(ty, &bytes, &mut out).unwrap();
        }
    }
}

#[test]
fn any_floats_quantize_without_panic() {
    let specials = [
        f32::NAN,
        -f32::NAN,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::MAX,
        f32::MIN,
        f32::MIN_POSITIVE,
        1e-45,
        -0.0,
        0.0,
        4194304.0,
        -1e20,
    ];
    let mut x: Vec<f32> = Vec::new();
    // Blocks made of one special value, and blocks mixing them with normal values.
    for (k, &s) in specials.iter().enumerate() {
        x.extend([s; 256]);
        x.extend((0..256).map(|j| {
            if j % 7 == k % 7 {
                s
            } else {
                (j as f32 * 0.1).sin()
            }
        }));
    }
    x.extend(
        soup(4 * 256 * 4, 5)
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
    );
    for &ty in GgmlType::ALL.iter().filter(|&&t| supports_quantize(t)) {
        let (bv, bb) = block_geometry(ty);
        let mut q = vec![0u8; x.len() / bv * bb];
        quantize(ty, &x, &mut q).unwrap();
        let mut y = vec![0f32; x.len()];
        dequantize(ty, &q, &mut y).unwrap();
    }
}

/// `encode(decode(bytes)) == bytes` for every block struct.
#[test]
fn blocks_round_trip_through_their_structs() {
    fn check<B: Block>(seed: u64) {
        let bytes = soup(B::BYTES * 8, seed);
        let mut out = vec![0u8; bytes.len()];
        for (src, dst) in bytes
            .chunks_exact(B::BYTES)
            .zip(out.chunks_exact_mut(B::BYTES))
        {
            B::decode(src).encode(dst);
        }
        assert_eq!(bytes, out, "{}", std::any::type_name::<B>());
    }
    check::<BlockQ4_0>(1);
    check::<BlockQ4_1>(2);
    check::<BlockQ5_0>(3);
    check::<BlockQ5_1>(4);
    check::<BlockQ8_0>(5);
    check::<BlockQ8_1>(6);
    check::<BlockQ2K>(7);
    check::<BlockQ3K>(8);
    check::<BlockQ4K>(9);
    check::<BlockQ5K>(10);
    check::<BlockQ6K>(11);
    check::<BlockQ8K>(12);
    check::<BlockIQ2XXS>(13);
    check::<BlockIQ2XS>(14);
    check::<BlockIQ2S>(15);
    check::<BlockIQ3XXS>(16);
    check::<BlockIQ3S>(17);
    check::<BlockIQ1S>(18);
    check::<BlockIQ1M>(19);
    check::<BlockIQ4NL>(20);
    check::<BlockIQ4XS>(21);
    check::<BlockTQ1_0>(22);
    check::<BlockTQ2_0>(23);
    check::<BlockMXFP4>(24);
    check::<BlockNVFP4>(25);
}

#[test]
fn known_values() {
    // Q4_0: d = max / -8 with max the signed value of largest magnitude.
    let mut x = [0f32; 32];
    x[3] = -8.0;
    x[4] = 3.0;
    x[20] = 8.0; // same magnitude later: the first one wins
    let mut q = [0u8; 18];
    quantize(GgmlType::Q4_0, &x, &mut q).unwrap();
    let b = BlockQ4_0::decode(&q);
    assert_eq!(f16_to_f32(b.d), 1.0);
    let mut y = [0f32; 32];
    dequantize(GgmlType::Q4_0, &q, &mut y).unwrap();
    assert_eq!(y[3], -8.0);
    assert_eq!(y[4], 3.0);
    assert_eq!(y[20], 7.0); // clipped to q = 15
    assert_eq!(y[0], 0.0);

    // IQ4_NL: d * kvalues_iq4nl[q].
    let mut blk = [0u8; 18];
    blk[..2].copy_from_slice(&f32_to_f16(0.5).to_le_bytes());
    blk[2] = 0xf0; // weight 0 -> index 0 (-127), weight 16 -> index 15 (113)
    dequantize(GgmlType::IQ4_NL, &blk, &mut y).unwrap();
    assert_eq!((y[0], y[16]), (-63.5, 56.5));

    // MXFP4: e = 128 gives d = 1 (half of 2^1); index 7 is 12, index 15 is -12.
    let mut blk = [0u8; 17];
    blk[0] = 128;
    blk[1] = 0xf7;
    dequantize(GgmlType::MXFP4, &blk, &mut y).unwrap();
    assert_eq!((y[0], y[16]), (12.0, -12.0));
}
