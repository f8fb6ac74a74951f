//! `hearth plan` against what loading the model really costs, and the load-time checks of
//! `hearth run` / `hearth serve` (refusal with suggestions, `--force`, `--mlock`, `--no-mmap`).

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::{gemma, hearth};
use serde_json::Value as Json;

fn hearth_cmd() -> Command {
    Command::new(env!("CARGO_BIN_EXE_hearth"))
}

fn plan_json(model: &Path, extra: &[&str]) -> Json {
    let mut args: Vec<&std::ffi::OsStr> = vec![
        "plan".as_ref(),
        model.as_os_str(),
        "--json".as_ref(),
        "--no-speed".as_ref(),
    ];
    args.extend(extra.iter().map(std::ffi::OsStr::new));
    serde_json::from_slice(&hearth(&args)).expect("plan --json prints JSON")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The `memory: {...}` line of `--report-memory`.
fn memory_report(o: &Output) -> Json {
    let err = stderr(o);
    let line = err
        .lines()
        .find_map(|l| l.strip_prefix("memory: "))
        .unwrap_or_else(|| panic!("no memory report in:\n{err}"));
    serde_json::from_str(line).unwrap()
}

fn rel_err(measured: f64, predicted: f64) -> f64 {
    (predicted - measured).abs() / measured
}

/// Gemma 3 270M: 18 layers with one KV head of 256 values; layers 5, 11 and 17 are global, the
/// other 15 use a 512-token window. An f16 cell (K + V) is 2 x 256 x 2 = 1024 bytes. At 8192
/// tokens: 3 x 8192 + 15 x (512 - 1 + 512) = 39,921 cells = 40,879,104 bytes of rows, in Vecs
/// (which double as they grow) of 3 x 8192 + 15 x 1024 = 39,936 cells = 40,894,464 bytes. The
/// output projection is tied to the 262,144 x 640 Q8_0 embedding (178,257,920 bytes).
#[test]
fn plan_reports_the_default_model_exactly() {
    let model = gemma();
    let p = plan_json(&model, &["--ctx", "8192"]);
    assert_eq!(p["n_ctx"], 8192);
    assert_eq!(p["arch"], "gemma3");
    assert_eq!(p["kv"]["n_layers"], 18);
    assert_eq!(p["kv"]["n_swa_layers"], 15);
    assert_eq!(p["kv"]["window"], 512);
    assert_eq!(p["kv"]["bytes_per_position"], 3 * 1024);
    assert_eq!(p["kv"]["per_slot_data_bytes"], 40_879_104u64);
    assert_eq!(p["kv"]["per_slot_bytes"], 40_894_464u64);
    assert_eq!(p["weights"]["file_bytes"], 253_113_024u64);
    assert_eq!(
        p["weights_resident_bytes"], p["weights"]["file_bytes"],
        "the whole file ends up resident"
    );
    assert_eq!(p["weights"]["tied_output"], true);
    assert_eq!(p["weights"]["token_embd_bytes"], 178_257_920u64);
    // Every tensor byte is either read per token or is a vector/the embedding.
    let read = p["weights"]["decode_read_bytes"].as_u64().unwrap();
    assert!(read > 240_000_000 && read < 250_000_000, "{read}");
    let total = p["total_bytes"].as_u64().unwrap();
    let parts: u64 = ["weights_resident_bytes", "compute_bytes", "overhead_bytes"]
        .iter()
        .map(|k| p[*k].as_u64().unwrap())
        .sum::<u64>()
        + p["kv"]["total_bytes"].as_u64().unwrap();
    assert_eq!(total, parts);

    // Q8_0 cache: 34 bytes per 32 values, 2 x 8 blocks per cell; 4 slots: 4 caches.
    let q = plan_json(
        &model,
        &["--ctx", "8192", "--kv-type", "q8_0", "--parallel", "4"],
    );
    assert_eq!(q["kv"]["kv_type"], "q8_0");
    assert_eq!(q["kv"]["per_slot_data_bytes"], 39_921u64 * 2 * 8 * 34);
    assert_eq!(q["kv"]["per_slot_bytes"], 39_936u64 * 2 * 8 * 34);
    assert_eq!(q["kv"]["total_bytes"], 4 * 39_936u64 * 2 * 8 * 34);
}

/// Words from a fixed pseudo-random sequence (about one token each).
fn long_prompt(n_words: usize) -> String {
    let words = [
        "the", "of", "and", "to", "in", "is", "was", "for", "on", "that", "with", "as", "by", "at",
        "from", "his", "her", "this", "which", "have", "are", "be", "or", "an", "had", "not",
        "but", "were", "they", "all", "one", "their", "has", "its", "been", "there",
    ];
    let mut s = 0x1234_5678u64;
    (0..n_words)
        .map(|_| {
            s = s
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            words[(s >> 33) as usize % words.len()]
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs the model on a prompt that fills a context of `n_ctx` tokens exactly (4 generated),
/// with `--report-memory`; returns the memory report and the generated ids.
fn run_full_context(
    model: &Path,
    prompt_file: &Path,
    n_ctx: usize,
    extra: &[&str],
) -> (Json, Json) {
    let out = hearth_cmd()
        .args(["run", "-m"])
        .arg(model)
        .arg("-f")
        .arg(prompt_file)
        .args(["-n", "4", "--temp", "0", "--json", "--report-memory", "-c"])
        .arg(n_ctx.to_string())
        .args(extra)
        .output()
        .unwrap();
    assert!(out.status.success(), "run failed:\n{}", stderr(&out));
    let j: Json = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(j["generated_ids"].as_array().unwrap().len(), 4);
    (memory_report(&out), j["generated_ids"].clone())
}

/// The plan's weights + KV cache against the resident memory a real run adds, with and without
/// mmap, at a context filled to the last position (the cache grows as it fills), and its total
/// against the peak resident size.
///
/// Measured weights + KV: with mmap, the growth of the file-backed resident memory (the map's
/// pages, from opening to the end) plus the heap growth from "loaded" to "end" (the cache; the
/// snapshots return freed heap memory first, so that dead compute buffers do not count); with
/// --no-mmap, the growth while opening (the heap copy of the file, minus the parsed metadata,
/// measured in the mmap run as its heap growth while opening) plus the same cache growth.
#[test]
fn plan_predicts_resident_memory_within_5_percent() {
    let model = gemma();
    let dir = std::env::temp_dir().join(format!("hearth-plan-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let prompt_file = dir.join("prompt.txt");
    let prompt = long_prompt(4000);
    std::fs::write(&prompt_file, &prompt).unwrap();
    // `hearth tokenize` prints the ids separated by spaces.
    let ids = hearth(&[
        "tokenize".as_ref(),
        "-m".as_ref(),
        model.as_os_str(),
        prompt.as_ref(),
    ]);
    let n_prompt = String::from_utf8_lossy(&ids).split_whitespace().count();
    assert!(n_prompt > 3500, "{n_prompt} prompt tokens");
    let n_ctx = n_prompt + 4;
    let plan = plan_json(&model, &["--ctx", &n_ctx.to_string()]);
    let weights = plan["weights_resident_bytes"].as_u64().unwrap() as f64;
    let kv = plan["kv"]["total_bytes"].as_u64().unwrap() as f64;
    let total = plan["total_bytes"].as_u64().unwrap() as f64;
    // The cache is a significant part: more than a tenth of the weights.
    assert!(kv > 0.1 * weights, "KV {kv} vs weights {weights}");

    let (mapped, ids_mapped) = run_full_context(&model, &prompt_file, n_ctx, &[]);
    let (heap, ids_heap) = run_full_context(&model, &prompt_file, n_ctx, &["--no-mmap"]);
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(
        ids_mapped, ids_heap,
        "--no-mmap changes the generated tokens"
    );

    let g = |r: &Json, snap: &str, field: &str| r[snap][field].as_u64().unwrap() as f64;
    // The cache: heap growth while running.
    for (name, r) in [("mmap", &mapped), ("no-mmap", &heap)] {
        let kv_measured = g(r, "end", "rss_anon") - g(r, "loaded", "rss_anon");
        eprintln!("{name}: KV cache measured {kv_measured}, predicted {kv}");
        assert!(
            rel_err(kv_measured, kv) < 0.10,
            "{name}: KV cache measured {kv_measured}, predicted {kv}"
        );
    }
    let cache_growth = g(&mapped, "end", "rss_anon") - g(&mapped, "loaded", "rss_anon");
    let mapped_wkv = g(&mapped, "end", "rss_file") - g(&mapped, "start", "rss_file") + cache_growth;
    eprintln!(
        "mmap: weights + KV measured {mapped_wkv}, predicted {}",
        weights + kv
    );
    assert!(
        rel_err(mapped_wkv, weights + kv) < 0.05,
        "mmap: weights + KV measured {mapped_wkv}, predicted {}",
        weights + kv
    );
    let metadata_heap = g(&mapped, "opened", "rss_anon") - g(&mapped, "start", "rss_anon");
    let heap_copy = g(&heap, "opened", "rss") - g(&heap, "start", "rss") - metadata_heap;
    let heap_cache = g(&heap, "end", "rss_anon") - g(&heap, "loaded", "rss_anon");
    let heap_wkv = heap_copy + heap_cache;
    eprintln!(
        "no-mmap: heap copy {heap_copy} (file {weights}); weights + KV measured {heap_wkv}, \
         predicted {}",
        weights + kv
    );
    assert!(
        rel_err(heap_copy, weights) < 0.05,
        "no-mmap: heap copy {heap_copy}, file {weights}"
    );
    assert!(
        rel_err(heap_wkv, weights + kv) < 0.05,
        "no-mmap: weights + KV measured {heap_wkv}, predicted {}",
        weights + kv
    );
    // Everything, compute buffers included: the plan's total against the peak resident size.
    for (name, r) in [("mmap", &mapped), ("no-mmap", &heap)] {
        let peak = g(r, "end", "hwm");
        eprintln!("{name}: peak resident {peak}, plan total {total}");
        assert!(
            rel_err(peak, total) < 0.05,
            "{name}: peak resident {peak}, plan total {total}"
        );
    }
}

fn short_run(extra: &[&str], envs: &[(&str, &str)]) -> Output {
    hearth_cmd()
        .args(["run", "-m"])
        .arg(gemma())
        .args([
            "-p",
            "The capital of France is",
            "-n",
            "8",
            "--temp",
            "0",
            "--json",
        ])
        .args(extra)
        .envs(envs.iter().copied())
        .output()
        .unwrap()
}

fn generated(o: &Output) -> Json {
    assert!(o.status.success(), "run failed:\n{}", stderr(o));
    let j: Json = serde_json::from_slice(&o.stdout).unwrap();
    j["generated_ids"].clone()
}

#[test]
fn no_mmap_generates_the_same_tokens() {
    let a = generated(&short_run(&[], &[]));
    let b = generated(&short_run(&["--no-mmap"], &[]));
    assert_eq!(a.as_array().unwrap().len(), 8);
    assert_eq!(a, b);
}

/// `--mlock` works (root, CAP_IPC_LOCK, or a large RLIMIT_MEMLOCK), or fails with a message
/// naming RLIMIT_MEMLOCK, its value and `ulimit -l`.
#[test]
fn mlock_works_or_names_rlimit_memlock() {
    let reference = generated(&short_run(&[], &[]));
    for extra in [&["--mlock"][..], &["--mlock", "--no-mmap"][..]] {
        let o = short_run(extra, &[]);
        if o.status.success() {
            assert_eq!(generated(&o), reference);
        } else {
            let e = stderr(&o);
            assert!(
                e.contains("RLIMIT_MEMLOCK") && e.contains("ulimit -l") && e.contains("mlock"),
                "{e}"
            );
        }
    }
    // Force the failure where a limit can be imposed: a 64 KiB limit without CAP_IPC_LOCK.
    let forced = Command::new("setpriv")
        .args([
            "--inh-caps=-ipc_lock",
            "--bounding-set=-ipc_lock",
            "prlimit",
        ])
        .args([
            "--memlock=65536:65536",
            env!("CARGO_BIN_EXE_hearth"),
            "run",
            "-m",
        ])
        .arg(gemma())
        .args(["-p", "Hi", "-n", "1", "--mlock"])
        .output();
    if let Ok(o) = forced {
        let e = stderr(&o);
        if e.contains("setpriv:") || e.contains("prlimit:") {
            eprintln!("cannot drop CAP_IPC_LOCK here ({e}); skipping the forced failure");
            return;
        }
        assert!(!o.status.success(), "mlock succeeded under a 64 KiB limit");
        assert!(
            e.contains("RLIMIT_MEMLOCK") && e.contains("65536 bytes (64 KiB)"),
            "{e}"
        );
    }
}

/// A model that does not fit is refused before anything is allocated, with the numbers and
/// the suggestions; `--force` loads it anyway.
#[test]
fn a_model_that_does_not_fit_is_refused_unless_forced() {
    // 100 MiB available: the 241 MiB of weights alone do not fit.
    let env = [("HEARTH_MEM_AVAILABLE", "100M")];
    let o = short_run(&[], &env);
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(e.contains("does not fit"), "{e}");
    assert!(e.contains("100.0 MiB is available"), "{e}");
    assert!(e.contains("--force"), "{e}");
    assert!(o.stdout.is_empty(), "generated although refused");
    // --force bypasses the refusal (the machine has the memory; only the plan was told not).
    let forced = short_run(&["--force"], &env);
    assert_eq!(generated(&forced).as_array().unwrap().len(), 8);
    assert!(stderr(&forced).contains("--force"), "{}", stderr(&forced));

    // The server refuses the same way, before binding.
    let s = hearth_cmd()
        .args(["serve", "-m"])
        .arg(gemma())
        .args(["--port", "0"])
        .envs(env)
        .output()
        .unwrap();
    assert!(!s.status.success());
    assert!(stderr(&s).contains("does not fit"), "{}", stderr(&s));

    // A context of 100 million tokens needs ~300 GB of cache: refused without allocating,
    // with a context that fits among the suggestions.
    let o = short_run(&["-c", "100000000"], &[]);
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(e.contains("does not fit") && e.contains("try:"), "{e}");
    assert!(e.contains("--ctx "), "{e}");
    let p = plan_json(&gemma(), &["--ctx", "100000000"]);
    assert_eq!(p["verdict"], "does_not_fit");
    let sug = p["suggestions"].as_array().unwrap();
    let ctx_sug = sug
        .iter()
        .find(|s| s["flag"].as_str().unwrap().starts_with("--ctx "))
        .expect("a smaller context is suggested");
    let avail = p["available"]["bytes"].as_u64().unwrap();
    assert!(ctx_sug["total_bytes"].as_u64().unwrap() <= avail);
}

/// Suggestions under a tight budget: a smaller context, a Q8_0 cache, and a smaller
/// quantization with its estimated size, each with a total that fits.
#[test]
fn suggestions_fit_the_budget() {
    let model = gemma();
    let full = plan_json(&model, &["--ctx", "32768"]);
    let total = full["total_bytes"].as_u64().unwrap();
    // 10 MiB less than needed. (Gemma's weights are mostly its Q8_0 embedding, which every
    // file type keeps at 8 bits: IQ4_XS saves 11.3 MiB, Q2_K 15.3 MiB.)
    let budget = total - (10 << 20);
    let p: Json = serde_json::from_slice(
        &hearth_cmd()
            .args(["plan"])
            .arg(&model)
            .args(["--json", "--no-speed", "--ctx", "32768"])
            .env("HEARTH_MEM_AVAILABLE", budget.to_string())
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    assert_eq!(p["verdict"], "does_not_fit");
    assert_eq!(p["available"]["bytes"], budget);
    let sug = p["suggestions"].as_array().unwrap();
    let flags: Vec<&str> = sug.iter().map(|s| s["flag"].as_str().unwrap()).collect();
    assert!(flags.iter().any(|f| f.starts_with("--ctx ")), "{flags:?}");
    assert!(flags.contains(&"--kv-type q8_0"), "{flags:?}");
    assert!(
        flags.iter().any(|f| f.starts_with("hearth quantize")),
        "{flags:?}"
    );
    for s in sug {
        assert!(s["total_bytes"].as_u64().unwrap() <= budget, "{s}");
    }
    // A quantization's total is the plan's with the file replaced by the estimated one, whose
    // size the suggestion names (the largest that fits first: IQ4_XS, 241,265,344 bytes).
    let q = sug
        .iter()
        .find(|s| s["flag"].as_str().unwrap().starts_with("hearth quantize"))
        .unwrap();
    assert_eq!(q["flag"], "hearth quantize MODEL OUT IQ4_XS");
    assert_eq!(
        q["total_bytes"].as_u64().unwrap(),
        total - (253_113_024 - 241_265_344)
    );
    assert!(q["text"].as_str().unwrap().contains("230.1 MiB"), "{q}");
    // The context suggestion is the largest multiple of 256 that fits: 256 more does not.
    let ctx: usize = flags
        .iter()
        .find_map(|f| f.strip_prefix("--ctx "))
        .unwrap()
        .parse()
        .unwrap();
    let bigger = plan_json(&model, &["--ctx", &(ctx + 256).to_string()]);
    assert!(bigger["total_bytes"].as_u64().unwrap() > budget);
}
