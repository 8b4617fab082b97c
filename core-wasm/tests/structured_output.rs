//! Constrained decoding on the default model: for each schema, 50 seeded generations all parse
//! and validate against the schema (checked by the `jsonschema` crate, not by our matcher);
//! an unsupported schema is a clear error before anything is generated.

use hearth_api::catalog::{DEFAULT_MODEL, models_dir};
use hearth_core::chat_template::ChatMessage;
use hearth_core::engine::{
    Completion, Engine, EngineError, FinishReason, GenerateParams, JsonSchemaFormat, Prompt, ResponseFormat,
    native_clock,
};
use hearth_core::sampler::SamplerConfig;
use serde_json::{Value, json};

fn engine() -> Engine {
    let path = models_dir().join(DEFAULT_MODEL.file);
    let file = hearth_core::mapped_file::MappedFile::open(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (run scripts/fetch-model.sh)", path.display()));
    Engine::load(&file, 1024, native_clock).unwrap()
}

fn format(schema: &Value) -> ResponseFormat {
    ResponseFormat::JsonSchema { json_schema: JsonSchemaFormat { name: "t".into(), schema: schema.clone() } }
}

/// 50 seeded generations of `prompt` under `format`, decoded as one batch.
fn generations(engine: &mut Engine, prompt: &str, format: ResponseFormat) -> Vec<Completion> {
    let requests: Vec<(Prompt, GenerateParams)> = (0..50)
        .map(|seed| {
            let params = GenerateParams {
                max_tokens: 160,
                sampler: SamplerConfig { temperature: 0.9, top_k: 50, seed, ..SamplerConfig::default() },
                response_format: format.clone(),
                ..GenerateParams::default()
            };
            (Prompt::Chat(vec![ChatMessage::new("user", prompt)]), params)
        })
        .collect();
    pollster::block_on(engine.generate_batch(&requests)).unwrap().into_iter().map(Result::unwrap).collect()
}

#[test]
fn every_seeded_generation_validates_against_its_schema() {
    let mut engine = engine();
    let schemas = [
        (
            "Describe a person as JSON.",
            json!({
                "type": "object",
                "properties": {
                    "name": {"type": "string", "maxLength": 24},
                    "age": {"type": "integer"},
                    "hobbies": {"type": "array", "items": {"type": "string", "maxLength": 16}, "maxItems": 3},
                    "employed": {"type": "boolean"}
                },
                "required": ["name", "age", "employed"]
            }),
        ),
        ("What colour is the sky?", json!({"enum": ["red", "green", "blue", "grey"]})),
        (
            "Give a US address.",
            json!({
                "type": "object",
                "properties": {
                    "street": {"type": "string", "maxLength": 24},
                    "zip": {"type": "string", "pattern": "^[0-9]{5}$"}
                },
                "required": ["street", "zip"]
            }),
        ),
        (
            "Call a tool to add 2 and 3.",
            json!({
                "type": "object",
                "properties": {
                    "name": {"enum": ["calculator", "scratchpad"]},
                    "arguments": {
                        "type": "object",
                        "properties": {"expression": {"type": "string", "minLength": 1, "maxLength": 24}},
                        "required": ["expression"]
                    }
                },
                "required": ["name", "arguments"]
            }),
        ),
        (
            "List two cities with their populations.",
            json!({
                "type": "array",
                "minItems": 1,
                "maxItems": 2,
                "items": {
                    "type": "object",
                    "properties": {
                        "city": {"type": "string", "maxLength": 20},
                        "population": {"anyOf": [{"type": "number"}, {"type": "null"}]}
                    },
                    "required": ["city", "population"]
                }
            }),
        ),
    ];
    for (prompt, schema) in &schemas {
        let validator = jsonschema::validator_for(schema).expect("a valid schema");
        let outputs: Vec<String> = generations(&mut engine, prompt, format(schema))
            .into_iter()
            .map(|c| {
                assert_eq!(c.finish_reason, FinishReason::Stop, "the value ended before the token limit: {}", c.text);
                c.text
            })
            .collect();
        for (seed, text) in outputs.iter().enumerate() {
            let value: Value = serde_json::from_str(text).unwrap_or_else(|e| panic!("seed {seed}: {e}: {text}"));
            if let Err(e) = validator.validate(&value) {
                panic!("seed {seed}: {text} does not validate: {e}");
            }
        }
        let distinct = outputs.iter().collect::<std::collections::HashSet<_>>().len();
        println!("{prompt}: 50 valid, {distinct} distinct, e.g. {}", outputs[0]);
    }
}

#[test]
fn json_object_mode_gives_objects() {
    // Free strings are unbounded, so a reply may reach the token limit (finish reason
    // "length", as with OpenAI); every reply that ended by itself is an object.
    let mut engine = engine();
    let done = generations(&mut engine, "Give me a short JSON object about a cat.", ResponseFormat::JsonObject);
    let ended: Vec<&Completion> = done.iter().filter(|c| c.finish_reason == FinishReason::Stop).collect();
    for c in &ended {
        assert!(serde_json::from_str::<Value>(&c.text).is_ok_and(|v| v.is_object()), "{}", c.text);
    }
    println!("json_object: {} of 50 ended by themselves", ended.len());
    assert!(ended.len() >= 25, "only {} of 50 replies ended before the token limit", ended.len());
}

#[test]
fn an_unsupported_schema_is_refused_by_name() {
    let mut engine = engine();
    let schema = json!({"type": "object", "properties": {"zip": {"type": "string", "format": "postal-code"}}});
    let params = GenerateParams { response_format: format(&schema), ..GenerateParams::default() };
    let prompt = Prompt::Text("zip".into());
    let e = pollster::block_on(engine.generate(&prompt, &params, |_| std::ops::ControlFlow::Continue(()))).unwrap_err();
    assert!(matches!(e, EngineError::Schema(_)), "{e:?}");
    assert_eq!(
        e.to_string(),
        "the JSON schema uses `format` at #/properties/zip, which constrained decoding does not support"
    );
}

/// `tool_choice: required` with two tools: every seeded reply is a call of one of them whose
/// arguments validate against that tool's `parameters`, finishing with `tool_calls`.
#[test]
fn forced_tool_calls_name_a_tool_and_validate_against_its_parameters() {
    let mut engine = engine();
    let tools: Vec<hearth_core::tool_call::Tool> = serde_json::from_value(json!([
        {"type": "function", "function": {"name": "get_weather", "description": "The weather in a city",
         "parameters": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 20},
                        "unit": {"enum": ["celsius", "fahrenheit"]}}, "required": ["city", "unit"]}}},
        {"type": "function", "function": {"name": "add", "description": "Adds two numbers",
         "parameters": {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
                        "required": ["a", "b"]}}},
    ]))
    .unwrap();
    let requests: Vec<(Prompt, GenerateParams)> = (0..20)
        .map(|seed| {
            let params = GenerateParams {
                max_tokens: 80,
                sampler: SamplerConfig { temperature: 0.9, top_k: 50, seed, ..SamplerConfig::default() },
                tools: tools.clone(),
                tool_choice: Some(serde_json::from_value(json!("required")).unwrap()),
                ..GenerateParams::default()
            };
            (Prompt::Chat(vec![ChatMessage::new("user", "What is the weather in Paris?")]), params)
        })
        .collect();
    let done = pollster::block_on(engine.generate_batch(&requests)).unwrap();
    let mut names = Vec::new();
    for (seed, completion) in done.into_iter().enumerate() {
        let completion = completion.unwrap();
        assert_eq!(completion.finish_reason, FinishReason::ToolCalls, "seed {seed}: {:?}", completion.text);
        assert_eq!(completion.tool_calls.len(), 1, "seed {seed}: {:?}", completion.text);
        let call = &completion.tool_calls[0].function;
        let tool = tools.iter().find(|t| t.function.name == call.name).expect("a tool of the request");
        let arguments: Value = serde_json::from_str(&call.arguments).unwrap();
        let validator = jsonschema::validator_for(&tool.function.parameters).unwrap();
        assert!(validator.is_valid(&arguments), "seed {seed}: {arguments} against {}", tool.function.parameters);
        names.push(call.name.clone());
    }
    println!("forced calls: {names:?}");

    // A choice of a function that is not offered is refused before anything is generated.
    let mut params = requests[0].1.clone();
    params.tool_choice =
        Some(serde_json::from_value(json!({"type": "function", "function": {"name": "fly"}})).unwrap());
    let err = pollster::block_on(engine.generate(&requests[0].0, &params, |_| std::ops::ControlFlow::Continue(())))
        .unwrap_err();
    assert!(err.to_string().contains("\"fly\""), "{err}");
}
