//! Chat templates: turning a conversation into the prompt text a model was trained on.
//!
//! Models ship their prompt format as a Jinja template in the GGUF key `tokenizer.chat_template`
//! (copied from Hugging Face's `tokenizer_config.json`). What such a template means is defined by
//! Python Jinja2 as Hugging Face transformers sets it up (models are trained on its output):
//! `trim_blocks` and `lstrip_blocks` on, no auto-escaping, no trailing newline kept, `tojson` as
//! Python's `json.dumps` (not Jinja's HTML-safe one), and the functions `raise_exception` and
//! `strftime_now`. llama-cpp-python's `Jinja2ChatFormatter` (our golden reference) differs only
//! in `tojson`: it keeps Jinja's, which sorts keys and escapes `<>&'` and non-ASCII; we follow
//! transformers there, so the golden cases keep `tojson` input free of those. We render with minijinja configured the same way and add what it lacks:
//!
//! - the Python `str`, `dict` and `list` methods templates call (`.strip()`, `.startswith()`,
//!   `.split()`, `.items()`, `.get()`, …), through minijinja's unknown-method callback;
//! - Python's `str()` for printed values, so `{{ none }}` is `None` and `{{ [1] }}` is `[1]` as
//!   in Jinja2, and `json.dumps` for `tojson`;
//! - the `{% generation %}` block tag transformers accepts and ignores, rewritten to a no-op.
//!
//! A template is compiled once, in [`ChatTemplate::new`]; [`ChatTemplate::render`] only runs it.
//! Templates come from model files and are untrusted: every failure is a [`ChatTemplateError`].
//!
//! The variables a template sees are the ones `Jinja2ChatFormatter` passes: `messages`,
//! `bos_token`, `eos_token`, `add_generation_prompt`, `tools` (none unless given), `functions`,
//! `function_call` and `tool_choice` (always none), `raise_exception` and `strftime_now`.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::sync::Arc;

use minijinja::value::{Enumerator, Kwargs, Object, ObjectRepr, Serde, Tuple, Value, ValueKind, from_args};
use minijinja::{AutoEscape, Environment, Error, ErrorKind, Output, State, UndefinedBehavior, context};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::gguf::Gguf;

/// The GGUF metadata key holding a model's chat template.
pub const CHAT_TEMPLATE_KEY: &str = "tokenizer.chat_template";

/// ChatML, used when a model has no template of its own: the format llama.cpp falls back to,
/// written as the Jinja template Hugging Face uses for it.
pub const CHATML_TEMPLATE: &str = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

/// The one template an environment holds.
const TEMPLATE_NAME: &str = "chat_template";

/// Deepest nesting `tojson` follows, so a hostile value cannot exhaust the stack.
const MAX_JSON_DEPTH: usize = 128;

/// One turn of a conversation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// `system`, `user`, `assistant` or whatever else the template understands.
    pub role: String,
    pub content: String,
}

impl ChatMessage {
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        Self { role: role.into(), content: content.into() }
    }

    /// The message as a template sees it: a dict with `role` then `content`, in that order
    /// whatever map order minijinja was built with, so `message|tojson` and `message.items()`
    /// come out as they do from Python.
    fn to_value(&self) -> Value {
        Value::from_object(OrderedMap(vec![
            (Value::from("role"), Value::from(self.role.as_str())),
            (Value::from("content"), Value::from(self.content.as_str())),
        ]))
    }
}

#[derive(Debug, Error)]
pub enum ChatTemplateError {
    /// The template does not parse (or uses a construct minijinja does not support).
    #[error("the chat template does not compile{}: {message}", at_line(.line))]
    Syntax { message: String, line: Option<usize> },
    /// The template called `raise_exception(message)`, typically to refuse a conversation it
    /// cannot format (roles that do not alternate, an unsupported role, …).
    #[error("the chat template rejected the conversation: {0}")]
    Raised(String),
    /// Anything else that failed while rendering: an undefined attribute, a bad operand, …
    #[error("rendering the chat template failed{}: {message}", at_line(.line))]
    Render { message: String, line: Option<usize> },
    /// `tokenizer.chat_template` is present but is not a string.
    #[error("the model's chat template metadata is unusable: {0}")]
    Metadata(#[from] crate::gguf::GgufError),
}

fn at_line(line: &Option<usize>) -> String {
    line.map(|l| format!(" at line {l}")).unwrap_or_default()
}

/// What a render takes besides the messages. [`RenderOptions::new`] (and `default`) asks for the
/// generation prompt, as `Jinja2ChatFormatter` does: a runtime renders to get a reply.
#[derive(Clone, Debug)]
pub struct RenderOptions {
    add_generation_prompt: bool,
    tools: Option<Value>,
    now_unix_seconds: Option<i64>,
}

impl Default for RenderOptions {
    fn default() -> Self {
        Self { add_generation_prompt: true, tools: None, now_unix_seconds: None }
    }
}

impl RenderOptions {
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether to end with the header that opens the assistant's turn.
    pub fn add_generation_prompt(mut self, yes: bool) -> Self {
        self.add_generation_prompt = yes;
        self
    }

    /// Tool definitions for templates that describe tools (OpenAI style: a list of
    /// `{"type": "function", "function": {...}}`). Map keys keep their order only if minijinja
    /// is built with its `preserve_order` feature; otherwise they come out sorted.
    pub fn tools<T: Serialize + ?Sized>(mut self, tools: &T) -> Self {
        self.tools = Some(Value::from(Serde(tools)));
        self
    }

    /// The time `strftime_now` reports, in seconds since the Unix epoch. Without it the system
    /// clock is used, except on wasm32-unknown-unknown where there is none: there
    /// `strftime_now` is left undefined and templates fall back to their own default date.
    pub fn now_unix_seconds(mut self, seconds: i64) -> Self {
        self.now_unix_seconds = Some(seconds);
        self
    }
}

/// A compiled chat template.
#[derive(Clone)]
pub struct ChatTemplate {
    env: Environment<'static>,
    source: String,
    bos_token: String,
    eos_token: String,
    warning: Option<String>,
}

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTemplate")
            .field("source_len", &self.source.len())
            .field("bos_token", &self.bos_token)
            .field("eos_token", &self.eos_token)
            .field("warning", &self.warning)
            .finish()
    }
}

/// Instructions one render may execute: real templates take a few hundred per message, so a
/// conversation of thousands of messages fits; `range(10**5)` nested twice does not.
const RENDER_FUEL: u64 = 20_000_000;

impl ChatTemplate {
    /// Compiles `source`. `bos_token` and `eos_token` are the texts of the model's BOS and EOS
    /// tokens, which templates such as Llama 3's write out themselves.
    pub fn new(source: &str, bos_token: &str, eos_token: &str) -> Result<Self, ChatTemplateError> {
        let mut env = Environment::new();
        // Jinja2ChatFormatter's settings; Jinja2's keep_trailing_newline is off, as here.
        let syntax = minijinja::syntax::SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .keep_trailing_newline(false)
            .build()
            .map_err(|e| syntax_error(&e))?;
        env.set_syntax(syntax);
        env.set_auto_escape_callback(|_| AutoEscape::None);
        // Jinja2's default Undefined: prints as nothing, iterates as empty, but reading an
        // attribute of it is an error.
        env.set_undefined_behavior(UndefinedBehavior::Lenient);
        env.set_unknown_method_callback(python_method);
        env.set_formatter(python_formatter);
        env.add_filter("tojson", tojson_filter);
        env.add_filter("string", |value: &Value| Value::from(py_str(value)));
        // Jinja2's tests ask Python: None is not iterable (minijinja iterates it as empty, so
        // `tools is iterable and tools|length` would fail), and strings and dicts are sequences.
        env.add_test("iterable", |value: &Value| !value.is_none() && value.try_iter().is_ok());
        env.add_test("sequence", |value: &Value| {
            matches!(
                value.kind(),
                ValueKind::Undefined | ValueKind::String | ValueKind::Bytes | ValueKind::Seq | ValueKind::Map
            )
        });
        env.add_function("raise_exception", raise_exception);
        // Templates come with model files, which may be hostile: a render that runs past its
        // fuel (about a second of work) fails instead of hanging the engine.
        env.set_fuel(Some(RENDER_FUEL));
        env.add_template_owned(TEMPLATE_NAME, rewrite_generation_tags(source).into_owned())
            .map_err(|e| syntax_error(&e))?;
        Ok(Self {
            env,
            source: source.to_owned(),
            bos_token: bos_token.to_owned(),
            eos_token: eos_token.to_owned(),
            warning: None,
        })
    }

    /// The model's own template from `tokenizer.chat_template`, or ChatML with a
    /// [`warning`](Self::warning) when the model has none (or an empty one).
    pub fn from_gguf(g: &Gguf, bos_token: &str, eos_token: &str) -> Result<Self, ChatTemplateError> {
        let source = if g.metadata.contains_key(CHAT_TEMPLATE_KEY) { g.get_str(CHAT_TEMPLATE_KEY)? } else { "" };
        if !source.trim().is_empty() {
            return Self::new(source, bos_token, eos_token);
        }
        let mut template = Self::new(CHATML_TEMPLATE, bos_token, eos_token)?;
        template.warning = Some(format!(
            "the model has no chat template ({CHAT_TEMPLATE_KEY} is {} in its GGUF), so ChatML is used; \
             replies may be poor if the model was trained on a different format",
            if source.is_empty() && !g.metadata.contains_key(CHAT_TEMPLATE_KEY) { "missing" } else { "empty" },
        ));
        Ok(template)
    }

    /// Set when the template is a fallback rather than the model's own; worth showing the user.
    pub fn warning(&self) -> Option<&str> {
        self.warning.as_deref()
    }

    /// The template's Jinja source, as given (before the `{% generation %}` rewrite).
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Renders a conversation, ending with the assistant's header when `add_generation_prompt`.
    pub fn render(&self, messages: &[ChatMessage], add_generation_prompt: bool) -> Result<String, ChatTemplateError> {
        self.render_with(messages, &RenderOptions::new().add_generation_prompt(add_generation_prompt))
    }

    /// [`render`](Self::render) with tools or a fixed clock.
    pub fn render_with(&self, messages: &[ChatMessage], options: &RenderOptions) -> Result<String, ChatTemplateError> {
        self.render_value(messages.iter().map(ChatMessage::to_value).collect(), options)
    }

    /// Renders messages richer than [`ChatMessage`]: tool calls, content given as a list of
    /// parts (`[{"type": "text", "text": ...}]`), anything serde can serialize. Map keys keep
    /// their order only if minijinja is built with `preserve_order`; otherwise they are sorted,
    /// which shows in `tojson` and `.items()`.
    pub fn render_serialized<M: Serialize>(
        &self,
        messages: &[M],
        options: &RenderOptions,
    ) -> Result<String, ChatTemplateError> {
        self.render_value(Value::from(Serde(messages)), options)
    }

    fn render_value(&self, messages: Value, options: &RenderOptions) -> Result<String, ChatTemplateError> {
        let template = self.env.get_template(TEMPLATE_NAME).map_err(|e| render_error(&e))?;
        let strftime_now = match options.now_unix_seconds.or_else(system_now) {
            Some(now) => Value::from_function(move |format: &str| strftime(format, now)),
            None => Value::UNDEFINED,
        };
        let ctx = context! {
            messages,
            bos_token => self.bos_token.as_str(),
            eos_token => self.eos_token.as_str(),
            add_generation_prompt => options.add_generation_prompt,
            tools => options.tools.clone().unwrap_or(Value::from(())),
            functions => (),
            function_call => (),
            tool_choice => (),
            strftime_now,
        };
        template.render(ctx).map_err(|e| render_error(&e))
    }
}

/// Rewrites `{% generation %}` and `{% endgeneration %}` (transformers marks assistant text with
/// them for training masks and renders their body unchanged) into `{% if true %}` and
/// `{% endif %}`: a block tag with the same whitespace markers behaves the same under
/// trim_blocks and lstrip_blocks, and minijinja knows it.
fn rewrite_generation_tags(source: &str) -> Cow<'_, str> {
    if !source.contains("generation") {
        return Cow::Borrowed(source);
    }
    let mut out = String::with_capacity(source.len());
    let mut rest = source;
    while let Some(start) = rest.find("{%") {
        out.push_str(&rest[..start + 2]);
        let body = &rest[start + 2..];
        let marker = if body.starts_with(['-', '+']) { 1 } else { 0 };
        let word_start = marker + body[marker..].len() - body[marker..].trim_start().len();
        let word = &body[word_start..];
        let replaced = [("endgeneration", "endif"), ("generation", "if true")].into_iter().find_map(|(tag, with)| {
            let after = word.strip_prefix(tag)?;
            let closes = after.trim_start().trim_start_matches(['-', '+']).starts_with("%}");
            let separated = after.starts_with(|c: char| c.is_whitespace() || matches!(c, '-' | '+' | '%'));
            (closes && separated).then_some((with, after))
        });
        match replaced {
            Some((with, after)) => {
                out.push_str(&body[..word_start]);
                out.push_str(with);
                rest = after;
            }
            None => rest = body,
        }
    }
    out.push_str(rest);
    Cow::Owned(out)
}

fn describe(err: &Error) -> String {
    let mut message = match err.detail() {
        Some(detail) => format!("{}: {detail}", err.kind()),
        None => err.kind().to_string(),
    };
    let mut cause = std::error::Error::source(err);
    while let Some(c) = cause {
        match c.downcast_ref::<Error>() {
            Some(inner) => {
                let _ = write!(message, " (caused by {}: {})", inner.kind(), inner.detail().unwrap_or(""));
            }
            None => {
                let _ = write!(message, " (caused by {c})");
            }
        }
        cause = c.source();
    }
    message
}

fn syntax_error(err: &Error) -> ChatTemplateError {
    ChatTemplateError::Syntax { message: describe(err), line: err.line() }
}

fn render_error(err: &Error) -> ChatTemplateError {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(c) = cause {
        if let Some(raised) = c.downcast_ref::<Raised>() {
            return ChatTemplateError::Raised(raised.0.clone());
        }
        cause = c.source();
    }
    ChatTemplateError::Render { message: describe(err), line: err.line() }
}

/// Carried as the source of the minijinja error `raise_exception` returns, so that
/// [`render_error`] can tell a template's own refusal from an engine failure.
#[derive(Debug)]
struct Raised(String);

impl std::fmt::Display for Raised {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Raised {}

fn raise_exception(message: Option<Value>) -> Result<Value, Error> {
    let message = message.map(|m| py_str(&m)).unwrap_or_default();
    Err(Error::new(ErrorKind::InvalidOperation, format!("raise_exception: {message}")).with_source(Raised(message)))
}

fn system_now() -> Option<i64> {
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    {
        // std's clock panics here.
        None
    }
    #[cfg(not(all(target_arch = "wasm32", target_os = "unknown")))]
    {
        let elapsed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).ok()?;
        i64::try_from(elapsed.as_secs()).ok()
    }
}

/// A map that keeps insertion order whatever minijinja's own maps do.
#[derive(Debug)]
struct OrderedMap(Vec<(Value, Value)>);

impl Object for OrderedMap {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Map
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone())
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        Enumerator::Values(self.0.iter().map(|(k, _)| k.clone()).collect())
    }
}

// ---------------------------------------------------------------------------------------------
// Python compatibility: printing, methods, json.dumps, strftime.
// ---------------------------------------------------------------------------------------------

/// Prints values as Jinja2 does, which is Python's `str()`: `None`, `True`, `['a', 1]`.
fn python_formatter(out: &mut Output, state: &mut State, value: &Value) -> Result<(), Error> {
    match value.kind() {
        ValueKind::None | ValueKind::Bool | ValueKind::Number | ValueKind::Seq | ValueKind::Map => {
            out.write_str(&py_str(value)).map_err(|_| Error::from(ErrorKind::WriteFailure))
        }
        // Strings as they are; undefined and invalid values get minijinja's own handling.
        _ => minijinja::escape_formatter(out, state, value),
    }
}

/// Python's `str(value)`.
fn py_str(value: &Value) -> String {
    match value.kind() {
        ValueKind::Undefined => String::new(),
        ValueKind::String => value.as_str().unwrap_or_default().to_owned(),
        _ => py_repr(value),
    }
}

/// Python's `repr(value)`, for what Jinja2 prints of containers.
fn py_repr(value: &Value) -> String {
    match value.kind() {
        ValueKind::Undefined => "Undefined".into(),
        ValueKind::None => "None".into(),
        ValueKind::Bool => if value.is_true() { "True" } else { "False" }.into(),
        ValueKind::Number if !value.is_integer() => match f64::try_from(value.clone()) {
            Ok(f) => py_float_repr(f),
            Err(_) => value.to_string(),
        },
        ValueKind::String => py_repr_str(value.as_str().unwrap_or_default()),
        ValueKind::Seq => {
            let items: Vec<String> = match value.try_iter() {
                Ok(iter) => iter.map(|v| py_repr(&v)).collect(),
                Err(_) => Vec::new(),
            };
            if value.is_tuple() {
                if items.len() == 1 { format!("({},)", items[0]) } else { format!("({})", items.join(", ")) }
            } else {
                format!("[{}]", items.join(", "))
            }
        }
        ValueKind::Map => {
            let pairs = value.as_object().and_then(|o| o.try_iter_pairs());
            let items: Vec<String> =
                pairs.into_iter().flatten().map(|(k, v)| format!("{}: {}", py_repr(&k), py_repr(&v))).collect();
            format!("{{{}}}", items.join(", "))
        }
        _ => value.to_string(),
    }
}

/// Python's `repr(str)`: single quotes unless the text has one and no double quote.
fn py_repr_str(s: &str) -> String {
    let quote = if s.contains('\'') && !s.contains('"') { '"' } else { '\'' };
    let mut out = String::with_capacity(s.len() + 2);
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if !py_printable(c) => {
                let n = u32::from(c);
                let _ = match n {
                    0..=0xff => write!(out, "\\x{n:02x}"),
                    0x100..=0xffff => write!(out, "\\u{n:04x}"),
                    _ => write!(out, "\\U{n:08x}"),
                };
            }
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}

/// Close to Python's `str.isprintable` for one character: controls, separators other than the
/// space, and the common invisible format characters are not printable.
fn py_printable(c: char) -> bool {
    c == ' '
        || !(c.is_control()
            || c.is_whitespace()
            || matches!(c, '\u{ad}' | '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2060}'..='\u{2064}' | '\u{feff}'))
}

/// Python's `repr(float)`: the shortest round-trip digits, positional from 1e-4 up to 1e16,
/// scientific (`1e+16`, `1e-05`) outside.
fn py_float_repr(f: f64) -> String {
    if f.is_nan() {
        return "nan".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "inf" } else { "-inf" }.into();
    }
    if f == 0.0 {
        return if f.is_sign_negative() { "-0.0" } else { "0.0" }.into();
    }
    // Rust's `{:e}` prints the shortest digits that round-trip, as Python's repr does.
    let sci = format!("{:e}", f.abs());
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i64 = exp.parse().unwrap_or(0);
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let sign = if f < 0.0 { "-" } else { "" };
    if (-4..16).contains(&exp) {
        let point = exp + 1;
        if point <= 0 {
            format!("{sign}0.{}{digits}", "0".repeat(point.unsigned_abs() as usize))
        } else {
            let point = point as usize;
            if point >= digits.len() {
                format!("{sign}{digits}{}.0", "0".repeat(point - digits.len()))
            } else {
                format!("{sign}{}.{}", &digits[..point], &digits[point..])
            }
        }
    } else {
        let mantissa = if digits.len() == 1 { digits } else { format!("{}.{}", &digits[..1], &digits[1..]) };
        format!("{sign}{mantissa}e{}{:02}", if exp < 0 { '-' } else { '+' }, exp.abs())
    }
}

/// Python's whitespace (`str.isspace`): Unicode's plus the four ASCII separators 0x1c..0x1f.
fn py_space(c: char) -> bool {
    c.is_whitespace() || matches!(c, '\u{1c}'..='\u{1f}')
}

/// Python methods on strings, dicts and lists, for minijinja's unknown-method callback.
fn python_method(_state: &mut State, value: &Value, method: &str, args: &[Value]) -> Result<Value, Error> {
    match value.kind() {
        ValueKind::String => str_method(value.as_str().unwrap_or_default(), method, args),
        ValueKind::Map => map_method(value, method, args),
        ValueKind::Seq => seq_method(value, method, args),
        _ => Err(Error::from(ErrorKind::UnknownMethod)),
    }
}

/// `chars` for strip/lstrip/rstrip: None (or none) means whitespace.
fn strip_set(args: &[Value]) -> Result<Option<Vec<char>>, Error> {
    let (chars,): (Option<Value>,) = from_args(args)?;
    match chars {
        Some(c) if !c.is_none() => {
            let c = c.as_str().ok_or_else(|| invalid("strip arg must be None or str"))?;
            Ok(Some(c.chars().collect()))
        }
        _ => Ok(None),
    }
}

fn invalid(message: impl Into<Cow<'static, str>>) -> Error {
    Error::new(ErrorKind::InvalidOperation, message)
}

/// A `startswith`/`endswith` argument: a string or a tuple (list) of strings.
fn affixes(arg: &Value, method: &str) -> Result<Vec<String>, Error> {
    if let Some(s) = arg.as_str() {
        return Ok(vec![s.to_owned()]);
    }
    let mut out = Vec::new();
    for item in arg.try_iter().map_err(|_| invalid(format!("{method} first arg must be str or a tuple of str")))? {
        out.push(item.as_str().ok_or_else(|| invalid(format!("tuple for {method} must only contain str")))?.to_owned());
    }
    Ok(out)
}

fn str_method(s: &str, method: &str, args: &[Value]) -> Result<Value, Error> {
    let no_args = |args: &[Value]| from_args::<()>(args);
    Ok(match method {
        "strip" => Value::from(match strip_set(args)? {
            Some(set) => s.trim_matches(set.as_slice()),
            None => s.trim_matches(py_space),
        }),
        "lstrip" => Value::from(match strip_set(args)? {
            Some(set) => s.trim_start_matches(set.as_slice()),
            None => s.trim_start_matches(py_space),
        }),
        "rstrip" => Value::from(match strip_set(args)? {
            Some(set) => s.trim_end_matches(set.as_slice()),
            None => s.trim_end_matches(py_space),
        }),
        "startswith" | "endswith" => {
            let (arg,): (&Value,) = from_args(args)?;
            let list = affixes(arg, method)?;
            Value::from(if method == "startswith" {
                list.iter().any(|p| s.starts_with(p.as_str()))
            } else {
                list.iter().any(|p| s.ends_with(p.as_str()))
            })
        }
        "split" | "rsplit" => {
            let (positional, kwargs): (&[Value], Kwargs) = from_args(args)?;
            let sep = match positional.first() {
                Some(v) => Some(v.clone()),
                None => kwargs.get::<Option<Value>>("sep")?,
            };
            let maxsplit = match positional.get(1) {
                Some(v) => Some(i64::try_from(v.clone())?),
                None => kwargs.get::<Option<i64>>("maxsplit")?,
            };
            if positional.len() > 2 {
                return Err(Error::from(ErrorKind::TooManyArguments));
            }
            kwargs.assert_all_used()?;
            let maxsplit = maxsplit.and_then(|m| usize::try_from(m).ok());
            let parts = match sep.filter(|v| !v.is_none()) {
                None => split_whitespace(s, maxsplit, method == "rsplit"),
                Some(sep) => {
                    let sep = sep.as_str().ok_or_else(|| invalid("must be str or None"))?;
                    if sep.is_empty() {
                        return Err(invalid("empty separator"));
                    }
                    match (maxsplit, method == "rsplit") {
                        (None, _) => s.split(sep).collect(),
                        (Some(n), false) => s.splitn(n.saturating_add(1), sep).collect(),
                        (Some(n), true) => {
                            let mut parts: Vec<&str> = s.rsplitn(n.saturating_add(1), sep).collect();
                            parts.reverse();
                            parts
                        }
                    }
                }
            };
            parts.into_iter().map(Value::from).collect()
        }
        "splitlines" => {
            let (keepends,): (Option<bool>,) = from_args(args)?;
            splitlines(s, keepends.unwrap_or(false)).into_iter().map(Value::from).collect()
        }
        "upper" => {
            no_args(args)?;
            Value::from(s.to_uppercase())
        }
        "lower" => {
            no_args(args)?;
            Value::from(s.to_lowercase())
        }
        "title" => {
            no_args(args)?;
            Value::from(py_title(s))
        }
        "capitalize" => {
            no_args(args)?;
            let mut chars = s.chars();
            Value::from(match chars.next() {
                Some(first) => first.to_uppercase().chain(chars.flat_map(char::to_lowercase)).collect::<String>(),
                None => String::new(),
            })
        }
        "replace" => {
            let (old, new, count): (&str, &str, Option<i64>) = from_args(args)?;
            Value::from(match count.and_then(|c| usize::try_from(c).ok()) {
                Some(n) => s.replacen(old, new, n),
                None => s.replace(old, new),
            })
        }
        "removeprefix" => {
            let (prefix,): (&str,) = from_args(args)?;
            Value::from(s.strip_prefix(prefix).unwrap_or(s))
        }
        "removesuffix" => {
            let (suffix,): (&str,) = from_args(args)?;
            Value::from(s.strip_suffix(suffix).unwrap_or(s))
        }
        "find" | "rfind" | "index" | "rindex" => {
            let (needle,): (&str,) = from_args(args)?;
            let at = if method.starts_with('r') { s.rfind(needle) } else { s.find(needle) };
            match at {
                // Python counts characters, not bytes.
                Some(at) => Value::from(s[..at].chars().count()),
                None if method.ends_with("find") => Value::from(-1),
                None => return Err(invalid("substring not found")),
            }
        }
        "count" => {
            let (needle,): (&str,) = from_args(args)?;
            Value::from(if needle.is_empty() { s.chars().count() + 1 } else { s.matches(needle).count() })
        }
        "join" => {
            let (items,): (&Value,) = from_args(args)?;
            let items: Vec<String> = items.try_iter()?.map(|v| py_str(&v)).collect();
            Value::from(items.join(s))
        }
        "format" => Value::from(minijinja::formatting::format(minijinja::formatting::FormatStyle::StrFormat, s, args)?),
        "isdigit" | "isnumeric" | "isdecimal" => {
            no_args(args)?;
            Value::from(!s.is_empty() && s.chars().all(char::is_numeric))
        }
        "isalpha" => {
            no_args(args)?;
            Value::from(!s.is_empty() && s.chars().all(char::is_alphabetic))
        }
        "isalnum" => {
            no_args(args)?;
            Value::from(!s.is_empty() && s.chars().all(char::is_alphanumeric))
        }
        "isspace" => {
            no_args(args)?;
            Value::from(!s.is_empty() && s.chars().all(py_space))
        }
        "islower" => {
            no_args(args)?;
            Value::from(s.chars().any(char::is_lowercase) && !s.chars().any(char::is_uppercase))
        }
        "isupper" => {
            no_args(args)?;
            Value::from(s.chars().any(char::is_uppercase) && !s.chars().any(char::is_lowercase))
        }
        _ => return Err(Error::from(ErrorKind::UnknownMethod)),
    })
}

/// Python's `str.split()` / `str.rsplit()` without a separator: runs of whitespace separate,
/// and no empty strings come out.
fn split_whitespace(s: &str, maxsplit: Option<usize>, from_right: bool) -> Vec<&str> {
    let mut parts = Vec::new();
    if from_right {
        let mut rest = s.trim_end_matches(py_space);
        while !rest.is_empty() {
            if maxsplit == Some(parts.len()) {
                parts.push(rest);
                break;
            }
            match rest.rfind(py_space) {
                Some(at) => {
                    let width = rest[at..].chars().next().map_or(1, char::len_utf8);
                    parts.push(&rest[at + width..]);
                    rest = rest[..at].trim_end_matches(py_space);
                }
                None => {
                    parts.push(rest);
                    break;
                }
            }
        }
        parts.reverse();
    } else {
        let mut rest = s.trim_start_matches(py_space);
        while !rest.is_empty() {
            if maxsplit == Some(parts.len()) {
                parts.push(rest);
                break;
            }
            match rest.find(py_space) {
                Some(at) => {
                    parts.push(&rest[..at]);
                    rest = rest[at..].trim_start_matches(py_space);
                }
                None => {
                    parts.push(rest);
                    break;
                }
            }
        }
    }
    parts
}

/// Python's `str.splitlines`, with its line boundaries (`\r\n` counts once).
fn splitlines(s: &str, keepends: bool) -> Vec<&str> {
    let mut lines = Vec::new();
    let mut start = 0;
    let mut chars = s.char_indices().peekable();
    while let Some((at, c)) = chars.next() {
        let is_break = matches!(
            c,
            '\n' | '\r' | '\u{b}' | '\u{c}' | '\u{1c}' | '\u{1d}' | '\u{1e}' | '\u{85}' | '\u{2028}' | '\u{2029}'
        );
        if !is_break {
            continue;
        }
        let mut end = at + c.len_utf8();
        if c == '\r' && chars.peek().is_some_and(|&(_, next)| next == '\n') {
            chars.next();
            end += 1;
        }
        lines.push(if keepends { &s[start..end] } else { &s[start..at] });
        start = end;
    }
    if start < s.len() {
        lines.push(&s[start..]);
    }
    lines
}

/// Python's `str.title`: a cased character after an uncased one starts a word.
fn py_title(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut previous_cased = false;
    for c in s.chars() {
        if c.is_uppercase() || c.is_lowercase() {
            if previous_cased {
                out.extend(c.to_lowercase());
            } else {
                out.extend(c.to_uppercase());
            }
            previous_cased = true;
        } else {
            out.push(c);
            previous_cased = false;
        }
    }
    out
}

fn map_method(value: &Value, method: &str, args: &[Value]) -> Result<Value, Error> {
    let Some(obj) = value.as_object() else {
        return Err(Error::from(ErrorKind::UnknownMethod));
    };
    let pairs = || obj.try_iter_pairs().into_iter().flatten();
    Ok(match method {
        "items" => {
            from_args::<()>(args)?;
            pairs().map(|(k, v)| Value::from(Tuple::from([k, v]))).collect()
        }
        "keys" => {
            from_args::<()>(args)?;
            pairs().map(|(k, _)| k).collect()
        }
        "values" => {
            from_args::<()>(args)?;
            pairs().map(|(_, v)| v).collect()
        }
        "get" => {
            let (key, default): (&Value, Option<Value>) = from_args(args)?;
            match obj.get_value(key) {
                Some(v) if !v.is_undefined() => v,
                _ => default.unwrap_or(Value::from(())),
            }
        }
        _ => return Err(Error::from(ErrorKind::UnknownMethod)),
    })
}

fn seq_method(value: &Value, method: &str, args: &[Value]) -> Result<Value, Error> {
    Ok(match method {
        "count" => {
            let (needle,): (&Value,) = from_args(args)?;
            Value::from(value.try_iter()?.filter(|v| v == needle).count())
        }
        "index" => {
            let (needle,): (&Value,) = from_args(args)?;
            match value.try_iter()?.position(|v| v == *needle) {
                Some(at) => Value::from(at),
                None => return Err(invalid("value is not in list")),
            }
        }
        _ => return Err(Error::from(ErrorKind::UnknownMethod)),
    })
}

/// How `json.dumps` was asked to write.
struct JsonStyle {
    ensure_ascii: bool,
    indent: Option<String>,
    item_separator: String,
    key_separator: String,
    sort_keys: bool,
}

/// `tojson` as transformers defines it:
/// `json.dumps(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False)`, taking
/// those arguments by position or by name. Unlike Jinja's own, it escapes nothing for HTML.
fn tojson_filter(value: &Value, positional: &[Value], kwargs: Kwargs) -> Result<Value, Error> {
    const NAMES: [&str; 4] = ["ensure_ascii", "indent", "separators", "sort_keys"];
    if positional.len() > NAMES.len() {
        return Err(Error::from(ErrorKind::TooManyArguments));
    }
    let mut args: [Value; 4] = Default::default();
    for (i, name) in NAMES.iter().enumerate() {
        if let Some(v) = kwargs.get::<Option<Value>>(name)? {
            if i < positional.len() {
                return Err(invalid(format!("tojson got multiple values for argument {name:?}")));
            }
            args[i] = v;
        } else if let Some(v) = positional.get(i) {
            args[i] = v.clone();
        }
    }
    kwargs.assert_all_used()?;
    let [ensure_ascii, indent, separators, sort_keys] = args;
    let indent = match indent.kind() {
        ValueKind::Undefined | ValueKind::None => None,
        ValueKind::String => indent.as_str().map(str::to_owned),
        _ => {
            let n = i64::try_from(indent)?;
            Some(" ".repeat(usize::try_from(n).unwrap_or(0).min(1024)))
        }
    };
    let (item_separator, key_separator) = match separators.kind() {
        ValueKind::Undefined | ValueKind::None => {
            (if indent.is_some() { "," } else { ", " }.to_owned(), ": ".to_owned())
        }
        _ => {
            let parts: Vec<Value> = separators.try_iter()?.collect();
            match parts.as_slice() {
                [item, key] => (
                    item.as_str().ok_or_else(|| invalid("tojson separators must be strings"))?.to_owned(),
                    key.as_str().ok_or_else(|| invalid("tojson separators must be strings"))?.to_owned(),
                ),
                _ => return Err(invalid("tojson separators must be a pair (item, key)")),
            }
        }
    };
    let style = JsonStyle {
        ensure_ascii: ensure_ascii.is_true(),
        indent,
        item_separator,
        key_separator,
        sort_keys: sort_keys.is_true(),
    };
    let mut out = String::new();
    write_json(&mut out, value, &style, 0)?;
    Ok(Value::from(out))
}

fn write_json(out: &mut String, value: &Value, style: &JsonStyle, depth: usize) -> Result<(), Error> {
    if depth > MAX_JSON_DEPTH {
        return Err(invalid("tojson: the value nests too deeply"));
    }
    match value.kind() {
        ValueKind::None => out.push_str("null"),
        ValueKind::Bool => out.push_str(if value.is_true() { "true" } else { "false" }),
        ValueKind::Number if value.is_integer() => {
            let _ = write!(out, "{value}");
        }
        ValueKind::Number => {
            let f = f64::try_from(value.clone())?;
            out.push_str(&match py_float_repr(f).as_str() {
                "nan" => "NaN".to_owned(),
                "inf" => "Infinity".to_owned(),
                "-inf" => "-Infinity".to_owned(),
                other => other.to_owned(),
            });
        }
        ValueKind::String => write_json_str(out, value.as_str().unwrap_or_default(), style.ensure_ascii),
        ValueKind::Seq | ValueKind::Iterable => {
            let items: Vec<Value> = value.try_iter()?.collect();
            write_json_container(out, '[', ']', items.len(), style, depth, |out, i| {
                write_json(out, &items[i], style, depth + 1)
            })?;
        }
        ValueKind::Map => {
            let mut pairs: Vec<(String, Value)> = Vec::new();
            for (k, v) in value.as_object().and_then(|o| o.try_iter_pairs()).into_iter().flatten() {
                pairs.push((json_key(&k)?, v));
            }
            if style.sort_keys {
                pairs.sort_by(|a, b| a.0.cmp(&b.0));
            }
            write_json_container(out, '{', '}', pairs.len(), style, depth, |out, i| {
                write_json_str(out, &pairs[i].0, style.ensure_ascii);
                out.push_str(&style.key_separator);
                write_json(out, &pairs[i].1, style, depth + 1)
            })?;
        }
        kind => return Err(invalid(format!("tojson: object of type {kind} is not JSON serializable"))),
    }
    Ok(())
}

fn write_json_container(
    out: &mut String,
    open: char,
    close: char,
    len: usize,
    style: &JsonStyle,
    depth: usize,
    mut item: impl FnMut(&mut String, usize) -> Result<(), Error>,
) -> Result<(), Error> {
    out.push(open);
    if len == 0 {
        out.push(close);
        return Ok(());
    }
    for i in 0..len {
        if i > 0 {
            out.push_str(&style.item_separator);
        }
        if let Some(indent) = &style.indent {
            out.push('\n');
            out.push_str(&indent.repeat(depth + 1));
        }
        item(out, i)?;
    }
    if let Some(indent) = &style.indent {
        out.push('\n');
        out.push_str(&indent.repeat(depth));
    }
    out.push(close);
    Ok(())
}

/// Python's rule for dict keys in JSON: strings as they are, scalars converted.
fn json_key(key: &Value) -> Result<String, Error> {
    Ok(match key.kind() {
        ValueKind::String => key.as_str().unwrap_or_default().to_owned(),
        ValueKind::None => "null".to_owned(),
        ValueKind::Bool => if key.is_true() { "true" } else { "false" }.to_owned(),
        ValueKind::Number => py_str(key),
        kind => return Err(invalid(format!("tojson: keys must be str, int, float, bool or None, not {kind}"))),
    })
}

fn write_json_str(out: &mut String, s: &str, ensure_ascii: bool) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if u32::from(c) < 0x20 || (ensure_ascii && !c.is_ascii()) => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    let _ = write!(out, "\\u{unit:04x}");
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

const WEEKDAYS: [&str; 7] = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"];
const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let day_of_year = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// (year, month 1..=12, day 1..=31) of a day count since 1970-01-01.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    (year_of_era + era * 400 + i64::from(month <= 2), month, day)
}

/// Python's `datetime.strftime` for a UTC time, with glibc's directives in the C locale
/// (including the `%-d` form that drops padding). Unknown directives are kept as written.
fn strftime(format: &str, unix_seconds: i64) -> String {
    // Far beyond any real clock, and keeps the date arithmetic from overflowing.
    let t = unix_seconds.clamp(-(1 << 40), 1 << 40);
    let days = t.div_euclid(86_400);
    let secs = t.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    let (hour, minute, second) = (secs / 3600, secs / 60 % 60, secs % 60);
    let weekday = (days + 4).rem_euclid(7) as usize; // 1970-01-01 was a Thursday; 0 is Sunday.
    let year_day = days - days_from_civil(year, 1, 1) + 1;
    let hour12 = if hour % 12 == 0 { 12 } else { hour % 12 };
    let month_name = MONTHS[(month - 1).clamp(0, 11) as usize];

    let mut out = String::new();
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let mut spec = chars.next();
        let no_pad = spec == Some('-');
        if no_pad {
            spec = chars.next();
        }
        let num = |v: i64, width: usize| if no_pad { v.to_string() } else { format!("{v:0width$}") };
        let text = match spec {
            None => {
                out.push('%');
                if no_pad {
                    out.push('-');
                }
                break;
            }
            Some('Y') => year.to_string(),
            Some('y') => num(year.rem_euclid(100), 2),
            Some('C') => num(year.div_euclid(100), 2),
            Some('m') => num(month, 2),
            Some('d') => num(day, 2),
            Some('e') => {
                if no_pad {
                    day.to_string()
                } else {
                    format!("{day:2}")
                }
            }
            Some('H') => num(hour, 2),
            Some('I') => num(hour12, 2),
            Some('M') => num(minute, 2),
            Some('S') => num(second, 2),
            Some('j') => num(year_day, 3),
            Some('p') => if hour < 12 { "AM" } else { "PM" }.to_owned(),
            Some('a') => WEEKDAYS[weekday][..3].to_owned(),
            Some('A') => WEEKDAYS[weekday].to_owned(),
            Some('b' | 'h') => month_name[..3].to_owned(),
            Some('B') => month_name.to_owned(),
            Some('u') => (if weekday == 0 { 7 } else { weekday }).to_string(),
            Some('w') => weekday.to_string(),
            Some('s') => t.to_string(),
            Some('D' | 'x') => strftime("%m/%d/%y", t),
            Some('F') => strftime("%Y-%m-%d", t),
            Some('T' | 'X') => strftime("%H:%M:%S", t),
            Some('R') => strftime("%H:%M", t),
            Some('r') => strftime("%I:%M:%S %p", t),
            Some('c') => strftime("%a %b %e %H:%M:%S %Y", t),
            Some('n') => "\n".to_owned(),
            Some('t') => "\t".to_owned(),
            Some('%') => "%".to_owned(),
            // A naive datetime (which `datetime.now()` is) has no zone: Python prints nothing.
            Some('z' | 'Z') => String::new(),
            Some(other) => format!("%{}{other}", if no_pad { "-" } else { "" }),
        };
        out.push_str(&text);
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

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
        let own =
            BTreeMap::from([(CHAT_TEMPLATE_KEY.to_owned(), crate::gguf::Value::String("{{ bos_token }}x".into()))]);
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
        assert_eq!(
            err.to_string(),
            "the chat template rejected the conversation: Roles must alternate, got user twice"
        );
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
            (
                "{{ 'abc'.startswith('ab') }}{{ 'abc'.startswith(('x', 'a')) }}{{ 'abc'.endswith('x') }}",
                "TrueTrueFalse",
            ),
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
            ChatTemplate::new("{{ strftime_now('%d %b %Y') }}|{{ strftime_now('%c %j %-d %I%p %%') }}", "", "")
                .unwrap();
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
}
