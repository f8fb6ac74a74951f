//! A GGUF that does not describe a runnable model is a typed error naming the key or tensor
//! (shared/RELIABILITY.md: "required key missing or of the wrong type, head_count 0, n_embd not
//! divisible by heads, kv heads not dividing heads, tensor shapes disagreeing with the config ->
//! Err naming the key/tensor"). Every case is a small GGUF written in memory.

mod tiny;

use std::path::Path;

use hearth_gguf::Value;
use hearth_model::{Arch, ConfigError, ModelConfig, ModelError};
use tiny::Tiny;

fn config_err(t: &Tiny) -> ConfigError {
    ModelConfig::from_gguf(&t.file()).expect_err("config should be refused")
}

#[test]
fn the_tiny_model_is_valid() {
    let cfg = ModelConfig::from_gguf(&Tiny::default().file()).unwrap();
    assert_eq!(cfg.arch, Arch::Llama);
    assert_eq!(
        (cfg.n_vocab, cfg.n_embd, cfg.n_head, cfg.n_head_kv),
        (16, 32, 2, 1)
    );
    assert_eq!((cfg.head_dim_k, cfg.head_dim_v, cfg.n_ff), (16, 16, 64));
    assert!(!cfg.tied_output);
}

#[test]
fn missing_required_key_is_named() {
    for key in [
        "llama.embedding_length",
        "llama.block_count",
        "llama.attention.head_count",
        "llama.feed_forward_length",
        "llama.context_length",
        "llama.attention.layer_norm_rms_epsilon",
        "general.architecture",
    ] {
        let t = Tiny {
            omit_keys: vec![key.to_string()],
            ..Tiny::default()
        };
        match config_err(&t) {
            ConfigError::MissingKey { key: k } => assert_eq!(k, key),
            e => panic!("{key}: unexpected {e:?}"),
        }
    }
}

#[test]
fn key_of_the_wrong_type_is_named() {
    let mut bytes_src = Tiny::default().file();
    bytes_src
        .metadata
        .set("llama.block_count", Value::String("two".into()));
    match ModelConfig::from_gguf(&bytes_src).unwrap_err() {
        ConfigError::BadValue { key, .. } => assert_eq!(key, "llama.block_count"),
        e => panic!("unexpected {e:?}"),
    }
}

#[test]
fn zero_heads_is_refused() {
    let t = Tiny {
        n_head: 0,
        ..Tiny::default()
    };
    match config_err(&t) {
        ConfigError::Zero { key } => assert_eq!(key, "llama.attention.head_count"),
        e => panic!("unexpected {e:?}"),
    }
}

#[test]
fn zero_kv_heads_is_refused() {
    let t = Tiny {
        n_head_kv: 0,
        ..Tiny::default()
    };
    match config_err(&t) {
        ConfigError::Zero { key } => assert_eq!(key, "llama.attention.head_count_kv"),
        e => panic!("unexpected {e:?}"),
    }
}

#[test]
fn embedding_width_not_divisible_by_heads_is_refused() {
    let t = Tiny {
        n_head: 3,
        n_head_kv: 1,
        ..Tiny::default()
    };
    match config_err(&t) {
        ConfigError::EmbdNotDivisible {
            key,
            n_embd,
            n_head,
        } => {
            assert_eq!(key, "llama.embedding_length");
            assert_eq!((n_embd, n_head), (32, 3));
        }
        e => panic!("unexpected {e:?}"),
    }
}

#[test]
fn kv_heads_not_dividing_heads_is_refused() {
    let t = Tiny {
        n_head: 4,
        n_head_kv: 3,
        ..Tiny::default()
    };
    match config_err(&t) {
        ConfigError::KvHeadsNotDividing {
            key,
            n_head,
            n_head_kv,
        } => {
            assert_eq!(key, "llama.attention.head_count_kv");
            assert_eq!((n_head, n_head_kv), (4, 3));
        }
        e => panic!("unexpected {e:?}"),
    }
}

#[test]
fn tensor_shape_disagreeing_with_the_config_is_named() {
    let t = Tiny {
        bad_shapes: vec![("blk.0.attn_k.weight".into(), vec![32, 32])],
        ..Tiny::default()
    };
    match config_err(&t) {
        ConfigError::TensorShape {
            name,
            expected,
            found,
        } => {
            assert_eq!(name, "blk.0.attn_k.weight");
            assert_eq!(expected, vec![32, 16]);
            assert_eq!(found, vec![32, 32]);
        }
        e => panic!("unexpected {e:?}"),
    }
    // Also reported by Model::from_bytes, as ModelError::Config.
    let err = hearth_model::Model::from_bytes(std::sync::Arc::from(t.bytes())).unwrap_err();
    assert!(
        matches!(err, ModelError::Config(ConfigError::TensorShape { .. })),
        "{err:?}"
    );
}

#[test]
fn missing_tensor_is_named() {
    let t = Tiny {
        omit_tensors: vec!["blk.0.ffn_down.weight".into()],
        ..Tiny::default()
    };
    match config_err(&t) {
        ConfigError::MissingTensor { name } => assert_eq!(name, "blk.0.ffn_down.weight"),
        e => panic!("unexpected {e:?}"),
    }
}

#[test]
fn vocabulary_disagreeing_with_the_embedding_is_refused() {
    let mut file = Tiny::default().file();
    file.metadata.set(
        "tokenizer.ggml.tokens",
        Value::Array(hearth_gguf::Array::String(vec!["a".into(); 10])),
    );
    match ModelConfig::from_gguf(&file).unwrap_err() {
        ConfigError::VocabMismatch {
            name,
            n_tokens,
            n_rows,
        } => {
            assert_eq!(name, "token_embd.weight");
            assert_eq!((n_tokens, n_rows), (10, 16));
        }
        e => panic!("unexpected {e:?}"),
    }
}

#[test]
fn unsupported_architecture_is_named() {
    let t = Tiny {
        arch: "mamba",
        ..Tiny::default()
    };
    match config_err(&t) {
        ConfigError::UnsupportedArchitecture { arch, supported } => {
            assert_eq!(arch, "mamba");
            assert!(supported.contains("gemma3"));
        }
        e => panic!("unexpected {e:?}"),
    }
}

#[test]
fn a_missing_output_head_ties_it_to_the_embedding() {
    let t = Tiny {
        omit_tensors: vec!["output.weight".into()],
        ..Tiny::default()
    };
    let cfg = ModelConfig::from_gguf(&t.file()).unwrap();
    assert!(cfg.tied_output);
    let model = t.model();
    let mut kv = model.new_kv_cache(16, hearth_model::KvType::F16).unwrap();
    let l = model
        .forward(&[1, 2, 3], &mut kv, hearth_model::LogitsFor::Last)
        .unwrap();
    assert_eq!(l.n_vocab(), 16);
}

/// Expert counts out of range, and an expert model without its expert tensors, are errors
/// naming the key or tensor (a model file is untrusted input).
#[test]
fn bad_expert_metadata_is_refused() {
    let with = |count: u32, used: u32| {
        let mut f = Tiny::default().file();
        f.metadata.set("llama.expert_count", Value::U32(count));
        f.metadata.set("llama.expert_used_count", Value::U32(used));
        ModelConfig::from_gguf(&f).expect_err("config should be refused")
    };
    match with(4, 5) {
        ConfigError::BadValue { key, .. } => assert_eq!(key, "llama.expert_used_count"),
        e => panic!("unexpected {e:?}"),
    }
    match with(100_000, 2) {
        ConfigError::BadValue { key, .. } => assert_eq!(key, "llama.expert_count"),
        e => panic!("unexpected {e:?}"),
    }
    match with(4, 0) {
        ConfigError::Zero { key } => assert_eq!(key, "llama.expert_used_count"),
        e => panic!("unexpected {e:?}"),
    }
    // Plausible counts, but the file has dense feed-forward tensors only.
    match with(4, 2) {
        ConfigError::MissingTensor { name } => assert_eq!(name, "blk.0.ffn_gate_inp.weight"),
        e => panic!("unexpected {e:?}"),
    }
}

/// gemma4's E2B/E4B keys on shared/reference's dense gemma4 (2 layers, the first
/// sliding-window): shared-KV layers that leave fewer than two layers with a cache, or more
/// than the model has, and per-layer embeddings without their tensors, are typed errors.
#[test]
fn bad_gemma4_e2b_metadata_is_refused() {
    let path = Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/reference/synthetic/gemma4/gemma4-f16.gguf"
    ));
    let bytes = std::fs::read(path).expect("shared/reference's synthetic gemma4");
    let base = hearth_gguf::GgufFile::parse(&bytes).unwrap();
    assert_eq!(ModelConfig::from_gguf(&base).unwrap().n_layer_kv, 2);
    for shared in [1u32, 2, 7, u32::MAX] {
        let mut f = base.clone();
        f.metadata
            .set("gemma4.attention.shared_kv_layers", Value::U32(shared));
        match ModelConfig::from_gguf(&f).unwrap_err() {
            ConfigError::BadValue { key, .. } => {
                assert_eq!(key, "gemma4.attention.shared_kv_layers", "{shared}")
            }
            e => panic!("{shared}: unexpected {e:?}"),
        }
    }
    let mut f = base.clone();
    f.metadata
        .set("gemma4.embedding_length_per_layer_input", Value::U32(16));
    match ModelConfig::from_gguf(&f).unwrap_err() {
        ConfigError::MissingTensor { name } => assert!(name.contains("inp_gate"), "{name}"),
        e => panic!("unexpected {e:?}"),
    }
}
