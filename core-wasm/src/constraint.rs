//! Constrained decoding: the output is forced to be JSON, or JSON that a schema accepts.
//!
//! A JSON Schema is compiled to a tree of [`Node`]s; [`JsonMatcher`] reads output bytes one at
//! a time and keeps every parse that can still succeed (a set of stacks, so `anyOf`, `enum`
//! and optional properties need no look-ahead). The engine asks it whether a token's bytes may
//! come next, and masks the tokens that may not.
//!
//! What a schema may use: `type` (object, array, string, number, integer, boolean, null, or a
//! list of them), `properties` (written in the order declared; `required` ones always, the
//! others optional), `items`, `minItems`, `maxItems`, `enum`, `const`, `anyOf`/`oneOf`,
//! `minLength`/`maxLength`, `pattern` (as a DFA over the decoded string; no `\u` escapes in such
//! strings), and `$defs`/`definitions` with local `$ref`s. Anything else that
//! constrains a value is refused with an error naming it and where it is. Output is compact
//! JSON with at most one whitespace character at a time between tokens, and numbers of at most
//! 17 digits.

use regex_automata::Anchored;
use regex_automata::dfa::dense::{self, DFA};
use regex_automata::dfa::{Automaton, StartKind};
use regex_automata::util::primitives::StateID;
use regex_automata::util::start;
use serde_json::{Map, Value};
use thiserror::Error;

#[derive(Debug, Error, PartialEq)]
pub enum SchemaError {
    #[error("the JSON schema uses `{keyword}` at {path}, which constrained decoding does not support")]
    Unsupported { keyword: String, path: String },
    #[error("the JSON schema is invalid at {path}: {message}")]
    Invalid { path: String, message: String },
}

type NodeId = usize;

/// A compiled schema node.
#[derive(Clone, Debug, PartialEq)]
enum Node {
    /// Any JSON value.
    Any,
    Object {
        props: Vec<(String, NodeId, bool)>,
    },
    /// An object with any keys, each value of `values`.
    AnyObject {
        values: NodeId,
    },
    Array {
        items: NodeId,
        min: usize,
        max: usize,
    },
    /// `pattern`: an index into [`Grammar::patterns`].
    String {
        min: usize,
        max: usize,
        pattern: Option<usize>,
    },
    Number {
        integer: bool,
    },
    /// Exactly these bytes (`true`, `null`, an enum member, a const).
    Literal(Vec<u8>),
    AnyOf(Vec<NodeId>),
}

/// A compiled schema.
#[derive(Clone, Debug)]
pub struct Grammar {
    nodes: Vec<Node>,
    root: NodeId,
    /// The DFAs of `pattern`s, each matching the whole string (see [`Grammar::pattern`]).
    patterns: Vec<DFA<Vec<u32>>>,
}

const KNOWN_ANNOTATIONS: [&str; 8] =
    ["title", "description", "$schema", "$id", "default", "examples", "$comment", "additionalProperties"];

/// Nodes every grammar starts with: any value is one of nodes 1..=7.
const ANY: NodeId = 0;
const ANY_OBJECT: NodeId = 1;

impl Grammar {
    fn base() -> Self {
        let nodes = vec![
            Node::Any,
            Node::AnyObject { values: ANY },
            Node::Array { items: ANY, min: 0, max: usize::MAX },
            Node::String { min: 0, max: usize::MAX, pattern: None },
            Node::Number { integer: false },
            Node::Literal(b"true".to_vec()),
            Node::Literal(b"false".to_vec()),
            Node::Literal(b"null".to_vec()),
        ];
        Self { nodes, root: ANY, patterns: Vec::new() }
    }

    /// Compiles a JSON Schema `pattern` (unanchored, as the spec says) to a DFA that matches
    /// whole strings: `.*(?:pattern).*`.
    fn pattern(&mut self, pattern: &str, path: &str) -> Result<usize, SchemaError> {
        let config = dense::Config::new()
            .start_kind(StartKind::Anchored)
            // Minimised, a DFA's states that can no longer match are its dead state: a string
            // that cannot match is refused at its first wrong byte.
            .minimize(true)
            .dfa_size_limit(Some(4 << 20))
            .determinize_size_limit(Some(4 << 20));
        let dfa = dense::Builder::new()
            .configure(config)
            .build(&format!("(?s:.*)(?:{pattern})(?s:.*)"))
            .map_err(|e| SchemaError::Invalid { path: path.into(), message: format!("pattern {pattern:?}: {e}") })?;
        self.patterns.push(dfa);
        Ok(self.patterns.len() - 1)
    }

    /// Any JSON object (OpenAI's `json_object` mode).
    pub fn json_object() -> Self {
        Self { root: ANY_OBJECT, ..Self::base() }
    }

    /// Compiles `schema`; errors name the unsupported keyword and its JSON pointer.
    pub fn from_schema(schema: &Value) -> Result<Self, SchemaError> {
        let mut g = Self::base();
        g.root = g.compile(schema, schema, "#", 0)?;
        Ok(g)
    }

    fn push(&mut self, node: Node) -> NodeId {
        self.nodes.push(node);
        self.nodes.len() - 1
    }

    fn compile(&mut self, s: &Value, root: &Value, path: &str, depth: usize) -> Result<NodeId, SchemaError> {
        let invalid = |message: &str| SchemaError::Invalid { path: path.to_string(), message: message.into() };
        if depth > 64 {
            return Err(invalid("nested more than 64 deep (a recursive $ref?)"));
        }
        let obj = match s {
            Value::Bool(true) => return Ok(ANY),
            Value::Object(o) => o,
            _ => return Err(invalid("a schema must be an object or true")),
        };
        if let Some(r) = obj.get("$ref") {
            let target = r.as_str().and_then(|r| r.strip_prefix("#")).and_then(|p| root.pointer(p));
            let target = target.ok_or_else(|| invalid(&format!("cannot resolve $ref {r}")))?;
            return self.compile(target, root, r.as_str().unwrap_or_default(), depth + 1);
        }
        for key in obj.keys() {
            let known = KNOWN_ANNOTATIONS.contains(&key.as_str())
                || [
                    "type",
                    "properties",
                    "required",
                    "items",
                    "minItems",
                    "maxItems",
                    "enum",
                    "const",
                    "anyOf",
                    "oneOf",
                    "minLength",
                    "pattern",
                    "maxLength",
                    "$defs",
                    "definitions",
                ]
                .contains(&key.as_str());
            if !known {
                return Err(SchemaError::Unsupported { keyword: key.clone(), path: path.to_string() });
            }
        }
        if obj.get("additionalProperties").is_some_and(|a| a != &Value::Bool(false) && obj.contains_key("properties")) {
            return Err(SchemaError::Unsupported { keyword: "additionalProperties".into(), path: path.to_string() });
        }
        if let Some(c) = obj.get("const") {
            return Ok(self.push(Node::Literal(c.to_string().into_bytes())));
        }
        if let Some(e) = obj.get("enum") {
            let members =
                e.as_array().filter(|m| !m.is_empty()).ok_or_else(|| invalid("enum must be a non-empty list"))?;
            let ids = members.iter().map(|m| self.push(Node::Literal(m.to_string().into_bytes()))).collect();
            return Ok(self.push(Node::AnyOf(ids)));
        }
        if let Some(alts) = obj.get("anyOf").or_else(|| obj.get("oneOf")) {
            let alts =
                alts.as_array().filter(|a| !a.is_empty()).ok_or_else(|| invalid("anyOf must be a non-empty list"))?;
            let mut ids = Vec::new();
            for (i, a) in alts.iter().enumerate() {
                ids.push(self.compile(a, root, &format!("{path}/anyOf/{i}"), depth + 1)?);
            }
            return Ok(self.push(Node::AnyOf(ids)));
        }
        let types: Vec<&str> = match obj.get("type") {
            None => return Ok(ANY),
            Some(Value::String(t)) => vec![t.as_str()],
            Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
            Some(_) => return Err(invalid("type must be a string or a list of strings")),
        };
        let count = |key: &str, default: usize| -> Result<usize, SchemaError> {
            match obj.get(key) {
                None => Ok(default),
                Some(v) => {
                    v.as_u64().map(|n| n as usize).ok_or_else(|| invalid(&format!("{key} must be a whole number")))
                }
            }
        };
        let mut ids = Vec::new();
        for t in types {
            let node = match t {
                "object" => match obj.get("properties") {
                    None => Node::AnyObject { values: ANY },
                    Some(Value::Object(props)) => self.object(props, obj, root, path, depth)?,
                    Some(_) => return Err(invalid("properties must be an object")),
                },
                "array" => {
                    let items = match obj.get("items") {
                        None => ANY,
                        Some(i) => self.compile(i, root, &format!("{path}/items"), depth + 1)?,
                    };
                    Node::Array { items, min: count("minItems", 0)?, max: count("maxItems", usize::MAX)? }
                }
                "string" => {
                    let pattern = match obj.get("pattern") {
                        None => None,
                        Some(Value::String(p)) => Some(self.pattern(p, path)?),
                        Some(_) => return Err(invalid("pattern must be a string")),
                    };
                    Node::String { min: count("minLength", 0)?, max: count("maxLength", usize::MAX)?, pattern }
                }
                "number" => Node::Number { integer: false },
                "integer" => Node::Number { integer: true },
                "boolean" => {
                    let (t, f) =
                        (self.push(Node::Literal(b"true".to_vec())), self.push(Node::Literal(b"false".to_vec())));
                    Node::AnyOf(vec![t, f])
                }
                "null" => Node::Literal(b"null".to_vec()),
                other => return Err(invalid(&format!("unknown type {other:?}"))),
            };
            ids.push(self.push(node));
        }
        Ok(if ids.len() == 1 { ids[0] } else { self.push(Node::AnyOf(ids)) })
    }

    fn object(
        &mut self,
        props: &Map<String, Value>,
        obj: &Map<String, Value>,
        root: &Value,
        path: &str,
        depth: usize,
    ) -> Result<Node, SchemaError> {
        let required: Vec<&str> = obj
            .get("required")
            .and_then(Value::as_array)
            .map(|r| r.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        if let Some(missing) = required.iter().find(|r| !props.contains_key(**r)) {
            return Err(SchemaError::Invalid {
                path: path.to_string(),
                message: format!("required property {missing:?} is not among the properties"),
            });
        }
        let mut out = Vec::new();
        for (name, schema) in props {
            let id = self.compile(schema, root, &format!("{path}/properties/{name}"), depth + 1)?;
            out.push((name.clone(), id, required.contains(&name.as_str())));
        }
        Ok(Node::Object { props: out })
    }
}

/// Inside a string: characters so far, and what is pending: a backslash (1), `\u` digits
/// (2..=5), or the rest of a UTF-8 character (7..=9: 6 + bytes still to come).
#[derive(Clone, Copy, Debug, PartialEq)]
struct StrFrame {
    len: usize,
    max: usize,
    min: usize,
    escape: u8,
    /// The pattern's DFA and its state, if the string has a pattern.
    pattern: Option<(usize, StateID)>,
}

/// A parse in progress: what is expected, innermost last.
#[derive(Clone, Debug, PartialEq)]
enum Frame {
    Value(NodeId),
    Literal {
        bytes: Vec<u8>,
        at: usize,
    },
    Str(StrFrame),
    /// A number: which part is being read (see [`number_step`]) and its digits so far.
    Num {
        integer: bool,
        part: u8,
        digits: u8,
    },
    /// An object: the next property index to consider; `state` 0 after `{`, 1 after a
    /// value, 2 after a comma.
    Obj {
        node: NodeId,
        next: usize,
        state: u8,
    },
    /// An object with free keys: `state` 0 after `{` or `,` (key or `}`), 1 after a value.
    FreeObj {
        values: NodeId,
        state: u8,
    },
    /// An array: items written so far, and whether a value was just completed.
    Arr {
        node: NodeId,
        count: usize,
        after_item: bool,
    },
    /// A free key of a `FreeObj`: after it, a colon.
    Colon,
}

#[derive(Clone, Debug, PartialEq)]
struct Stack {
    frames: Vec<Frame>,
    /// Consecutive whitespace bytes just read.
    ws: u8,
}

/// Reads output bytes against a [`Grammar`].
#[derive(Clone, Debug)]
pub struct JsonMatcher {
    grammar: std::rc::Rc<Grammar>,
    stacks: Vec<Stack>,
}

/// Most parses kept at once; beyond it the oldest alternatives are dropped (never reached by
/// the schemas in the tests, but a schema must not make decoding explode).
const MAX_STACKS: usize = 256;

impl JsonMatcher {
    pub fn new(grammar: Grammar) -> Self {
        let root = grammar.root;
        Self { grammar: std::rc::Rc::new(grammar), stacks: vec![Stack { frames: vec![Frame::Value(root)], ws: 0 }] }
    }

    /// Whether `bytes` may come next (the matcher is unchanged).
    pub fn accepts(&self, bytes: &[u8]) -> bool {
        let mut m = self.clone();
        m.feed(bytes)
    }

    /// Reads `bytes`; false (and no parse left) if they cannot come next.
    pub fn feed(&mut self, bytes: &[u8]) -> bool {
        for &b in bytes {
            let mut next = Vec::new();
            for stack in std::mem::take(&mut self.stacks) {
                step(&self.grammar, stack, b, &mut next);
            }
            next.dedup();
            next.truncate(MAX_STACKS);
            self.stacks = next;
            if self.stacks.is_empty() {
                return false;
            }
        }
        true
    }

    /// Whether the output so far is a complete value.
    pub fn is_complete(&self) -> bool {
        self.stacks.iter().any(|s| {
            s.frames.is_empty()
                || matches!(s.frames.as_slice(), [Frame::Num { part, integer, .. }] if number_done(*part, *integer))
        })
    }

    /// Whether nothing more may follow (a complete value that cannot go on).
    pub fn is_finished(&self) -> bool {
        self.stacks.iter().all(|s| s.frames.is_empty())
    }
}

fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\n' | b'\t' | b'\r')
}

/// What the short escapes (`\"`, `\\`, `\/`, `\b`, `\f`, `\n`, `\r`, `\t`) stand for.
const ESCAPED: [u8; 8] = [b'"', b'\\', b'/', 8, 12, b'\n', b'\r', b'\t'];

/// Most digits in a number: a model must not write one forever (an f64 holds 17).
const MAX_DIGITS: u8 = 17;

/// Number parts: 0 start (`-` or digit), 1 after `-`, 2 after a leading 0, 3 in integer
/// digits, 4 after `.`, 5 in fraction digits, 6 after `e`, 7 after the exponent's sign,
/// 8 in exponent digits.
fn number_done(part: u8, _integer: bool) -> bool {
    matches!(part, 2 | 3 | 5 | 8)
}

fn number_step(part: u8, integer: bool, b: u8) -> Option<u8> {
    Some(match (part, b) {
        (0, b'-') => 1,
        (0 | 1, b'0') => 2,
        (0 | 1, b'1'..=b'9') => 3,
        (3, b'0'..=b'9') => 3,
        (2 | 3, b'.') if !integer => 4,
        (4 | 5, b'0'..=b'9') => 5,
        (2 | 3 | 5, b'e' | b'E') if !integer => 6,
        (6, b'+' | b'-') => 7,
        (6..=8, b'0'..=b'9') => 8,
        _ => return None,
    })
}

/// Advances `stack` by `b` into `out` (zero, one or several parses).
fn step(g: &Grammar, mut stack: Stack, b: u8, out: &mut Vec<Stack>) {
    let Some(top) = stack.frames.pop() else {
        return; // a finished value takes nothing more
    };
    let ws_ok = stack.ws < 1 && is_ws(b);
    match top {
        Frame::Value(id) => step_value(g, stack, id, b, ws_ok, out),
        Frame::Literal { bytes, at } => {
            if bytes.get(at) == Some(&b) {
                if at + 1 < bytes.len() {
                    stack.frames.push(Frame::Literal { bytes, at: at + 1 });
                }
                stack.ws = 0;
                out.push(stack);
            }
        }
        Frame::Str(string) => step_string(g, stack, string, b, out),
        Frame::Num { integer, part, digits } => {
            let digits = digits + u8::from(b.is_ascii_digit());
            if let Some(part) = number_step(part, integer, b).filter(|_| digits <= MAX_DIGITS) {
                stack.frames.push(Frame::Num { integer, part, digits });
                stack.ws = 0;
                out.push(stack);
            } else if number_done(part, integer) {
                // The number ended; the byte belongs to what contains it.
                step(g, stack, b, out);
            }
        }
        Frame::Obj { node, next, state } => step_object(g, stack, (node, next, state), b, ws_ok, out),
        Frame::FreeObj { values, state } => step_free_object(stack, (values, state), b, ws_ok, out),
        Frame::Colon => {
            if ws_ok {
                stack.frames.push(Frame::Colon);
                stack.ws += 1;
                out.push(stack);
            } else if b == b':' {
                stack.ws = 0;
                out.push(stack);
            }
        }
        Frame::Arr { node, count, after_item } => step_array(g, stack, (node, count, after_item), b, ws_ok, out),
    }
}

/// [`step`] into a value: whitespace, or the first byte of one of the node's alternatives.
fn step_value(g: &Grammar, mut stack: Stack, id: NodeId, b: u8, ws_ok: bool, out: &mut Vec<Stack>) {
    if ws_ok {
        stack.frames.push(Frame::Value(id));
        stack.ws += 1;
        out.push(stack);
        return;
    }
    stack.ws = 0;
    let open = |stack: &Stack, frame: Frame| {
        let mut s = stack.clone();
        s.frames.push(frame);
        s
    };
    match &g.nodes[id] {
        Node::Any => {
            for alt in 1..=7 {
                step(g, open(&stack, Frame::Value(alt)), b, out);
            }
        }
        Node::AnyOf(ids) => {
            for &alt in ids {
                step(g, open(&stack, Frame::Value(alt)), b, out);
            }
        }
        Node::Literal(bytes) if bytes.first() == Some(&b) => {
            if bytes.len() > 1 {
                out.push(open(&stack, Frame::Literal { bytes: bytes.clone(), at: 1 }));
            } else {
                out.push(stack);
            }
        }
        Node::String { min, max, pattern } if b == b'"' => {
            let pattern = match pattern {
                None => None,
                Some(i) => match g.patterns[*i].start_state(&start::Config::new().anchored(Anchored::Yes)) {
                    Ok(state) => Some((*i, state)),
                    Err(_) => return,
                },
            };
            out.push(open(&stack, Frame::Str(StrFrame { len: 0, min: *min, max: *max, escape: 0, pattern })));
        }
        Node::Number { integer } => {
            if let Some(part) = number_step(0, *integer, b) {
                let digits = u8::from(b.is_ascii_digit());
                out.push(open(&stack, Frame::Num { integer: *integer, part, digits }));
            }
        }
        Node::Object { .. } if b == b'{' => out.push(open(&stack, Frame::Obj { node: id, next: 0, state: 0 })),
        Node::AnyObject { values } if b == b'{' => {
            out.push(open(&stack, Frame::FreeObj { values: *values, state: 0 }));
        }
        Node::Array { .. } if b == b'[' => {
            out.push(open(&stack, Frame::Arr { node: id, count: 0, after_item: false }));
        }
        _ => {}
    }
}

/// [`step`] inside a string: characters, escapes and UTF-8 sequences, the length bounds, and
/// a pattern's DFA.
fn step_string(g: &Grammar, mut stack: Stack, string: StrFrame, b: u8, out: &mut Vec<Stack>) {
    let StrFrame { len, min, max, escape, pattern } = string;
    stack.ws = 0;
    // A pattern's DFA reads the string as decoded: each byte, or an escape's meaning
    // (`\u` escapes are refused when there is a pattern). `None`: the DFA is dead.
    let advance = |byte: u8| -> Option<Option<(usize, StateID)>> {
        let Some((i, state)) = pattern else { return Some(None) };
        let next = g.patterns[i].next_state(state, byte);
        (!g.patterns[i].is_dead_state(next)).then_some(Some((i, next)))
    };
    let matched = pattern.is_none_or(|(i, state)| {
        let dfa = &g.patterns[i];
        dfa.is_match_state(dfa.next_eoi_state(state))
    });
    let mut push = |frame: Option<Frame>, mut stack: Stack| {
        if let Some(f) = frame {
            stack.frames.push(f);
        }
        out.push(stack);
    };
    let frame = |len, escape, pattern| Some(Frame::Str(StrFrame { len, min, max, escape, pattern }));
    match escape {
        1 => {
            let decoded = match b {
                b'"' | b'\\' | b'/' => Some(b),
                b'b' => Some(8),
                b'f' => Some(12),
                b'n' => Some(b'\n'),
                b'r' => Some(b'\r'),
                b't' => Some(b'\t'),
                _ => None,
            };
            if let Some(p) = decoded.and_then(advance) {
                push(frame(len + 1, 0, p), stack);
            } else if b == b'u' && pattern.is_none() {
                push(frame(len, 2, None), stack);
            }
        }
        2..=5 if b.is_ascii_hexdigit() => {
            let (len, escape) = if escape == 5 { (len + 1, 0) } else { (len, escape + 1) };
            push(frame(len, escape, None), stack)
        }
        2..=5 => {}
        // Inside a UTF-8 character: 6 + the continuation bytes it still needs.
        7..=9 if (0x80..=0xbf).contains(&b) => {
            if let Some(p) = advance(b) {
                push(frame(len, if escape == 7 { 0 } else { escape - 1 }, p), stack);
            }
        }
        7..=9 => {}
        _ => match b {
            b'"' if len >= min && matched => push(None, stack),
            b'"' => {}
            // With a pattern, a backslash only if some escape's meaning can follow.
            b'\\' if len < max && ESCAPED.iter().any(|&d| advance(d).is_some()) => push(frame(len, 1, pattern), stack),
            0..=0x1f | 0x7f..=0xc1 | 0xf5..=0xff => {}
            _ if len >= max => {}
            _ => {
                let escape = match b {
                    0xc2..=0xdf => 7,
                    0xe0..=0xef => 8,
                    0xf0..=0xf4 => 9,
                    _ => 0,
                };
                if let Some(p) = advance(b) {
                    push(frame(len + 1, escape, p), stack);
                }
            }
        },
    }
}

/// [`step`] inside an object with known properties: `(node, next property, state)`.
fn step_object(
    g: &Grammar,
    mut stack: Stack,
    (node, next, state): (NodeId, usize, u8),
    b: u8,
    ws_ok: bool,
    out: &mut Vec<Stack>,
) {
    let Node::Object { props } = &g.nodes[node] else { return };
    if ws_ok {
        stack.frames.push(Frame::Obj { node, next, state });
        stack.ws += 1;
        out.push(stack);
        return;
    }
    stack.ws = 0;
    // Properties are written in order; an optional one may be skipped.
    let rest = &props[next.min(props.len())..];
    let all_optional = rest.iter().all(|(_, _, required)| !required);
    match (state, b) {
        (0 | 2, b'"') => {
            for (i, (name, value, required)) in rest.iter().enumerate() {
                let mut s = stack.clone();
                s.frames.push(Frame::Obj { node, next: next + i + 1, state: 1 });
                s.frames.push(Frame::Value(*value));
                s.frames.push(Frame::Literal { bytes: format!("\"{name}\":").into_bytes(), at: 1 });
                out.push(s);
                if *required {
                    break;
                }
            }
        }
        (0 | 1, b'}') if all_optional => out.push(stack),
        (1, b',') if !rest.is_empty() => {
            stack.frames.push(Frame::Obj { node, next, state: 2 });
            out.push(stack);
        }
        _ => {}
    }
}

/// [`step`] inside an object with free keys: `(values' node, state)`.
fn step_free_object(mut stack: Stack, (values, state): (NodeId, u8), b: u8, ws_ok: bool, out: &mut Vec<Stack>) {
    if ws_ok {
        stack.frames.push(Frame::FreeObj { values, state });
        stack.ws += 1;
        out.push(stack);
        return;
    }
    stack.ws = 0;
    match (state, b) {
        (0 | 2, b'"') => {
            stack.frames.push(Frame::FreeObj { values, state: 1 });
            stack.frames.push(Frame::Value(values));
            stack.frames.push(Frame::Colon);
            stack.frames.push(Frame::Str(StrFrame { len: 0, min: 0, max: usize::MAX, escape: 0, pattern: None }));
            out.push(stack);
        }
        (0 | 1, b'}') => out.push(stack),
        (1, b',') => {
            stack.frames.push(Frame::FreeObj { values, state: 2 });
            out.push(stack);
        }
        _ => {}
    }
}

/// [`step`] inside an array: `(node, items so far, whether an item just ended)`.
fn step_array(
    g: &Grammar,
    mut stack: Stack,
    (node, count, after_item): (NodeId, usize, bool),
    b: u8,
    ws_ok: bool,
    out: &mut Vec<Stack>,
) {
    let Node::Array { items, min, max } = g.nodes[node] else { return };
    if ws_ok {
        stack.frames.push(Frame::Arr { node, count, after_item });
        stack.ws += 1;
        out.push(stack);
        return;
    }
    if b == b']' && count >= min && (after_item || count == 0) {
        stack.ws = 0;
        out.push(stack);
        return;
    }
    if after_item {
        if b == b',' && count < max {
            stack.ws = 0;
            stack.frames.push(Frame::Arr { node, count, after_item: false });
            out.push(stack);
        }
        return;
    }
    if count < max && (count == 0 || !after_item) {
        stack.frames.push(Frame::Arr { node, count: count + 1, after_item: true });
        stack.frames.push(Frame::Value(items));
        step(g, stack, b, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn matcher(schema: Value) -> JsonMatcher {
        JsonMatcher::new(Grammar::from_schema(&schema).unwrap())
    }

    /// Whether `text` is a complete match (fed in one go and byte by byte, the same).
    fn complete(m: &JsonMatcher, text: &str) -> bool {
        let mut whole = m.clone();
        let mut bytewise = m.clone();
        let a = whole.feed(text.as_bytes()) && whole.is_complete();
        let b = text.bytes().all(|byte| bytewise.feed(&[byte])) && bytewise.is_complete();
        assert_eq!(a, b, "{text}");
        a
    }

    #[test]
    fn objects_follow_their_properties() {
        let m = matcher(json!({
            "type": "object",
            "properties": {
                "name": {"type": "string", "maxLength": 5},
                "age": {"type": "integer"},
                "tags": {"type": "array", "items": {"enum": ["a", "b"]}, "maxItems": 2},
                "ok": {"type": "boolean"}
            },
            "required": ["name", "age"]
        }));
        assert!(complete(&m, r#"{"name":"Ann","age":42}"#));
        assert!(complete(&m, r#"{"name":"Ann","age":-7,"tags":["a","b"],"ok":true}"#));
        assert!(complete(&m, "{\"name\": \"Ann\",\n\"age\": 3, \"ok\": false }"));
        assert!(complete(&m, r#"{"name":"A\"\u00e9","age":0}"#));
        assert!(!complete(&m, r#"{"age":42,"name":"Ann"}"#), "declared order");
        assert!(!complete(&m, r#"{"name":"Ann"}"#), "age is required");
        assert!(!complete(&m, r#"{"name":"Annabel","age":1}"#), "maxLength");
        assert!(!complete(&m, r#"{"name":"Ann","age":4.5}"#), "an integer");
        assert!(!complete(&m, r#"{"name":"Ann","age":01}"#), "no leading zeros");
        assert!(!complete(&m, r#"{"name":"Ann","age":1,"tags":["c"]}"#), "enum");
        assert!(!complete(&m, r#"{"name":"Ann","age":1,"tags":["a","a","b"]}"#), "maxItems");
        assert!(!complete(&m, r#"{"name":"Ann","age":1,"extra":1}"#), "no other properties");
        assert!(!complete(&m, "{  \"name\":\"Ann\",\"age\":1}"), "whitespace runs are one byte");
        assert!(!complete(&m, r#"{"name":"Ann","age":1"#), "unfinished");
        let mut done = m.clone();
        assert!(done.feed(br#"{"name":"x","age":1}"#) && done.is_finished());
        assert!(!done.accepts(b" "), "nothing follows a finished object");
    }

    #[test]
    fn values_of_every_kind() {
        let m = matcher(json!({"anyOf": [{"type": "number"}, {"type": "null"}, {"const": {"k": [1, 2]}}]}));
        for ok in ["1", "-0.5e+3", "3.25", "null", r#"{"k":[1,2]}"#] {
            assert!(complete(&m, ok), "{ok}");
        }
        for bad in ["1.", "--1", "nul", "{\"k\":[1]}", "\"1\""] {
            assert!(!complete(&m, bad), "{bad}");
        }
        let mut number = m.clone();
        assert!(number.feed(b"12") && number.is_complete() && !number.is_finished(), "a number may go on");
        let any = JsonMatcher::new(Grammar::json_object());
        assert!(complete(&any, r#"{"a":[1,{"b":null}],"c":"d","e":true}"#));
        assert!(complete(&any, "{}"));
        assert!(!complete(&any, "[1]"), "json_object mode wants an object");
        let enums = matcher(json!({"enum": [1, 2, "x"]}));
        assert!(complete(&enums, "2") && complete(&enums, "\"x\"") && !complete(&enums, "3"));
        let nested = matcher(json!({
            "$defs": {"point": {"type": "object", "properties": {"x": {"type": "number"}}, "required": ["x"]}},
            "type": "array", "items": {"$ref": "#/$defs/point"}, "minItems": 1
        }));
        assert!(complete(&nested, r#"[{"x":1},{"x":2.5}]"#));
        assert!(!complete(&nested, "[]"), "minItems");
    }

    #[test]
    fn unsupported_keywords_are_named_with_their_place() {
        let e = Grammar::from_schema(
            &json!({"type": "object", "properties": {"s": {"type": "string", "format": "email"}}}),
        )
        .unwrap_err();
        assert_eq!(e, SchemaError::Unsupported { keyword: "format".into(), path: "#/properties/s".into() });
        assert!(e.to_string().contains("`format` at #/properties/s"), "{e}");
        let e = Grammar::from_schema(&json!({"type": "string", "pattern": "(unclosed"})).unwrap_err();
        assert!(e.to_string().contains("invalid at #: pattern \"(unclosed\""), "{e}");
        let e = Grammar::from_schema(&json!({"type": "integer", "minimum": 3})).unwrap_err();
        assert!(matches!(e, SchemaError::Unsupported { ref keyword, .. } if keyword == "minimum"), "{e}");
        let e = Grammar::from_schema(&json!({"type": "object", "properties": {}, "required": ["x"]})).unwrap_err();
        assert!(e.to_string().contains("required property \"x\""), "{e}");
        let e = Grammar::from_schema(&json!({"type": "decimal"})).unwrap_err();
        assert!(e.to_string().contains("unknown type \"decimal\""), "{e}");
        let e = Grammar::from_schema(&json!({"$ref": "#/$defs/missing"})).unwrap_err();
        assert!(e.to_string().contains("cannot resolve $ref"), "{e}");
        let e = Grammar::from_schema(&json!({"$defs": {"a": {"$ref": "#/$defs/a"}}, "$ref": "#/$defs/a"})).unwrap_err();
        assert!(e.to_string().contains("nested more than 64 deep"), "{e}");
    }
}

#[cfg(test)]
mod utf8_tests {
    use super::*;

    #[test]
    fn patterns_constrain_strings_as_decoded() {
        let zip = JsonMatcher::new(
            Grammar::from_schema(&serde_json::json!({"type": "string", "pattern": "^[0-9]{5}$"})).unwrap(),
        );
        let complete = |m: &JsonMatcher, bytes: &[u8]| {
            let mut m = m.clone();
            m.feed(bytes) && m.is_complete()
        };
        assert!(complete(&zip, b"\"12345\""));
        assert!(!complete(&zip, b"\"1234\""), "too short");
        assert!(!zip.accepts(b"\"123456"), "a sixth digit is refused at once");
        assert!(!zip.accepts(b"\"12a"), "a letter is refused at once");
        assert!(!zip.accepts(b"\"\\u0031"), "no \\u escapes in a patterned string");
        assert!(!zip.accepts(b"\"0\\"), "no escape can be a digit: no backslash either");
        // Unanchored, as JSON Schema says: the pattern may match anywhere.
        let cat =
            JsonMatcher::new(Grammar::from_schema(&serde_json::json!({"type": "string", "pattern": "cat"})).unwrap());
        assert!(complete(&cat, b"\"a cat!\""));
        assert!(!complete(&cat, b"\"a dog\""));
        let line = JsonMatcher::new(
            Grammar::from_schema(&serde_json::json!({"type": "string", "pattern": "^a\nb$"})).unwrap(),
        );
        assert!(complete(&line, b"\"a\\nb\""), "escapes are matched by their meaning");
    }

    #[test]
    fn strings_hold_whole_utf8_characters_only() {
        let m = JsonMatcher::new(Grammar::from_schema(&serde_json::json!({"type": "string", "maxLength": 2})).unwrap());
        let complete = |bytes: &[u8]| {
            let mut m = m.clone();
            m.feed(bytes) && m.is_complete()
        };
        assert!(complete("\"é€\"".as_bytes()), "two characters, five bytes");
        assert!(!complete("\"é€a\"".as_bytes()), "three characters");
        assert!(!complete(b"\"\xc3\""), "a character cut short");
        assert!(!complete(b"\"\x80\""), "a continuation byte alone");
        assert!(!complete(b"\"\xff\""), "never UTF-8");
        assert!(complete("\"😀\"".as_bytes()));
    }
}
