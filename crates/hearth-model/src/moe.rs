//! Mixture-of-experts feed-forward, as llama.cpp's `build_moe_ffn` (`src/llama-graph.cpp`):
//! router logits, gating (softmax or sigmoid), top-k experts per token, optional renormalized
//! and scaled weights, the selected experts' gated feed-forwards, and their weighted sum in
//! the order of selection.
//!
//! Each expert is a [`Weight`] viewing its slice of the 3-D `*_exps` tensor, so a decode step
//! reads only the rows of the experts it selected. A batch is grouped by expert: every expert
//! runs one product over all the rows routed to it (`ggml_mul_mat_id`). With
//! [`Numerics::LlamaCpp`](crate::Numerics) the expert products use ggml's one-row kernels, as
//! `mul_mat_id` does for every batch size.

use crate::config::{ExpertGating, ModelConfig, MoeConfig};
use crate::error::{ConfigError, Result};
use crate::layer::{blk, Act, Loader};
use crate::ops::{self, Mm, Weight};

/// The experts' gate and up products: separate tensors or one `gate_up_exps` (gate first).
pub(crate) enum ExpertsIn {
    Separate { gate: Vec<Weight>, up: Vec<Weight> },
    Fused(Vec<Weight>),
}

/// The experts of one layer and their router.
pub(crate) struct Moe {
    /// `ffn_gate_inp`: `n_expert` router logits per token. `None` when the architecture
    /// computes the logits itself (gemma4) and passes them to [`Moe::forward`].
    pub(crate) gate_inp: Option<Weight>,
    pub(crate) inp: ExpertsIn,
    pub(crate) down: Vec<Weight>,
}

impl Moe {
    /// `ffn_gate_inp` (unless `with_router` is false), `ffn_{gate,up}_exps` or
    /// `ffn_gate_up_exps`, and `ffn_down_exps` of layer `il`.
    pub(crate) fn load(
        l: &Loader<'_>,
        il: usize,
        cfg: &ModelConfig,
        with_router: bool,
    ) -> Result<Moe, ConfigError> {
        let (e, m) = (cfg.n_embd, &cfg.moe);
        let (f, n) = (m.n_ff_exp, m.n_expert);
        let gate_inp = match with_router {
            true => Some(l.matrix(&blk(il, "ffn_gate_inp.weight"), e, n)?),
            false => None,
        };
        let inp = match l.experts_opt(&blk(il, "ffn_gate_up_exps.weight"), e, 2 * f, n)? {
            Some(w) => ExpertsIn::Fused(w),
            None => ExpertsIn::Separate {
                gate: l.experts(&blk(il, "ffn_gate_exps.weight"), e, f, n)?,
                up: l.experts(&blk(il, "ffn_up_exps.weight"), e, f, n)?,
            },
        };
        let down = l.experts(&blk(il, "ffn_down_exps.weight"), f, e, n)?;
        Ok(Moe {
            gate_inp,
            inp,
            down,
        })
    }

    /// Calls `f` on the router and every expert matrix.
    pub(crate) fn for_each_weight(&self, f: &mut impl FnMut(&Weight)) {
        if let Some(w) = &self.gate_inp {
            f(w);
        }
        match &self.inp {
            ExpertsIn::Separate { gate, up } => gate.iter().chain(up).for_each(&mut *f),
            ExpertsIn::Fused(w) => w.iter().for_each(&mut *f),
        }
        self.down.iter().for_each(f);
    }

    /// Bytes of the router and of `n_used` experts: what one token's products read.
    pub(crate) fn active_bytes(&self, n_used: usize) -> u64 {
        let per_expert = |ws: &[Weight]| ws.first().map_or(0, |w| w.n_bytes() as u64);
        let expert = match &self.inp {
            ExpertsIn::Separate { gate, up } => per_expert(gate) + per_expert(up),
            ExpertsIn::Fused(w) => per_expert(w),
        } + per_expert(&self.down);
        self.gate_inp.as_ref().map_or(0, |w| w.n_bytes() as u64) + expert * n_used as u64
    }

    /// The mixture of `n` rows of `x` (`[n][n_embd]`); `logits` (`[n][n_expert]`) replaces the
    /// router product when given.
    pub(crate) fn forward(
        &self,
        x: &[f32],
        n: usize,
        cfg: &ModelConfig,
        act: Act,
        mm: &Mm<'_>,
        logits: Option<Vec<f32>>,
    ) -> Result<Vec<f32>> {
        let e = cfg.n_embd;
        let m = &cfg.moe;
        let (n_expert, k, f) = (m.n_expert, m.n_expert_used, m.n_ff_exp);
        let logits = match (logits, &self.gate_inp) {
            (Some(l), _) => l,
            (None, Some(w)) => {
                let mut l = vec![0.0f32; n * n_expert];
                mm.matmul(w, x, n, &mut l)?;
                l
            }
            (None, None) => unreachable!("an expert layer without router or logits"),
        };
        let routes = route(&logits, n, m);

        // ggml_mul_mat_id computes every (token, expert) row with the one-row kernels.
        let emm = Mm {
            per_token: true,
            ..*mm
        };
        // Weighted expert outputs, `[n][k][n_embd]`.
        let mut expert_out = vec![0.0f32; n * k * e];
        if n == 1 {
            // A decode step: every selected expert reads the same row, so all their gate and
            // up products run as one (one pass of the threads instead of k).
            self.decode_experts(x, &routes, cfg, act, &emm, &mut expert_out)?;
            return Ok(sum_slots(&expert_out, 1, k, e));
        }
        let mut rows: Vec<usize> = Vec::new();
        let mut xe: Vec<f32> = Vec::new();
        for ex in 0..n_expert {
            rows.clear();
            rows.extend(
                routes
                    .experts
                    .iter()
                    .enumerate()
                    .filter(|&(_, &s)| s as usize == ex)
                    .map(|(slot, _)| slot),
            );
            if rows.is_empty() {
                continue;
            }
            let nr = rows.len();
            xe.clear();
            for &slot in &rows {
                let t = slot / k;
                xe.extend_from_slice(&x[t * e..(t + 1) * e]);
            }
            let mut h = vec![0.0f32; nr * f];
            match &self.inp {
                ExpertsIn::Separate { gate, up } => {
                    let mut g = vec![0.0f32; nr * f];
                    let mut u = vec![0.0f32; nr * f];
                    emm.matmul_many(&[&up[ex], &gate[ex]], &xe, nr, &mut [&mut u, &mut g])?;
                    for ((gr, ur), hr) in g
                        .chunks_exact(f)
                        .zip(u.chunks_exact(f))
                        .zip(h.chunks_exact_mut(f))
                    {
                        act.apply(emm.numerics, gr, ur, hr);
                    }
                }
                ExpertsIn::Fused(w) => {
                    let mut gu = vec![0.0f32; nr * 2 * f];
                    emm.matmul(&w[ex], &xe, nr, &mut gu)?;
                    for (row, hr) in gu.chunks_exact(2 * f).zip(h.chunks_exact_mut(f)) {
                        act.apply(emm.numerics, &row[..f], &row[f..], hr);
                    }
                }
            }
            let mut y = vec![0.0f32; nr * e];
            emm.matmul(&self.down[ex], &h, nr, &mut y)?;
            for (&slot, yr) in rows.iter().zip(y.chunks_exact(e)) {
                let w = routes.weights[slot];
                for (o, &v) in expert_out[slot * e..(slot + 1) * e].iter_mut().zip(yr) {
                    *o = v * w;
                }
            }
        }
        Ok(sum_slots(&expert_out, n, k, e))
    }

    /// The selected experts of one token (`routes` of one row): gate and up of all of them in
    /// one [`Mm::matmul_many`], the down products in one [`Mm::matmul_each`], weighted into
    /// `expert_out` (`[k][n_embd]`). The same values as the grouped path.
    fn decode_experts(
        &self,
        x: &[f32],
        routes: &Routes,
        cfg: &ModelConfig,
        act: Act,
        emm: &Mm<'_>,
        expert_out: &mut [f32],
    ) -> Result<()> {
        let (e, f) = (cfg.n_embd, cfg.moe.n_ff_exp);
        let k = routes.experts.len();
        let mut ws: Vec<&Weight> = Vec::with_capacity(2 * k);
        for &ex in &routes.experts {
            match &self.inp {
                ExpertsIn::Separate { gate, up } => {
                    ws.push(&up[ex as usize]);
                    ws.push(&gate[ex as usize]);
                }
                ExpertsIn::Fused(w) => ws.push(&w[ex as usize]),
            }
        }
        let width = match &self.inp {
            ExpertsIn::Separate { .. } => f,
            ExpertsIn::Fused(_) => 2 * f,
        };
        let mut bufs = vec![0.0f32; ws.len() * width];
        {
            let mut outs: Vec<&mut [f32]> = bufs.chunks_exact_mut(width).collect();
            emm.matmul_many(&ws, x, 1, &mut outs)?;
        }
        // Each expert's activation, then all down products in one run.
        let mut hs = vec![0.0f32; k * f];
        for (slot, h) in hs.chunks_exact_mut(f).enumerate() {
            match &self.inp {
                ExpertsIn::Separate { .. } => {
                    let u = &bufs[2 * slot * f..(2 * slot + 1) * f];
                    let g = &bufs[(2 * slot + 1) * f..(2 * slot + 2) * f];
                    act.apply(emm.numerics, g, u, h);
                }
                ExpertsIn::Fused(_) => {
                    let gu = &bufs[slot * 2 * f..(slot + 1) * 2 * f];
                    act.apply(emm.numerics, &gu[..f], &gu[f..], h);
                }
            }
        }
        let downs: Vec<&Weight> = routes
            .experts
            .iter()
            .map(|&ex| &self.down[ex as usize])
            .collect();
        let ins: Vec<&[f32]> = hs.chunks_exact(f).collect();
        {
            let mut outs: Vec<&mut [f32]> = expert_out.chunks_exact_mut(e).collect();
            emm.matmul_each(&downs, &ins, 1, &mut outs)?;
        }
        for (slot, o) in expert_out.chunks_exact_mut(e).enumerate() {
            let w = routes.weights[slot];
            o.iter_mut().for_each(|v| *v *= w);
        }
        Ok(())
    }
}

/// The views of the k slots of each token added one after another (`moe_out = e0 + e1 +
/// ...`).
fn sum_slots(expert_out: &[f32], n: usize, k: usize, e: usize) -> Vec<f32> {
    let mut out = vec![0.0f32; n * e];
    for (t, o) in out.chunks_exact_mut(e).enumerate() {
        o.copy_from_slice(&expert_out[t * k * e..(t * k + 1) * e]);
        for s in 1..k {
            ops::add_inplace(o, &expert_out[(t * k + s) * e..(t * k + s + 1) * e]);
        }
    }
    out
}

/// The experts each token uses and their weights, `[n][k]` in order of selection.
pub(crate) struct Routes {
    pub(crate) experts: Vec<u32>,
    pub(crate) weights: Vec<f32>,
}

/// Gating, top-k selection and weight normalization of `n` rows of router logits.
pub(crate) fn route(logits: &[f32], n: usize, m: &MoeConfig) -> Routes {
    let (n_expert, k) = (m.n_expert, m.n_expert_used);
    let mut experts = Vec::with_capacity(n * k);
    let mut weights = Vec::with_capacity(n * k);
    let mut probs = vec![0.0f32; n_expert];
    let mut order: Vec<u32> = Vec::with_capacity(n_expert);
    for row in logits.chunks_exact(n_expert).take(n) {
        match m.gating {
            ExpertGating::Softmax => soft_max(row, &mut probs),
            ExpertGating::Sigmoid => {
                for (p, &l) in probs.iter_mut().zip(row) {
                    *p = 1.0 / (1.0 + (-l).exp());
                }
            }
            ExpertGating::SoftmaxWeight => probs.copy_from_slice(row),
        }
        // ggml_argsort_top_k: the k largest, in descending order (NaNs last).
        order.clear();
        order.extend(0..n_expert as u32);
        order.sort_by(|&a, &b| {
            let (pa, pb) = (probs[a as usize], probs[b as usize]);
            pb.partial_cmp(&pa)
                .unwrap_or_else(|| pa.is_nan().cmp(&pb.is_nan()))
                .then(a.cmp(&b))
        });
        let sel = &order[..k];
        let mut w: Vec<f32> = sel.iter().map(|&i| probs[i as usize]).collect();
        if m.gating == ExpertGating::SoftmaxWeight {
            let mut sw = vec![0.0f32; k];
            soft_max(&w, &mut sw);
            w = sw;
        }
        if m.norm_weights {
            // ggml_sum_rows (a double accumulator), clamped to the smallest normal f16.
            let sum = w.iter().map(|&v| f64::from(v)).sum::<f64>() as f32;
            let sum = sum.max(6.103_515_6e-5);
            for v in &mut w {
                *v /= sum;
            }
        }
        if m.weights_scale != 0.0 && m.weights_scale != 1.0 {
            for v in &mut w {
                *v *= m.weights_scale;
            }
        }
        experts.extend_from_slice(sel);
        weights.extend_from_slice(&w);
    }
    Routes { experts, weights }
}

/// `ggml_soft_max` of one row: `exp(x - max)` summed in double, scaled by the f32 inverse.
fn soft_max(x: &[f32], out: &mut [f32]) {
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0f64;
    for (o, &v) in out.iter_mut().zip(x) {
        let e = if max == f32::NEG_INFINITY {
            0.0
        } else {
            (v - max).exp()
        };
        *o = e;
        sum += f64::from(e);
    }
    let inv = (1.0 / sum) as f32;
    for o in out.iter_mut() {
        *o *= inv;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(n_expert: usize, k: usize, gating: ExpertGating, norm: bool) -> MoeConfig {
        MoeConfig {
            n_expert,
            n_expert_used: k,
            n_ff_exp: 8,
            gating,
            norm_weights: norm,
            weights_scale: 0.0,
        }
    }

    #[test]
    fn softmax_top_k_renormalized() {
        let c = cfg(4, 2, ExpertGating::Softmax, true);
        let logits = [0.5f32, 2.0, -1.0, 1.0, 3.0, 3.5, 0.0, -2.0];
        let r = route(&logits, 2, &c);
        assert_eq!(r.experts, vec![1, 3, 1, 0]);
        // Renormalized softmax over the selected two = softmax of their logits.
        let w0 = 1.0 / (1.0 + (1.0f32 - 2.0).exp());
        assert!((r.weights[0] - w0).abs() < 1e-6, "{:?}", r.weights);
        assert!((r.weights[0] + r.weights[1] - 1.0).abs() < 1e-6);
        let w2 = 1.0 / (1.0 + (3.0f32 - 3.5).exp());
        assert!((r.weights[2] - w2).abs() < 1e-6);
    }

    #[test]
    fn without_normalization_weights_are_the_probabilities() {
        let c = cfg(3, 1, ExpertGating::Softmax, false);
        let logits = [0.0f32, 1.0, 0.0];
        let r = route(&logits, 1, &c);
        assert_eq!(r.experts, vec![1]);
        let e = 1.0f32.exp();
        assert!((r.weights[0] - e / (e + 2.0)).abs() < 1e-6);
    }

    #[test]
    fn sigmoid_gating_and_nan_logits_do_not_panic() {
        let c = cfg(3, 2, ExpertGating::Sigmoid, false);
        let r = route(&[f32::NAN, 0.0, 2.0], 1, &c);
        assert_eq!(r.experts, vec![2, 1]);
        assert!((r.weights[1] - 0.5).abs() < 1e-6);
        let c = cfg(3, 2, ExpertGating::Softmax, true);
        let r = route(&[f32::NEG_INFINITY; 3], 1, &c);
        assert_eq!(r.experts.len(), 2);
    }
}
