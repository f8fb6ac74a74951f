//! Each sampler against distributions computed by hand.

use super::candidates::Candidates;
use super::samplers;
use super::*;

fn cands(logits: &[f32]) -> Candidates {
    Candidates::from_logits(logits)
}

fn ids(c: &Candidates) -> Vec<u32> {
    c.data.iter().map(|t| t.id).collect()
}

/// ln of probabilities: softmax(ln p) = p.
fn logits_of(probs: &[f32]) -> Vec<f32> {
    probs.iter().map(|p| p.ln()).collect()
}

#[test]
fn top_k_keeps_the_k_best_in_order() {
    let mut c = cands(&[0.1, 3.0, -1.0, 2.0, 2.5]);
    samplers::top_k(&mut c, 3);
    assert_eq!(ids(&c), vec![1, 4, 3]);
    let mut c = cands(&[0.1, 3.0]);
    samplers::top_k(&mut c, 0);
    assert_eq!(c.len(), 2, "k = 0 disables");
}

#[test]
fn top_p_keeps_the_smallest_prefix_reaching_p() {
    // p = [0.5, 0.3, 0.15, 0.05]: cumulative 0.5, 0.8, 0.95, 1.0.
    let probs = [0.15, 0.5, 0.05, 0.3];
    let mut c = cands(&logits_of(&probs));
    samplers::top_p(&mut c, 0.8, 1);
    assert_eq!(ids(&c), vec![1, 3]);
    let mut c = cands(&logits_of(&probs));
    samplers::top_p(&mut c, 0.81, 1);
    assert_eq!(ids(&c), vec![1, 3, 0]);
    let mut c = cands(&logits_of(&probs));
    samplers::top_p(&mut c, 0.1, 3);
    assert_eq!(c.len(), 3, "min_keep wins");
}

#[test]
fn min_p_keeps_tokens_above_p_times_the_best() {
    // Best p = 0.5; min_p 0.3 keeps p >= 0.15: ids 1 (0.5), 3 (0.3), 0 (0.15).
    let probs = [0.15, 0.5, 0.05, 0.3];
    let mut c = cands(&logits_of(&probs));
    samplers::min_p(&mut c, 0.29, 1);
    let mut got = ids(&c);
    got.sort();
    assert_eq!(got, vec![0, 1, 3]);
    let mut c = cands(&logits_of(&probs));
    samplers::min_p(&mut c, 0.61, 1);
    assert_eq!(ids(&c), vec![1]);
}

#[test]
fn typical_keeps_tokens_nearest_the_entropy() {
    // p = [0.4, 0.3, 0.2, 0.1]: H = 1.2799 nats; |−ln p − H| =
    // [0.364, 0.076, 0.330, 1.023] -> order 1, 2, 0, 3; cumulative 0.3, 0.5, 0.9.
    let probs = [0.4, 0.3, 0.2, 0.1];
    let mut c = cands(&logits_of(&probs));
    samplers::typical(&mut c, 0.45, 1);
    assert_eq!(ids(&c), vec![1, 2]);
    let mut c = cands(&logits_of(&probs));
    samplers::typical(&mut c, 0.6, 1);
    assert_eq!(ids(&c), vec![1, 2, 0]);
}

#[test]
fn temperature_scales_logits_and_zero_is_greedy() {
    let mut c = cands(&[1.0, 2.0, -4.0]);
    samplers::temperature(&mut c, 0.5);
    assert_eq!(
        c.data.iter().map(|t| t.logit).collect::<Vec<_>>(),
        vec![2.0, 4.0, -8.0]
    );
    let mut c = cands(&[1.0, 2.0, -4.0]);
    samplers::temperature(&mut c, 0.0);
    let finite: Vec<u32> = c
        .data
        .iter()
        .filter(|t| t.logit.is_finite())
        .map(|t| t.id)
        .collect();
    assert_eq!(finite, vec![1]);
}

#[test]
fn dynamic_temperature_follows_the_entropy() {
    // Uniform distribution: normalized entropy 1 -> temperature = temp + range.
    let mut c = cands(&[0.0, 0.0, 0.0, 0.0]);
    samplers::temperature_ext(&mut c, 1.0, 0.5, 1.0);
    assert!(c.data.iter().all(|t| (t.logit - 0.0).abs() < 1e-6));
    // Two tokens with logits 0 and ln(1/3): p = [0.75, 0.25], H = 0.5623,
    // H / ln 2 = 0.8113, temp = 0.5 + 1.0 * 0.8113 = 1.3113.
    let mut c = cands(&[0.0, (1.0f32 / 3.0).ln()]);
    samplers::temperature_ext(&mut c, 1.0, 0.5, 1.0);
    let expected = (1.0f32 / 3.0).ln() / 1.311_278;
    assert!((c.data[1].logit - expected).abs() < 1e-4, "{:?}", c.data);
}

#[test]
fn top_n_sigma_masks_far_below_the_best() {
    // logits [4, 2, 0, -2]: mean 1, std sqrt(5) = 2.236; n = 1 masks < 1.764.
    let mut c = cands(&[4.0, 2.0, 0.0, -2.0]);
    samplers::top_n_sigma(&mut c, 1.0);
    let kept: Vec<u32> = c
        .data
        .iter()
        .filter(|t| t.logit.is_finite())
        .map(|t| t.id)
        .collect();
    assert_eq!(kept, vec![0, 1]);
}

#[test]
fn xtc_removes_top_choices_but_the_last_above_threshold() {
    // p = [0.5, 0.3, 0.15, 0.05], threshold 0.1: above are 0.5, 0.3, 0.15;
    // all but the last of them go.
    let probs = [0.5, 0.3, 0.15, 0.05];
    let mut c = cands(&logits_of(&probs));
    let mut rng = Mt19937::new(1);
    samplers::xtc(&mut c, 1.0, 0.1, 1, &mut rng);
    assert_eq!(ids(&c), vec![2, 3]);
}

#[test]
fn penalties_follow_llama_cpp() {
    let params = SamplingParams {
        repeat_penalty: 2.0,
        frequency_penalty: 0.5,
        presence_penalty: 0.25,
        ..SamplingParams::greedy()
    };
    let mut s = Sampler::new(params, 4, DryBreakers::default()).unwrap();
    for t in [1, 1, 2] {
        s.accept(t);
    }
    let mut c = cands(&[1.0, 3.0, -1.0, 0.5]);
    s.apply_penalties(&mut c);
    let l: Vec<f32> = c.data.iter().map(|t| t.logit).collect();
    // id 1: 3/2 - 2*0.5 - 0.25 = 0.25; id 2: -1*2 - 0.5 - 0.25 = -2.75.
    assert_eq!(l, vec![1.0, 0.25, -2.75, 0.5]);
}

#[test]
fn penalty_window_forgets_old_tokens() {
    let params = SamplingParams {
        repeat_penalty: 2.0,
        penalty_last_n: 2,
        ..SamplingParams::greedy()
    };
    let mut s = Sampler::new(params, 4, DryBreakers::default()).unwrap();
    for t in [3, 1, 2] {
        s.accept(t);
    }
    let mut c = cands(&[1.0, 1.0, 1.0, 1.0]);
    s.apply_penalties(&mut c);
    let l: Vec<f32> = c.data.iter().map(|t| t.logit).collect();
    assert_eq!(l, vec![1.0, 0.5, 0.5, 1.0]);
}

#[test]
fn dry_penalizes_the_token_that_extends_a_repeat() {
    // Context a b c x a b: emitting c would repeat "a b c" (repeat length 2
    // before c). allowed_length 2 -> exponent 0 -> penalty = multiplier.
    let (a, b, c_, x) = (0, 1, 2, 3);
    let history = vec![a, b, c_, x, a, b];
    let p = DryParams {
        multiplier: 0.8,
        base: 1.75,
        allowed_length: 2,
        penalty_last_n: -1,
    };
    let pen = dry::penalties(&history, &p, &DryBreakers::default());
    assert_eq!(pen.len(), 1);
    assert!((pen[&c_] - 0.8).abs() < 1e-6);
    // A repeat of 3 before the token: 0.8 * 1.75.
    let history = vec![a, b, x, c_, a, b, x];
    let pen = dry::penalties(&history, &p, &DryBreakers::default());
    assert!((pen[&c_] - 0.8 * 1.75).abs() < 1e-6, "{pen:?}");
}

#[test]
fn dry_sequence_breakers_stop_the_repeat() {
    let (a, b, c_, nl) = (0, 1, 2, 9);
    // The repeat "a b" spans... a breaker right before the end limits it.
    let history = vec![a, b, c_, nl, a, b];
    let p = DryParams {
        multiplier: 1.0,
        base: 2.0,
        allowed_length: 2,
        penalty_last_n: -1,
    };
    let none = dry::penalties(&history, &p, &DryBreakers::default());
    assert!(none.contains_key(&c_));
    let breakers = DryBreakers::from_sequences(&[vec![b]]);
    let pen = dry::penalties(&history, &p, &breakers);
    assert!(pen.is_empty(), "{pen:?}");
}

#[test]
fn greedy_picks_the_argmax_after_bias() {
    let mut s = Sampler::new(SamplingParams::greedy(), 4, DryBreakers::default()).unwrap();
    assert_eq!(s.sample(&[0.0, 5.0, 1.0, 4.9]), 1);
    let params = SamplingParams {
        logit_bias: vec![(1, f32::NEG_INFINITY)],
        ..SamplingParams::greedy()
    };
    let mut s = Sampler::new(params, 4, DryBreakers::default()).unwrap();
    assert_eq!(s.sample(&[0.0, 5.0, 1.0, 4.9]), 3);
}

#[test]
fn dist_draws_by_cumulative_probability() {
    // With p = [0.5, 0.3, 0.2], the draw u picks the first index whose
    // running sum reaches u: check against the same RNG stream.
    let probs = [0.5f32, 0.3, 0.2];
    for seed in 0..50 {
        let mut rng = Mt19937::new(seed);
        let u = rng.uniform_f64();
        let expected = if u <= 0.5 {
            0
        } else if u <= 0.8 {
            1
        } else {
            2
        };
        let mut c = cands(&logits_of(&probs));
        let mut rng = Mt19937::new(seed);
        let got = samplers::dist(&mut c, &mut rng);
        assert_eq!(got, expected, "seed {seed}, u {u}");
    }
}

#[test]
fn a_fixed_seed_repeats_and_sampling_follows_the_distribution() {
    let logits = logits_of(&[0.1, 0.2, 0.3, 0.4]);
    let params = SamplingParams {
        seed: 1234,
        temperature: 1.0,
        top_k: 0,
        top_p: 1.0,
        min_p: 0.0,
        ..SamplingParams::default()
    };
    let run = |n| {
        let mut s = Sampler::new(params.clone(), 4, DryBreakers::default()).unwrap();
        (0..n).map(|_| s.sample(&logits)).collect::<Vec<u32>>()
    };
    let a = run(20_000);
    assert_eq!(a, run(20_000));
    for (id, p) in [0.1, 0.2, 0.3, 0.4].iter().enumerate() {
        let f = a.iter().filter(|&&t| t as usize == id).count() as f64 / a.len() as f64;
        assert!((f - p).abs() < 0.015, "token {id}: frequency {f}, p {p}");
    }
}

#[test]
fn mirostat_v2_truncates_by_surprise() {
    // tau 1 -> mu = 2 bits: only tokens with p > 1/4 survive; p = [0.6, 0.3, 0.1].
    let params = SamplingParams {
        seed: 7,
        temperature: 1.0,
        mirostat: 2,
        mirostat_tau: 1.0,
        mirostat_eta: 0.0,
        ..SamplingParams::default()
    };
    let mut s = Sampler::new(params, 3, DryBreakers::default()).unwrap();
    let logits = logits_of(&[0.6, 0.3, 0.1]);
    for _ in 0..200 {
        assert_ne!(s.sample(&logits), 2);
    }
}

#[test]
fn bad_parameters_are_rejected_with_the_name() {
    let cases: Vec<(SamplingParams, &str)> = vec![
        (
            SamplingParams {
                temperature: f32::NAN,
                ..Default::default()
            },
            "temperature",
        ),
        (
            SamplingParams {
                temperature: -1.0,
                ..Default::default()
            },
            "temperature",
        ),
        (
            SamplingParams {
                top_k: -1,
                ..Default::default()
            },
            "top_k",
        ),
        (
            SamplingParams {
                top_p: 1.5,
                ..Default::default()
            },
            "top_p",
        ),
        (
            SamplingParams {
                top_p: 0.0,
                ..Default::default()
            },
            "top_p",
        ),
        (
            SamplingParams {
                min_p: f32::INFINITY,
                ..Default::default()
            },
            "min_p",
        ),
        (
            SamplingParams {
                repeat_penalty: 0.0,
                ..Default::default()
            },
            "repeat_penalty",
        ),
        (
            SamplingParams {
                mirostat: 3,
                ..Default::default()
            },
            "mirostat",
        ),
        (
            SamplingParams {
                logit_bias: vec![(10, 1.0)],
                ..Default::default()
            },
            "logit_bias",
        ),
    ];
    for (p, name) in cases {
        let err = Sampler::new(p, 10, DryBreakers::default())
            .err()
            .expect(name);
        assert_eq!(err.name, name);
        assert!(err.to_string().contains(name));
    }
}

#[test]
fn stop_strings_match_fully_and_partially() {
    let s = StopStrings::new(["</s>".to_string(), "\n\nUser:".to_string()]);
    assert_eq!(s.check("hello</s> more"), StopMatch::Full(5));
    assert_eq!(s.check("hello</"), StopMatch::Partial(5));
    assert_eq!(s.check("hello\n\nUs"), StopMatch::Partial(5));
    assert_eq!(s.check("hello"), StopMatch::None);
    assert_eq!(
        StopStrings::new(["é!".to_string()]).check("caf\u{e9}"),
        StopMatch::Partial(3)
    );
}
