//! The plan of the synthetic reference models (../shared/reference/synthetic/*/) against
//! numbers derived by hand from their hparams.json.
//!
//! Every model has 2 layers with 2 KV heads of 64 values (rows of 128 values for K and for V),
//! so an f16 cell of one layer is (128 + 128) x 2 = 512 bytes and a Q8_0 cell (128 / 32) x 34
//! x 2 = 272 bytes. Their context (n_ctx_train) is 512, which is the default context.
//! - llama, qwen2, qwen3, phi3, llama-moe, qwen3moe: no window: 2 x 512 cells at n_ctx 512.
//! - gemma2: layer 0 has a 64-token window, layer 1 is global: at n_ctx 4096 the window layer
//!   holds 64 - 1 + 512 = 575 cells, the global one 4096. The cache's Vecs double as they
//!   grow, so the window layer has room for 1024 cells.
//! - gemma4: n_head_kv [2, 1], head_dim 64 for the window layer and 128 for the global one:
//!   rows of 2 x 64 and 1 x 128 values, so the same bytes as gemma2.

use std::path::PathBuf;

use hearth_gguf::MappedGguf;
use hearth_model::{ConfigError, KvType, ModelConfig};
use hearth_plan::memory::Available;
use hearth_plan::{KvLayout, MemoryPlan, PlanError, PlanRequest, Verdict, WeightsInfo};
use serde_json::Value as Json;

fn synthetic_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/reference/synthetic")
}

fn hparams(arch: &str) -> Json {
    let p = synthetic_dir().join(arch).join("hparams.json");
    serde_json::from_str(
        &std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display())),
    )
    .unwrap()
}

fn open(arch: &str, ty: &str) -> MappedGguf {
    let p = synthetic_dir().join(arch).join(format!("{arch}-{ty}.gguf"));
    MappedGguf::open(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// The layout of `arch`, or `None` when this build does not implement the architecture.
fn layout(arch: &str) -> Option<KvLayout> {
    let g = open(arch, "q4_k_m");
    match ModelConfig::from_gguf(g.file()) {
        Ok(cfg) => Some(KvLayout::from_config(&cfg)),
        Err(ConfigError::UnsupportedArchitecture { .. }) => {
            eprintln!("{arch}: architecture not implemented in this build; skipped");
            None
        }
        Err(e) => panic!("{arch}: {e}"),
    }
}

fn plenty() -> Available {
    Available {
        bytes: 1 << 40,
        swap_free: 0,
        source: "test".into(),
        mem_total: None,
        mem_available: None,
        cgroup_limit: None,
        cgroup_usage: None,
    }
}

#[test]
fn dense_models_without_a_window() {
    for arch in ["llama", "qwen2", "qwen3", "phi3", "llama-moe", "qwen3moe"] {
        let h = hparams(arch);
        assert_eq!(h["n_layer"], 2, "{arch}");
        assert_eq!(h["n_head_kv"], 2, "{arch}");
        assert_eq!(h["head_dim"], 64, "{arch}");
        assert_eq!(h["n_ctx_train"], 512, "{arch}");
        let Some(l) = layout(arch) else { continue };
        assert_eq!(l.n_swa(), 0, "{arch}");
        assert_eq!(l.bytes_full(512, KvType::F16), 524_288, "{arch}");
        assert_eq!(l.bytes_full(512, KvType::Q8_0), 278_528, "{arch}");
        assert_eq!(l.bytes_per_position(KvType::F16), 1024, "{arch}");
        // The plan at the default context (the training context, 512) with 3 slots.
        let g = open(arch, "q4_k_m");
        let req = PlanRequest {
            n_slots: 3,
            ..Default::default()
        };
        let p = MemoryPlan::new(&g, &req, plenty()).unwrap();
        assert_eq!(p.n_ctx, 512, "{arch}");
        assert_eq!(p.kv.per_slot_bytes, 524_288, "{arch}");
        assert_eq!(p.kv.total_bytes, 3 * 524_288, "{arch}");
        assert_eq!(p.verdict, Verdict::Fits);
    }
}

#[test]
fn gemma2_window_layer_is_capped() {
    let h = hparams("gemma2");
    assert_eq!(h["sliding_window"], 64);
    assert_eq!(h["n_layer"], 2);
    let l = layout("gemma2").unwrap();
    assert_eq!(l.layers[0].window, Some(64));
    assert_eq!(l.layers[1].window, None);
    assert_eq!(l.bytes_full(512, KvType::F16), 524_288);
    assert_eq!(l.data_bytes_full(4096, KvType::F16), (575 + 4096) * 512);
    assert_eq!(l.data_bytes_full(4096, KvType::Q8_0), (575 + 4096) * 272);
    assert_eq!(l.bytes_full(4096, KvType::F16), (1024 + 4096) * 512);
    assert_eq!(l.bytes_full(4096, KvType::Q8_0), (1024 + 4096) * 272);
    assert_eq!(l.bytes_per_position(KvType::F16), 512);
}

#[test]
fn gemma4_per_layer_widths() {
    let h = hparams("gemma4");
    assert_eq!(h["n_head_kv"], serde_json::json!([2, 1]));
    assert_eq!(h["head_dim_swa"], 64);
    assert_eq!(h["head_dim_full"], 128);
    let Some(l) = layout("gemma4") else { return };
    assert_eq!(
        (l.layers[0].k_width, l.layers[0].v_width, l.layers[0].window),
        (128, 128, Some(64))
    );
    assert_eq!(
        (l.layers[1].k_width, l.layers[1].v_width, l.layers[1].window),
        (128, 128, None)
    );
    assert_eq!(l.data_bytes_full(4096, KvType::F16), (575 + 4096) * 512);
    assert_eq!(l.bytes_full(4096, KvType::F16), (1024 + 4096) * 512);
}

/// The weights of the files: sizes from hparams.json, tied output as recorded there, and the
/// bytes read per token are the layer matrices plus the output projection.
#[test]
fn weights_of_the_files() {
    for arch in ["llama", "gemma2", "qwen2", "phi3"] {
        let h = hparams(arch);
        let g = open(arch, "q4_k_m");
        let w = WeightsInfo::from_gguf(g.file());
        assert_eq!(
            w.file_bytes,
            h["files"][format!("{arch}-q4_k_m.gguf")]["size"]
                .as_u64()
                .unwrap(),
            "{arch}"
        );
        assert_eq!(w.tied_output, h["tied_output"].as_bool().unwrap(), "{arch}");
        let layer_matrices: u64 = g
            .file()
            .tensors
            .iter()
            .filter(|t| t.name.starts_with("blk.") && t.shape.len() == 2)
            .map(|t| t.size)
            .sum();
        assert_eq!(
            w.decode_read_bytes,
            layer_matrices + w.output_bytes,
            "{arch}"
        );
        assert_eq!(w.prefill_read_bytes, layer_matrices, "{arch}");
        assert!(w.header_bytes + w.tensor_bytes <= w.file_bytes, "{arch}");
        // Both Q4_K and Q6_K (llama-quantize's Q4_K_M mix) are present.
        let types: Vec<&str> = w.by_type.iter().map(|t| t.name).collect();
        assert!(
            types.contains(&"Q4_K") && types.contains(&"Q6_K"),
            "{arch}: {types:?}"
        );
    }
    // MoE: a token reads 2 of the 4 experts.
    let g = open("llama-moe", "q4_k_m");
    let w = WeightsInfo::from_gguf(g.file());
    assert_eq!(w.experts, Some((2, 4)));
    let exps: u64 = g
        .file()
        .tensors
        .iter()
        .filter(|t| t.name.contains("_exps"))
        .map(|t| t.size)
        .sum();
    let dense: u64 = g
        .file()
        .tensors
        .iter()
        .filter(|t| t.name.starts_with("blk.") && t.shape.len() >= 2 && !t.name.contains("_exps"))
        .map(|t| t.size)
        .sum();
    assert!(exps > 0);
    assert_eq!(w.prefill_read_bytes, dense + exps / 2);
}

/// Under a budget just short of the need, the plan does not fit and suggests a context and a
/// Q8_0 cache that do.
#[test]
fn tight_budget_gives_fitting_suggestions() {
    let g = open("llama", "q4_k_m");
    let req = PlanRequest::default();
    let full = MemoryPlan::new(&g, &req, plenty()).unwrap();
    // 100 KB short: halving the context saves 2 x 256 x 512 = 262,144 bytes, a Q8_0 cache
    // 2 x 512 x (512 - 272) = 245,760 bytes.
    let mut tight = plenty();
    tight.bytes = full.total_bytes - 100_000;
    let p = MemoryPlan::new(&g, &req, tight.clone()).unwrap();
    assert_eq!(p.verdict, Verdict::DoesNotFit);
    let ctx = p
        .suggestions
        .iter()
        .find(|s| s.flag == "--ctx 256")
        .expect("--ctx 256");
    assert_eq!(ctx.total_bytes, full.total_bytes - 262_144);
    let q8 = p
        .suggestions
        .iter()
        .find(|s| s.flag == "--kv-type q8_0")
        .expect("--kv-type q8_0");
    assert_eq!(q8.total_bytes, full.total_bytes - 245_760);
    // With swap to spare, it would swap rather than fail.
    tight.swap_free = 1 << 30;
    let p = MemoryPlan::new(&g, &req, tight).unwrap();
    assert_eq!(p.verdict, Verdict::FitsButWouldSwap);
}

#[test]
fn zero_slots_are_an_error() {
    let g = open("llama", "q4_k_m");
    let req = PlanRequest {
        n_slots: 0,
        ..Default::default()
    };
    assert!(matches!(
        MemoryPlan::new(&g, &req, plenty()),
        Err(PlanError::Zero { .. })
    ));
}

/// The size estimate of a quantization (llama-quantize's mix applied to the tensor table)
/// against the files llama-quantize made from the F16 originals: the same tensor data; the
/// header differs only by the keys llama-quantize adds.
#[test]
fn quantized_size_estimates_match_llama_quantize() {
    use hearth_quantize::FileType;
    for arch in ["llama", "gemma2", "qwen2", "phi3"] {
        let h = hparams(arch);
        let g = open(arch, "f16");
        for (ty, ft) in [("q8_0", FileType::Q8_0), ("q4_k_m", FileType::Q4_K_M)] {
            let actual = h["files"][format!("{arch}-{ty}.gguf")]["size"]
                .as_u64()
                .unwrap();
            let est = hearth_plan::plan::quantized_file_bytes(&g, ft).unwrap();
            let q = open(arch, ty);
            let data_actual = actual - q.file().data_offset;
            let data_est = est - g.file().data_offset;
            eprintln!("{arch} {ty}: estimated {est}, file {actual}");
            assert_eq!(data_est, data_actual, "{arch} {ty}: tensor data");
            // The header: `general.quantization_version` and alignment padding.
            assert!(
                actual >= est && actual - est <= 64,
                "{arch} {ty}: {est} vs {actual}"
            );
        }
    }
}
