//! Chat template rendering: every template llama.cpp ships renders; exact
//! output for the common families (expected strings written by hand from
//! each template's definition); hostile templates are contained.

use super::*;
use serde_json::json;

fn conversation() -> Vec<Json> {
    vec![
        json!({"role": "system", "content": "You are a helpful assistant."}),
        json!({"role": "user", "content": "Hello!"}),
        json!({"role": "assistant", "content": "Hi there. How can I help?"}),
        json!({"role": "user", "content": "What is 2+2?"}),
    ]
}

fn weather_tool() -> Json {
    json!([{
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Get the weather",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string", "description": "The city"}},
                "required": ["city"]
            }
        }
    }])
}

/// 2024-07-26 12:34:56 UTC, so dates in templates are fixed.
const NOW: i64 = 1_722_000_896;

fn gen_prompt() -> RenderOptions {
    RenderOptions {
        add_generation_prompt: true,
        now: Some(NOW),
        ..Default::default()
    }
}

fn templates_dir() -> std::path::PathBuf {
    hearth_store::llama_cpp_models_dir()
        .expect("llama.cpp fixtures (scripts/fetch-fixtures.sh)")
        .join("templates")
}

fn shipped(name: &str, bos: &str, eos: &str) -> ChatTemplate {
    let src = std::fs::read_to_string(templates_dir().join(name)).unwrap();
    ChatTemplate::new(&src, bos, eos).unwrap()
}

#[test]
fn every_template_shipped_with_llama_cpp_renders_a_conversation() {
    let mut names: Vec<_> = std::fs::read_dir(templates_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "jinja"))
        .collect();
    names.sort();
    assert_eq!(names.len(), 70, "the sdist ships 70 templates");
    let mut failures = Vec::new();
    for path in &names {
        let src = std::fs::read_to_string(path).unwrap();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let tmpl = match ChatTemplate::new(&src, "<s>", "</s>") {
            Ok(t) => t,
            Err(e) => {
                failures.push(format!("{name}: {e}"));
                continue;
            }
        };
        match tmpl.render(&conversation(), &gen_prompt()) {
            Ok(out) => {
                for needle in ["Hello!", "Hi there. How can I help?", "What is 2+2?"] {
                    if !out.contains(needle) {
                        failures.push(format!("{name}: output lacks {needle:?}:\n{out}"));
                    }
                }
            }
            Err(e) => failures.push(format!("{name}: {e}")),
        }
        if tmpl.uses_tools() {
            let opts = RenderOptions {
                tools: Some(weather_tool()),
                ..gen_prompt()
            };
            match tmpl.render(&conversation(), &opts) {
                Ok(out) if out.contains("get_weather") => {}
                Ok(out) => failures.push(format!("{name} (tools): no tool in output:\n{out}")),
                Err(e) => failures.push(format!("{name} (tools): {e}")),
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn llama_3_1_renders_exactly() {
    let t = shipped(
        "meta-llama-Llama-3.1-8B-Instruct.jinja",
        "<|begin_of_text|>",
        "<|eot_id|>",
    );
    let out = t.render(&conversation(), &gen_prompt()).unwrap();
    assert_eq!(
        out,
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n\
         Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n\
         You are a helpful assistant.<|eot_id|>\
         <|start_header_id|>user<|end_header_id|>\n\nHello!<|eot_id|>\
         <|start_header_id|>assistant<|end_header_id|>\n\nHi there. How can I help?<|eot_id|>\
         <|start_header_id|>user<|end_header_id|>\n\nWhat is 2+2?<|eot_id|>\
         <|start_header_id|>assistant<|end_header_id|>\n\n"
    );
    let stripped = RenderOptions {
        strip_bos: true,
        ..gen_prompt()
    };
    assert!(t
        .render(&conversation(), &stripped)
        .unwrap()
        .starts_with("<|start_header_id|>system"));
}

#[test]
fn qwen_2_5_renders_exactly() {
    let t = shipped("Qwen-Qwen2.5-7B-Instruct.jinja", "", "<|im_end|>");
    let out = t.render(&conversation(), &gen_prompt()).unwrap();
    assert_eq!(
        out,
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n\
         <|im_start|>user\nHello!<|im_end|>\n\
         <|im_start|>assistant\nHi there. How can I help?<|im_end|>\n\
         <|im_start|>user\nWhat is 2+2?<|im_end|>\n\
         <|im_start|>assistant\n"
    );
    // Without a system message, Qwen's default one.
    let out = t.render(&conversation()[1..2], &gen_prompt()).unwrap();
    assert_eq!(
        out,
        "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n\
         <|im_start|>user\nHello!<|im_end|>\n<|im_start|>assistant\n"
    );
}

#[test]
fn qwen_2_5_renders_tools_like_python_json_dumps() {
    let t = shipped("Qwen-Qwen2.5-7B-Instruct.jinja", "", "<|im_end|>");
    let opts = RenderOptions {
        tools: Some(weather_tool()),
        ..gen_prompt()
    };
    let out = t.render(&conversation()[..2], &opts).unwrap();
    assert_eq!(
        out,
        "<|im_start|>system\nYou are a helpful assistant.\n\n# Tools\n\n\
         You may call one or more functions to assist with the user query.\n\n\
         You are provided with function signatures within <tools></tools> XML tags:\n<tools>\n\
         {\"type\": \"function\", \"function\": {\"name\": \"get_weather\", \"description\": \"Get the weather\", \
         \"parameters\": {\"type\": \"object\", \"properties\": {\"city\": {\"type\": \"string\", \"description\": \"The city\"}}, \"required\": [\"city\"]}}}\n\
         </tools>\n\nFor each function call, return a json object with function name and arguments within \
         <tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\n\
         </tool_call><|im_end|>\n<|im_start|>user\nHello!<|im_end|>\n<|im_start|>assistant\n"
    );
}

#[test]
fn gemma_2_renders_exactly_with_the_system_message_folded_into_the_first_turn() {
    // The template raises on a system role; like llama.cpp, the system
    // message is joined to the first user message.
    let t = shipped("google-gemma-2-2b-it.jinja", "<bos>", "<eos>");
    let out = t.render(&conversation(), &gen_prompt()).unwrap();
    assert_eq!(
        out,
        "<bos><start_of_turn>user\nYou are a helpful assistant.\n\nHello!<end_of_turn>\n\
         <start_of_turn>model\nHi there. How can I help?<end_of_turn>\n\
         <start_of_turn>user\nWhat is 2+2?<end_of_turn>\n<start_of_turn>model\n"
    );
}

#[test]
fn mistral_nemo_renders_exactly() {
    let t = shipped("mistralai-Mistral-Nemo-Instruct-2407.jinja", "<s>", "</s>");
    let out = t.render(&conversation(), &gen_prompt()).unwrap();
    assert_eq!(
        out,
        "<s>[INST]Hello![/INST]Hi there. How can I help?</s>\
         [INST]You are a helpful assistant.\n\nWhat is 2+2?[/INST]"
    );
}

#[test]
fn builtin_chatml_renders_exactly() {
    let t = ChatTemplate::builtin("chatml", "", "").unwrap();
    let out = t.render(&conversation(), &gen_prompt()).unwrap();
    assert_eq!(
        out,
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n\
         <|im_start|>user\nHello!<|im_end|>\n\
         <|im_start|>assistant\nHi there. How can I help?<|im_end|>\n\
         <|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n"
    );
}

#[test]
fn builtin_templates_render_their_formats() {
    let expect = [
        ("llama3", "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou are a helpful assistant.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nHello!<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nHi there. How can I help?<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nWhat is 2+2?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"),
        ("gemma", "<|begin_of_text|><start_of_turn>user\nYou are a helpful assistant.\n\nHello!<end_of_turn>\n<start_of_turn>model\nHi there. How can I help?<end_of_turn>\n<start_of_turn>user\nWhat is 2+2?<end_of_turn>\n<start_of_turn>model\n"),
        ("mistral", "<|begin_of_text|>[INST] You are a helpful assistant.\n\nHello![/INST]Hi there. How can I help?</s>[INST] What is 2+2?[/INST]"),
        ("phi3", "<|system|>\nYou are a helpful assistant.<|end|>\n<|user|>\nHello!<|end|>\n<|assistant|>\nHi there. How can I help?<|end|>\n<|user|>\nWhat is 2+2?<|end|>\n<|assistant|>\n"),
    ];
    for (name, expected) in expect {
        let t = ChatTemplate::builtin(name, "<|begin_of_text|>", "</s>").unwrap();
        assert_eq!(
            t.render(&conversation(), &gen_prompt()).unwrap(),
            expected,
            "{name}"
        );
    }
}

#[test]
fn a_model_without_a_template_gets_the_builtin_for_its_architecture() {
    let mut meta = Metadata::new();
    meta.set(
        "general.architecture",
        hearth_gguf::Value::String("qwen2".into()),
    );
    let t = ChatTemplate::for_model(&meta, None, "", "").unwrap();
    assert!(t.source().contains("<|im_start|>"));
    meta.set(
        "general.architecture",
        hearth_gguf::Value::String("gemma3".into()),
    );
    let t = ChatTemplate::for_model(&meta, None, "<bos>", "").unwrap();
    assert!(t.source().contains("<start_of_turn>"));
    meta.set(
        "tokenizer.chat_template.tool_use",
        hearth_gguf::Value::String("TOOLS".into()),
    );
    let t = ChatTemplate::for_model(&meta, Some("tool_use"), "", "").unwrap();
    assert_eq!(t.render(&[], &RenderOptions::default()).unwrap(), "TOOLS");
    assert!(matches!(
        ChatTemplate::for_model(&meta, Some("nope"), "", ""),
        Err(TemplateError::UnknownTemplate { .. })
    ));
}

#[test]
fn python_sandbox_escapes_are_harmless() {
    // CVE-2024-34359: class/mro walking must not reach anything.
    let t = ChatTemplate::new(
        "{{ ''.__class__.__mro__[1].__subclasses__() }}{{ cycler.__init__.__globals__ }}x",
        "",
        "",
    )
    .unwrap();
    match t.render(&[], &RenderOptions::default()) {
        Ok(out) => assert!(!out.contains("class") && out.ends_with('x'), "{out}"),
        Err(TemplateError::Render(_)) => {}
        Err(e) => panic!("unexpected {e}"),
    }
}

#[test]
fn a_huge_range_is_stopped() {
    let t = ChatTemplate::new("{% for i in range(10**9) %}x{% endfor %}", "", "").unwrap();
    assert!(t.render(&[], &RenderOptions::default()).is_err());
}

#[test]
fn endless_loops_run_out_of_fuel() {
    let t = ChatTemplate::new(
        "{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}",
        "",
        "",
    )
    .unwrap();
    assert!(matches!(
        t.render(&[], &RenderOptions::default()),
        Err(TemplateError::OutOfFuel { .. })
    ));
}

#[test]
fn deep_recursion_is_stopped() {
    let t = ChatTemplate::new(
        "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}",
        "",
        "",
    )
    .unwrap();
    assert!(matches!(
        t.render(&[], &RenderOptions::default()),
        Err(TemplateError::Render(_))
    ));
}

#[test]
fn huge_string_repetition_is_stopped() {
    let t = ChatTemplate::new("{{ 'a' * 10**9 }}", "", "").unwrap();
    assert!(t.render(&[], &RenderOptions::default()).is_err());
    // Below minijinja's own cap, the output budget stops it.
    let t = ChatTemplate::new(
        "{% for i in range(50) %}{{ 'a' * 1000000 }}{% endfor %}",
        "",
        "",
    )
    .unwrap()
    .with_limits(TemplateLimits {
        fuel: 1_000_000,
        max_output: 1 << 20,
    });
    assert!(matches!(
        t.render(&[], &RenderOptions::default()),
        Err(TemplateError::OutputTooLarge { .. })
    ));
}

#[test]
fn syntax_errors_and_raised_exceptions_are_reported() {
    assert!(matches!(
        ChatTemplate::new("{% for %}", "", ""),
        Err(TemplateError::Syntax(_))
    ));
    let t = ChatTemplate::new("{{ raise_exception('nope') }}", "", "").unwrap();
    match t.render(&[], &RenderOptions::default()) {
        Err(TemplateError::Raised(msg)) => assert!(msg.contains("nope")),
        other => panic!("{other:?}"),
    }
}

#[test]
fn python_string_methods_work() {
    let t = ChatTemplate::new(
        "{{ '  a b  '.strip() }}|{{ 'a,b'.split(',') | join('+') }}|{{ 'abc'.startswith('ab') }}|\
         {% for k, v in {'x': 1}.items() %}{{ k }}={{ v }}{% endfor %}|{{ 'Hi'.upper() }}|{{ {'k': 'é'} | tojson }}",
        "",
        "",
    )
    .unwrap();
    assert_eq!(
        t.render(&[], &RenderOptions::default()).unwrap(),
        "a b|a+b|True|x=1|HI|{\"k\": \"é\"}"
    );
}
