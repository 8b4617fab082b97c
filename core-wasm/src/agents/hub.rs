//! The hub: runs a workflow with every agent on its own worker (a thread natively, a Web
//! Worker in the browser), all talking to the hub over the bus.
//!
//! Per logical step the hub hands each agent its turns, serves their LLM and tool calls, and
//! supervises them. LLM calls are served in batches when every busy agent is waiting on the LLM,
//! in agent order, so a batch's make-up follows from the schedule and never from timing. What
//! happened in a step is written to the transcript when the step ends, agent by agent, so the
//! transcript is the same however the workers were timed.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use thiserror::Error;
use web_time::Instant;

use super::agent::{AgentProgram, Jitter};
use super::host::{AgentState, AgentWorker, Host, HostFuture, Threads};
use super::hub_messages::{FaultKind, LlmRequest, ToAgent, ToHub};
use super::module::{ModuleAgent, ModuleError};
use super::scheduler::{Scheduler, Turn};
use super::tools::{self, Scratchpad};
use super::workflow::{AgentSpec, OnFault, Workflow};
use crate::bus::{BusError, ChannelBus, HubPort, SharedBus, SharedBusConfig};
use crate::engine::{Engine, FinishReason};

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

/// The engine behind the agents' LLM calls.
pub trait LlmService {
    fn backend(&self) -> String;
    /// Completes a batch of requests (in batch order).
    fn complete<'a>(&'a mut self, batch: &'a [LlmRequest]) -> HostFuture<'a, Vec<Result<LlmReply, String>>>;
}

/// The engine itself serves agents: each request is a chat of the agent's system prompt and the
/// turn's request; a batch decodes together (see [`Engine::generate_batch`]).
impl LlmService for Engine {
    fn backend(&self) -> String {
        format!("{:?}", Engine::backend(self)).to_lowercase()
    }

    fn complete<'a>(&'a mut self, batch: &'a [LlmRequest]) -> HostFuture<'a, Vec<Result<LlmReply, String>>> {
        Box::pin(async move {
            let requests: Vec<_> = batch.iter().map(LlmRequest::generation).collect();
            match self.generate_batch(&requests).await {
                Err(e) => batch.iter().map(|_| Err(e.to_string())).collect(),
                Ok(done) => done
                    .into_iter()
                    .map(|r| {
                        r.map(|done| LlmReply {
                            text: done.text,
                            prompt_tokens: done.prompt_tokens,
                            completion_tokens: done.completion_tokens,
                            finish_reason: done.finish_reason,
                        })
                        .map_err(|e| e.to_string())
                    })
                    .collect(),
            }
        })
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct LlmReply {
    pub text: String,
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
    pub finish_reason: FinishReason,
}

/// Which bus carries the run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Transport {
    #[default]
    SharedMemory,
    MessagePassing,
}

#[derive(Clone, Copy, Debug, Default)]
pub struct RunOptions {
    pub transport: Transport,
    pub jitter: Jitter,
}

#[derive(Debug, Error)]
pub enum RunError {
    #[error("agent {agent}: cannot read its module {path}: {source}")]
    ReadModule { agent: String, path: String, source: std::io::Error },
    #[error("agent {agent}: its module {path} {source}")]
    Module { agent: String, path: String, source: ModuleError },
    #[error("agent {agent} faulted ({kind:?}: {detail}) and its policy escalates: the workflow stops")]
    Escalated { agent: String, kind: FaultKind, detail: String },
    #[error("the LLM failed: {0}")]
    Llm(String),
    #[error("the bus failed: {0}")]
    Bus(#[from] BusError),
    #[error("{programs} programs for {agents} agents: give one per agent (see `programs`)")]
    Programs { programs: usize, agents: usize },
    #[error("cannot encode a message for the bus: {0}")]
    Encode(String),
    #[error("agent {agent}: its worker did not start: {reason}")]
    Spawn { agent: String, reason: String },
    #[error("stopped before step {step}")]
    Stopped { step: u32 },
}

/// Loads the programs of `workflow`'s agents; module paths are relative to `base_dir`.
pub fn programs(workflow: &Workflow, base_dir: &Path) -> Result<Vec<AgentProgram>, RunError> {
    programs_with(workflow, &|path| std::fs::read(base_dir.join(path)))
}

/// [`programs`], each module's bytes given by `read_module` from the path the workflow names.
pub fn programs_with(
    workflow: &Workflow,
    read_module: &dyn Fn(&str) -> std::io::Result<Vec<u8>>,
) -> Result<Vec<AgentProgram>, RunError> {
    workflow
        .agents
        .iter()
        .map(|spec| {
            let llm = llm_defaults(spec);
            let Some(path) = &spec.module else {
                let llm = LlmRequest { tools: spec.tools.clone(), force_tool: spec.tool_choice_required, ..llm };
                return Ok(AgentProgram::Llm { llm });
            };
            let wasm = read_module(path).map_err(|source| RunError::ReadModule {
                agent: spec.name.clone(),
                path: path.clone(),
                source,
            })?;
            ModuleAgent::check(&wasm).map_err(|source| RunError::Module {
                agent: spec.name.clone(),
                path: path.clone(),
                source,
            })?;
            Ok(AgentProgram::Module { wasm: wasm.into(), limits: spec.limits, config: spec.config.clone(), llm })
        })
        .collect()
}

fn llm_defaults(spec: &AgentSpec) -> LlmRequest {
    let mut system = spec.system.clone();
    if !spec.role.is_empty() {
        system = format!("You are {}, the {}. {system}", spec.name, spec.role);
    }
    LlmRequest {
        system,
        max_tokens: spec.max_tokens,
        temperature: spec.temperature,
        top_k: spec.top_k,
        top_p: spec.top_p,
        ..LlmRequest::default()
    }
}

/// What the run did, beyond its transcript.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RunSummary {
    pub steps: u32,
    pub messages: usize,
    pub completion_tokens: usize,
    pub faults: usize,
    pub restarts: usize,
}

struct Working {
    turn: Turn,
    attempt: u32,
    parts: Vec<String>,
    waiting_llm: bool,
    deadline: Instant,
}

struct Slot {
    program: Arc<AgentProgram>,
    worker: Option<Box<dyn AgentWorker>>,
    working: Option<Working>,
    queue: VecDeque<Turn>,
    restarts: u32,
    gave_up: bool,
    /// Workers cut off while still running (stuck ones, left to end by themselves).
    cut_off: Vec<Box<dyn AgentWorker>>,
    /// This step's events, written out when the step ends.
    events: Vec<TranscriptEvent>,
}

struct Hub<'a, L: LlmService + ?Sized> {
    workflow: &'a Workflow,
    host: &'a dyn Host,
    bus: Box<dyn HubPort>,
    slots: Vec<Slot>,
    llm: &'a mut L,
    options: RunOptions,
    scratchpad: Scratchpad,
    step: u32,
    summary: RunSummary,
    /// Replies of this step's turns, by (agent, turn number).
    replies: Vec<((usize, u32), String)>,
    llm_queue: Vec<(usize, LlmRequest)>,
}

/// How often the hub looks for workers that died without a word.
const LIVENESS: Duration = Duration::from_millis(100);

/// How long past an agent's time budget the hub faults it itself: a module agent reads the
/// clock between slices of its instructions and reports first, and its worker then ends.
const BUDGET_BACKSTOP: Duration = Duration::from_millis(1000);

/// Runs `workflow` with `programs` (see [`programs`]) on threads, passing each event to
/// `on_event`.
pub fn run(
    workflow: &Workflow,
    programs: Vec<AgentProgram>,
    llm: &mut (impl LlmService + ?Sized),
    options: RunOptions,
    on_event: impl FnMut(&TranscriptEvent),
) -> Result<RunSummary, RunError> {
    pollster::block_on(run_on(&Threads, workflow, programs, llm, options, on_event))
}

/// Runs `workflow` with `programs`, each agent on a worker of `host`, passing each event to
/// `on_event`.
pub async fn run_on(
    host: &dyn Host,
    workflow: &Workflow,
    programs: Vec<AgentProgram>,
    llm: &mut (impl LlmService + ?Sized),
    options: RunOptions,
    mut on_event: impl FnMut(&TranscriptEvent),
) -> Result<RunSummary, RunError> {
    let n = workflow.agents.len();
    if programs.len() != n {
        return Err(RunError::Programs { programs: programs.len(), agents: n });
    }
    let (bus, ports): super::host::Bus = match host.bus(n) {
        Some(bus) => bus,
        None if options.transport == Transport::SharedMemory => {
            let (bus, ports) = SharedBus::new(n, SharedBusConfig::default());
            (Box::new(bus), ports)
        }
        None => {
            let (bus, ports) = ChannelBus::new(n);
            (Box::new(bus), ports)
        }
    };
    on_event(&TranscriptEvent::Started {
        workflow: workflow.name.clone(),
        seed: workflow.seed,
        agents: workflow.agents.iter().map(|a| a.name.clone()).collect(),
        backend: llm.backend(),
        transport: options.transport,
    });
    let mut slots = Vec::with_capacity(n);
    for (agent, (program, port)) in programs.into_iter().zip(ports).enumerate() {
        let program = Arc::new(program);
        let worker = match host.spawn_agent(agent, program.clone(), port, options.jitter) {
            Ok(worker) => worker,
            Err(reason) => return Err(RunError::Spawn { agent: workflow.agents[agent].name.clone(), reason }),
        };
        host.agent_state(agent, AgentState::Idle);
        slots.push(Slot {
            program,
            worker: Some(worker),
            working: None,
            queue: VecDeque::new(),
            restarts: 0,
            gave_up: false,
            cut_off: vec![],
            events: vec![],
        });
    }
    let mut hub = Hub {
        workflow,
        host,
        bus,
        slots,
        llm,
        options,
        scratchpad: Scratchpad::default(),
        step: 0,
        summary: RunSummary::default(),
        replies: Vec::new(),
        llm_queue: Vec::new(),
    };
    let result = hub.run(&mut on_event).await;
    hub.stop().await;
    let summary = result?;
    on_event(&TranscriptEvent::Finished {
        steps: summary.steps,
        messages: summary.messages,
        completion_tokens: summary.completion_tokens,
        faults: summary.faults,
        restarts: summary.restarts,
    });
    Ok(summary)
}

impl<L: LlmService + ?Sized> Hub<'_, L> {
    async fn run(&mut self, on_event: &mut impl FnMut(&TranscriptEvent)) -> Result<RunSummary, RunError> {
        let mut scheduler = Scheduler::new(self.workflow);
        while let Some(turns) = scheduler.next_step() {
            if !self.host.before_step(self.step).await {
                return Err(RunError::Stopped { step: self.step });
            }
            for t in &turns {
                self.slots[t.agent].queue.push_back(t.clone());
            }
            let outcome = self.run_step().await;
            // The step's events, agent by agent, whatever the step's outcome.
            for slot in &mut self.slots {
                slot.events.drain(..).for_each(|e| on_event(&e));
            }
            outcome?;
            let replies = turns
                .iter()
                .map(|t| {
                    let key = (t.agent, t.turn);
                    self.replies.iter().position(|(k, _)| *k == key).map(|i| self.replies.swap_remove(i).1)
                })
                .collect::<Vec<_>>();
            self.summary.messages += replies.iter().flatten().count();
            scheduler.commit(&turns, replies);
            self.scratchpad.end_step();
            self.step += 1;
        }
        self.summary.steps = self.step;
        Ok(self.summary.clone())
    }

    fn name(&self, agent: usize) -> String {
        self.workflow.agents[agent].name.clone()
    }

    fn send(&mut self, agent: usize, msg: &ToAgent) -> Result<(), RunError> {
        let bytes = serde_json::to_vec(msg).map_err(|e| RunError::Encode(e.to_string()))?;
        match self.bus.send(agent, &bytes, Some(Duration::from_secs(30))) {
            Ok(()) => Ok(()),
            // The agent is gone: its worker's exit is noticed and handled as a fault.
            Err(BusError::Closed { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Starts `agent`'s next queued turn, if it is free and has one.
    fn next_turn(&mut self, agent: usize) -> Result<(), RunError> {
        let (step, name) = (self.step, self.name(agent));
        let slot = &mut self.slots[agent];
        if slot.working.is_some() {
            return Ok(());
        }
        let Some(turn) = slot.queue.pop_front() else { return Ok(()) };
        if slot.gave_up {
            slot.events.push(TranscriptEvent::Skipped { step, agent: name, turn: turn.turn });
            return self.next_turn(agent);
        }
        self.start(agent, turn, 0)
    }

    fn start(&mut self, agent: usize, turn: Turn, attempt: u32) -> Result<(), RunError> {
        let budget = Duration::from_millis(self.workflow.agents[agent].time_budget_ms);
        let msg = ToAgent::Turn {
            step: self.step,
            turn: turn.turn,
            attempt,
            request: turn.request.clone(),
            seed: turn.seed,
            seen: turn.seen.clone(),
        };
        self.slots[agent].working =
            Some(Working { turn, attempt, parts: vec![], waiting_llm: false, deadline: Instant::now() + budget });
        self.host.agent_state(agent, AgentState::Thinking);
        self.send(agent, &msg)
    }

    fn busy(&self) -> bool {
        self.slots.iter().any(|s| s.working.is_some())
    }

    async fn run_step(&mut self) -> Result<(), RunError> {
        for agent in 0..self.slots.len() {
            self.next_turn(agent)?;
        }
        let mut last_check = Instant::now();
        while self.busy() {
            // Budgets and vanished workers are checked even while other agents keep the bus busy.
            if last_check.elapsed() >= LIVENESS {
                self.check_workers()?;
                last_check = Instant::now();
            }
            let all_waiting = self.slots.iter().filter_map(|s| s.working.as_ref()).all(|w| w.waiting_llm);
            if all_waiting && !self.llm_queue.is_empty() {
                self.serve_llm().await?;
                continue;
            }
            let now = Instant::now();
            let next_deadline = self
                .slots
                .iter()
                .filter_map(|s| s.working.as_ref())
                .filter(|w| !w.waiting_llm)
                .map(|w| w.deadline.saturating_duration_since(now))
                .min()
                .unwrap_or(LIVENESS);
            match self.bus.recv(Some(next_deadline.min(LIVENESS))) {
                Ok((agent, bytes)) => self.receive(agent, &bytes)?,
                Err(BusError::Timeout(_)) | Err(BusError::Closed { .. }) => {
                    self.host.idle().await;
                    self.check_workers()?
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    fn receive(&mut self, agent: usize, bytes: &[u8]) -> Result<(), RunError> {
        self.host.bus_message(bytes.len());
        match serde_json::from_slice::<ToHub>(bytes) {
            Ok(msg) => self.handle(agent, msg),
            Err(e) => self.fault(agent, FaultKind::Crash, format!("sent a message the hub cannot read: {e}")),
        }
    }

    /// Faults agents past their wall-clock budget (a module agent checks its own first and
    /// stops; this is the backstop) and agents whose worker exited mid-turn.
    fn check_workers(&mut self) -> Result<(), RunError> {
        // A worker that reports its own fault exits right after: what it sent before it exited
        // must be read before its exit is taken for a crash. So which workers have exited is
        // noted first (with how many restarts each agent had, which tells its workers apart),
        // then the bus drained; a worker that exits after the note is seen next time.
        let finished: Vec<Option<u32>> = (self.slots.iter())
            .map(|s| s.worker.as_ref().is_none_or(|w| w.is_finished()).then_some(s.restarts))
            .collect();
        if self.slots.iter().zip(&finished).any(|(s, done)| done.is_some() && s.working.is_some()) {
            loop {
                match self.bus.recv(Some(Duration::ZERO)) {
                    Ok((agent, bytes)) => self.receive(agent, &bytes)?,
                    Err(BusError::Timeout(_)) | Err(BusError::Closed { .. }) => break,
                    Err(e) => return Err(e.into()),
                }
            }
        }
        let now = Instant::now();
        for (agent, &done) in finished.iter().enumerate() {
            let slot = &self.slots[agent];
            let Some(w) = &slot.working else { continue };
            if !w.waiting_llm && now >= w.deadline + BUDGET_BACKSTOP {
                let ms = self.workflow.agents[agent].time_budget_ms;
                self.fault(agent, FaultKind::TimeBudget, super::module::time_budget_detail(ms))?;
            } else if done == Some(slot.restarts) {
                let why = slot.worker.as_ref().and_then(|w| w.failure()).map(|e| format!(": {e}")).unwrap_or_default();
                self.fault(agent, FaultKind::Crash, format!("its worker exited in the middle of a turn{why}"))?;
            }
        }
        Ok(())
    }

    fn handle(&mut self, agent: usize, msg: ToHub) -> Result<(), RunError> {
        let step = self.step;
        let name = self.name(agent);
        let budget = Duration::from_millis(self.workflow.agents[agent].time_budget_ms);
        let slot = &mut self.slots[agent];
        // A late message from a worker that was already cut off.
        let Some(w) = slot.working.as_mut() else { return Ok(()) };
        let turn = w.turn.turn;
        match msg {
            ToHub::Llm(request) => {
                w.waiting_llm = true;
                self.llm_queue.push((agent, request));
                self.host.agent_state(agent, AgentState::Waiting);
            }
            ToHub::Tool { name: tool, args } => {
                w.deadline = Instant::now() + budget;
                let result = tools::call(&tool, &args, agent, &mut self.scratchpad);
                let (ok, output) = match result {
                    Ok(o) => (true, o),
                    Err(e) => (false, e),
                };
                slot.events.push(TranscriptEvent::ToolCall {
                    step,
                    agent: name,
                    turn,
                    tool,
                    args,
                    ok,
                    output: output.clone(),
                });
                self.send(agent, &ToAgent::ToolReply { ok, output })?;
            }
            ToHub::Send { content } => w.parts.push(content),
            ToHub::Log { text } => slot.events.push(TranscriptEvent::Log { step, agent: name, text }),
            ToHub::TurnDone => {
                let w = slot.working.take().expect("working");
                let content = w.parts.join("\n");
                if !content.is_empty() {
                    slot.events.push(TranscriptEvent::Message {
                        step,
                        from: name,
                        seq: w.turn.seq,
                        turn,
                        content: content.clone(),
                    });
                    self.replies.push(((agent, turn), content));
                }
                self.next_turn(agent)?;
            }
            ToHub::Fault { kind, detail } => self.fault(agent, kind, detail)?,
        }
        Ok(())
    }

    /// Serves every queued LLM call as one batch, in agent order.
    async fn serve_llm(&mut self) -> Result<(), RunError> {
        let mut queue = std::mem::take(&mut self.llm_queue);
        queue.sort_by_key(|(agent, _)| *agent);
        let requests: Vec<LlmRequest> = queue.iter().map(|(_, r)| r.clone()).collect();
        let replies = self.llm.complete(&requests).await;
        for ((agent, _), reply) in queue.into_iter().zip(replies) {
            let reply = reply.map_err(RunError::Llm)?;
            let budget = Duration::from_millis(self.workflow.agents[agent].time_budget_ms);
            let name = self.name(agent);
            let step = self.step;
            let slot = &mut self.slots[agent];
            let Some(w) = slot.working.as_mut() else { continue };
            (w.waiting_llm, w.deadline) = (false, Instant::now() + budget);
            self.host.agent_state(agent, AgentState::Thinking);
            slot.events.push(TranscriptEvent::LlmCall {
                step,
                agent: name,
                turn: w.turn.turn,
                prompt_tokens: reply.prompt_tokens,
                completion_tokens: reply.completion_tokens,
                finish_reason: reply.finish_reason,
            });
            self.summary.completion_tokens += reply.completion_tokens;
            let msg = ToAgent::LlmReply {
                text: reply.text,
                prompt_tokens: reply.prompt_tokens,
                completion_tokens: reply.completion_tokens,
                finish_reason: reply.finish_reason,
            };
            self.send(agent, &msg)?;
        }
        Ok(())
    }

    /// Applies `agent`'s policy to a fault in its current turn.
    fn fault(&mut self, agent: usize, kind: FaultKind, detail: String) -> Result<(), RunError> {
        let step = self.step;
        let name = self.name(agent);
        let supervision = self.workflow.agents[agent].supervision;
        let slot = &mut self.slots[agent];
        let Some(w) = slot.working.take() else { return Ok(()) };
        self.summary.faults += 1;
        self.llm_queue.retain(|(a, _)| *a != agent);
        slot.events.push(TranscriptEvent::Fault {
            step,
            agent: name.clone(),
            turn: w.turn.turn,
            attempt: w.attempt,
            kind,
            detail: detail.clone(),
        });
        self.host.agent_state(agent, AgentState::Faulted);
        // Cut the worker off. A worker that shares the runtime's memory cannot be killed
        // safely (it may hold a lock): a stuck one is left behind, deaf (its bus end is
        // closed), and module agents cannot be stuck past their fuel anyway.
        self.bus.disconnect(agent);
        if let Some(worker) = slot.worker.take().filter(|w| !w.is_finished()) {
            slot.cut_off.push(worker);
        }
        // Once no worker of this agent can run any more, what a dead one held in the middle
        // of a send or a receive is given back.
        slot.cut_off.retain(|w| !w.is_finished());
        if slot.cut_off.is_empty() {
            self.bus.reclaim(agent);
        }
        match supervision.on_fault {
            OnFault::Restart if slot.restarts < supervision.max_restarts => {
                let backoff_ms = supervision.backoff_ms << slot.restarts.min(16);
                slot.restarts += 1;
                self.summary.restarts += 1;
                slot.events.push(TranscriptEvent::Restart {
                    step,
                    agent: name.clone(),
                    attempt: w.attempt + 1,
                    backoff_ms,
                });
                self.host.backoff(Duration::from_millis(backoff_ms));
                let port = self.bus.reconnect(agent)?;
                let worker = self
                    .host
                    .spawn_agent(agent, slot.program.clone(), port, self.options.jitter)
                    .map_err(|reason| RunError::Spawn { agent: name.clone(), reason })?;
                slot.worker = Some(worker);
                self.host.agent_state(agent, AgentState::Restarted);
                self.start(agent, w.turn, w.attempt + 1)
            }
            OnFault::Escalate => {
                slot.events.push(TranscriptEvent::Escalated { step, agent: name.clone() });
                Err(RunError::Escalated { agent: name, kind, detail })
            }
            OnFault::Restart | OnFault::GiveUp => {
                slot.gave_up = true;
                slot.events.push(TranscriptEvent::GaveUp { step, agent: name });
                self.host.agent_state(agent, AgentState::GaveUp);
                self.next_turn(agent)
            }
        }
    }

    /// Tells every worker to stop and waits (a little) for those that can.
    async fn stop(&mut self) {
        for agent in 0..self.slots.len() {
            let _ = self.send(agent, &ToAgent::Stop);
        }
        let deadline = Instant::now() + Duration::from_secs(2);
        while self.slots.iter().flat_map(|s| &s.worker).any(|w| !w.is_finished()) && Instant::now() < deadline {
            self.host.backoff(Duration::from_millis(5));
            self.host.idle().await;
        }
        for agent in 0..self.slots.len() {
            self.slots[agent].worker = None;
            self.host.agent_state(agent, AgentState::Idle);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An LLM that answers from a script, or with the last line of the prompt.
    struct Scripted {
        replies: VecDeque<String>,
        batches: Vec<usize>,
        prompts: Vec<String>,
        /// (tools offered, forced) of each request.
        tools: Vec<(Vec<String>, bool)>,
    }

    impl LlmService for Scripted {
        fn backend(&self) -> String {
            "scripted".into()
        }

        fn complete<'a>(&'a mut self, batch: &'a [LlmRequest]) -> HostFuture<'a, Vec<Result<LlmReply, String>>> {
            self.batches.push(batch.len());
            let replies = batch
                .iter()
                .map(|r| {
                    self.prompts.push(r.prompt.clone());
                    self.tools.push((r.tools.clone(), r.force_tool));
                    let text = self.replies.pop_front().unwrap_or_else(|| r.prompt.lines().last().unwrap_or("").into());
                    Ok(LlmReply { text, prompt_tokens: 1, completion_tokens: 1, finish_reason: FinishReason::Stop })
                })
                .collect();
            Box::pin(std::future::ready(replies))
        }
    }

    fn run_scripted(toml: &str, replies: &[&str], jitter: Jitter) -> (Vec<TranscriptEvent>, Scripted) {
        let workflow = Workflow::from_toml(toml).unwrap();
        let replies = replies.iter().map(|r| r.to_string()).collect();
        let mut llm = Scripted { replies, batches: vec![], prompts: vec![], tools: vec![] };
        let mut events = Vec::new();
        let programs = programs(&workflow, Path::new(".")).unwrap();
        run(&workflow, programs, &mut llm, RunOptions { transport: Transport::SharedMemory, jitter }, |e| {
            events.push(e.clone())
        })
        .unwrap();
        (events, llm)
    }

    /// One LLM agent with the calculator.
    const CALC: &str = r#"
[workflow]
name = "calc"
task = "What is six times seven?"
[topology]
kind = "sequential"
order = ["calc"]
[[agents]]
name = "calc"
system = "You compute."
tools = ["calculator"]
"#;

    #[test]
    fn an_llm_agent_calls_a_tool_from_its_reply_and_answers_with_the_result() {
        let (events, llm) = run_scripted(CALC, &["calculator(6 * 7)", "It is 42."], Jitter::default());
        let kinds: Vec<&str> = events
            .iter()
            .map(|e| match e {
                TranscriptEvent::Started { .. } => "started",
                TranscriptEvent::LlmCall { .. } => "llm_call",
                TranscriptEvent::ToolCall { .. } => "tool_call",
                TranscriptEvent::Message { .. } => "message",
                TranscriptEvent::Finished { .. } => "finished",
                _ => "other",
            })
            .collect();
        assert_eq!(kinds, ["started", "llm_call", "tool_call", "llm_call", "message", "finished"]);
        assert!(
            matches!(&events[2], TranscriptEvent::ToolCall { tool, output, ok: true, .. } if tool == "calculator" && output == "42")
        );
        assert!(matches!(&events[4], TranscriptEvent::Message { content, .. } if content == "It is 42."));
        assert!(
            llm.prompts[1].ends_with("You called calculator(6 * 7). Result: 42\nNow give your answer."),
            "{}",
            llm.prompts[1]
        );
    }

    #[test]
    fn a_required_tool_call_is_forced_on_the_first_request_of_a_turn_only() {
        let toml = format!("{CALC}tool_choice = \"required\"\n");
        let call = r#"{"name": "calculator", "arguments": {"expression": "6 * 7"}}"#;
        let (events, llm) = run_scripted(&toml, &[call, "It is 42."], Jitter::default());
        let calculator = vec!["calculator".to_string()];
        assert_eq!(llm.tools, [(calculator.clone(), true), (calculator, false)]);
        assert!(
            events.iter().any(|e| matches!(e, TranscriptEvent::ToolCall { output, ok: true, .. } if output == "42"))
        );
    }

    #[test]
    fn programs_must_match_the_agents() {
        let workflow = Workflow::from_toml(
            "[workflow]\nname = \"w\"\ntask = \"t\"\n[topology]\nkind = \"sequential\"\norder = [\"a\"]\n\
             [[agents]]\nname = \"a\"\nsystem = \"s\"\n",
        )
        .unwrap();
        let mut llm = Scripted { replies: VecDeque::new(), batches: vec![], prompts: vec![], tools: vec![] };
        let options = RunOptions { transport: Transport::SharedMemory, jitter: Jitter::default() };
        let err = run(&workflow, Vec::new(), &mut llm, options, |_| {}).unwrap_err();
        assert_eq!(err.to_string(), "0 programs for 1 agents: give one per agent (see `programs`)");
    }

    #[test]
    fn a_step_s_llm_calls_are_one_batch_whatever_the_timing() {
        let toml = r#"
[workflow]
name = "pwc"
task = "Plan a picnic."
[topology]
kind = "planner_workers_critic"
planner = "p"
workers = ["a", "b", "c"]
critic = "k"
[[agents]]
name = "p"
system = "s"
[[agents]]
name = "a"
system = "s"
[[agents]]
name = "b"
system = "s"
[[agents]]
name = "c"
system = "s"
[[agents]]
name = "k"
system = "s"
"#;
        for jitter in [Jitter::default(), Jitter { max_ms: 3 }] {
            let (events, llm) = run_scripted(toml, &["1. bread\n2. cheese\n3. a blanket"], jitter);
            assert_eq!(llm.batches, [1, 3, 1], "the workers' three calls are served together");
            assert!(matches!(events.last(), Some(TranscriptEvent::Finished { messages: 5, .. })));
        }
    }
}
