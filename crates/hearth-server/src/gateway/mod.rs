//! The overflow gateway: `hearth serve --upstream URL[,URL...]` and `--gateway-only`.
//!
//! `/v1/chat/completions`, `/v1/completions` and `/v1/embeddings` go to an upstream
//! OpenAI-compatible server (hearth, llama-server, vLLM, Ollama's `/v1`) when
//!
//! - the server is `--gateway-only` (it loads no model),
//! - the request names a model this server does not serve, or its model is still loading,
//! - the prompt and `max_tokens` do not fit the local slot context, or
//! - the local admission queue is full (instead of answering 503).
//!
//! Everything else is served locally. A background task per upstream polls `/health`
//! (falling back to `/v1/models` where there is none) and learns the models each upstream
//! lists in `/v1/models`; a request goes to the healthy upstream serving its model (any
//! healthy one when none lists it) with the fewest requests in flight, ties round-robin
//! ([`choose`]). A connection failure before the response's headers (refused, reset,
//! closed) marks the upstream down and tries the next one, and so does a 503 (busy or
//! loading); nothing is retried once a byte of the response went to the client. Responses
//! are relayed as they arrive (SSE chunk by chunk); a stream the upstream breaks off ends
//! with an OpenAI-shaped SSE error event.
//!
//! Upstreams get `Authorization: Bearer KEY` with the key configured for them
//! (`--upstream-key URL=KEY`); the client's own key is never passed on unless
//! [`GatewayConfig::forward_client_key`] is set. Each forwarded request carries the
//! gateway's id in `x-hearth-via`, so gateways that forward to each other never loop.

mod choose;
mod upstream;

#[cfg(test)]
mod tests;

use std::fmt::Write as _;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, Method, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use serde_json::{json, Value as Json};

pub use choose::{choose, Candidate};
pub use upstream::{GatewayConfigError, UpstreamSpec};
use upstream::{SendError, Timeouts};

use crate::common::check_model;
use crate::error::{ApiError, Flavor};
use crate::server::AppState;

/// The header listing the gateways a request passed through.
pub const VIA_HEADER: &str = "x-hearth-via";
/// Most gateways a request may pass through.
const MAX_HOPS: usize = 8;
/// Most models kept per upstream, and the largest `/v1/models` answer read.
const MAX_MODELS: usize = 1024;
const MAX_MODELS_BODY: usize = 1 << 20;

/// How the gateway forwards (`hearth serve --upstream ...`).
#[derive(Clone, Debug)]
pub struct GatewayConfig {
    /// No upstreams: no gateway.
    pub upstreams: Vec<UpstreamSpec>,
    /// Serve no model; every request goes upstream.
    pub only: bool,
    /// Time between health checks of each upstream.
    pub health_interval: Duration,
    pub connect_timeout: Duration,
    /// Time allowed for an upstream's response headers (a generation that is not streamed
    /// sends them when it ends).
    pub response_timeout: Duration,
    /// Pass the client's `Authorization` / `X-Api-Key` to upstreams that have no key
    /// configured (by default the client's key is never forwarded).
    pub forward_client_key: bool,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            upstreams: Vec::new(),
            only: false,
            health_interval: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(5),
            response_timeout: Duration::from_secs(600),
            forward_client_key: false,
        }
    }
}

impl GatewayConfig {
    /// Whether there is anything to forward to.
    pub fn enabled(&self) -> bool {
        !self.upstreams.is_empty()
    }

    /// `--upstream-health-interval SECS`, checked.
    pub fn interval_from_secs(secs: f64) -> Result<Duration, GatewayConfigError> {
        if secs.is_finite() && (0.05..=3600.0).contains(&secs) {
            Ok(Duration::from_secs_f64(secs))
        } else {
            Err(GatewayConfigError::BadInterval { secs })
        }
    }
}

/// An endpoint the gateway forwards.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint {
    Chat,
    Completions,
    Embeddings,
}

impl Endpoint {
    /// The path upstream (whatever alias the client used).
    pub fn path(self) -> &'static str {
        match self {
            Endpoint::Chat => "/v1/chat/completions",
            Endpoint::Completions => "/v1/completions",
            Endpoint::Embeddings => "/v1/embeddings",
        }
    }
}

/// Why a request went upstream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Reason {
    GatewayOnly,
    Model,
    Loading,
    Context,
    Queue,
}

impl Reason {
    const ALL: [Reason; 5] = [
        Reason::GatewayOnly,
        Reason::Model,
        Reason::Loading,
        Reason::Context,
        Reason::Queue,
    ];

    fn label(self) -> &'static str {
        match self {
            Reason::GatewayOnly => "gateway_only",
            Reason::Model => "model",
            Reason::Loading => "loading",
            Reason::Context => "context",
            Reason::Queue => "queue",
        }
    }
}

/// What the gateway knows about an upstream.
struct UpState {
    healthy: bool,
    /// Whether a health check has finished (for logging the first state).
    checked: bool,
    outstanding: usize,
    /// The `data` entries of its `/v1/models` (each with a string `id`).
    models: Vec<Json>,
}

impl UpState {
    fn serves(&self, model: &str) -> bool {
        let base = model.strip_suffix(":latest").unwrap_or(model);
        self.models
            .iter()
            .any(|m| m["id"].as_str().is_some_and(|id| id == model || id == base))
    }
}

struct Pool {
    ups: Vec<UpState>,
    /// Where the round-robin among equally loaded upstreams goes on.
    cursor: usize,
}

/// Attempts per upstream, by outcome.
#[derive(Default)]
struct Outcomes {
    ok: AtomicU64,
    retry: AtomicU64,
    error: AtomicU64,
}

/// The gateway of one server: upstreams, their state, and the routing counters.
pub struct Gateway {
    cfg: GatewayConfig,
    /// This server's id in `x-hearth-via`.
    id: String,
    pool: Mutex<Pool>,
    outcomes: Vec<Outcomes>,
    local: AtomicU64,
    forwarded: [AtomicU64; 5],
    unavailable: AtomicU64,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

/// A request in flight to upstream `i`; dropping it (with the relayed body) ends it.
struct Outstanding {
    gw: Arc<Gateway>,
    i: usize,
}

impl Drop for Outstanding {
    fn drop(&mut self) {
        let mut pool = self.gw.lock();
        pool.ups[self.i].outstanding = pool.ups[self.i].outstanding.saturating_sub(1);
    }
}

/// Forwarding did not produce a response.
struct Failure {
    error: ApiError,
    /// Some upstream was tried.
    attempted: bool,
}

/// A unique-enough id for this process (FNV-1a of the pid, the time and an address).
fn instance_id() -> String {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let local = 0u8;
    let key = format!("{}:{nanos}:{:p}", std::process::id(), &local);
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for b in key.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// The `model` field of a JSON body, if it is a non-empty string.
fn peek_model(body: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Peek {
        model: Option<Json>,
    }
    let p: Peek = serde_json::from_slice(body).ok()?;
    let m = p.model?;
    let m = m.as_str()?.trim();
    (!m.is_empty()).then(|| m.to_string())
}

/// Whether a local refusal is one an upstream may not share.
fn overflow_reason(e: &ApiError) -> Option<Reason> {
    match e {
        ApiError::QueueFull { .. } => Some(Reason::Queue),
        ApiError::ModelNotFound { .. } => Some(Reason::Model),
        ApiError::Loading | ApiError::LoadFailed { .. } => Some(Reason::Loading),
        e if exceeds_context(e) => Some(Reason::Context),
        _ => None,
    }
}

/// The prompt, or the prompt and `max_tokens`, do not fit the local slot context.
fn exceeds_context(e: &ApiError) -> bool {
    match e {
        ApiError::ContextExceeded { .. } => true,
        // `common::check_lengths`'s refusal of a max_tokens larger than the room left.
        ApiError::InvalidField { field, message } => {
            matches!(field.as_str(), "max_tokens" | "max_completion_tokens")
                && message.contains("more than the context leaves")
        }
        _ => false,
    }
}

/// Hop-by-hop headers, and headers this server sets itself: not relayed from upstreams.
fn relayed(name: &header::HeaderName) -> bool {
    let n = name.as_str();
    !(matches!(
        n,
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "transfer-encoding"
            | "te"
            | "trailer"
            | "upgrade"
            | "proxy-authenticate"
            | "vary"
    ) || n.starts_with("access-control-"))
}

fn sse_error(e: &ApiError) -> Bytes {
    let body = json!({"error": {"message": e.to_string(), "type": e.kind(), "param": null, "code": e.code()}});
    Bytes::from(format!("data: {body}\n\n"))
}

impl Gateway {
    /// A gateway over `cfg.upstreams`, all taken as healthy until checked. Call
    /// [`Gateway::start`] inside a tokio runtime to run the health checks.
    pub fn new(cfg: GatewayConfig) -> Arc<Gateway> {
        let n = cfg.upstreams.len();
        Arc::new(Gateway {
            id: instance_id(),
            pool: Mutex::new(Pool {
                ups: (0..n)
                    .map(|_| UpState {
                        healthy: true,
                        checked: false,
                        outstanding: 0,
                        models: Vec::new(),
                    })
                    .collect(),
                cursor: 0,
            }),
            outcomes: (0..n).map(|_| Outcomes::default()).collect(),
            local: AtomicU64::new(0),
            forwarded: Default::default(),
            unavailable: AtomicU64::new(0),
            tasks: Mutex::new(Vec::new()),
            cfg,
        })
    }

    /// Starts one health-check task per upstream.
    pub fn start(self: &Arc<Self>) {
        let mut tasks = self.tasks.lock().unwrap_or_else(|e| e.into_inner());
        for i in 0..self.cfg.upstreams.len() {
            let gw = self.clone();
            tasks.push(tokio::spawn(async move {
                let mut tick = tokio::time::interval(gw.cfg.health_interval);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tick.tick().await;
                    gw.check(i).await;
                }
            }));
        }
    }

    /// Stops the health checks.
    pub fn stop(&self) {
        for t in self
            .tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
        {
            t.abort();
        }
    }

    /// `--gateway-only`.
    pub fn only(&self) -> bool {
        self.cfg.only
    }

    pub fn config(&self) -> &GatewayConfig {
        &self.cfg
    }

    fn lock(&self) -> MutexGuard<'_, Pool> {
        self.pool.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether upstream `i` is taken as healthy.
    pub fn is_healthy(&self, i: usize) -> bool {
        self.lock().ups.get(i).is_some_and(|u| u.healthy)
    }

    /// Chooses an upstream for `model` among those not yet `tried`, and counts the request
    /// as outstanding there.
    fn pick(self: &Arc<Self>, model: Option<&str>, tried: &[bool]) -> Option<Outstanding> {
        let mut pool = self.lock();
        let cands: Vec<Candidate> = pool
            .ups
            .iter()
            .zip(tried)
            .map(|(u, &tried)| Candidate {
                healthy: u.healthy,
                serves: model.is_none_or(|m| u.serves(m)),
                outstanding: u.outstanding,
                tried,
            })
            .collect();
        let i = choose(&cands, pool.cursor)?;
        pool.cursor = i + 1;
        pool.ups[i].outstanding += 1;
        Some(Outstanding {
            gw: self.clone(),
            i,
        })
    }

    fn set_health(&self, i: usize, healthy: bool, why: &str) {
        let mut pool = self.lock();
        let up = &mut pool.ups[i];
        let changed = up.healthy != healthy || !up.checked;
        up.healthy = healthy;
        up.checked = true;
        if changed {
            let url = &self.cfg.upstreams[i].url;
            if healthy {
                let ids: Vec<&str> = up.models.iter().filter_map(|m| m["id"].as_str()).collect();
                eprintln!("gateway: upstream {url} is up (models: {})", ids.join(", "));
            } else {
                eprintln!("gateway: upstream {url} is down: {why}");
            }
        }
    }

    /// One health check of upstream `i`.
    async fn check(&self, i: usize) {
        let spec = &self.cfg.upstreams[i];
        let wait = self
            .cfg
            .health_interval
            .clamp(Duration::from_secs(1), Duration::from_secs(10));
        let t = Timeouts {
            connect: self.cfg.connect_timeout.min(wait),
            response: wait,
        };
        let (health, models) = futures_util::future::join(
            upstream::get(spec, "/health", 64 << 10, t),
            upstream::get(spec, "/v1/models", MAX_MODELS_BODY, t),
        )
        .await;
        let listed = match &models {
            Ok((s, body)) if s.is_success() => serde_json::from_slice::<Json>(body)
                .ok()
                .and_then(|j| j.get("data").and_then(Json::as_array).cloned())
                .map(|data| {
                    data.into_iter()
                        .filter(|m| m["id"].is_string())
                        .take(MAX_MODELS)
                        .collect::<Vec<_>>()
                }),
            _ => None,
        };
        let models_refused = matches!(&models, Ok((s, _)) if matches!(*s, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN));
        let (healthy, why) = match (&health, &models) {
            (Ok((s, _)), _) if s.is_success() && models_refused => {
                (false, "/v1/models refused the key".to_string())
            }
            (Ok((s, _)), _) if s.is_success() => (true, String::new()),
            // No /health (Ollama, some proxies): /v1/models answering is the sign of life.
            (Ok((s, _)), Ok((ms, _)))
                if matches!(*s, StatusCode::NOT_FOUND | StatusCode::METHOD_NOT_ALLOWED) =>
            {
                (ms.is_success(), format!("/v1/models answered {ms}"))
            }
            (Ok((s, _)), Err(e))
                if matches!(*s, StatusCode::NOT_FOUND | StatusCode::METHOD_NOT_ALLOWED) =>
            {
                (false, format!("/v1/models: {e}"))
            }
            (Ok((s, _)), _) => (false, format!("/health answered {s}")),
            (Err(e), _) => (false, format!("/health: {e}")),
        };
        if let Some(list) = listed {
            self.lock().ups[i].models = list;
        }
        self.set_health(i, healthy, &why);
    }

    /// Whether this request may still be forwarded (it has not passed here already, nor
    /// through too many gateways).
    fn may_forward(&self, headers: &HeaderMap) -> bool {
        let mut n = 0;
        for v in headers.get_all(VIA_HEADER) {
            for hop in v.to_str().unwrap_or("").split(',').map(str::trim) {
                if hop == self.id {
                    return false;
                }
                n += usize::from(!hop.is_empty());
            }
        }
        n < MAX_HOPS
    }

    /// Serves an OpenAI request: locally through `local`, or upstream (see the module doc).
    pub async fn route<F, Fut>(
        self: &Arc<Self>,
        st: AppState,
        ep: Endpoint,
        headers: HeaderMap,
        body: Bytes,
        local: F,
    ) -> Response
    where
        F: FnOnce(AppState, Bytes) -> Fut,
        Fut: Future<Output = Result<Response, ApiError>>,
    {
        let model = peek_model(&body);
        let may_forward = self.may_forward(&headers);
        if self.cfg.only {
            if !may_forward {
                return ApiError::UpstreamUnavailable {
                    detail: ": the request already passed through this gateway (a forwarding loop)"
                        .into(),
                }
                .respond(Flavor::OpenAi);
            }
            return self
                .forward_or_refuse(
                    Reason::GatewayOnly,
                    ep,
                    &headers,
                    body,
                    model.as_deref(),
                    None,
                )
                .await;
        }
        // A model this server does not serve is not validated here: the upstream may accept
        // what this server would not.
        let early = match st.ready() {
            Err(ApiError::Loading) | Err(ApiError::LoadFailed { .. }) => Some(Reason::Loading),
            Ok(ready) => matches!(
                check_model(model.as_deref(), &ready.info),
                Err(ApiError::ModelNotFound { .. })
            )
            .then_some(Reason::Model),
            Err(_) => None,
        };
        if let (Some(reason), true) = (early, may_forward) {
            return self
                .forward_or_refuse(reason, ep, &headers, body, model.as_deref(), None)
                .await;
        }
        match local(st, body.clone()).await {
            Ok(resp) => {
                self.local.fetch_add(1, Ordering::Relaxed);
                resp
            }
            Err(e) => match overflow_reason(&e) {
                Some(reason) if may_forward => {
                    self.forward_or_refuse(reason, ep, &headers, body, model.as_deref(), Some(e))
                        .await
                }
                _ => e.respond(Flavor::OpenAi),
            },
        }
    }

    /// Forwards; when no upstream answers, the local refusal (if no upstream could be
    /// tried) or the gateway's error.
    async fn forward_or_refuse(
        self: &Arc<Self>,
        reason: Reason,
        ep: Endpoint,
        headers: &HeaderMap,
        body: Bytes,
        model: Option<&str>,
        local_err: Option<ApiError>,
    ) -> Response {
        self.forwarded[reason as usize].fetch_add(1, Ordering::Relaxed);
        match self.forward(ep, headers, body, model).await {
            Ok(resp) => resp,
            Err(f) => {
                self.unavailable.fetch_add(1, Ordering::Relaxed);
                match local_err {
                    Some(local) if !f.attempted => local.respond(Flavor::OpenAi),
                    _ => f.error.respond(Flavor::OpenAi),
                }
            }
        }
    }

    fn upstream_request(
        &self,
        spec: &UpstreamSpec,
        ep: Endpoint,
        client: &HeaderMap,
        body: Bytes,
    ) -> Result<Request<Full<Bytes>>, SendError> {
        let mut b = upstream::request(spec, Method::POST, ep.path(), true);
        if let Some(a) = client.get(header::ACCEPT) {
            b = b.header(header::ACCEPT, a);
        }
        let mut via: Vec<&str> = client
            .get_all(VIA_HEADER)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|h| !h.is_empty())
            .collect();
        via.push(&self.id);
        b = b.header(VIA_HEADER, via.join(", "));
        if spec.key.is_none() && self.cfg.forward_client_key {
            for h in [header::AUTHORIZATION.as_str(), "x-api-key"] {
                if let Some(v) = client.get(h) {
                    b = b.header(h, v);
                }
            }
        }
        b.body(Full::new(body))
            .map_err(|e| SendError::Http(e.to_string()))
    }

    /// Sends the request to upstreams in turn until one answers (see the module doc).
    async fn forward(
        self: &Arc<Self>,
        ep: Endpoint,
        headers: &HeaderMap,
        body: Bytes,
        model: Option<&str>,
    ) -> Result<Response, Failure> {
        let t = Timeouts {
            connect: self.cfg.connect_timeout,
            response: self.cfg.response_timeout,
        };
        let mut tried = vec![false; self.cfg.upstreams.len()];
        // The last failed attempt: a retry if another upstream is tried, else an error.
        let mut failed: Option<usize> = None;
        let mut busy: Option<Response> = None;
        let mut errors: Vec<String> = Vec::new();
        while let Some(slot) = self.pick(model, &tried) {
            let i = slot.i;
            if let Some(f) = failed.take() {
                self.outcomes[f].retry.fetch_add(1, Ordering::Relaxed);
            }
            tried[i] = true;
            let spec = &self.cfg.upstreams[i];
            let sent = match self.upstream_request(spec, ep, headers, body.clone()) {
                Ok(req) => upstream::send(spec, req, t).await,
                Err(e) => Err(e),
            };
            match sent {
                Ok(resp) if resp.status() == StatusCode::SERVICE_UNAVAILABLE => {
                    // Busy or loading: it did not take the request; another one may.
                    errors.push(format!("{} is busy (503)", spec.url));
                    failed = Some(i);
                    busy = Some(self.relay(resp, slot));
                }
                Ok(resp) => {
                    self.outcomes[i].ok.fetch_add(1, Ordering::Relaxed);
                    return Ok(self.relay(resp, slot));
                }
                Err(SendError::Timeout(d)) => {
                    // It may still be working on the request: not sent elsewhere.
                    self.set_health(i, false, "no response in time");
                    self.outcomes[i].error.fetch_add(1, Ordering::Relaxed);
                    return Err(Failure {
                        error: ApiError::UpstreamTimeout {
                            upstream: spec.url.clone(),
                            secs: d.as_secs(),
                        },
                        attempted: true,
                    });
                }
                Err(e) => {
                    self.set_health(i, false, &e.to_string());
                    errors.push(format!("{}: {e}", spec.url));
                    failed = Some(i);
                }
            }
        }
        if let Some(f) = failed {
            self.outcomes[f].error.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(resp) = busy {
            return Ok(resp);
        }
        if errors.is_empty() {
            let detail = match model {
                Some(m) => format!(" for model {m:?}: no healthy upstream"),
                None => ": no healthy upstream".to_string(),
            };
            return Err(Failure {
                error: ApiError::UpstreamUnavailable { detail },
                attempted: false,
            });
        }
        Err(Failure {
            error: ApiError::UpstreamFailed {
                detail: errors.join("; "),
            },
            attempted: true,
        })
    }

    /// The upstream's response for the client: status and headers as they came, the body
    /// relayed frame by frame while `slot` stays outstanding.
    fn relay(
        self: &Arc<Self>,
        resp: axum::http::Response<Incoming>,
        slot: Outstanding,
    ) -> Response {
        let (parts, incoming) = resp.into_parts();
        let sse = parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim_start().starts_with("text/event-stream"));
        struct Relay {
            body: Incoming,
            slot: Outstanding,
            sse: bool,
            done: bool,
        }
        let relay = Relay {
            body: incoming,
            slot,
            sse,
            done: false,
        };
        let stream = futures_util::stream::unfold(relay, |mut r| async move {
            if r.done {
                return None;
            }
            loop {
                match r.body.frame().await {
                    None => return None,
                    Some(Ok(frame)) => match frame.into_data() {
                        Ok(d) if !d.is_empty() => return Some((Ok(d), r)),
                        _ => continue,
                    },
                    Some(Err(e)) => {
                        r.done = true;
                        let gw = &r.slot.gw;
                        let i = r.slot.i;
                        let url = &gw.cfg.upstreams[i].url;
                        let why = upstream::describe(&e);
                        gw.set_health(i, false, &format!("the response broke off: {why}"));
                        gw.outcomes[i].error.fetch_add(1, Ordering::Relaxed);
                        if r.sse {
                            let e = ApiError::UpstreamFailed {
                                detail: format!("{url} broke off the stream: {why}"),
                            };
                            // A blank line first ends any event the upstream left half sent.
                            let mut b = b"\n\n".to_vec();
                            b.extend_from_slice(&sse_error(&e));
                            return Some((Ok(Bytes::from(b)), r));
                        }
                        return Some((Err(std::io::Error::other(why)), r));
                    }
                }
            }
        });
        let mut out = Response::new(Body::from_stream(stream));
        *out.status_mut() = parts.status;
        for (name, value) in &parts.headers {
            if relayed(name) && !(sse && name == header::CONTENT_LENGTH) {
                out.headers_mut().append(name, value.clone());
            }
        }
        out
    }

    /// Appends the healthy upstreams' models to `data` (`/v1/models`), once per id.
    pub fn merge_models(&self, data: &mut Vec<Json>) {
        let pool = self.lock();
        for up in pool.ups.iter().filter(|u| u.healthy) {
            for m in &up.models {
                if !data.iter().any(|d| d["id"] == m["id"]) {
                    data.push(m.clone());
                }
            }
        }
    }

    /// The routing counters and upstream gauges in Prometheus text.
    pub fn render_metrics(&self, s: &mut String) {
        let help = |s: &mut String, name: &str, kind: &str, text: &str| {
            let _ = writeln!(s, "# HELP hearth_{name} {text}");
            let _ = writeln!(s, "# TYPE hearth_{name} {kind}");
        };
        help(
            s,
            "gateway_requests_total",
            "counter",
            "Attempts to forward a request upstream: ok = the upstream's answer was relayed, retry = failed before any byte and another upstream was tried, error = failed with none left or broke off.",
        );
        for (spec, o) in self.cfg.upstreams.iter().zip(&self.outcomes) {
            for (outcome, n) in [("ok", &o.ok), ("retry", &o.retry), ("error", &o.error)] {
                let _ = writeln!(
                    s,
                    "hearth_gateway_requests_total{{upstream=\"{}\",outcome=\"{outcome}\"}} {}",
                    spec.url,
                    n.load(Ordering::Relaxed)
                );
            }
        }
        help(
            s,
            "gateway_local_total",
            "counter",
            "OpenAI requests served by the local model.",
        );
        let _ = writeln!(
            s,
            "hearth_gateway_local_total {}",
            self.local.load(Ordering::Relaxed)
        );
        help(
            s,
            "gateway_forwarded_total",
            "counter",
            "Requests sent upstream, by reason.",
        );
        for r in Reason::ALL {
            let _ = writeln!(
                s,
                "hearth_gateway_forwarded_total{{reason=\"{}\"}} {}",
                r.label(),
                self.forwarded[r as usize].load(Ordering::Relaxed)
            );
        }
        help(
            s,
            "gateway_unavailable_total",
            "counter",
            "Requests no upstream answered.",
        );
        let _ = writeln!(
            s,
            "hearth_gateway_unavailable_total {}",
            self.unavailable.load(Ordering::Relaxed)
        );
        let pool = self.lock();
        help(
            s,
            "gateway_upstream_healthy",
            "gauge",
            "1 if the upstream passed its last health check and has not failed since.",
        );
        for (spec, up) in self.cfg.upstreams.iter().zip(&pool.ups) {
            let _ = writeln!(
                s,
                "hearth_gateway_upstream_healthy{{upstream=\"{}\"}} {}",
                spec.url,
                u8::from(up.healthy)
            );
        }
        help(
            s,
            "gateway_upstream_outstanding",
            "gauge",
            "Requests in flight to the upstream.",
        );
        for (spec, up) in self.cfg.upstreams.iter().zip(&pool.ups) {
            let _ = writeln!(
                s,
                "hearth_gateway_upstream_outstanding{{upstream=\"{}\"}} {}",
                spec.url, up.outstanding
            );
        }
    }
}

/// `/health`: always ok on a gateway that serves no model, else the local model's state.
pub async fn health(State(st): State<AppState>) -> Response {
    if st.gateway.as_ref().is_some_and(|g| g.only()) {
        return axum::Json(json!({"status": "ok"})).into_response();
    }
    crate::native::health(State(st)).await
}

/// `/metrics`: the server's metrics and the gateway's.
pub async fn metrics(State(st): State<AppState>) -> Response {
    let mut text = st.metrics.render();
    if let Some(gw) = &st.gateway {
        gw.render_metrics(&mut text);
    }
    let mut resp = text.into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    resp
}
