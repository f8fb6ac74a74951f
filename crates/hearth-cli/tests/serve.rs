//! `hearth serve` end to end: the real binary on 127.0.0.1 with the default model, driven
//! by a plain HTTP/1.1 client (every RELIABILITY.md HTTP case), by the official `openai` and
//! `ollama` Python packages, and by a bounded load test.
//!
//! The tests take a lock so that only one server computes at a time (the machine may have
//! two cores).

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::http::Resp;
use serde_json::{json, Value};

static HEAVY: Mutex<()> = Mutex::new(());

fn heavy() -> std::sync::MutexGuard<'static, ()> {
    HEAVY.lock().unwrap_or_else(|e| e.into_inner())
}

const MODEL: &str = "gemma-3-270m-q4_k_m";

/// A running `hearth serve`, killed on drop.
struct Server {
    child: Child,
    addr: String,
}

impl Server {
    fn start(args: &[&str]) -> Server {
        let model = hearth_store::default_model().expect("fetching the default model");
        let mut child = Command::new(env!("CARGO_BIN_EXE_hearth"))
            .arg("serve")
            .arg("-m")
            .arg(&model)
            .args(["--port", "0", "-t", "2"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting hearth serve");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .expect("reading the listening line");
        let addr = line
            .trim()
            .strip_prefix("listening on http://")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_string();
        let server = Server { child, addr };
        let t0 = Instant::now();
        loop {
            let r = server.get("/health");
            if r.status == 200 {
                break;
            }
            assert_eq!(r.status, 503, "/health while loading: {}", r.text());
            assert!(
                t0.elapsed() < Duration::from_secs(60),
                "model load timed out"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn get(&self, path: &str) -> Resp {
        http(&self.addr, "GET", path, &[], b"")
    }

    fn post(&self, path: &str, body: &Value) -> Resp {
        http(
            &self.addr,
            "POST",
            path,
            &[("Content-Type", "application/json")],
            body.to_string().as_bytes(),
        )
    }

    fn post_raw(&self, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Resp {
        http(&self.addr, "POST", path, headers, body)
    }

    /// Waits until no slot is processing (or panics after `limit`).
    fn wait_idle(&self, limit: Duration) {
        let t0 = Instant::now();
        loop {
            let slots = self.get("/slots").json();
            let busy = slots
                .as_array()
                .unwrap()
                .iter()
                .filter(|s| s["is_processing"] == true)
                .count();
            if busy == 0 {
                return;
            }
            assert!(
                t0.elapsed() < limit,
                "slots still busy after {limit:?}: {slots}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn metric(&self, name: &str) -> f64 {
        let text = self.get("/metrics").text();
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("hearth_{name} ")))
            .unwrap_or_else(|| panic!("metric {name} missing:\n{text}"))
            .parse()
            .unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn parse_response(raw: &[u8]) -> Resp {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no header end in {:?}", String::from_utf8_lossy(raw)));
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
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
        while let Some(p) = rest.windows(2).position(|w| w == b"\r\n") {
            let n = usize::from_str_radix(String::from_utf8_lossy(&rest[..p]).trim(), 16).unwrap();
            if n == 0 {
                break;
            }
            out.extend_from_slice(&rest[p + 2..p + 2 + n]);
            rest = &rest[p + 2 + n + 2..];
        }
        body = out;
    }
    Resp {
        status,
        headers,
        body,
    }
}

fn connect(addr: &str) -> TcpStream {
    let s = TcpStream::connect(addr).expect("connecting");
    s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    s
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

fn http(addr: &str, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Resp {
    let mut s = connect(addr);
    s.write_all(&request_bytes(method, path, headers, body))
        .expect("sending");
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    parse_response(&raw)
}

fn hearth_run(prompt: &str, n: usize) -> String {
    let model = hearth_store::default_model().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_hearth"))
        .arg("run")
        .arg("-m")
        .arg(&model)
        .args(["-p", prompt, "-n", &n.to_string(), "--temp", "0", "-t", "2"])
        .output()
        .expect("hearth run");
    assert!(out.status.success());
    let s = String::from_utf8(out.stdout).unwrap();
    s.strip_suffix('\n').unwrap_or(&s).to_string()
}

fn assert_openai_error(r: &Resp, status: u16, param: Option<&str>, what: &str) {
    assert_eq!(r.status, status, "{what}: {}", r.text());
    let j = r.json();
    let e = &j["error"];
    assert!(
        e["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{what}: {j}"
    );
    assert!(e["type"].is_string(), "{what}: {j}");
    assert!(
        e.get("param").is_some() && e.get("code").is_some(),
        "{what}: {j}"
    );
    if let Some(p) = param {
        assert_eq!(e["param"], p, "{what}: {j}");
    }
}

fn rss_kib(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[test]
fn greedy_output_equals_hearth_run_and_usage_equals_the_tokenizer() {
    let _g = heavy();
    let prompt = "The capital of France is";
    let expected = hearth_run(prompt, 24);
    let s = Server::start(&["-c", "1024"]);
    let r = s.post(
        "/completion",
        &json!({"prompt": prompt, "n_predict": 24, "temperature": 0}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let native = r.json();
    assert_eq!(native["content"], expected.as_str());
    assert_eq!(native["tokens_predicted"], 24);
    assert_eq!(native["stop_type"], "limit");

    let r = s.post(
        "/v1/completions",
        &json!({"model": MODEL, "prompt": prompt, "max_tokens": 24, "temperature": 0}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let oai = r.json();
    assert_eq!(oai["choices"][0]["text"], expected.as_str());
    assert_eq!(oai["choices"][0]["finish_reason"], "length");
    let toks = s
        .post(
            "/tokenize",
            &json!({"content": prompt, "add_special": true}),
        )
        .json();
    let n_prompt = toks["tokens"].as_array().unwrap().len();
    assert_eq!(oai["usage"]["prompt_tokens"], n_prompt);
    assert_eq!(oai["usage"]["completion_tokens"], 24);
    assert_eq!(oai["usage"]["total_tokens"], n_prompt + 24);
    // The second request reused the first one's prompt from the prefix cache.
    assert!(s.metric("prefix_cache_hits_total") >= 1.0);

    // Token ids as the prompt give the same text; detokenize inverts tokenize.
    let r = s.post(
        "/completion",
        &json!({"prompt": toks["tokens"], "n_predict": 24, "temperature": 0}),
    );
    assert_eq!(r.json()["content"], expected.as_str());
    let d = s
        .post("/detokenize", &json!({"tokens": toks["tokens"]}))
        .json();
    assert!(d["content"].as_str().unwrap().ends_with(prompt), "{d}");

    // Streaming returns the same text in pieces, ending with a stop object.
    let r = s.post(
        "/completion",
        &json!({"prompt": prompt, "n_predict": 24, "temperature": 0, "stream": true}),
    );
    let events = r.sse();
    let text: String = events
        .iter()
        .map(|e| {
            serde_json::from_str::<Value>(e).unwrap()["content"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(text, expected);
    assert_eq!(
        serde_json::from_str::<Value>(events.last().unwrap()).unwrap()["stop"],
        true
    );

    // The other GET endpoints.
    let m = s.get("/v1/models").json();
    assert_eq!(m["data"][0]["id"], MODEL);
    assert_eq!(m["data"][0]["meta"]["n_ctx"], 1024);
    let p = s.get("/props").json();
    assert_eq!(p["total_slots"], 4);
    assert!(p["chat_template"]
        .as_str()
        .unwrap()
        .contains("start_of_turn"));
    let t = s.post(
        "/apply-template",
        &json!({"messages": [{"role": "user", "content": "Hi there"}]}),
    );
    assert_eq!(
        t.json()["prompt"],
        "<start_of_turn>user\nHi there<end_of_turn>\n<start_of_turn>model\n"
    );
    assert_eq!(s.get("/api/version").status, 200);
    let metrics = s.get("/metrics");
    assert!(metrics
        .header("content-type")
        .unwrap()
        .starts_with("text/plain"));
    assert!(metrics
        .text()
        .contains("# TYPE hearth_requests_total counter"));
    assert!(s.metric("tokens_predicted_total") >= 72.0);
    assert_eq!(s.metric("slots_total"), 4.0);
}

#[test]
fn invalid_requests_get_400_naming_the_field_and_the_server_stays_up() {
    let _g = heavy();
    let s = Server::start(&["-c", "256"]);
    let chat = |extra: Value| {
        let mut b = json!({"model": MODEL, "messages": [{"role": "user", "content": "hi"}]});
        for (k, v) in extra.as_object().unwrap() {
            b[k] = v.clone();
        }
        b
    };
    let cases: Vec<(Value, &str)> = vec![
        (chat(json!({"max_tokens": 0})), "max_tokens"),
        (chat(json!({"max_tokens": -1})), "max_tokens"),
        (
            chat(json!({"max_tokens": 9_223_372_036_854_775_807i64})),
            "max_tokens",
        ),
        (chat(json!({"max_tokens": 300})), "max_tokens"),
        (
            chat(json!({"max_completion_tokens": 10_000})),
            "max_completion_tokens",
        ),
        (chat(json!({"max_tokens": "ten"})), "max_tokens"),
        (chat(json!({"temperature": -0.5})), "temperature"),
        (chat(json!({"temperature": 1e30})), "temperature"),
        (chat(json!({"temperature": "NaN"})), "temperature"),
        (chat(json!({"top_p": 0})), "top_p"),
        (chat(json!({"top_p": 1.5})), "top_p"),
        (chat(json!({"top_k": -1})), "top_k"),
        (chat(json!({"presence_penalty": 3})), "presence_penalty"),
        (
            chat(json!({"frequency_penalty": -2.5})),
            "frequency_penalty",
        ),
        (
            chat(json!({"logprobs": true, "top_logprobs": 21})),
            "top_logprobs",
        ),
        (chat(json!({"n": 0})), "n"),
        (chat(json!({"n": 1000})), "n"),
        (chat(json!({"stop": vec!["x"; 1000]})), "stop"),
        (chat(json!({"stop": "y".repeat(1 << 20)})), "stop"),
        (chat(json!({"logit_bias": {"999999999": 1}})), "logit_bias"),
        (chat(json!({"logit_bias": {"-1": 1}})), "logit_bias"),
        (chat(json!({"logit_bias": {"5": 1000}})), "logit_bias"),
        (
            chat(
                json!({"logit_bias": (0..2000).map(|i| (i.to_string(), json!(1))).collect::<serde_json::Map<_, _>>()}),
            ),
            "logit_bias",
        ),
        (chat(json!({"model": "../../etc/passwd"})), "model"),
        (chat(json!({"model": "sha256:../../x"})), "model"),
        (chat(json!({"messages": []})), "messages"),
        (chat(json!({"messages": "hi"})), "messages"),
        (
            chat(json!({"messages": [{"content": "no role"}]})),
            "messages[0].role",
        ),
        (
            chat(json!({"messages": [{"role": "assistant", "content": null,
                "tool_calls": [{"id": "1", "type": "function", "function": {"name": "f", "arguments": "{not json"}}]}]})),
            "messages[0].tool_calls[0].function.arguments",
        ),
    ];
    for (body, param) in &cases {
        let r = s.post("/v1/chat/completions", body);
        let shown: String = body.to_string().chars().take(120).collect();
        assert_openai_error(&r, 400, Some(param), &shown);
    }
    // Missing required fields.
    let r = s.post("/v1/chat/completions", &json!({"model": MODEL}));
    assert_openai_error(&r, 400, None, "missing messages");
    assert!(r.text().contains("messages"), "{}", r.text());
    let r = s.post("/v1/completions", &json!({"model": MODEL}));
    assert_openai_error(&r, 400, None, "missing prompt");
    // Token ids out of range in a prompt array.
    for ids in [
        json!([1, 2, -1]),
        json!([1, 262_144]),
        json!([[5, 6], [7, 4_000_000_000u64]]),
    ] {
        let r = s.post("/v1/completions", &json!({"prompt": ids, "max_tokens": 1}));
        assert_openai_error(&r, 400, None, &format!("ids {ids}"));
        assert!(r.json()["error"]["param"]
            .as_str()
            .unwrap()
            .starts_with("prompt"));
    }
    let r = s.post("/detokenize", &json!({"tokens": [1, -5]}));
    assert_eq!(r.status, 400, "{}", r.text());
    // Unknown model: 404 in each API's shape.
    let r = s.post("/v1/chat/completions", &chat(json!({"model": "gpt-4"})));
    assert_openai_error(&r, 404, Some("model"), "unknown model");
    assert_eq!(r.json()["error"]["code"], "model_not_found");
    let r = s.post(
        "/api/chat",
        &json!({"model": "nope", "messages": [{"role": "user", "content": "hi"}]}),
    );
    assert_eq!(r.status, 404);
    assert!(
        r.json()["error"].is_string(),
        "Ollama error shape: {}",
        r.text()
    );
    let r = s.post(
        "/api/generate",
        &json!({"model": "sha256:../../../x", "prompt": "hi"}),
    );
    assert_eq!(r.status, 400);
    assert!(r.json()["error"].is_string());
    let r = s.post("/api/generate", &json!({"prompt": "hi"}));
    assert_eq!(r.status, 400, "model is required: {}", r.text());
    let r = s.post(
        "/api/generate",
        &json!({"model": MODEL, "prompt": "hi", "options": {"temperature": "hot"}}),
    );
    assert_eq!(r.status, 400);
    assert!(r.json()["error"]
        .as_str()
        .unwrap()
        .contains("options.temperature"));
    // llama.cpp-native shape.
    let r = s.post("/completion", &json!({"prompt": "hi", "n_predict": -2}));
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"]["code"], 400);
    let r = s.post("/completion", &json!({"prompt": "hi", "n_probs": 50}));
    assert_eq!(r.status, 400);

    // Malformed bodies.
    let json_ct = [("Content-Type", "application/json")];
    type Headers<'a> = &'a [(&'a str, &'a str)];
    let raw_cases: Vec<(Headers, Vec<u8>, &str)> = vec![
        (&json_ct, b"{\"messages\": [".to_vec(), "truncated JSON"),
        (&json_ct, b"".to_vec(), "empty body"),
        (&json_ct, b"not json".to_vec(), "not JSON"),
        (&json_ct, b"{} {}".to_vec(), "trailing data"),
        (&json_ct, b"[1, 2]".to_vec(), "array instead of object"),
        (
            &json_ct,
            b"{\"prompt\": \"\xff\xfe\"}".to_vec(),
            "invalid UTF-8",
        ),
        (&json_ct, "[".repeat(10_000).into_bytes(), "nested 10k deep"),
        (
            &[("Content-Type", "text/plain")],
            b"{\"prompt\": \"x\"}".to_vec(),
            "wrong content type",
        ),
        (
            &[("Content-Type", "application/x-www-form-urlencoded")],
            b"prompt=x".to_vec(),
            "form body",
        ),
    ];
    for (headers, body, what) in &raw_cases {
        for path in ["/v1/completions", "/v1/chat/completions", "/v1/embeddings"] {
            let r = s.post_raw(path, headers, body);
            assert_openai_error(&r, 400, None, &format!("{what} on {path}"));
        }
        let r = s.post_raw("/api/chat", headers, body);
        assert_eq!(r.status, 400, "{what} on /api/chat: {}", r.text());
        assert!(r.json()["error"].is_string(), "{what}: {}", r.text());
    }
    // A body whose Content-Length promises more than arrives before the client closes.
    let mut c = connect(&s.addr);
    c.write_all(b"POST /v1/completions HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"prompt\":")
        .unwrap();
    c.shutdown(std::net::Shutdown::Write).unwrap();
    let mut raw = Vec::new();
    let _ = c.read_to_end(&mut raw);
    if !raw.is_empty() {
        assert_eq!(parse_response(&raw).status, 400);
    }
    // Oversized body: 413 as soon as the declared length is seen (the body is never read).
    for path in ["/v1/completions", "/api/generate"] {
        let mut c = connect(&s.addr);
        c.write_all(
            format!("POST {path} HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n", 5 << 20)
                .as_bytes(),
        )
        .unwrap();
        let mut raw = Vec::new();
        let _ = c.read_to_end(&mut raw);
        let r = parse_response(&raw);
        if path.starts_with("/v1") {
            assert_openai_error(&r, 413, None, "5 MB body");
        } else {
            assert_eq!(r.status, 413);
            assert!(r.json()["error"].is_string());
        }
    }
    // Over the limit without a declared length (chunked): 413 once the bytes pass it.
    let mut c = connect(&s.addr);
    c.write_all(b"POST /v1/embeddings HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
        .unwrap();
    let chunk = format!("{:x}\r\n{}\r\n", 1 << 20, " ".repeat(1 << 20));
    for _ in 0..5 {
        if c.write_all(chunk.as_bytes()).is_err() {
            break;
        }
    }
    let mut raw = Vec::new();
    let _ = c.read_to_end(&mut raw);
    if !raw.is_empty() {
        assert_eq!(parse_response(&raw).status, 413);
    }
    // A prompt longer than the context.
    let r = s.post(
        "/v1/completions",
        &json!({"prompt": "word ".repeat(400), "max_tokens": 4}),
    );
    assert_openai_error(&r, 400, None, "prompt over the context");
    assert_eq!(r.json()["error"]["code"], "context_length_exceeded");
    // Unknown route.
    assert_eq!(s.get("/v1/nothing").status, 404);
    // Still serving.
    let r = s.post(
        "/v1/completions",
        &json!({"prompt": "Hello", "max_tokens": 2, "temperature": 0}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(s.metric("http_server_errors_total"), 0.0);
}

#[test]
fn prompt_at_the_context_limit_ends_with_length_never_truncated() {
    let _g = heavy();
    let s = Server::start(&["-c", "64", "--parallel", "1"]);
    let prompt: Vec<u32> = std::iter::once(2)
        .chain((0..62).map(|i| 1000 + i))
        .collect();
    assert_eq!(prompt.len(), 63);
    let r = s.post(
        "/v1/completions",
        &json!({"prompt": prompt, "temperature": 0, "ignore_eos": true}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let j = r.json();
    assert_eq!(j["choices"][0]["finish_reason"], "length");
    assert_eq!(j["usage"]["prompt_tokens"], 63);
    assert!(j["usage"]["completion_tokens"].as_u64().unwrap() >= 1);
    let mut full = prompt.clone();
    full.push(7);
    let r = s.post("/v1/completions", &json!({"prompt": full}));
    assert_openai_error(&r, 400, None, "prompt of exactly n_ctx tokens");
    let r = s.post(
        "/v1/completions",
        &json!({"prompt": &prompt[..60], "max_tokens": 5}),
    );
    assert_openai_error(&r, 400, Some("max_tokens"), "max_tokens past the context");
    let r = s.post(
        "/v1/completions",
        &json!({"prompt": &prompt[..60], "max_tokens": 4, "temperature": 0}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
}

#[test]
fn api_key_guards_everything_but_health_and_cors_answers_preflight() {
    let _g = heavy();
    let s = Server::start(&["--api-key", "s3cret", "--cors", "http://app.example"]);
    assert_eq!(s.get("/health").status, 200);
    let body = json!({"prompt": "hi", "max_tokens": 1}).to_string();
    let ct = ("Content-Type", "application/json");
    for (path, headers) in [
        ("/v1/completions", vec![ct]),
        (
            "/v1/completions",
            vec![ct, ("Authorization", "Bearer wrong")],
        ),
        (
            "/v1/completions",
            vec![ct, ("Authorization", "Bearer s3cre")],
        ),
        ("/v1/completions", vec![ct, ("Authorization", "s3cret")]),
    ] {
        let r = s.post_raw(path, &headers, body.as_bytes());
        assert_openai_error(&r, 401, None, &format!("{headers:?}"));
        assert_eq!(r.json()["error"]["type"], "authentication_error");
    }
    assert_eq!(http(&s.addr, "GET", "/v1/models", &[], b"").status, 401);
    assert_eq!(http(&s.addr, "GET", "/metrics", &[], b"").status, 401);
    let r = http(&s.addr, "GET", "/api/tags", &[], b"");
    assert_eq!(r.status, 401);
    assert!(r.json()["error"].is_string());
    for auth in [("Authorization", "Bearer s3cret"), ("X-Api-Key", "s3cret")] {
        let r = s.post_raw("/v1/completions", &[ct, auth], body.as_bytes());
        assert_eq!(r.status, 200, "{}", r.text());
    }
    // CORS: the preflight is answered without a key; responses carry the allowed origin.
    let r = http(
        &s.addr,
        "OPTIONS",
        "/v1/chat/completions",
        &[
            ("Origin", "http://app.example"),
            ("Access-Control-Request-Method", "POST"),
        ],
        b"",
    );
    assert_eq!(r.status, 204);
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("http://app.example")
    );
    assert!(r
        .header("access-control-allow-headers")
        .unwrap()
        .contains("authorization"));
    let r = http(
        &s.addr,
        "GET",
        "/v1/models",
        &[
            ("Origin", "http://evil.example"),
            ("Authorization", "Bearer s3cret"),
        ],
        b"",
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.header("access-control-allow-origin"), None);
}

#[test]
fn slow_clients_time_out_and_others_are_still_served() {
    let _g = heavy();
    let s = Server::start(&["--read-timeout", "2"]);
    let t0 = Instant::now();
    // A body that never completes.
    let mut slow_body = connect(&s.addr);
    slow_body
        .write_all(b"POST /v1/completions HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"prompt\":")
        .unwrap();
    // Headers that never complete.
    let mut slow_head = connect(&s.addr);
    slow_head
        .write_all(b"GET /health HTTP/1.1\r\nHost: t\r\nX-Slow: ")
        .unwrap();
    // Meanwhile others are served.
    let r = s.post("/v1/completions", &json!({"prompt": "Hi", "max_tokens": 2}));
    assert_eq!(r.status, 200);
    let mut raw = Vec::new();
    let _ = slow_body.read_to_end(&mut raw);
    let r = parse_response(&raw);
    assert_eq!(r.status, 408, "{}", r.text());
    let mut raw = Vec::new();
    let _ = slow_head.read_to_end(&mut raw);
    // hyper closes the connection (with or without a 408).
    assert!(raw.is_empty() || parse_response(&raw).status == 408);
    assert!(t0.elapsed() < Duration::from_secs(10), "{:?}", t0.elapsed());
    assert_eq!(s.get("/health").status, 200);
}

/// Starts a streaming request and returns the connection after the first data chunk.
fn start_stream(addr: &str, path: &str, body: &Value) -> TcpStream {
    let mut c = connect(addr);
    c.write_all(&request_bytes(
        "POST",
        path,
        &[("Content-Type", "application/json")],
        body.to_string().as_bytes(),
    ))
    .unwrap();
    let mut buf = [0u8; 4096];
    let mut seen = Vec::new();
    while !String::from_utf8_lossy(&seen).contains("data: ") {
        let n = c.read(&mut buf).unwrap();
        assert!(
            n > 0,
            "stream ended early: {}",
            String::from_utf8_lossy(&seen)
        );
        seen.extend_from_slice(&buf[..n]);
    }
    c
}

#[test]
fn client_disconnects_free_their_slot() {
    let _g = heavy();
    let s = Server::start(&["--parallel", "2"]);
    let long =
        json!({"prompt": "Count: 1 2 3", "max_tokens": 2000, "ignore_eos": true, "stream": true});
    // Mid-stream.
    let c = start_stream(&s.addr, "/v1/completions", &long);
    drop(c);
    s.wait_idle(Duration::from_secs(5));
    // A non-streaming request whose client goes away.
    let mut c = connect(&s.addr);
    let body = json!({"prompt": "Count: 1 2 3", "max_tokens": 2000, "ignore_eos": true});
    c.write_all(&request_bytes(
        "POST",
        "/v1/completions",
        &[("Content-Type", "application/json")],
        body.to_string().as_bytes(),
    ))
    .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    drop(c);
    s.wait_idle(Duration::from_secs(5));
    assert!(s.metric("requests_cancelled_total") >= 2.0);
    assert_eq!(s.metric("kv_cache_capacity_tokens"), 8192.0);
    // The server goes on.
    let r = s.post("/v1/completions", &json!({"prompt": "Hi", "max_tokens": 2}));
    assert_eq!(r.status, 200);
}

#[test]
fn sigterm_lets_running_streams_finish_and_exits_zero() {
    let _g = heavy();
    let mut s = Server::start(&["--shutdown-grace", "20"]);
    let body = json!({"model": MODEL, "prompt": "Once upon a time", "max_tokens": 40,
                      "ignore_eos": true, "stream": true});
    let mut c = start_stream(&s.addr, "/v1/completions", &body);
    let st = Command::new("kill")
        .args(["-TERM", &s.pid().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    let mut rest = Vec::new();
    let _ = c.read_to_end(&mut rest);
    let rest = String::from_utf8_lossy(&rest);
    assert!(
        rest.contains("data: [DONE]"),
        "the stream was finished: {rest}"
    );
    let t0 = Instant::now();
    let status = loop {
        if let Some(st) = s.child.try_wait().unwrap() {
            break st;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "no exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "exit status {status:?}");
    // New connections are refused once it is gone.
    assert!(TcpStream::connect(&s.addr).is_err());
}

/// Runs a client script; skips (with a message) only if Python or the package is missing.
fn python_client(script: &str, package: &str) {
    let have = Command::new("python3")
        .args(["-c", &format!("import {package}")])
        .status()
        .is_ok_and(|s| s.success());
    if !have {
        eprintln!(
            "SKIPPED: python3 with the `{package}` package is needed (pip install -r scripts/requirements.txt)"
        );
        return;
    }
    let _g = heavy();
    let s = Server::start(&["-c", "2048"]);
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/clients")
        .join(script);
    let out = Command::new("python3")
        .arg(&path)
        .arg(format!("http://{}", s.addr))
        .arg(MODEL)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{script} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprint!("{}", String::from_utf8_lossy(&out.stdout));
    assert_eq!(s.metric("http_server_errors_total"), 0.0);
}

#[test]
fn official_openai_client_works() {
    python_client("openai_client.py", "openai");
}

#[test]
fn official_ollama_client_works() {
    python_client("ollama_client.py", "ollama");
}

/// 16 concurrent clients x 10 requests, streaming and not, some disconnecting early, some
/// over the queue limit: no 5xx but 503s with Retry-After, every slot free at the end, RSS
/// back to its baseline, and a seeded request gives the same text alone and under load.
#[test]
fn bounded_load_test() {
    let _g = heavy();
    let t_start = Instant::now();
    let s = Server::start(&["--parallel", "4", "--max-queue", "8", "-c", "512"]);
    let seeded = json!({"prompt": "Write a word:", "max_tokens": 12, "temperature": 0.9,
                        "seed": 1234, "ignore_eos": true});
    let alone = s.post("/v1/completions", &seeded).json()["choices"][0]["text"].clone();
    assert!(alone.as_str().is_some_and(|t| !t.is_empty()));
    // Warm-up: fill every slot to the lengths the test uses, then take the baseline.
    std::thread::scope(|sc| {
        for i in 0..4 {
            let s = &s;
            sc.spawn(move || {
                let r = s.post(
                    "/v1/completions",
                    &json!({"prompt": format!("{i} {}", "warm ".repeat(60)), "max_tokens": 64, "ignore_eos": true}),
                );
                assert_eq!(r.status, 200);
            });
        }
    });
    s.wait_idle(Duration::from_secs(10));
    let baseline = rss_kib(s.pid());

    let results: Mutex<Vec<(usize, usize, u16, bool)>> = Mutex::new(Vec::new());
    let seeded_texts: Mutex<Vec<String>> = Mutex::new(Vec::new());
    std::thread::scope(|sc| {
        for t in 0..16usize {
            let (s, results, seeded_texts, seeded) = (&s, &results, &seeded_texts, &seeded);
            sc.spawn(move || {
                for i in 0..10usize {
                    let kind = (t + i) % 5;
                    let prompt = format!("Client {t} request {i}: tell me about the number {}", t * 10 + i);
                    let (status, retry) = match kind {
                        0 => {
                            let r = s.post("/v1/completions", seeded);
                            if r.status == 200 {
                                seeded_texts.lock().unwrap().push(
                                    r.json()["choices"][0]["text"].as_str().unwrap().to_string(),
                                );
                            }
                            (r.status, r.header("retry-after").is_some())
                        }
                        1 => {
                            let r = s.post(
                                "/v1/chat/completions",
                                &json!({"messages": [{"role": "user", "content": prompt}],
                                        "max_tokens": 8, "stream": true}),
                            );
                            if r.status == 200 {
                                assert_eq!(r.sse().last().map(String::as_str), Some("[DONE]"));
                            }
                            (r.status, r.header("retry-after").is_some())
                        }
                        2 => {
                            // Disconnect after the first chunk (or take the 503).
                            let mut c = connect(&s.addr);
                            let body = json!({"prompt": prompt, "max_tokens": 200, "stream": true, "ignore_eos": true});
                            c.write_all(&request_bytes("POST", "/v1/completions",
                                &[("Content-Type", "application/json")], body.to_string().as_bytes())).unwrap();
                            let mut buf = vec![0u8; 8192];
                            let n = c.read(&mut buf).unwrap_or(0);
                            let head = String::from_utf8_lossy(&buf[..n]).into_owned();
                            let status: u16 = head.split(' ').nth(1).and_then(|x| x.parse().ok()).unwrap_or(0);
                            (status, head.to_ascii_lowercase().contains("retry-after"))
                        }
                        3 => {
                            let r = s.post(
                                "/api/generate",
                                &json!({"model": MODEL, "prompt": prompt, "options": {"num_predict": 8}}),
                            );
                            (r.status, r.header("retry-after").is_some())
                        }
                        _ => {
                            let r = s.post("/v1/embeddings", &json!({"input": prompt}));
                            (r.status, r.header("retry-after").is_some())
                        }
                    };
                    results.lock().unwrap().push((t, kind, status, retry));
                }
            });
        }
    });
    let results = results.into_inner().unwrap();
    assert_eq!(results.len(), 160);
    let mut n503 = 0;
    for &(t, kind, status, retry) in &results {
        match status {
            200 => {}
            503 => {
                assert!(retry, "503 without Retry-After (client {t}, kind {kind})");
                n503 += 1;
            }
            other => panic!("client {t}, kind {kind}: status {other}"),
        }
    }
    assert!(n503 > 0, "no request went over the queue limit");
    assert!(n503 < 150, "almost everything was refused: {n503}");
    for text in seeded_texts.into_inner().unwrap() {
        assert_eq!(text, alone.as_str().unwrap(), "same seed under load");
    }
    s.wait_idle(Duration::from_secs(10));
    assert_eq!(s.metric("queue_depth"), 0.0);
    assert_eq!(s.metric("slots_busy"), 0.0);
    assert_eq!(
        s.metric("http_server_errors_total"),
        s.metric("requests_rejected_total")
    );
    let rss = rss_kib(s.pid());
    assert!(
        rss <= baseline + baseline / 5 + 32 * 1024,
        "RSS grew from {baseline} KiB to {rss} KiB"
    );
    let r = s.post("/v1/completions", &seeded);
    assert_eq!(r.json()["choices"][0]["text"], alone);
    assert!(
        t_start.elapsed() < Duration::from_secs(150),
        "load test took {:?}",
        t_start.elapsed()
    );
    eprintln!(
        "load test: {} requests, {n503} refused with 503, RSS {baseline} -> {rss} KiB, {:.1} s",
        results.len(),
        t_start.elapsed().as_secs_f64()
    );
}
