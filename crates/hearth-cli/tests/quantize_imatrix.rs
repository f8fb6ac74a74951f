//! `hearth imatrix` against llama-imatrix, and `hearth quantize --imatrix`
//! with hearth's own matrix: the values match llama-imatrix's
//! (crates/hearth-quantize/tests/fixtures/llama-imatrix.gguf: the synthetic
//! llama on the reference text, `-c 128 --chunks 8`) within float tolerance,
//! and the file is one llama-quantize reads: with the peer built, its output
//! for hearth's matrix is byte-identical to hearth's.

mod common;

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{hearth, reference_dir};
use hearth_quantize::imatrix::Imatrix;

fn llama_imatrix_fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../hearth-quantize/tests/fixtures/llama-imatrix.gguf")
}

#[test]
fn imatrix_matches_llama_imatrix_and_quantizes_like_llama_quantize() {
    let model = reference_dir().join("synthetic/llama/llama-f16.gguf");
    let text = reference_dir().join("gemma3-270m/perplexity-text.txt");
    if !model.is_file() || !text.is_file() {
        eprintln!("skipped: {} not found", model.display());
        return;
    }
    let tmp = std::env::temp_dir().join(format!("hearth-imatrix-test-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    let ours = tmp.join("imatrix.gguf");
    let os = OsStr::new;
    hearth(&[
        os("imatrix"),
        os("-m"),
        model.as_os_str(),
        os("-f"),
        text.as_os_str(),
        os("-o"),
        ours.as_os_str(),
        os("-c"),
        os("128"),
        os("--chunks"),
        os("8"),
        os("-t"),
        os("2"),
    ]);
    let a = Imatrix::load(&ours).unwrap();
    let b = Imatrix::load(&llama_imatrix_fixture()).unwrap();
    assert_eq!(a.chunk_count, 8);
    assert_eq!(a.chunk_size, 128);
    assert!(a.has_metadata && !a.is_legacy);
    let names_a: Vec<_> = a.entries.keys().collect();
    let names_b: Vec<_> = b.entries.keys().collect();
    assert_eq!(names_a, names_b);
    let mut worst = 0f64;
    for (name, ea) in &a.entries {
        let eb = &b.entries[name];
        assert_eq!(ea.counts, eb.counts, "{name}");
        assert_eq!(ea.sums.len(), eb.sums.len(), "{name}");
        for (x, y) in ea.sums.iter().zip(&eb.sums) {
            let rel = (f64::from(*x) - f64::from(*y)).abs() / f64::from(y.abs()).max(1e-30);
            worst = worst.max(rel);
        }
    }
    eprintln!("largest relative difference from llama-imatrix: {worst:.2e}");
    assert!(
        worst < 1e-2,
        "imatrix differs from llama-imatrix by {worst}"
    );

    // Quantize with hearth's matrix; the metadata records the path as given.
    let out_h = tmp.join("h.gguf");
    let args = |out: &Path| -> Vec<std::ffi::OsString> {
        vec![
            "--imatrix".into(),
            ours.clone().into_os_string(),
            model.clone().into_os_string(),
            out.to_path_buf().into_os_string(),
            "Q4_K_M".into(),
        ]
    };
    let mut h: Vec<std::ffi::OsString> = vec!["quantize".into()];
    h.extend(args(&out_h));
    h.extend(["-t".into(), "2".into()]);
    let h: Vec<&OsStr> = h.iter().map(|s| s.as_os_str()).collect();
    hearth(&h);
    let peer = hearth_store::cache_dir().join("peer/llama.cpp-0.3.36/build/bin/llama-quantize");
    if peer.is_file() {
        let out_l = tmp.join("l.gguf");
        let st = Command::new(&peer)
            .args(args(&out_l))
            .arg("2")
            .output()
            .unwrap();
        assert!(
            st.status.success(),
            "{}",
            String::from_utf8_lossy(&st.stderr)
        );
        assert!(
            std::fs::read(&out_h).unwrap() == std::fs::read(&out_l).unwrap(),
            "llama-quantize with hearth's imatrix wrote a different file"
        );
    } else {
        eprintln!("llama-quantize not built (scripts/build-peer.sh): byte comparison skipped");
    }
    let _ = std::fs::remove_dir_all(&tmp);
}
