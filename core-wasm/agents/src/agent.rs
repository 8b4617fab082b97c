//! An agent's side of the bus. Two kinds: the built-in LLM agent and a custom agent module
//! (see [`super::module`]). Each is a state machine ([`Agent`]) that never blocks; [`run_agent`]
//! is the loop a worker runs to drive one on a bus it may block on.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use hearth_api::agents::FaultKind;

use super::hub_messages::{LlmRequest, ToAgent, ToHub};
use super::module::{ModuleAgent, TurnState};
use super::tools::{self, AgentToolCall};
use crate::bus::AgentPort;
use hearth_api::workflow::ModuleLimits;

/// What an agent runs. In JSON (for a worker with a runtime of its own) a module's bytes are
/// left out: they travel beside it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum AgentProgram {
    /// Each turn is an LLM call with the agent's system prompt, sampling and tools (`llm`); a
    /// tool call in the reply is made and the LLM asked again with its result. With
    /// `llm.force_tool`, the turn's first reply is a call, decoded under the tools' schema.
    Llm { llm: LlmRequest },
    /// A wasm module; `llm` holds the defaults of its `ask_llm` calls.
    Module {
        #[serde(skip)]
        wasm: Arc<[u8]>,
        limits: ModuleLimits,
        config: String,
        llm: LlmRequest,
    },
}

/// Random delays (up to `max_ms` before each message) injected into an agent, for tests that
/// show timing cannot change a transcript.
#[derive(Clone, Copy, Debug, Default)]
pub struct Jitter {
    pub max_ms: u64,
}

impl Jitter {
    fn pause(&self) {
        if self.max_ms == 0 {
            return;
        }
        // Seeded from the clock on purpose: these delays must differ run to run.
        let nanos = web_time::SystemTime::now().duration_since(web_time::UNIX_EPOCH).unwrap_or_default();
        let r = super::turn::turn_seed(nanos.as_nanos() as u64, 0, 0);
        std::thread::sleep(Duration::from_micros(r % (self.max_ms * 1000 + 1)));
    }
}

fn send(port: &dyn AgentPort, msg: &ToHub, jitter: Jitter) -> bool {
    jitter.pause();
    serde_json::to_vec(msg).is_ok_and(|bytes| port.send(&bytes, None).is_ok())
}

fn recv(port: &dyn AgentPort) -> Option<ToAgent> {
    serde_json::from_slice(&port.recv(None).ok()?).ok()
}

/// Runs `program` on `port` until the hub says stop or the bus closes: the agent's worker on
/// a bus it may block on (threads natively; Web Workers over shared memory).
pub fn run_agent(program: &AgentProgram, port: Box<dyn AgentPort>, jitter: Jitter) {
    let mut agent = match Agent::new(program) {
        Ok(agent) => agent,
        Err(fault) => {
            send(port.as_ref(), &fault, Jitter::default());
            return;
        }
    };
    while let Some(msg) = recv(port.as_ref()) {
        let reaction = agent.handle(msg);
        for msg in &reaction.send {
            // A fault goes out at once: the delays are for messages of working agents.
            let jitter = if matches!(msg, ToHub::Fault { .. }) { Jitter::default() } else { jitter };
            if !send(port.as_ref(), msg, jitter) {
                return;
            }
        }
        if reaction.ended {
            return;
        }
    }
}

/// What an agent does with one message from the hub.
#[derive(Debug, Default, PartialEq)]
pub struct Reaction {
    /// Messages for the hub, in order.
    pub send: Vec<ToHub>,
    /// The agent has ended (the hub said stop, or it faulted); its worker may go.
    pub ended: bool,
}

impl Reaction {
    fn send(send: Vec<ToHub>) -> Self {
        Self { send, ended: false }
    }

    fn end(send: Vec<ToHub>) -> Self {
        Self { send, ended: true }
    }
}

/// An agent as a state machine: handed each message from the hub, it says what to send back.
/// It never blocks, so the same agent runs wherever its messages come from: a loop blocking
/// on the bus ([`run_agent`]), or the message events of a Web Worker that may not block.
pub enum Agent {
    Llm(LlmAgent),
    Module { agent: Box<ModuleAgent>, config: String },
}

impl Agent {
    /// The agent `program` describes. A module that cannot be instantiated (its start function
    /// traps, say) is that agent's fault: the fault to report comes back instead. (The hub
    /// checked the module before the run.)
    pub fn new(program: &AgentProgram) -> Result<Self, ToHub> {
        match program {
            AgentProgram::Llm { llm } => Ok(Agent::Llm(LlmAgent { llm: llm.clone(), turn: None })),
            AgentProgram::Module { wasm, limits, config, llm } => match ModuleAgent::new(wasm, *limits, llm.clone()) {
                Ok(agent) => Ok(Agent::Module { agent: Box::new(agent), config: config.clone() }),
                Err(e) => Err(ToHub::Fault { kind: FaultKind::Crash, detail: format!("its module {e}") }),
            },
        }
    }

    /// Handles one message from the hub. Anything but what the agent expects (a turn when
    /// idle, the answer to its call when waiting) ends it, as the hub's `Stop` does.
    pub fn handle(&mut self, msg: ToAgent) -> Reaction {
        match self {
            Agent::Llm(agent) => agent.handle(msg),
            Agent::Module { agent, config } => {
                let state = match msg {
                    ToAgent::Turn { step, turn, attempt, request, seed, seen } => {
                        let input = serde_json::json!({
                            "step": step, "turn": turn, "attempt": attempt, "request": request, "config": config,
                            "seen": seen.iter().map(|m| serde_json::json!({ "from": m.from, "content": m.content })).collect::<Vec<_>>(),
                        })
                        .to_string();
                        agent.turn(step, seed, &input)
                    }
                    answer @ (ToAgent::LlmReply { .. } | ToAgent::ToolReply { .. }) => agent.resume(answer),
                    ToAgent::Stop => return Reaction::end(Vec::new()),
                };
                let mut send = agent.take_outbox();
                match state {
                    Ok(TurnState::Waiting) => Reaction::send(send),
                    Ok(TurnState::Done) => {
                        send.push(ToHub::TurnDone);
                        Reaction::send(send)
                    }
                    Err(fault) => {
                        send.push(ToHub::Fault { kind: fault.kind, detail: fault.detail });
                        Reaction::end(send)
                    }
                }
            }
        }
    }
}

/// Tool calls one turn of an LLM agent may make before it must answer.
pub const MAX_TOOL_CALLS: u32 = 3;

/// Tokens a forced tool call may take (the tools' schemas bound their arguments well below).
pub const FORCED_CALL_TOKENS: usize = 160;

/// The built-in LLM agent: each turn is an LLM call; a tool call in the reply is made and the
/// LLM asked again with its result, up to [`MAX_TOOL_CALLS`] times.
pub struct LlmAgent {
    llm: LlmRequest,
    turn: Option<LlmTurn>,
}

/// A turn in progress: the prompt so far, the turn's seed, which call this is, and the tool
/// call waiting for its output.
struct LlmTurn {
    prompt: String,
    seed: u64,
    call: u32,
    tool: Option<AgentToolCall>,
}

impl LlmAgent {
    fn handle(&mut self, msg: ToAgent) -> Reaction {
        match (self.turn.take(), msg) {
            (None, ToAgent::Turn { request, seed, .. }) => {
                self.ask(LlmTurn { prompt: request, seed, call: 0, tool: None })
            }
            (Some(turn @ LlmTurn { tool: None, .. }), ToAgent::LlmReply { text, .. }) => {
                let tool_call =
                    (turn.call < MAX_TOOL_CALLS).then(|| tools::parse_tool_call(&text, &self.llm.tools)).flatten();
                match tool_call {
                    Some(call) => {
                        let msg = ToHub::Tool { name: call.name.clone(), args: call.args.clone() };
                        self.turn = Some(LlmTurn { tool: Some(call), ..turn });
                        Reaction::send(vec![msg])
                    }
                    None => Reaction::send(vec![ToHub::Send { content: text.trim().to_string() }, ToHub::TurnDone]),
                }
            }
            (
                Some(LlmTurn { prompt, seed, call, tool: Some(AgentToolCall { name, args }) }),
                ToAgent::ToolReply { ok, output },
            ) => {
                let outcome = if ok { format!("Result: {output}") } else { format!("Error: {output}") };
                let prompt = format!("{prompt}\n\nYou called {name}({args}). {outcome}\nNow give your answer.");
                self.ask(LlmTurn { prompt, seed, call: call + 1, tool: None })
            }
            _ => Reaction::end(Vec::new()),
        }
    }

    /// Asks the LLM for call `turn.call` of the turn.
    fn ask(&mut self, turn: LlmTurn) -> Reaction {
        let llm = &self.llm;
        // The first call samples with the turn's seed; each after a tool call, its own.
        let seed = if turn.call == 0 { turn.seed } else { super::turn::turn_seed(turn.seed, 0, turn.call) };
        // Only the first call may be forced; the last must answer, so it gets no tools.
        let tools = if turn.call < MAX_TOOL_CALLS { llm.tools.clone() } else { Vec::new() };
        let force_tool = turn.call == 0 && llm.force_tool;
        // A forced call gets room to finish its JSON, whatever the agent's answer length.
        let max_tokens = if force_tool { llm.max_tokens.max(FORCED_CALL_TOKENS) } else { llm.max_tokens };
        let ask = LlmRequest { prompt: turn.prompt.clone(), seed, tools, force_tool, max_tokens, ..llm.clone() };
        self.turn = Some(turn);
        Reaction::send(vec![ToHub::Llm(ask)])
    }
}
