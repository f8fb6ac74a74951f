//! Behaviour of `Model::forward` and the KV cache on a tiny handcrafted model: bad input is an
//! error (never a panic), the context is never silently truncated, a context shift keeps the
//! sequence going, and batch / per-token / incremental evaluation agree.

mod tiny;

use hearth_model::{BatchNumerics, KvType, LogitsFor, ModelError};
use tiny::Tiny;

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn token_id_out_of_range_is_an_error() {
    let model = Tiny::default().model();
    let mut kv = model.new_kv_cache(16, KvType::F16).unwrap();
    match model.forward(&[1, 16, 2], &mut kv, LogitsFor::Last) {
        Err(ModelError::TokenOutOfRange { id, index, n_vocab }) => {
            assert_eq!((id, index, n_vocab), (16, 1, 16))
        }
        r => panic!("unexpected {r:?}"),
    }
    assert!(matches!(
        model.forward(&[u32::MAX], &mut kv, LogitsFor::Last),
        Err(ModelError::TokenOutOfRange { .. })
    ));
    // Nothing was evaluated.
    assert_eq!(kv.len(), 0);
}

#[test]
fn prompt_batches_follow_llama_server() {
    let model = Tiny::default().model();
    // No sliding window: one batch.
    assert_eq!(model.prompt_batches_like_llama_server(300), vec![0..300]);
}

#[test]
fn empty_batch_is_an_error() {
    let model = Tiny::default().model();
    let mut kv = model.new_kv_cache(16, KvType::F16).unwrap();
    assert!(matches!(
        model.forward(&[], &mut kv, LogitsFor::Last),
        Err(ModelError::EmptyBatch)
    ));
}

#[test]
fn logits_rows_follow_the_request() {
    let model = Tiny::default().model();
    let toks = [3, 1, 4, 1, 5];
    let mut kv = model.new_kv_cache(16, KvType::F16).unwrap();
    let all = model.forward(&toks, &mut kv, LogitsFor::All).unwrap();
    assert_eq!(all.len(), 5);
    assert_eq!(all.batch_indices(), &[0, 1, 2, 3, 4]);
    let mut kv = model.new_kv_cache(16, KvType::F16).unwrap();
    let last2 = model.forward(&toks, &mut kv, LogitsFor::LastN(2)).unwrap();
    assert_eq!(last2.batch_indices(), &[3, 4]);
    assert_eq!(last2.row(1), all.row(4));
    assert_eq!(last2.last(), all.last());
    let mut kv = model.new_kv_cache(16, KvType::F16).unwrap();
    let none = model.forward(&toks, &mut kv, LogitsFor::LastN(0)).unwrap();
    assert!(none.is_empty() && none.last().is_empty());
    assert_eq!(kv.len(), 5);
    let mut kv = model.new_kv_cache(16, KvType::F16).unwrap();
    assert!(matches!(
        model.forward(&toks, &mut kv, LogitsFor::LastN(6)),
        Err(ModelError::LogitsRows {
            requested: 6,
            n_tokens: 5
        })
    ));
}

#[test]
fn batch_per_token_and_incremental_evaluation_agree() {
    let model = Tiny::default().model();
    let toks = [3, 1, 4, 1, 5, 9, 2, 6];
    let mut kv = model.new_kv_cache(16, KvType::F16).unwrap();
    let batch = model.forward(&toks, &mut kv, LogitsFor::All).unwrap();
    let mut kv = model.new_kv_cache(16, KvType::F16).unwrap();
    let per_token = model
        .forward_with(&toks, &mut kv, LogitsFor::All, BatchNumerics::PerToken)
        .unwrap();
    let mut kv = model.new_kv_cache(16, KvType::F16).unwrap();
    for (i, &t) in toks.iter().enumerate() {
        let l = model.forward(&[t], &mut kv, LogitsFor::Last).unwrap();
        // Per-token numerics are exactly what one-token batches compute.
        assert!(l.last() == per_token.row(i), "row {i}");
        // A batch sums in other orders (f16 rounding of Q), so only close.
        assert!(max_abs_diff(l.last(), batch.row(i)) < 1e-2, "row {i}");
    }
    assert_eq!(kv.len(), toks.len());
}

#[test]
fn context_overflow_is_an_error_without_context_shift() {
    let model = Tiny::default().model();
    let mut kv = model.new_kv_cache(8, KvType::F16).unwrap();
    model.forward(&[1; 6], &mut kv, LogitsFor::Last).unwrap();
    match model.forward(&[2; 3], &mut kv, LogitsFor::Last) {
        Err(ModelError::ContextOverflow {
            n_past,
            n_tokens,
            n_ctx,
        }) => assert_eq!((n_past, n_tokens, n_ctx), (6, 3, 8)),
        r => panic!("unexpected {r:?}"),
    }
    // The cache is untouched and the sequence can go on within the context.
    assert_eq!(kv.len(), 6);
    model.forward(&[2; 2], &mut kv, LogitsFor::Last).unwrap();
    assert_eq!(kv.len(), 8);
    assert!(model.forward(&[2], &mut kv, LogitsFor::Last).is_err());
}

#[test]
fn context_shift_discards_the_oldest_half_after_n_keep() {
    let model = Tiny::default().model();
    let toks: Vec<u32> = (0..16).map(|i| (i * 5 + 3) % 16).collect();
    let mut kv = model
        .new_kv_cache(16, KvType::F16)
        .unwrap()
        .with_context_shift(2);
    model.forward(&toks, &mut kv, LogitsFor::Last).unwrap();
    assert_eq!(kv.len(), 16);
    // Full: keep 2, discard half of the other 14 (7), then append.
    let shifted = model.forward(&[7], &mut kv, LogitsFor::Last).unwrap();
    assert_eq!(kv.len(), 16 - 7 + 1);

    // The shifted cache holds tokens 0,1 and 9..16 at positions 0..9, with their keys
    // re-rotated; with one layer that is the cache a fresh evaluation of those tokens builds,
    // up to f16 rounding of the rotation.
    let mut kept = toks[..2].to_vec();
    kept.extend_from_slice(&toks[9..]);
    let mut fresh = model.new_kv_cache(16, KvType::F16).unwrap();
    model.forward(&kept, &mut fresh, LogitsFor::Last).unwrap();
    let expected = model.forward(&[7], &mut fresh, LogitsFor::Last).unwrap();
    let d = max_abs_diff(shifted.last(), expected.last());
    assert!(d < 1e-2, "shifted vs fresh logits differ by {d}");
}

#[test]
fn context_shift_that_cannot_make_room_is_an_error() {
    let model = Tiny::default().model();
    let mut kv = model
        .new_kv_cache(8, KvType::F16)
        .unwrap()
        .with_context_shift(6);
    model.forward(&[1; 7], &mut kv, LogitsFor::Last).unwrap();
    assert!(matches!(
        model.forward(&[1; 4], &mut kv, LogitsFor::Last),
        Err(ModelError::ContextShiftImpossible { .. })
    ));
}

#[test]
fn a_cache_for_another_model_is_refused() {
    let small = Tiny::default().model();
    let other = Tiny {
        n_layer: 2,
        ..Tiny::default()
    }
    .model();
    let mut kv = other.new_kv_cache(16, KvType::F16).unwrap();
    assert!(matches!(
        small.forward(&[1], &mut kv, LogitsFor::Last),
        Err(ModelError::KvCache { .. })
    ));
    assert!(small.new_kv_cache(0, KvType::F16).is_err());
}

#[test]
fn q8_0_cache_is_close_to_f16() {
    // Q8_0 rows are whole blocks of 32: two KV heads of 16.
    let model = Tiny {
        n_head_kv: 2,
        ..Tiny::default()
    }
    .model();
    let small = Tiny::default().model();
    assert!(matches!(
        small.new_kv_cache(16, KvType::Q8_0),
        Err(ModelError::KvCache { .. })
    ));
    let toks = [3, 1, 4, 1, 5, 9, 2, 6];
    let mut a = model.new_kv_cache(16, KvType::F16).unwrap();
    let mut b = model.new_kv_cache(16, KvType::Q8_0).unwrap();
    assert_eq!(b.kv_type(), KvType::Q8_0);
    let la = model.forward(&toks, &mut a, LogitsFor::Last).unwrap();
    let lb = model.forward(&toks, &mut b, LogitsFor::Last).unwrap();
    let d = max_abs_diff(la.last(), lb.last());
    assert!(d < 0.05, "q8_0 cache differs by {d}");
}

/// A cache truncated to a prefix continues exactly like one that only ever saw the prefix.
#[test]
fn truncated_cache_continues_like_a_fresh_prefix() {
    let model = Tiny::default().model();
    let mut kv = model.new_kv_cache(16, KvType::F16).unwrap();
    model
        .forward(&[3, 1, 4, 1, 5, 9], &mut kv, LogitsFor::Last)
        .unwrap();
    assert!(!kv.truncate(7), "beyond the cached positions");
    assert_eq!(kv.len(), 6);
    assert!(kv.truncate(3));
    assert_eq!(kv.len(), 3);
    let a = model.forward(&[2, 6], &mut kv, LogitsFor::All).unwrap();
    let mut fresh = model.new_kv_cache(16, KvType::F16).unwrap();
    model
        .forward(&[3, 1, 4], &mut fresh, LogitsFor::Last)
        .unwrap();
    let b = model.forward(&[2, 6], &mut fresh, LogitsFor::All).unwrap();
    assert!(a == b);
    assert!(kv.truncate(0));
    assert!(kv.is_empty());
}

/// The matmul observer sees the input of every weight product, by tensor name.
#[test]
fn matmul_observer_sees_every_product() {
    use std::sync::{Arc, Mutex};
    let mut model = Tiny::default().model();
    let seen: Arc<Mutex<Vec<(String, usize, usize)>>> = Arc::default();
    let s = seen.clone();
    model.set_matmul_observer(Some(Arc::new(move |name: &str, x: &[f32], n: usize| {
        s.lock().unwrap().push((name.to_string(), x.len() / n, n));
    })));
    let mut kv = model.new_kv_cache(16, KvType::F16).unwrap();
    model.forward(&[3, 1, 4], &mut kv, LogitsFor::Last).unwrap();
    let seen = seen.lock().unwrap();
    let cfg = model.config();
    // Every layer's projections for the 3 rows (the last layer's FFN only for the kept row),
    // then the output projection for 1 row.
    assert!(seen
        .iter()
        .any(|(n, w, r)| n == "blk.0.attn_q.weight" && *w == cfg.n_embd && *r == 3));
    let last_layer = cfg.n_layer - 1;
    let down = format!("blk.{last_layer}.ffn_down.weight");
    assert!(seen
        .iter()
        .any(|(n, w, r)| *n == down && *w == cfg.n_ff && *r == 1));
    let last = seen.last().unwrap();
    assert_eq!((last.1, last.2), (cfg.n_embd, 1));
    assert!(last.0 == "output.weight" || last.0 == "token_embd.weight");
}
