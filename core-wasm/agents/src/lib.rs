//! Hearth's agents runtime: a workflow (its format is `hearth_api::workflow`) run by the
//! deterministic scheduler as logical steps of agent turns ([`scheduler`], each [`turn`] with
//! its seed), the hub that runs those turns on agents over the [`bus`] and supervises them
//! ([`hub`]), the agents' side ([`agent`], with custom agents as wasm modules in [`module`]),
//! what they say ([`hub_messages`]) and the built-in [`tools`]. It reaches the engine only
//! through [`LlmService`].

// The threaded wasm build (nightly, +atomics) blocks on the bus with `memory.atomic.wait32`.
#![cfg_attr(all(target_arch = "wasm32", target_feature = "atomics"), feature(stdarch_wasm_atomic_wait))]

pub mod agent;
pub mod bus;
pub mod host;
pub mod hub;
pub mod hub_messages;
pub mod module;
pub mod scheduler;
pub mod tools;
pub mod turn;

pub use hearth_api::agents::{AgentState, FaultKind, TranscriptEvent, Transport};
pub use hearth_api::llm_service::LlmService;
pub use hearth_api::workflow::{AgentSpec, OnFault, Supervision, Topology, Workflow, WorkflowError};
pub use host::{AgentWorker, Host, HostFuture, Threads};
pub use hub::{RunError, RunOptions, RunSummary, programs, programs_with, run, run_on};
pub use scheduler::Scheduler;
pub use turn::{Message, Turn, turn_seed};
