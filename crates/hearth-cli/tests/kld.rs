//! `hearth perplexity --kl-divergence-base / --kl-divergence` against
//! llama-perplexity's figures for the synthetic llama Q4_K_M vs its F16
//! (../shared/reference/synthetic/llama/kld-q4_k_m-vs-f16.txt, -c 128:
//! llama.cpp printed 128 chunk rows; the last one is the result).

mod common;

use std::ffi::OsStr;

use common::{hearth, reference_dir};

/// Row 128 of llama.cpp's table: mean KLD and same-top-p.
const LLAMA_CPP_KLD: f64 = 0.14727;
const LLAMA_CPP_SAME_TOP: f64 = 0.63455;

/// The last row of the reference table, parsed (so the constants above
/// are checked against the file when it is there).
fn reference_row() -> Option<(f64, f64)> {
    let text =
        std::fs::read_to_string(reference_dir().join("synthetic/llama/kld-q4_k_m-vs-f16.txt"))
            .ok()?;
    let last = text
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with("128"))?;
    let f: Vec<&str> = last.split_whitespace().collect();
    // chunk ppl ± u ratio ± u kld ± u rms ± u % top ± u %
    Some((f[7].parse().ok()?, f[14].parse::<f64>().ok()? / 100.0))
}

#[test]
fn synthetic_llama_q4_k_m_kld_matches_llama_perplexity_within_2_percent() {
    let dir = reference_dir().join("synthetic/llama");
    let text = reference_dir().join("gemma3-270m/perplexity-text.txt");
    if !dir.is_dir() || !text.is_file() {
        eprintln!("skipped: {} not found", dir.display());
        return;
    }
    if let Some((kld, top)) = reference_row() {
        assert_eq!((kld, top), (LLAMA_CPP_KLD, LLAMA_CPP_SAME_TOP));
    }
    let base = std::env::temp_dir().join(format!("hearth-kld-base-{}.bin", std::process::id()));
    let f16 = dir.join("llama-f16.gguf");
    let q4 = dir.join("llama-q4_k_m.gguf");
    let os = |s: &'static str| OsStr::new(s);
    hearth(&[
        os("perplexity"),
        os("-m"),
        f16.as_os_str(),
        os("-f"),
        text.as_os_str(),
        os("-c"),
        os("128"),
        os("-t"),
        os("2"),
        os("--json"),
        os("--kl-divergence-base"),
        base.as_os_str(),
    ]);
    let out = hearth(&[
        os("perplexity"),
        os("-m"),
        q4.as_os_str(),
        os("-t"),
        os("2"),
        os("--chunks"),
        os("128"),
        os("--json"),
        os("--kl-divergence-base"),
        base.as_os_str(),
        os("--kl-divergence"),
    ]);
    let _ = std::fs::remove_file(&base);
    let j: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(j["n_chunks"], 128);
    assert_eq!(j["count"], 128 * 63);
    let kld = j["kld_mean"].as_f64().unwrap();
    let top = j["same_top_p"].as_f64().unwrap();
    eprintln!("hearth: mean KLD {kld:.5}, same top p {:.3}%", top * 100.0);
    assert!(
        (kld / LLAMA_CPP_KLD - 1.0).abs() < 0.02,
        "mean KLD {kld} vs llama.cpp {LLAMA_CPP_KLD}"
    );
    assert!(
        (top / LLAMA_CPP_SAME_TOP - 1.0).abs() < 0.02,
        "same top p {top} vs llama.cpp {LLAMA_CPP_SAME_TOP}"
    );
    // The statistics block is consistent with the running table.
    let last = &j["per_chunk"][127];
    assert_eq!(last["kld"].as_f64().unwrap(), kld);
    assert!(j["kld_min"].as_f64().unwrap() <= j["kld_median"].as_f64().unwrap());
    assert!(j["kld_median"].as_f64().unwrap() <= j["kld_max"].as_f64().unwrap());
}

#[test]
fn kl_divergence_refuses_a_file_that_is_not_a_base() {
    let bogus = std::env::temp_dir().join(format!("hearth-kld-bogus-{}.bin", std::process::id()));
    // A header promising far more data than the file holds.
    let mut b = b"_logits_".to_vec();
    for v in [128i32, 963, 1_000_000] {
        b.extend_from_slice(&v.to_le_bytes());
    }
    std::fs::write(&bogus, &b).unwrap();
    let model = reference_dir().join("synthetic/llama/llama-q4_k_m.gguf");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hearth"))
        .arg("perplexity")
        .arg("-m")
        .arg(&model)
        .arg("--kl-divergence-base")
        .arg(&bogus)
        .arg("--kl-divergence")
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&bogus);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot hold"), "{err}");
}
