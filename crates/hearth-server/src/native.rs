//! llama-server's own endpoints: `/completion`, `/tokenize`, `/detokenize`, `/apply-template`,
//! `/health`, `/metrics`, `/slots`, `/props`.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use hearth_tokenizer::template::RenderOptions;
use serde::Deserialize;
use serde_json::{json, Value as Json};

use crate::common::{
    self, check_lengths, check_logit_bias, check_model, check_stop, parse_json, LogitBiasField,
    OneOrMany, PromptField, SamplingFields, MAX_TEMPERATURE, MAX_TOP_LOGPROBS,
};
use crate::engine::{Event, Finish, GenParams, Summary, TokenOut};
use crate::error::{ApiError, Flavor};
use crate::openai::{channel_body, check_messages};
use crate::server::{AppState, Ready};

const FLAVOR: Flavor = Flavor::LlamaCpp;

pub async fn health(State(st): State<AppState>) -> Response {
    match st.ready() {
        Ok(_) => axum::Json(json!({"status": "ok"})).into_response(),
        Err(e) => e.respond(FLAVOR),
    }
}

pub async fn metrics(State(st): State<AppState>) -> Response {
    let mut resp = st.metrics.render().into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    resp
}

pub async fn slots(State(st): State<AppState>) -> Response {
    match st.ready() {
        Ok(r) => axum::Json(json!(r.engine.slots())).into_response(),
        Err(e) => e.respond(FLAVOR),
    }
}

pub async fn props(State(st): State<AppState>) -> Response {
    match st.ready() {
        Ok(r) => {
            let d = hearth_model::sampling::SamplingParams::default();
            axum::Json(json!({
                "default_generation_settings": {
                    "n_ctx": r.n_ctx,
                    "params": {
                        "temperature": d.temperature, "top_k": d.top_k, "top_p": d.top_p,
                        "min_p": d.min_p, "typical_p": d.typical_p,
                        "repeat_penalty": d.repeat_penalty, "repeat_last_n": d.penalty_last_n,
                        "presence_penalty": d.presence_penalty,
                        "frequency_penalty": d.frequency_penalty, "n_predict": -1,
                    },
                },
                "total_slots": r.engine.config().n_slots,
                "model_path": r.info.path.display().to_string(),
                "model_alias": r.info.alias,
                "chat_template": r.template.source(),
                "modalities": {"vision": false, "audio": false},
                "build_info": concat!("hearth-", env!("CARGO_PKG_VERSION")),
            }))
            .into_response()
        }
        Err(e) => e.respond(FLAVOR),
    }
}

#[derive(Deserialize)]
struct CompletionRequest {
    model: Option<String>,
    prompt: PromptField,
    n_predict: Option<i64>,
    max_tokens: Option<i64>,
    stream: Option<bool>,
    stop: Option<OneOrMany>,
    n_probs: Option<i64>,
    cache_prompt: Option<bool>,
    ignore_eos: Option<bool>,
    logit_bias: Option<LogitBiasField>,
    return_tokens: Option<bool>,
}

struct Prepared {
    params: GenParams,
    stream: bool,
    n_probs: usize,
    return_tokens: bool,
}

fn prepare(
    ready: &Ready,
    req: CompletionRequest,
    sampling: SamplingFields,
) -> Result<Prepared, ApiError> {
    check_model(req.model.as_deref(), &ready.info)?;
    let n_vocab = ready.info.n_vocab;
    let mut sampling = sampling.params(MAX_TEMPERATURE, n_vocab)?;
    sampling.logit_bias = check_logit_bias(req.logit_bias, n_vocab)?;
    let stop = check_stop(req.stop, "stop")?;
    let n_probs =
        common::check_i(req.n_probs, "n_probs", 0, MAX_TOP_LOGPROBS as i64)?.unwrap_or(0) as usize;
    let mut prompts = req.prompt.tokenize(ready, "prompt", true)?;
    if prompts.len() != 1 {
        return Err(ApiError::field(
            "prompt",
            "one prompt per request (use /v1/completions for several)",
        ));
    }
    let prompt = prompts.remove(0);
    let (field, n_predict) = match (req.n_predict, req.max_tokens) {
        (Some(n), _) => ("n_predict", n),
        (None, Some(n)) => ("max_tokens", n),
        (None, None) => ("n_predict", -1),
    };
    let max = match n_predict {
        -1 => None,
        n if n < -1 => {
            return Err(ApiError::field(
                field,
                format!("{n} is out of range: expected -1 (no limit) or a count >= 0"),
            ))
        }
        n => Some(n),
    };
    let max_tokens = check_lengths(prompt.len(), max, ready.n_ctx, field, true)?;
    Ok(Prepared {
        params: GenParams {
            prompt,
            max_tokens,
            sampling,
            stop,
            logprobs: (n_probs > 0).then_some(n_probs),
            ignore_eos: req.ignore_eos.unwrap_or(false),
            cache_prompt: req.cache_prompt.unwrap_or(true),
        },
        stream: req.stream.unwrap_or(false),
        n_probs,
        return_tokens: req.return_tokens.unwrap_or(false),
    })
}

fn probs(ready: &Ready, tokens: &[TokenOut]) -> Json {
    let piece = |id: u32| {
        let b = ready.tokenizer.token_to_piece(id, true);
        (String::from_utf8_lossy(b).into_owned(), b.to_vec())
    };
    Json::Array(
        tokens
            .iter()
            .filter_map(|t| {
                let p = t.probs.as_ref()?;
                let (s, b) = piece(t.id);
                let top: Vec<Json> = p
                    .top
                    .iter()
                    .map(|&(id, lp)| {
                        let (s, b) = piece(id);
                        json!({"id": id, "token": s, "logprob": lp, "bytes": b})
                    })
                    .collect();
                Some(json!({"id": t.id, "token": s, "logprob": p.logprob, "bytes": b, "top_logprobs": top}))
            })
            .collect(),
    )
}

fn stop_type(f: &Finish) -> (&'static str, String) {
    match f {
        Finish::Eog => ("eos", String::new()),
        Finish::Limit | Finish::Context => ("limit", String::new()),
        Finish::Stop(w) => ("word", w.clone()),
    }
}

fn timings(s: &Summary) -> Json {
    let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
    let n_eval = s.n_prompt - s.n_cached;
    let per_s = |n: usize, d: std::time::Duration| n as f64 / d.as_secs_f64().max(1e-9);
    json!({
        "cache_n": s.n_cached,
        "prompt_n": n_eval,
        "prompt_ms": ms(s.prompt_time),
        "prompt_per_second": per_s(n_eval, s.prompt_time),
        "predicted_n": s.n_generated,
        "predicted_ms": ms(s.gen_time),
        "predicted_per_second": per_s(s.n_generated, s.gen_time),
    })
}

fn final_object(ready: &Ready, content: String, tokens: Json, s: &Summary, n_probs: Json) -> Json {
    let (stop_type, word) = stop_type(&s.finish);
    let mut v = json!({
        "index": 0,
        "content": content,
        "tokens": tokens,
        "id_slot": s.slot,
        "stop": true,
        "model": ready.info.alias,
        "tokens_predicted": s.n_generated,
        "tokens_evaluated": s.n_prompt,
        "tokens_cached": s.n_prompt + s.n_generated,
        "truncated": false,
        "stop_type": stop_type,
        "stopping_word": word,
        "timings": timings(s),
    });
    if !n_probs.is_null() {
        v["completion_probabilities"] = n_probs;
    }
    v
}

pub async fn completion(State(st): State<AppState>, body: Bytes) -> Response {
    completion_inner(st, body)
        .await
        .unwrap_or_else(|e| e.respond(FLAVOR))
}

async fn completion_inner(st: AppState, body: Bytes) -> Result<Response, ApiError> {
    let ready = st.ready()?;
    let req: CompletionRequest = parse_json(&body)?;
    let sampling: SamplingFields = parse_json(&body)?;
    let prep = common::blocking(ready.clone(), move |r| prepare(r, req, sampling)).await?;
    let (_, mut rx) = ready.engine.submit(prep.params)?;
    if prep.stream {
        let (tx, resp) = channel_body("text/event-stream");
        let ready: Arc<Ready> = ready.clone();
        tokio::spawn(async move {
            let mut n = 0usize;
            let n_prompt = 0usize;
            while let Some(ev) = rx.recv().await {
                let v = match ev {
                    Event::Token(t) => {
                        n += 1;
                        let mut v = json!({"index": 0, "content": t.text, "tokens": [t.id], "stop": false,
                                           "id_slot": -1, "tokens_predicted": n, "tokens_evaluated": n_prompt});
                        if prep.n_probs > 0 {
                            v["completion_probabilities"] = probs(&ready, std::slice::from_ref(&t));
                        }
                        v
                    }
                    Event::Done(s) => {
                        let v = final_object(&ready, s.text.clone(), json!([]), &s, Json::Null);
                        let _ = tx.send(Bytes::from(format!("data: {v}\n\n"))).await;
                        return;
                    }
                    Event::Error(e) => {
                        let e = ApiError::from(e);
                        let v = json!({"error": {"code": e.status().as_u16(), "message": e.to_string(), "type": e.kind()}});
                        let _ = tx.send(Bytes::from(format!("error: {v}\n\n"))).await;
                        return;
                    }
                };
                if tx
                    .send(Bytes::from(format!("data: {v}\n\n")))
                    .await
                    .is_err()
                {
                    return;
                }
            }
        });
        return Ok(resp);
    }
    let c = common::collect(rx).await?;
    let tokens = if prep.return_tokens {
        json!(c.tokens.iter().map(|t| t.id).collect::<Vec<_>>())
    } else {
        json!([])
    };
    let p = if prep.n_probs > 0 {
        probs(&ready, &c.tokens)
    } else {
        Json::Null
    };
    Ok(axum::Json(final_object(&ready, c.text, tokens, &c.summary, p)).into_response())
}

#[derive(Deserialize)]
struct TokenizeRequest {
    content: String,
    add_special: Option<bool>,
    parse_special: Option<bool>,
    with_pieces: Option<bool>,
}

pub async fn tokenize(State(st): State<AppState>, body: Bytes) -> Response {
    let run = async {
        let ready = st.ready()?;
        let req: TokenizeRequest = parse_json(&body)?;
        let out = common::blocking(ready, move |r| {
            let ids = r.tokenizer.encode(
                &req.content,
                req.add_special.unwrap_or(false),
                req.parse_special.unwrap_or(true),
            );
            Ok(if req.with_pieces.unwrap_or(false) {
                let v: Vec<Json> = ids
                    .iter()
                    .map(|&id| {
                        let b = r.tokenizer.token_to_piece(id, true);
                        match std::str::from_utf8(b) {
                            Ok(s) => json!({"id": id, "piece": s}),
                            Err(_) => json!({"id": id, "piece": b}),
                        }
                    })
                    .collect();
                json!({ "tokens": v })
            } else {
                json!({ "tokens": ids })
            })
        })
        .await?;
        Ok::<_, ApiError>(axum::Json(out).into_response())
    };
    run.await.unwrap_or_else(|e| e.respond(FLAVOR))
}

#[derive(Deserialize)]
struct DetokenizeRequest {
    tokens: Vec<i64>,
}

pub async fn detokenize(State(st): State<AppState>, body: Bytes) -> Response {
    let run = async {
        let ready = st.ready()?;
        let req: DetokenizeRequest = parse_json(&body)?;
        let ids = common::check_tokens(&req.tokens, ready.info.n_vocab, "tokens")?;
        let text = ready.tokenizer.decode(&ids, false, true);
        Ok::<_, ApiError>(axum::Json(json!({ "content": text })).into_response())
    };
    run.await.unwrap_or_else(|e| e.respond(FLAVOR))
}

#[derive(Deserialize)]
struct TemplateRequest {
    messages: Vec<Json>,
    tools: Option<Json>,
    add_generation_prompt: Option<bool>,
    chat_template_kwargs: Option<serde_json::Map<String, Json>>,
}

pub async fn apply_template(State(st): State<AppState>, body: Bytes) -> Response {
    let run = async {
        let ready = st.ready()?;
        let req: TemplateRequest = parse_json(&body)?;
        let prompt = common::blocking(ready, move |r| {
            let messages = check_messages(req.messages)?;
            let opts = RenderOptions {
                add_generation_prompt: req.add_generation_prompt.unwrap_or(true),
                tools: req.tools.filter(|t| !t.is_null()),
                strip_bos: r.tokenizer.add_bos(),
                extra: req.chat_template_kwargs.unwrap_or_default(),
                ..Default::default()
            };
            r.template
                .render(&messages, &opts)
                .map_err(|e| ApiError::field("messages", e.to_string()))
        })
        .await?;
        Ok::<_, ApiError>(axum::Json(json!({ "prompt": prompt })).into_response())
    };
    run.await.unwrap_or_else(|e| e.respond(FLAVOR))
}
