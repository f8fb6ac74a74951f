//! Chat templates: render the model's own Jinja template
//! (`tokenizer.chat_template`, or a named variant) with the variables chat
//! templates expect, bounded in work and output; or a built-in template.
//!
//! Rendering follows llama.cpp's `common_chat_template_direct_apply`:
//! `messages`, `bos_token`, `eos_token`, `add_generation_prompt`, `tools`,
//! `enable_thinking`; Python-compatible string and dict methods; a leading
//! BOS text is removed when the tokenizer adds BOS itself.

mod builtin;
mod strftime;
mod tojson;

use std::io::Write;

use hearth_gguf::Metadata;
use minijinja::{Environment, Error, ErrorKind, Value};
use serde_json::Value as Json;

pub use builtin::NAMES as BUILTIN_NAMES;

/// Limits on one render.
#[derive(Clone, Copy, Debug)]
pub struct TemplateLimits {
    /// Instruction budget of the template VM.
    pub fuel: u64,
    /// Largest rendered prompt, in bytes.
    pub max_output: usize,
}

impl Default for TemplateLimits {
    fn default() -> Self {
        TemplateLimits {
            fuel: 5_000_000,
            max_output: 16 << 20,
        }
    }
}

/// Why a template could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("chat template does not compile: {0}")]
    Syntax(String),
    #[error("chat template failed: {0}")]
    Render(String),
    #[error("chat template raised an exception: {0}")]
    Raised(String),
    #[error("chat template ran out of its instruction budget ({fuel})")]
    OutOfFuel { fuel: u64 },
    #[error("chat template output exceeds {max} bytes")]
    OutputTooLarge { max: usize },
    #[error("no chat template named {name:?} (the model has: {available}; built in: chatml, llama3, gemma, mistral, phi3)")]
    UnknownTemplate { name: String, available: String },
    #[error("invalid metadata: {0}")]
    Metadata(String),
}

/// What to render besides the messages.
#[derive(Clone, Debug, Default)]
pub struct RenderOptions {
    pub add_generation_prompt: bool,
    /// Tool definitions (OpenAI format), passed as `tools` when present.
    pub tools: Option<Json>,
    pub enable_thinking: Option<bool>,
    /// Remove a leading BOS text (the tokenizer adds BOS itself).
    pub strip_bos: bool,
    /// Extra variables (`chat_template_kwargs`); they override the defaults.
    pub extra: serde_json::Map<String, Json>,
    /// The time (Unix seconds) for `datetime` / `date_string`; `None` = now.
    pub now: Option<i64>,
}

/// A compiled chat template.
pub struct ChatTemplate {
    env: Environment<'static>,
    source: String,
    bos_token: String,
    eos_token: String,
    limits: TemplateLimits,
}

const NAME: &str = "chat";

impl ChatTemplate {
    /// Compiles `source`, with the texts of the BOS and EOS tokens.
    pub fn new(source: &str, bos_token: &str, eos_token: &str) -> Result<Self, TemplateError> {
        let mut env = Environment::new();
        // Hugging Face renders chat templates with trim_blocks and lstrip_blocks.
        let syntax = minijinja::syntax::SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .build()
            .map_err(|e| TemplateError::Syntax(describe(&e)))?;
        env.set_syntax(syntax);
        env.set_recursion_limit(100);
        minijinja_contrib::add_to_environment(&mut env);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_filter("tojson", tojson::tojson);
        env.add_function("raise_exception", |msg: String| -> Result<Value, Error> {
            Err(Error::new(
                ErrorKind::InvalidOperation,
                format!("raise_exception: {msg}"),
            ))
        });
        env.add_function("strftime_now", |fmt: String| strftime::now(&fmt));
        env.add_filter("length", python_length);
        env.add_filter("count", python_length);
        env.add_template_owned(NAME, strip_generation_tags(source))
            .map_err(|e| TemplateError::Syntax(describe(&e)))?;
        Ok(ChatTemplate {
            env,
            source: source.to_string(),
            bos_token: bos_token.to_string(),
            eos_token: eos_token.to_string(),
            limits: TemplateLimits::default(),
        })
    }

    /// The built-in template `name` (see [`BUILTIN_NAMES`]).
    pub fn builtin(name: &str, bos_token: &str, eos_token: &str) -> Option<Self> {
        builtin::source(name).and_then(|s| Self::new(s, bos_token, eos_token).ok())
    }

    /// The template a model would use: `name` picks a variant stored as
    /// `tokenizer.chat_template.<name>` or a built-in; without a name, the
    /// model's `tokenizer.chat_template`, else the built-in for its
    /// architecture.
    pub fn for_model(
        meta: &Metadata,
        name: Option<&str>,
        bos_token: &str,
        eos_token: &str,
    ) -> Result<Self, TemplateError> {
        let md = |e: hearth_gguf::GgufError| TemplateError::Metadata(e.to_string());
        if let Some(name) = name {
            let key = format!("tokenizer.chat_template.{name}");
            if let Some(src) = meta.get_str_opt(&key).map_err(md)? {
                return Self::new(src, bos_token, eos_token);
            }
            if let Some(t) = Self::builtin(name, bos_token, eos_token) {
                return Ok(t);
            }
            let available: Vec<&str> = meta
                .iter()
                .filter_map(|(k, _)| k.strip_prefix("tokenizer.chat_template."))
                .collect();
            return Err(TemplateError::UnknownTemplate {
                name: name.to_string(),
                available: if available.is_empty() {
                    "none".into()
                } else {
                    available.join(", ")
                },
            });
        }
        if let Some(src) = meta.get_str_opt("tokenizer.chat_template").map_err(md)? {
            return Self::new(src, bos_token, eos_token);
        }
        let arch = meta
            .get_str_opt("general.architecture")
            .map_err(md)?
            .unwrap_or("");
        let name = builtin::for_architecture(arch);
        Self::builtin(name, bos_token, eos_token)
            .ok_or_else(|| TemplateError::Syntax(format!("built-in template {name}")))
    }

    /// Sets the render limits.
    pub fn with_limits(mut self, limits: TemplateLimits) -> Self {
        self.limits = limits;
        self
    }

    /// The template source.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Whether the template reads a `tools` variable.
    pub fn uses_tools(&self) -> bool {
        self.env
            .get_template(NAME)
            .is_ok_and(|t| t.undeclared_variables(false).contains("tools"))
    }

    /// Renders `messages` (OpenAI-style objects: role, content, and any
    /// other fields such as tool_calls). When the template cannot take a
    /// system message (it raises, or drops the text), the system message is
    /// joined to the first user message and the render is retried, as
    /// llama.cpp does for such templates.
    pub fn render(&self, messages: &[Json], opts: &RenderOptions) -> Result<String, TemplateError> {
        let messages: Vec<Json> = messages.iter().map(normalize_message).collect();
        let first = self.render_raw(&messages, opts);
        let system = messages
            .first()
            .filter(|m| m.get("role").and_then(Json::as_str) == Some("system"))
            .and_then(|m| m.get("content").and_then(Json::as_str))
            .filter(|s| !s.is_empty());
        let Some(system) = system else {
            return first;
        };
        let lost_system = match &first {
            Ok(out) => !out.contains(system),
            Err(TemplateError::Raised(_)) => true,
            Err(_) => false,
        };
        if !lost_system {
            return first;
        }
        let merged = merge_system_into_first_user(&messages);
        self.render_raw(&merged, opts).or(first)
    }

    fn render_raw(&self, messages: &[Json], opts: &RenderOptions) -> Result<String, TemplateError> {
        let mut ctx = serde_json::Map::new();
        ctx.insert("messages".into(), Json::Array(messages.to_vec()));
        ctx.insert("bos_token".into(), Json::String(self.bos_token.clone()));
        ctx.insert("eos_token".into(), Json::String(self.eos_token.clone()));
        ctx.insert(
            "add_generation_prompt".into(),
            Json::Bool(opts.add_generation_prompt),
        );
        if let Some(t) = opts.enable_thinking {
            ctx.insert("enable_thinking".into(), Json::Bool(t));
        }
        if let Some(tools) = &opts.tools {
            ctx.insert("tools".into(), tools.clone());
        }
        // llama.cpp passes the date to every template (common_chat_extra_context).
        let now = opts.now.unwrap_or_else(strftime::unix_now);
        ctx.insert(
            "datetime".into(),
            Json::String(strftime::format("%b %d %Y", now)),
        );
        ctx.insert(
            "date_string".into(),
            Json::String(strftime::format("%d %b %Y", now)),
        );
        for (k, v) in &opts.extra {
            ctx.insert(k.clone(), v.clone());
        }
        let mut env = self.env.clone();
        env.set_fuel(Some(self.limits.fuel));
        let tmpl = env
            .get_template(NAME)
            .map_err(|e| TemplateError::Syntax(describe(&e)))?;
        // llama.cpp treats an undefined value concatenated with a string as
        // "": give variables the template reads but never tests for
        // definedness an empty string, so such templates render as there.
        for var in tmpl.undeclared_variables(false) {
            let tested = self.source.contains(&format!("{var} is "));
            if !ctx.contains_key(&var) && !tested && env.globals().all(|(g, _)| g != var) {
                ctx.insert(var, Json::String(String::new()));
            }
        }
        let mut out = BoundedWriter::new(self.limits.max_output);
        let ctx = Value::from(minijinja::value::Serde(&ctx));
        let result = tmpl.render_captured_to(ctx, &mut out).map(drop);
        if out.overflowed {
            return Err(TemplateError::OutputTooLarge {
                max: self.limits.max_output,
            });
        }
        result.map_err(|e| classify(&e, self.limits.fuel))?;
        let mut text =
            String::from_utf8(out.buf).map_err(|e| TemplateError::Render(e.to_string()))?;
        if opts.strip_bos && !self.bos_token.is_empty() && text.starts_with(&self.bos_token) {
            text.drain(..self.bos_token.len());
        }
        Ok(text)
    }
}

/// Hugging Face's `{% generation %}` / `{% endgeneration %}` markers (for
/// training masks) are no-ops when rendering a prompt: drop them.
fn strip_generation_tags(source: &str) -> String {
    let mut out = String::with_capacity(source.len());
    let mut rest = source;
    while let Some(start) = rest.find("{%") {
        let Some(len) = rest[start..].find("%}") else {
            break;
        };
        let tag = &rest[start + 2..start + len];
        let word = tag.trim_matches(|c: char| c == '-' || c == '+' || c.is_whitespace());
        out.push_str(&rest[..start]);
        if word != "generation" && word != "endgeneration" {
            out.push_str(&rest[start..start + len + 2]);
        }
        rest = &rest[start + len + 2..];
    }
    out.push_str(rest);
    out
}

/// `length` as in Python's Jinja: an undefined value has length 0.
fn python_length(v: Value) -> Result<usize, Error> {
    if v.is_undefined() {
        return Ok(0);
    }
    v.len().ok_or_else(|| {
        Error::new(
            ErrorKind::InvalidOperation,
            format!("cannot calculate length of value of type {}", v.kind()),
        )
    })
}

/// `content: null` becomes `""` (templates concatenate it).
fn normalize_message(m: &Json) -> Json {
    let mut m = m.clone();
    if let Some(obj) = m.as_object_mut() {
        if obj.get("content").is_none_or(Json::is_null) {
            obj.insert("content".into(), Json::String(String::new()));
        }
    }
    m
}

fn merge_system_into_first_user(messages: &[Json]) -> Vec<Json> {
    let system = messages[0]["content"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let mut rest: Vec<Json> = messages[1..].to_vec();
    match rest.iter_mut().find(|m| m["role"] == "user") {
        Some(user) => {
            let content = user["content"].as_str().unwrap_or_default();
            user["content"] = Json::String(format!("{system}\n\n{content}"));
        }
        None => rest.insert(0, serde_json::json!({"role": "user", "content": system})),
    }
    rest
}

fn describe(e: &Error) -> String {
    let mut s = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

fn classify(e: &Error, fuel: u64) -> TemplateError {
    let msg = describe(e);
    if e.kind() == ErrorKind::OutOfFuel {
        TemplateError::OutOfFuel { fuel }
    } else if let Some(i) = msg.find("raise_exception: ") {
        TemplateError::Raised(msg[i + "raise_exception: ".len()..].to_string())
    } else {
        TemplateError::Render(msg)
    }
}

/// Collects output and fails the render once it passes `max` bytes.
struct BoundedWriter {
    buf: Vec<u8>,
    max: usize,
    overflowed: bool,
}

impl BoundedWriter {
    fn new(max: usize) -> Self {
        BoundedWriter {
            buf: Vec::new(),
            max,
            overflowed: false,
        }
    }
}

impl Write for BoundedWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        if self.buf.len() + data.len() > self.max {
            self.overflowed = true;
            return Err(std::io::Error::other("output budget exceeded"));
        }
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests;
