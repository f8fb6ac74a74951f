//! `hearth serve`: the OpenAI, Ollama and llama.cpp-native HTTP APIs (crates/hearth-server).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Result};
use clap::Args;

#[derive(Args)]
pub struct ServeArgs {
    /// The GGUF model (default: Gemma 3 270M Q4_K_M, fetched on first use).
    #[arg(short, long)]
    model: Option<PathBuf>,
    /// Address to bind (127.0.0.1 by default: only this machine can connect).
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Port (0 = any free port; the address is printed as `listening on http://...`).
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// Requests evaluated together, each in its own slot with its own KV cache.
    #[arg(long, short = 'n', alias = "np", default_value_t = 4)]
    parallel: usize,
    /// Context of each slot in tokens (default: the model's, at most 4096).
    #[arg(short = 'c', long = "ctx-size")]
    ctx_size: Option<usize>,
    /// Require this key (`Authorization: Bearer KEY` or `X-Api-Key`); /health stays open.
    #[arg(long)]
    api_key: Option<String>,
    /// Allow browsers from this origin (`*` for any).
    #[arg(long)]
    cors: Option<String>,
    /// Requests that may wait for a slot; more get 503 with Retry-After.
    #[arg(long, default_value_t = 64)]
    max_queue: usize,
    /// The model name clients use (default: the file name without .gguf).
    #[arg(long, short = 'a')]
    alias: Option<String>,
    /// Threads for the model (default: all cores).
    #[arg(short = 't', long = "threads")]
    threads: Option<usize>,
    /// Largest request body in bytes.
    #[arg(long, default_value_t = 4 << 20)]
    max_body: usize,
    /// Seconds allowed for a request's headers, and for its body.
    #[arg(long, default_value_t = 10)]
    read_timeout: u64,
    /// Seconds running generations may continue after SIGTERM / Ctrl-C.
    #[arg(long, default_value_t = 10)]
    shutdown_grace: u64,
    /// Most prompt tokens evaluated per step (so running streams keep flowing).
    #[arg(long, default_value_t = 256)]
    prefill_chunk: usize,
    /// Upstream OpenAI-compatible servers (http://host:port, comma-separated or repeated) for
    /// /v1 requests this server cannot take: another model, too long for the context, or
    /// the queue is full.
    #[arg(long = "upstream", value_name = "URL[,URL...]", value_delimiter = ',')]
    upstreams: Vec<String>,
    /// The key to send an upstream as `Authorization: Bearer KEY` (repeatable).
    #[arg(long = "upstream-key", value_name = "URL=KEY")]
    upstream_keys: Vec<String>,
    /// Pass the client's own API key to upstreams that have no --upstream-key.
    #[arg(long)]
    upstream_forward_key: bool,
    /// Seconds between health checks of each upstream.
    #[arg(long, default_value_t = 5.0, value_name = "SECS")]
    upstream_health_interval: f64,
    /// Seconds an upstream may take to start its answer (a generation that is not streamed
    /// starts it when it ends).
    #[arg(long, default_value_t = 600, value_name = "SECS")]
    upstream_timeout: u64,
    /// Load no model: forward every /v1 request to the --upstream servers.
    #[arg(long)]
    gateway_only: bool,
    #[command(flatten)]
    load: crate::plan::LoadArgs,
}

pub fn run(args: ServeArgs) -> Result<()> {
    if args.parallel == 0 {
        bail!("--parallel must be at least 1");
    }
    if args.read_timeout == 0 {
        bail!("--read-timeout must be at least 1 second");
    }
    let gateway = gateway_config(&args)?;
    let path = if gateway.only {
        if args.model.is_some() {
            bail!("--gateway-only loads no model: drop -m/--model");
        }
        PathBuf::new()
    } else {
        crate::model_path(args.model)?
    };
    if !gateway.only {
        let req = hearth_plan::PlanRequest {
            n_ctx: args.ctx_size,
            n_slots: args.parallel,
            load: args.load.mode(),
            ..Default::default()
        };
        crate::plan::check(&path, &req, args.load.force)?;
    }
    let mut cfg = hearth_server::ServerConfig::new(path);
    cfg.alias = args.alias;
    cfg.host = args.host;
    cfg.port = args.port;
    cfg.n_slots = args.parallel;
    cfg.n_ctx = args.ctx_size;
    cfg.max_queue = args.max_queue;
    cfg.threads = args.threads;
    cfg.api_key = args.api_key.filter(|k| !k.is_empty());
    cfg.cors = args.cors;
    cfg.max_body = args.max_body;
    cfg.read_timeout = Duration::from_secs(args.read_timeout);
    cfg.shutdown_grace = Duration::from_secs(args.shutdown_grace);
    cfg.prefill_chunk = args.prefill_chunk.max(1);
    cfg.load_mode = args.load.mode();
    cfg.gateway = gateway;
    hearth_server::serve_blocking(cfg)?;
    Ok(())
}

fn gateway_config(args: &ServeArgs) -> Result<hearth_server::GatewayConfig> {
    let upstreams = hearth_server::UpstreamSpec::parse_all(&args.upstreams, &args.upstream_keys)?;
    if args.gateway_only && upstreams.is_empty() {
        bail!("--gateway-only needs at least one --upstream URL");
    }
    if args.upstream_timeout == 0 {
        bail!("--upstream-timeout must be at least 1 second");
    }
    Ok(hearth_server::GatewayConfig {
        upstreams,
        only: args.gateway_only,
        health_interval: hearth_server::GatewayConfig::interval_from_secs(
            args.upstream_health_interval,
        )?,
        response_timeout: Duration::from_secs(args.upstream_timeout),
        forward_client_key: args.upstream_forward_key,
        ..Default::default()
    })
}
