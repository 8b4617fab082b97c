//! The hub: runs a workflow with every agent on its own worker (a thread natively, a Web
//! Worker in the browser), all talking to the hub over the bus.
//!
//! Per logical step the hub hands each agent its turns, serves their LLM and tool calls, and
//! supervises them. LLM calls are served in batches when every busy agent is waiting on the LLM,
//! in agent order, so a batch's make-up follows from the schedule and never from timing. What
//! happened in a step is written to the transcript when the step ends, agent by agent, so the
//! transcript is the same however the workers were timed.
//!
//! This file is the run loop; [`supervision`] handles faults and restarts.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use hearth_api::agents::{AgentState, FaultKind, TranscriptEvent, Transport};
use hearth_api::llm_service::LlmService;
use thiserror::Error;
use web_time::Instant;

use super::agent::{AgentProgram, Jitter};
use super::host::{AgentWorker, Host, Threads};
use super::hub_messages::{LlmRequest, ToAgent, ToHub};
use super::module::{ModuleAgent, ModuleError};
use super::scheduler::Scheduler;
use super::tools::{self, Scratchpad};
use super::turn::Turn;
use crate::bus::{BusError, ChannelBus, HubPort, SharedBus, SharedBusConfig};
use hearth_api::workflow::{AgentSpec, Workflow};

mod supervision;

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
        let batch: Vec<_> = queue.iter().map(|(_, request)| request.generation()).collect();
        let replies = self.llm.complete(&batch).await;
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
}

#[cfg(test)]
mod tests;
