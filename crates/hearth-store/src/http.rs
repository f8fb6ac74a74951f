//! HTTP(S) for pulls: one blocking client (ureq over rustls), redirects
//! followed by hand (so the `Range` header is kept and credentials are only
//! sent to the host they belong to), and a bounded retry policy.

use std::io::Read;
use std::time::Duration;

use ureq::http::Response;
use ureq::{Agent, Body};

use crate::{Progress, StoreError};

/// Most redirects followed for one request.
pub const MAX_REDIRECTS: u32 = 10;

/// Where and how pulls talk HTTP. [`HttpOptions::from_env`] reads the
/// environment; tests build one directly.
#[derive(Clone, Debug)]
pub struct HttpOptions {
    /// Base URL of the Hugging Face Hub (`HF_ENDPOINT`, default
    /// `https://huggingface.co`), without a trailing slash.
    pub hf_endpoint: String,
    /// Hugging Face access token (`HF_TOKEN`), sent as `Authorization:
    /// Bearer` to the Hub's own host only.
    pub hf_token: Option<String>,
    /// Retries after a retryable failure (5xx, 408, 429, dropped or timed-out
    /// connection) before giving up (`HEARTH_PULL_RETRIES`, default 5).
    pub retries: u32,
    /// First retry delay, doubled on each further retry
    /// (`HEARTH_PULL_BACKOFF_MS`, default 1000).
    pub backoff: Duration,
    /// Longest single delay, also the cap on a server's `Retry-After`.
    pub max_backoff: Duration,
    /// Longest wait for a connection.
    pub connect_timeout: Duration,
    /// Longest wait for any one read (`HEARTH_PULL_TIMEOUT_SECS`, default 60):
    /// a stalled transfer fails (and is retried) instead of hanging.
    pub read_timeout: Duration,
}

impl Default for HttpOptions {
    fn default() -> Self {
        HttpOptions {
            hf_endpoint: "https://huggingface.co".to_string(),
            hf_token: None,
            retries: 5,
            backoff: Duration::from_millis(1000),
            max_backoff: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(30),
            read_timeout: Duration::from_secs(60),
        }
    }
}

impl HttpOptions {
    /// Defaults overridden by `HF_ENDPOINT`, `HF_TOKEN` (or
    /// `HUGGING_FACE_HUB_TOKEN`), `HEARTH_PULL_RETRIES`,
    /// `HEARTH_PULL_BACKOFF_MS` and `HEARTH_PULL_TIMEOUT_SECS`.
    pub fn from_env() -> Self {
        let mut o = HttpOptions::default();
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        if let Some(e) = var("HF_ENDPOINT") {
            o.hf_endpoint = e.trim().trim_end_matches('/').to_string();
        }
        o.hf_token = var("HF_TOKEN")
            .or_else(|| var("HUGGING_FACE_HUB_TOKEN"))
            .map(|t| t.trim().to_string());
        if let Some(n) = var("HEARTH_PULL_RETRIES").and_then(|v| v.trim().parse().ok()) {
            o.retries = n;
        }
        if let Some(ms) = var("HEARTH_PULL_BACKOFF_MS").and_then(|v| v.trim().parse().ok()) {
            o.backoff = Duration::from_millis(ms);
        }
        if let Some(s) = var("HEARTH_PULL_TIMEOUT_SECS").and_then(|v| v.trim().parse().ok()) {
            o.read_timeout = Duration::from_secs(s);
        }
        o
    }

    /// The delay before retry number `n` (1-based): the server's
    /// `Retry-After` if it gave one, else exponential backoff; both capped.
    pub(crate) fn delay(&self, n: u32, retry_after: Option<Duration>) -> Duration {
        let exp = self
            .backoff
            .saturating_mul(1u32 << n.saturating_sub(1).min(16));
        retry_after.unwrap_or(exp).min(self.max_backoff)
    }
}

/// What went wrong with one request, and whether trying again may help.
#[derive(Debug)]
pub(crate) struct Failure {
    pub error: StoreError,
    pub retryable: bool,
    pub retry_after: Option<Duration>,
    /// The attempt got further than any before it (more bytes on disk):
    /// the retry count starts over.
    pub progressed: bool,
}

impl Failure {
    pub fn fatal(error: StoreError) -> Failure {
        Failure {
            error,
            retryable: false,
            retry_after: None,
            progressed: false,
        }
    }
    pub fn retry(error: StoreError) -> Failure {
        Failure {
            error,
            retryable: true,
            retry_after: None,
            progressed: false,
        }
    }
}

/// The client of one pull.
pub(crate) struct Client {
    agent: Agent,
    pub opts: HttpOptions,
}

/// A response after redirects, with what was learned on the way.
pub(crate) struct Fetched {
    pub response: Response<Body>,
    /// The URL that answered.
    pub url: String,
    /// A sha256 announced by a server on the way (`X-Linked-Etag`, as the
    /// Hugging Face Hub sends for LFS files before redirecting to its CDN).
    pub linked_sha256: Option<String>,
}

impl Client {
    pub fn new(opts: &HttpOptions) -> Client {
        let config = Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .timeout_connect(Some(opts.connect_timeout))
            .timeout_per_read(Some(opts.read_timeout))
            .user_agent(format!("hearth/{}", env!("CARGO_PKG_VERSION")))
            .build();
        Client {
            agent: Agent::new_with_config(config),
            opts: opts.clone(),
        }
    }

    /// The bearer token for `url`: only for the Hub's own origin.
    pub fn token_for(&self, url: &str) -> Option<&str> {
        let token = self.opts.hf_token.as_deref()?;
        (origin(url) == origin(&self.opts.hf_endpoint)).then_some(token)
    }

    /// GET `url` with `headers`, following up to [`MAX_REDIRECTS`]
    /// redirects. The token (if any) goes only to the Hub's origin. Any
    /// non-redirect status is returned as is.
    pub fn get(&self, url: &str, headers: &[(&str, String)]) -> Result<Fetched, Failure> {
        let mut current = url.to_string();
        let mut linked_sha256 = None;
        for hop in 0..=MAX_REDIRECTS {
            let mut req = self.agent.get(&current);
            for (k, v) in headers {
                req = req.header(*k, v);
            }
            if let Some(token) = self.token_for(&current) {
                req = req.header("Authorization", format!("Bearer {token}"));
            }
            let response = req.call().map_err(|e| transport_failure(&current, e))?;
            if linked_sha256.is_none() {
                linked_sha256 = header(&response, "x-linked-etag").and_then(sha256_of_etag);
            }
            let status = response.status().as_u16();
            if !matches!(status, 301 | 302 | 303 | 307 | 308) {
                return Ok(Fetched {
                    response,
                    url: current,
                    linked_sha256,
                });
            }
            let location = header(&response, "location").unwrap_or_default();
            let next = join_url(&current, &location).ok_or_else(|| {
                Failure::fatal(StoreError::BadRedirect {
                    url: current.clone(),
                    location: location.clone(),
                })
            })?;
            if hop == MAX_REDIRECTS {
                break;
            }
            current = next;
        }
        Err(Failure::fatal(StoreError::TooManyRedirects {
            url: url.to_string(),
            limit: MAX_REDIRECTS,
        }))
    }

    /// GET a small document (at most `limit` bytes) with retries.
    pub fn get_small(
        &self,
        url: &str,
        limit: u64,
        progress: &dyn Progress,
    ) -> Result<Vec<u8>, StoreError> {
        self.with_retries(progress, &mut |_| {
            let fetched = self.get(url, &[("Accept", "application/json".to_string())])?;
            let status = fetched.response.status().as_u16();
            if status != 200 {
                return Err(status_failure(self, url, &fetched.response));
            }
            let mut body = Vec::new();
            fetched
                .response
                .into_body()
                .into_reader()
                .take(limit)
                .read_to_end(&mut body)
                .map_err(|e| {
                    Failure::retry(StoreError::Network {
                        url: url.to_string(),
                        message: e.to_string(),
                    })
                })?;
            Ok(body)
        })
    }

    /// Runs `attempt` until it succeeds, fails fatally, or the retries are
    /// spent; `attempt` gets the attempt number (0 first). An attempt that
    /// got further than any before it starts the count over, so a long
    /// download over a flaky link is not cut short, while a server that
    /// fails the same way every time is given up on.
    pub fn with_retries<T>(
        &self,
        progress: &dyn Progress,
        attempt: &mut dyn FnMut(u32) -> Result<T, Failure>,
    ) -> Result<T, StoreError> {
        let mut n = 0;
        let mut attempts = 0;
        loop {
            match attempt(attempts) {
                Ok(v) => return Ok(v),
                Err(f)
                    if f.retryable
                        && self.opts.retries > 0
                        && (n < self.opts.retries || f.progressed) =>
                {
                    if f.progressed {
                        n = 0;
                    }
                    n += 1;
                    attempts += 1;
                    let delay = self.opts.delay(n, f.retry_after);
                    progress.retry(&f.error, n, self.opts.retries, delay);
                    std::thread::sleep(delay);
                }
                Err(f) => return Err(f.error),
            }
        }
    }
}

/// The failure for a non-success status.
pub(crate) fn status_failure(client: &Client, url: &str, response: &Response<Body>) -> Failure {
    let status = response.status().as_u16();
    let is_hub = origin(url) == origin(&client.opts.hf_endpoint);
    let hint = match status {
        401 | 403 if is_hub => {
            if client.opts.hf_token.is_some() {
                " (the HF_TOKEN given has no access to this repository: is it gated? accept its terms on the Hub)"
            } else {
                " (private or gated repository: set HF_TOKEN to an access token)"
            }
        }
        401 | 403 => " (access denied)",
        404 => " (not found)",
        408 | 429 => " (server busy)",
        s if s >= 500 => " (server error)",
        _ => "",
    };
    let error = StoreError::HttpStatus {
        url: url.to_string(),
        status,
        hint: hint.to_string(),
    };
    let retryable = matches!(status, 408 | 429) || status >= 500;
    Failure {
        error,
        retryable,
        progressed: false,
        retry_after: retryable
            .then(|| header(response, "retry-after"))
            .flatten()
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs),
    }
}

fn transport_failure(url: &str, e: ureq::Error) -> Failure {
    let retryable = matches!(
        e,
        ureq::Error::Io(_)
            | ureq::Error::Timeout(_)
            | ureq::Error::ConnectionFailed
            | ureq::Error::Protocol(_)
            | ureq::Error::BodyStalled
    );
    let message = match &e {
        ureq::Error::HostNotFound => "host not found".to_string(),
        ureq::Error::ConnectionFailed => "connection failed".to_string(),
        e => e.to_string(),
    };
    Failure {
        error: StoreError::Network {
            url: url.to_string(),
            message,
        },
        retryable,
        retry_after: None,
        progressed: false,
    }
}

/// A response header as a string.
pub(crate) fn header(response: &Response<Body>, name: &str) -> Option<String> {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// The sha256 in an ETag-like value (`"<64 hex>"`, maybe weak), if it is one.
pub(crate) fn sha256_of_etag(etag: String) -> Option<String> {
    let v = etag.trim().trim_start_matches("W/").trim_matches('"');
    is_sha256(v).then(|| v.to_ascii_lowercase())
}

/// Whether `s` is 64 hex digits.
pub(crate) fn is_sha256(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// `scheme://host[:port]` of a URL, lower-cased.
pub(crate) fn origin(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    format!("{}://{}", scheme, host).to_ascii_lowercase()
}

/// The target of a `Location` header relative to `base`.
pub(crate) fn join_url(base: &str, location: &str) -> Option<String> {
    let location = location.trim();
    if location.is_empty() {
        return None;
    }
    if location.starts_with("http://") || location.starts_with("https://") {
        return Some(location.to_string());
    }
    let (scheme, _) = base.split_once("://")?;
    if let Some(rest) = location.strip_prefix("//") {
        return Some(format!("{scheme}://{rest}"));
    }
    let origin = origin(base);
    if location.starts_with('/') {
        return Some(format!("{origin}{location}"));
    }
    let path_start = origin.len();
    let path = base
        .get(path_start..)
        .unwrap_or("")
        .split(['?', '#'])
        .next()
        .unwrap_or("");
    let dir = match path.rfind('/') {
        Some(i) => &path[..=i],
        None => "/",
    };
    Some(format!("{origin}{dir}{location}"))
}

/// Percent-encodes a URL path (keeping `/` and unreserved characters).
pub(crate) fn encode_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for b in path.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joins_locations() {
        let b = "http://h:1/a/b/c.gguf?x=1";
        assert_eq!(join_url(b, "https://cdn/x").unwrap(), "https://cdn/x");
        assert_eq!(join_url(b, "//cdn/x").unwrap(), "http://cdn/x");
        assert_eq!(join_url(b, "/r/2").unwrap(), "http://h:1/r/2");
        assert_eq!(join_url(b, "d.gguf").unwrap(), "http://h:1/a/b/d.gguf");
        assert_eq!(join_url("http://h", "x").unwrap(), "http://h/x");
        assert!(join_url(b, " ").is_none());
    }

    #[test]
    fn origins_and_etags() {
        assert_eq!(origin("HTTPS://Hub.example:8/a?b"), "https://hub.example:8");
        let h = "a".repeat(64);
        assert_eq!(sha256_of_etag(format!("\"{h}\"")), Some(h.clone()));
        assert_eq!(sha256_of_etag(format!("W/\"{h}\"")), Some(h));
        assert_eq!(sha256_of_etag("\"abc\"".to_string()), None);
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        let o = HttpOptions {
            backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(350),
            ..HttpOptions::default()
        };
        assert_eq!(o.delay(1, None), Duration::from_millis(100));
        assert_eq!(o.delay(2, None), Duration::from_millis(200));
        assert_eq!(o.delay(3, None), Duration::from_millis(350));
        assert_eq!(
            o.delay(1, Some(Duration::from_secs(9))),
            Duration::from_millis(350)
        );
    }
}
