//! An agent's side of the bus: the loop its worker runs. Two kinds: the built-in LLM agent and
//! a custom agent module (see [`super::module`]).

use std::sync::Arc;
use std::time::Duration;

use super::module::{ModuleAgent, ModuleLimits};
use super::protocol::{FaultKind, LlmRequest, ToAgent, ToHub};
use super::tools::{self, ToolCall};
use crate::bus::AgentPort;

/// What an agent runs.
#[derive(Clone, Debug)]
pub enum AgentProgram {
    /// Each turn is an LLM call with the agent's system prompt, sampling and tools (`llm`); a
    /// tool call in the reply is made and the LLM asked again with its result. With
    /// `llm.force_tool`, the turn's first reply is a call, decoded under the tools' schema.
    Llm { llm: LlmRequest },
    /// A wasm module; `llm` holds the defaults of its `ask_llm` calls.
    Module { wasm: Arc<[u8]>, limits: ModuleLimits, config: String, llm: LlmRequest },
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
        let r = super::scheduler::turn_seed(nanos.as_nanos() as u64, 0, 0);
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

/// Runs `program` on `port` until the hub says stop or the bus closes.
pub fn run_agent(program: &AgentProgram, port: Box<dyn AgentPort>, jitter: Jitter) {
    match program {
        AgentProgram::Llm { llm } => run_llm_agent(llm, port.as_ref(), jitter),
        AgentProgram::Module { wasm, limits, config, llm } => {
            // The hub checked the module before the run; instantiating it can still fail (its
            // start function traps, say): that is the agent's fault, reported as one.
            let mut agent = match ModuleAgent::new(wasm, *limits, llm.clone(), port) {
                Ok(agent) => agent,
                Err((e, port)) => {
                    let fault = ToHub::Fault { kind: FaultKind::Crash, detail: format!("its module {e}") };
                    send(port.as_ref(), &fault, Jitter::default());
                    return;
                }
            };
            while let Some(ToAgent::Turn { step, turn, attempt, request, seed, seen }) = recv(agent.port()) {
                let input = serde_json::json!({
                    "step": step, "turn": turn, "attempt": attempt, "request": request, "config": config,
                    "seen": seen.iter().map(|m| serde_json::json!({ "from": m.from, "content": m.content })).collect::<Vec<_>>(),
                })
                .to_string();
                jitter.pause();
                match agent.turn(step, seed, &input) {
                    Ok(()) => {
                        if !send(agent.port(), &ToHub::TurnDone, jitter) {
                            return;
                        }
                    }
                    Err(fault) => {
                        send(agent.port(), &ToHub::Fault { kind: fault.kind, detail: fault.detail }, Jitter::default());
                        return;
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

fn run_llm_agent(llm: &LlmRequest, port: &dyn AgentPort, jitter: Jitter) {
    while let Some(ToAgent::Turn { request, seed, .. }) = recv(port) {
        let mut prompt = request;
        for call in 0..=MAX_TOOL_CALLS {
            // The first call samples with the turn's seed; each after a tool call, its own.
            let seed = if call == 0 { seed } else { super::scheduler::turn_seed(seed, 0, call) };
            // Only the first call may be forced; the last must answer, so it gets no tools.
            let tools = if call < MAX_TOOL_CALLS { llm.tools.clone() } else { Vec::new() };
            let force_tool = call == 0 && llm.force_tool;
            // A forced call gets room to finish its JSON, whatever the agent's answer length.
            let max_tokens = if force_tool { llm.max_tokens.max(FORCED_CALL_TOKENS) } else { llm.max_tokens };
            let ask = LlmRequest { prompt: prompt.clone(), seed, tools, force_tool, max_tokens, ..llm.clone() };
            if !send(port, &ToHub::Llm(ask), jitter) {
                return;
            }
            let Some(ToAgent::LlmReply { text, .. }) = recv(port) else { return };
            let tool_call = (call < MAX_TOOL_CALLS).then(|| tools::parse_tool_call(&text, &llm.tools)).flatten();
            let Some(ToolCall { name, args }) = tool_call else {
                if !send(port, &ToHub::Send { content: text.trim().to_string() }, jitter) {
                    return;
                }
                break;
            };
            if !send(port, &ToHub::Tool { name: name.clone(), args: args.clone() }, jitter) {
                return;
            }
            let Some(ToAgent::ToolReply { ok, output }) = recv(port) else { return };
            let outcome = if ok { format!("Result: {output}") } else { format!("Error: {output}") };
            prompt = format!("{prompt}\n\nYou called {name}({args}). {outcome}\nNow give your answer.");
        }
        if !send(port, &ToHub::TurnDone, jitter) {
            return;
        }
    }
}
