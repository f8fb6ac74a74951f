//! What the APIs share: parsing a body into a typed request (errors name the field),
//! validating the fields every API has (model name, sampling, stop strings, logit bias,
//! prompts), and driving a generation.

use std::sync::Arc;

use axum::body::Bytes;
use futures_util::stream::{self, Stream};
use hearth_model::sampling::{SamplerKind, SamplingError, SamplingParams, RANDOM_SEED};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::Value as Json;
use tokio::sync::mpsc;

use crate::engine::{Event, GenParams, Summary, TokenOut};
use crate::error::ApiError;
use crate::server::{AppState, ModelInfo, Ready};

/// Most stop strings per request.
pub const MAX_STOP: usize = 32;
/// Longest stop string, in bytes.
pub const MAX_STOP_BYTES: usize = 1024;
/// Most logit-bias entries.
pub const MAX_LOGIT_BIAS: usize = 1024;
/// Most alternatives per token (`top_logprobs`, `n_probs`).
pub const MAX_TOP_LOGPROBS: usize = 20;
/// Most choices per request (`n`) and prompts per request.
pub const MAX_CHOICES: usize = 16;
/// Most embedding inputs per request.
pub const MAX_EMBED_INPUTS: usize = 256;

/// Parses `body` as `T`; a type error names the field (`max_tokens: invalid type ...`).
pub fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::InvalidJson {
            detail: "the body is empty".into(),
        });
    }
    let mut de = serde_json::Deserializer::from_slice(body);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_data() && path != "." {
            ApiError::field(path, inner.to_string())
        } else {
            ApiError::InvalidJson {
                detail: inner.to_string(),
            }
        }
    })?;
    de.end().map_err(|e| ApiError::InvalidJson {
        detail: e.to_string(),
    })?;
    Ok(value)
}

/// Deserializes `T` from `v`, a part of the request at `prefix`; errors name the field
/// (`options.temperature: ...`).
pub fn parse_value<T: DeserializeOwned>(v: &Json, prefix: &str) -> Result<T, ApiError> {
    serde_path_to_error::deserialize(v).map_err(|e| {
        let path = e.path().to_string();
        let field = if path == "." {
            prefix.to_string()
        } else {
            format!("{prefix}.{path}")
        };
        ApiError::field(field, e.into_inner().to_string())
    })
}

/// Checks the requested model name: absent or empty means the served model; a name that
/// looks like a path or a malformed digest is refused (400); another name is 404.
pub fn check_model(requested: Option<&str>, info: &ModelInfo) -> Result<(), ApiError> {
    let Some(name) = requested.map(str::trim).filter(|n| !n.is_empty()) else {
        return Ok(());
    };
    let bad = || ApiError::InvalidModelName {
        model: name.chars().take(200).collect(),
    };
    if name.len() > 256
        || name.chars().any(|c| c.is_control() || c == '\\')
        || name
            .split(['/', ':'])
            .any(|part| part == ".." || part == ".")
        || name.starts_with('/')
    {
        return Err(bad());
    }
    if let Some(hex) = name
        .strip_prefix("sha256:")
        .or_else(|| name.strip_prefix("sha256-"))
    {
        if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad());
        }
    }
    let alias = info.alias.as_str();
    let file = info
        .path
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    let ok = name == alias
        || name.strip_suffix(":latest") == Some(alias)
        || name == file
        || name == format!("sha256:{}", info.digest);
    if ok {
        Ok(())
    } else {
        Err(ApiError::ModelNotFound {
            model: name.chars().take(200).collect(),
            served: alias.to_string(),
        })
    }
}

/// A string or a list of strings (`stop`, `input`, `samplers`).
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    pub fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        }
    }
}

/// Validates stop strings (count and size).
pub fn check_stop(stop: Option<OneOrMany>, field: &str) -> Result<Vec<String>, ApiError> {
    let stop = stop.map(OneOrMany::into_vec).unwrap_or_default();
    if stop.len() > MAX_STOP {
        return Err(ApiError::field(
            field,
            format!(
                "{} stop strings; at most {MAX_STOP} are allowed",
                stop.len()
            ),
        ));
    }
    if let Some(s) = stop.iter().find(|s| s.len() > MAX_STOP_BYTES) {
        return Err(ApiError::field(
            field,
            format!(
                "a stop string of {} bytes; at most {MAX_STOP_BYTES} are allowed",
                s.len()
            ),
        ));
    }
    Ok(stop)
}

/// A number that must be finite and within `lo..=hi`.
pub fn check_f(v: Option<f64>, field: &str, lo: f64, hi: f64) -> Result<Option<f32>, ApiError> {
    match v {
        None => Ok(None),
        Some(x) if x.is_finite() && x >= lo && x <= hi => Ok(Some(x as f32)),
        Some(x) => Err(ApiError::field(
            field,
            format!("{x} is out of range: expected a number in [{lo}, {hi}]"),
        )),
    }
}

/// An integer within `lo..=hi`.
pub fn check_i(v: Option<i64>, field: &str, lo: i64, hi: i64) -> Result<Option<i64>, ApiError> {
    match v {
        None => Ok(None),
        Some(x) if (lo..=hi).contains(&x) => Ok(Some(x)),
        Some(x) => Err(ApiError::field(
            field,
            format!("{x} is out of range: expected an integer in [{lo}, {hi}]"),
        )),
    }
}

/// The sampling fields llama.cpp's server (and mostly Ollama's options) accept, by their names.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct SamplingFields {
    pub temperature: Option<f64>,
    pub top_k: Option<i64>,
    pub top_p: Option<f64>,
    pub min_p: Option<f64>,
    pub typical_p: Option<f64>,
    pub repeat_penalty: Option<f64>,
    pub repeat_last_n: Option<i64>,
    pub presence_penalty: Option<f64>,
    pub frequency_penalty: Option<f64>,
    pub dry_multiplier: Option<f64>,
    pub dry_base: Option<f64>,
    pub dry_allowed_length: Option<i64>,
    pub dry_penalty_last_n: Option<i64>,
    pub dry_sequence_breakers: Option<Vec<String>>,
    pub xtc_probability: Option<f64>,
    pub xtc_threshold: Option<f64>,
    pub top_n_sigma: Option<f64>,
    pub dynatemp_range: Option<f64>,
    pub dynatemp_exponent: Option<f64>,
    pub mirostat: Option<i64>,
    pub mirostat_tau: Option<f64>,
    pub mirostat_eta: Option<f64>,
    pub min_keep: Option<i64>,
    pub seed: Option<i64>,
    pub samplers: Option<OneOrMany>,
}

/// Temperature limit of the OpenAI API.
pub const OPENAI_MAX_TEMPERATURE: f64 = 2.0;
/// Temperature limit of the other APIs.
pub const MAX_TEMPERATURE: f64 = 100.0;

impl SamplingFields {
    /// llama-server's defaults overridden by the fields present, checked.
    pub fn params(&self, max_temp: f64, n_vocab: usize) -> Result<SamplingParams, ApiError> {
        let mut p = SamplingParams::default();
        let big = 1e6;
        if let Some(t) = check_f(self.temperature, "temperature", 0.0, max_temp)? {
            p.temperature = t;
        }
        if let Some(k) = check_i(self.top_k, "top_k", 0, n_vocab as i64)? {
            p.top_k = k as i32;
        }
        if let Some(x) = self.top_p {
            if !(x.is_finite() && x > 0.0 && x <= 1.0) {
                return Err(ApiError::field(
                    "top_p",
                    format!("{x} is out of range: expected a number in (0, 1]"),
                ));
            }
            p.top_p = x as f32;
        }
        if let Some(x) = check_f(self.min_p, "min_p", 0.0, 1.0)? {
            p.min_p = x;
        }
        if let Some(x) = self.typical_p {
            if !(x.is_finite() && x > 0.0 && x <= 1.0) {
                return Err(ApiError::field(
                    "typical_p",
                    format!("{x} is out of range: expected a number in (0, 1]"),
                ));
            }
            p.typical_p = x as f32;
        }
        if let Some(x) = self.repeat_penalty {
            if !(x.is_finite() && x > 0.0 && x <= 100.0) {
                return Err(ApiError::field(
                    "repeat_penalty",
                    format!("{x} is out of range: expected a number in (0, 100]"),
                ));
            }
            p.repeat_penalty = x as f32;
        }
        if let Some(n) = check_i(self.repeat_last_n, "repeat_last_n", -1, 1 << 20)? {
            p.penalty_last_n = n as i32;
        }
        if let Some(x) = check_f(self.presence_penalty, "presence_penalty", -2.0, 2.0)? {
            p.presence_penalty = x;
        }
        if let Some(x) = check_f(self.frequency_penalty, "frequency_penalty", -2.0, 2.0)? {
            p.frequency_penalty = x;
        }
        if let Some(x) = check_f(self.dry_multiplier, "dry_multiplier", 0.0, big)? {
            p.dry_multiplier = x;
        }
        if let Some(x) = check_f(self.dry_base, "dry_base", 1.0, big)? {
            p.dry_base = x;
        }
        if let Some(n) = check_i(self.dry_allowed_length, "dry_allowed_length", 0, 1 << 20)? {
            p.dry_allowed_length = n as u32;
        }
        if let Some(n) = check_i(self.dry_penalty_last_n, "dry_penalty_last_n", -1, 1 << 20)? {
            p.dry_penalty_last_n = n as i32;
        }
        if let Some(b) = &self.dry_sequence_breakers {
            if b.len() > MAX_STOP || b.iter().any(|s| s.len() > MAX_STOP_BYTES) {
                return Err(ApiError::field(
                    "dry_sequence_breakers",
                    format!("at most {MAX_STOP} strings of at most {MAX_STOP_BYTES} bytes"),
                ));
            }
            p.dry_sequence_breakers = b.clone();
        }
        if let Some(x) = check_f(self.xtc_probability, "xtc_probability", 0.0, 1.0)? {
            p.xtc_probability = x;
        }
        if let Some(x) = check_f(self.xtc_threshold, "xtc_threshold", 0.0, 1.0)? {
            p.xtc_threshold = x;
        }
        if let Some(x) = check_f(self.top_n_sigma, "top_n_sigma", -big, big)? {
            p.top_n_sigma = x;
        }
        if let Some(x) = check_f(self.dynatemp_range, "dynatemp_range", 0.0, big)? {
            p.dynatemp_range = x;
        }
        if let Some(x) = check_f(self.dynatemp_exponent, "dynatemp_exponent", 0.0, big)? {
            p.dynatemp_exponent = x;
        }
        if let Some(m) = check_i(self.mirostat, "mirostat", 0, 2)? {
            p.mirostat = m as u8;
        }
        if let Some(x) = check_f(self.mirostat_tau, "mirostat_tau", 0.0, big)? {
            p.mirostat_tau = x;
        }
        if let Some(x) = check_f(self.mirostat_eta, "mirostat_eta", 0.0, big)? {
            p.mirostat_eta = x;
        }
        if let Some(n) = check_i(self.min_keep, "min_keep", 0, n_vocab as i64)? {
            p.min_keep = n as u32;
        }
        p.seed = seed(self.seed);
        if let Some(order) = &self.samplers {
            let names = match order {
                OneOrMany::One(s) => s.split([';', ',']).map(str::to_string).collect(),
                OneOrMany::Many(v) => v.clone(),
            };
            if names.len() > 32 {
                return Err(ApiError::field("samplers", "at most 32 samplers"));
            }
            p.order = names
                .iter()
                .filter(|s| !s.trim().is_empty())
                .map(|s| {
                    SamplerKind::parse(s.trim()).ok_or_else(|| {
                        ApiError::field(
                            "samplers",
                            format!(
                                "unknown sampler {:?}",
                                s.chars().take(64).collect::<String>()
                            ),
                        )
                    })
                })
                .collect::<Result<_, _>>()?;
        }
        p.validate(n_vocab).map_err(sampling_error)?;
        Ok(p)
    }
}

/// The engine's seed for a request's: absent or negative draws one.
pub fn seed(s: Option<i64>) -> u32 {
    match s {
        None => RANDOM_SEED,
        Some(s) if s < 0 => RANDOM_SEED,
        Some(s) => {
            let v = (s as u64 & 0xffff_ffff) as u32;
            if v == RANDOM_SEED {
                v - 1
            } else {
                v
            }
        }
    }
}

pub fn sampling_error(e: SamplingError) -> ApiError {
    ApiError::field(e.name, format!("{} ({})", e.value, e.expected))
}

/// A logit bias as OpenAI (`{"15043": -100}`) or llama.cpp (`[[15043, -1.0]]`, `false` bans)
/// sends it.
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub enum LogitBiasField {
    Map(serde_json::Map<String, Json>),
    Pairs(Vec<(Json, Json)>),
}

/// Checked `(token, bias)` pairs: ids in the vocabulary, biases finite in [-100, 100] (or a
/// ban).
pub fn check_logit_bias(
    field: Option<LogitBiasField>,
    n_vocab: usize,
) -> Result<Vec<(u32, f32)>, ApiError> {
    let Some(field) = field else {
        return Ok(Vec::new());
    };
    let pairs: Vec<(Json, Json)> = match field {
        LogitBiasField::Map(m) => m.into_iter().map(|(k, v)| (Json::from(k), v)).collect(),
        LogitBiasField::Pairs(p) => p,
    };
    if pairs.len() > MAX_LOGIT_BIAS {
        return Err(ApiError::field(
            "logit_bias",
            format!(
                "{} entries; at most {MAX_LOGIT_BIAS} are allowed",
                pairs.len()
            ),
        ));
    }
    let mut out = Vec::with_capacity(pairs.len());
    for (k, v) in pairs {
        let id = match &k {
            Json::String(s) => s.trim().parse::<i64>().ok(),
            Json::Number(n) => n.as_i64(),
            _ => None,
        };
        let id = match id {
            Some(i) if i >= 0 && (i as u64) < n_vocab as u64 => i as u32,
            _ => {
                return Err(ApiError::field(
                    "logit_bias",
                    format!(
                        "token id {} is not in the vocabulary [0, {n_vocab})",
                        truncate(&k.to_string(), 64)
                    ),
                ))
            }
        };
        let bias = match &v {
            Json::Bool(false) => f32::NEG_INFINITY,
            Json::Number(n) => match n.as_f64() {
                Some(b) if b.is_finite() && (-100.0..=100.0).contains(&b) => b as f32,
                _ => {
                    return Err(ApiError::field(
                        "logit_bias",
                        format!("bias {n} for token {id} is not in [-100, 100]"),
                    ))
                }
            },
            _ => {
                return Err(ApiError::field(
                    "logit_bias",
                    format!("bias for token {id} must be a number"),
                ))
            }
        };
        out.push((id, bias));
    }
    Ok(out)
}

fn truncate(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}

/// A prompt as text or token ids (`[1, 2, 3]`), before tokenizing.
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub enum PromptPart {
    Text(String),
    Tokens(Vec<i64>),
}

/// `prompt` / `input`: one prompt or several.
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub enum PromptField {
    One(PromptPart),
    Many(Vec<PromptPart>),
    /// llama.cpp's mixed form: `["text", 12, 34, "more"]`.
    Mixed(Vec<Json>),
}

impl PromptField {
    /// The prompts, each tokenized (`add_special` when text) and checked against the vocabulary.
    pub fn tokenize(
        self,
        ready: &Ready,
        field: &str,
        add_special: bool,
    ) -> Result<Vec<Vec<u32>>, ApiError> {
        let parts = match self {
            PromptField::One(p) => vec![p],
            PromptField::Many(v) if v.is_empty() => {
                return Err(ApiError::field(field, "no prompt given"))
            }
            PromptField::Many(v) => {
                // An array of plain numbers is one prompt of token ids.
                v
            }
            PromptField::Mixed(v) => {
                let mut ids = Vec::new();
                for (i, item) in v.into_iter().enumerate() {
                    match item {
                        Json::String(s) => ids.extend(
                            ready
                                .tokenizer
                                .encode(&s, add_special && i == 0, true)
                                .into_iter()
                                .map(i64::from),
                        ),
                        Json::Number(n) => ids.push(n.as_i64().unwrap_or(-1)),
                        _ => {
                            return Err(ApiError::field(
                                field,
                                "a mixed prompt holds strings and token ids",
                            ))
                        }
                    }
                }
                vec![PromptPart::Tokens(ids)]
            }
        };
        if parts.len() > MAX_CHOICES.max(MAX_EMBED_INPUTS) {
            return Err(ApiError::field(field, "too many prompts"));
        }
        parts
            .into_iter()
            .map(|p| match p {
                PromptPart::Text(s) => Ok(ready.tokenizer.encode(&s, add_special, true)),
                PromptPart::Tokens(ids) => check_tokens(&ids, ready.info.n_vocab, field),
            })
            .collect()
    }
}

/// Token ids from a request, checked against the vocabulary.
pub fn check_tokens(ids: &[i64], n_vocab: usize, field: &str) -> Result<Vec<u32>, ApiError> {
    ids.iter()
        .enumerate()
        .map(|(i, &id)| {
            if id >= 0 && (id as u64) < n_vocab as u64 {
                Ok(id as u32)
            } else {
                Err(ApiError::field(
                    format!("{field}[{i}]"),
                    format!("token id {id} is out of range: the vocabulary has {n_vocab} tokens"),
                ))
            }
        })
        .collect()
}

/// Checks a prompt's length against the context and resolves `max_tokens`
/// (`None` = until the context is full).
pub fn check_lengths(
    n_prompt: usize,
    max_tokens: Option<i64>,
    n_ctx: usize,
    field: &str,
    allow_zero: bool,
) -> Result<Option<usize>, ApiError> {
    if n_prompt == 0 {
        return Err(ApiError::field("prompt", "the prompt is empty"));
    }
    if n_prompt >= n_ctx {
        return Err(ApiError::ContextExceeded {
            n_prompt,
            n_ctx,
            hint: "; shorten the prompt or start the server with a larger --ctx-size",
        });
    }
    let room = (n_ctx - n_prompt) as i64;
    match max_tokens {
        None => Ok(None),
        Some(m) if m == 0 && allow_zero => Ok(Some(0)),
        Some(m) if m < 1 => Err(ApiError::field(
            field,
            format!("{m} is out of range: expected at least {}", u8::from(!allow_zero)),
        )),
        Some(m) if m > room => Err(ApiError::field(
            field,
            format!(
                "{m} is more than the context leaves after the prompt: {n_prompt} prompt tokens, context {n_ctx}, at most {room} new tokens"
            ),
        )),
        Some(m) => Ok(Some(m as usize)),
    }
}

/// Runs `f` on a blocking thread (template rendering and tokenizing can take a while).
pub async fn blocking<T: Send + 'static>(
    ready: Arc<Ready>,
    f: impl FnOnce(&Ready) -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(move || f(&ready))
        .await
        .map_err(|_| ApiError::Internal {
            detail: "request preparation panicked".into(),
        })?
}

/// A finished generation.
pub struct Collected {
    pub text: String,
    pub tokens: Vec<TokenOut>,
    pub summary: Summary,
}

/// Waits for a generation to end.
pub async fn collect(mut rx: mpsc::UnboundedReceiver<Event>) -> Result<Collected, ApiError> {
    let mut text = String::new();
    let mut tokens = Vec::new();
    while let Some(ev) = rx.recv().await {
        match ev {
            Event::Token(t) => {
                text.push_str(&t.text);
                tokens.push(t);
            }
            Event::Done(s) => {
                text.push_str(&s.text);
                return Ok(Collected {
                    text,
                    tokens,
                    summary: *s,
                });
            }
            Event::Error(e) => return Err(e.into()),
        }
    }
    Err(ApiError::Internal {
        detail: "the engine stopped".into(),
    })
}

/// Submits several generations (choices); all or none are queued.
pub fn submit_all(
    ready: &Ready,
    params: Vec<GenParams>,
) -> Result<Vec<mpsc::UnboundedReceiver<Event>>, ApiError> {
    let mut out = Vec::with_capacity(params.len());
    for p in params {
        // Dropping receivers already made cancels them.
        let (_, rx) = ready.engine.submit(p)?;
        out.push(rx);
    }
    Ok(out)
}

/// The events of several generations as one stream, each tagged with its choice index.
pub fn merged_events(
    rxs: Vec<mpsc::UnboundedReceiver<Event>>,
) -> impl Stream<Item = (usize, Event)> + Send + 'static {
    let streams = rxs.into_iter().enumerate().map(|(i, rx)| {
        Box::pin(stream::unfold(rx, move |mut rx| async move {
            rx.recv().await.map(|ev| ((i, ev), rx))
        }))
    });
    stream::select_all(streams)
}

/// Unix seconds now.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The state's model, for handlers.
pub fn ready(st: &AppState) -> Result<Arc<Ready>, ApiError> {
    st.ready()
}

/// Text of a body that is not JSON-shaped bytes (for `Bytes` handlers).
pub fn body_bytes(b: &Bytes) -> &[u8] {
    b.as_ref()
}

/// Base64 (standard alphabet, padded) of `bytes`.
pub fn base64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for c in bytes.chunks(3) {
        let b = [c[0], *c.get(1).unwrap_or(&0), *c.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        out.push(A[(n >> 18) as usize & 63] as char);
        out.push(A[(n >> 12) as usize & 63] as char);
        out.push(if c.len() > 1 {
            A[(n >> 6) as usize & 63] as char
        } else {
            '='
        });
        out.push(if c.len() > 2 {
            A[n as usize & 63] as char
        } else {
            '='
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648_vectors() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    }

    #[test]
    fn type_errors_name_the_field() {
        #[derive(Deserialize, Debug)]
        struct R {
            #[allow(dead_code)]
            max_tokens: Option<i64>,
        }
        let e = parse_json::<R>(br#"{"max_tokens": "x"}"#).unwrap_err();
        assert_eq!(e.param(), Some("max_tokens"));
        let e = parse_json::<R>(br#"{"max_tokens": 9223372036854775808}"#).unwrap_err();
        assert_eq!(e.param(), Some("max_tokens"));
        assert!(matches!(
            parse_json::<R>(b"{"),
            Err(ApiError::InvalidJson { .. })
        ));
        assert!(matches!(
            parse_json::<R>(b""),
            Err(ApiError::InvalidJson { .. })
        ));
        assert!(matches!(
            parse_json::<R>(b"{} x"),
            Err(ApiError::InvalidJson { .. })
        ));
        let deep = "[".repeat(10_000);
        assert!(matches!(
            parse_json::<Json>(deep.as_bytes()),
            Err(ApiError::InvalidJson { .. })
        ));
    }

    #[test]
    fn lengths_are_checked_against_the_context() {
        assert_eq!(
            check_lengths(10, None, 100, "max_tokens", false).unwrap(),
            None
        );
        assert_eq!(
            check_lengths(10, Some(90), 100, "max_tokens", false).unwrap(),
            Some(90)
        );
        assert!(check_lengths(10, Some(91), 100, "max_tokens", false).is_err());
        assert!(check_lengths(10, Some(0), 100, "max_tokens", false).is_err());
        assert!(check_lengths(10, Some(-1), 100, "max_tokens", false).is_err());
        assert!(check_lengths(10, Some(i64::MAX), 100, "max_tokens", false).is_err());
        assert!(matches!(
            check_lengths(100, None, 100, "max_tokens", false),
            Err(ApiError::ContextExceeded { .. })
        ));
    }

    #[test]
    fn seeds_map_to_the_engine_range() {
        assert_eq!(seed(None), RANDOM_SEED);
        assert_eq!(seed(Some(-1)), RANDOM_SEED);
        assert_eq!(seed(Some(42)), 42);
        assert_ne!(seed(Some(0xffff_ffff)), RANDOM_SEED);
    }
}
