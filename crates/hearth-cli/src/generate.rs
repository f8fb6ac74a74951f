//! One sequence's generation: prefill, then sample token by token through
//! the KV cache, streaming UTF-8-safe text and honouring stop strings, the
//! end-of-generation tokens and the context limit.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use hearth_model::sampling::{DryBreakers, Sampler, SamplingParams, StopMatch, StopStrings};
use hearth_model::{KvCache, LogitsFor, Model};
use hearth_server::logprobs::logprobs;
use hearth_tokenizer::Tokenizer;

/// What to generate.
pub struct Request {
    pub prompt: Vec<u32>,
    /// Maximum new tokens; `None` = until end of generation or context.
    pub n_predict: Option<usize>,
    pub sampling: SamplingParams,
    pub stop: Vec<String>,
    /// Per-step top-K log-probabilities to record (0 = none).
    pub top_logprobs: usize,
    pub ignore_eos: bool,
    /// When the context is full: keep this many tokens and drop half of the
    /// rest (llama.cpp's context shift); `None` = stop with `Length`.
    pub context_shift: Option<usize>,
    /// Set from elsewhere (Ctrl-C) to stop after the current token.
    pub cancel: Option<&'static AtomicBool>,
}

/// Why generation ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Finish {
    /// An end-of-generation token.
    Eog,
    /// `n_predict` reached, or the context is full.
    Length,
    /// A stop string matched.
    Stop,
    /// The caller cancelled.
    Cancelled,
}

/// One generated token with its log-probability and the top alternatives,
/// from a softmax over the raw logits (as llama-server's `n_probs`).
pub struct Step {
    pub id: u32,
    pub logprob: f32,
    pub top: Vec<(u32, f32)>,
}

pub struct Outcome {
    pub generated: Vec<u32>,
    pub text: String,
    pub steps: Vec<Step>,
    pub finish: Finish,
    pub prompt_time: Duration,
    pub gen_time: Duration,
}

/// Runs `req` on `model`, calling `on_text` with each piece of text as soon
/// as it is known not to belong to a stop string.
pub fn generate(
    model: &Model,
    tokenizer: &Tokenizer,
    kv: &mut KvCache,
    req: &Request,
    mut on_text: impl FnMut(&str),
) -> Result<Outcome> {
    let n_ctx = kv.n_ctx();
    if req.prompt.is_empty() {
        bail!("the prompt is empty");
    }
    if req.prompt.len() >= n_ctx {
        bail!(
            "the prompt has {} tokens but the context holds {n_ctx}: use a larger --ctx-size",
            req.prompt.len()
        );
    }
    let n_vocab = model.n_vocab();
    let breakers = if req.sampling.dry_multiplier > 0.0 {
        DryBreakers::new(
            &req.sampling.dry_sequence_breakers,
            |id| String::from_utf8_lossy(tokenizer.token_to_piece(id, true)).into_owned(),
            n_vocab as u32,
            |s| tokenizer.encode(s, false, false),
        )
    } else {
        DryBreakers::default()
    };
    let mut sampler = Sampler::new(req.sampling.clone(), n_vocab, breakers)?;
    for &t in &req.prompt {
        sampler.accept(t);
    }
    let stops = StopStrings::new(req.stop.iter().cloned());

    // Prefill in the batches llama-server uses, so results match it bit for bit.
    let t0 = Instant::now();
    let mut last = Vec::new();
    for range in model.prompt_batches_like_llama_server(req.prompt.len()) {
        last = model
            .forward(&req.prompt[range], kv, LogitsFor::Last)?
            .last()
            .to_vec();
    }
    let prompt_time = t0.elapsed();

    let t1 = Instant::now();
    let mut decoder = tokenizer.stream_decoder(false, false);
    let (mut generated, mut steps) = (Vec::new(), Vec::new());
    let (mut text, mut sent) = (String::new(), 0usize);
    let mut finish = Finish::Length;
    loop {
        if req.n_predict.is_some_and(|n| generated.len() >= n) {
            break;
        }
        if req.cancel.is_some_and(|c| c.swap(false, Ordering::Relaxed)) {
            finish = Finish::Cancelled;
            break;
        }
        let id = sampler.sample(&last);
        sampler.accept(id);
        if req.top_logprobs > 0 {
            let (logprob, top) = logprobs(&last, id, req.top_logprobs);
            steps.push(Step { id, logprob, top });
        }
        if tokenizer.is_eog(id) && !req.ignore_eos {
            finish = Finish::Eog;
            break;
        }
        generated.push(id);
        if let Some(piece) = decoder.push(id) {
            text.push_str(&piece);
        }
        match stops.check(&text) {
            StopMatch::Full(pos) => {
                text.truncate(pos);
                if pos > sent {
                    on_text(&text[sent..pos]);
                }
                sent = pos;
                finish = Finish::Stop;
                break;
            }
            StopMatch::Partial(pos) => {
                if pos > sent {
                    on_text(&text[sent..pos]);
                    sent = pos;
                }
            }
            StopMatch::None => {
                if text.len() > sent {
                    on_text(&text[sent..]);
                    sent = text.len();
                }
            }
        }
        if kv.len() + 1 > n_ctx {
            match req.context_shift {
                Some(n_keep) if n_keep < kv.len() => {
                    let n_discard = (kv.len() - n_keep) / 2;
                    model.shift_context(kv, n_keep, n_discard);
                }
                _ => break,
            }
        }
        let logits = model.forward(&[id], kv, LogitsFor::Last)?;
        last.copy_from_slice(logits.last());
    }
    if finish != Finish::Stop {
        let rest = decoder.finish();
        text.push_str(&rest);
        if text.len() > sent {
            on_text(&text[sent..]);
        }
    }
    Ok(Outcome {
        generated,
        text,
        steps,
        finish,
        prompt_time,
        gen_time: t1.elapsed(),
    })
}
