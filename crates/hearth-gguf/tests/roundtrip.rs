//! `read(write(x)) == x` for arbitrary metadata and tensors.

use hearth_gguf::{Array, GgmlType, GgufFile, GgufWriter, Metadata, Value};
use proptest::prelude::*;

fn leaf_array() -> impl Strategy<Value = Array> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..8).prop_map(Array::U8),
        prop::collection::vec(any::<i8>(), 0..8).prop_map(Array::I8),
        prop::collection::vec(any::<u16>(), 0..8).prop_map(Array::U16),
        prop::collection::vec(any::<i16>(), 0..8).prop_map(Array::I16),
        prop::collection::vec(any::<u32>(), 0..8).prop_map(Array::U32),
        prop::collection::vec(any::<i32>(), 0..8).prop_map(Array::I32),
        prop::collection::vec(-1e30f32..1e30, 0..8).prop_map(Array::F32),
        prop::collection::vec(any::<bool>(), 0..8).prop_map(Array::Bool),
        prop::collection::vec(".{0,12}", 0..8).prop_map(Array::String),
        prop::collection::vec(any::<u64>(), 0..8).prop_map(Array::U64),
        prop::collection::vec(any::<i64>(), 0..8).prop_map(Array::I64),
        prop::collection::vec(-1e300f64..1e300, 0..8).prop_map(Array::F64),
    ]
}

fn array() -> impl Strategy<Value = Array> {
    leaf_array().prop_recursive(3, 16, 4, |inner| {
        prop::collection::vec(inner, 0..4).prop_map(Array::Array)
    })
}

fn value() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<u8>().prop_map(Value::U8),
        any::<i8>().prop_map(Value::I8),
        any::<u16>().prop_map(Value::U16),
        any::<i16>().prop_map(Value::I16),
        any::<u32>().prop_map(Value::U32),
        any::<i32>().prop_map(Value::I32),
        (-1e30f32..1e30f32).prop_map(Value::F32),
        any::<bool>().prop_map(Value::Bool),
        ".{0,40}".prop_map(Value::String),
        array().prop_map(Value::Array),
        any::<u64>().prop_map(Value::U64),
        any::<i64>().prop_map(Value::I64),
        (-1e300f64..1e300).prop_map(Value::F64),
    ]
}

/// (type, shape) pairs with whole blocks.
fn tensor_shape() -> impl Strategy<Value = (GgmlType, Vec<u64>)> {
    let types = prop::sample::select(vec![
        GgmlType::F32,
        GgmlType::F16,
        GgmlType::Q4_0,
        GgmlType::Q8_0,
        GgmlType::Q4_K,
        GgmlType::Q6_K,
        GgmlType::IQ4_XS,
    ]);
    (types, 1u64..3, prop::collection::vec(1u64..4, 0..3)).prop_map(|(ty, blocks, rest)| {
        let mut shape = vec![blocks * ty.block_size() as u64];
        shape.extend(rest);
        (ty, shape)
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn read_of_write_is_identity(
        kvs in prop::collection::btree_map("[a-z][a-z0-9._]{0,20}", value(), 0..12),
        tensors in prop::collection::vec((tensor_shape(), any::<u8>()), 0..6),
        alignment in prop::sample::select(vec![None, Some(8u32), Some(32), Some(64), Some(256)]),
    ) {
        let mut meta = Metadata::new();
        if let Some(a) = alignment {
            meta.insert("general.alignment", Value::U32(a)).unwrap();
        }
        for (k, v) in &kvs {
            if k != "general.alignment" {
                meta.insert(k.clone(), v.clone()).unwrap();
            }
        }
        let mut w = GgufWriter::with_metadata(meta.clone());
        let mut expected = Vec::new();
        for (i, ((ty, shape), fill)) in tensors.iter().enumerate() {
            let size = hearth_gguf::tensor_size(*ty, shape).unwrap() as usize;
            let data: Vec<u8> = (0..size).map(|j| fill.wrapping_add(j as u8)).collect();
            let name = format!("blk.{i}.w");
            w.add_tensor(name.clone(), *ty, shape, data.clone()).unwrap();
            expected.push((name, *ty, shape.clone(), data));
        }
        let mut bytes = Vec::new();
        let n = w.write_to(&mut bytes).unwrap();
        prop_assert_eq!(n as usize, bytes.len());

        let f = GgufFile::parse(&bytes).unwrap();
        prop_assert_eq!(f.version, 3);
        prop_assert_eq!(&f.metadata, &meta);
        prop_assert_eq!(f.alignment, u64::from(alignment.unwrap_or(32)));
        prop_assert_eq!(f.tensors.len(), expected.len());
        for (t, (name, ty, shape, data)) in f.tensors.iter().zip(&expected) {
            prop_assert_eq!(&t.name, name);
            prop_assert_eq!(t.ty, *ty);
            prop_assert_eq!(&t.shape, shape);
            prop_assert_eq!(t.offset % f.alignment, 0);
            prop_assert_eq!(f.tensor_data(&bytes, t).unwrap(), &data[..]);
        }
    }
}

#[test]
fn writer_rejects_wrong_data_size_and_duplicates() {
    let mut w = GgufWriter::new();
    assert!(w
        .add_tensor("a", GgmlType::Q4_0, &[32], vec![0u8; 17])
        .is_err());
    assert!(w
        .add_tensor("a", GgmlType::Q4_K, &[128], vec![0u8; 72])
        .is_err());
    w.add_tensor("a", GgmlType::Q4_0, &[32], vec![0u8; 18])
        .unwrap();
    assert!(w
        .add_tensor("a", GgmlType::Q4_0, &[32], vec![0u8; 18])
        .is_err());
}

/// Deferred tensors written by `write_streaming` give the same file as tensors added with their
/// bytes; a fill of the wrong size, or `write_to` with deferred tensors, is an error.
#[test]
fn streaming_writes_the_same_file() {
    let a: Vec<u8> = (0..34u8).collect();
    let b: Vec<u8> = (0..16u32).flat_map(|i| (i as f32).to_le_bytes()).collect();
    let mut whole = GgufWriter::new();
    whole
        .add_tensor("a", GgmlType::Q8_0, &[32], &a[..])
        .unwrap();
    whole
        .add_tensor("b", GgmlType::F32, &[4, 4], &b[..])
        .unwrap();
    let mut want = Vec::new();
    whole.write_to(&mut want).unwrap();

    let mut lazy = GgufWriter::new();
    lazy.add_tensor_deferred("a", GgmlType::Q8_0, &[32])
        .unwrap();
    lazy.add_tensor("b", GgmlType::F32, &[4, 4], &b[..])
        .unwrap();
    let mut got = Vec::new();
    lazy.write_streaming(&mut got, |i, w| {
        assert_eq!(i, 0);
        w.write_all(&a)?;
        Ok(())
    })
    .unwrap();
    assert_eq!(got, want);
    let file = GgufFile::parse(&got).unwrap();
    assert_eq!(file.tensors.len(), 2);

    assert!(lazy
        .write_streaming(Vec::new(), |_, w| Ok(w.write_all(&a[..10])?))
        .is_err());
    assert!(lazy.write_to(Vec::new()).is_err());
}
