//! Counters and gauges for /metrics (Prometheus text format).

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

/// Server-wide counters (monotonic) and gauges (set by the engine each step).
#[derive(Debug, Default)]
pub struct Metrics {
    /// HTTP requests received.
    pub http_requests: AtomicU64,
    /// HTTP responses with a 4xx status.
    pub http_client_errors: AtomicU64,
    /// HTTP responses with a 5xx status.
    pub http_server_errors: AtomicU64,
    /// Generations admitted to a slot.
    pub requests: AtomicU64,
    /// Requests refused because the queue was full.
    pub rejected: AtomicU64,
    /// Generations cancelled (the client went away).
    pub cancelled: AtomicU64,
    /// Embedding requests served.
    pub embeddings: AtomicU64,
    /// Prompt tokens evaluated (not counting cached ones).
    pub prompt_tokens: AtomicU64,
    /// Tokens generated.
    pub generated_tokens: AtomicU64,
    /// Requests that reused a cached prefix.
    pub cache_hits: AtomicU64,
    /// Prompt tokens reused from the prefix cache.
    pub cache_tokens: AtomicU64,
    /// Requests waiting for a slot.
    pub queue_depth: AtomicU64,
    pub slots_busy: AtomicU64,
    pub slots_total: AtomicU64,
    /// Tokens held in all KV caches.
    pub kv_used: AtomicU64,
    /// Tokens all KV caches can hold.
    pub kv_capacity: AtomicU64,
}

impl Metrics {
    /// The Prometheus exposition text.
    pub fn render(&self) -> String {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let mut s = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, value: String| {
            let _ = writeln!(s, "# HELP hearth_{name} {help}");
            let _ = writeln!(s, "# TYPE hearth_{name} {kind}");
            let _ = writeln!(s, "hearth_{name} {value}");
        };
        let c = |a: &AtomicU64| g(a).to_string();
        metric(
            "http_requests_total",
            "counter",
            "HTTP requests received.",
            c(&self.http_requests),
        );
        metric(
            "http_client_errors_total",
            "counter",
            "HTTP responses with a 4xx status.",
            c(&self.http_client_errors),
        );
        metric(
            "http_server_errors_total",
            "counter",
            "HTTP responses with a 5xx status.",
            c(&self.http_server_errors),
        );
        metric(
            "requests_total",
            "counter",
            "Generations admitted to a slot.",
            c(&self.requests),
        );
        metric(
            "requests_rejected_total",
            "counter",
            "Requests refused because the queue was full.",
            c(&self.rejected),
        );
        metric(
            "requests_cancelled_total",
            "counter",
            "Generations cancelled because the client went away.",
            c(&self.cancelled),
        );
        metric(
            "embedding_requests_total",
            "counter",
            "Embedding requests served.",
            c(&self.embeddings),
        );
        metric(
            "prompt_tokens_total",
            "counter",
            "Prompt tokens evaluated (cached ones excluded).",
            c(&self.prompt_tokens),
        );
        metric(
            "tokens_predicted_total",
            "counter",
            "Tokens generated.",
            c(&self.generated_tokens),
        );
        metric(
            "prefix_cache_hits_total",
            "counter",
            "Requests that reused a cached prompt prefix.",
            c(&self.cache_hits),
        );
        metric(
            "prefix_cache_tokens_total",
            "counter",
            "Prompt tokens reused from the prefix cache.",
            c(&self.cache_tokens),
        );
        metric(
            "queue_depth",
            "gauge",
            "Requests waiting for a slot.",
            c(&self.queue_depth),
        );
        metric(
            "slots_busy",
            "gauge",
            "Slots running a generation.",
            c(&self.slots_busy),
        );
        metric(
            "slots_total",
            "gauge",
            "Slots (--parallel).",
            c(&self.slots_total),
        );
        metric(
            "kv_cache_tokens",
            "gauge",
            "Tokens held in the KV caches.",
            c(&self.kv_used),
        );
        metric(
            "kv_cache_capacity_tokens",
            "gauge",
            "Tokens the KV caches can hold.",
            c(&self.kv_capacity),
        );
        let ratio = g(&self.kv_used) as f64 / g(&self.kv_capacity).max(1) as f64;
        metric(
            "kv_cache_usage_ratio",
            "gauge",
            "Fraction of the KV caches in use.",
            format!("{ratio:.6}"),
        );
        s
    }
}
