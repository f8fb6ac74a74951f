//! One test per GGUF case of shared/RELIABILITY.md: each handcrafted bad file
//! must give a typed error, never a panic or a huge allocation.

use hearth_gguf::{GgufError, GgufFile};

/// Builds raw GGUF bytes field by field, so tests can write anything.
#[derive(Default, Clone)]
struct Raw(Vec<u8>);

impl Raw {
    fn header(version: u32, n_tensors: u64, n_kv: u64) -> Raw {
        let mut r = Raw::default();
        r.bytes(b"GGUF").u32(version).u64(n_tensors).u64(n_kv);
        r
    }
    fn bytes(&mut self, b: &[u8]) -> &mut Self {
        self.0.extend_from_slice(b);
        self
    }
    fn u32(&mut self, v: u32) -> &mut Self {
        self.bytes(&v.to_le_bytes())
    }
    fn u64(&mut self, v: u64) -> &mut Self {
        self.bytes(&v.to_le_bytes())
    }
    fn str(&mut self, s: &str) -> &mut Self {
        self.u64(s.len() as u64).bytes(s.as_bytes())
    }
    fn kv_u32(&mut self, key: &str, v: u32) -> &mut Self {
        self.str(key).u32(4).u32(v)
    }
    fn tensor(&mut self, name: &str, shape: &[u64], ty: u32, offset: u64) -> &mut Self {
        self.str(name).u32(shape.len() as u32);
        for &d in shape {
            self.u64(d);
        }
        self.u32(ty).u64(offset)
    }
    /// Pads to the 32-byte alignment and appends `n` data bytes.
    fn data(&mut self, n: usize) -> &mut Self {
        while !self.0.len().is_multiple_of(32) {
            self.0.push(0);
        }
        self.0.extend(std::iter::repeat_n(0x11u8, n));
        self
    }
    fn parse(&self) -> Result<GgufFile, GgufError> {
        GgufFile::parse(&self.0)
    }
}

macro_rules! assert_err {
    ($res:expr, $pat:pat) => {
        match $res {
            Err(e @ $pat) => {
                // The message must render (no panics in Display).
                assert!(!e.to_string().is_empty());
            }
            other => panic!("expected {}, got {:?}", stringify!($pat), other),
        }
    };
}

/// A valid file: one F32 tensor of 8 elements and one key.
fn valid() -> Raw {
    let mut r = Raw::header(3, 1, 1);
    r.kv_u32("general.x", 7).tensor("t", &[8], 0, 0).data(32);
    r
}

#[test]
fn the_valid_baseline_parses() {
    let f = valid().parse().expect("valid file");
    assert_eq!(f.tensors.len(), 1);
    assert_eq!(f.metadata.get_u32("general.x").unwrap(), 7);
    let bytes = valid().0;
    let data = f.tensor_data(&bytes, &f.tensors[0]).unwrap();
    assert_eq!(data, &[0x11u8; 32][..]);
}

#[test]
fn empty_file_is_rejected() {
    assert_err!(GgufFile::parse(&[]), GgufError::TooShort { len: 0 });
}

#[test]
fn one_to_three_bytes_are_rejected() {
    for n in 1..=3 {
        assert_err!(GgufFile::parse(&b"GGU"[..n]), GgufError::TooShort { .. });
    }
}

#[test]
fn exactly_the_magic_is_rejected() {
    assert_err!(GgufFile::parse(b"GGUF"), GgufError::TooShort { len: 4 });
}

#[test]
fn wrong_magic_is_rejected() {
    let mut r = valid();
    r.0[..4].copy_from_slice(b"GGML");
    assert_err!(r.parse(), GgufError::BadMagic { .. });
}

#[test]
fn big_endian_file_is_rejected() {
    let mut r = valid();
    r.0[4..8].copy_from_slice(&3u32.to_be_bytes());
    assert_err!(r.parse(), GgufError::BigEndian { .. });
}

#[test]
fn versions_0_1_and_4_are_rejected() {
    for v in [0u32, 1, 4] {
        let mut r = valid();
        r.0[4..8].copy_from_slice(&v.to_le_bytes());
        assert_err!(r.parse(), GgufError::UnsupportedVersion { .. });
    }
}

#[test]
fn version_2_is_accepted() {
    let mut r = valid();
    r.0[4..8].copy_from_slice(&2u32.to_le_bytes());
    assert_eq!(r.parse().unwrap().version, 2);
}

#[test]
fn n_tensors_u64_max_is_rejected_without_allocating() {
    let mut r = Raw::header(3, u64::MAX, 0);
    r.data(64);
    assert_err!(
        r.parse(),
        GgufError::CountTooLarge {
            what: "tensor info",
            ..
        }
    );
}

#[test]
fn n_kv_u64_max_is_rejected_without_allocating() {
    let mut r = Raw::header(3, 0, u64::MAX);
    r.data(64);
    assert_err!(
        r.parse(),
        GgufError::CountTooLarge {
            what: "metadata key",
            ..
        }
    );
}

#[test]
fn string_length_u64_max_is_rejected() {
    let mut r = Raw::header(3, 0, 1);
    r.u64(u64::MAX).bytes(b"abcdefghijklmnop");
    assert_err!(r.parse(), GgufError::StringTooLong { .. });
}

#[test]
fn string_length_beyond_the_file_is_rejected() {
    let mut r = Raw::header(3, 0, 1);
    r.str("k").u32(8).u64(1000).bytes(b"short");
    assert_err!(r.parse(), GgufError::StringTooLong { len: 1000, .. });
}

#[test]
fn array_count_times_element_size_beyond_file_is_rejected() {
    // 2^61 u64 elements: count * 8 overflows; 1000 u32 elements: 4000 > file.
    for (count, ty) in [(1u64 << 61, 10u32), (1000, 4)] {
        let mut r = Raw::header(3, 0, 1);
        r.str("arr").u32(9).u32(ty).u64(count).data(16);
        assert_err!(
            r.parse(),
            GgufError::CountTooLarge {
                what: "array element",
                ..
            }
        );
    }
}

#[test]
fn array_of_strings_with_huge_count_is_rejected() {
    let mut r = Raw::header(3, 0, 1);
    r.str("tokens").u32(9).u32(8).u64(u64::MAX / 2).str("a");
    assert_err!(r.parse(), GgufError::CountTooLarge { .. });
}

#[test]
fn nested_arrays_are_read() {
    // [[1u8, 2u8], [3u8]]
    let mut r = Raw::header(3, 0, 1);
    r.str("nested").u32(9).u32(9).u64(2);
    r.u32(0).u64(2).bytes(&[1, 2]);
    r.u32(0).u64(1).bytes(&[3]);
    let f = r.parse().unwrap();
    let a = f.metadata.get_array("nested").unwrap();
    use hearth_gguf::Array;
    assert_eq!(
        a,
        &Array::Array(vec![Array::U8(vec![1, 2]), Array::U8(vec![3])])
    );
}

#[test]
fn arrays_nested_too_deep_are_rejected() {
    let mut r = Raw::header(3, 0, 1);
    r.str("deep").u32(9);
    for _ in 0..100 {
        r.u32(9).u64(1);
    }
    r.u32(0).u64(0);
    assert_err!(r.parse(), GgufError::ArrayTooDeep { .. });
}

#[test]
fn unknown_value_type_is_rejected() {
    let mut r = Raw::header(3, 0, 1);
    r.str("k").u32(13).u64(0);
    assert_err!(
        r.parse(),
        GgufError::UnknownValueType { value_type: 13, .. }
    );
    let mut r = Raw::header(3, 0, 1);
    r.str("k").u32(9).u32(77).u64(0);
    assert_err!(
        r.parse(),
        GgufError::UnknownValueType { value_type: 77, .. }
    );
}

#[test]
fn duplicate_key_is_rejected() {
    let mut r = Raw::header(3, 0, 2);
    r.kv_u32("a", 1).kv_u32("a", 2);
    assert_err!(r.parse(), GgufError::DuplicateKey { .. });
}

#[test]
fn empty_key_is_rejected() {
    let mut r = Raw::header(3, 0, 1);
    r.kv_u32("", 1);
    assert_err!(r.parse(), GgufError::EmptyKey { .. });
}

#[test]
fn duplicate_tensor_name_is_rejected() {
    let mut r = Raw::header(3, 2, 0);
    r.tensor("t", &[8], 0, 0).tensor("t", &[8], 0, 32).data(64);
    assert_err!(r.parse(), GgufError::DuplicateTensor { .. });
}

#[test]
fn over_long_tensor_name_is_rejected() {
    let name = "x".repeat(64);
    let mut r = Raw::header(3, 1, 0);
    r.tensor(&name, &[8], 0, 0).data(32);
    assert_err!(r.parse(), GgufError::TensorNameTooLong { len: 64, .. });
}

#[test]
fn alignment_zero_is_rejected_without_division_by_zero() {
    let mut r = Raw::header(3, 1, 1);
    r.kv_u32("general.alignment", 0)
        .tensor("t", &[8], 0, 0)
        .data(32);
    assert_err!(r.parse(), GgufError::BadAlignment { .. });
}

#[test]
fn alignment_13_is_rejected() {
    let mut r = Raw::header(3, 1, 1);
    r.kv_u32("general.alignment", 13)
        .tensor("t", &[8], 0, 0)
        .data(32);
    assert_err!(r.parse(), GgufError::BadAlignment { .. });
}

#[test]
fn alignment_stored_as_a_string_is_rejected() {
    let mut r = Raw::header(3, 0, 1);
    r.str("general.alignment").u32(8).str("32");
    assert_err!(r.parse(), GgufError::BadAlignment { .. });
}

#[test]
fn alignment_64_is_honoured() {
    let mut r = Raw::header(3, 1, 1);
    r.kv_u32("general.alignment", 64).tensor("t", &[8], 0, 0);
    while !r.0.len().is_multiple_of(64) {
        r.0.push(0);
    }
    r.bytes(&[0x22; 32]);
    let f = r.parse().unwrap();
    assert_eq!(f.alignment, 64);
    assert_eq!(f.data_offset % 64, 0);
    assert_eq!(f.tensor_data(&r.0, &f.tensors[0]).unwrap(), &[0x22; 32][..]);
}

#[test]
fn n_dims_zero_is_rejected() {
    let mut r = Raw::header(3, 1, 0);
    r.tensor("t", &[], 0, 0).data(32);
    assert_err!(r.parse(), GgufError::BadDimCount { n_dims: 0, .. });
}

#[test]
fn n_dims_above_four_is_rejected() {
    let mut r = Raw::header(3, 1, 0);
    r.tensor("t", &[1, 1, 1, 1, 8], 0, 0).data(32);
    assert_err!(r.parse(), GgufError::BadDimCount { n_dims: 5, .. });
}

#[test]
fn a_dim_of_zero_is_rejected() {
    let mut r = Raw::header(3, 1, 0);
    r.tensor("t", &[8, 0], 0, 0).data(32);
    assert_err!(r.parse(), GgufError::ZeroDim { .. });
}

#[test]
fn dims_whose_product_overflows_are_rejected() {
    // ne = [4, 2^30-1, 2^30+1, 1] (llama.cpp #18674) overflows the byte size
    // of an F32 tensor; [2^32, 2^32, 2^32, 1] overflows the element count.
    let mut r = Raw::header(3, 1, 0);
    r.tensor("t", &[4, (1 << 30) - 1, (1 << 30) + 1, 1], 0, 0)
        .data(32);
    assert!(r.parse().is_err());
    let mut r = Raw::header(3, 1, 0);
    r.tensor("t", &[1 << 32, 1 << 32, 1 << 32, 1], 0, 0)
        .data(32);
    assert_err!(r.parse(), GgufError::ShapeOverflow { .. });
    let mut r = Raw::header(3, 1, 0);
    r.tensor("t", &[1 << 62, 4], 2, 0).data(32);
    assert_err!(r.parse(), GgufError::ShapeOverflow { .. });
}

#[test]
fn row_not_a_multiple_of_block_size_is_rejected() {
    // Q4_K (id 12) needs rows of 256.
    let mut r = Raw::header(3, 1, 0);
    r.tensor("t", &[640, 1], 12, 0).data(1024);
    assert_err!(r.parse(), GgufError::RowNotBlockAligned { ne0: 640, .. });
}

#[test]
fn unknown_tensor_type_is_rejected() {
    for ty in [4u32, 31, 99, u32::MAX] {
        let mut r = Raw::header(3, 1, 0);
        r.tensor("t", &[8], ty, 0).data(32);
        assert_err!(r.parse(), GgufError::UnknownTensorType { .. });
    }
}

#[test]
fn misaligned_tensor_offset_is_rejected() {
    let mut r = Raw::header(3, 1, 0);
    r.tensor("t", &[8], 0, 4).data(64);
    assert_err!(r.parse(), GgufError::MisalignedTensor { offset: 4, .. });
}

#[test]
fn tensor_beyond_the_file_is_rejected() {
    let mut r = Raw::header(3, 1, 0);
    r.tensor("t", &[8], 0, 32).data(32);
    assert_err!(r.parse(), GgufError::TensorOutOfBounds { .. });
}

#[test]
fn overlapping_tensors_are_rejected() {
    let mut r = Raw::header(3, 2, 0);
    r.tensor("a", &[16], 0, 0).tensor("b", &[8], 0, 32).data(96);
    assert_err!(r.parse(), GgufError::OverlappingTensors { .. });
}

#[test]
fn sizes_summing_past_u64_are_rejected() {
    // An offset near u64::MAX plus the tensor size overflows.
    let off = u64::MAX - 31;
    let mut r = Raw::header(3, 1, 0);
    r.tensor("t", &[64], 0, off).data(32);
    assert_err!(r.parse(), GgufError::TensorOutOfBounds { .. });
}

#[test]
fn truncated_download_is_rejected_before_any_read() {
    let mut r = Raw::header(3, 2, 0);
    r.tensor("a", &[8], 0, 0).tensor("b", &[8], 0, 32).data(64);
    assert!(r.parse().is_ok());
    // Cut inside the second tensor's data.
    let cut = Raw(r.0[..r.0.len() - 5].to_vec());
    assert_err!(cut.parse(), GgufError::TensorOutOfBounds { .. });
    // Cut at every length: never a panic, always an error.
    for len in 0..r.0.len() - 1 {
        assert!(GgufFile::parse(&r.0[..len]).is_err(), "len {len} parsed");
    }
}

#[test]
fn invalid_utf8_key_is_rejected() {
    let mut r = Raw::header(3, 0, 1);
    r.u64(2).bytes(&[0xff, 0xfe]).u32(4).u32(0);
    assert_err!(r.parse(), GgufError::InvalidUtf8 { .. });
}

#[test]
fn typed_accessors_name_the_key() {
    let mut r = Raw::header(3, 0, 2);
    r.kv_u32("llama.block_count", 300)
        .str("name")
        .u32(8)
        .str("x");
    let f = r.parse().unwrap();
    let m = &f.metadata;
    assert_eq!(m.get_u32("llama.block_count").unwrap(), 300);
    assert_eq!(m.get_u64("llama.block_count").unwrap(), 300);
    assert_err!(
        m.get_u8("llama.block_count"),
        GgufError::ValueOutOfRange { .. }
    );
    assert_err!(m.get_u32("name"), GgufError::WrongType { .. });
    match m.get_u32("llama.missing") {
        Err(GgufError::MissingKey { key }) => assert_eq!(key, "llama.missing"),
        other => panic!("{other:?}"),
    }
    assert_eq!(m.get_u32_opt("llama.missing").unwrap(), None);
}
