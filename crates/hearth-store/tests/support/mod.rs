//! A tiny HTTP/1.1 server on 127.0.0.1 for the pull tests: each connection
//! gets one response (`Connection: close`) chosen by a handler from the
//! request and how many times its path was asked for before; every request
//! is logged for the assertions.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A request as the server saw it.
#[derive(Clone, Debug)]
pub struct Request {
    /// Path with query.
    pub path: String,
    /// Header names lower-cased.
    pub headers: Vec<(String, String)>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// What to answer.
pub enum Reply {
    /// 200 with the bytes, or 206 for a satisfiable `Range: bytes=N-` if
    /// `ranges`; extra headers added.
    File {
        bytes: Arc<Vec<u8>>,
        ranges: bool,
        headers: Vec<(String, String)>,
    },
    /// 200 announcing `bytes.len()` but sending only the first `send` bytes,
    /// then closing.
    Truncated { bytes: Arc<Vec<u8>>, send: usize },
    /// A redirect to `location`.
    Redirect { status: u16, location: String },
    /// Any status with a body.
    Status {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    },
    /// Wait, then answer.
    Delayed(Duration, Box<Reply>),
}

impl Reply {
    pub fn file(bytes: &Arc<Vec<u8>>) -> Reply {
        Reply::File {
            bytes: bytes.clone(),
            ranges: true,
            headers: Vec::new(),
        }
    }
    pub fn status(status: u16) -> Reply {
        Reply::Status {
            status,
            headers: Vec::new(),
            body: format!("status {status}\n").into_bytes(),
        }
    }
    pub fn json(body: String) -> Reply {
        Reply::Status {
            status: 200,
            headers: vec![("Content-Type".into(), "application/json".into())],
            body: body.into_bytes(),
        }
    }
}

type Handler = dyn Fn(&Request, usize) -> Reply + Send + Sync;

pub struct Server {
    pub base: String,
    log: Arc<Mutex<Vec<Request>>>,
}

impl Server {
    /// Serves `handler` on 127.0.0.1 (an ephemeral port) until the test
    /// process ends.
    pub fn start(handler: impl Fn(&Request, usize) -> Reply + Send + Sync + 'static) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binding 127.0.0.1:0");
        let base = format!("http://{}", listener.local_addr().unwrap());
        let log: Arc<Mutex<Vec<Request>>> = Arc::default();
        let counts: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
        let handler: Arc<Handler> = Arc::new(handler);
        let server_log = log.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let (log, counts, handler) = (server_log.clone(), counts.clone(), handler.clone());
                std::thread::spawn(move || {
                    let _ = serve(stream, &log, &counts, &*handler);
                });
            }
        });
        Server { base, log }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Request> {
        self.log.lock().unwrap().clone()
    }

    /// The requests for `path` so far.
    pub fn requests_for(&self, path: &str) -> Vec<Request> {
        self.requests()
            .into_iter()
            .filter(|r| r.path == path)
            .collect()
    }

    /// Waits (at most 10 s) until `path` has been asked for.
    pub fn wait_for(&self, path: &str) {
        let start = Instant::now();
        while self.requests_for(path).is_empty() {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "no request for {path}"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

fn serve(
    stream: TcpStream,
    log: &Mutex<Vec<Request>>,
    counts: &Mutex<HashMap<String, usize>>,
    handler: &Handler,
) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    let req = Request { path, headers };
    log.lock().unwrap().push(req.clone());
    let n = {
        let mut c = counts.lock().unwrap();
        let n = c.entry(req.path.clone()).or_insert(0);
        *n += 1;
        *n - 1
    };
    let reply = handler(&req, n);
    respond(stream, &req, reply)
}

fn respond(mut stream: TcpStream, req: &Request, reply: Reply) -> std::io::Result<()> {
    let head = |status: u16, reason: &str, headers: &[(String, String)], len: usize| {
        let mut s =
            format!("HTTP/1.1 {status} {reason}\r\nConnection: close\r\nContent-Length: {len}\r\n");
        for (k, v) in headers {
            s.push_str(&format!("{k}: {v}\r\n"));
        }
        s.push_str("\r\n");
        s
    };
    match reply {
        Reply::Delayed(d, inner) => {
            std::thread::sleep(d);
            return respond(stream, req, *inner);
        }
        Reply::File {
            bytes,
            ranges,
            mut headers,
        } => {
            let start = req
                .header("range")
                .and_then(|r| r.strip_prefix("bytes="))
                .and_then(|r| r.strip_suffix('-'))
                .and_then(|n| n.parse::<usize>().ok());
            match start {
                Some(s) if ranges && s < bytes.len() => {
                    headers.push((
                        "Content-Range".into(),
                        format!("bytes {s}-{}/{}", bytes.len() - 1, bytes.len()),
                    ));
                    let h = head(206, "Partial Content", &headers, bytes.len() - s);
                    stream.write_all(h.as_bytes())?;
                    stream.write_all(&bytes[s..])?;
                }
                Some(s) if ranges => {
                    headers.push(("Content-Range".into(), format!("bytes */{}", bytes.len())));
                    stream.write_all(head(416, "Range Not Satisfiable", &headers, 0).as_bytes())?;
                    let _ = s;
                }
                _ => {
                    stream.write_all(head(200, "OK", &headers, bytes.len()).as_bytes())?;
                    stream.write_all(&bytes)?;
                }
            }
        }
        Reply::Truncated { bytes, send } => {
            stream.write_all(head(200, "OK", &[], bytes.len()).as_bytes())?;
            stream.write_all(&bytes[..send])?;
            stream.flush()?;
            // Close at once (RST or FIN): the client sees a short body.
            let _ = stream.shutdown(Shutdown::Both);
            return Ok(());
        }
        Reply::Redirect { status, location } => {
            let headers = vec![("Location".to_string(), location)];
            stream.write_all(head(status, "Found", &headers, 0).as_bytes())?;
        }
        Reply::Status {
            status,
            headers,
            body,
        } => {
            stream.write_all(head(status, "Status", &headers, body.len()).as_bytes())?;
            stream.write_all(&body)?;
        }
    }
    stream.flush()?;
    let _ = stream.shutdown(Shutdown::Write);
    Ok(())
}

/// A small GGUF: header with one key (`general.architecture = "llama"`), no
/// tensors, then `len - header` deterministic filler bytes (the store only
/// checks the magic; the filler makes the transfer long enough to cut).
pub fn tiny_gguf(len: usize) -> Vec<u8> {
    let mut b = Vec::with_capacity(len);
    b.extend_from_slice(b"GGUF");
    b.extend_from_slice(&3u32.to_le_bytes());
    b.extend_from_slice(&0u64.to_le_bytes());
    b.extend_from_slice(&1u64.to_le_bytes());
    let key = b"general.architecture";
    b.extend_from_slice(&(key.len() as u64).to_le_bytes());
    b.extend_from_slice(key);
    b.extend_from_slice(&8u32.to_le_bytes());
    b.extend_from_slice(&5u64.to_le_bytes());
    b.extend_from_slice(b"llama");
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    while b.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        b.push(x as u8);
    }
    b
}

/// Lower-case hex sha256 of `bytes`.
pub fn sha256(bytes: &[u8]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("x");
    std::fs::write(&p, bytes).unwrap();
    hearth_store::sha256_file(&p).unwrap()
}
