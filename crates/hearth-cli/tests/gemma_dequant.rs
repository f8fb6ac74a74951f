//! Every tensor of the default model dequantizes bit-for-bit like gguf-py's
//! numpy dequantizers (the first rows of each tensor, all 236 tensors).

mod common;

use common::{gemma, python, repo_root};
use hearth_gguf::MappedGguf;

const ROWS: u64 = 48;

#[test]
fn gemma_tensors_dequantize_like_gguf_py() {
    let model = gemma();
    let out_dir = std::env::temp_dir().join(format!("hearth-gemma-rows-{}", std::process::id()));
    let script = repo_root().join("scripts/gguf_rows.py");
    python(&[
        script.as_os_str(),
        model.as_os_str(),
        out_dir.as_os_str(),
        ROWS.to_string().as_ref(),
    ]);
    let gguf = MappedGguf::open(&model).unwrap();
    let mut checked = std::collections::BTreeMap::<String, usize>::new();
    for info in &gguf.file().tensors {
        let (_, data) = gguf.tensor_data(&info.name).unwrap();
        let rows = info.n_rows().min(ROWS);
        let bytes = (rows * info.row_bytes()) as usize;
        let mut ours = vec![0f32; (rows * info.shape[0]) as usize];
        hearth_kernels::quant::dequantize(info.ty, &data[..bytes], &mut ours).unwrap();
        let theirs: Vec<f32> = std::fs::read(out_dir.join(format!("{}.f32", info.name)))
            .unwrap()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        assert_eq!(ours.len(), theirs.len(), "{}: length", info.name);
        if let Some(i) = (0..ours.len()).find(|&i| ours[i].to_bits() != theirs[i].to_bits()) {
            panic!(
                "{} ({}): element {i} is {} here, {} in gguf-py",
                info.name, info.ty, ours[i], theirs[i]
            );
        }
        *checked.entry(info.ty.name().to_string()).or_default() += 1;
    }
    let _ = std::fs::remove_dir_all(&out_dir);
    assert_eq!(checked.values().sum::<usize>(), 236, "{checked:?}");
}
