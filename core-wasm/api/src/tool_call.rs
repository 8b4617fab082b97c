//! Tool calling in OpenAI's shapes: the functions a request offers (`tools`), whether the
//! model may, must or must not call one (`tool_choice`), and the calls found in a reply.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// A function the model may call: `{"type": "function", "function": {name, description,
/// parameters}}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Tool {
    #[serde(rename = "type")]
    pub kind: FunctionKind,
    pub function: FunctionDef,
}

/// The only kind of tool: `"function"`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FunctionKind {
    #[default]
    Function,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FunctionDef {
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// A JSON Schema of the arguments object; absent means any object.
    #[serde(default = "any_object")]
    pub parameters: Value,
}

fn any_object() -> Value {
    json!({"type": "object"})
}

/// `"none"`, `"auto"`, `"required"`, or `{"type": "function", "function": {"name": …}}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ToolChoice {
    Mode(ToolMode),
    Function { r#type: FunctionKind, function: FunctionName },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ToolMode {
    /// Never call a tool.
    None,
    /// Call one if the model decides to.
    Auto,
    /// Call one of the tools.
    Required,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FunctionName {
    pub name: String,
}

/// A call the model made: `{"id", "type": "function", "function": {name, arguments}}`, the
/// arguments as a JSON text (as OpenAI sends them).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ToolCall {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: FunctionKind,
    pub function: FunctionCall,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FunctionCall {
    pub name: String,
    pub arguments: String,
}
