//! The OpenAI API: `/v1/chat/completions`, `/v1/completions`, `/v1/embeddings`, `/v1/models`.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use hearth_tokenizer::template::RenderOptions;
use serde::Deserialize;
use serde_json::{json, Value as Json};
use tokio::sync::mpsc;

use crate::common::{
    self, check_lengths, check_logit_bias, check_model, check_stop, parse_json, LogitBiasField,
    OneOrMany, PromptField, SamplingFields, MAX_CHOICES, MAX_EMBED_INPUTS, MAX_TOP_LOGPROBS,
    OPENAI_MAX_TEMPERATURE,
};
use crate::engine::{Event, GenParams, TokenOut};
use crate::error::{ApiError, Flavor};
use crate::gateway::Endpoint;
use crate::server::{AppState, Ready};

const FLAVOR: Flavor = Flavor::OpenAi;

#[derive(Deserialize)]
struct StreamOptions {
    include_usage: Option<bool>,
}

#[derive(Deserialize)]
struct ChatRequest {
    model: Option<String>,
    messages: Vec<Json>,
    max_tokens: Option<i64>,
    max_completion_tokens: Option<i64>,
    n: Option<i64>,
    stream: Option<bool>,
    stream_options: Option<StreamOptions>,
    stop: Option<OneOrMany>,
    logprobs: Option<bool>,
    top_logprobs: Option<i64>,
    logit_bias: Option<LogitBiasField>,
    tools: Option<Json>,
    chat_template_kwargs: Option<serde_json::Map<String, Json>>,
    cache_prompt: Option<bool>,
    ignore_eos: Option<bool>,
}

#[derive(Deserialize)]
struct CompletionRequest {
    model: Option<String>,
    prompt: PromptField,
    max_tokens: Option<i64>,
    n: Option<i64>,
    stream: Option<bool>,
    stream_options: Option<StreamOptions>,
    stop: Option<OneOrMany>,
    logprobs: Option<i64>,
    echo: Option<bool>,
    logit_bias: Option<LogitBiasField>,
    cache_prompt: Option<bool>,
    ignore_eos: Option<bool>,
}

#[derive(Deserialize)]
struct EmbeddingRequest {
    model: Option<String>,
    input: PromptField,
    encoding_format: Option<String>,
}

/// A validated generation request of this API: one entry per choice.
struct Prepared {
    params: Vec<GenParams>,
    /// Prompt index of each choice (completions with several prompts).
    prompt_of: Vec<usize>,
    prompts: Vec<Vec<u32>>,
    stream: bool,
    include_usage: bool,
    logprobs: bool,
}

/// Normalizes chat messages for the template: `content` parts joined to text, tool-call
/// arguments parsed from JSON strings.
pub fn check_messages(messages: Vec<Json>) -> Result<Vec<Json>, ApiError> {
    if messages.is_empty() {
        return Err(ApiError::field(
            "messages",
            "at least one message is required",
        ));
    }
    messages
        .into_iter()
        .enumerate()
        .map(|(i, m)| {
            let Json::Object(mut m) = m else {
                return Err(ApiError::field(
                    format!("messages[{i}]"),
                    "a message must be an object",
                ));
            };
            match m.get("role") {
                Some(Json::String(r))
                    if matches!(
                        r.as_str(),
                        "system" | "user" | "assistant" | "tool" | "developer" | "function"
                    ) => {}
                _ => {
                    return Err(ApiError::field(
                        format!("messages[{i}].role"),
                        "expected one of system, user, assistant, tool, developer",
                    ))
                }
            }
            let content = match m.remove("content") {
                None | Some(Json::Null) => Json::String(String::new()),
                Some(Json::String(s)) => Json::String(s),
                Some(Json::Array(parts)) => {
                    let mut text = String::new();
                    for (j, p) in parts.iter().enumerate() {
                        match (p.get("type").and_then(Json::as_str), p.get("text")) {
                            (Some("text"), Some(Json::String(t))) => text.push_str(t),
                            _ => {
                                return Err(ApiError::field(
                                    format!("messages[{i}].content[{j}]"),
                                    "only text content parts are supported",
                                ))
                            }
                        }
                    }
                    Json::String(text)
                }
                Some(_) => {
                    return Err(ApiError::field(
                        format!("messages[{i}].content"),
                        "expected a string or an array of content parts",
                    ))
                }
            };
            m.insert("content".into(), content);
            if let Some(calls) = m.get_mut("tool_calls") {
                let Json::Array(calls) = calls else {
                    return Err(ApiError::field(
                        format!("messages[{i}].tool_calls"),
                        "expected an array",
                    ));
                };
                for (j, call) in calls.iter_mut().enumerate() {
                    let args = call
                        .get_mut("function")
                        .and_then(|f| f.get_mut("arguments"));
                    if let Some(a) = args {
                        if let Json::String(s) = a {
                            let parsed: Json = serde_json::from_str(s).map_err(|e| {
                                ApiError::field(
                                    format!("messages[{i}].tool_calls[{j}].function.arguments"),
                                    format!("not valid JSON: {e}"),
                                )
                            })?;
                            *a = parsed;
                        }
                    }
                }
            }
            Ok(Json::Object(m))
        })
        .collect()
}

fn check_n(n: Option<i64>) -> Result<usize, ApiError> {
    Ok(common::check_i(n, "n", 1, MAX_CHOICES as i64)?.unwrap_or(1) as usize)
}

fn prepare_chat(
    ready: &Ready,
    req: ChatRequest,
    sampling: SamplingFields,
) -> Result<Prepared, ApiError> {
    check_model(req.model.as_deref(), &ready.info)?;
    let n = check_n(req.n)?;
    let n_vocab = ready.info.n_vocab;
    let mut sampling = sampling.params(OPENAI_MAX_TEMPERATURE, n_vocab)?;
    sampling.logit_bias = check_logit_bias(req.logit_bias, n_vocab)?;
    let stop = check_stop(req.stop, "stop")?;
    let top = common::check_i(req.top_logprobs, "top_logprobs", 0, MAX_TOP_LOGPROBS as i64)?;
    if top.is_some() && req.logprobs != Some(true) {
        return Err(ApiError::field(
            "top_logprobs",
            "top_logprobs needs logprobs set to true",
        ));
    }
    let logprobs = req.logprobs == Some(true);
    let messages = check_messages(req.messages)?;
    let tools = match req.tools {
        None | Some(Json::Null) => None,
        Some(Json::Array(t)) => Some(Json::Array(t)),
        Some(_) => return Err(ApiError::field("tools", "expected an array")),
    };
    let opts = RenderOptions {
        add_generation_prompt: true,
        tools,
        strip_bos: ready.tokenizer.add_bos(),
        extra: req.chat_template_kwargs.unwrap_or_default(),
        ..Default::default()
    };
    let text = ready
        .template
        .render(&messages, &opts)
        .map_err(|e| ApiError::field("messages", e.to_string()))?;
    let prompt = ready.tokenizer.encode(&text, true, true);
    let (field, max) = match (req.max_completion_tokens, req.max_tokens) {
        (Some(m), _) => ("max_completion_tokens", Some(m)),
        (None, m) => ("max_tokens", m),
    };
    let max_tokens = check_lengths(prompt.len(), max, ready.n_ctx, field, false)?;
    let params = (0..n)
        .map(|i| {
            let mut s = sampling.clone();
            s.seed = choice_seed(s.seed, i);
            GenParams {
                prompt: prompt.clone(),
                max_tokens,
                sampling: s,
                stop: stop.clone(),
                logprobs: logprobs.then_some(top.unwrap_or(0) as usize),
                ignore_eos: req.ignore_eos.unwrap_or(false),
                cache_prompt: req.cache_prompt.unwrap_or(true),
            }
        })
        .collect();
    Ok(Prepared {
        params,
        prompt_of: vec![0; n],
        prompts: vec![prompt],
        stream: req.stream.unwrap_or(false),
        include_usage: req
            .stream_options
            .and_then(|o| o.include_usage)
            .unwrap_or(false),
        logprobs,
    })
}

/// Choice `i` of a seeded request draws from seed + i (choice 0 as the request alone).
fn choice_seed(seed: u32, i: usize) -> u32 {
    if seed == hearth_model::sampling::RANDOM_SEED {
        seed
    } else {
        let s = seed.wrapping_add(i as u32);
        if s == hearth_model::sampling::RANDOM_SEED {
            0
        } else {
            s
        }
    }
}

fn prepare_completion(
    ready: &Ready,
    req: CompletionRequest,
    sampling: SamplingFields,
) -> Result<(Prepared, bool), ApiError> {
    check_model(req.model.as_deref(), &ready.info)?;
    let n = check_n(req.n)?;
    let n_vocab = ready.info.n_vocab;
    let mut sampling = sampling.params(OPENAI_MAX_TEMPERATURE, n_vocab)?;
    sampling.logit_bias = check_logit_bias(req.logit_bias, n_vocab)?;
    let stop = check_stop(req.stop, "stop")?;
    let top = common::check_i(req.logprobs, "logprobs", 0, MAX_TOP_LOGPROBS as i64)?;
    let prompts = req.prompt.tokenize(ready, "prompt", true)?;
    if prompts.len() * n > MAX_CHOICES {
        return Err(ApiError::field(
            "prompt",
            format!(
                "{} prompts x n = {n}: at most {MAX_CHOICES} choices",
                prompts.len()
            ),
        ));
    }
    let mut params = Vec::new();
    let mut prompt_of = Vec::new();
    for (pi, prompt) in prompts.iter().enumerate() {
        let max_tokens = check_lengths(
            prompt.len(),
            req.max_tokens,
            ready.n_ctx,
            "max_tokens",
            false,
        )?;
        for i in 0..n {
            let mut s = sampling.clone();
            s.seed = choice_seed(s.seed, i);
            params.push(GenParams {
                prompt: prompt.clone(),
                max_tokens,
                sampling: s,
                stop: stop.clone(),
                logprobs: top.map(|k| k as usize),
                ignore_eos: req.ignore_eos.unwrap_or(false),
                cache_prompt: req.cache_prompt.unwrap_or(true),
            });
            prompt_of.push(pi);
        }
    }
    Ok((
        Prepared {
            params,
            prompt_of,
            prompts,
            stream: req.stream.unwrap_or(false),
            include_usage: req
                .stream_options
                .and_then(|o| o.include_usage)
                .unwrap_or(false),
            logprobs: top.is_some(),
        },
        req.echo.unwrap_or(false),
    ))
}

fn piece(ready: &Ready, id: u32) -> (String, Vec<u8>) {
    let b = ready.tokenizer.token_to_piece(id, true).to_vec();
    (String::from_utf8_lossy(&b).into_owned(), b)
}

/// OpenAI chat `logprobs.content` entries.
fn chat_logprobs(ready: &Ready, tokens: &[TokenOut]) -> Json {
    let content: Vec<Json> = tokens
        .iter()
        .filter_map(|t| {
            let p = t.probs.as_ref()?;
            let (tok, bytes) = piece(ready, t.id);
            let top: Vec<Json> = p
                .top
                .iter()
                .map(|&(id, lp)| {
                    let (tok, bytes) = piece(ready, id);
                    json!({"token": tok, "logprob": lp, "bytes": bytes})
                })
                .collect();
            Some(json!({"token": tok, "logprob": p.logprob, "bytes": bytes, "top_logprobs": top}))
        })
        .collect();
    json!({ "content": content })
}

/// Legacy completions `logprobs`.
fn completion_logprobs(ready: &Ready, tokens: &[TokenOut], offset0: usize) -> Json {
    let mut toks = Vec::new();
    let mut lps = Vec::new();
    let mut tops = Vec::new();
    let mut offsets = Vec::new();
    let mut off = offset0;
    for t in tokens {
        let Some(p) = &t.probs else { continue };
        let (s, _) = piece(ready, t.id);
        offsets.push(off);
        off += s.len();
        toks.push(Json::from(s));
        lps.push(json!(p.logprob));
        let mut m = serde_json::Map::new();
        for &(id, lp) in &p.top {
            m.insert(piece(ready, id).0, json!(lp));
        }
        tops.push(Json::Object(m));
    }
    json!({"tokens": toks, "token_logprobs": lps, "top_logprobs": tops, "text_offset": offsets})
}

fn usage(prompt: usize, completion: usize, cached: usize) -> Json {
    json!({
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cached},
    })
}

/// A streaming response fed from a channel of chunks; when the client goes away the body
/// is dropped, the sender's task ends and with it the generations (cancelled).
pub fn channel_body(content_type: &'static str) -> (mpsc::Sender<Bytes>, Response) {
    let (tx, rx) = mpsc::channel::<Bytes>(64);
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|b| (Ok::<_, std::convert::Infallible>(b), rx))
    });
    let mut resp = Response::new(Body::from_stream(stream));
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    (tx, resp)
}

fn sse(v: &Json) -> Bytes {
    Bytes::from(format!("data: {v}\n\n"))
}

fn request_id(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}-{:x}{n:06x}", common::unix_now())
}

pub async fn chat(State(st): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    match st.gateway.clone() {
        Some(gw) => {
            gw.route(st, Endpoint::Chat, headers, body, chat_inner)
                .await
        }
        None => chat_inner(st, body)
            .await
            .unwrap_or_else(|e| e.respond(FLAVOR)),
    }
}

async fn chat_inner(st: AppState, body: Bytes) -> Result<Response, ApiError> {
    let ready = st.ready()?;
    let req: ChatRequest = parse_json(&body)?;
    let sampling: SamplingFields = parse_json(&body)?;
    let prep = common::blocking(ready.clone(), move |r| prepare_chat(r, req, sampling)).await?;
    let rxs = common::submit_all(&ready, prep.params.clone())?;
    let id = request_id("chatcmpl");
    let created = common::unix_now();
    let model = ready.info.alias.clone();
    if prep.stream {
        return Ok(stream_chat(ready, prep, rxs, id, created, model));
    }
    let n_prompt = prep.prompts[0].len();
    let mut choices = Vec::new();
    let (mut n_gen, mut cached) = (0, 0);
    let results = futures_util::future::join_all(rxs.into_iter().map(common::collect)).await;
    for (i, r) in results.into_iter().enumerate() {
        let c = r?;
        n_gen += c.summary.n_generated;
        cached = c.summary.n_cached;
        let logprobs = if prep.logprobs {
            chat_logprobs(&ready, &c.tokens)
        } else {
            Json::Null
        };
        choices.push(json!({
            "index": i,
            "message": {"role": "assistant", "content": c.text},
            "logprobs": logprobs,
            "finish_reason": c.summary.finish.openai(),
        }));
    }
    Ok(axum::Json(json!({
        "id": id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "system_fingerprint": concat!("hearth-", env!("CARGO_PKG_VERSION")),
        "choices": choices,
        "usage": usage(n_prompt, n_gen, cached),
    }))
    .into_response())
}

fn stream_chat(
    ready: Arc<Ready>,
    prep: Prepared,
    rxs: Vec<mpsc::UnboundedReceiver<Event>>,
    id: String,
    created: u64,
    model: String,
) -> Response {
    let (tx, resp) = channel_body("text/event-stream");
    let n = rxs.len();
    tokio::spawn(async move {
        let chunk = |choices: Json| {
            json!({
                "id": id, "object": "chat.completion.chunk", "created": created, "model": model,
                "system_fingerprint": concat!("hearth-", env!("CARGO_PKG_VERSION")),
                "choices": choices,
            })
        };
        for i in 0..n {
            let c = chunk(
                json!([{"index": i, "delta": {"role": "assistant", "content": ""}, "logprobs": null, "finish_reason": null}]),
            );
            if tx.send(sse(&c)).await.is_err() {
                return;
            }
        }
        let mut events = common::merged_events(rxs);
        let (mut n_gen, mut cached, mut left) = (0usize, 0usize, n);
        while let Some((i, ev)) = events.next().await {
            let msg = match ev {
                Event::Token(t) => {
                    let lp = if prep.logprobs {
                        chat_logprobs(&ready, std::slice::from_ref(&t))
                    } else {
                        Json::Null
                    };
                    if t.text.is_empty() && !prep.logprobs {
                        continue;
                    }
                    chunk(
                        json!([{"index": i, "delta": {"content": t.text}, "logprobs": lp, "finish_reason": null}]),
                    )
                }
                Event::Done(s) => {
                    n_gen += s.n_generated;
                    cached = s.n_cached;
                    left -= 1;
                    let mut v = Vec::new();
                    if !s.text.is_empty() {
                        let c = chunk(
                            json!([{"index": i, "delta": {"content": s.text}, "logprobs": null, "finish_reason": null}]),
                        );
                        v.push(sse(&c));
                    }
                    let c = chunk(
                        json!([{"index": i, "delta": {}, "logprobs": null, "finish_reason": s.finish.openai()}]),
                    );
                    v.push(sse(&c));
                    for b in v {
                        if tx.send(b).await.is_err() {
                            return;
                        }
                    }
                    if left == 0 {
                        break;
                    }
                    continue;
                }
                Event::Error(e) => {
                    let e = ApiError::from(e);
                    let body = json!({"error": {"message": e.to_string(), "type": e.kind(), "param": null, "code": e.code()}});
                    let _ = tx.send(sse(&body)).await;
                    return;
                }
            };
            if tx.send(sse(&msg)).await.is_err() {
                return;
            }
        }
        if prep.include_usage {
            let mut c = chunk(json!([]));
            c["usage"] = usage(prep.prompts[0].len(), n_gen, cached);
            if tx.send(sse(&c)).await.is_err() {
                return;
            }
        }
        let _ = tx.send(Bytes::from_static(b"data: [DONE]\n\n")).await;
    });
    resp
}

pub async fn completions(State(st): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    match st.gateway.clone() {
        Some(gw) => {
            gw.route(st, Endpoint::Completions, headers, body, completions_inner)
                .await
        }
        None => completions_inner(st, body)
            .await
            .unwrap_or_else(|e| e.respond(FLAVOR)),
    }
}

async fn completions_inner(st: AppState, body: Bytes) -> Result<Response, ApiError> {
    let ready = st.ready()?;
    let req: CompletionRequest = parse_json(&body)?;
    let sampling: SamplingFields = parse_json(&body)?;
    let (prep, echo) =
        common::blocking(ready.clone(), move |r| prepare_completion(r, req, sampling)).await?;
    let rxs = common::submit_all(&ready, prep.params.clone())?;
    let id = request_id("cmpl");
    let created = common::unix_now();
    let model = ready.info.alias.clone();
    let prompt_text: Vec<String> = prep
        .prompts
        .iter()
        .map(|p| ready.tokenizer.decode(p, true, false))
        .collect();
    if prep.stream {
        let (tx, resp) = channel_body("text/event-stream");
        tokio::spawn(async move {
            let chunk = |i: usize, text: String, lp: Json, finish: Json| {
                json!({"id": id, "object": "text_completion", "created": created, "model": model,
                       "choices": [{"text": text, "index": i, "logprobs": lp, "finish_reason": finish}]})
            };
            if echo {
                for (i, &p) in prep.prompt_of.iter().enumerate() {
                    let c = chunk(i, prompt_text[p].clone(), Json::Null, Json::Null);
                    if tx.send(sse(&c)).await.is_err() {
                        return;
                    }
                }
            }
            let n = prep.params.len();
            let mut events = common::merged_events(rxs);
            let (mut n_gen, mut cached, mut left) = (0usize, 0usize, n);
            while let Some((i, ev)) = events.next().await {
                let msg = match ev {
                    Event::Token(t) => {
                        if t.text.is_empty() && !prep.logprobs {
                            continue;
                        }
                        let lp = if prep.logprobs {
                            completion_logprobs(&ready, std::slice::from_ref(&t), 0)
                        } else {
                            Json::Null
                        };
                        chunk(i, t.text, lp, Json::Null)
                    }
                    Event::Done(s) => {
                        n_gen += s.n_generated;
                        cached = s.n_cached;
                        left -= 1;
                        let c = chunk(i, s.text, Json::Null, json!(s.finish.openai()));
                        if tx.send(sse(&c)).await.is_err() {
                            return;
                        }
                        if left == 0 {
                            break;
                        }
                        continue;
                    }
                    Event::Error(e) => {
                        let e = ApiError::from(e);
                        let body = json!({"error": {"message": e.to_string(), "type": e.kind(), "param": null, "code": e.code()}});
                        let _ = tx.send(sse(&body)).await;
                        return;
                    }
                };
                if tx.send(sse(&msg)).await.is_err() {
                    return;
                }
            }
            if prep.include_usage {
                let n_prompt: usize = prep.prompts.iter().map(Vec::len).sum();
                let c = json!({"id": id, "object": "text_completion", "created": created, "model": model,
                               "choices": [], "usage": usage(n_prompt, n_gen, cached)});
                if tx.send(sse(&c)).await.is_err() {
                    return;
                }
            }
            let _ = tx.send(Bytes::from_static(b"data: [DONE]\n\n")).await;
        });
        return Ok(resp);
    }
    let results = futures_util::future::join_all(rxs.into_iter().map(common::collect)).await;
    let mut choices = Vec::new();
    let (mut n_gen, mut cached) = (0, 0);
    for (i, r) in results.into_iter().enumerate() {
        let c = r?;
        n_gen += c.summary.n_generated;
        cached += c.summary.n_cached;
        let prefix = if echo {
            prompt_text[prep.prompt_of[i]].clone()
        } else {
            String::new()
        };
        let logprobs = if prep.logprobs {
            completion_logprobs(&ready, &c.tokens, prefix.len())
        } else {
            Json::Null
        };
        choices.push(json!({
            "text": prefix + &c.text,
            "index": i,
            "logprobs": logprobs,
            "finish_reason": c.summary.finish.openai(),
        }));
    }
    let n_prompt: usize = prep.prompts.iter().map(Vec::len).sum();
    Ok(axum::Json(json!({
        "id": id,
        "object": "text_completion",
        "created": created,
        "model": model,
        "system_fingerprint": concat!("hearth-", env!("CARGO_PKG_VERSION")),
        "choices": choices,
        "usage": usage(n_prompt, n_gen, cached),
    }))
    .into_response())
}

/// Tokenizes and checks embedding inputs.
pub fn embedding_inputs(
    ready: &Ready,
    input: PromptField,
    field: &str,
) -> Result<Vec<Vec<u32>>, ApiError> {
    let inputs = input.tokenize(ready, field, true)?;
    if inputs.len() > MAX_EMBED_INPUTS {
        return Err(ApiError::field(
            field,
            format!("{} inputs; at most {MAX_EMBED_INPUTS}", inputs.len()),
        ));
    }
    for (i, t) in inputs.iter().enumerate() {
        if t.is_empty() {
            return Err(ApiError::field(
                format!("{field}[{i}]"),
                "the input is empty",
            ));
        }
        if t.len() > ready.n_ctx {
            return Err(ApiError::ContextExceeded {
                n_prompt: t.len(),
                n_ctx: ready.n_ctx,
                hint: "; shorten the input",
            });
        }
    }
    Ok(inputs)
}

/// Embeds `inputs` on the engine.
pub async fn run_embeddings(
    ready: &Ready,
    inputs: Vec<Vec<u32>>,
) -> Result<Vec<Vec<f32>>, ApiError> {
    let rx = ready.engine.embed(inputs)?;
    match rx.await {
        Ok(r) => r.map_err(ApiError::from),
        Err(_) => Err(ApiError::ShuttingDown),
    }
}

pub async fn embeddings(State(st): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    match st.gateway.clone() {
        Some(gw) => {
            gw.route(st, Endpoint::Embeddings, headers, body, embeddings_inner)
                .await
        }
        None => embeddings_inner(st, body)
            .await
            .unwrap_or_else(|e| e.respond(FLAVOR)),
    }
}

async fn embeddings_inner(st: AppState, body: Bytes) -> Result<Response, ApiError> {
    let ready = st.ready()?;
    let req: EmbeddingRequest = parse_json(&body)?;
    check_model(req.model.as_deref(), &ready.info)?;
    let base64 = match req.encoding_format.as_deref() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => {
            return Err(ApiError::field(
                "encoding_format",
                format!("{other:?}: expected \"float\" or \"base64\""),
            ))
        }
    };
    let input = req.input;
    let inputs =
        common::blocking(ready.clone(), move |r| embedding_inputs(r, input, "input")).await?;
    let n_tokens: usize = inputs.iter().map(Vec::len).sum();
    let vectors = run_embeddings(&ready, inputs).await?;
    let data: Vec<Json> = vectors
        .into_iter()
        .enumerate()
        .map(|(i, v)| {
            let embedding = if base64 {
                let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                Json::from(common::base64(&bytes))
            } else {
                json!(v)
            };
            json!({"object": "embedding", "index": i, "embedding": embedding})
        })
        .collect();
    Ok(axum::Json(json!({
        "object": "list",
        "data": data,
        "model": ready.info.alias,
        "usage": {"prompt_tokens": n_tokens, "total_tokens": n_tokens},
    }))
    .into_response())
}

/// The local model, then (behind a gateway) the healthy upstreams' models not listed yet.
pub async fn models(State(st): State<AppState>) -> Response {
    let mut data = Vec::new();
    match st.ready() {
        Ok(ready) => {
            let i = &ready.info;
            let created = i
                .modified
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            data.push(json!({
                "id": i.alias,
                "object": "model",
                "created": created,
                "owned_by": "hearth",
                "meta": {
                    "n_vocab": i.n_vocab,
                    "n_ctx_train": i.n_ctx_train,
                    "n_ctx": ready.n_ctx,
                    "n_embd": i.n_embd,
                    "n_params": i.n_params,
                    "size": i.file_size,
                },
            }));
        }
        // Behind a gateway the upstreams' models are listed while the local one loads.
        Err(e) if st.gateway.is_none() => return e.respond(FLAVOR),
        Err(_) => {}
    }
    if let Some(gw) = &st.gateway {
        gw.merge_models(&mut data);
    }
    axum::Json(json!({"object": "list", "data": data})).into_response()
}
