//! What the hub needs from where it runs: workers for its agents, a chance for the host's event
//! loop to run, a gate before each logical step (pause, step, stop), and a place to show each
//! agent's live state. Natively: threads, and nothing else to do ([`Threads`]). In the browser
//! the engine worker implements it with Web Workers (hearth-workers).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use hearth_api::agents::AgentState;

use super::agent::{AgentProgram, Jitter, run_agent};
use crate::bus::{AgentPort, BusError, HubPort};

/// A future the hub awaits; not `Send`, since a browser host's futures hold JS values.
pub type HostFuture<'a, T> = Pin<Box<dyn Future<Output = T> + 'a>>;

/// An agent's worker, as the hub sees it.
pub trait AgentWorker {
    /// Whether the worker has ended (returned, or died).
    fn is_finished(&self) -> bool;

    /// Why the worker died, where its host can tell (a Web Worker's uncaught error).
    fn failure(&self) -> Option<String> {
        None
    }
}

/// A bus: the hub's end and each agent's.
pub type Bus = (Box<dyn HubPort>, Vec<Box<dyn AgentPort>>);

pub trait Host {
    /// Starts `job` (an agent's loop) on a worker of its own.
    fn spawn(&self, job: Box<dyn FnOnce() + Send>) -> Result<Box<dyn AgentWorker>, String>;

    /// The bus for `agents` agents, where the host brings its own: a page without shared
    /// memory, where each agent is a Web Worker of its own reached by messages. Its agent ends
    /// are [`RemotePort`]s. `None` (the default): the hub makes the bus its options name.
    fn bus(&self, _agents: usize) -> Option<Bus> {
        None
    }

    /// Starts agent `agent` running `program` on `port`: by default [`run_agent`] on a worker
    /// from [`Host::spawn`]. A host that brings its own bus starts its own kind of worker.
    fn spawn_agent(
        &self,
        _agent: usize,
        program: Arc<AgentProgram>,
        port: Box<dyn AgentPort>,
        jitter: Jitter,
    ) -> Result<Box<dyn AgentWorker>, String> {
        self.spawn(Box::new(move || run_agent(&program, port, jitter)))
    }

    /// Waits `duration` before an agent restarts (its backoff). The default blocks; a host
    /// that cannot block (wasm without threads) spins.
    fn backoff(&self, duration: std::time::Duration) {
        #[cfg(all(target_arch = "wasm32", not(target_feature = "atomics")))]
        {
            let end = web_time::Instant::now() + duration;
            while web_time::Instant::now() < end {}
        }
        #[cfg(not(all(target_arch = "wasm32", not(target_feature = "atomics"))))]
        std::thread::sleep(duration);
    }

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

/// An agent's end of a bus the host brought ([`Host::bus`]): it lives in the agent's own
/// worker, so this side holds only a stand-in that cannot be used.
pub struct RemotePort;

impl AgentPort for RemotePort {
    fn send(&self, _msg: &[u8], _timeout: Option<std::time::Duration>) -> Result<(), BusError> {
        Err(BusError::Closed { agent: usize::MAX })
    }

    fn recv(&self, _timeout: Option<std::time::Duration>) -> Result<Vec<u8>, BusError> {
        Err(BusError::Closed { agent: usize::MAX })
    }
}
