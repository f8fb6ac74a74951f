//! The candidate array the samplers narrow down (`llama_token_data_array`).

/// One candidate token.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TokenData {
    pub id: u32,
    pub logit: f32,
    pub p: f32,
}

/// Candidates, with a flag telling whether they are sorted by logit, best first.
#[derive(Clone, Debug, Default)]
pub struct Candidates {
    pub data: Vec<TokenData>,
    pub sorted: bool,
}

impl Candidates {
    /// All tokens of a logit vector, in id order.
    pub fn from_logits(logits: &[f32]) -> Self {
        let data = logits
            .iter()
            .enumerate()
            .map(|(id, &logit)| TokenData {
                id: id as u32,
                logit,
                p: 0.0,
            })
            .collect();
        Candidates {
            data,
            sorted: false,
        }
    }

    /// Number of candidates left.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// Whether no candidate is left.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Puts the best `k` candidates first, in descending logit order, and
    /// marks the array sorted when `k` covers it all.
    pub fn sort_top(&mut self, k: usize) {
        let k = k.min(self.data.len());
        if k == 0 {
            return;
        }
        let by_logit = |a: &TokenData, b: &TokenData| b.logit.total_cmp(&a.logit);
        if k < self.data.len() {
            self.data.select_nth_unstable_by(k - 1, by_logit);
        }
        self.data[..k].sort_by(by_logit);
        if k == self.data.len() {
            self.sorted = true;
        }
    }

    /// Keeps the first `k` candidates.
    pub fn truncate(&mut self, k: usize) {
        self.data.truncate(k.max(1).min(self.data.len()));
    }

    /// The largest logit.
    pub fn max_logit(&self) -> f32 {
        if self.sorted {
            return self.data.first().map_or(f32::NEG_INFINITY, |t| t.logit);
        }
        self.data
            .iter()
            .map(|t| t.logit)
            .fold(f32::NEG_INFINITY, f32::max)
    }

    /// Fills `p` with the softmax of the logits (sorting first if asked),
    /// as `llama_sampler_softmax_impl` does.
    pub fn softmax(&mut self, sort: bool) {
        if self.data.is_empty() {
            return;
        }
        if sort && !self.sorted {
            self.sort_top(self.data.len());
        }
        let max = self.max_logit();
        let mut sum = 0.0f32;
        for t in &mut self.data {
            t.p = (t.logit - max).exp();
            sum += t.p;
        }
        for t in &mut self.data {
            t.p /= sum;
        }
    }
}
