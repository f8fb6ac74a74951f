//! The engine: one thread owns the model and runs the scheduler loop.
//!
//! Requests wait in a bounded admission queue ([`Engine::submit`] hands back
//! [`SubmitError::QueueFull`] when it is full). Every step the loop admits
//! waiting requests into free slots (choosing the slot whose cached tokens
//! share the longest prefix with the prompt), then runs one
//! [`Model::forward_batch`] over every running slot: a decoding slot adds its
//! last sampled token, a prefilling slot a chunk of its prompt (at most
//! [`EngineConfig::prefill_chunk`] prompt tokens per step in all, so running
//! streams keep flowing). Each slot then samples with its own [`Sampler`],
//! checks end-of-generation, stop strings and limits, and sends what it made
//! on its channel. A request whose receiver is dropped (the client went away)
//! is removed at the start of the next step.

use std::collections::VecDeque;
use std::ops::Range;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use hearth_model::sampling::{DryBreakers, Sampler, SamplingParams, StopMatch, StopStrings};
use hearth_model::{KvCache, KvType, Logits, LogitsFor, Model, SeqBatch};
use hearth_tokenizer::{StreamDecoder, Tokenizer};
use tokio::sync::{mpsc, oneshot};

use crate::logprobs::logprobs;
use crate::metrics::Metrics;

/// How the engine runs.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// Sequences evaluated together (`--parallel`), each with its own KV cache.
    pub n_slots: usize,
    /// Context of each slot, in tokens.
    pub n_ctx: usize,
    pub kv_type: KvType,
    /// Requests that may wait for a slot (`--max-queue`).
    pub max_queue: usize,
    /// Most prompt tokens evaluated per step, over all prefilling slots.
    pub prefill_chunk: usize,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            n_slots: 4,
            n_ctx: 4096,
            kv_type: KvType::F16,
            max_queue: 64,
            prefill_chunk: 256,
        }
    }
}

/// A validated generation request, with every default resolved.
#[derive(Clone, Debug)]
pub struct GenParams {
    /// Token ids (checked against the vocabulary; shorter than the context).
    pub prompt: Vec<u32>,
    /// Most new tokens; `None` = until end of generation or a full context.
    pub max_tokens: Option<usize>,
    pub sampling: SamplingParams,
    pub stop: Vec<String>,
    /// Log-probabilities: `Some(k)` records the chosen token's and the `k` best.
    pub logprobs: Option<usize>,
    pub ignore_eos: bool,
    /// Reuse a slot's cached prefix.
    pub cache_prompt: bool,
}

/// Why a generation ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Finish {
    /// An end-of-generation token.
    Eog,
    /// `max_tokens` reached.
    Limit,
    /// The context is full.
    Context,
    /// A stop string matched (the string).
    Stop(String),
}

impl Finish {
    /// OpenAI's `finish_reason`.
    pub fn openai(&self) -> &'static str {
        match self {
            Finish::Eog | Finish::Stop(_) => "stop",
            Finish::Limit | Finish::Context => "length",
        }
    }
}

/// A token's log-probability and the best alternatives.
#[derive(Clone, Debug)]
pub struct TokenProbs {
    pub logprob: f32,
    pub top: Vec<(u32, f32)>,
}

/// One generated token.
#[derive(Clone, Debug)]
pub struct TokenOut {
    pub id: u32,
    /// Text that became final with this token (empty while a stop string may be forming or a
    /// character is incomplete).
    pub text: String,
    pub probs: Option<TokenProbs>,
}

/// The end of a generation.
#[derive(Clone, Debug)]
pub struct Summary {
    pub finish: Finish,
    /// Remaining text not sent with a token (held back, then released).
    pub text: String,
    pub n_prompt: usize,
    /// Prompt tokens whose KV came from the prefix cache.
    pub n_cached: usize,
    pub n_generated: usize,
    pub slot: usize,
    /// Time from admission to the end of the prompt.
    pub prompt_time: Duration,
    pub gen_time: Duration,
    /// Time spent waiting in the queue.
    pub queue_time: Duration,
    /// Prompt and generated tokens (Ollama's `context`).
    pub context: Vec<u32>,
}

/// What a generation sends on its channel.
#[derive(Debug)]
pub enum Event {
    Token(TokenOut),
    Done(Box<Summary>),
    Error(EngineError),
}

/// Why a request failed inside the engine.
#[derive(Clone, Debug, thiserror::Error)]
pub enum EngineError {
    #[error("model evaluation failed: {0}")]
    Model(String),
    #[error("invalid sampling parameters: {0}")]
    Sampling(String),
    #[error("internal error while processing the request")]
    Panic,
    #[error("the server is shutting down")]
    ShuttingDown,
}

/// Why a request was not admitted.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    #[error("the server is busy: {queued} requests are waiting (limit {limit})")]
    QueueFull { queued: usize, limit: usize },
    #[error("the server is shutting down")]
    ShuttingDown,
}

/// The engine failed to start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("creating the KV caches: {0}")]
    Kv(#[from] hearth_model::ModelError),
    #[error("starting the engine thread: {0}")]
    Thread(#[from] std::io::Error),
    #[error("invalid engine configuration: {0}")]
    Config(String),
}

/// Embedding inputs and where to send the pooled vectors.
struct EmbedJob {
    inputs: Vec<Vec<u32>>,
    reply: oneshot::Sender<EmbedResult>,
}

struct GenJob {
    id: u64,
    params: GenParams,
    events: mpsc::UnboundedSender<Event>,
    queued_at: Instant,
}

enum Job {
    Gen(Box<GenJob>),
    Embed(EmbedJob),
}

/// Embedding vectors, or why there are none.
pub type EmbedResult = Result<Vec<Vec<f32>>, EngineError>;

struct QueueState {
    jobs: VecDeque<Job>,
    shutdown: Option<Instant>,
}

struct Queue {
    state: Mutex<QueueState>,
    cv: Condvar,
    cap: usize,
}

impl Queue {
    fn lock(&self) -> MutexGuard<'_, QueueState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Backpressure is a return value: a full queue hands the job back.
    fn push(&self, job: Job) -> Result<(), Box<(Job, SubmitError)>> {
        let mut q = self.lock();
        if q.shutdown.is_some() {
            return Err(Box::new((job, SubmitError::ShuttingDown)));
        }
        if q.jobs.len() >= self.cap {
            let queued = q.jobs.len();
            return Err(Box::new((
                job,
                SubmitError::QueueFull {
                    queued,
                    limit: self.cap,
                },
            )));
        }
        q.jobs.push_back(job);
        drop(q);
        self.cv.notify_one();
        Ok(())
    }
}

/// What /slots shows about one slot.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct SlotView {
    pub id: usize,
    pub n_ctx: usize,
    pub is_processing: bool,
    /// Tokens whose K/V the slot holds (reusable by a request with the same prefix).
    pub n_cached: usize,
    /// The request being served, if any.
    pub id_task: Option<u64>,
    pub n_prompt_tokens: usize,
    pub n_prompt_tokens_processed: usize,
    pub n_decoded: usize,
}

/// Handle to the engine thread.
pub struct Engine {
    queue: Arc<Queue>,
    metrics: Arc<Metrics>,
    slots: Arc<Mutex<Vec<SlotView>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
    next_id: std::sync::atomic::AtomicU64,
    cfg: EngineConfig,
}

impl Engine {
    /// Creates the slots' caches and starts the scheduler thread, which owns `model`.
    pub fn start(
        model: Model,
        tokenizer: Arc<Tokenizer>,
        cfg: EngineConfig,
        metrics: Arc<Metrics>,
    ) -> Result<Engine, StartError> {
        if cfg.n_slots == 0 || cfg.prefill_chunk == 0 || cfg.n_ctx < 2 {
            return Err(StartError::Config(format!(
                "slots {}, prefill chunk {}, context {}: each must be positive (context >= 2)",
                cfg.n_slots, cfg.prefill_chunk, cfg.n_ctx
            )));
        }
        let mut kvs = Vec::with_capacity(cfg.n_slots);
        for _ in 0..cfg.n_slots {
            kvs.push(model.new_kv_cache(cfg.n_ctx, cfg.kv_type)?);
        }
        let embed_kv = model.new_kv_cache(cfg.n_ctx, cfg.kv_type)?;
        let queue = Arc::new(Queue {
            state: Mutex::new(QueueState {
                jobs: VecDeque::new(),
                shutdown: None,
            }),
            cv: Condvar::new(),
            cap: cfg.max_queue,
        });
        let views: Vec<SlotView> = (0..cfg.n_slots)
            .map(|id| SlotView {
                id,
                n_ctx: cfg.n_ctx,
                ..Default::default()
            })
            .collect();
        let slots = Arc::new(Mutex::new(views));
        metrics
            .kv_capacity
            .store((cfg.n_ctx * cfg.n_slots) as u64, Ordering::Relaxed);
        metrics
            .slots_total
            .store(cfg.n_slots as u64, Ordering::Relaxed);
        let thread = {
            let (queue, metrics, slots, cfg) =
                (queue.clone(), metrics.clone(), slots.clone(), cfg.clone());
            std::thread::Builder::new()
                .name("hearth-engine".into())
                .spawn(move || {
                    let mut sched = Scheduler {
                        model: &model,
                        tok: &tokenizer,
                        slots: kvs
                            .into_iter()
                            .enumerate()
                            .map(|(id, kv)| Slot {
                                id,
                                kv,
                                cached: Vec::new(),
                                last_used: 0,
                                active: None,
                            })
                            .collect(),
                        embed_kv,
                        queue,
                        metrics,
                        views: slots,
                        cfg,
                        clock: 0,
                    };
                    sched.run();
                })?
        };
        Ok(Engine {
            queue,
            metrics,
            slots,
            thread: Mutex::new(Some(thread)),
            next_id: std::sync::atomic::AtomicU64::new(1),
            cfg,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &EngineConfig {
        &self.cfg
    }

    /// Queues a generation; its tokens and end arrive on the returned channel. Dropping the
    /// receiver cancels it.
    pub fn submit(
        &self,
        params: GenParams,
    ) -> Result<(u64, mpsc::UnboundedReceiver<Event>), SubmitError> {
        let (tx, rx) = mpsc::unbounded_channel();
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let job = Job::Gen(Box::new(GenJob {
            id,
            params,
            events: tx,
            queued_at: Instant::now(),
        }));
        match self.queue.push(job) {
            Ok(()) => Ok((id, rx)),
            Err(b) => {
                let (_, e) = *b;
                if matches!(e, SubmitError::QueueFull { .. }) {
                    self.metrics.rejected.fetch_add(1, Ordering::Relaxed);
                }
                Err(e)
            }
        }
    }

    /// Queues an embedding of each input (mean of the final hidden states, L2-normalized).
    pub fn embed(
        &self,
        inputs: Vec<Vec<u32>>,
    ) -> Result<oneshot::Receiver<EmbedResult>, SubmitError> {
        let (tx, rx) = oneshot::channel();
        match self.queue.push(Job::Embed(EmbedJob { inputs, reply: tx })) {
            Ok(()) => Ok(rx),
            Err(b) => {
                let (_, e) = *b;
                if matches!(e, SubmitError::QueueFull { .. }) {
                    self.metrics.rejected.fetch_add(1, Ordering::Relaxed);
                }
                Err(e)
            }
        }
    }

    /// Requests waiting for a slot.
    pub fn queue_depth(&self) -> usize {
        self.queue.lock().jobs.len()
    }

    /// A snapshot of the slots.
    pub fn slots(&self) -> Vec<SlotView> {
        self.slots.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Stops admitting; running generations continue until `deadline`, then fail with
    /// [`EngineError::ShuttingDown`]; waiting ones fail at once.
    pub fn begin_shutdown(&self, deadline: Duration) {
        let mut q = self.queue.lock();
        if q.shutdown.is_none() {
            q.shutdown = Some(Instant::now() + deadline);
        }
        drop(q);
        self.queue.cv.notify_all();
    }

    /// Waits for the engine thread to end (after [`Engine::begin_shutdown`]).
    pub fn join(&self) {
        let handle = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(h) = handle {
            let _ = h.join();
        }
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.begin_shutdown(Duration::ZERO);
        self.join();
    }
}

/// A running generation.
struct Active<'t> {
    job_id: u64,
    params: GenParams,
    events: mpsc::UnboundedSender<Event>,
    sampler: Sampler,
    stops: StopStrings,
    decoder: Option<StreamDecoder<'t>>,
    /// Prompt ranges still to evaluate.
    chunks: VecDeque<Range<usize>>,
    n_cached: usize,
    /// The token sampled last, to evaluate next step.
    pending: [u32; 1],
    generated: Vec<u32>,
    text: String,
    sent: usize,
    queued_at: Instant,
    started: Instant,
    prompt_done: Option<Instant>,
}

struct Slot<'t> {
    id: usize,
    kv: KvCache,
    /// The tokens whose K/V are in `kv` (`kv.len()` of them).
    cached: Vec<u32>,
    last_used: u64,
    active: Option<Active<'t>>,
}

/// The state of the engine thread.
struct Scheduler<'m> {
    model: &'m Model,
    tok: &'m Tokenizer,
    slots: Vec<Slot<'m>>,
    embed_kv: KvCache,
    queue: Arc<Queue>,
    metrics: Arc<Metrics>,
    views: Arc<Mutex<Vec<SlotView>>>,
    cfg: EngineConfig,
    clock: u64,
}

/// Work taken out of the queue for one step.
struct Admitted {
    gens: Vec<GenJob>,
    embeds: Vec<EmbedJob>,
    shutdown: Option<Instant>,
}

impl<'m> Scheduler<'m> {
    fn run(&mut self) {
        loop {
            let admitted = self.take_jobs();
            for e in admitted.embeds {
                self.run_embed(e);
            }
            for g in admitted.gens {
                self.admit(g);
            }
            if let Some(deadline) = admitted.shutdown {
                if Instant::now() >= deadline {
                    for slot in &mut self.slots {
                        if let Some(a) = slot.active.take() {
                            let _ = a.events.send(Event::Error(EngineError::ShuttingDown));
                        }
                    }
                }
                if self.slots.iter().all(|s| s.active.is_none()) {
                    self.publish();
                    return;
                }
            }
            self.drop_cancelled();
            self.step();
            self.publish();
        }
    }

    /// Blocks until there is something to do; takes what can start now.
    fn take_jobs(&mut self) -> Admitted {
        let queue = self.queue.clone();
        let mut q = queue.lock();
        loop {
            let busy = self.slots.iter().filter(|s| s.active.is_some()).count();
            let idle = busy == 0;
            if let Some(deadline) = q.shutdown {
                // Waiting requests fail at once; running ones may finish until the deadline.
                for job in q.jobs.drain(..) {
                    match job {
                        Job::Gen(g) => {
                            let _ = g.events.send(Event::Error(EngineError::ShuttingDown));
                        }
                        Job::Embed(e) => {
                            let _ = e.reply.send(Err(EngineError::ShuttingDown));
                        }
                    }
                }
                self.metrics.queue_depth.store(0, Ordering::Relaxed);
                return Admitted {
                    gens: Vec::new(),
                    embeds: Vec::new(),
                    shutdown: Some(deadline),
                };
            }
            let mut free = self.slots.len() - busy;
            let mut out = Admitted {
                gens: Vec::new(),
                embeds: Vec::new(),
                shutdown: None,
            };
            while let Some(front) = q.jobs.front() {
                match front {
                    Job::Embed(_) => {
                        if let Some(Job::Embed(e)) = q.jobs.pop_front() {
                            out.embeds.push(e);
                        }
                    }
                    Job::Gen(g) if g.events.is_closed() => {
                        // Cancelled while waiting.
                        q.jobs.pop_front();
                        self.metrics.cancelled.fetch_add(1, Ordering::Relaxed);
                    }
                    Job::Gen(_) if free > 0 => {
                        if let Some(Job::Gen(g)) = q.jobs.pop_front() {
                            out.gens.push(*g);
                            free -= 1;
                        }
                    }
                    Job::Gen(_) => break,
                }
            }
            self.metrics
                .queue_depth
                .store(q.jobs.len() as u64, Ordering::Relaxed);
            if !idle || !out.gens.is_empty() || !out.embeds.is_empty() {
                return out;
            }
            q = self.queue.cv.wait(q).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Puts a request on the free slot that has the longest common prefix with its prompt.
    fn admit(&mut self, job: GenJob) {
        let GenJob {
            id,
            params,
            events,
            queued_at,
        } = job;
        let n_prompt = params.prompt.len();
        if n_prompt == 0 || n_prompt >= self.cfg.n_ctx {
            // The server checks this before queueing; a request that gets here anyway fails.
            let _ = events.send(Event::Error(EngineError::Model(format!(
                "the prompt has {n_prompt} tokens; the context holds {}",
                self.cfg.n_ctx
            ))));
            return;
        }
        let common_prefix = |cached: &[u32]| {
            cached
                .iter()
                .zip(&params.prompt)
                .take_while(|(a, b)| a == b)
                .count()
                // At least the last prompt token is evaluated, for its logits.
                .min(n_prompt - 1)
        };
        let Some(idx) = self
            .slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.active.is_none())
            .max_by_key(|(_, s)| {
                let c = if params.cache_prompt {
                    common_prefix(&s.cached)
                } else {
                    0
                };
                (c, std::cmp::Reverse(s.last_used))
            })
            .map(|(i, _)| i)
        else {
            let _ = events.send(Event::Error(EngineError::Model("no free slot".into())));
            return;
        };
        self.clock += 1;
        let n_vocab = self.model.n_vocab();
        let tok = self.tok;
        let slot = &mut self.slots[idx];
        slot.last_used = self.clock;
        let mut common = if params.cache_prompt {
            common_prefix(&slot.cached)
        } else {
            0
        };
        if common < slot.kv.len() && !slot.kv.truncate(common) {
            slot.kv.clear();
            common = 0;
        }
        slot.cached.truncate(common);
        if common > 0 {
            self.metrics.cache_hits.fetch_add(1, Ordering::Relaxed);
            self.metrics
                .cache_tokens
                .fetch_add(common as u64, Ordering::Relaxed);
        }
        let breakers = if params.sampling.dry_multiplier > 0.0 {
            DryBreakers::new(
                &params.sampling.dry_sequence_breakers,
                |id| String::from_utf8_lossy(tok.token_to_piece(id, true)).into_owned(),
                n_vocab as u32,
                |s| tok.encode(s, false, false),
            )
        } else {
            DryBreakers::default()
        };
        let mut sampler = match Sampler::new(params.sampling.clone(), n_vocab, breakers) {
            Ok(s) => s,
            Err(e) => {
                let _ = events.send(Event::Error(EngineError::Sampling(e.to_string())));
                return;
            }
        };
        for &t in &params.prompt {
            sampler.accept(t);
        }
        let mut chunks = VecDeque::new();
        for r in self.model.prompt_batches_like_llama_server(n_prompt) {
            let start = r.start.max(common);
            let mut s = start;
            while s < r.end {
                let e = (s + self.cfg.prefill_chunk).min(r.end);
                chunks.push_back(s..e);
                s = e;
            }
        }
        self.metrics
            .prompt_tokens
            .fetch_add((n_prompt - common) as u64, Ordering::Relaxed);
        self.metrics.requests.fetch_add(1, Ordering::Relaxed);
        slot.active = Some(Active {
            job_id: id,
            stops: StopStrings::new(params.stop.iter().cloned()),
            params,
            events,
            sampler,
            decoder: Some(tok.stream_decoder(false, false)),
            chunks,
            n_cached: common,
            pending: [0],
            generated: Vec::new(),
            text: String::new(),
            sent: 0,
            queued_at,
            started: Instant::now(),
            prompt_done: None,
        });
    }

    /// Frees the slots of requests whose client went away.
    fn drop_cancelled(&mut self) {
        for slot in &mut self.slots {
            if slot.active.as_ref().is_some_and(|a| a.events.is_closed()) {
                slot.active = None;
                self.metrics.cancelled.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// One forward pass over every running slot, then sampling.
    fn step(&mut self) {
        if self.slots.iter().all(|s| s.active.is_none()) {
            return;
        }
        // Which slots take part, and with which tokens. Rotate the start so that
        // prefilling slots take turns at the prompt budget.
        let n = self.slots.len();
        let start = (self.clock as usize) % n;
        self.clock += 1;
        let mut budget = self.cfg.prefill_chunk;
        let mut plan: Vec<(usize, Range<usize>, bool)> = Vec::new(); // (slot, prompt range, decode)
        for k in 0..n {
            let i = (start + k) % n;
            let Some(a) = &self.slots[i].active else {
                continue;
            };
            if let Some(r) = a.chunks.front() {
                if r.len() <= budget {
                    budget -= r.len();
                    plan.push((i, r.clone(), false));
                }
            } else {
                plan.push((i, 0..0, true));
            }
        }
        plan.sort_by_key(|p| p.0);
        if plan.is_empty() {
            return;
        }
        let model = self.model;
        let result = {
            let mut seqs: Vec<SeqBatch<'_>> = Vec::with_capacity(plan.len());
            let mut pi = 0;
            for (i, slot) in self.slots.iter_mut().enumerate() {
                if pi >= plan.len() || plan[pi].0 != i {
                    continue;
                }
                let (_, range, decode) = &plan[pi];
                pi += 1;
                let Slot { kv, active, .. } = slot;
                let Some(a) = active.as_ref() else { continue };
                let tokens: &[u32] = if *decode {
                    &a.pending
                } else {
                    &a.params.prompt[range.clone()]
                };
                seqs.push(SeqBatch {
                    tokens,
                    kv,
                    logits: LogitsFor::Last,
                });
            }
            catch_unwind(AssertUnwindSafe(|| model.forward_batch(&mut seqs)))
        };
        let logits: Vec<Logits> = match result {
            Ok(Ok(l)) => l,
            Ok(Err(e)) => {
                let err = EngineError::Model(e.to_string());
                self.fail(&plan, err);
                return;
            }
            Err(_) => {
                self.fail(&plan, EngineError::Panic);
                return;
            }
        };
        for ((i, range, decode), logits) in plan.into_iter().zip(logits) {
            let tok = self.tok;
            let metrics = &self.metrics;
            let slot = &mut self.slots[i];
            let outcome = catch_unwind(AssertUnwindSafe(|| {
                advance(slot, tok, metrics, &range, decode, logits.last())
            }));
            if outcome.is_err() {
                if let Some(a) = slot.active.take() {
                    let _ = a.events.send(Event::Error(EngineError::Panic));
                }
                slot.kv.clear();
                slot.cached.clear();
            }
        }
    }

    /// Fails every request of a step whose forward pass failed, and forgets their caches
    /// (they may be partly written).
    fn fail(&mut self, plan: &[(usize, Range<usize>, bool)], err: EngineError) {
        for (i, _, _) in plan {
            let slot = &mut self.slots[*i];
            if let Some(a) = slot.active.take() {
                let _ = a.events.send(Event::Error(err.clone()));
            }
            slot.kv.clear();
            slot.cached.clear();
        }
    }

    fn run_embed(&mut self, job: EmbedJob) {
        let n_embd = self.model.config().n_embd;
        let model = self.model;
        let kv = &mut self.embed_kv;
        let result = catch_unwind(AssertUnwindSafe(|| {
            let mut out = Vec::with_capacity(job.inputs.len());
            for input in &job.inputs {
                kv.clear();
                let h = model
                    .hidden_states(input, kv)
                    .map_err(|e| EngineError::Model(e.to_string()))?;
                out.push(pool(&h, n_embd));
            }
            kv.clear();
            Ok(out)
        }));
        let n: usize = job.inputs.iter().map(Vec::len).sum();
        self.metrics
            .prompt_tokens
            .fetch_add(n as u64, Ordering::Relaxed);
        self.metrics.embeddings.fetch_add(1, Ordering::Relaxed);
        let _ = job.reply.send(result.unwrap_or(Err(EngineError::Panic)));
    }

    /// Updates /slots and the gauges.
    fn publish(&self) {
        let mut used = 0u64;
        let mut busy = 0u64;
        let views: Vec<SlotView> = self
            .slots
            .iter()
            .map(|s| {
                used += s.kv.len() as u64;
                busy += u64::from(s.active.is_some());
                let a = s.active.as_ref();
                SlotView {
                    id: s.id,
                    n_ctx: self.cfg.n_ctx,
                    is_processing: a.is_some(),
                    n_cached: s.kv.len(),
                    id_task: a.map(|a| a.job_id),
                    n_prompt_tokens: a.map_or(0, |a| a.params.prompt.len()),
                    n_prompt_tokens_processed: a.map_or(0, |a| {
                        a.params.prompt.len()
                            - a.chunks.iter().map(|r| r.len()).sum::<usize>()
                            - a.n_cached
                    }),
                    n_decoded: a.map_or(0, |a| a.generated.len()),
                }
            })
            .collect();
        self.metrics.kv_used.store(used, Ordering::Relaxed);
        self.metrics.slots_busy.store(busy, Ordering::Relaxed);
        *self.views.lock().unwrap_or_else(|e| e.into_inner()) = views;
    }
}

/// Mean of the rows of `h` (`[n][n_embd]`), L2-normalized.
fn pool(h: &[f32], n_embd: usize) -> Vec<f32> {
    let mut v = vec![0f64; n_embd];
    let n = h.len() / n_embd.max(1);
    for row in h.chunks_exact(n_embd) {
        for (a, &x) in v.iter_mut().zip(row) {
            *a += f64::from(x);
        }
    }
    let n = n.max(1) as f64;
    let norm = v.iter().map(|x| (x / n) * (x / n)).sum::<f64>().sqrt();
    let scale = if norm > 0.0 { 1.0 / (n * norm) } else { 0.0 };
    v.into_iter().map(|x| (x * scale) as f32).collect()
}

/// After a slot's part of a step: records what was evaluated, samples when the prompt is
/// done, and sends the result.
fn advance(
    slot: &mut Slot<'_>,
    tok: &Tokenizer,
    metrics: &Metrics,
    range: &Range<usize>,
    decode: bool,
    logits: &[f32],
) {
    let Some(a) = slot.active.as_mut() else {
        return;
    };
    if decode {
        slot.cached.push(a.pending[0]);
    } else {
        slot.cached
            .extend_from_slice(&a.params.prompt[range.clone()]);
        a.chunks.pop_front();
        if !a.chunks.is_empty() {
            return;
        }
        a.prompt_done = Some(Instant::now());
    }
    let n_ctx = slot.kv.n_ctx();
    let before = a.generated.len();
    let finish = sample_one(a, tok, logits, slot.kv.len(), n_ctx);
    metrics
        .generated_tokens
        .fetch_add((a.generated.len() - before) as u64, Ordering::Relaxed);
    if let Some(finish) = finish {
        if let Some(a) = slot.active.take() {
            finish_request(slot, a, finish);
        }
    }
}

/// Samples the next token of `a` from `logits`; returns why generation ends, if it does.
fn sample_one(
    a: &mut Active<'_>,
    tok: &Tokenizer,
    logits: &[f32],
    kv_len: usize,
    n_ctx: usize,
) -> Option<Finish> {
    if a.params.max_tokens.is_some_and(|m| a.generated.len() >= m) {
        return Some(Finish::Limit);
    }
    let id = a.sampler.sample(logits);
    a.sampler.accept(id);
    let probs = a.params.logprobs.map(|k| {
        let (logprob, top) = logprobs(logits, id, k);
        TokenProbs { logprob, top }
    });
    if tok.is_eog(id) && !a.params.ignore_eos {
        return Some(Finish::Eog);
    }
    a.generated.push(id);
    if let Some(piece) = a.decoder.as_mut().and_then(|d| d.push(id)) {
        a.text.push_str(&piece);
    }
    let mut finish = None;
    let delta = match a.stops.check(&a.text) {
        StopMatch::Full(pos) => {
            let word = a
                .params
                .stop
                .iter()
                .find(|s| !s.is_empty() && a.text[pos..].starts_with(s.as_str()))
                .cloned()
                .unwrap_or_default();
            a.text.truncate(pos);
            finish = Some(Finish::Stop(word));
            take_delta(a, pos)
        }
        StopMatch::Partial(pos) => take_delta(a, pos),
        StopMatch::None => {
            let end = a.text.len();
            take_delta(a, end)
        }
    };
    let _ = a.events.send(Event::Token(TokenOut {
        id,
        text: delta,
        probs,
    }));
    if finish.is_some() {
        return finish;
    }
    if a.params.max_tokens.is_some_and(|m| a.generated.len() >= m) {
        return Some(Finish::Limit);
    }
    if kv_len + 1 > n_ctx {
        return Some(Finish::Context);
    }
    a.pending = [id];
    None
}

/// The text from `a.sent` up to `end` (not yet sent), marked as sent.
fn take_delta(a: &mut Active<'_>, end: usize) -> String {
    if end > a.sent {
        let s = a.text[a.sent..end].to_string();
        a.sent = end;
        s
    } else {
        String::new()
    }
}

fn finish_request(slot: &Slot<'_>, mut a: Active<'_>, finish: Finish) {
    let mut rest = String::new();
    if !matches!(finish, Finish::Stop(_)) {
        if let Some(d) = a.decoder.take() {
            a.text.push_str(&d.finish());
        }
        let end = a.text.len();
        rest = take_delta(&mut a, end);
    }
    let now = Instant::now();
    let prompt_done = a.prompt_done.unwrap_or(now);
    let mut context = a.params.prompt.clone();
    context.extend_from_slice(&a.generated);
    let summary = Summary {
        finish,
        text: rest,
        n_prompt: a.params.prompt.len(),
        n_cached: a.n_cached,
        n_generated: a.generated.len(),
        slot: slot.id,
        prompt_time: prompt_done - a.started,
        gen_time: now - prompt_done,
        queue_time: a.started - a.queued_at,
        context,
    };
    let _ = a.events.send(Event::Done(Box::new(summary)));
}

#[cfg(test)]
mod tests {
    #[test]
    fn pooled_embeddings_are_unit_length_means() {
        let h = [1.0, 0.0, 3.0, 4.0];
        let v = super::pool(&h, 2);
        // mean = (2, 2) -> normalized (0.7071, 0.7071)
        assert!((v[0] - std::f32::consts::FRAC_1_SQRT_2).abs() < 1e-6);
        assert!((v[1] - std::f32::consts::FRAC_1_SQRT_2).abs() < 1e-6);
    }
}
