//! `hearth tokenize` / `hearth detokenize`: a model's vocabulary on the
//! command line (vocab-only GGUFs work too).

use std::io::{Read, Write};
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use hearth_tokenizer::Tokenizer;
use serde_json::{json, Value as Json};

#[derive(Args)]
pub struct TokenizeArgs {
    /// The GGUF file (default: the default model).
    #[arg(short, long)]
    model: Option<PathBuf>,
    /// Do not add BOS/EOS as the model asks.
    #[arg(long)]
    no_special: bool,
    /// Treat special-token text (`<bos>`, `<|im_start|>`) as plain text.
    #[arg(long)]
    no_parse_special: bool,
    /// Print `[{"id": .., "piece": ..}]`; a piece that is not valid UTF-8 on
    /// its own is a list of byte values (llama-server's `with_pieces` shape).
    #[arg(long)]
    json: bool,
    /// The text (default: standard input).
    text: Option<String>,
}

#[derive(Args)]
pub struct DetokenizeArgs {
    /// The GGUF file (default: the default model).
    #[arg(short, long)]
    model: Option<PathBuf>,
    /// Drop BOS/EOS the model adds.
    #[arg(long)]
    remove_special: bool,
    /// Leave control tokens out of the text.
    #[arg(long)]
    no_special: bool,
    /// Token ids: `1 2 3`, `1,2,3` or `[1, 2, 3]`.
    #[arg(required = true, num_args = 1..)]
    ids: Vec<String>,
}

fn load(model: Option<PathBuf>) -> Result<Tokenizer> {
    let path = crate::model_path(model)?;
    Tokenizer::from_gguf_path(&path)
        .with_context(|| format!("loading the vocabulary of {}", path.display()))
}

pub fn run_tokenize(args: TokenizeArgs) -> Result<()> {
    let tok = load(args.model)?;
    let text = match args.text {
        Some(t) => t,
        None => {
            let mut s = String::new();
            std::io::stdin()
                .read_to_string(&mut s)
                .context("reading stdin")?;
            s
        }
    };
    let ids = tok.encode(&text, !args.no_special, !args.no_parse_special);
    let mut out = std::io::stdout().lock();
    if args.json {
        let items: Vec<Json> = ids
            .iter()
            .map(|&id| {
                let bytes = tok.token_to_piece(id, true);
                let piece = match std::str::from_utf8(bytes) {
                    Ok(s) => json!(s),
                    Err(_) => json!(bytes),
                };
                json!({"id": id, "piece": piece})
            })
            .collect();
        writeln!(out, "{}", Json::Array(items))?;
    } else {
        let line: Vec<String> = ids.iter().map(u32::to_string).collect();
        writeln!(out, "{}", line.join(" "))?;
    }
    Ok(())
}

/// Ids from `1 2 3`, `1,2,3` or `[1, 2, 3]` (any mix of those separators).
fn parse_ids(args: &[String]) -> Result<Vec<u32>> {
    let joined = args.join(" ");
    joined
        .split(|c: char| c.is_whitespace() || c == ',' || c == '[' || c == ']')
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<u32>()
                .with_context(|| format!("{s:?} is not a token id"))
        })
        .collect()
}

pub fn run_detokenize(args: DetokenizeArgs) -> Result<()> {
    let tok = load(args.model)?;
    let ids = parse_ids(&args.ids)?;
    if let Some(&bad) = ids.iter().find(|&&id| id as usize >= tok.n_vocab()) {
        bail!(
            "token id {bad} is outside the vocabulary of {} tokens",
            tok.n_vocab()
        );
    }
    let bytes = tok.decode_bytes(&ids, args.remove_special, !args.no_special);
    let mut out = std::io::stdout().lock();
    out.write_all(&bytes)?;
    writeln!(out)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn ids_parse_in_every_form() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(
            super::parse_ids(&s(&["1", "2", "3"])).unwrap(),
            vec![1, 2, 3]
        );
        assert_eq!(super::parse_ids(&s(&["1,2,3"])).unwrap(), vec![1, 2, 3]);
        assert_eq!(
            super::parse_ids(&s(&["[1, 2,", "3]"])).unwrap(),
            vec![1, 2, 3]
        );
        assert!(super::parse_ids(&s(&["1", "x"])).is_err());
        assert!(super::parse_ids(&s(&["-1"])).is_err());
    }
}
