//! `hearth synth`: random-weight models of real shapes load and run, with the preset's shapes
//! and the vocabulary of llama.cpp's tokenizer tests.

mod common;

use common::hearth;
use serde_json::Value as Json;

#[test]
fn synth_writes_a_model_of_the_preset_shape_that_runs() {
    let dir = std::env::temp_dir().join(format!("hearth-synth-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("qwen.gguf");
    hearth(&[
        "synth".as_ref(),
        "--arch".as_ref(),
        "qwen2".as_ref(),
        "--preset".as_ref(),
        "qwen2.5-0.5b".as_ref(),
        "--layers".as_ref(),
        "2".as_ref(),
        "--type".as_ref(),
        "Q8_0".as_ref(),
        "-o".as_ref(),
        out.as_os_str(),
    ]);
    let info: Json = serde_json::from_slice(&hearth(&[
        "inspect".as_ref(),
        out.as_os_str(),
        "--json".as_ref(),
    ]))
    .unwrap();
    let md = &info["metadata"];
    assert_eq!(md["general.architecture"], "qwen2");
    assert_eq!(md["qwen2.block_count"], 2);
    assert_eq!(md["qwen2.embedding_length"], 896);
    assert_eq!(md["qwen2.attention.head_count_kv"], 2);
    assert_eq!(md["general.file_type"], 7, "Q8_0");
    let text = hearth(&[
        "run".as_ref(),
        "-m".as_ref(),
        out.as_os_str(),
        "-p".as_ref(),
        "Hello".as_ref(),
        "-n".as_ref(),
        "4".as_ref(),
        "--temp".as_ref(),
        "0".as_ref(),
        "--ignore-eos".as_ref(),
        "--json".as_ref(),
    ]);
    let run: Json = serde_json::from_slice(&text).unwrap();
    assert_eq!(run["steps"].as_array().unwrap().len(), 4);
    std::fs::remove_dir_all(&dir).ok();
}
