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

use minijinja::value::{Serde, Value, ValueKind};
use minijinja::{AutoEscape, Environment, Error, ErrorKind, UndefinedBehavior, context};
use serde::Serialize;
use thiserror::Error;

pub use hearth_api::chat::ChatMessage;

use crate::gguf::Gguf;

mod python;
mod strftime;
mod tojson;

use python::{OrderedMap, py_str, python_formatter, python_method};
use strftime::strftime;
use tojson::tojson_filter;

/// The GGUF metadata key holding a model's chat template.
pub const CHAT_TEMPLATE_KEY: &str = "tokenizer.chat_template";

/// ChatML, used when a model has no template of its own: the format llama.cpp falls back to,
/// written as the Jinja template Hugging Face uses for it.
pub const CHATML_TEMPLATE: &str = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

/// The one template an environment holds.
const TEMPLATE_NAME: &str = "chat_template";

/// A message as a template sees it: a dict with `role` then `content`, in that order whatever
/// map order minijinja was built with, so `message|tojson` and `message.items()` come out as
/// they do from Python.
fn message_value(message: &ChatMessage) -> Value {
    Value::from_object(OrderedMap(vec![
        (Value::from("role"), Value::from(message.role.as_str())),
        (Value::from("content"), Value::from(message.content.as_str())),
    ]))
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
        self.render_value(messages.iter().map(message_value).collect(), options)
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

#[cfg(test)]
mod tests;
