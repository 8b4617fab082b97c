//! What the hub and an agent say to each other over the bus (JSON, one message per frame).

use serde::{Deserialize, Serialize};

use hearth_api::agents::FaultKind;

use super::turn::Message;
use hearth_api::chat::ChatMessage;
use hearth_api::generate::SamplerConfig;
use hearth_api::generate::{FinishReason, GenerateParams, Prompt};
use hearth_api::tool_call::{ToolChoice, ToolMode};

/// Hub → agent.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ToAgent {
    /// Take a turn: answer `request`; `attempt` counts restarts of this turn (0 at first).
    Turn { step: u32, turn: u32, attempt: u32, request: String, seed: u64, seen: Vec<Message> },
    /// The answer to the agent's last [`ToHub::Llm`].
    LlmReply { text: String, prompt_tokens: usize, completion_tokens: usize, finish_reason: FinishReason },
    /// The answer to the agent's last [`ToHub::Tool`]: its output, or why it failed.
    ToolReply { ok: bool, output: String },
    /// The run is over: exit.
    Stop,
}

/// Agent → hub.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ToHub {
    /// Ask the LLM service for a completion of `prompt` under `system`.
    Llm(LlmRequest),
    /// Call a built-in tool (see [`super::tools`]).
    Tool {
        name: String,
        args: String,
    },
    /// A part of this turn's message.
    Send {
        content: String,
    },
    Log {
        text: String,
    },
    /// The turn is over.
    TurnDone,
    /// The agent failed; its worker is gone after this.
    Fault {
        kind: FaultKind,
        detail: String,
    },
}

/// One completion request; sampling is the agent's, the seed the turn's.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LlmRequest {
    pub system: String,
    pub prompt: String,
    pub max_tokens: usize,
    pub temperature: f32,
    pub top_k: usize,
    pub top_p: f32,
    pub seed: u64,
    /// Built-in tools the reply may call (see [`super::tools`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<String>,
    /// The reply must be a call of one of `tools`, decoded under their schema.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub force_tool: bool,
}

impl LlmRequest {
    /// The engine's chat prompt (the agent's system prompt, then the request) and parameters,
    /// the tools in OpenAI's shape with their argument schemas.
    pub fn generation(&self) -> (Prompt, GenerateParams) {
        let prompt =
            Prompt::Chat(vec![ChatMessage::new("system", &self.system), ChatMessage::new("user", &self.prompt)]);
        let sampler = SamplerConfig {
            temperature: self.temperature,
            top_k: self.top_k,
            top_p: self.top_p,
            seed: self.seed,
            ..SamplerConfig::default()
        };
        let tools = super::tools::definitions(&self.tools);
        let tool_choice = (!tools.is_empty()).then_some(ToolChoice::Mode(if self.force_tool {
            ToolMode::Required
        } else {
            ToolMode::Auto
        }));
        (
            prompt,
            GenerateParams { max_tokens: self.max_tokens, sampler, tools, tool_choice, ..GenerateParams::default() },
        )
    }
}
