//! Errors of the HTTP API, rendered in the shape of the API that was called.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::engine::{EngineError, SubmitError};

/// Which API's error shape to use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavor {
    /// `{"error":{"message","type","param","code"}}`.
    OpenAi,
    /// llama-server's `{"error":{"code":<status>,"message","type"}}`.
    LlamaCpp,
    /// Ollama's `{"error":"..."}`.
    Ollama,
}

impl Flavor {
    /// The API a path belongs to.
    pub fn for_path(path: &str) -> Flavor {
        if path.starts_with("/api/") {
            Flavor::Ollama
        } else if path.starts_with("/v1/") {
            Flavor::OpenAi
        } else {
            Flavor::LlamaCpp
        }
    }
}

/// Why a request was refused or failed. Each variant names the offending value.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("the request body is not valid JSON: {detail}")]
    InvalidJson { detail: String },
    #[error("{field}: {message}")]
    InvalidField { field: String, message: String },
    #[error("unsupported content type {content_type:?}: send application/json")]
    ContentType { content_type: String },
    #[error("the request body exceeds the limit of {limit} bytes")]
    BodyTooLarge { limit: usize },
    #[error("the request body did not arrive within {secs} s")]
    BodyTimeout { secs: u64 },
    #[error("the request body could not be read: {detail}")]
    BodyRead { detail: String },
    #[error("the prompt has {n_prompt} tokens but the context holds {n_ctx}{hint}")]
    ContextExceeded {
        n_prompt: usize,
        n_ctx: usize,
        hint: &'static str,
    },
    #[error("model {model:?} not found (this server serves {served:?})")]
    ModelNotFound { model: String, served: String },
    #[error("invalid model name {model:?}")]
    InvalidModelName { model: String },
    #[error("invalid API key")]
    Unauthorized,
    #[error("the server is busy: {queued} requests are waiting (limit {limit}); retry later")]
    QueueFull { queued: usize, limit: usize },
    #[error("the model is loading")]
    Loading,
    #[error("the model failed to load: {detail}")]
    LoadFailed { detail: String },
    #[error("the server is shutting down")]
    ShuttingDown,
    #[error("{0}")]
    Engine(EngineError),
    #[error("internal server error: {detail}")]
    Internal { detail: String },
    #[error("no route for {method} {path}")]
    NoRoute { method: String, path: String },
    #[error("this server is a gateway (--gateway-only) and serves no model itself; use /v1/chat/completions, /v1/completions, /v1/embeddings or /v1/models")]
    NoLocalModel,
    #[error("no upstream is available{detail}")]
    UpstreamUnavailable { detail: String },
    #[error("the upstream servers failed: {detail}")]
    UpstreamFailed { detail: String },
    #[error("upstream {upstream} sent no response within {secs} s")]
    UpstreamTimeout { upstream: String, secs: u64 },
}

impl From<SubmitError> for ApiError {
    fn from(e: SubmitError) -> Self {
        match e {
            SubmitError::QueueFull { queued, limit } => ApiError::QueueFull { queued, limit },
            SubmitError::ShuttingDown => ApiError::ShuttingDown,
        }
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::ShuttingDown => ApiError::ShuttingDown,
            e => ApiError::Engine(e),
        }
    }
}

impl ApiError {
    /// An invalid field.
    pub fn field(field: impl Into<String>, message: impl Into<String>) -> ApiError {
        ApiError::InvalidField {
            field: field.into(),
            message: message.into(),
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::InvalidJson { .. }
            | ApiError::InvalidField { .. }
            | ApiError::ContentType { .. }
            | ApiError::BodyRead { .. }
            | ApiError::ContextExceeded { .. }
            | ApiError::InvalidModelName { .. } => StatusCode::BAD_REQUEST,
            ApiError::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::BodyTimeout { .. } => StatusCode::REQUEST_TIMEOUT,
            ApiError::ModelNotFound { .. } | ApiError::NoRoute { .. } => StatusCode::NOT_FOUND,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::QueueFull { .. }
            | ApiError::Loading
            | ApiError::ShuttingDown
            | ApiError::UpstreamUnavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::NoLocalModel => StatusCode::NOT_IMPLEMENTED,
            ApiError::UpstreamFailed { .. } => StatusCode::BAD_GATEWAY,
            ApiError::UpstreamTimeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            ApiError::LoadFailed { .. } | ApiError::Engine(_) | ApiError::Internal { .. } => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        }
    }

    /// OpenAI's error `type`.
    pub fn kind(&self) -> &'static str {
        match self.status() {
            StatusCode::UNAUTHORIZED => "authentication_error",
            StatusCode::NOT_FOUND => "not_found_error",
            StatusCode::SERVICE_UNAVAILABLE => "unavailable_error",
            StatusCode::INTERNAL_SERVER_ERROR => "server_error",
            StatusCode::BAD_GATEWAY | StatusCode::GATEWAY_TIMEOUT => "upstream_error",
            _ => "invalid_request_error",
        }
    }

    /// The request field at fault.
    pub fn param(&self) -> Option<&str> {
        match self {
            ApiError::InvalidField { field, .. } => Some(field),
            ApiError::ModelNotFound { .. } | ApiError::InvalidModelName { .. } => Some("model"),
            ApiError::ContextExceeded { .. } => Some("messages"),
            _ => None,
        }
    }

    /// OpenAI's error `code`.
    pub fn code(&self) -> Option<&'static str> {
        match self {
            ApiError::ModelNotFound { .. } => Some("model_not_found"),
            ApiError::Unauthorized => Some("invalid_api_key"),
            ApiError::ContextExceeded { .. } => Some("context_length_exceeded"),
            ApiError::BodyTooLarge { .. } => Some("request_too_large"),
            ApiError::QueueFull { .. } => Some("server_busy"),
            ApiError::InvalidField { .. } => Some("invalid_value"),
            ApiError::InvalidJson { .. } => Some("invalid_json"),
            ApiError::NoLocalModel => Some("no_local_model"),
            ApiError::UpstreamUnavailable { .. } => Some("upstream_unavailable"),
            ApiError::UpstreamFailed { .. } => Some("upstream_error"),
            ApiError::UpstreamTimeout { .. } => Some("upstream_timeout"),
            _ => None,
        }
    }

    /// The response in `flavor`'s shape.
    pub fn respond(&self, flavor: Flavor) -> Response {
        let status = self.status();
        let body = match flavor {
            Flavor::OpenAi => json!({"error": {
                "message": self.to_string(),
                "type": self.kind(),
                "param": self.param(),
                "code": self.code(),
            }}),
            Flavor::LlamaCpp => json!({"error": {
                "code": status.as_u16(),
                "message": self.to_string(),
                "type": self.kind(),
            }}),
            Flavor::Ollama => json!({"error": self.to_string()}),
        };
        let mut resp = (status, axum::Json(body)).into_response();
        if matches!(
            self,
            ApiError::QueueFull { .. } | ApiError::Loading | ApiError::UpstreamUnavailable { .. }
        ) {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        if matches!(self, ApiError::Unauthorized) {
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        resp
    }
}
