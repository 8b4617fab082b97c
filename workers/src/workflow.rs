//! Workflows in the page: the hub runs in the engine worker on the loaded model, each agent in
//! a Web Worker of its own. In the threaded build the agents share the runtime's memory and
//! the shared-memory bus (`crate::thread`): the hub blocks on the bus between messages
//! (`Atomics.wait`, allowed in a worker) for at most its liveness interval, then lets the
//! worker's event loop run, so the page's pause, step and stop arrive. In the single-threaded
//! build each agent has a runtime of its own and messages go by `postMessage`
//! (`crate::message_agent`); the hub reads what has arrived and otherwise lets the event loop
//! run, which is where messages arrive.

use std::cell::Cell;
use std::rc::Rc;

use hearth_agents::{AgentState, AgentWorker, Host, HostFuture, LlmService, RunError, RunOptions, Transport, Workflow};
use hearth_api::generate::{Completion, GenerateParams, Prompt};
use hearth_api::llm_service::LlmFuture;
use hearth_api::protocol::{AgentModule, EngineEvent, WorkflowControl};
use hearth_core::engine::Engine as Llm;
use wasm_bindgen::JsCast;

use crate::engine::{EngineWorker, yield_to_event_loop};

/// How long a paused workflow sleeps between looks at its gate.
const PAUSED_POLL_MS: i32 = 50;

/// The workflow running in this engine, and the gate before its next step.
pub(crate) struct Running {
    pub id: u32,
    gate: Rc<Cell<WorkflowControl>>,
}

impl Running {
    pub fn control(&self, control: WorkflowControl) {
        self.gate.set(control);
    }
}

struct PageHost<'a> {
    engine: &'a EngineWorker,
    id: u32,
    /// `Resume`: run; `Pause`: hold; `Step`: run one step, then hold; `Stop`: end.
    gate: Rc<Cell<WorkflowControl>>,
    /// Without shared memory: the agents' workers and their messages.
    #[cfg(not(feature = "threads"))]
    bus: std::cell::RefCell<Option<crate::message_agent::MessageBus>>,
}

/// The bus this build's pages use.
#[cfg(feature = "threads")]
const TRANSPORT: Transport = Transport::SharedMemory;
#[cfg(not(feature = "threads"))]
const TRANSPORT: Transport = Transport::MessagePassing;

impl Host for PageHost<'_> {
    #[cfg(feature = "threads")]
    fn spawn(&self, job: Box<dyn FnOnce() + Send>) -> Result<Box<dyn AgentWorker>, String> {
        crate::thread::spawn(job)
    }

    #[cfg(not(feature = "threads"))]
    fn spawn(&self, _job: Box<dyn FnOnce() + Send>) -> Result<Box<dyn AgentWorker>, String> {
        Err("this build has no threads: agents run on workers of their own (spawn_agent)".into())
    }

    #[cfg(not(feature = "threads"))]
    fn bus(&self, agents: usize) -> Option<hearth_agents::host::Bus> {
        let bus = crate::message_agent::MessageBus::new(agents);
        *self.bus.borrow_mut() = Some(bus.clone());
        let ports = (0..agents)
            .map(|_| Box::new(hearth_agents::host::RemotePort) as Box<dyn hearth_agents::bus::AgentPort>)
            .collect();
        Some((Box::new(bus), ports))
    }

    #[cfg(not(feature = "threads"))]
    fn spawn_agent(
        &self,
        agent: usize,
        program: std::sync::Arc<hearth_agents::agent::AgentProgram>,
        _port: Box<dyn hearth_agents::bus::AgentPort>,
        _jitter: hearth_agents::agent::Jitter,
    ) -> Result<Box<dyn AgentWorker>, String> {
        let bus = self.bus.borrow();
        bus.as_ref().ok_or("the agents' bus is not made yet")?.start(agent, &program)
    }

    fn idle(&self) -> HostFuture<'_, ()> {
        // Without shared memory the agents' messages arrive on this event loop: with none
        // waiting, a short sleep instead of spinning.
        #[cfg(not(feature = "threads"))]
        if !self.bus.borrow().as_ref().is_some_and(|b| b.has_mail()) {
            return Box::pin(sleep_ms(2));
        }
        Box::pin(yield_to_event_loop())
    }

    fn before_step(&self, step: u32) -> HostFuture<'_, bool> {
        Box::pin(async move {
            let mut held = false;
            loop {
                match self.gate.get() {
                    WorkflowControl::Stop => return false,
                    WorkflowControl::Pause => {
                        if !held {
                            held = true;
                            self.engine.post(&EngineEvent::WorkflowHeld { id: self.id, step: Some(step) });
                        }
                        sleep_ms(PAUSED_POLL_MS).await;
                        continue;
                    }
                    WorkflowControl::Step => self.gate.set(WorkflowControl::Pause),
                    WorkflowControl::Resume => {}
                }
                if held {
                    self.engine.post(&EngineEvent::WorkflowHeld { id: self.id, step: None });
                }
                return true;
            }
        })
    }

    fn agent_state(&self, agent: usize, state: AgentState) {
        self.engine.post(&EngineEvent::AgentState { id: self.id, agent, state });
    }

    fn bus_message(&self, bytes: usize) {
        let mut counters = self.engine.counters.borrow_mut();
        counters.bus_messages += 1;
        counters.bus_bytes += bytes as u64;
    }
}

/// The model serving the agents, its work counted for the monitor.
struct CountedLlm<'a> {
    llm: &'a mut Llm,
    engine: &'a EngineWorker,
}

impl LlmService for CountedLlm<'_> {
    fn backend(&self) -> String {
        LlmService::backend(&*self.llm)
    }

    fn complete<'a>(
        &'a mut self,
        batch: &'a [(Prompt, GenerateParams)],
    ) -> LlmFuture<'a, Vec<Result<Completion, String>>> {
        Box::pin(async move {
            let start = self.engine.now_ms();
            let replies = self.llm.complete(batch).await;
            let tokens = replies.iter().flatten().map(|r| r.completion_tokens).sum();
            self.engine.count_work(tokens, self.engine.now_ms() - start);
            replies
        })
    }
}

/// Runs workflow `id` and posts its transcript, then [`EngineEvent::WorkflowEnded`].
pub(crate) async fn run(engine: &EngineWorker, id: u32, toml: String, seed: Option<u64>, modules: Vec<AgentModule>) {
    let (error, stopped_before) = match run_transcript(engine, id, &toml, seed, &modules).await {
        Ok(()) => (None, None),
        Err(Ended::Stopped(step)) => (None, Some(step)),
        Err(Ended::Failed(e)) => (Some(e), None),
    };
    engine.post(&EngineEvent::WorkflowEnded { id, error, stopped_before });
}

/// How a run that did not finish ended.
enum Ended {
    /// The page stopped it before this step.
    Stopped(u32),
    Failed(String),
}

impl<T: Into<String>> From<T> for Ended {
    fn from(e: T) -> Self {
        Ended::Failed(e.into())
    }
}

async fn run_transcript(
    engine: &EngineWorker,
    id: u32,
    toml: &str,
    seed: Option<u64>,
    modules: &[AgentModule],
) -> Result<(), Ended> {
    let mut workflow = Workflow::from_toml(toml).map_err(|e| format!("the workflow: {e}"))?;
    if let Some(seed) = seed {
        workflow.seed = seed;
    }
    // A page has no files: the custom agents' modules come with the request.
    let read_module = |path: &str| match AgentModule::find(modules, path) {
        Some(module) => Ok(module.wasm.clone()),
        None => Err(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "it was not given to the page (add the .wasm file with the workflow)",
        )),
    };
    let programs = hearth_agents::programs_with(&workflow, &read_module).map_err(|e| e.to_string())?;
    if engine.busy() {
        return Err("the engine is busy loading, replying or running a workflow".into());
    }
    let Some(mut llm) = engine.take_model() else { return Err("no model is loaded yet".into()) };
    let gate = Rc::new(Cell::new(WorkflowControl::Resume));
    engine.set_workflow(Some(Running { id, gate: gate.clone() }));
    let host = PageHost {
        engine,
        id,
        gate,
        #[cfg(not(feature = "threads"))]
        bus: Default::default(),
    };
    let options = RunOptions { transport: TRANSPORT, ..RunOptions::default() };
    let mut counted = CountedLlm { llm: &mut llm, engine };
    let result = hearth_agents::run_on(&host, &workflow, programs, &mut counted, options, |event| {
        match serde_json::to_string(event) {
            Ok(line) => engine.post(&EngineEvent::Transcript { id, line }),
            Err(e) => web_sys::console::error_1(&format!("workflow {id}: cannot encode {event:?}: {e}").into()),
        }
    })
    .await;
    engine.set_workflow(None);
    engine.put_model(llm);
    match result {
        Ok(_) => Ok(()),
        Err(RunError::Stopped { step }) => Err(Ended::Stopped(step)),
        Err(e) => Err(Ended::Failed(e.to_string())),
    }
}

/// Waits `ms` milliseconds on the worker's event loop.
async fn sleep_ms(ms: i32) {
    let promise = js_sys::Promise::new(&mut |resolve, _reject| {
        let scope: web_sys::WorkerGlobalScope = js_sys::global().unchecked_into();
        let _ = scope.set_timeout_with_callback_and_timeout_and_arguments_0(&resolve, ms);
    });
    let _ = wasm_bindgen_futures::JsFuture::from(promise).await;
}
