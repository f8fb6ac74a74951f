//! One upstream server: its address and key as configured, and the HTTP/1.1 calls to it
//! (a fresh connection per request through hyper's client connection; plain HTTP only).

use std::fmt;
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;

/// Why a gateway flag was refused.
#[derive(Debug, thiserror::Error)]
pub enum GatewayConfigError {
    #[error("upstream {url:?}: {reason}")]
    BadUrl { url: String, reason: &'static str },
    #[error("--upstream-key {arg:?}: expected URL=KEY")]
    BadKeyArg { arg: String },
    #[error("--upstream-key for {url}: the key must be printable ASCII without spaces")]
    BadKey { url: String },
    #[error("--upstream-key for {url}: no --upstream has this address")]
    KeyForUnknownUpstream { url: String },
    #[error("upstream {url} is given twice")]
    Duplicate { url: String },
    #[error("--gateway-only needs at least one --upstream")]
    NoUpstreams,
    #[error("--upstream-health-interval {secs}: expected 0.05 to 3600 seconds")]
    BadInterval { secs: f64 },
}

/// An upstream OpenAI-compatible server.
#[derive(Clone, PartialEq, Eq)]
pub struct UpstreamSpec {
    /// `http://host:port[/prefix]`, normalized: the name in logs, metrics and `--upstream-key`.
    pub url: String,
    /// `host:port`: where to connect, and the `Host` header.
    pub authority: String,
    /// Path before `/v1/...` and `/health` (empty for the server root).
    pub prefix: String,
    /// Sent as `Authorization: Bearer KEY`.
    pub key: Option<String>,
}

impl fmt::Debug for UpstreamSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UpstreamSpec")
            .field("url", &self.url)
            .field("key", &self.key.as_ref().map(|_| "<set>"))
            .finish()
    }
}

impl UpstreamSpec {
    /// Parses `http://host[:port][/prefix]` (or `host:port`). A trailing `/v1` is dropped,
    /// since OpenAI base URLs often carry it and the gateway adds it to every path.
    pub fn parse(url: &str) -> Result<UpstreamSpec, GatewayConfigError> {
        let given = url.trim();
        let bad = |reason| GatewayConfigError::BadUrl {
            url: given.to_string(),
            reason,
        };
        let lower = given.to_ascii_lowercase();
        let rest = if lower.starts_with("http://") {
            &given[7..]
        } else if lower.starts_with("https://") {
            return Err(bad("https is not supported (the gateway speaks plain HTTP); put a TLS proxy beside the gateway"));
        } else if lower.contains("://") {
            return Err(bad("expected an http:// URL"));
        } else {
            given
        };
        if rest.chars().any(|c| {
            c.is_control() || c.is_whitespace() || matches!(c, '?' | '#' | '@' | '"' | '\\')
        }) {
            return Err(bad(
                "expected http://host:port[/path] without spaces, query, fragment or user info",
            ));
        }
        let (authority, path) = match rest.find('/') {
            Some(p) => (&rest[..p], &rest[p..]),
            None => (rest, ""),
        };
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let Some((h, after)) = v6.split_once(']') else {
                return Err(bad("unclosed [ in the host"));
            };
            let port = match after.strip_prefix(':') {
                Some(p) => Some(p),
                None if after.is_empty() => None,
                None => return Err(bad("expected :port after the IPv6 address")),
            };
            (format!("[{h}]"), port)
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h.to_string(), Some(p)),
                None => (authority.to_string(), None),
            }
        };
        if host.is_empty() || host == "[]" {
            return Err(bad("no host"));
        }
        let port: u16 = match port {
            None => 80,
            Some(p) => match p.parse() {
                Ok(n) if n > 0 => n,
                _ => return Err(bad("the port must be a number from 1 to 65535")),
            },
        };
        let mut prefix = path.trim_end_matches('/').to_string();
        if prefix.ends_with("/v1") {
            prefix.truncate(prefix.len() - 3);
        }
        let authority = format!("{host}:{port}");
        Ok(UpstreamSpec {
            url: format!("http://{authority}{prefix}"),
            authority,
            prefix,
            key: None,
        })
    }

    /// The upstreams of `--upstream URL[,URL...]` (already split) with the keys of
    /// `--upstream-key URL=KEY`.
    pub fn parse_all(
        urls: &[String],
        keys: &[String],
    ) -> Result<Vec<UpstreamSpec>, GatewayConfigError> {
        let mut ups: Vec<UpstreamSpec> = Vec::new();
        for u in urls.iter().map(|u| u.trim()).filter(|u| !u.is_empty()) {
            let spec = UpstreamSpec::parse(u)?;
            if ups.iter().any(|x| x.url == spec.url) {
                return Err(GatewayConfigError::Duplicate { url: spec.url });
            }
            ups.push(spec);
        }
        for arg in keys {
            // URLs here have no '=', keys may (base64 padding): split at the first one.
            let Some((u, k)) = arg.split_once('=') else {
                return Err(GatewayConfigError::BadKeyArg { arg: arg.clone() });
            };
            let spec = UpstreamSpec::parse(u)?;
            if k.is_empty() || !k.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(GatewayConfigError::BadKey { url: spec.url });
            }
            let Some(up) = ups.iter_mut().find(|x| x.url == spec.url) else {
                return Err(GatewayConfigError::KeyForUnknownUpstream { url: spec.url });
            };
            up.key = Some(k.to_string());
        }
        Ok(ups)
    }

    /// `Authorization: Bearer KEY`, if a key is set.
    pub(crate) fn authorization(&self) -> Option<HeaderValue> {
        let k = self.key.as_ref()?;
        let mut v = HeaderValue::from_str(&format!("Bearer {k}")).ok()?;
        v.set_sensitive(true);
        Some(v)
    }
}

/// Why a request to an upstream got no response.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SendError {
    #[error("connecting: {0}")]
    Connect(String),
    #[error("connecting: no connection within {0:?}")]
    ConnectTimeout(Duration),
    #[error("{0}")]
    Http(String),
    #[error("no response within {0:?}")]
    Timeout(Duration),
}

/// The timeouts of one call.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Timeouts {
    pub connect: Duration,
    /// Until the response's headers.
    pub response: Duration,
}

/// Sends `req` on a new connection; the response body streams from the connection.
pub(crate) async fn send(
    spec: &UpstreamSpec,
    req: Request<Full<Bytes>>,
    t: Timeouts,
) -> Result<Response<Incoming>, SendError> {
    let stream = match tokio::time::timeout(
        t.connect,
        tokio::net::TcpStream::connect(&spec.authority),
    )
    .await
    {
        Err(_) => return Err(SendError::ConnectTimeout(t.connect)),
        Ok(Err(e)) => return Err(SendError::Connect(e.to_string())),
        Ok(Ok(s)) => s,
    };
    let _ = stream.set_nodelay(true);
    let call = async move {
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| SendError::Http(e.to_string()))?;
        // The connection runs until the response body is read or dropped.
        tokio::spawn(async move {
            let _ = conn.await;
        });
        sender
            .send_request(req)
            .await
            .map_err(|e| SendError::Http(describe(&e)))
    };
    match tokio::time::timeout(t.response, call).await {
        Err(_) => Err(SendError::Timeout(t.response)),
        Ok(r) => r,
    }
}

/// hyper's error with its cause ("connection closed before message completed", ...).
pub(crate) fn describe(e: &hyper::Error) -> String {
    use std::error::Error;
    match e.source() {
        Some(s) => format!("{e}: {s}"),
        None => e.to_string(),
    }
}

/// A request to `spec` for `path` (after the prefix), with its Host and key; `json` adds
/// the JSON content type.
pub(crate) fn request(
    spec: &UpstreamSpec,
    method: Method,
    path: &str,
    json: bool,
) -> axum::http::request::Builder {
    let mut b = Request::builder()
        .method(method)
        .uri(format!("{}{path}", spec.prefix))
        .header(header::HOST, &spec.authority)
        .header(
            header::USER_AGENT,
            concat!("hearth-gateway/", env!("CARGO_PKG_VERSION")),
        );
    if json {
        b = b.header(header::CONTENT_TYPE, "application/json");
    }
    if let Some(auth) = spec.authorization() {
        b = b.header(header::AUTHORIZATION, auth);
    }
    b
}

/// GETs `path` and reads at most `limit` bytes of the answer, all within `t.response`.
pub(crate) async fn get(
    spec: &UpstreamSpec,
    path: &str,
    limit: usize,
    t: Timeouts,
) -> Result<(StatusCode, Bytes), SendError> {
    let req = request(spec, Method::GET, path, false)
        .body(Full::new(Bytes::new()))
        .map_err(|e| SendError::Http(e.to_string()))?;
    let call = async {
        let resp = send(spec, req, t).await?;
        let status = resp.status();
        let body = Limited::new(resp.into_body(), limit)
            .collect()
            .await
            .map_err(|e| SendError::Http(e.to_string()))?
            .to_bytes();
        Ok((status, body))
    };
    match tokio::time::timeout(t.response, call).await {
        Err(_) => Err(SendError::Timeout(t.response)),
        Ok(r) => r,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_normalized() {
        let u = UpstreamSpec::parse("http://127.0.0.1:8081/").unwrap();
        assert_eq!(
            (u.url.as_str(), u.authority.as_str(), u.prefix.as_str()),
            ("http://127.0.0.1:8081", "127.0.0.1:8081", "")
        );
        let u = UpstreamSpec::parse("HTTP://box:11434/v1").unwrap();
        assert_eq!(
            (u.url.as_str(), u.prefix.as_str()),
            ("http://box:11434", "")
        );
        let u = UpstreamSpec::parse("box/llm/v1/").unwrap();
        assert_eq!(
            (u.url.as_str(), u.prefix.as_str()),
            ("http://box:80/llm", "/llm")
        );
        let u = UpstreamSpec::parse("http://[::1]:9000").unwrap();
        assert_eq!(u.authority, "[::1]:9000");
    }

    #[test]
    fn bad_urls_are_refused_with_the_reason() {
        for (url, reason) in [
            ("https://x:1", "https is not supported"),
            ("ftp://x", "expected an http:// URL"),
            ("http://x:0", "the port must be"),
            ("http://x:99999", "the port must be"),
            ("http://:8080", "no host"),
            ("http://user:pw@x:1", "without spaces"),
            ("http://x:1/a?b=c", "without spaces"),
            ("http://[::1", "unclosed"),
        ] {
            let e = UpstreamSpec::parse(url).unwrap_err().to_string();
            assert!(e.contains(reason), "{url}: {e}");
        }
    }

    #[test]
    fn keys_attach_to_their_upstream_and_are_not_printed() {
        let urls = ["http://a:1".to_string(), "http://b:2/v1".to_string()];
        let keys = ["http://b:2/=s3cr=t=".to_string()];
        let ups = UpstreamSpec::parse_all(&urls, &keys).unwrap();
        assert_eq!(ups[0].key, None);
        assert_eq!(ups[1].key.as_deref(), Some("s3cr=t="));
        assert_eq!(
            ups[1].authorization().unwrap().to_str().unwrap(),
            "Bearer s3cr=t="
        );
        assert!(!format!("{:?}", ups[1]).contains("s3cr"));
        let e = UpstreamSpec::parse_all(&urls, &["http://c:3=k".into()]).unwrap_err();
        assert!(
            matches!(e, GatewayConfigError::KeyForUnknownUpstream { .. }),
            "{e}"
        );
        let e = UpstreamSpec::parse_all(&urls, &["http://a:1".into()]).unwrap_err();
        assert!(matches!(e, GatewayConfigError::BadKeyArg { .. }), "{e}");
        let e = UpstreamSpec::parse_all(&urls, &["http://a:1=two words".into()]).unwrap_err();
        assert!(matches!(e, GatewayConfigError::BadKey { .. }), "{e}");
        let dup = ["http://a:1".to_string(), "a:1/".to_string()];
        let e = UpstreamSpec::parse_all(&dup, &[]).unwrap_err();
        assert!(matches!(e, GatewayConfigError::Duplicate { .. }), "{e}");
    }
}
