//! The OpenAI-compatible HTTP API of `hearth serve --headless`: `GET /v1/models`,
//! `POST /v1/chat/completions` and `POST /v1/completions`, with and without `stream: true`
//! (server-sent events), `response_format`, and `tools` / `tool_choice` with tool calls in
//! OpenAI's shapes. Bad requests get HTTP 400 and OpenAI's error body naming the parameter.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::DefaultBodyLimit;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use hearth_core::chat_template::ChatMessage;
use hearth_core::engine::{Completion, FinishReason, GenerateParams, GenerateParamsExt, Prompt, ResponseFormat};
use hearth_core::sampler::SamplerConfig;
use hearth_core::tool_call::{Tool, ToolCall, ToolChoice, ToolUse};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::completer::{CompleteError, Completer};

/// Tokens a chat completion may generate when the request does not say.
const DEFAULT_CHAT_MAX_TOKENS: usize = 512;
/// As OpenAI's completions API.
const DEFAULT_COMPLETION_MAX_TOKENS: usize = 16;

pub struct Api {
    /// The model's id in requests and `/v1/models`.
    pub model: String,
    /// Set once the engine has loaded; until then generations answer 503.
    completer: OnceLock<Arc<dyn Completer>>,
    next_id: AtomicU64,
}

impl Api {
    pub fn new(model: String) -> Arc<Self> {
        Arc::new(Self { model, completer: OnceLock::new(), next_id: AtomicU64::new(1) })
    }

    /// Puts the loaded engine behind the API (once).
    pub fn set_completer(&self, completer: Arc<dyn Completer>) {
        let _ = self.completer.set(completer);
    }

    fn completer(&self) -> Result<Arc<dyn Completer>, ApiError> {
        self.completer.get().cloned().ok_or_else(|| ApiError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            code: "loading",
            param: None,
            message: "the model is still loading; try again shortly".into(),
        })
    }

    fn id(&self, prefix: &str) -> String {
        format!("{prefix}-{}", self.next_id.fetch_add(1, Ordering::Relaxed))
    }
}

/// The routes, to be nested under `/v1`.
pub fn router(api: Arc<Api>) -> Router {
    Router::new()
        .route("/models", get(models))
        .route("/models/{id}", get(model))
        .route("/chat/completions", post(chat_completions))
        .route("/completions", post(completions))
        .fallback(|| async { error(StatusCode::NOT_FOUND, "not_found", None, "no such API route".into()) })
        .layer(DefaultBodyLimit::max(MAX_REQUEST_BYTES))
        .with_state(api)
}

/// An answer in OpenAI's error shape: `{"error": {"message", "type", "param", "code"}}`.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    /// The request field at fault.
    pub param: Option<&'static str>,
    pub message: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let kind = if self.status.is_server_error() { "server_error" } else { "invalid_request_error" };
        let body = json!({"error": {"message": self.message, "type": kind, "param": self.param, "code": self.code}});
        (self.status, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
    }
}

/// An error response in OpenAI's shape.
pub fn error(status: StatusCode, code: &'static str, param: Option<&'static str>, message: String) -> Response {
    ApiError { status, code, param, message }.into_response()
}

/// HTTP 400 for the request field `param`.
fn invalid(param: Option<&'static str>, message: String) -> ApiError {
    ApiError { status: StatusCode::BAD_REQUEST, code: "invalid_request", param, message }
}

fn created() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

async fn models(State(api): State<Arc<Api>>) -> Response {
    let body = json!({"object": "list", "data": [model_object(&api.model)]});
    axum::Json(body).into_response()
}

async fn model(State(api): State<Arc<Api>>, Path(id): Path<String>) -> Response {
    if id == api.model {
        axum::Json(model_object(&api.model)).into_response()
    } else {
        error(
            StatusCode::NOT_FOUND,
            "model_not_found",
            Some("model"),
            format!("no model {id:?}; this server has {:?}", api.model),
        )
    }
}

fn model_object(id: &str) -> Value {
    json!({"id": id, "object": "model", "created": 0, "owned_by": "hearth"})
}

/// `stop`: one string or a list.
#[derive(Deserialize)]
#[serde(untagged)]
enum Stop {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize, Default)]
struct StreamOptions {
    #[serde(default)]
    include_usage: bool,
}

/// The sampling fields both APIs share.
#[derive(Deserialize)]
struct Sampling {
    model: String,
    max_tokens: Option<i64>,
    max_completion_tokens: Option<i64>,
    temperature: Option<f64>,
    top_p: Option<f64>,
    /// Not OpenAI's, but llama.cpp's server and vLLM take them.
    top_k: Option<i64>,
    min_p: Option<f64>,
    repeat_penalty: Option<f64>,
    presence_penalty: Option<f64>,
    frequency_penalty: Option<f64>,
    seed: Option<i64>,
    stop: Option<Stop>,
    n: Option<i64>,
    #[serde(default)]
    stream: bool,
    stream_options: Option<StreamOptions>,
    logprobs: Option<Value>,
}

impl Sampling {
    /// The engine's parameters, or the 400 that names what is wrong.
    fn params(&self, api: &Api, default_max_tokens: usize) -> Result<GenerateParams, ApiError> {
        if self.model != api.model {
            return Err(ApiError {
                status: StatusCode::BAD_REQUEST,
                code: "model_not_found",
                param: Some("model"),
                message: format!("no model {:?}; this server has {:?} (GET /v1/models)", self.model, api.model),
            });
        }
        let max_tokens = match self.max_completion_tokens.or(self.max_tokens) {
            None => default_max_tokens,
            Some(n) if n >= 0 => n as usize,
            Some(n) => return Err(invalid(Some("max_tokens"), format!("max_tokens must be 0 or more, got {n}"))),
        };
        let in_range = |name: &'static str, value: Option<f64>, low: f64, high: f64, default: f64| match value {
            None => Ok(default as f32),
            Some(v) if (low..=high).contains(&v) => Ok(v as f32),
            Some(v) => Err(invalid(Some(name), format!("{name} must be between {low} and {high}, got {v}"))),
        };
        let temperature = in_range("temperature", self.temperature, 0.0, 2.0, 1.0)?;
        let top_p = in_range("top_p", self.top_p, 0.0, 1.0, 1.0)?;
        let min_p = in_range("min_p", self.min_p, 0.0, 1.0, 0.0)?;
        let repeat_penalty = in_range("repeat_penalty", self.repeat_penalty, 0.0, 10.0, 1.0)?;
        let presence_penalty = in_range("presence_penalty", self.presence_penalty, -2.0, 2.0, 0.0)?;
        let frequency_penalty = in_range("frequency_penalty", self.frequency_penalty, -2.0, 2.0, 0.0)?;
        let top_k = match self.top_k {
            None => 0,
            Some(k) if k >= 0 => k as usize,
            Some(k) => return Err(invalid(Some("top_k"), format!("top_k must be 0 or more, got {k}"))),
        };
        // Same request, same reply: an absent seed is seed 0.
        let seed = match self.seed {
            None => 0,
            Some(s) if s >= 0 => s as u64,
            Some(s) => return Err(invalid(Some("seed"), format!("seed must be 0 or more, got {s}"))),
        };
        if let Some(n) = self.n.filter(|&n| n != 1) {
            return Err(invalid(Some("n"), format!("n must be 1 (one choice per request), got {n}")));
        }
        if self.logprobs.as_ref().is_some_and(|l| !matches!(l, Value::Null | Value::Bool(false))) {
            return Err(invalid(Some("logprobs"), "logprobs are not supported".into()));
        }
        let stop = match &self.stop {
            None => Vec::new(),
            Some(Stop::One(s)) => vec![s.clone()],
            Some(Stop::Many(v)) => v.clone(),
        };
        if stop.len() > 4 || stop.iter().any(String::is_empty) {
            return Err(invalid(Some("stop"), "stop takes up to 4 non-empty strings".into()));
        }
        let sampler = SamplerConfig {
            temperature,
            top_k,
            top_p,
            min_p,
            repeat_penalty,
            presence_penalty,
            frequency_penalty,
            seed,
            ..SamplerConfig::default()
        };
        Ok(GenerateParams { max_tokens, sampler, stop, ..GenerateParams::default() })
    }

    fn include_usage(&self) -> bool {
        self.stream_options.as_ref().is_some_and(|o| o.include_usage)
    }
}

#[derive(Deserialize)]
struct ChatRequest {
    #[serde(flatten)]
    sampling: Sampling,
    messages: Vec<ApiMessage>,
    response_format: Option<ResponseFormat>,
    #[serde(default)]
    tools: Vec<Tool>,
    tool_choice: Option<ToolChoice>,
}

#[derive(Deserialize)]
struct ApiMessage {
    role: String,
    #[serde(default)]
    content: Option<Content>,
    #[serde(default)]
    tool_calls: Vec<ToolCall>,
}

/// A message's content: a text, or a list of parts of which only text parts are supported.
#[derive(Deserialize)]
#[serde(untagged)]
enum Content {
    Text(String),
    Parts(Vec<Value>),
}

/// The conversation as the model's template sees it. An assistant's earlier tool calls are
/// written back the way the model writes them; a tool's result is a `tool` message.
fn chat_messages(messages: &[ApiMessage]) -> Result<Vec<ChatMessage>, ApiError> {
    if messages.is_empty() {
        return Err(invalid(Some("messages"), "messages must not be empty".into()));
    }
    let mut out = Vec::with_capacity(messages.len());
    for (i, m) in messages.iter().enumerate() {
        let role = match m.role.as_str() {
            "system" | "developer" => "system",
            "user" | "assistant" | "tool" => m.role.as_str(),
            other => {
                return Err(invalid(
                    Some("messages"),
                    format!("messages[{i}].role {other:?} is not system, developer, user, assistant or tool"),
                ));
            }
        };
        let mut text = match &m.content {
            None => String::new(),
            Some(Content::Text(t)) => t.clone(),
            Some(Content::Parts(parts)) => {
                let mut text = String::new();
                for part in parts {
                    match (part["type"].as_str(), part["text"].as_str()) {
                        (Some("text"), Some(t)) => text.push_str(t),
                        (kind, _) => {
                            return Err(invalid(
                                Some("messages"),
                                format!("messages[{i}]: content parts of type {kind:?} are not supported (text only)"),
                            ));
                        }
                    }
                }
                text
            }
        };
        for call in &m.tool_calls {
            let arguments: Value = serde_json::from_str(&call.function.arguments)
                .unwrap_or_else(|_| Value::String(call.function.arguments.clone()));
            let call = json!({"name": call.function.name, "arguments": arguments});
            text.push_str(&format!("<tool_call>\n{call}\n</tool_call>"));
        }
        out.push(ChatMessage::new(role, text));
    }
    Ok(out)
}

/// Largest request body the API reads: 1 MiB, a prompt of about 250 000 tokens, four times
/// the largest context of the shipped models. Larger is HTTP 413 before the body is read.
pub const MAX_REQUEST_BYTES: usize = 1 << 20;

/// Parses a request body, or answers 400 with serde's reason (which names the field), or the
/// status of a body that could not be read (413 for one over [`MAX_REQUEST_BYTES`]).
fn parse<T: for<'de> Deserialize<'de>>(body: Result<Bytes, BytesRejection>) -> Result<T, ApiError> {
    let body = body.map_err(|refused| {
        // The server's body timeout surfaces as a body that failed to buffer.
        let mut cause: Option<&dyn std::error::Error> = Some(&refused);
        let timed_out = std::iter::from_fn(|| {
            let this = cause?;
            cause = this.source();
            Some(this)
        })
        .any(|e| e.is::<tower_http::timeout::TimeoutError>());
        let (status, code) = if timed_out {
            (StatusCode::REQUEST_TIMEOUT, "request_timeout")
        } else if refused.status() == StatusCode::PAYLOAD_TOO_LARGE {
            (refused.status(), "request_too_large")
        } else {
            (refused.status(), "unreadable_body")
        };
        let message = format!(
            "the request body was not read: {} (the API reads at most {MAX_REQUEST_BYTES} bytes, within {} s)",
            refused.body_text(),
            crate::server::BODY_READ_TIMEOUT.as_secs()
        );
        ApiError { status, code, param: None, message }
    })?;
    serde_json::from_slice(&body).map_err(|e| invalid(None, format!("the request body is not a valid request: {e}")))
}

async fn chat_completions(
    State(api): State<Arc<Api>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let request: ChatRequest = parse(body)?;
    let mut params = request.sampling.params(&api, DEFAULT_CHAT_MAX_TOKENS)?;
    params.response_format = request.response_format.unwrap_or_default();
    params.tools = request.tools;
    params.tool_choice = request.tool_choice;
    let prompt = Prompt::Chat(chat_messages(&request.messages)?);
    // Checked here, so a page engine's failures are the engine's and not the request's.
    params.tool_use().map_err(|e| invalid(Some("tools"), e.to_string()))?;
    if let Err(e) = params.grammar() {
        let param = if params.tool_use().is_ok_and(|t| t.schema().is_some()) { "tools" } else { "response_format" };
        return Err(invalid(Some(param), e.to_string()));
    }
    let completer = api.completer()?;
    let id = api.id("chatcmpl");
    if request.sampling.stream {
        return Ok(stream_chat(api, completer, id, prompt, params, request.sampling.include_usage()));
    }
    let (deltas, _ignored) = mpsc::unbounded_channel();
    let done = completer.generate(prompt, params, deltas).await.map_err(engine_error)?;
    Ok(axum::Json(json!({
        "id": id,
        "object": "chat.completion",
        "created": created(),
        "model": api.model,
        "system_fingerprint": completer.describe(),
        "choices": [{
            "index": 0,
            "message": assistant_message(&done),
            "finish_reason": finish_reason(done.finish_reason),
            "logprobs": null,
        }],
        "usage": usage(&done),
    }))
    .into_response())
}

fn assistant_message(done: &Completion) -> Value {
    if done.tool_calls.is_empty() {
        json!({"role": "assistant", "content": done.text})
    } else {
        json!({"role": "assistant", "content": null, "tool_calls": done.tool_calls})
    }
}

fn finish_reason(reason: FinishReason) -> &'static str {
    match reason {
        FinishReason::Stop | FinishReason::Cancelled => "stop",
        FinishReason::Length => "length",
        FinishReason::ToolCalls => "tool_calls",
    }
}

fn usage(done: &Completion) -> Value {
    json!({
        "prompt_tokens": done.prompt_tokens,
        "completion_tokens": done.completion_tokens,
        "total_tokens": done.prompt_tokens + done.completion_tokens,
    })
}

fn engine_error(e: CompleteError) -> ApiError {
    match e {
        CompleteError::Invalid(message) => invalid(None, message),
        CompleteError::Failed(message) => {
            ApiError { status: StatusCode::INTERNAL_SERVER_ERROR, code: "engine_error", param: None, message }
        }
    }
}

/// Text that may still turn out to be a tool call is held back from the stream: with tools in
/// play (`auto`), a reply that begins like `<tool_call>` or `{` is streamed only once it
/// cannot be a call; a forced call is never streamed as text.
struct Holdback {
    forced: bool,
    auto: bool,
    held: String,
    releasing: bool,
}

impl Holdback {
    fn new(params: &GenerateParams) -> Self {
        let (forced, auto) = match params.tool_use() {
            Ok(ToolUse::Forced { .. }) => (true, false),
            Ok(ToolUse::Auto(_)) => (false, true),
            _ => (false, false),
        };
        Self { forced, auto, held: String::new(), releasing: !forced && !auto }
    }

    /// The text to stream now.
    fn push(&mut self, delta: &str) -> Option<String> {
        if self.releasing {
            return Some(delta.to_string());
        }
        self.held.push_str(delta);
        if self.forced {
            return None;
        }
        let start = self.held.trim_start();
        let may_be_call = start.is_empty()
            || start.starts_with('{')
            || start.starts_with("<tool_call>")
            || "<tool_call>".starts_with(start);
        if may_be_call {
            return None;
        }
        self.releasing = true;
        Some(std::mem::take(&mut self.held))
    }

    /// What is still held when the reply turned out not to be a call.
    fn rest(&mut self, done: &Completion) -> Option<String> {
        (done.tool_calls.is_empty() && !self.held.is_empty() && self.auto).then(|| std::mem::take(&mut self.held))
    }
}

/// Runs a generation, handing its text to `on_text` as it streams; `None` once `on_text` says
/// the client has gone (returning false), which drops the receiver and so ends the generation.
async fn stream_generation(
    completer: &dyn Completer,
    prompt: Prompt,
    params: GenerateParams,
    mut on_text: impl FnMut(&str) -> bool,
) -> Option<Result<Completion, CompleteError>> {
    let (deltas, mut text) = mpsc::unbounded_channel();
    let generation = completer.generate(prompt, params, deltas);
    tokio::pin!(generation);
    let result = loop {
        tokio::select! {
            done = &mut generation => break done,
            Some(delta) = text.recv() => {
                if !on_text(&delta) {
                    return None;
                }
            }
        }
    };
    while let Ok(delta) = text.try_recv() {
        on_text(&delta);
    }
    Some(result)
}

fn sse(data: &Value) -> Bytes {
    Bytes::from(format!("data: {data}\n\n"))
}

fn sse_response(events: mpsc::UnboundedReceiver<Bytes>) -> Response {
    let stream = futures_util::stream::unfold(events, |mut events| async move {
        events.recv().await.map(|bytes| (Ok::<_, std::convert::Infallible>(bytes), events))
    });
    Response::builder()
        .header(header::CONTENT_TYPE, "text/event-stream")
        .header(header::CACHE_CONTROL, "no-cache")
        .body(Body::from_stream(stream))
        .unwrap_or_else(|e| error(StatusCode::INTERNAL_SERVER_ERROR, "server_error", None, e.to_string()))
}

/// A chat completion as `chat.completion.chunk` events: the role, the text as it comes, any
/// tool calls, the finish reason, the usage if asked for, then `[DONE]`.
fn stream_chat(
    api: Arc<Api>,
    completer: Arc<dyn Completer>,
    id: String,
    prompt: Prompt,
    params: GenerateParams,
    include_usage: bool,
) -> Response {
    let (events, out) = mpsc::unbounded_channel();
    let created = created();
    tokio::spawn(async move {
        let chunk = |delta: Value, finish: Option<&str>| {
            sse(&json!({
                "id": id, "object": "chat.completion.chunk", "created": created, "model": api.model,
                "system_fingerprint": completer.describe(),
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": null}],
            }))
        };
        let _ = events.send(chunk(json!({"role": "assistant", "content": ""}), None));
        let mut holdback = Holdback::new(&params);
        let streamed = stream_generation(completer.as_ref(), prompt, params, |delta| match holdback.push(delta) {
            Some(out) => events.send(chunk(json!({"content": out}), None)).is_ok(),
            None => true,
        });
        let Some(result) = streamed.await else { return };
        match result {
            Ok(done) => {
                if let Some(rest) = holdback.rest(&done) {
                    let _ = events.send(chunk(json!({"content": rest}), None));
                }
                if !done.tool_calls.is_empty() {
                    let calls: Vec<Value> = done
                        .tool_calls
                        .iter()
                        .enumerate()
                        .map(|(index, call)| {
                            json!({"index": index, "id": call.id, "type": "function", "function": call.function})
                        })
                        .collect();
                    let _ = events.send(chunk(json!({"tool_calls": calls}), None));
                }
                let _ = events.send(chunk(json!({}), Some(finish_reason(done.finish_reason))));
                if include_usage {
                    let _ = events.send(sse(&json!({
                        "id": id, "object": "chat.completion.chunk", "created": created, "model": api.model,
                        "choices": [], "usage": usage(&done),
                    })));
                }
            }
            Err(CompleteError::Invalid(message) | CompleteError::Failed(message)) => {
                let _ = events.send(sse(&json!({"error": {"message": message, "type": "server_error"}})));
            }
        }
        let _ = events.send(Bytes::from_static(b"data: [DONE]\n\n"));
    });
    sse_response(out)
}

/// `prompt` of the completions API: a text, a list of one text, or token ids.
#[derive(Deserialize)]
#[serde(untagged)]
enum CompletionPrompt {
    Text(String),
    Texts(Vec<String>),
    Tokens(Vec<u32>),
}

#[derive(Deserialize)]
struct CompletionRequest {
    #[serde(flatten)]
    sampling: Sampling,
    prompt: CompletionPrompt,
    echo: Option<bool>,
    suffix: Option<String>,
}

async fn completions(State(api): State<Arc<Api>>, body: Result<Bytes, BytesRejection>) -> Result<Response, ApiError> {
    let request: CompletionRequest = parse(body)?;
    let params = request.sampling.params(&api, DEFAULT_COMPLETION_MAX_TOKENS)?;
    if request.echo == Some(true) {
        return Err(invalid(Some("echo"), "echo is not supported".into()));
    }
    if request.suffix.is_some() {
        return Err(invalid(Some("suffix"), "suffix is not supported".into()));
    }
    let prompt = match request.prompt {
        CompletionPrompt::Text(text) => Prompt::Text(text),
        CompletionPrompt::Texts(mut texts) if texts.len() == 1 => Prompt::Text(texts.remove(0)),
        CompletionPrompt::Texts(texts) => {
            return Err(invalid(Some("prompt"), format!("one prompt per request, got {}", texts.len())));
        }
        CompletionPrompt::Tokens(ids) => Prompt::Tokens(ids),
    };
    let completer = api.completer()?;
    let id = api.id("cmpl");
    let created = created();
    let choice =
        |text: &str, finish: Option<&str>| json!({"text": text, "index": 0, "logprobs": null, "finish_reason": finish});
    if request.sampling.stream {
        let include_usage = request.sampling.include_usage();
        let (events, out) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let chunk = |choices: Value, usage: Option<Value>| {
                let mut body = json!({"id": id, "object": "text_completion", "created": created, "model": api.model, "choices": choices});
                if let Some(usage) = usage {
                    body["usage"] = usage;
                }
                sse(&body)
            };
            let streamed = stream_generation(completer.as_ref(), prompt, params, |delta| {
                events.send(chunk(json!([choice(delta, None)]), None)).is_ok()
            });
            let Some(result) = streamed.await else { return };
            match result {
                Ok(done) => {
                    let _ = events.send(chunk(json!([choice("", Some(finish_reason(done.finish_reason)))]), None));
                    if include_usage {
                        let _ = events.send(chunk(json!([]), Some(usage(&done))));
                    }
                }
                Err(CompleteError::Invalid(message) | CompleteError::Failed(message)) => {
                    let _ = events.send(sse(&json!({"error": {"message": message, "type": "server_error"}})));
                }
            }
            let _ = events.send(Bytes::from_static(b"data: [DONE]\n\n"));
        });
        return Ok(sse_response(out));
    }
    let (deltas, _ignored) = mpsc::unbounded_channel();
    let done = completer.generate(prompt, params, deltas).await.map_err(engine_error)?;
    Ok(axum::Json(json!({
        "id": id,
        "object": "text_completion",
        "created": created,
        "model": api.model,
        "system_fingerprint": completer.describe(),
        "choices": [choice(&done.text, Some(finish_reason(done.finish_reason)))],
        "usage": usage(&done),
    }))
    .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn completion(text: &str, tool_calls: Vec<ToolCall>) -> Completion {
        Completion {
            text: text.into(),
            finish_reason: FinishReason::Stop,
            prompt_tokens: 1,
            completion_tokens: 1,
            tokens: Vec::new(),
            top_logits: Vec::new(),
            tool_calls,
            timings: Default::default(),
        }
    }

    fn auto_params() -> GenerateParams {
        let tools = serde_json::from_value(json!([{"type": "function", "function": {"name": "add"}}])).unwrap();
        GenerateParams { tools, ..GenerateParams::default() }
    }

    #[test]
    fn prose_streams_once_it_cannot_be_a_call() {
        let mut h = Holdback::new(&auto_params());
        assert_eq!(h.push(" "), None);
        assert_eq!(h.push("<tool"), None);
        assert_eq!(h.push("s are"), Some(" <tools are".into()));
        assert_eq!(h.push(" fun"), Some(" fun".into()));
        assert_eq!(h.rest(&completion(" <tools are fun", vec![])), None);
    }

    #[test]
    fn a_call_is_never_streamed_as_text() {
        let mut h = Holdback::new(&auto_params());
        for piece in ["<tool_call>", "{\"name\": \"add\"", ", \"arguments\": {}}", "</tool_call>"] {
            assert_eq!(h.push(piece), None);
        }
        let call: ToolCall = serde_json::from_value(
            json!({"id": "call_1", "type": "function", "function": {"name": "add", "arguments": "{}"}}),
        )
        .unwrap();
        assert_eq!(h.rest(&completion("…", vec![call])), None);
        // A reply that looked like JSON but was no call is sent at the end.
        let mut h = Holdback::new(&auto_params());
        assert_eq!(h.push("{\"a\": 1}"), None);
        assert_eq!(h.rest(&completion("{\"a\": 1}", vec![])), Some("{\"a\": 1}".into()));
        // Without tools everything streams at once.
        let mut h = Holdback::new(&GenerateParams::default());
        assert_eq!(h.push("{"), Some("{".into()));
    }

    #[test]
    fn history_tool_calls_are_written_as_the_model_writes_them() {
        let messages: Vec<ApiMessage> = serde_json::from_value(json!([
            {"role": "developer", "content": [{"type": "text", "text": "Be brief."}]},
            {"role": "user", "content": "2+3?"},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "add", "arguments": "{\"a\":2,\"b\":3}"}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "5"},
        ]))
        .unwrap();
        let chat = chat_messages(&messages).map_err(|_| "refused").unwrap();
        assert_eq!(chat[0], ChatMessage::new("system", "Be brief."));
        assert_eq!(chat[2].content, "<tool_call>\n{\"name\":\"add\",\"arguments\":{\"a\":2,\"b\":3}}\n</tool_call>");
        assert_eq!(chat[3], ChatMessage::new("tool", "5"));
        let image: Vec<ApiMessage> =
            serde_json::from_value(json!([{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]))
                .unwrap();
        assert!(chat_messages(&image).is_err());
        let odd: Vec<ApiMessage> = serde_json::from_value(json!([{"role": "wizard", "content": "hi"}])).unwrap();
        assert!(chat_messages(&odd).is_err());
    }
}
