//! What the app and the launcher see of agent workflows: the transcript a run writes, each
//! agent's live state, and the bus a run uses.

use serde::{Deserialize, Serialize};

use crate::generate::FinishReason;

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

/// Which bus carries the run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Transport {
    #[default]
    SharedMemory,
    MessagePassing,
}

/// Why an agent stopped working.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// A wasm trap (unreachable, out-of-bounds access, division by zero, ...).
    Trap,
    /// The agent's code panicked (a trap after the SDK's panic hook logged the message).
    Panic,
    /// It ran past its time budget: instructions (fuel) or wall-clock time.
    TimeBudget,
    /// It asked for more memory than its limit.
    Memory,
    /// Its module could not be loaded: invalid, or importing beyond the ABI.
    BadModule,
    /// It broke the protocol or its worker vanished.
    Crash,
}

/// What an agent is doing right now. Live only: the transcript does not carry it, since when an
/// agent starts thinking depends on timing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AgentState {
    /// No turn to take.
    Idle,
    /// Taking a turn (running its own code, or a tool).
    Thinking,
    /// Waiting for the LLM to answer.
    Waiting,
    /// Its worker faulted; its policy decides what follows.
    Faulted,
    /// Its worker was started again after a fault.
    Restarted,
    /// Its policy gave up on it: its turns are skipped.
    GaveUp,
}
