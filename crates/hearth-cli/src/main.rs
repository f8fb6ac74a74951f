//! `hearth`: run, inspect and serve GGUF models on the CPU.

mod bench;
mod chat;
mod generate;
mod imatrix;
mod inspect;
mod perplexity;
mod plan;
mod quantize;
mod run;
mod sampling_args;
mod serve;
mod store;
mod synth;
mod template;
mod threads;
mod tokenize;

use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "hearth",
    version,
    about = "Local LLM inference on the CPU, for GGUF models"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Generate text from a prompt (streams to stdout; speed on stderr).
    Run(Box<run::RunArgs>),
    /// Summarize a GGUF file: architecture, size, tensor types; or dump it as JSON.
    Inspect(inspect::InspectArgs),
    /// Measure prompt and generation speed (llama-bench's interface).
    Bench(bench::BenchArgs),
    /// Chat with a model through its chat template.
    Chat(Box<chat::ChatArgs>),
    /// Perplexity of a model on a text file (llama-perplexity's method).
    Perplexity(perplexity::PerplexityArgs),
    /// Text to token ids with a model's vocabulary (vocab-only GGUFs work too).
    Tokenize(tokenize::TokenizeArgs),
    /// Token ids back to text.
    Detokenize(tokenize::DetokenizeArgs),
    /// Render a conversation with the model's chat template (or a built-in one).
    Template(template::TemplateArgs),
    /// Quantize a GGUF model (llama-quantize's file types and mixes).
    Quantize(Box<quantize::QuantizeArgs>),
    /// Compute an importance matrix for the quantizers (llama-imatrix's method and format).
    Imatrix(Box<imatrix::ImatrixArgs>),
    /// Serve the model over HTTP: OpenAI, Ollama and llama.cpp-native APIs.
    Serve(Box<serve::ServeArgs>),
    /// Write a random-weight model with the shape of a real one (for benchmarks and tests).
    Synth(Box<synth::SynthArgs>),
    /// Memory (weights, KV cache, compute) and speed of a model on this machine, before loading it.
    Plan(Box<plan::PlanArgs>),
    /// Download a model into the store: Hugging Face `owner/repo:QUANT`, `hf://`, a URL, or the default model.
    Pull(store::PullArgs),
    /// The models in the store: name, size, type, when pulled, from where.
    List(store::ListArgs),
    /// A stored model's manifest and GGUF summary.
    Show(store::ShowArgs),
    /// Remove models from the store.
    Rm(store::RmArgs),
    /// Fetch the default model and llama.cpp's test vectors into the cache.
    FetchFixtures,
}

fn main() -> Result<()> {
    hearth_plan::memory::configure_allocator();
    let cli = Cli::parse();
    match cli.command {
        Command::Run(args) => run::run(*args),
        Command::Inspect(args) => inspect::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Chat(args) => chat::run(*args),
        Command::Perplexity(args) => perplexity::run(args),
        Command::Tokenize(args) => tokenize::run_tokenize(args),
        Command::Detokenize(args) => tokenize::run_detokenize(args),
        Command::Template(args) => template::run(args),
        Command::Quantize(args) => quantize::run(*args),
        Command::Imatrix(args) => imatrix::run(*args),
        Command::Serve(args) => serve::run(*args),
        Command::Synth(args) => synth::run(*args),
        Command::Plan(args) => plan::run(*args),
        Command::Pull(args) => store::pull(args),
        Command::List(args) => store::list(args),
        Command::Show(args) => store::show(args),
        Command::Rm(args) => store::rm(args),
        Command::FetchFixtures => fetch_fixtures(),
    }
}

/// The model named on the command line, or the default model (fetched into
/// the cache on first use). An argument that is not an existing file but is
/// a valid model name is looked up in the store (`hearth list`).
pub fn model_path(model: Option<PathBuf>) -> Result<PathBuf> {
    match model {
        Some(p) if p.exists() => Ok(p),
        Some(p) => match p.to_str().map(hearth_store::ModelName::parse) {
            Some(Ok(name)) => Ok(hearth_store::Store::default().resolve(name.as_str())?),
            // Not a name either: let the caller report the missing file.
            _ => Ok(p),
        },
        None => {
            let cache = hearth_store::cache_dir();
            if !cache
                .join("models")
                .join(hearth_store::DEFAULT_MODEL_FILE)
                .is_file()
            {
                eprintln!(
                    "fetching the default model ({}) into {} ...",
                    hearth_store::DEFAULT_MODEL_FILE,
                    cache.display()
                );
            }
            Ok(hearth_store::default_model()?)
        }
    }
}

fn fetch_fixtures() -> Result<()> {
    let model = model_path(None)?;
    println!("model:  {}", model.display());
    let models = hearth_store::llama_cpp_models_dir()?;
    println!("vocabs: {}", models.display());
    let ggml = hearth_store::llama_cpp_ggml_dir()?;
    println!("ggml:   {}", ggml.display());
    Ok(())
}
