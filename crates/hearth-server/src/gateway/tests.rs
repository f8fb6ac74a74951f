//! The gateway against fake upstreams on 127.0.0.1 (no model needed): retries, relaying,
//! keys, health checks, error shapes.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::Router;
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use serde_json::{json, Value as Json};
use tower::ServiceExt;

use super::*;
use crate::metrics::Metrics;
use crate::server::{router, ServerConfig};

/// Serves `app` on 127.0.0.1 until the runtime ends; returns its URL.
async fn spawn(app: Router) -> String {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((s, _)) = l.accept().await else { return };
            let svc = TowerToHyperService::new(app.clone());
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    format!("http://{addr}")
}

/// An address nothing listens on.
fn dead() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    format!("http://{}", l.local_addr().unwrap())
}

/// An upstream answering every OpenAI endpoint with `{"served_by": name}`, counting calls
/// and keeping the headers it got.
#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<HeaderMap>>>);

impl Seen {
    fn count(&self) -> usize {
        self.0.lock().unwrap().len()
    }
    fn last(&self) -> HeaderMap {
        self.0.lock().unwrap().last().cloned().unwrap()
    }
}

fn fake(name: &'static str, models: &[&str], seen: Seen) -> Router {
    let data: Vec<Json> = models
        .iter()
        .map(|m| json!({"id": m, "object": "model", "owned_by": name}))
        .collect();
    let answer = move |req: Request| {
        let seen = seen.clone();
        async move {
            seen.0.lock().unwrap().push(req.headers().clone());
            axum::Json(json!({"served_by": name, "path": req.uri().path()}))
        }
    };
    Router::new()
        .route(
            "/health",
            get(|| async { axum::Json(json!({"status": "ok"})) }),
        )
        .route(
            "/v1/models",
            get(move || {
                let data = data.clone();
                async move { axum::Json(json!({"object": "list", "data": data})) }
            }),
        )
        .route("/v1/chat/completions", post(answer.clone()))
        .route("/v1/completions", post(answer.clone()))
        .route("/v1/embeddings", post(answer))
}

fn gateway(upstreams: &[String], tweak: impl FnOnce(&mut GatewayConfig)) -> (Arc<Gateway>, Router) {
    let mut gc = GatewayConfig {
        upstreams: upstreams
            .iter()
            .map(|u| UpstreamSpec::parse(u).unwrap())
            .collect(),
        only: true,
        health_interval: Duration::from_millis(50),
        connect_timeout: Duration::from_secs(2),
        response_timeout: Duration::from_secs(10),
        forward_client_key: false,
    };
    tweak(&mut gc);
    let gw = Gateway::new(gc.clone());
    let mut cfg = ServerConfig::new("unused.gguf".into());
    cfg.gateway = gc;
    let st = AppState::new(
        Arc::new(cfg),
        Arc::new(Metrics::default()),
        Some(gw.clone()),
    );
    (gw, router(st))
}

fn post_json(path: &str, body: &Json) -> Request {
    Request::post(path)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .unwrap()
}

async fn call(app: &Router, req: Request) -> (StatusCode, HeaderMap, Json) {
    let resp = tokio::time::timeout(Duration::from_secs(20), app.clone().oneshot(req))
        .await
        .expect("the gateway answered in time")
        .unwrap();
    let (parts, body) = resp.into_parts();
    let bytes = tokio::time::timeout(Duration::from_secs(20), body.collect())
        .await
        .expect("the body ended in time")
        .unwrap()
        .to_bytes();
    let j = serde_json::from_slice(&bytes)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&bytes)));
    (parts.status, parts.headers, j)
}

fn metric(gw: &Gateway, line_prefix: &str) -> f64 {
    let mut s = String::new();
    gw.render_metrics(&mut s);
    s.lines()
        .find_map(|l| l.strip_prefix(line_prefix)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {line_prefix} in\n{s}"))
}

fn assert_openai_error(status: StatusCode, j: &Json, want: StatusCode, code: &str) {
    assert_eq!(status, want, "{j}");
    let e = &j["error"];
    assert!(e["message"].as_str().is_some_and(|m| !m.is_empty()), "{j}");
    assert!(e["type"].is_string(), "{j}");
    assert!(e.get("param").is_some(), "{j}");
    assert_eq!(e["code"], code, "{j}");
}

#[tokio::test]
async fn a_refused_connection_is_retried_on_the_next_upstream_and_marks_it_down() {
    let seen = Seen::default();
    let live = spawn(fake("live", &["m"], seen.clone())).await;
    let dead = dead();
    let (gw, app) = gateway(&[dead.clone(), live.clone()], |_| {});
    // Both start healthy with nothing outstanding: the first goes to the dead one first.
    for _ in 0..2 {
        let (status, _, j) = call(
            &app,
            post_json("/v1/chat/completions", &json!({"messages": []})),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{j}");
        assert_eq!(j["served_by"], "live");
    }
    assert_eq!(seen.count(), 2);
    assert!(!gw.is_healthy(0));
    let m = |u: &str, o: &str| {
        metric(
            &gw,
            &format!("hearth_gateway_requests_total{{upstream=\"{u}\",outcome=\"{o}\"}}"),
        )
    };
    assert_eq!(m(&dead, "retry"), 1.0);
    assert_eq!(m(&dead, "error"), 0.0);
    assert_eq!(m(&live, "ok"), 2.0);
    assert_eq!(
        metric(
            &gw,
            "hearth_gateway_forwarded_total{reason=\"gateway_only\"}"
        ),
        2.0
    );
    assert_eq!(
        metric(
            &gw,
            &format!("hearth_gateway_upstream_healthy{{upstream=\"{dead}\"}}")
        ),
        0.0
    );
    assert_eq!(
        metric(
            &gw,
            &format!("hearth_gateway_upstream_outstanding{{upstream=\"{live}\"}}")
        ),
        0.0
    );
}

#[tokio::test]
async fn when_every_upstream_fails_the_answer_is_an_openai_shaped_502_then_503() {
    let (a, b) = (dead(), dead());
    let (gw, app) = gateway(&[a.clone(), b], |_| {});
    let (status, _, j) = call(&app, post_json("/v1/completions", &json!({"prompt": "x"}))).await;
    assert_openai_error(status, &j, StatusCode::BAD_GATEWAY, "upstream_error");
    assert_eq!(j["error"]["type"], "upstream_error");
    let m = |o: &str| {
        metric(
            &gw,
            &format!("hearth_gateway_requests_total{{upstream=\"{a}\",outcome=\"{o}\"}}"),
        )
    };
    assert_eq!(m("retry") + m("error"), 1.0);
    // Both are down now: nobody to try.
    let (status, headers, j) =
        call(&app, post_json("/v1/embeddings", &json!({"input": "x"}))).await;
    assert_openai_error(
        status,
        &j,
        StatusCode::SERVICE_UNAVAILABLE,
        "upstream_unavailable",
    );
    assert_eq!(headers.get(header::RETRY_AFTER).unwrap(), "1");
    assert_eq!(metric(&gw, "hearth_gateway_unavailable_total"), 2.0);
}

#[tokio::test]
async fn a_busy_upstream_hands_the_request_to_the_next_and_the_last_503_is_passed_on() {
    let busy = || {
        Router::new().route(
            "/v1/chat/completions",
            post(|| async {
                let e = ApiError::QueueFull {
                    queued: 1,
                    limit: 1,
                };
                e.respond(Flavor::OpenAi)
            }),
        )
    };
    let (b1, b2) = (spawn(busy()).await, spawn(busy()).await);
    let seen = Seen::default();
    let live = spawn(fake("live", &[], seen)).await;
    let (gw, app) = gateway(&[b1.clone(), live], |_| {});
    let (status, _, j) = call(&app, post_json("/v1/chat/completions", &json!({}))).await;
    assert_eq!((status, &j["served_by"]), (StatusCode::OK, &json!("live")));
    // Busy is not down.
    assert!(gw.is_healthy(0));
    let (_, app) = gateway(&[b1, b2], |_| {});
    let (status, headers, j) = call(&app, post_json("/v1/chat/completions", &json!({}))).await;
    assert_openai_error(status, &j, StatusCode::SERVICE_UNAVAILABLE, "server_busy");
    assert_eq!(headers.get(header::RETRY_AFTER).unwrap(), "1");
}

#[tokio::test]
async fn sse_is_relayed_chunk_by_chunk_not_buffered() {
    let (release_tx, release_rx) = tokio::sync::oneshot::channel::<()>();
    let release_rx = Arc::new(Mutex::new(Some(release_rx)));
    let app = Router::new().route(
        "/v1/chat/completions",
        post(move || {
            let rx = release_rx.lock().unwrap().take();
            async move {
                let first = futures_util::stream::once(async {
                    Ok::<_, std::io::Error>(Bytes::from_static(b"data: {\"n\":1}\n\n"))
                });
                let rest = futures_util::stream::once(async move {
                    if let Some(rx) = rx {
                        let _ = rx.await;
                    }
                    Ok(Bytes::from_static(b"data: {\"n\":2}\n\ndata: [DONE]\n\n"))
                });
                let mut r =
                    Body::from_stream(futures_util::StreamExt::chain(first, rest)).into_response();
                r.headers_mut()
                    .insert(header::CONTENT_TYPE, "text/event-stream".parse().unwrap());
                r
            }
        }),
    );
    let up = spawn(app).await;
    let (_, gw_app) = gateway(&[up], |_| {});
    let resp = gw_app
        .oneshot(post_json("/v1/chat/completions", &json!({"stream": true})))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()[header::CONTENT_TYPE], "text/event-stream");
    let mut body = resp.into_body();
    // The first event arrives while the upstream still holds back the rest.
    let first = tokio::time::timeout(Duration::from_secs(10), body.frame())
        .await
        .expect("the first chunk was relayed before the stream ended")
        .unwrap()
        .unwrap()
        .into_data()
        .unwrap();
    assert_eq!(&first[..], b"data: {\"n\":1}\n\n");
    release_tx.send(()).unwrap();
    let rest = tokio::time::timeout(Duration::from_secs(10), body.collect())
        .await
        .unwrap()
        .unwrap()
        .to_bytes();
    assert_eq!(&rest[..], b"data: {\"n\":2}\n\ndata: [DONE]\n\n");
}

#[tokio::test]
async fn a_stream_broken_off_ends_with_an_error_event_and_is_not_retried() {
    let app = Router::new().route(
        "/v1/completions",
        post(|| async {
            let first = futures_util::stream::once(async {
                Ok(Bytes::from_static(b"data: {\"n\":1}\n\ndata: {\"n\""))
            });
            // Dies once the start of the answer is out.
            let death = futures_util::stream::once(async {
                tokio::time::sleep(Duration::from_millis(200)).await;
                Err(std::io::Error::other("killed"))
            });
            let s = futures_util::StreamExt::chain(first, death);
            let mut r = Body::from_stream(s).into_response();
            r.headers_mut()
                .insert(header::CONTENT_TYPE, "text/event-stream".parse().unwrap());
            r
        }),
    );
    let broken = spawn(app).await;
    let seen = Seen::default();
    let other = spawn(fake("other", &[], seen.clone())).await;
    let (gw, gw_app) = gateway(&[broken.clone(), other], |_| {});
    let resp = gw_app
        .oneshot(post_json("/v1/completions", &json!({"stream": true})))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let text = String::from_utf8(
        tokio::time::timeout(Duration::from_secs(10), resp.into_body().collect())
            .await
            .unwrap()
            .expect("the relayed stream ends cleanly")
            .to_bytes()
            .to_vec(),
    )
    .unwrap();
    assert!(text.starts_with("data: {\"n\":1}\n\n"), "{text}");
    let last = text
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("data: "))
        .unwrap();
    let j: Json = serde_json::from_str(last).unwrap();
    assert_eq!(j["error"]["type"], "upstream_error", "{text}");
    assert!(
        j["error"]["message"].as_str().unwrap().contains(&broken),
        "{j}"
    );
    assert_eq!(seen.count(), 0, "bytes had gone to the client: no retry");
    assert!(!gw.is_healthy(0));
}

#[tokio::test]
async fn upstreams_get_their_own_key_and_never_the_clients() {
    let (with_key, without) = (Seen::default(), Seen::default());
    let a = spawn(fake("a", &["ma"], with_key.clone())).await;
    let b = spawn(fake("b", &["mb"], without.clone())).await;
    let keys = [format!("{a}=sk-a")];
    let specs = UpstreamSpec::parse_all(&[a.clone(), b.clone()], &keys).unwrap();
    let send = |app: Router, model: &'static str| async move {
        let req = Request::post("/v1/chat/completions")
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::AUTHORIZATION, "Bearer client-key")
            .header("x-api-key", "client-key")
            .body(Body::from(json!({"model": model}).to_string()))
            .unwrap();
        let (status, _, j) = call(&app, req).await;
        assert_eq!(status, StatusCode::OK, "{j}");
    };
    let (gw, app) = gateway(&[], |c| c.upstreams = specs.clone());
    gw.start();
    wait_until(|| {
        gw.lock()
            .ups
            .iter()
            .all(|u| u.checked && !u.models.is_empty())
    })
    .await;
    send(app.clone(), "ma").await;
    let h = with_key.last();
    assert_eq!(h[header::AUTHORIZATION], "Bearer sk-a");
    assert!(h.get("x-api-key").is_none());
    assert!(h[VIA_HEADER].to_str().unwrap().contains(&gw.id));
    send(app, "mb").await;
    let h = without.last();
    assert!(h.get(header::AUTHORIZATION).is_none() && h.get("x-api-key").is_none());
    gw.stop();
    // Unless told to: then upstreams without a key of their own get the client's.
    let (gw, app) = gateway(&[], |c| {
        c.upstreams = specs.clone();
        c.forward_client_key = true;
    });
    gw.start();
    wait_until(|| {
        gw.lock()
            .ups
            .iter()
            .all(|u| u.checked && !u.models.is_empty())
    })
    .await;
    send(app.clone(), "mb").await;
    let h = without.last();
    assert_eq!(h[header::AUTHORIZATION], "Bearer client-key");
    assert_eq!(h["x-api-key"], "client-key");
    send(app, "ma").await;
    assert_eq!(with_key.last()[header::AUTHORIZATION], "Bearer sk-a");
    gw.stop();
}

async fn wait_until(mut f: impl FnMut() -> bool) {
    let t0 = std::time::Instant::now();
    while !f() {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "condition not met in 10 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn health_checks_learn_models_route_by_model_and_skip_the_unhealthy() {
    let sa = Seen::default();
    let a = spawn(fake("a", &["model-a"], sa.clone())).await;
    // No /health (as Ollama): /v1/models answering is enough.
    let b_app = Router::new()
        .route(
            "/v1/models",
            get(|| async { axum::Json(json!({"data": [{"id": "model-b"}, {"id": "model-a"}]})) }),
        )
        .route(
            "/v1/chat/completions",
            post(|| async { axum::Json(json!({"served_by": "b"})) }),
        );
    let b = spawn(b_app).await;
    let loading = spawn(Router::new().route(
        "/health",
        get(|| async { ApiError::Loading.respond(Flavor::LlamaCpp) }),
    ))
    .await;
    let (gw, app) = gateway(&[a.clone(), b.clone(), loading.clone()], |_| {});
    gw.start();
    wait_until(|| {
        let p = gw.lock();
        p.ups.iter().all(|u| u.checked) && !p.ups[1].models.is_empty()
    })
    .await;
    assert!(gw.is_healthy(0) && gw.is_healthy(1) && !gw.is_healthy(2));
    for _ in 0..3 {
        let (status, _, j) = call(
            &app,
            post_json("/v1/chat/completions", &json!({"model": "model-b"})),
        )
        .await;
        assert_eq!((status, &j["served_by"]), (StatusCode::OK, &json!("b")));
    }
    assert_eq!(sa.count(), 0);
    // Both list model-a: shared round-robin.
    let mut by = Vec::new();
    for _ in 0..4 {
        let (_, _, j) = call(
            &app,
            post_json("/v1/chat/completions", &json!({"model": "model-a"})),
        )
        .await;
        by.push(j["served_by"].as_str().unwrap().to_string());
    }
    by.sort();
    assert_eq!(by, ["a", "a", "b", "b"]);
    // Unknown everywhere: any healthy one (which answers for itself).
    let (status, _, _) = call(
        &app,
        post_json("/v1/chat/completions", &json!({"model": "nope"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let req = Request::get("/v1/models").body(Body::empty()).unwrap();
    let (status, _, j) = call(&app, req).await;
    assert_eq!(status, StatusCode::OK);
    let ids: Vec<&str> = j["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["model-a", "model-b"]);
    let req = Request::get("/health").body(Body::empty()).unwrap();
    assert_eq!(call(&app, req).await.0, StatusCode::OK);
    // The gateway-only server has no model of its own for other APIs.
    let (status, _, j) = call(&app, post_json("/completion", &json!({"prompt": "x"}))).await;
    assert_eq!(status, StatusCode::NOT_IMPLEMENTED, "{j}");
    let text = {
        let mut s = String::new();
        gw.render_metrics(&mut s);
        s
    };
    assert!(
        text.contains(&format!(
            "hearth_gateway_upstream_healthy{{upstream=\"{loading}\"}} 0"
        )),
        "{text}"
    );
    gw.stop();
}

#[tokio::test]
async fn a_request_that_passed_here_is_not_forwarded_again() {
    let seen = Seen::default();
    let up = spawn(fake("up", &[], seen.clone())).await;
    let (gw, app) = gateway(&[up], |_| {});
    let req = Request::post("/v1/chat/completions")
        .header(header::CONTENT_TYPE, "application/json")
        .header(VIA_HEADER, format!("0123, {}", gw.id))
        .body(Body::from("{}"))
        .unwrap();
    let (status, _, j) = call(&app, req).await;
    assert_openai_error(
        status,
        &j,
        StatusCode::SERVICE_UNAVAILABLE,
        "upstream_unavailable",
    );
    assert!(
        j["error"]["message"].as_str().unwrap().contains("loop"),
        "{j}"
    );
    let hops = ["x"; MAX_HOPS].join(",");
    let req = Request::post("/v1/chat/completions")
        .header(header::CONTENT_TYPE, "application/json")
        .header(VIA_HEADER, hops)
        .body(Body::from("{}"))
        .unwrap();
    assert_eq!(call(&app, req).await.0, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(seen.count(), 0);
}

#[test]
fn local_context_refusals_are_recognized() {
    let too_many =
        crate::common::check_lengths(10, Some(100), 64, "max_tokens", false).unwrap_err();
    assert!(exceeds_context(&too_many), "{too_many}");
    let chat = crate::common::check_lengths(10, Some(100), 64, "max_completion_tokens", false)
        .unwrap_err();
    assert_eq!(overflow_reason(&chat), Some(Reason::Context));
    let long = crate::common::check_lengths(64, None, 64, "max_tokens", false).unwrap_err();
    assert_eq!(overflow_reason(&long), Some(Reason::Context));
    let bad = crate::common::check_lengths(10, Some(0), 64, "max_tokens", false).unwrap_err();
    assert_eq!(overflow_reason(&bad), None);
    assert_eq!(
        overflow_reason(&ApiError::QueueFull {
            queued: 1,
            limit: 1
        }),
        Some(Reason::Queue)
    );
    assert_eq!(
        peek_model(br#"{"model":" m1 ","x":1}"#).as_deref(),
        Some("m1")
    );
    assert_eq!(peek_model(br#"{"model":""}"#), None);
    assert_eq!(peek_model(br#"{"model":3}"#), None);
    assert_eq!(peek_model(b"not json"), None);
}

#[tokio::test]
async fn a_client_that_goes_away_closes_the_upstream_stream() {
    use std::sync::atomic::{AtomicBool, AtomicUsize};
    struct Flag(Arc<AtomicBool>);
    impl Drop for Flag {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }
    let dropped = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicUsize::new(0));
    let (d, n) = (dropped.clone(), sent.clone());
    let app = Router::new().route(
        "/v1/chat/completions",
        post(move || {
            let flag = Flag(d.clone());
            let n = n.clone();
            async move {
                // Endless events until the upstream's client (the gateway) hangs up.
                let s = futures_util::stream::unfold((flag, n), |(flag, n)| async move {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    n.fetch_add(1, Ordering::SeqCst);
                    Some((
                        Ok::<_, std::io::Error>(Bytes::from_static(b"data: {}\n\n")),
                        (flag, n),
                    ))
                });
                let mut r = Body::from_stream(s).into_response();
                r.headers_mut()
                    .insert(header::CONTENT_TYPE, "text/event-stream".parse().unwrap());
                r
            }
        }),
    );
    let up = spawn(app).await;
    let (gw, gw_app) = gateway(std::slice::from_ref(&up), |_| {});
    let resp = gw_app
        .oneshot(post_json("/v1/chat/completions", &json!({"stream": true})))
        .await
        .unwrap();
    let mut body = resp.into_body();
    for _ in 0..3 {
        tokio::time::timeout(Duration::from_secs(5), body.frame())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
    }
    assert_eq!(
        metric(
            &gw,
            &format!("hearth_gateway_upstream_outstanding{{upstream=\"{up}\"}}")
        ),
        1.0
    );
    drop(body);
    wait_until(|| dropped.load(Ordering::SeqCst)).await;
    let n = sent.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        sent.load(Ordering::SeqCst) <= n + 1,
        "the upstream kept streaming"
    );
    assert_eq!(
        metric(
            &gw,
            &format!("hearth_gateway_upstream_outstanding{{upstream=\"{up}\"}}")
        ),
        0.0
    );
    // Going away is not the upstream's failure.
    assert!(gw.is_healthy(0));
}
