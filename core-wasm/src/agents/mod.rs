//! Agents and workflows: a workflow file ([`workflow`]), the deterministic scheduler that turns
//! its topology into logical steps of agent turns ([`scheduler`], each [`turn`] with its seed), the hub that runs those turns
//! on agents over the bus and supervises them ([`hub`]), the agents' side ([`agent`], with custom
//! agents as wasm modules in [`module`]), what they say ([`hub_messages`]) and the built-in
//! [`tools`].

pub mod agent;
pub mod host;
pub mod hub;
pub mod hub_messages;
pub mod module;
pub mod scheduler;
pub mod tools;
pub mod turn;
pub mod workflow;

pub use host::{AgentState, AgentWorker, Host, HostFuture, Threads};
pub use hub::{
    LlmReply, LlmService, RunError, RunOptions, RunSummary, TranscriptEvent, Transport, programs, programs_with, run,
    run_on,
};
pub use scheduler::Scheduler;
pub use turn::{Message, Turn, turn_seed};
pub use workflow::{AgentSpec, OnFault, Supervision, Topology, Workflow, WorkflowError};
