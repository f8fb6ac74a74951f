//! `hearth pull / list / show / rm`, and running a stored model by name,
//! against a file served from 127.0.0.1.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Output};

use common::reference_dir;

/// Serves `bytes` at `/x.gguf` (404 elsewhere) until the test ends; returns
/// the base URL.
fn serve(bytes: Vec<u8>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            let _ = reader.read_line(&mut line);
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
                    break;
                }
            }
            let path = line.split_whitespace().nth(1).unwrap_or("");
            let (status, body): (&str, &[u8]) = if path == "/x.gguf" {
                ("200 OK", &bytes)
            } else {
                ("404 Not Found", b"not found")
            };
            let head = format!(
                "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream
                .write_all(head.as_bytes())
                .and_then(|()| stream.write_all(body));
        }
    });
    base
}

fn hearth(cache: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hearth"))
        .args(args)
        .env("HEARTH_CACHE", cache)
        .env("HEARTH_PULL_RETRIES", "1")
        .env("HEARTH_PULL_BACKOFF_MS", "10")
        .env_remove("HF_TOKEN")
        .env_remove("HF_ENDPOINT")
        .output()
        .expect("running hearth")
}

fn ok(cache: &Path, args: &[&str]) -> String {
    let out = hearth(cache, args);
    assert!(
        out.status.success(),
        "hearth {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn fails(cache: &Path, args: &[&str]) -> String {
    let out = hearth(cache, args);
    assert!(!out.status.success(), "hearth {args:?} succeeded");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn pull_list_show_run_rm() {
    let model = reference_dir().join("synthetic/llama/llama-q8_0.gguf");
    let bytes = std::fs::read(&model).unwrap();
    let sha = hearth_store::sha256_file(&model).unwrap();
    let base = serve(bytes.clone());
    let cache = tempfile::tempdir().unwrap();
    let cache = cache.path();
    let url = format!("{base}/x.gguf");

    let out = ok(cache, &["pull", &url, "--name", "tiny", "--sha256", &sha]);
    assert!(out.contains("pulled tiny"), "{out}");
    let stored = cache.join("models/tiny.gguf");
    assert_eq!(std::fs::read(&stored).unwrap(), bytes);
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(cache.join("models/tiny.json")).unwrap()).unwrap();
    assert_eq!(manifest["sha256"], sha.as_str());
    assert_eq!(manifest["source"], url.as_str());

    let out = ok(cache, &["pull", &url, "--name", "tiny"]);
    assert!(out.contains("up to date"), "{out}");

    let list = ok(cache, &["list"]);
    let row = list
        .lines()
        .find(|l| l.starts_with("tiny "))
        .unwrap_or_else(|| panic!("no row for tiny in:\n{list}"));
    assert!(row.contains("llama") && row.contains("Q8_0"), "{row}");
    let json: serde_json::Value = serde_json::from_str(&ok(cache, &["list", "--json"])).unwrap();
    assert_eq!(json[0]["name"], "tiny");
    assert_eq!(json[0]["architecture"], "llama");
    assert_eq!(json[0]["manifest"]["sha256"], sha.as_str());

    let show = ok(cache, &["show", "tiny"]);
    assert!(show.contains("architecture: llama"), "{show}");
    assert!(show.contains(&sha), "{show}");

    let run = hearth(cache, &["run", "-m", "tiny", "-n", "2", "-p", "hi"]);
    assert!(
        run.status.success(),
        "run -m tiny failed:\n{}",
        String::from_utf8_lossy(&run.stderr)
    );

    let err = fails(cache, &["run", "-m", "nope", "-n", "2", "-p", "hi"]);
    assert!(err.contains("no model named \"nope\""), "{err}");
    let err = fails(cache, &["pull", &url, "--name", "../x"]);
    assert!(err.contains("invalid model name"), "{err}");
    let err = fails(cache, &["pull", &format!("{base}/missing.gguf")]);
    assert!(err.contains("404"), "{err}");
    let err = fails(cache, &["rm", "tiny", "nope"]);
    assert!(err.contains("nope"), "{err}");
    assert!(stored.is_file(), "a failed rm removes nothing");

    let out = ok(cache, &["rm", "tiny"]);
    assert!(out.contains("removed tiny"), "{out}");
    assert!(!stored.exists() && !cache.join("models/tiny.json").exists());
    assert!(!ok(cache, &["list"]).contains("tiny"));
    let err = fails(cache, &["show", "tiny"]);
    assert!(err.contains("no model named"), "{err}");
}
