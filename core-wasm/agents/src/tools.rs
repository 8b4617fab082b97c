//! Built-in tools agents may call: `calculator`, `json_extract` and the shared `scratchpad`.
//!
//! Tools run in the hub and are deterministic: the calculator and JSON extraction are pure;
//! scratchpad reads see the board as it was when the step began, and writes land at the end of
//! the step in delivery order (so two agents of one step never race).

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{Value, json};

use hearth_api::tool_call::{FunctionDef, FunctionKind, Tool};

use hearth_api::workflow::BUILTIN_TOOLS;

/// Longest tool argument accepted, in bytes.
pub const MAX_ARGS: usize = 64 << 10;

/// The shared scratchpad: a key-value board on the bus.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Scratchpad {
    board: BTreeMap<String, String>,
    /// Writes of the current step: (agent, order within the agent, key, value).
    pending: Vec<(usize, usize, String, Option<String>)>,
}

impl Scratchpad {
    /// Applies the step's writes in (agent, call order) order.
    pub fn end_step(&mut self) {
        self.pending.sort_by_key(|(agent, order, ..)| (*agent, *order));
        for (_, _, key, value) in self.pending.drain(..) {
            match value {
                Some(v) => self.board.insert(key, v),
                None => self.board.remove(&key),
            };
        }
    }

    pub fn board(&self) -> &BTreeMap<String, String> {
        &self.board
    }
}

/// Calls tool `name` for `agent` with `args`; `Err` carries a message for the agent.
pub fn call(name: &str, args: &str, agent: usize, scratchpad: &mut Scratchpad) -> Result<String, String> {
    if args.len() > MAX_ARGS {
        return Err(format!("arguments of {} bytes are more than {MAX_ARGS}", args.len()));
    }
    match name {
        "calculator" => calculate(args),
        "json_extract" => {
            #[derive(Deserialize)]
            struct Args {
                text: String,
                #[serde(default)]
                path: String,
            }
            let a: Args = serde_json::from_str(args)
                .map_err(|e| format!("json_extract wants {{\"text\": ..., \"path\": ...}}: {e}"))?;
            extract_json(&a.text, &a.path).map(|v| v.to_string())
        }
        "scratchpad" => {
            #[derive(Deserialize)]
            #[serde(tag = "op", rename_all = "snake_case")]
            enum Op {
                Get { key: String },
                Set { key: String, value: String },
                Delete { key: String },
                List,
            }
            let op: Op = serde_json::from_str(args)
                .map_err(|e| format!("scratchpad wants {{\"op\": \"get\"|\"set\"|\"delete\"|\"list\", ...}}: {e}"))?;
            let order = scratchpad.pending.iter().filter(|p| p.0 == agent).count();
            Ok(match op {
                Op::Get { key } => scratchpad.board.get(&key).cloned().unwrap_or_default(),
                Op::Set { key, value } => {
                    scratchpad.pending.push((agent, order, key, Some(value)));
                    "ok".into()
                }
                Op::Delete { key } => {
                    scratchpad.pending.push((agent, order, key, None));
                    "ok".into()
                }
                Op::List => serde_json::to_string(&scratchpad.board.keys().collect::<Vec<_>>()).unwrap_or_default(),
            })
        }
        other => Err(format!("no tool named {other:?} (tools: {})", BUILTIN_TOOLS.join(", "))),
    }
}

/// Evaluates an arithmetic expression; integers print without a fraction.
pub fn calculate(expr: &str) -> Result<String, String> {
    let expr = expr.trim();
    if expr.is_empty() {
        return Err("calculator: the expression is empty".into());
    }
    let v = exmex::eval_str::<f64>(expr).map_err(|e| format!("calculator: cannot evaluate {expr:?}: {e}"))?;
    if !v.is_finite() {
        return Err(format!("calculator: {expr:?} is not a finite number"));
    }
    Ok(if v.fract() == 0.0 && v.abs() < 1e15 { format!("{}", v as i64) } else { format!("{v}") })
}

/// The first JSON object or array in `text` (models wrap JSON in prose and code fences), then
/// the value at `path` inside it (`a.b.0`; empty for the whole value).
pub fn extract_json(text: &str, path: &str) -> Result<Value, String> {
    let value = text
        .char_indices()
        .filter(|(_, c)| *c == '{' || *c == '[')
        .find_map(|(i, _)| serde_json::Deserializer::from_str(&text[i..]).into_iter::<Value>().next()?.ok())
        .ok_or_else(|| "json_extract: the text holds no JSON object or array".to_string())?;
    let mut at = &value;
    for key in path.split('.').filter(|k| !k.is_empty()) {
        at = match at {
            Value::Object(map) => map.get(key),
            Value::Array(items) => key.parse::<usize>().ok().and_then(|i| items.get(i)),
            _ => None,
        }
        .ok_or_else(|| format!("json_extract: no {key:?} in {at}"))?;
    }
    Ok(at.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_calculator_computes_and_refuses_nonsense() {
        assert_eq!(calculate("2 + 3 * (4 - 1)").unwrap(), "11");
        assert_eq!(calculate("7 / 2").unwrap(), "3.5");
        assert!(calculate("1 / 0").unwrap_err().contains("not a finite number"));
        assert!(calculate("2 +").unwrap_err().contains("cannot evaluate \"2 +\""));
        assert!(calculate("  ").unwrap_err().contains("empty"));
    }

    #[test]
    fn json_is_found_in_prose_and_fences() {
        let text = "Sure! Here it is:\n```json\n{\"city\": \"Oslo\", \"tags\": [\"cold\", {\"n\": 3}]}\n```";
        assert_eq!(extract_json(text, "city").unwrap(), "Oslo");
        assert_eq!(extract_json(text, "tags.1.n").unwrap(), 3);
        assert_eq!(extract_json("a {broken then [1,2]", "").unwrap(), serde_json::json!([1, 2]));
        assert!(extract_json("no json here", "").unwrap_err().contains("no JSON"));
        assert!(extract_json(text, "tags.7").unwrap_err().contains("no \"7\""));
    }

    #[test]
    fn scratchpad_writes_land_at_the_end_of_the_step_in_agent_order() {
        let mut pad = Scratchpad::default();
        let set = |k: &str, v: &str| format!(r#"{{"op":"set","key":"{k}","value":"{v}"}}"#);
        // Agent 2 writes first in time, agent 1 later: agent order decides, not timing.
        assert_eq!(call("scratchpad", &set("x", "from 2"), 2, &mut pad).unwrap(), "ok");
        assert_eq!(call("scratchpad", &set("x", "from 1"), 1, &mut pad).unwrap(), "ok");
        assert_eq!(call("scratchpad", r#"{"op":"get","key":"x"}"#, 0, &mut pad).unwrap(), "", "not yet visible");
        pad.end_step();
        assert_eq!(call("scratchpad", r#"{"op":"get","key":"x"}"#, 0, &mut pad).unwrap(), "from 2");
        assert_eq!(call("scratchpad", r#"{"op":"list"}"#, 0, &mut pad).unwrap(), r#"["x"]"#);
        assert!(call("scratchpad", "{}", 0, &mut pad).unwrap_err().contains("scratchpad wants"));
        assert!(call("search", "", 0, &mut pad).unwrap_err().contains("no tool named \"search\""));
    }
}

/// A tool call found in a model's reply: the tool's name and its arguments as the tool takes
/// them (the calculator's expression; JSON for the others).
#[derive(Clone, Debug, PartialEq)]
pub struct AgentToolCall {
    pub name: String,
    pub args: String,
}

/// Finds a call of one of `allowed` in `text`, in any of the shapes small models write:
/// `<tool_call>{"name": ..., "arguments": ...}</tool_call>` (Hermes/Qwen), a bare JSON object
/// with `name`/`tool` and `arguments`/`args`/`parameters`, or `name(args)`.
pub fn parse_tool_call(text: &str, allowed: &[String]) -> Option<AgentToolCall> {
    let from_json = |v: &Value| -> Option<AgentToolCall> {
        let name = v.get("name").or_else(|| v.get("tool"))?.as_str()?.trim().to_string();
        if !allowed.contains(&name) {
            return None;
        }
        let args = v.get("arguments").or_else(|| v.get("args")).or_else(|| v.get("parameters"));
        let args = match args {
            None => String::new(),
            Some(Value::String(s)) => s.clone(),
            // The calculator takes its expression as it is.
            Some(Value::Object(o)) if name == "calculator" && o.len() == 1 => match o.values().next() {
                Some(Value::String(s)) => s.clone(),
                Some(other) => other.to_string(),
                None => String::new(),
            },
            Some(other) => other.to_string(),
        };
        Some(AgentToolCall { name, args })
    };
    if let Some((_, rest)) = text.split_once("<tool_call>") {
        let inner = rest.split_once("</tool_call>").map_or(rest, |(inner, _)| inner);
        if let Some(call) = extract_json(inner, "").ok().as_ref().and_then(from_json) {
            return Some(call);
        }
    }
    if let Some(call) = extract_json(text, "").ok().as_ref().and_then(from_json) {
        return Some(call);
    }
    // name(args), with balanced parentheses inside.
    allowed.iter().filter_map(|name| Some((text.find(&format!("{name}("))?, name))).min().and_then(|(at, name)| {
        let open = at + name.len();
        let mut depth = 0;
        for (i, c) in text[open..].char_indices() {
            match c {
                '(' => depth += 1,
                ')' => {
                    depth -= 1;
                    if depth == 0 {
                        let args = text[open + 1..open + i].trim().trim_matches(|c| c == '"' || c == '\'');
                        return Some(AgentToolCall { name: name.clone(), args: args.to_string() });
                    }
                }
                _ => {}
            }
        }
        None
    })
}

/// The tools `names` in OpenAI's shape, each with a JSON schema of its arguments: what the
/// engine describes to the model, and what a forced call is decoded under.
pub fn definitions(names: &[String]) -> Vec<Tool> {
    let short = |max: usize| json!({"type": "string", "minLength": 1, "maxLength": max});
    let key = json!({"type": "string", "pattern": "^[a-z][a-z0-9_]*$", "maxLength": 32});
    names
        .iter()
        .filter_map(|name| {
            let (description, parameters) = match name.as_str() {
                "calculator" => (
                    "Evaluates an arithmetic expression of numbers, e.g. 12 * (3 + 4) / 2",
                    // Numbers and operators only, so a forced call is always arithmetic.
                    json!({"type": "object", "properties": {"expression": {"type": "string", "maxLength": 60,
                           "pattern": "^[(]?[0-9]{1,6}([.][0-9]{1,3})?( ?[-+*/] ?[(]?[0-9]{1,6}([.][0-9]{1,3})?[)]?){0,4}$"}},
                           "required": ["expression"]}),
                ),
                "json_extract" => (
                    "Finds the first JSON value in a text and the part of it at a dotted path, e.g. a.b.0",
                    json!({"type": "object", "properties": {"text": short(2000), "path": {"type": "string", "maxLength": 64}},
                           "required": ["text", "path"]}),
                ),
                // Models write; reading, deleting and listing are there for modules.
                "scratchpad" => (
                    "Writes a value under a key on a board all agents share",
                    json!({"type": "object", "properties": {"op": {"const": "set"}, "key": key, "value": short(120)},
                           "required": ["op", "key", "value"]}),
                ),
                _ => return None,
            };
            Some(Tool {
                kind: FunctionKind::Function,
                function: FunctionDef { name: name.clone(), description: description.into(), parameters },
            })
        })
        .collect()
}

#[cfg(test)]
mod call_tests {
    use super::*;

    fn allowed() -> Vec<String> {
        BUILTIN_TOOLS.iter().map(|t| t.to_string()).collect()
    }

    #[test]
    fn tool_calls_are_found_in_the_shapes_models_write() {
        let call = |text: &str| parse_tool_call(text, &allowed());
        let expect = |name: &str, args: &str| Some(AgentToolCall { name: name.into(), args: args.into() });
        assert_eq!(
            call("<tool_call>\n{\"name\": \"calculator\", \"arguments\": {\"expression\": \"2+3\"}}\n</tool_call>"),
            expect("calculator", "2+3")
        );
        assert_eq!(call("Sure: {\"tool\": \"calculator\", \"args\": \"7*6\"} done"), expect("calculator", "7*6"));
        assert_eq!(
            call("{\"name\": \"scratchpad\", \"arguments\": {\"op\": \"get\", \"key\": \"x\"}}"),
            expect("scratchpad", r#"{"op":"get","key":"x"}"#)
        );
        assert_eq!(call("Let me compute: calculator((2 + 3) * 4). Then"), expect("calculator", "(2 + 3) * 4"));
        assert_eq!(call("calculator(\"1/4\")"), expect("calculator", "1/4"));
        // Not calls: unknown tools, unclosed parentheses, plain prose.
        assert_eq!(call("{\"name\": \"shell\", \"arguments\": \"rm -rf /\"}"), None);
        assert_eq!(call("calculator(2 + "), None);
        assert_eq!(call("The answer is 4."), None);
        assert_eq!(parse_tool_call("calculator(1+1)", &["scratchpad".to_string()]), None, "only the agent's tools");
    }

    #[test]
    fn every_tool_has_a_schema_constrained_decoding_supports() {
        let tools = definitions(&BUILTIN_TOOLS.map(String::from));
        assert_eq!(tools.len(), BUILTIN_TOOLS.len());
        for tool in &tools {
            hearth_core::constraint::Grammar::from_schema(&tool.function.parameters)
                .unwrap_or_else(|e| panic!("{}: {e}", tool.function.name));
        }
        // A forced call's arguments are what the tool takes.
        let mut board = Scratchpad::default();
        let args = json!({"op": "set", "key": "winner", "value": "pro"}).to_string();
        assert_eq!(call("scratchpad", &args, 0, &mut board), Ok("ok".into()));
        let parsed = parse_tool_call(r#"{"name": "calculator", "arguments": {"expression": "6 * 7"}}"#, &allowed());
        assert_eq!(call("calculator", &parsed.unwrap().args, 0, &mut board), Ok("42".into()));
    }
}
