//! Agents without shared memory (the single-threaded build, or an engine that gives its pages
//! none): each agent is a Web Worker (`agent-worker.js`) with a runtime instance of its own,
//! and it and the hub in the engine worker exchange the bus protocol's JSON by `postMessage`.
//! The agent is the same state machine as natively ([`Agent`]); since its memory is its own,
//! the hub may terminate its worker (a fault past its budget, a crash) and start a fresh one.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;
use std::time::Duration;

use hearth_agents::AgentWorker;
use hearth_agents::agent::{Agent, AgentProgram};
use hearth_agents::bus::{AgentPort, BusError, HubPort};
use hearth_agents::host::RemotePort;
use hearth_agents::hub_messages::{ToAgent, ToHub};
use wasm_bindgen::prelude::*;
use web_sys::{ErrorEvent, MessageEvent, Worker, WorkerOptions, WorkerType};

use crate::worker_error::{self, Died};

// ---------------------------------------------------------------------------------------------
// The hub's side.

/// The hub's end of a message-passing bus to agent workers.
#[derive(Clone)]
pub(crate) struct MessageBus {
    inner: Rc<Inner>,
}

struct Inner {
    agents: Vec<RefCell<Option<Link>>>,
    /// What the agents sent, in arrival order: (agent, its worker's generation, the message).
    inbox: RefCell<VecDeque<(usize, u32, Vec<u8>)>>,
    /// Counts the workers started, so a message from a worker already cut off is dropped.
    generation: Cell<u32>,
}

/// One agent's worker, while it is connected.
struct Link {
    worker: Worker,
    generation: u32,
    _on_message: Closure<dyn FnMut(MessageEvent)>,
    _on_error: Closure<dyn FnMut(ErrorEvent)>,
}

// SAFETY: this module is only built without the `threads` feature: the runtime has one thread,
// so the bus is never reached from another (the hub's `Send + Sync` bound is for native threads).
unsafe impl Send for MessageBus {}
unsafe impl Sync for MessageBus {}

impl MessageBus {
    pub(crate) fn new(agents: usize) -> Self {
        let inner = Inner {
            agents: (0..agents).map(|_| RefCell::new(None)).collect(),
            inbox: RefCell::new(VecDeque::new()),
            generation: Cell::new(0),
        };
        Self { inner: Rc::new(inner) }
    }

    /// Starts `program` on a fresh worker for `agent` (cutting off any worker it had).
    pub(crate) fn start(&self, agent: usize, program: &AgentProgram) -> Result<Box<dyn AgentWorker>, String> {
        let slot = self.inner.agents.get(agent).ok_or_else(|| format!("no agent {agent}"))?;
        self.disconnect(agent);
        let options = WorkerOptions::new();
        options.set_type(WorkerType::Module);
        options.set_name("hearth-agent");
        // Relative to this worker's script, engine-worker.js.
        let worker = Worker::new_with_options("agent-worker.js", &options)
            .map_err(|e| format!("cannot start a Web Worker: {e:?}"))?;
        let generation = self.inner.generation.get() + 1;
        self.inner.generation.set(generation);
        let ended = Rc::new(Cell::new(false));
        let on_message = {
            let inner = Rc::downgrade(&self.inner);
            let ended = ended.clone();
            Closure::<dyn FnMut(MessageEvent)>::new(move |event: MessageEvent| {
                // `null` says the agent has ended and its worker closes.
                if event.data().is_null() {
                    ended.set(true);
                    return;
                }
                let Some(inner) = inner.upgrade() else { return };
                let bytes = js_sys::Uint8Array::new(&event.data()).to_vec();
                inner.inbox.borrow_mut().push_back((agent, generation, bytes));
            })
        };
        let (died, on_error) = worker_error::watch(&worker);
        worker.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        let json = serde_json::to_string(program).map_err(|e| format!("cannot describe the agent: {e}"))?;
        let wasm = match program {
            AgentProgram::Module { wasm, .. } => JsValue::from(js_sys::Uint8Array::from(&wasm[..])),
            AgentProgram::Llm { .. } => JsValue::NULL,
        };
        if let Err(e) = worker.post_message(&js_sys::Array::of2(&JsValue::from(json), &wasm)) {
            worker.terminate();
            return Err(format!("cannot start a Web Worker: {e:?}"));
        }
        *slot.borrow_mut() = Some(Link { worker, generation, _on_message: on_message, _on_error: on_error });
        Ok(Box::new(MessageWorker { died, ended }))
    }
}

impl MessageBus {
    /// Whether a message from an agent waits to be read.
    pub(crate) fn has_mail(&self) -> bool {
        !self.inner.inbox.borrow().is_empty()
    }
}

impl HubPort for MessageBus {
    fn agents(&self) -> usize {
        self.inner.agents.len()
    }

    fn send(&self, agent: usize, msg: &[u8], _timeout: Option<Duration>) -> Result<(), BusError> {
        let agents = self.agents();
        let slot = self.inner.agents.get(agent).ok_or(BusError::NoSuchAgent { agent, agents })?;
        let link = slot.borrow();
        let link = link.as_ref().ok_or(BusError::Closed { agent })?;
        // Posting copies: the worker gets bytes of its own.
        link.worker.post_message(&js_sys::Uint8Array::from(msg)).map_err(|_| BusError::Closed { agent })
    }

    /// Never waits: messages arrive on this worker's event loop, which runs while the hub is
    /// idle (see `PageHost::idle`).
    fn recv(&self, timeout: Option<Duration>) -> Result<(usize, Vec<u8>), BusError> {
        let mut inbox = self.inner.inbox.borrow_mut();
        while let Some((agent, generation, msg)) = inbox.pop_front() {
            let current = self.inner.agents[agent].borrow().as_ref().map(|l| l.generation);
            if current == Some(generation) {
                return Ok((agent, msg));
            }
        }
        Err(BusError::Timeout(timeout.unwrap_or_default()))
    }

    /// Terminates the agent's worker: its memory is its own, so nothing else is hurt, and what
    /// it sent that the hub had not read is dropped with it.
    fn disconnect(&self, agent: usize) {
        if let Some(link) = self.inner.agents.get(agent).and_then(|slot| slot.borrow_mut().take()) {
            link.worker.terminate();
        }
    }

    /// The fresh worker is started by [`MessageBus::start`]; its end lives there.
    fn reconnect(&self, agent: usize) -> Result<Box<dyn AgentPort>, BusError> {
        let agents = self.agents();
        if agent >= agents {
            return Err(BusError::NoSuchAgent { agent, agents });
        }
        self.disconnect(agent);
        Ok(Box::new(RemotePort))
    }
}

/// An agent worker as the hub sees it: one that ends says so after its last message and
/// closes; one that dies reports an error.
struct MessageWorker {
    died: Died,
    ended: Rc<Cell<bool>>,
}

impl AgentWorker for MessageWorker {
    fn is_finished(&self) -> bool {
        self.ended.get() || self.died.borrow().is_some()
    }

    fn failure(&self) -> Option<String> {
        self.died.borrow().clone()
    }
}

// ---------------------------------------------------------------------------------------------
// The agent's side: `agent-worker.js` makes one of these from its first message and hands it
// every message after.

/// An agent in its own worker: handed the hub's messages, it gives back its own.
#[wasm_bindgen]
pub struct MessageAgent {
    agent: Option<Agent>,
    /// Messages to send before any (the fault of an agent that could not start).
    first: Vec<ToHub>,
    ended: bool,
}

#[wasm_bindgen]
impl MessageAgent {
    /// The agent described by `program` (JSON; a module's bytes in `wasm`).
    #[wasm_bindgen(constructor)]
    pub fn new(program: &str, wasm: Option<Vec<u8>>) -> MessageAgent {
        let program = serde_json::from_str::<AgentProgram>(program).map(|program| match program {
            AgentProgram::Module { limits, config, llm, .. } => {
                AgentProgram::Module { wasm: wasm.unwrap_or_default().into(), limits, config, llm }
            }
            llm => llm,
        });
        match program.map_err(|e| ToHub::Fault {
            kind: hearth_agents::FaultKind::Crash,
            detail: format!("its worker could not read its program: {e}"),
        }) {
            Ok(program) => match Agent::new(&program) {
                Ok(agent) => MessageAgent { agent: Some(agent), first: Vec::new(), ended: false },
                Err(fault) => MessageAgent { agent: None, first: vec![fault], ended: true },
            },
            Err(fault) => MessageAgent { agent: None, first: vec![fault], ended: true },
        }
    }

    /// What to send before anything arrives (a fault, if the agent could not start).
    pub fn start(&mut self) -> js_sys::Array {
        to_array(std::mem::take(&mut self.first))
    }

    /// Handles one message from the hub; returns the messages for the hub, in order.
    pub fn handle(&mut self, msg: &[u8]) -> js_sys::Array {
        let Some(agent) = self.agent.as_mut().filter(|_| !self.ended) else { return js_sys::Array::new() };
        let Ok(msg) = serde_json::from_slice::<ToAgent>(msg) else {
            self.ended = true;
            return js_sys::Array::new();
        };
        let reaction = agent.handle(msg);
        self.ended = reaction.ended;
        to_array(reaction.send)
    }

    /// Whether the agent has ended: its worker closes.
    pub fn ended(&self) -> bool {
        self.ended
    }
}

fn to_array(messages: Vec<ToHub>) -> js_sys::Array {
    messages
        .iter()
        .filter_map(|m| serde_json::to_vec(m).ok())
        .map(|bytes| JsValue::from(js_sys::Uint8Array::from(&bytes[..])))
        .collect()
}
