//! Tool calling in OpenAI's shapes: the functions a request offers (`tools`), whether the model
//! may, must or must not call one (`tool_choice`), the instructions that tell the model how,
//! the schema a forced call is decoded under, and the calls found in a reply.
//!
//! A call is written as `<tool_call>{"name": …, "arguments": {…}}</tool_call>` (the Hermes
//! format Qwen, SmolLM and most small instruction models were tuned on). When a call is forced
//! (`required`, or a named function) the reply is decoded under a JSON schema of the calls, so
//! it always parses and its arguments match the function's `parameters`.

pub use hearth_api::tool_call::{
    FunctionCall, FunctionDef, FunctionKind, FunctionName, Tool, ToolCall, ToolChoice, ToolMode,
};
use serde_json::{Value, json};

/// A request's tools that cannot work, with the offending name.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum ToolError {
    #[error("tool_choice names the function {0:?}, which is not among the tools")]
    UnknownChoice(String),
    #[error("tool_choice is {0:?} but no tools were given")]
    NoTools(&'static str),
    #[error("two tools are named {0:?}")]
    DuplicateName(String),
    #[error("the tool name {0:?} is not 1–64 letters, digits, '_' or '-'")]
    BadName(String),
    #[error("tools need a chat prompt (messages), not plain text")]
    NotChat,
}

/// What a request's `tools` and `tool_choice` ask of the model.
#[derive(Clone, Debug, PartialEq)]
pub enum ToolUse<'a> {
    /// No tools: generate as asked.
    Off,
    /// Tell the model about `tools`; it may answer or call one.
    Auto(&'a [Tool]),
    /// The reply is a call of one of these (all of `tools`, or the one `tool_choice` names).
    Forced { tools: &'a [Tool], only: Option<&'a Tool> },
}

impl<'a> ToolUse<'a> {
    /// Checks `tools` and `tool_choice` (absent: `auto` with tools, `none` without).
    pub fn new(tools: &'a [Tool], choice: Option<&ToolChoice>) -> Result<Self, ToolError> {
        for (i, tool) in tools.iter().enumerate() {
            let name = &tool.function.name;
            let valid = (1..=64).contains(&name.len())
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
            if !valid {
                return Err(ToolError::BadName(name.clone()));
            }
            if tools[..i].iter().any(|t| &t.function.name == name) {
                return Err(ToolError::DuplicateName(name.clone()));
            }
        }
        Ok(match choice {
            None if tools.is_empty() => Self::Off,
            None | Some(ToolChoice::Mode(ToolMode::Auto)) if !tools.is_empty() => Self::Auto(tools),
            Some(ToolChoice::Mode(ToolMode::None)) => Self::Off,
            Some(ToolChoice::Mode(ToolMode::Required)) if !tools.is_empty() => Self::Forced { tools, only: None },
            Some(ToolChoice::Function { function, .. }) => {
                let only = tools.iter().find(|t| t.function.name == function.name);
                match only {
                    Some(tool) => Self::Forced { tools, only: Some(tool) },
                    None => return Err(ToolError::UnknownChoice(function.name.clone())),
                }
            }
            Some(ToolChoice::Mode(ToolMode::Required)) => return Err(ToolError::NoTools("required")),
            _ => return Err(ToolError::NoTools("auto")),
        })
    }

    /// The text that tells the model about the tools, for the system message.
    pub fn instructions(&self) -> Option<String> {
        let (tools, how) = match self {
            Self::Off => return None,
            Self::Auto(tools) => (
                *tools,
                "To call a function, reply with only <tool_call>{\"name\": <function name>, \"arguments\": <arguments \
                 object>}</tool_call> and nothing else; you will get its result. If no function is needed, answer \
                 normally.",
            ),
            Self::Forced { tools, only: None } => (
                *tools,
                "Reply with only a JSON object {\"name\": <function name>, \"arguments\": <arguments object>} that \
                 calls one of them.",
            ),
            Self::Forced { only: Some(tool), .. } => (
                std::slice::from_ref(*tool),
                "Reply with only a JSON object {\"name\": <function name>, \"arguments\": <arguments object>} that \
                 calls it.",
            ),
        };
        let list: Vec<String> = tools
            .iter()
            .map(|t| {
                json!({"name": t.function.name, "description": t.function.description, "parameters": t.function.parameters})
                    .to_string()
            })
            .collect();
        Some(format!("You can call these functions:\n{}\n{how}", list.join("\n")))
    }

    /// The JSON schema a forced call is decoded under: `{"name": one of the names, "arguments":
    /// that function's parameters}`.
    pub fn schema(&self) -> Option<Value> {
        let call = |t: &Tool| {
            json!({
                "type": "object",
                "properties": {"name": {"const": t.function.name}, "arguments": t.function.parameters},
                "required": ["name", "arguments"],
            })
        };
        match self {
            Self::Forced { only: Some(tool), .. } => Some(call(tool)),
            Self::Forced { tools: [tool], only: None } => Some(call(tool)),
            Self::Forced { tools, only: None } => Some(json!({"anyOf": tools.iter().map(call).collect::<Vec<_>>()})),
            _ => None,
        }
    }

    /// The calls in a finished reply: for a forced call, the reply itself; otherwise a
    /// `<tool_call>` block or a bare `{"name", "arguments"}` object naming one of the tools.
    pub fn calls(&self, reply: &str) -> Vec<ToolCall> {
        let tools = match self {
            Self::Off => return Vec::new(),
            Self::Auto(tools) | Self::Forced { tools, .. } => *tools,
        };
        let known = |v: &Value| -> Option<(String, Value)> {
            let name = v.get("name")?.as_str()?;
            let tool = tools.iter().find(|t| t.function.name == name)?;
            let arguments = match v.get("arguments").or_else(|| v.get("parameters")) {
                // Some models write the arguments as a JSON text.
                Some(Value::String(s)) => serde_json::from_str(s).unwrap_or(Value::String(s.clone())),
                Some(other) => other.clone(),
                None => json!({}),
            };
            Some((tool.function.name.clone(), arguments))
        };
        let mut calls = Vec::new();
        let mut rest = reply;
        while let Some((_, after)) = rest.split_once("<tool_call>") {
            let (inner, tail) = after.split_once("</tool_call>").unwrap_or((after, ""));
            if let Some(call) = first_json(inner).as_ref().and_then(known) {
                calls.push(call);
            }
            rest = tail;
        }
        if calls.is_empty()
            && let Some(call) = first_json(reply.trim()).as_ref().and_then(known)
            && reply.trim_start().starts_with('{')
        {
            calls.push(call);
        }
        calls
            .into_iter()
            .enumerate()
            .map(|(i, (name, arguments))| ToolCall {
                id: call_id(reply, i),
                kind: FunctionKind::Function,
                function: FunctionCall { name, arguments: arguments.to_string() },
            })
            .collect()
    }
}

/// The first JSON object in `text`.
fn first_json(text: &str) -> Option<Value> {
    let start = text.find('{')?;
    serde_json::Deserializer::from_str(&text[start..]).into_iter::<Value>().next()?.ok()
}

/// An id that is the same for the same reply (transcripts stay byte-identical) and differs
/// between calls: FNV-1a of the reply and the call's place in it.
fn call_id(reply: &str, index: usize) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in reply.bytes().chain(index.to_le_bytes()) {
        hash = (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("call_{hash:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tools() -> Vec<Tool> {
        serde_json::from_value(json!([
            {"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
             "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}},
            {"type": "function", "function": {"name": "add", "parameters": {"type": "object",
             "properties": {"a": {"type": "number"}, "b": {"type": "number"}}, "required": ["a", "b"]}}},
        ]))
        .unwrap()
    }

    #[test]
    fn tool_choice_reads_every_openai_shape() {
        let tools = tools();
        let choice = |v: Value| serde_json::from_value::<ToolChoice>(v).unwrap();
        assert_eq!(ToolUse::new(&tools, None).unwrap(), ToolUse::Auto(&tools));
        assert_eq!(ToolUse::new(&tools, Some(&choice(json!("none")))).unwrap(), ToolUse::Off);
        assert_eq!(ToolUse::new(&[], None).unwrap(), ToolUse::Off);
        assert_eq!(
            ToolUse::new(&tools, Some(&choice(json!("required")))).unwrap(),
            ToolUse::Forced { tools: &tools, only: None }
        );
        let named = choice(json!({"type": "function", "function": {"name": "add"}}));
        assert_eq!(
            ToolUse::new(&tools, Some(&named)).unwrap(),
            ToolUse::Forced { tools: &tools, only: Some(&tools[1]) }
        );
        assert!(serde_json::from_value::<ToolChoice>(json!("sometimes")).is_err());
    }

    #[test]
    fn bad_tool_requests_name_the_problem() {
        let tools = tools();
        let named = serde_json::from_value(json!({"type": "function", "function": {"name": "fly"}})).unwrap();
        assert_eq!(ToolUse::new(&tools, Some(&named)), Err(ToolError::UnknownChoice("fly".into())));
        let required = ToolChoice::Mode(ToolMode::Required);
        assert_eq!(ToolUse::new(&[], Some(&required)), Err(ToolError::NoTools("required")));
        let twice = vec![tools[0].clone(), tools[0].clone()];
        assert_eq!(ToolUse::new(&twice, None), Err(ToolError::DuplicateName("get_weather".into())));
        let mut spaced = tools[..1].to_vec();
        spaced[0].function.name = "get weather".into();
        assert_eq!(ToolUse::new(&spaced, None), Err(ToolError::BadName("get weather".into())));
    }

    #[test]
    fn calls_are_found_in_replies() {
        let tools = tools();
        let auto = ToolUse::Auto(&tools);
        let calls =
            auto.calls("<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>");
        assert_eq!(calls.len(), 1);
        assert_eq!(calls[0].function.name, "get_weather");
        assert_eq!(calls[0].function.arguments, r#"{"city":"Paris"}"#);
        assert!(calls[0].id.starts_with("call_"));

        let two = auto.calls(
            "<tool_call>{\"name\": \"add\", \"arguments\": {\"a\": 1, \"b\": 2}}</tool_call>\
             <tool_call>{\"name\": \"add\", \"arguments\": \"{\\\"a\\\": 3, \\\"b\\\": 4}\"}</tool_call>",
        );
        assert_eq!(two.len(), 2);
        assert_eq!(two[1].function.arguments, r#"{"a":3,"b":4}"#);
        assert_ne!(two[0].id, two[1].id);

        assert_eq!(auto.calls(r#"{"name": "add", "arguments": {"a": 1, "b": 2}}"#).len(), 1);
        // Prose, an unknown function, and JSON inside prose are answers, not calls.
        assert!(auto.calls("The weather in Paris is mild.").is_empty());
        assert!(auto.calls(r#"<tool_call>{"name": "fly", "arguments": {}}</tool_call>"#).is_empty());
        assert!(auto.calls(r#"Use {"name": "add", "arguments": {}} to add."#).is_empty());
        assert!(ToolUse::Off.calls(r#"{"name": "add", "arguments": {}}"#).is_empty());
    }

    #[test]
    fn a_forced_call_has_a_schema_of_the_calls() {
        let tools = tools();
        let forced = ToolUse::Forced { tools: &tools, only: None };
        let schema = forced.schema().unwrap();
        assert_eq!(schema["anyOf"].as_array().unwrap().len(), 2);
        assert_eq!(schema["anyOf"][1]["properties"]["name"]["const"], "add");
        let one = ToolUse::Forced { tools: &tools, only: Some(&tools[0]) }.schema().unwrap();
        assert_eq!(one["properties"]["arguments"]["required"], json!(["city"]));
        assert!(ToolUse::Auto(&tools).schema().is_none());
        assert!(forced.instructions().unwrap().contains("\"name\":\"get_weather\""));
    }
}
