//! Properties: parsing arbitrary bytes never panics; every tensor view of a
//! parsed file is in bounds; writing a parsed file and reading it back gives
//! the same metadata, tensors and data.
#![no_main]

use hearth_gguf::{GgufFile, GgufWriter};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(file) = GgufFile::parse(data) else {
        return;
    };
    let mut writer = GgufWriter::with_metadata(file.metadata.clone());
    for t in &file.tensors {
        let bytes = file.tensor_data(data, t).expect("parsed tensors are in bounds");
        assert_eq!(bytes.len() as u64, t.size);
        writer
            .add_tensor(t.name.clone(), t.ty, &t.shape, bytes)
            .expect("a parsed tensor can be written");
    }
    let mut out = Vec::new();
    writer.write_to(&mut out).expect("writing to memory");
    let again = GgufFile::parse(&out).expect("a written file parses");
    // Metadata may hold NaN floats, so compare bit-exactly: writing the
    // re-read file must give the same bytes again.
    assert_eq!(again.metadata.len(), file.metadata.len());
    let mut rewriter = GgufWriter::with_metadata(again.metadata.clone());
    for t in &again.tensors {
        let bytes = again.tensor_data(&out, t).unwrap();
        rewriter.add_tensor(t.name.clone(), t.ty, &t.shape, bytes).unwrap();
    }
    let mut out2 = Vec::new();
    rewriter.write_to(&mut out2).unwrap();
    assert!(out == out2, "write(read(write(x))) differs from write(x)");
    assert_eq!(again.tensors.len(), file.tensors.len());
    for (a, b) in again.tensors.iter().zip(&file.tensors) {
        assert_eq!((&a.name, a.ty, &a.shape), (&b.name, b.ty, &b.shape));
        assert_eq!(
            again.tensor_data(&out, a).unwrap(),
            file.tensor_data(data, b).unwrap()
        );
    }
});
