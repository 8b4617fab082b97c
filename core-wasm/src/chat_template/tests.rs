use std::collections::BTreeMap;

use super::python::py_float_repr;
use super::*;

fn gguf(metadata: BTreeMap<String, crate::gguf::Value>) -> Gguf {
    Gguf { version: 3, metadata, tensors: Vec::new(), alignment: 32, data_offset: 0 }
}

fn render_str(source: &str) -> Result<String, ChatTemplateError> {
    let template = ChatTemplate::new(source, "<s>", "</s>")?;
    template.render(&[ChatMessage::new("user", "Hi")], true)
}

#[test]
fn model_without_template_gets_chatml_and_a_warning() {
    let template = ChatTemplate::from_gguf(&gguf(BTreeMap::new()), "<s>", "</s>").unwrap();
    let warning = template.warning().expect("a fallback must warn");
    assert!(warning.contains("no chat template") && warning.contains("ChatML"), "{warning}");
    let messages = [ChatMessage::new("system", "Be brief."), ChatMessage::new("user", "Hi")];
    assert_eq!(
        template.render(&messages, true).unwrap(),
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    );
    assert_eq!(template.render(&messages[1..], false).unwrap(), "<|im_start|>user\nHi<|im_end|>\n");

    let empty = BTreeMap::from([(CHAT_TEMPLATE_KEY.to_owned(), crate::gguf::Value::String(" \n".into()))]);
    let template = ChatTemplate::from_gguf(&gguf(empty), "", "").unwrap();
    assert!(template.warning().is_some_and(|w| w.contains("empty")));
}

#[test]
fn model_template_is_used_and_a_non_string_one_is_an_error() {
    let own = BTreeMap::from([(CHAT_TEMPLATE_KEY.to_owned(), crate::gguf::Value::String("{{ bos_token }}x".into()))]);
    let template = ChatTemplate::from_gguf(&gguf(own), "<s>", "</s>").unwrap();
    assert_eq!(template.warning(), None);
    assert_eq!(template.render(&[], true).unwrap(), "<s>x");

    let bad = BTreeMap::from([(CHAT_TEMPLATE_KEY.to_owned(), crate::gguf::Value::U32(7))]);
    let err = ChatTemplate::from_gguf(&gguf(bad), "", "").unwrap_err();
    assert!(matches!(err, ChatTemplateError::Metadata(_)), "{err}");
}

#[test]
fn a_runaway_template_runs_out_of_fuel_instead_of_hanging() {
    let source = "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}";
    let template = ChatTemplate::new(source, "", "").unwrap();
    let start = std::time::Instant::now();
    let err = template.render(&[ChatMessage::new("user", "hi")], true).unwrap_err();
    assert!(err.to_string().contains("fuel"), "{err}");
    eprintln!("out of fuel after {:?}", start.elapsed());
    // A long real conversation still renders.
    let messages: Vec<ChatMessage> =
        (0..2000).map(|i| ChatMessage::new(if i % 2 == 0 { "user" } else { "assistant" }, "hello")).collect();
    let chatml = ChatTemplate::new(CHATML_TEMPLATE, "", "").unwrap();
    assert!(chatml.render(&messages, true).is_ok());
}

#[test]
fn raise_exception_carries_the_templates_message() {
    let source = "{% for m in messages %}{% if m.role == 'user' and not loop.first %}\
                  {{ raise_exception('Roles must alternate, got ' ~ m.role ~ ' twice') }}{% endif %}{% endfor %}";
    let template = ChatTemplate::new(source, "", "").unwrap();
    let err = template.render(&[ChatMessage::new("user", "a"), ChatMessage::new("user", "b")], true).unwrap_err();
    match &err {
        ChatTemplateError::Raised(message) => assert_eq!(message, "Roles must alternate, got user twice"),
        other => panic!("expected Raised, got {other:?}"),
    }
    assert_eq!(err.to_string(), "the chat template rejected the conversation: Roles must alternate, got user twice");
}

#[test]
fn syntax_errors_name_the_problem_and_line() {
    let err = ChatTemplate::new("line one\n{% for m in messages %}\n{{ m.content }", "", "").unwrap_err();
    match &err {
        ChatTemplateError::Syntax { line, .. } => assert_eq!(*line, Some(3)),
        other => panic!("expected Syntax, got {other:?}"),
    }
    let text = err.to_string();
    assert!(text.contains("syntax error") && text.contains("line 3"), "{text}");

    let err = ChatTemplate::new("{% for m in messages %}x", "", "").unwrap_err().to_string();
    assert!(err.contains("syntax error"), "{err}");
}

#[test]
fn render_errors_are_errors_not_panics() {
    let err = render_str("a\n{{ messages[0].nope.deeper }}").unwrap_err();
    assert!(matches!(err, ChatTemplateError::Render { line: Some(2), .. }), "{err:?}");
    let err = render_str("{{ messages[0].content.no_such_method() }}").unwrap_err().to_string();
    assert!(err.contains("no_such_method"), "{err}");
}

// Expected values below are what Python 3 / Jinja2 print for the same expressions.
#[test]
fn python_string_methods() {
    let cases = [
        ("{{ '  x y \\n'.strip() }}", "x y"),
        ("{{ 'xxaxx'.strip('x') }}|{{ '  a'.lstrip() }}|{{ 'a  '.rstrip() }}|{{ '--a'.lstrip('-') }}", "a|a|a|a"),
        ("{{ 'abc'.startswith('ab') }}{{ 'abc'.startswith(('x', 'a')) }}{{ 'abc'.endswith('x') }}", "TrueTrueFalse"),
        (
            "{{ ' a b  c '.split() }}|{{ 'a,b,,c'.split(',') }}|{{ 'a,b,c'.split(',', 1) }}",
            "['a', 'b', 'c']|['a', 'b', '', 'c']|['a', 'b,c']",
        ),
        (
            "{{ 'a b  c'.split(None, 1) }}|{{ 'a,b,c'.rsplit(',', 1) }}|{{ 'a b c'.rsplit(maxsplit=1) }}",
            "['a', 'b  c']|['a,b', 'c']|['a b', 'c']",
        ),
        ("{{ '<think>x</think>answer'.split('</think>')[-1] }}", "answer"),
        (
            "{{ 'Ab'.upper() }}{{ 'Ab'.lower() }}|{{ 'aXa'.replace('a', 'b') }}|{{ 'aaa'.replace('a', 'b', 2) }}",
            "ABab|bXb|bba",
        ),
        (
            "{{ \"hello wORLD they're 1st\".title() }}|{{ 'hello World'.capitalize() }}",
            "Hello World They'Re 1St|Hello world",
        ),
        (
            "{{ '-'.join(['a', 'b']) }}|{{ 'abcb'.find('b') }}{{ 'abcb'.rfind('b') }}{{ 'abcb'.count('b') }}{{ 'a'.find('z') }}",
            "a-b|132-1",
        ),
        (
            "{{ 'a\\nb\\r\\nc'.splitlines() }}|{{ '{} and {}'.format(1, 'x') }}|{{ '12'.isdigit() }}{{ ' '.isspace() }}",
            "['a', 'b', 'c']|1 and x|TrueTrue",
        ),
        ("{{ 'prefix-x'.removeprefix('prefix-') }}", "x"),
    ];
    for (source, want) in cases {
        assert_eq!(render_str(source).unwrap(), want, "{source}");
    }
}

#[test]
fn python_dict_and_list_methods() {
    let source = "{% for k, v in messages[0].items() %}{{ k }}={{ v }};{% endfor %}|{{ messages[0].get('role') }}|\
                  {{ messages[0].get('nope', 'dflt') }}|{{ messages[0].get('nope') }}|{{ messages[0].keys()|list }}|\
                  {{ [1, 2, 1].count(1) }}{{ ['a', 'b'].index('b') }}";
    assert_eq!(render_str(source).unwrap(), "role=user;content=Hi;|user|dflt|None|['role', 'content']|21");
}

#[test]
fn values_print_as_python_does() {
    let source = "{{ none }}|{{ true }}|{{ [1, 'a', none, false] }}|{{ {'k': \"it's\"} }}|{{ 1.5 }}|{{ 1e20 }}|\
                  {{ 0.1 + 0.2 }}|{{ 4 / 2 }}|{{ nope }}|{{ true|string }}";
    assert_eq!(
        render_str(source).unwrap(),
        "None|True|[1, 'a', None, False]|{'k': \"it's\"}|1.5|1e+20|0.30000000000000004|2.0||True"
    );
}

#[test]
fn py_float_repr_matches_python() {
    let cases = [
        (1.0, "1.0"),
        (-2.5, "-2.5"),
        (1e16, "1e+16"),
        (1.5e16, "1.5e+16"),
        (1e15, "1000000000000000.0"),
        (1e-5, "1e-05"),
        (0.0001, "0.0001"),
        (123.456, "123.456"),
        (-0.0, "-0.0"),
        (f64::NAN, "nan"),
        (2.5e-300, "2.5e-300"),
    ];
    for (f, want) in cases {
        assert_eq!(py_float_repr(f), want, "{f:e}");
    }
}

#[test]
fn tojson_is_json_dumps() {
    let cases = [
        ("{{ messages|tojson }}", r#"[{"role": "user", "content": "Hi"}]"#),
        ("{{ messages[0]|tojson(indent=2) }}", "{\n  \"role\": \"user\",\n  \"content\": \"Hi\"\n}"),
        (r#"{{ [1, 2.5, none, true, 'é"\\\n<>&', 1e20]|tojson }}"#, r#"[1, 2.5, null, true, "é\"\\\n<>&", 1e+20]"#),
        ("{{ 'é😀'|tojson(ensure_ascii=true) }}", r#""\u00e9\ud83d\ude00""#),
        ("{{ [[], {}]|tojson(indent=2) }}", "[\n  [],\n  {}\n]"),
        ("{{ {'b': 1, 'a': 2}|tojson(sort_keys=true) }}", r#"{"a": 2, "b": 1}"#),
        ("{{ [1, {'a': 2}]|tojson(separators=(',', ':')) }}", r#"[1,{"a":2}]"#),
        ("{{ '\u{1}'|tojson }}", r#""\u0001""#),
    ];
    for (source, want) in cases {
        assert_eq!(render_str(source).unwrap(), want, "{source}");
    }
    assert!(render_str("{{ nope|tojson }}").is_err());
}

#[test]
fn tools_and_other_variables_are_defined_like_llama_cpp_python() {
    let template = ChatTemplate::new(
        "{{ tools is none }}{{ functions is defined }}{{ tool_choice is none }}{% if tools %}{{ tools|tojson }}{% endif %}",
        "",
        "",
    )
    .unwrap();
    assert_eq!(template.render(&[], true).unwrap(), "TrueTrueTrue");
    let tools = [BTreeMap::from([("name", "get_weather")])];
    let with_tools = template.render_with(&[], &RenderOptions::new().tools(&tools)).unwrap();
    assert_eq!(with_tools, r#"FalseTrueTrue[{"name": "get_weather"}]"#);
}

#[test]
fn strftime_now_uses_the_given_time() {
    let template =
        ChatTemplate::new("{{ strftime_now('%d %b %Y') }}|{{ strftime_now('%c %j %-d %I%p %%') }}", "", "").unwrap();
    // 2025-03-07 14:05:09 UTC, a Friday.
    let got = template.render_with(&[], &RenderOptions::new().now_unix_seconds(1_741_356_309)).unwrap();
    assert_eq!(got, "07 Mar 2025|Fri Mar  7 14:05:09 2025 066 7 02PM %");
    assert_eq!(strftime("%Y-%m-%d %H:%M:%S %A", 0), "1970-01-01 00:00:00 Thursday");
    assert_eq!(strftime("%F %j", 951_782_400), "2000-02-29 060");
    assert_eq!(strftime("%F", -86_400), "1969-12-31");
}

#[test]
fn generation_tags_are_accepted() {
    let source = "{% for m in messages %}{%- generation -%} [{{ m.content }}] {%- endgeneration %}{% endfor %}";
    assert_eq!(render_str(source).unwrap(), "[Hi]");
    // Only whole tags are rewritten.
    assert_eq!(
        rewrite_generation_tags("{{ 'generation' }}{% if generation_x %}{% endif %}"),
        "{{ 'generation' }}{% if generation_x %}{% endif %}"
    );
    assert_eq!(rewrite_generation_tags("{%generation%}a{%+ endgeneration -%}"), "{%if true%}a{%+ endif -%}");
}

#[test]
fn whitespace_control_matches_jinja2_settings() {
    // trim_blocks drops the newline after a tag, lstrip_blocks the indentation before one,
    // and the template's final newline is not kept.
    let source = "{% for m in messages %}\n  {% if m.role == 'user' %}\n    U: {{ m.content }}\n  {% endif %}\n{% endfor %}\nend\n";
    assert_eq!(render_str(source).unwrap(), "    U: Hi\nend");
}
