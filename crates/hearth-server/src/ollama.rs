//! The Ollama API: `/api/generate`, `/api/chat` (NDJSON streaming by default), `/api/tags`,
//! `/api/show`, `/api/ps`, `/api/embed`, `/api/embeddings`, `/api/version`, with Ollama's
//! option names and `{"error": "..."}` errors.

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use hearth_tokenizer::template::RenderOptions;
use serde::Deserialize;
use serde_json::{json, Value as Json};

use crate::common::{
    self, check_lengths, check_model, check_stop, parse_json, OneOrMany, SamplingFields,
    MAX_TEMPERATURE,
};
use crate::engine::{Event, GenParams, Summary};
use crate::error::{ApiError, Flavor};
use crate::openai::{channel_body, check_messages, embedding_inputs, run_embeddings};
use crate::server::{AppState, Ready};

const FLAVOR: Flavor = Flavor::Ollama;

/// Ollama's `options`.
#[derive(Clone, Debug, Default, Deserialize)]
struct Options {
    num_ctx: Option<i64>,
    num_predict: Option<i64>,
    stop: Option<OneOrMany>,
}

#[derive(Deserialize)]
struct GenerateRequest {
    model: Option<String>,
    prompt: Option<String>,
    system: Option<String>,
    raw: Option<bool>,
    stream: Option<bool>,
    options: Option<Json>,
    images: Option<Vec<Json>>,
    context: Option<Vec<i64>>,
}

#[derive(Deserialize)]
struct ChatRequest {
    model: Option<String>,
    messages: Option<Vec<Json>>,
    stream: Option<bool>,
    options: Option<Json>,
    tools: Option<Json>,
}

#[derive(Deserialize)]
struct ModelRequest {
    model: Option<String>,
    name: Option<String>,
}

#[derive(Deserialize)]
struct EmbedRequest {
    model: Option<String>,
    input: common::PromptField,
    truncate: Option<bool>,
}

#[derive(Deserialize)]
struct EmbeddingsRequest {
    model: Option<String>,
    prompt: String,
}

/// RFC 3339 UTC time of `t` (Ollama's `created_at`, `modified_at`).
pub fn rfc3339(t: std::time::SystemTime) -> String {
    let d = t
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or(Duration::ZERO);
    let secs = d.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86400), secs.rem_euclid(86400));
    // Civil from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = if month <= 2 { y + 1 } else { y };
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:09}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_nanos()
    )
}

fn now() -> String {
    rfc3339(std::time::SystemTime::now())
}

fn require_model(model: Option<&str>, ready: &Ready) -> Result<(), ApiError> {
    match model {
        None | Some("") => Err(ApiError::field("model", "model is required")),
        m => check_model(m, &ready.info),
    }
}

/// Validated generation parameters from Ollama's options.
fn params(ready: &Ready, prompt: Vec<u32>, options: Option<Json>) -> Result<GenParams, ApiError> {
    let (o, mut f): (Options, SamplingFields) = match &options {
        None | Some(Json::Null) => Default::default(),
        Some(v @ Json::Object(_)) => (
            common::parse_value(v, "options")?,
            common::parse_value(v, "options")?,
        ),
        Some(_) => return Err(ApiError::field("options", "expected an object")),
    };
    // Ollama's defaults where they differ from llama.cpp's.
    f.top_p = f.top_p.or(Some(0.9));
    f.repeat_penalty = f.repeat_penalty.or(Some(1.1));
    f.min_p = f.min_p.or(Some(0.0));
    let sampling = f.params(MAX_TEMPERATURE, ready.info.n_vocab)?;
    let stop = check_stop(o.stop, "options.stop")?;
    let n_ctx = match common::check_i(o.num_ctx, "options.num_ctx", 1, i64::MAX)? {
        Some(n) => (n as usize).min(ready.n_ctx),
        None => ready.n_ctx,
    };
    let max = match o.num_predict {
        None | Some(-1) | Some(-2) => None,
        Some(n) if n < -2 => {
            return Err(ApiError::field(
                "options.num_predict",
                format!("{n} is out of range: expected -1, -2 or a count >= 0"),
            ))
        }
        // A limit beyond the context is the context (Ollama stops there too).
        Some(n) => Some(n.min((n_ctx.saturating_sub(prompt.len())) as i64)),
    };
    let max_tokens = check_lengths(prompt.len(), max, n_ctx, "options.num_predict", true)?;
    // A smaller num_ctx than the slot's: stop there.
    let max_tokens = if n_ctx < ready.n_ctx {
        Some(max_tokens.unwrap_or(usize::MAX).min(n_ctx - prompt.len()))
    } else {
        max_tokens
    };
    Ok(GenParams {
        prompt,
        max_tokens,
        sampling,
        stop,
        logprobs: None,
        ignore_eos: false,
        cache_prompt: true,
    })
}

fn durations(s: &Summary) -> serde_json::Map<String, Json> {
    let ns = |d: Duration| d.as_nanos() as u64;
    let mut m = serde_json::Map::new();
    m.insert(
        "total_duration".into(),
        json!(ns(s.queue_time + s.prompt_time + s.gen_time)),
    );
    m.insert("load_duration".into(), json!(0));
    m.insert("prompt_eval_count".into(), json!(s.n_prompt));
    m.insert("prompt_eval_duration".into(), json!(ns(s.prompt_time)));
    m.insert("eval_count".into(), json!(s.n_generated));
    m.insert("eval_duration".into(), json!(ns(s.gen_time)));
    m
}

enum Kind {
    Generate,
    Chat,
}

/// Runs a generation and answers as Ollama does: NDJSON lines when streaming, else one object.
async fn respond(
    ready: std::sync::Arc<Ready>,
    params: GenParams,
    stream: bool,
    kind: Kind,
) -> Result<Response, ApiError> {
    let model = ready.info.alias.clone();
    let (_, mut rx) = ready.engine.submit(params)?;
    let piece = move |model: &str, text: &str, kind: &Kind| match kind {
        Kind::Generate => {
            json!({"model": model, "created_at": now(), "response": text, "done": false})
        }
        Kind::Chat => {
            json!({"model": model, "created_at": now(), "message": {"role": "assistant", "content": text}, "done": false})
        }
    };
    let last = move |model: &str, text: &str, s: &Summary, kind: &Kind| {
        let mut v = piece(model, text, kind);
        v["done"] = json!(true);
        v["done_reason"] = json!(s.finish.openai());
        if let Kind::Generate = kind {
            v["context"] = json!(s.context);
        }
        if let Json::Object(o) = &mut v {
            o.extend(durations(s));
        }
        v
    };
    if stream {
        let (tx, resp) = channel_body("application/x-ndjson");
        tokio::spawn(async move {
            while let Some(ev) = rx.recv().await {
                let v = match ev {
                    Event::Token(t) if t.text.is_empty() => continue,
                    Event::Token(t) => piece(&model, &t.text, &kind),
                    Event::Done(s) => {
                        let mut lines = String::new();
                        if !s.text.is_empty() {
                            lines.push_str(&format!("{}\n", piece(&model, &s.text, &kind)));
                        }
                        lines.push_str(&format!("{}\n", last(&model, "", &s, &kind)));
                        let _ = tx.send(Bytes::from(lines)).await;
                        return;
                    }
                    Event::Error(e) => {
                        let e = ApiError::from(e);
                        let _ = tx
                            .send(Bytes::from(format!(
                                "{}\n",
                                json!({"error": e.to_string()})
                            )))
                            .await;
                        return;
                    }
                };
                if tx.send(Bytes::from(format!("{v}\n"))).await.is_err() {
                    return;
                }
            }
        });
        return Ok(resp);
    }
    let c = common::collect(rx).await?;
    Ok(axum::Json(last(&model, &c.text, &c.summary, &kind)).into_response())
}

pub async fn generate(State(st): State<AppState>, body: Bytes) -> Response {
    let run = async {
        let ready = st.ready()?;
        let req: GenerateRequest = parse_json(&body)?;
        require_model(req.model.as_deref(), &ready)?;
        if req.images.as_ref().is_some_and(|i| !i.is_empty()) {
            return Err(ApiError::field("images", "this model does not take images"));
        }
        let no_prompt = req.prompt.as_deref().unwrap_or("").is_empty();
        if no_prompt && req.context.as_ref().is_none_or(Vec::is_empty) {
            // Ollama's way to load a model.
            return Ok(
                axum::Json(json!({"model": ready.info.alias, "created_at": now(),
                "response": "", "done": true, "done_reason": "load"}))
                .into_response(),
            );
        }
        let stream = req.stream.unwrap_or(true);
        let params = common::blocking(ready.clone(), move |r| {
            let mut tokens = match &req.context {
                Some(c) => common::check_tokens(c, r.info.n_vocab, "context")?,
                None => Vec::new(),
            };
            let prompt = req.prompt.unwrap_or_default();
            if req.raw.unwrap_or(false) {
                tokens.extend(r.tokenizer.encode(&prompt, tokens.is_empty(), true));
            } else {
                let mut messages = Vec::new();
                if let Some(s) = req.system.filter(|s| !s.is_empty()) {
                    messages.push(json!({"role": "system", "content": s}));
                }
                messages.push(json!({"role": "user", "content": prompt}));
                let opts = RenderOptions {
                    add_generation_prompt: true,
                    strip_bos: r.tokenizer.add_bos(),
                    ..Default::default()
                };
                let text = r
                    .template
                    .render(&messages, &opts)
                    .map_err(|e| ApiError::field("prompt", e.to_string()))?;
                tokens.extend(r.tokenizer.encode(&text, tokens.is_empty(), true));
            }
            params(r, tokens, req.options)
        })
        .await?;
        respond(ready, params, stream, Kind::Generate).await
    };
    run.await.unwrap_or_else(|e| e.respond(FLAVOR))
}

pub async fn chat(State(st): State<AppState>, body: Bytes) -> Response {
    let run = async {
        let ready = st.ready()?;
        let req: ChatRequest = parse_json(&body)?;
        require_model(req.model.as_deref(), &ready)?;
        let messages = req.messages.unwrap_or_default();
        if messages.is_empty() {
            return Ok(axum::Json(json!({"model": ready.info.alias, "created_at": now(),
                "message": {"role": "assistant", "content": ""}, "done": true, "done_reason": "load"}))
            .into_response());
        }
        let stream = req.stream.unwrap_or(true);
        let options = req.options;
        let tools = match req.tools {
            None | Some(Json::Null) => None,
            Some(Json::Array(t)) => Some(Json::Array(t)),
            Some(_) => return Err(ApiError::field("tools", "expected an array")),
        };
        let params = common::blocking(ready.clone(), move |r| {
            let messages = check_messages(messages)?;
            let opts = RenderOptions {
                add_generation_prompt: true,
                tools,
                strip_bos: r.tokenizer.add_bos(),
                ..Default::default()
            };
            let text = r
                .template
                .render(&messages, &opts)
                .map_err(|e| ApiError::field("messages", e.to_string()))?;
            let tokens = r.tokenizer.encode(&text, true, true);
            params(r, tokens, options)
        })
        .await?;
        respond(ready, params, stream, Kind::Chat).await
    };
    run.await.unwrap_or_else(|e| e.respond(FLAVOR))
}

fn parameter_size(n: u64) -> String {
    if n >= 1_000_000_000 {
        format!("{:.1}B", n as f64 / 1e9)
    } else {
        format!("{:.2}M", n as f64 / 1e6)
    }
}

fn name(ready: &Ready) -> String {
    let a = &ready.info.alias;
    if a.contains(':') {
        a.clone()
    } else {
        format!("{a}:latest")
    }
}

fn details(ready: &Ready) -> Json {
    let i = &ready.info;
    json!({
        "parent_model": "",
        "format": "gguf",
        "family": i.arch,
        "families": [i.arch],
        "parameter_size": parameter_size(i.n_params),
        "quantization_level": i.quant,
    })
}

pub async fn tags(State(st): State<AppState>) -> Response {
    match st.ready() {
        Ok(r) => axum::Json(json!({"models": [{
            "name": name(&r),
            "model": name(&r),
            "modified_at": rfc3339(r.info.modified),
            "size": r.info.file_size,
            "digest": r.info.digest,
            "details": details(&r),
        }]}))
        .into_response(),
        Err(e) => e.respond(FLAVOR),
    }
}

pub async fn ps(State(st): State<AppState>) -> Response {
    match st.ready() {
        Ok(r) => axum::Json(json!({"models": [{
            "name": name(&r),
            "model": name(&r),
            "size": r.info.file_size,
            "digest": r.info.digest,
            "details": details(&r),
            "expires_at": "2999-01-01T00:00:00Z",
            "size_vram": 0,
            "context_length": r.n_ctx,
        }]}))
        .into_response(),
        Err(e) => e.respond(FLAVOR),
    }
}

pub async fn show(State(st): State<AppState>, body: Bytes) -> Response {
    let run = async {
        let ready = st.ready()?;
        let req: ModelRequest = parse_json(&body)?;
        require_model(req.model.as_deref().or(req.name.as_deref()), &ready)?;
        let i = &ready.info;
        Ok::<_, ApiError>(
            axum::Json(json!({
                "license": "",
                "modelfile": format!("# served by hearth\nFROM {}\n", i.path.display()),
                "parameters": "",
                "template": ready.template.source(),
                "details": details(&ready),
                "model_info": i.metadata,
                "capabilities": ["completion", "embedding"],
                "modified_at": rfc3339(i.modified),
            }))
            .into_response(),
        )
    };
    run.await.unwrap_or_else(|e| e.respond(FLAVOR))
}

pub async fn embed(State(st): State<AppState>, body: Bytes) -> Response {
    let run = async {
        let t0 = std::time::Instant::now();
        let ready = st.ready()?;
        let req: EmbedRequest = parse_json(&body)?;
        require_model(req.model.as_deref(), &ready)?;
        let truncate = req.truncate.unwrap_or(true);
        let input = req.input;
        let inputs = common::blocking(ready.clone(), move |r| {
            let mut inputs = input.tokenize(r, "input", true)?;
            if truncate {
                for t in &mut inputs {
                    t.truncate(r.n_ctx);
                }
            }
            let inputs: Vec<Vec<u32>> = inputs;
            // Same checks as OpenAI's (count, emptiness, length).
            let as_field = common::PromptField::Many(
                inputs
                    .into_iter()
                    .map(|t| common::PromptPart::Tokens(t.into_iter().map(i64::from).collect()))
                    .collect(),
            );
            embedding_inputs(r, as_field, "input")
        })
        .await?;
        let n: usize = inputs.iter().map(Vec::len).sum();
        let v = run_embeddings(&ready, inputs).await?;
        Ok::<_, ApiError>(
            axum::Json(json!({
                "model": ready.info.alias,
                "embeddings": v,
                "total_duration": t0.elapsed().as_nanos() as u64,
                "load_duration": 0,
                "prompt_eval_count": n,
            }))
            .into_response(),
        )
    };
    run.await.unwrap_or_else(|e| e.respond(FLAVOR))
}

pub async fn embeddings(State(st): State<AppState>, body: Bytes) -> Response {
    let run = async {
        let ready = st.ready()?;
        let req: EmbeddingsRequest = parse_json(&body)?;
        require_model(req.model.as_deref(), &ready)?;
        let prompt = req.prompt;
        let inputs = common::blocking(ready.clone(), move |r| {
            embedding_inputs(
                r,
                common::PromptField::One(common::PromptPart::Text(prompt)),
                "prompt",
            )
        })
        .await?;
        let mut v = run_embeddings(&ready, inputs).await?;
        Ok::<_, ApiError>(
            axum::Json(json!({"embedding": v.pop().unwrap_or_default()})).into_response(),
        )
    };
    run.await.unwrap_or_else(|e| e.respond(FLAVOR))
}

pub async fn version() -> Response {
    axum::Json(json!({"version": "0.9.0"})).into_response()
}

#[cfg(test)]
mod tests {
    #[test]
    fn rfc3339_formats_utc() {
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
        assert_eq!(super::rfc3339(t), "2023-11-14T22:13:20.000000000Z");
        assert_eq!(
            super::rfc3339(std::time::UNIX_EPOCH),
            "1970-01-01T00:00:00.000000000Z"
        );
    }
}
