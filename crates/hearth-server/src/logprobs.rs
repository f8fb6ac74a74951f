//! Log-probabilities of generated tokens, as llama-server computes `n_probs`.

/// Log-softmax of `logits` in f32 the way llama-server computes `n_probs`:
/// the chosen token's log-probability and the `k` best (highest first).
pub fn logprobs(logits: &[f32], chosen: u32, k: usize) -> (f32, Vec<(u32, f32)>) {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f32 = logits.iter().map(|&l| (l - max).exp()).sum();
    let lp = |l: f32| ((l - max).exp() / sum).ln();
    let mut top: Vec<(u32, f32)> = Vec::new();
    if k > 0 && !logits.is_empty() {
        let mut idx: Vec<u32> = (0..logits.len() as u32).collect();
        let k = k.min(idx.len());
        let by_logit = |a: &u32, b: &u32| logits[*b as usize].total_cmp(&logits[*a as usize]);
        idx.select_nth_unstable_by(k - 1, by_logit);
        idx.truncate(k);
        idx.sort_by(by_logit);
        top = idx
            .into_iter()
            .map(|i| (i, lp(logits[i as usize])))
            .collect();
    }
    let chosen = logits
        .get(chosen as usize)
        .map_or(f32::NEG_INFINITY, |&l| lp(l));
    (chosen, top)
}

#[cfg(test)]
mod tests {
    #[test]
    fn logprobs_are_a_log_softmax() {
        // softmax([ln 1, ln 2, ln 7]) = [0.1, 0.2, 0.7].
        let logits = [1f32.ln(), 2f32.ln(), 7f32.ln()];
        let (lp, top) = super::logprobs(&logits, 1, 2);
        assert!((lp - 0.2f32.ln()).abs() < 1e-6);
        assert_eq!(top.len(), 2);
        assert_eq!(top[0].0, 2);
        assert!((top[0].1 - 0.7f32.ln()).abs() < 1e-6);
        assert_eq!(top[1].0, 1);
    }
}
