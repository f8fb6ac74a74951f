//! A tiny handcrafted llama-architecture GGUF, built in memory with `GgufWriter`, for the
//! config, error and KV-cache tests.

#![allow(dead_code)]

use std::sync::Arc;

use hearth_gguf::{Array, GgmlType, GgufFile, GgufWriter, Value};

/// Shape of the tiny model.
#[derive(Clone, Debug)]
pub struct Tiny {
    pub arch: &'static str,
    pub n_vocab: usize,
    pub n_embd: usize,
    pub n_head: u32,
    pub n_head_kv: u32,
    pub n_ff: usize,
    pub n_layer: usize,
    pub n_ctx: u32,
    /// Keys to leave out.
    pub omit_keys: Vec<String>,
    /// Tensors to leave out.
    pub omit_tensors: Vec<String>,
    /// Tensors written with this shape instead of the right one.
    pub bad_shapes: Vec<(String, Vec<u64>)>,
}

impl Default for Tiny {
    fn default() -> Self {
        Tiny {
            arch: "llama",
            n_vocab: 16,
            n_embd: 32,
            n_head: 2,
            n_head_kv: 1,
            n_ff: 64,
            n_layer: 1,
            n_ctx: 64,
            omit_keys: Vec::new(),
            omit_tensors: Vec::new(),
            bad_shapes: Vec::new(),
        }
    }
}

fn values(n: usize, seed: u32, scale: f32, offset: f32) -> Vec<u8> {
    let mut s = seed.wrapping_mul(2_654_435_761).wrapping_add(12_345);
    let mut out = Vec::with_capacity(n * 4);
    for _ in 0..n {
        s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        let v = ((s >> 8) as f32 / (1u32 << 24) as f32 - 0.5) * 2.0 * scale + offset;
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

impl Tiny {
    /// The GGUF bytes.
    pub fn bytes(&self) -> Vec<u8> {
        let a = self.arch;
        let head_dim = self.n_embd / self.n_head.max(1) as usize;
        let n_kv = head_dim * self.n_head_kv.max(1) as usize;
        let mut w = GgufWriter::new();
        let keys: Vec<(String, Value)> = vec![
            ("general.architecture".into(), Value::String(a.into())),
            (format!("{a}.context_length"), Value::U32(self.n_ctx)),
            (
                format!("{a}.embedding_length"),
                Value::U32(self.n_embd as u32),
            ),
            (format!("{a}.block_count"), Value::U32(self.n_layer as u32)),
            (
                format!("{a}.feed_forward_length"),
                Value::U32(self.n_ff as u32),
            ),
            (format!("{a}.attention.head_count"), Value::U32(self.n_head)),
            (
                format!("{a}.attention.head_count_kv"),
                Value::U32(self.n_head_kv),
            ),
            (
                format!("{a}.attention.layer_norm_rms_epsilon"),
                Value::F32(1e-5),
            ),
            (format!("{a}.rope.freq_base"), Value::F32(10000.0)),
            (
                "tokenizer.ggml.tokens".into(),
                Value::Array(Array::String(
                    (0..self.n_vocab).map(|i| format!("t{i}")).collect(),
                )),
            ),
        ];
        for (k, v) in keys {
            if !self.omit_keys.contains(&k) {
                w.metadata_mut().set(k, v);
            }
        }
        let mut tensors: Vec<(String, Vec<u64>, f32, f32)> = vec![
            (
                "token_embd.weight".into(),
                vec![self.n_embd as u64, self.n_vocab as u64],
                0.5,
                0.0,
            ),
            (
                "output_norm.weight".into(),
                vec![self.n_embd as u64],
                0.1,
                1.0,
            ),
            (
                "output.weight".into(),
                vec![self.n_embd as u64, self.n_vocab as u64],
                0.3,
                0.0,
            ),
        ];
        for il in 0..self.n_layer {
            let e = self.n_embd as u64;
            let f = self.n_ff as u64;
            tensors.extend([
                (format!("blk.{il}.attn_norm.weight"), vec![e], 0.1, 1.0),
                (format!("blk.{il}.attn_q.weight"), vec![e, e], 0.3, 0.0),
                (
                    format!("blk.{il}.attn_k.weight"),
                    vec![e, n_kv as u64],
                    0.3,
                    0.0,
                ),
                (
                    format!("blk.{il}.attn_v.weight"),
                    vec![e, n_kv as u64],
                    0.3,
                    0.0,
                ),
                (format!("blk.{il}.attn_output.weight"), vec![e, e], 0.3, 0.0),
                (format!("blk.{il}.ffn_norm.weight"), vec![e], 0.1, 1.0),
                (format!("blk.{il}.ffn_gate.weight"), vec![e, f], 0.3, 0.0),
                (format!("blk.{il}.ffn_up.weight"), vec![e, f], 0.3, 0.0),
                (format!("blk.{il}.ffn_down.weight"), vec![f, e], 0.3, 0.0),
            ]);
        }
        for (i, (name, mut shape, scale, offset)) in tensors.into_iter().enumerate() {
            if self.omit_tensors.contains(&name) {
                continue;
            }
            if let Some((_, s)) = self.bad_shapes.iter().find(|(n, _)| *n == name) {
                shape = s.clone();
            }
            let n: u64 = shape.iter().product();
            w.add_tensor(
                name,
                GgmlType::F32,
                &shape,
                values(n as usize, i as u32, scale, offset),
            )
            .expect("tensor");
        }
        let mut out = Vec::new();
        w.write_to(&mut out).expect("write");
        out
    }

    /// The parsed file.
    pub fn file(&self) -> GgufFile {
        GgufFile::parse(&self.bytes()).expect("parse")
    }

    /// The loaded model.
    pub fn model(&self) -> hearth_model::Model {
        hearth_model::Model::from_bytes(Arc::from(self.bytes())).expect("tiny model")
    }
}
