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
}

pub fn run(args: ServeArgs) -> Result<()> {
    if args.parallel == 0 {
        bail!("--parallel must be at least 1");
    }
    if args.read_timeout == 0 {
        bail!("--read-timeout must be at least 1 second");
    }
    let path = crate::model_path(args.model)?;
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
    hearth_server::serve_blocking(cfg)?;
    Ok(())
}
