//! The engine on the default model, without HTTP: batching does not change results,
//! backpressure is a return value, cancellation frees the slot, shutdown ends cleanly.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hearth_gguf::MappedGguf;
use hearth_model::sampling::SamplingParams;
use hearth_model::{KvType, Model};
use hearth_server::engine::{Engine, EngineConfig, Event, Finish, GenParams, SubmitError};
use hearth_server::metrics::Metrics;
use hearth_tokenizer::Tokenizer;
use tokio::sync::mpsc::UnboundedReceiver;

/// One engine computes at a time (the machine may have two cores).
static HEAVY: Mutex<()> = Mutex::new(());

fn engine(n_slots: usize, max_queue: usize) -> (Engine, Arc<Tokenizer>) {
    let path = hearth_store::default_model().expect("fetching the default model");
    let gguf = Arc::new(MappedGguf::open(&path).unwrap());
    let tok = Arc::new(Tokenizer::from_metadata(&gguf.file().metadata).unwrap());
    let mut model = Model::load(gguf).unwrap();
    model.set_threads(2);
    let cfg = EngineConfig {
        n_slots,
        n_ctx: 512,
        kv_type: KvType::F16,
        max_queue,
        prefill_chunk: 64,
    };
    let e = Engine::start(model, tok.clone(), cfg, Arc::new(Metrics::default())).unwrap();
    (e, tok)
}

fn params(tok: &Tokenizer, prompt: &str, seed: u32, max: usize) -> GenParams {
    GenParams {
        prompt: tok.encode(prompt, true, true),
        max_tokens: Some(max),
        sampling: SamplingParams {
            seed,
            temperature: 1.0,
            ..SamplingParams::default()
        },
        stop: Vec::new(),
        logprobs: Some(3),
        ignore_eos: true,
        cache_prompt: true,
    }
}

/// Token ids, log-probabilities and finish of a generation.
fn collect(mut rx: UnboundedReceiver<Event>) -> (Vec<u32>, Vec<f32>, Finish, String) {
    let (mut ids, mut lps, mut text) = (Vec::new(), Vec::new(), String::new());
    while let Some(ev) = rx.blocking_recv() {
        match ev {
            Event::Token(t) => {
                ids.push(t.id);
                lps.push(t.probs.unwrap().logprob);
                text.push_str(&t.text);
            }
            Event::Done(s) => {
                text.push_str(&s.text);
                assert_eq!(s.n_generated, ids.len());
                return (ids, lps, s.finish, text);
            }
            Event::Error(e) => panic!("engine error: {e}"),
        }
    }
    panic!("channel closed without an end");
}

fn wait_idle(e: &Engine) {
    let t0 = Instant::now();
    while e.slots().iter().any(|s| s.is_processing) {
        assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", e.slots());
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn same_seed_gives_the_same_tokens_alone_and_batched() {
    let _g = HEAVY.lock().unwrap_or_else(|e| e.into_inner());
    let (e, tok) = engine(4, 16);
    let p = params(&tok, "The three most common pets are", 42, 16);
    let (_, rx) = e.submit(p.clone()).unwrap();
    let alone = collect(rx);
    assert_eq!(alone.0.len(), 16);
    assert_eq!(alone.2, Finish::Limit);
    // Now with other sequences prefilling and decoding beside it (and no prefix cache).
    let mut others = Vec::new();
    for (i, prompt) in [
        "A long prompt about rivers and mountains and the sea, repeated. ".repeat(6),
        "Hi".to_string(),
        "Numbers: 1 2 3 4 5 6 7".to_string(),
    ]
    .iter()
    .enumerate()
    {
        others.push(e.submit(params(&tok, prompt, i as u32, 24)).unwrap().1);
    }
    let mut again = p.clone();
    again.cache_prompt = false;
    let (_, rx) = e.submit(again).unwrap();
    let batched = collect(rx);
    for rx in others {
        collect(rx);
    }
    assert_eq!(batched.0, alone.0, "tokens");
    assert_eq!(batched.1, alone.1, "log-probabilities (bit-identical)");
    assert_eq!(batched.3, alone.3, "text");
    // From the prefix cache: the same again.
    let (_, rx) = e.submit(p).unwrap();
    assert_eq!(collect(rx).0, alone.0);
}

#[test]
fn a_full_queue_hands_the_request_back() {
    let _g = HEAVY.lock().unwrap_or_else(|e| e.into_inner());
    let (e, tok) = engine(1, 1);
    let long = params(&tok, "Tell me a long story.", 1, 400);
    let (_, rx1) = e.submit(long.clone()).unwrap();
    let t0 = Instant::now();
    while !e.slots()[0].is_processing {
        assert!(t0.elapsed() < Duration::from_secs(5));
        std::thread::sleep(Duration::from_millis(2));
    }
    let (_, rx2) = e.submit(long.clone()).unwrap();
    assert_eq!(e.queue_depth(), 1);
    match e.submit(long) {
        Err(SubmitError::QueueFull {
            queued: 1,
            limit: 1,
        }) => {}
        other => panic!("expected QueueFull, got {:?}", other.map(|_| ())),
    }
    // Cancel both (the waiting one and the running one, in either order): all free.
    drop(rx2);
    drop(rx1);
    wait_idle(&e);
    assert_eq!(e.queue_depth(), 0);
}

#[test]
fn a_dropped_receiver_frees_its_slot_within_a_step_and_shutdown_ends() {
    let _g = HEAVY.lock().unwrap_or_else(|e| e.into_inner());
    let (e, tok) = engine(2, 4);
    let (_, mut rx) = e
        .submit(params(&tok, "Count to a thousand:", 3, 400))
        .unwrap();
    // First token, then the client goes away.
    loop {
        if let Some(Event::Token(_)) = rx.blocking_recv() {
            break;
        }
    }
    drop(rx);
    wait_idle(&e);
    assert!(e.slots().iter().all(|s| s.id_task.is_none()));
    // Shutdown: running generations get the grace period; waiting ones fail at once.
    let (_, running) = e.submit(params(&tok, "One", 4, 8)).unwrap();
    e.begin_shutdown(Duration::from_secs(10));
    assert!(matches!(
        e.submit(params(&tok, "Two", 5, 8)),
        Err(SubmitError::ShuttingDown)
    ));
    let mut rx = running;
    let mut ended = false;
    while let Some(ev) = rx.blocking_recv() {
        match ev {
            Event::Done(_) | Event::Error(_) => ended = true,
            Event::Token(_) => {}
        }
    }
    assert!(ended);
    e.join();
}
