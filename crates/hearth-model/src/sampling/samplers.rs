//! The individual samplers of llama.cpp's chain, each narrowing or reshaping
//! the candidates (llama.cpp src/llama-sampler.cpp).

use super::candidates::Candidates;
use super::rng::Mt19937;

/// Top-k: keeps the `k` best; `k <= 0` disables.
pub fn top_k(c: &mut Candidates, k: i32) {
    if k <= 0 || c.is_empty() {
        return;
    }
    let k = (k as usize).min(c.len());
    if !c.sorted {
        c.sort_top(k);
    }
    c.data.truncate(k);
    c.sorted = true;
}

/// Top-p (nucleus): keeps the smallest prefix whose probability mass is at
/// least `p`, and at least `min_keep` tokens.
pub fn top_p(c: &mut Candidates, p: f32, min_keep: usize) {
    if p >= 1.0 || c.is_empty() {
        return;
    }
    c.softmax(true);
    let mut cum = 0.0f32;
    let mut last = c.len();
    for (i, t) in c.data.iter().enumerate() {
        cum += t.p;
        if cum >= p && i + 1 >= min_keep {
            last = i + 1;
            break;
        }
    }
    c.data.truncate(last);
}

/// Min-p: keeps tokens whose probability is at least `p` times the best's.
pub fn min_p(c: &mut Candidates, p: f32, min_keep: usize) {
    if p <= 0.0 || c.is_empty() {
        return;
    }
    let min_logit = c.max_logit() + p.ln();
    let kept = c.data.iter().filter(|t| t.logit >= min_logit).count();
    if kept > 0 && kept >= min_keep {
        c.data.retain(|t| t.logit >= min_logit);
        return;
    }
    c.softmax(true);
    let mut i = 1;
    while i < c.len() && !(c.data[i].logit < min_logit && i >= min_keep) {
        i += 1;
    }
    c.data.truncate(i);
}

/// Locally typical sampling: keeps the tokens whose surprise is closest to
/// the entropy until their mass exceeds `p`.
pub fn typical(c: &mut Candidates, p: f32, min_keep: usize) {
    if p >= 1.0 || c.is_empty() {
        return;
    }
    c.softmax(true);
    let entropy: f32 = c.data.iter().map(|t| -t.p * t.p.ln()).sum();
    let shifted: Vec<f32> = c.data.iter().map(|t| (-t.p.ln() - entropy).abs()).collect();
    let mut order: Vec<usize> = (0..c.len()).collect();
    order.sort_by(|&a, &b| shifted[a].total_cmp(&shifted[b]));
    let mut cum = 0.0f32;
    let mut last = order.len();
    for (i, &idx) in order.iter().enumerate() {
        cum += c.data[idx].p;
        if cum > p && (min_keep == 0 || i + 1 >= min_keep) {
            last = i + 1;
            break;
        }
    }
    c.data = order[..last].iter().map(|&i| c.data[i]).collect();
    c.sorted = false;
}

/// Temperature; `temp <= 0` keeps only the best token (greedy).
pub fn temperature(c: &mut Candidates, temp: f32) {
    if c.is_empty() {
        return;
    }
    if temp <= 0.0 {
        let best = c.data.iter().enumerate().fold(0, |best, (i, t)| {
            if t.logit > c.data[best].logit {
                i
            } else {
                best
            }
        });
        for (i, t) in c.data.iter_mut().enumerate() {
            if i != best {
                t.logit = f32::NEG_INFINITY;
            }
        }
        return;
    }
    for t in &mut c.data {
        t.logit /= temp;
    }
}

/// Dynamic temperature (`temp_ext`): the temperature moves within
/// `temp ± range` with the normalized entropy raised to `exponent`.
pub fn temperature_ext(c: &mut Candidates, temp: f32, range: f32, exponent: f32) {
    if range <= 0.0 {
        return temperature(c, temp);
    }
    if c.len() <= 1 {
        return;
    }
    let min_temp = (temp - range).max(0.0);
    let max_temp = temp + range;
    let max_entropy = -(1.0f32 / c.len() as f32).ln();
    c.softmax(true);
    let entropy: f32 = c
        .data
        .iter()
        .filter(|t| t.p > 0.0)
        .map(|t| -t.p * t.p.ln())
        .sum();
    let dyn_temp = min_temp + (max_temp - min_temp) * (entropy / max_entropy).powf(exponent);
    temperature(c, dyn_temp);
    let max = f64::from(c.data[0].logit);
    let mut sum = 0.0f64;
    for t in &mut c.data {
        let p = (f64::from(t.logit) - max).exp();
        t.p = p as f32;
        sum += p;
    }
    for t in &mut c.data {
        t.p = (f64::from(t.p) / sum) as f32;
    }
}

/// Top-nσ: masks tokens whose logit is more than `n` standard deviations
/// below the best.
pub fn top_n_sigma(c: &mut Candidates, n: f32) {
    if n <= 0.0 || c.len() <= 1 {
        return;
    }
    let valid = c.data.iter().filter(|t| t.logit != f32::NEG_INFINITY);
    let (mut max, mut sum, mut count) = (c.data[0].logit, 0.0f32, 0usize);
    for t in valid {
        max = max.max(t.logit);
        sum += t.logit;
        count += 1;
    }
    let mean = if count > 0 { sum / count as f32 } else { 0.0 };
    let acc: f32 = c
        .data
        .iter()
        .filter(|t| t.logit != f32::NEG_INFINITY)
        .map(|t| (f64::from(t.logit - mean).powi(2)) as f32)
        .sum();
    let std = if count > 0 {
        (acc / count as f32).sqrt()
    } else {
        0.0
    };
    for t in &mut c.data {
        if t.logit < max - n * std {
            t.logit = f32::NEG_INFINITY;
        }
    }
}

/// XTC ("exclude top choices"): with `probability`, removes every token above
/// `threshold` except the least likely of them.
pub fn xtc(
    c: &mut Candidates,
    probability: f32,
    threshold: f32,
    min_keep: usize,
    rng: &mut Mt19937,
) {
    if probability <= 0.0 || threshold > 0.5 || c.len() < 2 {
        return;
    }
    if rng.uniform_f32() > probability {
        return;
    }
    c.softmax(true);
    let mut pos_last = 0;
    for (i, t) in c.data.iter().enumerate() {
        if t.p >= threshold {
            pos_last = i;
        } else {
            break;
        }
    }
    if c.len() - pos_last >= min_keep && pos_last > 0 {
        c.data.drain(..pos_last);
    }
}

/// The final draw (`dist`): softmax over what is left, then one uniform
/// double picks by cumulative mass. Returns the index into `c.data`.
pub fn dist(c: &mut Candidates, rng: &mut Mt19937) -> usize {
    if c.len() <= 1 {
        rng.uniform_f64();
        if let Some(t) = c.data.first_mut() {
            t.p = 1.0;
        }
        return 0;
    }
    let max = c.max_logit();
    let mut sum = 0.0f64;
    for t in &mut c.data {
        t.p = (t.logit - max).exp();
        sum += f64::from(t.p);
    }
    let target = sum * rng.uniform_f64();
    let mut run = 0.0f64;
    let mut chosen = c.len() - 1;
    for (i, t) in c.data.iter().enumerate() {
        run += f64::from(t.p);
        if run >= target {
            chosen = i;
            break;
        }
    }
    for t in &mut c.data {
        t.p = (f64::from(t.p) / sum) as f32;
    }
    chosen
}

/// `std::discrete_distribution` over the candidates' probabilities, as
/// llama.cpp's mirostat samplers draw.
pub fn discrete(c: &Candidates, rng: &mut Mt19937) -> usize {
    let total: f64 = c.data.iter().map(|t| f64::from(t.p)).sum();
    let mut cum = Vec::with_capacity(c.len());
    let mut run = 0.0f64;
    for t in &c.data {
        run += f64::from(t.p);
        cum.push(run / total);
    }
    if let Some(last) = cum.last_mut() {
        *last = 1.0;
    }
    let u = rng.uniform_f64();
    cum.partition_point(|&x| x < u)
        .min(c.len().saturating_sub(1))
}
