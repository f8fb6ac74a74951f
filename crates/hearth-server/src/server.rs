//! The HTTP server: configuration, model loading, routes, the request gate (CORS, API key,
//! body limit and read timeout, panic isolation) and the accept loop with graceful shutdown.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use futures_util::FutureExt;
use hearth_gguf::MappedGguf;
use hearth_model::{KvType, Model};
use hearth_tokenizer::template::ChatTemplate;
use hearth_tokenizer::Tokenizer;
use http_body_util::BodyExt;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use serde_json::{json, Value as Json};

use crate::engine::{Engine, EngineConfig};
use crate::error::{ApiError, Flavor};
use crate::gateway::{Gateway, GatewayConfig};
use crate::metrics::Metrics;
use crate::{gateway, native, ollama, openai};

/// Everything `hearth serve` can be told.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    pub model_path: PathBuf,
    /// The name clients use for the model (default: the file name without `.gguf`).
    pub alias: Option<String>,
    pub host: String,
    /// 0 picks a free port.
    pub port: u16,
    /// Slots (`--parallel`).
    pub n_slots: usize,
    /// Context of each slot (default: the model's training context, at most 4096).
    pub n_ctx: Option<usize>,
    pub max_queue: usize,
    pub threads: Option<usize>,
    pub api_key: Option<String>,
    /// An allowed browser origin (`*` for any).
    pub cors: Option<String>,
    /// Largest request body in bytes.
    pub max_body: usize,
    /// Time allowed for a request's headers and, separately, its body.
    pub read_timeout: Duration,
    /// How long running generations may continue after SIGTERM / Ctrl-C.
    pub shutdown_grace: Duration,
    /// Most prompt tokens evaluated per step.
    pub prefill_chunk: usize,
    /// How the model file is loaded (`--no-mmap`, `--mlock`).
    pub load_mode: hearth_gguf::LoadMode,
    /// Upstream servers for requests this one cannot take (`--upstream`, `--gateway-only`).
    pub gateway: GatewayConfig,
}

impl ServerConfig {
    /// Defaults for `model_path`.
    pub fn new(model_path: PathBuf) -> ServerConfig {
        ServerConfig {
            model_path,
            alias: None,
            host: "127.0.0.1".into(),
            port: 8080,
            n_slots: 4,
            n_ctx: None,
            max_queue: 64,
            threads: None,
            api_key: None,
            cors: None,
            max_body: 4 << 20,
            read_timeout: Duration::from_secs(10),
            shutdown_grace: Duration::from_secs(10),
            prefill_chunk: 256,
            load_mode: hearth_gguf::LoadMode::default(),
            gateway: GatewayConfig::default(),
        }
    }
}

/// Why the server could not run.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("binding {addr}: {source}")]
    Bind {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("starting the async runtime: {0}")]
    Runtime(std::io::Error),
    #[error("invalid configuration: {0}")]
    Config(String),
}

/// What the APIs report about the model.
#[derive(Clone, Debug)]
pub struct ModelInfo {
    pub alias: String,
    pub path: PathBuf,
    pub file_size: u64,
    pub modified: SystemTime,
    pub arch: String,
    pub n_vocab: usize,
    pub n_ctx_train: usize,
    pub n_embd: usize,
    pub n_params: u64,
    /// `general.file_type` as llama.cpp names it (`Q4_K_M`).
    pub quant: String,
    /// A stable identifier of the file (not a content hash).
    pub digest: String,
    /// Scalar metadata (`general.*`, `<arch>.*`), for `/api/show`.
    pub metadata: serde_json::Map<String, Json>,
}

/// The loaded model, its tokenizer and template, and the engine running it.
pub struct Ready {
    pub engine: Engine,
    pub tokenizer: Arc<Tokenizer>,
    pub template: ChatTemplate,
    pub info: ModelInfo,
    /// Context of each slot.
    pub n_ctx: usize,
}

/// State shared by the handlers.
#[derive(Clone)]
pub struct AppState {
    pub cfg: Arc<ServerConfig>,
    pub metrics: Arc<Metrics>,
    ready: Arc<OnceLock<Result<Arc<Ready>, String>>>,
    pub started: Instant,
    /// Forwarding to upstreams, when configured.
    pub gateway: Option<Arc<Gateway>>,
}

impl AppState {
    /// State whose model is not loaded (yet).
    pub fn new(
        cfg: Arc<ServerConfig>,
        metrics: Arc<Metrics>,
        gateway: Option<Arc<Gateway>>,
    ) -> Self {
        AppState {
            cfg,
            metrics,
            ready: Arc::new(OnceLock::new()),
            started: Instant::now(),
            gateway,
        }
    }

    /// The model, or 503 while it loads.
    pub fn ready(&self) -> Result<Arc<Ready>, ApiError> {
        match self.ready.get() {
            None if self.gateway.as_ref().is_some_and(|g| g.only()) => Err(ApiError::NoLocalModel),
            None => Err(ApiError::Loading),
            Some(Ok(r)) => Ok(r.clone()),
            Some(Err(e)) => Err(ApiError::LoadFailed { detail: e.clone() }),
        }
    }
}

/// Loads the model and starts the engine (on the calling thread).
fn load(cfg: &ServerConfig, metrics: Arc<Metrics>) -> Result<Ready, String> {
    let path = &cfg.model_path;
    let gguf = Arc::new(
        MappedGguf::open_with(path, cfg.load_mode)
            .map_err(|e| format!("reading {}: {e}", path.display()))?,
    );
    let meta = &gguf.file().metadata;
    let tokenizer = Arc::new(
        Tokenizer::from_metadata(meta).map_err(|e| format!("loading the tokenizer: {e}"))?,
    );
    let mut model =
        Model::load(gguf.clone()).map_err(|e| format!("loading {}: {e}", path.display()))?;
    if let Some(n) = cfg.threads {
        model.set_threads(n);
    }
    let text = |id: Option<u32>| {
        id.and_then(|i| tokenizer.token_text(i))
            .unwrap_or_default()
            .to_string()
    };
    let template =
        ChatTemplate::for_model(meta, None, &text(tokenizer.bos()), &text(tokenizer.eos()))
            .map_err(|e| format!("chat template: {e}"))?;
    let mc = model.config();
    let n_ctx = cfg.n_ctx.unwrap_or_else(|| mc.n_ctx_train.clamp(2, 4096));
    let file_md = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let arch = mc.arch.name().to_string();
    let mut metadata = serde_json::Map::new();
    for (k, v) in meta.iter() {
        if k.starts_with("tokenizer.") {
            continue;
        }
        let j = match v {
            hearth_gguf::Value::String(s) => Json::from(s.clone()),
            hearth_gguf::Value::Bool(b) => Json::from(*b),
            hearth_gguf::Value::Array(_) => continue,
            other => match (other.as_integer(), other.as_f64()) {
                (Some(i), _) => i64::try_from(i).map(Json::from).unwrap_or(Json::Null),
                (None, Some(f)) => json!(f),
                _ => continue,
            },
        };
        metadata.insert(k.to_string(), j);
    }
    let quant = meta
        .get("general.file_type")
        .and_then(|v| v.as_integer())
        .and_then(|t| u32::try_from(t).ok())
        .and_then(hearth_gguf::file_type_name)
        .unwrap_or("unknown")
        .to_string();
    let alias = cfg.alias.clone().unwrap_or_else(|| {
        path.file_name()
            .map(|f| f.to_string_lossy().trim_end_matches(".gguf").to_string())
            .unwrap_or_else(|| "model".into())
    });
    // A stable 256-bit identifier from the file's name, size and time (FNV-1a, 4 lanes).
    let modified = file_md.modified().unwrap_or(SystemTime::UNIX_EPOCH);
    let key = format!("{}:{}:{:?}", path.display(), file_md.len(), modified);
    let digest: String = (0u64..4)
        .map(|lane| {
            let mut h = 0xcbf2_9ce4_8422_2325u64 ^ lane;
            for b in key.bytes() {
                h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
            }
            format!("{h:016x}")
        })
        .collect();
    let info = ModelInfo {
        alias,
        path: path.clone(),
        file_size: file_md.len(),
        modified,
        arch,
        n_vocab: model.n_vocab(),
        n_ctx_train: mc.n_ctx_train,
        n_embd: mc.n_embd,
        n_params: gguf.file().n_elements(),
        quant,
        digest,
        metadata,
    };
    let engine = Engine::start(
        model,
        tokenizer.clone(),
        EngineConfig {
            n_slots: cfg.n_slots,
            n_ctx,
            kv_type: KvType::F16,
            max_queue: cfg.max_queue,
            prefill_chunk: cfg.prefill_chunk,
        },
        metrics,
    )
    .map_err(|e| e.to_string())?;
    Ok(Ready {
        engine,
        tokenizer,
        template,
        info,
        n_ctx,
    })
}

/// The routes of every API.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/health", get(gateway::health))
        .route("/v1/health", get(gateway::health))
        .route("/metrics", get(gateway::metrics))
        .route("/slots", get(native::slots))
        .route("/props", get(native::props))
        .route("/completion", post(native::completion))
        .route("/completions", post(native::completion))
        .route("/tokenize", post(native::tokenize))
        .route("/detokenize", post(native::detokenize))
        .route("/apply-template", post(native::apply_template))
        .route("/models", get(openai::models))
        .route("/v1/models", get(openai::models))
        .route("/v1/chat/completions", post(openai::chat))
        .route("/chat/completions", post(openai::chat))
        .route("/v1/completions", post(openai::completions))
        .route("/v1/embeddings", post(openai::embeddings))
        .route("/embeddings", post(openai::embeddings))
        .route("/api/generate", post(ollama::generate))
        .route("/api/chat", post(ollama::chat))
        .route("/api/tags", get(ollama::tags))
        .route("/api/show", post(ollama::show))
        .route("/api/ps", get(ollama::ps))
        .route("/api/embed", post(ollama::embed))
        .route("/api/embeddings", post(ollama::embeddings))
        .route("/api/version", get(ollama::version))
        .fallback(no_route)
        .layer(middleware::from_fn_with_state(state.clone(), gate))
        .with_state(state)
}

async fn no_route(req: Request) -> Response {
    let path = req.uri().path().to_string();
    ApiError::NoRoute {
        method: req.method().to_string(),
        path: path.clone(),
    }
    .respond(Flavor::for_path(&path))
}

/// Paths open without an API key.
fn is_public(path: &str) -> bool {
    matches!(path, "/health" | "/v1/health")
}

/// Compares without an early exit, so the time taken does not reveal a matching prefix.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let n = a.len().max(b.len());
    let mut diff = u8::from(a.len() != b.len());
    for i in 0..n {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0xff);
        diff |= x ^ y;
    }
    diff == 0
}

fn authorized(headers: &HeaderMap, key: &str) -> bool {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let x_api_key = headers.get("x-api-key").and_then(|v| v.to_str().ok());
    bearer
        .into_iter()
        .chain(x_api_key)
        .any(|k| constant_time_eq(k.as_bytes(), key.as_bytes()))
}

fn cors_headers(resp: &mut Response, allowed: &str, origin: Option<&HeaderValue>) {
    let value = if allowed == "*" {
        Some(HeaderValue::from_static("*"))
    } else {
        origin
            .filter(|o| o.as_bytes() == allowed.as_bytes())
            .cloned()
    };
    if let Some(v) = value {
        let h = resp.headers_mut();
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, v);
        h.insert(header::VARY, HeaderValue::from_static("origin"));
    }
}

/// Reads the whole body within the size limit and the read timeout.
async fn read_body(body: Body, limit: usize, timeout: Duration) -> Result<Bytes, ApiError> {
    let read = async move {
        let mut body = body;
        let mut buf = bytes::BytesMut::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| ApiError::BodyRead {
                detail: e.to_string(),
            })?;
            if let Ok(data) = frame.into_data() {
                if buf.len() + data.len() > limit {
                    return Err(ApiError::BodyTooLarge { limit });
                }
                buf.extend_from_slice(&data);
            }
        }
        Ok(buf.freeze())
    };
    match tokio::time::timeout(timeout, read).await {
        Ok(r) => r,
        Err(_) => Err(ApiError::BodyTimeout {
            secs: timeout.as_secs(),
        }),
    }
}

fn is_json_content_type(v: &HeaderValue) -> bool {
    let Ok(s) = v.to_str() else { return false };
    let mime = s
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json"))
}

/// Every request passes here: counting, CORS, API key, body limits, panic isolation.
async fn gate(State(st): State<AppState>, req: Request, next: Next) -> Response {
    st.metrics.http_requests.fetch_add(1, Ordering::Relaxed);
    let path = req.uri().path().to_string();
    let flavor = Flavor::for_path(&path);
    let origin = req.headers().get(header::ORIGIN).cloned();
    let cors = st.cfg.cors.clone();
    let mut resp = gate_inner(&st, req, next, &path, flavor).await;
    if let Some(allowed) = &cors {
        cors_headers(&mut resp, allowed, origin.as_ref());
    }
    let status = resp.status();
    if is_public(&path) {
        // /health reports the state (503 while loading); not an error of the server.
    } else if status.is_client_error() {
        st.metrics
            .http_client_errors
            .fetch_add(1, Ordering::Relaxed);
    } else if status.is_server_error() {
        st.metrics
            .http_server_errors
            .fetch_add(1, Ordering::Relaxed);
    }
    resp
}

async fn gate_inner(
    st: &AppState,
    req: Request,
    next: Next,
    path: &str,
    flavor: Flavor,
) -> Response {
    if st.cfg.cors.is_some() && req.method() == Method::OPTIONS {
        let mut resp = StatusCode::NO_CONTENT.into_response();
        let h = resp.headers_mut();
        h.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("GET, POST, OPTIONS"),
        );
        h.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static("authorization, content-type, x-api-key"),
        );
        h.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static("600"),
        );
        return resp;
    }
    if let Some(key) = &st.cfg.api_key {
        if !is_public(path) && !authorized(req.headers(), key) {
            return ApiError::Unauthorized.respond(flavor);
        }
    }
    let req = if req.method() == Method::POST {
        if let Some(ct) = req.headers().get(header::CONTENT_TYPE) {
            if !is_json_content_type(ct) {
                return ApiError::ContentType {
                    content_type: String::from_utf8_lossy(ct.as_bytes()).into_owned(),
                }
                .respond(flavor);
            }
        }
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > st.cfg.max_body as u64) {
            return ApiError::BodyTooLarge {
                limit: st.cfg.max_body,
            }
            .respond(flavor);
        }
        let (parts, body) = req.into_parts();
        match read_body(body, st.cfg.max_body, st.cfg.read_timeout).await {
            Ok(bytes) => Request::from_parts(parts, Body::from(bytes)),
            Err(e) => return e.respond(flavor),
        }
    } else {
        req
    };
    match std::panic::AssertUnwindSafe(next.run(req))
        .catch_unwind()
        .await
    {
        Ok(resp) => resp,
        Err(_) => ApiError::Internal {
            detail: "the handler panicked".into(),
        }
        .respond(flavor),
    }
}

/// Runs the server until SIGTERM or Ctrl-C: binds, prints `listening on http://ADDR` on
/// stdout, loads the model in the background (`/health` answers 503 until it is ready),
/// serves, and on the signal stops accepting, lets running generations finish within the
/// grace period and returns.
pub fn serve_blocking(cfg: ServerConfig) -> Result<(), ServeError> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(ServeError::Runtime)?;
    rt.block_on(serve(cfg, shutdown_signal()))
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

/// [`serve_blocking`] inside a runtime, stopping when `shutdown` completes.
pub async fn serve(
    cfg: ServerConfig,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), ServeError> {
    if cfg.n_slots == 0 {
        return Err(ServeError::Config("--parallel must be at least 1".into()));
    }
    if cfg.threads == Some(0) {
        return Err(ServeError::Config("--threads must be at least 1".into()));
    }
    if cfg.gateway.only && !cfg.gateway.enabled() {
        return Err(ServeError::Config(
            "--gateway-only needs at least one --upstream".into(),
        ));
    }
    let addr = format!("{}:{}", cfg.host, cfg.port);
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .map_err(|source| ServeError::Bind {
            addr: addr.clone(),
            source,
        })?;
    let local: SocketAddr = listener.local_addr().map_err(|source| ServeError::Bind {
        addr: addr.clone(),
        source,
    })?;
    {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "listening on http://{local}");
        let _ = out.flush();
    }
    let metrics = Arc::new(Metrics::default());
    let gateway = cfg.gateway.enabled().then(|| {
        let gw = Gateway::new(cfg.gateway.clone());
        gw.start();
        let urls: Vec<&str> = cfg
            .gateway
            .upstreams
            .iter()
            .map(|u| u.url.as_str())
            .collect();
        eprintln!(
            "gateway: {} to {}",
            if cfg.gateway.only {
                "forwarding every request (no local model)"
            } else {
                "forwarding what this server cannot take"
            },
            urls.join(", ")
        );
        gw
    });
    let state = AppState::new(Arc::new(cfg.clone()), metrics.clone(), gateway.clone());
    if !cfg.gateway.only {
        let ready = state.ready.clone();
        let cfg = cfg.clone();
        std::thread::Builder::new()
            .name("hearth-load".into())
            .spawn(move || {
                let t0 = Instant::now();
                let r = load(&cfg, metrics).map(Arc::new);
                match &r {
                    Ok(r) => eprintln!(
                        "model {} loaded in {:.2} s: {} slots x {} tokens of context",
                        r.info.alias,
                        t0.elapsed().as_secs_f64(),
                        cfg.n_slots,
                        r.n_ctx
                    ),
                    Err(e) => eprintln!("error: {e}"),
                }
                let _ = ready.set(r);
            })
            .map_err(ServeError::Runtime)?;
    }
    let app = router(state.clone());
    let graceful = GracefulShutdown::new();
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(cfg.read_timeout)
        .keep_alive(true);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, _) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of descriptors and the like: wait a little, keep serving.
                        eprintln!("accept: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let svc = TowerToHyperService::new(app.clone());
                let conn = builder.serve_connection(TokioIo::new(stream), svc);
                let conn = graceful.watch(conn);
                tokio::spawn(async move {
                    let _ = conn.await;
                });
            }
            _ = &mut shutdown => break,
        }
    }
    drop(listener);
    if let Some(gw) = &gateway {
        gw.stop();
    }
    eprintln!(
        "shutting down: no new requests; running ones get {:?}",
        cfg.shutdown_grace
    );
    if let Some(Ok(ready)) = state.ready.get() {
        ready.engine.begin_shutdown(cfg.shutdown_grace);
    }
    let _ = tokio::time::timeout(
        cfg.shutdown_grace + Duration::from_secs(2),
        graceful.shutdown(),
    )
    .await;
    if let Some(Ok(ready)) = state.ready.get() {
        let ready = ready.clone();
        let _ = tokio::task::spawn_blocking(move || ready.engine.join()).await;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::ServiceExt;

    async fn boom() -> StatusCode {
        panic!("boom")
    }

    #[test]
    fn a_panicking_handler_gets_500_and_the_server_goes_on() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let st = AppState {
                cfg: Arc::new(ServerConfig::new("unused.gguf".into())),
                metrics: Arc::default(),
                ready: Arc::new(OnceLock::new()),
                started: Instant::now(),
                gateway: None,
            };
            let app = Router::new()
                .route("/v1/boom", get(boom))
                .route("/health", get(native::health))
                .layer(middleware::from_fn_with_state(st.clone(), gate))
                .with_state(st.clone());
            let get_ = |p: &str| Request::get(p).body(Body::empty()).unwrap();
            let r = app.clone().oneshot(get_("/v1/boom")).await.unwrap();
            assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
            let body = axum::body::to_bytes(r.into_body(), 1 << 16).await.unwrap();
            let j: Json = serde_json::from_slice(&body).unwrap();
            assert_eq!(j["error"]["type"], "server_error");
            // Still answering; the model is not loaded here, so /health says 503.
            let r = app.oneshot(get_("/health")).await.unwrap();
            assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
            assert_eq!(
                st.metrics.http_server_errors.load(Ordering::Relaxed),
                1,
                "/health's 503 is not counted"
            );
        });
    }

    #[test]
    fn api_keys_compare_exactly() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
        assert!(!constant_time_eq(b"", b"x"));
        assert!(constant_time_eq(b"", b""));
    }
}
