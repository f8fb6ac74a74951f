//! [`Model`]: a loaded GGUF model and its forward pass.

use std::sync::Arc;

use hearth_gguf::{GgufFile, MappedGguf};

use crate::arch;
use crate::config::ModelConfig;
use crate::error::{ConfigError, ModelError, Result};
use crate::kv_cache::{KvCache, KvType, LayerKv};
use crate::layer::{self, rope_params, Batch, Layer, Loader};
use hearth_kernels::pool::ThreadPool;

use crate::ops::{self, MatmulObserver, Mm, Numerics, Source, Weight};

/// Largest number of tokens evaluated in one step; longer batches are split like llama.cpp's
/// micro-batches (`n_ubatch`, 512 by default), which also decides which attention kernel ggml
/// uses for each part.
pub const N_UBATCH: usize = 512;

/// How the rows of a batch are computed.
///
/// llama.cpp's CPU kernels sum in different orders depending on how many rows a micro-batch has
/// (e.g. `gemm` vs `gemv` for repacked Q4_K, the tiled K-quant matmul from 8 rows, tiled flash
/// attention from 64 rows), so the same tokens give slightly different floating-point results
/// when evaluated as one batch or one at a time. Both of llama.cpp's behaviours are available.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BatchNumerics {
    /// As llama.cpp computes a micro-batch of this many tokens (prompt processing).
    #[default]
    Batched,
    /// Every token as llama.cpp computes a batch of one token (a decode step), while still
    /// sharing the work of the batch: a teacher-forced batch gives the logits an incremental
    /// decode would.
    PerToken,
}

/// Which positions of a batch to compute logits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogitsFor {
    /// Only the last token (prompt processing before sampling).
    Last,
    /// Every token of the batch.
    All,
    /// The last `n` tokens of the batch.
    LastN(usize),
}

/// One sequence of a [`Model::forward_batch`] call.
pub struct SeqBatch<'a> {
    /// Tokens to evaluate after those already in `kv`.
    pub tokens: &'a [u32],
    /// The sequence's cache.
    pub kv: &'a mut KvCache,
    /// Which rows' logits to return.
    pub logits: LogitsFor,
}

/// Logits of some positions of a batch: one row of `n_vocab` raw scores per position.
#[derive(Clone, Debug, PartialEq)]
pub struct Logits {
    n_vocab: usize,
    /// Batch indices of the rows.
    rows: Vec<usize>,
    data: Vec<f32>,
}

impl Logits {
    /// Vocabulary size (length of each row).
    pub fn n_vocab(&self) -> usize {
        self.n_vocab
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Batch index of each row, ascending.
    pub fn batch_indices(&self) -> &[usize] {
        &self.rows
    }

    /// Row `i` (in the order of [`Logits::batch_indices`]).
    pub fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.n_vocab..(i + 1) * self.n_vocab]
    }

    /// The last row (the last requested position); empty when no row was requested.
    pub fn last(&self) -> &[f32] {
        match self.rows.len() {
            0 => &[],
            n => self.row(n - 1),
        }
    }

    /// Rows in order.
    pub fn rows(&self) -> impl Iterator<Item = &[f32]> {
        self.data.chunks_exact(self.n_vocab)
    }

    /// All rows, row-major.
    pub fn as_slice(&self) -> &[f32] {
        &self.data
    }
}

/// RoPE frequency factors of the model (global tensors).
#[derive(Default)]
struct RopeFactors {
    /// `rope_freqs.weight` (llama 3).
    freqs: Option<Vec<f32>>,
    /// `rope_factors_long/short.weight` (phi3 LongRoPE), chosen by context size.
    long: Option<Vec<f32>>,
    short: Option<Vec<f32>>,
}

pub(crate) struct Weights {
    tok_embd: Weight,
    output_norm: Vec<f32>,
    output_norm_b: Option<Vec<f32>>,
    output: Weight,
    output_b: Option<Vec<f32>>,
    rope: RopeFactors,
    layers: Vec<Layer>,
    /// Per-layer token embeddings (gemma4 E2B/E4B).
    ple: Option<arch::gemma4::PleInput>,
}

/// Loads (or, with a dry loader, only checks) every tensor of the model.
pub(crate) fn load_weights(l: &Loader<'_>, cfg: &ModelConfig) -> Result<Weights, ConfigError> {
    let (e, v) = (cfg.n_embd, cfg.n_vocab);
    let tok_embd = l.matrix("token_embd.weight", e, v)?;
    let output_norm = l.vector("output_norm.weight", e)?;
    let output_norm_b = l.vector_opt("output_norm.bias", e)?;
    let output = match arch::uses_output_tensor(cfg.arch) {
        true => l.matrix_opt("output.weight", e, v)?,
        false => None,
    }
    .unwrap_or_else(|| tok_embd.clone());
    let output_b = l.vector_opt("output.bias", v)?;
    let half = cfg.rope.n_rot / 2;
    let rope = RopeFactors {
        freqs: l.vector_opt("rope_freqs.weight", half)?,
        long: l.vector_opt("rope_factors_long.weight", half)?,
        short: l.vector_opt("rope_factors_short.weight", half)?,
    };
    let layers = (0..cfg.n_layer)
        .map(|il| arch::load_layer(l, il, cfg))
        .collect::<Result<Vec<_>, _>>()?;
    let ple = arch::gemma4::PleInput::load(l, cfg)?;
    Ok(Weights {
        ple,
        tok_embd,
        output_norm,
        output_norm_b,
        output,
        output_b,
        rope,
        layers,
    })
}

/// A model ready to run: its config and its weights (kept in the file's types, in the map).
pub struct Model {
    cfg: ModelConfig,
    w: Weights,
    pool: Arc<ThreadPool>,
    numerics: Numerics,
    observer: Option<Arc<MatmulObserver>>,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model").field("cfg", &self.cfg).finish()
    }
}

impl Model {
    /// Loads the model of a memory-mapped GGUF file.
    pub fn load(gguf: Arc<MappedGguf>) -> Result<Model> {
        let cfg = ModelConfig::from_metadata_and_embd(gguf.file())?;
        let source = Source::Mapped(gguf.clone());
        let w = load_weights(&Loader::new(gguf.file(), Some(source)), &cfg)?;
        Ok(Model::new(cfg, w))
    }

    /// Loads a model from a GGUF file held in memory.
    pub fn from_bytes(bytes: Arc<[u8]>) -> Result<Model> {
        let file = GgufFile::parse(&bytes)?;
        let cfg = ModelConfig::from_metadata_and_embd(&file)?;
        let w = load_weights(
            &Loader::new(&file, Some(Source::Owned(bytes.clone()))),
            &cfg,
        )?;
        Ok(Model::new(cfg, w))
    }

    fn new(cfg: ModelConfig, w: Weights) -> Model {
        Model {
            cfg,
            w,
            pool: Arc::new(ThreadPool::with_available_parallelism()),
            numerics: Numerics::default(),
            observer: None,
        }
    }

    /// Calls `observer(weight name, input rows, n_rows)` before every weight product of the
    /// forward pass (the output projection included), e.g. to collect an importance matrix;
    /// `None` removes it.
    pub fn set_matmul_observer(&mut self, observer: Option<Arc<MatmulObserver>>) {
        self.observer = observer;
    }

    /// Runs the model on `n_threads` threads (the caller's included; default: all cores).
    pub fn set_threads(&mut self, n_threads: usize) {
        if n_threads != self.pool.n_threads() {
            self.pool = Arc::new(ThreadPool::new(n_threads.max(1)));
        }
    }

    /// Runs the model on `pool` (shared with other users of the pool).
    pub fn set_pool(&mut self, pool: Arc<ThreadPool>) {
        self.pool = pool;
    }

    /// Threads the forward pass runs on.
    pub fn n_threads(&self) -> usize {
        self.pool.n_threads()
    }

    /// Chooses the kernels: [`Numerics::Fast`] (default) or llama.cpp's bits.
    pub fn set_numerics(&mut self, numerics: Numerics) {
        self.numerics = numerics;
    }

    /// The kernels in use.
    pub fn numerics(&self) -> Numerics {
        self.numerics
    }

    /// Bytes of weights a decode step reads: every matrix of the layers (of expert layers,
    /// the router and `n_expert_used` experts) and the output projection (the token embedding
    /// contributes one row, unless it is also the output).
    pub fn weight_bytes_per_token(&self) -> u64 {
        let mut total = self.w.output.n_bytes() as u64;
        for l in &self.w.layers {
            total += l.active_bytes(&self.cfg);
        }
        if let Some(p) = &self.w.ple {
            total += p.bytes_per_token();
        }
        total
    }

    /// The kernel levels the weight products run at with [`Numerics::Fast`], e.g.
    /// `"avx2"` or `"avx2 (Q4_K, Q8_0), scalar (IQ1_S)"` when types differ.
    pub fn kernel_summary(&self) -> String {
        if self.numerics == Numerics::LlamaCpp {
            return "llama.cpp-exact".to_string();
        }
        let mut levels: Vec<(&'static str, Vec<String>)> = Vec::new();
        let mut add = |w: &Weight| {
            let ty = format!("{:?}", w.ty());
            let name = w.kernel_name();
            match levels.iter_mut().find(|(l, _)| *l == name) {
                Some((_, tys)) if !tys.contains(&ty) => tys.push(ty),
                Some(_) => {}
                None => levels.push((name, vec![ty])),
            }
        };
        add(&self.w.output);
        for l in &self.w.layers {
            l.for_each_weight(&mut add);
        }
        if let Some(p) = &self.w.ple {
            p.for_each_weight(&mut add);
        }
        if levels.len() == 1 {
            return levels[0].0.to_string();
        }
        levels
            .iter()
            .map(|(l, tys)| format!("{l} ({})", tys.join(", ")))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The hyperparameters.
    pub fn config(&self) -> &ModelConfig {
        &self.cfg
    }

    /// Vocabulary size.
    pub fn n_vocab(&self) -> usize {
        self.cfg.n_vocab
    }

    /// A fresh KV cache of `n_ctx` positions for this model.
    pub fn new_kv_cache(&self, n_ctx: usize, kv_type: KvType) -> Result<KvCache> {
        let windows: Vec<Option<usize>> = (0..self.cfg.n_layer_kv)
            .map(|il| self.cfg.is_swa(il).then_some(self.cfg.sliding_window))
            .collect();
        KvCache::new(n_ctx, kv_type, &windows, &self.cfg.kv_widths())
    }

    fn check_cache(&self, kv: &KvCache) -> Result<()> {
        let shape = self.cfg.kv_widths();
        if kv.shape != shape {
            return Err(ModelError::KvCache {
                reason: format!(
                    "made for {} layers of (K width, V width) {:?}, this model has {} of {:?}",
                    kv.shape.len(),
                    kv.shape.first(),
                    shape.len(),
                    shape.first()
                ),
            });
        }
        Ok(())
    }

    /// The batches llama-server evaluates a prompt of `n_prompt` tokens in. For models with a
    /// sliding window it ends a batch 4 + n_ubatch and 4 tokens before the end of the prompt,
    /// to save context checkpoints (`tools/server/server-context.cpp`, llama.cpp PR 20288).
    /// Since ggml's kernels depend on the batch size, evaluating a prompt in these batches is
    /// what reproduces llama-server's results bit for bit; other splits give results that
    /// differ in the last bits.
    pub fn prompt_batches_like_llama_server(&self, n_prompt: usize) -> Vec<std::ops::Range<usize>> {
        let mut cuts: Vec<usize> = Vec::new();
        if self.cfg.sliding_window > 0 {
            cuts.extend(
                [4 + N_UBATCH, 4]
                    .iter()
                    .filter(|&&off| n_prompt > off)
                    .map(|&off| n_prompt - off),
            );
        }
        cuts.push(n_prompt);
        let mut out = Vec::new();
        let mut start = 0;
        for c in cuts {
            if c > start {
                out.push(start..c);
                start = c;
            }
        }
        out
    }

    /// RoPE frequency factors for a context of `n_ctx` (`llama_model::get_rope_factors`).
    fn rope_factors(&self, n_ctx: usize) -> Option<&[f32]> {
        let r = &self.w.rope;
        if let Some(f) = &r.freqs {
            return Some(f);
        }
        if n_ctx > self.cfg.rope.n_ctx_orig {
            r.long.as_deref()
        } else {
            r.short.as_deref()
        }
    }

    /// Evaluates `tokens` at the positions following those already in `kv`, stores their K and V
    /// in `kv`, and returns the logits of the positions `logits_for` asks for.
    ///
    /// A batch that does not fit in the context is an error ([`ModelError::ContextOverflow`])
    /// unless the cache asks for a context shift ([`KvCache::with_context_shift`]).
    pub fn forward(
        &self,
        tokens: &[u32],
        kv: &mut KvCache,
        logits_for: LogitsFor,
    ) -> Result<Logits> {
        self.forward_with(tokens, kv, logits_for, BatchNumerics::Batched)
    }

    /// [`Model::forward`] with a choice of [`BatchNumerics`].
    pub fn forward_with(
        &self,
        tokens: &[u32],
        kv: &mut KvCache,
        logits_for: LogitsFor,
        numerics: BatchNumerics,
    ) -> Result<Logits> {
        let per_token = numerics == BatchNumerics::PerToken;
        let n = tokens.len();
        let rows = self.check_batch(tokens, kv, logits_for)?;
        self.make_room(kv, n)?;

        let mut data = Vec::with_capacity(rows.len() * self.cfg.n_vocab);
        for (c, chunk) in tokens.chunks(N_UBATCH).enumerate() {
            let base = c * N_UBATCH;
            let keep: Vec<usize> = rows
                .iter()
                .filter(|&&r| r >= base && r < base + chunk.len())
                .map(|&r| r - base)
                .collect();
            let logits = self.forward_ubatch(chunk, kv, &keep, per_token)?;
            data.extend_from_slice(&logits);
        }
        Ok(Logits {
            n_vocab: self.cfg.n_vocab,
            rows,
            data,
        })
    }

    /// The batch rows `logits_for` asks for, after checking the batch.
    fn check_batch(
        &self,
        tokens: &[u32],
        kv: &KvCache,
        logits_for: LogitsFor,
    ) -> Result<Vec<usize>> {
        let n = tokens.len();
        if n == 0 {
            return Err(ModelError::EmptyBatch);
        }
        self.check_cache(kv)?;
        if let Some((index, &id)) = tokens
            .iter()
            .enumerate()
            .find(|(_, &id)| id as usize >= self.cfg.n_vocab)
        {
            return Err(ModelError::TokenOutOfRange {
                id,
                index,
                n_vocab: self.cfg.n_vocab,
            });
        }
        Ok(match logits_for {
            LogitsFor::Last => vec![n - 1],
            LogitsFor::All => (0..n).collect(),
            LogitsFor::LastN(k) => {
                if k > n {
                    return Err(ModelError::LogitsRows {
                        requested: k,
                        n_tokens: n,
                    });
                }
                (n - k..n).collect()
            }
        })
    }

    /// Evaluates several sequences, each with its own KV cache, in one pass: the weight
    /// products run on the rows of all sequences together (read once from memory for all),
    /// attention per sequence. This is how a server advances all its running requests by one
    /// step. Returns each sequence's logits, as [`Model::forward`] would.
    ///
    /// With [`Numerics::Fast`] a sequence's logits are bit-identical to evaluating it alone;
    /// with [`Numerics::LlamaCpp`] the sequences are evaluated one after the other (llama.cpp's
    /// kernels depend on the batch size). Every sequence is checked before any is evaluated;
    /// an error leaves all caches as they were, except for context shifts already made.
    pub fn forward_batch(&self, seqs: &mut [SeqBatch<'_>]) -> Result<Vec<Logits>> {
        let rows = seqs
            .iter()
            .map(|s| self.check_batch(s.tokens, s.kv, s.logits))
            .collect::<Result<Vec<_>>>()?;
        for s in seqs.iter_mut() {
            self.make_room(s.kv, s.tokens.len())?;
        }
        let total: usize = seqs.iter().map(|s| s.tokens.len()).sum();
        if self.numerics == Numerics::LlamaCpp || total > N_UBATCH {
            // Exact numerics, or more than one micro-batch: one sequence at a time (a long
            // prompt is split into micro-batches by `forward`).
            if self.numerics == Numerics::Fast {
                return self.forward_batch_grouped(seqs, rows);
            }
            return seqs
                .iter_mut()
                .map(|s| self.forward(s.tokens, s.kv, s.logits))
                .collect();
        }
        self.forward_group(seqs, &rows)
    }

    /// Fast numerics, more tokens than a micro-batch: sequences packed into micro-batches in
    /// order; a sequence longer than a micro-batch runs alone.
    fn forward_batch_grouped(
        &self,
        seqs: &mut [SeqBatch<'_>],
        rows: Vec<Vec<usize>>,
    ) -> Result<Vec<Logits>> {
        let mut out = Vec::with_capacity(seqs.len());
        let mut i = 0;
        while i < seqs.len() {
            if seqs[i].tokens.len() > N_UBATCH {
                let s = &mut seqs[i];
                out.push(self.forward(s.tokens, s.kv, s.logits)?);
                i += 1;
                continue;
            }
            let mut j = i;
            let mut n = 0;
            while j < seqs.len() && n + seqs[j].tokens.len() <= N_UBATCH {
                n += seqs[j].tokens.len();
                j += 1;
            }
            out.extend(self.forward_group(&mut seqs[i..j], &rows[i..j])?);
            i = j;
        }
        Ok(out)
    }

    /// Sequences that fit in one micro-batch together.
    fn forward_group(&self, seqs: &mut [SeqBatch<'_>], rows: &[Vec<usize>]) -> Result<Vec<Logits>> {
        let mut parts: Vec<(&[u32], &mut KvCache, &[usize])> = seqs
            .iter_mut()
            .zip(rows)
            .map(|(s, r)| (s.tokens, &mut *s.kv, r.as_slice()))
            .collect();
        let data = self.forward_ubatch_multi(&mut parts, false, Output::Logits)?;
        Ok(data
            .into_iter()
            .zip(rows)
            .map(|(data, rows)| Logits {
                n_vocab: self.cfg.n_vocab,
                rows: rows.clone(),
                data,
            })
            .collect())
    }

    /// The hidden states after the output norm of every token of `tokens`, evaluated after
    /// those already in `kv` (`[n][n_embd]`, row-major): what embeddings are pooled from
    /// (llama.cpp's `embd` output with pooling `none`).
    pub fn hidden_states(&self, tokens: &[u32], kv: &mut KvCache) -> Result<Vec<f32>> {
        self.check_batch(tokens, kv, LogitsFor::All)?;
        self.make_room(kv, tokens.len())?;
        let mut out = Vec::with_capacity(tokens.len() * self.cfg.n_embd);
        for chunk in tokens.chunks(N_UBATCH) {
            let keep: Vec<usize> = (0..chunk.len()).collect();
            let mut h =
                self.forward_ubatch_multi(&mut [(chunk, &mut *kv, &keep)], false, Output::Hidden)?;
            out.extend(h.pop().unwrap_or_default());
        }
        Ok(out)
    }

    /// Checks the context size and shifts the context if the cache asks for it.
    fn make_room(&self, kv: &mut KvCache, n: usize) -> Result<()> {
        if kv.n_past + n <= kv.n_ctx {
            return Ok(());
        }
        let Some(n_keep) = kv.context_shift else {
            return Err(ModelError::ContextOverflow {
                n_past: kv.n_past,
                n_tokens: n,
                n_ctx: kv.n_ctx,
            });
        };
        while kv.n_past + n > kv.n_ctx {
            let n_keep_eff = n_keep.min(kv.n_past);
            let n_left = kv.n_past - n_keep_eff;
            let n_discard = n_left / 2;
            if n_discard == 0 {
                return Err(ModelError::ContextShiftImpossible {
                    n_tokens: n,
                    n_ctx: kv.n_ctx,
                    n_keep,
                });
            }
            self.shift_context(kv, n_keep_eff, n_discard);
        }
        Ok(())
    }

    /// Removes positions `n_keep .. n_keep + n_discard` from the cache and moves the later ones
    /// down, re-rotating their keys (`llama_memory_seq_rm` + `llama_memory_seq_add`, as
    /// llama-server's context shift does).
    pub fn shift_context(&self, kv: &mut KvCache, n_keep: usize, n_discard: usize) {
        let n_keep = n_keep.min(kv.n_past);
        let n_discard = n_discard.min(kv.n_past - n_keep);
        if n_discard == 0 {
            return;
        }
        let factors = self.rope_factors(kv.n_ctx);
        let cfg = &self.cfg;
        let mut cache = Vec::new();
        kv.discard(n_keep, n_keep + n_discard, |il, row, delta| {
            let lc = cfg.for_layer(il);
            let rope = rope_params(&lc, il, arch::layer_rope_factors(&lc, il, factors));
            rope.cache(delta, &mut cache);
            rope.apply(row, lc.head_dim_k, &cache);
        });
    }

    /// One micro-batch of one sequence; returns the logits of the batch rows `keep`.
    fn forward_ubatch(
        &self,
        tokens: &[u32],
        kv: &mut KvCache,
        keep: &[usize],
        per_token: bool,
    ) -> Result<Vec<f32>> {
        let mut out =
            self.forward_ubatch_multi(&mut [(tokens, kv, keep)], per_token, Output::Logits)?;
        Ok(out.pop().unwrap_or_default())
    }

    /// One micro-batch of several sequences, each with its own cache: the products run on all
    /// rows together, attention per sequence. Returns, per sequence, the logits (or the
    /// normalized hidden states) of its rows `keep`.
    fn forward_ubatch_multi(
        &self,
        seqs: &mut [(&[u32], &mut KvCache, &[usize])],
        per_token: bool,
        output: Output,
    ) -> Result<Vec<Vec<f32>>> {
        let cfg = &self.cfg;
        let e = cfg.n_embd;
        let n: usize = seqs.iter().map(|s| s.0.len()).sum();
        let mut pos = Vec::with_capacity(n);
        let mut segments = Vec::with_capacity(seqs.len());
        let mut keep = Vec::new();
        let mut kept_per_seq = Vec::with_capacity(seqs.len());
        for (tokens, kv, k) in seqs.iter() {
            let start = pos.len();
            let pos0 = kv.n_past as i64;
            pos.extend((0..tokens.len() as i64).map(|i| pos0 + i));
            segments.push(start..pos.len());
            keep.extend(k.iter().map(|&r| start + r));
            kept_per_seq.push(k.len());
        }

        // build_inp_embd: rows of token_embd, then the architecture's scale.
        let mut x = vec![0.0f32; n * e];
        let all_tokens = seqs.iter().flat_map(|s| s.0.iter());
        for (row, &t) in x.chunks_exact_mut(e).zip(all_tokens) {
            self.w.tok_embd.dequantize_row(t as usize, row)?;
        }
        if let Some(s) = arch::embed_scale(cfg) {
            ops::scale_inplace(&mut x, s);
        }

        let mm = Mm {
            pool: &self.pool,
            numerics: self.numerics,
            per_token,
            observer: self.observer.as_deref(),
        };
        // RoPE factors depend on the context size (phi3), which may differ between caches;
        // sequences of one micro-batch share the first one's.
        let n_ctx = seqs.first().map_or(0, |s| s.1.n_ctx);
        let per_layer_inp = match &self.w.ple {
            Some(p) => {
                let tokens: Vec<u32> = seqs.iter().flat_map(|s| s.0.iter().copied()).collect();
                Some(p.compute(cfg, &tokens, &x, &mm)?)
            }
            None => None,
        };
        let batch = Batch {
            pos: &pos,
            segments: &segments,
            rope_factors: self.rope_factors(n_ctx),
            mm,
            per_layer_inp: per_layer_inp.as_deref(),
        };
        for (il, layer) in self.w.layers.iter().enumerate() {
            // Layers past `n_layer_kv` attend over an earlier layer's cache, already trimmed
            // for this batch.
            let kv_il = cfg.kv_layer(il);
            let mut caches: Vec<&mut LayerKv> = seqs
                .iter_mut()
                .zip(&segments)
                .map(|((_, kv, _), seg)| {
                    let cache = &mut kv.layers[kv_il];
                    if kv_il == il {
                        cache.evict_for(pos[seg.start]);
                    }
                    cache
                })
                .collect();
            let last = (il + 1 == cfg.n_layer).then_some(keep.as_slice());
            x = arch::forward_layer(cfg, layer, il, x, &batch, &mut caches, last)?;
        }
        for (tokens, kv, _) in seqs.iter_mut() {
            kv.n_past += tokens.len();
        }
        let rows = keep.len();
        let mut h = vec![0.0f32; rows * e];
        if rows > 0 {
            ops::rms_norm(
                &x,
                &self.w.output_norm,
                self.w.output_norm_b.as_deref(),
                cfg.rms_eps,
                &mut h,
            );
        }
        let (width, out) = match output {
            Output::Hidden => (e, h),
            Output::Logits => {
                let mut logits = vec![0.0f32; rows * cfg.n_vocab];
                if rows > 0 {
                    mm.matmul(&self.w.output, &h, rows, &mut logits)?;
                }
                if let Some(b) = &self.w.output_b {
                    ops::add_bias(&mut logits, b);
                }
                if let Some(c) = cfg.final_softcap {
                    ops::softcap_inplace(&mut logits, c);
                }
                (cfg.n_vocab, logits)
            }
        };
        let mut result = Vec::with_capacity(seqs.len());
        let mut at = 0;
        for k in kept_per_seq {
            result.push(out[at * width..(at + k) * width].to_vec());
            at += k;
        }
        Ok(result)
    }
}

/// What a micro-batch returns for its kept rows.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Output {
    Logits,
    /// The hidden states after the output norm (for embeddings).
    Hidden,
}

/// Keeps `rows` of `x` if `keep` is given (the last layer's `inp_out_ids`).
pub(crate) fn keep_rows(x: Vec<f32>, width: usize, keep: Option<&[usize]>) -> Vec<f32> {
    match keep {
        Some(rows) => layer::select_rows(&x, width, rows),
        None => x,
    }
}
