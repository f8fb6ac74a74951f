//! Tokenize text with a GGUF vocabulary and show ids and pieces, and time a
//! large input: `cargo run --release -p hearth-tokenizer --example tokenize -- MODEL.gguf [TEXT | --bench FILE]`.

use std::time::Instant;

use hearth_tokenizer::Tokenizer;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(model) = args.first() else {
        eprintln!("usage: tokenize MODEL.gguf [TEXT | --bench FILE]");
        std::process::exit(2);
    };
    let t0 = Instant::now();
    let tok = Tokenizer::from_gguf_path(model)?;
    eprintln!(
        "loaded {} tokens in {:.1} ms",
        tok.n_vocab(),
        t0.elapsed().as_secs_f64() * 1e3
    );
    if args.get(1).map(String::as_str) == Some("--bench") {
        let path = args.get(2).ok_or("--bench needs a file")?;
        let text = std::fs::read(path)?;
        let t = Instant::now();
        let n = tok.encode_bytes(&text, false, true).len();
        eprintln!(
            "first run (builds lazy tables): {n} tokens in {:.1} ms",
            t.elapsed().as_secs_f64() * 1e3
        );
        let mut best = f64::MAX;
        let mut n = 0;
        for _ in 0..3 {
            let t = Instant::now();
            n = tok.encode_bytes(&text, false, true).len();
            best = best.min(t.elapsed().as_secs_f64());
        }
        println!(
            "{} bytes -> {n} tokens in {:.1} ms ({:.1} MB/s)",
            text.len(),
            best * 1e3,
            text.len() as f64 / best / 1e6
        );
        return Ok(());
    }
    let text = args.get(1).cloned().unwrap_or_default();
    for id in tok.encode(&text, false, true) {
        println!(
            "{id:>7} {:?}",
            String::from_utf8_lossy(tok.token_to_piece(id, true))
        );
    }
    Ok(())
}
