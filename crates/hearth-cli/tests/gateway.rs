//! `hearth serve --upstream` and `--gateway-only` end to end: real `hearth serve` processes
//! on 127.0.0.1 with the default model, driven by a plain HTTP/1.1 client whose every call
//! has a timeout (a hang fails the test instead of stalling it).
//!
//! The tests take a lock so that only one group of servers computes at a time (the machine
//! may have two cores); each model server runs on one thread.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::http::Resp;
use serde_json::{json, Value};

static HEAVY: Mutex<()> = Mutex::new(());

fn heavy() -> std::sync::MutexGuard<'static, ()> {
    HEAVY.lock().unwrap_or_else(|e| e.into_inner())
}

/// The default model's name on a server without `--alias`.
const MODEL: &str = "gemma-3-270m-q4_k_m";
/// Longest any single client call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(90);

/// A running `hearth serve`, killed on drop.
struct Node {
    child: Child,
    addr: String,
}

impl Node {
    /// A server of the default model (one thread) with `args`.
    fn model(args: &[&str]) -> Node {
        let mut extra = vec!["-m".to_string(), common::gemma().display().to_string()];
        extra.extend(["-t", "1"].map(String::from));
        extra.extend(args.iter().map(|s| s.to_string()));
        Node::start(&extra)
    }

    /// `hearth serve --port 0 ARGS`, once `/health` answers 200.
    fn start(args: &[String]) -> Node {
        let mut child = Command::new(env!("CARGO_BIN_EXE_hearth"))
            .arg("serve")
            .args(["--port", "0"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting hearth serve");
        // The first line is `listening on http://ADDR`.
        let mut out = child.stdout.take().unwrap();
        let mut line = Vec::new();
        let mut b = [0u8; 1];
        while out.read(&mut b).expect("reading the listening line") == 1 && b[0] != b'\n' {
            line.push(b[0]);
        }
        let line = String::from_utf8_lossy(&line).into_owned();
        let addr = line
            .trim()
            .strip_prefix("listening on http://")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_string();
        let node = Node { child, addr };
        let t0 = Instant::now();
        while node.get("/health").status != 200 {
            assert!(t0.elapsed() < Duration::from_secs(60), "load timed out");
            std::thread::sleep(Duration::from_millis(50));
        }
        node
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn get(&self, path: &str) -> Resp {
        http(&self.addr, "GET", path, &[], b"").unwrap_or_else(|e| panic!("GET {path}: {e}"))
    }

    fn post(&self, path: &str, body: &Value) -> Resp {
        self.post_with(path, &[], body)
    }

    fn post_with(&self, path: &str, headers: &[(&str, &str)], body: &Value) -> Resp {
        let mut h = vec![("Content-Type", "application/json")];
        h.extend_from_slice(headers);
        http(&self.addr, "POST", path, &h, body.to_string().as_bytes())
            .unwrap_or_else(|e| panic!("POST {path}: {e}"))
    }

    /// The value of the /metrics line that starts with `hearth_{series}`.
    fn metric(&self, series: &str) -> f64 {
        let text = self.get("/metrics").text();
        let prefix = format!("hearth_{series} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .unwrap_or_else(|| panic!("no {prefix} in /metrics:\n{text}"))
            .trim()
            .parse()
            .unwrap()
    }

    fn routed(&self, upstream: &Node, outcome: &str) -> f64 {
        self.metric(&format!(
            "gateway_requests_total{{upstream=\"{}\",outcome=\"{outcome}\"}}",
            upstream.url()
        ))
    }

    fn healthy(&self, upstream: &Node) -> bool {
        self.metric(&format!(
            "gateway_upstream_healthy{{upstream=\"{}\"}}",
            upstream.url()
        )) == 1.0
    }

    fn outstanding(&self, upstream: &Node) -> f64 {
        self.metric(&format!(
            "gateway_upstream_outstanding{{upstream=\"{}\"}}",
            upstream.url()
        ))
    }

    /// Waits until this gateway's health checks have found `ups` up and `/v1/models` lists
    /// exactly `models`.
    fn wait_upstreams(&self, ups: &[&Node], models: &[&str]) {
        let t0 = Instant::now();
        loop {
            let listed: Vec<String> = self.get("/v1/models").json()["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m["id"].as_str().unwrap().to_string())
                .collect();
            if listed == models && ups.iter().all(|u| self.healthy(u)) {
                return;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(30),
                "upstreams not healthy: {}",
                self.get("/metrics").text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Parses a whole `Connection: close` response; an incomplete one is an error.
fn parse_response(raw: &[u8]) -> Result<Resp, String> {
    let lossy = || String::from_utf8_lossy(raw).into_owned();
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| format!("no header end in {:?}", lossy()))?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line in {head:?}"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    let chunked = headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    if chunked {
        let mut out = Vec::new();
        let mut rest = &body[..];
        loop {
            let p = rest
                .windows(2)
                .position(|w| w == b"\r\n")
                .ok_or_else(|| format!("chunked body cut off: {:?}", lossy()))?;
            let n = usize::from_str_radix(String::from_utf8_lossy(&rest[..p]).trim(), 16)
                .map_err(|e| format!("bad chunk size ({e}): {:?}", lossy()))?;
            if n == 0 {
                break;
            }
            if rest.len() < p + 2 + n + 2 {
                return Err(format!("chunk cut off: {:?}", lossy()));
            }
            out.extend_from_slice(&rest[p + 2..p + 2 + n]);
            rest = &rest[p + 2 + n + 2..];
        }
        body = out;
    } else if let Some(len) = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse::<usize>().ok())
    {
        if body.len() != len {
            return Err(format!("{} of {len} body bytes: {:?}", body.len(), lossy()));
        }
    }
    Ok(Resp {
        status,
        headers,
        body,
    })
}

fn connect(addr: &str) -> Result<TcpStream, String> {
    let sa: SocketAddr = addr.parse().map_err(|e| format!("{addr}: {e}"))?;
    let s = TcpStream::connect_timeout(&sa, Duration::from_secs(10))
        .map_err(|e| format!("connecting to {addr}: {e}"))?;
    s.set_read_timeout(Some(CALL_TIMEOUT)).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
    Ok(s)
}

fn request_bytes(method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    let mut bytes = req.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

/// One request on a fresh connection. A dropped connection, a cut-off body or a read that
/// takes longer than [`CALL_TIMEOUT`] is an error.
fn http(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<Resp, String> {
    let mut s = connect(addr)?;
    s.write_all(&request_bytes(method, path, headers, body))
        .map_err(|e| format!("sending: {e}"))?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).map_err(|e| {
        format!(
            "reading (after {} bytes): {e}: {:?}",
            raw.len(),
            String::from_utf8_lossy(&raw)
        )
    })?;
    parse_response(&raw)
}

/// A streaming request whose first SSE event has arrived.
struct Stream {
    sock: TcpStream,
    raw: Vec<u8>,
}

impl Stream {
    fn start(addr: &str, path: &str, body: &Value) -> Stream {
        let mut sock = connect(addr).unwrap();
        sock.write_all(&request_bytes(
            "POST",
            path,
            &[("Content-Type", "application/json")],
            body.to_string().as_bytes(),
        ))
        .unwrap();
        let mut raw = Vec::new();
        let mut buf = [0u8; 4096];
        while !String::from_utf8_lossy(&raw).contains("data: ") {
            let n = sock.read(&mut buf).expect("reading the first event");
            assert!(
                n > 0,
                "stream ended early: {}",
                String::from_utf8_lossy(&raw)
            );
            raw.extend_from_slice(&buf[..n]);
        }
        Stream { sock, raw }
    }

    /// The whole response (the connection closes after it).
    fn finish(mut self) -> Resp {
        self.sock
            .read_to_end(&mut self.raw)
            .expect("reading the rest of the stream");
        parse_response(&self.raw).unwrap()
    }
}

/// A chat request that generates exactly `n` tokens.
fn chat(n: usize, stream: bool) -> Value {
    json!({
        "messages": [{"role": "user", "content": "Tell me a story about a fox."}],
        "max_tokens": n, "ignore_eos": true, "temperature": 0, "stream": stream,
    })
}

/// Asserts a 200 chat or completion answer with generated text; returns it.
fn assert_answer(r: &Resp, what: &str) -> Value {
    assert_eq!(r.status, 200, "{what}: {}", r.text());
    let j = r.json();
    let c = &j["choices"][0];
    let text = c["message"]["content"].as_str().or(c["text"].as_str());
    assert!(text.is_some_and(|t| !t.is_empty()), "{what}: {j}");
    assert!(
        j["usage"]["completion_tokens"].as_u64().unwrap() >= 1,
        "{what}: {j}"
    );
    j
}

/// Asserts an SSE answer: several chunks with content, ending with `[DONE]`.
fn assert_stream(r: &Resp, what: &str) {
    assert_eq!(r.status, 200, "{what}: {}", r.text());
    assert!(
        r.header("content-type")
            .is_some_and(|c| c.starts_with("text/event-stream")),
        "{what}: {:?}",
        r.headers
    );
    let events = r.sse();
    assert!(events.len() >= 4, "{what}: {events:?}");
    assert_eq!(events.last().unwrap(), "[DONE]", "{what}: {events:?}");
    let text: String = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str::<Value>(e).unwrap())
        .filter_map(|j| {
            j["choices"][0]["delta"]["content"]
                .as_str()
                .map(String::from)
        })
        .collect();
    assert!(!text.is_empty(), "{what}: {events:?}");
}

/// Runs `f` on `n` threads at once; returns their results in order.
fn concurrently<T: Send + 'static>(
    n: usize,
    f: impl Fn(usize) -> T + Send + Sync + Clone + 'static,
) -> Vec<T> {
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(n));
    let handles: Vec<_> = (0..n)
        .map(|i| {
            let (f, barrier) = (f.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                f(i)
            })
        })
        .collect();
    handles.into_iter().map(|h| h.join().unwrap()).collect()
}

#[test]
fn a_node_forwards_other_models_requests_too_long_for_it_and_its_queue_overflow() {
    let _g = heavy();
    let b = Node::model(&[
        "--alias",
        "gemma-b",
        "--parallel",
        "2",
        "--max-queue",
        "8",
        "-c",
        "512",
    ]);
    let a = Node::model(&[
        "--parallel",
        "1",
        "--max-queue",
        "1",
        "-c",
        "96",
        "--upstream",
        &b.url(),
        "--upstream-health-interval",
        "0.2",
    ]);
    // /v1/models: the local model, then the upstream's.
    a.wait_upstreams(&[&b], &[MODEL, "gemma-b"]);

    // A model this node does not serve goes upstream.
    let mut req = chat(8, false);
    req["model"] = json!("gemma-b");
    let j = assert_answer(&a.post("/v1/chat/completions", &req), "another model");
    assert_eq!(j["model"], "gemma-b");
    assert_eq!(a.metric("gateway_forwarded_total{reason=\"model\"}"), 1.0);
    let r = a.post(
        "/v1/embeddings",
        &json!({"model": "gemma-b", "input": "a fox"}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["model"], "gemma-b");
    assert!(r.json()["data"][0]["embedding"].as_array().unwrap().len() > 100);
    // Streams pass through as SSE chunks.
    let mut req = chat(12, true);
    req["model"] = json!("gemma-b");
    assert_stream(&a.post("/v1/chat/completions", &req), "stream upstream");

    // What fits is served here; what does not fit the 96-token context goes upstream.
    let prompt = "The capital of France is";
    let fits = json!({"prompt": prompt, "max_tokens": 8, "temperature": 0});
    let j = assert_answer(&a.post("/v1/completions", &fits), "fits");
    assert_eq!(j["model"], MODEL);
    let long = json!({"prompt": prompt, "max_tokens": 120, "temperature": 0});
    let j = assert_answer(&a.post("/v1/completions", &long), "too long here");
    assert_eq!(j["model"], "gemma-b");
    assert_eq!(a.metric("gateway_forwarded_total{reason=\"context\"}"), 1.0);
    let local_before = a.metric("gateway_local_total");
    assert_eq!(local_before, 1.0);

    // One slot and one queue place here: the rest of a burst is served by the other node.
    let addr = a.addr.clone();
    let results = concurrently(5, move |i| {
        let body = json!({"prompt": format!("Fact {i}: the sky"), "max_tokens": 24,
                          "ignore_eos": true, "temperature": 0});
        http(
            &addr,
            "POST",
            "/v1/completions",
            &[("Content-Type", "application/json")],
            body.to_string().as_bytes(),
        )
    });
    let mut local = 0;
    let mut upstream = 0;
    for r in &results {
        let r = r.as_ref().expect("every request gets an answer");
        let j = assert_answer(r, "burst");
        match j["model"].as_str().unwrap() {
            MODEL => local += 1,
            "gemma-b" => upstream += 1,
            other => panic!("served by {other}"),
        }
    }
    assert!((1..=2).contains(&local), "{local} served locally");
    assert!(upstream >= 3, "{upstream} served upstream");
    assert_eq!(a.metric("gateway_local_total") - local_before, local as f64);
    assert_eq!(
        a.metric("gateway_forwarded_total{reason=\"queue\"}"),
        upstream as f64
    );
    // Model, embeddings, stream, too long, and the burst's overflow.
    assert_eq!(a.routed(&b, "ok"), 4.0 + upstream as f64);
    assert_eq!(a.routed(&b, "error") + a.routed(&b, "retry"), 0.0);
    // Nothing was refused along the way.
    assert_eq!(a.metric("gateway_unavailable_total"), 0.0);
}

#[test]
fn a_gateway_balances_uses_upstream_keys_streams_and_fails_over() {
    let _g = heavy();
    let b = Node::model(&[
        "--api-key",
        "key-b",
        "--parallel",
        "1",
        "--max-queue",
        "8",
        "-c",
        "512",
    ]);
    let c = Node::model(&["--parallel", "1", "--max-queue", "8", "-c", "512"]);
    let mut nodes = [Some(b), Some(c)];
    let g = Node::start(&[
        "--gateway-only".to_string(),
        "--upstream".to_string(),
        format!(
            "{},{}",
            nodes[0].as_ref().unwrap().url(),
            nodes[1].as_ref().unwrap().url()
        ),
        "--upstream-key".to_string(),
        format!("{}=key-b", nodes[0].as_ref().unwrap().url()),
        "--upstream-health-interval".to_string(),
        "0.3".to_string(),
    ]);
    {
        let [Some(b), Some(c)] = &nodes else {
            unreachable!()
        };
        // One model, listed once though both serve it.
        g.wait_upstreams(&[b, c], &[MODEL]);
        // Nothing is served by the gateway itself.
        let r = g.post("/completion", &json!({"prompt": "hi"}));
        assert_eq!(r.status, 501, "{}", r.text());

        // B wants its key; through the gateway the client needs none, and its own key is
        // not what B gets.
        let mut req = chat(4, false);
        req["model"] = json!(MODEL);
        assert_eq!(b.post("/v1/chat/completions", &req).status, 401);
        for _ in 0..2 {
            let r = g.post_with(
                "/v1/chat/completions",
                &[("Authorization", "Bearer not-the-key")],
                &req,
            );
            assert_answer(&r, "through the gateway");
        }
        assert_eq!(g.routed(b, "ok"), 1.0, "round robin: one each");
        assert_eq!(g.routed(c, "ok"), 1.0);

        // A burst is spread by outstanding requests.
        let addr = g.addr.clone();
        let results = concurrently(4, move |_| {
            let body = chat(24, false).to_string();
            http(
                &addr,
                "POST",
                "/v1/chat/completions",
                &[("Content-Type", "application/json")],
                body.as_bytes(),
            )
        });
        for r in &results {
            assert_answer(r.as_ref().expect("an answer"), "burst");
        }
        assert_eq!(g.routed(b, "ok"), 3.0);
        assert_eq!(g.routed(c, "ok"), 3.0);

        // SSE through the gateway: several chunks, then [DONE].
        assert_stream(&g.post("/v1/chat/completions", &chat(12, true)), "stream");
    }

    // Failover. A stream runs on X; a non-streamed request then goes to the other, Y
    // (fewer outstanding); Y is killed mid-generation: the request is retried on X (no
    // byte had gone to the client), the stream on X goes on.
    let s1 = Stream::start(&g.addr, "/v1/chat/completions", &chat(96, true));
    let x = (0..2)
        .find(|&i| g.outstanding(nodes[i].as_ref().unwrap()) == 1.0)
        .expect("the stream is outstanding somewhere");
    let y = 1 - x;
    let addr = g.addr.clone();
    let n1 = std::thread::spawn(move || {
        let body = json!({"prompt": "Once upon a time", "max_tokens": 64, "ignore_eos": true});
        http(
            &addr,
            "POST",
            "/v1/completions",
            &[("Content-Type", "application/json")],
            body.to_string().as_bytes(),
        )
    });
    let t0 = Instant::now();
    while g.outstanding(nodes[y].as_ref().unwrap()) < 1.0 {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "the request did not reach Y"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(300));
    let mut dead = nodes[y].take().unwrap();
    dead.kill();
    let n1 = n1
        .join()
        .unwrap()
        .expect("an answer, not a dropped connection");
    assert_answer(&n1, "retried after its upstream died");
    assert_stream(&s1.finish(), "the stream on the surviving node");
    assert!(!g.healthy(&dead));
    assert_eq!(g.routed(&dead, "retry"), 1.0);

    // Everything after is served by the survivor, streams included, without hangs.
    let addr = g.addr.clone();
    let results = concurrently(3, move |_| {
        let body = chat(8, false).to_string();
        http(
            &addr,
            "POST",
            "/v1/chat/completions",
            &[("Content-Type", "application/json")],
            body.as_bytes(),
        )
    });
    for r in &results {
        assert_answer(r.as_ref().expect("an answer"), "after the failover");
    }
    assert_stream(
        &g.post("/v1/chat/completions", &chat(8, true)),
        "stream after failover",
    );
    assert_eq!(g.get("/v1/models").json()["data"][0]["id"], MODEL);
    assert_eq!(g.get("/health").status, 200);
    assert_eq!(g.metric("gateway_unavailable_total"), 0.0);

    // With no upstream left, requests get an OpenAI-shaped error at once.
    nodes[x].take().unwrap().kill();
    let t0 = Instant::now();
    for _ in 0..2 {
        let r = g.post("/v1/chat/completions", &chat(4, false));
        assert!(matches!(r.status, 502 | 503), "{}", r.text());
        let e = &r.json()["error"];
        assert!(
            e["message"].is_string() && e["type"].is_string() && e["code"].is_string(),
            "{e}"
        );
    }
    assert!(t0.elapsed() < Duration::from_secs(15), "{:?}", t0.elapsed());
}
