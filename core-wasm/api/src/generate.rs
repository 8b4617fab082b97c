//! What a generation is asked and what it gives back: prompts, parameters (sampling, stops,
//! output shape, tools), the backend, and the completion with its finish reason and timings.

use serde::{Deserialize, Serialize};

use crate::chat::ChatMessage;
use crate::tool_call::{Tool, ToolCall, ToolChoice};

/// Which processor runs the model.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Backend {
    Cpu,
    Gpu,
}

/// The backend a caller asks for: `Auto` takes the GPU when there is one and the model loads
/// onto it, else the CPU.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BackendChoice {
    #[default]
    Auto,
    Cpu,
    Gpu,
}

impl std::str::FromStr for BackendChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(Self::Auto),
            "cpu" => Ok(Self::Cpu),
            "gpu" => Ok(Self::Gpu),
            other => Err(format!("backend {other:?} is not one of auto, cpu, gpu")),
        }
    }
}

/// What to complete: raw text (the completions API) or a conversation rendered with the model's
/// chat template (the chat-completions API).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Prompt {
    Text(String),
    Chat(Vec<ChatMessage>),
    /// Token ids, used as they are (the completions API accepts these too).
    Tokens(Vec<u32>),
}

/// Settings of one generation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct GenerateParams {
    /// Most tokens to generate; generation also ends at the context's end.
    pub max_tokens: usize,
    pub sampler: SamplerConfig,
    /// Text that ends the generation; it is not part of the completion.
    pub stop: Vec<String>,
    /// Token ids that end the generation, besides the model's end-of-generation tokens.
    pub stop_tokens: Vec<u32>,
    /// Keep generating past the model's end-of-generation tokens (for benchmarks and goldens).
    pub ignore_eos: bool,
    /// Report this many most likely tokens and their logits at each step (0: none).
    pub top_logits: usize,
    /// Free text, any JSON object, or JSON that a schema accepts (constrained decoding).
    pub response_format: ResponseFormat,
    /// Functions the model may call (OpenAI's `tools`); see [`crate::tool_call`].
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<Tool>,
    /// `none`, `auto` (the default with tools), `required`, or one named function.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<ToolChoice>,
    /// Read special-token text in a plain-text prompt (`<|im_start|>`) as characters, not as
    /// the special tokens llama.cpp and vLLM read it as.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub no_special: bool,
}

/// The shape the output must have, in OpenAI's terms.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ResponseFormat {
    #[default]
    Text,
    JsonObject,
    JsonSchema {
        json_schema: JsonSchemaFormat,
    },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JsonSchemaFormat {
    #[serde(default)]
    pub name: String,
    pub schema: serde_json::Value,
}

impl Default for GenerateParams {
    fn default() -> Self {
        Self {
            max_tokens: 256,
            sampler: SamplerConfig::default(),
            stop: Vec::new(),
            stop_tokens: Vec::new(),
            ignore_eos: false,
            top_logits: 0,
            response_format: ResponseFormat::Text,
            tools: Vec::new(),
            tool_choice: None,
            no_special: false,
        }
    }
}

/// Why generation ended, named as in OpenAI's `finish_reason`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// A stop string, a stop token or the model's end-of-generation token.
    Stop,
    /// `max_tokens` or the end of the context.
    Length,
    /// The caller's callback asked to stop.
    Cancelled,
    /// The reply is a call of one of the request's tools (see `Completion::tool_calls`).
    ToolCalls,
}

/// Milliseconds spent, measured with the clock the engine was given.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Timings {
    /// Prompt tokens run through the model (those not reused from the KV cache).
    pub prefill_tokens: usize,
    pub prefill_ms: f64,
    pub decode_ms: f64,
}

/// The result of one generation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Completion {
    pub text: String,
    pub finish_reason: FinishReason,
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
    /// The generated token ids, the stop token included if there was one.
    pub tokens: Vec<u32>,
    /// With `top_logits: n`, the n most likely (token, logit) pairs at each step, most likely
    /// first, before penalties.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub top_logits: Vec<Vec<(u32, f32)>>,
    /// The tool calls in the reply (`text` is the reply as the model wrote it).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
    pub timings: Timings,
}

/// Sampling settings, with OpenAI-style defaults that switch each stage off.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SamplerConfig {
    /// 0 picks the most likely token.
    pub temperature: f32,
    /// Keep the k most likely tokens; 0 keeps all.
    pub top_k: usize,
    /// Keep the smallest set whose probability reaches p; 1 keeps all.
    pub top_p: f32,
    /// Drop tokens less likely than `min_p` times the most likely; 0 keeps all.
    pub min_p: f32,
    /// Divide positive logits (multiply negative ones) of recent tokens; 1 is off.
    pub repeat_penalty: f32,
    /// Subtract from the logits of tokens that appeared recently; 0 is off.
    pub presence_penalty: f32,
    /// Subtract, per occurrence, from the logits of recent tokens; 0 is off.
    pub frequency_penalty: f32,
    /// How many recent tokens the penalties look at.
    pub penalty_last_n: usize,
    pub seed: u64,
}

impl SamplerConfig {
    /// Whether the next token is simply the most likely one (no temperature, no penalties):
    /// then only the argmax of the logits is needed, which a GPU can compute itself.
    pub fn is_greedy(&self) -> bool {
        self.temperature <= 0.0
            && self.repeat_penalty == 1.0
            && self.presence_penalty == 0.0
            && self.frequency_penalty == 0.0
    }
}

impl Default for SamplerConfig {
    fn default() -> Self {
        Self {
            temperature: 0.0,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            repeat_penalty: 1.0,
            presence_penalty: 0.0,
            frequency_penalty: 0.0,
            penalty_last_n: 64,
            seed: 0,
        }
    }
}
