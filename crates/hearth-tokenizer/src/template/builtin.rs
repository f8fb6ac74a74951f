//! Built-in chat templates for GGUFs that carry none, written from each
//! format's definition (ChatML, Llama 3 headers, Gemma turns, Mistral
//! `[INST]`, Phi-3 tags). Chosen by architecture or named by the user.

/// `<|im_start|>role\ncontent<|im_end|>\n` (Qwen, SmolLM, Hermes, ...).
const CHATML: &str = "\
{%- for m in messages %}{{ '<|im_start|>' ~ m.role ~ '\\n' ~ m.content ~ '<|im_end|>\\n' }}{% endfor %}
{%- if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

/// Llama 3.x: header ids, content trimmed, `<|eot_id|>` after each turn.
const LLAMA3: &str = "{{ bos_token }}
{%- for m in messages %}{{ '<|start_header_id|>' ~ m.role ~ '<|end_header_id|>\\n\\n' ~ (m.content | trim) ~ '<|eot_id|>' }}{% endfor %}
{%- if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}";

/// Gemma: `user`/`model` turns; a system message is prepended to the first
/// user turn.
const GEMMA: &str = "{{ bos_token }}
{%- set ns = namespace(system='') %}
{%- for m in messages %}
{%- if m.role == 'system' %}{% set ns.system = m.content ~ '\\n\\n' %}
{%- else %}{{ '<start_of_turn>' ~ ('model' if m.role == 'assistant' else m.role) ~ '\\n' ~ ns.system ~ (m.content | trim) ~ '<end_of_turn>\\n' }}{% set ns.system = '' %}
{%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}{{ '<start_of_turn>model\\n' }}{% endif %}";

/// Mistral: `[INST] ... [/INST]`, the system message joined to the first
/// user message, `eos_token` after each answer.
const MISTRAL: &str = "{{ bos_token }}
{%- set ns = namespace(system='') %}
{%- for m in messages %}
{%- if m.role == 'system' %}{% set ns.system = m.content ~ '\\n\\n' %}
{%- elif m.role == 'user' %}{{ '[INST] ' ~ ns.system ~ m.content ~ '[/INST]' }}{% set ns.system = '' %}
{%- else %}{{ m.content ~ eos_token }}
{%- endif %}
{%- endfor %}";

/// Phi-3: `<|role|>\ncontent<|end|>\n`.
const PHI3: &str = "\
{%- for m in messages %}{{ '<|' ~ m.role ~ '|>\\n' ~ m.content ~ '<|end|>\\n' }}{% endfor %}
{%- if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% endif %}";

/// Names of the built-in templates.
pub const NAMES: [&str; 5] = ["chatml", "llama3", "gemma", "mistral", "phi3"];

/// The source of the built-in template `name`.
pub fn source(name: &str) -> Option<&'static str> {
    Some(match name {
        "chatml" => CHATML,
        "llama3" => LLAMA3,
        "gemma" => GEMMA,
        "mistral" => MISTRAL,
        "phi3" => PHI3,
        _ => return None,
    })
}

/// The built-in template for a model of architecture `arch` without one.
pub fn for_architecture(arch: &str) -> &'static str {
    match arch {
        "gemma" | "gemma2" | "gemma3" | "gemma3n" | "gemma4" => "gemma",
        "llama" | "llama4" => "llama3",
        "phi3" => "phi3",
        _ => "chatml",
    }
}
