//! What the hub needs from where it runs: workers for its agents, a chance for the host's event
//! loop to run, a gate before each logical step (pause, step, stop), and a place to show each
//! agent's live state. Natively: threads, and nothing else to do ([`Threads`]). In the browser
//! the engine worker implements it with Web Workers (hearth-workers).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use serde::{Deserialize, Serialize};

/// A future the hub awaits; not `Send`, since a browser host's futures hold JS values.
pub type HostFuture<'a, T> = Pin<Box<dyn Future<Output = T> + 'a>>;

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

/// An agent's worker, as the hub sees it.
pub trait AgentWorker {
    /// Whether the worker has ended (returned, or died).
    fn is_finished(&self) -> bool;

    /// Why the worker died, where its host can tell (a Web Worker's uncaught error).
    fn failure(&self) -> Option<String> {
        None
    }
}

pub trait Host {
    /// Starts `job` (an agent's loop) on a worker of its own.
    fn spawn(&self, job: Box<dyn FnOnce() + Send>) -> Result<Box<dyn AgentWorker>, String>;

    /// Called whenever the hub has waited on the bus: a browser host lets its event loop run.
    fn idle(&self) -> HostFuture<'_, ()> {
        Box::pin(std::future::ready(()))
    }

    /// Called before logical step `step` starts; false stops the run there. A host can hold
    /// the run here (pause) and let it go one step at a time.
    fn before_step(&self, _step: u32) -> HostFuture<'_, bool> {
        Box::pin(std::future::ready(true))
    }

    /// `agent` (by index in the workflow) is now in `state`.
    fn agent_state(&self, _agent: usize, _state: AgentState) {}

    /// The hub took a message of `bytes` off the bus.
    fn bus_message(&self, _bytes: usize) {}
}

/// The native host: one thread per agent.
#[derive(Clone, Copy, Debug, Default)]
pub struct Threads;

struct Thread {
    done: Arc<AtomicBool>,
}

impl AgentWorker for Thread {
    fn is_finished(&self) -> bool {
        self.done.load(Ordering::Acquire)
    }
}

/// Marks its worker finished when dropped: when the job returns, and when it unwinds.
pub struct DoneOnDrop(pub Arc<AtomicBool>);

impl Drop for DoneOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

impl Host for Threads {
    fn spawn(&self, job: Box<dyn FnOnce() + Send>) -> Result<Box<dyn AgentWorker>, String> {
        let done = Arc::new(AtomicBool::new(false));
        let guard = DoneOnDrop(done.clone());
        std::thread::Builder::new()
            .name("hearth-agent".into())
            .spawn(move || {
                let _guard = guard;
                job()
            })
            .map_err(|e| format!("cannot start a thread: {e}"))?;
        Ok(Box::new(Thread { done }))
    }
}
