//! Chat templates against Python Jinja2, byte for byte. The expected renders are what
//! llama-cpp-python's `Jinja2ChatFormatter` gives: tests/golden/chat-templates/cases.json (made by
//! scripts/make-chat-goldens.sh from the templates beside it: the default model's, and those of
//! model families to come, on conversations, tools and refusals) and the chat cases of
//! tests/golden/smollm2-135m-q4_1/greedy.json (made by scripts/make-goldens.sh).

use std::path::Path;

use hearth_api::catalog::{DEFAULT_MODEL, models_dir};
use hearth_core::chat_template::{ChatMessage, ChatTemplate, ChatTemplateError, RenderOptions};
use hearth_core::gguf::{Gguf, Value as MetaValue};
use serde_json::Value;

const GOLDEN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/golden");

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The template file `name` of tests/golden/chat-templates/.
fn template_source(name: &str) -> String {
    let path = Path::new(GOLDEN).join("chat-templates").join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The default model's header.
fn model() -> Gguf {
    let path = models_dir().join(DEFAULT_MODEL.file);
    let file =
        std::fs::File::open(&path).unwrap_or_else(|e| panic!("{}: {e} (run scripts/fetch-model.sh)", path.display()));
    Gguf::read(&file).unwrap()
}

/// The text of the token whose id is under `key`, as llama.cpp's `token_get_text` gives it.
fn token_text(g: &Gguf, key: &str) -> String {
    let id = g.get_u64(key).unwrap() as usize;
    match g.get("tokenizer.ggml.tokens").unwrap() {
        MetaValue::Array(tokens) => match &tokens[id] {
            MetaValue::String(s) => s.clone(),
            other => panic!("token {id} is {other:?}"),
        },
        other => panic!("tokenizer.ggml.tokens is {other:?}"),
    }
}

/// The default model's own template, from its GGUF, with the texts of its BOS and EOS tokens.
fn model_template() -> (ChatTemplate, String, String) {
    let g = model();
    let bos = token_text(&g, "tokenizer.ggml.bos_token_id");
    let eos = token_text(&g, "tokenizer.ggml.eos_token_id");
    let template = ChatTemplate::from_gguf(&g, &bos, &eos).unwrap();
    assert_eq!(template.warning(), None, "the default model has its own chat template");
    (template, bos, eos)
}

/// Renders `case` of cases.json with `template`. A conversation of plain `{role, content}`
/// messages goes in as [`ChatMessage`]s (role first, as the script gives them to Jinja2); any
/// other through serde, whose maps come out sorted, as the script sorts them.
fn render_case(template: &ChatTemplate, case: &Value) -> Result<String, ChatTemplateError> {
    let mut options = RenderOptions::new().add_generation_prompt(case["add_generation_prompt"].as_bool().unwrap());
    if !case["tools"].is_null() {
        options = options.tools(&case["tools"]);
    }
    if let Some(now) = case["now_unix_seconds"].as_i64() {
        options = options.now_unix_seconds(now);
    }
    let messages = case["messages"].as_array().unwrap();
    let plain = messages
        .iter()
        .all(|m| m.as_object().is_some_and(|m| m.len() == 2 && m.contains_key("role") && m["content"].is_string()));
    if plain {
        let messages: Vec<ChatMessage> = serde_json::from_value(case["messages"].clone()).unwrap();
        template.render_with(&messages, &options)
    } else {
        template.render_serialized(messages, &options)
    }
}

/// Renders the cases of cases.json whose template file `pick` accepts, each with the template
/// `template_for` gives it; prints every case that differs from Jinja2 as `case INDEX (TEMPLATE)`,
/// then fails if any did. Returns how many it checked.
fn check_cases(pick: impl Fn(&str) -> bool, template_for: impl Fn(&str, &Value) -> ChatTemplate) -> usize {
    let cases = read_json(&Path::new(GOLDEN).join("chat-templates/cases.json"));
    let mut checked = 0;
    let mut failed = Vec::new();
    for (index, case) in cases.as_array().unwrap().iter().enumerate() {
        let name = case["template"].as_str().unwrap();
        if !pick(name) {
            continue;
        }
        checked += 1;
        let got = render_case(&template_for(name, case), case);
        let problem = match (&case["rendered"], &case["raises"], got) {
            (Value::String(want), _, Ok(got)) if *want == got => continue,
            (_, Value::String(want), Err(ChatTemplateError::Raised(got))) if *want == got => continue,
            (Value::String(want), _, got) => format!("gave {got:?}\n  Jinja2 rendered {want:?}"),
            (_, Value::String(want), got) => format!("gave {got:?}\n  Jinja2 raised {want:?}"),
            _ => panic!("case {index} ({name}) has neither \"rendered\" nor \"raises\""),
        };
        eprintln!("case {index} ({name}) {problem}");
        failed.push(format!("{index} ({name})"));
    }
    assert!(failed.is_empty(), "cases that differ from Jinja2: {}", failed.join(", "));
    checked
}

#[test]
fn templates_render_as_jinja2() {
    let checked = check_cases(
        |_| true,
        |name, case| {
            let (bos, eos) = (case["bos_token"].as_str().unwrap(), case["eos_token"].as_str().unwrap());
            ChatTemplate::new(&template_source(name), bos, eos).unwrap()
        },
    );
    assert!(checked >= 10, "cases.json should have cases, found {checked}");
}

#[test]
fn model_template_renders_as_jinja2() {
    let (template, bos, eos) = model_template();
    assert_eq!(template.source(), template_source("smollm2.jinja"), "smollm2.jinja is the default model's template");
    let checked = check_cases(
        |name| name == "smollm2.jinja",
        |_, case| {
            assert_eq!(
                (case["bos_token"].as_str(), case["eos_token"].as_str()),
                (Some(&*bos), Some(&*eos)),
                "the model's BOS and EOS texts"
            );
            template.clone()
        },
    );
    assert!(checked >= 1, "cases.json should have cases of smollm2.jinja, found {checked}");
}

#[test]
fn chat_cases_render_as_llama_cpp_python() {
    let (template, _, _) = model_template();
    let golden = read_json(&Path::new(GOLDEN).join("smollm2-135m-q4_1/greedy.json"));
    let mut checked = 0;
    for case in golden["cases"].as_array().unwrap() {
        if case["chat"] != Value::Bool(true) {
            continue;
        }
        let prompt = case["prompt"].as_str().unwrap();
        let got = template.render(&[ChatMessage::new("user", prompt)], true).unwrap();
        assert_eq!(got, case["rendered"].as_str().unwrap(), "chat case {prompt:?}");
        checked += 1;
    }
    assert!(checked >= 2, "greedy.json should have chat cases, found {checked}");
}
