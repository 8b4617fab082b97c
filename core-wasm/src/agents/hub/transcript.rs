//! A run's transcript: one JSON line per event, the same however the workers were timed.

use serde::{Deserialize, Serialize};

use super::Transport;
use crate::agents::hub_messages::FaultKind;
use crate::engine::FinishReason;

/// One line of a run's transcript (JSON lines; `event` names the kind).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum TranscriptEvent {
    Started {
        workflow: String,
        seed: u64,
        agents: Vec<String>,
        backend: String,
        transport: Transport,
    },
    LlmCall {
        step: u32,
        agent: String,
        turn: u32,
        prompt_tokens: usize,
        completion_tokens: usize,
        finish_reason: FinishReason,
    },
    ToolCall {
        step: u32,
        agent: String,
        turn: u32,
        tool: String,
        args: String,
        ok: bool,
        output: String,
    },
    Log {
        step: u32,
        agent: String,
        text: String,
    },
    Message {
        step: u32,
        from: String,
        seq: u32,
        turn: u32,
        content: String,
    },
    Fault {
        step: u32,
        agent: String,
        turn: u32,
        attempt: u32,
        kind: FaultKind,
        detail: String,
    },
    Restart {
        step: u32,
        agent: String,
        attempt: u32,
        backoff_ms: u64,
    },
    GaveUp {
        step: u32,
        agent: String,
    },
    Skipped {
        step: u32,
        agent: String,
        turn: u32,
    },
    Escalated {
        step: u32,
        agent: String,
    },
    Finished {
        steps: u32,
        messages: usize,
        completion_tokens: usize,
        faults: usize,
        restarts: usize,
    },
}
