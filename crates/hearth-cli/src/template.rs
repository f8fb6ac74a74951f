//! `hearth template`: a conversation rendered with the model's chat template.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use hearth_gguf::MappedGguf;
use hearth_tokenizer::template::{ChatTemplate, RenderOptions};
use hearth_tokenizer::Tokenizer;
use serde_json::Value as Json;

#[derive(Args)]
pub struct TemplateArgs {
    /// The GGUF model (default: the default model).
    #[arg(short, long)]
    model: Option<PathBuf>,
    /// JSON file: an array of messages, or an object with `messages` (and
    /// optionally `tools`).
    #[arg(long)]
    messages: PathBuf,
    /// A named template: a `tokenizer.chat_template.NAME` of the model, or a
    /// built-in one (chatml, llama3, gemma, mistral, phi3).
    #[arg(long)]
    template: Option<String>,
    /// Do not end with the assistant's turn header.
    #[arg(long)]
    no_generation_prompt: bool,
}

/// The model's template (or the named one) with its BOS/EOS texts.
pub fn chat_template(
    gguf: &MappedGguf,
    tokenizer: &Tokenizer,
    name: Option<&str>,
) -> Result<ChatTemplate> {
    let text = |id: Option<u32>| {
        id.and_then(|i| tokenizer.token_text(i))
            .unwrap_or_default()
            .to_string()
    };
    Ok(ChatTemplate::for_model(
        &gguf.file().metadata,
        name,
        &text(tokenizer.bos()),
        &text(tokenizer.eos()),
    )?)
}

pub fn run(args: TemplateArgs) -> Result<()> {
    let path = crate::model_path(args.model)?;
    let gguf = MappedGguf::open(&path).with_context(|| format!("reading {}", path.display()))?;
    let tokenizer = Tokenizer::from_metadata(&gguf.file().metadata)?;
    let tmpl = chat_template(&gguf, &tokenizer, args.template.as_deref())?;
    let raw = std::fs::read_to_string(&args.messages)
        .with_context(|| format!("reading {}", args.messages.display()))?;
    let doc: Json = serde_json::from_str(&raw)
        .with_context(|| format!("{} is not JSON", args.messages.display()))?;
    let (messages, tools) = match doc {
        Json::Array(m) => (m, None),
        Json::Object(mut o) => match o.remove("messages") {
            Some(Json::Array(m)) => (m, o.remove("tools")),
            _ => bail!("{}: expected a `messages` array", args.messages.display()),
        },
        _ => bail!("{}: expected an array of messages", args.messages.display()),
    };
    // The text printed is what gets tokenized: like llama.cpp, drop a BOS
    // the template wrote when the tokenizer adds one itself.
    let opts = RenderOptions {
        add_generation_prompt: !args.no_generation_prompt,
        tools,
        strip_bos: tokenizer.add_bos(),
        ..Default::default()
    };
    print!("{}", tmpl.render(&messages, &opts)?);
    Ok(())
}
